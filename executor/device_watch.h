/* device_watch.h: the deadline of the collectives a GPU backend enqueues
 * asynchronously.
 *
 * NCCL calls return as soon as they are enqueued on a stream, so the host
 * never blocks inside them and collective_watch.h cannot time them.  Instead
 * the backend records an event on the collective's stream right after each
 * NCCL call (or NCCL group) and commits (event, group, op, enqueue time) to
 * this ring; the watchdog thread asks the ring for the oldest collective
 * that has not completed (query: cudaEventQuery), retiring completed ones in
 * order, and fails the rank when it is past the deadline.
 *
 * A collective's clock starts when it was enqueued or when the watchdog saw
 * the entry before it complete, whichever is later (the stream cannot start
 * it before that), so a long queue of enqueued work does not eat into the
 * deadline of its last entry.
 *
 * The ring owns no device objects: the backend creates capacity events at
 * creation, attaches them (slot i always uses events[i]: no allocation
 * inside a step) and detaches before destroying them.  Only the event's
 * query is device-specific (a function pointer), so the whole bookkeeping
 * is plain C, tested on the CPU with a fake query (tests/test_exec_watch.c).
 *
 * Threads: one producer (the main thread: reserve, commit, attach, detach)
 * and the watchdog (overdue); a mutex guards the ring, held for a few
 * field updates by the producer and for the event queries of one poll by
 * the watchdog. */
#ifndef MOEPLAN_EXECUTOR_DEVICE_WATCH_H
#define MOEPLAN_EXECUTOR_DEVICE_WATCH_H

#include <pthread.h>
#include <stdbool.h>

/* Entries outstanding at once: the collectives enqueued between two host
 * synchronisations (the MoE layer's count exchange, the step's loss read)
 * are far fewer.  When the ring is full, a new collective is not watched
 * (counted in `unwatched`); each stream runs in order, so a hang in an
 * unwatched collective keeps the watched ones enqueued after it on the same
 * stream from completing, and those reach the deadline (named instead). */
#define DEVICE_WATCH_CAPACITY 512

/* 1: the work recorded in event has completed; 0: not yet.  An error
 * counts as completed (the backend's sticky status reports it). */
typedef int (*DeviceWatchQuery)(void *ctx, void *event);

typedef struct {
    int group;              /* GroupKind, or -1 for the world */
    const char *op;         /* a string literal, e.g. "all_to_all_v" */
    long long enqueue_ns;   /* CLOCK_MONOTONIC when it was enqueued */
} DeviceWatchEntry;

typedef struct DeviceWatch {
    pthread_mutex_t lock;
    bool attached;
    DeviceWatchQuery query;
    void *query_ctx;
    int capacity;                              /* events attached, <= DEVICE_WATCH_CAPACITY */
    void *event[DEVICE_WATCH_CAPACITY];        /* slot i's event */
    DeviceWatchEntry entry[DEVICE_WATCH_CAPACITY];
    int first, count;                          /* outstanding slots: first .. first+count-1 (mod capacity) */
    long long last_retire_ns;                  /* when the last retired entry was seen complete */
    long committed, retired, unwatched;        /* totals since attach */
} DeviceWatch;

/* What device_watch_overdue reports. */
typedef struct {
    int group;
    const char *op;
    double elapsed_s;   /* since its clock started */
    int outstanding;    /* entries not yet complete, this one included */
} DeviceWatchOverdue;

/* CLOCK_MONOTONIC in ns (the clock of collective_watch.h, callable from
 * the CUDA backend's C++). */
long long device_watch_now_ns(void);

void device_watch_init(DeviceWatch *w);
void device_watch_destroy(DeviceWatch *w);

/* Attaches n events (1 <= n <= DEVICE_WATCH_CAPACITY) and their query;
 * -1 when n is out of range or events are attached already. */
int device_watch_attach(DeviceWatch *w, void *const *events, int n, DeviceWatchQuery query, void *query_ctx);

/* Forgets every entry and the events: after it returns the watchdog no
 * longer queries them, and they may be destroyed. */
void device_watch_detach(DeviceWatch *w);

/* The event to record after the next collective, or NULL (not attached, or
 * full even after retiring the completed entries at now_ns: not watched).
 * Record it on the collective's stream, then device_watch_commit. */
void *device_watch_reserve(DeviceWatch *w, long long now_ns);

/* Makes the reserved slot outstanding (after its event was recorded). */
void device_watch_commit(DeviceWatch *w, int group, const char *op, long long enqueue_ns);

/* Retires the completed entries from the oldest on; returns 1 and fills
 * *out when the oldest outstanding one has run longer than deadline_s at
 * now_ns (deadline_s <= 0: never), 0 otherwise. */
int device_watch_overdue(DeviceWatch *w, long long now_ns, double deadline_s, DeviceWatchOverdue *out);

/* Entries outstanding (not yet seen complete). */
int device_watch_outstanding(DeviceWatch *w);

#endif
