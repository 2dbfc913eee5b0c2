/* comm_model_vs_nccl.c: the simulator's communication model against NCCL
 * bandwidth measured on a machine (tests/gpu/test_nccl_bw --json, run by
 * scripts/device-validate.sh).  For every measured collective (op, group
 * size, nodes, bytes) it prints the measured time and bus bandwidth, the
 * model's from the cluster's defaults, and (with --calibration) the model's
 * after calibration, with the error of each:
 *
 *   error = (model time - measured time) / measured time
 *           (negative: the model is faster than NCCL, i.e. optimistic)
 *
 * and per collective the mean and largest |error| over all sizes and over
 * 16 MiB .. 256 MiB (the sizes of training traffic: dispatcher all-to-alls,
 * gradient reduce-scatters and parameter all-gathers).
 *
 * usage: comm_model_vs_nccl NCCL_JSON [--cluster NAME|FILE] [--calibration FILE]
 *        (default cluster dgx-h200: the device machine's GPUs) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/catalog.h"
#include "core/json_util.h"
#include "simulator/simulate.h"

#define MIB 1048576.0

typedef struct {
    char op[32];
    int n, nodes;
    double bytes, t_meas, busbw;   /* bytes, seconds, bytes/s (bus bandwidth as test_nccl_bw measured it) */
} Row;

static int load_rows(const char *path, Row **rows, int *count, MpError *err) {
    char *text = NULL;
    if (read_text_file(path, &text, err)) return -1;
    cJSON *root = json_parse_text(text, path, err);
    free(text);
    if (!root) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "collectives");
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return mp_fail(err, "%s: collectives: expected an array (test_nccl_bw --json output)", path);
    }
    int n = cJSON_GetArraySize(list), i = 0;
    *rows = calloc((size_t)(n > 0 ? n : 1), sizeof **rows);
    if (!*rows) { cJSON_Delete(root); return mp_fail(err, "out of memory"); }
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        Row *r = &(*rows)[i];
        char where[64];
        snprintf(where, sizeof where, "%s: collectives[%d]", path, i);
        double t_us = 0, busbw_gbs = 0;
        r->nodes = 1;
        if (json_req_string(e, "op", where, r->op, sizeof r->op, err) || json_req_int(e, "group_size", where, &r->n, err) ||
            json_opt_int(e, "nodes", where, &r->nodes, err) || json_req_double(e, "bytes", where, &r->bytes, err) ||
            json_req_double(e, "time_us", where, &t_us, err) ||
            json_req_double(e, "busbw_gb_per_s", where, &busbw_gbs, err)) {
            cJSON_Delete(root);
            return -1;
        }
        if (t_us <= 0 || busbw_gbs <= 0 || r->bytes <= 0 || r->n < 2) {
            cJSON_Delete(root);
            return mp_fail(err, "%s: time_us/busbw_gb_per_s/bytes/group_size: must be positive (group >= 2)", where);
        }
        r->t_meas = t_us * 1e-6;
        r->busbw = busbw_gbs * 1e9;
        i++;
    }
    *count = i;
    cJSON_Delete(root);
    return 0;
}

typedef struct {
    double sum, max;
    int n;
} Stat;

static void stat_add(Stat *s, double e) {
    s->sum += fabs(e);
    if (fabs(e) > s->max) s->max = fabs(e);
    s->n++;
}

