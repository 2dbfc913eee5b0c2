/* backend_cuda.cu: the Backend on one GPU.  bf16 activations and weight
 * copies, fp32 master weights / gradients / Adam state, the kernels/ CUDA
 * kernels, cuBLAS(Lt) GEMMs (kernels/gemm.h), NCCL on the ncclComm_t that
 * ExecComms.handle[kind] holds (NULL or a group of one: a local copy).
 *
 * Streams.  Kernels, copies and GEMMs run on the compute stream.  Every NCCL
 * call runs on the communication stream: it waits (event) for the compute
 * work enqueued before it, and the compute stream waits (event) for it
 * before the next operation, so the order is the same as on one stream and
 * each communicator is only ever used on one stream.  Point-to-point
 * batches (Backend.p2p_start) run on two more streams, the pipeline's (p2p)
 * and the CP ring's (ring): each batch after an event of the compute
 * stream, and the compute stream waits for it only at p2p_wait, where the
 * step needs its data, so the transfer runs behind the compute issued in
 * between.  The pipeline communicator's one collective (the loss sum at the
 * step's end) comes after every pipeline batch was waited, so it is never
 * in flight beside them.
 *
 * Memory.  Device memory comes from a caching pool (executor/pool.h): the
 * model requests all of its step buffers at creation, and inside a step a
 * release only returns a block to the pool (no cudaFree, no device-wide
 * synchronisation).  Uploads are copied into a pinned staging ring and
 * sent with cudaMemcpyAsync (no host wait); the ring waits on the event of
 * an earlier upload only when it wraps onto it.
 *
 * Deadlines.  After each NCCL call (or NCCL group) an event from a fixed
 * set (created here, DEVICE_WATCH_CAPACITY of them) is recorded on its
 * stream and committed with its group and op to the rank's DeviceWatch
 * (executor/device_watch.h); the watchdog thread queries the oldest with
 * cudaEventQuery and aborts the communicators when it is past
 * --collective-timeout.  One event record per collective, no host wait.
 *
 * Errors.  No call here ends the process: the first failure of a CUDA,
 * cuBLAS or NCCL call (or a kernel launch, read with cudaGetLastError after
 * each operation) is kept as a sticky status with its message; every later
 * operation is skipped; Backend.status reports it.
 *
 * Phases are timed with event pairs on the compute stream, read once per
 * step (step_times).  Host synchronisations inside a step: the token-count
 * exchange (download of the router's top-k, the count all-to-all) and the
 * loss read at the end. */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "executor/backend.h"
#include "executor/device_watch.h"
#include "executor/op_profile.h"
#include "executor/pool.h"
#include "core/flops.h"
}
#include "kernels/adam.h"
#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "kernels/common.h"
#include "kernels/cuda_util.cuh"   /* block_sum */
#include "kernels/crossentropy.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_permute.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

/* pinned staging for uploads: 64 MiB covers every upload inside a step
 * (token ids, dispatcher maps: < 1 MiB at Mixtral shapes); larger ones
 * (initial weights) are copied synchronously from pageable memory */
#define STAGING_BYTES (64u << 20)
#define STAGING_REGIONS 64

/* A timed span of the compute stream: a phase or one
 * operation under the op profile (op_profile.h; op, flops, bytes used). */
typedef struct {
    cudaEvent_t begin, end;
    int phase;              /* the phase, or the innermost open one at the call (-1 none) */
    const char *op;         /* op profile: NULL while begun and not ended (not counted) */
    double flops, bytes;
    double host_begin, host_s;   /* op profile: host clock at the call, host seconds inside it */
} TimedSpan;

typedef struct {
    size_t lo, hi;          /* bytes of the staging ring */
    cudaEvent_t done;       /* the copy out of it has completed */
} StagingRegion;

typedef struct {
    int device;
    cudaStream_t stream;    /* compute */
    cudaStream_t comm;      /* every NCCL call */
    cudaEvent_t to_comm, to_compute;
    cudaStream_t p2p;       /* pipeline sends / receives (GROUP_PP batches) */
    cudaStream_t ring;      /* every other point-to-point batch (the CP ring) */
    cudaEvent_t to_p2p;     /* compute -> p2p / ring stream at a batch's start */
    cudaEvent_t p2p_done[BACKEND_P2P_INFLIGHT];   /* recorded after each started batch */
    bool p2p_used[BACKEND_P2P_INFLIGHT];
    /* gradient buckets (Backend.*_start): their NCCL calls on a stream of
     * their own, so that the dispatcher's collectives on `comm` do not
     * queue behind them; one event per pending handle */
    cudaStream_t bucket;
    cudaEvent_t to_bucket;
    cudaEvent_t async_ev[BACKEND_ASYNC_MAX];
    int async_used[BACKEND_ASYNC_MAX];
    /* the last bucket collective of each group kind (comm_begin waits for it) */
    cudaEvent_t bucket_group_ev[GROUP_KIND_COUNT];
    int bucket_group_used[GROUP_KIND_COUNT];
    GemmHandle gemm;
    int gemm_ready;
    DevicePool pool;
    void *scratch;          /* rmsnorm / attention backward workspace, from the pool */
    size_t scratch_bytes;
    int32_t *ints;          /* device ints for the count exchange, from the pool */
    size_t ints_n;
    float *sum;             /* [1] device */
    float *aux_partial;     /* device [AUX_BLOCKS][256] f32 sums, then [AUX_BLOCKS][256] int counts */
    /* pinned staging ring: regions in upload order, oldest first */
    char *stage;
    size_t stage_head;
    StagingRegion region[STAGING_REGIONS];
    int region_first, region_count;
    TimedSpan *ev;
    int nev, cap_ev;
    int open[PHASE_COUNT];  /* index into ev of the open phase, -1 none */
    cudaEvent_t step_mark;
    bool have_mark;
    double peak;
    /* sticky status */
    int failed;
    char error[768];
    AttnEngine *attn;       /* cuDNN's fused attention or the own kernel */
    /* deadline of the enqueued collectives: events attached to comms->device_watch */
    DeviceWatch *watch;     /* NULL: not watched */
    cudaEvent_t watch_ev[DEVICE_WATCH_CAPACITY];
    /* op profile (Backend.op_profile set): this step's operations */
    TimedSpan *prof;
    int nprof, cap_prof;
    int prof_open;          /* index of the operation begun and not yet ended, -1 none */
    double prof_flops, prof_bytes;   /* what the running operation does, set before it ends */
    int phase_stack[16];    /* open phases, innermost last */
    int phase_depth;
} CudaImpl;

static CudaImpl *I(Backend *b) { return (CudaImpl *)b->impl; }
static cudaStream_t S(Backend *b) { return I(b)->stream; }

/* ---- sticky status ---- */
static void fail(Backend *b, const char *op, const char *what)
{
    CudaImpl *c = I(b);
    if (c->failed) return;
    c->failed = 1;
    snprintf(c->error, sizeof c->error, "backend cuda (device %d): %.64s: %.600s", c->device, op, what);
}
static bool cu_ok(Backend *b, cudaError_t e, const char *op)
{
    if (e == cudaSuccess) return true;
    fail(b, op, cudaGetErrorString(e));
    return false;
}
static bool ks_ok(Backend *b, KernelStatus st, const char *op)
{
    char msg[160];
    if (!st) return true;
    fail(b, op, kernel_status_string(st, msg, sizeof msg));
    return false;
}
static bool nccl_ok(Backend *b, ncclResult_t r, const char *op)
{
    if (r == ncclSuccess) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "NCCL error: %s", ncclGetErrorString(r));
    fail(b, op, msg);
    return false;
}
/* skip the work of every operation after a failure */
#define CU(b, call, op) cu_ok((b), (call), (op))

/* ---- op profile (op_profile.h) ----
 * GUARD opens an operation (an event on the compute stream), LAUNCHED or
 * prof_end closes it under its name.  An operation that calls another one
 * is timed from the inner one's start (the inner one reopens the slot). */
