/* backend.h: the narrow interface between the training step (model.c,
 * dispatcher.c, optimizer.c) and the machine it runs on.
 *
 * Two implementations:
 *   backend_cpu.c   float32 everywhere, the kernels' CPU references, MPI
 *                   collectives on the MPI_Comm* of ExecComms (CI path)
 *   backend_cuda.cu bf16 activations and weight copies, fp32 master weights,
 *                   gradients and optimizer state, cuBLAS(Lt) GEMMs, NCCL on
 *                   the ncclComm_t of ExecComms; a compute stream and a
 *                   communication stream joined by events, a caching device
 *                   pool (pool.h), pinned staging for uploads, events per phase
 *
 * Element types.  Every pointer below is device memory of the backend.
 *   "act"  activations and the working copy of weights: float (CPU, 4 bytes)
 *          or bf16 (CUDA, 2 bytes); Backend.act_bytes says which.
 *   "f32"  float: master weights, gradients, Adam moments, norm statistics,
 *          router logits and probabilities, losses.
 *   "i32"  int32_t: token ids, positions, expert indices, row maps.
 * The model never dereferences a device pointer; host <-> device traffic goes
 * through upload / download only (download synchronises).
 *
 * Row maps: the permutation of the (token, slot) pairs stays on the device
 * (moe_plan); only the per-expert counts come to the host, where the
 * dispatcher (dispatcher.c) plans the all-to-all and the expert-major
 * order (sort_src) from them and uploads that map; the permute / unpermute
 * / gather ops apply the maps on the device (kernels/moe_permute.h).
 */
#ifndef MOEPLAN_EXECUTOR_BACKEND_H
#define MOEPLAN_EXECUTOR_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/mapping.h"
#include "executor/executor.h"

/* Phases of a step, for timing (ExecPhases). */
typedef enum {
    PHASE_ATTENTION = 0,   /* norms, QKV, RoPE, attention, output projection */
    PHASE_MOE_COMPUTE,     /* router, permutation, expert and shared GEMMs, MLPs */
    PHASE_DISPATCH_COMM,   /* token-count exchange, all-to-all-v, ETP gather/scatter */
    PHASE_GRAD_SYNC,       /* DP*CP and EDP gradient all-reduce */
    PHASE_OPTIMIZER,       /* Adam and the bf16 weight copies */
    PHASE_OTHER,           /* embedding, final norm, output layer, loss */
    PHASE_PIPELINE,        /* pipeline P2P batches: the transfers and the wait for the
                            * neighbour stage's data (the pipeline bubble); with
                            * overlap, the posting and the exposed wait only */
    PHASE_CP_COMM,         /* context-parallel ring: the time the compute waited for
                            * the K/V (dK/dV) transfers (blocking: the transfers) */
    PHASE_COUNT
} StepPhase;

typedef enum { DT_ACT = 0, DT_F32 = 1, DT_I32 = 2 } ElemType;

typedef struct Backend Backend;

/* One transfer of a point-to-point batch (Backend.p2p): n elements of buf
 * to (send) or from (receive) member `peer` of the group. */
typedef struct {
    bool send;
    int peer;
    void *buf;
    size_t n;
} P2POp;

struct Backend {
    const char *name;
    int act_bytes;                 /* 4 (CPU float) or 2 (CUDA bf16) */
    const ExecComms *comms;
    void *impl;                    /* backend-private state */
    /* the GPU attention in use ("cudnn 9.19.0" or "own"; NULL on the CPU) and,
     * when cuDNN was asked for by default but cannot be used, why ("" else) */
    const char *attention;
    char attention_note[256];
    /* how the experts' grouped GEMMs ran (ExecExpertGemm; NULL on the CPU):
     * "cublas loop", "cublas grouped batched", "auto (...)" with the calls of
     * each kind; filled by expert_gemm_name */
    void (*expert_gemm_name)(Backend *b, char *out, size_t cap);
    /* non-NULL: the backend adds the time of each operation to this table
     * (op_profile.h; the CUDA backend only); owned by the caller */
    struct OpProfile *op_profile;

