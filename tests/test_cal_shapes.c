/* test_cal_shapes.c: the attention kernels a calibration measures for the
 * plans it calibrates for (simulator/cal_shapes.c on core/layout.h's ring
 * steps), against hand-worked shapes, and the calibration file written from
 * them picked up by the simulator at exactly those kernels:
 *   - Mixtral-8x22B at seq 65536, CP 8, TP 4, mbs 1: the four kernels;
 *   - every step of every rank (CP 2..16) is one of the three ring shapes;
 *   - the README's context sweep (calibrations/plans/, 16K CP2 .. 128K
 *     CP16, TP 4): seven distinct kernels;
 *   - the entries' JSON, loaded by calibration_load_file, sets each ring
 *     step's kernel (and the CP 1 kernel) to the measured rate, and a plan
 *     on another backend ignores them;
 *   - a sequence that does not split into 2*CP chunks is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/layout.h"
#include "simulator/cal_shapes.h"
#include "simulator/calibration.h"
#include "simulator/sim_internal.h"
#include "sim_plans.h"

#define US 1e-6

/* Mixtral 8x22B on 512 GPUs, TP 4, CP cp, PP 4, EP 8, seq 8192*cp, mbs 1
 * (the README's context sweep, calibrations/plans/) */
static void sweep_plan(Plan *p, int cp) {
    if (sim_make_plan(p, "mixtral-8x22b", "dgx-h100", 512, 4, cp, 4, 1, 1, 8)) fail();
    sim_paper_settings(p);
    p->train.seq_len = 8192 * cp;
    p->train.global_batch = 4194304 / (8192 * cp);
    MpError err = {{0}};
    if (plan_validate(p, &err)) fail_msg("%s", err.msg);
}

static void test_mixtral_8x22b_64k_cp8_tp4(void **state) {
    (void)state;
    Plan p;
    sweep_plan(&p, 8);
    CalAttnShape sh[8];
    int n = 0;
    MpError err = {{0}};
    assert_int_equal(cal_attention_shapes_add(&p, sh, 8, &n, &err), 0);
    assert_int_equal(n, 4);
    /* by hand: 48 query heads / TP 4 = 12 per GPU, 8 K/V groups / 4 = 2,
     * head dim 128, mbs 1; c = 65536 / (2 * 8) = 4096 tokens per chunk */
    for (int i = 0; i < n; i++) {
        assert_int_equal(sh[i].batch, 1);
        assert_int_equal(sh[i].heads, 12);
        assert_int_equal(sh[i].kv_heads, 2);
        assert_int_equal(sh[i].d_qk, 128);
        assert_int_equal(sh[i].d_v, 128);
    }
    /* CP 1, the full sequence: q 65536 x kv 65536 causal; FLOPs 2 * 65536^2/2
     * pairs * (128 + 128) * 12 = 4,294,967,296 * 3072 = 13,194,139,533,312 */
    assert_int_equal(sh[0].role, CAL_KERNEL_FULL);
    assert_int_equal(sh[0].q_rows, 65536);
    assert_int_equal(sh[0].kv_rows, 65536);
    assert_int_equal(sh[0].mask, ATTN_MASK_CAUSAL);
    assert_true(sh[0].fwd_flops == 13194139533312.0);
    /* ring step 0 (own K/V): q 2c x kv 2c = 8192 x 8192 causal; pairs
     * 8192^2/2 = 33,554,432; FLOPs 2 * 33,554,432 * 256 * 12 = 206,158,430,208 */
    assert_int_equal(sh[1].role, CAL_KERNEL_RING_DIAGONAL);
    assert_int_equal(sh[1].q_rows, 8192);
    assert_int_equal(sh[1].kv_rows, 8192);
    assert_int_equal(sh[1].mask, ATTN_MASK_CAUSAL);
    assert_true(sh[1].fwd_flops == 206158430208.0);
    /* an earlier rank's K/V: both local chunks see its first chunk, q 2c x
     * kv c = 8192 x 4096, no mask; 33,554,432 pairs, the same FLOPs */
    assert_int_equal(sh[2].role, CAL_KERNEL_RING_EARLIER);
    assert_int_equal(sh[2].q_rows, 8192);
    assert_int_equal(sh[2].kv_rows, 4096);
    assert_int_equal(sh[2].mask, ATTN_MASK_NONE);
    assert_true(sh[2].fwd_flops == 206158430208.0);
    /* a later rank's K/V: the local second chunk sees both its chunks, q c x
     * kv 2c = 4096 x 8192, no mask, the same FLOPs */
    assert_int_equal(sh[3].role, CAL_KERNEL_RING_LATER);
    assert_int_equal(sh[3].q_rows, 4096);
    assert_int_equal(sh[3].kv_rows, 8192);
    assert_int_equal(sh[3].mask, ATTN_MASK_NONE);
    assert_true(sh[3].fwd_flops == 206158430208.0);
    assert_string_equal(sh[2].name, "mixtral-8x22b s65536 tp4 cp8 mbs1 ring-earlier");
    /* adding the same plan again adds nothing */
    assert_int_equal(cal_attention_shapes_add(&p, sh, 8, &n, &err), 0);
    assert_int_equal(n, 4);
    /* too little room: an error naming the limit */
    CalAttnShape two[2];
    int m = 0;
    assert_int_equal(cal_attention_shapes_add(&p, two, 2, &m, &err), -1);
    assert_non_null(strstr(err.msg, "more than 2 distinct attention kernels"));
}