/* The next free span of *spans [*n] (grown, its events created, from
 * first_cap on); NULL after a failure (the backend's status says which). */
static TimedSpan *span_next(Backend *b, TimedSpan **spans, int *n, int *cap, int first_cap, const char *op)
{
    if (*n == *cap) {
        int grown = *cap ? 2 * *cap : first_cap;
        TimedSpan *s = (TimedSpan *)realloc(*spans, sizeof(TimedSpan) * (size_t)grown);
        if (!s) { fail(b, op, "out of host memory"); return NULL; }
        *spans = s;
        for (int i = *cap; i < grown; i++) {
            if (!CU(b, cudaEventCreate(&s[i].begin), op) || !CU(b, cudaEventCreate(&s[i].end), op)) return NULL;
            *cap = i + 1;
        }
    }
    return &(*spans)[(*n)++];
}

static double host_seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void prof_begin(Backend *b)
{
    CudaImpl *c = I(b);
    if (!b->op_profile) return;
    TimedSpan *e = span_next(b, &c->prof, &c->nprof, &c->cap_prof, 1024, "op profile");
    if (!e) return;
    e->phase = c->phase_depth > 0 ? c->phase_stack[c->phase_depth - 1] : -1;
    e->op = NULL;
    c->prof_open = c->nprof - 1;
    c->prof_flops = c->prof_bytes = 0.0;
    e->host_begin = host_seconds_now();
    CU(b, cudaEventRecord(e->begin, c->stream), "op profile");
}
static void prof_end(Backend *b, const char *op)
{
    CudaImpl *c = I(b);
    if (!b->op_profile || c->prof_open < 0 || c->failed) return;
    TimedSpan *e = &c->prof[c->prof_open];
    c->prof_open = -1;
    if (!CU(b, cudaEventRecord(e->end, c->stream), "op profile")) return;
    e->op = op;
    e->host_s = host_seconds_now() - e->host_begin;
    e->flops = c->prof_flops;
    e->bytes = c->prof_bytes;
}
/* the running operation's FLOPs and minimum HBM bytes; the arguments are
 * evaluated only under the op profile (nothing added to the launch path) */
#define PROF_WORK(b, flops, bytes) \
    do { if ((b)->op_profile) { I(b)->prof_flops = (flops); I(b)->prof_bytes = (bytes); } } while (0)
/* a kernel launch error (or an earlier asynchronous fault); ends the profiled operation */
static bool launched(Backend *b, const char *op)
{
    bool ok = cu_ok(b, cudaGetLastError(), op);
    if (ok) prof_end(b, op);
    return ok;
}
#define GUARD(b) do { if (I(b)->failed) return; prof_begin(b); } while (0)
#define LAUNCHED(b, op) launched((b), (op))

/* ---- memory ---- */
static void *raw_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();   /* out of memory is not sticky: clear it */
        return NULL;
    }
    return p;
}
static void raw_free(void *ctx, void *p)
{
    (void)ctx;
    cudaFree(p);
}

/* grow-only scratch from the pool; NULL (and the sticky status) on failure */
static void *scratch(Backend *b, size_t bytes)
{
    CudaImpl *c = I(b);
    if (c->scratch_bytes < bytes) {
        pool_free(&c->pool, c->scratch);
        c->scratch_bytes = 0;
        int cat = c->pool.category;
        pool_set_category(&c->pool, MEM_WORKSPACE);
        c->scratch = pool_alloc(&c->pool, bytes);
        pool_set_category(&c->pool, cat);
        if (!c->scratch) { fail(b, "scratch", "device memory exhausted"); return NULL; }
        c->scratch_bytes = bytes;
    }
    return c->scratch;
}

static void *cu_alloc(Backend *b, size_t bytes)
{
    if (I(b)->failed) return NULL;
    void *p = pool_alloc(&I(b)->pool, bytes ? bytes : 16);
    if (!p) return NULL;
    /* zero-filled (backend.h), in stream order: a reused block's previous
     * owner has enqueued all of its work before */
    if (!CU(b, cudaMemsetAsync(p, 0, bytes ? bytes : 16, S(b)), "alloc")) return NULL;
    return p;
}
static void cu_release(Backend *b, void *p)
{
    if (pool_free(&I(b)->pool, p)) fail(b, "release", "pointer not from this backend's pool");
}

/* waits until no earlier upload still reads [lo, hi) of the staging ring */
static bool staging_wait(Backend *b, size_t lo, size_t hi)
{
    CudaImpl *c = I(b);
    int last = -1;
    for (int i = 0; i < c->region_count; i++) {
        StagingRegion *r = &c->region[(c->region_first + i) % STAGING_REGIONS];
        if (r->lo < hi && lo < r->hi) last = i;
    }
    if (c->region_count == STAGING_REGIONS && last < 0) last = 0;   /* no free event: the oldest */
    if (last < 0) return true;
    StagingRegion *r = &c->region[(c->region_first + last) % STAGING_REGIONS];
    if (!CU(b, cudaEventSynchronize(r->done), "upload")) return false;
    /* uploads complete in stream order: every older region is done too */
    c->region_first = (c->region_first + last + 1) % STAGING_REGIONS;
    c->region_count -= last + 1;
    return true;
}

static void cu_upload(Backend *b, void *dst, const void *src, size_t n)
{
    GUARD(b);
    CudaImpl *c = I(b);
    if (!n) return;
    if (!c->stage || n > STAGING_BYTES / 2) {
        /* large (initial weights, tests): pageable copy, then wait, since
         * the caller may free the host buffer next */
        if (CU(b, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, S(b)), "upload") &&
            CU(b, cudaStreamSynchronize(S(b)), "upload"))
            prof_end(b, "upload (host waits)");
        return;
    }
    size_t lo = (c->stage_head + 255) / 256 * 256;
    if (lo + n > STAGING_BYTES) lo = 0;
    if (!staging_wait(b, lo, lo + n)) return;
    memcpy(c->stage + lo, src, n);
    StagingRegion *r = &c->region[(c->region_first + c->region_count) % STAGING_REGIONS];
    r->lo = lo;
    r->hi = lo + n;
    if (!CU(b, cudaMemcpyAsync(dst, c->stage + lo, n, cudaMemcpyHostToDevice, S(b)), "upload") ||
        !CU(b, cudaEventRecord(r->done, S(b)), "upload"))
        return;
    prof_end(b, "upload");
    c->region_count++;
    c->stage_head = lo + n;
}
static void cu_download(Backend *b, void *dst, const void *src, size_t n)
{
    GUARD(b);
    if (CU(b, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, S(b)), "download") &&
        CU(b, cudaStreamSynchronize(S(b)), "download"))
        prof_end(b, "download (host waits)");
}
static void cu_zero(Backend *b, void *p, size_t n)
{
    GUARD(b);
    if (n) CU(b, cudaMemsetAsync(p, 0, n, S(b)), "zero");
}
static void cu_copy(Backend *b, void *dst, const void *src, size_t n)
{
    GUARD(b);
    if (n && dst != src) CU(b, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, S(b)), "copy");
}
static void cu_f32_to_act(Backend *b, void *dst, const float *src, size_t n)
{
    GUARD(b);
    cast_f32_to_bf16_cuda((bf16_t *)dst, src, n, S(b));
    LAUNCHED(b, "f32_to_act");
}
static void cu_act_to_f32(Backend *b, float *dst, const void *src, size_t n)
{
    GUARD(b);
    cast_bf16_to_f32_cuda(dst, (const bf16_t *)src, n, S(b));
    LAUNCHED(b, "act_to_f32");
}
static void cu_add_act(Backend *b, void *out, const void *a, const void *x, size_t n)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 3.0 * 2.0 * (double)n);   /* bf16: read a, x; write out */
    residual_forward_cuda((bf16_t *)out, (const bf16_t *)a, (const bf16_t *)x, n, S(b));
    LAUNCHED(b, "add_act");
}

