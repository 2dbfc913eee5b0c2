/* backend_cuda.cu: the Backend on one GPU.  bf16 activations and weight
 * copies, fp32 master weights / gradients / Adam state, the kernels/ CUDA
 * kernels, cuBLAS(Lt) GEMMs (kernels/gemm.h), NCCL on the ncclComm_t that
 * ExecComms.handle[kind] holds (NULL or a group of one: a local copy).
 * Everything runs on one stream; phases are timed with event pairs that are
 * read once per step (step_times), so timing adds no host synchronisation.
 * Host synchronisations inside a step: the token-count exchange (download of
 * the router's top-k, the count all-to-all) and the loss read at the end. */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "executor/backend.h"
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

#define ncclCheck(call)                                                                   \
    do {                                                                                  \
        ncclResult_t r_ = (call);                                                         \
        if (r_ != ncclSuccess) {                                                          \
            fprintf(stderr, "%s:%d: NCCL error: %s\n", __FILE__, __LINE__,                \
                    ncclGetErrorString(r_));                                              \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

typedef struct {
    int phase;
    cudaEvent_t begin, end;
} PhaseEvent;

typedef struct {
    int device;
    cudaStream_t stream;
    GemmHandle gemm;
    void *scratch;          /* rmsnorm / attention backward workspace, grow-only */
    size_t scratch_bytes;
    int32_t *ints;          /* device ints for the count exchange */
    size_t ints_n;
    float *sum;             /* [1] device */
    PhaseEvent *ev;
    int nev, cap_ev;
    int open[PHASE_COUNT];  /* index into ev of the open phase, -1 none */
    cudaEvent_t step_mark;
    bool have_mark;
    double peak;
    AttnEngine *attn;       /* cuDNN's fused attention or the own kernel */
} CudaImpl;

static CudaImpl *I(Backend *b) { return (CudaImpl *)b->impl; }
static cudaStream_t S(Backend *b) { return I(b)->stream; }

static void *scratch(Backend *b, size_t bytes)
{
    CudaImpl *c = I(b);
    if (c->scratch_bytes < bytes) {
        cudaCheck(cudaStreamSynchronize(c->stream));
        if (c->scratch) cudaCheck(cudaFree(c->scratch));
        cudaCheck(cudaMalloc(&c->scratch, bytes));
        c->scratch_bytes = bytes;
    }
    return c->scratch;
}

/* ---- memory ---- */
static void *cu_alloc(Backend *b, size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    cudaCheck(cudaMemsetAsync(p, 0, bytes ? bytes : 16, S(b)));
    return p;
}
static void cu_release(Backend *b, void *p)
{
    cudaCheck(cudaStreamSynchronize(S(b)));
    cudaCheck(cudaFree(p));
}
static void cu_upload(Backend *b, void *dst, const void *src, size_t n)
{
    cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, S(b)));
    cudaCheck(cudaStreamSynchronize(S(b)));   /* the host buffer may be freed next */
}
static void cu_download(Backend *b, void *dst, const void *src, size_t n)
{
    cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, S(b)));
    cudaCheck(cudaStreamSynchronize(S(b)));
}
static void cu_zero(Backend *b, void *p, size_t n) { if (n) cudaCheck(cudaMemsetAsync(p, 0, n, S(b))); }
static void cu_copy(Backend *b, void *dst, const void *src, size_t n)
{
    if (n && dst != src) cudaCheck(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, S(b)));
}
static void cu_f32_to_act(Backend *b, void *dst, const float *src, size_t n)
{
    cast_f32_to_bf16_cuda((bf16_t *)dst, src, n, S(b));
}
static void cu_act_to_f32(Backend *b, float *dst, const void *src, size_t n)
{
    cast_bf16_to_f32_cuda(dst, (const bf16_t *)src, n, S(b));
}
static void cu_add_act(Backend *b, void *out, const void *a, const void *x, size_t n)
{
    residual_forward_cuda((bf16_t *)out, (const bf16_t *)a, (const bf16_t *)x, n, S(b));
}

