/* fuzz_util.h: helpers shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput.  It is built two ways:
 *   - `make fuzz`: clang -fsanitize=fuzzer,address,undefined, libFuzzer's main;
 *   - `make` / `make SAN=1`: the normal compiler and flags, linked with
 *     tests/fuzz/replay.c, whose main() calls it once per corpus file (so CI
 *     replays the committed corpus without clang).
 * A harness returns 0 for every input the code under test handles (accepted
 * or refused with an error); it aborts (fuzz_check) when an invariant of an
 * accepted input does not hold, so libFuzzer records the input as a crash.
 */
#ifndef MOEPLAN_FUZZ_UTIL_H
#define MOEPLAN_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data[0..size) as a malloc'ed NUL-terminated string (embedded NULs kept:
 * string readers stop at the first one).  NULL on out-of-memory. */
char *fuzz_text(const uint8_t *data, size_t size);

/* Writes data[0..size) to the file `name` inside this process's private
 * temporary directory (made once with mkdtemp under $TMPDIR or /tmp, removed
 * at exit) and returns its path in path[len].  Loaders that take a path
 * (calibration, --data, model and cluster files named by a plan) read it.
 * Returns -1 if the file cannot be written. */
int fuzz_write_file(const char *name, const void *data, size_t size, char *path, size_t len);

/* Splits data at the separator line "\n---\n" into at most max_parts parts
 * (the last part keeps any further separators); returns the number of parts.
 * parts[i] / sizes[i] point into data. */
int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *sizes, int max_parts);

/* With FUZZ_VERBOSE=1 in the environment, prints "what: msg" to stderr
 * (what the loader said about an input: for checking what a corpus file
 * reaches, e.g. FUZZ_VERBOSE=1 build/tests/fuzz/replay_plan FILE). */
void fuzz_note(const char *what, const char *msg);

/* Aborts with the message on stderr when cond is false (an invariant of the
 * code under test was broken: libFuzzer and the replay driver report it). */
#define fuzz_check(cond, what) fuzz_check_impl((cond), (what), __FILE__, __LINE__)
void fuzz_check_impl(int cond, const char *what, const char *file, int line);

#endif
