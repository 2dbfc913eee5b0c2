/* launch.h: where this process's rank comes from, and the built-in
 * single-node launcher that starts one process per GPU and watches them.
 *
 * Sources of ranks, first match wins (launch_detect):
 *   Open MPI (mpirun)  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
 *                      OMPI_COMM_WORLD_LOCAL_RANK            bootstrap: MPI
 *   PMI (MPICH hydra)  PMI_RANK, PMI_SIZE, MPI_LOCALRANKID    bootstrap: MPI
 *   Slurm (srun)       SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
 *                      bootstrap: TCP when MASTER_ADDR and MASTER_PORT are
 *                      set, MPI otherwise
 *   torchrun style     RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
 *                      bootstrap: TCP (the built-in launcher sets these too,
 *                      plus MOEPLAN_LAUNCHER=1)
 *   none               a single process, or the top of the built-in launcher
 *
 * The library reads the environment (getenv) but never changes it and never
 * prints; launch_local() forks and execs, and reports through MpError.
 */
#ifndef MOEPLAN_EXECUTOR_LAUNCH_H
#define MOEPLAN_EXECUTOR_LAUNCH_H

#include <stdbool.h>

#include "core/error.h"

typedef enum {
    LAUNCH_NONE = 0,     /* no launcher variables: single process or launcher top */
    LAUNCH_OPENMPI,
    LAUNCH_PMI,
    LAUNCH_SLURM,
    LAUNCH_TORCHRUN,
    LAUNCH_BUILTIN,      /* a child of launch_local() (torchrun variables + MOEPLAN_LAUNCHER) */
} LaunchSource;

typedef enum { BOOTSTRAP_NONE = 0, BOOTSTRAP_MPI, BOOTSTRAP_TCP } BootstrapKind;

#define LAUNCH_ADDR_LEN 256

typedef struct {
    LaunchSource source;
    BootstrapKind bootstrap;          /* how the NCCL unique id travels */
    int rank, world_size, local_rank;
    char master_addr[LAUNCH_ADDR_LEN];  /* TCP bootstrap only */
    int master_port;                    /* TCP bootstrap only */
} LaunchEnv;

/* Reads the variables above.  A variable that is set but malformed (not an
 * integer, rank outside 0..size-1, TCP bootstrap without MASTER_ADDR or
 * MASTER_PORT) fails with "VARIABLE: reason". */
int launch_detect(LaunchEnv *out, MpError *err);

const char *launch_source_name(LaunchSource s);
const char *bootstrap_name(BootstrapKind b);

/* A free TCP port on 127.0.0.1 (bound to port 0, read back, closed); -1 on
 * failure. */
int launch_free_port(MpError *err);

typedef struct {
    int nproc;                 /* processes to start, ranks 0..nproc-1 */
    int master_port;           /* MASTER_PORT given to the children (> 0) */
    double kill_grace_s;       /* SIGTERM -> SIGKILL delay for the survivors */
} LaunchOptions;

typedef struct {
    int failed_rank;           /* first rank that ended badly; -1 if none */
    int exit_status;           /* its exit status, or 128 + signal */
    int signal;                /* its signal, 0 if it exited */
    double seconds;            /* wall time from start to the last child's end */
} LaunchReport;

/* Starts argv (argv[0] is a path) nproc times with RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT and
 * MOEPLAN_LAUNCHER=1 set, and waits.  When one child ends with a non-zero
 * status or a signal, every other child gets SIGTERM, then SIGKILL after
 * kill_grace_s.  Children die with the parent (PR_SET_PDEATHSIG).
 * Returns 0 when all exited 0; otherwise -1 with err
 * "rank R: exited with status S" / "rank R: killed by signal N (NAME)"
 * and the report filled. */
int launch_local(char *const argv[], const LaunchOptions *opt, LaunchReport *rep, MpError *err);

#endif
