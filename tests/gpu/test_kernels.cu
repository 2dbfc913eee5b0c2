/* test_kernels.cu: every CUDA kernel of kernels/ against its CPU reference,
 * then timings.  Run through scripts/device-kernels.sh on the device machine.
 *
 * Method (METHOD.md): fresh random inputs for every check (rounded to bf16
 * first, so that the CPU reference sees exactly what the GPU sees); outputs
 * poisoned with NaN before the launch, so an unwritten element fails; pass =
 * every element finite, ||out - ref|| / ||ref|| <= 1e-2 (bf16 outputs; 1e-5
 * for fp32 ones from fp32 arithmetic) and, llm.c style, every element within
 * atol + rtol * |ref| with atol = 5e-2 * rms(ref), rtol = 2e-2 (bf16).
 * Prints a table; exit status 1 on any failure.
 *
 * Timings: CUDA events around each launch, 3 warm-ups, median of 20. */
#include "tests/gpu/gpu_check.h"   /* cudaCheck, cublasCheck */
#include "kernels/cuda_util.cuh"
extern "C" {
#include "core/flops.h"
}
#include "kernels/adam.h"
#include "kernels/attention.h"
#include "kernels/crossentropy.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_permute.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <functional>
#include <vector>

struct Rng { uint64_t s; };
static uint32_t rng_u32(Rng *r) { r->s ^= r->s << 13; r->s ^= r->s >> 7; r->s ^= r->s << 17; return (uint32_t)(r->s >> 16); }
static float rng_uniform(Rng *r) { return (rng_u32(r) & 0xffffff) / 16777216.0f; }      /* [0, 1) */
static float rng_sym(Rng *r) { return 2.0f * rng_uniform(r) - 1.0f; }                   /* [-1, 1) */

struct Ctx {
    Rng rng;
    int failures, checks;
    cudaStream_t stream;
    GemmHandle gemm;
};

/* host random tensor, values already bf16-representable */
static std::vector<float> hrand(Ctx *c, size_t n, float scale = 1.0f)
{
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = bf16_round(scale * rng_sym(&c->rng));
    return v;
}
static bf16_t *dbf(const std::vector<float> &h)
{
    std::vector<bf16_t> t(h.size());
    for (size_t i = 0; i < h.size(); i++) t[i] = bf16_from_float(h[i]);
    bf16_t *d;
    cudaCheck(cudaMalloc(&d, std::max<size_t>(t.size(), 1) * 2));
    cudaCheck(cudaMemcpy(d, t.data(), t.size() * 2, cudaMemcpyHostToDevice));
    return d;
}
static float *df32(const std::vector<float> &h)
{
    float *d;
    cudaCheck(cudaMalloc(&d, std::max<size_t>(h.size(), 1) * 4));
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
static int32_t *di32(const std::vector<int32_t> &h)
{
    int32_t *d;
    cudaCheck(cudaMalloc(&d, std::max<size_t>(h.size(), 1) * 4));
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
/* poisoned outputs: all-ones bytes are NaN in both bf16 and fp32, -1 in int32 */
static bf16_t *dbf_poison(size_t n) { bf16_t *d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * 2)); cudaCheck(cudaMemset(d, 0xff, n * 2)); return d; }
static float *df32_poison(size_t n) { float *d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * 4)); cudaCheck(cudaMemset(d, 0xff, n * 4)); return d; }
static int32_t *di32_poison(size_t n) { int32_t *d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * 4)); cudaCheck(cudaMemset(d, 0x7f, n * 4)); return d; }
static std::vector<float> hbf(const bf16_t *d, size_t n)
{
    std::vector<bf16_t> t(n);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(t.data(), d, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = bf16_to_float(t[i]);
    return v;
}
static std::vector<float> hf32(const float *d, size_t n)
{
    std::vector<float> v(n);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost));
    return v;
}
static std::vector<int32_t> hi32(const int32_t *d, size_t n)
{
    std::vector<int32_t> v(n);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost));
    return v;
}

/* bf16 = 1: bf16 output tolerances; 0: fp32 output (tight) */
static void check(Ctx *c, const char *name, const std::vector<float> &out, const std::vector<float> &ref, int bf16_out)
{
    size_t n = ref.size(), nonfinite = 0, bad = 0;
    double num = 0.0, den = 0.0, maxdiff = 0.0;
    for (size_t i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    double rms = n ? sqrt(den / n) : 0.0;
    double atol = bf16_out ? 5e-2 * rms : 1e-5 * rms + 1e-30, rtol = bf16_out ? 2e-2 : 1e-5;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) { nonfinite++; continue; }
        double d = fabs((double)out[i] - ref[i]);
        num += d * d;
        maxdiff = std::max(maxdiff, d);
        double lim = atol + rtol * fabs(ref[i]);
        if (d > lim) bad++;
        if (lim > 0) worst = std::max(worst, d / lim);
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    double rel_tol = bf16_out ? 1e-2 : 1e-5;
    int ok = nonfinite == 0 && bad == 0 && rel <= rel_tol && out.size() == n;
    c->checks++;
    if (!ok) c->failures++;
    printf("| %-40s | %9zu | %9.2e | %9.2e | %7.3f | %6zu | %s |\n", name, n, rel, maxdiff, worst, nonfinite + bad,
           ok ? "pass" : "FAIL");
    fflush(stdout);
}
static void check_i32(Ctx *c, const char *name, const std::vector<int32_t> &out, const std::vector<int32_t> &ref)
{
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); i++) bad += out[i] != ref[i];
    c->checks++;
    if (bad) c->failures++;
    printf("| %-40s | %9zu | %9s | %9s | %7s | %6zu | %s |\n", name, ref.size(), "exact", "-", "-", bad, bad ? "FAIL" : "pass");
    fflush(stdout);
}

/* ---- correctness -------------------------------------------------------- */

static void test_elementwise(Ctx *c)
{
    size_t n = 100003;
    std::vector<float> x(n);
    for (size_t i = 0; i < n; i++) x[i] = 3.0f * rng_sym(&c->rng);   /* not bf16-rounded: tests the rounding */
    float *dx = df32(x);
    bf16_t *db = dbf_poison(n);
    cast_f32_to_bf16_cuda(db, dx, n, c->stream);
    std::vector<float> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = bf16_round(x[i]);
    check(c, "cast f32->bf16 (vs RNE)", hbf(db, n), ref, 0);
    float *dback = df32_poison(n);
    cast_bf16_to_f32_cuda(dback, db, n, c->stream);
    check(c, "cast bf16->f32", hf32(dback, n), ref, 0);

    std::vector<float> a = hrand(c, n), b = hrand(c, n), r(n);
    bf16_t *da = dbf(a), *dbb = dbf(b), *dout = dbf_poison(n);
    residual_forward_cuda(dout, da, dbb, n, c->stream);
    residual_forward_cpu(r.data(), a.data(), b.data(), n);
    check(c, "residual add", hbf(dout, n), r, 1);

    std::vector<float> acc = hrand(c, n), g = hrand(c, n);
    float *dacc = df32(acc);
    bf16_t *dg = dbf(g);
    accumulate_bf16_to_f32_cuda(dacc, dg, n, c->stream);
    scale_f32_cuda(dacc, 0.5f, n, c->stream);
    accumulate_cpu(acc.data(), g.data(), n);
    scale_cpu(acc.data(), 0.5f, n);
    check(c, "accumulate bf16->f32, scale", hf32(dacc, n), acc, 0);
    fill_f32_cuda(dacc, 1.25f, n, c->stream);
    check(c, "fill f32", hf32(dacc, n), std::vector<float>(n, 1.25f), 0);
    fill_bf16_cuda(dout, -2.5f, n, c->stream);
    check(c, "fill bf16", hbf(dout, n), std::vector<float>(n, -2.5f), 0);
    cudaFree(dx); cudaFree(db); cudaFree(dback); cudaFree(da); cudaFree(dbb); cudaFree(dout); cudaFree(dacc); cudaFree(dg);
}

