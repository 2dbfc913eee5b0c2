/* test_kernels_cpu.c: the CPU references of kernels/ against hand arithmetic
 * and naive double-precision computations, and every backward against
 * central finite differences (in double over the fp32 forward) on tiny shapes.
 *
 * Finite differences: for a forward y = f(x) and a random upstream gradient
 * g, the scalar L(x) = sum g . f(x); dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h
 * must match the backward's dx_i within 2e-3 + 2e-3 |dx_i| (h = 1e-2; the
 * forward is fp32, so L carries ~1e-6 rounding, over 2h that is ~1e-4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/adam.h"
#include "kernels/attention.h"
#include "kernels/attention_api.h"
#include "kernels/common.h"
#include "kernels/crossentropy.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_permute.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

typedef struct { uint64_t s; } Rng;
static float rnd(Rng *r)   /* [-1, 1) */
{
    r->s ^= r->s << 13; r->s ^= r->s >> 7; r->s ^= r->s << 17;
    return (float)((r->s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static void fill(Rng *r, float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = rnd(r); }

/* A forward to differentiate: writes y [ny] from x [nx] (ctx holds the rest). */
typedef void (*Fwd)(const float *x, float *y, void *ctx);

static double loss_of(Fwd f, const float *x, float *y, const float *g, size_t ny, void *ctx)
{
    f(x, y, ctx);
    double L = 0.0;
    for (size_t i = 0; i < ny; i++) L += (double)g[i] * y[i];
    return L;
}

/* Compares dx (analytic) with central differences of sum g . f(x). */
static void check_fd(Fwd f, float *x, size_t nx, size_t ny, const float *g, const float *dx, void *ctx)
{
    float *y = malloc(sizeof(float) * ny);
    const float h = 1e-2f;
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss_of(f, x, y, g, ny, ctx);
        x[i] = keep - h;
        double lm = loss_of(f, x, y, g, ny, ctx);
        x[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        if (fabs(fd - dx[i]) > 2e-3 + 2e-3 * fabs(dx[i]))
            fail_msg("element %zu: finite difference %.6f, backward %.6f", i, fd, (double)dx[i]);
    }
    free(y);
}

/* ---- bf16 rounding ------------------------------------------------------ */
static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(bf16_from_float(1.0f), 0x3f80);
    assert_int_equal(bf16_from_float(-2.0f), 0xc000);
    /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even -> 1 */
    assert_int_equal(bf16_from_float(1.0f + 1.0f / 256), 0x3f80);
    /* 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> up */
    assert_int_equal(bf16_from_float(1.0f + 3.0f / 256), 0x3f82);
    /* just above the halfway point rounds up */
    assert_int_equal(bf16_from_float(1.0f + 1.0f / 256 + 1.0f / 65536), 0x3f81);
    assert_true(isnan(bf16_to_float(bf16_from_float(NAN))));
    assert_true(bf16_to_float(0x4040) == 3.0f);
}

/* ---- gemm --------------------------------------------------------------- */
static void test_gemm_hand(void **state)
{
    (void)state;
    /* [[1,2],[3,4]] . [[5,6],[7,8]] = [[19,22],[43,50]] */
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4] = {1, 1, 1, 1};
    gemm_cpu(C, A, B, 2, 2, 2, 0, 0, 1.0f, 0.0f);
    assert_true(C[0] == 19 && C[1] == 22 && C[2] == 43 && C[3] == 50);
    /* A^T . B = [[1,3],[2,4]] . B = [[26,30],[38,44]]; alpha 2, beta 1 over C */
    gemm_cpu(C, A, B, 2, 2, 2, 1, 0, 2.0f, 1.0f);
    assert_true(C[0] == 19 + 52 && C[1] == 22 + 60 && C[2] == 43 + 76 && C[3] == 50 + 88);
    /* A . B^T = [[1,2],[3,4]] . [[5,7],[6,8]] = [[17,23],[39,53]]; beta 0 ignores NaN in C */
    C[0] = NAN;
    gemm_cpu(C, A, B, 2, 2, 2, 0, 1, 1.0f, 0.0f);
    assert_true(C[0] == 17 && C[1] == 23 && C[2] == 39 && C[3] == 53);
}

static void test_grouped_gemm(void **state)
{
    (void)state;
    Rng r = {7};
    int32_t rows[3] = {2, 0, 3};
    int N = 3, K = 4, R = 5, G = 3;
    float A[5 * 4], W[3 * 3 * 4], C[5 * 3];
    fill(&r, A, 20); fill(&r, W, 36);
    grouped_gemm_cpu(C, A, W, rows, G, GROUPED_VARY_M, 0, N, K, 0, 1, 1.0f, 0.0f);
    /* row 0..1 use expert 0, rows 2..4 expert 2 (W_g [N, K], y = x W_g^T) */
    for (int i = 0; i < R; i++) {
        int g = i < 2 ? 0 : 2;
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) s += (double)A[i * K + p] * W[(g * N + j) * K + p];
            assert_float_equal(C[i * N + j], s, 1e-5);
        }
    }
    /* vary-K: dW_g [N, K] += dY_g^T X_g; the empty group keeps beta * C */
    float dY[5 * 3], dW[3 * 3 * 4];
    fill(&r, dY, 15);
    for (int i = 0; i < 36; i++) dW[i] = 1.0f;
    grouped_gemm_cpu(dW, dY, A, rows, G, GROUPED_VARY_K, N, K, 0, 1, 0, 1.0f, 1.0f);
    for (int g = 0; g < 3; g++) {
        int r0 = g == 0 ? 0 : 2, r1 = g == 0 ? 2 : g == 1 ? 2 : 5;
        if (g == 1) r0 = r1 = 2;
        for (int j = 0; j < N; j++)
            for (int p = 0; p < K; p++) {
                double s = 1.0;
                for (int i = r0; i < r1; i++) s += (double)dY[i * N + j] * A[i * K + p];
                assert_float_equal(dW[(g * N + j) * K + p], s, 1e-5);
            }
    }
}

