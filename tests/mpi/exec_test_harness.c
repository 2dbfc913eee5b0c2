/* exec_test_harness.c: see exec_test_harness.h. */
#include "tests/mpi/exec_test_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void __lsan_disable(void) __attribute__((weak));

int exec_harness_init(int *argc, char ***argv, int *world_rank, int *world_size)
{
    if (__lsan_disable) __lsan_disable();
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, world_size);
    if (*world_rank != 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) return -1;
    }
    return 0;
}

int exec_harness_run_group(const char *name, const struct CMUnitTest *tests, int n)
{
    int failed = n ? _cmocka_run_group_tests(name, tests, (size_t)n, NULL, NULL) : 0;
    int any;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? 1 : 0;
}

ExecOptions exec_harness_options(int steps)
{
    ExecOptions o;
    memset(&o, 0, sizeof o);
    o.backend = EXEC_BACKEND_CPU;
    o.steps = steps; o.seed = 1234; o.lr = 1e-2;
    return o;
}

void exec_harness_trainer_create(ExecHarnessTrainer *h, const Plan *plan, const ExecOptions *o, MPI_Comm comm)
{
    exec_test_comms_build(&plan->map, comm, &h->tc);
    MpError err;
    int rc = trainer_create(plan, o, &h->tc.comms, &h->t, &err);
    if (rc) fprintf(stderr, "trainer_create: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

void exec_harness_trainer_destroy(ExecHarnessTrainer *h)
{
    trainer_destroy(h->t);
    exec_test_comms_free(&h->tc);
}

void exec_harness_tiny_plan(Plan *p, const char *model, int world, int tp, int cp, int pp, int ep, int etp, int seq,
                            int mbs, int gbs, int dist)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny(model, &p->model), 0);
    p->map.world = world; p->map.tp = tp; p->map.cp = cp; p->map.pp = pp; p->map.vpp = 1;
    p->map.ep = ep; p->map.etp = etp;
    MpError err;
    int rc = mapping_resolve(&p->map, p->model.num_experts, &err);
    if (rc) fprintf(stderr, "mapping_resolve: %s\n", err.msg);
    assert_int_equal(rc, 0);
    p->train.seq_len = seq; p->train.micro_batch = mbs; p->train.global_batch = gbs;
    p->train.opt_sharding = dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
}

