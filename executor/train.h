/* train.h: the step loop behind exec_train, open for tests: a Trainer owns
 * the backend, the model and the data of one rank. */
#ifndef MOEPLAN_EXECUTOR_TRAIN_H
#define MOEPLAN_EXECUTOR_TRAIN_H

#include <stdbool.h>

#include "executor/backend.h"
#include "executor/data.h"
#include "executor/executor.h"
#include "executor/model.h"
#include "core/schedule.h"

typedef struct {
    Backend *be;
    Model *model;
    DataSource data;
    int dp, dp_rank;        /* data-parallel size and index (DP group) */
    int cp, cp_rank;        /* context-parallel size and index: every CP rank of a DP
                             * rank reads the same sequences and keeps its two chunks */
    int micro_batches;      /* per rank per step: B / (b * DP) */
    int B, b, s;
    int step;               /* steps done (Adam's t = step + 1) */
    float lr;
    float *loss_dev;        /* [1] f32 device */
    int32_t *in, *tg;       /* host [b*s] */
    float aux_coeff;        /* auxiliary load-balancing loss coefficient in use */
    bool padded_groups;     /* the dispatcher pads the experts to equal groups (--expert-gemm) */
    double last_aux;        /* aux part of the last step's loss (mean over micro-batches) */
    int32_t *trace;         /* routing trace [B/b][L][b*s*k] (tests), or NULL */
    int trace_force;
    size_t trace_per_mb;    /* L * b * s * k */
    /* the pipeline schedule of this rank (core/schedule.h): with pp = 1 it
     * is forward, backward of each micro-batch in turn */
    PipeSchedule sched;
    int stage;              /* this rank's pipeline stage (index in the PP group) */
    int *slot_of;           /* [vpp * m] context of (chunk, micro-batch) in flight, -1 */
    int *free_slot;         /* [vpp * most] free contexts of each chunk (a stack) */
    int *nfree;             /* [vpp] */
    int most_slots;
    PipeOp *executed;       /* [2 m vpp] the operations of the last step, in the order run */
    int num_executed;
    double *op_time;        /* [2 m vpp][2] their host start and end, seconds from the step's start */
    bool overlap_p2p;       /* --overlap p2p: pipeline batches waited for where their data are read */
    int pp_pending;         /* the pipeline batch in flight (Backend.p2p_start handle), -1 none */
    int pp_wait_at;         /* the operation before which it is waited for */
    int pp_ops_behind;      /* operations run while it was in flight */
    int pp_overlapped;      /* batches of the last step with operations run behind them */
    /* overlap, interleaved steady state: the forward half of the next
     * exchange started after a pair's forward (train.c early_forward_batch) */
    int fwd_pending;        /* its handle, -1 none */
    int early_boundary;     /* the exchange whose forward half it took, -1 */
    int staged_op;          /* the forward whose input it receives into stage_in, -1 */
    void *stage_in;         /* act [Ts, h] device: that input (vpp > 1 with overlap only) */
} Trainer;

int trainer_create(const Plan *plan, const ExecOptions *opt, const ExecComms *comms,
                   Trainer **out, MpError *err);
/* zero gradients, forward and backward of every micro-batch in the order of
 * core/schedule.h (1F1B, or interleaved with vpp > 1) with the pipeline's
 * sends and receives, gradient sync, and (apply_optimizer) one Adam step.
 * *loss: mean token loss of the global batch (the same on every rank: the
 * last stage's losses are summed over the PP group). */
int trainer_step(Trainer *t, bool apply_optimizer, double *loss, MpError *err);
void trainer_destroy(Trainer *t);

/* Routing trace over the global batch of one step (tests): [B/b][L][b*s*k]
 * int32 on the host, global micro-batch g = m*DP + dp_rank.  force 0: record
 * the router's top-k choices; 1: impose them (model.h), so runs under two
 * mappings or backends take the same routing decisions. */
size_t trainer_routing_trace_len(const Trainer *t);
void trainer_set_routing_trace(Trainer *t, int32_t *trace, int force);

#endif
