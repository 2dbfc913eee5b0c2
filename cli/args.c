/* args.c: see args.h. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"

int args_init(ArgList *a, int argc, char **argv, MpError *err) {
    memset(a, 0, sizeof *a);
    if (argc > ARGS_MAX) return mp_fail(err, "%s: too many arguments", argv[0]);
    a->argc = argc;
    a->argv = argv;
    a->command = argv[0];
    a->used[0] = true;
    return 0;
}

/* Index of --flag or --flag=...; -1 if absent. Later occurrences win. */
static int find_flag(ArgList *a, const char *flag) {
    size_t n = strlen(flag);
    int found = -1;
    for (int i = 1; i < a->argc; i++) {
        const char *s = a->argv[i];
        if (strncmp(s, flag, n) == 0 && (s[n] == 0 || s[n] == '=')) found = i;
    }
    return found;
}

static void note_asked(ArgList *a, const char *flag) {
    for (int i = 0; i < a->num_asked; i++)
        if (!strcmp(a->asked[i], flag)) return;
    if (a->num_asked < ARGS_MAX) snprintf(a->asked[a->num_asked++], sizeof a->asked[0], "%s", flag);
}

int args_value(ArgList *a, const char *flag, const char **out, MpError *err) {
    *out = NULL;
    note_asked(a, flag);
    int i = find_flag(a, flag);
    if (i < 0) return 0;
    /* mark every occurrence as used */
    size_t n = strlen(flag);
    for (int j = 1; j < a->argc; j++) {
        const char *s = a->argv[j];
        if (strncmp(s, flag, n) == 0 && (s[n] == 0 || s[n] == '=')) {
            a->used[j] = true;
            if (s[n] == 0 && j + 1 < a->argc) a->used[j + 1] = true;
        }
    }
    const char *s = a->argv[i];
    if (s[n] == '=') {
        *out = s + n + 1;
    } else {
        if (i + 1 >= a->argc) return mp_fail(err, "%s: missing value", flag);
        *out = a->argv[i + 1];
    }
    if (**out == 0) return mp_fail(err, "%s: empty value", flag);
    return 0;
}

int args_calibration(ArgList *a, Calibration **out, const char **path_out, MpError *err) {
    const char *path;
    *out = NULL;
    if (args_value(a, "--calibration", &path, err)) return -1;
    if (path_out) *path_out = path;
    if (!path) return 0;
    Calibration *cal = malloc(sizeof *cal);
    if (!cal) return mp_fail(err, "--calibration: out of memory");
    if (calibration_load_file(path, cal, err)) {
        free(cal);
        return -1;
    }
    *out = cal;
    return 0;
}

int args_value_once(ArgList *a, const char *flag, const char **out, MpError *err) {
    size_t n = strlen(flag);
    const char *first = NULL;
    for (int j = 1; j < a->argc; j++) {
        const char *s = a->argv[j];
        if (strncmp(s, flag, n) || (s[n] != 0 && s[n] != '=')) continue;
        const char *val = s[n] == '=' ? s + n + 1 : (j + 1 < a->argc ? a->argv[j + 1] : "");
        if (!first) first = val;
        else return mp_fail(err, "%s: given twice, '%s' and '%s' (give it once)", flag, first, val);
    }
    return args_value(a, flag, out, err);
}

bool args_flag(ArgList *a, const char *flag) {
    bool found = false;
    note_asked(a, flag);
    for (int i = 1; i < a->argc; i++)
        if (!strcmp(a->argv[i], flag)) { a->used[i] = true; found = true; }
    return found;
}

int parse_int_strict(const char *s, const char *what, int *out, MpError *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != 0) return mp_fail(err, "%s: '%s' is not an integer", what, s);
    if (errno || v > 1000000000L || v < -1000000000L) return mp_fail(err, "%s: '%s' is out of range", what, s);
    *out = (int)v;
    return 0;
}

