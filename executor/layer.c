/* layer.c: forward and backward of one transformer layer (layer.h) against
 * the Backend vtable: attention block, then a dense MLP or the MoE block
 * (router, all-to-all dispatcher, grouped expert GEMMs, shared expert).
 * Nothing here touches device memory directly; the only host-side step data
 * are the dispatcher's per-expert counts and the all-to-all layout planned
 * from them (the row map of the pairs stays on the device: moe_plan). */
#include "executor/layer.h"
#include "executor/pool.h"

#include <stdlib.h>
#include <string.h>

/* RMSNorm epsilon (Mixtral: rms_norm_eps 1e-5); the RoPE base is
 * LAYER_ROPE_BASE (layer.h), the one preflight checks models against. */
#define LAYER_ROPE_THETA ((float)LAYER_ROPE_BASE)
#define LAYER_RMS_EPS 1e-5f

/* ---- buffers ------------------------------------------------------------- */

/* The memory report's category of a buffer (pool.h MemCategory): the
 * dispatcher's send / receive / ETP-gather buffers, the loss statistics
 * and the CP ring's arriving K|V are communication buffers; the rest of a
 * Workspace (temporaries of one call) is workspace; everything else
 * (LayerActs, MicroBatch: kept from a forward to its backward) activations */
static int buf_category(const StepEnv *env, const Buf *b)
{
    const Workspace *ws[2] = {&env->fwd, &env->bwd};
    uintptr_t a = (uintptr_t)(const void *)b;
    for (int i = 0; i < 2; i++) {
        const Workspace *w = ws[i];
        if (a < (uintptr_t)(const void *)w || a >= (uintptr_t)(const void *)(w + 1)) continue;
        if (b == &w->send || b == &w->recv || b == &w->gath || b == &w->stats || b == &w->all_stats ||
            b == &w->kv[0] || b == &w->kv[1] || b == &w->dkv[0] || b == &w->dkv[1])
            return MEM_COMM;
        return MEM_WORKSPACE;
    }
    return MEM_ACTIVATIONS;
}

void *buf_get(StepEnv *env, Buf *b, size_t bytes)
{
    if (bytes == 0) bytes = 16;
    if (b->cap < bytes) {
        /* the first request exactly (layer_reserve sizes every buffer
         * before the first step); a buffer that outgrows it (a dropless
         * dispatcher's rows) takes 1/8 headroom so that it does not grow
         * again at every small increase */
        b->cap = b->p ? bytes + bytes / 8 : bytes;
        if (b->p) env->be->release(env->be, b->p);
        env->be->mem_category(env->be, buf_category(env, b));
        b->p = env->be->alloc(env->be, b->cap);
        env->be->mem_category(env->be, MEM_ACTIVATIONS);
        if (!b->p) {
            /* sticky: every layer function returns before launching work,
             * and the chunk turns it into an error */
            if (!env->failed) env->failed_bytes = b->cap;
            env->failed = 1;
            b->cap = 0;
        }
    }
    return b->p;
}

void buf_free(StepEnv *env, Buf *b)
{
    if (b->p) env->be->release(env->be, b->p);
    b->p = NULL; b->cap = 0;
}

int layer_acts_init(LayerActs *a, const Layer *y)
{
    memset(a, 0, sizeof *a);
    if (!y->moe) return 0;
    const ModelDims *d = &y->env->dim;
    return dispatch_plan_init(&a->dp, d->Ts, d->k, d->E, d->ep, d->etp, d->cf);
}

void layer_acts_free(StepEnv *env, LayerActs *a)
{
    Buf *bs[] = {&a->xn1, &a->rstd1, &a->qkv, &a->o, &a->lse, &a->x_mid, &a->xn2, &a->rstd2,
                 &a->probs, &a->topk_idx, &a->topk_prob, &a->row_of, &a->sort_src, &a->X, &a->h13, &a->a,
                 &a->ret, &a->mlp_h, &a->mlp_a, &a->gcoef};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) buf_free(env, bs[i]);
    dispatch_plan_free(&a->dp);
}

void workspace_free(StepEnv *env, Workspace *w)
{
    Buf *bs[] = {&w->send, &w->recv, &w->gath, &w->Y, &w->big1, &w->big2, &w->t1, &w->t2,
                 &w->y, &w->moe, &w->qkv, &w->o, &w->logits_f, &w->logits_a, &w->prob,
                 &w->full, &w->full2, &w->gx, &w->probs_g, &w->idx_g, &w->stats, &w->all_stats,
                 &w->kv[0], &w->kv[1], &w->dkv[0], &w->dkv[1], &w->dkv_step, &w->blk_o, &w->blk_lse, &w->blk_dq};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) buf_free(env, bs[i]);
}

static size_t A(const StepEnv *env) { return (size_t)env->be->act_bytes; }
static void *W(const StepEnv *env, int p) { return params_act(env->ps, p); }
static float *G(const StepEnv *env, int p) { return params_grad(env->ps, p); }
/* beta of a GEMM adding to p's gradient: 0 for the step's first contribution
 * (params_zero_grads is lazy) */
static float GB(const StepEnv *env, int p) { return params_grad_beta(env->ps, p); }
/* p's gradient for a kernel that only adds (zeroed first when unset) */
static float *GA(const StepEnv *env, int p) { return params_grad_accumulate(env->ps, p); }

/* Experts all on this GPU (EP 1, ETP 1): the dispatch all-to-all would copy
 * the send buffer unchanged, so the experts read it and write their output
 * straight into ret; no receive buffer (moe_forward, moe_backward,
 * layer_reserve). */
static bool experts_local(const ModelDims *d) { return d->ep == 1 && d->etp == 1; }

/* ---- sequence parallelism: the TP collectives around each block ----------- */

/* full [T, h] <- all-gather over TP of this rank's shard [Ts, h]; with tp 1
 * the shard itself (no copy).  NULL when the buffer could not be had. */
static const void *sp_gather(StepEnv *env, Buf *full, const void *shard)
{
    const ModelDims *d = &env->dim;
    if (d->tp == 1) return shard;
    void *f = buf_get(env, full, (size_t)d->T * d->h * A(env));
    if (env->failed) return NULL;
    env->be->all_gather(env->be, f, shard, (size_t)d->Ts * d->h, DT_ACT, GROUP_TP);
    return f;
}

/* where a row-parallel GEMM writes its [T, h] partial sums: the shard [Ts, h]
 * itself with tp 1, else a full buffer sp_scatter reduces */
static void *sp_partial(StepEnv *env, Buf *full, void *shard)
{
    const ModelDims *d = &env->dim;
    if (d->tp == 1) return shard;
    return buf_get(env, full, (size_t)d->T * d->h * A(env));
}

/* shard [Ts, h] <- reduce-scatter over TP of the partial sums [T, h] */
static void sp_scatter(StepEnv *env, void *shard, const void *partial)
{
    const ModelDims *d = &env->dim;
    if (d->tp == 1) return;
    env->be->reduce_scatter(env->be, shard, partial, (size_t)d->Ts * d->h, DT_ACT, GROUP_TP);
}

/* ---- dense SwiGLU MLP ------------------------------------------------------ */

/* out [T, h] (=, or += when beta 1) from in [T, h]; saves hbuf [T, 2F], abuf [T, F] */
static void mlp_forward(StepEnv *env, int w13, int w2, int F, const void *in, void *out,
                        Buf *hbuf, Buf *abuf, float beta)
{
    Backend *be = env->be;
    int T = env->dim.T, h = env->dim.h;
    void *hh = buf_get(env, hbuf, (size_t)T * 2 * F * A(env));
    void *aa = buf_get(env, abuf, (size_t)T * F * A(env));
    be->gemm(be, hh, false, in, W(env, w13), T, 2 * F, h, 0, 1, 0.0f);
    be->swiglu_forward(be, aa, hh, T, F);
    be->gemm(be, out, false, aa, W(env, w2), T, h, F, 0, 1, beta);
}

