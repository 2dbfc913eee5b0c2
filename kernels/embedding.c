/* embedding.c: CPU reference of the token embedding (kernels/embedding.h). */
#include "kernels/embedding.h"

void embedding_forward_cpu(float *out, const int32_t *tokens, const float *wte, int N, int C)
{
    for (int t = 0; t < N; t++) {
        if (tokens[t] < 0) memset(out + (size_t)t * C, 0, sizeof(float) * (size_t)C);
        else memcpy(out + (size_t)t * C, wte + (size_t)tokens[t] * C, sizeof(float) * (size_t)C);
    }
}

void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tokens, int N, int C)
{
    for (int t = 0; t < N; t++) {
        if (tokens[t] < 0) continue;
        float *row = dwte + (size_t)tokens[t] * C;
        for (int c = 0; c < C; c++) row[c] += dout[(size_t)t * C + c];
    }
}
