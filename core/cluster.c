/* cluster.c: validation of a Cluster. Field names in messages are the
 * catalog JSON keys (docs/core.md), whose units differ from the struct's
 * (which is all bytes/s, FLOP/s, bytes and seconds). */
#include "cluster.h"

#include <math.h>

static int positive(const char *field, double v, MpError *err) {
    if (!isfinite(v) || v <= 0) return mp_fail(err, "%s: must be positive, got %g", field, v);
    return 0;
}

/* Plausibility bounds.  The simulator divides by every rate, so a rate near
 * zero (a subnormal such as 4e-320 passes "positive") gives an infinite step
 * time, and a huge latency an absurd one.  Each bound is far outside real
 * hardware, so only typos and unit mix-ups reach it: the slowest GPU still
 * used for training, the V100, has 125 TFLOP/s dense fp16 and 0.9 TB/s HBM2
 * (NVIDIA V100 datasheet); PCIe gen3 x16 moves 16 GB/s; Ethernet NICs start
 * at 1 Gbit/s.  (Found by tests/fuzz/fuzz_simulate.) */
static int at_least(const char *field, double v, double min, const char *why, MpError *err) {
    if (v < min) return mp_fail(err, "%s: %g is below %g (%s)", field, v, min, why);
    return 0;
}

static int plausible(const Cluster *c, MpError *err) {
    if (at_least("peak_bf16_tflops", c->peak_bf16_flops / 1e12, 1, "a V100 has 125", err) ||
        at_least("peak_fp8_tflops", c->peak_fp8_flops / 1e12, 1, "a V100 has 125 in fp16", err) ||
        at_least("hbm_tb_per_s", c->hbm_bw / 1e12, 0.01, "a V100 has 0.9", err) ||
        at_least("hbm_achievable_tb_per_s", c->hbm_bw_achievable / 1e12, 0.01, "a V100 has 0.9", err) ||
        at_least("nvlink_gb_per_s", c->nvlink_bw / 1e9, 1, "PCIe gen3 x16 moves 16", err) ||
        at_least("nvlink_busbw_gb_per_s", c->nvlink_busbw / 1e9, 1, "PCIe gen3 x16 moves 16", err) ||
        at_least("nic_gbit_per_s", c->nic_bw * 8 / 1e9, 1, "Ethernet NICs start at 1", err) ||
        at_least("nic_busbw_gb_per_s", c->nic_busbw / 1e9, 0.01, "a 1 Gbit/s NIC moves 0.125", err))
        return -1;
    if (c->nvlink_latency > 1.0)
        return mp_fail(err, "nvlink_latency_us: %g is more than 1 s (NVLink and PCIe take microseconds)",
                       c->nvlink_latency * 1e6);
    if (c->net_latency > 1.0)
        return mp_fail(err, "net_latency_us: %g is more than 1 s (networks between GPU nodes take microseconds)",
                       c->net_latency * 1e6);
    return 0;
}

int cluster_validate(const Cluster *c, MpError *err) {
    if (!c->name[0]) return mp_fail(err, "name: empty");
    if (!c->gpu_name[0]) return mp_fail(err, "gpu: empty");
    if (positive("peak_bf16_tflops", c->peak_bf16_flops, err) || positive("peak_fp8_tflops", c->peak_fp8_flops, err) ||
        positive("hbm_mib", c->hbm_bytes, err) || positive("hbm_tb_per_s", c->hbm_bw, err) ||
        positive("hbm_achievable_tb_per_s", c->hbm_bw_achievable, err) ||
        positive("sm_count", c->sm_count, err) || positive("gpus_per_node", c->gpus_per_node, err) ||
        positive("nvlink_domain", c->nvlink_domain, err) || positive("nvlink_gb_per_s", c->nvlink_bw, err) ||
        positive("nvlink_busbw_gb_per_s", c->nvlink_busbw, err) ||
        positive("nvlink_latency_us", c->nvlink_latency, err) || positive("nics_per_node", c->nics_per_node, err) ||
        positive("nic_gbit_per_s", c->nic_bw, err) || positive("nic_busbw_gb_per_s", c->nic_busbw, err) ||
        positive("net_latency_us", c->net_latency, err) || plausible(c, err))
        return -1;
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
