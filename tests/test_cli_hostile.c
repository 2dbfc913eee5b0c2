/* test_cli_hostile.c: hostile input as a user (or an attacker) would give
 * it, through the built binary (issue 10, items 1-4): file names and model
 * names that try to become gnuplot commands, output paths that are device
 * nodes, FIFOs, directories, planted symbolic links or longer than any
 * fixed buffer; FIFOs as inputs; duplicate keys; control bytes; sizes
 * beyond the limits; implausible hardware figures; MFU above 100 %; a full
 * stdout.  Each case failed before its fix (the commit says which). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

/* ---- helpers ---- */

/* A fresh private directory per test (removed by teardown). */
static char dir[64];

static int setup(void **state) {
    (void)state;
    return tmpdir_make(dir, sizeof dir, "hostile");
}

static int teardown(void **state) {
    (void)state;
    return tmpdir_remove(dir);
}

/* Runs a shell command line (the binary is $B), output of the chosen
 * streams into out; returns the exit status, or -1 for a signal. */
static int sh(const char *cmdline, int streams, char *out, size_t len) {
    size_t n = strlen(cmdline) + 512;
    char *cmd = malloc(n);
    assert_non_null(cmd);
    const char *redirect = streams == RUN_STDOUT ? "2>/dev/null" : streams == RUN_STDERR ? "2>&1 >/dev/null" : "2>&1";
    char *bin = realpath(moeplan_bin(), NULL);   /* absolute: some commands cd first */
    assert_non_null(bin);
    snprintf(cmd, n, "B='%s'; export ASAN_OPTIONS=detect_leaks=0; { %s ; } %s", bin, cmdline, redirect);
    free(bin);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t got = fread(out, 1, len - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of dir other than . and .. (leftover temporaries show here). */
static int dir_entries(const char *d) {
    DIR *h = opendir(d);
    assert_non_null(h);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(h)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(h);
    return n;
}

/* A catalog model's JSON text with "name" replaced. */
static char *model_json_named(const char *catalog, const char *name) {
    static char buf[8192];
    char path[128];
    snprintf(path, sizeof path, "models/%s.json", catalog);
    cJSON *j = cJSON_Parse(read_file(path));
    assert_non_null(j);
    cJSON_ReplaceItemInObject(j, "name", cJSON_CreateString(name));
    char *s = cJSON_Print(j);
    snprintf(buf, sizeof buf, "%s", s);
    free(s);
    cJSON_Delete(j);
    return buf;
}

/* dgx-h100 with one field replaced by a raw JSON number text. */
static void write_cluster_with(const char *path, const char *field, const char *number) {
    cJSON *j = cJSON_Parse(read_file("topologies/dgx-h100.json"));
    assert_non_null(j);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    /* replace "field": value textually to keep subnormals and huge values exact */
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    char *at = strstr(s, key);
    assert_non_null(at);
    char *v = at + strlen(key);
    while (*v == ' ' || *v == '\t') v++;
    char *end = v;
    while (*end && *end != ',' && *end != '\n' && *end != '}') end++;
    static char out[8192];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(v - s), s, number, end);
    free(s);
    write_file(path, out);
}

static const char *SWEEP = "sweep --model mixtral-8x7b --cluster dgx-h100 --gbs 256 --vary gpus=64,128";

/* ---- item 2: gnuplot ---- */

/* A --plot path and a model name that each try to run a shell command
 * through gnuplot (single and double quotes, backquotes, macro; a newline
 * in a name is refused at load, test_json_quotes_names):
 * the plot is written under exactly that name and nothing runs. */
static void test_plot_names_are_not_commands(void **state) {
    (void)state;
    if (!have_gnuplot()) { skip(); return; }
    static char cmd[4096], out[1 << 16], model[256];
    /* relative names: gnuplot runs in moeplan's working directory, dir */
    const char *name = "m';system('touch P1');'\"`touch P2`\"@x";
    snprintf(model, sizeof model, "%s/model.json", dir);
    write_file(model, model_json_named("mixtral-8x7b", name));
    snprintf(cmd, sizeof cmd, "cd '%s' && \"$B\" sweep --model model.json --cluster dgx-h100 --gbs 256 "
             "--vary gpus=64,128 --plot \"a'b\\\"\\$(touch P3)\\`touch P4\\`.svg\"", dir);
    int rc = sh(cmd, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    char p[256];
    for (int i = 1; i <= 4; i++) {
        snprintf(p, sizeof p, "%s/P%d", dir, i);
        if (exists(p)) fail_msg("%s was created: a name became a command", p);
    }
    snprintf(p, sizeof p, "%s/a'b\"$(touch P3)`touch P4`.svg", dir);
    char *svg = read_file(p);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg"));
    /* only the model, the plot: no .dat or temporary left */
    assert_int_equal(dir_entries(dir), 2);
}

/* The same for simulate's timeline picture: a model name and a
 * --timeline-png name that try to run commands through gnuplot. */
static void test_timeline_png_names_are_not_commands(void **state) {
    (void)state;
    if (!have_gnuplot()) { skip(); return; }
    static char cmd[4096], out[1 << 16], model[256];
    const char *name = "m';system('touch P1');'\"`touch P2`\"@x";
    snprintf(model, sizeof model, "%s/model.json", dir);
    write_file(model, model_json_named("mixtral-8x7b", name));
    snprintf(cmd, sizeof cmd, "cd '%s' && \"$B\" simulate --model model.json --cluster dgx-h100 --gpus 16 --pp 2 "
             "--ep 8 --gbs 16 --timeline-png \"a'b\\\"\\$(touch P3)\\`touch P4\\`.png\"", dir);
    int rc = sh(cmd, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    char p[256];
    for (int i = 1; i <= 4; i++) {
        snprintf(p, sizeof p, "%s/P%d", dir, i);
        if (exists(p)) fail_msg("%s was created: a name became a command", p);
    }
    snprintf(p, sizeof p, "%s/a'b\"$(touch P3)`touch P4`.png", dir);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    unsigned char magic[4] = {0};
    assert_int_equal(fread(magic, 1, 4, f), 4);
    fclose(f);
    assert_memory_equal(magic, "\x89PNG", 4);
    assert_int_equal(dir_entries(dir), 2);
}

/* gnuplot missing from PATH: one line, exit 1, before the run, no file left. */
static void test_plot_without_gnuplot(void **state) {
    (void)state;
    static char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "PATH=/nonexistent \"$B\" %s --plot '%s/p.svg'", SWEEP, dir);
    int rc = sh(cmd, RUN_STDERR, out, sizeof out);
    if (rc != 1 || count_lines(out) != 1 || !strstr(out, "gnuplot is not on PATH"))
        fail_msg("exit %d, stderr '%s'", rc, out);
    assert_int_equal(dir_entries(dir), 0);
}

/* ---- item 1: output files ---- */

/* Device nodes, FIFOs and directories are refused before any work; the
 * device node is still a device node afterwards.  The device node is a
 * private one (a copy of /dev/null's numbers in the test's directory, when
 * mknod is allowed): a regressed binary run as root must not replace the
 * machine's /dev/null, as the one before this fix did. */
static void test_outputs_refuse_special_files(void **state) {
    (void)state;
    static char args[1024], fifo[128], dev[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(dev, sizeof dev, "%s/null", dir);
    bool have_dev = mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0;
    struct stat st;
    if (have_dev) {
        snprintf(args, sizeof args, "%s --csv %s", SWEEP, dev);
        expect_bad_input(args, "/null: cannot write: is a character device; refusing to replace it");
        snprintf(args, sizeof args, "simulate --model mixtral-8x7b --gpus 8 --timeline %s", dev);
        expect_bad_input(args, "/null: cannot write: is a character device");
        snprintf(args, sizeof args, "topo --out %s", dev);
        expect_bad_input(args, "/null: cannot write: is a character device");
        assert_int_equal(lstat(dev, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
    }
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --gpus 8 --timeline %s", fifo);
    expect_bad_input(args, "fifo: cannot write: is a FIFO");
    snprintf(args, sizeof args, "%s --csv %s", SWEEP, fifo);
    expect_bad_input(args, "fifo: cannot write: is a FIFO");
    snprintf(args, sizeof args, "topo --out %s", fifo);
    expect_bad_input(args, "fifo: cannot write: is a FIFO");
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --gpus 8 --timeline %s", dir);
    expect_bad_input(args, ": cannot write: is a directory");
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
}

/* A symbolic link planted where the old fixed temporary name (PATH.tmp)
 * was, and a symbolic link as the target itself: the victim is untouched. */
static void test_outputs_do_not_follow_planted_links(void **state) {
    (void)state;
    static char victim[128], link1[128], target[128], link2[128], args[1024], out[8192];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    write_file(victim, "keep");
    snprintf(target, sizeof target, "%s/t.json", dir);
    snprintf(link1, sizeof link1, "%s/t.json.tmp", dir);
    assert_int_equal(symlink(victim, link1), 0);
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --gpus 8 --timeline %s", target);
    assert_int_equal(moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out), 0);
    assert_string_equal(read_file(victim), "keep");
    struct stat st;
    assert_int_equal(lstat(target, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_memory_equal(read_file(target), "{\"displayTimeUnit\"", 18);   /* the trace (MBs: only its start) */
    /* the target itself a link to the victim: refused */
    snprintf(link2, sizeof link2, "%s/l.csv", dir);
    assert_int_equal(symlink(victim, link2), 0);
    snprintf(args, sizeof args, "%s --csv %s", SWEEP, link2);
    expect_bad_input(args, "l.csv: cannot write: is a symbolic link");
    assert_string_equal(read_file(victim), "keep");
}

/* An output path longer than the old 512-byte buffers: written under its
 * exact name; nothing else appears in its directory. */
static void test_long_output_path(void **state) {
    (void)state;
    static char deep[2048], path[2100], args[4096], out[8192], seg[201];
    memset(seg, 'd', 200);
    seg[200] = 0;
    snprintf(deep, sizeof deep, "%s", dir);
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(deep);
        snprintf(deep + n, sizeof deep - n, "/%s", seg);
        assert_int_equal(mkdir(deep, 0700), 0);
    }
    snprintf(path, sizeof path, "%s/%.100s.csv", deep, seg);
    assert_true(strlen(path) > 600);
    /* a neighbour whose name is the output's temporary cut to the old
     * 528-byte buffer: it was overwritten and renamed away */
    static char neighbour[600];
    snprintf(neighbour, sizeof neighbour, "%.527s", path);
    write_file(neighbour, "neighbour");
    snprintf(args, sizeof args, "%s --csv %s", SWEEP, path);
    int rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    char *csv = read_file(path);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "gpus,ok,mfu"));
    assert_int_equal(dir_entries(deep), 1);
    char *kept = read_file(neighbour);
    assert_non_null(kept);
    assert_string_equal(kept, "neighbour");
}

/* A full stdout is a failure (exit 1, one line), not a success. */
static void test_full_stdout(void **state) {
    (void)state;
    static char out[8192];
    int rc = sh("\"$B\" model mixtral-8x7b > /dev/full", RUN_STDERR, out, sizeof out);
    if (rc != 1 || !strstr(out, "cannot write the output") || count_lines(out) != 1)
        fail_msg("exit %d, stderr '%s'", rc, out);
    rc = sh("\"$B\" search --model mixtral-8x7b --gpus 64 --gbs 256 --quiet > /dev/full", RUN_STDERR, out, sizeof out);
    if (rc != 1) fail_msg("search: exit %d, stderr '%s'", rc, out);
}

/* simulate --json stays valid JSON when the model's name has quotes and
 * backslashes; a name with a control character is refused at load. */
static void test_json_quotes_names(void **state) {
    (void)state;
    static char model[128], args[512], out[1 << 16];
    snprintf(model, sizeof model, "%s/model.json", dir);
    write_file(model, model_json_named("mixtral-8x7b", "esc\x1b[2Jname"));
    snprintf(args, sizeof args, "model %s", model);
    expect_bad_input(args, "model.json: name: contains the control character \\x1b");
    const char *name = "q\"uo\\te";
    snprintf(model, sizeof model, "%s/model.json", dir);
    write_file(model, model_json_named("mixtral-8x7b", name));
    snprintf(args, sizeof args, "simulate --model %s --gpus 8 --json", model);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    if (!j) fail_msg("not JSON: %s", out);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "context"), "model")->valuestring, name);
    cJSON_Delete(j);
}

