/* executor.h: the contract between the executor's runtime (launch,
 * bootstrap, communicators, failure handling, measurement, CLI) and its
 * training step (model, dispatcher, backward, gradient sync, optimizer).
 *
 * runtime: executor/launch.c, rendezvous.c, comms.c, watchdog.c, measure.c,
 *          cli/cmd_execute.c
 * step:    executor/backend*.{h,c,cu}, model.c, dispatcher.c, optimizer.c,
 *          data.c, train.c
 */
#ifndef MOEPLAN_EXECUTOR_H
#define MOEPLAN_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/mapping.h"
#include "core/plan.h"

struct CollectiveWatch;   /* executor/collective_watch.h */
struct DeviceWatch;       /* executor/device_watch.h */

/* Communicators of one rank, one per group kind of the mapping (the group
 * of that kind that contains this rank).  The handles are opaque here:
 * ncclComm_t for the CUDA backend, MPI_Comm for the CPU backend. Created by
 * comms.c from mapping_group_of_rank(): the layout is never re-derived. */
typedef struct {
    int world_rank, world_size;
    int local_rank;                      /* GPU index on this node */
    void *handle[GROUP_KIND_COUNT];      /* ncclComm_t or MPI_Comm* */
    int rank_in[GROUP_KIND_COUNT];       /* this rank's index in each group */
    int size_of[GROUP_KIND_COUNT];
    void *world;                         /* world communicator */
    /* Deadline bookkeeping of the blocking collectives (the watchdog reads
     * it); NULL: not watched. */
    struct CollectiveWatch *watch;
    /* Deadline bookkeeping of the collectives a GPU backend enqueues
     * asynchronously (the backend attaches its events; the watchdog
     * queries them); NULL: not watched. */
    struct DeviceWatch *device_watch;
} ExecComms;

typedef enum { EXEC_BACKEND_CPU = 0, EXEC_BACKEND_CUDA = 1 } ExecBackendKind;

/* GPU attention (kernels/attention_api.h): AUTO = cuDNN's fused attention
 * when libcudnn 9 loads at run time, else the own kernel (with a note);
 * OWN = kernels/attention.cu; CUDNN = cuDNN or fail.  Values match AttnImpl. */
typedef enum { EXEC_ATTENTION_AUTO = 0, EXEC_ATTENTION_OWN = 1, EXEC_ATTENTION_CUDNN = 2 } ExecAttention;

/* How the experts' grouped GEMMs run (kernels/gemm.h GroupedImpl):
 *   LOOP     one cuBLAS call per local expert;
 *   BATCHED  one cublasGemmGroupedBatchedEx call per GEMM;
 *   PADDED   every expert's rows padded with zero rows to a multiple of
 *            DISPATCH_PAD_ALIGN (executor/dispatcher.h: where that wastes at
 *            most 1/4), then one cublasGemmBatchedEx call per group size
 *            (cublasGemmStridedBatchedEx when all are equal);
 *   AUTO     PADDED with at least EXEC_PAD_MIN_EXPERTS local experts, else
 *            LOOP (groups that happen to be equal, e.g. under a capacity
 *            factor, still go strided-batched).
 * The CLI's default is LOOP: the per-size batched calls have not run on a
 * GPU yet (README, "Executor vs PyTorch").
 * The CPU backend runs every group's rows as given (padding rows are zero
 * and give the same result), so PADDED is also a CPU-tested layout. */
typedef enum {
    EXEC_EXPERT_GEMM_LOOP = 0, EXEC_EXPERT_GEMM_BATCHED = 1, EXEC_EXPERT_GEMM_AUTO = 2, EXEC_EXPERT_GEMM_PADDED = 3
} ExecExpertGemm;
/* Fine-grained experts: at ~1024 rows x 2048 x 1536 (Qwen3-30B-A3B, 128
 * experts) one expert's GEMM is about one wave of an H100's 132 SMs and
 * cuBLAS's per-call host time exceeds the kernel (docs/kernels.md); 16
 * local experts is where AUTO starts padding. */
#define EXEC_PAD_MIN_EXPERTS 16

