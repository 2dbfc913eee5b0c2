/* rope.h: rotary position embedding, in place, "rotate half" convention
 * (Llama / Mixtral in Hugging Face): for head dim D, i in [0, D/2):
 *   freq_i  = theta^(-2i/D),  a = pos[t] * freq_i
 *   x'[i]       = x[i] cos a - x[i + D/2] sin a
 *   x'[i + D/2] = x[i + D/2] cos a + x[i] sin a
 * x: N tokens, each H heads of D values; token t starts at x + t*row_stride
 *    (row_stride = H*D for a contiguous [N, H, D]; larger for q or k inside a
 *    fused qkv row [N, (nh + 2 nkv) * D]).
 * pos [N] int32 (position of each token in its sequence).
 * backward = the inverse rotation (angle -a) applied in place to the gradient.
 * CUDA: x bf16, angles in fp32 with sincosf (full-range accuracy).
 */
#ifndef MOEPLAN_KERNELS_ROPE_H
#define MOEPLAN_KERNELS_ROPE_H

#include "kernels/common.h"

#ifdef __cplusplus
extern "C" {
#endif

void rope_forward_cpu(float *x, const int32_t *pos, int N, int H, int D, int row_stride,
                      float theta);
void rope_backward_cpu(float *dx, const int32_t *pos, int N, int H, int D, int row_stride,
                       float theta);

#ifdef MOEPLAN_HAVE_CUDA
void rope_forward_cuda(bf16_t *x, const int32_t *pos, int N, int H, int D, int row_stride,
                       float theta, cudaStream_t stream);
void rope_backward_cuda(bf16_t *dx, const int32_t *pos, int N, int H, int D, int row_stride,
                        float theta, cudaStream_t stream);
#endif

#ifdef __cplusplus
}
#endif
#endif
