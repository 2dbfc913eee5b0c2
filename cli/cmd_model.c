/* cmd_model.c: `moeplan model NAME|FILE [--seq S] [--json]`: a model's
 * parameters (total, active, per-part breakdown) and its training FLOPs per
 * token under both conventions (core/flops.c), beside the 6*N_active rule
 * of thumb. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "commands.h"
#include "core/catalog.h"
#include "core/model.h"

static void usage(FILE *f) {  /* --help only: errors stay one line */
    fprintf(f,
            "usage: moeplan model NAME|FILE [--name NAME] [--seq S] [--json]\n"
            "  NAME   a catalog model (mixtral-8x22b, deepseek-v3, ...); FILE a catalog-format JSON\n"
            "         or a HuggingFace config.json (mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3,\n"
            "         olmoe, dbrx, gpt_oss, llama4, grok-1); its name is _name_or_path, else the folder\n"
            "         of a config.json, else the file name\n"
            "  --name NAME                      the model's name (overrides the above)\n"
            "  --seq S                          sequence length for the attention FLOPs (default 4096)\n"
            "  --json                           print one JSON object instead of the table\n"
            "  --help, -h                       this text\n");
}

typedef struct {
    const char *key, *label;
    double per_layer;   /* parameters */
    int layers;
    double total;       /* parameters */
} Row;

static int build_rows(const ModelSpec *m, const ModelParams *p, Row *rows) {
    int L = m->num_layers, Lm = model_num_moe_layers(m), Ld = m->num_dense_layers, n = 0;
    if (!model_is_moe(m)) Lm = 0;
    rows[n++] = (Row){"attention", "attention", p->attention_per_layer, L, p->attention_per_layer * L};
    rows[n++] = (Row){"norms", "norms (2 per layer)", p->norms_per_layer, L, p->norms_per_layer * L};
    rows[n++] = (Row){"routed_experts", "routed experts (all)", p->expert_per_layer, Lm, p->expert_per_layer * Lm};
    rows[n++] = (Row){"shared_expert", "shared expert", p->shared_per_layer, Lm, p->shared_per_layer * Lm};
    rows[n++] = (Row){"router", "router", p->router_per_layer, Lm, p->router_per_layer * Lm};
    rows[n++] = (Row){"dense_mlp", "dense MLP", p->dense_mlp_per_layer, Ld, p->dense_mlp_per_layer * Ld};
    rows[n++] = (Row){"embedding", "embedding", p->embedding, 1, p->embedding};
    rows[n++] = (Row){"output", "output layer", p->output, 1, p->output};
    rows[n++] = (Row){"final_norm", "final norm", m->hidden, 1, m->hidden};
    return n;
}

static int print_json(const ModelSpec *m, const ModelParams *p, int seq, double legacy, double megatron) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", m->name);
    cJSON_AddNumberToObject(o, "seq", seq);
    cJSON *arch = cJSON_AddObjectToObject(o, "architecture");
    cJSON_AddNumberToObject(arch, "num_layers", m->num_layers);
    cJSON_AddNumberToObject(arch, "num_moe_layers", model_is_moe(m) ? model_num_moe_layers(m) : 0);
    cJSON_AddNumberToObject(arch, "num_dense_layers", m->num_dense_layers);
    cJSON_AddNumberToObject(arch, "hidden", m->hidden);
    cJSON_AddNumberToObject(arch, "num_heads", m->num_heads);
    cJSON_AddNumberToObject(arch, "num_kv_groups", m->num_kv_groups);
    cJSON_AddNumberToObject(arch, "head_dim", m->head_dim);
    cJSON_AddBoolToObject(arch, "mla", m->mla);
    cJSON_AddNumberToObject(arch, "num_experts", m->num_experts);
    cJSON_AddNumberToObject(arch, "top_k", m->top_k);
    cJSON_AddNumberToObject(arch, "expert_ffn", m->expert_ffn);
    cJSON_AddNumberToObject(arch, "shared_ffn", m->shared_ffn);
    cJSON_AddNumberToObject(arch, "dense_ffn", m->dense_ffn);
    cJSON_AddNumberToObject(arch, "vocab", m->vocab);
    cJSON_AddNumberToObject(arch, "mtp_layers", m->mtp_layers);
    cJSON *params = cJSON_AddObjectToObject(o, "params");
    cJSON_AddNumberToObject(params, "total", p->total);
    cJSON_AddNumberToObject(params, "active", p->active);
    cJSON_AddNumberToObject(params, "mtp", p->mtp);
    cJSON *per = cJSON_AddObjectToObject(params, "per_layer");
    cJSON *tot = cJSON_AddObjectToObject(params, "totals");
    Row rows[16];
    int nrows = build_rows(m, p, rows);
    for (int i = 0; i < nrows; i++) {
        if (i < 6) cJSON_AddNumberToObject(per, rows[i].key, rows[i].per_layer);
        cJSON_AddNumberToObject(tot, rows[i].key, rows[i].total);
    }
    cJSON *fl = cJSON_AddObjectToObject(o, "flops_per_token");
    cJSON_AddNumberToObject(fl, "megatron", megatron);
    cJSON_AddNumberToObject(fl, "legacy", legacy);
    cJSON_AddNumberToObject(fl, "six_n_active", 6.0 * p->active);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) { fprintf(stderr, "moeplan model: out of memory\n"); return 1; }
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

