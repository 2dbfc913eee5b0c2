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
    /* every option the command asked for (string literals), in order: with
     * MOEPLAN_LIST_OPTIONS set, args_finish prints them (tests/test_cli_help.c
     * checks that --help names each one) */
    char asked[ARGS_MAX][40];
    int num_asked;
} ArgList;

int args_init(ArgList *a, int argc, char **argv, MpError *err);
/* Value of --flag (NULL if absent; "" never returned: a flag with no value is an error). */
int args_value(ArgList *a, const char *flag, const char **out, MpError *err);
bool args_flag(ArgList *a, const char *flag);   /* boolean switch */
/* As args_value, for an option that may not be repeated (a later
 * occurrence of any other option overrides an earlier one): a second
 * occurrence is refused naming both values. */
int args_value_once(ArgList *a, const char *flag, const char **out, MpError *err);
/* Strict integer/real parsing; *present tells whether the flag was given
 * (may be NULL).  err: "--flag: reason". */
int args_int(ArgList *a, const char *flag, int *out, bool *present, MpError *err);
int args_double(ArgList *a, const char *flag, double *out, bool *present, MpError *err);
/* Refuses any argument no option took.  With MOEPLAN_LIST_OPTIONS set in
 * the environment, instead prints "option --flag" on stdout for every option
 * asked for so far and fails with "options listed" (a test hook). */
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

/* The plan options of plan_from_args, one line each (for --help texts). */
#define PLAN_ARGS_HELP \
    "  --plan FILE                      a plan file or result document (search --json); flags override it\n" \
    "  --model M                        catalog model, catalog-format JSON or HuggingFace config.json\n" \
    "  --model-name NAME                the model's name (default: catalog name, _name_or_path, folder)\n" \
    "  --cluster C                      catalog cluster or cluster file (default dgx-h100)\n" \
    "  --gpus N                         GPU count\n" \
    "  --tp T                           tensor parallelism of attention (default 1)\n" \
    "  --cp C                           context parallelism (default 1)\n" \
    "  --pp P                           pipeline stages (default 1)\n" \
    "  --vpp V                          virtual stages per pipeline rank, interleaved 1F1B (default 1)\n" \
    "  --etp E                          tensor parallelism of the experts (default 1)\n" \
    "  --ep X                           expert parallelism (default 1)\n" \
    "  --first-stage-layers L           decoder layers of the first pipeline stage (0: even split)\n" \
    "  --last-stage-layers L            decoder layers of the last pipeline stage (0: even split)\n" \
    "  --seq S                          sequence length in tokens (default 4096)\n" \
    "  --mbs B                          micro-batch size in sequences (default 1)\n" \
    "  --gbs G                          global batch in sequences (default 256)\n" \
    "  --capacity-factor F              token-dropping routing with this capacity factor\n" \
    "  --dropless                       dropless routing (the default; not with --capacity-factor)\n" \
    "  --imbalance I                    dropless: the busiest expert's tokens / the mean (default 1)\n" \
    "  --memory-reserve-gib R           HBM kept free per GPU, GiB (default 4)\n" \
    "  --order tp-cp-ep-dp-pp|tp-cp-ep-pp-dp   rank order (default tp-cp-ep-dp-pp)\n" \
    "  --recompute none|selective|full  activation recomputation (default none)\n" \
    "  --recompute-modules LIST         selective recomputation of these Megatron modules (core_attn,\n" \
    "                                   layernorm, moe_act, mla_up_proj, mlp, moe, shared_experts)\n" \
    "  --optimizer-sharding none|distributed|full   optimizer state sharding (default distributed)\n" \
    "  --dispatcher alltoall|allgather  token dispatcher (default alltoall)\n" \
    "  --flops legacy|megatron          FLOPs convention of MFU and TFLOP/s (default megatron)\n" \
    "  --attention-backend auto|cudnn|flash2|fa3|own   attention kernels to price (default auto)\n" \
    "  --precision bf16|fp8             GEMM precision (default bf16)\n" \
    "  --overlap LIST|none              grad,param,tp,ep,shared-expert (default grad,param); executor\n" \
    "                                   switches p2p (pipeline), cp (ring attention)\n"

#endif
