/* layer.c: forward and backward of the attention block, a dense MLP (also
 * the shared expert), the embedding and the output layer + loss, for one
 * micro-batch on one GPU, as an ordered list of kernels and collectives.
 *
 * Shapes (per GPU, one micro-batch): T = s*b/(TP*CP) tokens held with
 * sequence parallelism, M = s*b/CP rows after the TP all-gather.
 *   attention:  norm -> [TP AG M*h] -> QKV GEMM (M x (n+2g)d/TP x h) -> RoPE
 *               -> attention core (ring.c: one kernel, or CP ring steps)
 *               -> out GEMM (M x h x nd/TP) -> [TP RS M*h] -> residual
 *   dense MLP:  norm -> [TP AG] -> fc1 (M x 2F/TP x h) -> SwiGLU -> fc2
 *               (M x h x F/TP) -> [TP RS]
 * Backward: dgrad GEMM (M x k x n) and wgrad GEMM (n x k x M, accumulated
 * into the fp32 main_grad: 8 bytes per output element read+written) for
 * every forward GEMM.  TP with SP in backward (Transformer Engine
 * Linear): the all-gather of the saved input runs asynchronously behind the
 * dgrad GEMM and the reduce-scatter of the input gradient behind the wgrad
 * GEMM (both cost NCCL's SMs, overlap.c); the all-gather of the output
 * gradient (backward of the forward RS) is exposed.  --overlap tp (TE
 * userbuffers) hides the forward AG/RS and that backward AG behind the GEMM
 * they feed, pipelined in TP chunks so (TP-1)/TP of the GEMM can cover them.
 * The attention core (one flash-attention kernel, or the CP ring step by
 * step with its merge passes and K/V transfers) is ring.c's.
 */
#include <math.h>

#include "sim_internal.h"

#define BF16 2.0
#define FP32_ACC 8.0   /* wgrad output accumulated into fp32 main_grad: read + write */

static double padded_vocab(const SimCtx *x);

static int model_qkv_heads_kv(const SimCtx *x) {
    const ModelSpec *m = &x->p->model;
    return m->num_kv_groups > 0 ? m->num_kv_groups : m->num_heads;
}

/* TP collective of `bytes`, exposed or hidden behind `gemm` seconds. */
static void tp_comm(const SimCtx *x, Phase *ph, const char *name, CollOp op, double bytes, double gemm, bool hideable,
                    bool always_async) {
    if (x->tp <= 1) return;
    double t = comm_time(x->hw, op, &x->g[GROUP_TP], bytes);
    if (always_async) {
        phase_add(ph, name, COST_TP, overlap_added(t, gemm, overlap_sm_frac_nccl(x->hw)));
    } else if (hideable && (x->p->train.overlap & OVERLAP_TP)) {
        phase_add(ph, name, COST_TP, overlap_added(t, gemm * (x->tp - 1) / x->tp, overlap_sm_frac_tp(x->hw)));
    } else {
        phase_add(ph, name, COST_TP, t);
    }
}

/* One linear layer's forward GEMM, or its dgrad + wgrad in backward. */
static double gemm_fwd(const SimCtx *x, double m, double n, double k) { return compute_gemm_time(x->hw, m, n, k, BF16); }
static double gemm_dgrad(const SimCtx *x, double m, double n, double k) { return compute_gemm_time(x->hw, m, k, n, BF16); }
static double gemm_wgrad(const SimCtx *x, double m, double n, double k) { return compute_gemm_time(x->hw, n, k, m, FP32_ACC); }

