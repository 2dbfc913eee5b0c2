/* model.c: parameters, forward and backward of the MoE transformer
 * (model.h), against the Backend vtable.  Nothing here touches device memory
 * directly; the only host-side step data are the dispatcher's row maps. */
#include "executor/model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor/dispatcher.h"

/* RoPE base and RMSNorm epsilon (Mixtral: rope_theta 1e6, rms_norm_eps 1e-5;
 * the base only changes angles, not cost or correctness checks). */
#define MODEL_ROPE_THETA 1000000.0f
#define MODEL_RMS_EPS 1e-5f
/* uniform init half-width: std 0.02 (GPT-2 / Megatron init_method_std) = a/sqrt(3) */
#define MODEL_INIT_HALF_WIDTH (0.02f * 1.7320508f)

typedef struct { void *p; size_t cap; } Buf;

typedef struct {
    float *master, *grad, *m, *v;
    void *act;          /* == master when the backend's act type is float */
    size_t n;
} Arena;

typedef struct {
    int moe;
    int attn_norm, wqkv, wo, mlp_norm;           /* param indices */
    int router, w13, w2, sh13, sh2;              /* MoE layer (-1 when absent) */
    int d13, d2;                                 /* dense MLP layer */
    /* saved for backward, per micro-batch */
    Buf xn1, rstd1, qkv, o, lse, x_mid, xn2, rstd2;
    Buf probs, topk_idx, topk_prob, maps, X, h13, a, ret, mlp_h, mlp_a;
    Buf gcoef;                                   /* [E] f32 d aux / d probs (per micro-batch) */
    DispatchPlan dp;
} Layer;

struct Model {
    ModelSpec spec;
    Backend *be;
    int L, b, s, T;
    int h, n, g, d, qkvw;               /* qkvw = (n + 2g) d */
    int E, k, El, e0, Fe, Fl, f0, ep, etp, ep_rank, etp_rank;
    double cf;
    uint64_t seed;
    ParamInfo *params;
    int nparams, cap_params;
    Arena arena[2];
    int emb, final_norm, out;
    Layer *layer;
    Buf *xs;                            /* [L+1] residual stream at layer inputs */
    Buf tokens, targets, pos, xf, rstdf, logits, losses;
    /* temporaries shared by all layers */
    Buf t_send, t_recv, t_gath, t_Y, t_big1, t_big2, t_y, t_moe;
    Buf g_x, g_t1, g_t2, g_qkv, g_o, g_logits_f, g_logits_a, g_prob;
    int dropped;
    float aux_coeff;                    /* auxiliary load-balancing loss coefficient, 0 = off */
    float dloss;                        /* gradient of the step loss per token loss */
    float *loss_acc;                    /* [2] f32 device: token-loss sum, T * aux sum */
    size_t *a2a_counts;                 /* host [4 * ep]: all-to-all counts and displacements */
    int32_t *h_idx, *h_force;           /* host [T*k] scratch, [T*k] forced choices */
    float *h_probs, *h_tprob;           /* host [T*E], [T*k] (forced routing only) */
    int32_t *trace;                     /* routing trace [L][T*k] host, or NULL */
    int trace_force;
    long route_flips;
};

/* ---- helpers ------------------------------------------------------------ */

static void *buf_get(Model *m, Buf *b, size_t bytes)
{
    if (bytes == 0) bytes = 16;
    if (b->cap < bytes) {
        if (b->p) m->be->release(m->be, b->p);
        b->cap = bytes + bytes / 8;
        b->p = m->be->alloc(m->be, b->cap);
        if (!b->p) {
            fprintf(stderr, "moeplan: executor: device allocation of %zu bytes failed\n", b->cap);
            abort();
        }
    }
    return b->p;
}

static void buf_free(Model *m, Buf *b)
{
    if (b->p) m->be->release(m->be, b->p);
    b->p = NULL; b->cap = 0;
}

static size_t A(const Model *m) { return (size_t)m->be->act_bytes; }

static float *P_master(Model *m, int i) { return m->arena[m->params[i].expert].master + m->params[i].offset; }
static float *P_grad(Model *m, int i) { return m->arena[m->params[i].expert].grad + m->params[i].offset; }
static void *P_act(Model *m, int i)
{
    return (char *)m->arena[m->params[i].expert].act + m->params[i].offset * A(m);
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) from (key, index): splitmix64 of the full-tensor index */
static float hash_uniform(uint64_t key, size_t flat)
{
    uint64_t r = mix64(key ^ mix64((uint64_t)flat));
    return (float)((double)(r >> 40) / (double)(1ull << 23) - 1.0);
}

static int add_param(Model *m, const char *name, int uid, ParamKind kind, int expert, size_t n,
                     float scale, float value)
{
    if (m->nparams == m->cap_params) {
        m->cap_params = m->cap_params ? 2 * m->cap_params : 64;
        m->params = realloc(m->params, sizeof(ParamInfo) * (size_t)m->cap_params);
        if (!m->params) abort();
    }
    ParamInfo *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->uid = uid; p->kind = kind; p->expert = expert; p->n = n;
    p->init_scale = scale; p->init_value = value;
    p->offset = m->arena[expert].n;
    m->arena[expert].n += n;
    return m->nparams++;
}

void model_param_global_index(const Model *m, int pi, size_t i, int *uid, size_t *flat)
{
    const ParamInfo *p = &m->params[pi];
    size_t h = (size_t)m->h, Fl = (size_t)m->Fl, Fe = (size_t)m->Fe;
    if (p->kind == PARAM_W13) {           /* local [El][2Fl][h] -> w1|w3 [E][Fe][h] */
        size_t el = i / (2 * Fl * h), r = (i / h) % (2 * Fl), c = i % h;
        size_t e = (size_t)m->e0 + el;
        int up = r >= Fl;
        size_t f = (size_t)m->f0 + (up ? r - Fl : r);
        *uid = p->uid + up;
        *flat = (e * Fe + f) * h + c;
    } else if (p->kind == PARAM_W2) {     /* local [El][h][Fl] -> w2 [E][h][Fe] */
        size_t el = i / (h * Fl), r = (i / Fl) % h, c = i % Fl;
        size_t e = (size_t)m->e0 + el;
        *uid = p->uid;
        *flat = (e * h + r) * Fe + (size_t)m->f0 + c;
    } else {
        *uid = p->uid;
        *flat = i;
    }
}


