/* methods/init_lora_ga.c: LoRA-GA (Wang et al. 2024, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation";
 * METHODS.md, data-driven initializers: LoRA-GA) for LoRA adapters:
 *   G = the mean over init batches of the full-weight gradient dL/dW0 of the adapter's slice (init_full_grads:
 *       ctx->n_batches batches of ctx->batch, the task's cross-entropy averaged over each batch);
 *   SVD(G) = U S V^T;  A = c V[:, 0:r]^T,  B = c U[:, r:2r],  c = m^{1/4} / sqrt(gamma);  W0 <- W0 - s B A.
 * The model's function is kept (W0 + s B A = the old W0 up to float rounding; changed_w0 = 1).
 *
 * Followed: the official code, Outsider565/LoRA-GA peft/src/peft/tuners/lora/layer.py LoraLayer.lora_ga_init
 * with its LoraGAConfig defaults (direction "ArB2r", scale "stable", stable_gamma 16; bsz 2, iters 64), and its
 * lora_ga_utils.estimate_gradient (the sum of per-batch gradients of the batch-mean loss / the number of
 * batches, at the pretrained weights, which is what init_full_grads returns):
 *   - A = V^T[:r] (the r leading right vectors), B = U[:, r:2r] (the next r left vectors), no singular values
 *     in the factors, no minus sign: the offset is W0 -= s B A with s = lora_alpha / r (self.scaling);
 *   - "stable": BOTH B and A are multiplied by m^{1/4} / sqrt(gamma), m = grad.shape[0] = out features (here
 *     the adapter slice's rows: 64 for the q third of a fused qkv, as for a separate q_proj); no division by s.
 *   - gamma is method.params.lora_ga.gamma (default 16); the batch size and count are the caller's
 *     (method.params.lora_ga.batch / .batches; the official code uses 64 batches of 2).
 * Differences, on purpose: the official code (and PEFT) use torch.svd_lowrank(G, q = min(4r, min(m, n)),
 * niter = 4); by default this uses the exact SVD's 2r leading triplets (la_svd_top, in double), the limit of the
 * randomized one; method.params.lora_ga.svd: lowrank takes the official algorithm (la_svd_lowrank, the same q,
 * method.params.lora_ga.niter default 4, its random matrix from the run's seed and the adapter's index: not
 * torch's random numbers), ~10x cheaper at 768 x 768 and an estimate where G's spectrum is flat. Singular-vector signs follow la_svd_top's rule (each U column's largest-|.| entry positive),
 * not LAPACK dgesdd's (torch's on CPU); B A pairs u_{r+i} with v_i, so the new W0 depends on that rule.
 * The official "norm_clip" option (off by default) and the other directions / scales are not implemented.
 * PEFT's own port (huggingface/peft >= 0.19, src/peft/tuners/lora/layer.py lora_ga_init, as of 2026-08) differs
 * from the official code: it puts S[r:2r] into B (B = U[:, r:2r] diag(S[r:2r])) and multiplies only B by the
 * stable factor. METHODS.md specifies the official formula, which is what this file does.
 * Cost: n_batches forward + backward passes with full-weight gradients of the adapted slots, one thin SVD per
 * adapter. Peak memory: one (m, n) float gradient per adapter. */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/threads.h"
#include "init_data.h"
#include "init_grad.h"
#include "lora.h"

static const double LORA_GA_GAMMA = 16; /* official LoraGAConfig.stable_gamma */

static int check_adapter(const Adapter *a, Error *err) {
    if (a->kind != &ADAPTER_LORA)
        return err_set(err, "method.init 'lora_ga' needs LoRA adapters (method.adapter: lora), '%s' has a %s adapter",
                       a->target, a->kind->name);
    int k = MIN(a->m, a->n);
    if (2 * a->r > k)
        return err_set(err, "method.init 'lora_ga': %s: rank %d needs 2r = %d singular vectors but min(m, n) = %d "
                       "(the layer is %d x %d): expected a rank <= %d", a->target, a->r, 2 * a->r, k, a->m, a->n,
                       k / 2);
    return 0;
}

int lora_ga_from_grad(Adapter *a, const float *G, double gamma, const GaSvd *svd, Error *err) {
    if (check_adapter(a, err)) return -1;
    if (!(gamma > 0) || !isfinite(gamma))
        return err_set(err, "method.init 'lora_ga': method.params.lora_ga.gamma is %g, expected a number > 0", gamma);
    int m = a->m, n = a->n, r = a->r, k = 2 * r;
    float *U = xmalloc(sizeof(float) * (size_t)m * k), *Vt = xmalloc(sizeof(float) * (size_t)k * n);
    Error e;
    int rc = svd && svd->lowrank ? la_svd_lowrank(U, NULL, Vt, G, m, n, k, MIN(4 * r, MIN(m, n)), svd->niter,
                                                  svd->seed, svd->stream, &e)
                                 : la_svd_top(U, NULL, Vt, G, m, n, k, &e); /* only the 2r leading triplets */
    if (rc) {
        err_set(err, "method.init 'lora_ga': %s (%d x %d): the gradient's SVD: %s", a->target, m, n, e.msg);
    } else {
        float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        double c = pow((double)m, 0.25) / sqrt(gamma), s = a->scale;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < n; j++) A[(size_t)i * n + j] = (float)(c * Vt[(size_t)i * n + j]);
        for (int o = 0; o < m; o++)
            for (int i = 0; i < r; i++) B[(size_t)o * r + i] = (float)(c * U[(size_t)o * k + r + i]);
        /* W0 <- W0 - s B A with the stored (float) B and A, so W0 + s B A reproduces W0 to rounding. */
        for (int o = 0; o < m; o++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int i = 0; i < r; i++) acc += (double)B[(size_t)o * r + i] * A[(size_t)i * n + j];
                float *w = &a->W0[(size_t)o * n + j];
                *w = (float)(*w - s * acc);
            }
    }
    free(U);
    free(Vt);
    return rc;
}

