/* catalog.c: models and clusters from JSON (the embedded catalog, catalog-
 * format files, HuggingFace config.json files).  Formats: docs/core.md.
 * Every error is one line "FILE: FIELD: reason". */
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_config.h"
#include "json_util.h"

/* Biggest file we read: the largest real config.json is a few KB. */
#define MAX_FILE_BYTES (16 << 20)

/* Only regular files are read: the file is opened without blocking (a FIFO
 * with no writer would otherwise hang the open) and without becoming a
 * controlling terminal, then fstat decides before any byte is read. */
int read_text_file(const char *path, char **out, MpError *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return mp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mp_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mp_fail(err, "%s: cannot read: is %s, not a regular file", path,
                       S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket" : "a special file");
    }
    if (st.st_size >= MAX_FILE_BYTES) {
        close(fd);
        return mp_fail(err, "%s: larger than %d MiB", path, MAX_FILE_BYTES >> 20);
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) { int e = errno; close(fd); return mp_fail(err, "%s: cannot read: %s", path, strerror(e)); }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return mp_fail(err, "%s: out of memory", path); }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= MAX_FILE_BYTES) {
                free(buf); fclose(f);
                return mp_fail(err, "%s: larger than %d MiB", path, MAX_FILE_BYTES >> 20);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return mp_fail(err, "%s: out of memory", path); }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return mp_fail(err, "%s: cannot read", path); }
    buf[len] = 0;
    if (strlen(buf) != len) { free(buf); return mp_fail(err, "%s: not JSON: contains a NUL byte", path); }
    *out = buf;
    return 0;
}

/* "dir/mixtral.config.json" -> "mixtral.config" */
/* The file name without ".json"; for a file named config.json (a
 * downloaded HuggingFace model folder) the folder's name instead. */
static void file_stem(const char *path, char *out, size_t len) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strcmp(base, "config.json") && base > path) {
        const char *end = base - 1;   /* the '/' before config.json */
        while (end > path && end[-1] == '/') end--;
        const char *start = end;
        while (start > path && start[-1] != '/') start--;
        if (end > start && !(end - start == 1 && *start == '.')) {
            snprintf(out, len, "%.*s", (int)(end - start), start);
            return;
        }
    }
    snprintf(out, len, "%s", base);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".json")) out[n - 5] = 0;
}

static const char *const model_keys[] = {
    "name", "notes", "num_layers", "hidden", "num_heads", "num_kv_groups", "head_dim", "num_experts", "top_k",
    "expert_ffn", "shared_ffn", "num_dense_layers", "dense_ffn", "vocab", "tied_embeddings", "qkv_bias",
    "swiglu", "router", "mla", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
    "v_head_dim", "mtp_layers", "sliding_window", "sliding_window_every",
    "rotary_base", "nope_every", "norm", "sandwich_norm", "qk_norm", "attn_out_bias", "attn_sinks",
    "expert_bias_linear", "gelu", "clamped_glu", "router_pre_softmax", "router_scale", "router_groups", "router_group_topk",
    "router_expert_bias", "router_probs_on_input", "shared_expert_gate", "load_balancing", "aux_loss_coeff", NULL,
};

/* The fields that reach Megatron's flags and the exact parameter count
 * (model.h, "Fields that change no cost"). */
static int model_extra_fields(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    if (json_opt_double(root, "rotary_base", origin, &m->rotary_base, err) ||
        json_opt_int(root, "nope_every", origin, &m->nope_every, err) ||
        json_opt_bool(root, "sandwich_norm", origin, &m->sandwich_norm, err) ||
        json_opt_bool(root, "attn_out_bias", origin, &m->attn_out_bias, err) ||
        json_opt_bool(root, "attn_sinks", origin, &m->attn_sinks, err) ||
        json_opt_bool(root, "expert_bias_linear", origin, &m->expert_bias_linear, err) ||
        json_opt_bool(root, "gelu", origin, &m->gelu, err) ||
        json_opt_bool(root, "clamped_glu", origin, &m->clamped_glu, err) ||
        json_opt_bool(root, "router_pre_softmax", origin, &m->router_pre_softmax, err) ||
        json_opt_double(root, "router_scale", origin, &m->router_scale, err) ||
        json_opt_int(root, "router_groups", origin, &m->router_groups, err) ||
        json_opt_int(root, "router_group_topk", origin, &m->router_group_topk, err) ||
        json_opt_bool(root, "router_expert_bias", origin, &m->router_expert_bias, err) ||
        json_opt_bool(root, "router_probs_on_input", origin, &m->router_probs_on_input, err) ||
        json_opt_bool(root, "shared_expert_gate", origin, &m->shared_expert_gate, err) ||
        json_opt_double(root, "aux_loss_coeff", origin, &m->aux_loss_coeff, err))
        return -1;
    char buf[32] = "rmsnorm";
    if (json_opt_string(root, "norm", origin, buf, sizeof buf, err)) return -1;
    if (norm_kind_parse(buf, &m->norm)) return mp_fail(err, "%s: norm: '%s' is not rmsnorm or layernorm", origin, buf);
    snprintf(buf, sizeof buf, "none");
    if (json_opt_string(root, "qk_norm", origin, buf, sizeof buf, err)) return -1;
    if (qk_norm_parse(buf, &m->qk_norm)) return mp_fail(err, "%s: qk_norm: '%s' is not none, head, full or l2", origin, buf);
    snprintf(buf, sizeof buf, "aux_loss");
    if (json_opt_string(root, "load_balancing", origin, buf, sizeof buf, err)) return -1;
    if (load_balancing_parse(buf, &m->load_balancing))
        return mp_fail(err, "%s: load_balancing: '%s' is not aux_loss, seq_aux_loss or none", origin, buf);
    return 0;
}

