/* test_result_schema.c: every command's JSON (simulate, search, sweep,
 * execute) against docs/schema/moeplan-result.schema.json, with the
 * validator of tests/json_schema_check.h (itself tested first), and the
 * units of the schema checked by hand arithmetic. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "core/json_util.h"
#include "json_schema_check.h"
#include "test_util.h"

#define SCHEMA_PATH "docs/schema/moeplan-result.schema.json"
#define SIM16 "--model mixtral-8x7b --cluster dgx-h100 --gpus 16 --tp 2 --ep 8 --pp 2"

static cJSON *load_schema(void) {
    char *text = NULL;
    MpError err = {{0}};
    if (read_text_file(SCHEMA_PATH, &text, &err)) fail_msg("%s", err.msg);
    cJSON *s = cJSON_Parse(text);
    free(text);
    assert_non_null(s);
    return s;
}

/* Validates doc against the whole schema and against $defs/<command>. */
static void expect_valid(const cJSON *doc, const char *command) {
    cJSON *schema = load_schema();
    char msg[1024];
    if (schema_check(schema, schema, doc, msg, sizeof msg)) fail_msg("%s: %s", command, msg);
    const cJSON *part = cJSON_GetObjectItem(cJSON_GetObjectItem(schema, "$defs"), command);
    assert_non_null(part);
    if (schema_check(schema, part, doc, msg, sizeof msg)) fail_msg("%s: %s", command, msg);
    assert_string_equal(cJSON_GetObjectItem(doc, "command")->valuestring, command);
    cJSON_Delete(schema);
}

static cJSON *run_doc_with(const char *args, int streams) {
    static char out[1 << 21];
    int rc = moeplan_run(args, streams, out, sizeof out);
    if (rc) fail_msg("moeplan %s: exit %d", args, rc);
    cJSON *o = cJSON_Parse(out);
    if (!o) fail_msg("moeplan %s: not JSON: %.300s", args, out);
    return o;
}

static cJSON *run_doc(const char *args) { return run_doc_with(args, RUN_STDOUT); }

static double num_at(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(b ? cJSON_GetObjectItem(o, a) : o, b ? b : a);
    if (!cJSON_IsNumber(v)) fail_msg("%s.%s is not a number", a, b ? b : "");
    return v->valuedouble;
}

/* ---- the validator can fail ---- */

static int check_text(const char *schema_text, const char *instance_text, char *msg, size_t len) {
    cJSON *s = cJSON_Parse(schema_text), *v = cJSON_Parse(instance_text);
    assert_non_null(s);
    assert_non_null(v);
    int rc = schema_check(s, s, v, msg, len);
    cJSON_Delete(s);
    cJSON_Delete(v);
    return rc;
}

