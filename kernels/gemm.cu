/* gemm.cu: row-major bf16 GEMM through cuBLAS, fp32 accumulation, and the
 * grouped GEMM of the experts (kernels/gemm.h).
 *
 * Row-major C [M, N] is column-major C^T [N, M], so C = op(A) op(B) becomes
 * C^T = op(B)^T op(A)^T: cuBLAS is called with the operands swapped. */
#include "kernels/cuda_util.cuh"
#include "kernels/gemm.h"

#define GEMM_WORKSPACE_BYTES (32u << 20)
#define GROUPED_MAX 1024   /* groups per cublasGemmGroupedBatchedEx call */

typedef struct {
    void **ptrs;   /* device [3 * GROUPED_MAX] A, B, C pointer arrays */
} GroupedScratch;

extern "C" {

KernelStatus gemm_handle_init(GemmHandle *h)
{
    memset(h, 0, sizeof *h);
    CUBLAS_TRY(cublasCreate(&h->blas));
    CUBLAS_TRY(cublasLtCreate(&h->lt));
    h->workspace_bytes = GEMM_WORKSPACE_BYTES;
    /* workspace + the pointer arrays of the batched grouped path */
    CUDA_TRY(cudaMalloc(&h->workspace, h->workspace_bytes + 3 * GROUPED_MAX * sizeof(void *)));
    CUBLAS_TRY(cublasSetWorkspace(h->blas, h->workspace, h->workspace_bytes));
    h->grouped_impl = GROUPED_LOOP;
    return 0;
}

KernelStatus gemm_handle_destroy(GemmHandle *h)
{
    KernelStatus st = 0;
    if (h->workspace && cudaFree(h->workspace) != cudaSuccess) st = (KernelStatus)cudaGetLastError();
    if (h->lt && cublasLtDestroy(h->lt) != CUBLAS_STATUS_SUCCESS && !st) st = KERNEL_CUBLAS_BASE;
    if (h->blas && cublasDestroy(h->blas) != CUBLAS_STATUS_SUCCESS && !st) st = KERNEL_CUBLAS_BASE;
    h->workspace = NULL; h->lt = NULL; h->blas = NULL;
    return st;
}

static cublasStatus_t gemm_call(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A,
                                const bf16_t *B, int M, int N, int K, int transA, int transB,
                                float alpha, float beta)
{
    return cublasGemmEx(h->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                        N, M, K, &alpha, B, CUDA_R_16BF, transB ? K : N, A, CUDA_R_16BF,
                        transA ? M : K, &beta, C, c_type == GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF,
                        N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* cuBLAS on `stream` with the handle's workspace, set only on a change */
static cublasStatus_t use_stream(GemmHandle *h, cudaStream_t stream)
{
    if (h->stream_set && h->stream == stream) return CUBLAS_STATUS_SUCCESS;
    cublasStatus_t st = cublasSetStream(h->blas, stream);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetWorkspace(h->blas, h->workspace, h->workspace_bytes);
    if (st == CUBLAS_STATUS_SUCCESS) { h->stream = stream; h->stream_set = 1; }
    return st;
}

KernelStatus gemm_cuda(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A, const bf16_t *B,
                       int M, int N, int K, int transA, int transB, float alpha, float beta,
                       cudaStream_t stream)
{
    if (M <= 0 || N <= 0) return 0;
    CUBLAS_TRY(use_stream(h, stream));
    if (K <= 0) {   /* C = beta C */
        size_t n = (size_t)M * N;
        if (beta == 0.0f) CUDA_TRY(cudaMemsetAsync(C, 0, n * (c_type == GEMM_OUT_F32 ? 4 : 2), stream));
        else if (beta != 1.0f && c_type == GEMM_OUT_F32) scale_f32_cuda((float *)C, beta, n, stream);
        return 0;
    }
    CUBLAS_TRY(gemm_call(h, C, c_type, A, B, M, N, K, transA, transB, alpha, beta));
    return 0;
}

/* Per-group operand pointers and sizes (row-major view). */
static void group_operands(int g, size_t row0, int r, GroupedVary vary, int M, int N, int K,
                           const bf16_t *A, const bf16_t *B, char *C, size_t c_elem,
                           const bf16_t **Ag, const bf16_t **Bg, char **Cg, int *Mg, int *Kg)
{
    if (vary == GROUPED_VARY_M) {
        *Ag = A + row0 * K; *Bg = B + (size_t)g * K * N; *Cg = C + row0 * N * c_elem;
        *Mg = r; *Kg = K;
    } else {
        *Ag = A + row0 * M; *Bg = B + row0 * N; *Cg = C + (size_t)g * M * N * c_elem;
        *Mg = M; *Kg = r;
    }
}

/* One group's product (the operands of group_operands): forward/dgrad with
 * its M_g rows, wgrad with its K_g rows. */
static KernelStatus group_gemm(GemmHandle *h, GroupedVary vary, char *Cg, GemmOut c_type, const bf16_t *Ag,
                               const bf16_t *Bg, int Mg, int N, int Kg, int transB, float alpha, float beta,
                               cudaStream_t stream)
{
    return vary == GROUPED_VARY_M
        ? gemm_cuda(h, Cg, c_type, Ag, Bg, Mg, N, Kg, 0, transB, alpha, beta, stream)
        : gemm_cuda(h, Cg, c_type, Ag, Bg, Mg, N, Kg, 1, 0, alpha, beta, stream);
}

/* 0, -1 when this CUDA / cuBLAS has no grouped batched GEMM (the caller
 * falls back to the loop), or a KernelStatus of a failed call */
static int grouped_batched(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A,
                           const bf16_t *B, const int32_t *rows, int G, GroupedVary vary, int M,
                           int N, int K, int transA, int transB, float alpha, float beta,
                           cudaStream_t stream)
{
#if CUDART_VERSION >= 12050
    if (G > GROUPED_MAX) return -1;
    size_t c_elem = c_type == GEMM_OUT_F32 ? 4 : 2;
    cublasOperation_t ta[GROUPED_MAX], tb[GROUPED_MAX];
    int m[GROUPED_MAX], n[GROUPED_MAX], k[GROUPED_MAX], lda[GROUPED_MAX], ldb[GROUPED_MAX],
        ldc[GROUPED_MAX], gsize[GROUPED_MAX];
    float al[GROUPED_MAX], be[GROUPED_MAX];
    const void *host_ptrs[3 * GROUPED_MAX];
    int used = 0;
    size_t row0 = 0;
    for (int g = 0; g < G; g++) {
        const bf16_t *Ag, *Bg; char *Cg; int Mg, Kg;
        group_operands(g, row0, rows[g], vary, M, N, K, A, B, (char *)C, c_elem, &Ag, &Bg, &Cg, &Mg, &Kg);
        row0 += (size_t)rows[g];
        if (Mg <= 0 || Kg <= 0) {   /* empty: handled outside */
            if (Mg > 0 && Kg <= 0) {
                KernelStatus st = gemm_cuda(h, Cg, c_type, Ag, Bg, Mg, N, 0, transA, transB, alpha, beta, stream);
                if (st) return st;
            }
            continue;
        }
        int tA = vary == GROUPED_VARY_K ? 1 : transA, tB = vary == GROUPED_VARY_K ? 0 : transB;
        ta[used] = tB ? CUBLAS_OP_T : CUBLAS_OP_N; tb[used] = tA ? CUBLAS_OP_T : CUBLAS_OP_N;
        m[used] = N; n[used] = Mg; k[used] = Kg;
        lda[used] = tB ? Kg : N; ldb[used] = tA ? Mg : Kg; ldc[used] = N;
        al[used] = alpha; be[used] = beta; gsize[used] = 1;
        host_ptrs[used] = Bg; host_ptrs[GROUPED_MAX + used] = Ag; host_ptrs[2 * GROUPED_MAX + used] = Cg;
        used++;
    }
    if (!used) return 0;
    void **dptr = (void **)((char *)h->workspace + h->workspace_bytes);
    CUDA_TRY(cudaMemcpyAsync(dptr, host_ptrs, sizeof host_ptrs, cudaMemcpyHostToDevice, stream));
    cublasStatus_t st = cublasGemmGroupedBatchedEx(
        h->blas, ta, tb, m, n, k, al, (const void *const *)dptr, CUDA_R_16BF, lda,
        (const void *const *)(dptr + GROUPED_MAX), CUDA_R_16BF, ldb, be, dptr + 2 * GROUPED_MAX,
        c_type == GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF, ldc, used, gsize, CUBLAS_COMPUTE_32F);
    if (st != CUBLAS_STATUS_SUCCESS) return -1;
    return 0;
#else
    (void)h; (void)C; (void)c_type; (void)A; (void)B; (void)rows; (void)G; (void)vary; (void)M;
    (void)N; (void)K; (void)transA; (void)transB; (void)alpha; (void)beta; (void)stream;
    return -1;
#endif
}

static bool uniform_rows(const int32_t *rows, int G)
{
    for (int g = 1; g < G; g++) if (rows[g] != rows[0]) return false;
    return rows[0] > 0;
}

/* Every group has r rows: one strided-batched call (row-major as gemm_call:
 * C^T = op(B)^T op(A)^T, operands swapped).
 *   vary M: A [G r, K], B G x ([K, N] or [N, K]), C [G r, N]
 *   vary K: A [G r, M] used transposed, B [G r, N], C G x [M, N] */
static cublasStatus_t grouped_strided(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A,
                                      const bf16_t *B, int r, int G, GroupedVary vary, int M, int N,
                                      int K, int transB, float alpha, float beta)
{
    cudaDataType_t ct = c_type == GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
    if (vary == GROUPED_VARY_M)
        return cublasGemmStridedBatchedEx(h->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, r, K,
                                          &alpha, B, CUDA_R_16BF, transB ? K : N, (long long)K * N, A,
                                          CUDA_R_16BF, K, (long long)r * K, &beta, C, ct, N, (long long)r * N,
                                          G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    /* C_g [M, N] = A_g^T [M, r] B_g [r, N]: C^T = B_g^T A_g, B_g^T is B_g
     * column-major [N, r] (no transpose), A_g column-major [M, r] -> op T */
    return cublasGemmStridedBatchedEx(h->blas, CUBLAS_OP_N, CUBLAS_OP_T, N, M, r, &alpha, B, CUDA_R_16BF, N,
                                      (long long)r * N, A, CUDA_R_16BF, M, (long long)r * M, &beta, C, ct, N,
                                      (long long)M * N, G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* Groups padded to a few sizes (the executor's padded dispatcher): the
 * groups of each size shared by two or more are one cublasGemmBatchedEx
 * (pointer arrays, one upload for all sizes), a size held by one group is a
 * plain call, empty groups are C = beta C (vary K) or nothing (vary M). */
static int grouped_classes(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A, const bf16_t *B,
                           const int32_t *rows, int G, GroupedVary vary, int M, int N, int K, int transB,
                           float alpha, float beta, cudaStream_t stream)
{
    size_t c_elem = c_type == GEMM_OUT_F32 ? 4 : 2;
    const bf16_t *Ag[GROUPED_MAX], *Bg[GROUPED_MAX];
    char *Cg[GROUPED_MAX];
    int Mg[GROUPED_MAX], Kg[GROUPED_MAX], order[GROUPED_MAX];
    size_t row0 = 0;
    for (int g = 0; g < G; g++) {
        group_operands(g, row0, rows[g], vary, M, N, K, A, B, (char *)C, c_elem, &Ag[g], &Bg[g], &Cg[g], &Mg[g], &Kg[g]);
        row0 += (size_t)rows[g];
        order[g] = g;
    }
    /* groups by row count (insertion sort: G <= GROUPED_MAX) */
    for (int i = 1; i < G; i++) {
        int v = order[i], j = i - 1;
        while (j >= 0 && rows[order[j]] > rows[v]) { order[j + 1] = order[j]; j--; }
        order[j + 1] = v;
    }
    /* sizes held by 2+ groups: their operand pointers, consecutive per size */
    const void *host_ptrs[3 * GROUPED_MAX];
    int start[GROUPED_MAX], count[GROUPED_MAX], class_rows[GROUPED_MAX], nclass = 0, used = 0;
    int alone[GROUPED_MAX], nalone = 0;
    for (int i = 0; i < G;) {
        int r = rows[order[i]], j = i;
        while (j < G && rows[order[j]] == r) j++;
        if (r > 0 && j - i > 1) {
            start[nclass] = used; count[nclass] = j - i; class_rows[nclass] = r; nclass++;
            for (int q = i; q < j; q++, used++) {
                int g = order[q];
                host_ptrs[used] = Bg[g]; host_ptrs[GROUPED_MAX + used] = Ag[g]; host_ptrs[2 * GROUPED_MAX + used] = Cg[g];
            }
        } else {
            for (int q = i; q < j; q++) alone[nalone++] = order[q];   /* alone, or empty */
        }
        i = j;
    }
    /* the batched calls first: if cuBLAS refuses the first, nothing is
     * written yet and the caller can run the loop instead (-1) */
    if (nclass) {
        void **dptr = (void **)((char *)h->workspace + h->workspace_bytes);
        CUDA_TRY(cudaMemcpyAsync(dptr, host_ptrs, sizeof host_ptrs, cudaMemcpyHostToDevice, stream));
        cudaDataType_t ct = c_type == GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
        for (int c = 0; c < nclass; c++) {
            const void *const *pB = (const void *const *)(dptr + start[c]);
            const void *const *pA = (const void *const *)(dptr + GROUPED_MAX + start[c]);
            void *const *pC = dptr + 2 * GROUPED_MAX + start[c];
            int rc = class_rows[c];
            cublasStatus_t st;
            if (vary == GROUPED_VARY_M)   /* as gemm_call with M = rc, transA 0 */
                st = cublasGemmBatchedEx(h->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, rc, K, &alpha,
                                         pB, CUDA_R_16BF, transB ? K : N, pA, CUDA_R_16BF, K, &beta, pC, ct, N,
                                         count[c], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            else                          /* as gemm_call with K = rc, transA 1, transB 0 */
                st = cublasGemmBatchedEx(h->blas, CUBLAS_OP_N, CUBLAS_OP_T, N, M, rc, &alpha, pB, CUDA_R_16BF, N,
                                         pA, CUDA_R_16BF, M, &beta, pC, ct, N, count[c], CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS) return c == 0 ? -1 : (int)(KERNEL_CUBLAS_BASE + (KernelStatus)st);
            h->class_calls++;
        }
    }
    for (int q = 0; q < nalone; q++) {
        int g = alone[q];
        KernelStatus st = group_gemm(h, vary, Cg[g], c_type, Ag[g], Bg[g], Mg[g], N, Kg[g], transB, alpha, beta, stream);
        if (st) return (int)st;
    }
    return 0;
}

KernelStatus grouped_gemm_cuda(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A,
                               const bf16_t *B, const int32_t *group_rows, int G, GroupedVary vary,
                               int M, int N, int K, int transA, int transB, float alpha, float beta,
                               cudaStream_t stream)
{
    CUBLAS_TRY(use_stream(h, stream));
    if (h->grouped_impl == GROUPED_STRIDED && G > 1 && uniform_rows(group_rows, G)) {
        CUBLAS_TRY(grouped_strided(h, C, c_type, A, B, group_rows[0], G, vary, M, N, K, transB, alpha, beta));
        h->strided_calls++;
        return 0;
    }
    if (h->grouped_impl == GROUPED_STRIDED && G > 1 && G <= GROUPED_MAX && !h->classes_unsupported) {
        long before = h->class_calls;
        int st = grouped_classes(h, C, c_type, A, B, group_rows, G, vary, M, N, K, transB, alpha, beta, stream);
        if (st > 0) return (KernelStatus)st;
        if (st == 0) {
            if (h->class_calls > before) h->strided_calls++;
            else h->loop_calls++;   /* no size held twice: it was the loop */
            return 0;
        }
        h->classes_unsupported = 1;   /* cuBLAS refused the batched call: the loop, for good */
    }
    if (h->grouped_impl == GROUPED_BATCHED && !h->batched_unsupported) {
        int st = grouped_batched(h, C, c_type, A, B, group_rows, G, vary, M, N, K, transA, transB,
                                 alpha, beta, stream);
        if (st > 0) return st;
        if (st == 0) { h->batched_calls++; return 0; }
        h->batched_unsupported = 1;   /* not supported here: fall back for good */
    }
    h->loop_calls++;
    size_t c_elem = c_type == GEMM_OUT_F32 ? 4 : 2, row0 = 0;
    for (int g = 0; g < G; g++) {
        const bf16_t *Ag, *Bg; char *Cg; int Mg, Kg;
        group_operands(g, row0, group_rows[g], vary, M, N, K, A, B, (char *)C, c_elem, &Ag, &Bg, &Cg, &Mg, &Kg);
        row0 += (size_t)group_rows[g];
        KernelStatus st = group_gemm(h, vary, Cg, c_type, Ag, Bg, Mg, N, Kg, transB, alpha, beta, stream);
        if (st) return st;
    }
    return 0;
}

}