/* ---- embedding ---------------------------------------------------------- */
static void test_embedding(void **state)
{
    (void)state;
    float wte[3 * 2] = {0, 1, 10, 11, 20, 21}, out[3 * 2], dwte[6] = {0};
    int32_t tok[3] = {2, 0, 2};
    embedding_forward_cpu(out, tok, wte, 3, 2);
    assert_true(out[0] == 20 && out[1] == 21 && out[2] == 0 && out[3] == 1 && out[4] == 20);
    float g[6] = {1, 2, 3, 4, 5, 6};
    embedding_backward_cpu(dwte, g, tok, 3, 2);
    /* row 2 gets tokens 0 and 2: (1+5, 2+6); row 0 gets (3, 4); row 1 nothing */
    assert_true(dwte[4] == 6 && dwte[5] == 8 && dwte[0] == 3 && dwte[1] == 4 && dwte[2] == 0);
    /* a negative id (vocabulary-parallel: the row is on another rank): zero
     * row forward, nothing backward */
    int32_t tok2[2] = {-1, 1};
    out[0] = out[1] = 7;
    embedding_forward_cpu(out, tok2, wte, 2, 2);
    assert_true(out[0] == 0 && out[1] == 0 && out[2] == 10 && out[3] == 11);
    float dw2[6] = {0};
    embedding_backward_cpu(dw2, g, tok2, 2, 2);
    assert_true(dw2[0] == 0 && dw2[1] == 0 && dw2[2] == 3 && dw2[3] == 4 && dw2[4] == 0);
}

/* ---- rmsnorm ------------------------------------------------------------ */
typedef struct { int N, C; const float *w; } RmsCtx;
static void rms_fwd(const float *x, float *y, void *ctx)
{
    RmsCtx *c = ctx;
    float rstd[8];
    rmsnorm_forward_cpu(y, rstd, x, c->w, c->N, c->C, 1e-5f);
}
typedef struct { int N, C; const float *x; } RmsWCtx;
static void rms_fwd_w(const float *w, float *y, void *ctx)
{
    RmsWCtx *c = ctx;
    float rstd[8];
    rmsnorm_forward_cpu(y, rstd, c->x, w, c->N, c->C, 1e-5f);
}
static void test_rmsnorm(void **state)
{
    (void)state;
    /* x = [3, 4]: mean square 12.5, rstd = 1/sqrt(12.5 + eps); weight [1, 2] */
    float x[2] = {3, 4}, w[2] = {1, 2}, y[2], rstd[1];
    rmsnorm_forward_cpu(y, rstd, x, w, 1, 2, 1e-5f);
    assert_float_equal(rstd[0], 1.0 / sqrt(12.5 + 1e-5), 1e-6);
    assert_float_equal(y[0], 3.0 / sqrt(12.5), 1e-5);
    assert_float_equal(y[1], 8.0 / sqrt(12.5), 1e-5);
    Rng r = {11};
    int N = 3, C = 5;
    float X[15], W[5], G[15], dX[15], dW[5] = {0}, Y[15], R[3];
    fill(&r, X, 15); fill(&r, W, 5); fill(&r, G, 15);
    rmsnorm_forward_cpu(Y, R, X, W, N, C, 1e-5f);
    rmsnorm_backward_cpu(dX, dW, G, X, W, R, N, C);
    RmsCtx c = {N, C, W};
    check_fd(rms_fwd, X, 15, 15, G, dX, &c);
    RmsWCtx cw = {N, C, X};
    check_fd(rms_fwd_w, W, 5, 15, G, dW, &cw);
}

