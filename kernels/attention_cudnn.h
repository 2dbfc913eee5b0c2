/* attention_cudnn.h: scaled-dot-product attention through cuDNN 9's graph
 * (backend) API: the fused flash-attention forward and backward, with the
 * semantics, layout and masks of kernels/attention_api.h.
 *
 * libcudnn.so.9 is loaded with dlopen when the context is opened, so a binary
 * built here runs on a machine without cuDNN (cudnn_attn_open then fails with
 * the reason, and attention_api.c falls back to kernels/attention.cu).  Built
 * without cuDNN's headers, every call fails with "built without cuDNN".
 *
 * The graphs are those cuDNN's flash-attention engines recognise (the
 * operation sequence cudnn-frontend's SDPA nodes expand to):
 *   forward   S = Q K^T; S *= scale; [causal: S = row + shift >= col ? S : -inf];
 *             M = max_j S; E = exp(S - M); Z = sum_j E; Stats = M + log Z;
 *             P = E / Z (bf16); O = P V
 *   backward  D = sum_d (dO o O); S as above; P = exp(S - Stats);
 *             dV = P^T dO; dS = P o (dO V^T - D) * scale; dK = dS^T Q;
 *             dQacc = dS K (fp32, workspace); dQ = dQacc
 *   (GQA: the head dimension of K and V broadcasts; dK and dV of a KV head
 *   are sums over its query heads, a reduction over the head axis).
 * Plans are built once per shape (cudnn_attn_prepare) and cached.
 *
 * Limits (cuDNN's, checked when the plan is built): hd multiple of 8,
 * <= 128 (hd_qk 192 with hd_v 128 on newer cuDNN); causal shift
 * q_offset - kv_offset >= 0; strides multiples of 8 elements.
 */
#ifndef MOEPLAN_KERNELS_ATTENTION_CUDNN_H
#define MOEPLAN_KERNELS_ATTENTION_CUDNN_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/attention_api.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef MOEPLAN_HAVE_CUDA
typedef struct CudnnAttn CudnnAttn;

/* Loads libcudnn.so.9 and creates a handle on the current device.  On
 * failure returns -1 and writes one line (why cuDNN cannot be used) to err. */
int cudnn_attn_open(CudnnAttn **out, MpError *err);
void cudnn_attn_close(CudnnAttn *c);
/* cudnnGetVersion(), e.g. 91300 */
long cudnn_attn_version(const CudnnAttn *c);

/* Builds and caches the forward (backward = false) or backward plan. */
int cudnn_attn_prepare(CudnnAttn *c, const AttnShape *s, bool backward, MpError *err);
/* Device workspace bytes of that plan (0 if it is not prepared). */
size_t cudnn_attn_workspace_bytes(CudnnAttn *c, const AttnShape *s, bool backward);

int cudnn_attn_forward(CudnnAttn *c, const AttnShape *s, bf16_t *out, float *lse,
                       const bf16_t *q, const bf16_t *k, const bf16_t *v, void *workspace,
                       size_t workspace_bytes, cudaStream_t stream, MpError *err);
int cudnn_attn_backward(CudnnAttn *c, const AttnShape *s, bf16_t *dq, bf16_t *dk, bf16_t *dv,
                        const bf16_t *dout, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                        const bf16_t *out, const float *lse, void *workspace,
                        size_t workspace_bytes, cudaStream_t stream, MpError *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
