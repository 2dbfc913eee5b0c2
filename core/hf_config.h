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

#endif
