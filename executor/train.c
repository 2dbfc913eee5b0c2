/* train.c: exec_train (executor.h) and the Trainer step loop (train.h). */
#include "executor/train.h"

#include "core/layout.h"
#include "executor/op_profile.h"

#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double exec_aux_loss_coeff(const ExecOptions *opt)
{
    /* Megatron MoE / Mixtral recipes: --moe-aux-loss-coeff 1e-2 */
    return opt->aux_loss_coeff == 0 ? 1e-2 : opt->aux_loss_coeff < 0 ? 0.0 : opt->aux_loss_coeff;
}

int trainer_create(const Plan *plan, const ExecOptions *opt, const ExecComms *comms,
                   Trainer **out, MpError *err)
{
    Trainer *t = calloc(1, sizeof *t);
    if (!t) return mp_fail(err, "executor: out of host memory");
    t->dp = comms->size_of[GROUP_DP];
    t->dp_rank = comms->rank_in[GROUP_DP];
    t->cp = comms->size_of[GROUP_CP] > 1 ? comms->size_of[GROUP_CP] : 1;
    t->cp_rank = comms->rank_in[GROUP_CP];
    t->B = plan->train.global_batch;
    t->b = plan->train.micro_batch;
    t->s = plan->train.seq_len;
    t->lr = (float)opt->lr;   /* as given: lr 0 is a run whose weights never move */
    if (t->b <= 0 || t->B <= 0 || t->B % (t->b * t->dp)) {
        free(t);
        return mp_fail(err, "gbs: global batch %d is not a multiple of micro-batch %d x DP %d",
                       plan->train.global_batch, plan->train.micro_batch, comms->size_of[GROUP_DP]);
    }
    t->micro_batches = t->B / (t->b * t->dp);
    t->trace_per_mb = (size_t)(opt->layers > 0 && opt->layers < plan->model.num_layers ? opt->layers : plan->model.num_layers) *
                      (size_t)t->b * t->s * plan->model.top_k;
    int rc;
    if (opt->backend == EXEC_BACKEND_CUDA) {
#ifdef MOEPLAN_HAVE_CUDA
        rc = backend_cuda_create(comms, opt->attention, opt->expert_gemm, &t->be, err);
#else
        rc = mp_fail(err, "backend: this build has no CUDA (nvcc was not found at build time)");
#endif
    } else {
        rc = backend_cpu_create(comms, &t->be, err);
    }
    if (rc) { free(t); return -1; }
    if (model_create(plan, opt->layers, opt->seed, t->be, &t->model, err) ||
        data_open(&t->data, opt->data_path, opt->data_bits ? opt->data_bits : 16,
                  plan->model.vocab, t->s, opt->seed, err)) {
        trainer_destroy(t);
        return -1;
    }
    int pp, vpp, m;
    model_pipeline(t->model, &pp, &t->stage, &vpp, &m);
    t->sched = (PipeSchedule){pp, vpp, m};
    for (int c = 0; c < vpp; c++)
        if (model_chunk_slots(t->model, c) > t->most_slots) t->most_slots = model_chunk_slots(t->model, c);
    t->slot_of = malloc(sizeof(int) * (size_t)vpp * m);
    t->free_slot = malloc(sizeof(int) * (size_t)vpp * t->most_slots);
    t->nfree = malloc(sizeof(int) * (size_t)vpp);
    t->executed = malloc(sizeof(PipeOp) * (size_t)schedule_num_ops(&t->sched));
    t->op_time = malloc(2 * sizeof(double) * (size_t)schedule_num_ops(&t->sched));
    if (!t->slot_of || !t->free_slot || !t->nfree || !t->executed || !t->op_time) {
        trainer_destroy(t);
        return mp_fail(err, "executor: out of host memory");
    }
    t->overlap_p2p = (plan->train.overlap & OVERLAP_P2P) != 0;
    t->pp_pending = t->fwd_pending = -1;
    t->aux_coeff = (float)exec_aux_loss_coeff(opt);
    model_set_aux_loss_coeff(t->model, t->aux_coeff);
    t->padded_groups = model_set_expert_gemm(t->model, opt->expert_gemm);
    if (!opt->data_path && opt->random_tokens) t->data.random = 1;
    t->loss_dev = t->be->alloc(t->be, sizeof(float));
    /* overlap, interleaved: the next forward's input arrives here early */
    if (t->overlap_p2p && vpp > 1) {
        t->stage_in = t->be->alloc(t->be, model_boundary_elems(t->model) * (size_t)t->be->act_bytes);
        if (!t->stage_in) { trainer_destroy(t); return mp_fail(err, "executor: device memory: the pipeline's staging buffer"); }
    }
    t->in = malloc(sizeof(int32_t) * (size_t)t->b * t->s);
    t->tg = malloc(sizeof(int32_t) * (size_t)t->b * t->s);
    if (!t->loss_dev || !t->in || !t->tg) { trainer_destroy(t); return mp_fail(err, "executor: out of memory"); }
    *out = t;
    return 0;
}