static void test_validator_catches_each_keyword(void **state) {
    (void)state;
    const char *schema =
        "{\"type\": \"object\", \"required\": [\"a\", \"m\"], \"$defs\": {\"pos\": {\"type\": \"number\", \"minimum\": 0}},"
        " \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 1},"
        " \"e\": {\"type\": \"string\", \"enum\": [\"x\", \"y\"]}, \"l\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/pos\"}},"
        " \"m\": {\"anyOf\": [{\"type\": \"null\"}, {\"$ref\": \"#/$defs/pos\"}]}, \"n\": {\"type\": [\"string\", \"null\"]}}}";
    char msg[1024];
    assert_int_equal(check_text(schema, "{\"a\": 2, \"m\": null, \"e\": \"x\", \"l\": [0, 1.5], \"n\": null}", msg, sizeof msg), 0);
    assert_int_equal(check_text(schema, "{\"a\": 2, \"m\": 3}", msg, sizeof msg), 0);
    assert_int_equal(check_text(schema, "{\"a\": 2}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "'m' is missing"));
    assert_int_equal(check_text(schema, "{\"a\": 1.5, \"m\": null}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, ".a: type"));
    assert_int_equal(check_text(schema, "{\"a\": 0, \"m\": null}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, ".a: minimum"));
    assert_int_equal(check_text(schema, "{\"a\": 1, \"m\": null, \"e\": \"z\"}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, ".e: enum"));
    assert_int_equal(check_text(schema, "{\"a\": 1, \"m\": null, \"l\": [1, -1]}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, ".l[1]: minimum"));
    assert_int_equal(check_text(schema, "{\"a\": 1, \"m\": \"3\"}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, ".m: anyOf"));
    assert_int_equal(check_text(schema, "{\"a\": 1, \"m\": null, \"n\": 3}", msg, sizeof msg), -1);
    assert_int_equal(check_text(schema, "[]", msg, sizeof msg), -1);
    /* a keyword the validator does not implement is refused, not ignored */
    assert_int_equal(check_text("{\"additionalProperties\": false}", "{}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "additionalProperties"));
    assert_int_equal(check_text("{\"$ref\": \"#/$defs/none\"}", "{}", msg, sizeof msg), -1);
}

/* ---- simulate ---- */

static void test_simulate_json(void **state) {
    (void)state;
    cJSON *o = run_doc("simulate " SIM16 " --json");
    expect_valid(o, "simulate");
    const cJSON *pr = cJSON_GetObjectItem(o, "prediction");
    /* times in seconds: tokens/s/GPU x step x GPUs = the batch's tokens (256 x 4096) */
    double step = num_at(pr, "step_time_s", NULL), tps = num_at(pr, "tokens_per_s_per_gpu", NULL);
    assert_rel(tps * step * 16, 256.0 * 4096, 1e-9);
    /* memory in bytes: H100 81559 MiB less the 4 GiB reserve */
    assert_rel(num_at(pr, "memory_capacity_bytes", NULL), 81559.0 * 1048576 - 4.0 * 1073741824, 1e-12);
    /* the peak is the largest stage total; PP 2 gives two stages */
    const cJSON *st = cJSON_GetObjectItem(pr, "stage_memory_bytes");
    assert_int_equal(cJSON_GetArraySize(st), 2);
    double t0 = num_at(cJSON_GetArrayItem(st, 0), "total", NULL), t1 = num_at(cJSON_GetArrayItem(st, 1), "total", NULL);
    assert_rel(num_at(pr, "peak_memory_bytes", NULL), t0 > t1 ? t0 : t1, 1e-12);
    assert_true(t0 > 1e9); /* bytes, not GiB */
    /* MFU: both conventions, the plan's named; BF16 plan: no FP8 figure */
    const cJSON *mfu = cJSON_GetObjectItem(pr, "mfu");
    assert_string_equal(cJSON_GetObjectItem(mfu, "convention")->valuestring, "megatron");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(mfu, "fp8_peak")));
    /* TFLOP/s per GPU = MFU (megatron) x 989.5 TFLOP/s BF16 peak */
    assert_rel(num_at(pr, "tflops_per_gpu", NULL), num_at(mfu, "megatron", NULL) * 989.5, 1e-9);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "context"), "calibration")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "warnings")), 0);
    cJSON_Delete(o);
}

static void test_simulate_fp8_has_fp8_peak_mfu(void **state) {
    (void)state;
    cJSON *o = run_doc("simulate " SIM16 " --precision fp8 --json");
    expect_valid(o, "simulate");
    const cJSON *mfu = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "prediction"), "mfu");
    /* the same FLOPs against the FP8 dense peak: 989.5 / 1979 of the BF16 figure */
    assert_rel(num_at(mfu, "fp8_peak", NULL), num_at(mfu, "megatron", NULL) * 989.5 / 1979.0, 1e-9);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "context"), "precision")->valuestring, "fp8");
    double fp8 = 100 * num_at(mfu, "fp8_peak", NULL);
    cJSON_Delete(o);
    /* the report says it too */
    static char out[1 << 14];
    assert_int_equal(moeplan_run("simulate " SIM16 " --precision fp8", RUN_STDOUT, out, sizeof out), 0);
    const char *line = strstr(out, "MFU (FP8 peak)");
    if (!line) fail_msg("%s", out);
    if (fabs(atof(line + strlen("MFU (FP8 peak)")) - fp8) > 0.051) fail_msg("%s vs %.2f", line, fp8);
}

/* ---- search ---- */

static void test_search_json_top_k(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-schema-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[512];
    snprintf(path, sizeof path, "%s/search.json", dir);
    snprintf(args, sizeof args,
             "search --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --top 3 --threads 2 --json > %s", path);
    char out[256];
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    char *text = NULL;
    MpError err = {{0}};
    assert_int_equal(read_text_file(path, &text, &err), 0);
    cJSON *o = cJSON_Parse(text);
    free(text);
    assert_non_null(o);
    expect_valid(o, "search");
    const cJSON *plans = cJSON_GetObjectItem(o, "plans");
    assert_true(cJSON_GetArraySize(plans) >= 3);
    double prev = 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(plans, i);
        assert_int_equal((int)num_at(e, "rank", NULL), i + 1);
        double s = num_at(e, "prediction", "step_time_s");
        assert_true(s >= prev); /* fastest first */
        prev = s;
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "prediction"), "stage_memory_bytes")),
                         (int)num_at(e, "plan", "pp"));
    }
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "context"), "mbs")));
    /* the document is a plan file: simulate --plan reads the chosen rank and predicts the same step */
    double best = num_at(cJSON_GetArrayItem(plans, 0), "prediction", "step_time_s");
    cJSON_Delete(o);
    snprintf(args, sizeof args, "simulate --plan %s --json", path);
    cJSON *sim = run_doc(args);
    assert_rel(num_at(sim, "prediction", "step_time_s"), best, 1e-12);
    cJSON_Delete(sim);
    unlink(path);
    rmdir(dir);
}

