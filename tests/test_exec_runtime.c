/* test_exec_runtime.c: the executor's runtime on the CPU: rank detection
 * from launcher variables, the TCP rendezvous on loopback, the built-in
 * launcher's failure handling, the watchdog (dead peers, the deadline per
 * collective), the measurement figures, the pre-launch checks
 * (preflight.c), exclusive phase timing when phases nest, and a MoE layer
 * with more than 64 EP ranks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executor/backend.h"
#include "executor/comms.h"
#include "executor/launch.h"
#include "executor/measure.h"
#include "executor/model.h"
#include "executor/phase_clock.h"
#include "executor/preflight.h"
#include "executor/rendezvous.h"
#include "executor/watchdog.h"

static const char *all_vars[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE",
    "MPI_LOCALRANKID", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "RANK", "WORLD_SIZE", "LOCAL_RANK",
    "MASTER_ADDR", "MASTER_PORT", "MOEPLAN_LAUNCHER",
};

static int clear_env(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++) unsetenv(all_vars[i]);
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- launch_detect ---- */

static void test_detect_none(void **state) {
    (void)state;
    LaunchEnv e;
    MpError err = {{0}};
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_NONE);
    assert_int_equal(e.bootstrap, BOOTSTRAP_NONE);
    assert_int_equal(e.rank, 0);
    assert_int_equal(e.world_size, 1);
}

static void test_detect_openmpi(void **state) {
    (void)state;
    setenv("OMPI_COMM_WORLD_RANK", "5", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    setenv("RANK", "0", 1);   /* Open MPI wins over torchrun-style variables */
    setenv("WORLD_SIZE", "2", 1);
    LaunchEnv e;
    MpError err = {{0}};
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_OPENMPI);
    assert_int_equal(e.bootstrap, BOOTSTRAP_MPI);
    assert_int_equal(e.rank, 5);
    assert_int_equal(e.world_size, 8);
    assert_int_equal(e.local_rank, 1);
}

static void test_detect_pmi(void **state) {
    (void)state;
    setenv("PMI_RANK", "3", 1);
    setenv("PMI_SIZE", "4", 1);
    LaunchEnv e;
    MpError err = {{0}};
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_PMI);
    assert_int_equal(e.bootstrap, BOOTSTRAP_MPI);
    assert_int_equal(e.rank, 3);
    assert_int_equal(e.world_size, 4);
    assert_int_equal(e.local_rank, -1);   /* unknown: round robin over the GPUs */
    setenv("MPI_LOCALRANKID", "2", 1);
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.local_rank, 2);
}

static void test_detect_slurm(void **state) {
    (void)state;
    setenv("SLURM_PROCID", "9", 1);
    setenv("SLURM_NTASKS", "16", 1);
    setenv("SLURM_LOCALID", "1", 1);
    LaunchEnv e;
    MpError err = {{0}};
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_SLURM);
    assert_int_equal(e.bootstrap, BOOTSTRAP_MPI);   /* no MASTER_ADDR: MPI */
    assert_int_equal(e.rank, 9);
    assert_int_equal(e.world_size, 16);
    assert_int_equal(e.local_rank, 1);
    setenv("MASTER_ADDR", "node017", 1);
    setenv("MASTER_PORT", "29500", 1);
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.bootstrap, BOOTSTRAP_TCP);
    assert_string_equal(e.master_addr, "node017");
    assert_int_equal(e.master_port, 29500);
}

static void test_detect_torchrun(void **state) {
    (void)state;
    setenv("RANK", "1", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("LOCAL_RANK", "1", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "12345", 1);
    LaunchEnv e;
    MpError err = {{0}};
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_TORCHRUN);
    assert_int_equal(e.bootstrap, BOOTSTRAP_TCP);
    assert_int_equal(e.rank, 1);
    assert_int_equal(e.world_size, 2);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.master_addr, "127.0.0.1");
    assert_int_equal(e.master_port, 12345);
    setenv("MOEPLAN_LAUNCHER", "1", 1);
    assert_int_equal(launch_detect(&e, &err), 0);
    assert_int_equal(e.source, LAUNCH_BUILTIN);
}

static void test_detect_bad_values(void **state) {
    (void)state;
    LaunchEnv e;
    MpError err = {{0}};
    setenv("RANK", "abc", 1);
    setenv("WORLD_SIZE", "2", 1);
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_string_equal(err.msg, "RANK: 'abc' is not an integer");

    setenv("RANK", "2", 1);
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_string_equal(err.msg, "RANK: 2 is not below WORLD_SIZE=2");

    setenv("RANK", "1", 1);   /* two ranks but no MASTER_ADDR */
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_non_null(strstr(err.msg, "MASTER_ADDR: not set"));

    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "70000", 1);
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_string_equal(err.msg, "MASTER_PORT: 70000 is not a TCP port (1..65535)");

    unsetenv("WORLD_SIZE");
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_string_equal(err.msg, "WORLD_SIZE: not set although RANK is");

    clear_env(NULL);
    setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "-3", 1);
    assert_int_equal(launch_detect(&e, &err), -1);
    assert_string_equal(err.msg, "OMPI_COMM_WORLD_SIZE: '-3' is out of range");
}

/* ---- rendezvous on loopback ---- */

static void fill_blob(unsigned char *b, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 37u + 11u);
}

