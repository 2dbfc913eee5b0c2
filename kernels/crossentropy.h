/* crossentropy.h: softmax cross-entropy over the vocabulary.
 *   logits [N, V], targets [N] int32 (-1 = ignore: loss 0, gradient 0)
 *   forward  losses[t] = logsumexp(logits[t,:]) - logits[t, targets[t]]     [N] fp32
 *   backward dlogits[t,v] = dloss * (softmax(logits[t,:])[v] - [v = targets[t]])
 *            dloss is one scalar for all rows (e.g. 1 / number of counted tokens)
 *            dlogits [N, V] WRITTEN.
 * CUDA: logits bf16; the fused kernel computes losses and dlogits in one pass
 * over each row (dlogits may alias logits: computed in place); losses fp32.
 */
/* Vocabulary-parallel cross-entropy (Megatron's VocabParallelCrossEntropy):
 * the vocabulary is split over P ranks, each holding logits [N, Vl] of its
 * slice and targets_local[t] = target - v0 when the target is in its slice,
 * else -1.  No rank sees a full row:
 *   stats    stats[t] = (max_v l[t,v], sum_v exp(l[t,v] - max), l[t, target] or 0)
 *            [N, 3] fp32, of the local slice
 *   (the caller all-gathers stats over the P ranks: all_stats [P, N, 3])
 *   finish   lse[t] = M + log sum_p s_p exp(m_p - M), M = max_p m_p;
 *            losses[t] = lse[t] - sum_p z_p                         [N] fp32
 *            dlogits[t,v] = dloss * (exp(l[t,v] - lse[t]) - [v = targets_local[t]])
 *            (dlogits may alias logits)
 * Every target is counted (no ignore index). */
#ifndef MOEPLAN_KERNELS_CROSSENTROPY_H
#define MOEPLAN_KERNELS_CROSSENTROPY_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void crossentropy_forward_cpu(float *losses, const float *logits, const int32_t *targets, int N,
                              int V);
void crossentropy_backward_cpu(float *dlogits, const float *logits, const int32_t *targets,
                               float dloss, int N, int V);

void crossentropy_vp_stats_cpu(float *stats, const float *logits, const int32_t *targets_local,
                               int N, int Vl);
void crossentropy_vp_finish_cpu(float *losses, float *dlogits, const float *logits,
                                const int32_t *targets_local, const float *all_stats, int P,
                                float dloss, int N, int Vl);

#ifdef MOEPLAN_HAVE_CUDA
void crossentropy_vp_stats_cuda(float *stats, const bf16_t *logits, const int32_t *targets_local,
                                int N, int Vl, cudaStream_t stream);
void crossentropy_vp_finish_cuda(float *losses, bf16_t *dlogits, const bf16_t *logits,
                                 const int32_t *targets_local, const float *all_stats, int P,
                                 float dloss, int N, int Vl, cudaStream_t stream);
void crossentropy_forward_cuda(float *losses, const bf16_t *logits, const int32_t *targets, int N,
                               int V, cudaStream_t stream);
/* losses (may be NULL) and dlogits in one kernel; dlogits may equal logits. */
void crossentropy_fused_cuda(bf16_t *dlogits, float *losses, const bf16_t *logits,
                             const int32_t *targets, float dloss, int N, int V,
                             cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
