/* preflight.c: checks before launch (see preflight.h). */
#include "executor/preflight.h"
#include "executor/layer.h"

#include "core/schedule.h"
#include "simulator/simulate.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest expert count of the step (executor/model.c: per-token host
 * scratch and the router kernels are sized for it). */
#define PREFLIGHT_MAX_EXPERTS 256

/* Resident memory of one CPU rank before it allocates the model: Open MPI,
 * the libraries and the embedded catalog.  Measured 2026-12-06 on the CI
 * machine: ru_maxrss of CPU runs of tests/data/exec-tiny-moe.json at seq 32
 * (model and activations under 2 MiB) was 19 MB alone and 20 MB under
 * mpirun -np 3; 64 MiB leaves room for other MPI builds and transports. */
#define PREFLIGHT_CPU_BASE_BYTES (64.0 * 1048576.0)

static void note(PreflightNotes *n, const char *fmt, const char *a, const char *b) {
    if (!n || n->count >= PREFLIGHT_MAX_NOTES) return;
    snprintf(n->line[n->count++], sizeof n->line[0], fmt, a, b);
}

int preflight_plan(Plan *p, const PlanRequested *req, PreflightNotes *notes, MpError *err) {
    const Mapping *m = &p->map;
    TrainConfig *t = &p->train;
    if (notes) notes->count = 0;
    /* parallel dimensions: the step runs TP (with sequence parallelism), DP, EP, ETP and PP */
    if (m->tp > 1) {
        /* Megatron's splits: heads, KV groups (split, or replicated when tp
         * exceeds them), vocabulary rows, FFN columns, sequence-parallel tokens */
        const ModelSpec *s = &p->model;
        int T = t->micro_batch * t->seq_len / (m->cp > 1 ? m->cp : 1);
        if (s->num_heads % m->tp)
            return mp_fail(err, "tp: %d does not divide num_heads %d", m->tp, s->num_heads);
        if (s->num_kv_groups > 0 && s->num_kv_groups % m->tp && m->tp % s->num_kv_groups)
            return mp_fail(err, "tp: %d: num_kv_groups %d must be a multiple or a divisor of tp", m->tp,
                           s->num_kv_groups);
        if (s->vocab % m->tp)
            return mp_fail(err, "tp: %d does not divide vocab %d (vocabulary-parallel embedding and loss)", m->tp,
                           s->vocab);
        if (T > 0 && T % m->tp)
            return mp_fail(err, "tp: %d does not divide the %d tokens of a micro-batch (sequence parallelism)", m->tp, T);
        if (s->dense_ffn % m->tp || s->shared_ffn % m->tp)
            return mp_fail(err, "tp: %d does not divide %s %d", m->tp, s->dense_ffn % m->tp ? "dense_ffn" : "shared_ffn",
                           s->dense_ffn % m->tp ? s->dense_ffn : s->shared_ffn);
    }
    /* context parallelism: load-balanced ring attention over 2*cp chunks */
    if (m->cp > 1 && t->seq_len % (2 * m->cp))
        return mp_fail(err, "cp: %d: seq_len %d is not a multiple of 2*cp = %d (each sequence is cut into 2*cp chunks)",
                       m->cp, t->seq_len, 2 * m->cp);
    /* pipeline: 1F1B, or interleaved with vpp > 1 (Megatron-LM's constraint
     * on the micro-batches m = gbs / (mbs * DP) of a pipeline) */
    if (m->vpp > 1 && m->pp == 1)
        return mp_fail(err, "vpp: %d: virtual pipeline stages need pp > 1", m->vpp);
    if (m->pp > 1) {
        int dp = m->dp > 0 ? m->dp : 1, mbs = t->micro_batch > 0 ? t->micro_batch : 1;
        if (t->global_batch % (mbs * dp))
            return mp_fail(err, "gbs: %d is not a multiple of mbs %d x DP %d", t->global_batch, mbs, dp);
        int mb = t->global_batch / (mbs * dp);
        if (m->vpp > 1 && mb % m->pp)
            return mp_fail(err, "gbs: the interleaved schedule (vpp %d) needs the micro-batches per step (%d = gbs %d "
                           "/ (mbs %d x DP %d)) to be a multiple of pp %d (Megatron-LM's constraint)",
                           m->vpp, mb, t->global_batch, mbs, dp, m->pp);
    }
    /* training configuration */
    if (t->precision != PRECISION_BF16)
        return mp_fail(err, "precision: fp8: FP8 GEMMs are not implemented by the executor's step (use bf16)");
    if (t->dispatcher != DISPATCHER_ALLTOALL)
        return mp_fail(err, "dispatcher: %s: only the alltoall dispatcher is implemented by the executor's step",
                       dispatcher_name(t->dispatcher));
    if (t->recompute != RECOMPUTE_NONE)
        return mp_fail(err, "recompute: %s: activation recomputation is not implemented by the executor's step "
                       "(use none)", recompute_name(t->recompute));
    /* distributed (ZeRO-1) and none run; full sharding (FSDP) does not */
    if (t->opt_sharding == OPT_SHARD_FULL) {
        if (req->optimizer_sharding)
            return mp_fail(err, "optimizer_sharding: %s: fully sharded parameters (FSDP) are not implemented by the "
                           "executor's step (use distributed: ZeRO-1, or none: gradients all-reduced)",
                           opt_sharding_name(t->opt_sharding));
        note(notes, "optimizer_sharding: the default '%s' is not implemented by the executor's step; running and "
             "predicting with '%s' (gradients reduce-scattered, Adam on each rank's shard)",
             opt_sharding_name(t->opt_sharding), opt_sharding_name(OPT_SHARD_DISTRIBUTED));
        t->opt_sharding = OPT_SHARD_DISTRIBUTED;
    }
    /* overlap: the step runs grad and param (gradient buckets, params.h),
     * p2p (pipeline batches waited for where their data are read) and cp
     * (the ring's next hop behind each step), all on by default as
     * Megatron-LM and Transformer Engine run them; the other words are
     * refused when asked for and dropped from simulate's default */
    const unsigned runs = OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_P2P | OVERLAP_CP;
    if (t->overlap & ~runs) {
        char words[64];
        overlap_format(t->overlap & ~runs, words, sizeof words);
        if (req->overlap)
            return mp_fail(err, "overlap: %s: overlapping this communication with compute is not implemented by the "
                           "executor's step (grad, param, p2p and cp are; or use none)", words);
        char kept[64];
        overlap_format((t->overlap & runs) | (req->overlap ? 0 : runs), kept, sizeof kept);
        note(notes, "overlap: the default '%s' is not implemented by the executor's step; running and predicting "
             "with '%s'", words, kept);
    }
    if (!req->overlap) t->overlap |= runs;
    t->overlap &= runs;
    return 0;
}

