/* test_cli_compare.c: explain_deciding_terms by hand, `moeplan compare`
 * (ordering, term deltas, marks, bad input) and the winner's explanation
 * that `search` prints. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "planner/explain.h"
#include "test_util.h"

static void test_deciding_terms_cover_the_gap(void **state) {
    (void)state;
    /* gap = (5+1+4+2) - (4+3+1+2) = 12 - 10 = 2; excesses: term 0 +1, term 2 +3, term 1 -2.
     * term 2 alone (+3) covers the gap of 2 */
    double fast[] = {4, 3, 1, 2}, slow[] = {5, 1, 4, 2};
    int idx[3];
    assert_int_equal(explain_deciding_terms(fast, slow, 4, idx, 3), 1);
    assert_int_equal(idx[0], 2);
    /* gap = 3.5: term 1 (+2), then term 3 (+1.5) cover it; term 0 (+0.5) is not needed */
    double f2[] = {1, 1, 1, 1}, s2[] = {1.5, 3, 0.5, 2.5};
    assert_int_equal(explain_deciding_terms(f2, s2, 4, idx, 3), 2);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 3);
    /* at most max terms */
    double f3[] = {0, 0, 0, 0}, s3[] = {1, 1, 1, 1};
    assert_int_equal(explain_deciding_terms(f3, s3, 4, idx, 3), 3);
    /* gap 1.0 covered by 0.995 and a 0.005 excess: the latter (< 1% of the gap) is not named */
    double f4[] = {1, 1, 1}, s4[] = {1.995, 1.005, 1};
    assert_int_equal(explain_deciding_terms(f4, s4, 3, idx, 3), 1);
    assert_int_equal(idx[0], 0);
    /* not slower: nothing decides */
    assert_int_equal(explain_deciding_terms(s2, f2, 4, idx, 3), 0);
}

#define BASE "--model mixtral-8x7b --cluster dgx-h100 --gpus 16 --ep 8 --pp 2"

static void test_compare_two_plans(void **state) {
    (void)state;
    static char out[16384];
    /* given slower first: compare puts the faster (TP1, no recompute) first */
    int rc = moeplan_run("compare \"" BASE " --tp 1 --vpp 4 --recompute full\" \"" BASE " --tp 1 --vpp 4 --recompute selective\"",
                         RUN_STDOUT, out, sizeof out);
    if (rc) fail_msg("exit %d: %s", rc, out);
    const char *a = strstr(out, "  A  "), *b = strstr(out, "  B  ");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(strstr(a, "recompute selective") < b); /* A is the selective plan */
    /* full recompute re-runs the whole forward: the recompute term decides, marked */
    const char *line = strstr(out, "\n  recompute ");
    assert_non_null(line);
    const char *eol = strchr(line + 1, '\n');
    assert_non_null(memchr(line, '*', (size_t)(eol - line)));
    assert_non_null(strstr(out, "B is "));
    assert_non_null(strstr(out, "slower than A: recompute +"));
    /* the terms of A add up to A's step time (the breakdown sums to the step) */
    double step = 0, sum = 0;
    const char *p = strstr(out, "step time (s)");
    assert_non_null(p);
    step = atof(p + strlen("step time (s)"));
    const char *t = strstr(out, "critical pipeline stage):\n");
    assert_non_null(t);
    t = strchr(t, '\n') + 1;
    while (!strncmp(t, "  ", 2)) {
        char name[64];
        double v;
        if (sscanf(t, "%63s %lf", name, &v) == 2) sum += v;
        t = strchr(t, '\n') + 1;
    }
    if (fabs(sum - step) > 0.002 * 16) fail_msg("terms add up to %.3f, step %.3f", sum, step);
}

static void test_compare_reads_search_documents(void **state) {
    (void)state;
    char dir[] = "/tmp/moeplan-compare-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char args[1024], out[16384];
    snprintf(args, sizeof args, "search --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --threads 2 --json > %s/s.json && "
             "%s search --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --threads 2 --rank 2 --emit plan > %s/r2.json",
             dir, moeplan_bin(), dir);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    snprintf(args, sizeof args, "compare %s/r2.json %s/s.json", dir, dir);
    assert_int_equal(moeplan_run(args, RUN_STDOUT, out, sizeof out), 0);
    char want[512];
    snprintf(want, sizeof want, "  A  %s/s.json", dir); /* rank 1 first */
    if (!strstr(out, want)) fail_msg("%s", out);
    snprintf(args, sizeof args, "rm -f %s/s.json %s/r2.json; rmdir %s", dir, dir, dir);
    assert_int_equal(system(args), 0);
}

static void test_compare_bad_input(void **state) {
    (void)state;
    expect_bad_input("compare \"" BASE " --tp 1\"", "at least two plans");
    expect_bad_input("compare --frobnicate a.json b.json", "--frobnicate");
    expect_bad_input("compare /nonexistent/a.json /nonexistent/b.json", "/nonexistent/a.json");
    expect_bad_input("compare \"" BASE " --tp 3\" \"" BASE "\"", "--tp 3");
}

static void test_search_explains_its_winner(void **state) {
    (void)state;
    static char out[16384];
    assert_int_equal(moeplan_run("search --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --threads 2 --top 2",
                                 RUN_STDOUT, out, sizeof out), 0);
    const char *w = strstr(out, "why rank 1 beats rank 2 (");
    if (!w) fail_msg("%s", out);
    assert_non_null(strstr(w, " ms less"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deciding_terms_cover_the_gap),
        cmocka_unit_test(test_compare_two_plans),
        cmocka_unit_test(test_compare_reads_search_documents),
        cmocka_unit_test(test_compare_bad_input),
        cmocka_unit_test(test_search_explains_its_winner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
