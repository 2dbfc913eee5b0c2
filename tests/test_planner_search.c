/* test_planner_search.c: the search end to end with the simulator: the
 * winner's JSON plan re-simulates to the same score, threads do not change
 * the ranking, coupled search == best coupled of the full search, counts add
 * up, and the calibration runs' published folded mappings are matched. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "planner/search.h"

static Plan *make_base(const char *model, int gpus, int gbs, int seq) {
    Plan *p = calloc(1, sizeof *p);
    MpError err;
    train_config_default(&p->train);
    snprintf(p->model_ref, sizeof p->model_ref, "%s", model);
    snprintf(p->cluster_ref, sizeof p->cluster_ref, "dgx-h100");
    assert_int_equal(model_lookup(model, &p->model, &err), 0);
    assert_int_equal(cluster_lookup("dgx-h100", &p->cluster, &err), 0);
    p->map = (Mapping){.world = gpus, .tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1};
    p->train.global_batch = gbs;
    p->train.seq_len = seq;
    p->train.capacity_factor = 1.0;
    p->train.flops = FLOPS_LEGACY;
    return p;
}

static void narrow(const Plan *b, SearchConstraints *c) {
    space_constraints_default(b, c);
    c->recompute_set = 1u << RECOMPUTE_NONE;
    c->opt_sharding_set = 1u << OPT_SHARD_DISTRIBUTED;
    c->fix_mbs = 1;
}

static void test_json_round_trip(void **state) {
    (void)state;
    Plan *b = make_base("mixtral-8x22b", 128, 256, 4096);
    SearchConstraints c;
    narrow(b, &c);
    c.fix_pp = 8;     /* keeps the test fast; the rest of the space is free */
    c.max_vpp = 2;
    SearchOptions o = {.threads = 2};
    SearchResult r;
    MpError err;
    assert_int_equal(search_run(b, &c, &o, &r, &err), 0);
    assert_true(r.num_ranked > 0);
    /* counts add up: every candidate is ranked, too big, dominated or invalid */
    assert_int_equal((long long)r.space.count, (long long)r.num_ranked + r.space.pruned[PRUNE_MEMORY] +
                     r.space.pruned[PRUNE_DOMINATED] + r.space.pruned[PRUNE_INVALID]);
    assert_int_equal(r.space.pruned[PRUNE_INVALID], 0);
    for (size_t i = 1; i < r.num_ranked; i++) assert_true(r.ranked[i - 1].step_time_s <= r.ranked[i].step_time_s);
    Plan *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q);
    candidate_apply(b, &r.ranked[0].cand, p);
    char *text = plan_to_json_string(p);
    assert_non_null(text);
    assert_int_equal(plan_from_json_text(text, "round-trip.json", q, &err), 0);
    free(text);
    SimResult *sim = malloc(sizeof *sim);
    SimOptions so = {0};
    assert_int_equal(simulate_step(q, NULL, &so, sim, &err), 0);
    assert_true(sim->fits);
    assert_true(sim->step_time_s == r.ranked[0].step_time_s);
    assert_true(sim->mfu == r.ranked[0].mfu);
    free(sim); free(p); free(q); free(b);
    search_result_free(&r);
}

static void test_threads_and_coupled(void **state) {
    (void)state;
    Plan *b = make_base("qwen2-57b-a14b", 64, 256, 4096);
    SearchConstraints c;
    narrow(b, &c);
    c.fix_pp = 4;
    c.fix_vpp = 7;
    SearchResult r1, r2, rc;
    MpError err;
    SearchOptions o1 = {.threads = 1}, o2 = {.threads = 2};
    assert_int_equal(search_run(b, &c, &o1, &r1, &err), 0);
    assert_int_equal(search_run(b, &c, &o2, &r2, &err), 0);
    assert_int_equal(r1.num_ranked, r2.num_ranked);
    for (size_t i = 0; i < r1.num_ranked; i++) {
        assert_true(candidate_same(&r1.ranked[i].cand, &r2.ranked[i].cand));
        assert_true(r1.ranked[i].step_time_s == r2.ranked[i].step_time_s);
    }
    c.no_folding = true;
    assert_int_equal(search_run(b, &c, &o2, &rc, &err), 0);
    assert_true(rc.num_ranked > 0 && r1.best_coupled >= 0);
    for (size_t i = 0; i < rc.num_ranked; i++) assert_int_equal(rc.ranked[i].cand.map.etp, rc.ranked[i].cand.map.tp);
    assert_true(candidate_same(&rc.ranked[0].cand, &r1.ranked[r1.best_coupled].cand));
    /* folding never loses: the coupled plans are a subset */
    assert_true(r1.ranked[0].step_time_s <= rc.ranked[0].step_time_s);
    search_result_free(&r1); search_result_free(&r2); search_result_free(&rc);
    free(b);
}

