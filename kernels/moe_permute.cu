/* moe_permute.cu: MoE routing plan, permute / unpermute and their backward
 * (kernels/moe_permute.h). */
#include "kernels/cuda_util.cuh"
#include "kernels/moe_permute.h"

#define PLAN_THREADS 1024

/* Block e: stable rank of every pair routed to expert e, in pair order
 * (block-wide exclusive scan over chunks of 1024 pairs).  Writes the rank
 * (or -1 past capacity) into row_of and the kept count into counts[e]. */
__global__ static void moe_plan_rank_kernel(int32_t *row_of, int32_t *counts, const int32_t *topk,
                                            int pairs, int capacity)
{
    __shared__ int warp_tot[32];
    int e = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int base = 0;
    for (int c0 = 0; c0 < pairs; c0 += PLAN_THREADS) {
        int i = c0 + threadIdx.x;
        int flag = (i < pairs && topk[i] == e);
        unsigned ballot = __ballot_sync(0xffffffffu, flag);
        int in_warp = __popc(ballot & ((1u << lane) - 1u));
        if (lane == 0) warp_tot[warp] = __popc(ballot);
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < PLAN_THREADS / 32; w++) {
            int v = warp_tot[w];
            before += (w < warp) ? v : 0;
            total += v;
        }
        if (flag) {
            int rank = base + before + in_warp;
            row_of[i] = (capacity > 0 && rank >= capacity) ? -1 : rank;
        }
        base += total;
        __syncthreads();
    }
    if (threadIdx.x == 0) counts[e] = (capacity > 0 && base > capacity) ? capacity : base;
}

/* row_of[i] += offset of its expert (exclusive prefix sum of counts). */
__global__ static void moe_plan_offset_kernel(int32_t *row_of, const int32_t *counts, const int32_t *topk,
                                              int pairs, int E)
{
    extern __shared__ int offset[];  /* [E] */
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int e = 0; e < E; e++) { offset[e] = acc; acc += counts[e]; }
    }
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += gridDim.x * blockDim.x)
        if (row_of[i] >= 0) row_of[i] += offset[topk[i]];
}

/* copy one row of C bf16; 16-byte vectors when C % 8 == 0 */
static __device__ __forceinline__ void copy_row(bf16_t *dst, const bf16_t *src, int C)
{
    if ((C & 7) == 0) {
        const uint4 *s = (const uint4 *)src;
        uint4 *d = (uint4 *)dst;
        for (int c = threadIdx.x; c < C / 8; c += blockDim.x) d[c] = s[c];
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
    }
}

__global__ static void permute_fwd_kernel(bf16_t *out, const bf16_t *inp, const int32_t *row_of, int k, int C)
{
    int pair = blockIdx.x;
    int r = row_of[pair];
    if (r < 0) return;
    copy_row(out + (size_t)r * C, inp + (size_t)(pair / k) * C, C);
}

__global__ static void permute_bwd_kernel(bf16_t *dinp, const bf16_t *dout, const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r >= 0) s += ldbf(dout + (size_t)r * C + c);
        }
        stbf(dinp + (size_t)t * C + c, s);
    }
}

__global__ static void unpermute_fwd_kernel(bf16_t *out, const bf16_t *inp, const float *prob,
                                            const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r >= 0) s += prob[t * k + j] * ldbf(inp + (size_t)r * C + c);
        }
        stbf(out + (size_t)t * C + c, s);
    }
}

__global__ static void unpermute_bwd_kernel(bf16_t *dinp, float *dprob, const bf16_t *dout,
                                            const bf16_t *inp, const float *prob,
                                            const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int j = 0; j < k; j++) {
        int r = row_of[t * k + j];   /* block-uniform */
        if (r < 0) {
            if (threadIdx.x == 0) dprob[t * k + j] = 0.0f;
            continue;
        }
        float w = prob[t * k + j], dot = 0.0f;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float g = ldbf(dout + (size_t)t * C + c);
            stbf(dinp + (size_t)r * C + c, w * g);
            dot += g * ldbf(inp + (size_t)r * C + c);
        }
        dot = block_sum(dot);
        if (threadIdx.x == 0) dprob[t * k + j] = dot;
    }
}

