/* cmd_groups.c: `moeplan groups`: print every rank group of a folded
 * mapping and, per group kind, how the groups sit on nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/mapping.h"

static const char *usage_text =
    "usage: moeplan groups --gpus N [--tp T] [--cp C] [--pp P] [--etp E] [--ep X] [--json]\n"
    "Prints the rank groups of a folded mapping and where they sit.\n"
    "  --gpus N                         GPU count\n"
    "  --tp T                           tensor parallelism of attention (default 1)\n"
    "  --cp C                           context parallelism (default 1)\n"
    "  --pp P                           pipeline stages (default 1)\n"
    "  --etp E                          tensor parallelism of the experts (default 1)\n"
    "  --ep X                           expert parallelism (default 1)\n"
    "  --order tp-cp-ep-dp-pp|tp-cp-ep-pp-dp   rank order (default tp-cp-ep-dp-pp)\n"
    "  --gpus-per-node G                GPUs per node, for the placement (default 8)\n"
    "  --experts E                      the model's expert count: EP must divide it (default 0: not checked)\n"
    "  --json                           print one JSON object\n"
    "  --help                           this text\n";

static void print_group(const int *members, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", members[i]);
    putchar(']');
}

static void print_json(const Mapping *m, int gpn) {
    int *members = malloc(sizeof(int) * (size_t)m->world);
    printf("{\"gpus\": %d, \"tp\": %d, \"cp\": %d, \"dp\": %d, \"pp\": %d, \"etp\": %d, \"ep\": %d, "
           "\"edp\": %d, \"order\": \"%s\", \"gpus_per_node\": %d,\n \"groups\": {",
           m->world, m->tp, m->cp, m->dp, m->pp, m->etp, m->ep, m->edp, rank_order_name(m->order), gpn);
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        int n = mapping_group_size(m, (GroupKind)k), groups = mapping_num_groups(m, (GroupKind)k);
        printf("%s\n  \"%s\": [", k ? "," : "", group_kind_name((GroupKind)k));
        for (int g = 0; g < groups; g++) {
            mapping_group_members(m, (GroupKind)k, g, members);
            if (g) putchar(',');
            print_group(members, n);
        }
        putchar(']');
    }
    printf("},\n \"placement\": {");
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        GroupPlacement p;
        mapping_placement(m, (GroupKind)k, gpn, &p);
        printf("%s\n  \"%s\": {\"size\": %d, \"nodes\": %d, \"max_per_node\": %d}", k ? "," : "",
               group_kind_name((GroupKind)k), p.size, p.nodes, p.max_per_node);
    }
    printf("}}\n");
    free(members);
}

static void print_table(const Mapping *m, int gpn) {
    int *members = malloc(sizeof(int) * (size_t)m->world);
    printf("%d GPUs (%d per node), order %s\n", m->world, gpn, rank_order_name(m->order));
    printf("attention: TP%d CP%d DP%d PP%d    experts: ETP%d EP%d EDP%d PP%d\n\n", m->tp, m->cp, m->dp,
           m->pp, m->etp, m->ep, m->edp, m->pp);
    printf("%-7s %5s %7s %12s %13s  %s\n", "kind", "size", "groups", "nodes/group", "members/node", "groups");
    for (int k = 0; k < GROUP_KIND_COUNT; k++) {
        GroupPlacement p;
        int n = mapping_group_size(m, (GroupKind)k), groups = mapping_num_groups(m, (GroupKind)k);
        mapping_placement(m, (GroupKind)k, gpn, &p);
        printf("%-7s %5d %7d %12d %13d  ", group_kind_name((GroupKind)k), n, groups, p.nodes, p.max_per_node);
        int shown = groups < 8 ? groups : 8;
        for (int g = 0; g < shown; g++) {
            mapping_group_members(m, (GroupKind)k, g, members);
            if (g) putchar(' ');
            if (n > 16) printf("[%d,%d,..,%d]", members[0], members[1], members[n - 1]);
            else print_group(members, n);
        }
        if (shown < groups) printf(" ... (%d more)", groups - shown);
        putchar('\n');
    }
    free(members);
}

int cmd_groups(int argc, char **argv) {
    MpError err = {{0}};
    ArgList a;
    Mapping m = {.tp = 1, .cp = 1, .pp = 1, .vpp = 1, .etp = 1, .ep = 1, .order = ORDER_TP_CP_EP_DP_PP};
    int gpn = 8, experts = 0;
    bool has_gpus = false;
    const char *order = NULL;
    if (args_init(&a, argc, argv, &err)) goto bad;
    if (args_flag(&a, "--help")) { fputs(usage_text, stdout); return 0; }
    bool json = args_flag(&a, "--json");
    if (args_int(&a, "--gpus", &m.world, &has_gpus, &err) || args_int(&a, "--tp", &m.tp, NULL, &err) ||
        args_int(&a, "--cp", &m.cp, NULL, &err) || args_int(&a, "--pp", &m.pp, NULL, &err) ||
        args_int(&a, "--etp", &m.etp, NULL, &err) || args_int(&a, "--ep", &m.ep, NULL, &err) ||
        args_int(&a, "--gpus-per-node", &gpn, NULL, &err) || args_int(&a, "--experts", &experts, NULL, &err) ||
        args_value(&a, "--order", &order, &err) || args_finish(&a, &err))
        goto bad;
    if (!has_gpus) { mp_fail(&err, "--gpus: required"); goto bad; }
    if (order && rank_order_parse(order, &m.order)) {
        mp_fail(&err, "--order: '%s' is not tp-cp-ep-dp-pp or tp-cp-ep-pp-dp", order);
        goto bad;
    }
    if (gpn <= 0) { mp_fail(&err, "--gpus-per-node: must be positive, got %d", gpn); goto bad; }
    if (experts < 0) { mp_fail(&err, "--experts: must be >= 0, got %d", experts); goto bad; }
    if (m.world > 1 << 20) { mp_fail(&err, "--gpus: %d is more than this tool handles (1048576)", m.world); goto bad; }
    if (mapping_resolve(&m, experts, &err)) goto bad;
    if (json) print_json(&m, gpn);
    else print_table(&m, gpn);
    return 0;
bad:
    fprintf(stderr, "moeplan groups: %s\n", err.msg);
    return 2;
}
