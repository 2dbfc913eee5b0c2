/* model.c: validation of a ModelSpec and its parameter counts.
 *
 * Parameter counts follow reference/flops-and-memory.md ("Parameters") and
 * the HuggingFace/Megatron-Core module shapes:
 *   attention (GQA)  Q h*n*d, K and V h*g*d each, O n*d*h, bias n*d + 2*g*d
 *   attention (MLA)  DeepSeek-V3 modules: q_a h*qr, q_a_norm qr, q_b qr*n*(dn+dr)
 *                    (or q h*n*(dn+dr) without q LoRA), kv_a h*(kvr+dr),
 *                    kv_a_norm kvr, kv_b kvr*n*(dn+dv), o n*dv*h
 *   MLP              (3 if SwiGLU else 2) * h * ffn per expert / dense MLP
 *   router           h*E (the sigmoid router's per-expert bias, E numbers, is
 *                    not a trained weight and is not counted)
 *   norms            2*h per layer (RMSNorm before attention and MLP), h final
 *   embedding        V*h, output layer V*h when untied
 *   q/k norms        per head (Qwen3): 2d; over all heads (OLMoE): n*d + g*d;
 *                    L2 (Llama 4): none
 *   attention extras output-projection bias h, sinks n (gpt-oss)
 *   expert biases    E*(up + h) per MoE layer and the router's bias E (gpt-oss)
 *   shared gate      h per MoE layer (Qwen2-MoE's sigmoid gate on the shared expert)
 *   sandwich norms   4h per layer instead of 2h (Grok-1)
 * DeepSeek-V3's e_score_correction_bias is a buffer in transformers'
 * DeepseekV3TopkRouter, not a parameter, and is not counted.
 */
#include "model.h"

#include "limits.h"

#include <string.h>

int model_num_moe_layers(const ModelSpec *m) { return m->num_layers - m->num_dense_layers; }

int model_is_moe(const ModelSpec *m) { return m->num_experts > 0; }

/* Largest size we accept for any one dimension: keeps every product of two
 * sizes exact in a double and far from int overflow in callers. */
#define MODEL_DIM_MAX (1 << 24)

static int check_pos(const char *field, int v, MpError *err) {
    if (v <= 0) return mp_fail(err, "%s: must be positive, got %d", field, v);
    if (v > MODEL_DIM_MAX) return mp_fail(err, "%s: %d is larger than the limit %d", field, v, MODEL_DIM_MAX);
    return 0;
}

static int check_nonneg(const char *field, int v, MpError *err) {
    if (v < 0) return mp_fail(err, "%s: must be >= 0, got %d", field, v);
    if (v > MODEL_DIM_MAX) return mp_fail(err, "%s: %d is larger than the limit %d", field, v, MODEL_DIM_MAX);
    return 0;
}

