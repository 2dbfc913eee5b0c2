/* crossentropy.cu: softmax cross-entropy, forward and fused forward+backward
 * (kernels/crossentropy.h).  One block per row: pass 1 max, pass 2 sum of
 * exp, pass 3 (fused) dlogits; row reads hit L2 after the first pass. */
#include "kernels/cuda_util.cuh"
#include "kernels/crossentropy.h"

template <bool VEC>
__global__ static void ce_kernel(bf16_t *dlogits, float *losses, const bf16_t *logits,
                                 const int32_t *targets, float dloss, int V, int want_grad)
{
    int t = blockIdx.x;
    const bf16_t *l = logits + (size_t)t * V;
    int target = targets[t];
    float mx = -FLT_MAX;
    if (VEC) {
        for (int v = threadIdx.x * 8; v < V; v += blockDim.x * 8) {
            float x[8];
            load8(l + v, x);
#pragma unroll
            for (int e = 0; e < 8; e++) mx = fmaxf(mx, x[e]);
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, ldbf(l + v));
    }
    mx = block_max(mx);
    float sum = 0.0f;
    if (VEC) {
        for (int v = threadIdx.x * 8; v < V; v += blockDim.x * 8) {
            float x[8];
            load8(l + v, x);
#pragma unroll
            for (int e = 0; e < 8; e++) sum += __expf(x[e] - mx);
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) sum += __expf(ldbf(l + v) - mx);
    }
    sum = block_sum(sum);
    float lse = mx + logf(sum);
    float lt = target >= 0 ? ldbf(l + target) : 0.0f;
    __syncthreads();   /* everyone read l[target] before an in-place overwrite */
    if (threadIdx.x == 0 && losses) losses[t] = target < 0 ? 0.0f : lse - lt;
    if (!want_grad) return;
    bf16_t *d = dlogits + (size_t)t * V;
    if (VEC) {
        for (int v = threadIdx.x * 8; v < V; v += blockDim.x * 8) {
            float x[8];
            load8(l + v, x);
#pragma unroll
            for (int e = 0; e < 8; e++)
                x[e] = target < 0 ? 0.0f : dloss * (__expf(x[e] - lse) - (v + e == target ? 1.0f : 0.0f));
            store8(d + v, x);
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float g = target < 0 ? 0.0f : dloss * (__expf(ldbf(l + v) - lse) - (v == target ? 1.0f : 0.0f));
            stbf(d + v, g);
        }
    }
}

/* vocabulary-parallel: one block per row, plain loads (Vl is any size) */
__global__ static void ce_vp_stats_kernel(float *stats, const bf16_t *logits,
                                          const int32_t *targets_local, int Vl)
{
    int t = blockIdx.x;
    const bf16_t *l = logits + (size_t)t * Vl;
    float mx = -FLT_MAX;
    for (int v = threadIdx.x; v < Vl; v += blockDim.x) mx = fmaxf(mx, ldbf(l + v));
    mx = block_max(mx);
    float sum = 0.0f;
    for (int v = threadIdx.x; v < Vl; v += blockDim.x) sum += __expf(ldbf(l + v) - mx);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        int tg = targets_local[t];
        stats[3 * (size_t)t] = mx;
        stats[3 * (size_t)t + 1] = sum;
        stats[3 * (size_t)t + 2] = tg >= 0 ? ldbf(l + tg) : 0.0f;
    }
}

__global__ static void ce_vp_finish_kernel(float *losses, bf16_t *dlogits, const bf16_t *logits,
                                           const int32_t *targets_local, const float *all_stats,
                                           int P, float dloss, int N, int Vl)
{
    int t = blockIdx.x;
    float M = -FLT_MAX, S = 0.0f, z = 0.0f;
    for (int p = 0; p < P; p++) M = fmaxf(M, all_stats[((size_t)p * N + t) * 3]);
    for (int p = 0; p < P; p++) {
        const float *st = all_stats + ((size_t)p * N + t) * 3;
        S += st[1] * __expf(st[0] - M);
        z += st[2];
    }
    float lse = M + logf(S);
    int tg = targets_local[t];
    if (threadIdx.x == 0) losses[t] = lse - z;
    const bf16_t *l = logits + (size_t)t * Vl;
    bf16_t *d = dlogits + (size_t)t * Vl;
    /* each element is read then written by the same thread: in place is safe */
    for (int v = threadIdx.x; v < Vl; v += blockDim.x)
        stbf(d + v, dloss * (__expf(ldbf(l + v) - lse) - (v == tg ? 1.0f : 0.0f)));
}

extern "C" {
void crossentropy_vp_stats_cuda(float *stats, const bf16_t *logits, const int32_t *targets_local,
                                int N, int Vl, cudaStream_t s)
{
    if (N > 0) ce_vp_stats_kernel<<<N, 256, 0, s>>>(stats, logits, targets_local, Vl);
}
void crossentropy_vp_finish_cuda(float *losses, bf16_t *dlogits, const bf16_t *logits,
                                 const int32_t *targets_local, const float *all_stats, int P,
                                 float dloss, int N, int Vl, cudaStream_t s)
{
    if (N > 0)
        ce_vp_finish_kernel<<<N, 256, 0, s>>>(losses, dlogits, logits, targets_local, all_stats, P,
                                              dloss, N, Vl);
}
void crossentropy_forward_cuda(float *losses, const bf16_t *logits, const int32_t *targets, int N,
                               int V, cudaStream_t s)
{
    if (N <= 0) return;
    if (vec8_ok(V, logits)) ce_kernel<true><<<N, 512, 0, s>>>(NULL, losses, logits, targets, 0.0f, V, 0);
    else ce_kernel<false><<<N, 512, 0, s>>>(NULL, losses, logits, targets, 0.0f, V, 0);
}
void crossentropy_fused_cuda(bf16_t *dlogits, float *losses, const bf16_t *logits,
                             const int32_t *targets, float dloss, int N, int V, cudaStream_t s)
{
    if (N <= 0) return;
    if (vec8_ok(V, logits, dlogits)) ce_kernel<true><<<N, 512, 0, s>>>(dlogits, losses, logits, targets, dloss, V, 1);
    else ce_kernel<false><<<N, 512, 0, s>>>(dlogits, losses, logits, targets, dloss, V, 1);
}
}
