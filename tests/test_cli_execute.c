/* test_cli_execute.c: `moeplan execute` as a user runs it, on the CPU: bad
 * input gives one line naming the option and exit status 2; a plan that
 * cannot fit on the GPUs is refused before launch with the simulator's
 * memory figures; a one-rank CPU run writes the result JSON (atomically) and
 * a failing run leaves no file.  Issue 11: every plan field the step does
 * not implement is refused before launch (flag or plan file, with and
 * without --check); replaced defaults are reported and predicted for; the
 * result names the plan and the settings that ran; --seed, --aux-loss-coeff
 * and --lr 0 do what they say.  Issue 10 item 5: the data file, the output
 * path, host memory, --nproc and the GPU are checked before launch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

/* Runs `moeplan ARGS` (stdout and stderr) outside any launcher. */
static int run(const char *args, char *out, size_t len) {
    return moeplan_run(args, RUN_STDOUT_AND_STDERR | RUN_NO_LEAK_CHECK, out, len);
}

static void expect_bad(const char *args, const char *text) {
    char out[4096];
    assert_int_equal(run(args, out, sizeof out), 2);
    if (!strstr(out, text)) fail_msg("'%s' not in: %s", text, out);
    assert_non_null(strchr(out, '\n'));
    assert_null(strchr(strchr(out, '\n') + 1, '\n'));   /* one line */
}

static void test_bad_input(void **state) {
    (void)state;
    const char *m = "execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32";
    static const char *const cases[][2] = {
        {"--steps 0", "--steps: must be >= 1, got 0"},
        {"--steps 3 --warmup 3", "--warmup: 3 must be in 0..2"},
        {"--backend tpu", "--backend: 'tpu' is not cuda or cpu"},
        {"--attention flash", "--attention: 'flash' is not own or cudnn"},
        {"--attention cudnn", "--attention: cudnn needs --backend cuda"},
        {"--expert-gemm fused", "--expert-gemm: 'fused' is not auto, loop, batched or padded"},
        {"--expert-gemm batched", "--expert-gemm: batched needs --backend cuda"},
        {"--op-profile /tmp/ops.json", "--op-profile: only the CUDA backend times its operations"},
        {"--layers 3", "--layers: 3 is outside 1..2"},
        {"--data-bits 8", "--data-bits: 8 is not 16 or 32"},
        {"--data /nonexistent/tokens.bin", "/nonexistent/tokens.bin: --data: cannot read the file"},
        {"--gpus 2 --nproc 3", "--nproc: 3 differs from the plan's 2 GPUs"},
        {"--gpus 2 --ep 3", "ep"},
        {"--bogus 1", "unknown option '--bogus'"},
    };
    char args[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "%s %s", m, cases[i][0]);
        expect_bad(args, cases[i][1]);
    }
    /* model features the executor's layer does not have: refused, not ignored */
    expect_bad("execute --model qwen3-30b-a3b --backend cpu --gpus 1 --layers 1 --seq 64",
               "model: qwen3-30b-a3b: qk_norm head (normalised queries and keys) is not implemented by the executor");
    expect_bad("execute --model olmoe-1b-7b --backend cpu --gpus 1 --layers 1 --seq 64", "qk_norm full");
}

static void test_refuses_plan_that_does_not_fit(void **state) {
    (void)state;
    char out[4096];
    /* all 32 layers of Mixtral-8x7B on one H100: 46.7B parameters at 18
     * bytes each (bf16 weight, fp32 gradient, fp32 master, two fp32 Adam
     * moments) are about 780 GiB, far over 80 GB */
    int rc = run("execute --model mixtral-8x7b --gpus 1 --seq 4096 --backend cuda --check", out, sizeof out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "plan does not fit: pipeline stage 0 needs"));
    assert_non_null(strstr(out, "GiB usable"));
    /* its first 2 layers fit (about 3.2B parameters, 56 GiB) */
    rc = run("execute --model mixtral-8x7b --gpus 1 --seq 4096 --backend cuda --layers 2 --check", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "plan fits:"));
}

