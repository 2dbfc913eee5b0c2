/* cmd_sweep.c: `moeplan sweep`: what-if studies.  For each value of one
 * parameter (or each pair of values of two, --vary2: a grid), re-run the
 * search (or simulate a fixed plan with --fixed) and print a table; --csv,
 * --json and --plot write the data (a 2-D sweep plots a heat map). */
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

#define SWEEP_MAX_POINTS 64     /* values of one key */
#define SWEEP_MAX_GRID 256      /* points of a 2-D sweep (each a full search) */

static void usage(FILE *f) {
    fprintf(f, "usage: moeplan sweep --model M --cluster C [plan or search options] --vary PARAM=V1,V2,...\n"
               "                     [--vary2 PARAM2=W1,W2,...] [--fixed] [--tokens-per-batch T] [--csv FILE] [--json]\n"
               "                     [--plot FILE.svg|.png]\n"
               "PARAM: gpus, seq, gbs, nvlink-bw (GB/s), ib-bw (Gb/s per NIC), nics-per-node,\n"
               "       gpus-per-node (NVLink domain), peak-tflops, hbm-gib, experts, top-k, expert-ffn,\n"
               "       granularity (experts x g, top-k x g, expert FFN / g), imbalance, capacity-factor\n"
               "  --vary PARAM=V1,V2,...           the parameter and its values (once)\n"
               "  --vary2 PARAM2=W1,W2,...         a second parameter: every (V, W) pair, a table with rows V and\n"
               "                                   columns W, and --plot draws a heat map of the MFU (at most %d points)\n"
               "  --fixed                          simulate the plan given by the plan options at each value (no search)\n"
               "  --tokens-per-batch T             gbs = T / seq at each point (context scaling; not with --gbs\n"
               "                                   or a swept gbs)\n"
               "  --csv FILE                       write the points as CSV (no plan: empty fields and a reason)\n"
               "  --json                           the result document (docs/schema/moeplan-result.schema.json)\n"
               "  --plot FILE.svg|.png             draw MFU and step time against the parameter (gnuplot; with\n"
               "                                   --vary2 a heat map of the MFU over the grid)\n"
               "  --threads T                      worker threads of each search (default: the machine's cores)\n"
               "  --quiet                          no progress lines on stderr (shown by default, terminal or not)\n"
               , SWEEP_MAX_GRID);
    fputs(SEARCH_ARGS_HELP, f); /* printed as it is: no format directives */
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

/* flag: "--vary" or "--vary2", for the messages */
static int parse_vary(const char *flag, const char *s, SweepParam *k, double *vals, int *n, MpError *err) {
    const char *eq = strchr(s, '=');
    if (!eq) return mp_fail(err, "%s: '%s' is not PARAM=V1,V2,...", flag, s);
    char name[64];
    size_t len = (size_t)(eq - s);
    if (len >= sizeof name) return mp_fail(err, "%s: parameter name too long", flag);
    memcpy(name, s, len);
    name[len] = 0;
    if (sweep_param_parse(name, k))
        return mp_fail(err, "%s: '%s' is not one of gpus, seq, gbs, nvlink-bw, ib-bw, nics-per-node, "
                       "gpus-per-node, peak-tflops, hbm-gib, experts, top-k, expert-ffn, granularity, "
                       "imbalance, capacity-factor", flag, name);
    *n = 0;
    const char *p = eq + 1;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        char buf[64];
        if (l == 0 || l >= sizeof buf) return mp_fail(err, "%s: empty or too long value in '%s'", flag, eq + 1);
        memcpy(buf, p, l);
        buf[l] = 0;
        if (*n >= SWEEP_MAX_POINTS) return mp_fail(err, "%s: at most %d values", flag, SWEEP_MAX_POINTS);
        if (parse_double_strict(buf, flag, &vals[*n], err)) return -1;
        for (int i = 0; i < *n; i++)
            if (vals[i] == vals[*n]) return mp_fail(err, "%s: %s = %g is given twice", flag, name, vals[*n]);
        (*n)++;
        p += l + (comma ? 1 : 0);
        if (comma && !*p) return mp_fail(err, "%s: trailing comma in '%s'", flag, eq + 1);
    }
    if (*n == 0) return mp_fail(err, "%s: no values after '='", flag);
    return 0;
}