/* ---- GEMMs ---- */
static void cu_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B, int M, int N,
                    int K, int transA, int transB, float beta)
{
    GUARD(b);
    PROF_WORK(b, 2.0 * M * N * (double)K, 0.0);
    ks_ok(b, gemm_cuda(&I(b)->gemm, C, c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, (const bf16_t *)A,
                       (const bf16_t *)B, M, N, K, transA, transB, 1.0f, beta, S(b)), "gemm") &&
        LAUNCHED(b, "gemm");
}
static void cu_grouped_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B,
                            const int32_t *group_rows, int G, int vary, int M, int N, int K,
                            int transA, int transB, float beta)
{
    GUARD(b);
    if (b->op_profile) {
        double rows = 0.0;   /* group_rows is host memory */
        for (int g = 0; g < G; g++) rows += group_rows[g];
        PROF_WORK(b, 2.0 * rows * (double)N * (vary ? (double)M : (double)K), 0.0);
    }
    ks_ok(b, grouped_gemm_cuda(&I(b)->gemm, C, c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16,
                               (const bf16_t *)A, (const bf16_t *)B, group_rows, G,
                               vary ? GROUPED_VARY_K : GROUPED_VARY_M, M, N, K, transA, transB,
                               1.0f, beta, S(b)), "grouped_gemm") &&
        LAUNCHED(b, "grouped_gemm");
}

/* how the grouped GEMMs ran: the implementation asked for, and under auto
 * (or a batched request this cuBLAS cannot serve) the calls of each kind */
static void cu_expert_gemm_name(Backend *b, char *out, size_t cap)
{
    const GemmHandle *h = &I(b)->gemm;
    if (h->grouped_impl == GROUPED_BATCHED)
        snprintf(out, cap, "cublas %s", h->batched_unsupported ? "loop (no grouped batched)" : "grouped batched");
    else if (h->grouped_impl == GROUPED_STRIDED && h->classes_unsupported)
        snprintf(out, cap, "cublas loop (batched refused)");
    else if (h->grouped_impl == GROUPED_STRIDED)
        snprintf(out, cap, "cublas %s", h->strided_calls && h->loop_calls ? "batched + loop"
                                         : h->strided_calls ? "batched" : "loop");
    else
        snprintf(out, cap, "cublas loop");
}

/* ---- layers ---- */
#define BF(p) ((bf16_t *)(p))
#define CBF(p) ((const bf16_t *)(p))
static void cu_embedding_forward(Backend *b, void *out, const int32_t *tok, const void *wte, int N, int C)
{
    GUARD(b);
    embedding_forward_cuda(BF(out), tok, CBF(wte), N, C, S(b));
    LAUNCHED(b, "embedding_forward");
}
static void cu_embedding_backward(Backend *b, float *dwte, const void *dout, const int32_t *tok, int N, int C)
{
    GUARD(b);
    embedding_backward_cuda(dwte, CBF(dout), tok, N, C, S(b));
    LAUNCHED(b, "embedding_backward");
}
static void cu_rmsnorm_forward(Backend *b, void *out, float *rstd, const void *inp, const void *w,
                               int N, int C, float eps)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 2.0 * N * (double)C);   /* bf16 read + write */
    rmsnorm_forward_cuda(BF(out), rstd, CBF(inp), CBF(w), N, C, eps, S(b));
    LAUNCHED(b, "rmsnorm_forward");
}
static void cu_rmsnorm_backward(Backend *b, void *dinp, float *dw, const void *dout, const void *inp,
                                const void *w, const float *rstd, int N, int C)
{
    GUARD(b);
    float *s = (float *)scratch(b, rmsnorm_backward_scratch_floats(N, C) * sizeof(float));
    if (!s) return;
    PROF_WORK(b, 0.0, 3.0 * 2.0 * N * (double)C);   /* read dout, inp; write dinp */
    rmsnorm_backward_cuda(BF(dinp), dw, s, CBF(dout), CBF(inp), CBF(w), rstd, N, C, S(b));
    LAUNCHED(b, "rmsnorm_backward");
}
static void cu_rope(Backend *b, void *x, const int32_t *pos, int N, int H, int D, int stride,
                    float theta, bool backward)
{
    GUARD(b);
    if (backward) rope_backward_cuda(BF(x), pos, N, H, D, stride, theta, S(b));
    else rope_forward_cuda(BF(x), pos, N, H, D, stride, theta, S(b));
    LAUNCHED(b, "rope");
}
/* Attention through kernels/attention_api.h: the one call site of the
 * attention kernels.  The plans of a shape are built on its first call
 * (attention_prepare caches them), which is in the first, untimed warm-up
 * step; a failure sets the sticky status. */
/* forward FLOPs of one attention call (core/flops.h); the backward is
 * counted as 2.5x (FlashAttention-2's convention: the recomputed QK^T) */