static int model_from_catalog_json(const cJSON *root, const char *origin, ModelSpec *m, MpError *err) {
    memset(m, 0, sizeof *m);
    if (json_check_keys(root, model_keys, origin, err)) return -1;
    if (json_opt_string(root, "name", origin, m->name, sizeof m->name, err)) return -1;
    if (json_opt_bool(root, "mla", origin, &m->mla, err)) return -1;
    if (json_req_int(root, "num_layers", origin, &m->num_layers, err) ||
        json_req_int(root, "hidden", origin, &m->hidden, err) ||
        json_req_int(root, "num_heads", origin, &m->num_heads, err) ||
        json_req_int(root, "num_experts", origin, &m->num_experts, err) ||
        json_req_int(root, "vocab", origin, &m->vocab, err))
        return -1;
    if (m->num_experts != 0) {
        if (json_req_int(root, "top_k", origin, &m->top_k, err) ||
            json_req_int(root, "expert_ffn", origin, &m->expert_ffn, err))
            return -1;
    } else {
        m->num_dense_layers = m->num_layers;   /* a dense model: every layer has the dense MLP */
        if (json_opt_int(root, "top_k", origin, &m->top_k, err) ||
            json_opt_int(root, "expert_ffn", origin, &m->expert_ffn, err))
            return -1;
    }
    if (json_opt_int(root, "shared_ffn", origin, &m->shared_ffn, err) ||
        json_opt_int(root, "num_dense_layers", origin, &m->num_dense_layers, err) ||
        json_opt_int(root, "dense_ffn", origin, &m->dense_ffn, err) ||
        json_opt_int(root, "mtp_layers", origin, &m->mtp_layers, err) ||
        json_opt_int(root, "sliding_window", origin, &m->sliding_window, err) ||
        json_opt_int(root, "sliding_window_every", origin, &m->sliding_window_every, err))
        return -1;
    m->swiglu = true;
    if (json_opt_bool(root, "tied_embeddings", origin, &m->tied_embeddings, err) ||
        json_opt_bool(root, "qkv_bias", origin, &m->qkv_bias, err) ||
        json_opt_bool(root, "swiglu", origin, &m->swiglu, err))
        return -1;
    if (model_extra_fields(root, origin, m, err)) return -1;
    char router[16] = "softmax";
    if (json_opt_string(root, "router", origin, router, sizeof router, err)) return -1;
    if (!strcmp(router, "softmax")) m->router = ROUTER_SOFTMAX;
    else if (!strcmp(router, "sigmoid")) m->router = ROUTER_SIGMOID;
    else return mp_fail(err, "%s: router: '%s' is not softmax or sigmoid", origin, router);

    if (m->mla) {
        if (json_opt_int(root, "q_lora_rank", origin, &m->q_lora_rank, err) ||
            json_req_int(root, "kv_lora_rank", origin, &m->kv_lora_rank, err) ||
            json_req_int(root, "qk_nope_head_dim", origin, &m->qk_nope_head_dim, err) ||
            json_req_int(root, "qk_rope_head_dim", origin, &m->qk_rope_head_dim, err) ||
            json_req_int(root, "v_head_dim", origin, &m->v_head_dim, err))
            return -1;
        m->num_kv_groups = m->num_heads;
        if (m->qk_nope_head_dim < 0 || m->qk_rope_head_dim < 0 ||
            m->qk_nope_head_dim > INT_MAX - m->qk_rope_head_dim)
            return mp_fail(err, "%s: qk_nope_head_dim %d + qk_rope_head_dim %d: not a head dimension", origin,
                           m->qk_nope_head_dim, m->qk_rope_head_dim);
        m->head_dim = m->qk_nope_head_dim + m->qk_rope_head_dim;
        if (json_opt_int(root, "num_kv_groups", origin, &m->num_kv_groups, err) ||
            json_opt_int(root, "head_dim", origin, &m->head_dim, err))
            return -1;
    } else {
        static const char *const mla_only[] = {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                                               "qk_rope_head_dim", "v_head_dim"};
        for (size_t i = 0; i < sizeof mla_only / sizeof mla_only[0]; i++)
            if (cJSON_GetObjectItemCaseSensitive(root, mla_only[i]))
                return mp_fail(err, "%s: %s: only meaningful with \"mla\": true", origin, mla_only[i]);
        if (json_req_int(root, "num_kv_groups", origin, &m->num_kv_groups, err)) return -1;
        if (!cJSON_GetObjectItemCaseSensitive(root, "head_dim")) {
            if (m->num_heads > 0 && m->hidden % m->num_heads)
                return mp_fail(err, "%s: head_dim: missing, and hidden %d is not a multiple of num_heads %d",
                               origin, m->hidden, m->num_heads);
            if (m->num_heads > 0) m->head_dim = m->hidden / m->num_heads;
        } else if (json_opt_int(root, "head_dim", origin, &m->head_dim, err)) {
            return -1;
        }
    }
    return 0;
}

