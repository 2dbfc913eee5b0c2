/* comms.c: communicators per group kind (see comms.h). */
#include "executor/comms.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor/rendezvous.h"

#ifdef MOEPLAN_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

int comms_visible_gpus(void) {
#ifdef MOEPLAN_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
#else
    return 0;
#endif
}

int comms_probe_gpus(char *why, int len) {
#ifdef MOEPLAN_HAVE_CUDA
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why, (size_t)len, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n < 1) snprintf(why, (size_t)len, "cudaGetDeviceCount: 0 devices");
    return n;
#else
    snprintf(why, (size_t)len, "this moeplan was built without CUDA (nvcc was not found at build time)");
    return 0;
#endif
}

int comms_pid_ended(int pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT || errno == ESRCH;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');   /* "pid (comm) STATE ...": comm may hold spaces */
    return close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
}

/* Who this process is on its node: the kernel's boot id and the PID
 * namespace, so that two ranks compare PIDs only when the PIDs mean the
 * same process. */
typedef struct {
    int32_t pid;
    char node[92];
} PeerId;

static void peer_id_self(PeerId *p) {
    memset(p, 0, sizeof *p);
    p->pid = (int32_t)getpid();
    char boot[40] = "", ns[48] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = 0;
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = 0;
    ssize_t r = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[r > 0 ? r : 0] = 0;
    snprintf(p->node, sizeof p->node, "%.39s/%.47s", boot, ns);
}

/* peer_pid[r] from every rank's PeerId (all[world]) */
static int peers_from(CommsContext *c, const PeerId *all, MpError *err) {
    int n = c->pub.world_size, me = c->pub.world_rank;
    c->peer_pid = calloc((size_t)n, sizeof(int));
    if (!c->peer_pid) return mp_fail(err, "comms: out of memory");
    for (int r = 0; r < n; r++)
        if (r != me && all[me].node[0] && !strcmp(all[r].node, all[me].node)) c->peer_pid[r] = all[r].pid;
    return 0;
}

static int exchange_peers_mpi(CommsContext *c, MpError *err) {
    PeerId self, *all = malloc(sizeof(PeerId) * (size_t)c->pub.world_size);
    if (!all) return mp_fail(err, "comms: out of memory");
    peer_id_self(&self);
    int rc = MPI_Allgather(&self, (int)sizeof self, MPI_BYTE, all, (int)sizeof self, MPI_BYTE,
                           *(MPI_Comm *)c->pub.world) != MPI_SUCCESS
                 ? mp_fail(err, "MPI: MPI_Allgather of the process ids failed on rank %d", c->pub.world_rank)
                 : peers_from(c, all, err);
    free(all);
    return rc;
}

int comms_mpi_init(CommsContext *c, const LaunchEnv *env, MpError *err) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return mp_fail(err, "MPI: MPI_Init_thread failed");
        c->mpi_initialized_here = true;
    }
    c->mpi_active = true;
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (env->source != LAUNCH_NONE && (size != env->world_size || rank != env->rank))
        return mp_fail(err, "MPI: MPI_COMM_WORLD has rank %d of %d but the %s launcher says rank %d of %d "
                       "(this binary's MPI differs from the launcher's; set MASTER_ADDR and MASTER_PORT "
                       "to bootstrap over TCP instead)",
                       rank, size, launch_source_name(env->source), env->rank, env->world_size);
    return 0;
}

/* Color and key of this rank for group kind k: color = the smallest member
 * of its group (unique per group, since the groups of a kind partition the
 * ranks), key = its index in the group, so the new communicator's ranks
 * follow mapping_group_members order. */
static int group_color_key(const Mapping *m, GroupKind k, int rank, int *members, int *color, int *size) {
    int idx = mapping_group_of_rank(m, k, rank, members);
    *size = mapping_group_size(m, k);
    *color = members[0];
    for (int i = 1; i < *size; i++)
        if (members[i] < *color) *color = members[i];
    return idx;
}

