/* test_megatron_flags.c: every catalog model, searched under several option
 * sets; the flags of the top plans are read back and checked against a
 * table of Megatron-LM's spellings (flag name and value kind, from
 * megatron/training/arguments.py and the dataclasses it turns into flags)
 * and against Megatron-LM's own checks on them, written here again from
 * its source (validate_args, TransformerConfig.__post_init__), plus the
 * model's own flags (rotary base, router, norms, ...) from a per-model
 * table.  Also the launch script: environment and shell quoting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "planner/emit.h"
#include "planner/search.h"
#include "test_util.h"

/* ---- Megatron-LM's spellings ---- */
typedef enum { SWITCH, INT, FLOAT, TEXT } Kind;
typedef struct {
    const char *flag;
    Kind kind;
    const char *choices;   /* TEXT: "|a|b|" or NULL for free text */
} Spelling;

static const Spelling spellings[] = {
    {"--num-layers", INT, 0}, {"--hidden-size", INT, 0}, {"--num-attention-heads", INT, 0},
    {"--group-query-attention", SWITCH, 0}, {"--num-query-groups", INT, 0}, {"--multi-latent-attention", SWITCH, 0},
    {"--q-lora-rank", INT, 0}, {"--kv-lora-rank", INT, 0}, {"--qk-head-dim", INT, 0},
    {"--qk-pos-emb-head-dim", INT, 0}, {"--v-head-dim", INT, 0}, {"--kv-channels", INT, 0},
    {"--ffn-hidden-size", INT, 0}, {"--seq-length", INT, 0}, {"--max-position-embeddings", INT, 0},
    {"--normalization", TEXT, "|LayerNorm|RMSNorm|"},
    {"--position-embedding-type", TEXT, "|learned_absolute|rope|yarn|mrope|relative|none|"},
    {"--rotary-base", INT, 0}, {"--no-rope-freq", INT, 0}, {"--window-size", TEXT, 0},
    {"--window-attn-skip-freq", INT, 0}, {"--softmax-type", TEXT, "|vanilla|off-by-one|learnable|"},
    {"--swiglu", SWITCH, 0}, {"--quick-geglu", SWITCH, 0}, {"--activation-func-clamp-value", FLOAT, 0},
    {"--glu-linear-offset", FLOAT, 0}, {"--disable-bias-linear", SWITCH, 0}, {"--add-qkv-bias", SWITCH, 0},
    {"--qk-layernorm", SWITCH, 0}, {"--qk-l2-norm", SWITCH, 0}, {"--untie-embeddings-and-output-weights", SWITCH, 0},
    {"--vocab-size", INT, 0}, {"--make-vocab-size-divisible-by", INT, 0}, {"--attention-dropout", FLOAT, 0},
    {"--hidden-dropout", FLOAT, 0}, {"--num-experts", INT, 0}, {"--moe-router-topk", INT, 0},
    {"--moe-ffn-hidden-size", INT, 0}, {"--moe-shared-expert-intermediate-size", INT, 0},
    {"--moe-shared-expert-gate", SWITCH, 0}, {"--moe-layer-freq", TEXT, 0},
    {"--moe-router-score-function", TEXT, "|softmax|sigmoid|sqrtsoftplus|"}, {"--moe-router-pre-softmax", SWITCH, 0},
    {"--moe-router-topk-scaling-factor", FLOAT, 0}, {"--moe-router-num-groups", INT, 0},
    {"--moe-router-group-topk", INT, 0}, {"--moe-router-enable-expert-bias", SWITCH, 0},
    {"--moe-apply-probs-on-input", SWITCH, 0},
    {"--moe-router-load-balancing-type", TEXT, "|aux_loss|seq_aux_loss|global_aux_loss|sinkhorn|none|"},
    {"--moe-aux-loss-coeff", FLOAT, 0}, {"--moe-grouped-gemm", SWITCH, 0},
    {"--moe-token-dispatcher-type", TEXT, "|allgather|alltoall|flex|"}, {"--moe-expert-capacity-factor", FLOAT, 0},
    {"--moe-pad-expert-input-to-capacity", SWITCH, 0}, {"--moe-token-drop-policy", TEXT, "|probs|position|"},
    {"--moe-shared-expert-overlap", SWITCH, 0}, {"--mtp-num-layers", INT, 0},
    {"--tensor-model-parallel-size", INT, 0}, {"--sequence-parallel", SWITCH, 0}, {"--context-parallel-size", INT, 0},
    {"--pipeline-model-parallel-size", INT, 0}, {"--num-layers-per-virtual-pipeline-stage", INT, 0},
    {"--num-virtual-stages-per-pipeline-rank", INT, 0}, {"--decoder-first-pipeline-num-layers", INT, 0},
    {"--decoder-last-pipeline-num-layers", INT, 0}, {"--expert-model-parallel-size", INT, 0},
    {"--expert-tensor-parallel-size", INT, 0}, {"--use-tp-pp-dp-mapping", SWITCH, 0},
    {"--micro-batch-size", INT, 0}, {"--global-batch-size", INT, 0},
    {"--recompute-granularity", TEXT, "|full|selective|"}, {"--recompute-method", TEXT, "|uniform|block|"},
    {"--recompute-num-layers", INT, 0}, {"--recompute-modules", TEXT, 0 /* list, checked below */},
    {"--use-distributed-optimizer", SWITCH, 0}, {"--use-megatron-fsdp", SWITCH, 0},
    {"--data-parallel-sharding-strategy", TEXT, "|no_shard|optim|optim_grads|optim_grads_params|"},
    {"--ckpt-format", TEXT, "|torch|torch_dist|torch_dcp|fsdp_dtensor|"}, {"--bf16", SWITCH, 0},
    {"--fp8-format", TEXT, "|e4m3|hybrid|"}, {"--fp8-recipe", TEXT, "|tensorwise|delayed|mxfp8|blockwise|custom|"},
    {"--overlap-grad-reduce", SWITCH, 0}, {"--overlap-param-gather", SWITCH, 0}, {"--tp-comm-overlap", SWITCH, 0},
    {"--overlap-moe-expert-parallel-comm", SWITCH, 0},
};

