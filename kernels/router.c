/* router.c: CPU reference of the MoE router (kernels/router.h). */
#include <math.h>

#include "kernels/router.h"

void router_forward_cpu(float *probs, int32_t *topk_idx, float *topk_prob, const float *logits,
                        int N, int E, int k, int renormalize)
{
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * E;
        float *p = probs + (size_t)t * E;
        double mx = -INFINITY, sum = 0.0;
        for (int e = 0; e < E; e++) if (l[e] > mx) mx = l[e];
        for (int e = 0; e < E; e++) sum += exp((double)l[e] - mx);
        for (int e = 0; e < E; e++) p[e] = (float)(exp((double)l[e] - mx) / sum);
        int32_t *idx = topk_idx + (size_t)t * k;
        float *w = topk_prob + (size_t)t * k;
        double sel = 0.0;
        for (int j = 0; j < k; j++) {
            /* the largest prob not yet taken; strict > keeps the lower index on ties */
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int i = 0; i < j; i++) taken |= idx[i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            idx[j] = best;
            w[j] = p[best];
            sel += p[best];
        }
        if (renormalize)
            for (int j = 0; j < k; j++) w[j] = (float)(w[j] / sel);
    }
}

void router_backward_cpu(float *dlogits, const float *dtopk_prob, const float *probs,
                         const int32_t *topk_idx, const float *topk_prob, int N, int E, int k,
                         int renormalize)
{
    for (int t = 0; t < N; t++) {
        const float *p = probs + (size_t)t * E;
        const int32_t *idx = topk_idx + (size_t)t * k;
        const float *dw = dtopk_prob + (size_t)t * k;
        const float *w = topk_prob + (size_t)t * k;
        float *dl = dlogits + (size_t)t * E;
        double S = 1.0, wdw = 0.0;
        if (renormalize) {
            S = 0.0;
            for (int j = 0; j < k; j++) { S += p[idx[j]]; wdw += (double)dw[j] * w[j]; }
        }
        /* dp over the selected experts only (others 0) */
        double pdp = 0.0;
        for (int j = 0; j < k; j++) {
            double dp = dw[j] / S - (renormalize ? wdw / S : 0.0);
            pdp += p[idx[j]] * dp;
        }
        for (int e = 0; e < E; e++) dl[e] = (float)(-p[e] * pdp);
        for (int j = 0; j < k; j++) {
            double dp = dw[j] / S - (renormalize ? wdw / S : 0.0);
            dl[idx[j]] += (float)(p[idx[j]] * dp);
        }
    }
}
