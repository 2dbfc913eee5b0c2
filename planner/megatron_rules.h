/* megatron_rules.h: the checks Megatron-LM makes on a configuration
 * (megatron/training/arguments.py validate_args and
 * megatron/core/transformer/transformer_config.py __post_init__) that a plan
 * of the search space can break, as named rules.  The search prunes every
 * candidate that breaks one (counted per rule in the "pruned" line), so
 * every plan it recommends is one Megatron-LM accepts; the emitter
 * (emit.h) writes exactly the flags these rules were checked on.
 *
 * Line numbers refer to NVIDIA/Megatron-LM at commit d98e8a64dd (Megatron-Core
 * 0.20 development line).  Rules the emitter satisfies by construction are
 * listed in docs/planner.md (Megatron-LM's rules), not here: sequence
 * parallelism with TP (arguments.py:1441, --tp-comm-overlap), the FP8 recipe
 * with layernorm/moe_act recomputation (transformer_config.py:2000, the
 * emitter picks --fp8-recipe tensorwise), --moe-router-pre-softmax with top-1
 * softmax routing (transformer_config.py:2660), Megatron-FSDP's checkpoint
 * format and CUDA_DEVICE_MAX_CONNECTIONS (arguments.py:1166-1170).
 */
#ifndef MOEPLAN_MEGATRON_RULES_H
#define MOEPLAN_MEGATRON_RULES_H

#include "../core/mapping.h"
#include "../core/model.h"
#include "../core/train.h"

typedef enum {
    MG_PARAM_GATHER_NEEDS_GRAD = 0, /* --overlap-param-gather without --overlap-grad-reduce */
    MG_EP_OVERLAP_NEEDS_EP,         /* --overlap-moe-expert-parallel-comm with EP 1 (and ETP traffic priced) */
    MG_EP_OVERLAP_NEEDS_VPP,        /* ... with PP > 1 and no virtual pipeline */
    MG_EP_OVERLAP_DISPATCHER,       /* ... with the all-gather dispatcher */
    MG_EP_OVERLAP_RECOMPUTE,        /* ... with full recomputation or "moe" in the recompute modules */
    MG_EP_OVERLAP_SHARED,           /* ... together with --moe-shared-expert-overlap */
    MG_EP_OVERLAP_MTP,              /* ... with more than one MTP layer */
    MG_SHARED_OVERLAP_DISPATCHER,   /* --moe-shared-expert-overlap with the all-gather dispatcher */
    MG_SHARED_RECOMPUTE_OVERLAP,    /* shared_experts recomputation with --moe-shared-expert-overlap */
    MG_MOE_BIAS_ETP,                /* MoE linear biases (--add-bias-linear) with ETP > 1 */
    MG_RULE_COUNT
} MegatronRule;

/* "mg-param-gather", ... (the name in the pruned line) */
const char *megatron_rule_name(MegatronRule r);
/* "megatron/training/arguments.py:1028" */
const char *megatron_rule_source(MegatronRule r);
/* one line saying what Megatron-LM refuses */
const char *megatron_rule_text(MegatronRule r);

/* The first rule the configuration breaks, or -1 when Megatron-LM accepts
 * it.  map needs tp..ep and vpp; t's recompute, recompute_modules,
 * opt_sharding, overlap and dispatcher are what the emitter writes. */
int megatron_first_violation(const ModelSpec *m, const Mapping *map, const TrainConfig *t);

/* The overlap bits that reach Megatron-LM's flags (and the simulator's
 * price) for this model and plan: a switch with nothing to overlap is off
 * (param gather without a sharded optimizer, TP overlap at TP 1, EP overlap
 * without EP/ETP traffic, shared-expert overlap without a shared expert). */
unsigned megatron_effective_overlap(const ModelSpec *m, const Mapping *map, const TrainConfig *t);

#endif
