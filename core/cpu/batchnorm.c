/* core/cpu/batchnorm.c: one channel per OpenMP iteration (channels are independent); sums in double because
 * a channel can gather B*H*W = hundreds of thousands of values. */
#include "batchnorm.h"

#include <math.h>
#include <stddef.h>

#include "core/common.h"

BatchNormShape batchnorm_shape(int B, int C, int HW) {
    return (BatchNormShape){.B = B, .C = C, .HW = HW, .eps = 1e-5f, .momentum = 0.1f};
}

#define CHANNEL_PARALLEL_IF(s) if ((long)(s).B * (s).C * (s).HW > 32768)

/* Writes out = (x - mean) * rstd * w + b for channel c. */
static void normalize_channel(float *out, const float *inp, float mean, float rstd, float w, float b, int c,
                              BatchNormShape s) {
    float scale = rstd * w, shift = b - mean * scale;
    for (int n = 0; n < s.B; n++) {
        size_t off = ((size_t)n * s.C + c) * s.HW;
        for (int i = 0; i < s.HW; i++) out[off + i] = inp[off + i] * scale + shift;
    }
}

void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                             const float *inp, const float *weight, const float *bias, BatchNormShape s) {
    ASSERT(s.B > 0 && s.C > 0 && s.HW > 0);
    ASSERTF((long)s.B * s.HW > 1, "batchnorm: train mode needs more than one value per channel");
    ASSERT((running_mean == NULL) == (running_var == NULL));
    double N = (double)s.B * s.HW;
#pragma omp parallel for schedule(static) CHANNEL_PARALLEL_IF(s)
    for (int c = 0; c < s.C; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < s.B; n++) {
            const float *x = inp + ((size_t)n * s.C + c) * s.HW;
            for (int i = 0; i < s.HW; i++) sum += x[i];
        }
        double m = sum / N;
        for (int n = 0; n < s.B; n++) { /* two passes: no cancellation in E[x^2] - E[x]^2 */
            const float *x = inp + ((size_t)n * s.C + c) * s.HW;
            for (int i = 0; i < s.HW; i++) sq += (x[i] - m) * (x[i] - m);
        }
        double var = sq / N;
        mean[c] = (float)m;
        rstd[c] = (float)(1.0 / sqrt(var + s.eps));
        if (running_mean) {
            running_mean[c] = (float)((1.0 - s.momentum) * running_mean[c] + s.momentum * m);
            running_var[c] = (float)((1.0 - s.momentum) * running_var[c] + s.momentum * var * N / (N - 1.0));
        }
        normalize_channel(out, inp, mean[c], rstd[c], weight ? weight[c] : 1.0f, bias ? bias[c] : 0.0f, c, s);
    }
}

void batchnorm_forward_frozen(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, const float *running_mean, const float *running_var,
                              BatchNormShape s) {
    ASSERT(s.B > 0 && s.C > 0 && s.HW > 0);
#pragma omp parallel for schedule(static) CHANNEL_PARALLEL_IF(s)
    for (int c = 0; c < s.C; c++) {
        mean[c] = running_mean[c];
        rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + s.eps));
        normalize_channel(out, inp, mean[c], rstd[c], weight ? weight[c] : 1.0f, bias ? bias[c] : 0.0f, c, s);
    }
}

void batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int batch_stats,
                        BatchNormShape s) {
    ASSERT(s.B > 0 && s.C > 0 && s.HW > 0);
    if (!dinp && !dweight && !dbias) return;
    double N = (double)s.B * s.HW;
#pragma omp parallel for schedule(static) CHANNEL_PARALLEL_IF(s)
    for (int c = 0; c < s.C; c++) {
        float m = mean[c], r = rstd[c], w = weight ? weight[c] : 1.0f;
        double sum_dy = 0, sum_dy_xhat = 0;
        if (dweight || dbias || batch_stats)
            for (int n = 0; n < s.B; n++) {
                size_t off = ((size_t)n * s.C + c) * s.HW;
                for (int i = 0; i < s.HW; i++) {
                    sum_dy += dout[off + i];
                    sum_dy_xhat += dout[off + i] * ((inp[off + i] - m) * r);
                }
            }
        if (dbias) dbias[c] += (float)sum_dy;
        if (dweight) dweight[c] += (float)sum_dy_xhat;
        if (!dinp) continue;
        /* Train: dx = w rstd (dy - mean(dy) - xhat mean(dy xhat)) (the batch mean and variance depend on x).
         * Frozen: the statistics are constants, dx = w rstd dy. */
        float k = w * r;
        float a = batch_stats ? (float)(sum_dy / N) : 0.0f, bq = batch_stats ? (float)(sum_dy_xhat / N) : 0.0f;
        for (int n = 0; n < s.B; n++) {
            size_t off = ((size_t)n * s.C + c) * s.HW;
            for (int i = 0; i < s.HW; i++) {
                float xhat = (inp[off + i] - m) * r;
                dinp[off + i] += k * (dout[off + i] - a - xhat * bq);
            }
        }
    }
}
