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

void imageset_alloc_u8(ImageSet *s, int n, int C, int H, int W, int K) {
    ASSERT(n >= 0 && C >= 1 && C <= 3 && H > 0 && W > 0);
    memset(s, 0, sizeof *s);
    s->n = n, s->C = C, s->H = H, s->W = W, s->K = K;
    s->u8 = xmalloc((size_t)(n > 0 ? n : 1) * C * H * W);
    s->y = xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    for (int c = 0; c < 3; c++) s->mean[c] = 0, s->inv_std[c] = 1;
}

/* Sample i as floats into dst (C, H, W), mirrored left-right when flip. */
static void sample_floats(float *dst, const ImageSet *s, int i, int flip) {
    size_t plane = (size_t)s->H * s->W, per = (size_t)s->C * plane;
    int W = s->W;
    if (s->x) {
        const float *src = s->x + (size_t)i * per;
        if (!flip) { memcpy(dst, src, per * sizeof(float)); return; }
        for (int r = 0; r < s->C * s->H; r++)
            for (int c = 0; c < W; c++) dst[(size_t)r * W + c] = src[(size_t)r * W + W - 1 - c];
        return;
    }
    const uint8_t *src = s->u8 + (size_t)i * per;
    for (int ch = 0; ch < s->C; ch++) {
        float m = s->mean[ch], inv = s->inv_std[ch];
        const uint8_t *sp = src + ch * plane;
        float *dp = dst + ch * plane;
        for (int r = 0; r < s->H; r++)
            for (int c = 0; c < W; c++)
                dp[(size_t)r * W + c] = (sp[(size_t)r * W + (flip ? W - 1 - c : c)] * (1.0f / 255.0f) - m) * inv;
    }
}

const float *imageset_rows(const ImageSet *s, int first, int B, float *buf) {
    ASSERT(first >= 0 && B >= 0 && first + B <= s->n);
    size_t per = (size_t)s->C * s->H * s->W;
    if (s->x) return s->x + (size_t)first * per;
    for (int i = 0; i < B; i++) sample_floats(buf + (size_t)i * per, s, first + i, 0);
    return buf;
}

void imageset_channel_stats(const ImageSet *s, float *mean, float *std) {
    size_t plane = (size_t)s->H * s->W;
    for (int c = 0; c < s->C; c++) {
        double a = 0, a2 = 0;
        for (int i = 0; i < s->n; i++) {
            for (size_t k = 0; k < plane; k++) {
                float v = imageset_pixel(s, i, c, (long)k);
                a += v;
                a2 += (double)v * v;
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
    if (!s->x) { /* bytes: (v - m) * inv with v = (b / 255 - m0) * inv0 is (b / 255 - (m0 + m / inv0)) * inv0 * inv */
        for (int c = 0; c < s->C; c++) {
            float inv = 1.0f / std[c];
            if (s->mean[c] == 0 && s->inv_std[c] == 1) s->mean[c] = mean[c], s->inv_std[c] = inv;
            else s->mean[c] += mean[c] / s->inv_std[c], s->inv_std[c] *= inv;
        }
        return;
    }
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
        yb[i] = s->y[idx[i]];
        sample_floats(xb + (size_t)i * per, s, idx[i], hflip && rng_uniform(seed, stream, (uint64_t)idx[i]) < 0.5f);
    }
}

void imageset_free(ImageSet *s) {
    free(s->x);
    free(s->u8);
    free(s->y);
    memset(s, 0, sizeof *s);
}
