/* simulate.c: one training step of a folded 5D plan, assembled from the
 * cost terms (layer.c, dispatcher.c, comm.c, compute.c), the pipeline
 * schedule (pipeline.c), data-parallel gradient/parameter traffic, the
 * optimizer step and the memory of every stage (memory.c).
 *
 *   step = max over pipeline ranks r of (end of r's last backward
 *                                        + exposed gradient sync of r)
 *        + optimizer step (slowest rank; Adam, ~34 bytes of HBM traffic
 *          per locally-updated parameter: fp32 master, grad, two moments
 *          read and written, bf16 weight written, grad-norm read)
 *        + exposed parameter all-gather (distributed optimizer)
 *   MFU  = model FLOPs of the step (core/flops.c, convention of the plan)
 *          / (step * GPUs * dense BF16 peak)
 * Breakdown: reported for the pipeline rank with the most work; bubble is
 * what remains of the step once its compute, exposed communication and
 * optimizer are counted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/layout.h"
#include "core/limits.h"
#include "sim_internal.h"

#define BF16 2.0
#define OPT_BYTES_PER_PARAM 34.0

/* layer variants: [dense][windowed] */
enum { LV_MOE = 0, LV_MOE_WIN, LV_DENSE, LV_DENSE_WIN, LV_COUNT };

typedef struct {
    Phase f[LV_COUNT], b[LV_COUNT];
    bool used[LV_COUNT];
    Phase emb_f, emb_b, out_f, out_b;
    double act[LV_COUNT];          /* activation bytes per layer per micro-batch */
    double act_full[LV_COUNT];     /* without recomputation (full-recompute working set) */
    double dense_params[LV_COUNT]; /* per GPU per layer (divided by TP) */
    double expert_params[LV_COUNT];/* per GPU per layer (divided by ETP*EP) */
    double ep_raw[LV_COUNT];       /* s, EP + ETP communication of the layer (fwd + bwd) before any overlap */
} LayerTable;

static int layer_variant(const ModelSpec *m, int i) {
    bool dense = layout_layer_kind(m, i) == LAYER_DENSE;
    bool win = m->sliding_window > 0 && (m->sliding_window_every <= 1 || (i % m->sliding_window_every) != m->sliding_window_every - 1);
    return (dense ? 2 : 0) + (win ? 1 : 0);
}

static void phase_scale_kind(Phase *ph, CostKind k, double factor) {
    double old = ph->by_kind[k];
    if (old <= 0) return;
    for (int i = 0; i < ph->n; i++)
        if (ph->seg[i].kind == k) ph->seg[i].t *= factor;
    ph->by_kind[k] = old * factor;
    ph->total += old * (factor - 1);
}

static double phase_compute(const Phase *ph) {
    double t = 0;
    for (int k = COST_ATTENTION; k <= COST_RECOMPUTE; k++) t += ph->by_kind[k];
    return t;
}

static int check_plan(const Plan *p, MpError *err) {
    const Mapping *m = &p->map;
    const TrainConfig *t = &p->train;
    if (m->tp < 1 || m->cp < 1 || m->pp < 1 || m->dp < 1 || m->etp < 1 || m->ep < 1 || m->edp < 1 || m->vpp < 1)
        return mp_fail(err, "mapping: every parallel size must be >= 1 (tp %d cp %d pp %d dp %d etp %d ep %d edp %d vpp %d)",
                       m->tp, m->cp, m->pp, m->dp, m->etp, m->ep, m->edp, m->vpp);
    if (m->world > MP_MAX_GPUS || m->tp > m->world || m->cp > m->world || m->dp > m->world || m->pp > m->world ||
        m->etp > m->world || m->ep > m->world || m->edp > m->world || m->vpp > MP_MAX_VPP)
        return mp_fail(err, "gpus: %d GPUs or a mapping size beyond the limits (core/limits.h)", m->world);
    /* each size <= 2^20: a product of four may reach 2^80, so check in steps */
    if ((long long)m->tp * m->cp * m->dp != m->world / m->pp || m->world % m->pp ||
        (long long)m->etp * m->ep * m->edp != m->world / m->pp)
        return mp_fail(err, "gpus: tp*cp*dp*pp and etp*ep*edp*pp must both equal %d", m->world);
    if (m->pp > SIM_MAX_STAGES) return mp_fail(err, "pp: %d is larger than %d", m->pp, SIM_MAX_STAGES);
    if (t->seq_len < 1 || t->micro_batch < 1 || t->global_batch < 1) return mp_fail(err, "seq/mbs/gbs: must be >= 1");
    /* the ring's steps (core/layout.h) exist only for whole chunks */
    if (m->cp > 1 && t->seq_len % (2LL * m->cp))
        return mp_fail(err, "seq: %d is not divisible by 2*cp = %d (causal load balancing splits each sequence into "
                       "2*cp chunks)", t->seq_len, 2 * m->cp);
    if (t->global_batch % ((long long)t->micro_batch * m->dp))
        return mp_fail(err, "gbs: %d is not divisible by mbs*dp = %lld", t->global_batch, (long long)t->micro_batch * m->dp);
    if (model_is_moe(&p->model) && p->model.num_experts % m->ep)
        return mp_fail(err, "ep: %d does not divide %d experts", m->ep, p->model.num_experts);
    if (p->model.num_layers < (long long)m->pp * m->vpp)
        return mp_fail(err, "pp: %d x vpp %d stages for %d layers", m->pp, m->vpp, p->model.num_layers);
    if (p->cluster.peak_bf16_flops <= 0 || p->cluster.hbm_bytes <= 0 || p->cluster.gpus_per_node < 1)
        return mp_fail(err, "cluster: peak_bf16_flops, hbm and gpus_per_node must be positive");
    for (int s = 0; s < m->pp; s++)
        if (plan_stage_layers(p, s) < m->vpp) return mp_fail(err, "pp: stage %d has fewer layers than vpp", s);
    return 0;
}

