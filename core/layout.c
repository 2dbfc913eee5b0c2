/* layout.c: see layout.h. */
#include "layout.h"

LayerKind layout_layer_kind(const ModelSpec *m, int layer) {
    return (!model_is_moe(m) || layer < m->num_dense_layers) ? LAYER_DENSE : LAYER_MOE;
}

int layout_vstage_layers(const Plan *p, int vs) {
    int pp = p->map.pp > 0 ? p->map.pp : 1, v = p->map.vpp > 0 ? p->map.vpp : 1;
    int r = vs % pp, c = vs / pp;
    int L = plan_stage_layers(p, r);
    return L / v + (c < L % v ? 1 : 0);
}

int layout_vstage_first_layer(const Plan *p, int vs) {
    int first = 0;
    for (int u = 0; u < vs; u++) first += layout_vstage_layers(p, u);
    return first;
}

void layout_cp_chunks(int cp, int rank, int chunks[2]) {
    chunks[0] = rank;
    chunks[1] = 2 * cp - 1 - rank;
}

static int check_cp(int seq, int cp, int rank, MpError *err) {
    if (cp < 1) return mp_fail(err, "cp: must be >= 1, got %d", cp);
    if (rank < 0 || rank >= cp) return mp_fail(err, "cp: rank %d outside 0..%d", rank, cp - 1);
    if (seq < 1 || (cp > 1 && seq % (2 * cp)))
        return mp_fail(err, "seq: %d is not a positive multiple of 2*cp = %d", seq, 2 * cp);
    return 0;
}

int layout_cp_position_ids(int seq, int cp, int rank, int *out, MpError *err) {
    if (check_cp(seq, cp, rank, err)) return -1;
    if (cp == 1) {
        for (int i = 0; i < seq; i++) out[i] = i;
        return 0;
    }
    int c = seq / (2 * cp), chunks[2];
    layout_cp_chunks(cp, rank, chunks);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < c; i++) out[h * c + i] = chunks[h] * c + i;
    return 0;
}

int layout_cp_ring_step(int seq, int cp, int rank, int step, CpRingStep *out, MpError *err) {
    if (check_cp(seq, cp, rank, err)) return -1;
    if (step < 0 || step >= cp) return mp_fail(err, "cp: step %d outside 0..%d", step, cp - 1);
    if (cp == 1) {
        *out = (CpRingStep){seq, seq, ATTN_MASK_CAUSAL, 0, 0.5 * (double)seq * seq};
        return 0;
    }
    int c = seq / (2 * cp);
    CpRingStep *s = out;
    s->kv_from = ((rank - step) % cp + cp) % cp;
    if (step == 0) {
        s->q_rows = s->kv_rows = 2 * c;
        s->mask = ATTN_MASK_CAUSAL;
        s->pairs = 0.5 * (2.0 * c) * (2.0 * c);
    } else if (step <= rank) {
        s->q_rows = 2 * c;
        s->kv_rows = c;
        s->mask = ATTN_MASK_NONE;
        s->pairs = 2.0 * c * c;
    } else {
        s->q_rows = c;
        s->kv_rows = 2 * c;
        s->mask = ATTN_MASK_NONE;
        s->pairs = 2.0 * c * c;
    }
    return 0;
}

int layout_cp_ring_steps(int seq, int cp, int rank, CpRingStep *steps, MpError *err) {
    if (check_cp(seq, cp, rank, err)) return -1;
    for (int i = 0; i < cp; i++)
        if (layout_cp_ring_step(seq, cp, rank, i, &steps[i], err)) return -1;
    return 0;
}

int layout_cp_step_shapes(int seq, int cp, CpRingStep shapes[CP_STEP_SHAPES], MpError *err) {
    if (layout_cp_ring_step(seq, cp, 0, 0, &shapes[CP_STEP_DIAGONAL], err)) return -1;
    if (cp == 1) return 1;
    if (layout_cp_ring_step(seq, cp, cp - 1, 1, &shapes[CP_STEP_EARLIER], err) ||
        layout_cp_ring_step(seq, cp, 0, 1, &shapes[CP_STEP_LATER], err))
        return -1;
    return CP_STEP_SHAPES;
}

void layout_attention_heads(const ModelSpec *m, int tp, AttnHeads *out) {
    double t = tp > 0 ? tp : 1;
    out->q_heads = m->num_heads / t;
    if (m->mla) {
        out->d_qk = m->qk_nope_head_dim + m->qk_rope_head_dim;
        out->d_v = m->v_head_dim;
        out->kv_heads = out->q_heads;
    } else {
        out->d_qk = out->d_v = m->head_dim;
        double g = m->num_kv_groups > 0 ? m->num_kv_groups : m->num_heads;
        out->kv_heads = g > t ? g / t : 1.0;
    }
}
