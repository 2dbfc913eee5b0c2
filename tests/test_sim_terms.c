/* test_sim_terms.c: each cost term against hand arithmetic (the DGX H100
 * figures of topologies/dgx-h100.json: 989.5 TFLOP/s, 132 SMs, HBM 3.0 TB/s
 * achievable, NVLink busbw 370 GB/s, 15 us; IB 47 GB/s per NIC, 8 us). */
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

static void test_hw_figures(void **state) {
    (void)state;
    NEAR(hw.peak_bf16, 989.5e12);
    NEAR(hw.hbm_bw, 3.0e12);
    NEAR(hw.nvlink_busbw, 370e9);
    NEAR(hw.nvlink_latency, 15e-6);
    NEAR(hw.nic_busbw_per_gpu, 47e9);
    NEAR(hw.net_latency, 8e-6);
    assert_true(hw.sms == 132);
}

/* NVLink size ramp of comm.c: 0.55 at <= 1 MiB moved per rank, rising
 * linearly in log2 to 1 at 4 GiB (12 doublings). */
static double ramp(double w) {
    double x = log2(w / 1048576.0) / 12.0;
    return 0.55 + 0.45 * fmin(1.0, fmax(0.0, x));
}

static void test_collectives_inside_node(void **state) {
    (void)state;
    GroupPlacement g = {8, 1, 8};
    /* all-gather 1 GB over 8 GPUs: 15 us + w / (370e9 * ramp(w)), w = 1e9 * 7/8 */
    double w = 1e9 * 7.0 / 8;
    NEAR(comm_time(&hw, COLL_ALL_GATHER, &g, 1e9), 15e-6 + w / (370e9 * ramp(w)));
    /* ramp(875 MB) = 0.55 + 0.45 * log2(834.4) / 12 = 0.55 + 0.45 * 0.8087 = 0.914 */
    assert_true(fabs(ramp(w) - 0.914) < 0.001);
    /* all-reduce: factor 2(n-1)/n */
    w = 1e9 * 14.0 / 8;
    NEAR(comm_time(&hw, COLL_ALL_REDUCE, &g, 1e9), 15e-6 + w / (370e9 * ramp(w)));
    /* below 1 MiB per rank the ramp is 0.55; from 4 GiB it is 1 */
    GroupPlacement two = {2, 1, 2};
    NEAR(comm_time(&hw, COLL_ALL_TO_ALL, &two, 1e6), 15e-6 + 0.5e6 / (370e9 * 0.55));
    NEAR(comm_time(&hw, COLL_SEND_RECV, &two, 8e9), 15e-6 + 8e9 / 370e9);
    GroupPlacement one = {1, 1, 1};
    NEAR(comm_time(&hw, COLL_ALL_GATHER, &one, 1e9), 0);
}

static void test_collectives_across_nodes(void **state) {
    (void)state;
    /* 16 GPUs on 2 nodes, 8 per node */
    GroupPlacement g = {16, 2, 8};
    double lat = 15e-6 + 1 * 8e-6;
    /* all-to-all: 8/16 of the buffer leaves through the GPU's own NIC, 7/16 over NVLink */
    double w = 1e9 * 7 / 16;
    NEAR(comm_time(&hw, COLL_ALL_TO_ALL, &g, 1e9), lat + fmax(1e9 * 8 / 16 / 47e9, w / (370e9 * ramp(w))));
    /* all-gather: each node receives half the buffer through 8 NICs */
    w = 1e9 * 15 / 16;
    NEAR(comm_time(&hw, COLL_ALL_GATHER, &g, 1e9), lat + fmax(1e9 * 0.5 / (8 * 47e9), w / (370e9 * ramp(w))));
    /* one member per node (DP across 4 nodes): one NIC, latency 2 hops */
    GroupPlacement d = {4, 4, 1};
    NEAR(comm_time(&hw, COLL_REDUCE_SCATTER, &d, 1e9), 15e-6 + 2 * 8e-6 + 1e9 * 0.75 / 47e9);
    /* send/recv between nodes */
    GroupPlacement pp = {8, 8, 1};
    NEAR(comm_time(&hw, COLL_SEND_RECV, &pp, 25e6), 15e-6 + 8e-6 + 25e6 / 47e9);
}

