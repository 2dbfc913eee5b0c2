/* cmd_simulate.c: `moeplan simulate`: predict one training step of a plan
 * (step time, MFU, memory per stage, breakdown), as a readable report or
 * JSON, optionally with the timeline of every pipeline stage as a Chrome
 * trace and/or a picture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "planner/emit.h"
#include "planner/megatron_rules.h"
#include "commands.h"
#include "core/gnuplot.h"
#include "core/outfile.h"
#include "plan_warnings.h"
#include "simulator/result_json.h"
#include "simulator/simulate.h"

static const char *usage_text =
    "usage: moeplan simulate [--plan FILE] --model M [--cluster C] --gpus N [plan options]\n"
    "                        [--json | --emit megatron|launch [--launcher torchrun|srun]]\n"
    "                        [--timeline FILE] [--timeline-png FILE] [--calibration FILE]\n"
    "Predicts one training step of the plan: step time, MFU, memory per stage and a breakdown.\n"
    "  --json                           the result document (docs/schema/moeplan-result.schema.json)\n"
    "  --emit megatron|launch           the plan's Megatron-LM flags or launch script (as search --emit)\n"
    "                                   instead of the report; a plan Megatron-LM refuses is bad input\n"
    "  --launcher torchrun|srun         with --emit launch: the launcher (default torchrun)\n"
    "  --timeline FILE                  write a Chrome trace of the step: every pipeline stage's forward and\n"
    "                                   backward ops, the kernels of the stage with the most work; a name\n"
    "                                   ending in .png or .svg draws the picture of --timeline-png instead\n"
    "  --timeline-png FILE              draw every stage's ops of the step with gnuplot (.png or .svg)\n"
    "  --calibration FILE               price with a calibration file measured on the machine\n"
    "  --help                           this text\n"
    "plan options:\n" PLAN_ARGS_HELP;

#define GIB (1024.0 * 1024.0 * 1024.0)

typedef struct { const char *name; double v; } Item;

static int breakdown_items(const SimBreakdown *b, Item *it) {
    int n = 0;
    it[n++] = (Item){"compute_attention", b->compute_attention};
    it[n++] = (Item){"compute_moe", b->compute_moe};
    it[n++] = (Item){"compute_dense_mlp", b->compute_dense_mlp};
    it[n++] = (Item){"compute_embed_output", b->compute_embed_output};
    it[n++] = (Item){"compute_memory_bound", b->compute_memory_bound};
    it[n++] = (Item){"recompute", b->recompute};
    it[n++] = (Item){"comm_tp", b->comm_tp};
    it[n++] = (Item){"comm_cp", b->comm_cp};
    it[n++] = (Item){"comm_ep", b->comm_ep};
    it[n++] = (Item){"comm_etp", b->comm_etp};
    it[n++] = (Item){"comm_pp", b->comm_pp};
    it[n++] = (Item){"comm_dp", b->comm_dp};
    it[n++] = (Item){"comm_edp", b->comm_edp};
    it[n++] = (Item){"bubble", b->bubble};
    it[n++] = (Item){"optimizer", b->optimizer};
    return n;
}

/* The result document (docs/schema/moeplan-result.schema.json, "simulate"). */
static void print_json(const Plan *p, const SimResult *r, const char *cal_path, const Calibration *cal,
                       const PlanWarnings *w) {
    cJSON *doc = result_document("simulate", p, p->train.micro_batch, cal_path, cal ? cal->device : NULL);
    for (int i = 0; i < w->count; i++) result_add_warning(doc, w->line[i]);
    cJSON_AddItemToObject(doc, "plan", result_plan_json(p));
    cJSON_AddItemToObject(doc, "prediction", result_prediction_json(p, r, true));
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (text) printf("%s\n", text);
    free(text);
}

