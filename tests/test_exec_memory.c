/* test_exec_memory.c: the executor's memory accounting (issue 15 item 4).
 * The CPU backend allocates through the same pool as the CUDA backend
 * (executor/pool.h) and counts each block in a category; these tests
 * compare the categories after model_create with bytes computed by hand
 * for the tiny model, and the pool's peak bookkeeping on its own.
 * The executor's memory inventory (simulator/exec_memory.c, the prediction
 * `execute` prints beside its measurement) is checked against hand
 * arithmetic at Mixtral-8x7B shapes and against the H100 measurements of
 * 2026-12-06, and, on the CPU path, against the pool of real `execute`
 * runs (one rank and several, under mpirun), every category within 5%. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <math.h>

#include "executor/backend.h"
#include "executor/model.h"
#include "executor/pool.h"
#include "simulator/simulate.h"
#include "test_util.h"

/* a pool block: bytes rounded up to POOL_GRANULE (512) */
static double blk(double bytes) { return (double)(((size_t)bytes + 511) / 512 * 512); }

/* tiny-moe (model.c): h 64, 4 heads of 16, 2 KV groups, 8 experts, expert
 * FFN 96, vocabulary 128, 2 layers.  Dense parameters:
 *   embedding 128*64 = 8192, final norm 64, output layer 8192,
 *   per layer: attention norm 64, QKV (4 + 2*2)*16*64 = 8192,
 *              output projection 64*64 = 4096, MLP norm 64, router 8*64 = 512
 *              = 12928, twice = 25856
 *   total 8192 + 64 + 8192 + 25856 = 42304
 * Expert parameters, per layer w13 8*2*96*64 = 98304, w2 8*64*96 = 49152:
 *   2 * 147456 = 294912 */
enum { DENSE = 42304, EXPERT = 294912 };

static void make_plan(Plan *p, int dp, int dist)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(model_spec_tiny("tiny-moe", &p->model), 0);
    p->map.world = dp; p->map.tp = p->map.cp = p->map.pp = p->map.vpp = 1;
    p->map.ep = dp; p->map.etp = 1;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = 8; p->train.micro_batch = 1; p->train.global_batch = dp;
    p->train.opt_sharding = dist ? OPT_SHARD_DISTRIBUTED : OPT_SHARD_NONE;
}

static void state_bytes(Model *m, Backend *be, double *cat)
{
    (void)m;
    double total;
    /* the peak so far is right after the model's creation: every state
     * buffer is held, the step's buffers too */
    be->mem_report(be, &total, cat);
    double sum = 0;
    for (int k = 0; k < MEM_CATEGORY_COUNT; k++) sum += cat[k];
    assert_true(sum == total);
}

/* One rank, no sharding: every fp32 arena whole.  On the CPU the float
 * master is the working copy (weights), so the optimizer holds m and v. */
static void test_state_one_rank(void **s)
{
    (void)s;
    ExecComms c;
    memset(&c, 0, sizeof c);
    c.world_size = 1;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) c.size_of[k] = 1;
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Plan plan;
    make_plan(&plan, 1, 0);
    Model *m;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), 0);
    double cat[MEM_CATEGORY_COUNT];
    state_bytes(m, be, cat);
    double arenas = blk(4.0 * DENSE) + blk(4.0 * EXPERT);   /* 169472 + 1179648 */
    assert_true(arenas == 169472.0 + 1179648.0);
    assert_true(cat[MEM_WEIGHTS] == arenas);
    assert_true(cat[MEM_GRADIENTS] == arenas);
    assert_true(cat[MEM_OPTIMIZER] == 2 * arenas);
    assert_true(cat[MEM_ACTIVATIONS] > 0);
    model_destroy(m);
    be->destroy(be);
}

