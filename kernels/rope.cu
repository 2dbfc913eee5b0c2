/* rope.cu: rotary position embedding in place (kernels/rope.h).
 * One thread per (token, head, pair). */
#include "kernels/cuda_util.cuh"
#include "kernels/rope.h"

__global__ static void rope_kernel(bf16_t *x, const int32_t *pos, int N, int H, int D,
                                   int row_stride, float theta, float sign)
{
    int half = D / 2;
    size_t total = (size_t)N * H * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t th = idx / half;
        int h = (int)(th % H), t = (int)(th / H);
        /* freq_i = theta^(-2i/D) = exp2(-(2i/D) log2 theta) */
        float freq = exp2f(-(2.0f * i / D) * log2f(theta));
        float sn, cs;
        sincosf(sign * (float)pos[t] * freq, &sn, &cs);
        bf16_t *v = x + (size_t)t * row_stride + (size_t)h * D;
        float x0 = ldbf(v + i), x1 = ldbf(v + i + half);
        stbf(v + i, x0 * cs - x1 * sn);
        stbf(v + i + half, x1 * cs + x0 * sn);
    }
}

extern "C" {
void rope_forward_cuda(bf16_t *x, const int32_t *pos, int N, int H, int D, int row_stride,
                       float theta, cudaStream_t s)
{
    size_t n = (size_t)N * H * (D / 2);
    if (n) rope_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, pos, N, H, D, row_stride, theta, 1.0f);
}
void rope_backward_cuda(bf16_t *dx, const int32_t *pos, int N, int H, int D, int row_stride,
                        float theta, cudaStream_t s)
{
    size_t n = (size_t)N * H * (D / 2);
    if (n) rope_kernel<<<grid_for(n, 256), 256, 0, s>>>(dx, pos, N, H, D, row_stride, theta, -1.0f);
}
}
