/* cmd_sweep.c: `moeplan sweep` (being built: see the open issue). */
#include <stdio.h>

#include "commands.h"

int cmd_sweep(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "moeplan sweep: not built yet\n");
    return 1;
}
