/* pipeline_split.c: see pipeline_split.h.
 *
 * The integer program.  Megatron expresses a split as (first, middle, last)
 * with first + (PP-2)*middle + last = L, so the program chooses among those
 * splits directly:
 *   x_j in {0,1}, one per split j = (first_j, middle_j) with last_j >= min
 *   sum_j x_j = 1                                       exactly one split
 *   sum_j time_s(j) x_j <= T          for every stage s  (T continuous)
 *   sum_j mem_s(j)  x_j <= capacity   for every stage s
 *   minimise T,
 * where time_s(j) and mem_s(j) are stage s's exact time and memory under
 * split j, summed over its own layers (dense and MoE layers differ, stage 0
 * adds the embedding, the last stage the output layer and loss, memory adds
 * the stage's in-flight activations).  A first version placed each layer on a
 * stage with L*PP "staircase" binaries; it was exact too but needed 42 s of
 * branch and bound for 56 layers on 32 stages, where this one, with at most
 * L^2/(PP-2) columns and 2*PP+1 rows, takes milliseconds.
 */
#include "pipeline_split.h"

#include <glpk.h>
#include <stdbool.h>
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
    for (int i = 0; i < p->layers; i++)
        if (!isfinite(p->layer_time[i]) || p->layer_time[i] < 0)
            return mp_fail(err, "layer_time: layer %d is %g (must be finite and >= 0)", i, p->layer_time[i]);
    if (!isfinite(p->first_extra_time) || !isfinite(p->last_extra_time))
        return mp_fail(err, "first/last_extra_time: must be finite");
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

/* Time and memory of every stage of one split (first, middle, last). */
static void split_stages(const PipeSplitProblem *p, int first, int middle, int last, double *time, double *mem) {
    int P = p->stages, begin = 0;
    for (int s = 0; s < P; s++) {
        int n = s == 0 ? first : (s == P - 1 ? last : middle);
        time[s] = stage_time(p, s, begin, begin + n);
        mem[s] = stage_memory(p, s, begin, begin + n);
        begin += n;
    }
}

