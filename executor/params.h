/* params.h: the parameters of the training step, with the shard each rank
 * holds and the groups each gradient is reduced over.
 *
 * Every parameter is one entry of a table (ParamInfo).  Its shard says how
 * the full tensor is split over ranks (Megatron-Core's names):
 *   SHARD_REPLICATED     every rank of the tensor-parallel group holds it all
 *                        (norm weights, the router)
 *   SHARD_COLUMN         rows of the output dimension split over TP (QKV,
 *                        gate/up of a dense or shared MLP)
 *   SHARD_ROW            columns of the input dimension split over TP (the
 *                        attention output projection, down of an MLP)
 *   SHARD_VOCAB          rows of the vocabulary split over TP (embedding,
 *                        output layer)
 *   SHARD_EXPERT_COLUMN  whole experts over EP, and the gate/up rows of the
 *                        expert FFN dimension over ETP (experts.w13)
 *   SHARD_EXPERT_ROW     whole experts over EP, and the down columns of the
 *                        expert FFN dimension over ETP (experts.w2)
 *   SHARD_EXPERT         whole experts over EP, not split inside (reserved
 *                        for expert biases / per-expert scales)
 * parts / part: how many ranks split the tensor along that dimension and
 * which part this rank holds (1 / 0 when nothing is split; TP is 1 in the
 * step today, so dense shards are whole).
 *
 * reduce_groups: the group kinds (bit 1 << GroupKind) whose members hold
 * the same shard and see different tokens, so the gradient is summed over
 * them: DP*CP for dense parameters, EDP for experts, plus TP for parameters
 * replicated across a sequence-parallel group (norms, router: each TP rank
 * sees a different slice of the sequence).  params_reduce_grads() walks the
 * table: for each group kind, each maximal run of parameters adjacent in
 * their arena that reduce over it is one all-reduce (sum, fp32).
 *
 * Storage: two flat arenas, dense (index 0) and expert (index 1), each with
 * fp32 master, fp32 gradient, Adam m and v, and the act copy the GEMMs read
 * (== master when the backend's act type is float).  Initialisation is a
 * counter-based hash of (seed, tensor id, index in the FULL tensor), so every
 * mapping holds the same numbers in its shard.
 */
#ifndef MOEPLAN_EXECUTOR_PARAMS_H
#define MOEPLAN_EXECUTOR_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "executor/backend.h"

typedef enum { PARAM_PLAIN = 0, PARAM_W13 = 1, PARAM_W2 = 2 } ParamKind;

typedef enum {
    SHARD_REPLICATED = 0,
    SHARD_COLUMN,
    SHARD_ROW,
    SHARD_VOCAB,
    SHARD_EXPERT,
    SHARD_EXPERT_COLUMN,
    SHARD_EXPERT_ROW,
    SHARD_KIND_COUNT
} ParamShard;

#define PARAM_GROUP_BIT(g) (1u << (unsigned)(g))

typedef struct {
    char name[40];
    int uid;            /* id of the full tensor (W13: gate uid; up = uid + 1) */
    ParamKind kind;     /* layout of the local shard (model_param_global_index) */
    ParamShard shard;
    int parts, part;    /* split of the sharded dimension: ranks, this rank's index */
    unsigned reduce_groups;  /* PARAM_GROUP_BIT(GroupKind) of each group summed over */
    int expert;         /* arena: 0 dense, 1 expert */
    size_t n;           /* local elements */
    size_t offset;      /* elements into its arena */
    /* tensor-parallel split of a PARAM_PLAIN tensor, full shape [rows, cols]
     * row-major (params_set_split; nsec 0: not split, local = full):
     * the output rows are nsec sections (QKV: q, k, v; gate/up: gate, up),
     * section s has sec_rows[s] rows of which this rank holds sec_lrows[s]
     * starting at sec_row0[s]; of the input columns it holds lcols from col0 */
    int nsec;
    int sec_rows[3], sec_lrows[3], sec_row0[3];
    int cols, lcols, col0;
    float init_scale;   /* uniform half-width; 0: constant init_value */
    float init_value;
    int layer;          /* the layer whose backward writes its gradient and whose
                         * forward reads it first: -1 embedding, 0..L-1 decoder
                         * layers, L final norm and output layer (buckets) */
    int grad_unset;     /* its gradient holds last step's values: the step's first
                         * contribution writes (params_grad_beta) or zeroes first */
} ParamInfo;

