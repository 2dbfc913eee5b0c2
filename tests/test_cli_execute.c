/* test_cli_execute.c: `moeplan execute` as a user runs it, on the CPU: bad
 * input gives one line naming the option and exit status 2; a plan that
 * cannot fit on the GPUs is refused before launch with the simulator's
 * memory figures; a one-rank CPU run writes the result JSON (atomically) and
 * a failing run leaves no file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

    /* an --out path that cannot be written: exit 1, nothing left behind */
    snprintf(path, sizeof path, "%s/missing/result.json", dir);
    snprintf(args, sizeof args,
             "execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32 --steps 2 --warmup 1 --out %s", path);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "missing/result.json: cannot write"));
    assert_int_equal(access(path, F_OK), -1);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_refuses_plan_that_does_not_fit),
        cmocka_unit_test(test_cpu_run_writes_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
