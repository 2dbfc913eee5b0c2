/* test_calibrate.cu: measures the figures of a simulator calibration file
 * (simulator/calibration.h, docs/validation.md) on GPU 0 and writes it:
 *
 *   - cuBLAS BF16 GEMM TFLOP/s through kernels/gemm.h's wrapper (the calls
 *     the executor makes) at every GEMM shape of the executor's runs of
 *     scripts/device-validate.sh, seq 4096, mbs 4 (T = 16384 tokens):
 *     Mixtral-8x7B (h 4096, 32 heads / 8 KV groups of 128, expert FFN 14336)
 *     and Mixtral-8x22B (h 6144, 48 heads / 8 KV groups, expert FFN 16384),
 *     8 experts top-2, vocab 32000:
 *       QKV [T, (heads + 2 kv) * 128, h], out proj [T, h, heads * 128],
 *       output layer [T, 32000, h] and the router [T, 8, h], each forward,
 *       dgrad and wgrad (fp32 accumulation into main_grad, beta 1);
 *       experts as grouped GEMMs: EP1 8 experts x 4096 rows (T*2/8) and EP2
 *       4 local experts x 8192 rows (2*T*2/8), fc1 [rows, 2 FFN, h], fc2
 *       [rows, h, FFN], their dgrad and wgrad.
 *     Entries use the simulator's (m, n, k) convention: the product
 *     C[m,n] = A[m,k] B[k,n] of ONE group (wgrad: m = out, n = in, k = rows);
 *     tflops = 2 m n k G / time; c_bytes = bytes per C element as written
 *     (2 bf16, 4 fp32, 8 fp32 accumulated: read + write).
 *   - our flash-attention kernel (kernels/attention.h) forward and backward,
 *     causal, B 4, T 4096, 32 heads / 8 KV heads and 48 / 8, head dim 128,
 *     fused qkv as the executor stores it; FLOPs as the simulator counts
 *     them: forward 2 * (T^2/2) * (128 + 128) * heads * B, backward 2.5x.
 *   - device-to-device copy bandwidth (cudaMemcpyAsync of 512 MiB; bytes read
 *     + written, the simulator's hbm convention).
 *   - with --plan FILE (repeatable): the attention kernels of those plans
 *     (simulator/cal_shapes.h on core/layout.h's ring steps, the shapes the
 *     simulator prices): the CP 1 full-sequence kernel and, for CP > 1,
 *     the ring's diagonal (q 2c x kv 2c causal), earlier-rank (2c x c) and
 *     later-rank (c x 2c) steps, at the plan's heads per GPU x micro-batch
 *     and head dims, through kernels/attention_api.h on each backend of
 *     --attention (cudnn: cuDNN's fused flash attention, loaded at run
 *     time; own: kernels/attention.cu, causal square kernels only).
 *     Layout: q [B, Tq, heads, d_qk], K and V interleaved per token
 *     [B, Tk, kv_heads, d_qk + d_v] (a received K/V buffer of the ring).
 *     One entry per kernel and backend, keyed q_rows, kv_rows, mask,
 *     batch, heads, kv_heads, head_dim, backend: `simulate --calibration`
 *     finds each kernel of those plans at distance 0.  TFLOP/s in the
 *     simulator's FLOPs (cal_shapes.h).
 * Timing: CUDA events around `iters` calls after 3 warm-ups, median of 5
 * repetitions.  Collectives come from test_nccl_bw's JSON (--collectives),
 * copied as they are.  The file is written to FILE.tmp and renamed.
 *
 * usage: test_calibrate --out FILE [--collectives NCCL_JSON] [--quick]
 *                       [--plan PLAN_JSON]... [--attention cudnn|own|cudnn,own]
 *                       [--attention-only] [--list]
 *   --quick: 1 repetition of 1 call (a smoke test, not a calibration)
 *   --plan: also measure that plan's attention kernels (up to 32 plans)
 *   --attention: the backends that measure the plans' kernels (default cudnn)
 *   --attention-only: only the plans' attention kernels (no GEMMs, no copy,
 *     no seq 4096 own-kernel entries)
 *   --list: print the plans' kernels and exit, before any CUDA call (runs
 *     without a GPU)
 *   without --out: the --quick smoke run, nothing written (as the GPU test runners call it) */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA 1   /* the kernels headers declare their CUDA entry points under it */