/* ---- rope --------------------------------------------------------------- */
typedef struct { int N, H, D, stride; const int32_t *pos; } RopeCtx;
static void rope_fwd(const float *x, float *y, void *ctx)
{
    RopeCtx *c = ctx;
    memcpy(y, x, sizeof(float) * (size_t)c->N * c->stride);
    rope_forward_cpu(y, c->pos, c->N, c->H, c->D, c->stride, 10000.0f);
}
static void test_rope(void **state)
{
    (void)state;
    /* D = 2: one pair, freq 1; position 1 rotates (1, 0) by 1 radian */
    float v[2] = {1, 0};
    int32_t p1 = 1;
    rope_forward_cpu(v, &p1, 1, 1, 2, 2, 10000.0f);
    assert_float_equal(v[0], cos(1.0), 1e-6);
    assert_float_equal(v[1], sin(1.0), 1e-6);
    rope_backward_cpu(v, &p1, 1, 1, 2, 2, 10000.0f);
    assert_float_equal(v[0], 1.0, 1e-6);
    assert_float_equal(v[1], 0.0, 1e-6);
    /* D = 4, pair i = 1 has freq 10000^(-1/2) = 0.01: position 3 -> angle 0.03 */
    float w[4] = {0, 1, 0, 0};
    int32_t p3 = 3;
    rope_forward_cpu(w, &p3, 1, 1, 4, 4, 10000.0f);
    assert_float_equal(w[1], cos(0.03), 1e-6);
    assert_float_equal(w[3], sin(0.03), 1e-6);
    /* backward vs finite differences, strided rows (2 heads inside a row of 12) */
    Rng r = {5};
    int N = 3, H = 2, D = 4, stride = 12;
    int32_t pos[3] = {0, 5, 17};
    float X[36], G[36], dX[36];
    fill(&r, X, 36); fill(&r, G, 36);
    for (int t = 0; t < N; t++) for (int c = H * D; c < stride; c++) G[t * stride + c] = 0.0f;
    memcpy(dX, G, sizeof dX);
    rope_backward_cpu(dX, pos, N, H, D, stride, 10000.0f);
    RopeCtx c = {N, H, D, stride, pos};
    check_fd(rope_fwd, X, 36, 36, G, dX, &c);
}

/* ---- attention ---------------------------------------------------------- */
typedef struct { int B, T, nh, nkv, hd, qs, ks, which; float *qkv; } AttCtx;
/* x replaces q, k or v (ctx->which) inside the fused buffer */
static void att_fwd(const float *x, float *y, void *ctx)
{
    AttCtx *c = ctx;
    size_t n = (size_t)c->B * c->T * c->qs;
    float *buf = malloc(sizeof(float) * n), lse[64];
    memcpy(buf, c->qkv, sizeof(float) * n);
    int off = c->which == 0 ? 0 : c->which == 1 ? c->nh * c->hd : (c->nh + c->nkv) * c->hd;
    int width = c->which == 0 ? c->nh * c->hd : c->nkv * c->hd;
    for (int bt = 0; bt < c->B * c->T; bt++)
        for (int i = 0; i < width; i++) buf[(size_t)bt * c->qs + off + i] = x[(size_t)bt * width + i];
    attention_forward_cpu(y, lse, buf, buf + c->nh * c->hd, buf + (c->nh + c->nkv) * c->hd, c->B, c->T,
                          c->nh, c->nkv, c->hd, c->qs, c->ks);
    free(buf);
}
static void test_attention(void **state)
{
    (void)state;
    /* T = 1: the only key is the query itself, out = v, lse = q.k / sqrt(hd) */
    float q[2] = {1, 2}, k[2] = {3, -1}, v[2] = {5, 7}, out[2], lse[1];
    attention_forward_cpu(out, lse, q, k, v, 1, 1, 1, 1, 2, 2, 2);
    assert_float_equal(out[0], 5, 1e-6);
    assert_float_equal(out[1], 7, 1e-6);
    assert_float_equal(lse[0], 1.0 / sqrt(2.0), 1e-6);
    /* T = 2, hd = 1, q = k = 1: row 1 averages v0 and v1 equally (equal scores);
     * lse = 1 + log 2 */
    float q2[2] = {1, 1}, k2[2] = {1, 1}, v2[2] = {2, 6}, o2[2], l2[2];
    attention_forward_cpu(o2, l2, q2, k2, v2, 1, 2, 1, 1, 1, 1, 1);
    assert_float_equal(o2[0], 2, 1e-6);
    assert_float_equal(o2[1], 4, 1e-6);
    assert_float_equal(l2[1], 1.0 + log(2.0), 1e-6);
    /* backward vs finite differences: B 2, T 3, 4 query heads over 2 KV heads,
     * hd 2, fused qkv rows */
    Rng r = {3};
    int B = 2, T = 3, nh = 4, nkv = 2, hd = 2, qs = (nh + 2 * nkv) * hd;
    size_t n = (size_t)B * T * qs, no = (size_t)B * T * nh * hd;
    float *qkv = malloc(sizeof(float) * n), *O = malloc(sizeof(float) * no), *G = malloc(sizeof(float) * no);
    float *dqkv = malloc(sizeof(float) * n), L[2 * 4 * 3];
    fill(&r, qkv, n); fill(&r, G, no);
    for (size_t i = 0; i < n; i++) qkv[i] *= 2.0f;
    attention_forward_cpu(O, L, qkv, qkv + nh * hd, qkv + (nh + nkv) * hd, B, T, nh, nkv, hd, qs, qs);
    attention_backward_cpu(dqkv, dqkv + nh * hd, dqkv + (nh + nkv) * hd, G, qkv, qkv + nh * hd,
                           qkv + (nh + nkv) * hd, O, L, B, T, nh, nkv, hd, qs, qs);
    for (int which = 0; which < 3; which++) {
        int off = which == 0 ? 0 : which == 1 ? nh * hd : (nh + nkv) * hd;
        int width = which == 0 ? nh * hd : nkv * hd;
        float x[64], dx[64];
        for (int bt = 0; bt < B * T; bt++)
            for (int i = 0; i < width; i++) {
                x[bt * width + i] = qkv[(size_t)bt * qs + off + i];
                dx[bt * width + i] = dqkv[(size_t)bt * qs + off + i];
            }
        AttCtx c = {B, T, nh, nkv, hd, qs, qs, which, qkv};
        check_fd(att_fwd, x, (size_t)B * T * width, no, G, dx, &c);
    }
    free(qkv); free(O); free(G); free(dqkv);
}


