/* test_nccl_bw.cu: NCCL all-to-all (grouped ncclSend/ncclRecv, the way the
 * dispatcher's all-to-all-v runs) and all-reduce across every visible GPU
 * of one process: checks the all-to-all moves the right data, then prints
 * bus bandwidth at several sizes, nccl-tests conventions:
 *   algbw = bytes / time, bytes = one rank's whole send buffer
 *   busbw(all-to-all) = algbw * (n-1)/n,  busbw(all-reduce) = algbw * 2(n-1)/n
 * Timing: CUDA events on every GPU's stream around `iters` launches after
 * 5 warm-ups; the time is the slowest GPU's, the figure the median of 5
 * repetitions.  Exit status 1 if the data check fails.
 *
 * usage: test_nccl_bw [--json FILE]   (writes the table as JSON too) */
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define CUDA_OK(x)                                                                               \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)
#define NCCL_OK(x)                                                                               \
    do {                                                                                         \
        ncclResult_t r_ = (x);                                                                   \
        if (r_ != ncclSuccess) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, ncclGetErrorString(r_)); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

struct Gpu {
    ncclComm_t comm;
    cudaStream_t stream;
    char *send, *recv;
    cudaEvent_t start, stop;
};

/* one all-to-all of `bytes` per rank: chunk j of every rank goes to rank j */
static void alltoall(std::vector<Gpu> &g, size_t bytes) {
    int n = (int)g.size();
    size_t chunk = bytes / n;
    NCCL_OK(ncclGroupStart());
    for (int r = 0; r < n; r++)
        for (int j = 0; j < n; j++) {
            NCCL_OK(ncclSend(g[r].send + j * chunk, chunk, ncclChar, j, g[r].comm, g[r].stream));
            NCCL_OK(ncclRecv(g[r].recv + j * chunk, chunk, ncclChar, j, g[r].comm, g[r].stream));
        }
    NCCL_OK(ncclGroupEnd());
}

static void allreduce(std::vector<Gpu> &g, size_t bytes) {
    NCCL_OK(ncclGroupStart());
    for (size_t r = 0; r < g.size(); r++)
        NCCL_OK(ncclAllReduce(g[r].send, g[r].recv, bytes / 2, ncclBfloat16, ncclSum, g[r].comm, g[r].stream));
    NCCL_OK(ncclGroupEnd());
}

/* seconds per operation: slowest GPU, median of 5 repetitions of `iters` */
static double time_op(std::vector<Gpu> &g, void (*op)(std::vector<Gpu> &, size_t), size_t bytes, int iters) {
    for (int i = 0; i < 5; i++) op(g, bytes);
    std::vector<double> reps;
    for (int rep = 0; rep < 5; rep++) {
        for (size_t r = 0; r < g.size(); r++) {
            CUDA_OK(cudaSetDevice((int)r));
            CUDA_OK(cudaEventRecord(g[r].start, g[r].stream));
        }
        for (int i = 0; i < iters; i++) op(g, bytes);
        double worst = 0;
        for (size_t r = 0; r < g.size(); r++) {
            CUDA_OK(cudaSetDevice((int)r));
            CUDA_OK(cudaEventRecord(g[r].stop, g[r].stream));
        }
        for (size_t r = 0; r < g.size(); r++) {
            CUDA_OK(cudaEventSynchronize(g[r].stop));
            float ms = 0;
            CUDA_OK(cudaEventElapsedTime(&ms, g[r].start, g[r].stop));
            worst = std::max(worst, ms * 1e-3 / iters);
        }
        reps.push_back(worst);
    }
    std::sort(reps.begin(), reps.end());
    return reps[reps.size() / 2];
}

/* fills rank r's send buffer with bytes (r * 31 + position) mod 251 and
 * checks, after one all-to-all, that recv chunk j of rank r holds chunk r of rank j */
