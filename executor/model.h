/* model.h: the MoE transformer of the training step, written once against
 * the Backend interface (backend.h).
 *
 * Per micro-batch of b sequences of s tokens on one rank (T = b*s tokens):
 *   x = embedding(tokens)                                     [T, h]
 *   L x { x += Wo . attention(rope(RMSNorm(x) . Wqkv^T))      GQA, causal
 *         x += MoE(RMSNorm(x))  (or a dense SwiGLU MLP in the first Ld layers) }
 *   loss = cross_entropy(RMSNorm(x) . Wout^T, targets)        output layer replicated
 * MoE: router GEMM (fp32 logits), softmax, top-k (renormalised when k > 1,
 * Mixtral), the all-to-all dispatcher (dispatcher.h), grouped SwiGLU expert
 * GEMMs, weighted un-permutation, plus the shared expert when Fsh > 0.
 *
 * Parallelism: DP, EP, ETP (and their folding) and PP (1F1B or interleaved,
 * driven by executor/train.c from core/schedule.h).  TP and CP must be 1
 * (refused with a clear error): attention, norms, router, shared
 * expert, embedding and output layer are whole on every rank; routed experts
 * are split over EP (whole experts) and ETP (gate/up rows and down columns
 * of the FFN dimension).  Each parameter's shard and the groups its gradient
 * is summed over are in its ParamInfo (params.h).
 *
 * Structure (docs/executor-structure.md): the parameters (params.c: only
 * those of this rank's stage), the layers (layer.c: layer_forward /
 * layer_backward), the chunks of this rank (chunk.c: chunk_forward /
 * chunk_backward): chunk c is virtual stage c*PP + stage and holds the
 * layers core/layout.h gives it, the embedding on virtual stage 0 and the
 * output layer and loss on the last; no pipeline is one chunk with all of
 * them.  Each chunk has micro-batch contexts (MicroBatch, layer.h) holding
 * what a micro-batch keeps between its forward and its backward: as many as
 * the rank's schedule keeps in flight in that chunk (1 without a pipeline).
 */
#ifndef MOEPLAN_EXECUTOR_MODEL_H
#define MOEPLAN_EXECUTOR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/plan.h"
#include "executor/backend.h"
#include "executor/params.h"

typedef struct Model Model;

/* Tiny synthetic models for tests: "tiny-moe" (hidden 64, 4 heads / 2 KV
 * groups, head dim 16, 8 experts top-2, expert FFN 96, vocab 128, 2 layers),
 * "tiny-moe-gpu" (the same with head dim 64, as the GPU attention needs),
 * "tiny-moe-shared" (3 layers, the first dense with FFN 128, shared expert 64),
 * "tiny-moe-tied" (tiny-moe with the output layer tied to the embedding).
 * Returns -1 for an unknown name. */
int model_spec_tiny(const char *name, ModelSpec *out);

/* layers: run the first `layers` layers (0 = all).  micro_batch, seq and
 * capacity come from plan->train; with pp > 1 also the global batch (the
 * micro-batches m = GBS / (MBS * DP) the schedule runs; with vpp > 1 m
 * must be a multiple of pp) and the layer split (plan_stage_layers). */
int model_create(const Plan *plan, int layers, uint64_t seed, Backend *be, Model **out,
                 MpError *err);
void model_destroy(Model *m);

/* Micro-batch contexts the model holds in chunk 0 (forward of a
 * micro-batch fills one, its backward reads it; 1 without a pipeline). */
int model_slots(const Model *m);
int model_chunk_slots(const Model *m, int chunk);

/* This rank's place in the pipeline: stages, its stage (index in the PP
 * group), chunks per rank, micro-batches per step. */
void model_pipeline(const Model *m, int *pp, int *stage, int *vpp, int *micro_batches);

/* The forward / backward of chunk `chunk` for the micro-batch in context
 * `slot` of that chunk.  tokens are read only on the first stage's chunk 0,
 * targets only on the last stage's last chunk.  Other chunks take their
 * input in model_boundary(INPUT) (the previous stage's output) and their
 * output gradient in model_boundary(GRAD) before the call. */
int model_chunk_forward(Model *m, int chunk, int slot, const int32_t *tokens, const int32_t *targets,
                        float dloss, MpError *err);
int model_chunk_backward(Model *m, int chunk, int slot, MpError *err);

/* Device buffers (act [Ts, h], the sequence-parallel shard) at a chunk's boundaries, for the pipeline's
 * sends and receives: INPUT the activations entering the chunk, OUTPUT
 * those leaving it (after its forward), GRAD the gradient: d loss / d
 * output before its backward, d loss / d input after it. */
typedef enum { BOUNDARY_INPUT = 0, BOUNDARY_OUTPUT, BOUNDARY_GRAD } ModelBoundary;
void *model_boundary(Model *m, int chunk, int slot, ModelBoundary which);
size_t model_boundary_elems(const Model *m);   /* Ts * h: the sequence-parallel shard (T / tp tokens) */

/* The forward of one micro-batch into context `slot` [0, model_slots()):
 * tokens, targets host [b*s] (read during the call); dloss as below.  The
 * token losses and aux loss accumulate on the device (model_read_losses). */
