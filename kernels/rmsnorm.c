/* rmsnorm.c: CPU reference of RMSNorm (kernels/rmsnorm.h). */
#include <math.h>

#include "kernels/rmsnorm.h"

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *weight,
                         int N, int C, float eps)
{
    for (int t = 0; t < N; t++) {
        const float *x = inp + (size_t)t * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[t] = r;
        for (int c = 0; c < C; c++) out[(size_t)t * C + c] = x[c] * r * weight[c];
    }
}

void rmsnorm_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C)
{
    for (int t = 0; t < N; t++) {
        const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
        double r = rstd[t], gx = 0.0;
        for (int c = 0; c < C; c++) gx += (double)dy[c] * weight[c] * x[c];
        double mean_gx = gx / C;
        for (int c = 0; c < C; c++) {
            double g = (double)dy[c] * weight[c];
            dinp[(size_t)t * C + c] = (float)(r * (g - x[c] * r * r * mean_gx));
            dweight[c] += (float)((double)dy[c] * x[c] * r);
        }
    }
}
