/* core/cpu/layernorm.c: statistics in double-free f32 two-pass form (as PyTorch's CPU kernel). */
#include "layernorm.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                       int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (long)i * C;
        float m = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + (long)i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    /* Parameter grads are reduced per thread then summed, so the result is the same whatever the
     * scheduling (static chunks per thread count: determinism holds for a fixed thread count). */
    int want_params = dw || db;
    int nt = omp_get_max_threads();
    float partial[nt][want_params ? 2 * C : 1];
    if (want_params) memset(partial, 0, sizeof partial);
#pragma omp parallel if ((long)N * C > 16384)
    {
        float *pw = want_params ? partial[omp_get_thread_num()] : NULL;
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (long)i * C, *dy = dout + (long)i * C;
            float m = mean[i], s = rstd[i];
            float sum_g = 0, sum_gx = 0; /* g = dy * w, xhat = (x - m) s */
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * s, g = dy[c] * w[c];
                sum_g += g;
                sum_gx += g * xh;
                if (pw) { pw[c] += dy[c] * xh; pw[C + c] += dy[c]; }
            }
            sum_g /= C;
            sum_gx /= C;
            if (dinp) {
                float *dx = dinp + (long)i * C;
                for (int c = 0; c < C; c++) {
                    float xh = (x[c] - m) * s;
                    dx[c] += s * (dy[c] * w[c] - sum_g - xh * sum_gx);
                }
            }
        }
    }
    if (want_params)
        for (int t = 0; t < nt; t++)
            for (int c = 0; c < C; c++) {
                if (dw) dw[c] += partial[t][c];
                if (db) db[c] += partial[t][C + c];
            }
}