int main(int argc, char **argv) {
    const char *nccl_path = NULL, *cluster_name = "dgx-h200", *cal_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cluster") && i + 1 < argc) cluster_name = argv[++i];
        else if (!strcmp(argv[i], "--calibration") && i + 1 < argc) cal_path = argv[++i];
        else if (argv[i][0] != '-' && !nccl_path) nccl_path = argv[i];
        else {
            fprintf(stderr, "usage: comm_model_vs_nccl NCCL_JSON [--cluster NAME|FILE] [--calibration FILE]\n");
            return 2;
        }
    }
    if (!nccl_path) {
        fprintf(stderr, "usage: comm_model_vs_nccl NCCL_JSON [--cluster NAME|FILE] [--calibration FILE]\n");
        return 2;
    }
    MpError err = {{0}};
    Cluster cl;
    Calibration *cal = NULL;
    Row *rows = NULL;
    int count = 0, rc = 2;
    if (cluster_lookup(cluster_name, &cl, &err)) goto fail;
    if (cal_path) {
        cal = malloc(sizeof *cal);
        if (!cal) { mp_fail(&err, "out of memory"); goto fail; }
        if (calibration_load_file(cal_path, cal, &err)) goto fail;
    }
    if (load_rows(nccl_path, &rows, &count, &err)) goto fail;

    printf("communication model (%s defaults%s%s) vs NCCL measured (%s)\n", cl.name, cal ? " and calibration " : "",
           cal ? cal_path : "", nccl_path);
    printf("error = (model - measured) / measured time; negative = model optimistic\n\n");
    printf("%-15s %5s %5s %10s | %10s %9s | %10s %9s %8s", "op", "group", "nodes", "size MiB", "meas us", "busbw", "model us",
           "busbw", "error");
    if (cal) printf(" | %10s %8s", "calib us", "error");
    printf("\n");
    enum { ALL, MID };
    Stat st[5][2][2];   /* [op][all sizes, 16..256 MiB][defaults, calibrated] */
    memset(st, 0, sizeof st);
    static const char *const ops[5] = {"all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv"};
    for (int i = 0; i < count; i++) {
        const Row *r = &rows[i];
        double tm = 0, tc = 0;
        if (simulate_collective_time(&cl, NULL, r->op, r->n, r->nodes, r->bytes, &tm, &err)) goto fail;
        if (cal && simulate_collective_time(&cl, cal, r->op, r->n, r->nodes, r->bytes, &tc, &err)) goto fail;
        double e = (tm - r->t_meas) / r->t_meas, ec = cal ? (tc - r->t_meas) / r->t_meas : 0;
        printf("%-15s %5d %5d %10.0f | %10.1f %9.1f | %10.1f %9.1f %+7.1f%%", r->op, r->n, r->nodes, r->bytes / MIB,
               r->t_meas * 1e6, r->busbw / 1e9, tm * 1e6, r->busbw * r->t_meas / tm / 1e9, 100 * e);
        if (cal) printf(" | %10.1f %+7.1f%%", tc * 1e6, 100 * ec);
        printf("\n");
        for (int o = 0; o < 5; o++) {
            if (strcmp(r->op, ops[o])) continue;
            stat_add(&st[o][ALL][0], e);
            if (cal) stat_add(&st[o][ALL][1], ec);
            if (r->bytes >= 16 * MIB && r->bytes <= 256 * MIB) {
                stat_add(&st[o][MID][0], e);
                if (cal) stat_add(&st[o][MID][1], ec);
            }
        }
    }
    printf("\n%-15s | %-23s | %-23s", "op", "|error| all sizes", "|error| 16-256 MiB");
    if (cal) printf(" | %-23s", "calibrated, all sizes");
    printf("\n");
    for (int o = 0; o < 5; o++) {
        if (!st[o][ALL][0].n) continue;
        printf("%-15s | mean %5.1f%% max %5.1f%% | ", ops[o], 100 * st[o][ALL][0].sum / st[o][ALL][0].n,
               100 * st[o][ALL][0].max);
        if (st[o][MID][0].n)
            printf("mean %5.1f%% max %5.1f%%", 100 * st[o][MID][0].sum / st[o][MID][0].n, 100 * st[o][MID][0].max);
        else
            printf("%-23s", "-");
        if (cal)
            printf(" | mean %5.1f%% max %5.1f%%", 100 * st[o][ALL][1].sum / st[o][ALL][1].n, 100 * st[o][ALL][1].max);
        printf("\n");
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "comm_model_vs_nccl: %s\n", err.msg);
    free(rows);
    free(cal);
    return rc;
}
