/* pipeline_split.h: uneven split of a model's layers over pipeline stages,
 * chosen by an integer program solved with GLPK.
 *
 * Megatron-LM can give the first and the last pipeline stage their own layer
 * counts (--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers);
 * the stages in between hold equal counts.  Stage 0 also runs the embedding,
 * the last stage the output layer and the loss, and dense layers cost
 * differently from MoE layers, so an even split leaves the slowest stage
 * slower than it needs to be.  The program picks the split that minimises the
 * slowest stage's time under each stage's memory capacity.
 */
#ifndef MOEPLAN_PIPELINE_SPLIT_H
#define MOEPLAN_PIPELINE_SPLIT_H

#include "../core/error.h"

#define PIPE_SPLIT_MAX_LAYERS 256
#define PIPE_SPLIT_MAX_STAGES 64

typedef struct {
    int layers;                 /* L decoder layers, in model order */
    int stages;                 /* PP >= 2 */
    const double *layer_time;   /* [L] seconds (or any common unit): fwd+bwd of layer i */
    const double *layer_memory; /* [L] bytes layer i needs on a stage, excluding
                                   activations of in-flight micro-batches; NULL = 0 */
    const double *layer_activation; /* [L] bytes of activations of one micro-batch; NULL = 0 */
    const double *stage_inflight;   /* [PP] in-flight micro-batches of stage s (1F1B: PP - s); NULL = 1 */
    double first_extra_time;    /* embedding on stage 0 */
    double last_extra_time;     /* output layer + loss on the last stage */
    double first_extra_memory;  /* embedding weights/state on stage 0 (bytes) */
    double last_extra_memory;   /* output layer weights/state + logits on the last stage */
    double stage_capacity;      /* bytes available per stage; <= 0: no memory limit */
    int min_layers_per_stage;   /* >= 1 (Megatron needs at least one layer per stage) */
} PipeSplitProblem;

typedef struct {
    int first;                  /* layers on stage 0 */
    int middle;                 /* layers on each of stages 1..PP-2 (0 when PP == 2) */
    int last;                   /* layers on stage PP-1 */
    double slowest_stage_time;  /* objective: max over stages of its time */
} PipeSplit;

/* Time of the slowest stage and whether every stage fits, for a given split
 * (first + (PP-2)*middle + last == L).  Shared by the solver's check and the
 * brute force in the tests. */
double pipe_split_eval(const PipeSplitProblem *p, int first, int middle, int last, int *fits);

/* Solves the integer program with GLPK (terminal output silenced).
 * Returns -1 with err set when the problem is malformed or infeasible. */
int pipe_split_solve(const PipeSplitProblem *p, PipeSplit *out, MpError *err);

/* Exhaustive search over (first, middle); the reference for tests and the
 * fallback for tiny problems. */
int pipe_split_brute_force(const PipeSplitProblem *p, PipeSplit *out, MpError *err);

#endif
