/* adam.c: CPU reference of AdamW (kernels/adam.h). */
#include <math.h>

#include "kernels/adam.h"

void adam_update_cpu(float *param, float *m, float *v, const float *grad, size_t n,
                     const AdamParams *p)
{
    double bc1 = 1.0 - pow(p->beta1, p->step), bc2 = 1.0 - pow(p->beta2, p->step);
    for (size_t i = 0; i < n; i++) {
        double g = (double)grad[i] * p->grad_scale;
        double mi = p->beta1 * (double)m[i] + (1.0 - p->beta1) * g;
        double vi = p->beta2 * (double)v[i] + (1.0 - p->beta2) * g * g;
        m[i] = (float)mi;
        v[i] = (float)vi;
        double upd = (mi / bc1) / (sqrt(vi / bc2) + p->eps) + p->weight_decay * (double)param[i];
        param[i] = (float)(param[i] - p->lr * upd);
    }
}

double norm_squared_cpu(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