/* ---- initialisation: hash of (seed, tensor id, full-tensor index) ---- */

typedef struct {
    const Model *m;
    int p;
    float *host;
    size_t lo, hi;
} InitJob;

static void *init_job(void *arg)
{
    InitJob *j = arg;
    const ParamInfo *p = &j->m->params[j->p];
    uint64_t key0 = mix64(j->m->seed ^ mix64((uint64_t)p->uid + 0x51ed27ull));
    uint64_t key1 = mix64(j->m->seed ^ mix64((uint64_t)p->uid + 1 + 0x51ed27ull));
    for (size_t i = j->lo; i < j->hi; i++) {
        int uid = p->uid;
        size_t flat = i;
        if (p->kind != PARAM_PLAIN) model_param_global_index(j->m, j->p, i, &uid, &flat);
        j->host[i] = p->init_scale * hash_uniform(uid == p->uid ? key0 : key1, flat);
    }
    return NULL;
}

/* large tensors (Mixtral experts: 10^9 elements) are filled by 16 threads */
static void init_param_parallel(const Model *m, int p, float *host)
{
    enum { THREADS = 16 };
    size_t n = m->params[p].n;
    InitJob jobs[THREADS];
    pthread_t th[THREADS];
    int nt = n < (1u << 20) ? 1 : THREADS;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (InitJob){m, p, host, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt};
        if (nt == 1 || pthread_create(&th[t], NULL, init_job, &jobs[t]) != 0) {
            init_job(&jobs[t]);
            th[t] = 0;
        }
    }
    for (int t = 0; t < nt; t++) if (th[t]) pthread_join(th[t], NULL);
}

/* ---- specs -------------------------------------------------------------- */

int model_spec_tiny(const char *name, ModelSpec *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->num_layers = 2; o->hidden = 64; o->num_heads = 4; o->num_kv_groups = 2; o->head_dim = 16;
    o->num_experts = 8; o->top_k = 2; o->expert_ffn = 96; o->vocab = 128;
    o->swiglu = true; o->router = ROUTER_SOFTMAX;
    if (!strcmp(name, "tiny-moe")) return 0;
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
    if (mp->tp != 1) return mp_fail(err, "tp: %d: the executor's step supports tp = 1 only (part 1)", mp->tp);
    if (mp->cp != 1) return mp_fail(err, "cp: %d: context parallelism is not implemented in the executor (part 1)", mp->cp);
    if (mp->pp != 1) return mp_fail(err, "pp: %d: pipeline parallelism is not implemented in the executor (part 1)", mp->pp);
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
    return 0;
}

