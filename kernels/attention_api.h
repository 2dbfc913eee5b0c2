/* attention_api.h: one interface for scaled-dot-product attention on a block
 * of query rows against a block of key/value rows, with the masks that
 * (load-balanced) ring attention needs, softmax statistics out of the forward
 * and into the backward, and the merge of two partial results.
 *
 * Layout (the executor's, token-major; no transposing copies anywhere):
 *   q     [B, Tq, nh,  hd_qk]  token (b,t) at q + (b*Tq + t) * q_stride
 *   k     [B, Tk, nkv, hd_qk]  token (b,t) at k + (b*Tk + t) * k_stride
 *   v     [B, Tk, nkv, hd_v ]  token (b,t) at v + (b*Tk + t) * v_stride
 *   out   [B, Tq, nh,  hd_v ]  contiguous
 *   lse   [B, nh, Tq] fp32     natural log-sum-exp of the scaled scores
 *   dq, dk, dv have the strides of q, k, v; dout the layout of out.
 *   nh % nkv == 0: query head h uses KV head h / (nh / nkv) (GQA).
 *   For a fused qkv [B*T, (nh + 2 nkv) * hd] buffer: k = qkv + nh*hd,
 *   v = qkv + (nh + nkv)*hd, all three strides (nh + 2 nkv) * hd.
 *
 * Scores and mask.  Query row i sits at global position q_offset + i, key j at
 * kv_offset + j:
 *   S[i,j] = (q_i . k_j) / sqrt(hd_qk)
 *   ATTN_MASK_NONE    every key is visible
 *   ATTN_MASK_CAUSAL  key j is visible to row i iff kv_offset + j <= q_offset + i
 *                     (q_offset == kv_offset: the usual top-left causal mask;
 *                     q_offset > kv_offset: a diagonal shifted right by the
 *                     difference, as in a ring step whose KV block starts
 *                     before the query block)
 *   P = softmax_j(S over visible keys), out_i = sum_j P[i,j] v_j,
 *   lse_i = log sum_{j visible} exp(S[i,j]).
 *   A row that sees no key (possible only when q_offset < kv_offset) has
 *   out_i = 0 and lse_i = -inf: it contributes nothing to a merge.
 *
 * Backward (dq, dk, dv WRITTEN, =), with `out` and `lse` those of the rows'
 * full attention (after merging every block: ring attention's backward):
 *   D_i = dout_i . out_i,  P[i,j] = exp(S[i,j] - lse_i) on visible keys,
 *   dS = P o (dout v^T - D),  dq = dS k / sqrt(hd_qk),  dk = dS^T q / sqrt(hd_qk),
 *   dv = P^T dout   (dk, dv of a KV head sum over the heads that share it).
 *
 * Merge of two partial results for the same query rows (ring attention):
 *   lse = log(exp(lse1) + exp(lse2)),
 *   out = exp(lse1 - lse) out1 + exp(lse2 - lse) out2   (exact, not approximate)
 */
#ifndef MOEPLAN_KERNELS_ATTENTION_API_H
#define MOEPLAN_KERNELS_ATTENTION_API_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "core/attn_mask.h"
#include "core/error.h"
#ifdef __cplusplus
}
#endif
#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AttnMask: ATTN_MASK_NONE, ATTN_MASK_CAUSAL (core/attn_mask.h, shared with
 * core/layout.h's ring steps) */

typedef struct {
    int B, Tq, Tk;          /* batch, query rows, key rows */
    int nh, nkv;            /* query heads, KV heads (nh % nkv == 0) */
    int hd_qk, hd_v;        /* head dims of q/k and of v/out (equal except MLA) */
    int q_stride, k_stride, v_stride;   /* elements between consecutive tokens */
    AttnMask mask;
    long q_offset, kv_offset;           /* global positions of row 0 and key 0 */
} AttnShape;

