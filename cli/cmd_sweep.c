/* cmd_sweep.c: `moeplan sweep`: what-if studies.  For each value of one
 * parameter, re-run the search (or simulate a fixed plan with --fixed) and
 * print a table; --csv, --json and --plot write the data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "core/outfile.h"
#include "search_args.h"
#include "planner/sweep.h"
#include "plan_warnings.h"
#include "sweep_result.h"

#define SWEEP_MAX_POINTS 64

static void usage(FILE *f) {
    fprintf(f, "usage: moeplan sweep --model M --cluster C [plan or search options] --vary PARAM=V1,V2,...\n"
               "                     [--fixed] [--tokens-per-batch T] [--csv FILE] [--json] [--plot FILE.svg|.png]\n"
               "PARAM: gpus, seq, gbs, nvlink-bw (GB/s), ib-bw (Gb/s per NIC), nics-per-node,\n"
               "       gpus-per-node (NVLink domain), peak-tflops, hbm-gib, experts, top-k, expert-ffn,\n"
               "       granularity (experts x g, top-k x g, expert FFN / g), imbalance, capacity-factor\n"
               "  --vary PARAM=V1,V2,...           the parameter and its values (once)\n"
               "  --fixed                          simulate the plan given by the plan options at each value (no search)\n"
               "  --tokens-per-batch T             gbs = T / seq at each point (context scaling; not with --gbs)\n"
               "  --csv FILE                       write the points as CSV (no plan: empty fields and a reason)\n"
               "  --json                           the result document (docs/schema/moeplan-result.schema.json)\n"
               "  --plot FILE.svg|.png             draw MFU and step time against the parameter (gnuplot)\n"
               "  --threads T                      worker threads of each search (default: the machine's cores)\n"
               "  --quiet                          no progress lines on stderr (shown by default, terminal or not)\n"
               SEARCH_ARGS_HELP);
}

/* --tokens-per-batch sets the global batch at each point: --gbs contradicts it */
static int sweep_gbs_given(ArgList *a, MpError *err) {
    bool has_gbs = false;
    int gbs = 0;
    if (args_int(a, "--gbs", &gbs, &has_gbs, err)) return -1;
    if (has_gbs) return mp_fail(err, "--tokens-per-batch: contradicts --gbs %d (it sets gbs = T / seq at each point; "
                                "give one of them)", gbs);
    return 0;
}

static int parse_vary(const char *s, SweepParam *k, double *vals, int *n, MpError *err) {
    const char *eq = strchr(s, '=');
    if (!eq) return mp_fail(err, "--vary: '%s' is not PARAM=V1,V2,...", s);
    char name[64];
    size_t len = (size_t)(eq - s);
    if (len >= sizeof name) return mp_fail(err, "--vary: parameter name too long");
    memcpy(name, s, len);
    name[len] = 0;
    if (sweep_param_parse(name, k))
        return mp_fail(err, "--vary: '%s' is not one of gpus, seq, gbs, nvlink-bw, ib-bw, nics-per-node, "
                       "gpus-per-node, peak-tflops, hbm-gib, experts, top-k, expert-ffn, granularity, "
                       "imbalance, capacity-factor", name);
    *n = 0;
    const char *p = eq + 1;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        char buf[64];
        if (l == 0 || l >= sizeof buf) return mp_fail(err, "--vary: empty or too long value in '%s'", eq + 1);
        memcpy(buf, p, l);
        buf[l] = 0;
        if (*n >= SWEEP_MAX_POINTS) return mp_fail(err, "--vary: at most %d values", SWEEP_MAX_POINTS);
        if (parse_double_strict(buf, "--vary", &vals[*n], err)) return -1;
        (*n)++;
        p += l + (comma ? 1 : 0);
        if (comma && !*p) return mp_fail(err, "--vary: trailing comma in '%s'", eq + 1);
    }
    if (*n == 0) return mp_fail(err, "--vary: no values after '='");
    return 0;
}

