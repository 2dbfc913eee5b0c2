/* ring.c: the attention core of one layer on one GPU for one micro-batch,
 * with context parallelism priced step by step as Megatron-Core runs it
 * (Transformer Engine 2.1's AttnFuncWithCPAndKVP2P, bf16, causal, zig-zag;
 * transformer_engine/pytorch/attention.py).
 *
 * CP 1: one flash-attention kernel, q s x kv s causal (a sliding window w:
 * q s x kv w, the band's pairs), heads n/TP x micro-batch b.
 *
 * CP > 1 (c = s/(2*CP) tokens per chunk; core/layout.c's ring steps): CP
 * steps, each its own kernel at its own shape (attention.c):
 *   step 0:    q 2c x kv 2c causal (own K/V);
 *   step i>=1: q 2c x kv c (K/V of an earlier rank) on ranks r >= i,
 *              q c x kv 2c (a later rank's) on ranks r < i.
 * Every step i >= 1 has ranks of both kinds, each rank waits for the K/V
 * its predecessor forwards, and the layer's next collective (TP, EP)
 * joins the ranks again, so a step costs the slower of the two shapes:
 *   compute = step0 + (CP-1) * max(stepA, stepB)   (each with its passes).
 * Per-step memory-bound passes (bytes, at the cluster's HBM bandwidth):
 *   forward:  a contiguous copy of the half of K/V (A) or Q (B) the step
 *             uses (read + write, 4 per element); the LSE correction
 *             (fp64 LSE read + written, fp32 step LSE read: 20 per query row
 *             and head); after the loop, the output correction of each step
 *             (flash_attn_fwd_out_correction: out_per_step * exp(lse_step -
 *             lse) into an fp32 temporary, then out.add_: 2 + 4 + 4 + 2 + 2
 *             = 14 per output element); step 0 also zero-fills out (2);
 *   backward: the half copies (A: K/V; B: Q, out and dout), dq.add_(dq_)
 *             and dkv.add_(dkv_) (6 per element: two reads, one write;
 *             step 0 copies, 4).
 * Transfers: each forward step i < CP-1 sends the K/V it holds to the next
 * rank, 2*(2c)*b*kvh*(d_qk + d_v) bytes (K and V of both chunks, bf16),
 * issued before step i's kernel and overlapped with it (two streams);
 * backward sends K/V and the riding dK/dV (twice that) behind each step
 * and the last dK/dV (once) after the loop, exposed.  Each overlapped
 * transfer adds overlap_added(transfer, step compute, NCCL SMs).  The
 * transfer runs on the CP group's real link (comm.c: NVLink inside a node,
 * else the GPU's NIC) at the share of that link the other traffic leaves
 * it (SimCtx.cp_link_share_*: the DP/EDP gradient reduce-scatter and
 * parameter all-gather, and the overlapped EP all-to-all, simulate.c).
 * Selective recomputation re-runs the whole forward ring (kernels, passes
 * and transfers).
 */
#include <math.h>

#include "../core/flops.h"
#include "../core/layout.h"
#include "sim_internal.h"

#define BF16 2.0
#define FWD_COPY_BYTES 4.0      /* contiguous copy: read + write bf16 */
#define FWD_LSE_BYTES 20.0      /* per query row and head: fp64 LSE read + write, fp32 step LSE read */
#define FWD_OUT_CORR_BYTES 14.0 /* per output element: see above */
#define FWD_ZERO_BYTES 2.0      /* out zero-fill */
#define BWD_ACC_BYTES 6.0       /* x.add_(y): read x, read y, write x */

typedef struct {
    double q_heads;     /* query heads on this GPU */
    double kv_heads;    /* K/V heads on this GPU */
    double d_qk, d_v;
    double b;
} HeadDims;

/* the heads of one GPU: core/layout.h's (the calibration measures the same) */
static void head_dims(const SimCtx *x, HeadDims *hd) {
    AttnHeads ah;
    layout_attention_heads(&x->p->model, x->tp, &ah);
    *hd = (HeadDims){ah.q_heads, ah.kv_heads, ah.d_qk, ah.d_v, x->b};
}

