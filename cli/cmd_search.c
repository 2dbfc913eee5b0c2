/* cmd_search.c: `moeplan search`: rank every valid folded mapping for a
 * model, cluster, GPU count and batch; print the best K, the best coupled
 * plan and the folding gain; or emit the winner as a JSON plan or as
 * Megatron-LM flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "plan_warnings.h"
#include "compare.h"
#include "search_args.h"
#include "planner/emit.h"
#include "planner/search.h"
#include "simulator/result_json.h"

static void usage(FILE *f) {
    fprintf(f, "usage: moeplan search --model M --cluster C --gpus N [--gbs B] [--seq S] [constraints]\n"
               "                      [--top K] [--json | --emit plan|megatron|launch] [--launcher torchrun|srun]\n"
               "                      [--rank R] [--threads T]\n"
               "Scores every valid plan with the simulator and prints the best K (default 10).\n"
               "  --top K                          print the best K plans (default 10)\n"
               "  --rank R                         the plan --json/--emit choose (default 1, the best)\n"
               "  --threads T                      worker threads (default: the machine's cores)\n"
               "  --json                           the result document (docs/schema): the top K plans with breakdown\n"
               "                                   and memory; simulate/execute --plan read it as the chosen plan\n"
               "  --emit plan|megatron|launch      the chosen plan as a plan file, as Megatron-LM command-line flags,\n"
               "                                   or as a bash script running Megatron-LM's pretrain_gpt.py\n"
               "  --launcher torchrun|srun         with --emit launch: the launcher (default torchrun)\n"
               "  --quiet                          no progress lines on stderr (shown by default, terminal or not)\n"
               SEARCH_ARGS_HELP);
}

/* Progress on stderr whether or not it is a terminal (--quiet: none): a
 * terminal gets one line rewritten in place, a file or pipe a new line at
 * most every 2 seconds, so a long search is never silent. */
typedef struct { bool tty; double last; } Progress;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void progress_stderr(void *ctx, size_t done, size_t total) {
    Progress *p = ctx;
    if (p->tty) {
        fprintf(stderr, "\rsearch: %zu / %zu plans scored", done, total);
        fflush(stderr);
        return;
    }
    double t = now_s();
    if (t - p->last < 2.0) return;
    p->last = t;
    fprintf(stderr, "search: %zu / %zu plans scored\n", done, total);
}

static const char *opt_short(int o) { return o == OPT_SHARD_NONE ? "none" : o == OPT_SHARD_DISTRIBUTED ? "dist" : "fsdp"; }

/* One table row of a scored plan. */
static void print_row(FILE *f, const char *label, const ScoredPlan *s, const ModelSpec *m) {
    const Candidate *c = &s->cand;
    char rc[32];
    recompute_label((RecomputeKind)c->recompute, c->recompute_modules, m, rc, sizeof rc);
    char split[16] = "even";
    if (c->first_stage_layers || c->last_stage_layers)
        snprintf(split, sizeof split, "%d/%d", c->first_stage_layers, c->last_stage_layers);
    fprintf(f, "%5s %3d %3d %3d %3d %4d | %3d %3d %4d | %3d %-15s %-4s %-6s %6.1f%% %8.3f %9.0f %7.1f  %s\n",
            label, c->map.tp, c->map.cp, c->map.pp, c->map.vpp, c->map.dp, c->map.etp, c->map.ep, c->map.edp,
            c->mbs, rc, opt_short(c->opt_sharding), split,
            100 * s->mfu, s->step_time_s, s->tokens_per_s_per_gpu, s->peak_memory_bytes / 1073741824.0, s->dominant);
}

static void print_header(FILE *f) {
    fprintf(f, "%5s %3s %3s %3s %3s %4s | %3s %3s %4s | %3s %-15s %-4s %-6s %7s %8s %9s %7s  %s\n",
            "rank", "tp", "cp", "pp", "vpp", "dp", "etp", "ep", "edp", "mbs", "recompute", "opt", "split",
            "MFU", "step s", "tok/s/GPU", "mem GiB", "dominant cost");
}

