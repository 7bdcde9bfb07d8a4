/* core/cuda/cuda_vit_desc.h: the CUDA ViT's plain-C face (no project headers, so core/cuda/cuda_vit.cu reads
 * none of the C-only headers): the descriptor cuda_vit.c fills from a CPU ViT + AdapterSet, and the calls on
 * a built CudaVit. Users include core/cuda/cuda_vit.h. */
#ifndef CORE_CUDA_CUDA_VIT_DESC_H
#define CORE_CUDA_CUDA_VIT_DESC_H
#include <stddef.h>
#include <stdio.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudaVit CudaVit;

/* Copy a batch to the device: img (B, C, H, W) f32 host (stored bf16), labels (B) host. B <= max_batch. */
void cuda_vit_set_batch(CudaVit *g, const float *img, const int *labels, int B);
/* One training step on the current batch at learning rate lr (asynchronous). */
void cuda_vit_step(CudaVit *g, float lr);
/* Forward and loss only, on the current batch (asynchronous). */
void cuda_vit_forward(CudaVit *g);
/* Waits; the mean loss computed by the last step or forward. */
float cuda_vit_loss(CudaVit *g);
/* Waits; logits (B, K) of the last step or forward, as f32 on the host. */
void cuda_vit_logits(CudaVit *g, float *logits);
/* Waits; writes the trainable tensors (adapters, head if trainable) back into the host tensors the CudaVit
 * was created from. */
void cuda_vit_download(CudaVit *g);
/* Device bytes held: parameters (frozen bf16 + trainable f32 / bf16 + grads + AdamW state); activations arena. */
size_t cuda_vit_param_bytes(const CudaVit *g);
size_t cuda_vit_arena_bytes(const CudaVit *g);
void cuda_vit_free(CudaVit *g);
/* Per-phase device times (events between phases; costs a sync per step while on). on = 1 starts (and clears)
 * the tally, 0 stops; print writes the mean per step by phase. */
void cuda_vit_profile(CudaVit *g, int on);
void cuda_vit_profile_print(CudaVit *g, FILE *f);

#define CUDA_VIT_MAX_LORA 3
typedef struct CvLora {
    int row0, m, r; /* rows [row0, row0+m) of the fused qkv output */
    float scale;
    int tA, tB;     /* indices into CvDesc.train */
} CvLora;
typedef struct CvBlock {
    const float *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    CvLora lora[CUDA_VIT_MAX_LORA];
    int n_lora;
} CvBlock;
typedef struct CvTrain {
    float *host; /* the host tensor (uploaded at create, written by download) */
    long n;
    int decay;   /* AdamW weight decay applies */
} CvTrain;
typedef struct CvDesc {
    int img, in_ch, patch, D, depth, heads, H, K, pool, max_batch;
    float eps;
    const float *patch_w, *patch_b, *cls, *pos, *norm_w, *norm_b, *head_w, *head_b;
    int head_w_t, head_b_t; /* indices into train, or -1 when the head is frozen */
    CvBlock *blocks;
    CvTrain *train;
    int n_train;
    float beta1, beta2, eps_adam, weight_decay;
} CvDesc;
/* Builds from a descriptor (host tensors f32; copied, the descriptor need not outlive the call except the
 * CvTrain host pointers); NULL with a message in err (>= 256 bytes) on failure. */
CudaVit *cuda_vit_create_desc(const CvDesc *d, char *err);

#ifdef __cplusplus
}
#endif
#endif
