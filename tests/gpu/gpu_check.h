/* gpu_check.h: llm.c-style checks for GPU test programs (never for the
 * libraries: kernels/ and executor/ return errors, kernels/common.h).
 *   cudaCheck(call) / cublasCheck(call) / kernelCheck(status): on failure
 *   print "FILE:LINE: what" to stderr and exit(1). */
#ifndef MOEPLAN_TESTS_GPU_CHECK_H
#define MOEPLAN_TESTS_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/* nvcc builds see the CUDA half of the kernels/ headers (as cuda_util.cuh) */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include "kernels/common.h"

static inline void gpu_cuda_check_at(cudaError_t e, const char *file, int line)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "%s:%d: CUDA error: %s\n", file, line, cudaGetErrorString(e));
        exit(1);
    }
}
#define cudaCheck(call) gpu_cuda_check_at((call), __FILE__, __LINE__)

static inline void gpu_cublas_check_at(cublasStatus_t s, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "%s:%d: cuBLAS error: %d\n", file, line, (int)s);
        exit(1);
    }
}
#define cublasCheck(call) gpu_cublas_check_at((call), __FILE__, __LINE__)

static inline void gpu_kernel_check_at(KernelStatus st, const char *file, int line)
{
    char msg[160];
    if (st) {
        fprintf(stderr, "%s:%d: %s\n", file, line, kernel_status_string(st, msg, sizeof msg));
        exit(1);
    }
}
#define kernelCheck(call) gpu_kernel_check_at((call), __FILE__, __LINE__)

#endif