int preflight_model(const ModelSpec *s, MpError *err) {
    const char *n = s->name;
    if (s->num_experts <= 0) return mp_fail(err, "model: %s: the executor runs MoE models only (num_experts is 0)", n);
    if (s->num_experts > PREFLIGHT_MAX_EXPERTS)
        return mp_fail(err, "num_experts: %d: the executor supports at most %d experts", s->num_experts,
                       PREFLIGHT_MAX_EXPERTS);
    if (s->mla) return mp_fail(err, "model: %s: multi-head latent attention is not implemented by the executor", n);
    if (s->sliding_window)
        return mp_fail(err, "model: %s: sliding-window attention is not implemented by the executor", n);
    if (s->mtp_layers) return mp_fail(err, "model: %s: multi-token-prediction layers are not implemented by the executor", n);
    if (s->qkv_bias) return mp_fail(err, "model: %s: a QKV bias is not implemented by the executor", n);
    if (s->router != ROUTER_SOFTMAX)
        return mp_fail(err, "model: %s: only the softmax router is implemented by the executor", n);
    if (!s->swiglu) return mp_fail(err, "model: %s: only SwiGLU MLPs are implemented by the executor", n);
    /* model features that change the math of a layer: the executor's layer
     * (executor/layer.c) has none of them, so a model that names one is
     * refused rather than trained as a different model */
    static const char *const unimplemented = "is not implemented by the executor";
    if (s->qk_norm != QK_NORM_NONE)
        return mp_fail(err, "model: %s: qk_norm %s (normalised queries and keys) %s", n, qk_norm_name(s->qk_norm),
                       unimplemented);
    if (s->norm != NORM_RMS) return mp_fail(err, "model: %s: norm: only RMSNorm %s", n, "is implemented by the executor");
    if (s->sandwich_norm) return mp_fail(err, "model: %s: sandwich_norm %s", n, unimplemented);
    if (s->attn_out_bias) return mp_fail(err, "model: %s: attn_out_bias %s", n, unimplemented);
    if (s->attn_sinks) return mp_fail(err, "model: %s: attn_sinks %s", n, unimplemented);
    if (s->nope_every) return mp_fail(err, "model: %s: nope_every (layers without RoPE) %s", n, unimplemented);
    if (s->gelu || s->clamped_glu) return mp_fail(err, "model: %s: only SiLU-gated MLPs are implemented by the executor", n);
    if (s->expert_bias_linear) return mp_fail(err, "model: %s: expert_bias_linear %s", n, unimplemented);
    if (s->router_pre_softmax || s->router_scale != 0 || s->router_groups || s->router_expert_bias ||
        s->router_probs_on_input || s->shared_expert_gate)
        return mp_fail(err, "model: %s: the executor's router is Mixtral's (softmax, top-k renormalised, weights on "
                       "the expert outputs; no groups, bias, scale or shared-expert gate)", n);
    if (s->rotary_base != 0 && s->rotary_base != LAYER_ROPE_BASE)
        return mp_fail(err, "model: %s: rotary_base %g: the executor's RoPE uses base %g (Mixtral's; a model "
                       "without rotary_base gets it too)", n, s->rotary_base, LAYER_ROPE_BASE);
    if (s->num_kv_groups <= 0 || s->num_heads % s->num_kv_groups)
        return mp_fail(err, "num_kv_groups: %d does not divide num_heads %d", s->num_kv_groups, s->num_heads);
    if (s->head_dim % 2) return mp_fail(err, "head_dim: %d: RoPE needs an even head dimension", s->head_dim);
    return 0;
}

