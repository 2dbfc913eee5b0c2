/* model.h: ModelSpec, the architecture of a (MoE) transformer, and the
 * parameter and FLOP counts derived from it.
 *
 * Symbols used in comments across the project (reference: Megatron-LM's
 * num_floating_point_operations and Korthikanti et al. 2022):
 *   L layers (Ld dense + Lm MoE), h hidden, n heads, g KV groups, d head dim,
 *   E experts, k top-k, Fe expert FFN, Fsh shared-expert FFN (total),
 *   F dense FFN, V vocabulary, s sequence length.
 */
#ifndef MOEPLAN_MODEL_H
#define MOEPLAN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define MP_NAME_LEN 64

typedef enum { ROUTER_SOFTMAX = 0, ROUTER_SIGMOID = 1 } RouterKind;

/* Normalisation of queries and keys before RoPE. */
typedef enum {
    QK_NORM_NONE = 0,
    QK_NORM_HEAD = 1,   /* RMSNorm over each head's d channels, weights d each (Qwen3: 2d per layer) */
    QK_NORM_FULL = 2,   /* RMSNorm over all heads at once (OLMoE: n*d + g*d weights per layer) */
    QK_NORM_L2 = 3,     /* L2 norm without weights (Llama 4) */
} QkNorm;

/* Router load-balancing loss (Megatron's --moe-router-load-balancing-type). */
typedef enum { LB_AUX_LOSS = 0, LB_SEQ_AUX_LOSS = 1, LB_NONE = 2 } LoadBalancing;

/* Normalisation layers. */
typedef enum { NORM_RMS = 0, NORM_LAYER = 1 } NormKind;

typedef struct {
    char name[MP_NAME_LEN];
    int num_layers;        /* L, decoder layers (dense + MoE), MTP layers excluded */
    int hidden;            /* h */
    int num_heads;         /* n */
    int num_kv_groups;     /* g; == n for plain multi-head attention */
    int head_dim;          /* d; query/key/value head dim (MLA: see below) */
    int num_experts;       /* E routed experts per MoE layer */
    int top_k;             /* k experts per token */
    int expert_ffn;        /* Fe, intermediate size of one routed expert */
    int shared_ffn;        /* Fsh, total intermediate size of the shared expert(s); 0 = none */
    int num_dense_layers;  /* Ld, the first Ld layers have a dense MLP instead of MoE */
    int dense_ffn;         /* F, intermediate size of those dense MLPs */
    int vocab;             /* V (before padding) */
    bool tied_embeddings;  /* output layer shares the embedding matrix */
    bool qkv_bias;
    bool swiglu;           /* gated MLP (3 matrices); false = 2 matrices */
    RouterKind router;
    /* Multi-head latent attention (DeepSeek-V2/V3). mla == false: fields are 0. */
    bool mla;
    int q_lora_rank;       /* 0 = no query compression */
    int kv_lora_rank;
    int qk_nope_head_dim;
    int qk_rope_head_dim;
    int v_head_dim;
    int mtp_layers;        /* multi-token-prediction layers (DeepSeek-V3: 1) */
    int sliding_window;    /* tokens; 0 = full attention everywhere */
    int sliding_window_every; /* every k-th layer is full attention, others windowed (gpt-oss: 2) */

    /* Fields that change no cost but must reach Megatron-LM's flags and the
     * exact parameter count (HuggingFace modules). 0/false = absent. */
    double rotary_base;    /* RoPE theta; 0 = not given (Megatron's default 10000) */
    int nope_every;        /* every k-th layer has no RoPE (Llama 4: 4); 0 = RoPE everywhere */
    NormKind norm;         /* RMSNorm (default) or LayerNorm without bias (DBRX) */
    bool sandwich_norm;    /* 4 norms per layer: before and after attention and MLP (Grok-1) */
    QkNorm qk_norm;
    bool attn_out_bias;    /* bias on the attention output projection (gpt-oss), h per layer */
    bool attn_sinks;       /* a learned sink logit per head (gpt-oss), n per layer */
    bool expert_bias_linear; /* biases in the experts' and router's linears (gpt-oss):
                                E*(up + h) + E per MoE layer */
    bool gelu;             /* gated MLP with GELU instead of SiLU (Grok-1: GeGLU) */
    bool clamped_glu;      /* gpt-oss's gated quick-GELU, clamped at 7 with 1 added to the linear half */
    bool router_pre_softmax; /* softmax over all experts before top-k, weights not renormalised
                                (HF norm_topk_prob false: Qwen2-MoE, OLMoE, DeepSeek-V2) */
    double router_scale;   /* routed-expert output scale (DeepSeek routed_scaling_factor); 0 = 1 */
    int router_groups;     /* group-limited routing: experts in this many groups (DeepSeek n_group) */
    int router_group_topk; /* groups chosen per token (topk_group) */
    bool router_expert_bias; /* aux-loss-free balancing bias (DeepSeek-V3 e_score_correction_bias):
                                a buffer, not a trained parameter */
    bool router_probs_on_input; /* routing weight multiplies the expert input (Llama 4) */
    bool shared_expert_gate; /* sigmoid gate on the shared expert (Qwen2-MoE), h per MoE layer */
    LoadBalancing load_balancing;
    double aux_loss_coeff; /* 0 = no auxiliary loss */
} ModelSpec;

typedef enum { FLOPS_LEGACY = 0, FLOPS_MEGATRON = 1 } FlopsConvention;

typedef struct {
    double total;          /* all parameters */
    double active;         /* parameters touched by one token (k of E experts) */
    double embedding;      /* V*h (input embedding) */
    double output;         /* V*h when untied, else 0 */
    double attention_per_layer;
    double expert_per_layer;     /* all E routed experts of one MoE layer */
    double shared_per_layer;     /* shared expert of one MoE layer */
    double router_per_layer;
    double dense_mlp_per_layer;  /* MLP of one dense layer */
    double norms_per_layer;
    double mtp;                  /* all mtp_layers multi-token-prediction layers (their own
                                    transformer layer, 2h*h projection and 3 norms; embedding and
                                    output shared with the main model); NOT in total or active */
} ModelParams;

/* Validates every field; err gets "FIELD: reason". */
int model_validate(const ModelSpec *m, MpError *err);

int model_num_moe_layers(const ModelSpec *m);   /* Lm = L - Ld */
int model_is_moe(const ModelSpec *m);           /* E > 0 */

void model_params(const ModelSpec *m, ModelParams *out);

/* Model FLOPs of one training step (forward + backward) for `tokens`
 * tokens in sequences of length seq: see core/flops.c for both formulas. */
double model_flops(const ModelSpec *m, FlopsConvention conv, int seq, double tokens);
/* FLOPs the GPUs must execute (<= both conventions): the megatron count with
 * sliding-window layers attending only inside their window.  A step cannot
 * take less than this over the peak; simulated MFU checks use it. */
double model_flops_executed(const ModelSpec *m, int seq, double tokens);

const char *flops_convention_name(FlopsConvention c);

/* names as in the catalog JSON: "none" "head" "full" "l2"; "aux_loss"
 * "seq_aux_loss" "none" (Megatron's spellings); "rmsnorm" "layernorm".
 * parse returns -1 on an unknown name. */
const char *qk_norm_name(QkNorm q);
int qk_norm_parse(const char *s, QkNorm *out);
const char *load_balancing_name(LoadBalancing l);
int load_balancing_parse(const char *s, LoadBalancing *out);
const char *norm_kind_name(NormKind k);
int norm_kind_parse(const char *s, NormKind *out);
int flops_convention_parse(const char *s, FlopsConvention *out);

#endif
