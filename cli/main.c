/* main.c: the moeplan binary: dispatch to a subcommand. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/error.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
    {"search", cmd_search, "rank every valid folded mapping for a model, cluster and batch"},
    {"simulate", cmd_simulate, "predict step time, MFU, memory and a breakdown for one plan"},
    {"compare", cmd_compare, "simulate plans side by side, cost term by term, what decides the ranking"},
    {"sweep", cmd_sweep, "what-if study: vary one parameter, search or simulate at each value"},
    {"execute", cmd_execute, "run a plan on real GPUs and compare measured with predicted MFU"},
    {"groups", cmd_groups, "print the rank groups of a folded mapping and their placement"},
    {"model", cmd_model, "print a model's parameters and FLOPs per token"},
    {"topo", cmd_topo, "detect this machine (hwloc) and write a cluster file for it"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moeplan COMMAND [options]   (moeplan COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
}

/* Every write to stdout and stderr is checked here, once, at the end: stdio
 * keeps the error sticky (ferror), so a full disk or a closed pipe anywhere
 * during the command turns a success into exit status 1 with one line on
 * stderr (if stderr itself still works). */
static int finish(int rc) {
    int out_bad = fflush(stdout) != 0 || ferror(stdout);
    int out_errno = errno;
    if (out_bad) {
        fprintf(stderr, "moeplan: cannot write the output: %s\n", strerror(out_errno ? out_errno : EIO));
        if (rc == 0) rc = 1;
    }
    if ((fflush(stderr) != 0 || ferror(stderr)) && rc == 0) rc = 1;
    return rc;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    MpError err;
    mp_fail(&err, "unknown command '%s' (known: search, simulate, compare, sweep, execute, groups, model, topo)", argv[1]);
    fprintf(stderr, "moeplan: %s\n", err.msg);
    return 2;
}

int main(int argc, char **argv) {
    return finish(dispatch(argc, argv));
}
