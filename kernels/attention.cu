/* attention.cu: causal GQA flash attention, forward and backward
 * (kernels/attention.h), FlashAttention-2 style (Dao 2023) on tensor cores
 * through mma.sync.m16n8k16 bf16 with fp32 accumulation.
 *
 * Forward: one block of 4 warps per (64 query rows, head, batch); each warp
 * owns 16 query rows, keeps its Q fragments and O accumulator in registers,
 * walks the key tiles of 64 (K and V tiles in shared memory, double-buffered
 * with cp.async), online softmax in the log2 domain.  Heaviest (last) query
 * blocks are launched first.
 *
 * Backward: one block of 4 warps per (64 keys, KV head, batch); each warp owns
 * 16 keys and accumulates their dK, dV in registers over every query head of
 * the group and every query tile of 64 at or after the key tile; recomputes
 * P from lse; dS goes through shared memory to form dQ, which is added into
 * an fp32 accumulator with atomics and cast to bf16 at the end.
 *
 * Limits: hd 64 or 128; q_stride, kv_stride multiples of 8 (16-byte rows). */
#include "kernels/cuda_util.cuh"
#include "kernels/attention.h"

#define ATT_BQ 64
#define ATT_BK 64
#define ATT_THREADS 128       /* backward: 4 warps x 16 keys */
#define ATT_FWD_BQ 128        /* forward: 8 warps x 16 query rows */
#define ATT_FWD_THREADS 256
#define LOG2E 1.4426950408889634f

static __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
static __device__ __forceinline__ uint32_t ld32(const bf16_t *p) { return *(const uint32_t *)p; }

/* ldmatrix: lane l gives the address of row l%8 of 8x8 matrix l/8; register j
 * of every lane gets matrix j's (row lane/4, cols 2*(lane%4) and +1), i.e. an
 * mma fragment; .trans gives (rows 2*(lane%4) and +1, col lane/4). */
static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16_t *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16_t *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
static __device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

/* rows [row0, row0+64) of a [T, ...] head slice (token stride `stride`) into
 * smem [64][HD+8]; rows >= T are zero-filled. */
template <int HD>
static __device__ __forceinline__ void load_tile(bf16_t *sm, const bf16_t *g, int row0, int T, int stride)
{
    constexpr int LD = HD + 8, VPR = HD / 8;   /* 16-byte vectors per row */
    for (int i = threadIdx.x; i < 64 * VPR; i += blockDim.x) {
        int r = i / VPR, c = (i % VPR) * 8;
        bf16_t *dst = sm + r * LD + c;
        if (row0 + r < T) cp_async16(dst, g + (size_t)(row0 + r) * stride + c);
        else *(uint4 *)dst = make_uint4(0, 0, 0, 0);
    }
}

