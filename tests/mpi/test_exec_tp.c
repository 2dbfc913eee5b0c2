/* test_exec_tp.c: parallel invariance of the executor's step with tensor
 * parallelism (sequence parallelism, vocabulary-parallel embedding and loss,
 * GQA heads split or KV groups replicated), folded with EP / ETP / DP, on the
 * CPU backend (float32, MPI collectives).
 *
 * Every rank first runs the tiny model alone (a 1-rank mapping over
 * MPI_COMM_SELF) for STEPS Adam steps: the reference.  Then all ranks run the
 * same global batches under the parallel mapping, and
 *   - after each step the loss equals the reference's (FP32 tolerance);
 *   - after the first step's backward (gradients reduced, before Adam) every
 *     parameter is gathered back to its full tensor (each rank places its
 *     shard at its full-tensor indices; MPI_Allreduce sums the values and
 *     counts how many ranks hold each element; replicas hold the same value)
 *     and compared with the reference's full gradient; every element must be
 *     held by some rank.
 * Run with mpirun -np 1, 2, 4: the mappings that fit the world size run.
 * Assertions use values reduced over all ranks so every rank fails together.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/mpi/exec_test_harness.h"

enum { SEQ = 16, MBS = 1, GBS = 4, STEPS = 3 };

static int world_rank, world_size;

typedef struct {
    const char *model;
    int tp, ep, etp;
    int world;            /* ranks the case needs */
    int dist;             /* 1: distributed optimizer (ZeRO-1) */
} Case;

static void make_plan(Plan *p, const char *model, int world, int tp, int ep, int etp, int dist)
{
    exec_harness_tiny_plan(p, model, world, tp, 1, 1, ep, etp, SEQ, MBS, GBS, dist);
}

static ExecOptions options(void)
{
    return exec_harness_options(STEPS);
}

static void run_case(void **state)
{
    const Case *c = *state;
    Plan ref_plan, plan;
    make_plan(&ref_plan, c->model, 1, 1, 1, 1, 0);
    make_plan(&plan, c->model, world_size, c->tp, c->ep, c->etp, c->dist);
    ExecOptions o = options();
    ExecInvariance v;
    exec_harness_invariance(c->model, &ref_plan, &plan, &o, &v);
    if (world_rank == 0)
        printf("  %-16s tp %d dp %d ep %d etp %d edp %d opt %s: ", c->model, plan.map.tp, plan.map.dp,
               plan.map.ep, plan.map.etp, plan.map.edp, opt_sharding_name(plan.train.opt_sharding));
    exec_invariance_check(&v, 1e-4);
    exec_invariance_free(&v);
}

/* Bad TP splits are refused before any work, naming the field. */
static void test_refusals(void **state)
{
    (void)state;
    Plan plan;
    make_plan(&plan, "tiny-moe", 1, 1, 1, 1, 0);
    plan.map.tp = 3;   /* 4 heads, vocab 128 */
    ExecTestComms tc;
    Plan one;
    make_plan(&one, "tiny-moe", 1, 1, 1, 1, 0);
    exec_test_comms_build(&one.map, MPI_COMM_SELF, &tc);
    tc.comms.size_of[GROUP_TP] = 3;
    ExecOptions o = options();
    Trainer *t;
    MpError err;
    assert_int_not_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    assert_non_null(strstr(err.msg, "tp: 3 does not divide num_heads 4"));
    exec_test_comms_free(&tc);
}

/* TP2 (with EP2 when 4 ranks) trains: the loss falls on the learnable task. */
static void test_loss_falls(void **state)
{
    (void)state;
    Plan plan;
    make_plan(&plan, "tiny-moe", world_size, 2, world_size >= 4 ? 2 : 1, 1, 1);
    ExecOptions o = options();
    o.steps = 200; o.warmup = 1; o.lr = 1e-2;
    ExecStepStats st;
    exec_harness_train(&plan, &o, &st);
    if (world_rank == 0)
        printf("  tp 2: loss step 1 %.4f, step 100 %.4f, step 200 %.4f\n", st.losses[0], st.losses[99],
               st.losses[199]);
    double last = 0;
    for (int i = 190; i < 200; i++) last += st.losses[i] / 10;
    assert_true(st.losses[0] > 4.5);
    assert_true(last < 0.5);
    free(st.losses);
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    static const Case cases[] = {
        {"tiny-moe", 1, 1, 1, 1, 0}, {"tiny-moe", 1, 1, 1, 1, 1},
        /* 2 ranks: TP2; TP2 with EP2.ETP1 (EP spans the TP ranks); dense
         * layer and shared expert under TP; DP2.EP2 with the distributed
         * optimizer (dense arena sharded over DP2) */
        {"tiny-moe", 2, 1, 1, 2, 0}, {"tiny-moe", 2, 2, 1, 2, 0}, {"tiny-moe-shared", 2, 2, 1, 2, 0},
        {"tiny-moe", 2, 1, 2, 2, 0}, {"tiny-moe", 1, 2, 1, 2, 1}, {"tiny-moe-shared", 1, 1, 1, 2, 1},
        /* 4 ranks: TP4 (4 heads, 2 KV groups: each group replicated on 2
         * ranks); TP2 with ETP2.EP2; TP2.DP2 with EP4 and the distributed
         * optimizer; TP4 with EP4 on the shared model; TP2.DP2 with EP2
         * (EDP2: both arenas sharded) and DP4.EP2 distributed */
        {"tiny-moe", 4, 1, 1, 4, 0}, {"tiny-moe", 2, 2, 2, 4, 0}, {"tiny-moe", 2, 4, 1, 4, 1},
        {"tiny-moe-shared", 4, 4, 1, 4, 0}, {"tiny-moe-shared", 2, 2, 1, 4, 1},
        {"tiny-moe", 1, 2, 1, 4, 1},
    };
    struct CMUnitTest tests[32];
    char names[32][96];
    int n = 0;
    if (world_size == 1) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_refusals);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Case *c = &cases[i];
        if (c->world != world_size) continue;
        snprintf(names[n], sizeof names[n], "invariance %s tp%d ep%d etp%d%s (np %d)", c->model, c->tp,
                 c->ep, c->etp, c->dist ? " distributed optimizer" : "", world_size);
        tests[n] = (struct CMUnitTest){names[n], run_case, NULL, NULL, (void *)c};
        n++;
    }
    if (world_size >= 2) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_loss_falls);
    return exec_harness_run_group("executor_tp", tests, n);
}
