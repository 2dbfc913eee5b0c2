/* test_sim_recompute.c: selective recomputation as Megatron-LM's
 * --recompute-modules: the activation bytes each module drops (hand
 * arithmetic from memory.c's formulas), and the time each adds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/sim_internal.h"
#include "sim_plans.h"

static Cluster h100;
static SimHw hw;

static int setup(void **state) {
    (void)state;
    MpError err = {{0}};
    if (cluster_lookup("dgx-h100", &h100, &err)) return -1;
    sim_hw_init(&hw, &h100, NULL, false);
    return 0;
}

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-9 * fabs((double)(b)) + 1e-15)

/* Qwen2-57B-A14B (h 3584, 28 heads, 4 KV groups, d 128, 64 experts of 2560,
 * shared 20480), TP 2, EP 4, seq 4096, mbs 1: T = 2048 tokens per rank,
 * M = 4096 rows after the TP all-gather. */
static void ctx(SimCtx *x, Plan *p) {
    assert_int_equal(sim_make_plan(p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(p);
    memset(x, 0, sizeof *x);
    *x = (SimCtx){.p = p, .hw = &hw, .s = 4096, .b = 1, .tp = 2, .cp = 1, .etp = 1, .ep = 4, .pp = 4, .vpp = 7};
    x->t_local = 2048;
    x->m_full = 4096;
    x->act_bytes = 2;
}

static void test_attention_modules(void **state) {
    (void)state;
    Plan p;
    SimCtx x;
    ctx(&x, &p);
    double T = 2048, M = 4096, h = 3584;
    double qkv = (28 + 2 * 4) * 128 / 2.0, core = 28 * 128 / 2.0, lse = 4 * M * 28 / 2.0;
    double none = 2 * T * h + 2 * M * qkv + 2 * M * core + lse + 2 * T * h;
    x.recompute = RECOMPUTE_NONE;
    NEAR(memory_attention_activations(&x), none);
    x.recompute = RECOMPUTE_SELECTIVE;
    p.train.recompute = RECOMPUTE_SELECTIVE;
    p.train.recompute_modules = RCM_LAYERNORM;
    NEAR(memory_attention_activations(&x), none - 2 * T * h);
    p.train.recompute_modules = RCM_CORE_ATTN;
    NEAR(memory_attention_activations(&x), none - lse);
    p.train.recompute_modules = RCM_MLA_UP_PROJ;   /* not an MLA model: ignored */
    NEAR(memory_attention_activations(&x), none);
    x.recompute = RECOMPUTE_FULL;
    NEAR(memory_attention_activations(&x), 2 * T * h);
}

static void test_moe_modules(void **state) {
    (void)state;
    Plan p;
    SimCtx x;
    ctx(&x, &p);
    DispatchShape d;
    dispatcher_shape(&x, &d);
    double T = 2048, M = 4096, h = 3584, E = 64, R = d.rows_per_expert * (E / 4), fe = 2560, fs = 20480 / 2.0;
    double shared = 2 * M * 2 * fs + 2 * M * fs;
    double none = 2 * T * h + 2 * T * h + T * E * 5 + 2 * R * h + 2 * R * 2 * fe + 2 * d.rows_recv * h + 2 * R * fe + shared;
    x.recompute = RECOMPUTE_NONE;
    NEAR(memory_moe_activations(&x), none);
    x.recompute = RECOMPUTE_SELECTIVE;
    p.train.recompute = RECOMPUTE_SELECTIVE;
    p.train.recompute_modules = 0;   /* the default: core_attn, layernorm, moe_act */
    NEAR(memory_moe_activations(&x), none - 2 * T * h - 2 * R * fe);
    p.train.recompute_modules = RCM_SHARED_EXPERTS;
    NEAR(memory_moe_activations(&x), none - shared);
    p.train.recompute_modules = RCM_MOE;   /* input and norm output only */
    NEAR(memory_moe_activations(&x), 2 * T * h + 2 * T * h);
    p.train.recompute_modules = RCM_MOE | RCM_LAYERNORM;
    NEAR(memory_moe_activations(&x), 2 * T * h);
    /* the dense MLP of 18944: "mlp" keeps its input and norm input */
    double f = 18944 / 2.0;
    p.train.recompute_modules = RCM_MLP;   /* the model has no dense layer: ignored */
    NEAR(memory_dense_mlp_activations(&x, 18944), 2 * T * h + 2 * T * h + 2 * M * 2 * f + 2 * M * f);
}

/* More recomputed modules: less memory, more recompute time, and the time
 * of "moe" includes the dispatch (more than moe_act alone). */
static void test_time_and_memory_order(void **state) {
    (void)state;
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(&p);
    SimResult *r = malloc(4 * sizeof *r);
    assert_non_null(r);
    assert_int_equal(sim_run(&p, &r[0]), 0);
    p.train.recompute = RECOMPUTE_SELECTIVE;
    p.train.recompute_modules = RCM_CORE_ATTN;
    assert_int_equal(sim_run(&p, &r[1]), 0);
    p.train.recompute_modules = RCM_CORE_ATTN | RCM_LAYERNORM | RCM_MOE_ACT;
    assert_int_equal(sim_run(&p, &r[2]), 0);
    p.train.recompute_modules = RCM_CORE_ATTN | RCM_LAYERNORM | RCM_MOE;
    assert_int_equal(sim_run(&p, &r[3]), 0);
    assert_true(r[0].breakdown.recompute == 0);
    for (int i = 1; i < 4; i++) {
        assert_true(r[i].breakdown.recompute > r[i - 1].breakdown.recompute);
        assert_true(r[i].peak_memory_bytes < r[i - 1].peak_memory_bytes);
    }
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_modules),
        cmocka_unit_test(test_moe_modules),
        cmocka_unit_test(test_time_and_memory_order),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
