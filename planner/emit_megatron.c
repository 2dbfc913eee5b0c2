/* emit_megatron.c: Megatron-LM flags and a launch script of a plan (emit.h).
 *
 * Flag names are Megatron-LM's (NVIDIA/Megatron-LM d98e8a64dd): those of
 * megatron/training/arguments.py and the ones it generates from the
 * TransformerConfig, ModelParallelConfig and training dataclasses (field
 * name with '-' for '_').  What each part of the plan becomes:
 *   model      --num-layers --hidden-size --num-attention-heads
 *              --group-query-attention --num-query-groups | --multi-latent-attention
 *              --q-lora-rank --kv-lora-rank --qk-head-dim --qk-pos-emb-head-dim
 *              --v-head-dim, --kv-channels, --ffn-hidden-size, --normalization,
 *              --position-embedding-type rope --rotary-base --no-rope-freq,
 *              --window-size --window-attn-skip-freq, --softmax-type learnable,
 *              --swiglu | --quick-geglu --activation-func-clamp-value
 *              --glu-linear-offset, --disable-bias-linear | (biases on),
 *              --add-qkv-bias, --qk-layernorm | --qk-l2-norm,
 *              --untie-embeddings-and-output-weights, --vocab-size,
 *              --make-vocab-size-divisible-by 128, dropout 0 (the memory model
 *              keeps no dropout masks)
 *   MoE        --num-experts --moe-router-topk --moe-ffn-hidden-size
 *              --moe-shared-expert-intermediate-size --moe-shared-expert-gate
 *              --moe-layer-freq --moe-router-score-function --moe-router-pre-softmax
 *              --moe-router-topk-scaling-factor --moe-router-num-groups
 *              --moe-router-group-topk --moe-router-enable-expert-bias
 *              --moe-apply-probs-on-input --moe-router-load-balancing-type
 *              --moe-aux-loss-coeff --moe-grouped-gemm --moe-token-dispatcher-type
 *              --moe-expert-capacity-factor --moe-pad-expert-input-to-capacity
 *              --moe-token-drop-policy --mtp-num-layers
 *   mapping    --tensor-model-parallel-size --sequence-parallel
 *              --context-parallel-size --pipeline-model-parallel-size
 *              --num-layers-per-virtual-pipeline-stage (even split) |
 *              --num-virtual-stages-per-pipeline-rank (uneven: arguments.py:955)
 *              --decoder-first-pipeline-num-layers --decoder-last-pipeline-num-layers
 *              --expert-model-parallel-size --expert-tensor-parallel-size
 *              --use-tp-pp-dp-mapping
 *   memory     --recompute-granularity selective --recompute-modules ... |
 *              full --recompute-method uniform --recompute-num-layers 1;
 *              --use-distributed-optimizer; full sharding = Megatron-FSDP:
 *              --use-megatron-fsdp --data-parallel-sharding-strategy
 *              optim_grads_params --ckpt-format fsdp_dtensor (arguments.py:1169)
 *   precision  --bf16 [--fp8-format hybrid --fp8-recipe tensorwise: the delayed
 *              recipe refuses layernorm/moe_act recomputation, transformer_config.py:2000]
 *   overlap    --overlap-grad-reduce --overlap-param-gather --tp-comm-overlap
 *              --moe-shared-expert-overlap --overlap-moe-expert-parallel-comm
 *              (megatron_effective_overlap: the switches the simulator priced)
 */
#include "emit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "megatron_rules.h"

enum { FLAG_LEN = 48, VALUE_LEN = 96, MAX_FLAGS = 128 };

typedef struct {
    char flag[FLAG_LEN];
    char value[VALUE_LEN];   /* "" = a switch without value */
} Flag;

typedef struct {
    Flag v[MAX_FLAGS];
    int n;
    int failed;              /* a flag or value did not fit */
} FlagList;