static const char *const module_names = "|core_attn|moe_act|layernorm|mla_up_proj|mlp|moe|shared_experts|";

/* ---- the emitted text read back ---- */
enum { MAXF = 160, MAXV = 8 };
typedef struct {
    char flag[64];
    char val[MAXV][128];
    int nval;
} Parsed;

typedef struct {
    Parsed f[MAXF];
    int n;
} Flags;

/* one shell word (plain or single-quoted with '\'' escapes) */
static const char *read_word(const char *s, char *out, size_t len) {
    size_t k = 0;
    while (*s && *s != ' ' && *s != '\n') {
        if (*s == '\'') {
            for (s++; *s && *s != '\''; s++) if (k + 1 < len) out[k++] = *s;
            if (*s == '\'') s++;
        } else if (*s == '\\' && s[1] == '\'') {
            if (k + 1 < len) out[k++] = '\'';
            s += 2;
        } else {
            if (k + 1 < len) out[k++] = *s;
            s++;
        }
    }
    out[k] = 0;
    return s;
}

static void parse_flags(const char *text, Flags *fl) {
    fl->n = 0;
    const char *s = text;
    while (*s) {
        assert_true(fl->n < MAXF);
        Parsed *p = &fl->f[fl->n++];
        p->nval = 0;
        s = read_word(s, p->flag, sizeof p->flag);
        while (*s == ' ') {
            s++;
            if (*s == '\\' && s[1] == '\n') { s += 2; break; }   /* end of line */
            assert_true(p->nval < MAXV);
            s = read_word(s, p->val[p->nval++], sizeof p->val[0]);
        }
        if (*s == '\n') s++;
    }
}

static const Parsed *get(const Flags *fl, const char *flag) {
    for (int i = 0; i < fl->n; i++)
        if (!strcmp(fl->f[i].flag, flag)) return &fl->f[i];
    return NULL;
}
static bool has(const Flags *fl, const char *flag) { return get(fl, flag) != NULL; }
static long ival(const Flags *fl, const char *flag, long def) {
    const Parsed *p = get(fl, flag);
    return p && p->nval ? strtol(p->val[0], NULL, 10) : def;
}
static const char *sval(const Flags *fl, const char *flag) {
    const Parsed *p = get(fl, flag);
    return p && p->nval ? p->val[0] : "";
}
static bool has_module(const Flags *fl, const char *mod) {
    const Parsed *p = get(fl, "--recompute-modules");
    for (int i = 0; p && i < p->nval; i++) if (!strcmp(p->val[i], mod)) return true;
    return false;
}

static void check_spelling(const Flags *fl, const char *where) {
    for (int i = 0; i < fl->n; i++) {
        const Parsed *p = &fl->f[i];
        const Spelling *sp = NULL;
        for (size_t k = 0; k < sizeof spellings / sizeof spellings[0]; k++)
            if (!strcmp(spellings[k].flag, p->flag)) sp = &spellings[k];
        if (!sp) fail_msg("%s: %s is not a Megatron-LM flag", where, p->flag);
        for (int j = 0; j < i; j++)
            if (!strcmp(fl->f[j].flag, p->flag)) fail_msg("%s: %s given twice", where, p->flag);
        if (sp->kind == SWITCH) { if (p->nval) fail_msg("%s: %s takes no value", where, p->flag); continue; }
        if (!strcmp(p->flag, "--recompute-modules")) {
            if (!p->nval) fail_msg("%s: --recompute-modules without modules", where);
            for (int v = 0; v < p->nval; v++) {
                char pat[80];
                snprintf(pat, sizeof pat, "|%s|", p->val[v]);
                if (!strstr(module_names, pat)) fail_msg("%s: --recompute-modules %s is not a module", where, p->val[v]);
            }
            continue;
        }
        if (p->nval != 1) fail_msg("%s: %s takes one value, got %d", where, p->flag, p->nval);
        char *end;
        if (sp->kind == INT) { strtol(p->val[0], &end, 10); if (*end) fail_msg("%s: %s %s is not an int", where, p->flag, p->val[0]); }
        if (sp->kind == FLOAT) { strtod(p->val[0], &end); if (*end) fail_msg("%s: %s %s is not a number", where, p->flag, p->val[0]); }
        if (sp->kind == TEXT && sp->choices) {
            char pat[160];
            snprintf(pat, sizeof pat, "|%s|", p->val[0]);
            if (!strstr(sp->choices, pat)) fail_msg("%s: %s %s is not one of %s", where, p->flag, p->val[0], sp->choices);
        }
    }
}