/* One line per point: the value (both values in a 2-D sweep), the plan and its figures. */
static void print_point(const SweepPoint *p, bool fixed) {
    const Candidate *c = &p->best.cand;
    printf("%10g  ", p->value);
    if (p->has_value2) printf("%10g  ", p->value2);
    if (!p->ok && !(fixed && p->best.step_time_s > 0)) {
        printf("%-46s %s\n", "-", p->note);
        return;
    }
    char map[96];
    snprintf(map, sizeof map, "tp%d cp%d pp%d vpp%d dp%d | etp%d ep%d edp%d mbs%d %s",
             c->map.tp, c->map.cp, c->map.pp, c->map.vpp, c->map.dp, c->map.etp, c->map.ep, c->map.edp, c->mbs,
             recompute_name((RecomputeKind)c->recompute));
    printf("%-46s %6.1f%% %8.3f %9.0f %7.1f", map, 100 * p->best.mfu, p->best.step_time_s,
           p->best.tokens_per_s_per_gpu, p->best.peak_memory_bytes / 1073741824.0);
    if (!fixed) {
        if (p->has_coupled) printf(" %6.1f%%", 100 * p->coupled.mfu);
        else printf(" %7s", "-");
    }
    printf("  %s%s%s\n", p->best.dominant, p->ok ? "" : "  ", p->ok ? "" : p->note);
}

/* The grid of a 2-D sweep: rows the first key, columns the second, each
 * cell the MFU of the point's plan ("-": no plan; "(x%)": a fixed plan
 * that does not fit). */
static void print_grid(const SweepGrid *g) {
    printf("MFU (rows: %s, columns: %s; -: no plan%s)\n", sweep_param_name(g->k1), sweep_param_name(g->k2),
           g->fixed ? ", (x): does not fit" : " fits");
    char corner[64];
    int w = snprintf(corner, sizeof corner, "%s \\ %s", sweep_param_name(g->k1), sweep_param_name(g->k2));
    printf("%s", corner);
    for (int j = 0; j < g->n2; j++) printf(" %9g", g->vals2[j]);
    printf("\n");
    for (int i = 0; i < g->n1; i++) {
        printf("%*g", w, g->vals1[i]);
        for (int j = 0; j < g->n2; j++) {
            const SweepPoint *p = &g->pts[i * g->n2 + j];
            char cell[32] = "-";
            if (p->ok) snprintf(cell, sizeof cell, "%.1f%%", 100 * p->best.mfu);
            else if (g->fixed && p->best.step_time_s > 0) snprintf(cell, sizeof cell, "(%.1f%%)", 100 * p->best.mfu);
            printf(" %9s", cell);
        }
        printf("\n");
    }
}

/* "gbs 256" or "gbs swept" (or "... per point"): the title's batch and sequence. */
static void plot_title(char *title, size_t cap, const Plan *base, SweepParam k, const SweepParam *k2, bool fixed,
                       long long tokens_per_batch) {
    char gbs[48], seq[32], keys[64];
    bool gbs_swept = k == SWEEP_GBS || (k2 && *k2 == SWEEP_GBS), seq_swept = k == SWEEP_SEQ || (k2 && *k2 == SWEEP_SEQ);
    if (tokens_per_batch > 0) snprintf(gbs, sizeof gbs, "%lld tokens per batch", tokens_per_batch);
    else if (gbs_swept) snprintf(gbs, sizeof gbs, "gbs swept");
    else snprintf(gbs, sizeof gbs, "gbs %d", base->train.global_batch);
    if (seq_swept) snprintf(seq, sizeof seq, "seq swept");
    else snprintf(seq, sizeof seq, "seq %d", base->train.seq_len);
    if (k2) snprintf(keys, sizeof keys, "%s x %s", sweep_param_name(k), sweep_param_name(*k2));
    else snprintf(keys, sizeof keys, "%s", sweep_param_name(k));
    snprintf(title, cap, "%s on %s (%s, %s): %s sweep, %s", base->model.name, base->cluster.name, gbs, seq, keys,
             fixed ? "fixed plan" : "best plan of a full search at each point");
}