/* Is seg one of the forward kernels the recompute modules run again?
 * Names are those layer.c and dispatcher.c give their forward segments. */
static bool seg_recomputed(const char *name, bool attention, bool dense, unsigned mods) {
    if (attention) {
        if ((mods & RCM_LAYERNORM) && !strcmp(name, "input_norm")) return true;
        if ((mods & RCM_MLA_UP_PROJ) && (!strcmp(name, "q_up") || !strcmp(name, "kv_up") || !strcmp(name, "rope")))
            return true;
        return false;
    }
    if ((mods & RCM_LAYERNORM) && (!strcmp(name, dense ? "mlp_norm" : "pre_mlp_norm"))) return true;
    if (!dense && (mods & RCM_MOE_ACT) && !strcmp(name, "expert_swiglu")) return true;
    if (!dense && (mods & RCM_SHARED_EXPERTS) && !strncmp(name, "shared_", 7)) return true;
    return false;
}

/* Selective recomputation (Megatron-LM --recompute-modules): the forward
 * kernels of the recomputed modules run again before the layer's backward;
 * "moe" and "mlp" run the whole MoE layer (dispatch included) or dense MLP
 * forward again. */
static void recompute_modules_phase(const Phase *attn_f, const Phase *attn_r, const Phase *mlp_f, bool dense,
                                    unsigned mods, Phase *B) {
    /* core_attn: the attention core re-run as layer.c/ring.c price it (with
     * CP the whole ring again, its transfers staying CP time) */
    if (mods & RCM_CORE_ATTN)
        for (int i = 0; i < attn_r->n; i++)
            if (!strncmp(attn_r->seg[i].name, "recompute_attention", 19) ||
                !strncmp(attn_r->seg[i].name, "recompute_cp_ring", 17))
                phase_add(B, attn_r->seg[i].name, attn_r->seg[i].kind, attn_r->seg[i].t);
    for (int i = 0; i < attn_f->n; i++)
        if (seg_recomputed(attn_f->seg[i].name, true, dense, mods))
            phase_add(B, attn_f->seg[i].name, COST_RECOMPUTE, attn_f->seg[i].t);
    if ((dense && (mods & RCM_MLP)) || (!dense && (mods & RCM_MOE))) {
        phase_append(B, mlp_f, 1, COST_RECOMPUTE, true);
        return;
    }
    for (int i = 0; i < mlp_f->n; i++)
        if (seg_recomputed(mlp_f->seg[i].name, false, dense, mods))
            phase_add(B, mlp_f->seg[i].name, COST_RECOMPUTE, mlp_f->seg[i].t);
}

