/* measure.c: reported figures of a run (see measure.h). */
#include "executor/measure.h"

#include "core/outfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/flops.h"
#include "simulator/result_json.h"

void measure_truncated_model(const ModelSpec *full, int layers, ModelSpec *out) {
    *out = *full;
    if (layers > 0 && layers < full->num_layers) {
        out->num_layers = layers;
        if (out->num_dense_layers > layers) out->num_dense_layers = layers;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double measure_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void measure_prediction(const SimResult *r, MeasurePrediction *out) {
    memset(out, 0, sizeof *out);
    const SimBreakdown *b = &r->breakdown;
    out->fits = r->fits;
    out->step_time_s = r->step_time_s;
    out->mfu_legacy = r->mfu_legacy;
    out->mfu_megatron = r->mfu_megatron;
    out->tflops_per_gpu = r->tflops_per_gpu;
    out->tokens_per_s_per_gpu = r->tokens_per_s_per_gpu;
    out->peak_memory_bytes = r->peak_memory_bytes;
    out->memory_capacity_bytes = r->memory_capacity_bytes;
    out->phases.step = r->step_time_s;
    out->phases.attention = b->compute_attention;
    out->phases.moe_compute = b->compute_moe + b->compute_memory_bound + b->compute_dense_mlp;
    out->phases.dispatcher_comm = b->comm_ep + b->comm_etp;
    out->phases.grad_sync = b->comm_dp + b->comm_edp;
    out->phases.optimizer = b->optimizer;
    out->phases.other = b->compute_embed_output + b->recompute + b->comm_tp;
    out->phases.pipeline = b->comm_pp + b->bubble;
    out->phases.cp_comm = b->comm_cp;   /* the ring's exposed K/V (dK/dV) transfers */
    snprintf(out->dominant, sizeof out->dominant, "%s", r->dominant);
    out->breakdown = r->breakdown;
    out->critical_stage = r->critical_stage;
    /* as measured (cmd_execute.c: each category's maximum over the
     * ranks, and the largest rank's peak): each category's maximum over
     * the stages, and the largest stage's total (equal to the sum of the
     * categories without a pipeline) */
    for (int st = 0; st < r->num_stages && st < SIM_MAX_STAGES; st++) {
        const SimStageMemory *sm = &r->stage_memory[st];
        const double v[EXEC_MEM_CATEGORIES] = {sm->weights, sm->gradients, sm->optimizer, sm->activations,
                                               sm->communication, sm->workspace};
        if (sm->total > out->mem_total) out->mem_total = sm->total;
        for (int k = 0; k < EXEC_MEM_CATEGORIES; k++)
            if (v[k] > out->mem_bytes[k]) out->mem_bytes[k] = v[k];
    }
}

void measure_compute(const Plan *plan, int layers, int world, const ExecStepStats *stats,
                     const SimResult *pred, Measurement *m) {
    memset(m, 0, sizeof *m);
    ModelSpec model;
    measure_truncated_model(&plan->model, layers, &model);
    m->world = world;
    m->layers = model.num_layers;
    m->steps_timed = stats->steps_timed;
    m->tokens_per_step = stats->tokens_per_step;
    m->phases = stats->median;
    m->peak_memory_bytes = stats->peak_memory_bytes;
    m->mem_peak_bytes = stats->mem_peak_bytes;
    memcpy(m->mem_bytes, stats->mem_bytes, sizeof m->mem_bytes);
    m->loss_first = stats->loss_first;
    m->loss_last = stats->loss_last;
    m->losses = stats->losses;
    int seq = plan->train.seq_len;
    m->flops_legacy = model_flops(&model, FLOPS_LEGACY, seq, stats->tokens_per_step);
    m->flops_megatron = model_flops(&model, FLOPS_MEGATRON, seq, stats->tokens_per_step);
    double t = stats->median.step;
    double peak = plan->cluster.peak_bf16_flops;
    if (t > 0 && world > 0) {
        m->tflops_legacy_per_gpu = m->flops_legacy / t / world / 1e12;
        m->tflops_megatron_per_gpu = m->flops_megatron / t / world / 1e12;
        m->tokens_per_s_per_gpu = stats->tokens_per_step / t / world;
        if (peak > 0) {
            m->mfu_legacy = m->flops_legacy / (t * world * peak);
            m->mfu_megatron = m->flops_megatron / (t * world * peak);
        }
    }
    if (pred) {
        m->have_prediction = true;
        measure_prediction(pred, &m->predicted);
    }
}

void measure_add_calibrated(Measurement *m, const SimResult *pred, const char *path, const char *device) {
    m->have_calibrated = true;
    measure_prediction(pred, &m->calibrated);
    snprintf(m->calibration_path, sizeof m->calibration_path, "%s", path ? path : "");
    snprintf(m->calibration_device, sizeof m->calibration_device, "%s", device ? device : "");
}

void measure_rates(const Plan *plan, int layers, int act_bytes, Measurement *m) {
    ModelSpec md;
    measure_truncated_model(&plan->model, layers, &md);
    const Mapping *map = &plan->map;
    const TrainConfig *t = &plan->train;
    double T = (double)t->micro_batch * t->seq_len / ((double)map->tp * map->cp);
    double mb = map->dp > 0 && t->micro_batch > 0 ? (double)t->global_batch / ((double)t->micro_batch * map->dp) : 0;
    /* a pipeline: the layers of one stage (an even share; the rates are
     * averages per GPU) */
    double pp = map->pp > 1 ? map->pp : 1;
    double Lm = model_num_moe_layers(&md) / pp, L = md.num_layers / pp;
    double h = md.hidden, n = md.num_heads, g = md.num_kv_groups, d = md.head_dim, s = t->seq_len;
    m->a2a_bytes_per_gpu = map->ep > 1 ? 4.0 * Lm * mb * T * md.top_k * h * act_bytes : 0;
    m->a2a_busbw = m->phases.dispatcher_comm > 0
                       ? m->a2a_bytes_per_gpu * (map->ep - 1) / map->ep / m->phases.dispatcher_comm : 0;
    /* forward + backward = 3 x forward (core/flops.h); attention: the QKV
     * and output projections plus the causal core, per token */
    double expert = 3.0 * flops_experts(T * Lm * mb, md.top_k, h, md.expert_ffn, md.swiglu) / map->etp;
    double core_per_token = flops_attention_core(flops_attention_pairs(0, s, 0, s, true), n, d, d) / s;
    double attn = 3.0 * L * T * mb * (2.0 * h * (n + 2 * g) * d + 2.0 * n * d * h + core_per_token) / map->tp;
    m->expert_tflops = m->phases.moe_compute > 0 ? expert / m->phases.moe_compute / 1e12 : 0;
    m->attention_tflops = m->phases.attention > 0 ? attn / m->phases.attention / 1e12 : 0;
}

/* one table row: measured, then the predictions present (defaults, calibrated) */
static void row(FILE *f, const Measurement *m, const char *name, double measured, const double *pred, double scale,
                const char *unit) {
    fprintf(f, "  %-26s %12.3f", name, measured * scale);
    if (m->have_prediction) {
        if (pred) fprintf(f, " %12.3f", pred[0] * scale);
        else fprintf(f, " %12s", "");
    }
    if (m->have_calibrated) {
        if (pred) fprintf(f, " %12.3f", pred[1] * scale);
        else fprintf(f, " %12s", "");
    }
    fprintf(f, "  %s\n", unit);
}

/* predicted value of field `off` of MeasurePrediction, defaults and calibrated */
#define PRED(field) ((const double[2]){m->predicted.field, m->calibrated.field})

void measure_print(FILE *f, const Plan *plan, const Measurement *m) {
    const Mapping *map = &plan->map;
    fprintf(f, "moeplan execute: %s, %d of %d layers, seq %d, mbs %d, gbs %d on %d x %s (%s backend%s%s%s%s%s%s, %s launch)\n",
            plan->model.name, m->layers, plan->model.num_layers, plan->train.seq_len, plan->train.micro_batch,
            plan->train.global_batch, m->world, m->device, m->backend, m->attention[0] ? ", " : "", m->attention,
            m->attention[0] ? " attention" : "", m->expert_gemm[0] ? ", " : "", m->expert_gemm,
            m->expert_gemm[0] ? " expert GEMMs" : "", m->launcher);
    fprintf(f, "  attention TP%d CP%d DP%d PP%d | experts ETP%d EP%d EDP%d | %s dispatcher, %s\n", map->tp,
            map->cp, map->dp, map->pp, map->etp, map->ep, map->edp, dispatcher_name(plan->train.dispatcher),
            plan->train.capacity_factor > 0 ? "capacity factor" : "dropless");
    char overlap[64];
    overlap_format(plan->train.overlap, overlap, sizeof overlap);
    fprintf(f, "  %s activations, optimizer sharding %s, recompute %s, overlap %s | seed %llu, lr %g, aux-loss %g, %s data\n",
            m->act_dtype[0] ? m->act_dtype : "?", opt_sharding_name(plan->train.opt_sharding),
            recompute_name(plan->train.recompute), overlap, m->seed, m->lr, m->aux_loss_coeff,
            m->data[0] ? m->data : "?");
    fprintf(f, "  %d steps, %d warm-up, median of %d; loss %.4f -> %.4f\n", m->steps, m->warmup,
            m->steps_timed, m->loss_first, m->loss_last);
    if (m->op_profile)
        fprintf(f, "  every operation timed (--op-profile): the step is slower than an unprofiled one\n");
    if (m->have_calibrated) fprintf(f, "  calibrated: %s (%s)\n", m->calibration_path, m->calibration_device);
    fprintf(f, "\n");
    bool p = m->have_prediction;
    fprintf(f, "  %-26s %12s%s%s\n", "", "measured", p ? "    predicted" : "", m->have_calibrated ? "   calibrated" : "");
    const double *none = NULL;
    row(f, m, "step time", m->phases.step, p ? PRED(step_time_s) : none, 1e3, "ms");
    row(f, m, "  attention", m->phases.attention, p ? PRED(phases.attention) : none, 1e3, "ms");
    row(f, m, "  MoE compute", m->phases.moe_compute, p ? PRED(phases.moe_compute) : none, 1e3, "ms");
    row(f, m, "  dispatcher comm", m->phases.dispatcher_comm, p ? PRED(phases.dispatcher_comm) : none, 1e3, "ms");
    row(f, m, "  gradient sync", m->phases.grad_sync, p ? PRED(phases.grad_sync) : none, 1e3, "ms");
    row(f, m, "  optimizer", m->phases.optimizer, p ? PRED(phases.optimizer) : none, 1e3, "ms");
    row(f, m, "  other (embed, output)", m->phases.other, p ? PRED(phases.other) : none, 1e3, "ms");
    if (plan->map.pp > 1)
        row(f, m, "  pipeline P2P + bubble", m->phases.pipeline, p ? PRED(phases.pipeline) : none, 1e3, "ms");
    if (plan->map.cp > 1)
        row(f, m, "  CP ring comm (exposed)", m->phases.cp_comm, p ? PRED(phases.cp_comm) : none, 1e3, "ms");
    row(f, m, "MFU (megatron)", m->mfu_megatron, p ? PRED(mfu_megatron) : none, 100, "%");
    row(f, m, "MFU (legacy)", m->mfu_legacy, p ? PRED(mfu_legacy) : none, 100, "%");
    row(f, m, "TFLOP/s per GPU (megatron)", m->tflops_megatron_per_gpu, none, 1, "TFLOP/s");
    row(f, m, "TFLOP/s per GPU (legacy)", m->tflops_legacy_per_gpu, none, 1, "TFLOP/s");
    row(f, m, "tokens/s per GPU", m->tokens_per_s_per_gpu, p ? PRED(tokens_per_s_per_gpu) : none, 1, "tokens/s");
    if (m->expert_tflops > 0) row(f, m, "MoE phase TFLOP/s (experts)", m->expert_tflops, none, 1, "TFLOP/s");
    if (m->attention_tflops > 0) row(f, m, "attention TFLOP/s", m->attention_tflops, none, 1, "TFLOP/s");
    if (m->a2a_busbw > 0) row(f, m, "dispatcher a2a busbw", m->a2a_busbw, none, 1e-9, "GB/s");
    row(f, m, "peak memory (device/RSS)", m->peak_memory_bytes, p ? PRED(peak_memory_bytes) : none, 1.0 / 1073741824.0, "GiB");
    /* the backend's allocations at their peak beside the memory model, by
     * category (MiB: the tiny CPU models hold a few) */
    static const char *cat[EXEC_MEM_CATEGORIES] = {"  weights", "  gradients", "  optimizer state", "  activations",
                                                   "  communication buffers", "  workspaces"};
    row(f, m, "peak allocated per GPU", m->mem_peak_bytes, p ? PRED(mem_total) : none, 1.0 / 1048576.0, "MiB");
    for (int k = 0; k < EXEC_MEM_CATEGORIES; k++)
        row(f, m, cat[k], m->mem_bytes[k], p ? PRED(mem_bytes[k]) : none, 1.0 / 1048576.0, "MiB");
    if (p && m->predicted.dominant[0]) fprintf(f, "  predicted dominant cost: %s\n", m->predicted.dominant);
}

#undef PRED

void measure_print_pipeline(FILE *f, int stage, const ExecOpTime *ops, int n, const SimOpEvent *sim, int nsim) {
    fprintf(f, "\n  pipeline stage %d, last step: each forward (F) and backward (B) of (chunk c, micro-batch mb),\n"
               "  ms from the step's start (measured: host clock; simulated: stage 0 of the plan)\n", stage);
    fprintf(f, "  %-37s | %s\n", "measured        start -        end", "simulated       start -        end");
    int rows = n > nsim ? n : nsim;
    for (int i = 0; i < rows; i++) {
        char a[64] = "", b[64] = "";
        if (i < n)
            snprintf(a, sizeof a, "%c c%d mb%-3d %10.3f - %10.3f", ops[i].forward ? 'F' : 'B', ops[i].chunk,
                     ops[i].microbatch, ops[i].start * 1e3, ops[i].end * 1e3);
        if (sim && i < nsim)
            snprintf(b, sizeof b, "%c c%d mb%-3d %10.3f - %10.3f", sim[i].forward ? 'F' : 'B', sim[i].chunk,
                     sim[i].microbatch, sim[i].start * 1e3, sim[i].end * 1e3);
        fprintf(f, "  %-37s | %s\n", a, b);
    }
}

static cJSON *phases_json(const ExecPhases *ph) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", ph->step);
    cJSON_AddNumberToObject(o, "attention", ph->attention);
    cJSON_AddNumberToObject(o, "moe_compute", ph->moe_compute);
    cJSON_AddNumberToObject(o, "dispatcher_comm", ph->dispatcher_comm);
    cJSON_AddNumberToObject(o, "grad_sync", ph->grad_sync);
    cJSON_AddNumberToObject(o, "optimizer", ph->optimizer);
    cJSON_AddNumberToObject(o, "other", ph->other);
    cJSON_AddNumberToObject(o, "pipeline", ph->pipeline);
    cJSON_AddNumberToObject(o, "cp_comm", ph->cp_comm);
    return o;
}

/* bytes by category (ExecStepStats.mem_bytes order) and their total */
static cJSON *memory_json(double total, const double *bytes) {
    static const char *key[EXEC_MEM_CATEGORIES] = {"weights", "gradients", "optimizer", "activations", "communication",
                                                   "workspace"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "total", total);
    for (int k = 0; k < EXEC_MEM_CATEGORIES; k++) cJSON_AddNumberToObject(o, key[k], bytes[k]);
    return o;
}

static cJSON *pair_json(double legacy, double megatron) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "legacy", legacy);
    cJSON_AddNumberToObject(o, "megatron", megatron);
    return o;
}

