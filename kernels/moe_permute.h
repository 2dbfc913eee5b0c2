/* moe_permute.h: token permutation for the MoE layer.
 *
 * Plan (bookkeeping): from topk_idx [N, k] int32 (router output) and E experts
 *   expert_counts[e] = number of (token, slot) pairs routed to expert e that
 *                      are kept, min(assigned, capacity)              [E] int32
 *   row_of[t*k + j]  = row of pair (t, j) in the permuted buffer, sorted by
 *                      expert, then by token order (stable); -1 if dropped [N*k]
 *   capacity <= 0: dropless (every pair kept).  capacity > 0: per expert,
 *   the first `capacity` pairs in token order are kept (Megatron's
 *   "position" drop policy), the rest dropped.
 *   Return value (CPU) = rows = sum_e expert_counts[e].
 *
 * permute   forward  out[row_of[t,j], :] = inp[t, :]        inp [N, C], out [rows, C]
 *           backward dinp[t, :] = sum_{j kept} dout[row_of[t,j], :]   (WRITTEN)
 * unpermute forward  out[t, :] = sum_{j kept} prob[t,j] * inp[row_of[t,j], :]
 *                                                           inp [rows, C] (expert outputs),
 *                                                           prob [N, k] fp32, out [N, C]
 *           backward dinp[row_of[t,j], :] = prob[t,j] * dout[t, :]      (WRITTEN)
 *                    dprob[t,j] = dout[t, :] · inp[row_of[t,j], :]  (0 if dropped; WRITTEN)
 * gather rows: out[i, :] = inp[src[i], :], out [n, C] (for reordering chunks
 *           after the all-to-all; its backward is a gather with the inverse map).
 *
 * CUDA: activations bf16, prob/dprob fp32, maps int32 in device memory;
 * moe_plan_cuda writes expert_counts to device memory (copy it to the host
 * for the grouped GEMM and the all-to-all sizes).
 */
#ifndef MOEPLAN_KERNELS_MOE_PERMUTE_H
#define MOEPLAN_KERNELS_MOE_PERMUTE_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* returns the kept rows, or -1 when its host scratch cannot be allocated */
int moe_plan_cpu(int32_t *row_of, int32_t *expert_counts, const int32_t *topk_idx, int N,
                 int k, int E, int capacity);
void moe_permute_forward_cpu(float *out, const float *inp, const int32_t *row_of, int N, int k,
                             int C);
void moe_permute_backward_cpu(float *dinp, const float *dout, const int32_t *row_of, int N,
                              int k, int C);
void moe_unpermute_forward_cpu(float *out, const float *inp, const float *prob,
                               const int32_t *row_of, int N, int k, int C);
void moe_unpermute_backward_cpu(float *dinp, float *dprob, const float *dout, const float *inp,
                                const float *prob, const int32_t *row_of, int N, int k, int C);
/* out [n, C]: row i = inp row src[i], zeros where src[i] < 0 (padding) */
void gather_rows_cpu(float *out, const float *inp, const int32_t *src, int n, int C);

#ifdef MOEPLAN_HAVE_CUDA
void moe_plan_cuda(int32_t *row_of, int32_t *expert_counts, const int32_t *topk_idx, int N,
                   int k, int E, int capacity, cudaStream_t stream);
void moe_permute_forward_cuda(bf16_t *out, const bf16_t *inp, const int32_t *row_of, int N,
                              int k, int C, cudaStream_t stream);
void moe_permute_backward_cuda(bf16_t *dinp, const bf16_t *dout, const int32_t *row_of, int N,
                               int k, int C, cudaStream_t stream);
void moe_unpermute_forward_cuda(bf16_t *out, const bf16_t *inp, const float *prob,
                                const int32_t *row_of, int N, int k, int C, cudaStream_t stream);
/* dinp rows that no pair references are left untouched (there are none when
 * rows = sum of expert_counts). */
void moe_unpermute_backward_cuda(bf16_t *dinp, float *dprob, const bf16_t *dout,
                                 const bf16_t *inp, const float *prob, const int32_t *row_of,
                                 int N, int k, int C, cudaStream_t stream);
void gather_rows_cuda(bf16_t *out, const bf16_t *inp, const int32_t *src, int n, int C,
                      cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
