/* dispatcher.c: host-side bookkeeping of the all-to-all token dispatcher
 * (see dispatcher.h for the three steps). */
#include "executor/dispatcher.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/moe_permute.h"

int dispatch_capacity(int T, int k, int E, double capacity_factor)
{
    if (capacity_factor <= 0) return 0;
    /* Megatron-Core get_capacity: ceil(tokens * topk / num_experts * cf) */
    int cap = (int)ceil((double)T * k / E * capacity_factor - 1e-9);
    return cap < 1 ? 1 : cap;
}

int dispatch_plan_init(DispatchPlan *p, int T, int k, int E, int ep, int etp,
                       double capacity_factor)
{
    memset(p, 0, sizeof *p);
    p->T = T; p->k = k; p->E = E; p->ep = ep; p->etp = etp; p->El = E / ep;
    p->capacity = dispatch_capacity(T, k, E, capacity_factor);
    /* most rows this rank can own after the ETP gather: every pair of every
     * rank of the ETP x EP block (dropless), or capacity rows per expert */
    int max_rows = p->capacity > 0 ? p->capacity * p->El * ep * etp : T * k * ep * etp;
    p->row_of = malloc(sizeof(int32_t) * (size_t)T * k);
    p->expert_rows = malloc(sizeof(int32_t) * (size_t)E);
    p->send_counts = calloc((size_t)ep * 4, sizeof(size_t));
    p->recv_expert_rows = calloc((size_t)etp * E, sizeof(int32_t));
    p->group_rows = calloc((size_t)p->El, sizeof(int32_t));
    p->sort_cap = max_rows > 0 ? max_rows : 1;
    p->sort_src = malloc(sizeof(int32_t) * (size_t)p->sort_cap);
    if (!p->row_of || !p->expert_rows || !p->send_counts || !p->recv_expert_rows ||
        !p->group_rows || !p->sort_src) {
        dispatch_plan_free(p);
        return -1;
    }
    p->send_displs = p->send_counts + ep;
    p->recv_counts = p->send_counts + 2 * ep;
    p->recv_displs = p->send_counts + 3 * ep;
    return 0;
}

void dispatch_plan_free(DispatchPlan *p)
{
    free(p->row_of); free(p->expert_rows); free(p->send_counts);
    free(p->recv_expert_rows); free(p->group_rows); free(p->sort_src);
    memset(p, 0, sizeof *p);
}

int dispatch_row_map(int32_t *row_of, int32_t *kept_rows, const int32_t *topk_idx, int T, int k,
                     int E, int capacity)
{
    int kept = moe_plan_cpu(row_of, kept_rows, topk_idx, T, k, E, capacity);
    if (kept < 0) return -1;
    if (capacity > 0) {
        /* pad every expert to exactly `capacity` rows: expert e owns rows
         * [e*cap, (e+1)*cap); kept pairs keep their rank inside the expert */
        int start = 0;
        int32_t *first = malloc(sizeof(int32_t) * (size_t)E);
        if (!first) return -1;
        for (int e = 0; e < E; e++) { first[e] = start; start += kept_rows[e]; }
        for (int i = 0; i < T * k; i++) {
            int r = row_of[i];
            if (r < 0) continue;
            int e = topk_idx[i];
            row_of[i] = e * capacity + (r - first[e]);
        }
        free(first);
    }
    return 0;
}

int dispatch_plan_local(DispatchPlan *p, const int32_t *topk_idx)
{
    if (dispatch_row_map(p->row_of, p->expert_rows, topk_idx, p->T, p->k, p->E, p->capacity))
        return -1;
    dispatch_plan_counts(p, p->expert_rows);
    return 0;
}

void dispatch_plan_counts(DispatchPlan *p, const int32_t *kept_rows)
{
    int kept = 0;
    for (int e = 0; e < p->E; e++) kept += kept_rows[e];
    p->dropped = p->T * p->k - kept;
    for (int e = 0; e < p->E; e++) p->expert_rows[e] = p->capacity > 0 ? p->capacity : kept_rows[e];
    p->send_rows = 0;
    for (int r = 0; r < p->ep; r++) {
        size_t n = 0;
        for (int e = 0; e < p->El; e++) n += (size_t)p->expert_rows[r * p->El + e];
        p->send_counts[r] = n;
        p->send_displs[r] = (size_t)p->send_rows;
        p->send_rows += (int)n;
    }
}

int dispatch_plan_finish(DispatchPlan *p, int etp_rank, int pad_align)
{
    int ep = p->ep, El = p->El, etp = p->etp;
    const int32_t *c = p->recv_expert_rows;   /* [etp][ep][El] */
    p->pad_rows = 0;
    for (int q = 0; q < etp; q++) {
        int n = 0;
        for (int i = 0; i < ep * El; i++) n += c[(size_t)q * ep * El + i];
        if (n > p->pad_rows) p->pad_rows = n;
        if (q == etp_rank) p->recv_rows = n;
    }
    size_t off = 0;
    for (int s = 0; s < ep; s++) {
        size_t n = 0;
        for (int e = 0; e < El; e++) n += (size_t)c[((size_t)etp_rank * ep + s) * El + e];
        p->recv_counts[s] = n;
        p->recv_displs[s] = off;
        off += n;
    }
    /* start row of block (q, s, e) inside the gathered [etp][pad_rows] buffer */
    p->rows = 0;
    for (int e = 0; e < El; e++) {
        int before = p->rows;
        for (int q = 0; q < etp; q++) {
            int base = q * p->pad_rows;
            for (int s = 0; s < ep; s++) {
                /* rows of (q, s, e') for e' < e come first inside (q, s) */
                int start = base;
                for (int s2 = 0; s2 < s; s2++)
                    for (int e2 = 0; e2 < El; e2++)
                        start += c[((size_t)q * ep + s2) * El + e2];
                for (int e2 = 0; e2 < e; e2++) start += c[((size_t)q * ep + s) * El + e2];
                int n = c[((size_t)q * ep + s) * El + e];
                for (int i = 0; i < n; i++) p->sort_src[p->rows++] = start + i;
            }
        }
        p->group_rows[e] = p->rows - before;
    }
    p->real_rows = p->rows;
    p->padded = 0;
    if (pad_align <= 0 || El < 2 || p->rows == 0) return 0;
    long padded = 0;
    for (int e = 0; e < El; e++)
        padded += ((long)p->group_rows[e] + pad_align - 1) / pad_align * pad_align;
    if ((padded - p->rows) * DISPATCH_PAD_WASTE > p->rows) return 0;
    if (padded > p->sort_cap) {
        int32_t *grown = realloc(p->sort_src, sizeof(int32_t) * (size_t)padded);
        if (!grown) return -1;
        p->sort_src = grown;
        p->sort_cap = (int)padded;
    }
    /* spread the groups from the back (each moves right, never over an
     * entry not yet moved); the new rows of a group are -1 */
    int end = p->rows;
    long at = padded;
    for (int e = El - 1; e >= 0; e--) {
        int n = p->group_rows[e];
        int size = (n + pad_align - 1) / pad_align * pad_align;
        end -= n;
        at -= size;
        int32_t *dst = p->sort_src + at;
        memmove(dst, p->sort_src + end, sizeof(int32_t) * (size_t)n);
        for (int i = n; i < size; i++) dst[i] = -1;
        p->group_rows[e] = size;
    }
    p->rows = (int)padded;
    p->padded = 1;
    return 0;
}
