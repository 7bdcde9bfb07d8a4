/* methods/lora_xs.c: forward y += s ((x A^T) R^T) B^T through three thin GEMMs.
 * Saved: xa = x A^T (N, r), xar = xa R^T (N, r). Backward with dY (N, m):
 *   dxar = s dY B (N, r);  dR += dxar^T xa;  dB += s dY^T xar;  dxa = dxar R;  dA += dxa^T x;  dinp += dxa A. */
#include "lora_xs.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "lora.h"

static void lora_xs_create(Adapter *a, ParamSet *ps) {
    char name[PARAM_NAME_MAX + 16];
    int64_t sa[2] = {a->r, a->n}, sb[2] = {a->m, a->r}, sr[2] = {a->r, a->r};
    snprintf(name, sizeof name, "%s.lora_A", a->target);
    a->t[LORA_XS_A] = params_add(ps, name, 2, sa, 1);
    snprintf(name, sizeof name, "%s.lora_B", a->target);
    a->t[LORA_XS_B] = params_add(ps, name, 2, sb, 1);
    snprintf(name, sizeof name, "%s.lora_R", a->target);
    a->t[LORA_XS_R] = params_add(ps, name, 2, sr, 1);
    ps->views[a->t[LORA_XS_A]].trainable = 0; /* frozen: no gradient memory (adapters_attach allocates after) */
    ps->views[a->t[LORA_XS_B]].trainable = 0;
    a->nt = 3;
    a->work = xmalloc((size_t)a->m * a->r * sizeof(float)); /* B R for delta_weight (no malloc per call) */
}

static void lora_xs_init_default(Adapter *a, uint64_t seed) {
    float ba = 1.0f / sqrtf((float)a->n), bb = 1.0f / sqrtf((float)a->r);
    rng_fill_uniform(params_data(a->ps, a->t[LORA_XS_A]), (size_t)a->r * a->n, -ba, ba, seed,
                     rng_stream(a->target, LORA_XS_A, 0));
    rng_fill_uniform(params_data(a->ps, a->t[LORA_XS_B]), (size_t)a->m * a->r, -bb, bb, seed,
                     rng_stream(a->target, LORA_XS_B, 0));
    memset(params_data(a->ps, a->t[LORA_XS_R]), 0, (size_t)a->r * a->r * sizeof(float));
}

static void lora_xs_forward(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar) {
    const int r = a->r;
    const float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
    const float *R = params_data(a->ps, a->t[LORA_XS_R]);
    float *xa = arena_floats(ar, (size_t)N * r), *xar = arena_floats(ar, (size_t)N * r); // (N,r) each
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, a->n, 1.0f, inp, a->n, A, a->n, 0.0f, xa, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, r, 1.0f, xa, r, R, r, 0.0f, xar, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, a->m, r, a->scale, xar, r, B, r, 1.0f, out + a->row0, ldo);
    a->saved[0] = xa;
    a->saved[1] = xar;
}

static void lora_xs_backward(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar) {
    const int r = a->r;
    const float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
    const float *R = params_data(a->ps, a->t[LORA_XS_R]);
    float *dA = params_grad(a->ps, a->t[LORA_XS_A]), *dB = params_grad(a->ps, a->t[LORA_XS_B]);
    float *dR = params_grad(a->ps, a->t[LORA_XS_R]);
    const float *xa = a->saved[0], *xar = a->saved[1], *dy = dout + a->row0;
    if (dB) /* (m,r) += s dy^T xar */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->m, r, N, a->scale, dy, ldo, xar, r, 1.0f, dB, r);
    if (!dR && !dA && !dinp) return;
    float *dxar = arena_floats(ar, (size_t)N * r); // (N,r) = s dy B
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, a->m, a->scale, dy, ldo, B, r, 0.0f, dxar, r);
    if (dR) /* (r,r) += dxar^T xa */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, r, N, 1.0f, dxar, r, xa, r, 1.0f, dR, r);
    if (!dA && !dinp) return;
    float *dxa = arena_floats(ar, (size_t)N * r); // (N,r) = dxar R
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, r, 1.0f, dxar, r, R, r, 0.0f, dxa, r);
    if (dA) /* (r,n) += dxa^T inp */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, a->n, N, 1.0f, dxa, r, inp, a->n, 1.0f, dA, a->n);
    if (dinp) /* (N,n) += dxa A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, a->n, r, 1.0f, dxa, r, A, a->n, 1.0f, dinp, a->n);
}

/* dW (m,n) = s B R A. */
static void lora_xs_delta_weight(const Adapter *a, float *dW) {
    const int r = a->r;
    const float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
    const float *R = params_data(a->ps, a->t[LORA_XS_R]);
    float *BR = a->work; // (m,r)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, r, r, 1.0f, B, r, R, r, 0.0f, BR, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, a->n, r, a->scale, BR, r, A, a->n, 0.0f, dW, a->n);
}

/* g (m,n) = dL/d(dW): with T = g A^T (m,r): dR += s B^T T, dB += s T R^T, dA += s R^T (B^T g). */
static void lora_xs_backward_delta(Adapter *a, const float *g, Arena *ar) {
    const int m = a->m, n = a->n, r = a->r;
    const float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
    const float *R = params_data(a->ps, a->t[LORA_XS_R]);
    float *dA = params_grad(a->ps, a->t[LORA_XS_A]), *dB = params_grad(a->ps, a->t[LORA_XS_B]);
    float *dR = params_grad(a->ps, a->t[LORA_XS_R]);
    if (dR || dB) {
        float *T = arena_floats(ar, (size_t)m * r); // (m,r)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, n, 1.0f, g, n, A, n, 0.0f, T, r);
        if (dR) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, r, m, a->scale, B, r, T, r, 1.0f, dR, r);
        if (dB) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, r, a->scale, T, r, R, r, 1.0f, dB, r);
    }
    if (dA) {
        float *U = arena_floats(ar, (size_t)r * n); // (r,n) = B^T g
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, m, 1.0f, B, r, g, n, 0.0f, U, n);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, r, a->scale, R, r, U, n, 1.0f, dA, n);
    }
}

/* Only R trains: the image {s B X A} is projected on by QB QB^T M QA QA^T (METHODS.md, information loss). */
static int lora_xs_tangent_basis(const Adapter *a, TangentBasis *tb, Error *err) {
    return lora_factor_bases(tb, params_data(a->ps, a->t[LORA_XS_B]), params_data(a->ps, a->t[LORA_XS_A]), a->m, a->n,
                             a->r, 1, a->target, err);
}

const AdapterKind ADAPTER_LORA_XS = {
    .name = "lora_xs",
    .create = lora_xs_create,
    .init_default = lora_xs_init_default,
    .forward = lora_xs_forward,
    .backward = lora_xs_backward,
    .delta_weight = lora_xs_delta_weight,
    .backward_delta = lora_xs_backward_delta,
    .tangent_basis = lora_xs_tangent_basis,
    /* no regularizer */
};
