/* test_exec_invariance.c: parallel invariance of the executor's training
 * step on the CPU backend (float32, MPI collectives).
 *
 * Every rank first runs the step of the tiny model alone (a 1-rank mapping
 * over MPI_COMM_SELF): that is the reference.  Then all ranks run the same
 * global batch under a parallel mapping (DP, EP, ETP, folded) and each rank
 * compares the gradients of its shard with the reference's elements at the
 * same full-tensor index, and the loss.  Run with mpirun -np 1, 2, 4: the
 * mappings that fit the world size run, the others are not registered.
 * Also: finite-difference checks of the gradients (np 1), the loss at
 * initialisation against ln V, and the loss falling on the synthetic task.
 * Assertions use values reduced over all ranks so every rank fails together
 * (no rank is left waiting in a collective); only rank 0 prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/mpi/exec_test_harness.h"

enum { SEQ = 16, MBS = 1, GBS = 4 };

static int world_rank, world_size;

static void make_plan(Plan *p, const char *model, int world, int ep, int etp, double cf, int gbs)
{
    exec_harness_tiny_plan(p, model, world, 1, 1, 1, ep, etp, SEQ, MBS, gbs, 0);
    p->train.capacity_factor = cf;
}

static ExecOptions options(void)
{
    return exec_harness_options(1);
}

/* Reference gradients in full-tensor layout, the loss of the step, of the
 * step after Adam, the aux part of the first and the dropped pairs. */
typedef struct {
    ExecFullGrads grads;
    double loss, loss2, aux;
    int dropped;
} Reference;

static void reference_run(const char *model, double cf, Reference *r)
{
    memset(r, 0, sizeof *r);
    Plan plan;
    make_plan(&plan, model, 1, 1, 1, cf, GBS);
    ExecOptions o = options();
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, &plan, &o, MPI_COMM_SELF);
    MpError err;
    assert_int_equal(trainer_step(h.t, true, &r->loss, &err), 0);
    r->aux = h.t->last_aux;
    r->dropped = model_dropped_pairs(h.t->model);
    exec_full_grads_of_reference(h.t, &r->grads);
    assert_int_equal(trainer_step(h.t, false, &r->loss2, &err), 0);
    exec_harness_trainer_destroy(&h);
}

static void reference_free(Reference *r)
{
    exec_full_grads_free(&r->grads);
}

/* runs the mapping, returns the largest relative gradient error of any
 * tensor (max |g - ref| / max |ref| per tensor), over all ranks */
static void check_mapping(const char *model, int ep, int etp, double cf)
{
    Reference ref;
    reference_run(model, cf, &ref);
    Plan plan;
    make_plan(&plan, model, world_size, ep, etp, cf, GBS);
    ExecOptions o = options();
    ExecHarnessTrainer h;
    exec_harness_trainer_create(&h, &plan, &o, MPI_COMM_WORLD);
    MpError err;
    double loss, loss2;
    assert_int_equal(trainer_step(h.t, true, &loss, &err), 0);
    char worst_name[64] = "";
    double worst = exec_local_grads_rel_err(h.t, &ref.grads, worst_name, sizeof worst_name);
    assert_int_equal(trainer_step(h.t, false, &loss2, &err), 0);
    exec_harness_trainer_destroy(&h);

    double all_worst = exec_harness_max(worst), all_loss_diff = exec_harness_max(fabs(loss - ref.loss));
    double all_loss2_diff = exec_harness_max(fabs(loss2 - ref.loss2));
    if (world_rank == 0)
        printf("  %-16s dp %d ep %d etp %d edp %d cf %.2f: loss %.6f (ref %.6f), after Adam %.6f "
               "(ref %.6f), worst grad rel err %.2e (%s), dropped pairs (ref, last mb) %d\n",
               model, plan.map.dp, ep, etp, plan.map.edp, cf, loss, ref.loss, loss2, ref.loss2,
               all_worst, worst_name, ref.dropped);
    /* float32 with a different summation order: agreement to ~1e-6 */
    assert_true(all_loss_diff < 1e-5);
    assert_true(all_loss2_diff < 1e-4);
    assert_true(all_worst < 1e-4);
    if (cf > 0) assert_true(ref.dropped > 0);   /* the capacity really drops pairs */
    reference_free(&ref);
}

typedef struct { const char *model; int ep, etp; double cf; } Case;

static void run_case(void **state)
{
    const Case *c = *state;
    check_mapping(c->model, c->ep, c->etp, c->cf);
}

/* The loss at initialisation is close to ln V (logits near 0 with std-0.02
 * weights): ln 128 = 4.852. */
