/* test_flops.c: FLOPs per token under both conventions against hand
 * arithmetic written in the forms of reference/flops-and-memory.md and
 * Megatron-LM's num_floating_point_operations. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "test_util.h"
#include "core/catalog.h"
#include "core/model.h"


/* Mixtral 8x22B, s 4096: L 56, h 6144, n 48, g 8, d 128, Fe 16384, k 2, f 3/2, V 32000. */
static void test_mixtral_8x22b(void **state) {
    (void)state;
    ModelSpec m = test_model("mixtral-8x22b");
    double s = 4096, L = 56, h = 6144, n = 48, g = 8, d = 128, Fe = 16384, k = 2, f = 1.5, V = 32000;
    /* legacy, per sequence: 12*B*s*L*h^2*[(1 + g/n + s/h)*(n*d/h) + (Fe/h)*k*f + V/(2*L*h)], B = 1 */
    double legacy_seq = 12 * s * L * h * h * ((1 + g / n + s / h) * (n * d / h) + (Fe / h) * k * f + V / (2 * L * h));
    assert_rel(model_flops(&m, FLOPS_LEGACY, 4096, 4096), legacy_seq, 1e-12);
    /* the same per token, expanded by hand: 250.6 GFLOP */
    double legacy_tok = 12 * 56 * (6144.0 * 48 * 128 + 6144.0 * 8 * 128 + 4096.0 * 48 * 128)
                        + 12 * 56 * 6144.0 * 16384 * 2 * 1.5 + 6 * 6144.0 * 32000;
    assert_rel(model_flops(&m, FLOPS_LEGACY, 4096, 1), legacy_tok, 1e-12);
    assert_rel(legacy_tok, 250.6e9, 1e-3);
    /* megatron, per token: Lm*6*h*(Fe*k)*2f + L*6*(h*(n*d + 2*g*d) + n*d*h) + 6*h*V,
     * plus per sequence L*6*n*d*s^2 (i.e. per token L*6*n*d*s). */
    double meg_tok = L * 6 * h * (Fe * k) * (2 * f) + L * 6 * (h * (n * d + 2 * g * d) + n * d * h) + 6 * h * V
                     + L * 6 * n * d * s * s / s;
    assert_rel(model_flops(&m, FLOPS_MEGATRON, 4096, 1), meg_tok, 1e-12);
    assert_rel(meg_tok, 242.2e9, 1e-3);
    /* a step of B = 256 sequences is B*s tokens */
    assert_rel(model_flops(&m, FLOPS_MEGATRON, 4096, 256.0 * 4096), meg_tok * 256 * 4096, 1e-12);
    /* the attention-score term grows with s: legacy - megatron = 6*L*n*d*s at equal projection terms */
    double diff = model_flops(&m, FLOPS_LEGACY, 8192, 1) - model_flops(&m, FLOPS_MEGATRON, 8192, 1);
    assert_rel(diff, 6 * L * n * d * 8192, 1e-9);
}

/* Qwen2-57B-A14B: shared expert enters both conventions as (Fsh/h)*f. */
static void test_qwen2_shared(void **state) {
    (void)state;
    ModelSpec m = test_model("qwen2-57b-a14b");
    double s = 4096, L = 28, h = 3584, n = 28, g = 4, d = 128, Fe = 2560, k = 8, Fsh = 20480, f = 1.5, V = 151936;
    double legacy = 12 * s * L * h * h *
                    ((1 + g / n + s / h) * (n * d / h) + (Fe / h) * k * f + (Fsh / h) * f + V / (2 * L * h)) / s;
    assert_rel(model_flops(&m, FLOPS_LEGACY, 4096, 1), legacy, 1e-12);
    double meg = L * 6 * h * (Fe * k + Fsh) * 2 * f + L * 6 * (h * (n * d + 2 * g * d) + n * d * h) + 6 * h * V +
                 L * 6 * n * d * s;
    assert_rel(model_flops(&m, FLOPS_MEGATRON, 4096, 1), meg, 1e-12);
}

