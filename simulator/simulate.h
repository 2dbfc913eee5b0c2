/* simulate.h: the simulator's one entry point: predict one training step of
 * a plan.  The simulator never reads files (loaders build the Plan and the
 * Calibration); it allocates nothing per call on the hot path.
 */
#ifndef MOEPLAN_SIMULATE_H
#define MOEPLAN_SIMULATE_H

#include <stdbool.h>

#include "../core/plan.h"
#include "calibration.h"

#define SIM_MAX_STAGES 1024

/* Where the step's time goes, seconds per step on the slowest pipeline rank
 * (or the rank that sets the step time).  Compute is split by kind; comm_*
 * is communication NOT hidden behind compute. */
typedef struct {
    double compute_attention;   /* QKV/out GEMMs + attention core */
    double compute_moe;         /* router + expert GEMMs + shared expert */
    double compute_dense_mlp;   /* dense-layer MLPs */
    double compute_embed_output;/* embedding, output layer, loss */
    double compute_memory_bound;/* norms, RoPE, SwiGLU, permute/unpermute, softmax/top-k */
    double recompute;           /* extra forward work from recomputation */
    double comm_tp, comm_cp, comm_ep, comm_etp, comm_pp, comm_dp, comm_edp;
    double bubble;              /* pipeline idle time */
    double optimizer;           /* optimizer step */
} SimBreakdown;

/* Bytes per GPU of one pipeline stage.  communication and workspace are 0
 * in simulate_step (Megatron-LM's memory model, simulator/memory.c, has
 * no such term; docs/simulator.md says why); simulate_use_executor_memory
 * fills them with the executor's own buffers. */
typedef struct {
    double weights, gradients, optimizer, activations; /* bytes */
    double communication, workspace;                  /* bytes */
    double total;                                      /* bytes: the sum */
} SimStageMemory;

typedef struct {
    bool fits;                  /* peak memory <= HBM - reserve on every stage */
    double step_time_s;
    double mfu;                 /* under train.flops convention */
    double mfu_legacy, mfu_megatron;
    double tflops_per_gpu;      /* model TFLOP/s per GPU (convention of train.flops) */
    double tokens_per_s_per_gpu;
    double peak_memory_bytes;   /* max over stages */
    double memory_capacity_bytes; /* HBM - reserve */
    int num_stages;
    SimStageMemory stage_memory[SIM_MAX_STAGES];
    SimBreakdown breakdown;
    char dominant[96];          /* largest exposed cost in words, e.g. "ep a2a crosses nodes" */
    int critical_stage;         /* pipeline rank the breakdown describes (the one with the most work) */
} SimResult;

/* One simulated forward or backward of a pipeline rank (seconds from the
 * step's start). */
typedef struct {
    double start, end;
    int microbatch, chunk;
    bool forward;
} SimOpEvent;

typedef struct {
    const char *timeline_path;     /* non-NULL: write a Chrome trace of every stage */
    const char *timeline_png_path; /* non-NULL: draw the timeline of every stage (.png/.svg) */
    /* events non-NULL: the simulated operations of pipeline rank events_rank,
     * in its order (up to max_events; *num_events gets the count) */
    SimOpEvent *events;
    int events_rank, max_events;
    int *num_events;
    /* bytes of an activation / working-weight element in the memory model:
     * 0 or 2 (bf16, the GPU); 4 for an fp32 run (the executor's CPU
     * backend, whose float weights are also the master) */
    int memory_elem_bytes;
} SimOptions;

/* Predicts one step. Returns -1 only for plans that are invalid (err set); a
 * plan that does not fit returns 0 with fits == false and the figures. */
int simulate_step(const Plan *plan, const Calibration *cal, const SimOptions *opt,
                  SimResult *out, MpError *err);

/* Seconds of one micro-batch's forward + backward through each decoder
 * layer (layer_time[0..L-1], L = plan->model.num_layers <= max_layers), and
 * the extras of the first stage (embedding) and the last (output layer and
 * loss), as simulate_step prices them for this plan's mapping and training
 * settings (recomputation, overlap, attention backend, calibration).  The
 * planner's pipeline split (planner/space.c) optimises these.  Needs the
 * mapping's sizes only (batch divisibility is not checked). */
int simulate_layer_times(const Plan *plan, const Calibration *cal, double *layer_time, int max_layers,
                         double *first_extra, double *last_extra, MpError *err);

/* Time of one NCCL collective as the simulator costs it (simulator/comm.c):
 * op "all_gather", "reduce_scatter", "all_reduce", "all_to_all" or
 * "send_recv"; a group of group_size GPUs spread evenly over `nodes` nodes of
 * the cluster; bytes in the nccl-tests convention (all-gather: output buffer,
 * reduce-scatter: input buffer, all-to-all: one rank's send buffer).  cal may
 * be NULL.  Returns -1 with err set for an unknown op or impossible sizes. */
int simulate_collective_time(const Cluster *c, const Calibration *cal, const char *op, int group_size, int nodes,
                             double bytes, double *seconds, MpError *err);

/* The executor's memory inventory (simulator/exec_memory.c): what `moeplan
 * execute` allocates on pipeline rank `stage` for activations,
 * communication buffers and workspaces, buffer by buffer (the balanced
 * dispatcher), for the plan as run (the model already truncated to the run's
 * layers).  be: the backend, which sets the element size (CPU fp32, CUDA
 * bf16) and the scratch (the CPU's fused cross-entropy, the CUDA attention
 * core's own kernel or cuDNN).  Fills activations, communication and
 * workspace (bytes); the rest of out is 0. */
typedef enum {
    SIM_EXEC_CPU = 0,
    SIM_EXEC_CUDA_OWN_ATTENTION,
    SIM_EXEC_CUDA_CUDNN_ATTENTION,
} SimExecBackend;
int simulate_executor_memory(const Plan *plan, SimExecBackend be, int stage, SimStageMemory *out, MpError *err);

/* The prediction beside `execute`: each stage of r (from simulate_step on
 * the same plan) takes the executor's activations, communication buffers
 * and workspaces in place of Megatron's activations; total,
 * peak_memory_bytes and fits follow. */
int simulate_use_executor_memory(const Plan *plan, SimExecBackend be, SimResult *r, MpError *err);

#endif