/* 16-byte versions (C % 8 == 0, aligned): thread per 8 columns of the token's row */
__global__ static void permute_bwd_vec_kernel(bf16_t *dinp, const bf16_t *dout, const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, v[8];
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) continue;
            load8(dout + (size_t)r * C + c, v);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += v[e];
        }
        store8(dinp + (size_t)t * C + c, acc);
    }
}
__global__ static void unpermute_fwd_vec_kernel(bf16_t *out, const bf16_t *inp, const float *prob,
                                                const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, v[8];
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) continue;
            float w = prob[t * k + j];
            load8(inp + (size_t)r * C + c, v);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += w * v[e];
        }
        store8(out + (size_t)t * C + c, acc);
    }
}
__global__ static void unpermute_bwd_vec_kernel(bf16_t *dinp, float *dprob, const bf16_t *dout,
                                                const bf16_t *inp, const float *prob,
                                                const int32_t *row_of, int k, int C)
{
    int t = blockIdx.x;
    for (int j = 0; j < k; j++) {
        int r = row_of[t * k + j];   /* block-uniform */
        if (r < 0) {
            if (threadIdx.x == 0) dprob[t * k + j] = 0.0f;
            continue;
        }
        float w = prob[t * k + j], dot = 0.0f;
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float g[8], x[8], d[8];
            load8(dout + (size_t)t * C + c, g);
            load8(inp + (size_t)r * C + c, x);
#pragma unroll
            for (int e = 0; e < 8; e++) { d[e] = w * g[e]; dot += g[e] * x[e]; }
            store8(dinp + (size_t)r * C + c, d);
        }
        dot = block_sum(dot);
        if (threadIdx.x == 0) dprob[t * k + j] = dot;
    }
}

__global__ static void gather_rows_kernel(bf16_t *out, const bf16_t *inp, const int32_t *src, int C)
{
    int r = src[blockIdx.x];
    bf16_t *dst = out + (size_t)blockIdx.x * C;
    if (r >= 0) { copy_row(dst, inp + (size_t)r * C, C); return; }
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = __float2bfloat16(0.0f);   /* padding row */
}

extern "C" {
void moe_plan_cuda(int32_t *row_of, int32_t *expert_counts, const int32_t *topk_idx, int N,
                   int k, int E, int capacity, cudaStream_t s)
{
    int pairs = N * k;
    if (E <= 0) return;
    moe_plan_rank_kernel<<<E, PLAN_THREADS, 0, s>>>(row_of, expert_counts, topk_idx, pairs, capacity);
    if (pairs > 0)
        moe_plan_offset_kernel<<<grid_for((size_t)pairs, 256), 256, sizeof(int) * (size_t)E, s>>>(
            row_of, expert_counts, topk_idx, pairs, E);
}
void moe_permute_forward_cuda(bf16_t *out, const bf16_t *inp, const int32_t *row_of, int N,
                              int k, int C, cudaStream_t s)
{ if (N * k > 0) permute_fwd_kernel<<<N * k, 256, 0, s>>>(out, inp, row_of, k, C); }
void moe_permute_backward_cuda(bf16_t *dinp, const bf16_t *dout, const int32_t *row_of, int N,
                               int k, int C, cudaStream_t s)
{
    if (N <= 0) return;
    if (vec8_ok(C, dinp, dout)) permute_bwd_vec_kernel<<<N, 128, 0, s>>>(dinp, dout, row_of, k, C);
    else permute_bwd_kernel<<<N, 256, 0, s>>>(dinp, dout, row_of, k, C);
}
void moe_unpermute_forward_cuda(bf16_t *out, const bf16_t *inp, const float *prob,
                                const int32_t *row_of, int N, int k, int C, cudaStream_t s)
{
    if (N <= 0) return;
    if (vec8_ok(C, out, inp)) unpermute_fwd_vec_kernel<<<N, 128, 0, s>>>(out, inp, prob, row_of, k, C);
    else unpermute_fwd_kernel<<<N, 256, 0, s>>>(out, inp, prob, row_of, k, C);
}
void moe_unpermute_backward_cuda(bf16_t *dinp, float *dprob, const bf16_t *dout,
                                 const bf16_t *inp, const float *prob, const int32_t *row_of,
                                 int N, int k, int C, cudaStream_t s)
{
    if (N <= 0) return;
    if (vec8_ok(C, dinp, dout, inp)) unpermute_bwd_vec_kernel<<<N, 128, 0, s>>>(dinp, dprob, dout, inp, prob, row_of, k, C);
    else unpermute_bwd_kernel<<<N, 256, 0, s>>>(dinp, dprob, dout, inp, prob, row_of, k, C);
}
void gather_rows_cuda(bf16_t *out, const bf16_t *inp, const int32_t *src, int n, int C,
                      cudaStream_t s)
{ if (n > 0) gather_rows_kernel<<<n, 256, 0, s>>>(out, inp, src, C); }
}
