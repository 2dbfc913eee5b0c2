/* hf_config.c: ModelSpec from a HuggingFace config.json.
 *
 * One reader per model_type.  A key missing from the file takes the default
 * of the transformers configuration class of that type (the value a
 * `from_pretrained` of the same file would use), so an abridged config
 * gives the model transformers would build.  Key meanings and module shapes
 * (transformers' configuration_*.py and modeling_*.py of each type):
 *   mixtral      intermediate_size = expert FFN, num_local_experts; softmax
 *                top-k renormalised; every layer MoE.
 *   qwen2_moe    moe_intermediate_size = expert FFN, shared_expert_intermediate_size
 *                with a sigmoid gate (Linear h->1); QKV bias; layer i is MoE
 *                when i is not in mlp_only_layers and (i+1) % decoder_sparse_step == 0.
 *   qwen3_moe    as qwen2_moe without shared expert and QKV bias, plus head_dim
 *                and per-head q/k RMSNorm.
 *   deepseek_v2  MLA, n_shared_experts * moe_intermediate_size shared FFN,
 *   deepseek_v3  first_k_dense_replace dense layers of intermediate_size;
 *                v2: softmax router (scoring_func), group-limited routing with
 *                topk_method group_limited_greedy; v3: sigmoid router with the
 *                e_score_correction_bias buffer, n_group/topk_group, MTP layers
 *                (num_nextn_predict_layers, not built by transformers).
 *   olmoe        q/k RMSNorm over all heads (q_norm h, k_norm g*d); softmax over
 *                all experts, norm_topk_prob false.
 *   dbrx         d_model, n_heads, n_layers, attn_config{kv_n_heads, rope_theta},
 *                ffn_config{ffn_hidden_size, moe_num_experts, moe_top_k,
 *                moe_loss_weight, moe_normalize_expert_weights}; LayerNorm
 *                without bias.
 *   gpt_oss      biases on q, k, v, o (attention_bias), a sink per head,
 *                router Linear with bias, experts gate_up [E,h,2F] + bias [E,2F],
 *                down [E,F,h] + bias [E,h]; sliding/full attention alternating.
 *   llama4       text_config (model_type llama4_text): top-1 sigmoid router
 *                scaling the expert input, a shared expert of intermediate_size,
 *                dense layers of intermediate_size_mlp, weightless L2 q/k norm,
 *                no RoPE every no_rope_layer_interval-th layer.
 *   grok-1       8 experts top-2 with gated GELU, sandwich norms (4 per layer),
 *                tied embeddings (xai-org/grok-1 run.py; HF ports hpcai-tech/grok-1).
 * ModelSpec can only express "the first Ld layers are dense, the rest MoE", so
 * other layer patterns are rejected with a message naming the key.
 */
#include "hf_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "json_util.h"

/* The transformers class defaults of one model_type (0 where the class has
 * none or the key does not exist). */
typedef struct {
    int layers, hidden, heads, kv_heads, vocab, ffn, expert_ffn, experts, top_k, head_dim;
    double rope_theta, aux_coef;
    bool tied;
} HfDefaults;

static int opt_int_def(const cJSON *root, const char *key, const char *origin, int def, int *out, MpError *err) {
    *out = def;
    return json_opt_int(root, key, origin, out, err);
}

static int opt_double_def(const cJSON *root, const char *key, const char *origin, double def, double *out, MpError *err) {
    *out = def;
    return json_opt_double(root, key, origin, out, err);
}

static int opt_bool_def(const cJSON *root, const char *key, const char *origin, bool def, bool *out, MpError *err) {
    *out = def;
    return json_opt_bool(root, key, origin, out, err);
}

static bool has_key(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return v && !cJSON_IsNull(v);
}

