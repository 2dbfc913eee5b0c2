/* test_exec_runtime.c: the executor's runtime on the CPU: rank detection
 * from launcher variables, the TCP rendezvous on loopback, the built-in
 * launcher's failure handling, the watchdog, and the measurement figures. */
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

#include "executor/launch.h"
#include "executor/measure.h"
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
        cmocka_unit_test(test_measure_figures),
        cmocka_unit_test(test_measure_prediction_and_json),
        cmocka_unit_test(test_measure_median_and_truncation),
        cmocka_unit_test(test_write_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
