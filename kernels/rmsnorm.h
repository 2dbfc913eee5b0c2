/* rmsnorm.h: RMSNorm over the last dimension.
 *   forward  rstd[t] = 1 / sqrt(mean_c inp[t,c]^2 + eps)
 *            out[t,c] = inp[t,c] * rstd[t] * weight[c]
 *            inp, out [N, C]; weight [C]; rstd [N] fp32 (saved for backward)
 *   backward with g[c] = dout[t,c] * weight[c]:
 *            dinp[t,c] = rstd[t] * (g[c] - inp[t,c] * rstd[t]^2 * mean_c(g[c] * inp[t,c]))
 *            dweight[c] += sum_t dout[t,c] * inp[t,c] * rstd[t]
 *            dinp [N, C] is WRITTEN (=); dweight [C] fp32 ACCUMULATES (+=)
 * CUDA: inp, out, weight, dout, dinp bf16; rstd, dweight fp32.
 */
#ifndef MOEPLAN_KERNELS_RMSNORM_H
#define MOEPLAN_KERNELS_RMSNORM_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *weight,
                         int N, int C, float eps);
void rmsnorm_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C);

#ifdef MOEPLAN_HAVE_CUDA
void rmsnorm_forward_cuda(bf16_t *out, float *rstd, const bf16_t *inp, const bf16_t *weight,
                          int N, int C, float eps, cudaStream_t stream);
/* scratch: fp32 [rmsnorm_backward_scratch_floats(N, C)] device memory for
 * per-block partial sums of dweight (no atomics, deterministic). */
size_t rmsnorm_backward_scratch_floats(int N, int C);
void rmsnorm_backward_cuda(bf16_t *dinp, float *dweight, float *scratch, const bf16_t *dout,
                           const bf16_t *inp, const bf16_t *weight, const float *rstd,
                           int N, int C, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