static void build_layers(const SimCtx *x, LayerTable *lt) {
    const Plan *p = x->p;
    const ModelSpec *md = &p->model;
    ModelParams mp;
    model_params(md, &mp);
    memset(lt->used, 0, sizeof lt->used);
    for (int i = 0; i < md->num_layers; i++) lt->used[layer_variant(md, i)] = true;
    Phase af, ab, ar, mf, mb, mr;
    SimCtx xn = *x;
    xn.recompute = RECOMPUTE_NONE;
    for (int v = 0; v < LV_COUNT; v++) {
        if (!lt->used[v]) continue;
        bool dense = v >= LV_DENSE, win = v & 1;
        layer_attention(x, win ? md->sliding_window : 0, &af, &ab, &ar);
        if (dense) layer_dense_mlp(x, md->dense_ffn, COST_DENSE_MLP, "mlp", &mf, &mb, &mr);
        else layer_moe(x, &mf, &mb, &mr);
        Phase *F = &lt->f[v], *B = &lt->b[v];
        phase_clear(F);
        phase_clear(B);
        phase_append(F, &af, 1, 0, false);
        phase_append(F, &mf, 1, 0, false);
        phase_append(B, &mb, 1, 0, false);
        phase_append(B, &ab, 1, 0, false);
        lt->ep_raw[v] = F->by_kind[COST_EP] + F->by_kind[COST_ETP] + B->by_kind[COST_EP] + B->by_kind[COST_ETP];
        /* --overlap ep: the MoE layer's EP/ETP communication of one
         * micro-batch runs behind the other direction's compute of another
         * micro-batch (Megatron's combined 1F1B all-to-all overlap); only
         * steady-state ops have a partner: a fraction (m - PP + 1)/m. */
        if (!dense && (p->train.overlap & OVERLAP_EP) && (x->ep > 1 || x->etp > 1)) {   /* as Megatron: EP/ETP traffic only */
            int m = x->microbatches;
            double steady = m > x->pp - 1 ? (double)(m - x->pp + 1) / m : 0;
            double frac = overlap_sm_frac_nccl(x->hw);
            double cf = F->by_kind[COST_EP] + F->by_kind[COST_ETP], cb = B->by_kind[COST_EP] + B->by_kind[COST_ETP];
            double wf = phase_compute(B), wb = phase_compute(F);
            if (cf > 0) {
                double nf = steady * overlap_added(cf, wf, frac) + (1 - steady) * cf;
                phase_scale_kind(F, COST_EP, nf / cf);
                phase_scale_kind(F, COST_ETP, nf / cf);
            }
            if (cb > 0) {
                double nb = steady * overlap_added(cb, wb, frac) + (1 - steady) * cb;
                phase_scale_kind(B, COST_EP, nb / cb);
                phase_scale_kind(B, COST_ETP, nb / cb);
            }
        }
        /* parameters per GPU of this layer */
        double dense_p = (mp.attention_per_layer + (dense ? mp.dense_mlp_per_layer : mp.shared_per_layer)) / x->tp +
                         mp.norms_per_layer + (dense ? 0 : mp.router_per_layer);
        double exp_p = dense ? 0 : mp.expert_per_layer / ((double)x->etp * x->ep);
        lt->dense_params[v] = dense_p;
        lt->expert_params[v] = exp_p;
        /* FSDP (full sharding): gather the layer's bf16 weights before its
         * forward and again before its backward, reduce-scatter its fp32
         * gradients after the backward, each prefetched behind the
         * neighbouring layer's compute. */
        if (p->train.opt_sharding == OPT_SHARD_FULL) {
            double frac = overlap_sm_frac_nccl(x->hw);
            double ag_d = comm_time(x->hw, COLL_ALL_GATHER, &x->g[GROUP_DP_CP], dense_p * BF16);
            double ag_e = exp_p > 0 ? comm_time(x->hw, COLL_ALL_GATHER, &x->g[GROUP_EDP], exp_p * BF16) : 0;
            double rs_d = comm_time(x->hw, COLL_REDUCE_SCATTER, &x->g[GROUP_DP_CP], dense_p * 4);
            double rs_e = exp_p > 0 ? comm_time(x->hw, COLL_REDUCE_SCATTER, &x->g[GROUP_EDP], exp_p * 4) : 0;
            double cf = ag_d + ag_e, cb = ag_d + ag_e + rs_d + rs_e;
            double addf = overlap_added(cf, phase_compute(F), frac);
            double addb = overlap_added(cb, phase_compute(B), frac);
            if (cf > 0) {
                phase_add(F, "fsdp_all_gather", COST_DP, addf * ag_d / cf);
                phase_add(F, "fsdp_all_gather_experts", COST_EDP, addf * ag_e / cf);
            }
            if (cb > 0) {
                phase_add(B, "fsdp_gather_and_reduce", COST_DP, addb * (ag_d + rs_d) / cb);
                phase_add(B, "fsdp_gather_and_reduce_experts", COST_EDP, addb * (ag_e + rs_e) / cb);
            }
        }
        /* recomputation: the forward (full) or its recomputed pieces
         * (selective) run again before the backward */
        if (x->recompute == RECOMPUTE_FULL) {
            Phase fcopy = *F;
            phase_append(B, &fcopy, 1, COST_RECOMPUTE, true);
        } else if (x->recompute == RECOMPUTE_SELECTIVE) {
            unsigned mods = train_recompute_modules(&p->train, md);
            recompute_modules_phase(&af, &ar, &mf, dense, mods, B);
        }
        lt->act[v] = memory_attention_activations(x) +
                     (dense ? memory_dense_mlp_activations(x, md->dense_ffn) : memory_moe_activations(x));
        lt->act_full[v] = memory_attention_activations(&xn) +
                          (dense ? memory_dense_mlp_activations(&xn, md->dense_ffn) : memory_moe_activations(&xn));
    }
    layer_embedding(x, &lt->emb_f, &lt->emb_b);
    layer_output(x, &lt->out_f, &lt->out_b);
}

static void add_kinds(double *acc, const Phase *ph, double scale) {
    for (int k = 0; k < COST_KIND_COUNT; k++) acc[k] += ph->by_kind[k] * scale;
}

static const char *const kind_words[COST_KIND_COUNT] = {
    "attention compute", "moe compute", "dense mlp compute", "embedding/output compute", "memory-bound kernels",
    "recomputation", "tp communication", "cp communication", "ep all-to-all", "etp all-gather/reduce-scatter",
    "pipeline send/recv", "dp gradient/parameter sync", "edp gradient/parameter sync", "pipeline bubble", "optimizer step",
};

static const GroupKind kind_group[COST_KIND_COUNT] = {
    [COST_TP] = GROUP_TP, [COST_CP] = GROUP_CP, [COST_EP] = GROUP_EP, [COST_ETP] = GROUP_ETP,
    [COST_PP] = GROUP_PP, [COST_DP] = GROUP_DP_CP, [COST_EDP] = GROUP_EDP,
};

void sim_ctx_init(SimCtx *x, const Plan *plan, const SimHw *hw) {
    const Mapping *map = &plan->map;
    const TrainConfig *tc = &plan->train;
    memset(x, 0, sizeof *x);
    x->p = plan;
    x->hw = hw;
    x->s = tc->seq_len;
    x->b = tc->micro_batch;
    x->tp = map->tp; x->cp = map->cp; x->etp = map->etp; x->ep = map->ep;
    x->pp = map->pp; x->vpp = map->vpp; x->dp = map->dp; x->edp = map->edp;
    x->m_full = x->s * x->b / x->cp;
    x->t_local = x->s * x->b / ((double)x->tp * x->cp);
    x->act_bytes = BF16;
    x->microbatches = tc->global_batch / (tc->micro_batch * map->dp);
    x->recompute = tc->recompute;
    x->cp_link_share_fwd = x->cp_link_share_bwd = 1;
    static const GroupKind used_kinds[] = {GROUP_TP, GROUP_CP, GROUP_DP_CP, GROUP_PP, GROUP_ETP, GROUP_EP, GROUP_EDP, GROUP_ETP_EP};
    for (size_t i = 0; i < sizeof used_kinds / sizeof used_kinds[0]; i++)
        mapping_placement(map, used_kinds[i], hw->domain, &x->g[used_kinds[i]]);
}

