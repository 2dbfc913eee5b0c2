/* attn_backend.c: names of the attention backends (attn_backend.h). */
#include "attn_backend.h"

#include <string.h>

static const char *const names[ATTN_BACKEND_COUNT] = {"auto", "cudnn", "flash2", "fa3", "own"};

const char *attn_backend_name(AttnBackend b) {
    return (b >= 0 && b < ATTN_BACKEND_COUNT) ? names[b] : "?";
}

int attn_backend_parse(const char *s, AttnBackend *out) {
    for (int i = 0; i < ATTN_BACKEND_COUNT; i++)
        if (!strcmp(s, names[i])) {
            *out = (AttnBackend)i;
            return 0;
        }
    return -1;
}
