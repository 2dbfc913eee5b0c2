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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor/train.h"
#include "tests/mpi/exec_test_comms.h"

enum { MBS = 1, GBS = 4, STEPS = 3, MAX_UID = 1024 };

static int world_rank, world_size;

extern void __lsan_disable(void) __attribute__((weak));

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
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny(model, &p->model), 0);
    p->map.world = world; p->map.tp = tp; p->map.cp = cp; p->map.pp = PP; p->map.vpp = 1;
    p->map.ep = ep; p->map.etp = etp;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = SEQ; p->train.micro_batch = MBS; p->train.global_batch = GBS;
    p->train.opt_sharding = dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
    p->train.overlap = OVERLAP;
}

static ExecOptions options(void)
{
    ExecOptions o;
    memset(&o, 0, sizeof o);
    o.backend = EXEC_BACKEND_CPU;
    o.steps = STEPS; o.seed = 1234; o.lr = 1e-2;
    return o;
}

/* full tensors of one run: g[uid] [numel], and the losses of each step */
typedef struct {
    float *g[MAX_UID];
    size_t n[MAX_UID];
    double loss[STEPS];
} Run;

static void run_free(Run *r)
{
    for (int i = 0; i < MAX_UID; i++) free(r->g[i]);
}

/* the full size of the tensor uid as seen from a 1-rank model */
static void reference_sizes(const char *model, size_t *sizes)
{
    Plan plan;
    make_plan(&plan, model, 1, 1, 1, 1, 1, 0);
    ExecTestComms tc;
    exec_test_comms_build(&plan.map, MPI_COMM_SELF, &tc);
    ExecOptions o = options();
    Trainer *t;
    MpError err;
    assert_int_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        size_t full = pi->kind == PARAM_W13 ? pi->n / 2 : pi->n;
        sizes[pi->uid] = full;
        if (pi->kind == PARAM_W13) sizes[pi->uid + 1] = full;
    }
    trainer_destroy(t);
    exec_test_comms_free(&tc);
}

/* Runs STEPS steps of plan on comm; after the first backward, gathers every
 * gradient to its full tensor over comm (values and holder counts summed). */
static void run(const Plan *plan, MPI_Comm comm, const size_t *sizes, Run *r, long *missing)
{
    memset(r, 0, sizeof *r);
    ExecTestComms tc;
    exec_test_comms_build(&plan->map, comm, &tc);
    ExecOptions o = options();
    Trainer *t;
    MpError err;
    int rc = trainer_create(plan, &o, &tc.comms, &t, &err);
    if (rc) fprintf(stderr, "trainer_create: %s\n", err.msg);
    assert_int_equal(rc, 0);
    double loss;
    assert_int_equal(trainer_step(t, false, &loss, &err), 0);   /* gradients of step 1 */
    /* the Adam moments are sharded when the optimizer is distributed over
     * a group of more than one rank */
    if (plan->train.opt_sharding == OPT_SHARD_DISTRIBUTED && (plan->map.dp * plan->map.cp > 1 || plan->map.edp > 1))
        assert_true(model_optimizer_elems(t->model) < model_local_params(t->model));
    else
        assert_true(model_optimizer_elems(t->model) == model_local_params(t->model));
    /* distributed optimizer: each rank holds the reduced sum of its shard
     * only; the shards back to the full gradient arenas */
    model_gather_grads(t->model);
    float *cnt[MAX_UID] = {0};
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        float *host = malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, host);
        for (size_t i = 0; i < pi->n; i++) {
            int uid; size_t flat;
            model_param_global_index(t->model, p, i, &uid, &flat);
            assert_true(uid >= 0 && uid < MAX_UID && sizes[uid] > 0);
            if (!r->g[uid]) {
                r->g[uid] = calloc(sizes[uid], sizeof(float));
                cnt[uid] = calloc(sizes[uid], sizeof(float));
                r->n[uid] = sizes[uid];
            }
            assert_true(flat < r->n[uid]);
            r->g[uid][flat] += host[i];
            cnt[uid][flat] += 1;
        }
        free(host);
    }
    /* every rank holds some shard of every tensor in these models (the
     * expert arenas too: EP x ETP x EDP covers all ranks) */
    *missing = 0;
    for (int u = 0; u < MAX_UID; u++) {
        /* with pp > 1 a stage holds only its own layers' tensors: the
         * others join the sums with zero counts */
        int have = r->g[u] != NULL, all, any;
        MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm);
        MPI_Allreduce(&have, &any, 1, MPI_INT, MPI_MAX, comm);
        if (plan->map.pp <= 1) assert_int_equal(have, all);
        if (!any) continue;
        if (!have) {
            r->g[u] = calloc(sizes[u], sizeof(float));
            cnt[u] = calloc(sizes[u], sizeof(float));
            r->n[u] = sizes[u];
        }
        MPI_Allreduce(MPI_IN_PLACE, r->g[u], (int)r->n[u], MPI_FLOAT, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, cnt[u], (int)r->n[u], MPI_FLOAT, MPI_SUM, comm);
        for (size_t i = 0; i < r->n[u]; i++) {
            if (cnt[u][i] == 0) (*missing)++;
            else r->g[u][i] /= cnt[u][i];
        }
        free(cnt[u]);
    }
    /* the step again, now with Adam, and the following ones: the loss of
     * every step (the first equals the one above) */
    t->step = 0;
    for (int s = 0; s < STEPS; s++) assert_int_equal(trainer_step(t, true, &r->loss[s], &err), 0);
    trainer_destroy(t);
    exec_test_comms_free(&tc);
}