#define ATTN_BACKWARD_FLOPS_RATIO 2.5
static double attn_flops(const AttnShape *s)
{
    double pairs = flops_attention_pairs(0.0, s->Tq, 0.0, s->Tk, s->mask != ATTN_MASK_NONE);
    return (double)s->B * flops_attention_core(pairs, s->nh, s->hd_qk, s->hd_v);
}
static bool attn_ok(Backend *b, int rc, const MpError *err, const char *op)
{
    if (!rc) return true;
    fail(b, op, err->msg);
    return false;
}
static void cu_attention_forward(Backend *b, void *out, float *lse, const void *q, const void *k,
                                 const void *v, int B, int T, int nh, int nkv, int hd, int qs, int kvs)
{
    GUARD(b);
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    if (!attn_ok(b, attention_prepare(I(b)->attn, &s, &err), &err, "attention_forward")) return;
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, false);
    void *ws = scratch(b, wsb ? wsb : 16);
    if (!ws) return;
    PROF_WORK(b, attn_flops(&s), 0.0);
    if (attn_ok(b, attention_forward(I(b)->attn, &s, BF(out), lse, CBF(q), CBF(k), CBF(v), ws, wsb, S(b), &err),
                &err, "attention_forward"))
        prof_end(b, "attention_forward");
}
static void cu_attention_backward(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                                  const void *q, const void *k, const void *v, const void *out,
                                  const float *lse, int B, int T, int nh, int nkv, int hd, int qs,
                                  int kvs)
{
    GUARD(b);
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    if (!attn_ok(b, attention_prepare(I(b)->attn, &s, &err), &err, "attention_backward")) return;
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, true);
    void *ws = scratch(b, wsb ? wsb : 16);
    if (!ws) return;
    PROF_WORK(b, ATTN_BACKWARD_FLOPS_RATIO * attn_flops(&s), 0.0);
    if (attn_ok(b, attention_backward(I(b)->attn, &s, BF(dq), BF(dk), BF(dv), CBF(dout), CBF(q), CBF(k),
                                  CBF(v), CBF(out), lse, ws, wsb, S(b), &err),
            &err, "attention_backward"))
        prof_end(b, "attention_backward");
}
/* ring attention blocks (context parallelism): B = 1, offsets 0 */
static AttnShape block_shape(int Tq, int Tk, bool causal, int nh, int nkv, int hd, int qs, int kvs)
{
    AttnShape s = attn_shape_causal(1, Tq, nh, nkv, hd, qs, kvs);
    s.Tk = Tk;
    s.mask = causal ? ATTN_MASK_CAUSAL : ATTN_MASK_NONE;
    return s;
}
static void cu_attention_block_forward(Backend *b, void *out, float *lse, const void *q,
                                       const void *k, const void *v, int Tq, int Tk, bool causal,
                                       int nh, int nkv, int hd, int qs, int kvs)
{
    GUARD(b);
    AttnShape s = block_shape(Tq, Tk, causal, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    if (!attn_ok(b, attention_prepare(I(b)->attn, &s, &err), &err, "attention_block_forward")) return;
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, false);
    void *ws = scratch(b, wsb ? wsb : 16);
    if (!ws) return;
    PROF_WORK(b, attn_flops(&s), 0.0);
    if (attn_ok(b, attention_forward(I(b)->attn, &s, BF(out), lse, CBF(q), CBF(k), CBF(v), ws, wsb, S(b), &err),
                &err, "attention_block_forward"))
        prof_end(b, "attention_block_forward");
}
static void cu_attention_block_backward(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                                        const void *q, const void *k, const void *v,
                                        const void *out, const float *lse, int Tq, int Tk,
                                        bool causal, int nh, int nkv, int hd, int qs, int kvs)
{
    GUARD(b);
    AttnShape s = block_shape(Tq, Tk, causal, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    if (!attn_ok(b, attention_prepare(I(b)->attn, &s, &err), &err, "attention_block_backward")) return;
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, true);
    void *ws = scratch(b, wsb ? wsb : 16);
    if (!ws) return;
    PROF_WORK(b, ATTN_BACKWARD_FLOPS_RATIO * attn_flops(&s), 0.0);
    if (attn_ok(b, attention_backward(I(b)->attn, &s, BF(dq), BF(dk), BF(dv), CBF(dout), CBF(q), CBF(k),
                                      CBF(v), CBF(out), lse, ws, wsb, S(b), &err),
                &err, "attention_block_backward"))
        prof_end(b, "attention_block_backward");
}
static void cu_attention_merge(Backend *b, void *out1, float *lse1, const void *out2,
                               const float *lse2, int T, int nh, int hd)
{
    GUARD(b);
    MpError err = {{0}};
    attn_ok(b, attention_merge_cuda(BF(out1), lse1, CBF(out2), lse2, 1, T, nh, hd, S(b), &err), &err,
            "attention_merge");
}
static void cu_copy_2d(Backend *b, void *dst, size_t dpitch, const void *src, size_t spitch,
                       size_t width, size_t rows)
{
    GUARD(b);
    if (width && rows)
        CU(b, cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, S(b)),
           "copy_2d");
}
static void cu_router_forward(Backend *b, float *probs, int32_t *idx, float *tp, const float *logits,
                              int N, int E, int k, int renorm)
{
    GUARD(b);
    router_forward_cuda(probs, idx, tp, logits, N, E, k, renorm, S(b));
    LAUNCHED(b, "router_forward");
}
static void cu_router_backward(Backend *b, float *dlogits, const float *dtp, const float *probs,
                               const int32_t *idx, const float *tp, int N, int E, int k, int renorm)
{
    GUARD(b);
    router_backward_cuda(dlogits, dtp, probs, idx, tp, N, E, k, renorm, S(b));
    LAUNCHED(b, "router_backward");
}
static void cu_swiglu_forward(Backend *b, void *out, const void *gu, int N, int F)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 3.0 * N * (double)F);   /* read [N, 2F], write [N, F] (bf16) */
    swiglu_forward_cuda(BF(out), CBF(gu), N, F, S(b));
    LAUNCHED(b, "swiglu_forward");
}
static void cu_swiglu_backward(Backend *b, void *dgu, const void *dout, const void *gu, int N, int F)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 5.0 * N * (double)F);   /* read dout [N, F], gu [N, 2F]; write dgu [N, 2F] */
    swiglu_backward_cuda(BF(dgu), CBF(dout), CBF(gu), N, F, S(b));
    LAUNCHED(b, "swiglu_backward");
}
static void cu_cross_entropy(Backend *b, float *losses, void *dlogits, const void *logits,
                             const int32_t *targets, int N, int V, float dloss)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 2.0 * N * (double)V);   /* read logits, write dlogits (bf16) */
    crossentropy_fused_cuda(BF(dlogits), losses, CBF(logits), targets, dloss, N, V, S(b));
    LAUNCHED(b, "cross_entropy");
}
static void cu_ce_vp_stats(Backend *b, float *stats, const void *logits, const int32_t *targets_local,
                           int N, int Vl)
{
    GUARD(b);
    crossentropy_vp_stats_cuda(stats, CBF(logits), targets_local, N, Vl, S(b));
    LAUNCHED(b, "ce_vp_stats");
}
static void cu_ce_vp_finish(Backend *b, float *losses, void *dlogits, const void *logits,
                            const int32_t *targets_local, const float *all_stats, int P, int N, int Vl,
                            float dloss)
{
    GUARD(b);
    crossentropy_vp_finish_cuda(losses, BF(dlogits), CBF(logits), targets_local, all_stats, P, dloss, N, Vl,
                                S(b));
    LAUNCHED(b, "ce_vp_finish");
}
static void cu_permute(Backend *b, void *out, const void *inp, const int32_t *row_of, int N, int k, int C)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 2.0 * N * (double)k * C);   /* read and write N*k rows (bf16) */
    moe_permute_forward_cuda(BF(out), CBF(inp), row_of, N, k, C, S(b));
    LAUNCHED(b, "permute");
}
static void cu_permute_backward(Backend *b, void *dinp, const void *dout, const int32_t *row_of,
                                int N, int k, int C)
{
    GUARD(b);
    PROF_WORK(b, 0.0, 2.0 * 2.0 * N * (double)k * C);
    moe_permute_backward_cuda(BF(dinp), CBF(dout), row_of, N, k, C, S(b));
    LAUNCHED(b, "permute_backward");
}
static void cu_unpermute(Backend *b, void *out, const void *inp, const float *prob,
                         const int32_t *row_of, int N, int k, int C)
{
    GUARD(b);
    moe_unpermute_forward_cuda(BF(out), CBF(inp), prob, row_of, N, k, C, S(b));
    LAUNCHED(b, "unpermute");
}
static void cu_unpermute_backward(Backend *b, void *dinp, float *dprob, const void *dout,
                                  const void *inp, const float *prob, const int32_t *row_of, int N,
                                  int k, int C)
{
    GUARD(b);
    moe_unpermute_backward_cuda(BF(dinp), dprob, CBF(dout), CBF(inp), prob, row_of, N, k, C, S(b));
    LAUNCHED(b, "unpermute_backward");
}
/* capacity > 0: rows of the dense kept order -> padded layout, expert e
 * owning [e*cap, (e+1)*cap) (as dispatch_row_map); E <= 256 */
__global__ static void moe_pad_rows_kernel(int32_t *row_of, const int32_t *kept, const int32_t *idx,
                                           int pairs, int E, int cap)
{
    __shared__ int first[256];
    if (threadIdx.x == 0) {
        int s = 0;
        for (int e = 0; e < E; e++) { first[e] = s; s += kept[e]; }
    }
    __syncthreads();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pairs) return;
    int r = row_of[i];
    if (r < 0) return;
    int e = idx[i];
    row_of[i] = e * cap + (r - first[e]);
}
static int32_t *ints(Backend *b, size_t n);
static void cu_moe_plan(Backend *b, int32_t *row_of, int32_t *kept_rows, const int32_t *idx, int N,
                        int k, int E, int capacity)
{
    GUARD(b);
    if (E > 256) { fail(b, "moe_plan", "more than 256 experts"); return; }
    int32_t *counts = ints(b, (size_t)E);
    if (!counts) return;
    moe_plan_cuda(row_of, counts, idx, N, k, E, capacity, S(b));
    if (!LAUNCHED(b, "moe_plan")) return;
    int pairs = N * k;
    if (capacity > 0 && pairs > 0) {
        moe_pad_rows_kernel<<<(pairs + 255) / 256, 256, 0, S(b)>>>(row_of, counts, idx, pairs, E, capacity);
        if (!LAUNCHED(b, "moe_plan")) return;
    }
    cu_download(b, kept_rows, counts, sizeof(int32_t) * (size_t)E);
}
static void cu_gather_rows(Backend *b, void *out, const void *inp, const int32_t *src, int n, int C)
{
    GUARD(b);
    gather_rows_cuda(BF(out), CBF(inp), src, n, C, S(b));
    LAUNCHED(b, "gather_rows");
}
static void cu_adam(Backend *b, float *param, void *param_act, const float *grad, float *m, float *v,
                    size_t n, float lr, float b1, float b2, float eps, float wd, int t)
{
    GUARD(b);
    AdamParams p;
    p.lr = lr; p.beta1 = b1; p.beta2 = b2; p.eps = eps; p.weight_decay = wd; p.step = t;
    p.grad_scale = 1.0f;
    /* fp32 param, m, v read and written, fp32 grad read, bf16 copy written */
    PROF_WORK(b, 0.0, (3.0 * 8.0 + 4.0 + 2.0) * (double)n);
    adam_update_cuda(param, BF(param_act), m, v, grad, n, &p, S(b));
    LAUNCHED(b, "adam");
}

