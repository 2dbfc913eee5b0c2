/* test_exec_op_profile.c: the op profile table (executor/op_profile.c):
 * rows keyed by (phase, operation), sums, order, reset, and the per-step
 * figures of the table and the JSON against hand arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor/backend.h"
#include "executor/op_profile.h"

static void test_rows_keyed_by_phase_and_op(void **s)
{
    (void)s;
    OpProfile p = {0};
    /* the same name under two phases is two rows; a second call adds up */
    assert_int_equal(op_profile_add(&p, PHASE_ATTENTION, "gemm", 0.002, 0.00025, 4e9, 0), 0);
    assert_int_equal(op_profile_add(&p, PHASE_MOE_COMPUTE, "gemm", 0.010, 0.0, 6e12, 0), 0);
    assert_int_equal(op_profile_add(&p, PHASE_ATTENTION, "gemm", 0.003, 0.0005, 6e9, 0), 0);
    assert_int_equal(op_profile_add(&p, PHASE_OPTIMIZER, "adam", 0.005, 0.0, 0, 3e10), 0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.row[0].calls, 2);
    assert_true(p.row[0].seconds > 0.005 - 1e-12 && p.row[0].seconds < 0.005 + 1e-12);
    assert_true(p.row[0].flops == 1e10);
    assert_true(p.row[0].host_seconds > 0.00075 - 1e-12 && p.row[0].host_seconds < 0.00075 + 1e-12);
    op_profile_sort(&p);
    assert_string_equal(p.row[0].op, "gemm");
    assert_int_equal(p.row[0].phase, PHASE_MOE_COMPUTE);   /* 10 ms first */
    /* 5 ms each: attention (phase 0) before the optimizer */
    assert_int_equal(p.row[1].phase, PHASE_ATTENTION);
    assert_int_equal(p.row[2].phase, PHASE_OPTIMIZER);
    assert_true(op_profile_seconds(&p) > 0.020 - 1e-12 && op_profile_seconds(&p) < 0.020 + 1e-12);
    op_profile_reset(&p);
    assert_int_equal(p.n, 0);
    assert_int_equal(op_profile_add(&p, -1, "copy", 0.001, 0.0, 0, 0), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(op_profile_phase_name(-1), "none");
    assert_string_equal(op_profile_phase_name(PHASE_MOE_COMPUTE), "moe_compute");
    assert_string_equal(op_profile_phase_name(PHASE_COUNT), "?");
    op_profile_free(&p);
}

static void test_many_rows_grow(void **s)
{
    (void)s;
    OpProfile p = {0};
    static const char *names[100];
    static char buf[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(buf[i], sizeof buf[i], "op%d", i);
        names[i] = buf[i];
        assert_int_equal(op_profile_add(&p, PHASE_OTHER, names[i], 0.001 * (i + 1), 0.0, 0, 0), 0);
    }
    assert_int_equal(p.n, 100);
    op_profile_sort(&p);
    assert_string_equal(p.row[0].op, "op99");
    assert_string_equal(p.row[99].op, "op0");
    op_profile_free(&p);
}

/* two steps: 2 x 40 ms of expert GEMMs doing 2 x 2.4e13 FLOPs = 600 TFLOP/s,
 * 2 x 10 ms of Adam moving 2 x 4e10 bytes = 4000 GB/s; per step 40 and 10 ms
 * of a 100 ms step */
static void test_json_per_step(void **s)
{
    (void)s;
    OpProfile p = {0};
    for (int step = 0; step < 2; step++) {
        assert_int_equal(op_profile_add(&p, PHASE_MOE_COMPUTE, "grouped_gemm", 0.040, 0.0, 2.4e13, 0), 0);
        assert_int_equal(op_profile_add(&p, PHASE_OPTIMIZER, "adam", 0.010, 0.0, 0, 4e10), 0);
        p.steps++;
    }
    char *text = op_profile_to_json(&p, 0.100, "test GPU");
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "steps")->valueint, 2);
    cJSON *ops = cJSON_GetObjectItem(root, "ops");
    assert_int_equal(cJSON_GetArraySize(ops), 2);
    cJSON *g = cJSON_GetArrayItem(ops, 0), *a = cJSON_GetArrayItem(ops, 1);
    assert_string_equal(cJSON_GetObjectItem(g, "phase")->valuestring, "moe_compute");
    assert_string_equal(cJSON_GetObjectItem(g, "op")->valuestring, "grouped_gemm");
    assert_true(cJSON_GetObjectItem(g, "calls_per_step")->valuedouble == 1.0);
    assert_true(cJSON_GetObjectItem(g, "seconds_per_step")->valuedouble > 0.040 - 1e-12);
    assert_true(cJSON_GetObjectItem(g, "seconds_per_step")->valuedouble < 0.040 + 1e-12);
    double tf = cJSON_GetObjectItem(g, "tflops")->valuedouble;
    assert_true(tf > 600 - 1e-6 && tf < 600 + 1e-6);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(g, "gb_per_s")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(a, "tflops")));
    double gb = cJSON_GetObjectItem(a, "gb_per_s")->valuedouble;
    assert_true(gb > 4000 - 1e-6 && gb < 4000 + 1e-6);
    cJSON_Delete(root);
    free(text);

    /* the printed table: 40 ms and 40.0% of the step, 600.0 TFLOP/s */
    char out[4096] = {0};
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    assert_non_null(f);
    op_profile_print(f, &p, 0.100);
    fclose(f);
    assert_non_null(strstr(out, "grouped_gemm"));
    assert_non_null(strstr(out, "40.000"));
    assert_non_null(strstr(out, "40.0%"));
    assert_non_null(strstr(out, "600.0"));
    assert_non_null(strstr(out, "4000"));
    assert_non_null(strstr(out, "50.000"));   /* sum of the operations */
    op_profile_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_keyed_by_phase_and_op),
        cmocka_unit_test(test_many_rows_grow),
        cmocka_unit_test(test_json_per_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
