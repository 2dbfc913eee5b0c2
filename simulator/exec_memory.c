/* exec_memory.c: the executor's own memory inventory (simulate.h,
 * simulate_executor_memory): the bytes `moeplan execute` allocates per GPU
 * for activations, communication buffers and workspaces, buffer by buffer.
 *
 * Why not memory.c's formula: memory.c is Megatron-LM's activation memory
 * (what `simulate` and `search` price for a Megatron plan).  The executor
 * keeps a different set of tensors: with fused attention it keeps Q|K|V,
 * the core's output and the fp32 LSE but no norm output twice; it keeps the
 * MoE layer's permuted expert input X [rows, h], the fc1 output [rows, 2F],
 * the SwiGLU output [rows, F] and the combine input [send rows, h]; its
 * logits [T, V] bf16 hold d loss / d logits in place (no fp32 copy); and it
 * holds workspaces (the backward's [rows, 2F] / [rows, F] gradients, the
 * expert output [rows, h] of each direction, the attention core's scratch)
 * and the dispatcher's send / receive buffers, which Megatron's formula does
 * not count.  Measured on one H100 (Mixtral-8x7B shapes, 2 layers, seq 4096,
 * mbs 4, 2026-12-06) the formula gave activations 11325 MiB against 9455
 * allocated, and 0 against 5571 MiB of workspaces and buffers.  So the
 * prediction printed beside `execute`'s measurement is this inventory, and
 * `simulate` keeps memory.c.
 *
 * Every size below is the executor's request, in the order and with the
 * dimensions of executor/layer.c (layer_reserve, head_reserve, the step's
 * functions), executor/chunk.c (chunk_reserve), executor/model.c
 * (model_create) and executor/train.c (trainer_create), and the backends'
 * scratch (backend_cuda.cu, backend_cpu.c).  Each request is rounded up to
 * the pool's granule (executor/pool.h POOL_GRANULE, 512 bytes), as the pool
 * counts it.  If the executor changes a buffer, this file changes with it;
 * tests/test_exec_memory.c compares it with the CPU backend's pool on real
 * runs and with hand arithmetic at Mixtral shapes.
 *
 * Notation (per rank): a = element bytes (2 bf16 CUDA, 4 fp32 CPU);
 * T = b*s/CP tokens of a micro-batch, Ts = T/TP (the sequence-parallel
 * shard); nl = n/TP heads, gl = g/TP KV groups (1 when TP > g), w =
 * (nl + 2 gl) d, nd = nl d; Vl = V/TP; El = E/EP, Fl = Fe/ETP; the
 * dispatcher's rows of a balanced dropless step: send = pad = Ts*k, rows =
 * ETP*pad; with a capacity factor (cap = ceil(Ts*k/E*cf)): send = E*cap, pad
 * = EP*El*cap (the executor's expected_rows).  A dropless run whose routing
 * is unbalanced grows the dispatcher's buffers during the step (1/8 headroom
 * each time): not in this inventory, which is the balanced case. */
#include <math.h>
#include <string.h>

#include "../core/layout.h"
#include "../core/schedule.h"
#include "simulate.h"

/* executor/pool.h POOL_GRANULE: every block is a multiple of it */
#define EXEC_MEM_GRANULE 512.0

/* RMS_BWD_BLOCKS of kernels/rmsnorm.cu: the RMSNorm backward's fp32
 * scratch is RMS_BWD_BLOCKS x h floats (rmsnorm_backward_scratch_floats) */
#define EXEC_MEM_RMS_BWD_BLOCKS 128.0

/* one pool block of a request of `bytes` (0 asks 16: buf_get) */
static double G(double bytes)
{
    if (bytes < 1) bytes = 16;
    return ceil(bytes / EXEC_MEM_GRANULE) * EXEC_MEM_GRANULE;
}

static double max2(double a, double b) { return a > b ? a : b; }

