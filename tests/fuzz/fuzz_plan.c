/* fuzz_plan.c: the plan loader (core/plan.c plan_from_json_text), the JSON
 * that `search --json` writes and `simulate --plan` / `execute --plan` read.
 *
 * A plan names its model and cluster; a name outside the catalog is read as
 * a file path.  This harness must not read the machine's files, so inputs
 * whose "model" or "cluster" string is not a catalog name are skipped here
 * (fuzz_simulate covers plans that name model and cluster files).
 *
 * An accepted plan must validate, split its layers over the pipeline stages
 * exactly, and survive a round trip through plan_to_json_string. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "core/plan.h"
#include "fuzz_util.h"

static int in_catalog(const cJSON *root, const char *key, const CatalogEntry *entries, int count) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsString(v)) return 1; /* missing or not a string: the loader refuses it without reading files */
    for (int i = 0; i < count; i++)
        if (!strcmp(entries[i].name, v->valuestring)) return 1;
    return 0;
}

static int hermetic(const char *text) {
    cJSON *root = cJSON_Parse(text);
    int ok = !cJSON_IsObject(root) ||
             (in_catalog(root, "model", catalog_model_entries, catalog_model_count) &&
              in_catalog(root, "cluster", catalog_cluster_entries, catalog_cluster_count));
    cJSON_Delete(root);
    return ok;
}

static void check_accepted(const Plan *p) {
    MpError err;
    fuzz_check(plan_validate(p, &err) == 0, "an accepted plan validates");
    if (p->map.pp <= 4096) { /* sum of the stages' layers == num_layers */
        long sum = 0;
        for (int s = 0; s < p->map.pp; s++) {
            int n = plan_stage_layers(p, s);
            fuzz_check(n > 0, "every pipeline stage has a layer");
            sum += n;
        }
        fuzz_check(sum == p->model.num_layers, "stage layers add up to num_layers");
    }
    char *json = plan_to_json_string(p);
    if (!json) return; /* out of memory */
    Plan *back = malloc(sizeof *back);
    if (back) {
        int rc = plan_from_json_text(json, "fuzz/roundtrip.json", back, &err);
        fuzz_check(rc == 0, "plan_to_json_string's output loads again");
        fuzz_check(!memcmp(&back->map, &p->map, sizeof p->map), "round trip keeps the mapping");
        fuzz_check(back->first_stage_layers == p->first_stage_layers &&
                   back->last_stage_layers == p->last_stage_layers, "round trip keeps the uneven split");
        fuzz_check(back->train.seq_len == p->train.seq_len && back->train.micro_batch == p->train.micro_batch &&
                   back->train.global_batch == p->train.global_batch, "round trip keeps the batch");
        free(back);
    }
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    if (!text) return 0;
    Plan *p = malloc(sizeof *p);
    if (p && !hermetic(text)) fuzz_note("skipped", "model or cluster is not a catalog name");
    if (p && hermetic(text)) {
        MpError err = {{0}};
        if (plan_from_json_text(text, "fuzz/plan.json", p, &err) == 0) {
            fuzz_note("accepted", p->model.name);
            check_accepted(p);
        } else {
            fuzz_note("refused", err.msg);
            fuzz_check(err.msg[0] != 0, "a refused plan has a message");
        }
    }
    free(p);
    free(text);
    return 0;
}
