/* search.c: parallel scoring and ranking of the search space (search.h).
 *
 * Work is split by "points": consecutive candidates that share mapping,
 * micro-batch and pipeline split and differ only in recomputation and
 * optimizer sharding (space.c emits them together).  Worker w takes points
 * w, w + T, w + 2T, ... and writes only the result slots of its own
 * candidates, so workers share no mutable state. */
#include "search.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SLOT_SKIPPED = 0, SLOT_FITS, SLOT_NO_FIT, SLOT_DOMINATED, SLOT_INVALID };

typedef struct {
    unsigned char state;
    ScoredPlan score;
} Slot;

typedef struct {
    const Plan *base;
    const CandidateList *space;
    const size_t *point_start;  /* [num_points + 1] */
    size_t num_points;
    const SearchOptions *opt;
    int worker, workers;
    Slot *slots;                /* shared array; this worker writes its own points only */
    long long simulated;
    char invalid_msg[MP_ERROR_LEN];
    char refused_msg[MP_ERROR_LEN]; /* first MFU refusal (simulate_step): stops the search */
    int failed;                 /* out of memory */
} Worker;

int search_score_plan(const Plan *p, const Calibration *cal, SimResult *scratch,
                      ScoredPlan *out, bool *fits, MpError *err) {
    if (plan_validate(p, err)) return -1;
    SimOptions so = {0};
    if (simulate_step(p, cal, &so, scratch, err)) return -1;
    candidate_from_plan(p, &out->cand);
    out->step_time_s = scratch->step_time_s;
    out->mfu = scratch->mfu;
    out->tflops_per_gpu = scratch->tflops_per_gpu;
    out->tokens_per_s_per_gpu = scratch->tokens_per_s_per_gpu;
    out->peak_memory_bytes = scratch->peak_memory_bytes;
    out->memory_capacity_bytes = scratch->memory_capacity_bytes;
    memcpy(out->dominant, scratch->dominant, sizeof out->dominant);
    out->dominant[sizeof out->dominant - 1] = 0;
    *fits = scratch->fits;
    return 0;
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    Plan *plan = malloc(sizeof *plan);
    SimResult *sim = malloc(sizeof *sim);
    if (!plan || !sim) { free(plan); free(sim); w->failed = 1; return NULL; }
    size_t done = 0, total = w->space->count;
    for (size_t pt = (size_t)w->worker; pt < w->num_points; pt += (size_t)w->workers) {
        size_t b = w->point_start[pt], e = w->point_start[pt + 1];
        /* per optimizer sharding: escalate recomputation none -> selective -> full */
        for (int os = 0; os < 3; os++) {
            bool fitted = false;
            for (int rc = 0; rc < 3; rc++) {
                for (size_t i = b; i < e; i++) {
                    const Candidate *c = &w->space->items[i];
                    if (c->opt_sharding != os || c->recompute != rc) continue;
                    Slot *s = &w->slots[i];
                    if (fitted) { s->state = SLOT_DOMINATED; continue; }
                    candidate_apply(w->base, c, plan);
                    MpError err;
                    bool fits = false;
                    w->simulated++;
                    if (search_score_plan(plan, w->opt->cal, sim, &s->score, &fits, &err)) {
                        s->state = SLOT_INVALID;
                        if (!w->invalid_msg[0]) memcpy(w->invalid_msg, err.msg, sizeof w->invalid_msg);
                        /* an MFU above 100% (an overcounting convention or a cost-model bug) is not a
                         * property of this candidate: dropping it would rank the others as if it were */
                        if (!w->refused_msg[0] && (!strncmp(err.msg, "flops:", 6) || !strncmp(err.msg, "internal error", 14)))
                            memcpy(w->refused_msg, err.msg, sizeof w->refused_msg);
                        continue;
                    }
                    s->score.cand = *c;
                    s->score.order = (long)i;
                    s->state = fits ? SLOT_FITS : SLOT_NO_FIT;
                    if (fits) fitted = true;
                }
            }
        }
        done += e - b;
        if (w->worker == 0 && w->opt->progress && (pt / (size_t)w->workers) % 64 == 0) {
            size_t est = done * (size_t)w->workers;
            w->opt->progress(w->opt->progress_ctx, est < total ? est : total, total);
        }
    }
    free(plan);
    free(sim);
    return NULL;
}

