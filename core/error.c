/* error.c: mp_fail and the one-printable-line rule (see error.h). */
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s that is not a C1 control
 * (U+0080..U+009F, which some terminals obey as escapes); 0 when invalid. */
static size_t utf8_printable_len(const unsigned char *s) {
    size_t n;
    unsigned cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) { n = 2; cp = s[0] & 0x1fu; }
    else if (s[0] >= 0xe0 && s[0] <= 0xef) { n = 3; cp = s[0] & 0x0fu; }
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) { n = 4; cp = s[0] & 0x07u; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    /* overlong forms, surrogates, beyond U+10FFFF, C1 controls */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return n;
}

/* The printable form of text into a malloc'ed string (NULL when out of memory). */
static char *escape_line(const char *text) {
    size_t len = strlen(text);
    char *out = malloc(4 * len + 1);
    if (!out) return NULL;
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        if (s[i] >= 0x20 && s[i] < 0x7f) { out[o++] = (char)s[i++]; continue; }
        size_t n = s[i] >= 0x80 ? utf8_printable_len(s + i) : 0;
        if (n) { memcpy(out + o, s + i, n); o += n; i += n; continue; }
        o += (size_t)sprintf(out + o, "\\x%02x", s[i]);
        i++;
    }
    out[o] = 0;
    return out;
}

/* Start of the UTF-8 character containing p (so a cut never splits one). */
static const char *utf8_start(const char *text, const char *p) {
    while (p > text && ((unsigned char)*p & 0xc0) == 0x80) p--;
    return p;
}

static void fit_line(const char *line, char *out, size_t cap) {
    size_t len = strlen(line);
    if (len < cap) { memcpy(out, line, len + 1); return; }
    /* keep a quarter at the head (where the file name starts) and the rest
     * at the tail (the field and the reason) */
    char mark[48];
    size_t head = (cap - sizeof mark) / 4, tail = cap - sizeof mark - head - 1;
    const char *h_end = utf8_start(line, line + head);
    const char *t_start = line + len - tail;
    while (((unsigned char)*t_start & 0xc0) == 0x80) t_start++;
    snprintf(mark, sizeof mark, "[...%zu bytes...]", (size_t)(t_start - h_end));
    size_t hl = (size_t)(h_end - line), ml = strlen(mark), tl = strlen(t_start);
    memcpy(out, line, hl);
    memcpy(out + hl, mark, ml);
    memcpy(out + hl + ml, t_start, tl + 1);
}

void mp_sanitize(const char *text, char *out, size_t cap) {
    char *line = escape_line(text ? text : "");
    if (!line) { snprintf(out, cap, "out of memory while formatting an error message"); return; }
    fit_line(line, out, cap);
    free(line);
}

int mp_fail(MpError *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    char *raw = NULL;
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    if (n < 0) {
        snprintf(err->msg, sizeof err->msg, "out of memory while formatting an error message");
        return -1;
    }
    mp_sanitize(raw, err->msg, sizeof err->msg);
    free(raw);
    return -1;
}
