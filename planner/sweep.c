/* sweep.c: what-if studies (see sweep.h). */
#include "sweep.h"

#include "core/limits.h"
#include "core/outfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const param_names[SWEEP_PARAM_COUNT] = {
    "gpus", "seq", "gbs", "nvlink-bw", "ib-bw", "nics-per-node", "gpus-per-node", "peak-tflops",
    "hbm-gib", "experts", "top-k", "expert-ffn", "granularity", "imbalance", "capacity-factor",
};
static const char *const param_units[SWEEP_PARAM_COUNT] = {
    "GPUs", "tokens", "sequences", "GB/s per GPU", "Gb/s per NIC", "NICs", "GPUs per NVLink domain",
    "TFLOP/s", "GiB", "experts", "experts per token", "expert FFN", "x finer experts", "busiest/mean",
    "capacity factor",
};

const char *sweep_param_name(SweepParam k) { return k >= 0 && k < SWEEP_PARAM_COUNT ? param_names[k] : "?"; }
const char *sweep_param_unit(SweepParam k) { return k >= 0 && k < SWEEP_PARAM_COUNT ? param_units[k] : "?"; }

int sweep_param_parse(const char *s, SweepParam *out) {
    for (int k = 0; k < SWEEP_PARAM_COUNT; k++)
        if (!strcmp(s, param_names[k])) { *out = (SweepParam)k; return 0; }
    return -1;
}

static int as_int(double v, SweepParam k, int *out, MpError *err) {
    if (v < 1 || v > 1e9 || v != floor(v))
        return mp_fail(err, "--vary: %s needs positive integers, got %g", sweep_param_name(k), v);
    *out = (int)v;
    return 0;
}

int sweep_apply(const Plan *orig, SweepParam k, double v, long long tokens_per_batch, Plan *p, MpError *err) {
    *p = *orig;
    Cluster *c = &p->cluster;
    ModelSpec *m = &p->model;
    int iv = 0;
    if (!(v > 0) && !(k == SWEEP_CAPACITY_FACTOR && v == 0))
        return mp_fail(err, "--vary: %s must be positive, got %g", sweep_param_name(k), v);
    switch (k) {
    case SWEEP_GPUS:
        if (as_int(v, k, &iv, err)) return -1;
        if (iv > MP_MAX_GPUS) return mp_fail(err, "--vary: gpus %d is above the limit of %d GPUs", iv, MP_MAX_GPUS);
        p->map.world = iv;
        break;
    case SWEEP_SEQ: if (as_int(v, k, &iv, err)) return -1; p->train.seq_len = iv; break;
    case SWEEP_GBS: if (as_int(v, k, &iv, err)) return -1; p->train.global_batch = iv; break;
    case SWEEP_NVLINK_BW: {
        double bw = v * 1e9;                /* GB/s -> bytes/s */
        double ratio = c->nvlink_bw > 0 ? c->nvlink_busbw / c->nvlink_bw : 1.0;
        c->nvlink_bw = bw;
        c->nvlink_busbw = bw * ratio;
        break;
    }
    case SWEEP_IB_BW: {
        double bw = v * 1e9 / 8;            /* Gb/s -> bytes/s */
        double ratio = c->nic_bw > 0 ? c->nic_busbw / c->nic_bw : 1.0;
        c->nic_bw = bw;
        c->nic_busbw = bw * ratio;
        break;
    }
    case SWEEP_NICS_PER_NODE: if (as_int(v, k, &iv, err)) return -1; c->nics_per_node = iv; break;
    case SWEEP_GPUS_PER_NODE: {
        /* an NVLink domain of iv GPUs (NVL72-style): the node and the domain
         * coincide; NICs stay one per GPU if the original had one per GPU */
        if (as_int(v, k, &iv, err)) return -1;
        int per_gpu = orig->cluster.gpus_per_node > 0 && orig->cluster.nics_per_node == orig->cluster.gpus_per_node;
        c->gpus_per_node = iv;
        c->nvlink_domain = iv;
        if (per_gpu) c->nics_per_node = iv;
        break;
    }
    case SWEEP_PEAK_TFLOPS: {
        double ratio = c->peak_bf16_flops > 0 ? c->peak_fp8_flops / c->peak_bf16_flops : 2.0;
        c->peak_bf16_flops = v * 1e12;
        c->peak_fp8_flops = v * 1e12 * ratio;
        break;
    }
    case SWEEP_HBM_GIB: c->hbm_bytes = v * 1073741824.0; break;
    case SWEEP_EXPERTS: if (as_int(v, k, &iv, err)) return -1; m->num_experts = iv; break;
    case SWEEP_TOP_K: if (as_int(v, k, &iv, err)) return -1; m->top_k = iv; break;
    case SWEEP_EXPERT_FFN: if (as_int(v, k, &iv, err)) return -1; m->expert_ffn = iv; break;
    case SWEEP_GRANULARITY:
        if (as_int(v, k, &iv, err)) return -1;
        if (orig->model.expert_ffn % iv)
            return mp_fail(err, "--vary: granularity %d does not divide the expert FFN %d", iv, orig->model.expert_ffn);
        m->num_experts = orig->model.num_experts * iv;
        m->top_k = orig->model.top_k * iv;
        m->expert_ffn = orig->model.expert_ffn / iv;
        snprintf(m->name, sizeof m->name, "%.40s-g%d", orig->model.name, iv);
        break;
    case SWEEP_IMBALANCE:
        if (v < 1) return mp_fail(err, "--vary: imbalance must be >= 1, got %g", v);
        p->train.imbalance = v;
        break;
    case SWEEP_CAPACITY_FACTOR: p->train.capacity_factor = v; break;
    default: return mp_fail(err, "--vary: unknown parameter");
    }
    if (tokens_per_batch > 0) {
        if (tokens_per_batch % p->train.seq_len)
            return mp_fail(err, "--tokens-per-batch: %lld is not a multiple of seq %d", tokens_per_batch, p->train.seq_len);
        p->train.global_batch = (int)(tokens_per_batch / p->train.seq_len);
    }
    if (m->top_k > m->num_experts && m->num_experts > 0)
        return mp_fail(err, "--vary: top-k %d exceeds %d experts", m->top_k, m->num_experts);
    if (model_validate(m, err) || cluster_validate(c, err) || train_config_validate(&p->train, err)) return -1;
    return 0;
}