static void test_cpu_run_writes_json(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char args[512], path[256], out[1 << 14];
    snprintf(path, sizeof path, "%s/result.json", dir);
    snprintf(args, sizeof args,
             "execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32 --steps 3 --warmup 1 --out %s", path);
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "MFU (megatron)"));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    cJSON *me = cJSON_GetObjectItem(o, "measured");
    assert_true(cJSON_GetObjectItem(me, "step_time_s")->valuedouble > 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(me, "losses")), 3);
    cJSON *run_o = cJSON_GetObjectItem(o, "run");
    assert_int_equal(cJSON_GetObjectItem(run_o, "steps_timed")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(run_o, "layers")->valueint, 2);
    /* tokens of the step: gbs 1 (one micro-batch per DP rank) x seq 32 */
    assert_int_equal(cJSON_GetObjectItem(run_o, "tokens_per_step")->valueint, 32);
    assert_non_null(cJSON_GetObjectItem(o, "predicted"));
    cJSON_Delete(o);
    unlink(path);

    /* an --out path that cannot be written: refused before the work (exit 2,
     * no table printed), nothing left behind */
    snprintf(path, sizeof path, "%s/missing/result.json", dir);
    snprintf(args, sizeof args,
             "execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32 --steps 2 --warmup 1 --out %s", path);
    assert_int_equal(run(args, out, sizeof out), 2);
    if (!strstr(out, "missing/result.json: --out: directory") || strstr(out, "step time")) fail_msg("%s", out);
    assert_int_equal(access(path, F_OK), -1);
    rmdir(dir);
}

/* ---- issue 11 item 6: run exactly what is reported ---- */

#define TINY "execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32 --steps 2 --warmup 1"

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A PP2 run on the CPU backend: the phase table has the pipeline row, and
 * stage 0's forwards and backwards (m = gbs 4 / (mbs 1 x DP 1) = 4: 8
 * operations, 1F1B: F0 F1 B0 F2 B1 F3 B2 B3) are printed beside the
 * simulator's, in the same order. */
static void test_cpu_pipeline_run(void **state) {
    (void)state;
    char out[1 << 14];
    int rc = run("execute --model tests/data/exec-tiny-moe.json --backend cpu --gpus 2 --pp 2 --seq 32 --gbs 4 "
                 "--steps 2 --warmup 1", out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, "pipeline P2P + bubble"));
    const char *t = strstr(out, "pipeline stage 0, last step");
    assert_non_null(t);
    static const char *const want[] = {"F c0 mb0", "F c0 mb1", "B c0 mb0", "F c0 mb2",
                                       "B c0 mb1", "F c0 mb3", "B c0 mb2", "B c0 mb3"};
    const char *line = strstr(t, "  F c0 mb0");
    assert_non_null(line);
    for (int i = 0; i < 8; i++) {
        line += 2;
        if (strncmp(line, want[i], 8)) fail_msg("operation %d: '%.40s', want %s", i, line, want[i]);
        const char *bar = strstr(line, "| ");
        assert_non_null(bar);
        if (strncmp(bar + 2, want[i], 8)) fail_msg("simulated operation %d: '%.20s', want %s", i, bar + 2, want[i]);
        line = strchr(line, '\n');
        assert_non_null(line);
        line++;
    }
}

