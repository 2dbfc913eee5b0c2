/* test_sweep2d.c: the 2-D sweep (`sweep --vary K1=... --vary2 K2=...`,
 * issue 19 item 3).
 * - the printed grid and the CSV agree, point by point, with separate
 *   `search` runs (search mode) and `simulate` runs (--fixed) of the same
 *   GPU count and sequence length; a point without a plan is '-' where
 *   search finds none;
 * - option errors: one line, exit 2;
 * - the heat map script: datablocks with the cells and the hatched ones,
 *   ticks at the swept values, first row at the top, colour range from the
 *   MFUs, title filtered; the binary draws a PNG and an SVG when gnuplot is
 *   installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "planner/sweep.h"
#include "test_util.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    return tmpdir_make(dir, sizeof dir, "sweep2d");
}

static int teardown(void **state) {
    (void)state;
    return tmpdir_remove(dir);
}

/* A small search space (so that each search takes milliseconds). */
#define X7B "--model mixtral-8x7b --cluster dgx-h100 --gbs 64 --mbs 1 --max-pp 2 --optimizer-sharding distributed " \
            "--threads 2"

/* The grid of the text output: cells[i][j] of row i (first key) and column j. */
typedef struct { char cells[4][4][16]; double rows[4], cols[4]; int n1, n2; } Grid;

static void parse_grid(const char *out, const char *corner, Grid *g) {
    const char *h = strstr(out, corner);
    if (!h) fail_msg("no grid header '%s' in:\n%s", corner, out);
    memset(g, 0, sizeof *g);
    const char *p = h + strlen(corner);
    char *end;
    while (*p != '\n') {
        g->cols[g->n2++] = strtod(p, &end);
        assert_true(end != p);
        p = end;
        while (*p == ' ') p++;
    }
    for (p++; g->n1 < 4; g->n1++) {
        const char *eol = strchr(p, '\n');
        char line[256];
        assert_non_null(eol);
        snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
        char *tok = strtok(line, " ");
        char *e;
        g->rows[g->n1] = strtod(tok, &e);
        if (*e) break; /* the next table */
        for (int j = 0; j < g->n2; j++) {
            tok = strtok(NULL, " ");
            assert_non_null(tok);
            snprintf(g->cells[g->n1][j], sizeof g->cells[0][0], "%s", tok);
        }
        assert_null(strtok(NULL, " "));
        p = eol + 1;
    }
}

/* CSV line of (v1, v2): the fields after the two keys, split at commas. */
static int csv_fields(const char *csv, double v1, double v2, char f[32][64]) {
    char head[64];
    snprintf(head, sizeof head, "\n%g,%g,", v1, v2);
    const char *l = strstr(csv, head);
    if (!l) fail_msg("no CSV line %s", head + 1);
    l += strlen(head);
    int n = 0;
    while (n < 32) {
        size_t k = strcspn(l, ",\n");
        snprintf(f[n++], 64, "%.*s", (int)k, l);
        if (l[k] != ',') break;
        l += k + 1;
    }
    return n;
}

static const cJSON *item(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItem(o, a);
    return b ? cJSON_GetObjectItem(v, b) : v;
}

/* Every cell of gpus = 8, 16, 32 x seq = 2048, 4096 against `search` of
 * that point: the MFU (grid to 0.1 %, CSV to 1e-5) and the mapping. */