/* A gradient bucket (Megatron-Core's DDP buckets): a run of parameters
 * adjacent in their arena, built from the arena's end (the layers whose
 * backward comes first) until it holds bucket_elems elements.  With the
 * distributed optimizer each bucket is padded to shards * shard_n and each
 * member owns part shard_rank of EVERY bucket (its optimizer shard is the
 * concatenation of those parts: m / v at own; its reduced gradient stays
 * in place, at lo + shard_rank * shard_n of the gradient arena). */
typedef struct {
    int arena;
    size_t lo, n;          /* elements of the arena: [lo, lo + n) its parameters */
    size_t shard_n;        /* sharded: each member's part; the bucket spans shards * shard_n */
    size_t own;            /* sharded: offset of this rank's part in m, v (and a sharded master) */
    int pending;           /* its layers whose last backward of the step has not run */
    int grad_req, param_req;   /* Backend async handles, -1: none pending */
    int launched;          /* its gradient collective was started this step */
    int held;              /* started only by params_reduce_grads (params_hold_bucket_of) */
} ParamBucket;

typedef struct {
    float *master, *grad, *m, *v;   /* f32 [n] device (sharded: see below) */
    void *act;                      /* act [n] device (== master when act is float) */
    size_t n;
    /* Distributed optimizer (Megatron's ZeRO-1), when asked and the arena's
     * data-parallel group (DP*CP dense, EDP expert) has shards > 1 members:
     * each bucket is padded to shards * its shard_n elements (a multiple
     * of 64) and this rank owns part shard_rank of each (ParamBucket).
     * Gradients are reduce-scattered in place (Megatron's grad buffer: no
     * second buffer); m, v are [shard_n]; master is [shard_n] when the act
     * copy is a separate bf16 tensor (CUDA), and the full tensor when it
     * is the act copy itself (CPU float); after Adam the owned act
     * elements are all-gathered over the group. */
    int shards, shard_rank;
    size_t shard_n;                 /* owned elements: sum of the buckets' shard_n */
    size_t full;                    /* elements of grad (and act): n plus the buckets' padding */
    GroupKind group;
    int master_sharded;
} ParamArena;

typedef struct {
    Backend *be;
    ParamInfo *params;
    int count, cap;
    ParamArena arena[2];
    /* the expert shard of this rank, for the full-tensor index */
    int h, Fe, Fl, e0, f0;
    uint64_t seed;
    int distributed;                /* 1: distributed optimizer (ZeRO-1) asked */
    /* buckets (set before params_allocate): overlap_grad starts a bucket's
     * gradient collective once the last micro-batch's backward of its
     * layers is done (params_layer_backward_done); overlap_param starts the
     * all-gather of each bucket after its Adam and waits for it before
     * the forward of its first layer (params_layer_forward).  Without
     * either, one bucket per arena (one collective, as before). */
    int overlap_grad, overlap_param;
    size_t bucket_elems;            /* 0: one bucket per arena */
    int cur_layer;                  /* ParamInfo.layer of the next params_add */
    int num_layers;                 /* L: tags -1 .. L */
    int micro_batches;              /* backwards of each layer per step */
    ParamBucket *bucket;
    int nbuckets;
    unsigned char *bucket_has;      /* [nbuckets][L + 2]: bucket holds a parameter of tag l */
    int *layer_bwd;                 /* [L + 2] backwards of each tag this step */
    int armed;                      /* counting backwards (params_step_begin) */
    int early_starts;               /* buckets started during the last step's backward */
} ParamStore;

/* h: hidden; Fe: expert FFN; Fl = Fe / ETP; e0, f0: first expert and first
 * FFN row of this rank's expert shard. */
void params_init(ParamStore *ps, Backend *be, uint64_t seed, int h, int Fe, int Fl, int e0, int f0);

/* Appends a parameter; reduce_groups from the shard (params_reduce_groups).
 * Returns its index, -1 when out of host memory. */
int params_add(ParamStore *ps, const char *name, int uid, ParamKind kind, ParamShard shard,
               int parts, int part, size_t n, float init_scale, float init_value);

/* Describes the tensor-parallel split of parameter p (see ParamInfo):
 * nsec sections of rows (full, local, first local), and the columns. */
