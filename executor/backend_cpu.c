/* backend_cpu.c: the Backend of the CI path.  float32 tensors in host
 * memory, the kernels' CPU references, collectives over MPI on the
 * MPI_Comm* that ExecComms.handle[kind] points to (NULL or a group of one:
 * the collective is a copy). */
#include "executor/backend.h"
#include "executor/collective_watch.h"
#include "executor/phase_clock.h"
#include "executor/pool.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "executor/dispatcher.h"
#include "kernels/adam.h"
#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "kernels/common.h"
#include "kernels/crossentropy.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_permute.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

/* a started point-to-point batch (Backend.p2p_start) */
typedef struct {
    bool used;
    int n;
    GroupKind g;
    MPI_Request req[BACKEND_P2P_MAX];
} CpuP2PBatch;

typedef struct {
    PhaseClock phases;      /* exclusive time per phase (nesting allowed) */
    CpuP2PBatch inflight[BACKEND_P2P_INFLIGHT];
    double step_start;
    float *scratch;
    size_t scratch_n;
    char error[200];        /* sticky: the first failure, "" while none */
    /* every Backend.alloc goes through a pool over calloc, for the same
     * accounting as the CUDA backend (peak in use, by MemCategory) */
    DevicePool pool;
    /* nonblocking collectives (Backend.*_start): MPI_REQUEST_NULL = free */
    MPI_Request req[BACKEND_ASYNC_MAX];
    int req_group[BACKEND_ASYNC_MAX];
    int req_used[BACKEND_ASYNC_MAX];
    /* an in-place reduce-scatter's move of its sum, done at the wait */
    void *move_dst[BACKEND_ASYNC_MAX];
    const void *move_src[BACKEND_ASYNC_MAX];
    size_t move_bytes[BACKEND_ASYNC_MAX];
} CpuImpl;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static CpuImpl *I(Backend *b) { return (CpuImpl *)b->impl; }

/* records the first failure; the step reads it through cpu_status */
static void fail(Backend *b, const char *op, const char *what)
{
    CpuImpl *c = I(b);
    if (!c->error[0]) snprintf(c->error, sizeof c->error, "backend cpu: %s: %s", op, what);
}

/* NULL (and the sticky error) when out of host memory */
static float *scratch(Backend *b, size_t n)
{
    CpuImpl *c = I(b);
    if (c->scratch_n < n) {
        pool_free(&c->pool, c->scratch);
        c->scratch_n = 0;
        int cat = c->pool.category;
        pool_set_category(&c->pool, MEM_WORKSPACE);
        c->scratch = pool_alloc(&c->pool, n * sizeof(float));
        pool_set_category(&c->pool, cat);
        if (!c->scratch) { fail(b, "scratch", "out of host memory"); return NULL; }
        c->scratch_n = n;
    }
    return c->scratch;
}

/* ---- memory ---- */
static void *raw_alloc(void *ctx, size_t bytes) { (void)ctx; return calloc(1, bytes); }
static void raw_free(void *ctx, void *p) { (void)ctx; free(p); }
static void *cpu_alloc(Backend *b, size_t bytes)
{
    void *p = pool_alloc(&I(b)->pool, bytes ? bytes : 1);
    if (p) memset(p, 0, bytes ? bytes : 1);   /* zero-filled (a reused block too) */
    return p;
}
static void cpu_release(Backend *b, void *p)
{
    if (pool_free(&I(b)->pool, p)) fail(b, "release", "pointer not from this backend's pool");
}
static void cpu_upload(Backend *b, void *dst, const void *src, size_t n) { (void)b; memcpy(dst, src, n); }
static void cpu_download(Backend *b, void *dst, const void *src, size_t n) { (void)b; memcpy(dst, src, n); }
static void cpu_zero(Backend *b, void *p, size_t n) { (void)b; memset(p, 0, n); }
static void cpu_copy(Backend *b, void *dst, const void *src, size_t n) { (void)b; memmove(dst, src, n); }
static void cpu_f32_to_act(Backend *b, void *dst, const float *src, size_t n)
{
    (void)b;
    if (dst != (const void *)src) memmove(dst, src, n * sizeof(float));
}
static void cpu_act_to_f32(Backend *b, float *dst, const void *src, size_t n)
{
    (void)b;
    if ((const void *)dst != src) memmove(dst, src, n * sizeof(float));
}
static void cpu_add_act(Backend *b, void *out, const void *a, const void *x, size_t n)
{
    (void)b;
    residual_forward_cpu(out, a, x, n);
}

