/* compare.h: the explanation `search` prints for its winner (cmd_compare.c). */
#ifndef MOEPLAN_COMPARE_H
#define MOEPLAN_COMPARE_H

#include <stdio.h>

#include "planner/search.h"

/* Simulates the winner and the runner-up (candidates of base) and prints one
 * line: the gap and the two or three terms that make it up.  Returns -1
 * (err) when a simulation fails. */
int compare_print_winner(FILE *f, const Plan *base, const ScoredPlan *winner, const ScoredPlan *runner_up,
                         const Calibration *cal, MpError *err);

#endif
