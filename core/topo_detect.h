/* topo_detect.h: what this machine has, read with hwloc: cores, NUMA nodes,
 * NVIDIA GPUs and network adapters on the PCI bus.  Used by `moeplan topo`
 * to write a cluster file for the machine at hand. */
#ifndef MOEPLAN_TOPO_DETECT_H
#define MOEPLAN_TOPO_DETECT_H

#include "error.h"

#define TOPO_MAX_DEVICES 64

typedef struct {
    int cores, numa_nodes;
    int num_gpus;          /* NVIDIA (vendor 0x10de) display/3D controllers */
    int num_ib_nics;       /* InfiniBand controllers (PCI class 0x0207) */
    int num_eth_nics;      /* Ethernet controllers (class 0x0200) */
    char gpu_bus_ids[TOPO_MAX_DEVICES][16];  /* "0000:18:00.0" */
    int gpu_numa[TOPO_MAX_DEVICES];          /* NUMA node of each GPU, -1 unknown */
} TopoInfo;

int topo_detect(TopoInfo *out, MpError *err);

#endif
