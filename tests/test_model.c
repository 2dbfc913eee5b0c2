/* test_model.c: parameter counts against hand arithmetic, and model_validate. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "test_util.h"
#include "core/catalog.h"
#include "core/model.h"


/* Mixtral 8x22B: L 56, h 6144, n 48, g 8, d 128, E 8, k 2, Fe 16384, V 32000, untied. */
static void test_mixtral_8x22b(void **state) {
    (void)state;
    ModelSpec m = test_model("mixtral-8x22b");
    ModelParams p;
    model_params(&m, &p);
    double attn = 6144.0 * 48 * 128        /* Q  = 37,748,736 */
                  + 2.0 * 6144 * 8 * 128   /* KV = 12,582,912 */
                  + 48.0 * 128 * 6144;     /* O  = 37,748,736 */
    assert_true(attn == 88080384.0);
    assert_true(p.attention_per_layer == attn);
    double expert = 3.0 * 6144 * 16384;   /* 301,989,888 per expert */
    assert_true(p.expert_per_layer == 8 * expert);
    assert_true(p.router_per_layer == 6144.0 * 8);
    assert_true(p.norms_per_layer == 2.0 * 6144);
    assert_true(p.embedding == 32000.0 * 6144);
    assert_true(p.output == 32000.0 * 6144);
    double total = 56 * (attn + 2.0 * 6144 + 8 * expert + 6144.0 * 8) + 2 * 32000.0 * 6144 + 6144;
    double active = 56 * (attn + 2.0 * 6144 + 2 * expert + 6144.0 * 8) + 2 * 32000.0 * 6144 + 6144;
    assert_true(p.total == total);
    assert_true(p.active == active);
    /* Mistral: "141B parameters, 39B active" */
    assert_rel(p.total, 141e9, 0.005);
    assert_rel(p.active, 39e9, 0.01);
    assert_true(p.mtp == 0);
}

/* Mixtral 8x7B: 46.7B total / 12.9B active (Mistral's figures). */
static void test_mixtral_8x7b(void **state) {
    (void)state;
    ModelSpec m = test_model("mixtral-8x7b");
    ModelParams p;
    model_params(&m, &p);
    double attn = 2.0 * 4096 * 32 * 128 + 2.0 * 4096 * 8 * 128;   /* Q+O, K+V: 41,943,040 */
    double expert = 3.0 * 4096 * 14336;                           /* 176,160,768 */
    double common = 32 * (attn + 2 * 4096.0 + 4096.0 * 8) + 2 * 32000.0 * 4096 + 4096;
    assert_true(p.total == common + 32 * 8 * expert);
    assert_true(p.active == common + 32 * 2 * expert);
    assert_rel(p.total, 46.7e9, 0.002);
    assert_rel(p.active, 12.9e9, 0.005);
}

/* Qwen2-57B-A14B: QKV bias, shared expert 20480 with its sigmoid gate (h). ~57B / ~14B. */
static void test_qwen2_57b(void **state) {
    (void)state;
    ModelSpec m = test_model("qwen2-57b-a14b");
    ModelParams p;
    model_params(&m, &p);
    double h = 3584;
    double attn = 2 * h * 28 * 128 + 2 * h * 4 * 128 + (28 * 128 + 2 * 4 * 128);   /* weights + bias */
    assert_true(p.attention_per_layer == attn);
    double expert = 3 * h * 2560, shared = 3 * h * 20480 + h, router = h * 64;
    assert_true(p.shared_per_layer == shared);
    double common = 28 * (attn + 2 * h) + 2 * 151936.0 * h + h;
    assert_true(p.total == common + 28 * (64 * expert + shared + router));
    assert_true(p.active == common + 28 * (8 * expert + shared + router));
    assert_rel(p.total, 57.4e9, 0.005);
    assert_rel(p.active, 14.2e9, 0.01);
}

/* DeepSeek-V3: MLA, 3 dense layers, 1 shared expert, MTP. 671B / 37B (DeepSeek). */
static void test_deepseek_v3(void **state) {
    (void)state;
    ModelSpec m = test_model("deepseek-v3");
    ModelParams p;
    model_params(&m, &p);
    double h = 7168, n = 128;
    double q = h * 1536 + 1536 + 1536 * n * (128 + 64);        /* q_a, q_a_norm, q_b */
    double kv = h * (512 + 64) + 512 + 512 * n * (128 + 128);  /* kv_a (+rope k), kv_a_norm, kv_b */
    double o = n * 128 * h;
    assert_true(p.attention_per_layer == q + kv + o);           /* 187,107,328 */
    assert_true(q + kv + o == 187107328.0);
    double expert = 3 * h * 2048, shared = 3 * h * 2048, router = h * 256, dense = 3 * h * 18432;
    double common = 61 * (q + kv + o + 2 * h) + 3 * dense + 2 * 129280.0 * h + h;
    assert_true(p.total == common + 58 * (256 * expert + shared + router));
    assert_true(p.active == common + 58 * (8 * expert + shared + router));
    assert_rel(p.total, 671e9, 0.002);
    assert_rel(p.active, 37.5e9, 0.01);
    /* one MTP layer: a MoE layer + eh_proj 2h*h + 3 norms */
    double mtp = q + kv + o + 2 * h + 256 * expert + shared + router + 2 * h * h + 3 * h;
    assert_true(p.mtp == mtp);
    /* DeepSeek: 685B on disk = 671B + 14B MTP module, which also stores a
     * copy of the embedding and output head (2*V*h = 1.85B). */
    assert_rel(p.total + p.mtp + 2 * 129280.0 * h, 685e9, 0.005);
}

