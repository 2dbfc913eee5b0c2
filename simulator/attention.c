/* attention.c: time of one flash-attention kernel (forward or backward) at
 * its real shape, from a rate table per attention backend.
 *
 * Shape: q rows and kv rows of one sequence, heads*batch (query heads on
 * this GPU times sequences in the micro-batch), head dim, mask (none, or
 * causal with q and kv starting at the same position).  FLOPs follow the
 * simulator's convention (forward 2*pairs*(d_qk + d_v)*heads, causal pairs
 * halved; backward 2.5x forward).
 *
 * Model (one kernel, direction fwd/bwd):
 *   the kernel runs one CTA per 128 rows of the parallel dimension and head
 *   (forward: query rows, FlashAttention-2/3 and cuDNN alike; backward: key
 *   rows, each CTA looping over the queries), each CTA looping over the
 *   other dimension (L rows; causal: L/2 on average).
 *     ctas = ceil(par_rows / 128) * heads*batch
 *     occupancy = work / (makespan * SMs), in units of one full loop:
 *       no mask: work = ctas, makespan = ceil(ctas / SMs)     (wave quantisation)
 *       causal:  work = ctas/2, makespan = max(1, ceil(ctas / SMs)/2)
 *                (tiles of unequal length, longest first; never shorter
 *                than one full-length tile)
 *     e = e_max * L_eff / (L_eff + L0) * occupancy
 *     t = flops / (peak_bf16 * e * c(shape))
 *   L0 is the loop length at which a CTA's fixed work (loading its Q or
 *   K/V tile, the softmax rescale, writing O/LSE or dK/dV) equals its
 *   loop work.  e_max and L0 are fitted per backend and direction to its
 *   table (least squares in log time, L0 by golden-section search, at model
 *   set-up: the table is the data, the curve only interpolates).
 *   c(shape) is the table's own residual at its nearest entry of the same
 *   mask (distance |log q/q'| + |log kv/kv'| + |log hb/hb'| + |log d/d'|),
 *   fading e-fold per unit of distance as the GEMM calibration does, so the
 *   model returns each table entry's measured rate at that entry.
 * A calibration file's attention entries (measured on the machine, keyed
 * the same way) rescale the result the same way again.
 *
 * Tables (TFLOP/s in the convention above, head dim 128):
 *   cudnn:  Transformer Engine's FusedAttention (cuDNN 9.19 through PyTorch
 *           2.11 SDPA), measured on the device machine's H200, 2026-12-01
 *           (reference/hardware.md), batch 1, plus B 4 x 32 heads x 4096
 *           causal 607/449 (the cuDNN issue's benchmark, same machine).
 *   flash2: FlashAttention-2 (PyTorch's flash backend), same machine, same
 *           shapes, same day.
 *   fa3:    FlashAttention-3 on H100 SXM (Shah et al. 2024, figs. 5-6,
 *           causal, head dim 128, 16 heads, batch 16K/seq): forward ~330,
 *           450, 550, 610, 640 at 0.5, 1, 2, 4, 8K; backward ~480 at 4K
 *           (the backward takes the forward's L0: one point cannot fit two
 *           parameters).
 *   own:    the executor's kernel (kernels/attention.cu): B 4 x 4096 causal,
 *           32 and 48 heads, device H200 2026-11-22 (calibrations/), and B 1
 *           x 4096 x 32 heads on the device H100 (docs/kernels.md).
 * The H200 and H100 SXM have the same SM count, clocks and BF16 peak;
 * attention at head dim 128 is compute-bound, so the H200 figures stand
 * for both (the H100's lower HBM bandwidth matters only to the merge
 * passes, which layer.c prices at the cluster's bandwidth).  Efficiencies
 * are fractions of the measuring GPU's peak and carry to other GPUs as
 * fractions of theirs.  Only head dim 128 was measured: other head dims
 * (64, MLA's 192/128) use the same curve, fewer FLOPs per byte making them
 * optimistic.
 */
#include <math.h>
#include <string.h>

#include "sim_internal.h"

