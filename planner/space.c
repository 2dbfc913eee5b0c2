/* space.c: enumeration and pruning of the search space (see space.h). */
#include "space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/layout.h"
#include "pipeline_split.h"
#include "../simulator/simulate.h"

static const char *const rule_names[PRUNE_MEGATRON] = {
    "constraint", "heads", "kv-groups", "dense-grid", "seq", "layers", "vpp",
    "expert-grid", "experts", "rank-order", "batch",
};

static const char *const tail_names[] = {"memory", "dominated", "invalid"};

const char *prune_rule_name(PruneRule r) {
    if (r >= 0 && r < PRUNE_MEGATRON) return rule_names[r];
    if (r >= PRUNE_MEGATRON && r < PRUNE_MEMORY) return megatron_rule_name((MegatronRule)(r - PRUNE_MEGATRON));
    if (r >= PRUNE_MEMORY && r < PRUNE_RULE_COUNT) return tail_names[r - PRUNE_MEMORY];
    return "?";
}

void space_constraints_default(const Plan *base, SearchConstraints *c) {
    memset(c, 0, sizeof *c);
    int domain = base->cluster.nvlink_domain > 0 ? base->cluster.nvlink_domain : base->cluster.gpus_per_node;
    c->max_tp = c->max_etp = domain > 0 ? domain : 8;
    c->max_cp = base->train.seq_len >= 4096 ? base->train.seq_len / 2048 : 1;
    c->max_mbs = 4;
    c->recompute_set = (1u << RECOMPUTE_NONE) | (1u << RECOMPUTE_SELECTIVE) | (1u << RECOMPUTE_FULL);
    c->opt_sharding_set = (1u << OPT_SHARD_NONE) | (1u << OPT_SHARD_DISTRIBUTED) | (1u << OPT_SHARD_FULL);
    c->uneven = true;
    /* selective recomputation: Megatron's modules (train.h RCM_*) */
    const ModelSpec *m = &base->model;
    c->module_sets[c->num_module_sets++] = RCM_SELECTIVE_DEFAULT;
    if (m->mla) c->module_sets[c->num_module_sets++] = RCM_SELECTIVE_DEFAULT | RCM_MLA_UP_PROJ;
    if (m->num_experts > 0) c->module_sets[c->num_module_sets++] = RCM_CORE_ATTN | RCM_LAYERNORM | RCM_MOE;
}

enum { MAX_DIVISORS = 256 };

/* divisors of n in ascending order, those <= cap (cap <= 0: all) */
static int divisors(int n, int cap, int *out) {
    int k = 0;
    for (int d = 1; d <= n && k < MAX_DIVISORS; d++)
        if (n % d == 0 && (cap <= 0 || d <= cap)) out[k++] = d;
    return k;
}

static int popcount(unsigned v) {
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

/* a dimension's value against its fixed value and bound */
static bool allowed(int v, int fix, int max) {
    return (fix <= 0 || v == fix) && (max <= 0 || v <= max);
}

static int push(CandidateList *l, const Candidate *c, MpError *err) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        Candidate *items = realloc(l->items, cap * sizeof *items);
        if (!items) return mp_fail(err, "search: out of memory after %zu candidates", l->count);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = *c;
    return 0;
}

/* The split minimises the slowest stage under the simulator's own times
 * (simulate_layer_times: each decoder layer's forward + backward of one
 * micro-batch, the embedding on stage 0, the output layer and loss on the
 * last stage), so the split and the ranking agree.  The times are those of
 * a representative mapping of this TP, CP and PP: ETP 1 and the largest EP
 * that divides the experts and the GPUs of a stage (the folded layout),
 * the base plan's micro-batch and training settings. */
