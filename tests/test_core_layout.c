/* test_core_layout.c: the shared layout formulas of core/ (layout.h,
 * schedule.h, flops.h) against values worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/flops.h"
#include "core/layout.h"
#include "core/schedule.h"
#include "test_util.h"

/* DeepSeek-V3: the first 3 of 61 layers dense, the rest MoE; a model without
 * experts is dense everywhere. */
static void test_layer_kind(void **state) {
    (void)state;
    ModelSpec m = test_model("deepseek-v3");
    assert_int_equal(layout_layer_kind(&m, 0), LAYER_DENSE);
    assert_int_equal(layout_layer_kind(&m, 2), LAYER_DENSE);
    assert_int_equal(layout_layer_kind(&m, 3), LAYER_MOE);
    assert_int_equal(layout_layer_kind(&m, 60), LAYER_MOE);
    m.num_experts = 0;
    assert_int_equal(layout_layer_kind(&m, 60), LAYER_DENSE);
}

/* 56 layers, PP 4: even 14 each; split 12/16: stages 12, 14, 14, 16;
 * with VPP 4, 14 layers per rank -> chunks 4, 4, 3, 3; rank 0 (12 layers)
 * -> 3 per chunk.  vs = chunk*PP + rank. */
static void test_vstage_layers(void **state) {
    (void)state;
    Plan p;
    memset(&p, 0, sizeof p);
    p.model = test_model("mixtral-8x22b");
    p.map.pp = 4;
    p.map.vpp = 1;
    for (int r = 0; r < 4; r++) assert_int_equal(layout_vstage_layers(&p, r), 14);
    p.first_stage_layers = 12;
    p.last_stage_layers = 16;
    assert_int_equal(layout_vstage_layers(&p, 0), 12);
    assert_int_equal(layout_vstage_layers(&p, 1), 14);
    assert_int_equal(layout_vstage_layers(&p, 3), 16);
    assert_int_equal(layout_vstage_first_layer(&p, 3), 12 + 14 + 14);
    p.map.vpp = 4;
    /* rank 1: 14 layers over 4 chunks = 4, 4, 3, 3 at vs 1, 5, 9, 13 */
    assert_int_equal(layout_vstage_layers(&p, 1), 4);
    assert_int_equal(layout_vstage_layers(&p, 5), 4);
    assert_int_equal(layout_vstage_layers(&p, 9), 3);
    assert_int_equal(layout_vstage_layers(&p, 13), 3);
    /* rank 0: 12 over 4 = 3 each */
    assert_int_equal(layout_vstage_layers(&p, 0), 3);
    assert_int_equal(layout_vstage_layers(&p, 12), 3);
    /* first layer of vs 5 (chunk 1 of rank 1): vs 0..4 hold 3 + 4 + 4 + 4 + 3 */
    assert_int_equal(layout_vstage_first_layer(&p, 5), 3 + 4 + 4 + 4 + 3);
    int total = 0;
    for (int vs = 0; vs < 16; vs++) total += layout_vstage_layers(&p, vs);
    assert_int_equal(total, 56);
}

/* 1F1B, PP 4, m 6, rank 1: warmup 2 forwards, then F B pairs, then the
 * remaining backwards: F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5. */
static void test_schedule_1f1b(void **state) {
    (void)state;
    PipeSchedule s = {4, 1, 6};
    assert_int_equal(schedule_num_ops(&s), 12);
    assert_int_equal(schedule_warmup(&s, 0), 3);
    assert_int_equal(schedule_warmup(&s, 1), 2);
    assert_int_equal(schedule_warmup(&s, 3), 0);
    const char *want = "F0F1F2B0F3B1F4B2F5B3B4B5";
    char got[64] = "";
    for (int i = 0; i < 12; i++) {
        PipeOp op = schedule_op(&s, 1, i);
        char b[8];
        snprintf(b, sizeof b, "%c%d", op.forward ? 'F' : 'B', op.microbatch);
        strcat(got, b);
        assert_int_equal(op.chunk, 0);
    }
    assert_string_equal(got, want);
    assert_int_equal(schedule_inflight(&s, 0), 4);
    assert_int_equal(schedule_inflight(&s, 3), 1);
    PipeSchedule few = {4, 1, 2};
    assert_int_equal(schedule_inflight(&few, 0), 2);
}