static int check_alltoall(std::vector<Gpu> &g, size_t bytes) {
    int n = (int)g.size();
    size_t chunk = bytes / n;
    std::vector<unsigned char> h(bytes), got(bytes);
    for (int r = 0; r < n; r++) {
        for (size_t i = 0; i < bytes; i++) h[i] = (unsigned char)((r * 31 + i) % 251);
        CUDA_OK(cudaSetDevice(r));
        CUDA_OK(cudaMemcpy(g[r].send, h.data(), bytes, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemset(g[r].recv, 0xff, bytes));   /* poison */
    }
    alltoall(g, bytes);
    int bad = 0;
    for (int r = 0; r < n; r++) {
        CUDA_OK(cudaSetDevice(r));
        CUDA_OK(cudaStreamSynchronize(g[r].stream));
        CUDA_OK(cudaMemcpy(got.data(), g[r].recv, bytes, cudaMemcpyDeviceToHost));
        for (int j = 0; j < n; j++)
            for (size_t i = 0; i < chunk; i++) {
                size_t pos = r * chunk + i;   /* position in rank j's send buffer */
                if (got[j * chunk + i] != (unsigned char)((j * 31 + pos) % 251)) bad++;
            }
    }
    return bad;
}

int main(int argc, char **argv) {
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    int n = 0;
    CUDA_OK(cudaGetDeviceCount(&n));
    if (n < 1) { fprintf(stderr, "test_nccl_bw: no GPU\n"); return 1; }
    int ver = 0;
    ncclGetVersion(&ver);
    const size_t max_bytes = (size_t)256 << 20;
    std::vector<Gpu> g(n);
    std::vector<ncclComm_t> comms(n);
    NCCL_OK(ncclCommInitAll(comms.data(), n, NULL));
    for (int r = 0; r < n; r++) {
        CUDA_OK(cudaSetDevice(r));
        g[r].comm = comms[r];
        CUDA_OK(cudaStreamCreateWithFlags(&g[r].stream, cudaStreamNonBlocking));
        CUDA_OK(cudaMalloc(&g[r].send, max_bytes));
        CUDA_OK(cudaMalloc(&g[r].recv, max_bytes));
        CUDA_OK(cudaEventCreate(&g[r].start));
        CUDA_OK(cudaEventCreate(&g[r].stop));
    }
    int bad = check_alltoall(g, (size_t)3 << 20);
    printf("test_nccl_bw: %d GPU(s), NCCL %d; all-to-all data check: %s\n", n, ver, bad ? "FAILED" : "ok");
    if (bad) fprintf(stderr, "test_nccl_bw: %d wrong bytes after all-to-all\n", bad);
    /* sizes: 1, 16, 64 (one Mixtral dispatch: 4096 tokens x top-2 x 4096 x bf16), 256 MiB */
    const size_t sizes[] = {(size_t)1 << 20, (size_t)16 << 20, (size_t)64 << 20, (size_t)256 << 20};
    FILE *js = json_path ? fopen(json_path, "w") : NULL;
    if (js) fprintf(js, "{\"gpus\": %d, \"nccl_version\": %d, \"rows\": [", n, ver);
    printf("%10s %14s %14s %14s %14s\n", "bytes", "a2a algbw", "a2a busbw", "ar algbw", "ar busbw");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t bytes = sizes[s];
        int iters = bytes >= ((size_t)64 << 20) ? 5 : 20;
        double ta = time_op(g, alltoall, bytes, iters);
        double tr = time_op(g, allreduce, bytes, iters);
        double a_alg = bytes / ta / 1e9, r_alg = bytes / tr / 1e9;
        double a_bus = a_alg * (n - 1) / n, r_bus = r_alg * 2.0 * (n - 1) / n;
        printf("%10zu %11.1f GB/s %11.1f GB/s %11.1f GB/s %11.1f GB/s\n", bytes, a_alg, a_bus, r_alg, r_bus);
        if (js)
            fprintf(js, "%s{\"bytes\": %zu, \"a2a_algbw\": %.4e, \"a2a_busbw\": %.4e, \"ar_algbw\": %.4e, \"ar_busbw\": %.4e}",
                    s ? ", " : "", bytes, a_alg * 1e9, a_bus * 1e9, r_alg * 1e9, r_bus * 1e9);
    }
    if (js) { fprintf(js, "]}\n"); fclose(js); }
    for (int r = 0; r < n; r++) {
        CUDA_OK(cudaSetDevice(r));
        cudaFree(g[r].send);
        cudaFree(g[r].recv);
        ncclCommDestroy(g[r].comm);
    }
    return bad ? 1 : 0;
}