#endif
#include <cuda_runtime.h>

#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <time.h>
#include <vector>

#include <cjson/cJSON.h>

extern "C" {
#include "core/flops.h"
#include "core/plan.h"
#include "simulator/cal_shapes.h"
}
#include "tests/gpu/gpu_check.h"   /* cudaCheck, cublasCheck */
#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "kernels/gemm.h"


/* seq 4096, mbs 4; the two models' shapes (models/mixtral-8x7b.json, models/mixtral-8x22b.json) */
static const int SEQ = 4096, MBS = 4, T = SEQ * MBS, HD = 128, EXPERTS = 8, TOPK = 2, VOCAB = 32000;
struct Shapes {
    const char *name;
    int h, heads, kvh, ffn;
};
static const Shapes models[] = {{"8x7B", 4096, 32, 8, 14336}, {"8x22B", 6144, 48, 8, 16384}};

static int g_reps = 5, g_iters_max = 10;

/* small pseudo-random bf16 values in [-0.05, 0.05] (real data, not zeros: power draw) */
__global__ void fill_kernel(bf16_t *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 13; x *= 0x5bd1e995u; x ^= x >> 15;
        float f = ((x & 0xffff) / 65535.0f - 0.5f) * 0.1f;
        unsigned u = __float_as_uint(f);
        p[i] = (bf16_t)(u >> 16);
    }
}

template <typename F> static double time_call(cudaStream_t st, int iters, F fn) {
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a));
    cudaCheck(cudaEventCreate(&b));
    for (int i = 0; i < (g_reps > 1 ? 3 : 1); i++) fn();
    std::vector<double> reps;
    for (int r = 0; r < g_reps; r++) {
        cudaCheck(cudaEventRecord(a, st));
        for (int i = 0; i < iters; i++) fn();
        cudaCheck(cudaEventRecord(b, st));
        cudaCheck(cudaEventSynchronize(b));
        float ms = 0;
        cudaCheck(cudaEventElapsedTime(&ms, a, b));
        reps.push_back(ms * 1e-3 / iters);
    }
    cudaCheck(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(reps.begin(), reps.end());
    return reps[reps.size() / 2];
}

/* One plan kernel (cal_shapes.h) on one engine: median forward and
 * backward seconds.  False (with the engine's reason in *why) when the
 * engine cannot run the shape. */