static void test_initial_loss(void **state)
{
    (void)state;
    Reference ref;
    reference_run("tiny-moe", 0, &ref);
    /* ref.loss includes the aux loss: 2 MoE layers x ~1e-2 (coeff x E x
     * sum_e f_e P_e is 1 x coeff when routing is balanced) */
    assert_true(ref.aux > 0.5 * 2e-2 && ref.aux < 2.0 * 2e-2);
    assert_true(fabs(ref.loss - ref.aux - 4.852) < 0.05);
    reference_free(&ref);
}

/* Aux coefficient 1: the loss minus the aux part is the token loss of the
 * default run (the aux loss adds nothing else to the forward pass), and the
 * aux part is E x sum_e f_e P_e per MoE layer, at least 1 (Cauchy-Schwarz
 * does not bound it, but f and P from the same softmax are aligned) and at
 * most E. */
static void test_aux_loss_value(void **state)
{
    (void)state;
    Reference ref;
    reference_run("tiny-moe", 0, &ref);
    Plan plan;
    make_plan(&plan, "tiny-moe", 1, 1, 1, 0, GBS);
    ExecTestComms tc;
    exec_test_comms_build(&plan.map, MPI_COMM_SELF, &tc);
    ExecOptions o = options();
    o.aux_loss_coeff = 1.0;
    Trainer *t;
    MpError err;
    assert_int_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    double loss;
    assert_int_equal(trainer_step(t, false, &loss, &err), 0);
    double aux = t->last_aux;
    trainer_destroy(t);
    o.aux_loss_coeff = -1;   /* off */
    assert_int_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    double loss_off;
    assert_int_equal(trainer_step(t, false, &loss_off, &err), 0);
    assert_true(t->last_aux == 0);
    trainer_destroy(t);
    exec_test_comms_free(&tc);
    if (world_rank == 0)
        printf("  aux coeff 1: loss %.6f = token loss %.6f + aux %.6f (2 MoE layers); coeff 1e-2: aux %.6f\n",
               loss, loss_off, aux, ref.aux);
    assert_true(fabs(loss - aux - loss_off) < 1e-5);
    assert_true(fabs(ref.loss - ref.aux - loss_off) < 1e-5);
    assert_true(aux >= 2.0 && aux <= 2.0 * 8);
    assert_true(fabs(aux * 1e-2 - ref.aux) < 1e-6);   /* linear in the coefficient */
    reference_free(&ref);
}

/* Central differences of the loss along the gradient of each of several
 * tensors against the backward pass (1 rank).  state: the auxiliary loss
 * coefficient (NULL: the default 1e-2); 1.0 makes the aux loss's gradient
 * (softmax Jacobian of the constant f_e row) a large part of the router's
 * and of every tensor below it, so a wrong aux backward fails the check. */
static void test_finite_differences(void **state)
{
    const double *coeff = *state;
    Plan plan;
    make_plan(&plan, "tiny-moe-shared", 1, 1, 1, 0, 2);
    ExecTestComms tc;
    exec_test_comms_build(&plan.map, MPI_COMM_SELF, &tc);
    ExecOptions o = options();
    if (coeff) o.aux_loss_coeff = *coeff;
    Trainer *t;
    MpError err;
    assert_int_equal(trainer_create(&plan, &o, &tc.comms, &t, &err), 0);
    /* The routing (top-k choices, and with them the aux loss's f_e) is
     * piecewise constant in the weights: a central difference that crosses
     * a flip measures the jump, not the derivative.  The unperturbed step
     * records its choices and the perturbed steps are held to them, so the
     * difference is that of the smooth branch the gradient describes; the
     * flips the perturbation would have caused are counted and printed. */
    int32_t *trace = calloc(trainer_routing_trace_len(t), sizeof(int32_t));
    trainer_set_routing_trace(t, trace, 0);
    double loss;
    assert_int_equal(trainer_step(t, false, &loss, &err), 0);
    t->step = 0;
    trainer_set_routing_trace(t, trace, 1);
    const char *names[] = {"embedding", "output", "final_norm", "layer0.mlp.w13", "layer1.wqkv",
                           "layer1.wo", "layer1.attn_norm", "layer1.router", "layer1.experts.w13",
                           "layer1.experts.w2", "layer2.shared.w2", "layer2.mlp_norm"};
    int checked = 0;
    double worst = 0;
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        int want = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) want |= !strcmp(names[i], pi->name);
        if (!want) continue;
        float *g = malloc(pi->n * sizeof(float)), *w = malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, g);
        model_param_value_host(t->model, p, w);
        /* directional derivative along the gradient: d = g / |g|,
         * (L(w + eps d) - L(w - eps d)) / (2 eps) must equal |g| */
        double norm = 0;
        for (size_t i = 0; i < pi->n; i++) norm += (double)g[i] * g[i];
        norm = sqrt(norm);
        assert_true(norm > 0);
        /* routing held (above), so one step for all, well above float32
         * noise (the loss is ~5: 1 ulp = 5e-7) */
        const double eps = 1e-3;
        double lp, lm;
        long flips0 = model_route_flips(t->model);
        float *w2 = malloc(pi->n * sizeof(float));
        for (size_t i = 0; i < pi->n; i++) w2[i] = (float)(w[i] + eps * g[i] / norm);
        model_param_set_host(t->model, p, w2);
        assert_int_equal(trainer_step(t, false, &lp, &err), 0); t->step = 0;
        for (size_t i = 0; i < pi->n; i++) w2[i] = (float)(w[i] - eps * g[i] / norm);
        model_param_set_host(t->model, p, w2);
        assert_int_equal(trainer_step(t, false, &lm, &err), 0); t->step = 0;
        model_param_set_host(t->model, p, w);
        free(w2);
        long flips = model_route_flips(t->model) - flips0;
        double fd = (lp - lm) / (2.0 * eps);
        double rel = fabs(fd - norm) / norm;
        if (world_rank == 0)
            printf("  fd aux %.0e %-20s |grad| %.6e  directional finite difference %.6e  rel %.4f  (routing held: %ld flips avoided)\n",
                   o.aux_loss_coeff ? o.aux_loss_coeff : 1e-2, pi->name, norm, fd, rel, flips);
        if (rel > worst) worst = rel;
        checked++;
        free(g); free(w);
    }
    trainer_destroy(t);
    free(trace);
    exec_test_comms_free(&tc);
    assert_int_equal(checked, (int)(sizeof names / sizeof names[0]));
    assert_true(worst < 0.05);
}

