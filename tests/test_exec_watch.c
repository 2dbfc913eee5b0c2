/* test_exec_watch.c: the deadline of the collectives a GPU backend enqueues
 * asynchronously (executor/device_watch.c), on the CPU: the "events" are
 * flags that the test sets when their fake collective completes, the query
 * reads them.  Also the watchdog's rank check naming such a collective. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "executor/comms.h"
#include "executor/device_watch.h"
#include "executor/watchdog.h"

#define NS 1000000000LL   /* ns per s */

typedef struct {
    int done[DEVICE_WATCH_CAPACITY];   /* done[i]: the work recorded in event i completed */
    int queries;
} FakeDevice;

static int fake_query(void *ctx, void *event) {
    FakeDevice *d = ctx;
    d->queries++;
    return *(int *)event;
}

/* attaches n fake events: event i is &d->done[i] */
static void attach(DeviceWatch *w, FakeDevice *d, int n) {
    memset(d, 0, sizeof *d);
    void *ev[DEVICE_WATCH_CAPACITY];
    for (int i = 0; i < n; i++) ev[i] = &d->done[i];
    device_watch_init(w);
    assert_int_equal(device_watch_attach(w, ev, n, fake_query, d), 0);
}

/* enqueues one collective at time t_ns; returns its event's flag */
static int *enqueue(DeviceWatch *w, int group, const char *op, long long t_ns) {
    int *ev = device_watch_reserve(w, t_ns);
    assert_non_null(ev);
    *ev = 0;   /* recorded: not complete yet */
    device_watch_commit(w, group, op, t_ns);
    return ev;
}

static void test_retire_in_order(void **state) {
    (void)state;
    DeviceWatch w;
    FakeDevice d;
    attach(&w, &d, 8);
    DeviceWatchOverdue late;
    int *a = enqueue(&w, GROUP_EP, "all_to_all_v", 1 * NS);
    int *b = enqueue(&w, GROUP_DP_CP, "all_reduce", 1 * NS);
    int *c = enqueue(&w, GROUP_EP, "all_to_all_v", 1 * NS);
    assert_int_equal(device_watch_outstanding(&w), 3);
    /* the second completes first (another stream): nothing retires past the first */
    *b = 1;
    assert_int_equal(device_watch_overdue(&w, 2 * NS, 40.0, &late), 0);
    assert_int_equal(device_watch_outstanding(&w), 3);
    *a = 1;
    assert_int_equal(device_watch_overdue(&w, 3 * NS, 40.0, &late), 0);
    assert_int_equal(device_watch_outstanding(&w), 1);   /* a and b retired, c still out */
    *c = 1;
    assert_int_equal(device_watch_overdue(&w, 4 * NS, 40.0, &late), 0);
    assert_int_equal(device_watch_outstanding(&w), 0);
    assert_int_equal(w.committed, 3);
    assert_int_equal(w.retired, 3);
    device_watch_destroy(&w);
}

static void test_stuck_reported_after_deadline_only(void **state) {
    (void)state;
    DeviceWatch w;
    FakeDevice d;
    attach(&w, &d, 8);
    DeviceWatchOverdue late;
    int *a = enqueue(&w, GROUP_DP_CP, "all_reduce", 10 * NS);
    enqueue(&w, GROUP_EP, "all_to_all_v", 10 * NS);   /* stuck: never completes */
    enqueue(&w, GROUP_DP_CP, "all_reduce", 10 * NS);  /* behind it */
    *a = 1;
    /* seen complete at 12 s: the stuck one's clock starts there (not at 10 s) */
    assert_int_equal(device_watch_overdue(&w, 12 * NS, 40.0, &late), 0);
    assert_int_equal(device_watch_overdue(&w, 51 * NS, 40.0, &late), 0);   /* 39 s */
    assert_int_equal(device_watch_overdue(&w, 52 * NS, 40.0, &late), 0);   /* exactly 40 s: not past */
    memset(&late, 0, sizeof late);
    assert_int_equal(device_watch_overdue(&w, 52 * NS + NS / 2, 40.0, &late), 1);   /* 40.5 s */
    assert_int_equal(late.group, GROUP_EP);
    assert_string_equal(late.op, "all_to_all_v");
    assert_true(late.elapsed_s > 40.49 && late.elapsed_s < 40.51);
    assert_int_equal(late.outstanding, 2);
    /* no deadline: never reported */
    assert_int_equal(device_watch_overdue(&w, 1000 * NS, 0.0, &late), 0);
    device_watch_destroy(&w);
}

