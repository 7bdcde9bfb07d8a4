/* methods/init_olora.c: OLoRA (Buyukakyuz 2024) as PEFT's init_lora_weights="olora" (METHODS.md, Base
 * initializers; PEFT src/peft/tuners/lora/layer.py, LoraLayer.olora_init):
 *   thin QR of the weight as stored, (out, in) = (m, n): W0 = Q R;  B = Q[:, :r],  A = R[:r, :];
 *   W0 <- W0 - s B A  (no division by s: B stays orthonormal, s B A is s times the leading part).
 * Signs: PEFT takes torch.linalg.qr's Q and R as they come (no sign fix; R's diagonal may be negative);
 * la_qr follows the same LAPACK Householder convention (dgeqrf + dorgqr), so B and A are PEFT's, not only
 * up to signs. The model's function is kept up to float rounding. */
#include <string.h>

#include "core/linalg.h"
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

static int olora_layer(Adapter *a, Error *err) {
    int m = a->m, n = a->n, r = a->r, k = MIN(m, n);
    float *Q = xmalloc(sizeof(float) * (size_t)m * k), *R = xmalloc(sizeof(float) * (size_t)k * n);
    Error e;
    int rc = la_qr(Q, R, a->W0, m, n, &e);
    if (rc) {
        err_set(err, "method.init 'olora': %s (%d x %d): %s", a->target, m, n, e.msg);
    } else {
        float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        memcpy(A, R, sizeof(float) * (size_t)r * n); /* R's first r rows */
        for (int o = 0; o < m; o++)
            for (int c = 0; c < r; c++) B[(size_t)o * r + c] = Q[(size_t)o * k + c];
        /* W0 <- W0 - s B A with the stored (float) B and A, so W0 + s B A reproduces W0 to rounding. */
        double s = a->scale;
        for (int o = 0; o < m; o++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int c = 0; c < r; c++) acc += (double)B[(size_t)o * r + c] * A[(size_t)c * n + j];
                float *w = &a->W0[(size_t)o * n + j];
                *w = (float)(*w - s * acc);
            }
    }
    free(Q);
    free(R);
    return rc;
}

static int init_olora(InitContext *ctx, InitResult *res, Error *err) {
    if (check_all(ctx->set, err)) return -1;
    for (int i = 0; i < ctx->set->n; i++)
        if (olora_layer(&ctx->set->a[i], err)) return -1;
    res->changed_w0 = 1;
    res->changed_function = 0;
    return 0;
}

const InitKind INIT_OLORA = {"olora", "METHODS.md, Base initializers: OLoRA (PEFT olora_init)", init_olora};
