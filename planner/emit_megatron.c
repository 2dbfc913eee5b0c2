/* emit_megatron.c: Megatron-LM flags of a plan (see emit.h).
 *
 * Flag names are those of megatron/training/arguments.py (Megatron-LM core_r0.12+):
 *   mapping:   --tensor-model-parallel-size, --context-parallel-size,
 *              --pipeline-model-parallel-size, --num-layers-per-virtual-pipeline-stage,
 *              --expert-model-parallel-size, --expert-tensor-parallel-size,
 *              --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers,
 *              --use-tp-pp-dp-mapping (rank order tp-cp-ep-pp-dp), --sequence-parallel;
 *   batch:     --micro-batch-size, --global-batch-size, --seq-length;
 *   memory:    --recompute-granularity selective|full (+ --recompute-method uniform
 *              --recompute-num-layers 1), --use-distributed-optimizer, --use-torch-fsdp2;
 *   MoE:       --num-experts, --moe-router-topk, --moe-ffn-hidden-size,
 *              --moe-shared-expert-intermediate-size, --moe-layer-freq,
 *              --moe-token-dispatcher-type, --moe-grouped-gemm,
 *              --moe-expert-capacity-factor + --moe-pad-expert-input-to-capacity
 *              (token dropping), --moe-shared-expert-overlap;
 *   overlap:   --overlap-grad-reduce, --overlap-param-gather, --tp-comm-overlap,
 *              --overlap-moe-expert-parallel-comm.
 */
#include "emit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(Text *t, const char *fmt, ...) {
    if (t->failed) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line) { t->failed = 1; return; }
    size_t need = t->len + (size_t)n + 4;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 2048;
        while (cap < need) cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) { t->failed = 1; return; }
        t->s = s;
        t->cap = cap;
    }
    if (t->len) { memcpy(t->s + t->len, " \\\n", 3); t->len += 3; }
    memcpy(t->s + t->len, line, (size_t)n + 1);
    t->len += (size_t)n;
}

