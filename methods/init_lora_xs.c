/* methods/init_lora_xs.c: LoRA-XS init (Balazy et al.; METHODS.md, LoRA-XS and LoRA-SB, "official code") for
 * LoRA-XS adapters (dW = s B R A; lora_A (r, n) and lora_B (m, r) frozen, lora_R (r, r) trained):
 *   truncated SVD of W0 = U S V^T;  B = U_r,  A = S_r V_r^T,  R ~ N(0, sigma^2), sigma = 1e-5;  W0 unchanged.
 * The model's function changes, by s B R A = O(sigma) (changed_function = 1).
 * The r leading triplets in double (la_svd_top); signs by its rule (B's column's largest-|.| entry positive),
 * not LAPACK dgesdd's (torch's / numpy's on CPU): B and A may differ from those by a sign per pair. */
#include "core/linalg.h"
#include "core/rng.h"
#include "core/threads.h"
#include "init.h"
#include "lora_xs.h"

/* The std of R's entries (METHODS.md: sigma = 1e-5); to become an option of method.init. */
static const float LORA_XS_SIGMA = 1e-5f;

/* Checks every adapter before anything is written. */
static int check_all(const AdapterSet *set, Error *err) {
    for (int i = 0; i < set->n; i++) {
        const Adapter *a = &set->a[i];
        if (a->kind != &ADAPTER_LORA_XS)
            return err_set(err, "method.init 'lora_xs' needs LoRA-XS adapters (method.adapter: lora_xs), '%s' "
                           "has a %s adapter", a->target, a->kind->name);
        if (a->r > MIN(a->m, a->n))
            return err_set(err, "method.init 'lora_xs': %s: rank %d is larger than min(m, n) = %d (the layer is "
                           "%d x %d): expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n,
                           MIN(a->m, a->n));
    }
    return 0;
}

static int lora_xs_layer(Adapter *a, uint64_t seed, Error *err) {
    int m = a->m, n = a->n, r = a->r;
    float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
    float *R = params_data(a->ps, a->t[LORA_XS_R]);
    float *U = xmalloc(sizeof(float) * (size_t)m * r), *S = xmalloc(sizeof(float) * r);
    float *Vt = xmalloc(sizeof(float) * (size_t)r * n);
    Error e;
    int rc = la_svd_top(U, S, Vt, a->W0, m, n, r, &e); /* only the r leading triplets */
    if (rc) {
        err_set(err, "method.init 'lora_xs': %s (%d x %d): %s", a->target, m, n, e.msg);
    } else {
        for (int o = 0; o < m; o++)
            for (int c = 0; c < r; c++) B[(size_t)o * r + c] = U[(size_t)o * r + c];
        for (int c = 0; c < r; c++)
            for (int j = 0; j < n; j++) A[(size_t)c * n + j] = S[c] * Vt[(size_t)c * n + j];
        rng_fill_normal(R, (size_t)r * r, 0.0f, LORA_XS_SIGMA, seed, rng_stream(a->target, 300, 0));
    }
    free(U);
    free(S);
    free(Vt);
    return rc;
}

static int lora_xs_item(void *p, int i, Error *err) {
    InitContext *ctx = p;
    return lora_xs_layer(&ctx->set->a[i], ctx->seed, err);
}

/* The adapters are independent: they run side by side (core_parallel_items), the same bits as one by one
 * (R's draw is a pure function of the seed and the target). A failure leaves each adapter either done or
 * untouched and reports the first failing adapter. */
static int init_lora_xs(InitContext *ctx, InitResult *res, Error *err) {
    if (check_all(ctx->set, err)) return -1;
    if (core_parallel_items(ctx->set->n, lora_xs_item, ctx, err)) return -1;
    res->changed_w0 = 0;
    res->changed_function = 1;
    return 0;
}

const InitKind INIT_LORA_XS = {"lora_xs", "METHODS.md, LoRA-XS and LoRA-SB: LoRA-XS init (official code)",
                               init_lora_xs};
