/* methods/init_data.h: what data-driven initializers do with init batches, built on the engine's slot
 * capabilities (core/adapter.h). Both helpers leave the model as they found it (taps, grad_w cleared; no
 * parameter changed; gradients of trainable views zeroed).
 *   init_taps        forward over init batches; cb sees, per adapter, the slot input X (N, n) of each batch
 *                    (and the adapter's output slice of that forward).
 *   init_full_grads  G_i = the mean over init batches of dL/dW0 for each adapter's slice (m_i, n_i), L the
 *                    task's cross-entropy (mean over the batch), at the current weights.
 *   init_input_stats per batch, the second moments of every adapter slot's input (what EVA and CorDA need
 *                    of X; an accelerator computes them without handing X (N, n) to the host).
 * init_full_grads and init_input_stats run on ctx->accel when it is set (the GPU: the same quantities in
 * bf16 with f32 accumulation), else on the CPU model. */
#ifndef METHODS_INIT_DATA_H
#define METHODS_INIT_DATA_H
#include "init.h"

/* x: (N, n) inputs of adapter ai for this batch; z: (N, ldz) the slot's outputs, the adapter's columns start at
 * z + row0 (pre-activations: ABM). batch_index counts from 0. */
typedef void (*InitTapFn)(void *user, int ai, const float *x, const float *z, int ldz, int N, int batch_index);

/* Runs n_batches init batches (fewer if the data ends) through the model with taps on every adapter's slot.
 * Returns the number of batches run, or -1 with err (no data). */
int init_taps(InitContext *ctx, int n_batches, InitTapFn cb, void *user, Error *err);

/* G[i] (set->a[i].m x n, caller-allocated) = mean over n_batches of the full-weight gradient of adapter i's
 * rows. Returns batches used or -1. */
int init_full_grads(InitContext *ctx, int n_batches, float **G, Error *err);

/* Per batch, for adapter ai: S (n, n) = X^T X and c (n) = the column sums of X, X (N, n) the slot's input of
 * that batch (adapters on one slot get the same S, c); with per_sample_max each image's rows (N / B of them, a
 * ViT's tokens) are first divided by that image's max |x| (CorDA's covariance; an all-zero image stays 0).
 * S and c are only valid during the call. */
typedef void (*InitStatsFn)(void *user, int ai, const double *S, const double *c, long N, int batch_index);
/* Runs n_batches init batches (fewer if the data ends) and calls cb for every adapter after each batch.
 * Returns the number of batches run, or -1 with err. */
int init_input_stats(InitContext *ctx, int n_batches, int per_sample_max, InitStatsFn cb, void *user, Error *err);

/* An accelerator's versions of the data passes (same contracts as init_input_stats / init_full_grads; actx is
 * ctx->accel_ctx). A NULL entry: that pass runs on the CPU. */
typedef struct InitAccel {
    const char *name; /* "cuda" */
    int (*input_stats)(void *actx, InitContext *ctx, int n_batches, int per_sample_max, InitStatsFn cb, void *user,
                       Error *err);
    int (*full_grads)(void *actx, InitContext *ctx, int n_batches, float **G, Error *err);
    /* Optional. prepare makes ready what the initializer's first data pass needs (passes: its InitKind's
     * INIT_PASS_*), e.g. the model on the device with its kernels warmed up on a batch of zeros, so that the
     * init clock sees the pass's own cost (PEFT's is timed on a model already on the GPU, after a warm-up); the
     * runner records the prepare time apart (results.init_prepare_s). The first pass takes what was prepared
     * only if the backbone and adapters are unchanged since; release frees whatever was left unused. */
    void (*prepare)(void *actx, InitContext *ctx, unsigned passes);
    void (*release)(void *actx);
} InitAccel;
#endif
