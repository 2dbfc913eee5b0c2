/* phase.c: an ordered list of kernels/collectives with per-kind totals
 * (sim_internal.h), and the hardware view shared by all cost terms. */
#include <string.h>

#include "sim_internal.h"

void phase_clear(Phase *p) {
    p->n = 0;
    p->total = 0;
    for (int k = 0; k < COST_KIND_COUNT; k++) p->by_kind[k] = 0;
}

void phase_add(Phase *p, const char *name, CostKind kind, double t) {
    if (t <= 0) return;
    if (p->n < PHASE_MAX_SEGS) {
        p->seg[p->n].name = name;
        p->seg[p->n].kind = kind;
        p->seg[p->n].t = t;
        p->n++;
    } else {
        p->seg[PHASE_MAX_SEGS - 1].t += t;   /* never lose time: fold into the last segment */
    }
    p->by_kind[kind] += t;
    p->total += t;
}

void phase_append(Phase *dst, const Phase *src, double scale, CostKind force_kind, bool force) {
    for (int i = 0; i < src->n; i++)
        phase_add(dst, src->seg[i].name, force ? force_kind : src->seg[i].kind, src->seg[i].t * scale);
}

/* Fallbacks when a cluster file leaves an achievable figure at 0:
 * HBM copy ~ 90% of datasheet, NVLink busbw ~ 80% of line rate, IB ~ 94%
 * of line rate (reference/hardware.md: 370 of 450 GB/s, 47 of 50 GB/s). */
void sim_hw_init(SimHw *hw, const Cluster *c, const Calibration *cal, bool fp8) {
    sim_hw_init_backend(hw, c, cal, fp8, ATTN_BACKEND_AUTO);
}

void sim_hw_init_backend(SimHw *hw, const Cluster *c, const Calibration *cal, bool fp8, AttnBackend backend) {
    memset(hw, 0, sizeof *hw);
    hw->c = c;
    hw->cal = cal;
    hw->peak_bf16 = c->peak_bf16_flops;
    hw->peak_gemm = (fp8 && c->peak_fp8_flops > 0) ? c->peak_fp8_flops : c->peak_bf16_flops;
    /* Fallbacks when a cluster file gives only line rates: achievable HBM
     * copy 0.9 of peak (H100: 3.0 of 3.35 TB/s measured, compute.c), NVLink
     * busbw 0.8 of line rate (the maintainers' 370 of 450 GB/s), NIC busbw
     * 0.94 of line rate (NDR: 47 of 50 GB/s), 132 SMs (H100/H200 SXM). */
    hw->hbm_bw = c->hbm_bw_achievable > 0 ? c->hbm_bw_achievable : 0.9 * c->hbm_bw;
    if (cal && cal->hbm_bw > 0) hw->hbm_bw = cal->hbm_bw;
    hw->sms = c->sm_count > 0 ? c->sm_count : 132;
    hw->domain = c->nvlink_domain > c->gpus_per_node ? c->nvlink_domain : c->gpus_per_node;
    if (hw->domain < 1) hw->domain = 1;
    hw->nvlink_busbw = c->nvlink_busbw > 0 ? c->nvlink_busbw : 0.8 * c->nvlink_bw;
    hw->nvlink_latency = c->nvlink_latency;
    double nic = c->nic_busbw > 0 ? c->nic_busbw : 0.94 * c->nic_bw;
    double nics_per_gpu = c->gpus_per_node > 0 ? (double)c->nics_per_node / c->gpus_per_node : 1;
    if (nics_per_gpu <= 0) nics_per_gpu = 1.0 / (c->gpus_per_node > 0 ? c->gpus_per_node : 1);
    hw->nic_busbw_per_gpu = nic * nics_per_gpu;
    hw->net_latency = c->net_latency;
    if (backend == ATTN_BACKEND_AUTO) backend = c->attention_backend;
    hw->attn_backend = backend == ATTN_BACKEND_AUTO ? ATTN_BACKEND_CUDNN : backend;
    if (cal) {
        compute_calibration_init(hw);
        comm_calibration_init(hw);
    }
    attention_calibration_init(hw);
}