/* 200 Adam steps on the synthetic task: the loss must fall well below ln V. */
static void test_loss_falls(void **state)
{
    (void)state;
    Plan plan;
    make_plan(&plan, "tiny-moe", world_size, world_size >= 2 ? 2 : 1, 1, 0, 4);
    ExecOptions o = options();
    o.steps = 200; o.warmup = 1; o.lr = 1e-2;
    ExecStepStats st;
    exec_harness_train(&plan, &o, &st);
    if (world_rank == 0)
        printf("  loss: step 1 %.4f, step 50 %.4f, step 100 %.4f, step 200 %.4f (median step %.2f ms)\n",
               st.losses[0], st.losses[49], st.losses[99], st.losses[199], st.median.step * 1e3);
    double last = 0;
    for (int i = 190; i < 200; i++) last += st.losses[i] / 10;
    assert_true(st.losses[0] > 4.5);   /* ln 128 = 4.85 at the start */
    assert_true(last < 0.5);           /* the map x -> 5x+3 mod 128 is learnt */
    free(st.losses);
    free(st.ops);
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    static const Case cases[] = {
        /* np 1: the 1-rank step against itself run twice (determinism) */
        {"tiny-moe", 1, 1, 0}, {"tiny-moe", 1, 1, 1.0},
        /* np 2: DP2, EP2, ETP2 */
        {"tiny-moe", 2, 1, 0}, {"tiny-moe", 2, 1, 1.0}, {"tiny-moe", 1, 2, 0}, {"tiny-moe", 1, 2, 1.0},
        {"tiny-moe-shared", 2, 1, 0},
        /* np 4: DP4 with EP4, ETP2.EP2, EP2 (EDP 2) */
        {"tiny-moe", 4, 1, 0}, {"tiny-moe", 4, 1, 1.0}, {"tiny-moe", 2, 2, 0}, {"tiny-moe", 2, 2, 1.0},
        {"tiny-moe", 2, 1, 0}, {"tiny-moe-shared", 2, 2, 1.0},
    };
    struct CMUnitTest tests[32];
    char names[32][96];
    int n = 0;
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_initial_loss);
    static const double strong_aux = 1.0;
    if (world_size == 1) {
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_aux_loss_value);
        tests[n++] = (struct CMUnitTest){"finite differences, aux 1e-2", test_finite_differences, NULL, NULL, NULL};
        tests[n++] = (struct CMUnitTest){"finite differences, aux 1", test_finite_differences, NULL, NULL, (void *)&strong_aux};
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Case *c = &cases[i];
        int need = c->ep * c->etp;
        int first_for = i < 2 ? 1 : i < 7 ? 2 : 4;
        if (first_for != world_size || world_size % need) continue;
        snprintf(names[n], sizeof names[n], "invariance %s dp%d ep%d etp%d cf%.1f", c->model,
                 world_size, c->ep, c->etp, c->cf);
        tests[n] = (struct CMUnitTest){names[n], run_case, NULL, NULL, (void *)c};
        n++;
    }
    /* the 200-step run takes seconds: at np 1 (EP 1) and np 4 (DP4 EP2) only */
    if (world_size != 2) tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_loss_falls);
    return exec_harness_run_group("executor_invariance", tests, n);
}
