/* cmd_model.c: `moeplan model` (being built: see the open issue). */
#include <stdio.h>

#include "commands.h"

int cmd_model(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "moeplan model: not built yet\n");
    return 1;
}