/* The rank's dimensions (executor/model.c model_create). */
typedef struct {
    double a, b, s, cp, tp, T, Ts, h, n, g, d, nl, gl, w, nd, V, Vl;
    double E, k, ep, etp, El, Fl, dffl, sffl;
    double send, pad, rows;      /* dispatcher rows (expected_rows) */
    double c;                    /* CP chunk tokens s / (2 cp) */
} Dims;

static void dims_of(const Plan *p, int act_bytes, Dims *x)
{
    const ModelSpec *m = &p->model;
    const Mapping *mp = &p->map;
    memset(x, 0, sizeof *x);
    x->a = act_bytes;
    x->b = p->train.micro_batch;
    x->s = p->train.seq_len;
    x->cp = mp->cp > 1 ? mp->cp : 1;
    x->tp = mp->tp > 1 ? mp->tp : 1;
    x->T = x->b * x->s / x->cp;
    x->Ts = x->T / x->tp;
    x->c = x->s / (2 * x->cp);
    x->h = m->hidden;
    x->n = m->num_heads;
    x->g = m->num_kv_groups > 0 ? m->num_kv_groups : m->num_heads;
    x->d = m->head_dim;
    x->nl = x->n / x->tp;
    x->gl = x->g >= x->tp ? x->g / x->tp : 1;
    x->w = (x->nl + 2 * x->gl) * x->d;
    x->nd = x->nl * x->d;
    x->V = m->vocab;
    x->Vl = x->V / x->tp;
    x->E = m->num_experts;
    x->k = m->top_k;
    x->ep = mp->ep > 1 ? mp->ep : 1;
    x->etp = mp->etp > 1 ? mp->etp : 1;
    x->El = x->E / x->ep;
    x->Fl = (double)m->expert_ffn / x->etp;
    x->dffl = (double)m->dense_ffn / x->tp;
    x->sffl = (double)m->shared_ffn / x->tp;
    double cf = p->train.capacity_factor;   /* 0: dropless */
    if (cf > 0 && x->E > 0) {
        double cap = ceil(x->Ts * x->k / x->E * cf - 1e-9);   /* executor/dispatcher.c dispatch_capacity */
        if (cap < 1) cap = 1;
        x->send = x->E * cap;
        x->pad = x->ep * x->El * cap;
    } else {
        x->send = x->pad = x->Ts * x->k;
    }
    x->rows = x->etp * x->pad;
}

/* LayerActs of one layer for one micro-batch (layer.c layer_reserve; kept
 * from the layer's forward to its backward):
 *   x_mid, xn1, xn2 [Ts, h] act; rstd1, rstd2 [Ts] f32;
 *   qkv [T, w] act (RoPE applied, read by the backward); o [T, nd] act;
 *   lse [T, nl] f32 (the attention core keeps only out and LSE);
 *   dense layer: mlp_h [T, 2 dffl], mlp_a [T, dffl] act;
 *   MoE layer: probs [Ts, E] f32, topk_idx, topk_prob, row_of [Ts, k] 4 B,
 *     gcoef [E] f32, sort_src [rows] i32, X [rows, h], h13 [rows, 2 Fl],
 *     a [rows, Fl], ret [send, h] act, and with a shared expert mlp_h
 *     [T, 2 sffl], mlp_a [T, sffl] act */
static double layer_activations(const Dims *x, bool moe)
{
    double a = x->a;
    double v = 3 * G(x->Ts * x->h * a) + 2 * G(x->Ts * 4) + G(x->T * x->w * a) + G(x->T * x->nd * a) +
               G(x->T * x->nl * 4);
    double F = moe ? x->sffl : x->dffl;
    if (F > 0) v += G(x->T * 2 * F * a) + G(x->T * F * a);
    if (!moe) return v;
    v += G(x->Ts * x->E * 4) + 3 * G(x->Ts * x->k * 4) + G(x->E * 4) + G(x->rows * 4) + G(x->rows * x->h * a) +
         G(x->rows * 2 * x->Fl * a) + G(x->rows * x->Fl * a) + G(x->send * x->h * a);
    return v;
}