void params_set_split(ParamStore *ps, int p, int nsec, const int *rows, const int *lrows,
                      const int *row0, int cols, int lcols, int col0);

/* The groups the gradient of a parameter with this shard is summed over:
 * DP*CP (dense) or EDP (expert), plus TP for replicated parameters (they
 * sit in a sequence-parallel region). */
unsigned params_reduce_groups(ParamShard shard);

/* Allocates the arenas and fills them with the deterministic initial values.
 * -1 with err on failure. */
int params_allocate(ParamStore *ps, MpError *err);
void params_free(ParamStore *ps);

/* (uid, flat index in the full tensor) of local element i of parameter p */
void params_global_index(const ParamStore *ps, int p, size_t i, int *uid, size_t *flat);

/* The fp32 master of parameter p; NULL when its arena's master is sharded
 * (model.c reads and writes values through the act copy then). */
static inline float *params_master(const ParamStore *ps, int p)
{
    if (ps->arena[ps->params[p].expert].master_sharded) return NULL;
    return ps->arena[ps->params[p].expert].master + ps->params[p].offset;
}
static inline float *params_grad(const ParamStore *ps, int p)
{
    return ps->arena[ps->params[p].expert].grad + ps->params[p].offset;
}
static inline void *params_act(const ParamStore *ps, int p)
{
    return (char *)ps->arena[ps->params[p].expert].act +
           ps->params[p].offset * (size_t)ps->be->act_bytes;
}

/* Zero gradients, lazily (PyTorch's set_to_none, Megatron's zeroed grad
 * buffer without its memset pass): every parameter is marked unset; its
 * first contribution of the step overwrites (a GEMM with beta 0:
 * params_grad_beta) or zeroes it first (params_grad_accumulate), and
 * params_grads_settle zeroes the ones still unset before anything reads a
 * range.  The memset of the whole arena (all of the gradient bytes, once
 * per step) and the first GEMM's read of them are gone. */
void params_zero_grads(ParamStore *ps);
/* beta for a GEMM that adds parameter p's gradient: 0 for the step's first
 * contribution (which then writes it), 1 after */
float params_grad_beta(ParamStore *ps, int p);
/* parameter p's gradient, zeroed first if unset, for kernels that only add */
float *params_grad_accumulate(ParamStore *ps, int p);
/* zeroes the still-unset gradients of arena ar inside elements [lo, hi)
 * (the whole arena: lo 0, hi SIZE_MAX) and marks them set */
void params_grads_settle(ParamStore *ps, int ar, size_t lo, size_t hi);
/* sums every gradient over its reduce_groups (the table drives it); for a
 * sharded arena the data-parallel sum is a reduce-scatter in place (each
 * member's part of each bucket holds its sum) */
void params_reduce_grads(ParamStore *ps);
/* tests: all-gathers the reduced shards of sharded arenas back into the
 * full gradient arenas (collective; nothing for unsharded arenas) */
void params_gather_grads(ParamStore *ps);
/* AdamW (beta 0.9 / 0.95, eps 1e-8, no weight decay) over both arenas, t
 * from 1 (a sharded arena: over the owned shard, then the all-gather) */
void params_adam_step(ParamStore *ps, float lr, int t);

/* Buckets and overlap (issue 15).  params_step_begin arms the count of
 * backwards (trainer_step); params_layer_backward_done(tag) after the
 * backward of a layer (tag as ParamInfo.layer) starts the buckets whose
 * layers are all done (overlap_grad; after the TP sums of their replicated
 * parameters); params_reduce_grads starts the rest and waits for all of
 * them.  params_layer_forward(tag) waits for the parameter all-gathers of
 * the buckets holding that tag (overlap_param); params_wait_all for every
 * one (before reading parameters on the host, and at the end). */
void params_step_begin(ParamStore *ps);
void params_layer_backward_done(ParamStore *ps, int tag);
void params_layer_forward(ParamStore *ps, int tag);
void params_wait_all(ParamStore *ps);
/* 1 when decoder layer l's gradient reduction already started this step
 * (its KV-replica sum was done then: chunk.c) */
int params_layer_synced(const ParamStore *ps, int l);
/* the layers of a bucket whose gradients must not move yet: the tied
 * embedding under a pipeline (summed over PP first) */
void params_hold_bucket_of(ParamStore *ps, int p);

#endif