/* A prediction in the shared schema (simulator/result_json.h) plus the
 * executor's phases; memory per stage is not kept here (null). */
static cJSON *prediction_json(const Plan *plan, const MeasurePrediction *q) {
    SimResult *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->fits = q->fits;
    r->step_time_s = q->step_time_s;
    r->mfu_legacy = q->mfu_legacy;
    r->mfu_megatron = q->mfu_megatron;
    r->mfu = plan->train.flops == FLOPS_MEGATRON ? q->mfu_megatron : q->mfu_legacy;
    r->tflops_per_gpu = q->tflops_per_gpu;
    r->tokens_per_s_per_gpu = q->tokens_per_s_per_gpu;
    r->peak_memory_bytes = q->peak_memory_bytes;
    r->memory_capacity_bytes = q->memory_capacity_bytes;
    r->breakdown = q->breakdown;
    r->critical_stage = q->critical_stage;
    snprintf(r->dominant, sizeof r->dominant, "%s", q->dominant);
    cJSON *pr = result_prediction_json(plan, r, false);
    free(r);
    cJSON_AddItemToObject(pr, "phases_s", phases_json(&q->phases));
    cJSON_AddItemToObject(pr, "memory_bytes", memory_json(q->mem_total, q->mem_bytes));
    return pr;
}

