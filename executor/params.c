/* params.c: the parameter table, its arenas, initialisation, gradient
 * reduction over each parameter's groups, and Adam (params.h). */
#include "executor/params.h"
#include "executor/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void params_init(ParamStore *ps, Backend *be, uint64_t seed, int h, int Fe, int Fl, int e0, int f0)
{
    memset(ps, 0, sizeof *ps);
    ps->be = be; ps->seed = seed;
    ps->h = h; ps->Fe = Fe; ps->Fl = Fl; ps->e0 = e0; ps->f0 = f0;
}

unsigned params_reduce_groups(ParamShard shard)
{
    switch (shard) {
    case SHARD_EXPERT:
    case SHARD_EXPERT_COLUMN:
    case SHARD_EXPERT_ROW:
        return PARAM_GROUP_BIT(GROUP_EDP);
    case SHARD_REPLICATED:
        /* replicated over TP but fed by the sequence-parallel slice of each
         * TP rank: the TP members' gradients are partial sums */
        return PARAM_GROUP_BIT(GROUP_DP_CP) | PARAM_GROUP_BIT(GROUP_TP);
    default:
        return PARAM_GROUP_BIT(GROUP_DP_CP);
    }
}

int params_add(ParamStore *ps, const char *name, int uid, ParamKind kind, ParamShard shard,
               int parts, int part, size_t n, float init_scale, float init_value)
{
    if (ps->count == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        ParamInfo *np = realloc(ps->params, sizeof(ParamInfo) * (size_t)cap);
        if (!np) return -1;
        ps->params = np;
        ps->cap = cap;
    }
    ParamInfo *p = &ps->params[ps->count];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->uid = uid; p->kind = kind; p->shard = shard; p->parts = parts; p->part = part;
    p->reduce_groups = params_reduce_groups(shard);
    p->expert = shard == SHARD_EXPERT || shard == SHARD_EXPERT_COLUMN || shard == SHARD_EXPERT_ROW;
    p->n = n;
    p->init_scale = init_scale; p->init_value = init_value;
    p->layer = ps->cur_layer;
    p->offset = ps->arena[p->expert].n;
    ps->arena[p->expert].n += n;
    return ps->count++;
}

void params_set_split(ParamStore *ps, int p, int nsec, const int *rows, const int *lrows,
                      const int *row0, int cols, int lcols, int col0)
{
    ParamInfo *q = &ps->params[p];
    q->nsec = nsec;
    for (int s = 0; s < nsec && s < 3; s++) {
        q->sec_rows[s] = rows[s]; q->sec_lrows[s] = lrows[s]; q->sec_row0[s] = row0[s];
    }
    q->cols = cols; q->lcols = lcols; q->col0 = col0;
}

/* local element i of a split PARAM_PLAIN tensor -> flat index in the full one */
static size_t split_flat(const ParamInfo *p, size_t i)
{
    size_t lr = i / (size_t)p->lcols, c = (size_t)p->col0 + i % (size_t)p->lcols;
    size_t full0 = 0, local0 = 0;
    for (int s = 0; s < p->nsec; s++) {
        if (lr < local0 + (size_t)p->sec_lrows[s])
            return (full0 + (size_t)p->sec_row0[s] + (lr - local0)) * (size_t)p->cols + c;
        full0 += (size_t)p->sec_rows[s];
        local0 += (size_t)p->sec_lrows[s];
    }
    return i;   /* not reached for a consistent description */
}

void params_global_index(const ParamStore *ps, int pi, size_t i, int *uid, size_t *flat)
{
    const ParamInfo *p = &ps->params[pi];
    size_t h = (size_t)ps->h, Fl = (size_t)ps->Fl, Fe = (size_t)ps->Fe;
    if (p->kind == PARAM_W13) {           /* local [El][2Fl][h] -> w1|w3 [E][Fe][h] */
        size_t el = i / (2 * Fl * h), r = (i / h) % (2 * Fl), c = i % h;
        size_t e = (size_t)ps->e0 + el;
        int up = r >= Fl;
        size_t f = (size_t)ps->f0 + (up ? r - Fl : r);
        *uid = p->uid + up;
        *flat = (e * Fe + f) * h + c;
    } else if (p->kind == PARAM_W2) {     /* local [El][h][Fl] -> w2 [E][h][Fe] */
        size_t el = i / (h * Fl), r = (i / Fl) % h, c = i % Fl;
        size_t e = (size_t)ps->e0 + el;
        *uid = p->uid;
        *flat = (e * h + r) * Fe + (size_t)ps->f0 + c;
    } else {
        *uid = p->uid;
        *flat = p->nsec ? split_flat(p, i) : i;
    }
}