static void test_gemm_model(void **state) {
    (void)state;
    /* 8192^3: 128x256 tiles: 64*32 = 2048 tiles, 16 waves of 132 SMs,
     * per tile 2*128*256*(8192+384) FLOPs at 989.5e12/132*0.88 */
    double tile = 2.0 * 128 * 256 * (8192 + 384) / (989.5e12 / 132 * 0.88);
    double t = 4e-6 + 16 * tile + 8192.0 * 8192 * 2 / 3e12;   /* + writing C (bf16) */
    NEAR(compute_gemm_time(&hw, 8192, 8192, 8192, 2), t);
    double tflops = 2.0 * 8192 * 8192 * 8192 / t / 1e12;
    assert_true(tflops > 740 && tflops < 820);
    /* small m is memory-bound: 16 rows x 4096 x 4096: weights 32 MB / 3 TB/s */
    double tm = compute_gemm_time(&hw, 16, 4096, 4096, 2);
    assert_true(tm >= 4e-6 + 2.0 * (16.0 * 4096 + 4096.0 * 4096) / 3e12);
    /* a grouped GEMM of 8 equal groups costs at least one GEMM of the same total rows */
    assert_true(compute_grouped_gemm_time(&hw, 8, 512, 4096, 4096, 2) >= compute_gemm_time(&hw, 4096, 4096, 4096, 2) - 1e-12);
}

static void test_memory_and_attention(void **state) {
    (void)state;
    NEAR(compute_memory_time(&hw, 3e9), 2e-6 + 1e-3);
    /* flash attention (cudnn, the H100 default) at a shape of its table
     * (q = kv = 4096, 48 heads, causal: 554 / 419 TFLOP/s measured):
     * forward 2 * 4096^2/2 * 256 * 48 FLOPs, backward 2.5x */
    AttnKernel k = {4096, 4096, 48, 128, 128, ATTN_MASK_CAUSAL, 0};
    double f = 2.0 * 4096.0 * 4096 / 2 * 256 * 48;
    NEAR(attention_kernel_time(&hw, &k, false), 6e-6 + f / 554e12);
    NEAR(attention_kernel_time(&hw, &k, true), 6e-6 + 2.5 * f / 419e12);
}

static void test_memory_access_patterns(void **state) {
    (void)state;
    /* fractions of the 3.0 TB/s copy rate measured on the H100 (docs/kernels.md):
     * row gather 2508, row combine 1310, combine backward 1439 GB/s */
    NEAR(compute_memory_time_pattern(&hw, 3e9, MEM_STREAM), 2e-6 + 1e-3);
    NEAR(compute_memory_time_pattern(&hw, 3e9, MEM_ROW_GATHER), 2e-6 + 3e9 / 2508e9);
    NEAR(compute_memory_time_pattern(&hw, 3e9, MEM_ROW_COMBINE), 2e-6 + 3e9 / 1310e9);
    NEAR(compute_memory_time_pattern(&hw, 3e9, MEM_ROW_COMBINE_BWD), 2e-6 + 3e9 / 1439e9);
    NEAR(compute_memory_time_pattern(&hw, 0, MEM_ROW_COMBINE), 0);
}

/* the segment named `name` of a phase (0 when absent) */
static double seg(const Phase *ph, const char *name) {
    for (int i = 0; i < ph->n; i++)
        if (!strcmp(ph->seg[i].name, name)) return ph->seg[i].t;
    return 0;
}

static void make_ctx(SimCtx *x, Plan *p, int tp, int etp, int ep) {
    memset(x, 0, sizeof *x);
    x->p = p;
    x->hw = &hw;
    x->s = p->train.seq_len;
    x->b = 1;
    x->tp = tp; x->cp = 1; x->etp = etp; x->ep = ep; x->pp = p->map.pp; x->vpp = p->map.vpp;
    x->dp = p->map.dp; x->edp = p->map.edp;
    x->m_full = x->s;
    x->t_local = x->s / tp;
    x->act_bytes = 2;
    x->microbatches = 32;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) mapping_placement(&p->map, (GroupKind)k, hw.domain, &x->g[k]);
}

