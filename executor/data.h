/* data.h: the token stream the executor trains on.
 *
 * Synthetic (default): a learnable task, deterministic from the seed.
 *   Sequence i starts with a token drawn from hash(seed, i); every next
 *   token is a fixed function of the previous one,
 *       x[t+1] = (5 * x[t] + 3) mod V,
 *   so the loss of a model that learns the map falls towards 0 (it starts
 *   near ln V).
 * File (--data FILE): raw token ids, little-endian unsigned integers of 16
 *   or 32 bits, no header; the file is one stream, sequence i is
 *   inputs  = ids[p .. p+s),  targets = ids[p+1 .. p+s+1),
 *   p = (i * s) mod (n - s)   (n ids in the file; needs n >= s + 1).
 *   Every id must be < V.
 * Random (DataSource.random = 1, no file): s + 1 uniformly random ids per
 *   sequence from hash(seed, i, t); inputs = ids[0 .. s), targets =
 *   ids[1 .. s+1).  Not learnable: for timing (METHOD.md), the router sees
 *   no structure to specialise on.
 * Sequence i of step n, data-parallel rank r, micro-batch m, row j is
 *   i = n*B + m*(DP*b) + r*b + j, so every mapping sees the same global batch.
 */
#ifndef MOEPLAN_EXECUTOR_DATA_H
#define MOEPLAN_EXECUTOR_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    int vocab, seq;
    uint64_t seed;
    uint32_t *ids;      /* file ids (NULL: synthetic) */
    size_t n;           /* ids in the file */
    int random;         /* 1: uniformly random ids (synthetic mode only) */
} DataSource;

/* path NULL: synthetic.  bits: 16 or 32.  err: "FILE: field: reason". */
int data_open(DataSource *d, const char *path, int bits, int vocab, int seq, uint64_t seed,
              MpError *err);
void data_close(DataSource *d);

/* inputs [seq], targets [seq] of sequence `index` of the stream */
void data_sequence(const DataSource *d, uint64_t index, int32_t *inputs, int32_t *targets);

/* the synthetic task's next-token map */
static inline int32_t data_synthetic_next(int32_t x, int vocab)
{
    return (int32_t)((5 * (int64_t)x + 3) % vocab);
}

#endif
