/* test_cli_plots.c: the pictures (issue 19 item 3).
 * - sweep --plot: the script's datablock carries the full plan label with
 *   the VPP number (PP8v2), x ticks exactly at the swept values on a log-2
 *   axis, both panels' margins the same, the title filtered; the picture
 *   is produced by the binary (PNG and SVG);
 * - simulate --timeline: the Chrome trace has the ops of every pipeline
 *   stage, --timeline-png (or --timeline FILE.png) draws a PNG;
 * - option conflicts are one line of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "planner/sweep.h"
#include "test_util.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    return tmpdir_make(dir, sizeof dir, "plots");
}

static int teardown(void **state) {
    (void)state;
    return tmpdir_remove(dir);
}

static bool is_png(const char *path) {
    size_t n = 0;
    char *b = slurp(path, &n);
    bool ok = b && n > 1000 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
    free(b);
    return ok;
}

/* A point with the plan TP2 CP1 PP8 VPP2 DP8 / ETP1 EP16 EDP1 mbs1. */
static SweepPoint point(double value, double mfu, double step) {
    SweepPoint p;
    memset(&p, 0, sizeof p);
    p.value = value;
    p.ok = true;
    p.best.cand.map.tp = 2; p.best.cand.map.cp = 1; p.best.cand.map.pp = 8; p.best.cand.map.vpp = 2;
    p.best.cand.map.dp = 8; p.best.cand.map.etp = 1; p.best.cand.map.ep = 16; p.best.cand.map.edp = 1;
    p.best.cand.mbs = 1;
    p.best.cand.recompute = RECOMPUTE_NONE;
    p.best.mfu = mfu;
    p.best.step_time_s = step;
    p.has_coupled = true;
    p.coupled = p.best;
    p.coupled.mfu = mfu - 0.01;
    return p;
}

/* The script sweep_plot writes, as text. */
static char *script_of(const char *title, const SweepPoint *pts, int n, bool fixed) {
    FILE *f = tmpfile();
    assert_non_null(f);
    int rows = sweep_plot_script(f, "pngcairo size 1200,900", title, SWEEP_GPUS, pts, n, fixed);
    assert_int_equal(rows, n);
    return stream_text(f);
}

static void test_plan_label_keeps_vpp(void **state) {
    (void)state;
    SweepPoint p = point(128, 0.5, 1.0);
    char label[128];
    sweep_plot_label(&p.best.cand, label, sizeof label);
    assert_string_equal(label, "TP2 CP1 PP8v2 DP8 / ETP1 EP16 EDP1 mbs1, recompute none");
    p.best.cand.map.vpp = 1;
    sweep_plot_label(&p.best.cand, label, sizeof label);
    assert_string_equal(label, "TP2 CP1 PP8 DP8 / ETP1 EP16 EDP1 mbs1, recompute none");
}

/* The datablock: one row per swept value with the full label; ticks at
 * 64, 128, 256, 512 only (log 2: 512/64 = 8); same l/r margins for both
 * panels; a title with quotes, backquote, @ and $ reaches gnuplot as '?'. */
static void test_sweep_script(void **state) {
    (void)state;
    SweepPoint pts[4] = {point(64, 0.55, 4.0), point(128, 0.56, 2.0), point(256, 0.52, 1.1), point(512, 0.48, 0.6)};
    char *s = script_of("m';system('touch X')`y`@z$w on c (gbs 256, seq 4096)", pts, 4, false);
    char *db = strstr(s, "$points << EOD\n");
    assert_non_null(db);
    char *end = strstr(db, "\nEOD\n");
    assert_non_null(end);
    *end = 0;
    int rows = 0;
    for (char *l = strchr(db, '\n'); l; l = strchr(l + 1, '\n')) rows++;
    assert_int_equal(rows, 4);
    /* 64 55.00000 4.000000 54.00000 1 "TP2 CP1 PP8v2 ..." */
    assert_non_null(strstr(db, "\n64 55.00000 4.000000 54.00000 1 \"TP2 CP1 PP8v2 DP8 / ETP1 EP16 EDP1 mbs1, recompute none\""));
    assert_non_null(strstr(db, "\n512 48.00000 0.600000 47.00000 4 \"TP2 CP1 PP8v2"));
    *end = '\n';
    assert_non_null(strstr(end, "\nset logscale x 2\n"));
    assert_non_null(strstr(end, "\nset xtics (64, 128, 256, 512)\n"));
    assert_non_null(strstr(end, "\nunset mxtics\n"));
    /* both panels: the same left and right margins, set once before both */
    assert_non_null(strstr(end, "\nset lmargin at screen 0.0800\nset rmargin at screen 0.7200\n"));
    /* keys right of the data (x beyond the right margin) */
    assert_non_null(strstr(end, "set key at screen 0.7400,"));
    /* the title: only the two delimiting quotes on its line */
    char *t = strstr(end, "set multiplot title '");
    assert_non_null(t);
    assert_non_null(strstr(t, "m??system(?touch X?)?y??z?w on c (gbs 256, seq 4096)' noenhanced"));
    free(s);
}

