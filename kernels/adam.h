/* adam.h: AdamW on fp32 master weights (decoupled weight decay, bias
 * correction), Loshchilov & Hutter 2019 / torch.optim.AdamW:
 *   g  = grad * grad_scale
 *   m  = beta1 m + (1 - beta1) g
 *   v  = beta2 v + (1 - beta2) g^2
 *   m^ = m / (1 - beta1^step),  v^ = v / (1 - beta2^step)      step counts from 1
 *   p  = p - lr * (m^ / (sqrt(v^) + eps) + weight_decay * p)
 * param, m, v, grad [n] fp32; the CUDA version also writes the bf16 copy
 * param_bf16 [n] (skipped when NULL).
 * norm_squared: sum of grad^2 (for gradient clipping: grad_scale = min(1, clip / norm)).
 */
#ifndef MOEPLAN_KERNELS_ADAM_H
#define MOEPLAN_KERNELS_ADAM_H

#include "kernels/common.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int step;            /* 1 at the first update */
    float grad_scale;    /* multiplies grad before use (1 / micro-batches, clipping) */
} AdamParams;

#ifdef __cplusplus
extern "C" {
#endif

void adam_update_cpu(float *param, float *m, float *v, const float *grad, size_t n,
                     const AdamParams *p);
double norm_squared_cpu(const float *x, size_t n);

#ifdef MOEPLAN_HAVE_CUDA
void adam_update_cuda(float *param, bf16_t *param_bf16, float *m, float *v, const float *grad,
                      size_t n, const AdamParams *p, cudaStream_t stream);
/* *out (device, fp32) += sum x^2; zero *out first. */
void norm_squared_cuda(float *out, const float *x, size_t n, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
