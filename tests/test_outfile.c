/* test_outfile.c: core/outfile (the one way moeplan writes a file) and
 * core/error's one-printable-line rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/outfile.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/moeplan-outfile-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int entries(const char *d) {
    DIR *h = opendir(d);
    assert_non_null(h);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(h))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(h);
    return n;
}

static const char *slurp(const char *path) {
    static char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Writes, replaces an existing file, leaves nothing else, honours the umask. */
static void test_write_and_replace(void **state) {
    (void)state;
    char path[128];
    MpError err = {{0}};
    snprintf(path, sizeof path, "%s/out.txt", dir);
    mode_t old = umask(027);
    assert_int_equal(outfile_write_text(path, "first\n", &err), 0);
    umask(old);
    assert_string_equal(slurp(path), "first\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);   /* 0666 minus the umask 027 */
    assert_int_equal(outfile_write_text(path, "second\n", &err), 0);
    assert_string_equal(slurp(path), "second\n");
    assert_int_equal(entries(dir), 1);
}

/* An aborted write leaves neither the temporary nor a changed target. */
static void test_discard(void **state) {
    (void)state;
    char path[128];
    MpError err = {{0}};
    snprintf(path, sizeof path, "%s/keep.txt", dir);
    assert_int_equal(outfile_write_text(path, "kept", &err), 0);
    OutFile o;
    assert_int_equal(outfile_open(&o, path, &err), 0);
    assert_true(fputs("half", o.f) >= 0);
    assert_int_equal(entries(dir), 2);   /* the target and the temporary */
    outfile_discard(&o);
    assert_int_equal(entries(dir), 1);
    assert_string_equal(slurp(path), "kept");
}

/* Non-regular targets are refused by name of their kind, before anything is created. */
static void test_refuses_special_targets(void **state) {
    (void)state;
    char fifo[128], link[128], sub[128], trail[128];
    MpError err = {{0}};
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(outfile_write_text(fifo, "x", &err), -1);
    assert_non_null(strstr(err.msg, "fifo: cannot write: is a FIFO; refusing to replace it"));
    snprintf(link, sizeof link, "%s/link", dir);
    assert_int_equal(symlink("/etc/hostname", link), 0);
    assert_int_equal(outfile_write_text(link, "x", &err), -1);
    assert_non_null(strstr(err.msg, "link: cannot write: is a symbolic link"));
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(outfile_write_text(sub, "x", &err), -1);
    assert_non_null(strstr(err.msg, "sub: cannot write: is a directory"));
    snprintf(trail, sizeof trail, "%s/new/", dir);
    assert_int_equal(outfile_write_text(trail, "x", &err), -1);
    assert_non_null(strstr(err.msg, "names a directory"));
    assert_int_equal(entries(dir), 3);   /* fifo, link, sub: no temporary left */
}

/* A directory that cannot be written: the system's reason, nothing left. */
static void test_unwritable_directory(void **state) {
    (void)state;
    if (geteuid() == 0) { skip(); return; }   /* root writes anywhere */
    char ro[128], path[160];
    MpError err = {{0}};
    snprintf(ro, sizeof ro, "%s/ro", dir);
    assert_int_equal(mkdir(ro, 0500), 0);
    snprintf(path, sizeof path, "%s/out.txt", ro);
    assert_int_equal(outfile_write_text(path, "x", &err), -1);
    assert_non_null(strstr(err.msg, "out.txt: cannot write: Permission denied"));
}

/* core/error: control bytes escaped, UTF-8 kept, C1 controls and invalid
 * bytes escaped, and a long message loses its middle, not its reason. */
static void test_error_one_printable_line(void **state) {
    (void)state;
    MpError err;
    mp_fail(&err, "%s: field: reason", "a\x1b[2Jb\nc\td\x7f");
    assert_string_equal(err.msg, "a\\x1b[2Jb\\x0ac\\x09d\\x7f: field: reason");
    mp_fail(&err, "caf\xc3\xa9 \xc2\x9b \xff end");   /* é kept; U+009B (CSI) and 0xff escaped */
    assert_string_equal(err.msg, "caf\xc3\xa9 \\xc2\\x9b \\xff end");
    char *long_path = malloc(10001);
    assert_non_null(long_path);
    memset(long_path, 'p', 10000);
    long_path[10000] = 0;
    mp_fail(&err, "%s: num_layers: the reason at the end", long_path);
    size_t n = strlen(err.msg);
    assert_true(n < MP_ERROR_LEN);
    assert_memory_equal(err.msg, "pppp", 4);
    assert_string_equal(err.msg + n - strlen(": num_layers: the reason at the end"), ": num_layers: the reason at the end");
    assert_non_null(strstr(err.msg, " bytes...]"));
    free(long_path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_special_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_directory, setup, teardown),
        cmocka_unit_test(test_error_one_printable_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