    /* ---- memory (bytes) ---- */
    void *(*alloc)(Backend *b, size_t bytes);                 /* zero-filled; NULL on failure */
    void (*release)(Backend *b, void *p);
    void (*upload)(Backend *b, void *dst, const void *host, size_t bytes);
    void (*download)(Backend *b, void *host, const void *src, size_t bytes); /* synchronises */
    void (*zero)(Backend *b, void *p, size_t bytes);
    void (*copy)(Backend *b, void *dst, const void *src, size_t bytes);
    /* act [n] <- f32 [n]  /  f32 [n] <- act [n] */
    void (*f32_to_act)(Backend *b, void *dst, const float *src, size_t n);
    void (*act_to_f32)(Backend *b, float *dst, const void *src, size_t n);
    /* out [n] act = a + x (out may alias a or x) */
    void (*add_act)(Backend *b, void *out, const void *a, const void *x, size_t n);

    /* ---- GEMMs (kernels/gemm.h semantics; A, B act; C act or f32) ---- */
    void (*gemm)(Backend *b, void *C, bool c_f32, const void *A, const void *B, int M, int N,
                 int K, int transA, int transB, float beta);
    /* grouped: group_rows on the host; vary 0 = VARY_M, 1 = VARY_K */
    void (*grouped_gemm)(Backend *b, void *C, bool c_f32, const void *A, const void *B,
                         const int32_t *group_rows, int G, int vary, int M, int N, int K,
                         int transA, int transB, float beta);

    /* ---- layers (kernels/NAME.h semantics) ---- */
    void (*embedding_forward)(Backend *b, void *out, const int32_t *tokens, const void *wte,
                              int N, int C);
    void (*embedding_backward)(Backend *b, float *dwte, const void *dout, const int32_t *tokens,
                               int N, int C);
    void (*rmsnorm_forward)(Backend *b, void *out, float *rstd, const void *inp,
                            const void *weight, int N, int C, float eps);
    void (*rmsnorm_backward)(Backend *b, void *dinp, float *dweight, const void *dout,
                             const void *inp, const void *weight, const float *rstd, int N,
                             int C);
    void (*rope)(Backend *b, void *x, const int32_t *pos, int N, int H, int D, int row_stride,
                 float theta, bool backward);
    void (*attention_forward)(Backend *b, void *out, float *lse, const void *q, const void *k,
                              const void *v, int B, int T, int nh, int nkv, int hd,
                              int q_stride, int kv_stride);
    void (*attention_backward)(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                               const void *q, const void *k, const void *v, const void *out,
                               const float *lse, int B, int T, int nh, int nkv, int hd,
                               int q_stride, int kv_stride);
    /* ---- ring attention (context parallelism) on one block of one sequence:
     * q [Tq, nh, hd] rows with stride q_stride, k/v [Tk, nkv, hd] with
     * kv_stride, out [Tq, nh, hd] contiguous, lse [nh, Tq] f32; causal: key
     * j visible to row i iff j <= i (query and key blocks start at the same
     * position), else every key visible (kernels/attention_api.h, B = 1).
     * The backward WRITES dq, dk, dv (strides of q, k, v) from the rows'
     * final out and lse. */
    void (*attention_block_forward)(Backend *b, void *out, float *lse, const void *q,
                                    const void *k, const void *v, int Tq, int Tk, bool causal,
                                    int nh, int nkv, int hd, int q_stride, int kv_stride);
    void (*attention_block_backward)(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                                     const void *q, const void *k, const void *v,
                                     const void *out, const float *lse, int Tq, int Tk,
                                     bool causal, int nh, int nkv, int hd, int q_stride,
                                     int kv_stride);
    /* (out1 [T, nh, hd], lse1 [nh, T]) <- merge with (out2, lse2)
     * (attention_merge_cpu's semantics) */
    void (*attention_merge)(Backend *b, void *out1, float *lse1, const void *out2,
                            const float *lse2, int T, int nh, int hd);
    /* rows x width bytes from src (pitch src_pitch bytes) to dst (pitch dst_pitch) */
    void (*copy_2d)(Backend *b, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                    size_t width, size_t rows);
    void (*router_forward)(Backend *b, float *probs, int32_t *topk_idx, float *topk_prob,
                           const float *logits, int N, int E, int k, int renormalize);
    void (*router_backward)(Backend *b, float *dlogits, const float *dtopk_prob,
                            const float *probs, const int32_t *topk_idx,
                            const float *topk_prob, int N, int E, int k, int renormalize);
    /* gate_up [N, 2F] act = [gate | up]; out [N, F] = silu(gate) * up */
    void (*swiglu_forward)(Backend *b, void *out, const void *gate_up, int N, int F);
    /* dgate_up [N, 2F] (written) from dout [N, F] */
    void (*swiglu_backward)(Backend *b, void *dgate_up, const void *dout, const void *gate_up,
                            int N, int F);
    /* logits [N, V] act -> losses [N] f32 (written) and dlogits [N, V] act
     * (written, = dloss * (softmax - onehot)); dlogits may alias logits. */
    void (*cross_entropy)(Backend *b, float *losses, void *dlogits, const void *logits,
                          const int32_t *targets, int N, int V, float dloss);
    /* vocabulary-parallel cross-entropy (kernels/crossentropy.h): logits
     * [N, Vl] act of this rank's vocabulary slice, targets_local [N] i32
     * (-1: the target is on another rank); stats [N, 3] f32 (written);
     * the caller all-gathers stats into all_stats [P, N, 3] f32, then finish
     * writes losses [N] f32 and dlogits [N, Vl] act (may alias logits). */
    void (*ce_vp_stats)(Backend *b, float *stats, const void *logits, const int32_t *targets_local,
                        int N, int Vl);
    void (*ce_vp_finish)(Backend *b, float *losses, void *dlogits, const void *logits,
                         const int32_t *targets_local, const float *all_stats, int P, int N,
                         int Vl, float dloss);
    /* kernels/moe_permute.h: row_of [N*k] (-1 = dropped) */
    void (*permute)(Backend *b, void *out, const void *inp, const int32_t *row_of, int N, int k,
                    int C);
    void (*permute_backward)(Backend *b, void *dinp, const void *dout, const int32_t *row_of,
                             int N, int k, int C);
    void (*unpermute)(Backend *b, void *out, const void *inp, const float *prob,
                      const int32_t *row_of, int N, int k, int C);
    void (*unpermute_backward)(Backend *b, void *dinp, float *dprob, const void *dout,
                               const void *inp, const float *prob, const int32_t *row_of,
                               int N, int k, int C);
    /* The dispatcher's row map, computed where the router's top-k is
     * (kernels/moe_permute.h moe_plan, then, when capacity > 0, padded so
     * that expert e owns rows [e*cap, (e+1)*cap)): row_of [N*k] i32 device
     * (-1 = dropped); kept_rows [E] HOST: the pairs each expert keeps before
     * padding (the counts the all-to-all sizes need).  Synchronises. */
    void (*moe_plan)(Backend *b, int32_t *row_of, int32_t *kept_rows, const int32_t *topk_idx,
                     int N, int k, int E, int capacity);
    /* out[i, :] = inp[src[i], :]   out [n, C] */
    void (*gather_rows)(Backend *b, void *out, const void *inp, const int32_t *src, int n, int C);
    /* Adam on a flat f32 vector; writes the act copy of the weights too. */
    void (*adam)(Backend *b, float *param, void *param_act, const float *grad, float *m,
                 float *v, size_t n, float lr, float beta1, float beta2, float eps,
                 float weight_decay, int t);
    /* sum of x [n] f32 into *out on the host (synchronises) */
    double (*sum_f32)(Backend *b, const float *x, size_t n);
    /* acc [1] f32 += sum of x [n] f32, on the device (no synchronisation) */
    void (*accumulate_sum)(Backend *b, float *acc, const float *x, size_t n);

