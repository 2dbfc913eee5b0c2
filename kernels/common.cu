/* common.cu: elementwise kernels (kernels/common.h).  Memory-bound: grid-stride
 * loops, coalesced. */
#include "kernels/cuda_util.cuh"

__global__ static void cast_f32_to_bf16_kernel(bf16_t *out, const float *in, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        stbf(out + i, in[i]);
}
__global__ static void cast_bf16_to_f32_kernel(float *out, const bf16_t *in, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = ldbf(in + i);
}
/* two bf16 per thread step when aligned: n even handled by the pair loop, the odd tail by thread 0 */
__global__ static void residual_kernel(bf16_t *out, const bf16_t *a, const bf16_t *b, size_t n)
{
    size_t pairs = n / 2;
    const __nv_bfloat162 *a2 = (const __nv_bfloat162 *)a, *b2 = (const __nv_bfloat162 *)b;
    __nv_bfloat162 *o2 = (__nv_bfloat162 *)out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < pairs; i += (size_t)gridDim.x * blockDim.x) {
        float2 x = __bfloat1622float2(a2[i]), y = __bfloat1622float2(b2[i]);
        o2[i] = __floats2bfloat162_rn(x.x + y.x, x.y + y.y);
    }
    if (n % 2 && blockIdx.x == 0 && threadIdx.x == 0) stbf(out + n - 1, ldbf(a + n - 1) + ldbf(b + n - 1));
}
__global__ static void scale_kernel(float *x, float s, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}
__global__ static void fill_f32_kernel(float *x, float v, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = v;
}
__global__ static void fill_bf16_kernel(bf16_t *x, float v, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        stbf(x + i, v);
}
__global__ static void accumulate_kernel(float *acc, const bf16_t *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc[i] += ldbf(x + i);
}

extern "C" {
void cast_f32_to_bf16_cuda(bf16_t *out, const float *in, size_t n, cudaStream_t s)
{ cast_f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, s>>>(out, in, n); }
void cast_bf16_to_f32_cuda(float *out, const bf16_t *in, size_t n, cudaStream_t s)
{ cast_bf16_to_f32_kernel<<<grid_for(n, 256), 256, 0, s>>>(out, in, n); }
void residual_forward_cuda(bf16_t *out, const bf16_t *a, const bf16_t *b, size_t n, cudaStream_t s)
{ residual_kernel<<<grid_for(n / 2 + 1, 256), 256, 0, s>>>(out, a, b, n); }
void scale_f32_cuda(float *x, float v, size_t n, cudaStream_t s)
{ scale_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, v, n); }
void fill_f32_cuda(float *x, float v, size_t n, cudaStream_t s)
{ fill_f32_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, v, n); }
void fill_bf16_cuda(bf16_t *x, float v, size_t n, cudaStream_t s)
{ fill_bf16_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, v, n); }
void accumulate_bf16_to_f32_cuda(float *acc, const bf16_t *x, size_t n, cudaStream_t s)
{ accumulate_kernel<<<grid_for(n, 256), 256, 0, s>>>(acc, x, n); }
}
