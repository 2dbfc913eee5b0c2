/* test_catalog.c: the embedded catalog, HuggingFace imports, lookups and
 * every bad-input message (file, field, reason). Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"

static void assert_contains(const char *msg, const char *text) {
    if (!strstr(msg, text)) { print_error("message '%s' lacks '%s'\n", msg, text); fail(); }
}

static void test_every_entry_loads(void **state) {
    (void)state;
    assert_int_equal(catalog_model_count, 14);
    assert_true(catalog_cluster_count >= 4);
    for (int i = 0; i < catalog_model_count; i++) {
        ModelSpec m;
        MpError err = {{0}};
        int rc = model_lookup(catalog_model_entries[i].name, &m, &err);
        if (rc) print_error("%s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_string_equal(m.name, catalog_model_entries[i].name);
        assert_non_null(strstr(catalog_model_entries[i].json, "\"notes\""));
    }
    for (int i = 0; i < catalog_cluster_count; i++) {
        Cluster c;
        MpError err = {{0}};
        int rc = cluster_lookup(catalog_cluster_entries[i].name, &c, &err);
        if (rc) print_error("%s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(catalog_cluster_entries[i].json, "\"notes\""));
    }
    static const char *const models[] = {"mixtral-8x7b", "mixtral-8x22b", "mixtral-8x22b-g8t8", "qwen2-57b-a14b",
                                         "llama3-8x70b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3",
                                         "dbrx", "gpt-oss-120b", "grok-1", "llama4-scout", "olmoe-1b-7b",
                                         "deepseek-v2-lite"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        ModelSpec m;
        MpError err;
        assert_int_equal(model_lookup(models[i], &m, &err), 0);
    }
}

/* Unit conversions of the cluster JSON: TFLOP/s, MiB, TB/s, GB/s, Gbit/s, us. */
static void test_dgx_h100_units(void **state) {
    (void)state;
    Cluster c;
    MpError err;
    assert_int_equal(cluster_lookup("dgx-h100", &c, &err), 0);
    assert_true(c.peak_bf16_flops == 989.5e12);
    assert_true(c.peak_fp8_flops == 1979e12);
    assert_true(c.hbm_bytes == 81559.0 * 1048576);   /* nvidia-smi on the device H100 */
    assert_true(c.hbm_bw == 3.35e12);
    assert_true(c.hbm_bw_achievable == 3.0e12);
    assert_int_equal(c.sm_count, 132);
    assert_int_equal(c.gpus_per_node, 8);
    assert_int_equal(c.nvlink_domain, 8);
    assert_true(c.nvlink_bw == 450e9);
    assert_true(c.nvlink_busbw == 370e9);
    assert_int_equal(c.nics_per_node, 8);
    assert_true(c.nic_bw == 400e9 / 8);              /* 50 GB/s */
    assert_true(c.nic_busbw == 47e9);
    assert_true(c.nvlink_latency > 14.9e-6 && c.nvlink_latency < 15.1e-6);
    assert_true(c.net_latency > 7.9e-6 && c.net_latency < 8.1e-6);
    assert_string_equal(c.net_topology, "rail-optimized-fat-tree");
    assert_int_equal(cluster_domain_size(&c), 8);
    Cluster nvl;
    assert_int_equal(cluster_lookup("gb200-nvl72", &nvl, &err), 0);
    assert_int_equal(nvl.gpus_per_node, 4);
    assert_int_equal(cluster_domain_size(&nvl), 72);
    assert_true(nvl.nic_bw == 800e9 / 8);
    Cluster h200;
    assert_int_equal(cluster_lookup("dgx-h200", &h200, &err), 0);
    assert_true(h200.hbm_bytes == 143771.0 * 1048576);
    assert_true(h200.hbm_bw_achievable == 4.3e12);
}

