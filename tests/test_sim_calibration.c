/* test_sim_calibration.c: the four published MoE Parallel Folding runs
 * (tests/data/calibration-set.json, a copy of reference/calibration-set.json)
 * predicted with the default cost model: each within 3 MFU points, and
 * folded ranked above coupled for both models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "sim_plans.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

typedef struct {
    char model[64];
    bool folded;
    double published, predicted;
} Run;

static int load_runs(Run *runs, int max) {
    char *text = NULL;
    MpError err = {{0}};
    if (read_text_file(TEST_DATA "/calibration-set.json", &text, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return -1;
    const cJSON *arr = cJSON_GetObjectItem(root, "runs"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        if (n >= max) break;
        Run *r = &runs[n];
        snprintf(r->model, sizeof r->model, "%s", cJSON_GetObjectItem(e, "model")->valuestring);
        int gpus = cJSON_GetObjectItem(e, "gpus")->valueint, tp = cJSON_GetObjectItem(e, "tp")->valueint;
        int cp = cJSON_GetObjectItem(e, "cp")->valueint, pp = cJSON_GetObjectItem(e, "pp")->valueint;
        int vpp = cJSON_GetObjectItem(e, "vpp")->valueint, ep = cJSON_GetObjectItem(e, "ep")->valueint;
        int etp = cJSON_GetObjectItem(e, "etp")->valueint;
        r->published = cJSON_GetObjectItem(e, "mfu")->valuedouble;
        r->folded = strcmp(cJSON_GetObjectItem(e, "method")->valuestring, "folded") == 0;
        const cJSON *extra = cJSON_GetObjectItem(e, "extra");
        Plan p;
        if (sim_make_plan(&p, r->model, "dgx-h100", gpus, tp, cp, pp, vpp, etp, ep)) return -1;
        sim_paper_settings(&p);
        /* the runs' stated extra overlap settings */
        if (extra && strstr(extra->valuestring, "TP communication overlap")) p.train.overlap |= OVERLAP_TP;
        if (extra && strstr(extra->valuestring, "shared expert overlapped")) p.train.overlap |= OVERLAP_SHARED_EXPERT;
        SimResult *res = malloc(sizeof *res);
        if (sim_run(&p, res)) { free(res); return -1; }
        r->predicted = res->mfu;
        printf("%-16s %-8s published %.1f%%  predicted %.1f%%  (%+.1f points)  step %.3f s  fits %d\n", r->model,
               r->folded ? "folded" : "coupled", 100 * r->published, 100 * r->predicted,
               100 * (r->predicted - r->published), res->step_time_s, res->fits);
        free(res);
        n++;
    }
    cJSON_Delete(root);
    return n;
}

static void test_published_runs_within_3_points(void **state) {
    (void)state;
    Run runs[8];
    int n = load_runs(runs, 8);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) assert_true(fabs(runs[i].predicted - runs[i].published) <= 0.03);
}

static void test_folded_ranks_above_coupled(void **state) {
    (void)state;
    Run runs[8];
    int n = load_runs(runs, 8);
    assert_int_equal(n, 4);
    int pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (!strcmp(runs[i].model, runs[j].model) && runs[i].folded && !runs[j].folded) {
                assert_true(runs[i].predicted > runs[j].predicted);
                pairs++;
            }
    assert_int_equal(pairs, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_runs_within_3_points),
        cmocka_unit_test(test_folded_ranks_above_coupled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