#define ATTN_TILE_ROWS 128.0     /* rows per CTA: FA2/FA3/cuDNN use 128-row Q (fwd) or K/V (bwd) tiles at d 128 */
#define ATTN_TABLE_PEAK 989.5e12 /* FLOP/s dense BF16 of the GPUs the tables were measured on (H100/H200 SXM) */
#define ATTN_TABLE_SMS 132       /* their SMs */
#define ATTN_DEFAULT_L0 700.0    /* L0 (rows) when a table cannot fit it and gives no forward L0: the old FA3 backward curve's */
#define ATTN_LAUNCH_S 6e-6       /* s per kernel: start and tail (the simulator's earlier constant; under 10% of any ring step it prices) */

typedef struct {
    AttnBackend backend;
    double q, kv, hb, d;
    AttnMask mask;
    double fwd, bwd;   /* TFLOP/s; 0 = not measured */
} AttnRate;

static const AttnRate rates[] = {
    /* cudnn: H200, cuDNN 9.19, PyTorch 2.11 SDPA, batch 1, 2026-12-01 (reference/hardware.md) */
    {ATTN_BACKEND_CUDNN, 4096, 4096, 48, 128, ATTN_MASK_CAUSAL, 554, 419},
    {ATTN_BACKEND_CUDNN, 16384, 16384, 48, 128, ATTN_MASK_CAUSAL, 646, 504},
    {ATTN_BACKEND_CUDNN, 32768, 32768, 12, 128, ATTN_MASK_CAUSAL, 634, 511},
    {ATTN_BACKEND_CUDNN, 65536, 65536, 12, 128, ATTN_MASK_CAUSAL, 590, 527},
    {ATTN_BACKEND_CUDNN, 131072, 131072, 6, 128, ATTN_MASK_CAUSAL, 550, 515},
    {ATTN_BACKEND_CUDNN, 16384, 16384, 6, 128, ATTN_MASK_NONE, 657, 581},
    {ATTN_BACKEND_CUDNN, 8192, 8192, 6, 128, ATTN_MASK_NONE, 616, 535},
    {ATTN_BACKEND_CUDNN, 8192, 8192, 6, 128, ATTN_MASK_CAUSAL, 418, 405},
    {ATTN_BACKEND_CUDNN, 4096, 4096, 6, 128, ATTN_MASK_CAUSAL, 277, 173},
    {ATTN_BACKEND_CUDNN, 1024, 2048, 6, 128, ATTN_MASK_NONE, 129, 83},
    /* cudnn: B 4 x 32 heads x 4096 causal, the cuDNN issue's benchmark, same machine */
    {ATTN_BACKEND_CUDNN, 4096, 4096, 128, 128, ATTN_MASK_CAUSAL, 607, 449},
    /* flash2: FlashAttention-2 (torch flash), same machine and day */
    {ATTN_BACKEND_FLASH2, 4096, 4096, 48, 128, ATTN_MASK_CAUSAL, 291, 238},
    {ATTN_BACKEND_FLASH2, 16384, 16384, 48, 128, ATTN_MASK_CAUSAL, 328, 310},
    {ATTN_BACKEND_FLASH2, 32768, 32768, 12, 128, ATTN_MASK_CAUSAL, 322, 320},
    {ATTN_BACKEND_FLASH2, 65536, 65536, 12, 128, ATTN_MASK_CAUSAL, 334, 316},
    {ATTN_BACKEND_FLASH2, 131072, 131072, 6, 128, ATTN_MASK_CAUSAL, 315, 317},
    {ATTN_BACKEND_FLASH2, 16384, 16384, 6, 128, ATTN_MASK_NONE, 329, 303},
    {ATTN_BACKEND_FLASH2, 8192, 8192, 6, 128, ATTN_MASK_NONE, 298, 292},
    {ATTN_BACKEND_FLASH2, 8192, 8192, 6, 128, ATTN_MASK_CAUSAL, 213, 221},
    {ATTN_BACKEND_FLASH2, 4096, 4096, 6, 128, ATTN_MASK_CAUSAL, 128, 152},
    {ATTN_BACKEND_FLASH2, 1024, 2048, 6, 128, ATTN_MASK_NONE, 137, 145},
    /* fa3: H100 SXM, FlashAttention-3 paper figs. 5-6 (16 heads, batch 16K/seq, causal) */
    {ATTN_BACKEND_FA3, 512, 512, 512, 128, ATTN_MASK_CAUSAL, 330, 0},
    {ATTN_BACKEND_FA3, 1024, 1024, 256, 128, ATTN_MASK_CAUSAL, 450, 0},
    {ATTN_BACKEND_FA3, 2048, 2048, 128, 128, ATTN_MASK_CAUSAL, 550, 0},
    {ATTN_BACKEND_FA3, 4096, 4096, 64, 128, ATTN_MASK_CAUSAL, 610, 480},
    {ATTN_BACKEND_FA3, 8192, 8192, 32, 128, ATTN_MASK_CAUSAL, 640, 0},
    /* own: kernels/attention.cu; H200 2026-11-22 (calibrations/h200-x2-2026-11-22.json), H100 (docs/kernels.md) */
    {ATTN_BACKEND_OWN, 4096, 4096, 128, 128, ATTN_MASK_CAUSAL, 197.3, 178.4},
    {ATTN_BACKEND_OWN, 4096, 4096, 192, 128, ATTN_MASK_CAUSAL, 218.6, 174.1},
    {ATTN_BACKEND_OWN, 4096, 4096, 32, 128, ATTN_MASK_CAUSAL, 190.1, 171.5},
};
#define NUM_RATES ((int)(sizeof rates / sizeof rates[0]))

