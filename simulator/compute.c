/* compute.c: time of GEMMs, flash attention and memory-bound kernels on one GPU.
 *
 * GEMM (one C[m,n] = A[m,k] B[k,n], or a grouped GEMM of several such):
 *
 *   t = t_launch + min over tile shapes (tm x tn) of
 *         waves * 2*tm*tn*(k + K0) / (peak/SMs * e_max * e_tile)
 *       tiles = sum_groups ceil(m/tm) * ceil(n/tn),  waves = ceil(tiles / SMs)
 *   t = max(t, bytes / HBM bandwidth),  bytes = 2*(m*k + k*n) + c_bytes*m*n
 *
 * - tile quantisation: a tile is computed whole even when m or n do not
 *   fill it (fine-grained experts with few rows per expert waste most);
 * - wave quantisation: tiles run SMs at a time, the last wave partly empty;
 * - K0: per-tile fixed cost (pipeline fill of 4 stages of 64 plus the
 *   epilogue writing C, about 6 k-steps of 64), so small k loses efficiency;
 * - the HBM roofline: for small m (few rows per expert) the weights' bytes
 *   dominate and the GEMM is memory-bound.
 * Defaults: e_max = 0.88, K0 = 384, t_launch = 4 us, tiles 128x256 (e_tile 1)
 * and 128x128 (e_tile 0.9, the smaller tile re-reads operands twice as
 * often).  e_max, K0 and t_launch reproduce the cuBLAS BF16 figures measured
 * on an H200 of the device machine (2026-11-22, reference/hardware.md) within
 * 3%: 8192^3: 800 (model 804), 4096x14336x4096: 790 (767), 16384x6144x6144:
 * 771 (793), 2048^3: 607 (610) TFLOP/s of 989.5.  Checked on the device
 * H100 at the expert shapes of the calibration runs (bench/expert_gemm.cu,
 * 2026-11-22, one cuBLAS call per expert over 4 streams as TE's
 * GroupedLinear does): measured/model time 0.79-1.17, e.g. 16 x 1024 x 5120
 * x 3584: 647 measured vs 709 model TFLOP/s; the fp32-accumulating wgrad
 * runs faster than modelled (424 vs 346).  A calibration file's measured
 * GEMMs replace the model at and near the measured shapes.
 *
 * Flash attention: attention.c (a rate table per attention backend).
 *
 * Memory-bound kernels: t = t_kernel + bytes / (achievable HBM bandwidth *
 * e_pattern), t_kernel = 2 us (launch and tail of a small elementwise
 * kernel).  e_pattern is what the kernel's access pattern reaches of the
 * copy bandwidth, measured on the device H100 (docs/kernels.md, 2026-11-22,
 * row-major [8192 tokens, 4096], top-2, vs 3.0 TB/s device-to-device copy):
 *   streaming (norms, RoPE, SwiGLU, adds, casts, copies)     1.00
 *   row gather (permute: index_select of R rows)              0.84  (2508 GB/s)
 *   row combine (unpermute: k rows weighted into one token;
 *     permute backward: the k row gradients summed per token) 0.44  (1310 GB/s)
 *   row combine backward (unpermute backward: scatter the
 *     token gradient to k rows and the probability gradient)  0.48  (1439 GB/s)
 * Irregular row reads/writes (one index per 8 KB row, k reads per output
 * row, a dot product per row for the probability gradient) keep fewer bytes
 * in flight than a streaming copy; the combine kernels measured are
 * gather-based (no atomics), so Megatron's scatter_add_-based unpermute is
 * at best as fast.  Streaming kernels keep 1.0: the measured elementwise
 * kernels of the executor are below that only where they use scalar 2-byte
 * accesses (docs/kernels.md), which Megatron's fused TE/apex kernels do not.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

#define GEMM_E_MAX 0.88
#define GEMM_K0 384.0
#define GEMM_LAUNCH_S 4e-6
#define MEM_KERNEL_S 2e-6
/* Calibration distance added when a measured GEMM writes C with another
 * element size (bf16 vs fp32 accumulation): a modelling choice, not a
 * measurement; 0.5 counts another epilogue like a shape 1.65x away in one
 * dimension, so an exact-shape entry of the other kind still outranks
 * entries of the same kind more than 1.65x away. */
#define GEMM_CAL_C_BYTES_DISTANCE 0.5

typedef struct { double tm, tn, e; } Tile;
static const Tile tiles[] = {{128, 256, 1.0}, {128, 128, 0.9}};