static void print_counts(FILE *f, const SearchResult *r) {
    const CandidateList *l = &r->space;
    fprintf(f, "plans: %lld enumerated, %zu candidates", l->enumerated, l->count);
    if (l->uneven_added) fprintf(f, " (%lld with an uneven GLPK split)", l->uneven_added);
    fprintf(f, ", %lld simulated, %zu fit and ranked\npruned:", r->simulated, r->num_ranked);
    for (int k = 0; k < PRUNE_RULE_COUNT; k++)
        if (l->pruned[k]) fprintf(f, " %s %lld,", prune_rule_name((PruneRule)k), l->pruned[k]);
    fprintf(f, " (first rule broken counts)\n");
    if (r->invalid_example[0]) fprintf(f, "invalid example: %s\n", r->invalid_example);
    fprintf(f, "time: %.2f s on %d threads (%.0f plans simulated per second)\n", r->seconds, r->threads,
            r->seconds > 0 ? r->simulated / r->seconds : 0.0);
}

/* The result document (docs/schema/moeplan-result.schema.json, "search"):
 * the top K plans, each re-simulated for its breakdown and memory per stage;
 * chosen_rank names the one simulate/execute --plan load from this file. */
static char *search_json(const Plan *base, const SearchResult *r, int top, int rank, const char *cal_path,
                         const Calibration *cal, const PlanWarnings *w, MpError *err) {
    Plan *p = malloc(sizeof *p);
    SimResult *res = malloc(sizeof *res);
    cJSON *doc = result_document("search", base, -1, cal_path, cal ? cal->device : NULL);
    char *out = NULL;
    if (!p || !res || !doc) { mp_fail(err, "out of memory"); goto done; }
    for (int i = 0; i < w->count; i++) result_add_warning(doc, w->line[i]);
    cJSON_AddNumberToObject(doc, "chosen_rank", rank);
    if (r->best_coupled >= 0) cJSON_AddNumberToObject(doc, "best_coupled_rank", (double)r->best_coupled + 1);
    else cJSON_AddNullToObject(doc, "best_coupled_rank");
    cJSON *counts = cJSON_AddObjectToObject(doc, "counts");
    cJSON_AddNumberToObject(counts, "enumerated", (double)r->space.enumerated);
    cJSON_AddNumberToObject(counts, "candidates", (double)r->space.count);
    cJSON_AddNumberToObject(counts, "simulated", (double)r->simulated);
    cJSON_AddNumberToObject(counts, "ranked", (double)r->num_ranked);
    cJSON *plans = cJSON_AddArrayToObject(doc, "plans");
    /* the top K, and the chosen rank and the best coupled plan when beyond it */
    for (size_t i = 0; i < r->num_ranked; i++) {
        bool want = (int)i < top || (int)i == rank - 1 || (long)i == r->best_coupled;
        if (!want) continue;
        candidate_apply(base, &r->ranked[i].cand, p);
        SimOptions opt = {0};
        if (simulate_step(p, cal, &opt, res, err)) goto done;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "rank", (double)i + 1);
        cJSON_AddItemToObject(e, "plan", result_plan_json(p));
        cJSON_AddItemToObject(e, "prediction", result_prediction_json(p, res, true));
        cJSON_AddItemToArray(plans, e);
    }
    out = cJSON_Print(doc);
    if (!out) mp_fail(err, "out of memory");
done:
    cJSON_Delete(doc);
    free(p);
    free(res);
    return out;
}

/* "no plan fits", with advice only on what the search did not already try:
 * it tries every recomputation, optimizer sharding and mbs <= the bound
 * unless the user fixed them. */