/* ---- item 4: inputs ---- */

/* A FIFO given as any input file fails at once instead of blocking. */
static void test_fifo_inputs_do_not_block(void **state) {
    (void)state;
    static char fifo[128], cmd[1024], out[8192];
    snprintf(fifo, sizeof fifo, "%s/in.json", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *forms[] = {
        "model %s", "simulate --model %s --gpus 8", "simulate --model mixtral-8x7b --cluster %s --gpus 8",
        "simulate --plan %s", "simulate --model mixtral-8x7b --gpus 8 --calibration %s",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, forms[i], fifo);
        snprintf(cmd, sizeof cmd, "timeout 20 \"$B\" %s", args);
        int rc = sh(cmd, RUN_STDERR, out, sizeof out);
        if (rc != 2 || !strstr(out, "in.json: cannot read: is a FIFO, not a regular file"))
            fail_msg("moeplan %s: exit %d (124 = blocked), stderr '%s'", args, rc, out);
    }
}

static void test_duplicate_keys(void **state) {
    (void)state;
    static char model[128], args[512];
    snprintf(model, sizeof model, "%s/dup.json", dir);
    char *text = model_json_named("mixtral-8x7b", "dup");
    char *brace = strrchr(text, '}');
    snprintf(brace, 64, ", \"num_layers\": 4}\n");
    write_file(model, text);
    snprintf(args, sizeof args, "model %s", model);
    expect_bad_input(args, "dup.json: num_layers: duplicate key");
}

