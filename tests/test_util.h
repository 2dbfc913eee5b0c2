/* test_util.h: helpers shared by the cmocka suites (include after cmocka.h).
 *   moeplan_run()        run the built binary as a user would
 *   expect_bad_input()   one line on stderr naming the problem, exit status 2
 *   test_model()         a catalog model, failing the test if it does not load
 *   assert_rel()         |got - want| <= rel * |want|
 *   tmpdir_make/remove() a private scratch directory per test
 *   slurp()              a whole file
 *   stream_text()        what a tmpfile received
 *   have_gnuplot()       whether gnuplot is on PATH (plot tests skip without it)
 */
#ifndef MOEPLAN_TEST_UTIL_H
#define MOEPLAN_TEST_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/catalog.h"

/* The binary under test: MOEPLAN_BIN (set by scripts/run-tests.sh) or build/moeplan. */
static inline const char *moeplan_bin(void) {
    const char *b = getenv("MOEPLAN_BIN");
    return b ? b : "build/moeplan";
}

enum {
    RUN_STDOUT_AND_STDERR = 0, RUN_STDOUT = 1, RUN_STDERR = 2, /* which streams to capture */
    RUN_NO_LEAK_CHECK = 4, /* or-ed in: for commands that start Open MPI, whose plugins leak */
};

/* Runs `moeplan ARGS` outside any launcher (the rank variables of mpirun,
 * srun and torchrun are cleared), captures the chosen streams into out and
 * returns the exit status (-1 if it did not exit normally). */
static inline int moeplan_run(const char *args, int streams, char *out, size_t len) {
    char cmd[2048];
    int which = streams & 3;
    const char *redirect = which == RUN_STDOUT ? "2>/dev/null" : which == RUN_STDERR ? "2>&1 >/dev/null" : "2>&1";
    snprintf(cmd, sizeof cmd,
             "env -u RANK -u WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_SIZE -u PMI_RANK -u SLURM_PROCID "
             "%s %s %s %s",
             (streams & RUN_NO_LEAK_CHECK) ? "ASAN_OPTIONS=detect_leaks=0" : "", moeplan_bin(), args, redirect);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Bad input: exit status 2 and exactly one line on stderr containing want. */
static inline void expect_bad_input(const char *args, const char *want) {
    static char out[8192];
    int rc = moeplan_run(args, RUN_STDERR, out, sizeof out);
    int lines = 0;
    for (const char *s = out; *s; s++) lines += *s == '\n';
    if (rc != 2 || !strstr(out, want) || lines != 1)
        fail_msg("moeplan %s: exit %d, stderr '%s'; expected exit 2 and one line containing '%s'", args, rc, out, want);
}

static inline ModelSpec test_model(const char *name) {
    ModelSpec m;
    MpError err = {{0}};
    int rc = model_lookup(name, &m, &err);
    if (rc) fail_msg("%s: %s", name, err.msg);
    return m;
}

static inline void assert_rel(double got, double want, double rel) {
    double d = got - want;
    if (d < 0) d = -d;
    if (d > rel * (want < 0 ? -want : want)) fail_msg("got %.10g want %.10g (relative tolerance %g)", got, want, rel);
}


/* /tmp/moeplan-TAG-XXXXXX, made afresh into dir[len]; 0 or -1. */
static inline int tmpdir_make(char *dir, size_t len, const char *tag) {
    snprintf(dir, len, "/tmp/moeplan-%s-XXXXXX", tag);
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes dir and everything in it (a path tmpdir_make made: no quotes). */
static inline int tmpdir_remove(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The whole file (malloc'ed, NUL-terminated), NULL when absent. */
static inline char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* Everything written to f (a tmpfile) as a malloc'ed string; closes f. */
static inline char *stream_text(FILE *f) {
    long len = ftell(f);
    rewind(f);
    char *s = malloc((size_t)len + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = 0;
    fclose(f);
    return s;
}

static inline bool have_gnuplot(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

#endif
