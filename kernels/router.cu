/* router.cu: MoE router softmax + top-k and its backward (kernels/router.h).
 * One warp per token. */
#include "kernels/cuda_util.cuh"
#include "kernels/router.h"

#define ROUTER_MAX_K 16

__global__ static void router_fwd_kernel(float *probs, int32_t *topk_idx, float *topk_prob,
                                         const float *logits, int N, int E, int k, int renorm)
{
    int lane = threadIdx.x & 31;
    int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (t >= N) return;
    const float *l = logits + (size_t)t * E;
    float *p = probs + (size_t)t * E;
    float mx = -FLT_MAX;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) sum += expf(l[e] - mx);
    sum = warp_sum(sum);
    for (int e = lane; e < E; e += 32) p[e] = expf(l[e] - mx) / sum;
    __syncwarp();
    int sel[ROUTER_MAX_K];
    float selp[ROUTER_MAX_K], total = 0.0f;
#pragma unroll
    for (int j = 0; j < ROUTER_MAX_K; j++) {
        if (j >= k) break;
        float best = -1.0f;
        int besti = 0x7fffffff;
        for (int e = lane; e < E; e += 32) {
            bool taken = false;
#pragma unroll
            for (int i = 0; i < ROUTER_MAX_K; i++) if (i < j && sel[i] == e) taken = true;
            float v = p[e];
            if (!taken && (v > best || (v == best && e < besti))) { best = v; besti = e; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ob = __shfl_xor_sync(0xffffffffu, best, o);
            int oi = __shfl_xor_sync(0xffffffffu, besti, o);
            if (ob > best || (ob == best && oi < besti)) { best = ob; besti = oi; }
        }
        sel[j] = besti;
        selp[j] = best;
        total += best;
    }
    if (lane == 0) {
        for (int j = 0; j < k && j < ROUTER_MAX_K; j++) {
            topk_idx[(size_t)t * k + j] = sel[j];
            topk_prob[(size_t)t * k + j] = renorm ? selp[j] / total : selp[j];
        }
    }
}

__global__ static void router_bwd_kernel(float *dlogits, const float *dtopk, const float *probs,
                                         const int32_t *topk_idx, const float *topk_prob, int N,
                                         int E, int k, int renorm)
{
    int lane = threadIdx.x & 31;
    int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (t >= N) return;
    const float *p = probs + (size_t)t * E;
    const int32_t *idx = topk_idx + (size_t)t * k;
    const float *dw = dtopk + (size_t)t * k, *w = topk_prob + (size_t)t * k;
    float S = 1.0f, wdw = 0.0f;
    if (renorm) {
        S = 0.0f;
        for (int j = 0; j < k; j++) { S += p[idx[j]]; wdw += dw[j] * w[j]; }
    }
    float pdp = 0.0f;
    for (int j = 0; j < k; j++) pdp += p[idx[j]] * (dw[j] / S - (renorm ? wdw / S : 0.0f));
    float *dl = dlogits + (size_t)t * E;
    for (int e = lane; e < E; e += 32) {
        float dp = 0.0f;
        for (int j = 0; j < k; j++)
            if (idx[j] == e) dp = dw[j] / S - (renorm ? wdw / S : 0.0f);
        dl[e] = p[e] * (dp - pdp);
    }
}

extern "C" {
void router_forward_cuda(float *probs, int32_t *topk_idx, float *topk_prob, const float *logits,
                         int N, int E, int k, int renormalize, cudaStream_t s)
{
    if (N <= 0) return;
    router_fwd_kernel<<<(N + 7) / 8, 256, 0, s>>>(probs, topk_idx, topk_prob, logits, N, E, k, renormalize);
}
void router_backward_cuda(float *dlogits, const float *dtopk_prob, const float *probs,
                          const int32_t *topk_idx, const float *topk_prob, int N, int E, int k,
                          int renormalize, cudaStream_t s)
{
    if (N <= 0) return;
    router_bwd_kernel<<<(N + 7) / 8, 256, 0, s>>>(dlogits, dtopk_prob, probs, topk_idx, topk_prob, N, E, k, renormalize);
}
}