/* every step of every CP rank has one of the three ring shapes: so the
 * calibration's three kernels cover the ring the simulator prices */
static void test_every_step_is_one_of_the_shapes(void **state) {
    (void)state;
    MpError err = {{0}};
    for (int cp = 2; cp <= 16; cp++) {
        int seq = 2 * cp * 1024;   /* c = 1024 */
        CpRingStep sh[CP_STEP_SHAPES], st[16];
        assert_int_equal(layout_cp_step_shapes(seq, cp, sh, &err), 3);
        assert_int_equal(sh[CP_STEP_DIAGONAL].q_rows, 2048);
        assert_int_equal(sh[CP_STEP_EARLIER].kv_rows, 1024);
        assert_int_equal(sh[CP_STEP_LATER].q_rows, 1024);
        int seen[3] = {0};
        for (int r = 0; r < cp; r++) {
            assert_int_equal(layout_cp_ring_steps(seq, cp, r, st, &err), 0);
            for (int i = 0; i < cp; i++) {
                /* which rank's K/V: own, earlier, later */
                int kind = st[i].kv_from == r ? CP_STEP_DIAGONAL : st[i].kv_from < r ? CP_STEP_EARLIER : CP_STEP_LATER;
                assert_int_equal(st[i].q_rows, sh[kind].q_rows);
                assert_int_equal(st[i].kv_rows, sh[kind].kv_rows);
                assert_int_equal(st[i].mask, sh[kind].mask);
                assert_true(st[i].pairs == sh[kind].pairs);
                seen[kind]++;
            }
        }
        /* CP diagonal steps; the CP(CP-1) others split evenly: rank r has r
         * earlier and CP-1-r later ones, sum CP(CP-1)/2 each */
        assert_int_equal(seen[CP_STEP_DIAGONAL], cp);
        assert_int_equal(seen[CP_STEP_EARLIER], cp * (cp - 1) / 2);
        assert_int_equal(seen[CP_STEP_LATER], cp * (cp - 1) / 2);
    }
    /* cp 1: one shape, the full sequence */
    CpRingStep one[CP_STEP_SHAPES];
    assert_int_equal(layout_cp_step_shapes(4096, 1, one, &err), 1);
    assert_int_equal(one[0].q_rows, 4096);
    assert_int_equal(one[0].mask, ATTN_MASK_CAUSAL);
    /* seq not a multiple of 2*CP */
    assert_int_equal(layout_cp_step_shapes(4100, 8, one, &err), -1);
    assert_non_null(strstr(err.msg, "seq"));
}

/* The four plans of calibrations/plans/ (the README's context sweep):
 * c = 8192 CP / (2 CP) = 4096 at every point, so the ring's three kernels
 * are shared (8192 x 8192 causal, 8192 x 4096, 4096 x 8192), plus one CP 1
 * kernel per length (16384^2 .. 131072^2 causal): 7 kernels. */
static void test_context_sweep_plans(void **state) {
    (void)state;
    static const char *files[] = {"calibrations/plans/mixtral-8x22b-s16k-tp4-cp2.json",
                                  "calibrations/plans/mixtral-8x22b-s32k-tp4-cp4.json",
                                  "calibrations/plans/mixtral-8x22b-s64k-tp4-cp8.json",
                                  "calibrations/plans/mixtral-8x22b-s128k-tp4-cp16.json"};
    CalAttnShape sh[16];
    int n = 0;
    MpError err = {{0}};
    for (int i = 0; i < 4; i++) {
        Plan p;
        if (plan_load_file(files[i], &p, &err)) fail_msg("%s", err.msg);
        assert_int_equal(p.map.cp, 2 << i);
        assert_int_equal(cal_attention_shapes_add(&p, sh, 16, &n, &err), 0);
    }
    assert_int_equal(n, 7);
    const int want[7][3] = {{16384, 16384, ATTN_MASK_CAUSAL}, {8192, 8192, ATTN_MASK_CAUSAL},
                            {8192, 4096, ATTN_MASK_NONE},     {4096, 8192, ATTN_MASK_NONE},
                            {32768, 32768, ATTN_MASK_CAUSAL}, {65536, 65536, ATTN_MASK_CAUSAL},
                            {131072, 131072, ATTN_MASK_CAUSAL}};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(sh[i].q_rows, want[i][0]);
        assert_int_equal(sh[i].kv_rows, want[i][1]);
        assert_int_equal(sh[i].mask, want[i][2]);
        assert_int_equal(sh[i].heads * sh[i].batch, 12);
    }
}