void layer_attention(const SimCtx *x, int window, Phase *fwd, Phase *bwd, Phase *rsel) {
    const ModelSpec *md = &x->p->model;
    double h = md->hidden, M = x->m_full, T = x->t_local;
    int tp = x->tp;
    int g = model_qkv_heads_kv(x);
    double nd = (double)md->num_heads * md->head_dim;
    phase_clear(fwd);
    phase_clear(bwd);
    phase_clear(rsel);

    /* GEMM list of the block: (n, k) per GEMM with M rows */
    double gn[5], gk[5];
    const char *gname[5];
    int ng = 0;
    double out_k;
    if (md->mla) {
        double dqk = md->qk_nope_head_dim + md->qk_rope_head_dim;
        if (md->q_lora_rank > 0) {
            gname[ng] = "q_down"; gn[ng] = md->q_lora_rank; gk[ng++] = h;
            gname[ng] = "q_up"; gn[ng] = md->num_heads * dqk / tp; gk[ng++] = md->q_lora_rank;
        } else {
            gname[ng] = "q_proj"; gn[ng] = md->num_heads * dqk / tp; gk[ng++] = h;
        }
        gname[ng] = "kv_down"; gn[ng] = md->kv_lora_rank + md->qk_rope_head_dim; gk[ng++] = h;
        gname[ng] = "kv_up"; gn[ng] = md->num_heads * (double)(md->qk_nope_head_dim + md->v_head_dim) / tp; gk[ng++] = md->kv_lora_rank;
        out_k = (double)md->num_heads * md->v_head_dim / tp;
    } else {
        gname[ng] = "qkv"; gn[ng] = ((double)md->num_heads + 2.0 * g) * md->head_dim / tp; gk[ng++] = h;
        out_k = nd / tp;
    }

    /* ---- forward ---- */
    double t_norm = compute_memory_time(x->hw, 2 * T * h * BF16);
    phase_add(fwd, "input_norm", COST_MEMORY_BOUND, t_norm);
    double t_in = 0;
    for (int i = 0; i < ng; i++) t_in += gemm_fwd(x, M, gn[i], gk[i]);
    tp_comm(x, fwd, "tp_all_gather", COLL_ALL_GATHER, M * h * BF16, t_in, true, false);
    for (int i = 0; i < ng; i++) phase_add(fwd, gname[i], COST_ATTENTION, gemm_fwd(x, M, gn[i], gk[i]));
    double rope_elems = M * ((double)md->num_heads + (md->mla ? 1 : g)) * (md->mla ? md->qk_rope_head_dim : md->head_dim) / tp;
    phase_add(fwd, "rope", COST_MEMORY_BOUND, compute_memory_time(x->hw, 2 * rope_elems * BF16));
    /* the core (and the CP ring) in its own order: forward after RoPE,
     * backward between the output projection's and the QKV's gradients */
    Phase core_f, core_b, core_r;
    phase_clear(&core_f);
    phase_clear(&core_b);
    phase_clear(&core_r);
    ring_attention(x, window, &core_f, &core_b, &core_r);
    phase_append(fwd, &core_f, 1, 0, false);
    phase_append(rsel, &core_r, 1, 0, false);
    phase_add(rsel, "recompute_norm", COST_RECOMPUTE, t_norm);
    double t_out = gemm_fwd(x, M, h, out_k);
    phase_add(fwd, "attn_out", COST_ATTENTION, t_out);
    tp_comm(x, fwd, "tp_reduce_scatter", COLL_REDUCE_SCATTER, M * h * BF16, t_out, true, false);
    phase_add(fwd, "residual_add", COST_MEMORY_BOUND, compute_memory_time(x->hw, 3 * T * h * BF16));

    /* ---- backward (reverse order) ---- */
    double t_out_d = gemm_dgrad(x, M, h, out_k), t_out_w = gemm_wgrad(x, M, h, out_k);
    tp_comm(x, bwd, "tp_all_gather_grad", COLL_ALL_GATHER, M * h * BF16, t_out_d, true, false);
    phase_add(bwd, "attn_out_dgrad", COST_ATTENTION, t_out_d);
    phase_add(bwd, "attn_out_wgrad", COST_ATTENTION, t_out_w);
    phase_append(bwd, &core_b, 1, 0, false);
    phase_add(bwd, "rope_bwd", COST_MEMORY_BOUND, compute_memory_time(x->hw, 2 * rope_elems * BF16));
    double t_in_d = 0, t_in_w = 0;
    for (int i = 0; i < ng; i++) {
        t_in_d += gemm_dgrad(x, M, gn[i], gk[i]);
        t_in_w += gemm_wgrad(x, M, gn[i], gk[i]);
    }
    tp_comm(x, bwd, "tp_all_gather_input", COLL_ALL_GATHER, M * h * BF16, t_in_d, true, true);
    phase_add(bwd, "qkv_dgrad", COST_ATTENTION, t_in_d);
    tp_comm(x, bwd, "tp_reduce_scatter_grad", COLL_REDUCE_SCATTER, M * h * BF16, t_in_w, true, true);
    phase_add(bwd, "qkv_wgrad", COST_ATTENTION, t_in_w);
    phase_add(bwd, "input_norm_bwd", COST_MEMORY_BOUND, compute_memory_time(x->hw, 3 * T * h * BF16));
}

