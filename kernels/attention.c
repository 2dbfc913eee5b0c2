/* attention.c: CPU reference of causal GQA attention (kernels/attention.h).
 * Naive: one query row at a time, full score row in a double buffer. */
#include <math.h>
#include <stdlib.h>

#include "kernels/attention.h"

int attention_forward_cpu(float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, int T, int nh, int nkv, int hd,
                           int q_stride, int kv_stride)
{
    int group = nh / nkv;
    double scale = 1.0 / sqrt((double)hd);
    double *s = malloc(sizeof(double) * (size_t)T);
    double *acc = malloc(sizeof(double) * (size_t)hd);
    if (!s || !acc) { free(s); free(acc); return -1; }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int kh = h / group;
            for (int i = 0; i < T; i++) {
                const float *qi = q + (size_t)(b * T + i) * q_stride + (size_t)h * hd;
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const float *kj = k + (size_t)(b * T + j) * kv_stride + (size_t)kh * hd;
                    double d = 0.0;
                    for (int c = 0; c < hd; c++) d += (double)qi[c] * kj[c];
                    s[j] = d * scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0.0;
                for (int c = 0; c < hd; c++) acc[c] = 0.0;
                for (int j = 0; j <= i; j++) {
                    double p = exp(s[j] - mx);
                    sum += p;
                    const float *vj = v + (size_t)(b * T + j) * kv_stride + (size_t)kh * hd;
                    for (int c = 0; c < hd; c++) acc[c] += p * vj[c];
                }
                float *oi = out + ((size_t)(b * T + i) * nh + h) * hd;
                for (int c = 0; c < hd; c++) oi[c] = (float)(acc[c] / sum);
                lse[((size_t)b * nh + h) * T + i] = (float)(mx + log(sum));
            }
        }
    free(s);
    free(acc);
    return 0;
}

int attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v,
                            const float *out, const float *lse, int B, int T, int nh,
                            int nkv, int hd, int q_stride, int kv_stride)
{
    int group = nh / nkv;
    double scale = 1.0 / sqrt((double)hd);
    /* dk, dv sum over query heads: zero them first (only the hd values of
     * each head, so that other columns of a fused buffer are left alone). */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++)
            for (int kh = 0; kh < nkv; kh++)
                for (int c = 0; c < hd; c++) {
                    size_t o = (size_t)(b * T + j) * kv_stride + (size_t)kh * hd + c;
                    dk[o] = 0.0f;
                    dv[o] = 0.0f;
                }
    double *dqi = malloc(sizeof(double) * (size_t)hd);
    if (!dqi) return -1;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int kh = h / group;
            for (int i = 0; i < T; i++) {
                const float *qi = q + (size_t)(b * T + i) * q_stride + (size_t)h * hd;
                const float *oi = out + ((size_t)(b * T + i) * nh + h) * hd;
                const float *doi = dout + ((size_t)(b * T + i) * nh + h) * hd;
                double L = lse[((size_t)b * nh + h) * T + i];
                double Dl = 0.0;
                for (int c = 0; c < hd; c++) Dl += (double)doi[c] * oi[c];
                for (int c = 0; c < hd; c++) dqi[c] = 0.0;
                for (int j = 0; j <= i; j++) {
                    size_t ko = (size_t)(b * T + j) * kv_stride + (size_t)kh * hd;
                    double sdot = 0.0, dp = 0.0;
                    for (int c = 0; c < hd; c++) {
                        sdot += (double)qi[c] * k[ko + c];
                        dp += (double)doi[c] * v[ko + c];
                    }
                    double p = exp(sdot * scale - L);
                    double ds = p * (dp - Dl);
                    for (int c = 0; c < hd; c++) {
                        dqi[c] += ds * k[ko + c] * scale;
                        dk[ko + c] += (float)(ds * qi[c] * scale);
                        dv[ko + c] += (float)(p * doi[c]);
                    }
                }
                float *dqo = dq + (size_t)(b * T + i) * q_stride + (size_t)h * hd;
                for (int c = 0; c < hd; c++) dqo[c] = (float)dqi[c];
            }
        }
    free(dqi);
    return 0;
}
