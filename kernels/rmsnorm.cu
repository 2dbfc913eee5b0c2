/* rmsnorm.cu: RMSNorm forward and backward (kernels/rmsnorm.h).
 * One warp per row; the backward's dweight goes through per-block partial
 * sums in `scratch` and a second reduction kernel (deterministic). */
#include "kernels/cuda_util.cuh"
#include "kernels/rmsnorm.h"

#define RMS_ROWS_PER_BLOCK 8   /* warps per block, one row each at a time */
#define RMS_BWD_BLOCKS 256

__global__ static void rmsnorm_fwd_kernel(bf16_t *out, float *rstd, const bf16_t *inp,
                                          const bf16_t *weight, int N, int C, float eps)
{
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= N) return;
    const bf16_t *x = inp + (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) { float v = ldbf(x + c); ss += v * v; }
    ss = warp_sum(ss);
    float r = rsqrtf(ss / C + eps);
    if (lane == 0) rstd[row] = r;
    bf16_t *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) stbf(o + c, ldbf(x + c) * r * ldbf(weight + c));
}

/* grid RMS_BWD_BLOCKS blocks of RMS_ROWS_PER_BLOCK warps; each block walks rows
 * blockIdx.x*8 + warp, += gridDim.x*8, and leaves its dweight partial [C] in scratch. */
__global__ static void rmsnorm_bwd_kernel(bf16_t *dinp, float *scratch, const bf16_t *dout,
                                          const bf16_t *inp, const bf16_t *weight,
                                          const float *rstd, int N, int C)
{
    extern __shared__ float dw_shared[];   /* [C] */
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dw_shared[c] = 0.0f;
    __syncthreads();
    for (int row = blockIdx.x * RMS_ROWS_PER_BLOCK + warp; row < N; row += gridDim.x * RMS_ROWS_PER_BLOCK) {
        const bf16_t *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float r = rstd[row];
        float gx = 0.0f;
        for (int c = lane; c < C; c += 32) gx += ldbf(dy + c) * ldbf(weight + c) * ldbf(x + c);
        gx = warp_sum(gx) / C;
        bf16_t *dx = dinp + (size_t)row * C;
        for (int c = lane; c < C; c += 32) {
            float xv = ldbf(x + c), dyv = ldbf(dy + c);
            stbf(dx + c, r * (dyv * ldbf(weight + c) - xv * r * r * gx));
            atomicAdd(&dw_shared[c], dyv * xv * r);   /* shared-memory atomics, 8 warps */
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) scratch[(size_t)blockIdx.x * C + c] = dw_shared[c];
}

__global__ static void rmsnorm_dweight_reduce(float *dweight, const float *scratch, int blocks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; b++) s += scratch[(size_t)b * C + c];
    dweight[c] += s;
}

extern "C" {
void rmsnorm_forward_cuda(bf16_t *out, float *rstd, const bf16_t *inp, const bf16_t *weight,
                          int N, int C, float eps, cudaStream_t s)
{
    if (N <= 0) return;
    int blocks = (N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK;
    rmsnorm_fwd_kernel<<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, s>>>(out, rstd, inp, weight, N, C, eps);
}

size_t rmsnorm_backward_scratch_floats(int N, int C) { (void)N; return (size_t)RMS_BWD_BLOCKS * C; }

void rmsnorm_backward_cuda(bf16_t *dinp, float *dweight, float *scratch, const bf16_t *dout,
                           const bf16_t *inp, const bf16_t *weight, const float *rstd,
                           int N, int C, cudaStream_t s)
{
    if (N <= 0) return;
    size_t smem = sizeof(float) * (size_t)C;
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(rmsnorm_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    rmsnorm_bwd_kernel<<<RMS_BWD_BLOCKS, 32 * RMS_ROWS_PER_BLOCK, smem, s>>>(dinp, scratch, dout, inp, weight, rstd, N, C);
    rmsnorm_dweight_reduce<<<(C + 255) / 256, 256, 0, s>>>(dweight, scratch, RMS_BWD_BLOCKS, C);
}
}