static int init_cpu(CommsContext *c, const Mapping *m, int *members, MpError *err) {
    MPI_Comm *comms = calloc(GROUP_KIND_COUNT + 1, sizeof(MPI_Comm));
    if (!comms) return mp_fail(err, "comms: out of memory");
    c->storage = comms;
    for (int k = 0; k <= GROUP_KIND_COUNT; k++) comms[k] = MPI_COMM_NULL;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &comms[GROUP_KIND_COUNT]) != MPI_SUCCESS)
        return mp_fail(err, "MPI: MPI_Comm_dup of the world failed");
    c->pub.world = &comms[GROUP_KIND_COUNT];
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        int color, size;
        int idx = group_color_key(m, (GroupKind)k, c->pub.world_rank, members, &color, &size);
        if (MPI_Comm_split(MPI_COMM_WORLD, color, idx, &comms[k]) != MPI_SUCCESS)
            return mp_fail(err, "MPI: MPI_Comm_split for the %s groups failed", group_kind_name((GroupKind)k));
        int got_rank, got_size;
        MPI_Comm_rank(comms[k], &got_rank);
        MPI_Comm_size(comms[k], &got_size);
        if (got_rank != idx || got_size != size)
            return mp_fail(err, "MPI: %s group: rank %d of %d, expected %d of %d", group_kind_name((GroupKind)k),
                           got_rank, got_size, idx, size);
        c->pub.handle[k] = &comms[k];
        c->pub.rank_in[k] = idx;
        c->pub.size_of[k] = size;
    }
    return 0;
}

#ifdef MOEPLAN_HAVE_CUDA
#define NCCL_TRY(call, what)                                                                       \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess)                                                                     \
            return mp_fail(err, "NCCL: %s on rank %d: %s", what, c->pub.world_rank,              \
                           ncclGetErrorString(r_));                                                \
    } while (0)
#define CUDA_TRY(call, what)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return mp_fail(err, "CUDA: %s on rank %d: %s", what, c->pub.world_rank,              \
                           cudaGetErrorString(e_));                                                \
    } while (0)

/* the PeerIds over the world NCCL communicator (one all-gather at start-up) */
static int exchange_peers_nccl(CommsContext *c, MpError *err) {
    size_t n = (size_t)c->pub.world_size, one = sizeof(PeerId);
    PeerId self, *all = malloc(one * n);
    if (!all) return mp_fail(err, "comms: out of memory");
    peer_id_self(&self);
    void *d = NULL;
    cudaStream_t s = (cudaStream_t)c->stream;
    int rc = 0;
    if (cudaMalloc(&d, one * (n + 1)) != cudaSuccess ||
        cudaMemcpyAsync((char *)d + one * n, &self, one, cudaMemcpyHostToDevice, s) != cudaSuccess ||
        ncclAllGather((char *)d + one * n, d, one, ncclChar, (ncclComm_t)c->pub.world, s) != ncclSuccess ||
        cudaMemcpyAsync(all, d, one * n, cudaMemcpyDeviceToHost, s) != cudaSuccess ||
        cudaStreamSynchronize(s) != cudaSuccess)
        rc = mp_fail(err, "NCCL: the all-gather of the process ids failed on rank %d", c->pub.world_rank);
    if (d) cudaFree(d);
    if (!rc) rc = peers_from(c, all, err);
    free(all);
    return rc;
}

