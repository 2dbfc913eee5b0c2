/* cmd_topo.c: `moeplan topo`: detect this machine (hwloc) and write a
 * cluster file for it: the figures of a catalog cluster (--base, default
 * dgx-h100) with the GPU and NIC counts found here. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/catalog.h"
#include "core/outfile.h"
#include "core/topo_detect.h"

static const char *usage_text =
    "usage: moeplan topo [--base CLUSTER] [--json] [--out FILE]\n"
    "  detects cores, NUMA nodes, NVIDIA GPUs and InfiniBand/Ethernet adapters with hwloc\n"
    "  --base CLUSTER                   catalog cluster whose figures the cluster file takes (default dgx-h100)\n"
    "  --json                           print a cluster file: --base's figures with this machine's GPU and\n"
    "                                   NIC counts (counts not found are --base's, said on stderr and in notes)\n"
    "  --out FILE                       write that cluster file to FILE\n"
    "  --help                           this text\n";

int cmd_topo(int argc, char **argv) {
    MpError err = {{0}};
    ArgList a;
    const char *base = "dgx-h100", *out_path = NULL;
    if (args_init(&a, argc, argv, &err)) goto bad;
    if (args_flag(&a, "--help")) { fputs(usage_text, stdout); return 0; }
    bool json = args_flag(&a, "--json");
    const char *v;
    if (args_value(&a, "--base", &v, &err)) goto bad;
    if (v) base = v;
    if (args_value(&a, "--out", &out_path, &err) || args_finish(&a, &err)) goto bad;
    if (out_path && outfile_check_target(out_path, &err)) goto bad;
    Cluster c;
    if (cluster_lookup(base, &c, &err)) goto bad;
    const char *base_json = NULL;
    for (int i = 0; i < catalog_cluster_count; i++)
        if (!strcmp(catalog_cluster_entries[i].name, base)) base_json = catalog_cluster_entries[i].json;
    if ((json || out_path) && !base_json) {
        mp_fail(&err, "--base: '%s' must be a catalog cluster name to derive a cluster file from", base);
        goto bad;
    }
    TopoInfo t;
    if (topo_detect(&t, &err)) {
        fprintf(stderr, "moeplan topo: %s\n", err.msg);
        return 1;
    }
    if (!json && !out_path) {
        printf("this machine: %d cores, %d NUMA nodes, %d NVIDIA GPUs, %d InfiniBand and %d Ethernet adapters\n",
               t.cores, t.numa_nodes, t.num_gpus, t.num_ib_nics, t.num_eth_nics);
        for (int i = 0; i < t.num_gpus && i < TOPO_MAX_DEVICES; i++)
            printf("  GPU %d at PCI %s, package %d\n", i, t.gpu_bus_ids[i], t.gpu_numa[i]);
        printf("base cluster %s: %d GPUs and %d NICs per node, NVLink domain %d\n", c.name, c.gpus_per_node,
               c.nics_per_node, c.nvlink_domain);
        return 0;
    }
    cJSON *j = cJSON_Parse(base_json);
    if (!j) { mp_fail(&err, "%s: catalog entry does not parse", base); goto bad; }
    char name[MP_NAME_LEN + 16], notes[512];
    snprintf(name, sizeof name, "this-%s", base);
    int gpus = t.num_gpus > 0 ? t.num_gpus : c.gpus_per_node;
    int nics = t.num_ib_nics > 0 ? t.num_ib_nics : c.nics_per_node;
    snprintf(notes, sizeof notes,
             "Written by moeplan topo from hwloc: %d NVIDIA GPUs, %d InfiniBand adapters, %d cores found on this "
             "machine; other figures from the catalog cluster %s.", t.num_gpus, t.num_ib_nics, t.cores, base);
    /* counts not found here are the base's defaults: say so (stderr and notes) */
    char defaults[256] = "";
    if (t.num_gpus <= 0 || t.num_ib_nics <= 0) {
        snprintf(defaults, sizeof defaults, " DEFAULTED, not found on this machine:%s%s (values of %s).",
                 t.num_gpus <= 0 ? " gpus_per_node" : "", t.num_ib_nics <= 0 ? " nics_per_node" : "", base);
        if (t.num_gpus <= 0)
            fprintf(stderr, "moeplan topo: warning: no NVIDIA GPU found: gpus_per_node %d is %s's default\n", gpus, base);
        if (t.num_ib_nics <= 0)
            fprintf(stderr, "moeplan topo: warning: no InfiniBand adapter found: nics_per_node %d is %s's default\n",
                    nics, base);
        size_t l = strlen(notes);
        snprintf(notes + l, sizeof notes - l, "%s", defaults);
    }
    cJSON_ReplaceItemInObject(j, "name", cJSON_CreateString(name));
    cJSON_ReplaceItemInObject(j, "notes", cJSON_CreateString(notes));
    cJSON_ReplaceItemInObject(j, "gpus_per_node", cJSON_CreateNumber(gpus));
    cJSON_ReplaceItemInObject(j, "nics_per_node", cJSON_CreateNumber(nics));
    if (c.nvlink_domain < gpus) cJSON_ReplaceItemInObject(j, "nvlink_domain", cJSON_CreateNumber(gpus));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) { fprintf(stderr, "moeplan topo: out of memory\n"); return 1; }
    int rc = 0;
    if (out_path) {
        size_t n = strlen(text);
        char *line = malloc(n + 2);
        if (!line) { free(text); fprintf(stderr, "moeplan topo: out of memory\n"); return 1; }
        memcpy(line, text, n);
        memcpy(line + n, "\n", 2);
        if (outfile_write_text(out_path, line, &err)) { fprintf(stderr, "moeplan topo: %s\n", err.msg); rc = 1; }
        free(line);
    } else {
        puts(text);
    }
    free(text);
    return rc;
bad:
    fprintf(stderr, "moeplan topo: %s\n", err.msg);
    return 2;
}
