/* test_executor.cu: the executor's training step on GPUs (CUDA backend,
 * NCCL), one process per GPU forked from this one (no MPI needed).
 *
 *   test_executor [--nproc N] [--mode invariance|throughput|all]
 *                 [--layers L] [--steps S] [--warmup W] [--gbs B] [--ep E]
 *                 [--mbs b] [--data random|synthetic] [--tp T]
 *                 [--optimizer-sharding none|distributed]
 *
 * invariance: tiny-moe-gpu (head dim 64) with fixed seed and data.  Each
 *   rank runs the 1-GPU step (reference) and the same model on the CPU
 *   backend (float32); then all ranks run the parallel mappings that N GPUs
 *   allow (DP N with EP N, ETP N, EP 1; DP.EP with the distributed
 *   optimizer; TP2 alone, with EP2, and with DP.EP and the distributed
 *   optimizer, dropless only), dropless and with capacity factor 1.0.  Per tensor the relative error ||g - ref|| / ||ref|| of the
 *   gradients after one step, and the losses, are printed; bf16 tolerance:
 *   3e-2 on gradients (router's too, routing forced, see GRAD_TOL), 1e-2
 *   relative on the loss.
 * throughput: Mixtral-8x7B shapes (hidden 4096, 32 heads / 8 KV groups,
 *   head dim 128, 8 experts top-2, FFN 14336, vocab 32000), the first L
 *   layers, sequence 4096, micro-batch --mbs (default 1), DP N with EP = --ep
 *   (default N), random token ids (METHOD.md; --data synthetic: the
 *   learnable task, whose routing grows imbalanced), aux loss 1e-2;
 *   median step time over the timed steps, MFU (megatron and legacy FLOPs
 *   conventions, core/flops.c) against 989 TFLOP/s dense BF16 per GPU
 *   (NVIDIA H100/H200 SXM datasheet), time per phase, peak memory.
 * Exit status 0 when every check passes on every rank.
 */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include <cuda_runtime_api.h>
#include <math.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include "core/mapping.h"
#include "core/model.h"
#include "executor/train.h"
}
#include "kernels/common.h"
#include "tests/gpu/gpu_check.h"   /* cudaCheck, cublasCheck */

#define PEAK_BF16 989e12   /* FLOP/s, dense BF16, H100/H200 SXM datasheet */
/* bf16 tolerances on ||g - ref|| / ||ref|| per tensor (METHOD.md: bf16
 * operands land between 1e-3 and 1e-2), with the routing forced to the
 * reference run's choices.  Measured on 2 x H200 (2026-11-22): worst 9.6e-3
 * (1 GPU bf16 vs CPU float32, cf 1.0), router 6.1e-3.  With free routing one
 * flipped top-k choice moves the MoE-layer norm and router gradients by up
 * to 1e-1; those runs are printed ("info"), not gated. */
#define GRAD_TOL 3e-2
#define ROUTER_TOL 3e-2

#define NCHECK(call)                                                                       \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ != ncclSuccess) {                                                           \
            fprintf(stderr, "%s:%d: NCCL: %s\n", __FILE__, __LINE__, ncclGetErrorString(r_)); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

typedef struct {
    volatile int ready;
    ncclUniqueId id;
} Shared;

typedef struct {
    ExecComms comms;
    ncclComm_t comm[GROUP_KIND_COUNT];
} GpuComms;

static int g_rank, g_nproc;
static ncclComm_t g_world;
static cudaStream_t g_stream;

static void comms_single(ExecComms *c, int device)
{
    memset(c, 0, sizeof *c);
    c->world_size = 1;
    c->local_rank = device;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c->size_of[k] = 1;
}

static void comms_split(const Mapping *map, GpuComms *g)
{
    memset(g, 0, sizeof *g);
    g->comms.world_rank = g_rank;
    g->comms.world_size = g_nproc;
    g->comms.local_rank = g_rank;
    g->comms.world = g_world;
    int members[64];
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        int idx = mapping_group_of_rank(map, (GroupKind)k, g_rank, members);
        NCHECK(ncclCommSplit(g_world, members[0], idx, &g->comm[k], NULL));
        g->comms.handle[k] = g->comm[k];
        g->comms.rank_in[k] = idx;
        g->comms.size_of[k] = mapping_group_size(map, (GroupKind)k);
    }
}

