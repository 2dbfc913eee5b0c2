/* sweep_result.c: see sweep_result.h. */
#include "sweep_result.h"

#include <stdlib.h>

static void null_swept(cJSON *c, SweepParam k, long long tokens_per_batch) {
    if (k == SWEEP_GPUS) cJSON_ReplaceItemInObject(c, "gpus", cJSON_CreateNull());
    if (k == SWEEP_SEQ) cJSON_ReplaceItemInObject(c, "seq", cJSON_CreateNull());
    if (k == SWEEP_GBS || tokens_per_batch > 0) cJSON_ReplaceItemInObject(c, "gbs", cJSON_CreateNull());
}

cJSON *sweep_result_new(const Plan *base, SweepParam k, const SweepParam *k2, bool fixed, long long tokens_per_batch,
                        const char *cal_path, const Calibration *cal) {
    cJSON *doc = result_document("sweep", base, fixed ? base->train.micro_batch : -1, cal_path,
                                 cal ? cal->device : NULL);
    cJSON *c = cJSON_GetObjectItem(doc, "context");
    /* a varied field has no single value: null in the context */
    null_swept(c, k, tokens_per_batch);
    if (k2) null_swept(c, *k2, tokens_per_batch);
    if (tokens_per_batch > 0) cJSON_AddNumberToObject(c, "tokens_per_batch", (double)tokens_per_batch);
    else cJSON_AddNullToObject(c, "tokens_per_batch");
    cJSON *sw = cJSON_AddObjectToObject(doc, "sweep");
    cJSON_AddStringToObject(sw, "parameter", sweep_param_name(k));
    cJSON_AddStringToObject(sw, "unit", sweep_param_unit(k));
    cJSON_AddStringToObject(sw, "mode", fixed ? "fixed" : "search");
    if (k2) {
        cJSON_AddStringToObject(sw, "parameter2", sweep_param_name(*k2));
        cJSON_AddStringToObject(sw, "unit2", sweep_param_unit(*k2));
    } else {
        cJSON_AddNullToObject(sw, "parameter2");
        cJSON_AddNullToObject(sw, "unit2");
    }
    cJSON_AddArrayToObject(doc, "points");
    return doc;
}

/* Simulates cand (or, when cand is NULL, the point's own plan) on point. */
static int simulate_on(const Plan *point, const Candidate *cand, const Calibration *cal, Plan *p, SimResult *r,
                       MpError *err) {
    if (cand) {
        candidate_apply(point, cand, p);
    } else {
        *p = *point;
        if (mapping_resolve(&p->map, p->model.num_experts, err)) return -1;
    }
    SimOptions opt = {0};
    return simulate_step(p, cal, &opt, r, err);
}

int sweep_result_add_point(cJSON *doc, const Plan *point, const SweepPoint *pt, bool fixed, const Calibration *cal,
                           MpError *err) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_GetObjectItem(doc, "points"), e);
    cJSON_AddNumberToObject(e, "value", pt->value);
    if (pt->has_value2) cJSON_AddNumberToObject(e, "value2", pt->value2);
    else cJSON_AddNullToObject(e, "value2");
    cJSON_AddBoolToObject(e, "ok", pt->ok);
    if (pt->ok) cJSON_AddNullToObject(e, "reason");
    else cJSON_AddStringToObject(e, "reason", pt->note);
    /* a plan exists when the search found one, or the fixed plan was valid
     * (a fixed plan that does not fit still has its figures) */
    bool has_plan = pt->ok || (fixed && pt->best.step_time_s > 0);
    Plan *p = malloc(sizeof *p);
    SimResult *r = malloc(sizeof *r);
    int rc = -1;
    if (!p || !r) { mp_fail(err, "out of memory"); goto done; }
    if (has_plan) {
        if (simulate_on(point, fixed ? NULL : &pt->best.cand, cal, p, r, err)) goto done;
        cJSON_AddItemToObject(e, "plan", result_plan_json(p));
        cJSON_AddItemToObject(e, "prediction", result_prediction_json(p, r, true));
    } else {
        cJSON_AddNullToObject(e, "plan");
        cJSON_AddNullToObject(e, "prediction");
    }
    if (pt->has_coupled) {
        if (simulate_on(point, &pt->coupled.cand, cal, p, r, err)) goto done;
        cJSON_AddItemToObject(e, "coupled_mfu", result_mfu_json(p, r->mfu_legacy, r->mfu_megatron));
    } else {
        cJSON_AddNullToObject(e, "coupled_mfu");
    }
    rc = 0;
done:
    free(p);
    free(r);
    return rc;
}