/* DP2 (EP2, so EDP 1) with the distributed optimizer, the second member
 * (no MPI: the groups' sizes say 2, their collectives would be copies).
 * Dense arena: one bucket (no overlap) of 42304 elements sharded over 2:
 *   shard 21152 rounded up to 64 -> 21184, padded arena 42368;
 *   weights 42368*4 = 169472 bytes, gradients 169472 (the reduce-scatter
 *   is in place: no second buffer), optimizer m and v of 21184*4 = 84736
 *   bytes, a 84992-byte block each.
 * Expert arena (EDP 1, 4 of the 8 experts): 147456 elements whole,
 *   589824 bytes each of weights, gradients, m, v. */
static void test_state_distributed(void **s)
{
    (void)s;
    Plan plan;
    make_plan(&plan, 2, 1);
    ExecComms c;
    memset(&c, 0, sizeof c);
    c.world_size = 2; c.world_rank = 1;
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        c.size_of[k] = mapping_group_size(&plan.map, (GroupKind)k);
        int members[2];
        c.rank_in[k] = mapping_group_of_rank(&plan.map, (GroupKind)k, 1, members);
    }
    assert_int_equal(c.size_of[GROUP_DP_CP], 2);
    assert_int_equal(c.size_of[GROUP_EDP], 1);
    Backend *be;
    MpError err;
    assert_int_equal(backend_cpu_create(&c, &be, &err), 0);
    Model *m;
    assert_int_equal(model_create(&plan, 0, 7, be, &m, &err), 0);
    double cat[MEM_CATEGORY_COUNT];
    state_bytes(m, be, cat);
    assert_true(cat[MEM_WEIGHTS] == 169472.0 + 589824.0);
    assert_true(cat[MEM_GRADIENTS] == 169472.0 + 589824.0);   /* reduce-scattered in place */
    assert_true(cat[MEM_OPTIMIZER] == 2 * 84992.0 + 2 * 589824.0);
    assert_int_equal(model_optimizer_elems(m), 21184 + 147456);
    model_destroy(m);
    be->destroy(be);
}

static void *fake_alloc(void *ctx, size_t bytes) { (void)ctx; return malloc(bytes); }
static void fake_free(void *ctx, void *p) { (void)ctx; free(p); }

/* The pool's peak and the categories at that moment: a later, smaller
 * high does not replace them; a reused block counts in its new owner's
 * category. */
static void test_pool_peak_by_category(void **s)
{
    (void)s;
    DevicePool p;
    pool_init(&p, fake_alloc, fake_free, NULL);
    pool_set_category(&p, MEM_WEIGHTS);
    void *w = pool_alloc(&p, 1000);          /* 1024 */
    pool_set_category(&p, MEM_ACTIVATIONS);
    void *a = pool_alloc(&p, 3000);          /* 3072 */
    assert_int_equal(p.peak_in_use, 4096);
    assert_int_equal(p.cat_at_peak[MEM_WEIGHTS], 1024);
    assert_int_equal(p.cat_at_peak[MEM_ACTIVATIONS], 3072);
    assert_int_equal(pool_free(&p, a), 0);
    pool_set_category(&p, MEM_COMM);
    void *c = pool_alloc(&p, 2000);          /* reuses the 3072-byte block */
    assert_ptr_equal(c, a);
    assert_int_equal(p.cat_in_use[MEM_COMM], 3072);
    assert_int_equal(p.cat_in_use[MEM_ACTIVATIONS], 0);
    assert_int_equal(p.peak_in_use, 4096);   /* equal, not above: the snapshot stays */
    assert_int_equal(p.cat_at_peak[MEM_COMM], 0);
    void *d = pool_alloc(&p, 100);           /* 512 more: a new peak of 4608 */
    assert_int_equal(p.peak_in_use, 4608);
    assert_int_equal(p.cat_at_peak[MEM_COMM], 3072 + 512);
    assert_int_equal(p.cat_at_peak[MEM_ACTIVATIONS], 0);
    (void)w; (void)d;
    pool_destroy(&p);
}

/* ---- the executor's inventory (simulator/exec_memory.c) ------------------ */

#define MIB 1048576.0

/* One GPU, the first `layers` layers of `model`, seq s, micro-batch b,
 * global batch gbs, optimizer sharding none. */
