/* methods/init_lora_sb.c: LoRA-SB (Ponkshe, Singhal et al., "Initialization using Update Approximation is a Silver
 * Bullet for Extremely Efficient Low-Rank Fine-Tuning"; METHODS.md, LoRA-XS and LoRA-SB) for LoRA-XS adapters
 * (dW = s B R A; lora_A (r, n), lora_B (m, r) frozen, lora_R (r, r) trained):
 *   g      = the gradient of the mean task loss over the init samples at the pretrained weights;
 *   dW_avg = -lr_1 sign(g) (AdamW's first step; ctx->adamw) or -lr_1 g (SGD),
 *   lr_1   = lr / (warmup_frac * total_steps) under linear warmup (lr without warmup);
 *   SVD(dW_avg) = U S V^T;  B = U_r,  A = V_r^T (orthonormal, frozen),  R = diag(S_r) / s;  W0 unchanged.
 * The model starts at W0 + (rank-r part of dW_avg), as if the first full fine-tuning step had been taken
 * (changed_function = 1, changed_w0 = 0).
 *
 * g: init_full_grads over ctx->n_batches batches of ctx->batch returns the mean of the per-batch mean
 * gradients, which is the gradient of (loss / n_init) summed over the n_init = n_batches * batch samples when
 * the batches are equal-sized (a short last batch weighs its samples more; only SGD's -lr_1 g sees the
 * difference, sign(g) does not depend on positive scaling).
 * s: METHODS.md says s = 1 (no alpha); the official code gets it by setting lora_alpha = r. Here the adapter
 * keeps its configured scale s = alpha / r (or alpha / sqrt r) and R = diag(S_r) / s, so s B R A is exactly the
 * rank-r part of dW_avg for any alpha (with alpha = r this is the official R = diag(S_r)). Training R then
 * sees the gradient scaled by s, as any LoRA-XS adapter does.
 *
 * Followed: RaghavSinghal10/lora-sb, utils/gradient_utils.py (estimate_and_process_grads_torch*: accumulate the
 * gradients over the samples, then -lr * sign(grad) with lr = eff_lr = lr / (warmup_ratio * total_steps) from
 * train_*.py), utils/initialization_utils.py (find_and_initialize_grad: SVD of the update, lora_B = the left
 * singular vectors, lora_A = the right ones, both requires_grad = False, the r x r latent map = diag(S_r)).
 * Differences, on purpose: the official SVD is torch.svd_lowrank (niter 10) cast to bf16; this uses the exact
 * SVD's r leading triplets (la_svd_top, in double). lr_1 is the official eff_lr (no floor): the trainer's own
 * first step uses lr / floor(warmup_frac * total_steps) (core/optim.c), slightly larger when
 * warmup_frac * total_steps is not an integer; with warmup_frac * total_steps < 1 (no warmup step) lr_1 = lr.
 * Signs by la_svd_top's rule (B's column's largest-|.| entry positive), not LAPACK dgesdd's.
 *
 * Ablation variants (LoRA-SB Table 4), method.params.lora_sb.variant:
 *   estimate (default)  the recipe above;
 *   kaiming             the same B, R, A from the truncated SVD of a kaiming-uniform (a = sqrt 5) matrix
 *                       U(+-1/sqrt n) of the layer's shape (seeded per target); needs no data and no lr. Taken
 *                       literally from METHODS.md: it is not rescaled to dW_avg's size, so the model moves by
 *                       the rank-r part of a random matrix of W0's own scale;
 *   noisy               dW_avg + N(0, noise^2) elementwise, noise = method.params.lora_sb.noise (default 1e-3,
 *                       an absolute standard deviation, METHODS.md: "read mu as the noise's standard deviation").
 * Before the gradient pass every R is set to 0 (the LoRA-XS default), so g is taken at the pretrained point
 * even when the adapters were initialized before (a repeated call gives the same result); after a failure the
 * adapters are left at dW = 0.
 * Cost: n_batches forward + backward passes with full-weight gradients, one thin SVD per adapter. */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/threads.h"
