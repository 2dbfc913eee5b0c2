/* test_plan.c: plan JSON load, validation rules, stage layers, round trip,
 * and the TrainConfig names/overlap parser. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

static void assert_contains(const char *msg, const char *text) {
    if (!strstr(msg, text)) { print_error("message '%s' lacks '%s'\n", msg, text); fail(); }
}

static Plan load_text(const char *text) {
    Plan p;
    MpError err = {{0}};
    int rc = plan_from_json_text(text, "plan.json", &p, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    return p;
}

static void expect_plan_error(const char *text, const char *want) {
    Plan p;
    MpError err = {{0}};
    int rc = plan_from_json_text(text, "plan.json", &p, &err);
    if (rc == 0) print_error("accepted: %s\n", text);
    assert_int_equal(rc, -1);
    assert_contains(err.msg, want);
}

static void test_load_file(void **state) {
    (void)state;
    Plan p;
    MpError err = {{0}};
    int rc = plan_load_file("tests/data/plan-mixtral-128.json", &p, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(p.model.name, "mixtral-8x22b");
    assert_string_equal(p.cluster.name, "dgx-h100");
    assert_int_equal(p.map.world, 128);
    assert_int_equal(p.map.dp, 128 / (2 * 1 * 8));    /* 8 */
    assert_int_equal(p.map.edp, 128 / (1 * 8 * 8));   /* 2 */
    assert_true(p.train.capacity_factor == 1.0);
    assert_int_equal(p.train.flops, FLOPS_LEGACY);
    assert_int_equal(p.train.overlap, OVERLAP_GRAD | OVERLAP_PARAM);
    assert_true(p.train.memory_reserve_bytes == 4.0 * 1073741824.0);
    for (int s = 0; s < 8; s++) assert_int_equal(plan_stage_layers(&p, s), 56 / 8);
    assert_int_equal(plan_load_file("tests/data/bad-plan-gbs.json", &p, &err), -1);
    assert_string_equal(err.msg, "tests/data/bad-plan-gbs.json: gbs: 250 is not divisible by mbs*dp = 1*8 = 8");
}

static void test_defaults(void **state) {
    (void)state;
    Plan p = load_text("{\"model\": \"mixtral-8x7b\", \"cluster\": \"dgx-h200\", \"gpus\": 4}");
    TrainConfig d;
    train_config_default(&d);
    assert_int_equal(d.seq_len, 4096);
    assert_int_equal(d.micro_batch, 1);
    assert_int_equal(d.global_batch, 256);
    assert_true(d.capacity_factor == 0.0 && d.imbalance == 1.0);
    assert_int_equal(d.opt_sharding, OPT_SHARD_DISTRIBUTED);
    assert_int_equal(d.flops, FLOPS_MEGATRON);
    assert_memory_equal(&p.train, &d, sizeof d);
    assert_int_equal(p.map.tp, 1);
    assert_int_equal(p.map.dp, 4);
    assert_int_equal(p.map.edp, 4);
    assert_int_equal(plan_stage_layers(&p, 0), 32);
}

static const char *const FULL =
    "{\"model\": \"deepseek-v3\", \"cluster\": \"dgx-h100\", \"gpus\": 256, \"tp\": 2, \"cp\": 2, "
    "\"pp\": 4, \"vpp\": 1, \"etp\": 1, \"ep\": 4, \"order\": \"tp-cp-ep-pp-dp\", "
    "\"first_stage_layers\": 13, \"last_stage_layers\": 14, \"seq\": 8192, \"mbs\": 2, \"gbs\": 512, "
    "\"precision\": \"fp8\", \"dispatcher\": \"allgather\", \"capacity_factor\": 1.25, "
    "\"imbalance\": 1.3, \"recompute\": \"selective\", \"optimizer_sharding\": \"full\", "
    "\"overlap\": \"tp,ep,shared-expert\", \"flops\": \"megatron\", \"memory_reserve_gib\": 2.5}";

