/* attention_api.cu: the GPU side of kernels/attention_api.h: picks cuDNN's
 * fused attention (kernels/attention_cudnn.cu) or the project's own kernel
 * (kernels/attention.cu) per engine, and the merge of partial results. */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "kernels/attention_cudnn.h"

struct AttnEngine {
    AttnImpl want;
    CudnnAttn *cudnn;     /* NULL: own kernel only */
    char name[32];
};

extern "C" int attention_engine_create(AttnImpl want, AttnEngine **out, char *note, size_t note_len,
                                       MpError *err)
{
    *out = NULL;
    if (note && note_len) note[0] = 0;
    AttnEngine *e = (AttnEngine *)calloc(1, sizeof *e);
    if (!e) return mp_fail(err, "attention: out of host memory");
    e->want = want;
    snprintf(e->name, sizeof e->name, "own");
    if (want != ATTN_IMPL_OWN) {
        MpError why = {{0}};
        if (cudnn_attn_open(&e->cudnn, &why)) {
            if (want == ATTN_IMPL_CUDNN) {
                free(e);
                return mp_fail(err, "--attention cudnn: %s", why.msg);
            }
            if (note && note_len) snprintf(note, note_len, "%s; using the own attention kernel", why.msg);
        } else {
            long v = cudnn_attn_version(e->cudnn);
            snprintf(e->name, sizeof e->name, "cudnn %ld.%ld.%ld", v / 10000, (v / 100) % 100, v % 100);
        }
    }
    *out = e;
    return 0;
}

extern "C" void attention_engine_destroy(AttnEngine *e)
{
    if (!e) return;
    cudnn_attn_close(e->cudnn);
    free(e);
}

extern "C" const char *attention_engine_name(const AttnEngine *e) { return e->name; }
extern "C" bool attention_engine_uses_cudnn(const AttnEngine *e) { return e->cudnn != NULL; }

/* What kernels/attention.cu runs: causal self-attention of T rows, equal
 * offsets, one head dim of 64 or 128, K and V with the same stride. */
static int own_supports(const AttnShape *s, MpError *err)
{
    if (attn_shape_check(s, err)) return -1;
    if (s->mask != ATTN_MASK_CAUSAL || s->Tq != s->Tk || s->q_offset != s->kv_offset)
        return mp_fail(err, "attention: own kernel: only causal self-attention (Tq == Tk, equal offsets)");
    if (s->hd_qk != s->hd_v || (s->hd_qk != 64 && s->hd_qk != 128))
        return mp_fail(err, "attention: own kernel: hd: %d/%d, needs 64 or 128 for both", s->hd_qk, s->hd_v);
    if (s->k_stride != s->v_stride)
        return mp_fail(err, "attention: own kernel: k_stride %d != v_stride %d", s->k_stride, s->v_stride);
    return 0;
}

extern "C" int attention_prepare(AttnEngine *e, const AttnShape *s, MpError *err)
{
    if (attn_shape_check(s, err)) return -1;
    if (!e->cudnn) return own_supports(s, err);
    return cudnn_attn_prepare(e->cudnn, s, false, err) || cudnn_attn_prepare(e->cudnn, s, true, err) ? -1 : 0;
}

extern "C" size_t attention_workspace_bytes(AttnEngine *e, const AttnShape *s, bool backward)
{
    if (e->cudnn) return cudnn_attn_workspace_bytes(e->cudnn, s, backward);
    return backward ? attention_backward_workspace_bytes(s->B, s->Tq, s->nh, s->nkv, s->hd_qk) : 0;
}