static void test_gemm(Ctx *c)
{
    int M = 192, N = 136, K = 264;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int out32 = 0; out32 < 2; out32++) {
                std::vector<float> A = hrand(c, (size_t)M * K), B = hrand(c, (size_t)K * N), C = hrand(c, (size_t)M * N);
                float beta = out32 ? 1.0f : 0.0f;
                bf16_t *dA = dbf(A), *dB = dbf(B);
                void *dC;
                if (out32) dC = df32(C); else dC = dbf_poison((size_t)M * N);
                gemm_cuda(&c->gemm, dC, out32 ? GEMM_OUT_F32 : GEMM_OUT_BF16, dA, dB, M, N, K, ta, tb, 0.75f, beta, c->stream);
                gemm_cpu(C.data(), A.data(), B.data(), M, N, K, ta, tb, 0.75f, beta);
                char name[64];
                snprintf(name, sizeof name, "gemm tA%d tB%d %s", ta, tb, out32 ? "f32 beta=1" : "bf16");
                check(c, name, out32 ? hf32((float *)dC, (size_t)M * N) : hbf((bf16_t *)dC, (size_t)M * N), C, 1);
                cudaFree(dA); cudaFree(dB); cudaFree(dC);
            }
    /* grouped, both issue paths */
    std::vector<int32_t> rows = {37, 0, 64, 100, 8};
    int G = (int)rows.size(), R = 0;
    for (int r : rows) R += r;
    for (int impl = 0; impl < 2; impl++) {
        c->gemm.grouped_impl = impl ? GROUPED_BATCHED : GROUPED_LOOP;
        /* forward: [R, K] x W_g^T, W [G, N, K] */
        std::vector<float> A = hrand(c, (size_t)R * K), W = hrand(c, (size_t)G * N * K), C((size_t)R * N);
        bf16_t *dA = dbf(A), *dW = dbf(W), *dC = dbf_poison((size_t)R * N);
        grouped_gemm_cuda(&c->gemm, dC, GEMM_OUT_BF16, dA, dW, rows.data(), G, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f, c->stream);
        grouped_gemm_cpu(C.data(), A.data(), W.data(), rows.data(), G, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f);
        check(c, impl ? "grouped gemm vary-M (batched)" : "grouped gemm vary-M (loop)", hbf(dC, (size_t)R * N), C, 1);
        /* wgrad: dW_g [N, K] += dY_g^T X_g, dY [R, N], X [R, K] */
        std::vector<float> dY = hrand(c, (size_t)R * N), gW = hrand(c, (size_t)G * N * K);
        bf16_t *ddY = dbf(dY);
        float *ddW = df32(gW);
        grouped_gemm_cuda(&c->gemm, ddW, GEMM_OUT_F32, ddY, dA, rows.data(), G, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f, c->stream);
        grouped_gemm_cpu(gW.data(), dY.data(), A.data(), rows.data(), G, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f);
        check(c, impl ? "grouped gemm vary-K f32 += (batched)" : "grouped gemm vary-K f32 += (loop)", hf32(ddW, (size_t)G * N * K), gW, 1);
        printf("|   grouped calls so far: %ld loop, %ld batched%s\n", c->gemm.loop_calls, c->gemm.batched_calls,
               c->gemm.batched_unsupported ? " (batched unsupported here)" : "");
        cudaFree(dA); cudaFree(dW); cudaFree(dC); cudaFree(ddY); cudaFree(ddW);
    }
    {   /* the batched call with many groups, some empty (the small-expert case) */
        std::vector<int32_t> many(40);
        int Rm = 0;
        for (int g = 0; g < 40; g++) { many[g] = g % 7 == 3 ? 0 : 5 + (g * 13) % 29; Rm += many[g]; }
        c->gemm.grouped_impl = GROUPED_BATCHED;
        std::vector<float> A = hrand(c, (size_t)Rm * K), W = hrand(c, (size_t)40 * N * K), C((size_t)Rm * N);
        bf16_t *dA = dbf(A), *dW = dbf(W), *dC = dbf_poison((size_t)Rm * N);
        grouped_gemm_cuda(&c->gemm, dC, GEMM_OUT_BF16, dA, dW, many.data(), 40, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f, c->stream);
        grouped_gemm_cpu(C.data(), A.data(), W.data(), many.data(), 40, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f);
        check(c, "grouped gemm vary-M, 40 groups (batched)", hbf(dC, (size_t)Rm * N), C, 1);
        std::vector<float> dY = hrand(c, (size_t)Rm * N), gW = hrand(c, (size_t)40 * N * K);
        bf16_t *ddY = dbf(dY);
        float *ddW = df32(gW);
        grouped_gemm_cuda(&c->gemm, ddW, GEMM_OUT_F32, ddY, dA, many.data(), 40, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f, c->stream);
        grouped_gemm_cpu(gW.data(), dY.data(), A.data(), many.data(), 40, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f);
        check(c, "grouped gemm vary-K f32 +=, 40 groups (batched)", hf32(ddW, (size_t)40 * N * K), gW, 1);
        printf("|   grouped calls so far: %ld loop, %ld batched%s\n", c->gemm.loop_calls, c->gemm.batched_calls,
               c->gemm.batched_unsupported ? " (batched unsupported here)" : "");
        cudaFree(dA); cudaFree(dW); cudaFree(dC); cudaFree(ddY); cudaFree(ddW);
    }
    {   /* GROUPED_STRIDED: equal groups (padded by the caller) are one
         * strided-batched call, forward and wgrad; unequal ones the loop */
        std::vector<int32_t> few = {37, 0, 64, 100, 8};
        c->gemm.grouped_impl = GROUPED_STRIDED;
        long s0 = c->gemm.strided_calls, l0 = c->gemm.loop_calls;
        std::vector<float> A = hrand(c, (size_t)209 * K), W = hrand(c, (size_t)5 * N * K), C((size_t)209 * N);
        bf16_t *dA = dbf(A), *dW = dbf(W), *dC = dbf_poison((size_t)209 * N);
        grouped_gemm_cuda(&c->gemm, dC, GEMM_OUT_BF16, dA, dW, few.data(), 5, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f, c->stream);
        grouped_gemm_cpu(C.data(), A.data(), W.data(), few.data(), 5, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f);
        check(c, "grouped gemm vary-M, 5 unequal groups (strided asked: loop)", hbf(dC, (size_t)209 * N), C, 1);
        const int G16 = 16, r16 = 13, Rm = G16 * r16;
        std::vector<int32_t> same(G16, r16);
        std::vector<float> A2 = hrand(c, (size_t)Rm * K), W2 = hrand(c, (size_t)G16 * N * K), C2((size_t)Rm * N);
        bf16_t *dA2 = dbf(A2), *dW2 = dbf(W2), *dC2 = dbf_poison((size_t)Rm * N);
        for (int tb = 0; tb < 2; tb++) {   /* W_g stored [K, N] or [N, K] */
            grouped_gemm_cuda(&c->gemm, dC2, GEMM_OUT_BF16, dA2, dW2, same.data(), G16, GROUPED_VARY_M, 0, N, K, 0, tb, 1.0f, 0.0f, c->stream);
            grouped_gemm_cpu(C2.data(), A2.data(), W2.data(), same.data(), G16, GROUPED_VARY_M, 0, N, K, 0, tb, 1.0f, 0.0f);
            check(c, tb ? "grouped gemm vary-M transB, 16 equal groups (strided)" : "grouped gemm vary-M, 16 equal groups (strided)",
                  hbf(dC2, (size_t)Rm * N), C2, 1);
        }
        std::vector<float> dY = hrand(c, (size_t)Rm * N), gW = hrand(c, (size_t)G16 * N * K);
        bf16_t *ddY = dbf(dY);
        float *ddW = df32(gW);
        grouped_gemm_cuda(&c->gemm, ddW, GEMM_OUT_F32, ddY, dA2, same.data(), G16, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f, c->stream);
        grouped_gemm_cpu(gW.data(), dY.data(), A2.data(), same.data(), G16, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f);
        check(c, "grouped gemm vary-K f32 +=, 16 equal groups (strided)", hf32(ddW, (size_t)G16 * N * K), gW, 1);
        {   /* padded to a few sizes (multiples of 16 here): a batched call per
             * size held by 2+ groups, a plain call for a size held once, empty
             * groups: nothing (vary M) or C = beta C (vary K) */
            std::vector<int32_t> cls = {16, 32, 0, 16, 48, 32, 16};
            int Gc = (int)cls.size(), Rc = 0;
            for (int r : cls) Rc += r;
            long k0 = c->gemm.class_calls;
            std::vector<float> A3 = hrand(c, (size_t)Rc * K), W3 = hrand(c, (size_t)Gc * N * K), C3((size_t)Rc * N);
            bf16_t *dA3 = dbf(A3), *dW3 = dbf(W3), *dC3 = dbf_poison((size_t)Rc * N);
            grouped_gemm_cuda(&c->gemm, dC3, GEMM_OUT_BF16, dA3, dW3, cls.data(), Gc, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f, c->stream);
            grouped_gemm_cpu(C3.data(), A3.data(), W3.data(), cls.data(), Gc, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f);
            check(c, "grouped gemm vary-M, 7 groups of 4 sizes (batched per size)", hbf(dC3, (size_t)Rc * N), C3, 1);
            std::vector<float> dY3 = hrand(c, (size_t)Rc * N), gW3 = hrand(c, (size_t)Gc * N * K);
            bf16_t *ddY3 = dbf(dY3);
            float *ddW3 = df32(gW3);
            grouped_gemm_cuda(&c->gemm, ddW3, GEMM_OUT_F32, ddY3, dA3, cls.data(), Gc, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f, c->stream);
            grouped_gemm_cpu(gW3.data(), dY3.data(), A3.data(), cls.data(), Gc, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f);
            check(c, "grouped gemm vary-K f32 +=, 7 groups of 4 sizes (batched per size)", hf32(ddW3, (size_t)Gc * N * K), gW3, 1);
            grouped_gemm_cuda(&c->gemm, ddW3, GEMM_OUT_F32, ddY3, dA3, cls.data(), Gc, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 0.0f, c->stream);
            grouped_gemm_cpu(gW3.data(), dY3.data(), A3.data(), cls.data(), Gc, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 0.0f);
            check(c, "grouped gemm vary-K f32 =, 7 groups of 4 sizes, an empty one zeroed", hf32(ddW3, (size_t)Gc * N * K), gW3, 1);
            /* sizes 16 (3 groups), 32 (2): batched; 48: one plain call; per grouped call */
            bool cok = c->gemm.class_calls == k0 + 6;
            printf("%s batched per size: %ld cublasGemmBatchedEx calls for 3 grouped calls (want 6)\n", cok ? "PASS" : "FAIL",
                   c->gemm.class_calls - k0);
            c->checks++;
            if (!cok) c->failures++;
            cudaFree(dA3); cudaFree(dW3); cudaFree(dC3); cudaFree(ddY3); cudaFree(ddW3);
        }
        bool ok = c->gemm.loop_calls == l0 + 1 && c->gemm.strided_calls == s0 + 6;
        printf("%s strided: unequal groups -> loop, equal or padded groups -> strided/batched (%ld loop, %ld strided calls)\n",
               ok ? "PASS" : "FAIL", c->gemm.loop_calls - l0, c->gemm.strided_calls - s0);
        c->checks++;
        if (!ok) c->failures++;
        cudaFree(dA); cudaFree(dW); cudaFree(dC); cudaFree(dA2); cudaFree(dW2); cudaFree(dC2); cudaFree(ddY); cudaFree(ddW);
    }
    c->gemm.grouped_impl = GROUPED_LOOP;
}