static void print_table(const ModelSpec *m, const ModelParams *p, int seq, double legacy, double megatron) {
    int Lm = model_is_moe(m) ? model_num_moe_layers(m) : 0;
    printf("%s: %d layers (%d MoE, %d dense), hidden %d, %d heads, %d KV groups, head dim %d%s\n", m->name,
           m->num_layers, Lm, m->num_dense_layers, m->hidden, m->num_heads, m->num_kv_groups, m->head_dim,
           m->mla ? " (MLA)" : "");
    printf("  %d experts, top-%d, expert FFN %d, shared FFN %d, dense FFN %d, vocab %d, %s embeddings",
           m->num_experts, m->top_k, m->expert_ffn, m->shared_ffn, m->dense_ffn, m->vocab,
           m->tied_embeddings ? "tied" : "untied");
    if (m->mtp_layers) printf(", %d MTP layer%s", m->mtp_layers, m->mtp_layers > 1 ? "s" : "");
    printf("\n\n");
    printf("%-24s %14s %7s %12s\n", "parameters", "per layer (M)", "layers", "total (B)");
    Row rows[16];
    int nrows = build_rows(m, p, rows);
    for (int i = 0; i < nrows; i++)
        printf("  %-22s %14.3f %7d %12.3f\n", rows[i].label, rows[i].per_layer / 1e6, rows[i].layers,
               rows[i].total / 1e9);
    printf("  %-22s %14s %7s %12.3f\n", "total", "", "", p->total / 1e9);
    printf("  %-22s %14s %7s %12.3f\n", "active (per token)", "", "", p->active / 1e9);
    if (p->mtp > 0) printf("  %-22s %14s %7s %12.3f   (not in total)\n", "MTP layers", "", "", p->mtp / 1e9);
    printf("\ntraining FLOPs per token (forward + backward) at seq %d\n", seq);
    printf("  %-26s %10.1f GFLOP\n", "megatron", megatron / 1e9);
    printf("  %-26s %10.1f GFLOP\n", "legacy", legacy / 1e9);
    printf("  %-26s %10.1f GFLOP\n", "6 x active parameters", 6.0 * p->active / 1e9);
}

int cmd_model(int argc, char **argv) {
    ArgList a;
    MpError err;
    if (args_init(&a, argc, argv, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    if (args_flag(&a, "--help") || args_flag(&a, "-h")) { usage(stdout); return 0; }
    int seq = 4096;
    bool json = args_flag(&a, "--json");
    if (args_int(&a, "--seq", &seq, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    if (seq <= 0 || seq > (1 << 24)) { fprintf(stderr, "--seq: must be in 1..%d, got %d\n", 1 << 24, seq); return 2; }
    const char *rename = NULL;
    if (args_value(&a, "--name", &rename, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    if (rename && (!rename[0] || strlen(rename) >= MP_NAME_LEN)) {
        fprintf(stderr, "--name: must be 1 to %d characters, got %zu\n", MP_NAME_LEN - 1, strlen(rename));
        return 2;
    }
    const char *name = NULL;
    for (int i = 1; i < a.argc; i++) {
        if (a.used[i] || a.argv[i][0] == '-') continue;
        if (name) { fprintf(stderr, "model: more than one model given ('%s' and '%s')\n", name, a.argv[i]); return 2; }
        name = a.argv[i];
        a.used[i] = true;
    }
    if (args_finish(&a, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    if (!name) { fprintf(stderr, "model: NAME|FILE: missing (usage: moeplan model NAME|FILE [--seq S] [--json])\n"); return 2; }
    ModelSpec m;
    if (model_lookup(name, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    if (rename) snprintf(m.name, sizeof m.name, "%s", rename);
    ModelParams p;
    model_params(&m, &p);
    double legacy = model_flops(&m, FLOPS_LEGACY, seq, 1.0);
    double megatron = model_flops(&m, FLOPS_MEGATRON, seq, 1.0);
    if (json) return print_json(&m, &p, seq, legacy, megatron);
    print_table(&m, &p, seq, legacy, megatron);
    return 0;
}
