/* test_sim_cp.c: attention and context parallelism at their real shapes
 * (simulator/ring.c, attention.c) against hand arithmetic:
 *   - CP 2/4/8/16 at 16K-128K (Mixtral 8x22B, TP 8: 6 query heads and one
 *     K/V head per GPU, chunks c = s/(2 CP) = 4096): step shapes, the
 *     diagonal step's kernel at the cudnn table's measured rate, the
 *     passes, the transfers on the NIC (every CP hop crosses nodes) and
 *     their exposure;
 *   - the trend at fixed tokens per batch (CP grows with the context): the
 *     attention share grows, the MFU (megatron convention) falls, and each
 *     step's efficiency is the table's;
 *   - the ring's buffers in the memory model; recomputation re-runs the ring;
 *   - backends and the NIC shared with gradient traffic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

#include "simulator/sim_internal.h"
#include "sim_plans.h"
#include "test_util.h"

#define US 1e-6
#define NIC 47e9          /* dgx-h100 nic_busbw_gb_per_s */
#define HBM 3.0e12        /* dgx-h100 hbm_achievable */
#define NCCL_SM (16.0 / 132.0)

/* Mixtral 8x22B on 8*cp GPUs: TP 8, CP cp, PP 1, EP 8; s = 8192*cp */
static void cp_plan(Plan *p, int cp) {
    if (sim_make_plan(p, "mixtral-8x22b", "dgx-h100", 8 * cp, 8, cp, 1, 1, 1, 8)) fail();
    sim_paper_settings(p);
    p->train.seq_len = 8192 * cp;
    p->train.global_batch = 8;
}

static double mem_t(double bytes) { return 2 * US + bytes / HBM; }

