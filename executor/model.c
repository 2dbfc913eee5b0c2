/* model.c: the MoE transformer of the training step (model.h): its
 * parameter table (params.c), its layers (layer.c) grouped into the chunks
 * of this rank's pipeline stage (chunk.c: one chunk per virtual stage; no
 * pipeline is the one-chunk case), and the micro-batch contexts the
 * schedule keeps in flight per chunk (core/schedule.h). */
#include "executor/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layout.h"
#include "core/schedule.h"
#include "executor/chunk.h"
#include "executor/pool.h"

/* uniform init half-width: std 0.02 (GPT-2 / Megatron init_method_std) = a/sqrt(3) */
#define MODEL_INIT_HALF_WIDTH (0.02f * 1.7320508f)

struct Model {
    ModelSpec spec;
    Backend *be;
    ParamStore ps;
    StepEnv env;
    Layer *layers;                      /* [L]: this rank's layers are set */
    int pp, stage, vpp;                 /* pipeline: stages, this rank's stage, chunks per rank */
    int micro_batches;                  /* per step on this rank (schedule) */
    Chunk *chunk;                       /* [vpp]: chunk c = virtual stage c*PP + stage */
    int *nslots;                        /* [vpp] micro-batch contexts of each chunk */
    MicroBatch **slot;                  /* [vpp][nslots[c]] */
    int last_chunk, last_slot;          /* of the last forward */
    int tied;                           /* tied embedding grads summed over the PP group */
    int tied_param;                     /* its index here (first / last stage), -1 */
    float *tied_zero;                   /* middle stages: f32 [V*h] zeros for that all-reduce */
};

/* ---- specs -------------------------------------------------------------- */

int model_spec_tiny(const char *name, ModelSpec *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->num_layers = 2; o->hidden = 64; o->num_heads = 4; o->num_kv_groups = 2; o->head_dim = 16;
    o->num_experts = 8; o->top_k = 2; o->expert_ffn = 96; o->vocab = 128;
    o->swiglu = true; o->router = ROUTER_SOFTMAX;
    if (!strcmp(name, "tiny-moe")) return 0;
    if (!strcmp(name, "tiny-moe-tied")) { o->tied_embeddings = true; return 0; }
    if (!strcmp(name, "tiny-moe-gpu")) { o->hidden = 128; o->head_dim = 64; return 0; }
    if (!strcmp(name, "tiny-moe-shared")) {
        o->num_layers = 3; o->num_dense_layers = 1; o->dense_ffn = 128; o->shared_ffn = 64;
        return 0;
    }
    return -1;
}

/* ---- creation ----------------------------------------------------------- */

static int check_supported(const Plan *plan, MpError *err)
{
    const ModelSpec *s = &plan->model;
    const Mapping *mp = &plan->map;
    int tp = mp->tp, T = plan->train.micro_batch * plan->train.seq_len;
    if (tp < 1) return mp_fail(err, "tp: %d: must be at least 1", tp);
    if (plan->train.opt_sharding == OPT_SHARD_FULL)
        return mp_fail(err, "optimizer_sharding: full: fully sharded parameters (FSDP) are not implemented in the executor (use distributed or none)");
    int cp = mp->cp > 0 ? mp->cp : 1;
    if (cp > 1 && plan->train.seq_len % (2 * cp))
        return mp_fail(err, "cp: %d: seq_len %d is not a multiple of 2*cp = %d (load-balanced chunks)", cp, plan->train.seq_len, 2 * cp);
    T /= cp;   /* this rank's tokens of a micro-batch */
    if (s->mla) return mp_fail(err, "model: %s: multi-head latent attention is not implemented in the executor", s->name);
    if (s->sliding_window) return mp_fail(err, "model: %s: sliding-window attention is not implemented in the executor", s->name);
    if (s->num_experts > 0 && s->router != ROUTER_SOFTMAX) return mp_fail(err, "model: %s: only the softmax router is implemented in the executor", s->name);
    if (!s->swiglu) return mp_fail(err, "model: %s: only SwiGLU MLPs are implemented in the executor", s->name);
    if (s->num_experts <= 0) return mp_fail(err, "model: %s: the executor runs MoE models only", s->name);
    if (s->num_experts > 256) return mp_fail(err, "model: %s: num_experts %d: the executor supports at most 256 experts", s->name, s->num_experts);
    if (s->num_kv_groups <= 0 || s->num_heads % s->num_kv_groups) return mp_fail(err, "num_kv_groups: %d does not divide num_heads %d", s->num_kv_groups, s->num_heads);
    if (s->head_dim % 2) return mp_fail(err, "head_dim: %d: RoPE needs an even head dimension", s->head_dim);
    if (s->num_experts % mp->ep) return mp_fail(err, "ep: %d does not divide num_experts %d", mp->ep, s->num_experts);
    if (s->expert_ffn % mp->etp) return mp_fail(err, "etp: %d does not divide expert_ffn %d", mp->etp, s->expert_ffn);
    if (plan->train.seq_len <= 0 || plan->train.micro_batch <= 0) return mp_fail(err, "seq: sequence length and micro-batch must be positive");
    /* tensor parallelism: Megatron's splits (heads, KV groups or their
     * replicas, vocabulary, FFN columns, sequence-parallel tokens) */
    if (s->num_heads % tp) return mp_fail(err, "tp: %d does not divide num_heads %d", tp, s->num_heads);
    if (s->num_kv_groups % tp && tp % s->num_kv_groups)
        return mp_fail(err, "tp: %d: num_kv_groups %d must be a multiple or a divisor of tp (KV groups are split or replicated)", tp, s->num_kv_groups);
    if (s->vocab % tp) return mp_fail(err, "tp: %d does not divide vocab %d (vocabulary-parallel embedding and loss)", tp, s->vocab);
    if (T % tp) return mp_fail(err, "tp: %d does not divide the micro-batch's %d tokens (sequence parallelism)", tp, T);
    if (s->dense_ffn % tp) return mp_fail(err, "tp: %d does not divide dense_ffn %d", tp, s->dense_ffn);
    if (s->shared_ffn % tp) return mp_fail(err, "tp: %d does not divide shared_ffn %d", tp, s->shared_ffn);
    return 0;
}

