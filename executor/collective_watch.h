/* collective_watch.h: the deadline bookkeeping of one rank's blocking
 * collectives.  The main thread marks the start and the end of every
 * collective it blocks in (the CPU backend's MPI calls, comms_max); the
 * watchdog thread (watchdog.c) reads how long the current one has run and
 * fails the rank when it passes the deadline.  Lock-free: one writer (the
 * main thread), one reader (the watchdog).  C only (stdatomic). */
#ifndef MOEPLAN_EXECUTOR_COLLECTIVE_WATCH_H
#define MOEPLAN_EXECUTOR_COLLECTIVE_WATCH_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct CollectiveWatch {
    atomic_llong start_ns;      /* CLOCK_MONOTONIC of the current collective's start; 0 = none */
    atomic_int group;           /* its GroupKind, or -1 for the world */
    _Atomic(const char *) op;   /* its name (a string literal) */
    atomic_long completed;      /* collectives finished so far */
} CollectiveWatch;

static inline long long collective_watch_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void collective_watch_begin(CollectiveWatch *w, int group, const char *op) {
    if (!w) return;
    atomic_store(&w->group, group);
    atomic_store(&w->op, op);
    atomic_store(&w->start_ns, collective_watch_now_ns());
}

static inline void collective_watch_end(CollectiveWatch *w) {
    if (!w) return;
    atomic_store(&w->start_ns, 0);
    atomic_fetch_add(&w->completed, 1);
}

/* Seconds the current collective has been running at now_ns (0 when none);
 * *group and *op name it. */
static inline double collective_watch_elapsed(CollectiveWatch *w, long long now_ns, int *group, const char **op) {
    long long s = atomic_load(&w->start_ns);
    if (!s) return 0;
    *group = atomic_load(&w->group);
    *op = atomic_load(&w->op);
    return s < now_ns ? (double)(now_ns - s) * 1e-9 : 0;
}

#endif