int sweep_apply2(const Plan *orig, SweepParam k1, double v1, SweepParam k2, double v2, long long tokens_per_batch,
                 Plan *p, MpError *err) {
    Plan *mid = malloc(sizeof *mid);
    if (!mid) return mp_fail(err, "sweep: out of memory");
    int rc = sweep_apply(orig, k1, v1, tokens_per_batch, mid, err);
    if (!rc && sweep_apply(mid, k2, v2, tokens_per_batch, p, err)) {
        /* the second key's reasons name --vary2 */
        if (!strncmp(err->msg, "--vary:", 7)) {
            MpError e2;
            mp_fail(&e2, "--vary2:%s (with %s = %g)", err->msg + 7, sweep_param_name(k1), v1);
            *err = e2;
        }
        rc = -1;
    }
    free(mid);
    return rc;
}

int sweep_check_pair(SweepParam k1, SweepParam k2, MpError *err) {
    if (k1 == k2) return mp_fail(err, "--vary2: %s is already swept by --vary; give a different key", sweep_param_name(k1));
    SweepParam a = k1 == SWEEP_GRANULARITY ? k2 : k2 == SWEEP_GRANULARITY ? k1 : SWEEP_PARAM_COUNT;
    if (a == SWEEP_EXPERTS || a == SWEEP_TOP_K || a == SWEEP_EXPERT_FFN)
        return mp_fail(err, "--vary2: granularity and %s cannot be swept together (granularity sets experts, "
                       "top-k and expert-ffn)", sweep_param_name(a));
    return 0;
}

