/* plan.c: the plan JSON (format in plan.h and docs/core.md), its
 * validation and the layers of each pipeline stage. */
#include "plan.h"

#include "limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "json_util.h"

#define GIB 1073741824.0

/* Uneven split (Megatron's decoder_first/last_pipeline_num_layers): stage 0
 * holds first_stage_layers and stage pp-1 last_stage_layers when they are
 * > 0; the remaining layers are spread evenly over the other stages. */
static int middle_stages(const Plan *p) {
    return p->map.pp - (p->first_stage_layers > 0) - (p->last_stage_layers > 0);
}

int plan_stage_layers(const Plan *p, int stage) {
    int pp = p->map.pp > 0 ? p->map.pp : 1, L = p->model.num_layers;
    if (stage < 0 || stage >= pp) return 0;
    if (pp == 1) return L;
    if (stage == 0 && p->first_stage_layers > 0) return p->first_stage_layers;
    if (stage == pp - 1 && p->last_stage_layers > 0) return p->last_stage_layers;
    int mid = middle_stages(p);
    if (mid <= 0) return 0;
    return (L - p->first_stage_layers - p->last_stage_layers) / mid;
}

int plan_validate(const Plan *p, MpError *err) {
    const Mapping *m = &p->map;
    const ModelSpec *md = &p->model;
    const TrainConfig *t = &p->train;
    if (m->world <= 0 || m->tp <= 0 || m->cp <= 0 || m->pp <= 0 || m->vpp <= 0 || m->etp <= 0 || m->ep <= 0 ||
        m->dp <= 0 || m->edp <= 0)
        return mp_fail(err, "gpus: the mapping is not resolved (every size must be positive)");
    if (m->world > MP_MAX_GPUS)
        return mp_fail(err, "gpus: %d is above the limit of %d GPUs", m->world, MP_MAX_GPUS);
    if (m->tp > m->world || m->cp > m->world || m->pp > m->world || m->dp > m->world || m->etp > m->world ||
        m->ep > m->world || m->edp > m->world)
        return mp_fail(err, "gpus: a mapping size is larger than gpus %d", m->world);
    if (m->vpp > MP_MAX_VPP) return mp_fail(err, "vpp: %d is above the limit of %d", m->vpp, MP_MAX_VPP);
    if (md->num_layers > MP_MAX_LAYERS)
        return mp_fail(err, "num_layers: %d is above the limit of %d layers", md->num_layers, MP_MAX_LAYERS);
    /* every size is now <= 2^20: products of up to three fit in 64 bits */
    if (m->world % m->pp || (long long)m->tp * m->cp * m->dp != m->world / m->pp ||
        (long long)m->etp * m->ep * m->edp != m->world / m->pp)
        return mp_fail(err, "gpus: tp*cp*dp*pp and etp*ep*edp*pp must both equal gpus %d", m->world);
    long long per_step = (long long)t->micro_batch * m->dp;
    if (t->global_batch % per_step)
        return mp_fail(err, "gbs: %d is not divisible by mbs*dp = %d*%d = %lld", t->global_batch, t->micro_batch,
                       m->dp, per_step);
    if (md->num_heads % m->tp)
        return mp_fail(err, "tp: %d does not divide num_heads %d", m->tp, md->num_heads);
    if (md->num_kv_groups % m->tp && m->tp % md->num_kv_groups)
        return mp_fail(err, "tp: %d and num_kv_groups %d: neither divides the other", m->tp, md->num_kv_groups);
    if (md->num_experts > 0 && md->num_experts % m->ep)
        return mp_fail(err, "ep: %d does not divide num_experts %d", m->ep, md->num_experts);
    /* A rank gets each token at most once per local expert: with E/EP local
     * experts it receives at most EP*T*min(k, E/EP) rows against a mean of
     * T*k, so its load is at most E/k times the mean; likewise an expert
     * capacity of cf*T*k/E rows per source exceeds the T tokens there are
     * once cf > E/k.  Larger figures mean nothing (and overflow the
     * simulator's row counts). */
    if (md->num_experts > 0 && md->top_k > 0) {
        double limit = (double)md->num_experts / md->top_k;
        if (t->imbalance > limit)
            return mp_fail(err, "imbalance: %g is more than num_experts/top_k = %g (the busiest rank's load can be "
                           "at most that many times the mean)", t->imbalance, limit);
        if (t->capacity_factor > limit)
            return mp_fail(err, "capacity_factor: %g is more than num_experts/top_k = %g (capacity for more than "
                           "every token at each expert)", t->capacity_factor, limit);
    }
    if (md->num_experts > 0 && md->expert_ffn % m->etp)
        return mp_fail(err, "etp: %d does not divide expert_ffn %d", m->etp, md->expert_ffn);
    if (md->dense_ffn % m->tp)
        return mp_fail(err, "tp: %d does not divide dense_ffn %d", m->tp, md->dense_ffn);
    if (md->shared_ffn % m->tp)
        return mp_fail(err, "tp: %d does not divide shared_ffn %d", m->tp, md->shared_ffn);
    if (m->cp > 1 && t->seq_len % (2LL * m->cp))
        return mp_fail(err, "seq: %d is not divisible by 2*cp = %d (causal load balancing splits each sequence "
                       "into 2*cp chunks)", t->seq_len, 2 * m->cp);
    if ((t->seq_len / m->cp) % m->tp)
        return mp_fail(err, "seq: %d/cp = %d is not divisible by tp %d (sequence parallelism splits tokens over tp)",
                       t->seq_len, t->seq_len / m->cp, m->tp);

    /* pipeline split */
    int L = md->num_layers, pp = m->pp, vpp = m->vpp;
    if (p->first_stage_layers < 0)
        return mp_fail(err, "first_stage_layers: must be >= 0 (0 = even split), got %d", p->first_stage_layers);
    if (p->last_stage_layers < 0)
        return mp_fail(err, "last_stage_layers: must be >= 0 (0 = even split), got %d", p->last_stage_layers);
    if (p->first_stage_layers == 0 && p->last_stage_layers == 0) {
        if (L % ((long long)pp * vpp)) /* pp and vpp may each be up to INT_MAX here */
            return mp_fail(err, "pp: num_layers %d is not divisible by pp*vpp = %d*%d", L, pp, vpp);
        return 0;
    }
    if (pp == 1)
        return mp_fail(err, "%s: an uneven split needs pp > 1",
                       p->first_stage_layers ? "first_stage_layers" : "last_stage_layers");
    long rest = (long)L - p->first_stage_layers - p->last_stage_layers;
    int mid = middle_stages(p);
    if (mid == 0 && rest != 0)
        return mp_fail(err, "first_stage_layers: %d + last_stage_layers %d must equal num_layers %d when pp is 2",
                       p->first_stage_layers, p->last_stage_layers, L);
    if (mid > 0 && (rest <= 0 || rest % ((long long)mid * vpp)))
        return mp_fail(err, "first_stage_layers: the %ld layers left by first_stage_layers %d and "
                       "last_stage_layers %d do not split evenly over %d middle stages x vpp %d",
                       rest, p->first_stage_layers, p->last_stage_layers, mid, vpp);
    if (p->first_stage_layers % vpp)
        return mp_fail(err, "first_stage_layers: %d is not divisible by vpp %d", p->first_stage_layers, vpp);
    if (p->last_stage_layers % vpp)
        return mp_fail(err, "last_stage_layers: %d is not divisible by vpp %d", p->last_stage_layers, vpp);
    return 0;
}