static void test_permute_unpermute_and_cross_entropy(void **state) {
    (void)state;
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(&p);
    SimCtx x;
    make_ctx(&x, &p, 2, 1, 4);
    Phase f, b, r;
    layer_moe(&x, &f, &b, &r);
    /* R = 64 experts x C 256 = 16384 rows of h 3584, T = 2048 tokens */
    double R = 16384, T = 2048, h = 3584;
    NEAR(seg(&f, "permute"), 2e-6 + 2 * R * h * 2 / 2508e9);
    /* unpermute: prob scaling + zero fill stream, the scatter-add combines */
    NEAR(seg(&f, "unpermute"), 2e-6 + (2 * R + T) * h * 2 / 3e12 + 2e-6 + 2 * R * h * 2 / 1310e9);
    NEAR(seg(&b, "unpermute_bwd"), 2e-6 + (T + 4 * R) * h * 2 / 1439e9);
    NEAR(seg(&b, "permute_bwd"), 2e-6 + T * h * 2 / 3e12 + 2e-6 + 3 * R * h * 2 / 1310e9);
    /* capacity factor: no host floor, the expert GEMM is the GPU model */
    NEAR(seg(&f, "expert_fc1"), compute_grouped_gemm_time(&hw, 16, 1024, 5120, 3584, 2));

    /* cross-entropy on 4096 rows x V/TP logits, V padded to a multiple of
     * 128*TP: ceil(151936/256)*256 = 152064, /2 = 76032; 38 bytes per logit
     * forward, 14 backward */
    layer_output(&x, &f, &b);
    NEAR(seg(&f, "cross_entropy"), 2e-6 + 4096.0 * 76032 * 38 / 3e12);
    NEAR(seg(&b, "cross_entropy_bwd"), 2e-6 + 4096.0 * 76032 * 14 / 3e12);
}

static void test_expert_gemm_host_floor(void **state) {
    (void)state;
    /* 128 tiny experts (qwen3-30b-a3b at EP1: 256 rows, 2*768 x 2048):
     * the GPU needs less than the host's 128 x 8.9 us of cuBLAS calls */
    double gpu = compute_grouped_gemm_time(&hw, 128, 256, 1536, 2048, 2);
    assert_true(gpu < 128 * 8.9e-6);
    NEAR(dispatcher_expert_gemm_time(&hw, 128, 256, 1536, 2048, 2, true), 128 * 8.9e-6);
    NEAR(dispatcher_expert_gemm_time(&hw, 128, 256, 1536, 2048, 2, false), gpu);
    /* large experts: the GPU time dominates, the floor changes nothing */
    double big = compute_grouped_gemm_time(&hw, 2, 4096, 16384, 6144, 2);
    NEAR(dispatcher_expert_gemm_time(&hw, 2, 4096, 16384, 6144, 2, true), big);

    /* in the layer: dropless forward GEMMs floored, backward not */
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen3-30b-a3b", "dgx-h100", 8, 1, 1, 1, 1, 1, 1), 0);
    sim_paper_settings(&p);
    p.train.capacity_factor = 0;
    p.train.imbalance = 1;
    SimCtx x;
    make_ctx(&x, &p, 1, 1, 1);
    Phase f, b, r;
    layer_moe(&x, &f, &b, &r);
    /* rows per expert = 4096 * 8 / 128 = 256 */
    NEAR(seg(&f, "expert_fc1"), 128 * 8.9e-6);
    NEAR(seg(&f, "expert_fc2"), 128 * 8.9e-6);
    NEAR(seg(&b, "expert_fc1_dgrad"), compute_grouped_gemm_time(&hw, 128, 256, 2048, 1536, 2));
}

static void test_overlap_rule(void **state) {
    (void)state;
    NEAR(overlap_added(1.0, 10.0, 0.1), 0.1);    /* hidden: costs the SMs it takes */
    NEAR(overlap_added(10.0, 1.0, 0.1), 9.0);    /* longer than the work: exposed remainder */
    NEAR(overlap_added(0, 5, 0.1), 0);
}

