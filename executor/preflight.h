/* preflight.h: everything `moeplan execute` checks before it launches a
 * rank, so that bad input is one line and exit status 2 from the process the
 * user started, never an error inside every rank with MPI banners.
 *
 *   preflight_plan      the plan fields the training step implements; a field
 *                       that a flag or the plan file asks for and the step
 *                       does not implement is refused; a default of
 *                       `simulate` that the step does not implement is
 *                       replaced by what it does (a note says so)
 *   preflight_model     the model features the step implements
 *   preflight_data_file --data: a regular file of whole token ids, enough of
 *                       them for one sequence, every id below the vocabulary
 *   preflight_output_path  an output file (--out) can be written: its
 *                       directory exists and is writable, and the target is
 *                       absent or a regular file (never a device, FIFO or
 *                       directory that the rename would replace)
 *   preflight_cpu_memory   host memory of one CPU-backend rank (estimate)
 *   preflight_mem_available  MemAvailable of /proc/meminfo
 *
 * The step (executor/model.c, train.c) implements, today: TP = CP = PP =
 * VPP = 1 with any DP, EP and ETP; BF16 on CUDA (FP32 on the CPU backend);
 * the all-to-all dispatcher, dropless or with a capacity factor; no
 * recomputation; a replicated optimizer (gradients all-reduced, Adam on
 * every rank); of the overlap words, p2p and cp (on unless --overlap or
 * the plan file says otherwise).
 */
#ifndef MOEPLAN_EXECUTOR_PREFLIGHT_H
#define MOEPLAN_EXECUTOR_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/plan.h"

/* Which plan fields the user asked for explicitly (a flag, or a key of the
 * plan file), as opposed to TrainConfig defaults. */
typedef struct {
    bool precision, dispatcher, recompute, optimizer_sharding, overlap;
} PlanRequested;

#define PREFLIGHT_MAX_NOTES 4

/* Lines for stderr: the defaults replaced by what the step implements. */
typedef struct {
    int count;
    char line[PREFLIGHT_MAX_NOTES][256];
} PreflightNotes;

/* Checks p against what the step implements (see above); replaces
 * unimplemented defaults in p (notes say which).  err: "FIELD: value: reason"
 * naming the plan-file key (the flag is --KEY with '_' as '-'). */
int preflight_plan(Plan *p, const PlanRequested *req, PreflightNotes *notes, MpError *err);

/* The model features the step implements: MoE with a softmax router,
 * SwiGLU MLPs, MHA/GQA attention with an even head dimension; no MLA, no
 * sliding window, no MTP layers, no QKV bias; at most 256 experts. */
int preflight_model(const ModelSpec *m, MpError *err);

/* --data PATH with ids of `bits` (16/32) bits.  err: "PATH: --data: reason". */
int preflight_data_file(const char *path, int bits, int vocab, int seq, size_t *num_ids, MpError *err);

/* An output file named by `flag` (e.g. "--out").  err: "PATH: FLAG: reason". */
int preflight_output_path(const char *path, const char *flag, MpError *err);

/* Host memory of one rank of the CPU backend (float32 everywhere), bytes. */
typedef struct {
    double params;        /* master weights (= the working copy), gradients, two Adam moments */
    double activations;   /* saved per layer and micro-batch, plus the shared temporaries */
    double data;          /* the --data token ids (uint32 each) */
    double base;          /* the process itself: MPI, libraries */
    double total;
} CpuMemoryEstimate;

void preflight_cpu_memory(const Plan *p, int layers, size_t data_ids, CpuMemoryEstimate *out);

/* MemAvailable from the text of /proc/meminfo, bytes; -1 when absent. */
int preflight_mem_available(const char *meminfo_text, double *bytes);

#endif