int model_create(const Plan *plan, int layers, uint64_t seed, Backend *be, Model **out,
                 MpError *err)
{
    if (check_supported(plan, err)) return -1;
    const ModelSpec *s = &plan->model;
    const ExecComms *c = be->comms;
    Model *m = calloc(1, sizeof *m);
    if (!m) return mp_fail(err, "executor: out of host memory");
    m->spec = *s; m->be = be; m->seed = seed;
    m->L = (layers > 0 && layers < s->num_layers) ? layers : s->num_layers;
    m->b = plan->train.micro_batch; m->s = plan->train.seq_len; m->T = m->b * m->s;
    m->h = s->hidden; m->n = s->num_heads; m->g = s->num_kv_groups; m->d = s->head_dim;
    m->qkvw = (m->n + 2 * m->g) * m->d;
    m->E = s->num_experts; m->k = s->top_k; m->ep = plan->map.ep; m->etp = plan->map.etp;
    m->El = m->E / m->ep; m->Fe = s->expert_ffn; m->Fl = m->Fe / m->etp;
    m->ep_rank = c->rank_in[GROUP_EP]; m->etp_rank = c->rank_in[GROUP_ETP];
    if (c->size_of[GROUP_EP] != m->ep || c->size_of[GROUP_ETP] != m->etp) {
        free(m);
        return mp_fail(err, "comms: group sizes (ep %d, etp %d) differ from the plan's (ep %d, etp %d)",
                       c->size_of[GROUP_EP], c->size_of[GROUP_ETP], plan->map.ep, plan->map.etp);
    }
    m->e0 = m->ep_rank * m->El; m->f0 = m->etp_rank * m->Fl;
    m->cf = plan->train.capacity_factor;

    size_t h = (size_t)m->h, V = (size_t)s->vocab;
    float a = MODEL_INIT_HALF_WIDTH;
    char nm[40];
    m->emb = add_param(m, "embedding", 0, PARAM_PLAIN, 0, V * h, a, 0);
    m->final_norm = add_param(m, "final_norm", 1, PARAM_PLAIN, 0, h, 0, 1);
    m->out = s->tied_embeddings ? m->emb : add_param(m, "output", 2, PARAM_PLAIN, 0, V * h, a, 0);
    m->layer = calloc((size_t)m->L, sizeof(Layer));
    m->xs = calloc((size_t)m->L + 1, sizeof(Buf));
    for (int l = 0; l < m->L; l++) {
        Layer *y = &m->layer[l];
        int u = 16 * (l + 1);
        y->moe = l >= s->num_dense_layers;
        y->router = y->w13 = y->w2 = y->sh13 = y->sh2 = y->d13 = y->d2 = -1;
#define NAME(x) (snprintf(nm, sizeof nm, "layer%d.%s", l, x), nm)
        y->attn_norm = add_param(m, NAME("attn_norm"), u + 0, PARAM_PLAIN, 0, h, 0, 1);
        y->wqkv = add_param(m, NAME("wqkv"), u + 1, PARAM_PLAIN, 0, (size_t)m->qkvw * h, a, 0);
        y->wo = add_param(m, NAME("wo"), u + 2, PARAM_PLAIN, 0, h * (size_t)(m->n * m->d), a, 0);
        y->mlp_norm = add_param(m, NAME("mlp_norm"), u + 3, PARAM_PLAIN, 0, h, 0, 1);
        if (y->moe) {
            y->router = add_param(m, NAME("router"), u + 4, PARAM_PLAIN, 0, (size_t)m->E * h, a, 0);
            y->w13 = add_param(m, NAME("experts.w13"), u + 5, PARAM_W13, 1,
                               (size_t)m->El * 2 * m->Fl * h, a, 0);
            y->w2 = add_param(m, NAME("experts.w2"), u + 7, PARAM_W2, 1,
                              (size_t)m->El * h * m->Fl, a, 0);
            if (s->shared_ffn > 0) {
                y->sh13 = add_param(m, NAME("shared.w13"), u + 8, PARAM_PLAIN, 0,
                                    2 * (size_t)s->shared_ffn * h, a, 0);
                y->sh2 = add_param(m, NAME("shared.w2"), u + 9, PARAM_PLAIN, 0,
                                   h * (size_t)s->shared_ffn, a, 0);
            }
            if (dispatch_plan_init(&y->dp, m->T, m->k, m->E, m->ep, m->etp, m->cf)) {
                model_destroy(m);
                return mp_fail(err, "executor: out of host memory");
            }
        } else {
            y->d13 = add_param(m, NAME("mlp.w13"), u + 10, PARAM_PLAIN, 0,
                               2 * (size_t)s->dense_ffn * h, a, 0);
            y->d2 = add_param(m, NAME("mlp.w2"), u + 11, PARAM_PLAIN, 0,
                              h * (size_t)s->dense_ffn, a, 0);
        }
#undef NAME
    }
    /* arenas */
    for (int ar = 0; ar < 2; ar++) {
        Arena *r = &m->arena[ar];
        size_t bytes = (r->n ? r->n : 1) * sizeof(float);
        r->master = be->alloc(be, bytes);
        r->grad = be->alloc(be, bytes);
        r->m = be->alloc(be, bytes);
        r->v = be->alloc(be, bytes);
        r->act = be->act_bytes == 4 ? (void *)r->master : be->alloc(be, (r->n ? r->n : 1) * A(m));
        if (!r->master || !r->grad || !r->m || !r->v || !r->act) {
            model_destroy(m);
            return mp_fail(err, "executor: device memory: cannot hold %zu parameters (%s arena)",
                           r->n, ar ? "expert" : "dense");
        }
    }
    /* deterministic, mapping-independent initialisation */
    size_t maxn = 0;
    for (int i = 0; i < m->nparams; i++) if (m->params[i].n > maxn) maxn = m->params[i].n;
    float *host = malloc(maxn * sizeof(float));
    if (!host) { model_destroy(m); return mp_fail(err, "executor: out of host memory"); }
    for (int i = 0; i < m->nparams; i++) {
        ParamInfo *p = &m->params[i];
        if (i == m->out && m->out == m->emb && i != m->emb) continue;
        if (p->init_scale == 0) {
            for (size_t j = 0; j < p->n; j++) host[j] = p->init_value;
        } else {
            init_param_parallel(m, i, host);
        }
        be->upload(be, P_master(m, i), host, p->n * sizeof(float));
    }
    free(host);
    for (int ar = 0; ar < 2; ar++)
        if (be->act_bytes != 4) be->f32_to_act(be, m->arena[ar].act, m->arena[ar].master, m->arena[ar].n);
    /* positions: t mod s */
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)m->T);
    for (int t = 0; t < m->T; t++) pos[t] = t % m->s;
    be->upload(be, buf_get(m, &m->pos, sizeof(int32_t) * (size_t)m->T), pos, sizeof(int32_t) * (size_t)m->T);
    free(pos);
    m->loss_acc = be->alloc(be, 2 * sizeof(float));
    m->h_idx = malloc(sizeof(int32_t) * (size_t)m->T * m->k);
    m->a2a_counts = malloc(sizeof(size_t) * 4 * (size_t)m->ep);
    if (!m->loss_acc || !m->h_idx || !m->a2a_counts) { model_destroy(m); return mp_fail(err, "executor: out of memory"); }
    *out = m;
    return 0;
}

void model_set_aux_loss_coeff(Model *m, float coeff) { m->aux_coeff = coeff > 0 ? coeff : 0; }

void model_set_routing_trace(Model *m, int32_t *trace, int force)
{
    m->trace = trace;
    m->trace_force = force;
}

long model_route_flips(const Model *m) { return m->route_flips; }

int model_read_losses(Model *m, GroupKind reduce_over, double *token_loss_sum, double *aux_sum)
{
    Backend *be = m->be;
    float h[2];
    if (reduce_over != GROUP_KIND_COUNT && be->comms->size_of[reduce_over] > 1)
        be->all_reduce(be, m->loss_acc, 2, DT_F32, reduce_over);
    be->download(be, h, m->loss_acc, sizeof h);
    be->zero(be, m->loss_acc, sizeof h);
    *token_loss_sum = h[0];
    *aux_sum = h[1];
    return 0;
}

