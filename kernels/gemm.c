/* gemm.c: CPU reference of the (grouped) matrix product, kernels/gemm.h.
 * Plain loops with double accumulation: slow, but exact enough to be the
 * reference of the bf16 GPU versions and small enough for CI shapes. */
#include "kernels/gemm.h"

void gemm_cpu(float *C, const float *A, const float *B, int M, int N, int K,
              int transA, int transB, float alpha, float beta)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int p = 0; p < K; p++) {
                float a = transA ? A[(size_t)p * M + i] : A[(size_t)i * K + p];
                float b = transB ? B[(size_t)j * K + p] : B[(size_t)p * N + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * N + j];
            /* beta = 0 must not read C (it may hold garbage or NaN) */
            *c = (float)(alpha * acc + (beta != 0.0f ? (double)beta * *c : 0.0));
        }
    }
}

void grouped_gemm_cpu(float *C, const float *A, const float *B, const int32_t *group_rows,
                      int G, GroupedVary vary, int M, int N, int K, int transA, int transB,
                      float alpha, float beta)
{
    size_t row0 = 0;
    for (int g = 0; g < G; g++) {
        int r = group_rows[g];
        if (vary == GROUPED_VARY_M) {
            gemm_cpu(C + row0 * N, A + row0 * K, B + (size_t)g * K * N, r, N, K, 0, transB,
                     alpha, beta);
        } else {
            (void)transA;
            gemm_cpu(C + (size_t)g * M * N, A + row0 * M, B + row0 * N, M, N, r, 1, 0, alpha,
                     beta);
        }
        row0 += (size_t)r;
    }
}