/* DeepSeek-V3, megatron: Megatron-LM's MLA, dense-layer, shared-expert and MTP terms. */
static void test_deepseek_v3(void **state) {
    (void)state;
    ModelSpec m = test_model("deepseek-v3");
    double s = 4096, h = 7168, n = 128, qr = 1536, kvr = 512, dn = 128, dr = 64, dv = 128, V = 129280;
    double mtp = 1, L = 61 + mtp, Ld = 3, Lm = 58 + mtp;   /* MTP layer copies the last (MoE) layer */
    double F = 18432, Fe = 2048, k = 8, Fsh = 2048, f = 1.5;
    double mlp = 12 * L * h * (F * f * Ld / L + Fe * k * f * Lm / L + Fsh * f * Lm / L);
    double q_term = qr * (h + n * (dn + dr) + 1);
    double attn = 3 * 2 * L *
                  (q_term + kvr * (h + n * (dn + dv) + 1) + h * dr + n * dv * h + s * n * (dn + dr) / 2 +
                   s * n * dv / 2);
    double mtp_terms = 3 * 2 * mtp * (3 * h + 2 * h * h);
    double logit = 3 * 2 * h * V * (mtp + 1);
    double meg = mlp + attn + mtp_terms + logit;
    assert_rel(model_flops(&m, FLOPS_MEGATRON, 4096, 1), meg, 1e-12);
    assert_rel(meg, 260.0e9, 1e-3);
    /* legacy (moeplan's MLA approximation): 61 layers, all MoE, core attention not halved, no MTP */
    double Lg = 61;
    double leg = 12 * Lg * h * (Fe * k + Fsh) * f +
                 6 * Lg * (q_term + kvr * (h + n * (dn + dv) + 1) + h * dr + n * dv * h + s * n * (dn + dr) + s * n * dv) +
                 6 * h * V;
    assert_rel(model_flops(&m, FLOPS_LEGACY, 4096, 1), leg, 1e-12);
}

/* Without q LoRA the query term is h*n*(dn+dr). */
static void test_mla_without_q_lora(void **state) {
    (void)state;
    ModelSpec m = test_model("deepseek-v3");
    double with = model_flops(&m, FLOPS_MEGATRON, 1024, 1);
    m.q_lora_rank = 0;
    double without = model_flops(&m, FLOPS_MEGATRON, 1024, 1);
    double h = 7168, n = 128, L = 62;
    double diff = 6 * L * (1536.0 * (h + n * 192 + 1) - h * n * 192);
    assert_rel(with - without, diff, 1e-9);
}

/* A dense model: megatron uses F on every layer, legacy Fe = F, k = 1. Non-gated: f = 1. */
static void test_dense(void **state) {
    (void)state;
    const char *text = "{\"num_layers\": 2, \"hidden\": 64, \"num_heads\": 4, \"num_kv_groups\": 4, "
                       "\"num_experts\": 0, \"dense_ffn\": 256, \"vocab\": 1000, \"swiglu\": false}";
    ModelSpec m;
    MpError err;
    assert_int_equal(model_from_json_text(text, "dense.json", &m, &err), 0);
    double s = 128, L = 2, h = 64, n = 4, d = 16, F = 256, V = 1000;
    double meg = 12 * L * h * F + 12 * L * (h * n * d + h * n * d + s * n * d / 2) + 6 * h * V;
    assert_rel(model_flops(&m, FLOPS_MEGATRON, 128, 1), meg, 1e-12);
    double leg = 12 * s * L * h * h * ((1 + 1 + s / h) * (n * d / h) + F / h + V / (2 * L * h)) / s;
    assert_rel(model_flops(&m, FLOPS_LEGACY, 128, 1), leg, 1e-12);
}

/* 24*h^2 + 4*s*h per layer check with the classic GPT formula (Narayanan et al. 2021):
 * legacy with n*d = h, g = n, Fe = 4h, k = 1, f = 1 gives 72*L*h^2*(1 + s/(6h) + V/(12*L*h)). */
static void test_classic_gpt(void **state) {
    (void)state;
    const char *text = "{\"num_layers\": 24, \"hidden\": 1024, \"num_heads\": 16, \"num_kv_groups\": 16, "
                       "\"num_experts\": 0, \"dense_ffn\": 4096, \"vocab\": 51200, \"swiglu\": false}";
    ModelSpec m;
    MpError err;
    assert_int_equal(model_from_json_text(text, "gpt.json", &m, &err), 0);
    double s = 2048, L = 24, h = 1024, V = 51200;
    double narayanan = 72 * L * h * h * (1 + s / (6 * h) + V / (12 * L * h));   /* per token */
    assert_rel(model_flops(&m, FLOPS_LEGACY, 2048, 1), narayanan, 1e-12);
}

static void test_names(void **state) {
    (void)state;
    FlopsConvention c;
    assert_int_equal(flops_convention_parse("legacy", &c), 0);
    assert_int_equal(c, FLOPS_LEGACY);
    assert_int_equal(flops_convention_parse("megatron", &c), 0);
    assert_int_equal(c, FLOPS_MEGATRON);
    assert_int_equal(flops_convention_parse("Megatron", &c), -1);
    assert_string_equal(flops_convention_name(FLOPS_LEGACY), "legacy");
    assert_string_equal(flops_convention_name(FLOPS_MEGATRON), "megatron");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixtral_8x22b), cmocka_unit_test(test_qwen2_shared),
        cmocka_unit_test(test_deepseek_v3),   cmocka_unit_test(test_mla_without_q_lora),
        cmocka_unit_test(test_dense),         cmocka_unit_test(test_classic_gpt),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
