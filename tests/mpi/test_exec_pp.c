/* test_exec_pp.c: pipeline parallelism of the executor's training step on
 * the CPU backend (float32, MPI).
 *
 * Every rank first trains the tiny model alone (a 1-rank mapping over
 * MPI_COMM_SELF) for STEPS Adam steps: the reference.  Then all ranks train
 * the same global batch under a pipelined mapping (PP2, PP4, PP2 with VPP2,
 * PP2 with an uneven split, PP2 with EP2, tied embeddings; with TP2 and
 * sequence parallelism: TP2.PP2.EP2, TP2.PP2.VPP2, TP2.PP2 tied; PP2.DP2.EP2
 * with the distributed optimizer) and check
 *   - the loss after every step against the reference's,
 *   - the gradients of the first step, element by element at the same
 *     full-tensor index (each rank holds only its stage's tensors),
 *   - the order in which each rank ran its forwards and backwards against
 *     the simulator's event list for the same plan (pipeline_simulate, which
 *     walks core/schedule.h as the executor does);
 * Every pipelined case runs twice: with the pipeline's batches waited for
 * only where their data are read (--overlap p2p) and blocking (none); both
 * match the reference and give the same losses, bit for bit.
 * And that the interleaved schedule's constraint on the micro-batches is
 * refused with a clear message.  Run with mpirun -np 1, 2, 4: the mappings
 * that fit the world size run.  Assertions use values reduced over all
 * ranks so every rank fails together; only rank 0 prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/sim_internal.h"
#include "tests/mpi/exec_test_harness.h"

enum { SEQ = 16, MBS = 1, GBS = 8, LAYERS = 4, STEPS = 3 };

static int world_rank, world_size;

typedef struct {
    const char *name;
    const char *model;
    int pp, vpp, ep;
    int first, last;        /* uneven split: first / last stage layers (0: even) */
    int tp;                 /* tensor parallelism with sequence parallelism (0: 1) */
    int dist;               /* 1: distributed optimizer (ZeRO-1) */
    int layers;             /* model layers (0: LAYERS) */
} Case;

static unsigned OVERLAP = 0;   /* TrainConfig.overlap of the plans made */

static void make_plan(Plan *p, const Case *c, int world)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny(c->model, &p->model), 0);
    p->model.num_layers = c->layers ? c->layers : LAYERS;   /* enough for 4 stages or 2 x 2 chunks */
    p->map.world = world; p->map.tp = world == 1 || c->tp < 1 ? 1 : c->tp; p->map.cp = 1;
    p->map.pp = world == 1 ? 1 : c->pp;
    p->map.vpp = world == 1 ? 1 : c->vpp;
    p->map.ep = world == 1 ? 1 : c->ep;
    p->map.etp = 1;
    if (world > 1) { p->first_stage_layers = c->first; p->last_stage_layers = c->last; }
    MpError err;
    int rc = mapping_resolve(&p->map, p->model.num_experts, &err);
    if (rc) fprintf(stderr, "mapping_resolve: %s\n", err.msg);
    assert_int_equal(rc, 0);
    p->train.seq_len = SEQ; p->train.micro_batch = MBS; p->train.global_batch = GBS;
    p->train.opt_sharding = world > 1 && c->dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
    p->train.overlap = OVERLAP;
}

static ExecOptions options(void)
{
    return exec_harness_options(STEPS);
}

typedef struct {
    ExecFullGrads grads;
    double loss[STEPS];
} Reference;

/* gradients of every tensor in full-tensor layout, by tensor id */
static void reference_run(const Case *c, Reference *r)
{
    memset(r, 0, sizeof *r);
    Plan plan;
    make_plan(&plan, c, 1);
    ExecOptions o = options();
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, &plan, &o, MPI_COMM_SELF);
    MpError err;
    for (int s = 0; s < STEPS; s++) {
        int rc = trainer_step(h.t, true, &r->loss[s], &err);
        if (rc) fprintf(stderr, "reference trainer_step: %s\n", err.msg);
        assert_int_equal(rc, 0);
        if (!s) exec_full_grads_of_reference(h.t, &r->grads);
    }
    exec_harness_trainer_destroy(&h);
}

static void reference_free(Reference *r)
{
    exec_full_grads_free(&r->grads);
}