static void test_grid_matches_search(void **state) {
    (void)state;
    static char out[1 << 16], sout[1 << 21], args[1024];
    char csvpath[128];
    snprintf(csvpath, sizeof csvpath, "%s/g.csv", dir);
    snprintf(args, sizeof args, "sweep " X7B " --vary gpus=8,16,32 --vary2 seq=2048,4096 --quiet --csv %s", csvpath);
    int rc = moeplan_run(args, RUN_STDOUT, out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    Grid g;
    parse_grid(out, "gpus \\ seq", &g);
    assert_int_equal(g.n1, 3);
    assert_int_equal(g.n2, 2);
    const double gpus[3] = {8, 16, 32}, seq[2] = {2048, 4096};
    char *csv = slurp(csvpath, NULL);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "gpus,seq,ok,mfu,step_time_s,"));
    int with_plan = 0, without = 0;
    for (int i = 0; i < 3; i++) {
        assert_true(g.rows[i] == gpus[i]);
        for (int j = 0; j < 2; j++) {
            assert_true(g.cols[j] == seq[j]);
            snprintf(args, sizeof args, "search " X7B " --gpus %g --seq %g --json", gpus[i], seq[j]);
            rc = moeplan_run(args, RUN_STDOUT, sout, sizeof sout);
            char f[32][64];
            int nf = csv_fields(csv, gpus[i], seq[j], f);
            assert_int_equal(nf, 22); /* ok ... reason */
            if (rc == 1) {
                /* search finds no plan: '-' in the grid, ok 0 and empty figures in the CSV */
                assert_string_equal(g.cells[i][j], "-");
                assert_string_equal(f[0], "0");
                assert_string_equal(f[1], "");
                assert_non_null(strstr(f[21], "no plan fits"));
                without++;
                continue;
            }
            if (rc) fail_msg("%s: exit %d", args, rc);
            cJSON *doc = cJSON_Parse(sout);
            assert_non_null(doc);
            int chosen = cJSON_GetObjectItem(doc, "chosen_rank")->valueint;
            const cJSON *best = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "plans"), chosen - 1);
            const cJSON *mfu = item(best, "prediction", "mfu");
            const char *conv = cJSON_GetObjectItem(mfu, "convention")->valuestring;
            double m = cJSON_GetObjectItem(mfu, conv)->valuedouble;
            char want[16];
            snprintf(want, sizeof want, "%.1f%%", 100 * m);
            assert_string_equal(g.cells[i][j], want);
            assert_string_equal(f[0], "1");
            assert_true(fabs(strtod(f[1], NULL) - m) <= 1e-5);
            assert_true(fabs(strtod(f[2], NULL) - item(best, "prediction", "step_time_s")->valuedouble) <= 1e-5);
            /* tp, cp, pp, vpp, dp, etp, ep, edp, mbs: CSV fields 6..14 */
            const char *keys[9] = {"tp", "cp", "pp", "vpp", "dp", "etp", "ep", "edp", "mbs"};
            for (int k = 0; k < 9; k++)
                assert_int_equal(atoi(f[6 + k]), item(best, "plan", keys[k])->valueint);
            assert_int_equal(item(best, "plan", "gpus")->valueint, (int)gpus[i]);
            assert_int_equal(item(best, "plan", "seq")->valueint, (int)seq[j]);
            cJSON_Delete(doc);
            with_plan++;
        }
    }
    /* 8 GPUs hold no plan of Mixtral 8x7B with a distributed optimizer; 16 and 32 do */
    assert_int_equal(without, 2);
    assert_int_equal(with_plan, 4);
    free(csv);
}

/* --fixed: every cell is the fixed plan simulated at that point, as
 * `simulate` reports it; 3 GPUs cannot hold TP2 x PP2 ('-'). */
