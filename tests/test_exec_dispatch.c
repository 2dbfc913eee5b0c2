/* test_exec_dispatch.c: the dispatcher's host bookkeeping (executor/dispatcher.c)
 * against maps worked out by hand, and the synthetic / file data source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <math.h>

#include "executor/backend.h"
#include "executor/data.h"
#include "executor/dispatcher.h"

/* 3 tokens, top-2, 4 experts, EP 2 (experts 0,1 on rank 0; 2,3 on rank 1).
 * topk: t0 -> (2, 0), t1 -> (0, 3), t2 -> (0, 1)
 * expert 0 gets pairs (t0,j1) (t1,j0) (t2,j0) = rows 0,1,2; expert 1: (t2,j1) row 3;
 * expert 2: (t0,j0) row 4; expert 3: (t1,j1) row 5. */
static const int32_t topk[6] = {2, 0, 0, 3, 0, 1};

static void test_dropless_local(void **s)
{
    (void)s;
    DispatchPlan p;
    assert_int_equal(dispatch_plan_init(&p, 3, 2, 4, 2, 1, 0), 0);
    dispatch_plan_local(&p, topk);
    int32_t want[6] = {4, 0, 1, 5, 2, 3};
    assert_memory_equal(p.row_of, want, sizeof want);
    assert_int_equal(p.send_rows, 6);
    assert_int_equal(p.send_counts[0], 4);   /* experts 0, 1 */
    assert_int_equal(p.send_counts[1], 2);
    assert_int_equal(p.send_displs[1], 4);
    assert_int_equal(p.dropped, 0);
    dispatch_plan_free(&p);
}

/* capacity ceil(3*2/4 * 1.0) = 2: expert 0 keeps t0 and t1, drops t2's pair;
 * every expert owns 2 rows: e0 [0,2) e1 [2,4) e2 [4,6) e3 [6,8). */
static void test_capacity_local(void **s)
{
    (void)s;
    DispatchPlan p;
    assert_int_equal(dispatch_plan_init(&p, 3, 2, 4, 2, 1, 1.0), 0);
    assert_int_equal(p.capacity, 2);
    dispatch_plan_local(&p, topk);
    int32_t want[6] = {4, 0, 1, 6, -1, 2};
    assert_memory_equal(p.row_of, want, sizeof want);
    assert_int_equal(p.dropped, 1);
    assert_int_equal(p.send_rows, 8);
    assert_int_equal(p.send_counts[0], 4);
    assert_int_equal(p.send_counts[1], 4);
    dispatch_plan_free(&p);
}

/* The training step's path: the backend's moe_plan writes the row map where
 * the top-k is (CPU: host memory) and returns only the kept counts; the
 * plan is then built from the counts.  Same maps as the two examples above. */
static void test_backend_moe_plan_and_counts(void **s)
{
    (void)s;
    ExecComms c;
    memset(&c, 0, sizeof c);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c.size_of[k] = 1;
    Backend *b;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &b, &err), 0);
    for (int cap = 0; cap < 2; cap++) {
        DispatchPlan p;
        assert_int_equal(dispatch_plan_init(&p, 3, 2, 4, 2, 1, cap ? 1.0 : 0.0), 0);
        int32_t row_of[6], kept[4];
        b->moe_plan(b, row_of, kept, topk, 3, 2, 4, p.capacity);
        int32_t want_row[2][6] = {{4, 0, 1, 5, 2, 3}, {4, 0, 1, 6, -1, 2}};
        int32_t want_kept[2][4] = {{3, 1, 1, 1}, {2, 1, 1, 1}};
        assert_memory_equal(row_of, want_row[cap], sizeof row_of);
        assert_memory_equal(kept, want_kept[cap], sizeof kept);
        dispatch_plan_counts(&p, kept);
        assert_int_equal(p.dropped, cap ? 1 : 0);
        assert_int_equal(p.send_rows, cap ? 8 : 6);
        assert_int_equal(p.send_counts[0], 4);
        assert_int_equal(p.send_counts[1], cap ? 4 : 2);
        assert_int_equal(p.send_displs[1], 4);
        assert_int_equal(p.expert_rows[3], 1 + cap);
        dispatch_plan_free(&p);
    }
    assert_int_equal(b->status(b, &err), 0);
    b->destroy(b);
}

/* finish on EP rank 1 of 2 with ETP 2: El = 2 local experts.
 * received counts [etp q][ep src s][e]: q0: s0 (1, 2), s1 (0, 1); q1: s0 (2, 0), s1 (1, 1)
 * q0 receives 4 rows, q1 4 rows: pad 4.  Gathered buffer rows:
 *   q0: s0e0 [0], s0e1 [1,2], s1e1 [3];  q1 (base 4): s0e0 [4,5], s1e0 [6], s1e1 [7]
 * expert-major: e0: q0s0 0; q1s0 4,5; q1s1 6  -> 4 rows; e1: q0s0 1,2; q0s1 3; q1s1 7 -> 4 rows */