/* Layers 0..Ld-1 dense, the rest MoE, from qwen-style keys. */
static int qwen_layer_pattern(const cJSON *root, const char *origin, int def_ffn, ModelSpec *m, MpError *err) {
    int step = 1;
    if (json_opt_int(root, "decoder_sparse_step", origin, &step, err)) return -1;
    if (step != 1)
        return mp_fail(err, "%s: decoder_sparse_step: %d is not supported (moeplan models the first layers as "
                       "dense and all others as MoE, so only 1 is accepted)", origin, step);
    const cJSON *only = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    m->num_dense_layers = 0;
    if (only && !cJSON_IsNull(only)) {
        if (!cJSON_IsArray(only))
            return mp_fail(err, "%s: mlp_only_layers: expected an array, got %s", origin, json_type_name(only));
        int expect = 0;
        for (const cJSON *it = only->child; it; it = it->next, expect++) {
            if (!cJSON_IsNumber(it) || it->valuedouble != expect)
                return mp_fail(err, "%s: mlp_only_layers: must be the first layers 0, 1, ..., k-1 in order "
                               "(moeplan models the first layers as dense)", origin);
        }
        m->num_dense_layers = expect;
    }
    if (m->num_dense_layers > 0 && opt_int_def(root, "intermediate_size", origin, def_ffn, &m->dense_ffn, err)) return -1;
    return 0;
}

/* Keys every decoder config shares.  mla: the head dims come from the MLA
 * keys, so hidden need not split over heads. */
static int common_keys(const cJSON *root, const char *origin, const HfDefaults *d, bool mla, ModelSpec *m, MpError *err) {
    if (opt_int_def(root, "num_hidden_layers", origin, d->layers, &m->num_layers, err) ||
        opt_int_def(root, "hidden_size", origin, d->hidden, &m->hidden, err) ||
        opt_int_def(root, "num_attention_heads", origin, d->heads, &m->num_heads, err) ||
        opt_int_def(root, "vocab_size", origin, d->vocab, &m->vocab, err) ||
        opt_double_def(root, "rope_theta", origin, d->rope_theta, &m->rotary_base, err) ||
        opt_bool_def(root, "tie_word_embeddings", origin, d->tied, &m->tied_embeddings, err))
        return -1;
    /* transformers: num_key_value_heads None -> num_attention_heads */
    if (opt_int_def(root, "num_key_value_heads", origin, d->kv_heads > 0 ? d->kv_heads : m->num_heads,
                    &m->num_kv_groups, err))
        return -1;
    if (m->num_heads > 0 && m->hidden > 0) m->head_dim = d->head_dim > 0 ? d->head_dim : m->hidden / m->num_heads;
    if (json_opt_int(root, "head_dim", origin, &m->head_dim, err)) return -1;
    if (!mla && !d->head_dim && m->num_heads > 0 && m->hidden % m->num_heads && !has_key(root, "head_dim"))
        return mp_fail(err, "%s: head_dim: missing, and hidden_size %d is not a multiple of num_attention_heads %d",
                       origin, m->hidden, m->num_heads);
    char act[32] = "silu";
    if (json_opt_string(root, "hidden_act", origin, act, sizeof act, err)) return -1;
    if (!strcmp(act, "gelu") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_new")) m->gelu = true;
    else if (strcmp(act, "silu") && strcmp(act, "swiglu"))
        return mp_fail(err, "%s: hidden_act: '%s' is not supported (gated SiLU or GELU MLPs only)", origin, act);
    m->swiglu = true;
    m->router = ROUTER_SOFTMAX;
    m->norm = NORM_RMS;
    return 0;
}

/* Load balancing from an auxiliary-loss coefficient: none when it is 0. */
static void aux_loss(ModelSpec *m, double coef, bool per_sequence) {
    m->aux_loss_coeff = coef;
    m->load_balancing = coef > 0 ? (per_sequence ? LB_SEQ_AUX_LOSS : LB_AUX_LOSS) : LB_NONE;
}

/* transformers MixtralConfig defaults (Mixtral-8x7B) */
static const HfDefaults mixtral_defaults = {
    .layers = 32, .hidden = 4096, .heads = 32, .kv_heads = 8, .vocab = 32000, .ffn = 14336,
    .experts = 8, .top_k = 2, .rope_theta = 1e6, .aux_coef = 0.001,
};

static int from_mixtral(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    const HfDefaults *d = &mixtral_defaults;
    double coef;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "intermediate_size", origin, d->ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "num_local_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        opt_double_def(root, "router_aux_loss_coef", origin, d->aux_coef, &coef, err))
        return -1;
    aux_loss(m, coef, false);
    return 0;
}

/* transformers Qwen2MoeConfig / Qwen3MoeConfig defaults */
static const HfDefaults qwen2_defaults = {
    .layers = 24, .hidden = 2048, .heads = 16, .vocab = 151936, .ffn = 5632, .expert_ffn = 1408,
    .experts = 60, .top_k = 4, .rope_theta = 10000, .aux_coef = 0.001,
};
static const HfDefaults qwen3_defaults = {
    .layers = 24, .hidden = 2048, .heads = 32, .kv_heads = 4, .vocab = 151936, .ffn = 6144, .expert_ffn = 768,
    .experts = 128, .top_k = 8, .rope_theta = 10000, .aux_coef = 0.001,
};

static int from_qwen_moe(const cJSON *root, const char *origin, bool qwen2, ModelSpec *m, MpError *err) {
    const HfDefaults *d = qwen2 ? &qwen2_defaults : &qwen3_defaults;
    bool norm_topk = false;
    double coef;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "moe_intermediate_size", origin, d->expert_ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "num_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        json_opt_bool(root, "norm_topk_prob", origin, &norm_topk, err) ||
        opt_double_def(root, "router_aux_loss_coef", origin, d->aux_coef, &coef, err) ||
        qwen_layer_pattern(root, origin, d->ffn, m, err))
        return -1;
    m->router_pre_softmax = !norm_topk;   /* softmax over all experts, top-k weights not renormalised */
    aux_loss(m, coef, false);
    if (qwen2) {
        m->qkv_bias = true;   /* Qwen2 attention has biases on q, k and v */
        m->shared_expert_gate = true;
        if (opt_int_def(root, "shared_expert_intermediate_size", origin, 5632, &m->shared_ffn, err)) return -1;
    } else {
        m->qk_norm = QK_NORM_HEAD;
        if (json_opt_bool(root, "attention_bias", origin, &m->qkv_bias, err)) return -1;
        m->attn_out_bias = m->qkv_bias;   /* Qwen3MoeAttention: attention_bias applies to q, k, v and o */
    }
    return 0;
}