extern "C" int attention_forward(AttnEngine *e, const AttnShape *s, bf16_t *out, float *lse,
                                 const bf16_t *q, const bf16_t *k, const bf16_t *v, void *workspace,
                                 size_t workspace_bytes, cudaStream_t stream, MpError *err)
{
    if (e->cudnn)
        return cudnn_attn_forward(e->cudnn, s, out, lse, q, k, v, workspace, workspace_bytes, stream, err);
    if (own_supports(s, err)) return -1;
    attention_forward_cuda(out, lse, q, k, v, s->B, s->Tq, s->nh, s->nkv, s->hd_qk, s->q_stride,
                           s->k_stride, stream);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return mp_fail(err, "attention: forward launch: %s", cudaGetErrorString(ce));
    return 0;
}

extern "C" int attention_backward(AttnEngine *e, const AttnShape *s, bf16_t *dq, bf16_t *dk, bf16_t *dv,
                                  const bf16_t *dout, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                                  const bf16_t *out, const float *lse, void *workspace,
                                  size_t workspace_bytes, cudaStream_t stream, MpError *err)
{
    if (e->cudnn)
        return cudnn_attn_backward(e->cudnn, s, dq, dk, dv, dout, q, k, v, out, lse, workspace,
                                   workspace_bytes, stream, err);
    if (own_supports(s, err)) return -1;
    size_t need = attention_backward_workspace_bytes(s->B, s->Tq, s->nh, s->nkv, s->hd_qk);
    if (workspace_bytes < need)
        return mp_fail(err, "attention: workspace: %zu bytes given, the backward needs %zu", workspace_bytes, need);
    attention_backward_cuda(dq, dk, dv, workspace, dout, q, k, v, out, lse, s->B, s->Tq, s->nh, s->nkv,
                            s->hd_qk, s->q_stride, s->k_stride, stream);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return mp_fail(err, "attention: backward launch: %s", cudaGetErrorString(ce));
    return 0;
}

/* One warp per (b, t, h) row: lanes stride over hd.  lse [B, nh, T]. */
__global__ void attention_merge_kernel(__nv_bfloat16 *out1, float *lse1, const __nv_bfloat16 *out2,
                                       const float *lse2, int B, int T, int nh, int hd)
{
    size_t row = blockIdx.x * (size_t)(blockDim.x >> 5) + (threadIdx.x >> 5);   /* (b*T + t)*nh + h */
    int lane = threadIdx.x & 31;
    if (row >= (size_t)B * T * nh) return;
    int h = (int)(row % nh);
    size_t bt = row / nh;
    int t = (int)(bt % T), b = (int)(bt / T);
    size_t li = ((size_t)b * nh + h) * T + t;
    float l1 = lse1[li], l2 = lse2[li];
    float m = fmaxf(l1, l2);
    __nv_bfloat16 *o1 = out1 + row * hd;
    const __nv_bfloat16 *o2 = out2 + row * hd;
    if (m == -INFINITY) {   /* neither block sees a key */
        for (int c = lane; c < hd; c += 32) o1[c] = __float2bfloat16(0.0f);
        return;
    }
    float l = m + logf(expf(l1 - m) + expf(l2 - m));
    float w1 = expf(l1 - l), w2 = expf(l2 - l);
    for (int c = lane; c < hd; c += 32)
        o1[c] = __float2bfloat16(w1 * __bfloat162float(o1[c]) + w2 * __bfloat162float(o2[c]));
    __syncwarp();
    if (lane == 0) lse1[li] = l;
}

extern "C" int attention_merge_cuda(bf16_t *out1, float *lse1, const bf16_t *out2, const float *lse2,
                                    int B, int T, int nh, int hd, cudaStream_t stream, MpError *err)
{
    size_t rows = (size_t)B * T * nh;
    if (!rows) return 0;
    int warps = 8;
    unsigned blocks = (unsigned)((rows + warps - 1) / warps);
    attention_merge_kernel<<<blocks, warps * 32, 0, stream>>>((__nv_bfloat16 *)out1, lse1,
                                                             (const __nv_bfloat16 *)out2, lse2, B, T, nh, hd);
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return mp_fail(err, "attention: merge launch: %s", cudaGetErrorString(ce));
    return 0;
}
