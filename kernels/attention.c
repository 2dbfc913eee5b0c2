/* attention.c: CPU reference of GQA attention on blocks with offsets and
 * masks, softmax statistics and the merge of partial results
 * (kernels/attention_api.h), and the executor's causal self-attention
 * (kernels/attention.h) on top of it.
 * Naive: one query row at a time, its full score row in a double buffer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "core/flops.h"

AttnShape attn_shape_causal(int B, int T, int nh, int nkv, int hd, int q_stride, int kv_stride)
{
    AttnShape s = {.B = B, .Tq = T, .Tk = T, .nh = nh, .nkv = nkv, .hd_qk = hd, .hd_v = hd,
                   .q_stride = q_stride, .k_stride = kv_stride, .v_stride = kv_stride,
                   .mask = ATTN_MASK_CAUSAL, .q_offset = 0, .kv_offset = 0};
    return s;
}

int attn_shape_check(const AttnShape *s, MpError *err)
{
    if (s->B < 1) return mp_fail(err, "attention: B: must be >= 1, got %d", s->B);
    if (s->Tq < 1 || s->Tk < 1) return mp_fail(err, "attention: Tq/Tk: must be >= 1, got %d/%d", s->Tq, s->Tk);
    if (s->nh < 1 || s->nkv < 1 || s->nh % s->nkv)
        return mp_fail(err, "attention: nkv: %d KV heads do not divide %d heads", s->nkv, s->nh);
    if (s->hd_qk < 1 || s->hd_v < 1) return mp_fail(err, "attention: hd: must be >= 1, got %d/%d", s->hd_qk, s->hd_v);
    if (s->q_stride < s->nh * s->hd_qk) return mp_fail(err, "attention: q_stride: %d < nh*hd_qk = %d", s->q_stride, s->nh * s->hd_qk);
    if (s->k_stride < s->nkv * s->hd_qk) return mp_fail(err, "attention: k_stride: %d < nkv*hd_qk = %d", s->k_stride, s->nkv * s->hd_qk);
    if (s->v_stride < s->nkv * s->hd_v) return mp_fail(err, "attention: v_stride: %d < nkv*hd_v = %d", s->v_stride, s->nkv * s->hd_v);
    if (s->mask != ATTN_MASK_NONE && s->mask != ATTN_MASK_CAUSAL) return mp_fail(err, "attention: mask: unknown value %d", (int)s->mask);
    return 0;
}

/* Keys visible to query row i: [0, last) with last = Tk (no mask) or
 * min(Tk, q_offset + i - kv_offset + 1) clamped at 0 (causal). */
static int visible_keys(const AttnShape *s, int i)
{
    if (s->mask == ATTN_MASK_NONE) return s->Tk;
    long last = s->q_offset + i - s->kv_offset + 1;
    if (last < 0) return 0;
    return last > s->Tk ? s->Tk : (int)last;
}

double attn_visible_pairs(const AttnShape *s)
{
    double pairs = 0;
    for (int i = 0; i < s->Tq; i++) pairs += visible_keys(s, i);
    return pairs;
}

double attn_forward_flops(const AttnShape *s)
{
    /* the exact visible pairs of this block (not the area of core/flops'
     * convention), priced by the one attention-core formula */
    return flops_attention_core(attn_visible_pairs(s), (double)s->nh * s->B, s->hd_qk, s->hd_v);
}

int attention_block_forward_cpu(const AttnShape *s, float *out, float *lse, const float *q,
                                 const float *k, const float *v)
{
    int group = s->nh / s->nkv, dq = s->hd_qk, dv = s->hd_v;
    double scale = 1.0 / sqrt((double)dq);
    double *sc = malloc(sizeof(double) * (size_t)s->Tk);
    double *acc = malloc(sizeof(double) * (size_t)dv);
    if (!sc || !acc) { free(sc); free(acc); return -1; }
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->nh; h++) {
            int kh = h / group;
            for (int i = 0; i < s->Tq; i++) {
                const float *qi = q + (size_t)(b * s->Tq + i) * s->q_stride + (size_t)h * dq;
                float *oi = out + ((size_t)(b * s->Tq + i) * s->nh + h) * dv;
                float *li = lse + ((size_t)b * s->nh + h) * s->Tq + i;
                int n = visible_keys(s, i);
                if (n == 0) {
                    for (int c = 0; c < dv; c++) oi[c] = 0.0f;
                    *li = -INFINITY;
                    continue;
                }
                double mx = -INFINITY;
                for (int j = 0; j < n; j++) {
                    const float *kj = k + (size_t)(b * s->Tk + j) * s->k_stride + (size_t)kh * dq;
                    double d = 0.0;
                    for (int c = 0; c < dq; c++) d += (double)qi[c] * kj[c];
                    sc[j] = d * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                double sum = 0.0;
                for (int c = 0; c < dv; c++) acc[c] = 0.0;
                for (int j = 0; j < n; j++) {
                    double p = exp(sc[j] - mx);
                    sum += p;
                    const float *vj = v + (size_t)(b * s->Tk + j) * s->v_stride + (size_t)kh * dv;
                    for (int c = 0; c < dv; c++) acc[c] += p * vj[c];
                }
                for (int c = 0; c < dv; c++) oi[c] = (float)(acc[c] / sum);
                *li = (float)(mx + log(sum));
            }
        }
    free(sc);
    free(acc);
    return 0;
}

