/* topo_detect.c: see topo_detect.h.  hwloc keeps PCI devices only when the
 * I/O filter asks for them; GPUs are PCI class 0x03xx with NVIDIA's vendor
 * id, InfiniBand adapters class 0x0207, Ethernet 0x0200. */
#include "topo_detect.h"

#include <hwloc.h>
#include <stdio.h>
#include <string.h>

int topo_detect(TopoInfo *out, MpError *err) {
    memset(out, 0, sizeof *out);
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) return mp_fail(err, "hwloc: cannot initialise");
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_ALL);
    /* PCI devices come from the linux component's sysfs walk; the libpciaccess
     * "pci" plugin finds the same devices and leaks its device list
     * (LeakSanitizer, hwloc 2.9), so it is left out. */
    hwloc_topology_set_components(topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return mp_fail(err, "hwloc: cannot read this machine's topology");
    }
    out->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    out->numa_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    for (hwloc_obj_t o = hwloc_get_next_pcidev(topo, NULL); o; o = hwloc_get_next_pcidev(topo, o)) {
        unsigned cls = o->attr->pcidev.class_id;
        if (o->attr->pcidev.vendor_id == 0x10de && (cls >> 8) == 0x03) {
            if (out->num_gpus < TOPO_MAX_DEVICES) {
                int i = out->num_gpus;
                snprintf(out->gpu_bus_ids[i], sizeof out->gpu_bus_ids[i], "%04x:%02x:%02x.%x",
                         o->attr->pcidev.domain, o->attr->pcidev.bus, o->attr->pcidev.dev, o->attr->pcidev.func);
                hwloc_obj_t numa = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, o);
                out->gpu_numa[i] = numa ? (int)numa->logical_index : -1;
            }
            out->num_gpus++;
        } else if (cls == 0x0207) {
            out->num_ib_nics++;
        } else if (cls == 0x0200) {
            out->num_eth_nics++;
        }
    }
    hwloc_topology_destroy(topo);
    return 0;
}