AttnBackend attention_backend_resolve(const Plan *p) {
    AttnBackend b = p->train.attention_backend;
    if (b == ATTN_BACKEND_AUTO) b = p->cluster.attention_backend;
    /* Megatron-Core with Transformer Engine (early 2025, TE 2.1) on Hopper:
     * TE's get_attention_backend disables FlashAttention "to give
     * FusedAttention preference on Hopper+ for performance reasons"
     * (transformer_engine/pytorch/attention.py, get_attention_backend,
     * v1.9 to v2.1), so the default is cuDNN's fused attention. */
    return b == ATTN_BACKEND_AUTO ? ATTN_BACKEND_CUDNN : b;
}

/* occupancy and loop length of one kernel on `sms` SMs */
static double occupancy(double q, double kv, double hb, AttnMask mask, bool bwd, int sms, double *loop) {
    double par = bwd ? kv : q;
    double L = bwd ? q : kv;
    double ctas = ceil(par / ATTN_TILE_ROWS) * hb;
    double work, makespan;
    if (mask == ATTN_MASK_CAUSAL) {
        work = 0.5 * ctas;
        makespan = 0.5 * ceil(ctas / sms);
        if (makespan < 1) makespan = 1;
        L *= 0.5;
    } else {
        work = ctas;
        makespan = ceil(ctas / sms);
    }
    *loop = L;
    return work / (makespan * sms);
}

static double curve(const SimHw *hw, int bwd, double L) { return hw->attn_emax[bwd] * L / (L + hw->attn_l0[bwd]); }

/* efficiency (fraction of peak) of the fitted model, before corrections */
static double model_eff(const SimHw *hw, double q, double kv, double hb, AttnMask mask, int bwd, int sms) {
    double L;
    double occ = occupancy(q, kv, hb, mask, bwd, sms, &L);
    return curve(hw, bwd, L) * occ;
}

static double log_dist(double q, double kv, double hb, double d, double q2, double kv2, double hb2, double d2) {
    return fabs(log(q / q2)) + fabs(log(kv / kv2)) + fabs(log(hb / hb2)) + fabs(log(d / d2));
}

/* mean log residual (= log e_max) of the entries at L0 = l0; *err (if
 * given): the residuals' variance */
static double fit_error(const double *y0, const double *L, int k, double l0, double *err) {
    double sum = 0, sum2 = 0;
    for (int i = 0; i < k; i++) {
        double y = y0[i] - log(L[i] / (L[i] + l0));
        sum += y;
        sum2 += y * y;
    }
    double mean = sum / k;
    if (err) *err = sum2 / k - mean * mean;
    return mean;
}

/* Least-squares fit in log time of e_max (closed form: the mean log
 * residual) and L0 (golden-section search over 16 .. 16384 rows) to
 * backend b's entries of one direction; l0_fixed > 0 fixes L0
 * (a table with one loop length cannot tell it).  Returns the number of
 * entries used. */
