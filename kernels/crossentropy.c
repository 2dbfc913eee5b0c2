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