int preflight_data_file(const char *path, int bits, int vocab, int seq, size_t *num_ids, MpError *err) {
    struct stat st;
    if (stat(path, &st)) return mp_fail(err, "%s: --data: cannot read the file: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return mp_fail(err, "%s: --data: not a regular file", path);
    size_t w = (size_t)bits / 8;
    if ((size_t)st.st_size % w)
        return mp_fail(err, "%s: --data: %lld bytes is not a whole number of uint%d token ids", path,
                       (long long)st.st_size, bits);
    size_t n = (size_t)st.st_size / w;
    if (n < (size_t)seq + 1)
        return mp_fail(err, "%s: --data: %zu token ids, but a sequence of %d needs at least %d", path, n, seq, seq + 1);
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return mp_fail(err, "%s: --data: cannot read the file: %s", path, strerror(errno));
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) { close(fd); return mp_fail(err, "%s: --data: out of memory", path); }
    size_t index = 0, have = 0;   /* ids checked; bytes pending in buf */
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, CHUNK - have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = mp_fail(err, "%s: --data: read error: %s", path, strerror(errno)); break; }
        have += (size_t)r;
        size_t whole = have / w * w;
        for (size_t i = 0; i < whole; i += w, index++) {
            const unsigned char *q = buf + i;
            uint32_t v = w == 2 ? (uint32_t)(q[0] | q[1] << 8)
                                : (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
            if (v >= (uint32_t)vocab) {
                rc = mp_fail(err, "%s: --data: token %zu: id %u is not below the vocabulary size %d", path, index, v,
                             vocab);
                break;
            }
        }
        if (rc) break;
        memmove(buf, buf + whole, have - whole);
        have -= whole;
        if (r == 0) break;
    }
    free(buf);
    close(fd);
    if (!rc && index != n)
        rc = mp_fail(err, "%s: --data: the file changed while it was read (%zu of %zu ids)", path, index, n);
    if (!rc && num_ids) *num_ids = n;
    return rc;
}

