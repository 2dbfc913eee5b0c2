/* test_exec_pool.c: the caching device pool (executor/pool.c) over a
 * counting host allocator: reuse, best fit within 2x, rounding to the
 * granule, allocations counted inside a step, bad frees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "executor/pool.h"

static int raw_calls, raw_frees;
static size_t raw_last;
static void *counting_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    raw_calls++;
    raw_last = bytes;
    return malloc(bytes);
}
static void counting_free(void *ctx, void *p)
{
    (void)ctx;
    raw_frees++;
    free(p);
}

static void test_reuse_and_best_fit(void **s)
{
    (void)s;
    DevicePool p;
    raw_calls = raw_frees = 0;
    pool_init(&p, counting_alloc, counting_free, NULL);
    void *a = pool_alloc(&p, 1000);
    assert_int_equal(raw_last, 1024);            /* 2 granules of 512 */
    void *b = pool_alloc(&p, 5000);
    assert_int_equal(raw_last, 5120);
    assert_int_equal(raw_calls, 2);
    assert_int_equal(p.in_use, 1024 + 5120);
    assert_int_equal(pool_free(&p, a), 0);
    void *c = pool_alloc(&p, 900);               /* a's block again */
    assert_ptr_equal(c, a);
    assert_int_equal(raw_calls, 2);
    void *d = pool_alloc(&p, 3000);              /* b is in use: a new block */
    assert_int_equal(raw_calls, 3);
    assert_int_equal(pool_free(&p, b), 0);
    assert_int_equal(pool_free(&p, d), 0);
    /* 2600 -> 3072: d's 3072 fits exactly, b's 5120 fits too; best fit is d */
    assert_ptr_equal(pool_alloc(&p, 2600), d);
    /* 100 -> 512: b's 5120 is more than twice that: a new block */
    pool_alloc(&p, 100);
    assert_int_equal(raw_calls, 4);
    assert_int_equal(p.reserved, 1024 + 5120 + 3072 + 512);
    assert_int_equal(p.peak_in_use, 1024 + 5120 + 3072);
    /* in use: a (as c), d, the 512; free: b */
    assert_int_equal(pool_trim(&p), 1);
    assert_int_equal(raw_frees, 1);
    assert_int_equal(p.reserved, 1024 + 3072 + 512);
    assert_int_equal(p.count, 3);
    assert_int_equal(pool_free(&p, d), 0);       /* still known after the trim */
    pool_destroy(&p);
    assert_int_equal(raw_frees, 4);
}

static void test_counts_and_bad_frees(void **s)
{
    (void)s;
    DevicePool p;
    raw_calls = raw_frees = 0;
    pool_init(&p, counting_alloc, counting_free, NULL);
    void *a = pool_alloc(&p, 4096);
    pool_set_in_step(&p, 1);
    void *b = pool_alloc(&p, 4096);              /* a is in use: raw, inside the step */
    assert_int_equal(p.step_raw_allocs, 1);
    assert_int_equal(pool_free(&p, b), 0);
    pool_alloc(&p, 4000);                        /* b's block: no raw call */
    assert_int_equal(p.step_raw_allocs, 1);
    assert_int_equal(p.raw_allocs, 2);
    pool_set_in_step(&p, 0);
    int x;
    assert_int_equal(pool_free(&p, &x), -1);     /* not from the pool */
    assert_int_equal(pool_free(&p, a), 0);
    assert_int_equal(pool_free(&p, a), -1);      /* twice */
    assert_int_equal(pool_free(&p, NULL), 0);
    pool_destroy(&p);
    assert_int_equal(raw_frees, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_best_fit),
        cmocka_unit_test(test_counts_and_bad_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