void exec_harness_train(const Plan *plan, const ExecOptions *o, ExecStepStats *st)
{
    ExecTestComms tc;
    exec_test_comms_build(&plan->map, MPI_COMM_WORLD, &tc);
    MpError err;
    int rc = exec_train(plan, o, &tc.comms, st, &err);
    exec_test_comms_free(&tc);
    if (rc) fprintf(stderr, "exec_train: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

double exec_harness_max(double x)
{
    double all;
    MPI_Allreduce(&x, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

void exec_full_grads_free(ExecFullGrads *g)
{
    for (int i = 0; i < EXEC_HARNESS_MAX_UID; i++) free(g->g[i]);
}

/* elements of the full tensor of parameter pi: a fused w1|w3 parameter is
 * two tensors (ids uid and uid + 1) of half its elements each */
static size_t full_numel(const ParamInfo *pi)
{
    return pi->kind == PARAM_W13 ? pi->n / 2 : pi->n;
}

void exec_full_grads_sizes(const char *model, size_t *sizes)
{
    Plan one;
    exec_harness_tiny_plan(&one, model, 1, 1, 1, 1, 1, 1, 16, 1, 4, 0);
    ExecOptions o = exec_harness_options(1);
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, &one, &o, MPI_COMM_SELF);
    for (int p = 0; p < model_num_params(h.t->model); p++) {
        const ParamInfo *pi = model_param(h.t->model, p);
        assert_true(pi->uid >= 0 && pi->uid + 1 < EXEC_HARNESS_MAX_UID);
        sizes[pi->uid] = full_numel(pi);
        if (pi->kind == PARAM_W13) sizes[pi->uid + 1] = full_numel(pi);
    }
    exec_harness_trainer_destroy(&h);
}

/* Adds every gradient element the trainer holds into g at its full-tensor
 * index, allocating a tensor of sizes[uid] elements (NULL: the parameter's
 * full size) when first met; cnt (NULL: not kept) counts the holders. */
static void place_grads(Trainer *t, ExecFullGrads *g, float **cnt, const size_t *sizes)
{
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        float *host = malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, host);
        for (size_t i = 0; i < pi->n; i++) {
            int uid; size_t flat;
            model_param_global_index(t->model, p, i, &uid, &flat);
            assert_true(uid >= 0 && uid < EXEC_HARNESS_MAX_UID);
            if (sizes) assert_true(sizes[uid] > 0);
            if (!g->g[uid]) {
                /* full-tensor size: a 1-rank reference holds every element */
                g->n[uid] = sizes ? sizes[uid] : full_numel(pi);
                g->g[uid] = calloc(g->n[uid], sizeof(float));
                if (cnt) cnt[uid] = calloc(g->n[uid], sizeof(float));
            }
            assert_true(flat < g->n[uid]);
            g->g[uid][flat] += host[i];
            if (cnt) cnt[uid][flat] += 1;
        }
        free(host);
    }
}

void exec_full_grads_of_reference(Trainer *t, ExecFullGrads *g)
{
    memset(g, 0, sizeof *g);
    place_grads(t, g, NULL, NULL);
}

void exec_full_grads_gather(Trainer *t, const Plan *plan, MPI_Comm comm, const size_t *sizes, ExecFullGrads *g,
                            long *missing)
{
    memset(g, 0, sizeof *g);
    /* distributed optimizer: each rank holds the reduced sum of its shard
     * only; the shards back to the full gradient arenas */
    model_gather_grads(t->model);
    float *cnt[EXEC_HARNESS_MAX_UID] = {0};
    place_grads(t, g, cnt, sizes);
    /* every rank holds some shard of every tensor in these models (the
     * expert arenas too: EP x ETP x EDP covers all ranks) */
    *missing = 0;
    for (int u = 0; u < EXEC_HARNESS_MAX_UID; u++) {
        /* with pp > 1 a stage holds only its own layers' tensors: the
         * others join the sums with zero counts */
        int have = g->g[u] != NULL, all, any;
        MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, comm);
        MPI_Allreduce(&have, &any, 1, MPI_INT, MPI_MAX, comm);
        if (plan->map.pp <= 1) assert_int_equal(have, all);
        if (!any) continue;
        if (!have) {
            g->g[u] = calloc(sizes[u], sizeof(float));
            cnt[u] = calloc(sizes[u], sizeof(float));
            g->n[u] = sizes[u];
        }
        MPI_Allreduce(MPI_IN_PLACE, g->g[u], (int)g->n[u], MPI_FLOAT, MPI_SUM, comm);
        MPI_Allreduce(MPI_IN_PLACE, cnt[u], (int)g->n[u], MPI_FLOAT, MPI_SUM, comm);
        for (size_t i = 0; i < g->n[u]; i++) {
            if (cnt[u][i] == 0) (*missing)++;
            else g->g[u][i] /= cnt[u][i];
        }
        free(cnt[u]);
    }
}

double exec_full_grads_rel_err(const ExecFullGrads *ref, const ExecFullGrads *par, int *worst_uid)
{
    double worst = 0;
    *worst_uid = -1;
    for (int u = 0; u < EXEC_HARNESS_MAX_UID; u++) {
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

double exec_local_grads_rel_err(Trainer *t, const ExecFullGrads *ref, char *worst_name, size_t len)
{
    double worst = 0;
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        float *host = malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, host);
        double diff = 0, mag = 0;
        for (size_t i = 0; i < pi->n; i++) {
            int uid; size_t flat;
            model_param_global_index(t->model, p, i, &uid, &flat);
            assert_true(uid >= 0 && uid < EXEC_HARNESS_MAX_UID);
            assert_non_null(ref->g[uid]);
            double r = ref->g[uid][flat];
            diff = fmax(diff, fabs((double)host[i] - r));
            mag = fmax(mag, fabs(r));
        }
        double rel = diff / fmax(mag, 1e-20);
        if (rel > worst) { worst = rel; snprintf(worst_name, len, "%s", pi->name); }
        free(host);
    }
    return worst;
}

