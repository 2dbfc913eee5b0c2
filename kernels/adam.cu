/* adam.cu: AdamW on fp32 master weights, writes the bf16 copy (kernels/adam.h). */
#include "kernels/cuda_util.cuh"
#include "kernels/adam.h"

__global__ static void adam_kernel(float *param, bf16_t *param_bf16, float *m, float *v,
                                   const float *grad, size_t n, AdamParams p, float bc1, float bc2)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * p.grad_scale;
        float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
        float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float w = param[i];
        w -= p.lr * ((mi / bc1) / (sqrtf(vi / bc2) + p.eps) + p.weight_decay * w);
        param[i] = w;
        if (param_bf16) stbf(param_bf16 + i, w);
    }
}

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
    adam_kernel<<<grid_for(n, 256), 256, 0, s>>>(param, param_bf16, m, v, grad, n, *p, bc1, bc2);
}
void norm_squared_cuda(float *out, const float *x, size_t n, cudaStream_t s)
{
    if (!n) return;
    unsigned g = grid_for(n, 512);
    if (g > 1024) g = 1024;
    norm_squared_kernel<<<g, 512, 0, s>>>(out, x, n);
}
}
