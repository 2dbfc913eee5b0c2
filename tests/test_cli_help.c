/* test_cli_help.c: `moeplan CMD --help` names every option CMD's parser
 * accepts, each at the start of its own line.  The options accepted are
 * what the parser asks for (cli/args.c records them; MOEPLAN_LIST_OPTIONS
 * makes args_finish print them), for each mode of each command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>

#include "test_util.h"

static int run_capture(const char *cmd, char *out, size_t len) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Does some line of help start (after blanks) with opt, followed by a non-name character? */
static bool help_has_line(const char *help, const char *opt) {
    size_t n = strlen(opt);
    const char *line = help;
    while (line && *line) {
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!strncmp(s, opt, n) && !(isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_')) return true;
        line = strchr(line, '\n');
        if (line) line++;
    }
    return false;
}

/* args: a command line that parses up to args_finish (the options of that mode are listed). */
static void expect_help_lists_options(const char *command, const char *args) {
    static char opts[16384], help[1 << 16];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "MOEPLAN_LIST_OPTIONS=1 %s %s %s 2>/dev/null", moeplan_bin(), command, args);
    assert_int_equal(run_capture(cmd, opts, sizeof opts), 2);
    snprintf(cmd, sizeof cmd, "%s %s --help 2>&1", moeplan_bin(), command);
    assert_int_equal(run_capture(cmd, help, sizeof help), 0);
    int count = 0;
    for (char *l = strtok(opts, "\n"); l; l = strtok(NULL, "\n")) {
        if (strncmp(l, "option ", 7)) continue;
        const char *opt = l + 7;
        count++;
        if (!strcmp(opt, "-h")) continue; /* the short alias of --help */
        if (!help_has_line(help, opt)) fail_msg("moeplan %s --help has no line for %s", command, opt);
    }
    if (count < 3) fail_msg("moeplan %s %s: only %d options listed", command, args, count);
}

static void test_simulate_help(void **state) {
    (void)state;
    expect_help_lists_options("simulate", "--model mixtral-8x7b --gpus 8");
}

static void test_search_help(void **state) {
    (void)state;
    expect_help_lists_options("search", "--model mixtral-8x7b --gpus 8");
}

static void test_sweep_help(void **state) {
    (void)state;
    expect_help_lists_options("sweep", "--model mixtral-8x7b --vary gpus=8");
    expect_help_lists_options("sweep", "--model mixtral-8x7b --gpus 8 --vary gpus=8 --fixed");
}

static void test_execute_help(void **state) {
    (void)state;
    expect_help_lists_options("execute", "--model tests/data/exec-tiny-moe.json --backend cpu");
}

static void test_other_commands_help(void **state) {
    (void)state;
    expect_help_lists_options("groups", "--gpus 8");
    expect_help_lists_options("model", "mixtral-8x7b");
    expect_help_lists_options("topo", "");
    /* compare parses its two options itself */
    static char help[8192];
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s compare --help", moeplan_bin());
    assert_int_equal(run_capture(cmd, help, sizeof help), 0);
    assert_true(help_has_line(help, "--calibration"));
    assert_true(help_has_line(help, "--help"));
}

static void test_help_line_matching(void **state) {
    (void)state;
    /* the matcher itself: a prefix of a longer option or an option mid-line does not count */
    assert_true(help_has_line("usage\n  --tp T   tensor\n", "--tp"));
    assert_false(help_has_line("  --tp/--cp N\n", "--cp"));
    assert_false(help_has_line("  --max-tp N\n", "--max"));
    assert_false(help_has_line("usage: x [--seq S]\n", "--seq"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_line_matching),
        cmocka_unit_test(test_simulate_help),
        cmocka_unit_test(test_search_help),
        cmocka_unit_test(test_sweep_help),
        cmocka_unit_test(test_execute_help),
        cmocka_unit_test(test_other_commands_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