int model_validate(const ModelSpec *m, MpError *err) {
    if (!m->name[0]) return mp_fail(err, "name: empty");
    if (check_pos("num_layers", m->num_layers, err) || check_pos("hidden", m->hidden, err) ||
        check_pos("num_heads", m->num_heads, err) || check_pos("num_kv_groups", m->num_kv_groups, err) ||
        check_pos("head_dim", m->head_dim, err) || check_pos("vocab", m->vocab, err) ||
        check_nonneg("num_experts", m->num_experts, err) || check_nonneg("top_k", m->top_k, err) ||
        check_nonneg("expert_ffn", m->expert_ffn, err) || check_nonneg("shared_ffn", m->shared_ffn, err) ||
        check_nonneg("num_dense_layers", m->num_dense_layers, err) || check_nonneg("dense_ffn", m->dense_ffn, err) ||
        check_nonneg("mtp_layers", m->mtp_layers, err) || check_nonneg("sliding_window", m->sliding_window, err) ||
        check_nonneg("sliding_window_every", m->sliding_window_every, err))
        return -1;
    if (m->num_layers > MP_MAX_LAYERS)
        return mp_fail(err, "num_layers: %d is above the limit of %d layers (the deepest published LLMs have < 200)",
                       m->num_layers, MP_MAX_LAYERS);
    if (m->num_heads % m->num_kv_groups)
        return mp_fail(err, "num_kv_groups: %d does not divide num_heads %d", m->num_kv_groups, m->num_heads);
    if (m->num_dense_layers > m->num_layers)
        return mp_fail(err, "num_dense_layers: %d exceeds num_layers %d", m->num_dense_layers, m->num_layers);
    if (m->num_dense_layers > 0 && m->dense_ffn == 0)
        return mp_fail(err, "dense_ffn: must be positive when num_dense_layers is %d", m->num_dense_layers);
    if (m->num_dense_layers == 0 && m->dense_ffn > 0)
        return mp_fail(err, "dense_ffn: %d given but num_dense_layers is 0", m->dense_ffn);
    if (m->num_experts > 0) {
        if (m->top_k == 0) return mp_fail(err, "top_k: must be positive for an MoE model (num_experts %d)", m->num_experts);
        if (m->top_k > m->num_experts)
            return mp_fail(err, "top_k: %d exceeds num_experts %d", m->top_k, m->num_experts);
        if (m->expert_ffn == 0) return mp_fail(err, "expert_ffn: must be positive for an MoE model");
        if (m->num_dense_layers == m->num_layers)
            return mp_fail(err, "num_dense_layers: %d equals num_layers, leaving no MoE layer for the %d experts",
                           m->num_dense_layers, m->num_experts);
    } else {
        if (m->top_k) return mp_fail(err, "top_k: %d given but num_experts is 0", m->top_k);
        if (m->expert_ffn) return mp_fail(err, "expert_ffn: %d given but num_experts is 0", m->expert_ffn);
        if (m->shared_ffn) return mp_fail(err, "shared_ffn: %d given but num_experts is 0", m->shared_ffn);
        if (m->num_dense_layers != m->num_layers)
            return mp_fail(err, "num_dense_layers: %d must equal num_layers %d in a dense model (num_experts 0)",
                           m->num_dense_layers, m->num_layers);
    }
    if (m->router != ROUTER_SOFTMAX && m->router != ROUTER_SIGMOID)
        return mp_fail(err, "router: unknown kind %d", (int)m->router);
    if (m->mla) {
        if (check_nonneg("q_lora_rank", m->q_lora_rank, err) || check_pos("kv_lora_rank", m->kv_lora_rank, err) ||
            check_pos("qk_nope_head_dim", m->qk_nope_head_dim, err) ||
            check_pos("qk_rope_head_dim", m->qk_rope_head_dim, err) || check_pos("v_head_dim", m->v_head_dim, err))
            return -1;
        long long qk = (long long)m->qk_nope_head_dim + m->qk_rope_head_dim;
        if (m->head_dim != qk)
            return mp_fail(err, "head_dim: %d must equal qk_nope_head_dim + qk_rope_head_dim = %lld for MLA",
                           m->head_dim, qk);
        if (m->num_kv_groups != m->num_heads)
            return mp_fail(err, "num_kv_groups: %d must equal num_heads %d for MLA (every head has its own K and V)",
                           m->num_kv_groups, m->num_heads);
    } else if (m->q_lora_rank || m->kv_lora_rank || m->qk_nope_head_dim || m->qk_rope_head_dim || m->v_head_dim) {
        return mp_fail(err, "mla: MLA dimensions given but mla is false");
    }
    if (m->rotary_base < 0) return mp_fail(err, "rotary_base: must be >= 0, got %g", m->rotary_base);
    if (m->nope_every < 0) return mp_fail(err, "nope_every: must be >= 0, got %d", m->nope_every);
    if (m->router_scale < 0) return mp_fail(err, "router_scale: must be >= 0, got %g", m->router_scale);
    if (m->aux_loss_coeff < 0) return mp_fail(err, "aux_loss_coeff: must be >= 0, got %g", m->aux_loss_coeff);
    if ((unsigned)m->qk_norm > QK_NORM_L2) return mp_fail(err, "qk_norm: unknown kind %d", (int)m->qk_norm);
    if ((unsigned)m->load_balancing > LB_NONE)
        return mp_fail(err, "load_balancing: unknown kind %d", (int)m->load_balancing);
    if ((unsigned)m->norm > NORM_LAYER) return mp_fail(err, "norm: unknown kind %d", (int)m->norm);
    if (m->router_groups < 0 || m->router_group_topk < 0)
        return mp_fail(err, "router_groups: must be >= 0 (router_groups %d, router_group_topk %d)",
                       m->router_groups, m->router_group_topk);
    if (m->router_group_topk > 0 && m->router_groups == 0)
        return mp_fail(err, "router_group_topk: %d given but router_groups is 0", m->router_group_topk);
    if (m->router_groups > 0) {
        if (m->num_experts == 0 || m->num_experts % m->router_groups)
            return mp_fail(err, "router_groups: %d does not divide num_experts %d", m->router_groups, m->num_experts);
        if (m->router_group_topk > m->router_groups)
            return mp_fail(err, "router_group_topk: %d exceeds router_groups %d", m->router_group_topk, m->router_groups);
    }
    /* Megatron-LM refuses expert bias with a softmax router
     * (megatron/core/transformer/transformer_config.py, __post_init__). */
    if (m->router_expert_bias && m->router != ROUTER_SIGMOID)
        return mp_fail(err, "router_expert_bias: needs the sigmoid router (aux-loss-free balancing)");
    if (m->mtp_layers > m->num_layers)
        return mp_fail(err, "mtp_layers: %d exceeds num_layers %d", m->mtp_layers, m->num_layers);
    if (m->sliding_window_every > 0 && m->sliding_window == 0)
        return mp_fail(err, "sliding_window_every: %d given but sliding_window is 0", m->sliding_window_every);
    return 0;
}

