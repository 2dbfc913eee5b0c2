/* test_exec_memory.c: the executor's memory accounting (issue 15 item 4).
 * The CPU backend allocates through the same pool as the CUDA backend
 * (executor/pool.h) and counts each block in a category; these tests
 * compare the categories after model_create with bytes computed by hand
 * for the tiny model, and the pool's peak bookkeeping on its own.
 * One rank, no MPI collective is called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor/backend.h"
#include "executor/model.h"
#include "executor/pool.h"

/* a pool block: bytes rounded up to POOL_GRANULE (512) */
static double blk(double bytes) { return (double)(((size_t)bytes + 511) / 512 * 512); }

/* tiny-moe (model.c): h 64, 4 heads of 16, 2 KV groups, 8 experts, expert
 * FFN 96, vocabulary 128, 2 layers.  Dense parameters:
 *   embedding 128*64 = 8192, final norm 64, output layer 8192,
 *   per layer: attention norm 64, QKV (4 + 2*2)*16*64 = 8192,
 *              output projection 64*64 = 4096, MLP norm 64, router 8*64 = 512
 *              = 12928, twice = 25856
 *   total 8192 + 64 + 8192 + 25856 = 42304
 * Expert parameters, per layer w13 8*2*96*64 = 98304, w2 8*64*96 = 49152:
 *   2 * 147456 = 294912 */
enum { DENSE = 42304, EXPERT = 294912 };

static void make_plan(Plan *p, int dp, int dist)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny("tiny-moe", &p->model), 0);
    p->map.world = dp; p->map.tp = p->map.cp = p->map.pp = p->map.vpp = 1;
    p->map.ep = dp; p->map.etp = 1;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = 8; p->train.micro_batch = 1; p->train.global_batch = dp;
    p->train.opt_sharding = dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
}

static void state_bytes(Model *m, Backend *be, double *cat)
{
    (void)m;
    double total;
    /* the peak so far is right after the model's creation: every state
     * buffer is held, the step's buffers too */
    be->mem_report(be, &total, cat);
    double sum = 0;
    for (int k = 0; k < MEM_CATEGORY_COUNT; k++) sum += cat[k];
    assert_true(sum == total);
}

/* One rank, no sharding: every fp32 arena whole.  On the CPU the float
 * master is the working copy (weights), so the optimizer holds m and v. */
static void test_state_one_rank(void **s)
{
    (void)s;
    ExecComms c;
    memset(&c, 0, sizeof c);
    c.world_size = 1;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c.size_of[k] = 1;
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Plan plan;
    make_plan(&plan, 1, 0);
    Model *m;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), 0);
    double cat[MEM_CATEGORY_COUNT];
    state_bytes(m, be, cat);
    double arenas = blk(4.0 * DENSE) + blk(4.0 * EXPERT);   /* 169472 + 1179648 */
    assert_true(arenas == 169472.0 + 1179648.0);
    assert_true(cat[MEM_WEIGHTS] == arenas);
    assert_true(cat[MEM_GRADIENTS] == arenas);
    assert_true(cat[MEM_OPTIMIZER] == 2 * arenas);
    assert_true(cat[MEM_ACTIVATIONS] > 0);
    model_destroy(m);
    be->destroy(be);
}

/* DP2 (EP2, so EDP 1) with the distributed optimizer, the second member
 * (no MPI: the groups' sizes say 2, their collectives would be copies).
 * Dense arena: one bucket (no overlap) of 42304 elements sharded over 2:
 *   shard 21152 rounded up to 64 -> 21184, padded arena 42368;
 *   weights 42368*4 = 169472 bytes, gradients 169472 (the reduce-scatter
 *   is in place: no second buffer), optimizer m and v of 21184*4 = 84736
 *   bytes, a 84992-byte block each.
 * Expert arena (EDP 1, 4 of the 8 experts): 147456 elements whole,
 *   589824 bytes each of weights, gradients, m, v. */
static void test_state_distributed(void **s)
{
    (void)s;
    Plan plan;
    make_plan(&plan, 2, 1);
    ExecComms c;
    memset(&c, 0, sizeof c);
    c.world_size = 2; c.world_rank = 1;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        c.size_of[k] = mapping_group_size(&plan.map, (GroupKind)k);
        int members[2];
        c.rank_in[k] = mapping_group_of_rank(&plan.map, (GroupKind)k, 1, members);
    }
    assert_int_equal(c.size_of[GROUP_DP_CP], 2);
    assert_int_equal(c.size_of[GROUP_EDP], 1);
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Model *m;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), 0);
    double cat[MEM_CATEGORY_COUNT];
    state_bytes(m, be, cat);
    assert_true(cat[MEM_WEIGHTS] == 169472.0 + 589824.0);
    assert_true(cat[MEM_GRADIENTS] == 169472.0 + 589824.0);   /* reduce-scattered in place */
    assert_true(cat[MEM_OPTIMIZER] == 2 * 84992.0 + 2 * 589824.0);
    assert_int_equal(model_optimizer_elems(m), 21184 + 147456);
    model_destroy(m);
    be->destroy(be);
}

static void *fake_alloc(void *ctx, size_t bytes) { (void)ctx; return malloc(bytes); }
static void fake_free(void *ctx, void *p) { (void)ctx; free(p); }

/* The pool's peak and the categories at that moment: a later, smaller
 * high does not replace them; a reused block counts in its new owner's
 * category. */
static void test_pool_peak_by_category(void **s)
{
    (void)s;
    DevicePool p;
    pool_init(&p, fake_alloc, fake_free, NULL);
    pool_set_category(&p, MEM_WEIGHTS);
    void *w = pool_alloc(&p, 1000);          /* 1024 */
    pool_set_category(&p, MEM_ACTIVATIONS);
    void *a = pool_alloc(&p, 3000);          /* 3072 */
    assert_int_equal(p.peak_in_use, 4096);
    assert_int_equal(p.cat_at_peak[MEM_WEIGHTS], 1024);
    assert_int_equal(p.cat_at_peak[MEM_ACTIVATIONS], 3072);
    assert_int_equal(pool_free(&p, a), 0);
    pool_set_category(&p, MEM_COMM);
    void *c = pool_alloc(&p, 2000);          /* reuses the 3072-byte block */
    assert_ptr_equal(c, a);
    assert_int_equal(p.cat_in_use[MEM_COMM], 3072);
    assert_int_equal(p.cat_in_use[MEM_ACTIVATIONS], 0);
    assert_int_equal(p.peak_in_use, 4096);   /* equal, not above: the snapshot stays */
    assert_int_equal(p.cat_at_peak[MEM_COMM], 0);
    void *d = pool_alloc(&p, 100);           /* 512 more: a new peak of 4608 */
    assert_int_equal(p.peak_in_use, 4608);
    assert_int_equal(p.cat_at_peak[MEM_COMM], 3072 + 512);
    assert_int_equal(p.cat_at_peak[MEM_ACTIVATIONS], 0);
    (void)w; (void)d;
    pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_one_rank),
        cmocka_unit_test(test_state_distributed),
        cmocka_unit_test(test_pool_peak_by_category),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
