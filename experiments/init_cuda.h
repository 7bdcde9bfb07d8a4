/* experiments/init_cuda.h: the initializers' data passes on the GPU (methods/init_data.h: InitAccel).
 * init_input_stats and init_full_grads then run the model on the GPU (core/cuda/cuda_vit.h: bf16 activations,
 * f32 accumulation) and hand the initializers only what they need: per batch the (n, n) moments of each slot's
 * input, or the averaged (m, n) full-weight gradients, never the (N, n) activations. The initializers' own
 * linear algebra stays on the host.
 * init_cuda_accel returns the accelerator when the run's device setting is auto or cuda, this build has CUDA, a
 * GPU is present and the model is a ViT; else NULL. It creates the CUDA context (so a run's init time does not
 * count it; PEFT's timing likewise starts with the model on the GPU). A pass runs on the GPU when every adapter
 * sits on a block's attn.qkv (q | k | v). Each pass uploads the model as it is at that moment (one CudaVit per pass, freed after it): the adapters ride
 * along when the GPU step supports their kind, and are left out when their contribution is zero (LoRA-XS at
 * R = 0, any kind whose delta_weight is 0); otherwise the pass runs on the CPU (a note on stderr says why). */
#ifndef EXPERIMENTS_INIT_CUDA_H
#define EXPERIMENTS_INIT_CUDA_H
#include <stddef.h>

#include "core/model.h"
#include "methods/init_data.h"

const InitAccel *init_cuda_accel(const char *device, const Model *m);
/* The most device memory one GPU pass held since the last reset (weights, activations for the init batch,
 * accumulators; not the CUDA context): the runner records it as the result init_gpu_bytes. */
size_t init_cuda_peak_bytes(int reset);
#endif
