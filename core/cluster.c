/* cluster.c: validation of a Cluster. Field names in messages are the
 * catalog JSON keys (docs/core.md), whose units differ from the struct's
 * (which is all bytes/s, FLOP/s, bytes and seconds). */
#include "cluster.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int positive(const char *field, double v, MpError *err) {
    if (!isfinite(v) || v <= 0) return mp_fail(err, "%s: must be positive, got %g", field, v);
    return 0;
}

int cluster_validate(const Cluster *c, MpError *err) {
    if (!c->name[0]) return mp_fail(err, "name: empty");
    if (!c->gpu_name[0]) return mp_fail(err, "gpu: empty");
    /* every non-positive figure, named in one line */
    struct { const char *field; double v; } figs[] = {
        {"peak_bf16_tflops", c->peak_bf16_flops}, {"peak_fp8_tflops", c->peak_fp8_flops},
        {"hbm_mib", c->hbm_bytes}, {"hbm_tb_per_s", c->hbm_bw}, {"hbm_achievable_tb_per_s", c->hbm_bw_achievable},
        {"sm_count", c->sm_count}, {"gpus_per_node", c->gpus_per_node}, {"nvlink_domain", c->nvlink_domain},
        {"nvlink_gb_per_s", c->nvlink_bw}, {"nvlink_busbw_gb_per_s", c->nvlink_busbw},
        {"nvlink_latency_us", c->nvlink_latency}, {"nics_per_node", c->nics_per_node},
        {"nic_gbit_per_s", c->nic_bw}, {"nic_busbw_gb_per_s", c->nic_busbw}, {"net_latency_us", c->net_latency},
    };
    char bad[MP_ERROR_LEN] = "";
    int nbad = 0;
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
        MpError e;
        if (!positive(figs[i].field, figs[i].v, &e)) continue;
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof bad - l, "%s%.120s", nbad++ ? "; " : "", e.msg);
    }
    if (nbad) return mp_fail(err, "%s", bad);
    if (c->hbm_bw_achievable > c->hbm_bw)
        return mp_fail(err, "hbm_achievable_tb_per_s: %g exceeds hbm_tb_per_s %g",
                       c->hbm_bw_achievable / 1e12, c->hbm_bw / 1e12);
    if (c->nvlink_busbw > c->nvlink_bw * 1.25)
        /* NVLS all-reduce reaches ~1.07x line rate (480 vs 450 GB/s); more is a typo. */
        return mp_fail(err, "nvlink_busbw_gb_per_s: %g is more than 1.25 x nvlink_gb_per_s %g",
                       c->nvlink_busbw / 1e9, c->nvlink_bw / 1e9);
    if (c->nic_busbw > c->nic_bw)
        return mp_fail(err, "nic_busbw_gb_per_s: %g GB/s exceeds the line rate nic_gbit_per_s %g Gbit/s = %g GB/s",
                       c->nic_busbw / 1e9, c->nic_bw * 8 / 1e9, c->nic_bw / 1e9);
    if (c->nvlink_domain % c->gpus_per_node)
        return mp_fail(err, "nvlink_domain: %d is not a multiple of gpus_per_node %d",
                       c->nvlink_domain, c->gpus_per_node);
    if (c->nvlink_domain > 4096) return mp_fail(err, "nvlink_domain: %d is larger than 4096", c->nvlink_domain);
    if (c->gpus_per_node > 1024) return mp_fail(err, "gpus_per_node: %d is larger than 1024", c->gpus_per_node);
    if (c->nics_per_node > 1024) return mp_fail(err, "nics_per_node: %d is larger than 1024", c->nics_per_node);
    if (!c->net_topology[0]) return mp_fail(err, "net_topology: empty");
    return 0;
}

int cluster_domain_size(const Cluster *c) {
    return c->nvlink_domain > c->gpus_per_node ? c->nvlink_domain : c->gpus_per_node;
}
