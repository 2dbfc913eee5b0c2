/* cluster.h: Cluster, the hardware a plan runs on.
 *
 * All bandwidths are bytes/s, one direction, per GPU or per NIC; times are
 * seconds; FLOP rates are FLOP/s.  "line" figures are datasheet rates,
 * "achievable" ones are what NCCL/cuBLAS reach (sources in each topology
 * file's "notes" and in the README).
 */
#ifndef MOEPLAN_CLUSTER_H
#define MOEPLAN_CLUSTER_H

#include "attn_backend.h"
#include "error.h"
#include "model.h"

typedef struct {
    char name[MP_NAME_LEN];
    char gpu_name[MP_NAME_LEN];
    /* GPU */
    double peak_bf16_flops;    /* FLOP/s, dense (never the 2:4 sparse figure) */
    double peak_fp8_flops;     /* FLOP/s, dense */
    double hbm_bytes;          /* bytes of HBM per GPU */
    double hbm_bw;             /* bytes/s, datasheet */
    double hbm_bw_achievable;  /* bytes/s, a large device-to-device copy (read + write) */
    int sm_count;              /* streaming multiprocessors */
    /* node / NVLink domain */
    int gpus_per_node;
    int nvlink_domain;         /* GPUs in one NVLink domain (8 DGX, 72 NVL72) */
    double nvlink_bw;          /* bytes/s per GPU one direction, line rate */
    double nvlink_busbw;       /* bytes/s achievable NCCL bus bandwidth in the domain */
    double nvlink_latency;     /* s, small-message collective start-up inside the domain */
    /* network between NVLink domains */
    int nics_per_node;
    double nic_bw;             /* bytes/s per NIC, line rate */
    double nic_busbw;          /* bytes/s achievable per NIC */
    double net_latency;        /* s, per hop for small messages */
    char net_topology[MP_NAME_LEN]; /* "rail-optimized-fat-tree", ... */
    /* software */
    AttnBackend attention_backend; /* default of plans on this cluster; AUTO = cudnn */
} Cluster;

int cluster_validate(const Cluster *c, MpError *err);

/* Number of GPUs per NVLink domain seen by a job of `gpus` GPUs
 * (a job smaller than a node uses part of one domain). */
int cluster_domain_size(const Cluster *c);

#endif
