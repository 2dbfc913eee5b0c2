/* expert_gemm.cu: cuBLAS BF16 GEMM rate at MoE expert shapes, and the host
 * costs around them, for the simulator's cost model (docs/simulator.md).
 *
 *   1. one GEMM C[m,n] = A[m,k] B[k,n] (bf16 in, fp32 compute, bf16 out; or
 *      fp32 C with beta = 1, the wgrad accumulated into main_grad) at the
 *      expert shapes of the calibration runs and at the large reference shape;
 *   2. a "grouped" GEMM as Transformer Engine's GroupedLinear runs it: one
 *      cuBLAS call per local expert, on 1 stream and round-robin on 4
 *      streams (TE's multi-stream cuBLAS), timed as a whole;
 *   3. host costs: cudaLaunchKernel of an empty kernel back to back (the
 *      host launch floor) and a 4-byte device-to-host copy + sync round trip
 *      after a queue of work (what a .item()/.tolist() costs).
 * CUDA events, 3 warm-ups, median of 15.  Random bf16 data.
 *
 * Build (here): nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 \
 *   -o build/simgemm/expert_gemm bench/expert_gemm.cu -lcublas
 * Run (device): build/simgemm/expert_gemm
 */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)
#define CB(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { printf("%s:%d cublas %d\n", __FILE__, __LINE__, (int)s_); exit(1); } } while (0)

static __global__ void fill(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2bfloat16(((h & 0xffff) / 65536.0f - 0.5f));
    }
}
static __global__ void empty_kernel() {}

static cublasHandle_t handle;
static cudaStream_t streams[4];
static void *workspace[4];

