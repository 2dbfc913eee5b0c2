/* result_json.h: the pieces of moeplan's one result schema
 * (docs/schema/moeplan-result.schema.json) that simulate, search, sweep and
 * execute share: the document head (schema version, command, context,
 * warnings), a plan, and a prediction.  Units: seconds, bytes, MFU as a
 * fraction (0..1) under both FLOPs conventions; null where a figure does not
 * exist. */
#ifndef MOEPLAN_RESULT_JSON_H
#define MOEPLAN_RESULT_JSON_H

#include <cjson/cJSON.h>

#include "core/plan.h"
#include "simulate.h"

#define RESULT_SCHEMA_VERSION 1

/* {"legacy", "megatron", "convention", "fp8_peak"}: MFU against the BF16
 * dense peak under both conventions, the plan's convention named, and for
 * FP8 plans the convention's MFU against the FP8 dense peak (else null). */
cJSON *result_mfu_json(const Plan *p, double mfu_legacy, double mfu_megatron);

/* The plan's fields as a plan file writes them (plan_to_json_string). */
cJSON *result_plan_json(const Plan *p);

/* A prediction: fits, step_time_s, mfu, tflops_per_gpu,
 * tokens_per_s_per_gpu, peak_memory_bytes, memory_capacity_bytes, dominant,
 * critical_stage, breakdown_s (the simulator's terms, seconds, of the
 * critical stage) and stage_memory_bytes (per pipeline stage).
 * with_stages false: stage_memory_bytes is null. */
cJSON *result_prediction_json(const Plan *p, const SimResult *r, bool with_stages);

/* The breakdown terms in a fixed order: name and seconds; returns the count
 * (<= RESULT_MAX_TERMS). */
#define RESULT_MAX_TERMS 16
int result_breakdown_terms(const SimBreakdown *b, const char **names, double *seconds);

/* The head of every result document: {"schema_version", "command",
 * "context": {model, cluster, gpu, gpus, seq, gbs, mbs, precision,
 * flops_convention, calibration}, "warnings": []}.  cal_path may be NULL
 * (then calibration is null).  mbs < 0 writes null (a search picks it). */
cJSON *result_document(const char *command, const Plan *p, int mbs, const char *cal_path, const char *cal_device);

/* Appends a warning line to doc["warnings"]. */
void result_add_warning(cJSON *doc, const char *text);

#endif
