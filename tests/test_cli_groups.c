/* test_cli_groups.c: `moeplan groups` as a user runs it: JSON output parsed
 * back and compared with a published vector, and every bad-input case gives
 * one line naming the field and exit status 2. */
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

#include "test_util.h"

static void expect_group(cJSON *groups, const char *kind, int idx, const int *want, int n) {
    cJSON *list = cJSON_GetObjectItem(groups, kind);
    assert_non_null(list);
    cJSON *g = cJSON_GetArrayItem(list, idx);
    assert_non_null(g);
    assert_int_equal(cJSON_GetArraySize(g), n);
    for (int i = 0; i < n; i++) assert_int_equal(cJSON_GetArrayItem(g, i)->valueint, want[i]);
}

/* 16 GPUs; attention TP2 CP2 DP4; experts ETP2 EP4 EDP2 (reference vector 2) */
static void test_json_vector(void **state) {
    (void)state;
    static char out[1 << 16];
    assert_int_equal(moeplan_run("groups --gpus 16 --tp 2 --cp 2 --etp 2 --ep 4 --json", RUN_STDOUT, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "dp")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(j, "edp")->valueint, 2);
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    expect_group(groups, "ep", 1, (int[]){1, 3, 5, 7}, 4);
    expect_group(groups, "dp_cp", 1, (int[]){1, 3, 5, 7, 9, 11, 13, 15}, 8);
    expect_group(groups, "edp", 7, (int[]){7, 15}, 2);
    expect_group(groups, "etp_ep", 1, (int[]){8, 9, 10, 11, 12, 13, 14, 15}, 8);
    cJSON *place = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "placement"), "edp");
    assert_int_equal(cJSON_GetObjectItem(place, "nodes")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(place, "max_per_node")->valueint, 1);
    cJSON_Delete(j);
}

static void test_table(void **state) {
    (void)state;
    static char out[1 << 16];
    assert_int_equal(moeplan_run("groups --gpus 8 --tp 2 --cp 2 --ep 8", RUN_STDOUT, out, sizeof out), 0);
    assert_non_null(strstr(out, "attention: TP2 CP2 DP2 PP1    experts: ETP1 EP8 EDP1 PP1"));
    assert_non_null(strstr(out, "[0,4] [1,5] [2,6] [3,7]"));
}

static void test_bad_input(void **state) {
    (void)state;
    expect_bad_input("groups --gpus 128 --tp 3", "tp: tp*cp*pp = 3 does not divide gpus 128");
    expect_bad_input("groups --gpus 64 --ep 128", "ep: etp*ep*pp = 128 does not divide gpus 64");
    expect_bad_input("groups --gpus 64 --ep 16 --experts 8", "ep: 16 does not divide the model's 8 experts");
    expect_bad_input("groups --gpus -8", "gpus: must be a positive integer");
    expect_bad_input("groups --gpus 8 --tp two", "--tp: 'two' is not an integer");
    expect_bad_input("groups --tp 2", "--gpus: required");
    expect_bad_input("groups --gpus 8 --order dp-first", "--order: 'dp-first'");
    expect_bad_input("groups --gpus 8 --bogus 1", "unknown option '--bogus'");
    expect_bad_input("groups --gpus 16 --tp 2 --pp 2 --ep 4 --order tp-cp-ep-pp-dp", "order: tp-cp-ep-pp-dp with pp 2 needs edp == dp");
    expect_bad_input("groups --gpus 8 --gpus-per-node 0", "--gpus-per-node: must be positive");
    expect_bad_input("groups --gpus", "--gpus: missing value");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_vector),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("cli_groups", tests, NULL, NULL);
}