static void test_grid_fixed_matches_simulate(void **state) {
    (void)state;
    static char out[1 << 16], sout[1 << 20], args[1024];
    const char *plan = "--model mixtral-8x7b --cluster dgx-h100 --tp 2 --pp 2 --ep 8 --gbs 64";
    snprintf(args, sizeof args, "sweep %s --gpus 16 --fixed --vary gpus=3,16,32 --vary2 seq=2048,8192 --quiet", plan);
    int rc = moeplan_run(args, RUN_STDOUT, out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    Grid g;
    parse_grid(out, "gpus \\ seq", &g);
    assert_int_equal(g.n1, 3);
    assert_int_equal(g.n2, 2);
    assert_string_equal(g.cells[0][0], "-");
    assert_string_equal(g.cells[0][1], "-");
    const double gpus[2] = {16, 32}, seq[2] = {2048, 8192};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            snprintf(args, sizeof args, "simulate %s --gpus %g --seq %g --json", plan, gpus[i], seq[j]);
            rc = moeplan_run(args, RUN_STDOUT, sout, sizeof sout);
            if (rc) fail_msg("%s: exit %d", args, rc);
            cJSON *doc = cJSON_Parse(sout);
            assert_non_null(doc);
            const cJSON *mfu = item(cJSON_GetObjectItem(doc, "prediction"), "mfu", NULL);
            double m = cJSON_GetObjectItem(mfu, cJSON_GetObjectItem(mfu, "convention")->valuestring)->valuedouble;
            bool fits = cJSON_IsTrue(item(doc, "prediction", "fits"));
            char want[16];
            snprintf(want, sizeof want, fits ? "%.1f%%" : "(%.1f%%)", 100 * m);
            assert_string_equal(g.cells[i + 1][j], want);
            cJSON_Delete(doc);
        }
}