/* transformers DeepseekV2Config / DeepseekV3Config defaults */
static const HfDefaults dsv2_defaults = {
    .layers = 32, .hidden = 4096, .heads = 32, .vocab = 32000, .ffn = 11008, .expert_ffn = 1407,
    .experts = 64, .top_k = 0, .rope_theta = 10000, .aux_coef = 0.001,
};
/* aux_coef: DeepseekV3Config has no auxiliary-loss key; 1e-4 is the
 * sequence-wise balance factor of the DeepSeek-V3 report (Section 4.2). */
static const HfDefaults dsv3_defaults = {
    .layers = 61, .hidden = 7168, .heads = 128, .kv_heads = 128, .vocab = 129280, .ffn = 18432, .expert_ffn = 2048,
    .experts = 256, .top_k = 8, .rope_theta = 10000, .aux_coef = 1e-4,
};

static int from_deepseek(const cJSON *root, const char *origin, bool v3, ModelSpec *m, MpError *err) {
    const HfDefaults *d = v3 ? &dsv3_defaults : &dsv2_defaults;
    int shared, freq = 1;
    double coef, scale;
    bool norm_topk, seq_aux = true;
    if (common_keys(root, origin, d, true, m, err) ||
        opt_int_def(root, "moe_intermediate_size", origin, d->expert_ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "n_routed_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        opt_int_def(root, "n_shared_experts", origin, v3 ? 1 : 2, &shared, err) ||
        opt_int_def(root, "first_k_dense_replace", origin, v3 ? 3 : 0, &m->num_dense_layers, err) ||
        json_opt_int(root, "moe_layer_freq", origin, &freq, err) ||
        opt_int_def(root, "kv_lora_rank", origin, 512, &m->kv_lora_rank, err) ||
        opt_int_def(root, "qk_nope_head_dim", origin, 128, &m->qk_nope_head_dim, err) ||
        opt_int_def(root, "qk_rope_head_dim", origin, 64, &m->qk_rope_head_dim, err) ||
        opt_int_def(root, "v_head_dim", origin, 128, &m->v_head_dim, err) ||
        json_opt_int(root, "num_nextn_predict_layers", origin, &m->mtp_layers, err) ||
        opt_bool_def(root, "norm_topk_prob", origin, v3, &norm_topk, err) ||
        opt_double_def(root, "routed_scaling_factor", origin, v3 ? 2.5 : 1.0, &scale, err) ||
        opt_double_def(root, "aux_loss_alpha", origin, d->aux_coef, &coef, err) ||
        json_opt_bool(root, "seq_aux", origin, &seq_aux, err))
        return -1;
    /* q_lora_rank: the class default 1536; an explicit null means no query compression */
    const cJSON *qr = cJSON_GetObjectItemCaseSensitive(root, "q_lora_rank");
    if (!qr) m->q_lora_rank = 1536;
    else if (json_opt_int(root, "q_lora_rank", origin, &m->q_lora_rank, err)) return -1;
    if (m->top_k <= 0) return mp_fail(err, "%s: num_experts_per_tok: missing (DeepseekV2Config has no default)", origin);
    if (freq != 1)
        return mp_fail(err, "%s: moe_layer_freq: %d is not supported (only every layer after the dense ones)", origin, freq);
    if (shared < 0) return mp_fail(err, "%s: n_shared_experts: must be >= 0, got %d", origin, shared);
    if (m->expert_ffn > 0 && shared > INT_MAX / m->expert_ffn)
        return mp_fail(err, "%s: n_shared_experts: %d x moe_intermediate_size %d overflows a shared FFN width", origin,
                       shared, m->expert_ffn);
    m->shared_ffn = shared * m->expert_ffn;
    if (m->num_dense_layers > 0 && opt_int_def(root, "intermediate_size", origin, d->ffn, &m->dense_ffn, err)) return -1;
    char scoring[32], method[32];
    snprintf(scoring, sizeof scoring, "%s", v3 ? "sigmoid" : "softmax");
    snprintf(method, sizeof method, "%s", v3 ? "noaux_tc" : "greedy");
    if (json_opt_string(root, "scoring_func", origin, scoring, sizeof scoring, err) ||
        json_opt_string(root, "topk_method", origin, method, sizeof method, err))
        return -1;
    if (!strcmp(scoring, "sigmoid")) m->router = ROUTER_SIGMOID;
    else if (!strcmp(scoring, "softmax")) m->router = ROUTER_SOFTMAX;
    else return mp_fail(err, "%s: scoring_func: '%s' is not softmax or sigmoid", origin, scoring);
    bool grouped;
    if (!strcmp(method, "noaux_tc")) {
        m->router_expert_bias = true;
        grouped = true;
        if (m->router != ROUTER_SIGMOID)
            return mp_fail(err, "%s: topk_method: noaux_tc needs scoring_func sigmoid", origin);
    } else if (!strcmp(method, "group_limited_greedy")) {
        grouped = true;
    } else if (!strcmp(method, "greedy")) {
        grouped = false;
    } else {
        return mp_fail(err, "%s: topk_method: '%s' is not greedy, group_limited_greedy or noaux_tc", origin, method);
    }
    if (grouped) {
        if (opt_int_def(root, "n_group", origin, v3 ? 8 : 0, &m->router_groups, err) ||
            opt_int_def(root, "topk_group", origin, v3 ? 4 : 0, &m->router_group_topk, err))
            return -1;
        if (m->router_groups <= 1) m->router_groups = m->router_group_topk = 0;   /* one group: plain top-k */
    }
    m->router_pre_softmax = m->router == ROUTER_SOFTMAX && !norm_topk;
    m->router_scale = scale != 1.0 ? scale : 0;
    aux_loss(m, coef, seq_aux);
    m->mla = true;
    m->num_kv_groups = m->num_heads;   /* MLA: every head has its own K and V */
    if (m->qk_nope_head_dim < 0 || m->qk_rope_head_dim < 0 || m->qk_nope_head_dim > INT_MAX - m->qk_rope_head_dim)
        return mp_fail(err, "%s: qk_nope_head_dim %d + qk_rope_head_dim %d: not a head dimension", origin,
                       m->qk_nope_head_dim, m->qk_rope_head_dim);
    m->head_dim = m->qk_nope_head_dim + m->qk_rope_head_dim;
    return 0;
}

/* transformers OlmoeConfig defaults (OLMoE-1B-7B) */
static const HfDefaults olmoe_defaults = {
    .layers = 16, .hidden = 2048, .heads = 16, .vocab = 50304, .ffn = 2048, .experts = 64, .top_k = 8,
    .rope_theta = 10000, .aux_coef = 0.01,
};

static int from_olmoe(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    const HfDefaults *d = &olmoe_defaults;
    bool norm_topk = false;
    double coef;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "intermediate_size", origin, d->ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "num_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        json_opt_bool(root, "norm_topk_prob", origin, &norm_topk, err) ||
        json_opt_bool(root, "attention_bias", origin, &m->qkv_bias, err) ||
        opt_double_def(root, "router_aux_loss_coef", origin, d->aux_coef, &coef, err))
        return -1;
    m->attn_out_bias = m->qkv_bias;   /* OlmoeAttention: attention_bias applies to q, k, v and o */
    m->qk_norm = QK_NORM_FULL;        /* q_norm RMSNorm(h), k_norm RMSNorm(g*d) */
    m->router_pre_softmax = !norm_topk;
    aux_loss(m, coef, false);
    return 0;
}