static int add(Model *m, const char *name, int uid, ParamKind kind, ParamShard shard, int parts,
               int part, size_t n, float scale, float value)
{
    int i = params_add(&m->ps, name, uid, kind, shard, parts, part, n, scale, value);
    if (i < 0) m->env.failed = 1;
    return i;
}

/* tensor-parallel shards (nothing to describe with tp 1: local = full) */
static void split_rows(Model *m, int p, int rows, int lrows, int row0, int cols)
{
    if (p < 0 || m->env.dim.tp == 1) return;
    params_set_split(&m->ps, p, 1, &rows, &lrows, &row0, cols, cols, 0);
}
static void split_cols(Model *m, int p, int rows, int cols, int lcols, int col0)
{
    if (p < 0 || m->env.dim.tp == 1) return;
    params_set_split(&m->ps, p, 1, &rows, &rows, (int[]){0}, cols, lcols, col0);
}
/* [gate F | up F] x h: each half split over TP */
static void split_gate_up(Model *m, int p, int F, int Fl, int tp_rank, int h)
{
    if (p < 0 || m->env.dim.tp == 1) return;
    int full[2] = {F, F}, loc[2] = {Fl, Fl}, first[2] = {tp_rank * Fl, tp_rank * Fl};
    params_set_split(&m->ps, p, 2, full, loc, first, h, h, 0);
}

/* Micro-batches of one step on this rank, m = GBS / (MBS * DP), and the
 * pipeline's checks on the plan: the layers of every virtual stage add up
 * to the model's (layout.h), and the interleaved schedule's m (Megatron:
 * the number of micro-batches must be a multiple of the pipeline size). */
static int pipeline_shape(const Plan *plan, int L, int dp, int *m, MpError *err)
{
    const Mapping *mp = &plan->map;
    int pp = mp->pp > 0 ? mp->pp : 1, vpp = mp->vpp > 0 ? mp->vpp : 1;
    int B = plan->train.global_batch, b = plan->train.micro_batch;
    *m = 1;
    if (pp == 1 && vpp == 1) {
        if (B > 0 && b > 0 && B % (b * dp) == 0) *m = B / (b * dp);
        return 0;
    }
    if (pp == 1) return mp_fail(err, "vpp: %d: virtual pipeline stages need pp > 1", vpp);
    if (B <= 0 || b <= 0 || B % (b * dp))
        return mp_fail(err, "gbs: global batch %d is not a multiple of micro-batch %d x DP %d", B, b, dp);
    *m = B / (b * dp);
    if (vpp > 1 && *m % pp)
        return mp_fail(err, "gbs: the interleaved schedule (vpp %d) needs the number of micro-batches per step "
                       "(%d = gbs %d / (mbs %d x DP %d)) to be a multiple of pp %d (Megatron-LM's constraint)",
                       vpp, *m, B, b, dp, pp);
    Plan q = *plan;
    q.model.num_layers = L;
    int sum = 0;
    for (int vs = 0; vs < pp * vpp; vs++) {
        int n = layout_vstage_layers(&q, vs);
        if (n < 1)
            return mp_fail(err, "pp: virtual stage %d (stage %d, chunk %d) gets no layer of the %d", vs, vs % pp,
                           vs / pp, L);
        sum += n;
    }
    if (sum != L)
        return mp_fail(err, "pp: the stages' layers (%d in all: first_stage_layers %d, last_stage_layers %d, pp %d) "
                       "do not add up to the %d layers run", sum, plan->first_stage_layers,
                       plan->last_stage_layers, pp, L);
    return 0;
}