int model_from_json_text(const char *text, const char *origin, ModelSpec *out, MpError *err) {
    cJSON *root = json_parse_text(text, origin, err);
    if (!root) return -1;
    int rc;
    char hf_type[32] = "";
    if (!cJSON_IsObject(root)) {
        rc = mp_fail(err, "%s: expected a JSON object at the top level, got %s", origin, json_type_name(root));
    } else if (cJSON_GetObjectItemCaseSensitive(root, "model_type")) {
        rc = model_from_hf_config(root, origin, out, err);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        if (cJSON_IsString(t) && t->valuestring) snprintf(hf_type, sizeof hf_type, "%s", t->valuestring);
    } else {
        rc = model_from_catalog_json(root, origin, out, err);
    }
    cJSON_Delete(root);
    if (rc) return -1;
    if (hf_type[0]) {
        /* a HuggingFace file: messages name its keys, not ModelSpec's fields */
        if (!out->name[0]) {
            char stem[256];
            file_stem(origin, stem, sizeof stem);
            snprintf(out->name, sizeof out->name, "%.*s", MP_NAME_LEN - 1, stem);
        }
        MpError inner;
        if (model_validate(out, &inner) == 0) return 0;
        char *renamed = NULL;
        if (hf_config_rename_fields(hf_type, inner.msg, &renamed)) return mp_fail(err, "%s: %s", origin, inner.msg);
        mp_fail(err, "%s: %s", origin, renamed);
        free(renamed);
        return -1;
    }
    if (!out->name[0]) {
        char stem[256];
        file_stem(origin, stem, sizeof stem);
        snprintf(out->name, sizeof out->name, "%.*s", MP_NAME_LEN - 1, stem);
    }
    MpError inner;
    if (model_validate(out, &inner)) return mp_fail(err, "%s: %s", origin, inner.msg);
    return 0;
}

static const char *const cluster_keys[] = {
    "base", "name", "notes", "gpu", "peak_bf16_tflops", "peak_fp8_tflops", "hbm_mib", "hbm_tb_per_s",
    "hbm_achievable_tb_per_s", "sm_count", "gpus_per_node", "nvlink_domain", "nvlink_gb_per_s",
    "nvlink_busbw_gb_per_s", "nvlink_latency_us", "nics_per_node", "nic_gbit_per_s", "nic_busbw_gb_per_s",
    "net_latency_us", "net_topology", "attention_backend", NULL,
};

/* Every wrong field of a file in one line: "ORIGIN: N wrong fields: a; b". */
typedef struct {
    char text[MP_ERROR_LEN];
    int count;
} FieldErrors;

static void field_error(FieldErrors *l, const char *origin, const MpError *e) {
    const char *m = e->msg;
    size_t n = strlen(origin);
    if (!strncmp(m, origin, n) && !strncmp(m + n, ": ", 2)) m += n + 2; /* the origin is said once */
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof l->text - len, "%s%s", l->count ? "; " : "", m);
    l->count++;
}

static int field_errors_fail(const FieldErrors *l, const char *origin, MpError *err) {
    if (l->count == 1) return mp_fail(err, "%s: %s", origin, l->text);
    return mp_fail(err, "%s: %d wrong fields: %s", origin, l->count, l->text);
}

