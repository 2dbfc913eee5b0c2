/* args.h: command-line options of the form `--name value`, `--name=value`
 * and boolean `--name`.  Every option must be consumed by the command;
 * args_finish() reports the first unknown one. */
#ifndef MOEPLAN_ARGS_H
#define MOEPLAN_ARGS_H

#include <stdbool.h>

#include "core/error.h"
#include "core/plan.h"
#include "simulator/calibration.h"

#define ARGS_MAX 256

typedef struct {
    int argc;
    char **argv;             /* argv[0] is the command name */
    bool used[ARGS_MAX];
    const char *command;
} ArgList;

int args_init(ArgList *a, int argc, char **argv, MpError *err);
/* Value of --flag (NULL if absent; "" never returned: a flag with no value is an error). */
int args_value(ArgList *a, const char *flag, const char **out, MpError *err);
bool args_flag(ArgList *a, const char *flag);   /* boolean switch */
/* Strict integer/real parsing; *present tells whether the flag was given
 * (may be NULL).  err: "--flag: reason". */
int args_int(ArgList *a, const char *flag, int *out, bool *present, MpError *err);
int args_double(ArgList *a, const char *flag, double *out, bool *present, MpError *err);
int args_finish(ArgList *a, MpError *err);

/* --calibration FILE: *out = the loaded file (caller frees) or NULL when the
 * option is absent; *path (if path is not NULL) = FILE or NULL.
 * err: the loader's "FILE: FIELD: reason". */
int args_calibration(ArgList *a, Calibration **out, const char **path, MpError *err);

int parse_int_strict(const char *s, const char *what, int *out, MpError *err);
int parse_double_strict(const char *s, const char *what, double *out, MpError *err);

/* The plan options shared by simulate, search, sweep and execute:
 * --plan FILE (base), --model, --cluster, --gpus, --tp, --cp, --pp, --vpp,
 * --etp, --ep, --order, --first-stage-layers, --last-stage-layers, --seq,
 * --mbs, --gbs, --precision, --dispatcher, --capacity-factor, --dropless,
 * --imbalance, --recompute, --optimizer-sharding, --overlap, --flops,
 * --memory-reserve-gib.  Flags override the plan file.  The result is
 * resolved and validated unless `partial` (search/sweep fill the rest). */
int plan_from_args(ArgList *a, Plan *p, bool partial, MpError *err);

#endif