static int init_cuda(CommsContext *c, const Mapping *m, const LaunchEnv *env, double timeout_s,
                     int *members, MpError *err) {
    int count = 0;
    CUDA_TRY(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count < 1) return mp_fail(err, "CUDA: rank %d sees no GPU", c->pub.world_rank);
    if (c->pub.local_rank >= count)
        return mp_fail(err, "LOCAL_RANK: %d but only %d GPU(s) are visible on this node", c->pub.local_rank, count);
    CUDA_TRY(cudaSetDevice(c->pub.local_rank), "cudaSetDevice");

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->pub.world_rank == 0) NCCL_TRY(ncclGetUniqueId(&id), "ncclGetUniqueId");
    if (c->pub.world_size > 1) {
        if (env->bootstrap == BOOTSTRAP_MPI) {
            if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
                return mp_fail(err, "MPI: MPI_Bcast of the NCCL id failed on rank %d", c->pub.world_rank);
        } else if (env->bootstrap == BOOTSTRAP_TCP) {
            if (rendezvous_broadcast(env->master_addr, env->master_port, c->pub.world_rank, c->pub.world_size,
                                     &id, sizeof id, timeout_s, err))
                return -1;
        } else {
            return mp_fail(err, "launcher: %d ranks but no way to share the NCCL id (no MPI, no MASTER_ADDR)",
                           c->pub.world_size);
        }
    }
    ncclComm_t world;
    NCCL_TRY(ncclCommInitRank(&world, c->pub.world_size, id, c->pub.world_rank), "ncclCommInitRank");
    c->pub.world = world;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        int color, size;
        int idx = group_color_key(m, (GroupKind)k, c->pub.world_rank, members, &color, &size);
        ncclComm_t sub;
        NCCL_TRY(ncclCommSplit(world, color, idx, &sub, NULL), "ncclCommSplit");
        int got_rank, got_size;
        NCCL_TRY(ncclCommUserRank(sub, &got_rank), "ncclCommUserRank");
        NCCL_TRY(ncclCommCount(sub, &got_size), "ncclCommCount");
        if (got_rank != idx || got_size != size)
            return mp_fail(err, "NCCL: %s group: rank %d of %d, expected %d of %d", group_kind_name((GroupKind)k),
                           got_rank, got_size, idx, size);
        c->pub.handle[k] = sub;
        c->pub.rank_in[k] = idx;
        c->pub.size_of[k] = size;
    }
    cudaStream_t s;
    CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    c->stream = s;
    CUDA_TRY(cudaMalloc(&c->scratch, 64 * sizeof(double)), "cudaMalloc");
    return exchange_peers_nccl(c, err);
}
#endif

int comms_init(CommsContext *c, const Mapping *m, const LaunchEnv *env, ExecBackendKind kind,
               double timeout_s, MpError *err) {
    bool mpi_was_active = c->mpi_active, mpi_here = c->mpi_initialized_here;
    memset(c, 0, sizeof *c);
    device_watch_init(&c->device_watch);
    c->mpi_active = mpi_was_active;
    c->mpi_initialized_here = mpi_here;
    c->kind = kind;
    c->pub.world_rank = env->rank;
    c->pub.world_size = env->world_size;
    c->pub.local_rank = env->local_rank;
    if (m->world != env->world_size)
        return mp_fail(err, "--gpus: the plan has %d GPUs but %d rank(s) were started", m->world, env->world_size);
    int *members = malloc(sizeof(int) * (size_t)m->world);
    if (!members) return mp_fail(err, "comms: out of memory");
    int rc;
    if (kind == EXEC_BACKEND_CPU) {
        if (!c->mpi_active && comms_mpi_init(c, env, err)) { free(members); return -1; }
        if (env->source == LAUNCH_NONE) {   /* singleton or mpirun without variables: ask MPI */
            MPI_Comm_rank(MPI_COMM_WORLD, &c->pub.world_rank);
            MPI_Comm_size(MPI_COMM_WORLD, &c->pub.world_size);
            if (m->world != c->pub.world_size) {
                free(members);
                return mp_fail(err, "--gpus: the plan has %d ranks but MPI started %d", m->world, c->pub.world_size);
            }
        }
        if (c->pub.local_rank < 0) c->pub.local_rank = 0;
        rc = init_cpu(c, m, members, err);
        if (!rc) rc = exchange_peers_mpi(c, err);
    } else {
#ifdef MOEPLAN_HAVE_CUDA
        if (env->bootstrap == BOOTSTRAP_MPI && !c->mpi_active && comms_mpi_init(c, env, err)) {
            free(members);
            return -1;
        }
        if (c->pub.local_rank < 0) {   /* launcher without a local rank: one GPU per rank, round robin */
            int count = comms_visible_gpus();
            c->pub.local_rank = count > 0 ? c->pub.world_rank % count : 0;
        }
        rc = init_cuda(c, m, env, timeout_s, members, err);
#else
        (void)timeout_s;
        rc = mp_fail(err, "--backend: cuda, but this moeplan was built without CUDA (use --backend cpu)");
#endif
    }
    for (int k = 0; k < GROUP_KIND_COUNT && rc == 0; k++) {   /* for the watchdog's messages */
        int size = mapping_group_size(m, (GroupKind)k), len = 0;
        mapping_group_of_rank(m, (GroupKind)k, c->pub.world_rank, members);
        char *out = c->group_ranks[k];
        for (int i = 0; i < size; i++) {
            int room = (int)sizeof c->group_ranks[k] - len;
            int w = snprintf(out + len, (size_t)room, "%s%d", i ? "," : "", members[i]);
            if (w >= room - 4) { snprintf(out + (len < room ? len : 0), 4, "..."); break; }
            len += w;
        }
    }
    free(members);
    c->pub.watch = &c->watch;
    if (kind == EXEC_BACKEND_CUDA) c->pub.device_watch = &c->device_watch;
    return rc;
}

