/* hf_config.c: ModelSpec from a HuggingFace config.json.
 *
 * Key meanings (transformers' configuration_*.py of each model type):
 *   mixtral      intermediate_size = expert FFN, num_local_experts, no shared
 *                expert, every layer MoE.
 *   qwen2_moe    moe_intermediate_size = expert FFN, shared_expert_intermediate_size,
 *                QKV bias; layer i is MoE when i is not in mlp_only_layers and
 *                (i+1) % decoder_sparse_step == 0; dense layers use intermediate_size.
 *   qwen3_moe    as qwen2_moe without shared expert and QKV bias, plus head_dim.
 *   deepseek_v3  MLA, n_shared_experts * moe_intermediate_size shared FFN,
 *                first_k_dense_replace dense layers of intermediate_size,
 *                sigmoid router (scoring_func), num_nextn_predict_layers MTP.
 * ModelSpec can only express "the first Ld layers are dense, the rest MoE", so
 * other layer patterns (decoder_sparse_step > 1, mlp_only_layers that are not
 * a prefix, moe_layer_freq > 1) are rejected with a message saying so.
 */
#include "hf_config.h"

#include <stdlib.h>
#include <string.h>

#include "json_util.h"

/* Layers 0..Ld-1 dense, the rest MoE, from qwen-style keys. */
static int qwen_layer_pattern(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
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
    if (m->num_dense_layers > 0 && json_req_int(root, "intermediate_size", origin, &m->dense_ffn, err)) return -1;
    return 0;
}

/* mla: the head dims come from the MLA keys, so hidden need not split over heads. */
static int common_keys(const cJSON *root, const char *origin, bool mla, ModelSpec *m, MpError *err) {
    if (json_req_int(root, "num_hidden_layers", origin, &m->num_layers, err) ||
        json_req_int(root, "hidden_size", origin, &m->hidden, err) ||
        json_req_int(root, "num_attention_heads", origin, &m->num_heads, err) ||
        json_req_int(root, "vocab_size", origin, &m->vocab, err))
        return -1;
    m->num_kv_groups = m->num_heads;   /* HF default: num_key_value_heads = num_attention_heads */
    if (json_opt_int(root, "num_key_value_heads", origin, &m->num_kv_groups, err)) return -1;
    m->tied_embeddings = false;
    if (json_opt_bool(root, "tie_word_embeddings", origin, &m->tied_embeddings, err)) return -1;
    if (m->num_heads > 0 && m->hidden > 0) m->head_dim = m->hidden / m->num_heads;
    if (json_opt_int(root, "head_dim", origin, &m->head_dim, err)) return -1;
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!mla && m->num_heads > 0 && m->hidden % m->num_heads && (!hd || cJSON_IsNull(hd)))
        return mp_fail(err, "%s: head_dim: missing, and hidden_size %d is not a multiple of num_attention_heads %d",
                       origin, m->hidden, m->num_heads);
    char act[32] = "silu";
    if (json_opt_string(root, "hidden_act", origin, act, sizeof act, err)) return -1;
    if (strcmp(act, "silu") && strcmp(act, "swiglu"))
        return mp_fail(err, "%s: hidden_act: '%s' is not supported (gated SiLU MLPs only)", origin, act);
    m->swiglu = true;
    m->router = ROUTER_SOFTMAX;
    return 0;
}

static int from_mixtral(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    if (common_keys(root, origin, false, m, err) ||
        json_req_int(root, "intermediate_size", origin, &m->expert_ffn, err) ||
        json_req_int(root, "num_local_experts", origin, &m->num_experts, err) ||
        json_req_int(root, "num_experts_per_tok", origin, &m->top_k, err))
        return -1;
    return 0;
}

