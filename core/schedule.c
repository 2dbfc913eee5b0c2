/* schedule.c: see schedule.h. */
#include "schedule.h"

int schedule_num_ops(const PipeSchedule *s) { return 2 * s->m * s->vpp; }

int schedule_warmup(const PipeSchedule *s, int r) {
    int total = s->m * s->vpp;
    int w = s->vpp == 1 ? s->pp - r - 1 : (s->pp - r - 1) * 2 + (s->vpp - 1) * s->pp;
    return w < total ? w : total;
}

int schedule_inflight(const PipeSchedule *s, int r) {
    int total = s->m * s->vpp, w = schedule_warmup(s, r) + 1;
    return w < total ? w : total;
}

PipeOp schedule_op(const PipeSchedule *s, int r, int idx) {
    int total = s->m * s->vpp, w = schedule_warmup(s, r);
    bool fwd;
    int k;   /* index of the op among the rank's ops of its direction */
    if (idx < w) {
        fwd = true;
        k = idx;
    } else {
        int j = idx - w, steady = total - w;
        if (j < 2 * steady) {
            fwd = (j % 2) == 0;
            k = fwd ? w + j / 2 : j / 2;
        } else {
            fwd = false;
            k = steady + (j - 2 * steady);
        }
    }
    int group = s->pp * s->vpp, in_group = k % group, c = in_group / s->pp;
    PipeOp op = {fwd, fwd ? c : s->vpp - 1 - c, (k / group) * s->pp + in_group % s->pp};
    return op;
}
