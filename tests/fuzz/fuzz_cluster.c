/* fuzz_cluster.c: the cluster (topology) loader, core/catalog.c
 * cluster_from_json_text: the format of topologies/NAME.json, of `--cluster
 * FILE` and of what `moeplan topo --out` writes.  An accepted cluster must
 * validate. */
#include <stdlib.h>

#include "core/catalog.h"
#include "core/cluster.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    if (!text) return 0;
    Cluster c;
    MpError err = {{0}};
    if (cluster_from_json_text(text, "fuzz/cluster.json", &c, &err) == 0) {
        fuzz_note("accepted", c.name);
        MpError again;
        fuzz_check(cluster_validate(&c, &again) == 0, "an accepted cluster validates");
        fuzz_check(cluster_domain_size(&c) >= c.gpus_per_node, "NVLink domain covers a node");
    } else {
        fuzz_note("refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused cluster has a message");
    }
    free(text);
    return 0;
}