int comms_max(CommsContext *c, double *vals, int n, MpError *err) {
    if (n < 0 || n > 64) return mp_fail(err, "comms_max: %d values (at most 64)", n);
    if (c->kind == EXEC_BACKEND_CPU) {
        collective_watch_begin(&c->watch, -1, "all_reduce(max) of the step statistics");
        int r = MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_MAX, *(MPI_Comm *)c->pub.world);
        collective_watch_end(&c->watch);
        if (r != MPI_SUCCESS) return mp_fail(err, "MPI: MPI_Allreduce(max) failed on rank %d", c->pub.world_rank);
        return 0;
    }
#ifdef MOEPLAN_HAVE_CUDA
    if (c->pub.world_size == 1) return 0;
    size_t bytes = (size_t)n * sizeof(double);
    cudaStream_t s = (cudaStream_t)c->stream;
    collective_watch_begin(&c->watch, -1, "all_reduce(max) of the step statistics");
    CUDA_TRY(cudaMemcpyAsync(c->scratch, vals, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpy");
    NCCL_TRY(ncclAllReduce(c->scratch, c->scratch, (size_t)n, ncclFloat64, ncclMax, (ncclComm_t)c->pub.world, s),
             "ncclAllReduce(max)");
    CUDA_TRY(cudaMemcpyAsync(vals, c->scratch, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpy");
    CUDA_TRY(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    collective_watch_end(&c->watch);
    return 0;
#else
    return mp_fail(err, "comms_max: no CUDA in this build");
#endif
}

void comms_abort(CommsContext *c) {
#ifdef MOEPLAN_HAVE_CUDA
    if (c->kind != EXEC_BACKEND_CUDA) return;
    for (int k = 0; k < GROUP_KIND_COUNT; k++)
        if (c->pub.handle[k]) ncclCommAbort((ncclComm_t)c->pub.handle[k]);
    if (c->pub.world) ncclCommAbort((ncclComm_t)c->pub.world);
#else
    (void)c;
#endif
}

void comms_destroy(CommsContext *c) {
    if (c->kind == EXEC_BACKEND_CPU) {
        MPI_Comm *comms = c->storage;
        if (comms)
            for (int k = 0; k <= GROUP_KIND_COUNT; k++)
                if (comms[k] != MPI_COMM_NULL) MPI_Comm_free(&comms[k]);
        free(comms);
    }
#ifdef MOEPLAN_HAVE_CUDA
    else {
        for (int k = 0; k < GROUP_KIND_COUNT; k++)
            if (c->pub.handle[k]) ncclCommDestroy((ncclComm_t)c->pub.handle[k]);
        if (c->pub.world) ncclCommDestroy((ncclComm_t)c->pub.world);
        if (c->scratch) cudaFree(c->scratch);
        if (c->stream) cudaStreamDestroy((cudaStream_t)c->stream);
    }
#endif
    c->storage = NULL;
    c->scratch = c->stream = NULL;
    c->pub.device_watch = NULL;
    device_watch_destroy(&c->device_watch);
    free(c->peer_pid);
    c->peer_pid = NULL;
    memset(c->pub.handle, 0, sizeof c->pub.handle);
    c->pub.world = NULL;
    if (c->mpi_initialized_here) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
        c->mpi_initialized_here = false;
    }
    c->mpi_active = false;
}

void comms_mpi_abort(CommsContext *c, int code) {
    if (c && c->mpi_active) MPI_Abort(MPI_COMM_WORLD, code);
}