/* ---- GEMMs ---- */
static void cpu_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B, int M, int N,
                     int K, int transA, int transB, float beta)
{
    (void)b; (void)c_f32;
    gemm_cpu(C, A, B, M, N, K, transA, transB, 1.0f, beta);
}
static void cpu_grouped_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B,
                             const int32_t *group_rows, int G, int vary, int M, int N, int K,
                             int transA, int transB, float beta)
{
    (void)b; (void)c_f32;
    grouped_gemm_cpu(C, A, B, group_rows, G, vary ? GROUPED_VARY_K : GROUPED_VARY_M, M, N, K,
                     transA, transB, 1.0f, beta);
}

/* ---- layers ---- */
static void cpu_embedding_forward(Backend *b, void *out, const int32_t *tokens, const void *wte,
                                  int N, int C)
{
    (void)b;
    embedding_forward_cpu(out, tokens, wte, N, C);
}
static void cpu_embedding_backward(Backend *b, float *dwte, const void *dout,
                                   const int32_t *tokens, int N, int C)
{
    (void)b;
    embedding_backward_cpu(dwte, dout, tokens, N, C);
}
static void cpu_rmsnorm_forward(Backend *b, void *out, float *rstd, const void *inp,
                                const void *w, int N, int C, float eps)
{
    (void)b;
    rmsnorm_forward_cpu(out, rstd, inp, w, N, C, eps);
}
static void cpu_rmsnorm_backward(Backend *b, void *dinp, float *dw, const void *dout,
                                 const void *inp, const void *w, const float *rstd, int N, int C)
{
    (void)b;
    rmsnorm_backward_cpu(dinp, dw, dout, inp, w, rstd, N, C);
}
static void cpu_rope(Backend *b, void *x, const int32_t *pos, int N, int H, int D, int stride,
                     float theta, bool backward)
{
    (void)b;
    if (backward) rope_backward_cpu(x, pos, N, H, D, stride, theta);
    else rope_forward_cpu(x, pos, N, H, D, stride, theta);
}
static void cpu_attention_forward(Backend *b, void *out, float *lse, const void *q, const void *k,
                                  const void *v, int B, int T, int nh, int nkv, int hd,
                                  int qs, int kvs)
{
    if (attention_forward_cpu(out, lse, q, k, v, B, T, nh, nkv, hd, qs, kvs))
        fail(b, "attention_forward", "out of host memory");
}
static void cpu_attention_backward(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                                   const void *q, const void *k, const void *v, const void *out,
                                   const float *lse, int B, int T, int nh, int nkv, int hd,
                                   int qs, int kvs)
{
    if (attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd, qs, kvs))
        fail(b, "attention_backward", "out of host memory");
}
static void cpu_attention_block_forward(Backend *b, void *out, float *lse, const void *q,
                                        const void *k, const void *v, int Tq, int Tk, bool causal,
                                        int nh, int nkv, int hd, int qs, int kvs)
{
    AttnShape s = {1, Tq, Tk, nh, nkv, hd, hd, qs, kvs, kvs,
                   causal ? ATTN_MASK_CAUSAL : ATTN_MASK_NONE, 0, 0};
    if (attention_block_forward_cpu(&s, out, lse, q, k, v))
        fail(b, "attention_block_forward", "invalid shape or out of host memory");
}
static void cpu_attention_block_backward(Backend *b, void *dq, void *dk, void *dv,
                                         const void *dout, const void *q, const void *k,
                                         const void *v, const void *out, const float *lse, int Tq,
                                         int Tk, bool causal, int nh, int nkv, int hd, int qs,
                                         int kvs)
{
    AttnShape s = {1, Tq, Tk, nh, nkv, hd, hd, qs, kvs, kvs,
                   causal ? ATTN_MASK_CAUSAL : ATTN_MASK_NONE, 0, 0};
    if (attention_block_backward_cpu(&s, dq, dk, dv, dout, q, k, v, out, lse, 0, Tq))
        fail(b, "attention_block_backward", "invalid shape or out of host memory");
}
static void cpu_attention_merge(Backend *b, void *out1, float *lse1, const void *out2,
                                const float *lse2, int T, int nh, int hd)
{
    (void)b;
    attention_merge_cpu(out1, lse1, out2, lse2, 1, T, nh, hd);
}
static void cpu_copy_2d(Backend *b, void *dst, size_t dpitch, const void *src, size_t spitch,
                        size_t width, size_t rows)
{
    (void)b;
    for (size_t r = 0; r < rows; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
}
static void cpu_router_forward(Backend *b, float *probs, int32_t *idx, float *tp,
                               const float *logits, int N, int E, int k, int renorm)
{
    (void)b;
    router_forward_cpu(probs, idx, tp, logits, N, E, k, renorm);
}
static void cpu_router_backward(Backend *b, float *dlogits, const float *dtp, const float *probs,
                                const int32_t *idx, const float *tp, int N, int E, int k,
                                int renorm)
{
    (void)b;
    router_backward_cpu(dlogits, dtp, probs, idx, tp, N, E, k, renorm);
}
static void cpu_swiglu_forward(Backend *b, void *out, const void *gu, int N, int F)
{
    (void)b;
    swiglu_forward_cpu(out, gu, N, F);
}
static void cpu_swiglu_backward(Backend *b, void *dgu, const void *dout, const void *gu, int N,
                                int F)
{
    (void)b;
    swiglu_backward_cpu(dgu, dout, gu, N, F);
}
static void cpu_cross_entropy(Backend *b, float *losses, void *dlogits, const void *logits,
                              const int32_t *targets, int N, int V, float dloss)
{
    float *l = scratch(b, (size_t)N * V);
    if (!l) return;
    memcpy(l, logits, sizeof(float) * (size_t)N * V);   /* dlogits may alias logits */
    crossentropy_forward_cpu(losses, l, targets, N, V);
    crossentropy_backward_cpu(dlogits, l, targets, dloss, N, V);
}
static void cpu_ce_vp_stats(Backend *b, float *stats, const void *logits,
                            const int32_t *targets_local, int N, int Vl)
{
    (void)b;
    crossentropy_vp_stats_cpu(stats, logits, targets_local, N, Vl);
}
static void cpu_ce_vp_finish(Backend *b, float *losses, void *dlogits, const void *logits,
                             const int32_t *targets_local, const float *all_stats, int P, int N,
                             int Vl, float dloss)
{
    (void)b;
    crossentropy_vp_finish_cpu(losses, dlogits, logits, targets_local, all_stats, P, dloss, N, Vl);
}
static void cpu_permute(Backend *b, void *out, const void *inp, const int32_t *row_of, int N,
                        int k, int C)
{
    (void)b;
    moe_permute_forward_cpu(out, inp, row_of, N, k, C);
}
static void cpu_permute_backward(Backend *b, void *dinp, const void *dout, const int32_t *row_of,
                                 int N, int k, int C)
{
    (void)b;
    moe_permute_backward_cpu(dinp, dout, row_of, N, k, C);
}
static void cpu_unpermute(Backend *b, void *out, const void *inp, const float *prob,
                          const int32_t *row_of, int N, int k, int C)
{
    (void)b;
    moe_unpermute_forward_cpu(out, inp, prob, row_of, N, k, C);
}
static void cpu_unpermute_backward(Backend *b, void *dinp, float *dprob, const void *dout,
                                   const void *inp, const float *prob, const int32_t *row_of,
                                   int N, int k, int C)
{
    (void)b;
    moe_unpermute_backward_cpu(dinp, dprob, dout, inp, prob, row_of, N, k, C);
}
static void cpu_gather_rows(Backend *b, void *out, const void *inp, const int32_t *src, int n,
                            int C)
{
    (void)b;
    gather_rows_cpu(out, inp, src, n, C);
}
static void cpu_adam(Backend *b, float *param, void *param_act, const float *grad, float *m,
                     float *v, size_t n, float lr, float b1, float b2, float eps, float wd, int t)
{
    (void)b;
    AdamParams p = {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                    .step = t, .grad_scale = 1.0f};
    adam_update_cpu(param, m, v, grad, n, &p);
    if (param_act != (void *)param) memcpy(param_act, param, n * sizeof(float));
}
static double cpu_sum_f32(Backend *b, const float *x, size_t n)
{
    (void)b;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}
static void cpu_accumulate_sum(Backend *b, float *acc, const float *x, size_t n)
{
    *acc += (float)cpu_sum_f32(b, x, n);
}

/* backend.h: aux = coeff E sum_e f_e P_e; gcoef[e] = coeff E f_e / N */
static void cpu_aux_loss_forward(Backend *b, float *gcoef, float *loss_acc, const float *probs,
                                 const int32_t *idx, int N, int E, int k, float coeff,
                                 float weight)
{
    double *cnt = calloc((size_t)E, sizeof(double)), *psum = calloc((size_t)E, sizeof(double));
    if (!cnt || !psum) {
        free(cnt); free(psum);
        fail(b, "aux_loss_forward", "out of host memory");
        return;
    }
    for (size_t i = 0; i < (size_t)N * k; i++) cnt[idx[i]] += 1;
    for (int t = 0; t < N; t++)
        for (int e = 0; e < E; e++) psum[e] += probs[(size_t)t * E + e];
    double aux = 0;
    for (int e = 0; e < E; e++) {
        double f = cnt[e] / ((double)N * k);
        aux += f * (psum[e] / N);
        gcoef[e] = (float)((double)coeff * E * f / N);
    }
    *loss_acc += (float)(weight * coeff * E * aux);
    free(cnt); free(psum);
}

static void cpu_aux_loss_backward(Backend *b, float *dlogits, const float *probs,
                                  const float *gcoef, int N, int E, float scale)
{
    (void)b;
    for (int t = 0; t < N; t++) {
        const float *p = probs + (size_t)t * E;
        double dot = 0;
        for (int e = 0; e < E; e++) dot += (double)p[e] * gcoef[e];
        for (int e = 0; e < E; e++)
            dlogits[(size_t)t * E + e] += scale * p[e] * (float)(gcoef[e] - dot);
    }
}

/* ---- collectives ---- */
static MPI_Comm comm_of(Backend *b, GroupKind g)
{
    const ExecComms *c = b->comms;
    if (c->size_of[g] <= 1 || !c->handle[g]) return MPI_COMM_NULL;
    return *(MPI_Comm *)c->handle[g];
}
/* a blocking MPI call under the collective deadline (collective_watch.h) */
#define WATCHED(b, g, name, call)                                   \
    do {                                                            \
        collective_watch_begin((b)->comms->watch, (int)(g), name);  \
        call;                                                       \
        collective_watch_end((b)->comms->watch);                    \
    } while (0)
static MPI_Datatype mpi_type(ElemType t) { return t == DT_I32 ? MPI_INT : MPI_FLOAT; }

static void cpu_all_reduce(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) return;
    WATCHED(b, g, "all_reduce", MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(t), MPI_SUM, c));
}
static void cpu_all_gather(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                           GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, n * elem_bytes(b, t)); return; }
    /* in place: send is this member's chunk of recv (NCCL's convention) */
    const void *src = (const char *)send == (const char *)recv + (size_t)b->comms->rank_in[g] * n * elem_bytes(b, t)
                          ? MPI_IN_PLACE : send;
    WATCHED(b, g, "all_gather", MPI_Allgather(src, (int)n, mpi_type(t), recv, (int)n, mpi_type(t), c));
}
/* NCCL's in-place reduce-scatter: recv == send + rank_in * n (elements).
 * MPI_IN_PLACE leaves the sum at the start of the buffer instead: the
 * caller moves it to recv afterwards. */