/* The usual self-attention of the executor: Tq = Tk = T, causal, offsets 0. */
AttnShape attn_shape_causal(int B, int T, int nh, int nkv, int hd, int q_stride, int kv_stride);

/* 0, or -1 with one line naming the first field that makes the shape invalid. */
int attn_shape_check(const AttnShape *s, MpError *err);

/* Forward FLOPs of the shape, counting only visible (i, j) pairs:
 * 2 * pairs * nh * (hd_qk + hd_v) * B.  Backward is 2.5x this (five matrix
 * products instead of two; FlashAttention-2's convention). */
double attn_forward_flops(const AttnShape *s);
/* visible (i, j) pairs of one batch entry and head under the mask */
double attn_visible_pairs(const AttnShape *s);

/* ---- CPU reference (fp32 storage, double accumulation) ---------------- */
int attention_block_forward_cpu(const AttnShape *s, float *out, float *lse, const float *q,
                                 const float *k, const float *v);
/* Only query rows [row_begin, row_end) of every batch entry and head are
 * computed (dq of those rows; dk, dv receive those rows' contributions only):
 * lets a test check long sequences on a subsample of rows. */
int attention_block_backward_cpu(const AttnShape *s, float *dq, float *dk, float *dv,
                                  const float *dout, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse,
                                  int row_begin, int row_end);
/* (out1, lse1) <- merge of (out1, lse1) and (out2, lse2).
 * out [B, T, nh, hd] contiguous, lse [B, nh, T]. */
void attention_merge_cpu(float *out1, float *lse1, const float *out2, const float *lse2, int B,
                         int T, int nh, int hd);

#ifdef MOEPLAN_HAVE_CUDA
/* Which implementation runs the GPU attention. */
typedef enum {
    ATTN_IMPL_AUTO = 0,   /* cuDNN when libcudnn 9 loads and supports the shape, else own */
    ATTN_IMPL_OWN = 1,    /* kernels/attention.cu (causal, Tq == Tk, offsets equal) */
    ATTN_IMPL_CUDNN = 2   /* cuDNN's fused flash attention; failure is an error */
} AttnImpl;

typedef struct AttnEngine AttnEngine;

/* Creates the engine on the current device.  AUTO without a usable cuDNN
 * writes the reason into *note (one line; "" when cuDNN loaded) and falls back
 * to OWN; CUDNN without one fails with the reason. */
int attention_engine_create(AttnImpl want, AttnEngine **out, char *note, size_t note_len,
                            MpError *err);
void attention_engine_destroy(AttnEngine *e);
/* "cudnn 9.x.y" or "own" */
const char *attention_engine_name(const AttnEngine *e);
bool attention_engine_uses_cudnn(const AttnEngine *e);

/* Builds (and caches) what forward and backward of this shape need, so that
 * nothing is built inside a timed step.  Fails if neither implementation can
 * run the shape. */
int attention_prepare(AttnEngine *e, const AttnShape *s, MpError *err);
/* Device scratch bytes that attention_forward / attention_backward need
 * (after attention_prepare). */
size_t attention_workspace_bytes(AttnEngine *e, const AttnShape *s, bool backward);

int attention_forward(AttnEngine *e, const AttnShape *s, bf16_t *out, float *lse,
                      const bf16_t *q, const bf16_t *k, const bf16_t *v, void *workspace,
                      size_t workspace_bytes, cudaStream_t stream, MpError *err);
int attention_backward(AttnEngine *e, const AttnShape *s, bf16_t *dq, bf16_t *dk, bf16_t *dv,
                       const bf16_t *dout, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                       const bf16_t *out, const float *lse, void *workspace,
                       size_t workspace_bytes, cudaStream_t stream, MpError *err);

/* GPU merge, the semantics of attention_merge_cpu (bf16 out, fp32 lse). */
int attention_merge_cuda(bf16_t *out1, float *lse1, const bf16_t *out2, const float *lse2, int B,
                         int T, int nh, int hd, cudaStream_t stream, MpError *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