/* the parameters of layer l */
static void add_layer(Model *m, int l, int tp, int tp_rank)
{
    const ModelSpec *s = &m->spec;
    ModelDims *d = &m->env.dim;
    size_t h = (size_t)d->h;
    float a = MODEL_INIT_HALF_WIDTH;
    char nm[40];
    Layer *y = &m->layers[l];
    int u = 16 * (l + 1);
    y->env = &m->env;
    y->index = l;
    y->moe = layout_layer_kind(s, l) == LAYER_MOE;
    y->router = y->w13 = y->w2 = y->sh13 = y->sh2 = y->d13 = y->d2 = -1;
#define NAME(x) (snprintf(nm, sizeof nm, "layer%d.%s", l, x), nm)
    y->attn_norm = add(m, NAME("attn_norm"), u + 0, PARAM_PLAIN, SHARD_REPLICATED, 1, 0, h, 0, 1);
    y->wqkv = add(m, NAME("wqkv"), u + 1, PARAM_PLAIN, SHARD_COLUMN, tp, tp_rank,
                  (size_t)d->qkvwl * h, a, 0);
    if (tp > 1 && y->wqkv >= 0) {   /* [q heads | k groups | v groups] x h, each section split */
        int full[3] = {d->n * d->d, d->g * d->d, d->g * d->d};
        int loc[3] = {d->nl * d->d, d->gl * d->d, d->gl * d->d};
        int first[3] = {tp_rank * d->nl * d->d, d->kvg0 * d->d, d->kvg0 * d->d};
        params_set_split(&m->ps, y->wqkv, 3, full, loc, first, d->h, d->h, 0);
    }
    y->wo = add(m, NAME("wo"), u + 2, PARAM_PLAIN, SHARD_ROW, tp, tp_rank,
                h * (size_t)(d->nl * d->d), a, 0);
    split_cols(m, y->wo, d->h, d->n * d->d, d->nl * d->d, tp_rank * d->nl * d->d);
    y->mlp_norm = add(m, NAME("mlp_norm"), u + 3, PARAM_PLAIN, SHARD_REPLICATED, 1, 0, h, 0, 1);
    if (y->moe) {
        y->router = add(m, NAME("router"), u + 4, PARAM_PLAIN, SHARD_REPLICATED, 1, 0,
                        (size_t)d->E * h, a, 0);
        y->w13 = add(m, NAME("experts.w13"), u + 5, PARAM_W13, SHARD_EXPERT_COLUMN, d->etp,
                     d->etp_rank, (size_t)d->El * 2 * d->Fl * h, a, 0);
        y->w2 = add(m, NAME("experts.w2"), u + 7, PARAM_W2, SHARD_EXPERT_ROW, d->etp,
                    d->etp_rank, (size_t)d->El * h * d->Fl, a, 0);
        if (s->shared_ffn > 0) {
            y->sh13 = add(m, NAME("shared.w13"), u + 8, PARAM_PLAIN, SHARD_COLUMN, tp, tp_rank,
                          2 * (size_t)d->sffl * h, a, 0);
            split_gate_up(m, y->sh13, s->shared_ffn, d->sffl, tp_rank, d->h);
            y->sh2 = add(m, NAME("shared.w2"), u + 9, PARAM_PLAIN, SHARD_ROW, tp, tp_rank,
                         h * (size_t)d->sffl, a, 0);
            split_cols(m, y->sh2, d->h, s->shared_ffn, d->sffl, tp_rank * d->sffl);
        }
    } else {
        y->d13 = add(m, NAME("mlp.w13"), u + 10, PARAM_PLAIN, SHARD_COLUMN, tp, tp_rank,
                     2 * (size_t)d->dffl * h, a, 0);
        split_gate_up(m, y->d13, s->dense_ffn, d->dffl, tp_rank, d->h);
        y->d2 = add(m, NAME("mlp.w2"), u + 11, PARAM_PLAIN, SHARD_ROW, tp, tp_rank,
                    h * (size_t)d->dffl, a, 0);
        split_cols(m, y->d2, d->h, s->dense_ffn, d->dffl, tp_rank * d->dffl);
    }
#undef NAME
}

/* the micro-batch contexts chunk c needs (core/schedule.h) */
static int chunk_contexts(const Model *m, int c)
{
    PipeSchedule sc = {m->pp, m->vpp, m->micro_batches};
    return schedule_chunk_contexts(&sc, m->stage, c);
}

