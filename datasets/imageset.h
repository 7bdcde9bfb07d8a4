/* datasets/imageset.h: an in-memory image classification set (n, C, H, W), normalized, plus batch gathering
 * with the augmentations the papers use on small images (random horizontal flip). Augmentation draws are
 * counter-based (seed, stream, sample index), so a batch is reproducible.
 * Storage: floats (x), or bytes (u8) for image-file datasets, 4x less memory (a VTAB-1k test split at 224 px:
 * 3.3 GB instead of 13). A byte b of channel c reads as (b * (1/255) - mean[c]) * inv_std[c], the same float
 * operations in the same order as converting to floats and then normalizing, so both give the same bits.
 * Read samples through imageset_batch / imageset_rows / imageset_pixel, never x directly. */
#ifndef DATASETS_IMAGESET_H
#define DATASETS_IMAGESET_H
#include <stdint.h>

#include "core/common.h"
#include "idx.h"

typedef struct ImageSet {
    int n, C, H, W, K;          /* samples, channels, height, width, classes */
    float *x;                   /* (n, C, H, W) normalized floats, or NULL when u8 holds the set */
    uint8_t *u8;                /* (n, C, H, W) bytes, or NULL */
    float mean[3], inv_std[3];  /* u8 only: the normalization applied when a byte is read */
    int *y;                     /* (n) */
} ImageSet;

/* An empty byte-stored set of n samples (u8 and y allocated, not filled; mean 0, inv_std 1). */
void imageset_alloc_u8(ImageSet *s, int n, int C, int H, int W, int K);
/* The value of sample i, channel c, pixel p (p = row * W + col) as the model sees it. */
static inline float imageset_pixel(const ImageSet *s, int i, int c, long p) {
    size_t k = ((size_t)i * s->C + c) * (size_t)s->H * s->W + (size_t)p;
    return s->x ? s->x[k] : (s->u8[k] * (1.0f / 255.0f) - s->mean[c]) * s->inv_std[c];
}
/* Samples first..first+B as contiguous (B, C, H, W) floats: a pointer into x, or buf (B * C * H * W floats)
 * filled from u8. */
const float *imageset_rows(const ImageSet *s, int first, int B, float *buf);

/* Convert u8 IDX images to floats (x / 255 - mean) / std; mean/std are the caller's (the training
 * split's statistics, so train and test share them). */
void imageset_from_idx(ImageSet *s, const IdxSet *idx, float mean, float std);
/* Mean and standard deviation of all pixels / 255 (double accumulation). */
void idx_pixel_stats(const IdxSet *idx, float *mean, float *std);
/* Per-channel mean and standard deviation of the set's values (C values each; double accumulation). */
void imageset_channel_stats(const ImageSet *s, float *mean, float *std);
/* In place: x[c] = (x[c] - mean[c]) / std[c] for every sample and channel c (C values each). A byte-stored set
 * records it (composed with an earlier normalization; the first one is exact). */
void imageset_normalize(ImageSet *s, const float *mean, const float *std);
/* A view of the first n samples (shares memory; do not free it). */
ImageSet imageset_head(const ImageSet *s, int n);
/* xb (B, C, H, W), yb (B) = samples idx[0..B); hflip: flip sample i when U(seed, stream, idx[i]) < 0.5. */
void imageset_batch(float *xb, int *yb, const ImageSet *s, const int *idx, int B, int hflip, uint64_t seed,
                    uint64_t stream);
void imageset_free(ImageSet *s);
#endif
