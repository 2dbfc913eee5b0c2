/* megatron_rules.c: Megatron-LM's configuration rules (see megatron_rules.h). */
#include "megatron_rules.h"

typedef struct {
    const char *name, *source, *text;
} RuleInfo;

/* Sources: NVIDIA/Megatron-LM d98e8a64dd. */
static const RuleInfo rules[MG_RULE_COUNT] = {
    [MG_PARAM_GATHER_NEEDS_GRAD] = {"mg-param-gather", "megatron/training/arguments.py:1028",
                                    "--overlap-param-gather needs --overlap-grad-reduce"},
    [MG_EP_OVERLAP_NEEDS_EP] = {"mg-ep-overlap-ep", "megatron/core/transformer/transformer_config.py:3013",
                                "--overlap-moe-expert-parallel-comm needs expert parallelism (EP > 1)"},
    [MG_EP_OVERLAP_NEEDS_VPP] = {"mg-ep-overlap-vpp", "megatron/core/transformer/transformer_config.py:3007",
                                 "--overlap-moe-expert-parallel-comm with PP > 1 needs a virtual pipeline"},
    [MG_EP_OVERLAP_DISPATCHER] = {"mg-ep-overlap-dispatcher", "megatron/core/transformer/transformer_config.py:3016",
                                  "--overlap-moe-expert-parallel-comm needs the alltoall or flex dispatcher"},
    [MG_EP_OVERLAP_RECOMPUTE] = {"mg-ep-overlap-recompute", "megatron/core/transformer/transformer_config.py:3021",
                                 "--overlap-moe-expert-parallel-comm refuses full recomputation and the moe "
                                 "recompute module (3021-3032)"},
    [MG_EP_OVERLAP_SHARED] = {"mg-ep-overlap-shared", "megatron/core/transformer/transformer_config.py:3039",
                              "--overlap-moe-expert-parallel-comm refuses --moe-shared-expert-overlap"},
    [MG_EP_OVERLAP_MTP] = {"mg-ep-overlap-mtp", "megatron/core/transformer/transformer_config.py:3043",
                           "--overlap-moe-expert-parallel-comm allows at most one MTP layer"},
    [MG_SHARED_OVERLAP_DISPATCHER] = {"mg-shared-overlap-dispatcher", "megatron/core/transformer/transformer_config.py:1820",
                                      "--moe-shared-expert-overlap needs the alltoall or flex dispatcher"},
    [MG_SHARED_RECOMPUTE_OVERLAP] = {"mg-shared-recompute-overlap", "megatron/core/transformer/transformer_config.py:1991",
                                     "shared_experts recomputation refuses --moe-shared-expert-overlap"},
    [MG_MOE_BIAS_ETP] = {"mg-moe-bias-etp", "megatron/core/transformer/transformer_config.py:2612",
                         "biases in MoE layers (--add-bias-linear) need ETP 1"},
};

const char *megatron_rule_name(MegatronRule r) { return (unsigned)r < MG_RULE_COUNT ? rules[r].name : "?"; }
const char *megatron_rule_source(MegatronRule r) { return (unsigned)r < MG_RULE_COUNT ? rules[r].source : "?"; }
const char *megatron_rule_text(MegatronRule r) { return (unsigned)r < MG_RULE_COUNT ? rules[r].text : "?"; }

unsigned megatron_effective_overlap(const ModelSpec *m, const Mapping *map, const TrainConfig *t) {
    unsigned o = t->overlap;
    bool moe = m->num_experts > 0;
    /* Megatron-FSDP: the simulator always prefetches the gathers and
     * overlaps the reduce-scatters (simulate.c, FSDP), which Megatron does
     * with these two switches on. */
    if (t->opt_sharding == OPT_SHARD_FULL) o |= OVERLAP_GRAD | OVERLAP_PARAM;
    if (t->opt_sharding == OPT_SHARD_NONE) o &= ~(unsigned)OVERLAP_PARAM;   /* no parameter all-gather */
    if (map->tp <= 1) o &= ~(unsigned)OVERLAP_TP;
    if (!moe || (map->ep <= 1 && map->etp <= 1)) o &= ~(unsigned)OVERLAP_EP;   /* no EP/ETP traffic */
    if (!moe || m->shared_ffn == 0) o &= ~(unsigned)OVERLAP_SHARED_EXPERT;
    return o;
}

int megatron_first_violation(const ModelSpec *m, const Mapping *map, const TrainConfig *t) {
    unsigned o = megatron_effective_overlap(m, map, t);
    unsigned mods = train_recompute_modules(t, m);
    bool sharded = t->opt_sharding != OPT_SHARD_NONE;
    if ((o & OVERLAP_PARAM) && sharded && !(o & OVERLAP_GRAD)) return MG_PARAM_GATHER_NEEDS_GRAD;
    if (o & OVERLAP_EP) {
        if (map->ep <= 1) return MG_EP_OVERLAP_NEEDS_EP;
        if (map->pp > 1 && map->vpp <= 1) return MG_EP_OVERLAP_NEEDS_VPP;
        if (t->dispatcher == DISPATCHER_ALLGATHER) return MG_EP_OVERLAP_DISPATCHER;
        if (t->recompute == RECOMPUTE_FULL || (mods & RCM_MOE)) return MG_EP_OVERLAP_RECOMPUTE;
        if (o & OVERLAP_SHARED_EXPERT) return MG_EP_OVERLAP_SHARED;
        if (m->mtp_layers > 1) return MG_EP_OVERLAP_MTP;
    }
    if (o & OVERLAP_SHARED_EXPERT) {
        if (t->dispatcher == DISPATCHER_ALLGATHER) return MG_SHARED_OVERLAP_DISPATCHER;
        if (mods & RCM_SHARED_EXPERTS) return MG_SHARED_RECOMPUTE_OVERLAP;
    }
    if (m->num_experts > 0 && m->expert_bias_linear && map->etp > 1) return MG_MOE_BIAS_ETP;
    return -1;
}
