/* flops.c: model FLOPs of a training step under Megatron-LM's two
 * conventions (reference/flops-and-memory.md; Megatron-LM
 * megatron/training/training.py num_floating_point_operations).
 *
 * Every GEMM counts 3 times (forward, input gradient, weight gradient) and a
 * multiply-add is 2 FLOPs, hence the factors 6 (one GEMM) and 12 (two GEMMs
 * of the same size).  Router GEMMs, norms, softmax and element-wise ops are
 * not counted; nor is recomputation (these are model FLOPs).  f = 3/2 for
 * SwiGLU MLPs (three matrices instead of two), else 1.
 *
 * legacy (Megatron-LM before March 2025), per token at sequence length s:
 *   12*L*h^2*[(1 + g/n + s/h)*(n*d/h) + (Fe/h)*k*f + (Fsh/h)*f + V/(2*L*h)]
 *   = 12*L*(h*n*d + h*g*d + s*n*d) + 12*L*h*(Fe*k + Fsh)*f + 6*h*V
 *   Every layer is an MoE layer (dense layers and MTP ignored) and the
 *   score/value GEMMs count the full s x s matrix.  A dense model
 *   (num_experts 0) uses Fe = F, k = 1 as Megatron did.
 *   MLA models (moeplan's approximation; legacy Megatron had no MLA term):
 *   the MLA projection terms of the megatron convention below with the
 *   core attention NOT halved (s*n*(dn+dr) + s*n*dv), every layer MoE, no MTP.
 *
 * megatron (current), per token:
 *   12*h*f*(F*Ld' + (Fe*k + Fsh)*Lm')                          MLPs
 *   + 12*L'*(h*n*d + h*g*d + s*n*d/2)                           GQA attention, causal half
 *   + 6*mtp*(3*h + 2*h^2)                                       MTP norms and projection
 *   + 6*h*V*(mtp + 1)                                           logits (main + each MTP head)
 *   with L' = L + mtp and the MTP layers added to the MoE layers
 *   (Lm' = Lm + mtp) when the last decoder layer is MoE, else to the dense ones.
 *   MLA replaces the attention term by
 *   6*L'*( q_term + kvr*(h + n*(dn+dv) + 1) + h*dr + n*dv*h + s*n*(dn+dr)/2 + s*n*dv/2 )
 *   q_term = qr*(h + n*(dn+dr) + 1), or h*n*(dn+dr) without q LoRA.
 *
 * Sliding-window attention (gpt-oss) is counted as full causal attention in
 * both conventions, as Megatron-LM does.  V is the vocabulary as given:
 * every catalog vocabulary is already a multiple of 128, so Megatron's
 * padding (to a multiple of 128 at TP 1) does not change it.
 */
#include <string.h>

#include "flops.h"
#include "model.h"

/* integral of clamp(t - kv_start, 0, kv_rows) dt from -inf to x: the causal
 * pairs of query positions below x */
static double causal_area_below(double x, double kv_start, double kv_rows) {
    double u = x - kv_start;
    if (u <= 0) return 0;
    if (u <= kv_rows) return 0.5 * u * u;
    return 0.5 * kv_rows * kv_rows + kv_rows * (u - kv_rows);
}

double flops_attention_pairs(double q_start, double q_rows, double kv_start, double kv_rows, bool causal) {
    if (q_rows <= 0 || kv_rows <= 0) return 0;
    if (!causal) return q_rows * kv_rows;
    return causal_area_below(q_start + q_rows, kv_start, kv_rows) - causal_area_below(q_start, kv_start, kv_rows);
}

/* the band key > query - window: all causal pairs minus those with the keys
 * shifted by the window */
double flops_window_pairs(double s, double window) {
    if (window <= 0 || window >= s) return flops_attention_pairs(0, s, 0, s, true);
    return flops_attention_pairs(0, s, 0, s, true) - flops_attention_pairs(0, s, window, s, true);
}

double flops_attention_core(double pairs, double heads, double d_qk, double d_v) {
    return 2.0 * pairs * (d_qk + d_v) * heads;
}

double flops_mlp(double rows, double hidden, double ffn, bool swiglu) {
    return 2.0 * rows * hidden * ffn * (swiglu ? 3.0 : 2.0);
}

double flops_experts(double tokens, int top_k, double hidden, double expert_ffn, bool swiglu) {
    return flops_mlp(tokens * top_k, hidden, expert_ffn, swiglu);
}

const char *flops_convention_name(FlopsConvention c) {
    return c == FLOPS_LEGACY ? "legacy" : "megatron";
}

int flops_convention_parse(const char *s, FlopsConvention *out) {
    if (!strcmp(s, "legacy")) { *out = FLOPS_LEGACY; return 0; }
    if (!strcmp(s, "megatron")) { *out = FLOPS_MEGATRON; return 0; }
    return -1;
}