/* "base": "<catalog cluster>": the catalog entry with this file's fields on
 * top.  Returns the merged object (caller deletes) or NULL (err). */
static cJSON *cluster_with_base(const cJSON *root, const char *origin, MpError *err) {
    const cJSON *b = cJSON_GetObjectItem(root, "base");
    if (!cJSON_IsString(b)) {
        mp_fail(err, "%s: base: expected a catalog cluster name (string)", origin);
        return NULL;
    }
    const char *base_json = NULL;
    char names[256] = "";
    for (int i = 0; i < catalog_cluster_count; i++) {
        if (!strcmp(catalog_cluster_entries[i].name, b->valuestring)) base_json = catalog_cluster_entries[i].json;
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", catalog_cluster_entries[i].name);
    }
    if (!base_json) {
        mp_fail(err, "%s: base: '%s' is not a catalog cluster (%s)", origin, b->valuestring, names);
        return NULL;
    }
    cJSON *merged = cJSON_Parse(base_json);
    if (!merged) {
        mp_fail(err, "%s: base: catalog entry %s does not parse", origin, b->valuestring);
        return NULL;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string || !strcmp(it->string, "base")) continue;
        cJSON *copy = cJSON_Duplicate(it, true);
        if (cJSON_GetObjectItem(merged, it->string)) cJSON_ReplaceItemInObject(merged, it->string, copy);
        else cJSON_AddItemToObject(merged, it->string, copy);
    }
    /* a derived cluster without its own name is not the base */
    if (!cJSON_GetObjectItem(root, "name")) cJSON_DeleteItemFromObject(merged, "name");
    return merged;
}

