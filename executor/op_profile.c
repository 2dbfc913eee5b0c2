/* op_profile.c: the table behind op_profile.h. */
#include "executor/op_profile.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "executor/backend.h"

int op_profile_add(OpProfile *p, int phase, const char *op, double seconds, double host_seconds,
                   double flops, double bytes)
{
    for (int i = 0; i < p->n; i++) {
        OpProfileRow *r = &p->row[i];
        if (r->phase == phase && strcmp(r->op, op) == 0) {
            r->calls++;
            r->seconds += seconds;
            r->host_seconds += host_seconds;
            r->flops += flops;
            r->bytes += bytes;
            return 0;
        }
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        OpProfileRow *row = realloc(p->row, sizeof *row * (size_t)cap);
        if (!row) return -1;
        p->row = row;
        p->cap = cap;
    }
    p->row[p->n++] = (OpProfileRow){phase, op, 1, seconds, host_seconds, flops, bytes};
    return 0;
}

void op_profile_reset(OpProfile *p)
{
    p->n = 0;
    p->steps = 0;
}

void op_profile_free(OpProfile *p)
{
    free(p->row);
    memset(p, 0, sizeof *p);
}

static int by_time(const void *a, const void *b)
{
    const OpProfileRow *x = a, *y = b;
    if (x->seconds != y->seconds) return x->seconds > y->seconds ? -1 : 1;
    if (x->phase != y->phase) return x->phase < y->phase ? -1 : 1;
    return strcmp(x->op, y->op);
}

void op_profile_sort(OpProfile *p)
{
    if (p->n > 1) qsort(p->row, (size_t)p->n, sizeof *p->row, by_time);
}

double op_profile_seconds(const OpProfile *p)
{
    double s = 0.0;
    for (int i = 0; i < p->n; i++) s += p->row[i].seconds;
    return s;
}

const char *op_profile_phase_name(int phase)
{
    /* the keys of the result's phases_s (executor/measure.c) */
    static const char *const names[PHASE_COUNT] = {
        [PHASE_ATTENTION] = "attention", [PHASE_MOE_COMPUTE] = "moe_compute",
        [PHASE_DISPATCH_COMM] = "dispatcher_comm", [PHASE_GRAD_SYNC] = "grad_sync",
        [PHASE_OPTIMIZER] = "optimizer", [PHASE_OTHER] = "other", [PHASE_PIPELINE] = "pipeline",
        [PHASE_CP_COMM] = "cp_comm",
    };
    if (phase == -1) return "none";
    if (phase < 0 || phase >= PHASE_COUNT || !names[phase]) return "?";
    return names[phase];
}

void op_profile_print(FILE *f, OpProfile *p, double step_s)
{
    op_profile_sort(p);
    double steps = p->steps > 0 ? p->steps : 1;
    fprintf(f, "\n  operations per step (mean of %d timed steps; CUDA events around each operation; host ms: the\n"
               "  host's time inside the calls, launches and waits)\n", p->steps);
    fprintf(f, "  %-16s %-26s %7s %10s %7s %9s %9s %9s\n", "phase", "operation", "calls", "ms", "share", "TFLOP/s",
            "GB/s", "host ms");
    for (int i = 0; i < p->n; i++) {
        const OpProfileRow *r = &p->row[i];
        char tf[16] = "", gb[16] = "";
        if (r->flops > 0 && r->seconds > 0) snprintf(tf, sizeof tf, "%.1f", r->flops / r->seconds * 1e-12);
        if (r->bytes > 0 && r->seconds > 0) snprintf(gb, sizeof gb, "%.0f", r->bytes / r->seconds * 1e-9);
        fprintf(f, "  %-16s %-26s %7.0f %10.3f %6.1f%% %9s %9s %9.3f\n", op_profile_phase_name(r->phase), r->op,
                r->calls / steps, r->seconds / steps * 1e3, step_s > 0 ? 100.0 * r->seconds / steps / step_s : 0.0,
                tf, gb, r->host_seconds / steps * 1e3);
    }
    double sum = op_profile_seconds(p) / steps, host = 0.0;
    for (int i = 0; i < p->n; i++) host += p->row[i].host_seconds / steps;
    fprintf(f, "  %-16s %-26s %7s %10.3f %6.1f%% %9s %9s %9.3f\n", "", "sum of the operations", "", sum * 1e3,
            step_s > 0 ? 100.0 * sum / step_s : 0.0, "", "", host * 1e3);
}

char *op_profile_to_json(OpProfile *p, double step_s, const char *device)
{
    op_profile_sort(p);
    double steps = p->steps > 0 ? p->steps : 1;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "device", device ? device : "");
    cJSON_AddNumberToObject(root, "steps", p->steps);
    cJSON_AddNumberToObject(root, "step_time_s", step_s);
    cJSON *ops = cJSON_AddArrayToObject(root, "ops");
    for (int i = 0; ops && i < p->n; i++) {
        const OpProfileRow *r = &p->row[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "phase", op_profile_phase_name(r->phase));
        cJSON_AddStringToObject(o, "op", r->op);
        cJSON_AddNumberToObject(o, "calls_per_step", r->calls / steps);
        cJSON_AddNumberToObject(o, "seconds_per_step", r->seconds / steps);
        cJSON_AddNumberToObject(o, "host_seconds_per_step", r->host_seconds / steps);
        if (r->flops > 0) cJSON_AddNumberToObject(o, "flops_per_step", r->flops / steps);
        else cJSON_AddNullToObject(o, "flops_per_step");
        if (r->bytes > 0) cJSON_AddNumberToObject(o, "bytes_per_step", r->bytes / steps);
        else cJSON_AddNullToObject(o, "bytes_per_step");
        if (r->flops > 0 && r->seconds > 0) cJSON_AddNumberToObject(o, "tflops", r->flops / r->seconds * 1e-12);
        else cJSON_AddNullToObject(o, "tflops");
        if (r->bytes > 0 && r->seconds > 0) cJSON_AddNumberToObject(o, "gb_per_s", r->bytes / r->seconds * 1e-9);
        else cJSON_AddNullToObject(o, "gb_per_s");
        cJSON_AddItemToArray(ops, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