static void expect_same_arch(const ModelSpec *a, const ModelSpec *b) {
    assert_int_equal(a->num_layers, b->num_layers);
    assert_int_equal(a->hidden, b->hidden);
    assert_int_equal(a->num_heads, b->num_heads);
    assert_int_equal(a->num_kv_groups, b->num_kv_groups);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->num_experts, b->num_experts);
    assert_int_equal(a->top_k, b->top_k);
    assert_int_equal(a->expert_ffn, b->expert_ffn);
    assert_int_equal(a->shared_ffn, b->shared_ffn);
    assert_int_equal(a->num_dense_layers, b->num_dense_layers);
    assert_int_equal(a->dense_ffn, b->dense_ffn);
    assert_int_equal(a->vocab, b->vocab);
    assert_int_equal(a->tied_embeddings, b->tied_embeddings);
    assert_int_equal(a->qkv_bias, b->qkv_bias);
    assert_int_equal(a->swiglu, b->swiglu);
    assert_int_equal(a->router, b->router);
    assert_int_equal(a->mla, b->mla);
    assert_int_equal(a->q_lora_rank, b->q_lora_rank);
    assert_int_equal(a->kv_lora_rank, b->kv_lora_rank);
    assert_int_equal(a->qk_nope_head_dim, b->qk_nope_head_dim);
    assert_int_equal(a->qk_rope_head_dim, b->qk_rope_head_dim);
    assert_int_equal(a->v_head_dim, b->v_head_dim);
    assert_int_equal(a->mtp_layers, b->mtp_layers);
    /* the fields Megatron-LM's flags and the exact parameter count need */
    assert_true(a->rotary_base == b->rotary_base);
    assert_int_equal(a->qk_norm, b->qk_norm);
    assert_int_equal(a->norm, b->norm);
    assert_int_equal(a->router_pre_softmax, b->router_pre_softmax);
    assert_true(a->router_scale == b->router_scale);
    assert_int_equal(a->router_groups, b->router_groups);
    assert_int_equal(a->router_group_topk, b->router_group_topk);
    assert_int_equal(a->router_expert_bias, b->router_expert_bias);
    assert_int_equal(a->shared_expert_gate, b->shared_expert_gate);
    assert_int_equal(a->load_balancing, b->load_balancing);
    assert_true(a->aux_loss_coeff == b->aux_loss_coeff);
    assert_int_equal(a->attn_sinks, b->attn_sinks);
    assert_int_equal(a->expert_bias_linear, b->expert_bias_linear);
}