/* dout [T, h] -> din [T, h] (= when beta 0, += when beta 1); weight grads += */
static void mlp_backward(StepEnv *env, int w13, int w2, int F, const void *in, const void *dout,
                         void *din, Buf *hbuf, Buf *abuf, float beta)
{
    Backend *be = env->be;
    int T = env->dim.T, h = env->dim.h;
    void *da = buf_get(env, &env->bwd.big2, (size_t)T * F * A(env));
    void *dh = buf_get(env, &env->bwd.big1, (size_t)T * 2 * F * A(env));
    be->gemm(be, da, false, dout, W(env, w2), T, F, h, 0, 0, 0.0f);
    be->gemm(be, G(env, w2), true, dout, abuf->p, h, F, T, 1, 0, GB(env, w2));
    be->swiglu_backward(be, dh, da, hbuf->p, T, F);
    be->gemm(be, din, false, dh, W(env, w13), T, h, 2 * F, 0, 0, beta);
    be->gemm(be, G(env, w13), true, dh, in, 2 * F, h, T, 1, 0, GB(env, w13));
}

/* ---- context parallelism: load-balanced ring attention --------------------
 *
 * This rank holds, of each of the b sequences, the query/key/value rows of
 * chunks cp_rank ("half 0") and 2 cp - 1 - cp_rank ("half 1"), c tokens each
 * (core/layout.h).  At ring step i it holds the K/V of CP rank r - i (mod
 * cp) and computes, per sequence, the blocks (query half, key half) that the
 * causal mask leaves visible (layout_cp_ring_steps):
 *   step 0:        (0,0) causal, (1,0) full, (1,1) causal;
 *   1 <= i <= r:   an earlier rank's chunks: (0,0) and (1,0) full;
 *   i > r:         a later rank's chunks: (1,0) and (1,1) full.
 * Each block's (out, lse) is merged into the running result of its query
 * half (the first block of a half writes it directly).  lse is kept as
 * [b, 2, nl, c] f32 (one contiguous [nl, c] per query half).  K|V travel as
 * one packed [T, 2 gl d] buffer (double-buffered: the one held, the one
 * arriving); in the backward the partial dK|dV of the K|V held travels one
 * step behind it and, after the last step, reaches its owner.
 *
 * Overlap (StepEnv.overlap_cp, --overlap cp): the K|V of step i + 1 are sent
 * and received while step i's blocks run, and waited for after them; the
 * dK|dV a rank finished at step i are sent while step i + 1's blocks run.
 * Without it each hop is sent and waited for where the step ends.  Both
 * paths do the same arithmetic in the same order (identical results); the
 * time the compute waited for the ring is PHASE_CP_COMM. */
typedef struct { int qh, kh; bool causal, direct; } CpBlock;

static int cp_blocks(const ModelDims *d, int step, CpBlock out[3])
{
    if (step == 0) {
        out[0] = (CpBlock){0, 0, true, true};
        out[1] = (CpBlock){1, 0, false, true};
        out[2] = (CpBlock){1, 1, true, false};
        return 3;
    }
    if (step <= d->cp_rank) {
        out[0] = (CpBlock){0, 0, false, false};
        out[1] = (CpBlock){1, 0, false, false};
        return 2;
    }
    out[0] = (CpBlock){1, 0, false, false};
    out[1] = (CpBlock){1, 1, false, false};
    return 2;
}

/* The ring's device buffers of one direction (the same sizes in
 * layer_reserve and in the ring): K|V held and arriving [T, kvw]; forward:
 * one block's out [c, nl d] and lse [nl, c] f32; backward: the partial
 * dK|dV held and arriving, this step's dK|dV [T, kvw], one block's dq
 * [c, qkvwl] (its K|V columns stay 0) and dK|dV [c, max(nl d, kvw)]. */
typedef struct {
    int c, nd, w, kvw;           /* chunk tokens, nl d, qkvwl, 2 gl d */
    size_t a, n;                 /* act bytes; elements of one packed K|V [T, kvw] */
    char *kv[2], *dkv[2], *dstep, *blk, *bdq;
    float *blk_lse;
} CpRing;

static int cp_ring_buffers(StepEnv *env, Workspace *ws, bool backward, CpRing *r)
{
    const ModelDims *d = &env->dim;
    r->c = d->c; r->nd = d->nl * d->d; r->w = d->qkvwl; r->kvw = 2 * d->gl * d->d;
    r->a = A(env); r->n = (size_t)d->T * r->kvw;
    size_t nb = r->n * r->a, c = (size_t)r->c;
    r->kv[0] = buf_get(env, &ws->kv[0], nb);
    r->kv[1] = buf_get(env, &ws->kv[1], nb);
    if (!backward) {
        r->blk = buf_get(env, &ws->blk_o, c * r->nd * r->a);
        r->blk_lse = buf_get(env, &ws->blk_lse, c * d->nl * 4);
    } else {
        r->dkv[0] = buf_get(env, &ws->dkv[0], nb);
        r->dkv[1] = buf_get(env, &ws->dkv[1], nb);
        r->dstep = buf_get(env, &ws->dkv_step, nb);
        r->bdq = buf_get(env, &ws->blk_dq, c * r->w * r->a);
        r->blk = buf_get(env, &ws->blk_o, c * (size_t)(r->nd > r->kvw ? r->nd : r->kvw) * r->a);
    }
    return env->failed ? -1 : 0;
}

/* kv [T, kvw] <- the K|V columns of qkv [T, w] */
static void cp_pack_kv(StepEnv *env, const CpRing *r, char *kv, const char *qkv)
{
    env->be->copy_2d(env->be, kv, (size_t)r->kvw * r->a, qkv + (size_t)r->nd * r->a, (size_t)r->w * r->a,
                     (size_t)r->kvw * r->a, (size_t)env->dim.T);
}

/* The exposed ring communication is PHASE_CP_COMM, cut out of the
 * attention phase around it (phases do not nest on the GPU). */
static void cp_comm_phase(Backend *be, bool on)
{
    be->phase_end(be, on ? PHASE_ATTENTION : PHASE_CP_COMM);
    be->phase_begin(be, on ? PHASE_CP_COMM : PHASE_ATTENTION);
}

/* one ring hop over the CP group, started: send (n elements) to the next
 * rank, recv from the previous; the handle for cp_wait */
static int cp_shift(StepEnv *env, void *send, void *recv, size_t n)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    int next = (d->cp_rank + 1) % d->cp, prev = (d->cp_rank + d->cp - 1) % d->cp;
    P2POp ops[2] = {{true, next, send, n}, {false, prev, recv, n}};
    cp_comm_phase(be, true);
    int h = be->p2p_start(be, ops, 2, DT_ACT, GROUP_CP);
    cp_comm_phase(be, false);
    return h;
}

static void cp_wait(StepEnv *env, int h)
{
    if (h < 0) return;
    cp_comm_phase(env->be, true);
    env->be->p2p_wait(env->be, h);
    cp_comm_phase(env->be, false);
}

/* the first row of half `half` (0 or 1) of sequence sq in [T, ...] */
static size_t cp_row(const ModelDims *d, int sq, int half)
{
    return (size_t)sq * 2 * d->c + (size_t)half * d->c;
}

/* Step i of the forward ring on the K|V held (kv): every block of every
 * sequence into o [T, nl d] and lse [b, 2, nl, c]. */