/* The ring's step shapes at the context's sequence length (core/layout.h,
 * the one enumeration the simulator and the calibration share).  Returns
 * 0, or -1 when seq is no multiple of 2*CP (plan_validate refuses such
 * plans). */
static int step_shapes(const SimCtx *x, CpRingStep sh[CP_STEP_SHAPES]) {
    MpError err;
    return layout_cp_step_shapes((int)x->s, x->cp, sh, &err) < 0 ? -1 : 0;
}

/* elements of `rows` tokens (one sequence's rows x micro-batch) */
static double q_elems(const HeadDims *h, double rows) { return rows * h->b * h->q_heads * h->d_qk; }
static double o_elems(const HeadDims *h, double rows) { return rows * h->b * h->q_heads * h->d_v; }
static double kv_elems(const HeadDims *h, double rows) { return rows * h->b * h->kv_heads * (h->d_qk + h->d_v); }

static double kernel(const SimCtx *x, const HeadDims *h, double q, double kv, AttnMask mask, double pairs,
                     bool bwd) {
    AttnKernel k = {q, kv, h->q_heads * h->b, h->d_qk, h->d_v, mask, pairs};
    return attention_kernel_time(x->hw, &k, bwd);
}

static double mem(const SimCtx *x, double bytes) { return compute_memory_time(x->hw, bytes); }