static bool measure_plan_kernel(AttnEngine *e, const CalAttnShape &c, cudaStream_t st, double *fwd_s, double *bwd_s,
                                std::string *why) {
    AttnShape s;
    memset(&s, 0, sizeof s);
    s.B = c.batch, s.Tq = c.q_rows, s.Tk = c.kv_rows, s.nh = c.heads, s.nkv = c.kv_heads;
    s.hd_qk = c.d_qk, s.hd_v = c.d_v, s.mask = c.mask;   /* offsets 0: causal = top-left, as layout.h's steps */
    s.q_stride = c.heads * c.d_qk;
    s.k_stride = s.v_stride = c.kv_heads * (c.d_qk + c.d_v);
    MpError err = {{0}};
    if (attention_prepare(e, &s, &err)) { *why = err.msg; return false; }
    const size_t nq = (size_t)s.B * s.Tq * s.q_stride, nkv = (size_t)s.B * s.Tk * s.k_stride;
    const size_t no = (size_t)s.B * s.Tq * s.nh * s.hd_v, nl = (size_t)s.B * s.nh * s.Tq;
    size_t wsb = std::max(attention_workspace_bytes(e, &s, false), attention_workspace_bytes(e, &s, true));
    bf16_t *q, *kv, *dq, *dkv, *out, *dout;
    float *lse;
    void *ws;
    cudaCheck(cudaMalloc(&q, nq * 2));
    cudaCheck(cudaMalloc(&kv, nkv * 2));
    cudaCheck(cudaMalloc(&dq, nq * 2));
    cudaCheck(cudaMalloc(&dkv, nkv * 2));
    cudaCheck(cudaMalloc(&out, no * 2));
    cudaCheck(cudaMalloc(&dout, no * 2));
    cudaCheck(cudaMalloc(&lse, nl * 4));
    cudaCheck(cudaMalloc(&ws, std::max<size_t>(wsb, 16)));
    fill_kernel<<<1024, 256, 0, st>>>(q, nq, 5u);
    fill_kernel<<<1024, 256, 0, st>>>(kv, nkv, 6u);
    fill_kernel<<<1024, 256, 0, st>>>(dout, no, 7u);
    const bf16_t *k = kv, *v = kv + (size_t)c.kv_heads * c.d_qk;
    bool ok = true;
    /* as many calls per repetition as make about 2 TFLOP (at least 1) */
    int iters = std::max(1, std::min(g_iters_max, (int)(2e12 / c.fwd_flops) + 1));
    *fwd_s = time_call(st, iters, [&] {
        ok = ok && attention_forward(e, &s, out, lse, q, k, v, ws, wsb, st, &err) == 0;
    });
    *bwd_s = time_call(st, iters, [&] {
        ok = ok && attention_backward(e, &s, dq, dkv, dkv + (size_t)c.kv_heads * c.d_qk, dout, q, k, v, out, lse, ws,
                                      wsb, st, &err) == 0;
    });
    if (!ok) *why = err.msg;
    cudaFree(q); cudaFree(kv); cudaFree(dq); cudaFree(dkv); cudaFree(out); cudaFree(dout); cudaFree(lse); cudaFree(ws);
    return ok;
}

struct GemmCase {
    std::string name;
    int groups;          /* 0: plain gemm_cuda; >0: grouped_gemm_cuda */
    GroupedVary vary;
    int M, N, K;         /* per group, gemm.h convention (vary-K: K = rows of one group) */
    int transA, transB;
    int c_f32;
    float beta;
};

#define MAX_PLANS 32
#define MAX_PLAN_KERNELS 63   /* 2 backends x 63 + the 2 seq-4096 own entries = 128, CAL_MAX_ATTENTION */

