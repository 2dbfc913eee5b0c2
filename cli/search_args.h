/* search_args.h: the options `search` and `sweep` share: the plan options
 * (args.h) plus the search constraints. */
#ifndef MOEPLAN_SEARCH_ARGS_H
#define MOEPLAN_SEARCH_ARGS_H

#include "args.h"
#include "planner/space.h"

/* Reads --tp/--cp/--pp/--vpp/--etp/--ep/--mbs as fixed values when given,
 * --max-tp/--max-cp/--max-pp/--max-vpp/--max-etp/--max-ep/--max-mbs as
 * bounds, --no-folding, --even-split, --recompute and --optimizer-sharding
 * (fix the value; default: all), and the plan options (plan_from_args,
 * partial).  err: "--flag: reason". */
typedef struct {
    int fix[7], max[7];          /* tp, cp, pp, vpp, etp, ep, mbs */
    bool fixed[7], bounded[7];
    bool no_folding, even_split, fix_recompute, fix_sharding, fix_modules;
} SearchUserLimits;

/* need_gpus false: --gpus may be absent (a sweep that varies it). */
int search_args_parse(ArgList *a, Plan *base, SearchUserLimits *u, bool need_gpus, MpError *err);

/* The constraints for one base plan: the defaults of that plan
 * (space_constraints_default) with the user's limits on top.  Sweeps call
 * it again per point (the defaults depend on seq and the NVLink domain). */
int search_constraints_for(const Plan *base, const SearchUserLimits *u, SearchConstraints *c, MpError *err);

/* Fixed dimensions that no plan can have (a --tp that does not divide the
 * GPU count, an --ep that does not divide the experts): refused before the
 * search, naming both.  err: "--tp: 3 does not divide --gpus 128, ...". */
int search_args_check_fixed(const Plan *base, const SearchUserLimits *u, MpError *err);

#define SEARCH_ARGS_HELP \
    "search space (a plan option below that is given fixes that value; the rest are searched):\n" \
    "  --max-tp N                       bound tp (default: the NVLink domain)\n" \
    "  --max-cp N                       bound cp (default: seq / 2048)\n" \
    "  --max-pp N                       bound pp\n" \
    "  --max-vpp N                      bound vpp\n" \
    "  --max-etp N                      bound etp (default: the NVLink domain)\n" \
    "  --max-ep N                       bound ep\n" \
    "  --max-mbs N                      bound mbs (default 4)\n" \
    "  --mbs B                          fix the micro-batch size (default: searched up to --max-mbs)\n" \
    "  --no-folding                     coupled mappings only (etp = tp)\n" \
    "  --even-split                     no uneven (GLPK) pipeline splits\n" \
    "  --recompute none|selective|full  fix recomputation (default: the least that fits)\n" \
    "  --recompute-modules LIST         fix selective recomputation to these modules (default: search\n" \
    "                                   core_attn,layernorm,moe_act, +mla_up_proj, and core_attn,layernorm,moe)\n" \
    "  --optimizer-sharding none|distributed|full   fix optimizer sharding (default: all three)\n" \
    "  --calibration FILE               score with a calibration file measured on the machine\n" \
    "  --help                           this text\n" \
    "plan options:\n" \
    PLAN_ARGS_HELP

#endif