/* Blocks with offsets: hd 1, every q = k = 1 (all scores 1/sqrt(1) = 1),
 * v = 2, 6, 10 for keys 0..2, two query rows. */
static void test_attention_block_masks(void **state)
{
    (void)state;
    float q[2] = {1, 1}, k[3] = {1, 1, 1}, v[3] = {2, 6, 10}, out[2], lse[2];
    AttnShape s = {.B = 1, .Tq = 2, .Tk = 3, .nh = 1, .nkv = 1, .hd_qk = 1, .hd_v = 1,
                   .q_stride = 1, .k_stride = 1, .v_stride = 1, .mask = ATTN_MASK_NONE};
    /* no mask: every row averages the three values, lse = 1 + log 3 */
    attention_block_forward_cpu(&s, out, lse, q, k, v);
    assert_float_equal(out[0], 6, 1e-6);
    assert_float_equal(out[1], 6, 1e-6);
    assert_float_equal(lse[0], 1 + log(3.0), 1e-6);
    assert_float_equal(attn_visible_pairs(&s), 6, 0);
    /* rows at positions 1, 2 and keys at 0, 1, 2: row 0 sees keys 0-1 (mean 4,
     * lse 1 + log 2), row 1 sees all three */
    s.mask = ATTN_MASK_CAUSAL;
    s.q_offset = 1;
    attention_block_forward_cpu(&s, out, lse, q, k, v);
    assert_float_equal(out[0], 4, 1e-6);
    assert_float_equal(lse[0], 1 + log(2.0), 1e-6);
    assert_float_equal(out[1], 6, 1e-6);
    assert_float_equal(lse[1], 1 + log(3.0), 1e-6);
    assert_float_equal(attn_visible_pairs(&s), 5, 0);
    /* 4 FLOPs per visible pair with hd 1 (q.k and p.v, a multiply-add each) */
    assert_float_equal(attn_forward_flops(&s), 20, 0);
    /* rows at 0, 1 and keys at 1, 2, 3: row 0 sees nothing (out 0, lse -inf),
     * row 1 sees key 0 alone (out 2, lse 1) */
    s.q_offset = 0;
    s.kv_offset = 1;
    attention_block_forward_cpu(&s, out, lse, q, k, v);
    assert_float_equal(out[0], 0, 0);
    assert_true(isinf(lse[0]) && lse[0] < 0);
    assert_float_equal(out[1], 2, 1e-6);
    assert_float_equal(lse[1], 1, 1e-6);
    assert_float_equal(attn_visible_pairs(&s), 1, 0);
    /* the usual self-attention is the block with equal offsets */
    AttnShape c = attn_shape_causal(1, 3, 1, 1, 1, 1, 1);
    assert_float_equal(attn_visible_pairs(&c), 6, 0);
    MpError err = {{0}};
    assert_int_equal(attn_shape_check(&c, &err), 0);
    c.nkv = 2;
    c.nh = 3;
    assert_int_equal(attn_shape_check(&c, &err), -1);
    assert_non_null(strstr(err.msg, "nkv"));
}

