/* experiments/task.h: a run's data from its config (`dataset:`): the loader, the subset sizes and a fixed
 * image transform that turns one dataset into another task (rot90, vflip, invert). Normalization uses the
 * training split's pixel statistics (after the transform). Loaded sets are cached per process, so the cells
 * of a grid load the files once. */
#ifndef EXPERIMENTS_TASK_H
#define EXPERIMENTS_TASK_H
#include "config.h"
#include "datasets/imageset.h"

/* train/test are views into the cache (do not free). Errors name the config key and the file. */
int task_load(ImageSet *train, ImageSet *test, const CfgNode *cfg, Error *err);
void task_cache_free(void);
#endif