static void add(FlagList *l, const char *flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(FlagList *l, const char *flag, const char *fmt, ...) {
    if (l->n >= MAX_FLAGS) { l->failed = 1; return; }
    Flag *f = &l->v[l->n];
    if (snprintf(f->flag, sizeof f->flag, "%s", flag) >= (int)sizeof f->flag) { l->failed = 1; return; }
    f->value[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(f->value, sizeof f->value, fmt, ap);
        va_end(ap);
        if (n < 0 || n >= (int)sizeof f->value) { l->failed = 1; return; }
    }
    l->n++;
}

static void add_switch(FlagList *l, const char *flag) { add(l, flag, NULL); }

static void model_flags(const Plan *p, FlagList *l) {
    const ModelSpec *m = &p->model;
    const TrainConfig *tr = &p->train;
    add(l, "--num-layers", "%d", m->num_layers);
    add(l, "--hidden-size", "%d", m->hidden);
    add(l, "--num-attention-heads", "%d", m->num_heads);
    if (!m->mla && m->num_kv_groups > 0 && m->num_kv_groups < m->num_heads) {
        add_switch(l, "--group-query-attention");
        add(l, "--num-query-groups", "%d", m->num_kv_groups);
    }
    if (m->mla) {
        add_switch(l, "--multi-latent-attention");
        if (m->q_lora_rank) add(l, "--q-lora-rank", "%d", m->q_lora_rank);
        add(l, "--kv-lora-rank", "%d", m->kv_lora_rank);
        add(l, "--qk-head-dim", "%d", m->qk_nope_head_dim);
        add(l, "--qk-pos-emb-head-dim", "%d", m->qk_rope_head_dim);
        add(l, "--v-head-dim", "%d", m->v_head_dim);
    } else if (m->head_dim > 0 && (long long)m->head_dim * m->num_heads != m->hidden) {
        add(l, "--kv-channels", "%d", m->head_dim);
    }
    add(l, "--ffn-hidden-size", "%d", m->num_dense_layers > 0 || m->num_experts == 0 ? m->dense_ffn : m->expert_ffn);
    add(l, "--seq-length", "%d", tr->seq_len);
    add(l, "--max-position-embeddings", "%d", tr->seq_len);
    add(l, "--normalization", "%s", m->norm == NORM_LAYER ? "LayerNorm" : "RMSNorm");
    add(l, "--position-embedding-type", "rope");
    /* --rotary-base is an int in arguments.py */
    add(l, "--rotary-base", "%.0f", m->rotary_base > 0 ? m->rotary_base : 10000.0);
    if (m->nope_every > 0) add(l, "--no-rope-freq", "%d", m->nope_every);
    if (m->sliding_window > 0) {
        /* (left, right) window of Megatron's attention: w-1 tokens before, none after */
        add(l, "--window-size", "%d,0", m->sliding_window - 1);
        if (m->sliding_window_every > 0) add(l, "--window-attn-skip-freq", "%d", m->sliding_window_every);
    }
    if (m->attn_sinks) add(l, "--softmax-type", "learnable");
    if (m->clamped_glu) {
        add_switch(l, "--quick-geglu");
        add(l, "--activation-func-clamp-value", "7.0");
        add(l, "--glu-linear-offset", "1.0");
    } else if (m->swiglu) {
        add_switch(l, "--swiglu");   /* GeGLU (gelu) has no flag; --swiglu has its shapes and FLOPs */
    }
    bool biases = m->attn_out_bias || m->expert_bias_linear;
    if (!biases) add_switch(l, "--disable-bias-linear");
    if (m->qkv_bias && !biases) add_switch(l, "--add-qkv-bias");
    if (m->qk_norm == QK_NORM_HEAD || m->qk_norm == QK_NORM_FULL || m->mla) add_switch(l, "--qk-layernorm");
    if (m->qk_norm == QK_NORM_L2) add_switch(l, "--qk-l2-norm");
    if (!m->tied_embeddings) add_switch(l, "--untie-embeddings-and-output-weights");
    add(l, "--vocab-size", "%d", m->vocab);
    add(l, "--make-vocab-size-divisible-by", "128");   /* the padding the simulator's output layer assumes */
    add(l, "--attention-dropout", "0.0");
    add(l, "--hidden-dropout", "0.0");
}

static void moe_flags(const Plan *p, unsigned overlap, FlagList *l) {
    const ModelSpec *m = &p->model;
    const TrainConfig *tr = &p->train;
    if (m->num_experts == 0) return;
    add(l, "--num-experts", "%d", m->num_experts);
    add(l, "--moe-router-topk", "%d", m->top_k);
    add(l, "--moe-ffn-hidden-size", "%d", m->expert_ffn);
    if (m->shared_ffn > 0) {
        add(l, "--moe-shared-expert-intermediate-size", "%d", m->shared_ffn);
        if (m->shared_expert_gate) add_switch(l, "--moe-shared-expert-gate");
    }
    if (m->num_dense_layers > 0)
        add(l, "--moe-layer-freq", "([0]*%d+[1]*%d)", m->num_dense_layers, m->num_layers - m->num_dense_layers);
    add(l, "--moe-router-score-function", "%s", m->router == ROUTER_SIGMOID ? "sigmoid" : "softmax");
    /* top-1 softmax routing needs the pre-softmax (transformer_config.py:2660) */
    if (m->router == ROUTER_SOFTMAX && (m->router_pre_softmax || m->top_k == 1)) add_switch(l, "--moe-router-pre-softmax");
    if (m->router_scale > 0) add(l, "--moe-router-topk-scaling-factor", "%g", m->router_scale);
    if (m->router_groups > 0) {
        add(l, "--moe-router-num-groups", "%d", m->router_groups);
        add(l, "--moe-router-group-topk", "%d", m->router_group_topk);
    }
    if (m->router_expert_bias) add_switch(l, "--moe-router-enable-expert-bias");
    if (m->router_probs_on_input) add_switch(l, "--moe-apply-probs-on-input");
    add(l, "--moe-router-load-balancing-type", "%s", load_balancing_name(m->load_balancing));
    add(l, "--moe-aux-loss-coeff", "%g", m->load_balancing == LB_NONE ? 0.0 : m->aux_loss_coeff);
    add_switch(l, "--moe-grouped-gemm");
    add(l, "--moe-token-dispatcher-type", "%s", tr->dispatcher == DISPATCHER_ALLGATHER ? "allgather" : "alltoall");
    if (tr->capacity_factor > 0) {
        add(l, "--moe-expert-capacity-factor", "%g", tr->capacity_factor);
        add_switch(l, "--moe-pad-expert-input-to-capacity");
        add(l, "--moe-token-drop-policy", "probs");
    }
    if (overlap & OVERLAP_SHARED_EXPERT) add_switch(l, "--moe-shared-expert-overlap");
    if (m->mtp_layers > 0) add(l, "--mtp-num-layers", "%d", m->mtp_layers);
}

static void parallel_flags(const Plan *p, FlagList *l) {
    const ModelSpec *m = &p->model;
    const Mapping *mp = &p->map;
    add(l, "--tensor-model-parallel-size", "%d", mp->tp);
    if (mp->tp > 1) add_switch(l, "--sequence-parallel");
    add(l, "--context-parallel-size", "%d", mp->cp);
    add(l, "--pipeline-model-parallel-size", "%d", mp->pp);
    bool uneven = p->first_stage_layers > 0 || p->last_stage_layers > 0;
    if (mp->vpp > 1) {
        if (uneven) add(l, "--num-virtual-stages-per-pipeline-rank", "%d", mp->vpp);
        else add(l, "--num-layers-per-virtual-pipeline-stage", "%d", m->num_layers / (mp->pp * mp->vpp));
    }
    if (p->first_stage_layers > 0) add(l, "--decoder-first-pipeline-num-layers", "%d", p->first_stage_layers);
    if (p->last_stage_layers > 0) add(l, "--decoder-last-pipeline-num-layers", "%d", p->last_stage_layers);
    if (m->num_experts > 0) {
        add(l, "--expert-model-parallel-size", "%d", mp->ep);
        add(l, "--expert-tensor-parallel-size", "%d", mp->etp);
    }
    if (mp->order == ORDER_TP_CP_EP_PP_DP) add_switch(l, "--use-tp-pp-dp-mapping");
}

static void training_flags(const Plan *p, unsigned overlap, FlagList *l) {
    const TrainConfig *tr = &p->train;
    add(l, "--micro-batch-size", "%d", tr->micro_batch);
    add(l, "--global-batch-size", "%d", tr->global_batch);
    if (tr->recompute == RECOMPUTE_SELECTIVE) {
        add(l, "--recompute-granularity", "selective");
        char mods[128];
        recompute_modules_format(train_recompute_modules(tr, &p->model), " ", mods, sizeof mods);
        if (strcmp(mods, "none")) add(l, "--recompute-modules", "%s", mods);
    }
    if (tr->recompute == RECOMPUTE_FULL) {
        add(l, "--recompute-granularity", "full");
        add(l, "--recompute-method", "uniform");
        add(l, "--recompute-num-layers", "1");
    }
    if (tr->opt_sharding != OPT_SHARD_NONE) add_switch(l, "--use-distributed-optimizer");
    if (tr->opt_sharding == OPT_SHARD_FULL) {
        add_switch(l, "--use-megatron-fsdp");
        add(l, "--data-parallel-sharding-strategy", "optim_grads_params");
        add(l, "--ckpt-format", "fsdp_dtensor");
    }
    add_switch(l, "--bf16");
    if (tr->precision == PRECISION_FP8) {
        add(l, "--fp8-format", "hybrid");
        add(l, "--fp8-recipe", "tensorwise");
    }
    if (overlap & OVERLAP_GRAD) add_switch(l, "--overlap-grad-reduce");
    if (overlap & OVERLAP_PARAM) add_switch(l, "--overlap-param-gather");
    if (overlap & OVERLAP_TP) add_switch(l, "--tp-comm-overlap");
    if (overlap & OVERLAP_EP) add_switch(l, "--overlap-moe-expert-parallel-comm");
}

static void collect(const Plan *p, FlagList *l) {
    l->n = 0;
    l->failed = 0;
    unsigned overlap = megatron_effective_overlap(&p->model, &p->map, &p->train);
    model_flags(p, l);
    moe_flags(p, overlap, l);
    parallel_flags(p, l);
    training_flags(p, overlap, l);
}

int emit_shell_quote(const char *s, char *out, size_t len) {
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=,+-@%";
    bool plain = s[0] != 0;
    for (const char *c = s; *c; c++)
        if (!strchr(safe, *c)) { plain = false; break; }
    size_t k = 0;
#define PUT(ch) do { if (k + 1 >= len) return -1; out[k++] = (ch); } while (0)
    if (plain) {
        for (const char *c = s; *c; c++) PUT(*c);
    } else {
        PUT('\'');
        for (const char *c = s; *c; c++) {
            if (*c == '\'') { PUT('\''); PUT('\\'); PUT('\''); PUT('\''); }
            else PUT(*c);
        }
        PUT('\'');
    }
#undef PUT
    out[k] = 0;
    return 0;
}

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(Text *t, const char *fmt, ...) {
    if (t->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { t->failed = 1; return; }
    size_t need = t->len + (size_t)n + 1;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < need) cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) { t->failed = 1; return; }
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static char *text_finish(Text *t) {
    if (t->failed || !t->s) { free(t->s); return NULL; }
    return t->s;
}

/* "flag value..." with each space-separated word of the value (a list
 * flag such as --recompute-modules takes several) quoted for the shell */
static int flag_text(const Flag *f, char *out, size_t len) {
    if (snprintf(out, len, "%s", f->flag) >= (int)len) return -1;
    size_t k = strlen(out);
    char word[VALUE_LEN], q[2 * VALUE_LEN + 8];
    for (const char *s = f->value; *s;) {
        while (*s == ' ') s++;
        size_t n = strcspn(s, " ");
        if (!n) break;
        snprintf(word, sizeof word, "%.*s", (int)n, s);
        s += n;
        if (emit_shell_quote(word, q, sizeof q)) return -1;
        int w = snprintf(out + k, len - k, " %s", q);
        if (w < 0 || (size_t)w >= len - k) return -1;
        k += (size_t)w;
    }
    return 0;
}

char *emit_megatron_flags(const Plan *p) {
    FlagList *l = malloc(sizeof *l);
    if (!l) return NULL;
    collect(p, l);
    Text t = {0};
    for (int i = 0; i < l->n && !l->failed; i++) {
        char line[FLAG_LEN + 2 * VALUE_LEN + 16];
        if (flag_text(&l->v[i], line, sizeof line)) { l->failed = 1; break; }
        text_add(&t, "%s%s", i ? " \\\n" : "", line);
    }
    if (l->failed) t.failed = 1;
    free(l);
    return text_finish(&t);
}

/* Megatron-LM's CUDA_DEVICE_MAX_CONNECTIONS rules (arguments.py:1454-1478,
 * 1049, 1166): before Blackwell, TP or CP needs 1 unless FSDP (which needs it
 * unset) or EP overlap (which prefers more connections) is on. */
const char *emit_cuda_device_max_connections(const Plan *p) {
    const char *g = p->cluster.gpu_name;
    bool blackwell = strstr(g, "B200") || strstr(g, "B100") || strstr(g, "B300") || strstr(g, "GB200");
    if (p->train.opt_sharding == OPT_SHARD_FULL) return NULL;
    unsigned overlap = megatron_effective_overlap(&p->model, &p->map, &p->train);
    if (overlap & OVERLAP_EP) return NULL;
    if (!blackwell && (p->map.tp > 1 || p->map.cp > 1)) return "1";
    return NULL;
}

/* Comment text: anything outside a safe set becomes '?', so names from
 * input cannot end the comment line. */
static void comment_safe(const char *s, char *out, size_t len) {
    size_t k = 0;
    for (; *s && k + 1 < len; s++)
        out[k++] = ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                    strchr(" ._-+/:,()", *s)) ? *s : '?';
    out[k] = 0;
}

