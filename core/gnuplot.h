/* gnuplot.h: drawing a picture with gnuplot without letting anything from
 * the user become a gnuplot command.
 *
 * The caller writes the whole script into a FILE (gnuplot_script_open):
 * data only through inline datablocks ($name << EOD), text only through
 * gnuplot_quote (a strict character set between single quotes), and no
 * file name at all: gnuplot_render runs gnuplot with the script on its
 * standard input and its standard output on the temporary file of
 * core/outfile.h beside PATH, so the picture appears under PATH only when
 * gnuplot succeeded.  gnuplot runs with posix_spawnp (no shell, no pipe).
 */
#ifndef MOEPLAN_GNUPLOT_H
#define MOEPLAN_GNUPLOT_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"

/* 0 when an executable gnuplot is on PATH; else "gnuplot is not on PATH". */
int gnuplot_available(MpError *err);

/* out = in with every character outside letters, digits and
 * " .,:()/+=-_" replaced by '?' (so no quote, backquote, @, $, newline). */
void gnuplot_sanitize(const char *in, char *out, size_t cap);

/* The terminal line for PATH by extension (.png or .svg), width x height
 * pixels; NULL for any other extension. */
const char *gnuplot_terminal(const char *path, int width, int height, char *buf, size_t cap);

/* A fresh unlinked temporary file for the script; NULL with err set. */
FILE *gnuplot_script_open(MpError *err);

/* Runs gnuplot on script (rewound here, closed here) and writes its
 * standard output to PATH through core/outfile.h.
 * err: "gnuplot failed (exit status N): <first line of its errors>". */
int gnuplot_render(FILE *script, const char *path, MpError *err);

#endif