/* ---- GEMMs ---- */
static void cu_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B, int M, int N,
                    int K, int transA, int transB, float beta)
{
    gemm_cuda(&I(b)->gemm, C, c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, (const bf16_t *)A,
              (const bf16_t *)B, M, N, K, transA, transB, 1.0f, beta, S(b));
}
static void cu_grouped_gemm(Backend *b, void *C, bool c_f32, const void *A, const void *B,
                            const int32_t *group_rows, int G, int vary, int M, int N, int K,
                            int transA, int transB, float beta)
{
    grouped_gemm_cuda(&I(b)->gemm, C, c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, (const bf16_t *)A,
                      (const bf16_t *)B, group_rows, G, vary ? GROUPED_VARY_K : GROUPED_VARY_M, M,
                      N, K, transA, transB, 1.0f, beta, S(b));
}

/* ---- layers ---- */
#define BF(p) ((bf16_t *)(p))
#define CBF(p) ((const bf16_t *)(p))
static void cu_embedding_forward(Backend *b, void *out, const int32_t *tok, const void *wte, int N, int C)
{
    embedding_forward_cuda(BF(out), tok, CBF(wte), N, C, S(b));
}
static void cu_embedding_backward(Backend *b, float *dwte, const void *dout, const int32_t *tok, int N, int C)
{
    embedding_backward_cuda(dwte, CBF(dout), tok, N, C, S(b));
}
static void cu_rmsnorm_forward(Backend *b, void *out, float *rstd, const void *inp, const void *w,
                               int N, int C, float eps)
{
    rmsnorm_forward_cuda(BF(out), rstd, CBF(inp), CBF(w), N, C, eps, S(b));
}
static void cu_rmsnorm_backward(Backend *b, void *dinp, float *dw, const void *dout, const void *inp,
                                const void *w, const float *rstd, int N, int C)
{
    float *s = (float *)scratch(b, rmsnorm_backward_scratch_floats(N, C) * sizeof(float));
    rmsnorm_backward_cuda(BF(dinp), dw, s, CBF(dout), CBF(inp), CBF(w), rstd, N, C, S(b));
}
static void cu_rope(Backend *b, void *x, const int32_t *pos, int N, int H, int D, int stride,
                    float theta, bool backward)
{
    if (backward) rope_backward_cuda(BF(x), pos, N, H, D, stride, theta, S(b));
    else rope_forward_cuda(BF(x), pos, N, H, D, stride, theta, S(b));
}
/* Attention through kernels/attention_api.h.  The plans of a shape are built
 * on its first call (attention_prepare caches them), which is in the first,
 * untimed warm-up step.  The ops return void: a failure ends the rank like
 * cudaCheck does. */