/* out [1] = sum x [n] (or += with accumulate): one block of 256 threads */
__global__ static void sum_kernel(float *out, const float *x, size_t n, int accumulate)
{
    float s = 0.0f;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}
static double cu_sum_f32(Backend *b, const float *x, size_t n)
{
    if (I(b)->failed) return 0.0;
    sum_kernel<<<1, 256, 0, S(b)>>>(I(b)->sum, x, n, 0);
    if (!LAUNCHED(b, "sum_f32")) return 0.0;
    float h = 0.0f;
    cu_download(b, &h, I(b)->sum, sizeof h);
    return h;
}

static void cu_accumulate_sum(Backend *b, float *acc, const float *x, size_t n)
{
    GUARD(b);
    sum_kernel<<<1, 256, 0, S(b)>>>(acc, x, n, 1);   /* acc += sum x, no synchronisation */
    LAUNCHED(b, "accumulate_sum");
}

/* Auxiliary load-balancing loss (backend.h), E <= 256, in two deterministic
 * passes (no float atomics: the same sums in the same order every step).
 *   1. AUX_BLOCKS blocks of 256 threads, block b over its slice of the N
 *      token rows: lane l = tid / E of column e = tid % E sums rows l, l +
 *      lanes, ... of the slice (a warp reads consecutive columns of a row:
 *      coalesced), the lanes of a column are added in shared memory, and the
 *      slice's per-expert probability sum and top-k count go to
 *      partial[b][E] (float) and count[b][E] (int).
 *   2. one block: expert e adds its AUX_BLOCKS partials in block order, then
 *      thread 0 forms the loss and gcoef.
 * One block over all N rows (before) used E / 256 of the GPU: at 128 experts
 * two threads per column walked 8192 rows each. */
#define AUX_BLOCKS 64
__global__ static void aux_partial_kernel(float *partial, int *count, const float *probs,
                                          const int32_t *idx, int N, int E, int k)
{
    __shared__ float psum[256];
    __shared__ int cnt[256];
    int lanes = blockDim.x / E, e = threadIdx.x % E, lane = threadIdx.x / E;
    int per_block = (N + gridDim.x - 1) / gridDim.x;
    int r0 = blockIdx.x * per_block, r1 = min(N, r0 + per_block);
    float s = 0.0f;
    if (lane < lanes)
        for (int t = r0 + lane; t < r1; t += lanes) s += probs[(size_t)t * E + e];
    psum[threadIdx.x] = s;
    if (threadIdx.x < E) cnt[threadIdx.x] = 0;
    __syncthreads();
    for (int i = r0 * k + threadIdx.x; i < r1 * k; i += blockDim.x) atomicAdd(&cnt[idx[i]], 1);
    __syncthreads();
    if (threadIdx.x < E) {
        float tot = 0.0f;
        for (int l = 0; l < lanes; l++) tot += psum[l * E + threadIdx.x];
        partial[(size_t)blockIdx.x * E + threadIdx.x] = tot;
        count[(size_t)blockIdx.x * E + threadIdx.x] = cnt[threadIdx.x];
    }
}
__global__ static void aux_finish_kernel(float *gcoef, float *loss_acc, const float *partial,
                                         const int *count, int blocks, int N, int E, int k,
                                         float coeff, float weight)
{
    __shared__ float psum[256];
    __shared__ int cnt[256];
    int e = threadIdx.x;
    if (e < E) {
        float s = 0.0f;
        int c = 0;
        for (int b = 0; b < blocks; b++) { s += partial[(size_t)b * E + e]; c += count[(size_t)b * E + e]; }
        psum[e] = s; cnt[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float aux = 0.0f;
        for (int j = 0; j < E; j++) {
            float f = (float)cnt[j] / ((float)N * k);
            aux += f * (psum[j] / N);
            gcoef[j] = coeff * E * f / N;
        }
        *loss_acc += weight * coeff * E * aux;
    }
}
static void cu_aux_loss_forward(Backend *b, float *gcoef, float *loss_acc, const float *probs,
                                const int32_t *idx, int N, int E, int k, float coeff, float weight)
{
    GUARD(b);
    if (E > 256) { fail(b, "aux_loss_forward", "more than 256 experts"); return; }
    int blocks = N < AUX_BLOCKS * 64 ? (N + 63) / 64 : AUX_BLOCKS;
    if (blocks < 1) blocks = 1;
    float *partial = I(b)->aux_partial;
    int *count = (int *)(partial + AUX_BLOCKS * 256);
    aux_partial_kernel<<<blocks, 256, 0, S(b)>>>(partial, count, probs, idx, N, E, k);
    aux_finish_kernel<<<1, 256, 0, S(b)>>>(gcoef, loss_acc, partial, count, blocks, N, E, k, coeff, weight);
    LAUNCHED(b, "aux_loss_forward");
}
/* one thread per token row */
__global__ static void aux_backward_kernel(float *dlogits, const float *probs, const float *gcoef,
                                           int N, int E, float scale)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N) return;
    const float *p = probs + (size_t)t * E;
    float dot = 0.0f;
    for (int e = 0; e < E; e++) dot += p[e] * gcoef[e];
    for (int e = 0; e < E; e++) dlogits[(size_t)t * E + e] += scale * p[e] * (gcoef[e] - dot);
}
static void cu_aux_loss_backward(Backend *b, float *dlogits, const float *probs, const float *gcoef,
                                 int N, int E, float scale)
{
    GUARD(b);
    aux_backward_kernel<<<(N + 255) / 256, 256, 0, S(b)>>>(dlogits, probs, gcoef, N, E, scale);
    LAUNCHED(b, "aux_loss_backward");
}

/* ---- collectives: on the communication stream, joined both ways ---- */
static ncclComm_t comm_of(Backend *b, GroupKind g)
{
    const ExecComms *c = b->comms;
    if (c->size_of[g] <= 1 || !c->handle[g]) return NULL;
    return (ncclComm_t)c->handle[g];
}
static ncclDataType_t nccl_type(ElemType t)
{
    return t == DT_ACT ? ncclBfloat16 : t == DT_F32 ? ncclFloat32 : ncclInt32;
}
/* the communication stream, after the compute work enqueued so far and
 * after the bucket collectives already enqueued on the same communicator
 * (NCCL runs the operations of one communicator in the order issued: two
 * streams must not have them in flight together) */
static cudaStream_t comm_begin(Backend *b, GroupKind g, const char *op)
{
    CudaImpl *c = I(b);
    if (!CU(b, cudaEventRecord(c->to_comm, c->stream), op) ||
        !CU(b, cudaStreamWaitEvent(c->comm, c->to_comm, 0), op))
        return NULL;
    if (c->bucket_group_used[g] && !CU(b, cudaStreamWaitEvent(c->comm, c->bucket_group_ev[g], 0), op)) return NULL;
    return c->comm;
}
/* the watchdog's deadline for the collective just enqueued on stream s */
static void watch_collective(Backend *b, cudaStream_t s, GroupKind g, const char *op)
{
    CudaImpl *c = I(b);
    if (!c->watch || c->failed) return;
    long long now = device_watch_now_ns();
    cudaEvent_t ev = (cudaEvent_t)device_watch_reserve(c->watch, now);
    if (ev && CU(b, cudaEventRecord(ev, s), op)) device_watch_commit(c->watch, (int)g, op, now);
}
/* Runs on the watchdog thread (and on the main thread when the ring is
 * full): 1 once the event's work completed.  An error counts as completed:
 * the sticky status reports it on the main thread. */
