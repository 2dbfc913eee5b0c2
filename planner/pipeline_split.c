/* pipeline_split.c: see pipeline_split.h.
 *
 * The integer program ("staircase" form, tighter than plain assignment):
 *   y[i][s] in {0,1}, i = 0..L-1, s = 0..PP-1: 1 when layer i sits on a stage <= s.
 *     y[i][PP-1] = 1                      every layer is placed
 *     y[i][s] <= y[i][s+1]                (stage <= s) implies (stage <= s+1)
 *     y[i+1][s] <= y[i][s]                layers are contiguous, in model order
 *   x[i][s] = y[i][s] - y[i][s-1]         (y[i][-1] = 0): layer i is on stage s
 *   n_s = sum_i x[i][s] >= min_layers     stage s is not empty
 *   n_s = n_1 for s = 2..PP-2             Megatron: middle stages are equal
 *   sum_i t_i x[i][s] + extra_time_s <= T                     (T continuous)
 *   sum_i (mem_i + inflight_s * act_i) x[i][s] + extra_mem_s <= capacity
 *   minimise T.
 * Monotonicity in i and s together make each stage a contiguous block that
 * follows the previous one, which is exactly a pipeline split.
 */
#include "pipeline_split.h"

#include <glpk.h>
#include <math.h>
#include <stdlib.h>

static double stage_time(const PipeSplitProblem *p, int s, int begin, int end) {
    double t = 0;
    for (int i = begin; i < end; i++) t += p->layer_time[i];
    if (s == 0) t += p->first_extra_time;
    if (s == p->stages - 1) t += p->last_extra_time;
    return t;
}

static double stage_memory(const PipeSplitProblem *p, int s, int begin, int end) {
    double inflight = p->stage_inflight ? p->stage_inflight[s] : 1.0, m = 0;
    for (int i = begin; i < end; i++) {
        if (p->layer_memory) m += p->layer_memory[i];
        if (p->layer_activation) m += inflight * p->layer_activation[i];
    }
    if (s == 0) m += p->first_extra_memory;
    if (s == p->stages - 1) m += p->last_extra_memory;
    return m;
}

double pipe_split_eval(const PipeSplitProblem *p, int first, int middle, int last, int *fits) {
    int P = p->stages, begin = 0;
    double worst = 0;
    *fits = 1;
    for (int s = 0; s < P; s++) {
        int n = s == 0 ? first : (s == P - 1 ? last : middle);
        double t = stage_time(p, s, begin, begin + n);
        if (t > worst) worst = t;
        if (p->stage_capacity > 0 && stage_memory(p, s, begin, begin + n) > p->stage_capacity) *fits = 0;
        begin += n;
    }
    return worst;
}

static int check_problem(const PipeSplitProblem *p, MpError *err) {
    if (p->stages < 2 || p->stages > PIPE_SPLIT_MAX_STAGES)
        return mp_fail(err, "pp: uneven split needs 2..%d stages, got %d", PIPE_SPLIT_MAX_STAGES, p->stages);
    if (p->layers < 1 || p->layers > PIPE_SPLIT_MAX_LAYERS)
        return mp_fail(err, "num_layers: uneven split handles 1..%d layers, got %d", PIPE_SPLIT_MAX_LAYERS, p->layers);
    int minl = p->min_layers_per_stage < 1 ? 1 : p->min_layers_per_stage;
    if ((long)minl * p->stages > p->layers)
        return mp_fail(err, "pp: %d stages of at least %d layers need more than %d layers", p->stages, minl, p->layers);
    if (!p->layer_time) return mp_fail(err, "layer_time: missing");
    return 0;
}

int pipe_split_brute_force(const PipeSplitProblem *p, PipeSplit *out, MpError *err) {
    if (check_problem(p, err)) return -1;
    int L = p->layers, P = p->stages, minl = p->min_layers_per_stage < 1 ? 1 : p->min_layers_per_stage;
    int found = 0;
    for (int first = minl; first <= L; first++) {
        int mid_max = P > 2 ? (L - first - minl) / (P - 2) : 0;
        for (int middle = P > 2 ? minl : 0; middle <= mid_max; middle++) {
            int last = L - first - (P - 2) * middle;
            if (last < minl) continue;
            int fits;
            double t = pipe_split_eval(p, first, middle, last, &fits);
            if (!fits) continue;
            if (!found || t < out->slowest_stage_time) {
                out->first = first; out->middle = middle; out->last = last;
                out->slowest_stage_time = t;
                found = 1;
            }
        }
    }
    if (!found) return mp_fail(err, "pp: no split of %d layers over %d stages fits in memory", L, P);
    return 0;
}

int pipe_split_solve(const PipeSplitProblem *p, PipeSplit *out, MpError *err) {
    if (check_problem(p, err)) return -1;
    int L = p->layers, P = p->stages, minl = p->min_layers_per_stage < 1 ? 1 : p->min_layers_per_stage;
    glp_term_out(GLP_OFF);
    glp_prob *lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MIN);
    /* columns: y[i][s] at 1 + i*P + s, then T */
    int ny = L * P, colT = ny + 1;
    glp_add_cols(lp, ny + 1);
    for (int i = 0; i < L; i++)
        for (int s = 0; s < P; s++) {
            int c = 1 + i * P + s;
            glp_set_col_kind(lp, c, GLP_BV);
            if (s == P - 1) glp_set_col_bnds(lp, c, GLP_FX, 1, 1);
        }
    glp_set_col_bnds(lp, colT, GLP_LO, 0, 0);
    glp_set_obj_coef(lp, colT, 1.0);
    /* layer 0 starts stage 0 */
    glp_set_col_bnds(lp, 1, GLP_FX, 1, 1);

    /* Each row has at most 4L + 1 nonzeros (the equal-middle rows). */
    int cap = 4 * L + 2;
    int *ind = malloc(sizeof(int) * (size_t)(cap + 1));
    double *val = malloc(sizeof(double) * (size_t)(cap + 1));
    if (!ind || !val) { free(ind); free(val); glp_delete_prob(lp); return mp_fail(err, "pipeline split: out of memory"); }
