/* test_exec_cp.c: parallel invariance of the executor's step with context
 * parallelism (load-balanced ring attention: each sequence in 2*CP chunks,
 * CP rank r holding chunks r and 2*CP-1-r), folded with TP, DP (with the
 * distributed optimizer) and EP, on the CPU backend (float32, MPI).
 *
 * Every rank first runs the tiny model alone (a 1-rank mapping over
 * MPI_COMM_SELF) for STEPS Adam steps: the reference.  Then all ranks run the
 * same global batches under the parallel mapping, and
 *   - after each step the loss equals the reference's (FP32 tolerance);
 *   - after the first step's backward (gradients reduced over DP*CP, before
 *     Adam) every parameter gathered back to its full tensor equals the
 *     reference's full gradient.
 * Each parallel case runs twice: with the ring's hops (and the pipeline's
 * batches) overlapped with compute (--overlap cp,p2p) and blocking (none);
 * both match the reference, and their losses are the same bits (the two
 * paths do the same arithmetic, only the waits move).
 * Cases at a sequence where each chunk is a few tokens and one where it is
 * about a hundred.  Run with mpirun -np 1, 2, 4 (and 8: all five dimensions
 * with the distributed optimizer): the cases that fit run.
 * Assertions use values reduced over all ranks so every rank fails together.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/mpi/exec_test_harness.h"

enum { MBS = 1, GBS = 4, STEPS = 3 };

static int world_rank, world_size;

typedef struct {
    const char *model;
    int tp, cp, ep, etp;
    int world;            /* ranks the case needs */
    int dist;             /* 1: distributed optimizer (ZeRO-1) */
    int seq;              /* sequence length: chunks of seq / (2 cp) tokens */
    int pp;               /* pipeline stages (0: 1) */
} Case;

static int PP = 1;

static int SEQ = 16;

static unsigned OVERLAP = 0;   /* TrainConfig.overlap of the plans made */

static void make_plan(Plan *p, const char *model, int world, int tp, int cp, int ep, int etp, int dist)
{
    exec_harness_tiny_plan(p, model, world, tp, cp, PP, ep, etp, SEQ, MBS, GBS, dist);
    p->train.overlap = OVERLAP;
}

static ExecOptions options(void)
{
    return exec_harness_options(STEPS);
}

static void run_case(void **state)
{
    const Case *c = *state;
    Plan ref_plan, plan[2];
    SEQ = c->seq;
    PP = 1;
    OVERLAP = 0;
    make_plan(&ref_plan, c->model, 1, 1, 1, 1, 1, 0);
    PP = c->pp > 1 ? c->pp : 1;
    /* plan[0] blocking, plan[1] overlapped (the ring's hops and the pipeline
     * batches behind compute) */
    for (int v = 0; v < 2; v++) {
        OVERLAP = v ? OVERLAP_CP | OVERLAP_P2P : 0;
        make_plan(&plan[v], c->model, world_size, c->tp, c->cp, c->ep, c->etp, c->dist);
    }
    OVERLAP = 0;
    ExecOptions o = options();
    ExecInvariance inv[2];
    for (int v = 0; v < 2; v++) {
        exec_harness_invariance(c->model, &ref_plan, &plan[v], &o, &inv[v]);
        const Mapping *m = &plan[v].map;
        if (world_rank == 0)
            printf("  %-16s seq %d tp %d cp %d pp %d dp %d ep %d etp %d edp %d opt %s, %s: ", c->model, SEQ, m->tp,
                   m->cp, m->pp, m->dp, m->ep, m->etp, m->edp, opt_sharding_name(plan[v].train.opt_sharding),
                   v ? "overlapped" : "blocking");
        exec_invariance_check(&inv[v], 1e-4);
    }
    /* the same arithmetic on both paths: the same losses, bit for bit */
    int differ = 0, any_differ;
    for (int s = 0; s < inv[0].steps; s++) differ |= inv[0].par.loss[s] != inv[1].par.loss[s];
    MPI_Allreduce(&differ, &any_differ, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    assert_int_equal(any_differ, 0);
    for (int v = 0; v < 2; v++) exec_invariance_free(&inv[v]);
}

/* A sequence that does not cut into 2*cp chunks is refused before any work. */
static void test_refusals(void **state)
{
    (void)state;
    Plan plan;
    SEQ = 18;
    PP = 1;
    make_plan(&plan, "tiny-moe", world_size, 1, 2, 1, 1, 0);
    ExecTestComms tc;
    exec_test_comms_build(&plan.map, MPI_COMM_WORLD, &tc);
    ExecOptions o = options();
    Trainer *t;
    MpError err;
    assert_int_not_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    assert_non_null(strstr(err.msg, "cp: 2: seq_len 18 is not a multiple of 2*cp = 4"));
    exec_test_comms_free(&tc);
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    /* model, tp, cp, ep, etp, world, distributed optimizer, seq */
    static const Case cases[] = {
        /* 2 ranks: CP2 with chunks of 4 and of 96 tokens; CP2 with EP2
         * (the experts' EP group spans the CP ranks) */
        {"tiny-moe", 1, 2, 1, 1, 2, 0, 16, 1}, {"tiny-moe", 1, 2, 1, 1, 2, 0, 384, 1},
        {"tiny-moe", 1, 2, 2, 1, 2, 1, 16, 1},
        /* 4 ranks: CP4 with chunks of 2 and of 48 tokens; CP2.DP2 with the
         * distributed optimizer (sharded over DP*CP); TP2.CP2 with EP4.ETP1 */
        {"tiny-moe", 1, 4, 1, 1, 4, 0, 16, 1}, {"tiny-moe", 1, 4, 1, 1, 4, 0, 384, 1},
        {"tiny-moe", 1, 2, 1, 1, 4, 1, 16, 1}, {"tiny-moe", 2, 2, 4, 1, 4, 0, 16, 1},
        {"tiny-moe", 2, 2, 4, 1, 4, 1, 128, 1},
        /* 4 ranks: CP2.PP2 */
        {"tiny-moe", 1, 2, 1, 1, 4, 0, 16, 2},
        /* 8 ranks: all five dimensions, TP2.CP2.PP2 attention with EP4.ETP1
         * experts, and the distributed optimizer (over DP*CP) */
        {"tiny-moe", 2, 2, 4, 1, 8, 1, 16, 2},
    };
    struct CMUnitTest tests[32];
    char names[32][112];
    int n = 0;
    if (world_size == 2) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_refusals);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Case *c = &cases[i];
        if (c->world != world_size) continue;
        snprintf(names[n], sizeof names[n], "invariance %s seq %d tp%d cp%d pp%d ep%d etp%d%s (np %d)", c->model,
                 c->seq, c->tp, c->cp, c->pp > 1 ? c->pp : 1, c->ep, c->etp, c->dist ? " distributed optimizer" : "", world_size);
        tests[n] = (struct CMUnitTest){names[n], run_case, NULL, NULL, (void *)c};
        n++;
    }
    return exec_harness_run_group("executor_cp", tests, n);
}
