/* schedule.h: the operation order of each pipeline rank under Megatron-LM's
 * 1F1B and interleaved (virtual pipeline) schedules, shared by the
 * simulator (simulator/pipeline.c times it) and the executor.
 *
 * Virtual stage vs = chunk*PP + rank holds the chunk-th model chunk of a
 * rank (vpp = 1: plain 1F1B, vs = rank).  Each rank runs m*vpp forwards and
 * as many backwards in this order:
 *   warmup W forwards, then (forward, backward) pairs, then the remaining
 *   backwards, with
 *     1F1B:        W = min(PP - r - 1, m)
 *     interleaved: W = min((PP - r - 1)*2 + (v - 1)*PP, m*v)
 *   the k-th forward of a rank runs chunk (k mod PP*v) / PP on micro-batch
 *   (k / (PP*v))*PP + k mod PP; backwards take chunks in reverse order.
 */
#ifndef MOEPLAN_SCHEDULE_H
#define MOEPLAN_SCHEDULE_H

#include <stdbool.h>

typedef struct {
    int pp, vpp, m;        /* stages, chunks per rank, micro-batches per step */
} PipeSchedule;

typedef struct {
    bool forward;
    int chunk;             /* 0..vpp-1, the model chunk of the rank */
    int microbatch;        /* 0..m-1 */
} PipeOp;

/* Operations per rank: 2*m*vpp. */
int schedule_num_ops(const PipeSchedule *s);

/* Forwards rank r runs before its first backward.  (Inline: the pipeline
 * simulation asks for every op of every rank of every plan it ranks.) */
static inline int schedule_warmup(const PipeSchedule *s, int r) {
    int total = s->m * s->vpp;
    int w = s->vpp == 1 ? s->pp - r - 1 : (s->pp - r - 1) * 2 + (s->vpp - 1) * s->pp;
    return w < total ? w : total;
}

/* The idx-th operation (0..2*m*vpp-1) of rank r. */
static inline PipeOp schedule_op(const PipeSchedule *s, int r, int idx) {
    int total = s->m * s->vpp, w = schedule_warmup(s, r);
    bool fwd;
    int k;   /* index of the op among the rank's ops of its direction */
    if (idx < w) {
        fwd = true;
        k = idx;
    } else {
        int j = idx - w, steady = total - w;
        if (j < 2 * steady) {
            fwd = (j % 2) == 0;
            k = fwd ? w + j / 2 : j / 2;
        } else {
            fwd = false;
            k = steady + (j - 2 * steady);
        }
    }
    int group = s->pp * s->vpp, in_group = k % group, c = in_group / s->pp;
    PipeOp op = {fwd, fwd ? c : s->vpp - 1 - c, (k / group) * s->pp + in_group % s->pp};
    return op;
}

/* Whether the pipeline's sends and receives are exchanged at boundary idx
 * (0..2*m*vpp) of rank r's operations, i.e. before its idx-th operation
 * (idx = 2*m*vpp: after the last).  At such a boundary one batch holds the
 * sends of the operations since the previous one and the receives of the
 * operations up to the next one (executor/train.c).
 *   1F1B:        every boundary (Megatron-LM's send_forward_recv_backward /
 *                send_backward_recv_forward between each forward and
 *                backward);
 *   interleaved: every boundary of the warmup and the cooldown, and in the
 *                steady state after each (forward, backward) pair only
 *                (Megatron-LM's send_forward_backward_recv_forward_backward):
 *                exchanging between the forward and the backward of a pair
 *                deadlocks, as a blocking batch waits for its peer's.
 * tests/test_core_schedule.c checks both for deadlock under blocking
 * batches, for pp up to 8. */
static inline int schedule_p2p_boundary(const PipeSchedule *s, int r, int idx) {
    if (s->vpp == 1) return 1;
    int w = schedule_warmup(s, r), steady = s->m * s->vpp - w;
    return idx <= w || idx >= w + 2 * steady || (idx - w) % 2 == 0;
}

/* Chunks whose activations rank r holds at its peak: W + 1, at most m*vpp. */
int schedule_inflight(const PipeSchedule *s, int rank);

/* Micro-batch contexts chunk c of rank r needs: the most of its
 * micro-batches whose forward ran and whose backward did not, along the
 * rank's operation order (at least 1).  The executor keeps that many
 * (executor/model.c); the executor's memory inventory counts them
 * (simulator/exec_memory.c). */
int schedule_chunk_contexts(const PipeSchedule *s, int r, int c);

#endif
