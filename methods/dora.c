/* methods/dora.c: DoRA as a contribution on top of the host linear (METHODS.md "DoRA, rsLoRA"; PEFT's
 * DoraLinearLayer.forward: result += (mag/norm - 1) * (base - b) + (mag/norm) * s * lora(x)).
 * With g = mag / norm (norm detached) and ydir = x W0^T + s xa B^T (xa = x A^T):
 *   y = g ⊙ ydir + b;  dmag = sum_N dY ⊙ ydir / norm;  dY_g = g ⊙ dY;  dB = s dY_g^T xa;  dxa = s dY_g B;
 *   dA = dxa^T x;  dinp = dY_g W0 + dxa A  (the host already added dY W0: we add ((g - 1) ⊙ dY) W0).
 * Saved: xa (N, r), ydir (N, m), norm (m). */
#include "dora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

static void dora_create(Adapter *a, ParamSet *ps) {
    char name[PARAM_NAME_MAX + 32];
    int64_t sa[2] = {a->r, a->n}, sb[2] = {a->m, a->r}, sm[1] = {a->m};
    snprintf(name, sizeof name, "%s.lora_A", a->target);
    a->t[DORA_A] = params_add(ps, name, 2, sa, 1);
    snprintf(name, sizeof name, "%s.lora_B", a->target);
    a->t[DORA_B] = params_add(ps, name, 2, sb, 1);
    snprintf(name, sizeof name, "%s.lora_magnitude_vector", a->target);
    a->t[DORA_MAG] = params_add(ps, name, 1, sm, 0); /* a scale, like a norm weight: no weight decay */
    a->nt = 3;
}

/* V (m, n) = W0 + s B A into V, and norm (m) = ||V||_row (double sums). */
static void compose(const Adapter *a, float *V, float *norm) {
    const float *A = params_data(a->ps, a->t[DORA_A]), *B = params_data(a->ps, a->t[DORA_B]);
    memcpy(V, a->W0, (size_t)a->m * a->n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, a->n, a->r, a->scale, B, a->r, A, a->n, 1.0f, V, a->n);
    for (int i = 0; i < a->m; i++) {
        double s = 0;
        const float *v = V + (size_t)i * a->n;
        for (int j = 0; j < a->n; j++) s += (double)v[j] * v[j];
        norm[i] = (float)sqrt(s);
    }
}

void dora_row_norms(const Adapter *a, float *norm) {
    float *V = xmalloc((size_t)a->m * a->n * sizeof(float));
    compose(a, V, norm);
    free(V);
}

void dora_reset_magnitude(Adapter *a) { dora_row_norms(a, params_data(a->ps, a->t[DORA_MAG])); }

static void dora_init_default(Adapter *a, uint64_t seed) {
    float bound = 1.0f / sqrtf((float)a->n); /* PEFT: kaiming_uniform(a = sqrt 5) on A, B = 0 */
    rng_fill_uniform(params_data(a->ps, a->t[DORA_A]), (size_t)a->r * a->n, -bound, bound, seed,
                     rng_stream(a->target, DORA_A, 0));
    memset(params_data(a->ps, a->t[DORA_B]), 0, (size_t)a->m * a->r * sizeof(float));
    ASSERT(a->W0); /* adapters_attach sets W0 before init_default */
    dora_reset_magnitude(a);
}

void dora_forward_with_norm(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar, const float *norm_in) {
    const int m = a->m, n = a->n, r = a->r;
    const float *A = params_data(a->ps, a->t[DORA_A]), *B = params_data(a->ps, a->t[DORA_B]);
    const float *mag = params_data(a->ps, a->t[DORA_MAG]);
    float *norm = arena_floats(ar, (size_t)m);
    if (norm_in) memcpy(norm, norm_in, (size_t)m * sizeof(float));
    else compose(a, arena_floats(ar, (size_t)m * n), norm);
    float *xa = arena_floats(ar, (size_t)N * r);   // (N,r)
    float *ydir = arena_floats(ar, (size_t)N * m); // (N,m) = x W0^T + s xa B^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, n, 1.0f, inp, n, A, n, 0.0f, xa, r);
    for (int t = 0; t < N; t++) {
        const float *o = out + (size_t)t * ldo + a->row0;
        float *d = ydir + (size_t)t * m;
        for (int i = 0; i < m; i++) d[i] = o[i] - (a->bias ? a->bias[i] : 0.0f);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, m, r, a->scale, xa, r, B, r, 1.0f, ydir, m);
    for (int t = 0; t < N; t++) {
        float *o = out + (size_t)t * ldo + a->row0;
        const float *d = ydir + (size_t)t * m;
        for (int i = 0; i < m; i++) o[i] = mag[i] / norm[i] * d[i] + (a->bias ? a->bias[i] : 0.0f);
    }
    a->saved[0] = xa;
    a->saved[1] = ydir;
    a->saved[2] = norm;
}

static void dora_forward(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar) {
    dora_forward_with_norm(a, out, ldo, inp, N, ar, NULL);
}