/* tests/data/calibration-set.json: for each folded run, search the folded
 * mapping (TP, CP, PP, ETP, EP and the pipeline split) with the run's other
 * settings as published (micro-batch 1, virtual pipeline size, no
 * recomputation, distributed optimizer, capacity factor 1, overlaps); the
 * best plan is at least as fast as the published mapping (simulated), and
 * the published mapping is in the top 10. */
static void test_calibration_runs(void **state) {
    (void)state;
    char *text;
    MpError err;
    assert_int_equal(read_text_file("tests/data/calibration-set.json", &text, &err), 0);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    cJSON *runs = cJSON_GetObjectItem(root, "runs"), *run;
    int checked = 0;
    cJSON_ArrayForEach(run, runs) {
        const char *method = cJSON_GetObjectItem(run, "method")->valuestring;
        if (strcmp(method, "folded")) continue;
        const char *model = cJSON_GetObjectItem(run, "model")->valuestring;
        int gpus = cJSON_GetObjectItem(run, "gpus")->valueint;
        Plan *b = make_base(model, gpus, 256, 4096);
        cJSON *extra = cJSON_GetObjectItem(run, "extra");
        if (extra && strstr(extra->valuestring, "TP communication overlap")) b->train.overlap |= OVERLAP_TP;
        if (extra && strstr(extra->valuestring, "shared expert overlapped")) b->train.overlap |= OVERLAP_SHARED_EXPERT;
        Plan *pub = calloc(1, sizeof *pub);
        *pub = *b;
        pub->map = (Mapping){.world = gpus, .tp = cJSON_GetObjectItem(run, "tp")->valueint,
                             .cp = cJSON_GetObjectItem(run, "cp")->valueint, .pp = cJSON_GetObjectItem(run, "pp")->valueint,
                             .vpp = cJSON_GetObjectItem(run, "vpp")->valueint, .etp = cJSON_GetObjectItem(run, "etp")->valueint,
                             .ep = cJSON_GetObjectItem(run, "ep")->valueint};
        assert_int_equal(mapping_resolve(&pub->map, pub->model.num_experts, &err), 0);
        pub->train.micro_batch = 1;
        pub->train.recompute = RECOMPUTE_NONE;
        pub->train.opt_sharding = OPT_SHARD_DISTRIBUTED;
        SimResult *sim = malloc(sizeof *sim);
        ScoredPlan published;
        bool fits;
        assert_int_equal(search_score_plan(pub, NULL, sim, &published, &fits, &err), 0);
        SearchConstraints c;
        narrow(b, &c);
        c.fix_vpp = pub->map.vpp;
        SearchOptions o = {.threads = 2};
        SearchResult r;
        assert_int_equal(search_run(b, &c, &o, &r, &err), 0);
        assert_true(r.num_ranked > 0);
        print_message("%s %d GPUs: published %.1f%% MFU, search best %.1f%% (tp%d cp%d pp%d vpp%d etp%d ep%d)\n",
                      model, gpus, 100 * published.mfu, 100 * r.ranked[0].mfu, r.ranked[0].cand.map.tp,
                      r.ranked[0].cand.map.cp, r.ranked[0].cand.map.pp, r.ranked[0].cand.map.vpp,
                      r.ranked[0].cand.map.etp, r.ranked[0].cand.map.ep);
        assert_true(fits);
        assert_true(r.ranked[0].step_time_s <= published.step_time_s);
        int found = -1;
        for (size_t i = 0; i < r.num_ranked && i < 10 && found < 0; i++) {
            const Mapping *m = &r.ranked[i].cand.map;
            if (m->tp == pub->map.tp && m->cp == pub->map.cp && m->pp == pub->map.pp && m->vpp == pub->map.vpp &&
                m->etp == pub->map.etp && m->ep == pub->map.ep) found = (int)i;
        }
        print_message("  published mapping at rank %d of the search\n", found + 1);
        assert_true(found >= 0);
        search_result_free(&r);
        free(sim); free(pub); free(b);
        checked++;
    }
    assert_int_equal(checked, 2);
    cJSON_Delete(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_threads_and_coupled),
        cmocka_unit_test(test_calibration_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