/* backward of an offset block (rows at 4..6, keys at 3..6: a shifted
 * diagonal), GQA 4 heads over 2, MLA-like head dims (q/k 3, v 2), q and an
 * interleaved k|v buffer, against finite differences */
typedef struct { AttnShape s; int which; const float *q, *kv; } BlkCtx;
static void blk_fwd(const float *x, float *y, void *ctx)
{
    BlkCtx *c = ctx;
    const AttnShape *s = &c->s;
    size_t nq = (size_t)s->Tq * s->q_stride, nkv = (size_t)s->Tk * s->k_stride;
    float *q = malloc(sizeof(float) * nq), *kv = malloc(sizeof(float) * nkv), lse[64];
    memcpy(q, c->q, sizeof(float) * nq);
    memcpy(kv, c->kv, sizeof(float) * nkv);
    if (c->which == 0) memcpy(q, x, sizeof(float) * nq);
    else memcpy(kv, x, sizeof(float) * nkv);
    attention_block_forward_cpu(s, y, lse, q, kv, kv + s->nkv * s->hd_qk);
    free(q);
    free(kv);
}
static void test_attention_block_backward(void **state)
{
    (void)state;
    Rng r = {11};
    int nh = 4, nkv = 2, dq = 3, dv = 2, Tq = 3, Tk = 4;
    AttnShape s = {.B = 1, .Tq = Tq, .Tk = Tk, .nh = nh, .nkv = nkv, .hd_qk = dq, .hd_v = dv,
                   .q_stride = nh * dq, .k_stride = nkv * (dq + dv), .v_stride = nkv * (dq + dv),
                   .mask = ATTN_MASK_CAUSAL, .q_offset = 4, .kv_offset = 3};
    size_t nq = (size_t)Tq * s.q_stride, nkvb = (size_t)Tk * s.k_stride, no = (size_t)Tq * nh * dv;
    float q[36], kv[40], out[24], lse[12], g[24], gq[36], gkv[40];
    fill(&r, q, nq); fill(&r, kv, nkvb); fill(&r, g, no);
    for (size_t i = 0; i < nq; i++) q[i] *= 2.0f;
    attention_block_forward_cpu(&s, out, lse, q, kv, kv + nkv * dq);
    attention_block_backward_cpu(&s, gq, gkv, gkv + nkv * dq, g, q, kv, kv + nkv * dq, out, lse, 0, Tq);
    BlkCtx c = {s, 0, q, kv};
    check_fd(blk_fwd, q, nq, no, g, gq, &c);
    c.which = 1;
    check_fd(blk_fwd, kv, nkvb, no, g, gkv, &c);
    /* rows [1, 3) alone give the same dq for those rows */
    float gq2[36], gkv2[40];
    memset(gq2, 0, sizeof gq2);
    attention_block_backward_cpu(&s, gq2, gkv2, gkv2 + nkv * dq, g, q, kv, kv + nkv * dq, out, lse, 1, 3);
    for (size_t i = (size_t)s.q_stride; i < nq; i++) assert_float_equal(gq2[i], gq[i], 1e-6);
    for (size_t i = 0; i < (size_t)s.q_stride; i++) assert_float_equal(gq2[i], 0, 0);
}

/* merge: (2, log 1) and (6, log 3) -> weights 1/4 and 3/4: out 5, lse log 4 */
static void test_attention_merge(void **state)
{
    (void)state;
    float o1[2] = {2, 1}, l1[2] = {0, -INFINITY}, o2[2] = {6, 7}, l2[2] = {(float)log(3.0), -INFINITY};
    /* B 1, T 2, nh 1, hd 1: row 1 has no key in either block */
    attention_merge_cpu(o1, l1, o2, l2, 1, 2, 1, 1);
    assert_float_equal(o1[0], 5, 1e-6);
    assert_float_equal(l1[0], log(4.0), 1e-6);
    assert_float_equal(o1[1], 0, 0);
    assert_true(isinf(l1[1]) && l1[1] < 0);
    /* a block that sees nothing leaves the other unchanged */
    float a[1] = {3}, la[1] = {-INFINITY}, b[1] = {9}, lb[1] = {0.5f};
    attention_merge_cpu(a, la, b, lb, 1, 1, 1, 1);
    assert_float_equal(a[0], 9, 1e-6);
    assert_float_equal(la[0], 0.5, 1e-6);
    /* ring attention: rows 4..7 of causal self-attention over 8 tokens =
     * merge(keys 0..3 unmasked, keys 4..7 causal) */
    Rng r = {5};
    int nh = 2, nkv = 1, hd = 4, T = 8, half = 4;
    float q[4 * 2 * 4], kv[8 * 2 * 4], full_o[32], full_l[8], p_o[32], p_l[8], f_o[32], f_l[8];
    fill(&r, q, sizeof q / sizeof q[0]); fill(&r, kv, sizeof kv / sizeof kv[0]);
    AttnShape full = {.B = 1, .Tq = half, .Tk = T, .nh = nh, .nkv = nkv, .hd_qk = hd, .hd_v = hd,
                      .q_stride = nh * hd, .k_stride = 2 * nkv * hd, .v_stride = 2 * nkv * hd,
                      .mask = ATTN_MASK_CAUSAL, .q_offset = half, .kv_offset = 0};
    attention_block_forward_cpu(&full, f_o, f_l, q, kv, kv + nkv * hd);
    AttnShape a1 = full, a2 = full;
    a1.Tk = a2.Tk = half;
    a1.mask = ATTN_MASK_NONE;
    a2.kv_offset = half;
    attention_block_forward_cpu(&a1, full_o, full_l, q, kv, kv + nkv * hd);
    attention_block_forward_cpu(&a2, p_o, p_l, q, kv + half * full.k_stride, kv + half * full.k_stride + nkv * hd);
    attention_merge_cpu(full_o, full_l, p_o, p_l, 1, half, nh, hd);
    for (int i = 0; i < half * nh * hd; i++) assert_float_equal(full_o[i], f_o[i], 1e-5);
    for (int i = 0; i < nh * half; i++) assert_float_equal(full_l[i], f_l[i], 1e-5);
}