/* Linear axis when the values span less than 8x: ticks still at the values. */
static void test_sweep_script_linear_ticks(void **state) {
    (void)state;
    SweepPoint pts[3] = {point(100, 0.41, 1.6), point(200, 0.43, 1.5), point(400, 0.45, 1.47)};
    char *s = script_of("t", pts, 3, true);
    assert_non_null(strstr(s, "\nunset logscale x\n"));
    assert_non_null(strstr(s, "\nset xtics (100, 200, 400)\n"));
    assert_null(strstr(s, "best coupled"));
    free(s);
}

/* A long parameter name (gpus-per-node, 13 characters) moves the table's
 * plan column right: 0.04 + 13 x 0.0085 + 0.02 = 0.1705 (default 0.14). */
static void test_sweep_script_long_name(void **state) {
    (void)state;
    SweepPoint pts[2] = {point(8, 0.5, 1.0), point(72, 0.55, 0.9)};
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(sweep_plot_script(f, "pngcairo size 1200,900", "t", SWEEP_GPUS_PER_NODE, pts, 2, false), 2);
    char *s = stream_text(f);
    assert_non_null(strstr(s, "set label 3 'best plan (mapping)' at first 0.1705, first -1"));
    assert_non_null(strstr(s, "$points using (0.1705):($5-1):6 with labels"));
    free(s);
    char *t = script_of("t", pts, 2, false); /* gpus: the default */
    assert_non_null(strstr(t, "set label 3 'best plan (mapping)' at first 0.1400, first -1"));
    free(t);
}

/* The binary draws a PNG and an SVG of a real sweep. */
static void test_sweep_plot_files(void **state) {
    (void)state;
    if (!have_gnuplot()) { skip(); return; }
    static char args[512], out[1 << 16];
    char png[128], svg[128];
    snprintf(png, sizeof png, "%s/s.png", dir);
    snprintf(svg, sizeof svg, "%s/s.svg", dir);
    snprintf(args, sizeof args, "sweep --model mixtral-8x7b --cluster dgx-h100 --gpus 64 --tp 2 --pp 4 --vpp 2 --ep 8 "
             "--gbs 64 --fixed --vary ib-bw=100,400 --quiet --plot %s", png);
    int rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_true(is_png(png));
    snprintf(args, sizeof args, "sweep --model mixtral-8x7b --cluster dgx-h100 --gbs 64 --vary gpus=16,32 --quiet --plot %s",
             svg);
    rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    char *s = slurp(svg, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "<svg"));
    /* the title names model, cluster, batch and plan kind */
    assert_non_null(strstr(s, "mixtral-8x7b on dgx-h100 (gbs 64, seq 4096): gpus sweep, best plan of a full search"));
    free(s);
}

/* The Chrome trace has forward and backward ops on every one of the 4
 * stages (pid 0..3), kernels on one stage; the PNG is drawn beside it. */
static void test_timeline_every_stage(void **state) {
    (void)state;
    if (!have_gnuplot()) { skip(); return; }
    static char args[512], out[1 << 16];
    char json[128], png[128];
    snprintf(json, sizeof json, "%s/t.json", dir);
    snprintf(png, sizeof png, "%s/t.png", dir);
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --cluster dgx-h100 --gpus 64 --tp 2 --pp 4 --vpp 2 "
             "--ep 8 --gbs 64 --timeline %s --timeline-png %s", json, png);
    int rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_true(is_png(png));
    char *text = slurp(json, NULL);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    assert_non_null(doc);
    int fwd[8] = {0}, bwd[8] = {0}, kernel_stages = 0, kern[8] = {0};
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(doc, "traceEvents")) {
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph"));
        if (!ph || strcmp(ph, "X")) continue;
        int pid = cJSON_GetObjectItem(ev, "pid")->valueint, tid = cJSON_GetObjectItem(ev, "tid")->valueint;
        assert_in_range(pid, 0, 3);
        const char *cat = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "cat"));
        if (tid == 0 && !strcmp(cat, "forward")) fwd[pid]++;
        if (tid == 0 && !strcmp(cat, "backward")) bwd[pid]++;
        if (tid == 1) kern[pid]++;
    }
    cJSON_Delete(doc);
    /* 8 micro-batches x 2 chunks: 16 forwards and 16 backwards per stage */
    for (int st = 0; st < 4; st++) {
        assert_int_equal(fwd[st], 16);
        assert_int_equal(bwd[st], 16);
        kernel_stages += kern[st] > 0;
    }
    assert_int_equal(kernel_stages, 1);
    /* --timeline FILE.png alone draws the picture */
    snprintf(png, sizeof png, "%s/u.png", dir);
    snprintf(args, sizeof args, "simulate --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --pp 2 --ep 8 --gbs 16 "
             "--timeline %s", png);
    rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc != 0) fail_msg("exit %d: %s", rc, out);
    assert_true(is_png(png));
}

static void test_timeline_options(void **state) {
    (void)state;
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --timeline-png t.txt", "--timeline-png: 't.txt' must end in .png or .svg");
    expect_bad_input("simulate --model mixtral-8x7b --gpus 8 --timeline a.png --timeline-png b.png",
                     "--timeline a.png and --timeline-png b.png");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_label_keeps_vpp),
        cmocka_unit_test(test_sweep_script),
        cmocka_unit_test(test_sweep_script_linear_ticks),
        cmocka_unit_test(test_sweep_script_long_name),
        cmocka_unit_test_setup_teardown(test_sweep_plot_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline_every_stage, setup, teardown),
        cmocka_unit_test(test_timeline_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
