/* datasets/imageset.c */
#include "imageset.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

void imageset_from_idx(ImageSet *s, const IdxSet *idx, float mean, float std) {
    s->n = idx->n;
    s->C = 1;
    s->H = idx->rows;
    s->W = idx->cols;
    s->K = FASHION_MNIST_CLASSES;
    size_t px = (size_t)idx->rows * idx->cols, total = (size_t)idx->n * px;
    s->x = xmalloc(total * sizeof(float));
    s->y = xmalloc((size_t)idx->n * sizeof(int));
    float a = 1.0f / (255.0f * std), b = -mean / std;
    for (size_t i = 0; i < total; i++) s->x[i] = idx->images[i] * a + b;
    for (int i = 0; i < idx->n; i++) s->y[i] = idx->labels[i];
}

void idx_pixel_stats(const IdxSet *idx, float *mean, float *std) {
    size_t total = (size_t)idx->n * idx->rows * idx->cols;
    double s = 0, s2 = 0;
    for (size_t i = 0; i < total; i++) {
        double v = idx->images[i] / 255.0;
        s += v;
        s2 += v * v;
    }
    double m = s / (double)total;
    *mean = (float)m;
    *std = (float)sqrt(s2 / (double)total - m * m);
}

void imageset_channel_stats(const ImageSet *s, float *mean, float *std) {
    size_t plane = (size_t)s->H * s->W;
    for (int c = 0; c < s->C; c++) {
        double a = 0, a2 = 0;
        for (int i = 0; i < s->n; i++) {
            const float *p = s->x + ((size_t)i * s->C + c) * plane;
            for (size_t k = 0; k < plane; k++) {
                a += p[k];
                a2 += (double)p[k] * p[k];
            }
        }
        double cnt = (double)s->n * (double)plane, m = cnt > 0 ? a / cnt : 0, v = cnt > 0 ? a2 / cnt - m * m : 0;
        mean[c] = (float)m;
        std[c] = (float)sqrt(v > 0 ? v : 0);
    }
}

void imageset_normalize(ImageSet *s, const float *mean, const float *std) {
    size_t plane = (size_t)s->H * s->W;
    for (int c = 0; c < s->C; c++) ASSERT(std[c] > 0);
#pragma omp parallel for schedule(static) if (s->n > 64)
    for (int i = 0; i < s->n; i++)
        for (int c = 0; c < s->C; c++) {
            float *p = s->x + ((size_t)i * s->C + c) * plane, m = mean[c], inv = 1.0f / std[c];
            for (size_t k = 0; k < plane; k++) p[k] = (p[k] - m) * inv;
        }
}

ImageSet imageset_head(const ImageSet *s, int n) {
    ImageSet v = *s;
    v.n = MIN(n, s->n);
    return v;
}

void imageset_batch(float *xb, int *yb, const ImageSet *s, const int *idx, int B, int hflip, uint64_t seed,
                    uint64_t stream) {
    size_t per = (size_t)s->C * s->H * s->W;
#pragma omp parallel for schedule(static) if (B > 32)
    for (int i = 0; i < B; i++) {
        const float *src = s->x + (size_t)idx[i] * per;
        float *dst = xb + (size_t)i * per;
        yb[i] = s->y[idx[i]];
        if (hflip && rng_uniform(seed, stream, (uint64_t)idx[i]) < 0.5f) {
            for (int r = 0; r < s->C * s->H; r++)
                for (int c = 0; c < s->W; c++) dst[(size_t)r * s->W + c] = src[(size_t)r * s->W + s->W - 1 - c];
        } else {
            memcpy(dst, src, per * sizeof(float));
        }
    }
}

void imageset_free(ImageSet *s) {
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}