#include "init_data.h"
#include "init_grad.h"
#include "lora_xs.h"

static const double LORA_SB_NOISE = 1e-3;

static int check_adapter(const Adapter *a, Error *err) {
    if (a->kind != &ADAPTER_LORA_XS)
        return err_set(err, "method.init 'lora_sb' needs LoRA-XS adapters (method.adapter: lora_xs), '%s' has a %s "
                       "adapter", a->target, a->kind->name);
    if (a->r > MIN(a->m, a->n))
        return err_set(err, "method.init 'lora_sb': %s: rank %d is larger than min(m, n) = %d (the layer is %d x %d): "
                       "expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n, MIN(a->m, a->n));
    return 0;
}

void lora_sb_first_step(float *dW, const float *g, size_t n, double lr_1, int adamw) {
    for (size_t i = 0; i < n; i++) {
        double v = adamw ? (g[i] > 0) - (g[i] < 0) : (double)g[i]; /* sign(0) = 0, as torch.sign */
        dW[i] = (float)(-lr_1 * v);
    }
}

double lora_sb_lr1(double lr, double warmup_frac, long total_steps) {
    double w = warmup_frac * (double)total_steps;
    return w >= 1 ? lr / w : lr;
}

int lora_sb_from_update(Adapter *a, const float *dW, Error *err) {
    if (check_adapter(a, err)) return -1;
    int m = a->m, n = a->n, r = a->r;
    float *U = xmalloc(sizeof(float) * (size_t)m * r), *S = xmalloc(sizeof(float) * r);
    float *Vt = xmalloc(sizeof(float) * (size_t)r * n);
    Error e;
    int rc = la_svd_top(U, S, Vt, dW, m, n, r, &e); /* only the r leading triplets */
    if (rc) {
        err_set(err, "method.init 'lora_sb': %s (%d x %d): the update's SVD: %s", a->target, m, n, e.msg);
    } else {
        float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
        float *R = params_data(a->ps, a->t[LORA_XS_R]);
        for (int o = 0; o < m; o++)
            for (int c = 0; c < r; c++) B[(size_t)o * r + c] = U[(size_t)o * r + c];
        memcpy(A, Vt, sizeof(float) * (size_t)r * n); /* the first r rows of Vt */
        memset(R, 0, sizeof(float) * (size_t)r * r);
        for (int c = 0; c < r; c++) R[(size_t)c * r + c] = (float)((double)S[c] / a->scale);
    }
    free(U);
    free(S);
    free(Vt);
    return rc;
}

typedef struct SbItems {
    AdapterSet *set;
    const float *const *D;
} SbItems;

static int sb_item(void *p, int i, Error *err) {
    SbItems *it = p;
    return lora_sb_from_update(&it->set->a[i], it->D[i], err);
}

typedef enum { SB_ESTIMATE, SB_KAIMING, SB_NOISY } SbVariant;

static int init_lora_sb(InitContext *ctx, InitResult *res, Error *err) {
    AdapterSet *set = ctx->set;
    for (int i = 0; i < set->n; i++)
        if (check_adapter(&set->a[i], err)) return -1;
    const char *vs = init_opt_string(ctx, "variant", "estimate");
    SbVariant v;
    if (!strcmp(vs, "estimate")) v = SB_ESTIMATE;
    else if (!strcmp(vs, "kaiming")) v = SB_KAIMING;
    else if (!strcmp(vs, "noisy")) v = SB_NOISY;
    else
        return err_set(err, "method.init 'lora_sb': method.params.lora_sb.variant is '%s', expected one of estimate, "
                       "kaiming, noisy", vs);
    double noise = 0, lr_1 = 0;
    if (init_opt_double(ctx, "noise", LORA_SB_NOISE, &noise, err)) return -1;
    if (v == SB_NOISY && (!(noise >= 0) || !isfinite(noise)))
        return err_set(err, "method.init 'lora_sb': method.params.lora_sb.noise is %g, expected a number >= 0", noise);
    if (v != SB_KAIMING) {
        lr_1 = lora_sb_lr1(ctx->lr, ctx->warmup_frac, ctx->total_steps);
        if (!(lr_1 > 0) || !isfinite(lr_1))
            return err_set(err, "method.init 'lora_sb' estimates the first step from the trainer's learning rate, "
                           "which is %g (lr_1 = %g): expected lr > 0", (double)ctx->lr, lr_1);
        if (ctx->n_batches < 1)
            return err_set(err, "method.init 'lora_sb': method.params.lora_sb.batches is %d, expected >= 1",
                           ctx->n_batches);
    }
    float **D = xcalloc((size_t)set->n + 1, sizeof *D);
    for (int i = 0; i < set->n; i++) D[i] = xmalloc(sizeof(float) * (size_t)set->a[i].m * set->a[i].n);
    int rc = 0, nb = 0;
    if (v == SB_KAIMING) {
        for (int i = 0; i < set->n; i++) {
            const Adapter *a = &set->a[i];
            float bound = 1.0f / sqrtf((float)a->n);
            rng_fill_uniform(D[i], (size_t)a->m * a->n, -bound, bound, ctx->seed, rng_stream(a->target, 310, 0));
        }
    } else {
        /* g at the pretrained point: R = 0 (the LoRA-XS default) makes dW = 0 whatever ran before, so a second
         * call gives the same result as the first */
        for (int i = 0; i < set->n; i++) {
            const Adapter *a = &set->a[i];
            memset(params_data(a->ps, a->t[LORA_XS_R]), 0, sizeof(float) * (size_t)a->r * a->r);
        }
        Error e;
        nb = init_full_grads(ctx, ctx->n_batches, D, &e);
        if (nb < 0) rc = err_set(err, "method.init 'lora_sb': %s", e.msg);
        for (int i = 0; i < set->n && !rc; i++) {
            const Adapter *a = &set->a[i];
            size_t mn = (size_t)a->m * a->n;
            lora_sb_first_step(D[i], D[i], mn, lr_1, ctx->adamw); /* in place: g -> dW_avg */
            if (v == SB_NOISY && noise > 0) {
                float *z = xmalloc(sizeof(float) * mn);
                rng_fill_normal(z, mn, 0.0f, (float)noise, ctx->seed, rng_stream(a->target, 311, 0));
                for (size_t t = 0; t < mn; t++) D[i][t] += z[t];
                free(z);
            }
        }
    }
    if (!rc) { /* side by side (core_parallel_items), the same bits as one by one */
        SbItems it = {set, (const float *const *)D};
        rc = core_parallel_items(set->n, sb_item, &it, err);
        if (rc) /* some adapters may be done: back to dW = 0 for all, as promised */
            for (int i = 0; i < set->n; i++) {
                const Adapter *a = &set->a[i];
                memset(params_data(a->ps, a->t[LORA_XS_R]), 0, sizeof(float) * (size_t)a->r * a->r);
            }
    }
    for (int i = 0; i < set->n; i++) free(D[i]);
    free(D);
    if (rc) return -1;
    res->changed_w0 = 0;
    res->changed_function = 1;
    res->batches_used = nb;
    if (v == SB_KAIMING) snprintf(res->note, sizeof res->note, "variant kaiming (no data)");
    else
        snprintf(res->note, sizeof res->note, "variant %s (noise %g), lr_1 %.4g, %s first step, %d batches of %d", vs,
                 v == SB_NOISY ? noise : 0.0, lr_1, ctx->adamw ? "AdamW (sign)" : "SGD", nb, ctx->batch);
    return 0;
}

const InitKind INIT_LORA_SB = {"lora_sb",
                               "METHODS.md, LoRA-XS and LoRA-SB: LoRA-SB (official RaghavSinghal10/lora-sb: "
                               "-lr_1 sign(g), SVD of the update; exact SVD; R = diag(S_r) / s)",
                               init_lora_sb, 0, INIT_PASS_GRADS};
