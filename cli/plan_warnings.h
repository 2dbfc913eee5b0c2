/* plan_warnings.h: what a user should know about a plan's context, printed
 * on stderr ("moeplan CMD: warning: ...") and listed under "warnings" in the
 * result JSON: a calibration measured on another GPU or GPU count, and a
 * global batch that leaves one micro-batch per pipeline (or fewer
 * micro-batches than stages, so the bubble dominates). */
#ifndef MOEPLAN_PLAN_WARNINGS_H
#define MOEPLAN_PLAN_WARNINGS_H

#include "core/plan.h"
#include "simulator/calibration.h"

#define PLAN_WARNINGS_MAX 4
#define PLAN_WARNING_LEN 320

typedef struct {
    int count;
    char line[PLAN_WARNINGS_MAX][PLAN_WARNING_LEN];
} PlanWarnings;

/* The calibration warnings (cal may be NULL) for plan p. */
void plan_warnings_calibration(const Plan *p, const Calibration *cal, PlanWarnings *w);

/* The batch warnings for a resolved plan (dp known). */
void plan_warnings_batch(const Plan *p, PlanWarnings *w);

#endif
