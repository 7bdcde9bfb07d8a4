/* experiments/task.h: a run's data from its config (`dataset:`, docs/data.md). Loaders:
 *   fashion_mnist  IDX files (dataset.path); a fixed transform turns it into another task (rot90, vflip,
 *                  invert); normalized by the training split's pixel statistics (after the transform).
 *   vtab           a VTAB-1k folder: dataset.root, .task, .split (train800val200), .eval_split (test).
 *   mini_vtab      the local stand-in suite, generated into dataset.root (runs/data/mini-vtab) when missing
 *                  (gen_seed, gen_size; Fashion-MNIST from dataset.path), then loaded as vtab.
 *   cifar10        the binary CIFAR-10 files in dataset.root.
 * Image-file datasets are converted to the backbone's in_ch and resized (bicubic, PIL-exact) to its
 * resolution, then normalized by dataset.normalize (vtab: imagenet; others: dataset). train_n / test_n load
 * only the first N list lines (VTAB) or records (CIFAR). A task with more classes than the backbone's
 * n_classes is an error naming the key to set. Loaded sets are cached per process, so the cells of a grid
 * decode the files once. */
#ifndef EXPERIMENTS_TASK_H
#define EXPERIMENTS_TASK_H
#include "config.h"
#include "datasets/imageset.h"

/* train/test are views into the cache (do not free). Errors name the config key and the file. */
int task_load(ImageSet *train, ImageSet *test, const CfgNode *cfg, Error *err);
void task_cache_free(void);
#endif