void model_destroy(Model *m)
{
    if (!m) return;
    Backend *be = m->be;
    for (int ar = 0; ar < 2; ar++) {
        Arena *r = &m->arena[ar];
        if (r->act && r->act != (void *)r->master) be->release(be, r->act);
        if (r->master) be->release(be, r->master);
        if (r->grad) be->release(be, r->grad);
        if (r->m) be->release(be, r->m);
        if (r->v) be->release(be, r->v);
    }
    if (m->layer) {
        for (int l = 0; l < m->L; l++) {
            Layer *y = &m->layer[l];
            Buf *bs[] = {&y->xn1, &y->rstd1, &y->qkv, &y->o, &y->lse, &y->x_mid, &y->xn2, &y->rstd2,
                         &y->probs, &y->topk_idx, &y->topk_prob, &y->maps, &y->X, &y->h13, &y->a,
                         &y->ret, &y->mlp_h, &y->mlp_a, &y->gcoef};
            for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) buf_free(m, bs[i]);
            dispatch_plan_free(&y->dp);
        }
        free(m->layer);
    }
    if (m->xs) {
        for (int l = 0; l <= m->L; l++) buf_free(m, &m->xs[l]);
        free(m->xs);
    }
    Buf *bs[] = {&m->tokens, &m->targets, &m->pos, &m->xf, &m->rstdf, &m->logits, &m->losses,
                 &m->t_send, &m->t_recv, &m->t_gath, &m->t_Y, &m->t_big1, &m->t_big2, &m->t_y,
                 &m->t_moe, &m->g_x, &m->g_t1, &m->g_t2, &m->g_qkv, &m->g_o, &m->g_logits_f,
                 &m->g_logits_a, &m->g_prob};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) buf_free(m, bs[i]);
    if (m->loss_acc) be->release(be, m->loss_acc);
    free(m->h_idx); free(m->a2a_counts); free(m->h_force); free(m->h_probs); free(m->h_tprob);
    free(m->params);
    free(m);
}

/* ---- forward ------------------------------------------------------------ */

/* dense SwiGLU MLP: out [T, h] (=, or += when accumulate) from in [T, h];
 * saves hbuf [T, 2F] and abuf [T, F] */
static void mlp_forward(Model *m, int w13, int w2, int F, const void *in, void *out,
                        Buf *hbuf, Buf *abuf, float beta)
{
    Backend *be = m->be;
    int T = m->T, h = m->h;
    void *hh = buf_get(m, hbuf, (size_t)T * 2 * F * A(m));
    void *aa = buf_get(m, abuf, (size_t)T * F * A(m));
    be->gemm(be, hh, false, in, P_act(m, w13), T, 2 * F, h, 0, 1, 0.0f);
    be->swiglu_forward(be, aa, hh, T, F);
    be->gemm(be, out, false, aa, P_act(m, w2), T, h, F, 0, 1, beta);
}

/* dout [T, h] -> din [T, h] (= when beta 0, += when beta 1); weight grads += */
static void mlp_backward(Model *m, int w13, int w2, int F, const void *in, const void *dout,
                         void *din, Buf *hbuf, Buf *abuf, float beta)
{
    Backend *be = m->be;
    int T = m->T, h = m->h;
    void *da = buf_get(m, &m->t_big2, (size_t)T * F * A(m));
    void *dh = buf_get(m, &m->t_big1, (size_t)T * 2 * F * A(m));
    be->gemm(be, da, false, dout, P_act(m, w2), T, F, h, 0, 0, 0.0f);
    be->gemm(be, P_grad(m, w2), true, dout, abuf->p, h, F, T, 1, 0, 1.0f);
    be->swiglu_backward(be, dh, da, hbuf->p, T, F);
    be->gemm(be, din, false, dh, P_act(m, w13), T, h, 2 * F, 0, 0, beta);
    be->gemm(be, P_grad(m, w13), true, dh, in, 2 * F, h, T, 1, 0, 1.0f);
}

static void attention_forward(Model *m, Layer *y, const void *x, void *x_mid)
{
    Backend *be = m->be;
    int T = m->T, h = m->h, nd = m->n * m->d, w = m->qkvw;
    be->phase_begin(be, PHASE_ATTENTION);
    void *xn1 = buf_get(m, &y->xn1, (size_t)T * h * A(m));
    float *rstd1 = buf_get(m, &y->rstd1, (size_t)T * 4);
    char *qkv = buf_get(m, &y->qkv, (size_t)T * w * A(m));
    void *o = buf_get(m, &y->o, (size_t)T * nd * A(m));
    float *lse = buf_get(m, &y->lse, (size_t)T * m->n * 4);
    void *tmp = buf_get(m, &m->t_y, (size_t)T * h * A(m));
    be->rmsnorm_forward(be, xn1, rstd1, x, P_act(m, y->attn_norm), T, h, MODEL_RMS_EPS);
    be->gemm(be, qkv, false, xn1, P_act(m, y->wqkv), T, w, h, 0, 1, 0.0f);
    be->rope(be, qkv, m->pos.p, T, m->n, m->d, w, MODEL_ROPE_THETA, false);
    be->rope(be, qkv + (size_t)nd * A(m), m->pos.p, T, m->g, m->d, w, MODEL_ROPE_THETA, false);
    be->attention_forward(be, o, lse, qkv, qkv + (size_t)nd * A(m),
                          qkv + (size_t)(nd + m->g * m->d) * A(m), m->b, m->s, m->n, m->g, m->d,
                          w, w);
    be->gemm(be, tmp, false, o, P_act(m, y->wo), T, h, nd, 0, 1, 0.0f);
    be->add_act(be, x_mid, x, tmp, (size_t)T * h);
    be->phase_end(be, PHASE_ATTENTION);
}