static void test_embedding(Ctx *c)
{
    int N = 300, C = 264, V = 50;
    std::vector<float> wte = hrand(c, (size_t)V * C), out((size_t)N * C);
    std::vector<int32_t> tok(N);
    for (auto &t : tok) t = rng_u32(&c->rng) % V;
    for (int t = 0; t < N; t += 7) tok[t] = -1;   /* vocabulary-parallel: row on another rank */
    bf16_t *dw = dbf(wte), *dout = dbf_poison((size_t)N * C);
    int32_t *dt = di32(tok);
    embedding_forward_cuda(dout, dt, dw, N, C, c->stream);
    embedding_forward_cpu(out.data(), tok.data(), wte.data(), N, C);
    check(c, "embedding forward", hbf(dout, (size_t)N * C), out, 1);
    std::vector<float> g = hrand(c, (size_t)N * C), dwte = hrand(c, (size_t)V * C);
    bf16_t *dg = dbf(g);
    float *ddw = df32(dwte);
    embedding_backward_cuda(ddw, dg, dt, N, C, c->stream);
    embedding_backward_cpu(dwte.data(), g.data(), tok.data(), N, C);
    check(c, "embedding backward (dwte +=)", hf32(ddw, (size_t)V * C), dwte, 1);
    cudaFree(dw); cudaFree(dout); cudaFree(dt); cudaFree(dg); cudaFree(ddw);
}

