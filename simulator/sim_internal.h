/* sim_internal.h: types shared by the simulator's cost files (not part of
 * the public interface; simulate.h is).
 *
 * Every cost term returns seconds for one GPU.  A "phase" is the ordered
 * list of kernels/collectives of one forward or backward pass of one block
 * (attention, MoE, dense MLP, embedding, output) for one micro-batch; its
 * total is the time that pass occupies the GPU's stream, exposed
 * communication included.
 */
#ifndef MOEPLAN_SIM_INTERNAL_H
#define MOEPLAN_SIM_INTERNAL_H

#include <stdbool.h>

#include "../core/layout.h"
#include "../core/mapping.h"
#include "simulate.h"

/* Cost categories; they map one-to-one onto SimBreakdown fields. */
typedef enum {
    COST_ATTENTION = 0,  /* QKV/out GEMMs + attention core */
    COST_MOE,            /* router + expert GEMMs + shared expert */
    COST_DENSE_MLP,
    COST_EMBED_OUTPUT,
    COST_MEMORY_BOUND,
    COST_RECOMPUTE,
    COST_TP, COST_CP, COST_EP, COST_ETP, COST_PP, COST_DP, COST_EDP,
    COST_BUBBLE, COST_OPTIMIZER,
    COST_KIND_COUNT
} CostKind;

#define PHASE_MAX_SEGS 40

typedef struct {
    const char *name;    /* kernel or collective, for the timeline */
    CostKind kind;
    double t;            /* seconds */
} PhaseSeg;

typedef struct {
    int n;
    PhaseSeg seg[PHASE_MAX_SEGS];
    double by_kind[COST_KIND_COUNT];
    double total;        /* seconds */
} Phase;

void phase_clear(Phase *p);
void phase_add(Phase *p, const char *name, CostKind kind, double t);
/* dst += scale * src (segments appended while room remains; totals exact) */
void phase_append(Phase *dst, const Phase *src, double scale, CostKind force_kind, bool force);

#define ATTN_MAX_RATES 64   /* entries of attention.c's rate tables */

/* Hardware as the cost terms see it, derived once per simulate_step. */
typedef struct {
    const Cluster *c;
    const Calibration *cal;   /* NULL: defaults */
    double peak_gemm;         /* FLOP/s dense, bf16 or fp8 per precision */
    double peak_bf16;         /* FLOP/s dense bf16 (attention core, MFU) */
    double hbm_bw;            /* bytes/s achievable */
    int sms;                  /* streaming multiprocessors */
    int domain;               /* GPUs per NVLink domain (placement unit) */
    double nvlink_busbw;      /* bytes/s achievable NCCL busbw in the domain */
    double nvlink_latency;    /* s */
    double nic_busbw_per_gpu; /* bytes/s achievable network per GPU (NICs per GPU x NIC busbw) */
    double net_latency;       /* s per hop */
    /* measured/model ratios of the calibration's entries, computed once per
     * step (compute_calibration_init, comm_calibration_init) so the cost
     * terms only search for the nearest entry */
    double cal_gemm_ratio[CAL_MAX_GEMMS];          /* time */
    double cal_attn_ratio[2][CAL_MAX_ATTENTION];   /* [forward, backward] efficiency; 0 = not this backend */
    /* attention backend and its rate table's fitted curve (attention.c) */
    AttnBackend attn_backend;                      /* never AUTO */
    double attn_emax[2], attn_l0[2];               /* [forward, backward] */
    double attn_rate_ratio[2][ATTN_MAX_RATES];     /* table entry measured / fitted; 0 = other backend */
    double attn_rate_log[ATTN_MAX_RATES][4];       /* log q, kv, heads*batch, head dim of this backend's entries */
    double cal_coll_ratio[CAL_MAX_COLL];           /* time */
} SimHw;

/* backend: ATTN_BACKEND_AUTO = the cluster's (cudnn when it names none) */
void sim_hw_init_backend(SimHw *hw, const Cluster *c, const Calibration *cal, bool fp8, AttnBackend backend);
/* sim_hw_init_backend with the cluster's attention backend */
void sim_hw_init(SimHw *hw, const Cluster *c, const Calibration *cal, bool fp8);

/* ---- attention.c ---- */
/* One flash-attention kernel: rows of one sequence, heads*batch on this GPU. */
typedef struct {
    double q_rows, kv_rows;
    double heads_batch;       /* query heads on this GPU x sequences */
    double d_qk, d_v;         /* head dims */
    AttnMask mask;
    double pairs;             /* (query, key) pairs per head; 0 = from the shape and mask */
} AttnKernel;
/* The plan's backend: train.attention_backend, else the cluster's, else
 * cudnn (Megatron-Core + Transformer Engine on Hopper, early 2025). */
AttnBackend attention_backend_resolve(const Plan *p);
/* Fits the backend's table and the calibration's attention ratios. */
void attention_calibration_init(SimHw *hw);
/* Fraction of peak BF16 reached by the kernel of this shape (bwd 0/1);
 * calibrated: also apply the calibration file's attention entries. */