static void test_refuses_unimplemented_fields(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"--optimizer-sharding full", "optimizer_sharding: full: fully sharded parameters (FSDP) are not implemented"},
        {"--recompute selective", "recompute: selective: activation recomputation is not implemented"},
        {"--recompute full", "recompute: full: activation recomputation is not implemented"},
        {"--precision fp8", "precision: fp8: FP8 GEMMs are not implemented"},
        {"--overlap tp", "overlap: tp: overlapping this communication with compute is not implemented"},
        {"--overlap ep", "overlap: ep: overlapping"},
        {"--overlap shared-expert", "overlap: shared-expert: overlapping"},
        {"--overlap grad,tp", "overlap: tp: overlapping"},   /* the words the step runs are not named */
        {"--dispatcher allgather", "dispatcher: allgather: only the alltoall dispatcher is implemented"},
        {"--gpus 3 --tp 3", "tp: 3 does not divide num_heads 4"},
        {"--gpus 4 --cp 4 --seq 36", "seq: 36 is not divisible by 2*cp = 8"},
        {"--gpus 2 --pp 2 --vpp 2 --gbs 3 --model models/mixtral-8x7b.json",
         "gbs: the interleaved schedule (vpp 2) needs the micro-batches per step (3 = gbs 3 / (mbs 1 x DP 1)) to be a multiple of pp 2"},
    };
    char args[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int check = 0; check < 2; check++) {
            snprintf(args, sizeof args, "%s %s%s", TINY, cases[i][0], check ? " --check" : "");
            expect_bad_input(args, cases[i][1]);   /* one line, exit 2, nothing launched */
        }
    /* the same fields from a plan file */
    char dir[] = "/tmp/moeplan-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const char *const plans[][2] = {
        {"\"optimizer_sharding\": \"full\"", "optimizer_sharding: full"},
        {"\"overlap\": \"grad,ep\"", "overlap: ep"},
        {"\"recompute\": \"selective\"", "recompute: selective"},
        {"\"precision\": \"fp8\"", "precision: fp8"},
        {"\"dispatcher\": \"allgather\"", "dispatcher: allgather"},
    };
    char path[256], text[512];
    snprintf(path, sizeof path, "%s/plan.json", dir);
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        snprintf(text, sizeof text,
                 "{\"model\": \"tests/data/exec-tiny-moe.json\", \"cluster\": \"dgx-h100\", \"gpus\": 2, "
                 "\"seq\": 32, \"gbs\": 2, %s}", plans[i][0]);
        write_file(path, text, strlen(text));
        for (int check = 0; check < 2; check++) {
            snprintf(args, sizeof args, "execute --plan %s --backend cpu --steps 2 --warmup 1%s", path,
                     check ? " --check" : "");
            expect_bad_input(args, plans[i][1]);
        }
    }
    /* a flag overrides the plan file's request */
    snprintf(text, sizeof text,
             "{\"model\": \"tests/data/exec-tiny-moe.json\", \"cluster\": \"dgx-h100\", \"gpus\": 1, "
             "\"seq\": 32, \"gbs\": 1, \"optimizer_sharding\": \"distributed\", \"overlap\": \"grad\"}");
    write_file(path, text, strlen(text));
    char out[4096];
    snprintf(args, sizeof args, "execute --plan %s --backend cpu --optimizer-sharding none --overlap none --check", path);
    assert_int_equal(moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out), 0);
    if (strstr(out, "note:")) fail_msg("nothing was replaced, but: %s", out);
    unlink(path);
    rmdir(dir);
}

static cJSON *run_json(const char *args) {
    static char out[1 << 16];
    int rc = moeplan_run(args, RUN_STDOUT | RUN_NO_LEAK_CHECK, out, sizeof out);
    if (rc != 0) fail_msg("moeplan %s: exit %d: %s", args, rc, out);
    cJSON *o = cJSON_Parse(out);
    if (!o) fail_msg("not JSON: %s", out);
    return o;
}

static double num(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, a), b);
    if (!cJSON_IsNumber(v)) fail_msg("%s.%s is not a number", a, b);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, a), b);
    if (!cJSON_IsString(v)) fail_msg("%s.%s is not a string", a, b);
    return v->valuestring;
}

/* prediction.KEY of `moeplan simulate --json` output (the result document) */
static double sim_number(const char *text, const char *key) {
    cJSON *o = cJSON_Parse(text);
    if (!o) fail_msg("not JSON: %s", text);
    double v = num(o, "prediction", key);
    cJSON_Delete(o);
    return v;
}