static const char *const plan_int_keys[] = {
    "gpus", "tp", "cp", "pp", "vpp", "etp", "ep", "first_stage_layers", "last_stage_layers", "seq", "mbs", "gbs",
};

static int **plan_int_fields(Plan *p, int **dst) {
    int *f[] = {&p->map.world, &p->map.tp, &p->map.cp, &p->map.pp, &p->map.vpp, &p->map.etp, &p->map.ep,
                &p->first_stage_layers, &p->last_stage_layers, &p->train.seq_len, &p->train.micro_batch,
                &p->train.global_batch};
    memcpy(dst, f, sizeof f);
    return dst;
}

/* Reads an optional enum-valued string field with its parser. */
#define READ_ENUM(key, parse, dst, allowed)                                                              \
    do {                                                                                                 \
        char s_[32] = "";                                                                                \
        if (json_opt_string(root, key, origin, s_, sizeof s_, err)) goto fail;                           \
        if (s_[0] && parse(s_, dst)) {                                                                   \
            mp_fail(err, "%s: %s: '%s' is not %s", origin, key, s_, allowed);                            \
            goto fail;                                                                                   \
        }                                                                                                \
    } while (0)

static int precision_parse_local(const char *s, Precision *out) {
    if (!strcmp(s, "bf16")) { *out = PRECISION_BF16; return 0; }
    if (!strcmp(s, "fp8")) { *out = PRECISION_FP8; return 0; }
    return -1;
}