static int fit_curve(AttnBackend b, int bwd, double l0_fixed, double *emax, double *l0) {
    double y0[ATTN_MAX_RATES], L[ATTN_MAX_RATES];
    int k = 0;
    for (int i = 0; i < NUM_RATES && k < ATTN_MAX_RATES; i++) {
        const AttnRate *r = &rates[i];
        double meas = bwd ? r->bwd : r->fwd;
        if (r->backend != b || meas <= 0) continue;
        double occ = occupancy(r->q, r->kv, r->hb, r->mask, bwd, ATTN_TABLE_SMS, &L[k]);
        y0[k++] = log(meas * 1e12 / ATTN_TABLE_PEAK / occ);
    }
    if (k == 0) return 0;
    if (l0_fixed > 0) {
        *l0 = l0_fixed;
        *emax = exp(fit_error(y0, L, k, l0_fixed, NULL));
        return k;
    }
    /* golden-section search of log L0 over [log 16, log 16384] (the error
     * is unimodal in L0 over the tables' loop lengths) */
    double lo = log(16.0), hi = log(16384.0), g = 0.5 * (sqrt(5.0) - 1);
    double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo), e1, e2;
    fit_error(y0, L, k, exp(x1), &e1);
    fit_error(y0, L, k, exp(x2), &e2);
    for (int it = 0; it < 10; it++) {
        if (e1 < e2) {
            hi = x2;
            x2 = x1;
            e2 = e1;
            x1 = hi - g * (hi - lo);
            fit_error(y0, L, k, exp(x1), &e1);
        } else {
            lo = x1;
            x1 = x2;
            e1 = e2;
            x2 = lo + g * (hi - lo);
            fit_error(y0, L, k, exp(x2), &e2);
        }
    }
    *l0 = exp(0.5 * (lo + hi));
    *emax = exp(fit_error(y0, L, k, *l0, NULL));
    return k;
}

/* distinct loop lengths of backend b's entries of one direction */
static int loop_lengths(AttnBackend b, int bwd) {
    double seen[ATTN_MAX_RATES];
    int n = 0;
    for (int i = 0; i < NUM_RATES && n < ATTN_MAX_RATES; i++) {
        const AttnRate *r = &rates[i];
        if (r->backend != b || (bwd ? r->bwd : r->fwd) <= 0) continue;
        double L;
        occupancy(r->q, r->kv, r->hb, r->mask, bwd, ATTN_TABLE_SMS, &L);
        bool dup = false;
        for (int j = 0; j < n; j++) dup |= seen[j] == L;
        if (!dup) seen[n++] = L;
    }
    return n;
}

/* Fits the curve of each direction, then the residual of each table entry
 * (measured / fitted) and of each calibration entry. */
void attention_calibration_init(SimHw *hw) {
    AttnBackend b = hw->attn_backend;
    for (int bwd = 0; bwd <= 1; bwd++) {
        double emax = 0.5, l0 = ATTN_DEFAULT_L0, fixed = 0;
        if (loop_lengths(b, bwd) < 2) {
            /* one loop length cannot tell L0: take the backend's forward L0
             * (the forward is fitted first) */
            fixed = bwd ? hw->attn_l0[0] : ATTN_DEFAULT_L0;
        }
        fit_curve(b, bwd, fixed, &emax, &l0);
        hw->attn_emax[bwd] = emax > 0.95 ? 0.95 : emax;
        hw->attn_l0[bwd] = l0;
    }
    /* residual of every entry of this backend at the table's SM count */
    for (int i = 0; i < NUM_RATES && i < ATTN_MAX_RATES; i++) {
        const AttnRate *r = &rates[i];
        if (r->backend == b) {
            hw->attn_rate_log[i][0] = log(r->q);
            hw->attn_rate_log[i][1] = log(r->kv);
            hw->attn_rate_log[i][2] = log(r->hb);
            hw->attn_rate_log[i][3] = log(r->d);
        }
        for (int bwd = 0; bwd <= 1; bwd++) {
            double meas = bwd ? r->bwd : r->fwd;
            hw->attn_rate_ratio[bwd][i] =
                (r->backend == b && meas > 0)
                    ? meas * 1e12 / ATTN_TABLE_PEAK / model_eff(hw, r->q, r->kv, r->hb, r->mask, bwd, ATTN_TABLE_SMS)
                    : 0;
        }
    }
    /* calibration entries: measured / (model with the table) at the entry */
    const Calibration *cal = hw->cal;
    if (!cal) return;
    for (int i = 0; i < cal->num_attention; i++) {
        const CalAttention *a = &cal->attention[i];
        bool applies = a->backend == ATTN_BACKEND_AUTO || a->backend == b;
        for (int bwd = 0; bwd <= 1; bwd++) {
            double meas = bwd ? a->bwd_tflops : a->fwd_tflops;
            double hb = (double)(a->heads > 0 ? a->heads : 1) * (a->batch > 0 ? a->batch : 1);
            double d = a->head_dim > 0 ? a->head_dim : 128;
            double e = attention_efficiency(hw, a->q_rows, a->kv_rows, hb, d, a->mask, bwd, false);
            hw->cal_attn_ratio[bwd][i] = applies && e > 0 ? meas * 1e12 / hw->peak_bf16 / e : 0;
        }
    }
}