static void test_ring_steps_cp_2_to_16(void **state) {
    (void)state;
    for (int cp = 2; cp <= 16; cp *= 2) {
        Plan p;
        cp_plan(&p, cp);
        SimHw hw;
        sim_hw_init(&hw, &p.cluster, NULL, false);
        assert_int_equal(hw.attn_backend, ATTN_BACKEND_CUDNN);
        SimCtx x;
        sim_ctx_init(&x, &p, &hw);
        assert_int_equal(x.g[GROUP_CP].nodes, cp);   /* CP ranks 8 apart: one per node */
        /* step shapes of every rank: c = 4096 */
        CpRingStep st[16];
        MpError err = {{0}};
        for (int r = 0; r < cp; r++) {
            assert_int_equal(layout_cp_ring_steps(8192 * cp, cp, r, st, &err), 0);
            assert_int_equal(st[0].q_rows, 8192);
            assert_int_equal(st[0].mask, ATTN_MASK_CAUSAL);
            for (int i = 1; i < cp; i++) {
                assert_int_equal(st[i].q_rows, i <= r ? 8192 : 4096);
                assert_int_equal(st[i].kv_rows, i <= r ? 4096 : 8192);
            }
        }
        RingCost rc;
        ring_cost(&x, 0, &rc);
        assert_int_equal(rc.kernels, cp);
        /* diagonal step: q 8192 x kv 8192 causal, 6 heads = the cudnn table's
         * entry (418 / 405 TFLOP/s): 2 * 8192^2/2 * 256 * 6 FLOPs */
        double f = 2.0 * 8192 * 8192 / 2 * 256 * 6;
        double d_f = 6 * US + f / 418e12, d_b = 6 * US + 2.5 * f / 405e12;
        /* the other steps: 8192 x 4096 or 4096 x 8192, no mask, the same
         * FLOPs (2 * 8192 * 4096 * 256 * 6), the slower of the two */
        AttnKernel ka = {8192, 4096, 6, 128, 128, ATTN_MASK_NONE, 0}, kb = {4096, 8192, 6, 128, 128, ATTN_MASK_NONE, 0};
        double a_f = attention_kernel_time(&hw, &ka, false), b_f = attention_kernel_time(&hw, &kb, false);
        double a_b = attention_kernel_time(&hw, &ka, true), b_b = attention_kernel_time(&hw, &kb, true);
        assert_true(a_f > f / (0.98 * 989.5e12) && b_f > f / (0.98 * 989.5e12));
        /* passes (bytes, hand): o = 8192*6*128 output elements, kv(c) =
         * 4096*1*256, q(c) = 4096*6*128, LSE rows 8192*6 */
        double o2 = 8192.0 * 6 * 128, o1 = o2 / 2, q1 = o1, kv1 = 4096.0 * 256, lse2 = 8192.0 * 6;
        double p0f = mem_t(14 * o2) + mem_t(2 * o2) + mem_t(20 * lse2);
        double pAf = mem_t(4 * kv1) + mem_t(20 * lse2) + mem_t(14 * o2);
        double pBf = mem_t(4 * q1) + mem_t(20 * lse2 / 2) + mem_t(14 * o1);
        double p0b = mem_t(4 * 2 * q1) + mem_t(4 * 2 * kv1);
        double pAb = mem_t(4 * kv1) + mem_t(6 * 2 * q1) + mem_t(6 * kv1);
        double pBb = mem_t(4 * (q1 + 2 * o1)) + mem_t(6 * q1) + mem_t(6 * 2 * kv1);
        bool af = a_f + pAf >= b_f + pBf, ab = a_b + pAb >= b_b + pBb;
        assert_rel(rc.kernel_fwd, d_f + (cp - 1) * (af ? a_f : b_f), 1e-9);
        assert_rel(rc.kernel_bwd, d_b + (cp - 1) * (ab ? a_b : b_b), 1e-9);
        assert_rel(rc.passes_fwd, p0f + (cp - 1) * (af ? pAf : pBf), 1e-9);
        assert_rel(rc.passes_bwd, p0b + (cp - 1) * (ab ? pAb : pBb), 1e-9);
        /* transfers: K and V of 8192 tokens, 1 head of 128 each, bf16 =
         * 4 MiB over one NIC (47 GB/s) after 15 + 8 us; backward twice that */
        double t_kv = 23 * US + 4194304.0 / NIC, t_kv2 = 23 * US + 8388608.0 / NIC;
        assert_rel(rc.transfer_fwd, t_kv, 1e-9);
        assert_rel(rc.transfer_bwd, t_kv2, 1e-9);
        /* every transfer is shorter than the step it hides behind: only
         * NCCL's share of the SMs shows, plus the last dK/dV after the loop */
        assert_true(t_kv < a_f && t_kv < b_f && t_kv2 < a_b && t_kv2 < b_b);
        assert_rel(rc.exposed_fwd, (cp - 1) * t_kv * NCCL_SM, 1e-9);
        assert_rel(rc.exposed_bwd, (cp - 1) * t_kv2 * NCCL_SM + t_kv, 1e-9);
        printf("cp %2d s %6d: fwd %.3f ms (kernels %.3f, passes %.3f, exposed %.3f), bwd %.3f ms\n", cp, 8192 * cp,
               1e3 * (rc.kernel_fwd + rc.passes_fwd + rc.exposed_fwd), 1e3 * rc.kernel_fwd, 1e3 * rc.passes_fwd,
               1e3 * rc.exposed_fwd, 1e3 * (rc.kernel_bwd + rc.passes_bwd + rc.exposed_bwd));
    }
}

/* A ring step on a small shape runs at the table's small-shape rate: CP 8 at
 * 16K, TP 8: c = 1024, the later-rank step is q 1024 x kv 2048 with 6
 * heads, measured at 129 / 83 TFLOP/s (cudnn) where the square 16K causal
 * kernel of 48 heads reaches 646 / 504. */