static void gpu_plan(Plan *p, const char *model, int layers, int s, int b, int gbs)
{
    memset(p, 0, sizeof *p);
    p->model = test_model(model);
    p->model.num_layers = layers;
    p->map.world = 1; p->map.tp = p->map.cp = p->map.pp = p->map.vpp = 1;
    p->map.ep = 1; p->map.etp = 1;
    MpError err;
    assert_int_equal(mapping_resolve(&p->map, p->model.num_experts, &err), 0);
    p->train.seq_len = s; p->train.micro_batch = b; p->train.global_batch = gbs;
    p->train.opt_sharding = OPT_SHARD_NONE;
}

/* Mixtral-8x7B shapes (h 4096, 32 heads of 128, 8 KV groups, 8 experts,
 * top-2, expert FFN 14336, vocabulary 32000), first 2 layers, seq 4096,
 * mbs 4 x 4 micro-batches, one GPU (bf16: a = 2), the configuration the
 * H100 ran on 2026-12-06.  T = Ts = 4 x 4096 = 16384 tokens; QKV width w =
 * (32 + 2 x 8) x 128 = 6144; dispatcher rows (EP 1, dropless) = T k =
 * 32768.  In MiB (2^20 bytes); [16384, 4096] bf16 = 128 MiB, a [16384] f32
 * = 1/16 MiB, [16384, 2] i32 = 1/8 MiB.
 *
 * Activations, per layer:
 *   x_mid, xn1, xn2 [T, h]               3 x 128  = 384
 *   rstd1, rstd2 [T] f32                 2 / 16   = 0.125
 *   qkv [T, 6144]                                 = 192
 *   o [T, 4096]                                   = 128
 *   lse [T, 32] f32                               = 2
 *   probs [T, 8] f32                              = 0.5
 *   topk_idx, topk_prob, row_of [T, 2] 4 B  3 / 8 = 0.375
 *   sort_src [32768] i32                          = 0.125
 *   X [32768, 4096]                               = 256
 *   h13 [32768, 28672]                            = 1792
 *   a [32768, 14336]                              = 896
 *   ret [32768, 4096]                             = 256
 *   gcoef [8] f32: one 512-byte block
 *   = 3907.125 MiB + 512 B
 * per micro-batch context: xs[0..2] 3 x 128, dx 128, xf 128, logits
 *   [T, 32000] bf16 = 1000, tokens, targets, losses [T] 4 B 3 / 16, rstdf
 *   1 / 16 = 1640.25 MiB
 * once: positions [T] i32 1 / 16 MiB; loss accumulator, step loss, the
 *   count exchange's ints: 3 blocks of 512 B
 * activations = 2 x 3907.125 + 1640.25 + 0.0625 MiB + 5 x 512 B
 *             = 9454.5625 MiB + 2560 B
 * Communication: send [32768, 4096] in each direction (EP 1, ETP 1: no
 *   receive buffer, the experts read the send buffer): 2 x 256 = 512 MiB
 * Workspaces: forward y, moe [T, h] 256, router logits [T, 8] f32 0.5,
 *   expert output Y 256; backward dO 128, dQKV 192, t1, t2 256, dY 256,
 *   big1 [32768, 28672] 1792, big2 [32768, 14336] 896, dprob [T, 2] f32
 *   0.125, dlogits [T, 8] f32 0.5 and bf16 0.25
 *   = 4033.375 MiB
 *   + attention scratch, cuDNN: dQ accumulator 4 x 4 x 32 x 4096 x 128 B
 *   = 256 MiB, softmax sum 4 x 4 x 32 x 4096 B = 2 MiB, cuDNN's plan 256
 *   MiB: 514 MiB -> 4547.375 MiB; own kernel: 4 (B nh s + B s nh hd) =
 *   2 + 256 = 258 MiB -> 4291.375 MiB */