static void attention_backward(Model *m, Layer *y, const void *x, void *dx)
{
    /* dx [T, h]: in: gradient wrt x_mid; out: gradient wrt x (the layer input) */
    Backend *be = m->be;
    int T = m->T, h = m->h, nd = m->n * m->d, w = m->qkvw;
    be->phase_begin(be, PHASE_ATTENTION);
    void *dO = buf_get(m, &m->g_o, (size_t)T * nd * A(m));
    char *dqkv = buf_get(m, &m->g_qkv, (size_t)T * w * A(m));
    void *dxn = buf_get(m, &m->g_t1, (size_t)T * h * A(m));
    void *dtmp = buf_get(m, &m->g_t2, (size_t)T * h * A(m));
    char *qkv = y->qkv.p;
    be->gemm(be, dO, false, dx, P_act(m, y->wo), T, nd, h, 0, 0, 0.0f);
    be->gemm(be, P_grad(m, y->wo), true, dx, y->o.p, h, nd, T, 1, 0, 1.0f);
    size_t ko = (size_t)nd * A(m), vo = (size_t)(nd + m->g * m->d) * A(m);
    be->attention_backward(be, dqkv, dqkv + ko, dqkv + vo, dO, qkv, qkv + ko, qkv + vo, y->o.p,
                           y->lse.p, m->b, m->s, m->n, m->g, m->d, w, w);
    be->rope(be, dqkv, m->pos.p, T, m->n, m->d, w, MODEL_ROPE_THETA, true);
    be->rope(be, dqkv + ko, m->pos.p, T, m->g, m->d, w, MODEL_ROPE_THETA, true);
    be->gemm(be, dxn, false, dqkv, P_act(m, y->wqkv), T, h, w, 0, 0, 0.0f);
    be->gemm(be, P_grad(m, y->wqkv), true, dqkv, y->xn1.p, w, h, T, 1, 0, 1.0f);
    be->rmsnorm_backward(be, dtmp, P_grad(m, y->attn_norm), dxn, x, P_act(m, y->attn_norm),
                         y->rstd1.p, T, h);
    be->add_act(be, dx, dx, dtmp, (size_t)T * h);
    be->phase_end(be, PHASE_ATTENTION);
}

/* Tests: replace the router's top-k choices of layer y by the trace's (the
 * probabilities of the forced experts, renormalised over the k as usual) and
 * count the (token, slot) choices that differ from the router's own, as sets
 * per token.  Host round trip: a test path, not timed. */
static void force_routing(Model *m, Layer *y)
{
    Backend *be = m->be;
    int T = m->T, k = m->k, E = m->E;
    size_t nk = (size_t)T * k;
    if (!m->h_force) {
        m->h_force = malloc(sizeof(int32_t) * nk);
        m->h_probs = malloc(sizeof(float) * (size_t)T * E);
        m->h_tprob = malloc(sizeof(float) * nk);
        if (!m->h_force || !m->h_probs || !m->h_tprob) abort();
    }
    const int32_t *want = m->trace + (size_t)(y - m->layer) * nk;
    be->download(be, m->h_force, y->topk_idx.p, sizeof(int32_t) * nk);
    be->download(be, m->h_probs, y->probs.p, sizeof(float) * (size_t)T * E);
    for (int t = 0; t < T; t++) {
        double S = 0;
        for (int j = 0; j < k; j++) {
            int e = want[(size_t)t * k + j], same = 0;
            for (int i = 0; i < k; i++) same |= m->h_force[(size_t)t * k + i] == e;
            m->route_flips += !same;
            S += m->h_probs[(size_t)t * E + e];
        }
        for (int j = 0; j < k; j++) {
            float p = m->h_probs[(size_t)t * E + want[(size_t)t * k + j]];
            m->h_tprob[(size_t)t * k + j] = k > 1 ? (float)(p / S) : p;
        }
    }
    be->upload(be, y->topk_idx.p, want, sizeof(int32_t) * nk);
    be->upload(be, y->topk_prob.p, m->h_tprob, sizeof(float) * nk);
}

/* token-count exchange and the device maps of one MoE layer */
static void dispatch_exchange(Model *m, Layer *y)
{
    Backend *be = m->be;
    DispatchPlan *dp = &y->dp;
    int El = m->El, ep = m->ep, etp = m->etp;
    be->phase_begin(be, PHASE_DISPATCH_COMM);
    int32_t *idx = m->h_idx;
    be->download(be, idx, y->topk_idx.p, sizeof(int32_t) * (size_t)m->T * m->k);
    if (m->trace && !m->trace_force)
        memcpy(m->trace + (size_t)(y - m->layer) * m->T * m->k, idx, sizeof(int32_t) * (size_t)m->T * m->k);
    dispatch_plan_local(dp, idx);
    m->dropped += dp->dropped;
    int32_t *recv = malloc(sizeof(int32_t) * (size_t)ep * El);
    be->all_to_all_host_i32(be, dp->expert_rows, recv, El, GROUP_EP);
    if (etp > 1) be->all_gather_host_i32(be, recv, dp->recv_expert_rows, ep * El, GROUP_ETP);
    else memcpy(dp->recv_expert_rows, recv, sizeof(int32_t) * (size_t)ep * El);
    free(recv);
    dispatch_plan_finish(dp, m->etp_rank);
    size_t nmap = (size_t)m->T * m->k + (size_t)dp->rows;
    int32_t *maps = buf_get(m, &y->maps, nmap * sizeof(int32_t));
    int32_t *hm = malloc(nmap * sizeof(int32_t));
    memcpy(hm, dp->row_of, sizeof(int32_t) * (size_t)m->T * m->k);
    memcpy(hm + (size_t)m->T * m->k, dp->sort_src, sizeof(int32_t) * (size_t)dp->rows);
    be->upload(be, maps, hm, nmap * sizeof(int32_t));
    free(hm);
    be->phase_end(be, PHASE_DISPATCH_COMM);
}

