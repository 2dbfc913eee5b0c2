/* flops.h: FLOPs of the pieces of a transformer layer, the one definition
 * the simulator, the executor's measurements, the planner and the GPU
 * benchmarks share (model_flops in model.h sums a whole step under
 * Megatron-LM's conventions).  A multiply-add is 2 FLOPs; the functions
 * return forward FLOPs (a GEMM's backward is 2x its forward).
 */
#ifndef MOEPLAN_FLOPS_H
#define MOEPLAN_FLOPS_H

#include <stdbool.h>

/* (query, key) pairs of an attention block: queries at positions
 * q_start .. q_start+q_rows, keys at kv_start .. kv_start+kv_rows.  Without
 * a mask every pair counts (q_rows*kv_rows); with the causal mask the pairs
 * with key position <= query position, counted as an area (a square block
 * on the diagonal gives n^2/2, the halving of Megatron's FLOPs convention;
 * a block wholly after/before its keys gives all/none). */
double flops_attention_pairs(double q_start, double q_rows, double kv_start, double kv_rows, bool causal);

/* Pairs of one causal sequence of s tokens attending only to the last
 * `window` keys (sliding window; window <= 0 or >= s: full causal):
 * s*w - w^2/2. */
double flops_window_pairs(double s, double window);

/* Forward FLOPs of the attention core for `pairs` (query, key) pairs per
 * head: QK^T (2*d_qk per pair) and PV (2*d_v per pair), `heads` heads. */
double flops_attention_core(double pairs, double heads, double d_qk, double d_v);

/* Forward FLOPs of an MLP on `rows` rows: hidden -> ffn -> hidden, three
 * matrices (gate, up, down) for SwiGLU, two otherwise. */
double flops_mlp(double rows, double hidden, double ffn, bool swiglu);

/* Forward FLOPs of the routed experts of one MoE layer for `tokens`
 * tokens, each sent to top_k experts of intermediate size expert_ffn. */
double flops_experts(double tokens, int top_k, double hidden, double expert_ffn, bool swiglu);

#endif
