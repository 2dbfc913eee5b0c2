/* watchdog.h: a thread that watches this rank's NCCL communicators.
 *
 * Every poll_s seconds it asks ncclCommGetAsyncError of each communicator
 * (world and every group kind).  On the first error it aborts every
 * communicator with ncclCommAbort (so a main thread blocked in a collective
 * returns) and calls on_failure(user, rank, message) once, from the watchdog
 * thread; the CLI's callback prints the message and ends the process
 * (MPI_Abort under MPI, _exit otherwise), and the launcher then stops the
 * other ranks.  NCCL errors that peers see (a remote rank died, a network
 * error) surface here within poll_s.  The CPU backend needs no watchdog: MPI's
 * default error handler aborts the job.
 */
#ifndef MOEPLAN_EXECUTOR_WATCHDOG_H
#define MOEPLAN_EXECUTOR_WATCHDOG_H

#include "core/error.h"
#include "executor/comms.h"

typedef void (*WatchdogFailure)(void *user, int rank, const char *message);

typedef struct Watchdog Watchdog;

/* Starts the thread (CUDA backend; for the CPU backend returns a watchdog
 * that does nothing).  *out is freed by watchdog_stop. */
int watchdog_start(CommsContext *c, double poll_s, WatchdogFailure on_failure, void *user,
                   Watchdog **out, MpError *err);

/* The general form (used by watchdog_start, and by tests on the CPU):
 * check(ctx, msg, len) returns non-zero with a message when something failed;
 * then abort_all(ctx) runs (may be NULL) and on_failure is called once. */
typedef int (*WatchdogCheck)(void *ctx, char *msg, int len);
typedef void (*WatchdogAbort)(void *ctx);
int watchdog_start_custom(WatchdogCheck check, WatchdogAbort abort_all, void *ctx, int rank, double poll_s,
                          WatchdogFailure on_failure, void *user, Watchdog **out, MpError *err);

/* Stops and joins the thread; call before comms_destroy. */
void watchdog_stop(Watchdog *w);

#endif