int space_uneven_split(const Plan *base, int tp, int cp, int pp, int *first, int *last, MpError *err) {
    const ModelSpec *m = &base->model;
    int L = m->num_layers;
    if (L > PIPE_SPLIT_MAX_LAYERS || pp > PIPE_SPLIT_MAX_STAGES)
        return mp_fail(err, "pp: uneven split limited to %d layers and %d stages", PIPE_SPLIT_MAX_LAYERS, PIPE_SPLIT_MAX_STAGES);
    if (tp < 1 || cp < 1 || pp < 1 || base->map.world % (tp * cp * pp))
        return mp_fail(err, "pp: tp %d x cp %d x pp %d does not divide %d GPUs", tp, cp, pp, base->map.world);
    Plan *rep = malloc(sizeof *rep);
    if (!rep) return mp_fail(err, "search: out of memory");
    *rep = *base;
    int per_stage = base->map.world / pp, ep = 1;
    for (int e = 1; e <= per_stage; e++)
        if (per_stage % e == 0 && (m->num_experts == 0 ? e == 1 : m->num_experts % e == 0)) ep = e;
    rep->map = (Mapping){.world = base->map.world, .tp = tp, .cp = cp, .pp = pp, .vpp = 1, .etp = 1, .ep = ep,
                         .order = ORDER_TP_CP_EP_DP_PP};
    rep->map.dp = base->map.world / (tp * cp * pp);
    rep->map.edp = base->map.world / (ep * pp);
    if (rep->train.micro_batch < 1) rep->train.micro_batch = 1;
    double t[PIPE_SPLIT_MAX_LAYERS], first_extra = 0, last_extra = 0;
    int rc = simulate_layer_times(rep, NULL, t, PIPE_SPLIT_MAX_LAYERS, &first_extra, &last_extra, err);
    free(rep);
    if (rc) return -1;
    for (int i = 0; i < L; i++)
        if (!isfinite(t[i]) || t[i] <= 0)
            return mp_fail(err, "cluster: layer %d has no finite time (a link or peak rate missing?)", i);
    if (!isfinite(first_extra) || !isfinite(last_extra))
        return mp_fail(err, "cluster: the embedding or output layer has no finite time");
    PipeSplitProblem p = {
        .layers = L, .stages = pp, .layer_time = t,
        .first_extra_time = first_extra,
        .last_extra_time = last_extra,
        .min_layers_per_stage = 1,
    };
    PipeSplit s;
    if (pipe_split_solve(&p, &s, err)) return -1;
    if (L % pp == 0 && s.first == L / pp && s.last == L / pp) { *first = *last = 0; return 0; }
    *first = s.first;
    *last = s.last;
    return 0;
}

typedef struct {
    int d[MAX_DIVISORS], n;
} DimSet;