/* transformers DbrxConfig / DbrxAttentionConfig / DbrxFFNConfig defaults */
static int from_dbrx(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    double coef = 0.01, normalize = 1.0;
    m->rotary_base = 10000;
    m->num_kv_groups = 1;
    m->expert_ffn = 3584;
    m->num_experts = 4;
    m->top_k = 1;
    if (opt_int_def(root, "n_layers", origin, 24, &m->num_layers, err) ||
        opt_int_def(root, "d_model", origin, 2048, &m->hidden, err) ||
        opt_int_def(root, "n_heads", origin, 16, &m->num_heads, err) ||
        opt_int_def(root, "vocab_size", origin, 32000, &m->vocab, err) ||
        opt_bool_def(root, "tie_word_embeddings", origin, false, &m->tied_embeddings, err))
        return -1;
    const cJSON *attn = cJSON_GetObjectItemCaseSensitive(root, "attn_config");
    if (attn && !cJSON_IsNull(attn)) {
        if (!cJSON_IsObject(attn))
            return mp_fail(err, "%s: attn_config: expected an object, got %s", origin, json_type_name(attn));
        if (json_opt_int(attn, "kv_n_heads", origin, &m->num_kv_groups, err) ||
            json_opt_double(attn, "rope_theta", origin, &m->rotary_base, err))
            return -1;
    }
    const cJSON *ffn = cJSON_GetObjectItemCaseSensitive(root, "ffn_config");
    if (ffn && !cJSON_IsNull(ffn)) {
        if (!cJSON_IsObject(ffn))
            return mp_fail(err, "%s: ffn_config: expected an object, got %s", origin, json_type_name(ffn));
        if (json_opt_int(ffn, "ffn_hidden_size", origin, &m->expert_ffn, err) ||
            json_opt_int(ffn, "moe_num_experts", origin, &m->num_experts, err) ||
            json_opt_int(ffn, "moe_top_k", origin, &m->top_k, err) ||
            json_opt_double(ffn, "moe_loss_weight", origin, &coef, err))
            return -1;
        const cJSON *nw = cJSON_GetObjectItemCaseSensitive(ffn, "moe_normalize_expert_weights");
        if (nw && cJSON_IsNull(nw)) normalize = 0;
        else if (json_opt_double(ffn, "moe_normalize_expert_weights", origin, &normalize, err)) return -1;
    }
    if (m->num_heads <= 0 || m->hidden % m->num_heads)
        return mp_fail(err, "%s: n_heads: %d does not divide d_model %d", origin, m->num_heads, m->hidden);
    m->head_dim = m->hidden / m->num_heads;
    m->swiglu = true;
    m->norm = NORM_LAYER;   /* nn.LayerNorm(d_model, bias=False): weights only */
    m->router = ROUTER_SOFTMAX;
    /* moe_normalize_expert_weights p: the top-k softmax weights divided by
     * their p-norm; p = 1 is the renormalised top-k (Megatron's default),
     * none leaves the pre-top-k softmax weights. */
    m->router_pre_softmax = normalize == 0;
    aux_loss(m, coef, false);
    return 0;
}

