/* dispatcher.c: the MoE block for one micro-batch on one GPU (Megatron-Core
 * MoEAlltoAllTokenDispatcher + grouped-GEMM experts).
 *
 * T = s*b/(TP*CP) tokens on the GPU (sequence parallel shard), k experts
 * per token, E experts, EP ranks each holding E/EP of them, split ETP ways.
 *   dropless (capacity_factor 0):  rows sent by a rank  R = T*k*imbalance
 *                                  rows per local expert = ETP*EP*T*k/E*imbalance
 *     (the busiest rank, `imbalance` x the mean, sets the pace of both the
 *     all-to-all and the expert GEMMs)
 *   capacity factor cf:            C = ceil(T*k/E*cf) rows per expert per
 *                                  source rank, padded: R = E*C,
 *                                  rows per local expert = ETP*EP*C
 * Forward, in order:
 *   norm; router GEMM T x E x h; softmax/top-k (fp32, ~4 passes over T*E);
 *   dropless only: tokens-per-expert all-gather over the ETPxEP block and a
 *     device->host sync to size the all-to-all (20 us: the GPU idles while
 *     the host learns the split and launches the next kernels; a 4-byte
 *     copy + sync alone measured 8.5 us on the device H100, a launch 3.4);
 *   permute (read T*h, write R*h); EP all-to-all of R*h; ETP all-gather of
 *   the received rows; sort by local expert (R*ETP rows read + written when
 *   E/EP > 1); fc1 grouped GEMM (E/EP groups, rows x 2Fe/ETP x h); SwiGLU;
 *   fc2 grouped GEMM (rows x h x Fe/ETP); unsort; ETP reduce-scatter; EP
 *   all-to-all back; unpermute (weighted sum of k rows per token).
 *   Shared expert (if any): a TP dense MLP of Fsh on the same tokens.
 * Host-issue floor (dropless only): the device-to-host sync drains the GPU
 * queue, so in the forward the host is not ahead when it issues the expert
 * GEMMs, one cuBLAS call per local expert (TE GroupedLinear): each grouped
 * GEMM costs max(GPU time, local experts x 8.9 us measured host time per
 * call).  It binds only for tiny experts (many local experts with few rows,
 * e.g. 128 experts of FFN 768 at small EP); with a capacity factor the
 * splits are known on the host (padded), there is no sync and the host
 * runs ahead.  The backward has no sync (splits saved) and is not floored.
 * Backward mirrors it: every collective again in reverse, dgrad + wgrad for
 * both grouped GEMMs (wgrad accumulated into fp32 main_grad).
 * --overlap shared-expert (Megatron --moe-shared-expert-overlap): in the
 * forward the shared expert runs on a second stream while the two
 * all-to-alls are in flight: they cost max(a2a*f, a2a - shared compute)
 * instead of a2a (overlap.c); only its compute hides them, its own TP
 * all-gather/reduce-scatter share NVLink with the all-to-all.  Megatron
 * implements this overlap in the forward pass only; the backward
 * all-to-alls stay exposed.
 * Permute/unpermute bytes count the passes of Megatron-Core's
 * moe_utils.permute/unpermute: index_select of R rows (2R*h), unpermute =
 * probability scaling (2R*h) + zero-fill (T*h) + scatter-add (2R*h); the
 * backward mirrors them.  Their rates depend on the access pattern
 * (compute.c): permute is a row gather (0.84 of the copy bandwidth,
 * measured on the device H100), the scatter-add passes of unpermute (2R*h)
 * and of the permute backward (3R*h) combine k rows per token (0.44), the
 * unpermute backward scatters each token's gradient to its k rows and
 * reduces the probability gradient (0.48); the probability scaling and the
 * zero-fills stream (1.0), and sort-by-expert moves whole contiguous chunks
 * (a copy, 1.0).  --overlap ep is applied in simulate.c (it
 * needs the other micro-batch's compute).
 */
#include <math.h>

#include "sim_internal.h"

#define BF16 2.0
#define FP32_ACC 8.0
#define DROPLESS_SYNC_S 20e-6
/* Host time per cuBLAS GEMM call: cublasGemmEx issued back to back,
 * measured on the device H100 (bench/expert_gemm.cu, 2026-11-22: 8.9 us per
 * call on the host; a bare cudaLaunchKernel 3.4 us). */
#define HOST_GEMM_CALL_S 8.9e-6

/* Grouped expert GEMM as Transformer Engine's GroupedLinear runs it: one
 * cuBLAS call per local expert (spread over 4 streams, which the packed
 * tile model of compute.c matches within ~10% at the expert shapes measured,
 * docs/simulator.md).  host_bound: the host is not ahead of the GPU (right
 * after the dropless dispatcher's device-to-host sync, which drains the
 * queue), so the GPU cannot finish the `groups` GEMMs before the host has
 * issued them: t = max(t_gpu, groups * HOST_GEMM_CALL_S). */
