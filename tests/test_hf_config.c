/* test_hf_config.c: HuggingFace config.json import, one small config per
 * family (tests/data/hf/, files named *-tiny), with the parameter count of the
 * transformers modules worked out by hand below, the router and norm fields
 * Megatron's flags need, transformers' defaults for missing keys, the
 * model's name, and errors that name the HF key.  Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/catalog.h"
#include "core/model.h"

static ModelSpec load(const char *path) {
    ModelSpec m;
    MpError err = {{0}};
    int rc = model_lookup(path, &m, &err);
    if (rc) fail_msg("%s: %s", path, err.msg);
    return m;
}

static void expect_total(const ModelSpec *m, double want) {
    ModelParams p;
    model_params(m, &p);
    if (p.total != want) fail_msg("%s: total %.0f, hand count %.0f", m->name, p.total, want);
}

/* deepseek_v2: 4 layers (1 dense), h 64, 4 heads, no q LoRA, kv LoRA 16,
 * nope 16, rope 8, v 16, 8 experts of 32 + 2 shared, dense FFN 96, V 100. */
static void test_deepseek_v2(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/deepseek-v2-tiny.config.json");
    assert_string_equal(m.name, "DeepSeek-V2-Tiny");   /* _name_or_path's last part */
    double h = 64, n = 4;
    double q = h * n * (16 + 8);                                  /* q_proj (no q LoRA) */
    double kv = h * (16 + 8) + 16 + 16 * n * (16 + 16);           /* kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj */
    double o = n * 16 * h;                                        /* o_proj */
    double attn = q + kv + o;                                     /* 6144 + 3600 + 4096 = 13840 */
    double moe = 8 * 3 * h * 32 + 3 * h * 64 + h * 8;            /* experts, shared (2 x 32), gate */
    double dense = 3 * h * 96;
    double want = 4 * (attn + 2 * h) + 3 * moe + 1 * dense + 2 * 100 * h + h;
    assert_true(want == 273024);
    expect_total(&m, want);
    assert_int_equal(m.router, ROUTER_SOFTMAX);
    assert_true(m.router_pre_softmax);   /* norm_topk_prob false */
    assert_int_equal(m.router_groups, 4);
    assert_int_equal(m.router_group_topk, 2);
    assert_true(m.router_scale == 16.0);
    assert_false(m.router_expert_bias);
    assert_int_equal(m.load_balancing, LB_SEQ_AUX_LOSS);
    assert_true(m.aux_loss_coeff == 0.003);
}

/* olmoe: 2 layers, h 32, 4 heads, 2 KV heads (d 8), 4 experts of 16, V 50;
 * q_norm RMSNorm(h) and k_norm RMSNorm(g*d). Named after its folder. */
static void test_olmoe(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/olmoe-tiny/config.json");
    assert_string_equal(m.name, "olmoe-tiny");
    double h = 32;
    double attn = h * 32 + 2 * h * 16 + 32 * h + 32 + 16;   /* q, k+v, o, q_norm, k_norm = 3120 */
    double moe = 4 * 3 * h * 16 + h * 4;                     /* experts, gate */
    double want = 2 * (attn + 2 * h + moe) + 2 * 50 * h + h;
    assert_true(want == 22144);
    expect_total(&m, want);
    assert_int_equal(m.qk_norm, QK_NORM_FULL);
    assert_true(m.router_pre_softmax);        /* OlmoeConfig norm_topk_prob default false */
    assert_true(m.aux_loss_coeff == 0.01);    /* OlmoeConfig router_aux_loss_coef default */
    assert_true(m.rotary_base == 10000);
    assert_false(m.tied_embeddings);
}

