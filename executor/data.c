/* data.c: synthetic learnable task and raw token-id files (data.h). */
#include "executor/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t data_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int data_open(DataSource *d, const char *path, int bits, int vocab, int seq, uint64_t seed,
              MpError *err)
{
    memset(d, 0, sizeof *d);
    d->vocab = vocab; d->seq = seq; d->seed = seed;
    if (vocab <= 0) return mp_fail(err, "vocab: %d: must be positive", vocab);
    if (!path) return 0;
    if (bits != 16 && bits != 32) return mp_fail(err, "%s: data_bits: %d: must be 16 or 32", path, bits);
    FILE *f = fopen(path, "rb");
    if (!f) return mp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return mp_fail(err, "%s: cannot seek", path); }
    long size = ftell(f);
    rewind(f);
    size_t w = (size_t)bits / 8;
    if (size < 0 || (size_t)size % w) {
        fclose(f);
        return mp_fail(err, "%s: size: %ld bytes is not a multiple of %zu (uint%d token ids)", path, size, w, bits);
    }
    size_t n = (size_t)size / w;
    if (n < (size_t)seq + 1) {
        fclose(f);
        return mp_fail(err, "%s: size: %zu token ids, a sequence of %d needs at least %d", path, n, seq, seq + 1);
    }
    unsigned char *raw = malloc((size_t)size);
    d->ids = malloc(n * sizeof(uint32_t));
    if (!raw || !d->ids) { free(raw); fclose(f); data_close(d); return mp_fail(err, "%s: out of memory", path); }
    if (fread(raw, 1, (size_t)size, f) != (size_t)size) {
        free(raw); fclose(f); data_close(d);
        return mp_fail(err, "%s: read error", path);
    }
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = raw + i * w;
        uint32_t v = w == 2 ? (uint32_t)(p[0] | p[1] << 8)
                            : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (v >= (uint32_t)vocab) {
            free(raw); data_close(d);
            return mp_fail(err, "%s: token %zu: id %u is not below the vocabulary size %d", path, i, v, vocab);
        }
        d->ids[i] = v;
    }
    free(raw);
    d->n = n;
    return 0;
}

void data_close(DataSource *d)
{
    free(d->ids);
    d->ids = NULL;
    d->n = 0;
}

void data_sequence(const DataSource *d, uint64_t index, int32_t *inputs, int32_t *targets)
{
    int s = d->seq;
    if (d->ids) {
        size_t p = (size_t)((index * (uint64_t)s) % (uint64_t)(d->n - (size_t)s));
        for (int t = 0; t < s; t++) {
            inputs[t] = (int32_t)d->ids[p + (size_t)t];
            targets[t] = (int32_t)d->ids[p + (size_t)t + 1];
        }
        return;
    }
    if (d->random) {
        uint64_t key = data_mix(d->seed ^ data_mix(index + 0x2545f491ull));
        for (int t = 0; t <= s; t++) {
            int32_t x = (int32_t)(data_mix(key ^ (uint64_t)t) % (uint64_t)d->vocab);
            if (t < s) inputs[t] = x;
            if (t > 0) targets[t - 1] = x;
        }
        return;
    }
    int32_t x = (int32_t)(data_mix(d->seed ^ data_mix(index + 0x7a3full)) % (uint64_t)d->vocab);
    for (int t = 0; t < s; t++) {
        inputs[t] = x;
        x = data_synthetic_next(x, d->vocab);
        targets[t] = x;
    }
}
