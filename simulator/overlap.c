/* overlap.c: what overlapping communication with compute costs.
 *
 * When `comm` seconds of communication run concurrently with `work` seconds
 * of compute, and the communication kernels occupy the fraction f of the
 * SMs, compute runs at (1 - f) of its speed while they overlap:
 *   comm <  work/(1-f):  compute ends at work + comm*f   -> added comm*f
 *   comm >= work/(1-f):  everything ends at comm          -> added comm-work
 *   added = max(comm * f, comm - work)       (continuous at the boundary)
 *
 * SM fractions (defaults):
 *  - NCCL collectives (gradient reduce-scatter, parameter all-gather,
 *    all-to-all overlapped with other work): 16 CTAs, one per channel
 *    (NCCL uses 16-32 channels on NVLink+IB systems; we take the low end
 *    because Megatron runs with CUDA_DEVICE_MAX_CONNECTIONS=1 and NCCL's
 *    default channel count for inter-node collectives), 16/132 on H100.
 *  - TP communication overlap (Transformer Engine userbuffers): pipelined
 *    reduce-scatter overlap uses num_sm = 16 by default and ring-exchange
 *    all-gather uses copy engines; we charge 8 SMs on average, 8/132.
 */
#include "sim_internal.h"

#define NCCL_OVERLAP_SMS 16.0
#define TP_OVERLAP_SMS 8.0

double overlap_added(double comm, double work, double sm_frac) {
    if (comm <= 0) return 0;
    if (work < 0) work = 0;
    double a = comm * sm_frac, b = comm - work;
    return a > b ? a : b;
}

double overlap_sm_frac_nccl(const SimHw *hw) { return NCCL_OVERLAP_SMS / hw->sms; }
double overlap_sm_frac_tp(const SimHw *hw) { return TP_OVERLAP_SMS / hw->sms; }