static int watch_event_done(void *ctx, void *event)
{
    CudaImpl *c = (CudaImpl *)ctx;
    cudaSetDevice(c->device);   /* the watchdog thread: this rank's device, not device 0 */
    cudaError_t e = cudaEventQuery((cudaEvent_t)event);
    if (e == cudaErrorNotReady) return 0;
    if (e != cudaSuccess) cudaGetLastError();   /* this thread's copy of the error */
    return 1;
}
/* the compute stream continues after the communication enqueued so far */
static void comm_end(Backend *b, GroupKind g, const char *op)
{
    CudaImpl *c = I(b);
    watch_collective(b, c->comm, g, op);
    if (CU(b, cudaEventRecord(c->to_compute, c->comm), op))
        CU(b, cudaStreamWaitEvent(c->stream, c->to_compute, 0), op);
}
static void cu_all_reduce(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    if (!c || !n) return;
    cudaStream_t s = comm_begin(b, g, "all_reduce");
    if (!s) return;
    nccl_ok(b, ncclAllReduce(buf, buf, n, nccl_type(t), ncclSum, c, s), "all_reduce");
    comm_end(b, g, "all_reduce");
}
static void cu_all_gather(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return; }
    if (!n) return;
    cudaStream_t s = comm_begin(b, g, "all_gather");
    if (!s) return;
    nccl_ok(b, ncclAllGather(send, recv, n, nccl_type(t), c, s), "all_gather");
    comm_end(b, g, "all_gather");
}
static void cu_reduce_scatter(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return; }
    if (!n) return;
    cudaStream_t s = comm_begin(b, g, "reduce_scatter");
    if (!s) return;
    nccl_ok(b, ncclReduceScatter(send, recv, n, nccl_type(t), ncclSum, c, s), "reduce_scatter");
    comm_end(b, g, "reduce_scatter");
}
/* ---- nonblocking collectives (gradient buckets) on the bucket stream ---- */
/* a free handle with its event; the bucket stream after the compute work so far */
static int async_begin(Backend *b, cudaStream_t *s, const char *op)
{
    CudaImpl *c = I(b);
    int h = -1;
    for (int i = 0; i < BACKEND_ASYNC_MAX && h < 0; i++) if (!c->async_used[i]) h = i;
    if (h < 0) { fail(b, op, "more than BACKEND_ASYNC_MAX collectives pending"); return -1; }
    if (!c->async_ev[h] && !CU(b, cudaEventCreateWithFlags(&c->async_ev[h], cudaEventDisableTiming), op)) return -1;
    if (!CU(b, cudaEventRecord(c->to_bucket, c->stream), op) ||
        !CU(b, cudaStreamWaitEvent(c->bucket, c->to_bucket, 0), op))
        return -1;
    *s = c->bucket;
    return h;
}
/* the event that async_wait joins the compute stream to */
static int async_end(Backend *b, int h, GroupKind g, const char *op)
{
    CudaImpl *c = I(b);
    watch_collective(b, c->bucket, g, op);
    if (!CU(b, cudaEventRecord(c->async_ev[h], c->bucket), op)) return -1;
    c->async_used[h] = 1;
    if (!c->bucket_group_ev[g] &&
        !CU(b, cudaEventCreateWithFlags(&c->bucket_group_ev[g], cudaEventDisableTiming), op))
        return h;
    if (CU(b, cudaEventRecord(c->bucket_group_ev[g], c->bucket), op)) c->bucket_group_used[g] = 1;
    return h;
}
static int cu_all_reduce_start(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    if (I(b)->failed) return -1;
    ncclComm_t c = comm_of(b, g);
    if (!c || !n) return -1;
    cudaStream_t s;
    int h = async_begin(b, &s, "all_reduce_start");
    if (h < 0 || !nccl_ok(b, ncclAllReduce(buf, buf, n, nccl_type(t), ncclSum, c, s), "all_reduce_start")) return -1;
    return async_end(b, h, g, "all_reduce_start");
}
static int cu_reduce_scatter_start(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    if (I(b)->failed) return -1;
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return -1; }
    if (!n) return -1;
    cudaStream_t s;
    int h = async_begin(b, &s, "reduce_scatter_start");
    if (h < 0 || !nccl_ok(b, ncclReduceScatter(send, recv, n, nccl_type(t), ncclSum, c, s), "reduce_scatter_start"))
        return -1;
    return async_end(b, h, g, "reduce_scatter_start");
}
static int cu_all_gather_start(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    if (I(b)->failed) return -1;
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return -1; }
    if (!n) return -1;
    cudaStream_t s;
    int h = async_begin(b, &s, "all_gather_start");
    if (h < 0 || !nccl_ok(b, ncclAllGather(send, recv, n, nccl_type(t), c, s), "all_gather_start")) return -1;
    return async_end(b, h, g, "all_gather_start");
}
static void cu_async_wait(Backend *b, int h)
{
    CudaImpl *c = I(b);
    if (h < 0 || h >= BACKEND_ASYNC_MAX || !c->async_used[h]) return;
    c->async_used[h] = 0;
    if (!c->failed) CU(b, cudaStreamWaitEvent(c->stream, c->async_ev[h], 0), "async_wait");
}
static void cu_async_poll(Backend *b) { (void)b; }   /* NCCL progresses on the GPU */
static void cu_mem_category(Backend *b, int category) { pool_set_category(&I(b)->pool, category); }
static void cu_mem_report(Backend *b, double *peak_total, double *peak_by_category)
{
    const DevicePool *p = &I(b)->pool;
    *peak_total = (double)p->peak_in_use;
    for (int k = 0; k < MEM_CATEGORY_COUNT; k++) peak_by_category[k] = (double)p->cat_at_peak[k];
}

/* send/recv pairs of one NCCL group; counts in elements */
static void send_recv_all(Backend *b, ncclComm_t c, cudaStream_t s, int n, const void *send,
                          const size_t *sc, const size_t *sd, void *recv, const size_t *rc,
                          const size_t *rd, ncclDataType_t type, size_t eb, const char *op)
{
    if (!nccl_ok(b, ncclGroupStart(), op)) return;
    for (int r = 0; r < n; r++) {
        if (sc[r] && !nccl_ok(b, ncclSend((const char *)send + sd[r] * eb, sc[r], type, r, c, s), op)) break;
        if (rc[r] && !nccl_ok(b, ncclRecv((char *)recv + rd[r] * eb, rc[r], type, r, c, s), op)) break;
    }
    nccl_ok(b, ncclGroupEnd(), op);
}
static void cu_all_to_all_v(Backend *b, const void *send, const size_t *sc, const size_t *sd,
                            void *recv, const size_t *rc, const size_t *rd, ElemType t, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    size_t eb = elem_bytes(b, t);
    if (!c) {
        cu_copy(b, (char *)recv + rd[0] * eb, (const char *)send + sd[0] * eb, sc[0] * eb);
        return;
    }
    cudaStream_t s = comm_begin(b, g, "all_to_all_v");
    if (!s) return;
    send_recv_all(b, c, s, b->comms->size_of[g], send, sc, sd, recv, rc, rd, nccl_type(t), eb,
                  "all_to_all_v");
    comm_end(b, g, "all_to_all_v");
}
/* ==== nonblocking point-to-point (backend.h p2p_start / p2p_wait) ====
 * One NCCL group on the stream of the group kind (pipeline: p2p; the CP
 * ring and any other: ring), after an event recorded on the compute stream;
 * the event of the batch's slot recorded after the group; the wait makes
 * the compute stream wait on it (no host wait). */