/* ---- initialisation: hash of (seed, tensor id, full-tensor index) ---- */

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

typedef struct {
    const ParamStore *ps;
    int p;
    float *host;
    size_t lo, hi;
} InitJob;

static void *init_job(void *arg)
{
    InitJob *j = arg;
    const ParamInfo *p = &j->ps->params[j->p];
    uint64_t key0 = mix64(j->ps->seed ^ mix64((uint64_t)p->uid + 0x51ed27ull));
    uint64_t key1 = mix64(j->ps->seed ^ mix64((uint64_t)p->uid + 1 + 0x51ed27ull));
    for (size_t i = j->lo; i < j->hi; i++) {
        int uid = p->uid;
        size_t flat = i;
        if (p->kind != PARAM_PLAIN || p->nsec) params_global_index(j->ps, j->p, i, &uid, &flat);
        j->host[i] = p->init_scale * hash_uniform(uid == p->uid ? key0 : key1, flat);
    }
    return NULL;
}

/* large tensors (Mixtral experts: 10^9 elements) are filled by 16 threads */
static void init_param_parallel(const ParamStore *ps, int p, float *host)
{
    enum { THREADS = 16 };
    size_t n = ps->params[p].n;
    InitJob jobs[THREADS];
    pthread_t th[THREADS];
    int nt = n < (1u << 20) ? 1 : THREADS;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (InitJob){ps, p, host, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt};
        if (nt == 1 || pthread_create(&th[t], NULL, init_job, &jobs[t]) != 0) {
            init_job(&jobs[t]);
            th[t] = 0;
        }
    }
    for (int t = 0; t < nt; t++) if (th[t]) pthread_join(th[t], NULL);
}

/* Buckets of arena ar, appended to ps->bucket: walking the arena's
 * parameters from its end (the last layers, whose backward runs first), a
 * bucket closes at a parameter boundary once it holds bucket_elems
 * elements (0: the whole arena is one bucket); the size is at least 1/16
 * of the arena, so an arena has at most 17 buckets and both together stay
 * below BACKEND_ASYNC_MAX pending collectives.  Then the parameters get their
 * offsets again, bucket after bucket in arena order, each sharded bucket
 * padded to shards * shard_n.  Returns -1 when out of host memory. */
#define PARAMS_MAX_BUCKETS (BACKEND_ASYNC_MAX / 2)
static int layout_buckets(ParamStore *ps, int ar)
{
    ParamArena *r = &ps->arena[ar];
    int np = 0;
    for (int i = 0; i < ps->count; i++) np += ps->params[i].expert == ar;
    size_t size = ps->bucket_elems ? ps->bucket_elems : (r->n ? r->n : 1);
    size_t most = (r->n + PARAMS_MAX_BUCKETS / 2 - 1) / (PARAMS_MAX_BUCKETS / 2);
    if (size < most) size = most;
    /* the arena's parameters in arena order (params_add order) */
    int *idx = malloc(sizeof(int) * (size_t)(np ? np : 1));
    int *cut = malloc(sizeof(int) * (size_t)(np + 1));   /* first parameter of each bucket, descending */
    if (!idx || !cut) { free(idx); free(cut); return -1; }
    for (int i = 0, k = 0; i < ps->count; i++) if (ps->params[i].expert == ar) idx[k++] = i;
    int nb = 0;
    size_t acc = 0;
    for (int k = np - 1; k >= 0; k--) {
        acc += ps->params[idx[k]].n;
        if (acc >= size || k == 0) { cut[nb++] = k; acc = 0; }
    }
    if (np == 0) cut[nb++] = 0;
    ParamBucket *nbk = realloc(ps->bucket, sizeof(ParamBucket) * (size_t)(ps->nbuckets + nb));
    if (!nbk) { free(idx); free(cut); return -1; }
    ps->bucket = nbk;
    size_t cursor = 0, own = 0;
    for (int j = nb - 1; j >= 0; j--) {   /* arena order: the bucket of the first parameters first */
        int k0 = cut[j], k1 = j > 0 ? cut[j - 1] : np;
        ParamBucket *b = &ps->bucket[ps->nbuckets++];
        memset(b, 0, sizeof *b);
        b->arena = ar;
        b->lo = cursor;
        b->grad_req = b->param_req = -1;
        for (int k = k0; k < k1; k++) {
            ps->params[idx[k]].offset = cursor;
            cursor += ps->params[idx[k]].n;
        }
        b->n = cursor - b->lo;
        /* shards rounded up to 64 elements: every shard starts 128-byte
         * aligned in the bf16 working copy (NCCL, vector loads) */
        b->shard_n = ((b->n + (size_t)r->shards - 1) / (size_t)r->shards + 63) / 64 * 64;
        b->own = own;
        if (r->shards > 1) {
            cursor = b->lo + b->shard_n * (size_t)r->shards;
            own += b->shard_n;
        }
    }
    r->shard_n = r->shards > 1 ? own : 0;
    r->full = cursor;
    free(idx);
    free(cut);
    return 0;
}