static void test_round_trip(void **state) {
    (void)state;
    Plan a = load_text(FULL);
    assert_int_equal(a.map.dp, 256 / (2 * 2 * 4));   /* 16 */
    assert_int_equal(a.map.edp, 256 / (1 * 4 * 4));  /* 16: pp-before-dp needs edp == dp */
    /* uneven split: 13 | (61 - 13 - 14) / 2 = 17 | 17 | 14 */
    assert_int_equal(plan_stage_layers(&a, 0), 13);
    assert_int_equal(plan_stage_layers(&a, 1), 17);
    assert_int_equal(plan_stage_layers(&a, 2), 17);
    assert_int_equal(plan_stage_layers(&a, 3), 14);
    assert_int_equal(plan_stage_layers(&a, 4), 0);
    char *json = plan_to_json_string(&a);
    assert_non_null(json);
    Plan b = load_text(json);
    free(json);
    assert_string_equal(a.model_ref, b.model_ref);
    assert_string_equal(a.cluster_ref, b.cluster_ref);
    assert_memory_equal(&a.map, &b.map, sizeof a.map);
    assert_memory_equal(&a.train, &b.train, sizeof a.train);
    assert_int_equal(a.first_stage_layers, b.first_stage_layers);
    assert_int_equal(a.last_stage_layers, b.last_stage_layers);
    assert_int_equal(b.train.precision, PRECISION_FP8);
    assert_int_equal(b.train.dispatcher, DISPATCHER_ALLGATHER);
    assert_int_equal(b.train.recompute, RECOMPUTE_SELECTIVE);
    assert_int_equal(b.train.opt_sharding, OPT_SHARD_FULL);
    assert_int_equal(b.train.overlap, OVERLAP_TP | OVERLAP_EP | OVERLAP_SHARED_EXPERT);
    assert_true(b.train.imbalance == 1.3 && b.train.capacity_factor == 1.25);
    assert_true(b.train.memory_reserve_bytes == 2.5 * 1073741824.0);
}

#define P(extra) "{\"model\": \"mixtral-8x22b\", \"cluster\": \"dgx-h100\", \"gpus\": 64" extra "}"