static void attention_check(int rc, const MpError *err)
{
    if (rc) {
        fprintf(stderr, "attention: %s\n", err->msg);
        exit(1);
    }
}
static void cu_attention_forward(Backend *b, void *out, float *lse, const void *q, const void *k,
                                 const void *v, int B, int T, int nh, int nkv, int hd, int qs, int kvs)
{
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    attention_check(attention_prepare(I(b)->attn, &s, &err), &err);
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, false);
    void *ws = scratch(b, wsb ? wsb : 16);
    attention_check(attention_forward(I(b)->attn, &s, BF(out), lse, CBF(q), CBF(k), CBF(v), ws, wsb, S(b), &err), &err);
}
static void cu_attention_backward(Backend *b, void *dq, void *dk, void *dv, const void *dout,
                                  const void *q, const void *k, const void *v, const void *out,
                                  const float *lse, int B, int T, int nh, int nkv, int hd, int qs,
                                  int kvs)
{
    AttnShape s = attn_shape_causal(B, T, nh, nkv, hd, qs, kvs);
    MpError err = {{0}};
    attention_check(attention_prepare(I(b)->attn, &s, &err), &err);
    size_t wsb = attention_workspace_bytes(I(b)->attn, &s, true);
    void *ws = scratch(b, wsb ? wsb : 16);
    attention_check(attention_backward(I(b)->attn, &s, BF(dq), BF(dk), BF(dv), CBF(dout), CBF(q), CBF(k),
                                       CBF(v), CBF(out), lse, ws, wsb, S(b), &err), &err);
}
static void cu_router_forward(Backend *b, float *probs, int32_t *idx, float *tp, const float *logits,
                              int N, int E, int k, int renorm)
{
    router_forward_cuda(probs, idx, tp, logits, N, E, k, renorm, S(b));
}
static void cu_router_backward(Backend *b, float *dlogits, const float *dtp, const float *probs,
                               const int32_t *idx, const float *tp, int N, int E, int k, int renorm)
{
    router_backward_cuda(dlogits, dtp, probs, idx, tp, N, E, k, renorm, S(b));
}
static void cu_swiglu_forward(Backend *b, void *out, const void *gu, int N, int F)
{
    swiglu_forward_cuda(BF(out), CBF(gu), N, F, S(b));
}
static void cu_swiglu_backward(Backend *b, void *dgu, const void *dout, const void *gu, int N, int F)
{
    swiglu_backward_cuda(BF(dgu), CBF(dout), CBF(gu), N, F, S(b));
}
static void cu_cross_entropy(Backend *b, float *losses, void *dlogits, const void *logits,
                             const int32_t *targets, int N, int V, float dloss)
{
    crossentropy_fused_cuda(BF(dlogits), losses, CBF(logits), targets, dloss, N, V, S(b));
}
static void cu_permute(Backend *b, void *out, const void *inp, const int32_t *row_of, int N, int k, int C)
{
    moe_permute_forward_cuda(BF(out), CBF(inp), row_of, N, k, C, S(b));
}
static void cu_permute_backward(Backend *b, void *dinp, const void *dout, const int32_t *row_of,
                                int N, int k, int C)
{
    moe_permute_backward_cuda(BF(dinp), CBF(dout), row_of, N, k, C, S(b));
}
static void cu_unpermute(Backend *b, void *out, const void *inp, const float *prob,
                         const int32_t *row_of, int N, int k, int C)
{
    moe_unpermute_forward_cuda(BF(out), CBF(inp), prob, row_of, N, k, C, S(b));
}
static void cu_unpermute_backward(Backend *b, void *dinp, float *dprob, const void *dout,
                                  const void *inp, const float *prob, const int32_t *row_of, int N,
                                  int k, int C)
{
    moe_unpermute_backward_cuda(BF(dinp), dprob, CBF(dout), CBF(inp), prob, row_of, N, k, C, S(b));
}
static void cu_gather_rows(Backend *b, void *out, const void *inp, const int32_t *src, int n, int C)
{
    gather_rows_cuda(BF(out), CBF(inp), src, n, C, S(b));
}
static void cu_adam(Backend *b, float *param, void *param_act, const float *grad, float *m, float *v,
                    size_t n, float lr, float b1, float b2, float eps, float wd, int t)
{
    AdamParams p;
    p.lr = lr; p.beta1 = b1; p.beta2 = b2; p.eps = eps; p.weight_decay = wd; p.step = t;
    p.grad_scale = 1.0f;
    adam_update_cuda(param, BF(param_act), m, v, grad, n, &p, S(b));
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
    sum_kernel<<<1, 256, 0, S(b)>>>(I(b)->sum, x, n, 0);
    cudaCheck(cudaGetLastError());
    float h;
    cu_download(b, &h, I(b)->sum, sizeof h);
    return h;
}

static void cu_accumulate_sum(Backend *b, float *acc, const float *x, size_t n)
{
    sum_kernel<<<1, 256, 0, S(b)>>>(acc, x, n, 1);   /* acc += sum x, no synchronisation */
    cudaCheck(cudaGetLastError());
}

/* Auxiliary load-balancing loss (backend.h).  One block of 256 threads: the
 * per-expert counts and probability sums over N tokens ([N, E] f32 is small:
 * 4096 x 8 for Mixtral), E <= 256. */
__global__ static void aux_forward_kernel(float *gcoef, float *loss_acc, const float *probs,
                                          const int32_t *idx, int N, int E, int k, float coeff,
                                          float weight)
{
    __shared__ float psum[256];
    __shared__ int cnt[256];
    for (int e = threadIdx.x; e < E; e += blockDim.x) { psum[e] = 0.0f; cnt[e] = 0; }
    __syncthreads();
    /* thread j sums column e = j % E over rows j / E, j / E + blockDim / E, ... */
    int per = blockDim.x / E, e = threadIdx.x % E, r0 = threadIdx.x / E;
    if (r0 < per) {
        float s = 0.0f;
        for (int t = r0; t < N; t += per) s += probs[(size_t)t * E + e];
        atomicAdd(&psum[e], s);
    }
    for (int i = threadIdx.x; i < N * k; i += blockDim.x) atomicAdd(&cnt[idx[i]], 1);
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
    aux_forward_kernel<<<1, 256, 0, S(b)>>>(gcoef, loss_acc, probs, idx, N, E, k, coeff, weight);
    cudaCheck(cudaGetLastError());
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
    aux_backward_kernel<<<(N + 255) / 256, 256, 0, S(b)>>>(dlogits, probs, gcoef, N, E, scale);
    cudaCheck(cudaGetLastError());
}