static void print_point(const SweepPoint *p, bool fixed) {
    const Candidate *c = &p->best.cand;
    if (!p->ok && !(fixed && p->best.step_time_s > 0)) {
        printf("%10g  %-46s %s\n", p->value, "-", p->note);
        return;
    }
    char map[96];
    snprintf(map, sizeof map, "tp%d cp%d pp%d vpp%d dp%d | etp%d ep%d edp%d mbs%d %s",
             c->map.tp, c->map.cp, c->map.pp, c->map.vpp, c->map.dp, c->map.etp, c->map.ep, c->map.edp, c->mbs,
             recompute_name((RecomputeKind)c->recompute));
    printf("%10g  %-46s %6.1f%% %8.3f %9.0f %7.1f", p->value, map, 100 * p->best.mfu, p->best.step_time_s,
           p->best.tokens_per_s_per_gpu, p->best.peak_memory_bytes / 1073741824.0);
    if (!fixed) {
        if (p->has_coupled) printf(" %6.1f%%", 100 * p->coupled.mfu);
        else printf(" %7s", "-");
    }
    printf("  %s%s%s\n", p->best.dominant, p->ok ? "" : "  ", p->ok ? "" : p->note);
}

int cmd_sweep(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
    MpError err;
    ArgList a;
    Plan *base = malloc(sizeof *base), *point = malloc(sizeof *point);
    SweepPoint *pts = calloc(SWEEP_MAX_POINTS, sizeof *pts);
    if (!base || !point || !pts) { free(base); free(point); free(pts); fprintf(stderr, "moeplan sweep: out of memory\n"); return 1; }
    SearchUserLimits lim;
    Calibration *cal = NULL;
    const char *vary = NULL, *csv = NULL, *plot = NULL, *cal_path = NULL;
    cJSON *doc = NULL;
    int threads = 0, n = 0, status = 0;
    double tokens_d = 0;
    bool json = false, fixed = false, quiet = false;
    double vals[SWEEP_MAX_POINTS];
    SweepParam k = SWEEP_GPUS;
    if (args_init(&a, argc, argv, &err)) goto bad;
    fixed = args_flag(&a, "--fixed");
    json = args_flag(&a, "--json");
    quiet = args_flag(&a, "--quiet");
    if (args_value_once(&a, "--vary", &vary, &err) || args_value(&a, "--csv", &csv, &err) ||
        args_value(&a, "--plot", &plot, &err) || args_int(&a, "--threads", &threads, NULL, &err) ||
        args_double(&a, "--tokens-per-batch", &tokens_d, NULL, &err) || args_calibration(&a, &cal, &cal_path, &err)) goto bad;
    if (!vary) { mp_fail(&err, "--vary: required, PARAM=V1,V2,..."); goto bad; }
    if (tokens_d != 0 && sweep_gbs_given(&a, &err)) goto bad;
    if (parse_vary(vary, &k, vals, &n, &err)) goto bad;
    if (fixed) {
        /* a fixed plan must be complete; a varied GPU count replaces --gpus */
        if (k == SWEEP_GPUS) {
            bool has_gpus = false;
            int g;
            if (args_int(&a, "--gpus", &g, &has_gpus, &err)) goto bad;
            if (!has_gpus) { mp_fail(&err, "--gpus: required with --fixed (any value of the sweep)"); goto bad; }
        }
        if (plan_from_args(&a, base, false, &err)) goto bad;
    } else if (search_args_parse(&a, base, &lim, k != SWEEP_GPUS, &err)) {
        goto bad;
    }
    if (args_finish(&a, &err)) goto bad;
    if (tokens_d < 0 || tokens_d != (double)(long long)tokens_d) { mp_fail(&err, "--tokens-per-batch: must be a positive integer"); goto bad; }
    if (plot) {
        size_t l = strlen(plot);
        if (l < 5 || (strcmp(plot + l - 4, ".svg") && strcmp(plot + l - 4, ".png"))) {
            mp_fail(&err, "--plot: '%s' must end in .svg or .png", plot);
            goto bad;
        }
    }
    if (csv && outfile_check_target(csv, &err)) goto bad;
    if (plot && outfile_check_target(plot, &err)) goto bad;
    /* gnuplot missing is known now, not after the (long) run */
    if (plot && sweep_plot_available(&err)) { fprintf(stderr, "moeplan sweep: %s\n", err.msg); status = 1; goto done; }
    /* check every value before the (long) run, so bad input fails at once */
    for (int i = 0; i < n; i++)
        if (sweep_apply(base, k, vals[i], (long long)tokens_d, point, &err)) goto bad;

    SearchOptions so = {.threads = threads, .cal = cal};
    if (json) doc = sweep_result_new(base, k, fixed, (long long)tokens_d, cal_path, cal);
    PlanWarnings warn = {0};
    plan_warnings_calibration(base, cal, &warn); /* a swept GPU count is not compared (gpus 0) */
    for (int i = 0; i < warn.count; i++) {
        fprintf(stderr, "moeplan sweep: warning: %s\n", warn.line[i]);
        if (doc) result_add_warning(doc, warn.line[i]);
    }
    bool tty = isatty(2);
    for (int i = 0; i < n; i++) {
        SearchConstraints cons;
        if (sweep_apply(base, k, vals[i], (long long)tokens_d, point, &err)) goto bad;
        if (!fixed && search_constraints_for(point, &lim, &cons, &err)) goto bad;
        if (quiet) {}
        else if (tty) { fprintf(stderr, "\rsweep: %s = %g (%d/%d)      ", sweep_param_name(k), vals[i], i + 1, n); fflush(stderr); }
        else fprintf(stderr, "sweep: %s = %g (%d/%d)\n", sweep_param_name(k), vals[i], i + 1, n);
        if (sweep_point(point, &cons, &so, fixed, &pts[i], &err)) {
            fprintf(stderr, "moeplan sweep: %s = %g: %s\n", sweep_param_name(k), vals[i], err.msg);
            status = 1;
            goto done;
        }
        pts[i].value = vals[i];
        if (doc && sweep_result_add_point(doc, point, &pts[i], fixed, cal, &err)) {
            fprintf(stderr, "moeplan sweep: %s = %g: %s\n", sweep_param_name(k), vals[i], err.msg);
            status = 1;
            goto done;
        }
    }
    if (tty && !quiet) fprintf(stderr, "\r%60s\r", "");
    if (json) {
        char *s = cJSON_Print(doc);
        if (s) printf("%s\n", s);
        free(s);
    } else {
        printf("sweep of %s (%s) for %s on %s, %s\n", sweep_param_name(k), sweep_param_unit(k), base->model.name,
               base->cluster.name, fixed ? "fixed plan" : "best plan of a full search at each point");
        printf("%10s  %-46s %7s %8s %9s %7s%s  %s\n", sweep_param_name(k), fixed ? "plan" : "best mapping",
               "MFU", "step s", "tok/s/GPU", "mem GiB", fixed ? "" : " coupled", "dominant cost");
        for (int i = 0; i < n; i++) print_point(&pts[i], fixed);
    }
    if (csv && sweep_write_csv(csv, k, pts, n, &err)) { fprintf(stderr, "moeplan sweep: %s\n", err.msg); status = 1; }
    if (plot) {
        char title[256];
        char gbs[32], seq[32];
        if (k == SWEEP_GBS) snprintf(gbs, sizeof gbs, "swept");
        else snprintf(gbs, sizeof gbs, "%d", base->train.global_batch);
        if (k == SWEEP_SEQ) snprintf(seq, sizeof seq, "swept");
        else snprintf(seq, sizeof seq, "%d", base->train.seq_len);
        snprintf(title, sizeof title, "%s on %s (gbs %s, seq %s): %s sweep, %s", base->model.name, base->cluster.name,
                 gbs, seq, sweep_param_name(k), fixed ? "fixed plan" : "best plan of a full search at each point");
        if (sweep_plot(plot, title, k, pts, n, fixed, &err)) { fprintf(stderr, "moeplan sweep: %s\n", err.msg); status = 1; }
    }
done:
    cJSON_Delete(doc);
    free(base); free(point); free(pts); free(cal);
    return status;
bad:
    fprintf(stderr, "moeplan sweep: %s\n", err.msg);
    free(base); free(point); free(pts); free(cal);
    return 2;
}