char *emit_megatron_flags(const Plan *p) {
    const ModelSpec *m = &p->model;
    const Mapping *mp = &p->map;
    const TrainConfig *tr = &p->train;
    Text t = {0};
    /* model */
    text_add(&t, "--num-layers %d", m->num_layers);
    text_add(&t, "--hidden-size %d", m->hidden);
    text_add(&t, "--num-attention-heads %d", m->num_heads);
    if (!m->mla && m->num_kv_groups > 0 && m->num_kv_groups < m->num_heads) {
        text_add(&t, "--group-query-attention");
        text_add(&t, "--num-query-groups %d", m->num_kv_groups);
    }
    if (m->mla) {
        text_add(&t, "--multi-latent-attention");
        if (m->q_lora_rank) text_add(&t, "--q-lora-rank %d", m->q_lora_rank);
        text_add(&t, "--kv-lora-rank %d", m->kv_lora_rank);
        text_add(&t, "--qk-head-dim %d", m->qk_nope_head_dim);
        text_add(&t, "--qk-pos-emb-head-dim %d", m->qk_rope_head_dim);
        text_add(&t, "--v-head-dim %d", m->v_head_dim);
    } else if (m->head_dim > 0 && (long long)m->head_dim * m->num_heads != m->hidden) {
        text_add(&t, "--kv-channels %d", m->head_dim);
    }
    text_add(&t, "--ffn-hidden-size %d", m->num_dense_layers > 0 || m->num_experts == 0 ? m->dense_ffn : m->expert_ffn);
    text_add(&t, "--seq-length %d", tr->seq_len);
    text_add(&t, "--max-position-embeddings %d", tr->seq_len);
    text_add(&t, "--normalization RMSNorm");
    text_add(&t, "--position-embedding-type rope");
    if (m->swiglu) text_add(&t, "--swiglu");
    text_add(&t, "--disable-bias-linear");
    if (m->qkv_bias) text_add(&t, "--add-qkv-bias");
    if (!m->tied_embeddings) text_add(&t, "--untie-embeddings-and-output-weights");
    if (m->num_experts > 0) {
        text_add(&t, "--num-experts %d", m->num_experts);
        text_add(&t, "--moe-router-topk %d", m->top_k);
        text_add(&t, "--moe-ffn-hidden-size %d", m->expert_ffn);
        if (m->shared_ffn > 0) text_add(&t, "--moe-shared-expert-intermediate-size %d", m->shared_ffn);
        if (m->num_dense_layers > 0)
            text_add(&t, "--moe-layer-freq \"([0]*%d+[1]*%d)\"", m->num_dense_layers, m->num_layers - m->num_dense_layers);
        if (m->router == ROUTER_SIGMOID) text_add(&t, "--moe-router-score-function sigmoid");
        text_add(&t, "--moe-grouped-gemm");
        text_add(&t, "--moe-token-dispatcher-type %s", tr->dispatcher == DISPATCHER_ALLGATHER ? "allgather" : "alltoall");
        if (tr->capacity_factor > 0) {
            text_add(&t, "--moe-expert-capacity-factor %g", tr->capacity_factor);
            text_add(&t, "--moe-pad-expert-input-to-capacity");
            text_add(&t, "--moe-token-drop-policy probs");
        }
        if (m->shared_ffn > 0 && (tr->overlap & OVERLAP_SHARED_EXPERT)) text_add(&t, "--moe-shared-expert-overlap");
    }
    /* mapping */
    text_add(&t, "--tensor-model-parallel-size %d", mp->tp);
    if (mp->tp > 1) text_add(&t, "--sequence-parallel");
    text_add(&t, "--context-parallel-size %d", mp->cp);
    text_add(&t, "--pipeline-model-parallel-size %d", mp->pp);
    if (mp->vpp > 1) text_add(&t, "--num-layers-per-virtual-pipeline-stage %d", (int)(m->num_layers / ((long long)mp->pp * mp->vpp)));
    if (p->first_stage_layers > 0) text_add(&t, "--decoder-first-pipeline-num-layers %d", p->first_stage_layers);
    if (p->last_stage_layers > 0) text_add(&t, "--decoder-last-pipeline-num-layers %d", p->last_stage_layers);
    if (m->num_experts > 0) {
        text_add(&t, "--expert-model-parallel-size %d", mp->ep);
        text_add(&t, "--expert-tensor-parallel-size %d", mp->etp);
    }
    if (mp->order == ORDER_TP_CP_EP_PP_DP) text_add(&t, "--use-tp-pp-dp-mapping");
    /* batch and memory */
    text_add(&t, "--micro-batch-size %d", tr->micro_batch);
    text_add(&t, "--global-batch-size %d", tr->global_batch);
    if (tr->recompute == RECOMPUTE_SELECTIVE) text_add(&t, "--recompute-granularity selective");
    if (tr->recompute == RECOMPUTE_FULL) {
        text_add(&t, "--recompute-granularity full");
        text_add(&t, "--recompute-method uniform");
        text_add(&t, "--recompute-num-layers 1");
    }
    if (tr->opt_sharding == OPT_SHARD_DISTRIBUTED) text_add(&t, "--use-distributed-optimizer");
    if (tr->opt_sharding == OPT_SHARD_FULL) text_add(&t, "--use-torch-fsdp2");
    /* precision and overlap */
    text_add(&t, "--bf16");
    if (tr->precision == PRECISION_FP8) { text_add(&t, "--fp8-format hybrid"); }
    if (tr->overlap & OVERLAP_GRAD) text_add(&t, "--overlap-grad-reduce");
    if ((tr->overlap & OVERLAP_PARAM) && tr->opt_sharding != OPT_SHARD_NONE) text_add(&t, "--overlap-param-gather");
    if ((tr->overlap & OVERLAP_TP) && mp->tp > 1) text_add(&t, "--tp-comm-overlap");
    if ((tr->overlap & OVERLAP_EP) && m->num_experts > 0 && mp->ep > 1) text_add(&t, "--overlap-moe-expert-parallel-comm");
    if (t.failed) { free(t.s); return NULL; }
    return t.s;
}