int model_create(const Plan *plan, int layers, uint64_t seed, Backend *be, Model **out,
                 MpError *err)
{
    if (check_supported(plan, err)) return -1;
    const ModelSpec *s = &plan->model;
    const ExecComms *c = be->comms;
    if (c->size_of[GROUP_EP] != plan->map.ep || c->size_of[GROUP_ETP] != plan->map.etp ||
        c->size_of[GROUP_TP] != plan->map.tp)
        return mp_fail(err, "comms: group sizes (tp %d, ep %d, etp %d) differ from the plan's (tp %d, ep %d, etp %d)",
                       c->size_of[GROUP_TP], c->size_of[GROUP_EP], c->size_of[GROUP_ETP], plan->map.tp,
                       plan->map.ep, plan->map.etp);
    int pp = plan->map.pp > 0 ? plan->map.pp : 1, vpp = plan->map.vpp > 0 ? plan->map.vpp : 1;
    if (c->size_of[GROUP_PP] != pp)
        return mp_fail(err, "comms: the pipeline group has %d members, the plan's pp is %d",
                       c->size_of[GROUP_PP], pp);
    int L = (layers > 0 && layers < s->num_layers) ? layers : s->num_layers, micro_batches;
    if (pipeline_shape(plan, L, c->size_of[GROUP_DP], &micro_batches, err)) return -1;
    Model *m = calloc(1, sizeof *m);
    if (!m) return mp_fail(err, "executor: out of host memory");
    m->spec = *s; m->be = be;
    m->pp = pp; m->vpp = vpp; m->stage = c->rank_in[GROUP_PP]; m->micro_batches = micro_batches;
    m->tied_param = -1;
    StepEnv *env = &m->env;
    ModelDims *d = &env->dim;
    env->be = be; env->ps = &m->ps;
    env->overlap_cp = (plan->train.overlap & OVERLAP_CP) != 0;
    d->L = L;
    d->b = plan->train.micro_batch; d->s = plan->train.seq_len;
    d->cp = plan->map.cp > 1 ? plan->map.cp : 1; d->cp_rank = c->rank_in[GROUP_CP];
    d->c = d->s / (2 * d->cp); d->T = d->b * d->s / d->cp;
    d->h = s->hidden; d->n = s->num_heads; d->g = s->num_kv_groups; d->d = s->head_dim;
    d->qkvw = (d->n + 2 * d->g) * d->d;
    d->V = s->vocab;
    d->E = s->num_experts; d->k = s->top_k; d->ep = plan->map.ep; d->etp = plan->map.etp;
    d->El = d->E / d->ep; d->Fe = s->expert_ffn; d->Fl = d->Fe / d->etp;
    d->etp_rank = c->rank_in[GROUP_ETP];
    d->dense_ffn = s->dense_ffn; d->shared_ffn = s->shared_ffn;
    d->cf = plan->train.capacity_factor;
    int ep_rank = c->rank_in[GROUP_EP], tp = plan->map.tp, tp_rank = c->rank_in[GROUP_TP];
    d->tp = tp; d->tp_rank = tp_rank; d->Ts = d->T / tp;
    d->nl = d->n / tp;
    /* KV groups: split when tp divides them, else each rank holds the one
     * group its query heads use (replicated over tp / g ranks) */
    d->gl = d->g >= tp ? d->g / tp : 1;
    d->kvg0 = d->g >= tp ? tp_rank * d->gl : tp_rank / (tp / d->g);
    d->qkvwl = (d->nl + 2 * d->gl) * d->d;
    d->Vl = d->V / tp; d->v0 = tp_rank * d->Vl;
    d->dffl = d->dense_ffn / tp; d->sffl = d->shared_ffn / tp;
    params_init(&m->ps, be, seed, d->h, d->Fe, d->Fl, ep_rank * d->El, d->etp_rank * d->Fl);
    m->ps.distributed = plan->train.opt_sharding == OPT_SHARD_DISTRIBUTED;
    /* gradient buckets (params.h) when an overlap asks for them: Megatron
     * buckets of 40M parameters need a large model; the bucket here is
     * MODEL_BUCKET_BYTES of fp32 gradient (10M elements = 40 MB on the
     * GPU), and 16 Ki elements (64 KiB) on the CPU backend, so that the
     * tiny test models get several buckets per arena */
    m->ps.overlap_grad = (plan->train.overlap & OVERLAP_GRAD) != 0;
    m->ps.overlap_param = (plan->train.overlap & OVERLAP_PARAM) != 0;
    if (m->ps.overlap_grad || m->ps.overlap_param)
        m->ps.bucket_elems = be->act_bytes == 4 ? MODEL_BUCKET_ELEMS_CPU : MODEL_BUCKET_ELEMS_GPU;
    m->ps.num_layers = d->L;
    m->ps.micro_batches = m->micro_batches;

    m->chunk = calloc((size_t)vpp, sizeof(Chunk));
    m->nslots = calloc((size_t)vpp, sizeof(int));
    m->slot = calloc((size_t)vpp, sizeof(MicroBatch *));
    m->layers = calloc((size_t)d->L, sizeof(Layer));
    if (!m->chunk || !m->nslots || !m->slot || !m->layers) {
        model_destroy(m);
        return mp_fail(err, "executor: out of host memory");
    }
    /* the chunks: virtual stage vs = c*PP + stage holds layers
     * [layout_vstage_first_layer, + layout_vstage_layers) of the run's L */
    Plan q = *plan;
    q.model.num_layers = d->L;
    int first = m->stage == 0, last = m->stage == pp - 1;
    for (int k = 0; k < vpp; k++) {
        Chunk *ch = &m->chunk[k];
        int vs = k * pp + m->stage;
        ch->env = env;
        ch->layers = m->layers;
        ch->l0 = pp == 1 ? 0 : layout_vstage_first_layer(&q, vs);
        ch->l1 = pp == 1 ? d->L : ch->l0 + layout_vstage_layers(&q, vs);
        ch->first = first && k == 0;
        ch->last = last && k == vpp - 1;
        ch->emb = ch->final_norm = ch->out = -1;
    }
    /* parameters: embedding (first stage), final norm and output layer (last
     * stage), then the layers of each chunk; with one stage the order of
     * before the pipeline (the arenas, hence the runs, are unchanged) */
    size_t h = (size_t)d->h, V = (size_t)d->V;
    float a = MODEL_INIT_HALF_WIDTH;
    size_t Vl = (size_t)d->Vl;
    (void)V;
    Chunk *c0 = &m->chunk[0], *cl = &m->chunk[vpp - 1];
    m->ps.cur_layer = -1;   /* ParamInfo.layer: embedding -1, head L, layers l */
    if (first) {
        c0->emb = add(m, "embedding", 0, PARAM_PLAIN, SHARD_VOCAB, tp, tp_rank, Vl * h, a, 0);
        split_rows(m, c0->emb, d->V, d->Vl, d->v0, d->h);
    }
    m->ps.cur_layer = d->L;
    if (last) {
        cl->final_norm = add(m, "final_norm", 1, PARAM_PLAIN, SHARD_REPLICATED, 1, 0, h, 0, 1);
        if (!s->tied_embeddings) {
            cl->out = add(m, "output", 2, PARAM_PLAIN, SHARD_VOCAB, tp, tp_rank, Vl * h, a, 0);
            split_rows(m, cl->out, d->V, d->Vl, d->v0, d->h);
        } else if (first) {
            cl->out = c0->emb;
        } else {   /* the last stage's copy of the tied embedding (same id, same values) */
            cl->out = add(m, "embedding", 0, PARAM_PLAIN, SHARD_VOCAB, tp, tp_rank, Vl * h, a, 0);
            split_rows(m, cl->out, d->V, d->Vl, d->v0, d->h);
        }
    }
    if (s->tied_embeddings && pp > 1) {
        m->tied = 1;
        m->tied_param = first ? c0->emb : last ? cl->out : -1;
    }
    for (int k = 0; k < vpp; k++)
        for (int l = m->chunk[k].l0; l < m->chunk[k].l1; l++) {
            m->ps.cur_layer = l;
            add_layer(m, l, tp, tp_rank);
        }
    if (env->failed) { model_destroy(m); return mp_fail(err, "executor: out of host memory"); }
    if (params_allocate(&m->ps, err) || be->status(be, err)) { model_destroy(m); return -1; }
    /* the tied embedding's gradient is summed over PP before its bucket moves */
    if (m->tied && m->tied_param >= 0) params_hold_bucket_of(&m->ps, m->tied_param);
    be->mem_category(be, MEM_COMM);   /* the middle stages' zeros for the tied all-reduce */
    if (m->tied && m->tied_param < 0) m->tied_zero = be->alloc(be, Vl * h * sizeof(float));
    be->mem_category(be, MEM_ACTIVATIONS);
    if (m->tied && m->tied_param < 0 && !m->tied_zero) {
        model_destroy(m);
        return mp_fail(err, "executor: device memory: the tied-embedding buffer does not fit");
    }

    /* micro-batch contexts: as many per chunk as the schedule keeps in flight */
    for (int k = 0; k < vpp; k++) {
        int n = chunk_contexts(m, k);
        m->slot[k] = calloc((size_t)n, sizeof(MicroBatch));
        if (!m->slot[k]) { model_destroy(m); return mp_fail(err, "executor: out of host memory"); }
        m->nslots[k] = n;
        for (int i = 0; i < n; i++)
            if (micro_batch_init(&m->slot[k][i], &m->chunk[k])) {
                model_destroy(m);
                return mp_fail(err, "executor: out of host memory");
            }
    }
    /* every buffer of the step, before the first step (pool.h); first the
     * backward's MLP gradients at the largest of the rank's layers */
    size_t big1 = 0, big2 = 0;
    for (int k = 0; k < vpp; k++)
        for (int l = m->chunk[k].l0; l < m->chunk[k].l1; l++) {
            size_t b1, b2;
            layer_mlp_grad_bytes(&m->layers[l], &b1, &b2);
            if (b1 > big1) big1 = b1;
            if (b2 > big2) big2 = b2;
        }
    if (big1) buf_get(env, &env->bwd.big1, big1);
    if (big2) buf_get(env, &env->bwd.big2, big2);
    for (int k = 0; k < vpp; k++)
        for (int i = 0; i < m->nslots[k]; i++) chunk_reserve(&m->chunk[k], &m->slot[k][i]);
    if (env->failed) {
        size_t bytes = env->failed_bytes;
        model_destroy(m);
        return mp_fail(err, "executor: device memory: the step's buffers do not fit (an allocation of %zu bytes failed)", bytes);
    }

    int32_t *pos = malloc(sizeof(int32_t) * (size_t)d->T);
    void *pos_dev = buf_get(env, &env->pos, sizeof(int32_t) * (size_t)d->T);
    env->loss_acc = be->alloc(be, 2 * sizeof(float));
    env->h_idx = malloc(sizeof(int32_t) * (size_t)d->T * d->k);
    env->h_kept = calloc((size_t)d->E, sizeof(int32_t));
    env->a2a = malloc(sizeof(size_t) * 4 * (size_t)d->ep);
    env->h_ids = malloc(sizeof(int32_t) * (size_t)d->T);
    if (!pos || !pos_dev || !env->loss_acc || !env->h_idx || !env->h_kept || !env->a2a || !env->h_ids) {
        free(pos);
        model_destroy(m);
        return mp_fail(err, "executor: out of memory");
    }
    /* positions: the local tokens' places in their sequence (zig-zag chunks
     * with cp > 1, core/layout.h) */
    if (layout_cp_position_ids(d->s, d->cp, d->cp_rank, pos, err)) {
        free(pos);
        model_destroy(m);
        return -1;
    }
    for (int t = d->T / d->b; t < d->T; t++) pos[t] = pos[t % (d->T / d->b)];
    be->upload(be, pos_dev, pos, sizeof(int32_t) * (size_t)d->T);
    free(pos);
    *out = m;
    return 0;
}

