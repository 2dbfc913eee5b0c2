/* commands.h: one function per `moeplan` subcommand, each in cli/cmd_NAME.c.
 * argv[0] is the subcommand name.  Return value is the process exit status:
 * 0 success, 2 bad input (one line on stderr: "FILE: FIELD: reason"),
 * 1 a failure while running. */
#ifndef MOEPLAN_COMMANDS_H
#define MOEPLAN_COMMANDS_H

int cmd_groups(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_execute(int argc, char **argv);
int cmd_topo(int argc, char **argv);

#endif