int params_allocate(ParamStore *ps, MpError *err)
{
    Backend *be = ps->be;
    size_t A = (size_t)be->act_bytes;
    int L2 = ps->num_layers + 2;
    for (int ar = 0; ar < 2; ar++) {
        ParamArena *r = &ps->arena[ar];
        r->group = ar ? GROUP_EDP : GROUP_DP_CP;
        int P = be->comms->size_of[r->group];
        r->shards = ps->distributed && P > 1 && r->n > 0 ? P : 1;
        r->shard_rank = r->shards > 1 ? be->comms->rank_in[r->group] : 0;
        if (layout_buckets(ps, ar)) return mp_fail(err, "executor: out of host memory");
        size_t full = r->full ? r->full : 1;
        size_t own = r->shards > 1 ? r->shard_n : full;
        r->master_sharded = r->shards > 1 && A != 4;
        /* memory accounting (backend.h mem_category): the act copy is the
         * weights; a separate fp32 master is optimizer state (Megatron's
         * 12 bytes: master, m, v); on the CPU the float master IS the act copy */
        be->mem_category(be, A == 4 ? MEM_WEIGHTS : MEM_OPTIMIZER);
        r->master = be->alloc(be, (r->master_sharded ? own : full) * sizeof(float));
        be->mem_category(be, MEM_GRADIENTS);
        r->grad = be->alloc(be, full * sizeof(float));   /* reduce-scattered in place */
        be->mem_category(be, MEM_OPTIMIZER);
        r->m = be->alloc(be, own * sizeof(float));
        r->v = be->alloc(be, own * sizeof(float));
        be->mem_category(be, MEM_WEIGHTS);
        r->act = A == 4 ? (void *)r->master : be->alloc(be, full * A);
        be->mem_category(be, MEM_ACTIVATIONS);
        if (!r->master || !r->grad || !r->m || !r->v || !r->act)
            return mp_fail(err, "executor: device memory: cannot hold %zu parameters (%s arena)",
                           r->n, ar ? "expert" : "dense");
    }
    ps->bucket_has = calloc((size_t)(ps->nbuckets ? ps->nbuckets : 1) * (size_t)L2, 1);
    ps->layer_bwd = calloc((size_t)L2, sizeof(int));
    if (!ps->bucket_has || !ps->layer_bwd) return mp_fail(err, "executor: out of host memory");
    for (int i = 0; i < ps->count; i++) {
        const ParamInfo *p = &ps->params[i];
        int tag = p->layer + 1;
        if (tag < 0 || tag >= L2 || !p->n) continue;
        for (int k = 0; k < ps->nbuckets; k++) {
            ParamBucket *b = &ps->bucket[k];
            if (b->arena == p->expert && p->offset >= b->lo && p->offset < b->lo + b->n)
                ps->bucket_has[(size_t)k * (size_t)L2 + (size_t)tag] = 1;
        }
    }
    /* deterministic, mapping-independent initialisation */
    size_t maxn = 0;
    for (int i = 0; i < ps->count; i++) if (ps->params[i].n > maxn) maxn = ps->params[i].n;
    float *host = malloc((maxn ? maxn : 1) * sizeof(float));
    if (!host) return mp_fail(err, "executor: out of host memory");
    for (int i = 0; i < ps->count; i++) {
        ParamInfo *p = &ps->params[i];
        if (p->init_scale == 0) {
            for (size_t j = 0; j < p->n; j++) host[j] = p->init_value;
        } else {
            init_param_parallel(ps, i, host);
        }
        /* a sharded master is filled from the full values staged in the
         * (still unused) gradient arena */
        ParamArena *r = &ps->arena[p->expert];
        float *dst = r->master_sharded ? r->grad + p->offset : params_master(ps, i);
        be->upload(be, dst, host, p->n * sizeof(float));
    }
    free(host);
    for (int ar = 0; ar < 2; ar++) {
        ParamArena *r = &ps->arena[ar];
        if (A == 4) continue;
        if (!r->master_sharded) { be->f32_to_act(be, r->act, r->master, r->full); continue; }
        be->f32_to_act(be, r->act, r->grad, r->full);
        for (int k = 0; k < ps->nbuckets; k++) {
            const ParamBucket *b = &ps->bucket[k];
            if (b->arena != ar) continue;
            be->copy(be, r->master + b->own, r->grad + b->lo + (size_t)r->shard_rank * b->shard_n,
                     b->shard_n * sizeof(float));
        }
        be->zero(be, r->grad, r->full * sizeof(float));
    }
    return 0;
}