int pipe_split_solve(const PipeSplitProblem *p, PipeSplit *out, MpError *err) {
    if (check_problem(p, err)) return -1;
    int L = p->layers, P = p->stages, minl = p->min_layers_per_stage < 1 ? 1 : p->min_layers_per_stage;
    /* Columns: one binary x_j per split Megatron can express, j = (first,
     * middle) with last = L - first - (P-2)*middle >= minl, then T. */
    int npairs = 0;
    int *pf = malloc(sizeof(int) * (size_t)(L + 1) * (size_t)(L + 1));
    int *pm = malloc(sizeof(int) * (size_t)(L + 1) * (size_t)(L + 1));
    double *time = malloc(sizeof(double) * (size_t)P), *mem = malloc(sizeof(double) * (size_t)P);
    if (!pf || !pm || !time || !mem) {
        free(pf); free(pm); free(time); free(mem);
        return mp_fail(err, "pipeline split: out of memory");
    }
    for (int first = minl; first <= L; first++) {
        int mid_max = P > 2 ? (L - first - minl) / (P - 2) : 0;
        for (int middle = P > 2 ? minl : 0; middle <= mid_max; middle++) {
            if (L - first - (P - 2) * middle < minl) continue;
            pf[npairs] = first;
            pm[npairs] = middle;
            npairs++;
        }
    }
    glp_term_out(GLP_OFF);
    glp_prob *lp = glp_create_prob();
    glp_set_obj_dir(lp, GLP_MIN);
    int colT = npairs + 1;
    glp_add_cols(lp, npairs + 1);
    for (int j = 1; j <= npairs; j++) glp_set_col_kind(lp, j, GLP_BV);
    glp_set_col_bnds(lp, colT, GLP_LO, 0, 0);
    glp_set_obj_coef(lp, colT, 1.0);
    /* Rows: 1 convexity + P time + P memory; the time/memory coefficients of
     * column j are those of split j's stage s (exact, from the layer lists). */
    bool memory_rows = p->stage_capacity > 0;
    int rows = 1 + P + (memory_rows ? P : 0);
    glp_add_rows(lp, rows);
    glp_set_row_bnds(lp, 1, GLP_FX, 1, 1);                      /* sum_j x_j = 1 */
    for (int s = 0; s < P; s++) {
        glp_set_row_bnds(lp, 2 + s, GLP_UP, 0, 0);              /* sum_j time_s(j) x_j - T <= 0 */
        if (memory_rows) glp_set_row_bnds(lp, 2 + P + s, GLP_UP, 0, p->stage_capacity); /* sum_j mem_s(j) x_j <= cap */
    }
    int *ia = malloc(sizeof(int) * (size_t)(npairs * (size_t)rows + P + 1));
    int *ja = malloc(sizeof(int) * (size_t)(npairs * (size_t)rows + P + 1));
    double *ar = malloc(sizeof(double) * (size_t)(npairs * (size_t)rows + P + 1));
    if (!ia || !ja || !ar) {
        free(ia); free(ja); free(ar); free(pf); free(pm); free(time); free(mem);
        glp_delete_prob(lp);
        return mp_fail(err, "pipeline split: out of memory");
    }
    /* GLPK asserts (and aborts the process) on some badly scaled matrices,
     * e.g. with subnormal coefficients: every time is scaled by the largest
     * stage time and every memory by the capacity, so the coefficients are
     * O(1); a relative size below 1e-12 is dropped (it cannot change the
     * optimum), and a non-finite figure is an error, not a matrix entry. */
    double tmax = 0;
    for (int j = 0; j < npairs; j++) {
        split_stages(p, pf[j], pm[j], L - pf[j] - (P - 2) * pm[j], time, mem);
        for (int s = 0; s < P; s++) {
            if (!isfinite(time[s]) || !isfinite(mem[s]) || time[s] < 0 || mem[s] < 0) {
                free(ia); free(ja); free(ar); free(pf); free(pm); free(time); free(mem);
                glp_delete_prob(lp);
                return mp_fail(err, "pipeline split: a stage time or memory is not a finite non-negative number");
            }
            if (time[s] > tmax) tmax = time[s];
        }
    }
    double tscale = tmax > 0 ? 1.0 / tmax : 1.0, mscale = memory_rows ? 1.0 / p->stage_capacity : 1.0;
    if (memory_rows)
        for (int s = 0; s < P; s++) glp_set_row_bnds(lp, 2 + P + s, GLP_UP, 0, 1.0);
    int nz = 0;
    for (int j = 0; j < npairs; j++) {
        int last = L - pf[j] - (P - 2) * pm[j];
        split_stages(p, pf[j], pm[j], last, time, mem);
        nz++; ia[nz] = 1; ja[nz] = j + 1; ar[nz] = 1.0;
        for (int s = 0; s < P; s++) {
            double t = time[s] * tscale, m = mem[s] * mscale;
            if (t > 1e-12) { nz++; ia[nz] = 2 + s; ja[nz] = j + 1; ar[nz] = t; }
            if (memory_rows && m > 1e-12) { nz++; ia[nz] = 2 + P + s; ja[nz] = j + 1; ar[nz] = m; }
        }
    }
    for (int s = 0; s < P; s++) { nz++; ia[nz] = 2 + s; ja[nz] = colT; ar[nz] = -1.0; }
    glp_load_matrix(lp, nz, ia, ja, ar);
    free(ia); free(ja); free(ar);

    glp_iocp parm;
    glp_init_iocp(&parm);
    parm.presolve = GLP_ON;
    parm.msg_lev = GLP_MSG_OFF;
    int rc = npairs > 0 ? glp_intopt(lp, &parm) : GLP_ENOPFS;
    int status = npairs > 0 ? glp_mip_status(lp) : GLP_NOFEAS;
    int ok = rc == 0 && status == GLP_OPT;
    if (ok) {
        int j = 0;
        while (j < npairs && glp_mip_col_val(lp, j + 1) < 0.5) j++;
        ok = j < npairs;
        if (ok) {
            out->first = pf[j];
            out->middle = pm[j];
            out->last = L - pf[j] - (P - 2) * pm[j];
            int fits;
            out->slowest_stage_time = pipe_split_eval(p, out->first, out->middle, out->last, &fits);
        }
    }
    free(pf); free(pm); free(time); free(mem);
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