static int cmp_scored(const void *a, const void *b) {
    const ScoredPlan *x = a, *y = b;
    if (x->step_time_s < y->step_time_s) return -1;
    if (x->step_time_s > y->step_time_s) return 1;
    return (x->order > y->order) - (x->order < y->order);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static bool same_point(const Candidate *a, const Candidate *b) {
    return a->map.tp == b->map.tp && a->map.cp == b->map.cp && a->map.pp == b->map.pp &&
           a->map.vpp == b->map.vpp && a->map.etp == b->map.etp && a->map.ep == b->map.ep &&
           a->mbs == b->mbs && a->first_stage_layers == b->first_stage_layers &&
           a->last_stage_layers == b->last_stage_layers;
}

int search_run(const Plan *base, const SearchConstraints *c, const SearchOptions *o,
               SearchResult *out, MpError *err) {
    memset(out, 0, sizeof *out);
    out->best_coupled = -1;
    double t0 = now_seconds();
    if (space_enumerate(base, c, &out->space, err)) return -1;
    CandidateList *sp = &out->space;
    size_t n = sp->count;
    Slot *slots = calloc(n ? n : 1, sizeof *slots);
    size_t *starts = malloc((n + 1) * sizeof *starts);
    if (!slots || !starts) { free(slots); free(starts); return mp_fail(err, "search: out of memory for %zu candidates", n); }
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || !same_point(&sp->items[i], &sp->items[i - 1])) starts[np++] = i;
    starts[np] = n;

    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if ((size_t)threads > np && np > 0) threads = (int)np;
    out->threads = threads;
    Worker workers[64];
    pthread_t tids[64];
    for (int t = 0; t < threads; t++) {
        workers[t] = (Worker){.base = base, .space = sp, .point_start = starts, .num_points = np,
                              .opt = o, .worker = t, .workers = threads, .slots = slots};
    }
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[t], NULL, worker_main, &workers[t])) break;
        started = t;
    }
    /* worker 0 runs here; any worker that failed to start is run here too */
    worker_main(&workers[0]);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
    for (int t = started + 1; t < threads; t++) worker_main(&workers[t]);

    int failed = 0;
    for (int t = 0; t < threads; t++) {
        out->simulated += workers[t].simulated;
        failed |= workers[t].failed;
        if (!out->invalid_example[0] && workers[t].invalid_msg[0])
            memcpy(out->invalid_example, workers[t].invalid_msg, sizeof out->invalid_example);
    }
    free(starts);
    if (failed) { free(slots); return mp_fail(err, "search: out of memory in a worker"); }
    for (int t = 0; t < threads; t++)
        if (workers[t].refused_msg[0]) {
            mp_fail(err, "%s", workers[t].refused_msg);
            free(slots);
            search_result_free(out);
            return -1;
        }
    size_t fit = 0;
    for (size_t i = 0; i < n; i++) {
        switch (slots[i].state) {
        case SLOT_FITS: fit++; break;
        case SLOT_NO_FIT: sp->pruned[PRUNE_MEMORY]++; break;
        case SLOT_DOMINATED: sp->pruned[PRUNE_DOMINATED]++; break;
        case SLOT_INVALID: sp->pruned[PRUNE_INVALID]++; break;
        default: break;
        }
    }
    out->no_fit = sp->pruned[PRUNE_MEMORY];
    out->ranked = malloc((fit ? fit : 1) * sizeof *out->ranked);
    if (!out->ranked) { free(slots); return mp_fail(err, "search: out of memory for %zu ranked plans", fit); }
    for (size_t i = 0; i < n; i++)
        if (slots[i].state == SLOT_FITS) out->ranked[out->num_ranked++] = slots[i].score;
    free(slots);
    /* equal step times keep enumeration order (cmp_scored's tie-break) */
    qsort(out->ranked, out->num_ranked, sizeof *out->ranked, cmp_scored);
    for (size_t i = 0; i < out->num_ranked; i++)
        if (out->ranked[i].cand.map.etp == out->ranked[i].cand.map.tp) { out->best_coupled = (long)i; break; }
    out->seconds = now_seconds() - t0;
    return 0;
}

void search_result_free(SearchResult *r) {
    candidate_list_free(&r->space);
    free(r->ranked);
    r->ranked = NULL;
    r->num_ranked = 0;
}
