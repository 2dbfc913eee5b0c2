/* schedule.c: see schedule.h. */
#include "schedule.h"

int schedule_num_ops(const PipeSchedule *s) { return 2 * s->m * s->vpp; }

int schedule_inflight(const PipeSchedule *s, int r) {
    int total = s->m * s->vpp, w = schedule_warmup(s, r) + 1;
    return w < total ? w : total;
}

int schedule_chunk_contexts(const PipeSchedule *s, int r, int c) {
    int cur = 0, most = 0;
    for (int i = 0; i < schedule_num_ops(s); i++) {
        PipeOp op = schedule_op(s, r, i);
        if (op.chunk != c) continue;
        cur += op.forward ? 1 : -1;
        if (cur > most) most = cur;
    }
    return most > 0 ? most : 1;
}
