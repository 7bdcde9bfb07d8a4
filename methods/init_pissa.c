/* methods/init_pissa.c: PiSSA (Meng et al. 2024) as PEFT's init_lora_weights="pissa" (METHODS.md, Base
 * initializers; PEFT src/peft/tuners/lora/layer.py, LoraLayer.pissa_init):
 *   SVD(W0) = U S V^T, S' = S_r / s;  B = U_r S'^{1/2},  A = S'^{1/2} V_r^T;  W0 <- W0 - s B A.
 * The adapter holds W0's principal rank-r part and the frozen weight the residual, so the model's function
 * is kept (up to float rounding). s = a->scale, so rsLoRA's alpha / sqrt(r) is used when configured, as in PEFT.
 *
 * Only the exact SVD (PEFT's "pissa": torch.linalg.svd, full) is implemented, as its r leading triplets in
 * double (la_svd_top); PEFT's fast randomized variant "pissa_niter_k" (torch.svd_lowrank with k subspace
 * iterations) is not implemented yet.
 * Singular-vector signs follow la_svd_top's rule (B's column's largest-|.| entry positive), not LAPACK's
 * dgesdd (torch's on CPU): B and A may differ from another implementation's by a sign per rank-1 pair,
 * s B A and the new W0 do not. */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/threads.h"
#include "init.h"
#include "lora.h"

/* Checks every adapter before any W0 is touched, so a bad rank leaves the model as it was. */
static int check_all(const AdapterSet *set, Error *err) {
    for (int i = 0; i < set->n; i++) {
        const Adapter *a = &set->a[i];
        if (a->kind != &ADAPTER_LORA)
            return err_set(err, "method.init 'pissa' needs LoRA adapters, '%s' has a %s adapter", a->target,
                           a->kind->name);
        if (a->r > MIN(a->m, a->n))
            return err_set(err, "method.init 'pissa': %s: rank %d is larger than min(m, n) = %d (the layer is "
                           "%d x %d): expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n,
                           MIN(a->m, a->n));
    }
    return 0;
}

static int pissa_layer(Adapter *a, Error *err) {
    int m = a->m, n = a->n, r = a->r;
    float *U = xmalloc(sizeof(float) * (size_t)m * r), *S = xmalloc(sizeof(float) * r);
    float *Vt = xmalloc(sizeof(float) * (size_t)r * n);
    Error e;
    int rc = la_svd_top(U, S, Vt, a->W0, m, n, r, &e); /* only the r leading triplets */
    if (rc) {
        err_set(err, "method.init 'pissa': %s (%d x %d): %s", a->target, m, n, e.msg);
    } else {
        float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        double s = a->scale;
        for (int c = 0; c < r; c++) {
            double q = sqrt((double)S[c] / s); /* sqrt(S_r / s) */
            for (int j = 0; j < n; j++) A[(size_t)c * n + j] = (float)(q * Vt[(size_t)c * n + j]);
            for (int o = 0; o < m; o++) B[(size_t)o * r + c] = (float)(q * U[(size_t)o * r + c]);
        }
        /* W0 <- W0 - s B A with the stored (float) B and A, so W0 + s B A reproduces W0 to rounding. */
        for (int o = 0; o < m; o++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int c = 0; c < r; c++) acc += (double)B[(size_t)o * r + c] * A[(size_t)c * n + j];
                float *w = &a->W0[(size_t)o * n + j];
                *w = (float)(*w - s * acc);
            }
    }
    free(U);
    free(S);
    free(Vt);
    return rc;
}

static int pissa_item(void *set, int i, Error *err) { return pissa_layer(&((AdapterSet *)set)->a[i], err); }

/* The adapters are independent: they run side by side (core_parallel_items), the same bits as one by one. A
 * failure (an SVD not converging) leaves each adapter either done (its W0 updated, the function kept) or
 * untouched, and reports the first failing adapter. */
static int init_pissa(InitContext *ctx, InitResult *res, Error *err) {
    if (check_all(ctx->set, err)) return -1;
    if (core_parallel_items(ctx->set->n, pissa_item, ctx->set, err)) return -1;
    res->changed_w0 = 1;
    res->changed_function = 0;
    return 0;
}

const InitKind INIT_PISSA = {"pissa", "METHODS.md, Base initializers: PiSSA (PEFT pissa_init, full SVD)", init_pissa};
