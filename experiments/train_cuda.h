/* experiments/train_cuda.h: the runner's `device:` switch and the training loop on the GPU.
 * train_pick_device decides where a run trains: `cpu`; `cuda` (an error naming what is unsupported and the
 * fix when the GPU step cannot run it); `auto` (the default: the GPU when this build has CUDA, a GPU is
 * present and the run is one the GPU step supports, else the CPU; a one-line note says why when a GPU is
 * present but not used). The GPU step (core/cuda/cuda_vit.h) supports: a ViT backbone, frozen except the
 * head; adapters of kind lora (rsLoRA included) on blocks.i.attn.qkv:q|k|v; AdamW without gradient clipping;
 * any schedule, warmup, label smoothing, hflip, batch. The initializer runs before (its data passes on the GPU:
 * experiments/init_cuda.h; its linear algebra on the CPU); the
 * adapters, the head and the (possibly initializer-changed) frozen weights are uploaded when training starts.
 * train_classifier_cuda is train_classifier (train.h) on the GPU, the same hooks, data order, schedule and
 * checkpoints (the trainable tensors and AdamW state are downloaded into m, ad and opt for every checkpoint and
 * at the end, so a CUDA run resumes exactly, on either device). Evaluation runs on the GPU in batches of the
 * training batch. With data parallelism (experiments/dp.h) rank 0 drives and the other ranks follow. */
#ifndef EXPERIMENTS_TRAIN_CUDA_H
#define EXPERIMENTS_TRAIN_CUDA_H
#include "train.h"

/* device: "auto" | "cpu" | "cuda". Returns 1 (GPU), 0 (CPU; note filled when auto fell back with a GPU
 * present), or -1 with err (cuda asked for and not possible, or data parallelism on an unsupported run). */
int train_pick_device(const char *device, const Model *m, const AdapterSet *ad, const TrainConfig *c, char *note,
                      size_t note_cap, Error *err);
/* "NVIDIA H200, 132 SMs, ..." after a GPU run started (else "cpu"). */
const char *train_device_name(void);
/* As train_classifier (train.h), on the GPU. */
int train_classifier_cuda(Model *m, AdapterSet *ad, Optimizer *opt, TrainState *state, const ImageSet *train,
                          const ImageSet *test, const TrainConfig *c, const TrainHooks *hooks, TrainResult *res,
                          Error *err);
#endif
