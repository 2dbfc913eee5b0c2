/* outfile.c: see outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

int outfile_check_target(const char *path, MpError *err) {
    if (!path || !path[0]) return mp_fail(err, "output path: empty");
    size_t n = strlen(path);
    if (path[n - 1] == '/') return mp_fail(err, "%s: cannot write: names a directory, not a file", path);
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return mp_fail(err, "%s: cannot write: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return mp_fail(err, "%s: cannot write: is %s; refusing to replace it (give a regular file's path)", path,
                       kind_of(st.st_mode));
    return 0;
}

/* "dir/name" -> "dir/.moeplan-" + 12 random characters; "name" -> "./.moeplan-..." */
static char *temp_name_beside(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t cap = dir_len + 32;
    char *t = malloc(cap);
    if (!t) return NULL;
    memcpy(t, path, dir_len);
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[12];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* no entropy source: the pid and the clock still make collisions
         * rare, and O_EXCL makes them harmless (the caller retries) */
        unsigned long x = (unsigned long)getpid() * 2654435761ul ^ (unsigned long)clock();
        for (size_t i = 0; i < sizeof rnd; i++) { x = x * 6364136223846793005ul + 1442695040888963407ul; rnd[i] = (unsigned char)(x >> 33); }
    }
    char *p = t + dir_len;
    memcpy(p, ".moeplan-", 9);
    p += 9;
    for (size_t i = 0; i < sizeof rnd; i++) *p++ = alphabet[rnd[i] % (sizeof alphabet - 1)];
    *p = 0;
    return t;
}

int outfile_open(OutFile *o, const char *path, MpError *err) {
    memset(o, 0, sizeof *o);
    if (outfile_check_target(path, err)) return -1;
    o->path = strdup(path);
    if (!o->path) return mp_fail(err, "%s: out of memory", path);
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; attempt++) {
        free(o->tmp);
        o->tmp = temp_name_beside(path);
        if (!o->tmp) { outfile_discard(o); return mp_fail(err, "%s: out of memory", path); }
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) {
            int e = errno;
            free(o->tmp);
            o->tmp = NULL;
            outfile_discard(o);
            return mp_fail(err, "%s: cannot write: %s (creating a temporary file beside it)", path, strerror(e));
        }
    }
    if (fd < 0) { free(o->tmp); o->tmp = NULL; outfile_discard(o); return mp_fail(err, "%s: cannot create a unique temporary file beside it", path); }
    o->f = fdopen(fd, "w");
    if (!o->f) {
        int e = errno;
        close(fd);
        outfile_discard(o);
        return mp_fail(err, "%s: %s", path, strerror(e));
    }
    return 0;
}

void outfile_discard(OutFile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}

int outfile_commit(OutFile *o, MpError *err) {
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) e = errno ? errno : EIO;
    if (!e && fsync(fileno(o->f)) != 0 && errno != EINVAL) e = errno;   /* EINVAL: no fsync on this file system */
    int rc = fclose(o->f);
    o->f = NULL;
    if (!e && rc != 0) e = errno ? errno : EIO;
    if (e) {
        mp_fail(err, "%s: cannot write: %s", o->path, strerror(e));
        outfile_discard(o);
        return -1;
    }
    /* the target may have changed while we wrote: check it again */
    MpError check;
    if (outfile_check_target(o->path, &check)) {
        mp_fail(err, "%s", check.msg);
        outfile_discard(o);
        return -1;
    }
    if (rename(o->tmp, o->path) != 0) {
        mp_fail(err, "%s: cannot write: %s", o->path, strerror(errno));
        outfile_discard(o);
        return -1;
    }
    free(o->tmp);
    o->tmp = NULL;
    outfile_discard(o);
    return 0;
}

int outfile_write_text(const char *path, const char *text, MpError *err) {
    OutFile o;
    if (outfile_open(&o, path, err)) return -1;
    if (fputs(text, o.f) == EOF) {
        mp_fail(err, "%s: cannot write: %s", path, strerror(errno));
        outfile_discard(&o);
        return -1;
    }
    return outfile_commit(&o, err);
}
