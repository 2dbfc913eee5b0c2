/* test_cli_model.c: `moeplan model` end to end: exit status, one-line
 * errors, table and JSON output.  The binary comes from $MOEPLAN_BIN
 * (scripts/run-tests.sh sets it), default build/moeplan; run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

static void test_bad_input(void **state) {
    (void)state;
    expect_bad_input("model foo", "unknown model 'foo' (known: dbrx, deepseek-v2-lite, deepseek-v3, gpt-oss-120b,");
    expect_bad_input("model tests/data/bad-kv-groups.json",
               "tests/data/bad-kv-groups.json: num_kv_groups: 6 does not divide num_heads 32");
    expect_bad_input("model tests/data/bad-top-k.json", "tests/data/bad-top-k.json: top_k: 10 exceeds num_experts 8");
    expect_bad_input("model tests/data/bad-malformed.json",
               "tests/data/bad-malformed.json: not JSON: parsing stopped at line 5, column 3");
    expect_bad_input("model tests/data/bad-hf-model-type.json",
               "tests/data/bad-hf-model-type.json: model_type: 'llama' is not supported");
    expect_bad_input("model tests/data/missing.json", "tests/data/missing.json: cannot open: No such file or directory");
    expect_bad_input("model mixtral-8x22b --seq 0", "--seq: must be in 1..");
    expect_bad_input("model mixtral-8x22b --seq abc", "--seq: 'abc' is not an integer");
    expect_bad_input("model mixtral-8x22b --seq", "--seq: missing value");
    expect_bad_input("model mixtral-8x22b --frobnicate", "unknown option '--frobnicate'");
    expect_bad_input("model mixtral-8x22b dbrx", "more than one model given ('mixtral-8x22b' and 'dbrx')");
    expect_bad_input("model", "NAME|FILE: missing");
}

static void test_table(void **state) {
    (void)state;
    static char out[16384];
    assert_int_equal(moeplan_run("model mixtral-8x22b", RUN_STDOUT, out, sizeof out), 0);
    /* total = 56*(88,080,384 + 12,288 + 8*301,989,888 + 49,152) + 2*196,608,000 + 6,144 = 140.621 B */
    assert_non_null(strstr(out, "140.621"));
    /* active = 56*(88,080,384 + 12,288 + 2*301,989,888 + 49,152) + 393,222,144 = 39.152 B */
    assert_non_null(strstr(out, "39.152"));
    assert_non_null(strstr(out, "megatron"));
    assert_non_null(strstr(out, "legacy"));
    assert_int_equal(moeplan_run("model tests/data/hf/deepseek-v3.config.json --seq 8192", RUN_STDOUT, out, sizeof out), 0);
    assert_non_null(strstr(out, "at seq 8192"));
    assert_non_null(strstr(out, "MTP layers"));
    assert_int_equal(moeplan_run("model --help", RUN_STDOUT, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: moeplan model"));
}

static void test_json(void **state) {
    (void)state;
    static char out[16384];
    assert_int_equal(moeplan_run("model mixtral-8x7b --json --seq 2048", RUN_STDOUT, out, sizeof out), 0);
    cJSON *o = cJSON_Parse(out);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "model")->valuestring, "mixtral-8x7b");
    assert_int_equal(cJSON_GetObjectItem(o, "seq")->valueint, 2048);
    cJSON *params = cJSON_GetObjectItem(o, "params");
    double attn = 2.0 * 4096 * 32 * 128 + 2.0 * 4096 * 8 * 128, expert = 3.0 * 4096 * 14336;
    double common = 32 * (attn + 2 * 4096.0 + 4096.0 * 8) + 2 * 32000.0 * 4096 + 4096;
    assert_true(cJSON_GetObjectItem(params, "total")->valuedouble == common + 32 * 8 * expert);
    assert_true(cJSON_GetObjectItem(params, "active")->valuedouble == common + 32 * 2 * expert);
    cJSON *fl = cJSON_GetObjectItem(o, "flops_per_token");
    /* megatron at s 2048: 12*L*h*Fe*k*f + 12*L*(h*n*d + h*g*d + s*n*d/2) + 6*h*V */
    double meg = 12.0 * 32 * 4096 * 14336 * 2 * 1.5 + 12.0 * 32 * (4096.0 * 4096 + 4096.0 * 1024 + 2048.0 * 4096 / 2) +
                 6.0 * 4096 * 32000;
    double got = cJSON_GetObjectItem(fl, "megatron")->valuedouble;
    assert_true(got > meg * (1 - 1e-12) && got < meg * (1 + 1e-12));
    assert_true(cJSON_GetObjectItem(fl, "six_n_active")->valuedouble == 6 * (common + 32 * 2 * expert));
    assert_non_null(cJSON_GetObjectItem(fl, "legacy"));
    cJSON_Delete(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