/* Megatron-LM's checks, written from its source (d98e8a64dd). */
static void check_rules(const Flags *fl, const char *where) {
#define RULE(cond, text) do { if (!(cond)) fail_msg("%s: Megatron-LM refuses: %s", where, text); } while (0)
    long L = ival(fl, "--num-layers", 0), heads = ival(fl, "--num-attention-heads", 0);
    long tp = ival(fl, "--tensor-model-parallel-size", 1), cp = ival(fl, "--context-parallel-size", 1);
    long pp = ival(fl, "--pipeline-model-parallel-size", 1), ep = ival(fl, "--expert-model-parallel-size", 1);
    long etp = ival(fl, "--expert-tensor-parallel-size", tp), E = ival(fl, "--num-experts", 0);
    long groups = ival(fl, "--num-query-groups", heads), seq = ival(fl, "--seq-length", 0);
    long topk = ival(fl, "--moe-router-topk", 2);
    bool moe = E > 0;
    const char *disp = has(fl, "--moe-token-dispatcher-type") ? sval(fl, "--moe-token-dispatcher-type") : "allgather";
    /* transformer_config.py:1446, 1460 */
    RULE(heads % tp == 0, "num_attention_heads % tensor_model_parallel_size");
    if (!has(fl, "--multi-latent-attention")) RULE(groups % tp == 0 || tp % groups == 0, "num_query_groups and tp");
    /* arguments.py:1336 */
    if (cp > 1) RULE(seq % (2 * cp) == 0, "seq-length % (2 * context-parallel-size)");
    /* arguments.py:1657 */
    if (ep > 1) RULE(moe && E % ep == 0, "num-experts % expert-model-parallel-size");
    /* arguments.py:1441 */
    if (has(fl, "--tp-comm-overlap")) RULE(has(fl, "--sequence-parallel"), "--tp-comm-overlap without --sequence-parallel");
    /* arguments.py:1025-1029 */
    if (has(fl, "--overlap-param-gather")) {
        RULE(has(fl, "--use-distributed-optimizer") || has(fl, "--use-megatron-fsdp"), "param gather without distributed optimizer");
        RULE(has(fl, "--overlap-grad-reduce"), "--overlap-param-gather without --overlap-grad-reduce");
    }
    /* arguments.py:1031-1045: this repo never asks for torch FSDP2 */
    RULE(!has(fl, "--use-torch-fsdp2"), "--use-torch-fsdp2 (PP/EP limits)");
    /* arguments.py:1169 */
    if (has(fl, "--use-megatron-fsdp")) RULE(!strcmp(sval(fl, "--ckpt-format"), "fsdp_dtensor"), "Megatron-FSDP needs --ckpt-format fsdp_dtensor");
    /* transformer_config.py:1908-1931 */
    const char *gran = sval(fl, "--recompute-granularity");
    if (!strcmp(gran, "full")) RULE(has(fl, "--recompute-method") && ival(fl, "--recompute-num-layers", 0) >= 1 &&
                                    ival(fl, "--recompute-num-layers", 0) <= L / pp, "full recompute needs method and layers");
    if (!strcmp(gran, "selective")) RULE(!has(fl, "--recompute-method") && !has(fl, "--recompute-num-layers"), "selective with method");
    /* transformer_config.py:1964, 1969 */
    if (has_module(fl, "moe_act")) RULE(has(fl, "--moe-grouped-gemm"), "moe_act without grouped GEMM");
    if (has_module(fl, "mla_up_proj")) RULE(has(fl, "--multi-latent-attention"), "mla_up_proj without MLA");
    /* transformer_config.py:1991 */
    if (has_module(fl, "shared_experts")) RULE(!has(fl, "--moe-shared-expert-overlap"), "shared_experts recompute + overlap");
    /* transformer_config.py:2000: the delayed FP8 recipe (the default) refuses moe_act/layernorm recompute */
    if (has(fl, "--fp8-format") && (has_module(fl, "moe_act") || has_module(fl, "layernorm")))
        RULE(has(fl, "--fp8-recipe") && strcmp(sval(fl, "--fp8-recipe"), "delayed"), "delayed FP8 with moe_act/layernorm recompute");
    /* transformer_config.py:1820 */
    if (has(fl, "--moe-shared-expert-overlap")) RULE(strcmp(disp, "allgather"), "shared expert overlap with allgather");
    /* transformer_config.py:3002-3046 */
    if (has(fl, "--overlap-moe-expert-parallel-comm")) {
        if (pp > 1) RULE(has(fl, "--num-layers-per-virtual-pipeline-stage") || has(fl, "--num-virtual-stages-per-pipeline-rank"),
                         "EP overlap with PP and no VPP");
        RULE(ep > 1, "EP overlap without EP");
        RULE(strcmp(disp, "allgather"), "EP overlap with allgather");
        RULE(strcmp(gran, "full") && !has(fl, "--recompute-method") && !has_module(fl, "moe"), "EP overlap with recompute");
        RULE(has(fl, "--bf16"), "EP overlap without bf16");
        RULE(!has(fl, "--moe-shared-expert-overlap"), "EP overlap with shared expert overlap");
        RULE(ival(fl, "--mtp-num-layers", 0) <= 1, "EP overlap with > 1 MTP layer");
    }
    /* transformer_config.py:2612: biases (no --disable-bias-linear) in MoE need ETP 1 */
    if (moe && !has(fl, "--disable-bias-linear")) RULE(etp == 1, "MoE biases with ETP > 1");
    /* transformer_config.py:2617 */
    if (has(fl, "--moe-router-enable-expert-bias")) RULE(!strcmp(sval(fl, "--moe-router-score-function"), "sigmoid"), "expert bias without sigmoid");
    /* transformer_config.py:2660 */
    if (moe && topk == 1 && strcmp(sval(fl, "--moe-router-score-function"), "sigmoid"))
        RULE(has(fl, "--moe-router-pre-softmax"), "top-1 softmax without --moe-router-pre-softmax");
    /* transformer_config.py:2671-2688 */
    if (has(fl, "--moe-router-group-topk")) {
        long g = ival(fl, "--moe-router-num-groups", 0);
        RULE(g > 0 && E % g == 0 && ival(fl, "--moe-router-group-topk", 0) <= g, "router groups");
    }
    /* transformer_config.py:1836-1860, 1863 */
    if (has(fl, "--moe-pad-expert-input-to-capacity")) RULE(has(fl, "--moe-expert-capacity-factor"), "pad without capacity");
    /* arguments.py:944-1006 and transformer_config.py:2296-2360: the layer split */
    long first = ival(fl, "--decoder-first-pipeline-num-layers", 0), last = ival(fl, "--decoder-last-pipeline-num-layers", 0);
    if (has(fl, "--num-layers-per-virtual-pipeline-stage")) {
        RULE(!first && !last, "uneven split with --num-layers-per-virtual-pipeline-stage");
        RULE(L % pp == 0 && (L / pp) % ival(fl, "--num-layers-per-virtual-pipeline-stage", 1) == 0, "virtual stage size");
        RULE(pp > 1, "virtual pipeline without pipeline");
    }
    if (first || last) {
        long middle_layers = L - first - last, middle_stages = pp - (first > 0) - (last > 0);
        RULE((middle_layers == 0) == (middle_stages == 0), "middle stages and layers");
        if (middle_stages) RULE(middle_layers % middle_stages == 0, "middle layers % middle stages");
    } else if (pp > 1) {
        RULE(L % pp == 0, "num-layers % pipeline-model-parallel-size");
    }
    /* arguments.py:1336 + schedules.py:1160-1175: micro-batches of an interleaved schedule */
    long dp = ival(fl, "--tensor-model-parallel-size", 1) * cp * pp;
    (void)dp;
#undef RULE
}

