/* attention_bench.cu: forward and backward TFLOP/s of attention through
 * kernels/attention_api.h, cuDNN's fused flash attention and the own kernel
 * (kernels/attention.cu), at Mixtral-8x7B's attention (32 heads, 8 KV groups,
 * head dim 128):
 *   tp   causal self-attention, 4K/16K/32K/128K, the heads that TP 1/2/4/8
 *        leave per GPU (32/8, 16/4, 8/2, 4/1), batch = max(1, 32768 / T) so
 *        that the tokens per step stay about fixed;
 *   cp   blocks of load-balanced ring attention under CP 2/4/8/16 (32/8
 *        heads, batch 1): "nomask" = the local rows (T/CP) against half of a
 *        remote KV block (T/2CP), no mask; "offset" = one chunk of rows
 *        (T/2CP) against two chunks of keys (T/CP) whose second is the
 *        diagonal: causal with q_offset - kv_offset = T/2CP.
 * FLOPs count visible (row, key) pairs only: forward 4 * B * nh * pairs * hd,
 * backward 2.5x that (FlashAttention-2's convention).  Layout: q, k, v inside
 * one fused qkv buffer [B, T, (nh + 2 nkv) hd] as the executor keeps it (tp),
 * q alone and k|v interleaved [B, Tk, 2 nkv hd] (cp).  CUDA events, median.
 * Prints CSV lines "csv,<set>,<shape>,<impl>,fwd_ms,bwd_ms,fwd_tflops,bwd_tflops"
 * that bench/attention_torch.py reads back to add PyTorch's SDPA and print
 * the table.
 *
 * Usage: attention_bench [--quick] [--max-T N]
 */
#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA
#endif
#include "kernels/attention_api.h"
#include "tests/gpu/gpu_check.h"   /* cudaCheck */

#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <functional>
#include <vector>

static double time_ms(cudaStream_t st, const std::function<int()> &fn, double budget_ms, bool *ok)
{
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a));
    cudaCheck(cudaEventCreate(&b));
    *ok = fn() == 0;   /* warm-up (and the plan's first launch) */
    cudaCheck(cudaStreamSynchronize(st));
    std::vector<float> t;
    for (int i = 0; *ok && i < 20; i++) {
        cudaCheck(cudaEventRecord(a, st));
        *ok = fn() == 0;
        cudaCheck(cudaEventRecord(b, st));
        cudaCheck(cudaEventSynchronize(b));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
        double spent = 0;
        for (float x : t) spent += x;
        if (i >= 2 && spent > budget_ms) break;
    }
    cudaCheck(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (t.empty()) return NAN;
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* uniform [-1, 1) bf16 from a hash of the index, on the device */
__global__ void fill_random_kernel(__nv_bfloat16 *d, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
        d[i] = __float2bfloat16((h & 0xffff) / 32768.0f - 1.0f);
    }
}
static void fill_random(bf16_t *d, size_t n, uint32_t seed)
{
    fill_random_kernel<<<1024, 256>>>((__nv_bfloat16 *)d, n, seed);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
}

struct Bench {
    cudaStream_t st;
    AttnEngine *eng[2];
    const char *impl[2];
    int nimpl;
};

/* One shape through every engine; q, k, v carved from one buffer. */
static void bench_shape(Bench *bb, const char *set, const char *label, AttnShape s, bool fused)
{
    size_t nq, nkv_tok, q_off, k_off, v_off;
    if (fused) {
        s.q_stride = s.k_stride = s.v_stride = (s.nh + 2 * s.nkv) * s.hd_qk;
        nq = (size_t)s.B * s.Tq * s.q_stride;
        nkv_tok = 0;
        q_off = 0; k_off = (size_t)s.nh * s.hd_qk; v_off = (size_t)(s.nh + s.nkv) * s.hd_qk;
    } else {
        s.q_stride = s.nh * s.hd_qk;
        s.k_stride = s.v_stride = s.nkv * (s.hd_qk + s.hd_v);
        nq = (size_t)s.B * s.Tq * s.q_stride;
        nkv_tok = (size_t)s.B * s.Tk * s.k_stride;
        q_off = 0; k_off = nq; v_off = nq + (size_t)s.nkv * s.hd_qk;
    }
    size_t nin = nq + nkv_tok, no = (size_t)s.B * s.Tq * s.nh * s.hd_v, nl = (size_t)s.B * s.nh * s.Tq;
    bf16_t *in, *grad, *out, *dout;
    float *lse;
    cudaCheck(cudaMalloc(&in, nin * 2));
    cudaCheck(cudaMalloc(&grad, nin * 2));
    cudaCheck(cudaMalloc(&out, no * 2));
    cudaCheck(cudaMalloc(&dout, no * 2));
    cudaCheck(cudaMalloc(&lse, nl * 4));
    fill_random(in, nin, 1);
    fill_random(dout, no, 2);
    double fwd_flops = attn_forward_flops(&s), bwd_flops = 2.5 * fwd_flops;
    for (int i = 0; i < bb->nimpl; i++) {
        AttnEngine *e = bb->eng[i];
        MpError err = {{0}};
        if (attention_prepare(e, &s, &err)) {
            printf("csv,%s,%s,%s,nan,nan,nan,nan\n# %s %s: %s\n", set, label, bb->impl[i], bb->impl[i], label, err.msg);
            continue;
        }
        size_t wsb = std::max(attention_workspace_bytes(e, &s, false), attention_workspace_bytes(e, &s, true));
        void *ws = NULL;
        if (cudaMalloc(&ws, std::max<size_t>(wsb, 16)) != cudaSuccess) {
            cudaGetLastError();
            printf("csv,%s,%s,%s,nan,nan,nan,nan\n# %s %s: workspace of %zu bytes does not fit\n", set, label,
                   bb->impl[i], bb->impl[i], label, wsb);
            continue;
        }
        bool okf, okb;
        double msf = time_ms(bb->st, [&] {
            return attention_forward(e, &s, out, lse, in + q_off, in + k_off, in + v_off, ws, wsb, bb->st, &err);
        }, 400, &okf);
        double msb = time_ms(bb->st, [&] {
            return attention_backward(e, &s, grad + q_off, grad + k_off, grad + v_off, dout, in + q_off, in + k_off,
                                      in + v_off, out, lse, ws, wsb, bb->st, &err);
        }, 400, &okb);
        if (!okf || !okb) printf("# %s %s: %s\n", bb->impl[i], label, err.msg);
        printf("csv,%s,%s,%s,%.3f,%.3f,%.1f,%.1f\n", set, label, bb->impl[i], okf ? msf : NAN, okb ? msb : NAN,
               okf ? fwd_flops / msf * 1e-9 : NAN, okb ? bwd_flops / msb * 1e-9 : NAN);
        fflush(stdout);
        cudaFree(ws);
    }
    cudaFree(in); cudaFree(grad); cudaFree(out); cudaFree(dout); cudaFree(lse);
}