/* A result document (docs/schema/moeplan-result.schema.json) holds its plan
 * in "plan" (simulate, execute) or in "plans" under "chosen_rank" (search). */
static int plan_of_result(const cJSON *doc, const char *origin, cJSON **plan, MpError *err) {
    cJSON *p = cJSON_GetObjectItem(doc, "plan");
    if (cJSON_IsObject(p)) { *plan = p; return 0; }
    const cJSON *plans = cJSON_GetObjectItem(doc, "plans");
    const cJSON *chosen = cJSON_GetObjectItem(doc, "chosen_rank");
    if (!cJSON_IsArray(plans))
        return mp_fail(err, "%s: a result document without \"plan\" or \"plans\" (a sweep holds no single plan)",
                       origin);
    int want = cJSON_IsNumber(chosen) ? chosen->valueint : 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, plans) {
        const cJSON *r = cJSON_GetObjectItem(e, "rank");
        cJSON *pl = cJSON_GetObjectItem(e, "plan");
        if (cJSON_IsNumber(r) && r->valueint == want && cJSON_IsObject(pl)) { *plan = pl; return 0; }
    }
    return mp_fail(err, "%s: plans: no plan of rank %d (chosen_rank)", origin, want);
}

int plan_from_json_text(const char *text, const char *origin, Plan *out, MpError *err) {
    memset(out, 0, sizeof *out);
    train_config_default(&out->train);
    out->map.tp = out->map.cp = out->map.pp = out->map.vpp = out->map.etp = out->map.ep = 1;
    out->map.order = ORDER_TP_CP_EP_DP_PP;
    cJSON *root = json_parse_text(text, origin, err);
    if (!root) return -1;
    cJSON *doc = root; /* root may become the plan object inside a result document */
    MpError inner;
    if (!cJSON_IsObject(root)) {
        mp_fail(err, "%s: expected a JSON object at the top level, got %s", origin, json_type_name(root));
        goto fail;
    }
    if (cJSON_GetObjectItem(doc, "schema_version") && plan_of_result(doc, origin, &root, err)) goto fail;
    if (json_req_string(root, "model", origin, out->model_ref, sizeof out->model_ref, err) ||
        json_req_string(root, "cluster", origin, out->cluster_ref, sizeof out->cluster_ref, err) ||
        json_req_int(root, "gpus", origin, &out->map.world, err))
        goto fail;
    int *fields[12];
    plan_int_fields(out, fields);
    for (int i = 1; i < 12; i++)
        if (json_opt_int(root, plan_int_keys[i], origin, fields[i], err)) goto fail;
    if (json_opt_double(root, "capacity_factor", origin, &out->train.capacity_factor, err) ||
        json_opt_double(root, "imbalance", origin, &out->train.imbalance, err))
        goto fail;
    double reserve_gib = out->train.memory_reserve_bytes / GIB;
    if (json_opt_double(root, "memory_reserve_gib", origin, &reserve_gib, err)) goto fail;
    out->train.memory_reserve_bytes = reserve_gib * GIB;
    READ_ENUM("order", rank_order_parse, &out->map.order, "tp-cp-ep-dp-pp or tp-cp-ep-pp-dp");
    READ_ENUM("precision", precision_parse_local, &out->train.precision, "bf16 or fp8");
    READ_ENUM("dispatcher", dispatcher_parse, &out->train.dispatcher, "alltoall or allgather");
    READ_ENUM("recompute", recompute_parse, &out->train.recompute, "none, selective or full");
    READ_ENUM("optimizer_sharding", opt_sharding_parse, &out->train.opt_sharding, "none, distributed or full");
    READ_ENUM("flops", flops_convention_parse, &out->train.flops, "legacy or megatron");
    READ_ENUM("attention_backend", attn_backend_parse, &out->train.attention_backend, "auto, cudnn, flash2, fa3 or own");
    char overlap[128] = "";
    if (json_opt_string(root, "overlap", origin, overlap, sizeof overlap, err)) goto fail;
    if (overlap[0] && overlap_parse(overlap, &out->train.overlap, &inner)) {
        mp_fail(err, "%s: %s", origin, inner.msg);
        goto fail;
    }
    char modules[128] = "";
    if (json_opt_string(root, "recompute_modules", origin, modules, sizeof modules, err)) goto fail;
    if (modules[0] && recompute_modules_parse(modules, &out->train.recompute_modules, &inner)) {
        mp_fail(err, "%s: %s", origin, inner.msg);
        goto fail;
    }
    if (model_lookup(out->model_ref, &out->model, &inner)) {
        mp_fail(err, "%s: model: %s", origin, inner.msg);
        goto fail;
    }
    /* what selective recomputes for this model, spelled out (0 = the default set) */
    out->train.recompute_modules = train_recompute_modules(&out->train, &out->model);
    if (cluster_lookup(out->cluster_ref, &out->cluster, &inner)) {
        mp_fail(err, "%s: cluster: %s", origin, inner.msg);
        goto fail;
    }
    if (mapping_resolve(&out->map, out->model.num_experts, &inner) || train_config_validate(&out->train, &inner) ||
        plan_validate(out, &inner)) {
        mp_fail(err, "%s: %s", origin, inner.msg);
        goto fail;
    }
    cJSON_Delete(doc);
    return 0;
fail:
    cJSON_Delete(doc);
    return -1;
}