/* Flags each model must carry (its HF config's values in Megatron's words). */
typedef struct {
    const char *model;
    const char *want[10];    /* "--flag" or "--flag value" (at most 10) */
    const char *absent[4];
} ModelFlags;

static const ModelFlags model_flags[] = {
    {"mixtral-8x7b", {"--rotary-base 1000000", "--num-query-groups 8", "--moe-aux-loss-coeff 0.02",
                      "--moe-router-score-function softmax", "--disable-bias-linear", "--swiglu"},
     {"--moe-router-pre-softmax", "--qk-layernorm"}},
    {"mixtral-8x22b", {"--rotary-base 1000000", "--num-experts 8", "--moe-router-topk 2", "--vocab-size 32000"}, {0}},
    {"mixtral-8x22b-g8t8", {"--num-experts 64", "--moe-router-topk 8", "--moe-ffn-hidden-size 2048"}, {0}},
    {"llama3-8x70b", {"--rotary-base 500000", "--ffn-hidden-size 28672", "--vocab-size 128256"}, {0}},
    {"dbrx", {"--normalization LayerNorm", "--rotary-base 500000", "--moe-router-topk 4", "--vocab-size 100352"}, {0}},
    {"deepseek-v3", {"--multi-latent-attention", "--q-lora-rank 1536", "--moe-router-score-function sigmoid",
                     "--moe-router-enable-expert-bias", "--moe-router-num-groups 8", "--moe-router-group-topk 4",
                     "--moe-router-topk-scaling-factor 2.5", "--mtp-num-layers 1", "--moe-layer-freq ([0]*3+[1]*58)",
                     "--qk-layernorm"},
     {"--moe-router-pre-softmax"}},
    {"gpt-oss-120b", {"--softmax-type learnable", "--window-size 127,0", "--window-attn-skip-freq 2", "--quick-geglu",
                      "--rotary-base 150000", "--moe-router-load-balancing-type none", "--kv-channels 64"},
     {"--disable-bias-linear", "--swiglu"}},
    {"qwen2-57b-a14b", {"--moe-router-pre-softmax", "--moe-shared-expert-gate", "--moe-shared-expert-intermediate-size 20480",
                        "--add-qkv-bias", "--rotary-base 1000000"},
     {"--qk-layernorm"}},
    {"qwen3-235b-a22b", {"--qk-layernorm", "--kv-channels 128", "--rotary-base 1000000", "--num-experts 128"},
     {"--moe-router-pre-softmax", "--add-qkv-bias"}},
    {"qwen3-30b-a3b", {"--qk-layernorm", "--kv-channels 128", "--rotary-base 1000000", "--moe-router-topk 8"},
     {"--moe-router-pre-softmax"}},
    {"grok-1", {"--num-query-groups 8", "--moe-router-pre-softmax", "--moe-router-topk 2", "--vocab-size 131072",
                "--moe-router-load-balancing-type none"},
     {"--untie-embeddings-and-output-weights"}},
    {"llama4-scout", {"--moe-router-score-function sigmoid", "--moe-router-topk 1", "--moe-apply-probs-on-input",
                      "--qk-l2-norm", "--no-rope-freq 4", "--rotary-base 500000", "--moe-shared-expert-intermediate-size 8192"},
     {"--moe-router-pre-softmax", "--qk-layernorm"}},
    {"olmoe-1b-7b", {"--qk-layernorm", "--moe-router-pre-softmax", "--num-experts 64", "--moe-router-topk 8",
                     "--moe-aux-loss-coeff 0.01"},
     {"--group-query-attention"}},
    {"deepseek-v2-lite", {"--multi-latent-attention", "--moe-router-pre-softmax", "--moe-router-score-function softmax",
                          "--moe-layer-freq ([0]*1+[1]*26)", "--moe-shared-expert-intermediate-size 2816",
                          "--moe-router-load-balancing-type seq_aux_loss"},
     {"--q-lora-rank", "--moe-router-enable-expert-bias"}},
};