void model_set_aux_loss_coeff(Model *m, float coeff) { m->env.aux_coeff = coeff > 0 ? coeff : 0; }

void model_dispatch_counts(const Model *m, long *dispatches, long *padded)
{
    *dispatches = m->env.dispatches;
    *padded = m->env.padded_dispatches;
}

bool model_set_expert_gemm(Model *m, ExecExpertGemm mode)
{
    m->env.pad_expert_groups = mode == EXEC_EXPERT_GEMM_PADDED ||
                               (mode == EXEC_EXPERT_GEMM_AUTO && m->env.dim.El >= EXEC_PAD_MIN_EXPERTS);
    return m->env.pad_expert_groups;
}

void model_set_routing_trace(Model *m, int32_t *trace, int force)
{
    for (int k = 0; k < m->vpp; k++)
        for (int i = 0; i < m->nslots[k]; i++) {
            m->slot[k][i].route.trace = trace;
            m->slot[k][i].route.force = force;
        }
}

long model_route_flips(const Model *m) { return m->env.route_flips; }

void model_reduce_losses(Model *m, GroupKind g)
{
    Backend *be = m->be;
    if (be->comms->size_of[g] > 1) be->all_reduce(be, m->env.loss_acc, 2, DT_F32, g);
}

int model_read_losses(Model *m, GroupKind reduce_over, double *token_loss_sum, double *aux_sum)
{
    Backend *be = m->be;
    float h[2];
    if (reduce_over != GROUP_KIND_COUNT) model_reduce_losses(m, reduce_over);
    /* sequence parallelism: each TP rank holds the losses of its shard */
    if (m->env.dim.tp > 1) be->all_reduce(be, m->env.loss_acc, 2, DT_F32, GROUP_TP);
    be->download(be, h, m->env.loss_acc, sizeof h);
    be->zero(be, m->env.loss_acc, sizeof h);
    *token_loss_sum = h[0];
    *aux_sum = h[1];
    return be->status(be, NULL);
}