char *measure_to_json(const Plan *plan, const Measurement *m) {
    cJSON *root = result_document("execute", plan, plan->train.micro_batch,
                                  m->have_calibrated ? m->calibration_path : NULL,
                                  m->have_calibrated ? m->calibration_device : NULL);
    char *plan_text = plan_to_json_string(plan);
    cJSON *pl = plan_text ? cJSON_Parse(plan_text) : NULL;
    free(plan_text);
    if (!pl) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToObject(root, "plan", pl);

    cJSON *run = cJSON_AddObjectToObject(root, "run");
    cJSON_AddStringToObject(run, "backend", m->backend);
    if (m->attention[0]) cJSON_AddStringToObject(run, "attention", m->attention);
    if (m->expert_gemm[0]) cJSON_AddStringToObject(run, "expert_gemm", m->expert_gemm);
    cJSON_AddNumberToObject(run, "moe_dispatches", (double)m->dispatches);
    cJSON_AddNumberToObject(run, "moe_dispatches_padded", (double)m->padded_dispatches);
    cJSON_AddStringToObject(run, "launcher", m->launcher);
    cJSON_AddStringToObject(run, "device", m->device);
    /* what the step ran (preflight replaced any default it does not run) */
    cJSON_AddStringToObject(run, "optimizer_sharding", opt_sharding_name(plan->train.opt_sharding));
    char overlap[64];
    overlap_format(plan->train.overlap, overlap, sizeof overlap);
    cJSON_AddStringToObject(run, "overlap", overlap);
    cJSON_AddNumberToObject(run, "world", m->world);
    cJSON_AddNumberToObject(run, "layers", m->layers);
    cJSON_AddNumberToObject(run, "steps", m->steps);
    cJSON_AddNumberToObject(run, "warmup", m->warmup);
    cJSON_AddNumberToObject(run, "steps_timed", m->steps_timed);
    cJSON_AddNumberToObject(run, "tokens_per_step", m->tokens_per_step);
    cJSON_AddNumberToObject(run, "seed", (double)m->seed);
    cJSON_AddNumberToObject(run, "lr", m->lr);
    cJSON_AddNumberToObject(run, "aux_loss_coeff", m->aux_loss_coeff);
    cJSON_AddStringToObject(run, "act_dtype", m->act_dtype);
    cJSON_AddStringToObject(run, "data", m->data);
    cJSON_AddBoolToObject(run, "op_profile", m->op_profile);

    cJSON *me = cJSON_AddObjectToObject(root, "measured");
    cJSON_AddNumberToObject(me, "step_time_s", m->phases.step);
    cJSON_AddItemToObject(me, "phases_s", phases_json(&m->phases));
    cJSON_AddItemToObject(me, "model_flops_per_step", pair_json(m->flops_legacy, m->flops_megatron));
    cJSON_AddItemToObject(me, "mfu", result_mfu_json(plan, m->mfu_legacy, m->mfu_megatron));
    cJSON_AddItemToObject(me, "tflops_per_gpu", pair_json(m->tflops_legacy_per_gpu, m->tflops_megatron_per_gpu));
    cJSON_AddNumberToObject(me, "tokens_per_s_per_gpu", m->tokens_per_s_per_gpu);
    cJSON_AddNumberToObject(me, "peak_memory_bytes", m->peak_memory_bytes);
    cJSON_AddItemToObject(me, "memory_bytes", memory_json(m->mem_peak_bytes, m->mem_bytes));
    cJSON_AddNumberToObject(me, "a2a_bytes_per_gpu", m->a2a_bytes_per_gpu);
    cJSON_AddNumberToObject(me, "a2a_busbw", m->a2a_busbw);
    cJSON_AddNumberToObject(me, "expert_tflops", m->expert_tflops);
    cJSON_AddNumberToObject(me, "attention_tflops", m->attention_tflops);
    cJSON_AddNumberToObject(me, "loss_first", m->loss_first);
    cJSON_AddNumberToObject(me, "loss_last", m->loss_last);
    if (m->losses && m->steps > 0)
        cJSON_AddItemToObject(me, "losses", cJSON_CreateDoubleArray(m->losses, m->steps));

    if (m->have_prediction) cJSON_AddItemToObject(root, "predicted", prediction_json(plan, &m->predicted));
    else cJSON_AddNullToObject(root, "predicted");
    if (m->have_calibrated) {
        cJSON *pc = prediction_json(plan, &m->calibrated);
        cJSON_AddStringToObject(pc, "calibration", m->calibration_path);
        cJSON_AddStringToObject(pc, "calibration_device", m->calibration_device);
        cJSON_AddItemToObject(root, "predicted_calibrated", pc);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

int measure_write_atomic(const char *path, const char *text, MpError *err) {
    /* core/outfile.h: a unique temporary beside path, checked, renamed */
    OutFile o;
    if (outfile_open(&o, path, err)) return -1;
    if (fputs(text, o.f) == EOF || fputc('\n', o.f) == EOF) {
        mp_fail(err, "%s: cannot write: %s", path, strerror(errno));
        outfile_discard(&o);
        return -1;
    }
    return outfile_commit(&o, err);
}
