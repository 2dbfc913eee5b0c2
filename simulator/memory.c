/* memory.c: bytes per GPU of one pipeline stage.
 *
 * State (mixed-precision Adam, reference/flops-and-memory.md), per parameter
 * held by the GPU (dense parameters divided by TP, expert parameters by
 * ETP*EP, both by the stage's share of layers):
 *   none:        2 bf16 weight + 4 fp32 gradient + 12 fp32 master/moments = 18
 *   distributed: 2 + 4 + 12/d   (d = DP*CP for dense, EDP for experts)
 *   full:        18/d, plus the working set gathered by FSDP: two layers'
 *                bf16 weights and their gradients (current + prefetched)
 * (An fp32 run, SimOptions.memory_elem_bytes 4: every "2" below is 4,
 * the weights are 4 bytes and they are the master: optimizer 8 or 8/d.)
 * Activations of one layer for one micro-batch (bytes, bf16 = 2 unless
 * said; T = s*b/(TP*CP) tokens per GPU, M = s*b/CP, R = rows held by the
 * GPU's experts after the ETP all-gather, Rr = rows it received; flash
 * attention, sequence parallelism: Korthikanti et al. 2022 without the
 * s^2 term and without dropout masks, recounted for GQA and SwiGLU):
 *   attention: 2T*h (norm input) + 2T*h (norm output = QKV input, SP shard)
 *              + 2M*(n+2g)d/TP (Q,K,V) + 2M*n*d/TP (core output) + 4M*n/TP (LSE)
 *   MoE:       2T*h (norm input) + 2T*h (norm output) + T*E*5 (fp32 probs, map)
 *              + 2R*h (expert input) + 2R*up (fc1 output) + 2R*Fe/ETP (SwiGLU out)
 *              + 2Rr*h (combine output kept by unpermute for the prob gradient)
 *              + shared expert: 2M*2Fsh/TP + 2M*Fsh/TP
 *   dense MLP: 2T*h + 2T*h + 2M*2F/TP + 2M*F/TP
 *   selective recompute, per Megatron-LM --recompute-modules (train.h RCM_*):
 *     layernorm      drops the norm outputs (2T*h each);
 *     core_attn      drops the attention core's fp32 softmax statistics (4M*n/TP;
 *                    its output stays, saved by the output projection);
 *     mla_up_proj    drops the up-projected Q, K, V (2M*n*(2*dqk+dv)/TP);
 *     moe_act        drops the experts' SwiGLU output (2R*Fe/ETP);
 *     shared_experts drops every shared-expert activation;
 *     mlp            keeps only a dense MLP's input;
 *     moe            keeps only the MoE layer's input (the norm output,
 *                    itself dropped with layernorm);
 *   full recompute: keeps 2T*h per layer (its input), plus one layer's full
 *              activations while it is recomputed.
 *   output layer (last stage, once): 2T*h*2 + M*V/TP*(2 logits + 4 fp32 softmax)
 * A stage holds its in-flight micro-batches' activations (pipeline.c).
 */
#include <math.h>

#include "sim_internal.h"


/* RCM_* bits recomputed by this context (0 unless selective). */
static unsigned recomputed_modules(const SimCtx *x) {
    return x->recompute == RECOMPUTE_SELECTIVE ? train_recompute_modules(&x->p->train, &x->p->model) : 0;
}

double memory_attention_activations(const SimCtx *x) {
    const ModelSpec *md = &x->p->model;
    double T = x->t_local, M = x->m_full, h = md->hidden, tp = x->tp;
    RecomputeKind rc = x->recompute;
    if (rc == RECOMPUTE_FULL) return x->act_bytes * T * h;
    unsigned mods = recomputed_modules(x);
    double n = md->num_heads, g = md->num_kv_groups > 0 ? md->num_kv_groups : n;
    double qkv, latent = 0, core;
    if (md->mla) {
        double dqk = md->qk_nope_head_dim + md->qk_rope_head_dim;
        qkv = n * (2 * dqk + md->v_head_dim) / tp;
        latent = md->q_lora_rank + md->kv_lora_rank + md->qk_rope_head_dim;
        core = n * md->v_head_dim / tp;
    } else {
        qkv = (n + 2 * g) * md->head_dim / tp;
        core = n * md->head_dim / tp;
    }
    double a = x->act_bytes * T * h + x->act_bytes * M * latent + x->act_bytes * M * core;
    if (!(mods & RCM_MLA_UP_PROJ)) a += x->act_bytes * M * qkv;
    if (!(mods & RCM_CORE_ATTN)) a += 4 * M * n / tp;
    if (!(mods & RCM_LAYERNORM)) a += x->act_bytes * T * h;
    return a;
}