/* Interleaved, PP 2, vpp 2, m 4, rank 0: warmup (2-0-1)*2 + (2-1)*2 = 4;
 * forwards k = 0..7 take chunk (k mod 4)/2 on micro-batch (k/4)*2 + k mod 2:
 *   F c0 m0, F c0 m1, F c1 m0, F c1 m1, | F c0 m2, B c1 m0, F c0 m3, B c1 m1,
 *   F c1 m2, B c0 m0, F c1 m3, B c0 m1, | B c1 m2, B c1 m3, B c0 m2, B c0 m3. */
static void test_schedule_interleaved(void **state) {
    (void)state;
    PipeSchedule s = {2, 2, 4};
    assert_int_equal(schedule_warmup(&s, 0), 4);
    assert_int_equal(schedule_warmup(&s, 1), 2);
    const char *want = "F00F01F10F11F02B10F03B11F12B00F13B01B12B13B02B03";
    char got[96] = "";
    for (int i = 0; i < schedule_num_ops(&s); i++) {
        PipeOp op = schedule_op(&s, 0, i);
        char b[8];
        snprintf(b, sizeof b, "%c%d%d", op.forward ? 'F' : 'B', op.chunk, op.microbatch);
        strcat(got, b);
    }
    assert_string_equal(got, want);
    assert_int_equal(schedule_inflight(&s, 0), 5);
}

/* CP 4, s 16: chunks of 2 tokens; rank 0 holds chunks 0 and 7, rank 2
 * chunks 2 and 5. */