void trainer_destroy(Trainer *t)
{
    if (!t) return;
    model_destroy(t->model);
    data_close(&t->data);
    if (t->loss_dev) t->be->release(t->be, t->loss_dev);
    if (t->stage_in) t->be->release(t->be, t->stage_in);
    if (t->be) t->be->destroy(t->be);
    free(t->in); free(t->tg);
    free(t->slot_of); free(t->free_slot); free(t->nfree); free(t->executed); free(t->op_time);
    free(t);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* host tokens and targets of micro-batch mb of this step (and its routing
 * trace, tests) */
static void load_micro_batch(Trainer *t, int mb)
{
    int s = t->s, b = t->b;
    if (t->trace) {
        /* global micro-batch index: the same sequences under every mapping */
        size_t g = (size_t)mb * t->dp + (size_t)t->dp_rank;
        model_set_routing_trace(t->model, t->trace + g * t->trace_per_mb, t->trace_force);
    }
    for (int j = 0; j < b; j++) {
        uint64_t idx = (uint64_t)t->step * (uint64_t)t->B +
                       (uint64_t)mb * (uint64_t)(t->dp * b) + (uint64_t)(t->dp_rank * b + j);
        data_sequence(&t->data, idx, t->in + (size_t)j * s, t->tg + (size_t)j * s);
    }
    if (t->cp > 1) {
        /* keep this CP rank's chunks r and 2 cp - 1 - r of every sequence
         * (core/layout.h), packed to [b, s / cp]: in place, every token
         * moves to a lower or equal index, in increasing order */
        int c = s / (2 * t->cp), ch[2];
        layout_cp_chunks(t->cp, t->cp_rank, ch);
        for (int j = 0; j < b; j++)
            for (int hf = 0; hf < 2; hf++)
                for (int i = 0; i < c; i++) {
                    size_t dst = (size_t)j * 2 * c + (size_t)hf * c + i, src = (size_t)j * s + (size_t)ch[hf] * c + i;
                    t->in[dst] = t->in[src];
                    t->tg[dst] = t->tg[src];
                }
    }
}

static P2POp transfer(Trainer *t, bool send, int peer, int chunk, int slot, ModelBoundary which)
{
    return (P2POp){send, peer, model_boundary(t->model, chunk, slot, which), model_boundary_elems(t->model)};
}

/* The wait for the pipeline batch in flight, if any: its time (the
 * transfer, or the part of it the compute since its start did not hide,
 * and the neighbour's lateness: the bubble) is PHASE_PIPELINE. */
/* waits for the batch *pending if one is in flight (PHASE_PIPELINE) and
 * clears it; whether there was one */
static bool p2p_batch_wait(Trainer *t, int *pending)
{
    if (*pending < 0) return false;
    t->be->phase_begin(t->be, PHASE_PIPELINE);
    t->be->p2p_wait(t->be, *pending);
    t->be->phase_end(t->be, PHASE_PIPELINE);
    *pending = -1;
    return true;
}

static void pipeline_wait(Trainer *t)
{
    if (p2p_batch_wait(t, &t->pp_pending) && t->pp_ops_behind > 0) t->pp_overlapped++;
}

/* The pipeline's transfers at boundary i of the rank's operation list
 * (0 <= i <= N), when schedule_p2p_boundary says so: the sends of the
 * operations since the previous exchange (forward: the chunk's output to
 * the next virtual stage; backward: d loss / d input to the previous one)
 * and the receives of the operations up to the next exchange, one batch
 * (Backend.p2p_start).  Every rank's exchanges follow its schedule, so the
 * neighbours' batches pair up as Megatron-LM's do, and all ranks of a stage
 * (the members of its EP and DP groups) issue their P2P batches and their
 * all-to-alls in the same order.  Takes a context for each forward up to
 * the next exchange (slot_of).
 * Blocking (no --overlap p2p): the batch is waited for at once.  Overlap:
 * it is waited for before the first operation up to the next exchange that
 * reads one of its receives or writes one of its send buffers
 * (t->pp_wait_at), else at the next exchange, so the operations before run
 * while it is in flight; the previous exchange's batch is waited for first
 * (the GPU runs them in stream order anyway).  Beside it at most one early
 * forward half is in flight (early_forward_batch). */
static int exchange(Trainer *t, int i, int *prev_cut, MpError *err)
{
    pipeline_wait(t);
    const PipeSchedule *sc = &t->sched;
    int pp = sc->pp, N = schedule_num_ops(sc), last_vs = pp * sc->vpp - 1, next = i + 1;
    while (next < N && !schedule_p2p_boundary(sc, t->stage, next)) next++;
    /* the forward half of this batch already left (early_forward_batch) */
    bool fwd_taken = t->early_boundary == i;
    t->early_boundary = -1;
    P2POp ops[BACKEND_P2P_MAX];
    int n = 0;
    for (int k = *prev_cut; k < i; k++) {
        PipeOp op = t->executed[k];
        int vs = op.chunk * pp + t->stage, *so = &t->slot_of[op.chunk * sc->m + op.microbatch];
        if (op.forward && vs < last_vs && !fwd_taken)
            ops[n++] = transfer(t, true, (t->stage + 1) % pp, op.chunk, *so, BOUNDARY_OUTPUT);
        if (!op.forward) {
            if (vs > 0) ops[n++] = transfer(t, true, (t->stage + pp - 1) % pp, op.chunk, *so, BOUNDARY_GRAD);
            /* the context is free: only its GRAD buffer is still read (by
             * this send), and a forward that takes it at once receives into
             * its INPUT buffer */
            t->free_slot[op.chunk * t->most_slots + t->nfree[op.chunk]++] = *so;
            *so = -1;
        }
    }
    t->pp_wait_at = next;
    for (int k = i; k < next && k < N; k++) {
        PipeOp op = schedule_op(sc, t->stage, k);
        int vs = op.chunk * pp + t->stage, *so = &t->slot_of[op.chunk * sc->m + op.microbatch];
        int receives = op.forward ? vs > 0 && !fwd_taken : vs < last_vs;
        if (op.forward) {
            if (t->nfree[op.chunk] == 0)
                return mp_fail(err, "executor: chunk %d has no free micro-batch context (schedule)", op.chunk);
            *so = t->free_slot[op.chunk * t->most_slots + --t->nfree[op.chunk]];
            if (receives) ops[n++] = transfer(t, false, (t->stage + pp - 1) % pp, op.chunk, *so, BOUNDARY_INPUT);
        } else if (vs < last_vs) {
            ops[n++] = transfer(t, false, (t->stage + 1) % pp, op.chunk, *so, BOUNDARY_GRAD);
        }
        /* an operation that writes a buffer this batch sends (the last
         * virtual stage's forward and backward of one micro-batch share a
         * context: the backward writes the GRAD buffer its predecessor's
         * backward sends) waits for it as well */
        bool writes_sent = false;
        void *wr = *so >= 0 ? model_boundary(t->model, op.chunk, *so, op.forward ? BOUNDARY_OUTPUT : BOUNDARY_GRAD) : NULL;
        for (int q = 0; q < n; q++) writes_sent |= ops[q].send && ops[q].buf == wr;
        if ((receives || writes_sent) && t->pp_wait_at == next) t->pp_wait_at = k;
    }
    if (n) {
        t->be->phase_begin(t->be, PHASE_PIPELINE);
        t->pp_pending = t->be->p2p_start(t->be, ops, n, DT_ACT, GROUP_PP);
        t->pp_ops_behind = 0;
        t->be->phase_end(t->be, PHASE_PIPELINE);
        if (!t->overlap_p2p) pipeline_wait(t);
    }
    *prev_cut = i;
    return 0;
}

/* The wait for the early forward batch, if any (PHASE_PIPELINE). */
static void forward_batch_wait(Trainer *t)
{
    /* started before the backward of its pair: that backward ran behind it */
    if (p2p_batch_wait(t, &t->fwd_pending)) t->pp_overlapped++;
}

/* Overlap, interleaved steady state (Megatron-LM's overlap_p2p_comm): op k
 * is the forward of a (forward, backward) pair, so the next exchange is
 * after the backward.  The forward half of that exchange's batch (this
 * forward's output to the next stage, and the input of the next pair's
 * forward from the previous one, into the staging buffer) is started now,
 * and runs behind the backward; the exchange sends and receives the rest
 * (the backward half).  Both halves keep their order per peer and
 * direction, so they pair with the neighbours' transfers as the whole batch
 * did (docs/executor-overlap.md).  Nothing when the next exchange would
 * receive more than one forward's input (never in these schedules). */
static void early_forward_batch(Trainer *t, int k)
{
    const PipeSchedule *sc = &t->sched;
    int pp = sc->pp, N = schedule_num_ops(sc), last_vs = pp * sc->vpp - 1;
    if (!t->overlap_p2p || !t->stage_in || k + 1 >= N || schedule_p2p_boundary(sc, t->stage, k + 1)) return;
    PipeOp op = t->executed[k];
    if (!op.forward) return;
    int nb = k + 1, next;
    while (nb < N && !schedule_p2p_boundary(sc, t->stage, nb)) nb++;
    next = nb + 1;
    while (next < N && !schedule_p2p_boundary(sc, t->stage, next)) next++;
    int staged = -1, receiving = 0;
    for (int j = nb; j < next && j < N; j++) {
        PipeOp o = schedule_op(sc, t->stage, j);
        if (o.forward && o.chunk * pp + t->stage > 0) { staged = j; receiving++; }
    }
    if (receiving > 1) return;
    P2POp ops[2];
    int n = 0;
    if (op.chunk * pp + t->stage < last_vs)
        ops[n++] = transfer(t, true, (t->stage + 1) % pp, op.chunk, t->slot_of[op.chunk * sc->m + op.microbatch],
                            BOUNDARY_OUTPUT);
    if (staged >= 0)
        ops[n++] = (P2POp){false, (t->stage + pp - 1) % pp, t->stage_in, model_boundary_elems(t->model)};
    forward_batch_wait(t);
    t->early_boundary = nb;
    t->staged_op = staged;
    if (!n) return;
    t->be->phase_begin(t->be, PHASE_PIPELINE);
    t->fwd_pending = t->be->p2p_start(t->be, ops, n, DT_ACT, GROUP_PP);
    t->be->phase_end(t->be, PHASE_PIPELINE);
}

int trainer_step(Trainer *t, bool apply_optimizer, double *loss, MpError *err)
{
    const PipeSchedule *sc = &t->sched;
    double tokens = (double)t->B * t->s;
    int N = schedule_num_ops(sc), last_vs = sc->pp * sc->vpp - 1;
    t->be->in_step(t->be, true);
    model_zero_grads(t->model);
    model_step_begin(t->model);   /* buckets start during the backward (overlap grad) */
    for (int c = 0; c < sc->vpp; c++) {
        t->nfree[c] = model_chunk_slots(t->model, c);
        for (int k = 0; k < t->nfree[c]; k++) t->free_slot[c * t->most_slots + k] = t->nfree[c] - 1 - k;
    }
    for (int k = 0; k < sc->vpp * sc->m; k++) t->slot_of[k] = -1;
    t->num_executed = 0;
    t->pp_overlapped = 0;
    t->early_boundary = t->staged_op = -1;
    double t0 = now_s();
    for (int i = 0, cut = 0; i <= N; i++) {
        if (schedule_p2p_boundary(sc, t->stage, i) && exchange(t, i, &cut, err)) {
            t->be->in_step(t->be, false);
            return -1;
        }
        if (i == N) break;
        if (i >= t->pp_wait_at) pipeline_wait(t);   /* op i reads what the batch receives */
        PipeOp op = schedule_op(sc, t->stage, i);
        int vs = op.chunk * sc->pp + t->stage, rc;
        int slot = t->slot_of[op.chunk * sc->m + op.microbatch];
        if (i == t->staged_op) {
            /* its input came early, into the staging buffer */
            forward_batch_wait(t);
            t->be->phase_begin(t->be, PHASE_PIPELINE);
            t->be->copy(t->be, model_boundary(t->model, op.chunk, slot, BOUNDARY_INPUT), t->stage_in,
                        model_boundary_elems(t->model) * (size_t)t->be->act_bytes);
            t->be->phase_end(t->be, PHASE_PIPELINE);
            t->staged_op = -1;
        }
        t->op_time[2 * i] = now_s() - t0;
        if (op.forward) {
            if (vs == 0 || vs == last_vs || t->trace) load_micro_batch(t, op.microbatch);
            rc = model_chunk_forward(t->model, op.chunk, slot, t->in, t->tg, (float)(1.0 / tokens), err);
        } else {
            rc = model_chunk_backward(t->model, op.chunk, slot, err);
        }
        t->op_time[2 * i + 1] = now_s() - t0;
        t->executed[t->num_executed++] = op;
        if (t->pp_pending >= 0) t->pp_ops_behind++;
        if (rc) {
            t->be->in_step(t->be, false);
            return -1;
        }
        early_forward_batch(t, i);
    }
    forward_batch_wait(t);
    pipeline_wait(t);
    model_sync_grads(t->model);
    /* mean loss over the global batch: the device sums over the pipeline
     * (the last stage's token losses, every stage's aux losses) and the
     * data-parallel ranks before Adam (with overlap param the parameter
     * all-gathers that Adam starts on the DP*CP communicator would
     * otherwise be waited for by this sum), read once per step after it
     * (the step's one loss synchronisation) */
    double ce, aux;
    if (sc->pp > 1) model_reduce_losses(t->model, GROUP_PP);
    if (t->dp * t->cp > 1) model_reduce_losses(t->model, GROUP_DP_CP);
    if (apply_optimizer) model_adam_step(t->model, t->lr, t->step + 1);
    int rc = model_read_losses(t->model, GROUP_KIND_COUNT, &ce, &aux);
    t->be->in_step(t->be, false);
    if (rc || t->be->status(t->be, err)) return -1;
    t->last_aux = aux / tokens;
    *loss = (ce + aux) / tokens;
    t->step++;
    return 0;
}

size_t trainer_routing_trace_len(const Trainer *t)
{
    return (size_t)(t->B / t->b) * t->trace_per_mb;
}

void trainer_set_routing_trace(Trainer *t, int32_t *trace, int force)
{
    t->trace = trace;
    t->trace_force = force;
    if (!trace) model_set_routing_trace(t->model, NULL, 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int exec_train(const Plan *plan, const ExecOptions *opt, const ExecComms *comms,
               ExecStepStats *stats, MpError *err)
{
    memset(stats, 0, sizeof *stats);
    if (opt->steps <= 0) return mp_fail(err, "steps: %d: must be positive", opt->steps);
    if (opt->warmup < 0 || opt->warmup >= opt->steps)
        return mp_fail(err, "warmup: %d: must be in [0, steps)", opt->warmup);
    Trainer *t;
    if (opt->op_profile && opt->backend != EXEC_BACKEND_CUDA)
        return mp_fail(err, "op profile: only the CUDA backend times its operations");
    if (trainer_create(plan, opt, comms, &t, err)) return -1;
    if (t->be->attention) {
        snprintf(stats->attention, sizeof stats->attention, "%s", t->be->attention);
        snprintf(stats->attention_note, sizeof stats->attention_note, "%s", t->be->attention_note);
    }
    int timed = opt->steps - opt->warmup;
    double *ph = calloc((size_t)timed * (PHASE_COUNT + 1), sizeof(double));
    stats->losses = calloc((size_t)opt->steps, sizeof(double));
    if (!ph || !stats->losses) { free(ph); trainer_destroy(t); return mp_fail(err, "executor: out of host memory"); }
    if (opt->op_profile) {
        stats->op_profile = calloc(1, sizeof *stats->op_profile);
        if (!stats->op_profile) { free(ph); trainer_destroy(t); return mp_fail(err, "executor: out of host memory"); }
        t->be->op_profile = stats->op_profile;
    }
    double scratch[PHASE_COUNT];
    memset(scratch, 0, sizeof scratch);
    t->be->step_times(t->be, scratch);   /* start the clock */
    if (stats->op_profile) op_profile_reset(stats->op_profile);
    for (int i = 0; i < opt->steps; i++) {
        double loss;
        if (trainer_step(t, true, &loss, err)) { free(ph); trainer_destroy(t); return -1; }
        stats->losses[i] = loss;
        if (opt->fault != EXEC_FAULT_NONE && comms->world_rank == opt->fault_rank && i + 1 == opt->fault_step) {
            /* the failure tests: this rank dies, or never reaches the next collective */
            if (opt->fault == EXEC_FAULT_KILL) raise(SIGKILL);
            for (;;) pause();
        }
        double p[PHASE_COUNT];
        memset(p, 0, sizeof p);
        double wall = t->be->step_times(t->be, p);
        if (stats->op_profile && i + 1 == opt->warmup) op_profile_reset(stats->op_profile);   /* timed steps only */
        if (i >= opt->warmup) {
            int r = i - opt->warmup;
            ph[(size_t)r * (PHASE_COUNT + 1)] = wall;
            for (int k = 0; k < PHASE_COUNT; k++) ph[(size_t)r * (PHASE_COUNT + 1) + 1 + k] = p[k];
        }
    }
    double *col = malloc(sizeof(double) * (size_t)timed);
    double med[PHASE_COUNT + 1];
    for (int k = 0; k <= PHASE_COUNT; k++) {
        for (int r = 0; r < timed; r++) col[r] = ph[(size_t)r * (PHASE_COUNT + 1) + k];
        med[k] = median(col, timed);
    }
    free(col); free(ph);
    stats->steps_timed = timed;
    stats->loss_first = stats->losses[0];
    stats->loss_last = stats->losses[opt->steps - 1];
    stats->median.step = med[0];
    stats->median.attention = med[1 + PHASE_ATTENTION];
    stats->median.moe_compute = med[1 + PHASE_MOE_COMPUTE];
    stats->median.dispatcher_comm = med[1 + PHASE_DISPATCH_COMM];
    stats->median.grad_sync = med[1 + PHASE_GRAD_SYNC];
    stats->median.optimizer = med[1 + PHASE_OPTIMIZER];
    stats->median.other = med[1 + PHASE_OTHER];
    stats->median.pipeline = med[1 + PHASE_PIPELINE];
    stats->median.cp_comm = med[1 + PHASE_CP_COMM];
    stats->peak_memory_bytes = t->be->peak_memory(t->be);
    t->be->mem_report(t->be, &stats->mem_peak_bytes, stats->mem_bytes);
    stats->step_device_allocs = t->be->step_allocs(t->be);
    if (t->be->expert_gemm_name) t->be->expert_gemm_name(t->be, stats->expert_gemm, sizeof stats->expert_gemm);
    else if (t->padded_groups) snprintf(stats->expert_gemm, sizeof stats->expert_gemm, "loop, groups padded");
    model_dispatch_counts(t->model, &stats->dispatches, &stats->padded_dispatches);
    stats->tokens_per_step = (double)plan->train.global_batch * plan->train.seq_len;
    stats->stage = t->stage;
    stats->ops = malloc(sizeof(ExecOpTime) * (size_t)(t->num_executed > 0 ? t->num_executed : 1));
    if (stats->ops) {
        stats->num_ops = t->num_executed;
        for (int i = 0; i < t->num_executed; i++)
            stats->ops[i] = (ExecOpTime){t->executed[i].forward, t->executed[i].chunk, t->executed[i].microbatch,
                                         t->op_time[2 * i], t->op_time[2 * i + 1]};
    }
    trainer_destroy(t);
    return 0;
}