int preflight_output_path(const char *path, const char *flag, MpError *err) {
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return mp_fail(err, "%s: %s: is a directory", path, flag);
        if (!S_ISREG(st.st_mode))
            return mp_fail(err, "%s: %s: not a regular file (a device, FIFO or socket is never replaced)", path, flag);
    } else if (errno != ENOENT) {
        return mp_fail(err, "%s: %s: %s", path, flag, strerror(errno));
    }
    /* the file is written beside the target and renamed: the directory must
     * exist and be writable */
    char *copy = strdup(path);
    if (!copy) return mp_fail(err, "%s: %s: out of memory", path, flag);
    const char *dir = dirname(copy);
    int rc = 0;
    if (stat(dir, &st)) rc = mp_fail(err, "%s: %s: directory %s: %s", path, flag, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) rc = mp_fail(err, "%s: %s: %s is not a directory", path, flag, dir);
    else if (access(dir, W_OK | X_OK)) rc = mp_fail(err, "%s: %s: directory %s is not writable", path, flag, dir);
    free(copy);
    return rc;
}

/* Parameters counted here (float32 on the CPU backend: master = working
 * copy, gradient, Adam m and v, 16 bytes each); the step's buffers from the
 * executor's inventory (simulator/exec_memory.c). */
void preflight_cpu_memory(const Plan *p, int layers, size_t data_ids, CpuMemoryEstimate *out) {
    const ModelSpec *s = &p->model;
    const Mapping *m = &p->map;
    double L = layers > 0 && layers < s->num_layers ? layers : s->num_layers, Lrun = L;
    /* a pipeline: the parameters of the largest stage's layers */
    if (m->pp > 1) {
        Plan q = *p;
        q.model.num_layers = (int)L;
        int most = 0;
        for (int r = 0; r < m->pp; r++)
            if (plan_stage_layers(&q, r) > most) most = plan_stage_layers(&q, r);
        L = most;
    }
    double Ld = s->num_dense_layers < L ? s->num_dense_layers : L, Lm = L - Ld;
    double h = s->hidden, n = s->num_heads, g = s->num_kv_groups, d = s->head_dim, V = s->vocab;
    double E = s->num_experts, F = s->dense_ffn, Fsh = s->shared_ffn;
    double ep = m->ep > 0 ? m->ep : 1, etp = m->etp > 0 ? m->etp : 1;
    double El = E / ep, Fl = s->expert_ffn / etp, qkvw = (n + 2 * g) * d;
    /* parameters: embedding, final norm, output; per layer two norms, QKV, output projection, then the
     * router, shared expert and local experts (MoE) or the dense MLP */
    double dense = V * h + h + (s->tied_embeddings ? 0 : V * h) + L * (2 * h + qkvw * h + h * n * d) +
                   Lm * (E * h + 3 * Fsh * h) + Ld * 3 * F * h;
    double expert = Lm * El * 3 * Fl * h;
    out->params = 16.0 * (dense + expert);   /* master (= working copy on the CPU), gradient, Adam m and v */
    /* activations, communication buffers and workspaces: the executor's
     * inventory (simulator/exec_memory.c, fp32) of the stage with the most;
     * a dropless dispatcher's buffers grow with the routing's imbalance
     * (1/8 slack each time, layer.c buf_get): 1/8 on everything, an upper
     * bound for ordinary imbalance */
    Plan *q = malloc(sizeof *q);
    double most = 0;
    if (q) {
        *q = *p;
        q->model.num_layers = (int)Lrun;
        for (int r = 0; r < (m->pp > 1 ? m->pp : 1); r++) {
            SimStageMemory sm;
            MpError err;
            if (simulate_executor_memory(q, SIM_EXEC_CPU, r, &sm, &err)) continue;
            double b = sm.activations + sm.communication + sm.workspace;
            if (b > most) most = b;
        }
        free(q);
    }
    out->activations = 1.125 * most;
    out->data = 4.0 * (double)data_ids;
    out->base = PREFLIGHT_CPU_BASE_BYTES;
    out->total = out->params + out->activations + out->data + out->base;
}

int preflight_mem_available(const char *text, double *bytes) {
    const char *s = strstr(text, "MemAvailable:");
    if (!s) return -1;
    char *end;
    errno = 0;
    unsigned long long kib = strtoull(s + strlen("MemAvailable:"), &end, 10);
    if (errno || end == s + strlen("MemAvailable:")) return -1;
    while (*end == ' ' || *end == '\t') end++;
    if (strncmp(end, "kB", 2)) return -1;
    *bytes = (double)kib * 1024.0;
    return 0;
}
