/* methods/init_olora.c: OLoRA (Buyukakyuz 2024) as PEFT's init_lora_weights="olora" (METHODS.md, Base
 * initializers; PEFT src/peft/tuners/lora/layer.py, LoraLayer.olora_init):
 *   thin QR of the weight as stored, (out, in) = (m, n): W0 = Q R;  B = Q[:, :r],  A = R[:r, :];
 *   W0 <- W0 - s B A  (no division by s: B stays orthonormal, s B A is s times the leading part).
 * Signs: PEFT takes torch.linalg.qr's Q and R as they come (no sign fix; R's diagonal may be negative);
 * la_qr follows the same LAPACK Householder convention (dgeqrf + dorgqr), so B and A are PEFT's, not only
 * up to signs. The model's function is kept up to float rounding.
 * Computed from the thin QR of the first r columns only (olora_layer says why that is the same B and A). */
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
            return err_set(err, "method.init 'olora' needs LoRA adapters, '%s' has a %s adapter", a->target,
                           a->kind->name);
        if (a->r > MIN(a->m, a->n))
            return err_set(err, "method.init 'olora': %s: rank %d is larger than min(m, n) = %d (the layer is "
                           "%d x %d): expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n,
                           MIN(a->m, a->n));
    }
    return 0;
}

/* Only Q[:, :r] and R[:r, :] are used. With Householder QR, column j's reflector depends only on columns 0..j,
 * so dgeqrf of the (m, r) slice W0[:, :r] gives the same first r reflectors (the same Q_r, signs included) as
 * dgeqrf of W0, and R[:r, :] = Q_r^T W0 (exactly, in exact arithmetic). So: thin QR of the slice (R's leading
 * r x r triangle as LAPACK computes it), then R[:r, r:] = Q_r^T W0[:, r:] in double. Cost 2 m n r instead of
 * a full QR's ~4 m n k (768 x 768, r 8: ~50x less). tests/test_init_fast.c checks it against la_qr of W0. */
static int olora_layer(Adapter *a, Error *err) {
    int m = a->m, n = a->n, r = a->r;
    /* la_qr sees only the first r columns: check the whole weight first, so a failure touches nothing */
    for (size_t t = 0; t < (size_t)m * n; t++)
        if (!isfinite(a->W0[t]))
            return err_set(err, "method.init 'olora': %s (%d x %d): W0 has a non-finite entry %g at row %zu, column "
                           "%zu: expected finite values", a->target, m, n, (double)a->W0[t], t / n, t % n);
    float *W = xmalloc(sizeof(float) * (size_t)m * r), *Q = xmalloc(sizeof(float) * (size_t)m * r);
    float *T = xmalloc(sizeof(float) * (size_t)r * r);
    for (int o = 0; o < m; o++) memcpy(W + (size_t)o * r, a->W0 + (size_t)o * n, sizeof(float) * r);
    Error e;
    int rc = la_qr(Q, T, W, m, r, &e); /* (m, r) = Q (m, r) T (r, r); r <= m (check_all) */
    if (rc) {
        err_set(err, "method.init 'olora': %s (%d x %d): %s", a->target, m, n, e.msg);
    } else {
        float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        memcpy(B, Q, sizeof(float) * (size_t)m * r);
        /* A = R[:r, :]: the triangle T in columns < r, Q_r^T W0 (in double) in the others */
        double *acc = xcalloc((size_t)r * n, sizeof *acc);
        for (int o = 0; o < m; o++) {
            const float *w = a->W0 + (size_t)o * n;
            for (int c = 0; c < r; c++) {
                double q = Q[(size_t)o * r + c];
                double *ac = acc + (size_t)c * n;
                for (int j = r; j < n; j++) ac[j] += q * w[j];
            }
        }
        for (int c = 0; c < r; c++)
            for (int j = 0; j < n; j++)
                A[(size_t)c * n + j] = j < r ? T[(size_t)c * r + j] : (float)acc[(size_t)c * n + j];
        free(acc);
        /* W0 <- W0 - s B A with the stored (float) B and A, so W0 + s B A reproduces W0 to rounding. */
        double s = a->scale;
        for (int o = 0; o < m; o++)
            for (int j = 0; j < n; j++) {
                double acc1 = 0;
                for (int c = 0; c < r; c++) acc1 += (double)B[(size_t)o * r + c] * A[(size_t)c * n + j];
                float *w = &a->W0[(size_t)o * n + j];
                *w = (float)(*w - s * acc1);
            }
    }
    free(W);
    free(Q);
    free(T);
    return rc;
}

static int olora_item(void *set, int i, Error *err) { return olora_layer(&((AdapterSet *)set)->a[i], err); }

/* The adapters are independent: they run side by side (core_parallel_items), the same bits as one by one. A
 * failure (a non-finite W0) leaves each adapter either done (its W0 updated, the function kept) or untouched,
 * and reports the first failing adapter. */
static int init_olora(InitContext *ctx, InitResult *res, Error *err) {
    if (check_all(ctx->set, err)) return -1;
    if (core_parallel_items(ctx->set->n, olora_item, ctx->set, err)) return -1;
    res->changed_w0 = 1;
    res->changed_function = 0;
    return 0;
}

const InitKind INIT_OLORA = {"olora", "METHODS.md, Base initializers: OLoRA (PEFT olora_init)", init_olora};
