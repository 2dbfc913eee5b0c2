/* explain.c: see explain.h. */
#include "explain.h"

#include <stdbool.h>

int explain_deciding_terms(const double *faster, const double *slower, int n, int *idx, int max) {
    double gap = 0;
    for (int i = 0; i < n; i++) gap += slower[i] - faster[i];
    if (gap <= 0) return 0;
    int count = 0;
    double covered = 0;
    /* selection of the largest remaining excess: n is ~15 terms */
    while (count < max && covered < gap) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            double d = slower[i] - faster[i];
            bool taken = false;
            for (int j = 0; j < count; j++) taken |= idx[j] == i;
            /* an excess under 1% of the gap decides nothing (rounding of the other terms) */
            if (!taken && d > 0.01 * gap && (best < 0 || d > slower[best] - faster[best])) best = i;
        }
        if (best < 0) break;
        idx[count++] = best;
        covered += slower[best] - faster[best];
    }
    return count;
}