static void comms_free(GpuComms *g)
{
    for (int k = 0; k < GROUP_KIND_COUNT; k++) ncclCommDestroy(g->comm[k]);
}

/* max over ranks (NCCL on the world communicator) */
static double world_max(double v)
{
    if (g_nproc == 1) return v;
    float *d, h = (float)v;
    cudaCheck(cudaMalloc(&d, sizeof(float)));
    cudaCheck(cudaMemcpy(d, &h, sizeof h, cudaMemcpyHostToDevice));
    NCHECK(ncclAllReduce(d, d, 1, ncclFloat32, ncclMax, g_world, g_stream));
    cudaCheck(cudaStreamSynchronize(g_stream));
    cudaCheck(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(d));
    return h;
}

static void make_plan(Plan *p, const ModelSpec *spec, int world, int ep, int etp, double cf,
                      int seq, int gbs, int tp = 1, int dist = 0)
{
    memset(p, 0, sizeof *p);
    p->model = *spec;
    p->map.world = world; p->map.tp = tp; p->map.cp = 1; p->map.pp = 1; p->map.vpp = 1;
    p->train.opt_sharding = dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
    p->map.ep = ep; p->map.etp = etp;
    MpError err;
    if (mapping_resolve(&p->map, spec->num_experts, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    p->train.seq_len = seq; p->train.micro_batch = 1; p->train.global_batch = gbs;
    p->train.capacity_factor = cf;
}

/* gradients in full-tensor layout, by tensor id */
typedef struct {
    float *g[1024];
    size_t n[1024];
    double loss;
    long flips;
} Grads;

static void grads_free(Grads *r) { for (int i = 0; i < 1024; i++) free(r->g[i]); }

/* trace: routing trace of the global batch (train.h), NULL: free routing;
 * force 0 records into it, 1 imposes it and r->flips counts the choices the
 * run's own router made differently. */
static int run_step(const Plan *plan, ExecBackendKind kind, const ExecComms *comms, Grads *r,
                    Trainer **keep, int32_t **trace, int force)
{
    ExecOptions o;
    memset(&o, 0, sizeof o);
    o.backend = kind; o.steps = 1; o.seed = 1234; o.lr = 1e-2;
    Trainer *t;
    MpError err;
    if (trainer_create(plan, &o, comms, &t, &err)) { fprintf(stderr, "rank %d: %s\n", g_rank, err.msg); return -1; }
    static int said_attention;   /* which GPU attention the CUDA runs use, once */
    if (!said_attention && t->be->attention && g_rank == 0) {
        printf("attention: %s%s%s\n", t->be->attention, t->be->attention_note[0] ? "; " : "", t->be->attention_note);
        said_attention = 1;
    }
    if (trace) {
        if (!*trace) *trace = (int32_t *)calloc(trainer_routing_trace_len(t), sizeof(int32_t));
        trainer_set_routing_trace(t, *trace, force);
    }
    if (trainer_step(t, false, &r->loss, &err)) { fprintf(stderr, "rank %d: %s\n", g_rank, err.msg); return -1; }
    r->flips = model_route_flips(t->model);
    model_gather_grads(t->model);   /* distributed optimizer: the reduced shards back to full arenas */
    if (keep) { *keep = t; return 0; }
    memset(r->g, 0, sizeof r->g);
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        float *host = (float *)malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, host);
        for (size_t i = 0; i < pi->n; i++) {
            int uid; size_t flat;
            model_param_global_index(t->model, p, i, &uid, &flat);
            if (!r->g[uid]) {
                size_t full = pi->kind == PARAM_W13 ? pi->n / 2 : pi->n;
                r->g[uid] = (float *)calloc(full, sizeof(float));
                r->n[uid] = full;
            }
            r->g[uid][flat] = host[i];
        }
        free(host);
    }
    trainer_destroy(t);
    return 0;
}