void ring_cost(const SimCtx *x, int window, RingCost *rc) {
    HeadDims h;
    head_dims(x, &h);
    double s = x->s;
    *rc = (RingCost){0};
    CpRingStep sh[CP_STEP_SHAPES];
    if (step_shapes(x, sh)) return;
    if (x->cp <= 1) {
        /* the one step, q s x kv s causal; a sliding window: kv w, the band's pairs */
        const CpRingStep *f = &sh[CP_STEP_DIAGONAL];
        bool win = window > 0 && window < s;
        double kv = win ? window : f->kv_rows, pairs = win ? flops_window_pairs(s, window) : 0;
        AttnMask mask = win ? ATTN_MASK_NONE : f->mask;
        rc->kernel_fwd = kernel(x, &h, f->q_rows, kv, mask, pairs, false);
        rc->kernel_bwd = kernel(x, &h, f->q_rows, kv, mask, pairs, true);
        rc->kernels = 1;
        return;
    }
    const CpRingStep *d = &sh[CP_STEP_DIAGONAL], *a = &sh[CP_STEP_EARLIER], *bs = &sh[CP_STEP_LATER];
    double cp = x->cp;
    /* sliding window under CP: the ring runs whole; the kernels' work
     * shrinks by the band's share of the causal pairs */
    double wscale = (window > 0 && window < s) ? flops_window_pairs(s, window) / flops_window_pairs(s, 0) : 1.0;
    /* kernels: the diagonal step (0), a step on an earlier rank's K/V (A)
     * and on a later rank's (B) */
    double k0f = wscale * kernel(x, &h, d->q_rows, d->kv_rows, d->mask, 0, false);
    double kAf = wscale * kernel(x, &h, a->q_rows, a->kv_rows, a->mask, 0, false);
    double kBf = wscale * kernel(x, &h, bs->q_rows, bs->kv_rows, bs->mask, 0, false);
    double k0b = wscale * kernel(x, &h, d->q_rows, d->kv_rows, d->mask, 0, true);
    double kAb = wscale * kernel(x, &h, a->q_rows, a->kv_rows, a->mask, 0, true);
    double kBb = wscale * kernel(x, &h, bs->q_rows, bs->kv_rows, bs->mask, 0, true);
    /* passes per step kind, over the step's rows: A copies the half of the
     * K/V it uses (kv rows c) and corrects its 2c query rows; B copies its
     * query half (c rows) and corrects those */
    double rows_heads_d = d->q_rows * h.b * h.q_heads, rows_heads_a = a->q_rows * h.b * h.q_heads,
           rows_heads_b = bs->q_rows * h.b * h.q_heads;
    double p0f = mem(x, FWD_OUT_CORR_BYTES * o_elems(&h, d->q_rows)) + mem(x, FWD_ZERO_BYTES * o_elems(&h, d->q_rows)) +
                 mem(x, FWD_LSE_BYTES * rows_heads_d);
    double pAf = mem(x, FWD_COPY_BYTES * kv_elems(&h, a->kv_rows)) + mem(x, FWD_LSE_BYTES * rows_heads_a) +
                 mem(x, FWD_OUT_CORR_BYTES * o_elems(&h, a->q_rows));
    double pBf = mem(x, FWD_COPY_BYTES * q_elems(&h, bs->q_rows)) + mem(x, FWD_LSE_BYTES * rows_heads_b) +
                 mem(x, FWD_OUT_CORR_BYTES * o_elems(&h, bs->q_rows));
    /* backward passes: step 0 copies Q and K/V; A the K/V half and
     * accumulates dq (2c rows) and dkv (c rows); B the Q, out and dout
     * halves, accumulates dq (c rows) and dkv (2c rows) */
    double p0b = mem(x, FWD_COPY_BYTES * q_elems(&h, d->q_rows)) + mem(x, FWD_COPY_BYTES * kv_elems(&h, d->kv_rows));
    double pAb = mem(x, FWD_COPY_BYTES * kv_elems(&h, a->kv_rows)) + mem(x, BWD_ACC_BYTES * q_elems(&h, a->q_rows)) +
                 mem(x, BWD_ACC_BYTES * kv_elems(&h, a->kv_rows));
    double pBb = mem(x, FWD_COPY_BYTES * (q_elems(&h, bs->q_rows) + 2 * o_elems(&h, bs->q_rows))) +
                 mem(x, BWD_ACC_BYTES * q_elems(&h, bs->q_rows)) + mem(x, BWD_ACC_BYTES * kv_elems(&h, bs->kv_rows));
    /* the slower step kind sets the pace: kernels and passes of that kind */
    bool a_slow_f = kAf + pAf >= kBf + pBf, a_slow_b = kAb + pAb >= kBb + pBb;
    double step_kf = a_slow_f ? kAf : kBf, step_pf = a_slow_f ? pAf : pBf;
    double step_kb = a_slow_b ? kAb : kBb, step_pb = a_slow_b ? pAb : pBb;
    rc->kernel_fwd = k0f + (cp - 1) * step_kf;
    rc->kernel_bwd = k0b + (cp - 1) * step_kb;
    rc->passes_fwd = p0f + (cp - 1) * step_pf;
    rc->passes_bwd = p0b + (cp - 1) * step_pb;
    rc->kernels = (int)cp;
    /* transfers: the K/V a rank holds (both its chunks: the diagonal step's kv rows) */
    double kv_bytes = kv_elems(&h, d->kv_rows) * BF16;
    double t_kv = comm_time(x->hw, COLL_SEND_RECV, &x->g[GROUP_CP], kv_bytes);
    double t_kv2 = comm_time(x->hw, COLL_SEND_RECV, &x->g[GROUP_CP], 2 * kv_bytes);
    double t_last = t_kv;   /* the last dK/dV, as large as K/V */
    double t_kv_r = t_kv;   /* K/V of the forward ring re-run in the backward */
    if (x->g[GROUP_CP].nodes > 1) {
        double sf = x->cp_link_share_fwd > 0 ? x->cp_link_share_fwd : 1;
        double sb = x->cp_link_share_bwd > 0 ? x->cp_link_share_bwd : 1;
        t_kv /= sf;
        t_kv2 /= sb;
        t_last /= sb;
        t_kv_r /= sb;
    }
    double frac = overlap_sm_frac_nccl(x->hw);
    double step0f = k0f + p0f, stepf = step_kf + step_pf;
    double step0b = k0b + p0b, stepb = step_kb + step_pb;
    rc->transfer_fwd = t_kv;
    rc->transfer_bwd = t_kv2;
    /* forward: the transfer for step i+1 behind step i, i = 0 .. CP-2 */
    rc->exposed_fwd = overlap_added(t_kv, step0f, frac) + (cp - 2) * overlap_added(t_kv, stepf, frac);
    rc->exposed_recompute = overlap_added(t_kv_r, step0f, frac) + (cp - 2) * overlap_added(t_kv_r, stepf, frac);
    /* backward: K/V + dK/dV behind steps 0 .. CP-2, the last dK/dV after the loop */
    rc->exposed_bwd = overlap_added(t_kv2, step0b, frac) + (cp - 2) * overlap_added(t_kv2, stepb, frac) + t_last;
}