static void check_model_flags(const Flags *fl, const ModelFlags *mf, const char *where) {
    for (int i = 0; i < 10 && mf->want[i]; i++) {
        char flag[64], value[96] = "";
        if (sscanf(mf->want[i], "%63s %95s", flag, value) < 1) fail();
        const Parsed *p = get(fl, flag);
        if (!p) fail_msg("%s: %s missing", where, flag);
        if (value[0] && (p->nval != 1 || strcmp(p->val[0], value)))
            fail_msg("%s: %s %s, want %s", where, flag, p->nval ? p->val[0] : "", value);
    }
    for (int i = 0; i < 4 && mf->absent[i]; i++)
        if (has(fl, mf->absent[i])) fail_msg("%s: %s must not be given", where, mf->absent[i]);
}

/* GPUs per model: enough memory for the largest ones */
static int gpus_for(const char *model) {
    if (!strcmp(model, "deepseek-v3") || !strcmp(model, "llama3-8x70b") || !strcmp(model, "qwen3-235b-a22b") ||
        !strcmp(model, "grok-1"))
        return 256;
    if (!strcmp(model, "mixtral-8x22b") || !strcmp(model, "mixtral-8x22b-g8t8") || !strcmp(model, "dbrx") ||
        !strcmp(model, "gpt-oss-120b") || !strcmp(model, "qwen2-57b-a14b") || !strcmp(model, "llama4-scout"))
        return 64;
    return 16;
}

typedef struct {
    const char *name;
    unsigned overlap;
    DispatcherKind dispatcher;
    Precision precision;
    int fix_recompute;        /* -1 free */
    int fix_sharding;         /* -1 free */
} OptionSet;

