/* core/cuda/cuda_vit.h: the ViT LoRA training step on the GPU (C API). Built from a CPU ViT (core/vit.h) with
 * LoRA adapters attached (methods/lora.c, AdapterSet): the frozen backbone is uploaded once as bf16; the
 * trainable tensors (every LoRA A and B, and the head's weight and bias when `head.*` is trainable) get f32
 * master copies, f32 gradients and AdamW state on the device, plus the bf16 copies the GEMMs read. A step is
 * forward, softmax cross-entropy (mean over the batch), backward to the trainable tensors only (frozen
 * weights cost no weight-gradient GEMM; backward stops below the lowest adapted block), AdamW; it is queued
 * asynchronously, nothing is copied to the host unless asked (cuda_vit_loss, cuda_vit_download).
 * Supported today: adapters of kind "lora" on blocks.i.attn.qkv:q|k|v (any subset, any rank), head trainable
 * or frozen, every other backbone tensor frozen, AdamW (decay_all or per-tensor decay) with no gradient
 * clipping, label smoothing; anything else is refused at create with a message naming it. All device memory is allocated at
 * create (activations in one arena sized for max_batch), so steps never allocate.
 * The calls on a built CudaVit (set_batch, step, loss, download, ...) are in cuda_vit_desc.h. */
#ifndef CORE_CUDA_CUDA_VIT_H
#define CORE_CUDA_CUDA_VIT_H
#include "core/adapter.h"
#include "core/common.h"
#include "core/optim.h"
#include "core/vit.h"
#include "cuda_vit_desc.h"

/* NULL with err filled when the configuration is not supported or there is no GPU. The CudaVit keeps
 * pointers to the host tensors of m and ad (cuda_vit_download writes them): keep both alive. */
CudaVit *cuda_vit_create(const ViT *m, const AdapterSet *ad, int max_batch, const OptConfig *oc, Error *err);
/* The same for the runner: the optimizer's config, its step count and AdamW state (uploaded: a resumed run
 * continues exactly; cuda_vit_download_optim writes them back for a checkpoint) and the gradient buffers
 * (cuda_vit_download_grads) come from opt, whose sets must include m's and ad's ParamSets. */
CudaVit *cuda_vit_create_opt(const ViT *m, const AdapterSet *ad, int max_batch, const Optimizer *opt,
                             float label_smoothing, Error *err);
/* For the initializers' data passes (cuda_vit_input_moments, cuda_vit_qkv_grads): the model as it is, the
 * adapters included (with_adapters = 1: they must be what cuda_vit_create accepts) or left out (0: the caller
 * knows their contribution is zero, e.g. LoRA-XS adapters at R = 0), every backbone tensor but the head frozen.
 * infer_only = 1: forward passes only (cuda_vit_input_moments), the blocks sharing two sets of activation
 * buffers (ViT-B/16 at batch 32: ~0.2 GB instead of ~1.3 GB); a step or cuda_vit_qkv_grads then aborts. */
CudaVit *cuda_vit_create_init(const ViT *m, const AdapterSet *ad, int with_adapters, int infer_only, int max_batch,
                              float label_smoothing, Error *err);
/* 0 when cuda_vit_create would accept this model + adapters + optimizer (touches no GPU); else -1 with err
 * naming what the GPU step does not support. */
int cuda_vit_check(const ViT *m, const AdapterSet *ad, const OptConfig *oc, Error *err);
#endif
