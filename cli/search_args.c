/* search_args.c: see search_args.h. */
#include "search_args.h"

#include <stdio.h>
#include <string.h>

int search_args_parse(ArgList *a, Plan *base, SearchConstraints *c, MpError *err) {
    int fix[7] = {0}, max[7] = {0};
    bool fixed[7] = {false}, bounded[7] = {false};
    static const char *const dims[7] = {"tp", "cp", "pp", "vpp", "etp", "ep", "mbs"};
    for (int i = 0; i < 7; i++) {
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", dims[i]);
        if (args_int(a, flag, &fix[i], &fixed[i], err)) return -1;
        if (fixed[i] && fix[i] <= 0) return mp_fail(err, "%s: must be a positive integer, got %d", flag, fix[i]);
        snprintf(flag, sizeof flag, "--max-%s", dims[i]);
        if (args_int(a, flag, &max[i], &bounded[i], err)) return -1;
        if (bounded[i] && max[i] <= 0) return mp_fail(err, "%s: must be a positive integer, got %d", flag, max[i]);
    }
    const char *v;
    bool fix_recompute, fix_sharding;
    if (args_value(a, "--recompute", &v, err)) return -1;
    fix_recompute = v != NULL;
    if (args_value(a, "--optimizer-sharding", &v, err)) return -1;
    fix_sharding = v != NULL;
    bool no_folding = args_flag(a, "--no-folding");
    bool even = args_flag(a, "--even-split");
    if (plan_from_args(a, base, true, err)) return -1;
    if (base->map.world <= 0) return mp_fail(err, "--gpus: required, a positive GPU count");
    if (train_config_validate(&base->train, err)) return -1;
    space_constraints_default(base, c);
    int *cfix[7] = {&c->fix_tp, &c->fix_cp, &c->fix_pp, &c->fix_vpp, &c->fix_etp, &c->fix_ep, &c->fix_mbs};
    int *cmax[7] = {&c->max_tp, &c->max_cp, &c->max_pp, &c->max_vpp, &c->max_etp, &c->max_ep, &c->max_mbs};
    for (int i = 0; i < 7; i++) {
        if (fixed[i]) { *cfix[i] = fix[i]; *cmax[i] = 0; }
        if (bounded[i]) *cmax[i] = max[i];
        if (fixed[i] && bounded[i] && fix[i] > max[i])
            return mp_fail(err, "--%s: %d is above --max-%s %d", dims[i], fix[i], dims[i], max[i]);
    }
    c->no_folding = no_folding;
    c->uneven = !even;
    if (fix_recompute) c->recompute_set = 1u << base->train.recompute;
    if (fix_sharding) c->opt_sharding_set = 1u << base->train.opt_sharding;
    if (no_folding && fixed[0] && fixed[4] && fix[0] != fix[4])
        return mp_fail(err, "--no-folding: needs --etp equal to --tp, got etp %d and tp %d", fix[4], fix[0]);
    return 0;
}
