/* sweep_plot.c: the --plot of a sweep, drawn by gnuplot.
 *
 * Nothing that comes from the user (the output path, the model's or the
 * cluster's name) is ever pasted into gnuplot's script as a command:
 * - the script has no file names at all: the data are an inline datablock
 *   ($points << EOD), and gnuplot writes the picture to its standard output,
 *   which is the temporary file of core/outfile.h beside the target;
 * - the title is reduced to a strict set of characters (letters, digits,
 *   space and . , : ( ) / + = - _) before it is put between single quotes,
 *   so no quote, backquote, @ (macro), $ or newline can reach gnuplot;
 * - the point labels are built from integers only.
 * gnuplot runs with posix_spawnp: its script is read from an unlinked
 * temporary file (no pipe, so no SIGPIPE when it is missing or dies early),
 * its error output from another one (first line quoted on failure).
 */
#include "sweep.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/outfile.h"

extern char **environ;

void sweep_plot_title_sanitize(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)in; *c && o + 1 < cap; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 (*c && strchr(" .,:()/+=-_", *c));
        out[o++] = ok ? (char)*c : '?';
    }
    out[o] = 0;
}

int sweep_plot_available(MpError *err) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = malloc(len + sizeof "/gnuplot" + 1);
        if (!cand) return mp_fail(err, "--plot: out of memory");
        if (len == 0) strcpy(cand, "./gnuplot");
        else { memcpy(cand, p, len); strcpy(cand + len, "/gnuplot"); }
        struct stat st;
        int found = stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0;
        free(cand);
        if (found) return 0;
        if (!colon) break;
        p = colon + 1;
    }
    return mp_fail(err, "--plot: gnuplot is not on PATH (install gnuplot-nox, or drop --plot); nothing was run");
}

static void mapping_label(const Candidate *c, char *buf, size_t len) {
    snprintf(buf, len, "TP%d CP%d PP%d%s DP%d / ETP%d EP%d EDP%d", c->map.tp, c->map.cp, c->map.pp,
             c->map.vpp > 1 ? "v" : "", c->map.dp, c->map.etp, c->map.ep, c->map.edp);
}

/* The whole gnuplot script; returns the number of rows drawn (0: none). */
static int write_script(FILE *g, const char *term, const char *title, SweepParam k, const SweepPoint *pts, int n,
                        bool fixed) {
    double lo = 0, hi = 0;
    int rows = 0;
    fprintf(g, "set terminal %s\n", term);
    fprintf(g, "$points << EOD\n");
    for (int i = 0; i < n; i++) {
        if (!pts[i].ok) continue;
        char label[96];
        mapping_label(&pts[i].best.cand, label, sizeof label);
        fprintf(g, "%.17g %.5f %.5f %.5f \"%s\"\n", pts[i].value, 100 * pts[i].best.mfu, pts[i].best.step_time_s,
                pts[i].has_coupled ? 100 * pts[i].coupled.mfu : NAN, fixed ? "" : label);
        if (!rows || pts[i].value < lo) lo = pts[i].value;
        if (!rows || pts[i].value > hi) hi = pts[i].value;
        rows++;
    }
    fprintf(g, "EOD\n");
    char safe[256];
    sweep_plot_title_sanitize(title, safe, sizeof safe);
    bool logx = lo > 0 && hi / lo >= 8;
    fprintf(g, "set multiplot layout 2,1 title '%s' noenhanced\n", safe);
    fprintf(g, "set grid\nset key top right\n%s\n", logx ? "set logscale x 2" : "unset logscale x");
    fprintf(g, "set xrange [%.17g:%.17g]\n", logx ? lo / 1.3 : lo - 0.05 * (hi - lo + 1),
            logx ? hi * 1.3 : hi + 0.05 * (hi - lo + 1));
    fprintf(g, "set ylabel 'MFU (%%)'\nset yrange [0:*]\n");
    if (fixed)
        fprintf(g, "plot $points using 1:2 with linespoints lw 2 pt 7 title 'MFU'\n");
    else
        fprintf(g, "plot $points using 1:2 with linespoints lw 2 pt 7 title 'best plan (folded search)', "
                   "$points using 1:4 with linespoints lw 2 pt 5 dt 2 title 'best coupled (ETP = TP)', "
                   "$points using 1:2:5 with labels rotate by 20 left offset 0.5,0.6 font ',8' notitle\n");
    fprintf(g, "set ylabel 'step time (s)'\nset xlabel '%s (%s)'\n", sweep_param_name(k), sweep_param_unit(k));
    fprintf(g, "plot $points using 1:3 with linespoints lw 2 pt 7 lc rgb '#c04000' title 'step time'\n");
    fprintf(g, "unset multiplot\n");
    return rows;
}

/* First line of gnuplot's error output, for the message. */
static void first_line(FILE *f, char *out, size_t cap) {
    out[0] = 0;
    if (!f || fseek(f, 0, SEEK_SET) || !fgets(out, (int)cap, f)) return;
    out[strcspn(out, "\n")] = 0;
}

int sweep_plot(const char *path, const char *title, SweepParam k, const SweepPoint *pts, int n,
               bool fixed, MpError *err) {
    size_t plen = strlen(path);
    const char *term;
    if (plen > 4 && !strcmp(path + plen - 4, ".svg")) term = "svg size 1000,700 dynamic font 'Helvetica,13'";
    else if (plen > 4 && !strcmp(path + plen - 4, ".png")) term = "pngcairo size 1200,840 font 'Helvetica,12'";
    else return mp_fail(err, "--plot: '%s' must end in .svg or .png", path);
    if (sweep_plot_available(err)) return -1;
    FILE *script = tmpfile(), *errout = tmpfile();
    if (!script || !errout) {
        if (script) fclose(script);
        if (errout) fclose(errout);
        return mp_fail(err, "--plot: cannot create a temporary file: %s", strerror(errno));
    }
    int rows = write_script(script, term, title, k, pts, n, fixed);
    int bad = fflush(script) != 0 || ferror(script) || fseek(script, 0, SEEK_SET) != 0;
    if (!rows || bad) {
        fclose(script); fclose(errout);
        return rows ? mp_fail(err, "--plot: cannot write gnuplot's script: %s", strerror(errno))
                    : mp_fail(err, "--plot: no point has a plan to draw");
    }
    OutFile o;
    if (outfile_open(&o, path, err)) { fclose(script); fclose(errout); return -1; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fileno(script), 0);
    posix_spawn_file_actions_adddup2(&fa, fileno(o.f), 1);
    posix_spawn_file_actions_adddup2(&fa, fileno(errout), 2);
    char *argv[] = {"gnuplot", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    fclose(script);
    if (rc != 0) {
        fclose(errout);
        outfile_discard(&o);
        return mp_fail(err, "--plot: cannot run gnuplot: %s (install gnuplot-nox)", strerror(rc));
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) { status = -1; break; }
    char why[256];
    first_line(errout, why, sizeof why);
    fclose(errout);
    struct stat st;
    int empty = fflush(o.f) != 0 || fstat(fileno(o.f), &st) != 0 || st.st_size == 0;
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || empty) {
        outfile_discard(&o);
        if (status != -1 && WIFSIGNALED(status))
            return mp_fail(err, "--plot: gnuplot died of signal %d%s%s", WTERMSIG(status), why[0] ? ": " : "", why);
        return mp_fail(err, "--plot: gnuplot failed (exit status %d)%s%s", status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                       why[0] ? ": " : "", why);
    }
    return outfile_commit(&o, err);
}
