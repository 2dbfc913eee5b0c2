/* fuzz_hf_config.c: the HuggingFace config.json reader (core/hf_config.c),
 * reached the way the CLI reaches it: model_from_json_text on an object with
 * "model_type".  Inputs without "model_type" are left to fuzz_model. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "core/catalog.h"
#include "core/model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    if (!text) return 0;
    cJSON *root = cJSON_Parse(text);
    int is_hf = cJSON_IsObject(root) && cJSON_GetObjectItemCaseSensitive(root, "model_type");
    cJSON_Delete(root);
    if (is_hf) {
        ModelSpec m;
        MpError err = {{0}};
        if (model_from_json_text(text, "fuzz/config.json", &m, &err) == 0) {
            fuzz_note("accepted", m.name);
            MpError again;
            fuzz_check(model_validate(&m, &again) == 0, "an accepted HF model validates");
            ModelParams p;
            model_params(&m, &p);
            fuzz_check(isfinite(p.total) && p.total > 0, "parameter count finite and positive");
        } else {
            fuzz_note("refused", err.msg);
            fuzz_check(err.msg[0] != 0, "a refused HF config has a message");
        }
    }
    free(text);
    return 0;
}