static void test_rmsnorm(Ctx *c, int C)
{
    int N = 333;
    std::vector<float> x = hrand(c, (size_t)N * C), w = hrand(c, C), out((size_t)N * C), rstd(N);
    bf16_t *dx = dbf(x), *dw = dbf(w), *dout = dbf_poison((size_t)N * C);
    float *drstd = df32_poison(N);
    rmsnorm_forward_cuda(dout, drstd, dx, dw, N, C, 1e-5f, c->stream);
    rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    char nm[64];
    snprintf(nm, sizeof nm, "rmsnorm forward out C%d", C);
    check(c, nm, hbf(dout, (size_t)N * C), out, 1);
    check(c, "rmsnorm forward rstd (f32)", hf32(drstd, N), rstd, 1);
    std::vector<float> dy = hrand(c, (size_t)N * C), dinp((size_t)N * C), dwt = hrand(c, C);
    bf16_t *ddy = dbf(dy), *ddinp = dbf_poison((size_t)N * C);
    float *ddw = df32(dwt), *scratch = df32_poison(rmsnorm_backward_scratch_floats(N, C));
    float *drs = df32(rstd);
    rmsnorm_backward_cuda(ddinp, ddw, scratch, ddy, dx, dw, drs, N, C, c->stream);
    rmsnorm_backward_cpu(dinp.data(), dwt.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
    snprintf(nm, sizeof nm, "rmsnorm backward dinp C%d", C);
    check(c, nm, hbf(ddinp, (size_t)N * C), dinp, 1);
    check(c, "rmsnorm backward dweight (+=)", hf32(ddw, C), dwt, 1);
    cudaFree(dx); cudaFree(dw); cudaFree(dout); cudaFree(drstd); cudaFree(ddy); cudaFree(ddinp); cudaFree(ddw); cudaFree(scratch); cudaFree(drs);
}

static void test_rope(Ctx *c, int D, int stride)
{
    int N = 200, H = 6;   /* heads inside a wider row */
    std::vector<float> x = hrand(c, (size_t)N * stride);
    std::vector<int32_t> pos(N);
    for (int t = 0; t < N; t++) pos[t] = (t * 37) % 4096;
    for (int dir = 0; dir < 2; dir++) {
        std::vector<float> ref = x;
        bf16_t *dx = dbf(x);
        int32_t *dp = di32(pos);
        if (dir == 0) { rope_forward_cuda(dx, dp, N, H, D, stride, 1e6f, c->stream); rope_forward_cpu(ref.data(), pos.data(), N, H, D, stride, 1e6f); }
        else { rope_backward_cuda(dx, dp, N, H, D, stride, 1e6f, c->stream); rope_backward_cpu(ref.data(), pos.data(), N, H, D, stride, 1e6f); }
        char nm[64];
        snprintf(nm, sizeof nm, "rope %s D%d stride %d", dir ? "backward" : "forward", D, stride);
        check(c, nm, hbf(dx, (size_t)N * stride), ref, 1);
        cudaFree(dx); cudaFree(dp);
    }
}

static void test_attention(Ctx *c, int B, int T, int nh, int nkv, int hd, int fused)
{
    int qs = fused ? (nh + 2 * nkv) * hd : nh * hd, ks = fused ? (nh + 2 * nkv) * hd : nkv * hd;
    size_t nq = (size_t)B * T * qs, nk = (size_t)B * T * ks, no = (size_t)B * T * nh * hd;
    std::vector<float> qkv = hrand(c, fused ? nq : nq + 2 * nk);
    const float *q = qkv.data(), *k = fused ? q + nh * hd : q + nq, *v = fused ? q + (nh + nkv) * hd : q + nq + nk;
    bf16_t *dqkv = dbf(qkv);
    const bf16_t *dq_in = dqkv, *dk_in = fused ? dqkv + nh * hd : dqkv + nq, *dv_in = fused ? dqkv + (nh + nkv) * hd : dqkv + nq + nk;
    std::vector<float> out(no), lse((size_t)B * nh * T);
    bf16_t *dout = dbf_poison(no);
    float *dlse = df32_poison((size_t)B * nh * T);
    attention_forward_cuda(dout, dlse, dq_in, dk_in, dv_in, B, T, nh, nkv, hd, qs, ks, c->stream);
    attention_forward_cpu(out.data(), lse.data(), q, k, v, B, T, nh, nkv, hd, qs, ks);
    char name[80];
    snprintf(name, sizeof name, "attn fwd out B%d T%d h%d/%d d%d%s", B, T, nh, nkv, hd, fused ? " qkv" : "");
    check(c, name, hbf(dout, no), out, 1);
    snprintf(name, sizeof name, "attn fwd lse B%d T%d h%d/%d d%d", B, T, nh, nkv, hd);
    check(c, name, hf32(dlse, (size_t)B * nh * T), lse, 1);
    /* backward from the CPU's forward results (rounded like the GPU's stores) */
    std::vector<float> dy = hrand(c, no), outr(no);
    for (size_t i = 0; i < no; i++) outr[i] = bf16_round(out[i]);
    size_t ngrad = fused ? nq : nq + 2 * nk;
    std::vector<float> grad(ngrad, 0.0f);
    float *gq = grad.data(), *gk = fused ? gq + nh * hd : gq + nq, *gv = fused ? gq + (nh + nkv) * hd : gq + nq + nk;
    attention_backward_cpu(gq, gk, gv, dy.data(), q, k, v, outr.data(), lse.data(), B, T, nh, nkv, hd, qs, ks);
    bf16_t *ddy = dbf(dy), *dor = dbf(outr), *dgrad = dbf_poison(ngrad);
    float *dl = df32(lse);
    void *ws;
    cudaCheck(cudaMalloc(&ws, attention_backward_workspace_bytes(B, T, nh, nkv, hd)));
    bf16_t *dgq = dgrad, *dgk = fused ? dgrad + nh * hd : dgrad + nq, *dgv = fused ? dgrad + (nh + nkv) * hd : dgrad + nq + nk;
    attention_backward_cuda(dgq, dgk, dgv, ws, ddy, dq_in, dk_in, dv_in, dor, dl, B, T, nh, nkv, hd, qs, ks, c->stream);
    std::vector<float> g = hbf(dgrad, ngrad);
    /* compare dq, dk, dv separately */
    const char *which[3] = {"dq", "dk", "dv"};
    for (int w = 0; w < 3; w++) {
        std::vector<float> o, r;
        int heads = w == 0 ? nh : nkv, stride = w == 0 ? qs : ks;
        size_t off = fused ? (w == 0 ? 0 : w == 1 ? nh * hd : (nh + nkv) * hd) : (w == 0 ? 0 : w == 1 ? nq : nq + nk);
        for (int bt = 0; bt < B * T; bt++)
            for (int i = 0; i < heads * hd; i++) { o.push_back(g[off + (size_t)bt * stride + i]); r.push_back(grad[off + (size_t)bt * stride + i]); }
        snprintf(name, sizeof name, "attn bwd %s B%d T%d h%d/%d d%d%s", which[w], B, T, nh, nkv, hd, fused ? " qkv" : "");
        check(c, name, o, r, 1);
    }
    cudaFree(dqkv); cudaFree(dout); cudaFree(dlse); cudaFree(ddy); cudaFree(dor); cudaFree(dgrad); cudaFree(dl); cudaFree(ws);
}

static void test_router(Ctx *c)
{
    int N = 500, E = 64, k = 6;
    for (int renorm = 0; renorm < 2; renorm++) {
        std::vector<float> logits((size_t)N * E);
        for (auto &l : logits) l = 2.0f * rng_sym(&c->rng);
        std::vector<float> probs((size_t)N * E), tp((size_t)N * k);
        std::vector<int32_t> ti((size_t)N * k);
        float *dl = df32(logits), *dp = df32_poison((size_t)N * E), *dtp = df32_poison((size_t)N * k);
        int32_t *dti = di32_poison((size_t)N * k);
        router_forward_cuda(dp, dti, dtp, dl, N, E, k, renorm, c->stream);
        router_forward_cpu(probs.data(), ti.data(), tp.data(), logits.data(), N, E, k, renorm);
        check(c, "router probs", hf32(dp, (size_t)N * E), probs, 1);
        check_i32(c, renorm ? "router top-k idx (renorm)" : "router top-k idx", hi32(dti, (size_t)N * k), ti);
        check(c, renorm ? "router top-k prob (renorm)" : "router top-k prob", hf32(dtp, (size_t)N * k), tp, 1);
        std::vector<float> dw = hrand(c, (size_t)N * k), dlog((size_t)N * E);
        float *ddw = df32(dw), *ddl = df32_poison((size_t)N * E), *dpr = df32(probs), *dtpr = df32(tp);
        int32_t *dtir = di32(ti);
        router_backward_cuda(ddl, ddw, dpr, dtir, dtpr, N, E, k, renorm, c->stream);
        router_backward_cpu(dlog.data(), dw.data(), probs.data(), ti.data(), tp.data(), N, E, k, renorm);
        check(c, renorm ? "router backward dlogits (renorm)" : "router backward dlogits", hf32(ddl, (size_t)N * E), dlog, 1);
        cudaFree(dl); cudaFree(dp); cudaFree(dtp); cudaFree(dti); cudaFree(ddw); cudaFree(ddl); cudaFree(dpr); cudaFree(dtpr); cudaFree(dtir);
    }
}

static std::vector<int32_t> random_topk(Ctx *c, int N, int k, int E)
{
    std::vector<int32_t> t((size_t)N * k);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            int e, dup;
            do {
                e = (int)(rng_u32(&c->rng) % E);
                dup = 0;
                for (int m = 0; m < j; m++) dup |= t[(size_t)i * k + m] == e;
            } while (dup);
            t[(size_t)i * k + j] = e;
        }
    return t;
}

