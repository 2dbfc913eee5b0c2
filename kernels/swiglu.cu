/* swiglu.cu: SwiGLU forward and backward (kernels/swiglu.h). */
#include "kernels/cuda_util.cuh"
#include "kernels/swiglu.h"

__global__ static void swiglu_fwd_kernel(bf16_t *out, const bf16_t *gu, int N, int F)
{
    size_t total = (size_t)N * F;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t t = idx / F, i = idx % F;
        float g = ldbf(gu + t * 2 * F + i), u = ldbf(gu + t * 2 * F + F + i);
        stbf(out + idx, g / (1.0f + __expf(-g)) * u);
    }
}
__global__ static void swiglu_bwd_kernel(bf16_t *dgu, const bf16_t *dout, const bf16_t *gu, int N, int F)
{
    size_t total = (size_t)N * F;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t t = idx / F, i = idx % F;
        size_t gi = t * 2 * F + i, ui = gi + F;
        float g = ldbf(gu + gi), u = ldbf(gu + ui), dy = ldbf(dout + idx);
        float sg = 1.0f / (1.0f + __expf(-g));
        stbf(dgu + gi, dy * u * sg * (1.0f + g * (1.0f - sg)));
        stbf(dgu + ui, dy * g * sg);
    }
}

/* 16-byte version: each thread 8 consecutive columns (F % 8 == 0, aligned) */
__global__ static void swiglu_fwd_vec_kernel(bf16_t *out, const bf16_t *gu, int N, int F)
{
    size_t total = (size_t)N * F / 8;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t e = idx * 8, t = e / F, i = e % F;
        float g[8], u[8], y[8];
        load8(gu + t * 2 * F + i, g);
        load8(gu + t * 2 * F + F + i, u);
#pragma unroll
        for (int j = 0; j < 8; j++) y[j] = g[j] / (1.0f + __expf(-g[j])) * u[j];
        store8(out + e, y);
    }
}
__global__ static void swiglu_bwd_vec_kernel(bf16_t *dgu, const bf16_t *dout, const bf16_t *gu, int N, int F)
{
    size_t total = (size_t)N * F / 8;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t e = idx * 8, t = e / F, i = e % F;
        float g[8], u[8], dy[8], dg[8], du[8];
        load8(gu + t * 2 * F + i, g);
        load8(gu + t * 2 * F + F + i, u);
        load8(dout + e, dy);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float sg = 1.0f / (1.0f + __expf(-g[j]));
            dg[j] = dy[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
            du[j] = dy[j] * g[j] * sg;
        }
        store8(dgu + t * 2 * F + i, dg);
        store8(dgu + t * 2 * F + F + i, du);
    }
}

extern "C" {
void swiglu_forward_cuda(bf16_t *out, const bf16_t *gate_up, int N, int F, cudaStream_t s)
{
    size_t n = (size_t)N * F;
    if (!n) return;
    if (vec8_ok(F, out, gate_up)) swiglu_fwd_vec_kernel<<<grid_for(n / 8, 256), 256, 0, s>>>(out, gate_up, N, F);
    else swiglu_fwd_kernel<<<grid_for(n, 256), 256, 0, s>>>(out, gate_up, N, F);
}
void swiglu_backward_cuda(bf16_t *dgate_up, const bf16_t *dout, const bf16_t *gate_up, int N,
                          int F, cudaStream_t s)
{
    size_t n = (size_t)N * F;
    if (!n) return;
    if (vec8_ok(F, dgate_up, dout, gate_up)) swiglu_bwd_vec_kernel<<<grid_for(n / 8, 256), 256, 0, s>>>(dgate_up, dout, gate_up, N, F);
    else swiglu_bwd_kernel<<<grid_for(n, 256), 256, 0, s>>>(dgate_up, dout, gate_up, N, F);
}
}