/* ---- router ------------------------------------------------------------- */
typedef struct { int N, E, k, renorm; } RouterCtx;
static void router_fwd(const float *x, float *y, void *ctx)
{
    RouterCtx *c = ctx;
    float probs[64];
    int32_t idx[16];
    router_forward_cpu(probs, idx, y, x, c->N, c->E, c->k, c->renorm);
}
static void test_router(void **state)
{
    (void)state;
    /* logits [0, ln 2, ln 3, 0]: exp = [1, 2, 3, 1] / 7; top-2 = experts 2, 1 */
    float logits[4] = {0, (float)log(2.0), (float)log(3.0), 0}, probs[4], w[3];
    int32_t idx[3];
    router_forward_cpu(probs, idx, w, logits, 1, 4, 2, 0);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 1);
    assert_float_equal(w[0], 3.0 / 7, 1e-6);
    assert_float_equal(w[1], 2.0 / 7, 1e-6);
    router_forward_cpu(probs, idx, w, logits, 1, 4, 2, 1);
    assert_float_equal(w[0], 0.6, 1e-6);   /* 3 / (3 + 2) */
    assert_float_equal(w[1], 0.4, 1e-6);
    /* tie between experts 0 and 3: the lower index wins */
    router_forward_cpu(probs, idx, w, logits, 1, 4, 3, 0);
    assert_int_equal(idx[2], 0);
    for (int renorm = 0; renorm < 2; renorm++) {
        Rng r = {19 + (uint64_t)renorm};
        int N = 3, E = 6, k = 2;
        float L[18], P[18], Wk[6], G[6], dL[18];
        int32_t I[6];
        fill(&r, L, 18); fill(&r, G, 6);
        for (int i = 0; i < 18; i++) L[i] *= 3.0f;   /* well separated: FD keeps the same top-k */
        router_forward_cpu(P, I, Wk, L, N, E, k, renorm);
        router_backward_cpu(dL, G, P, I, Wk, N, E, k, renorm);
        RouterCtx c = {N, E, k, renorm};
        check_fd(router_fwd, L, 18, 6, G, dL, &c);
    }
}

/* ---- moe permute -------------------------------------------------------- */
static void test_moe_plan(void **state)
{
    (void)state;
    /* 4 tokens, top-2, 3 experts; pairs i = 2t + j route to
     * e1 e0 | e2 e1 | e0 e1 | e1 e2  -> expert 0: pairs 1,4; expert 1: 0,3,5,6;
     * expert 2: 2,7.  Rows: expert 0 at 0..1, expert 1 at 2..5, expert 2 at 6..7 */
    int32_t topk[8] = {1, 0, 2, 1, 0, 1, 1, 2}, row[8], cnt[3];
    int rows = moe_plan_cpu(row, cnt, topk, 4, 2, 3, 0);
    assert_int_equal(rows, 8);
    assert_int_equal(cnt[0], 2); assert_int_equal(cnt[1], 4); assert_int_equal(cnt[2], 2);
    int32_t want[8] = {2, 0, 6, 3, 1, 4, 5, 7};
    for (int i = 0; i < 8; i++) assert_int_equal(row[i], want[i]);
    /* capacity 2: expert 1 keeps pairs 0, 3 and drops 5, 6; expert 2 moves to rows 4..5 */
    rows = moe_plan_cpu(row, cnt, topk, 4, 2, 3, 2);
    assert_int_equal(rows, 6);
    int32_t want2[8] = {2, 0, 4, 3, 1, -1, -1, 5};
    for (int i = 0; i < 8; i++) assert_int_equal(row[i], want2[i]);
}

