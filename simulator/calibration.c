/* calibration.c: the --calibration FILE loader (format in calibration.h and
 * docs/simulator.md):
 *   {"device": "4 x H200, device machine, 2026-11-22",
 *    "hbm_gb_per_s": 4200,                                   (optional)
 *    "gemms": [{"m": 8192, "n": 8192, "k": 8192, "tflops": 800,
 *               "name": "...", "groups": 1, "c_bytes": 2}, ...],      (name, groups, c_bytes optional)
 *    "attention": [{"seq": 4096, "batch": 4, "heads": 32, "kv_heads": 8,
 *                   "head_dim": 128, "fwd_tflops": 300, "bwd_tflops": 280}, ...],
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

/* Floors: the simulator divides by every measured rate, so one near zero
 * (a subnormal such as 1e-320 passes "positive") makes the step time
 * infinite.  1 GFLOP/s is slower than one CPU core; no GPU measurement is
 * below it.  (Found with tests/fuzz.) */
#define CAL_MIN_TFLOPS 0.001
#define CAL_MIN_WHY "1 GFLOP/s: slower than one CPU core"

static const char *const top_keys[] = {"device", "hbm_gb_per_s", "gemms", "attention", "collectives", "notes", NULL};
static const char *const gemm_keys[] = {"name", "m", "n", "k", "groups", "c_bytes", "tflops", NULL};
static const char *const attn_keys[] = {"seq", "batch", "heads", "kv_heads", "head_dim", "fwd_tflops", "bwd_tflops", NULL};
static const char *const coll_keys[] = {"op", "group_size", "nodes", "bytes", "busbw_gb_per_s", NULL};
static const char *const ops[] = {"all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv"};

static int parse(const cJSON *root, const char *origin, Calibration *out, MpError *err) {
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(root)) return mp_fail(err, "%s: calibration: expected a JSON object", origin);
    if (json_check_keys(root, top_keys, origin, err)) return -1;
    if (json_opt_string(root, "device", origin, out->device, sizeof out->device, err)) return -1;
    double hbm = 0;
    if (json_opt_double(root, "hbm_gb_per_s", origin, &hbm, err)) return -1;
    if (hbm < 0) return mp_fail(err, "%s: hbm_gb_per_s: must be positive", origin);
    if (hbm > 0 && hbm < 1) return mp_fail(err, "%s: hbm_gb_per_s: %g is below 1 (a V100 copies at 900)", origin, hbm);
    out->hbm_bw = hbm * 1e9;
    if (!isfinite(out->hbm_bw)) return mp_fail(err, "%s: hbm_gb_per_s: %g is too large", origin, hbm);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "gemms");
    if (g && !cJSON_IsArray(g)) return mp_fail(err, "%s: gemms: expected an array", origin);
    const cJSON *e;
    cJSON_ArrayForEach(e, g) {
        if (out->num_gemms >= CAL_MAX_GEMMS) return mp_fail(err, "%s: gemms: more than %d entries", origin, CAL_MAX_GEMMS);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: gemms[%d]: expected an object", origin, out->num_gemms);
        CalGemm *c = &out->gemms[out->num_gemms];
        char where[64];
        snprintf(where, sizeof where, "%s: gemms[%d]", origin, out->num_gemms);
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
        if (c->tflops < CAL_MIN_TFLOPS) return mp_fail(err, "%s: tflops: %g is below %g (%s)", where, c->tflops, CAL_MIN_TFLOPS, CAL_MIN_WHY);
        out->num_gemms++;
    }
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "attention");
    if (at && !cJSON_IsArray(at)) return mp_fail(err, "%s: attention: expected an array", origin);
    cJSON_ArrayForEach(e, at) {
        if (out->num_attention >= CAL_MAX_ATTENTION)
            return mp_fail(err, "%s: attention: more than %d entries", origin, CAL_MAX_ATTENTION);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: attention[%d]: expected an object", origin, out->num_attention);
        CalAttention *a = &out->attention[out->num_attention];
        char where[64];
        snprintf(where, sizeof where, "%s: attention[%d]", origin, out->num_attention);
        if (json_check_keys(e, attn_keys, where, err) || json_req_int(e, "seq", where, &a->seq, err) ||
            json_opt_int(e, "batch", where, &a->batch, err) || json_opt_int(e, "heads", where, &a->heads, err) ||
            json_opt_int(e, "kv_heads", where, &a->kv_heads, err) || json_opt_int(e, "head_dim", where, &a->head_dim, err) ||
            json_req_double(e, "fwd_tflops", where, &a->fwd_tflops, err) ||
            json_req_double(e, "bwd_tflops", where, &a->bwd_tflops, err))
            return -1;
        if (a->seq < 1) return mp_fail(err, "%s: seq: must be >= 1", where);
        if (a->batch < 0 || a->heads < 0 || a->kv_heads < 0 || a->head_dim < 0)
            return mp_fail(err, "%s: batch/heads/kv_heads/head_dim: must be positive", where);
        if (a->fwd_tflops <= 0) return mp_fail(err, "%s: fwd_tflops: must be positive", where);
        if (a->bwd_tflops <= 0) return mp_fail(err, "%s: bwd_tflops: must be positive", where);
        if (a->fwd_tflops < CAL_MIN_TFLOPS || a->bwd_tflops < CAL_MIN_TFLOPS)
            return mp_fail(err, "%s: %s: %g is below %g (%s)", where, a->fwd_tflops < CAL_MIN_TFLOPS ? "fwd_tflops" : "bwd_tflops",
                           a->fwd_tflops < CAL_MIN_TFLOPS ? a->fwd_tflops : a->bwd_tflops, CAL_MIN_TFLOPS, CAL_MIN_WHY);
        out->num_attention++;
    }
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(root, "collectives");
    if (cl && !cJSON_IsArray(cl)) return mp_fail(err, "%s: collectives: expected an array", origin);
    cJSON_ArrayForEach(e, cl) {
        if (out->num_collectives >= CAL_MAX_COLL) return mp_fail(err, "%s: collectives: more than %d entries", origin, CAL_MAX_COLL);
        if (!cJSON_IsObject(e)) return mp_fail(err, "%s: collectives[%d]: expected an object", origin, out->num_collectives);
        CalCollective *c = &out->collectives[out->num_collectives];
        char where[64];
        snprintf(where, sizeof where, "%s: collectives[%d]", origin, out->num_collectives);
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
        if (gbs < 0.001) return mp_fail(err, "%s: busbw_gb_per_s: %g is below 0.001 (1 MB/s: slower than any link between GPUs)", where, gbs);
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
    int rc = parse(root, path, out, err);
    cJSON_Delete(root);
    return rc;
}
