/* gemm.h: matrix products, row-major, the way the model uses them.
 *
 *   C = alpha * op(A) · op(B) + beta * C
 *     op(A) is [M, K]: A is stored [M, K] (transA = 0) or [K, M] (transA = 1)
 *     op(B) is [K, N]: B is stored [K, N] (transB = 0) or [N, K] (transB = 1)
 *     C is [M, N]
 *
 * A linear layer with weight W [out, in] (PyTorch layout) is, with x [tokens, in]:
 *   forward   y [tokens, out] = x · W^T        gemm(M=tokens, N=out, K=in,  transA=0, transB=1)
 *   dgrad     dx [tokens, in] = dy · W          gemm(M=tokens, N=in,  K=out, transA=0, transB=0)
 *   wgrad     dW [out, in]   += dy^T · x        gemm(M=out,    N=in,  K=tokens, transA=1, transB=0, beta=1)
 *
 * Grouped GEMM (experts): G groups whose token dimension differs per group,
 * given by group_rows[G] (host memory; sum = total rows).
 *   GROUPED_VARY_M (forward and dgrad): group g has M_g = group_rows[g] rows.
 *       A is the stacked [sum M_g, K] (transA must be 0); B is G matrices, each
 *       stored like a plain gemm's B ([K, N] or, transB = 1, [N, K]),
 *       consecutive; C is the stacked [sum M_g, N].  M is ignored.
 *   GROUPED_VARY_K (wgrad): group g has K_g = group_rows[g].
 *       A is stacked [sum K_g, M] used transposed (transA must be 1);
 *       B is stacked [sum K_g, N] (transB must be 0); C is G matrices [M, N]
 *       each, consecutive.  K is ignored.  Groups with K_g = 0 get C_g = beta*C_g.
 *
 * CPU: fp32 in and out, plain loops (double accumulation).  CUDA: bf16 A and
 * B, fp32 accumulation (cuBLAS / cuBLASLt), C in bf16 or fp32.
 */
#ifndef MOEPLAN_KERNELS_GEMM_H
#define MOEPLAN_KERNELS_GEMM_H

#include "kernels/common.h"

typedef enum { GROUPED_VARY_M = 0, GROUPED_VARY_K = 1 } GroupedVary;

#ifdef __cplusplus
extern "C" {
#endif

void gemm_cpu(float *C, const float *A, const float *B, int M, int N, int K,
              int transA, int transB, float alpha, float beta);

void grouped_gemm_cpu(float *C, const float *A, const float *B, const int32_t *group_rows,
                      int G, GroupedVary vary, int M, int N, int K, int transA, int transB,
                      float alpha, float beta);

#ifdef __cplusplus
}
#endif

#ifdef MOEPLAN_HAVE_CUDA
typedef enum { GEMM_OUT_BF16 = 0, GEMM_OUT_F32 = 1 } GemmOut;

/* How grouped_gemm_cuda issues its groups. */
typedef enum {
    GROUPED_LOOP = 0,     /* one cublasLt matmul per group (default) */
    GROUPED_BATCHED = 1,  /* one cublasGemmGroupedBatchedEx call (CUDA >= 12.5) */
    GROUPED_STRIDED = 2,  /* groups padded by the caller to a few sizes: all
                           * equal -> one cublasGemmStridedBatchedEx; else one
                           * cublasGemmBatchedEx per size shared by 2+ groups,
                           * the other groups one call each */
} GroupedImpl;

/* One per stream/thread: handles and a 32 MiB workspace (cuBLAS's stream
 * is set only when it changes: cublasSetStream drops the workspace, and
 * re-setting it per call cost tens of microseconds of host time). */
typedef struct {
    cudaStream_t stream;         /* the stream cuBLAS is set to (stream_set) */
    int stream_set;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *workspace;             /* device, workspace_bytes */
    size_t workspace_bytes;
    GroupedImpl grouped_impl;    /* asked for */
    int batched_unsupported;     /* set when this cuBLAS has no grouped batched GEMM: loop */
    long loop_calls, batched_calls, strided_calls;   /* grouped_gemm_cuda calls run each way */
    long class_calls;            /* of the strided ones: cublasGemmBatchedEx calls over a size class */
    int classes_unsupported;     /* set when cuBLAS refused cublasGemmBatchedEx: loop */
} GemmHandle;

#ifdef __cplusplus
extern "C" {
#endif

/* Return 0 or a KernelStatus (kernels/common.h). */
KernelStatus gemm_handle_init(GemmHandle *h);
KernelStatus gemm_handle_destroy(GemmHandle *h);

/* C (bf16 or fp32 per c_type) = alpha * op(A) · op(B) + beta * C; A, B bf16. */
KernelStatus gemm_cuda(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A, const bf16_t *B,
                       int M, int N, int K, int transA, int transB, float alpha, float beta,
                       cudaStream_t stream);

/* As grouped_gemm_cpu; group_rows in HOST memory. */
KernelStatus grouped_gemm_cuda(GemmHandle *h, void *C, GemmOut c_type, const bf16_t *A,
                               const bf16_t *B, const int32_t *group_rows, int G, GroupedVary vary,
                               int M, int N, int K, int transA, int transB, float alpha, float beta,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* MOEPLAN_HAVE_CUDA */

#endif
