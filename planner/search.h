/* search.h: score every candidate of the search space with the simulator,
 * in parallel, and rank them. */
#ifndef MOEPLAN_SEARCH_H
#define MOEPLAN_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "../simulator/simulate.h"
#include "space.h"

typedef struct {
    Candidate cand;
    double step_time_s;
    double mfu;
    double tflops_per_gpu;
    double tokens_per_s_per_gpu;
    double peak_memory_bytes;
    double memory_capacity_bytes;
    char dominant[96];
    long order;                 /* enumeration index: breaks ties in the ranking */
} ScoredPlan;

/* Called from one worker thread only (never concurrently): done of total
 * candidates handled so far (estimated from that worker's share). */
typedef void (*SearchProgressFn)(void *ctx, size_t done, size_t total);

typedef struct {
    const Calibration *cal;     /* NULL: simulator defaults */
    int threads;                /* 0: the machine's online cores */
    SearchProgressFn progress;  /* NULL: none */
    void *progress_ctx;
} SearchOptions;

typedef struct {
    CandidateList space;        /* enumeration, with memory/dominated counts filled in */
    ScoredPlan *ranked;         /* plans that fit, fastest first */
    size_t num_ranked;
    long long simulated;        /* simulate_step calls */
    long long no_fit;           /* simulated but did not fit (== space.pruned[PRUNE_MEMORY]) */
    long best_coupled;          /* index into ranked of the best plan with etp == tp; -1 none */
    double seconds;             /* wall time of the whole search */
    char invalid_example[MP_ERROR_LEN];
    int threads;
} SearchResult;

/* Enumerates (space.h), scores, ranks.  A candidate that plan_validate or
 * the simulator rejects is counted as PRUNE_INVALID and its first message
 * kept in invalid_example (it would mean the enumeration and the validator
 * disagree).  Recomputation
 * is escalated per point: none first, selective only when none does not fit,
 * full only when selective does not fit either (recomputation only adds
 * time, so a plan that fits without it dominates); skipped plans count as
 * PRUNE_DOMINATED. */
int search_run(const Plan *base, const SearchConstraints *c, const SearchOptions *o,
               SearchResult *out, MpError *err);
void search_result_free(SearchResult *r);

/* Simulates one plan and fills a ScoredPlan (fits reported separately). */
int search_score_plan(const Plan *p, const Calibration *cal, SimResult *scratch,
                      ScoredPlan *out, bool *fits, MpError *err);

#endif
