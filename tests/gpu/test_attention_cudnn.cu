/* test_attention_cudnn.cu: attention through kernels/attention_api.h on the
 * GPU (cuDNN's fused flash attention, and the own kernel as the fallback)
 * against the CPU reference (kernels/attention.c), for every mask, GQA ratio,
 * head dim, offsets and lengths 128..16384; the merge of partial results.
 * Run through scripts/device-attention.sh on the device machine.
 *
 * Method (as tests/gpu/test_kernels.cu): random inputs rounded to bf16 first
 * (q scaled by 4 so that the softmax is peaked, not flat, and a wrong mask
 * shows); outputs poisoned with NaN before the launch; pass = every element
 * finite, ||out - ref|| / ||ref|| <= 1e-2 and every element within
 * 5e-2 rms(ref) + 2e-2 |ref| (bf16 outputs; lse too, being computed from bf16
 * scores; dk and dv of shared KV heads: see check()).  The backward gets the GPU forward's out and lse (downloaded, so the
 * CPU reference sees the same values).  Long sequences (B = 1): the reference
 * runs on 3 chunks of 32 query rows (first, middle, last; a block with the
 * chunk's offset) for out, lse and dq; dk and dv of causal self-attention are
 * then compared with the own kernel on the whole tensor (second reference).
 * Prints a table; exit status 1 on any failure; 2 if cuDNN cannot be used. */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "tests/gpu/gpu_check.h"   /* cudaCheck */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <string>
#include <vector>

struct Rng { uint64_t s; };
static uint32_t rng_u32(Rng *r) { r->s ^= r->s << 13; r->s ^= r->s >> 7; r->s ^= r->s << 17; return (uint32_t)(r->s >> 16); }
static float rng_sym(Rng *r) { return 2.0f * ((rng_u32(r) & 0xffffff) / 16777216.0f) - 1.0f; }

struct Ctx {
    Rng rng;
    int failures, checks;
    cudaStream_t stream;
    AttnEngine *cudnn, *own;
};

static std::vector<float> hrand(Ctx *c, size_t n, float scale)
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
static bf16_t *dbf_poison(size_t n) { bf16_t *d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * 2)); cudaCheck(cudaMemset(d, 0xff, n * 2)); return d; }
static float *df32_poison(size_t n) { float *d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * 4)); cudaCheck(cudaMemset(d, 0xff, n * 4)); return d; }
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

/* group > 1: dk/dv of a KV head shared by `group` query heads.  cuDNN (like
 * cudnn-frontend's graph, which this one follows) rounds each head's dK, dV
 * to bf16 before the sum over the group, adding `group` independent
 * roundings: the absolute tolerance grows with sqrt(group). */
static void check(Ctx *c, const char *name, const std::vector<float> &out, const std::vector<float> &ref,
                  int group = 1)
{
    size_t n = ref.size(), nonfinite = 0, bad = 0;
    double num = 0.0, den = 0.0, maxdiff = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    double rms = n ? sqrt(den / n) : 0.0, atol = 5e-2 * rms * sqrt((double)group), rtol = 2e-2;
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
    int ok = nonfinite == 0 && bad == 0 && rel <= 1e-2 && out.size() == n && n > 0;
    c->checks++;
    if (!ok) c->failures++;
    printf("| %-58s | %9zu | %9.2e | %9.2e | %7.3f | %6zu | %s |\n", name, n, rel, maxdiff, worst, nonfinite + bad,
           ok ? "pass" : "FAIL");
    fflush(stdout);
}

static void fail_line(Ctx *c, const char *name, const char *why)
{
    c->checks++;
    c->failures++;
    printf("| %-58s | %s | FAIL |\n", name, why);
    fflush(stdout);
}

