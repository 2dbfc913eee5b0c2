/* fuzz_model.c: the model loader (core/catalog.c model_from_json_text) on
 * any text: catalog-format model JSON, or a HuggingFace config.json when the
 * object has "model_type".  An accepted model must validate and give finite,
 * positive parameter and FLOP counts. */
#include <math.h>
#include <stdlib.h>

#include "core/catalog.h"
#include "core/model.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    if (!text) return 0;
    ModelSpec m;
    MpError err = {{0}};
    if (model_from_json_text(text, "fuzz/model.json", &m, &err) == 0) {
        fuzz_note("accepted", m.name);
        MpError again;
        fuzz_check(model_validate(&m, &again) == 0, "an accepted model validates");
        ModelParams p;
        model_params(&m, &p);
        fuzz_check(isfinite(p.total) && p.total > 0, "parameter count finite and positive");
        fuzz_check(isfinite(p.active) && p.active > 0 && p.active <= p.total, "active parameters in (0, total]");
        for (int conv = FLOPS_LEGACY; conv <= FLOPS_MEGATRON; conv++) {
            double f = model_flops(&m, (FlopsConvention)conv, 4096, 4096.0);
            fuzz_check(isfinite(f) && f > 0, "FLOPs of one sequence finite and positive");
        }
    } else {
        fuzz_note("refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused model has a message");
    }
    free(text);
    return 0;
}
