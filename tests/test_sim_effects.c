/* test_sim_effects.c: each modelled effect moves the prediction the right
 * way, and bad plans are refused with the field named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

#include "sim_plans.h"

static SimResult *run(const Plan *p) {
    SimResult *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(sim_run(p, r), 0);
    return r;
}

static void mixtral(Plan *p, int gpus, int tp, int pp, int etp, int ep) {
    assert_int_equal(sim_make_plan(p, "mixtral-8x22b", "dgx-h100", gpus, tp, 1, pp, 1, etp, ep), 0);
    sim_paper_settings(p);
}

static void test_more_ib_bandwidth_never_slows(void **state) {
    (void)state;
    /* EP 16 spans two nodes: the all-to-all and the DP traffic use IB */
    Plan p;
    mixtral(&p, 128, 1, 8, 1, 8);
    double prev = 1e30;
    for (double bw = 12.5e9; bw <= 200e9; bw *= 2) {
        p.cluster.nic_busbw = bw;
        SimResult *r = run(&p);
        assert_true(r->step_time_s <= prev + 1e-12);
        prev = r->step_time_s;
        free(r);
    }
}

static void test_group_crossing_nodes_is_slower(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    SimResult *inside = run(&p);
    /* same plan with 4-GPU nodes: the EP group of 8 now spans two nodes */
    p.cluster.gpus_per_node = 4;
    p.cluster.nvlink_domain = 4;
    p.cluster.nics_per_node = 4;
    SimResult *across = run(&p);
    assert_true(across->breakdown.comm_ep > inside->breakdown.comm_ep);
    assert_true(across->step_time_s > inside->step_time_s);
    free(inside);
    free(across);
}

static void test_more_microbatches_shrink_bubble(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.global_batch = 64;   /* m = 8 */
    SimResult *few = run(&p);
    p.train.global_batch = 512;  /* m = 64 */
    SimResult *many = run(&p);
    assert_true(many->breakdown.bubble / many->step_time_s < few->breakdown.bubble / few->step_time_s);
    assert_true(many->mfu > few->mfu);
    free(few);
    free(many);
}

static void test_interleaving_shrinks_bubble(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.global_batch = 64;
    SimResult *plain = run(&p);
    p.map.vpp = 7;
    SimResult *inter = run(&p);
    assert_true(inter->breakdown.bubble < plain->breakdown.bubble);
    free(plain);
    free(inter);
}

static void test_imbalance_slows_and_capacity_caps(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.capacity_factor = 0;   /* dropless */
    p.train.imbalance = 1.0;
    SimResult *bal = run(&p);
    p.train.imbalance = 1.5;
    SimResult *imb = run(&p);
    assert_true(imb->step_time_s > bal->step_time_s);
    assert_true(imb->breakdown.compute_moe > bal->breakdown.compute_moe);
    assert_true(imb->breakdown.comm_ep > bal->breakdown.comm_ep);
    /* capacity factor 1.0 pads every expert to the balanced load: it does
     * not depend on the imbalance and avoids the dropless host sync */
    p.train.capacity_factor = 1.0;
    SimResult *cap = run(&p);
    p.train.imbalance = 3.0;
    SimResult *cap2 = run(&p);
    assert_true(cap->step_time_s < imb->step_time_s);
    assert_true(cap->step_time_s < bal->step_time_s);
    assert_true(fabs(cap2->step_time_s - cap->step_time_s) < 1e-12);
    /* a larger capacity factor pads more */
    p.train.capacity_factor = 2.0;
    SimResult *cap3 = run(&p);
    assert_true(cap3->step_time_s > cap->step_time_s);
    free(bal); free(imb); free(cap); free(cap2); free(cap3);
}

static void test_recompute_trades_memory_for_time(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    SimResult *none = run(&p);
    p.train.recompute = RECOMPUTE_SELECTIVE;
    SimResult *sel = run(&p);
    p.train.recompute = RECOMPUTE_FULL;
    SimResult *full = run(&p);
    assert_true(sel->peak_memory_bytes < none->peak_memory_bytes);
    assert_true(full->peak_memory_bytes < sel->peak_memory_bytes);
    assert_true(sel->step_time_s > none->step_time_s);
    assert_true(full->step_time_s > sel->step_time_s);
    assert_true(full->breakdown.recompute > sel->breakdown.recompute);
    free(none); free(sel); free(full);
}

static void test_optimizer_sharding_memory(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.opt_sharding = OPT_SHARD_NONE;
    SimResult *none = run(&p);
    p.train.opt_sharding = OPT_SHARD_DISTRIBUTED;
    SimResult *dist = run(&p);
    p.train.opt_sharding = OPT_SHARD_FULL;
    SimResult *full = run(&p);
    /* stage 1 (no embedding/output): state = 18 B/param, 6 + 12/d, 18/d + working set */
    assert_true(dist->stage_memory[1].optimizer < none->stage_memory[1].optimizer);
    assert_true(full->stage_memory[1].weights + full->stage_memory[1].gradients <
                dist->stage_memory[1].weights + dist->stage_memory[1].gradients);
    assert_true(full->peak_memory_bytes < dist->peak_memory_bytes);
    /* FSDP pays per-layer gathers: never faster than the distributed optimizer here */
    assert_true(full->step_time_s >= dist->step_time_s);
    free(none); free(dist); free(full);
}