/* Elements [B, T, heads, hd] of a strided token-major tensor, rows [r0, r1). */
static std::vector<float> pick(const std::vector<float> &x, size_t base, int B, int T, int stride, int heads, int hd,
                               int r0, int r1)
{
    std::vector<float> o;
    for (int b = 0; b < B; b++)
        for (int t = r0; t < r1; t++)
            for (int i = 0; i < heads * hd; i++) o.push_back(x[base + (size_t)(b * T + t) * stride + i]);
    return o;
}
/* lse [B, nh, T] rows [r0, r1) */
static std::vector<float> pick_lse(const std::vector<float> &l, int B, int nh, int T, int r0, int r1)
{
    std::vector<float> o;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = r0; t < r1; t++) o.push_back(l[((size_t)b * nh + h) * T + t]);
    return o;
}

struct Case {
    const char *what;
    int B, Tq, Tk, nh, nkv, hd_qk, hd_v;
    AttnMask mask;
    long q_offset, kv_offset;
};

/* q [B, Tq, nh*hd_qk] alone; k, v interleaved in one kv buffer [B, Tk, nkv*(hd_qk + hd_v)]
 * (what a ring step receives), or, for self-attention with fused = true, one
 * qkv buffer [B, T, (nh + 2 nkv) hd] as the executor keeps it. */
