/* error.h: the one error type every library function fills.
 *
 * Libraries never print and never exit: they return -1 and write one line
 * "FILE: FIELD: reason" (or "FIELD: reason" when no file is involved) into an
 * MpError owned by the caller.  main() prints it and chooses the exit status.
 *
 * Every message is one printable line: mp_fail escapes control bytes
 * (newlines, terminal escapes, invalid UTF-8) as \xNN, and a message longer
 * than the buffer loses the middle (marked "[...N bytes...]"), never the
 * head (the file name's start) or the tail (the field and the reason).
 */
#ifndef MOEPLAN_ERROR_H
#define MOEPLAN_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define MP_ERROR_LEN 2048

typedef struct {
    char msg[MP_ERROR_LEN];
} MpError;

/* printf-style; always returns -1 so callers can `return mp_fail(err, ...)`. */
int mp_fail(MpError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies text into out (cap bytes, cap >= 64) as one printable line: control
 * bytes, C1 controls and invalid UTF-8 become \xNN; valid UTF-8 is kept; when
 * it does not fit, the middle is replaced by "[...N bytes...]". */
void mp_sanitize(const char *text, char *out, size_t cap);

#endif
