/* train.c: TrainConfig defaults, validation and the names of its enums.
 *
 * Defaults (docs/core.md):  seq 4096, mbs 1, gbs 256, bf16, alltoall
 * dispatcher, dropless (capacity_factor 0) with imbalance 1.0, no
 * recomputation, distributed optimizer (ZeRO-1, Megatron's usual setting for
 * MoE training), gradient and parameter overlap, the megatron FLOPs
 * convention, and 4 GiB of HBM kept free for the CUDA context (~0.5 GiB),
 * NCCL buffers (~1-2 GiB for several communicators) and allocator
 * fragmentation.
 */
#include "train.h"

#include "limits.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void train_config_default(TrainConfig *t) {
    memset(t, 0, sizeof *t);
    t->seq_len = 4096;
    t->micro_batch = 1;
    t->global_batch = 256;
    t->precision = PRECISION_BF16;
    t->dispatcher = DISPATCHER_ALLTOALL;
    t->capacity_factor = 0.0;
    t->imbalance = 1.0;
    t->recompute = RECOMPUTE_NONE;
    t->opt_sharding = OPT_SHARD_DISTRIBUTED;
    t->overlap = OVERLAP_DEFAULT;
    t->flops = FLOPS_MEGATRON;
    t->memory_reserve_bytes = 4.0 * 1073741824.0;
}

#define OVERLAP_ALL (OVERLAP_GRAD | OVERLAP_PARAM | OVERLAP_TP | OVERLAP_EP | OVERLAP_SHARED_EXPERT | OVERLAP_P2P | OVERLAP_CP)

int train_config_validate(const TrainConfig *t, MpError *err) {
    if (t->seq_len <= 0) return mp_fail(err, "seq: must be positive, got %d", t->seq_len);
    if (t->seq_len > (1 << 24)) return mp_fail(err, "seq: %d is larger than %d", t->seq_len, 1 << 24);
    if (t->micro_batch <= 0) return mp_fail(err, "mbs: must be positive, got %d", t->micro_batch);
    if (t->global_batch <= 0) return mp_fail(err, "gbs: must be positive, got %d", t->global_batch);
    if (t->global_batch > MP_MAX_GBS)
        return mp_fail(err, "gbs: %d is above the limit of %d sequences (the largest published batches are a few "
                       "thousand sequences)", t->global_batch, MP_MAX_GBS);
    if (t->global_batch % t->micro_batch)
        return mp_fail(err, "gbs: %d is not a multiple of mbs %d", t->global_batch, t->micro_batch);
    if (t->precision != PRECISION_BF16 && t->precision != PRECISION_FP8)
        return mp_fail(err, "precision: unknown value %d", (int)t->precision);
    if (t->dispatcher != DISPATCHER_ALLTOALL && t->dispatcher != DISPATCHER_ALLGATHER)
        return mp_fail(err, "dispatcher: unknown value %d", (int)t->dispatcher);
    if (!isfinite(t->capacity_factor) || t->capacity_factor < 0)
        return mp_fail(err, "capacity_factor: must be >= 0 (0 = dropless), got %g", t->capacity_factor);
    if (!isfinite(t->imbalance) || t->imbalance < 1.0)
        return mp_fail(err, "imbalance: must be >= 1 (busiest rank's load over the mean), got %g", t->imbalance);
    if (t->recompute != RECOMPUTE_NONE && t->recompute != RECOMPUTE_SELECTIVE && t->recompute != RECOMPUTE_FULL)
        return mp_fail(err, "recompute: unknown value %d", (int)t->recompute);
    if (t->opt_sharding != OPT_SHARD_NONE && t->opt_sharding != OPT_SHARD_DISTRIBUTED &&
        t->opt_sharding != OPT_SHARD_FULL)
        return mp_fail(err, "optimizer_sharding: unknown value %d", (int)t->opt_sharding);
    if (t->recompute_modules & ~(unsigned)RCM_ALL)
        return mp_fail(err, "recompute_modules: unknown bits 0x%x", t->recompute_modules);
    if (t->overlap & ~(unsigned)OVERLAP_ALL) return mp_fail(err, "overlap: unknown bits 0x%x", t->overlap);
    if (t->flops != FLOPS_LEGACY && t->flops != FLOPS_MEGATRON)
        return mp_fail(err, "flops: unknown value %d", (int)t->flops);
    if (!isfinite(t->memory_reserve_bytes) || t->memory_reserve_bytes < 0)
        return mp_fail(err, "memory_reserve_gib: must be >= 0, got %g", t->memory_reserve_bytes / 1073741824.0);
    return 0;
}

