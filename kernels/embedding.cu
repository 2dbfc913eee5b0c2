/* embedding.cu: token embedding gather and scatter-add (kernels/embedding.h). */
#include "kernels/cuda_util.cuh"
#include "kernels/embedding.h"

/* one block per token row */
__global__ static void embedding_fwd_kernel(bf16_t *out, const int32_t *tokens, const bf16_t *wte, int C)
{
    int tok = tokens[blockIdx.x];
    bf16_t *dst = out + (size_t)blockIdx.x * C;
    if (tok < 0) {   /* vocabulary-parallel: the row lives on another rank */
        for (int c = threadIdx.x; c < C; c += blockDim.x) stbf(dst + c, 0.0f);
        return;
    }
    const bf16_t *src = wte + (size_t)tok * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}
__global__ static void embedding_bwd_kernel(float *dwte, const bf16_t *dout, const int32_t *tokens, int C)
{
    int tok = tokens[blockIdx.x];
    if (tok < 0) return;
    float *dst = dwte + (size_t)tok * C;
    const bf16_t *src = dout + (size_t)blockIdx.x * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dst + c, ldbf(src + c));
}

extern "C" {
void embedding_forward_cuda(bf16_t *out, const int32_t *tokens, const bf16_t *wte, int N, int C,
                            cudaStream_t s)
{ if (N > 0) embedding_fwd_kernel<<<N, 256, 0, s>>>(out, tokens, wte, C); }
void embedding_backward_cuda(float *dwte, const bf16_t *dout, const int32_t *tokens, int N, int C,
                             cudaStream_t s)
{ if (N > 0) embedding_bwd_kernel<<<N, 256, 0, s>>>(dwte, dout, tokens, C); }
}