/* Per-token attention FLOPs of one layer for MLA; causal = halve the core. */
static double mla_attention_per_token(const ModelSpec *m, double s, int causal) {
    double h = m->hidden, n = m->num_heads;
    double dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    double qr = m->q_lora_rank, kvr = m->kv_lora_rank;
    double q_term = qr > 0 ? qr * (h + n * (dn + dr) + 1.0) : h * n * (dn + dr);
    double kv_term = kvr * (h + n * (dn + dv) + 1.0) + h * dr;
    double o_term = n * dv * h;
    double core = s * n * (dn + dr) + s * n * dv;
    if (causal) core /= 2.0;
    return 6.0 * (q_term + kv_term + o_term + core);
}

static double legacy_per_token(const ModelSpec *m, double s) {
    double h = m->hidden, n = m->num_heads, g = m->num_kv_groups, d = m->head_dim;
    double L = m->num_layers, V = m->vocab, f = m->swiglu ? 1.5 : 1.0;
    double attn = m->mla ? L * mla_attention_per_token(m, s, 0)
                         : 12.0 * L * (h * n * d + h * g * d + s * n * d);
    double ffn = m->num_experts > 0 ? (double)m->expert_ffn * m->top_k + m->shared_ffn : (double)m->dense_ffn;
    double mlp = 12.0 * L * h * ffn * f;
    double logit = 6.0 * h * V;
    return attn + mlp + logit;
}

static double megatron_per_token(const ModelSpec *m, double s) {
    double h = m->hidden, n = m->num_heads, g = m->num_kv_groups, d = m->head_dim;
    double V = m->vocab, f = m->swiglu ? 1.5 : 1.0, mtp = m->mtp_layers;
    int Lm0 = model_num_moe_layers(m);
    /* Megatron: MTP layers copy the kind of the last decoder layer; moeplan's
     * layout puts dense layers first, so the last one is MoE iff Lm > 0. */
    double Lm = Lm0 + (Lm0 > 0 ? mtp : 0.0);
    double Ld = m->num_dense_layers + (Lm0 > 0 ? 0.0 : mtp);
    double Lall = m->num_layers + mtp;
    double moe_ffn = m->num_experts > 0 ? (double)m->expert_ffn * m->top_k + m->shared_ffn : 0.0;
    double mlp = 12.0 * h * f * ((double)m->dense_ffn * Ld + moe_ffn * Lm);
    double attn = m->mla ? Lall * mla_attention_per_token(m, s, 1)
                         : 12.0 * Lall * (h * n * d + h * g * d + s * n * d / 2.0);
    double mtp_extra = 6.0 * mtp * (3.0 * h + 2.0 * h * h);
    double logit = 6.0 * h * V * (mtp + 1.0);
    return mlp + attn + mtp_extra + logit;
}

double model_flops(const ModelSpec *m, FlopsConvention conv, int seq, double tokens) {
    double per_token = conv == FLOPS_LEGACY ? legacy_per_token(m, seq) : megatron_per_token(m, seq);
    return per_token * tokens;
}

/* Mean number of keys a query attends to under a causal window of w tokens
 * over a sequence of s: (sum_{i<s} min(i+1, w)) / s; s/2 for no window (the
 * megatron convention's causal half, kept exact so the two agree). */
static double mean_keys(double s, double w) {
    if (w <= 0 || w >= s) return s / 2.0;
    return (w * (w + 1.0) / 2.0 + (s - w) * w) / s;
}

/* The work a GPU must execute: the megatron count with each sliding-window
 * layer's core attention (score and value GEMMs) over the keys inside its
 * window instead of the causal half of the sequence (layer i is windowed as
 * in the simulator: sliding_window > 0 and, with sliding_window_every = k > 1,
 * i % k != k - 1).  The legacy count also adds the masked half of causal
 * attention, which no kernel executes. */
double model_flops_executed(const ModelSpec *m, int seq, double tokens) {
    double total = megatron_per_token(m, seq);
    if (m->sliding_window > 0) {
        long windowed = 0;
        for (int i = 0; i < m->num_layers; i++)
            if (m->sliding_window_every <= 1 || i % m->sliding_window_every != m->sliding_window_every - 1) windowed++;
        double s = seq, saved_keys = s / 2.0 - mean_keys(s, m->sliding_window);
        /* core attention per token per key: GQA 12*n*d (two GEMMs, x3 for
         * forward and backward); MLA 6*n*(dn+dr+dv) */
        double per_key = m->mla ? 6.0 * m->num_heads * ((double)m->qk_nope_head_dim + m->qk_rope_head_dim + m->v_head_dim)
                                : 12.0 * m->num_heads * (double)m->head_dim;
        total -= (double)windowed * per_key * saved_keys;
    }
    return total * tokens;
}