static const char *const recompute_names[] = {"none", "selective", "full"};
static const char *const sharding_names[] = {"none", "distributed", "full"};
static const char *const dispatcher_names[] = {"alltoall", "allgather"};

static int parse_name(const char *s, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *recompute_name(RecomputeKind r) {
    return (r >= 0 && r <= RECOMPUTE_FULL) ? recompute_names[r] : "?";
}

int recompute_parse(const char *s, RecomputeKind *out) {
    int i = parse_name(s, recompute_names, 3);
    if (i < 0) return -1;
    *out = (RecomputeKind)i;
    return 0;
}

const char *opt_sharding_name(OptimizerSharding o) {
    return (o >= 0 && o <= OPT_SHARD_FULL) ? sharding_names[o] : "?";
}

int opt_sharding_parse(const char *s, OptimizerSharding *out) {
    int i = parse_name(s, sharding_names, 3);
    if (i < 0) return -1;
    *out = (OptimizerSharding)i;
    return 0;
}

const char *dispatcher_name(DispatcherKind d) {
    return (d >= 0 && d <= DISPATCHER_ALLGATHER) ? dispatcher_names[d] : "?";
}

int dispatcher_parse(const char *s, DispatcherKind *out) {
    int i = parse_name(s, dispatcher_names, 2);
    if (i < 0) return -1;
    *out = (DispatcherKind)i;
    return 0;
}

/* A comma-separated set of words, each one bit. */
typedef struct { const char *word; unsigned bit; } WordBit;

/* "w1,w2,..." -> the OR of their bits; an unknown (or empty) word is named
 * in err as "field: unknown word 'x' (words: ...)". */
static int word_set_parse(const char *s, const WordBit *words, int count, const char *field, const char *noun,
                          const char *known, unsigned *out, MpError *err) {
    unsigned bits = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int found = -1;
        for (int i = 0; i < count; i++)
            if (strlen(words[i].word) == n && !strncmp(p, words[i].word, n)) found = i;
        if (found < 0) {
            if (n == 0) return mp_fail(err, "%s: empty %s in '%s' (%ss: %s)", field, noun, s, noun, known);
            return mp_fail(err, "%s: unknown %s '%.*s' (%ss: %s)", field, noun, (int)(n > 64 ? 64 : n), p, noun, known);
        }
        bits |= words[found].bit;
        if (!comma) break;
        p = comma + 1;
    }
    *out = bits;
    return 0;
}

/* The words of `bits` joined by sep ("none" for no bit). */
static void word_set_format(unsigned bits, const WordBit *words, int count, const char *sep, char *buf, int len) {
    if (len <= 0) return;
    buf[0] = 0;
    if (bits == 0) { snprintf(buf, len, "none"); return; }
    int pos = 0;
    for (int i = 0; i < count; i++) {
        if (!(bits & words[i].bit)) continue;
        int w = snprintf(buf + pos, len - pos, "%s%s", pos ? sep : "", words[i].word);
        if (w < 0 || w >= len - pos) break;
        pos += w;
    }
}

static const WordBit overlap_words[] = {
    {"grad", OVERLAP_GRAD}, {"param", OVERLAP_PARAM}, {"tp", OVERLAP_TP},
    {"ep", OVERLAP_EP}, {"shared-expert", OVERLAP_SHARED_EXPERT}, {"p2p", OVERLAP_P2P}, {"cp", OVERLAP_CP},
};
#define OVERLAP_WORDS ((int)(sizeof overlap_words / sizeof overlap_words[0]))