template <int HD>
__global__ void __launch_bounds__(ATT_FWD_THREADS)
attention_fwd_kernel(bf16_t *out, float *lse, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                     int T, int nh, int nkv, int q_stride, int kv_stride, float scale_log2)
{
    constexpr int LD = HD + 8, NT_D = HD / 8, KSTEPS = HD / 16;
    extern __shared__ __align__(16) unsigned char att_smem[];
    bf16_t *Ks = (bf16_t *)att_smem;           /* [2][64][LD] */
    bf16_t *Vs = Ks + 2 * 64 * LD;             /* [2][64][LD] */
    int nq = (T + ATT_FWD_BQ - 1) / ATT_FWD_BQ;
    int qb = nq - 1 - blockIdx.z, h = blockIdx.x, b = blockIdx.y;   /* last (heaviest) query blocks first */
    int kh = h / (nh / nkv);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, quad = lane >> 2, qi = lane & 3;
    int warp_row0 = qb * ATT_FWD_BQ + warp * 16;
    int row_a = warp_row0 + quad, row_b = row_a + 8;   /* this thread's 2 query rows */
    /* ldmatrix addressing: this lane's matrix and row */
    int lm = lane >> 3, lr = lane & 7;

    const bf16_t *qh = q + (size_t)b * T * q_stride + (size_t)h * HD;
    const bf16_t *kbase = k + (size_t)b * T * kv_stride + (size_t)kh * HD;
    const bf16_t *vbase = v + (size_t)b * T * kv_stride + (size_t)kh * HD;

    /* Q fragments (A operand, 16 rows x HD) straight from global memory */
    uint32_t qf[KSTEPS][4];
#pragma unroll
    for (int kk = 0; kk < KSTEPS; kk++) {
        int c = kk * 16 + qi * 2;
        qf[kk][0] = row_a < T ? ld32(qh + (size_t)row_a * q_stride + c) : 0u;
        qf[kk][1] = row_b < T ? ld32(qh + (size_t)row_b * q_stride + c) : 0u;
        qf[kk][2] = row_a < T ? ld32(qh + (size_t)row_a * q_stride + c + 8) : 0u;
        qf[kk][3] = row_b < T ? ld32(qh + (size_t)row_b * q_stride + c + 8) : 0u;
    }
    float o[NT_D][4];
#pragma unroll
    for (int i = 0; i < NT_D; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;

    /* causal: key tiles up to the one holding the block's last query row */
    int last_row = min(qb * ATT_FWD_BQ + ATT_FWD_BQ, T) - 1;
    int nkt = last_row / ATT_BK + 1;
    load_tile<HD>(Ks, kbase, 0, T, kv_stride);
    load_tile<HD>(Vs, vbase, 0, T, kv_stride);
    cp_async_commit();
    for (int kt = 0; kt < nkt; kt++) {
        cp_async_wait_all();
        __syncthreads();
        if (kt + 1 < nkt) {
            int nb = (kt + 1) & 1;
            load_tile<HD>(Ks + nb * 64 * LD, kbase, (kt + 1) * ATT_BK, T, kv_stride);
            load_tile<HD>(Vs + nb * 64 * LD, vbase, (kt + 1) * ATT_BK, T, kv_stride);
            cp_async_commit();
        }
        int key0 = kt * ATT_BK;
        if (key0 > warp_row0 + 15) continue;   /* every key of the tile is after this warp's rows */
        const bf16_t *Kt = Ks + (kt & 1) * 64 * LD, *Vt = Vs + (kt & 1) * 64 * LD;
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
#pragma unroll
            for (int nt = 0; nt < 8; nt += 2) {
                /* matrices: (nt, d lo) (nt, d hi) (nt+1, d lo) (nt+1, d hi) */
                uint32_t kf[4];
                ldsm_x4(kf, Kt + ((nt + (lm >> 1)) * 8 + lr) * LD + kk * 16 + (lm & 1) * 8);
                mma16816(s[nt], qf[kk], kf[0], kf[1]);
                mma16816(s[nt + 1], qf[kk], kf[2], kf[3]);
            }
        }
        /* scale into the log2 domain; causal mask only where the tile reaches past the warp's first row */
        bool need_mask = key0 + ATT_BK - 1 > warp_row0;
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[nt][e] * scale_log2;
                if (need_mask) {
                    int key = key0 + nt * 8 + qi * 2 + (e & 1);
                    int row = e < 2 ? row_a : row_b;
                    if (key > row) x = -INFINITY;
                }
                s[nt][e] = x;
            }
            mx_a = fmaxf(mx_a, fmaxf(s[nt][0], s[nt][1]));
            mx_b = fmaxf(mx_b, fmaxf(s[nt][2], s[nt][3]));
        }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
        /* a row with every key so far masked keeps m = -inf: use 0 as the base
         * so that exp2(-inf - 0) = 0 rather than NaN */
        float base_a = mx_a == -INFINITY ? 0.0f : mx_a, base_b = mx_b == -INFINITY ? 0.0f : mx_b;
        float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);
        m_a = mx_a; m_b = mx_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - base_a); s[nt][1] = exp2f(s[nt][1] - base_a);
            s[nt][2] = exp2f(s[nt][2] - base_b); s[nt][3] = exp2f(s[nt][3] - base_b);
            sum_a += s[nt][0] + s[nt][1];
            sum_b += s[nt][2] + s[nt][3];
        }
        l_a = l_a * corr_a + sum_a;   /* per-thread partial; quad-reduced at the end */
        l_b = l_b * corr_b + sum_b;
