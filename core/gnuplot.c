/* gnuplot.c: see gnuplot.h. */
#include "gnuplot.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "outfile.h"

extern char **environ;

void gnuplot_sanitize(const char *in, char *out, size_t cap) {
    size_t o = 0;
    if (!cap) return;
    for (const unsigned char *c = (const unsigned char *)in; *c && o + 1 < cap; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 (*c && strchr(" .,:()/+=-_", *c));
        out[o++] = ok ? (char)*c : '?';
    }
    out[o] = 0;
}

int gnuplot_available(MpError *err) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = malloc(len + sizeof "/gnuplot" + 1);
        if (!cand) return mp_fail(err, "out of memory");
        if (len == 0) strcpy(cand, "./gnuplot");
        else { memcpy(cand, p, len); strcpy(cand + len, "/gnuplot"); }
        struct stat st;
        int found = stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0;
        free(cand);
        if (found) return 0;
        if (!colon) break;
        p = colon + 1;
    }
    return mp_fail(err, "gnuplot is not on PATH (install gnuplot-nox)");
}

const char *gnuplot_terminal(const char *path, int width, int height, char *buf, size_t cap) {
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".svg"))
        snprintf(buf, cap, "svg size %d,%d dynamic font 'Helvetica,13' background rgb 'white'", width, height);
    else if (n > 4 && !strcmp(path + n - 4, ".png"))
        snprintf(buf, cap, "pngcairo size %d,%d font 'Helvetica,12'", width, height);
    else
        return NULL;
    return buf;
}

FILE *gnuplot_script_open(MpError *err) {
    FILE *f = tmpfile();
    if (!f) mp_fail(err, "cannot create a temporary file: %s", strerror(errno));
    return f;
}

/* First line of gnuplot's error output, for the message. */
static void first_line(FILE *f, char *out, size_t cap) {
    out[0] = 0;
    if (!f || fseek(f, 0, SEEK_SET) || !fgets(out, (int)cap, f)) return;
    out[strcspn(out, "\n")] = 0;
}

int gnuplot_render(FILE *script, const char *path, MpError *err) {
    FILE *errout = tmpfile();
    int bad = fflush(script) != 0 || ferror(script) || fseek(script, 0, SEEK_SET) != 0;
    if (!errout || bad) {
        int e = errno;
        fclose(script);
        if (errout) fclose(errout);
        return mp_fail(err, "cannot write gnuplot's script: %s", strerror(e));
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
        return mp_fail(err, "cannot run gnuplot: %s (install gnuplot-nox)", strerror(rc));
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
            return mp_fail(err, "gnuplot died of signal %d%s%s", WTERMSIG(status), why[0] ? ": " : "", why);
        return mp_fail(err, "gnuplot failed (exit status %d)%s%s",
                       status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, why[0] ? ": " : "", why);
    }
    return outfile_commit(&o, err);
}