typedef struct { int N, k, C, rows; const int32_t *row; const float *other; int mode; } MoeCtx;
static void moe_fwd(const float *x, float *y, void *ctx)
{
    MoeCtx *c = ctx;
    if (c->mode == 0) moe_permute_forward_cpu(y, x, c->row, c->N, c->k, c->C);
    else if (c->mode == 1) moe_unpermute_forward_cpu(y, x, c->other, c->row, c->N, c->k, c->C);   /* x = expert rows */
    else moe_unpermute_forward_cpu(y, c->other, x, c->row, c->N, c->k, c->C);                       /* x = probs */
}
static void test_moe_backward(void **state)
{
    (void)state;
    Rng r = {23};
    int N = 4, k = 2, C = 3;
    int32_t topk[8] = {1, 0, 2, 1, 0, 1, 1, 2}, row[8], cnt[3];
    int rows = moe_plan_cpu(row, cnt, topk, N, k, 3, 2);   /* with drops */
    float x[12], G[24], dx[12], ex[18], prob[8], Gy[12], dex[18], dprob[8];
    fill(&r, x, 12); fill(&r, G, 24); fill(&r, ex, 18); fill(&r, prob, 8); fill(&r, Gy, 12);
    moe_permute_backward_cpu(dx, G, row, N, k, C);
    MoeCtx c0 = {N, k, C, rows, row, NULL, 0};
    check_fd(moe_fwd, x, 12, (size_t)rows * C, G, dx, &c0);
    memset(dex, 0, sizeof dex);
    moe_unpermute_backward_cpu(dex, dprob, Gy, ex, prob, row, N, k, C);
    MoeCtx c1 = {N, k, C, rows, row, prob, 1};
    check_fd(moe_fwd, ex, (size_t)rows * C, 12, Gy, dex, &c1);
    MoeCtx c2 = {N, k, C, rows, row, ex, 2};
    check_fd(moe_fwd, prob, 8, 12, Gy, dprob, &c2);
    assert_true(dprob[5] == 0.0f && dprob[6] == 0.0f);   /* dropped pairs */
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6];
    int32_t src[3] = {2, 0, 1};
    gather_rows_cpu(b, a, src, 3, 2);
    assert_true(b[0] == 5 && b[1] == 6 && b[2] == 1 && b[4] == 3);
}

/* ---- swiglu, cross-entropy, adam --------------------------------------- */
typedef struct { int N, F; } SwiCtx;
static void swi_fwd(const float *x, float *y, void *ctx) { SwiCtx *c = ctx; swiglu_forward_cpu(y, x, c->N, c->F); }
static void test_swiglu(void **state)
{
    (void)state;
    /* g = 0 -> silu 0; g = 1, u = 2 -> 2 / (1 + e^-1) */
    float gu[4] = {0, 1, 5, 2}, y[2];
    swiglu_forward_cpu(y, gu, 1, 2);
    assert_float_equal(y[0], 0.0, 1e-7);
    assert_float_equal(y[1], 2.0 / (1.0 + exp(-1.0)), 1e-6);
    Rng r = {29};
    float X[24], G[12], dX[24];
    fill(&r, X, 24); fill(&r, G, 12);
    swiglu_backward_cpu(dX, G, X, 2, 6);
    SwiCtx c = {2, 6};
    check_fd(swi_fwd, X, 24, 12, G, dX, &c);
}

typedef struct { int N, V; const int32_t *t; } CeCtx;
static void ce_fwd(const float *x, float *y, void *ctx) { CeCtx *c = ctx; crossentropy_forward_cpu(y, x, c->t, c->N, c->V); }
static void test_crossentropy(void **state)
{
    (void)state;
    /* uniform logits over V = 4: loss = log 4; ignored row: 0 */
    float l[8] = {0, 0, 0, 0, 1, 2, 3, 4}, loss[2];
    int32_t t[2] = {1, -1};
    crossentropy_forward_cpu(loss, l, t, 2, 4);
    assert_float_equal(loss[0], log(4.0), 1e-6);
    assert_float_equal(loss[1], 0.0, 0.0);
    float d[8];
    crossentropy_backward_cpu(d, l, t, 0.5f, 2, 4);
    assert_float_equal(d[0], 0.125, 1e-7);          /* 0.5 * 1/4 */
    assert_float_equal(d[1], 0.5 * (0.25 - 1), 1e-7);
    assert_float_equal(d[5], 0.0, 0.0);
    Rng r = {31};
    int32_t tt[3] = {0, 4, 2};
    float X[15], G[3] = {1, 1, 1}, dX[15];
    fill(&r, X, 15);
    crossentropy_backward_cpu(dX, X, tt, 1.0f, 3, 5);
    CeCtx c = {3, 5, tt};
    check_fd(ce_fwd, X, 15, 3, G, dX, &c);
}