static void test_overlaps_help(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.overlap = 0;
    SimResult *none = run(&p);
    p.train.overlap = OVERLAP_GRAD | OVERLAP_PARAM;
    SimResult *dp = run(&p);
    p.train.overlap |= OVERLAP_TP;
    SimResult *tp = run(&p);
    p.train.overlap |= OVERLAP_EP;
    SimResult *ep = run(&p);
    assert_true(dp->step_time_s < none->step_time_s);
    assert_true(tp->breakdown.comm_tp < dp->breakdown.comm_tp);
    assert_true(ep->breakdown.comm_ep < tp->breakdown.comm_ep);
    free(none); free(dp); free(tp); free(ep);
}

static void test_does_not_fit_is_reported(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.micro_batch = 8;   /* 8x the activations */
    SimResult *r = run(&p);
    assert_false(r->fits);
    assert_true(r->peak_memory_bytes > r->memory_capacity_bytes);
    assert_true(r->step_time_s > 0);
    free(r);
}

static void test_bad_plan_names_field(void **state) {
    (void)state;
    Plan p;
    mixtral(&p, 128, 2, 8, 1, 8);
    p.train.global_batch = 100;   /* not divisible by mbs*dp = 8 */
    SimResult *r = malloc(sizeof *r);
    MpError err = {{0}};
    assert_int_equal(simulate_step(&p, NULL, NULL, r, &err), -1);
    assert_non_null(strstr(err.msg, "gbs"));
    mixtral(&p, 128, 2, 8, 1, 8);
    p.map.ep = 3;
    assert_int_equal(simulate_step(&p, NULL, NULL, r, &err), -1);
    assert_non_null(strstr(err.msg, "gpus"));
    free(r);
}

static void test_breakdown_sums_to_step(void **state) {
    (void)state;
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(&p);
    SimResult *r = run(&p);
    const SimBreakdown *b = &r->breakdown;
    double sum = b->compute_attention + b->compute_moe + b->compute_dense_mlp + b->compute_embed_output +
                 b->compute_memory_bound + b->recompute + b->comm_tp + b->comm_cp + b->comm_ep + b->comm_etp +
                 b->comm_pp + b->comm_dp + b->comm_edp + b->bubble + b->optimizer;
    assert_true(fabs(sum - r->step_time_s) < 1e-9 * r->step_time_s + 1e-12);
    assert_true(r->mfu > 0 && r->mfu < 1);
    /* tokens/s/GPU = gbs*seq / step / gpus */
    assert_true(fabs(r->tokens_per_s_per_gpu - 256.0 * 4096 / r->step_time_s / 64) < 1e-6);
    free(r);
}

/* Fine-grained experts, dropless: after the dispatcher's host sync the
 * forward's per-expert cuBLAS calls bound the expert GEMMs on the host.
 * With 128 local experts (EP1) that costs time that the capacity-factor
 * (no sync) plan does not pay; with EP8 (16 local experts of 8x the rows)
 * the GPU work dominates and dropless costs about the same as capacity. */
static void test_host_floor_of_tiny_experts(void **state) {
    (void)state;
    Plan p;
    double moe[2][2];
    for (int e = 0; e < 2; e++)
        for (int dl = 0; dl < 2; dl++) {
            int ep = e ? 8 : 1;
            assert_int_equal(sim_make_plan(&p, "qwen3-30b-a3b", "dgx-h100", 8, 1, 1, 1, 1, 1, ep), 0);
            sim_paper_settings(&p);
            p.train.global_batch = 64;
            p.train.capacity_factor = dl ? 0 : 1.0;
            p.train.imbalance = 1.0;
            SimResult *r = run(&p);
            moe[e][dl] = r->breakdown.compute_moe;
            free(r);
        }
    /* EP1: 48 layers x 8 micro-batches (gbs 64 / DP 8) x 2 GEMMs x 128 x
     * 8.9 us = 0.875 s of host floor at least on the forward GEMMs */
    assert_true(moe[0][1] >= 48 * 8 * 2 * 128 * 8.9e-6);
    assert_true(moe[0][1] > 1.2 * moe[0][0]);
    assert_true(fabs(moe[1][1] - moe[1][0]) <= 1e-9 * moe[1][0]);
}

/* Faster HBM never slows a plan (memory-bound kernels of every access pattern). */
static void test_more_hbm_bandwidth_never_slows(void **state) {
    (void)state;
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(&p);
    double prev = 1e30;
    for (double bw = 1.5e12; bw <= 12e12; bw *= 2) {
        p.cluster.hbm_bw_achievable = bw;
        SimResult *r = run(&p);
        assert_true(r->step_time_s < prev);
        prev = r->step_time_s;
        free(r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_ib_bandwidth_never_slows),
        cmocka_unit_test(test_group_crossing_nodes_is_slower),
        cmocka_unit_test(test_more_microbatches_shrink_bubble),
        cmocka_unit_test(test_interleaving_shrinks_bubble),
        cmocka_unit_test(test_imbalance_slows_and_capacity_caps),
        cmocka_unit_test(test_recompute_trades_memory_for_time),
        cmocka_unit_test(test_optimizer_sharding_memory),
        cmocka_unit_test(test_overlaps_help),
        cmocka_unit_test(test_does_not_fit_is_reported),
        cmocka_unit_test(test_bad_plan_names_field),
        cmocka_unit_test(test_breakdown_sums_to_step),
        cmocka_unit_test(test_host_floor_of_tiny_experts),
        cmocka_unit_test(test_more_hbm_bandwidth_never_slows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