void params_free(ParamStore *ps)
{
    Backend *be = ps->be;
    for (int ar = 0; ar < 2; ar++) {
        ParamArena *r = &ps->arena[ar];
        if (r->act && r->act != (void *)r->master) be->release(be, r->act);
        if (r->master) be->release(be, r->master);
        if (r->grad) be->release(be, r->grad);
        if (r->m) be->release(be, r->m);
        if (r->v) be->release(be, r->v);
        memset(r, 0, sizeof *r);
    }
    free(ps->bucket);
    free(ps->bucket_has);
    free(ps->layer_bwd);
    ps->bucket = NULL; ps->bucket_has = NULL; ps->layer_bwd = NULL;
    ps->nbuckets = 0;
    free(ps->params);
    ps->params = NULL;
    ps->count = ps->cap = 0;
}

void params_zero_grads(ParamStore *ps)
{
    for (int i = 0; i < ps->count; i++) ps->params[i].grad_unset = 1;
    /* (padding elements of a sharded arena are never written: they stay 0
     * from params_allocate; the all-gather of reduced gradients writes 0s) */
}

float params_grad_beta(ParamStore *ps, int p)
{
    if (!ps->params[p].grad_unset) return 1.0f;
    ps->params[p].grad_unset = 0;
    return 0.0f;
}

float *params_grad_accumulate(ParamStore *ps, int p)
{
    ParamInfo *q = &ps->params[p];
    if (q->grad_unset) {
        ps->be->zero(ps->be, params_grad(ps, p), q->n * sizeof(float));
        q->grad_unset = 0;
    }
    return params_grad(ps, p);
}

void params_grads_settle(ParamStore *ps, int ar, size_t lo, size_t hi)
{
    for (int i = 0; i < ps->count; i++) {
        ParamInfo *q = &ps->params[i];
        if (q->grad_unset && q->expert == ar && q->offset < hi && q->offset + q->n > lo)
            (void)params_grad_accumulate(ps, i);
    }
}

/* For each group kind other than the arena's data-parallel group, each
 * maximal run of parameters adjacent in the arena, inside [lo, hi), that
 * reduce over it is one all-reduce (sum, fp32): TP for the replicated ones. */