/* vocabulary-parallel cross-entropy: V = 4 split in two slices of 2 */
static void test_crossentropy_vocab_parallel(void **state)
{
    (void)state;
    /* row 0: logits (0, 0 | 0, 0), target 1 (slice 0): loss log 4;
     * row 1: logits (1, 2 | 3, 4), target 3 (slice 1, local 1):
     *        loss = log(e + e^2 + e^3 + e^4) - 4 */
    float a[4] = {0, 0, 1, 2}, b[4] = {0, 0, 3, 4};
    int32_t ta[2] = {1, -1}, tb[2] = {-1, 1};
    float st[2 * 2 * 3];
    crossentropy_vp_stats_cpu(st, a, ta, 2, 2);
    crossentropy_vp_stats_cpu(st + 6, b, tb, 2, 2);
    /* slice 0, row 1: max 2, sum 1 + e^-1, no target */
    assert_float_equal(st[3], 2.0, 0);
    assert_float_equal(st[4], 1.0 + exp(-1.0), 1e-6);
    assert_float_equal(st[5], 0.0, 0);
    float la[2], lb[2];
    crossentropy_vp_finish_cpu(la, a, a, ta, st, 2, 0.5f, 2, 2);   /* in place */
    crossentropy_vp_finish_cpu(lb, b, b, tb, st, 2, 0.5f, 2, 2);
    double lse1 = log(exp(1.0) + exp(2.0) + exp(3.0) + exp(4.0));
    assert_float_equal(la[0], log(4.0), 1e-6);
    assert_float_equal(lb[0], log(4.0), 1e-6);
    assert_float_equal(la[1], lse1 - 4.0, 1e-5);
    assert_float_equal(lb[1], lse1 - 4.0, 1e-5);
    /* d logits = 0.5 * (softmax - onehot) on each slice */
    assert_float_equal(a[0], 0.125, 1e-7);
    assert_float_equal(a[1], 0.5 * (0.25 - 1), 1e-7);
    assert_float_equal(a[2], 0.5 * exp(1.0 - lse1), 1e-6);
    assert_float_equal(b[3], 0.5 * (exp(4.0 - lse1) - 1), 1e-6);
}

static void test_adam(void **state)
{
    (void)state;
    /* step 1: m^ = g, v^ = g^2, so the update is lr * (g / (|g| + eps) + wd * p) */
    float p[2] = {1.0f, -2.0f}, m[2] = {0, 0}, v[2] = {0, 0}, g[2] = {0.5f, -4.0f};
    AdamParams ap = {0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f};
    adam_update_cpu(p, m, v, g, 2, &ap);
    assert_float_equal(m[0], 0.05, 1e-7);
    assert_float_equal(v[1], 0.016, 1e-6);
    assert_float_equal(p[0], 1.0 - 0.1 * (1.0 + 0.01 * 1.0), 1e-6);
    assert_float_equal(p[1], -2.0 - 0.1 * (-1.0 + 0.01 * -2.0), 1e-6);
    /* step 2 with grad_scale 0.5, by hand: g' = 0.25 */
    ap.step = 2; ap.grad_scale = 0.5f;
    float g2[2] = {0.5f, 0.0f};
    double m2 = 0.9 * 0.05 + 0.1 * 0.25, v2 = 0.999 * 0.00025 + 0.001 * 0.0625;
    double upd = (m2 / (1 - 0.81)) / (sqrt(v2 / (1 - 0.999 * 0.999)) + 1e-8) + 0.01 * p[0];
    double want = p[0] - 0.1 * upd;
    adam_update_cpu(p, m, v, g2, 2, &ap);
    assert_float_equal(p[0], want, 1e-6);
    float x[3] = {1, 2, 2};
    assert_float_equal(norm_squared_cpu(x, 3), 9.0, 0.0);
}

static void test_elementwise(void **state)
{
    (void)state;
    float a[3] = {1, 2, 3}, b[3] = {10, 20, 30}, o[3];
    residual_forward_cpu(o, a, b, 3);
    assert_true(o[0] == 11 && o[2] == 33);
    scale_cpu(o, 0.5f, 3);
    assert_true(o[1] == 11);
    accumulate_cpu(o, a, 3);
    assert_true(o[0] == 6.5f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16),         cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_gemm_hand),    cmocka_unit_test(test_grouped_gemm),
        cmocka_unit_test(test_embedding),    cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),         cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_block_masks), cmocka_unit_test(test_attention_block_backward),
        cmocka_unit_test(test_attention_merge),
        cmocka_unit_test(test_router),       cmocka_unit_test(test_moe_plan),
        cmocka_unit_test(test_moe_backward), cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_crossentropy), cmocka_unit_test(test_adam),
        cmocka_unit_test(test_crossentropy_vocab_parallel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
