/* cmd_compare.c: `moeplan compare PLAN PLAN...`: simulate each plan and put
 * them side by side, fastest first, cost term by term (the simulator's
 * breakdown of the critical stage, which adds up to the step time), with the
 * terms that decide the ranking against the fastest plan marked.  A PLAN is
 * a plan file (search --emit plan), a result document (search/simulate
 * --json: its chosen plan) or one quoted argument of plan flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "compare.h"
#include "planner/explain.h"
#include "simulator/result_json.h"
#include "simulator/simulate.h"

#define COMPARE_MAX_PLANS 8
#define GIB (1024.0 * 1024.0 * 1024.0)

static void usage(FILE *f) {
    fprintf(f, "usage: moeplan compare [--calibration FILE] PLAN PLAN [PLAN...]\n"
               "Simulates up to %d plans and prints them side by side, fastest first, cost term by term;\n"
               "'*' marks the terms that decide each plan's gap to the fastest (the largest excesses that\n"
               "together make up the gap).\n"
               "  PLAN                a plan file (search --emit plan), a result document (search --json,\n"
               "                      simulate --json: its chosen plan), or one quoted argument of plan flags,\n"
               "                      e.g. \"--model mixtral-8x7b --cluster dgx-h100 --gpus 16 --tp 2 --ep 8\"\n"
               "  --calibration FILE  price every plan with this calibration file\n"
               "  --help              this text\n",
               COMPARE_MAX_PLANS);
}

/* One quoted argument of flags, split at spaces, parsed as simulate does. */
static int plan_from_flag_text(const char *text, Plan *p, MpError *err) {
    char *copy = strdup(text);
    if (!copy) return mp_fail(err, "out of memory");
    char *argv[ARGS_MAX];
    int argc = 0;
    argv[argc++] = "compare";
    for (char *tok = strtok(copy, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (argc >= ARGS_MAX) { free(copy); return mp_fail(err, "'%s': too many flags", text); }
        argv[argc++] = tok;
    }
    ArgList a;
    MpError inner;
    int rc = args_init(&a, argc, argv, &inner);
    if (!rc) rc = plan_from_args(&a, p, false, &inner);
    if (!rc) rc = args_finish(&a, &inner);
    free(copy);
    if (rc) return mp_fail(err, "plan \"%s\": %s", text, inner.msg);
    return 0;
}

typedef struct {
    const char *source;         /* as given */
    Plan plan;
    SimResult sim;
    const char *names[RESULT_MAX_TERMS];
    double terms[RESULT_MAX_TERMS];
    int num_terms;
} Compared;

static void plan_line(const Compared *c, char label) {
    const Plan *p = &c->plan;
    char rc[32];
    recompute_label(p->train.recompute, train_recompute_modules(&p->train, &p->model), &p->model, rc, sizeof rc);
    char vpp[16] = "";
    if (p->map.vpp > 1) snprintf(vpp, sizeof vpp, " VPP%d", p->map.vpp);
    printf("  %c  %s\n     %s on %d GPUs: TP%d CP%d PP%d%s DP%d | ETP%d EP%d EDP%d  mbs %d  gbs %d  seq %d  "
           "recompute %s  optimizer %s\n", label, c->source, p->model.name, p->map.world, p->map.tp, p->map.cp,
           p->map.pp, vpp, p->map.dp, p->map.etp, p->map.ep, p->map.edp, p->train.micro_batch,
           p->train.global_batch, p->train.seq_len, rc, opt_sharding_name(p->train.opt_sharding));
}

static int by_step_time(const void *x, const void *y) {
    const Compared *a = *(const Compared *const *)x, *b = *(const Compared *const *)y;
    return (a->sim.step_time_s > b->sim.step_time_s) - (a->sim.step_time_s < b->sim.step_time_s);
}

static void print_comparison(Compared **c, int n) {
    printf("compare: %d plans, fastest first; columns B.. show the difference to A\n", n);
    for (int i = 0; i < n; i++) plan_line(c[i], (char)('A' + i));
    /* deciding terms of each plan against A */
    bool decides[COMPARE_MAX_PLANS][RESULT_MAX_TERMS] = {{false}};
    for (int i = 1; i < n; i++) {
        int idx[3];
        int k = explain_deciding_terms(c[0]->terms, c[i]->terms, c[0]->num_terms, idx, 3);
        for (int j = 0; j < k; j++) decides[i][idx[j]] = true;
    }
    printf("\n%-22s %12s", "", "A");
    for (int i = 1; i < n; i++) printf(" %15c", 'A' + i);
    printf("\n%-22s %12.3f", "step time (s)", c[0]->sim.step_time_s);
    for (int i = 1; i < n; i++) printf("  %+13.3f", c[i]->sim.step_time_s - c[0]->sim.step_time_s);
    const char *conv = flops_convention_name(c[0]->plan.train.flops);
    char mfu_name[32];
    snprintf(mfu_name, sizeof mfu_name, "MFU %s (%%)", conv);
    printf("\n%-22s %12.1f", mfu_name, 100 * c[0]->sim.mfu);
    for (int i = 1; i < n; i++) printf("  %+13.1f", 100 * (c[i]->sim.mfu - c[0]->sim.mfu));
    printf("\n%-22s %12.2f", "peak memory (GiB)", c[0]->sim.peak_memory_bytes / GIB);
    for (int i = 1; i < n; i++) printf("  %+13.2f", (c[i]->sim.peak_memory_bytes - c[0]->sim.peak_memory_bytes) / GIB);
    printf("\n%-22s %12s", "fits", c[0]->sim.fits ? "yes" : "NO");
    for (int i = 1; i < n; i++) printf("  %13s", c[i]->sim.fits ? "yes" : "NO");
    printf("\nterms of the step (s, critical pipeline stage):\n");
    for (int t = 0; t < c[0]->num_terms; t++) {
        bool any = false;
        for (int i = 0; i < n; i++) any |= c[i]->terms[t] > 0;
        if (!any) continue;
        printf("  %-20s %12.3f", c[0]->names[t], c[0]->terms[t]);
        for (int i = 1; i < n; i++)
            printf("  %+12.3f%c", c[i]->terms[t] - c[0]->terms[t], decides[i][t] ? '*' : ' ');
        printf("\n");
    }
    for (int i = 1; i < n; i++) {
        double gap = c[i]->sim.step_time_s - c[0]->sim.step_time_s;
        printf("%c is %.3f s slower than A", 'A' + i, gap);
        int idx[3];
        int k = explain_deciding_terms(c[0]->terms, c[i]->terms, c[0]->num_terms, idx, 3);
        for (int j = 0; j < k; j++)
            printf("%s %s %+.3f s", j ? "," : ":", c[0]->names[idx[j]], c[i]->terms[idx[j]] - c[0]->terms[idx[j]]);
        printf("\n");
    }
}

int cmd_compare(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
    MpError err = {{0}};
    Compared *items = calloc(COMPARE_MAX_PLANS, sizeof *items);
    Compared *order[COMPARE_MAX_PLANS];
    Calibration *cal = NULL;
    int n = 0, rc = 2;
    if (!items) { fprintf(stderr, "moeplan compare: out of memory\n"); return 1; }
    /* options first, then plans; a PLAN that starts with "--" and holds a space is flag text */
    const char *cal_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--calibration")) {
            if (i + 1 >= argc) { mp_fail(&err, "--calibration: needs a file"); goto bad; }
            cal_path = argv[++i];
            continue;
        }
        if (!strncmp(s, "--", 2) && !strchr(s, ' ')) { mp_fail(&err, "%s: unknown option (see --help)", s); goto bad; }
        if (n >= COMPARE_MAX_PLANS) { mp_fail(&err, "at most %d plans", COMPARE_MAX_PLANS); goto bad; }
        items[n].source = s;
        int r = !strncmp(s, "--", 2) ? plan_from_flag_text(s, &items[n].plan, &err)
                                     : plan_load_file(s, &items[n].plan, &err);
        if (r) goto bad;
        n++;
    }
    if (n < 2) { mp_fail(&err, "needs at least two plans, got %d", n); goto bad; }
    if (cal_path) {
        cal = malloc(sizeof *cal);
        if (!cal) { fprintf(stderr, "moeplan compare: out of memory\n"); rc = 1; goto done; }
        if (calibration_load_file(cal_path, cal, &err)) goto bad;
    }
    for (int i = 0; i < n; i++) {
        SimOptions opt = {0};
        if (simulate_step(&items[i].plan, cal, &opt, &items[i].sim, &err)) {
            fprintf(stderr, "moeplan compare: %s: %s\n", items[i].source, err.msg);
            goto done;
        }
        items[i].num_terms = result_breakdown_terms(&items[i].sim.breakdown, items[i].names, items[i].terms);
        order[i] = &items[i];
    }
    qsort(order, (size_t)n, sizeof order[0], by_step_time);
    print_comparison(order, n);
    rc = 0;
    goto done;