static const OptionSet option_sets[] = {
    {"defaults", OVERLAP_DEFAULT, DISPATCHER_ALLTOALL, PRECISION_BF16, -1, -1},
    /* (EP overlap and shared-expert overlap exclude each other: test_rules_by_hand) */
    {"grad, param, tp and ep overlap", OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_TP | OVERLAP_EP,
     DISPATCHER_ALLTOALL, PRECISION_BF16, -1, -1},
    {"allgather, shared overlap, fp8, selective", OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_SHARED_EXPERT,
     DISPATCHER_ALLGATHER, PRECISION_FP8, RECOMPUTE_SELECTIVE, -1},
    {"ep overlap, full sharding", OVERLAP_GRAD | OVERLAP_EP, DISPATCHER_ALLTOALL, PRECISION_BF16, -1, OPT_SHARD_FULL},
    /* refused with the distributed optimizer; plans without sharding (nothing to gather)
     * or with Megatron-FSDP (both switches on) remain */
    {"param gather without grad overlap", OVERLAP_PARAM, DISPATCHER_ALLTOALL, PRECISION_BF16, -1, -1},
};

static void test_catalog_models(void **state) {
    (void)state;
    Plan *base = malloc(sizeof *base), *plan = malloc(sizeof *plan);
    Flags *fl = malloc(sizeof *fl);
    assert_non_null(base); assert_non_null(plan); assert_non_null(fl);
    assert_int_equal(catalog_model_count, (int)(sizeof model_flags / sizeof model_flags[0]));
    for (size_t mi = 0; mi < sizeof model_flags / sizeof model_flags[0]; mi++) {
        for (size_t oi = 0; oi < sizeof option_sets / sizeof option_sets[0]; oi++) {
            const OptionSet *os = &option_sets[oi];
            MpError err = {{0}};
            memset(base, 0, sizeof *base);
            train_config_default(&base->train);
            assert_int_equal(model_lookup(model_flags[mi].model, &base->model, &err), 0);
            assert_int_equal(cluster_lookup("dgx-h100", &base->cluster, &err), 0);
            base->map = (Mapping){.world = gpus_for(model_flags[mi].model), .tp = 1, .cp = 1, .pp = 1, .vpp = 1,
                                  .etp = 1, .ep = 1};
            base->train.global_batch = 512;
            base->train.seq_len = 4096;
            base->train.overlap = os->overlap;
            base->train.dispatcher = os->dispatcher;
            base->train.precision = os->precision;
            SearchConstraints c;
            space_constraints_default(base, &c);
            if (os->fix_recompute >= 0) c.recompute_set = 1u << os->fix_recompute;
            if (os->fix_sharding >= 0) c.opt_sharding_set = 1u << os->fix_sharding;
            /* a smaller space keeps the suite quick under the sanitizers: CP only
             * in the first option set, micro-batches up to 2 */
            c.max_mbs = 2;
            if (oi > 0 || base->map.world > 64) c.max_cp = 1;
            SearchOptions so = {.threads = 2};
            SearchResult r;
            if (search_run(base, &c, &so, &r, &err)) fail_msg("%s: %s", model_flags[mi].model, err.msg);
            /* shared-expert overlap with the all-gather dispatcher: Megatron refuses every plan */
            if (oi == 2 && base->model.shared_ffn > 0) {
                assert_int_equal(r.num_ranked, 0);
                assert_int_equal(r.space.count, 0);
                assert_true(r.space.pruned[PRUNE_MEGATRON + MG_SHARED_OVERLAP_DISPATCHER] > 0);
                search_result_free(&r);
                continue;
            }
            if (r.num_ranked == 0) fail_msg("%s, %s: no plan", model_flags[mi].model, os->name);
            for (size_t k = 0; k < r.num_ranked && k < 3; k++) {
                candidate_apply(base, &r.ranked[k].cand, plan);
                char where[160];
                snprintf(where, sizeof where, "%s, %s, rank %zu", model_flags[mi].model, os->name, k + 1);
                char *text = emit_megatron_flags(plan);
                assert_non_null(text);
                parse_flags(text, fl);
                check_spelling(fl, where);
                check_rules(fl, where);
                check_model_flags(fl, &model_flags[mi], where);
                /* the flags say what was priced */
                assert_int_equal(ival(fl, "--tensor-model-parallel-size", 0), plan->map.tp);
                assert_int_equal(ival(fl, "--pipeline-model-parallel-size", 0), plan->map.pp);
                assert_int_equal(ival(fl, "--expert-model-parallel-size", 0), plan->map.ep);
                assert_int_equal(ival(fl, "--micro-batch-size", 0), plan->train.micro_batch);
                assert_int_equal(has(fl, "--use-megatron-fsdp"), plan->train.opt_sharding == OPT_SHARD_FULL);
                assert_int_equal(has(fl, "--use-distributed-optimizer"), plan->train.opt_sharding != OPT_SHARD_NONE);
                assert_int_equal(!strcmp(sval(fl, "--recompute-granularity"), "selective"),
                                 plan->train.recompute == RECOMPUTE_SELECTIVE);
                if (plan->train.recompute == RECOMPUTE_SELECTIVE) {
                    unsigned mods = train_recompute_modules(&plan->train, &plan->model);
                    assert_int_equal(has_module(fl, "moe"), (mods & RCM_MOE) != 0);
                    assert_int_equal(has_module(fl, "layernorm"), (mods & RCM_LAYERNORM) != 0);
                    assert_int_equal(has_module(fl, "moe_act"), (mods & RCM_MOE_ACT) != 0);
                }
                free(text);
            }
            /* a request Megatron refuses is pruned by its rule, not emitted */
            if (oi == 1 && base->model.num_experts > 0)
                assert_true(r.space.pruned[PRUNE_MEGATRON + MG_EP_OVERLAP_NEEDS_VPP] > 0);
            if (oi == 4) assert_true(r.space.pruned[PRUNE_MEGATRON + MG_PARAM_GATHER_NEEDS_GRAD] > 0);
            search_result_free(&r);
        }
    }
    free(base); free(plan); free(fl);
}