    /* ---- auxiliary load-balancing loss (Switch Transformer eq. 4, GShard;
     * Megatron's switch_load_balancing_loss_func), over the N tokens of a
     * micro-batch on this rank:
     *   f_e = (top-k pairs routed to e) / (N k)      fraction of token-slots
     *   P_e = sum_t probs[t, e] / N                  mean router probability
     *   aux = coeff * E * sum_e f_e P_e              (1 * coeff when balanced)
     * f_e counts the router's choices before any capacity drop (Megatron's
     * tokens_per_expert) and is a constant for the gradient.
     * forward:  *loss_acc += weight * aux (device f32 [1]);
     *           gcoef[e] = coeff * E * f_e / N = d aux / d probs[t, e]  [E] f32
     * backward: dlogits[t, e] += scale * probs[t, e] * (gcoef[e] - sum_e' probs[t, e'] gcoef[e'])
     *           (the softmax Jacobian applied to the constant row gcoef) */
    void (*aux_loss_forward)(Backend *b, float *gcoef, float *loss_acc, const float *probs,
                             const int32_t *topk_idx, int N, int E, int k, float coeff,
                             float weight);
    void (*aux_loss_backward)(Backend *b, float *dlogits, const float *probs, const float *gcoef,
                              int N, int E, float scale);