static void test_rendezvous_loopback(void **state) {
    (void)state;
    MpError err = {{0}};
    int port = launch_free_port(&err);
    assert_true(port > 0);
    enum { WORLD = 4, LEN = 128 };
    pid_t kids[WORLD];
    for (int r = 1; r < WORLD; r++) {
        kids[r] = fork();
        assert_true(kids[r] >= 0);
        if (kids[r] == 0) {
            unsigned char got[LEN], want[LEN];
            memset(got, 0, sizeof got);
            fill_blob(want, LEN);
            MpError e = {{0}};
            /* peers start before rank 0 listens: they must retry */
            int rc = rendezvous_broadcast("127.0.0.1", port, r, WORLD, got, LEN, 10.0, &e);
            _exit(rc == 0 && memcmp(got, want, LEN) == 0 ? 0 : 1);
        }
    }
    struct timespec t = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    nanosleep(&t, NULL);
    unsigned char blob[LEN];
    fill_blob(blob, LEN);
    assert_int_equal(rendezvous_broadcast("127.0.0.1", port, 0, WORLD, blob, LEN, 10.0, &err), 0);
    for (int r = 1; r < WORLD; r++) {
        int status;
        assert_int_equal(waitpid(kids[r], &status, 0), kids[r]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

static void test_rendezvous_peer_times_out(void **state) {
    (void)state;
    MpError err = {{0}};
    int port = launch_free_port(&err);   /* nobody listens there */
    unsigned char blob[16];
    double t0 = now_s();
    assert_int_equal(rendezvous_broadcast("127.0.0.1", port, 1, 2, blob, sizeof blob, 0.3, &err), -1);
    assert_true(now_s() - t0 < 3.0);
    assert_non_null(strstr(err.msg, "rank 1 could not reach rank 0 at 127.0.0.1"));
}

static void test_rendezvous_missing_rank(void **state) {
    (void)state;
    MpError err = {{0}};
    int port = launch_free_port(&err);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {   /* only rank 1 of ranks 1..2 arrives */
        unsigned char b[16];
        MpError e = {{0}};
        rendezvous_broadcast("127.0.0.1", port, 1, 3, b, sizeof b, 2.0, &e);
        _exit(0);
    }
    unsigned char blob[16] = {1, 2, 3};
    double t0 = now_s();
    assert_int_equal(rendezvous_broadcast("127.0.0.1", port, 0, 3, blob, sizeof blob, 0.6, &err), -1);
    assert_true(now_s() - t0 < 3.0);
    assert_non_null(strstr(err.msg, "1 of 2 rank(s) never arrived (missing: 2)"));
    int status;
    waitpid(kid, &status, 0);
}

/* ---- the built-in launcher ---- */

static void test_launch_sets_rank_variables(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-launch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[512];
    snprintf(script, sizeof script,
             "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT $MOEPLAN_LAUNCHER\" > %s/out.$RANK",
             dir);
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    LaunchOptions lo = {.nproc = 3, .master_port = 23456, .kill_grace_s = 1.0};
    LaunchReport rep;
    MpError err = {{0}};
    assert_int_equal(launch_local(argv, &lo, &rep, &err), 0);
    assert_int_equal(rep.failed_rank, -1);
    for (int r = 0; r < 3; r++) {
        char path[600], line[256] = "", want[256];
        snprintf(path, sizeof path, "%s/out.%d", dir, r);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        unlink(path);
        snprintf(want, sizeof want, "%d 3 %d 3 127.0.0.1 23456 1\n", r, r);
        assert_string_equal(line, want);
    }
    rmdir(dir);
}

static void test_launch_failure_stops_everyone(void **state) {
    (void)state;
    /* rank 2 fails after 0.2 s; the others would sleep 30 s */
    char *argv[] = {"/bin/sh", "-c", "if [ \"$RANK\" = 2 ]; then sleep 0.2; exit 3; fi; exec sleep 30", NULL};
    LaunchOptions lo = {.nproc = 4, .master_port = 23457, .kill_grace_s = 1.0};
    LaunchReport rep;
    MpError err = {{0}};
    double t0 = now_s();
    assert_int_equal(launch_local(argv, &lo, &rep, &err), -1);
    double took = now_s() - t0;
    assert_true(took < 5.0);
    assert_int_equal(rep.failed_rank, 2);
    assert_int_equal(rep.exit_status, 3);
    assert_int_equal(rep.signal, 0);
    assert_string_equal(err.msg, "rank 2: exited with status 3; the other 3 rank(s) were stopped");
}

static void test_launch_signal_and_stubborn_child(void **state) {
    (void)state;
    /* rank 0 dies of SIGSEGV; rank 1 ignores SIGTERM and must get SIGKILL */
    char *argv[] = {"/bin/sh", "-c",
                    "if [ \"$RANK\" = 0 ]; then sleep 0.2; kill -SEGV $$; fi; trap '' TERM; while :; do sleep 0.1; done",
                    NULL};
    LaunchOptions lo = {.nproc = 2, .master_port = 23458, .kill_grace_s = 0.5};
    LaunchReport rep;
    MpError err = {{0}};
    double t0 = now_s();
    assert_int_equal(launch_local(argv, &lo, &rep, &err), -1);
    assert_true(now_s() - t0 < 5.0);
    assert_int_equal(rep.failed_rank, 0);
    assert_int_equal(rep.signal, SIGSEGV);
    assert_int_equal(rep.exit_status, 128 + SIGSEGV);
    assert_non_null(strstr(err.msg, "rank 0: killed by signal 11"));
}

static void test_launch_exec_failure(void **state) {
    (void)state;
    char *argv[] = {"/nonexistent/moeplan", "execute", NULL};
    LaunchOptions lo = {.nproc = 2, .master_port = 23459, .kill_grace_s = 0.5};
    LaunchReport rep;
    MpError err = {{0}};
    assert_int_equal(launch_local(argv, &lo, &rep, &err), -1);
    assert_int_equal(rep.exit_status, 127);
    assert_non_null(strstr(err.msg, "could not start /nonexistent/moeplan"));
}

/* ---- watchdog (the NCCL check replaced by a counter) ---- */

typedef struct {
    atomic_int polls, aborted, failed_rank;
    char message[128];
} FakeComms;

static int fake_check(void *ctx, char *msg, int len) {
    FakeComms *f = ctx;
    if (atomic_fetch_add(&f->polls, 1) + 1 < 3) return 0;
    snprintf(msg, (size_t)len, "NCCL error on the ep communicator: remote process exited");
    return 1;
}

static void fake_abort(void *ctx) { atomic_store(&((FakeComms *)ctx)->aborted, 1); }

static void fake_failure(void *user, int rank, const char *message) {
    FakeComms *f = user;
    snprintf(f->message, sizeof f->message, "%s", message);
    atomic_store(&f->failed_rank, rank);
}

static void test_watchdog_reports_once(void **state) {
    (void)state;
    FakeComms f;
    memset(&f, 0, sizeof f);
    atomic_store(&f.failed_rank, -1);
    Watchdog *w = NULL;
    MpError err = {{0}};
    assert_int_equal(watchdog_start_custom(fake_check, fake_abort, &f, 7, 0.02, fake_failure, &f, &w, &err), 0);
    double t0 = now_s();
    while (atomic_load(&f.failed_rank) < 0 && now_s() - t0 < 5.0) {
        struct timespec t = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    watchdog_stop(w);
    assert_int_equal(atomic_load(&f.failed_rank), 7);
    assert_int_equal(atomic_load(&f.aborted), 1);
    assert_int_equal(atomic_load(&f.polls), 3);   /* stops polling after the failure */
    assert_string_equal(f.message, "NCCL error on the ep communicator: remote process exited");
}

/* The rank check of watchdog_start: a peer on this node that ended, and a
 * collective past its deadline. */
static void test_watchdog_dead_peer_and_deadline(void **state) {
    (void)state;
    CommsContext c;
    memset(&c, 0, sizeof c);
    c.kind = EXEC_BACKEND_CPU;
    c.pub.world_rank = 0;
    c.pub.world_size = 3;
    int pids[3] = {0, 0, 0};
    c.peer_pid = pids;
    snprintf(c.group_ranks[GROUP_EP], sizeof c.group_ranks[GROUP_EP], "0,1,2");
    char msg[MP_ERROR_LEN];
    long long now = collective_watch_now_ns();
    assert_int_equal(watchdog_check_rank(&c, 2.0, true, now, msg, sizeof msg), 0);
    /* rank 2 is a child that exits: a zombie first (not reaped), then gone */
    pid_t child = fork();
    if (child == 0) _exit(0);
    pids[1] = (int)getpid();   /* a live peer */
    pids[2] = (int)child;
    double t0 = now_s();
    while (!comms_pid_ended(child) && now_s() - t0 < 5) usleep(1000);
    assert_int_equal(watchdog_check_rank(&c, 2.0, true, now, msg, sizeof msg), 1);
    char want[128];
    snprintf(want, sizeof want, "rank 2 (pid %d, this node) has died; ending the job", (int)child);
    assert_string_equal(msg, want);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_int_equal(watchdog_check_rank(&c, 2.0, true, now, msg, sizeof msg), 1);
    assert_string_equal(msg, want);
    /* in the job's last collective peers may end */
    assert_int_equal(watchdog_check_rank(&c, 2.0, false, now, msg, sizeof msg), 0);
    pids[2] = 0;
    /* a collective that started 5 s before `now` */
    collective_watch_begin(&c.watch, GROUP_EP, "all_to_all_v");
    long long start = atomic_load(&c.watch.start_ns);
    assert_int_equal(watchdog_check_rank(&c, 10.0, true, start + 5000000000LL, msg, sizeof msg), 0);
    assert_int_equal(watchdog_check_rank(&c, 0.0, true, start + 5000000000LL, msg, sizeof msg), 0);   /* no deadline */
    assert_int_equal(watchdog_check_rank(&c, 2.0, true, start + 5000000000LL, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "the all_to_all_v on the ep group (ranks 0,1,2) has not completed after 5.0 s "
                                "(deadline 2.0 s, --collective-timeout)"));
    collective_watch_end(&c.watch);
    assert_int_equal(watchdog_check_rank(&c, 2.0, true, start + 5000000000LL, msg, sizeof msg), 0);
    assert_int_equal(atomic_load(&c.watch.completed), 1);
}

static void record_failure(void *user, int rank, const char *message) {
    FakeComms *f = user;
    snprintf(f->message, sizeof f->message, "%s", message);
    atomic_store(&f->failed_rank, rank);
}

/* watchdog_start on the CPU backend: the thread reports a collective that
 * never completes (before, the CPU path had no watchdog at all). */
static void test_watchdog_thread_deadline_cpu(void **state) {
    (void)state;
    CommsContext c;
    memset(&c, 0, sizeof c);
    c.kind = EXEC_BACKEND_CPU;
    c.pub.world_rank = 4;
    c.pub.world_size = 8;
    FakeComms f;
    memset(&f, 0, sizeof f);
    atomic_store(&f.failed_rank, -1);
    Watchdog *w = NULL;
    MpError err = {{0}};
    assert_int_equal(watchdog_start(&c, 0.02, 0.2, record_failure, &f, &w, &err), 0);
    collective_watch_begin(&c.watch, -1, "all_reduce(max) of the step statistics");
    double t0 = now_s();
    while (atomic_load(&f.failed_rank) < 0 && now_s() - t0 < 5.0) usleep(5000);
    double waited = now_s() - t0;
    watchdog_stop(w);
    assert_int_equal(atomic_load(&f.failed_rank), 4);
    assert_true(waited >= 0.2 && waited < 2.0);
    assert_non_null(strstr(f.message, "the all_reduce(max) of the step statistics on the world group has not completed"));
}

/* ---- phases that nest (issue 11 item 7) ---- */

static void test_phase_clock_nesting(void **state) {
    (void)state;
    enum { A = 0, B = 1, C = 2 };
    PhaseClock c;
    phase_clock_reset(&c);
    double out[3] = {0, 0, 0};
    /* A [0, 10) containing B [2, 5) containing C [3, 4); A again inside A [6, 7) */
    phase_clock_begin(&c, A, 0);
    phase_clock_begin(&c, B, 2);
    phase_clock_begin(&c, C, 3);
    phase_clock_end(&c, C, 4);
    phase_clock_end(&c, B, 5);
    phase_clock_begin(&c, A, 6);
    phase_clock_end(&c, A, 7);
    phase_clock_end(&c, A, 10);
    phase_clock_collect(&c, 12, out, 3);   /* nothing open in [10, 12) */
    assert_true(out[A] == 7 && out[B] == 2 && out[C] == 1);   /* 10 s of phases in 10 s */
    /* an end without its begin is ignored; an outer end closes what was left open inside */
    memset(out, 0, sizeof out);
    phase_clock_end(&c, B, 13);
    assert_int_equal(c.unmatched, 1);
    phase_clock_begin(&c, A, 20);
    phase_clock_begin(&c, B, 21);
    phase_clock_end(&c, A, 24);            /* B never ended */
    phase_clock_begin(&c, C, 30);
    phase_clock_collect(&c, 31, out, 3);   /* C still open: charged up to now, stays open */
    phase_clock_end(&c, C, 33);
    phase_clock_collect(&c, 40, out, 3);
    assert_true(out[A] == 1 && out[B] == 3 && out[C] == 3);
    assert_int_equal(c.depth, 0);
}

static double sleep_s(double s) {
    struct timespec t = {.tv_sec = 0, .tv_nsec = (long)(s * 1e9)};
    nanosleep(&t, NULL);
    return s;
}

/* The CPU backend with nested phases: the phases partition the step, their
 * sum never exceeds it (it used to count the inner phase twice). */
static void test_cpu_backend_nested_phases(void **state) {
    (void)state;
    ExecComms comms;
    memset(&comms, 0, sizeof comms);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) comms.size_of[k] = 1;
    comms.world_size = 1;
    Backend *be;
    MpError err = {{0}};
    assert_int_equal(backend_cpu_create(&comms, &be, &err), 0);
    double out[PHASE_COUNT] = {0};
    be->step_times(be, out);
    memset(out, 0, sizeof out);
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    sleep_s(0.02);
    be->phase_begin(be, PHASE_DISPATCH_COMM);
    sleep_s(0.02);
    be->phase_end(be, PHASE_DISPATCH_COMM);
    be->phase_end(be, PHASE_MOE_COMPUTE);
    double wall = be->step_times(be, out);
    double sum = 0;
    for (int p = 0; p < PHASE_COUNT; p++) sum += out[p];
    if (sum > wall + 1e-9 || out[PHASE_DISPATCH_COMM] < 0.019 || out[PHASE_MOE_COMPUTE] < 0.019)
        fail_msg("moe %.4f + dispatch %.4f = %.4f s in a step of %.4f s", out[PHASE_MOE_COMPUTE],
                 out[PHASE_DISPATCH_COMM], sum, wall);
    be->destroy(be);
}

/* ---- a MoE layer with more EP ranks than the old 64-entry stack arrays ---- */

/* One process plays EP rank 3 of 128 ranks that all hold the same tokens
 * (so every peer sends this rank what it sends itself): the EP collectives
 * are emulated on the host, everything else is the CPU backend. */
static void sym_all_to_all_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n, GroupKind g) {
    int size = b->comms->size_of[g], me = b->comms->rank_in[g];
    for (int i = 0; i < size; i++) memcpy(recv + (size_t)i * n, send + (size_t)me * n, sizeof(int32_t) * (size_t)n);
}

static void sym_all_to_all_v(Backend *b, const void *send, const size_t *sc, const size_t *sd, void *recv,
                             const size_t *rc, const size_t *rd, ElemType t, GroupKind g) {
    int size = b->comms->size_of[g], me = b->comms->rank_in[g];
    size_t eb = elem_bytes(b, t);
    for (int i = 0; i < size; i++) {
        size_t n = rc[i] < sc[me] ? rc[i] : sc[me];
        memcpy((char *)recv + rd[i] * eb, (const char *)send + sd[me] * eb, n * eb);
    }
}

static void test_moe_layer_with_128_ep_ranks(void **state) {
    (void)state;
    Plan p;
    memset(&p, 0, sizeof p);
    ModelSpec *m = &p.model;
    snprintf(m->name, sizeof m->name, "ep128");
    m->num_layers = 1; m->hidden = 16; m->num_heads = 2; m->num_kv_groups = 1; m->head_dim = 8;
    m->num_experts = 128; m->top_k = 2; m->expert_ffn = 8; m->vocab = 32; m->swiglu = true;
    p.map = (Mapping){.world = 128, .tp = 1, .cp = 1, .dp = 128, .pp = 1, .vpp = 1, .etp = 1, .ep = 128, .edp = 1};
    p.train.seq_len = 64;
    p.train.micro_batch = 1;
    ExecComms comms;
    memset(&comms, 0, sizeof comms);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) comms.size_of[k] = 1;
    comms.size_of[GROUP_EP] = comms.size_of[GROUP_ETP_EP] = 128;
    comms.rank_in[GROUP_EP] = comms.rank_in[GROUP_ETP_EP] = 3;
    comms.world_size = 128;
    comms.world_rank = 3;
    Backend *be;
    MpError err = {{0}};
    assert_int_equal(backend_cpu_create(&comms, &be, &err), 0);
    be->all_to_all_host_i32 = sym_all_to_all_host_i32;
    be->all_to_all_v = sym_all_to_all_v;
    Model *model;
    if (model_create(&p, 0, 99, be, &model, &err)) fail_msg("%s", err.msg);
    int32_t tokens[64], targets[64];
    for (int t = 0; t < 64; t++) { tokens[t] = (t * 7) % 32; targets[t] = (t * 7 + 3) % 32; }
    double loss = 0;
    assert_int_equal(model_forward_backward(model, tokens, targets, 1.0f / 64, &loss, &err), 0);
    /* near ln 32 = 3.47 at initialisation (std 0.02 weights: near-uniform logits) */
    if (!(loss / 64 > 3.0 && loss / 64 < 4.0)) fail_msg("mean loss %.4f", loss / 64);
    model_destroy(model);
    be->destroy(be);
}

/* ---- pre-launch checks (preflight.c) ---- */

/* The tiny model of tests/data/exec-tiny-moe.json: L 2, h 64, n 4, g 2,
 * d 16, E 4, k 2, Fe 96, V 256, untied, no shared or dense layers. */
static void exec_tiny_plan(Plan *p, int ep) {
    memset(p, 0, sizeof *p);
    ModelSpec *m = &p->model;
    snprintf(m->name, sizeof m->name, "exec-tiny-moe");
    m->num_layers = 2; m->hidden = 64; m->num_heads = 4; m->num_kv_groups = 2; m->head_dim = 16;
    m->num_experts = 4; m->top_k = 2; m->expert_ffn = 96; m->vocab = 256; m->swiglu = true;
    p->map = (Mapping){.world = ep, .tp = 1, .cp = 1, .dp = ep, .pp = 1, .vpp = 1, .etp = 1, .ep = ep, .edp = 1};
    p->train.seq_len = 32;
    p->train.micro_batch = 1;
    p->train.global_batch = ep;
}

static void test_preflight_cpu_memory(void **state) {
    (void)state;
    Plan p;
    CpuMemoryEstimate e;
    /* parameters by hand: embedding + output 2*256*64 = 32768, final norm 64,
     * per layer norms 128 + QKV (4+2*2)*16*64 = 8192 + output projection
     * 64*64 = 4096 + router 4*64 = 256 -> 12672, two layers 25344;
     * experts 2 layers * 4 * 3*96*64 = 147456.  Total 205632 x 16 bytes. */
    exec_tiny_plan(&p, 1);
    preflight_cpu_memory(&p, 0, 1000, &e);
    assert_true(e.params == 16.0 * 205632);
    assert_true(e.data == 4000.0);
    assert_true(e.total == e.params + e.activations + e.data + e.base);
    assert_true(e.activations > 0 && e.activations < e.params);
    /* EP 2: half the experts per rank (73728) */
    exec_tiny_plan(&p, 2);
    preflight_cpu_memory(&p, 0, 0, &e);
    assert_true(e.params == 16.0 * (205632 - 73728));
    /* --layers 1: one layer of each */
    preflight_cpu_memory(&p, 1, 0, &e);
    assert_true(e.params == 16.0 * (32768 + 64 + 12672 + 36864));
    /* the model the CPU backend builds holds exactly those parameters */
    exec_tiny_plan(&p, 1);
    ExecComms comms;
    memset(&comms, 0, sizeof comms);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) comms.size_of[k] = 1;
    comms.world_size = 1;
    Backend *be;
    Model *model;
    MpError err = {{0}};
    assert_int_equal(backend_cpu_create(&comms, &be, &err), 0);
    assert_int_equal(model_create(&p, 0, 1, be, &model, &err), 0);
    assert_int_equal(model_local_params(model), 205632);
    model_destroy(model);
    be->destroy(be);
    /* MemAvailable */
    double avail = 0;
    assert_int_equal(preflight_mem_available("MemTotal:  100 kB\nMemFree: 5 kB\nMemAvailable:    2048 kB\n", &avail), 0);
    assert_true(avail == 2048.0 * 1024);
    assert_int_equal(preflight_mem_available("MemTotal:  100 kB\n", &avail), -1);
    assert_int_equal(preflight_mem_available("MemAvailable: lots\n", &avail), -1);
}

