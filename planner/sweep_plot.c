/* sweep_plot.c: the --plot of a sweep, drawn by gnuplot (core/gnuplot.h).
 *
 * Layout, so that a reader takes it in at a glance and no text overlaps:
 * - top panel MFU, bottom panel step time, both with the same left and
 *   right margins in screen coordinates (their x axes line up) and their
 *   keys in the right margin, outside the data;
 * - x ticks exactly at the swept values (log-2 axis when the values span
 *   8x or more, still with ticks only at the values);
 * - each point carries only its row number; the mappings are in a table
 *   below the panels (row, value, full plan label such as "TP2 CP1 PP8v2
 *   DP8 / ETP1 EP16 EDP1 mbs1, recompute none", MFU, step time), one row per swept value;
 * - the title names model, cluster, batch and whether each point is the
 *   best plan of a search or one fixed plan.
 * Security: the script has no file names (the data are the inline
 * datablock $points, the picture goes to gnuplot's stdout); the title goes
 * through gnuplot_sanitize; the labels are built from integers only.
 */
#include "sweep.h"

#include <math.h>
#include <string.h>

#include "core/gnuplot.h"

void sweep_plot_title_sanitize(const char *in, char *out, size_t cap) { gnuplot_sanitize(in, out, cap); }

int sweep_plot_available(MpError *err) {
    MpError inner;
    if (gnuplot_available(&inner)) return mp_fail(err, "--plot: %s, or drop --plot; nothing was run", inner.msg);
    return 0;
}

void sweep_plot_label(const Candidate *c, char *buf, size_t len) {
    char pp[32];
    if (c->map.vpp > 1) snprintf(pp, sizeof pp, "PP%dv%d", c->map.pp, c->map.vpp);
    else snprintf(pp, sizeof pp, "PP%d", c->map.pp);
    snprintf(buf, len, "TP%d CP%d %s DP%d / ETP%d EP%d EDP%d mbs%d, recompute %s", c->map.tp, c->map.cp, pp,
             c->map.dp, c->map.etp, c->map.ep, c->map.edp, c->mbs, recompute_name((RecomputeKind)c->recompute));
}

/* Screen geometry of the panels and the table, in pixels. */
enum { PLOT_W = 1200, PANEL_H = 330, GAP_H = 16, TITLE_H = 70, ROW_H = 22, TABLE_PAD = 64 };

int sweep_plot_height(int n) { return TITLE_H + 2 * PANEL_H + GAP_H + TABLE_PAD + ROW_H * (n + 1); }