/* transformers GptOssConfig defaults (gpt-oss-120b) */
static const HfDefaults gptoss_defaults = {
    .layers = 36, .hidden = 2880, .heads = 64, .kv_heads = 8, .vocab = 201088, .ffn = 2880, .experts = 128,
    .top_k = 4, .head_dim = 64, .rope_theta = 150000, .aux_coef = 0.9,
};

static int from_gpt_oss(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    const HfDefaults *d = &gptoss_defaults;
    bool bias = true;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "intermediate_size", origin, d->ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "num_local_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        opt_int_def(root, "sliding_window", origin, 128, &m->sliding_window, err) ||
        json_opt_bool(root, "attention_bias", origin, &bias, err))
        return -1;
    m->qkv_bias = m->attn_out_bias = bias;
    m->attn_sinks = true;
    m->expert_bias_linear = true;
    m->clamped_glu = true;   /* GptOssExperts: gate clamped at 7, (up + 1) * gate * sigmoid(1.702 gate) */
    /* layer_types: "sliding_attention"/"full_attention"; the class default
     * alternates, starting with sliding (every 2nd layer full). */
    m->sliding_window_every = m->sliding_window > 0 ? 2 : 0;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != m->num_layers)
            return mp_fail(err, "%s: layer_types: expected an array of num_hidden_layers %d strings", origin, m->num_layers);
        int i = 0;
        for (const cJSON *it = lt->child; it; it = it->next, i++) {
            const char *want = i % 2 ? "full_attention" : "sliding_attention";
            if (!cJSON_IsString(it) || strcmp(it->valuestring, want))
                return mp_fail(err, "%s: layer_types: only alternating sliding_attention, full_attention "
                               "(from layer 0) is supported; layer %d differs", origin, i);
        }
    }
    /* The router's auxiliary loss is not used in training (Megatron-Bridge's
     * gpt-oss provider sets load balancing to none). */
    aux_loss(m, 0, false);
    return 0;
}