static void test_replaced_defaults_reported_and_predicted(void **state) {
    (void)state;
    char err[4096];
    /* stderr: simulate's defaults (the distributed optimizer, overlap
     * grad,param) run: nothing is replaced */
    assert_int_equal(moeplan_run(TINY " --check", RUN_STDERR, err, sizeof err), 0);
    if (strstr(err, "note: optimizer_sharding") || strstr(err, "note: overlap")) fail_msg("%s", err);
    /* 2 ranks (DP 2), so that optimizer sharding and overlap would change the prediction */
    cJSON *o = run_json(TINY " --gpus 2 --json --seed 7 --lr 0.005 --aux-loss-coeff 0.02");
    static const char *const keys[] = {"model", "cluster", "gpus", "tp", "cp", "pp", "vpp", "etp", "ep", "dp", "edp",
                                       "order", "first_stage_layers", "last_stage_layers", "seq", "mbs", "gbs",
                                       "precision", "dispatcher", "capacity_factor", "imbalance", "recompute",
                                       "optimizer_sharding", "overlap", "flops", "memory_reserve_gib"};
    const cJSON *plan = cJSON_GetObjectItem(o, "plan");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!cJSON_GetObjectItem(plan, keys[i])) fail_msg("plan.%s missing", keys[i]);
    assert_string_equal(str(o, "plan", "optimizer_sharding"), "distributed");
    assert_string_equal(str(o, "run", "optimizer_sharding"), "distributed");
    assert_string_equal(str(o, "plan", "overlap"), "grad,param,p2p,cp");   /* the overlaps the step runs */
    assert_string_equal(str(o, "run", "overlap"), "grad,param,p2p,cp");
    assert_string_equal(str(o, "plan", "recompute"), "none");
    assert_string_equal(str(o, "plan", "dispatcher"), "alltoall");
    assert_int_equal((int)num(o, "plan", "gpus"), 2);
    assert_int_equal((int)num(o, "run", "seed"), 7);
    assert_true(num(o, "run", "lr") == 0.005);
    assert_true(num(o, "run", "aux_loss_coeff") == 0.02);
    assert_string_equal(str(o, "run", "act_dtype"), "fp32");
    assert_string_equal(str(o, "run", "data"), "synthetic");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "run"), "op_profile")));
    /* the prediction is simulate's for exactly the overlap that ran:
     * grad,param,p2p,cp here, none when asked (and the two differ) */
    double pred = num(o, "predicted", "step_time_s");
    cJSON_Delete(o);
    o = run_json(TINY " --gpus 2 --json --seed 7 --overlap none");
    assert_string_equal(str(o, "run", "overlap"), "none");
    double pred_none = num(o, "predicted", "step_time_s");
    cJSON_Delete(o);
    char sim[1 << 14];
    const char *base = "simulate --model tests/data/exec-tiny-moe.json --gpus 2 --seq 32 --gbs 2 --json";
    char args[512];
    snprintf(args, sizeof args, "%s --optimizer-sharding distributed --overlap none", base);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, sim, sizeof sim), 0);
    double none = sim_number(sim, "step_time_s");
    snprintf(args, sizeof args, "%s --optimizer-sharding distributed --overlap grad,param,p2p,cp", base);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, sim, sizeof sim), 0);
    double both = sim_number(sim, "step_time_s");
    if (fabs(pred - both) > 1e-6 || fabs(pred_none - none) > 1e-6 || fabs(both - none) < 5e-6)
        fail_msg("predicted %.9f / %.9f (overlap none); simulate grad,param,p2p,cp %.9f, none %.9f", pred, pred_none,
                 both, none);
}

/* ---- issue 11 item 7: --seed, --aux-loss-coeff, --lr 0 ---- */

static double first_loss(const char *extra) {
    char args[512];
    snprintf(args, sizeof args, "%s --json %s", TINY, extra);
    cJSON *o = run_json(args);
    double l = num(o, "measured", "loss_first");
    cJSON_Delete(o);
    return l;
}

/* issue 18: --expert-gemm padded pads every expert to the largest group
 * (zero rows) where that wastes at most 1/4; the zero rows add nothing, so
 * the losses are those of the unpadded run, bit for bit on the CPU (the
 * reference gemm accumulates in double; zeros add exactly 0) */
