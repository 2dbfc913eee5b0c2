/* common.c: CPU references of the elementwise kernels (kernels/common.h). */
#include "kernels/common.h"

void residual_forward_cpu(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void scale_cpu(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void accumulate_cpu(float *acc, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
}