/* dbrx: d_model 32, 4 heads, 1 KV head, Wqkv fused, 4 experts of 16 top-2. */
static void test_dbrx(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/dbrx-tiny.config.json");
    assert_string_equal(m.name, "dbrx-tiny.config");
    double h = 32;
    double attn = h * (32 + 2 * 8) + 32 * h;   /* Wqkv, out_proj = 2560 */
    double moe = 4 * 3 * h * 16 + h * 4;        /* w1, v1, w2 of every expert, router */
    double want = 2 * (attn + 2 * h + moe) + 2 * 50 * h + h;   /* norm_1, norm_2: LayerNorm without bias */
    assert_true(want == 21024);
    expect_total(&m, want);
    assert_int_equal(m.num_kv_groups, 1);
    assert_int_equal(m.norm, NORM_LAYER);
    assert_true(m.rotary_base == 500000);
    assert_false(m.router_pre_softmax);   /* moe_normalize_expert_weights 1: renormalised top-k */
    assert_true(m.aux_loss_coeff == 0.05);
}

/* gpt_oss: biases on q, k, v, o; a sink per head; router with bias; experts'
 * gate_up [E,h,2F] + bias [E,2F] and down [E,F,h] + bias [E,h]. */
static void test_gpt_oss(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/gpt-oss-tiny.config.json");
    double h = 32, E = 4, F = 16;
    double attn = (h * 32 + 32) + 2 * (h * 16 + 16) + (32 * h + h) + 4;   /* = 3172 */
    double experts = E * h * 2 * F + E * 2 * F + E * F * h + E * h;       /* = 6400 */
    double router = h * E + E;
    double want = 2 * (attn + 2 * h + experts + router) + 2 * 50 * h + h;
    assert_true(want == 22768);
    expect_total(&m, want);
    assert_true(m.attn_sinks);
    assert_int_equal(m.sliding_window, 8);
    assert_int_equal(m.sliding_window_every, 2);
    assert_true(m.rotary_base == 150000);   /* GptOssConfig rope_theta default */
    assert_int_equal(m.load_balancing, LB_NONE);
}

/* llama4: the text_config; top-1 sigmoid router on the input, a shared
 * expert of intermediate_size, weightless L2 q/k norm. */
static void test_llama4(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/llama4-tiny.config.json");
    assert_string_equal(m.name, "Llama-4-Scout-Tiny");
    double h = 32;
    double attn = h * 32 + 2 * h * 16 + 32 * h;                  /* = 3072 */
    double moe = 4 * 3 * h * 16 + 3 * h * 16 + h * 4;            /* experts, shared_expert, router */
    double want = 2 * (attn + 2 * h + moe) + 2 * 50 * h + h;
    assert_true(want == 25120);
    expect_total(&m, want);
    assert_int_equal(m.router, ROUTER_SIGMOID);
    assert_true(m.router_probs_on_input);
    assert_int_equal(m.qk_norm, QK_NORM_L2);
    assert_int_equal(m.nope_every, 4);
    assert_true(m.rotary_base == 500000);
    assert_int_equal(m.top_k, 1);
}

/* grok-1: 4 norms per layer, gated GELU experts, tied embeddings. */
static void test_grok1(void **state) {
    (void)state;
    ModelSpec m = load("tests/data/hf/grok-1-tiny.config.json");
    double h = 32;
    double attn = h * 32 + 2 * h * 16 + 32 * h;
    double moe = 4 * 3 * h * 16 + h * 4;
    double want = 2 * (attn + 4 * h + moe) + 50 * h + h;   /* embedding only: tied */
    assert_true(want == 20576);
    expect_total(&m, want);
    assert_true(m.sandwich_norm);
    assert_true(m.gelu);
    assert_true(m.router_pre_softmax);
}

/* qwen2_moe's shared-expert gate (h per layer) and qwen3_moe's per-head q/k
 * norms (2d per layer), on the catalog's published configs. */
static void test_qwen_extras(void **state) {
    (void)state;
    ModelSpec q2 = load("tests/data/hf/qwen2-57b-a14b.config.json");
    ModelSpec q3 = load("tests/data/hf/qwen3-30b-a3b.config.json");
    assert_true(q2.shared_expert_gate);
    assert_true(q2.router_pre_softmax);   /* norm_topk_prob false */
    assert_true(q2.rotary_base == 1e6);
    assert_int_equal(q3.qk_norm, QK_NORM_HEAD);
    assert_false(q3.router_pre_softmax);  /* norm_topk_prob true */
    ModelParams p2, p3;
    model_params(&q2, &p2);
    model_params(&q3, &p3);
    /* Qwen2-57B-A14B shared expert 3*3584*20480 + gate 3584 */
    assert_true(p2.shared_per_layer == 3.0 * 3584 * 20480 + 3584);
    /* Qwen3-30B-A3B attention: q 2048*32*128, k,v 2*2048*4*128, o 32*128*2048, q/k norms 2*128 */
    assert_true(p3.attention_per_layer == 2048.0 * 4096 + 2 * 2048.0 * 512 + 4096.0 * 2048 + 256);
}