static void test_inventory_mixtral_2l_mbs4(void **s)
{
    (void)s;
    Plan p;
    gpu_plan(&p, "mixtral-8x7b", 2, 4096, 4, 16);
    SimStageMemory m;
    MpError err;
    assert_int_equal(simulate_executor_memory(&p, SIM_EXEC_CUDA_CUDNN_ATTENTION, 0, &m, &err), 0);
    assert_true(m.activations == 9454.5625 * MIB + 2560);
    assert_true(m.communication == 512 * MIB);
    assert_true(m.workspace == 4547.375 * MIB);
    assert_int_equal(simulate_executor_memory(&p, SIM_EXEC_CUDA_OWN_ATTENTION, 0, &m, &err), 0);
    assert_true(m.workspace == 4291.375 * MIB);
    assert_true(m.weights == 0 && m.gradients == 0 && m.optimizer == 0);
    assert_int_equal(simulate_executor_memory(&p, SIM_EXEC_CUDA_OWN_ATTENTION, 1, &m, &err), -1);
    assert_non_null(strstr(err.msg, "stage: 1"));
}

/* The whole prediction beside `execute` (simulate_step, then the
 * inventory) against what the H100 measured, 2026-12-06, one GPU, cuDNN
 * 9.19.0 attention unless said (docs/device/2026-12-06-h100-s2-ops_*.log,
 * "peak allocated per GPU", MiB): every category within 5% (they agree to
 * the printed 0.001 MiB).  Those runs still allocated the dispatcher's two
 * receive buffers [T k, h] bf16, which the executor no longer does with EP
 * 1 and ETP 1 (layer.c moe_forward): recv_mib, subtracted from the
 * communication buffers and the total measured then. */
typedef struct {
    const char *model;
    int b, gbs;
    SimExecBackend be;
    double total, weights, gradients, optimizer, activations, communication, workspace;   /* MiB */
    double recv_mib;   /* 2 x [T k, h] bf16 */
} H100Run;

static void test_prediction_vs_h100(void **s)
{
    (void)s;
    static const H100Run runs[] = {
        /* ops_cudnn_mbs4.log */
        {"mixtral-8x7b", 4, 16, SIM_EXEC_CUDA_CUDNN_ATTENTION, 69351.417, 6036.164, 12072.328, 36216.984, 9454.565,
         1024.000, 4547.375, 512},
        /* ops_own_mbs4.log */
        {"mixtral-8x7b", 4, 16, SIM_EXEC_CUDA_OWN_ATTENTION, 69095.417, 6036.164, 12072.328, 36216.984, 9454.565,
         1024.000, 4291.375, 512},
        /* ops_cudnn_mbs1.log */
        {"mixtral-8x7b", 1, 1, SIM_EXEC_CUDA_CUDNN_ATTENTION, 58081.964, 6036.164, 12072.328, 36216.984, 2363.643,
         256.000, 1136.844, 128},
        /* ops_qwen3_mbs4.log */
        {"bench/models/qwen3-30b-a3b-shapes.json", 4, 16, SIM_EXEC_CUDA_CUDNN_ATTENTION, 46055.241, 3564.020,
         7128.039, 21384.117, 9252.565, 2048.000, 2678.500, 1024},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const H100Run *r = &runs[i];
        Plan p;
        gpu_plan(&p, r->model, 2, 4096, r->b, r->gbs);
        p.cluster = (Cluster){0};
        MpError err;
        assert_int_equal(cluster_lookup("dgx-h100", &p.cluster, &err), 0);
        SimOptions so = {0};
        so.memory_elem_bytes = 2;
        SimResult *res = calloc(1, sizeof *res);
        assert_non_null(res);
        assert_int_equal(simulate_step(&p, NULL, &so, res, &err), 0);
        assert_int_equal(simulate_use_executor_memory(&p, r->be, res, &err), 0);
        const SimStageMemory *m = &res->stage_memory[0];
        const double got[7] = {m->total, m->weights, m->gradients, m->optimizer, m->activations, m->communication,
                               m->workspace};
        const double want[7] = {r->total - r->recv_mib, r->weights, r->gradients, r->optimizer, r->activations,
                                r->communication - r->recv_mib, r->workspace};
        for (int k = 0; k < 7; k++)
            if (fabs(got[k] / MIB - want[k]) > 0.05 * want[k])
                fail_msg("%s mbs %d: category %d: predicted %.3f MiB, measured %.3f", r->model, r->b, k, got[k] / MIB,
                         want[k]);
        assert_true(res->peak_memory_bytes == m->total);
        free(res);
    }
}

