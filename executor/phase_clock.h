/* phase_clock.h: the time of each phase of a step when phases nest.
 *
 * Time is charged to the innermost open phase only (exclusive time), so the
 * phases partition the time they cover and their sum never exceeds the
 * wall time: begin(B) inside A pauses A; end(B) resumes it.  The same phase
 * may nest in itself (its time is counted once).  An end that does not
 * match the innermost phase closes every phase opened inside the one named
 * (an end for a phase that is not open is counted in `unmatched` and
 * ignored).  Times are given by the caller (seconds), so that a backend may
 * use its own clock and tests may use exact values.
 */
#ifndef MOEPLAN_EXECUTOR_PHASE_CLOCK_H
#define MOEPLAN_EXECUTOR_PHASE_CLOCK_H

#define PHASE_CLOCK_MAX_PHASES 16
#define PHASE_CLOCK_MAX_DEPTH 16

typedef struct {
    int stack[PHASE_CLOCK_MAX_DEPTH];
    int depth;
    int overflow;          /* begins beyond the maximum depth (ignored, as are their ends) */
    int unmatched;         /* ends of phases that were not open */
    double mark;           /* seconds: the last transition */
    double acc[PHASE_CLOCK_MAX_PHASES];   /* seconds per phase since the last collect */
} PhaseClock;

void phase_clock_reset(PhaseClock *c);
void phase_clock_begin(PhaseClock *c, int phase, double now);
void phase_clock_end(PhaseClock *c, int phase, double now);
/* out[p] += the time of phase p (p < n) since the last collect, then zero it.
 * Open phases are charged up to now and stay open. */
void phase_clock_collect(PhaseClock *c, double now, double *out, int n);

#endif