/* worst per-tensor ||a - ref|| / ||ref|| over the shards of a trainer (local) */
static double compare_trainer(Trainer *t, const Grads *ref, char *worst_name, double *router_worst)
{
    double worst = 0;
    *router_worst = 0;
    for (int p = 0; p < model_num_params(t->model); p++) {
        const ParamInfo *pi = model_param(t->model, p);
        float *host = (float *)malloc(pi->n * sizeof(float));
        model_param_grad_host(t->model, p, host);
        double d2 = 0, r2 = 0;
        for (size_t i = 0; i < pi->n; i++) {
            int uid; size_t flat;
            model_param_global_index(t->model, p, i, &uid, &flat);
            double r = ref->g[uid][flat];
            d2 += (host[i] - r) * (host[i] - r);
            r2 += r * r;
        }
        double rel = sqrt(d2) / fmax(sqrt(r2), 1e-30);
        if (strstr(pi->name, "router")) { if (rel > *router_worst) *router_worst = rel; }
        else if (rel > worst) { worst = rel; strcpy(worst_name, pi->name); }
        free(host);
    }
    return worst;
}

/* One comparison: 1 GPU (bf16) against the CPU float32 path or a parallel
 * mapping, first with free routing (printed: bf16 rounding of the router's
 * input can flip a top-k choice, and one flipped pair moves the MoE-layer
 * norm and router gradients by ~10%), then with the routing forced to the
 * 1-GPU run's choices (trace), which is the check (GRAD_TOL / ROUTER_TOL):
 * with the same routing every remaining difference is arithmetic. */
static void report(const char *what, bool gate, double loss, double ref_loss, double worst,
                   const char *wn, double rworst, long flips, int *fails)
{
    double ld = fabs(loss - ref_loss) / ref_loss;
    bool ok = worst < GRAD_TOL && rworst < ROUTER_TOL && ld < 1e-2;
    if (gate) *fails += !ok;
    if (g_rank == 0)
    {
        char fl[80] = "";
        if (flips >= 0) snprintf(fl, sizeof fl, ", top-k choices its own router made differently: %ld", flips);
        printf("%s %s: loss %.6f vs %.6f, worst grad rel err %.2e (%s), router %.2e%s\n",
               gate ? (ok ? "PASS" : "FAIL") : "info", what, loss, ref_loss, worst, wn, rworst, fl);
    }
}

static double compare_full(const Grads *a, const Grads *ref, char *wn, double *rworst)
{
    double worst = 0;
    *rworst = 0;
    for (int u = 0; u < 1024; u++) {
        if (!ref->g[u]) continue;
        double d2 = 0, r2 = 0;
        for (size_t i = 0; i < ref->n[u]; i++) {
            double r = ref->g[u][i];
            d2 += (a->g[u][i] - r) * (a->g[u][i] - r);
            r2 += r * r;
        }
        double rel = sqrt(d2) / fmax(sqrt(r2), 1e-30);
        if (u >= 16 && u % 16 == 4) { if (rel > *rworst) *rworst = rel; }
        else if (rel > worst) { worst = rel; snprintf(wn, 64, "tensor %d", u); }
    }
    return worst;
}

