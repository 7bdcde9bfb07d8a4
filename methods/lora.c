/* methods/lora.c: forward y += s (x A^T) B^T; backward through the two thin GEMMs.
 * Saved activation: xa = x A^T (N, r), so backward never recomputes the N x n product.
 * On a conv target (reshape-LoRA) the engine materializes dW = s B A and calls lora_backward_delta. */
#include "lora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/linalg.h"
#include "core/rng.h"

void lora_create(Adapter *a, ParamSet *ps) {
    char name[PARAM_NAME_MAX + 16];
    int64_t sa[2] = {a->r, a->n}, sb[2] = {a->m, a->r};
    snprintf(name, sizeof name, "%s.lora_A", a->target);
    a->t[LORA_A] = params_add(ps, name, 2, sa, 1);
    snprintf(name, sizeof name, "%s.lora_B", a->target);
    a->t[LORA_B] = params_add(ps, name, 2, sb, 1);
    a->nt = 2;
}

void lora_init_default(Adapter *a, uint64_t seed) {
    float bound = 1.0f / sqrtf((float)a->n);
    rng_fill_uniform(params_data(a->ps, a->t[LORA_A]), (size_t)a->r * a->n, -bound, bound, seed,
                     rng_stream(a->target, LORA_A, 0));
    memset(params_data(a->ps, a->t[LORA_B]), 0, (size_t)a->m * a->r * sizeof(float));
}

void lora_forward(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar) {
    const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
    float *xa = arena_floats(ar, (size_t)N * a->r); // (N,r)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, a->r, a->n, 1.0f, inp, a->n, A, a->n, 0.0f, xa, a->r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, a->m, a->r, a->scale, xa, a->r, B, a->r, 1.0f,
                out + a->row0, ldo);
    a->saved[0] = xa;
}

void lora_backward(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar) {
    const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
    float *dA = params_grad(a->ps, a->t[LORA_A]), *dB = params_grad(a->ps, a->t[LORA_B]);
    const float *xa = a->saved[0], *dy = dout + a->row0;
    if (dB) /* (m,r) += s dy^T (m,N) xa (N,r) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->m, a->r, N, a->scale, dy, ldo, xa, a->r, 1.0f, dB, a->r);
    if (!dA && !dinp) return;
    float *dxa = arena_floats(ar, (size_t)N * a->r); /* (N,r) = s dy B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, a->r, a->m, a->scale, dy, ldo, B, a->r, 0.0f, dxa, a->r);
    if (dA) /* (r,n) += dxa^T inp */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->r, a->n, N, 1.0f, dxa, a->r, inp, a->n, 1.0f, dA, a->n);
    if (dinp) /* (N,n) += dxa A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, a->n, a->r, 1.0f, dxa, a->r, A, a->n, 1.0f, dinp, a->n);
}

void lora_delta_weight(const Adapter *a, float *dW) {
    const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, a->n, a->r, a->scale, B, a->r, A, a->n, 0.0f, dW, a->n);
}

/* g (m,n) = dL/d(dW): dB (m,r) += s g A^T, dA (r,n) += s B^T g. */
void lora_backward_delta(Adapter *a, const float *g, Arena *ar) {
    (void)ar;
    const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
    float *dA = params_grad(a->ps, a->t[LORA_A]), *dB = params_grad(a->ps, a->t[LORA_B]);
    if (dB) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->m, a->r, a->n, a->scale, g, a->n, A, a->n, 1.0f, dB, a->r);
    if (dA) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->r, a->n, a->m, a->scale, B, a->r, g, a->n, 1.0f, dA, a->n);
}

/* QB = orth(B) (m,kb), QA = orth(A^T) (n,ka); the sum form (both factors train). */
int lora_tangent_basis(const Adapter *a, TangentBasis *tb, Error *err) {
    return lora_factor_bases(tb, params_data(a->ps, a->t[LORA_B]), params_data(a->ps, a->t[LORA_A]), a->m, a->n, a->r,
                             0, a->target, err);
}

int lora_factor_bases(TangentBasis *tb, const float *B, const float *A, int m, int n, int r, int product,
                      const char *target, Error *err) {
    memset(tb, 0, sizeof *tb);
    tb->product = product;
    tb->QB = xmalloc((size_t)m * MIN(m, r) * sizeof(float));
    tb->QA = xmalloc((size_t)n * MIN(n, r) * sizeof(float));
    float *At = xmalloc((size_t)n * r * sizeof(float)); // (n,r)
    for (int l = 0; l < r; l++)
        for (int j = 0; j < n; j++) At[(size_t)j * r + l] = A[(size_t)l * n + j];
    Error e2 = {{0}};
    int rc = la_orth(tb->QB, &tb->kb, B, m, r, &e2);
    if (rc) err_set(err, "tangent basis of '%s': B (%d,%d): %s", target, m, r, e2.msg);
    else if ((rc = la_orth(tb->QA, &tb->ka, At, n, r, &e2)) != 0)
        err_set(err, "tangent basis of '%s': A (%d,%d): %s", target, r, n, e2.msg);
    free(At);
    if (rc) tangent_basis_free(tb);
    return rc;
}

const AdapterKind ADAPTER_LORA = {
    .name = "lora",
    .create = lora_create,
    .init_default = lora_init_default,
    .forward = lora_forward,
    .backward = lora_backward,
    .delta_weight = lora_delta_weight,
    .backward_delta = lora_backward_delta,
    .tangent_basis = lora_tangent_basis,
    /* no regularizer (LAVA adds one: methods/lava.h) */
};