static void test_preflight_plan_and_model(void **state) {
    (void)state;
    Plan p;
    exec_tiny_plan(&p, 1);
    train_config_default(&p.train);   /* simulate's defaults: distributed optimizer, grad+param overlap */
    PlanRequested none = {0}, asked = {0};
    PreflightNotes notes;
    MpError err = {{0}};
    assert_int_equal(preflight_plan(&p, &none, &notes, &err), 0);
    assert_int_equal(notes.count, 0);
    assert_int_equal(p.train.opt_sharding, OPT_SHARD_DISTRIBUTED);   /* runs (ZeRO-1) */
    /* every word the step runs, on by default */
    assert_int_equal(p.train.overlap, OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_P2P | OVERLAP_CP);
    /* a default with a word that does not run keeps the ones that do */
    p.train.overlap = OVERLAP_GRAD | OVERLAP_EP;
    assert_int_equal(preflight_plan(&p, &none, &notes, &err), 0);
    assert_int_equal(p.train.overlap, OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_P2P | OVERLAP_CP);
    assert_int_equal(notes.count, 1);
    assert_non_null(strstr(notes.line[0], "overlap: the default 'ep'"));
    /* asked for: distributed runs, full sharding is refused */
    train_config_default(&p.train);
    asked.optimizer_sharding = true;
    p.train.overlap = 0;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);
    p.train.opt_sharding = OPT_SHARD_FULL;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "optimizer_sharding: full:"));
    train_config_default(&p.train);
    p.train.opt_sharding = OPT_SHARD_NONE;
    asked.overlap = true;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);   /* grad,param run */
    p.train.overlap = OVERLAP_PARAM | OVERLAP_TP;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "overlap: tp:"));
    /* asked for: the words the step runs pass as given, the others are named */
    p.train.overlap = OVERLAP_CP;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);
    assert_int_equal(p.train.overlap, OVERLAP_CP);
    p.train.overlap = 0;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);
    assert_int_equal(p.train.overlap, 0);
    p.train.overlap = OVERLAP_P2P | OVERLAP_EP;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "overlap: ep:"));
    p.train.overlap = 0;
    /* tensor parallelism runs; splits it cannot make are refused */
    p.map.tp = 2;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);
    p.map.tp = 3;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "tp: 3 does not divide num_heads"));
    p.map.tp = 1;
    p.map.vpp = 2;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "vpp: 2:"));
    /* pipelines run; the interleaved schedule needs m = gbs / (mbs * DP) a
     * multiple of pp (3 micro-batches, pp 2: refused) */
    Plan q = p;
    q.map.pp = 2;
    q.map.vpp = 2;
    int dp = q.map.dp > 0 ? q.map.dp : 1;
    q.train.global_batch = 3 * q.train.micro_batch * dp;
    assert_int_equal(preflight_plan(&q, &asked, &notes, &err), -1);
    assert_non_null(strstr(err.msg, "to be a multiple of pp 2 (Megatron-LM's constraint)"));
    q.train.global_batch = 4 * q.train.micro_batch * dp;
    assert_int_equal(preflight_plan(&q, &asked, &notes, &err), 0);
    q.map.vpp = 1;
    q.first_stage_layers = 1;
    assert_int_equal(preflight_plan(&q, &asked, &notes, &err), 0);
    p.map.vpp = 1;
    assert_int_equal(preflight_plan(&p, &asked, &notes, &err), 0);
    assert_int_equal(notes.count, 0);
    /* model features */
    assert_int_equal(preflight_model(&p.model, &err), 0);
    static const struct { size_t off; int value; const char *want; } bad[] = {
        {offsetof(ModelSpec, num_experts), 0, "the executor runs MoE models only"},
        {offsetof(ModelSpec, num_experts), 512, "num_experts: 512: the executor supports at most 256 experts"},
        {offsetof(ModelSpec, sliding_window), 4096, "sliding-window attention"},
        {offsetof(ModelSpec, mtp_layers), 1, "multi-token-prediction layers"},
        {offsetof(ModelSpec, head_dim), 15, "head_dim: 15: RoPE needs an even head dimension"},
        {offsetof(ModelSpec, num_kv_groups), 3, "num_kv_groups: 3 does not divide num_heads 4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ModelSpec m = p.model;
        *(int *)((char *)&m + bad[i].off) = bad[i].value;
        assert_int_equal(preflight_model(&m, &err), -1);
        if (!strstr(err.msg, bad[i].want)) fail_msg("'%s' not in '%s'", bad[i].want, err.msg);
    }
    ModelSpec m = p.model;
    m.mla = true;
    assert_int_equal(preflight_model(&m, &err), -1);
    assert_non_null(strstr(err.msg, "multi-head latent attention"));
    m = p.model;
    m.qkv_bias = true;
    assert_int_equal(preflight_model(&m, &err), -1);
    m = p.model;
    m.router = ROUTER_SIGMOID;
    assert_int_equal(preflight_model(&m, &err), -1);
    m = p.model;
    m.swiglu = false;
    assert_int_equal(preflight_model(&m, &err), -1);
}