int main(int argc, char **argv) {
    const char *out_path = NULL, *coll_path = NULL, *attn_list = "cudnn";
    std::vector<const char *> plan_paths;
    bool attention_only = false, list_only = false;
    setvbuf(stdout, NULL, _IOLBF, 0);   /* line by line into the device log, also when a timeout ends the run */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--collectives") && i + 1 < argc) coll_path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) g_reps = 1, g_iters_max = 1;
        else if (!strcmp(argv[i], "--plan") && i + 1 < argc) plan_paths.push_back(argv[++i]);
        else if (!strcmp(argv[i], "--attention") && i + 1 < argc) attn_list = argv[++i];
        else if (!strcmp(argv[i], "--attention-only")) attention_only = true;
        else if (!strcmp(argv[i], "--list")) list_only = true;
        else {
            fprintf(stderr, "usage: test_calibrate --out FILE [--collectives NCCL_JSON] [--quick] [--plan PLAN_JSON]... "
                            "[--attention cudnn|own|cudnn,own] [--attention-only] [--list]\n");
            return 2;
        }
    }
    /* the plans' attention kernels (CPU only: before any CUDA call) */
    if (plan_paths.size() > MAX_PLANS) { fprintf(stderr, "test_calibrate: --plan: more than %d plans\n", MAX_PLANS); return 2; }
    std::vector<CalAttnShape> kernels(MAX_PLAN_KERNELS);
    int nkernels = 0;
    for (const char *path : plan_paths) {
        static Plan plan;
        MpError err = {{0}};
        if (plan_load_file(path, &plan, &err) || cal_attention_shapes_add(&plan, kernels.data(), MAX_PLAN_KERNELS, &nkernels, &err)) {
            fprintf(stderr, "test_calibrate: --plan: %s\n", err.msg);
            return 2;
        }
    }
    std::vector<AttnImpl> impls;
    {
        std::string l = attn_list;
        if (l == "cudnn") impls = {ATTN_IMPL_CUDNN};
        else if (l == "own") impls = {ATTN_IMPL_OWN};
        else if (l == "cudnn,own" || l == "own,cudnn") impls = {ATTN_IMPL_CUDNN, ATTN_IMPL_OWN};
        else { fprintf(stderr, "test_calibrate: --attention: '%s' is not cudnn, own or cudnn,own\n", attn_list); return 2; }
    }
    if (attention_only && plan_paths.empty()) { fprintf(stderr, "test_calibrate: --attention-only: needs --plan\n"); return 2; }
    if (!plan_paths.empty()) {
        printf("test_calibrate: %d attention kernel(s) of %zu plan(s) (core/layout.h's ring steps, cal_shapes.h)\n",
               nkernels, plan_paths.size());
        printf("%-50s %7s %7s %-6s %5s %5s %8s %4s %11s\n", "kernel", "q rows", "kv rows", "mask", "batch", "heads",
               "kv heads", "hd", "fwd GFLOP");
        for (int i = 0; i < nkernels; i++) {
            const CalAttnShape &c = kernels[i];
            printf("%-50s %7d %7d %-6s %5d %5d %8d %4d %11.1f\n", c.name, c.q_rows, c.kv_rows,
                   c.mask == ATTN_MASK_CAUSAL ? "causal" : "none", c.batch, c.heads, c.kv_heads, c.d_qk, c.fwd_flops / 1e9);
        }
    }
    if (list_only) return 0;
    if (!out_path) g_reps = 1, g_iters_max = 1;   /* as a plain GPU test (run-gpu-tests.sh): smoke run, no file */
    int ngpu = 0;
    cudaCheck(cudaGetDeviceCount(&ngpu));
    if (ngpu < 1) { fprintf(stderr, "test_calibrate: no GPU\n"); return 1; }
    cudaCheck(cudaSetDevice(0));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t st;
    cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    GemmHandle gh;
    gemm_handle_init(&gh);

    std::vector<GemmCase> cases;   /* none with --attention-only */
    const int R1 = T * TOPK / EXPERTS, R2 = 2 * T * TOPK / EXPERTS;   /* 4096, 8192 rows per expert */
    for (const Shapes &md : models) {
        if (attention_only) break;
        const int H = md.h, QKV = (md.heads + 2 * md.kvh) * HD, AO = md.heads * HD, FFN = md.ffn;
        std::string p = std::string(md.name) + " ";
        cases.push_back({p + "qkv fwd", 0, GROUPED_VARY_M, T, QKV, H, 0, 1, 0, 0.f});
        cases.push_back({p + "qkv dgrad", 0, GROUPED_VARY_M, T, H, QKV, 0, 0, 0, 0.f});
        cases.push_back({p + "qkv wgrad", 0, GROUPED_VARY_M, QKV, H, T, 1, 0, 1, 1.f});
        cases.push_back({p + "out fwd", 0, GROUPED_VARY_M, T, H, AO, 0, 1, 0, 0.f});
        cases.push_back({p + "out dgrad", 0, GROUPED_VARY_M, T, AO, H, 0, 0, 0, 0.f});
        cases.push_back({p + "out wgrad", 0, GROUPED_VARY_M, H, AO, T, 1, 0, 1, 1.f});
        cases.push_back({p + "router fwd", 0, GROUPED_VARY_M, T, EXPERTS, H, 0, 1, 1, 0.f});
        cases.push_back({p + "output fwd", 0, GROUPED_VARY_M, T, VOCAB, H, 0, 1, 1, 0.f});
        cases.push_back({p + "output dgrad", 0, GROUPED_VARY_M, T, H, VOCAB, 0, 0, 0, 0.f});
        cases.push_back({p + "output wgrad", 0, GROUPED_VARY_M, VOCAB, H, T, 1, 0, 1, 1.f});
        for (int ep = 1; ep <= 2; ep++) {
            int G = EXPERTS / ep, R = ep == 1 ? R1 : R2;
            std::string q = p + "EP" + std::to_string(ep) + " ";
            cases.push_back({q + "fc1 fwd", G, GROUPED_VARY_M, R, 2 * FFN, H, 0, 1, 0, 0.f});
            cases.push_back({q + "fc2 fwd", G, GROUPED_VARY_M, R, H, FFN, 0, 1, 0, 0.f});
            cases.push_back({q + "fc2 dgrad", G, GROUPED_VARY_M, R, FFN, H, 0, 0, 0, 0.f});
            cases.push_back({q + "fc1 dgrad", G, GROUPED_VARY_M, R, H, 2 * FFN, 0, 0, 0, 0.f});
            cases.push_back({q + "fc2 wgrad", G, GROUPED_VARY_K, H, FFN, R, 1, 0, 1, 1.f});
            cases.push_back({q + "fc1 wgrad", G, GROUPED_VARY_K, 2 * FFN, H, R, 1, 0, 1, 1.f});
        }
    }
    /* operand pools sized for the largest case: A [M, K] (or [K, M]) stacked
     * over groups, B one [K, N] per group, C one [M, N] per group (fp32) */
    size_t a_elems = 0, b_elems = 0, c_bytes_max = 0;
    for (const GemmCase &g : cases) {
        size_t G = g.groups > 0 ? g.groups : 1;
        a_elems = std::max(a_elems, G * g.M * g.K);
        b_elems = std::max(b_elems, G * g.K * g.N);
        c_bytes_max = std::max(c_bytes_max, G * g.M * g.N * 4);
    }
    /* the copy test below uses 1 GiB of A (none with --attention-only: 1 element) */
    a_elems = std::max(a_elems, attention_only ? (size_t)1 : ((size_t)1 << 30) / 2);
    b_elems = std::max<size_t>(b_elems, 1);
    c_bytes_max = std::max<size_t>(c_bytes_max, 4);
    bf16_t *A, *B;
    void *C;
    cudaCheck(cudaMalloc(&A, a_elems * 2));
    cudaCheck(cudaMalloc(&B, b_elems * 2));
    cudaCheck(cudaMalloc(&C, c_bytes_max));
    fill_kernel<<<1024, 256, 0, st>>>(A, a_elems, 1u);
    fill_kernel<<<1024, 256, 0, st>>>(B, b_elems, 2u);
    cudaCheck(cudaMemsetAsync(C, 0, c_bytes_max, st));
    cudaCheck(cudaStreamSynchronize(st));

    const int ncases = (int)cases.size();
    std::vector<double> tflops(ncases);
    printf("test_calibrate: %d x %s; GEMMs (cuBLAS BF16 via kernels/gemm.h)%s\n", ngpu, prop.name,
           attention_only ? ": none (--attention-only)" : "");
    if (ncases) printf("%-22s %6s %7s %7s %7s %6s %10s %9s\n", "gemm", "groups", "m", "n", "k", "C B", "time us", "TFLOP/s");
    for (int c = 0; c < ncases; c++) {
        const GemmCase &g = cases[c];
        int G = g.groups > 0 ? g.groups : 1;
        double flops = 2.0 * g.M * g.N * g.K * G;
        int iters = std::max(1, std::min(g_iters_max, (int)(2e12 / flops) + 1));
        std::vector<int32_t> rows(G, g.vary == GROUPED_VARY_M ? g.M : g.K);
        double t = time_call(st, iters, [&] {
            if (g.groups == 0)
                gemm_cuda(&gh, C, g.c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, A, B, g.M, g.N, g.K, g.transA, g.transB, 1.0f,
                          g.beta, st);
            else
                grouped_gemm_cuda(&gh, C, g.c_f32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, A, B, rows.data(), G, g.vary, g.M,
                                  g.N, g.K, g.transA, g.transB, 1.0f, g.beta, st);
        });
        tflops[c] = flops / t / 1e12;
        int cb = g.c_f32 ? (g.beta != 0 ? 8 : 4) : 2;
        printf("%-22s %6d %7d %7d %7d %6d %10.1f %9.1f\n", g.name.c_str(), G, g.M, g.N, g.K, cb, t * 1e6, tflops[c]);
    }

    /* attention per model, fused qkv [B*T, (heads + 2 kv) * 128] as the executor stores it */
    struct AttnResult {
        int heads, kvh;
        double fwd_tf, bwd_tf;
    };
    std::vector<AttnResult> attn;
    for (const Shapes &md : models) {
        if (attention_only) break;
        const int HEADS = md.heads, KVH = md.kvh, QKV = (HEADS + 2 * KVH) * HD;
        bf16_t *qkv, *out, *dout, *dqkv;
        float *lse;
        void *ws;
        const size_t qkv_elems = (size_t)T * QKV, o_elems = (size_t)T * HEADS * HD;
        cudaCheck(cudaMalloc(&qkv, qkv_elems * 2));
        cudaCheck(cudaMalloc(&dqkv, qkv_elems * 2));
        cudaCheck(cudaMalloc(&out, o_elems * 2));
        cudaCheck(cudaMalloc(&dout, o_elems * 2));
        cudaCheck(cudaMalloc(&lse, (size_t)MBS * HEADS * SEQ * 4));
        size_t wsb = attention_backward_workspace_bytes(MBS, SEQ, HEADS, KVH, HD);
        cudaCheck(cudaMalloc(&ws, wsb > 0 ? wsb : 1));
        fill_kernel<<<1024, 256, 0, st>>>(qkv, qkv_elems, 3u);
        fill_kernel<<<1024, 256, 0, st>>>(dout, o_elems, 4u);
        const bf16_t *q = qkv, *k = qkv + HEADS * HD, *v = qkv + (HEADS + KVH) * HD;
        double t_fwd = time_call(st, std::min(g_iters_max, 5), [&] {
            attention_forward_cuda(out, lse, q, k, v, MBS, SEQ, HEADS, KVH, HD, QKV, QKV, st);
        });
        double t_bwd = time_call(st, std::min(g_iters_max, 5), [&] {
            attention_backward_cuda(dqkv, dqkv + HEADS * HD, dqkv + (HEADS + KVH) * HD, ws, dout, q, k, v, out, lse,
                                    MBS, SEQ, HEADS, KVH, HD, QKV, QKV, st);
        });
        double attn_flops = flops_attention_core(flops_attention_pairs(0, SEQ, 0, SEQ, true) * MBS, HEADS, HD, HD);
        double fwd_tf = attn_flops / t_fwd / 1e12, bwd_tf = 2.5 * attn_flops / t_bwd / 1e12;
        printf("attention B %d T %d heads %d/%d hd %d: forward %.1f us %.1f TFLOP/s, backward %.1f us %.1f TFLOP/s\n",
               MBS, SEQ, HEADS, KVH, HD, t_fwd * 1e6, fwd_tf, t_bwd * 1e6, bwd_tf);
        attn.push_back({HEADS, KVH, fwd_tf, bwd_tf});
        cudaFree(qkv);
        cudaFree(dqkv);
        cudaFree(out);
        cudaFree(dout);
        cudaFree(lse);
        cudaFree(ws);
    }

    /* device-to-device copy, 512 MiB from the start of A's pool to 512 MiB
     * further (the pool holds at least 1 GiB) */
    double hbm = 0;   /* GB/s; 0: not measured (--attention-only) */
    if (!attention_only) {
        const size_t copy_bytes = (size_t)512 << 20;
        double t_copy = time_call(st, std::min(g_iters_max, 5), [&] {
            cudaCheck(cudaMemcpyAsync((char *)A + copy_bytes, A, copy_bytes, cudaMemcpyDeviceToDevice, st));
        });
        hbm = 2.0 * copy_bytes / t_copy / 1e9;
        printf("device-to-device copy 512 MiB: %.1f us, %.1f GB/s (read + write)\n", t_copy * 1e6, hbm);
    }
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);

    /* the plans' attention kernels on each backend of --attention: one
     * calibration entry (cal_shapes.h) per kernel the backend runs */
    std::vector<std::string> plan_entries;
    int attn_failed = 0;
    if (nkernels > 0) {
        printf("test_calibrate: the plans' attention kernels (TFLOP/s in the simulator's FLOPs: forward "
               "2*pairs*(d_qk+d_v)*heads*batch, backward 2.5x)\n");
        printf("%-50s %-7s %11s %9s %11s %9s\n", "kernel", "backend", "fwd us", "TFLOP/s", "bwd us", "TFLOP/s");
    }
    for (AttnImpl impl : impls) {
        if (nkernels == 0) break;
        AttnEngine *eng = NULL;
        MpError err = {{0}};
        char note[256] = "";
        const AttnBackend backend = impl == ATTN_IMPL_CUDNN ? ATTN_BACKEND_CUDNN : ATTN_BACKEND_OWN;
        if (attention_engine_create(impl, &eng, note, sizeof note, &err)) {
            printf("%s: cannot be used: %s\n", attn_backend_name(backend), err.msg);
            attn_failed++;
            continue;
        }
        printf("# engine: %s\n", attention_engine_name(eng));
        for (int i = 0; i < nkernels; i++) {
            const CalAttnShape &c = kernels[i];
            double fwd_s = 0, bwd_s = 0;
            std::string why;
            if (!measure_plan_kernel(eng, c, st, &fwd_s, &bwd_s, &why)) {
                /* the own kernel runs causal square kernels only: its skips of
                 * the ring's unmasked steps are expected, any other is a failure */
                bool expected = impl == ATTN_IMPL_OWN && (c.mask != ATTN_MASK_CAUSAL || c.q_rows != c.kv_rows);
                printf("%-50s %-7s skipped: %s\n", c.name, attn_backend_name(backend), why.c_str());
                attn_failed += !expected;
                continue;
            }
            printf("%-50s %-7s %11.1f %9.1f %11.1f %9.1f\n", c.name, attn_backend_name(backend), fwd_s * 1e6,
                   c.fwd_flops / fwd_s / 1e12, bwd_s * 1e6, 2.5 * c.fwd_flops / bwd_s / 1e12);
            char entry[512];
            if (cal_attention_entry_json(&c, backend, fwd_s, bwd_s, entry, sizeof entry, &err)) {
                printf("%s\n", err.msg);
                attn_failed++;
                continue;
            }
            plan_entries.push_back(entry);
        }
        attention_engine_destroy(eng);
    }

    /* collectives from test_nccl_bw */
    cJSON *colls = NULL;
    int nccl_gpus = 0;
    if (coll_path) {
        FILE *f = fopen(coll_path, "rb");
        if (!f) { fprintf(stderr, "test_calibrate: %s: cannot open\n", coll_path); return 2; }
        std::string text;
        char buf[65536];
        size_t nr;
        while ((nr = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, nr);
        fclose(f);
        cJSON *root = cJSON_Parse(text.c_str());
        cJSON *c = root ? cJSON_GetObjectItemCaseSensitive(root, "collectives") : NULL;
        if (!cJSON_IsArray(c)) { fprintf(stderr, "test_calibrate: %s: collectives: expected an array\n", coll_path); return 2; }
        cJSON *gp = cJSON_GetObjectItemCaseSensitive(root, "gpus");
        nccl_gpus = cJSON_IsNumber(gp) ? gp->valueint : 0;
        colls = cJSON_DetachItemFromObjectCaseSensitive(root, "collectives");
        cJSON_Delete(root);
    }

    if (!out_path) {
        cJSON_Delete(colls);
        printf("test_calibrate: smoke run done (no --out: nothing written)\n");
        return attn_failed ? 1 : 0;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    std::string tmp = std::string(out_path) + ".tmp";
    FILE *js = fopen(tmp.c_str(), "w");
    if (!js) { fprintf(stderr, "test_calibrate: %s: cannot write\n", tmp.c_str()); return 1; }
    fprintf(js, "{\"device\": \"%d x %s, device machine, %s\",\n", ngpu, prop.name, date);
    fprintf(js, " \"notes\": \"measured by tests/gpu/test_calibrate%s (%s on GPU 0) and "
                "tests/gpu/test_nccl_bw over %d GPU(s) (collectives); %s; attention of %zu plan(s) (%s)\",\n",
            g_reps == 1 ? " --quick (smoke test, not a calibration)" : "",
            attention_only ? "the plans' attention kernels" : "GEMMs, attention, copy", nccl_gpus,
            "GEMM m,n,k per group, simulator convention; tflops = 2mnk*groups/time", plan_paths.size(), attn_list);
    if (hbm > 0) fprintf(js, " \"hbm_gb_per_s\": %.1f,\n", hbm);
    fprintf(js, " \"gemms\": [");
    for (int c = 0; c < ncases; c++) {
        const GemmCase &g = cases[c];
        int cb = g.c_f32 ? (g.beta != 0 ? 8 : 4) : 2;
        /* simulator convention C[m,n] = A[m,k] B[k,n]: gemm.h's (M, N, K) is the same product */
        fprintf(js, "%s\n  {\"name\": \"%s\", \"groups\": %d, \"m\": %d, \"n\": %d, \"k\": %d, \"c_bytes\": %d, \"tflops\": %.1f}",
                c ? "," : "", g.name.c_str(), g.groups > 0 ? g.groups : 1, g.M, g.N, g.K, cb, tflops[c]);
    }
    fprintf(js, "],\n \"attention\": [");
    for (size_t a = 0; a < attn.size(); a++)
        fprintf(js, "%s\n  {\"seq\": %d, \"batch\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, "
                    "\"mask\": \"causal\", \"backend\": \"own\", \"fwd_tflops\": %.1f, \"bwd_tflops\": %.1f}",
                a ? "," : "", SEQ, MBS, attn[a].heads, attn[a].kvh, HD, attn[a].fwd_tf, attn[a].bwd_tf);
    for (size_t a = 0; a < plan_entries.size(); a++)
        fprintf(js, "%s\n  %s", attn.size() + a ? "," : "", plan_entries[a].c_str());
    fprintf(js, "],\n");
    fprintf(js, " \"collectives\": [");
    int first = 1;
    cJSON *e;
    cJSON_ArrayForEach(e, colls) {
        cJSON *op = cJSON_GetObjectItemCaseSensitive(e, "op"), *gs = cJSON_GetObjectItemCaseSensitive(e, "group_size"),
              *nd = cJSON_GetObjectItemCaseSensitive(e, "nodes"), *by = cJSON_GetObjectItemCaseSensitive(e, "bytes"),
              *bw = cJSON_GetObjectItemCaseSensitive(e, "busbw_gb_per_s");
        if (!cJSON_IsString(op) || !cJSON_IsNumber(gs) || !cJSON_IsNumber(by) || !cJSON_IsNumber(bw)) {
            fprintf(stderr, "test_calibrate: %s: collectives: entry without op/group_size/bytes/busbw_gb_per_s\n", coll_path);
            fclose(js);
            remove(tmp.c_str());
            return 2;
        }
        fprintf(js, "%s\n  {\"op\": \"%s\", \"group_size\": %d, \"nodes\": %d, \"bytes\": %.0f, \"busbw_gb_per_s\": %.2f}",
                first ? "" : ",", op->valuestring, gs->valueint, cJSON_IsNumber(nd) ? nd->valueint : 1, by->valuedouble,
                bw->valuedouble);
        first = 0;
    }
    fprintf(js, "]}\n");
    cJSON_Delete(colls);
    if (fclose(js) || rename(tmp.c_str(), out_path)) {
        fprintf(stderr, "test_calibrate: %s: cannot write\n", out_path);
        return 1;
    }
    printf("test_calibrate: wrote %s (%zu attention entries of the plans)\n", out_path, plan_entries.size());
    gemm_handle_destroy(&gh);
    if (attn_failed) printf("test_calibrate: %d attention kernel(s) or engine(s) failed (above)\n", attn_failed);
    return attn_failed ? 1 : 0;
}
