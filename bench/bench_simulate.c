/* bench_simulate.c: plans simulated per second on one core, for Mixtral
 * 8x22B on 1024 DGX H100 GPUs (TP2 PP8 EP8, GBS 1024: 16 micro-batches per
 * pipeline), and for an interleaved plan (VPP 7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/catalog.h"
#include "core/plan.h"
#include "simulator/simulate.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench(const char *label, int tp, int pp, int vpp, int etp, int ep) {
    MpError err = {{0}};
    Plan *p = calloc(1, sizeof *p);
    SimResult *r = calloc(1, sizeof *r);
    if (!p || !r || model_lookup("mixtral-8x22b", &p->model, &err) || cluster_lookup("dgx-h100", &p->cluster, &err)) {
        fprintf(stderr, "bench_simulate: %s\n", err.msg);
        return 1;
    }
    p->map = (Mapping){.world = 1024, .tp = tp, .cp = 1, .pp = pp, .vpp = vpp, .etp = etp, .ep = ep};
    train_config_default(&p->train);
    p->train.global_batch = 1024;
    if (mapping_resolve(&p->map, p->model.num_experts, &err) || simulate_step(p, NULL, NULL, r, &err)) {
        fprintf(stderr, "bench_simulate: %s\n", err.msg);
        return 1;
    }
    int n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 200; i++) simulate_step(p, NULL, NULL, r, &err);
        n += 200;
        t = now() - t0;
    } while (t < 1.0);
    printf("%-40s %9.0f plans/s  %7.1f us/plan  (MFU %.1f%%, step %.3f s)\n", label, n / t, 1e6 * t / n, 100 * r->mfu,
           r->step_time_s);
    free(p);
    free(r);
    return 0;
}

int main(void) {
    int rc = bench("mixtral-8x22b 1024 GPUs TP2 PP8 EP8", 2, 8, 1, 1, 8);
    rc |= bench("mixtral-8x22b 1024 GPUs TP2 PP8 VPP7 EP8", 2, 8, 7, 1, 8);
    rc |= bench("mixtral-8x22b 1024 GPUs TP1 PP4 EP8", 1, 4, 1, 1, 8);
    return rc;
}