double attention_efficiency(const SimHw *hw, double q, double kv, double hb, double d, AttnMask mask, int bwd,
                            bool calibrated);
/* Seconds of one kernel (forward, or backward = 2.5x the forward FLOPs). */
double attention_kernel_time(const SimHw *hw, const AttnKernel *k, bool backward);

/* ---- compute.c ---- */
/* Fills hw->cal_gemm_ratio and hw->cal_attn_ratio (sim_hw_init calls it). */
void compute_calibration_init(SimHw *hw);
/* One GEMM C[m,n] = A[m,k] * B[k,n]; c_bytes = bytes per element of C as
 * written (2 bf16; 8 when accumulated into an fp32 buffer: read + write). */
double compute_gemm_time(const SimHw *hw, double m, double n, double k, double c_bytes);
/* `groups` GEMMs of the same n, k with m rows each, in one grouped kernel. */
double compute_grouped_gemm_time(const SimHw *hw, int groups, double m, double n, double k, double c_bytes);
/* A memory-bound kernel moving `bytes` (reads + writes), streaming access. */
double compute_memory_time(const SimHw *hw, double bytes);
/* Access patterns of memory-bound kernels (compute.c has the measured
 * fraction of the copy bandwidth each reaches). */
typedef enum {
    MEM_STREAM = 0,       /* elementwise, norms, copies */
    MEM_ROW_GATHER,       /* permute: index_select of rows */
    MEM_ROW_COMBINE,      /* unpermute / permute backward: k rows summed into one */
    MEM_ROW_COMBINE_BWD,  /* unpermute backward: one row scattered to k, prob gradient */
    MEM_PATTERN_COUNT
} MemPattern;
double compute_memory_time_pattern(const SimHw *hw, double bytes, MemPattern pattern);

/* ---- comm.c ---- */
typedef enum { COLL_ALL_GATHER = 0, COLL_REDUCE_SCATTER, COLL_ALL_REDUCE, COLL_ALL_TO_ALL, COLL_SEND_RECV } CollOp;
/* Fills hw->cal_coll_ratio (sim_hw_init calls it). */
void comm_calibration_init(SimHw *hw);
/* bytes: nccl-tests "size" (AG: output buffer, RS: input buffer, AR: the
 * buffer, A2A: one rank's send buffer, send/recv: the message). */
double comm_time(const SimHw *hw, CollOp op, const GroupPlacement *g, double bytes);
const char *coll_op_name(CollOp op);

/* ---- overlap.c ---- */
/* Time added to `work` seconds of compute when `comm` seconds of
 * communication run concurrently on kernels taking the fraction sm_frac of
 * the SMs: max(comm * sm_frac, comm - work). */
double overlap_added(double comm, double work, double sm_frac);
/* SM fractions taken by the communication kernels of each overlap kind. */
double overlap_sm_frac_nccl(const SimHw *hw);
double overlap_sm_frac_tp(const SimHw *hw);

/* ---- context for block costs ---- */
typedef struct {
    const Plan *p;
    const SimHw *hw;
    GroupPlacement g[GROUP_KIND_COUNT];
    double s, b;              /* sequence length, micro-batch (sequences) */
    int tp, cp, etp, ep, pp, vpp, dp, edp;
    double m_full;            /* rows in a TP-gathered activation: s*b/cp */
    double t_local;           /* tokens per rank with SP: s*b/(tp*cp) */
    double act_bytes;         /* bytes per activation element (2: bf16) */
    int microbatches;         /* m per pipeline per step */
    RecomputeKind recompute;  /* as in train, but memory.c may ask for none */
    /* share of the NIC left to the CP ring's transfers when the CP group
     * crosses nodes (1: uncontended), during forward and backward */
    double cp_link_share_fwd, cp_link_share_bwd;
} SimCtx;
/* The context of a (checked) plan on hw, as simulate_step builds it. */
void sim_ctx_init(SimCtx *x, const Plan *plan, const SimHw *hw);

/* ---- ring.c: the attention core, CP ring steps ---- */
typedef struct {
    double kernel_fwd, kernel_bwd;     /* s, attention kernels of all steps */
    double passes_fwd, passes_bwd;     /* s, merge / accumulate / copy passes */
    double transfer_fwd, transfer_bwd; /* s, one step's transfer on its link */
    double exposed_fwd, exposed_bwd;   /* s, transfer time not hidden by the steps */
    double exposed_recompute;          /* s, the forward ring's, re-run during the backward (its link share) */
    int kernels;                       /* kernels per direction (CP) */
} RingCost;
/* window: attention span in tokens (0 = full causal) */
void ring_cost(const SimCtx *x, int window, RingCost *out);
/* Appends the core's segments to fwd, bwd and the selective-recompute phase. */
void ring_attention(const SimCtx *x, int window, Phase *fwd, Phase *bwd, Phase *recompute_sel);
/* Transient bytes of the CP ring's buffers while a layer's attention runs. */
double ring_working_bytes(const SimCtx *x);

