/* cal_shapes.h: the attention kernels a calibration measures for the plans
 * it calibrates for, and the calibration file's entry for one of them.
 *
 * A plan's GPU runs, per layer and micro-batch, the flash-attention kernels
 * that simulator/ring.c prices: with CP > 1 the ring's step shapes
 * (core/layout.h's layout_cp_step_shapes: the diagonal step q 2c x kv 2c
 * causal, q 2c x kv c and q c x kv 2c without a mask, c = s/(2 CP)); with CP
 * 1 the full sequence, q s x kv s causal.  Each at the plan's heads on one
 * GPU (layout_attention_heads: query heads n/TP, K/V heads g/TP), its
 * micro-batch and head dims.  The calibration (tests/gpu/test_calibrate
 * --plan FILE) measures every distinct shape of its plans, the CP 1
 * full-sequence kernel included (what the same mapping without CP would
 * run), and writes one attention entry per shape and backend, keyed as
 * simulator/attention.c looks entries up (q rows, kv rows, heads x batch,
 * head dim, mask, backend): `simulate --calibration` then finds an entry at
 * distance 0 for every kernel of those plans.
 *
 * Sliding-window kernels (a band of w keys) are not listed: the kernels'
 * interface has no band mask to measure them with; their layers keep the
 * table's rate.
 */
#ifndef MOEPLAN_CAL_SHAPES_H
#define MOEPLAN_CAL_SHAPES_H

#include <stddef.h>

#include "../core/attn_backend.h"
#include "../core/attn_mask.h"
#include "../core/error.h"
#include "../core/plan.h"

typedef enum {
    CAL_KERNEL_FULL = 0,        /* CP 1: q s x kv s causal */
    CAL_KERNEL_RING_DIAGONAL,   /* ring step 0: own K/V, q 2c x kv 2c causal */
    CAL_KERNEL_RING_EARLIER,    /* an earlier rank's K/V: q 2c x kv c, no mask */
    CAL_KERNEL_RING_LATER,      /* a later rank's K/V: q c x kv 2c, no mask */
} CalKernelRole;

/* "full", "ring-diagonal", "ring-earlier", "ring-later" */
const char *cal_kernel_role_name(CalKernelRole r);

typedef struct {
    CalKernelRole role;     /* of the first plan that runs the shape */
    int q_rows, kv_rows;    /* tokens of one sequence */
    AttnMask mask;
    int batch;              /* sequences per kernel: the micro-batch */
    int heads, kv_heads;    /* query / K-V heads on one GPU */
    int d_qk, d_v;          /* head dims */
    double fwd_flops;       /* the simulator's count: 2 * pairs * (d_qk + d_v) * heads * batch,
                             * pairs q*kv or q*kv/2 causal (core/layout.h); backward 2.5x */
    char name[80];          /* "<model> s<seq> tp<TP> cp<CP> mbs<b> <role>" of that plan */
} CalAttnShape;

/* Appends to shapes[0..*n) the kernels of plan p that are not there yet
 * (same rows, mask, batch, heads, K/V heads and head dims): the CP 1
 * full-sequence kernel, then for CP > 1 the ring's diagonal, earlier and
 * later step shapes.  -1 with err set when more than `max` shapes result
 * or the plan's heads are not whole per GPU. */
int cal_attention_shapes_add(const Plan *p, CalAttnShape *shapes, int max, int *n, MpError *err);

/* One calibration-file attention entry (simulator/calibration.c's format)
 * for shape s measured on `backend` with the given kernel times (seconds,
 * forward and backward): TFLOP/s = fwd_flops / fwd_s, 2.5 fwd_flops /
 * bwd_s.  Writes the JSON object into buf (NUL-terminated); -1 with err
 * set when a time is not positive and finite or buf is too small. */
int cal_attention_entry_json(const CalAttnShape *s, AttnBackend backend, double fwd_s, double bwd_s, char *buf,
                             size_t cap, MpError *err);

#endif