static void test_moe(Ctx *c)
{
    int N = 700, k = 2, E = 8;
    for (int cap = 0; cap < 2; cap++) {
        int C = cap ? 262 : 264;   /* scalar and 16-byte paths */
        int capacity = cap ? 150 : 0;   /* ~175 per expert on average: some drop */
        std::vector<int32_t> topk = random_topk(c, N, k, E), row(N * k), cnt(E);
        int rows = moe_plan_cpu(row.data(), cnt.data(), topk.data(), N, k, E, capacity);
        int32_t *dtopk = di32(topk), *drow = di32_poison(N * k), *dcnt = di32_poison(E);
        moe_plan_cuda(drow, dcnt, dtopk, N, k, E, capacity, c->stream);
        check_i32(c, cap ? "moe plan row map (capacity)" : "moe plan row map (dropless)", hi32(drow, N * k), row);
        check_i32(c, cap ? "moe plan expert counts (capacity)" : "moe plan expert counts", hi32(dcnt, E), cnt);
        std::vector<float> x = hrand(c, (size_t)N * C), px((size_t)rows * C);
        bf16_t *dx = dbf(x), *dpx = dbf_poison((size_t)rows * C);
        moe_permute_forward_cuda(dpx, dx, drow, N, k, C, c->stream);
        moe_permute_forward_cpu(px.data(), x.data(), row.data(), N, k, C);
        check(c, "moe permute forward", hbf(dpx, (size_t)rows * C), px, 1);
        std::vector<float> dpy = hrand(c, (size_t)rows * C), dxr((size_t)N * C);
        bf16_t *ddpy = dbf(dpy), *ddx = dbf_poison((size_t)N * C);
        moe_permute_backward_cuda(ddx, ddpy, drow, N, k, C, c->stream);
        moe_permute_backward_cpu(dxr.data(), dpy.data(), row.data(), N, k, C);
        check(c, "moe permute backward", hbf(ddx, (size_t)N * C), dxr, 1);
        std::vector<float> ex = hrand(c, (size_t)rows * C), prob((size_t)N * k), y((size_t)N * C);
        for (auto &p : prob) p = rng_uniform(&c->rng);
        bf16_t *dex = dbf(ex), *dy = dbf_poison((size_t)N * C);
        float *dprob = df32(prob);
        moe_unpermute_forward_cuda(dy, dex, dprob, drow, N, k, C, c->stream);
        moe_unpermute_forward_cpu(y.data(), ex.data(), prob.data(), row.data(), N, k, C);
        check(c, "moe unpermute forward", hbf(dy, (size_t)N * C), y, 1);
        std::vector<float> gy = hrand(c, (size_t)N * C), gex((size_t)rows * C), gp((size_t)N * k);
        bf16_t *dgy = dbf(gy), *dgex = dbf_poison((size_t)rows * C);
        float *dgp = df32_poison((size_t)N * k);
        moe_unpermute_backward_cuda(dgex, dgp, dgy, dex, dprob, drow, N, k, C, c->stream);
        moe_unpermute_backward_cpu(gex.data(), gp.data(), gy.data(), ex.data(), prob.data(), row.data(), N, k, C);
        check(c, "moe unpermute backward dinp", hbf(dgex, (size_t)rows * C), gex, 1);
        check(c, "moe unpermute backward dprob", hf32(dgp, (size_t)N * k), gp, 1);
        cudaFree(dtopk); cudaFree(drow); cudaFree(dcnt); cudaFree(dx); cudaFree(dpx); cudaFree(ddpy); cudaFree(ddx);
        cudaFree(dex); cudaFree(dy); cudaFree(dprob); cudaFree(dgy); cudaFree(dgex); cudaFree(dgp);
    }
    int n = 400, C2 = 100;
    std::vector<float> x = hrand(c, (size_t)n * C2), y((size_t)n * C2);
    std::vector<int32_t> src(n);
    for (int i = 0; i < n; i++) src[i] = (i * 7 + 3) % n;
    bf16_t *dx = dbf(x), *dy = dbf_poison((size_t)n * C2);
    int32_t *ds = di32(src);
    gather_rows_cuda(dy, dx, ds, n, C2, c->stream);
    gather_rows_cpu(y.data(), x.data(), src.data(), n, C2);
    check(c, "gather rows", hbf(dy, (size_t)n * C2), y, 1);
    cudaFree(dx); cudaFree(dy); cudaFree(ds);
}

/* vocabulary-parallel cross-entropy over P = 2 slices of V against the
 * full-row CPU reference: losses and d logits of each slice */
static void test_ce_vocab_parallel(Ctx *c)
{
    const int R = 129, V = 1000, P = 2, Vl = V / P;
    std::vector<float> logits = hrand(c, (size_t)R * V, 4.0f), loss(R), dlog((size_t)R * V);
    std::vector<int32_t> tgt(R);
    for (int i = 0; i < R; i++) tgt[i] = (int)(rng_u32(&c->rng) % V);
    crossentropy_forward_cpu(loss.data(), logits.data(), tgt.data(), R, V);
    crossentropy_backward_cpu(dlog.data(), logits.data(), tgt.data(), 1.0f / R, R, V);
    std::vector<float> all((size_t)P * R * 3);
    bf16_t *dl[P];
    int32_t *dt[P];
    for (int p = 0; p < P; p++) {
        std::vector<float> slice((size_t)R * Vl);
        std::vector<int32_t> tl(R);
        for (int r = 0; r < R; r++) {
            for (int v = 0; v < Vl; v++) slice[(size_t)r * Vl + v] = logits[(size_t)r * V + p * Vl + v];
            int t = tgt[r] - p * Vl;
            tl[r] = t >= 0 && t < Vl ? t : -1;
        }
        dl[p] = dbf(slice);
        dt[p] = di32(tl);
        float *st = df32_poison((size_t)R * 3);
        crossentropy_vp_stats_cuda(st, dl[p], dt[p], R, Vl, c->stream);
        std::vector<float> h = hf32(st, (size_t)R * 3);
        std::copy(h.begin(), h.end(), all.begin() + (size_t)p * R * 3);
        cudaFree(st);
    }
    float *dall = df32(all);
    for (int p = 0; p < P; p++) {
        float *dloss = df32_poison(R);
        crossentropy_vp_finish_cuda(dloss, dl[p], dl[p], dt[p], dall, P, 1.0f / R, R, Vl, c->stream);   /* in place */
        check(c, "vocab-parallel cross-entropy loss", hf32(dloss, R), loss, 1);
        std::vector<float> ref((size_t)R * Vl);
        for (int r = 0; r < R; r++)
            for (int v = 0; v < Vl; v++) ref[(size_t)r * Vl + v] = dlog[(size_t)r * V + p * Vl + v];
        check(c, "vocab-parallel cross-entropy dlogits (slice, in place)", hbf(dl[p], (size_t)R * Vl), ref, 1);
        cudaFree(dloss); cudaFree(dl[p]); cudaFree(dt[p]);
    }
    cudaFree(dall);
}

