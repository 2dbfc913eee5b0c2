/* test_pipeline_p2p.c: the pipeline's send / receive batches
 * (core/schedule.h: schedule_op and schedule_p2p_boundary, as
 * executor/train.c issues them) cannot deadlock and pair up in order.
 *
 * Model of the transport (NCCL, and the CPU backend's MPI_Issend):
 *   - a rank posts one batch at a time and goes on only when every transfer
 *     of it completed;
 *   - a send and a receive complete together, once both are posted;
 *   - transfers between two ranks match in posting order (no tags).
 * For every rank the batches are built as the executor builds them: at an
 * exchange boundary, the sends of the operations since the previous one
 * (forward: to the next virtual stage; backward: to the previous one) and
 * the receives of the operations up to the next one.  The test checks that
 * every send meets the receive of the same (tensor, virtual stage,
 * micro-batch), and that the batches all complete, for pp 2..8, vpp 1..4
 * and m up to 16; and, as a control, that exchanging at every boundary of
 * the interleaved schedule deadlocks (so the check can fail).
 * With --overlap p2p the executor splits each exchange of the interleaved
 * steady state in two batches, the forward half started right after the
 * pair's forward (train.c early_forward_batch), the rest at the boundary:
 * the same model, one batch at a time per rank (the GPU's stream order:
 * a batch starts once the one before it completed), checks that too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/schedule.h"

enum { MAX_PP = 8, MAX_OPS = 2 * 16 * 4, MAX_X = 2 * MAX_OPS };

typedef struct {
    bool send;
    int peer;
    int msg;        /* (grad?, producing virtual stage, micro-batch) packed */
    int batch;      /* index of the rank's batch */
    int match;      /* index of the peer's transfer it pairs with */
    bool done;
} Xfer;

typedef struct {
    Xfer x[MAX_X];
    int n;
    int batches;
    int first[2 * MAX_OPS + 2];   /* first transfer of each batch; first[batches] = n */
} RankPlan;

static int msg(bool grad, int vs, int mb) { return (grad ? 1 << 20 : 0) | vs << 10 | mb; }

/* The transfers of the operations [k0, k1) of the exchange at boundary i
 * (sends of [prev, i), receives of [i, next)) in direction fwd (forward
 * tensors) or not, appended to the rank's current batch. */
static void add(const PipeSchedule *s, int r, RankPlan *p, int prev, int i, int next, bool fwd)
{
    int N = schedule_num_ops(s), pp = s->pp, last = pp * s->vpp - 1;
    for (int k = prev; k < i; k++) {
        PipeOp op = schedule_op(s, r, k);
        int vs = op.chunk * pp + r;
        if (op.forward != fwd) continue;
        if (op.forward && vs < last)
            p->x[p->n++] = (Xfer){true, (r + 1) % pp, msg(false, vs, op.microbatch), p->batches, -1, false};
        if (!op.forward && vs > 0)
            p->x[p->n++] = (Xfer){true, (r + pp - 1) % pp, msg(true, vs, op.microbatch), p->batches, -1, false};
    }
    for (int k = i; k < next && k < N; k++) {
        PipeOp op = schedule_op(s, r, k);
        int vs = op.chunk * pp + r;
        if (op.forward != fwd) continue;
        if (op.forward && vs > 0)
            p->x[p->n++] = (Xfer){false, (r + pp - 1) % pp, msg(false, vs - 1, op.microbatch), p->batches, -1, false};
        if (!op.forward && vs < last)
            p->x[p->n++] = (Xfer){false, (r + 1) % pp, msg(true, vs + 1, op.microbatch), p->batches, -1, false};
    }
}

/* every_boundary: exchange at every boundary (the control) instead of
 * schedule_p2p_boundary; split: the forward half of an exchange whose
 * previous range holds a forward followed by another operation (the
 * interleaved steady state's pair) is a batch of its own, before the rest
 * (train.c: early_forward_batch, when at most one forward receives) */
static void build(const PipeSchedule *s, int r, bool every_boundary, bool split, RankPlan *p)
{
    int N = schedule_num_ops(s), pp = s->pp, prev = 0;
    p->n = p->batches = 0;
    for (int i = 0; i <= N; i++) {
        if (!every_boundary && !schedule_p2p_boundary(s, r, i)) continue;
        int next = i + 1;
        while (next < N && !every_boundary && !schedule_p2p_boundary(s, r, next)) next++;
        bool early = false;
        if (split) {
            int receiving = 0;
            for (int k = prev; k + 1 < i; k++) early |= schedule_op(s, r, k).forward;
            for (int k = i; k < next && k < N; k++) {
                PipeOp op = schedule_op(s, r, k);
                receiving += op.forward && op.chunk * pp + r > 0;
            }
            early &= receiving <= 1;
        }
        p->first[p->batches] = p->n;
        if (early) {
            add(s, r, p, prev, i, next, true);
            p->batches++;
            p->first[p->batches] = p->n;
            add(s, r, p, prev, i, next, false);
        } else {
            add(s, r, p, prev, i, next, true);
            add(s, r, p, prev, i, next, false);
        }
        p->batches++;
        prev = i;
    }
    p->first[p->batches] = p->n;
}