/* ---- sweep ---- */

static void test_sweep_json_invalid_point_is_null_with_reason(void **state) {
    (void)state;
    /* 3 GPUs cannot hold TP2 x PP2: no plan at that point */
    cJSON *o = run_doc("sweep " SIM16 " --fixed --vary gpus=3,16 --json");
    expect_valid(o, "sweep");
    const cJSON *c = cJSON_GetObjectItem(o, "context");
    assert_string_equal(cJSON_GetObjectItem(c, "model")->valuestring, "mixtral-8x7b");
    assert_string_equal(cJSON_GetObjectItem(c, "cluster")->valuestring, "dgx-h100");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "gpus"))); /* the swept field */
    assert_int_equal((int)num_at(c, "gbs", NULL), 256);
    assert_int_equal((int)num_at(c, "seq", NULL), 4096);
    const cJSON *pts = cJSON_GetObjectItem(o, "points");
    const cJSON *bad = cJSON_GetArrayItem(pts, 0), *good = cJSON_GetArrayItem(pts, 1);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(bad, "ok")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(bad, "plan")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(bad, "prediction")));
    assert_non_null(strstr(cJSON_GetObjectItem(bad, "reason")->valuestring, "does not divide"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(good, "reason")));
    assert_int_equal((int)num_at(good, "plan", "tp"), 2);
    /* the fixed point predicts exactly what simulate does */
    double step = num_at(good, "prediction", "step_time_s");
    cJSON_Delete(o);
    cJSON *sim = run_doc("simulate " SIM16 " --json");
    assert_rel(num_at(sim, "prediction", "step_time_s"), step, 1e-12);
    cJSON_Delete(sim);
}

static void test_sweep_search_json(void **state) {
    (void)state;
    cJSON *o = run_doc("sweep --model mixtral-8x7b --cluster dgx-h100 --vary gpus=4,16 --threads 2 --json");
    expect_valid(o, "sweep");
    const cJSON *pts = cJSON_GetObjectItem(o, "points");
    const cJSON *none = cJSON_GetArrayItem(pts, 0), *best = cJSON_GetArrayItem(pts, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(none, "plan")));
    assert_non_null(strstr(cJSON_GetObjectItem(none, "reason")->valuestring, "no plan fits"));
    assert_int_equal((int)num_at(best, "plan", "gpus"), 16);
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(best, "coupled_mfu")));
    cJSON_Delete(o);
}

/* A 2-D sweep (--vary2): both swept context fields null, parameter2 and
 * unit2 named, every point with value and value2 in row-major order; a
 * 1-D sweep has parameter2, unit2 and value2 null. */
static void test_sweep_2d_json(void **state) {
    (void)state;
    cJSON *o = run_doc("sweep " SIM16 " --fixed --vary gpus=3,16 --vary2 seq=2048,4096 --json --quiet");
    expect_valid(o, "sweep");
    const cJSON *c = cJSON_GetObjectItem(o, "context");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "gpus")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "seq")));
    assert_int_equal((int)num_at(c, "gbs", NULL), 256);
    const cJSON *sw = cJSON_GetObjectItem(o, "sweep");
    assert_string_equal(cJSON_GetObjectItem(sw, "parameter")->valuestring, "gpus");
    assert_string_equal(cJSON_GetObjectItem(sw, "parameter2")->valuestring, "seq");
    assert_string_equal(cJSON_GetObjectItem(sw, "unit2")->valuestring, "tokens");
    const cJSON *pts = cJSON_GetObjectItem(o, "points");
    assert_int_equal(cJSON_GetArraySize(pts), 4);
    const double want[4][2] = {{3, 2048}, {3, 4096}, {16, 2048}, {16, 4096}};
    for (int i = 0; i < 4; i++) {
        const cJSON *p = cJSON_GetArrayItem(pts, i);
        assert_true(num_at(p, "value", NULL) == want[i][0]);
        assert_true(num_at(p, "value2", NULL) == want[i][1]);
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(p, "ok")), i >= 2);
        if (i >= 2) {
            assert_int_equal((int)num_at(p, "plan", "gpus"), 16);
            assert_int_equal((int)num_at(p, "plan", "seq"), (int)want[i][1]);
        }
    }
    cJSON_Delete(o);
    o = run_doc("sweep " SIM16 " --fixed --vary gpus=16 --json --quiet");
    expect_valid(o, "sweep");
    sw = cJSON_GetObjectItem(o, "sweep");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(sw, "parameter2")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(sw, "unit2")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "points"), 0), "value2")));
    cJSON_Delete(o);
}