#define Y(i, s) (1 + (i) * P + (s))
    /* monotone in s: y[i][s] - y[i][s+1] <= 0 */
    for (int i = 0; i < L; i++)
        for (int s = 0; s + 1 < P; s++) {
            int r = glp_add_rows(lp, 1);
            ind[1] = Y(i, s); val[1] = 1; ind[2] = Y(i, s + 1); val[2] = -1;
            glp_set_mat_row(lp, r, 2, ind, val);
            glp_set_row_bnds(lp, r, GLP_UP, 0, 0);
        }
    /* monotone in i: y[i+1][s] - y[i][s] <= 0 */
    for (int i = 0; i + 1 < L; i++)
        for (int s = 0; s + 1 < P; s++) {
            int r = glp_add_rows(lp, 1);
            ind[1] = Y(i + 1, s); val[1] = 1; ind[2] = Y(i, s); val[2] = -1;
            glp_set_mat_row(lp, r, 2, ind, val);
            glp_set_row_bnds(lp, r, GLP_UP, 0, 0);
        }
    /* Row helpers: a linear form sum_i w_i x[i][s] written in y variables. */
    for (int s = 0; s < P; s++) {
        double inflight = p->stage_inflight ? p->stage_inflight[s] : 1.0;
        double extra_t = (s == 0 ? p->first_extra_time : 0) + (s == P - 1 ? p->last_extra_time : 0);
        double extra_m = (s == 0 ? p->first_extra_memory : 0) + (s == P - 1 ? p->last_extra_memory : 0);
        for (int kind = 0; kind < 3; kind++) {   /* 0 count, 1 time, 2 memory */
            if (kind == 2 && p->stage_capacity <= 0) continue;
            int n = 0;
            for (int i = 0; i < L; i++) {
                double w = kind == 0 ? 1.0 : kind == 1 ? p->layer_time[i]
                         : (p->layer_memory ? p->layer_memory[i] : 0) + inflight * (p->layer_activation ? p->layer_activation[i] : 0);
                ind[++n] = Y(i, s); val[n] = w;
                if (s > 0) { ind[++n] = Y(i, s - 1); val[n] = -w; }
            }
            int r = glp_add_rows(lp, 1);
            if (kind == 1) { ind[++n] = colT; val[n] = -1; }
            glp_set_mat_row(lp, r, n, ind, val);
            if (kind == 0) glp_set_row_bnds(lp, r, GLP_LO, minl, 0);
            else if (kind == 1) glp_set_row_bnds(lp, r, GLP_UP, 0, -extra_t);
            else glp_set_row_bnds(lp, r, GLP_UP, 0, p->stage_capacity - extra_m);
        }
    }
    /* middle stages equal: n_s - n_1 = 0 for s = 2..P-2 */
    for (int s = 2; s <= P - 2; s++) {
        int n = 0;
        for (int i = 0; i < L; i++) {
            ind[++n] = Y(i, s); val[n] = 1;
            ind[++n] = Y(i, s - 1); val[n] = -1;
            /* minus n_1 = y[i][1] - y[i][0]; y[i][1] may coincide with y[i][s-1] when s == 2 */
            if (s - 1 == 1) { val[n] = -2; } else { ind[++n] = Y(i, 1); val[n] = -1; }
            ind[++n] = Y(i, 0); val[n] = 1;
        }
        int r = glp_add_rows(lp, 1);
        glp_set_mat_row(lp, r, n, ind, val);
        glp_set_row_bnds(lp, r, GLP_FX, 0, 0);
    }
    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    int rc = glp_intopt(lp, &parm);
    int status = glp_mip_status(lp);
    int ok = rc == 0 && status == GLP_OPT;
    if (ok) {
        int count[PIPE_SPLIT_MAX_STAGES] = {0};
        for (int i = 0; i < L; i++) {
            int stage = 0;
            while (stage < P && glp_mip_col_val(lp, Y(i, stage)) < 0.5) stage++;
            count[stage < P ? stage : P - 1]++;
        }
        out->first = count[0];
        out->last = count[P - 1];
        out->middle = P > 2 ? count[1] : 0;
        int fits;
        out->slowest_stage_time = pipe_split_eval(p, out->first, out->middle, out->last, &fits);
    }
#undef Y
    free(ind);
    free(val);
    glp_delete_prob(lp);
    if (!ok) {
        if (status == GLP_NOFEAS || rc == GLP_ENOPFS || rc == GLP_ENODFS)
            return mp_fail(err, "pp: no split of %d layers over %d stages fits in memory", L, P);
        return mp_fail(err, "pp: GLPK failed on the split of %d layers over %d stages (code %d)", L, P, rc);
    }
    /* Among equally slow splits prefer the even one (no extra flags needed). */
    if (L % P == 0) {
        int fits;
        double t = pipe_split_eval(p, L / P, P > 2 ? L / P : 0, L / P, &fits);
        if (fits && t <= out->slowest_stage_time * (1 + 1e-12)) {
            out->first = out->last = L / P;
            out->middle = P > 2 ? L / P : 0;
            out->slowest_stage_time = t;
        }
    }
    return 0;
}
