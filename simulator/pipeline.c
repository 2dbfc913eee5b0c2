/* pipeline.c: the 1F1B and interleaved (virtual pipeline) schedules of
 * Megatron-LM, simulated event by event over the real per-stage times.
 *
 * The order of each rank's operations is core/schedule.c's (shared with the
 * executor).
 * An op starts when its rank is free and its input has arrived:
 *   forward (vs, i) needs forward (vs-1, i) + one P2P transfer,
 *   backward (vs, i) needs backward (vs+1, i) + one P2P transfer (the last
 *   virtual stage needs its own forward).
 * Plain 1F1B sends synchronously (Megatron's blocking send/recv pairs), so
 * the sender is also busy for the transfer; the interleaved schedule
 * overlaps P2P with compute (overlap_p2p_comm), the transfer only delays
 * the receiver.
 * Long schedules: at most PIPE_MAX_SLOTS (virtual stage, micro-batch)
 * slots are simulated; the remaining micro-batches are in the steady state
 * and add (m - m_sim) x the busiest rank's time per micro-batch (its forward
 * and backward of every chunk, plus its blocking transfers).
 */
#include <math.h>
#include <string.h>

#include "../core/schedule.h"
#include "sim_internal.h"

int pipeline_inflight(int pp, int vpp, int m, int rank) {
    PipeSchedule s = {pp, vpp, m};
    return schedule_inflight(&s, rank);
}

int pipeline_simulate(int pp, int vpp, int m, const double *fwd, const double *bwd, double p2p, bool blocking,
                      PipeResult *out, int trace_rank, PipeEvent *events, int max_events, int *num_events,
                      MpError *err) {
    if (pp < 1 || pp > SIM_MAX_STAGES) return mp_fail(err, "pp: %d outside 1..%d", pp, SIM_MAX_STAGES);
    if (vpp < 1 || pp * vpp > PIPE_MAX_VSTAGES) return mp_fail(err, "vpp: %d x pp %d exceeds %d virtual stages", vpp, pp, PIPE_MAX_VSTAGES);
    if (m < 1) return mp_fail(err, "gbs: fewer than one micro-batch per pipeline");
    if (vpp > 1 && m % pp != 0)
        return mp_fail(err, "vpp: the interleaved schedule needs micro-batches per pipeline (%d) divisible by pp (%d)", m, pp);
    int V = pp * vpp;
    /* micro-batches simulated */
    int m_sim = m;
    if ((long)V * m > PIPE_MAX_SLOTS) {
        m_sim = PIPE_MAX_SLOTS / V;
        if (vpp > 1) m_sim -= m_sim % pp;
        if (m_sim < 1 || (vpp > 1 && m_sim < pp))
            return mp_fail(err, "pp: %d x vpp %d too deep to simulate", pp, vpp);
    }
    PipeSchedule s = {pp, vpp, m_sim};
    double fdone[PIPE_MAX_SLOTS], bdone[PIPE_MAX_SLOTS];
    for (int i = 0; i < V * m_sim; i++) fdone[i] = bdone[i] = -1;
    int ptr[SIM_MAX_STAGES];
    PipeOp next[SIM_MAX_STAGES];   /* rank r's op at ptr[r], looked up once */
    double free_at[SIM_MAX_STAGES];
    int nops = schedule_num_ops(&s);
    for (int r = 0; r < pp; r++) {
        ptr[r] = 0;
        next[r] = schedule_op(&s, r, 0);
        free_at[r] = 0;
        out->rank_busy[r] = 0;
        out->rank_first_start[r] = -1;
        out->inflight_peak[r] = pipeline_inflight(pp, vpp, m_sim, r);
    }
    for (int c = 0; c < V; c++) out->chunk_last_bwd_end[c] = 0;
    int nev = 0;
    int remaining = pp;
    while (remaining > 0) {
        bool progress = false;
        for (int r = 0; r < pp; r++) {
            while (ptr[r] < nops) {
                PipeOp op = next[r];
                bool f = op.forward;
                int chunk = op.chunk, mb = op.microbatch;
                int vs = chunk * pp + r;
                double ready;
                bool sends;
                if (f) {
                    if (vs == 0) ready = 0;
                    else {
                        double d = fdone[(vs - 1) * m_sim + mb];
                        if (d < 0) break;
                        ready = d + (pp > 1 ? p2p : 0);
                    }
                    sends = vs < V - 1;
                } else {
                    if (vs == V - 1) ready = fdone[vs * m_sim + mb];
                    else {
                        double d = bdone[(vs + 1) * m_sim + mb];
                        if (d < 0) break;
                        ready = d + (pp > 1 ? p2p : 0);
                    }
                    sends = vs > 0;
                }
                double start = free_at[r] > ready ? free_at[r] : ready;
                double dur = f ? fwd[vs] : bwd[vs];
                double end = start + dur;
                if (f) fdone[vs * m_sim + mb] = end;
                else {
                    bdone[vs * m_sim + mb] = end;
                    out->chunk_last_bwd_end[vs] = end;
                }
                if (f && out->rank_first_start[r] < 0) out->rank_first_start[r] = start;
                free_at[r] = end + ((blocking && sends && pp > 1) ? p2p : 0);
                out->rank_busy[r] += dur;
                if (events && r == trace_rank && nev < max_events) {
                    events[nev].start = start;
                    events[nev].end = end;
                    events[nev].mb = mb;
                    events[nev].chunk = chunk;
                    events[nev].fwd = f;
                    nev++;
                }
                ptr[r]++;
                if (ptr[r] < nops) next[r] = schedule_op(&s, r, ptr[r]);
                progress = true;
                if (ptr[r] == nops) remaining--;
            }
        }
        if (!progress && remaining > 0) return mp_fail(err, "pp: pipeline schedule deadlocked (internal error)");
    }
    double makespan = 0;
    for (int r = 0; r < pp; r++) {
        out->rank_end[r] = free_at[r];
        if (free_at[r] > makespan) makespan = free_at[r];
    }
    if (m_sim < m) {
        /* steady-state extrapolation: the busiest rank's time per micro-batch */
        double period = 0;
        for (int r = 0; r < pp; r++) {
            double t = 0;
            for (int c = 0; c < vpp; c++) {
                int vs = c * pp + r;
                t += fwd[vs] + bwd[vs];
                if (blocking && pp > 1) t += (vs < V - 1 ? p2p : 0) + (vs > 0 ? p2p : 0);
            }
            if (t > period) period = t;
        }
        double extra = (m - m_sim) * period;
        makespan += extra;
        for (int r = 0; r < pp; r++) {
            out->rank_end[r] += extra;
            out->rank_busy[r] *= (double)m / m_sim;
        }
        for (int c = 0; c < V; c++) out->chunk_last_bwd_end[c] += extra;
    }
    out->makespan = makespan;
    out->simulated_microbatches = m_sim;
    if (num_events) *num_events = nev;
    return 0;
}
