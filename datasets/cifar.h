/* datasets/cifar.h: CIFAR-10 in its binary release (cifar-10-batches-bin): data_batch_1.bin .. data_batch_5.bin
 * (training, 50000) and test_batch.bin (10000); each record is 1 label byte (0..9) + 3072 pixel bytes (the R,
 * G and B planes of a 32x32 image, rows top to bottom). Files are untrusted: the size must be a whole number
 * of records, every label < 10; errors name the file and the record. Images go through the shared
 * preprocessing (datasets/resize.h): channels and bicubic resize to C x H x W, float in [0, 1]. */
#ifndef DATASETS_CIFAR_H
#define DATASETS_CIFAR_H
#include "core/common.h"
#include "datasets/imageset.h"

#define CIFAR10_CLASSES 10
#define CIFAR_RECORD (1 + 3 * 32 * 32)

/* dir: the folder with the .bin files, or one holding cifar-10-batches-bin/. train != 0: the five
 * data_batch files (those present must be 1..k without gaps; at least data_batch_1.bin), else test_batch.bin.
 * limit > 0: only the first `limit` records. On failure *out is zeroed. */
int cifar10_load(ImageSet *out, const char *dir, int train, int C, int H, int W, long limit, Error *err);
#endif