static void test_plan_errors(void **state) {
    (void)state;
    expect_plan_error("{\"cluster\": \"dgx-h100\", \"gpus\": 8}", "plan.json: model: missing");
    expect_plan_error("{\"model\": \"mixtral-8x22b\", \"gpus\": 8}", "plan.json: cluster: missing");
    expect_plan_error("{\"model\": \"mixtral-8x22b\", \"cluster\": \"dgx-h100\"}", "plan.json: gpus: missing");
    expect_plan_error("{\"model\": \"foo\", \"cluster\": \"dgx-h100\", \"gpus\": 8}",
                      "plan.json: model: unknown model 'foo' (known: dbrx,");
    expect_plan_error("{\"model\": \"mixtral-8x22b\", \"cluster\": \"tpu\", \"gpus\": 8}",
                      "plan.json: cluster: unknown cluster 'tpu'");
    expect_plan_error("{\"model\": \"tests/data/bad-kv-groups.json\", \"cluster\": \"dgx-h100\", \"gpus\": 8}",
                      "plan.json: model: tests/data/bad-kv-groups.json: num_kv_groups: 6 does not divide num_heads 32");
    expect_plan_error(P(", \"tp\": 0"), "plan.json: tp: must be a positive integer, got 0");
    expect_plan_error(P(", \"tp\": 3"), "plan.json: tp:");
    expect_plan_error(P(", \"ep\": 16, \"pp\": 4"), "plan.json: ep:");   /* 16*4 = 64 divides 64, but 8 experts % 16 */
    /* 64 GPUs, tp 1 -> dp 64; gbs 96 % 64 */
    expect_plan_error(P(", \"gbs\": 96"), "plan.json: gbs: 96 is not divisible by mbs*dp = 1*64 = 64");
    expect_plan_error(P(", \"gbs\": 0"), "plan.json: gbs: must be positive, got 0");
    expect_plan_error(P(", \"mbs\": 3, \"gbs\": 256"), "plan.json: gbs: 256 is not a multiple of mbs 3");
    /* 48 heads: tp 32 does not divide them (64 GPUs / 32 = dp 2) */
    expect_plan_error(P(", \"tp\": 32"), "plan.json: tp: 32 does not divide num_heads 48");
    /* 56 layers over pp 16 */
    expect_plan_error(P(", \"pp\": 16"), "plan.json: pp: num_layers 56 is not divisible by pp*vpp = 16*1");
    expect_plan_error(P(", \"pp\": 4, \"vpp\": 3"), "plan.json: pp: num_layers 56 is not divisible by pp*vpp = 4*3");
    expect_plan_error(P(", \"cp\": 2, \"seq\": 4098"), "plan.json: seq: 4098 is not divisible by 2*cp = 4");
    expect_plan_error(P(", \"tp\": 8, \"seq\": 4100"), "plan.json: seq: 4100/cp = 4100 is not divisible by tp 8");
    expect_plan_error(P(", \"imbalance\": 0.5"), "plan.json: imbalance: must be >= 1");
    expect_plan_error(P(", \"capacity_factor\": -1"), "plan.json: capacity_factor: must be >= 0");
    /* mixtral-8x22b: 8 experts, top-2: at most 8/2 = 4 times the mean load (found by tests/fuzz) */
    expect_plan_error(P(", \"imbalance\": 4.5"), "plan.json: imbalance: 4.5 is more than num_experts/top_k = 4");
    expect_plan_error(P(", \"imbalance\": 1.51e308"), "plan.json: imbalance: 1.51e+308 is more than");
    expect_plan_error(P(", \"capacity_factor\": 5"), "plan.json: capacity_factor: 5 is more than num_experts/top_k = 4");
    expect_plan_error(P(", \"memory_reserve_gib\": -1"), "plan.json: memory_reserve_gib: must be >= 0");
    expect_plan_error(P(", \"overlap\": \"grad,magic\""), "plan.json: overlap: unknown word 'magic'");
    expect_plan_error(P(", \"recompute\": \"some\""), "plan.json: recompute: 'some' is not none, selective or full");
    expect_plan_error(P(", \"flops\": \"mfu\""), "plan.json: flops: 'mfu' is not legacy or megatron");
    expect_plan_error(P(", \"order\": \"dp-pp\""), "plan.json: order: 'dp-pp' is not tp-cp-ep-dp-pp or tp-cp-ep-pp-dp");
    expect_plan_error(P(", \"precision\": \"fp4\""), "plan.json: precision: 'fp4' is not bf16 or fp8");
    expect_plan_error(P(", \"seq\": \"long\""), "plan.json: seq: expected an integer, got a string");
    /* uneven splits */
    expect_plan_error(P(", \"first_stage_layers\": 4"), "plan.json: first_stage_layers: an uneven split needs pp > 1");
    expect_plan_error(P(", \"pp\": 2, \"first_stage_layers\": 20, \"last_stage_layers\": 30"),
                      "plan.json: first_stage_layers: 20 + last_stage_layers 30 must equal num_layers 56 when pp is 2");
    expect_plan_error(P(", \"pp\": 4, \"first_stage_layers\": 6"),
                      "plan.json: first_stage_layers: the 50 layers left by first_stage_layers 6 and last_stage_layers 0 "
                      "do not split evenly over 3 middle stages x vpp 1");
    expect_plan_error(P(", \"pp\": 4, \"first_stage_layers\": -1"), "plan.json: first_stage_layers: must be >= 0");
    expect_plan_error("[]", "plan.json: expected a JSON object at the top level");
    expect_plan_error("{\"model\": ", "plan.json: not JSON: unexpected end of input");
}

/* pp 4, first 11: (56 - 11) / 3 = 15 per later stage. */
static void test_uneven_first_only(void **state) {
    (void)state;
    Plan p = load_text(P(", \"pp\": 4, \"first_stage_layers\": 11"));
    assert_int_equal(plan_stage_layers(&p, 0), 11);
    for (int s = 1; s < 4; s++) assert_int_equal(plan_stage_layers(&p, s), (56 - 11) / 3);
    p = load_text(P(", \"pp\": 2, \"first_stage_layers\": 27, \"last_stage_layers\": 29"));
    assert_int_equal(plan_stage_layers(&p, 0), 27);
    assert_int_equal(plan_stage_layers(&p, 1), 29);
}