double memory_moe_activations(const SimCtx *x) {
    const ModelSpec *md = &x->p->model;
    double T = x->t_local, M = x->m_full, h = md->hidden;
    RecomputeKind rc = x->recompute;
    if (rc == RECOMPUTE_FULL) return x->act_bytes * T * h;
    unsigned mods = recomputed_modules(x);
    double norm_out = (mods & RCM_LAYERNORM) ? 0 : x->act_bytes * T * h;
    if (mods & RCM_MOE) return x->act_bytes * T * h + norm_out;
    DispatchShape d;
    dispatcher_shape(x, &d);
    double local = (double)md->num_experts / x->ep;
    double R = d.rows_per_expert * local;
    double fe = (double)md->expert_ffn / x->etp;
    double up = md->swiglu ? 2 * fe : fe;
    double a = x->act_bytes * T * h + norm_out + T * md->num_experts * 5.0 + x->act_bytes * R * h + x->act_bytes * R * up + x->act_bytes * d.rows_recv * h;
    if (!(mods & RCM_MOE_ACT)) a += x->act_bytes * R * fe;
    if (md->shared_ffn > 0 && !(mods & RCM_SHARED_EXPERTS)) {
        double fs = (double)md->shared_ffn / x->tp;
        a += x->act_bytes * M * (md->swiglu ? 2 * fs : fs) + x->act_bytes * M * fs;
    }
    return a;
}

double memory_dense_mlp_activations(const SimCtx *x, double ffn) {
    const ModelSpec *md = &x->p->model;
    double T = x->t_local, M = x->m_full, h = md->hidden;
    RecomputeKind rc = x->recompute;
    if (rc == RECOMPUTE_FULL) return x->act_bytes * T * h;
    unsigned mods = recomputed_modules(x);
    double f = ffn / x->tp;
    double a = x->act_bytes * T * h;
    if (!(mods & RCM_LAYERNORM)) a += x->act_bytes * T * h;
    if (!(mods & RCM_MLP)) a += x->act_bytes * M * (md->swiglu ? 2 * f : f) + x->act_bytes * M * f;
    return a;
}

double memory_output_activations(const SimCtx *x) {
    double vpad = ceil(x->p->model.vocab / (128.0 * x->tp)) * 128.0 * x->tp;
    return 2 * x->act_bytes * x->t_local * x->p->model.hidden + x->m_full * vpad / x->tp * (2 + 4);
}

void memory_stage(const SimCtx *x, const StageMemInput *in, SimStageMemory *out) {
    const TrainConfig *t = &x->p->train;
    double d_dense = (double)x->dp * x->cp, d_exp = x->edp;
    double P = in->dense_params + in->expert_params;
    /* weight bytes: the working copy (bf16: 2); optimizer bytes: fp32
     * master, m and v (12), or, when the working copy is fp32 itself (an
     * fp32 run: the executor's CPU backend), m and v only (8) */
    double w = x->act_bytes, o = x->act_bytes >= 4 ? 8 : 12;
    switch (t->opt_sharding) {
    case OPT_SHARD_NONE:
        out->weights = w * P;
        out->gradients = 4 * P;
        out->optimizer = o * P;
        break;
    case OPT_SHARD_DISTRIBUTED:
        out->weights = w * P;
        out->gradients = 4 * P;
        out->optimizer = o * (in->dense_params / d_dense + in->expert_params / d_exp);
        break;
    case OPT_SHARD_FULL:
        out->weights = w * (in->dense_params / d_dense + in->expert_params / d_exp) + in->fsdp_working;
        out->gradients = 4 * (in->dense_params / d_dense + in->expert_params / d_exp);
        out->optimizer = o * (in->dense_params / d_dense + in->expert_params / d_exp);
        break;
    }
    out->activations = in->inflight * in->act_per_chunk + in->act_extra;
    out->communication = out->workspace = 0;   /* not in Megatron's model (docs/simulator.md) */
    out->total = out->weights + out->gradients + out->optimizer + out->activations;
}