/* ---- layer.c: attention, dense MLP, embedding, output ---- */
/* window: attention span in tokens (0 = full causal) */
void layer_attention(const SimCtx *x, int window, Phase *fwd, Phase *bwd, Phase *recompute_sel);
void layer_dense_mlp(const SimCtx *x, double ffn, CostKind kind, const char *name, Phase *fwd, Phase *bwd, Phase *recompute_sel);
void layer_embedding(const SimCtx *x, Phase *fwd, Phase *bwd);
void layer_output(const SimCtx *x, Phase *fwd, Phase *bwd);

/* ---- dispatcher.c: the MoE block ---- */
typedef struct {
    double rows_per_expert;   /* rows each local expert's GEMMs see (after ETP all-gather) */
    double a2a_bytes;         /* one rank's send buffer per all-to-all, bytes */
    double rows_recv;         /* rows received by the busiest rank from the a2a */
} DispatchShape;
void dispatcher_shape(const SimCtx *x, DispatchShape *d);
/* One grouped expert GEMM (TE GroupedLinear: a cuBLAS call per expert);
 * host_bound: floored at groups x the host time of a cuBLAS call. */
double dispatcher_expert_gemm_time(const SimHw *hw, int groups, double m, double n, double k, double c_bytes,
                                   bool host_bound);
void layer_moe(const SimCtx *x, Phase *fwd, Phase *bwd, Phase *recompute_sel);

/* ---- pipeline.c ---- */
#define PIPE_MAX_VSTAGES 4096
#define PIPE_MAX_SLOTS 8192      /* virtual stages x simulated micro-batches */

typedef struct {
    double makespan;                    /* s, first op start to last op end */
    double rank_end[SIM_MAX_STAGES];    /* s, end of each rank's last op */
    double rank_busy[SIM_MAX_STAGES];   /* s, compute time of each rank */
    double rank_first_start[SIM_MAX_STAGES]; /* s, start of each rank's first forward */
    double chunk_last_bwd_end[PIPE_MAX_VSTAGES]; /* s, per virtual stage */
    int inflight_peak[SIM_MAX_STAGES];  /* chunks whose activations are held at the peak */
    int simulated_microbatches;         /* m actually simulated (rest extrapolated) */
} PipeResult;

typedef struct {
    double start, end;
    int mb, chunk;
    bool fwd;
} PipeEvent;

/* fwd/bwd: [pp*vpp] seconds per virtual stage vs = chunk*pp + rank.
 * p2p: seconds per boundary transfer; blocking: the sender waits for it.
 * events (optional, may be NULL): records the ops of rank `trace_rank`. */
int pipeline_simulate(int pp, int vpp, int m, const double *fwd, const double *bwd, double p2p, bool blocking,
                      PipeResult *out, int trace_rank, PipeEvent *events, int max_events, int *num_events,
                      MpError *err);
/* Peak number of in-flight chunks held by rank r (schedule property). */
int pipeline_inflight(int pp, int vpp, int m, int rank);

/* ---- memory.c ---- */
typedef struct {
    double dense_params;     /* on this GPU (already divided by TP), per stage */
    double expert_params;    /* on this GPU (divided by ETP*EP) */
    double act_per_chunk;    /* bytes of activations of one in-flight chunk (one micro-batch) */
    double act_extra;        /* bytes held once (logits of the last stage, working buffers) */
    int inflight;            /* chunks in flight at the peak */
    double fsdp_working;     /* bytes of gathered weights/grads in flight (full sharding) */
} StageMemInput;
void memory_stage(const SimCtx *x, const StageMemInput *in, SimStageMemory *out);
/* Activation bytes of one layer for one micro-batch on one GPU. */
double memory_attention_activations(const SimCtx *x);
double memory_moe_activations(const SimCtx *x);
double memory_dense_mlp_activations(const SimCtx *x, double ffn);
double memory_output_activations(const SimCtx *x);

/* ---- timeline.c, timeline_png.c ---- */
typedef struct {
    const char *name;    /* kernel, collective or op ("F mb3 c0") */
    const char *cat;     /* category shown by the viewer */
    int stage;           /* pipeline stage (the trace's process) */
    int tid;             /* track: 0 ops, 1 kernels, 2 step tail */
    double start, dur;   /* s */
    int mb, chunk;       /* -1 when not applicable */
} TraceSlice;
/* Chrome trace JSON (chrome://tracing, Perfetto) of the slices, one process
 * per pipeline stage (stages 0..pp-1); written
 * through core/outfile.h (a unique temporary beside PATH, then renamed), so a
 * failure leaves no partial file.  err: "timeline: PATH: reason". */
int timeline_write(const char *path, const char *title, const TraceSlice *s, int n, int pp, MpError *err);
/* The same slices as a picture (gnuplot, .png or .svg): one row per stage,
 * forward and backward ops as boxes (shade by chunk of vpp), micro-batch
 * numbers inside the boxes wide enough, then each stage's tail.  Only track
 * 0 and 2 slices are drawn. err: "timeline: reason". */
int timeline_png_write(const char *path, const char *title, const TraceSlice *s, int n, int pp, int vpp,
                       MpError *err);

#endif
