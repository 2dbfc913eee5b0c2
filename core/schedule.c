/* schedule.c: see schedule.h. */
#include "schedule.h"

int schedule_num_ops(const PipeSchedule *s) { return 2 * s->m * s->vpp; }

int schedule_inflight(const PipeSchedule *s, int r) {
    int total = s->m * s->vpp, w = schedule_warmup(s, r) + 1;
    return w < total ? w : total;
}