static void cp_step_forward(StepEnv *env, const CpRing *r, int i, const char *kv, const char *qkv, char *o,
                            float *lse)
{
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    size_t a = r->a, vo = (size_t)d->gl * d->d * a;
    CpBlock blk[3];
    int nb = cp_blocks(d, i, blk);
    for (int sq = 0; sq < d->b; sq++)
        for (int j = 0; j < nb; j++) {
            size_t qrow = cp_row(d, sq, blk[j].qh);
            const char *k = kv + cp_row(d, sq, blk[j].kh) * r->kvw * a;
            char *out = o + qrow * r->nd * a;
            float *l = lse + ((size_t)sq * 2 + blk[j].qh) * d->nl * r->c;
            be->attention_block_forward(be, blk[j].direct ? (void *)out : r->blk, blk[j].direct ? l : r->blk_lse,
                                        qkv + qrow * r->w * a, k, k + vo, r->c, r->c, blk[j].causal, d->nl, d->gl,
                                        d->d, r->w, r->kvw);
            if (!blk[j].direct) be->attention_merge(be, out, l, r->blk, r->blk_lse, r->c, d->nl, d->d);
        }
}

/* Step i of the backward ring on the K|V held (kv): dq of every block
 * added into dqkv [T, w], its dK|dV into r->dstep [T, kvw]. */
static void cp_step_backward(StepEnv *env, const CpRing *r, int i, const char *kv, char *dqkv, const char *dO,
                             const char *qkv, const char *o, const float *lse)
{
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    size_t a = r->a, vo = (size_t)d->gl * d->d * a;
    CpBlock blk[3];
    int nb = cp_blocks(d, i, blk);
    for (int sq = 0; sq < d->b; sq++)
        for (int j = 0; j < nb; j++) {
            size_t qrow = cp_row(d, sq, blk[j].qh), krow = cp_row(d, sq, blk[j].kh);
            const char *k = kv + krow * r->kvw * a;
            const float *l = lse + ((size_t)sq * 2 + blk[j].qh) * d->nl * r->c;
            be->attention_block_backward(be, r->bdq, r->blk, r->blk + vo, dO + qrow * r->nd * a,
                                         qkv + qrow * r->w * a, k, k + vo, o + qrow * r->nd * a, l, r->c, r->c,
                                         blk[j].causal, d->nl, d->gl, d->d, r->w, r->kvw);
            char *dq = dqkv + qrow * r->w * a, *dk = r->dstep + krow * r->kvw * a;
            be->add_act(be, dq, dq, r->bdq, (size_t)r->c * r->w);
            be->add_act(be, dk, dk, r->blk, (size_t)r->c * r->kvw);
        }
}

/* o [T, nl d] and lse [b, 2, nl, c] from qkv [T, qkvwl] (RoPE applied) */
static void cp_ring_forward(StepEnv *env, Workspace *ws, void *o, float *lse, const char *qkv)
{
    CpRing r;
    if (cp_ring_buffers(env, ws, false, &r)) return;
    bool overlap = env->overlap_cp;
    cp_pack_kv(env, &r, r.kv[0], qkv);
    for (int i = 0; i < env->dim.cp; i++) {
        bool more = i + 1 < env->dim.cp;
        int h = more && overlap ? cp_shift(env, r.kv[0], r.kv[1], r.n) : -1;
        cp_step_forward(env, &r, i, r.kv[0], qkv, o, lse);
        if (more && !overlap) h = cp_shift(env, r.kv[0], r.kv[1], r.n);
        cp_wait(env, h);
        char *t = r.kv[0]; r.kv[0] = r.kv[1]; r.kv[1] = t;
    }
}

/* dqkv [T, qkvwl] (written) from dO [T, nl d], the forward's qkv, o, lse */
static void cp_ring_backward(StepEnv *env, Workspace *ws, char *dqkv, const void *dO,
                             const char *qkv, const void *o, const float *lse)
{
    Backend *be = env->be;
    CpRing r;
    if (cp_ring_buffers(env, ws, true, &r)) return;
    bool overlap = env->overlap_cp;
    size_t nb = r.n * r.a;
    cp_pack_kv(env, &r, r.kv[0], qkv);
    be->zero(be, r.dkv[0], nb);   /* step 0: no partial gradient of the own K|V yet */
    be->zero(be, dqkv, (size_t)env->dim.T * r.w * r.a);
    be->zero(be, r.bdq, (size_t)r.c * r.w * r.a);
    int cur = 0, hd = -1;         /* dkv[cur]: the partial dK|dV of the K|V held (hd: arriving) */
    for (int i = 0; i < env->dim.cp; i++) {
        bool more = i + 1 < env->dim.cp;
        int hk = more && overlap ? cp_shift(env, r.kv[0], r.kv[1], r.n) : -1;
        be->zero(be, r.dstep, nb);
        cp_step_backward(env, &r, i, r.kv[0], dqkv, dO, qkv, o, lse);
        if (more && !overlap) hk = cp_shift(env, r.kv[0], r.kv[1], r.n);
        /* the partial gradient the previous rank finished at its step i - 1
         * (overlap: in flight behind this step's blocks), plus this step's,
         * moves on; after the last step it reaches its owner (r + 1 held it) */
        cp_wait(env, hd);
        be->add_act(be, r.dkv[cur], r.dkv[cur], r.dstep, r.n);
        hd = cp_shift(env, r.dkv[cur], r.dkv[1 - cur], r.n);
        cur = 1 - cur;
        if (!overlap) { cp_wait(env, hd); hd = -1; }
        cp_wait(env, hk);
        char *t = r.kv[0]; r.kv[0] = r.kv[1]; r.kv[1] = t;
    }
    cp_wait(env, hd);
    be->copy_2d(be, dqkv + (size_t)r.nd * r.a, (size_t)r.w * r.a, r.dkv[cur], (size_t)r.kvw * r.a,
                (size_t)r.kvw * r.a, (size_t)env->dim.T);
}

/* every ring buffer of both directions, before the first step */
static void cp_ring_reserve(StepEnv *env)
{
    CpRing r;
    cp_ring_buffers(env, &env->fwd, false, &r);
    cp_ring_buffers(env, &env->bwd, true, &r);
}

/* ---- attention block ------------------------------------------------------- */

/* x_mid [T, h] = x + Wo . attention(rope(RMSNorm(x) . Wqkv^T)) */
static void attention_forward(const Layer *y, LayerActs *s, const void *x, void *x_mid)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    /* x, x_mid: the sequence-parallel shard [Ts, h]; QKV, the attention
     * core and the output projection see all T tokens of this rank's heads */
    int T = d->T, Ts = d->Ts, h = d->h, nd = d->nl * d->d, w = d->qkvwl;
    be->phase_begin(be, PHASE_ATTENTION);
    void *xn1 = buf_get(env, &s->xn1, (size_t)Ts * h * A(env));
    float *rstd1 = buf_get(env, &s->rstd1, (size_t)Ts * 4);
    char *qkv = buf_get(env, &s->qkv, (size_t)T * w * A(env));
    void *o = buf_get(env, &s->o, (size_t)T * nd * A(env));
    float *lse = buf_get(env, &s->lse, (size_t)T * d->nl * 4);
    void *tmp = buf_get(env, &env->fwd.y, (size_t)Ts * h * A(env));
    void *part = sp_partial(env, &env->fwd.full, tmp);
    if (env->failed) { be->phase_end(be, PHASE_ATTENTION); return; }
    be->rmsnorm_forward(be, xn1, rstd1, x, W(env, y->attn_norm), Ts, h, LAYER_RMS_EPS);
    const void *xg = sp_gather(env, &env->fwd.gx, xn1);
    if (!xg) { be->phase_end(be, PHASE_ATTENTION); return; }
    be->gemm(be, qkv, false, xg, W(env, y->wqkv), T, w, h, 0, 1, 0.0f);
    be->rope(be, qkv, env->pos.p, T, d->nl, d->d, w, LAYER_ROPE_THETA, false);
    be->rope(be, qkv + (size_t)nd * A(env), env->pos.p, T, d->gl, d->d, w, LAYER_ROPE_THETA, false);
    /* the attention core: one call on (q, k, v) -> (out, lse), or the
     * context-parallel ring */
    if (d->cp > 1)
        cp_ring_forward(env, &env->fwd, o, lse, qkv);
    else
        be->attention_forward(be, o, lse, qkv, qkv + (size_t)nd * A(env),
                              qkv + (size_t)(nd + d->gl * d->d) * A(env), d->b, d->s, d->nl, d->gl,
                              d->d, w, w);
    be->gemm(be, part, false, o, W(env, y->wo), T, h, nd, 0, 1, 0.0f);
    sp_scatter(env, tmp, part);
    be->add_act(be, x_mid, x, tmp, (size_t)Ts * h);
    be->phase_end(be, PHASE_ATTENTION);
}