void model_destroy(Model *m)
{
    if (!m) return;
    StepEnv *env = &m->env;
    if (m->slot)
        for (int k = 0; k < m->vpp; k++) {
            for (int i = 0; m->slot[k] && i < m->nslots[k]; i++) micro_batch_free(&m->slot[k][i], &m->chunk[k]);
            free(m->slot[k]);
        }
    workspace_free(env, &env->fwd);
    workspace_free(env, &env->bwd);
    buf_free(env, &env->pos);
    if (env->loss_acc) m->be->release(m->be, env->loss_acc);
    if (m->tied_zero) m->be->release(m->be, m->tied_zero);
    free(env->h_idx); free(env->h_kept); free(env->a2a); free(env->h_force); free(env->h_probs); free(env->h_tprob);
    free(env->h_ids);
    params_wait_all(&m->ps);
    params_free(&m->ps);
    free(m->layers);
    free(m->chunk);
    free(m->nslots);
    free(m->slot);
    free(m);
}

/* ---- the step ------------------------------------------------------------ */

int model_slots(const Model *m) { return m->nslots[0]; }
int model_chunk_slots(const Model *m, int chunk) { return m->nslots[chunk]; }

void model_pipeline(const Model *m, int *pp, int *stage, int *vpp, int *micro_batches)
{
    *pp = m->pp;
    *stage = m->stage;
    *vpp = m->vpp;
    *micro_batches = m->micro_batches;
}