double dispatcher_expert_gemm_time(const SimHw *hw, int groups, double m, double n, double k, double c_bytes,
                                   bool host_bound) {
    double t = compute_grouped_gemm_time(hw, groups, m, n, k, c_bytes);
    double host = host_bound ? groups * HOST_GEMM_CALL_S : 0;
    return t > host ? t : host;
}

void dispatcher_shape(const SimCtx *x, DispatchShape *d) {
    const ModelSpec *md = &x->p->model;
    const TrainConfig *t = &x->p->train;
    double T = x->t_local, k = md->top_k, E = md->num_experts;
    double cf = t->capacity_factor;
    double imb = t->imbalance >= 1 ? t->imbalance : 1;
    if (cf > 0) {
        double C = ceil(T * k / E * cf);
        d->rows_recv = E * C;                         /* the rank receives E/EP experts x EP sources x C */
        d->a2a_bytes = E * C * md->hidden * BF16;
        d->rows_per_expert = (double)x->etp * x->ep * C;
    } else {
        d->rows_recv = T * k * imb;
        d->a2a_bytes = T * k * imb * md->hidden * BF16;
        d->rows_per_expert = (double)x->etp * x->ep * T * k / E * imb;
    }
}

void layer_moe(const SimCtx *x, Phase *fwd, Phase *bwd, Phase *rsel) {
    const ModelSpec *md = &x->p->model;
    const TrainConfig *tc = &x->p->train;
    const SimHw *hw = x->hw;
    double h = md->hidden, T = x->t_local, E = md->num_experts;
    int local = md->num_experts / x->ep;
    double fe = (double)md->expert_ffn / x->etp;
    double up = md->swiglu ? 2 * fe : fe;
    DispatchShape d;
    dispatcher_shape(x, &d);
    double rows = d.rows_per_expert;              /* per local expert, after ETP AG */
    double rows_rank = rows * local;              /* all local experts */
    bool dropless = tc->capacity_factor <= 0;
    phase_clear(fwd);
    phase_clear(bwd);
    phase_clear(rsel);

    double t_a2a = comm_time(hw, COLL_ALL_TO_ALL, &x->g[GROUP_EP], d.a2a_bytes);
    double t_etp = x->etp > 1 ? comm_time(hw, COLL_ALL_GATHER, &x->g[GROUP_ETP], rows_rank * h * BF16) : 0;
    double t_etp_rs = x->etp > 1 ? comm_time(hw, COLL_REDUCE_SCATTER, &x->g[GROUP_ETP], rows_rank * h * BF16) : 0;

    /* shared expert, computed as a TP dense MLP of Fsh */
    Phase sh_f, sh_b, sh_r;
    bool has_shared = md->shared_ffn > 0;
    if (has_shared) layer_dense_mlp(x, md->shared_ffn, COST_MOE, "shared", &sh_f, &sh_b, &sh_r);
    bool overlap_shared = has_shared && (tc->overlap & OVERLAP_SHARED_EXPERT);

    /* ---- forward ---- */
    double t_norm = compute_memory_time(hw, 2 * T * h * BF16);
    phase_add(fwd, "pre_mlp_norm", COST_MEMORY_BOUND, t_norm);
    phase_add(fwd, "router_gemm", COST_MOE, compute_gemm_time(hw, T, E, h, 4));
    phase_add(fwd, "router_topk", COST_MEMORY_BOUND, 4 * compute_memory_time(hw, 2 * T * E * 4.0));
    if (dropless) {
        double meta = comm_time(hw, COLL_ALL_GATHER, &x->g[GROUP_ETP_EP], x->g[GROUP_ETP_EP].size * E * 4.0);
        phase_add(fwd, "tokens_per_expert_sync", COST_EP, meta + DROPLESS_SYNC_S);
    }
    /* permute: index_select of R rows (read + write R*h) */
    phase_add(fwd, "permute", COST_MEMORY_BOUND, compute_memory_time_pattern(hw, 2 * d.rows_recv * h * BF16, MEM_ROW_GATHER));
    if (!overlap_shared) phase_add(fwd, "ep_all_to_all_dispatch", COST_EP, t_a2a);
    if (x->etp > 1) phase_add(fwd, "etp_all_gather", COST_ETP, t_etp);
    double t_sort = local > 1 ? compute_memory_time(hw, 2 * rows_rank * h * BF16) : 0;
    if (local > 1) phase_add(fwd, "sort_by_expert", COST_MEMORY_BOUND, t_sort);
    phase_add(fwd, "expert_fc1", COST_MOE, dispatcher_expert_gemm_time(hw, local, rows, up, h, BF16, dropless));
    double t_act = compute_memory_time(hw, rows_rank * (up + fe) * BF16);
    phase_add(fwd, "expert_swiglu", COST_MEMORY_BOUND, t_act);
    phase_add(fwd, "expert_fc2", COST_MOE, dispatcher_expert_gemm_time(hw, local, rows, h, fe, BF16, dropless));
    if (local > 1) phase_add(fwd, "unsort", COST_MEMORY_BOUND, t_sort);
    if (x->etp > 1) phase_add(fwd, "etp_reduce_scatter", COST_ETP, t_etp_rs);
    if (!overlap_shared) phase_add(fwd, "ep_all_to_all_combine", COST_EP, t_a2a);
    /* unpermute: rows x probs (read + write R*h), zero T*h, scatter-add R rows into T */
    phase_add(fwd, "unpermute", COST_MEMORY_BOUND,
              compute_memory_time(hw, (2 * d.rows_recv + T) * h * BF16) +
                  compute_memory_time_pattern(hw, 2 * d.rows_recv * h * BF16, MEM_ROW_COMBINE));
    if (has_shared) {
        phase_append(fwd, &sh_f, 1.0, COST_MOE, false);
        if (overlap_shared) {
            double work = sh_f.total - sh_f.by_kind[COST_TP];
            phase_add(fwd, "ep_all_to_all_behind_shared", COST_EP, overlap_added(2 * t_a2a, work, overlap_sm_frac_nccl(hw)));
        }
    }
    phase_add(fwd, "residual_add", COST_MEMORY_BOUND, compute_memory_time(hw, 3 * T * h * BF16));
    phase_add(rsel, "recompute_swiglu", COST_RECOMPUTE, t_act);
    phase_add(rsel, "recompute_norm", COST_RECOMPUTE, t_norm);
    if (has_shared) phase_append(rsel, &sh_r, 1.0, COST_RECOMPUTE, true);

    /* ---- backward ---- */
    /* unpermute backward: gather the token gradient to R rows, scale by probs, prob gradient (row dot products) */
    phase_add(bwd, "unpermute_bwd", COST_MEMORY_BOUND,
              compute_memory_time_pattern(hw, (T + 4 * d.rows_recv) * h * BF16, MEM_ROW_COMBINE_BWD));
    phase_add(bwd, "ep_all_to_all_combine_bwd", COST_EP, t_a2a);
    if (x->etp > 1) phase_add(bwd, "etp_all_gather_grad", COST_ETP, t_etp);
    if (local > 1) phase_add(bwd, "sort_by_expert_bwd", COST_MEMORY_BOUND, t_sort);
    phase_add(bwd, "expert_fc2_dgrad", COST_MOE, compute_grouped_gemm_time(hw, local, rows, fe, h, BF16));
    phase_add(bwd, "expert_fc2_wgrad", COST_MOE, compute_grouped_gemm_time(hw, local, h, fe, rows, FP32_ACC));
    phase_add(bwd, "expert_swiglu_bwd", COST_MEMORY_BOUND, compute_memory_time(hw, rows_rank * (2 * up + fe) * BF16));
    phase_add(bwd, "expert_fc1_dgrad", COST_MOE, compute_grouped_gemm_time(hw, local, rows, h, up, BF16));
    phase_add(bwd, "expert_fc1_wgrad", COST_MOE, compute_grouped_gemm_time(hw, local, up, h, rows, FP32_ACC));
    if (local > 1) phase_add(bwd, "unsort_bwd", COST_MEMORY_BOUND, t_sort);
    if (x->etp > 1) phase_add(bwd, "etp_reduce_scatter_grad", COST_ETP, t_etp_rs);
    phase_add(bwd, "ep_all_to_all_dispatch_bwd", COST_EP, t_a2a);
    /* permute backward: zero T*h, scatter-add R rows */
    phase_add(bwd, "permute_bwd", COST_MEMORY_BOUND,
              compute_memory_time(hw, T * h * BF16) +
                  compute_memory_time_pattern(hw, 3 * d.rows_recv * h * BF16, MEM_ROW_COMBINE));
    if (has_shared) {
        phase_append(bwd, &sh_b, 1.0, COST_MOE, false);

    }
    phase_add(bwd, "router_bwd", COST_MOE, compute_gemm_time(hw, T, h, E, 4) + compute_gemm_time(hw, E, h, T, 4));
    phase_add(bwd, "router_topk_bwd", COST_MEMORY_BOUND, 2 * compute_memory_time(hw, 3 * T * E * 4.0));
    phase_add(bwd, "pre_mlp_norm_bwd", COST_MEMORY_BOUND, compute_memory_time(hw, 3 * T * h * BF16));
}
