/* eval/info_loss.c: see info_loss.h (METHODS.md, "Research metrics": information loss). */
#include "eval/info_loss.h"

#include "core/linalg.h"

#include <math.h>
#include <string.h>

/* In place: R (m,n) <- (I - QB QB^T) R (I - QA QA^T), as R -= QB (QB^T R), then R -= (R QA) QA^T.
 * Scratch sizes kb*n and m*ka doubles; nothing m x m or n x n. */
static void perp_inplace(double *R, const float *QB, int kb, const float *QA, int ka, int m, int n) {
    if (kb > 0) {
        double *X = xcalloc((size_t)kb * n, sizeof *X); /* QB^T R (kb,n) */
        for (int i = 0; i < m; i++)
            for (int l = 0; l < kb; l++) {
                double q = QB[(size_t)i * kb + l];
                const double *ri = R + (size_t)i * n;
                double *xl = X + (size_t)l * n;
                for (int j = 0; j < n; j++) xl[j] += q * ri[j];
            }
        for (int i = 0; i < m; i++)
            for (int l = 0; l < kb; l++) {
                double q = QB[(size_t)i * kb + l];
                double *ri = R + (size_t)i * n;
                const double *xl = X + (size_t)l * n;
                for (int j = 0; j < n; j++) ri[j] -= q * xl[j];
            }
        free(X);
    }
    if (ka > 0) {
        double *y = xmalloc((size_t)ka * sizeof *y); /* one row of R QA */
        for (int i = 0; i < m; i++) {
            double *ri = R + (size_t)i * n;
            memset(y, 0, (size_t)ka * sizeof *y);
            for (int j = 0; j < n; j++)
                for (int l = 0; l < ka; l++) y[l] += ri[j] * (double)QA[(size_t)j * ka + l];
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int l = 0; l < ka; l++) s += y[l] * (double)QA[(size_t)j * ka + l];
                ri[j] -= s;
            }
        }
        free(y);
    }
}

static double *to_double(const float *a, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}
static double frob(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}
static int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* Q_B = orth(B) (m,kb), Q_A = orth(A^T) (n,ka); caller frees *QB, *QA. */
static int tangent_bases(float **QB, int *kb, float **QA, int *ka, const float *B, const float *A, int m, int n,
                         int r, const char *fn, Error *err) {
    *QB = xmalloc((size_t)m * MIN(m, r) * sizeof **QB);
    *QA = xmalloc((size_t)n * MIN(n, r) * sizeof **QA);
    float *At = xmalloc((size_t)n * r * sizeof *At);
    for (int l = 0; l < r; l++)
        for (int j = 0; j < n; j++) At[(size_t)j * r + l] = A[(size_t)l * n + j];
    Error e2 = {{0}};
    int rc = la_orth(*QB, kb, B, m, r, &e2);
    if (rc != 0) {
        err_set(err, "%s: B (%d,%d): %s", fn, m, r, e2.msg);
    } else if ((rc = la_orth(*QA, ka, At, n, r, &e2)) != 0) {
        err_set(err, "%s: A (%d,%d): %s", fn, r, n, e2.msg);
    }
    free(At);
    if (rc != 0) {
        free(*QB), free(*QA);
        *QB = *QA = NULL;
    }
    return rc;
}

/* In place: R (m,n) <- R - QB (QB^T R QA) QA^T, the residual off the product-form tangent space {QB X QA^T}
 * (LoRA-XS). Scratch kb*ka + ka doubles. kb = 0 or ka = 0: the space is {0}, R is left as is. */
static void perp_product_inplace(double *R, const float *QB, int kb, const float *QA, int ka, int m, int n) {
    if (kb == 0 || ka == 0) return;
    double *C = xcalloc((size_t)kb * ka, sizeof *C), *y = xmalloc((size_t)ka * sizeof *y);
    for (int i = 0; i < m; i++) { /* C = QB^T R QA (kb,ka), one row of R QA at a time */
        for (int l = 0; l < ka; l++) {
            double acc = 0;
            for (int j = 0; j < n; j++) acc += R[(size_t)i * n + j] * (double)QA[(size_t)j * ka + l];
            y[l] = acc;
        }
        for (int b = 0; b < kb; b++)
            for (int l = 0; l < ka; l++) C[(size_t)b * ka + l] += (double)QB[(size_t)i * kb + b] * y[l];
    }
    for (int i = 0; i < m; i++) /* R -= QB C QA^T */
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int b = 0; b < kb; b++) {
                double qb = QB[(size_t)i * kb + b];
                for (int l = 0; l < ka; l++) acc += qb * C[(size_t)b * ka + l] * (double)QA[(size_t)j * ka + l];
            }
            R[(size_t)i * n + j] -= acc;
        }
    free(C), free(y);
}

typedef void (*PerpFn)(double *R, const float *QB, int kb, const float *QA, int ka, int m, int n);

