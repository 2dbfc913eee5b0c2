/* sim_plans.h: building resolved plans from catalog names for the
 * simulator tests (header-only, static). */
#ifndef MOEPLAN_TEST_SIM_PLANS_H
#define MOEPLAN_TEST_SIM_PLANS_H

#include <stdio.h>
#include <string.h>

#include "core/catalog.h"
#include "core/plan.h"
#include "simulator/simulate.h"

/* Returns 0 and a resolved, validated plan; prints the error otherwise. */
static inline int sim_make_plan(Plan *p, const char *model, const char *cluster, int gpus, int tp, int cp, int pp, int vpp,
                         int etp, int ep) {
    MpError err = {{0}};
    memset(p, 0, sizeof *p);
    if (model_lookup(model, &p->model, &err) || cluster_lookup(cluster, &p->cluster, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    snprintf(p->model_ref, sizeof p->model_ref, "%s", model);
    snprintf(p->cluster_ref, sizeof p->cluster_ref, "%s", cluster);
    p->map = (Mapping){.world = gpus, .tp = tp, .cp = cp, .pp = pp, .vpp = vpp, .etp = etp, .ep = ep,
                       .order = ORDER_TP_CP_EP_DP_PP};
    train_config_default(&p->train);
    if (mapping_resolve(&p->map, p->model.num_experts, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

/* The settings of the published folding runs (calibration-set.json). */
static inline void sim_paper_settings(Plan *p) {
    p->train.seq_len = 4096;
    p->train.global_batch = 256;
    p->train.micro_batch = 1;
    p->train.capacity_factor = 1.0;
    p->train.recompute = RECOMPUTE_NONE;
    p->train.opt_sharding = OPT_SHARD_DISTRIBUTED;
    p->train.overlap = OVERLAP_GRAD | OVERLAP_PARAM;
    p->train.flops = FLOPS_LEGACY;
}

static inline int sim_run(const Plan *p, SimResult *r) {
    MpError err = {{0}};
    SimOptions opt = {0};
    if (simulate_step(p, NULL, &opt, r, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

#endif
