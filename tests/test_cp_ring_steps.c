/* test_cp_ring_steps.c: the zig-zag context-parallel chunk map and ring
 * steps of core/layout.h against a direct causal attention over the full
 * sequence.
 *
 * For CP = 1, 2, 4, 8 and chunks of 1, 3, 16 and 100 tokens (s = 2 CP c),
 * with random Q, K, V (4 query heads, 2 KV groups, head dim 8), every CP
 * rank's ring is simulated in one process: the rank holds the rows of its
 * two chunks (layout_cp_position_ids); at ring step i it holds the K/V rows
 * of rank steps[i].kv_from and computes ONE block with the CPU reference
 * (kernels/attention_api.h) of exactly the shape and mask the step says,
 * merging the block's (out, lse) into the running result of its rows.  The
 * final out and lse of every query row must equal a direct causal attention
 * over the s tokens, computed here by a plain loop in double (not by the
 * code under test), within 1e-5 (+ 1e-5 relative).  The backward: the
 * per-step block backwards (from the merged out and lse), dq summed on the
 * query's rank and dk, dv summed at the keys' positions, must equal a
 * direct backward of the full causal attention written here as well.
 *
 * How a step's block sits in the rank's rows (core/layout.h): a block of 2c
 * query rows is both local chunks, one of c rows the second local chunk
 * (chunk 2CP-1-r); a block of 2c K/V rows is both of the sender's chunks,
 * one of c rows its first chunk (chunk kv_from).  The causal mask of step 0
 * is over the local row order, which is the order of the positions (chunk r
 * precedes chunk 2CP-1-r), so the block's offsets are its first local rows.
 *
 * Independently of any arithmetic, every (query position, key position)
 * pair that a step's block makes visible is counted: over all ranks and
 * steps each pair with key <= query must be counted once and no other pair
 * at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/layout.h"
#include "kernels/attention_api.h"

enum { NH = 4, NKV = 2, HD = 8, MAX_CP = 8 };

static const int chunk_sizes[] = {1, 3, 16, 100};
#define NUM_CHUNK_SIZES ((int)(sizeof chunk_sizes / sizeof chunk_sizes[0]))

typedef struct { uint64_t s; } Rng;
static float rnd(Rng *r)   /* [-1, 1) */
{
    r->s ^= r->s << 13; r->s ^= r->s >> 7; r->s ^= r->s << 17;
    return (float)((r->s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* ---- the direct full-sequence causal attention (double) -------------------
 * q [s, NH, HD], k, v [s, NKV, HD]; query head h uses KV head h / (NH/NKV).
 * S[i,j] = q_i . k_j / sqrt(HD) for j <= i; lse_i = log sum_j exp(S[i,j]);
 * out_i = sum_j exp(S[i,j] - lse_i) v_j.  out [s, NH, HD], lse [s, NH]. */
static double score(const float *q, const float *k, int i, int j, int h)
{
    const float *qi = q + ((size_t)i * NH + h) * HD, *kj = k + ((size_t)j * NKV + h / (NH / NKV)) * HD;
    double d = 0;
    for (int e = 0; e < HD; e++) d += (double)qi[e] * kj[e];
    return d / sqrt((double)HD);
}

static void direct_forward(int s, const float *q, const float *k, const float *v, double *out, double *lse)
{
    for (int i = 0; i < s; i++)
        for (int h = 0; h < NH; h++) {
            double m = -INFINITY, sum = 0;
            for (int j = 0; j <= i; j++) m = fmax(m, score(q, k, i, j, h));
            for (int j = 0; j <= i; j++) sum += exp(score(q, k, i, j, h) - m);
            double l = m + log(sum);
            lse[(size_t)i * NH + h] = l;
            double *o = out + ((size_t)i * NH + h) * HD;
            for (int e = 0; e < HD; e++) o[e] = 0;
            for (int j = 0; j <= i; j++) {
                double p = exp(score(q, k, i, j, h) - l);
                const float *vj = v + ((size_t)j * NKV + h / (NH / NKV)) * HD;
                for (int e = 0; e < HD; e++) o[e] += p * vj[e];
            }
        }
}

/* The backward of the loss sum(dout . out): P[i,j] = exp(S[i,j] - lse_i),
 * dS = P (dout_i . v_j - dout_i . out_i), dq_i = sum_j dS k_j / sqrt(HD),
 * dk_j = sum_i dS q_i / sqrt(HD), dv_j = sum_i P dout_i (a KV head sums
 * over the query heads that share it).  dq [s, NH, HD], dk, dv [s, NKV, HD], =. */
static void direct_backward(int s, const float *q, const float *k, const float *v, const float *dout,
                            const double *out, const double *lse, double *dq, double *dk, double *dv)
{
    memset(dq, 0, sizeof(double) * (size_t)s * NH * HD);
    memset(dk, 0, sizeof(double) * (size_t)s * NKV * HD);
    memset(dv, 0, sizeof(double) * (size_t)s * NKV * HD);
    double scale = 1.0 / sqrt((double)HD);
    for (int i = 0; i < s; i++)
        for (int h = 0; h < NH; h++) {
            int g = h / (NH / NKV);
            const float *go = dout + ((size_t)i * NH + h) * HD, *qi = q + ((size_t)i * NH + h) * HD;
            const double *oi = out + ((size_t)i * NH + h) * HD;
            double D = 0;
            for (int e = 0; e < HD; e++) D += go[e] * oi[e];
            for (int j = 0; j <= i; j++) {
                const float *kj = k + ((size_t)j * NKV + g) * HD, *vj = v + ((size_t)j * NKV + g) * HD;
                double p = exp(score(q, k, i, j, h) - lse[(size_t)i * NH + h]), dp = 0;
                for (int e = 0; e < HD; e++) dp += go[e] * vj[e];
                double ds = p * (dp - D);
                for (int e = 0; e < HD; e++) {
                    dq[((size_t)i * NH + h) * HD + e] += ds * kj[e] * scale;
                    dk[((size_t)j * NKV + g) * HD + e] += ds * qi[e] * scale;
                    dv[((size_t)j * NKV + g) * HD + e] += p * go[e];
                }
            }
        }
}

/* ---- one step's block, as the layout describes it ------------------------ */

/* First local query row and first K/V row (of the sender's) of step st on a
 * rank holding 2c rows (c = s / (2 cp); cp 1: c = s / 2). */
static void step_rows(const CpRingStep *st, int c, int *q0, int *kv0)
{
    assert_true(st->q_rows == c || st->q_rows == 2 * c);
    assert_true(st->kv_rows == c || st->kv_rows == 2 * c);
    *q0 = st->q_rows == 2 * c ? 0 : c;   /* c rows: the second local chunk */
    *kv0 = 0;                            /* c rows: the sender's first chunk */
}

static AttnShape step_shape(const CpRingStep *st, int q0, int kv0)
{
    AttnShape a = {.B = 1, .Tq = st->q_rows, .Tk = st->kv_rows, .nh = NH, .nkv = NKV, .hd_qk = HD,
                   .hd_v = HD, .q_stride = NH * HD, .k_stride = NKV * HD, .v_stride = NKV * HD,
                   .mask = st->mask, .q_offset = q0, .kv_offset = kv0};
    return a;
}

/* The block of each ring step of CP rank r: its shape, the rank whose K/V
 * it uses, its first query row and first K/V row. */
typedef struct {
    AttnShape sh;
    int from, q0, kv0;
} StepBlock;

static void rank_blocks(int s, int cp, int r, int c, StepBlock *blk)
{
    CpRingStep st[MAX_CP];
    MpError err = {{0}};
    assert_int_equal(layout_cp_ring_steps(s, cp, r, st, &err), 0);
    for (int i = 0; i < cp; i++) {
        blk[i].from = st[i].kv_from;
        step_rows(&st[i], c, &blk[i].q0, &blk[i].kv0);
        blk[i].sh = step_shape(&st[i], blk[i].q0, blk[i].kv0);
        assert_int_equal(attn_shape_check(&blk[i].sh, &err), 0);
    }
}

/* The rows of one sequence as the CP ranks hold them: pos[r] [2c] position
 * ids, and each rank's local q [2c, NH, HD], k, v, dout rows gathered from
 * the full sequence by those positions. */
typedef struct {
    int s, cp, c;
    int *pos[MAX_CP];
    float *q[MAX_CP], *k[MAX_CP], *v[MAX_CP], *dout[MAX_CP];
} Ranks;

static void gather_rows(float *dst, const float *src, const int *pos, int n, int width)
{
    for (int t = 0; t < n; t++) memcpy(dst + (size_t)t * width, src + (size_t)pos[t] * width, sizeof(float) * (size_t)width);
}

static void ranks_make(Ranks *R, int s, int cp, const float *q, const float *k, const float *v, const float *dout)
{
    memset(R, 0, sizeof *R);
    R->s = s; R->cp = cp; R->c = s / 2;
    if (cp > 1) R->c = s / (2 * cp);
    int n = 2 * R->c;
    MpError err = {{0}};
    for (int r = 0; r < cp; r++) {
        R->pos[r] = malloc(sizeof(int) * (size_t)n);
        assert_int_equal(layout_cp_position_ids(s, cp, r, R->pos[r], &err), 0);
        R->q[r] = malloc(sizeof(float) * (size_t)n * NH * HD);
        R->dout[r] = malloc(sizeof(float) * (size_t)n * NH * HD);
        R->k[r] = malloc(sizeof(float) * (size_t)n * NKV * HD);
        R->v[r] = malloc(sizeof(float) * (size_t)n * NKV * HD);
        gather_rows(R->q[r], q, R->pos[r], n, NH * HD);
        gather_rows(R->dout[r], dout, R->pos[r], n, NH * HD);
        gather_rows(R->k[r], k, R->pos[r], n, NKV * HD);
        gather_rows(R->v[r], v, R->pos[r], n, NKV * HD);
    }
}

static void ranks_free(Ranks *R)
{
    for (int r = 0; r < R->cp; r++) {
        free(R->pos[r]); free(R->q[r]); free(R->k[r]); free(R->v[r]); free(R->dout[r]);
    }
}

/* ---- hand-checked cases: CP 2 ---------------------------------------------- */

/* CP 2 cuts a sequence into 4 chunks: rank 0 holds chunks 0 and 3, rank 1
 * chunks 1 and 2. */
static void test_cp2_chunk_map(void **state)
{
    (void)state;
    /* cp, rank, its two chunks (CP 1: the whole sequence is chunks 0, 1) */
    static const int want[][4] = {{2, 0, 0, 3}, {2, 1, 1, 2}, {1, 0, 0, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int ch[2];
        layout_cp_chunks(want[i][0], want[i][1], ch);
        assert_int_equal(ch[0], want[i][2]);
        assert_int_equal(ch[1], want[i][3]);
    }
}

/* CP 2, s 8 (chunks of 2): rank 0 positions 0 1 | 6 7, rank 1 2 3 | 4 5;
 * s 12 (chunks of 3): rank 0 0 1 2 | 9 10 11, rank 1 3 4 5 | 6 7 8. */
static void test_cp2_position_ids(void **state)
{
    (void)state;
    MpError err = {{0}};
    int pos[6];
    assert_int_equal(layout_cp_position_ids(8, 2, 0, pos, &err), 0);
    assert_memory_equal(pos, ((int[]){0, 1, 6, 7}), 4 * sizeof(int));
    assert_int_equal(layout_cp_position_ids(8, 2, 1, pos, &err), 0);
    assert_memory_equal(pos, ((int[]){2, 3, 4, 5}), 4 * sizeof(int));
    assert_int_equal(layout_cp_position_ids(12, 2, 0, pos, &err), 0);
    assert_memory_equal(pos, ((int[]){0, 1, 2, 9, 10, 11}), 6 * sizeof(int));
    assert_int_equal(layout_cp_position_ids(12, 2, 1, pos, &err), 0);
    assert_memory_equal(pos, ((int[]){3, 4, 5, 6, 7, 8}), 6 * sizeof(int));
    /* 10 tokens do not cut into 4 chunks */
    assert_int_equal(layout_cp_position_ids(10, 2, 0, pos, &err), -1);
    assert_non_null(strstr(err.msg, "seq"));
}

/* CP 2, s 8, c 2.  Rank 0 holds positions {0,1,6,7}, rank 1 {2,3,4,5}.
 *   rank 0, step 0: its own K/V {0,1,6,7}: 4 x 4 causal in local order
 *                   (0,1 see 0..row; 6,7 see 0,1 and 6..row).
 *   rank 0, step 1: K/V of rank 1 {2,3,4,5}: queries 0,1 see none of them,
 *                   6,7 see all four: the second local chunk (2 rows) x
 *                   4 keys, no mask.
 *   rank 1, step 0: its own {2,3,4,5}: 4 x 4 causal.
 *   rank 1, step 1: K/V of rank 0 {0,1,6,7}: every query sees 0,1 and none
 *                   sees 6,7: 4 query rows x the first chunk (2 keys), no mask.
 * Pairs (the layout's FLOP count, causal counted as q*kv/2): 8 each. */
static void test_cp2_step_masks(void **state)
{
    (void)state;
    /* [rank][step]: kv_from, q_rows, kv_rows, mask */
    static const int want[2][2][4] = {
        {{0, 4, 4, ATTN_MASK_CAUSAL}, {1, 2, 4, ATTN_MASK_NONE}},
        {{1, 4, 4, ATTN_MASK_CAUSAL}, {0, 4, 2, ATTN_MASK_NONE}},
    };
    MpError err = {{0}};
    for (int r = 0; r < 2; r++) {
        CpRingStep st[2];
        assert_int_equal(layout_cp_ring_steps(8, 2, r, st, &err), 0);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(st[i].kv_from, want[r][i][0]);
            assert_int_equal(st[i].q_rows, want[r][i][1]);
            assert_int_equal(st[i].kv_rows, want[r][i][2]);
            assert_int_equal(st[i].mask, want[r][i][3]);
            assert_true(st[i].pairs == 8.0);
        }
    }
}

/* ---- the steps cover exactly the causal mask -------------------------------- */

/* Over all ranks and steps of (cp, s), each visible (query, key) pair of a
 * step's block counted at its positions: count[qp][kp] must be 1 where
 * kp <= qp and 0 elsewhere.  Also each step's `pairs` is its block's visible
 * pairs (the causal diagonal block counted as n^2/2 there, n(n+1)/2 here). */
static void check_coverage(int cp, int c)
{
    int s = cp == 1 ? 2 * c : 2 * cp * c;
    unsigned char *count = calloc((size_t)s * s, 1);
    int *pos[MAX_CP];
    MpError err = {{0}};
    for (int r = 0; r < cp; r++) {
        pos[r] = malloc(sizeof(int) * (size_t)2 * c);
        assert_int_equal(layout_cp_position_ids(s, cp, r, pos[r], &err), 0);
    }
    for (int r = 0; r < cp; r++) {
        CpRingStep st[MAX_CP];
        assert_int_equal(layout_cp_ring_steps(s, cp, r, st, &err), 0);
        for (int i = 0; i < cp; i++) {
            int q0, kv0;
            step_rows(&st[i], c, &q0, &kv0);
            assert_int_equal(st[i].kv_from, ((r - i) % cp + cp) % cp);
            double visible = 0;
            for (int a = 0; a < st[i].q_rows; a++)
                for (int b = 0; b < st[i].kv_rows; b++) {
                    if (st[i].mask == ATTN_MASK_CAUSAL && kv0 + b > q0 + a) continue;
                    int qp = pos[r][q0 + a], kp = pos[st[i].kv_from][kv0 + b];
                    assert_true(count[(size_t)qp * s + kp] < 255);
                    count[(size_t)qp * s + kp]++;
                    visible++;
                }
            double n = st[i].q_rows;
            if (st[i].mask == ATTN_MASK_CAUSAL) assert_true(visible == st[i].pairs + n / 2);
            else assert_true(visible == st[i].pairs);
        }
    }
    long wrong = 0;
    for (int qp = 0; qp < s; qp++)
        for (int kp = 0; kp < s; kp++) wrong += count[(size_t)qp * s + kp] != (kp <= qp ? 1 : 0);
    if (wrong) print_error("cp %d c %d: %ld (query, key) pairs covered wrongly\n", cp, c, wrong);
    assert_int_equal(wrong, 0);
    for (int r = 0; r < cp; r++) free(pos[r]);
    free(count);
}

static void test_steps_cover_causal_mask(void **state)
{
    (void)state;
    for (int cp = 1; cp <= MAX_CP; cp *= 2)
        for (int j = 0; j < NUM_CHUNK_SIZES; j++) check_coverage(cp, chunk_sizes[j]);
}

/* ---- the ring against the direct attention ---------------------------------- */

/* |got - want| <= 1e-5 + 1e-5 |want|; *worst keeps the largest
 * |got - want| / (1 + |want|) seen */
static int close_to(double got, double want, double *worst)
{
    double e = fabs(got - want);
    if (!(e / (1 + fabs(want)) <= *worst)) *worst = e / (1 + fabs(want));
    return e <= 1e-5 + 1e-5 * fabs(want);
}

/* Simulates every rank's ring for (cp, c); returns the number of values
 * (out, lse, dq, dk, dv) that differ from the direct attention, *worst the
 * largest difference (relative to 1 + |value|). */
static long ring_vs_direct(int cp, int c, uint64_t seed, double *worst)
{
    *worst = 0;
    int s = cp == 1 ? 2 * c : 2 * cp * c, n = 2 * c;
    size_t qn = (size_t)s * NH * HD, kn = (size_t)s * NKV * HD;
    float *q = malloc(qn * sizeof(float)), *k = malloc(kn * sizeof(float));
    float *v = malloc(kn * sizeof(float)), *dout = malloc(qn * sizeof(float));
    Rng rng = {seed};
    for (size_t i = 0; i < qn; i++) q[i] = rnd(&rng);
    for (size_t i = 0; i < kn; i++) k[i] = rnd(&rng);
    for (size_t i = 0; i < kn; i++) v[i] = rnd(&rng);
    for (size_t i = 0; i < qn; i++) dout[i] = rnd(&rng);

    double *ref_out = malloc(qn * sizeof(double)), *ref_lse = malloc((size_t)s * NH * sizeof(double));
    double *ref_dq = malloc(qn * sizeof(double)), *ref_dk = malloc(kn * sizeof(double));
    double *ref_dv = malloc(kn * sizeof(double));
    direct_forward(s, q, k, v, ref_out, ref_lse);
    direct_backward(s, q, k, v, dout, ref_out, ref_lse, ref_dq, ref_dk, ref_dv);

    Ranks R;
    ranks_make(&R, s, cp, q, k, v, dout);
    /* per rank: the running (out, lse) of each local query half,
     * out [2][c, NH, HD] (the halves one after the other: [2c, NH, HD]),
     * lse [2][NH, c] */
    float *out[MAX_CP], *lse[MAX_CP];
    float *bo = malloc(sizeof(float) * (size_t)n * NH * HD), *bl = malloc(sizeof(float) * (size_t)n * NH);
    float *tl = malloc(sizeof(float) * (size_t)c * NH);
    for (int r = 0; r < cp; r++) {
        out[r] = calloc((size_t)n * NH * HD, sizeof(float));
        lse[r] = malloc(sizeof(float) * (size_t)n * NH);
        for (int i = 0; i < n * NH; i++) lse[r][i] = -INFINITY;   /* nothing seen yet */
        StepBlock blk[MAX_CP];
        rank_blocks(s, cp, r, c, blk);
        for (int i = 0; i < cp; i++) {
            int q0 = blk[i].q0, kv0 = blk[i].kv0, from = blk[i].from;
            const AttnShape sh = blk[i].sh;
            assert_int_equal(attention_block_forward_cpu(&sh, bo, bl, R.q[r] + (size_t)q0 * NH * HD,
                                                         R.k[from] + (size_t)kv0 * NKV * HD,
                                                         R.v[from] + (size_t)kv0 * NKV * HD), 0);
            /* merge each local half the block covers into its running result */
            for (int hf = q0 / c; hf < 2; hf++) {
                int b0 = hf * c - q0;   /* the half's first row in the block */
                for (int h = 0; h < NH; h++)
                    for (int t = 0; t < c; t++) tl[h * c + t] = bl[(size_t)h * sh.Tq + b0 + t];
                attention_merge_cpu(out[r] + (size_t)hf * c * NH * HD, lse[r] + (size_t)hf * NH * c,
                                    bo + (size_t)b0 * NH * HD, tl, 1, c, NH, HD);
            }
        }
    }

    /* forward: every row of every rank against the direct attention */
    long bad = 0;
    for (int r = 0; r < cp; r++)
        for (int t = 0; t < n; t++) {
            int p = R.pos[r][t], hf = t / c, tt = t % c;
            for (int h = 0; h < NH; h++) {
                bad += !close_to(lse[r][((size_t)hf * NH + h) * c + tt], ref_lse[(size_t)p * NH + h], worst);
                for (int e = 0; e < HD; e++)
                    bad += !close_to(out[r][((size_t)t * NH + h) * HD + e], ref_out[((size_t)p * NH + h) * HD + e], worst);
            }
        }

    /* backward: the same steps, each block's backward from the merged out
     * and lse of its rows; dq summed at the query positions, dk and dv at
     * the key positions (on the ring they travel home to the sender) */
    double *dq = calloc(qn, sizeof(double)), *dk = calloc(kn, sizeof(double)), *dv = calloc(kn, sizeof(double));
    float *bdq = malloc(sizeof(float) * (size_t)n * NH * HD);
    float *bdk = malloc(sizeof(float) * (size_t)n * NKV * HD), *bdv = malloc(sizeof(float) * (size_t)n * NKV * HD);
    for (int r = 0; r < cp; r++) {
        StepBlock blk[MAX_CP];
        rank_blocks(s, cp, r, c, blk);
        for (int i = 0; i < cp; i++) {
            int q0 = blk[i].q0, kv0 = blk[i].kv0, from = blk[i].from;
            const AttnShape sh = blk[i].sh;
            /* the block's rows' final lse, [NH, Tq] */
            for (int h = 0; h < NH; h++)
                for (int a = 0; a < sh.Tq; a++) {
                    int t = q0 + a;
                    bl[(size_t)h * sh.Tq + a] = lse[r][((size_t)(t / c) * NH + h) * c + t % c];
                }
            assert_int_equal(attention_block_backward_cpu(&sh, bdq, bdk, bdv, R.dout[r] + (size_t)q0 * NH * HD,
                                                          R.q[r] + (size_t)q0 * NH * HD,
                                                          R.k[from] + (size_t)kv0 * NKV * HD,
                                                          R.v[from] + (size_t)kv0 * NKV * HD,
                                                          out[r] + (size_t)q0 * NH * HD, bl, 0, sh.Tq), 0);
            for (int a = 0; a < sh.Tq; a++) {
                int p = R.pos[r][q0 + a];
                for (int x = 0; x < NH * HD; x++) dq[(size_t)p * NH * HD + x] += bdq[(size_t)a * NH * HD + x];
            }
            for (int b = 0; b < sh.Tk; b++) {
                int p = R.pos[from][kv0 + b];
                for (int x = 0; x < NKV * HD; x++) {
                    dk[(size_t)p * NKV * HD + x] += bdk[(size_t)b * NKV * HD + x];
                    dv[(size_t)p * NKV * HD + x] += bdv[(size_t)b * NKV * HD + x];
                }
            }
        }
    }
    for (size_t i = 0; i < qn; i++) bad += !close_to(dq[i], ref_dq[i], worst);
    for (size_t i = 0; i < kn; i++) bad += !close_to(dk[i], ref_dk[i], worst) + !close_to(dv[i], ref_dv[i], worst);

    for (int r = 0; r < cp; r++) { free(out[r]); free(lse[r]); }
    ranks_free(&R);
    free(bo); free(bl); free(tl); free(bdq); free(bdk); free(bdv);
    free(dq); free(dk); free(dv);
    free(ref_out); free(ref_lse); free(ref_dq); free(ref_dk); free(ref_dv);
    free(q); free(k); free(v); free(dout);
    return bad;
}

/* state: &cp */
static void test_ring_equals_full_attention(void **state)
{
    int cp = *(const int *)*state;
    for (int j = 0; j < NUM_CHUNK_SIZES; j++) {
        double worst;
        long bad = ring_vs_direct(cp, chunk_sizes[j], 0x9e3779b97f4a7c15ull + (uint64_t)(cp * 131 + j), &worst);
        print_message("  cp %d, chunks of %3d tokens (s %4d): largest difference %.2e\n", cp, chunk_sizes[j],
                      cp == 1 ? 2 * chunk_sizes[j] : 2 * cp * chunk_sizes[j], worst);
        if (bad) print_error("cp %d, chunks of %d tokens: %ld values differ\n", cp, chunk_sizes[j], bad);
        assert_int_equal(bad, 0);
    }
}

/* The comparison can fail: the same ring with step 0's causal mask dropped
 * (every local query sees every local key) differs from the direct attention. */
static void test_wrong_mask_is_caught(void **state)
{
    (void)state;
    int cp = 2, c = 3, s = 2 * cp * c, n = 2 * c;
    Rng rng = {7};
    float q[12 * NH * HD], k[12 * NKV * HD], v[12 * NKV * HD];
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = rnd(&rng);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) { k[i] = rnd(&rng); v[i] = rnd(&rng); }
    double ref_out[12 * NH * HD], ref_lse[12 * NH];
    direct_forward(s, q, k, v, ref_out, ref_lse);
    Ranks R;
    ranks_make(&R, s, cp, q, k, v, q);
    CpRingStep st[2];
    MpError err = {{0}};
    assert_int_equal(layout_cp_ring_steps(s, cp, 0, st, &err), 0);
    st[0].mask = ATTN_MASK_NONE;
    AttnShape sh = step_shape(&st[0], 0, 0);
    float bo[6 * NH * HD], bl[6 * NH];
    assert_int_equal(attention_block_forward_cpu(&sh, bo, bl, R.q[0], R.k[0], R.v[0]), 0);
    /* rank 0's first row (position 0) should see only key 0 */
    long bad = 0;
    double worst = 0;
    for (int h = 0; h < NH; h++) bad += !close_to(bl[(size_t)h * n], ref_lse[h], &worst);
    assert_true(bad > 0);
    ranks_free(&R);
}

int main(void)
{
    static const int cps[] = {1, 2, 4, 8};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cp2_chunk_map),
        cmocka_unit_test(test_cp2_position_ids),
        cmocka_unit_test(test_cp2_step_masks),
        cmocka_unit_test(test_steps_cover_causal_mask),
        {"ring cp1: out, lse, dq, dk, dv = full causal attention", test_ring_equals_full_attention, NULL, NULL, (void *)&cps[0]},
        {"ring cp2: out, lse, dq, dk, dv = full causal attention", test_ring_equals_full_attention, NULL, NULL, (void *)&cps[1]},
        {"ring cp4: out, lse, dq, dk, dv = full causal attention", test_ring_equals_full_attention, NULL, NULL, (void *)&cps[2]},
        {"ring cp8: out, lse, dq, dk, dv = full causal attention", test_ring_equals_full_attention, NULL, NULL, (void *)&cps[3]},
        cmocka_unit_test(test_wrong_mask_is_caught),
    };
    return cmocka_run_group_tests_name("cp_ring_steps", tests, NULL, NULL);
}
