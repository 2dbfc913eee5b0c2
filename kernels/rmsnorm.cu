/* rmsnorm.cu: RMSNorm forward and backward (kernels/rmsnorm.h).
 * One warp per row; the backward's dweight is a column reduction over rows:
 * per-chunk partial sums in `scratch`, then a second kernel adds the chunks
 * (deterministic, no atomics). */
#include "kernels/cuda_util.cuh"
#include "kernels/rmsnorm.h"

#define RMS_ROWS_PER_BLOCK 8   /* warps per block, one row each at a time */
#define RMS_BWD_BLOCKS 128   /* row chunks of the dweight reduction */

/* VEC: 16-byte accesses, lane handles columns [8 lane + 256 j, +8) (C % 8 == 0, aligned) */
template <bool VEC>
__global__ static void rmsnorm_fwd_kernel(bf16_t *out, float *rstd, const bf16_t *inp,
                                          const bf16_t *weight, int N, int C, float eps)
{
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= N) return;
    const bf16_t *x = inp + (size_t)row * C;
    bf16_t *o = out + (size_t)row * C;
    float ss = 0.0f;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float v[8];
            load8(x + c, v);
#pragma unroll
            for (int j = 0; j < 8; j++) ss += v[j] * v[j];
        }
    } else {
        for (int c = lane; c < C; c += 32) { float v = ldbf(x + c); ss += v * v; }
    }
    ss = warp_sum(ss);
    float r = rsqrtf(ss / C + eps);
    if (lane == 0) rstd[row] = r;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float v[8], w[8];
            load8(x + c, v);
            load8(weight + c, w);
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = v[j] * r * w[j];
            store8(o + c, v);
        }
    } else {
        for (int c = lane; c < C; c += 32) stbf(o + c, ldbf(x + c) * r * ldbf(weight + c));
    }
}

/* dinp: one warp per row (as the forward). */
template <bool VEC>
__global__ static void rmsnorm_bwd_dinp_kernel(bf16_t *dinp, const bf16_t *dout, const bf16_t *inp,
                                               const bf16_t *weight, const float *rstd, int N, int C)
{
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= N) return;
    const bf16_t *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    bf16_t *dx = dinp + (size_t)row * C;
    float r = rstd[row];
    float gx = 0.0f;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float a[8], w[8], v[8];
            load8(dy + c, a); load8(weight + c, w); load8(x + c, v);
#pragma unroll
            for (int j = 0; j < 8; j++) gx += a[j] * w[j] * v[j];
        }
    } else {
        for (int c = lane; c < C; c += 32) gx += ldbf(dy + c) * ldbf(weight + c) * ldbf(x + c);
    }
    gx = warp_sum(gx) / C;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 256) {
            float a[8], w[8], v[8];
            load8(dy + c, a); load8(weight + c, w); load8(x + c, v);
#pragma unroll
            for (int j = 0; j < 8; j++) a[j] = r * (a[j] * w[j] - v[j] * r * r * gx);
            store8(dx + c, a);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            stbf(dx + c, r * (ldbf(dy + c) * ldbf(weight + c) - ldbf(x + c) * r * r * gx));
    }
}

/* dweight partials: block (32, 8) covers 64 columns (2 per thread) and the
 * rows blockIdx.y*8 + ty, stepping gridDim.y*8; scratch[blockIdx.y][C]. */
__global__ static void rmsnorm_bwd_dweight_kernel(float *scratch, const bf16_t *dout, const bf16_t *inp,
                                                  const float *rstd, int N, int C)
{
    __shared__ float part[8][64];
    int tx = threadIdx.x, ty = threadIdx.y;
    int c = blockIdx.x * 64 + 2 * tx;
    float s0 = 0.0f, s1 = 0.0f;
    for (int row = blockIdx.y * 8 + ty; row < N; row += gridDim.y * 8) {
        float r = rstd[row];
        const bf16_t *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        if (c < C) s0 += ldbf(dy + c) * ldbf(x + c) * r;
        if (c + 1 < C) s1 += ldbf(dy + c + 1) * ldbf(x + c + 1) * r;
    }
    part[ty][2 * tx] = s0;
    part[ty][2 * tx + 1] = s1;
    __syncthreads();
    if (ty == 0) {
        for (int j = 1; j < 8; j++) { s0 += part[j][2 * tx]; s1 += part[j][2 * tx + 1]; }
        if (c < C) scratch[(size_t)blockIdx.y * C + c] = s0;
        if (c + 1 < C) scratch[(size_t)blockIdx.y * C + c + 1] = s1;
    }
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
    if (vec8_ok(C, out, inp, weight))
        rmsnorm_fwd_kernel<true><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, s>>>(out, rstd, inp, weight, N, C, eps);
    else
        rmsnorm_fwd_kernel<false><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, s>>>(out, rstd, inp, weight, N, C, eps);
}

size_t rmsnorm_backward_scratch_floats(int N, int C) { (void)N; return (size_t)RMS_BWD_BLOCKS * C; }

void rmsnorm_backward_cuda(bf16_t *dinp, float *dweight, float *scratch, const bf16_t *dout,
                           const bf16_t *inp, const bf16_t *weight, const float *rstd,
                           int N, int C, cudaStream_t s)
{
    if (N <= 0) return;
    int blocks = (N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK;
    if (vec8_ok(C, dinp, dout, inp) && vec8_ok(C, weight))
        rmsnorm_bwd_dinp_kernel<true><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
    else
        rmsnorm_bwd_dinp_kernel<false><<<blocks, 32 * RMS_ROWS_PER_BLOCK, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
    rmsnorm_bwd_dweight_kernel<<<dim3((C + 63) / 64, RMS_BWD_BLOCKS), dim3(32, 8), 0, s>>>(scratch, dout, inp, rstd, N, C);
    rmsnorm_dweight_reduce<<<(C + 255) / 256, 256, 0, s>>>(dweight, scratch, RMS_BWD_BLOCKS, C);
}
}