static void print_report(const Plan *p, const SimResult *r, const Calibration *cal) {
    char ov[128];
    overlap_format(p->train.overlap, ov, sizeof ov);
    const TrainConfig *t = &p->train;
    printf("%s on %d x %s (%s)\n", p->model.name, p->map.world, p->cluster.gpu_name, p->cluster.name);
    printf("attention TP%d CP%d DP%d PP%d%s%.0d   experts ETP%d EP%d EDP%d   order %s\n", p->map.tp, p->map.cp,
           p->map.dp, p->map.pp, p->map.vpp > 1 ? " VPP" : "", p->map.vpp > 1 ? p->map.vpp : 0, p->map.etp,
           p->map.ep, p->map.edp, rank_order_name(p->map.order));
    char routing[64];
    if (t->capacity_factor > 0) snprintf(routing, sizeof routing, "capacity factor %.2f", t->capacity_factor);
    else snprintf(routing, sizeof routing, "dropless, imbalance %.2f", t->imbalance);
    char rclabel[32];
    recompute_label(t->recompute, train_recompute_modules(t, &p->model), &p->model, rclabel, sizeof rclabel);
    printf("seq %d  mbs %d  gbs %d (%d micro-batches/pipeline)  %s  recompute %s  optimizer %s  overlap %s\n",
           t->seq_len, t->micro_batch, t->global_batch, t->global_batch / (t->micro_batch * p->map.dp), routing,
           rclabel, opt_sharding_name(t->opt_sharding), ov);
    int mg = megatron_first_violation(&p->model, &p->map, t);
    if (mg >= 0)
        printf("Megatron-LM refuses this plan: %s (%s, rule %s)\n", megatron_rule_text((MegatronRule)mg),
               megatron_rule_source((MegatronRule)mg), megatron_rule_name((MegatronRule)mg));
    printf("cost model: %s\n\n", cal ? cal->device : "defaults from public figures (docs/simulator.md)");
    printf("step time        %9.3f s\n", r->step_time_s);
    char leg[48], meg[48];
    if (r->mfu_legacy <= 1.0) snprintf(leg, sizeof leg, "%.1f %%", 100 * r->mfu_legacy);
    else snprintf(leg, sizeof leg, "n/a (overcounts at this seq)");
    if (r->mfu_megatron <= 1.0) snprintf(meg, sizeof meg, "%.1f %%", 100 * r->mfu_megatron);
    else snprintf(meg, sizeof meg, "n/a (overcounts at this seq)");
    printf("MFU              %9.1f %%   (%s FLOPs; legacy %s, megatron %s; peak %.1f TFLOP/s)\n",
           100 * r->mfu, flops_convention_name(t->flops), leg, meg, p->cluster.peak_bf16_flops / 1e12);
    if (t->precision == PRECISION_FP8 && p->cluster.peak_fp8_flops > 0)
        printf("MFU (FP8 peak)   %9.1f %%   (the same FLOPs against the dense FP8 peak, %.1f TFLOP/s)\n",
               100 * r->mfu * p->cluster.peak_bf16_flops / p->cluster.peak_fp8_flops, p->cluster.peak_fp8_flops / 1e12);
    printf("TFLOP/s per GPU  %9.1f\n", r->tflops_per_gpu);
    printf("tokens/s per GPU %9.1f\n", r->tokens_per_s_per_gpu);
    printf("peak memory      %9.2f GiB of %.2f GiB usable: %s\n\n", r->peak_memory_bytes / GIB,
           r->memory_capacity_bytes / GIB, r->fits ? "fits" : "DOES NOT FIT");
    printf("breakdown of the step (pipeline stage %d, the one with the most work):\n", r->critical_stage);
    Item it[16];
    int n = breakdown_items(&r->breakdown, it);
    for (int i = 0; i < n; i++)
        if (it[i].v > 0) printf("  %-22s %9.3f s  %5.1f %%\n", it[i].name, it[i].v, 100 * it[i].v / r->step_time_s);
    printf("largest non-compute cost: %s\n\n", r->dominant);
    printf("memory per GPU by pipeline stage (GiB):\n  %-5s %8s %9s %9s %11s %8s\n", "stage", "weights", "grads",
           "optimizer", "activations", "total");
    for (int s = 0; s < r->num_stages; s++) {
        const SimStageMemory *m = &r->stage_memory[s];
        printf("  %-5d %8.2f %9.2f %9.2f %11.2f %8.2f%s\n", s, m->weights / GIB, m->gradients / GIB,
               m->optimizer / GIB, m->activations / GIB, m->total / GIB,
               m->total > r->memory_capacity_bytes ? "  over capacity" : "");
    }
}

static bool is_picture(const char *path) {
    size_t n = strlen(path);
    return n > 4 && (!strcmp(path + n - 4, ".png") || !strcmp(path + n - 4, ".svg"));
}

