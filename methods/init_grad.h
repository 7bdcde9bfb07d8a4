/* methods/init_grad.h: the per-layer steps of the gradient-based initializers, exposed so tests can feed a
 * given gradient (tests/test_init_grad.c, reference fixtures of scripts/make_grad_init_fixtures.py).
 * The initializers themselves (INIT_LORA_GA in init_lora_ga.c, INIT_LORA_SB in init_lora_sb.c) compute the
 * gradient over init batches (methods/init_data.h: init_full_grads) and call these for every adapter.
 * SVDs are la_svd_top (core/linalg.h: the exact SVD's leading triplets in double; signs by its rule, each U
 * column's largest-|.| entry positive), or for LoRA-GA on request la_svd_lowrank (the same sign rule). */
#ifndef METHODS_INIT_GRAD_H
#define METHODS_INIT_GRAD_H
#include "init.h"

/* How LoRA-GA finds G's 2r leading triplets: lowrank = 0, la_svd_top (exact); lowrank = 1, la_svd_lowrank with
 * q = min(4r, min(m, n)) and niter (the official code's torch.svd_lowrank), its random matrix from (seed, stream). */
typedef struct GaSvd {
    int lowrank, niter;
    uint64_t seed, stream;
} GaSvd;

/* LoRA-GA (METHODS.md, LoRA-GA) on a LoRA adapter a, from its slice's gradient G (a->m, a->n) row-major:
 *   SVD(G) = U S V^T;  A = c V[:, 0:r]^T,  B = c U[:, r:2r],  c = m^{1/4} / sqrt(gamma);  W0 <- W0 - s B A.
 * svd NULL: exact. Needs 2r <= min(m, n) and gamma > 0 (errors name the layer). W0 is written only on success. */
int lora_ga_from_grad(Adapter *a, const float *G, double gamma, const GaSvd *svd, Error *err);

/* LoRA-SB's estimate of the first full fine-tuning step (METHODS.md, LoRA-XS and LoRA-SB), element-wise over n
 * entries: dW = -lr_1 sign(g) (AdamW, sign(0) = 0) or -lr_1 g (SGD, adamw = 0). dW may be g (in place). */
void lora_sb_first_step(float *dW, const float *g, size_t n, double lr_1, int adamw);

/* lr_1, the learning rate of step 1 under linear warmup: lr / (warmup_frac * total_steps) (the official
 * code's eff_lr), or lr when there is no warmup (warmup_frac * total_steps < 1). */
double lora_sb_lr1(double lr, double warmup_frac, long total_steps);

/* LoRA-SB on a LoRA-XS adapter a from an update dW (a->m, a->n) row-major:
 *   SVD(dW) = U S V^T;  B = U_r,  A = V_r^T (orthonormal, frozen),  R = diag(S_r) / s  (s = a->scale),
 * so s B R A is the rank-r part of dW whatever alpha. W0 is not touched. Needs r <= min(m, n). */
int lora_sb_from_update(Adapter *a, const float *dW, Error *err);
#endif