static MicroBatch *context(Model *m, int chunk, int slot, MpError *err)
{
    if (chunk < 0 || chunk >= m->vpp) {
        mp_fail(err, "executor: chunk %d: this rank has %d", chunk, m->vpp);
        return NULL;
    }
    if (slot < 0 || slot >= m->nslots[chunk]) {
        mp_fail(err, "executor: micro-batch slot %d: only %d in flight", slot, m->nslots[chunk]);
        return NULL;
    }
    return &m->slot[chunk][slot];
}

int model_chunk_forward(Model *m, int chunk, int slot, const int32_t *tokens, const int32_t *targets,
                        float dloss, MpError *err)
{
    MicroBatch *mb = context(m, chunk, slot, err);
    if (!mb) return -1;
    mb->h_tokens = tokens;
    mb->h_targets = targets;
    mb->dloss = dloss;
    m->last_chunk = chunk;
    m->last_slot = slot;
    return chunk_forward(&m->chunk[chunk], mb, err);
}

int model_chunk_backward(Model *m, int chunk, int slot, MpError *err)
{
    MicroBatch *mb = context(m, chunk, slot, err);
    if (!mb) return -1;
    return chunk_backward(&m->chunk[chunk], mb, err);
}

int model_forward(Model *m, int slot, const int32_t *tokens, const int32_t *targets, float dloss,
                  MpError *err)
{
    return model_chunk_forward(m, 0, slot, tokens, targets, dloss, err);
}

int model_backward(Model *m, int slot, MpError *err) { return model_chunk_backward(m, 0, slot, err); }

void *model_boundary(Model *m, int chunk, int slot, ModelBoundary which)
{
    MicroBatch *mb = &m->slot[chunk][slot];
    const Chunk *c = &m->chunk[chunk];
    return which == BOUNDARY_INPUT ? mb->xs[c->l0].p : which == BOUNDARY_OUTPUT ? mb->xs[c->l1].p : mb->dx.p;
}

/* a stage sends and receives its sequence-parallel shard: [Ts, h] with
 * Ts = T / tp (the residual stream between layers, chunk_reserve) */
size_t model_boundary_elems(const Model *m) { return (size_t)m->env.dim.Ts * (size_t)m->env.dim.h; }

int model_forward_backward(Model *m, const int32_t *tokens, const int32_t *targets, float dloss,
                           double *loss_sum, MpError *err)
{
    if (model_forward(m, 0, tokens, targets, dloss, err) || model_backward(m, 0, err)) return -1;
    if (loss_sum) {
        double aux;
        model_read_losses(m, GROUP_KIND_COUNT, loss_sum, &aux);
        *loss_sum += aux;
    }
    return 0;
}

void model_zero_grads(Model *m) { params_zero_grads(&m->ps); }
void model_step_begin(Model *m) { params_step_begin(&m->ps); }

