/* calibration.h: measured overrides of the simulator's default efficiencies
 * (GEMM efficiency by shape, collective bandwidths).  Loaded from a JSON file
 * (`--calibration FILE`) by the CLI; NULL means "defaults from public figures".
 */
#ifndef MOEPLAN_CALIBRATION_H
#define MOEPLAN_CALIBRATION_H

#include "../core/error.h"

#define CAL_MAX_GEMMS 256
#define CAL_MAX_COLL 256

typedef struct {
    int m, n, k;            /* GEMM shape */
    double tflops;          /* measured TFLOP/s */
} CalGemm;

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
    double hbm_bw;          /* bytes/s measured copy bandwidth; 0 = not given */
} Calibration;

int calibration_load_file(const char *path, Calibration *out, MpError *err);

#endif