static bool rs_in_place(Backend *b, const void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    return (const char *)recv == (const char *)send + (size_t)b->comms->rank_in[g] * n * elem_bytes(b, t);
}
static void cpu_reduce_scatter(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                               GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, n * elem_bytes(b, t)); return; }
    if (rs_in_place(b, recv, send, n, t, g)) {
        WATCHED(b, g, "reduce_scatter",
                MPI_Reduce_scatter_block(MPI_IN_PLACE, (void *)send, (int)n, mpi_type(t), MPI_SUM, c));
        memmove(recv, send, n * elem_bytes(b, t));
        return;
    }
    WATCHED(b, g, "reduce_scatter", MPI_Reduce_scatter_block(send, recv, (int)n, mpi_type(t), MPI_SUM, c));
}
static void cpu_all_to_all_v(Backend *b, const void *send, const size_t *sc, const size_t *sd,
                             void *recv, const size_t *rc, const size_t *rd, ElemType t,
                             GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    size_t eb = elem_bytes(b, t);
    if (c == MPI_COMM_NULL) {
        memmove((char *)recv + rd[0] * eb, (const char *)send + sd[0] * eb, sc[0] * eb);
        return;
    }
    int n = b->comms->size_of[g];
    int *buf = malloc(sizeof(int) * 4 * (size_t)n);
    if (!buf) { fail(b, "all_to_all_v", "out of host memory"); return; }
    for (int i = 0; i < n; i++) {
        buf[i] = (int)sc[i]; buf[n + i] = (int)sd[i];
        buf[2 * n + i] = (int)rc[i]; buf[3 * n + i] = (int)rd[i];
    }
    WATCHED(b, g, "all_to_all_v", MPI_Alltoallv(send, buf, buf + n, mpi_type(t), recv, buf + 2 * n, buf + 3 * n, mpi_type(t), c));
    free(buf);
}
static void cpu_all_to_all_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n,
                                    GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    WATCHED(b, g, "token-count all_to_all", MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, c));
}
/* ==== nonblocking point-to-point (backend.h p2p_start / p2p_wait) ==== */
static int cpu_p2p_start(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL || n <= 0 || I(b)->error[0]) return -1;
    if (n > BACKEND_P2P_MAX) { fail(b, "p2p", "more than BACKEND_P2P_MAX transfers in one batch"); return -1; }
    int h = 0;
    while (h < BACKEND_P2P_INFLIGHT && I(b)->inflight[h].used) h++;
    if (h == BACKEND_P2P_INFLIGHT) { fail(b, "p2p", "more than BACKEND_P2P_INFLIGHT batches in flight"); return -1; }
    /* the GPU's stream order: a batch starts once the batches started
     * before it on its stream (GROUP_PP: the pipeline's; any other: the
     * ring's) completed.  Waiting for them here is stricter than the GPU,
     * whose compute stream goes on, so a schedule of starts and waits that
     * cannot deadlock here cannot deadlock there. */
    for (int k = 0; k < BACKEND_P2P_INFLIGHT; k++) {
        CpuP2PBatch *o = &I(b)->inflight[k];
        if (o->used && (o->g == GROUP_PP) == (g == GROUP_PP))
            WATCHED(b, o->g, o->g == GROUP_PP ? "pipeline send/recv" : "ring send/recv",
                    MPI_Waitall(o->n, o->req, MPI_STATUSES_IGNORE));   /* completed requests become null */
    }
    CpuP2PBatch *q = &I(b)->inflight[h];
    q->used = true;
    q->n = n;
    q->g = g;
    /* synchronous sends: a send completes only once its receive is posted,
     * so a rank waits where NCCL would */
    for (int i = 0; i < n; i++) {
        if (ops[i].send)
            MPI_Issend(ops[i].buf, (int)ops[i].n, mpi_type(t), ops[i].peer, 0, c, &q->req[i]);
        else
            MPI_Irecv(ops[i].buf, (int)ops[i].n, mpi_type(t), ops[i].peer, 0, c, &q->req[i]);
    }
    return h;
}
static void cpu_p2p_wait(Backend *b, int h)
{
    if (h < 0) return;
    if (h >= BACKEND_P2P_INFLIGHT || !I(b)->inflight[h].used) { fail(b, "p2p_wait", "not a batch in flight"); return; }
    CpuP2PBatch *q = &I(b)->inflight[h];
    WATCHED(b, q->g, q->g == GROUP_PP ? "pipeline send/recv" : "ring send/recv", MPI_Waitall(q->n, q->req, MPI_STATUSES_IGNORE));
    q->used = false;
}
static void cpu_p2p(Backend *b, const P2POp *ops, int n, ElemType t, GroupKind g)
{
    cpu_p2p_wait(b, cpu_p2p_start(b, ops, n, t, g));
}
static void cpu_all_gather_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n,
                                    GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    WATCHED(b, g, "token-count all_gather", MPI_Allgather(send, n, MPI_INT, recv, n, MPI_INT, c));
}