/* Control bytes and terminal escapes from a file end up escaped in one
 * printable line. */
static void test_error_text_is_one_printable_line(void **state) {
    (void)state;
    static char model[128], args[512], out[8192];
    snprintf(model, sizeof model, "%s/ctl.json", dir);
    write_file(model, "{\"\\u001b[31mred\\nsecond\\r\": 1}");
    snprintf(args, sizeof args, "model %s", model);
    expect_bad_input(args, "\\x1b[31mred\\x0asecond\\x0d: unknown field");
    moeplan_run(args, RUN_STDERR, out, sizeof out);
    for (const unsigned char *c = (const unsigned char *)out; *c; c++)
        if ((*c < 0x20 && *c != '\n') || *c == 0x7f) fail_msg("raw control byte 0x%02x in '%s'", *c, out);
}

/* A path far longer than the old 511-byte messages: the reason survives. */
static void test_long_path_keeps_the_reason(void **state) {
    (void)state;
    static char cmd[8192], out[8192], path[6000];
    int n = snprintf(path, sizeof path, "%s/", dir);
    while (n < 5000) n += snprintf(path + n, sizeof path - (size_t)n, "missing-directory/");
    snprintf(path + n, sizeof path - (size_t)n, "model.json");
    snprintf(cmd, sizeof cmd, "\"$B\" model '%s'", path);
    int rc = sh(cmd, RUN_STDERR, out, sizeof out);
    if (rc != 2 || count_lines(out) != 1 || !strstr(out, "model.json: cannot open: File name too long") ||
        strlen(out) > MP_ERROR_LEN + 64)
        fail_msg("exit %d, stderr (%zu bytes) '%s'", rc, strlen(out), out);
    assert_non_null(strstr(out, " bytes...]"));   /* the middle was cut, not the end */
}

