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

#include "limits.h"

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
    if (m->world > MP_MAX_GPUS)
        return mp_fail(err, "gpus: %d is above the limit of %d GPUs (10x the largest clusters built; every product "
                       "of mapping sizes must fit in 64 bits)", m->world, MP_MAX_GPUS);
    for (size_t i = 1; i < sizeof dims / sizeof dims[0]; i++) {
        if (!strcmp(dims[i].name, "vpp")) {
            if (dims[i].v > MP_MAX_VPP)
                return mp_fail(err, "vpp: %d is above the limit of %d (each virtual stage holds at least one of at most "
                               "%d layers)", dims[i].v, MP_MAX_VPP, MP_MAX_LAYERS);
        } else if (dims[i].v > MP_MAX_GPUS) {
            return mp_fail(err, "%s: %d is above the limit of %d GPUs", dims[i].name, dims[i].v, MP_MAX_GPUS);
        }
    }
    /* every size is now <= 2^20, so the products below fit in 64 bits */
    long long dense = (long long)m->tp * m->cp * m->pp, expert = (long long)m->etp * m->ep * m->pp;
    if (m->world % dense)
        return mp_fail(err, "tp: tp*cp*pp = %lld does not divide gpus %d", dense, m->world);
    if (m->world % expert)
        return mp_fail(err, "ep: etp*ep*pp = %lld does not divide gpus %d", expert, m->world);
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

/* Placement of the arithmetic progression start + i*step (i < count) on
 * nodes of G ranks: the first and last node it touches with their member
 * counts, the number of nodes and the largest count of a node strictly
 * between the first and the last.  O(min(step, nodes)), no allocation. */
typedef struct {
    long long first_node, last_node;
    long long first_cnt, last_cnt;
    long long nodes, inner_max;
} RunPlacement;

/* members of the progression below x */
static long long ap_below(long long start, long long step, long long count, long long x) {
    if (x <= start) return 0;
    long long k = (x - start + step - 1) / step;
    return k < count ? k : count;
}

static void ap_placement(long long start, long long step, long long count, long long G, RunPlacement *r) {
    long long last = start + (count - 1) * step;
    r->first_node = start / G;
    r->last_node = last / G;
    r->inner_max = 0;
    if (step >= G) { /* every member on its own node */
        r->nodes = count;
        r->first_cnt = r->last_cnt = 1;
        r->inner_max = count > 2 ? 1 : 0;
        return;
    }
    /* step < G: every node from the first to the last holds a member */
    r->nodes = r->last_node - r->first_node + 1;
    long long n0 = r->first_node, n1 = r->last_node;
    r->first_cnt = ap_below(start, step, count, (n0 + 1) * G) - ap_below(start, step, count, n0 * G);
    r->last_cnt = ap_below(start, step, count, (n1 + 1) * G) - ap_below(start, step, count, n1 * G);
    /* an inner node's count depends only on (node*G - start) mod step, which
     * repeats after at most step nodes */
    long long inner = n1 - n0 - 1, look = inner < step ? inner : step;
    for (long long j = 1; j <= look; j++) {
        long long c = ap_below(start, step, count, (n0 + j + 1) * G) - ap_below(start, step, count, (n0 + j) * G);
        if (c > r->inner_max) r->inner_max = c;
    }
}

/* Placement of the group whose first rank is base: the masked axes (of size
 * > 1) in stride order; the innermost ones that are contiguous in rank
 * (stride of the next = stride x size of the previous) form one arithmetic
 * progression, the outer ones enumerate such runs in ascending rank order. */
static void grid_group_placement(const Grid *g, long long base, int G, GroupPlacement *out) {
    int size[AXES], stride[AXES], naxes = 0;
    for (int i = 0; i < AXES; i++)
        if ((g->mask & (1u << i)) && g->size[i] > 1) { size[naxes] = g->size[i]; stride[naxes] = g->stride[i]; naxes++; }
    long long step = naxes ? stride[0] : 1, count = naxes ? size[0] : 1;
    int inner = naxes ? 1 : 0;
    while (inner < naxes && stride[inner] == step * count) count *= size[inner++];
    int osize[AXES], ostride[AXES], coord[AXES] = {0}, nouter = 0;
    for (int a = inner; a < naxes; a++) { osize[nouter] = size[a]; ostride[nouter] = stride[a]; nouter++; }
    out->size = grid_group_size(g);
    long long nodes = 0, best = 0, cur_node = -1, cur_cnt = 0;
    long long start = base;
    for (;;) {
        RunPlacement r;
        ap_placement(start, step, count, G, &r);
        /* runs ascend and do not interleave: only a run's first node can
         * continue the previous run's last node */
        if (r.first_node == cur_node) {
            cur_cnt += r.first_cnt;
            nodes += r.nodes - 1;
        } else {
            if (cur_cnt > best) best = cur_cnt;
            cur_cnt = r.first_cnt;
            nodes += r.nodes;
        }
        if (r.last_node != r.first_node) {
            if (cur_cnt > best) best = cur_cnt;
            if (r.inner_max > best) best = r.inner_max;
            cur_cnt = r.last_cnt;
        }
        cur_node = r.last_node;
        int a = 0;
        for (; a < nouter; a++) { /* advance the odometer over the outer axes */
            start += ostride[a];
            if (++coord[a] < osize[a]) break;
            start -= (long long)ostride[a] * osize[a];
            coord[a] = 0;
        }
        if (a == nouter) break;
    }
    if (cur_cnt > best) best = cur_cnt;
    out->nodes = (int)nodes;
    out->max_per_node = (int)best;
}

void mapping_placement(const Mapping *m, GroupKind k, int gpus_per_node, GroupPlacement *out) {
    Grid g;
    grid_for(m, k, &g);
    int G = gpus_per_node;
    if (G < 1) G = 1;
    if (G > MAPPING_MAX_NODE) G = MAPPING_MAX_NODE;   /* callers validate; see mapping.h */
    /* A group's placement depends only on its first rank modulo the node
     * size (groups are translates of one another), so evaluate each residue
     * once.  The residues of the group bases: a set over Z_G built axis by
     * axis over the unmasked axes, each axis only up to the period of its
     * stride modulo G.  O(G * min(size, G)) per axis, independent of world. */
    unsigned char have[MAPPING_MAX_NODE], next[MAPPING_MAX_NODE];
    memset(have, 0, (size_t)G);
    have[0] = 1;
    for (int i = 0; i < AXES; i++) {
        if ((g.mask & (1u << i)) || g.size[i] <= 1) continue;
        int s = g.stride[i] % G, period = 1;
        if (s) { int a = G, b = s; while (b) { int t = a % b; a = b; b = t; } period = G / a; }
        int steps = g.size[i] < period ? g.size[i] : period;
        memset(next, 0, (size_t)G);
        for (int r = 0; r < G; r++) {
            if (!have[r]) continue;
            for (int c = 0, x = r; c < steps; c++, x = (x + s) % G) next[x] = 1;
        }
        memcpy(have, next, (size_t)G);
    }
    bool first = true;
    for (int r = 0; r < G; r++) {
        if (!have[r]) continue;
        GroupPlacement p;
        grid_group_placement(&g, r, G, &p);
        /* worst group: most nodes; among those, the fewest members per node */
        if (first || p.nodes > out->nodes || (p.nodes == out->nodes && p.max_per_node < out->max_per_node)) *out = p;
        first = false;
    }
}