void model_sync_grads(Model *m)
{
    /* the KV-replica sums of the layers whose buckets did not start during
     * the backward (with overlap grad, chunk.c did the others there) */
    for (int k = 0; k < m->vpp; k++)
        for (int l = m->chunk[k].l0; l < m->chunk[k].l1; l++)
            if (!params_layer_synced(&m->ps, l)) layer_sync_replicated_kv(&m->layers[l]);
    /* tied embeddings under a pipeline: the first stage's embedding and the
     * last stage's output layer are one tensor; their gradients are summed
     * over the pipeline group (the middle stages add zeros), before the
     * data-parallel reduction of their bucket (held until now) */
    if (m->tied) {
        Backend *be = m->be;
        size_t n = (size_t)m->env.dim.Vl * (size_t)m->env.dim.h;   /* this rank's vocabulary rows */
        float *g = m->tied_param >= 0 ? params_grad_accumulate(&m->ps, m->tied_param) : m->tied_zero;
        be->phase_begin(be, PHASE_GRAD_SYNC);
        if (m->tied_zero) be->zero(be, m->tied_zero, n * sizeof(float));
        be->all_reduce(be, g, n, DT_F32, GROUP_PP);
        be->phase_end(be, PHASE_GRAD_SYNC);
    }
    params_reduce_grads(&m->ps);
}

void model_adam_step(Model *m, float lr, int t) { params_adam_step(&m->ps, lr, t); }

int model_num_params(const Model *m) { return m->ps.count; }
const ParamInfo *model_param(const Model *m, int i) { return &m->ps.params[i]; }
size_t model_local_params(const Model *m) { return m->ps.arena[0].n + m->ps.arena[1].n; }
size_t model_optimizer_elems(const Model *m)
{
    size_t n = 0;
    for (int ar = 0; ar < 2; ar++)
        n += m->ps.arena[ar].shards > 1 ? m->ps.arena[ar].shard_n : m->ps.arena[ar].n;
    return n;
}
void model_bucket_stats(const Model *m, int *buckets, int *early_starts)
{
    *buckets = m->ps.nbuckets;
    *early_starts = m->ps.early_starts;
}
int model_dropped_pairs(const Model *m)
{
    return micro_batch_dropped(&m->slot[m->last_chunk][m->last_slot], &m->chunk[m->last_chunk]);
}

void model_param_global_index(const Model *m, int p, size_t i, int *uid, size_t *flat)
{
    params_global_index(&m->ps, p, i, uid, flat);
}

void model_param_grad_host(Model *m, int p, float *out)
{
    params_wait_all(&m->ps);
    m->be->download(m->be, out, params_grad_accumulate(&m->ps, p), m->ps.params[p].n * sizeof(float));
}

void model_gather_grads(Model *m) { params_wait_all(&m->ps); params_gather_grads(&m->ps); }

/* With the distributed optimizer on a bf16 backend the fp32 master is
 * sharded: values are read from the act copy, and a write updates the act
 * copy and the part of the master shard this rank owns. */
void model_param_value_host(Model *m, int p, float *out)
{
    Backend *be = m->be;
    size_t n = m->ps.params[p].n;
    params_wait_all(&m->ps);
    if (params_master(&m->ps, p)) { be->download(be, out, params_master(&m->ps, p), n * sizeof(float)); return; }
    float *tmp = be->alloc(be, n * sizeof(float));
    if (!tmp) { memset(out, 0, n * sizeof(float)); return; }
    be->act_to_f32(be, tmp, params_act(&m->ps, p), n);
    be->download(be, out, tmp, n * sizeof(float));
    be->release(be, tmp);
}

void model_param_set_host(Model *m, int p, const float *values)
{
    Backend *be = m->be;
    size_t n = m->ps.params[p].n;
    params_wait_all(&m->ps);
    if (params_master(&m->ps, p)) {
        be->upload(be, params_master(&m->ps, p), values, n * sizeof(float));
        if (be->act_bytes != 4) be->f32_to_act(be, params_act(&m->ps, p), params_master(&m->ps, p), n);
        return;
    }
    const ParamInfo *pi = &m->ps.params[p];
    const ParamArena *r = &m->ps.arena[pi->expert];
    float *tmp = be->alloc(be, n * sizeof(float));
    if (!tmp) return;
    be->upload(be, tmp, values, n * sizeof(float));
    be->f32_to_act(be, params_act(&m->ps, p), tmp, n);
    /* this rank's part of each bucket of the arena (params.h ParamBucket) */
    for (int k = 0; k < m->ps.nbuckets; k++) {
        const ParamBucket *bk = &m->ps.bucket[k];
        if (bk->arena != pi->expert) continue;
        size_t lo = bk->lo + (size_t)r->shard_rank * bk->shard_n, hi = lo + bk->shard_n;
        size_t a = pi->offset > lo ? pi->offset : lo, b = pi->offset + n < hi ? pi->offset + n : hi;
        if (a < b) be->copy(be, r->master + bk->own + (a - lo), tmp + (a - pi->offset), (b - a) * sizeof(float));
    }
    be->release(be, tmp);
}