typedef struct GaItems {
    AdapterSet *set;
    const float *const *G;
    double gamma;
    GaSvd svd;
} GaItems;

static int ga_item(void *p, int i, Error *err) {
    GaItems *it = p;
    GaSvd svd = it->svd;
    svd.stream = rng_stream("lora_ga.svd", (uint64_t)i, 0);
    return lora_ga_from_grad(&it->set->a[i], it->G[i], it->gamma, &svd, err);
}

static int init_lora_ga(InitContext *ctx, InitResult *res, Error *err) {
    AdapterSet *set = ctx->set;
    /* every check before the gradient pass and before any W0 is touched */
    for (int i = 0; i < set->n; i++)
        if (check_adapter(&set->a[i], err)) return -1;
    double gamma;
    if (init_opt_double(ctx, "gamma", LORA_GA_GAMMA, &gamma, err)) return -1;
    if (!(gamma > 0) || !isfinite(gamma))
        return err_set(err, "method.init 'lora_ga': method.params.lora_ga.gamma is %g, expected a number > 0", gamma);
    static const char *const keys[] = {"gamma", "svd", "niter", "batch", "batches"};
    if (init_check_keys(ctx, "lora_ga", keys, ARRAY_LEN(keys), err)) return -1;
    GaSvd svd = {.seed = ctx->seed};
    const char *how = init_opt_string(ctx, "svd", "exact");
    double niter;
    if (!strcmp(how, "lowrank")) svd.lowrank = 1;
    else if (strcmp(how, "exact"))
        return err_set(err, "method.init 'lora_ga': method.params.lora_ga.svd is '%s', expected exact (the top 2r of "
                       "the exact SVD) or lowrank (the official code's randomized svd_lowrank, q = 4r)", how);
    if (init_opt_double(ctx, "niter", 4, &niter, err)) return -1;
    if (!(niter >= 0 && niter <= 100 && niter == (int)niter))
        return err_set(err, "method.init 'lora_ga': method.params.lora_ga.niter is %g, expected a whole number of "
                       "power iterations in 0..100 (the official code uses 4)", niter);
    svd.niter = (int)niter;
    if (ctx->n_batches < 1)
        return err_set(err, "method.init 'lora_ga': method.params.lora_ga.batches is %d, expected >= 1 (the official "
                       "code uses 64 batches of 2)", ctx->n_batches);
    float **G = xcalloc((size_t)set->n + 1, sizeof *G);
    for (int i = 0; i < set->n; i++) G[i] = xmalloc(sizeof(float) * (size_t)set->a[i].m * set->a[i].n);
    Error e;
    int nb = init_full_grads(ctx, ctx->n_batches, G, &e), rc = nb < 0 ? -1 : 0;
    if (rc) err_set(err, "method.init 'lora_ga': %s", e.msg);
    /* Each layer's update keeps the function on its own, so a failure part-way (a non-finite gradient) leaves
     * a model that still computes the backbone's function (each adapter done or untouched; the first failing
     * one reported). The adapters run side by side (core_parallel_items), the same bits as one by one. */
    if (!rc) {
        GaItems it = {set, (const float *const *)G, gamma, svd};
        rc = core_parallel_items(set->n, ga_item, &it, err);
    }
    for (int i = 0; i < set->n; i++) free(G[i]);
    free(G);
    if (rc) return -1;
    res->changed_w0 = 1;
    res->changed_function = 0;
    res->batches_used = nb;
    if (svd.lowrank)
        snprintf(res->note, sizeof res->note, "gamma %g, gradient over %d batches of %d (randomized SVD, q 4r, niter "
                 "%d)", gamma, nb, ctx->batch, svd.niter);
    else
        snprintf(res->note, sizeof res->note, "gamma %g, gradient over %d batches of %d (exact SVD)", gamma, nb,
                 ctx->batch);
    return 0;
}

const InitKind INIT_LORA_GA = {"lora_ga",
                               "METHODS.md, data-driven initializers: LoRA-GA (official Outsider565/LoRA-GA "
                               "lora_ga_init: ArB2r, stable scaling, gamma 16; exact SVD or svd_lowrank)",
                               init_lora_ga, 0, INIT_PASS_GRADS};