/* The rest of one micro-batch context of a chunk (chunk.c chunk_reserve,
 * layer.c head_reserve): the residual stream xs[l0..l1] (layers + 1
 * buffers [Ts, h] act), dx [Ts, h]; first chunk: tokens [T] i32; last
 * chunk: targets [T] i32, final norm output xf [Ts, h] and rstdf [Ts] f32,
 * logits [T, Vl] act (then d loss / d logits in place), losses [T] f32. */
static double context_activations(const Dims *x, int layers, bool first, bool last)
{
    double a = x->a;
    double v = (layers + 1) * G(x->Ts * x->h * a) + G(x->Ts * x->h * a);
    if (first) v += G(x->T * 4);
    if (last) v += G(x->T * 4) + G(x->Ts * x->h * a) + G(x->Ts * 4) + G(x->T * x->Vl * a) + G(x->T * 4);
    return v;
}

/* The attention core's scratch on the GPU, one call (backend_cuda.cu
 * scratch(): grow-only, the largest call's):
 *   own kernel (kernels/attention.cu attention_backward_workspace_bytes):
 *     backward 4 (B nh Tq + B Tq nh hd) bytes (D and the fp32 dQ
 *     accumulator), forward none;
 *   cuDNN (kernels/attention_cudnn.cu cudnn_attn_workspace_bytes):
 *     backward = the fp32 dQ accumulator 4 B nh Tq hd + the softmax sum
 *     4 B nh Tq (each 256-byte aligned) + the workspace cuDNN's plan asks
 *     for.  That last one is cuDNN's choice, known only at run time; on
 *     the H100 with cuDNN 9.19.0 (2026-12-06, causal GQA, nh 32, hd 128,
 *     B 1 and 4, s 4096, Mixtral and Qwen3-30B-A3B shapes) it was
 *     4 B nh Tq hd bytes, another fp32 [B, nh, Tq, hd] (the scratch was
 *     514 MiB at B 4, 128.5 MiB at B 1: 2 x 4 B nh s hd + 4 B nh s), and
 *     that is what this counts; the forward's plan asked for no more.
 * B, Tq: the micro-batch and s (CP 1), or one ring block (B 1, Tq c). */
static double attention_scratch(const Dims *x, SimExecBackend be)
{
    double B = x->cp > 1 ? 1 : x->b, Tq = x->cp > 1 ? x->c : x->s;
    double q = B * x->nl * Tq;
    if (be == SIM_EXEC_CUDA_OWN_ATTENTION) return 4 * (q + q * x->d);
    if (be == SIM_EXEC_CUDA_CUDNN_ATTENTION) {
        double acc = ceil(4 * q * x->d / 256) * 256, sum = ceil(4 * q / 256) * 256;
        return acc + sum + acc;
    }
    return 0;
}

