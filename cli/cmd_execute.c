/* cmd_execute.c: `moeplan execute`: train a plan's model for N steps on real
 * GPUs (CUDA + NCCL) or on CPUs (MPI), measure it, and put the simulator's
 * prediction beside the measurement.
 *
 * One command, three roles (executor/launch.h):
 *   - started by mpirun/srun/torchrun: this process is one rank;
 *   - started alone with more than one GPU: the built-in launcher forks one
 *     copy of itself per GPU (CUDA) or re-executes itself under
 *     `mpirun -np N` (CPU backend), and watches them;
 *   - started alone on one GPU (or CPU): it is rank 0 of 1.
 * Exit status: 0 done, 2 bad input or a plan that does not fit, 1 a failure
 * while running (the message names the rank).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "commands.h"
#include "core/catalog.h"
#include "core/limits.h"
#include "executor/comms.h"
#include "executor/executor.h"
#include "executor/launch.h"
#include "executor/measure.h"
#include "executor/op_profile.h"
#include "executor/preflight.h"
#include "executor/watchdog.h"
#include "simulator/simulate.h"

#ifdef MOEPLAN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* Seconds the TCP rendezvous waits for every rank; SIGTERM -> SIGKILL grace
 * of the built-in launcher; the watchdog's polling period. */
#define EXECUTE_RENDEZVOUS_TIMEOUT_S 60.0
#define EXECUTE_KILL_GRACE_S 5.0
#define EXECUTE_WATCHDOG_POLL_S 0.2
/* Default deadline of one blocking collective (--collective-timeout).  A
 * collective waits for the slowest rank of its group, so it only needs to
 * cover the ranks' imbalance (seconds at most in a healthy run); 40 s plus
 * the 0.2 s poll and MPI_Abort's teardown keeps a hung job's end within 60 s. */
#define EXECUTE_COLLECTIVE_TIMEOUT_S 40.0
/* Defaults of the training settings (recorded in the result's "run"). */
#define EXECUTE_DEFAULT_LR 1e-3
#define EXECUTE_DEFAULT_AUX_LOSS_COEFF 1e-2   /* Megatron MoE / Mixtral recipes */
/* CPU ranks per online core the built-in launcher starts at most: every
 * CPU-backend rank is a process that busy-polls in MPI, so beyond a few per
 * core a step is context switches, and `mpirun -np 100000` never starts. */
#define EXECUTE_CPU_RANKS_PER_CORE 16
/* Set by the process that checked the inputs for the ranks it launches, so
 * that they do not print its notes again. */
#define EXECUTE_CHECKED_ENV "MOEPLAN_EXECUTE_CHECKED"

static const char *usage_text =
    "usage: moeplan execute (--plan FILE | --model M [plan options]) [--layers L] [--steps N] [--warmup W]\n"
    "                       [--backend cuda|cpu] [--nproc N] [--out result.json] [--json] [--check] ...\n"
    "  Trains the plan's model (its first L layers with --layers) for N steps and\n"
    "  reports step time, MFU (both FLOPs conventions), TFLOP/s and tokens/s per GPU,\n"
    "  time per phase and peak memory beside the simulator's prediction.\n"
    "  Without --gbs the global batch is one micro-batch per data-parallel rank.\n"
    "  Runs exactly the plan it reports: a plan field the step does not implement\n"
    "  (tp/cp > 1, fp8, the allgather dispatcher, recomputation, optimizer\n"
    "  sharding, overlap) is refused before launch; where it is `simulate`'s default\n"
    "  (optimizer sharding distributed, overlap grad,param), execute runs and predicts\n"
    "  with none and says so on stderr.\n"
    "  --layers L                       run the model's first L decoder layers (0 = all)\n"
    "  --steps N                        training steps\n"
    "  --warmup W                       steps left out of the timing\n"
    "  --backend cuda|cpu               run on GPUs (CUDA + NCCL) or on CPUs (MPI)\n"
    "  --nproc N                        processes to start on this node (default: the plan's --gpus, else\n"
    "                                   every visible GPU); under mpirun/srun/torchrun their ranks are used\n"
    "  --data FILE                      train on these tokens (default: synthetic)\n"
    "  --data-bits 16|32                width of the token ids in --data\n"
    "  --random-tokens                  train on uniformly random token ids (throughput runs)\n"
    "  --seed S                         seed of weights and data (default 1234)\n"
    "  --lr X                           learning rate (default 1e-3; 0 = weights never move)\n"
    "  --aux-loss-coeff C               load-balancing loss coefficient (default 1e-2; 0 = off)\n"
    "  --attention own|cudnn            GPU attention: cuDNN's fused flash attention (default when\n"
    "                                   libcudnn 9 loads; else the own kernel, said in one line) or the own kernel\n"
    "  --expert-gemm auto|loop|batched|padded\n"
    "                                   GPU expert GEMMs: one cuBLAS call per expert (loop), one grouped\n"
    "                                   batched call (batched), experts padded to equal rows and one\n"
    "                                   batched call per group size (padded); auto: padded from 16 experts\n"
    "                                   per GPU, else loop (default loop)\n"
    "  --collective-timeout S           end the job when one collective has not completed after S\n"
    "                                   seconds (default 40; a dead or hung peer rank)\n"
    "  --calibration FILE               also predict with a calibration file measured on this machine\n"
    "                                   (the prediction from defaults stays beside it)\n"
    "  --check                          only check that the plan fits (simulator memory) and exit\n"
    "  --out FILE                       write the result document as JSON (atomically: temp file + rename)\n"
    "  --op-profile FILE                time every GPU operation (CUDA events; slows the step a little):\n"
    "                                   a table per (phase, operation) with TFLOP/s or GB/s, and FILE (JSON)\n"
    "  --json                           print the result document instead of the table\n"
    "  --help                           this text\n"
    "plan options:\n" PLAN_ARGS_HELP;