static void test_option_errors(void **state) {
    (void)state;
    const char *m = "sweep --model mixtral-8x7b --cluster dgx-h100 --gpus 16";
    char args[512];
#define BAD(extra, want) do { snprintf(args, sizeof args, "%s %s", m, extra); expect_bad_input(args, want); } while (0)
    BAD("--vary2 seq=2048,4096", "--vary2: needs --vary");
    BAD("--vary seq=2048 --vary2 seq=4096", "--vary2: seq is already swept by --vary");
    BAD("--vary seq=2048 --vary2 colour=1,2", "--vary2: 'colour' is not one of gpus, seq");
    BAD("--vary seq=2048 --vary2 gpus", "--vary2: 'gpus' is not PARAM=V1,V2,...");
    BAD("--vary seq=2048 --vary2 gpus=16, ", "--vary2: trailing comma");
    BAD("--vary seq=2048 --vary2 gpus=16,x", "--vary2");
    BAD("--vary seq=2048 --vary2 gpus=16 --vary2 gpus=32", "--vary2: given twice");
    BAD("--vary seq=2048,4096 --vary2 gpus=16,32,16", "--vary2: gpus = 16 is given twice");
    BAD("--vary granularity=1,2 --vary2 top-k=2,4", "granularity and top-k cannot be swept together");
    BAD("--vary experts=8,16 --vary2 granularity=1,2", "granularity and experts cannot be swept together");
    BAD("--vary gbs=64,128 --vary2 seq=2048 --tokens-per-batch 262144", "--tokens-per-batch: contradicts --vary gbs");
    /* the same two checks in a 1-D sweep */
    BAD("--vary gbs=64,128 --tokens-per-batch 262144", "--tokens-per-batch: contradicts --vary gbs");
    BAD("--vary seq=2048,4096,2048", "--vary: seq = 2048 is given twice");
    BAD("--vary seq=2048,4096 --vary2 gbs=64 --tokens-per-batch 262144", "--tokens-per-batch: contradicts --vary2 gbs");
    /* 17 x 16 = 272 points, above the 256 limit */
    BAD("--vary gpus=8,16,24,32,40,48,56,64,72,80,88,96,104,112,120,128,136 "
        "--vary2 seq=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "--vary2: 17 x 16 = 272 points, at most 256");
    /* a bad value of the second key names --vary2, checked before any work */
    BAD("--vary gbs=64 --vary2 gpus=0.5", "--vary2: gpus needs positive integers");
    BAD("--vary seq=2048 --vary2 gpus=16 --plot m.pdf", "--plot: 'm.pdf' must end in .svg or .png");
#undef BAD
    expect_bad_input("sweep --model mixtral-8x7b --cluster dgx-h100 --tp 2 --pp 2 --ep 8 --fixed --vary seq=2048 "
                     "--vary2 gpus=16,32", "--gpus: required with --fixed");
}

/* A point with plan TP2 CP1 PP8v2 EP16 and the given MFU (0: no plan). */
static SweepPoint point(double v1, double v2, double mfu) {
    SweepPoint p;
    memset(&p, 0, sizeof p);
    p.value = v1;
    p.has_value2 = true;
    p.value2 = v2;
    p.ok = mfu > 0;
    p.best.cand.map.tp = 2; p.best.cand.map.cp = 1; p.best.cand.map.pp = 8; p.best.cand.map.vpp = 2;
    p.best.cand.map.dp = 8; p.best.cand.map.etp = 1; p.best.cand.map.ep = 16; p.best.cand.map.edp = 1;
    p.best.cand.mbs = 1;
    p.best.mfu = mfu;
    p.best.step_time_s = mfu > 0 ? 1.0 : 0;
    return p;
}

static char *script_of(const char *title, const SweepGrid *grid, int want_cells) {
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(sweep_heatmap_script(f, "pngcairo size 1100,400", title, grid), want_cells);
    return stream_text(f);
}

static void test_cell_label(void **state) {
    (void)state;
    SweepPoint p = point(1, 1, 0.5);
    char label[64];
    sweep_heatmap_cell_label(&p.best.cand, label, sizeof label);
    assert_string_equal(label, "TP2 CP1 PP8v2 EP16");
    p.best.cand.map.vpp = 1;
    p.best.cand.map.etp = 2;
    sweep_heatmap_cell_label(&p.best.cand, label, sizeof label);
    assert_string_equal(label, "TP2 CP1 PP8 EP16 ETP2");
}

/* 2 x 3 grid (gpus 64, 128 x seq 4096, 8192, 16384), the cell (64, 16384)
 * without a plan.  MFUs 40..50 %: the colour range is [40:50], cells below
 * 40 + 0.6 x 10 = 46 % get white text (dark 1). */
static void test_heatmap_script(void **state) {
    (void)state;
    double v1[2] = {64, 128}, v2[3] = {4096, 8192, 16384};
    SweepPoint pts[6] = {point(64, 4096, 0.40), point(64, 8192, 0.45), point(64, 16384, 0),
                         point(128, 4096, 0.47), point(128, 8192, 0.50), point(128, 16384, 0.42)};
    SweepGrid grid = {.k1 = SWEEP_GPUS, .k2 = SWEEP_SEQ, .vals1 = v1, .vals2 = v2, .n1 = 2, .n2 = 3, .pts = pts};
    char *s = script_of("m'`x`@y$z on c (gbs 8): gpus x seq sweep, best plan", &grid, 5);
    /* cells: column, row, MFU %, dark, MFU text, mapping */
    char *cells = strstr(s, "$cells << EOD\n");
    assert_non_null(cells);
    char *end = strstr(cells, "\nEOD\n");
    assert_non_null(end);
    *end = 0;
    assert_non_null(strstr(cells, "\n0 0 40.00000 1 \"40.0%\" \"TP2 CP1 PP8v2 EP16\"\n"));
    assert_non_null(strstr(cells, "\n1 0 45.00000 1 \"45.0%\""));
    assert_non_null(strstr(cells, "\n0 1 47.00000 0 \"47.0%\""));
    assert_non_null(strstr(cells, "\n1 1 50.00000 0 \"50.0%\""));
    assert_non_null(strstr(cells, "\n2 1 42.00000 1 \"42.0%\" \"TP2 CP1 PP8v2 EP16\""));
    assert_null(strstr(cells, "\n2 0 "));
    *end = '\n';
    char *none = strstr(end, "$none << EOD\n2 0 \"no plan fits\"\nEOD\n");
    assert_non_null(none);
    /* ticks at the swept values on the category positions; first row on top */
    assert_non_null(strstr(s, "\nset xtics (\"4096\" 0, \"8192\" 1, \"16384\" 2) scale 0"));
    assert_non_null(strstr(s, "\nset ytics (\"64\" 0, \"128\" 1) scale 0"));
    assert_non_null(strstr(s, "\nset xrange [-0.5:2.5]\nset yrange [1.5:-0.5]\n"));
    assert_non_null(strstr(s, "\nset cbrange [40.00000:50.00000]\n"));
    assert_non_null(strstr(s, "\nset xlabel 'seq (tokens)'"));
    assert_non_null(strstr(s, "\nset ylabel 'gpus (GPUs)'"));
    assert_non_null(strstr(s, "title 'no plan fits in memory'"));
    /* the title in two lines, split at ': ', only the delimiting quotes */
    assert_non_null(strstr(s, "\nset label 101 'm??x??y?z on c (gbs 8)' at screen 0.5, screen "));
    assert_non_null(strstr(s, "\nset label 102 'gpus x seq sweep, best plan' at screen 0.5, screen "));
    assert_null(strstr(s, "set title"));
    /* no file name anywhere: the picture goes to stdout */
    assert_null(strstr(s, "set output"));
    assert_null(strstr(s, "load"));
    free(s);
    /* one MFU only: a range of 2 points around it */
    SweepPoint one[2] = {point(64, 4096, 0.40), point(64, 8192, 0)};
    SweepGrid g1 = {.k1 = SWEEP_GPUS, .k2 = SWEEP_SEQ, .vals1 = v1, .vals2 = v2, .n1 = 1, .n2 = 2, .pts = one,
                    .fixed = true};
    s = script_of("t", &g1, 1);
    assert_non_null(strstr(s, "\nset cbrange [39.00000:41.00000]\n"));
    assert_non_null(strstr(s, "$none << EOD\n1 0 \"invalid\"\nEOD\n"));
    free(s);
}

/* The picture grows with the grid: 160 x 72 pixels per cell. */
static void test_heatmap_size(void **state) {
    (void)state;
    int w, h;
    sweep_heatmap_size(5, 4, &w, &h);
    assert_int_equal(w, 1100);              /* 150 + 4 x 160 + 190 = 980, below the minimum */
    assert_int_equal(h, 90 + 5 * 72 + 120); /* 570 */
    sweep_heatmap_size(2, 8, &w, &h);
    assert_int_equal(w, 150 + 8 * 160 + 190);
}

/* The binary draws the heat map (PNG, and SVG with the title). */
static void test_heatmap_files(void **state) {
    (void)state;
    if (!have_gnuplot()) { skip(); return; }
    static char args[1024], out[1 << 16];
    char png[128], svg[128];
    snprintf(png, sizeof png, "%s/h.png", dir);
    snprintf(svg, sizeof svg, "%s/h.svg", dir);
    snprintf(args, sizeof args, "sweep " X7B " --vary gpus=8,16 --vary2 seq=2048,4096 --quiet --plot %s", png);
    int rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    size_t n = 0;
    char *b = slurp(png, &n);
    assert_non_null(b);
    assert_true(n > 1000 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8));
    free(b);
    snprintf(args, sizeof args, "sweep --model mixtral-8x7b --cluster dgx-h100 --tp 2 --pp 2 --ep 8 --gbs 64 "
             "--gpus 16 --fixed --vary gpus=3,16 --vary2 ib-bw=100,400 --quiet --plot %s", svg);
    rc = moeplan_run(args, RUN_STDOUT_AND_STDERR, out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    b = slurp(svg, NULL);
    assert_non_null(b);
    assert_non_null(strstr(b, "<svg"));
    assert_non_null(strstr(b, ">mixtral-8x7b on dgx-h100 (gbs 64, seq 4096)<"));
    assert_non_null(strstr(b, ">gpus x ib-bw sweep, fixed plan<"));
    assert_non_null(strstr(b, "invalid"));
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grid_matches_search, setup, teardown),
        cmocka_unit_test(test_grid_fixed_matches_simulate),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_cell_label),
        cmocka_unit_test(test_heatmap_script),
        cmocka_unit_test(test_heatmap_size),
        cmocka_unit_test_setup_teardown(test_heatmap_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
