/* fuzz_data.c: the executor's token-id file loader (executor/data.c
 * data_open, `execute --data FILE`) and the sequences it hands out.
 *
 * Input layout: byte 0 picks the id width (0: 16 bits, 1: 32 bits, other
 * values are passed as they are, which the loader must refuse), bytes 1-3
 * the vocabulary size (24-bit little-endian; 0 must be refused), byte 4 the
 * sequence length - 1 (1..256); the rest is the file.  For an accepted file
 * every id of a few sequences must be below the vocabulary size. */
#include <stdlib.h>

#include "executor/data.h"
#include "fuzz_util.h"

#define HEADER 5

static void check_sequences(const DataSource *d) {
    int32_t in[256], tg[256];
    const uint64_t idx[] = {0, 1, 2, 7, 1000003, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
        data_sequence(d, idx[i], in, tg);
        for (int t = 0; t < d->seq; t++)
            fuzz_check(in[t] >= 0 && in[t] < d->vocab && tg[t] >= 0 && tg[t] < d->vocab, "ids below vocab");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < HEADER) return 0;
    int bits = data[0] == 0 ? 16 : data[0] == 1 ? 32 : data[0];
    int vocab = data[1] | data[2] << 8 | data[3] << 16;
    int seq = 1 + data[4];
    char path[512];
    if (fuzz_write_file("tokens.bin", data + HEADER, size - HEADER, path, sizeof path)) return 0;
    DataSource d;
    MpError err = {{0}};
    if (data_open(&d, path, bits, vocab, seq, 42, &err) == 0) {
        fuzz_note("accepted", path);
        fuzz_check(d.ids && d.n >= (size_t)seq + 1, "a file with at least seq + 1 ids");
        check_sequences(&d);
        data_close(&d);
    } else {
        fuzz_note("refused", err.msg);
        fuzz_check(err.msg[0] != 0, "a refused data file has a message");
    }
    /* the synthetic and random streams with the same sizes */
    if (data_open(&d, NULL, bits, vocab, seq, data[4], &err) == 0) {
        check_sequences(&d);
        d.random = 1;
        check_sequences(&d);
        data_close(&d);
    }
    return 0;
}
