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
/* Forwards rank r runs before its first backward. */
int schedule_warmup(const PipeSchedule *s, int rank);
/* The idx-th operation (0..2*m*vpp-1) of rank r. */
PipeOp schedule_op(const PipeSchedule *s, int rank, int idx);
/* Chunks whose activations rank r holds at its peak: W + 1, at most m*vpp. */
int schedule_inflight(const PipeSchedule *s, int rank);

#endif