static void test_small_steps_at_table_rate(void **state) {
    (void)state;
    Plan p;
    if (sim_make_plan(&p, "mixtral-8x22b", "dgx-h100", 64, 8, 8, 1, 1, 1, 8)) fail();
    sim_paper_settings(&p);
    p.train.seq_len = 16384;
    SimHw hw;
    sim_hw_init(&hw, &p.cluster, NULL, false);
    double f = 2.0 * 1024 * 2048 * 256 * 6;
    AttnKernel kb = {1024, 2048, 6, 128, 128, ATTN_MASK_NONE, 0};
    assert_rel(attention_kernel_time(&hw, &kb, false), 6 * US + f / 129e12, 1e-9);
    assert_rel(attention_kernel_time(&hw, &kb, true), 6 * US + 2.5 * f / 83e12, 1e-9);
    AttnKernel big = {16384, 16384, 48, 128, 128, ATTN_MASK_CAUSAL, 0};
    double fb = 2.0 * 16384.0 * 16384 / 2 * 256 * 48;
    assert_rel(attention_kernel_time(&hw, &big, false), 6 * US + fb / 646e12, 1e-9);
    /* wave quantisation: 1024 rows x 6 heads = 48 CTAs of 128 rows on 132
     * SMs, a third of the machine; 12 heads fill twice as many SMs, so the
     * model (away from any entry) runs them at nearly twice the rate */
    double e6 = attention_efficiency(&hw, 1024, 2048, 6, 128, ATTN_MASK_NONE, 0, false);
    double e12 = attention_efficiency(&hw, 1024, 2048, 12, 128, ATTN_MASK_NONE, 0, false);
    assert_true(e12 > 1.5 * e6);
    /* backends at this shape: flash2's table says 137 / 145 */
    SimHw hw2;
    sim_hw_init_backend(&hw2, &p.cluster, NULL, false, ATTN_BACKEND_FLASH2);
    assert_rel(attention_kernel_time(&hw2, &kb, true), 6 * US + 2.5 * f / 145e12, 1e-9);
}

/* Ring buffers (TE 2.1, bytes, hand): CP 16, c = 4096, b 1, 6 heads, 1 K/V head:
 *   forward: 16 K/V buffers of 8192*256*2 + 16 outputs of 8192*6*128*2 +
 *            16 fp32 LSEs of 8192*6*4 + the fp64 LSE 8192*6*8 + out 8192*6*128*2
 *            = 67108864 + 201326592 + 3145728 + 393216 + 12582912 = 284557312
 *   backward (CP independent here): 2 x (K/V + dK/dV) 16777216 + dq_, dkv_
 *            (6291456 + 2097152)*2 + dq 12582912 + half copies
 *            (3145728*3)*2 = 65011712 */
static void test_ring_buffers_in_memory(void **state) {
    (void)state;
    Plan p16, p2;
    cp_plan(&p16, 16);
    cp_plan(&p2, 2);
    SimHw hw;
    sim_hw_init(&hw, &p16.cluster, NULL, false);
    SimCtx x;
    sim_ctx_init(&x, &p16, &hw);
    assert_rel(ring_working_bytes(&x), 284557312.0, 1e-12);
    sim_ctx_init(&x, &p2, &hw);
    assert_rel(ring_working_bytes(&x), 65011712.0, 1e-12);
    /* CP 1: no ring */
    Plan p1;
    if (sim_make_plan(&p1, "mixtral-8x22b", "dgx-h100", 8, 8, 1, 1, 1, 1, 8)) fail();
    sim_ctx_init(&x, &p1, &hw);
    assert_true(ring_working_bytes(&x) == 0);
    /* the step's activations hold them: the single stage of the CP 16 plan
     * holds its in-flight layers' activations plus the logits plus the ring */
    SimResult *r = malloc(sizeof *r);
    assert_int_equal(sim_run(&p16, r), 0);
    sim_ctx_init(&x, &p16, &hw);
    double logits = memory_output_activations(&x);
    double layers = 56 * (memory_attention_activations(&x) + memory_moe_activations(&x));
    assert_rel(r->stage_memory[0].activations, layers + logits + 284557312.0, 1e-9);
    free(r);
}

/* Selective recomputation re-runs the forward ring: the recompute time
 * holds the ring's kernels and passes of every layer and micro-batch, its
 * transfers stay CP communication. */