static void print_no_fit_advice(FILE *f, const Plan *base, const SearchUserLimits *lim, long long too_big) {
    fprintf(f, "moeplan search: no plan fits (%lld candidates did not fit in memory); try more GPUs", too_big);
    if (lim->fix_recompute && base->train.recompute != RECOMPUTE_FULL) fprintf(f, ", --recompute full");
    if (lim->fix_sharding && base->train.opt_sharding != OPT_SHARD_FULL) fprintf(f, ", --optimizer-sharding full");
    if (lim->fixed[6] && lim->fix[6] > 1) fprintf(f, ", a smaller --mbs");
    for (int i = 0; i < 6; i++)
        if (lim->fixed[i] && i != 3) { fprintf(f, ", other --tp/--cp/--pp/--etp/--ep than the fixed ones"); break; }
    fprintf(f, " (the search tries every recomputation, optimizer sharding and mbs up to the bound that is not fixed)\n");
}

/* The command; *cal receives the --calibration file (the caller frees it). */
static int search_command(int argc, char **argv, Calibration **cal) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
    MpError err;
    ArgList a;
    Plan *base = malloc(sizeof *base);
    if (!base) { fprintf(stderr, "moeplan search: out of memory\n"); return 1; }
    SearchConstraints cons;
    SearchUserLimits lim;
    int top = 10, rank = 1, threads = 0;
    const char *emit = NULL, *launcher = NULL, *cal_path = NULL;
    bool json = false;
    if (args_init(&a, argc, argv, &err) || search_args_parse(&a, base, &lim, true, &err) ||
        args_int(&a, "--top", &top, NULL, &err) || args_int(&a, "--rank", &rank, NULL, &err) ||
        args_int(&a, "--threads", &threads, NULL, &err) || args_value(&a, "--emit", &emit, &err) ||
        args_value(&a, "--launcher", &launcher, &err) || args_calibration(&a, cal, &cal_path, &err)) goto bad;
    json = args_flag(&a, "--json");
    bool quiet = args_flag(&a, "--quiet");
    if (args_finish(&a, &err) || search_args_check_fixed(base, &lim, &err) ||
        search_constraints_for(base, &lim, &cons, &err)) goto bad;
    if (top < 1) { mp_fail(&err, "--top: must be >= 1, got %d", top); goto bad; }
    if (rank < 1) { mp_fail(&err, "--rank: must be >= 1, got %d", rank); goto bad; }
    if (threads < 0) { mp_fail(&err, "--threads: must be >= 0, got %d", threads); goto bad; }
    if (emit && strcmp(emit, "megatron") && strcmp(emit, "launch") && strcmp(emit, "plan")) {
        mp_fail(&err, "--emit: '%s' is not plan, megatron or launch", emit);
        goto bad;
    }
    if (launcher && strcmp(launcher, "torchrun") && strcmp(launcher, "srun")) {
        mp_fail(&err, "--launcher: '%s' is not torchrun or srun", launcher);
        goto bad;
    }
    if (launcher && (!emit || strcmp(emit, "launch"))) { mp_fail(&err, "--launcher: only with --emit launch"); goto bad; }
    if (emit && json) { mp_fail(&err, "--emit: cannot be combined with --json"); goto bad; }

    SearchOptions so = {.threads = threads, .cal = *cal};
    Progress prog = {.tty = isatty(2) != 0, .last = now_s()};
    if (!quiet) {
        so.progress = progress_stderr;
        so.progress_ctx = &prog;
        if (!prog.tty)
            fprintf(stderr, "search: %s on %d GPUs: enumerating and scoring plans\n", base->model.name, base->map.world);
    }
    SearchResult r;
    if (search_run(base, &cons, &so, &r, &err)) {
        if (so.progress && prog.tty) fprintf(stderr, "\r%60s\r", "");
        fprintf(stderr, "moeplan search: %s\n", err.msg);
        free(base);
        return !strncmp(err.msg, "flops:", 6) ? 2 : 1;   /* a convention that overcounts: the user's choice */
    }
    if (so.progress && prog.tty) fprintf(stderr, "\r%60s\r", "");
    else if (so.progress) fprintf(stderr, "search: done in %.2f s\n", r.seconds);
    int status = 0;
    if (r.num_ranked == 0) {
        if (r.space.count == 0)
            fprintf(stderr, "moeplan search: no plan: every candidate breaks a rule (the pruned line says which; "
                    "mg-* are Megatron-LM's checks, docs/planner.md)\n");
        else
            print_no_fit_advice(stderr, base, &lim, r.space.pruned[PRUNE_MEMORY]);
        print_counts(stderr, &r);
        search_result_free(&r);
        free(base);
        return 1;
    }
    if ((size_t)rank > r.num_ranked) {
        fprintf(stderr, "moeplan search: --rank: %d, but only %zu plans fit\n", rank, r.num_ranked);
        search_result_free(&r);
        free(base);
        return 2;
    }
    const ScoredPlan *chosen = &r.ranked[rank - 1];
    Plan *plan = malloc(sizeof *plan);
    if (!plan) { fprintf(stderr, "moeplan search: out of memory\n"); search_result_free(&r); free(base); return 1; }
    candidate_apply(base, &chosen->cand, plan);
    PlanWarnings warn = {0};
    plan_warnings_calibration(plan, *cal, &warn);
    plan_warnings_batch(plan, &warn);
    for (int i = 0; i < warn.count; i++) fprintf(stderr, "moeplan search: warning: %s\n", warn.line[i]);
    if (json) {
        char *text = search_json(base, &r, top, rank, cal_path, *cal, &warn, &err);
        if (text) printf("%s\n", text); else { fprintf(stderr, "moeplan search: %s\n", err.msg); status = 1; }
        free(text);
    } else if (emit) {
        char *text = !strcmp(emit, "plan") ? plan_to_json_string(plan)
                     : !strcmp(emit, "launch")
                         ? emit_launch_script(plan, launcher && !strcmp(launcher, "srun") ? LAUNCH_SRUN : LAUNCH_TORCHRUN)
                         : emit_megatron_flags(plan);
        if (text) printf("%s\n", text); else { fprintf(stderr, "moeplan search: out of memory\n"); status = 1; }
        free(text);
    } else {
        printf("search: %s on %s, %d GPUs, gbs %d, seq %d, %s, %s FLOPs convention\n",
               base->model.name, base->cluster.name, base->map.world, base->train.global_batch,
               base->train.seq_len,
               base->train.capacity_factor > 0 ? "token dropping" : "dropless",
               flops_convention_name(base->train.flops));
        print_header(stdout);
        for (int i = 0; i < top && (size_t)i < r.num_ranked; i++) {
            char label[24];
            snprintf(label, sizeof label, "%d", i + 1);
            print_row(stdout, label, &r.ranked[i], &base->model);
        }
        if (r.num_ranked > 1 && compare_print_winner(stdout, base, &r.ranked[0], &r.ranked[1], *cal, &err))
            fprintf(stderr, "moeplan search: %s\n", err.msg);
        if (r.best_coupled >= 0) {
            const ScoredPlan *cpl = &r.ranked[r.best_coupled];
            char label[24];
            snprintf(label, sizeof label, "%ld", r.best_coupled + 1);
            printf("best coupled plan (etp = tp):\n");
            print_row(stdout, label, cpl, &base->model);
            printf("folding gain: %+.1f MFU points, %.3fx step-time speed-up over the best coupled plan\n",
                   100 * (r.ranked[0].mfu - cpl->mfu), cpl->step_time_s / r.ranked[0].step_time_s);
        } else {
            printf("best coupled plan (etp = tp): none fits\n");
        }
        print_counts(stdout, &r);
    }
    free(plan);
    search_result_free(&r);
    free(base);
    return status;
bad:
    fprintf(stderr, "moeplan search: %s\n", err.msg);
    free(base);
    return 2;
}

int cmd_search(int argc, char **argv) {
    Calibration *cal = NULL;
    int rc = search_command(argc, argv, &cal);
    free(cal);
    return rc;
}
