/* compute_model_vs_measured.c: the simulator's default compute model (GEMM
 * tile/wave model, flash-attention curve, HBM bandwidth; simulator/compute.c)
 * against the figures of a calibration file measured on a machine
 * (tests/gpu/test_calibrate, run by scripts/device-validate.sh).  For each
 * measured GEMM and attention shape: measured TFLOP/s, the default model's,
 * and the error of the model's time, (model - measured) / measured
 * (negative: the model is optimistic).
 *
 * usage: compute_model_vs_measured CALIBRATION_JSON [--cluster NAME|FILE]
 *        (default cluster dgx-h200: the device machine's GPUs) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "simulator/sim_internal.h"

int main(int argc, char **argv) {
    const char *cal_path = NULL, *cluster_name = "dgx-h200";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cluster") && i + 1 < argc) cluster_name = argv[++i];
        else if (argv[i][0] != '-' && !cal_path) cal_path = argv[i];
        else cal_path = NULL, i = argc;
    }
    if (!cal_path) {
        fprintf(stderr, "usage: compute_model_vs_measured CALIBRATION_JSON [--cluster NAME|FILE]\n");
        return 2;
    }
    MpError err = {{0}};
    Cluster cl;
    Calibration *cal = malloc(sizeof *cal);
    if (!cal || cluster_lookup(cluster_name, &cl, &err) || calibration_load_file(cal_path, cal, &err)) {
        fprintf(stderr, "compute_model_vs_measured: %s\n", cal ? err.msg : "out of memory");
        free(cal);
        return 2;
    }
    SimHw hw;
    sim_hw_init(&hw, &cl, NULL, false);
    printf("default compute model (%s) vs measured (%s: %s)\n", cl.name, cal_path, cal->device);
    printf("error = (model - measured) / measured time; negative = model optimistic\n\n");
    printf("%-22s %6s %6s %6s %6s %4s | %9s %9s %8s\n", "gemm", "groups", "m", "n", "k", "C B", "measured", "model",
           "error");
    double sum = 0, worst = 0;
    for (int i = 0; i < cal->num_gemms; i++) {
        const CalGemm *g = &cal->gemms[i];
        double flops = 2.0 * g->m * g->n * g->k * g->groups;
        double t_meas = flops / (g->tflops * 1e12);
        double t = compute_grouped_gemm_time(&hw, g->groups, g->m, g->n, g->k, g->c_bytes);
        double e = (t - t_meas) / t_meas;
        sum += fabs(e);
        if (fabs(e) > fabs(worst)) worst = e;
        printf("%-22s %6d %6d %6d %6d %4.0f | %9.1f %9.1f %+7.1f%%\n", g->name[0] ? g->name : "-", g->groups, g->m, g->n,
               g->k, g->c_bytes, g->tflops, flops / t / 1e12, 100 * e);
    }
    if (cal->num_gemms)
        printf("GEMMs: mean |error| %.1f%%, worst %+.1f%% (TFLOP/s; model = tile/wave model, e_max 0.88)\n\n",
               100 * sum / cal->num_gemms, 100 * worst);
    for (int i = 0; i < cal->num_attention; i++) {
        const CalAttention *a = &cal->attention[i];
        double hb = (double)(a->heads > 0 ? a->heads : 1) * (a->batch > 0 ? a->batch : 1);
        double d = a->head_dim > 0 ? a->head_dim : 128;
        AttnKernel k = {a->q_rows, a->kv_rows, hb, d, d, a->mask, 0};
        double pairs = a->mask == ATTN_MASK_CAUSAL ? 0.5 * a->q_rows * a->kv_rows : (double)a->q_rows * a->kv_rows;
        for (int bwd = 0; bwd <= 1; bwd++) {
            double flops = 2.0 * pairs * 2 * d * hb * (bwd ? 2.5 : 1);
            double t = attention_kernel_time(&hw, &k, bwd);
            double model_tf = flops / t / 1e12, meas = bwd ? a->bwd_tflops : a->fwd_tflops;
            printf("attention q %d kv %d %s heads %d/%d x batch %d %s: measured %.1f TFLOP/s, model (%s table) %.1f, "
                   "error %+.1f%%\n",
                   a->q_rows, a->kv_rows, a->mask == ATTN_MASK_CAUSAL ? "causal" : "no mask", a->heads, a->kv_heads,
                   a->batch, bwd ? "backward" : "forward ", meas, attn_backend_name(hw.attn_backend), model_tf,
                   100 * (meas / model_tf - 1));
        }
    }
    if (cal->hbm_bw > 0)
        printf("HBM copy: measured %.0f GB/s, cluster default %.0f GB/s\n", cal->hbm_bw / 1e9, hw.hbm_bw / 1e9);
    free(cal);
    return 0;
}