int parse_double_strict(const char *s, const char *what, double *out, MpError *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != 0) return mp_fail(err, "%s: '%s' is not a number", what, s);
    if (errno || !isfinite(v)) return mp_fail(err, "%s: '%s' is out of range", what, s);
    *out = v;
    return 0;
}

int args_int(ArgList *a, const char *flag, int *out, bool *present, MpError *err) {
    const char *v;
    if (present) *present = false;
    if (args_value(a, flag, &v, err)) return -1;
    if (!v) return 0;
    if (parse_int_strict(v, flag, out, err)) return -1;
    if (present) *present = true;
    return 0;
}

int args_double(ArgList *a, const char *flag, double *out, bool *present, MpError *err) {
    const char *v;
    if (present) *present = false;
    if (args_value(a, flag, &v, err)) return -1;
    if (!v) return 0;
    if (parse_double_strict(v, flag, out, err)) return -1;
    if (present) *present = true;
    return 0;
}

int args_finish(ArgList *a, MpError *err) {
    if (getenv("MOEPLAN_LIST_OPTIONS")) {
        for (int i = 0; i < a->num_asked; i++) printf("option %s\n", a->asked[i]);
        fflush(stdout);
        return mp_fail(err, "options listed (MOEPLAN_LIST_OPTIONS is set)");
    }
    for (int i = 1; i < a->argc; i++)
        if (!a->used[i]) return mp_fail(err, "%s: unknown option '%s' (see moeplan %s --help)", a->command, a->argv[i], a->command);
    return 0;
}

