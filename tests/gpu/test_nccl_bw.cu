/* test_nccl_bw.cu: NCCL all-gather, reduce-scatter, all-reduce, all-to-all
 * (grouped ncclSend/ncclRecv, the way the dispatcher's all-to-all-v runs)
 * and send/recv across every visible GPU of one process (ncclCommInitAll,
 * one ncclGroupStart over all devices): checks the all-to-all moves the right
 * data, then prints bus bandwidth for message sizes 1 MiB .. 1 GiB (powers of
 * 2), nccl-tests conventions (nccl-tests doc/PERFORMANCE.md):
 *   bytes: all-gather the output buffer, reduce-scatter the input buffer,
 *          all-reduce the buffer, all-to-all one rank's send buffer,
 *          send/recv the message (rank r sends to r+1, receives from r-1)
 *   algbw = bytes / time
 *   busbw = algbw * factor: all-reduce 2(n-1)/n; all-gather, reduce-scatter,
 *           all-to-all (n-1)/n; send/recv 1
 * Timing: CUDA events on every GPU's stream around `iters` launches after
 * 5 warm-ups; the time is the slowest GPU's, the figure the median of 5
 * repetitions.  Data type bf16 (all-reduce/reduce-scatter sum).
 * Exit status 1 if the data check fails.
 *
 * usage: test_nccl_bw [--json FILE] [--max-mib M]
 *   --json FILE: {"gpus", "nccl_version",
 *                 "rows": [{"bytes", "a2a_algbw", "a2a_busbw", "ar_algbw", "ar_busbw"}]   (B/s; 1..256 MiB, as before)
 *                 "collectives": [{"op", "group_size", "nodes", "bytes", "time_us",
 *                                  "algbw_gb_per_s", "busbw_gb_per_s"}]}
 *   (test_calibrate --collectives FILE copies "collectives" into a calibration file)
 *   --max-mib M: largest message (default 1024) */
#include <cuda_runtime.h>
#include <nccl.h>

#ifndef MOEPLAN_HAVE_CUDA
#define MOEPLAN_HAVE_CUDA 1   /* kernels/common.h declares its CUDA helpers under it */
#endif
#include "tests/gpu/gpu_check.h"   /* cudaCheck, cublasCheck */
#include "kernels/common.h"   /* cudaCheck */

#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

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

/* bytes = output buffer; each rank contributes bytes/n */
static void allgather(std::vector<Gpu> &g, size_t bytes) {
    size_t n = g.size();
    NCCL_OK(ncclGroupStart());
    for (size_t r = 0; r < n; r++)
        NCCL_OK(ncclAllGather(g[r].send, g[r].recv, bytes / n / 2, ncclBfloat16, g[r].comm, g[r].stream));
    NCCL_OK(ncclGroupEnd());
}

/* bytes = input buffer; each rank keeps bytes/n */
static void reducescatter(std::vector<Gpu> &g, size_t bytes) {
    size_t n = g.size();
    NCCL_OK(ncclGroupStart());
    for (size_t r = 0; r < n; r++)
        NCCL_OK(ncclReduceScatter(g[r].send, g[r].recv, bytes / n / 2, ncclBfloat16, ncclSum, g[r].comm, g[r].stream));
    NCCL_OK(ncclGroupEnd());
}

/* nccl-tests sendrecv: rank r sends `bytes` to r+1 and receives from r-1 */
static void sendrecv(std::vector<Gpu> &g, size_t bytes) {
    int n = (int)g.size();
    NCCL_OK(ncclGroupStart());
    for (int r = 0; r < n; r++) {
        NCCL_OK(ncclSend(g[r].send, bytes, ncclChar, (r + 1) % n, g[r].comm, g[r].stream));
        NCCL_OK(ncclRecv(g[r].recv, bytes, ncclChar, (r + n - 1) % n, g[r].comm, g[r].stream));
    }
    NCCL_OK(ncclGroupEnd());
}

