/* measure.h: turns the step statistics of a run into the reported figures
 * (MFU under both FLOPs conventions, TFLOP/s and tokens/s per GPU, time per
 * phase, peak memory), puts the simulator's prediction beside them, prints a
 * table and writes the result JSON atomically.
 *
 * Formulas (design.md section 4; reference/flops-and-memory.md):
 *   FLOPs(conv)        = model_flops(model truncated to the run's L layers,
 *                        conv, seq, tokens of the global step)
 *   MFU(conv)          = FLOPs(conv) / (step time * GPUs * peak dense BF16)
 *   TFLOP/s per GPU    = FLOPs(conv) / step time / GPUs / 1e12
 *   tokens/s per GPU   = tokens of the step / step time / GPUs
 * The step time and each phase are the medians over the timed steps
 * (warm-up excluded) of the slowest rank (max over ranks of each median);
 * peak memory is the max over ranks.
 */
#ifndef MOEPLAN_EXECUTOR_MEASURE_H
#define MOEPLAN_EXECUTOR_MEASURE_H

#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"
#include "core/plan.h"
#include "executor/executor.h"
#include "simulator/simulate.h"

typedef struct {
    bool fits;
    double step_time_s;
    double mfu_legacy, mfu_megatron;
    double tflops_per_gpu;          /* convention of the plan's train.flops */
    double tokens_per_s_per_gpu;
    double peak_memory_bytes, memory_capacity_bytes;
    /* the simulator's breakdown folded into the executor's phases, seconds */
    ExecPhases phases;
    char dominant[96];
    SimBreakdown breakdown;         /* the simulator's terms, seconds (critical stage) */
    /* the memory model's bytes on the stage with the most (weights,
     * gradients, optimizer, activations; communication buffers and
     * workspaces: not modelled, 0) */
    double mem_total, mem_bytes[EXEC_MEM_CATEGORIES];
    int critical_stage;
} MeasurePrediction;

typedef struct {
    /* the run */
    char backend[8];                /* "cuda" / "cpu" */
    char attention[48];             /* GPU attention that ran ("cudnn 9.19.0", "own"); "" on CPU */
    char expert_gemm[48];           /* how the expert GEMMs ran ("cublas loop", ...); "" on CPU */
    long dispatches, padded_dispatches;   /* rank 0's MoE dispatch plans, and of them padded */
    char launcher[16];              /* launch_source_name */
    char device[64];                /* GPU name or "cpu" */
    int world, layers, steps, warmup, steps_timed;
    double tokens_per_step;         /* global */
    /* the run's training settings, as used (cli/cmd_execute.c fills them) */
    unsigned long long seed;
    double lr;                      /* Adam's learning rate */
    double aux_loss_coeff;          /* load-balancing loss coefficient in use, 0 = off */
    char act_dtype[8];              /* activations and working weights: "bf16" (CUDA) or "fp32" (CPU) */
    char data[256];                 /* "synthetic", "random" or the --data path */
    bool op_profile;                /* every operation was timed (--op-profile): a slower step */
    /* measured */
    ExecPhases phases;              /* seconds; phases.step = step time */
    double flops_legacy, flops_megatron;      /* model FLOPs of one step, whole job */
    double mfu_legacy, mfu_megatron;
    double tflops_legacy_per_gpu, tflops_megatron_per_gpu;
    double tokens_per_s_per_gpu;
    double peak_memory_bytes;
    /* the backend's own accounting (ExecStepStats.mem_*): each the largest over the ranks */
    double mem_peak_bytes, mem_bytes[EXEC_MEM_CATEGORIES];
    double loss_first, loss_last;
    /* derived per GPU (measure_rates; 0 when not applicable) */
    double a2a_bytes_per_gpu;       /* bytes one GPU sends in the dispatcher's all-to-alls per step */
    double a2a_busbw;               /* bytes/s: a2a_bytes * (EP-1)/EP / dispatcher time */
    double expert_tflops;           /* expert GEMM FLOPs per GPU / MoE compute time, TFLOP/s */
    double attention_tflops;        /* attention FLOPs per GPU / attention time, TFLOP/s */
    const double *losses;           /* [steps] (borrowed) or NULL */
    /* predicted (simulate_step on the same plan and hardware) */
    bool have_prediction;
    MeasurePrediction predicted;
    /* predicted with a calibration file (execute --calibration) */
    bool have_calibrated;
    MeasurePrediction calibrated;
    char calibration_path[256], calibration_device[64];
} Measurement;

