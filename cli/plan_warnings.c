/* plan_warnings.c: see plan_warnings.h. */
#include "plan_warnings.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void add(PlanWarnings *w, const char *fmt, ...) {
    if (w->count >= PLAN_WARNINGS_MAX) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->line[w->count++], PLAN_WARNING_LEN, fmt, ap);
    va_end(ap);
}

/* Case-insensitive search for needle in hay. */
static bool contains_word(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *h = hay; *h; h++)
        if (!strncasecmp(h, needle, n)) return true;
    return false;
}

void plan_warnings_calibration(const Plan *p, const Calibration *cal, PlanWarnings *w) {
    if (!cal) return;
    /* calibration files name their machine "N x GPU NAME, ..." (calibrations/README) */
    char *end;
    long count = strtol(cal->device, &end, 10);
    while (*end == ' ') end++;
    if (count <= 0 || (*end != 'x' && *end != 'X')) return; /* a free-form device: nothing to check */
    end++;
    while (*end == ' ') end++;
    char gpu[64];
    size_t len = strcspn(end, ",");
    snprintf(gpu, sizeof gpu, "%.*s", (int)(len < sizeof gpu ? len : sizeof gpu - 1), end);
    /* the cluster's GPU model: its first word ("H100" of "H100 SXM 80GB") */
    char model[32];
    size_t ml = strcspn(p->cluster.gpu_name, " ");
    snprintf(model, sizeof model, "%.*s", (int)(ml < sizeof model ? ml : sizeof model - 1), p->cluster.gpu_name);
    if (model[0] && !contains_word(gpu, model))
        add(w, "calibration measured on %s GPUs (%s) is applied to %s GPUs of %s: its GEMM and attention rates "
            "are another GPU's", gpu, cal->device, p->cluster.gpu_name, p->cluster.name);
    if (p->map.world > 0 && count != p->map.world)
        add(w, "calibration measured on %ld GPUs is applied to a %d-GPU plan: its collective figures are for "
            "groups of at most %ld GPUs", count, p->map.world, count);
}

void plan_warnings_batch(const Plan *p, PlanWarnings *w) {
    int per_pipe = p->map.dp > 0 && p->train.micro_batch > 0
                       ? p->train.global_batch / (p->train.micro_batch * p->map.dp) : 0;
    if (per_pipe == 1)
        add(w, "global batch %d leaves one micro-batch per pipeline (gbs / (mbs %d x dp %d))%s", p->train.global_batch,
            p->train.micro_batch, p->map.dp,
            p->map.pp > 1 ? ": every pipeline stage idles while the others work; raise --gbs" : "");
    else if (p->map.pp > 1 && per_pipe > 0 && per_pipe < p->map.pp)
        add(w, "global batch %d leaves %d micro-batches per pipeline, fewer than its %d stages: the pipeline "
            "bubble dominates; raise --gbs", p->train.global_batch, per_pipe, p->map.pp);
}
