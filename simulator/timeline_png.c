/* timeline_png.c: the simulated step of every pipeline stage as a picture
 * (gnuplot through core/gnuplot.h: data in an inline datablock, no file
 * name in the script, the title through gnuplot_sanitize).
 *
 * One row per stage, stage 0 on top; forward ops blue and backward ops
 * orange, a darker shade for each later model chunk (interleaved 1F1B);
 * micro-batch numbers are integers, the key's texts fixed words;
 * micro-batch numbers inside boxes wide enough to hold them; the step's
 * tail (exposed gradient sync, optimizer, parameter all-gather) in grey
 * and purple after each stage's last op. */
#include <stdio.h>
#include <string.h>

#include "core/gnuplot.h"
#include "sim_internal.h"

enum { TL_W = 1400, TL_ROW_H = 46, TL_EXTRA_H = 190 };

static const unsigned fwd_colors[4] = {0x6baed6, 0x3182bd, 0x08519c, 0x08306b};
static const unsigned bwd_colors[4] = {0xfdae6b, 0xe6550d, 0xa63603, 0x7f2704};

/* Shade 0..3 of model chunk c of vpp: one mid shade without interleaving,
 * chunk by chunk up to 4 chunks, spread over the four beyond. */
static int chunk_shade(int c, int vpp) {
    if (vpp <= 1) return 1;
    if (vpp <= 4) return c < 0 ? 0 : c;
    return c <= 0 ? 0 : (c * 3) / (vpp - 1);
}

/* 0xRRGGBB of a slice. */
static unsigned slice_color(const TraceSlice *s, int vpp) {
    if (s->tid == 2) return !strcmp(s->cat, "optimizer") ? 0x8e6bbf : 0x969696;
    int shade = chunk_shade(s->chunk, vpp);
    return !strcmp(s->cat, "forward") ? fwd_colors[shade] : bwd_colors[shade];
}

int timeline_png_write(const char *path, const char *title, const TraceSlice *s, int n, int pp, int vpp,
                       MpError *err) {
    char term[160];
    MpError inner;
    int height = TL_EXTRA_H + TL_ROW_H * pp;
    if (!gnuplot_terminal(path, TL_W, height, term, sizeof term))
        return mp_fail(err, "timeline: '%s' must end in .png or .svg for a picture", path);
    if (gnuplot_available(&inner)) return mp_fail(err, "timeline: %s", inner.msg);
    double t_end = 0;
    for (int i = 0; i < n; i++)
        if (s[i].tid != 1 && s[i].start + s[i].dur > t_end) t_end = s[i].start + s[i].dur;
    if (t_end <= 0) return mp_fail(err, "timeline: the step has no operation to draw");
    FILE *g = gnuplot_script_open(&inner);
    if (!g) return mp_fail(err, "timeline: %s", inner.msg);
    fprintf(g, "set terminal %s\n", term);
    /* columns: x centre (s), stage, half width (s), 0xRRGGBB, label (micro-batch or empty) */
    fprintf(g, "$ops << EOD\n");
    double px_per_s = (TL_W * 0.86) / t_end;   /* the plot spans about 86% of the width */
    for (int i = 0; i < n; i++) {
        if (s[i].tid == 1 || s[i].dur <= 0) continue;
        char label[16] = "";
        /* a number fits when the box is wider than its digits (about 7 px each at font 8) */
        if (s[i].mb >= 0) {
            int digits = s[i].mb >= 100 ? 3 : s[i].mb >= 10 ? 2 : 1;
            if (s[i].dur * px_per_s > 7.5 * digits + 3) snprintf(label, sizeof label, "%d", s[i].mb);
        }
        fprintf(g, "%.9g %d %.9g %u \"%s\"\n", s[i].start + s[i].dur / 2, s[i].stage, s[i].dur / 2,
                slice_color(&s[i], vpp), label);
    }
    fprintf(g, "EOD\n");
    char safe[256];
    gnuplot_sanitize(title, safe, sizeof safe);
    fprintf(g, "set title '%s' noenhanced font ',14'\n", safe);
    fprintf(g, "set lmargin at screen 0.08\nset rmargin at screen 0.94\n");
    fprintf(g, "set tmargin at screen %.4f\nset bmargin at screen %.4f\n", 1 - 70.0 / height, 120.0 / height);
    fprintf(g, "set xrange [0:%.9g]\nset yrange [%d.6:-0.6]\n", t_end * 1.005, pp - 1);
    fprintf(g, "set xlabel 'time from the start of the step (s)'\nset grid xtics\nset mxtics\n");
    fprintf(g, "set ytics (");
    for (int st = 0; st < pp; st++) fprintf(g, "%s'stage %d' %d", st ? ", " : "", st, st);
    fprintf(g, ") scale 0\n");
    fprintf(g, "set key outside below horizontal center noenhanced\nset style fill solid 1.0 border lc rgb 'white'\n");
    fprintf(g, "plot $ops using 1:2:3:(0.36):4 with boxxyerror lc rgb variable notitle, \\\n"
               "     $ops using 1:2:5 with labels font ',8' tc rgb 'white' notitle");
    /* the key: one entry per shade used, in the slices' own colours */
    for (int dir = 0; dir < 2; dir++) {
        int last = -1;
        for (int c = 0; c < vpp; c++) {
            int sh = chunk_shade(c, vpp);
            if (sh == last) continue;
            last = sh;
            char what[48];
            if (vpp <= 1) snprintf(what, sizeof what, "%s", dir ? "backward" : "forward");
            else if (vpp <= 4) snprintf(what, sizeof what, "%s, chunk %d", dir ? "backward" : "forward", c);
            else snprintf(what, sizeof what, "%s, chunks from %d", dir ? "backward" : "forward", c);
            fprintf(g, ", \\\n     keyentry with boxes fc rgb '#%06x' title '%s'", dir ? bwd_colors[sh] : fwd_colors[sh], what);
        }
    }
    fprintf(g, ", \\\n     keyentry with boxes fc rgb '#969696' title 'exposed gradient sync, parameter all-gather', \\\n"
               "     keyentry with boxes fc rgb '#8e6bbf' title 'optimizer step'\n");
    if (gnuplot_render(g, path, &inner)) return mp_fail(err, "timeline: %s", inner.msg);
    return 0;
}