static void test_swiglu_ce_adam(Ctx *c)
{
    for (int F = 700; F <= 704; F += 4) {   /* scalar, 16-byte */
    int N = 300;
    std::vector<float> gu = hrand(c, (size_t)N * 2 * F, 3.0f), y((size_t)N * F);
    bf16_t *dgu = dbf(gu), *dy = dbf_poison((size_t)N * F);
    swiglu_forward_cuda(dy, dgu, N, F, c->stream);
    swiglu_forward_cpu(y.data(), gu.data(), N, F);
    char nm[64];
    snprintf(nm, sizeof nm, "swiglu forward F%d", F);
    check(c, nm, hbf(dy, (size_t)N * F), y, 1);
    std::vector<float> g = hrand(c, (size_t)N * F), dgur((size_t)N * 2 * F);
    bf16_t *dg = dbf(g), *ddgu = dbf_poison((size_t)N * 2 * F);
    swiglu_backward_cuda(ddgu, dg, dgu, N, F, c->stream);
    swiglu_backward_cpu(dgur.data(), g.data(), gu.data(), N, F);
    snprintf(nm, sizeof nm, "swiglu backward F%d", F);
    check(c, nm, hbf(ddgu, (size_t)N * 2 * F), dgur, 1);
    cudaFree(dgu); cudaFree(dy); cudaFree(dg); cudaFree(ddgu);
    }

    for (int V = 1001; V <= 32000; V += 30999) {   /* scalar, 16-byte */
    int R = 257;
    std::vector<float> logits = hrand(c, (size_t)R * V, 4.0f), loss(R), dlog((size_t)R * V);
    std::vector<int32_t> tgt(R);
    for (int i = 0; i < R; i++) tgt[i] = i % 17 == 5 ? -1 : (int)(rng_u32(&c->rng) % V);
    bf16_t *dl = dbf(logits);
    int32_t *dt = di32(tgt);
    float *dloss = df32_poison(R);
    crossentropy_forward_cuda(dloss, dl, dt, R, V, c->stream);
    crossentropy_forward_cpu(loss.data(), logits.data(), tgt.data(), R, V);
    char cn[64];
    snprintf(cn, sizeof cn, "cross-entropy forward V%d", V);
    check(c, cn, hf32(dloss, R), loss, 1);
    crossentropy_backward_cpu(dlog.data(), logits.data(), tgt.data(), 1.0f / R, R, V);
    /* scale dlogits so the check sees values near 1 (they are ~1/(R V)) */
    cudaCheck(cudaMemset(dloss, 0xff, R * 4));
    crossentropy_fused_cuda(dl, dloss, dl, dt, 1.0f / R, R, V, c->stream);   /* in place */
    snprintf(cn, sizeof cn, "cross-entropy fused loss V%d", V);
    check(c, cn, hf32(dloss, R), loss, 1);
    snprintf(cn, sizeof cn, "cross-entropy fused dlogits V%d in place", V);
    check(c, cn, hbf(dl, (size_t)R * V), dlog, 1);
    cudaFree(dl); cudaFree(dt); cudaFree(dloss);
    }

    size_t n = 1000003;
    std::vector<float> p = hrand(c, n), m = hrand(c, n, 0.01f), v(n), gr = hrand(c, n);
    for (auto &x : v) x = 1e-4f * rng_uniform(&c->rng);
    AdamParams ap = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7, 0.5f};
    float *dp = df32(p), *dm = df32(m), *dv = df32(v), *dgr = df32(gr);
    bf16_t *dpb = dbf_poison(n);
    adam_update_cuda(dp, dpb, dm, dv, dgr, n, &ap, c->stream);
    adam_update_cpu(p.data(), m.data(), v.data(), gr.data(), n, &ap);
    check(c, "adam param (f32)", hf32(dp, n), p, 0);
    check(c, "adam m (f32)", hf32(dm, n), m, 0);
    check(c, "adam v (f32)", hf32(dv, n), v, 0);
    std::vector<float> pb(n);
    for (size_t i = 0; i < n; i++) pb[i] = bf16_round(p[i]);
    check(c, "adam bf16 copy", hbf(dpb, n), pb, 1);
    /* again from element 1: pointers not 16-byte aligned take the scalar kernel */
    adam_update_cuda(dp + 1, dpb + 1, dm + 1, dv + 1, dgr + 1, n - 1, &ap, c->stream);
    adam_update_cpu(p.data() + 1, m.data() + 1, v.data() + 1, gr.data() + 1, n - 1, &ap);
    check(c, "adam param (f32), unaligned", hf32(dp, n), p, 0);
    check(c, "adam v (f32), unaligned", hf32(dv, n), v, 0);
    for (size_t i = 0; i < n; i++) pb[i] = bf16_round(p[i]);
    check(c, "adam bf16 copy, unaligned", hbf(dpb, n), pb, 1);
    float *dns;
    cudaCheck(cudaMalloc(&dns, 4));
    cudaCheck(cudaMemset(dns, 0, 4));
    norm_squared_cuda(dns, dgr, n, c->stream);
    check(c, "norm squared", hf32(dns, 1), std::vector<float>(1, (float)norm_squared_cpu(gr.data(), n)), 1);
    cudaFree(dp); cudaFree(dm); cudaFree(dv); cudaFree(dgr); cudaFree(dpb); cudaFree(dns);
}

/* ---- timings ------------------------------------------------------------ */

static double time_ms(Ctx *c, const std::function<void()> &fn, int reps = 20)
{
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a));
    cudaCheck(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) fn();
    cudaCheck(cudaStreamSynchronize(c->stream));
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        cudaCheck(cudaEventRecord(a, c->stream));
        fn();
        cudaCheck(cudaEventRecord(b, c->stream));
        cudaCheck(cudaEventSynchronize(b));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    cudaCheck(cudaGetLastError());
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[t.size() / 2];
}

static bf16_t *drand_bf16(Ctx *c, size_t n)
{
    float *tmp;
    cudaCheck(cudaMalloc(&tmp, n * 4));
    std::vector<float> h(1 << 20);
    for (auto &x : h) x = rng_sym(&c->rng);
    for (size_t o = 0; o < n; o += h.size())
        cudaCheck(cudaMemcpy(tmp + o, h.data(), std::min(h.size(), n - o) * 4, cudaMemcpyHostToDevice));
    bf16_t *d;
    cudaCheck(cudaMalloc(&d, n * 2));
    cast_f32_to_bf16_cuda(d, tmp, n, c->stream);
    cudaCheck(cudaStreamSynchronize(c->stream));
    cudaFree(tmp);
    return d;
}

static void row_tflops(const char *name, double ms, double flops)
{
    printf("| %-52s | %9.3f | %8.1f TFLOP/s |\n", name, ms, flops / ms / 1e9);
}
static void row_gbs(const char *name, double ms, double bytes)
{
    printf("| %-52s | %9.3f | %8.0f GB/s    |\n", name, ms, bytes / ms / 1e6);
}

