/* test_planner_space.c: enumeration completeness against a brute force over
 * the raw product, a hand count, each pruning rule, and the constraints. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "planner/space.h"

/* A small MoE model and an 8-GPU node built by hand (no catalog needed). */
static void small_plan(Plan *p, int gpus, int layers, int heads, int kv, int experts, int gbs, int seq) {
    memset(p, 0, sizeof *p);
    train_config_default(&p->train);
    ModelSpec *m = &p->model;
    snprintf(m->name, sizeof m->name, "tiny");
    m->num_layers = layers; m->hidden = 64; m->num_heads = heads; m->num_kv_groups = kv;
    m->head_dim = 64 / heads; m->num_experts = experts; m->top_k = experts > 1 ? 2 : 1;
    m->expert_ffn = 8; m->vocab = 1000; m->swiglu = true;
    Cluster *c = &p->cluster;
    snprintf(c->name, sizeof c->name, "toy");
    c->peak_bf16_flops = 1e15; c->hbm_bytes = 80e9; c->hbm_bw = 3e12; c->hbm_bw_achievable = 2.6e12;
    c->gpus_per_node = 8; c->nvlink_domain = 8;
    /* links (the pipeline split prices layers with the simulator): DGX H100's */
    c->sm_count = 132; c->nvlink_bw = 450e9; c->nvlink_busbw = 370e9; c->nvlink_latency = 15e-6;
    c->nics_per_node = 8; c->nic_bw = 50e9; c->nic_busbw = 47e9; c->net_latency = 8e-6;
    p->map.world = gpus;
    p->train.global_batch = gbs;
    p->train.seq_len = seq;
}

static void all_free(SearchConstraints *c) {
    memset(c, 0, sizeof *c);
    c->max_mbs = 4;
    c->recompute_set = 1u << RECOMPUTE_NONE;
    c->opt_sharding_set = 1u << OPT_SHARD_DISTRIBUTED;
}

static int count_divisors(int n, int cap) {
    int k = 0;
    for (int d = 1; d <= n; d++) if (n % d == 0 && (cap <= 0 || d <= cap)) k++;
    return k;
}

/* The rules written flat, in the order space.h lists them; returns the
 * first broken rule or -1 for a valid plan (no uneven splits). */
static int brute_rule(const Plan *b, const SearchConstraints *c, int tp, int cp, int pp, int vpp, int etp, int ep, int mbs) {
    const ModelSpec *m = &b->model;
    int N = b->map.world, L = m->num_layers;
    if ((c->fix_tp && tp != c->fix_tp) || (c->max_tp && tp > c->max_tp)) return PRUNE_CONSTRAINT;
    if (m->num_heads % tp) return PRUNE_HEADS;
    if (m->num_kv_groups % tp) return PRUNE_KV_GROUPS;
    if ((c->fix_cp && cp != c->fix_cp) || (c->max_cp && cp > c->max_cp)) return PRUNE_CONSTRAINT;
    if (N % (tp * cp)) return PRUNE_DENSE_GRID;
    if (cp > 1 && b->train.seq_len % (2 * cp)) return PRUNE_SEQ;
    if ((c->fix_pp && pp != c->fix_pp) || (c->max_pp && pp > c->max_pp)) return PRUNE_CONSTRAINT;
    if (N % (tp * cp * pp)) return PRUNE_DENSE_GRID;
    if (L % pp) return PRUNE_LAYERS;
    if ((c->fix_vpp && vpp != c->fix_vpp) || (c->max_vpp && vpp > c->max_vpp)) return PRUNE_CONSTRAINT;
    if (vpp > 1 && pp == 1) return PRUNE_VPP;
    if (L % (pp * vpp)) return PRUNE_LAYERS;
    if ((c->fix_etp && etp != c->fix_etp) || (c->max_etp && etp > c->max_etp) || (c->no_folding && etp != tp)) return PRUNE_CONSTRAINT;
    if (N % (etp * pp)) return PRUNE_EXPERT_GRID;
    if (m->expert_ffn % etp) return PRUNE_EXPERTS;
    if ((c->fix_ep && ep != c->fix_ep) || (c->max_ep && ep > c->max_ep)) return PRUNE_CONSTRAINT;
    if (N % (etp * ep * pp)) return PRUNE_EXPERT_GRID;
    if (m->num_experts % ep) return PRUNE_EXPERTS;
    int dp = N / (tp * cp * pp), edp = N / (etp * ep * pp);
    if (b->map.order == ORDER_TP_CP_EP_PP_DP && pp > 1 && edp != dp) return PRUNE_RANK_ORDER;
    if (c->fix_mbs && mbs != c->fix_mbs) return PRUNE_CONSTRAINT;
    if (b->train.global_batch % (mbs * dp)) return PRUNE_BATCH;
    if (vpp > 1 && (b->train.global_batch / (mbs * dp)) % pp) return PRUNE_VPP;
    return -1;
}

