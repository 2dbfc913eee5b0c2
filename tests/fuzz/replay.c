/* replay.c: runs a libFuzzer harness without libFuzzer.
 *
 *   replay_NAME PATH...    PATH: a corpus file, or a directory of them
 *
 * Calls the harness's LLVMFuzzerTestOneInput once per file (directories are
 * read one level deep, in name order, so runs are reproducible) and prints
 * one line per harness: "replay_NAME: N inputs replayed".  A broken
 * invariant aborts inside the harness (fuzz_check), a memory error stops
 * the process under ASan/UBSan (`make SAN=1`); the name of the input being
 * run is printed to stderr first, so the failing one is the last named.
 * Exit status: 0 when every input ran, 1 when a file could not be read or
 * no input was found.
 * Built with the project's normal compiler and flags (Makefile: build/tests/
 * fuzz/replay_NAME), so `make check` replays the committed corpus
 * (tests/fuzz/corpus/NAME/) plainly and under ASan+UBSan without clang. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

/* Largest corpus file: libFuzzer's default -max_len for these corpora is far
 * below it; a bigger file is a mistake in the corpus. */
#define REPLAY_MAX_BYTES (1 << 20)

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: %s: cannot open\n", path); return -1; }
    /* one byte more than the limit, to tell "exactly the limit" from "too big";
     * never empty, so the harness gets a valid pointer for an empty file */
    unsigned char *buf = malloc(REPLAY_MAX_BYTES + 1);
    if (!buf) { fclose(f); fprintf(stderr, "replay: %s: out of memory\n", path); return -1; }
    size_t n = fread(buf, 1, REPLAY_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > REPLAY_MAX_BYTES) {
        free(buf);
        fprintf(stderr, "replay: %s: %s\n", path, bad ? "cannot read" : "larger than 1 MiB");
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    /* a copy of exactly n bytes, so ASan sees reads past the input's end */
    unsigned char *input = malloc(n ? n : 1);
    if (!input) { free(buf); return -1; }
    memcpy(input, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(input, n);
    free(input);
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file of dir in name order; returns the count or -1. */
static int replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "replay: %s: cannot open directory\n", dir); return -1; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) { rc = -1; break; }
            names = nn;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) { rc = -1; break; }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc == 0) qsort(names, n, sizeof *names, cmp_names);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(names[i])) rc = -1;
            else count++;
        }
        free(names[i]);
    }
    free(names);
    return rc ? -1 : count;
}

int main(int argc, char **argv) {
    const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_FILE_OR_DIR...\n", self);
        return 2;
    }
    int total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "replay: %s: not found\n", argv[i]); return 1; }
        int n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : (replay_file(argv[i]) ? -1 : 1);
        if (n < 0) return 1;
        total += n;
    }
    printf("%s: %d inputs replayed\n", self, total);
    return total > 0 ? 0 : 1;
}