/* seconds of one kernel of `flops` forward FLOPs at `tflops` (the
 * simulator's 6 us launch included) */
static double at_rate(double flops, double tflops) { return 6 * US + flops / (tflops * 1e12); }

static void close_rel(double got, double want) {
    if (fabs(got - want) > 1e-9 * fabs(want)) fail_msg("got %.12g, want %.12g", got, want);
}

/* Writes a calibration file with one cudnn entry per kernel of the 64K CP8
 * plan (through cal_attention_entry_json, times chosen for round rates),
 * loads it, and prices the plan's ring with it. */
static void test_calibration_picked_up_for_those_steps(void **state) {
    (void)state;
    Plan p;
    sweep_plan(&p, 8);
    CalAttnShape sh[4];
    int n = 0;
    MpError err = {{0}};
    assert_int_equal(cal_attention_shapes_add(&p, sh, 4, &n, &err), 0);
    /* TFLOP/s forward, backward per kernel: full, diagonal, earlier, later */
    const double rate[4][2] = {{500, 400}, {300, 200}, {250, 150}, {100, 80}};
    char path[] = "/tmp/test_cal_shapes_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"device\": \"test\", \"attention\": [");
    for (int i = 0; i < n; i++) {
        char entry[512];
        double fwd_s = sh[i].fwd_flops / (rate[i][0] * 1e12), bwd_s = 2.5 * sh[i].fwd_flops / (rate[i][1] * 1e12);
        assert_int_equal(cal_attention_entry_json(&sh[i], ATTN_BACKEND_CUDNN, fwd_s, bwd_s, entry, sizeof entry, &err), 0);
        fprintf(f, "%s\n %s", i ? "," : "", entry);
    }
    fprintf(f, "]}\n");
    fclose(f);
    static Calibration cal;
    int rc = calibration_load_file(path, &cal, &err);
    unlink(path);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(cal.num_attention, 4);
    /* the entries as written: keys and rates */
    assert_int_equal(cal.attention[2].q_rows, 8192);
    assert_int_equal(cal.attention[2].kv_rows, 4096);
    assert_int_equal(cal.attention[2].mask, ATTN_MASK_NONE);
    assert_int_equal(cal.attention[2].backend, ATTN_BACKEND_CUDNN);
    assert_int_equal(cal.attention[2].heads, 12);
    assert_int_equal(cal.attention[2].kv_heads, 2);
    assert_true(cal.attention[2].fwd_tflops == 250 && cal.attention[2].bwd_tflops == 150);
    assert_string_equal(cal.attention[3].name, "mixtral-8x22b s65536 tp4 cp8 mbs1 ring-later");

    SimHw hw, hw0;
    sim_hw_init(&hw, &p.cluster, &cal, false);
    sim_hw_init(&hw0, &p.cluster, NULL, false);
    assert_int_equal(hw.attn_backend, ATTN_BACKEND_CUDNN);
    /* each kernel at exactly its entry's rate: 6 us + FLOPs / rate (the
     * ring's kernels: 206,158,430,208 forward FLOPs each, above) */
    for (int i = 0; i < 4; i++) {
        AttnKernel k = {sh[i].q_rows, sh[i].kv_rows, 12, 128, 128, sh[i].mask, 0};
        close_rel(attention_kernel_time(&hw, &k, false), at_rate(sh[i].fwd_flops, rate[i][0]));
        close_rel(attention_kernel_time(&hw, &k, true), at_rate(2.5 * sh[i].fwd_flops, rate[i][1]));
        /* and not what the table alone gives */
        assert_true(fabs(attention_kernel_time(&hw0, &k, false) - at_rate(sh[i].fwd_flops, rate[i][0])) > 1e-4);
    }
    /* the plan's ring: step 0 at 300 / 200, then 7 steps at the slower kind,
     * the later-rank step (100 / 80 against 250 / 150; its passes are
     * smaller, so the kernel decides): 0.6872 + 7 * 2.0616 ms forward */
    double step_f = 206158430208.0;
    SimCtx x;
    sim_ctx_init(&x, &p, &hw);
    RingCost r;
    ring_cost(&x, 0, &r);
    assert_int_equal(r.kernels, 8);
    close_rel(r.kernel_fwd, at_rate(step_f, 300) + 7 * at_rate(step_f, 100));
    close_rel(r.kernel_bwd, at_rate(2.5 * step_f, 200) + 7 * at_rate(2.5 * step_f, 80));
    /* the same mapping at CP 1 runs the full-sequence kernel at 500 / 400 */
    Plan p1 = p;
    p1.map.cp = 1;
    p1.map.world = 64;
    SimCtx x1;
    sim_ctx_init(&x1, &p1, &hw);
    ring_cost(&x1, 0, &r);
    close_rel(r.kernel_fwd, at_rate(13194139533312.0, 500));
    close_rel(r.kernel_bwd, at_rate(2.5 * 13194139533312.0, 400));
    /* a plan on another backend (flash2) ignores the cudnn entries */
    SimHw hwf, hwf0;
    sim_hw_init_backend(&hwf, &p.cluster, &cal, false, ATTN_BACKEND_FLASH2);
    sim_hw_init_backend(&hwf0, &p.cluster, NULL, false, ATTN_BACKEND_FLASH2);
    AttnKernel kb = {4096, 8192, 12, 128, 128, ATTN_MASK_NONE, 0};
    assert_true(attention_kernel_time(&hwf, &kb, false) == attention_kernel_time(&hwf0, &kb, false));
}

