/* test_comms.c: comms_init on the CPU backend under mpirun -np 1, 2, 4:
 * each group kind's communicator holds exactly the members written out by
 * hand below (checked with an all-reduce of world ranks), the rank's index
 * and the group sizes are right, and comms_max takes the maximum. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <mpi.h>
#include <string.h>

#include "executor/comms.h"
#include "executor/launch.h"

static CommsContext ctx;   /* one per process: MPI is initialised once */
static int world_rank, world_size;

/* sum and product+1 of the world ranks of my group in kind k */
static void group_signature(GroupKind k, long *sum, long *prod) {
    MPI_Comm c = *(MPI_Comm *)ctx.pub.handle[k];
    long r = world_rank, p = world_rank + 1;
    MPI_Allreduce(&r, sum, 1, MPI_LONG, MPI_SUM, c);
    MPI_Allreduce(&p, prod, 1, MPI_LONG, MPI_PROD, c);
}

/* Expected members of my group, written by hand for the mapping used. */
typedef struct { GroupKind k; int groups[4][4]; int size; } HandGroups;

static void check_kind(const HandGroups *h) {
    const int *mine = NULL;
    int idx = -1;
    for (int g = 0; g < world_size / h->size && !mine; g++)
        for (int j = 0; j < h->size; j++)
            if (h->groups[g][j] == world_rank) { mine = h->groups[g]; idx = j; }
    assert_non_null(mine);
    long want_sum = 0, want_prod = 1;
    for (int j = 0; j < h->size; j++) { want_sum += mine[j]; want_prod *= mine[j] + 1; }
    long sum, prod;
    group_signature(h->k, &sum, &prod);
    assert_int_equal(sum, want_sum);
    assert_int_equal(prod, want_prod);
    assert_int_equal(ctx.pub.size_of[h->k], h->size);
    assert_int_equal(ctx.pub.rank_in[h->k], idx);
    int r;
    MPI_Comm_rank(*(MPI_Comm *)ctx.pub.handle[h->k], &r);
    assert_int_equal(r, idx);
}

static int build(const Mapping *m0) {
    Mapping m = *m0;
    MpError err = {{0}};
    if (mapping_resolve(&m, 4, &err)) { print_error("%s\n", err.msg); return -1; }
    LaunchEnv env;
    if (launch_detect(&env, &err)) { print_error("%s\n", err.msg); return -1; }
    if (env.source == LAUNCH_NONE) { env.rank = 0; env.world_size = 1; }
    if (comms_init(&ctx, &m, &env, EXEC_BACKEND_CPU, 10.0, &err)) { print_error("%s\n", err.msg); return -1; }
    return 0;
}

/* world 4, TP2 EP2: dense grid tp2 dp2, expert grid etp1 ep2 edp2 */
static void test_tp2_ep2(void **state) {
    (void)state;
    if (world_size != 4) skip();
    Mapping m = {.world = 4, .tp = 2, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 2};
    assert_int_equal(build(&m), 0);
    HandGroups hand[] = {
        {GROUP_TP, {{0, 1}, {2, 3}}, 2},
        {GROUP_DP, {{0, 2}, {1, 3}}, 2},
        {GROUP_DP_CP, {{0, 2}, {1, 3}}, 2},
        {GROUP_CP, {{0}, {1}, {2}, {3}}, 1},
        {GROUP_PP, {{0}, {1}, {2}, {3}}, 1},
        {GROUP_TP_CP, {{0, 1}, {2, 3}}, 2},
        {GROUP_ETP, {{0}, {1}, {2}, {3}}, 1},
        {GROUP_EP, {{0, 1}, {2, 3}}, 2},
        {GROUP_EDP, {{0, 2}, {1, 3}}, 2},
        {GROUP_ETP_EP, {{0, 1}, {2, 3}}, 2},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) check_kind(&hand[i]);
    comms_destroy(&ctx);
}

/* world 4, ETP2 EP2 (TP1): dense dp4; experts etp (0,1),(2,3), ep (0,2),(1,3), edp 1 */
static void test_etp2_ep2(void **state) {
    (void)state;
    if (world_size != 4) skip();
    Mapping m = {.world = 4, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 2, .ep = 2};
    assert_int_equal(build(&m), 0);
    HandGroups hand[] = {
        {GROUP_TP, {{0}, {1}, {2}, {3}}, 1},
        {GROUP_DP, {{0, 1, 2, 3}}, 4},
        {GROUP_DP_CP, {{0, 1, 2, 3}}, 4},
        {GROUP_ETP, {{0, 1}, {2, 3}}, 2},
        {GROUP_EP, {{0, 2}, {1, 3}}, 2},
        {GROUP_EDP, {{0}, {1}, {2}, {3}}, 1},
        {GROUP_ETP_EP, {{0, 1, 2, 3}}, 4},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) check_kind(&hand[i]);
    comms_destroy(&ctx);
}

/* world 2, EP2: dense dp2, experts ep2 */
static void test_ep2(void **state) {
    (void)state;
    if (world_size != 2) skip();
    Mapping m = {.world = 2, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 2};
    assert_int_equal(build(&m), 0);
    HandGroups hand[] = {
        {GROUP_DP, {{0, 1}}, 2},
        {GROUP_EP, {{0, 1}}, 2},
        {GROUP_EDP, {{0}, {1}}, 1},
        {GROUP_TP, {{0}, {1}}, 1},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) check_kind(&hand[i]);
    comms_destroy(&ctx);
}

/* any world: DP only; comms_max gives the largest value of every rank */
static void test_dp_and_max(void **state) {
    (void)state;
    Mapping m = {.world = world_size, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    assert_int_equal(build(&m), 0);
    assert_int_equal(ctx.pub.size_of[GROUP_DP], world_size);
    assert_int_equal(ctx.pub.rank_in[GROUP_DP], world_rank);
    assert_int_equal(ctx.pub.size_of[GROUP_EP], 1);
    double v[2] = {(double)world_rank, -(double)world_rank};
    MpError err = {{0}};
    assert_int_equal(comms_max(&ctx, v, 2, &err), 0);
    assert_true(v[0] == (double)(world_size - 1));
    assert_true(v[1] == 0.0);
    comms_destroy(&ctx);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    memset(&ctx, 0, sizeof ctx);
    ctx.mpi_active = true;   /* initialised above; comms_destroy must not finalise */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tp2_ep2),
        cmocka_unit_test(test_etp2_ep2),
        cmocka_unit_test(test_ep2),
        cmocka_unit_test(test_dp_and_max),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
