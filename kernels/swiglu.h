/* swiglu.h: the SwiGLU activation of the expert (and dense / shared) MLP.
 *   gate_up [N, 2F]: columns [0, F) are the gate g, [F, 2F) the up projection u
 *                    (one fused GEMM with weight [2F, hidden], Megatron layout)
 *   forward  out[t,i] = silu(g) * u,  silu(g) = g * sigmoid(g)       out [N, F]
 *   backward dg = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
 *            du = dout * silu(g)                 dgate_up [N, 2F] (WRITTEN)
 * CUDA: bf16 in and out, fp32 arithmetic.
 */
#ifndef MOEPLAN_KERNELS_SWIGLU_H
#define MOEPLAN_KERNELS_SWIGLU_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void swiglu_forward_cpu(float *out, const float *gate_up, int N, int F);
void swiglu_backward_cpu(float *dgate_up, const float *dout, const float *gate_up, int N, int F);

#ifdef MOEPLAN_HAVE_CUDA
void swiglu_forward_cuda(bf16_t *out, const bf16_t *gate_up, int N, int F, cudaStream_t stream);
void swiglu_backward_cuda(bf16_t *dgate_up, const bf16_t *dout, const bf16_t *gate_up, int N,
                          int F, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