/* ---- the CPU path: `execute`'s measured pool against its prediction ------- */

/* Runs `moeplan execute ARGS --backend cpu --json` and checks that every
 * category of measured.memory_bytes is within 5% of predicted.memory_bytes
 * (and that the communication buffers and workspaces are there: > 0). */
static void expect_cpu_memory_agrees(const char *args)
{
    static char out[1 << 20];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "execute %s --backend cpu --json", args);
    int rc = moeplan_run(cmd, RUN_STDOUT | RUN_NO_LEAK_CHECK, out, sizeof out);
    if (rc) fail_msg("moeplan %s: exit %d", cmd, rc);
    cJSON *o = cJSON_Parse(out);
    if (!o) fail_msg("moeplan %s: not JSON: %.200s", cmd, out);
    const cJSON *mm = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "measured"), "memory_bytes");
    const cJSON *pm = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "predicted"), "memory_bytes");
    assert_non_null(mm);
    assert_non_null(pm);
    static const char *const cat[] = {"total", "weights", "gradients", "optimizer", "activations", "communication",
                                      "workspace"};
    for (size_t i = 0; i < sizeof cat / sizeof cat[0]; i++) {
        double got = cJSON_GetObjectItem(mm, cat[i])->valuedouble, want = cJSON_GetObjectItem(pm, cat[i])->valuedouble;
        if (!(want > 0) || fabs(got - want) > 0.05 * want)
            fail_msg("%s: %s: measured %.0f bytes, predicted %.0f", args, cat[i], got, want);
    }
    cJSON_Delete(o);
}

/* One rank: tiny-moe; a larger model (h 256, 4 experts of 256, vocabulary
 * 512) at seq 128 x mbs 2 (about 50 MiB, a second); tiny-moe with a dense
 * first layer and a shared expert. */
static void test_cpu_measured_vs_predicted_one_rank(void **s)
{
    (void)s;
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe.json --seq 32 --steps 2 --warmup 1");
    expect_cpu_memory_agrees("--model tests/data/exec-small-moe.json --seq 128 --mbs 2 --gbs 2 --steps 1 --warmup 0");
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe-shared.json --seq 64 --steps 1 --warmup 0");
}

/* Several ranks (mpirun --oversubscribe, which execute starts): TP2 with
 * the dense layer and shared expert (the TP gathers, the vocabulary-
 * parallel loss's statistics); CP2 (the ring's K|V); PP3 with 6
 * micro-batches (1F1B contexts; the largest of the stages by category);
 * EP2 with a capacity factor (the dispatcher's padded rows; dropless EP
 * grows its buffers with the routing's imbalance, which the balanced
 * inventory does not predict). */
static void test_cpu_measured_vs_predicted_ranks(void **s)
{
    (void)s;
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe-shared.json --seq 64 --gpus 2 --tp 2 --steps 1 --warmup 0");
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe.json --seq 64 --gpus 2 --cp 2 --steps 1 --warmup 0");
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe-shared.json --seq 64 --gpus 3 --pp 3 --gbs 6 --steps 1 --warmup 0");
    expect_cpu_memory_agrees("--model tests/data/exec-tiny-moe.json --seq 64 --gpus 2 --ep 2 --capacity-factor 1.0 --steps 1 --warmup 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_one_rank),
        cmocka_unit_test(test_state_distributed),
        cmocka_unit_test(test_pool_peak_by_category),
        cmocka_unit_test(test_inventory_mixtral_2l_mbs4),
        cmocka_unit_test(test_prediction_vs_h100),
        cmocka_unit_test(test_cpu_measured_vs_predicted_one_rank),
        cmocka_unit_test(test_cpu_measured_vs_predicted_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
