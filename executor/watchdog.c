/* watchdog.c: a thread watching NCCL's asynchronous errors, the peers on
 * this node and the deadline of the current collective (see watchdog.h). */
#include "executor/watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef MOEPLAN_HAVE_CUDA
#include <nccl.h>
#endif

typedef struct {
    CommsContext *c;
    double deadline_s;
    atomic_int peers_may_end;   /* set by watchdog_peers_may_end */
} RankWatch;

struct Watchdog {
    RankWatch rank_watch;   /* ctx of watchdog_start's check */
    pthread_t thread;
    bool running;
    atomic_int stop;
    WatchdogCheck check;
    WatchdogAbort abort_all;
    void *ctx;
    int rank;
    double poll_s;
    WatchdogFailure on_failure;
    void *user;
};

static void *watchdog_main(void *arg) {
    Watchdog *w = arg;
    char msg[MP_ERROR_LEN];
    /* sleep in slices of at most 10 ms so that watchdog_stop returns quickly */
    double slept = 0;
    while (!atomic_load(&w->stop)) {
        struct timespec t = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&t, NULL);
        slept += 0.01;
        if (slept < w->poll_s) continue;
        slept = 0;
        msg[0] = 0;
        if (w->check(w->ctx, msg, (int)sizeof msg)) {
            if (w->abort_all) w->abort_all(w->ctx);
            if (w->on_failure) w->on_failure(w->user, w->rank, msg);
            break;
        }
    }
    return NULL;
}

int watchdog_start_custom(WatchdogCheck check, WatchdogAbort abort_all, void *ctx, int rank, double poll_s,
                          WatchdogFailure on_failure, void *user, Watchdog **out, MpError *err) {
    Watchdog *w = calloc(1, sizeof *w);
    if (!w) return mp_fail(err, "watchdog: out of memory");
    w->check = check;
    w->abort_all = abort_all;
    w->ctx = ctx;
    w->rank = rank;
    w->poll_s = poll_s > 0 ? poll_s : 0.1;
    w->on_failure = on_failure;
    w->user = user;
    atomic_init(&w->stop, 0);
    if (check) {
        int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
        if (rc) {
            free(w);
            return mp_fail(err, "watchdog: pthread_create: %s", strerror(rc));
        }
        w->running = true;
    }
    *out = w;
    return 0;
}

/* "the OP on the GROUP group (ranks ..) has not completed[WHERE] after T s ..." */
static int deadline_message(const CommsContext *c, int group, const char *op, const char *where, double t,
                            double deadline_s, char *msg, int len) {
    const char *ranks = group >= 0 && group < GROUP_KIND_COUNT ? c->group_ranks[group] : "";
    snprintf(msg, (size_t)len,
             "the %s on the %s group%s%s%s has not completed%s after %.1f s (deadline %.1f s, "
             "--collective-timeout): one of those ranks hangs or died; ending the job",
             op ? op : "collective", group < 0 ? "world" : group_kind_name((GroupKind)group), ranks[0] ? " (ranks " : "",
             ranks, ranks[0] ? ")" : "", where, t, deadline_s);
    return 1;
}

int watchdog_check_rank(const CommsContext *c, double deadline_s, bool check_peers, long long now_ns, char *msg,
                        int len) {
    if (check_peers && c->peer_pid)
        for (int r = 0; r < c->pub.world_size; r++)
            if (c->peer_pid[r] > 0 && comms_pid_ended(c->peer_pid[r])) {
                snprintf(msg, (size_t)len, "rank %d (pid %d, this node) has died; ending the job", r, c->peer_pid[r]);
                return 1;
            }
    int group = -1;
    const char *op = "collective";
    double t = collective_watch_elapsed((CollectiveWatch *)&c->watch, now_ns, &group, &op);
    if (deadline_s > 0 && t > deadline_s) return deadline_message(c, group, op, "", t, deadline_s, msg, len);
    /* the collectives the GPU backend enqueued (device_watch.h) */
    DeviceWatchOverdue late;
    if (c->pub.device_watch && device_watch_overdue(c->pub.device_watch, now_ns, deadline_s, &late))
        return deadline_message(c, late.group, late.op, " on the GPU", late.elapsed_s, deadline_s, msg, len);
    return 0;
}

#ifdef MOEPLAN_HAVE_CUDA
/* Asks every communicator of the rank for its asynchronous error. */
static int nccl_check(CommsContext *c, char *msg, int len) {
    for (int k = -1; k < GROUP_KIND_COUNT; k++) {
        ncclComm_t comm = (ncclComm_t)(k < 0 ? c->pub.world : c->pub.handle[k]);
        if (!comm) continue;
        ncclResult_t state = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess) state = r;
        if (state != ncclSuccess && state != ncclInProgress) {
            const char *last = ncclGetLastError(comm);
            snprintf(msg, (size_t)len, "NCCL error on the %s communicator: %s%s%s",
                     k < 0 ? "world" : group_kind_name((GroupKind)k), ncclGetErrorString(state),
                     last && *last ? ": " : "", last ? last : "");
            return 1;
        }
    }
    return 0;
}
#endif

static int rank_check(void *ctx, char *msg, int len) {
    RankWatch *w = ctx;
#ifdef MOEPLAN_HAVE_CUDA
    if (w->c->kind == EXEC_BACKEND_CUDA && nccl_check(w->c, msg, len)) return 1;
#endif
    return watchdog_check_rank(w->c, w->deadline_s, !atomic_load(&w->peers_may_end), collective_watch_now_ns(), msg,
                               len);
}

/* NCCL communicators are aborted so that a blocked main thread returns; MPI
 * has no such call: the failure callback's MPI_Abort ends the job. */
static void rank_abort(void *ctx) { comms_abort(((RankWatch *)ctx)->c); }

int watchdog_start(CommsContext *c, double poll_s, double deadline_s, WatchdogFailure on_failure, void *user,
                   Watchdog **out, MpError *err) {
    /* the check's context lives in the Watchdog: start with a placeholder, then point it there */
    if (watchdog_start_custom(NULL, NULL, NULL, c->pub.world_rank, poll_s, on_failure, user, out, err)) return -1;
    Watchdog *w = *out;
    w->rank_watch.c = c;
    w->rank_watch.deadline_s = deadline_s;
    atomic_init(&w->rank_watch.peers_may_end, 0);
    w->check = rank_check;
    w->abort_all = rank_abort;
    w->ctx = &w->rank_watch;
    int rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    if (rc) {
        free(w);
        *out = NULL;
        return mp_fail(err, "watchdog: pthread_create: %s", strerror(rc));
    }
    w->running = true;
    return 0;
}

void watchdog_peers_may_end(Watchdog *w) {
    if (w) atomic_store(&w->rank_watch.peers_may_end, 1);
}

void watchdog_stop(Watchdog *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    if (w->running) pthread_join(w->thread, NULL);
    free(w);
}
