/* plan.h: Plan, everything needed to simulate or execute one training
 * configuration; the JSON that `search --json` writes and `simulate --plan`
 * and `execute --plan` read.
 *
 * {"model": "mixtral-8x22b", "cluster": "dgx-h100", "gpus": 128,
 *  "tp": 2, "cp": 1, "pp": 8, "vpp": 1, "etp": 1, "ep": 8,
 *  "order": "tp-cp-ep-dp-pp", "first_stage_layers": 0, "last_stage_layers": 0,
 *  "seq": 4096, "mbs": 1, "gbs": 256, "precision": "bf16",
 *  "dispatcher": "alltoall", "capacity_factor": 1.0, "imbalance": 1.0,
 *  "recompute": "none", "optimizer_sharding": "distributed",
 *  "overlap": "grad,param", "flops": "legacy", "memory_reserve_gib": 4}
 * Missing optional fields take TrainConfig defaults; unknown keys (such as a
 * "prediction" object written by search) are ignored.
 */
#ifndef MOEPLAN_PLAN_H
#define MOEPLAN_PLAN_H

#include "cluster.h"
#include "mapping.h"
#include "model.h"
#include "train.h"

#define MP_PATH_LEN 512

typedef struct {
    char model_ref[MP_PATH_LEN];    /* catalog name or path, as given */
    char cluster_ref[MP_PATH_LEN];
    ModelSpec model;                /* resolved */
    Cluster cluster;                /* resolved */
    Mapping map;
    int first_stage_layers;         /* uneven pipeline split; 0 = even */
    int last_stage_layers;
    TrainConfig train;
} Plan;

/* Reads, resolves model and cluster, validates everything
 * (mapping_resolve, train_config_validate, batch divisibility). */
int plan_load_file(const char *path, Plan *out, MpError *err);
int plan_from_json_text(const char *text, const char *origin, Plan *out, MpError *err);

/* Checks that a resolved plan is consistent: global batch divisible by
 * mbs*dp, layers divisible by pp*vpp (or the uneven split adds up), heads by
 * tp, KV groups by tp (or tp by g), experts by ep, seq by 2*cp when cp > 1. */
int plan_validate(const Plan *p, MpError *err);

/* Layers of pipeline stage `stage` (0..pp-1), honouring the uneven split. */
int plan_stage_layers(const Plan *p, int stage);

/* Writes the plan as a JSON object (caller frees with free()). */
char *plan_to_json_string(const Plan *p);

#endif