    /* ---- collectives on the communicator of a group kind (sums) ---- */
    void (*all_reduce)(Backend *b, void *buf, size_t n, ElemType t, GroupKind g);
    /* recv [size * n] <- every member's send [n], in member order; in place
     * when send == recv + rank_in * n (elements) */
    void (*all_gather)(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                       GroupKind g);
    /* recv [n] <- sum over members of their send [size * n], chunk rank_in */
    void (*reduce_scatter)(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                           GroupKind g);
    /* counts and displacements in elements, host arrays [group size] */
    void (*all_to_all_v)(Backend *b, const void *send, const size_t *send_counts,
                         const size_t *send_displs, void *recv, const size_t *recv_counts,
                         const size_t *recv_displs, ElemType t, GroupKind g);
    /* host ints: recv[size * n] <- every member's send[n] sent pairwise
     * (member j receives send[j*n .. j*n+n) of each member): the token-count
     * exchange.  Synchronises. */
    void (*all_to_all_host_i32)(Backend *b, const int32_t *send, int32_t *recv, int n,
                                GroupKind g);
    /* host ints all-gather: recv[size * n] (synchronises) */
    void (*all_gather_host_i32)(Backend *b, const int32_t *send, int32_t *recv, int n,
                                GroupKind g);

    /* ---- point-to-point between pipeline neighbours ----
     * A batch of sends and receives on the communicator of group g, started
     * together; the step continues once all of them completed (CUDA: one
     * ncclGroupStart / ncclGroupEnd on the p2p stream, joined with the
     * compute stream both ways; CPU: MPI_Issend / MPI_Irecv, then
     * MPI_Waitall).  A send completes only once its receive is posted: the
     * CPU uses synchronous sends so that it waits where NCCL would.
     * Messages between two ranks match in posting order (no tags, as NCCL).
     * At most BACKEND_P2P_MAX transfers.  (= p2p_start, then p2p_wait.) */
    void (*p2p)(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g);

    /* ==== nonblocking point-to-point: communication behind compute ====
     * (pipeline P2P and the context-parallel ring; kept apart from the
     * collectives above.)
     * p2p_start posts the batch as p2p does and returns at once: a handle
     * 0 <= h < BACKEND_P2P_INFLIGHT, or -1 when nothing was posted (no
     * transfer, a group of one, a failure: the sticky status says which).
     * p2p_wait(h) makes what is issued after it see the batch completed:
     * the received data are there and the sent buffers may be written.
     * Until then the batch's buffers are the transfer's: a send buffer may
     * be read but not written, a receive buffer neither.  p2p_wait(-1) does
     * nothing; every started batch is waited once, before the step's end.
     *   CUDA: an event recorded on the compute stream orders the batch after
     *         the work issued before p2p_start; one ncclGroupStart / sends
     *         and receives / ncclGroupEnd on the communication stream of
     *         the group kind (GROUP_PP: the pipeline stream, else the ring
     *         stream); an event recorded there after the group; p2p_wait
     *         makes the compute stream wait on that event (no host wait).
     *         Batches on one stream run in start order.
     *   CPU:  MPI_Issend / MPI_Irecv at the start, MPI_Waitall at the wait.
     * Every rank of a group starts its batches in the same order as its
     * peers' matching ones (docs/executor-overlap.md: why no deadlock with
     * the all-to-alls of other micro-batches). */
    int (*p2p_start)(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g);
    void (*p2p_wait)(Backend *b, int handle);

    /* ---- timing ---- */
    void (*phase_begin)(Backend *b, StepPhase p);
    void (*phase_end)(Backend *b, StepPhase p);
    /* waits for the device, adds each phase's seconds since the last call into
     * out[PHASE_COUNT] and returns the step's wall seconds */
    double (*step_times)(Backend *b, double *out);
    double (*peak_memory)(Backend *b);  /* bytes */

    /* ---- errors and step boundaries ---- */
    /* Sticky status: 0 while every operation so far succeeded; else -1 and
     * err gets the first failure ("backend cuda: OP: what").  After a
     * failure the backend skips the work of every later operation (a CUDA
     * error leaves the context unusable; a collective would wait on peers
     * forever).  No synchronisation: asynchronous device faults surface at
     * the next synchronising operation (download, step_times). */
    int (*status)(Backend *b, MpError *err);
    /* between in_step(b, true) and in_step(b, false) the backend counts the
     * device allocations it could not serve from its pool (pool.h) */
    void (*in_step)(Backend *b, bool on);
    /* device allocations made inside steps so far (0 on the CPU backend) */
    long (*step_allocs)(Backend *b);

    void (*destroy)(Backend *b);