static int invariance(void)
{
    int fails = 0;
    ModelSpec spec;
    model_spec_tiny("tiny-moe-gpu", &spec);
    const int seq = 64, gbs = 4;
    double cfs[2] = {0, 1.0};
    for (int ci = 0; ci < 2; ci++) {
        double cf = cfs[ci];
        Plan p1;
        make_plan(&p1, &spec, 1, 1, 1, cf, seq, gbs);
        ExecComms single;
        comms_single(&single, g_rank);
        Grads gpu1;
        int32_t *trace = NULL;
        if (run_step(&p1, EXEC_BACKEND_CUDA, &single, &gpu1, NULL, &trace, 0)) return 1;
        for (int forced = 0; forced < 2; forced++) {
            Grads cpu;
            if (run_step(&p1, EXEC_BACKEND_CPU, &single, &cpu, NULL, forced ? &trace : NULL, 1)) return 1;
            double rworst;
            char wn[64] = "";
            double worst = compare_full(&gpu1, &cpu, wn, &rworst);
            char what[128];
            snprintf(what, sizeof what, "1 GPU vs CPU float32 cf %.1f, routing %s", cf,
                     forced ? "forced to the GPU's" : "free");
            report(what, forced, gpu1.loss, cpu.loss, worst, wn, rworst, forced ? cpu.flips : -1, &fails);
            grads_free(&cpu);
        }
        if (g_nproc > 1) {
            /* {ep, etp, tp, distributed optimizer}: DP with EP, ETP, EP 1;
             * DP.EP with the distributed optimizer; TP (sequence parallel)
             * alone and with EP across the TP ranks */
            int maps[7][4] = {{g_nproc, 1, 1, 0}, {1, g_nproc, 1, 0}, {1, 1, 1, 0}, {g_nproc, 1, 1, 1},
                              {1, 1, 2, 0}, {2, 1, 2, 0}, {g_nproc, 1, 2, 1}};
            for (int mi = 0; mi < 7; mi++) {
                if (maps[mi][2] > 1 && g_nproc % maps[mi][2]) continue;
                /* with TP a capacity is per sequence-parallel shard: other drops than 1 GPU's */
                if (maps[mi][2] > 1 && cf > 0) continue;
                for (int forced = 0; forced < 2; forced++) {
                    Plan pp;
                    make_plan(&pp, &spec, g_nproc, maps[mi][0], maps[mi][1], cf, seq, gbs, maps[mi][2],
                              maps[mi][3]);
                    GpuComms gc;
                    comms_split(&pp.map, &gc);
                    Trainer *t;
                    Grads dummy;
                    if (run_step(&pp, EXEC_BACKEND_CUDA, &gc.comms, &dummy, &t, forced ? &trace : NULL, 1)) return 1;
                    char name[64] = "";
                    double rw;
                    double w = world_max(compare_trainer(t, &gpu1, name, &rw));
                    rw = world_max(rw);
                    double loss = dummy.loss;
                    long flips = (long)world_max((double)dummy.flips);
                    trainer_destroy(t);
                    comms_free(&gc);
                    char what[160];
                    snprintf(what, sizeof what, "%d GPUs tp %d dp %d ep %d etp %d%s cf %.1f vs 1 GPU, routing %s",
                             g_nproc, pp.map.tp, pp.map.dp, pp.map.ep, pp.map.etp,
                             maps[mi][3] ? " distributed-opt" : "", cf,
                             forced ? "forced to the 1-GPU run's" : "free");
                    report(what, forced, loss, gpu1.loss, w, name, rw, forced ? flips : -1, &fails);
                }
            }
        }
        free(trace);
        grads_free(&gpu1);
    }
    return fails;
}