static int from_qwen_moe(const cJSON *root, const char *origin, bool qwen2, ModelSpec *m, MpError *err) {
    if (common_keys(root, origin, false, m, err) ||
        json_req_int(root, "moe_intermediate_size", origin, &m->expert_ffn, err) ||
        json_req_int(root, "num_experts", origin, &m->num_experts, err) ||
        json_req_int(root, "num_experts_per_tok", origin, &m->top_k, err) ||
        qwen_layer_pattern(root, origin, m, err))
        return -1;
    if (qwen2) {
        m->qkv_bias = true;   /* Qwen2 attention has biases on q, k and v */
        if (json_req_int(root, "shared_expert_intermediate_size", origin, &m->shared_ffn, err)) return -1;
    } else {
        m->qkv_bias = false;
        if (json_opt_bool(root, "attention_bias", origin, &m->qkv_bias, err)) return -1;
    }
    return 0;
}

static int from_deepseek_v3(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    int shared = 0, freq = 1;
    if (common_keys(root, origin, true, m, err) ||
        json_req_int(root, "moe_intermediate_size", origin, &m->expert_ffn, err) ||
        json_req_int(root, "n_routed_experts", origin, &m->num_experts, err) ||
        json_req_int(root, "num_experts_per_tok", origin, &m->top_k, err) ||
        json_opt_int(root, "n_shared_experts", origin, &shared, err) ||
        json_opt_int(root, "first_k_dense_replace", origin, &m->num_dense_layers, err) ||
        json_opt_int(root, "moe_layer_freq", origin, &freq, err) ||
        json_opt_int(root, "q_lora_rank", origin, &m->q_lora_rank, err) ||   /* null = no q LoRA */
        json_req_int(root, "kv_lora_rank", origin, &m->kv_lora_rank, err) ||
        json_req_int(root, "qk_nope_head_dim", origin, &m->qk_nope_head_dim, err) ||
        json_req_int(root, "qk_rope_head_dim", origin, &m->qk_rope_head_dim, err) ||
        json_req_int(root, "v_head_dim", origin, &m->v_head_dim, err) ||
        json_opt_int(root, "num_nextn_predict_layers", origin, &m->mtp_layers, err))
        return -1;
    if (freq != 1)
        return mp_fail(err, "%s: moe_layer_freq: %d is not supported (only every layer after the dense ones)", origin, freq);
    if (shared < 0) return mp_fail(err, "%s: n_shared_experts: must be >= 0, got %d", origin, shared);
    m->shared_ffn = shared * m->expert_ffn;
    if (m->num_dense_layers > 0 && json_req_int(root, "intermediate_size", origin, &m->dense_ffn, err)) return -1;
    char scoring[32] = "softmax";
    if (json_opt_string(root, "scoring_func", origin, scoring, sizeof scoring, err)) return -1;
    if (!strcmp(scoring, "sigmoid")) m->router = ROUTER_SIGMOID;
    else if (!strcmp(scoring, "softmax")) m->router = ROUTER_SOFTMAX;
    else return mp_fail(err, "%s: scoring_func: '%s' is not softmax or sigmoid", origin, scoring);
    m->mla = true;
    m->num_kv_groups = m->num_heads;   /* MLA: every head has its own K and V */
    m->head_dim = m->qk_nope_head_dim + m->qk_rope_head_dim;
    return 0;
}

int model_from_hf_config(const cJSON *root, const char *origin, ModelSpec *out, MpError *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(t) || !t->valuestring)
        return mp_fail(err, "%s: model_type: expected a string, got %s", origin, json_type_name(t));
    const char *type = t->valuestring;
    memset(out, 0, sizeof *out);
    if (!strcmp(type, "mixtral")) return from_mixtral(root, origin, out, err);
    if (!strcmp(type, "qwen2_moe")) return from_qwen_moe(root, origin, true, out, err);
    if (!strcmp(type, "qwen3_moe")) return from_qwen_moe(root, origin, false, out, err);
    if (!strcmp(type, "deepseek_v3")) return from_deepseek_v3(root, origin, out, err);
    return mp_fail(err, "%s: model_type: '%.64s' is not supported (supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3)",
                   origin, type);
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
