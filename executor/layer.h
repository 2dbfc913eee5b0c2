/* layer.h: one transformer layer of the training step, its per-micro-batch
 * saved state, and the scoped workspaces of the two directions.
 *
 *   layer_forward(layer, mb, in, out)     out [T, h] = layer(in [T, h])
 *     x_mid = in + Wo . attention(rope(RMSNorm(in) . Wqkv^T))
 *     out   = x_mid + MLP(RMSNorm(x_mid))     MLP: MoE (router, dispatcher,
 *                                             experts, shared expert) or dense
 *   layer_backward(layer, mb, dx)         dx [T, h]: in, d loss / d out;
 *                                         out, d loss / d in (in place);
 *                                         weight gradients accumulate (+=)
 *
 * What a layer keeps between its forward and its backward lives in the
 * micro-batch's LayerActs (one per layer in every MicroBatch context, so
 * several micro-batches can be in flight); what it needs only inside one
 * call lives in a Workspace, one for forward and one for backward, shared
 * by the layers of a chunk (never between directions).
 *
 * Every device buffer is a Buf: a pointer and a capacity, grown from the
 * backend's allocator on first use.  A failed allocation sets the sticky
 * StepEnv.failed and the step returns -1 at the next check (chunk.c).
 */
#ifndef MOEPLAN_EXECUTOR_LAYER_H
#define MOEPLAN_EXECUTOR_LAYER_H

/* RoPE base of every layer (Mixtral: rope_theta 1e6); preflight refuses a
 * model that names another one */
#define LAYER_ROPE_BASE 1000000.0

#include <stddef.h>
#include <stdint.h>

#include "executor/backend.h"
#include "executor/dispatcher.h"
#include "executor/params.h"

typedef struct { void *p; size_t cap; } Buf;

/* Model dimensions on this rank. */
typedef struct {
    int L;                       /* layers of the model (all chunks) */
    int b, s, T;                 /* micro-batch sequences, sequence length, T = b*s/cp tokens
                                  * of this rank (all of them with cp 1) */
    /* context parallelism (cp 1: cp_rank 0, c = s / 2): each sequence in
     * 2*cp chunks of c = s / (2 cp) tokens, this rank holding chunks cp_rank
     * and 2 cp - 1 - cp_rank (core/layout.h), in that order */
    int cp, cp_rank, c;
    int h, n, g, d, qkvw;        /* hidden, heads, KV groups, head dim, (n + 2g) d */
    int V;                       /* vocabulary */
    int E, k, El, Fe, Fl;        /* experts, top-k, local experts, expert FFN, Fe / ETP */
    int ep, etp, etp_rank;
    int dense_ffn, shared_ffn;
    double cf;                   /* capacity factor, 0 = dropless */
    /* tensor parallelism with sequence parallelism (tp 1: Ts = T, nl = n,
     * gl = g, qkvwl = qkvw, Vl = V, v0 = 0, dffl = dense_ffn, sffl = shared_ffn) */
    int tp, tp_rank;
    int Ts;                      /* tokens of this rank's sequence-parallel shard, T / tp */
    int nl, gl, qkvwl;           /* local heads, local KV groups, (nl + 2 gl) d */
    int kvg0;                    /* first KV group held (groups replicated when tp > g) */
    int Vl, v0;                  /* local vocabulary rows and the first one */
    int dffl, sffl;              /* dense and shared MLP FFN columns held */
} ModelDims;