typedef struct {
    Plan plan;
    ExecOptions opt;
    int nproc;
    bool nproc_given, cluster_given, gbs_given, json, check_only;
    PlanRequested requested;        /* plan fields a flag or the plan file asks for */
    double collective_timeout_s;
    size_t data_ids;                /* token ids in --data (0 without) */
    SimOpEvent *sim_ops;            /* pipeline: the simulated operations of stage 0 */
    int sim_num_ops;
    const char *out_path;
    const char *op_profile_path;    /* --op-profile: NULL off */
    const char *calibration_path;   /* NULL: defaults only */
    Calibration *cal;               /* loaded from calibration_path */
} ExecuteArgs;

static bool argv_has(int argc, char **argv, const char *flag) {
    size_t n = strlen(flag);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], flag, n) && (argv[i][n] == 0 || argv[i][n] == '=')) return true;
    return false;
}

/* Which of the step-relevant plan fields the user asked for: a flag, or a
 * key of the --plan file (the file was already loaded and validated). */
static int requested_fields(int argc, char **argv, PlanRequested *r, MpError *err) {
    static const struct { const char *key, *flag; size_t off; } fields[] = {
        {"precision", "--precision", offsetof(PlanRequested, precision)},
        {"dispatcher", "--dispatcher", offsetof(PlanRequested, dispatcher)},
        {"recompute", "--recompute", offsetof(PlanRequested, recompute)},
        {"optimizer_sharding", "--optimizer-sharding", offsetof(PlanRequested, optimizer_sharding)},
        {"overlap", "--overlap", offsetof(PlanRequested, overlap)},
    };
    memset(r, 0, sizeof *r);
    cJSON *root = NULL;
    const char *plan_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--plan") && i + 1 < argc) plan_path = argv[i + 1];
        else if (!strncmp(argv[i], "--plan=", 7)) plan_path = argv[i] + 7;
    }
    if (plan_path) {
        char *text;
        if (read_text_file(plan_path, &text, err)) return -1;
        root = cJSON_Parse(text);
        free(text);
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        *(bool *)((char *)r + fields[i].off) =
            argv_has(argc, argv, fields[i].flag) || (root && cJSON_GetObjectItemCaseSensitive(root, fields[i].key));
    cJSON_Delete(root);
    return 0;
}

/* MOEPLAN_TEST_FAULT=kill|hang:RANK:STEP (the failure tests; executor.h) */
static int parse_fault(ExecOptions *o, MpError *err) {
    const char *v = getenv("MOEPLAN_TEST_FAULT");
    if (!v || !*v) return 0;
    char kind[8];
    int rank, step;
    if (sscanf(v, "%7[a-z]:%d:%d", kind, &rank, &step) != 3 || rank < 0 || step < 1 ||
        (strcmp(kind, "kill") && strcmp(kind, "hang")))
        return mp_fail(err, "MOEPLAN_TEST_FAULT: '%s' is not kill:RANK:STEP or hang:RANK:STEP", v);
    o->fault = !strcmp(kind, "kill") ? EXEC_FAULT_KILL : EXEC_FAULT_HANG;
    o->fault_rank = rank;
    o->fault_step = step;
    return 0;
}