void layer_dense_mlp(const SimCtx *x, double ffn, CostKind kind, const char *name, Phase *fwd, Phase *bwd, Phase *rsel) {
    const ModelSpec *md = &x->p->model;
    double h = md->hidden, M = x->m_full, T = x->t_local;
    double f_tp = ffn / x->tp;
    double up = md->swiglu ? 2 * f_tp : f_tp;
    bool shared = kind == COST_MOE;
    phase_clear(fwd);
    phase_clear(bwd);
    phase_clear(rsel);
    (void)name;
    double t_norm = compute_memory_time(x->hw, 2 * T * h * BF16);
    if (!shared) phase_add(fwd, "mlp_norm", COST_MEMORY_BOUND, t_norm);
    double t_fc1 = gemm_fwd(x, M, up, h), t_fc2 = gemm_fwd(x, M, h, f_tp);
    tp_comm(x, fwd, shared ? "shared_tp_all_gather" : "tp_all_gather", COLL_ALL_GATHER, M * h * BF16, t_fc1, true, false);
    phase_add(fwd, shared ? "shared_fc1" : "fc1", kind, t_fc1);
    double t_act = compute_memory_time(x->hw, M * (up + f_tp) * BF16);
    phase_add(fwd, shared ? "shared_swiglu" : "swiglu", COST_MEMORY_BOUND, t_act);
    phase_add(fwd, shared ? "shared_fc2" : "fc2", kind, t_fc2);
    tp_comm(x, fwd, shared ? "shared_tp_reduce_scatter" : "tp_reduce_scatter", COLL_REDUCE_SCATTER, M * h * BF16, t_fc2, true, false);
    if (!shared) phase_add(fwd, "residual_add", COST_MEMORY_BOUND, compute_memory_time(x->hw, 3 * T * h * BF16));
    phase_add(rsel, "recompute_swiglu", COST_RECOMPUTE, t_act);
    if (!shared) phase_add(rsel, "recompute_norm", COST_RECOMPUTE, t_norm);

    double t_fc2_d = gemm_dgrad(x, M, h, f_tp), t_fc2_w = gemm_wgrad(x, M, h, f_tp);
    double t_fc1_d = gemm_dgrad(x, M, up, h), t_fc1_w = gemm_wgrad(x, M, up, h);
    tp_comm(x, bwd, shared ? "shared_tp_all_gather_grad" : "tp_all_gather_grad", COLL_ALL_GATHER, M * h * BF16, t_fc2_d, true, false);
    phase_add(bwd, shared ? "shared_fc2_dgrad" : "fc2_dgrad", kind, t_fc2_d);
    phase_add(bwd, shared ? "shared_fc2_wgrad" : "fc2_wgrad", kind, t_fc2_w);
    phase_add(bwd, shared ? "shared_swiglu_bwd" : "swiglu_bwd", COST_MEMORY_BOUND,
              compute_memory_time(x->hw, M * (2 * up + f_tp) * BF16));
    tp_comm(x, bwd, "tp_all_gather_input", COLL_ALL_GATHER, M * h * BF16, t_fc1_d, true, true);
    phase_add(bwd, shared ? "shared_fc1_dgrad" : "fc1_dgrad", kind, t_fc1_d);
    tp_comm(x, bwd, "tp_reduce_scatter_grad", COLL_REDUCE_SCATTER, M * h * BF16, t_fc1_w, true, true);
    phase_add(bwd, shared ? "shared_fc1_wgrad" : "fc1_wgrad", kind, t_fc1_w);
    if (!shared) phase_add(bwd, "mlp_norm_bwd", COST_MEMORY_BOUND, compute_memory_time(x->hw, 3 * T * h * BF16));
}

/* Megatron pads the vocabulary to a multiple of 128 * TP. */
static double padded_vocab(const SimCtx *x) {
    double unit = 128.0 * x->tp;
    return ceil(x->p->model.vocab / unit) * unit;
}

