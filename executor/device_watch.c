/* device_watch.c: the ring of a GPU backend's outstanding collectives and
 * their deadline (see device_watch.h). */
#include "executor/device_watch.h"

#include <string.h>
#include <time.h>

long long device_watch_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

void device_watch_init(DeviceWatch *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
}

void device_watch_destroy(DeviceWatch *w) { pthread_mutex_destroy(&w->lock); }

int device_watch_attach(DeviceWatch *w, void *const *events, int n, DeviceWatchQuery query, void *query_ctx) {
    if (n < 1 || n > DEVICE_WATCH_CAPACITY || !query) return -1;
    pthread_mutex_lock(&w->lock);
    int rc = -1;
    if (!w->attached) {
        for (int i = 0; i < n; i++) w->event[i] = events[i];
        w->capacity = n;
        w->query = query;
        w->query_ctx = query_ctx;
        w->first = w->count = 0;
        w->last_retire_ns = 0;
        w->committed = w->retired = w->unwatched = 0;
        w->attached = true;
        rc = 0;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void device_watch_detach(DeviceWatch *w) {
    pthread_mutex_lock(&w->lock);
    w->attached = false;
    w->count = 0;
    w->capacity = 0;
    memset(w->event, 0, sizeof w->event);
    pthread_mutex_unlock(&w->lock);
}

/* Retires completed entries from the oldest on, stopping at the first that
 * has not completed (later ones may be on another stream; they are retired
 * once it is).  Holds the lock. */
static void retire_completed(DeviceWatch *w, long long now_ns) {
    while (w->count > 0 && w->query(w->query_ctx, w->event[w->first])) {
        w->first = (w->first + 1) % w->capacity;
        w->count--;
        w->retired++;
        w->last_retire_ns = now_ns;
    }
}

void *device_watch_reserve(DeviceWatch *w, long long now_ns) {
    pthread_mutex_lock(&w->lock);
    void *ev = NULL;
    if (w->attached) {
        if (w->count == w->capacity) retire_completed(w, now_ns);   /* the watchdog has not polled yet */
        if (w->count < w->capacity)
            ev = w->event[(w->first + w->count) % w->capacity];
        else
            w->unwatched++;
    }
    pthread_mutex_unlock(&w->lock);
    return ev;
}

void device_watch_commit(DeviceWatch *w, int group, const char *op, long long enqueue_ns) {
    pthread_mutex_lock(&w->lock);
    if (w->attached && w->count < w->capacity) {
        DeviceWatchEntry *e = &w->entry[(w->first + w->count) % w->capacity];
        e->group = group;
        e->op = op;
        e->enqueue_ns = enqueue_ns;
        w->count++;
        w->committed++;
    }
    pthread_mutex_unlock(&w->lock);
}

int device_watch_overdue(DeviceWatch *w, long long now_ns, double deadline_s, DeviceWatchOverdue *out) {
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    if (w->attached) {
        retire_completed(w, now_ns);
        if (w->count > 0 && deadline_s > 0) {
            const DeviceWatchEntry *e = &w->entry[w->first];
            long long start = e->enqueue_ns > w->last_retire_ns ? e->enqueue_ns : w->last_retire_ns;
            double elapsed = start < now_ns ? (double)(now_ns - start) / 1e9 : 0;   /* exact for whole ns multiples */
            if (elapsed > deadline_s) {
                out->group = e->group;
                out->op = e->op;
                out->elapsed_s = elapsed;
                out->outstanding = w->count;
                rc = 1;
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int device_watch_outstanding(DeviceWatch *w) {
    pthread_mutex_lock(&w->lock);
    int n = w->attached ? w->count : 0;
    pthread_mutex_unlock(&w->lock);
    return n;
}