/* a plan whose sequence does not split into 2*CP chunks has no ring steps:
 * the simulator refuses it (it used to price fractional chunks) */
static void test_simulate_refuses_partial_chunks(void **state) {
    (void)state;
    Plan p;
    sweep_plan(&p, 8);
    p.train.seq_len = 65536 + 8;   /* 65544 = 16 * 4096 + 8 */
    static SimResult r;
    SimOptions opt = {0};
    MpError err = {{0}};
    assert_int_equal(simulate_step(&p, NULL, &opt, &r, &err), -1);
    assert_non_null(strstr(err.msg, "seq: 65544 is not divisible by 2*cp = 16"));
    double t[64], first = 0, last = 0;
    assert_int_equal(simulate_layer_times(&p, NULL, t, 64, &first, &last, &err), -1);
    assert_non_null(strstr(err.msg, "seq: 65544"));
}

static void test_entry_json_refuses_bad_times(void **state) {
    (void)state;
    Plan p;
    sweep_plan(&p, 2);
    CalAttnShape sh[4];
    int n = 0;
    MpError err = {{0}};
    assert_int_equal(cal_attention_shapes_add(&p, sh, 4, &n, &err), 0);
    char buf[512];
    assert_int_equal(cal_attention_entry_json(&sh[0], ATTN_BACKEND_OWN, 0, 1, buf, sizeof buf, &err), -1);
    assert_non_null(strstr(err.msg, "not positive"));
    assert_int_equal(cal_attention_entry_json(&sh[0], ATTN_BACKEND_OWN, 1, NAN, buf, sizeof buf, &err), -1);
    assert_int_equal(cal_attention_entry_json(&sh[0], ATTN_BACKEND_OWN, 1, 1, buf, 16, &err), -1);
    assert_non_null(strstr(err.msg, "longer than 16 bytes"));
    /* 16384^2/2 = 134,217,728 pairs; * 2 * 256 * 12 = 824,633,720,832 FLOPs
     * in 1 s: 0.82463 TFLOP/s; backward 2.5x in 2 s: 1.0308 */
    assert_int_equal(cal_attention_entry_json(&sh[0], ATTN_BACKEND_OWN, 1, 2, buf, sizeof buf, &err), 0);
    assert_non_null(strstr(buf, "\"q_rows\": 16384, \"kv_rows\": 16384, \"mask\": \"causal\", \"backend\": \"own\""));
    assert_non_null(strstr(buf, "\"fwd_tflops\": 0.82463, \"bwd_tflops\": 1.0308}"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixtral_8x22b_64k_cp8_tp4),
        cmocka_unit_test(test_every_step_is_one_of_the_shapes),
        cmocka_unit_test(test_context_sweep_plans),
        cmocka_unit_test(test_calibration_picked_up_for_those_steps),
        cmocka_unit_test(test_simulate_refuses_partial_chunks),
        cmocka_unit_test(test_entry_json_refuses_bad_times),
    };
    return cmocka_run_group_tests_name("cal_shapes", tests, NULL, NULL);
}