static int parse_args(int argc, char **argv, ExecuteArgs *x, MpError *err) {
    ArgList a;
    memset(x, 0, sizeof *x);
    x->opt.steps = 20;
    x->opt.warmup = 3;
    x->opt.seed = 1234;
    x->opt.data_bits = 16;
    x->opt.lr = EXECUTE_DEFAULT_LR;
    x->opt.aux_loss_coeff = EXECUTE_DEFAULT_AUX_LOSS_COEFF;
    x->collective_timeout_s = EXECUTE_COLLECTIVE_TIMEOUT_S;
#ifdef MOEPLAN_HAVE_CUDA
    x->opt.backend = EXEC_BACKEND_CUDA;
#else
    x->opt.backend = EXEC_BACKEND_CPU;
#endif
    x->cluster_given = argv_has(argc, argv, "--cluster") || argv_has(argc, argv, "--plan");
    x->gbs_given = argv_has(argc, argv, "--gbs") || argv_has(argc, argv, "--plan");
    if (args_init(&a, argc, argv, err)) return -1;
    if (plan_from_args(&a, &x->plan, true, err)) return -1;
    if (requested_fields(argc, argv, &x->requested, err)) return -1;
    bool has_seed, has_aux;
    int seed = 0;
    if (args_int(&a, "--layers", &x->opt.layers, NULL, err) || args_int(&a, "--steps", &x->opt.steps, NULL, err) ||
        args_int(&a, "--warmup", &x->opt.warmup, NULL, err) || args_int(&a, "--data-bits", &x->opt.data_bits, NULL, err) ||
        args_int(&a, "--seed", &seed, &has_seed, err) || args_double(&a, "--lr", &x->opt.lr, NULL, err) ||
        args_int(&a, "--nproc", &x->nproc, &x->nproc_given, err) ||
        args_double(&a, "--aux-loss-coeff", &x->opt.aux_loss_coeff, &has_aux, err) ||
        args_double(&a, "--collective-timeout", &x->collective_timeout_s, NULL, err))
        return -1;
    if (has_aux && x->opt.aux_loss_coeff < 0)
        return mp_fail(err, "--aux-loss-coeff: must be >= 0 (0 = off), got %g", x->opt.aux_loss_coeff);
    if (has_aux && x->opt.aux_loss_coeff == 0) x->opt.aux_loss_coeff = -1; /* ExecOptions: negative = off */
    x->opt.random_tokens = args_flag(&a, "--random-tokens");
    if (has_seed) {
        if (seed < 0) return mp_fail(err, "--seed: must be >= 0, got %d", seed);
        x->opt.seed = (uint64_t)seed;
    }
    if (!(x->collective_timeout_s > 0))
        return mp_fail(err, "--collective-timeout: must be > 0 seconds, got %g", x->collective_timeout_s);
    if (parse_fault(&x->opt, err)) return -1;
    const char *v;
    if (args_value(&a, "--backend", &v, err)) return -1;
    if (v) {
        if (!strcmp(v, "cuda")) x->opt.backend = EXEC_BACKEND_CUDA;
        else if (!strcmp(v, "cpu")) x->opt.backend = EXEC_BACKEND_CPU;
        else return mp_fail(err, "--backend: '%s' is not cuda or cpu", v);
    }
    if (args_value(&a, "--attention", &v, err)) return -1;
    if (v) {
        if (!strcmp(v, "own")) x->opt.attention = EXEC_ATTENTION_OWN;
        else if (!strcmp(v, "cudnn")) x->opt.attention = EXEC_ATTENTION_CUDNN;
        else return mp_fail(err, "--attention: '%s' is not own or cudnn", v);
        if (x->opt.backend != EXEC_BACKEND_CUDA) return mp_fail(err, "--attention: %s needs --backend cuda", v);
    }
    x->opt.expert_gemm = EXEC_EXPERT_GEMM_LOOP;   /* the path measured on GPUs (README) */
    if (args_value(&a, "--expert-gemm", &v, err)) return -1;
    if (v) {
        if (!strcmp(v, "loop")) x->opt.expert_gemm = EXEC_EXPERT_GEMM_LOOP;
        else if (!strcmp(v, "batched")) x->opt.expert_gemm = EXEC_EXPERT_GEMM_BATCHED;
        else if (!strcmp(v, "padded")) x->opt.expert_gemm = EXEC_EXPERT_GEMM_PADDED;
        else if (!strcmp(v, "auto")) x->opt.expert_gemm = EXEC_EXPERT_GEMM_AUTO;
        else return mp_fail(err, "--expert-gemm: '%s' is not auto, loop, batched or padded", v);
        if (x->opt.backend != EXEC_BACKEND_CUDA && x->opt.expert_gemm == EXEC_EXPERT_GEMM_BATCHED)
            return mp_fail(err, "--expert-gemm: %s needs --backend cuda", v);
    }
    if (args_value(&a, "--op-profile", &x->op_profile_path, err)) return -1;
    if (x->op_profile_path) {
        if (x->opt.backend != EXEC_BACKEND_CUDA)
            return mp_fail(err, "--op-profile: only the CUDA backend times its operations (--backend cuda)");
        x->opt.op_profile = true;
    }
    if (args_value(&a, "--data", &x->opt.data_path, err) || args_value(&a, "--out", &x->out_path, err) ||
        args_calibration(&a, &x->cal, &x->calibration_path, err))
        return -1;
    x->json = args_flag(&a, "--json");
    x->check_only = args_flag(&a, "--check");
    if (args_finish(&a, err)) return -1;
    const ModelSpec *m = &x->plan.model;
    if (x->opt.layers < 0 || x->opt.layers > m->num_layers)
        return mp_fail(err, "--layers: %d is outside 1..%d (the layers of %s)", x->opt.layers, m->num_layers, m->name);
    if (x->opt.steps < 1) return mp_fail(err, "--steps: must be >= 1, got %d", x->opt.steps);
    if (x->opt.warmup < 0 || x->opt.warmup >= x->opt.steps)
        return mp_fail(err, "--warmup: %d must be in 0..%d (below --steps)", x->opt.warmup, x->opt.steps - 1);
    if (x->opt.data_bits != 16 && x->opt.data_bits != 32)
        return mp_fail(err, "--data-bits: %d is not 16 or 32", x->opt.data_bits);
    if (x->opt.lr < 0) return mp_fail(err, "--lr: must be >= 0, got %g", x->opt.lr);
    if (x->nproc_given && x->nproc < 1) return mp_fail(err, "--nproc: must be >= 1, got %d", x->nproc);
    return 0;
}

