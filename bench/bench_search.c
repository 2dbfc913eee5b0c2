/* bench_search.c: the full search for Mixtral 8x22B on 1024 H100s at GBS
 * 1024 (seq 4096; target: under 2 s on the 2-core CI machine), then the same
 * at 16,384 GPUs.  Prints wall time, candidates, simulations and plans
 * simulated per second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "planner/search.h"

static int run(int gpus, int gbs) {
    Plan *b = calloc(1, sizeof *b);
    MpError err;
    if (!b) return 1;
    train_config_default(&b->train);
    snprintf(b->model_ref, sizeof b->model_ref, "mixtral-8x22b");
    snprintf(b->cluster_ref, sizeof b->cluster_ref, "dgx-h100");
    if (model_lookup("mixtral-8x22b", &b->model, &err) || cluster_lookup("dgx-h100", &b->cluster, &err)) {
        fprintf(stderr, "bench_search: %s\n", err.msg);
        free(b);
        return 1;
    }
    b->map = (Mapping){.world = gpus, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    b->train.global_batch = gbs;
    b->train.seq_len = 4096;
    SearchConstraints c;
    space_constraints_default(b, &c);
    SearchOptions o = {0};
    SearchResult r;
    if (search_run(b, &c, &o, &r, &err)) { fprintf(stderr, "bench_search: %s\n", err.msg); free(b); return 1; }
    char best[128] = "none";
    if (r.num_ranked) candidate_format(&r.ranked[0].cand, best, sizeof best);
    printf("mixtral-8x22b dgx-h100 %5d GPUs gbs %d: %.3f s on %d threads, %lld enumerated, %zu candidates, "
           "%lld simulated, %zu fit; %.0f plans simulated/s; best %s (MFU %.1f%%)\n",
           gpus, gbs, r.seconds, r.threads, r.space.enumerated, r.space.count, r.simulated, r.num_ranked,
           r.seconds > 0 ? r.simulated / r.seconds : 0.0, best, r.num_ranked ? 100 * r.ranked[0].mfu : 0.0);
    search_result_free(&r);
    free(b);
    return 0;
}

int main(void) {
    int rc = run(1024, 1024);
    rc |= run(16384, 1024);
    return rc;
}
