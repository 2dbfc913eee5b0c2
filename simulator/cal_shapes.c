/* cal_shapes.c: see cal_shapes.h. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../core/flops.h"
#include "../core/layout.h"
#include "cal_shapes.h"

const char *cal_kernel_role_name(CalKernelRole r) {
    static const char *const names[] = {"full", "ring-diagonal", "ring-earlier", "ring-later"};
    return (r >= CAL_KERNEL_FULL && r <= CAL_KERNEL_RING_LATER) ? names[r] : "?";
}

static bool same_kernel(const CalAttnShape *a, const CalAttnShape *b) {
    return a->q_rows == b->q_rows && a->kv_rows == b->kv_rows && a->mask == b->mask && a->batch == b->batch &&
           a->heads == b->heads && a->kv_heads == b->kv_heads && a->d_qk == b->d_qk && a->d_v == b->d_v;
}

/* a whole, positive count out of layout_attention_heads */
static int whole(double v, const char *field, int tp, MpError *err, int *out) {
    if (!(v >= 1) || v != floor(v) || v > 1e6)
        return mp_fail(err, "tp: %d leaves %g %s per GPU (not a whole number)", tp, v, field);
    *out = (int)v;
    return 0;
}

int cal_attention_shapes_add(const Plan *p, CalAttnShape *shapes, int max, int *n, MpError *err) {
    const int seq = p->train.seq_len, cp = p->map.cp, tp = p->map.tp;
    AttnHeads ah;
    layout_attention_heads(&p->model, tp, &ah);
    CalAttnShape base = {0};
    base.batch = p->train.micro_batch;
    if (whole(ah.q_heads, "query heads", tp, err, &base.heads) || whole(ah.kv_heads, "K/V heads", tp, err, &base.kv_heads) ||
        whole(ah.d_qk, "head dim (q/k)", tp, err, &base.d_qk) || whole(ah.d_v, "head dim (v)", tp, err, &base.d_v))
        return -1;
    /* the CP 1 kernel (the full sequence), then the ring's steps, both from
     * the one enumeration the simulator prices (core/layout.h) */
    CpRingStep full[CP_STEP_SHAPES], ring[CP_STEP_SHAPES];
    if (layout_cp_step_shapes(seq, 1, full, err) < 0) return -1;
    int nring = cp > 1 ? layout_cp_step_shapes(seq, cp, ring, err) : 0;
    if (nring < 0) return -1;
    const CpRingStep *steps[1 + CP_STEP_SHAPES];
    CalKernelRole roles[1 + CP_STEP_SHAPES];
    int k = 0;
    steps[k] = &full[CP_STEP_DIAGONAL], roles[k++] = CAL_KERNEL_FULL;
    if (nring == CP_STEP_SHAPES) {
        steps[k] = &ring[CP_STEP_DIAGONAL], roles[k++] = CAL_KERNEL_RING_DIAGONAL;
        steps[k] = &ring[CP_STEP_EARLIER], roles[k++] = CAL_KERNEL_RING_EARLIER;
        steps[k] = &ring[CP_STEP_LATER], roles[k++] = CAL_KERNEL_RING_LATER;
    }
    for (int i = 0; i < k; i++) {
        CalAttnShape s = base;
        s.role = roles[i];
        s.q_rows = steps[i]->q_rows;
        s.kv_rows = steps[i]->kv_rows;
        s.mask = steps[i]->mask;
        /* pairs per sequence and head as the simulator counts them (attention.c) */
        s.fwd_flops = flops_attention_core(steps[i]->pairs * s.batch, s.heads, s.d_qk, s.d_v);
        snprintf(s.name, sizeof s.name, "%.32s s%d tp%d cp%d mbs%d %s", p->model.name, seq, tp, cp, s.batch,
                 cal_kernel_role_name(s.role));
        /* documentation only, and written into JSON: letters, digits and - . _ space */
        for (char *c = s.name; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("-._ ", *c)))
                *c = '_';
        bool dup = false;
        for (int j = 0; j < *n && !dup; j++) dup = same_kernel(&shapes[j], &s);
        if (dup) continue;
        if (*n >= max) return mp_fail(err, "plan: more than %d distinct attention kernels to calibrate", max);
        shapes[(*n)++] = s;
    }
    return 0;
}

int cal_attention_entry_json(const CalAttnShape *s, AttnBackend backend, double fwd_s, double bwd_s, char *buf,
                             size_t cap, MpError *err) {
    if (!(fwd_s > 0 && isfinite(fwd_s)) || !(bwd_s > 0 && isfinite(bwd_s)))
        return mp_fail(err, "attention %s: kernel time %g / %g s is not positive", s->name, fwd_s, bwd_s);
    double fwd_tf = s->fwd_flops / fwd_s / 1e12, bwd_tf = 2.5 * s->fwd_flops / bwd_s / 1e12;
    int w = snprintf(buf, cap,
                     "{\"name\": \"%s\", \"q_rows\": %d, \"kv_rows\": %d, \"mask\": \"%s\", \"backend\": \"%s\", "
                     "\"batch\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"fwd_tflops\": %.5g, "
                     "\"bwd_tflops\": %.5g}",
                     s->name, s->q_rows, s->kv_rows, s->mask == ATTN_MASK_CAUSAL ? "causal" : "none",
                     attn_backend_name(backend), s->batch, s->heads, s->kv_heads, s->d_qk, fwd_tf, bwd_tf);
    if (w < 0 || (size_t)w >= cap) return mp_fail(err, "attention %s: entry longer than %zu bytes", s->name, cap);
    return 0;
}