/* dx [T, h]: in, gradient wrt x_mid; out, gradient wrt x (the layer input) */
static void attention_backward(const Layer *y, LayerActs *s, void *dx)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    int T = d->T, Ts = d->Ts, h = d->h, nd = d->nl * d->d, w = d->qkvwl;
    be->phase_begin(be, PHASE_ATTENTION);
    void *dO = buf_get(env, &env->bwd.o, (size_t)T * nd * A(env));
    char *dqkv = buf_get(env, &env->bwd.qkv, (size_t)T * w * A(env));
    void *dxn = buf_get(env, &env->bwd.t1, (size_t)Ts * h * A(env));
    void *dtmp = buf_get(env, &env->bwd.t2, (size_t)Ts * h * A(env));
    void *dpart = sp_partial(env, &env->bwd.full, dxn);
    if (env->failed) { be->phase_end(be, PHASE_ATTENTION); return; }
    const void *dxg = sp_gather(env, &env->bwd.full2, dx);   /* mirror of the reduce-scatter */
    if (!dxg) { be->phase_end(be, PHASE_ATTENTION); return; }
    char *qkv = s->qkv.p;
    const void *xn1g = sp_gather(env, &env->bwd.gx, s->xn1.p);   /* again: not kept */
    if (!xn1g) { be->phase_end(be, PHASE_ATTENTION); return; }
    be->gemm(be, dO, false, dxg, W(env, y->wo), T, nd, h, 0, 0, 0.0f);
    be->gemm(be, G(env, y->wo), true, dxg, s->o.p, h, nd, T, 1, 0, GB(env, y->wo));
    size_t ko = (size_t)nd * A(env), vo = (size_t)(nd + d->gl * d->d) * A(env);
    if (d->cp > 1)
        cp_ring_backward(env, &env->bwd, dqkv, dO, qkv, s->o.p, s->lse.p);
    else
        be->attention_backward(be, dqkv, dqkv + ko, dqkv + vo, dO, qkv, qkv + ko, qkv + vo, s->o.p,
                               s->lse.p, d->b, d->s, d->nl, d->gl, d->d, w, w);
    be->rope(be, dqkv, env->pos.p, T, d->nl, d->d, w, LAYER_ROPE_THETA, true);
    be->rope(be, dqkv + ko, env->pos.p, T, d->gl, d->d, w, LAYER_ROPE_THETA, true);
    be->gemm(be, dpart, false, dqkv, W(env, y->wqkv), T, h, w, 0, 0, 0.0f);
    be->gemm(be, G(env, y->wqkv), true, dqkv, xn1g, w, h, T, 1, 0, GB(env, y->wqkv));
    sp_scatter(env, dxn, dpart);                               /* mirror of the all-gather */
    be->rmsnorm_backward(be, dtmp, GA(env, y->attn_norm), dxn, s->x_in, W(env, y->attn_norm),
                         s->rstd1.p, Ts, h);
    be->add_act(be, dx, dx, dtmp, (size_t)Ts * h);
    be->phase_end(be, PHASE_ATTENTION);
}

/* ---- MoE block ------------------------------------------------------------- */

/* Tests: replace the router's top-k choices of this layer by the trace's (the
 * probabilities of the forced experts, renormalised over the k as usual) and
 * count the (token, slot) choices that differ from the router's own, as sets
 * per token.  Host round trip: a test path, not timed. */
static void force_routing(const Layer *y, LayerActs *s, const int32_t *want)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    int T = env->dim.Ts, k = env->dim.k, E = env->dim.E;   /* this rank's tokens */
    size_t nk = (size_t)T * k;
    if (!env->h_force) {
        env->h_force = malloc(sizeof(int32_t) * nk);
        env->h_probs = malloc(sizeof(float) * (size_t)T * E);
        env->h_tprob = malloc(sizeof(float) * nk);
        if (!env->h_force || !env->h_probs || !env->h_tprob) { env->failed = 1; return; }
    }
    be->download(be, env->h_force, s->topk_idx.p, sizeof(int32_t) * nk);
    be->download(be, env->h_probs, s->probs.p, sizeof(float) * (size_t)T * E);
    for (int t = 0; t < T; t++) {
        double S = 0;
        for (int j = 0; j < k; j++) {
            int e = want[(size_t)t * k + j], same = 0;
            for (int i = 0; i < k; i++) same |= env->h_force[(size_t)t * k + i] == e;
            env->route_flips += !same;
            S += env->h_probs[(size_t)t * E + e];
        }
        for (int j = 0; j < k; j++) {
            float p = env->h_probs[(size_t)t * E + want[(size_t)t * k + j]];
            env->h_tprob[(size_t)t * k + j] = k > 1 ? (float)(p / S) : p;
        }
    }
    be->upload(be, s->topk_idx.p, want, sizeof(int32_t) * nk);
    be->upload(be, s->topk_prob.p, env->h_tprob, sizeof(float) * nk);
}

/* The dispatcher plan of one MoE layer and micro-batch: the row map on the
 * device (moe_plan), the per-expert counts to the host (one host
 * synchronisation), the token-count exchange, and the expert-major map
 * (sort_src) up to the device. */
static void dispatch_exchange(const Layer *y, MicroBatch *mb, LayerActs *s)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    DispatchPlan *dp = &s->dp;
    int El = d->El, ep = d->ep, etp = d->etp;
    size_t nk = (size_t)d->Ts * d->k;
    be->phase_begin(be, PHASE_DISPATCH_COMM);
    int32_t *row_of = buf_get(env, &s->row_of, sizeof(int32_t) * nk);
    int32_t *recv = malloc(sizeof(int32_t) * (size_t)ep * El);
    if (!recv || env->failed) { free(recv); env->failed = 1; be->phase_end(be, PHASE_DISPATCH_COMM); return; }
    if (mb->route.trace && !mb->route.force) {   /* record the routing (tests) */
        be->download(be, env->h_idx, s->topk_idx.p, sizeof(int32_t) * nk);
        /* the trace holds all T tokens; this rank's are its shard's */
        memcpy(mb->route.trace + (size_t)y->index * d->T * d->k + (size_t)d->tp_rank * nk, env->h_idx,
               sizeof(int32_t) * nk);
    }
    /* the counts below size host loops: nothing is planned from the output
     * of a failed operation (the backend's sticky status) */
    be->moe_plan(be, row_of, env->h_kept, s->topk_idx.p, d->Ts, d->k, d->E, dp->capacity);
    if (be->status(be, NULL)) { free(recv); be->phase_end(be, PHASE_DISPATCH_COMM); return; }
    dispatch_plan_counts(dp, env->h_kept);
    s->dropped = dp->dropped;
    be->all_to_all_host_i32(be, dp->expert_rows, recv, El, GROUP_EP);
    if (etp > 1) be->all_gather_host_i32(be, recv, dp->recv_expert_rows, ep * El, GROUP_ETP);
    else memcpy(dp->recv_expert_rows, recv, sizeof(int32_t) * (size_t)ep * El);
    free(recv);
    if (be->status(be, NULL)) { be->phase_end(be, PHASE_DISPATCH_COMM); return; }
    if (dispatch_plan_finish(dp, d->etp_rank, env->pad_expert_groups ? DISPATCH_PAD_ALIGN : 0)) {
        env->failed = 1;
        be->phase_end(be, PHASE_DISPATCH_COMM);
        return;
    }
    env->dispatches++;
    env->padded_dispatches += dp->padded;
    int32_t *sort_src = buf_get(env, &s->sort_src, sizeof(int32_t) * (size_t)dp->rows);
    if (env->failed) { be->phase_end(be, PHASE_DISPATCH_COMM); return; }
    be->upload(be, sort_src, dp->sort_src, sizeof(int32_t) * (size_t)dp->rows);
    be->phase_end(be, PHASE_DISPATCH_COMM);
}