static void run_case(Ctx *c, AttnEngine *e, const char *impl, const Case &k_, bool fused)
{
    Case cs = k_;
    AttnShape s = {cs.B, cs.Tq, cs.Tk, cs.nh, cs.nkv, cs.hd_qk, cs.hd_v, 0, 0, 0, cs.mask, cs.q_offset, cs.kv_offset};
    size_t q_base, k_base, v_base, n_in;
    if (fused) {
        s.q_stride = s.k_stride = s.v_stride = (cs.nh + 2 * cs.nkv) * cs.hd_qk;
        q_base = 0; k_base = (size_t)cs.nh * cs.hd_qk; v_base = (size_t)(cs.nh + cs.nkv) * cs.hd_qk;
        n_in = (size_t)cs.B * cs.Tq * s.q_stride;
    } else {
        s.q_stride = cs.nh * cs.hd_qk;
        s.k_stride = s.v_stride = cs.nkv * (cs.hd_qk + cs.hd_v);
        size_t nq = (size_t)cs.B * cs.Tq * s.q_stride;
        q_base = 0; k_base = nq; v_base = nq + (size_t)cs.nkv * cs.hd_qk;
        n_in = nq + (size_t)cs.B * cs.Tk * s.k_stride;
    }
    char name[128], tag[96];
    snprintf(tag, sizeof tag, "%s %s B%d %d/%d h%d/%d d%d/%d", impl, cs.what, cs.B, cs.Tq, cs.Tk, cs.nh, cs.nkv,
             cs.hd_qk, cs.hd_v);
    MpError err = {{0}};
    if (attention_prepare(e, &s, &err)) {
        if (cs.hd_qk != cs.hd_v) {   /* MLA head dims: supported by newer cuDNN only; reported, not failed */
            printf("| %-58s | not supported here: %s |\n", tag, err.msg);
            return;
        }
        fail_line(c, tag, err.msg);
        return;
    }
    /* inputs: q scaled by 4 (peaked softmax), k and v by 1 */
    std::vector<float> in = hrand(c, n_in, 1.0f);
    for (int b = 0; b < cs.B; b++)
        for (int t = 0; t < cs.Tq; t++)
            for (int i = 0; i < cs.nh * cs.hd_qk; i++) {
                float &x = in[q_base + (size_t)(b * cs.Tq + t) * s.q_stride + i];
                x = bf16_round(4.0f * x);
            }
    bf16_t *d_in = dbf(in);
    size_t no = (size_t)cs.B * cs.Tq * cs.nh * cs.hd_v, nl = (size_t)cs.B * cs.nh * cs.Tq;
    bf16_t *d_out = dbf_poison(no);
    float *d_lse = df32_poison(nl);
    size_t wsb = std::max(attention_workspace_bytes(e, &s, false), attention_workspace_bytes(e, &s, true));
    void *ws = NULL;
    cudaCheck(cudaMalloc(&ws, std::max<size_t>(wsb, 16)));
    if (attention_forward(e, &s, d_out, d_lse, d_in + q_base, d_in + k_base, d_in + v_base, ws, wsb, c->stream, &err)) {
        fail_line(c, tag, err.msg);
        cudaFree(d_in); cudaFree(d_out); cudaFree(d_lse); cudaFree(ws);
        return;
    }
    std::vector<float> g_out = hbf(d_out, no), g_lse = hf32(d_lse, nl);
    /* backward from the GPU's forward results */
    std::vector<float> dy = hrand(c, no, 1.0f);
    bf16_t *d_dy = dbf(dy), *d_grad = dbf_poison(n_in);
    if (attention_backward(e, &s, d_grad + q_base, d_grad + k_base, d_grad + v_base, d_dy, d_in + q_base,
                           d_in + k_base, d_in + v_base, d_out, d_lse, ws, wsb, c->stream, &err)) {
        fail_line(c, tag, err.msg);
        cudaFree(d_in); cudaFree(d_out); cudaFree(d_lse); cudaFree(ws); cudaFree(d_dy); cudaFree(d_grad);
        return;
    }
    std::vector<float> g_grad = hbf(d_grad, n_in);

    /* CPU reference: whole rows if small, else chunks of 32 rows (B = 1) */
    double work = (double)cs.B * cs.nh * cs.Tq * cs.Tk * (cs.hd_qk + cs.hd_v);
    bool whole = work <= 4e9 || cs.B > 1;
    int chunks = whole ? 1 : 3, rows = whole ? cs.Tq : 32;
    const float *q = in.data() + q_base, *k = in.data() + k_base, *v = in.data() + v_base;
    std::vector<float> r_out, r_lse, r_dq, x_out, x_lse, x_dq;
    std::vector<float> r_grad(n_in, 0.0f);
    for (int ch = 0; ch < chunks; ch++) {
        int r0 = whole ? 0 : ch == 0 ? 0 : ch == 1 ? cs.Tq / 2 : cs.Tq - rows;
        AttnShape sub = s;
        sub.Tq = rows;
        sub.q_offset = s.q_offset + r0;
        std::vector<float> o((size_t)cs.B * rows * cs.nh * cs.hd_v), l((size_t)cs.B * cs.nh * rows);
        attention_block_forward_cpu(&sub, o.data(), l.data(), q + (size_t)r0 * s.q_stride, k, v);
        r_out.insert(r_out.end(), o.begin(), o.end());
        r_lse.insert(r_lse.end(), l.begin(), l.end());
        std::vector<float> go = pick(g_out, 0, cs.B, cs.Tq, cs.nh * cs.hd_v, cs.nh, cs.hd_v, r0, r0 + rows);
        std::vector<float> gl = pick_lse(g_lse, cs.B, cs.nh, cs.Tq, r0, r0 + rows);
        x_out.insert(x_out.end(), go.begin(), go.end());
        x_lse.insert(x_lse.end(), gl.begin(), gl.end());
        /* backward of these rows with the GPU's out and lse */
        std::vector<float> dyr = pick(dy, 0, cs.B, cs.Tq, cs.nh * cs.hd_v, cs.nh, cs.hd_v, r0, r0 + rows);
        /* whole: one chunk, every gradient into r_grad; chunks: a scratch per chunk (dq rows only) */
        std::vector<float> grad(whole ? 0 : n_in, 0.0f);
        std::vector<float> &G = whole ? r_grad : grad;
        attention_block_backward_cpu(&sub, G.data() + q_base + (size_t)r0 * s.q_stride, G.data() + k_base,
                                     G.data() + v_base, dyr.data(), q + (size_t)r0 * s.q_stride, k, v, go.data(),
                                     gl.data(), 0, rows);
        std::vector<float> rq = pick(G, q_base, cs.B, cs.Tq, s.q_stride, cs.nh, cs.hd_qk, r0, r0 + rows);
        std::vector<float> xq = pick(g_grad, q_base, cs.B, cs.Tq, s.q_stride, cs.nh, cs.hd_qk, r0, r0 + rows);
        r_dq.insert(r_dq.end(), rq.begin(), rq.end());
        x_dq.insert(x_dq.end(), xq.begin(), xq.end());
    }
    const char *rows_note = whole ? "" : " (3x32 rows)";
    snprintf(name, sizeof name, "%s out%s", tag, rows_note); check(c, name, x_out, r_out);
    snprintf(name, sizeof name, "%s lse%s", tag, rows_note); check(c, name, x_lse, r_lse);
    snprintf(name, sizeof name, "%s dq%s", tag, rows_note); check(c, name, x_dq, r_dq);
    if (whole) {
        std::vector<float> xk = pick(g_grad, k_base, cs.B, cs.Tk, s.k_stride, cs.nkv, cs.hd_qk, 0, cs.Tk);
        std::vector<float> rk = pick(r_grad, k_base, cs.B, cs.Tk, s.k_stride, cs.nkv, cs.hd_qk, 0, cs.Tk);
        std::vector<float> xv = pick(g_grad, v_base, cs.B, cs.Tk, s.v_stride, cs.nkv, cs.hd_v, 0, cs.Tk);
        std::vector<float> rv = pick(r_grad, v_base, cs.B, cs.Tk, s.v_stride, cs.nkv, cs.hd_v, 0, cs.Tk);
        snprintf(name, sizeof name, "%s dk", tag); check(c, name, xk, rk, cs.nh / cs.nkv);
        snprintf(name, sizeof name, "%s dv", tag); check(c, name, xv, rv, cs.nh / cs.nkv);
    } else if (e == c->cudnn && c->own && cs.mask == ATTN_MASK_CAUSAL && cs.Tq == cs.Tk && cs.q_offset == cs.kv_offset &&
               cs.hd_qk == cs.hd_v && (cs.hd_qk == 64 || cs.hd_qk == 128) && s.k_stride == s.v_stride) {
        /* second reference: the own kernel's backward on the whole tensor, same inputs */
        size_t owb = attention_workspace_bytes(c->own, &s, true);
        void *ows;
        cudaCheck(cudaMalloc(&ows, std::max<size_t>(owb, 16)));
        bf16_t *o_grad = dbf_poison(n_in);
        if (attention_backward(c->own, &s, o_grad + q_base, o_grad + k_base, o_grad + v_base, d_dy, d_in + q_base,
                               d_in + k_base, d_in + v_base, d_out, d_lse, ows, owb, c->stream, &err)) {
            fail_line(c, tag, err.msg);
        } else {
            std::vector<float> og = hbf(o_grad, n_in);
            std::vector<float> xk = pick(g_grad, k_base, cs.B, cs.Tk, s.k_stride, cs.nkv, cs.hd_qk, 0, cs.Tk);
            std::vector<float> rk = pick(og, k_base, cs.B, cs.Tk, s.k_stride, cs.nkv, cs.hd_qk, 0, cs.Tk);
            std::vector<float> xv = pick(g_grad, v_base, cs.B, cs.Tk, s.v_stride, cs.nkv, cs.hd_v, 0, cs.Tk);
            std::vector<float> rv = pick(og, v_base, cs.B, cs.Tk, s.v_stride, cs.nkv, cs.hd_v, 0, cs.Tk);
            snprintf(name, sizeof name, "%s dk vs own kernel", tag); check(c, name, xk, rk, cs.nh / cs.nkv);
            snprintf(name, sizeof name, "%s dv vs own kernel", tag); check(c, name, xv, rv, cs.nh / cs.nkv);
        }
        cudaFree(ows); cudaFree(o_grad);
    }
    cudaFree(d_in); cudaFree(d_out); cudaFree(d_lse); cudaFree(ws); cudaFree(d_dy); cudaFree(d_grad);
}