/* column-major trick: C[m,n] row-major = (B^T A^T) col-major */
static void gemm(cudaStream_t st, int ws, int m, int n, int k, const void *A, const void *B, void *C, bool f32acc) {
    float alpha = 1, beta = f32acc ? 1.0f : 0.0f;
    CB(cublasSetStream(handle, st));
    CB(cublasSetWorkspace(handle, workspace[ws], 32u << 20));
    CB(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, B, CUDA_R_16BF, n, A, CUDA_R_16BF, k, &beta, C,
                    f32acc ? CUDA_R_32F : CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static double median(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

struct Buf { __nv_bfloat16 *a, *b; void *c; };

/* groups x (m x n x k), streams 1 or 4, returns ms (median) */
static double time_grouped(int groups, int m, int n, int k, bool f32acc, int nstreams, Buf *bufs) {
    cudaEvent_t e0, e1, done[4];
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    for (int i = 0; i < 4; i++) CK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    std::vector<double> ts;
    for (int it = 0; it < 18; it++) {
        CK(cudaEventRecord(e0, streams[0]));
        for (int s = 1; s < nstreams; s++) CK(cudaStreamWaitEvent(streams[s], e0, 0));
        for (int g = 0; g < groups; g++) {
            int s = g % nstreams;
            gemm(streams[s], s, m, n, k, bufs[g].a, bufs[g].b, bufs[g].c, f32acc);
        }
        for (int s = 1; s < nstreams; s++) { CK(cudaEventRecord(done[s], streams[s])); CK(cudaStreamWaitEvent(streams[0], done[s], 0)); }
        CK(cudaEventRecord(e1, streams[0]));
        CK(cudaEventSynchronize(e1));
        float ms; CK(cudaEventElapsedTime(&ms, e0, e1));
        if (it >= 3) ts.push_back(ms);
    }
    CK(cudaEventDestroy(e0)); CK(cudaEventDestroy(e1));
    for (int i = 0; i < 4; i++) CK(cudaEventDestroy(done[i]));
    return median(ts);
}

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    CB(cublasCreate(&handle));
    for (int i = 0; i < 4; i++) { CK(cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking)); CK(cudaMalloc(&workspace[i], 32u << 20)); }

    /* one pool big enough for 16 experts of the largest expert shape */
    struct Shape { const char *name; int groups, m, n, k; bool f32; };
    const Shape shapes[] = {
        {"ref 8192^3", 1, 8192, 8192, 8192, false},
        {"ref 2048^3", 1, 2048, 2048, 2048, false},
        {"qwen folded fc1 fwd (ETP1)", 16, 1024, 5120, 3584, false},
        {"qwen folded fc2 fwd", 16, 1024, 3584, 2560, false},
        {"qwen folded fc1 dgrad", 16, 1024, 3584, 5120, false},
        {"qwen folded fc1 wgrad f32+=", 16, 5120, 3584, 1024, true},
        {"qwen folded fc2 wgrad f32+=", 16, 3584, 2560, 1024, true},
        {"qwen coupled fc1 fwd (ETP2)", 16, 2048, 2560, 3584, false},
        {"qwen coupled fc2 fwd", 16, 2048, 3584, 1280, false},
        {"qwen coupled fc1 wgrad f32+=", 16, 2560, 3584, 2048, true},
        {"qwen coupled fc2 wgrad f32+=", 16, 3584, 1280, 2048, true},
        {"mixtral folded fc1 fwd (EP8)", 1, 4096, 32768, 6144, false},
        {"mixtral folded fc2 fwd", 1, 4096, 6144, 16384, false},
        {"mixtral folded fc1 wgrad f32+=", 1, 32768, 6144, 4096, true},
        {"mixtral coupled fc1 fwd (EP4 ETP2)", 2, 4096, 16384, 6144, false},
        {"qwen shared fc1 fwd (TP2)", 1, 4096, 20480, 3584, false},
        {"qwen qkv (TP2)", 1, 4096, 2560, 3584, false},
    };
    size_t max_ab = 0, max_c = 0;
    for (const Shape &s : shapes) {
        max_ab = std::max(max_ab, (size_t)s.m * s.k + (size_t)s.k * s.n);
        max_c = std::max(max_c, (size_t)s.m * s.n * (s.f32 ? 4 : 2));
    }
    Buf bufs[16];
    for (int g = 0; g < 16; g++) {
        size_t ab = g < 2 ? max_ab : (size_t)5120 * 3584 + (size_t)3584 * 2048 + 4096 * 3584;  /* experts: qwen sizes */
        CK(cudaMalloc(&bufs[g].a, ab * 2));
        bufs[g].b = bufs[g].a;  /* set per shape below */
        CK(cudaMalloc(&bufs[g].c, g < 2 ? max_c : (size_t)5120 * 3584 * 4));
        fill<<<1024, 256>>>(bufs[g].a, ab, 17u + g);
        CK(cudaMemset(bufs[g].c, 0, g < 2 ? max_c : (size_t)5120 * 3584 * 4));
    }
    CK(cudaDeviceSynchronize());

    printf("| shape                              | groups |     m |     n |     k | 1 GEMM us | TFLOP/s | loop 1 stream us | TFLOP/s | loop 4 streams us | TFLOP/s |\n");
    for (const Shape &s : shapes) {
        Buf sb[16];
        for (int g = 0; g < s.groups; g++) { sb[g] = bufs[g]; sb[g].b = bufs[g].a + (size_t)s.m * s.k; }
        double one = time_grouped(1, s.m, s.n, s.k, s.f32, 1, sb) * 1e3;
        double fl = 2.0 * s.m * s.n * s.k;
        double l1 = time_grouped(s.groups, s.m, s.n, s.k, s.f32, 1, sb) * 1e3;
        double l4 = s.groups > 1 ? time_grouped(s.groups, s.m, s.n, s.k, s.f32, 4, sb) * 1e3 : l1;
        printf("| %-34s | %6d | %5d | %5d | %5d | %9.1f | %7.1f | %16.1f | %7.1f | %17.1f | %7.1f |\n", s.name, s.groups, s.m, s.n, s.k,
               one, fl / one / 1e6, l1, s.groups * fl / l1 / 1e6, l4, s.groups * fl / l4 / 1e6);
    }

    /* host launch floor: N empty kernels back to back, host wall time */
    for (int w = 0; w < 100; w++) empty_kernel<<<1, 32, 0, streams[0]>>>();
    CK(cudaStreamSynchronize(streams[0]));
    const int N = 20000;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < N; i++) empty_kernel<<<1, 32, 0, streams[0]>>>();
    auto t1 = std::chrono::steady_clock::now();
    CK(cudaStreamSynchronize(streams[0]));
    auto t2 = std::chrono::steady_clock::now();
    printf("host: cudaLaunchKernel (empty) %.2f us/launch on the host; %.2f us/kernel until the GPU drained\n",
           std::chrono::duration<double, std::micro>(t1 - t0).count() / N, std::chrono::duration<double, std::micro>(t2 - t0).count() / N);
    /* GEMM launch cost on the host (cublasGemmEx of a small GEMM) */
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 2000; i++) gemm(streams[0], 0, 256, 256, 256, bufs[0].a, bufs[0].a, bufs[0].c, false);
    t1 = std::chrono::steady_clock::now();
    CK(cudaStreamSynchronize(streams[0]));
    t2 = std::chrono::steady_clock::now();
    printf("host: cublasGemmEx 256^3 %.2f us/call on the host; %.2f us/GEMM until drained\n",
           std::chrono::duration<double, std::micro>(t1 - t0).count() / 2000, std::chrono::duration<double, std::micro>(t2 - t0).count() / 2000);
    /* D2H sync round trip with an empty queue */
    int *d, h;
    CK(cudaMalloc(&d, 4));
    CK(cudaMemset(d, 0, 4));
    std::vector<double> rt;
    for (int i = 0; i < 200; i++) {
        auto a = std::chrono::steady_clock::now();
        CK(cudaMemcpyAsync(&h, d, 4, cudaMemcpyDeviceToHost, streams[0]));
        CK(cudaStreamSynchronize(streams[0]));
        auto b = std::chrono::steady_clock::now();
        if (i >= 20) rt.push_back(std::chrono::duration<double, std::micro>(b - a).count());
    }
    /* GPU idle gap after a sync: the next kernel's start after the host learns the value */
    printf("host: 4-byte D2H copy + stream sync, idle queue: %.1f us (median)\n", median(rt));
    printf("done\n");
    return 0;
}