/* all-to-all-v over EP of [rows, h] act; forward: send rows -> expert rows,
 * backward: the reverse counts */
static void ep_all_to_all(StepEnv *env, const DispatchPlan *dp, const void *send, void *recv,
                          int forward)
{
    Backend *be = env->be;
    int ep = env->dim.ep, h = env->dim.h;
    size_t *sc = env->a2a, *sd = sc + ep, *rc = sd + ep, *rd = rc + ep;
    for (int r = 0; r < ep; r++) {
        size_t a_c = dp->send_counts[r], a_d = dp->send_displs[r];
        size_t b_c = dp->recv_counts[r], b_d = dp->recv_displs[r];
        if (forward) { sc[r] = a_c * h; sd[r] = a_d * h; rc[r] = b_c * h; rd[r] = b_d * h; }
        else { sc[r] = b_c * h; sd[r] = b_d * h; rc[r] = a_c * h; rd[r] = a_d * h; }
    }
    be->all_to_all_v(be, send, sc, sd, recv, rc, rd, DT_ACT, GROUP_EP);
}

/* MoE forward: out [T, h] (=) from xn2 [T, h] */
static void moe_forward(const Layer *y, MicroBatch *mb, LayerActs *s, const void *xn2, void *out)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    Workspace *ws = &env->fwd;
    DispatchPlan *dp = &s->dp;
    /* the MoE layer takes its tokens from the sequence-parallel shard */
    int T = d->Ts, h = d->h, k = d->k, E = d->E, etp = d->etp, Fl = d->Fl;
    size_t a = A(env);
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    float *logits = buf_get(env, &ws->logits_f, (size_t)T * E * 4);
    float *probs = buf_get(env, &s->probs, (size_t)T * E * 4);
    int32_t *idx = buf_get(env, &s->topk_idx, (size_t)T * k * 4);
    float *tprob = buf_get(env, &s->topk_prob, (size_t)T * k * 4);
    float *gcoef = env->aux_coeff > 0 ? buf_get(env, &s->gcoef, (size_t)E * 4) : NULL;
    if (env->failed) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
    be->gemm(be, logits, true, xn2, W(env, y->router), T, E, h, 0, 1, 0.0f);
    be->router_forward(be, probs, idx, tprob, logits, T, E, k, k > 1);
    if (mb->route.trace && mb->route.force)
        force_routing(y, s, mb->route.trace + ((size_t)y->index * d->T + (size_t)d->tp_rank * T) * k);
    if (env->aux_coeff > 0 && d->tp == 1 && d->cp == 1) {
        be->aux_loss_forward(be, gcoef, env->loss_acc + 1, probs, idx, T, E, k, env->aux_coeff,
                             (float)T);
    } else if (env->aux_coeff > 0) {
        /* sequence parallelism: the aux loss of the whole micro-batch
         * (Megatron reduces tokens_per_expert over the TP group): f_e and
         * P_e over all T tokens, gathered; every TP rank adds 1 / tp of it
         * (the loss read sums over TP), and gcoef is the same everywhere */
        /* with context parallelism over TP x CP (Megatron's
         * tensor_and_context_parallel group): the micro-batch's b*s tokens */
        size_t Tf = (size_t)d->T * d->cp;
        GroupKind g = d->cp > 1 ? GROUP_TP_CP : GROUP_TP;
        float *pg = buf_get(env, &ws->probs_g, Tf * E * 4);
        int32_t *ig = buf_get(env, &ws->idx_g, Tf * k * 4);
        if (env->failed) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
        be->all_gather(be, pg, probs, (size_t)T * E, DT_F32, g);
        be->all_gather(be, ig, idx, (size_t)T * k, DT_I32, g);
        be->aux_loss_forward(be, gcoef, env->loss_acc + 1, pg, ig, (int)Tf, E, k, env->aux_coeff,
                             (float)Tf / (float)(d->tp * d->cp));
    }
    be->phase_end(be, PHASE_MOE_COMPUTE);

    dispatch_exchange(y, mb, s);
    if (env->failed || be->status(be, NULL)) return;
    const int32_t *row_of = s->row_of.p;
    const int32_t *sort_src = s->sort_src.p;
    int pad = dp->pad_rows, rows = dp->rows;

    bool local = experts_local(d);
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *send = buf_get(env, &ws->send, (size_t)dp->send_rows * h * a);
    void *recv = local ? send : buf_get(env, &ws->recv, (size_t)pad * h * a);
    void *gath = etp > 1 ? buf_get(env, &ws->gath, (size_t)etp * pad * h * a) : recv;
    void *X = buf_get(env, &s->X, (size_t)rows * h * a);
    void *hh = buf_get(env, &s->h13, (size_t)rows * 2 * Fl * a);
    void *aa = buf_get(env, &s->a, (size_t)rows * Fl * a);
    void *Y = buf_get(env, &ws->Y, (size_t)rows * h * a);
    void *ret = buf_get(env, &s->ret, (size_t)dp->send_rows * h * a);
    if (env->failed) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
    if (dp->capacity > 0) be->zero(be, send, (size_t)dp->send_rows * h * a);
    be->permute(be, send, xn2, row_of, T, k, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    if (!local) {
        be->phase_begin(be, PHASE_DISPATCH_COMM);
        ep_all_to_all(env, dp, send, recv, 1);
        if (etp > 1) be->all_gather(be, gath, recv, (size_t)pad * h, DT_ACT, GROUP_ETP);
        be->phase_end(be, PHASE_DISPATCH_COMM);
    }

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->gather_rows(be, X, gath, sort_src, rows, h);
    be->grouped_gemm(be, hh, false, X, W(env, y->w13), dp->group_rows, d->El, 0, 0, 2 * Fl, h, 0, 1, 0.0f);
    be->swiglu_forward(be, aa, hh, rows, Fl);
    be->grouped_gemm(be, Y, false, aa, W(env, y->w2), dp->group_rows, d->El, 0, 0, h, Fl, 0, 1, 0.0f);
    /* back to the gathered layout: sort_src covers every row of it but the
     * padding of each ETP rank's block (ETP > 1), which must be 0 */
    void *back = local ? ret : gath;
    if (etp > 1) be->zero(be, gath, (size_t)etp * pad * h * a);
    be->permute(be, back, Y, sort_src, rows, 1, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    if (!local) {
        be->phase_begin(be, PHASE_DISPATCH_COMM);
        if (etp > 1) be->reduce_scatter(be, recv, gath, (size_t)pad * h, DT_ACT, GROUP_ETP);
        ep_all_to_all(env, dp, recv, ret, 0);
        be->phase_end(be, PHASE_DISPATCH_COMM);
    }

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->unpermute(be, out, ret, tprob, row_of, T, k, h);
    if (y->sh13 >= 0 && d->tp == 1) {
        mlp_forward(env, y->sh13, y->sh2, d->shared_ffn, xn2, out, &s->mlp_h, &s->mlp_a, 1.0f);
    } else if (y->sh13 >= 0) {
        /* the shared expert is a TP MLP on the gathered tokens */
        const void *xg = sp_gather(env, &ws->gx, xn2);
        void *part = sp_partial(env, &ws->full, NULL);
        void *tmp = buf_get(env, &ws->y, (size_t)T * h * a);
        if (env->failed || !xg) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
        mlp_forward(env, y->sh13, y->sh2, d->sffl, xg, part, &s->mlp_h, &s->mlp_a, 0.0f);
        sp_scatter(env, tmp, part);
        be->add_act(be, out, out, tmp, (size_t)T * h);
    }
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

/* MoE backward: dout [T, h] -> dxn2 [T, h] (=) */
static void moe_backward(const Layer *y, MicroBatch *mb, LayerActs *s, const void *dout,
                         void *dxn2)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    Workspace *ws = &env->bwd;
    DispatchPlan *dp = &s->dp;
    int T = d->Ts, h = d->h, k = d->k, E = d->E, etp = d->etp, Fl = d->Fl;
    size_t a = A(env);
    const int32_t *row_of = s->row_of.p;
    const int32_t *sort_src = s->sort_src.p;
    int pad = dp->pad_rows, rows = dp->rows;

    bool local = experts_local(d);
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *dret = buf_get(env, &ws->send, (size_t)dp->send_rows * h * a);
    float *dprob = buf_get(env, &ws->prob, (size_t)T * k * 4);
    void *drecv = local ? dret : buf_get(env, &ws->recv, (size_t)pad * h * a);
    void *dgath = etp > 1 ? buf_get(env, &ws->gath, (size_t)etp * pad * h * a) : drecv;
    void *dY = buf_get(env, &ws->Y, (size_t)rows * h * a);
    void *da = buf_get(env, &ws->big2, (size_t)rows * Fl * a);
    void *dhh = buf_get(env, &ws->big1, (size_t)rows * 2 * Fl * a);
    float *dlog = buf_get(env, &ws->logits_f, (size_t)T * E * 4);
    void *dlog_a = buf_get(env, &ws->logits_a, (size_t)T * E * a);
    if (env->failed) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
    if (dp->capacity > 0) be->zero(be, dret, (size_t)dp->send_rows * h * a);
    be->unpermute_backward(be, dret, dprob, dout, s->ret.p, s->topk_prob.p, row_of, T, k, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    if (!local) {
        be->phase_begin(be, PHASE_DISPATCH_COMM);
        ep_all_to_all(env, dp, dret, drecv, 1);
        if (etp > 1) be->all_gather(be, dgath, drecv, (size_t)pad * h, DT_ACT, GROUP_ETP);
        be->phase_end(be, PHASE_DISPATCH_COMM);
    }

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->gather_rows(be, dY, dgath, sort_src, rows, h);
    be->grouped_gemm(be, da, false, dY, W(env, y->w2), dp->group_rows, d->El, 0, 0, Fl, h, 0, 0, 0.0f);
    be->grouped_gemm(be, G(env, y->w2), true, dY, s->a.p, dp->group_rows, d->El, 1, h, Fl, 0, 1, 0, GB(env, y->w2));
    be->swiglu_backward(be, dhh, da, s->h13.p, rows, Fl);
    void *dX = dY;
    be->grouped_gemm(be, dX, false, dhh, W(env, y->w13), dp->group_rows, d->El, 0, 0, h, 2 * Fl, 0, 0, 0.0f);
    be->grouped_gemm(be, G(env, y->w13), true, dhh, s->X.p, dp->group_rows, d->El, 1, 2 * Fl, h, 0, 1, 0, GB(env, y->w13));
    if (etp > 1) be->zero(be, dgath, (size_t)etp * pad * h * a);   /* the padding rows */
    be->permute(be, dgath, dX, sort_src, rows, 1, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    void *dsend = dret;            /* the send buffer again: dret is consumed */
    if (!local) {
        be->phase_begin(be, PHASE_DISPATCH_COMM);
        if (etp > 1) be->reduce_scatter(be, drecv, dgath, (size_t)pad * h, DT_ACT, GROUP_ETP);
        ep_all_to_all(env, dp, drecv, dsend, 0);
        be->phase_end(be, PHASE_DISPATCH_COMM);
    }

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->permute_backward(be, dxn2, dsend, row_of, T, k, h);
    /* router */
    be->router_backward(be, dlog, dprob, s->probs.p, s->topk_idx.p, s->topk_prob.p, T, E, k, k > 1);
    /* the aux loss of this micro-batch enters the step loss with weight
     * T * dloss (one of B*s/T micro-batches of the global batch) */
    if (env->aux_coeff > 0)
        be->aux_loss_backward(be, dlog, s->probs.p, s->gcoef.p, T, E, mb->dloss * (float)d->T * (float)d->cp);
    be->f32_to_act(be, dlog_a, dlog, (size_t)T * E);
    be->gemm(be, dxn2, false, dlog_a, W(env, y->router), T, h, E, 0, 0, 1.0f);
    be->gemm(be, G(env, y->router), true, dlog_a, s->xn2.p, E, h, T, 1, 0, GB(env, y->router));
    if (y->sh13 >= 0 && d->tp == 1) {
        mlp_backward(env, y->sh13, y->sh2, d->shared_ffn, s->xn2.p, dout, dxn2, &s->mlp_h,
                     &s->mlp_a, 1.0f);
    } else if (y->sh13 >= 0) {
        const void *dg = sp_gather(env, &ws->full2, dout);
        void *part = sp_partial(env, &ws->full, NULL);
        void *tmp = buf_get(env, &ws->t2, (size_t)T * h * a);   /* free until the norm's backward */
        const void *xg = sp_gather(env, &ws->gx, s->xn2.p);
        if (env->failed || !dg || !xg) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
        mlp_backward(env, y->sh13, y->sh2, d->sffl, xg, dg, part, &s->mlp_h, &s->mlp_a, 0.0f);
        sp_scatter(env, tmp, part);
        be->add_act(be, dxn2, dxn2, tmp, (size_t)T * h);
    }
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

/* ---- MLP block (norm, MoE or dense MLP, residual) ---------------------------- */

static void mlp_block_forward(const Layer *y, MicroBatch *mb, LayerActs *s, const void *x_mid,
                              void *x_out)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    int T = env->dim.Ts, h = env->dim.h;
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *xn2 = buf_get(env, &s->xn2, (size_t)T * h * A(env));
    float *rstd2 = buf_get(env, &s->rstd2, (size_t)T * 4);
    void *tmp = buf_get(env, &env->fwd.moe, (size_t)T * h * A(env));
    if (env->failed) { be->phase_end(be, PHASE_MOE_COMPUTE); return; }
    be->rmsnorm_forward(be, xn2, rstd2, x_mid, W(env, y->mlp_norm), T, h, LAYER_RMS_EPS);
    be->phase_end(be, PHASE_MOE_COMPUTE);
    if (y->moe) {
        moe_forward(y, mb, s, xn2, tmp);
    } else {
        be->phase_begin(be, PHASE_MOE_COMPUTE);
        const void *xg = sp_gather(env, &env->fwd.gx, xn2);
        void *part = sp_partial(env, &env->fwd.full, tmp);
        if (!env->failed && xg) {
            mlp_forward(env, y->d13, y->d2, env->dim.dffl, xg, part, &s->mlp_h, &s->mlp_a, 0.0f);
            sp_scatter(env, tmp, part);
        }
        be->phase_end(be, PHASE_MOE_COMPUTE);
    }
    if (env->failed) return;
    be->add_act(be, x_out, x_mid, tmp, (size_t)T * h);
}

/* dx [T, h]: in, gradient wrt x_out; out, gradient wrt x_mid */
static void mlp_block_backward(const Layer *y, MicroBatch *mb, LayerActs *s, void *dx)
{
    StepEnv *env = y->env;
    Backend *be = env->be;
    int T = env->dim.Ts, h = env->dim.h;
    void *dxn = buf_get(env, &env->bwd.t1, (size_t)T * h * A(env));
    void *dtmp = buf_get(env, &env->bwd.t2, (size_t)T * h * A(env));
    if (env->failed) return;
    if (y->moe) {
        moe_backward(y, mb, s, dx, dxn);
    } else {
        be->phase_begin(be, PHASE_MOE_COMPUTE);
        const void *dg = sp_gather(env, &env->bwd.full2, dx);
        void *part = sp_partial(env, &env->bwd.full, dxn);
        const void *xg = sp_gather(env, &env->bwd.gx, s->xn2.p);
        if (!env->failed && dg && xg) {
            mlp_backward(env, y->d13, y->d2, env->dim.dffl, xg, dg, part, &s->mlp_h, &s->mlp_a, 0.0f);
            sp_scatter(env, dxn, part);
        }
        be->phase_end(be, PHASE_MOE_COMPUTE);
    }
    if (env->failed) return;
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->rmsnorm_backward(be, dtmp, GA(env, y->mlp_norm), dxn, s->x_mid.p, W(env, y->mlp_norm),
                         s->rstd2.p, T, h);
    be->add_act(be, dx, dx, dtmp, (size_t)T * h);   /* T: the shard's tokens here */
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

/* ---- the layer ----------------------------------------------------------- */

void layer_forward(const Layer *y, MicroBatch *mb, const void *in, void *out)
{
    StepEnv *env = y->env;
    LayerActs *s = &mb->acts[y->index];
    s->x_in = in;
    s->dropped = 0;
    void *x_mid = buf_get(env, &s->x_mid, (size_t)env->dim.Ts * env->dim.h * A(env));
    if (env->failed) return;
    attention_forward(y, s, in, x_mid);
    if (env->failed) return;
    mlp_block_forward(y, mb, s, x_mid, out);
}

void layer_backward(const Layer *y, MicroBatch *mb, void *dx)
{
    LayerActs *s = &mb->acts[y->index];
    if (y->env->failed) return;
    mlp_block_backward(y, mb, s, dx);
    if (y->env->failed) return;
    attention_backward(y, s, dx);
}

/* ---- sizing before the first step ------------------------------------------ */

/* Dispatcher rows this rank expects per micro-batch: exact with a capacity
 * factor (every expert gets cap rows from every rank); dropless, the
 * balanced case (each rank receives as many rows, T*k, as it sends); the
 * Buf slack (1/8) absorbs ordinary imbalance, more grows the buffer. */
static void expected_rows(const StepEnv *env, int *send_rows, int *pad_rows, int *rows)
{
    const ModelDims *d = &env->dim;
    int cap = d->cf > 0 ? dispatch_capacity(d->Ts, d->k, d->E, d->cf) : 0;
    *send_rows = cap > 0 ? d->E * cap : d->Ts * d->k;
    *pad_rows = cap > 0 ? d->ep * d->El * cap : d->Ts * d->k;
    *rows = d->etp * *pad_rows;
}

void layer_reserve(const Layer *y, MicroBatch *mb)
{
    StepEnv *env = y->env;
    const ModelDims *d = &env->dim;
    LayerActs *s = &mb->acts[y->index];
    Workspace *fw = &env->fwd, *bw = &env->bwd;
    /* Tf: all tokens of the micro-batch (QKV, attention, TP MLPs);
     * T: this rank's sequence-parallel shard (residual, norms, MoE) */
    size_t a = A(env), Tf = (size_t)d->T, T = (size_t)d->Ts, h = (size_t)d->h;
    size_t nd = (size_t)d->nl * d->d, w = (size_t)d->qkvwl, E = (size_t)d->E, k = (size_t)d->k;
    /* attention block, both directions */
    buf_get(env, &s->x_mid, T * h * a);
    buf_get(env, &s->xn1, T * h * a);
    buf_get(env, &s->rstd1, T * 4);
    buf_get(env, &s->qkv, Tf * w * a);
    buf_get(env, &s->o, Tf * nd * a);
    buf_get(env, &s->lse, Tf * (size_t)d->nl * 4);
    buf_get(env, &fw->y, T * h * a);
    buf_get(env, &bw->o, Tf * nd * a);
    buf_get(env, &bw->qkv, Tf * w * a);
    buf_get(env, &bw->t1, T * h * a);
    buf_get(env, &bw->t2, T * h * a);
    if (d->cp > 1) cp_ring_reserve(env);
    if (d->tp > 1) {
        Workspace *ws2[2] = {fw, bw};
        for (int i = 0; i < 2; i++) {
            if (ws2[i]->full.cap < Tf * h * a) buf_get(env, &ws2[i]->full, Tf * h * a);
            if (ws2[i]->full2.cap < Tf * h * a) buf_get(env, &ws2[i]->full2, Tf * h * a);
            if (ws2[i]->gx.cap < Tf * h * a) buf_get(env, &ws2[i]->gx, Tf * h * a);
        }
        if (d->tp > d->g) buf_get(env, &bw->probs_g, 2 * (size_t)d->g * d->d * h * 4);  /* KV replicas */
    }
    if ((d->tp > 1 || d->cp > 1) && y->moe) {
        /* the aux loss over the micro-batch's T * cp tokens (its coefficient
         * is set after creation), the sizes moe_forward asks */
        buf_get(env, &fw->probs_g, Tf * (size_t)d->cp * E * 4);
        buf_get(env, &fw->idx_g, Tf * (size_t)d->cp * k * 4);
    }
    /* MLP block */
    buf_get(env, &s->xn2, T * h * a);
    buf_get(env, &s->rstd2, T * 4);
    buf_get(env, &fw->moe, T * h * a);
    int F = y->moe ? d->sffl : d->dffl;
    if (F > 0) {
        buf_get(env, &s->mlp_h, Tf * 2 * (size_t)F * a);
        buf_get(env, &s->mlp_a, Tf * (size_t)F * a);
    }
    /* the backward's MLP gradients big1, big2: layer_mlp_grad_bytes, reserved
     * once for the rank's largest layer (model.c) */
    if (!y->moe) return;
    int send_rows, pad, rows;
    expected_rows(env, &send_rows, &pad, &rows);
    size_t Fl = (size_t)d->Fl, sr = (size_t)send_rows, pr = (size_t)pad, r = (size_t)rows;
    buf_get(env, &fw->logits_f, T * E * 4);
    buf_get(env, &s->probs, T * E * 4);
    buf_get(env, &s->topk_idx, T * k * 4);
    buf_get(env, &s->topk_prob, T * k * 4);
    buf_get(env, &s->gcoef, E * 4);
    buf_get(env, &s->row_of, T * k * 4);
    buf_get(env, &s->sort_src, r * 4);
    buf_get(env, &s->X, r * h * a);
    buf_get(env, &s->h13, r * 2 * Fl * a);
    buf_get(env, &s->a, r * Fl * a);
    buf_get(env, &s->ret, sr * h * a);
    Workspace *ws[2] = {fw, bw};
    for (int i = 0; i < 2; i++) {
        if (ws[i]->send.cap < sr * h * a) buf_get(env, &ws[i]->send, sr * h * a);
        if (!experts_local(d) && ws[i]->recv.cap < pr * h * a) buf_get(env, &ws[i]->recv, pr * h * a);
        if (d->etp > 1 && ws[i]->gath.cap < (size_t)d->etp * pr * h * a)
            buf_get(env, &ws[i]->gath, (size_t)d->etp * pr * h * a);
        if (ws[i]->Y.cap < r * h * a) buf_get(env, &ws[i]->Y, r * h * a);
    }
    buf_get(env, &bw->prob, T * k * 4);
    buf_get(env, &bw->logits_f, T * E * 4);
    buf_get(env, &bw->logits_a, T * E * a);
}

void layer_mlp_grad_bytes(const Layer *y, size_t *big1, size_t *big2)
{
    const StepEnv *env = y->env;
    const ModelDims *d = &env->dim;
    size_t a = A(env), Tf = (size_t)d->T;
    size_t F = (size_t)(y->moe ? d->sffl : d->dffl), r = Tf, f = F;
    if (y->moe) {
        int send_rows, pad, rows;
        expected_rows(env, &send_rows, &pad, &rows);
        if ((size_t)rows > r) r = (size_t)rows;
        if ((size_t)d->Fl > f) f = (size_t)d->Fl;
    }
    *big1 = r * 2 * f * a;
    *big2 = r * f * a;
}

/* ---- the vocabulary-parallel ends: embedding, output layer, loss ------------ */

void vocab_upload_ids(StepEnv *env, int32_t *dst, const int32_t *host)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    if (d->tp == 1) { be->upload(be, dst, host, sizeof(int32_t) * (size_t)d->T); return; }
    for (int t = 0; t < d->T; t++) {
        int v = host[t] - d->v0;
        env->h_ids[t] = v >= 0 && v < d->Vl ? v : -1;
    }
    be->upload(be, dst, env->h_ids, sizeof(int32_t) * (size_t)d->T);
}

void embed_forward(StepEnv *env, int emb, MicroBatch *mb, void *out)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    /* each TP rank looks up the tokens of its vocabulary slice for all T
     * tokens (zero rows for the others); the reduce-scatter sums the slices
     * and leaves each rank its sequence-parallel shard */
    void *part = sp_partial(env, &env->fwd.full, out);
    if (env->failed) return;
    be->embedding_forward(be, part, mb->tokens.p, W(env, emb), d->T, d->h);
    sp_scatter(env, out, part);
}

void embed_backward(StepEnv *env, int emb, MicroBatch *mb, const void *dx)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    const void *dg = sp_gather(env, &env->bwd.full, dx);
    if (!dg) return;
    be->embedding_backward(be, GA(env, emb), dg, mb->tokens.p, d->T, d->h);
}

void head_reserve(StepEnv *env, MicroBatch *mb)
{
    const ModelDims *d = &env->dim;
    size_t a = A(env), T = (size_t)d->T, Ts = (size_t)d->Ts, h = (size_t)d->h;
    buf_get(env, &mb->xf, Ts * h * a);
    buf_get(env, &mb->rstdf, Ts * 4);
    buf_get(env, &mb->logits, T * (size_t)d->Vl * a);
    buf_get(env, &mb->losses, T * 4);
    buf_get(env, &env->bwd.t1, Ts * h * a);
    if (d->tp > 1) {
        if (env->fwd.gx.cap < T * h * a) buf_get(env, &env->fwd.gx, T * h * a);
        if (env->bwd.gx.cap < T * h * a) buf_get(env, &env->bwd.gx, T * h * a);
        buf_get(env, &env->fwd.stats, T * 3 * 4);
        buf_get(env, &env->fwd.all_stats, (size_t)d->tp * T * 3 * 4);
        if (env->bwd.full.cap < T * h * a) buf_get(env, &env->bwd.full, T * h * a);
    }
}

void head_forward(StepEnv *env, int final_norm, int out, MicroBatch *mb, const void *x)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    int T = d->T, Ts = d->Ts, h = d->h, Vl = d->Vl;
    void *xf = buf_get(env, &mb->xf, (size_t)Ts * h * A(env));
    float *rstdf = buf_get(env, &mb->rstdf, (size_t)Ts * 4);
    void *logits = buf_get(env, &mb->logits, (size_t)T * Vl * A(env));
    float *losses = buf_get(env, &mb->losses, (size_t)T * 4);
    if (env->failed) return;
    be->rmsnorm_forward(be, xf, rstdf, x, W(env, final_norm), Ts, h, LAYER_RMS_EPS);
    const void *xg = sp_gather(env, &env->fwd.gx, xf);
    if (!xg) return;
    be->gemm(be, logits, false, xg, W(env, out), T, Vl, h, 0, 1, 0.0f);
    if (d->tp == 1) {
        /* token losses, and d loss / d logits in place of the logits (the
         * fused kernel: the loss's backward is done here, kept for backward) */
        be->cross_entropy(be, losses, logits, logits, mb->targets.p, T, Vl, mb->dloss);
        be->accumulate_sum(be, env->loss_acc, losses, (size_t)T);
        return;
    }
    /* vocabulary-parallel: per-row statistics of each slice, gathered over
     * TP (3 floats a token), never the logits; every TP rank gets the losses
     * of all T tokens and counts those of its shard */
    float *st = buf_get(env, &env->fwd.stats, (size_t)T * 3 * 4);
    float *all = buf_get(env, &env->fwd.all_stats, (size_t)d->tp * T * 3 * 4);
    if (env->failed) return;
    be->ce_vp_stats(be, st, logits, mb->targets.p, T, Vl);
    be->all_gather(be, all, st, (size_t)T * 3, DT_F32, GROUP_TP);
    be->ce_vp_finish(be, losses, logits, logits, mb->targets.p, all, d->tp, T, Vl, mb->dloss);
    be->accumulate_sum(be, env->loss_acc, losses + (size_t)d->tp_rank * Ts, (size_t)Ts);
}