static void test_finish_etp(void **s)
{
    (void)s;
    DispatchPlan p;
    assert_int_equal(dispatch_plan_init(&p, 4, 2, 4, 2, 2, 0), 0);
    int32_t c[8] = {1, 2, 0, 1, 2, 0, 1, 1};
    memcpy(p.recv_expert_rows, c, sizeof c);
    assert_int_equal(dispatch_plan_finish(&p, 1, 0), 0);
    assert_int_equal(p.padded, 0);
    assert_int_equal(p.pad_rows, 4);
    assert_int_equal(p.recv_rows, 4);
    assert_int_equal(p.recv_counts[0], 2);   /* this rank (q1) from s0: 2 + 0 */
    assert_int_equal(p.recv_counts[1], 2);
    assert_int_equal(p.recv_displs[1], 2);
    assert_int_equal(p.rows, 8);
    assert_int_equal(p.group_rows[0], 4);
    assert_int_equal(p.group_rows[1], 4);
    int32_t want[8] = {0, 4, 5, 6, 1, 2, 3, 7};
    assert_memory_equal(p.sort_src, want, sizeof want);
    dispatch_plan_free(&p);
}

/* padded groups to a multiple of 8 rows, EP 1 ETP 1, El = 4 experts (T 20,
 * k 2: 40 rows): counts 9, 12, 10, 9 -> 16 each, 64 rows: 24 padding rows =
 * 60% of 40 > 1/4: not padded.  Counts 15, 16, 14, 15 (60 rows; T 30): 4 x
 * 16 = 64, 4 padding rows = 6.7% <= 25%: padded; sort_src of expert e = its
 * rows then -1s.  Counts 15, 20, 14, 15 (64; T 32): 16 + 24 + 16 + 16 = 72,
 * 12.5%: padded, groups start at 0, 16, 40, 56. */
static void test_finish_padded(void **s)
{
    (void)s;
    DispatchPlan p;
    assert_int_equal(dispatch_plan_init(&p, 20, 2, 4, 1, 1, 0), 0);
    int32_t c1[4] = {9, 12, 10, 9};
    memcpy(p.recv_expert_rows, c1, sizeof c1);
    assert_int_equal(dispatch_plan_finish(&p, 0, 8), 0);
    assert_int_equal(p.padded, 0);
    assert_int_equal(p.rows, 40);
    assert_int_equal(p.real_rows, 40);
    assert_int_equal(p.group_rows[1], 12);
    dispatch_plan_free(&p);

    assert_int_equal(dispatch_plan_init(&p, 30, 2, 4, 1, 1, 0), 0);
    int32_t c2[4] = {15, 16, 14, 15};
    memcpy(p.recv_expert_rows, c2, sizeof c2);
    assert_int_equal(dispatch_plan_finish(&p, 0, 8), 0);
    assert_int_equal(p.padded, 1);
    assert_int_equal(p.rows, 64);
    assert_int_equal(p.real_rows, 60);
    for (int e = 0; e < 4; e++) assert_int_equal(p.group_rows[e], 16);
    /* unpadded sort_src is 0..59 (EP 1, ETP 1: the received order is expert-major) */
    int starts[4] = {0, 15, 31, 45};
    for (int e = 0; e < 4; e++)
        for (int i = 0; i < 16; i++)
            assert_int_equal(p.sort_src[e * 16 + i], i < c2[e] ? starts[e] + i : -1);
    assert_int_equal(p.recv_counts[0], 60);   /* the all-to-all counts keep the real rows */
    dispatch_plan_free(&p);

    assert_int_equal(dispatch_plan_init(&p, 32, 2, 4, 1, 1, 0), 0);
    int32_t c3[4] = {15, 20, 14, 15};
    memcpy(p.recv_expert_rows, c3, sizeof c3);
    assert_int_equal(dispatch_plan_finish(&p, 0, 8), 0);
    assert_int_equal(p.padded, 1);
    assert_int_equal(p.rows, 72);
    int32_t sizes[4] = {16, 24, 16, 16}, at[4] = {0, 16, 40, 56}, src0[4] = {0, 15, 35, 49};
    for (int e = 0; e < 4; e++) {
        assert_int_equal(p.group_rows[e], sizes[e]);
        for (int i = 0; i < sizes[e]; i++)
            assert_int_equal(p.sort_src[at[e] + i], i < c3[e] ? src0[e] + i : -1);
    }
    assert_int_equal(dispatch_plan_finish(&p, 0, 0), 0);   /* no alignment: not padded */
    assert_int_equal(p.padded, 0);
    assert_int_equal(p.rows, 64);
    dispatch_plan_free(&p);
}

static void test_synthetic_data(void **s)
{
    (void)s;
    DataSource d;
    MpError err;
    assert_int_equal(data_open(&d, NULL, 16, 128, 8, 42, &err), 0);
    int32_t in[8], tg[8], in2[8], tg2[8];
    data_sequence(&d, 5, in, tg);
    data_sequence(&d, 5, in2, tg2);
    assert_memory_equal(in, in2, sizeof in);
    for (int t = 0; t < 8; t++) {
        assert_int_equal(tg[t], (5 * in[t] + 3) % 128);
        if (t) assert_int_equal(in[t], tg[t - 1]);
    }
    data_close(&d);
}