/* ---- collectives ---- */
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
static void cu_all_reduce(Backend *b, void *buf, size_t n, ElemType t, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    if (!c || !n) return;
    ncclCheck(ncclAllReduce(buf, buf, n, nccl_type(t), ncclSum, c, S(b)));
}
static void cu_all_gather(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return; }
    if (!n) return;
    ncclCheck(ncclAllGather(send, recv, n, nccl_type(t), c, S(b)));
}
static void cu_reduce_scatter(Backend *b, void *recv, const void *send, size_t n, ElemType t, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    if (!c) { cu_copy(b, recv, send, n * elem_bytes(b, t)); return; }
    if (!n) return;
    ncclCheck(ncclReduceScatter(send, recv, n, nccl_type(t), ncclSum, c, S(b)));
}
static void cu_all_to_all_v(Backend *b, const void *send, const size_t *sc, const size_t *sd,
                            void *recv, const size_t *rc, const size_t *rd, ElemType t, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    size_t eb = elem_bytes(b, t);
    if (!c) {
        cu_copy(b, (char *)recv + rd[0] * eb, (const char *)send + sd[0] * eb, sc[0] * eb);
        return;
    }
    int n = b->comms->size_of[g];
    ncclCheck(ncclGroupStart());
    for (int r = 0; r < n; r++) {
        if (sc[r]) ncclCheck(ncclSend((const char *)send + sd[r] * eb, sc[r], nccl_type(t), r, c, S(b)));
        if (rc[r]) ncclCheck(ncclRecv((char *)recv + rd[r] * eb, rc[r], nccl_type(t), r, c, S(b)));
    }
    ncclCheck(ncclGroupEnd());
}
static int32_t *ints(Backend *b, size_t n)
{
    CudaImpl *c = I(b);
    if (c->ints_n < n) {
        cudaCheck(cudaStreamSynchronize(c->stream));
        if (c->ints) cudaCheck(cudaFree(c->ints));
        cudaCheck(cudaMalloc(&c->ints, n * sizeof(int32_t)));
        c->ints_n = n;
    }
    return c->ints;
}
static void cu_all_to_all_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    if (!c) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    int sz = b->comms->size_of[g];
    int32_t *d = ints(b, 2 * (size_t)sz * n);
    cudaCheck(cudaMemcpyAsync(d, send, sizeof(int32_t) * (size_t)sz * n, cudaMemcpyHostToDevice, S(b)));
    ncclCheck(ncclGroupStart());
    for (int r = 0; r < sz; r++) {
        ncclCheck(ncclSend(d + (size_t)r * n, (size_t)n, ncclInt32, r, c, S(b)));
        ncclCheck(ncclRecv(d + (size_t)(sz + r) * n, (size_t)n, ncclInt32, r, c, S(b)));
    }
    ncclCheck(ncclGroupEnd());
    cu_download(b, recv, d + (size_t)sz * n, sizeof(int32_t) * (size_t)sz * n);
}
static void cu_all_gather_host_i32(Backend *b, const int32_t *send, int32_t *recv, int n, GroupKind g)
{
    ncclComm_t c = comm_of(b, g);
    if (!c) { memmove(recv, send, sizeof(int32_t) * (size_t)n); return; }
    int sz = b->comms->size_of[g];
    int32_t *d = ints(b, (size_t)(sz + 1) * n);
    cudaCheck(cudaMemcpyAsync(d, send, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice, S(b)));
    ncclCheck(ncclAllGather(d, d + n, (size_t)n, ncclInt32, c, S(b)));
    cu_download(b, recv, d + n, sizeof(int32_t) * (size_t)sz * n);
}