static void test_cp_chunks_and_positions(void **state) {
    (void)state;
    int ch[2];
    layout_cp_chunks(4, 0, ch);
    assert_int_equal(ch[0], 0);
    assert_int_equal(ch[1], 7);
    layout_cp_chunks(4, 2, ch);
    assert_int_equal(ch[0], 2);
    assert_int_equal(ch[1], 5);
    int pos[4];
    MpError err = {{0}};
    assert_int_equal(layout_cp_position_ids(16, 4, 0, pos, &err), 0);
    int want0[4] = {0, 1, 14, 15};
    assert_memory_equal(pos, want0, sizeof want0);
    assert_int_equal(layout_cp_position_ids(16, 4, 2, pos, &err), 0);
    int want2[4] = {4, 5, 10, 11};
    assert_memory_equal(pos, want2, sizeof want2);
    /* every position held exactly once over the ranks */
    int seen[16] = {0};
    for (int r = 0; r < 4; r++) {
        layout_cp_position_ids(16, 4, r, pos, &err);
        for (int i = 0; i < 4; i++) seen[pos[i]]++;
    }
    for (int i = 0; i < 16; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(layout_cp_position_ids(12, 4, 0, pos, &err), -1);
    assert_non_null(strstr(err.msg, "seq"));
}

/* CP 4, s 32768: c = 4096.  Rank 1: step 0 own 8192 x 8192 causal; step 1
 * K/V of rank 0 (i <= r): 8192 x 4096 no mask; steps 2, 3 K/V of ranks 3, 2
 * (i > r): 4096 x 8192 no mask.  Every step 2*c^2 = 33554432 pairs, the
 * four together s^2/2/CP. */
static void test_cp_ring_steps(void **state) {
    (void)state;
    CpRingStep st[16];
    MpError err = {{0}};
    assert_int_equal(layout_cp_ring_steps(32768, 4, 1, st, &err), 0);
    assert_int_equal(st[0].q_rows, 8192);
    assert_int_equal(st[0].kv_rows, 8192);
    assert_int_equal(st[0].mask, ATTN_MASK_CAUSAL);
    assert_int_equal(st[1].q_rows, 8192);
    assert_int_equal(st[1].kv_rows, 4096);
    assert_int_equal(st[1].mask, ATTN_MASK_NONE);
    assert_int_equal(st[1].kv_from, 0);
    assert_int_equal(st[2].q_rows, 4096);
    assert_int_equal(st[2].kv_rows, 8192);
    assert_int_equal(st[2].kv_from, 3);
    assert_int_equal(st[3].kv_from, 2);
    double total = 0;
    for (int i = 0; i < 4; i++) {
        assert_rel(st[i].pairs, 33554432.0, 1e-12);
        total += st[i].pairs;
    }
    assert_rel(total, 32768.0 * 32768 / 2 / 4, 1e-12);
    /* the pairs of each step are those of the zig-zag chunks it covers:
     * rank 1 holds chunks 1 and 6 (positions 4096.. and 24576..); step 2
     * uses rank 3's chunks 3 and 4, of which only chunk 6 (queries) sees
     * both fully */
    double p = flops_attention_pairs(6 * 4096, 4096, 3 * 4096, 4096, true) +
               flops_attention_pairs(6 * 4096, 4096, 4 * 4096, 4096, true) +
               flops_attention_pairs(1 * 4096, 4096, 3 * 4096, 4096, true) +
               flops_attention_pairs(1 * 4096, 4096, 4 * 4096, 4096, true);
    assert_rel(p, st[2].pairs, 1e-12);
    /* cp 1: one causal step over the sequence */
    assert_int_equal(layout_cp_ring_steps(4096, 1, 0, st, &err), 0);
    assert_int_equal(st[0].q_rows, 4096);
    assert_rel(st[0].pairs, 4096.0 * 4096 / 2, 1e-12);
}

/* pairs and FLOPs by hand */
static void test_flops_helpers(void **state) {
    (void)state;
    /* square on the diagonal: n^2/2; wholly after its keys: all; before: none */
    assert_rel(flops_attention_pairs(0, 1024, 0, 1024, true), 524288.0, 1e-12);
    assert_rel(flops_attention_pairs(2048, 1024, 0, 1024, true), 1048576.0, 1e-12);
    assert_true(flops_attention_pairs(0, 1024, 2048, 1024, true) == 0);
    assert_rel(flops_attention_pairs(0, 1024, 2048, 1024, false), 1048576.0, 1e-12);
    /* 1024 queries at 512.., keys 0..1023: rows 512..1023 see 512..1023 keys
     * (area 512*512 + 512^2/2), then all 1024 for the other 512 rows */
    assert_rel(flops_attention_pairs(512, 1024, 0, 1024, true), 512.0 * 512 + 0.5 * 512 * 512 + 512.0 * 1024, 1e-12);
    /* sliding window 128 over 4096: 4096*128 - 128^2/2 */
    assert_rel(flops_window_pairs(4096, 128), 4096.0 * 128 - 8192, 1e-12);
    assert_rel(flops_window_pairs(4096, 0), 4096.0 * 4096 / 2, 1e-12);
    /* Mixtral 8x22B core at s 4096, one head-set: 2 * s^2/2 * 256 * 48 */
    assert_rel(flops_attention_core(4096.0 * 4096 / 2, 48, 128, 128), 2.0 * 8388608 * 256 * 48, 1e-12);
    /* SwiGLU MLP 8192 x 6144 x 16384: 3 GEMMs of 2*m*n*k */
    assert_rel(flops_mlp(8192, 6144, 16384, true), 3 * 2.0 * 8192 * 6144 * 16384, 1e-12);
    assert_rel(flops_mlp(8192, 6144, 16384, false), 2 * 2.0 * 8192 * 6144 * 16384, 1e-12);
    /* experts: 4096 tokens top-2 -> 8192 rows */
    assert_rel(flops_experts(4096, 2, 6144, 16384, true), flops_mlp(8192, 6144, 16384, true), 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_kind),
        cmocka_unit_test(test_vstage_layers),
        cmocka_unit_test(test_schedule_1f1b),
        cmocka_unit_test(test_schedule_interleaved),
        cmocka_unit_test(test_cp_chunks_and_positions),
        cmocka_unit_test(test_cp_ring_steps),
        cmocka_unit_test(test_flops_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