int cmd_sweep(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
    MpError err;
    ArgList a;
    Plan *base = malloc(sizeof *base), *point = malloc(sizeof *point);
    SweepPoint *pts = calloc(SWEEP_MAX_GRID, sizeof *pts);
    if (!base || !point || !pts) { free(base); free(point); free(pts); fprintf(stderr, "moeplan sweep: out of memory\n"); return 1; }
    SearchUserLimits lim;
    Calibration *cal = NULL;
    const char *vary = NULL, *vary2 = NULL, *csv = NULL, *plot = NULL, *cal_path = NULL;
    cJSON *doc = NULL;
    int threads = 0, n1 = 0, n2 = 1, status = 0;
    double tokens_d = 0;
    bool json = false, fixed = false, quiet = false;
    double vals1[SWEEP_MAX_POINTS], vals2[SWEEP_MAX_POINTS] = {0};
    SweepParam k = SWEEP_GPUS, k2v = SWEEP_GPUS;
    const SweepParam *k2 = NULL;  /* the second key of a 2-D sweep */
    if (args_init(&a, argc, argv, &err)) goto bad;
    fixed = args_flag(&a, "--fixed");
    json = args_flag(&a, "--json");
    quiet = args_flag(&a, "--quiet");
    if (args_value_once(&a, "--vary", &vary, &err) || args_value_once(&a, "--vary2", &vary2, &err) ||
        args_value(&a, "--csv", &csv, &err) || args_value(&a, "--plot", &plot, &err) ||
        args_int(&a, "--threads", &threads, NULL, &err) ||
        args_double(&a, "--tokens-per-batch", &tokens_d, NULL, &err) || args_calibration(&a, &cal, &cal_path, &err)) goto bad;
    if (!vary && vary2) { mp_fail(&err, "--vary2: needs --vary (the first key, the rows; --vary2 is the columns)"); goto bad; }
    if (!vary) { mp_fail(&err, "--vary: required, PARAM=V1,V2,..."); goto bad; }
    if (tokens_d != 0 && sweep_gbs_given(&a, &err)) goto bad;
    if (parse_vary("--vary", vary, &k, vals1, &n1, &err)) goto bad;
    if (vary2) {
        if (parse_vary("--vary2", vary2, &k2v, vals2, &n2, &err) || sweep_check_pair(k, k2v, &err)) goto bad;
        k2 = &k2v;
        if (n1 * n2 > SWEEP_MAX_GRID) {
            mp_fail(&err, "--vary2: %d x %d = %d points, at most %d (each is a full search)", n1, n2, n1 * n2,
                    SWEEP_MAX_GRID);
            goto bad;
        }
    }
    bool gpus_swept = k == SWEEP_GPUS || (k2 && *k2 == SWEEP_GPUS);
    if (tokens_d != 0 && (k == SWEEP_GBS || (k2 && *k2 == SWEEP_GBS))) {
        mp_fail(&err, "--tokens-per-batch: contradicts %s gbs (it sets gbs = T / seq at each point; give one of them)",
                k == SWEEP_GBS ? "--vary" : "--vary2");
        goto bad;
    }
    if (fixed) {
        /* a fixed plan must be complete; a varied GPU count replaces --gpus */
        if (gpus_swept) {
            bool has_gpus = false;
            int g;
            if (args_int(&a, "--gpus", &g, &has_gpus, &err)) goto bad;
            if (!has_gpus) { mp_fail(&err, "--gpus: required with --fixed (any value of the sweep)"); goto bad; }
        }
        if (plan_from_args(&a, base, false, &err)) goto bad;
    } else if (search_args_parse(&a, base, &lim, !gpus_swept, &err)) {
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
    /* check every value (every pair) before the (long) run, so bad input fails at once */
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++)
            if (k2 ? sweep_apply2(base, k, vals1[i], *k2, vals2[j], (long long)tokens_d, point, &err)
                   : sweep_apply(base, k, vals1[i], (long long)tokens_d, point, &err)) goto bad;

    SearchOptions so = {.threads = threads, .cal = cal};
    if (json) doc = sweep_result_new(base, k, k2, fixed, (long long)tokens_d, cal_path, cal);
    PlanWarnings warn = {0};
    plan_warnings_calibration(base, cal, &warn); /* a swept GPU count is not compared (gpus 0) */
    for (int i = 0; i < warn.count; i++) {
        fprintf(stderr, "moeplan sweep: warning: %s\n", warn.line[i]);
        if (doc) result_add_warning(doc, warn.line[i]);
    }
    bool tty = isatty(2);
    int n = n1 * n2;
    for (int idx = 0; idx < n; idx++) {
        int i = idx / n2, j = idx % n2;
        SearchConstraints cons;
        char where[96];
        if (k2) snprintf(where, sizeof where, "%s = %g, %s = %g", sweep_param_name(k), vals1[i], sweep_param_name(*k2),
                         vals2[j]);
        else snprintf(where, sizeof where, "%s = %g", sweep_param_name(k), vals1[i]);
        if (k2 ? sweep_apply2(base, k, vals1[i], *k2, vals2[j], (long long)tokens_d, point, &err)
               : sweep_apply(base, k, vals1[i], (long long)tokens_d, point, &err)) goto bad;
        if (!fixed && search_constraints_for(point, &lim, &cons, &err)) goto bad;
        if (quiet) {}
        else if (tty) { fprintf(stderr, "\rsweep: %s (%d/%d)      ", where, idx + 1, n); fflush(stderr); }
        else fprintf(stderr, "sweep: %s (%d/%d)\n", where, idx + 1, n);
        if (sweep_point(point, &cons, &so, fixed, &pts[idx], &err)) {
            fprintf(stderr, "moeplan sweep: %s: %s\n", where, err.msg);
            status = 1;
            goto done;
        }
        pts[idx].value = vals1[i];
        if (k2) { pts[idx].has_value2 = true; pts[idx].value2 = vals2[j]; }
        if (doc && sweep_result_add_point(doc, point, &pts[idx], fixed, cal, &err)) {
            fprintf(stderr, "moeplan sweep: %s: %s\n", where, err.msg);
            status = 1;
            goto done;
        }
    }
    if (tty && !quiet) fprintf(stderr, "\r%70s\r", "");
    SweepGrid grid = {.k1 = k, .k2 = k2v, .vals1 = vals1, .vals2 = vals2, .n1 = n1, .n2 = n2, .pts = pts,
                      .fixed = fixed};
    if (json) {
        char *s = cJSON_Print(doc);
        if (s) printf("%s\n", s);
        free(s);
    } else {
        printf("sweep of %s (%s)", sweep_param_name(k), sweep_param_unit(k));
        if (k2) printf(" x %s (%s)", sweep_param_name(*k2), sweep_param_unit(*k2));
        printf(" for %s on %s, %s\n", base->model.name, base->cluster.name,
               fixed ? "fixed plan" : "best plan of a full search at each point");
        if (k2) print_grid(&grid);
        printf("%10s  ", sweep_param_name(k));
        if (k2) printf("%10s  ", sweep_param_name(*k2));
        printf("%-46s %7s %8s %9s %7s%s  %s\n", fixed ? "plan" : "best mapping",
               "MFU", "step s", "tok/s/GPU", "mem GiB", fixed ? "" : " coupled", "dominant cost");
        for (int i = 0; i < n; i++) print_point(&pts[i], fixed);
    }
    if (csv && sweep_write_csv(csv, k, k2, pts, n, &err)) { fprintf(stderr, "moeplan sweep: %s\n", err.msg); status = 1; }
    if (plot) {
        char title[1024];
        plot_title(title, sizeof title, base, k, k2, fixed, (long long)tokens_d);
        int rc = k2 ? sweep_heatmap(plot, title, &grid, &err) : sweep_plot(plot, title, k, pts, n, fixed, &err);
        if (rc) { fprintf(stderr, "moeplan sweep: %s\n", err.msg); status = 1; }
    }
done:
    cJSON_Delete(doc);
    free(base); free(point); free(pts); free(cal);
    return status;
bad:
    fprintf(stderr, "moeplan sweep: %s\n", err.msg);
    cJSON_Delete(doc);
    free(base); free(point); free(pts); free(cal);
    return 2;
}
