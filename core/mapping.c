/* mapping.c: Megatron-Core's rank generator for the two grids of a folded
 * mapping, the validity rules, and the physical placement of groups.
 *
 * A grid is 4 axes with sizes size[0..3]; the first varies fastest:
 *     rank = sum_i coord_i * stride_i,   stride_i = prod_{j<i} size_j.
 * A group kind names a set of axes (the "mask").  Group members fix the
 * coordinates of the unmasked axes and vary the masked ones; groups are
 * numbered by the unmasked coordinates, first unmasked axis fastest
 * (Megatron's generate_masked_orthogonal_rank_groups), and members come out
 * in ascending rank order because strides grow with the axis index.
 */
#include "mapping.h"

#include <stdbool.h>
#include <string.h>

enum { AXES = 4 };

typedef struct {
    int size[AXES];
    int stride[AXES];
    unsigned mask;        /* bit i set: axis i is varied inside a group */
} Grid;

static const char *const kind_names[GROUP_KIND_COUNT] = {
    "tp", "cp", "dp", "dp_cp", "pp", "tp_cp", "etp", "ep", "edp", "etp_ep",
};

const char *group_kind_name(GroupKind k) {
    return (k >= 0 && k < GROUP_KIND_COUNT) ? kind_names[k] : "?";
}

int group_kind_parse(const char *s, GroupKind *out) {
    for (int k = 0; k < GROUP_KIND_COUNT; k++)
        if (!strcmp(s, kind_names[k])) { *out = (GroupKind)k; return 0; }
    return -1;
}

const char *rank_order_name(RankOrder o) {
    return o == ORDER_TP_CP_EP_PP_DP ? "tp-cp-ep-pp-dp" : "tp-cp-ep-dp-pp";
}

int rank_order_parse(const char *s, RankOrder *out) {
    if (!strcmp(s, "tp-cp-ep-dp-pp")) { *out = ORDER_TP_CP_EP_DP_PP; return 0; }
    if (!strcmp(s, "tp-cp-ep-pp-dp")) { *out = ORDER_TP_CP_EP_PP_DP; return 0; }
    return -1;
}

/* Dense grid: tp, cp, dp, pp (or tp, cp, pp, dp); the ep axis of the order
 * string has size 1 here.  Expert grid: etp, ep, edp, pp (or etp, ep, pp,
 * edp); cp has size 1 there. */
static void grid_for(const Mapping *m, GroupKind k, Grid *g) {
    bool pp_before_dp = m->order == ORDER_TP_CP_EP_PP_DP;
    bool expert = k >= GROUP_ETP;
    int a0 = expert ? m->etp : m->tp;
    int a1 = expert ? m->ep : m->cp;
    int dpx = expert ? m->edp : m->dp;
    int ipp = pp_before_dp ? 2 : 3, idp = pp_before_dp ? 3 : 2;
    g->size[0] = a0;
    g->size[1] = a1;
    g->size[idp] = dpx;
    g->size[ipp] = m->pp;
    g->stride[0] = 1;
    for (int i = 1; i < AXES; i++) g->stride[i] = g->stride[i - 1] * g->size[i - 1];
    switch (k) {
    case GROUP_TP: case GROUP_ETP: g->mask = 1u << 0; break;
    case GROUP_CP: case GROUP_EP: g->mask = 1u << 1; break;
    case GROUP_DP: case GROUP_EDP: g->mask = 1u << idp; break;
    case GROUP_DP_CP: g->mask = (1u << 1) | (1u << idp); break;
    case GROUP_PP: g->mask = 1u << ipp; break;
    case GROUP_TP_CP: case GROUP_ETP_EP: g->mask = (1u << 0) | (1u << 1); break;
    default: g->mask = 0; break;
    }
}

static int grid_group_size(const Grid *g) {
    int n = 1;
    for (int i = 0; i < AXES; i++)
        if (g->mask & (1u << i)) n *= g->size[i];
    return n;
}

int mapping_group_size(const Mapping *m, GroupKind k) {
    Grid g;
    grid_for(m, k, &g);
    return grid_group_size(&g);
}

int mapping_num_groups(const Mapping *m, GroupKind k) {
    return m->world / mapping_group_size(m, k);
}

/* First rank of group idx: idx decomposed over the unmasked axes. */
static int grid_group_base(const Grid *g, int idx) {
    int base = 0;
    for (int i = 0; i < AXES; i++) {
        if (g->mask & (1u << i)) continue;
        base += (idx % g->size[i]) * g->stride[i];
        idx /= g->size[i];
    }
    return base;
}

/* Members of the group starting at base: an odometer over the masked axes,
 * first masked axis fastest (ascending ranks). */
static void grid_members(const Grid *g, int base, int *members) {
    int size[AXES], stride[AXES], coord[AXES] = {0}, naxes = 0;
    for (int i = 0; i < AXES; i++) {
        if (!(g->mask & (1u << i))) continue;
        size[naxes] = g->size[i];
        stride[naxes] = g->stride[i];
        naxes++;
    }
    int n = grid_group_size(g), r = base;
    for (int j = 0; j < n; j++) {
        members[j] = r;
        for (int a = 0; a < naxes; a++) { /* advance the odometer */
            r += stride[a];
            if (++coord[a] < size[a]) break;
            r -= stride[a] * size[a];
            coord[a] = 0;
        }
    }
}