/* Matrices of one MLP: 3 for SwiGLU (gate, up, down), else 2 (up, down). */
static double mlp_matrices(const ModelSpec *m) { return m->swiglu ? 3.0 : 2.0; }

static double attention_params(const ModelSpec *m) {
    double h = m->hidden, n = m->num_heads;
    if (m->mla) {
        double dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
        double qr = m->q_lora_rank, kvr = m->kv_lora_rank;
        double q = qr > 0 ? h * qr + qr + qr * n * (dn + dr) : h * n * (dn + dr);
        double kv = h * (kvr + dr) + kvr + kvr * n * (dn + dv);
        double o = n * dv * h;
        return q + kv + o;
    }
    double d = m->head_dim, g = m->num_kv_groups;
    double w = h * n * d + 2.0 * h * g * d + n * d * h;   /* Q, K+V, O */
    double b = m->qkv_bias ? n * d + 2.0 * g * d : 0.0;
    if (m->attn_out_bias) b += h;
    double qk = m->qk_norm == QK_NORM_HEAD ? 2.0 * d : m->qk_norm == QK_NORM_FULL ? (n + g) * d : 0.0;
    double sinks = m->attn_sinks ? n : 0.0;
    return w + b + qk + sinks;
}

void model_params(const ModelSpec *m, ModelParams *out) {
    memset(out, 0, sizeof *out);
    double h = m->hidden, mats = mlp_matrices(m);
    int Lm = model_num_moe_layers(m), Ld = m->num_dense_layers, L = m->num_layers;
    out->attention_per_layer = attention_params(m);
    out->norms_per_layer = (m->sandwich_norm ? 4.0 : 2.0) * h;
    if (m->num_experts > 0) {
        double E = m->num_experts, up = (m->swiglu ? 2.0 : 1.0) * m->expert_ffn;
        out->expert_per_layer = mats * h * m->expert_ffn * E + (m->expert_bias_linear ? E * (up + h) : 0.0);
        out->shared_per_layer = mats * h * m->shared_ffn + (m->shared_ffn > 0 && m->shared_expert_gate ? h : 0.0);
        out->router_per_layer = h * E + (m->expert_bias_linear ? E : 0.0);
    }
    out->dense_mlp_per_layer = mats * h * m->dense_ffn;
    out->embedding = (double)m->vocab * h;
    out->output = m->tied_embeddings ? 0.0 : (double)m->vocab * h;

    double common = L * (out->attention_per_layer + out->norms_per_layer) + Ld * out->dense_mlp_per_layer +
                    out->embedding + out->output + h /* final norm */;
    double moe_all = out->expert_per_layer + out->shared_per_layer + out->router_per_layer;
    double active_experts = m->num_experts > 0 ? out->expert_per_layer * m->top_k / m->num_experts : 0.0;
    double moe_active = active_experts + out->shared_per_layer + out->router_per_layer;
    out->total = common + Lm * moe_all;
    out->active = common + Lm * moe_active;

    /* An MTP layer (DeepSeek-V3) is one more transformer layer of the kind of
     * the last decoder layer, plus the projection of [h; embedding] -> h
     * (2h*h) and three norms (embedding, hidden, output: 3h). */
    double mtp_block = out->attention_per_layer + out->norms_per_layer + 2.0 * h * h + 3.0 * h +
                       (Lm > 0 ? moe_all : out->dense_mlp_per_layer);
    out->mtp = m->mtp_layers * mtp_block;
}

static const char *const qk_norm_names[] = {"none", "head", "full", "l2"};
static const char *const lb_names[] = {"aux_loss", "seq_aux_loss", "none"};
static const char *const norm_names[] = {"rmsnorm", "layernorm"};

static int name_index(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *qk_norm_name(QkNorm q) { return (unsigned)q <= QK_NORM_L2 ? qk_norm_names[q] : "?"; }
int qk_norm_parse(const char *s, QkNorm *out) {
    int i = name_index(s, qk_norm_names, 4);
    if (i < 0) return -1;
    *out = (QkNorm)i;
    return 0;
}
const char *load_balancing_name(LoadBalancing l) { return (unsigned)l <= LB_NONE ? lb_names[l] : "?"; }
int load_balancing_parse(const char *s, LoadBalancing *out) {
    int i = name_index(s, lb_names, 3);
    if (i < 0) return -1;
    *out = (LoadBalancing)i;
    return 0;
}
const char *norm_kind_name(NormKind k) { return (unsigned)k <= NORM_LAYER ? norm_names[k] : "?"; }
int norm_kind_parse(const char *s, NormKind *out) {
    int i = name_index(s, norm_names, 2);
    if (i < 0) return -1;
    *out = (NormKind)i;
    return 0;
}
