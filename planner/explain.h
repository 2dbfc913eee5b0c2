/* explain.h: why one plan beats another, term by term.  The simulator's
 * breakdown (SimBreakdown, seconds of the critical stage) adds up to the
 * step time, so the gap between two plans is the sum of the per-term
 * differences; the terms that decide it are the largest differences in the
 * loser's disfavour, taken until they cover the gap. */
#ifndef MOEPLAN_EXPLAIN_H
#define MOEPLAN_EXPLAIN_H

/* faster[n], slower[n]: seconds per term.  Writes into idx (at most max)
 * the indices of the terms where slower exceeds faster, the largest excess
 * first, stopping as soon as their excesses add up to the whole gap
 * sum(slower) - sum(faster) (or at max); excesses under 1% of the gap are
 * never taken.  Returns the count (0 when slower is not slower). */
int explain_deciding_terms(const double *faster, const double *slower, int n, int *idx, int max);

#endif