static void test_preflight_output_path(void **state) {
    (void)state;
    MpError err = {{0}};
    char dir[] = "/tmp/moeplan-pre-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/result.json", dir);
    assert_int_equal(preflight_output_path(path, "--out", &err), 0);   /* absent, directory writable */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(preflight_output_path(path, "--out", &err), 0);   /* a regular file is replaced */
    unlink(path);
    struct stat st;
    if (stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode)) {   /* (a shared machine may have lost it) */
        assert_int_equal(preflight_output_path("/dev/null", "--out", &err), -1);
        assert_string_equal(err.msg,
                            "/dev/null: --out: not a regular file (a device, FIFO or socket is never replaced)");
    }
    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(preflight_output_path(path, "--csv", &err), -1);
    assert_non_null(strstr(err.msg, "fifo: --csv: not a regular file"));
    unlink(path);
    assert_int_equal(preflight_output_path(dir, "--out", &err), -1);
    assert_non_null(strstr(err.msg, ": --out: is a directory"));
    snprintf(path, sizeof path, "%s/no/such/result.json", dir);
    assert_int_equal(preflight_output_path(path, "--out", &err), -1);
    assert_non_null(strstr(err.msg, "no/such: No such file or directory"));
    rmdir(dir);
}

/* ---- measurement ---- */

