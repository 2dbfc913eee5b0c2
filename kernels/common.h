/* common.h: what every kernel shares.
 *
 *   bf16_t             the storage type of activations and weights (the bit
 *                      pattern of a bfloat16; the .cu files reinterpret it as
 *                      __nv_bfloat16)
 *   bf16_from_float / bf16_to_float
 *                      CPU conversions, round-to-nearest-even like the GPU's
 *                      __float2bfloat16_rn
 *   KernelStatus, CUDA_TRY / CUBLAS_TRY
 *                      kernels/ never prints or exits: a launcher that can
 *                      fail on the host returns a status (0, a cudaError_t,
 *                      or KERNEL_CUBLAS_BASE + a cublasStatus_t);
 *                      kernel_status_string() names it.  Launchers without a
 *                      host-side failure leave a launch error in the CUDA
 *                      runtime's own sticky error (cudaGetLastError), which
 *                      the executor's backend reads after every operation.
 *                      Programs (tests/gpu, bench) that want llm.c's
 *                      print-and-exit use tests/gpu/gpu_check.h.
 *   elementwise kernels: casts fp32<->bf16, residual add, scale, fill,
 *                      accumulate a bf16 tensor into an fp32 one.
 *
 * Shapes: every tensor here is flat, `n` elements.
 */
#ifndef MOEPLAN_KERNELS_COMMON_H
#define MOEPLAN_KERNELS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t bf16_t;

/* fp32 -> bf16, round to nearest, ties to even; NaN stays a (quiet) NaN. */
static inline bf16_t bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

static inline float bf16_to_float(bf16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x rounded to the nearest bf16 value, kept as fp32 (what a bf16 store and
 * reload does to a value). */
static inline float bf16_round(float f) { return bf16_to_float(bf16_from_float(f)); }

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU references (fp32) ---------------------------------------------- */

/* out[i] = a[i] + b[i]; out may alias a or b.   [n] */
void residual_forward_cpu(float *out, const float *a, const float *b, size_t n);
/* x[i] *= s.   [n] */
void scale_cpu(float *x, float s, size_t n);
/* acc[i] += x[i].   [n] */
void accumulate_cpu(float *acc, const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#ifdef MOEPLAN_HAVE_CUDA
#include <stdio.h>
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#include <cublasLt.h>

/* 0: success; 1 .. KERNEL_CUBLAS_BASE-1: a cudaError_t; KERNEL_CUBLAS_BASE + s:
 * cublasStatus_t s. */
typedef int KernelStatus;
#define KERNEL_CUBLAS_BASE 100000

/* return the status of `call` from the enclosing KernelStatus function on failure */
#define CUDA_TRY(call)                                          \
    do {                                                        \
        cudaError_t e_ = (call);                                \
        if (e_ != cudaSuccess) return (KernelStatus)e_;         \
    } while (0)
#define CUBLAS_TRY(call)                                                     \
    do {                                                                     \
        cublasStatus_t s_ = (call);                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS) return KERNEL_CUBLAS_BASE + (int)s_; \
    } while (0)

/* "CUDA error: <runtime's text>" or "cuBLAS error <n>" into buf [n] */
static inline const char *kernel_status_string(KernelStatus st, char *buf, size_t n)
{
    if (st >= KERNEL_CUBLAS_BASE)
        snprintf(buf, n, "cuBLAS error %d", st - KERNEL_CUBLAS_BASE);
    else
        snprintf(buf, n, "CUDA error: %s", cudaGetErrorString((cudaError_t)st));
    return buf;
}

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CUDA (elementwise, memory-bound) ----------------------------------- */
/* out [n] bf16 <- in [n] fp32 (round to nearest even) */
void cast_f32_to_bf16_cuda(bf16_t *out, const float *in, size_t n, cudaStream_t stream);
/* out [n] fp32 <- in [n] bf16 */
void cast_bf16_to_f32_cuda(float *out, const bf16_t *in, size_t n, cudaStream_t stream);
/* out = a + b, [n] bf16, fp32 add then one rounding; out may alias a or b */
void residual_forward_cuda(bf16_t *out, const bf16_t *a, const bf16_t *b, size_t n,
                           cudaStream_t stream);
/* x *= s, [n] fp32 */
void scale_f32_cuda(float *x, float s, size_t n, cudaStream_t stream);
/* x = value, [n] fp32 / bf16 */
void fill_f32_cuda(float *x, float value, size_t n, cudaStream_t stream);
void fill_bf16_cuda(bf16_t *x, float value, size_t n, cudaStream_t stream);
/* acc [n] fp32 += x [n] bf16 (gradient accumulation of a bf16 gradient) */
void accumulate_bf16_to_f32_cuda(float *acc, const bf16_t *x, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* MOEPLAN_HAVE_CUDA */

#endif