/* Temporaries of one direction (forward or backward), reused layer by layer. */
typedef struct {
    Buf send, recv, gath, Y;     /* dispatcher: EP send / receive, ETP gather, expert output */
    Buf big1, big2;              /* [rows, 2F] / [rows, F] MLP gradients (backward) */
    Buf t1, t2, y, moe;          /* [T, h] */
    Buf qkv, o;                  /* [T, (n+2g)d], [T, n d] attention gradients (backward) */
    Buf logits_f, logits_a, prob;/* router logits f32 / act, [T, k] f32 */
    /* tensor parallelism only: */
    Buf full, full2;             /* [T, h] gathered gradients / partial sums before a reduce-scatter */
    Buf gx;                      /* [T, h] a norm's output gathered over TP: not kept between the
                                  * directions, the backward gathers it again (Megatron's choice:
                                  * one all-gather more, L x 2 x [T, h] less memory) */
    Buf probs_g, idx_g;          /* router probs [T, E] f32 and top-k [T, k] i32 gathered over TP (aux loss) */
    Buf stats, all_stats;        /* vocabulary-parallel loss: [Ts... T, 3], [tp, T, 3] f32 */
    /* context parallelism only (ring attention): */
    Buf kv[2], dkv[2];           /* [T, 2 gl d] K|V of a CP rank held / arriving, and their gradients */
    Buf dkv_step;                /* [T, 2 gl d] the dK|dV of one ring step (backward) */
    Buf blk_o, blk_lse, blk_dq;  /* one block's [c, nl d] out, [nl, c] f32 lse, [c, qkvwl] dq */
} Workspace;

/* Everything the layers and chunks of one rank share. */
typedef struct {
    Backend *be;
    ParamStore *ps;
    ModelDims dim;
    Workspace fwd, bwd;          /* scoped: forward calls use fwd only, backward bwd only */
    Buf pos;                     /* i32 [T] RoPE positions (t mod s) */
    float aux_coeff;             /* auxiliary load-balancing loss coefficient, 0 = off */
    bool overlap_cp;             /* CP ring: each hop in flight behind a step's blocks (OVERLAP_CP) */
    bool pad_expert_groups;      /* dispatcher pads every local expert to equal rows (ExecExpertGemm) */
    long dispatches, padded_dispatches;   /* MoE dispatch plans made, and of them padded */
    float *loss_acc;             /* f32 [2] device: token-loss sum, T * aux sum */
    int failed;                  /* sticky: a device allocation failed */
    size_t failed_bytes;
    long route_flips;            /* forced routing: choices the router made differently */
    int32_t *h_idx;              /* host [T*k] top-k read back (routing trace) */
    int32_t *h_kept;             /* host [E] pairs each expert keeps (moe_plan) */
    size_t *a2a;                 /* host [4 * ep] all-to-all counts and displacements */
    int32_t *h_force;            /* host [T*k], [T*E], [T*k]: forced routing only */
    int32_t *h_ids;              /* host [T] token ids shifted into the local vocabulary slice */
    float *h_probs, *h_tprob;
} StepEnv;

/* Saved between a layer's forward and backward, per micro-batch. */
typedef struct {
    const void *x_in;                            /* the layer input (owned by the chunk) */
    Buf xn1, rstd1, qkv, o, lse, x_mid, xn2, rstd2;
    Buf probs, topk_idx, topk_prob, X, h13, a, ret, mlp_h, mlp_a;
    Buf row_of;                                  /* i32 [T*k] send row of each (token, slot) */
    Buf sort_src;                                /* i32 [rows] expert-major row -> gathered row */
    Buf gcoef;                                   /* [E] f32 d aux / d probs */
    DispatchPlan dp;                             /* host plan: counts, all-to-all layout, sort_src */
    int dropped;                                 /* capacity drops of this micro-batch */
} LayerActs;

/* Parameter indices of one layer (-1 when absent). */
typedef struct {
    StepEnv *env;
    int index;                                   /* layer number in the model */
    int moe;
    int attn_norm, wqkv, wo, mlp_norm;
    int router, w13, w2, sh13, sh2;              /* MoE layer */
    int d13, d2;                                 /* dense MLP layer */
} Layer;

/* What the routing trace of one micro-batch asks of the layers (tests):
 * trace [L][T*k] host or NULL; force 0 records, 1 imposes. */
typedef struct {
    int32_t *trace;
    int force;
} RoutingTrace;