static void test_clock_starts_at_enqueue(void **state) {
    (void)state;
    DeviceWatch w;
    FakeDevice d;
    attach(&w, &d, 4);
    DeviceWatchOverdue late;
    int *a = enqueue(&w, GROUP_DP_CP, "all_reduce", 0);
    *a = 1;
    assert_int_equal(device_watch_overdue(&w, 1 * NS, 2.0, &late), 0);   /* retired at 1 s */
    enqueue(&w, -1, "p2p send/recv", 5 * NS);   /* enqueued later than that retirement */
    assert_int_equal(device_watch_overdue(&w, 7 * NS, 2.0, &late), 0);      /* 2.0 s: not past */
    assert_int_equal(device_watch_overdue(&w, 7 * NS + 1000, 2.0, &late), 1);
    assert_int_equal(late.group, -1);
    assert_string_equal(late.op, "p2p send/recv");
    device_watch_destroy(&w);
}

/* slots are reused: a full ring retires completed entries itself; when the
 * oldest is still out the new collective is not watched (counted) */
static void test_full_ring_reuses_events(void **state) {
    (void)state;
    DeviceWatch w;
    FakeDevice d;
    attach(&w, &d, 3);
    int *e0 = enqueue(&w, GROUP_EP, "x", 0);
    enqueue(&w, GROUP_EP, "y", 0);
    enqueue(&w, GROUP_EP, "z", 0);
    assert_null(device_watch_reserve(&w, 1));   /* full, nothing complete */
    assert_int_equal(w.unwatched, 1);
    *e0 = 1;
    int *e3 = device_watch_reserve(&w, 2);   /* retires e0, reuses its slot */
    assert_ptr_equal(e3, e0);
    *e3 = 0;
    device_watch_commit(&w, GROUP_TP, "w", 2);
    assert_int_equal(device_watch_outstanding(&w), 3);
    assert_int_equal(w.retired, 1);
    device_watch_destroy(&w);
}

static void test_detach_and_attach_checks(void **state) {
    (void)state;
    DeviceWatch w;
    FakeDevice d;
    attach(&w, &d, 4);
    void *ev[1] = {&d.done[0]};
    assert_int_equal(device_watch_attach(&w, ev, 1, fake_query, &d), -1);   /* attached already */
    enqueue(&w, GROUP_EP, "all_to_all_v", 0);
    device_watch_detach(&w);
    int q = d.queries;
    DeviceWatchOverdue late;
    assert_int_equal(device_watch_overdue(&w, 1000 * NS, 1.0, &late), 0);   /* events forgotten */
    assert_int_equal(d.queries, q);                                         /* none queried */
    assert_null(device_watch_reserve(&w, 0));
    assert_int_equal(device_watch_attach(&w, ev, 0, fake_query, &d), -1);
    assert_int_equal(device_watch_attach(&w, ev, DEVICE_WATCH_CAPACITY + 1, fake_query, &d), -1);
    assert_int_equal(device_watch_attach(&w, ev, 1, fake_query, &d), 0);    /* a new backend */
    device_watch_destroy(&w);
}

/* the watchdog's rank check names the GPU collective with its group */
static void test_rank_check_names_gpu_collective(void **state) {
    (void)state;
    CommsContext c;
    memset(&c, 0, sizeof c);
    c.pub.world_size = 2;
    strcpy(c.group_ranks[GROUP_EP], "0,1");
    FakeDevice d;
    attach(&c.device_watch, &d, 4);
    c.pub.device_watch = &c.device_watch;
    enqueue(&c.device_watch, GROUP_EP, "all_to_all_v", 100 * NS);
    char msg[512] = "";
    assert_int_equal(watchdog_check_rank(&c, 40.0, false, 139 * NS, msg, sizeof msg), 0);
    assert_int_equal(watchdog_check_rank(&c, 40.0, false, 141 * NS, msg, sizeof msg), 1);
    assert_string_equal(msg, "the all_to_all_v on the ep group (ranks 0,1) has not completed on the GPU after 41.0 s "
                             "(deadline 40.0 s, --collective-timeout): one of those ranks hangs or died; ending the job");
    device_watch_destroy(&c.device_watch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retire_in_order),
        cmocka_unit_test(test_stuck_reported_after_deadline_only),
        cmocka_unit_test(test_clock_starts_at_enqueue),
        cmocka_unit_test(test_full_ring_reuses_events),
        cmocka_unit_test(test_detach_and_attach_checks),
        cmocka_unit_test(test_rank_check_names_gpu_collective),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
