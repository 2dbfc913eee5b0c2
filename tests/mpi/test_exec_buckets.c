/* test_exec_buckets.c: gradient buckets and overlap (issue 15) on the CPU
 * backend (float32, MPI nonblocking collectives).
 *
 * Each case runs the same mapping twice on all ranks: without overlap (one
 * bucket per arena, every collective after the backward: the path
 * test_exec_tp.c checks against one rank) and with --overlap grad,param
 * (buckets of MODEL_BUCKET_ELEMS_CPU elements; each bucket's reduce-scatter
 * or all-reduce started by MPI_Ireduce_scatter_block / MPI_Iallreduce once
 * the last micro-batch's backward of its layers is done; the parameter
 * all-gather per bucket by MPI_Iallgather, waited before the forward of the
 * bucket's first layer).  Then
 *   - the bucketed run has more than two buckets and started some of them
 *     during the backward (the overlap really ran);
 *   - after the first step's backward every gradient (all-gathered back
 *     from the shards) equals the unbucketed run's, element by element;
 *   - the loss of each of STEPS Adam steps and every parameter afterwards
 *     (the all-gathered working copy) are equal.
 * Tolerance 1e-6 relative: the sums are the same numbers, only the
 * collectives' chunking differs.
 * Run with mpirun -np 2 and 4: the cases that fit the world size run.
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

#include "core/plan.h"
#include "executor/model.h"
#include "executor/train.h"
#include "tests/mpi/exec_test_comms.h"
#include "tests/mpi/exec_test_harness.h"

enum { SEQ = 16, MBS = 1, STEPS = 3 };

static int world_rank, world_size;


typedef struct {
    const char *model;
    int tp, ep, pp;
    int world;            /* ranks the case needs */
    int dist;             /* 1: distributed optimizer (ZeRO-1) */
    int gbs;
    unsigned overlap;     /* of the bucketed run (0: grad,param) */
} Case;

static void make_plan(Plan *p, const Case *c, unsigned overlap)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny(c->model, &p->model), 0);
    if (c->pp > 1) p->model.num_layers = 4;
    p->map.world = c->world; p->map.tp = c->tp; p->map.cp = 1; p->map.pp = c->pp; p->map.vpp = 1;
    p->map.ep = c->ep; p->map.etp = 1;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = SEQ; p->train.micro_batch = MBS; p->train.global_batch = c->gbs;
    p->train.opt_sharding = c->dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
    p->train.overlap = overlap;
}

typedef struct {
    int np;
    float **grad, **value;   /* [np][n of param p] */
    size_t *n;
    double loss[STEPS];
    int buckets, early;
} Run;

static void run_free(Run *r)
{
    for (int p = 0; p < r->np; p++) { free(r->grad[p]); free(r->value[p]); }
    free(r->grad); free(r->value); free(r->n);
}

static void run(const Plan *plan, Run *r)
{
    memset(r, 0, sizeof *r);
    ExecTestComms tc;
    exec_test_comms_build(&plan->map, MPI_COMM_WORLD, &tc);
    ExecOptions o;
    memset(&o, 0, sizeof o);
    o.backend = EXEC_BACKEND_CPU;
    o.steps = STEPS; o.seed = 1234; o.lr = 1e-2;
    Trainer *t;
    MpError err;
    int rc = trainer_create(plan, &o, &tc.comms, &t, &err);
    if (rc) fprintf(stderr, "trainer_create: %s\n", err.msg);
    assert_int_equal(rc, 0);
    double loss;
    assert_int_equal(trainer_step(t, false, &loss, &err), 0);   /* gradients of step 1 */
    model_bucket_stats(t->model, &r->buckets, &r->early);
    model_gather_grads(t->model);
    r->np = model_num_params(t->model);
    r->grad = calloc((size_t)r->np, sizeof(float *));
    r->value = calloc((size_t)r->np, sizeof(float *));
    r->n = calloc((size_t)r->np, sizeof(size_t));
    for (int p = 0; p < r->np; p++) {
        r->n[p] = model_param(t->model, p)->n;
        r->grad[p] = malloc((r->n[p] ? r->n[p] : 1) * sizeof(float));
        r->value[p] = malloc((r->n[p] ? r->n[p] : 1) * sizeof(float));
        model_param_grad_host(t->model, p, r->grad[p]);
    }
    t->step = 0;
    for (int s = 0; s < STEPS; s++) assert_int_equal(trainer_step(t, true, &r->loss[s], &err), 0);
    for (int p = 0; p < r->np; p++) model_param_value_host(t->model, p, r->value[p]);
    trainer_destroy(t);
    exec_test_comms_free(&tc);
}