/* ---- nonblocking collectives (gradient buckets) ---- */
static int req_slot(Backend *b, GroupKind g)
{
    CpuImpl *c = I(b);
    for (int i = 0; i < BACKEND_ASYNC_MAX; i++)
        if (!c->req_used[i]) {
            c->req_used[i] = 1;
            c->req_group[i] = (int)g;
            c->move_bytes[i] = 0;
            return i;
        }
    fail(b, "async", "more than BACKEND_ASYNC_MAX collectives pending");
    return -1;
}
static int cpu_all_reduce_start(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL || !n || I(b)->error[0]) return -1;
    int h = req_slot(b, g);
    if (h >= 0) MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(t), MPI_SUM, c, &I(b)->req[h]);
    return h;
}
static int cpu_reduce_scatter_start(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                                    GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, n * elem_bytes(b, t)); return -1; }
    if (!n || I(b)->error[0]) return -1;
    int h = req_slot(b, g);
    if (h < 0) return h;
    CpuImpl *ci = I(b);
    if (rs_in_place(b, recv, send, n, t, g)) {
        MPI_Ireduce_scatter_block(MPI_IN_PLACE, (void *)send, (int)n, mpi_type(t), MPI_SUM, c, &ci->req[h]);
        ci->move_dst[h] = recv;
        ci->move_src[h] = send;
        ci->move_bytes[h] = n * elem_bytes(b, t);
    } else {
        MPI_Ireduce_scatter_block(send, recv, (int)n, mpi_type(t), MPI_SUM, c, &ci->req[h]);
    }
    return h;
}
static int cpu_all_gather_start(Backend *b, void *recv, const void *send, size_t n, ElemType t,
                                GroupKind g)
{
    MPI_Comm c = comm_of(b, g);
    if (c == MPI_COMM_NULL) { memmove(recv, send, n * elem_bytes(b, t)); return -1; }
    if (!n || I(b)->error[0]) return -1;
    const void *src = (const char *)send == (const char *)recv + (size_t)b->comms->rank_in[g] * n * elem_bytes(b, t)
                          ? MPI_IN_PLACE : send;
    int h = req_slot(b, g);
    if (h >= 0) MPI_Iallgather(src, (int)n, mpi_type(t), recv, (int)n, mpi_type(t), c, &I(b)->req[h]);
    return h;
}
static void cpu_async_wait(Backend *b, int h)
{
    CpuImpl *c = I(b);
    if (h < 0 || h >= BACKEND_ASYNC_MAX || !c->req_used[h]) return;
    WATCHED(b, c->req_group[h], "bucket wait", MPI_Wait(&c->req[h], MPI_STATUS_IGNORE));
    if (c->move_bytes[h] && c->move_dst[h] != c->move_src[h]) memmove(c->move_dst[h], c->move_src[h], c->move_bytes[h]);
    c->req_used[h] = 0;
}
static void cpu_async_poll(Backend *b)
{
    /* MPI progresses nonblocking collectives inside MPI calls: a test
     * between layers lets the pending ones move on */
    CpuImpl *c = I(b);
    for (int i = 0; i < BACKEND_ASYNC_MAX; i++) {
        if (!c->req_used[i]) continue;
        int done = 0;
        MPI_Test(&c->req[i], &done, MPI_STATUS_IGNORE);
        if (done) c->req[i] = MPI_REQUEST_NULL;   /* stays reserved until its wait */
    }
}
static void cpu_mem_category(Backend *b, int category) { pool_set_category(&I(b)->pool, category); }
static void cpu_mem_report(Backend *b, double *peak_total, double *peak_by_category)
{
    const DevicePool *p = &I(b)->pool;
    *peak_total = (double)p->peak_in_use;
    for (int k = 0; k < MEM_CATEGORY_COUNT; k++) peak_by_category[k] = (double)p->cat_at_peak[k];
}