/* The model of the run: a copy of plan->model with num_layers = layers
 * (0 = all) and the dense-layer count capped at it. */
void measure_truncated_model(const ModelSpec *full, int layers, ModelSpec *out);

/* Median of v[n] (sorts v). */
double measure_median(double *v, int n);

/* Fills m from the stats (already reduced over ranks) of a run of the plan
 * with `layers` layers on `world` GPUs; pred may be NULL. */
void measure_compute(const Plan *plan, int layers, int world, const ExecStepStats *stats,
                     const SimResult *pred, Measurement *m);

/* Adds the prediction made with a calibration file (path and the file's
 * "device" are recorded beside it). */
void measure_add_calibrated(Measurement *m, const SimResult *pred, const char *path, const char *device);

/* Fills the derived rates of m (after measure_compute), balanced routing:
 *   T  = mbs * seq / (TP * CP)        tokens of one rank in one micro-batch
 *   mb = gbs / (mbs * DP)             micro-batches per rank per step
 *   L, Lm: layers, MoE layers of one pipeline stage (total / PP)
 *   a2a bytes per GPU = 4 * Lm * mb * T * k * h * act_bytes
 *       (dispatch and combine, forward and backward: four all-to-alls of
 *       the T*k routed rows per MoE layer and micro-batch)
 *   a2a busbw = a2a bytes * (EP-1)/EP / dispatcher time  (only EP-1 of EP
 *       chunks leave the GPU: the nccl-tests all-to-all convention)
 *   expert FLOPs per GPU = 18 * h * Fe * k * T * Lm * mb / ETP
 *       (three SwiGLU matrices, forward + two backward GEMMs, 2 FLOPs per
 *       multiply-add; the routed rows average T*k per GPU)
 *   attention FLOPs per GPU = 12 * L * T * (h*n*d + h*g*d + s*n*d/2) * mb / TP
 *       (megatron convention: QKV and output projections, causal core) */
void measure_rates(const Plan *plan, int layers, int act_bytes, Measurement *m);

/* The simulator's result as a MeasurePrediction (phases mapped:
 * attention <- compute_attention, moe <- compute_moe + compute_memory_bound
 * + compute_dense_mlp, dispatcher <- comm_ep + comm_etp, grad sync <-
 * comm_dp + comm_edp, optimizer <- optimizer, pipeline <- comm_pp + bubble,
 * other <- the rest). */
void measure_prediction(const SimResult *r, MeasurePrediction *out);

/* Readable table (for rank 0). */
void measure_print(FILE *f, const Plan *plan, const Measurement *m);

/* Pipeline plans: the forwards and backwards of pipeline stage `stage` in
 * the last measured step (host times from the step's start) beside the
 * simulator's for stage 0 (sim may be NULL), in ms. */
void measure_print_pipeline(FILE *f, int stage, const ExecOpTime *ops, int n, const SimOpEvent *sim, int nsim);

/* The result as JSON text (caller frees).  "plan" holds every plan field
 * under the plan file's name (plan_to_json_string: the plan that ran, after
 * execute replaced the defaults the step does not implement), "run" the
 * launch and the training settings (seed, lr, aux_loss_coeff, data). */
char *measure_to_json(const Plan *plan, const Measurement *m);

/* Writes text and a newline to path through core/outfile.h (a unique
 * temporary beside it, checked, renamed; non-regular targets refused): a failure leaves no
 * file (and no partial one).  err: "PATH: reason". */
int measure_write_atomic(const char *path, const char *text, MpError *err);

#endif