/* The rules fire on hand-made cases (counts: one candidate each). */
static void test_rules_by_hand(void **state) {
    (void)state;
    ModelSpec m;
    MpError err;
    assert_int_equal(model_lookup("qwen2-57b-a14b", &m, &err), 0);
    TrainConfig t;
    train_config_default(&t);
    Mapping map = {.world = 64, .tp = 2, .cp = 1, .pp = 4, .vpp = 1, .etp = 1, .ep = 8};
    assert_int_equal(megatron_first_violation(&m, &map, &t), -1);
    t.overlap = OVERLAP_PARAM;   /* distributed optimizer, no grad overlap: arguments.py:1028 */
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_PARAM_GATHER_NEEDS_GRAD);
    t.opt_sharding = OPT_SHARD_NONE;   /* nothing to gather: the switch is off, nothing refused */
    assert_int_equal(megatron_first_violation(&m, &map, &t), -1);
    train_config_default(&t);
    t.overlap |= OVERLAP_EP;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_EP_OVERLAP_NEEDS_VPP);
    map.vpp = 7;
    assert_int_equal(megatron_first_violation(&m, &map, &t), -1);
    t.dispatcher = DISPATCHER_ALLGATHER;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_EP_OVERLAP_DISPATCHER);
    t.dispatcher = DISPATCHER_ALLTOALL;
    t.recompute = RECOMPUTE_SELECTIVE;
    t.recompute_modules = RCM_MOE;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_EP_OVERLAP_RECOMPUTE);
    t.recompute = RECOMPUTE_NONE;
    t.overlap |= OVERLAP_SHARED_EXPERT;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_EP_OVERLAP_SHARED);
    map.ep = 1; map.etp = 2;   /* ETP traffic but no EP */
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_EP_OVERLAP_NEEDS_EP);
    train_config_default(&t);
    t.overlap |= OVERLAP_SHARED_EXPERT;
    t.dispatcher = DISPATCHER_ALLGATHER;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_SHARED_OVERLAP_DISPATCHER);
    t.dispatcher = DISPATCHER_ALLTOALL;
    t.recompute = RECOMPUTE_SELECTIVE;
    t.recompute_modules = RCM_SHARED_EXPERTS;
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_SHARED_RECOMPUTE_OVERLAP);
    assert_int_equal(model_lookup("gpt-oss-120b", &m, &err), 0);
    train_config_default(&t);
    map = (Mapping){.world = 64, .tp = 2, .cp = 1, .pp = 1, .vpp = 1, .etp = 2, .ep = 8};
    assert_int_equal(megatron_first_violation(&m, &map, &t), MG_MOE_BIAS_ETP);
    map.etp = 1;
    assert_int_equal(megatron_first_violation(&m, &map, &t), -1);
    assert_string_equal(megatron_rule_source(MG_PARAM_GATHER_NEEDS_GRAD), "megatron/training/arguments.py:1028");
    assert_string_equal(prune_rule_name(PRUNE_MEGATRON + MG_EP_OVERLAP_NEEDS_VPP), "mg-ep-overlap-vpp");
    assert_string_equal(prune_rule_name(PRUNE_MEMORY), "memory");
}

/* The launch script: the environment the flags need and safe quoting of
 * names that come from input. */
