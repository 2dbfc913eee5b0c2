/* crossentropy.c: CPU reference of softmax cross-entropy (kernels/crossentropy.h). */
#include <math.h>

#include "kernels/crossentropy.h"

static double row_logsumexp(const float *l, int V)
{
    double mx = -INFINITY, sum = 0.0;
    for (int v = 0; v < V; v++) if (l[v] > mx) mx = l[v];
    for (int v = 0; v < V; v++) sum += exp((double)l[v] - mx);
    return mx + log(sum);
}

void crossentropy_forward_cpu(float *losses, const float *logits, const int32_t *targets, int N,
                              int V)
{
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * V;
        losses[t] = targets[t] < 0 ? 0.0f : (float)(row_logsumexp(l, V) - l[targets[t]]);
    }
}

void crossentropy_backward_cpu(float *dlogits, const float *logits, const int32_t *targets,
                               float dloss, int N, int V)
{
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * V;
        float *d = dlogits + (size_t)t * V;
        if (targets[t] < 0) {
            for (int v = 0; v < V; v++) d[v] = 0.0f;
            continue;
        }
        double lse = row_logsumexp(l, V);
        for (int v = 0; v < V; v++)
            d[v] = (float)(dloss * (exp((double)l[v] - lse) - (v == targets[t] ? 1.0 : 0.0)));
    }
}

/* ---- vocabulary-parallel ---- */

void crossentropy_vp_stats_cpu(float *stats, const float *logits, const int32_t *targets_local,
                               int N, int Vl)
{
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * Vl;
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < Vl; v++) if (l[v] > mx) mx = l[v];
        for (int v = 0; v < Vl; v++) sum += exp((double)l[v] - mx);
        stats[3 * (size_t)t] = (float)mx;
        stats[3 * (size_t)t + 1] = (float)sum;
        stats[3 * (size_t)t + 2] = targets_local[t] >= 0 ? l[targets_local[t]] : 0.0f;
    }
}

void crossentropy_vp_finish_cpu(float *losses, float *dlogits, const float *logits,
                                const int32_t *targets_local, const float *all_stats, int P,
                                float dloss, int N, int Vl)
{
    for (int t = 0; t < N; t++) {
        double M = -INFINITY, S = 0.0, z = 0.0;
        for (int p = 0; p < P; p++) {
            double m = all_stats[((size_t)p * N + t) * 3];
            if (m > M) M = m;
        }
        for (int p = 0; p < P; p++) {
            const float *st = all_stats + ((size_t)p * N + t) * 3;
            S += (double)st[1] * exp((double)st[0] - M);
            z += st[2];
        }
        double lse = M + log(S);
        losses[t] = (float)(lse - z);
        const float *l = logits + (size_t)t * Vl;
        float *d = dlogits + (size_t)t * Vl;
        for (int v = 0; v < Vl; v++)
            d[v] = (float)(dloss * (exp((double)l[v] - lse) - (v == targets_local[t] ? 1.0 : 0.0)));
    }
}