/* The whole gnuplot script; returns the number of points with a plan. */
int sweep_plot_script(FILE *g, const char *term, const char *title, SweepParam k, const SweepPoint *pts, int n,
                      bool fixed) {
    double lo = 0, hi = 0, mfu_max = 0, step_max = 0;
    int rows = 0;
    fprintf(g, "set terminal %s\n", term);
    /* columns: value, MFU %, step s, coupled MFU % (nan: none), row number, plan label, and the
     * last three as text for the table */
    fprintf(g, "$points << EOD\n");
    for (int i = 0; i < n; i++) {
        bool drawn = pts[i].ok || (fixed && pts[i].best.step_time_s > 0);
        char label[128];
        if (drawn) sweep_plot_label(&pts[i].best.cand, label, sizeof label);
        else snprintf(label, sizeof label, "no plan fits");
        double mfu = drawn ? 100 * pts[i].best.mfu : NAN, step = drawn ? pts[i].best.step_time_s : NAN;
        double cpl = !fixed && pts[i].has_coupled ? 100 * pts[i].coupled.mfu : NAN;
        char ms[32] = "-", ss[32] = "-", cs[32] = "-";
        if (drawn) { snprintf(ms, sizeof ms, "%.1f %%", mfu); snprintf(ss, sizeof ss, "%.3f", step); }
        if (cpl == cpl) snprintf(cs, sizeof cs, "%.1f %%", cpl);
        fprintf(g, "%.17g %.5f %.6f %.5f %d \"%s\" \"%s\" \"%s\" \"%s\"\n", pts[i].value, mfu, step, cpl, i + 1, label,
                ms, ss, cs);
        if (!i || pts[i].value < lo) lo = pts[i].value;
        if (!i || pts[i].value > hi) hi = pts[i].value;
        if (drawn) {
            rows++;
            if (mfu > mfu_max) mfu_max = mfu;
            if (step > step_max) step_max = step;
        }
        if (cpl > mfu_max) mfu_max = cpl;
    }
    fprintf(g, "EOD\n");
    char safe[256];
    gnuplot_sanitize(title, safe, sizeof safe);
    double H = sweep_plot_height(n);
    /* panel edges as screen fractions: same left/right for both panels */
    double l = 0.08, r = 0.72;
    double top1 = 1 - TITLE_H / H, bot1 = top1 - PANEL_H / H, top2 = bot1 - GAP_H / H, bot2 = top2 - PANEL_H / H;
    fprintf(g, "set encoding utf8\n");
    fprintf(g, "set multiplot title '%s' noenhanced font ',14'\n", safe);
    fprintf(g, "set lmargin at screen %.4f\nset rmargin at screen %.4f\n", l, r);
    fprintf(g, "set grid\n");
    bool logx = lo > 0 && hi / lo >= 8;
    if (logx) fprintf(g, "set logscale x 2\nset xrange [%.17g:%.17g]\n", lo / 1.25, hi * 1.25);
    else fprintf(g, "unset logscale x\nset xrange [%.17g:%.17g]\n", lo - 0.06 * (hi - lo + 1), hi + 0.06 * (hi - lo + 1));
    /* ticks exactly at the swept values, nothing else */
    fprintf(g, "set xtics (");
    for (int i = 0; i < n; i++) fprintf(g, "%s%.17g", i ? ", " : "", pts[i].value);
    fprintf(g, ")\nunset mxtics\n");
    /* MFU panel, head room above the highest point for its row number */
    fprintf(g, "set tmargin at screen %.4f\nset bmargin at screen %.4f\n", top1, bot1);
    fprintf(g, "set key at screen %.4f, screen %.4f left top vertical Left reverse noenhanced\n", r + 0.02, top1);
    fprintf(g, "set ylabel 'MFU (%%)'\nset yrange [0:%.3f]\nset format x ''\nunset xlabel\n", mfu_max > 0 ? mfu_max * 1.22 : 1);
    if (fixed)
        fprintf(g, "plot $points using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f5fbf' title 'fixed plan', \\\n");
    else
        fprintf(g, "plot $points using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f5fbf' title 'best plan (folded search)', \\\n"
                   "     $points using 1:4 with linespoints lw 2 pt 5 dt 2 lc rgb '#7f7f7f' title 'best coupled (ETP = TP)', \\\n");
    fprintf(g, "     $points using 1:2:(sprintf('%%d', $5)) with labels offset 0,1.1 font ',10' tc rgb '#1f5fbf' notitle\n");
    /* step time panel */
    fprintf(g, "set tmargin at screen %.4f\nset bmargin at screen %.4f\n", top2, bot2);
    fprintf(g, "set key at screen %.4f, screen %.4f left top vertical Left reverse noenhanced\n", r + 0.02, top2);
    fprintf(g, "set ylabel 'step time (s)'\nset yrange [0:%.6g]\nset format x '%%g'\n", step_max > 0 ? step_max * 1.22 : 1);
    fprintf(g, "set xlabel '%s (%s)' noenhanced\n", sweep_param_name(k), sweep_param_unit(k));
    fprintf(g, "plot $points using 1:3 with linespoints lw 2 pt 7 lc rgb '#c04000' title 'step time', \\\n"
               "     $points using 1:3:(sprintf('%%d', $5)) with labels offset 0,1.1 font ',10' tc rgb '#c04000' notitle\n");
    /* the table: one row per swept value, below the panels */
    double tbl_top = bot2 - TABLE_PAD / H;
    fprintf(g, "unset logscale x\nunset grid\nunset key\nunset border\nunset xtics\nunset ytics\nunset xlabel\nunset ylabel\n");
    fprintf(g, "set lmargin at screen %.4f\nset rmargin at screen 0.98\n", l);
    fprintf(g, "set tmargin at screen %.4f\nset bmargin at screen 0.005\n", tbl_top);
    fprintf(g, "set xrange [0:1]\nset yrange [%d.5:-1.5]\n", n);
    /* the plan column starts after the value column, which is as wide as
     * the parameter's name (about 0.0085 of the table per bold character
     * at 11 pt on the 1080-pixel table) or its default 0.10 */
    double name_w = 0.0085 * (double)strlen(sweep_param_name(k)) + 0.02, plan_x = 0.04 + (name_w > 0.10 ? name_w : 0.10);
    fprintf(g, "set label 1 '#' at first 0.0, first -1 left font ',11:Bold'\n");
    fprintf(g, "set label 2 '%s' at first 0.04, first -1 left font ',11:Bold' noenhanced\n", sweep_param_name(k));
    fprintf(g, "set label 3 '%s' at first %.4f, first -1 left font ',11:Bold'\n", fixed ? "plan" : "best plan (mapping)",
            plan_x);
    fprintf(g, "set label 4 'MFU' at first 0.64, first -1 left font ',11:Bold'\n");
    fprintf(g, "set label 5 'step s' at first 0.74, first -1 left font ',11:Bold'\n");
    if (!fixed) fprintf(g, "set label 6 'coupled MFU' at first 0.84, first -1 left font ',11:Bold'\n");
    fprintf(g, "plot $points using (0.0):($5-1):(sprintf('%%d', $5)) with labels left font ',11', \\\n"
               "     $points using (0.04):($5-1):(sprintf('%%g', $1)) with labels left font ',11', \\\n"
               "     $points using (%.4f):($5-1):6 with labels left font ',11' noenhanced, \\\n"
               "     $points using (0.64):($5-1):7 with labels left font ',11', \\\n"
               "     $points using (0.74):($5-1):8 with labels left font ',11'%s\n",
            plan_x, fixed ? "" : ", \\\n     $points using (0.84):($5-1):9 with labels left font ',11'");
    fprintf(g, "unset multiplot\n");
    return rows;
}

int sweep_plot(const char *path, const char *title, SweepParam k, const SweepPoint *pts, int n,
               bool fixed, MpError *err) {
    char term[128];
    MpError inner;
    if (!gnuplot_terminal(path, PLOT_W, sweep_plot_height(n), term, sizeof term))
        return mp_fail(err, "--plot: '%s' must end in .svg or .png", path);
    if (sweep_plot_available(err)) return -1;
    FILE *script = gnuplot_script_open(&inner);
    if (!script) return mp_fail(err, "--plot: %s", inner.msg);
    if (!sweep_plot_script(script, term, title, k, pts, n, fixed)) {
        fclose(script);
        return mp_fail(err, "--plot: no point has a plan to draw");
    }
    if (gnuplot_render(script, path, &inner)) return mp_fail(err, "--plot: %s", inner.msg);
    return 0;
}