static void test_launch_script(void **state) {
    (void)state;
    Plan p;
    MpError err;
    memset(&p, 0, sizeof p);
    train_config_default(&p.train);
    assert_int_equal(model_lookup("mixtral-8x7b", &p.model, &err), 0);
    assert_int_equal(cluster_lookup("dgx-h100", &p.cluster, &err), 0);
    snprintf(p.model.name, sizeof p.model.name, "it's $(rm -rf x)\nname");
    p.map = (Mapping){.world = 16, .tp = 2, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 8};
    assert_int_equal(mapping_resolve(&p.map, p.model.num_experts, &err), 0);
    p.train.global_batch = 64;
    char *s = emit_launch_script(&p, LAUNCH_TORCHRUN);
    assert_non_null(s);
    assert_non_null(strstr(s, "export CUDA_DEVICE_MAX_CONNECTIONS=1\n"));   /* TP 2 on H100 */
    assert_non_null(strstr(s, "RUN_NAME='moeplan-it'\\''s $(rm -rf x)\nname'\n"));
    assert_non_null(strstr(s, "# Megatron-LM launch written by moeplan: it?s ?(rm -rf x)?name on dgx-h100, 16 GPUs (2 nodes x 8)\n"));
    assert_non_null(strstr(s, "NNODES=2\nGPUS_PER_NODE=8\n"));
    assert_non_null(strstr(s, "exec torchrun --nnodes \"$NNODES\""));
    assert_non_null(strstr(s, "    --tensor-model-parallel-size 2\n"));
    free(s);
    /* Megatron-FSDP: CUDA_DEVICE_MAX_CONNECTIONS unset (arguments.py:1166) */
    p.train.opt_sharding = OPT_SHARD_FULL;
    s = emit_launch_script(&p, LAUNCH_SRUN);
    assert_non_null(s);
    assert_non_null(strstr(s, "unset CUDA_DEVICE_MAX_CONNECTIONS\n"));
    assert_null(strstr(s, "export CUDA_DEVICE_MAX_CONNECTIONS"));
    assert_non_null(strstr(s, "exec srun --nodes \"$NNODES\""));
    assert_non_null(strstr(s, "    --use-megatron-fsdp\n"));
    free(s);
    /* TP 1, CP 1: no requirement */
    p.train.opt_sharding = OPT_SHARD_DISTRIBUTED;
    p.map = (Mapping){.world = 8, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 8};
    assert_int_equal(mapping_resolve(&p.map, p.model.num_experts, &err), 0);
    assert_null(emit_cuda_device_max_connections(&p));
    p.map.cp = 2;   /* CP on Hopper: 1 */
    assert_string_equal(emit_cuda_device_max_connections(&p), "1");
    assert_int_equal(cluster_lookup("hgx-b200", &p.cluster, &err), 0);   /* Blackwell: no requirement */
    assert_null(emit_cuda_device_max_connections(&p));
    char q[64];
    assert_int_equal(emit_shell_quote("plain-1.0_x", q, sizeof q), 0);
    assert_string_equal(q, "plain-1.0_x");
    assert_int_equal(emit_shell_quote("a b'c", q, sizeof q), 0);
    assert_string_equal(q, "'a b'\\''c'");
    assert_int_equal(emit_shell_quote("", q, sizeof q), 0);
    assert_string_equal(q, "''");
    assert_int_equal(emit_shell_quote("toolongforthebuffer", q, 8), -1);
}

/* The CLI: search and simulate --emit, bad input named and exit 2. */
static void test_cli(void **state) {
    (void)state;
    static char out[65536];
    int rc = moeplan_run("simulate --model qwen2-57b-a14b --gpus 64 --tp 2 --pp 4 --vpp 7 --ep 8 --gbs 256 "
                         "--overlap grad,param,ep --recompute-modules core_attn,moe_act --emit megatron",
                         RUN_STDOUT, out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--recompute-modules core_attn moe_act \\\n"));
    assert_non_null(strstr(out, "--overlap-moe-expert-parallel-comm\n"));
    assert_non_null(strstr(out, "--num-layers-per-virtual-pipeline-stage 1 \\\n"));
    expect_bad_input("simulate --model qwen2-57b-a14b --gpus 64 --tp 2 --pp 4 --ep 8 --gbs 256 --overlap grad,param,ep "
                     "--emit megatron",
                     "--emit: Megatron-LM refuses this plan: --overlap-moe-expert-parallel-comm with PP > 1 needs a "
                     "virtual pipeline (megatron/core/transformer/transformer_config.py:3007)");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --ep 8 --emit yaml", "--emit: 'yaml' is not megatron or launch");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --ep 8 --launcher srun", "--launcher: only with --emit launch");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --ep 8 --recompute-modules attn",
                     "--recompute-modules: unknown module 'attn'");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --ep 8 --recompute full --recompute-modules moe",
                     "--recompute-modules: only with --recompute selective");
    expect_bad_input("search --model mixtral-8x7b --gpus 8 --emit launch --launcher mpirun",
                     "--launcher: 'mpirun' is not torchrun or srun");
    rc = moeplan_run("search --model mixtral-8x7b --gpus 16 --gbs 64 --emit launch --launcher srun", RUN_STDOUT, out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "exec srun --nodes \"$NNODES\""));
    assert_non_null(strstr(out, "pretrain_gpt.py\" \"${ARGS[@]}\"\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_by_hand),
        cmocka_unit_test(test_launch_script),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_catalog_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
