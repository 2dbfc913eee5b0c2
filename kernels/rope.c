/* rope.c: CPU reference of rotary position embedding (kernels/rope.h). */
#include <math.h>

#include "kernels/rope.h"

/* Rotates each (i, i + D/2) pair of every head by sign * pos * freq_i. */
static void rope_rotate(float *x, const int32_t *pos, int N, int H, int D, int row_stride,
                        float theta, double sign)
{
    int half = D / 2;
    for (int t = 0; t < N; t++) {
        for (int h = 0; h < H; h++) {
            float *v = x + (size_t)t * row_stride + (size_t)h * D;
            for (int i = 0; i < half; i++) {
                double freq = pow((double)theta, -2.0 * i / D);
                double a = sign * pos[t] * freq;
                double c = cos(a), s = sin(a);
                double x0 = v[i], x1 = v[i + half];
                v[i] = (float)(x0 * c - x1 * s);
                v[i + half] = (float)(x1 * c + x0 * s);
            }
        }
    }
}

void rope_forward_cpu(float *x, const int32_t *pos, int N, int H, int D, int row_stride,
                      float theta)
{
    rope_rotate(x, pos, N, H, D, row_stride, theta, 1.0);
}

/* The rotation is orthogonal: its Jacobian transposed is the rotation by -a. */
void rope_backward_cpu(float *dx, const int32_t *pos, int N, int H, int D, int row_stride,
                       float theta)
{
    rope_rotate(dx, pos, N, H, D, row_stride, theta, -1.0);
}