/* seconds per operation: slowest GPU, median of 5 repetitions of `iters` */
static double time_op(std::vector<Gpu> &g, void (*op)(std::vector<Gpu> &, size_t), size_t bytes, int iters) {
    for (int i = 0; i < 5; i++) op(g, bytes);
    std::vector<double> reps;
    for (int rep = 0; rep < 5; rep++) {
        for (size_t r = 0; r < g.size(); r++) {
            cudaCheck(cudaSetDevice((int)r));
            cudaCheck(cudaEventRecord(g[r].start, g[r].stream));
        }
        for (int i = 0; i < iters; i++) op(g, bytes);
        double worst = 0;
        for (size_t r = 0; r < g.size(); r++) {
            cudaCheck(cudaSetDevice((int)r));
            cudaCheck(cudaEventRecord(g[r].stop, g[r].stream));
        }
        for (size_t r = 0; r < g.size(); r++) {
            cudaCheck(cudaEventSynchronize(g[r].stop));
            float ms = 0;
            cudaCheck(cudaEventElapsedTime(&ms, g[r].start, g[r].stop));
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
        cudaCheck(cudaSetDevice(r));
        cudaCheck(cudaMemcpy(g[r].send, h.data(), bytes, cudaMemcpyHostToDevice));
        cudaCheck(cudaMemset(g[r].recv, 0xff, bytes));   /* poison */
    }
    alltoall(g, bytes);
    int bad = 0;
    for (int r = 0; r < n; r++) {
        cudaCheck(cudaSetDevice(r));
        cudaCheck(cudaStreamSynchronize(g[r].stream));
        cudaCheck(cudaMemcpy(got.data(), g[r].recv, bytes, cudaMemcpyDeviceToHost));
        for (int j = 0; j < n; j++)
            for (size_t i = 0; i < chunk; i++) {
                size_t pos = r * chunk + i;   /* position in rank j's send buffer */
                if (got[j * chunk + i] != (unsigned char)((j * 31 + pos) % 251)) bad++;
            }
    }
    return bad;
}

typedef void (*CollFn)(std::vector<Gpu> &, size_t);
struct Coll {
    const char *name;   /* calibration-file op name (simulator/calibration.h) */
    CollFn fn;
    int ar;             /* busbw factor 2(n-1)/n instead of (n-1)/n */
    int p2p;            /* busbw factor 1 */
};

int main(int argc, char **argv) {
    const char *json_path = NULL;
    size_t max_mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--max-mib") && i + 1 < argc) max_mib = (size_t)atol(argv[++i]);
        else { fprintf(stderr, "usage: test_nccl_bw [--json FILE] [--max-mib M]\n"); return 2; }
    }
    if (max_mib < 1) max_mib = 1;
    int n = 0;
    cudaCheck(cudaGetDeviceCount(&n));
    if (n < 1) { fprintf(stderr, "test_nccl_bw: no GPU\n"); return 1; }
    int ver = 0;
    ncclGetVersion(&ver);
    const size_t max_bytes = max_mib << 20;
    std::vector<Gpu> g(n);
    std::vector<ncclComm_t> comms(n);
    NCCL_OK(ncclCommInitAll(comms.data(), n, NULL));
    for (int r = 0; r < n; r++) {
        cudaCheck(cudaSetDevice(r));
        g[r].comm = comms[r];
        cudaCheck(cudaStreamCreateWithFlags(&g[r].stream, cudaStreamNonBlocking));
        cudaCheck(cudaMalloc(&g[r].send, max_bytes));
        cudaCheck(cudaMalloc(&g[r].recv, max_bytes));
        cudaCheck(cudaMemset(g[r].send, 0, max_bytes));   /* bf16 zeros: no NaN/Inf in the sums */
        cudaCheck(cudaEventCreate(&g[r].start));
        cudaCheck(cudaEventCreate(&g[r].stop));
    }
    int bad = check_alltoall(g, (size_t)3 << 20);
    printf("test_nccl_bw: %d GPU(s), NCCL %d; all-to-all data check: %s\n", n, ver, bad ? "FAILED" : "ok");
    if (bad) fprintf(stderr, "test_nccl_bw: %d wrong bytes after all-to-all\n", bad);
    std::vector<size_t> sizes;
    for (size_t b = (size_t)1 << 20; b <= max_bytes; b *= 2) sizes.push_back(b);
    const Coll colls[] = {{"all_gather", allgather, 0, 0},     {"reduce_scatter", reducescatter, 0, 0},
                          {"all_reduce", allreduce, 1, 0},     {"all_to_all", alltoall, 0, 0},
                          {"send_recv", sendrecv, 0, 1}};
    const int ncoll = (int)(sizeof colls / sizeof colls[0]);
    /* t[c][s]: seconds */
    std::vector<std::vector<double>> t(ncoll, std::vector<double>(sizes.size(), 0));
    printf("%-15s %12s %12s %14s %14s\n", "op", "bytes", "time us", "algbw GB/s", "busbw GB/s");
    for (int c = 0; c < ncoll; c++) {
        if (n < 2 && !colls[c].p2p && strcmp(colls[c].name, "all_reduce")) continue;
        for (size_t s = 0; s < sizes.size(); s++) {
            size_t bytes = sizes[s];
            int iters = bytes >= ((size_t)256 << 20) ? 5 : bytes >= ((size_t)32 << 20) ? 10 : 20;
            t[c][s] = time_op(g, colls[c].fn, bytes, iters);
            double alg = bytes / t[c][s] / 1e9;
            double f = colls[c].p2p ? 1.0 : colls[c].ar ? 2.0 * (n - 1) / n : (double)(n - 1) / n;
            printf("%-15s %12zu %12.1f %14.1f %14.1f\n", colls[c].name, bytes, t[c][s] * 1e6, alg, alg * f);
        }
    }
    if (json_path) {
        std::string tmp = std::string(json_path) + ".tmp";
        FILE *js = fopen(tmp.c_str(), "w");
        if (!js) { fprintf(stderr, "test_nccl_bw: %s: cannot write\n", tmp.c_str()); return 1; }
        fprintf(js, "{\"gpus\": %d, \"nccl_version\": %d, \"rows\": [", n, ver);
        int first = 1;
        for (size_t s = 0; s < sizes.size(); s++) {   /* the old table: a2a and ar, <= 256 MiB */
            if (sizes[s] > ((size_t)256 << 20) || t[3][s] <= 0 || t[2][s] <= 0) continue;
            double a_alg = sizes[s] / t[3][s], r_alg = sizes[s] / t[2][s];
            fprintf(js, "%s{\"bytes\": %zu, \"a2a_algbw\": %.4e, \"a2a_busbw\": %.4e, \"ar_algbw\": %.4e, \"ar_busbw\": %.4e}",
                    first ? "" : ", ", sizes[s], a_alg, a_alg * (n - 1) / n, r_alg, r_alg * 2.0 * (n - 1) / n);
            first = 0;
        }
        fprintf(js, "],\n \"collectives\": [");
        first = 1;
        for (int c = 0; c < ncoll; c++)
            for (size_t s = 0; s < sizes.size(); s++) {
                if (t[c][s] <= 0) continue;
                double alg = sizes[s] / t[c][s] / 1e9;
                double f = colls[c].p2p ? 1.0 : colls[c].ar ? 2.0 * (n - 1) / n : (double)(n - 1) / n;
                fprintf(js, "%s\n  {\"op\": \"%s\", \"group_size\": %d, \"nodes\": 1, \"bytes\": %zu, \"time_us\": %.2f, "
                            "\"algbw_gb_per_s\": %.2f, \"busbw_gb_per_s\": %.2f}",
                        first ? "" : ",", colls[c].name, colls[c].p2p ? 2 : n, sizes[s], t[c][s] * 1e6, alg, alg * f);
                first = 0;
            }
        fprintf(js, "]}\n");
        if (fclose(js) || rename(tmp.c_str(), json_path)) {
            fprintf(stderr, "test_nccl_bw: %s: cannot write\n", json_path);
            return 1;
        }
    }
    for (int r = 0; r < n; r++) {
        cudaCheck(cudaSetDevice(r));
        cudaFree(g[r].send);
        cudaFree(g[r].recv);
        ncclCommDestroy(g[r].comm);
    }
    return bad ? 1 : 0;
}