static int cu_p2p_start(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g)
{
    if (I(b)->failed) return -1;
    ncclComm_t c = comm_of(b, g);
    if (!c || n <= 0) return -1;
    if (n > BACKEND_P2P_MAX) { fail(b, "p2p", "more than BACKEND_P2P_MAX transfers in one batch"); return -1; }
    CudaImpl *ci = I(b);
    int h = 0;
    while (h < BACKEND_P2P_INFLIGHT && ci->p2p_used[h]) h++;
    if (h == BACKEND_P2P_INFLIGHT) { fail(b, "p2p", "more than BACKEND_P2P_INFLIGHT batches in flight"); return -1; }
    cudaStream_t s = g == GROUP_PP ? ci->p2p : ci->ring;
    if (!CU(b, cudaEventRecord(ci->to_p2p, ci->stream), "p2p") ||
        !CU(b, cudaStreamWaitEvent(s, ci->to_p2p, 0), "p2p"))
        return -1;
    if (!nccl_ok(b, ncclGroupStart(), "p2p")) return -1;
    for (int i = 0; i < n; i++) {
        ncclResult_t r = ops[i].send
            ? ncclSend(ops[i].buf, ops[i].n, nccl_type(t), ops[i].peer, c, s)
            : ncclRecv(ops[i].buf, ops[i].n, nccl_type(t), ops[i].peer, c, s);
        if (!nccl_ok(b, r, "p2p")) break;
    }
    if (!nccl_ok(b, ncclGroupEnd(), "p2p")) return -1;
    watch_collective(b, s, g, g == GROUP_PP ? "pipeline send/recv" : "ring send/recv");
    if (!CU(b, cudaEventRecord(ci->p2p_done[h], s), "p2p")) return -1;
    ci->p2p_used[h] = true;
    return h;
}
static void cu_p2p_wait(Backend *b, int h)
{
    if (h < 0) return;
    CudaImpl *ci = I(b);
    if (h >= BACKEND_P2P_INFLIGHT || !ci->p2p_used[h]) { fail(b, "p2p_wait", "not a batch in flight"); return; }
    ci->p2p_used[h] = false;
    GUARD(b);
    CU(b, cudaStreamWaitEvent(ci->stream, ci->p2p_done[h], 0), "p2p_wait");
}
static void cu_p2p(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g)
{
    cu_p2p_wait(b, cu_p2p_start(b, ops, n, t, g));
}
/* device ints for the count exchange (grow-only, from the pool) */
static int32_t *ints(Backend *b, size_t n)
{
    CudaImpl *c = I(b);
    if (c->ints_n < n) {
        pool_free(&c->pool, c->ints);
        c->ints_n = 0;
        c->ints = (int32_t *)pool_alloc(&c->pool, n * sizeof(int32_t));
        if (!c->ints) { fail(b, "count exchange", "device memory exhausted"); return NULL; }
        c->ints_n = n;
    }
    return c->ints;
}
static void cu_all_to_all_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    if (!c) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    int sz = b->comms->size_of[g];
    int32_t *d = ints(b, 2 * (size_t)sz * n);
    if (!d) return;
    cu_upload(b, d, send, sizeof(int32_t) * (size_t)sz * n);
    cudaStream_t s = comm_begin(b, g, "count exchange");
    if (!s) return;
    if (!nccl_ok(b, ncclGroupStart(), "count exchange")) return;
    for (int r = 0; r < sz; r++) {
        if (!nccl_ok(b, ncclSend(d + (size_t)r * n, (size_t)n, ncclInt32, r, c, s), "count exchange") ||
            !nccl_ok(b, ncclRecv(d + (size_t)(sz + r) * n, (size_t)n, ncclInt32, r, c, s), "count exchange"))
            break;
    }
    nccl_ok(b, ncclGroupEnd(), "count exchange");
    comm_end(b, g, "count exchange");
    cu_download(b, recv, d + (size_t)sz * n, sizeof(int32_t) * (size_t)sz * n);
}
static void cu_all_gather_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n, GroupKind g)
{
    GUARD(b);
    ncclComm_t c = comm_of(b, g);
    if (!c) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    int sz = b->comms->size_of[g];
    int32_t *d = ints(b, (size_t)(sz + 1) * n);
    if (!d) return;
    cu_upload(b, d, send, sizeof(int32_t) * (size_t)n);
    cudaStream_t s = comm_begin(b, g, "count all-gather");
    if (!s) return;
    nccl_ok(b, ncclAllGather(d, d + n, (size_t)n, ncclInt32, c, s), "count all-gather");
    comm_end(b, g, "count all-gather");
    cu_download(b, recv, d + n, sizeof(int32_t) * (size_t)sz * n);
}

/* ---- timing ---- */
static void cu_phase_begin(Backend *b, StepPhase p)
{
    GUARD(b);
    CudaImpl *c = I(b);
    TimedSpan *e = span_next(b, &c->ev, &c->nev, &c->cap_ev, 256, "phase_begin");
    if (!e) return;
    e->phase = p;
    c->open[p] = c->nev - 1;
    if (c->phase_depth < (int)(sizeof c->phase_stack / sizeof c->phase_stack[0]))
        c->phase_stack[c->phase_depth++] = p;
    CU(b, cudaEventRecord(e->begin, c->stream), "phase_begin");
}
static void cu_phase_end(Backend *b, StepPhase p)
{
    GUARD(b);
    CudaImpl *c = I(b);
    for (int i = c->phase_depth - 1; i >= 0; i--)   /* the innermost p and all inside it */
        if (c->phase_stack[i] == (int)p) { c->phase_depth = i; break; }
    if (c->open[p] < 0) return;
    CU(b, cudaEventRecord(c->ev[c->open[p]].end, c->stream), "phase_end");
    c->open[p] = -1;
}
static double cu_step_times(Backend *b, double *out)
{
    CudaImpl *c = I(b);
    if (c->failed) return 0.0;
    cudaEvent_t mark;
    if (!CU(b, cudaEventCreate(&mark), "step_times")) return 0.0;
    if (!CU(b, cudaEventRecord(mark, c->stream), "step_times") ||
        !CU(b, cudaEventSynchronize(mark), "step_times")) {
        cudaEventDestroy(mark);
        return 0.0;
    }
    for (int i = 0; i < c->nev; i++) {
        float ms = 0.0f;
        if (!CU(b, cudaEventElapsedTime(&ms, c->ev[i].begin, c->ev[i].end), "step_times")) break;
        out[c->ev[i].phase] += ms * 1e-3;
    }
    c->nev = 0;
    if (b->op_profile) {
        for (int i = 0; i < c->nprof; i++) {
            float ms = 0.0f;
            if (!c->prof[i].op) continue;
            if (!CU(b, cudaEventElapsedTime(&ms, c->prof[i].begin, c->prof[i].end), "op profile")) break;
            if (op_profile_add(b->op_profile, c->prof[i].phase, c->prof[i].op, ms * 1e-3, c->prof[i].host_s,
                               c->prof[i].flops, c->prof[i].bytes)) {
                fail(b, "op profile", "out of host memory");
                break;
            }
        }
        b->op_profile->steps++;
    }
    c->nprof = 0;
    c->prof_open = -1;
    double dt = 0;
    if (c->have_mark) {
        float ms = 0.0f;
        CU(b, cudaEventElapsedTime(&ms, c->step_mark, mark), "step_times");
        dt = ms * 1e-3;
        cudaEventDestroy(c->step_mark);
    }
    c->step_mark = mark;
    c->have_mark = true;
    size_t fr, tot;
    if (CU(b, cudaMemGetInfo(&fr, &tot), "step_times") && (double)(tot - fr) > c->peak)
        c->peak = (double)(tot - fr);
    return dt;
}
static double cu_peak_memory(Backend *b)
{
    size_t fr, tot;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) { cudaGetLastError(); return I(b)->peak; }
    double now = (double)(tot - fr);
    return now > I(b)->peak ? now : I(b)->peak;
}
static int cu_status(Backend *b, MpError *err)
{
    CudaImpl *c = I(b);
    if (!c->failed) cu_ok(b, cudaGetLastError(), "asynchronous");   /* a fault since the last operation */
    if (!c->failed) return 0;
    return mp_fail(err, "%s", c->error);
}
/* At the end of a step (after its loss read synchronised the compute
 * stream): blocks that a buffer's growth left free go back to CUDA, so
 * growth does not hold memory twice.  Nothing is freed inside a step. */