static void test_sweep_csv_invalid_point_has_empty_fields(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-schema-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[512], out[4096];
    snprintf(path, sizeof path, "%s/s.csv", dir);
    snprintf(args, sizeof args, "sweep " SIM16 " --fixed --vary gpus=3,16 --csv %s", path);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    char *text = NULL;
    MpError err = {{0}};
    assert_int_equal(read_text_file(path, &text, &err), 0);
    /* header, then the 3-GPU row: value, ok 0, 18 empty plan fields, no coupled MFU, no dominant cost, the reason */
    char *row = strchr(text, '\n');
    assert_non_null(row);
    assert_non_null(strstr(text, ",reason\n"));
    assert_int_equal(strncmp(row + 1, "3,0,,,,,,,,,,,,,,,,,,,,,invalid: ", 33), 0);
    assert_null(strstr(row + 1, "0.00000"));
    free(text);
    unlink(path);
    rmdir(dir);
}

/* ---- execute ---- */

static void test_execute_json(void **state) {
    (void)state;
    /* execute starts Open MPI, whose plugins leak (test_util.h) */
    cJSON *o = run_doc_with("execute --model tests/data/exec-tiny-moe.json --backend cpu --seq 32 --steps 2 --warmup 1 --json",
                            RUN_STDOUT | RUN_NO_LEAK_CHECK);
    expect_valid(o, "execute");
    const cJSON *me = cJSON_GetObjectItem(o, "measured"), *pr = cJSON_GetObjectItem(o, "predicted");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(me, "mfu"), "convention")->valuestring, "megatron");
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(pr, "breakdown_s")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(pr, "stage_memory_bytes")));
    /* memory: measured and predicted by the same categories; the parts add
     * up to the total (measured: at the peak) */
    static const char *const cat[] = {"weights", "gradients", "optimizer", "activations", "communication", "workspace"};
    const cJSON *mm = cJSON_GetObjectItem(me, "memory_bytes"), *pm = cJSON_GetObjectItem(pr, "memory_bytes");
    double ms = 0, ps = 0;
    for (size_t i = 0; i < sizeof cat / sizeof cat[0]; i++) {
        ms += cJSON_GetObjectItem(mm, cat[i])->valuedouble;
        ps += cJSON_GetObjectItem(pm, cat[i])->valuedouble;
    }
    assert_true(cJSON_GetObjectItem(mm, "total")->valuedouble > 0);
    assert_true(fabs(ms - cJSON_GetObjectItem(mm, "total")->valuedouble) < 1);
    assert_true(fabs(ps - cJSON_GetObjectItem(pm, "total")->valuedouble) < 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "run"), "overlap")->valuestring, "grad,param,p2p,cp");
    /* one rank: no ring, no pipeline; the step ran (and says so) the
     * overlap words it implements, on by default */
    const cJSON *ph = cJSON_GetObjectItem(me, "phases_s");
    assert_true(cJSON_GetObjectItem(ph, "cp_comm")->valuedouble == 0);
    assert_true(cJSON_GetObjectItem(ph, "pipeline")->valuedouble == 0);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(pr, "phases_s"), "cp_comm")));
    cJSON_Delete(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_catches_each_keyword),
        cmocka_unit_test(test_simulate_json),
        cmocka_unit_test(test_simulate_fp8_has_fp8_peak_mfu),
        cmocka_unit_test(test_search_json_top_k),
        cmocka_unit_test(test_sweep_json_invalid_point_is_null_with_reason),
        cmocka_unit_test(test_sweep_search_json),
        cmocka_unit_test(test_sweep_2d_json),
        cmocka_unit_test(test_sweep_csv_invalid_point_has_empty_fields),
        cmocka_unit_test(test_execute_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