bad:
    fprintf(stderr, "moeplan compare: %s\n", err.msg);
    rc = 2;
done:
    free(items);
    free(cal);
    return rc;
}

int compare_print_winner(FILE *f, const Plan *base, const ScoredPlan *winner, const ScoredPlan *runner_up,
                         const Calibration *cal, MpError *err) {
    Compared *c = calloc(2, sizeof *c);
    if (!c) return mp_fail(err, "out of memory");
    const ScoredPlan *sp[2] = {winner, runner_up};
    for (int i = 0; i < 2; i++) {
        SimOptions opt = {0};
        candidate_apply(base, &sp[i]->cand, &c[i].plan);
        if (simulate_step(&c[i].plan, cal, &opt, &c[i].sim, err)) { free(c); return -1; }
        c[i].num_terms = result_breakdown_terms(&c[i].sim.breakdown, c[i].names, c[i].terms);
    }
    int idx[3];
    int k = explain_deciding_terms(c[0].terms, c[1].terms, c[0].num_terms, idx, 3);
    fprintf(f, "why rank 1 beats rank 2 (%.2f ms faster):", 1e3 * (c[1].sim.step_time_s - c[0].sim.step_time_s));
    if (k == 0) fprintf(f, " a tie");
    for (int j = 0; j < k; j++)
        fprintf(f, "%s %s %.2f ms less", j ? "," : "", c[0].names[idx[j]],
                1e3 * (c[1].terms[idx[j]] - c[0].terms[idx[j]]));
    fprintf(f, "\n");
    free(c);
    return 0;
}
