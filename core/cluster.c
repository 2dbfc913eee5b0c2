/* cluster.c: validation of a Cluster. Field names in messages are the
 * catalog JSON keys (docs/core.md), whose units differ from the struct's
 * (which is all bytes/s, FLOP/s, bytes and seconds). */
#include "cluster.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mapping.h"

/* Plausible range of each figure, in the JSON's units, with the physical
 * reason.  A value outside is a unit error or a typo (or a hostile file):
 * 1e-300 TFLOP/s would report an MFU of 1000%, a subnormal makes GLPK
 * abort, 1e300 MiB of HBM makes every plan "fit".  The bounds leave one to
 * two orders of magnitude of room around today's hardware. */
typedef struct {
    const char *field;
    double value, lo, hi;   /* JSON units */
    const char *why;
} Range;

/* Every figure outside its range, named in one line (a cluster file's
 * errors are reported in one run, not one per run). */
static int check_ranges(const Range *r, int n, MpError *err) {
    char bad[MP_ERROR_LEN] = "";
    int nbad = 0;
    for (int i = 0; i < n; i++) {
        double v = r[i].value;
        MpError e;
        if (!isfinite(v) || v <= 0) mp_fail(&e, "%s: must be positive, got %g", r[i].field, v);
        else if (v < r[i].lo || v > r[i].hi)
            mp_fail(&e, "%s: %g is outside the plausible range [%g, %g]: %s", r[i].field, v, r[i].lo, r[i].hi,
                    r[i].why);
        else continue;
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof bad - l, "%s%.300s", nbad++ ? "; " : "", e.msg);
    }
    return nbad ? mp_fail(err, "%s", bad) : 0;
}

int cluster_validate(const Cluster *c, MpError *err) {
    if (!c->name[0]) return mp_fail(err, "name: empty");
    if (!c->gpu_name[0]) return mp_fail(err, "gpu: empty");
    const Range r[] = {
        {"peak_bf16_tflops", c->peak_bf16_flops / 1e12, 1, 1e5,
         "dense BF16 peaks run from ~100 (V100 class) to 2,500 TFLOP/s (B300); 1e5 is 40x beyond"},
        {"peak_fp8_tflops", c->peak_fp8_flops / 1e12, 1, 2e5,
         "dense FP8 peaks are ~2x BF16 (H100: 1,979 TFLOP/s, B300: 5,000)"},
        {"hbm_mib", c->hbm_bytes / 1048576.0, 1024, 16777216,
         "GPU memory runs from 16 GiB to 288 GB (B300); the range is 1 GiB to 16 TiB"},
        {"hbm_tb_per_s", c->hbm_bw / 1e12, 0.1, 100, "HBM bandwidth runs from 0.9 (V100) to 8 TB/s (B200)"},
        {"hbm_achievable_tb_per_s", c->hbm_bw_achievable / 1e12, 0.1, 100,
         "achievable HBM bandwidth is 80-95% of the peak"},
        {"sm_count", c->sm_count, 1, 65536, "GPUs have 80 (V100) to 160 (B200) SMs"},
        {"gpus_per_node", c->gpus_per_node, 1, 1024, "nodes hold 1 to 72 GPUs (GB200 NVL72 trays hold 4)"},
        {"nvlink_domain", c->nvlink_domain, 1, MAPPING_MAX_NODE,
         "NVLink domains hold up to 72 GPUs today (576 announced)"},
        {"nvlink_gb_per_s", c->nvlink_bw / 1e9, 1, 1e5, "NVLink runs 300 (V100) to 900 GB/s per GPU (NVLink 5)"},
        {"nvlink_busbw_gb_per_s", c->nvlink_busbw / 1e9, 0.1, 1.25e5,
         "measured NVLink bus bandwidth is up to ~1.07x the line rate (NVLS)"},
        {"nvlink_latency_us", c->nvlink_latency * 1e6, 0.01, 1000, "NCCL's NVLink latency is a few microseconds"},
        {"nics_per_node", c->nics_per_node, 1, 1024, "nodes carry 1 to 8 NICs (one per GPU on DGX)"},
        {"nic_gbit_per_s", c->nic_bw * 8 / 1e9, 1, 1e5, "NICs run 100 to 800 Gb/s (InfiniBand XDR)"},
        {"nic_busbw_gb_per_s", c->nic_busbw / 1e9, 0.01, 1.25e4, "a NIC's bus bandwidth is at most its line rate"},
        {"net_latency_us", c->net_latency * 1e6, 0.01, 1e5,
         "InfiniBand latency is a few microseconds; 0.1 s would be a broken network"},
    };
    if (check_ranges(r, (int)(sizeof r / sizeof r[0]), err)) return -1;
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
    if (!c->net_topology[0]) return mp_fail(err, "net_topology: empty");
    return 0;
}

int cluster_domain_size(const Cluster *c) {
    return c->nvlink_domain > c->gpus_per_node ? c->nvlink_domain : c->gpus_per_node;
}
