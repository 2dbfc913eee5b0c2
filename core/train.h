/* train.h: TrainConfig, how a step is run (batch, precision, routing,
 * recomputation, optimizer sharding, overlap). */
#ifndef MOEPLAN_TRAIN_H
#define MOEPLAN_TRAIN_H

#include <stdbool.h>

#include "attn_backend.h"
#include "error.h"
#include "model.h"

typedef enum { PRECISION_BF16 = 0, PRECISION_FP8 = 1 } Precision;
typedef enum { DISPATCHER_ALLTOALL = 0, DISPATCHER_ALLGATHER = 1 } DispatcherKind;
typedef enum { RECOMPUTE_NONE = 0, RECOMPUTE_SELECTIVE = 1, RECOMPUTE_FULL = 2 } RecomputeKind;
typedef enum { OPT_SHARD_NONE = 0, OPT_SHARD_DISTRIBUTED = 1, OPT_SHARD_FULL = 2 } OptimizerSharding;

/* --overlap flags */
enum {
    OVERLAP_GRAD = 1 << 0,          /* DP/EDP gradient reduce-scatter behind backward */
    OVERLAP_PARAM = 1 << 1,         /* DP/EDP parameter all-gather behind forward */
    OVERLAP_TP = 1 << 2,            /* TP all-gather/reduce-scatter behind GEMMs */
    OVERLAP_EP = 1 << 3,            /* EP all-to-all behind other micro-batch compute */
    OVERLAP_SHARED_EXPERT = 1 << 4, /* shared expert computed during the dispatch */
    /* executor switches (docs/executor-overlap.md); the simulator models
     * Megatron-LM's schedule whatever they say: the CP ring always
     * overlapped (Transformer Engine), 1F1B P2P blocking, interleaved P2P
     * overlapped (overlap_p2p_comm) */
    OVERLAP_P2P = 1 << 5,           /* pipeline P2P waited only where the data are needed */
    OVERLAP_CP = 1 << 6,            /* CP ring: next step's K/V (dK/dV) in flight behind this step */
};
#define OVERLAP_DEFAULT (OVERLAP_GRAD | OVERLAP_PARAM)

/* Modules recomputed under selective recomputation: Megatron-LM's
 * --recompute-modules choices (megatron/core/transformer/transformer_config.py,
 * recompute_modules), each priced by the simulator (memory.c, simulate.c). */
enum {
    RCM_CORE_ATTN = 1 << 0,      /* attention core: its softmax statistics are not kept */
    RCM_LAYERNORM = 1 << 1,      /* input and pre-MLP norms: their outputs are not kept */
    RCM_MOE_ACT = 1 << 2,        /* routed experts' SwiGLU: its output is not kept */
    RCM_MLA_UP_PROJ = 1 << 3,    /* MLA up-projections and RoPE: Q, K, V are not kept */
    RCM_MLP = 1 << 4,            /* whole dense MLP: only its input is kept */
    RCM_MOE = 1 << 5,            /* whole MoE layer (router, dispatch, experts): only its input kept */
    RCM_SHARED_EXPERTS = 1 << 6, /* whole shared expert: only its input is kept */
    RCM_ALL = (1 << 7) - 1,
};
/* What "selective" means when no modules are named: the closest set to
 * Korthikanti et al.'s selective recomputation that Megatron can express. */
#define RCM_SELECTIVE_DEFAULT (RCM_CORE_ATTN | RCM_LAYERNORM | RCM_MOE_ACT)

typedef struct {
    int seq_len;              /* s, tokens per sequence */
    int micro_batch;          /* b, sequences per micro-batch */
    int global_batch;         /* B, sequences per step */
    Precision precision;
    DispatcherKind dispatcher;
    double capacity_factor;   /* > 0: token dropping, rows per expert capped and padded; 0: dropless */
    double imbalance;         /* dropless: busiest rank's load / mean load, >= 1 */
    RecomputeKind recompute;
    unsigned recompute_modules; /* RCM_* bits, used with RECOMPUTE_SELECTIVE; 0 = RCM_SELECTIVE_DEFAULT */
    OptimizerSharding opt_sharding;
    unsigned overlap;         /* OVERLAP_* bits */
    FlopsConvention flops;    /* convention used for MFU */
    double memory_reserve_bytes; /* HBM kept free (allocator, NCCL, CUDA context) */
    AttnBackend attention_backend; /* AUTO (default): the cluster's */
} TrainConfig;

void train_config_default(TrainConfig *t);
int train_config_validate(const TrainConfig *t, MpError *err);

const char *recompute_name(RecomputeKind r);
int recompute_parse(const char *s, RecomputeKind *out);
const char *opt_sharding_name(OptimizerSharding o);
int opt_sharding_parse(const char *s, OptimizerSharding *out);
const char *dispatcher_name(DispatcherKind d);
int dispatcher_parse(const char *s, DispatcherKind *out);
/* "grad,param,tp,ep,shared-expert,p2p,cp" or "none" */
int overlap_parse(const char *s, unsigned *out, MpError *err);
void overlap_format(unsigned bits, char *buf, int len);

/* The modules a selective plan recomputes in Megatron-LM for this model:
 * t->recompute_modules (or the default set) without the modules the model
 * lacks (moe_act/moe without experts, mla_up_proj without MLA,
 * shared_experts without a shared expert, mlp without dense layers).
 * 0 unless t->recompute is RECOMPUTE_SELECTIVE. */
unsigned train_recompute_modules(const TrainConfig *t, const ModelSpec *m);
/* "core_attn,layernorm,moe_act" (Megatron's names) or "none" */
void recompute_modules_format(unsigned bits, const char *sep, char *buf, int len);
int recompute_modules_parse(const char *s, unsigned *out, MpError *err);
/* Short label of a recomputation for tables: "none", "full", "selective"
 * (the default modules), or the difference from them: "sel+mla", "sel+moe",
 * "sel-ln" (core_attn attn, layernorm ln, moe_act act, mla_up_proj mla,
 * mlp mlp, moe moe, shared_experts shared); mods as train_recompute_modules
 * gives them. */
void recompute_label(RecomputeKind r, unsigned mods, const ModelSpec *m, char *buf, int len);

#endif
