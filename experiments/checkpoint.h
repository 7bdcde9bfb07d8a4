/* experiments/checkpoint.h: everything a run needs to resume bit for bit, in one safetensors file
 * (written atomically: a kill leaves the previous checkpoint or the new one, never half of one):
 *   model.<name>      every backbone parameter (initializers may have changed W0)
 *   adapter.<name>    every adapter tensor
 *   opt.m.<s>.<name>, opt.v.<s>.<name>   optimizer state of each trainable view (s = 0 model, 1 adapters)
 *   metadata: step, optimizer t, epoch loss sum / batches, train seconds (as exact decimal text).
 * The RNG needs no state: every draw is a function of (seed, stream, index). */
#ifndef EXPERIMENTS_CHECKPOINT_H
#define EXPERIMENTS_CHECKPOINT_H
#include "train.h"

int ckpt_save(const char *path, const Model *m, const AdapterSet *ad, const Optimizer *opt, const TrainState *st,
              Error *err);
/* Restores into an already built model / adapter set / optimizer of the same config. Every tensor is checked
 * (name, size) before anything is copied; a mismatch is an error naming the file and tensor. */
int ckpt_load(const char *path, Model *m, AdapterSet *ad, Optimizer *opt, TrainState *st, Error *err);
#endif
