/* test_planner_emit.c: the Megatron-LM flags of a plan, read back and
 * compared with the mapping they came from. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "planner/emit.h"

/* Value of "--flag N" in the emitted text; -1 when the flag is absent. */
static int flag_int(const char *text, const char *flag) {
    char pat[96];
    snprintf(pat, sizeof pat, "%s ", flag);
    const char *s = text;
    while ((s = strstr(s, pat))) {
        if (s == text || s[-1] == '\n') return atoi(s + strlen(pat));
        s++;
    }
    return -1;
}

static int has_flag(const char *text, const char *flag) {
    size_t n = strlen(flag);
    for (const char *s = text; (s = strstr(s, flag)); s++)
        if ((s == text || s[-1] == '\n') && (s[n] == ' ' || s[n] == 0)) return 1;
    return 0;
}

static void base_plan(Plan *p, const char *model) {
    MpError err;
    memset(p, 0, sizeof *p);
    train_config_default(&p->train);
    assert_int_equal(model_lookup(model, &p->model, &err), 0);
    assert_int_equal(cluster_lookup("dgx-h100", &p->cluster, &err), 0);
}

static void test_folded_mixtral(void **state) {
    (void)state;
    Plan p;
    base_plan(&p, "mixtral-8x22b");
    p.map = (Mapping){.world = 128, .tp = 2, .cp = 1, .pp = 8, .vpp = 1, .etp = 1, .ep = 8};
    MpError err;
    assert_int_equal(mapping_resolve(&p.map, p.model.num_experts, &err), 0);
    p.train.seq_len = 4096; p.train.micro_batch = 1; p.train.global_batch = 256;
    p.train.capacity_factor = 1.0;
    p.train.opt_sharding = OPT_SHARD_DISTRIBUTED;
    p.train.recompute = RECOMPUTE_NONE;
    char *f = emit_megatron_flags(&p);
    assert_non_null(f);
    assert_int_equal(flag_int(f, "--tensor-model-parallel-size"), 2);
    assert_int_equal(flag_int(f, "--pipeline-model-parallel-size"), 8);
    assert_int_equal(flag_int(f, "--context-parallel-size"), 1);
    assert_int_equal(flag_int(f, "--expert-model-parallel-size"), 8);
    assert_int_equal(flag_int(f, "--expert-tensor-parallel-size"), 1);
    assert_int_equal(flag_int(f, "--micro-batch-size"), 1);
    assert_int_equal(flag_int(f, "--global-batch-size"), 256);
    assert_int_equal(flag_int(f, "--seq-length"), 4096);
    assert_int_equal(flag_int(f, "--num-experts"), 8);
    assert_int_equal(flag_int(f, "--moe-router-topk"), 2);
    assert_int_equal(flag_int(f, "--num-layers"), 56);
    assert_int_equal(flag_int(f, "--num-query-groups"), 8);
    assert_true(has_flag(f, "--sequence-parallel"));          /* tp 2 > 1 */
    assert_true(has_flag(f, "--use-distributed-optimizer"));
    assert_true(has_flag(f, "--moe-pad-expert-input-to-capacity"));
    assert_int_equal(flag_int(f, "--moe-expert-capacity-factor"), 1);
    assert_false(has_flag(f, "--num-layers-per-virtual-pipeline-stage")); /* vpp 1 */
    assert_false(has_flag(f, "--recompute-granularity"));
    assert_false(has_flag(f, "--decoder-first-pipeline-num-layers"));
    assert_non_null(strstr(f, "--moe-token-dispatcher-type alltoall"));
    /* every line but the last ends with " \" */
    for (const char *s = strchr(f, '\n'); s; s = strchr(s + 1, '\n')) assert_true(s[-1] == '\\' && s[-2] == ' ');
    free(f);
}

