/* core/cuda/cuda_ops.h: the CUDA ops, with the CPU backend's contracts (the headers in core/cpu/): same argument order
 * (outputs, inputs, weights, sizes), same shapes, row-major. Device pointers only. Storage: activations and
 * frozen weights bf16; statistics, trainable parameters' gradients, optimizer state and logits f32; every
 * reduction and GEMM accumulates in f32 (cuBLASLt, CUBLAS_COMPUTE_32F). Backward ops ACCUMULATE into their
 * gradients like the CPU ones; where the CPU contract accumulates into a bf16 buffer, `accumulate` = 0
 * overwrites instead (one read less; the ViT step uses it where the CPU code would memset first).
 * All ops are asynchronous on the backend's stream (cuda_sync() waits). Tolerances against the CPU are in
 * tests/test_parity.c, op by op. */
#ifndef CORE_CUDA_OPS_H
#define CORE_CUDA_OPS_H
#include "cuda_backend.h"
#ifdef __cplusplus
extern "C" {
#endif

/* out (N,OC) = inp (N,IC) W^T (OC,IC) + bias (OC) [+ residual (N,OC)]; bias / residual may be NULL. The bias
 * is fused into the GEMM (cuBLASLt epilogue); the residual is the GEMM's C operand (beta 1), so a
 * pre-norm block's "x + proj(y)" costs no extra pass. residual may equal out. */
void cuda_linear_forward(bf16 *out, const bf16 *inp, const bf16 *weight, const bf16 *bias, const bf16 *residual,
                         int N, int IC, int OC);
/* The same with f32 output and f32 bias (the classifier head: logits stay f32 for the loss). */
void cuda_linear_forward_f32out(float *out, const bf16 *inp, const bf16 *weight, const float *bias, int N, int IC,
                                int OC);
/* dinp (N,IC) (+)= dout (N,OC) W; dweight (OC,IC) += dout^T inp (f32); dbias (OC) += column sums of dout (f32).
 * Any output may be NULL (not wanted: a frozen weight costs no weight-gradient GEMM). */
void cuda_linear_backward(bf16 *dinp, float *dweight, float *dbias, const bf16 *dout, const bf16 *inp,
                          const bf16 *weight, int N, int IC, int OC, int accumulate);

/* Like core/cpu/layernorm.h. mean, rstd (N) f32 saved for backward. */
void cuda_layernorm_forward(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *w, const bf16 *b, int N,
                            int C, float eps);
/* dinp (N,C) (+)= ...; dw, db (C) f32 ACCUMULATED (NULL when frozen); dinp NULL when not wanted. dinp may
 * alias nothing else. */
void cuda_layernorm_backward(bf16 *dinp, float *dw, float *db, const bf16 *dout, const bf16 *inp, const bf16 *w,
                             const float *mean, const float *rstd, int N, int C, int accumulate);

/* The same with a row stride for out (forward) / dout (backward) (ldo, ldd >= C): the ViT step's ln1 output
 * and its gradient carry the adapters' x A^T in columns C.. of the same rows. */
void cuda_layernorm_forward_ld(bf16 *out, int ldo, float *mean, float *rstd, const bf16 *inp, const bf16 *w,
                               const bf16 *b, int N, int C, float eps);
/* forward_ld that also writes columns C..ldo of each row: 0, and 1 at one_col (C <= one_col < ldo): the ViT step's
 * qkv GEMM reads its bias from that column of W_ext instead of a bias epilogue (docs/engine.md). */
void cuda_layernorm_forward_ext(bf16 *out, int ldo, float *mean, float *rstd, const bf16 *inp, const bf16 *w,
                                const bf16 *b, int N, int C, float eps, int one_col);
void cuda_layernorm_backward_ld(bf16 *dinp, float *dw, float *db, const bf16 *dout, int ldd, const bf16 *inp,
                                const bf16 *w, const float *mean, const float *rstd, int N, int C, int accumulate);

/* Exact-erf GELU (timm's nn.GELU). backward: dinp (+)= dout * gelu'(inp); dinp may equal dout when
 * accumulate = 0 (in place). */
void cuda_gelu_forward(bf16 *out, const bf16 *inp, long n);
void cuda_gelu_backward(bf16 *dinp, const bf16 *dout, const bf16 *inp, long n, int accumulate);
/* The erf inside: Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, as the CPU's; one exp shared by Phi and the
 * pdf). on = 1 (or LORALAB_GELU=erff in the environment) switches to libdevice's erff, the previous kernels'
 * math (tests compare both paths). */
void cuda_set_gelu_erff(int on);
/* out (n) = a + b; in-place safe. */
void cuda_add_forward(bf16 *out, const bf16 *a, const bf16 *b, long n);

/* Softmax cross-entropy with label smoothing (core/cpu/xent.h). logits (B,K) f32, labels (B) int on the device.
 * probs (B,K) f32; loss: one f32 on the device = the mean loss; correct (may be NULL): one int on the device =
 * argmax hits. backward WRITES dlogits (B,K) bf16 = scale (probs - target) / B. */
void cuda_xent_forward(float *probs, float *loss, int *correct, const float *logits, const int *labels, int B, int K,
                       float smoothing);
void cuda_xent_backward(bf16 *dlogits, const float *probs, const int *labels, int B, int K, float smoothing,
                        float scale);

/* AdamW (PyTorch's, as core/optim.c) on f32 master weights p (n) with f32 grad g and state m, v; p16 (may be
 * NULL) receives the bf16 copy the GEMMs read. bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. */
void cuda_adamw(float *p, bf16 *p16, float *m, float *v, const float *g, long n, float lr, float beta1, float beta2,
                float eps, float weight_decay, float bc1, float bc2);

/* The same with lr, bc1, bc2 in device memory (hyper[0..2]): what a captured CUDA graph of a step replays. */
void cuda_adamw_dev(float *p, bf16 *p16, float *m, float *v, const float *g, long n, const float *hyper, float beta1,
                    float beta2, float eps, float weight_decay);

/* LoRA (methods/lora.c) on a slice of a host linear's output. out points at the slice's first column, row
 * stride ldo (e.g. qkv + D for the k third of a (N,3D) qkv). forward: xa (N,r) = inp (N,n) A^T (r,n) is
 * WRITTEN (saved for backward); out[:, 0:m] += scale xa B^T (B (m,r)). */
void cuda_lora_forward(bf16 *out, int ldo, bf16 *xa, const bf16 *inp, const bf16 *A, const bf16 *B, int N, int n,
                       int m, int r, float scale);
/* dB (m,r) += scale dy^T xa; dxa (N,r) scratch = scale dy B; dA (r,n) += dxa^T inp; dinp (N,n) += dxa A (always
 * accumulates: it adds to the host linear's dinp). dy = dout (row stride ldo). dA, dB, dinp may be NULL. */
void cuda_lora_backward(bf16 *dinp, float *dA, float *dB, bf16 *dxa, const bf16 *dout, int ldo, const bf16 *inp,
                        const bf16 *xa, const bf16 *A, const bf16 *B, int N, int n, int m, int r, float scale);

/* LoRA B gradients without cuBLAS (core/cuda/cuda_lora_grad.cu): per job, dB (m,r) f32 row-major ACCUMULATED
 * dB[i r + c] += scale sum_t dy[t][i] xa[t][c], xa (BT,r) with row stride ldx (the adapter's first column, e.g.
 * xa_cat + col_j), dy (BT,m) with row stride ldy (e.g. dqkv + row0_j, ldy 3D). Several adapters over the same
 * BT rows (a block's q and v) go in one launch (+ one small reduction launch). Needs 1 <= r <= 64, ldx >= r,
 * m % 8 == 0, ldy % 8 == 0, dy 16-byte aligned, BT >= 1 (asserted); xa is fastest with r % 8 == 0, ldx % 8
 * == 0, 16-byte aligned. Deterministic: fixed-order f32 sums, no atomics (bits depend on BT only).
 * scratch: cuda_lora_db_scratch_bytes(BT_max, sum over the jobs of m r) bytes of device memory, enough for any
 * BT <= BT_max (f32 partials of <= 33 row chunks; ViT-B/16 q + v, r 8: 33 x 2 x 768 x 8 x 4 B = 1.6 MB), free
 * again when the call returns (stream order). Launched as programmatic dependent launches (PDL), which CUDA
 * graph capture keeps. H200, ViT-B/16 q + v, 12 blocks: 0.54 vs cuBLASLt's 0.67 ms at batch 256, 0.19 vs 0.27
 * at 64 (scripts/bench/bench_lora_db.cu). */
typedef struct {
    float *dB;      /* (m,r) */
    const bf16 *xa; /* (BT,r), row stride ldx */
    const bf16 *dy; /* (BT,m), row stride ldy */
    int m, r;
    float scale;
} LoraDbJob;
#define LORA_DB_MAX_JOBS 8
size_t cuda_lora_db_scratch_bytes(int BT, long mr_total);
void cuda_lora_db_jobs(const LoraDbJob *jobs, int n_jobs, int ldx, int ldy, int BT, float *scratch);
void cuda_lora_db(float *dB, const bf16 *xa, int ldx, const bf16 *dy, int ldy, int BT, int m, int r, float scale,
                  float *scratch);

/* Self-attention on timm's fused qkv (B,T,3C) (core/cpu/attention.h, not causal). Instead of saving the
 * (B,NH,T,T) probabilities, forward saves lse (B,NH,T) f32 (the softmax's log-sum-exp) and backward
 * recomputes them. Head size 64 and T <= 256 (ViT-B/16 at 224 px): fused flash-style kernels (mma.sync), no
 * T x T matrix in device memory at all (backward: one kernel per (image, head) for T <= 208,
 * LORALAB_ATTENTION=cluster: a cluster of 2 blocks per (image, head) splitting the keys instead (slower); two
 * kernels above 208, LORALAB_ATTENTION=twopass forces them); otherwise cuBLAS batched GEMMs + softmax kernels with the scores
 * in `scratch` for one call. LORALAB_ATTENTION=unfused forces the second path. scratch: cuda_attention_
 * scratch_bytes(B, T, C, NH) bytes. forward: out (B,T,C). backward: dqkv (B,T,3C) (+)= ... from dout (B,T,C). */
size_t cuda_attention_scratch_bytes(int B, int T, int C, int NH);
void cuda_attention_forward(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int C, int NH, void *scratch);
/* out: the forward's output, for the softmax backward's rowsum(dout * out) (fused path; NULL: recomputed by
 * running the forward again). */
void cuda_attention_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const bf16 *out, const float *lse, int B,
                             int T, int C, int NH, void *scratch, int accumulate);
/* Overrides LORALAB_ATTENTION for later calls: "unfused", "twopass", "cluster", anything else the default
 * ("onekernel"); NULL goes back to the environment's choice. Tests compare the paths in one process. */
void cuda_set_attention_mode(const char *mode);

/* ViT token plumbing (core/cpu/tokens.h), bf16. img (B,C,H,W) bf16. */
void cuda_patchify(bf16 *out, const bf16 *img, int B, int C, int H, int W, int p);
void cuda_tokens_forward(bf16 *x, const bf16 *pe, const bf16 *cls, const bf16 *pos, int B, int NP, int D);
/* pool: 0 CLS (out (B,D) = x[:,0]), 1 mean of the patch tokens. backward WRITES all of dx (B,T,D). */
void cuda_token_pool_forward(bf16 *out, const bf16 *x, int B, int T, int D, int pool);
void cuda_token_pool_backward(bf16 *dx, const bf16 *dout, int B, int T, int D, int pool);
/* dst (n) bf16 = src (n) f32, on the device. */
void cuda_f32_to_bf16(bf16 *dst, const float *src, long n);

#ifdef __cplusplus
}
#endif
#endif
