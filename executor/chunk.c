/* chunk.c: a chunk of layers (one virtual pipeline stage) for one
 * micro-batch: embedding on the first stage, the layers, output layer and
 * loss on the last (chunk.h). */
#include "executor/chunk.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_RMS_EPS 1e-5f   /* Mixtral rms_norm_eps, as layer.c */

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
    size_t a = (size_t)env->be->act_bytes, T = (size_t)d->T, h = (size_t)d->h;
    for (int l = c->l0; l <= c->l1; l++) buf_get(env, &mb->xs[l], T * h * a);
    for (int l = c->l0; l < c->l1; l++) layer_reserve(&c->layers[l], mb);
    buf_get(env, &mb->dx, T * h * a);
    if (c->first) buf_get(env, &mb->tokens, sizeof(int32_t) * T);
    if (c->last) {
        buf_get(env, &mb->targets, sizeof(int32_t) * T);
        buf_get(env, &mb->xf, T * h * a);
        buf_get(env, &mb->rstdf, T * 4);
        buf_get(env, &mb->logits, T * (size_t)d->V * a);
        buf_get(env, &mb->losses, T * 4);
        buf_get(env, &env->bwd.t1, T * h * a);
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

static int step_failed(const StepEnv *env)
{
    return env->failed || env->be->status(env->be, NULL);
}

int chunk_forward(const Chunk *c, MicroBatch *mb, MpError *err)
{
    StepEnv *env = c->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    int T = d->T, h = d->h, V = d->V;
    size_t a = (size_t)be->act_bytes;
    if (step_failed(env)) return chunk_failed(c, err);
    be->phase_begin(be, PHASE_OTHER);
    for (int l = c->l0; l <= c->l1; l++) buf_get(env, &mb->xs[l], (size_t)T * h * a);
    if (c->first) {
        int32_t *tok = buf_get(env, &mb->tokens, sizeof(int32_t) * (size_t)T);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        be->upload(be, tok, mb->h_tokens, sizeof(int32_t) * (size_t)T);
    }
    if (c->last) {
        int32_t *tgt = buf_get(env, &mb->targets, sizeof(int32_t) * (size_t)T);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        be->upload(be, tgt, mb->h_targets, sizeof(int32_t) * (size_t)T);
    }
    if (c->first) be->embedding_forward(be, mb->xs[c->l0].p, mb->tokens.p, params_act(env->ps, c->emb), T, h);
    be->phase_end(be, PHASE_OTHER);

    for (int l = c->l0; l < c->l1 && !env->failed; l++)
        layer_forward(&c->layers[l], mb, mb->xs[l].p, mb->xs[l + 1].p);
    if (env->failed) return chunk_failed(c, err);

    if (c->last) {
        be->phase_begin(be, PHASE_OTHER);
        void *xf = buf_get(env, &mb->xf, (size_t)T * h * a);
        float *rstdf = buf_get(env, &mb->rstdf, (size_t)T * 4);
        void *logits = buf_get(env, &mb->logits, (size_t)T * V * a);
        float *losses = buf_get(env, &mb->losses, (size_t)T * 4);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        be->rmsnorm_forward(be, xf, rstdf, mb->xs[c->l1].p, params_act(env->ps, c->final_norm), T,
                            h, CHUNK_RMS_EPS);
        be->gemm(be, logits, false, xf, params_act(env->ps, c->out), T, V, h, 0, 1, 0.0f);
        /* token losses, and d loss / d logits in place of the logits (the
         * fused kernel: the loss's backward is done here, kept for backward) */
        be->cross_entropy(be, losses, logits, logits, mb->targets.p, T, V, mb->dloss);
        be->accumulate_sum(be, env->loss_acc, losses, (size_t)T);
        be->phase_end(be, PHASE_OTHER);
    }
    return step_failed(env) ? chunk_failed(c, err) : 0;
}

int chunk_backward(const Chunk *c, MicroBatch *mb, MpError *err)
{
    StepEnv *env = c->env;
    Backend *be = env->be;
    const ModelDims *d = &env->dim;
    int T = d->T, h = d->h, V = d->V;
    size_t a = (size_t)be->act_bytes;
    if (step_failed(env)) return chunk_failed(c, err);
    void *dx = buf_get(env, &mb->dx, (size_t)T * h * a);
    if (env->failed) return chunk_failed(c, err);
    if (c->last) {
        be->phase_begin(be, PHASE_OTHER);
        void *dxf = buf_get(env, &env->bwd.t1, (size_t)T * h * a);
        if (env->failed) { be->phase_end(be, PHASE_OTHER); return chunk_failed(c, err); }
        be->gemm(be, dxf, false, mb->logits.p, params_act(env->ps, c->out), T, h, V, 0, 0, 0.0f);
        be->gemm(be, params_grad(env->ps, c->out), true, mb->logits.p, mb->xf.p, V, h, T, 1, 0, 1.0f);
        be->rmsnorm_backward(be, dx, params_grad(env->ps, c->final_norm), dxf, mb->xs[c->l1].p,
                             params_act(env->ps, c->final_norm), mb->rstdf.p, T, h);
        be->phase_end(be, PHASE_OTHER);
    }
    for (int l = c->l1 - 1; l >= c->l0 && !env->failed; l--)
        layer_backward(&c->layers[l], mb, dx);
    if (env->failed) return chunk_failed(c, err);
    if (c->first) {
        be->phase_begin(be, PHASE_OTHER);
        be->embedding_backward(be, params_grad(env->ps, c->emb), dx, mb->tokens.p, T, h);
        be->phase_end(be, PHASE_OTHER);
    }
    return step_failed(env) ? chunk_failed(c, err) : 0;
}
