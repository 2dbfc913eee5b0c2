/* moe_permute.c: CPU reference of the MoE token permutation (kernels/moe_permute.h). */
#include <stdlib.h>

#include "kernels/moe_permute.h"

int moe_plan_cpu(int32_t *row_of, int32_t *expert_counts, const int32_t *topk_idx, int N,
                 int k, int E, int capacity)
{
    /* pass 1: kept count per expert (pairs in token order, first `capacity` kept) */
    for (int e = 0; e < E; e++) expert_counts[e] = 0;
    for (int i = 0; i < N * k; i++) {
        int e = topk_idx[i];
        if (capacity <= 0 || expert_counts[e] < capacity) expert_counts[e]++;
    }
    /* pass 2: row = expert offset + rank of the pair within its expert;
     * pairs past the kept count of their expert are dropped */
    int32_t *offset = malloc(sizeof(int32_t) * 2 * (size_t)(E > 0 ? E : 1));
    if (!offset) return -1;
    int32_t *seen = offset + E;
    int rows = 0;
    for (int e = 0; e < E; e++) { offset[e] = rows; seen[e] = 0; rows += expert_counts[e]; }
    for (int i = 0; i < N * k; i++) {
        int e = topk_idx[i];
        row_of[i] = seen[e] < expert_counts[e] ? offset[e] + seen[e] : -1;
        seen[e]++;
    }
    free(offset);
    return rows;
}

void moe_permute_forward_cpu(float *out, const float *inp, const int32_t *row_of, int N, int k,
                             int C)
{
    for (int t = 0; t < N; t++)
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) continue;
            memcpy(out + (size_t)r * C, inp + (size_t)t * C, sizeof(float) * (size_t)C);
        }
}

void moe_permute_backward_cpu(float *dinp, const float *dout, const int32_t *row_of, int N,
                              int k, int C)
{
    for (int t = 0; t < N; t++) {
        float *d = dinp + (size_t)t * C;
        for (int c = 0; c < C; c++) d[c] = 0.0f;
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) continue;
            for (int c = 0; c < C; c++) d[c] += dout[(size_t)r * C + c];
        }
    }
}

void moe_unpermute_forward_cpu(float *out, const float *inp, const float *prob,
                               const int32_t *row_of, int N, int k, int C)
{
    for (int t = 0; t < N; t++) {
        float *o = out + (size_t)t * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) continue;
            float w = prob[t * k + j];
            for (int c = 0; c < C; c++) o[c] += w * inp[(size_t)r * C + c];
        }
    }
}

void moe_unpermute_backward_cpu(float *dinp, float *dprob, const float *dout, const float *inp,
                                const float *prob, const int32_t *row_of, int N, int k, int C)
{
    for (int t = 0; t < N; t++)
        for (int j = 0; j < k; j++) {
            int r = row_of[t * k + j];
            if (r < 0) { dprob[t * k + j] = 0.0f; continue; }
            float w = prob[t * k + j];
            double dot = 0.0;
            for (int c = 0; c < C; c++) {
                float g = dout[(size_t)t * C + c];
                dinp[(size_t)r * C + c] = w * g;
                dot += (double)g * inp[(size_t)r * C + c];
            }
            dprob[t * k + j] = (float)dot;
        }
}

void gather_rows_cpu(float *out, const float *inp, const int32_t *src, int n, int C)
{
    for (int i = 0; i < n; i++) {
        if (src[i] < 0) memset(out + (size_t)i * C, 0, sizeof(float) * (size_t)C);   /* padding row */
        else memcpy(out + (size_t)i * C, inp + (size_t)src[i] * C, sizeof(float) * (size_t)C);
    }
}
