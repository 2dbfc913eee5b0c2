/* sweep_result.h: `moeplan sweep --json` as a result document
 * (docs/schema/moeplan-result.schema.json, "sweep"): the context of the
 * sweep (model, cluster, batch, sequence; the varied fields null) and, per
 * point, its value (and value2 in a 2-D sweep, else null), the plan and
 * its prediction, or null for both with the reason. */
#ifndef MOEPLAN_SWEEP_RESULT_H
#define MOEPLAN_SWEEP_RESULT_H

#include <cjson/cJSON.h>

#include "planner/sweep.h"
#include "simulator/result_json.h"

/* k2: the second key of a 2-D sweep (--vary2), NULL for a 1-D sweep
 * (parameter2 and unit2 null). */
cJSON *sweep_result_new(const Plan *base, SweepParam k, const SweepParam *k2, bool fixed, long long tokens_per_batch,
                        const char *cal_path, const Calibration *cal);

/* Appends the point pt computed on plan `point` (the base with the value
 * applied).  The best plan (and the best coupled one) is simulated again
 * for its breakdown and memory.  Returns -1 (err) only when that fails. */
int sweep_result_add_point(cJSON *doc, const Plan *point, const SweepPoint *pt, bool fixed, const Calibration *cal,
                           MpError *err);

#endif