int model_forward(Model *m, int slot, const int32_t *tokens, const int32_t *targets, float dloss,
                  MpError *err);
/* The backward of the micro-batch in context `slot`; gradients accumulate. */
int model_backward(Model *m, int slot, MpError *err);

/* One micro-batch: forward and backward, gradients ACCUMULATE into the
 * arenas.  tokens, targets: host [b*s].  dloss: the gradient of the step loss
 * per token loss (1 / tokens of the global batch).  The token-loss sum and
 * T * (the micro-batch's auxiliary loss, summed over MoE layers) accumulate
 * on the device (model_read_losses); when loss_sum is not NULL they are read
 * now (a host synchronisation) and *loss_sum gets their sum, else nothing is
 * read.  The step loss is then sum / (tokens of the global batch): the mean
 * token loss plus the mean over micro-batches of the auxiliary loss. */
int model_forward_backward(Model *m, const int32_t *tokens, const int32_t *targets, float dloss,
                           double *loss_sum, MpError *err);

/* Sums the device loss accumulators over group g (no read). */
void model_reduce_losses(Model *m, GroupKind g);
/* Reads (and zeroes) the device loss accumulators: the token-loss sum and
 * T * aux sum since the last read, summed over the group `reduce_over`
 * (GROUP_KIND_COUNT: this rank only).  One host synchronisation. */
int model_read_losses(Model *m, GroupKind reduce_over, double *token_loss_sum, double *aux_sum);

/* Auxiliary load-balancing loss coefficient (Megatron --moe-aux-loss-coeff;
 * backend.h gives the formula).  0 (the default of model_create): off. */
void model_set_aux_loss_coeff(Model *m, float coeff);
/* whether the dispatcher pads every local expert's rows to equal groups
 * (executor.h ExecExpertGemm: PADDED, or AUTO with EXEC_PAD_MIN_EXPERTS local
 * experts or more); returns it */
bool model_set_expert_gemm(Model *m, ExecExpertGemm mode);
/* MoE dispatch plans made so far, and of them with padded groups */
void model_dispatch_counts(const Model *m, long *dispatches, long *padded);

/* Routing trace (tests), host [L][T*k] int32 for ONE micro-batch (entries of
 * dense layers unused).  force 0: every MoE layer's top-k choices are copied
 * there (record).  force 1: they are replaced by the trace's (the forced
 * experts' probabilities, renormalised as usual), and model_route_flips()
 * counts the choices that differ from the router's own (per token, as sets),
 * cumulative.  trace NULL: off. */
void model_set_routing_trace(Model *m, int32_t *trace, int force);
long model_route_flips(const Model *m);

void model_zero_grads(Model *m);
/* the trainer's step starts (after model_zero_grads): with overlap grad,
 * each gradient bucket is started as soon as the last micro-batch's
 * backward of its layers is done (params.h) */
void model_step_begin(Model *m);

/* Gradient bucket size (params.h), elements of fp32 gradient, when an
 * overlap is asked: 10M (40 MB) on the GPU, a quarter of Megatron-Core's
 * default max(40M, 1M x DP*CP) elements (megatron/core/distributed/
 * distributed_data_parallel.py) so that the few layers a one-node run holds
 * still get several buckets (the per-arena bucket cap of params.c bounds the
 * count for large layers); 16 Ki (64 KiB) on the CPU, so that the tiny
 * models of the tests have several buckets per arena. */
#define MODEL_BUCKET_ELEMS_GPU ((size_t)10 * 1000 * 1000)
#define MODEL_BUCKET_ELEMS_CPU ((size_t)16 * 1024)
/* sums every gradient over the groups of its ParamInfo.reduce_groups: dense
 * over DP*CP, experts over EDP, replicated (norms, router) also over TP;
 * then, with tied embeddings under a pipeline, the embedding gradient of the
 * first stage and the output layer's of the last over the PP group */
void model_sync_grads(Model *m);
/* one Adam step (t counts from 1) and refresh of the act weight copies */
void model_adam_step(Model *m, float lr, int t);

/* Introspection (tests, reports). */
int model_num_params(const Model *m);
const ParamInfo *model_param(const Model *m, int i);
size_t model_local_params(const Model *m);        /* elements held by this rank */
/* elements of each Adam moment on this rank (the shards with the
 * distributed optimizer, else model_local_params) */
size_t model_optimizer_elems(const Model *m);
int model_dropped_pairs(const Model *m);
/* gradient buckets of this rank (both arenas), and how many of them the
 * last step started during its backward (overlap grad) */
void model_bucket_stats(const Model *m, int *buckets, int *early_starts);           /* last micro-batch, all layers */
/* (uid, flat index in the full tensor) of local element i of parameter p */
void model_param_global_index(const Model *m, int p, size_t i, int *uid, size_t *flat);
/* distributed optimizer: the reduced gradient shards all-gathered back into
 * the full gradient arenas (collective; tests, before reading gradients) */
void model_gather_grads(Model *m);
/* host copies: gradient / master of parameter p, n floats */
void model_param_grad_host(Model *m, int p, float *out);
void model_param_value_host(Model *m, int p, float *out);
/* overwrite the master weights of parameter p (and its act copy), n floats */
void model_param_set_host(Model *m, int p, const float *values);

#endif