/* 0 when rank `stage`'s executed operations are the simulator's list */
static int order_differs(const Trainer *t, int pp, int vpp, int m, int stage)
{
    int n = 2 * m * vpp;
    double f[64], b[64];
    for (int i = 0; i < pp * vpp; i++) { f[i] = 1; b[i] = 2; }
    PipeResult res;
    PipeEvent *ev = calloc((size_t)n, sizeof *ev);
    int nev = 0;
    MpError err;
    if (pipeline_simulate(pp, vpp, m, f, b, 0.1, vpp == 1, &res, stage, ev, n, &nev, &err)) {
        free(ev);
        return 1;
    }
    int bad = nev != n || t->num_executed != n;
    for (int i = 0; !bad && i < n; i++)
        bad = ev[i].fwd != t->executed[i].forward || ev[i].chunk != t->executed[i].chunk ||
              ev[i].mb != t->executed[i].microbatch;
    free(ev);
    return bad;
}

/* One run of case c under overlap words `overlap` against ref; the losses into loss_out. */
static void run_one(const Case *c, const Reference *ref, unsigned overlap, double *loss_out)
{
    OVERLAP = overlap;
    Plan plan;
    make_plan(&plan, c, world_size);
    OVERLAP = 0;
    ExecOptions o = options();
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, &plan, &o, MPI_COMM_WORLD);
    Trainer *t = h.t;
    MpError err;
    int rc;
    double loss[STEPS], worst = 0, loss_diff = 0;
    char worst_name[64] = "";
    int order_bad = 0;
    for (int s = 0; s < STEPS; s++) {
        rc = trainer_step(t, true, &loss[s], &err);
        if (rc) fprintf(stderr, "trainer_step: %s\n", err.msg);
        assert_int_equal(rc, 0);
        loss_diff = fmax(loss_diff, fabs(loss[s] - ref->loss[s]));
        order_bad |= order_differs(t, plan.map.pp, plan.map.vpp, t->sched.m, t->stage);
        if (s) continue;
        /* distributed optimizer: each rank holds the reduced sum of its
         * shard only; the shards back to the full gradient arenas */
        model_gather_grads(t->model);
        worst = exec_local_grads_rel_err(t, &ref->grads, worst_name, sizeof worst_name);
    }
    int m = t->sched.m, slots = 0, local = model_num_params(t->model), total, overlapped = t->pp_overlapped, all_overlapped;
    for (int k = 0; k < plan.map.vpp; k++) slots += model_chunk_slots(t->model, k);
    exec_harness_trainer_destroy(&h);

    double all_worst = exec_harness_max(worst), all_loss_diff = exec_harness_max(loss_diff);
    int all_order_bad;
    MPI_Allreduce(&order_bad, &all_order_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&overlapped, &all_overlapped, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (world_rank == 0)
        printf("  %-22s %-10s tp %d pp %d vpp %d dp %d ep %d %s m %d: losses %.6f %.6f %.6f (ref %.6f %.6f %.6f), "
               "worst grad rel err %.2e (%s), rank 0 holds %d of %d tensors in %d contexts, order %s, "
               "%d batches with compute behind them\n",
               c->name, overlap ? "overlapped" : "blocking", plan.map.tp, plan.map.pp, plan.map.vpp, plan.map.dp,
               plan.map.ep, opt_sharding_name(plan.train.opt_sharding), m, loss[0], loss[1], loss[2],
               ref->loss[0], ref->loss[1], ref->loss[2], all_worst, worst_name, local, total, slots,
               all_order_bad ? "DIFFERS" : "= simulator's", all_overlapped);
    /* float32 summed in another order (the aux losses per stage): ~1e-6 */
    assert_true(all_loss_diff < 1e-5);
    assert_true(all_worst < 1e-4);
    assert_int_equal(all_order_bad, 0);
    /* blocking: every batch waited for where it starts; overlapped: some
     * batch (the first stage's sends before a forward that receives
     * nothing, at least) had an operation run behind it */
    if (overlap) assert_true(all_overlapped > 0);
    else assert_int_equal(all_overlapped, 0);
    memcpy(loss_out, loss, sizeof loss);
}

