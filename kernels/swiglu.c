/* swiglu.c: CPU reference of the SwiGLU activation (kernels/swiglu.h). */
#include <math.h>

#include "kernels/swiglu.h"

void swiglu_forward_cpu(float *out, const float *gate_up, int N, int F)
{
    for (int t = 0; t < N; t++)
        for (int i = 0; i < F; i++) {
            double g = gate_up[(size_t)t * 2 * F + i], u = gate_up[(size_t)t * 2 * F + F + i];
            out[(size_t)t * F + i] = (float)(g / (1.0 + exp(-g)) * u);
        }
}

void swiglu_backward_cpu(float *dgate_up, const float *dout, const float *gate_up, int N, int F)
{
    for (int t = 0; t < N; t++)
        for (int i = 0; i < F; i++) {
            size_t gi = (size_t)t * 2 * F + i, ui = gi + F;
            double g = gate_up[gi], u = gate_up[ui], dy = dout[(size_t)t * F + i];
            double sg = 1.0 / (1.0 + exp(-g));
            dgate_up[gi] = (float)(dy * u * sg * (1.0 + g * (1.0 - sg)));
            dgate_up[ui] = (float)(dy * g * sg);
        }
}
