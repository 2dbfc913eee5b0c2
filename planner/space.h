/* space.h: the search space of `moeplan search`: every folded mapping,
 * virtual pipeline size, micro-batch size, recomputation and optimizer
 * sharding for a model, cluster, GPU count, global batch and sequence
 * length; pruned by rules that are counted one by one.
 *
 * The raw space is the Cartesian product
 *   tp, cp, pp, etp, ep in divisors(gpus)   vpp in divisors(layers)
 *   mbs in divisors(gbs) (<= --max-mbs)      recompute x optimizer sharding (allowed sets),
 *   where "selective" counts once per recompute-module set searched
 * and every point of it is counted once: either under the first rule it
 * breaks (in PruneRule order) or as a candidate.  A pipeline with vpp == 1
 * whose stages cannot be equal (layers % pp != 0), or whose first/last
 * stages carry the embedding and the output layer, may also get an uneven
 * split from the GLPK program (pipeline_split.h); such splits are extra
 * candidates, counted in `uneven_added`.
 */
#ifndef MOEPLAN_SPACE_H
#define MOEPLAN_SPACE_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/plan.h"
#include "megatron_rules.h"

typedef enum {
    PRUNE_CONSTRAINT = 0, /* a user bound or fixed value (--tp, --max-pp, --no-folding, ...) */
    PRUNE_HEADS,          /* attention heads % tp */
    PRUNE_KV_GROUPS,      /* KV groups % tp (Megatron: num_query_groups divisible by tp) */
    PRUNE_DENSE_GRID,     /* tp*cp*pp does not divide the GPUs */
    PRUNE_SEQ,            /* seq % (2*cp) with cp > 1 (zig-zag chunks) */
    PRUNE_LAYERS,         /* no split of the layers over pp*vpp stages */
    PRUNE_VPP,            /* vpp > 1 needs pp > 1 and micro-batches % pp == 0 */
    PRUNE_EXPERT_GRID,    /* etp*ep*pp does not divide the GPUs */
    PRUNE_EXPERTS,        /* experts % ep, or expert FFN % etp */
    PRUNE_RANK_ORDER,     /* tp-cp-ep-pp-dp with pp > 1 needs edp == dp */
    PRUNE_BATCH,          /* gbs % (mbs*dp) */
    PRUNE_MEGATRON,       /* first of MG_RULE_COUNT entries: PRUNE_MEGATRON + r counts Megatron-LM rule r
                             (megatron_rules.h) for the candidate's flags */
    PRUNE_MEMORY = PRUNE_MEGATRON + MG_RULE_COUNT,         /* simulator: does not fit (counted by the search) */
    PRUNE_DOMINATED,      /* recomputation not needed: the plan without it fits (search) */
    PRUNE_INVALID,        /* rejected by plan_validate or the simulator (search; should stay 0) */
    PRUNE_RULE_COUNT
} PruneRule;

const char *prune_rule_name(PruneRule r);

typedef struct {
    /* fixed value (0 = free) and upper bound (0 = none) of each dimension */
    int fix_tp, fix_cp, fix_pp, fix_vpp, fix_etp, fix_ep, fix_mbs;
    int max_tp, max_cp, max_pp, max_vpp, max_etp, max_ep, max_mbs;
    bool no_folding;          /* coupled only: etp == tp (EP inside CP x DP) */
    unsigned recompute_set;   /* bit (1 << RecomputeKind) per allowed value */
    unsigned opt_sharding_set;/* bit (1 << OptimizerSharding) per allowed value */
    unsigned module_sets[4];  /* RCM_* sets searched under selective recomputation */
    int num_module_sets;      /* 0: the defaults of space_constraints_default */
    bool uneven;              /* add GLPK uneven splits for vpp == 1 */
} SearchConstraints;

/* Defaults: no fixed values; max_tp = max_etp = the cluster's NVLink domain
 * (tensor parallelism across nodes is never competitive), max_cp so that
 * every CP rank keeps >= 2048 tokens of a sequence, max_mbs = 4, all three
 * recomputation modes, all three optimizer shardings, uneven splits on;
 * selective recomputation as Megatron modules core_attn,layernorm,moe_act,
 * that set with mla_up_proj (MLA models), and core_attn,layernorm,moe
 * (MoE models: the whole MoE layer recomputed). */
void space_constraints_default(const Plan *base, SearchConstraints *c);

typedef struct {
    Mapping map;              /* resolved (dp, edp filled) */
    int mbs;
    unsigned char recompute;  /* RecomputeKind */
    unsigned char recompute_modules; /* RCM_* with RECOMPUTE_SELECTIVE, else 0 */
    unsigned char opt_sharding; /* OptimizerSharding */
    short first_stage_layers; /* 0 = even split */
    short last_stage_layers;
} Candidate;

typedef struct {
    Candidate *items;
    size_t count, cap;
    long long enumerated;             /* size of the raw space */
    long long pruned[PRUNE_RULE_COUNT];
    long long uneven_added;           /* extra candidates with a GLPK split */
} CandidateList;

/* Enumerates base's model/cluster/gpus/gbs/seq/order.  Returns -1 (err) on a
 * base plan missing gpus, gbs or seq, or on out-of-memory. */
int space_enumerate(const Plan *base, const SearchConstraints *c, CandidateList *out, MpError *err);
void candidate_list_free(CandidateList *l);

/* base with the candidate's mapping, mbs, recomputation, sharding and split. */
void candidate_apply(const Plan *base, const Candidate *c, Plan *out);
/* The inverse, for plans built elsewhere (e.g. the published mappings). */
void candidate_from_plan(const Plan *p, Candidate *out);
bool candidate_same(const Candidate *a, const Candidate *b);

/* "tp2 cp1 pp8 vpp1 | etp1 ep8 edp8 | dp8 mbs1" */
void candidate_format(const Candidate *c, char *buf, size_t len);

/* The uneven split (first, last; 0, 0 = even) of the decoder layers over pp
 * stages that minimises the slowest stage, under the simulator's layer and
 * stage-extra times (simulate_layer_times) at this TP and CP. */
int space_uneven_split(const Plan *base, int tp, int cp, int pp, int *first, int *last, MpError *err);

#endif