int plan_from_args(ArgList *a, Plan *p, bool partial, MpError *err) {
    const char *v;
    if (args_value(a, "--plan", &v, err)) return -1;
    if (v) {
        if (plan_load_file(v, p, err)) return -1;
    } else {
        memset(p, 0, sizeof *p);
        train_config_default(&p->train);
        snprintf(p->cluster_ref, sizeof p->cluster_ref, "dgx-h100");
        p->map.tp = p->map.cp = p->map.pp = p->map.vpp = p->map.etp = p->map.ep = 1;
    }
    if (args_value(a, "--model", &v, err)) return -1;
    if (v) {
        /* the plan records the reference; a longer one would be cut and name another file */
        if (strlen(v) >= sizeof p->model_ref)
            return mp_fail(err, "--model: the path is %zu bytes, above the %zu a plan records (use a shorter path)",
                           strlen(v), sizeof p->model_ref - 1);
        snprintf(p->model_ref, sizeof p->model_ref, "%s", v);
        if (model_lookup(v, &p->model, err)) return -1;
        const char *rename;
        if (args_value(a, "--model-name", &rename, err)) return -1;
        if (rename) {
            if (!rename[0] || strlen(rename) >= MP_NAME_LEN)
                return mp_fail(err, "--model-name: must be 1 to %d characters", MP_NAME_LEN - 1);
            snprintf(p->model.name, sizeof p->model.name, "%s", rename);
        }
    } else if (!p->model_ref[0]) {
        return mp_fail(err, "--model: required (a catalog name or a JSON file)");
    }
    if (args_value(a, "--cluster", &v, err)) return -1;
    if (v || !p->cluster.name[0]) {
        if (v && strlen(v) >= sizeof p->cluster_ref)
            return mp_fail(err, "--cluster: the path is %zu bytes, above the %zu a plan records (use a shorter path)",
                           strlen(v), sizeof p->cluster_ref - 1);
        if (v) snprintf(p->cluster_ref, sizeof p->cluster_ref, "%s", v);
        if (cluster_lookup(p->cluster_ref, &p->cluster, err)) return -1;
    }
    struct { const char *flag; int *dst; } ints[] = {
        {"--gpus", &p->map.world}, {"--tp", &p->map.tp}, {"--cp", &p->map.cp},
        {"--pp", &p->map.pp}, {"--vpp", &p->map.vpp}, {"--etp", &p->map.etp},
        {"--ep", &p->map.ep}, {"--first-stage-layers", &p->first_stage_layers},
        {"--last-stage-layers", &p->last_stage_layers}, {"--seq", &p->train.seq_len},
        {"--mbs", &p->train.micro_batch}, {"--gbs", &p->train.global_batch},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (args_int(a, ints[i].flag, ints[i].dst, NULL, err)) return -1;
    bool has_cf;
    if (args_double(a, "--capacity-factor", &p->train.capacity_factor, &has_cf, err)) return -1;
    if (args_flag(a, "--dropless")) {
        if (has_cf)
            return mp_fail(err, "--dropless: contradicts --capacity-factor %g (dropless routing has no capacity "
                           "factor; give one of them)", p->train.capacity_factor);
        p->train.capacity_factor = 0;
    }
    if (args_double(a, "--imbalance", &p->train.imbalance, NULL, err)) return -1;
    double reserve_gib;
    bool has_reserve;
    if (args_double(a, "--memory-reserve-gib", &reserve_gib, &has_reserve, err)) return -1;
    if (has_reserve) {
        if (reserve_gib < 0) return mp_fail(err, "--memory-reserve-gib: must be >= 0, got %g", reserve_gib);
        p->train.memory_reserve_bytes = reserve_gib * 1073741824.0;
    }
    if (args_value(a, "--order", &v, err)) return -1;
    if (v && rank_order_parse(v, &p->map.order))
        return mp_fail(err, "--order: '%s' is not tp-cp-ep-dp-pp or tp-cp-ep-pp-dp", v);
    if (args_value(a, "--recompute", &v, err)) return -1;
    if (v && recompute_parse(v, &p->train.recompute))
        return mp_fail(err, "--recompute: '%s' is not none, selective or full", v);
    if (args_value(a, "--recompute-modules", &v, err)) return -1;
    if (v) {
        MpError inner;
        if (recompute_modules_parse(v, &p->train.recompute_modules, &inner))
            return mp_fail(err, "--recompute-modules: %s", inner.msg + strlen("recompute_modules: "));
        if (p->train.recompute == RECOMPUTE_FULL)
            return mp_fail(err, "--recompute-modules: only with --recompute selective (Megatron's --recompute-modules "
                           "applies to selective granularity)");
        p->train.recompute = RECOMPUTE_SELECTIVE;
    }
    if (args_value(a, "--optimizer-sharding", &v, err)) return -1;
    if (v && opt_sharding_parse(v, &p->train.opt_sharding))
        return mp_fail(err, "--optimizer-sharding: '%s' is not none, distributed or full", v);
    if (args_value(a, "--dispatcher", &v, err)) return -1;
    if (v && dispatcher_parse(v, &p->train.dispatcher))
        return mp_fail(err, "--dispatcher: '%s' is not alltoall or allgather", v);
    if (args_value(a, "--flops", &v, err)) return -1;
    if (v && flops_convention_parse(v, &p->train.flops))
        return mp_fail(err, "--flops: '%s' is not legacy or megatron", v);
    if (args_value(a, "--attention-backend", &v, err)) return -1;
    if (v && attn_backend_parse(v, &p->train.attention_backend))
        return mp_fail(err, "--attention-backend: '%s' is not auto, cudnn, flash2, fa3 or own", v);
    if (args_value(a, "--precision", &v, err)) return -1;
    if (v) {
        if (!strcmp(v, "bf16")) p->train.precision = PRECISION_BF16;
        else if (!strcmp(v, "fp8")) p->train.precision = PRECISION_FP8;
        else return mp_fail(err, "--precision: '%s' is not bf16 or fp8", v);
    }
    if (args_value(a, "--overlap", &v, err)) return -1;
    if (v && overlap_parse(v, &p->train.overlap, err)) return -1;
    if (partial) return 0;
    if (p->map.world <= 0) return mp_fail(err, "--gpus: required, a positive GPU count");
    if (mapping_resolve(&p->map, p->model.num_experts, err)) return -1;
    if (train_config_validate(&p->train, err)) return -1;
    return plan_validate(p, err);
}
