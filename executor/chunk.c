/* chunk.c: a chunk of layers (one virtual pipeline stage) for one
 * micro-batch: embedding on the first stage, the layers, output layer and
 * loss on the last (chunk.h). */
#include "executor/chunk.h"

#include <stdlib.h>
#include <string.h>


int micro_batch_init(MicroBatch *mb, const Chunk *c)
{
    int L = c->env->dim.L;
    memset(mb, 0, sizeof *mb);
    mb->acts = calloc((size_t)L, sizeof(LayerActs));
    mb->xs = calloc((size_t)L + 1, sizeof(Buf));
    if (!mb->acts || !mb->xs) return -1;
    for (int l = c->l0; l < c->l1; l++)
        if (layer_acts_init(&mb->acts[l], &c->layers[l])) return -1;
    return 0;
}

void micro_batch_free(MicroBatch *mb, const Chunk *c)
{
    StepEnv *env = c->env;
    if (mb->acts)
        for (int l = c->l0; l < c->l1; l++) layer_acts_free(env, &mb->acts[l]);
    if (mb->xs)
        for (int l = 0; l <= env->dim.L; l++) buf_free(env, &mb->xs[l]);
    Buf *bs[] = {&mb->tokens, &mb->targets, &mb->xf, &mb->rstdf, &mb->logits, &mb->losses, &mb->dx};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) buf_free(env, bs[i]);
    free(mb->acts);
    free(mb->xs);
    memset(mb, 0, sizeof *mb);
}

int micro_batch_dropped(const MicroBatch *mb, const Chunk *c)
{
    int n = 0;
    for (int l = c->l0; l < c->l1; l++) n += mb->acts[l].dropped;
    return n;
}

/* the step's error: the backend's sticky status first (a failed kernel or
 * collective), else the allocation that failed */
void chunk_reserve(const Chunk *c, MicroBatch *mb)
{
    StepEnv *env = c->env;
    const ModelDims *d = &env->dim;
    /* the residual stream is the sequence-parallel shard [Ts, h] */
    size_t a = (size_t)env->be->act_bytes, T = (size_t)d->T, h = (size_t)d->h, Ts = (size_t)d->Ts;
    for (int l = c->l0; l <= c->l1; l++) buf_get(env, &mb->xs[l], Ts * h * a);
    for (int l = c->l0; l < c->l1; l++) layer_reserve(&c->layers[l], mb);
    buf_get(env, &mb->dx, Ts * h * a);
    if (c->first) buf_get(env, &mb->tokens, sizeof(int32_t) * T);
    if (c->last) {
        buf_get(env, &mb->targets, sizeof(int32_t) * T);
        head_reserve(env, mb);
    }
}

static int chunk_failed(const Chunk *c, MpError *err)
{
    Backend *be = c->env->be;
    if (be->status(be, err)) return -1;
    if (c->env->failed_bytes)
        return mp_fail(err, "executor: device memory: an allocation of %zu bytes failed",
                       c->env->failed_bytes);
    return mp_fail(err, "executor: out of host memory");
}

/* Gradient buckets (params.h): after the backward of tag (-1 embedding,
 * l a decoder layer, L the head); on the last micro-batch of the step a
 * layer's KV-replica sum runs first, so that its bucket may start */
static void backward_done(const Chunk *c, int tag, const Layer *layer)
{
    ParamStore *ps = c->env->ps;
    if (layer && ps->armed && ps->layer_bwd[tag + 1] + 1 == ps->micro_batches) layer_sync_replicated_kv(layer);
    params_layer_backward_done(ps, tag);
}

static int step_failed(const StepEnv *env)
{
    return env->failed || env->be->status(env->be, NULL);
}

int chunk_forward(const Chunk *c, MicroBatch *mb, MpError *err)
{
    StepEnv *env = c->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    int T = d->T, h = d->h;
    size_t a = (size_t)be->act_bytes;
    if (step_failed(env)) return chunk_failed(c, err);
    be->phase_begin(be, PHASE_OTHER);
    for (int l = c->l0; l <= c->l1; l++) buf_get(env, &mb->xs[l], (size_t)d->Ts * h * a);
    if (c->first) {
        int32_t *tok = buf_get(env, &mb->tokens, sizeof(int32_t) * (size_t)T);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        vocab_upload_ids(env, tok, mb->h_tokens);
    }
    if (c->last) {
        int32_t *tgt = buf_get(env, &mb->targets, sizeof(int32_t) * (size_t)T);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        vocab_upload_ids(env, tgt, mb->h_targets);
    }
    if (c->first) {
        params_layer_forward(env->ps, -1);   /* its parameters' all-gather (overlap param) */
        embed_forward(env, c->emb, mb, mb->xs[c->l0].p);
    }
    be->phase_end(be, PHASE_OTHER);

    for (int l = c->l0; l < c->l1 && !env->failed; l++) {
        params_layer_forward(env->ps, l);
        layer_forward(&c->layers[l], mb, mb->xs[l].p, mb->xs[l + 1].p);
    }
    if (env->failed) return chunk_failed(c, err);

    if (c->last) {
        be->phase_begin(be, PHASE_OTHER);
        /* final norm, output layer, loss (vocabulary-parallel with TP) */
        params_layer_forward(env->ps, d->L);
        head_forward(env, c->final_norm, c->out, mb, mb->xs[c->l1].p);
        be->phase_end(be, PHASE_OTHER);
    }
    return step_failed(env) ? chunk_failed(c, err) : 0;
}

int chunk_backward(const Chunk *c, MicroBatch *mb, MpError *err)
{
    StepEnv *env = c->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    size_t a = (size_t)be->act_bytes;
    if (step_failed(env)) return chunk_failed(c, err);
    void *dx = buf_get(env, &mb->dx, (size_t)d->Ts * d->h * a);
    if (env->failed) return chunk_failed(c, err);
    if (c->last) {
        be->phase_begin(be, PHASE_OTHER);
        head_backward(env, c->final_norm, c->out, mb, mb->xs[c->l1].p, dx);
        be->phase_end(be, PHASE_OTHER);
        backward_done(c, d->L, NULL);
    }
    for (int l = c->l1 - 1; l >= c->l0 && !env->failed; l--) {
        layer_backward(&c->layers[l], mb, dx);
        backward_done(c, l, &c->layers[l]);
    }
    if (env->failed) return chunk_failed(c, err);
    if (c->first) {
        be->phase_begin(be, PHASE_OTHER);
        embed_backward(env, c->emb, mb, dx);
        be->phase_end(be, PHASE_OTHER);
        backward_done(c, -1, NULL);
    }
    return step_failed(env) ? chunk_failed(c, err) : 0;
}
