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
/* Data parallelism and the runner (experiments/train_cuda.c):
 * grad_scale multiplies the loss gradient (default 1; data parallel over G ranks: 1/G, so the summed
 * gradients are the global batch's mean). The reduce hook (NULL: none) runs on the backend's stream after
 * backward, before AdamW, with the trainable gradients (n f32, contiguous) and the step's loss (1 f32, the
 * local batch's mean), both on the device: an all-reduce (sum) of both goes there (core/cuda/cuda_dp.h). */
void cuda_vit_set_grad_scale(CudaVit *g, float scale);
void cuda_vit_set_reduce(CudaVit *g, void (*fn)(void *ctx, float *grads, long n, float *loss), void *ctx);
/* on = 1: each step also computes the global L2 norm of the trainable gradients (after the reduce). */
void cuda_vit_set_grad_norm(CudaVit *g, int on);
/* Waits; the last step's loss (after the reduce: the sum over ranks) and gradient norm (0 unless on). */
void cuda_vit_stats(CudaVit *g, float *loss, float *grad_norm);
/* Waits; copies the trainable gradients of the last step into the CvTrain host_grad buffers (where set). */
void cuda_vit_download_grads(CudaVit *g);
/* Waits; copies AdamW's m and v into the CvTrain host_m / host_v buffers (where set); returns the steps taken. */
long cuda_vit_download_optim(CudaVit *g);
/* Calls fn on every device buffer that holds the model's state (frozen weights, trainable f32 masters, AdamW m
 * and v, the frozen head bias): a broadcast from rank 0 goes there. Then cuda_vit_state_changed(g, t) refreshes
 * the bf16 copies of the trainable tensors and sets AdamW's step count to t. */
void cuda_vit_each_state(CudaVit *g, void (*fn)(void *ctx, void *dev, size_t bytes), void *ctx);
void cuda_vit_state_changed(CudaVit *g, long t);

/* CUDA graphs (on by default; LORALAB_CUDA_GRAPH=0 in the environment turns them off at create): a batch
 * size's first cuda_vit_step runs eagerly, the second is captured as one graph (forward, backward, gradient
 * norm, AdamW) and later steps replay it, so a step costs one launch on the host. Steps run eagerly while the
 * profiler is on or a reduce hook is set; set_grad_scale / set_reduce / set_grad_norm drop the graphs. on = 0
 * drops them and runs every step eagerly (the same kernels: the results are identical). */
void cuda_vit_set_graph(CudaVit *g, int on);

/* Per-phase device times (events between phases; costs a sync per step while on). on = 1 starts (and clears)
 * the tally, 0 stops; print writes the mean per step by phase. */
void cuda_vit_profile(CudaVit *g, int on);
void cuda_vit_profile_print(CudaVit *g, FILE *f);

/* The initializers' data passes (methods/init_data.h on the GPU: experiments/init_cuda.c). mask (depth entries,
 * 1 = selected) picks blocks; the selected blocks are numbered k = 0, 1, ... in depth order. Neither changes the
 * model (the trainable gradients they leave behind are overwritten by the next step).
 * cuda_vit_input_moments: forward of the current batch; S gets, per selected block k, the (D+1, D+1) row-major
 * moments [X | 1]^T [X | 1] (f32 accumulation of bf16 products) of X (B T, D), the block's ln1 output (the
 * input of blocks.l.attn.qkv), each image's T rows first divided by their max |x| when per_sample_max:
 * S_k[:D, :D] = X^T X, S_k[D, :D] = the column sums, S_k[D][D] = B T. Waits. */
void cuda_vit_input_moments(CudaVit *g, const unsigned char *mask, int per_sample_max, float *S);
/* Forward, cross-entropy (the mean over the batch, label smoothing as configured) and backward of the current
 * batch, adding dL/dW (3D, D) of each selected block's qkv weight into a device accumulator (zeroed first when
 * reset, or when the selection changed). Asynchronous. */
void cuda_vit_qkv_grads(CudaVit *g, const unsigned char *mask, int reset);
/* Waits; scale times rows [row0, row0 + rows) of selected block l's accumulated dL/dW_qkv into out (rows, D). */
void cuda_vit_qkv_grads_download(CudaVit *g, int l, int row0, int rows, float scale, float *out);
/* Device bytes of those passes' accumulators (0 before the first pass). */
size_t cuda_vit_init_bytes(const CudaVit *g);

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
    float *host_grad, *host_m, *host_v; /* optional (NULL): its gradient and AdamW state on the host; m, v are
                                         * uploaded at create (a resumed run) and written by download_optim */
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
    float label_smoothing; /* of the cross-entropy (core/cpu/xent.h) */
    long adam_t;           /* AdamW steps already taken (a resumed run; with host_m / host_v) */
    int infer_only;        /* forward passes only (init statistics): blocks share two sets of activation buffers */
} CvDesc;
/* Builds from a descriptor (host tensors f32; copied, the descriptor need not outlive the call except the
 * CvTrain host pointers); NULL with a message in err (>= 256 bytes) on failure. */
CudaVit *cuda_vit_create_desc(const CvDesc *d, char *err);

#ifdef __cplusplus
}
#endif
#endif
