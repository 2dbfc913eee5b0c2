/* calibration.c: the --calibration FILE loader (format in calibration.h and
 * docs/simulator.md):
 *   {"device": "4 x H200, device machine, 2026-11-22",
 *    "hbm_gb_per_s": 4200,                                   (optional)
 *    "gemms": [{"m": 8192, "n": 8192, "k": 8192, "tflops": 800,
 *               "name": "...", "groups": 1, "c_bytes": 2}, ...],      (name, groups, c_bytes optional)
 *    "attention": [{"seq": 4096, "batch": 4, "heads": 32, "kv_heads": 8,   (name: documentation, optional)
 *                   "head_dim": 128, "fwd_tflops": 300, "bwd_tflops": 280},
 *                  {"q_rows": 1024, "kv_rows": 2048, "mask": "none", "backend": "cudnn",
 *                   "batch": 1, "heads": 6, "head_dim": 128, ...}, ...],   (seq = q_rows = kv_rows, causal)
 *    "collectives": [{"op": "all_gather", "group_size": 4, "nodes": 1,
 *                     "bytes": 1048576, "busbw_gb_per_s": 31}, ...]}
 * Every error is one line "FILE: FIELD: reason". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/catalog.h"
#include "../core/json_util.h"
#include "calibration.h"

static const char *const top_keys[] = {"device", "hbm_gb_per_s", "gemms", "attention", "collectives", "notes", NULL};
static const char *const gemm_keys[] = {"name", "m", "n", "k", "groups", "c_bytes", "tflops", NULL};
static const char *const attn_keys[] = {"name", "seq", "q_rows", "kv_rows", "mask", "backend", "batch", "heads", "kv_heads",
                                        "head_dim", "fwd_tflops", "bwd_tflops", NULL};
static const char *const coll_keys[] = {"op", "group_size", "nodes", "bytes", "busbw_gb_per_s", NULL};
static const char *const ops[] = {"all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv"};

/* A measured figure must lie in its plausible range (with the physical
 * reason): a subnormal or absurd rate would make the search rank an
 * infinite or zero step first, or make GLPK abort. */
static int in_range(const char *where, const char *field, double v, double lo, double hi, const char *why, MpError *err) {
    if (!(v >= lo && v <= hi))
        return mp_fail(err, "%s: %s: %g is outside the plausible range [%g, %g]: %s", where, field, v, lo, hi, why);
    return 0;
}

#define TFLOPS_WHY "a measured GPU rate lies between 0.001 TFLOP/s and 5,000 (B300 FP8 dense) with room to spare"
#define DIM_MAX (1 << 24)

