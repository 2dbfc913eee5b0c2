/* fuzz_calibration.c: the --calibration FILE loader
 * (simulator/calibration.c calibration_load_file), reading the input from a
 * temporary file as the CLI does.  An accepted calibration's entries must be
 * within the loader's documented bounds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "simulator/calibration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    if (fuzz_write_file("calibration.json", data, size, path, sizeof path)) return 0;
    Calibration *cal = malloc(sizeof *cal);
    if (!cal) return 0;
    MpError err = {{0}};
    if (calibration_load_file(path, cal, &err) == 0) {
        fuzz_note("accepted", cal->device);
        fuzz_check(cal->num_gemms >= 0 && cal->num_gemms <= CAL_MAX_GEMMS, "gemm count in bounds");
        fuzz_check(cal->num_collectives >= 0 && cal->num_collectives <= CAL_MAX_COLL, "collective count in bounds");
        fuzz_check(cal->num_attention >= 0 && cal->num_attention <= CAL_MAX_ATTENTION, "attention count in bounds");
        fuzz_check(memchr(cal->device, 0, sizeof cal->device) != NULL, "device string terminated");
        fuzz_check(isfinite(cal->hbm_bw) && cal->hbm_bw >= 0, "hbm bandwidth finite, >= 0");
        for (int i = 0; i < cal->num_gemms; i++)
            fuzz_check(cal->gemms[i].m >= 1 && cal->gemms[i].groups >= 1 && isfinite(cal->gemms[i].tflops) &&
                       cal->gemms[i].tflops > 0, "gemm entry in bounds");
        for (int i = 0; i < cal->num_collectives; i++)
            fuzz_check(cal->collectives[i].group_size >= 2 && cal->collectives[i].nodes >= 1 &&
                       isfinite(cal->collectives[i].busbw) && cal->collectives[i].busbw > 0, "collective entry in bounds");
    } else {
        fuzz_note("refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused calibration has a message");
    }
    free(cal);
    return 0;
}
