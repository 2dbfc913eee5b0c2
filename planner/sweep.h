/* sweep.h: what-if studies: change one parameter of the model, cluster or
 * training configuration, then re-run the search (or simulate a fixed plan)
 * at each value; write the table as CSV/JSON and plot it with gnuplot. */
#ifndef MOEPLAN_SWEEP_H
#define MOEPLAN_SWEEP_H

#include <stdbool.h>
#include <stdio.h>

#include "search.h"

typedef enum {
    SWEEP_GPUS = 0, SWEEP_SEQ, SWEEP_GBS, SWEEP_NVLINK_BW, SWEEP_IB_BW, SWEEP_NICS_PER_NODE,
    SWEEP_GPUS_PER_NODE, SWEEP_PEAK_TFLOPS, SWEEP_HBM_GIB, SWEEP_EXPERTS, SWEEP_TOP_K,
    SWEEP_EXPERT_FFN, SWEEP_GRANULARITY, SWEEP_IMBALANCE, SWEEP_CAPACITY_FACTOR, SWEEP_PARAM_COUNT
} SweepParam;

const char *sweep_param_name(SweepParam k);
/* units of the values on the command line, for the table and the plot */
const char *sweep_param_unit(SweepParam k);
int sweep_param_parse(const char *s, SweepParam *out);

/* p = orig with parameter k set to v:
 *   gpus, seq, gbs; nvlink-bw GB/s per GPU one direction (achievable bus
 *   bandwidth scaled by the same factor); ib-bw Gb/s per NIC (same);
 *   nics-per-node; gpus-per-node = the NVLink domain (node and domain size);
 *   peak-tflops dense BF16 (FP8 scaled alike); hbm-gib; experts, top-k,
 *   expert-ffn; granularity g: experts x g, top-k x g, expert FFN / g
 *   (equal active and total parameters); imbalance; capacity-factor
 *   (0 = dropless).  tokens_per_batch > 0 sets gbs = tokens / seq (context
 *   scaling at constant tokens per batch).  err: "--vary: reason". */
int sweep_apply(const Plan *orig, SweepParam k, double v, long long tokens_per_batch, Plan *p, MpError *err);

/* A 2-D sweep (--vary k1=... --vary2 k2=...): p = orig with k1 set to v1,
 * then k2 set to v2 (sweep_apply twice).  err: "--vary: ..." or
 * "--vary2: ...". */
int sweep_apply2(const Plan *orig, SweepParam k1, double v1, SweepParam k2, double v2, long long tokens_per_batch,
                 Plan *p, MpError *err);

/* Two keys that cannot be swept together: 0, or -1 with err
 * "--vary2: ...": the same key twice, or granularity with experts, top-k or
 * expert-ffn (granularity sets all three). */
int sweep_check_pair(SweepParam k1, SweepParam k2, MpError *err);

typedef struct {
    double value;
    bool has_value2;            /* a point of a 2-D sweep */
    double value2;              /* the value of the second key (has_value2) */
    bool ok;                    /* a plan was found (search) / fits (fixed) */
    char note[160];             /* why not, when !ok */
    ScoredPlan best;
    bool has_coupled;
    ScoredPlan coupled;         /* best coupled plan (search only) */
    long long enumerated, simulated;
    double seconds;
} SweepPoint;

/* Runs one point: search (fixed == false) or simulate base as given. */
int sweep_point(const Plan *p, const SearchConstraints *c, const SearchOptions *o, bool fixed,
                SweepPoint *out, MpError *err);

/* CSV: the key's column (and the second key's, when k2 is not NULL: a 2-D
 * sweep whose points carry value2), then ok, mfu, ... (docs/planner.md). */
int sweep_write_csv(const char *path, SweepParam k, const SweepParam *k2, const SweepPoint *pts, int n, MpError *err);

/* Draws MFU and step time against the parameter (and labels each point
 * with its mapping) with gnuplot; .svg or .png by extension (sweep_plot.c
 * says why nothing from the path or the title can become a gnuplot
 * command).  Written through core/outfile.h. */
int sweep_plot(const char *path, const char *title, SweepParam k, const SweepPoint *pts, int n,
               bool fixed, MpError *err);
/* The plan label of the plot's table: "TP2 CP1 PP8v2 DP8 / ETP1 EP16 EDP1 mbs1, recompute none"
 * (the VPP number after "v" when VPP > 1). */
void sweep_plot_label(const Candidate *c, char *buf, size_t len);
/* Pixel height of the picture for n swept values (the table grows). */
int sweep_plot_height(int n);
/* Writes the whole gnuplot script (terminal line term) to g; returns the
 * number of points with a plan (0: nothing to draw).  Exposed for tests. */
int sweep_plot_script(FILE *g, const char *term, const char *title, SweepParam k, const SweepPoint *pts, int n,
                      bool fixed);
/* 0 when an executable gnuplot is on PATH; else one line saying so. */
int sweep_plot_available(MpError *err);
/* The title as it reaches gnuplot: characters outside letters, digits and
 * " .,:()/+=-_" become '?'. */
void sweep_plot_title_sanitize(const char *in, char *out, size_t cap);

/* ---- the heat map of a 2-D sweep (sweep_heatmap.c) ----
 * pts: n1 x n2 points, row-major (pts[i * n2 + j] has k1 = vals1[i] and
 * k2 = vals2[j]).  Rows (the first key) run down the picture in the order
 * given, columns (the second key) across; each cell is coloured by the MFU
 * of its plan, shows the MFU and a short mapping; a cell without a plan is
 * hatched grey and says why. */
typedef struct {
    SweepParam k1, k2;
    const double *vals1, *vals2;
    int n1, n2;
    const SweepPoint *pts;
    bool fixed;
} SweepGrid;

/* Pixel size of the picture for an n1 x n2 grid. */
void sweep_heatmap_size(int n1, int n2, int *width, int *height);
/* The short mapping of a cell: "TP2 CP1 PP8v2 EP16" (ETPn added when ETP > 1). */
void sweep_heatmap_cell_label(const Candidate *c, char *buf, size_t len);
/* Writes the whole gnuplot script; returns the number of cells with a plan. */
int sweep_heatmap_script(FILE *g, const char *term, const char *title, const SweepGrid *grid);
/* Draws the heat map to path (.png or .svg) through core/gnuplot.h. */
int sweep_heatmap(const char *path, const char *title, const SweepGrid *grid, MpError *err);

#endif