/* A tiny MoE model: L 2, h 64, n = g = 4, d 16, E 4, k 2, Fe 128, V 256, SwiGLU. */
static void tiny_plan(Plan *p) {
    memset(p, 0, sizeof *p);
    ModelSpec *m = &p->model;
    snprintf(m->name, sizeof m->name, "tiny");
    m->num_layers = 2; m->hidden = 64; m->num_heads = 4; m->num_kv_groups = 4; m->head_dim = 16;
    m->num_experts = 4; m->top_k = 2; m->expert_ffn = 128; m->vocab = 256; m->swiglu = true;
    snprintf(p->cluster.name, sizeof p->cluster.name, "test");
    p->cluster.peak_bf16_flops = 1e9;
    p->map = (Mapping){.world = 2, .tp = 1, .cp = 1, .dp = 2, .pp = 1, .vpp = 1, .etp = 1, .ep = 2, .edp = 1};
    p->train.seq_len = 32;
    p->train.micro_batch = 1;
    p->train.global_batch = 2;
}

static void test_measure_figures(void **state) {
    (void)state;
    Plan p;
    tiny_plan(&p);
    ExecStepStats s;
    memset(&s, 0, sizeof s);
    s.steps_timed = 5;
    s.tokens_per_step = 64;   /* 2 sequences of 32 */
    s.median = (ExecPhases){.step = 0.5, .attention = 0.1, .moe_compute = 0.2, .dispatcher_comm = 0.05,
                            .grad_sync = 0.05, .optimizer = 0.04, .other = 0.06};
    s.peak_memory_bytes = 3 * 1073741824.0;
    Measurement m;
    measure_compute(&p, 0, 2, &s, NULL, &m);
    /* per token, megatron: MLP 12*64*1.5*(128*2)*2 = 589824, attention
     * 12*2*(64*64 + 64*64 + 32*64/2) = 221184, logits 6*64*256 = 98304:
     * 909312, x 64 tokens = 58195968 FLOPs.
     * legacy: attention 12*2*(4096 + 4096 + 32*64) = 245760 (full s), same
     * MLP and logits: 933888, x 64 = 59768832. */
    assert_true(fabs(m.flops_megatron - 58195968.0) < 1e-3);
    assert_true(fabs(m.flops_legacy - 59768832.0) < 1e-3);
    /* MFU = FLOPs / (0.5 s * 2 GPUs * 1e9 FLOP/s) */
    assert_true(fabs(m.mfu_megatron - 0.058195968) < 1e-12);
    assert_true(fabs(m.mfu_legacy - 0.059768832) < 1e-12);
    assert_true(fabs(m.tflops_megatron_per_gpu - 58195968.0 / 0.5 / 2 / 1e12) < 1e-15);
    assert_true(fabs(m.tokens_per_s_per_gpu - 64.0) < 1e-12);   /* 64 / 0.5 / 2 */
    assert_int_equal(m.layers, 2);
    assert_false(m.have_prediction);

    /* rates, T = 1*32/(1*1) = 32 tokens, mb = 2/(1*2) = 1 micro-batch:
     * a2a bytes = 4 * Lm 2 * 1 * 32 * k 2 * h 64 * 2 bytes = 65536;
     * busbw = 65536 * (2-1)/2 / 0.05 s = 655360 B/s;
     * expert FLOPs = 18 * 64 * 128 * 2 * 32 * 2 = 18874368, / 0.2 s;
     * attention FLOPs = 12 * 2 * 32 * (4096 + 4096 + 32*64/2) = 7077888, / 0.1 s */
    measure_rates(&p, 0, 2, &m);
    assert_true(fabs(m.a2a_bytes_per_gpu - 65536.0) < 1e-9);
    assert_true(fabs(m.a2a_busbw - 655360.0) < 1e-6);
    assert_true(fabs(m.expert_tflops - 18874368.0 / 0.2 / 1e12) < 1e-15);
    assert_true(fabs(m.attention_tflops - 7077888.0 / 0.1 / 1e12) < 1e-15);

    /* --layers 1: per token 294912 + 110592 + 98304 = 503808 (megatron) */
    measure_compute(&p, 1, 2, &s, NULL, &m);
    assert_int_equal(m.layers, 1);
    assert_true(fabs(m.flops_megatron - 503808.0 * 64) < 1e-3);
}

