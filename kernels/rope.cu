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

/* 16-byte version: thread per (token, head, 8 consecutive pairs); needs
 * D/2, D and row_stride multiples of 8 and an aligned x */
__global__ static void rope_vec_kernel(bf16_t *x, const int32_t *pos, int N, int H, int D,
                                       int row_stride, float theta, float sign)
{
    int half = D / 2, chunks = half / 8;
    size_t total = (size_t)N * H * chunks;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i0 = (int)(idx % chunks) * 8;
        size_t th = idx / chunks;
        int h = (int)(th % H), t = (int)(th / H);
        bf16_t *v = x + (size_t)t * row_stride + (size_t)h * D;
        float a[8], b[8];
        load8(v + i0, a);
        load8(v + i0 + half, b);
        float p = sign * (float)pos[t];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float freq = exp2f(-(2.0f * (i0 + j) / D) * log2f(theta));
            float sn, cs;
            sincosf(p * freq, &sn, &cs);
            float x0 = a[j], x1 = b[j];
            a[j] = x0 * cs - x1 * sn;
            b[j] = x1 * cs + x0 * sn;
        }
        store8(v + i0, a);
        store8(v + i0 + half, b);
    }
}

static void rope_launch(bf16_t *x, const int32_t *pos, int N, int H, int D, int row_stride,
                        float theta, float sign, cudaStream_t s)
{
    size_t n = (size_t)N * H * (D / 2);
    if (!n) return;
    if ((D / 2) % 8 == 0 && vec8_ok(row_stride, x))
        rope_vec_kernel<<<grid_for(n / 8, 256), 256, 0, s>>>(x, pos, N, H, D, row_stride, theta, sign);
    else
        rope_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, pos, N, H, D, row_stride, theta, sign);
}

extern "C" {
void rope_forward_cuda(bf16_t *x, const int32_t *pos, int N, int H, int D, int row_stride,
                       float theta, cudaStream_t s)
{
    rope_launch(x, pos, N, H, D, row_stride, theta, 1.0f, s);
}
void rope_backward_cuda(bf16_t *dx, const int32_t *pos, int N, int H, int D, int row_stride,
                        float theta, cudaStream_t s)
{
    rope_launch(dx, pos, N, H, D, row_stride, theta, -1.0f, s);
}
}