/* Share of a GPU's NIC left to the CP ring (SimCtx.cp_link_share_*), for
 * a CP group that crosses nodes.  Per pipeline rank, the NIC time of the
 * traffic that runs while the ring does, spread over the time it runs
 * behind (the busiest rank sets the share):
 *   backward: the gradient reduce-scatter (all-reduce without the
 *     distributed optimizer) of the dense (DP*CP) and expert (EDP) groups
 *     that cross nodes, when overlapped with the backward (--overlap grad),
 *     over the rank's m backwards;
 *   forward: the parameter all-gather of the next step (--overlap param)
 *     over its m forwards;
 *   both: the MoE all-to-all of another micro-batch when it is overlapped
 *     (--overlap ep) and the EP group crosses nodes, over the layer's time.
 * share = 1 - load, at least 0.1.  Returns whether any share is below 1. */
static bool nic_shares(SimCtx *x, const LayerTable *lt, const double *rank_dense, const double *rank_exp,
                       const double *rank_fwd, const double *rank_bwd) {
    const TrainConfig *tc = &x->p->train;
    const SimHw *hw = x->hw;
    bool dense_net = x->g[GROUP_DP_CP].nodes > 1, exp_net = x->g[GROUP_EDP].nodes > 1;
    double load_f = 0, load_b = 0;
    for (int r = 0; r < x->pp; r++) {
        double g = 0, a = 0;
        CollOp op = tc->opt_sharding == OPT_SHARD_NONE ? COLL_ALL_REDUCE : COLL_REDUCE_SCATTER;
        if (tc->opt_sharding != OPT_SHARD_FULL) {
            if (dense_net) g += comm_time(hw, op, &x->g[GROUP_DP_CP], rank_dense[r] * 4);
            if (exp_net && rank_exp[r] > 0) g += comm_time(hw, op, &x->g[GROUP_EDP], rank_exp[r] * 4);
        }
        if (tc->opt_sharding == OPT_SHARD_DISTRIBUTED) {
            if (dense_net) a += comm_time(hw, COLL_ALL_GATHER, &x->g[GROUP_DP_CP], rank_dense[r] * BF16);
            if (exp_net && rank_exp[r] > 0) a += comm_time(hw, COLL_ALL_GATHER, &x->g[GROUP_EDP], rank_exp[r] * BF16);
        }
        double tb = x->microbatches * rank_bwd[r], tf = x->microbatches * rank_fwd[r];
        if ((tc->overlap & OVERLAP_GRAD) && tb > 0 && g / tb > load_b) load_b = g / tb;
        if ((tc->overlap & OVERLAP_PARAM) && tf > 0 && a / tf > load_f) load_f = a / tf;
    }
    if ((tc->overlap & OVERLAP_EP) && x->g[GROUP_EP].nodes > 1) {
        double ep = 0;
        for (int v = 0; v < LV_COUNT; v++)
            if (lt->used[v] && lt->ep_raw[v] > ep) ep = lt->ep_raw[v];
        double layer_t = 0;
        for (int v = 0; v < LV_COUNT; v++)
            if (lt->used[v] && lt->f[v].total + lt->b[v].total > layer_t) layer_t = lt->f[v].total + lt->b[v].total;
        if (layer_t > 0) load_f += ep / layer_t, load_b += ep / layer_t;
    }
    x->cp_link_share_fwd = load_f < 0.9 ? 1 - load_f : 0.1;
    x->cp_link_share_bwd = load_b < 0.9 ? 1 - load_b : 0.1;
    return load_f > 0 || load_b > 0;
}

int simulate_layer_times(const Plan *plan, const Calibration *cal, double *layer_time, int max_layers,
                         double *first_extra, double *last_extra, MpError *err) {
    const Mapping *m = &plan->map;
    const ModelSpec *md = &plan->model;
    if (m->tp < 1 || m->cp < 1 || m->pp < 1 || m->dp < 1 || m->etp < 1 || m->ep < 1 || m->edp < 1 || m->vpp < 1)
        return mp_fail(err, "mapping: every parallel size must be >= 1");
    if (md->num_layers < 1 || md->num_layers > max_layers)
        return mp_fail(err, "num_layers: %d outside 1..%d", md->num_layers, max_layers);
    if (plan->train.seq_len < 1 || plan->train.micro_batch < 1) return mp_fail(err, "seq/mbs: must be >= 1");
    if (m->cp > 1 && plan->train.seq_len % (2LL * m->cp))
        return mp_fail(err, "seq: %d is not divisible by 2*cp = %d", plan->train.seq_len, 2 * m->cp);
    SimHw hw;
    sim_hw_init_backend(&hw, &plan->cluster, cal, plan->train.precision == PRECISION_FP8, attention_backend_resolve(plan));
    SimCtx x;
    sim_ctx_init(&x, plan, &hw);
    if (x.microbatches < 1) x.microbatches = 1;
    LayerTable *lt = malloc(sizeof *lt);
    if (!lt) return mp_fail(err, "simulate: out of memory");
    build_layers(&x, lt);
    for (int i = 0; i < md->num_layers; i++) {
        int lv = layer_variant(md, i);
        layer_time[i] = lt->f[lv].total + lt->b[lv].total;
    }
    *first_extra = lt->emb_f.total + lt->emb_b.total;
    *last_extra = lt->out_f.total + lt->out_b.total;
    free(lt);
    return 0;
}