static void test_measure_prediction_and_json(void **state) {
    (void)state;
    Plan p;
    tiny_plan(&p);
    ExecStepStats s;
    memset(&s, 0, sizeof s);
    double losses[3] = {5.5, 5.0, 4.25};
    s.losses = losses;
    s.loss_first = 5.5;
    s.loss_last = 4.25;
    s.steps_timed = 2;
    s.tokens_per_step = 64;
    s.median.step = 0.25;
    SimResult *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->fits = true;
    r->step_time_s = 0.2;
    r->mfu_megatron = 0.3;
    r->mfu_legacy = 0.31;
    r->breakdown.compute_attention = 0.01;
    r->breakdown.compute_moe = 0.02;
    r->breakdown.compute_memory_bound = 0.003;
    r->breakdown.comm_ep = 0.004;
    r->breakdown.comm_etp = 0.001;
    r->breakdown.comm_dp = 0.002;
    r->breakdown.comm_edp = 0.0005;
    r->breakdown.optimizer = 0.007;
    snprintf(r->dominant, sizeof r->dominant, "expert GEMMs");
    Measurement m;
    measure_compute(&p, 0, 2, &s, r, &m);
    m.steps = 3;
    m.warmup = 1;
    snprintf(m.backend, sizeof m.backend, "cpu");
    assert_true(m.have_prediction);
    assert_true(fabs(m.predicted.phases.moe_compute - 0.023) < 1e-12);      /* 0.02 + 0.003 */
    assert_true(fabs(m.predicted.phases.dispatcher_comm - 0.005) < 1e-12);  /* 0.004 + 0.001 */
    assert_true(fabs(m.predicted.phases.grad_sync - 0.0025) < 1e-12);       /* 0.002 + 0.0005 */

    char *text = measure_to_json(&p, &m);
    assert_non_null(text);
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    cJSON *me = cJSON_GetObjectItem(o, "measured");
    assert_true(fabs(cJSON_GetObjectItem(me, "step_time_s")->valuedouble - 0.25) < 1e-12);
    double mfu = cJSON_GetObjectItem(cJSON_GetObjectItem(me, "mfu"), "megatron")->valuedouble;
    assert_true(fabs(mfu - 58195968.0 / (0.25 * 2 * 1e9)) < 1e-9);
    cJSON *ls = cJSON_GetObjectItem(me, "losses");
    assert_int_equal(cJSON_GetArraySize(ls), 3);
    assert_true(fabs(cJSON_GetArrayItem(ls, 2)->valuedouble - 4.25) < 1e-12);
    cJSON *pr = cJSON_GetObjectItem(o, "predicted");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(pr, "fits")));
    assert_string_equal(cJSON_GetObjectItem(pr, "dominant")->valuestring, "expert GEMMs");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "plan"), "ep")->valueint, 2);
    cJSON_Delete(o);
    free(text);
    free(r);
}