#pragma unroll
        for (int i = 0; i < NT_D; i++) {
            o[i][0] *= corr_a; o[i][1] *= corr_a; o[i][2] *= corr_b; o[i][3] *= corr_b;
        }
        /* O += P V: P's C layout of two adjacent 8-key tiles is one A fragment */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dt = 0; dt < NT_D; dt += 2) {
                /* transposed matrices: (keys lo, dt) (keys hi, dt) (keys lo, dt+1) (keys hi, dt+1) */
                uint32_t vf[4];
                ldsm_x4_t(vf, Vt + (kk * 16 + (lm & 1) * 8 + lr) * LD + (dt + (lm >> 1)) * 8);
                mma16816(o[dt], pa, vf[0], vf[1]);
                mma16816(o[dt + 1], pa, vf[2], vf[3]);
            }
        }
    }
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    float inv_a = 1.0f / l_a, inv_b = 1.0f / l_b;
#pragma unroll
    for (int dt = 0; dt < NT_D; dt++) {
        int c = dt * 8 + qi * 2;
        if (row_a < T)
            *(uint32_t *)(out + ((size_t)(b * T + row_a) * nh + h) * HD + c) = pack_bf16(o[dt][0] * inv_a, o[dt][1] * inv_a);
        if (row_b < T)
            *(uint32_t *)(out + ((size_t)(b * T + row_b) * nh + h) * HD + c) = pack_bf16(o[dt][2] * inv_b, o[dt][3] * inv_b);
    }
    if (qi == 0) {
        /* natural-log lse = (m2 + log2 l) * ln 2 */
        if (row_a < T) lse[((size_t)b * nh + h) * T + row_a] = (m_a + log2f(l_a)) * 0.6931471805599453f;
        if (row_b < T) lse[((size_t)b * nh + h) * T + row_b] = (m_b + log2f(l_b)) * 0.6931471805599453f;
    }
}

/* Dl[b,h,t] = dout . out (one warp per row); also zeroes the dq accumulator row. */
__global__ static void attention_bwd_pre_kernel(float *Dl, float *dq_acc, const bf16_t *dout, const bf16_t *out,
                                                int B, int T, int nh, int hd)
{
    int lane = threadIdx.x & 31;
    size_t row = blockIdx.x * (size_t)(blockDim.x >> 5) + (threadIdx.x >> 5);   /* (b, t, h) */
    if (row >= (size_t)B * T * nh) return;
    const bf16_t *o = out + row * hd, *d = dout + row * hd;
    float s = 0.0f;
    for (int c = lane; c < hd; c += 32) { s += ldbf(o + c) * ldbf(d + c); dq_acc[row * hd + c] = 0.0f; }
    s = warp_sum(s);
    int h = (int)(row % nh);
    size_t bt = row / nh;
    int t = (int)(bt % T), b = (int)(bt / T);
    if (lane == 0) Dl[((size_t)b * nh + h) * T + t] = s;
}