/* Default model, one grouped GEMM of `groups` x (m x n x k). */
static double gemm_model(const SimHw *hw, int groups, double m, double n, double k, double c_bytes) {
    if (m <= 0 || n <= 0 || k <= 0 || groups <= 0) return 0;
    double per_sm = hw->peak_gemm / hw->sms;
    double best = 1e30;
    for (size_t i = 0; i < sizeof tiles / sizeof tiles[0]; i++) {
        double t_tiles = groups * ceil(m / tiles[i].tm) * ceil(n / tiles[i].tn);
        double waves = ceil(t_tiles / hw->sms);
        double t = waves * 2.0 * tiles[i].tm * tiles[i].tn * (k + GEMM_K0) / (per_sm * GEMM_E_MAX * tiles[i].e);
        if (t < best) best = t;
    }
    double t_ab = groups * 2.0 * (m * k + k * n) / hw->hbm_bw;
    double t_c = groups * c_bytes * m * n / hw->hbm_bw;
    return GEMM_LAUNCH_S + (best > t_ab ? best : t_ab) + t_c;
}

void compute_calibration_init(SimHw *hw) {
    const Calibration *cal = hw->cal;
    for (int i = 0; i < cal->num_gemms; i++) {
        const CalGemm *g = &cal->gemms[i];
        double measured = 2.0 * g->m * g->n * g->k * g->groups / (g->tflops * 1e12);
        hw->cal_gemm_ratio[i] = measured / gemm_model(hw, g->groups, g->m, g->n, g->k, g->c_bytes);
    }
}

/* Calibration: the measured shape nearest in log space rescales the model
 * by measured/model at that shape, fading out with distance (factor e-fold
 * per unit of log-distance), so the model stays in charge far from data.
 * Distance = |log m/m'| + |log n/n'| + |log k/k'| + |log groups/groups'|
 * + GEMM_CAL_C_BYTES_DISTANCE when the C element sizes differ (a wgrad
 * accumulating into fp32 and a forward GEMM of the same shape run
 * different cuBLAS kernels).
 * Entries at the same nearest distance (e.g. a forward and a dgrad GEMM of
 * one shape, which the simulator's (m, n, k) cannot tell apart) average
 * their ratios. */
static double gemm_calibrated(const SimHw *hw, int groups, double m, double n, double k, double c_bytes) {
    double t = gemm_model(hw, groups, m, n, k, c_bytes);
    const Calibration *cal = hw->cal;
    if (!cal || cal->num_gemms == 0 || t <= 0) return t;
    double best_d = 1e30, sum = 0;
    int count = 0;
    for (int i = 0; i < cal->num_gemms; i++) {
        const CalGemm *g = &cal->gemms[i];
        double d = fabs(log(m / g->m)) + fabs(log(n / g->n)) + fabs(log(k / g->k)) + fabs(log(groups / (double)g->groups)) +
                   (g->c_bytes != c_bytes ? GEMM_CAL_C_BYTES_DISTANCE : 0.0);
        if (d > best_d + 1e-12) continue;
        if (d < best_d - 1e-12) best_d = d, sum = 0, count = 0;
        sum += hw->cal_gemm_ratio[i];
        count++;
    }
    double w = exp(-best_d);
    return t * (w * (sum / count) + (1 - w));
}

double compute_gemm_time(const SimHw *hw, double m, double n, double k, double c_bytes) {
    return gemm_calibrated(hw, 1, m, n, k, c_bytes);
}

double compute_grouped_gemm_time(const SimHw *hw, int groups, double m, double n, double k, double c_bytes) {
    return gemm_calibrated(hw, groups, m, n, k, c_bytes);
}

/* fraction of the copy bandwidth per access pattern (MemPattern order) */
static const double mem_pattern_eff[MEM_PATTERN_COUNT] = {
    [MEM_STREAM] = 1.0,
    [MEM_ROW_GATHER] = 2508.0 / 3000.0,
    [MEM_ROW_COMBINE] = 1310.0 / 3000.0,
    [MEM_ROW_COMBINE_BWD] = 1439.0 / 3000.0,
};

double compute_memory_time_pattern(const SimHw *hw, double bytes, MemPattern pattern) {
    if (bytes <= 0) return 0;
    double e = (pattern >= 0 && pattern < MEM_PATTERN_COUNT) ? mem_pattern_eff[pattern] : 1.0;
    return MEM_KERNEL_S + bytes / (hw->hbm_bw * e);
}

double compute_memory_time(const SimHw *hw, double bytes) {
    return compute_memory_time_pattern(hw, bytes, MEM_STREAM);
}
