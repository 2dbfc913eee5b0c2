/* dispatcher.h: the bookkeeping of the MoE all-to-all dispatcher (Megatron's
 * MoEAlltoAllTokenDispatcher with MoE Parallel Folding), host side.
 *
 * One MoE layer and micro-batch on one rank, T tokens, top-k, E experts,
 * EP ranks (El = E / EP local experts each), ETP ranks per expert.
 *
 *   1. local plan (dispatch_plan_local): from topk_idx [T, k] the permuted
 *      send buffer: rows sorted by expert (so by destination EP rank, whose
 *      experts are contiguous), token order inside an expert.  Dropless:
 *      every (token, slot) pair is a row.  Capacity factor cf: each expert
 *      gets exactly cap = ceil(T * k / E * cf) rows from this rank; pairs past
 *      cap in token order are dropped, missing rows are zero padding.
 *   2. token-count exchange (caller, through the backend): all-to-all over
 *      EP of expert_rows[E] (El ints to each EP peer), then all-gather of the
 *      received [EP][El] counts over ETP.
 *   3. finish (dispatch_plan_finish): all-to-all-v counts, the padded ETP
 *      all-gather layout [ETP][pad_rows] and sort_src, the map from the
 *      expert-major order the grouped GEMM needs ([El][ETP][EP] blocks) to
 *      rows of that gathered buffer.
 *
 * Row counts are in rows (multiply by hidden for elements).
 */
#ifndef MOEPLAN_EXECUTOR_DISPATCHER_H
#define MOEPLAN_EXECUTOR_DISPATCHER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int T, k, E, ep, etp, El;
    int capacity;             /* rows per expert from one rank; 0 = dropless */
    /* local plan */
    int32_t *row_of;          /* [T*k] row of pair (t, j) in the send buffer, -1 dropped */
    int32_t *expert_rows;     /* [E] rows this rank sends to each expert */
    int send_rows;            /* sum of expert_rows */
    int dropped;              /* pairs dropped by the capacity */
    size_t *send_counts, *send_displs;   /* [ep] rows */
    /* after the exchange */
    int32_t *recv_expert_rows;           /* [etp][ep][El] rows for my experts per source */
    size_t *recv_counts, *recv_displs;   /* [ep] rows, this rank's own */
    int recv_rows;            /* rows this rank receives over EP */
    int pad_rows;             /* largest recv_rows over the ETP group */
    int rows;                 /* expert rows after the ETP all-gather (padded: El * the padded group) */
    int real_rows;            /* of which rows of tokens (rows without the padding) */
    int padded;               /* 1: every group padded to a multiple of the alignment (dispatch_plan_finish) */
    int32_t *group_rows;      /* [El] rows of each local expert (grouped GEMM) */
    int32_t *sort_src;        /* [rows] expert-major row -> row of the gathered buffer; -1: a
                               * padding row (zeros in, dropped out) */
    int sort_cap;             /* entries sort_src holds */
} DispatchPlan;

/* Padded groups: every local expert's group is padded with zero rows up to
 * a multiple of DISPATCH_PAD_ALIGN rows (one GEMM tile's height), when that
 * adds at most 1 / DISPATCH_PAD_WASTE of the rows (fine-grained experts:
 * Qwen3-30B-A3B's 128 experts at ~1024 rows each, about 6%).  The groups
 * then come in a few sizes, and the grouped GEMM is one batched cuBLAS call
 * per size (one strided-batched call when all are equal, e.g. balanced
 * routing) instead of one call per expert (kernels/gemm.h GROUPED_STRIDED):
 * the router of an untrained model sends 0 to 3x the mean to an expert, so
 * padding every group to the largest would waste more than it saves. */
#define DISPATCH_PAD_ALIGN 128
#define DISPATCH_PAD_WASTE 4

/* capacity_factor <= 0: dropless.  Returns -1 on allocation failure. */
int dispatch_plan_init(DispatchPlan *p, int T, int k, int E, int ep, int etp,
                       double capacity_factor);
void dispatch_plan_free(DispatchPlan *p);

/* rows per expert per source rank for a capacity factor: ceil(T*k/E * cf) */
int dispatch_capacity(int T, int k, int E, double capacity_factor);

/* Step 1: fills row_of, expert_rows, send_rows, send_counts/displs, dropped.
 * -1 when out of host memory.  = dispatch_row_map + dispatch_plan_counts. */
int dispatch_plan_local(DispatchPlan *p, const int32_t *topk_idx);

/* The row map alone (the Backend's moe_plan op computes the same on the
 * device): row_of [T*k] of each (token, slot) pair in the send buffer, -1
 * dropped; kept_rows [E] pairs each expert keeps (before padding). */
int dispatch_row_map(int32_t *row_of, int32_t *kept_rows, const int32_t *topk_idx, int T, int k,
                     int E, int capacity);

/* Step 1 from the per-expert kept counts only (host [E]; may alias
 * p->expert_rows): expert_rows (padded to the capacity), dropped, send_rows,
 * send_counts/displs.  row_of is not touched: the map stays where it was
 * computed (on the device, in the training step). */
void dispatch_plan_counts(DispatchPlan *p, const int32_t *kept_rows);

/* Step 3: recv_expert_rows must hold the exchanged counts ([etp][ep][El];
 * with etp == 1 just [ep][El]); etp_rank is this rank's index in its ETP
 * group.  pad_align > 0: pad every group to a multiple of pad_align rows
 * where the waste allows (sets padded; the layer passes DISPATCH_PAD_ALIGN).
 * -1 when out of host memory. */
int dispatch_plan_finish(DispatchPlan *p, int etp_rank, int pad_align);

#endif