/* Each HF format gives the same architecture as the catalog entry. */
static void test_hf_configs(void **state) {
    (void)state;
    static const char *const pairs[][2] = {
        {"tests/data/hf/mixtral-8x22b.config.json", "mixtral-8x22b"},
        {"tests/data/hf/qwen2-57b-a14b.config.json", "qwen2-57b-a14b"},
        {"tests/data/hf/qwen3-30b-a3b.config.json", "qwen3-30b-a3b"},
        {"tests/data/hf/deepseek-v3.config.json", "deepseek-v3"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        ModelSpec hf, cat;
        MpError err = {{0}};
        int rc = model_lookup(pairs[i][0], &hf, &err);
        if (rc) print_error("%s\n", err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(model_lookup(pairs[i][1], &cat, &err), 0);
        expect_same_arch(&hf, &cat);
    }
    ModelSpec m;
    MpError err;
    assert_int_equal(model_lookup("tests/data/hf/mixtral-8x22b.config.json", &m, &err), 0);
    assert_string_equal(m.name, "mixtral-8x22b.config");
}

static void expect_model_error(const char *text, const char *origin, const char *want) {
    ModelSpec m;
    MpError err = {{0}};
    assert_int_equal(model_from_json_text(text, origin, &m, &err), -1);
    assert_contains(err.msg, want);
}

#define BASE "\"num_layers\": 32, \"hidden\": 4096, \"num_heads\": 32, \"num_experts\": 8, \"vocab\": 32000"

static void test_bad_models(void **state) {
    (void)state;
    const char *f = "tests/data/x.json";
    expect_model_error("{" BASE ", \"num_kv_groups\": 6, \"top_k\": 2, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: num_kv_groups: 6 does not divide num_heads 32");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 9, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: top_k: 9 exceeds num_experts 8");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: top_k: missing");
    expect_model_error("{" BASE ", \"top_k\": 2, \"expert_ffn\": 14336}", f, "tests/data/x.json: num_kv_groups: missing");
    expect_model_error("{" BASE ", \"num_kv_groups\": \"8\", \"top_k\": 2, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: num_kv_groups: expected an integer, got a string");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8.5, \"top_k\": 2, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: num_kv_groups: 8.5 is not an integer");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 1e12}", f,
                       "tests/data/x.json: expert_ffn: 1e+12 is out of range");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": -5}", f,
                       "tests/data/x.json: expert_ffn: must be >= 0, got -5");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 0}", f,
                       "tests/data/x.json: expert_ffn: must be positive");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336, \"num_dense_layers\": 40, "
                       "\"dense_ffn\": 100}", f, "tests/data/x.json: num_dense_layers: 40 exceeds num_layers 32");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336, \"tied_embeddings\": 1}", f,
                       "tests/data/x.json: tied_embeddings: expected true or false, got a number");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336, \"num_kv_group\": 8}", f,
                       "tests/data/x.json: num_kv_group: unknown field");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336, \"router\": \"relu\"}", f,
                       "tests/data/x.json: router: 'relu' is not softmax or sigmoid");
    expect_model_error("{" BASE ", \"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336, \"kv_lora_rank\": 512}", f,
                       "tests/data/x.json: kv_lora_rank: only meaningful with \"mla\": true");
    expect_model_error("{\"num_layers\": 32, \"hidden\": 4100, \"num_heads\": 32, \"num_experts\": 8, \"vocab\": 32000, "
                       "\"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: head_dim: missing, and hidden 4100 is not a multiple of num_heads 32");
    expect_model_error("{\"num_layers\": 0, \"hidden\": 4096, \"num_heads\": 32, \"num_experts\": 8, \"vocab\": 32000, "
                       "\"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336}", f,
                       "tests/data/x.json: num_layers: must be positive, got 0");
    expect_model_error("{\"num_layers\": 32, \"hidden\": 4096, \"num_heads\": 32, \"num_experts\": 8, "
                       "\"num_kv_groups\": 8, \"top_k\": 2, \"expert_ffn\": 14336}", f, "tests/data/x.json: vocab: missing");
    expect_model_error("{\"mla\": true, \"num_layers\": 4, \"hidden\": 64, \"num_heads\": 4, \"num_experts\": 4, "
                       "\"top_k\": 2, \"expert_ffn\": 32, \"vocab\": 100, \"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, "
                       "\"v_head_dim\": 8}", f, "tests/data/x.json: qk_rope_head_dim: missing");
    expect_model_error("[1, 2]", f, "tests/data/x.json: expected a JSON object at the top level, got an array");
    expect_model_error("", f, "tests/data/x.json: not JSON: the file is empty");
    /* syntax error: line 3, column 3 is the '"' after the missing comma */
    expect_model_error("{\n  \"num_layers\": 32\n  \"hidden\": 1}", f,
                       "tests/data/x.json: not JSON: parsing stopped at line 3, column 3");
    expect_model_error("{\"num_layers\": 32,", f, "tests/data/x.json: not JSON: unexpected end of input at line 1");
}