static bool list_has(const CandidateList *l, int tp, int cp, int pp, int vpp, int etp, int ep, int mbs) {
    for (size_t i = 0; i < l->count; i++) {
        const Candidate *c = &l->items[i];
        if (c->map.tp == tp && c->map.cp == cp && c->map.pp == pp && c->map.vpp == vpp &&
            c->map.etp == etp && c->map.ep == ep && c->mbs == mbs) return true;
    }
    return false;
}

static void check_against_brute_force(const Plan *b, const SearchConstraints *c) {
    CandidateList l;
    MpError err;
    assert_int_equal(space_enumerate(b, c, &l, &err), 0);
    int N = b->map.world, L = b->model.num_layers, gbs = b->train.global_batch;
    long long raw = 0, valid = 0, rules[PRUNE_RULE_COUNT] = {0};
    for (int tp = 1; tp <= N; tp++) if (N % tp == 0)
    for (int cp = 1; cp <= N; cp++) if (N % cp == 0)
    for (int pp = 1; pp <= N; pp++) if (N % pp == 0)
    for (int vpp = 1; vpp <= L; vpp++) if (L % vpp == 0)
    for (int etp = 1; etp <= N; etp++) if (N % etp == 0)
    for (int ep = 1; ep <= N; ep++) if (N % ep == 0)
    for (int mbs = 1; mbs <= c->max_mbs; mbs++) if (gbs % mbs == 0) {
        raw++;
        int r = brute_rule(b, c, tp, cp, pp, vpp, etp, ep, mbs);
        if (r >= 0) { rules[r]++; continue; }
        valid++;
        assert_true(list_has(&l, tp, cp, pp, vpp, etp, ep, mbs));
    }
    assert_int_equal(l.enumerated, raw);
    assert_int_equal((long long)l.count, valid);
    for (int r = 0; r < PRUNE_RULE_COUNT; r++) assert_int_equal(l.pruned[r], rules[r]);
    long long sum = (long long)l.count;
    for (int r = 0; r < PRUNE_RULE_COUNT; r++) sum += l.pruned[r];
    assert_int_equal(sum, l.enumerated);
    for (size_t i = 0; i < l.count; i++) {   /* every candidate is a resolvable mapping */
        Mapping m = l.items[i].map;
        assert_int_equal(mapping_resolve(&m, b->model.num_experts, &err), 0);
        assert_int_equal(m.dp, l.items[i].map.dp);
        assert_int_equal(m.edp, l.items[i].map.edp);
    }
    candidate_list_free(&l);
}

/* N=2, L=2, heads 2, kv 2, E=2, Fe=8, gbs 2, seq 8, mbs <= 2.
 * By hand: (tp,cp,pp) with tp*cp*pp | 2: (1,1,1) (2,1,1) (1,2,1) (1,1,2);
 * vpp = 1 only (pp = 2: vpp 2 needs 4 | L). Expert pairs (etp,ep):
 * pp = 1: (1,1) (2,1) (1,2) = 3; pp = 2: (1,1) = 1.  mbs: dp = 2 -> mbs 1;
 * dp = 1 -> mbs 1, 2.  Total 3*1 + 3*2 + 3*2 + 1*2 = 17. */