static void timings(Ctx *c)
{
    printf("\n| timing (median of 20, CUDA events)                   |   ms      | rate             |\n");
    printf("|------------------------------------------------------|-----------|------------------|\n");
    {   /* dense GEMMs */
        int M = 8192, N = 8192, K = 8192;
        bf16_t *A = drand_bf16(c, (size_t)M * K), *B = drand_bf16(c, (size_t)K * N), *C = drand_bf16(c, (size_t)M * N);
        double ms = time_ms(c, [&] { gemm_cuda(&c->gemm, C, GEMM_OUT_BF16, A, B, M, N, K, 0, 1, 1.0f, 0.0f, c->stream); });
        row_tflops("gemm 8192x8192x8192 bf16 (ceiling)", ms, 2.0 * M * N * K);
        cudaFree(A); cudaFree(B); cudaFree(C);
        M = 4096; N = 14336; K = 4096;
        A = drand_bf16(c, (size_t)M * K); B = drand_bf16(c, (size_t)N * K); C = drand_bf16(c, (size_t)M * N);
        ms = time_ms(c, [&] { gemm_cuda(&c->gemm, C, GEMM_OUT_BF16, A, B, M, N, K, 0, 1, 1.0f, 0.0f, c->stream); });
        row_tflops("gemm fwd 4096x14336x4096 (x W^T)", ms, 2.0 * M * N * K);
        bf16_t *X = drand_bf16(c, (size_t)M * N);
        ms = time_ms(c, [&] { gemm_cuda(&c->gemm, A, GEMM_OUT_BF16, X, B, M, K, N, 0, 0, 1.0f, 0.0f, c->stream); });
        row_tflops("gemm dgrad 4096x4096x14336 (dy W)", ms, 2.0 * M * N * K);
        float *W32;
        cudaCheck(cudaMalloc(&W32, (size_t)N * K * 4));
        cudaCheck(cudaMemset(W32, 0, (size_t)N * K * 4));
        ms = time_ms(c, [&] { gemm_cuda(&c->gemm, W32, GEMM_OUT_F32, X, A, N, K, M, 1, 0, 1.0f, 1.0f, c->stream); });
        row_tflops("gemm wgrad 14336x4096x4096 f32 += (dy^T x)", ms, 2.0 * M * N * K);
        cudaFree(A); cudaFree(B); cudaFree(C); cudaFree(X); cudaFree(W32);
    }
    {   /* Qwen3-30B-A3B expert GEMMs: 128 experts x ~1024 rows (1000..1062,
         * as a router hands them out), h 2048, 2F 1536, F 768; each of the
         * six expert GEMMs of a layer (fc1/fc2 forward, dgrad, wgrad f32 +=)
         * one call per expert (loop) and one grouped batched call; then one
         * strided-batched call over rows padded to the largest group (the
         * shape cuBLAS runs best: what a padded layout would give) */
        int G = 128, H = 2048, F = 768, F2 = 2 * F, R = 0, Rmax = 0;
        std::vector<int32_t> rows(G);
        for (int g = 0; g < G; g++) { rows[g] = 1000 + (g * 37) % 63; R += rows[g]; Rmax = std::max(Rmax, rows[g]); }
        Rmax = (Rmax + 7) / 8 * 8;   /* buffers hold the padded groups too */
        bf16_t *X = drand_bf16(c, (size_t)G * Rmax * H), *W1 = drand_bf16(c, (size_t)G * F2 * H),
               *Y = drand_bf16(c, (size_t)G * Rmax * F2), *W2 = drand_bf16(c, (size_t)G * H * F),
               *Aa = drand_bf16(c, (size_t)G * Rmax * F), *O = drand_bf16(c, (size_t)G * Rmax * H);
        float *dW1, *dW2;
        cudaCheck(cudaMalloc(&dW1, (size_t)G * F2 * H * 4));
        cudaCheck(cudaMalloc(&dW2, (size_t)G * H * F * 4));
        cudaCheck(cudaMemset(dW1, 0, (size_t)G * F2 * H * 4));
        cudaCheck(cudaMemset(dW2, 0, (size_t)G * H * F * 4));
        double f1 = 2.0 * R * F2 * H, f2 = 2.0 * R * F * H;
        double total[3] = {0, 0, 0};
        std::vector<int32_t> padded(G, Rmax);   /* what the dispatcher's padded groups give */
        int Rp = padded[0];
        for (int impl = 0; impl < 3; impl++) {
            c->gemm.grouped_impl = impl == 0 ? GROUPED_LOOP : impl == 1 ? GROUPED_BATCHED : GROUPED_STRIDED;
            const int32_t *rw = impl == 2 ? padded.data() : rows.data();
            const char *tag = impl == 0 ? "loop" : impl == 1 ? "batched" : "strided, padded";
            char name[96];
            double ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, Y, GEMM_OUT_BF16, X, W1, rw, G, GROUPED_VARY_M, 0, F2, H, 0, 1, 1.0f, 0.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc1 fwd 128x[~1024,2048]x[2048,1536] %s", tag); row_tflops(name, ms, f1); total[impl] += ms;
            ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, O, GEMM_OUT_BF16, Aa, W2, rw, G, GROUPED_VARY_M, 0, H, F, 0, 1, 1.0f, 0.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc2 fwd 128x[~1024,768]x[768,2048] %s", tag); row_tflops(name, ms, f2); total[impl] += ms;
            ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, Aa, GEMM_OUT_BF16, O, W2, rw, G, GROUPED_VARY_M, 0, F, H, 0, 0, 1.0f, 0.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc2 dgrad %s", tag); row_tflops(name, ms, f2); total[impl] += ms;
            ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, dW2, GEMM_OUT_F32, O, Aa, rw, G, GROUPED_VARY_K, H, F, 0, 1, 0, 1.0f, 1.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc2 wgrad f32 += %s", tag); row_tflops(name, ms, f2); total[impl] += ms;
            ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, X, GEMM_OUT_BF16, Y, W1, rw, G, GROUPED_VARY_M, 0, H, F2, 0, 0, 1.0f, 0.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc1 dgrad %s", tag); row_tflops(name, ms, f1); total[impl] += ms;
            ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, dW1, GEMM_OUT_F32, Y, X, rw, G, GROUPED_VARY_K, F2, H, 0, 1, 0, 1.0f, 1.0f, c->stream); }, 10);
            snprintf(name, sizeof name, "qwen3 fc1 wgrad f32 += %s", tag); row_tflops(name, ms, f1); total[impl] += ms;
            snprintf(name, sizeof name, "qwen3 six expert GEMMs of a layer, %s%s", tag,
                     impl == 1 && c->gemm.batched_unsupported ? " (unsupported: loop)" : "");
            row_tflops(name, total[impl], 3 * (f1 + f2));
        }
        printf("|   (useful FLOPs: %d rows; strided ran %d x %d = %d rows)\n", R, G, Rp, G * Rp);
        c->gemm.grouped_impl = GROUPED_LOOP;
        cudaFree(X); cudaFree(W1); cudaFree(Y); cudaFree(W2); cudaFree(Aa); cudaFree(O); cudaFree(dW1); cudaFree(dW2);
    }
    {   /* Mixtral expert GEMMs: 8 experts x 2048 rows, h 4096, F 14336 */
        int G = 8, rows_per = 2048, H = 4096, F = 14336, R = G * rows_per;
        std::vector<int32_t> rows(G, rows_per);
        bf16_t *X = drand_bf16(c, (size_t)R * H), *W1 = drand_bf16(c, (size_t)G * 2 * F * H), *Y = drand_bf16(c, (size_t)R * 2 * F);
        double flops = 2.0 * R * 2 * F * H;
        for (int impl = 0; impl < 2; impl++) {
            c->gemm.grouped_impl = impl ? GROUPED_BATCHED : GROUPED_LOOP;
            double ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, Y, GEMM_OUT_BF16, X, W1, rows.data(), G, GROUPED_VARY_M, 0, 2 * F, H, 0, 1, 1.0f, 0.0f, c->stream); }, 10);
            row_tflops(impl ? (c->gemm.batched_unsupported ? "grouped fc1 fwd (batched unsupported: loop)" : "grouped fc1 fwd 8x[2048,4096]x[4096,28672] batched") : "grouped fc1 fwd 8x[2048,4096]x[4096,28672] loop", ms, flops);
        }
        c->gemm.grouped_impl = GROUPED_LOOP;
        bf16_t *W2 = drand_bf16(c, (size_t)G * H * F), *Hh = drand_bf16(c, (size_t)R * F), *O = drand_bf16(c, (size_t)R * H);
        double ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, O, GEMM_OUT_BF16, Hh, W2, rows.data(), G, GROUPED_VARY_M, 0, H, F, 0, 1, 1.0f, 0.0f, c->stream); }, 10);
        row_tflops("grouped fc2 fwd 8x[2048,14336]x[14336,4096] loop", ms, 2.0 * R * F * H);
        float *dW;
        cudaCheck(cudaMalloc(&dW, (size_t)G * 2 * F * H * 4));
        cudaCheck(cudaMemset(dW, 0, (size_t)G * 2 * F * H * 4));
        ms = time_ms(c, [&] { grouped_gemm_cuda(&c->gemm, dW, GEMM_OUT_F32, Y, X, rows.data(), G, GROUPED_VARY_K, 2 * F, H, 0, 1, 0, 1.0f, 1.0f, c->stream); }, 10);
        row_tflops("grouped fc1 wgrad f32 += loop", ms, flops);
        cudaFree(X); cudaFree(W1); cudaFree(Y); cudaFree(W2); cudaFree(Hh); cudaFree(O); cudaFree(dW);
    }
    {   /* attention B1 T4096 nh32 nkv8 hd128, fused qkv layout */
        int B = 1, T = 4096, nh = 32, nkv = 8, hd = 128, st = (nh + 2 * nkv) * hd;
        bf16_t *qkv = drand_bf16(c, (size_t)B * T * st), *out = drand_bf16(c, (size_t)B * T * nh * hd), *dout = drand_bf16(c, (size_t)B * T * nh * hd);
        bf16_t *dqkv = drand_bf16(c, (size_t)B * T * st);
        float *lse;
        cudaCheck(cudaMalloc(&lse, (size_t)B * nh * T * 4));
        void *ws;
        cudaCheck(cudaMalloc(&ws, attention_backward_workspace_bytes(B, T, nh, nkv, hd)));
        double fwd_flops = flops_attention_core(flops_attention_pairs(0, T, 0, T, true) * B, nh, hd, hd);
        double msf = time_ms(c, [&] { attention_forward_cuda(out, lse, qkv, qkv + nh * hd, qkv + (nh + nkv) * hd, B, T, nh, nkv, hd, st, st, c->stream); });
        row_tflops("attention fwd B1 T4096 h32/8 d128 causal", msf, fwd_flops);
        double msb = time_ms(c, [&] { attention_backward_cuda(dqkv, dqkv + nh * hd, dqkv + (nh + nkv) * hd, ws, dout, qkv, qkv + nh * hd, qkv + (nh + nkv) * hd, out, lse, B, T, nh, nkv, hd, st, st, c->stream); });
        row_tflops("attention bwd (2.5x fwd FLOPs)", msb, 2.5 * fwd_flops);
        row_tflops("attention fwd+bwd", msf + msb, 3.5 * fwd_flops);
        cudaFree(qkv); cudaFree(out); cudaFree(dout); cudaFree(dqkv); cudaFree(lse); cudaFree(ws);
    }
    {   /* memory-bound kernels; bytes = each input read once + each output written once */
        int N = 16384, C = 4096;
        size_t n = (size_t)N * C;
        bf16_t *x = drand_bf16(c, n), *y = drand_bf16(c, n), *w = drand_bf16(c, C), *z = drand_bf16(c, n);
        float *rstd, *scratch, *dw;
        cudaCheck(cudaMalloc(&rstd, N * 4));
        cudaCheck(cudaMalloc(&scratch, rmsnorm_backward_scratch_floats(N, C) * 4));
        cudaCheck(cudaMalloc(&dw, C * 4));
        double ms = time_ms(c, [&] { rmsnorm_forward_cuda(y, rstd, x, w, N, C, 1e-5f, c->stream); });
        row_gbs("rmsnorm fwd [16384,4096]", ms, 2.0 * n * 2);
        ms = time_ms(c, [&] { rmsnorm_backward_cuda(z, dw, scratch, y, x, w, rstd, N, C, c->stream); });
        row_gbs("rmsnorm bwd [16384,4096]", ms, 3.0 * n * 2);
        ms = time_ms(c, [&] { residual_forward_cuda(z, x, y, n, c->stream); });
        row_gbs("residual add [16384,4096]", ms, 3.0 * n * 2);
        std::vector<int32_t> pos(N);
        for (int t = 0; t < N; t++) pos[t] = t % 4096;
        int32_t *dpos = di32(pos);
        ms = time_ms(c, [&] { rope_forward_cuda(x, dpos, N, 32, 128, 4096, 1e6f, c->stream); });
        row_gbs("rope fwd [16384,32,128]", ms, 2.0 * n * 2);
        /* permute / unpermute: 8192 tokens, top-2, 8 experts */
        int T = 8192, k = 2, E = 8;
        Ctx *cc = c;
        std::vector<int32_t> topk = random_topk(cc, T, k, E);
        int32_t *dtopk = di32(topk), *drow, *dcnt;
        cudaCheck(cudaMalloc(&drow, T * k * 4));
        cudaCheck(cudaMalloc(&dcnt, E * 4));
        ms = time_ms(c, [&] { moe_plan_cuda(drow, dcnt, dtopk, T, k, E, 0, c->stream); });
        row_tflops("moe plan 8192x2 -> 8 experts (rate n/a)", ms, 0);
        float *prob;
        cudaCheck(cudaMalloc(&prob, T * k * 4));
        fill_f32_cuda(prob, 0.5f, T * k, c->stream);
        ms = time_ms(c, [&] { moe_permute_forward_cuda(z, x, drow, T, k, C, c->stream); });
        row_gbs("moe permute fwd [8192,4096] top-2", ms, 3.0 * T * C * 2);
        ms = time_ms(c, [&] { moe_unpermute_forward_cuda(y, z, prob, drow, T, k, C, c->stream); });
        row_gbs("moe unpermute fwd [8192,4096] top-2", ms, 3.0 * T * C * 2);
        ms = time_ms(c, [&] { moe_unpermute_backward_cuda(z, prob, y, x, prob, drow, T, k, C, c->stream); });
        row_gbs("moe unpermute bwd [8192,4096] top-2", ms, 5.0 * T * C * 2);
        cudaFree(x); cudaFree(y); cudaFree(w); cudaFree(z); cudaFree(rstd); cudaFree(scratch); cudaFree(dw);
        cudaFree(dpos); cudaFree(dtopk); cudaFree(drow); cudaFree(dcnt); cudaFree(prob);
    }
    {
        int N = 8192, F = 14336;
        size_t n = (size_t)N * F;
        bf16_t *gu = drand_bf16(c, 2 * n), *y = drand_bf16(c, n), *dgu = drand_bf16(c, 2 * n);
        double ms = time_ms(c, [&] { swiglu_forward_cuda(y, gu, N, F, c->stream); });
        row_gbs("swiglu fwd [8192,2x14336]", ms, 3.0 * n * 2);
        ms = time_ms(c, [&] { swiglu_backward_cuda(dgu, y, gu, N, F, c->stream); });
        row_gbs("swiglu bwd [8192,2x14336]", ms, 5.0 * n * 2);
        cudaFree(gu); cudaFree(y); cudaFree(dgu);
        int R = 4096, V = 32000;
        bf16_t *logits = drand_bf16(c, (size_t)R * V);
        std::vector<int32_t> tg(R);
        for (int i = 0; i < R; i++) tg[i] = i * 7 % V;
        int32_t *dt = di32(tg);
        float *loss;
        cudaCheck(cudaMalloc(&loss, R * 4));
        ms = time_ms(c, [&] { crossentropy_fused_cuda(logits, loss, logits, dt, 1.0f / R, R, V, c->stream); });
        row_gbs("cross-entropy fused [4096,32000] in place", ms, 2.0 * R * V * 2);
        cudaFree(logits); cudaFree(dt); cudaFree(loss);
        size_t np = (size_t)256 << 20;
        float *p, *m, *v, *g;
        bf16_t *pb;
        cudaCheck(cudaMalloc(&p, np * 4)); cudaCheck(cudaMalloc(&m, np * 4)); cudaCheck(cudaMalloc(&v, np * 4)); cudaCheck(cudaMalloc(&g, np * 4));
        cudaCheck(cudaMalloc(&pb, np * 2));
        fill_f32_cuda(p, 0.1f, np, c->stream); fill_f32_cuda(m, 0.0f, np, c->stream); fill_f32_cuda(v, 0.0f, np, c->stream); fill_f32_cuda(g, 0.01f, np, c->stream);
        AdamParams ap = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f};
        ms = time_ms(c, [&] { adam_update_cuda(p, pb, m, v, g, np, &ap, c->stream); }, 10);
        row_gbs("adam 256M params (f32 p,m,v,g + bf16 copy)", ms, np * (4.0 * 4 + 3 * 4 + 2));
        cudaFree(p); cudaFree(m); cudaFree(v); cudaFree(g); cudaFree(pb);
    }
}