void head_backward(StepEnv *env, int final_norm, int out, MicroBatch *mb, const void *x, void *dx)
{
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    int T = d->T, Ts = d->Ts, h = d->h, Vl = d->Vl;
    void *dxf = buf_get(env, &env->bwd.t1, (size_t)Ts * h * A(env));
    void *part = sp_partial(env, &env->bwd.full, dxf);
    if (env->failed) return;
    const void *xg = sp_gather(env, &env->bwd.gx, mb->xf.p);   /* again: not kept */
    if (!xg) return;
    be->gemm(be, part, false, mb->logits.p, W(env, out), T, h, Vl, 0, 0, 0.0f);
    be->gemm(be, G(env, out), true, mb->logits.p, xg, Vl, h, T, 1, 0, GB(env, out));
    sp_scatter(env, dxf, part);
    be->rmsnorm_backward(be, dx, GA(env, final_norm), dxf, x, W(env, final_norm), mb->rstdf.p, Ts, h);
}

/* ---- GQA with tp > g: KV groups replicated over tp / g ranks ------------------ */

void layer_sync_replicated_kv(const Layer *y)
{
    StepEnv *env = y->env;
    const ModelDims *d = &env->dim;
    Backend *be = env->be;
    if (d->tp <= d->g) return;
    /* one all-reduce over TP of [2][g][d h]: each rank puts its K and V row
     * gradients into its group's slot (zeros elsewhere), so the sum is over
     * the replicas of each group; every replica reads its slot back */
    size_t rows = (size_t)d->d * d->h, n = 2 * (size_t)d->g * rows;
    float *buf = buf_get(env, &env->bwd.probs_g, n * 4);
    if (env->failed) return;
    float *g = GA(env, y->wqkv);
    float *k = g + (size_t)d->nl * rows, *v = k + (size_t)d->gl * rows;
    float *ks = buf + (size_t)d->kvg0 * rows, *vs = buf + ((size_t)d->g + d->kvg0) * rows;
    be->zero(be, buf, n * 4);
    be->copy(be, ks, k, rows * 4);
    be->copy(be, vs, v, rows * 4);
    be->all_reduce(be, buf, n, DT_F32, GROUP_TP);
    be->copy(be, k, ks, rows * 4);
    be->copy(be, v, vs, rows * 4);
}
