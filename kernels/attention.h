/* attention.h: causal multi-head attention with grouped KV heads (GQA).
 *
 * Shapes (row-major, token-major like the QKV GEMM produces them):
 *   q   [B, T, nh,  hd]  token (b,t) starts at q + (b*T + t) * q_stride
 *   k,v [B, T, nkv, hd]  token (b,t) starts at k + (b*T + t) * kv_stride
 *   out [B, T, nh,  hd]  contiguous
 *   lse [B, nh, T] fp32  log-sum-exp of the scaled scores of each query row
 *   q_stride = nh*hd and kv_stride = nkv*hd for separate tensors; for a fused
 *   qkv [B*T, (nh + 2 nkv) * hd] pass q = qkv, k = qkv + nh*hd,
 *   v = qkv + (nh + nkv)*hd and both strides = (nh + 2 nkv) * hd.
 *   nh % nkv == 0; query head h uses KV head h / (nh / nkv).
 *
 *   S[i,j] = (q_i · k_j) / sqrt(hd) for j <= i (causal), P = softmax_j(S),
 *   out_i = sum_j P[i,j] v_j,  lse_i = log sum_j exp(S[i,j]).
 *
 * backward (dq, dk, dv use the same strides as q, k, v; all WRITTEN, =):
 *   Dl_i = dout_i · out_i,  dP = dout · v^T,  dS = P ⊙ (dP - Dl),
 *   dq = dS · k / sqrt(hd),  dk = dS^T · q / sqrt(hd),  dv = P^T · dout
 *   (dk, dv of a KV head sum over the nh/nkv query heads that share it).
 *
 * CUDA: q, k, v, out, dout, dq, dk, dv bf16; lse fp32; flash-attention style
 * (tiles of 64 keys, online softmax, tensor cores through mma.sync bf16,
 * fp32 accumulation); hd must be 64 or 128 on the GPU.
 */
#ifndef MOEPLAN_KERNELS_ATTENTION_H
#define MOEPLAN_KERNELS_ATTENTION_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU references return 0, or -1 when their host scratch cannot be allocated. */
int attention_forward_cpu(float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, int T, int nh, int nkv, int hd,
                           int q_stride, int kv_stride);
int attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v,
                            const float *out, const float *lse, int B, int T, int nh,
                            int nkv, int hd, int q_stride, int kv_stride);

#ifdef MOEPLAN_HAVE_CUDA
/* Return 0 or a KernelStatus (kernels/common.h): hd other than 64 / 128 is
 * cudaErrorInvalidValue. */
KernelStatus attention_forward_cuda(bf16_t *out, float *lse, const bf16_t *q, const bf16_t *k,
                                    const bf16_t *v, int B, int T, int nh, int nkv, int hd,
                                    int q_stride, int kv_stride, cudaStream_t stream);
/* Device scratch the backward needs, in bytes (Dl and an fp32 dq accumulator). */
size_t attention_backward_workspace_bytes(int B, int T, int nh, int nkv, int hd);
KernelStatus attention_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, void *workspace,
                                     const bf16_t *dout, const bf16_t *q, const bf16_t *k,
                                     const bf16_t *v, const bf16_t *out, const float *lse, int B,
                                     int T, int nh, int nkv, int hd, int q_stride, int kv_stride,
                                     cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