static void test_vpp_split_recompute(void **state) {
    (void)state;
    Plan p;
    base_plan(&p, "qwen2-57b-a14b");
    MpError err;
    /* 64 GPUs, tp 1, pp 4, vpp 7: 28 layers / (4*7) = 1 layer per virtual stage */
    /* pp-before-dp order needs edp == dp: dp = 64/(1*2*4) = 8 = edp = 64/(2*1*4) */
    p.map = (Mapping){.world = 64, .tp = 1, .cp = 2, .pp = 4, .vpp = 7, .etp = 2, .ep = 1, .order = ORDER_TP_CP_EP_PP_DP};
    assert_int_equal(mapping_resolve(&p.map, p.model.num_experts, &err), 0);
    p.train.seq_len = 8192; p.train.micro_batch = 2; p.train.global_batch = 64;
    p.train.recompute = RECOMPUTE_FULL;
    p.train.opt_sharding = OPT_SHARD_FULL;
    p.train.capacity_factor = 0;
    char *f = emit_megatron_flags(&p);
    assert_non_null(f);
    assert_int_equal(flag_int(f, "--num-layers-per-virtual-pipeline-stage"), 1);
    assert_int_equal(flag_int(f, "--context-parallel-size"), 2);
    assert_int_equal(flag_int(f, "--expert-tensor-parallel-size"), 2);
    assert_int_equal(flag_int(f, "--micro-batch-size"), 2);
    assert_false(has_flag(f, "--sequence-parallel"));         /* tp 1 */
    assert_true(has_flag(f, "--use-tp-pp-dp-mapping"));
    assert_non_null(strstr(f, "--recompute-granularity full"));
    assert_int_equal(flag_int(f, "--recompute-num-layers"), 1);
    /* full sharding is Megatron-FSDP (supports EP and PP; torch FSDP2 does not:
     * arguments.py:1034-1037), which runs on the distributed optimizer */
    assert_false(has_flag(f, "--use-torch-fsdp2"));
    assert_true(has_flag(f, "--use-megatron-fsdp"));
    assert_true(has_flag(f, "--use-distributed-optimizer"));
    assert_non_null(strstr(f, "--ckpt-format fsdp_dtensor"));
    assert_false(has_flag(f, "--moe-expert-capacity-factor")); /* dropless */
    assert_int_equal(flag_int(f, "--moe-shared-expert-intermediate-size"), 20480);
    assert_true(has_flag(f, "--add-qkv-bias"));
    free(f);
    /* uneven split: 28 layers on pp 4 as 6 + 2*8 + 6 */
    p.map = (Mapping){.world = 64, .tp = 2, .cp = 1, .pp = 4, .vpp = 1, .etp = 1, .ep = 4};
    assert_int_equal(mapping_resolve(&p.map, p.model.num_experts, &err), 0);
    p.first_stage_layers = 6; p.last_stage_layers = 6;
    p.train.recompute = RECOMPUTE_SELECTIVE;
    f = emit_megatron_flags(&p);
    assert_int_equal(flag_int(f, "--decoder-first-pipeline-num-layers"), 6);
    assert_int_equal(flag_int(f, "--decoder-last-pipeline-num-layers"), 6);
    assert_non_null(strstr(f, "--recompute-granularity selective"));
    /* what the simulator priced for "selective", in Megatron's modules */
    assert_non_null(strstr(f, "--recompute-modules core_attn layernorm moe_act \\\n"));
    assert_false(has_flag(f, "--recompute-method"));
    assert_false(has_flag(f, "--use-tp-pp-dp-mapping"));
    free(f);
    p.train.recompute_modules = RCM_LAYERNORM | RCM_MOE | RCM_SHARED_EXPERTS;
    f = emit_megatron_flags(&p);
    assert_non_null(strstr(f, "--recompute-modules layernorm moe \\\n"));   /* shared experts are inside moe */
    free(f);
}

/* head_dim * num_heads was an int product: 2^20 x 2^12 overflowed (a
 * signed overflow: undefined behaviour, caught by UBSan).  The emitter now
 * compares in 64 bits and writes --kv-channels. */
static void test_head_dim_product_overflow(void **state) {
    (void)state;
    Plan p;
    base_plan(&p, "mixtral-8x22b");
    p.model.head_dim = 1 << 20;
    p.model.num_heads = 1 << 12;
    p.map = (Mapping){.world = 8, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 8, .dp = 8, .edp = 1};
    char *f = emit_megatron_flags(&p);
    assert_non_null(f);
    assert_int_equal(flag_int(f, "--kv-channels"), 1 << 20);
    free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folded_mixtral),
        cmocka_unit_test(test_vpp_split_recompute),
        cmocka_unit_test(test_head_dim_product_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
