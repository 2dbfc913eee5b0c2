/* launch.c: rank detection from launcher variables and the built-in
 * single-node launcher (see launch.h). */
#include "executor/launch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *launch_source_name(LaunchSource s) {
    switch (s) {
    case LAUNCH_NONE: return "none";
    case LAUNCH_OPENMPI: return "openmpi";
    case LAUNCH_PMI: return "pmi";
    case LAUNCH_SLURM: return "slurm";
    case LAUNCH_TORCHRUN: return "torchrun";
    case LAUNCH_BUILTIN: return "builtin";
    }
    return "?";
}

const char *bootstrap_name(BootstrapKind b) {
    switch (b) {
    case BOOTSTRAP_NONE: return "none";
    case BOOTSTRAP_MPI: return "mpi";
    case BOOTSTRAP_TCP: return "tcp";
    }
    return "?";
}

/* Integer value of an environment variable.  Returns 1 and *out when set,
 * 0 when unset, -1 (err "NAME: reason") when set but not a non-negative
 * integer. */
static int env_int(const char *name, int *out, MpError *err) {
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == 0 || end == s || *end != 0) return mp_fail(err, "%s: '%s' is not an integer", name, s);
    if (errno || v < 0 || v > 1000000000L) return mp_fail(err, "%s: '%s' is out of range", name, s);
    *out = (int)v;
    return 1;
}

/* Reads the rank/size/local-rank triple named by the three variables;
 * size and rank must both be present.  Returns 1 when found, 0 when the
 * rank variable is absent, -1 on error. */
static int env_triple(const char *rank_var, const char *size_var, const char *local_var,
                      LaunchEnv *out, MpError *err) {
    int rank = 0, size = 0, local = -1;
    int has_rank = env_int(rank_var, &rank, err);
    if (has_rank < 0) return -1;
    if (!has_rank) return 0;
    int has_size = env_int(size_var, &size, err);
    if (has_size < 0) return -1;
    if (!has_size) return mp_fail(err, "%s: not set although %s is", size_var, rank_var);
    if (size < 1) return mp_fail(err, "%s: must be >= 1, got %d", size_var, size);
    if (rank >= size) return mp_fail(err, "%s: %d is not below %s=%d", rank_var, rank, size_var, size);
    if (local_var && env_int(local_var, &local, err) < 0) return -1;
    out->rank = rank;
    out->world_size = size;
    out->local_rank = local;
    return 1;
}

/* MASTER_ADDR and MASTER_PORT for the TCP bootstrap. `required`: missing is an error. */
static int env_master(LaunchEnv *out, bool required, MpError *err) {
    const char *addr = getenv("MASTER_ADDR");
    int port = 0;
    int has_port = env_int("MASTER_PORT", &port, err);
    if (has_port < 0) return -1;
    if (!addr || !*addr || !has_port) {
        if (!required) return 0;
        return mp_fail(err, "%s: not set (needed by the TCP rendezvous of rank %d)",
                       (!addr || !*addr) ? "MASTER_ADDR" : "MASTER_PORT", out->rank);
    }
    if (port < 1 || port > 65535) return mp_fail(err, "MASTER_PORT: %d is not a TCP port (1..65535)", port);
    if (strlen(addr) >= LAUNCH_ADDR_LEN) return mp_fail(err, "MASTER_ADDR: longer than %d characters", LAUNCH_ADDR_LEN - 1);
    snprintf(out->master_addr, sizeof out->master_addr, "%s", addr);
    out->master_port = port;
    return 1;
}

int launch_detect(LaunchEnv *out, MpError *err) {
    memset(out, 0, sizeof *out);
    out->world_size = 1;
    out->local_rank = 0;
    int r;
    if ((r = env_triple("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", out, err))) {
        if (r < 0) return -1;
        out->source = LAUNCH_OPENMPI;
        out->bootstrap = BOOTSTRAP_MPI;
        return 0;
    }
    if ((r = env_triple("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", out, err))) {
        if (r < 0) return -1;
        out->source = LAUNCH_PMI;
        out->bootstrap = BOOTSTRAP_MPI;
        return 0;
    }
    if ((r = env_triple("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", out, err))) {
        if (r < 0) return -1;
        out->source = LAUNCH_SLURM;
        int m = env_master(out, false, err);
        if (m < 0) return -1;
        out->bootstrap = m ? BOOTSTRAP_TCP : BOOTSTRAP_MPI;
        return 0;
    }
    if ((r = env_triple("RANK", "WORLD_SIZE", "LOCAL_RANK", out, err))) {
        if (r < 0) return -1;
        const char *builtin = getenv("MOEPLAN_LAUNCHER");
        out->source = (builtin && !strcmp(builtin, "1")) ? LAUNCH_BUILTIN : LAUNCH_TORCHRUN;
        out->bootstrap = BOOTSTRAP_TCP;
        /* a single torchrun rank needs no rendezvous */
        if (env_master(out, out->world_size > 1, err) < 0) return -1;
        if (out->world_size == 1) out->bootstrap = BOOTSTRAP_NONE;
        return 0;
    }
    out->source = LAUNCH_NONE;
    out->bootstrap = BOOTSTRAP_NONE;
    return 0;
}