static void reduce_side_groups(ParamStore *ps, int ar, size_t lo, size_t hi)
{
    Backend *be = ps->be;
    const ParamArena *r = &ps->arena[ar];
    for (int g = 0; g < GROUP_KIND_COUNT; g++) {
        if (be->comms->size_of[g] <= 1 || g == (int)r->group) continue;
        /* parameters are appended in arena order: a run is a span of
         * consecutive entries of this arena that all reduce over g */
        size_t a = 0, z = 0;
        int open = 0;
        for (int i = 0; i <= ps->count; i++) {
            const ParamInfo *p = i < ps->count ? &ps->params[i] : NULL;
            if (p && (p->expert != ar || p->offset < lo || p->offset >= hi)) continue;
            int in = p && (p->reduce_groups & PARAM_GROUP_BIT(g)) && p->n > 0;
            if (in && open && p->offset != z) {   /* not adjacent (bucket padding) */
                be->all_reduce(be, r->grad + a, z - a, DT_F32, (GroupKind)g);
                open = 0;
            }
            if (in && !open) { a = p->offset; open = 1; }
            if (in) { z = p->offset + p->n; continue; }
            if (p && p->n == 0) continue;
            if (open) {
                be->all_reduce(be, r->grad + a, z - a, DT_F32, (GroupKind)g);
                open = 0;
            }
        }
    }
}

/* this rank's part of sharded bucket b in the gradient arena: where the
 * in-place reduce-scatter leaves its sum (NCCL's in-place convention) */
static float *own_grad(const ParamStore *ps, const ParamBucket *b)
{
    const ParamArena *r = &ps->arena[b->arena];
    return r->grad + b->lo + (size_t)r->shard_rank * b->shard_n;
}

/* Starts bucket k's gradient reduction: the side groups (blocking, small),
 * then over the arena's group an all-reduce in place, or (distributed) a
 * reduce-scatter of the padded bucket in place (this rank's part keeps
 * its sum). */
static void start_bucket(ParamStore *ps, int k)
{
    Backend *be = ps->be;
    ParamBucket *b = &ps->bucket[k];
    const ParamArena *r = &ps->arena[b->arena];
    b->launched = 1;
    if (!b->n) return;
    be->phase_begin(be, PHASE_GRAD_SYNC);
    params_grads_settle(ps, b->arena, b->lo, b->lo + b->n);
    reduce_side_groups(ps, b->arena, b->lo, b->lo + b->n);
    if (!ps->overlap_grad) {   /* nothing to overlap: the blocking collective */
        if (r->shards > 1)
            be->reduce_scatter(be, own_grad(ps, b), r->grad + b->lo, b->shard_n, DT_F32, r->group);
        else if (be->comms->size_of[r->group] > 1)
            be->all_reduce(be, r->grad + b->lo, b->n, DT_F32, r->group);
    } else if (r->shards > 1)
        b->grad_req = be->reduce_scatter_start(be, own_grad(ps, b), r->grad + b->lo, b->shard_n, DT_F32, r->group);
    else if (be->comms->size_of[r->group] > 1)
        b->grad_req = be->all_reduce_start(be, r->grad + b->lo, b->n, DT_F32, r->group);
    be->phase_end(be, PHASE_GRAD_SYNC);
}

void params_step_begin(ParamStore *ps)
{
    ps->armed = ps->overlap_grad;
    ps->early_starts = 0;
    for (int l = 0; l < ps->num_layers + 2; l++) ps->layer_bwd[l] = 0;
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        b->launched = 0;
        b->pending = 0;
        for (int l = 0; l < ps->num_layers + 2; l++)
            b->pending += ps->bucket_has[(size_t)k * (size_t)(ps->num_layers + 2) + (size_t)l];
    }
}

void params_layer_backward_done(ParamStore *ps, int tag)
{
    int t = tag + 1, L2 = ps->num_layers + 2;
    if (!ps->armed || t < 0 || t >= L2) return;
    if (++ps->layer_bwd[t] != ps->micro_batches) {
        ps->be->async_poll(ps->be);
        return;
    }
    /* the last micro-batch's backward of this layer: its gradients are final */
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        if (!ps->bucket_has[(size_t)k * (size_t)L2 + (size_t)t]) continue;
        if (--b->pending == 0 && !b->launched && !b->held) {
            start_bucket(ps, k);
            ps->early_starts++;
        }
    }
    ps->be->async_poll(ps->be);
}

void params_hold_bucket_of(ParamStore *ps, int p)
{
    const ParamInfo *q = &ps->params[p];
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        if (b->arena == q->expert && q->offset >= b->lo && q->offset < b->lo + b->n) b->held = 1;
    }
}