static void test_hand_count(void **state) {
    (void)state;
    Plan b;
    small_plan(&b, 2, 2, 2, 2, 2, 2, 8);
    SearchConstraints c;
    all_free(&c);
    c.max_mbs = 2;
    c.uneven = true;   /* L = 2 over pp = 2: the program gives (1,1), the even split */
    CandidateList l;
    MpError err;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_int_equal((int)l.count, 17);
    assert_int_equal((int)l.uneven_added, 0);
    /* raw space: 2 (tp) * 2 (cp) * 2 (pp) * 2 (vpp) * 2 (etp) * 2 (ep) * 2 (mbs) = 128 */
    assert_int_equal((int)l.enumerated, 128);
    candidate_list_free(&l);
}

static void test_complete_small_cases(void **state) {
    (void)state;
    Plan b;
    SearchConstraints c;
    int cases[][7] = { /* gpus layers heads kv experts gbs seq */
        {8, 4, 4, 2, 4, 16, 64}, {16, 6, 8, 8, 8, 32, 128}, {12, 6, 6, 3, 6, 24, 96},
        {32, 8, 8, 4, 16, 64, 256}, {24, 12, 12, 4, 8, 48, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        small_plan(&b, cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4], cases[i][5], cases[i][6]);
        all_free(&c);
        check_against_brute_force(&b, &c);
        /* with constraints */
        c.max_tp = 2; c.max_pp = 2; c.no_folding = true;
        check_against_brute_force(&b, &c);
        all_free(&c);
        c.fix_ep = 2; c.fix_mbs = 2; c.max_cp = 1;
        check_against_brute_force(&b, &c);
        b.map.order = ORDER_TP_CP_EP_PP_DP;
        all_free(&c);
        check_against_brute_force(&b, &c);
    }
}

/* Each rule fires on a case built for it (counts from hand arithmetic). */
static void test_each_rule(void **state) {
    (void)state;
    Plan b;
    SearchConstraints c;
    CandidateList l;
    MpError err;
    /* heads: 6 heads on 8 GPUs: tp in {1,2,4,8}; 4 and 8 do not divide 6. */
    small_plan(&b, 8, 4, 6, 6, 4, 16, 64);
    b.model.hidden = 60; b.model.head_dim = 10;
    all_free(&c);
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    /* raw per tp value: cp 4 * pp 4 * vpp 3 (divisors of 4) * etp 4 * ep 4 * mbs 3 (1,2,4) */
    long long per_tp = 4LL * 4 * 3 * 4 * 4 * 3;
    assert_int_equal(l.pruned[PRUNE_HEADS], 2 * per_tp);
    for (size_t i = 0; i < l.count; i++) assert_true(6 % l.items[i].map.tp == 0);
    candidate_list_free(&l);
    /* kv groups: 8 heads, 2 groups: tp 4 and 8 break the kv rule only. */
    small_plan(&b, 8, 4, 8, 2, 4, 16, 64);
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_int_equal(l.pruned[PRUNE_KV_GROUPS], 2 * per_tp);
    assert_int_equal(l.pruned[PRUNE_HEADS], 0);
    candidate_list_free(&l);
    /* experts: 6 experts: ep 4 and 8 break it; seq: seq 4 forbids cp 4, 8 (4 % 8, 4 % 16) */
    small_plan(&b, 8, 4, 8, 8, 6, 16, 4);
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_true(l.pruned[PRUNE_EXPERTS] > 0);
    assert_true(l.pruned[PRUNE_SEQ] > 0);
    for (size_t i = 0; i < l.count; i++) {
        assert_true(6 % l.items[i].map.ep == 0);
        assert_true(l.items[i].map.cp <= 2);
    }
    candidate_list_free(&l);
    /* batch: gbs 1 allows only dp 1 and mbs 1 */
    small_plan(&b, 8, 8, 8, 8, 8, 1, 64);
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_true(l.pruned[PRUNE_BATCH] > 0);
    for (size_t i = 0; i < l.count; i++) { assert_int_equal(l.items[i].map.dp, 1); assert_int_equal(l.items[i].mbs, 1); }
    candidate_list_free(&l);
    /* rank order: tp-cp-ep-pp-dp with pp > 1 needs edp == dp */
    small_plan(&b, 8, 4, 8, 8, 8, 16, 64);
    b.map.order = ORDER_TP_CP_EP_PP_DP;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_true(l.pruned[PRUNE_RANK_ORDER] > 0);
    for (size_t i = 0; i < l.count; i++)
        if (l.items[i].map.pp > 1) assert_int_equal(l.items[i].map.edp, l.items[i].map.dp);
    candidate_list_free(&l);
}

