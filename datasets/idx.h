/* datasets/idx.h: the IDX format of MNIST / Fashion-MNIST, raw or gzipped (read through zlib, which passes
 * raw files through). Files are untrusted input: the magic (0x00000803 = u8, 3 dims for images; 0x00000801 =
 * u8, 1 dim for labels), every size (non-zero, total <= 1e9 bytes) and the exact length (no truncation, no
 * trailing bytes, intact gzip stream) are checked; an error names the file, what was expected and what was found:
 *   train-images-idx3-ubyte.gz: truncated: expected 47040016 bytes of data, found 1000016
 * (byte counts are of the decompressed file, header included). */
#ifndef DATASETS_IDX_H
#define DATASETS_IDX_H

#include "core/common.h"

#define FASHION_MNIST_CLASSES 10
#define FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    int n, rows, cols;
    uint8_t *images; /* (n, rows, cols) */
    uint8_t *labels; /* (n) */
} IdxSet;

/* *data (n, rows, cols) is malloc'ed (free()); on failure nothing is allocated and the outputs are untouched. */
int idx_load_images(uint8_t **data, int *n, int *rows, int *cols, const char *path, Error *err);
/* *labels (n) is malloc'ed (free()); values are not range-checked here (the caller knows its classes). */
int idx_load_labels(uint8_t **labels, int *n, const char *path, Error *err);

/* Loads <dir>/{train,t10k}-images-idx3-ubyte[.gz] and the matching labels (train != 0: the training split);
 * the .gz name is tried first. dir NULL -> $LORALAB_FASHION_MNIST, else FASHION_MNIST_DEFAULT_DIR.
 * Checks: labels count == images count, every label < FASHION_MNIST_CLASSES. The sizes are not forced to
 * 60000/10000 x 28 x 28, so small IDX files in the same layout load too (tests, subsets).
 * A missing folder or file names it and says how to get it (apt-get install dataset-fashion-mnist, or pass
 * the folder / set LORALAB_FASHION_MNIST). On failure *set is zeroed and nothing is leaked. */
int fashion_mnist_load(IdxSet *set, const char *dir, int train, Error *err);
/* Frees the arrays and zeroes *set (safe on a zeroed set). */
void idx_free(IdxSet *set);

#endif