static void test_bad_hf(void **state) {
    (void)state;
    const char *f = "cfg.json";
    expect_model_error("{\"model_type\": \"llama\"}", f,
                       "cfg.json: model_type: 'llama' is not supported (supported: mixtral, qwen2_moe, qwen3_moe, "
                       "deepseek_v2, deepseek_v3, olmoe, dbrx, gpt_oss, llama4, llama4_text, grok-1)");
    expect_model_error("{\"model_type\": 7}", f, "cfg.json: model_type: expected a string, got a number");
    expect_model_error("{\"model_type\": \"mixtral\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 10, \"intermediate_size\": 32, "
                       "\"num_local_experts\": \"8\", \"num_experts_per_tok\": 2}", f, "cfg.json: num_local_experts:");
    expect_model_error("{\"model_type\": \"qwen2_moe\", \"num_hidden_layers\": 4, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 10, \"moe_intermediate_size\": 32, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"shared_expert_intermediate_size\": 64, \"decoder_sparse_step\": 2}",
                       f, "cfg.json: decoder_sparse_step: 2 is not supported");
    expect_model_error("{\"model_type\": \"qwen3_moe\", \"num_hidden_layers\": 4, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 10, \"moe_intermediate_size\": 32, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"mlp_only_layers\": [1, 3], \"intermediate_size\": 64}",
                       f, "cfg.json: mlp_only_layers: must be the first layers");
    expect_model_error("{\"model_type\": \"qwen3_moe\", \"num_hidden_layers\": 4, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 10, \"moe_intermediate_size\": 32, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 8}", f, "cfg.json: num_experts_per_tok: 8 exceeds num_experts 4");
    /* validation errors name the file's keys, not ModelSpec's fields (issue 10) */
    expect_model_error("{\"model_type\": \"mixtral\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"vocab_size\": 10, "
                       "\"intermediate_size\": 32, \"num_local_experts\": 4, \"num_experts_per_tok\": 2}",
                       f, "cfg.json: num_key_value_heads: 3 does not divide num_attention_heads 4");
    expect_model_error("{\"model_type\": \"mixtral\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
                       "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"vocab_size\": 10, "
                       "\"intermediate_size\": 32, \"num_local_experts\": 4, \"num_experts_per_tok\": 5}",
                       f, "cfg.json: num_experts_per_tok: 5 exceeds num_local_experts 4");
    /* qwen3 with a prefix of dense layers is accepted */
    ModelSpec m;
    MpError err = {{0}};
    int rc = model_from_json_text("{\"model_type\": \"qwen3_moe\", \"num_hidden_layers\": 4, \"hidden_size\": 64, "
                                  "\"num_attention_heads\": 4, \"vocab_size\": 10, \"moe_intermediate_size\": 32, "
                                  "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"mlp_only_layers\": [0, 1], "
                                  "\"intermediate_size\": 64}", f, &m, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(m.num_dense_layers, 2);
    assert_int_equal(m.dense_ffn, 64);
    assert_int_equal(m.num_kv_groups, 4);   /* HF default: num_key_value_heads = heads */
    /* deepseek_v3 with "q_lora_rank": null (no query compression, as DeepSeek-V2-Lite) */
    rc = model_from_json_text("{\"model_type\": \"deepseek_v3\", \"num_hidden_layers\": 4, \"hidden_size\": 64, "
                              "\"num_attention_heads\": 4, \"vocab_size\": 10, \"moe_intermediate_size\": 32, "
                              "\"n_routed_experts\": 8, \"num_experts_per_tok\": 2, \"n_shared_experts\": 2, "
                              "\"first_k_dense_replace\": 1, \"intermediate_size\": 96, \"q_lora_rank\": null, "
                              "\"kv_lora_rank\": 16, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 8, "
                              "\"v_head_dim\": 16, \"head_dim\": null}", f, &m, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(m.q_lora_rank, 0);
    assert_int_equal(m.shared_ffn, 2 * 32);
    assert_int_equal(m.head_dim, 16 + 8);
    assert_int_equal(m.num_dense_layers, 1);
    assert_int_equal(m.dense_ffn, 96);
    assert_int_equal(m.router, ROUTER_SIGMOID);   /* scoring_func absent: DeepseekV3's sigmoid */
    assert_int_equal(m.mtp_layers, 0);
}

static void test_lookup_errors(void **state) {
    (void)state;
    ModelSpec m;
    Cluster c;
    MpError err = {{0}};
    assert_int_equal(model_lookup("foo", &m, &err), -1);
    assert_contains(err.msg, "unknown model 'foo' (known: dbrx, deepseek-v2-lite, deepseek-v3, gpt-oss-120b, grok-1, "
                                "llama3-8x70b, llama4-scout, mixtral-8x22b,");
    assert_int_equal(cluster_lookup("dgx-a100", &c, &err), -1);
    assert_contains(err.msg, "unknown cluster 'dgx-a100' (known: dgx-h100, dgx-h200, gb200-nvl72, hgx-b200");
    assert_int_equal(model_lookup("tests/data/no-such-file.json", &m, &err), -1);
    assert_contains(err.msg, "tests/data/no-such-file.json: cannot open: No such file or directory");
    assert_int_equal(model_lookup("tests/data", &m, &err), -1);
    assert_contains(err.msg, "tests/data: cannot read: is a directory");
    assert_int_equal(model_lookup("tests/data/bad-kv-groups.json", &m, &err), -1);
    assert_string_equal(err.msg, "tests/data/bad-kv-groups.json: num_kv_groups: 6 does not divide num_heads 32");
    /* missing comma after "hidden": 4096; bytes before line 5: "{\n" 2 + name line 27 +
     * num_layers line 20 + hidden line 17 = 66, plus 2 spaces of indent = byte 68. */
    assert_int_equal(model_lookup("tests/data/bad-malformed.json", &m, &err), -1);
    assert_string_equal(err.msg, "tests/data/bad-malformed.json: not JSON: parsing stopped at line 5, column 3 "
                                 "(byte 68) near '\"num_heads\": 32'");
    assert_int_equal(model_lookup("tests/data/bad-hf-model-type.json", &m, &err), -1);
    assert_contains(err.msg, "tests/data/bad-hf-model-type.json: model_type: 'llama' is not supported");
    assert_int_equal(cluster_lookup("tests/data/bad-cluster-busbw.json", &c, &err), -1);
    assert_string_equal(err.msg, "tests/data/bad-cluster-busbw.json: nic_busbw_gb_per_s: 60 GB/s exceeds the line "
                                 "rate nic_gbit_per_s 400 Gbit/s = 50 GB/s");
    assert_int_equal(model_lookup("", &m, &err), -1);
    assert_contains(err.msg, "model: empty name");
}

#define CL "\"gpu\": \"X\", \"peak_bf16_tflops\": 989.5, \"peak_fp8_tflops\": 1979, \"hbm_mib\": 81559, " \
           "\"hbm_tb_per_s\": 3.35, \"hbm_achievable_tb_per_s\": 3.0, \"sm_count\": 132, "              \
           "\"nvlink_busbw_gb_per_s\": 370, \"nvlink_latency_us\": 15, \"nics_per_node\": 8, "          \
           "\"nic_gbit_per_s\": 400, \"nic_busbw_gb_per_s\": 47, \"net_latency_us\": 8, "                \
           "\"net_topology\": \"rail-optimized-fat-tree\""

static void expect_cluster_error(const char *text, const char *want) {
    Cluster c;
    MpError err = {{0}};
    assert_int_equal(cluster_from_json_text(text, "topo.json", &c, &err), -1);
    assert_contains(err.msg, want);
}

static void test_bad_clusters(void **state) {
    (void)state;
    Cluster c;
    MpError err = {{0}};
    int rc = cluster_from_json_text("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": 450}",
                                    "topo.json", &c, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(c.name, "topo");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8}", "topo.json: nvlink_gb_per_s: missing");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 0, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": 450}",
                         "topo.json: gpus_per_node: must be positive, got 0");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 4, \"nvlink_domain\": 6, \"nvlink_gb_per_s\": 450}",
                         "topo.json: nvlink_domain: 6 is not a multiple of gpus_per_node 4");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": -1}",
                         "topo.json: nvlink_gb_per_s: must be positive, got -1");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": \"fast\"}",
                         "topo.json: nvlink_gb_per_s: expected a number, got a string");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": 200}",
                         "topo.json: nvlink_busbw_gb_per_s: 370 is more than 1.25 x nvlink_gb_per_s 200");
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": 450, \"nvlink\": 1}",
                         "topo.json: nvlink: unknown field");
    /* found by tests/fuzz: rates near zero made the simulated step infinite */
    expect_cluster_error("{" CL ", \"gpus_per_node\": 8, \"nvlink_domain\": 8, \"nvlink_gb_per_s\": 1e-300}",
                         "topo.json: nvlink_gb_per_s: 1e-300 is outside the plausible range [1, 100000]");
}

static void test_read_text_file(void **state) {
    (void)state;
    char *text = NULL;
    MpError err;
    assert_int_equal(read_text_file("tests/data/bad-top-k.json", &text, &err), 0);
    assert_non_null(strstr(text, "\"top_k\": 10"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_entry_loads), cmocka_unit_test(test_dgx_h100_units),
        cmocka_unit_test(test_hf_configs),        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_bad_hf),            cmocka_unit_test(test_lookup_errors),
        cmocka_unit_test(test_bad_clusters),      cmocka_unit_test(test_read_text_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
