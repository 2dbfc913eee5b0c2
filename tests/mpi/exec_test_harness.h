/* exec_test_harness.h: what the executor's multi-rank invariance suites
 * (tests/mpi/test_exec_tp.c, _pp.c, _cp.c, _invariance.c) share:
 *   - MPI start and end around one cmocka group (ranks other than 0 silent,
 *     the group's failure reduced over all ranks so they exit alike);
 *   - the CPU options of every run and a trainer over a plan's
 *     communicators (tests/mpi/exec_test_comms.h);
 *   - gradients in full-tensor layout, by tensor id: a 1-rank reference's,
 *     or a parallel run's gathered over all ranks, and their comparisons
 *     (the largest per-tensor max |g - ref| / max |ref|).
 * The functions assert with cmocka: call them from inside a test.  Every
 * collective here is entered by all ranks of its communicator. */
#ifndef MOEPLAN_TESTS_EXEC_TEST_HARNESS_H
#define MOEPLAN_TESTS_EXEC_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mpi.h>

#include "executor/train.h"
#include "tests/mpi/exec_test_comms.h"

enum { EXEC_HARNESS_MAX_UID = 1024, EXEC_HARNESS_MAX_STEPS = 8 };

/* MPI_Init, this rank and the world size; LeakSanitizer off (Open MPI keeps
 * allocations until exit, partly in plugins it has unloaded, which
 * LeakSanitizer cannot name; ASan's other checks stay on); stdout and
 * stderr of ranks other than 0 to /dev/null.  -1 if that fails. */
int exec_harness_init(int *argc, char ***argv, int *world_rank, int *world_size);
/* Runs tests[0..n-1] as the group `name` (none when n is 0), reduces the
 * failure over MPI_COMM_WORLD, MPI_Finalize; the exit status of main. */
int exec_harness_run_group(const char *name, const struct CMUnitTest *tests, int n);

/* CPU backend, `steps` steps, seed 1234, learning rate 1e-2. */
ExecOptions exec_harness_options(int steps);

typedef struct {
    ExecTestComms tc;
    Trainer *t;
} ExecHarnessTrainer;
/* The communicators of plan->map over comm and a trainer on them; fails the
 * test (printing trainer_create's message) if the trainer is refused. */
void exec_harness_trainer_create(ExecHarnessTrainer *h, const Plan *plan, const ExecOptions *o, MPI_Comm comm);
void exec_harness_trainer_destroy(ExecHarnessTrainer *h);

/* A plan of the tiny model `model` (model_spec_tiny) on `world` ranks:
 * tp, cp, pp (vpp 1), ep, etp resolved (mapping_resolve), sequence length,
 * micro-batch and global batch; the distributed optimizer when dist. */
void exec_harness_tiny_plan(Plan *p, const char *model, int world, int tp, int cp, int pp, int ep, int etp, int seq,
                            int mbs, int gbs, int dist);

/* exec_train of plan over MPI_COMM_WORLD's communicators; fails the test
 * (printing the message) if it fails.  st as exec_train fills it. */
void exec_harness_train(const Plan *plan, const ExecOptions *o, ExecStepStats *st);

/* Largest x over MPI_COMM_WORLD. */
double exec_harness_max(double x);

/* gradients in full-tensor layout: g[uid] [n[uid]] (NULL: no such tensor) */
typedef struct {
    float *g[EXEC_HARNESS_MAX_UID];
    size_t n[EXEC_HARNESS_MAX_UID];
} ExecFullGrads;

void exec_full_grads_free(ExecFullGrads *g);
/* The full size of each tensor id of the tiny model `model`
 * (sizes[EXEC_HARNESS_MAX_UID], zeroed by the caller), from a 1-rank
 * trainer over MPI_COMM_SELF. */
void exec_full_grads_sizes(const char *model, size_t *sizes);
/* Every gradient of a trainer that holds every element (one rank, no
 * sharding), placed at its full-tensor index. */
void exec_full_grads_of_reference(Trainer *t, ExecFullGrads *g);
/* After a backward: the trainer's gradients back in their full arenas
 * (model_gather_grads), each rank's shard placed at its full-tensor indices,
 * values and holder counts summed over comm and the values divided by the
 * count (replicas hold the same value).  With several pipeline stages a
 * rank holds only its own stage's tensors (the others join with zero
 * counts); otherwise every rank must hold some shard of every tensor.
 * *missing: elements held by no rank. */
void exec_full_grads_gather(Trainer *t, const Plan *plan, MPI_Comm comm, const size_t *sizes, ExecFullGrads *g,
                            long *missing);
/* ref and par must have the same tensors; the largest relative error and
 * its tensor id (-1 when every tensor agrees exactly). */
double exec_full_grads_rel_err(const ExecFullGrads *ref, const ExecFullGrads *par, int *worst_uid);
/* This rank's gradient shards (as the trainer holds them) against ref at
 * their full-tensor indices: the largest relative error, and the name of
 * its tensor into worst_name[len]. */
double exec_local_grads_rel_err(Trainer *t, const ExecFullGrads *ref, char *worst_name, size_t len);

/* One run of a plan: the full gradients of its first step and the loss of
 * every step. */
typedef struct {
    ExecFullGrads grads;
    double loss[EXEC_HARNESS_MAX_STEPS];
} ExecGatheredRun;
/* Runs plan on comm: the first step without the optimizer, the gradients
 * gathered (exec_full_grads_gather), then o->steps steps with Adam from
 * step 0 again, their losses kept.  Checks that the Adam moments are
 * sharded exactly when the optimizer is distributed over a DP*CP or EDP
 * group of more than one rank. */
void exec_harness_run_gathered(const Plan *plan, const ExecOptions *o, MPI_Comm comm, const size_t *sizes,
                               ExecGatheredRun *r, long *missing);
/* The invariance check of a parallel plan against its 1-rank reference:
 * both run (exec_harness_run_gathered: the reference over MPI_COMM_SELF, the
 * plan over MPI_COMM_WORLD, o->steps steps each), the reference must hold
 * every element, and the differences reduced over all ranks. */
typedef struct {
    ExecGatheredRun ref, par;
    double worst;       /* largest relative full-gradient error, over all ranks */
    int worst_uid;      /* its tensor id on this rank (-1: none differs) */
    double loss_diff;   /* largest loss difference over the steps and ranks */
    long missing;       /* elements held by no rank (the largest count seen) */
    int steps;
} ExecInvariance;
void exec_harness_invariance(const char *model, const Plan *ref_plan, const Plan *plan, const ExecOptions *o,
                             ExecInvariance *v);
/* Ends the line the caller began on stdout with the losses of the first
 * three steps (par, then ref), the worst gradient error and the missing
 * elements; then fails the test unless no element is missing and the loss
 * and gradient differences are below tol. */
void exec_invariance_check(const ExecInvariance *v, double tol);
void exec_invariance_free(ExecInvariance *v);

#endif