/* transformers Llama4TextConfig defaults (Llama-4-Scout) */
static const HfDefaults llama4_defaults = {
    .layers = 48, .hidden = 5120, .heads = 40, .kv_heads = 8, .vocab = 202048, .ffn = 8192, .experts = 16,
    .top_k = 1, .head_dim = 128, .rope_theta = 500000, .aux_coef = 0.001,
};

static int from_llama4_text(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    const HfDefaults *d = &llama4_defaults;
    int step = 1, dense_ffn = 16384, nope = 4;
    bool qk = true;
    double coef;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "intermediate_size", origin, d->ffn, &m->expert_ffn, err) ||
        json_opt_int(root, "intermediate_size_mlp", origin, &dense_ffn, err) ||
        opt_int_def(root, "num_local_experts", origin, d->experts, &m->num_experts, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        json_opt_int(root, "interleave_moe_layer_step", origin, &step, err) ||
        json_opt_int(root, "no_rope_layer_interval", origin, &nope, err) ||
        json_opt_bool(root, "use_qk_norm", origin, &qk, err) ||
        json_opt_bool(root, "attention_bias", origin, &m->qkv_bias, err) ||
        opt_double_def(root, "router_aux_loss_coef", origin, d->aux_coef, &coef, err))
        return -1;
    (void)dense_ffn;   /* dense layers (intermediate_size_mlp) only exist with interleave_moe_layer_step > 1 */
    const cJSON *moe_layers = cJSON_GetObjectItemCaseSensitive(root, "moe_layers");
    if (moe_layers && !cJSON_IsNull(moe_layers)) {
        int i = 0;
        bool all = cJSON_IsArray(moe_layers) && cJSON_GetArraySize(moe_layers) == m->num_layers;
        for (const cJSON *it = all ? moe_layers->child : NULL; it; it = it->next, i++)
            if (!cJSON_IsNumber(it) || it->valuedouble != i) all = false;
        if (!all)
            return mp_fail(err, "%s: moe_layers: only every layer MoE is supported (moeplan models the first "
                           "layers as dense and all others as MoE)", origin);
    } else if (step != 1) {
        return mp_fail(err, "%s: interleave_moe_layer_step: %d is not supported (moeplan models the first layers "
                       "as dense and all others as MoE, so only 1 is accepted)", origin, step);
    }
    if (has_key(root, "no_rope_layers"))
        return mp_fail(err, "%s: no_rope_layers: an explicit list is not supported (no_rope_layer_interval is)", origin);
    m->attn_out_bias = m->qkv_bias;
    m->qk_norm = qk ? QK_NORM_L2 : QK_NORM_NONE;
    m->nope_every = nope > 0 ? nope : 0;
    m->shared_ffn = m->expert_ffn;   /* one shared expert of intermediate_size */
    m->router = ROUTER_SIGMOID;      /* sigmoid of the top-1 logit */
    m->router_probs_on_input = true; /* the routing weight scales the expert input */
    aux_loss(m, coef, false);
    return 0;
}