int attention_block_backward_cpu(const AttnShape *s, float *dq, float *dk, float *dv,
                                  const float *dout, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse,
                                  int row_begin, int row_end)
{
    int group = s->nh / s->nkv, hq = s->hd_qk, hv = s->hd_v;
    double scale = 1.0 / sqrt((double)hq);
    /* dk, dv sum over query heads and rows: zero them first (only the head
     * columns, so that other columns of a fused buffer are left alone) */
    for (int b = 0; b < s->B; b++)
        for (int j = 0; j < s->Tk; j++)
            for (int kh = 0; kh < s->nkv; kh++) {
                for (int c = 0; c < hq; c++) dk[(size_t)(b * s->Tk + j) * s->k_stride + (size_t)kh * hq + c] = 0.0f;
                for (int c = 0; c < hv; c++) dv[(size_t)(b * s->Tk + j) * s->v_stride + (size_t)kh * hv + c] = 0.0f;
            }
    if (row_begin < 0) row_begin = 0;
    if (row_end > s->Tq) row_end = s->Tq;
    double *dqi = malloc(sizeof(double) * (size_t)hq);
    if (!dqi) return -1;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->nh; h++) {
            int kh = h / group;
            for (int i = row_begin; i < row_end; i++) {
                const float *qi = q + (size_t)(b * s->Tq + i) * s->q_stride + (size_t)h * hq;
                const float *oi = out + ((size_t)(b * s->Tq + i) * s->nh + h) * hv;
                const float *doi = dout + ((size_t)(b * s->Tq + i) * s->nh + h) * hv;
                double L = lse[((size_t)b * s->nh + h) * s->Tq + i];
                double Dl = 0.0;
                for (int c = 0; c < hv; c++) Dl += (double)doi[c] * oi[c];
                for (int c = 0; c < hq; c++) dqi[c] = 0.0;
                int n = visible_keys(s, i);
                for (int j = 0; j < n; j++) {
                    size_t ko = (size_t)(b * s->Tk + j) * s->k_stride + (size_t)kh * hq;
                    size_t vo = (size_t)(b * s->Tk + j) * s->v_stride + (size_t)kh * hv;
                    double sdot = 0.0, dp = 0.0;
                    for (int c = 0; c < hq; c++) sdot += (double)qi[c] * k[ko + c];
                    for (int c = 0; c < hv; c++) dp += (double)doi[c] * v[vo + c];
                    double p = exp(sdot * scale - L);
                    double ds = p * (dp - Dl);
                    for (int c = 0; c < hq; c++) {
                        dqi[c] += ds * k[ko + c] * scale;
                        dk[ko + c] += (float)(ds * qi[c] * scale);
                    }
                    for (int c = 0; c < hv; c++) dv[vo + c] += (float)(p * doi[c]);
                }
                float *dqo = dq + (size_t)(b * s->Tq + i) * s->q_stride + (size_t)h * hq;
                for (int c = 0; c < hq; c++) dqo[c] = (float)dqi[c];
            }
        }
    free(dqi);
    return 0;
}

void attention_merge_cpu(float *out1, float *lse1, const float *out2, const float *lse2, int B,
                         int T, int nh, int hd)
{
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                size_t li = ((size_t)b * nh + h) * T + t;
                float *o1 = out1 + ((size_t)(b * T + t) * nh + h) * hd;
                const float *o2 = out2 + ((size_t)(b * T + t) * nh + h) * hd;
                double l1 = lse1[li], l2 = lse2[li];
                double m = l1 > l2 ? l1 : l2;
                if (m == -INFINITY) {   /* neither block sees a key */
                    for (int c = 0; c < hd; c++) o1[c] = 0.0f;
                    continue;
                }
                /* lse = m + log(e^(l1-m) + e^(l2-m)): no overflow, exact */
                double l = m + log(exp(l1 - m) + exp(l2 - m));
                double w1 = exp(l1 - l), w2 = exp(l2 - l);
                for (int c = 0; c < hd; c++) o1[c] = (float)(w1 * o1[c] + w2 * o2[c]);
                lse1[li] = (float)l;
            }
}

int attention_forward_cpu(float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, int T, int nh, int nkv, int hd,
                           int q_stride, int kv_stride)
{
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, q_stride, kv_stride);
    return attention_block_forward_cpu(&s, out, lse, q, k, v);
}

int attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v,
                            const float *out, const float *lse, int B, int T, int nh,
                            int nkv, int hd, int q_stride, int kv_stride)
{
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, q_stride, kv_stride);
    return attention_block_backward_cpu(&s, dq, dk, dv, dout, q, k, v, out, lse, 0, T);
}