/* the worst relative difference of any full gradient of par from ref's */
static double worst_gradient(const Run *ref, const Run *par, int *worst_uid)
{
    double worst = 0;
    *worst_uid = -1;
    for (int u = 0; u < MAX_UID; u++) {
        if (!ref->g[u]) { assert_null(par->g[u]); continue; }
        assert_non_null(par->g[u]);
        double diff = 0, mag = 0;
        for (size_t i = 0; i < ref->n[u]; i++) {
            diff = fmax(diff, fabs((double)par->g[u][i] - ref->g[u][i]));
            mag = fmax(mag, fabs((double)ref->g[u][i]));
        }
        double rel = diff / fmax(mag, 1e-20);
        if (rel > worst) { worst = rel; *worst_uid = u; }
    }
    return worst;
}

static void run_case(void **state)
{
    const Case *c = *state;
    size_t *sizes = calloc(MAX_UID, sizeof(size_t));
    reference_sizes(c->model, sizes);
    Plan ref_plan, plan[2];
    SEQ = c->seq;
    PP = 1;
    OVERLAP = 0;
    make_plan(&ref_plan, c->model, 1, 1, 1, 1, 1, 0);
    PP = c->pp > 1 ? c->pp : 1;
    /* plan[0] blocking, plan[1] overlapped */
    for (int v = 0; v < 2; v++) {
        OVERLAP = v ? OVERLAP_CP | OVERLAP_P2P : 0;
        make_plan(&plan[v], c->model, world_size, c->tp, c->cp, c->ep, c->etp, c->dist);
    }
    OVERLAP = 0;
    Run ref, par[2];
    long ref_missing, missing[2];
    run(&ref_plan, MPI_COMM_SELF, sizes, &ref, &ref_missing);
    for (int v = 0; v < 2; v++) run(&plan[v], MPI_COMM_WORLD, sizes, &par[v], &missing[v]);
    assert_int_equal(ref_missing, 0);
    for (int v = 0; v < 2; v++) {
        int worst_uid;
        double worst = worst_gradient(&ref, &par[v], &worst_uid), loss_diff = 0, all_worst, all_loss_diff;
        long all_missing;
        for (int s = 0; s < STEPS; s++) loss_diff = fmax(loss_diff, fabs(par[v].loss[s] - ref.loss[s]));
        MPI_Allreduce(&worst, &all_worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&loss_diff, &all_loss_diff, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&missing[v], &all_missing, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
        const Mapping *m = &plan[v].map;
        if (world_rank == 0)
            printf("  %-16s seq %d tp %d cp %d pp %d dp %d ep %d etp %d edp %d opt %s, %s: losses %.6f %.6f %.6f "
                   "(ref %.6f %.6f %.6f), worst full-gradient rel err %.2e (tensor %d), elements held by no rank %ld\n",
                   c->model, SEQ, m->tp, m->cp, m->pp, m->dp, m->ep, m->etp, m->edp,
                   opt_sharding_name(plan[v].train.opt_sharding), v ? "overlapped" : "blocking", par[v].loss[0],
                   par[v].loss[1], par[v].loss[2], ref.loss[0], ref.loss[1], ref.loss[2], all_worst, worst_uid,
                   all_missing);
        assert_int_equal(all_missing, 0);
        assert_true(all_loss_diff < 1e-4);
        assert_true(all_worst < 1e-4);
    }
    /* the same arithmetic on both paths: the same losses, bit for bit */
    int differ = 0, any_differ;
    for (int s = 0; s < STEPS; s++) differ |= par[0].loss[s] != par[1].loss[s];
    MPI_Allreduce(&differ, &any_differ, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    assert_int_equal(any_differ, 0);
    run_free(&ref);
    for (int v = 0; v < 2; v++) run_free(&par[v]);
    free(sizes);
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
    if (__lsan_disable) __lsan_disable();
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_rank != 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) return 1;
    }
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
    int failed = n ? _cmocka_run_group_tests("executor_cp", tests, (size_t)n, NULL, NULL) : 0;
    int any;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? 1 : 0;
}