/* rank 0, --op-profile: the table (unless --json) and the JSON file */
static int write_op_profile(const ExecuteArgs *x, ExecStepStats *stats, const char *device, MpError *err) {
    if (!x->json) op_profile_print(stdout, stats->op_profile, stats->median.step);
    char *text = op_profile_to_json(stats->op_profile, stats->median.step, device);
    if (!text) return mp_fail(err, "--op-profile: out of memory");
    int rc = measure_write_atomic(x->op_profile_path, text, err);
    free(text);
    return rc;
}

static int no_gpu(MpError *err, const char *why) {
    return mp_fail(err, "--backend: cuda (the default of a CUDA build), but this process sees no GPU: %s; "
                   "use --backend cpu to run on CPUs", why);
}

/* The number of ranks and the final plan: the launcher's world, else
 * --gpus / the plan file, else --nproc, else every visible GPU (CPU: 1). */
static int resolve_world(ExecuteArgs *x, const LaunchEnv *env, MpError *err) {
    Plan *p = &x->plan;
    int world = p->map.world;
    if (env->source != LAUNCH_NONE) {
        if (world > 0 && world != env->world_size)
            return mp_fail(err, "--gpus: the plan has %d GPUs but the %s launcher started %d rank(s)", world,
                           launch_source_name(env->source), env->world_size);
        world = env->world_size;
    } else if (world > 0) {
        if (x->nproc_given && x->nproc != world)
            return mp_fail(err, "--nproc: %d differs from the plan's %d GPUs", x->nproc, world);
    } else if (x->nproc_given) {
        world = x->nproc;
    } else if (x->opt.backend == EXEC_BACKEND_CUDA) {
        char why[256];
        world = comms_probe_gpus(why, sizeof why);
        if (world < 1) return no_gpu(err, why);
    } else {
        world = 1;
    }
    if (env->source == LAUNCH_NONE && world > 1) {   /* this process will start the ranks */
        const char *flag = x->nproc_given ? "--nproc" : "--gpus";
        if (x->opt.backend == EXEC_BACKEND_CPU) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            long most = (cores > 0 ? cores : 1) * EXECUTE_CPU_RANKS_PER_CORE;
            if (world > most)
                return mp_fail(err, "%s: %d CPU ranks on this node exceed %ld (%d per online core: every rank is a "
                               "process busy-polling in MPI); start them with mpirun across nodes instead",
                               flag, world, most, EXECUTE_CPU_RANKS_PER_CORE);
        } else if (!x->check_only) {
            char why[256];
            int gpus = comms_probe_gpus(why, sizeof why);
            if (gpus >= 1 && world > gpus)
                return mp_fail(err, "%s: %d ranks but %d GPU(s) are visible on this node (one process per GPU; "
                               "start more nodes with mpirun, srun or torchrun)", flag, world, gpus);
        }
    }
    if (env->source == LAUNCH_NONE && world > MP_MAX_NPROC)
        return mp_fail(err, "--gpus: %d ranks on this machine is above the limit of %d local processes (one per GPU); "
                       "start more through mpirun, srun or torchrun", world, MP_MAX_NPROC);
    p->map.world = world;
    if (mapping_resolve(&p->map, p->model.num_experts, err)) return -1;
    if (!x->gbs_given) p->train.global_batch = p->train.micro_batch * p->map.dp;
    if (train_config_validate(&p->train, err)) return -1;
    return plan_validate(p, err);
}