static void ep_all_to_all(Model *m, DispatchPlan *dp, const void *send, void *recv, int forward)
{
    Backend *be = m->be;
    int ep = m->ep, h = m->h;
    size_t *sc = m->a2a_counts, *sd = sc + ep, *rc = sd + ep, *rd = rc + ep;   /* [ep] each */
    for (int r = 0; r < ep; r++) {
        size_t a_c = dp->send_counts[r], a_d = dp->send_displs[r];
        size_t b_c = dp->recv_counts[r], b_d = dp->recv_displs[r];
        if (forward) { sc[r] = a_c * h; sd[r] = a_d * h; rc[r] = b_c * h; rd[r] = b_d * h; }
        else { sc[r] = b_c * h; sd[r] = b_d * h; rc[r] = a_c * h; rd[r] = a_d * h; }
    }
    be->all_to_all_v(be, send, sc, sd, recv, rc, rd, DT_ACT, GROUP_EP);
}

/* MoE layer forward: out [T, h] (=) from xn2 [T, h] */
static void moe_forward(Model *m, Layer *y, const void *xn2, void *out)
{
    Backend *be = m->be;
    DispatchPlan *dp = &y->dp;
    int T = m->T, h = m->h, k = m->k, E = m->E, etp = m->etp, Fl = m->Fl;
    size_t a = A(m);
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    float *logits = buf_get(m, &m->g_logits_f, (size_t)T * E * 4);
    float *probs = buf_get(m, &y->probs, (size_t)T * E * 4);
    int32_t *idx = buf_get(m, &y->topk_idx, (size_t)T * k * 4);
    float *tprob = buf_get(m, &y->topk_prob, (size_t)T * k * 4);
    be->gemm(be, logits, true, xn2, P_act(m, y->router), T, E, h, 0, 1, 0.0f);
    be->router_forward(be, probs, idx, tprob, logits, T, E, k, k > 1);
    if (m->trace && m->trace_force) force_routing(m, y);
    if (m->aux_coeff > 0)
        be->aux_loss_forward(be, buf_get(m, &y->gcoef, (size_t)E * 4), m->loss_acc + 1, probs, idx,
                             T, E, k, m->aux_coeff, (float)T);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    dispatch_exchange(m, y);
    const int32_t *row_of = y->maps.p;
    const int32_t *sort_src = row_of + (size_t)T * k;
    int pad = dp->pad_rows, rows = dp->rows;

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *send = buf_get(m, &m->t_send, (size_t)dp->send_rows * h * a);
    if (dp->capacity > 0) be->zero(be, send, (size_t)dp->send_rows * h * a);
    be->permute(be, send, xn2, row_of, T, k, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    be->phase_begin(be, PHASE_DISPATCH_COMM);
    void *recv = buf_get(m, &m->t_recv, (size_t)pad * h * a);
    ep_all_to_all(m, dp, send, recv, 1);
    void *gath = recv;
    if (etp > 1) {
        gath = buf_get(m, &m->t_gath, (size_t)etp * pad * h * a);
        be->all_gather(be, gath, recv, (size_t)pad * h, DT_ACT, GROUP_ETP);
    }
    be->phase_end(be, PHASE_DISPATCH_COMM);

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *X = buf_get(m, &y->X, (size_t)rows * h * a);
    void *hh = buf_get(m, &y->h13, (size_t)rows * 2 * Fl * a);
    void *aa = buf_get(m, &y->a, (size_t)rows * Fl * a);
    void *Y = buf_get(m, &m->t_Y, (size_t)rows * h * a);
    be->gather_rows(be, X, gath, sort_src, rows, h);
    be->grouped_gemm(be, hh, false, X, P_act(m, y->w13), dp->group_rows, m->El, 0, 0, 2 * Fl, h, 0, 1, 0.0f);
    be->swiglu_forward(be, aa, hh, rows, Fl);
    be->grouped_gemm(be, Y, false, aa, P_act(m, y->w2), dp->group_rows, m->El, 0, 0, h, Fl, 0, 1, 0.0f);
    /* back to the gathered layout; padding rows stay 0 */
    be->zero(be, gath, (size_t)(etp > 1 ? etp : 1) * pad * h * a);
    be->permute(be, gath, Y, sort_src, rows, 1, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    be->phase_begin(be, PHASE_DISPATCH_COMM);
    if (etp > 1) be->reduce_scatter(be, recv, gath, (size_t)pad * h, DT_ACT, GROUP_ETP);
    void *ret = buf_get(m, &y->ret, (size_t)dp->send_rows * h * a);
    ep_all_to_all(m, dp, recv, ret, 0);
    be->phase_end(be, PHASE_DISPATCH_COMM);

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->unpermute(be, out, ret, tprob, row_of, T, k, h);
    if (y->sh13 >= 0)
        mlp_forward(m, y->sh13, y->sh2, m->spec.shared_ffn, xn2, out, &y->mlp_h, &y->mlp_a, 1.0f);
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

/* MoE backward: dout [T, h] -> dxn2 [T, h] (=) */
static void moe_backward(Model *m, Layer *y, const void *dout, void *dxn2)
{
    Backend *be = m->be;
    DispatchPlan *dp = &y->dp;
    int T = m->T, h = m->h, k = m->k, E = m->E, etp = m->etp, Fl = m->Fl;
    size_t a = A(m);
    const int32_t *row_of = y->maps.p;
    const int32_t *sort_src = row_of + (size_t)T * k;
    int pad = dp->pad_rows, rows = dp->rows;

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *dret = buf_get(m, &m->t_send, (size_t)dp->send_rows * h * a);
    float *dprob = buf_get(m, &m->g_prob, (size_t)T * k * 4);
    if (dp->capacity > 0) be->zero(be, dret, (size_t)dp->send_rows * h * a);
    be->unpermute_backward(be, dret, dprob, dout, y->ret.p, y->topk_prob.p, row_of, T, k, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    be->phase_begin(be, PHASE_DISPATCH_COMM);
    void *drecv = buf_get(m, &m->t_recv, (size_t)pad * h * a);
    ep_all_to_all(m, dp, dret, drecv, 1);
    void *dgath = drecv;
    if (etp > 1) {
        dgath = buf_get(m, &m->t_gath, (size_t)etp * pad * h * a);
        be->all_gather(be, dgath, drecv, (size_t)pad * h, DT_ACT, GROUP_ETP);
    }
    be->phase_end(be, PHASE_DISPATCH_COMM);

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *dY = buf_get(m, &m->t_Y, (size_t)rows * h * a);
    void *da = buf_get(m, &m->t_big2, (size_t)rows * Fl * a);
    void *dhh = buf_get(m, &m->t_big1, (size_t)rows * 2 * Fl * a);
    be->gather_rows(be, dY, dgath, sort_src, rows, h);
    be->grouped_gemm(be, da, false, dY, P_act(m, y->w2), dp->group_rows, m->El, 0, 0, Fl, h, 0, 0, 0.0f);
    be->grouped_gemm(be, P_grad(m, y->w2), true, dY, y->a.p, dp->group_rows, m->El, 1, h, Fl, 0, 1, 0, 1.0f);
    be->swiglu_backward(be, dhh, da, y->h13.p, rows, Fl);
    void *dX = dY;
    be->grouped_gemm(be, dX, false, dhh, P_act(m, y->w13), dp->group_rows, m->El, 0, 0, h, 2 * Fl, 0, 0, 0.0f);
    be->grouped_gemm(be, P_grad(m, y->w13), true, dhh, y->X.p, dp->group_rows, m->El, 1, 2 * Fl, h, 0, 1, 0, 1.0f);
    be->zero(be, dgath, (size_t)(etp > 1 ? etp : 1) * pad * h * a);
    be->permute(be, dgath, dX, sort_src, rows, 1, h);
    be->phase_end(be, PHASE_MOE_COMPUTE);

    be->phase_begin(be, PHASE_DISPATCH_COMM);
    if (etp > 1) be->reduce_scatter(be, drecv, dgath, (size_t)pad * h, DT_ACT, GROUP_ETP);
    void *dsend = buf_get(m, &m->t_send, (size_t)dp->send_rows * h * a);
    ep_all_to_all(m, dp, drecv, dsend, 0);
    be->phase_end(be, PHASE_DISPATCH_COMM);

    be->phase_begin(be, PHASE_MOE_COMPUTE);
    be->permute_backward(be, dxn2, dsend, row_of, T, k, h);
    /* router */
    float *dlog = buf_get(m, &m->g_logits_f, (size_t)T * E * 4);
    void *dlog_a = buf_get(m, &m->g_logits_a, (size_t)T * E * a);
    be->router_backward(be, dlog, dprob, y->probs.p, y->topk_idx.p, y->topk_prob.p, T, E, k, k > 1);
    /* the aux loss of this micro-batch enters the step loss with weight
     * T * dloss (one of B*s/T micro-batches of the global batch) */
    if (m->aux_coeff > 0) be->aux_loss_backward(be, dlog, y->probs.p, y->gcoef.p, T, E, m->dloss * (float)T);
    be->f32_to_act(be, dlog_a, dlog, (size_t)T * E);
    be->gemm(be, dxn2, false, dlog_a, P_act(m, y->router), T, h, E, 0, 0, 1.0f);
    be->gemm(be, P_grad(m, y->router), true, dlog_a, y->xn2.p, E, h, T, 1, 0, 1.0f);
    if (y->sh13 >= 0)
        mlp_backward(m, y->sh13, y->sh2, m->spec.shared_ffn, y->xn2.p, dout, dxn2, &y->mlp_h,
                     &y->mlp_a, 1.0f);
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

static void mlp_block_forward(Model *m, Layer *y, const void *x_mid, void *x_out)
{
    Backend *be = m->be;
    int T = m->T, h = m->h;
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *xn2 = buf_get(m, &y->xn2, (size_t)T * h * A(m));
    float *rstd2 = buf_get(m, &y->rstd2, (size_t)T * 4);
    void *tmp = buf_get(m, &m->t_moe, (size_t)T * h * A(m));
    be->rmsnorm_forward(be, xn2, rstd2, x_mid, P_act(m, y->mlp_norm), T, h, MODEL_RMS_EPS);
    be->phase_end(be, PHASE_MOE_COMPUTE);
    if (y->moe) {
        moe_forward(m, y, xn2, tmp);
    } else {
        be->phase_begin(be, PHASE_MOE_COMPUTE);
        mlp_forward(m, y->d13, y->d2, m->spec.dense_ffn, xn2, tmp, &y->mlp_h, &y->mlp_a, 0.0f);
        be->phase_end(be, PHASE_MOE_COMPUTE);
    }
    be->add_act(be, x_out, x_mid, tmp, (size_t)T * h);
}

/* dx [T, h]: in gradient wrt x_out, out gradient wrt x_mid */
static void mlp_block_backward(Model *m, Layer *y, void *dx)
{
    Backend *be = m->be;
    int T = m->T, h = m->h;
    void *dxn = buf_get(m, &m->g_t1, (size_t)T * h * A(m));
    if (y->moe) {
        moe_backward(m, y, dx, dxn);
    } else {
        be->phase_begin(be, PHASE_MOE_COMPUTE);
        mlp_backward(m, y->d13, y->d2, m->spec.dense_ffn, y->xn2.p, dx, dxn, &y->mlp_h, &y->mlp_a, 0.0f);
        be->phase_end(be, PHASE_MOE_COMPUTE);
    }
    be->phase_begin(be, PHASE_MOE_COMPUTE);
    void *dtmp = buf_get(m, &m->g_t2, (size_t)T * h * A(m));
    be->rmsnorm_backward(be, dtmp, P_grad(m, y->mlp_norm), dxn, y->x_mid.p, P_act(m, y->mlp_norm),
                         y->rstd2.p, T, h);
    be->add_act(be, dx, dx, dtmp, (size_t)T * h);
    be->phase_end(be, PHASE_MOE_COMPUTE);
}

int model_forward_backward(Model *m, const int32_t *tokens, const int32_t *targets, float dloss,
                           double *loss_sum, MpError *err)
{
    (void)err;
    Backend *be = m->be;
    int T = m->T, h = m->h, V = m->spec.vocab;
    size_t a = A(m);
    m->dropped = 0;
    m->dloss = dloss;
    be->phase_begin(be, PHASE_OTHER);
    int32_t *tok = buf_get(m, &m->tokens, sizeof(int32_t) * (size_t)T);
    int32_t *tgt = buf_get(m, &m->targets, sizeof(int32_t) * (size_t)T);
    be->upload(be, tok, tokens, sizeof(int32_t) * (size_t)T);
    be->upload(be, tgt, targets, sizeof(int32_t) * (size_t)T);
    for (int l = 0; l <= m->L; l++) buf_get(m, &m->xs[l], (size_t)T * h * a);
    be->embedding_forward(be, m->xs[0].p, tok, P_act(m, m->emb), T, h);
    be->phase_end(be, PHASE_OTHER);
    for (int l = 0; l < m->L; l++) {
        Layer *y = &m->layer[l];
        void *x_mid = buf_get(m, &y->x_mid, (size_t)T * h * a);
        attention_forward(m, y, m->xs[l].p, x_mid);
        mlp_block_forward(m, y, x_mid, m->xs[l + 1].p);
    }
    be->phase_begin(be, PHASE_OTHER);
    void *xf = buf_get(m, &m->xf, (size_t)T * h * a);
    float *rstdf = buf_get(m, &m->rstdf, (size_t)T * 4);
    void *logits = buf_get(m, &m->logits, (size_t)T * V * a);
    float *losses = buf_get(m, &m->losses, (size_t)T * 4);
    be->rmsnorm_forward(be, xf, rstdf, m->xs[m->L].p, P_act(m, m->final_norm), T, h, MODEL_RMS_EPS);
    be->gemm(be, logits, false, xf, P_act(m, m->out), T, V, h, 0, 1, 0.0f);
    be->cross_entropy(be, losses, logits, logits, tgt, T, V, dloss);   /* dlogits in place */
    void *dxf = buf_get(m, &m->g_t1, (size_t)T * h * a);
    void *dx = buf_get(m, &m->g_x, (size_t)T * h * a);
    be->gemm(be, dxf, false, logits, P_act(m, m->out), T, h, V, 0, 0, 0.0f);
    be->gemm(be, P_grad(m, m->out), true, logits, xf, V, h, T, 1, 0, 1.0f);
    be->rmsnorm_backward(be, dx, P_grad(m, m->final_norm), dxf, m->xs[m->L].p,
                         P_act(m, m->final_norm), rstdf, T, h);
    be->phase_end(be, PHASE_OTHER);
    for (int l = m->L - 1; l >= 0; l--) {
        Layer *y = &m->layer[l];
        mlp_block_backward(m, y, dx);
        attention_backward(m, y, m->xs[l].p, dx);
    }
    be->phase_begin(be, PHASE_OTHER);
    be->embedding_backward(be, P_grad(m, m->emb), dx, tok, T, h);
    be->accumulate_sum(be, m->loss_acc, losses, (size_t)T);
    if (loss_sum) {
        double aux;
        model_read_losses(m, GROUP_KIND_COUNT, loss_sum, &aux);
        *loss_sum += aux;
    }
    be->phase_end(be, PHASE_OTHER);
    return 0;
}

void model_zero_grads(Model *m)
{
    for (int ar = 0; ar < 2; ar++)
        if (m->arena[ar].n) m->be->zero(m->be, m->arena[ar].grad, m->arena[ar].n * sizeof(float));
}

void model_sync_grads(Model *m)
{
    Backend *be = m->be;
    be->phase_begin(be, PHASE_GRAD_SYNC);
    if (m->arena[0].n && be->comms->size_of[GROUP_DP_CP] > 1)
        be->all_reduce(be, m->arena[0].grad, m->arena[0].n, DT_F32, GROUP_DP_CP);
    if (m->arena[1].n && be->comms->size_of[GROUP_EDP] > 1)
        be->all_reduce(be, m->arena[1].grad, m->arena[1].n, DT_F32, GROUP_EDP);
    be->phase_end(be, PHASE_GRAD_SYNC);
}

void model_adam_step(Model *m, float lr, int t)
{
    Backend *be = m->be;
    be->phase_begin(be, PHASE_OPTIMIZER);
    for (int ar = 0; ar < 2; ar++) {
        Arena *r = &m->arena[ar];
        if (!r->n) continue;
        /* AdamW, beta2 0.95 and eps 1e-8 (Megatron defaults for LLM training), no weight decay */
        be->adam(be, r->master, r->act, r->grad, r->m, r->v, r->n, lr, 0.9f, 0.95f, 1e-8f, 0.0f, t);
    }
    be->phase_end(be, PHASE_OPTIMIZER);
}

int model_num_params(const Model *m) { return m->nparams; }
const ParamInfo *model_param(const Model *m, int i) { return &m->params[i]; }
size_t model_local_params(const Model *m) { return m->arena[0].n + m->arena[1].n; }
int model_dropped_pairs(const Model *m) { return m->dropped; }

void model_param_grad_host(Model *m, int p, float *out)
{
    m->be->download(m->be, out, P_grad(m, p), m->params[p].n * sizeof(float));
}

void model_param_value_host(Model *m, int p, float *out)
{
    m->be->download(m->be, out, P_master(m, p), m->params[p].n * sizeof(float));
}

void model_param_set_host(Model *m, int p, const float *values)
{
    m->be->upload(m->be, P_master(m, p), values, m->params[p].n * sizeof(float));
    if (m->be->act_bytes != 4) m->be->f32_to_act(m->be, P_act(m, p), P_master(m, p), m->params[p].n);
}
