/* test_cli_strict.c: options that contradict each other or cannot hold are
 * refused with one line naming both; advice only on what the search did
 * not try; warnings (stderr and the JSON "warnings" list) for a calibration
 * from another GPU or GPU count and for one micro-batch per pipeline;
 * cluster files with a catalog "base" and every wrong field in one run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test_util.h"

#define X7B "--model mixtral-8x7b --cluster dgx-h100"
#define SIM X7B " --gpus 16 --tp 2 --ep 8 --pp 2"

static void expect_bad_both(const char *args, const char *a, const char *b) {
    char out[4096];
    int rc = moeplan_run(args, RUN_STDERR, out, sizeof out);
    if (rc != 2 || !strstr(out, a) || !strstr(out, b)) fail_msg("moeplan %s: exit %d: %s", args, rc, out);
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
}

static void test_contradictory_options(void **state) {
    (void)state;
    expect_bad_both("simulate " SIM " --capacity-factor 1 --dropless", "--dropless", "--capacity-factor 1");
    expect_bad_both("sweep " X7B " --gpus 16 --vary seq=1024,2048 --vary gpus=8", "--vary: given twice",
                    "gpus=8");
    expect_bad_both("sweep " X7B " --gpus 16 --vary seq=1024 --tokens-per-batch 100000 --gbs 16",
                    "--tokens-per-batch", "--gbs 16");
    /* any other option given again overrides (scripts add flags to a base command) */
    char out[4096];
    assert_int_equal(moeplan_run("simulate " SIM " --tp 4", RUN_STDERR, out, sizeof out), 0);
}

static void test_impossible_search_constraints(void **state) {
    (void)state;
    expect_bad_both("search " X7B " --gpus 128 --tp 3", "--tp: 3 does not divide", "--gpus 128");
    expect_bad_both("search " X7B " --gpus 128 --ep 16", "--ep: 16 does not divide", "8 experts");
    /* mixtral-8x7b has 32 attention heads: TP 64 divides 128 GPUs but not the heads */
    expect_bad_both("search " X7B " --gpus 128 --tp 64", "--tp: 64 does not divide", "32 attention heads");
    expect_bad_both("search " X7B " --gpus 16 --threads 2 --quiet --rank 99999 --json", "--rank: 99999", "plans fit");
}

static void test_advice_only_on_what_was_not_tried(void **state) {
    (void)state;
    char out[8192];
    /* recomputation fixed to none: full recomputation is worth trying */
    assert_int_equal(moeplan_run("search " X7B " --gpus 8 --threads 2 --recompute none", RUN_STDERR, out, sizeof out), 1);
    if (!strstr(out, "no plan fits") || !strstr(out, "--recompute full")) fail_msg("%s", out);
    /* free recomputation, sharding and mbs: the search tried them all, so only more GPUs */
    assert_int_equal(moeplan_run("search --model mixtral-8x22b --cluster dgx-h100 --gpus 8 --threads 2", RUN_STDERR,
                                 out, sizeof out), 1);
    if (!strstr(out, "try more GPUs") || strstr(out, "--recompute full") || strstr(out, "--mbs"))
        fail_msg("%s", out);
}

