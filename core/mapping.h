/* mapping.h: the folded 5D parallel mapping and its rank groups.
 *
 * Attention/dense layers use the grid  tp x cp x dp x pp,
 * MoE layers use the grid              etp x ep x edp x pp,
 * over the same GPUs: tp*cp*dp == etp*ep*edp == world/pp (MoE Parallel Folding).
 *
 * Both grids are built the way Megatron-Core's RankGenerator builds them
 * (design.md section 2): for the order string "tp-cp-ep-dp-pp" the dense grid
 * is tp,cp,dp,pp (ep = 1) and the expert grid is etp,ep,edp,pp (cp = 1); the
 * first axis varies fastest, rank = sum coord_i * stride_i with
 * stride_i = prod_{j<i} size_j.  A group of a set of axes fixes the other
 * axes' coordinates and varies the named ones.  This file is the only place
 * in the project that knows how ranks are laid out.
 */
#ifndef MOEPLAN_MAPPING_H
#define MOEPLAN_MAPPING_H

#include "error.h"

typedef enum {
    ORDER_TP_CP_EP_DP_PP = 0,   /* default: dp before pp */
    ORDER_TP_CP_EP_PP_DP = 1,   /* pp before dp; needs EDP == DP when PP > 1 */
} RankOrder;

typedef struct {
    int world;   /* GPUs in the job */
    int tp, cp, dp, pp;   /* dense grid; dp derived: world / (tp*cp*pp) */
    int vpp;              /* virtual pipeline stages per rank (1 = plain 1F1B) */
    int etp, ep, edp;     /* expert grid; edp derived: world / (etp*ep*pp) */
    RankOrder order;
} Mapping;

typedef enum {
    GROUP_TP = 0,
    GROUP_CP,
    GROUP_DP,
    GROUP_DP_CP,   /* dense gradient group: same tp and pp coordinates */
    GROUP_PP,
    GROUP_TP_CP,
    GROUP_ETP,
    GROUP_EP,
    GROUP_EDP,
    GROUP_ETP_EP,  /* contiguous expert block (dispatcher metadata exchange) */
    GROUP_KIND_COUNT
} GroupKind;

const char *group_kind_name(GroupKind k);
int group_kind_parse(const char *s, GroupKind *out);

const char *rank_order_name(RankOrder o);
int rank_order_parse(const char *s, RankOrder *out);

/* Fills dp and edp from world, tp, cp, pp, etp, ep and checks every rule:
 * positive sizes, divisibility, EDP == DP for pp-before-dp with PP > 1.
 * num_experts > 0 adds the check num_experts % ep == 0.
 * err: "FIELD: reason". */
int mapping_resolve(Mapping *m, int num_experts, MpError *err);

/* Size of each group of a kind, and how many groups of it there are. */
int mapping_group_size(const Mapping *m, GroupKind k);
int mapping_num_groups(const Mapping *m, GroupKind k);

/* Members (ascending ranks) of the idx-th group of a kind, in Megatron's
 * group order (first unnamed axis fastest).  members has room for
 * mapping_group_size() ranks. */
void mapping_group_members(const Mapping *m, GroupKind k, int idx, int *members);

/* Every group of a kind at once: flat[idx * size + j] (world ints), the
 * same order as mapping_group_members; O(world). */
void mapping_rank_groups(const Mapping *m, GroupKind k, int *flat);

/* Members of the group of kind k that contains `rank`; returns this rank's
 * index inside the group. */
int mapping_group_of_rank(const Mapping *m, GroupKind k, int rank, int *members);

/* Physical placement of one group on nodes of gpus_per_node GPUs
 * (ranks are placed on nodes in order: node = rank / gpus_per_node). */
typedef struct {
    int size;            /* members */
    int nodes;           /* distinct nodes the group spans */
    int max_per_node;    /* largest number of members sharing one node */
} GroupPlacement;

void group_placement(const int *members, int n, int gpus_per_node, GroupPlacement *out);

/* Placement of the groups of kind k: groups differ only by their first
 * rank modulo gpus_per_node, so each distinct residue is evaluated once and
 * the worst group (most nodes, then fewest members per node) is reported.
 * Cost independent of the GPU count (no per-group loop, no member array).
 * gpus_per_node must be in [1, MAPPING_MAX_NODE] (cluster_validate). */
#define MAPPING_MAX_NODE 4096
void mapping_placement(const Mapping *m, GroupKind k, int gpus_per_node, GroupPlacement *out);

#endif