static int parse(const cJSON *root, const char *origin, char *where, size_t wcap, Calibration *out, MpError *err) {
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(root)) return mp_fail(err, "%s: calibration: expected a JSON object", origin);
    if (json_check_keys(root, top_keys, origin, err)) return -1;
    if (json_opt_string(root, "device", origin, out->device, sizeof out->device, err)) return -1;
    double hbm = 0;
    if (json_opt_double(root, "hbm_gb_per_s", origin, &hbm, err)) return -1;
    if (hbm < 0) return mp_fail(err, "%s: hbm_gb_per_s: must be positive", origin);
    if (hbm != 0 && in_range(origin, "hbm_gb_per_s", hbm, 10, 1e5, "HBM runs 900 (V100) to 8,000 GB/s (B200)", err))
        return -1;
    out->hbm_bw = hbm * 1e9;
    if (!isfinite(out->hbm_bw)) return mp_fail(err, "%s: hbm_gb_per_s: %g is too large", origin, hbm);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "gemms");
    if (g && !cJSON_IsArray(g)) return mp_fail(err, "%s: gemms: expected an array", origin);
    const cJSON *e;
    cJSON_ArrayForEach(e, g) {
        if (out->num_gemms >= CAL_MAX_GEMMS) return mp_fail(err, "%s: gemms: more than %d entries", origin, CAL_MAX_GEMMS);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: gemms[%d]: expected an object", origin, out->num_gemms);
        CalGemm *c = &out->gemms[out->num_gemms];
        snprintf(where, wcap, "%s: gemms[%d]", origin, out->num_gemms);
        c->groups = 1;
        c->c_bytes = 2;
        if (json_check_keys(e, gemm_keys, where, err) || json_opt_string(e, "name", where, c->name, sizeof c->name, err) ||
            json_req_int(e, "m", where, &c->m, err) || json_req_int(e, "n", where, &c->n, err) ||
            json_req_int(e, "k", where, &c->k, err) || json_opt_int(e, "groups", where, &c->groups, err) ||
            json_opt_double(e, "c_bytes", where, &c->c_bytes, err) || json_req_double(e, "tflops", where, &c->tflops, err))
            return -1;
        if (c->m < 1 || c->n < 1 || c->k < 1) return mp_fail(err, "%s: m/n/k: must be >= 1", where);
        if (c->groups < 1) return mp_fail(err, "%s: groups: must be >= 1", where);
        if (c->c_bytes != 2 && c->c_bytes != 4 && c->c_bytes != 8)
            return mp_fail(err, "%s: c_bytes: %g is not 2 (bf16), 4 (fp32) or 8 (fp32 accumulated)", where, c->c_bytes);
        if (c->tflops <= 0) return mp_fail(err, "%s: tflops: must be positive", where);
        if (in_range(where, "tflops", c->tflops, 1e-3, 1e5, TFLOPS_WHY, err) ||
            in_range(where, "m", c->m, 1, DIM_MAX, "a GEMM side above 2^24 is no model's shape", err) ||
            in_range(where, "n", c->n, 1, DIM_MAX, "a GEMM side above 2^24 is no model's shape", err) ||
            in_range(where, "k", c->k, 1, DIM_MAX, "a GEMM side above 2^24 is no model's shape", err) ||
            in_range(where, "groups", c->groups, 1, 1 << 16, "grouped GEMMs have one group per local expert", err))
            return -1;
        out->num_gemms++;
    }
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "attention");
    if (at && !cJSON_IsArray(at)) return mp_fail(err, "%s: attention: expected an array", origin);
    cJSON_ArrayForEach(e, at) {
        if (out->num_attention >= CAL_MAX_ATTENTION)
            return mp_fail(err, "%s: attention: more than %d entries", origin, CAL_MAX_ATTENTION);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: attention[%d]: expected an object", origin, out->num_attention);
        CalAttention *a = &out->attention[out->num_attention];
        snprintf(where, wcap, "%s: attention[%d]", origin, out->num_attention);
        char mask[16] = "causal", backend[16] = "auto";
        if (json_check_keys(e, attn_keys, where, err) || json_opt_string(e, "name", where, a->name, sizeof a->name, err) ||
            json_opt_int(e, "seq", where, &a->seq, err) ||
            json_opt_int(e, "q_rows", where, &a->q_rows, err) || json_opt_int(e, "kv_rows", where, &a->kv_rows, err) ||
            json_opt_string(e, "mask", where, mask, sizeof mask, err) ||
            json_opt_string(e, "backend", where, backend, sizeof backend, err) ||
            json_opt_int(e, "batch", where, &a->batch, err) || json_opt_int(e, "heads", where, &a->heads, err) ||
            json_opt_int(e, "kv_heads", where, &a->kv_heads, err) || json_opt_int(e, "head_dim", where, &a->head_dim, err) ||
            json_req_double(e, "fwd_tflops", where, &a->fwd_tflops, err) ||
            json_req_double(e, "bwd_tflops", where, &a->bwd_tflops, err))
            return -1;
        if (!cJSON_GetObjectItemCaseSensitive(e, "seq") && !cJSON_GetObjectItemCaseSensitive(e, "q_rows"))
            return mp_fail(err, "%s: seq: missing (give seq, or q_rows and kv_rows)", where);
        if (a->seq > 0) {
            if (a->q_rows == 0) a->q_rows = a->seq;
            if (a->kv_rows == 0) a->kv_rows = a->seq;
        }
        if (a->q_rows < 1 || a->kv_rows < 1) return mp_fail(err, "%s: seq/q_rows/kv_rows: must be >= 1", where);
        if (!strcmp(mask, "causal")) a->mask = ATTN_MASK_CAUSAL;
        else if (!strcmp(mask, "none")) a->mask = ATTN_MASK_NONE;
        else return mp_fail(err, "%s: mask: '%s' is not causal or none", where, mask);
        if (attn_backend_parse(backend, &a->backend))
            return mp_fail(err, "%s: backend: '%s' is not auto, cudnn, flash2, fa3 or own", where, backend);
        if (a->batch < 0 || a->heads < 0 || a->kv_heads < 0 || a->head_dim < 0)
            return mp_fail(err, "%s: batch/heads/kv_heads/head_dim: must be positive", where);
        if (a->fwd_tflops <= 0) return mp_fail(err, "%s: fwd_tflops: must be positive", where);
        if (a->bwd_tflops <= 0) return mp_fail(err, "%s: bwd_tflops: must be positive", where);
        if (in_range(where, "fwd_tflops", a->fwd_tflops, 1e-3, 1e5, TFLOPS_WHY, err) ||
            in_range(where, "bwd_tflops", a->bwd_tflops, 1e-3, 1e5, TFLOPS_WHY, err) ||
            in_range(where, "seq", a->seq, 0, DIM_MAX, "sequences are at most 2^24 tokens (moeplan's seq limit)", err) ||
            in_range(where, "q_rows", a->q_rows, 1, DIM_MAX, "sequences are at most 2^24 tokens (moeplan's seq limit)", err) ||
            in_range(where, "kv_rows", a->kv_rows, 1, DIM_MAX, "sequences are at most 2^24 tokens (moeplan's seq limit)", err) ||
            in_range(where, "batch", a->batch, 0, DIM_MAX, "a micro-batch above 2^24 sequences is no training run", err) ||
            in_range(where, "heads", a->heads, 0, DIM_MAX, "models have at most a few hundred heads", err) ||
            in_range(where, "kv_heads", a->kv_heads, 0, DIM_MAX, "models have at most a few hundred heads", err) ||
            in_range(where, "head_dim", a->head_dim, 0, DIM_MAX, "head dimensions are 64 to 256", err))
            return -1;
        out->num_attention++;
    }
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(root, "collectives");
    if (cl && !cJSON_IsArray(cl)) return mp_fail(err, "%s: collectives: expected an array", origin);
    cJSON_ArrayForEach(e, cl) {
        if (out->num_collectives >= CAL_MAX_COLL) return mp_fail(err, "%s: collectives: more than %d entries", origin, CAL_MAX_COLL);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: collectives[%d]: expected an object", origin, out->num_collectives);
        CalCollective *c = &out->collectives[out->num_collectives];
        snprintf(where, wcap, "%s: collectives[%d]", origin, out->num_collectives);
        double gbs = 0;
        c->nodes = 1;
        if (json_check_keys(e, coll_keys, where, err) || json_req_string(e, "op", where, c->op, sizeof c->op, err) ||
            json_req_int(e, "group_size", where, &c->group_size, err) || json_opt_int(e, "nodes", where, &c->nodes, err) ||
            json_req_double(e, "bytes", where, &c->bytes, err) || json_req_double(e, "busbw_gb_per_s", where, &gbs, err))
            return -1;
        bool known = false;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) known |= !strcmp(c->op, ops[i]);
        if (!known)
            return mp_fail(err, "%s: op: '%s' is not one of all_gather, reduce_scatter, all_reduce, all_to_all, send_recv", where, c->op);
        if (c->group_size < 2) return mp_fail(err, "%s: group_size: must be >= 2", where);
        if (c->nodes < 1 || c->nodes > c->group_size) return mp_fail(err, "%s: nodes: must be in 1..group_size", where);
        if (c->bytes <= 0) return mp_fail(err, "%s: bytes: must be positive", where);
        if (gbs <= 0) return mp_fail(err, "%s: busbw_gb_per_s: must be positive", where);
        if (in_range(where, "busbw_gb_per_s", gbs, 1e-3, 1.25e5,
                     "bus bandwidths run from ~1 GB/s (Ethernet) to ~1,000 GB/s (NVLink 5 with NVLS)", err) ||
            in_range(where, "bytes", c->bytes, 1, 1099511627776.0, "a collective above 1 TiB per GPU fits no GPU", err) ||
            in_range(where, "group_size", c->group_size, 2, 1 << 20, "groups hold at most moeplan's 2^20 GPUs", err))
            return -1;
        c->busbw = gbs * 1e9;
        if (!isfinite(c->busbw)) return mp_fail(err, "%s: busbw_gb_per_s: %g is too large", where, gbs);
        out->num_collectives++;
    }
    return 0;
}

int calibration_load_file(const char *path, Calibration *out, MpError *err) {
    char *text = NULL;
    if (read_text_file(path, &text, err)) return -1;
    cJSON *root = json_parse_text(text, path, err);
    free(text);
    if (!root) return -1;
    /* "PATH: collectives[N]" for messages: sized by the path, never cut */
    size_t wcap = strlen(path) + 48;
    char *where = malloc(wcap);
    int rc = where ? parse(root, path, where, wcap, out, err) : mp_fail(err, "%s: out of memory", path);
    free(where);
    cJSON_Delete(root);
    return rc;
}