int launch_free_port(MpError *err) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return mp_fail(err, "launcher: socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
        int e = errno;
        close(fd);
        return mp_fail(err, "launcher: no free port on 127.0.0.1: %s", strerror(e));
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

/* In the child after fork: set the rank variables and exec.  Never returns. */
static void exec_child(char *const argv[], int rank, const LaunchOptions *opt, pid_t parent) {
    /* die with the launcher, even if it is killed with SIGKILL */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", rank);
    setenv("RANK", buf, 1);
    setenv("LOCAL_RANK", buf, 1);
    snprintf(buf, sizeof buf, "%d", opt->nproc);
    setenv("WORLD_SIZE", buf, 1);
    setenv("LOCAL_WORLD_SIZE", buf, 1);
    snprintf(buf, sizeof buf, "%d", opt->master_port);
    setenv("MASTER_PORT", buf, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MOEPLAN_LAUNCHER", "1", 1);
    execv(argv[0], argv);
    _exit(127);   /* exec failed: the parent reports status 127 */
}

static void describe(int status, int *code, int *sig) {
    if (WIFEXITED(status)) { *code = WEXITSTATUS(status); *sig = 0; }
    else if (WIFSIGNALED(status)) { *sig = WTERMSIG(status); *code = 128 + *sig; }
    else { *code = 1; *sig = 0; }
}

int launch_local(char *const argv[], const LaunchOptions *opt, LaunchReport *rep, MpError *err) {
    int n = opt->nproc;
    rep->failed_rank = -1;
    rep->exit_status = 0;
    rep->signal = 0;
    rep->seconds = 0;
    if (n < 1) return mp_fail(err, "--nproc: must be >= 1, got %d", n);
    if (opt->master_port < 1 || opt->master_port > 65535)
        return mp_fail(err, "launcher: port %d is not a TCP port", opt->master_port);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    bool *alive = calloc((size_t)n, sizeof *alive);
    if (!pids || !alive) { free(pids); free(alive); return mp_fail(err, "launcher: out of memory"); }
    double t0 = now_s();
    pid_t self = getpid();
    int started = 0;
    for (; started < n; started++) {
        pid_t pid = fork();
        if (pid < 0) break;
        if (pid == 0) exec_child(argv, started, opt, self);
        pids[started] = pid;
        alive[started] = true;
    }
    int fork_errno = started < n ? errno : 0;

    int running = started;
    double kill_at = -1;       /* when survivors get SIGKILL */
    if (started < n) {         /* could not start everyone: stop the rest */
        for (int i = 0; i < started; i++) kill(pids[i], SIGTERM);
        kill_at = now_s() + opt->kill_grace_s;
    }
    while (running > 0) {
        bool reaped = false;
        for (int i = 0; i < started; i++) {
            if (!alive[i]) continue;
            int status;
            pid_t r = waitpid(pids[i], &status, WNOHANG);
            if (r == 0) continue;
            alive[i] = false;
            running--;
            reaped = true;
            int code = 0, sig = 0;
            if (r == pids[i]) describe(status, &code, &sig);
            else code = 1;   /* waitpid error: treat as a failure */
            if (code != 0 && rep->failed_rank < 0 && kill_at < 0) {
                rep->failed_rank = i;
                rep->exit_status = code;
                rep->signal = sig;
                for (int j = 0; j < started; j++)
                    if (alive[j]) kill(pids[j], SIGTERM);
                kill_at = now_s() + opt->kill_grace_s;
            }
        }
        if (kill_at >= 0 && now_s() >= kill_at) {
            for (int j = 0; j < started; j++)
                if (alive[j]) kill(pids[j], SIGKILL);
            kill_at = now_s() + 3600;   /* once */
        }
        if (!reaped && running > 0) sleep_s(0.01);
    }
    rep->seconds = now_s() - t0;
    free(pids);
    free(alive);
    if (started < n)
        return mp_fail(err, "launcher: could not start rank %d: fork: %s", started, strerror(fork_errno));
    if (rep->failed_rank < 0) return 0;
    if (rep->signal)
        return mp_fail(err, "rank %d: killed by signal %d (%s); the other %d rank(s) were stopped",
                       rep->failed_rank, rep->signal, strsignal(rep->signal), n - 1);
    if (rep->exit_status == 127)
        return mp_fail(err, "rank %d: could not start %s (exit status 127); the other %d rank(s) were stopped",
                       rep->failed_rank, argv[0], n - 1);
    return mp_fail(err, "rank %d: exited with status %d; the other %d rank(s) were stopped",
                   rep->failed_rank, rep->exit_status, n - 1);
}