int space_enumerate(const Plan *base, const SearchConstraints *c, CandidateList *out, MpError *err) {
    memset(out, 0, sizeof *out);
    const ModelSpec *m = &base->model;
    int N = base->map.world, gbs = base->train.global_batch, seq = base->train.seq_len, L = m->num_layers;
    if (N <= 0) return mp_fail(err, "--gpus: required, a positive GPU count");
    if (gbs <= 0) return mp_fail(err, "--gbs: required, a positive global batch (sequences)");
    if (seq <= 0) return mp_fail(err, "--seq: required, a positive sequence length");
    if (L <= 0) return mp_fail(err, "num_layers: model has no layers");
    if (!c->recompute_set || !c->opt_sharding_set) return mp_fail(err, "search: no recomputation or optimizer sharding allowed");
    RankOrder order = base->map.order;

    DimSet dg, dl, dm;
    dg.n = divisors(N, 0, dg.d);
    dl.n = divisors(L, 0, dl.d);
    dm.n = divisors(gbs, c->fix_mbs > c->max_mbs ? c->fix_mbs : c->max_mbs, dm.d);
    unsigned default_sets[1] = {RCM_SELECTIVE_DEFAULT};
    const unsigned *sets = c->num_module_sets > 0 ? c->module_sets : default_sets;
    int n_sets = c->num_module_sets > 0 ? c->num_module_sets : 1;
    if (n_sets > 4) n_sets = 4;
    long long n_rc = popcount(c->recompute_set & 7u), n_opt = popcount(c->opt_sharding_set & 7u);
    if (c->recompute_set & (1u << RECOMPUTE_SELECTIVE)) n_rc += n_sets - 1;
    /* subtree sizes below each level */
    long long s_opt = n_rc * n_opt;
    long long s_mbs = dm.n * s_opt;
    long long s_ep = s_mbs;                 /* below ep: mbs, rc, opt */
    long long s_etp = (long long)dg.n * s_ep;
    long long s_vpp = (long long)dg.n * s_etp;
    long long s_pp = (long long)dl.n * s_vpp;
    long long s_cp = (long long)dg.n * s_pp;
    long long s_tp = (long long)dg.n * s_cp;
    out->enumerated = (long long)dg.n * s_tp;

    int split_first[PIPE_SPLIT_MAX_STAGES + 1], split_last[PIPE_SPLIT_MAX_STAGES + 1];
    signed char split_state[PIPE_SPLIT_MAX_STAGES + 1]; /* 0 unknown, 1 ok, -1 none */
    memset(split_state, 0, sizeof split_state);
    int g = m->mla ? 0 : m->num_kv_groups;
    long long *pr = out->pruned;

    for (int a = 0; a < dg.n; a++) {
        int tp = dg.d[a];
        if (!allowed(tp, c->fix_tp, c->max_tp)) { pr[PRUNE_CONSTRAINT] += s_tp; continue; }
        if (m->num_heads % tp) { pr[PRUNE_HEADS] += s_tp; continue; }
        if (g > 0 && g % tp) { pr[PRUNE_KV_GROUPS] += s_tp; continue; }
        for (int b = 0; b < dg.n; b++) {
            int cp = dg.d[b];
            memset(split_state, 0, sizeof split_state);   /* splits depend on the layer times at this TP, CP */
            if (!allowed(cp, c->fix_cp, c->max_cp)) { pr[PRUNE_CONSTRAINT] += s_cp; continue; }
            if (N % ((long long)tp * cp)) { pr[PRUNE_DENSE_GRID] += s_cp; continue; }
            if (cp > 1 && seq % (2 * cp)) { pr[PRUNE_SEQ] += s_cp; continue; }
            for (int e = 0; e < dg.n; e++) {
                int pp = dg.d[e];
                if (!allowed(pp, c->fix_pp, c->max_pp)) { pr[PRUNE_CONSTRAINT] += s_pp; continue; }
                if (N % ((long long)tp * cp * pp)) { pr[PRUNE_DENSE_GRID] += s_pp; continue; }
                /* an even split, or an uneven one from the program */
                bool even = pp <= L && L % pp == 0;
                bool split_ok = false;
                if (pp > 1 && pp <= PIPE_SPLIT_MAX_STAGES && pp <= L && c->uneven) {
                    if (!split_state[pp]) {
                        MpError e2;
                        split_state[pp] = space_uneven_split(base, tp, cp, pp, &split_first[pp], &split_last[pp], &e2) ? -1 : 1;
                    }
                    split_ok = split_state[pp] > 0 && split_first[pp] > 0;
                }
                if (!even && !split_ok) { pr[PRUNE_LAYERS] += s_pp; continue; }
                int dp = N / (tp * cp * pp);
                for (int v = 0; v < dl.n; v++) {
                    int vpp = dl.d[v];
                    if (!allowed(vpp, c->fix_vpp, c->max_vpp)) { pr[PRUNE_CONSTRAINT] += s_vpp; continue; }
                    if (vpp > 1 && pp == 1) { pr[PRUNE_VPP] += s_vpp; continue; }
                    if (vpp > 1 && L % (pp * vpp)) { pr[PRUNE_LAYERS] += s_vpp; continue; }
                    for (int f = 0; f < dg.n; f++) {
                        int etp = dg.d[f];
                        if (!allowed(etp, c->fix_etp, c->max_etp) || (c->no_folding && etp != tp)) {
                            pr[PRUNE_CONSTRAINT] += s_etp; continue;
                        }
                        if (N % ((long long)etp * pp)) { pr[PRUNE_EXPERT_GRID] += s_etp; continue; }
                        if (m->num_experts == 0 ? etp > 1 : m->expert_ffn % etp) { pr[PRUNE_EXPERTS] += s_etp; continue; }
                        for (int h = 0; h < dg.n; h++) {
                            int ep = dg.d[h];
                            if (!allowed(ep, c->fix_ep, c->max_ep)) { pr[PRUNE_CONSTRAINT] += s_ep; continue; }
                            if (N % ((long long)etp * ep * pp)) { pr[PRUNE_EXPERT_GRID] += s_ep; continue; }
                            if (m->num_experts == 0 ? ep > 1 : m->num_experts % ep) { pr[PRUNE_EXPERTS] += s_ep; continue; }
                            int edp = N / (etp * ep * pp);
                            if (order == ORDER_TP_CP_EP_PP_DP && pp > 1 && edp != dp) { pr[PRUNE_RANK_ORDER] += s_ep; continue; }
                            for (int k = 0; k < dm.n; k++) {
                                int mbs = dm.d[k];
                                if (!allowed(mbs, c->fix_mbs, 0)) { pr[PRUNE_CONSTRAINT] += s_opt; continue; }
                                if (gbs % ((long long)mbs * dp)) { pr[PRUNE_BATCH] += s_opt; continue; }
                                int micro = gbs / (mbs * dp);
                                /* Megatron's interleaved schedule: micro-batches a multiple of pp */
                                if (vpp > 1 && micro % pp) { pr[PRUNE_VPP] += s_opt; continue; }
                                Candidate cand = {0};
                                cand.map = (Mapping){.world = N, .tp = tp, .cp = cp, .dp = dp, .pp = pp, .vpp = vpp,
                                                     .etp = etp, .ep = ep, .edp = edp, .order = order};
                                cand.mbs = mbs;
                                for (int rs = 0; rs < 2 + n_sets; rs++) {
                                    /* rs 0 none, 1 .. n_sets selective with sets[rs-1], n_sets + 1 full */
                                    int rc = rs == 0 ? RECOMPUTE_NONE : rs <= n_sets ? RECOMPUTE_SELECTIVE : RECOMPUTE_FULL;
                                    if (!(c->recompute_set & (1u << rc))) continue;
                                    for (int os = 0; os < 3; os++) {
                                        if (!(c->opt_sharding_set & (1u << os))) continue;
                                        cand.recompute = (unsigned char)rc;
                                        cand.opt_sharding = (unsigned char)os;
                                        /* Megatron-LM's own checks on the flags this candidate emits */
                                        TrainConfig tc = base->train;
                                        tc.recompute = (RecomputeKind)rc;
                                        tc.recompute_modules = rc == RECOMPUTE_SELECTIVE ? sets[rs - 1] : 0;
                                        tc.opt_sharding = (OptimizerSharding)os;
                                        cand.recompute_modules = (unsigned char)train_recompute_modules(&tc, m);
                                        int mg = megatron_first_violation(m, &cand.map, &tc);
                                        if (mg >= 0) { pr[PRUNE_MEGATRON + mg]++; continue; }
                                        bool uneven_here = vpp == 1 && split_ok;
                                        if (even) {
                                            cand.first_stage_layers = cand.last_stage_layers = 0;
                                            if (push(out, &cand, err)) return -1;
                                        }
                                        if (uneven_here) {
                                            cand.first_stage_layers = (short)split_first[pp];
                                            cand.last_stage_layers = (short)split_last[pp];
                                            if (push(out, &cand, err)) return -1;
                                            if (even) out->uneven_added++;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return 0;
}

void candidate_list_free(CandidateList *l) {
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

void candidate_apply(const Plan *base, const Candidate *c, Plan *out) {
    if (out != base) *out = *base;
    out->map = c->map;
    out->train.micro_batch = c->mbs;
    out->train.recompute = (RecomputeKind)c->recompute;
    out->train.recompute_modules = c->recompute_modules;
    out->train.opt_sharding = (OptimizerSharding)c->opt_sharding;
    out->first_stage_layers = c->first_stage_layers;
    out->last_stage_layers = c->last_stage_layers;
}

void candidate_from_plan(const Plan *p, Candidate *out) {
    memset(out, 0, sizeof *out);
    out->map = p->map;
    out->mbs = p->train.micro_batch;
    out->recompute = (unsigned char)p->train.recompute;
    out->recompute_modules = (unsigned char)train_recompute_modules(&p->train, &p->model);
    out->opt_sharding = (unsigned char)p->train.opt_sharding;
    out->first_stage_layers = (short)p->first_stage_layers;
    out->last_stage_layers = (short)p->last_stage_layers;
}

bool candidate_same(const Candidate *a, const Candidate *b) {
    return a->map.world == b->map.world && a->map.tp == b->map.tp && a->map.cp == b->map.cp &&
           a->map.pp == b->map.pp && a->map.vpp == b->map.vpp && a->map.etp == b->map.etp &&
           a->map.ep == b->map.ep && a->map.order == b->map.order && a->mbs == b->mbs &&
           a->recompute == b->recompute && a->recompute_modules == b->recompute_modules &&
           a->opt_sharding == b->opt_sharding &&
           a->first_stage_layers == b->first_stage_layers && a->last_stage_layers == b->last_stage_layers;
}

void candidate_format(const Candidate *c, char *buf, size_t len) {
    char split[32] = "";
    if (c->first_stage_layers || c->last_stage_layers)
        snprintf(split, sizeof split, " split%d/%d", c->first_stage_layers, c->last_stage_layers);
    snprintf(buf, len, "tp%d cp%d pp%d vpp%d dp%d | etp%d ep%d edp%d | mbs%d%s",
             c->map.tp, c->map.cp, c->map.pp, c->map.vpp, c->map.dp,
             c->map.etp, c->map.ep, c->map.edp, c->mbs, split);
}
