/* comms.h: one communicator per group kind of the mapping, for this rank.
 *
 * CUDA backend: the NCCL unique id of the world travels by MPI_Bcast
 * (BOOTSTRAP_MPI) or by the TCP rendezvous (BOOTSTRAP_TCP); then
 * ncclCommInitRank for the world and, for every GroupKind k,
 *     ncclCommSplit(world, color = first member of my group, key = my index)
 * where the group comes from mapping_group_of_rank() (core/mapping.c is the
 * only place that knows the layout).  Groups of one kind partition the ranks,
 * so the smallest member names the group uniquely.
 * CPU backend: the same with MPI_Comm_split on MPI_COMM_WORLD; the handles
 * are MPI_Comm* (ExecComms, executor.h).
 */
#ifndef MOEPLAN_EXECUTOR_COMMS_H
#define MOEPLAN_EXECUTOR_COMMS_H

#include <stdbool.h>

#include "core/error.h"
#include "core/mapping.h"
#include "executor/collective_watch.h"
#include "executor/device_watch.h"
#include "executor/executor.h"
#include "executor/launch.h"

typedef struct {
    ExecComms pub;               /* what exec_train gets */
    ExecBackendKind kind;
    bool mpi_initialized_here;   /* comms_destroy calls MPI_Finalize */
    bool mpi_active;             /* MPI is initialised in this process */
    void *storage;               /* MPI_Comm[GROUP_KIND_COUNT + 1] (CPU) */
    void *scratch;               /* device buffer for comms_max (CUDA) */
    void *stream;                /* cudaStream_t for comms_max (CUDA) */
    CollectiveWatch watch;       /* pub.watch points here */
    DeviceWatch device_watch;    /* pub.device_watch points here (CUDA backend) */
    /* The ranks that run on this node (same kernel boot and PID namespace),
     * exchanged by comms_init so that the watchdog can see a peer die:
     * peer_pid[r] > 0 for those ranks, 0 for the others and for this rank. */
    int *peer_pid;               /* [world_size] */
    char group_ranks[GROUP_KIND_COUNT][48];   /* members of this rank's group of each kind, "0,1,2" */
} CommsContext;

/* MPI_Init_thread (MPI_THREAD_FUNNELED) unless already initialised; checks
 * that MPI's world matches env (a launcher whose MPI differs from the one
 * this binary links gives a singleton world: that is reported). */
int comms_mpi_init(CommsContext *c, const LaunchEnv *env, MpError *err);

/* Builds every communicator.  env gives rank, size, local rank and the
 * bootstrap; m must be resolved with m->world == env->world_size.
 * timeout_s bounds the TCP rendezvous. */
int comms_init(CommsContext *c, const Mapping *m, const LaunchEnv *env, ExecBackendKind kind,
               double timeout_s, MpError *err);

/* vals[n] <- element-wise maximum over all ranks (collective, under the
 * collective deadline). */
int comms_max(CommsContext *c, double *vals, int n, MpError *err);

/* Aborts every NCCL communicator (safe from another thread: the watchdog). */
void comms_abort(CommsContext *c);

/* Frees the communicators (collective); MPI_Finalize if comms_mpi_init did MPI_Init. */
void comms_destroy(CommsContext *c);

/* MPI_Abort(MPI_COMM_WORLD, code) when MPI is active; returns otherwise. */
void comms_mpi_abort(CommsContext *c, int code);

/* GPUs visible to this process (cudaGetDeviceCount); 0 without CUDA. */
int comms_visible_gpus(void);

/* Like comms_visible_gpus; when there is none, why (one line: the CUDA
 * error, or "this moeplan was built without CUDA"). */
int comms_probe_gpus(char *why, int len);

/* 1 when the process pid has ended (gone, or a zombie not yet reaped). */
int comms_pid_ended(int pid);

#endif