static ModelSpec valid_spec(void) {
    ModelSpec m;
    memset(&m, 0, sizeof m);
    strcpy(m.name, "t");
    m.num_layers = 4; m.hidden = 64; m.num_heads = 8; m.num_kv_groups = 2; m.head_dim = 8;
    m.num_experts = 4; m.top_k = 2; m.expert_ffn = 32; m.vocab = 100; m.swiglu = true;
    return m;
}

static void expect_invalid(ModelSpec m, const char *text) {
    MpError err = {{0}};
    assert_int_equal(model_validate(&m, &err), -1);
    if (!strstr(err.msg, text)) { print_error("message '%s' lacks '%s'\n", err.msg, text); fail(); }
}

static void test_validate(void **state) {
    (void)state;
    MpError err;
    ModelSpec m = valid_spec();
    assert_int_equal(model_validate(&m, &err), 0);
    m = valid_spec(); m.num_kv_groups = 3; expect_invalid(m, "num_kv_groups: 3 does not divide num_heads 8");
    m = valid_spec(); m.top_k = 5; expect_invalid(m, "top_k: 5 exceeds num_experts 4");
    m = valid_spec(); m.top_k = 0; expect_invalid(m, "top_k: must be positive");
    m = valid_spec(); m.hidden = 0; expect_invalid(m, "hidden: must be positive, got 0");
    m = valid_spec(); m.num_layers = -2; expect_invalid(m, "num_layers: must be positive, got -2");
    m = valid_spec(); m.vocab = 0; expect_invalid(m, "vocab: must be positive");
    m = valid_spec(); m.expert_ffn = 0; expect_invalid(m, "expert_ffn: must be positive");
    m = valid_spec(); m.num_dense_layers = 5; m.dense_ffn = 8; expect_invalid(m, "num_dense_layers: 5 exceeds num_layers 4");
    m = valid_spec(); m.num_dense_layers = 4; m.dense_ffn = 8; expect_invalid(m, "num_dense_layers: 4 equals num_layers");
    m = valid_spec(); m.num_dense_layers = 1; expect_invalid(m, "dense_ffn: must be positive");
    m = valid_spec(); m.shared_ffn = -1; expect_invalid(m, "shared_ffn: must be >= 0");
    m = valid_spec(); m.head_dim = 0; expect_invalid(m, "head_dim: must be positive");
    m = valid_spec(); m.hidden = 1 << 25; expect_invalid(m, "hidden: 33554432 is larger than the limit");
    m = valid_spec(); m.sliding_window_every = 2; expect_invalid(m, "sliding_window_every: 2 given but sliding_window is 0");
    m = valid_spec(); m.kv_lora_rank = 16; expect_invalid(m, "mla: MLA dimensions given but mla is false");
    /* MLA: head_dim must be nope + rope, groups == heads */
    m = valid_spec(); m.mla = true; m.num_kv_groups = 8; m.kv_lora_rank = 16; m.qk_nope_head_dim = 8;
    m.qk_rope_head_dim = 4; m.v_head_dim = 8; m.head_dim = 12;
    assert_int_equal(model_validate(&m, &err), 0);
    m.head_dim = 8; expect_invalid(m, "head_dim: 8 must equal qk_nope_head_dim + qk_rope_head_dim = 12");
    m.head_dim = 12; m.num_kv_groups = 2; expect_invalid(m, "num_kv_groups: 2 must equal num_heads 8 for MLA");
    m.num_kv_groups = 8; m.kv_lora_rank = 0; expect_invalid(m, "kv_lora_rank: must be positive");
    /* dense model */
    m = valid_spec(); m.num_experts = 0; m.top_k = 0; m.expert_ffn = 0; m.num_dense_layers = 4; m.dense_ffn = 128;
    assert_int_equal(model_validate(&m, &err), 0);
    assert_int_equal(model_is_moe(&m), 0);
    m.top_k = 1; expect_invalid(m, "top_k: 1 given but num_experts is 0");
    m.top_k = 0; m.num_dense_layers = 2; expect_invalid(m, "num_dense_layers: 2 must equal num_layers 4");
}

/* A dense (non-MoE), non-gated, tied model from a catalog text: 2 matrices per MLP, no output layer. */
static void test_dense_tied(void **state) {
    (void)state;
    const char *text = "{\"num_layers\": 2, \"hidden\": 64, \"num_heads\": 4, \"num_kv_groups\": 4, "
                       "\"num_experts\": 0, \"dense_ffn\": 256, \"vocab\": 1000, \"tied_embeddings\": true, "
                       "\"swiglu\": false}";
    ModelSpec m;
    MpError err;
    int rc = model_from_json_text(text, "tests/data/dense.json", &m, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(m.name, "dense");
    assert_int_equal(m.num_dense_layers, 2);
    assert_int_equal(m.head_dim, 16);
    ModelParams p;
    model_params(&m, &p);
    double attn = 4.0 * 64 * 64, mlp = 2.0 * 64 * 256;
    assert_true(p.total == 2 * (attn + 2 * 64 + mlp) + 1000.0 * 64 + 64);
    assert_true(p.active == p.total);
    assert_true(p.output == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixtral_8x22b), cmocka_unit_test(test_mixtral_8x7b),
        cmocka_unit_test(test_qwen2_57b),     cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_validate),      cmocka_unit_test(test_dense_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