static void test_warnings_calibration_and_batch(void **state) {
    (void)state;
    static char out[1 << 17];
    /* calibration of 2 x H200 on a 16-GPU H100 plan, gbs 4 = one micro-batch per pipeline (dp 4) */
    const char *args = "simulate " SIM " --gbs 4 --calibration tests/data/calibration-h200x2.json";
    char err[4096];
    assert_int_equal(moeplan_run(args, RUN_STDERR, err, sizeof err), 0);
    if (!strstr(err, "warning: calibration measured on NVIDIA H200 GPUs") ||
        !strstr(err, "warning: calibration measured on 2 GPUs is applied to a 16-GPU plan") ||
        !strstr(err, "warning: global batch 4 leaves one micro-batch per pipeline"))
        fail_msg("%s", err);
    char json_args[512];
    snprintf(json_args, sizeof json_args, "%s --json", args);
    assert_int_equal(moeplan_run(json_args, RUN_STDOUT, out, sizeof out), 0);
    cJSON *o = cJSON_Parse(out);
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "warnings")), 3);
    cJSON_Delete(o);
    /* the same calibration on its own machine (2 x H200), a large batch: no warning */
    assert_int_equal(moeplan_run("simulate --model tests/data/exec-tiny-moe.json --cluster dgx-h200 --gpus 2 --ep 2 "
                                 "--seq 32 --gbs 64 --calibration tests/data/calibration-h200x2.json",
                                 RUN_STDERR, err, sizeof err), 0);
    if (strstr(err, "warning")) fail_msg("%s", err);
    /* sweep warns for the calibration (a swept GPU count is not compared) */
    assert_int_equal(moeplan_run("sweep " X7B " --tp 2 --ep 8 --pp 2 --gpus 16 --fixed --vary seq=2048 --json "
                                 "--calibration tests/data/calibration-h200x2.json", RUN_STDOUT, out, sizeof out), 0);
    o = cJSON_Parse(out);
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "warnings")), 2); /* another GPU, another count */
    cJSON_Delete(o);
    /* search warns for its chosen plan too */
    assert_int_equal(moeplan_run("search " X7B " --gpus 16 --threads 2 --tp 2 --cp 1 --pp 2 --gbs 4 --json", RUN_STDERR, err, sizeof err), 0);
    if (!strstr(err, "moeplan search: warning: global batch 4 leaves one micro-batch")) fail_msg("%s", err);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cluster_base_and_every_error(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-strict-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[512], out[8192];
    snprintf(path, sizeof path, "%s/c.json", dir);
    /* a DGX H100 with 4 GPUs per node: everything else inherited */
    write_file(path, "{\"base\": \"dgx-h100\", \"name\": \"half-h100\", \"gpus_per_node\": 4, \"nvlink_domain\": 4}");
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --cluster %s --gpus 16 --tp 2 --ep 8 --pp 2 --json", path);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    cJSON *o = cJSON_Parse(out);
    assert_non_null(o);
    const cJSON *c = cJSON_GetObjectItem(o, "context");
    assert_string_equal(cJSON_GetObjectItem(c, "cluster")->valuestring, "half-h100");
    assert_string_equal(cJSON_GetObjectItem(c, "gpu")->valuestring, "H100 SXM 80GB"); /* from the base */
    cJSON_Delete(o);
    /* three wrong fields, all named in one line */
    write_file(path, "{\"base\": \"dgx-h100\", \"gpus_per_node\": \"four\", \"hbm_mib\": -1, \"nic_gbit_per_s\": 0}");
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --cluster %s --gpus 16", path);
    expect_bad_both(args, "3 wrong fields", "gpus_per_node");
    assert_int_equal(moeplan_run(args, RUN_STDERR, out, sizeof out), 2);
    if (!strstr(out, "hbm_mib: must be positive") || !strstr(out, "nic_gbit_per_s: must be positive"))
        fail_msg("%s", out);
    /* an unknown base names the catalog */
    write_file(path, "{\"base\": \"dgx-h900\"}");
    expect_bad_both(args, "base: 'dgx-h900' is not a catalog cluster", "dgx-h200");
    unlink(path);
    rmdir(dir);
}

static void test_topo_says_what_is_defaulted(void **state) {
    (void)state;
    static char out[16384];
    assert_int_equal(moeplan_run("topo --json", RUN_STDOUT_AND_STDERR, out, sizeof out), 0);
    /* on a machine without GPUs (CI), the GPU count is the base's default, and said to be */
    if (strstr(out, " 0 NVIDIA GPUs")) {
        if (!strstr(out, "warning: no NVIDIA GPU found: gpus_per_node 8 is dgx-h100's default") ||
            !strstr(out, "DEFAULTED"))
            fail_msg("%s", out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contradictory_options),
        cmocka_unit_test(test_impossible_search_constraints),
        cmocka_unit_test(test_advice_only_on_what_was_not_tried),
        cmocka_unit_test(test_warnings_calibration_and_batch),
        cmocka_unit_test(test_cluster_base_and_every_error),
        cmocka_unit_test(test_topo_says_what_is_defaulted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
