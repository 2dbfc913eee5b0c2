/* cmd_execute.c: `moeplan execute` (being built: see the open issue). */
#include <stdio.h>

#include "commands.h"

int cmd_execute(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "moeplan execute: not built yet\n");
    return 1;
}