void params_reduce_grads(ParamStore *ps)
{
    Backend *be = ps->be;
    /* no parameter all-gather may still be writing (overlap_param: a
     * bucket of layers this step did not run forward) */
    for (int k = 0; k < ps->nbuckets; k++)
        if (ps->bucket[k].param_req >= 0) { be->async_wait(be, ps->bucket[k].param_req); ps->bucket[k].param_req = -1; }
    for (int k = 0; k < ps->nbuckets; k++)
        if (!ps->armed || !ps->bucket[k].launched) start_bucket(ps, k);
    /* what stayed exposed: the waits */
    be->phase_begin(be, PHASE_GRAD_SYNC);
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        if (b->grad_req >= 0) be->async_wait(be, b->grad_req);
        b->grad_req = -1;
    }
    be->phase_end(be, PHASE_GRAD_SYNC);
    ps->armed = 0;
}

void params_gather_grads(ParamStore *ps)
{
    Backend *be = ps->be;
    for (int k = 0; k < ps->nbuckets; k++) {
        const ParamBucket *b = &ps->bucket[k];
        ParamArena *r = &ps->arena[b->arena];
        if (r->shards > 1) be->all_gather(be, r->grad + b->lo, own_grad(ps, b), b->shard_n, DT_F32, r->group);
    }
}

void params_adam_step(ParamStore *ps, float lr, int t)
{
    Backend *be = ps->be;
    params_wait_all(ps);
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        ParamArena *r = &ps->arena[b->arena];
        if (!b->n) continue;
        be->phase_begin(be, PHASE_OPTIMIZER);
        /* AdamW, beta2 0.95 and eps 1e-8 (Megatron defaults for LLM training), no weight decay */
        if (r->shards == 1) {
            be->adam(be, r->master + b->lo, (char *)r->act + b->lo * (size_t)be->act_bytes, r->grad + b->lo,
                     r->m + b->lo, r->v + b->lo, b->n, lr, 0.9f, 0.95f, 1e-8f, 0.0f, t);
            be->phase_end(be, PHASE_OPTIMIZER);
            continue;
        }
        /* the owned part of the bucket (padding elements have zero gradient and stay 0) */
        size_t off = b->lo + (size_t)r->shard_rank * b->shard_n;
        float *master = r->master_sharded ? r->master + b->own : r->master + off;
        void *act = (char *)r->act + off * (size_t)be->act_bytes;
        be->adam(be, master, act, own_grad(ps, b), r->m + b->own, r->v + b->own, b->shard_n, lr, 0.9f,
                 0.95f, 1e-8f, 0.0f, t);
        be->phase_end(be, PHASE_OPTIMIZER);
        /* the updated working copy back to every member (in place): now,
         * or (overlap_param) started here and waited for before the
         * forward of the bucket's first layer */
        be->phase_begin(be, PHASE_GRAD_SYNC);
        if (ps->overlap_param)
            b->param_req = be->all_gather_start(be, (char *)r->act + b->lo * (size_t)be->act_bytes, act, b->shard_n,
                                                DT_ACT, r->group);
        else
            be->all_gather(be, (char *)r->act + b->lo * (size_t)be->act_bytes, act, b->shard_n, DT_ACT, r->group);
        be->phase_end(be, PHASE_GRAD_SYNC);
    }
}

void params_layer_forward(ParamStore *ps, int tag)
{
    int t = tag + 1, L2 = ps->num_layers + 2;
    if (t < 0 || t >= L2) return;
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        if (b->param_req < 0 || !ps->bucket_has[(size_t)k * (size_t)L2 + (size_t)t]) continue;
        ps->be->phase_begin(ps->be, PHASE_GRAD_SYNC);
        ps->be->async_wait(ps->be, b->param_req);
        ps->be->phase_end(ps->be, PHASE_GRAD_SYNC);
        b->param_req = -1;
    }
}

void params_wait_all(ParamStore *ps)
{
    for (int k = 0; k < ps->nbuckets; k++) {
        ParamBucket *b = &ps->bucket[k];
        if (b->param_req >= 0) { ps->be->async_wait(ps->be, b->param_req); b->param_req = -1; }
        if (b->grad_req >= 0) { ps->be->async_wait(ps->be, b->grad_req); b->grad_req = -1; }
    }
}

int params_layer_synced(const ParamStore *ps, int l)
{
    return ps->armed && l + 1 >= 0 && l + 1 < ps->num_layers + 2 && ps->layer_bwd[l + 1] == ps->micro_batches;
}