int plan_load_file(const char *path, Plan *out, MpError *err) {
    char *text;
    if (read_text_file(path, &text, err)) return -1;
    int rc = plan_from_json_text(text, path, out, err);
    free(text);
    return rc;
}

char *plan_to_json_string(const Plan *p) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    Plan copy = *p;
    int *fields[12];
    plan_int_fields(&copy, fields);
    cJSON_AddStringToObject(o, "model", p->model_ref[0] ? p->model_ref : p->model.name);
    cJSON_AddStringToObject(o, "cluster", p->cluster_ref[0] ? p->cluster_ref : p->cluster.name);
    for (int i = 0; i < 7; i++) cJSON_AddNumberToObject(o, plan_int_keys[i], *fields[i]);
    cJSON_AddNumberToObject(o, "dp", p->map.dp);     /* derived, for readers; ignored on load */
    cJSON_AddNumberToObject(o, "edp", p->map.edp);
    cJSON_AddStringToObject(o, "order", rank_order_name(p->map.order));
    for (int i = 7; i < 12; i++) cJSON_AddNumberToObject(o, plan_int_keys[i], *fields[i]);
    cJSON_AddStringToObject(o, "precision", p->train.precision == PRECISION_FP8 ? "fp8" : "bf16");
    cJSON_AddStringToObject(o, "dispatcher", dispatcher_name(p->train.dispatcher));
    cJSON_AddNumberToObject(o, "capacity_factor", p->train.capacity_factor);
    cJSON_AddNumberToObject(o, "imbalance", p->train.imbalance);
    cJSON_AddStringToObject(o, "recompute", recompute_name(p->train.recompute));
    if (p->train.recompute == RECOMPUTE_SELECTIVE) {
        char modules[128];
        recompute_modules_format(train_recompute_modules(&p->train, &p->model), ",", modules, sizeof modules);
        cJSON_AddStringToObject(o, "recompute_modules", modules);
    }
    cJSON_AddStringToObject(o, "optimizer_sharding", opt_sharding_name(p->train.opt_sharding));
    char overlap[128];
    overlap_format(p->train.overlap, overlap, sizeof overlap);
    cJSON_AddStringToObject(o, "overlap", overlap);
    cJSON_AddStringToObject(o, "flops", flops_convention_name(p->train.flops));
    cJSON_AddNumberToObject(o, "memory_reserve_gib", p->train.memory_reserve_bytes / GIB);
    cJSON_AddStringToObject(o, "attention_backend", attn_backend_name(p->train.attention_backend));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