/* Ring attention's building block: rows [T/2, T) of causal self-attention
 * = merge(rows vs keys [0, T/2) unmasked, rows vs keys [T/2, T) causal);
 * and all rows of unmasked attention = merge of the two key halves.  The
 * merged GPU result is compared with the CPU reference of the whole, and the
 * GPU merge kernel with the CPU merge of the same partial results. */
static void test_merge(Ctx *c, AttnEngine *e, int T, int nh, int nkv, int hd, bool causal)
{
    int half = T / 2, Tq = causal ? half : T;
    int qs = nh * hd, ks = 2 * nkv * hd;   /* kv buffer [T, nkv*2hd] */
    std::vector<float> q = hrand(c, (size_t)Tq * qs, 4.0f), kv = hrand(c, (size_t)T * ks, 1.0f);
    bf16_t *dq = dbf(q), *dkv = dbf(kv);
    AttnShape full = {1, Tq, T, nh, nkv, hd, hd, qs, ks, ks, causal ? ATTN_MASK_CAUSAL : ATTN_MASK_NONE,
                      causal ? (long)half : 0, 0};
    AttnShape a = full, b = full;
    a.Tk = b.Tk = half;
    a.mask = ATTN_MASK_NONE;                 /* keys [0, T/2): all visible to rows >= T/2 (or unmasked) */
    b.kv_offset = half;                      /* keys [T/2, T): causal diagonal (or unmasked) */
    char tag[96];
    snprintf(tag, sizeof tag, "merge %s T%d h%d/%d d%d", causal ? "causal rows T/2..T" : "no mask", T, nh, nkv, hd);
    MpError err = {{0}};
    if (attention_prepare(e, &a, &err) || attention_prepare(e, &b, &err)) { fail_line(c, tag, err.msg); return; }
    size_t no = (size_t)Tq * nh * hd, nl = (size_t)nh * Tq;
    bf16_t *o1 = dbf_poison(no), *o2 = dbf_poison(no);
    float *l1 = df32_poison(nl), *l2 = df32_poison(nl);
    size_t wsb = std::max(attention_workspace_bytes(e, &a, false), attention_workspace_bytes(e, &b, false));
    void *ws;
    cudaCheck(cudaMalloc(&ws, std::max<size_t>(wsb, 16)));
    if (attention_forward(e, &a, o1, l1, dq, dkv, dkv + nkv * hd, ws, wsb, c->stream, &err) ||
        attention_forward(e, &b, o2, l2, dq, dkv + (size_t)half * ks, dkv + (size_t)half * ks + nkv * hd, ws, wsb,
                          c->stream, &err)) {
        fail_line(c, tag, err.msg);
        return;
    }
    /* CPU merge of the GPU's partial results, before the GPU merge overwrites o1/l1 */
    std::vector<float> p1 = hbf(o1, no), pl1 = hf32(l1, nl), p2 = hbf(o2, no), pl2 = hf32(l2, nl);
    attention_merge_cpu(p1.data(), pl1.data(), p2.data(), pl2.data(), 1, Tq, nh, hd);
    if (attention_merge_cuda(o1, l1, o2, l2, 1, Tq, nh, hd, c->stream, &err)) { fail_line(c, tag, err.msg); return; }
    std::vector<float> m_out = hbf(o1, no), m_lse = hf32(l1, nl);
    std::vector<float> r_out(no), r_lse(nl);
    attention_block_forward_cpu(&full, r_out.data(), r_lse.data(), q.data(), kv.data(), kv.data() + nkv * hd);
    char name[128];
    snprintf(name, sizeof name, "%s out = full", tag); check(c, name, m_out, r_out);
    snprintf(name, sizeof name, "%s lse = full", tag); check(c, name, m_lse, r_lse);
    snprintf(name, sizeof name, "%s gpu merge = cpu merge", tag); check(c, name, m_out, p1);
    snprintf(name, sizeof name, "%s gpu merge lse = cpu", tag); check(c, name, m_lse, pl1);
    cudaFree(dq); cudaFree(dkv); cudaFree(o1); cudaFree(o2); cudaFree(l1); cudaFree(l2); cudaFree(ws);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    Ctx c;
    memset(&c, 0, sizeof c);
    c.rng.s = 0x9e3779b97f4a7c15ull;
    cudaCheck(cudaStreamCreate(&c.stream));
    MpError err = {{0}};
    char note[256];
    if (attention_engine_create(ATTN_IMPL_OWN, &c.own, note, sizeof note, &err)) { printf("own: %s\n", err.msg); return 1; }
    if (attention_engine_create(ATTN_IMPL_CUDNN, &c.cudnn, note, sizeof note, &err)) {
        printf("cuDNN cannot be used: %s\n", err.msg);
        return 2;
    }
    printf("attention engines: %s, %s\n\n", attention_engine_name(c.cudnn), attention_engine_name(c.own));
    printf("| %-58s | %9s | %9s | %9s | %7s | %6s | %s |\n", "check", "elements", "rel err", "max diff", "worst", "bad", "ok");
    printf("|%s|-----------|-----------|-----------|---------|--------|------|\n", std::string(60, '-').c_str());

    const AttnMask CA = ATTN_MASK_CAUSAL, NO = ATTN_MASK_NONE;
    std::vector<Case> cases = {
        /* what, B, Tq, Tk, nh, nkv, hd_qk, hd_v, mask, q_offset, kv_offset */
        {"causal", 2, 128, 128, 4, 4, 64, 64, CA, 0, 0},
        {"causal", 2, 256, 256, 8, 2, 128, 128, CA, 0, 0},
        {"causal", 1, 1000, 1000, 8, 1, 128, 128, CA, 0, 0},
        {"causal", 1, 2048, 2048, 4, 1, 64, 64, CA, 0, 0},
        {"none", 2, 256, 256, 4, 1, 128, 128, NO, 0, 0},
        {"none", 1, 384, 640, 8, 2, 64, 64, NO, 0, 0},
        {"none", 1, 1024, 1024, 4, 4, 128, 128, NO, 0, 0},
        {"offset +128", 2, 256, 256, 8, 2, 128, 128, CA, 128, 0},
        {"offset +256 (Tk > Tq)", 1, 256, 512, 8, 1, 128, 128, CA, 256, 0},
        {"offset +64 tail rows", 1, 200, 200, 4, 2, 64, 64, CA, 1064, 1000},
        {"offset +1024", 1, 1024, 1024, 4, 1, 128, 128, CA, 3072, 2048},
        {"MLA causal", 1, 256, 256, 4, 4, 192, 128, CA, 0, 0},
    };
    if (!quick) {
        std::vector<Case> longer = {
            {"causal", 1, 4096, 4096, 4, 1, 128, 128, CA, 0, 0},
            {"causal", 1, 8192, 8192, 4, 1, 128, 128, CA, 0, 0},
            {"causal", 1, 16384, 16384, 4, 1, 128, 128, CA, 0, 0},
            {"causal", 1, 16384, 16384, 2, 2, 64, 64, CA, 0, 0},
            {"none", 1, 8192, 8192, 4, 1, 128, 128, NO, 0, 0},
            {"offset +8192", 1, 8192, 8192, 4, 1, 128, 128, CA, 8192, 0},
            {"none", 1, 16384, 16384, 8, 1, 128, 128, NO, 0, 0},
        };
        cases.insert(cases.end(), longer.begin(), longer.end());
    }
    for (const Case &cs : cases) {
        bool self = cs.Tq == cs.Tk && cs.hd_qk == cs.hd_v;
        run_case(&c, c.cudnn, "cudnn", cs, false);
        if (self) run_case(&c, c.cudnn, "cudnn qkv", cs, true);
    }
    /* the own kernel through the same interface (the fallback path) */
    run_case(&c, c.own, "own qkv", cases[1], true);
    run_case(&c, c.own, "own", cases[2], false);
    /* partial results merge to the whole */
    test_merge(&c, c.cudnn, 512, 4, 2, 128, true);
    test_merge(&c, c.cudnn, 1024, 8, 1, 64, false);
    test_merge(&c, c.cudnn, 4096, 4, 1, 128, true);

    printf("\n%d checks, %d failed\n", c.checks, c.failures);
    attention_engine_destroy(c.cudnn);
    attention_engine_destroy(c.own);
    return c.failures ? 1 : 0;
}