/* ---- timing ---- */
static void cpu_phase_begin(Backend *b, StepPhase p) { phase_clock_begin(&I(b)->phases, p, now_s()); }
static void cpu_phase_end(Backend *b, StepPhase p) { phase_clock_end(&I(b)->phases, p, now_s()); }
static double cpu_step_times(Backend *b, double *out)
{
    CpuImpl *c = I(b);
    double t = now_s();
    phase_clock_collect(&c->phases, t, out, PHASE_COUNT);
    double dt = t - c->step_start;
    c->step_start = t;
    return dt;
}
static double cpu_peak_memory(Backend *b)
{
    (void)b;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}
static int cpu_status(Backend *b, MpError *err)
{
    if (!I(b)->error[0]) return 0;
    return mp_fail(err, "%s", I(b)->error);
}
static void cpu_in_step(Backend *b, bool on) { (void)b; (void)on; }
static long cpu_step_allocs(Backend *b) { (void)b; return 0; }
static void cpu_moe_plan(Backend *b, int32_t *row_of, int32_t *kept_rows, const int32_t *idx,
                         int N, int k, int E, int capacity)
{
    if (dispatch_row_map(row_of, kept_rows, idx, N, k, E, capacity))
        fail(b, "moe_plan", "out of host memory");
}
static void cpu_destroy(Backend *b)
{
    if (!b) return;
    CpuImpl *c = I(b);
    for (int i = 0; i < BACKEND_ASYNC_MAX; i++)
        if (c->req_used[i]) MPI_Wait(&c->req[i], MPI_STATUS_IGNORE);
    pool_destroy(&c->pool);   /* scratch and every block */
    free(b->impl);
    free(b);
}

int backend_cpu_create(const ExecComms *comms, Backend **out, MpError *err)
{
    Backend *b = calloc(1, sizeof *b);
    CpuImpl *c = calloc(1, sizeof *c);
    if (!b || !c) { free(b); free(c); return mp_fail(err, "executor: out of host memory"); }
    b->name = "cpu";
    b->act_bytes = 4;
    b->comms = comms;
    b->impl = c;
    c->step_start = now_s();
    pool_init(&c->pool, raw_alloc, raw_free, NULL);
#define SET_OP(op) b->op = cpu_##op;
    BACKEND_OPS(SET_OP)
    BACKEND_ASYNC_OPS(SET_OP)
#undef SET_OP
    *out = b;
    return 0;
}