/* Grok-1 (xai-org/grok-1 run.py: 64 layers, emb 6144, 48 heads, 8 KV heads,
 * key size 128, widening factor 8 -> FFN 32768, 8 experts top-2, vocab 131072). */
static const HfDefaults grok_defaults = {
    .layers = 64, .hidden = 6144, .heads = 48, .kv_heads = 8, .vocab = 131072, .ffn = 32768, .experts = 8,
    .top_k = 2, .head_dim = 128, .rope_theta = 10000, .tied = true,
};

static int from_grok(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    const HfDefaults *d = &grok_defaults;
    double coef = 0;
    if (common_keys(root, origin, d, false, m, err) ||
        opt_int_def(root, "intermediate_size", origin, d->ffn, &m->expert_ffn, err) ||
        opt_int_def(root, "num_experts_per_tok", origin, d->top_k, &m->top_k, err) ||
        json_opt_double(root, "router_aux_loss_coef", origin, &coef, err))
        return -1;
    m->num_experts = d->experts;
    const char *ekey = has_key(root, "num_local_experts") ? "num_local_experts" : "num_experts";
    if (json_opt_int(root, ekey, origin, &m->num_experts, err)) return -1;
    if (!has_key(root, "hidden_act")) m->gelu = true;   /* Grok-1's experts: gelu(x W) * (x V) */
    m->sandwich_norm = true;
    m->router_pre_softmax = true;   /* softmax over all experts, top-2 weights not renormalised */
    aux_loss(m, coef, false);
    return 0;
}

/* Last path component of _name_or_path ("org/Model-Name" -> "Model-Name"). */
static void name_from_path(const char *path, char *out, size_t len) {
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t k = n - start < len - 1 ? n - start : len - 1;
    memcpy(out, path + start, k);
    out[k] = 0;
}

static const char *const supported_types =
    "mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3, olmoe, dbrx, gpt_oss, llama4, llama4_text, grok-1";

static int from_type(const cJSON *root, const char *origin, const char *type, ModelSpec *out, MpError *err) {
    if (!strcmp(type, "mixtral")) return from_mixtral(root, origin, out, err);
    if (!strcmp(type, "qwen2_moe")) return from_qwen_moe(root, origin, true, out, err);
    if (!strcmp(type, "qwen3_moe")) return from_qwen_moe(root, origin, false, out, err);
    if (!strcmp(type, "deepseek_v2")) return from_deepseek(root, origin, false, out, err);
    if (!strcmp(type, "deepseek_v3")) return from_deepseek(root, origin, true, out, err);
    if (!strcmp(type, "olmoe")) return from_olmoe(root, origin, out, err);
    if (!strcmp(type, "dbrx")) return from_dbrx(root, origin, out, err);
    if (!strcmp(type, "gpt_oss")) return from_gpt_oss(root, origin, out, err);
    if (!strcmp(type, "llama4_text")) return from_llama4_text(root, origin, out, err);
    if (!strcmp(type, "grok-1") || !strcmp(type, "grok1") || !strcmp(type, "grok"))
        return from_grok(root, origin, out, err);
    return mp_fail(err, "%s: model_type: '%.64s' is not supported (supported: %s)", origin, type, supported_types);
}

