/* watchdog.c: a thread polling NCCL's asynchronous errors (see watchdog.h). */
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

struct Watchdog {
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

#ifdef MOEPLAN_HAVE_CUDA
/* Asks every communicator of the rank for its asynchronous error. */
static int nccl_check(void *ctx, char *msg, int len) {
    CommsContext *c = ctx;
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

static void nccl_abort(void *ctx) { comms_abort(ctx); }
#endif

int watchdog_start(CommsContext *c, double poll_s, WatchdogFailure on_failure, void *user,
                   Watchdog **out, MpError *err) {
#ifdef MOEPLAN_HAVE_CUDA
    if (c->kind == EXEC_BACKEND_CUDA)
        return watchdog_start_custom(nccl_check, nccl_abort, c, c->pub.world_rank, poll_s, on_failure, user,
                                     out, err);
#endif
    return watchdog_start_custom(NULL, NULL, c, c->pub.world_rank, poll_s, on_failure, user, out, err);
}

void watchdog_stop(Watchdog *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    if (w->running) pthread_join(w->thread, NULL);
    free(w);
}