static void test_validate_direct(void **state) {
    (void)state;
    Plan p = load_text(P(""));
    MpError err = {{0}};
    assert_int_equal(plan_validate(&p, &err), 0);
    p.model.num_kv_groups = 8;
    p.map.tp = 32; p.map.dp = 2;   /* 48 heads % 32 */
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "tp: 32 does not divide num_heads 48");
    p = load_text(P(""));
    p.model.num_heads = 96; p.model.num_kv_groups = 6; p.map.tp = 4; p.map.dp = 16;
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "tp: 4 and num_kv_groups 6: neither divides the other");
    p = load_text(P(""));
    p.map.etp = 3; p.map.edp = 64 / 3;   /* inconsistent sizes are caught */
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "gpus: tp*cp*dp*pp and etp*ep*edp*pp must both equal gpus 64");
}

/* Products of plan fields are overflow-checked (issue 10): pp*vpp was an
 * int product, 65536*65536 wrapped to 0 and `L % 0` killed the process
 * (SIGFPE; a signed overflow under UBSan). */
static void test_validate_overflow(void **state) {
    (void)state;
    Plan p = load_text(P(""));
    MpError err = {{0}};
    p.map = (Mapping){.world = 65536, .tp = 1, .cp = 1, .dp = 1, .pp = 65536, .vpp = 65536,
                      .etp = 1, .ep = 1, .edp = 1};
    p.train.micro_batch = 1;
    p.train.global_batch = 1;
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "vpp: 65536 is above the limit of 1024");
    p.map.vpp = 1;
    p.model.num_layers = 3000000;
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "num_layers: 3000000 is above the limit of 1024 layers");
    /* a world beyond the limit, sizes whose 64-bit product would overflow */
    p = load_text(P(""));
    p.map.world = 1 << 30; p.map.tp = 1 << 30;
    assert_int_equal(plan_validate(&p, &err), -1);
    assert_contains(err.msg, "gpus: 1073741824 is above the limit of 1048576 GPUs");
    Mapping m = {.world = 1 << 20, .tp = 1 << 20, .cp = 1 << 20, .pp = 1 << 20, .vpp = 1, .etp = 1, .ep = 1};
    assert_int_equal(mapping_resolve(&m, 0, &err), -1);
    assert_contains(err.msg, "tp: tp*cp*pp = 1152921504606846976 does not divide gpus 1048576");
}

static void test_train_names(void **state) {
    (void)state;
    unsigned bits;
    MpError err = {{0}};
    assert_int_equal(overlap_parse("grad,param,tp,ep,shared-expert", &bits, &err), 0);
    assert_int_equal(bits, OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_TP | OVERLAP_EP | OVERLAP_SHARED_EXPERT);
    assert_int_equal(overlap_parse("none", &bits, &err), 0);
    assert_int_equal(bits, 0);
    assert_int_equal(overlap_parse("grad,,tp", &bits, &err), -1);
    assert_contains(err.msg, "overlap: empty word in 'grad,,tp'");
    assert_int_equal(overlap_parse("grad,gradient", &bits, &err), -1);
    assert_contains(err.msg, "overlap: unknown word 'gradient'");
    char buf[64];
    overlap_format(OVERLAP_PARAM | OVERLAP_EP, buf, sizeof buf);
    assert_string_equal(buf, "param,ep");
    overlap_format(0, buf, sizeof buf);
    assert_string_equal(buf, "none");
    RecomputeKind r;
    assert_int_equal(recompute_parse("full", &r), 0);
    assert_string_equal(recompute_name(r), "full");
    assert_int_equal(recompute_parse("partial", &r), -1);
    OptimizerSharding o;
    assert_int_equal(opt_sharding_parse("distributed", &o), 0);
    assert_string_equal(opt_sharding_name(o), "distributed");
    DispatcherKind d;
    assert_int_equal(dispatcher_parse("allgather", &d), 0);
    assert_string_equal(dispatcher_name(d), "allgather");
    assert_int_equal(dispatcher_parse("deepep", &d), -1);
    TrainConfig t;
    train_config_default(&t);
    assert_int_equal(train_config_validate(&t, &err), 0);
    t.seq_len = 0;
    assert_int_equal(train_config_validate(&t, &err), -1);
    assert_contains(err.msg, "seq: must be positive, got 0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_file),       cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_uneven_first_only), cmocka_unit_test(test_validate_direct),
        cmocka_unit_test(test_train_names),     cmocka_unit_test(test_validate_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