/* A --cluster path longer than a plan records is refused, not cut to a
 * different file's name (a decoy sits at the cut). */
static void test_long_cluster_path_is_not_cut(void **state) {
    (void)state;
    static char d1[512], real[1024], decoy[1024], args[2048], seg[241];
    memset(seg, 'c', 240);
    seg[240] = 0;
    snprintf(d1, sizeof d1, "%s/%s", dir, seg);
    assert_int_equal(mkdir(d1, 0700), 0);
    snprintf(real, sizeof real, "%s/%s.json", d1, seg);
    assert_true(strlen(real) > 511);
    write_cluster_with(real, "peak_bf16_tflops", "989.5");
    snprintf(decoy, sizeof decoy, "%.511s", real);
    write_cluster_with(decoy, "peak_bf16_tflops", "1000");
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --gpus 8 --cluster %s", real);
    expect_bad_input(args, "--cluster: the path is");
}

/* ---- item 3: limits and plausibility ---- */

static void test_limits(void **state) {
    (void)state;
    static char model[128], args[512];
    /* 2,097,152 GPUs overflowed the stack (a group-sized VLA) */
    expect_bad_input("simulate --model mixtral-8x7b --gpus 2097152 --gbs 2097152",
                     "gpus: 2097152 is above the limit of 1048576 GPUs");
    expect_bad_input("search --model mixtral-8x7b --gpus 2097152", "--gpus: 2097152 is above the limit of 1048576 GPUs");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --pp 1000000000 --vpp 1000000000", "is above the limit");
    /* (--backend cpu --nproc 100000 is refused earlier, per core: test_cli_execute) */
    expect_bad_input("execute --backend cuda --gpus 100000 --check --model tests/data/exec-tiny-moe.json",
                     "--gpus: 100000 ranks on this machine is above the limit of 1024");
    /* a model with millions of layers never finished a search */
    snprintf(model, sizeof model, "%s/deep.json", dir);
    char *text = model_json_named("mixtral-8x7b", "deep");
    char *at = strstr(text, "\"num_layers\":");
    assert_non_null(at);
    at += strlen("\"num_layers\":");
    while (*at == ' ' || *at == '\t') at++;
    char rest[8192];
    snprintf(rest, sizeof rest, "%s", strchr(at, ','));
    sprintf(at, "3000000%s", rest);
    write_file(model, text);
    snprintf(args, sizeof args, "search --model %s --gpus 1024", model);
    expect_bad_input(args, "num_layers: 3000000 is above the limit of 1024 layers");
}

