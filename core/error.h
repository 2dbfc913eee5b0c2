/* error.h: the one error type every library function fills.
 *
 * Libraries never print and never exit: they return -1 and write one line
 * "FILE: FIELD: reason" (or "FIELD: reason" when no file is involved) into an
 * MpError owned by the caller.  main() prints it and chooses the exit status.
 */
#ifndef MOEPLAN_ERROR_H
#define MOEPLAN_ERROR_H

#include <stdarg.h>

#define MP_ERROR_LEN 512

typedef struct {
    char msg[MP_ERROR_LEN];
} MpError;

/* printf-style; always returns -1 so callers can `return mp_fail(err, ...)`. */
int mp_fail(MpError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
