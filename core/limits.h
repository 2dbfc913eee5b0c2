/* limits.h: the largest inputs moeplan supports, each with its reason.
 * Checked up front by the loaders and the option parsers (one line naming
 * the field, the value and the limit), so no later product of these fields
 * can overflow and no search runs for hours on an impossible size. */
#ifndef MOEPLAN_LIMITS_H
#define MOEPLAN_LIMITS_H

/* GPUs in one job: 2^20 = 1,048,576.  The largest training clusters built
 * are ~10^5 GPUs; 2^20 leaves 10x room while any product of three mapping
 * sizes (<= 2^60) fits in 64 bits and every rank fits in an int. */
#define MP_MAX_GPUS (1 << 20)

/* Transformer layers: 1024.  The deepest published LLMs have < 200 layers
 * (Llama 3 405B: 126); the simulator's per-stage tables (SIM_MAX_STAGES)
 * and the search's pipeline splits are sized for this. */
#define MP_MAX_LAYERS 1024

/* Virtual pipeline stages per rank: each holds at least one layer. */
#define MP_MAX_VPP MP_MAX_LAYERS

/* Ranks started by `execute` on one machine: 1024.  One process per GPU;
 * the largest single hosts have 8-72 GPUs (and the CPU backend runs ranks
 * as processes, so more would only exhaust the process table). */
#define MP_MAX_NPROC 1024

/* Sequences in a global batch: 2^24.  Published batches are 1,000 to
 * 16,000 sequences (Llama 3: 16M tokens of 8k); with seq <= 2^24 every
 * token count stays exact in a double. */
#define MP_MAX_GBS (1 << 24)

#endif