static void test_implausible_figures(void **state) {
    (void)state;
    static const struct { const char *field, *value, *want; } cases[] = {
        {"peak_bf16_tflops", "1e-300", "peak_bf16_tflops: 1e-300 is outside the plausible range"},
        {"nic_gbit_per_s", "4e-320", "nic_gbit_per_s: 3.9999"},
        {"hbm_mib", "1e300", "hbm_mib: 1e+300 is outside the plausible range"},
        {"net_latency_us", "5e-324", "net_latency_us: must be positive, got 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[128], args[512];
        snprintf(path, sizeof path, "%s/c%zu.json", dir, i);
        write_cluster_with(path, cases[i].field, cases[i].value);
        snprintf(args, sizeof args, "search --model mixtral-8x7b --gpus 64 --gbs 256 --cluster %s", path);
        expect_bad_input(args, cases[i].want);
    }
    char cal[128], args[512];
    snprintf(cal, sizeof cal, "%s/cal.json", dir);
    write_file(cal, "{\"device\": \"x\", \"gemms\": [{\"m\": 4096, \"n\": 4096, \"k\": 4096, \"tflops\": 1e-320}]}");
    snprintf(args, sizeof args, "search --model mixtral-8x7b --gpus 64 --gbs 256 --calibration %s", cal);
    expect_bad_input(args, "gemms[0]: tflops: 9.99989e-321 is outside the plausible range");
}

/* seq 4096256 with legacy FLOPs reported 102.6 % MFU: legacy counts the
 * full s x s attention while causal attention executes half of it.  The
 * convention is refused with that reason; megatron gives the figure. */
static void test_mfu_never_above_100(void **state) {
    (void)state;
    static char out[1 << 16];
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --seq 4096256 --flops legacy",
                     "flops: the legacy convention counts the full s x s attention matrix");
    assert_int_equal(moeplan_run("simulate --model mixtral-8x7b --gpus 8 --seq 4096256 --json", RUN_STDOUT, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    const cJSON *mj = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "prediction"), "mfu");
    assert_non_null(mj);
    double mfu = cJSON_GetObjectItem(mj, "megatron")->valuedouble;
    assert_true(mfu > 0.3 && mfu <= 1.0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(mj, "legacy")));
    cJSON_Delete(j);
    /* a search does not drop the plans above 100% and rank the rest */
    expect_bad_input("search --model mixtral-8x7b --gpus 64 --seq 1048576 --gbs 64 --flops legacy --quiet",
                     "flops: the legacy convention counts the full s x s attention matrix");
}

/* ---- item 3: search at 131,072 GPUs (43 s before the placement fix; the
 * time limit only guards against a hang) with progress on a non-terminal
 * stderr, and --quiet silencing it. */
static void test_large_search_progress(void **state) {
    (void)state;
    static char out[1 << 16];
    int rc = sh("timeout 300 \"$B\" search --model mixtral-8x22b --cluster dgx-h100 --gpus 131072 --gbs 16384 --top 1",
                RUN_STDERR, out, sizeof out);
    if (rc != 0 || !strstr(out, "search: mixtral-8x22b on 131072 GPUs") || !strstr(out, "search: done in"))
        fail_msg("exit %d, stderr '%s'", rc, out);
    rc = sh("timeout 300 \"$B\" search --model mixtral-8x22b --cluster dgx-h100 --gpus 131072 --gbs 16384 --top 1 --quiet",
            RUN_STDERR, out, sizeof out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plot_names_are_not_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plot_without_gnuplot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline_png_names_are_not_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outputs_refuse_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outputs_do_not_follow_planted_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_output_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_quotes_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_inputs_do_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_text_is_one_printable_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_path_keeps_the_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_cluster_path_is_not_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_implausible_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mfu_never_above_100, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_search_progress, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