/* 0: all batches complete; 1: a send meets a different tensor; 2: deadlock */
static int run(const PipeSchedule *s, bool every_boundary, bool split)
{
    static RankPlan plan[MAX_PP];
    int pp = s->pp;
    for (int r = 0; r < pp; r++) build(s, r, every_boundary, split, &plan[r]);
    /* pair the k-th send r -> q with the k-th receive at q from r */
    for (int r = 0; r < pp; r++)
        for (int q = 0; q < pp; q++) {
            int j = 0;
            for (int i = 0; i < plan[r].n; i++) {
                Xfer *x = &plan[r].x[i];
                if (!x->send || x->peer != q) continue;
                while (j < plan[q].n && (plan[q].x[j].send || plan[q].x[j].peer != r)) j++;
                if (j == plan[q].n || plan[q].x[j].msg != x->msg) return 1;
                x->match = j;
                plan[q].x[j].match = i;
                j++;
            }
        }
    for (int r = 0; r < pp; r++)
        for (int i = 0; i < plan[r].n; i++)
            if (plan[r].x[i].match < 0) return 1;   /* a receive nobody sends */
    int at[MAX_PP] = {0};
    for (;;) {
        bool progress = false, finished = true;
        for (int r = 0; r < pp; r++) {
            RankPlan *p = &plan[r];
            while (at[r] < p->batches) {
                bool all = true;
                for (int i = p->first[at[r]]; i < p->first[at[r] + 1]; i++) {
                    Xfer *x = &p->x[i];
                    if (x->done) continue;
                    Xfer *y = &plan[x->peer].x[x->match];
                    if (at[x->peer] == y->batch) { x->done = y->done = true; progress = true; }
                    else all = false;
                }
                if (!all) break;
                at[r]++;
                progress = true;
            }
            finished &= at[r] == p->batches;
        }
        if (finished) return 0;
        if (!progress) return 2;
    }
}

static void test_batches_complete(void **state)
{
    (void)state;
    int checked = 0;
    for (int pp = 2; pp <= MAX_PP; pp++)
        for (int vpp = 1; vpp <= 4; vpp++)
            for (int m = 1; m <= 16; m++) {
                if (vpp > 1 && m % pp) continue;   /* Megatron's constraint */
                PipeSchedule s = {pp, vpp, m};
                for (int split = 0; split < 2; split++) {
                    int rc = run(&s, false, split);
                    if (rc)
                        print_error("pp %d vpp %d m %d%s: %s\n", pp, vpp, m, split ? " split" : "",
                                    rc == 1 ? "mismatch" : "deadlock");
                    assert_int_equal(rc, 0);
                    checked++;
                }
            }
    assert_true(checked > 100);
}

/* 1F1B exchanges at every boundary (Megatron-LM's send_forward_recv_backward
 * pairs): schedule_p2p_boundary is 1 everywhere */
static void test_1f1b_every_boundary(void **state)
{
    (void)state;
    PipeSchedule s = {4, 1, 6};
    for (int i = 0; i <= schedule_num_ops(&s); i++) assert_int_equal(schedule_p2p_boundary(&s, 1, i), 1);
    assert_int_equal(run(&s, true, false), 0);
}

/* The interleaved schedule with an exchange between a forward and the
 * backward of its pair deadlocks: PP 2, vpp 2, m 4 (the control). */
static void test_interleaved_every_boundary_deadlocks(void **state)
{
    (void)state;
    PipeSchedule s = {2, 2, 4};
    assert_int_equal(run(&s, true, false), 2);
    /* rank 0: warmup 4, steady pairs (F c0 m2, B c1 m0) ... : boundaries
     * 0..4, then 6, 8, 10, 12, then 13, 14, 15, 16 */
    int want[17] = {1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1};
    for (int i = 0; i <= 16; i++) assert_int_equal(schedule_p2p_boundary(&s, 0, i), want[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_complete),
        cmocka_unit_test(test_1f1b_every_boundary),
        cmocka_unit_test(test_interleaved_every_boundary_deadlocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
