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
 * Timing: CUDA events around `iters` calls after 3 warm-ups, median of 5
 * repetitions.  Collectives come from test_nccl_bw's JSON (--collectives),
 * copied as they are.  The file is written to FILE.tmp and renamed.
 *
 * usage: test_calibrate --out FILE [--collectives NCCL_JSON] [--quick]
 *   --quick: 1 repetition of 1 call (a smoke test, not a calibration)
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
}
#include "tests/gpu/gpu_check.h"   /* cudaCheck, cublasCheck */
#include "kernels/attention.h"
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

struct GemmCase {
    std::string name;
    int groups;          /* 0: plain gemm_cuda; >0: grouped_gemm_cuda */
    GroupedVary vary;
    int M, N, K;         /* per group, gemm.h convention (vary-K: K = rows of one group) */
    int transA, transB;
    int c_f32;
    float beta;
};

int main(int argc, char **argv) {
    const char *out_path = NULL, *coll_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--collectives") && i + 1 < argc) coll_path = argv[++i];
        else if (!strcmp(argv[i], "--quick")) g_reps = 1, g_iters_max = 1;
        else { fprintf(stderr, "usage: test_calibrate --out FILE [--collectives NCCL_JSON] [--quick]\n"); return 2; }
    }
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

    std::vector<GemmCase> cases;
    const int R1 = T * TOPK / EXPERTS, R2 = 2 * T * TOPK / EXPERTS;   /* 4096, 8192 rows per expert */
    for (const Shapes &md : models) {
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
    a_elems = std::max(a_elems, ((size_t)1 << 30) / 2);   /* the copy test below uses 1 GiB of A */
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
    printf("test_calibrate: %d x %s; GEMMs (cuBLAS BF16 via kernels/gemm.h)\n", ngpu, prop.name);
    printf("%-22s %6s %7s %7s %7s %6s %10s %9s\n", "gemm", "groups", "m", "n", "k", "C B", "time us", "TFLOP/s");
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
    const size_t copy_bytes = (size_t)512 << 20;
    double t_copy = time_call(st, std::min(g_iters_max, 5), [&] {
        cudaCheck(cudaMemcpyAsync((char *)A + copy_bytes, A, copy_bytes, cudaMemcpyDeviceToDevice, st));
    });
    double hbm = 2.0 * copy_bytes / t_copy / 1e9;
    printf("device-to-device copy 512 MiB: %.1f us, %.1f GB/s (read + write)\n", t_copy * 1e6, hbm);

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
        return 0;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    std::string tmp = std::string(out_path) + ".tmp";
    FILE *js = fopen(tmp.c_str(), "w");
    if (!js) { fprintf(stderr, "test_calibrate: %s: cannot write\n", tmp.c_str()); return 1; }
    fprintf(js, "{\"device\": \"%d x %s, device machine, %s\",\n", ngpu, prop.name, date);
    fprintf(js, " \"notes\": \"measured by tests/gpu/test_calibrate%s (GEMMs, attention, copy on GPU 0) and "
                "tests/gpu/test_nccl_bw over %d GPU(s) (collectives); %s\",\n",
            g_reps == 1 ? " --quick (smoke test, not a calibration)" : "", nccl_gpus,
            "GEMM m,n,k per group, simulator convention; tflops = 2mnk*groups/time");
    fprintf(js, " \"hbm_gb_per_s\": %.1f,\n \"gemms\": [", hbm);
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
    printf("test_calibrate: wrote %s\n", out_path);
    gemm_handle_destroy(&gh);
    return 0;
}