/* ---- timing ---- */
static void cu_phase_begin(Backend *b, StepPhase p)
{
    CudaImpl *c = I(b);
    if (c->nev == c->cap_ev) {
        int cap = c->cap_ev ? 2 * c->cap_ev : 256;
        c->ev = (PhaseEvent *)realloc(c->ev, sizeof(PhaseEvent) * (size_t)cap);
        for (int i = c->cap_ev; i < cap; i++) {
            cudaCheck(cudaEventCreate(&c->ev[i].begin));
            cudaCheck(cudaEventCreate(&c->ev[i].end));
        }
        c->cap_ev = cap;
    }
    PhaseEvent *e = &c->ev[c->nev];
    e->phase = p;
    c->open[p] = c->nev++;
    cudaCheck(cudaEventRecord(e->begin, c->stream));
}
static void cu_phase_end(Backend *b, StepPhase p)
{
    CudaImpl *c = I(b);
    if (c->open[p] < 0) return;
    cudaCheck(cudaEventRecord(c->ev[c->open[p]].end, c->stream));
    c->open[p] = -1;
}
static double cu_step_times(Backend *b, double *out)
{
    CudaImpl *c = I(b);
    cudaEvent_t mark;
    cudaCheck(cudaEventCreate(&mark));
    cudaCheck(cudaEventRecord(mark, c->stream));
    cudaCheck(cudaEventSynchronize(mark));
    for (int i = 0; i < c->nev; i++) {
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, c->ev[i].begin, c->ev[i].end));
        out[c->ev[i].phase] += ms * 1e-3;
    }
    c->nev = 0;
    double dt = 0;
    if (c->have_mark) {
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, c->step_mark, mark));
        dt = ms * 1e-3;
        cudaCheck(cudaEventDestroy(c->step_mark));
    }
    c->step_mark = mark;
    c->have_mark = true;
    size_t fr, tot;
    cudaCheck(cudaMemGetInfo(&fr, &tot));
    if ((double)(tot - fr) > c->peak) c->peak = (double)(tot - fr);
    return dt;
}
static double cu_peak_memory(Backend *b)
{
    size_t fr, tot;
    cudaCheck(cudaMemGetInfo(&fr, &tot));
    double now = (double)(tot - fr);
    return now > I(b)->peak ? now : I(b)->peak;
}
static void cu_destroy(Backend *b)
{
    if (!b) return;
    CudaImpl *c = I(b);
    cudaStreamSynchronize(c->stream);
    for (int i = 0; i < c->cap_ev; i++) { cudaEventDestroy(c->ev[i].begin); cudaEventDestroy(c->ev[i].end); }
    free(c->ev);
    if (c->have_mark) cudaEventDestroy(c->step_mark);
    if (c->scratch) cudaFree(c->scratch);
    if (c->ints) cudaFree(c->ints);
    if (c->sum) cudaFree(c->sum);
    attention_engine_destroy(c->attn);
    gemm_handle_destroy(&c->gemm);
    cudaStreamDestroy(c->stream);
    free(c);
    free(b);
}

extern "C" int backend_cuda_create(const ExecComms *comms, ExecAttention attention, Backend **out,
                                   MpError *err)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
        return mp_fail(err, "backend: no CUDA device is visible");
    if (comms->local_rank < 0 || comms->local_rank >= n)
        return mp_fail(err, "local_rank: %d: only %d CUDA devices are visible", comms->local_rank, n);
    Backend *b = (Backend *)calloc(1, sizeof *b);
    CudaImpl *c = (CudaImpl *)calloc(1, sizeof *c);
    if (!b || !c) { free(b); free(c); return mp_fail(err, "executor: out of host memory"); }
    c->device = comms->local_rank;
    cudaCheck(cudaSetDevice(c->device));
    cudaCheck(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    gemm_handle_init(&c->gemm);
    cudaCheck(cudaMalloc(&c->sum, sizeof(float)));
    for (int p = 0; p < PHASE_COUNT; p++) c->open[p] = -1;
    if (attention_engine_create((AttnImpl)attention, &c->attn, b->attention_note, sizeof b->attention_note, err)) {
        gemm_handle_destroy(&c->gemm);
        cudaFree(c->sum);
        cudaStreamDestroy(c->stream);
        free(b);
        free(c);
        return -1;
    }
    b->attention = attention_engine_name(c->attn);
    b->name = "cuda";
    b->act_bytes = 2;
    b->comms = comms;
    b->impl = c;
#define SET_OP(op) b->op = cu_##op;
    BACKEND_OPS(SET_OP)
#undef SET_OP
    *out = b;
    return 0;
}