__global__ static void attention_dq_cast_kernel(bf16_t *dq, const float *dq_acc, int B, int T, int nh, int hd, int q_stride)
{
    size_t total = (size_t)B * T * nh * hd;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / hd;   /* (b*T + t)*nh + h */
        int c = (int)(i % hd), h = (int)(row % nh);
        size_t bt = row / nh;
        stbf(dq + bt * q_stride + (size_t)h * hd + c, dq_acc[i]);
    }
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_bwd_kernel(bf16_t *dk, bf16_t *dv, float *dq_acc, const float *Dl, const bf16_t *dout,
                     const bf16_t *q, const bf16_t *k, const bf16_t *v, const float *lse, int T,
                     int nh, int nkv, int q_stride, int kv_stride, float scale)
{
    constexpr int LD = HD + 8, NT_D = HD / 8, KSTEPS = HD / 16, LDS = 64 + 8;
    extern __shared__ __align__(16) unsigned char att_smem[];
    bf16_t *Ks = (bf16_t *)att_smem, *Vs = Ks + 64 * LD, *Qs = Vs + 64 * LD, *dOs = Qs + 64 * LD;
    bf16_t *dSs = dOs + 64 * LD;                       /* [64 keys][LDS] */
    float *lse_s = (float *)(dSs + 64 * LDS), *Dl_s = lse_s + 64;
    int kb = blockIdx.z, kh = blockIdx.x, b = blockIdx.y;   /* first key blocks have the most queries: first */
    int group = nh / nkv;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, quad = lane >> 2, qi = lane & 3;
    int key_a = kb * ATT_BK + warp * 16 + quad, key_b = key_a + 8;
    int lm = lane >> 3, lr = lane & 7;   /* ldmatrix: this lane's matrix and row */
    float scale_log2 = scale * LOG2E;

    load_tile<HD>(Ks, k + (size_t)b * T * kv_stride + (size_t)kh * HD, kb * ATT_BK, T, kv_stride);
    load_tile<HD>(Vs, v + (size_t)b * T * kv_stride + (size_t)kh * HD, kb * ATT_BK, T, kv_stride);
    cp_async_commit();

    float dkacc[NT_D][4], dvacc[NT_D][4];
#pragma unroll
    for (int i = 0; i < NT_D; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dkacc[i][e] = dvacc[i][e] = 0.0f;

    const bf16_t *Kw = Ks + warp * 16 * LD, *Vw = Vs + warp * 16 * LD;
    int nqb = (T + ATT_BQ - 1) / ATT_BQ;
    for (int hh = 0; hh < group; hh++) {
        int h = kh * group + hh;
        for (int qb = kb; qb < nqb; qb++) {
            __syncthreads();   /* previous tile's readers are done */
            load_tile<HD>(Qs, q + (size_t)b * T * q_stride + (size_t)h * HD, qb * ATT_BQ, T, q_stride);
            /* dout is contiguous [B, T, nh, HD] */
            load_tile<HD>(dOs, dout + (size_t)b * T * nh * HD + (size_t)h * HD, qb * ATT_BQ, T, nh * HD);
            cp_async_commit();
            if (threadIdx.x < 64) {
                int t = qb * ATT_BQ + threadIdx.x;
                lse_s[threadIdx.x] = t < T ? lse[((size_t)b * nh + h) * T + t] * LOG2E : INFINITY;
                Dl_s[threadIdx.x] = t < T ? Dl[((size_t)b * nh + h) * T + t] : 0.0f;
            }
            cp_async_wait_all();
            __syncthreads();

            /* S^T = K Q^T and dP^T = V dO^T, 16 keys x 64 queries per warp */
            float st[8][4], dpt[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[nt][e] = dpt[nt][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) {
                /* A: this warp's 16 key rows of K and V (matrices rows lo/hi x cols lo/hi) */
                uint32_t af[4], vf[4];
                ldsm_x4(af, Kw + ((lm & 1) * 8 + lr) * LD + kk * 16 + (lm >> 1) * 8);
                ldsm_x4(vf, Vw + ((lm & 1) * 8 + lr) * LD + kk * 16 + (lm >> 1) * 8);
#pragma unroll
                for (int nt = 0; nt < 8; nt += 2) {
                    uint32_t qf[4], df[4];
                    ldsm_x4(qf, Qs + ((nt + (lm >> 1)) * 8 + lr) * LD + kk * 16 + (lm & 1) * 8);
                    ldsm_x4(df, dOs + ((nt + (lm >> 1)) * 8 + lr) * LD + kk * 16 + (lm & 1) * 8);
                    mma16816(st[nt], af, qf[0], qf[1]);
                    mma16816(st[nt + 1], af, qf[2], qf[3]);
                    mma16816(dpt[nt], vf, df[0], df[1]);
                    mma16816(dpt[nt + 1], vf, df[2], df[3]);
                }
            }
            /* P^T and dS^T (scaled), C layout: row = key, col = query */
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int ql = nt * 8 + qi * 2 + (e & 1);
                    int key = e < 2 ? key_a : key_b;
                    float p = exp2f(st[nt][e] * scale_log2 - lse_s[ql]);
                    if (key > qb * ATT_BQ + ql) p = 0.0f;
                    st[nt][e] = p;
                    dpt[nt][e] = p * (dpt[nt][e] - Dl_s[ql]) * scale;
                }
            /* dS^T to shared memory for dQ */
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                int c = nt * 8 + qi * 2;
                *(uint32_t *)(dSs + (warp * 16 + quad) * LDS + c) = pack_bf16(dpt[nt][0], dpt[nt][1]);
                *(uint32_t *)(dSs + (warp * 16 + quad + 8) * LDS + c) = pack_bf16(dpt[nt][2], dpt[nt][3]);
            }
            /* dV += P^T dO, dK += dS^T Q (A from the C layout, B = dO / Q rows) */
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t pa[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                                  pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                                  pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
                uint32_t da[4] = {pack_bf16(dpt[2 * kk][0], dpt[2 * kk][1]), pack_bf16(dpt[2 * kk][2], dpt[2 * kk][3]),
                                  pack_bf16(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                                  pack_bf16(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
                for (int dt = 0; dt < NT_D; dt += 2) {
                    uint32_t bo[4], bq[4];
                    ldsm_x4_t(bo, dOs + (kk * 16 + (lm & 1) * 8 + lr) * LD + (dt + (lm >> 1)) * 8);
                    ldsm_x4_t(bq, Qs + (kk * 16 + (lm & 1) * 8 + lr) * LD + (dt + (lm >> 1)) * 8);
                    mma16816(dvacc[dt], pa, bo[0], bo[1]);
                    mma16816(dvacc[dt + 1], pa, bo[2], bo[3]);
                    mma16816(dkacc[dt], da, bq[0], bq[1]);
                    mma16816(dkacc[dt + 1], da, bq[2], bq[3]);
                }
            }
            __syncthreads();   /* dS^T complete */
            /* dQ [64 q x HD] += dS K: warp w owns queries w*16..w*16+15; A[q][key] = dS^T[key][q] */
            uint32_t dsa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)   /* A[q][key] = dS^T[key][q]: transposed loads */
                ldsm_x4_t(dsa[kk], dSs + (kk * 16 + (lm >> 1) * 8 + lr) * LDS + warp * 16 + (lm & 1) * 8);
            int q_a = qb * ATT_BQ + warp * 16 + quad, q_b = q_a + 8;
#pragma unroll
            for (int dt = 0; dt < NT_D; dt++) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int kk = 0; kk < 4; kk += 2) {
                    /* B[key][d] = K: (keys kk lo, hi) then (keys kk+1 lo, hi) */
                    uint32_t kb4[4];
                    ldsm_x4_t(kb4, Ks + (kk * 16 + lm * 8 + lr) * LD + dt * 8);
                    mma16816(c, dsa[kk], kb4[0], kb4[1]);
                    mma16816(c, dsa[kk + 1], kb4[2], kb4[3]);
                }
                int col = dt * 8 + qi * 2;
                /* sm_90 vector atomics: one red.global.add.v2.f32 per pair */
                if (q_a < T)
                    atomicAdd((float2 *)(dq_acc + ((size_t)(b * T + q_a) * nh + h) * HD + col), make_float2(c[0], c[1]));
                if (q_b < T)
                    atomicAdd((float2 *)(dq_acc + ((size_t)(b * T + q_b) * nh + h) * HD + col), make_float2(c[2], c[3]));
            }
        }
    }
#pragma unroll
    for (int dt = 0; dt < NT_D; dt++) {
        int col = dt * 8 + qi * 2;
        if (key_a < T) {
            size_t o = (size_t)(b * T + key_a) * kv_stride + (size_t)kh * HD + col;
            *(uint32_t *)(dk + o) = pack_bf16(dkacc[dt][0], dkacc[dt][1]);
            *(uint32_t *)(dv + o) = pack_bf16(dvacc[dt][0], dvacc[dt][1]);
        }
        if (key_b < T) {
            size_t o = (size_t)(b * T + key_b) * kv_stride + (size_t)kh * HD + col;
            *(uint32_t *)(dk + o) = pack_bf16(dkacc[dt][2], dkacc[dt][3]);
            *(uint32_t *)(dv + o) = pack_bf16(dvacc[dt][2], dvacc[dt][3]);
        }
    }
}