int model_from_hf_config(const cJSON *root, const char *origin, ModelSpec *out, MpError *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(t) || !t->valuestring)
        return mp_fail(err, "%s: model_type: expected a string, got %s", origin, json_type_name(t));
    memset(out, 0, sizeof *out);
    const char *type = t->valuestring;
    const cJSON *cfg = root;
    if (!strcmp(type, "llama4")) {   /* the multimodal wrapper: the text model is text_config */
        cfg = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        if (!cJSON_IsObject(cfg))
            return mp_fail(err, "%s: text_config: expected an object (model_type llama4), got %s", origin,
                           json_type_name(cfg));
        type = "llama4_text";
    }
    if (from_type(cfg, origin, type, out, err)) return -1;
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(root, "_name_or_path");
    if (cJSON_IsString(np) && np->valuestring) name_from_path(np->valuestring, out->name, sizeof out->name);
    return 0;
}

/* ModelSpec field -> the key of a HuggingFace config.json of this type that
 * sets it (NULL: same name or no key). */
static const char *hf_key_for(const char *type, const char *field) {
    static const char *const common[][2] = {
        {"num_layers", "num_hidden_layers"}, {"hidden", "hidden_size"}, {"num_heads", "num_attention_heads"},
        {"num_kv_groups", "num_key_value_heads"}, {"vocab", "vocab_size"}, {"tied_embeddings", "tie_word_embeddings"},
        {"swiglu", "hidden_act"}, {"top_k", "num_experts_per_tok"}, {"qkv_bias", "attention_bias"},
    };
    static const char *const mixtral[][2] = {{"expert_ffn", "intermediate_size"}, {"num_experts", "num_local_experts"}};
    static const char *const qwen[][2] = {
        {"expert_ffn", "moe_intermediate_size"}, {"shared_ffn", "shared_expert_intermediate_size"},
        {"dense_ffn", "intermediate_size"}, {"num_dense_layers", "mlp_only_layers"},
    };
    static const char *const deepseek[][2] = {
        {"expert_ffn", "moe_intermediate_size"}, {"num_experts", "n_routed_experts"},
        {"shared_ffn", "n_shared_experts"}, {"dense_ffn", "intermediate_size"},
        {"num_dense_layers", "first_k_dense_replace"}, {"mtp_layers", "num_nextn_predict_layers"},
        {"router", "scoring_func"}, {"head_dim", "qk_nope_head_dim + qk_rope_head_dim"},
    };
    const char *const (*t)[2] = NULL;
    size_t n = 0;
    if (!strcmp(type, "mixtral")) { t = mixtral; n = sizeof mixtral / sizeof mixtral[0]; }
    else if (!strncmp(type, "qwen", 4)) { t = qwen; n = sizeof qwen / sizeof qwen[0]; }
    else if (!strcmp(type, "deepseek_v3")) { t = deepseek; n = sizeof deepseek / sizeof deepseek[0]; }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(field, t[i][0])) return t[i][1];
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        if (!strcmp(field, common[i][0])) return common[i][1];
    return NULL;
}

int hf_config_rename_fields(const char *model_type, const char *msg, char **out) {
    size_t cap = strlen(msg) * 4 + 64, o = 0;   /* each word grows at most to its longest key */
    char *s = malloc(cap);
    if (!s) return -1;
    for (const char *p = msg; *p;) {
        if ((*p >= 'a' && *p <= 'z') || *p == '_') {
            const char *b = p;
            while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
            char word[64];
            size_t len = (size_t)(p - b);
            const char *key = NULL;
            if (len < sizeof word) {
                memcpy(word, b, len);
                word[len] = 0;
                key = hf_key_for(model_type, word);
            }
            const char *src = key ? key : b;
            size_t sl = key ? strlen(key) : len;
            if (o + sl + 1 >= cap) {
                cap = (o + sl + 1) * 2;
                char *ns = realloc(s, cap);
                if (!ns) { free(s); return -1; }
                s = ns;
            }
            memcpy(s + o, src, sl);
            o += sl;
        } else {
            if (o + 2 >= cap) {
                cap *= 2;
                char *ns = realloc(s, cap);
                if (!ns) { free(s); return -1; }
                s = ns;
            }
            s[o++] = *p++;
        }
    }
    s[o] = 0;
    *out = s;
    return 0;
}