static void test_measure_median_and_truncation(void **state) {
    (void)state;
    double a[] = {5, 1, 3};
    assert_true(measure_median(a, 3) == 3.0);
    double b[] = {4, 1, 3, 2};
    assert_true(measure_median(b, 4) == 2.5);
    ModelSpec full, t;
    memset(&full, 0, sizeof full);
    full.num_layers = 61;
    full.num_dense_layers = 3;
    measure_truncated_model(&full, 2, &t);
    assert_int_equal(t.num_layers, 2);
    assert_int_equal(t.num_dense_layers, 2);
    measure_truncated_model(&full, 0, &t);
    assert_int_equal(t.num_layers, 61);
    assert_int_equal(t.num_dense_layers, 3);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_write_atomic(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-out-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], bad[300];
    snprintf(path, sizeof path, "%s/result.json", dir);
    MpError err = {{0}};
    assert_int_equal(measure_write_atomic(path, "{\"a\": 1}", &err), 0);
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "{\"a\": 1}\n");
    assert_int_equal(count_entries(dir), 1);   /* no temp file left */
    /* a directory in the way of the rename: fails, leaves the old nothing */
    snprintf(bad, sizeof bad, "%s/sub", dir);
    mkdir(bad, 0755);
    assert_int_equal(measure_write_atomic(bad, "{}", &err), -1);
    assert_non_null(strstr(err.msg, "/sub: cannot write"));
    assert_int_equal(count_entries(dir), 2);   /* result.json and sub, no temp file */
    snprintf(bad, sizeof bad, "%s/missing/result.json", dir);
    assert_int_equal(measure_write_atomic(bad, "{}", &err), -1);
    assert_non_null(strstr(err.msg, "missing/result.json: cannot write"));
    snprintf(bad, sizeof bad, "%s/sub", dir);
    rmdir(bad);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_detect_none, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_detect_openmpi, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_detect_pmi, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_detect_slurm, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_detect_torchrun, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_detect_bad_values, clear_env, clear_env),
        cmocka_unit_test(test_rendezvous_loopback),
        cmocka_unit_test(test_rendezvous_peer_times_out),
        cmocka_unit_test(test_rendezvous_missing_rank),
        cmocka_unit_test_setup_teardown(test_launch_sets_rank_variables, clear_env, clear_env),
        cmocka_unit_test(test_launch_failure_stops_everyone),
        cmocka_unit_test(test_launch_signal_and_stubborn_child),
        cmocka_unit_test(test_launch_exec_failure),
        cmocka_unit_test(test_watchdog_reports_once),
        cmocka_unit_test(test_watchdog_dead_peer_and_deadline),
        cmocka_unit_test(test_watchdog_thread_deadline_cpu),
        cmocka_unit_test(test_phase_clock_nesting),
        cmocka_unit_test(test_cpu_backend_nested_phases),
        cmocka_unit_test(test_moe_layer_with_128_ep_ranks),
        cmocka_unit_test(test_preflight_cpu_memory),
        cmocka_unit_test(test_preflight_plan_and_model),
        cmocka_unit_test(test_preflight_output_path),
        cmocka_unit_test(test_measure_figures),
        cmocka_unit_test(test_measure_prediction_and_json),
        cmocka_unit_test(test_measure_median_and_truncation),
        cmocka_unit_test(test_write_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
