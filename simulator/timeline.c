/* timeline.c: Chrome trace event JSON ("X" complete events, microseconds)
 * of a step, one process per pipeline stage, for chrome://tracing or
 * ui.perfetto.dev. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/outfile.h"
#include "sim_internal.h"

static const char *const track_names[] = {"pipeline ops", "kernels and collectives", "step tail"};

int timeline_write(const char *path, const char *title, const TraceSlice *s, int n, int pp, MpError *err) {
    OutFile o;
    MpError inner;
    if (outfile_open(&o, path, &inner)) return mp_fail(err, "timeline: %s", inner.msg);
    FILE *f = o.f;
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"title\": \"");
    for (const unsigned char *c = (const unsigned char *)title; *c; c++) fputc((*c == 0x22 || *c == 0x5c || *c < 0x20) ? 0x27 : *c, f);
    fprintf(f, "\"},\n\"traceEvents\": [\n");
    for (int st = 0; st < pp; st++) {
        fprintf(f, "%s{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"pipeline stage %d\"}}",
                st ? ",\n" : "", st, st);
        fprintf(f, ",\n{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"sort_index\": %d}}", st, st);
        for (int t = 0; t < 3; t++)
            fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": \"%s\"}}",
                    st, t, track_names[t]);
    }
    for (int i = 0; i < n; i++) {
        fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f",
                s[i].name, s[i].cat, s[i].stage, s[i].tid, s[i].start * 1e6, s[i].dur * 1e6);
        if (s[i].mb >= 0) fprintf(f, ", \"args\": {\"microbatch\": %d, \"chunk\": %d}", s[i].mb, s[i].chunk);
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    if (outfile_commit(&o, &inner)) return mp_fail(err, "timeline: %s", inner.msg);
    return 0;
}