/* ||G - P_T(G)|| / ||G|| for the tangent space that perp removes (LoRA's sum form or LoRA-XS's product form). */
static int info_loss_with(InfoLoss *out, const float *G, const float *B, const float *A, int m, int n, int r,
                          PerpFn perp, const char *fn, Error *err) {
    ASSERT(out && G && B && A && m >= 1 && n >= 1 && r >= 1);
    memset(out, 0, sizeof *out);
    size_t mn = (size_t)m * n;
    if (!all_finite(G, mn)) return err_set(err, "%s: G (%d,%d) has a non-finite entry", fn, m, n);
    float *QB, *QA;
    int kb, ka;
    if (tangent_bases(&QB, &kb, &QA, &ka, B, A, m, n, r, fn, err) != 0) return -1;
    double *R = to_double(G, mn);
    out->g_norm = frob(R, mn);
    perp(R, QB, kb, QA, ka, m, n);
    out->res_norm = frob(R, mn);
    out->ratio = out->g_norm > 0 ? out->res_norm / out->g_norm : 0.0;
    out->rank_b = kb;
    out->rank_a = ka;
    free(R), free(QB), free(QA);
    return 0;
}

int info_loss(InfoLoss *out, const float *G, const float *B, const float *A, int m, int n, int r, Error *err) {
    return info_loss_with(out, G, B, A, m, n, r, perp_inplace, "info_loss", err);
}

int info_loss_xs(InfoLoss *out, const float *G, const float *B, const float *A, int m, int n, int r, Error *err) {
    return info_loss_with(out, G, B, A, m, n, r, perp_product_inplace, "info_loss_xs", err);
}

void tangent_project(float *P, const float *M, const float *QB, int kb, const float *QA, int ka, int m, int n) {
    ASSERT(P && M && P != M && m >= 1 && n >= 1 && kb >= 0 && ka >= 0);
    ASSERT((kb == 0 || QB) && (ka == 0 || QA));
    size_t mn = (size_t)m * n;
    double *R = to_double(M, mn);
    perp_inplace(R, QB, kb, QA, ka, m, n);
    for (size_t i = 0; i < mn; i++) P[i] = (float)((double)M[i] - R[i]); /* P_T = I - perp */
    free(R);
}

typedef void (*PerpFn)(double *R, const float *QB, int kb, const float *QA, int ka, int m, int n);

/* The decomposition for either tangent-space form: perp = I - P_T in place (sum form: perp_inplace; product
 * form: perp_product_inplace). Every step below only uses that P_T is an orthogonal projection. */
static int decompose(InfoDecomp *out, const float *G_full, const float *G_tilde, const float *B, const float *A,
                     int m, int n, int r, PerpFn perp, const char *fn, Error *err) {
    ASSERT(out && G_full && G_tilde && B && A && m >= 1 && n >= 1 && r >= 1);
    memset(out, 0, sizeof *out);
    size_t mn = (size_t)m * n;
    if (!all_finite(G_full, mn)) return err_set(err, "%s: G_full (%d,%d) has a non-finite entry", fn, m, n);
    if (!all_finite(G_tilde, mn)) return err_set(err, "%s: G_tilde (%d,%d) has a non-finite entry", fn, m, n);
    float *QB, *QA;
    int kb, ka;
    if (tangent_bases(&QB, &kb, &QA, &ka, B, A, m, n, r, fn, err) != 0) return -1;
    double *perp_f = to_double(G_full, mn), *perp_t = to_double(G_tilde, mn), *D = xmalloc(mn * sizeof *D);
    out->g_full_norm = frob(perp_f, mn);
    for (size_t i = 0; i < mn; i++) D[i] = (double)G_full[i] - (double)G_tilde[i];
    out->bound = frob(D, mn);
    perp(perp_f, QB, kb, QA, ka, m, n); /* G_full - P_T(G_full) */
    out->irreducible = frob(perp_f, mn);
    perp(perp_t, QB, kb, QA, ka, m, n); /* G~ - P_T(G~) */
    double s = 0;
    for (size_t i = 0; i < mn; i++) { /* G_full - P_T(G~) = G_full - G~ + perp(G~) */
        double v = D[i] + perp_t[i];
        s += v * v;
    }
    out->total = sqrt(s);
    perp(D, QB, kb, QA, ka, m, n); /* now perp(G_full - G~) */
    s = 0;
    for (size_t i = 0; i < mn; i++) { /* P_T(G_full - G~) = (G_full - G~) - perp(G_full - G~) */
        double v = ((double)G_full[i] - (double)G_tilde[i]) - D[i];
        s += v * v;
    }
    out->reducible = sqrt(s);
    free(perp_f), free(perp_t), free(D), free(QB), free(QA);
    return 0;
}

int info_loss_decompose(InfoDecomp *out, const float *G_full, const float *G_tilde, const float *B, const float *A,
                        int m, int n, int r, Error *err) {
    return decompose(out, G_full, G_tilde, B, A, m, n, r, perp_inplace, "info_loss_decompose", err);
}

int info_loss_decompose_xs(InfoDecomp *out, const float *G_full, const float *G_tilde, const float *B, const float *A,
                           int m, int n, int r, Error *err) {
    return decompose(out, G_full, G_tilde, B, A, m, n, r, perp_product_inplace, "info_loss_decompose_xs", err);
}
