/* cmd_search.c: `moeplan search` (being built: see the open issue). */
#include <stdio.h>

#include "commands.h"

int cmd_search(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "moeplan search: not built yet\n");
    return 1;
}
