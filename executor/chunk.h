/* chunk.h: the layers of one (virtual) pipeline stage, run for one
 * micro-batch at a time.
 *
 *   chunk_forward(c, mb):   first stage: x = embedding(mb->tokens) into
 *                           mb->xs[l0]; else mb->xs[l0] holds the previous
 *                           stage's output.  Then layer_forward for each
 *                           layer l0 .. l1-1 (mb->xs[l] -> mb->xs[l+1]).
 *                           Last stage: final RMSNorm, output GEMM, cross-
 *                           entropy (token losses into the loss accumulator,
 *                           d loss / d logits kept in mb->logits).
 *   chunk_backward(c, mb):  last stage: output layer and final norm backward
 *                           into mb->dx; else mb->dx holds the next stage's
 *                           gradient.  layer_backward for l1-1 .. l0 (in place
 *                           on mb->dx).  First stage: embedding backward.
 *                           Weight gradients accumulate (+=).
 *
 * No pipeline is one chunk that is both first and last (model.c).  Both
 * return -1 with err when a device allocation failed (StepEnv.failed). */
#ifndef MOEPLAN_EXECUTOR_CHUNK_H
#define MOEPLAN_EXECUTOR_CHUNK_H

#include "core/error.h"
#include "executor/layer.h"

typedef struct {
    StepEnv *env;
    Layer *layers;          /* the model's layers; this chunk runs [l0, l1) */
    int l0, l1;
    int first, last;        /* embedding here / output layer and loss here */
    int emb, final_norm, out;   /* parameter indices (first / last stage) */
} Chunk;

/* Allocates the per-micro-batch context of a chunk (the layer states of
 * layers [0, L) for the dispatcher plans of the chunk's MoE layers). */
int micro_batch_init(MicroBatch *mb, const Chunk *c);
void micro_batch_free(MicroBatch *mb, const Chunk *c);
/* capacity drops of the micro-batch's last forward, summed over the chunk's layers */
int micro_batch_dropped(const MicroBatch *mb, const Chunk *c);

/* Requests every buffer of the chunk's step for this micro-batch context
 * (layer_reserve, boundary activations, output layer): before the first step. */
void chunk_reserve(const Chunk *c, MicroBatch *mb);

int chunk_forward(const Chunk *c, MicroBatch *mb, MpError *err);
int chunk_backward(const Chunk *c, MicroBatch *mb, MpError *err);

#endif