typedef struct {
    ExecBackendKind backend;
    int layers;               /* run the first L layers of the model (0 = all) */
    int steps, warmup;
    uint64_t seed;
    const char *data_path;    /* raw token ids; NULL = synthetic learnable task */
    int data_bits;            /* 16 or 32 */
    double lr;                /* Adam's learning rate, used as given (0 = the weights never move) */
    /* Added by the step side (second pass), zero-initialised structs keep
     * working; runtime (cli/cmd_execute.c) may expose them as flags:
     *   aux_loss_coeff: auxiliary load-balancing loss coefficient (Megatron
     *     --moe-aux-loss-coeff); 0 = the default 1e-2 (Mixtral / Megatron MoE
     *     recipes), negative = off.
     *   random_tokens: train on uniformly random token ids instead of the
     *     learnable task (METHOD.md: time throughput on random data; the router
     *     cannot learn it, so routing stays as balanced as a real corpus's
     *     first steps).  Ignored when data_path is set. */
    double aux_loss_coeff;
    bool random_tokens;
    /* Fault injection for the failure tests (cli: MOEPLAN_TEST_FAULT=
     * kill|hang:RANK:STEP): after step fault_step (1-based) rank fault_rank
     * kills itself with SIGKILL, or stops forever without entering the next
     * collective.  EXEC_FAULT_NONE in every real run. */
    enum { EXEC_FAULT_NONE = 0, EXEC_FAULT_KILL, EXEC_FAULT_HANG } fault;
    int fault_rank, fault_step;
    ExecAttention attention;  /* CUDA backend only; --attention own|cudnn */
    ExecExpertGemm expert_gemm;  /* CUDA backend only; --expert-gemm (0-initialised: loop) */
    bool op_profile;          /* CUDA backend only: time every operation (op_profile.h) */
} ExecOptions;

/* The auxiliary-loss coefficient a run with these options uses (0 = off):
 * aux_loss_coeff, 1e-2 when it is 0, 0 when it is negative. */
double exec_aux_loss_coeff(const ExecOptions *opt);

/* Time of each phase of one step, seconds (median over timed steps in a result). */
typedef struct {
    double step, attention, moe_compute, dispatcher_comm, grad_sync, optimizer, other;
    double pipeline;   /* pipeline P2P: transfers and the wait for the neighbour (bubble);
                        * with --overlap p2p the part the compute did not hide */
    double cp_comm;    /* CP ring: the time the compute waited for the K/V (dK/dV) hops */
} ExecPhases;

/* the memory categories of ExecStepStats.mem_bytes (pool.h MemCategory) */
#define EXEC_MEM_CATEGORIES 6

/* One forward or backward of this rank's last step: host seconds from the
 * step's start (CPU backend: the compute; CUDA: when it was enqueued). */
typedef struct {
    int forward, chunk, microbatch;
    double start, end;
} ExecOpTime;

typedef struct {
    int steps_timed;
    double loss_first, loss_last;     /* loss of the first and last step */
    double *losses;                   /* [steps] owned by the result, may be NULL */
    ExecPhases median;                /* seconds */
    double peak_memory_bytes;         /* device memory (CUDA) or RSS (CPU) */
    /* what the backend allocated (its pool, executor/pool.h): the high-water
     * mark of the bytes in use and, at that moment, the bytes of each
     * category (weights, gradients, optimizer, activations, communication,
     * workspace: pool.h MemCategory order) */
    double mem_peak_bytes;
    double mem_bytes[EXEC_MEM_CATEGORIES];
    long step_device_allocs;          /* device allocations inside steps that the pool could
                                       * not serve (CUDA: cudaMalloc calls; 0 when every
                                       * buffer was sized before the first step) */
    double tokens_per_step;           /* global */
    char attention[48];               /* the GPU attention that ran ("cudnn 9.19.0", "own"; "" on CPU) */
    char attention_note[256];         /* why cuDNN was not used under AUTO ("" if it was) */
    char expert_gemm[48];             /* how the expert GEMMs ran ("cublas loop", ...; "" on CPU) */
    long dispatches, padded_dispatches;   /* MoE dispatch plans of the run, and of them with padded groups */
    int stage;                        /* this rank's pipeline stage */
    int num_ops;                      /* operations of the last step, in the order run */
    ExecOpTime *ops;                  /* [num_ops] owned by the result, may be NULL */
    /* with ExecOptions.op_profile: the timed steps' operations (op_profile.h);
     * owned by the result: op_profile_free, then free */
    struct OpProfile *op_profile;
} ExecStepStats;

/* Trains `opt->steps` steps of plan->model under plan->map on this rank.
 * Defined by the step side (executor/train.c). */
int exec_train(const Plan *plan, const ExecOptions *opt, const ExecComms *comms,
               ExecStepStats *stats, MpError *err);

#endif