static void cu_in_step(Backend *b, bool on)
{
    CudaImpl *c = I(b);
    pool_set_in_step(&c->pool, on);
    if (!on && !c->failed) {
        for (int i = 0; i < c->pool.count; i++)
            if (!c->pool.blocks[i].used) {
                CU(b, cudaStreamSynchronize(c->comm), "in_step");
                CU(b, cudaStreamSynchronize(c->p2p), "in_step");
                CU(b, cudaStreamSynchronize(c->bucket), "in_step");
                CU(b, cudaStreamSynchronize(c->ring), "in_step");
                CU(b, cudaStreamSynchronize(c->stream), "in_step");
                pool_trim(&c->pool);
                break;
            }
    }
}
static long cu_step_allocs(Backend *b) { return I(b)->pool.step_raw_allocs; }
static void cu_destroy(Backend *b)
{
    if (!b) return;
    CudaImpl *c = I(b);
    if (c->watch) device_watch_detach(c->watch);   /* the watchdog stops querying watch_ev */
    for (int i = 0; i < DEVICE_WATCH_CAPACITY; i++) if (c->watch_ev[i]) cudaEventDestroy(c->watch_ev[i]);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->comm) cudaStreamSynchronize(c->comm);
    if (c->p2p) cudaStreamSynchronize(c->p2p);
    if (c->bucket) cudaStreamSynchronize(c->bucket);
    for (int i = 0; i < BACKEND_ASYNC_MAX; i++) if (c->async_ev[i]) cudaEventDestroy(c->async_ev[i]);
    for (int i = 0; i < GROUP_KIND_COUNT; i++) if (c->bucket_group_ev[i]) cudaEventDestroy(c->bucket_group_ev[i]);
    if (c->to_bucket) cudaEventDestroy(c->to_bucket);
    if (c->ring) cudaStreamSynchronize(c->ring);
    for (int i = 0; i < c->cap_ev; i++) { cudaEventDestroy(c->ev[i].begin); cudaEventDestroy(c->ev[i].end); }
    free(c->ev);
    for (int i = 0; i < c->cap_prof; i++) { cudaEventDestroy(c->prof[i].begin); cudaEventDestroy(c->prof[i].end); }
    free(c->prof);
    for (int i = 0; i < STAGING_REGIONS; i++) if (c->region[i].done) cudaEventDestroy(c->region[i].done);
    if (c->stage) cudaFreeHost(c->stage);
    if (c->have_mark) cudaEventDestroy(c->step_mark);
    if (c->to_comm) cudaEventDestroy(c->to_comm);
    if (c->to_compute) cudaEventDestroy(c->to_compute);
    if (c->to_p2p) cudaEventDestroy(c->to_p2p);
    for (int i = 0; i < BACKEND_P2P_INFLIGHT; i++) if (c->p2p_done[i]) cudaEventDestroy(c->p2p_done[i]);
    if (c->sum) cudaFree(c->sum);
    if (c->aux_partial) cudaFree(c->aux_partial);
    if (c->attn) attention_engine_destroy(c->attn);
    pool_destroy(&c->pool);   /* scratch, ints and every block the model released */
    if (c->gemm_ready) gemm_handle_destroy(&c->gemm);
    if (c->comm) cudaStreamDestroy(c->comm);
    if (c->p2p) cudaStreamDestroy(c->p2p);
    if (c->bucket) cudaStreamDestroy(c->bucket);
    if (c->ring) cudaStreamDestroy(c->ring);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c);
    free(b);
}

extern "C" int backend_cuda_create(const ExecComms *comms, ExecAttention attention,
                                   ExecExpertGemm expert_gemm, Backend **out, MpError *err)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return mp_fail(err, "backend: no CUDA device is visible");
    }
    if (comms->local_rank < 0 || comms->local_rank >= n)
        return mp_fail(err, "local_rank: %d: only %d CUDA devices are visible", comms->local_rank, n);
    Backend *b = (Backend *)calloc(1, sizeof *b);
    CudaImpl *c = (CudaImpl *)calloc(1, sizeof *c);
    if (!b || !c) { free(b); free(c); return mp_fail(err, "executor: out of host memory"); }
    c->device = comms->local_rank;
    b->impl = c;
    b->name = "cuda";
    b->act_bytes = 2;
    b->comms = comms;
    for (int p = 0; p < PHASE_COUNT; p++) c->open[p] = -1;
    c->prof_open = -1;
    pool_init(&c->pool, raw_alloc, raw_free, NULL);
    bool ok = CU(b, cudaSetDevice(c->device), "create") &&
              CU(b, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "create") &&
              CU(b, cudaStreamCreateWithFlags(&c->comm, cudaStreamNonBlocking), "create") &&
              CU(b, cudaEventCreateWithFlags(&c->to_comm, cudaEventDisableTiming), "create") &&
              CU(b, cudaEventCreateWithFlags(&c->to_compute, cudaEventDisableTiming), "create") &&
              CU(b, cudaStreamCreateWithFlags(&c->p2p, cudaStreamNonBlocking), "create") &&
              CU(b, cudaEventCreateWithFlags(&c->to_p2p, cudaEventDisableTiming), "create") &&
              CU(b, cudaStreamCreateWithFlags(&c->bucket, cudaStreamNonBlocking), "create") &&
              CU(b, cudaEventCreateWithFlags(&c->to_bucket, cudaEventDisableTiming), "create") &&
              CU(b, cudaStreamCreateWithFlags(&c->ring, cudaStreamNonBlocking), "create") &&
              CU(b, cudaMalloc(&c->sum, sizeof(float)), "create") &&
              CU(b, cudaMalloc(&c->aux_partial, AUX_BLOCKS * 256 * (sizeof(float) + sizeof(int))), "create") &&
              CU(b, cudaHostAlloc((void **)&c->stage, STAGING_BYTES, cudaHostAllocDefault), "create");
    for (int i = 0; ok && i < STAGING_REGIONS; i++)
        ok = CU(b, cudaEventCreateWithFlags(&c->region[i].done, cudaEventDisableTiming), "create");
    for (int i = 0; ok && i < BACKEND_P2P_INFLIGHT; i++)
        ok = CU(b, cudaEventCreateWithFlags(&c->p2p_done[i], cudaEventDisableTiming), "create");
    if (ok && comms->device_watch) {
        void *evs[DEVICE_WATCH_CAPACITY];
        for (int i = 0; ok && i < DEVICE_WATCH_CAPACITY; i++) {
            ok = CU(b, cudaEventCreateWithFlags(&c->watch_ev[i], cudaEventDisableTiming), "create: watch events");
            evs[i] = c->watch_ev[i];
        }
        /* a second backend on the same communicators (none in moeplan today) is not watched */
        if (ok && !device_watch_attach(comms->device_watch, evs, DEVICE_WATCH_CAPACITY, watch_event_done, c))
            c->watch = comms->device_watch;
    }
    if (ok) {
        ok = ks_ok(b, gemm_handle_init(&c->gemm), "create: cuBLAS");
        c->gemm_ready = 1;   /* destroy releases whatever init created */
        c->gemm.grouped_impl = expert_gemm == EXEC_EXPERT_GEMM_LOOP      ? GROUPED_LOOP
                               : expert_gemm == EXEC_EXPERT_GEMM_BATCHED ? GROUPED_BATCHED
                                                                         : GROUPED_STRIDED;
        b->expert_gemm_name = cu_expert_gemm_name;
    }
    if (ok) {
        MpError aerr = {{0}};
        ok = attn_ok(b, attention_engine_create((AttnImpl)attention, &c->attn, b->attention_note,
                                                sizeof b->attention_note, &aerr),
                     &aerr, "create: attention");
        if (ok) b->attention = attention_engine_name(c->attn);
    }
    if (!ok) {
        mp_fail(err, "%s", c->error);
        b->destroy = cu_destroy;
        cu_destroy(b);
        return -1;
    }
#define SET_OP(op) b->op = cu_##op;
    BACKEND_OPS(SET_OP)
    BACKEND_ASYNC_OPS(SET_OP)
#undef SET_OP
    *out = b;
    return 0;
}