/* The context of one micro-batch in flight: its inputs, everything saved
 * between its forward and its backward, and the boundary activations of the
 * chunk.  A schedule keeps one per micro-batch in flight (model.c: today 1). */
typedef struct {
    LayerActs *acts;             /* [L] indexed by Layer.index (only the chunk's are used) */
    Buf *xs;                     /* [L + 1] act [Ts, h]: residual stream at layer l's input
                                  * (the sequence-parallel shard: rows [tp_rank Ts, (tp_rank+1) Ts)) */
    const int32_t *h_tokens;     /* host [T] token ids (first stage), set by the caller */
    const int32_t *h_targets;    /* host [T] next-token targets (last stage) */
    Buf tokens, targets;         /* i32 [T] device copies */
    Buf xf, rstdf;               /* final RMSNorm output act [Ts, h], rstd f32 [Ts] */
    Buf logits;                  /* act [T, Vl]: logits of this rank's vocabulary slice, then d loss / d logits (last stage) */
    Buf losses;                  /* f32 [T] token losses */
    Buf dx;                      /* act [Ts, h] d loss / d residual, walked down the chunk */
    RoutingTrace route;
    float dloss;                 /* d step loss / d token loss (1 / tokens of the global batch) */
} MicroBatch;

void *buf_get(StepEnv *env, Buf *b, size_t bytes);
void buf_free(StepEnv *env, Buf *b);

int layer_acts_init(LayerActs *a, const Layer *y);
void layer_acts_free(StepEnv *env, LayerActs *a);
void workspace_free(StepEnv *env, Workspace *w);

/* Requests every buffer the layer's forward and backward will use, at the
 * sizes of a balanced (or capacity-bounded) dispatcher, so that the device
 * allocations happen before the first step (pool.h). */
void layer_reserve(const Layer *y, MicroBatch *mb);
/* The backward's MLP gradient workspaces (Workspace.big1 [r, 2f], big2
 * [r, f]) that layer y needs: a dense layer r = T, f = its FFN columns; a
 * MoE layer r = max(expert rows, T), f = max(Fl, shared FFN columns).  The
 * model reserves the largest of its layers' once, so that no buffer grows
 * (and leaves a freed block behind) while the step's buffers are sized. */
void layer_mlp_grad_bytes(const Layer *y, size_t *big1, size_t *big2);

void layer_forward(const Layer *y, MicroBatch *mb, const void *in, void *out);
void layer_backward(const Layer *y, MicroBatch *mb, void *dx);

/* The vocabulary-parallel ends of the model (chunk.c's first and last stage):
 *   vocab_upload_ids     dst [T] i32 <- host ids [T], shifted into this rank's
 *                        vocabulary slice (-1 when on another rank) when tp > 1
 *   embed_forward        out [Ts, h] <- embedding rows of mb->tokens (reduce-
 *                        scattered over TP when tp > 1)
 *   embed_backward       embedding gradient += from dx [Ts, h]
 *   head_forward         final norm of x [Ts, h], output layer, loss: token
 *                        losses of the shard into env->loss_acc, d loss / d
 *                        logits kept in mb->logits
 *   head_backward        dx [Ts, h] (=) d loss / d x; gradients += */
void vocab_upload_ids(StepEnv *env, int32_t *dst, const int32_t *host);
void embed_forward(StepEnv *env, int emb, MicroBatch *mb, void *out);
void embed_backward(StepEnv *env, int emb, MicroBatch *mb, const void *dx);
void head_forward(StepEnv *env, int final_norm, int out, MicroBatch *mb, const void *x);
void head_backward(StepEnv *env, int final_norm, int out, MicroBatch *mb, const void *x, void *dx);
void head_reserve(StepEnv *env, MicroBatch *mb);

/* Sums the gradients of KV rows of QKV over the TP ranks that hold the same
 * KV group (tp > g: groups replicated); nothing when tp <= g. */
void layer_sync_replicated_kv(const Layer *y);

#endif