int cmd_simulate(int argc, char **argv) {
    MpError err = {{0}};
    ArgList a;
    Plan *plan = calloc(1, sizeof *plan);
    SimResult *res = calloc(1, sizeof *res);
    Calibration *cal = NULL;
    int rc = 2;
    const char *timeline = NULL, *timeline_png = NULL, *emit = NULL, *launcher = NULL, *cal_path = NULL;
    bool json = false;
    if (!plan || !res) { fprintf(stderr, "moeplan simulate: out of memory\n"); rc = 1; goto done; }
    if (args_init(&a, argc, argv, &err)) goto bad;
    if (args_flag(&a, "--help")) { fputs(usage_text, stdout); rc = 0; goto done; }
    json = args_flag(&a, "--json");
    if (args_value(&a, "--timeline", &timeline, &err) || args_value(&a, "--timeline-png", &timeline_png, &err) || args_calibration(&a, &cal, &cal_path, &err) ||
        args_value(&a, "--emit", &emit, &err) || args_value(&a, "--launcher", &launcher, &err))
        goto bad;
    if (plan_from_args(&a, plan, false, &err)) goto bad;
    if (args_finish(&a, &err)) goto bad;
    if (emit && strcmp(emit, "megatron") && strcmp(emit, "launch")) {
        mp_fail(&err, "--emit: '%s' is not megatron or launch", emit);
        goto bad;
    }
    if (emit && json) { mp_fail(&err, "--emit: cannot be combined with --json"); goto bad; }
    if (launcher && strcmp(launcher, "torchrun") && strcmp(launcher, "srun")) {
        mp_fail(&err, "--launcher: '%s' is not torchrun or srun", launcher);
        goto bad;
    }
    if (launcher && (!emit || strcmp(emit, "launch"))) { mp_fail(&err, "--launcher: only with --emit launch"); goto bad; }
    if (emit) {
        int mg = megatron_first_violation(&plan->model, &plan->map, &plan->train);
        if (mg >= 0) {
            mp_fail(&err, "--emit: Megatron-LM refuses this plan: %s (%s)", megatron_rule_text((MegatronRule)mg),
                    megatron_rule_source((MegatronRule)mg));
            goto bad;
        }
        char *text = !strcmp(emit, "launch")
                         ? emit_launch_script(plan, launcher && !strcmp(launcher, "srun") ? LAUNCH_SRUN : LAUNCH_TORCHRUN)
                         : emit_megatron_flags(plan);
        if (!text) { fprintf(stderr, "moeplan simulate: out of memory\n"); rc = 1; goto done; }
        printf("%s\n", text);
        free(text);
        rc = 0;
        goto done;
    }
    /* --timeline FILE.png|.svg is the picture; any other name the Chrome trace */
    if (timeline && is_picture(timeline)) {
        if (timeline_png) {
            mp_fail(&err, "--timeline %s and --timeline-png %s: both ask for the picture (give the Chrome trace a .json name)",
                    timeline, timeline_png);
            goto bad;
        }
        timeline_png = timeline;
        timeline = NULL;
    }
    if (timeline_png && !is_picture(timeline_png)) {
        mp_fail(&err, "--timeline-png: '%s' must end in .png or .svg", timeline_png);
        goto bad;
    }
    if (timeline && outfile_check_target(timeline, &err)) goto bad;
    if (timeline_png && outfile_check_target(timeline_png, &err)) goto bad;
    if (timeline_png && gnuplot_available(&err)) {
        fprintf(stderr, "moeplan simulate: --timeline-png: %s, or drop it; nothing was run\n", err.msg);
        rc = 1;
        goto done;
    }
    SimOptions opt = {.timeline_path = timeline, .timeline_png_path = timeline_png};
    if (simulate_step(plan, cal, &opt, res, &err)) {
        /* a timeline that cannot be written or an internal error is a runtime failure; anything else is a bad plan */
        rc = ((timeline || timeline_png) && strstr(err.msg, "timeline")) || !strncmp(err.msg, "internal error", 14) ? 1 : 2;
        fprintf(stderr, "moeplan simulate: %s\n", err.msg);
        goto done;
    }
    PlanWarnings warn = {0};
    plan_warnings_calibration(plan, cal, &warn);
    plan_warnings_batch(plan, &warn);
    for (int i = 0; i < warn.count; i++) fprintf(stderr, "moeplan simulate: warning: %s\n", warn.line[i]);
    if (json) print_json(plan, res, cal_path, cal, &warn);
    else print_report(plan, res, cal);
    rc = 0;
    goto done;
bad:
    fprintf(stderr, "moeplan simulate: %s\n", err.msg);
    rc = 2;
done:
    free(plan);
    free(res);
    free(cal);
    return rc;
}