int sweep_point(const Plan *p, const SearchConstraints *c, const SearchOptions *o, bool fixed,
                SweepPoint *out, MpError *err) {
    memset(out, 0, sizeof *out);
    if (fixed) {
        /* the varied value may change the GPU count or the experts: derive
         * dp and edp again and re-check the mapping */
        SimResult *sim = malloc(sizeof *sim);
        Plan *q = malloc(sizeof *q);
        if (!sim || !q) { free(sim); free(q); return mp_fail(err, "sweep: out of memory"); }
        *q = *p;
        bool fits = false;
        MpError e2;
        int rc = mapping_resolve(&q->map, q->model.num_experts, &e2);
        if (!rc) rc = search_score_plan(q, o->cal, sim, &out->best, &fits, &e2);
        free(sim);
        free(q);
        out->simulated = 1;
        if (rc) { snprintf(out->note, sizeof out->note, "invalid: %.140s", e2.msg); return 0; }
        out->ok = fits;
        if (!fits) snprintf(out->note, sizeof out->note, "does not fit (%.1f GiB > %.1f GiB)",
                            out->best.peak_memory_bytes / 1073741824.0, out->best.memory_capacity_bytes / 1073741824.0);
        return 0;
    }
    SearchResult r;
    if (search_run(p, c, o, &r, err)) return -1;
    out->enumerated = r.space.enumerated;
    out->simulated = r.simulated;
    out->seconds = r.seconds;
    if (r.num_ranked) {
        out->ok = true;
        out->best = r.ranked[0];
        if (r.best_coupled >= 0) { out->has_coupled = true; out->coupled = r.ranked[r.best_coupled]; }
    } else {
        snprintf(out->note, sizeof out->note, "no plan fits (%zu candidates, %lld too big)",
                 r.space.count, r.space.pruned[PRUNE_MEMORY]);
    }
    search_result_free(&r);
    return 0;
}

int sweep_write_csv(const char *path, SweepParam k, const SweepParam *k2, const SweepPoint *pts, int n, MpError *err) {
    size_t cap = 512 + (size_t)n * 512, len = 0;
    char *s = malloc(cap);
    if (!s) return mp_fail(err, "%s: out of memory", path);
    /* a point without a plan has empty fields (not zeros) and its reason */
    len += (size_t)snprintf(s + len, cap - len, "%s,", sweep_param_name(k));
    if (k2) len += (size_t)snprintf(s + len, cap - len, "%s,", sweep_param_name(*k2));
    len += (size_t)snprintf(s + len, cap - len,
        "ok,mfu,step_time_s,tokens_per_s_per_gpu,tflops_per_gpu,peak_memory_gib,tp,cp,pp,vpp,dp,etp,ep,edp,mbs,"
        "recompute,optimizer_sharding,first_stage_layers,last_stage_layers,coupled_mfu,dominant,reason\n");
    for (int i = 0; i < n; i++) {
        const SweepPoint *p = &pts[i];
        const Candidate *c = &p->best.cand;
        char reason[192] = "", dom[128] = "";
        if (!p->ok) snprintf(reason, sizeof reason, "%s", p->note);
        if (p->best.step_time_s > 0) snprintf(dom, sizeof dom, "%s", p->best.dominant);
        for (char *q = reason; *q; q++) if (*q == ',' || *q == '"') *q = ';';
        for (char *q = dom; *q; q++) if (*q == ',' || *q == '"') *q = ';';
        len += (size_t)snprintf(s + len, cap - len, "%g,", p->value);
        if (k2) len += (size_t)snprintf(s + len, cap - len, "%g,", p->value2);
        len += (size_t)snprintf(s + len, cap - len, "%d,", p->ok);
        if (p->best.step_time_s > 0)
            len += (size_t)snprintf(s + len, cap - len,
                "%.5f,%.5f,%.1f,%.2f,%.2f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s,%d,%d,",
                p->best.mfu, p->best.step_time_s, p->best.tokens_per_s_per_gpu, p->best.tflops_per_gpu,
                p->best.peak_memory_bytes / 1073741824.0, c->map.tp, c->map.cp, c->map.pp, c->map.vpp, c->map.dp,
                c->map.etp, c->map.ep, c->map.edp, c->mbs, recompute_name((RecomputeKind)c->recompute),
                opt_sharding_name((OptimizerSharding)c->opt_sharding), c->first_stage_layers, c->last_stage_layers);
        else
            len += (size_t)snprintf(s + len, cap - len, ",,,,,,,,,,,,,,,,,,");
        if (p->has_coupled) len += (size_t)snprintf(s + len, cap - len, "%.5f", p->coupled.mfu);
        len += (size_t)snprintf(s + len, cap - len, ",%s,%s\n", dom, reason);
    }
    int rc = outfile_write_text(path, s, err);
    free(s);
    return rc;
}