static int throughput(int layers, int steps, int warmup, int gbs, int ep, int mbs, bool random_data, int tp,
                      int dist)
{
    ModelSpec s;
    memset(&s, 0, sizeof s);
    strcpy(s.name, "mixtral-8x7b");
    s.num_layers = 32; s.hidden = 4096; s.num_heads = 32; s.num_kv_groups = 8; s.head_dim = 128;
    s.num_experts = 8; s.top_k = 2; s.expert_ffn = 14336; s.vocab = 32000; s.swiglu = true;
    s.router = ROUTER_SOFTMAX;
    const int seq = 4096;
    Plan p;
    make_plan(&p, &s, g_nproc, ep, 1, 0, seq, gbs, tp, dist);
    p.train.micro_batch = mbs;
    GpuComms gc;
    ExecComms single;
    const ExecComms *c = &single;
    if (g_nproc > 1) { comms_split(&p.map, &gc); c = &gc.comms; }
    else comms_single(&single, 0);
    ExecOptions o;
    memset(&o, 0, sizeof o);
    o.backend = EXEC_BACKEND_CUDA; o.layers = layers; o.steps = steps; o.warmup = warmup;
    o.seed = 7; o.lr = 1e-4;
    o.random_tokens = random_data;   /* METHOD.md: time on random data */
    ExecStepStats st;
    MpError err;
    if (exec_train(&p, &o, c, &st, &err)) { fprintf(stderr, "rank %d: %s\n", g_rank, err.msg); return 1; }
    ModelSpec run = s;
    run.num_layers = layers;
    double tokens = (double)gbs * seq;
    double fm = model_flops(&run, FLOPS_MEGATRON, seq, tokens), fl = model_flops(&run, FLOPS_LEGACY, seq, tokens);
    double t = world_max(st.median.step);
    if (g_rank == 0) {
        printf("throughput: mixtral-8x7b shapes, %d layers, seq %d, mbs %d, gbs %d, %d GPU(s) tp %d dp %d ep %d, optimizer %s, %d timed steps, %s tokens, aux loss 1e-2\n",
               layers, seq, mbs, gbs, g_nproc, p.map.tp, p.map.dp, ep, opt_sharding_name(p.train.opt_sharding),
               st.steps_timed, random_data ? "random" : "learnable-task");
        printf("  step %.1f ms  MFU megatron %.1f%%  legacy %.1f%%  %.0f TFLOP/s/GPU (megatron)  %.0f tokens/s/GPU\n",
               t * 1e3, 100 * fm / (t * g_nproc * PEAK_BF16), 100 * fl / (t * g_nproc * PEAK_BF16),
               fm / (t * g_nproc) / 1e12, tokens / t / g_nproc);
        printf("  phases (ms, rank 0 median): attention %.1f  moe_compute %.1f  dispatcher_comm %.1f  grad_sync %.1f  optimizer %.1f  other %.1f\n",
               st.median.attention * 1e3, st.median.moe_compute * 1e3, st.median.dispatcher_comm * 1e3,
               st.median.grad_sync * 1e3, st.median.optimizer * 1e3, st.median.other * 1e3);
        printf("  loss first %.4f last %.4f  peak memory %.1f GiB  device allocations inside steps %ld\n",
               st.loss_first, st.loss_last, st.peak_memory_bytes / (1 << 30), st.step_device_allocs);
    }
    free(st.losses);
    free(st.ops);
    if (g_nproc > 1) comms_free(&gc);
    return 0;
}

int main(int argc, char **argv)
{
    int nproc = 1, layers = 4, steps = 6, warmup = 2, gbs = 0, ep = 0, mbs = 1, tp = 1, dist = 0;
    const char *mode = "all", *data = "random";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--nproc")) nproc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--gbs")) gbs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ep")) ep = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];   /* random | synthetic */
        else if (!strcmp(argv[i], "--mbs")) mbs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tp")) tp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--optimizer-sharding")) dist = !strcmp(argv[i + 1], "distributed");
        else { fprintf(stderr, "test_executor: unknown option %s\n", argv[i]); return 2; }
    }
    if (gbs <= 0) gbs = 2 * nproc;
    if (ep <= 0) ep = nproc;
    Shared *sh = (Shared *)mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sh->ready = 0;
    fflush(stdout);
    pid_t pids[16];
    for (int r = 0; r < nproc; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            g_rank = r; g_nproc = nproc;
            if (r == 0) {
                NCHECK(ncclGetUniqueId((ncclUniqueId *)&sh->id));
                __sync_synchronize();
                sh->ready = 1;
            }
            while (!sh->ready) usleep(1000);
            __sync_synchronize();
            cudaCheck(cudaSetDevice(r));
            cudaCheck(cudaStreamCreate(&g_stream));
            NCHECK(ncclCommInitRank(&g_world, nproc, sh->id, r));
            int fails = 0;
            if (!strcmp(mode, "invariance") || !strcmp(mode, "all")) fails += invariance();
            if (!strcmp(mode, "throughput") || !strcmp(mode, "all")) fails += throughput(layers, steps, warmup, gbs, ep, mbs, strcmp(data, "synthetic") != 0, tp, dist);
            fflush(stdout);
            ncclCommDestroy(g_world);
            _exit(fails ? 1 : 0);
        }
    }
    int bad = 0;
    for (int r = 0; r < nproc; r++) {
        int st;
        waitpid(pids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    }
    printf("test_executor: %s\n", bad ? "FAILED" : "all checks passed");
    return bad;
}
