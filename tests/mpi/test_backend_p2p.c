/* test_backend_p2p.c: the CPU backend's nonblocking point-to-point batches
 * (Backend.p2p_start / p2p_wait, executor/backend.h) under mpirun -np 1, 2,
 * 4, on a mapping whose CP group and PP group are all ranks (CP = world for
 * the ring, a second mapping with PP = world for the pipeline stream):
 *   - a ring shift started, other work done, waited: every rank holds its
 *     predecessor's values (written out by hand: 1000 * rank + i);
 *   - two shifts in flight at once on the ring stream, waited in reverse
 *     order, each buffer right;
 *   - a group of one posts nothing (handle -1) and waiting -1 is a no-op;
 *   - a wait for a handle not in flight, and a batch of more than
 *     BACKEND_P2P_MAX transfers, are sticky errors naming the operation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "executor/backend.h"
#include "tests/mpi/exec_test_comms.h"
#include "tests/mpi/exec_test_harness.h"

enum { N = 64 };

static int world_rank, world_size;


/* ExecComms for a mapping with cp (or pp) = world */
static void comms_for(ExecTestComms *tc, bool pipeline)
{
    Mapping m;
    memset(&m, 0, sizeof m);
    m.world = world_size; m.tp = 1; m.etp = 1; m.ep = 1; m.vpp = 1;
    m.cp = pipeline ? 1 : world_size;
    m.pp = pipeline ? world_size : 1;
    MpError err;
    assert_int_equal(mapping_resolve(&m, 4, &err), 0);
    exec_test_comms_build(&m, MPI_COMM_WORLD, tc);
}

static void fill(float *x, int rank)
{
    for (int i = 0; i < N; i++) x[i] = (float)(1000 * rank + i);
}

static int holds(const float *x, int rank)
{
    for (int i = 0; i < N; i++)
        if (x[i] != (float)(1000 * rank + i)) return 0;
    return 1;
}

/* send to next, receive from previous in group g of size n, my index r */
static int shift(Backend *b, GroupKind g, float *send, float *recv)
{
    int n = b->comms->size_of[g], r = b->comms->rank_in[g];
    P2POp ops[2] = {{true, (r + 1) % n, send, N}, {false, (r + n - 1) % n, recv, N}};
    return b->p2p_start(b, ops, 2, DT_F32, g);
}

static void test_ring_shift(void **state)
{
    (void)state;
    for (int pipeline = 0; pipeline < 2; pipeline++) {
        ExecTestComms tc;
        comms_for(&tc, pipeline);
        Backend *b;
        MpError err;
        assert_int_equal(backend_cpu_create(&tc.comms, &b, &err), 0);
        GroupKind g = pipeline ? GROUP_PP : GROUP_CP;
        int n = tc.comms.size_of[g], r = tc.comms.rank_in[g];
        float a[N], got[N], c[N], got2[N];
        fill(a, r);
        memset(got, 0, sizeof got);
        int h = shift(b, g, a, got);
        if (n == 1) {
            assert_int_equal(h, -1);   /* a group of one: nothing posted */
        } else {
            assert_true(h >= 0 && h < BACKEND_P2P_INFLIGHT);
            /* a second shift in flight beside the first, waited first */
            fill(c, r + 100);
            int h2 = shift(b, g, c, got2);
            assert_true(h2 >= 0 && h2 != h);
            b->p2p_wait(b, h2);
            b->p2p_wait(b, h);
            assert_true(holds(got, (r + n - 1) % n));
            assert_true(holds(got2, (r + n - 1) % n + 100));
        }
        b->p2p_wait(b, -1);            /* a no-op */
        assert_int_equal(b->status(b, &err), 0);
        /* the blocking form is start then wait */
        memset(got, 0, sizeof got);
        P2POp ops[2] = {{true, (r + 1) % n, a, N}, {false, (r + n - 1) % n, got, N}};
        b->p2p(b, ops, 2, DT_F32, g);
        if (n > 1) assert_true(holds(got, (r + n - 1) % n));
        assert_int_equal(b->status(b, &err), 0);
        b->destroy(b);
        exec_test_comms_free(&tc);
    }
}

static void test_misuse_is_sticky_error(void **state)
{
    (void)state;
    ExecTestComms tc;
    comms_for(&tc, false);
    Backend *b;
    MpError err;
    assert_int_equal(backend_cpu_create(&tc.comms, &b, &err), 0);
    b->p2p_wait(b, 3);   /* never started */
    assert_int_equal(b->status(b, &err), -1);
    assert_non_null(strstr(err.msg, "p2p_wait: not a batch in flight"));
    b->destroy(b);
    if (world_size > 1) {
        assert_int_equal(backend_cpu_create(&tc.comms, &b, &err), 0);
        float x[BACKEND_P2P_MAX + 1];
        P2POp ops[BACKEND_P2P_MAX + 1];
        for (int i = 0; i <= BACKEND_P2P_MAX; i++) ops[i] = (P2POp){true, 0, x, 1};
        assert_int_equal(b->p2p_start(b, ops, BACKEND_P2P_MAX + 1, DT_F32, GROUP_CP), -1);
        assert_int_equal(b->status(b, &err), -1);
        assert_non_null(strstr(err.msg, "more than BACKEND_P2P_MAX"));
        b->destroy(b);
    }
    exec_test_comms_free(&tc);
}

int main(int argc, char **argv)
{
    if (exec_harness_init(&argc, &argv, &world_rank, &world_size)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_shift),
        cmocka_unit_test(test_misuse_is_sticky_error),
    };
    return exec_harness_run_group("backend_p2p", tests, (int)(sizeof tests / sizeof tests[0]));
}
