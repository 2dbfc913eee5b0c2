/* layout.h: where the layers and the tokens of a plan live, the one
 * definition that the simulator, the planner and the executor share.
 *
 *   - the kind of each decoder layer (dense MLP or MoE);
 *   - the layers of each pipeline stage and of each virtual stage (model
 *     chunk) of the interleaved schedule;
 *   - the zig-zag context-parallel chunk map: a sequence of s tokens is cut
 *     into 2*CP chunks of s/(2*CP); CP rank r holds chunks r and 2*CP-1-r
 *     (so every rank gets the same share of the causal mask), with their
 *     position ids;
 *   - the ring attention steps of a CP rank: at step i it holds the K/V of
 *     CP rank (r - i) mod CP and computes one attention kernel of a shape
 *     and mask that depend on i and r (Transformer Engine's
 *     AttnFuncWithCPAndKVP2P, v2.1, causal, bshd/sbhd formats).
 */
#ifndef MOEPLAN_LAYOUT_H
#define MOEPLAN_LAYOUT_H

#include <stdbool.h>

#include "attn_mask.h"
#include "model.h"
#include "plan.h"

typedef enum { LAYER_DENSE = 0, LAYER_MOE = 1 } LayerKind;

/* Layer i (0-based) of model m: the first num_dense_layers layers (and
 * every layer of a model without experts) have a dense MLP, the rest MoE. */
LayerKind layout_layer_kind(const ModelSpec *m, int layer);

/* Layers of virtual stage vs = chunk*PP + rank (vpp = 1: vs = rank): the
 * rank's layers (plan_stage_layers: even, or the plan's first/last split)
 * divided evenly over its vpp chunks, the first chunks taking any
 * remainder. */
int layout_vstage_layers(const Plan *p, int vs);
/* Index of the first decoder layer of virtual stage vs (layers are placed
 * in virtual-stage order: vs 0 holds the first layers of the model). */
int layout_vstage_first_layer(const Plan *p, int vs);

/* ---- zig-zag context parallelism ---- */

/* The two chunks (each s/(2*CP) tokens) held by CP rank r: r and 2*CP-1-r. */
void layout_cp_chunks(int cp, int rank, int chunks[2]);
/* Position ids of the s/CP tokens CP rank r holds, in its local order
 * (chunk r then chunk 2*CP-1-r).  `out` has room for seq/cp entries; seq
 * must be a multiple of 2*CP (cp 1: positions 0..seq-1).  Returns -1 with
 * err set otherwise. */
int layout_cp_position_ids(int seq, int cp, int rank, int *out, MpError *err);

/* AttnMask (core/attn_mask.h): NONE, or CAUSAL with q and kv starting at the
 * same position (query row i sees keys 0..i). */

/* One ring step of one CP rank, in tokens of one sequence (multiply by the
 * micro-batch for rows):
 *   step 0:          own K/V, q 2c x kv 2c, causal over the local tokens
 *                    (chunk r with itself causal, chunk 2CP-1-r with chunk r
 *                    fully, with itself causal);
 *   1 <= i <= r:     K/V of an earlier rank: both local query chunks see only
 *                    its first chunk fully: q 2c x kv c, no mask;
 *   i > r:           K/V of a later rank: only the local second chunk sees
 *                    both of its chunks: q c x kv 2c, no mask,
 * with c = s/(2*CP).  Every step covers 2*c^2 (query, key) pairs, the
 * diagonal step through the causal mask (2c)^2/2. */
typedef struct {
    int q_rows, kv_rows;   /* tokens of one sequence */
    AttnMask mask;
    int kv_from;           /* CP rank whose K/V are used */
    double pairs;          /* (query, key) pairs computed: q*kv, or q*kv/2 for causal */
} CpRingStep;
/* Step i (0..cp-1) of CP rank `rank`.  cp 1: the one step, q s x kv s causal. */
int layout_cp_ring_step(int seq, int cp, int rank, int step, CpRingStep *out, MpError *err);
/* Fills steps[0..cp-1] for CP rank `rank` (layout_cp_ring_step of each step). */
int layout_cp_ring_steps(int seq, int cp, int rank, CpRingStep *steps, MpError *err);

/* The distinct kernel shapes among the ring steps of all CP ranks, by the
 * rank whose K/V a step uses:
 *   [CP_STEP_DIAGONAL] its own (step 0 of any rank):  q 2c x kv 2c causal;
 *   [CP_STEP_EARLIER]  an earlier rank's (step i <= r): q 2c x kv c, no mask;
 *   [CP_STEP_LATER]    a later rank's (step i > r):     q c x kv 2c, no mask.
 * Taken from layout_cp_ring_step: step 0 of rank 0, step 1 of rank CP-1
 * (K/V of rank CP-2) and step 1 of rank 0 (K/V of rank CP-1);
 * tests/test_cal_shapes.c checks that every step of every rank is one of
 * them.  cp 1: only [CP_STEP_DIAGONAL] is filled (q s x kv s causal).
 * Returns the number of shapes (1 or 3), or -1 with err set.  The simulator
 * prices these (simulator/ring.c) and the calibration measures them
 * (simulator/cal_shapes.c): one enumeration for both. */
enum { CP_STEP_DIAGONAL = 0, CP_STEP_EARLIER = 1, CP_STEP_LATER = 2, CP_STEP_SHAPES = 3 };
int layout_cp_step_shapes(int seq, int cp, CpRingStep shapes[CP_STEP_SHAPES], MpError *err);

/* The attention heads of one GPU (tensor parallelism splits the heads):
 * query heads num_heads/tp; K/V heads groups/tp, at least 1 (tp above the
 * group count replicates a group); MLA: K/V per query head after the
 * up-projection, d_qk = nope + rope dims, d_v = v_head_dim.  Doubles, as
 * the simulator uses them (plan_validate makes them whole). */
typedef struct {
    double q_heads, kv_heads;
    double d_qk, d_v;
} AttnHeads;
void layout_attention_heads(const ModelSpec *m, int tp, AttnHeads *out);

#endif
