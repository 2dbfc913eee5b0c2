/* calibration.h: measured overrides of the simulator's default efficiencies
 * (GEMM efficiency by shape, collective bandwidths).  Loaded from a JSON file
 * (`--calibration FILE`) by the CLI; NULL means "defaults from public figures".
 */
#ifndef MOEPLAN_CALIBRATION_H
#define MOEPLAN_CALIBRATION_H

#include "../core/attn_backend.h"
#include "../core/error.h"
#include "../core/layout.h"

#define CAL_MAX_GEMMS 256
#define CAL_MAX_COLL 256

/* attention entries: 4 kernels per CP plan and backend (cal_shapes.h), room
 * for a dozen plans on two backends plus hand-written entries */
#define CAL_MAX_ATTENTION 128

/* One measured GEMM in the simulator's convention: C[m,n] = A[m,k] B[k,n]
 * per group (dgrad: m = rows, n = in, k = out; wgrad: m = out, n = in,
 * k = rows), `groups` such products in one grouped call. */
typedef struct {
    char name[32];          /* e.g. "EP2 fc1 wgrad" (documentation only) */
    int m, n, k;            /* GEMM shape of one group */
    int groups;             /* >= 1 (default 1) */
    double c_bytes;         /* bytes per C element written: 2 bf16, 4 fp32, 8 fp32 accumulated (default 2) */
    double tflops;          /* measured TFLOP/s = 2*m*n*k*groups / time */
} CalGemm;

/* One measured flash-attention kernel, keyed as the simulator prices one
 * (attention.c): q rows x kv rows of one sequence, batch x heads, head dim,
 * mask.  "seq": S is short for q_rows = kv_rows = S, causal.  TFLOP/s in
 * the simulator's FLOPs convention (forward 2 * pairs * (d_qk + d_v) *
 * heads * batch, pairs q*kv or q*kv/2 causal; backward 2.5 x forward).
 * backend: the implementation measured; AUTO (absent) = whatever backend
 * the plan uses. */
typedef struct {
    char name[80];          /* e.g. "mixtral-8x22b s65536 tp4 cp8 mbs1 ring-earlier" (documentation only) */
    int seq;                /* q_rows when q_rows == kv_rows and causal (documentation) */
    int q_rows, kv_rows;
    int batch, heads, kv_heads, head_dim;
    AttnMask mask;
    AttnBackend backend;
    double fwd_tflops, bwd_tflops;
} CalAttention;

typedef struct {
    char op[32];            /* "all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv" */
    int group_size;
    int nodes;              /* nodes the group spans */
    double bytes;           /* message size (full buffer, nccl-tests convention) */
    double busbw;           /* bytes/s measured bus bandwidth */
} CalCollective;

typedef struct {
    char device[64];        /* where it was measured */
    int num_gemms;
    CalGemm gemms[CAL_MAX_GEMMS];
    int num_collectives;
    CalCollective collectives[CAL_MAX_COLL];
    int num_attention;
    CalAttention attention[CAL_MAX_ATTENTION];
    double hbm_bw;          /* bytes/s measured copy bandwidth; 0 = not given */
} Calibration;

int calibration_load_file(const char *path, Calibration *out, MpError *err);

#endif