static void run_case(void **state)
{
    const Case *c = *state;
    Reference ref;
    reference_run(c, &ref);
    double loss[2][STEPS];
    run_one(c, &ref, 0, loss[0]);
    if (world_size > 1) {
        run_one(c, &ref, OVERLAP_P2P | OVERLAP_CP, loss[1]);
        int differ = memcmp(loss[0], loss[1], sizeof loss[0]) != 0, any;
        MPI_Allreduce(&differ, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        assert_int_equal(any, 0);
    }
    reference_free(&ref);
}

/* vpp 2 with a number of micro-batches per pipeline that pp does not
 * divide: refused with Megatron-LM's constraint named */
static void test_interleaved_constraint(void **state)
{
    (void)state;
    Case c = {"constraint", "tiny-moe", 2, 2, 1, 0, 0, 1, 0, 0};
    Plan plan;
    make_plan(&plan, &c, world_size);
    plan.train.global_batch = 3;
    ExecTestComms tc;
    exec_test_comms_build(&plan.map, MPI_COMM_WORLD, &tc);
    ExecOptions o = options();
    Trainer *t = NULL;
    MpError err;
    assert_int_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), -1);
    exec_test_comms_free(&tc);
    if (world_rank == 0) printf("  gbs 3, pp 2, vpp 2: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "multiple of pp 2"));
    assert_non_null(strstr(err.msg, "interleaved"));
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    /* world: the world size each case runs at */
    static const struct { int world; Case c; } cases[] = {
        {1, {"no pipeline", "tiny-moe", 1, 1, 1, 0, 0, 1, 0, 0}},
        {2, {"PP2", "tiny-moe", 2, 1, 1, 0, 0, 1, 0, 0}},
        {2, {"PP2 VPP2", "tiny-moe", 2, 2, 1, 0, 0, 1, 0, 0}},
        {2, {"PP2 uneven 1+3", "tiny-moe", 2, 1, 1, 1, 3, 1, 0, 0}},
        {2, {"PP2 tied embeddings", "tiny-moe-tied", 2, 1, 1, 0, 0, 1, 0, 0}},
        {2, {"PP2 shared expert", "tiny-moe-shared", 2, 1, 1, 0, 0, 1, 0, 0}},
        {4, {"PP4", "tiny-moe", 4, 1, 1, 0, 0, 1, 0, 0}},
        {4, {"PP4 tied embeddings", "tiny-moe-tied", 4, 1, 1, 0, 0, 1, 0, 0}},
        {4, {"PP2 EP2", "tiny-moe", 2, 1, 2, 0, 0, 1, 0, 0}},
        {4, {"PP2 VPP2 EP2", "tiny-moe", 2, 2, 2, 0, 0, 1, 0, 0}},
        /* 4 stages x 2 chunks (8 layers): the interleaved exchanges with
         * distinct next and previous stages */
        {4, {"PP4 VPP2", "tiny-moe", 4, 2, 1, 0, 0, 1, 0, 8}},
        {4, {"PP2 DP2 uneven 3+1", "tiny-moe-shared", 2, 1, 1, 3, 1, 1, 0, 0}},
        /* TP and PP together: a stage sends and receives its
         * sequence-parallel shard (T / tp tokens); the vocabulary-parallel
         * embedding, output layer and tied-embedding sum cover the rank's
         * vocabulary rows; the distributed optimizer shards each stage's
         * arenas over its own DP / EDP groups */
        {4, {"TP2 PP2 EP2", "tiny-moe", 2, 1, 2, 0, 0, 2, 0, 0}},
        {4, {"TP2 PP2 VPP2", "tiny-moe", 2, 2, 1, 0, 0, 2, 0, 0}},
        {4, {"TP2 PP2 tied embeddings", "tiny-moe-tied", 2, 1, 1, 0, 0, 2, 0, 0}},
        {4, {"PP2 DP2 EP2 distributed", "tiny-moe", 2, 1, 2, 0, 0, 1, 1, 0}},
    };
    struct CMUnitTest tests[32];
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].world == world_size)
            tests[n++] = (struct CMUnitTest){cases[i].c.name, run_case, NULL, NULL, (void *)&cases[i].c};
    if (world_size == 2) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_interleaved_constraint);
    return exec_harness_run_group("executor_pipeline", tests, n);
}