    /* ---- gradient buckets: nonblocking collectives (issue 15, --overlap
     * grad / param; executor/params.c).  A start enqueues the collective
     * after the step's work so far and returns a handle in [0,
     * BACKEND_ASYNC_MAX), or -1 when there is nothing to wait for (a group
     * of one: done as a copy; or a failure, kept in the sticky status).
     * The step must not touch the buffers until async_wait(handle), which
     * makes the work enqueued after it wait for the collective (CUDA: the
     * compute stream waits on an event recorded after the NCCL call, which
     * runs on a stream of its own for these collectives; CPU: MPI_Ireduce_scatter_block /
     * MPI_Iallreduce / MPI_Iallgather, then MPI_Wait).  async_poll lets
     * pending collectives progress (CPU: MPI_Test; CUDA: nothing).
     * Semantics as the blocking all_reduce / reduce_scatter / all_gather
     * (in place all-gather: send == recv + rank_in * n). ---- */
    int (*all_reduce_start)(Backend *b, void *buf, size_t n, ElemType t, GroupKind g);
    int (*reduce_scatter_start)(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                                GroupKind g);
    int (*all_gather_start)(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                            GroupKind g);
    void (*async_wait)(Backend *b, int handle);
    void (*async_poll)(Backend *b);
    /* ---- memory accounting (issue 15 item 4): what the backend holds, by
     * category (MemCategory), and the breakdown at the peak of the total.
     * mem_category sets the category of the allocations that follow. ---- */
    void (*mem_category)(Backend *b, int category);
    void (*mem_report)(Backend *b, double *peak_total, double *peak_by_category);
};

/* Wiring of the block above (separate from BACKEND_OPS). */
#define BACKEND_ASYNC_OPS(X) \
    X(all_reduce_start) X(reduce_scatter_start) X(all_gather_start) X(async_wait) X(async_poll) \
    X(mem_category) X(mem_report)

#define BACKEND_ASYNC_MAX 64

/* Every operation of Backend, for the implementations' wiring: each one
 * defines PREFIX_<op> for every op and assigns them with
 *   #define SET_OP(op) b->op = cpu_##op;  BACKEND_OPS(SET_OP)
 * so an operation added here and not implemented fails to compile. */
#define BACKEND_OPS(X) \
    X(alloc) X(release) X(upload) X(download) X(zero) X(copy) X(f32_to_act) X(act_to_f32) \
    X(add_act) X(gemm) X(grouped_gemm) X(embedding_forward) X(embedding_backward) \
    X(rmsnorm_forward) X(rmsnorm_backward) X(rope) X(attention_forward) X(attention_backward) \
    X(attention_block_forward) X(attention_block_backward) X(attention_merge) X(copy_2d) \
    X(router_forward) X(router_backward) X(swiglu_forward) X(swiglu_backward) X(cross_entropy) X(ce_vp_stats) X(ce_vp_finish) \
    X(permute) X(permute_backward) X(unpermute) X(unpermute_backward) X(moe_plan) \
    X(gather_rows) X(adam) \
    X(sum_f32) X(accumulate_sum) X(aux_loss_forward) X(aux_loss_backward) X(all_reduce) \
    X(all_gather) X(reduce_scatter) X(all_to_all_v) X(all_to_all_host_i32) X(all_gather_host_i32) X(p2p) \
    X(p2p_start) X(p2p_wait) \
    X(phase_begin) X(phase_end) X(step_times) X(peak_memory) X(status) X(in_step) X(step_allocs) \
    X(destroy)

#define BACKEND_P2P_MAX 8
/* batches started and not yet waited, at most (the CP ring: two; the
 * pipeline: one, while a ring runs inside the chunk it overlaps) */
#define BACKEND_P2P_INFLIGHT 8

static inline size_t elem_bytes(const Backend *b, ElemType t)
{
    return t == DT_ACT ? (size_t)b->act_bytes : 4;
}

#ifdef __cplusplus
extern "C" {
#endif

/* CPU backend over MPI communicators (ExecComms.handle[k] is an MPI_Comm*). */
int backend_cpu_create(const ExecComms *comms, Backend **out, MpError *err);

#ifdef MOEPLAN_HAVE_CUDA
/* CUDA backend on device comms->local_rank (ExecComms.handle[k] is an ncclComm_t);
 * attention: which GPU attention (kernels/attention_api.h) runs. */
int backend_cuda_create(const ExecComms *comms, ExecAttention attention, ExecExpertGemm expert_gemm,
                        Backend **out, MpError *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
