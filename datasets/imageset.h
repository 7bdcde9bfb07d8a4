/* datasets/imageset.h: an in-memory image classification set as float tensors (n, C, H, W), normalized,
 * plus batch gathering with the augmentations the papers use on small images (random horizontal flip).
 * Augmentation draws are counter-based (seed, stream, sample index), so a batch is reproducible. */
#ifndef DATASETS_IMAGESET_H
#define DATASETS_IMAGESET_H
#include <stdint.h>

#include "core/common.h"
#include "idx.h"

typedef struct ImageSet {
    int n, C, H, W, K; /* samples, channels, height, width, classes */
    float *x;          /* (n, C, H, W) */
    int *y;            /* (n) */
} ImageSet;

/* Convert u8 IDX images to floats (x / 255 - mean) / std; mean/std are the caller's (the training
 * split's statistics, so train and test share them). */
void imageset_from_idx(ImageSet *s, const IdxSet *idx, float mean, float std);
/* Mean and standard deviation of all pixels / 255 (double accumulation). */
void idx_pixel_stats(const IdxSet *idx, float *mean, float *std);
/* Per-channel mean and standard deviation of s->x (C values each; double accumulation). */
void imageset_channel_stats(const ImageSet *s, float *mean, float *std);
/* In place: x[c] = (x[c] - mean[c]) / std[c] for every sample and channel c (C values each). */
void imageset_normalize(ImageSet *s, const float *mean, const float *std);
/* A view of the first n samples (shares memory; do not free it). */
ImageSet imageset_head(const ImageSet *s, int n);
/* xb (B, C, H, W), yb (B) = samples idx[0..B); hflip: flip sample i when U(seed, stream, idx[i]) < 0.5. */
void imageset_batch(float *xb, int *yb, const ImageSet *s, const int *idx, int B, int hflip, uint64_t seed,
                    uint64_t stream);
void imageset_free(ImageSet *s);
#endif