void mapping_group_members(const Mapping *m, GroupKind k, int idx, int *members) {
    Grid g;
    grid_for(m, k, &g);
    grid_members(&g, grid_group_base(&g, idx), members);
}

void mapping_rank_groups(const Mapping *m, GroupKind k, int *flat) {
    Grid g;
    grid_for(m, k, &g);
    int size[AXES], stride[AXES], coord[AXES] = {0}, naxes = 0;
    for (int i = 0; i < AXES; i++) { /* the unmasked axes: an odometer walks the group bases */
        if (g.mask & (1u << i)) continue;
        size[naxes] = g.size[i];
        stride[naxes] = g.stride[i];
        naxes++;
    }
    int n = grid_group_size(&g), groups = m->world / n, base = 0;
    for (int idx = 0; idx < groups; idx++) {
        grid_members(&g, base, flat + (size_t)idx * n);
        for (int a = 0; a < naxes; a++) {
            base += stride[a];
            if (++coord[a] < size[a]) break;
            base -= stride[a] * size[a];
            coord[a] = 0;
        }
    }
}

int mapping_group_of_rank(const Mapping *m, GroupKind k, int rank, int *members) {
    Grid g;
    grid_for(m, k, &g);
    int base = 0, index = 0, scale = 1;
    for (int i = 0; i < AXES; i++) {
        int coord = (rank / g.stride[i]) % g.size[i];
        if (g.mask & (1u << i)) {
            index += coord * scale;
            scale *= g.size[i];
        } else {
            base += coord * g.stride[i];
        }
    }
    if (members) grid_members(&g, base, members);
    return index;
}

int mapping_resolve(Mapping *m, int num_experts, MpError *err) {
    struct { const char *name; int v; } dims[] = {
        {"gpus", m->world}, {"tp", m->tp}, {"cp", m->cp}, {"pp", m->pp},
        {"vpp", m->vpp}, {"etp", m->etp}, {"ep", m->ep},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v <= 0) return mp_fail(err, "%s: must be a positive integer, got %d", dims[i].name, dims[i].v);
    long dense = (long)m->tp * m->cp * m->pp, expert = (long)m->etp * m->ep * m->pp;
    if (m->world % dense)
        return mp_fail(err, "tp: tp*cp*pp = %ld does not divide gpus %d", dense, m->world);
    if (m->world % expert)
        return mp_fail(err, "ep: etp*ep*pp = %ld does not divide gpus %d", expert, m->world);
    m->dp = (int)(m->world / dense);
    m->edp = (int)(m->world / expert);
    if (num_experts > 0 && num_experts % m->ep)
        return mp_fail(err, "ep: %d does not divide the model's %d experts", m->ep, num_experts);
    if (m->vpp > 1 && m->pp == 1)
        return mp_fail(err, "vpp: %d virtual stages need pp > 1", m->vpp);
    if (m->order == ORDER_TP_CP_EP_PP_DP && m->pp > 1 && m->edp != m->dp)
        return mp_fail(err, "order: tp-cp-ep-pp-dp with pp %d needs edp == dp, got edp %d and dp %d "
                       "(the two grids' pp groups would differ)", m->pp, m->edp, m->dp);
    return 0;
}

void group_placement(const int *members, int n, int gpus_per_node, GroupPlacement *out) {
    /* members ascend, so ranks of one node form consecutive runs */
    out->size = n;
    out->nodes = 0;
    out->max_per_node = 0;
    int run = 0, prev_node = -1;
    for (int i = 0; i < n; i++) {
        int node = members[i] / gpus_per_node;
        if (node != prev_node) {
            out->nodes++;
            run = 0;
            prev_node = node;
        }
        if (++run > out->max_per_node) out->max_per_node = run;
    }
}

void mapping_placement(const Mapping *m, GroupKind k, int gpus_per_node, GroupPlacement *out) {
    Grid g;
    grid_for(m, k, &g);
    int n = grid_group_size(&g), groups = m->world / n;
    int members[n > 0 ? n : 1];
    /* A group's placement depends only on its first rank modulo the node
     * size (all groups of a kind are translates of one another), so at most
     * gpus_per_node distinct placements exist: evaluate each residue once. */
    unsigned char seen_small[1024] = {0};
    bool first = true;
    for (int idx = 0; idx < groups; idx++) {
        int base = grid_group_base(&g, idx);
        int residue = base % gpus_per_node;
        if (residue < (int)sizeof seen_small) {
            if (seen_small[residue]) continue;
            seen_small[residue] = 1;
        }
        GroupPlacement p;
        grid_members(&g, base, members);
        group_placement(members, n, gpus_per_node, &p);
        /* worst group: most nodes; among those, the fewest members per node */
        if (first || p.nodes > out->nodes || (p.nodes == out->nodes && p.max_per_node < out->max_per_node)) *out = p;
        first = false;
    }
}