int overlap_parse(const char *s, unsigned *out, MpError *err) {
    if (!strcmp(s, "none")) { *out = 0; return 0; }
    return word_set_parse(s, overlap_words, OVERLAP_WORDS, "overlap", "word", "grad, param, tp, ep, shared-expert, p2p, cp, or none",
                          out, err);
}

void overlap_format(unsigned bits, char *buf, int len) {
    word_set_format(bits, overlap_words, OVERLAP_WORDS, ",", buf, len);
}

/* Megatron's spellings (transformer_config.py, recompute_modules). */
static const WordBit module_words[] = {
    {"core_attn", RCM_CORE_ATTN}, {"layernorm", RCM_LAYERNORM}, {"moe_act", RCM_MOE_ACT},
    {"mla_up_proj", RCM_MLA_UP_PROJ}, {"mlp", RCM_MLP}, {"moe", RCM_MOE}, {"shared_experts", RCM_SHARED_EXPERTS},
};
#define MODULE_WORDS ((int)(sizeof module_words / sizeof module_words[0]))

unsigned train_recompute_modules(const TrainConfig *t, const ModelSpec *m) {
    if (t->recompute != RECOMPUTE_SELECTIVE) return 0;
    unsigned b = t->recompute_modules ? t->recompute_modules : RCM_SELECTIVE_DEFAULT;
    if (m->num_experts == 0) b &= ~(unsigned)(RCM_MOE_ACT | RCM_MOE | RCM_SHARED_EXPERTS);
    if (!m->mla) b &= ~(unsigned)RCM_MLA_UP_PROJ;
    if (m->shared_ffn == 0) b &= ~(unsigned)RCM_SHARED_EXPERTS;
    if (m->num_dense_layers == 0) b &= ~(unsigned)RCM_MLP;
    if (b & RCM_MOE) b &= ~(unsigned)(RCM_MOE_ACT | RCM_SHARED_EXPERTS);   /* inside the recomputed MoE layer */
    return b;
}

void recompute_modules_format(unsigned bits, const char *sep, char *buf, int len) {
    word_set_format(bits, module_words, MODULE_WORDS, sep, buf, len);
}

int recompute_modules_parse(const char *s, unsigned *out, MpError *err) {
    return word_set_parse(s, module_words, MODULE_WORDS, "recompute_modules", "module",
                          "core_attn, layernorm, moe_act, mla_up_proj, mlp, moe, shared_experts", out, err);
}

void recompute_label(RecomputeKind r, unsigned mods, const ModelSpec *m, char *buf, int len) {
    if (len <= 0) return;
    if (r != RECOMPUTE_SELECTIVE) { snprintf(buf, len, "%s", recompute_name(r)); return; }
    TrainConfig d;
    train_config_default(&d);
    d.recompute = RECOMPUTE_SELECTIVE;
    unsigned def = train_recompute_modules(&d, m);
    if (mods == def) { snprintf(buf, len, "selective"); return; }
    /* the difference from the default set: "sel+mla", "sel+moe" (moe
     * includes moe_act), "sel-ln" */
    unsigned have = mods | ((mods & RCM_MOE) ? (unsigned)RCM_MOE_ACT : 0u);
    static const char *const abbrev[] = {"attn", "ln", "act", "mla", "mlp", "moe", "shared"};
    int pos = snprintf(buf, len, "sel");
    for (int i = 0; i < 7 && pos < len; i++) {
        unsigned bit = 1u << i;
        if ((have & bit) && !(def & bit)) pos += snprintf(buf + pos, len - pos, "+%s", abbrev[i]);
        else if (!(have & bit) && (def & bit)) pos += snprintf(buf + pos, len - pos, "-%s", abbrev[i]);
    }
}