static void device_name(ExecBackendKind kind, char *buf, size_t len) {
    snprintf(buf, len, "cpu");
#ifdef MOEPLAN_HAVE_CUDA
    struct cudaDeviceProp prop;
    if (kind == EXEC_BACKEND_CUDA && cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        snprintf(buf, len, "%.63s", prop.name);
#else
    (void)kind;
#endif
}

/* On an H200 without an explicit cluster, predict for dgx-h200 rather than
 * the default dgx-h100 (same peak BF16, more and faster HBM). */
static void pick_cluster(ExecuteArgs *x, const char *device) {
    if (x->cluster_given || !strstr(device, "H200")) return;
    Cluster c;
    MpError e;
    if (cluster_lookup("dgx-h200", &c, &e) == 0) {
        x->plan.cluster = c;
        snprintf(x->plan.cluster_ref, sizeof x->plan.cluster_ref, "dgx-h200");
    }
}

/* The executor's memory inventory for its backend and attention
 * (simulator/exec_memory.c): the CPU backend; on the GPU the own attention
 * kernel when asked or when it ran ("own"), else cuDNN (the default). */
static SimExecBackend exec_memory_backend(const ExecuteArgs *x, const char *attention_ran) {
    if (x->opt.backend != EXEC_BACKEND_CUDA) return SIM_EXEC_CPU;
    if (attention_ran && attention_ran[0]) return strncmp(attention_ran, "cudnn", 5) ? SIM_EXEC_CUDA_OWN_ATTENTION : SIM_EXEC_CUDA_CUDNN_ATTENTION;
    return x->opt.attention == EXEC_ATTENTION_OWN ? SIM_EXEC_CUDA_OWN_ATTENTION : SIM_EXEC_CUDA_CUDNN_ATTENTION;
}

/* The memory beside the measurement is the executor's: its activations,
 * communication buffers and workspaces in place of Megatron-LM's
 * activations (simulate_use_executor_memory) for the plan as run. */
static int use_executor_memory(const ExecuteArgs *x, SimExecBackend be, SimResult *r, MpError *err) {
    Plan *tp = malloc(sizeof *tp);
    if (!tp) return mp_fail(err, "execute: out of memory");
    *tp = x->plan;
    measure_truncated_model(&x->plan.model, x->opt.layers, &tp->model);
    int rc = simulate_use_executor_memory(tp, be, r, err);
    free(tp);
    return rc;
}

/* simulate_step on the plan truncated to the run's layers, from defaults
 * (res) and, with --calibration, from the calibration file (res_cal). */
static int predict(ExecuteArgs *x, SimResult *res, SimResult *res_cal, MpError *err) {
    Plan *tp = malloc(sizeof *tp);
    if (!tp) return mp_fail(err, "execute: out of memory");
    *tp = x->plan;
    measure_truncated_model(&x->plan.model, x->opt.layers, &tp->model);
    /* the executor runs its own attention kernel (kernels/attention.cu):
     * predict with that backend's rates (simulator/attention.c) */
    tp->train.attention_backend = ATTN_BACKEND_OWN;
    SimOptions so = {0};
    /* the memory model in the run's element size: bf16 on the GPU, fp32
     * on the CPU backend (whose weights are their own master) */
    so.memory_elem_bytes = x->opt.backend == EXEC_BACKEND_CUDA ? 2 : 4;
    const Mapping *mp = &x->plan.map;
    int dp = mp->dp > 0 ? mp->dp : 1, mbs = x->plan.train.micro_batch > 0 ? x->plan.train.micro_batch : 1;
    if (mp->pp > 1 && x->plan.train.global_batch / (mbs * dp) > 0) {
        /* stage 0's simulated operations, printed beside the measured ones */
        so.max_events = 2 * (x->plan.train.global_batch / (mbs * dp)) * (mp->vpp > 0 ? mp->vpp : 1);
        so.events = x->sim_ops = calloc((size_t)so.max_events, sizeof(SimOpEvent));
        so.events_rank = 0;
        so.num_events = &x->sim_num_ops;
        if (!so.events) so.max_events = 0;
    }
    int rc = simulate_step(tp, NULL, &so, res, err);
    so.events = NULL;
    if (rc == 0 && x->cal) rc = simulate_step(tp, x->cal, &so, res_cal, err);
    free(tp);
    SimExecBackend mb = exec_memory_backend(x, NULL);
    if (rc == 0) rc = use_executor_memory(x, mb, res, err);
    if (rc == 0 && x->cal) rc = use_executor_memory(x, mb, res_cal, err);
    return rc;
}

static void fit_message(const ExecuteArgs *x, const SimResult *r, MpError *err) {
    int worst = 0;
    for (int s = 1; s < r->num_stages; s++)
        if (r->stage_memory[s].total > r->stage_memory[worst].total) worst = s;
    const SimStageMemory *m = &r->stage_memory[worst];
    const double gib = 1073741824.0;
    mp_fail(err,
            "plan does not fit: pipeline stage %d needs %.1f GiB per GPU (weights %.1f, gradients %.1f, optimizer "
            "%.1f, activations %.1f, communication buffers %.1f, workspaces %.1f) but %s has %.1f GiB usable (HBM "
            "%.1f minus reserve %.1f); use more GPUs, a larger --ep, or fewer --layers",
            worst, m->total / gib, m->weights / gib, m->gradients / gib, m->optimizer / gib, m->activations / gib,
            m->communication / gib, m->workspace / gib,
            x->plan.cluster.gpu_name, r->memory_capacity_bytes / gib, x->plan.cluster.hbm_bytes / gib,
            x->plan.train.memory_reserve_bytes / gib);
}

/* --check: the predicted memory of the stage with the most (MiB), the
 * categories `execute` prints beside its measurement */
static void print_memory_prediction(const SimResult *r) {
    int worst = 0;
    for (int s = 1; s < r->num_stages; s++)
        if (r->stage_memory[s].total > r->stage_memory[worst].total) worst = s;
    const SimStageMemory *m = &r->stage_memory[worst];
    const double mib = 1048576.0;
    printf("predicted memory per GPU (stage %d, MiB): %.3f = weights %.3f + gradients %.3f + optimizer state %.3f + "
           "activations %.3f + communication buffers %.3f + workspaces %.3f\n",
           worst, m->total / mib, m->weights / mib, m->gradients / mib, m->optimizer / mib, m->activations / mib,
           m->communication / mib, m->workspace / mib);
}

/* Output files named by options; kept in one place for the safe writer that
 * replaces measure_write_atomic. */
static int check_output_paths(const ExecuteArgs *x, MpError *err) {
    if (x->out_path && preflight_output_path(x->out_path, "--out", err)) return -1;
    if (x->op_profile_path && preflight_output_path(x->op_profile_path, "--op-profile", err)) return -1;
    return 0;
}

/* Everything but memory, before any work: the plan fields and the model the
 * step implements, the data file, the output paths. */
static int check_inputs(ExecuteArgs *x, PreflightNotes *notes, MpError *err) {
    if (preflight_plan(&x->plan, &x->requested, notes, err) || preflight_model(&x->plan.model, err)) return -1;
    if (x->opt.data_path &&
        preflight_data_file(x->opt.data_path, x->opt.data_bits, x->plan.model.vocab, x->plan.train.seq_len,
                            &x->data_ids, err))
        return -1;
    return check_output_paths(x, err);
}

/* CPU backend: the ranks this process starts (all of them, on this node) or
 * this rank alone (under a launcher) must fit in MemAvailable. */
static int check_host_memory(const ExecuteArgs *x, const LaunchEnv *env, MpError *err) {
    char *text;
    MpError ignore;
    double avail;
    if (read_text_file("/proc/meminfo", &text, &ignore)) return 0;   /* no /proc: nothing to compare with */
    int rc = preflight_mem_available(text, &avail);
    free(text);
    if (rc) return 0;
    CpuMemoryEstimate e;
    preflight_cpu_memory(&x->plan, x->opt.layers, x->data_ids, &e);
    int ranks = env->source == LAUNCH_NONE ? x->plan.map.world : 1;
    const double gib = 1073741824.0;
    if (ranks * e.total <= avail) return 0;
    return mp_fail(err,
                   "--backend cpu: the run needs about %.1f GiB of host memory (%d rank(s) x %.1f GiB: parameters, "
                   "gradients and Adam state %.1f, activations %.1f, data %.1f, process %.1f) but MemAvailable is "
                   "%.1f GiB (/proc/meminfo); use fewer --layers, a shorter --seq, a smaller --mbs or a larger --ep",
                   ranks * e.total / gib, ranks, e.total / gib, e.params / gib, e.activations / gib, e.data / gib,
                   e.base / gib, avail / gib);
}

/* Child argv for the built-in launcher: this executable, then "execute" and
 * the original options. */
static char **child_argv(int argc, char **argv, const char *prefix[], int nprefix, char *exe) {
    char **v = calloc((size_t)(argc + nprefix + 2), sizeof *v);
    if (!v) return NULL;
    int n = 0;
    for (int i = 0; i < nprefix; i++) v[n++] = (char *)prefix[i];
    v[n++] = exe;
    for (int i = 0; i < argc; i++) v[n++] = argv[i];
    v[n] = NULL;
    return v;
}

static int launch_children(const ExecuteArgs *x, int argc, char **argv) {
    MpError err = {{0}};
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || n >= (ssize_t)sizeof exe - 1) { fprintf(stderr, "moeplan execute: cannot find its own executable (/proc/self/exe)\n"); return 1; }
    exe[n] = 0;
    int world = x->plan.map.world;
    setenv(EXECUTE_CHECKED_ENV, "1", 1);   /* the ranks need not print this process's notes again */
    if (x->opt.backend == EXEC_BACKEND_CPU) {
        /* the CPU backend's collectives are MPI: run the ranks under mpirun */
        char np[16];
        snprintf(np, sizeof np, "%d", world);
        const char *root_prefix[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", np};
        const char *user_prefix[] = {"mpirun", "--oversubscribe", "-np", np};
        char **v = geteuid() == 0 ? child_argv(argc, argv, root_prefix, 5, exe) : child_argv(argc, argv, user_prefix, 4, exe);
        if (!v) return 1;
        fflush(NULL);
        execvp("mpirun", v);
        fprintf(stderr, "moeplan execute: --backend cpu with %d ranks needs mpirun (not found); "
                        "start it as `mpirun -np %d moeplan execute ...`\n", world, world);
        free(v);
        return 1;
    }
    int port = launch_free_port(&err);
    if (port < 0) { fprintf(stderr, "moeplan execute: %s\n", err.msg); return 1; }
    char **v = child_argv(argc, argv, NULL, 0, exe);
    if (!v) return 1;
    LaunchOptions lo = {.nproc = world, .master_port = port, .kill_grace_s = EXECUTE_KILL_GRACE_S};
    LaunchReport rep;
    fflush(NULL);
    int rc = launch_local(v, &lo, &rep, &err);
    free(v);
    if (rc) {
        fprintf(stderr, "moeplan execute: %s (after %.1f s)\n", err.msg, rep.seconds);
        return 1;
    }
    return 0;
}

typedef struct {
    CommsContext *comms;
} FailureContext;

/* Watchdog callback: an NCCL error on this rank ends the process. */
static void on_rank_failure(void *user, int rank, const char *message) {
    FailureContext *f = user;
    fprintf(stderr, "moeplan execute: rank %d: %s\n", rank, message);
    fflush(stderr);
    comms_mpi_abort(f->comms, 1);
    _exit(1);
}

/* A runtime failure on this rank: name it, and make sure the others end too. */
static int rank_fail(CommsContext *c, int rank, const MpError *err) {
    fprintf(stderr, "moeplan execute: rank %d: %s\n", rank, err->msg);
    fflush(NULL);
    comms_mpi_abort(c, 1);
    _exit(1);   /* skip NCCL/MPI teardown that could wait on the failed collective */
}

static int run_rank(ExecuteArgs *x, const LaunchEnv *env, SimResult *pred, SimResult *pred_cal,
                    const char *device) {
    MpError err = {{0}};
    CommsContext cc;
    memset(&cc, 0, sizeof cc);
    if (comms_init(&cc, &x->plan.map, env, x->opt.backend, EXECUTE_RENDEZVOUS_TIMEOUT_S, &err))
        return rank_fail(&cc, env->rank, &err);
    int rank = cc.pub.world_rank;
    FailureContext fc = {.comms = &cc};
    Watchdog *wd = NULL;
    if (watchdog_start(&cc, EXECUTE_WATCHDOG_POLL_S, x->collective_timeout_s, on_rank_failure, &fc, &wd, &err))
        return rank_fail(&cc, rank, &err);
    ExecStepStats stats;
    memset(&stats, 0, sizeof stats);
    if (exec_train(&x->plan, &x->opt, &cc.pub, &stats, &err)) return rank_fail(&cc, rank, &err);
    if (rank == 0 && stats.attention_note[0]) fprintf(stderr, "moeplan execute: attention: %s\n", stats.attention_note);
    /* the last collective: a peer that has passed it may end, its deadline still holds */
    watchdog_peers_may_end(wd);
    /* the slowest rank sets the step time; peak memory is the largest */
    /* and of the backend's accounting, the peak and each category's bytes
     * (max over ranks each: equal on ranks of one stage) */
    double v[11 + EXEC_MEM_CATEGORIES] = {stats.median.step, stats.median.attention, stats.median.moe_compute,
                   stats.median.dispatcher_comm, stats.median.grad_sync, stats.median.optimizer,
                   stats.median.other, stats.peak_memory_bytes, stats.median.pipeline, stats.median.cp_comm,
                   stats.mem_peak_bytes};
    for (int k = 0; k < EXEC_MEM_CATEGORIES; k++) v[11 + k] = stats.mem_bytes[k];
    if (comms_max(&cc, v, 11 + EXEC_MEM_CATEGORIES, &err)) return rank_fail(&cc, rank, &err);
    stats.mem_peak_bytes = v[10];
    for (int k = 0; k < EXEC_MEM_CATEGORIES; k++) stats.mem_bytes[k] = v[11 + k];
    watchdog_stop(wd);
    stats.median = (ExecPhases){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[8], v[9]};
    stats.peak_memory_bytes = v[7];

    int status = 0;
    /* the attention that ran sets the GPU scratch (auto: the own kernel
     * when cuDNN did not load) */
    SimExecBackend mb = exec_memory_backend(x, stats.attention);
    if (mb != exec_memory_backend(x, NULL) &&
        (use_executor_memory(x, mb, pred, &err) || (pred_cal && use_executor_memory(x, mb, pred_cal, &err))))
        return rank_fail(&cc, rank, &err);
    if (rank == 0) {
        Measurement m;
        measure_compute(&x->plan, x->opt.layers, cc.pub.world_size, &stats, pred, &m);
        if (pred_cal) measure_add_calibrated(&m, pred_cal, x->calibration_path, x->cal->device);
        measure_rates(&x->plan, x->opt.layers, x->opt.backend == EXEC_BACKEND_CUDA ? 2 : 4, &m);
        m.steps = x->opt.steps;
        m.warmup = x->opt.warmup;
        snprintf(m.backend, sizeof m.backend, "%s", x->opt.backend == EXEC_BACKEND_CUDA ? "cuda" : "cpu");
        snprintf(m.attention, sizeof m.attention, "%s", stats.attention);
        snprintf(m.expert_gemm, sizeof m.expert_gemm, "%s", stats.expert_gemm);
        m.dispatches = stats.dispatches;
        m.padded_dispatches = stats.padded_dispatches;
        snprintf(m.launcher, sizeof m.launcher, "%s", launch_source_name(env->source));
        snprintf(m.device, sizeof m.device, "%.63s", device);
        m.seed = (unsigned long long)x->opt.seed;
        m.lr = x->opt.lr;
        m.aux_loss_coeff = exec_aux_loss_coeff(&x->opt);
        snprintf(m.act_dtype, sizeof m.act_dtype, "%s", x->opt.backend == EXEC_BACKEND_CUDA ? "bf16" : "fp32");
        m.op_profile = x->opt.op_profile;
        snprintf(m.data, sizeof m.data, "%.255s",
                 x->opt.data_path ? x->opt.data_path : x->opt.random_tokens ? "random" : "synthetic");
        char *json = measure_to_json(&x->plan, &m);
        if (!json) {
            fprintf(stderr, "moeplan execute: out of memory writing the result\n");
            status = 1;
        } else {
            if (x->json) printf("%s\n", json);
            else measure_print(stdout, &x->plan, &m);
            if (!x->json && x->plan.map.pp > 1)
                measure_print_pipeline(stdout, stats.stage, stats.ops, stats.num_ops, x->sim_ops, x->sim_num_ops);
            if (x->out_path && measure_write_atomic(x->out_path, json, &err)) {
                fprintf(stderr, "moeplan execute: %s\n", err.msg);
                status = 1;
            }
            free(json);
        }
        if (status == 0 && stats.op_profile && write_op_profile(x, &stats, device, &err)) {
            fprintf(stderr, "moeplan execute: %s\n", err.msg);
            status = 1;
        }
        fflush(stdout);
    }
    if (stats.op_profile) op_profile_free(stats.op_profile);
    free(stats.op_profile);
    free(stats.losses);
    free(stats.ops);
    comms_destroy(&cc);
    return status;
}

int cmd_execute(int argc, char **argv) {
    MpError err = {{0}};
    ExecuteArgs *x = calloc(1, sizeof *x);
    SimResult *pred = calloc(1, sizeof *pred), *pred_cal = calloc(1, sizeof *pred_cal);
    int rc = 2;
    if (!x || !pred || !pred_cal) { fprintf(stderr, "moeplan execute: out of memory\n"); rc = 1; goto done; }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help")) { fputs(usage_text, stdout); rc = 0; goto done; }
    LaunchEnv env;
    PreflightNotes notes = {0};
    if (parse_args(argc, argv, x, &err) || launch_detect(&env, &err) || resolve_world(x, &env, &err) ||
        check_inputs(x, &notes, &err)) {
        fprintf(stderr, "moeplan execute: %s\n", err.msg);
        goto done;
    }
    char device[64];
    device_name(x->opt.backend, device, sizeof device);
    pick_cluster(x, device);
    /* the prediction is for x->plan: the plan that runs and that the result names */
    if (predict(x, pred, pred_cal, &err)) { fprintf(stderr, "moeplan execute: %s\n", err.msg); goto done; }
    /* GPU memory is what the simulator's figures are about; the CPU backend runs in host RAM */
    if (x->opt.backend == EXEC_BACKEND_CUDA && !pred->fits) {
        fit_message(x, pred, &err);
        if (env.rank == 0) fprintf(stderr, "moeplan execute: %s\n", err.msg);
        goto done;
    }
    if (x->opt.backend == EXEC_BACKEND_CPU && check_host_memory(x, &env, &err)) {
        fprintf(stderr, "moeplan execute: %s\n", err.msg);
        goto done;
    }
    if (x->opt.backend == EXEC_BACKEND_CUDA && !x->check_only) {   /* a real run needs a GPU here */
        char why[256];
        if (comms_probe_gpus(why, sizeof why) < 1) {
            no_gpu(&err, why);
            fprintf(stderr, "moeplan execute: %s\n", err.msg);
            goto done;
        }
    }
    /* every check passed: say which defaults were replaced (once, not again in each rank) */
    if (env.rank == 0 && !getenv(EXECUTE_CHECKED_ENV))
        for (int i = 0; i < notes.count; i++) fprintf(stderr, "moeplan execute: note: %s\n", notes.line[i]);
    if (x->check_only) {
        if (env.rank == 0)
            printf("plan fits: %.1f of %.1f GiB per GPU; predicted step %.1f ms, MFU %.1f%% (megatron), %.1f%% (legacy)\n",
                   pred->peak_memory_bytes / 1073741824.0, pred->memory_capacity_bytes / 1073741824.0,
                   pred->step_time_s * 1e3, 100 * pred->mfu_megatron, 100 * pred->mfu_legacy);
        if (env.rank == 0) print_memory_prediction(pred);
        if (env.rank == 0 && x->cal)
            printf("calibrated (%s): predicted step %.1f ms, MFU %.1f%% (megatron), %.1f%% (legacy)\n",
                   x->calibration_path, pred_cal->step_time_s * 1e3, 100 * pred_cal->mfu_megatron,
                   100 * pred_cal->mfu_legacy);
        rc = 0;
        goto done;
    }
    if (env.source == LAUNCH_NONE && x->plan.map.world > 1) {
        rc = launch_children(x, argc, argv);
    } else {
        if (env.source == LAUNCH_NONE) {   /* one rank, no launcher */
            env.rank = 0;
            env.world_size = 1;
            env.local_rank = 0;
        }
        rc = run_rank(x, &env, pred, x->cal ? pred_cal : NULL, device);
    }
done:
    free(pred);
    free(pred_cal);
    if (x) free(x->cal);
    if (x) free(x->sim_ops);
    free(x);
    return rc;
}
