/* methods/init_base.c: the data-free initializers of METHODS.md "Base initializers" for LoRA adapters
 * (A = lora_A (r, n), B = lora_B (m, r)). */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "init.h"
#include "lora.h"

static int need_lora(const Adapter *a, const char *init, Error *err) {
    if (a->kind != &ADAPTER_LORA)
        return err_set(err, "method.init '%s' needs LoRA adapters, '%s' has a %s adapter", init, a->target, a->kind->name);
    return 0;
}

/* PEFT's default: A kaiming-uniform(a = sqrt 5) = U(+-1/sqrt n), B = 0 — the adapter kind's own default
 * init, so it applies to every kind (DoRA: also the magnitude = ||W0||_row; LoRA-XS: R = 0). */
static int init_kaiming(InitContext *ctx, InitResult *res, Error *err) {
    (void)err;
    for (int i = 0; i < ctx->set->n; i++) {
        Adapter *a = &ctx->set->a[i];
        a->kind->init_default(a, ctx->seed);
    }
    res->changed_w0 = res->changed_function = 0;
    return 0;
}

/* A ~ N(0, (1/r)^2), B = 0. */
static int init_gaussian(InitContext *ctx, InitResult *res, Error *err) {
    for (int i = 0; i < ctx->set->n; i++) {
        Adapter *a = &ctx->set->a[i];
        if (need_lora(a, "gaussian", err)) return -1;
        rng_fill_normal(params_data(a->ps, a->t[LORA_A]), (size_t)a->r * a->n, 0.0f, 1.0f / (float)a->r, ctx->seed,
                        rng_stream(a->target, 100 + LORA_A, 0));
        memset(params_data(a->ps, a->t[LORA_B]), 0, (size_t)a->m * a->r * sizeof(float));
    }
    res->changed_w0 = res->changed_function = 0;
    return 0;
}

/* PEFT's orthogonal: Q = qr(randn(r, r)).Q; P1 = Q's even rows, P2 = its odd rows (r/2 x r);
 * A = (randn(n, r/2) P1)^T / 10, B = randn(m, r/2) P2 / 10; B A = 0 because P2 P1^T = 0. */
static int init_orthogonal(InitContext *ctx, InitResult *res, Error *err) {
    for (int i = 0; i < ctx->set->n; i++) {
        Adapter *a = &ctx->set->a[i];
        if (need_lora(a, "orthogonal", err)) return -1;
        int r = a->r, h = r / 2, m = a->m, n = a->n;
        if (r % 2) return err_set(err, "method.init 'orthogonal' needs an even rank, method.rank is %d", r);
        float *G = xmalloc(sizeof(float) * r * r), *Q = xmalloc(sizeof(float) * r * r);
        float *Xa = xmalloc(sizeof(float) * (size_t)n * h), *Xb = xmalloc(sizeof(float) * (size_t)m * h);
        rng_fill_normal(G, (size_t)r * r, 0, 1, ctx->seed, rng_stream(a->target, 200, 0));
        rng_fill_normal(Xa, (size_t)n * h, 0, 1, ctx->seed, rng_stream(a->target, 201, 0));
        rng_fill_normal(Xb, (size_t)m * h, 0, 1, ctx->seed, rng_stream(a->target, 202, 0));
        int rc = la_qr(Q, NULL, G, r, r, err);
        if (rc == 0) {
            float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
            for (int k = 0; k < r; k++) /* A[k][j] = sum_c Xa[j][c] P1[c][k] / 10, P1[c] = Q row 2c */
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int c = 0; c < h; c++) s += (double)Xa[(size_t)j * h + c] * Q[(size_t)(2 * c) * r + k];
                    A[(size_t)k * n + j] = (float)(s / 10);
                }
            for (int o = 0; o < m; o++) /* B[o][k] = sum_c Xb[o][c] P2[c][k] / 10, P2[c] = Q row 2c+1 */
                for (int k = 0; k < r; k++) {
                    double s = 0;
                    for (int c = 0; c < h; c++) s += (double)Xb[(size_t)o * h + c] * Q[(size_t)(2 * c + 1) * r + k];
                    B[(size_t)o * r + k] = (float)(s / 10);
                }
        }
        free(G); free(Q); free(Xa); free(Xb);
        if (rc) return -1;
    }
    res->changed_w0 = res->changed_function = 0;
    return 0;
}

const InitKind INIT_KAIMING = {"kaiming", "METHODS.md, Base initializers: kaiming (PEFT default)", init_kaiming};
const InitKind INIT_GAUSSIAN = {"gaussian", "METHODS.md, Base initializers: gaussian", init_gaussian};
const InitKind INIT_ORTHOGONAL = {"orthogonal", "METHODS.md, Base initializers: orthogonal (PEFT)", init_orthogonal};
