/* fuzz_simulate.c: load -> simulate -> emit, the path of
 * `moeplan simulate --plan FILE` followed by the Megatron-LM flags that
 * `search` prints for a plan.
 *
 * Input: up to four parts separated by a line "---":
 *   model JSON (catalog or HF format) --- cluster JSON --- plan JSON
 *   [--- calibration JSON]
 * The model and cluster parts are written to temporary files and the plan's
 * "model" and "cluster" are set to those paths (a plan that is not a JSON
 * object is skipped); the plan is then loaded with plan_from_json_text,
 * which reads both files as the CLI does.  An accepted plan must simulate
 * to a finite, positive step time with finite figures, and its Megatron
 * flags and plan JSON must be produced. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"
#include "fuzz_util.h"
#include "planner/emit.h"
#include "simulator/calibration.h"
#include "simulator/simulate.h"

/* The plan part with "model" and "cluster" pointing at the written files;
 * NULL when the part is not a JSON object. */
static char *plan_text(const uint8_t *part, size_t size, const char *model_path, const char *cluster_path) {
    char *text = fuzz_text(part, size);
    if (!text) return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return NULL; }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "model");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "cluster");
    char *out = NULL;
    if (cJSON_AddStringToObject(root, "model", model_path) && cJSON_AddStringToObject(root, "cluster", cluster_path))
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static void check_result(const Plan *p, const SimResult *r) {
    fuzz_check(isfinite(r->step_time_s) && r->step_time_s > 0, "step time finite and positive");
    fuzz_check(isfinite(r->mfu) && r->mfu >= 0, "MFU finite, >= 0");
    fuzz_check(isfinite(r->mfu_legacy) && isfinite(r->mfu_megatron), "both MFUs finite");
    fuzz_check(isfinite(r->tokens_per_s_per_gpu) && r->tokens_per_s_per_gpu > 0, "tokens/s finite and positive");
    fuzz_check(isfinite(r->peak_memory_bytes) && r->peak_memory_bytes > 0, "peak memory finite and positive");
    fuzz_check(r->num_stages >= 1 && r->num_stages <= SIM_MAX_STAGES, "stage count in bounds");
    fuzz_check(r->critical_stage >= 0 && r->critical_stage < p->map.pp, "critical stage is a stage");
    fuzz_check(memchr(r->dominant, 0, sizeof r->dominant) != NULL, "dominant cost text terminated");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[4];
    size_t len[4];
    if (!data) return 0;
    int n = fuzz_split(data, size, part, len, 4);
    if (n < 3) return 0;
    char model_path[512], cluster_path[512], cal_path[512];
    if (fuzz_write_file("model.json", part[0], len[0], model_path, sizeof model_path) ||
        fuzz_write_file("cluster.json", part[1], len[1], cluster_path, sizeof cluster_path))
        return 0;
    char *text = plan_text(part[2], len[2], model_path, cluster_path);
    Plan *p = malloc(sizeof *p);
    SimResult *r = malloc(sizeof *r);
    Calibration *cal = NULL;
    if (!text) fuzz_note("skipped", "the plan part is not a JSON object");
    if (!text || !p || !r) goto done;
    if (n == 4 && len[3] > 0) {
        cal = malloc(sizeof *cal);
        MpError err;
        if (!cal || fuzz_write_file("calibration.json", part[3], len[3], cal_path, sizeof cal_path) ||
            calibration_load_file(cal_path, cal, &err)) {
            fuzz_note("calibration refused", cal ? err.msg : "out of memory");
            goto done;
        }
    }
    MpError err = {{0}};
    if (plan_from_json_text(text, "fuzz/plan.json", p, &err)) {
        fuzz_note("plan refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused plan has a message");
        goto done;
    }
    SimOptions opt = {.timeline_path = NULL};
    if (simulate_step(p, cal, &opt, r, &err) == 0) {
        fuzz_note("simulated", r->dominant);
        check_result(p, r);
    } else {
        fuzz_note("simulation refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused simulation has a message");
    }
    char *flags = emit_megatron_flags(p);
    fuzz_check(flags != NULL, "Megatron flags emitted");
    fuzz_check(strstr(flags, "--tensor-model-parallel-size") != NULL, "flags name the TP size");
    free(flags);
    char *json = plan_to_json_string(p);
    fuzz_check(json != NULL, "plan JSON emitted");
    free(json);
done:
    free(cal);
    free(r);
    free(p);
    free(text);
    return 0;
}
