/* sweep_heatmap.c: the --plot of a 2-D sweep (--vary K1=... --vary2
 * K2=...): a heat map drawn by gnuplot (core/gnuplot.h).
 *
 * Layout:
 * - one cell per grid point, rows the first key (first value at the top,
 *   in the order of the table printed by `moeplan sweep`), columns the
 *   second key; the axes are categorical, so the ticks sit exactly on the
 *   swept values, evenly spaced whatever the values are;
 * - the cell's colour is the MFU of its plan (colour bar on the right,
 *   outside the data), its text the MFU and a short mapping ("TP2 CP1
 *   PP8v2 EP16"), white on the dark end of the palette, black on the light
 *   end;
 * - a cell without a plan is hatched grey and says why ("no plan fits",
 *   "does not fit", "invalid");
 * - each cell has a fixed pixel size (the picture grows with the grid),
 *   so the text never runs into the next cell;
 * - the title names model, cluster, batch, sequence and the kind of plan,
 *   in two lines centred on the picture.
 * Security: the script has no file names (inline datablocks, the picture
 * goes to gnuplot's stdout); the title goes through gnuplot_sanitize; the
 * cell texts and tick labels are built from numbers and fixed words only.
 */
#include "sweep.h"

#include <math.h>
#include <string.h>

#include "core/gnuplot.h"

/* Pixel geometry: cell size and the margins around the grid (tick labels
 * and axis label left, colour bar right, title top, tick labels, axis label
 * and the key bottom). */
enum { CELL_W = 160, CELL_H = 72, MARGIN_L = 150, MARGIN_R = 190, MARGIN_T = 90, MARGIN_B = 120, MIN_W = 1100 };

void sweep_heatmap_size(int n1, int n2, int *width, int *height) {
    int w = MARGIN_L + CELL_W * n2 + MARGIN_R;
    *width = w < MIN_W ? MIN_W : w;
    *height = MARGIN_T + CELL_H * n1 + MARGIN_B;
}

void sweep_heatmap_cell_label(const Candidate *c, char *buf, size_t len) {
    char pp[32], etp[16] = "";
    if (c->map.vpp > 1) snprintf(pp, sizeof pp, "PP%dv%d", c->map.pp, c->map.vpp);
    else snprintf(pp, sizeof pp, "PP%d", c->map.pp);
    if (c->map.etp > 1) snprintf(etp, sizeof etp, " ETP%d", c->map.etp);
    snprintf(buf, len, "TP%d CP%d %s EP%d%s", c->map.tp, c->map.cp, pp, c->map.ep, etp);
}

/* Whether a point has figures to colour: a plan found, or (fixed) a plan that fits. */
static bool cell_has_plan(const SweepPoint *p) { return p->ok; }

/* The few words of a cell without a plan. */
static const char *cell_reason(const SweepPoint *p, bool fixed) {
    if (!fixed) return "no plan fits";
    return p->best.step_time_s > 0 ? "does not fit" : "invalid";
}

/* viridis (matplotlib's default colour map, perceptually uniform and
 * readable in grey): 5 stops; cells below DARK_END of the range are dark
 * and get white text. */
#define PALETTE "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\n"
#define DARK_END 0.6