double attention_efficiency(const SimHw *hw, double q, double kv, double hb, double d, AttnMask mask, int bwd,
                            bool calibrated) {
    if (q <= 0 || kv <= 0 || hb <= 0) return 0;
    double e = model_eff(hw, q, kv, hb, mask, bwd, hw->sms);
    /* the table's residual at its nearest entry of the same mask */
    double best = 1e30, sum = 0;
    int n = 0;
    double lq = log(q), lkv = log(kv), lhb = log(hb), ld = log(d);
    for (int i = 0; i < NUM_RATES && i < ATTN_MAX_RATES; i++) {
        const AttnRate *r = &rates[i];
        if (hw->attn_rate_ratio[bwd][i] <= 0 || r->mask != mask) continue;
        const double *lr = hw->attn_rate_log[i];
        double dist = fabs(lq - lr[0]) + fabs(lkv - lr[1]) + fabs(lhb - lr[2]) + fabs(ld - lr[3]);
        if (dist > best + 1e-12) continue;
        if (dist < best - 1e-12) best = dist, sum = 0, n = 0;
        sum += hw->attn_rate_ratio[bwd][i];
        n++;
    }
    if (n > 0) {
        double w = exp(-best);
        e *= w * (sum / n) + (1 - w);
    }
    const Calibration *cal = hw->cal;
    if (calibrated && cal && cal->num_attention > 0) {
        best = 1e30, sum = 0, n = 0;
        for (int i = 0; i < cal->num_attention; i++) {
            const CalAttention *a = &cal->attention[i];
            if (hw->cal_attn_ratio[bwd][i] <= 0 || a->mask != mask) continue;
            double hb2 = (double)(a->heads > 0 ? a->heads : 1) * (a->batch > 0 ? a->batch : 1);
            double dist = log_dist(q, kv, hb, d, a->q_rows, a->kv_rows, hb2, a->head_dim > 0 ? a->head_dim : 128);
            if (dist > best + 1e-12) continue;
            if (dist < best - 1e-12) best = dist, sum = 0, n = 0;
            sum += hw->cal_attn_ratio[bwd][i];
            n++;
        }
        if (n > 0) {
            double w = exp(-best);
            e *= w * (sum / n) + (1 - w);
        }
    }
    return e > 0.98 ? 0.98 : e;
}

double attention_kernel_time(const SimHw *hw, const AttnKernel *k, bool backward) {
    double pairs = k->mask == ATTN_MASK_CAUSAL ? 0.5 * k->q_rows * k->kv_rows : k->q_rows * k->kv_rows;
    double flops = 2.0 * pairs * (k->d_qk + k->d_v) * k->heads_batch * (backward ? 2.5 : 1.0);
    if (flops <= 0) return 0;
    double e = attention_efficiency(hw, k->q_rows, k->kv_rows, k->heads_batch, k->d_qk, k->mask, backward, true);
    return ATTN_LAUNCH_S + flops / (hw->peak_bf16 * e);
}
