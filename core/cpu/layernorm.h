/* core/cpu/layernorm.h: y = (x - mean) / sqrt(var + eps) * w + b over the last axis (biased variance). */
#ifndef CORE_CPU_LAYERNORM_H
#define CORE_CPU_LAYERNORM_H

/* out (N,C); mean (N), rstd (N) are saved for backward; inp (N,C), w (C), b (C). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                       int N, int C, float eps);
/* ACCUMULATES into dinp (N,C), dw, db (C); dw/db NULL when frozen, dinp NULL when not wanted. */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C);
#endif