int sweep_heatmap_script(FILE *g, const char *term, const char *title, const SweepGrid *grid) {
    int n1 = grid->n1, n2 = grid->n2, cells = 0, none = 0;
    double lo = 0, hi = 0;
    for (int i = 0; i < n1 * n2; i++) {
        const SweepPoint *p = &grid->pts[i];
        if (!cell_has_plan(p)) { none++; continue; }
        double m = 100 * p->best.mfu;
        if (!cells || m < lo) lo = m;
        if (!cells || m > hi) hi = m;
        cells++;
    }
    /* a colour range of at least 2 points of MFU, so that one value (or
     * nearly equal ones) does not fill the range's ends */
    if (hi - lo < 2) { double mid = (hi + lo) / 2; lo = mid - 1; hi = mid + 1; }
    fprintf(g, "set terminal %s\n", term);
    /* columns: x (column index), y (row index), MFU %, dark (1: white text), MFU text, mapping */
    fprintf(g, "$cells << EOD\n");
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++) {
            const SweepPoint *p = &grid->pts[i * n2 + j];
            if (!cell_has_plan(p)) continue;
            char map[96];
            sweep_heatmap_cell_label(&p->best.cand, map, sizeof map);
            double m = 100 * p->best.mfu;
            fprintf(g, "%d %d %.5f %d \"%.1f%%\" \"%s\"\n", j, i, m, (m - lo) / (hi - lo) < DARK_END, m, map);
        }
    fprintf(g, "EOD\n");
    /* columns: x, y, the reason */
    fprintf(g, "$none << EOD\n");
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++) {
            const SweepPoint *p = &grid->pts[i * n2 + j];
            if (!cell_has_plan(p)) fprintf(g, "%d %d \"%s\"\n", j, i, cell_reason(p, grid->fixed));
        }
    fprintf(g, "EOD\n");
    int W, H;
    sweep_heatmap_size(n1, n2, &W, &H);
    /* the grid's edges as screen fractions: cells of CELL_W x CELL_H pixels, centred */
    double gw = (double)CELL_W * n2, l = (W - gw - MARGIN_R + MARGIN_L) / 2.0 / W, r = l + gw / W;
    double top = 1 - (double)MARGIN_T / H, bot = (double)MARGIN_B / H;
    char safe[256];
    gnuplot_sanitize(title, safe, sizeof safe);
    fprintf(g, "set encoding utf8\n");
    /* the title in two centred lines over the whole picture (gnuplot's
     * own title is centred over the grid and would run off a narrow
     * picture): what was run, then what was swept ("...: gpus x seq sweep, ...") */
    char *rest = strstr(safe, ": ");
    if (rest) { *rest = 0; rest += 2; }
    fprintf(g, "set label 101 '%s' at screen 0.5, screen %.4f center noenhanced font ',14'\n", safe, 1 - 26.0 / H);
    if (rest) fprintf(g, "set label 102 '%s' at screen 0.5, screen %.4f center noenhanced font ',12'\n", rest, 1 - 50.0 / H);
    fprintf(g, "set lmargin at screen %.4f\nset rmargin at screen %.4f\n", l, r);
    fprintf(g, "set tmargin at screen %.4f\nset bmargin at screen %.4f\n", top, bot);
    /* first row at the top, as in the printed table */
    fprintf(g, "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n", n2 - 1, n1 - 1);
    fprintf(g, "set xtics (");
    for (int j = 0; j < n2; j++) fprintf(g, "%s\"%g\" %d", j ? ", " : "", grid->vals2[j], j);
    fprintf(g, ") scale 0 font ',12'\nset ytics (");
    for (int i = 0; i < n1; i++) fprintf(g, "%s\"%g\" %d", i ? ", " : "", grid->vals1[i], i);
    fprintf(g, ") scale 0 font ',12'\nunset mxtics\nunset mytics\nunset grid\nset border 0\n");
    fprintf(g, "set xlabel '%s (%s)' noenhanced font ',13'\n", sweep_param_name(grid->k2), sweep_param_unit(grid->k2));
    fprintf(g, "set ylabel '%s (%s)' noenhanced font ',13'\n", sweep_param_name(grid->k1), sweep_param_unit(grid->k1));
    /* the colour bar in the right margin, the key (the hatched cell) in the bottom right corner */
    fprintf(g, "set cbrange [%.5f:%.5f]\nset cblabel '%s MFU (%%)' font ',12'\n", lo, hi,
            grid->fixed ? "fixed plan" : "best plan");
    fprintf(g, "set colorbox user origin screen %.4f, screen %.4f size screen %.4f, screen %.4f\n", r + 30.0 / W, bot,
            22.0 / W, top - bot);
    fprintf(g, PALETTE);
    fprintf(g, "set key at screen %.4f, screen %.4f right bottom horizontal Left reverse noenhanced samplen 2 font ',11'\n",
            1 - 10.0 / W, 8.0 / H);
    fprintf(g, "plot ");
    if (cells)
        fprintf(g, "$cells using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 border lc rgb 'white' lw 2 "
                   "fc palette notitle, \\\n     ");
    if (none)
        fprintf(g, "$none using 1:2:(0.5):(0.5) with boxxyerror fs solid 1.0 border lc rgb 'white' lw 2 "
                   "fc rgb '#ececec' notitle, \\\n"
                   "     $none using 1:2:(0.5):(0.5) with boxxyerror fs transparent pattern 4 noborder "
                   "fc rgb '#a8a8a8' title '%s', \\\n"
                   "     $none using 1:2:3 with labels font ',11' tc rgb '#404040' notitle, \\\n     ",
                grid->fixed ? "no plan (the fixed plan is invalid or does not fit)" : "no plan fits in memory");
    /* MFU above the cell's centre, the mapping below (y grows downwards) */
    fprintf(g, "$cells using 1:($2-0.13):($4 > 0 ? stringcolumn(5) : '') with labels font ',13:Bold' tc rgb 'white' notitle, \\\n"
               "     $cells using 1:($2-0.13):($4 > 0 ? '' : stringcolumn(5)) with labels font ',13:Bold' tc rgb 'black' notitle, \\\n"
               "     $cells using 1:($2+0.2):($4 > 0 ? stringcolumn(6) : '') with labels font ',9' tc rgb 'white' notitle, \\\n"
               "     $cells using 1:($2+0.2):($4 > 0 ? '' : stringcolumn(6)) with labels font ',9' tc rgb 'black' notitle\n");
    return cells;
}

int sweep_heatmap(const char *path, const char *title, const SweepGrid *grid, MpError *err) {
    char term[128];
    MpError inner;
    int W, H;
    sweep_heatmap_size(grid->n1, grid->n2, &W, &H);
    if (!gnuplot_terminal(path, W, H, term, sizeof term))
        return mp_fail(err, "--plot: '%s' must end in .svg or .png", path);
    if (sweep_plot_available(err)) return -1;
    FILE *script = gnuplot_script_open(&inner);
    if (!script) return mp_fail(err, "--plot: %s", inner.msg);
    sweep_heatmap_script(script, term, title, grid);
    if (gnuplot_render(script, path, &inner)) return mp_fail(err, "--plot: %s", inner.msg);
    return 0;
}