int cluster_from_json_text(const char *text, const char *origin, Cluster *out, MpError *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = json_parse_text(text, origin, err);
    if (!root) return -1;
    int rc = -1;
    /* JSON units (docs/core.md) -> struct units (bytes, bytes/s, FLOP/s, s). */
    double bf16 = 0, fp8 = 0, hbm_mib = 0, hbm_tb = 0, hbm_ach_tb = 0, nvl_gb = 0, nvl_bus_gb = 0, nvl_lat_us = 0,
           nic_gbit = 0, nic_bus_gb = 0, net_lat_us = 0;
    if (!cJSON_IsObject(root)) {
        mp_fail(err, "%s: expected a JSON object at the top level, got %s", origin, json_type_name(root));
        goto done;
    }
    if (cJSON_GetObjectItem(root, "base")) {
        cJSON *merged = cluster_with_base(root, origin, err);
        if (!merged) goto done;
        cJSON_Delete(root);
        root = merged;
    }
    if (json_check_keys(root, cluster_keys, origin, err)) goto done;
    /* every field is checked, and every wrong one reported in one line */
    FieldErrors fe = {"", 0};
    MpError e;
#define FIELD(call) do { if (call) field_error(&fe, origin, &e); } while (0)
    FIELD(json_opt_string(root, "name", origin, out->name, sizeof out->name, &e));
    FIELD(json_req_string(root, "gpu", origin, out->gpu_name, sizeof out->gpu_name, &e));
    struct { const char *key; double *d; int *i; } nums[] = {
        {"peak_bf16_tflops", &bf16, NULL}, {"peak_fp8_tflops", &fp8, NULL}, {"hbm_mib", &hbm_mib, NULL},
        {"hbm_tb_per_s", &hbm_tb, NULL}, {"hbm_achievable_tb_per_s", &hbm_ach_tb, NULL},
        {"sm_count", NULL, &out->sm_count}, {"gpus_per_node", NULL, &out->gpus_per_node},
        {"nvlink_domain", NULL, &out->nvlink_domain}, {"nvlink_gb_per_s", &nvl_gb, NULL},
        {"nvlink_busbw_gb_per_s", &nvl_bus_gb, NULL}, {"nvlink_latency_us", &nvl_lat_us, NULL},
        {"nics_per_node", NULL, &out->nics_per_node}, {"nic_gbit_per_s", &nic_gbit, NULL},
        {"nic_busbw_gb_per_s", &nic_bus_gb, NULL}, {"net_latency_us", &net_lat_us, NULL},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        int r = nums[k].d ? json_req_double(root, nums[k].key, origin, nums[k].d, &e)
                          : json_req_int(root, nums[k].key, origin, nums[k].i, &e);
        double v = nums[k].d ? *nums[k].d : (double)*nums[k].i;
        /* every figure of a cluster is a positive count, rate, size or latency */
        if (!r && !(v > 0)) r = mp_fail(&e, "%s: must be positive, got %g", nums[k].key, v);
        if (r) field_error(&fe, origin, &e);
    }
    FIELD(json_req_string(root, "net_topology", origin, out->net_topology, sizeof out->net_topology, &e));
#undef FIELD
    if (fe.count) { field_errors_fail(&fe, origin, err); goto done; }
    char backend[32] = "";
    if (json_opt_string(root, "attention_backend", origin, backend, sizeof backend, err)) goto done;
    if (backend[0] && attn_backend_parse(backend, &out->attention_backend)) {
        mp_fail(err, "%s: attention_backend: '%s' is not auto, cudnn, flash2, fa3 or own", origin, backend);
        goto done;
    }
    out->peak_bf16_flops = bf16 * 1e12;
    out->peak_fp8_flops = fp8 * 1e12;
    out->hbm_bytes = hbm_mib * 1048576.0;
    out->hbm_bw = hbm_tb * 1e12;
    out->hbm_bw_achievable = hbm_ach_tb * 1e12;
    out->nvlink_bw = nvl_gb * 1e9;
    out->nvlink_busbw = nvl_bus_gb * 1e9;
    out->nvlink_latency = nvl_lat_us * 1e-6;
    out->nic_bw = nic_gbit * 1e9 / 8.0;
    out->nic_busbw = nic_bus_gb * 1e9;
    out->net_latency = net_lat_us * 1e-6;
    if (!out->name[0]) {
        char stem[256];
        file_stem(origin, stem, sizeof stem);
        snprintf(out->name, sizeof out->name, "%.*s", MP_NAME_LEN - 1, stem);
    }
    MpError inner;
    if (cluster_validate(out, &inner)) {
        mp_fail(err, "%s: %s", origin, inner.msg);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* A name with a '/' or ending in ".json" is a path; anything else is a
 * catalog name first and a path only if such a file exists. */
static int looks_like_path(const char *s) {
    size_t n = strlen(s);
    return strchr(s, '/') != NULL || (n > 5 && !strcmp(s + n - 5, ".json"));
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const CatalogEntry *find_entry(const CatalogEntry *entries, int count, const char *name) {
    for (int i = 0; i < count; i++)
        if (!strcmp(entries[i].name, name)) return &entries[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int unknown_name(const char *kind, const char *name, const CatalogEntry *entries, int count, MpError *err) {
    const char *names[256];
    int n = count < 256 ? count : 256;
    for (int i = 0; i < n; i++) names[i] = entries[i].name;
    qsort(names, n, sizeof names[0], cmp_str);
    char list[400];
    int pos = 0;
    list[0] = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(list + pos, sizeof list - pos, "%s%s", i ? ", " : "", names[i]);
        if (w < 0 || w >= (int)sizeof list - pos) break;
        pos += w;
    }
    return mp_fail(err, "unknown %s '%.64s' (known: %s; or a path to a JSON file)", kind, name, list);
}

typedef int (*FromText)(const char *text, const char *origin, void *out, MpError *err);

static int load_path(const char *path, FromText parse, void *out, MpError *err) {
    char *text;
    if (read_text_file(path, &text, err)) return -1;
    int rc = parse(text, path, out, err);
    free(text);
    return rc;
}

static int model_parse_cb(const char *text, const char *origin, void *out, MpError *err) {
    return model_from_json_text(text, origin, (ModelSpec *)out, err);
}

static int cluster_parse_cb(const char *text, const char *origin, void *out, MpError *err) {
    return cluster_from_json_text(text, origin, (Cluster *)out, err);
}

static int lookup(const char *name, const char *kind, const char *dir, const CatalogEntry *entries, int count,
                  FromText parse, void *out, MpError *err) {
    if (!name || !name[0]) return mp_fail(err, "%s: empty name", kind);
    if (looks_like_path(name)) return load_path(name, parse, out, err);
    const CatalogEntry *e = find_entry(entries, count, name);
    if (e) {
        char origin[128];
        snprintf(origin, sizeof origin, "%s/%.64s.json", dir, e->name);
        return parse(e->json, origin, out, err);
    }
    if (file_exists(name)) return load_path(name, parse, out, err);
    return unknown_name(kind, name, entries, count, err);
}

int model_lookup(const char *name_or_path, ModelSpec *out, MpError *err) {
    return lookup(name_or_path, "model", "models", catalog_model_entries, catalog_model_count, model_parse_cb, out, err);
}

int cluster_lookup(const char *name_or_path, Cluster *out, MpError *err) {
    return lookup(name_or_path, "cluster", "topologies", catalog_cluster_entries, catalog_cluster_count,
                  cluster_parse_cb, out, err);
}
