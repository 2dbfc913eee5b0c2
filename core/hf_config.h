/* hf_config.h: ModelSpec from a HuggingFace config.json (internal to core/;
 * catalog.c calls it when the JSON has a "model_type" key). */
#ifndef MOEPLAN_HF_CONFIG_H
#define MOEPLAN_HF_CONFIG_H

#include <cjson/cJSON.h>

#include "error.h"
#include "model.h"

/* Supported model_type values: mixtral, qwen2_moe, qwen3_moe, deepseek_v3.
 * out->name is left for the caller to fill.  Errors name HF keys. */
int model_from_hf_config(const cJSON *root, const char *origin, ModelSpec *out, MpError *err);

/* The validation message of a model read from a HuggingFace config.json
 * with each ModelSpec field name replaced by the file's key for this
 * model_type ("num_kv_groups" -> "num_key_value_heads"), so the message
 * names what the user can edit.  *out is malloc'ed; -1 when out of memory. */
int hf_config_rename_fields(const char *model_type, const char *msg, char **out);

#endif