/* max |a - b| / max |b| over the parameters of a run */
static double worst_rel(const Run *a, const Run *b, int values)
{
    double worst = 0;
    for (int p = 0; p < b->np; p++) {
        const float *x = values ? a->value[p] : a->grad[p], *y = values ? b->value[p] : b->grad[p];
        double diff = 0, mag = 0;
        for (size_t i = 0; i < b->n[p]; i++) {
            diff = fmax(diff, fabs((double)x[i] - y[i]));
            mag = fmax(mag, fabs((double)y[i]));
        }
        worst = fmax(worst, diff / fmax(mag, 1e-20));
    }
    return worst;
}

static void run_case(void **state)
{
    const Case *c = *state;
    Plan plain, bucketed;
    make_plan(&plain, c, 0);
    unsigned ov = c->overlap ? c->overlap : OVERLAP_GRAD | OVERLAP_PARAM;
    make_plan(&bucketed, c, ov);
    Run ref, par;
    run(&plain, &ref);
    run(&bucketed, &par);
    assert_int_equal(par.np, ref.np);
    for (int p = 0; p < ref.np; p++) assert_int_equal(par.n[p], ref.n[p]);
    double g = worst_rel(&par, &ref, 0), v = worst_rel(&par, &ref, 1), l = 0;
    for (int s = 0; s < STEPS; s++) l = fmax(l, fabs(par.loss[s] - ref.loss[s]) / fabs(ref.loss[s]));
    double e[3] = {g, v, l}, all[3];
    MPI_Allreduce(e, all, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int mine[2] = {par.buckets, par.early}, least[2];
    MPI_Allreduce(mine, least, 2, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    char ovname[32];
    overlap_format(ov, ovname, sizeof ovname);
    if (world_rank == 0)
        printf("  %-16s tp %d dp %d ep %d edp %d pp %d opt %-11s overlap %-10s: buckets %d (unbucketed %d), %d started in the "
               "backward; losses %.6f %.6f %.6f (unbucketed %.6f %.6f %.6f); worst rel diff: gradients %.2e, "
               "parameters after %d steps %.2e, losses %.2e\n",
               c->model, plain.map.tp, plain.map.dp, plain.map.ep, plain.map.edp, plain.map.pp,
               opt_sharding_name(plain.train.opt_sharding), ovname, par.buckets, ref.buckets, par.early, par.loss[0],
               par.loss[1], par.loss[2], ref.loss[0], ref.loss[1], ref.loss[2], all[0], STEPS, all[1], all[2]);
    assert_true(least[0] > 2);
    if (ov & OVERLAP_GRAD) assert_true(least[1] > 0);
    else assert_int_equal(least[1], 0);   /* param only: every bucket after the backward */
    assert_true(ref.buckets <= 2);
    assert_true(all[0] < 1e-6);
    assert_true(all[1] < 1e-6);
    assert_true(all[2] < 1e-6);
    run_free(&ref);
    run_free(&par);
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    static const Case cases[] = {
        /* 2 ranks: DP2.EP2 distributed (dense arena sharded over DP2) and
         * with optimizer sharding none (all-reduces); DP2.EDP2 on the
         * shared model (both arenas sharded) */
        {"tiny-moe", 1, 2, 1, 2, 1, 4, 0}, {"tiny-moe", 1, 2, 1, 2, 0, 4, 0}, {"tiny-moe-shared", 1, 1, 1, 2, 1, 4, 0},
        /* each word alone */
        {"tiny-moe", 1, 2, 1, 2, 1, 4, OVERLAP_GRAD}, {"tiny-moe", 1, 2, 1, 2, 1, 4, OVERLAP_PARAM},
        /* 4 ranks: TP2.DP2 with EP4 distributed (TP sums of the replicated
         * parameters before each bucket); TP2.DP2.EP2 with none; the
         * shared model TP2.DP2.EP2.EDP2 distributed; PP2.DP2.EP2
         * distributed (1F1B, 4 micro-batches: the buckets of each stage
         * start after the last backward of their layers) */
        {"tiny-moe", 2, 4, 1, 4, 1, 4, 0}, {"tiny-moe", 2, 2, 1, 4, 0, 4, 0}, {"tiny-moe-shared", 2, 2, 1, 4, 1, 4, 0},
        {"tiny-moe", 1, 2, 2, 4, 1, 8, 0},
    };
    struct CMUnitTest tests[16];
    char names[16][96];
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Case *c = &cases[i];
        if (c->world != world_size) continue;
        char ov[32];
        overlap_format(c->overlap ? c->overlap : OVERLAP_GRAD | OVERLAP_PARAM, ov, sizeof ov);
        snprintf(names[n], sizeof names[n], "buckets %s tp%d ep%d pp%d%s overlap %s (np %d)", c->model, c->tp, c->ep,
                 c->pp, c->dist ? " distributed optimizer" : "", ov, world_size);
        tests[n] = (struct CMUnitTest){names[n], run_case, NULL, NULL, (void *)c};
        n++;
    }
    return exec_harness_run_group("executor_buckets", tests, n);
}