static void test_file_data(void **s)
{
    (void)s;
    char path[] = "/tmp/moeplan-data-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unsigned char raw[10] = {1, 0, 2, 0, 0x10, 0x01, 4, 0, 5, 0};   /* 1 2 272 4 5 (uint16 LE) */
    assert_int_equal(write(fd, raw, sizeof raw), (int)sizeof raw);
    close(fd);
    DataSource d;
    MpError err;
    assert_int_equal(data_open(&d, path, 16, 300, 2, 1, &err), 0);
    int32_t in[2], tg[2];
    data_sequence(&d, 1, in, tg);   /* p = (1*2) mod (5-2) = 2 */
    assert_int_equal(in[0], 272);
    assert_int_equal(in[1], 4);
    assert_int_equal(tg[1], 5);
    data_close(&d);
    /* an id at or above the vocabulary is refused, naming the token */
    assert_int_equal(data_open(&d, path, 16, 100, 2, 1, &err), -1);
    assert_non_null(strstr(err.msg, "token 2"));
    /* 10 bytes are not whole uint32 ids */
    assert_int_equal(data_open(&d, path, 32, 100, 2, 1, &err), -1);
    assert_non_null(strstr(err.msg, "size"));
    unlink(path);
    assert_int_equal(data_open(&d, path, 16, 100, 2, 1, &err), -1);
    assert_non_null(strstr(err.msg, "cannot open"));
}

/* The auxiliary load-balancing loss of the CPU backend, worked by hand:
 * N 2 tokens, E 2 experts, k 1, coeff 0.1.
 *   probs [[0.7, 0.3], [0.4, 0.6]]  ->  P = [0.55, 0.45]
 *   choices {0, 1}: f = [0.5, 0.5], aux = 0.1 * 2 * (0.275 + 0.225) = 0.1
 *   choices {0, 0}: f = [1, 0],     aux = 0.1 * 2 * 0.55 = 0.11,
 *     gcoef = 0.1 * 2 * f / 2 = [0.1, 0]
 *   backward, scale 1, row 0: dot = 0.7 * 0.1 = 0.07,
 *     d = [0.7 * (0.1 - 0.07), 0.3 * (0 - 0.07)] = [0.021, -0.021]
 *   row 1: dot = 0.04, d = [0.4 * 0.06, 0.6 * -0.04] = [0.024, -0.024] */
static void test_aux_loss_by_hand(void **state)
{
    (void)state;
    ExecComms c;
    memset(&c, 0, sizeof c);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c.size_of[k] = 1;
    c.world_size = 1;
    Backend *b;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &b, &err), 0);
    float probs[4] = {0.7f, 0.3f, 0.4f, 0.6f}, g[2], acc = 0;
    int32_t split[2] = {0, 1}, same[2] = {0, 0};
    b->aux_loss_forward(b, g, &acc, probs, split, 2, 2, 1, 0.1f, 1.0f);
    assert_float_equal(acc, 0.1, 1e-6);
    acc = 0;
    b->aux_loss_forward(b, g, &acc, probs, same, 2, 2, 1, 0.1f, 2.0f);   /* weight 2 */
    assert_float_equal(acc, 0.22, 1e-6);
    assert_float_equal(g[0], 0.1, 1e-7);
    assert_float_equal(g[1], 0.0, 1e-7);
    float dl[4] = {1, 1, 1, 1};   /* accumulated into */
    b->aux_loss_backward(b, dl, probs, g, 2, 2, 1.0f);
    assert_float_equal(dl[0], 1.021, 1e-6);
    assert_float_equal(dl[1], 0.979, 1e-6);
    assert_float_equal(dl[2], 1.024, 1e-6);
    assert_float_equal(dl[3], 0.976, 1e-6);
    b->destroy(b);
}

/* Random tokens: targets are the inputs shifted by one, ids below V, and
 * not the learnable map (x -> 5x+3 mod V) */
static void test_random_data(void **state)
{
    (void)state;
    DataSource d;
    MpError err;
    assert_int_equal(data_open(&d, NULL, 16, 100, 64, 5, &err), 0);
    d.random = 1;
    int32_t in[64], tg[64], in2[64], tg2[64];
    data_sequence(&d, 3, in, tg);
    data_sequence(&d, 3, in2, tg2);
    int follows_map = 0;
    for (int t = 0; t < 64; t++) {
        assert_true(in[t] >= 0 && in[t] < 100 && tg[t] >= 0 && tg[t] < 100);
        if (t + 1 < 64) assert_int_equal(tg[t], in[t + 1]);
        assert_int_equal(in[t], in2[t]);
        follows_map += tg[t] == data_synthetic_next(in[t], 100);
    }
    assert_true(follows_map < 10);
    data_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropless_local), cmocka_unit_test(test_capacity_local),
        cmocka_unit_test(test_backend_moe_plan_and_counts),
        cmocka_unit_test(test_finish_etp),
        cmocka_unit_test(test_finish_padded), cmocka_unit_test(test_synthetic_data),
        cmocka_unit_test(test_file_data), cmocka_unit_test(test_aux_loss_by_hand),
        cmocka_unit_test(test_random_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
