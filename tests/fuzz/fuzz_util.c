/* fuzz_util.c: see fuzz_util.h. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *fuzz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return NULL;
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* The one piece of process state of the harnesses: the temporary directory
 * (and the files written into it, removed at exit).  It lives for the whole
 * fuzzing run so that each input costs one write, not a mkdtemp. */
#define FUZZ_MAX_FILES 8
static char fuzz_dir[256];
static char fuzz_files[FUZZ_MAX_FILES][64];
static int fuzz_nfiles;

static void fuzz_cleanup(void) {
    char path[sizeof fuzz_dir + sizeof fuzz_files[0] + 1];
    for (int i = 0; i < fuzz_nfiles; i++) {
        int n = snprintf(path, sizeof path, "%s/%s", fuzz_dir, fuzz_files[i]);
        if (n > 0 && (size_t)n < sizeof path) unlink(path);
    }
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

int fuzz_write_file(const char *name, const void *data, size_t size, char *path, size_t len) {
    if (!fuzz_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(fuzz_dir, sizeof fuzz_dir, "%s/moeplan-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (n < 0 || (size_t)n >= sizeof fuzz_dir || !mkdtemp(fuzz_dir)) { fuzz_dir[0] = 0; return -1; }
        atexit(fuzz_cleanup);
    }
    int known = 0;
    for (int i = 0; i < fuzz_nfiles; i++) known |= !strcmp(fuzz_files[i], name);
    if (!known) {
        if (fuzz_nfiles >= FUZZ_MAX_FILES || strlen(name) >= sizeof fuzz_files[0]) return -1;
        memcpy(fuzz_files[fuzz_nfiles++], name, strlen(name) + 1);
    }
    int n = snprintf(path, len, "%s/%s", fuzz_dir, name);
    if (n < 0 || (size_t)n >= len) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *sizes, int max_parts) {
    static const char sep[] = "\n---\n";
    const size_t seplen = sizeof sep - 1;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n < max_parts - 1 && i + seplen <= size; i++) {
        if (memcmp(data + i, sep, seplen)) continue;
        parts[n] = data + start;
        sizes[n++] = i - start;
        start = i + seplen;
        i = start - 1;
    }
    parts[n] = data + start;
    sizes[n++] = size - start;
    return n;
}

void fuzz_check_impl(int cond, const char *what, const char *file, int line) {
    if (cond) return;
    fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
    abort();
}

void fuzz_note(const char *what, const char *msg) {
    const char *v = getenv("FUZZ_VERBOSE");
    if (v && v[0] == '1') fprintf(stderr, "%s: %s\n", what, msg);
}
