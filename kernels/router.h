/* router.h: MoE gating, softmax over all experts then top-k.
 *   forward  probs[t,:] = softmax(logits[t,:])                      [N, E] fp32 (saved)
 *            topk_idx[t,j], j < k: the experts of the k largest probs,
 *                 largest first, ties to the lower expert index       [N, k] int32
 *            topk_prob[t,j] = probs[t, topk_idx[t,j]] / (renormalize ? S_t : 1),
 *                 S_t = sum_j probs[t, topk_idx[t,j]]                 [N, k] fp32
 *   backward from dtopk_prob [N, k] fp32 to dlogits [N, E] fp32 (WRITTEN):
 *            dp[e] = sum_j [topk_idx[t,j] = e] * dtopk_prob[t,j] / S      (renormalize)
 *                    - [e selected] * sum_j dtopk_prob[t,j] * topk_prob[t,j] / S
 *                    (without renormalize: S = 1 and no second term)
 *            dlogits[t,e] = probs[t,e] * (dp[e] - sum_e' probs[t,e'] dp[e'])
 * The logits come from the router GEMM (fp32 output).  k <= 16; E <= 1024.
 * No auxiliary load-balancing loss here.
 */
#ifndef MOEPLAN_KERNELS_ROUTER_H
#define MOEPLAN_KERNELS_ROUTER_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void router_forward_cpu(float *probs, int32_t *topk_idx, float *topk_prob, const float *logits,
                        int N, int E, int k, int renormalize);
void router_backward_cpu(float *dlogits, const float *dtopk_prob, const float *probs,
                         const int32_t *topk_idx, const float *topk_prob, int N, int E, int k,
                         int renormalize);

#ifdef MOEPLAN_HAVE_CUDA
void router_forward_cuda(float *probs, int32_t *topk_idx, float *topk_prob, const float *logits,
                         int N, int E, int k, int renormalize, cudaStream_t stream);
void router_backward_cuda(float *dlogits, const float *dtopk_prob, const float *probs,
                          const int32_t *topk_idx, const float *topk_prob, int N, int E, int k,
                          int renormalize, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