int simulate_step(const Plan *plan, const Calibration *cal, const SimOptions *opt, SimResult *out, MpError *err) {
    if (check_plan(plan, err)) return -1;
    const Mapping *map = &plan->map;
    const TrainConfig *tc = &plan->train;
    const ModelSpec *md = &plan->model;
    SimHw hw;
    sim_hw_init_backend(&hw, &plan->cluster, cal, tc->precision == PRECISION_FP8, attention_backend_resolve(plan));

    SimCtx x;
    sim_ctx_init(&x, plan, &hw);
    if (opt && opt->memory_elem_bytes > 0) x.act_bytes = opt->memory_elem_bytes;   /* memory model only */

    /* per virtual stage forward/backward times of one micro-batch */
    int pp = map->pp, v = map->vpp, V = pp * v, m = x.microbatches;
    double fwd[PIPE_MAX_VSTAGES], bwd[PIPE_MAX_VSTAGES];
    if (V > PIPE_MAX_VSTAGES) return mp_fail(err, "vpp: pp*vpp = %d exceeds %d", V, PIPE_MAX_VSTAGES);
    double rank_dense[SIM_MAX_STAGES], rank_exp[SIM_MAX_STAGES], rank_fwd[SIM_MAX_STAGES], rank_act[SIM_MAX_STAGES],
        rank_act_work[SIM_MAX_STAGES], rank_bwd[SIM_MAX_STAGES];
    int rank_layers[SIM_MAX_STAGES];
    ModelParams mp;
    model_params(md, &mp);
    LayerTable lt;
    x.cp_link_share_fwd = x.cp_link_share_bwd = 1;
    /* pass 0 with the CP ring alone on its link; when the CP group
     * crosses nodes and gradient/parameter (or overlapped all-to-all)
     * traffic shares the NIC, pass 1 gives the ring what that traffic
     * leaves (nic_shares) */
    for (int pass = 0; pass < 2; pass++) {
        build_layers(&x, &lt);
        for (int r = 0; r < pp; r++)
            rank_dense[r] = rank_exp[r] = rank_fwd[r] = rank_bwd[r] = rank_act[r] = rank_act_work[r] = 0,
            rank_layers[r] = 0;
        int layer = 0;
        for (int vs = 0; vs < V; vs++) {
            int r = vs % pp, nl = layout_vstage_layers(plan, vs);
            double f = 0, b = 0;
            for (int i = layer; i < layer + nl; i++) {
                int lv = layer_variant(md, i);
                f += lt.f[lv].total;
                b += lt.b[lv].total;
                rank_dense[r] += lt.dense_params[lv];
                rank_exp[r] += lt.expert_params[lv];
                rank_act[r] += lt.act[lv];
                if (lt.act_full[lv] > rank_act_work[r]) rank_act_work[r] = lt.act_full[lv];
            }
            layer += nl;
            if (vs == 0) {
                f += lt.emb_f.total;
                b += lt.emb_b.total;
                rank_dense[r] += mp.embedding / x.tp;
            }
            if (vs == V - 1) {
                f += lt.out_f.total;
                b += lt.out_b.total;
                rank_dense[r] += (md->tied_embeddings ? (pp > 1 ? mp.embedding : 0) : mp.output) / x.tp + md->hidden;
            }
            fwd[vs] = f;
            bwd[vs] = b;
            rank_fwd[r] += f;
            rank_bwd[r] += b;
            rank_layers[r] += nl;
        }
        if (pass == 1 || x.cp <= 1 || x.g[GROUP_CP].nodes <= 1) break;
        if (!nic_shares(&x, &lt, rank_dense, rank_exp, rank_fwd, rank_bwd)) break;
    }
    int layer = 0;

    double p2p = pp > 1 ? comm_time(&hw, COLL_SEND_RECV, &x.g[GROUP_PP], x.t_local * md->hidden * BF16) : 0;
    bool blocking = v == 1;
    PipeResult pr;
    if (pipeline_simulate(pp, v, m, fwd, bwd, p2p, blocking, &pr, -1, NULL, 0, NULL, err)) return -1;

    /* data-parallel gradient sync, parameter gather and optimizer, per rank */
    double frac = overlap_sm_frac_nccl(&hw);
    double end_max = 0, opt_max = 0, ag_max = 0;
    double grad_exposed[SIM_MAX_STAGES], grad_dense_share[SIM_MAX_STAGES];
    double ag_dense_share = 0.5;
    for (int r = 0; r < pp; r++) {
        double tg_d = 0, tg_e = 0, ta_d = 0, ta_e = 0;
        if (tc->opt_sharding == OPT_SHARD_DISTRIBUTED) {
            tg_d = comm_time(&hw, COLL_REDUCE_SCATTER, &x.g[GROUP_DP_CP], rank_dense[r] * 4);
            tg_e = rank_exp[r] > 0 ? comm_time(&hw, COLL_REDUCE_SCATTER, &x.g[GROUP_EDP], rank_exp[r] * 4) : 0;
            ta_d = comm_time(&hw, COLL_ALL_GATHER, &x.g[GROUP_DP_CP], rank_dense[r] * BF16);
            ta_e = rank_exp[r] > 0 ? comm_time(&hw, COLL_ALL_GATHER, &x.g[GROUP_EDP], rank_exp[r] * BF16) : 0;
        } else if (tc->opt_sharding == OPT_SHARD_NONE) {
            tg_d = comm_time(&hw, COLL_ALL_REDUCE, &x.g[GROUP_DP_CP], rank_dense[r] * 4);
            tg_e = rank_exp[r] > 0 ? comm_time(&hw, COLL_ALL_REDUCE, &x.g[GROUP_EDP], rank_exp[r] * 4) : 0;
        }
        double tg = tg_d + tg_e, ta = ta_d + ta_e;
        grad_dense_share[r] = tg > 0 ? tg_d / tg : 0.5;
        double exposed = tg;
        if ((tc->overlap & OVERLAP_GRAD) && tg > 0) {
            /* buckets of chunk c are ready from the end of its first layer's
             * last backward; one communication stream, chunks in backward order */
            double t = 0, params_r = rank_dense[r] + rank_exp[r];
            for (int c = v - 1; c >= 0; c--) {
                int vs = c * pp + r, nl = layout_vstage_layers(plan, vs);
                double share = (double)nl / (rank_layers[r] > 0 ? rank_layers[r] : 1);
                /* the embedding (vs 0) and output (vs V-1) gradients ride with their chunk's share */
                double ready = pr.chunk_last_bwd_end[vs] - bwd[vs] * (1.0 - 1.0 / (nl > 0 ? nl : 1));
                if (t < ready) t = ready;
                t += tg * share;
            }
            (void)params_r;
            double raw = t - pr.rank_end[r];
            if (raw < 0) raw = 0;
            exposed = raw + frac * (tg - raw);
        }
        grad_exposed[r] = exposed;
        if (pr.rank_end[r] + exposed > end_max) end_max = pr.rank_end[r] + exposed;
        /* parameter all-gather before the next step's forward */
        double ag = ta;
        if ((tc->overlap & OVERLAP_PARAM) && ta > 0) {
            int nl = rank_layers[r] > 0 ? rank_layers[r] : 1;
            double a = ta / nl, f_layer = rank_fwd[r] / nl;
            double raw = a + (nl - 1) * (a > f_layer ? a - f_layer : 0) - pr.rank_first_start[r];
            if (raw < 0) raw = 0;
            ag = raw + frac * (ta - raw);
        }
        if (ag > ag_max) {
            ag_max = ag;
            ag_dense_share = ta > 0 ? ta_d / ta : 0.5;
        }
        /* optimizer */
        double local = tc->opt_sharding == OPT_SHARD_NONE
                           ? rank_dense[r] + rank_exp[r]
                           : rank_dense[r] / ((double)x.dp * x.cp) + rank_exp[r] / x.edp;
        double t_opt = compute_memory_time(&hw, local * OPT_BYTES_PER_PARAM) +
                       2 * comm_time(&hw, COLL_ALL_REDUCE, &x.g[GROUP_DP_CP], 8);
        if (t_opt > opt_max) opt_max = t_opt;
    }
    double step = end_max + opt_max + ag_max;

    /* ---- result ---- */
    out->step_time_s = step;
    double tokens = (double)tc->global_batch * tc->seq_len;
    double f_leg = model_flops(md, FLOPS_LEGACY, tc->seq_len, tokens);
    double f_meg = model_flops(md, FLOPS_MEGATRON, tc->seq_len, tokens);
    double denom = step * map->world * plan->cluster.peak_bf16_flops;
    out->mfu_legacy = f_leg / denom;
    out->mfu_megatron = f_meg / denom;
    out->mfu = tc->flops == FLOPS_MEGATRON ? out->mfu_megatron : out->mfu_legacy;
    /* No step can run faster than the FLOPs it must execute at the peak: an
     * MFU above 100% on those is a bug in this cost model, never a result.
     * Above 100% on the chosen convention only (legacy counts the masked half
     * of causal attention; both count sliding-window layers as full causal
     * attention) means the convention overcounts at this length: refused,
     * with the reason, rather than shown. */
    /* the ceiling is the peak of the precision the GEMMs run in: an FP8 plan
     * may exceed 100% of the BF16 peak that the MFU conventions use */
    double ceiling = tc->precision == PRECISION_FP8 && plan->cluster.peak_fp8_flops > plan->cluster.peak_bf16_flops
                         ? plan->cluster.peak_fp8_flops : plan->cluster.peak_bf16_flops;
    double to_ceiling = plan->cluster.peak_bf16_flops / ceiling;
    double mfu_exec = model_flops_executed(md, tc->seq_len, tokens) / denom * to_ceiling;
    if (!isfinite(step) || step <= 0)
        return mp_fail(err, "internal error: the simulated step time is %g s; this is a bug in the cost model "
                       "(or an input figure outside its checked range), please report the plan", step);
    if (!isfinite(mfu_exec) || !isfinite(out->mfu) || mfu_exec > 1.0 + 1e-9)
        return mp_fail(err, "internal error: the simulated step (%.6g s) would run the FLOPs it must execute at "
                       "%.1f%% of the peak %.1f TFLOP/s; this is a bug in the cost model, please report the plan",
                       step, 100 * mfu_exec, ceiling / 1e12);
    if (out->mfu * to_ceiling > 1.0)
        return mp_fail(err, "flops: the %s convention counts %s, so at seq %d its MFU would be %.1f%% of the peak "
                       "(%.1f%% on the FLOPs that execute)%s", flops_convention_name(tc->flops),
                       tc->flops == FLOPS_LEGACY ? "the full s x s attention matrix (causal attention executes half of it)"
                                                 : "sliding-window layers as full causal attention",
                       tc->seq_len, 100 * out->mfu * to_ceiling, 100 * mfu_exec,
                       tc->flops == FLOPS_LEGACY && out->mfu_megatron <= 1.0 ? "; use --flops megatron" : "");
    out->tflops_per_gpu = out->mfu * plan->cluster.peak_bf16_flops / 1e12;
    out->tokens_per_s_per_gpu = tokens / step / map->world;

    /* memory per stage */
    out->num_stages = pp;
    out->memory_capacity_bytes = plan->cluster.hbm_bytes - tc->memory_reserve_bytes;
    out->peak_memory_bytes = 0;
    out->fits = true;
    for (int r = 0; r < pp; r++) {
        StageMemInput in;
        in.dense_params = rank_dense[r];
        in.expert_params = rank_exp[r];
        in.inflight = pipeline_inflight(pp, v, pr.simulated_microbatches < m ? m : m, r);
        in.act_per_chunk = rank_act[r] / v;
        /* held once: the last stage's logits, the full-recompute working
         * layer, and the CP ring's buffers while a layer's attention runs */
        in.act_extra = (r == pp - 1 ? memory_output_activations(&x) : 0) +
                       (tc->recompute == RECOMPUTE_FULL ? rank_act_work[r] : 0) + ring_working_bytes(&x);
        double max_layer_p = 0;
        for (int lv = 0; lv < LV_COUNT; lv++)
            if (lt.used[lv] && lt.dense_params[lv] + lt.expert_params[lv] > max_layer_p)
                max_layer_p = lt.dense_params[lv] + lt.expert_params[lv];
        in.fsdp_working = tc->opt_sharding == OPT_SHARD_FULL ? 2 * max_layer_p * (BF16 + 4) : 0;
        memory_stage(&x, &in, &out->stage_memory[r]);
        if (out->stage_memory[r].total > out->peak_memory_bytes) out->peak_memory_bytes = out->stage_memory[r].total;
        if (out->stage_memory[r].total > out->memory_capacity_bytes) out->fits = false;
    }

    /* breakdown on the rank with the most work */
    int rs = 0;
    for (int r = 1; r < pp; r++)
        if (pr.rank_busy[r] > pr.rank_busy[rs]) rs = r;
    double acc[COST_KIND_COUNT] = {0};
    layer = 0;
    for (int vs = 0; vs < V; vs++) {
        int nl = layout_vstage_layers(plan, vs);
        if (vs % pp == rs) {
            for (int i = layer; i < layer + nl; i++) {
                int lv = layer_variant(md, i);
                add_kinds(acc, &lt.f[lv], m);
                add_kinds(acc, &lt.b[lv], m);
            }
            if (vs == 0) { add_kinds(acc, &lt.emb_f, m); add_kinds(acc, &lt.emb_b, m); }
            if (vs == V - 1) { add_kinds(acc, &lt.out_f, m); add_kinds(acc, &lt.out_b, m); }
            if (blocking && pp > 1) acc[COST_PP] += m * p2p * ((vs < V - 1) + (vs > 0));
        }
        layer += nl;
    }
    acc[COST_DP] += grad_exposed[rs] * grad_dense_share[rs] + ag_max * ag_dense_share;
    acc[COST_EDP] += grad_exposed[rs] * (1 - grad_dense_share[rs]) + ag_max * (1 - ag_dense_share);
    acc[COST_OPTIMIZER] = opt_max;
    double sum = 0;
    for (int k = 0; k < COST_KIND_COUNT; k++) if (k != COST_BUBBLE) sum += acc[k];
    acc[COST_BUBBLE] = step - sum > 0 ? step - sum : 0;
    SimBreakdown *bd = &out->breakdown;
    bd->compute_attention = acc[COST_ATTENTION];
    bd->compute_moe = acc[COST_MOE];
    bd->compute_dense_mlp = acc[COST_DENSE_MLP];
    bd->compute_embed_output = acc[COST_EMBED_OUTPUT];
    bd->compute_memory_bound = acc[COST_MEMORY_BOUND];
    bd->recompute = acc[COST_RECOMPUTE];
    bd->comm_tp = acc[COST_TP]; bd->comm_cp = acc[COST_CP]; bd->comm_ep = acc[COST_EP]; bd->comm_etp = acc[COST_ETP];
    bd->comm_pp = acc[COST_PP]; bd->comm_dp = acc[COST_DP]; bd->comm_edp = acc[COST_EDP];
    bd->bubble = acc[COST_BUBBLE];
    bd->optimizer = acc[COST_OPTIMIZER];
    out->critical_stage = rs;

    /* the largest non-compute cost, in words */
    int dom = -1;
    for (int k = COST_TP; k < COST_KIND_COUNT; k++)
        if (dom < 0 || acc[k] > acc[dom]) dom = k;
    bool crosses = (dom >= COST_TP && dom <= COST_EDP) && x.g[kind_group[dom]].nodes > 1;
    snprintf(out->dominant, sizeof out->dominant, "%s%s: %.1f%% of the step", kind_words[dom],
             crosses ? " (crosses nodes)" : "", 100.0 * acc[dom] / step);

    /* ---- timeline (outside the hot path): the ops of every pipeline stage,
     * the kernels and collectives inside them for the critical stage rs
     * (every stage's kernels would make the trace pp times larger for
     * little: the other stages run the same layers), each stage's tail ---- */
    if (opt && (opt->timeline_path || opt->timeline_png_path)) {
        int max_ev = 2 * m * v;
        PipeEvent *ev = malloc(sizeof *ev * (size_t)max_ev);
        PipeResult *pr2 = malloc(sizeof *pr2);
        size_t kern = (size_t)max_ev * (size_t)(md->num_layers / V + 2) * (2 * PHASE_MAX_SEGS);
        size_t cap = (size_t)pp * ((size_t)max_ev + 4) + kern + 16;
        TraceSlice *sl = malloc(sizeof *sl * cap);
        char (*names)[32] = malloc(32 * (size_t)max_ev * (size_t)pp);
        if (!ev || !pr2 || !sl || !names) { free(ev); free(pr2); free(sl); free(names); return mp_fail(err, "timeline: out of memory"); }
        size_t ns = 0, nn = 0;
        for (int st = 0; st < pp; st++) {
            int nev = 0;
            if (pipeline_simulate(pp, v, m, fwd, bwd, p2p, blocking, pr2, st, ev, max_ev, &nev, err)) {
                free(ev); free(pr2); free(sl); free(names);
                return -1;
            }
            for (int i = 0; i < nev; i++) {
                const PipeEvent *e = &ev[i];
                int vs = e->chunk * pp + st;
                snprintf(names[nn], 32, "%s mb%d c%d", e->fwd ? "F" : "B", e->mb, e->chunk);
                sl[ns++] = (TraceSlice){names[nn++], e->fwd ? "forward" : "backward", st, 0, e->start, e->end - e->start,
                                        e->mb, e->chunk};
                if (st != rs) continue;
                int first = layout_vstage_first_layer(plan, vs);
                int nl = layout_vstage_layers(plan, vs);
                double t = e->start;
                const Phase *seq[3 + 256];
                int np = 0;
                if (e->fwd) {
                    if (vs == 0) seq[np++] = &lt.emb_f;
                    for (int l = 0; l < nl && np < 256; l++) seq[np++] = &lt.f[layer_variant(md, first + l)];
                    if (vs == V - 1) seq[np++] = &lt.out_f;
                } else {
                    if (vs == V - 1) seq[np++] = &lt.out_b;
                    for (int l = nl - 1; l >= 0 && np < 256; l--) seq[np++] = &lt.b[layer_variant(md, first + l)];
                    if (vs == 0) seq[np++] = &lt.emb_b;
                }
                for (int q = 0; q < np; q++)
                    for (int j = 0; j < seq[q]->n && ns < cap - 4 * (size_t)pp - 8; j++) {
                        const PhaseSeg *sg = &seq[q]->seg[j];
                        sl[ns++] = (TraceSlice){sg->name, kind_words[sg->kind], st, 1, t, sg->t, -1, -1};
                        t += sg->t;
                    }
            }
            if (grad_exposed[st] > 0)
                sl[ns++] = (TraceSlice){"gradient sync (exposed)", "dp", st, 2, pr.rank_end[st], grad_exposed[st], -1, -1};
            sl[ns++] = (TraceSlice){"optimizer step", "optimizer", st, 2, end_max, opt_max, -1, -1};
            if (ag_max > 0)
                sl[ns++] = (TraceSlice){"parameter all-gather (exposed)", "dp", st, 2, end_max + opt_max, ag_max, -1, -1};
        }
        char title[200];
        snprintf(title, sizeof title, "%s on %d GPUs: PP%d%s%.0d, %d micro-batches, kernels of stage %d", md->name,
                 map->world, pp, v > 1 ? "v" : "", v > 1 ? v : 0, m, rs);
        int rc = 0;
        if (opt->timeline_path) rc = timeline_write(opt->timeline_path, title, sl, (int)ns, pp, err);
        if (!rc && opt->timeline_png_path) {
            snprintf(title, sizeof title, "%s on %d GPUs: PP%d%s%.0d, %d micro-batches, step %.3f s", md->name,
                     map->world, pp, v > 1 ? "v" : "", v > 1 ? v : 0, m, step);
            rc = timeline_png_write(opt->timeline_png_path, title, sl, (int)ns, pp, v, err);
        }
        free(ev); free(pr2); free(sl); free(names);
        if (rc) return -1;
    }
    /* ---- the operations of one rank (execute prints them beside its own) ---- */
    if (opt && opt->events && opt->max_events > 0) {
        PipeEvent *ev = malloc(sizeof *ev * (size_t)opt->max_events);
        PipeResult *pr2 = malloc(sizeof *pr2);
        int nev = 0, r = opt->events_rank >= 0 && opt->events_rank < pp ? opt->events_rank : 0;
        if (!ev || !pr2) { free(ev); free(pr2); return mp_fail(err, "events: out of memory"); }
        if (pipeline_simulate(pp, v, m, fwd, bwd, p2p, blocking, pr2, r, ev, opt->max_events, &nev, err)) {
            free(ev); free(pr2);
            return -1;
        }
        for (int i = 0; i < nev; i++)
            opt->events[i] = (SimOpEvent){ev[i].start, ev[i].end, ev[i].mb, ev[i].chunk, ev[i].fwd};
        if (opt->num_events) *opt->num_events = nev;
        free(ev); free(pr2);
    }
    return 0;
}