void exec_harness_run_gathered(const Plan *plan, const ExecOptions *o, MPI_Comm comm, const size_t *sizes,
                               ExecGatheredRun *r, long *missing)
{
    assert_true(o->steps >= 1 && o->steps <= EXEC_HARNESS_MAX_STEPS);
    memset(r, 0, sizeof *r);
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, plan, o, comm);
    Trainer *t = h.t;
    MpError err;
    double loss;
    assert_int_equal(trainer_step(t, false, &loss, &err), 0);   /* gradients of step 1 */
    /* the Adam moments are sharded when the optimizer is distributed over
     * a group of more than one rank */
    if (plan->train.opt_sharding == OPT_SHARD_DISTRIBUTED && (plan->map.dp * plan->map.cp > 1 || plan->map.edp > 1))
        assert_true(model_optimizer_elems(t->model) < model_local_params(t->model));
    else
        assert_true(model_optimizer_elems(t->model) == model_local_params(t->model));
    exec_full_grads_gather(t, plan, comm, sizes, &r->grads, missing);
    /* the step again, now with Adam, and the following ones: the loss of
     * every step (the first equals the one above) */
    t->step = 0;
    for (int s = 0; s < o->steps; s++) assert_int_equal(trainer_step(t, true, &r->loss[s], &err), 0);
    exec_harness_trainer_destroy(&h);
}

void exec_harness_invariance(const char *model, const Plan *ref_plan, const Plan *plan, const ExecOptions *o,
                             ExecInvariance *v)
{
    size_t *sizes = calloc(EXEC_HARNESS_MAX_UID, sizeof(size_t));
    exec_full_grads_sizes(model, sizes);
    long ref_missing, missing;
    exec_harness_run_gathered(ref_plan, o, MPI_COMM_SELF, sizes, &v->ref, &ref_missing);
    exec_harness_run_gathered(plan, o, MPI_COMM_WORLD, sizes, &v->par, &missing);
    free(sizes);
    assert_int_equal(ref_missing, 0);
    double worst = exec_full_grads_rel_err(&v->ref.grads, &v->par.grads, &v->worst_uid), loss_diff = 0;
    for (int s = 0; s < o->steps; s++) loss_diff = fmax(loss_diff, fabs(v->par.loss[s] - v->ref.loss[s]));
    v->worst = exec_harness_max(worst);
    v->loss_diff = exec_harness_max(loss_diff);
    long all_missing;
    MPI_Allreduce(&missing, &all_missing, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    v->missing = all_missing;
    v->steps = o->steps;
}

void exec_invariance_check(const ExecInvariance *v, double tol)
{
    assert_true(v->steps >= 3);
    printf("losses %.6f %.6f %.6f (ref %.6f %.6f %.6f), "
           "worst full-gradient rel err %.2e (tensor %d), elements held by no rank %ld\n",
           v->par.loss[0], v->par.loss[1], v->par.loss[2], v->ref.loss[0], v->ref.loss[1], v->ref.loss[2], v->worst,
           v->worst_uid, v->missing);
    assert_int_equal(v->missing, 0);
    assert_true(v->loss_diff < tol);
    assert_true(v->worst < tol);
}

void exec_invariance_free(ExecInvariance *v)
{
    exec_full_grads_free(&v->ref.grads);
    exec_full_grads_free(&v->par.grads);
}