int main(int argc, char **argv)
{
    int do_time = !(argc > 1 && strcmp(argv[1], "--no-timing") == 0);
    Ctx c = {};
    c.rng.s = 0x9e3779b97f4a7c15ull;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.0f MiB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1048576.0);
    cudaCheck(cudaStreamCreate(&c.stream));
    gemm_handle_init(&c.gemm);
    printf("| %-40s | %9s | %9s | %9s | %7s | %6s | %s |\n", "check", "elements", "rel err", "max |d|", "worst", "bad", "result");
    printf("|------------------------------------------|-----------|-----------|-----------|---------|--------|------|\n");
    test_elementwise(&c);
    test_gemm(&c);
    test_embedding(&c);
    test_ce_vocab_parallel(&c);
    test_rmsnorm(&c, 1000);   /* 16-byte path */
    test_rmsnorm(&c, 1001);   /* scalar path */
    test_rope(&c, 128, 8 * 128);   /* 16-byte path */
    test_rope(&c, 12, 6 * 12 + 4); /* scalar path */
    test_attention(&c, 2, 100, 4, 2, 64, 0);
    test_attention(&c, 1, 256, 8, 2, 128, 1);
    test_attention(&c, 1, 192, 4, 4, 128, 0);
    test_attention(&c, 1, 640, 4, 1, 128, 1);
    test_router(&c);
    test_moe(&c);
    test_swiglu_ce_adam(&c);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    printf("kernels: %d checks, %d failed\n", c.checks, c.failures);
    if (do_time) timings(&c);
    gemm_handle_destroy(&c.gemm);
    cudaCheck(cudaStreamDestroy(c.stream));
    printf("kernels: %d checks, %d failed\n", c.checks, c.failures);
    return c.failures ? 1 : 0;
}
