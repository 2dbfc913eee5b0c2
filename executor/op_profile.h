/* op_profile.h: time per backend operation, for finding where a step goes.
 *
 * With `moeplan execute --op-profile FILE` the CUDA backend brackets every
 * kernel-launching operation with a CUDA event pair on the compute stream
 * and, once per step (when step_times has synchronised), adds the elapsed
 * time to the row of (phase open at the call, operation name).  GEMMs and
 * attention also add their FLOPs, memory-bound operations the bytes they
 * must move, so a row gives an achieved TFLOP/s or GB/s to hold against the
 * GPU's best (the roofline of issue 18).  The events cost a few microseconds
 * of host time per operation: a profiled step is slower than an unprofiled
 * one, and its step time is not the one to report.
 *
 * Collectives run on the communication stream and are not bracketed (their
 * time is in the phase table); an operation that fails before it ends leaves
 * no row.
 */
#ifndef MOEPLAN_EXECUTOR_OP_PROFILE_H
#define MOEPLAN_EXECUTOR_OP_PROFILE_H

#include <stdio.h>

typedef struct {
    int phase;          /* StepPhase (backend.h) innermost open at the call; -1 none */
    const char *op;     /* the operation's name: a string with static lifetime */
    long calls;
    double seconds;     /* GPU time (events), summed over calls */
    double host_seconds;  /* host wall time inside the calls (launch, waits), summed */
    double flops;       /* summed; 0: not counted */
    double bytes;       /* summed minimum HBM traffic; 0: not counted */
} OpProfileRow;

typedef struct OpProfile {
    OpProfileRow *row;
    int n, cap;
    int steps;          /* steps accumulated since the last reset */
} OpProfile;

/* One call of `op` under `phase`.  Returns 0, or -1 when out of memory. */
int op_profile_add(OpProfile *p, int phase, const char *op, double seconds, double host_seconds,
                   double flops, double bytes);
/* Forget every row (after the warm-up steps). */
void op_profile_reset(OpProfile *p);
void op_profile_free(OpProfile *p);
/* Rows by time, longest first (ties: phase, then name). */
void op_profile_sort(OpProfile *p);
/* Sum of the rows' seconds. */
double op_profile_seconds(const OpProfile *p);

/* The name of a phase as the result JSON's phases_s spells it
 * ("attention", "moe_compute", ...; "none" for -1, "?" out of range). */
const char *op_profile_phase_name(int phase);

/* A table, per step (the sums divided by p->steps), longest first: phase,
 * operation, calls, ms, share of the step `step_s` (seconds, median), and
 * the achieved TFLOP/s or GB/s where counted.  Sorts p. */
void op_profile_print(FILE *f, OpProfile *p, double step_s);

/* The same as a JSON document {"steps", "step_time_s", "ops": [{"phase",
 * "op", "calls_per_step", "seconds_per_step", "flops_per_step",
 * "bytes_per_step", "tflops", "gb_per_s", "host_seconds_per_step"}]} (null where not counted);
 * malloc'ed, NULL when out of memory.  Sorts p. */
char *op_profile_to_json(OpProfile *p, double step_s, const char *device);

#endif