static void test_pipeline_1f1b(void **state) {
    (void)state;
    /* PP 2, m 2, forward 1 s, backward 2 s, no transfer: (m + PP - 1)(F + B) = 9 s */
    double f[2] = {1, 1}, b[2] = {2, 2};
    PipeResult *r = malloc(sizeof *r);
    MpError err = {{0}};
    assert_int_equal(pipeline_simulate(2, 1, 2, f, b, 0, true, r, -1, NULL, 0, NULL, &err), 0);
    NEAR(r->makespan, 9.0);
    NEAR(r->rank_busy[0], 6.0);
    /* PP 4, m 8: (8 + 3) * 3 = 33 s */
    double f4[4] = {1, 1, 1, 1}, b4[4] = {2, 2, 2, 2};
    assert_int_equal(pipeline_simulate(4, 1, 8, f4, b4, 0, true, r, -1, NULL, 0, NULL, &err), 0);
    NEAR(r->makespan, 33.0);
    /* blocking transfer of 0.1 s: every boundary crossing costs it on the path */
    assert_int_equal(pipeline_simulate(2, 1, 1, f, b, 0.1, true, r, -1, NULL, 0, NULL, &err), 0);
    NEAR(r->makespan, 1 + 0.1 + 1 + 2 + 0.1 + 2);
    /* interleaved PP 2, v 2, m 2, every chunk 0.5/1 s: less than 1F1B's (m+PP-1)(F+B) */
    double fv[4] = {0.5, 0.5, 0.5, 0.5}, bv[4] = {1, 1, 1, 1};
    assert_int_equal(pipeline_simulate(2, 2, 4, fv, bv, 0, false, r, -1, NULL, 0, NULL, &err), 0);
    assert_true(r->makespan < (4 + 1) * 3.0);
    assert_true(r->makespan >= 4 * 3.0);
    free(r);
}

static void test_inflight(void **state) {
    (void)state;
    assert_int_equal(pipeline_inflight(4, 1, 8, 0), 4);
    assert_int_equal(pipeline_inflight(4, 1, 8, 3), 1);
    assert_int_equal(pipeline_inflight(4, 1, 2, 0), 2);
    /* interleaved stage 0: (PP-1)*2 + (v-1)*PP warm-up chunks + 1 = 6 + 4 + 1 */
    assert_int_equal(pipeline_inflight(4, 2, 8, 0), 11);
}

static void test_dispatch_shape(void **state) {
    (void)state;
    Plan p;
    assert_int_equal(sim_make_plan(&p, "qwen2-57b-a14b", "dgx-h100", 64, 2, 1, 4, 7, 1, 4), 0);
    sim_paper_settings(&p);
    SimCtx x = {.p = &p, .hw = &hw, .s = 4096, .b = 1, .tp = 2, .cp = 1, .etp = 1, .ep = 4, .pp = 4, .vpp = 7};
    x.t_local = 2048;
    x.m_full = 4096;
    DispatchShape d;
    /* capacity 1.0: C = ceil(2048*8/64) = 256 rows per expert per source rank */
    dispatcher_shape(&x, &d);
    NEAR(d.rows_per_expert, 4 * 256.0);
    NEAR(d.a2a_bytes, 64 * 256.0 * 3584 * 2);
    /* dropless, imbalance 1.25: the busiest rank receives 1.25 x T*k rows */
    p.train.capacity_factor = 0;
    p.train.imbalance = 1.25;
    dispatcher_shape(&x, &d);
    NEAR(d.rows_recv, 2048.0 * 8 * 1.25);
    NEAR(d.rows_per_expert, 4 * 2048.0 * 8 / 64 * 1.25);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hw_figures),
        cmocka_unit_test(test_collectives_inside_node),
        cmocka_unit_test(test_collectives_across_nodes),
        cmocka_unit_test(test_gemm_model),
        cmocka_unit_test(test_memory_and_attention),
        cmocka_unit_test(test_memory_access_patterns),
        cmocka_unit_test(test_permute_unpermute_and_cross_entropy),
        cmocka_unit_test(test_expert_gemm_host_floor),
        cmocka_unit_test(test_overlap_rule),
        cmocka_unit_test(test_pipeline_1f1b),
        cmocka_unit_test(test_inflight),
        cmocka_unit_test(test_dispatch_shape),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
