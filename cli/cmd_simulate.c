/* cmd_simulate.c: `moeplan simulate` (being built: see the open issue). */
#include <stdio.h>

#include "commands.h"

int cmd_simulate(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "moeplan simulate: not built yet\n");
    return 1;
}