static void test_recompute_reruns_ring(void **state) {
    (void)state;
    Plan p;
    cp_plan(&p, 4);
    p.train.overlap = 0;   /* the ring alone on its NIC (see test_nic_shared_with_gradients) */
    SimResult *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    assert_int_equal(sim_run(&p, a), 0);
    p.train.recompute = RECOMPUTE_SELECTIVE;
    assert_int_equal(sim_run(&p, b), 0);
    SimHw hw;
    sim_hw_init(&hw, &p.cluster, NULL, false);
    SimCtx x;
    sim_ctx_init(&x, &p, &hw);
    RingCost rc;
    ring_cost(&x, 0, &rc);
    double m = x.microbatches, L = 56;
    assert_true(b->breakdown.recompute >= L * m * (rc.kernel_fwd + rc.passes_fwd) * (1 - 1e-9));
    assert_rel(b->breakdown.comm_cp - a->breakdown.comm_cp, L * m * rc.exposed_fwd, 1e-6);
    free(a);
    free(b);
}

/* Longer context at fixed tokens per batch (4M), CP growing with it so each
 * GPU holds 2048 tokens (512 GPUs, TP 4, PP 4, EP 8): the attention share
 * of the step grows, the MFU (megatron convention: causal FLOPs) falls. */
static void test_trend_longer_context(void **state) {
    (void)state;
    double prev_share = 0, prev_mfu = 1;
    for (int cp = 2; cp <= 16; cp *= 2) {
        Plan p;
        if (sim_make_plan(&p, "mixtral-8x22b", "dgx-h100", 512, 4, cp, 4, 1, 1, 8)) fail();
        sim_paper_settings(&p);
        p.train.overlap |= OVERLAP_TP;
        p.train.seq_len = 8192 * cp;
        p.train.global_batch = 4194304 / p.train.seq_len;
        SimResult *r = malloc(sizeof *r);
        assert_int_equal(sim_run(&p, r), 0);
        double share = r->breakdown.compute_attention / r->step_time_s;
        printf("seq %6d cp %2d: attention %.1f%% of the step, CP exposed %.1f%%, MFU legacy %.1f%% megatron %.1f%%\n",
               p.train.seq_len, cp, 100 * share, 100 * r->breakdown.comm_cp / r->step_time_s, 100 * r->mfu_legacy,
               100 * r->mfu_megatron);
        assert_true(r->fits);
        assert_true(share > prev_share);
        assert_true(r->mfu_megatron < prev_mfu);
        prev_share = share;
        prev_mfu = r->mfu_megatron;
        free(r);
    }
}

/* The CP ring's NIC is the one the gradient reduce-scatter uses: with it
 * overlapped, the ring gets what the gradients leave, and its transfer
 * takes longer by 1/share. */
static void test_nic_shared_with_gradients(void **state) {
    (void)state;
    Plan p;
    cp_plan(&p, 4);
    SimHw hw;
    sim_hw_init(&hw, &p.cluster, NULL, false);
    SimCtx x;
    sim_ctx_init(&x, &p, &hw);
    RingCost full, half;
    ring_cost(&x, 0, &full);
    x.cp_link_share_fwd = x.cp_link_share_bwd = 0.5;
    ring_cost(&x, 0, &half);
    assert_rel(half.transfer_fwd, 2 * full.transfer_fwd, 1e-12);
    assert_rel(half.transfer_bwd, 2 * full.transfer_bwd, 1e-12);
    /* in a step: the gradient sync (EDP = 4 over 4 nodes) shares the NIC, so
     * the CP time exceeds that of the same plan without overlapped gradients */
    SimResult *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    assert_int_equal(sim_run(&p, a), 0);
    p.train.overlap &= ~(unsigned)(OVERLAP_GRAD | OVERLAP_PARAM);
    assert_int_equal(sim_run(&p, b), 0);
    assert_true(a->breakdown.comm_cp > b->breakdown.comm_cp);
    free(a);
    free(b);
}

