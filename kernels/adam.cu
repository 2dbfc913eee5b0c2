/* adam.cu: AdamW on fp32 master weights, writes the bf16 copy (kernels/adam.h). */
#include <stdint.h>

#include "kernels/cuda_util.cuh"
#include "kernels/adam.h"

/* One element: the math of adam_update_cpu (kernels/adam.c), in its order. */
static __device__ __forceinline__ float adam_one(float w, float g, float *mi, float *vi, const AdamParams &p,
                                                 float bc1, float bc2)
{
    g *= p.grad_scale;
    float m = p.beta1 * *mi + (1.0f - p.beta1) * g;
    float v = p.beta2 * *vi + (1.0f - p.beta2) * g * g;
    *mi = m;
    *vi = v;
    return w - p.lr * ((m / bc1) / (sqrtf(v / bc2) + p.eps) + p.weight_decay * w);
}

__global__ static void adam_kernel(float *param, bf16_t *param_bf16, float *m, float *v,
                                   const float *grad, size_t n, AdamParams p, float bc1, float bc2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float mi = m[i], vi = v[i];
        float w = adam_one(param[i], grad[i], &mi, &vi, p, bc1, bc2);
        m[i] = mi;
        v[i] = vi;
        param[i] = w;
        if (param_bf16) stbf(param_bf16 + i, w);
    }
}

/* The same, 4 elements per thread with 16-byte loads and stores (8-byte
 * stores of the bf16 copy): Adam is bound by HBM (30 bytes per element), and
 * the scalar kernel reached 74% of the H200's 4.8 TB/s (docs/kernels.md).
 * Needs param, m, v, grad 16-byte and param_bf16 8-byte aligned; n4 = n / 4. */
__global__ static void adam_kernel_vec4(float4 *param, uint2 *param_bf16, float4 *m, float4 *v, const float4 *grad,
                                        size_t n4, AdamParams p, float bc1, float bc2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 w = param[i], g = grad[i], mi = m[i], vi = v[i];
        w.x = adam_one(w.x, g.x, &mi.x, &vi.x, p, bc1, bc2);
        w.y = adam_one(w.y, g.y, &mi.y, &vi.y, p, bc1, bc2);
        w.z = adam_one(w.z, g.z, &mi.z, &vi.z, p, bc1, bc2);
        w.w = adam_one(w.w, g.w, &mi.w, &vi.w, p, bc1, bc2);
        m[i] = mi;
        v[i] = vi;
        param[i] = w;
        if (param_bf16) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(w.x, w.y), hi = __floats2bfloat162_rn(w.z, w.w);
            uint2 packed;
            packed.x = *(const unsigned *)&lo;
            packed.y = *(const unsigned *)&hi;
            param_bf16[i] = packed;
        }
    }
}

static bool aligned(const void *ptr, size_t bytes) { return ((uintptr_t)ptr % bytes) == 0; }

__global__ static void norm_squared_kernel(float *out, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(out, s);
}

extern "C" {
void adam_update_cuda(float *param, bf16_t *param_bf16, float *m, float *v, const float *grad,
                      size_t n, const AdamParams *p, cudaStream_t s)
{
    if (!n) return;
    float bc1 = (float)(1.0 - pow(p->beta1, p->step)), bc2 = (float)(1.0 - pow(p->beta2, p->step));
    size_t n4 = n / 4, head = 0;
    if (n4 && aligned(param, 16) && aligned(m, 16) && aligned(v, 16) && aligned(grad, 16) &&
        (!param_bf16 || aligned(param_bf16, 8))) {
        adam_kernel_vec4<<<grid_for(n4, 256), 256, 0, s>>>((float4 *)param, (uint2 *)param_bf16, (float4 *)m,
                                                           (float4 *)v, (const float4 *)grad, n4, *p, bc1, bc2);
        head = 4 * n4;
    }
    if (head < n)   /* the tail, or everything when a pointer is not aligned */
        adam_kernel<<<grid_for(n - head, 256), 256, 0, s>>>(param + head, param_bf16 ? param_bf16 + head : NULL,
                                                            m + head, v + head, grad + head, n - head, *p, bc1, bc2);
}
void norm_squared_cuda(float *out, const float *x, size_t n, cudaStream_t s)
{
    if (!n) return;
    unsigned g = grid_for(n, 512);
    if (g > 1024) g = 1024;
    norm_squared_kernel<<<g, 512, 0, s>>>(out, x, n);
}
}