/* Layers: 6 layers on pp 4 have no even split; with the program they get
 * one (first + 2*middle + last = 6), without it they are pruned. */
static void test_layers_and_uneven(void **state) {
    (void)state;
    Plan b;
    SearchConstraints c;
    CandidateList l;
    MpError err;
    small_plan(&b, 8, 6, 8, 8, 8, 16, 64);
    all_free(&c);
    c.fix_pp = 4;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_int_equal((int)l.count, 0);
    assert_true(l.pruned[PRUNE_LAYERS] > 0);
    candidate_list_free(&l);
    c.uneven = true;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_true(l.count > 0);
    for (size_t i = 0; i < l.count; i++) {
        const Candidate *k = &l.items[i];
        assert_int_equal(k->map.vpp, 1);
        int middle = (6 - k->first_stage_layers - k->last_stage_layers) / 2;
        assert_true(k->first_stage_layers >= 1 && k->last_stage_layers >= 1 && middle >= 1);
        assert_int_equal(k->first_stage_layers + 2 * middle + k->last_stage_layers, 6);
    }
    candidate_list_free(&l);
}

static void test_constraints(void **state) {
    (void)state;
    Plan b;
    SearchConstraints c;
    CandidateList l;
    MpError err;
    small_plan(&b, 16, 8, 8, 8, 8, 32, 256);
    all_free(&c);
    c.fix_tp = 2; c.fix_ep = 4; c.max_pp = 2;
    c.recompute_set = (1u << RECOMPUTE_NONE) | (1u << RECOMPUTE_FULL);
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    assert_true(l.count > 0);
    int full = 0;
    for (size_t i = 0; i < l.count; i++) {
        assert_int_equal(l.items[i].map.tp, 2);
        assert_int_equal(l.items[i].map.ep, 4);
        assert_true(l.items[i].map.pp <= 2);
        assert_true(l.items[i].recompute != RECOMPUTE_SELECTIVE);
        full += l.items[i].recompute == RECOMPUTE_FULL;
    }
    assert_int_equal(full * 2, (int)l.count);   /* two recompute values, each once per point */
    candidate_list_free(&l);
    all_free(&c);
    c.no_folding = true;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), 0);
    for (size_t i = 0; i < l.count; i++) assert_int_equal(l.items[i].map.etp, l.items[i].map.tp);
    candidate_list_free(&l);
    /* bad base plan */
    b.train.global_batch = 0;
    assert_int_equal(space_enumerate(&b, &c, &l, &err), -1);
    assert_non_null(strstr(err.msg, "--gbs"));
}

int main(void) {
    (void)count_divisors;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_count),
        cmocka_unit_test(test_complete_small_cases),
        cmocka_unit_test(test_each_rule),
        cmocka_unit_test(test_layers_and_uneven),
        cmocka_unit_test(test_constraints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