int simulate_executor_memory(const Plan *plan, SimExecBackend be, int stage, SimStageMemory *out, MpError *err)
{
    memset(out, 0, sizeof *out);
    const ModelSpec *m = &plan->model;
    const Mapping *mp = &plan->map;
    int pp = mp->pp > 1 ? mp->pp : 1, vpp = mp->vpp > 1 ? mp->vpp : 1, L = m->num_layers;
    if (stage < 0 || stage >= pp) return mp_fail(err, "stage: %d: not a pipeline stage of pp %d", stage, pp);
    if (plan->train.micro_batch <= 0 || plan->train.seq_len <= 0 || L <= 0)
        return mp_fail(err, "executor memory: the plan has no micro-batch, sequence or layer");
    Dims x;
    dims_of(plan, be == SIM_EXEC_CPU ? 4 : 2, &x);
    double a = x.a;
    /* micro-batches per step (model.c pipeline_shape) and the schedule's
     * contexts per chunk (core/schedule.h schedule_chunk_contexts) */
    int dp = mp->dp > 0 ? mp->dp : 1, B = plan->train.global_batch, b = plan->train.micro_batch;
    int mb = B > 0 && B % (b * dp) == 0 ? B / (b * dp) : 1;
    PipeSchedule sc = {pp, vpp, mb};

    /* activations: every context of every chunk of this rank */
    bool any_moe = false, any_dense = false;
    double big1 = 0, big2 = 0;   /* the backward's MLP gradients: the largest layer's (model.c) */
    for (int c = 0; c < vpp; c++) {
        int vs = c * pp + stage;
        int l0 = pp == 1 ? 0 : layout_vstage_first_layer(plan, vs);
        int n = pp == 1 ? L : layout_vstage_layers(plan, vs);
        bool first = stage == 0 && c == 0, last = stage == pp - 1 && c == vpp - 1;
        double ctx = context_activations(&x, n, first, last);
        for (int l = l0; l < l0 + n; l++) {
            bool moe = layout_layer_kind(m, l) == LAYER_MOE;
            ctx += layer_activations(&x, moe);
            any_moe |= moe;
            any_dense |= !moe;
            double F = moe ? x.sffl : x.dffl, r = moe ? max2(x.rows, x.T) : x.T, f = moe ? max2(x.Fl, F) : F;
            big1 = max2(big1, G(r * 2 * f * a));
            big2 = max2(big2, G(r * f * a));
        }
        out->activations += schedule_chunk_contexts(&sc, stage, c) * ctx;
    }
    /* once per rank: RoPE positions [T] i32 (model.c), the loss
     * accumulator f32 [2] (model.c) and the step loss f32 [1] (train.c);
     * the CUDA backend's device ints of the count exchange (backend_cuda.cu
     * ints(): max(E, 2 EP El, (ETP+1) EP El) i32, MoE only); with
     * --overlap p2p and VPP > 1 the pipeline's staging buffer [Ts, h] act */
    out->activations += G(x.T * 4) + G(8) + G(4);
    if (be != SIM_EXEC_CPU && any_moe) {
        double ints = x.E;
        if (x.ep > 1) ints = max2(ints, 2 * x.ep * x.El);
        if (x.etp > 1) ints = max2(ints, (x.etp + 1) * x.ep * x.El);
        out->activations += G(ints * 4);
    }
    if ((plan->train.overlap & OVERLAP_P2P) && vpp > 1) out->activations += G(x.Ts * x.h * a);

    /* communication buffers (layer.c buf_category):
     *   the dispatcher's send [send, h] and receive [pad, h] act, one each
     *   per direction (no receive buffer with EP 1 and ETP 1: the experts
     *   read the send buffer, layer.c moe_forward), and the ETP gather
     *   [ETP pad, h] act per direction;
     *   the vocabulary-parallel loss statistics [T, 3] and [TP, T, 3] f32
     *   (last stage, TP > 1); the CP ring's K|V held and arriving [T, 2 gl
     *   d] act (forward 2, backward 2 and the 2 travelling dK|dV); the
     *   tied embedding's f32 [Vl, h] zeros on a middle stage (model.c) */
    bool last_rank = stage == pp - 1, first_rank = stage == 0;
    if (any_moe) {
        bool local = x.ep == 1 && x.etp == 1;
        double dir = G(x.send * x.h * a) + (local ? 0 : G(x.pad * x.h * a)) +
                     (x.etp > 1 ? G(x.etp * x.pad * x.h * a) : 0);
        out->communication += 2 * dir;
    }
    if (last_rank && x.tp > 1) out->communication += G(x.T * 3 * 4) + G(x.tp * x.T * 3 * 4);
    double kvw = 2 * x.gl * x.d;
    if (x.cp > 1) out->communication += 6 * G(x.T * kvw * a);
    if (m->tied_embeddings && pp > 1 && !first_rank && !last_rank) out->communication += G(x.Vl * x.h * 4);

    /* workspaces: the forward's and the backward's Workspace (layer.h),
     * shared by the rank's layers, and the backend's scratch:
     *   forward:  y, moe [Ts, h] act; MoE: router logits [Ts, E] f32, the
     *             experts' output Y [rows, h] act;
     *   backward: dO [T, nd], dQKV [T, w], t1, t2 [Ts, h] act; MLP
     *             gradients big1 [r, 2f], big2 [r, f] act (the largest
     *             layer's: a dense layer r = T, f = dffl; a MoE layer r =
     *             max(rows, T), f = max(Fl, sffl)); MoE: dY [rows, h] act,
     *             dprob [Ts, k] f32, dlogits [Ts, E] f32 and act;
     *   TP > 1:   full, full2, gx [T, h] act in each direction (gathered
     *             inputs and partial sums around the reduce-scatter); the
     *             KV replicas' gradient sum [2 g d h] f32 when TP > g;
     *   TP or CP > 1, MoE: the aux loss's gathered probs [T CP, E] f32 and
     *             top-k [T CP, k] i32;
     *   CP > 1:   the ring's block out [c, nd] act and lse [nl, c] f32
     *             (forward), block dq [c, w], block dK|dV [c, max(nd, 2 gl
     *             d)] and the step's dK|dV [T, 2 gl d] act (backward);
     *   scratch:  CUDA: the largest of the RMSNorm backward's 128 x h f32
     *             and the attention core's (attention_scratch); CPU: the
     *             fused cross-entropy's [T, Vl] f32 on the last stage
     *             (backend_cpu.c, TP 1; the vocabulary-parallel loss has
     *             none). */
    double ws = 2 * G(x.Ts * x.h * a) + G(x.T * x.nd * a) + G(x.T * x.w * a) + 2 * G(x.Ts * x.h * a);
    if (any_moe || any_dense) ws += big1 + big2;
    if (any_moe)
        ws += G(x.Ts * x.E * 4) + 2 * G(x.rows * x.h * a) + G(x.Ts * x.k * 4) + G(x.Ts * x.E * 4) +
              G(x.Ts * x.E * a);
    if (x.tp > 1) {
        ws += 6 * G(x.T * x.h * a);
        if (x.tp > x.g) ws += G(2 * x.g * x.d * x.h * 4);
    }
    if ((x.tp > 1 || x.cp > 1) && any_moe) ws += G(x.T * x.cp * x.E * 4) + G(x.T * x.cp * x.k * 4);
    if (x.cp > 1)
        ws += G(x.c * x.nd * a) + G(x.c * x.nl * 4) + G(x.c * x.w * a) + G(x.c * max2(x.nd, kvw) * a) +
              G(x.T * kvw * a);
    double scratch = 0;
    if (be == SIM_EXEC_CPU) {
        if (last_rank && x.tp == 1) scratch = G(x.T * x.Vl * 4);
    } else {
        scratch = G(max2(EXEC_MEM_RMS_BWD_BLOCKS * x.h * 4, attention_scratch(&x, be)));
    }
    out->workspace = ws + scratch;
    return 0;
}

int simulate_use_executor_memory(const Plan *plan, SimExecBackend be, SimResult *r, MpError *err)
{
    r->peak_memory_bytes = 0;
    r->fits = true;
    for (int st = 0; st < r->num_stages && st < SIM_MAX_STAGES; st++) {
        SimStageMemory e, *sm = &r->stage_memory[st];
        if (simulate_executor_memory(plan, be, st, &e, err)) return -1;
        sm->activations = e.activations;
        sm->communication = e.communication;
        sm->workspace = e.workspace;
        sm->total = sm->weights + sm->gradients + sm->optimizer + sm->activations + sm->communication + sm->workspace;
        if (sm->total > r->peak_memory_bytes) r->peak_memory_bytes = sm->total;
        if (sm->total > r->memory_capacity_bytes) r->fits = false;
    }
    return 0;
}