/* The backend comes from the plan, else the cluster, else cudnn; flash2's
 * slower kernels lower the MFU of a long-context plan. */
static void test_backend_choice(void **state) {
    (void)state;
    Plan p;
    cp_plan(&p, 8);
    assert_int_equal(attention_backend_resolve(&p), ATTN_BACKEND_CUDNN);
    p.cluster.attention_backend = ATTN_BACKEND_FA3;
    assert_int_equal(attention_backend_resolve(&p), ATTN_BACKEND_FA3);
    p.train.attention_backend = ATTN_BACKEND_FLASH2;
    assert_int_equal(attention_backend_resolve(&p), ATTN_BACKEND_FLASH2);
    SimResult *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    assert_int_equal(sim_run(&p, a), 0);
    p.train.attention_backend = ATTN_BACKEND_CUDNN;
    assert_int_equal(sim_run(&p, b), 0);
    assert_true(a->mfu < b->mfu);
    free(a);
    free(b);
    expect_bad_input("simulate --model mixtral-8x22b --cluster dgx-h100 --gpus 8 --attention-backend xformers",
                     "--attention-backend: 'xformers'");
}

/* Calibration entries keyed by step shape: at the entry's shape (q 2048 x
 * kv 1024, no mask, 6 heads, cudnn) the kernel runs at the file's rate; an
 * entry of another backend (own) does not touch cudnn's kernels; a bad mask
 * is one line naming the field. */
static void test_calibration_keyed_by_step_shape(void **state) {
    (void)state;
    Calibration *cal = malloc(sizeof *cal);
    MpError err = {{0}};
    if (calibration_load_file("tests/data/calibration-attention-steps.json", cal, &err)) fail_msg("%s", err.msg);
    assert_int_equal(cal->num_attention, 2);
    assert_int_equal(cal->attention[0].q_rows, 2048);
    assert_int_equal(cal->attention[0].kv_rows, 1024);
    assert_int_equal(cal->attention[0].mask, ATTN_MASK_NONE);
    assert_int_equal(cal->attention[0].backend, ATTN_BACKEND_CUDNN);
    assert_int_equal(cal->attention[1].q_rows, 4096);   /* seq: q = kv = seq, causal */
    assert_int_equal(cal->attention[1].mask, ATTN_MASK_CAUSAL);
    Plan p;
    cp_plan(&p, 8);
    SimHw hw, hw0;
    sim_hw_init(&hw, &p.cluster, cal, false);
    sim_hw_init(&hw0, &p.cluster, NULL, false);
    AttnKernel k = {2048, 1024, 6, 128, 128, ATTN_MASK_NONE, 0};
    double f = 2.0 * 2048 * 1024 * 256 * 6;
    assert_rel(attention_kernel_time(&hw, &k, false), 6 * US + f / 200e12, 1e-9);
    assert_rel(attention_kernel_time(&hw, &k, true), 6 * US + 2.5 * f / 100e12, 1e-9);
    AttnKernel c4 = {4096, 4096, 128, 128, 128, ATTN_MASK_CAUSAL, 0};
    assert_rel(attention_kernel_time(&hw, &c4, false), attention_kernel_time(&hw0, &c4, false), 1e-12);
    free(cal);
    expect_bad_input("simulate --model mixtral-8x22b --cluster dgx-h100 --gpus 8 --calibration "
                     "tests/data/bad-calibration-mask.json",
                     "attention[0]: mask: 'sliding' is not causal or none");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_steps_cp_2_to_16),
        cmocka_unit_test(test_small_steps_at_table_rate),
        cmocka_unit_test(test_ring_buffers_in_memory),
        cmocka_unit_test(test_recompute_reruns_ring),
        cmocka_unit_test(test_trend_longer_context),
        cmocka_unit_test(test_nic_shared_with_gradients),
        cmocka_unit_test(test_backend_choice),
        cmocka_unit_test(test_calibration_keyed_by_step_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
