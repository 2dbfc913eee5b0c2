/* crossentropy.cu: softmax cross-entropy, forward and fused forward+backward
 * (kernels/crossentropy.h).  One block per row: pass 1 max, pass 2 sum of
 * exp, pass 3 (fused) dlogits; row reads hit L2 after the first pass. */
#include "kernels/cuda_util.cuh"
#include "kernels/crossentropy.h"

__global__ static void ce_kernel(bf16_t *dlogits, float *losses, const bf16_t *logits,
                                 const int32_t *targets, float dloss, int V, int want_grad)
{
    int t = blockIdx.x;
    const bf16_t *l = logits + (size_t)t * V;
    int target = targets[t];
    float mx = -FLT_MAX;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, ldbf(l + v));
    mx = block_max(mx);
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) sum += __expf(ldbf(l + v) - mx);
    sum = block_sum(sum);
    float lse = mx + logf(sum);
    float lt = target >= 0 ? ldbf(l + target) : 0.0f;
    __syncthreads();   /* everyone read l[target] before an in-place overwrite */
    if (threadIdx.x == 0 && losses) losses[t] = target < 0 ? 0.0f : lse - lt;
    if (!want_grad) return;
    bf16_t *d = dlogits + (size_t)t * V;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float g = target < 0 ? 0.0f : dloss * (__expf(ldbf(l + v) - lse) - (v == target ? 1.0f : 0.0f));
        stbf(d + v, g);
    }
}

extern "C" {
void crossentropy_forward_cuda(float *losses, const bf16_t *logits, const int32_t *targets, int N,
                               int V, cudaStream_t s)
{ if (N > 0) ce_kernel<<<N, 512, 0, s>>>(NULL, losses, logits, targets, 0.0f, V, 0); }
void crossentropy_fused_cuda(bf16_t *dlogits, float *losses, const bf16_t *logits,
                             const int32_t *targets, float dloss, int N, int V, cudaStream_t s)
{ if (N > 0) ce_kernel<<<N, 512, 0, s>>>(dlogits, losses, logits, targets, dloss, V, 1); }
}