/* Transient bytes of the ring while one layer's attention runs (TE 2.1):
 *   forward:  CP K/V receive buffers (p2p_comm_buffers, each K and V of
 *             2c tokens, bf16, all kept until the loop ends), every step's
 *             output (out_per_step, bf16, up to 2c rows) and fp32 LSE, the
 *             fp64 running LSE and the bf16 output;
 *   backward: two (K/V, dK/dV) ring buffers (bf16), the step's dq_ and
 *             dkv_, dq, and the Q/out/dout half copies.
 * CP 1: none (the kernel's own workspace is not counted). */
double ring_working_bytes(const SimCtx *x) {
    if (x->cp <= 1) return 0;
    HeadDims h;
    head_dims(x, &h);
    CpRingStep sh[CP_STEP_SHAPES];
    if (step_shapes(x, sh)) return 0;
    /* 2c: the rows a rank holds (the diagonal step's); c: a later rank's step's query rows */
    double cp = x->cp, c2 = sh[CP_STEP_DIAGONAL].q_rows, c = sh[CP_STEP_LATER].q_rows;
    double rows_heads = c2 * h.b * h.q_heads;
    double fwd = cp * kv_elems(&h, c2) * BF16 + cp * o_elems(&h, c2) * BF16 + cp * rows_heads * 4.0 +
                 rows_heads * 8.0 + o_elems(&h, c2) * BF16;
    double bwd = 2 * 2 * kv_elems(&h, c2) * BF16 + (q_elems(&h, c2) + kv_elems(&h, c2)) * BF16 +
                 q_elems(&h, c2) * BF16 + (q_elems(&h, c) + 2 * o_elems(&h, c)) * BF16;
    return fwd > bwd ? fwd : bwd;
}

void ring_attention(const SimCtx *x, int window, Phase *fwd, Phase *bwd, Phase *rsel) {
    RingCost rc;
    ring_cost(x, window, &rc);
    if (x->cp <= 1) {
        phase_add(fwd, "flash_attention", COST_ATTENTION, rc.kernel_fwd);
        phase_add(rsel, "recompute_attention", COST_RECOMPUTE, rc.kernel_fwd);
        phase_add(bwd, "flash_attention_bwd", COST_ATTENTION, rc.kernel_bwd);
        return;
    }
    phase_add(fwd, "cp_ring_attention", COST_ATTENTION, rc.kernel_fwd);
    phase_add(fwd, "cp_ring_merge", COST_MEMORY_BOUND, rc.passes_fwd);
    phase_add(fwd, "cp_ring_kv", COST_CP, rc.exposed_fwd);
    phase_add(rsel, "recompute_cp_ring_attention", COST_RECOMPUTE, rc.kernel_fwd);
    phase_add(rsel, "recompute_cp_ring_merge", COST_RECOMPUTE, rc.passes_fwd);
    phase_add(rsel, "recompute_cp_ring_kv", COST_CP, rc.exposed_recompute);
    phase_add(bwd, "cp_ring_attention_bwd", COST_ATTENTION, rc.kernel_bwd);
    phase_add(bwd, "cp_ring_accumulate", COST_MEMORY_BOUND, rc.passes_bwd);
    phase_add(bwd, "cp_ring_kv_dkv", COST_CP, rc.exposed_bwd);
}
