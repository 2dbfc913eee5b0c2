/* result_json.c: see result_json.h.  The schema these functions write is
 * docs/schema/moeplan-result.schema.json; tests/test_result_schema.c checks
 * every command's output against it. */
#include "result_json.h"

#include <stdlib.h>

cJSON *result_mfu_json(const Plan *p, double mfu_legacy, double mfu_megatron) {
    cJSON *o = cJSON_CreateObject();
    /* a convention that counts more FLOPs than the step can execute at the
     * peak of the plan's precision (legacy's full s x s attention at long
     * sequences) has no MFU: null, never a figure above 100% */
    double to_ceiling = p->train.precision == PRECISION_FP8 && p->cluster.peak_fp8_flops > p->cluster.peak_bf16_flops
                            ? p->cluster.peak_bf16_flops / p->cluster.peak_fp8_flops : 1.0;
    if (mfu_legacy * to_ceiling <= 1.0) cJSON_AddNumberToObject(o, "legacy", mfu_legacy);
    else cJSON_AddNullToObject(o, "legacy");
    if (mfu_megatron * to_ceiling <= 1.0) cJSON_AddNumberToObject(o, "megatron", mfu_megatron);
    else cJSON_AddNullToObject(o, "megatron");
    cJSON_AddStringToObject(o, "convention", flops_convention_name(p->train.flops));
    /* the simulator divides by the BF16 dense peak (simulate.c); an FP8 plan
     * is also shown against the FP8 dense peak: same FLOPs, larger peak */
    double conv = p->train.flops == FLOPS_MEGATRON ? mfu_megatron : mfu_legacy;
    if (p->train.precision == PRECISION_FP8 && p->cluster.peak_fp8_flops > 0)
        cJSON_AddNumberToObject(o, "fp8_peak", conv * p->cluster.peak_bf16_flops / p->cluster.peak_fp8_flops);
    else
        cJSON_AddNullToObject(o, "fp8_peak");
    return o;
}

cJSON *result_plan_json(const Plan *p) {
    char *text = plan_to_json_string(p);
    if (!text) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o;
}

int result_breakdown_terms(const SimBreakdown *b, const char **names, double *seconds) {
    int n = 0;
#define TERM(field) do { names[n] = #field; seconds[n] = b->field; n++; } while (0)
    TERM(compute_attention);
    TERM(compute_moe);
    TERM(compute_dense_mlp);
    TERM(compute_embed_output);
    TERM(compute_memory_bound);
    TERM(recompute);
    TERM(comm_tp);
    TERM(comm_cp);
    TERM(comm_ep);
    TERM(comm_etp);
    TERM(comm_pp);
    TERM(comm_dp);
    TERM(comm_edp);
    TERM(bubble);
    TERM(optimizer);
#undef TERM
    return n;
}

cJSON *result_prediction_json(const Plan *p, const SimResult *r, bool with_stages) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "fits", r->fits);
    cJSON_AddNumberToObject(o, "step_time_s", r->step_time_s);
    cJSON_AddItemToObject(o, "mfu", result_mfu_json(p, r->mfu_legacy, r->mfu_megatron));
    cJSON_AddNumberToObject(o, "tflops_per_gpu", r->tflops_per_gpu);
    cJSON_AddNumberToObject(o, "tokens_per_s_per_gpu", r->tokens_per_s_per_gpu);
    cJSON_AddNumberToObject(o, "peak_memory_bytes", r->peak_memory_bytes);
    cJSON_AddNumberToObject(o, "memory_capacity_bytes", r->memory_capacity_bytes);
    cJSON_AddStringToObject(o, "dominant", r->dominant);
    cJSON_AddNumberToObject(o, "critical_stage", r->critical_stage);
    const char *names[RESULT_MAX_TERMS];
    double sec[RESULT_MAX_TERMS];
    int n = result_breakdown_terms(&r->breakdown, names, sec);
    cJSON *b = cJSON_AddObjectToObject(o, "breakdown_s");
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(b, names[i], sec[i]);
    if (!with_stages) {
        cJSON_AddNullToObject(o, "stage_memory_bytes");
        return o;
    }
    cJSON *st = cJSON_AddArrayToObject(o, "stage_memory_bytes");
    for (int s = 0; s < r->num_stages; s++) {
        const SimStageMemory *m = &r->stage_memory[s];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "stage", s);
        cJSON_AddNumberToObject(e, "weights", m->weights);
        cJSON_AddNumberToObject(e, "gradients", m->gradients);
        cJSON_AddNumberToObject(e, "optimizer", m->optimizer);
        cJSON_AddNumberToObject(e, "activations", m->activations);
        cJSON_AddNumberToObject(e, "total", m->total);
        cJSON_AddItemToArray(st, e);
    }
    return o;
}

cJSON *result_document(const char *command, const Plan *p, int mbs, const char *cal_path, const char *cal_device) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "schema_version", RESULT_SCHEMA_VERSION);
    cJSON_AddStringToObject(doc, "command", command);
    cJSON *c = cJSON_AddObjectToObject(doc, "context");
    cJSON_AddStringToObject(c, "model", p->model.name);
    cJSON_AddStringToObject(c, "cluster", p->cluster.name);
    cJSON_AddStringToObject(c, "gpu", p->cluster.gpu_name);
    cJSON_AddNumberToObject(c, "gpus", p->map.world);
    cJSON_AddNumberToObject(c, "seq", p->train.seq_len);
    cJSON_AddNumberToObject(c, "gbs", p->train.global_batch);
    if (mbs < 0) cJSON_AddNullToObject(c, "mbs");
    else cJSON_AddNumberToObject(c, "mbs", mbs);
    cJSON_AddStringToObject(c, "precision", p->train.precision == PRECISION_FP8 ? "fp8" : "bf16");
    cJSON_AddStringToObject(c, "flops_convention", flops_convention_name(p->train.flops));
    if (cal_path || cal_device) {
        cJSON *cal = cJSON_AddObjectToObject(c, "calibration");
        if (cal_path) cJSON_AddStringToObject(cal, "path", cal_path);
        else cJSON_AddNullToObject(cal, "path");
        if (cal_device) cJSON_AddStringToObject(cal, "device", cal_device);
        else cJSON_AddNullToObject(cal, "device");
    } else {
        cJSON_AddNullToObject(c, "calibration");
    }
    cJSON_AddArrayToObject(doc, "warnings");
    return doc;
}

void result_add_warning(cJSON *doc, const char *text) {
    cJSON *w = cJSON_GetObjectItem(doc, "warnings");
    if (w) cJSON_AddItemToArray(w, cJSON_CreateString(text));
}
