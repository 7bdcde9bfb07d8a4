/* core/cpu/attention.c: loops parallel over (batch, head); each (b,h) is independent, so results do not
 * depend on the thread count. Small T (tiny ViT: 17 tokens) makes plain loops beat per-head GEMM calls.
 * Dot products are `omp simd` reductions: vectorized, in a fixed (lane-wise) order, so still deterministic. */
#include "attention.h"

#include <math.h>

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH, int causal) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (long)b * T * C3;
            float *A = att + ((long)b * NH + h) * T * T;
            for (int t = 0; t < T; t++) {
                const float *q = base + (long)t * C3 + h * hs;
                float *row = A + (long)t * T;
                int tmax = causal ? t + 1 : T;
                float mx = -INFINITY;
                for (int s = 0; s < tmax; s++) {
                    const float *k = base + (long)s * C3 + C + h * hs;
                    float d = 0;
#pragma omp simd reduction(+ : d)
                    for (int i = 0; i < hs; i++) d += q[i] * k[i];
                    d *= scale;
                    row[s] = d;
                    if (d > mx) mx = d;
                }
                float sum = 0;
                for (int s = 0; s < tmax; s++) {
                    row[s] = expf(row[s] - mx);
                    sum += row[s];
                }
                float inv = 1.0f / sum;
                for (int s = 0; s < tmax; s++) row[s] *= inv;
                for (int s = tmax; s < T; s++) row[s] = 0.0f;
                float *o = out + ((long)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int s = 0; s < tmax; s++) {
                    const float *v = base + (long)s * C3 + 2 * C + h * hs;
                    float a = row[s];
                    for (int i = 0; i < hs; i++) o[i] += a * v[i];
                }
            }
        }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int C,
                        int NH, int causal) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (long)b * T * C3;
            float *dbase = dqkv + (long)b * T * C3;
            const float *A = att + ((long)b * NH + h) * T * T;
            float datt[T];
            for (int t = 0; t < T; t++) {
                const float *row = A + (long)t * T;
                const float *dy = dout + ((long)b * T + t) * C + h * hs;
                int tmax = causal ? t + 1 : T;
                /* datt[s] = dy . v_s ; dv_s += att[t,s] dy */
                float dot = 0;
                for (int s = 0; s < tmax; s++) {
                    const float *v = base + (long)s * C3 + 2 * C + h * hs;
                    float *dv = dbase + (long)s * C3 + 2 * C + h * hs;
                    float d = 0, a = row[s];
#pragma omp simd reduction(+ : d)
                    for (int i = 0; i < hs; i++) {
                        d += dy[i] * v[i];
                        dv[i] += a * dy[i];
                    }
                    datt[s] = d;
                    dot += a * d;
                }
                /* softmax backward: dpre = att * (datt - sum(att * datt)), then through q.k * scale */
                const float *q = base + (long)t * C3 + h * hs;
                float *dq = dbase + (long)t * C3 + h * hs;
                for (int s = 0; s < tmax; s++) {
                    float dp = row[s] * (datt[s] - dot) * scale;
                    const float *k = base + (long)s * C3 + C + h * hs;
                    float *dk = dbase + (long)s * C3 + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dp * k[i];
                        dk[i] += dp * q[i];
                    }
                }
            }
        }
}