template <int HD>
static KernelStatus fwd_launch(bf16_t *out, float *lse, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                       int B, int T, int nh, int nkv, int q_stride, int kv_stride, cudaStream_t s)
{
    size_t smem = sizeof(bf16_t) * 4 * 64 * (HD + 8);
    CUDA_TRY(cudaFuncSetAttribute(attention_fwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(nh, B, (T + ATT_FWD_BQ - 1) / ATT_FWD_BQ);
    float scale_log2 = LOG2E / sqrtf((float)HD);
    attention_fwd_kernel<HD><<<grid, ATT_FWD_THREADS, smem, s>>>(out, lse, q, k, v, T, nh, nkv, q_stride, kv_stride, scale_log2);
    return (KernelStatus)cudaGetLastError();
}

template <int HD>
static KernelStatus bwd_launch(bf16_t *dk, bf16_t *dv, float *dq_acc, const float *Dl, const bf16_t *dout,
                       const bf16_t *q, const bf16_t *k, const bf16_t *v, const float *lse, int B,
                       int T, int nh, int nkv, int q_stride, int kv_stride, cudaStream_t s)
{
    size_t smem = sizeof(bf16_t) * (4 * 64 * (HD + 8) + 64 * 72) + sizeof(float) * 128;
    CUDA_TRY(cudaFuncSetAttribute(attention_bwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(nkv, B, (T + ATT_BK - 1) / ATT_BK);
    attention_bwd_kernel<HD><<<grid, ATT_THREADS, smem, s>>>(dk, dv, dq_acc, Dl, dout, q, k, v, lse, T, nh, nkv,
                                                             q_stride, kv_stride, 1.0f / sqrtf((float)HD));
    return (KernelStatus)cudaGetLastError();
}

extern "C" {
KernelStatus attention_forward_cuda(bf16_t *out, float *lse, const bf16_t *q, const bf16_t *k,
                                    const bf16_t *v, int B, int T, int nh, int nkv, int hd,
                                    int q_stride, int kv_stride, cudaStream_t s)
{
    if (B <= 0 || T <= 0) return 0;
    if (hd == 128) return fwd_launch<128>(out, lse, q, k, v, B, T, nh, nkv, q_stride, kv_stride, s);
    if (hd == 64) return fwd_launch<64>(out, lse, q, k, v, B, T, nh, nkv, q_stride, kv_stride, s);
    return (KernelStatus)cudaErrorInvalidValue;
}

size_t attention_backward_workspace_bytes(int B, int T, int nh, int nkv, int hd)
{
    (void)nkv;
    return sizeof(float) * ((size_t)B * nh * T + (size_t)B * T * nh * hd);
}

KernelStatus attention_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, void *workspace,
                                     const bf16_t *dout, const bf16_t *q, const bf16_t *k,
                                     const bf16_t *v, const bf16_t *out, const float *lse, int B,
                                     int T, int nh, int nkv, int hd, int q_stride, int kv_stride,
                                     cudaStream_t s)
{
    if (B <= 0 || T <= 0) return 0;
    if (hd != 128 && hd != 64) return (KernelStatus)cudaErrorInvalidValue;
    float *Dl = (float *)workspace, *dq_acc = Dl + (size_t)B * nh * T;
    size_t rows = (size_t)B * T * nh;
    attention_bwd_pre_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(Dl, dq_acc, dout, out, B, T, nh, hd);
    KernelStatus st = hd == 128 ? bwd_launch<128>(dk, dv, dq_acc, Dl, dout, q, k, v, lse, B, T, nh, nkv, q_stride, kv_stride, s)
                                : bwd_launch<64>(dk, dv, dq_acc, Dl, dout, q, k, v, lse, B, T, nh, nkv, q_stride, kv_stride, s);
    if (st) return st;
    attention_dq_cast_kernel<<<grid_for(rows * hd, 256), 256, 0, s>>>(dq, dq_acc, B, T, nh, hd, q_stride);
    return (KernelStatus)cudaGetLastError();
}
}
