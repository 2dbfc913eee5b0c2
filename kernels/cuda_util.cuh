/* cuda_util.cuh: device helpers shared by the .cu files (not part of the C API). */
#ifndef MOEPLAN_KERNELS_CUDA_UTIL_CUH
#define MOEPLAN_KERNELS_CUDA_UTIL_CUH

/* nvcc builds see the CUDA half of every kernels/ header (the Makefile
 * passes MOEPLAN_HAVE_CUDA to the C compiler only). */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <float.h>

#include "kernels/common.h"

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float bf(bf16_t x) { return __bfloat162float(*(const bf16 *)&x); }
static __device__ __forceinline__ float ldbf(const bf16_t *p) { return __bfloat162float(*(const bf16 *)p); }
static __device__ __forceinline__ void stbf(bf16_t *p, float v) { *(bf16 *)p = __float2bfloat16_rn(v); }

/* Reductions: one warp (all 32 lanes), or the whole block (blockDim.x a
 * multiple of 32, at most 1024; every thread gets the result). */
struct ReduceSum {
    static __device__ __forceinline__ float identity() { return 0.0f; }
    static __device__ __forceinline__ float op(float a, float b) { return a + b; }
};
struct ReduceMax {
    static __device__ __forceinline__ float identity() { return -FLT_MAX; }
    static __device__ __forceinline__ float op(float a, float b) { return fmaxf(a, b); }
};

template <typename R> static __device__ __forceinline__ float warp_reduce(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = R::op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename R> static __device__ __forceinline__ float block_reduce(float v)
{
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce<R>(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < nw ? part[lane] : R::identity();
        s = warp_reduce<R>(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}
static __device__ __forceinline__ float warp_sum(float v) { return warp_reduce<ReduceSum>(v); }
static __device__ __forceinline__ float warp_max(float v) { return warp_reduce<ReduceMax>(v); }
static __device__ __forceinline__ float block_sum(float v) { return block_reduce<ReduceSum>(v); }
static __device__ __forceinline__ float block_max(float v) { return block_reduce<ReduceMax>(v); }

/* 8 consecutive bf16 as one 16-byte access (pointer 16-byte aligned). */
static __device__ __forceinline__ void load8(const bf16_t *p, float f[8])
{
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) { float2 v = __bfloat1622float2(h[i]); f[2 * i] = v.x; f[2 * i + 1] = v.y; }
}
static __device__ __forceinline__ void store8(bf16_t *p, const float f[8])
{
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *(uint4 *)p = u;
}
/* true when every pointer is 16-byte aligned and n is a multiple of 8, so
 * rows of n bf16 can be walked in 16-byte steps */
static inline bool vec8_ok(int n, const void *a, const void *b = nullptr, const void *c = nullptr)
{
    uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c;
    return n % 8 == 0 && (m & 15) == 0;
}

static inline unsigned grid_for(size_t n, unsigned block)
{
    size_t g = (n + block - 1) / block;
    if (g > 65535u * 16u) g = 65535u * 16u;
    return (unsigned)(g ? g : 1);
}

#endif
