/* crossentropy.h: softmax cross-entropy over the vocabulary.
 *   logits [N, V], targets [N] int32 (-1 = ignore: loss 0, gradient 0)
 *   forward  losses[t] = logsumexp(logits[t,:]) - logits[t, targets[t]]     [N] fp32
 *   backward dlogits[t,v] = dloss * (softmax(logits[t,:])[v] - [v = targets[t]])
 *            dloss is one scalar for all rows (e.g. 1 / number of counted tokens)
 *            dlogits [N, V] WRITTEN.
 * CUDA: logits bf16; the fused kernel computes losses and dlogits in one pass
 * over each row (dlogits may alias logits: computed in place); losses fp32.
 */
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

#ifdef MOEPLAN_HAVE_CUDA
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