static void test_padded_expert_groups_same_losses(void **state) {
    (void)state;
    const char *m = "execute --backend cpu --model tests/data/exec-small-moe.json --seq 256 --mbs 4 --gbs 8 "
                    "--steps 3 --warmup 1 --json";
    char args[512];
    snprintf(args, sizeof args, "%s --expert-gemm loop", m);
    cJSON *a = run_json(args);
    snprintf(args, sizeof args, "%s --expert-gemm padded", m);
    cJSON *b = run_json(args);
    assert_true(num(a, "run", "moe_dispatches_padded") == 0);
    double dispatches = num(b, "run", "moe_dispatches"), padded = num(b, "run", "moe_dispatches_padded");
    if (!(padded > 0 && padded <= dispatches)) fail_msg("%g of %g dispatches padded", padded, dispatches);
    assert_string_equal(str(b, "run", "expert_gemm"), "loop, groups padded");
    assert_true(num(a, "measured", "loss_first") == num(b, "measured", "loss_first"));
    assert_true(num(a, "measured", "loss_last") == num(b, "measured", "loss_last"));
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_seed_and_aux_loss_flags(void **state) {
    (void)state;
    /* the seed sets the initial weights and the data: the first loss differs */
    double s5 = first_loss("--seed 5"), s6 = first_loss("--seed 6"), def = first_loss("");
    if (s5 == s6 || s5 == def) fail_msg("--seed ignored: seed 5 %.9f, seed 6 %.9f, default %.9f", s5, s6, def);
    assert_true(first_loss("--seed 1234") == def);
    /* --aux-loss-coeff 0.01 is the default coefficient: same run (it once reset the seed to 0) */
    assert_true(first_loss("--aux-loss-coeff 0.01") == def);
    assert_true(first_loss("--aux-loss-coeff 0.01 --seed 5") == s5);
    /* 0 turns the aux loss off: a smaller loss, same seed */
    assert_true(first_loss("--aux-loss-coeff 0") < def);
    cJSON *o = run_json(TINY " --json --aux-loss-coeff 0");
    assert_true(num(o, "run", "aux_loss_coeff") == 0);
    assert_int_equal((int)num(o, "run", "seed"), 1234);
    cJSON_Delete(o);
}

static void test_lr_zero_keeps_weights(void **state) {
    (void)state;
    /* a data file of exactly seq + 1 = 33 ids: every sequence of every step is
     * the same, so with lr 0 (weights fixed) every step has the same loss */
    char dir[] = "/tmp/moeplan-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[512];
    snprintf(path, sizeof path, "%s/tokens.u16", dir);
    uint16_t ids[33];
    for (int i = 0; i < 33; i++) ids[i] = (uint16_t)((i * 37 + 11) % 256);
    write_file(path, ids, sizeof ids);
    snprintf(args, sizeof args, TINY " --steps 4 --json --data %s --lr 0", path);
    cJSON *o = run_json(args);
    const cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "measured"), "losses");
    assert_int_equal(cJSON_GetArraySize(l), 4);
    double l0 = cJSON_GetArrayItem(l, 0)->valuedouble;
    for (int i = 1; i < 4; i++)
        if (cJSON_GetArrayItem(l, i)->valuedouble != l0) fail_msg("lr 0: step %d loss %.9f != %.9f", i,
                                                                  cJSON_GetArrayItem(l, i)->valuedouble, l0);
    assert_true(num(o, "run", "lr") == 0);
    assert_string_equal(str(o, "run", "data"), path);
    cJSON_Delete(o);
    /* a positive learning rate learns the one sequence */
    snprintf(args, sizeof args, TINY " --steps 4 --json --data %s --lr 0.01", path);
    o = run_json(args);
    assert_true(num(o, "measured", "loss_last") < num(o, "measured", "loss_first") - 0.05);
    cJSON_Delete(o);
    unlink(path);
    rmdir(dir);
}

/* ---- issue 10 item 5: every input checked before launch ---- */

