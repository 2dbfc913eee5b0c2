/* watchdog.h: a thread that watches this rank and its peers, under any
 * launcher (the built-in one, mpirun, srun, torchrun).
 *
 * Every poll_s seconds it checks, in this order:
 *   1. (CUDA) ncclCommGetAsyncError of every communicator (world and every
 *      group kind): NCCL errors that peers see (a remote rank died, a
 *      network error) surface here;
 *   2. the ranks on this node (CommsContext.peer_pid): a peer process that
 *      has ended ("rank 1 (pid 4242, this node) has died");
 *   3. the deadline per collective: the blocking collective this rank is in
 *      (CollectiveWatch: the CPU backend's MPI calls, comms_max), or the
 *      oldest collective the CUDA backend enqueued that has not completed
 *      on the GPU (DeviceWatch: an event recorded after each NCCL call,
 *      queried here), has run longer than deadline_s ("the all_to_all_v on
 *      the ep group has not completed after 40.0 s"): a peer hangs, or died
 *      on another node.
 * On the first failure it aborts every NCCL communicator with ncclCommAbort
 * (so a main thread blocked in a collective returns) and calls
 * on_failure(user, rank, message) once, from the watchdog thread; the CLI's
 * callback prints the message and ends the job (MPI_Abort under MPI, which
 * makes mpirun end every rank; _exit otherwise, and the built-in launcher
 * then stops the other ranks).
 */
#ifndef MOEPLAN_EXECUTOR_WATCHDOG_H
#define MOEPLAN_EXECUTOR_WATCHDOG_H

#include <stdbool.h>

#include "core/error.h"
#include "executor/comms.h"

typedef void (*WatchdogFailure)(void *user, int rank, const char *message);

typedef struct Watchdog Watchdog;

/* Starts the thread for both backends; deadline_s <= 0: no collective
 * deadline.  c must outlive the watchdog.  *out is freed by watchdog_stop. */
int watchdog_start(CommsContext *c, double poll_s, double deadline_s, WatchdogFailure on_failure, void *user,
                   Watchdog **out, MpError *err);

/* Checks 2 and 3 above at time now_ns (CLOCK_MONOTONIC): non-zero with the
 * message when a peer on this node has ended or the current collective (or
 * the oldest outstanding one of c->pub.device_watch) is past deadline_s.  (The watchdog's check; open for tests.) */
int watchdog_check_rank(const CommsContext *c, double deadline_s, bool check_peers, long long now_ns, char *msg,
                        int len);

/* The general form (used by watchdog_start, and by tests on the CPU):
 * check(ctx, msg, len) returns non-zero with a message when something failed;
 * then abort_all(ctx) runs (may be NULL) and on_failure is called once. */
typedef int (*WatchdogCheck)(void *ctx, char *msg, int len);
typedef void (*WatchdogAbort)(void *ctx);
int watchdog_start_custom(WatchdogCheck check, WatchdogAbort abort_all, void *ctx, int rank, double poll_s,
                          WatchdogFailure on_failure, void *user, Watchdog **out, MpError *err);

/* From now on peers may end (this rank is in the job's last collective,
 * which they may have left already): check 2 is off, 1 and 3 stay. */
void watchdog_peers_may_end(Watchdog *w);

/* Stops and joins the thread; call before comms_destroy. */
void watchdog_stop(Watchdog *w);

#endif
