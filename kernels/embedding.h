/* embedding.h: token embedding lookup.
 *   forward  out[t, :] = wte[tokens[t], :]           out [N, C], wte [V, C], tokens [N] int32
 *   backward dwte[tokens[t], :] += dout[t, :]        dwte [V, C] fp32 (accumulates)
 *   A negative token id (vocabulary-parallel embedding: the token's row lives
 *   on another tensor-parallel rank) gives a zero row forward and nothing
 *   backward.
 * CUDA: wte/out/dout bf16, dwte fp32 (atomicAdd: rows of repeated tokens add
 * in an unspecified order).
 */
#ifndef MOEPLAN_KERNELS_EMBEDDING_H
#define MOEPLAN_KERNELS_EMBEDDING_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void embedding_forward_cpu(float *out, const int32_t *tokens, const float *wte, int N, int C);
void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tokens, int N, int C);

#ifdef MOEPLAN_HAVE_CUDA
void embedding_forward_cuda(bf16_t *out, const int32_t *tokens, const bf16_t *wte, int N, int C,
                            cudaStream_t stream);
void embedding_backward_cuda(float *dwte, const bf16_t *dout, const int32_t *tokens, int N, int C,
                             cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