/* Vocab-parallel embedding: each TP rank looks up the M tokens in its vocab
 * shard, then a reduce-scatter (SP) over TP; backward all-gathers the
 * gradient and scatter-adds it into the fp32 embedding gradient. */
void layer_embedding(const SimCtx *x, Phase *fwd, Phase *bwd) {
    double h = x->p->model.hidden, M = x->m_full;
    phase_clear(fwd);
    phase_clear(bwd);
    phase_add(fwd, "embedding_lookup", COST_EMBED_OUTPUT, compute_memory_time(x->hw, 2 * M * h * BF16));
    tp_comm(x, fwd, "tp_reduce_scatter", COLL_REDUCE_SCATTER, M * h * BF16, 0, false, false);
    tp_comm(x, bwd, "tp_all_gather_grad", COLL_ALL_GATHER, M * h * BF16, 0, false, false);
    /* PyTorch's embedding backward writes a dense bf16 [V/TP, h] gradient,
     * then main_grad (fp32) += it: 2 + (2 + 4 + 4) bytes per table entry */
    double table = padded_vocab(x) / x->tp * h;
    phase_add(bwd, "embedding_grad", COST_EMBED_OUTPUT, compute_memory_time(x->hw, M * h * BF16 + table * 12.0));
}

/* Output layer and vocab-parallel cross-entropy on M rows x V/TP logits:
 * final norm, TP AG, GEMM M x V/TP x h, then Megatron-Core's unfused
 * _VocabParallelCrossEntropy in fp32, pass by pass (bytes per logit):
 *   forward:  .float() copy (read 2, write 4), max (4), subtract max in
 *             place (8), exp in place (8), sum (4), divide by the sum in
 *             place to keep the softmax for the backward (8)  = 38
 *             (+ three small all-reduces over TP)
 *   backward: softmax minus one-hot is in place on a handful of elements;
 *             scale by the loss gradient in place (8), cast back to bf16
 *             for the output GEMMs (read 4, write 2)           = 14
 * then dgrad, wgrad and the TP reduce-scatter. */
#define CE_FWD_BYTES_PER_LOGIT 38.0
#define CE_BWD_BYTES_PER_LOGIT 14.0
void layer_output(const SimCtx *x, Phase *fwd, Phase *bwd) {
    double h = x->p->model.hidden, M = x->m_full, T = x->t_local;
    double v = padded_vocab(x) / x->tp;
    phase_clear(fwd);
    phase_clear(bwd);
    phase_add(fwd, "final_norm", COST_MEMORY_BOUND, compute_memory_time(x->hw, 2 * T * h * BF16));
    double t_gemm = gemm_fwd(x, M, v, h);
    tp_comm(x, fwd, "tp_all_gather", COLL_ALL_GATHER, M * h * BF16, t_gemm, true, false);
    phase_add(fwd, "output_gemm", COST_EMBED_OUTPUT, t_gemm);
    phase_add(fwd, "cross_entropy", COST_EMBED_OUTPUT, compute_memory_time(x->hw, M * v * CE_FWD_BYTES_PER_LOGIT));
    if (x->tp > 1)
        phase_add(fwd, "tp_all_reduce_loss", COST_TP, 3 * comm_time(x->hw, COLL_ALL_REDUCE, &x->g[GROUP_TP], M * 4.0));
    phase_add(bwd, "cross_entropy_bwd", COST_EMBED_OUTPUT, compute_memory_time(x->hw, M * v * CE_BWD_BYTES_PER_LOGIT));
    double t_d = gemm_dgrad(x, M, v, h), t_w = gemm_wgrad(x, M, v, h);
    phase_add(bwd, "output_dgrad", COST_EMBED_OUTPUT, t_d);
    tp_comm(x, bwd, "tp_reduce_scatter_grad", COLL_REDUCE_SCATTER, M * h * BF16, t_w, true, true);
    phase_add(bwd, "output_wgrad", COST_EMBED_OUTPUT, t_w);
    phase_add(bwd, "final_norm_bwd", COST_MEMORY_BOUND, compute_memory_time(x->hw, 3 * T * h * BF16));
}
