/* search_args.c: see search_args.h. */
#include "search_args.h"

#include "core/limits.h"

#include <stdio.h>
#include <string.h>

static const char *const dims[7] = {"tp", "cp", "pp", "vpp", "etp", "ep", "mbs"};

int search_args_parse(ArgList *a, Plan *base, SearchUserLimits *u, bool need_gpus, MpError *err) {
    memset(u, 0, sizeof *u);
    for (int i = 0; i < 7; i++) {
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", dims[i]);
        if (args_int(a, flag, &u->fix[i], &u->fixed[i], err)) return -1;
        if (u->fixed[i] && u->fix[i] <= 0) return mp_fail(err, "%s: must be a positive integer, got %d", flag, u->fix[i]);
        snprintf(flag, sizeof flag, "--max-%s", dims[i]);
        if (args_int(a, flag, &u->max[i], &u->bounded[i], err)) return -1;
        if (u->bounded[i] && u->max[i] <= 0) return mp_fail(err, "%s: must be a positive integer, got %d", flag, u->max[i]);
        if (u->fixed[i] && u->bounded[i] && u->fix[i] > u->max[i])
            return mp_fail(err, "--%s: %d is above --max-%s %d", dims[i], u->fix[i], dims[i], u->max[i]);
    }
    const char *v;
    if (args_value(a, "--recompute", &v, err)) return -1;
    u->fix_recompute = v != NULL;
    if (args_value(a, "--recompute-modules", &v, err)) return -1;
    u->fix_modules = v != NULL;
    if (v) u->fix_recompute = true;
    if (args_value(a, "--optimizer-sharding", &v, err)) return -1;
    u->fix_sharding = v != NULL;
    u->no_folding = args_flag(a, "--no-folding");
    u->even_split = args_flag(a, "--even-split");
    if (u->no_folding && u->fixed[0] && u->fixed[4] && u->fix[0] != u->fix[4])
        return mp_fail(err, "--no-folding: needs --etp equal to --tp, got etp %d and tp %d", u->fix[4], u->fix[0]);
    if (plan_from_args(a, base, true, err)) return -1;
    if (need_gpus && base->map.world <= 0) return mp_fail(err, "--gpus: required, a positive GPU count");
    if (base->map.world > MP_MAX_GPUS)
        return mp_fail(err, "--gpus: %d is above the limit of %d GPUs (10x the largest clusters built)", base->map.world,
                       MP_MAX_GPUS);
    if (train_config_validate(&base->train, err)) return -1;
    return 0;
}

int search_constraints_for(const Plan *base, const SearchUserLimits *u, SearchConstraints *c, MpError *err) {
    (void)err;
    space_constraints_default(base, c);
    int *cfix[7] = {&c->fix_tp, &c->fix_cp, &c->fix_pp, &c->fix_vpp, &c->fix_etp, &c->fix_ep, &c->fix_mbs};
    int *cmax[7] = {&c->max_tp, &c->max_cp, &c->max_pp, &c->max_vpp, &c->max_etp, &c->max_ep, &c->max_mbs};
    for (int i = 0; i < 7; i++) {
        if (u->fixed[i]) { *cfix[i] = u->fix[i]; *cmax[i] = 0; }
        if (u->bounded[i]) *cmax[i] = u->max[i];
    }
    /* a fixed mbs above the default bound is still enumerated */
    if (u->fixed[6] && c->max_mbs < u->fix[6]) c->max_mbs = u->fix[6];
    c->no_folding = u->no_folding;
    c->uneven = !u->even_split;
    if (u->fix_recompute) c->recompute_set = 1u << base->train.recompute;
    if (u->fix_modules) {
        c->module_sets[0] = base->train.recompute_modules;
        c->num_module_sets = 1;
    }
    if (u->fix_sharding) c->opt_sharding_set = 1u << base->train.opt_sharding;
    return 0;
}

int search_args_check_fixed(const Plan *base, const SearchUserLimits *u, MpError *err) {
    int world = base->map.world;
    /* tp, cp, pp, etp, ep: each a factor of the GPU count (mapping.h) */
    static const int sized[] = {0, 1, 2, 4, 5};
    for (size_t k = 0; k < sizeof sized / sizeof sized[0]; k++) {
        int i = sized[k];
        if (u->fixed[i] && world % u->fix[i])
            return mp_fail(err, "--%s: %d does not divide --gpus %d, so no plan can have it", dims[i], u->fix[i],
                           world);
    }
    int tp = u->fixed[0] ? u->fix[0] : 1, cp = u->fixed[1] ? u->fix[1] : 1, pp = u->fixed[2] ? u->fix[2] : 1;
    if (world % (tp * cp * pp))
        return mp_fail(err, "--tp/--cp/--pp: tp*cp*pp = %d does not divide --gpus %d", tp * cp * pp, world);
    int etp = u->fixed[4] ? u->fix[4] : 1, ep = u->fixed[5] ? u->fix[5] : 1;
    if (world % (etp * ep * pp))
        return mp_fail(err, "--etp/--ep/--pp: etp*ep*pp = %d does not divide --gpus %d", etp * ep * pp, world);
    if (u->fixed[0] && base->model.num_heads % u->fix[0])
        return mp_fail(err, "--tp: %d does not divide the %d attention heads of %s", u->fix[0], base->model.num_heads,
                       base->model.name);
    if (u->fixed[5] && base->model.num_experts % u->fix[5])
        return mp_fail(err, "--ep: %d does not divide the %d experts of %s", u->fix[5], base->model.num_experts,
                       base->model.name);
    return 0;
}
