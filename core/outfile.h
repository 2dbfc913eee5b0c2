/* outfile.h: every file moeplan writes goes through here.
 *
 * A write never touches the target until it is complete: the data go to a
 * new temporary file beside the target (".moeplan-XXXXXXXXXXXX" in the same
 * directory, created with O_CREAT|O_EXCL|O_NOFOLLOW so a planted file or
 * symbolic link is never opened), are flushed, fsync'ed and closed with
 * every step checked, and only then renamed over the target.  A target that
 * exists and is not a regular file (a directory, a device node such as
 * /dev/null, a FIFO, a socket, a symbolic link) is refused before anything
 * is written.  Paths of any length either work or fail with the system's
 * reason (ENAMETOOLONG); nothing is cut to a fixed-size buffer.
 * Errors: "PATH: reason".  The file mode is 0666 minus the umask.
 */
#ifndef MOEPLAN_OUTFILE_H
#define MOEPLAN_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"

typedef struct {
    char *path;     /* the target, as given (malloc'ed copy) */
    char *tmp;      /* the temporary beside it (malloc'ed) */
    FILE *f;        /* open on tmp for writing */
} OutFile;

/* Checks the target and creates the temporary. On failure nothing exists. */
int outfile_open(OutFile *o, const char *path, MpError *err);
/* Flushes, fsyncs, closes and renames onto the target; on any failure the
 * temporary is removed and the target is untouched. Frees o's strings. */
int outfile_commit(OutFile *o, MpError *err);
/* Removes the temporary (an aborted write). Safe after a failed open. */
void outfile_discard(OutFile *o);

/* The whole file in one call: text followed by nothing else. */
int outfile_write_text(const char *path, const char *text, MpError *err);

/* 0 when path is absent or a regular file that may be replaced; else -1
 * with "PATH: is a directory" (FIFO, device node, ...).  Used to refuse a
 * bad output path before a long run starts. */
int outfile_check_target(const char *path, MpError *err);

#endif