/* A DeepSeek-V3 config without first_k_dense_replace, n_shared_experts and
 * q_lora_rank takes DeepseekV3Config's defaults (3, 1, 1536), so it counts
 * as the published model. */
static void test_defaults(void **state) {
    (void)state;
    ModelSpec m;
    MpError err = {{0}};
    int rc = model_from_json_text("{\"model_type\": \"deepseek_v3\"}", "cfg.json", &m, &err);
    if (rc) fail_msg("%s", err.msg);
    ModelSpec ref = load("deepseek-v3");
    ModelParams a, b;
    model_params(&m, &a);
    model_params(&ref, &b);
    assert_true(a.total == b.total);
    assert_int_equal(m.num_dense_layers, 3);
    assert_int_equal(m.q_lora_rank, 1536);
    assert_int_equal(m.shared_ffn, 2048);
    assert_int_equal(m.router, ROUTER_SIGMOID);
    assert_true(m.router_expert_bias);
    assert_int_equal(m.router_groups, 8);
    assert_int_equal(m.router_group_topk, 4);
    assert_true(m.router_scale == 2.5);
    /* Mixtral with nothing but its type: MixtralConfig (8x7B) */
    rc = model_from_json_text("{\"model_type\": \"mixtral\"}", "cfg.json", &m, &err);
    if (rc) fail_msg("%s", err.msg);
    ModelSpec x7 = load("mixtral-8x7b");
    model_params(&m, &a);
    model_params(&x7, &b);
    assert_true(a.total == b.total);
}

static void expect_error(const char *text, const char *want) {
    ModelSpec m;
    MpError err = {{0}};
    assert_int_equal(model_from_json_text(text, "cfg.json", &m, &err), -1);
    if (!strstr(err.msg, want)) fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static void test_errors_name_keys(void **state) {
    (void)state;
    expect_error("{\"model_type\": \"llama4_text\", \"interleave_moe_layer_step\": 2}",
                 "cfg.json: interleave_moe_layer_step: 2 is not supported");
    expect_error("{\"model_type\": \"llama4\"}", "cfg.json: text_config: expected an object");
    expect_error("{\"model_type\": \"dbrx\", \"ffn_config\": 3}", "cfg.json: ffn_config: expected an object");
    expect_error("{\"model_type\": \"dbrx\", \"ffn_config\": {\"moe_top_k\": \"two\"}}", "cfg.json: moe_top_k:");
    expect_error("{\"model_type\": \"gpt_oss\", \"num_hidden_layers\": 2, \"layer_types\": "
                 "[\"full_attention\", \"full_attention\"]}", "cfg.json: layer_types: only alternating");
    expect_error("{\"model_type\": \"deepseek_v2\"}", "cfg.json: num_experts_per_tok: missing");
    expect_error("{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 2, \"topk_method\": \"x\"}",
                 "cfg.json: topk_method: 'x' is not");
    expect_error("{\"model_type\": \"olmoe\", \"hidden_act\": \"relu\"}", "cfg.json: hidden_act: 'relu' is not supported");
    expect_error("{\"model_type\": \"grok-1\", \"num_experts\": -1}", "num_experts: must be >= 0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_v2), cmocka_unit_test(test_olmoe),      cmocka_unit_test(test_dbrx),
        cmocka_unit_test(test_gpt_oss),     cmocka_unit_test(test_llama4),     cmocka_unit_test(test_grok1),
        cmocka_unit_test(test_qwen_extras), cmocka_unit_test(test_defaults),   cmocka_unit_test(test_errors_name_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