static void dora_backward(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar) {
    const int m = a->m, n = a->n, r = a->r;
    const float *A = params_data(a->ps, a->t[DORA_A]), *B = params_data(a->ps, a->t[DORA_B]);
    const float *mag = params_data(a->ps, a->t[DORA_MAG]);
    float *dA = params_grad(a->ps, a->t[DORA_A]), *dB = params_grad(a->ps, a->t[DORA_B]);
    float *dmag = params_grad(a->ps, a->t[DORA_MAG]);
    const float *xa = a->saved[0], *ydir = a->saved[1], *norm = a->saved[2], *dy = dout + a->row0;
    if (dmag) { /* (m) += sum_t dy ⊙ ydir / norm */
        double *acc = arena_alloc(ar, (size_t)m * sizeof(double));
        for (int i = 0; i < m; i++) acc[i] = 0;
        for (int t = 0; t < N; t++)
            for (int i = 0; i < m; i++) acc[i] += (double)dy[(size_t)t * ldo + i] * ydir[(size_t)t * m + i];
        for (int i = 0; i < m; i++) dmag[i] += (float)(acc[i] / norm[i]);
    }
    if (!dA && !dB && !dinp) return;
    float *dyg = arena_floats(ar, (size_t)N * m); // (N,m) = g ⊙ dy
    for (int t = 0; t < N; t++)
        for (int i = 0; i < m; i++) dyg[(size_t)t * m + i] = mag[i] / norm[i] * dy[(size_t)t * ldo + i];
    if (dB) /* (m,r) += s dyg^T xa */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, r, N, a->scale, dyg, m, xa, r, 1.0f, dB, r);
    if (!dA && !dinp) return;
    float *dxa = arena_floats(ar, (size_t)N * r); // (N,r) = s dyg B
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, m, a->scale, dyg, m, B, r, 0.0f, dxa, r);
    if (dA) /* (r,n) += dxa^T inp */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, N, 1.0f, dxa, r, inp, n, 1.0f, dA, n);
    if (!dinp) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n, r, 1.0f, dxa, r, A, n, 1.0f, dinp, n);
    for (int t = 0; t < N; t++) /* the host added dy W0; the rescaled path needs g ⊙ dy: add (g - 1) ⊙ dy */
        for (int i = 0; i < m; i++) dyg[(size_t)t * m + i] -= dy[(size_t)t * ldo + i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n, m, 1.0f, dyg, m, a->W0, n, 1.0f, dinp, n);
}

/* dW = W' - W0 = (mag / norm) ⊙_row (W0 + s B A) - W0, row by row in place (no malloc: conv slots call
 * this every forward). */
static void dora_delta_weight(const Adapter *a, float *dW) {
    const float *A = params_data(a->ps, a->t[DORA_A]), *B = params_data(a->ps, a->t[DORA_B]);
    const float *mag = params_data(a->ps, a->t[DORA_MAG]);
    memcpy(dW, a->W0, (size_t)a->m * a->n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, a->n, a->r, a->scale, B, a->r, A, a->n, 1.0f, dW, a->n);
    for (int i = 0; i < a->m; i++) {
        float *w = dW + (size_t)i * a->n;
        const float *w0 = a->W0 + (size_t)i * a->n;
        double ss = 0;
        for (int j = 0; j < a->n; j++) ss += (double)w[j] * w[j];
        float g = mag[i] / (float)sqrt(ss);
        for (int j = 0; j < a->n; j++) w[j] = g * w[j] - w0[j];
    }
}

/* g (m,n) = dL/d(dW), norm detached as in the forward's backward: with V = W0 + s B A, c = mag / norm,
 * dL/dV = c ⊙_row g, so dB += s (c ⊙ g) A^T, dA += s B^T (c ⊙ g), dmag_i += sum_j g_ij V_ij / norm_i. */
static void dora_backward_delta(Adapter *a, const float *g, Arena *ar) {
    const int m = a->m, n = a->n, r = a->r;
    const float *A = params_data(a->ps, a->t[DORA_A]), *B = params_data(a->ps, a->t[DORA_B]);
    const float *mag = params_data(a->ps, a->t[DORA_MAG]);
    float *dA = params_grad(a->ps, a->t[DORA_A]), *dB = params_grad(a->ps, a->t[DORA_B]);
    float *dmag = params_grad(a->ps, a->t[DORA_MAG]);
    float *V = arena_floats(ar, (size_t)m * n), *norm = arena_floats(ar, (size_t)m);
    float *gc = arena_floats(ar, (size_t)m * n); // (m,n) = c ⊙ g
    compose(a, V, norm);
    for (int i = 0; i < m; i++) {
        const float *gi = g + (size_t)i * n, *vi = V + (size_t)i * n;
        float c = mag[i] / norm[i], *o = gc + (size_t)i * n;
        double acc = 0;
        for (int j = 0; j < n; j++) o[j] = c * gi[j], acc += (double)gi[j] * vi[j];
        if (dmag) dmag[i] += (float)(acc / norm[i]);
    }
    if (dB) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, n, a->scale, gc, n, A, n, 1.0f, dB, r);
    if (dA) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, m, a->scale, B, r, gc, n, 1.0f, dA, n);
}

const AdapterKind ADAPTER_DORA = {
    .name = "dora",
    .create = dora_create,
    .init_default = dora_init_default,
    .forward = dora_forward,
    .backward = dora_backward,
    .delta_weight = dora_delta_weight,
    .backward_delta = dora_backward_delta,
    /* tangent_basis NULL: the magnitudes add row-scaling directions, not of the QB / QA form; no regularizer */
};
