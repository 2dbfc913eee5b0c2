/* phase_clock.c: exclusive per-phase time with nesting (phase_clock.h). */
#include "executor/phase_clock.h"

#include <string.h>

void phase_clock_reset(PhaseClock *c) { memset(c, 0, sizeof *c); }

/* charges [mark, now) to the innermost open phase */
static void charge(PhaseClock *c, double now) {
    if (c->depth > 0) {
        int p = c->stack[c->depth - 1];
        if (p >= 0 && p < PHASE_CLOCK_MAX_PHASES && now > c->mark) c->acc[p] += now - c->mark;
    }
    c->mark = now;
}

void phase_clock_begin(PhaseClock *c, int phase, double now) {
    if (c->depth == PHASE_CLOCK_MAX_DEPTH) { c->overflow++; return; }
    charge(c, now);
    c->stack[c->depth++] = phase;
}

void phase_clock_end(PhaseClock *c, int phase, double now) {
    if (c->overflow > 0) { c->overflow--; return; }
    int at = c->depth - 1;
    while (at >= 0 && c->stack[at] != phase) at--;
    if (at < 0) { c->unmatched++; return; }
    charge(c, now);
    c->depth = at;   /* closes `phase` and anything left open inside it */
}

void phase_clock_collect(PhaseClock *c, double now, double *out, int n) {
    charge(c, now);
    for (int p = 0; p < n && p < PHASE_CLOCK_MAX_PHASES; p++) {
        out[p] += c->acc[p];
        c->acc[p] = 0;
    }
}