int main(int argc, char **argv)
{
    bool quick = false;
    int max_T = 131072;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--max-T") && i + 1 < argc) max_T = atoi(argv[++i]);
        else { fprintf(stderr, "usage: attention_bench [--quick] [--max-T N]\n"); return 2; }
    }
    Bench bb;
    memset(&bb, 0, sizeof bb);
    cudaCheck(cudaStreamCreate(&bb.st));
    MpError err = {{0}};
    char note[256];
    if (attention_engine_create(ATTN_IMPL_CUDNN, &bb.eng[0], note, sizeof note, &err) == 0) {
        bb.impl[bb.nimpl++] = "cudnn";
    } else {
        printf("# cuDNN cannot be used: %s\n", err.msg);
        bb.eng[0] = NULL;
    }
    if (!bb.eng[0]) bb.nimpl = 0;
    if (attention_engine_create(ATTN_IMPL_OWN, &bb.eng[bb.nimpl], note, sizeof note, &err)) { printf("# %s\n", err.msg); return 1; }
    bb.impl[bb.nimpl++] = "own";
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("# device: %s; engines:", prop.name);
    for (int i = 0; i < bb.nimpl; i++) printf(" %s", attention_engine_name(bb.eng[i]));
    printf("\n");

    const int lengths[4] = {4096, 16384, 32768, 131072};
    const int tps[4] = {1, 2, 4, 8}, cps[4] = {2, 4, 8, 16};
    char label[96];
    for (int li = 0; li < 4; li++) {
        int T = lengths[li];
        if (T > max_T) continue;
        for (int ti = 0; ti < 4; ti++) {
            int tp = tps[ti];
            if (quick && tp != 1 && tp != 8) continue;
            int B = std::max(1, 32768 / T), nh = 32 / tp, nkv = 8 / tp;
            AttnShape s = attn_shape_causal(B, T, nh, nkv, 128, 0, 0);
            snprintf(label, sizeof label, "causal T%d B%d TP%d h%d/%d", T, B, tp, nh, nkv);
            bench_shape(&bb, "tp", label, s, true);
        }
    }
    for (int li = 0; li < 4; li++) {
        int T = lengths[li];
        if (T > max_T) continue;
        for (int ci = 0; ci < 4; ci++) {
            int cp = cps[ci];
            if (quick && cp != 2 && cp != 16) continue;
            int chunk = T / (2 * cp);
            AttnShape s = attn_shape_causal(1, 2 * chunk, 32, 8, 128, 0, 0);
            s.Tk = chunk;
            s.mask = ATTN_MASK_NONE;
            snprintf(label, sizeof label, "nomask T%d CP%d %dx%d", T, cp, s.Tq, s.Tk);
            bench_shape(&bb, "cp", label, s, false);
            AttnShape o = attn_shape_causal(1, chunk, 32, 8, 128, 0, 0);
            o.Tk = 2 * chunk;
            o.q_offset = chunk;   /* rows see the first key chunk whole, the second causally */
            snprintf(label, sizeof label, "offset T%d CP%d %dx%d", T, cp, o.Tq, o.Tk);
            bench_shape(&bb, "cp", label, o, false);
        }
    }
    for (int i = 0; i < bb.nimpl; i++) attention_engine_destroy(bb.eng[i]);
    return 0;
}