static void test_inputs_checked_before_launch(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[640], want[400];
    /* data: a directory, a FIFO (must not block), an odd size, too few ids, an id >= vocab 256 */
    snprintf(args, sizeof args, TINY " --data %s", dir);
    snprintf(want, sizeof want, "%s: --data: not a regular file", dir);
    expect_bad_input(args, want);
    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(args, sizeof args, TINY " --data %s", path);
    snprintf(want, sizeof want, "%s: --data: not a regular file", path);
    expect_bad_input(args, want);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokens.bin", dir);
    uint16_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (uint16_t)i;
    write_file(path, ids, 33 * 2 + 1);
    snprintf(args, sizeof args, TINY " --data %s", path);
    snprintf(want, sizeof want, "%s: --data: 67 bytes is not a whole number of uint16 token ids", path);
    expect_bad_input(args, want);
    write_file(path, ids, 32 * 2);
    snprintf(want, sizeof want, "%s: --data: 32 token ids, but a sequence of 32 needs at least 33", path);
    expect_bad_input(args, want);
    ids[35] = 256;
    write_file(path, ids, sizeof ids);
    snprintf(want, sizeof want, "%s: --data: token 35: id 256 is not below the vocabulary size 256", path);
    expect_bad_input(args, want);
    uint32_t wide[40];
    for (int i = 0; i < 40; i++) wide[i] = (uint32_t)i;
    wide[20] = 70000;
    write_file(path, wide, sizeof wide);
    snprintf(args, sizeof args, TINY " --data-bits 32 --data %s", path);
    snprintf(want, sizeof want, "%s: --data: token 20: id 70000 is not below the vocabulary size 256", path);
    expect_bad_input(args, want);
    unlink(path);
    /* output paths: a FIFO, a device, a directory, all before the work */
    snprintf(path, sizeof path, "%s/out.fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(args, sizeof args, TINY " --out %s", path);
    snprintf(want, sizeof want, "%s: --out: not a regular file", path);
    expect_bad_input(args, want);
    unlink(path);
    struct stat st;
    if (stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode))   /* (a shared machine may have lost it) */
        expect_bad_input(TINY " --out /dev/null", "/dev/null: --out: not a regular file");
    snprintf(args, sizeof args, TINY " --out %s", dir);
    snprintf(want, sizeof want, "%s: --out: is a directory", dir);
    expect_bad_input(args, want);
    /* host memory on the CPU backend: Mixtral-8x22B (141B parameters x 16 bytes = 2.1 TB) */
    expect_bad_input("execute --model mixtral-8x22b --backend cpu --check", "but MemAvailable is");
    expect_bad_input("execute --model mixtral-8x22b --backend cpu --steps 2 --warmup 1", "--backend cpu: the run needs about");
    /* --nproc bounded with its reason */
    expect_bad_input(TINY " --nproc 100000", "--nproc: 100000 CPU ranks on this node exceed");
    rmdir(dir);
}

static void test_no_gpu_says_use_cpu(void **state) {
    (void)state;
    if (access("/dev/nvidia0", F_OK) == 0) skip();   /* this machine has a GPU */
    /* with the rank count from --gpus too (it used to fail inside the ranks, exit 1) */
    static const char *const gpus[] = {"", "--gpus 1", "--gpus 2"};
    char args[256];
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args,
                 "execute --model tests/data/exec-tiny-moe.json --backend cuda --seq 32 --steps 2 --warmup 1 %s", gpus[i]);
        expect_bad_input(args, "use --backend cpu");
    }
    /* the default backend: CUDA in a CUDA build (the same line), CPU otherwise (a run) */
    char out[1 << 14];
    int rc = moeplan_run("execute --model tests/data/exec-tiny-moe.json --seq 32 --steps 2 --warmup 1",
                         RUN_STDERR | RUN_NO_LEAK_CHECK, out, sizeof out);
    if (!(rc == 0 || (rc == 2 && strstr(out, "use --backend cpu") && !strchr(strchr(out, '\n') + 1, '\n'))))
        fail_msg("exit %d: %s", rc, out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_refuses_plan_that_does_not_fit),
        cmocka_unit_test(test_cpu_run_writes_json),
        cmocka_unit_test(test_refuses_unimplemented_fields),
        cmocka_unit_test(test_replaced_defaults_reported_and_predicted),
        cmocka_unit_test(test_seed_and_aux_loss_flags),
        cmocka_unit_test(test_lr_zero_keeps_weights),
        cmocka_unit_test(test_inputs_checked_before_launch),
        cmocka_unit_test(test_no_gpu_says_use_cpu),
        cmocka_unit_test(test_cpu_pipeline_run),
        cmocka_unit_test(test_padded_expert_groups_same_losses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