char *emit_launch_script(const Plan *p, LauncherKind launcher) {
    FlagList *l = malloc(sizeof *l);
    if (!l) return NULL;
    collect(p, l);
    const Cluster *c = &p->cluster;
    int per_node = c->gpus_per_node > 0 ? c->gpus_per_node : 8;
    int world = p->map.world > 0 ? p->map.world : 1;
    if (world < per_node) per_node = world;
    int nodes = (world + per_node - 1) / per_node;
    char name[MP_NAME_LEN + 16], cname[MP_NAME_LEN + 16], run[2 * MP_NAME_LEN + 32];
    comment_safe(p->model.name, name, sizeof name);
    comment_safe(c->name, cname, sizeof cname);
    char run_raw[MP_NAME_LEN + 16];
    snprintf(run_raw, sizeof run_raw, "moeplan-%s", p->model.name);
    if (emit_shell_quote(run_raw, run, sizeof run)) l->failed = 1;
    const char *cdmc = emit_cuda_device_max_connections(p);

    Text t = {0};
    text_add(&t, "#!/usr/bin/env bash\n");
    text_add(&t, "# Megatron-LM launch written by moeplan: %s on %s, %d GPUs (%d node%s x %d)\n", name, cname, world,
             nodes, nodes > 1 ? "s" : "", per_node);
    text_add(&t, "# attention TP%d CP%d DP%d PP%d VPP%d, experts ETP%d EP%d EDP%d\n", p->map.tp, p->map.cp, p->map.dp,
             p->map.pp, p->map.vpp, p->map.etp, p->map.ep, p->map.edp);
    if (launcher == LAUNCH_TORCHRUN)
        text_add(&t, "# Run on every node with NODE_RANK (0..%d) and MASTER_ADDR set.\n", nodes - 1);
    else
        text_add(&t, "# Run once inside a Slurm allocation of %d node%s (sbatch or salloc).\n", nodes, nodes > 1 ? "s" : "");
    text_add(&t, "# Environment: MEGATRON_LM (a Megatron-LM checkout, default ./Megatron-LM), DATA_PATH (an\n"
                 "# indexed dataset prefix; unset: mock data), TOKENIZER_MODEL (a HuggingFace tokenizer; unset:\n"
                 "# a null tokenizer of the model's vocabulary), CHECKPOINT_DIR, TRAIN_ITERS, LR.\n");
    text_add(&t, "set -euo pipefail\n\n");
    text_add(&t, "MEGATRON_LM=\"${MEGATRON_LM:-./Megatron-LM}\"\n");
    text_add(&t, "RUN_NAME=%s\n", run);
    text_add(&t, "CHECKPOINT_DIR=\"${CHECKPOINT_DIR:-checkpoints/$RUN_NAME}\"\n");
    text_add(&t, "TRAIN_ITERS=\"${TRAIN_ITERS:-100}\"\n");
    text_add(&t, "LR=\"${LR:-1e-4}\"\n");
    text_add(&t, "NNODES=%d\nGPUS_PER_NODE=%d\n\n", nodes, per_node);
    if (cdmc) {
        text_add(&t, "# TP or CP on this GPU: Megatron-LM needs one CUDA connection so that its\n"
                     "# communication kernels are ordered (megatron/training/arguments.py:1475)\n");
        text_add(&t, "export CUDA_DEVICE_MAX_CONNECTIONS=%s\n", cdmc);
    } else {
        text_add(&t, "# Megatron-FSDP refuses CUDA_DEVICE_MAX_CONNECTIONS=1 and EP overlap wants several\n"
                     "# connections (megatron/training/arguments.py:1166, 1466): leave it unset\n");
        text_add(&t, "unset CUDA_DEVICE_MAX_CONNECTIONS\n");
    }
    text_add(&t, "# NCCL and PyTorch settings of Megatron-LM's MoE launch example\n"
                 "# (examples/megatron_fsdp/sbatch_mfsdp_deepseek_v3.sh); a value already set wins\n");
    text_add(&t, "export TORCH_NCCL_AVOID_RECORD_STREAMS=1\n");
    text_add(&t, "export NCCL_IB_TIMEOUT=\"${NCCL_IB_TIMEOUT:-19}\"\n");
    text_add(&t, "export NCCL_P2P_NET_CHUNKSIZE=\"${NCCL_P2P_NET_CHUNKSIZE:-2097152}\"\n\n");
    text_add(&t, "ARGS=(\n");
    for (int i = 0; i < l->n && !l->failed; i++) {
        char line[FLAG_LEN + 2 * VALUE_LEN + 16];
        if (flag_text(&l->v[i], line, sizeof line)) { l->failed = 1; break; }
        text_add(&t, "    %s\n", line);
    }
    text_add(&t, "    --train-iters \"$TRAIN_ITERS\"\n");
    text_add(&t, "    --lr \"$LR\"\n");
    text_add(&t, "    --min-lr 0.0\n    --lr-decay-style cosine\n    --lr-warmup-iters 0\n");
    text_add(&t, "    --weight-decay 0.1\n    --clip-grad 1.0\n    --init-method-std 0.02\n");
    text_add(&t, "    --log-interval 1\n    --eval-iters 0\n");
    text_add(&t, "    --save \"$CHECKPOINT_DIR\"\n    --load \"$CHECKPOINT_DIR\"\n");
    text_add(&t, ")\n");
    text_add(&t, "if [ -n \"${DATA_PATH:-}\" ]; then ARGS+=(--data-path \"$DATA_PATH\" --split 99,1,0); "
                 "else ARGS+=(--mock-data); fi\n");
    text_add(&t, "if [ -n \"${TOKENIZER_MODEL:-}\" ]; then ARGS+=(--tokenizer-type HuggingFaceTokenizer "
                 "--tokenizer-model \"$TOKENIZER_MODEL\"); else ARGS+=(--tokenizer-type NullTokenizer); fi\n\n");
    if (launcher == LAUNCH_TORCHRUN) {
        text_add(&t, "exec torchrun --nnodes \"$NNODES\" --nproc-per-node \"$GPUS_PER_NODE\" "
                     "--node-rank \"${NODE_RANK:-0}\" \\\n"
                     "    --master-addr \"${MASTER_ADDR:-localhost}\" --master-port \"${MASTER_PORT:-6000}\" \\\n"
                     "    \"$MEGATRON_LM/pretrain_gpt.py\" \"${ARGS[@]}\"\n");
    } else {
        text_add(&t, "if [ -z \"${MOEPLAN_IN_SRUN:-}\" ]; then\n"
                     "    export MOEPLAN_IN_SRUN=1\n"
                     "    export MASTER_ADDR=\"${MASTER_ADDR:-$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)}\"\n"
                     "    export MASTER_PORT=\"${MASTER_PORT:-6000}\"\n"
                     "    exec srun --nodes \"$NNODES\" --ntasks-per-node \"$GPUS_PER_NODE\" "
                     "--gpus-per-node \"$GPUS_PER_NODE\" bash \"$0\"\n"
                     "fi\n"
                     "export RANK=\"$SLURM_PROCID\" LOCAL_RANK=\"$SLURM_LOCALID\" WORLD_SIZE=\"$SLURM_NTASKS\"\n"
                     "exec python \"$MEGATRON_LM/pretrain_gpt.py\" \"${ARGS[@]}\"\n");
    }
    if (l->failed) t.failed = 1;
    free(l);
    return text_finish(&t);
}
