/* core/linalg.c: LAPACKE wrappers in double for row-major float matrices (contract in linalg.h).
 * Every input is copied to a column-major double buffer (the transpose is free during the float -> double
 * copy), so LAPACK runs on the same matrix numpy/torch would give it and LAPACKE does no extra transposes. */
#include "core/linalg.h"
#include "core/rng.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

/* Row-major float A (m,n) -> column-major double a (m,n), lda = m; fails on a non-finite entry. */
static int to_colmajor(double *a, const float *A, int m, int n, const char *fn, Error *err) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float x = A[(size_t)i * n + j];
            if (!isfinite(x))
                return err_set(err, "%s: A (%d x %d) has a non-finite entry %g at row %d, column %d: "
                               "expected finite values", fn, m, n, (double)x, i, j);
            a[(size_t)j * m + i] = x;
        }
    }
    return 0;
}

/* Column-major double a (rows, cols, lda) -> row-major float X (rows, cols). */
static void from_colmajor(float *X, const double *a, int rows, int cols, int lda) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) X[(size_t)i * cols + j] = (float)a[(size_t)j * lda + i];
}

/* SVD in double of a column-major copy of A: u (m,k) lda m, s (k), vt (k,n) ld k, all column-major.
 * u and vt may be NULL together (values only). dgesdd first; it can fail to converge on rare inputs where
 * dgesvd (QR iteration) does not, so retry with that. */
static int svd_double(double *u, double *s, double *vt, const float *A, int m, int n, const char *fn,
                      Error *err) {
    int k = MIN(m, n);
    double *a = xmalloc((size_t)m * n * sizeof *a);
    int rc = to_colmajor(a, A, m, n, fn, err);
    if (rc == 0) {
        char job = u ? 'S' : 'N';
        lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, job, m, n, a, m, s, u, m, vt, k);
        ASSERTF(info >= 0, "%s: LAPACKE_dgesdd argument %d is invalid", fn, (int)-info);
        if (info > 0) {
            to_colmajor(a, A, m, n, fn, err);
            double *superb = xmalloc((size_t)MAX(k, 2) * sizeof *superb);
            lapack_int info2 = LAPACKE_dgesvd(LAPACK_COL_MAJOR, job, job, m, n, a, m, s, u, m, vt, k, superb);
            free(superb);
            ASSERTF(info2 >= 0, "%s: LAPACKE_dgesvd argument %d is invalid", fn, (int)-info2);
            if (info2 > 0)
                rc = err_set(err, "%s: SVD of A (%d x %d) did not converge (LAPACK dgesdd info %d, dgesvd info %d)",
                             fn, m, n, (int)info, (int)info2);
        }
    }
    free(a);
    return rc;
}

int la_svd(float *U, float *S, float *Vt, const float *A, int m, int n, Error *err) {
    ASSERT(m >= 1 && n >= 1 && A);
    int k = MIN(m, n);
    int vectors = U || Vt;
    double *s = xmalloc((size_t)k * sizeof *s);
    double *u = vectors ? xmalloc((size_t)m * k * sizeof *u) : NULL;
    double *vt = vectors ? xmalloc((size_t)k * n * sizeof *vt) : NULL;
    int rc = svd_double(u, s, vt, A, m, n, "la_svd", err);
    if (rc == 0) {
        if (S)
            for (int i = 0; i < k; i++) S[i] = (float)s[i];
        if (U) from_colmajor(U, u, m, k, m);
        if (Vt) from_colmajor(Vt, vt, k, n, k);
    }
    free(s);
    free(u);
    free(vt);
    return rc;
}

/* la_svd_top's rule for the Gram path: the k-th eigenvalue of the Gram matrix at least this fraction of the
 * largest, i.e. S_k >= 1e-3 S_1. Then the Gram path's errors (eps S_1^2 / S_k in a singular value, S_1 / (2 S_i)
 * times the direct SVD's in a vector) stay ~1e-13 of S_1, far below float rounding; below it (a gradient of
 * low rank, a zero matrix) dgesvdx works on A itself. */
#define LA_TOP_GRAM_MIN 1e-6

/* Flip triplet i (column i of u (rows, ld lu) and of v (cols, ld lv), both column-major) so that the entry of
 * largest magnitude of u's column is positive (the first such on ties). */
static void normalize_pair_signs(double *u, int rows, int lu, double *v, int cols, int lv, int k) {
    for (int i = 0; i < k; i++) {
        double *ui = u + (size_t)i * lu, *vi = v + (size_t)i * lv;
        int best = 0;
        for (int t = 1; t < rows; t++)
            if (fabs(ui[t]) > fabs(ui[best])) best = t;
        if (ui[best] >= 0) continue;
        for (int t = 0; t < rows; t++) ui[t] = -ui[t];
        for (int t = 0; t < cols; t++) vi[t] = -vi[t];
    }
}

/* Gram path: G = the smaller of A^T A, A A^T (p x p, p = min(m, n)); its k largest eigenpairs (dsyevr range 'I');
 * the other side's vectors by one GEMM, divided by S. a is A column-major (m, n). Fills s (k, descending),
 * u (m, k) and v (n, k) column-major (vectors always: the sign rule needs them). Returns 1 (nothing filled)
 * when S_k < 1e-3 S_1 (LA_TOP_GRAM_MIN) or dsyevr fails: then the caller takes dgesvdx. */
static int svd_top_gram(double *s, double *u, double *v, const double *a, int m, int n, int k) {
    int tall = m >= n, p = tall ? n : m;
    double *g = xmalloc((size_t)p * p * sizeof *g), *w = xmalloc((size_t)p * sizeof *w);
    double *z = xmalloc((size_t)p * k * sizeof *z);
    lapack_int *isuppz = xmalloc((size_t)2 * k * sizeof *isuppz), found = 0;
    if (tall) cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, m, 1.0, a, m, 0.0, g, n);   /* A^T A */
    else cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, m, n, 1.0, a, m, 0.0, g, m);      /* A A^T */
    lapack_int info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', p, g, p, 0.0, 0.0, p - k + 1, p, 0.0, &found, w,
                                     z, p, isuppz);
    ASSERTF(info >= 0, "la_svd_top: LAPACKE_dsyevr argument %d is invalid", (int)-info);
    int rc = 1;
    /* w ascending: w[k-1] the largest, w[0] the k-th largest */
    if (info == 0 && found == k && w[k - 1] > 0 && w[0] >= LA_TOP_GRAM_MIN * w[k - 1]) {
        double *zd = tall ? v : u; /* the Gram side, descending */
        int zl = tall ? n : m;
        for (int i = 0; i < k; i++) {
            s[i] = sqrt(w[k - 1 - i]);
            memcpy(zd + (size_t)i * zl, z + (size_t)(k - 1 - i) * p, (size_t)p * sizeof *z);
        }
        if (tall) /* U = A V diag(1/S) */
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.0, a, m, v, n, 0.0, u, m);
        else /* V = A^T U diag(1/S) */
            cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, k, m, 1.0, a, m, u, m, 0.0, v, n);
        double *o = tall ? u : v;
        int ol = tall ? m : n;
        for (int i = 0; i < k; i++)
            for (int t = 0; t < ol; t++) o[(size_t)i * ol + t] /= s[i];
        rc = 0;
    }
    free(g), free(w), free(z), free(isuppz);
    return rc;
}

int la_svd_top(float *U, float *S, float *Vt, const float *A, int m, int n, int k, Error *err) {
    ASSERT(m >= 1 && n >= 1 && A);
    int kmax = MIN(m, n);
    ASSERTF(k >= 1 && k <= kmax, "la_svd_top: k = %d triplets of A (%d x %d): expected 1 <= k <= %d", k, m, n, kmax);
    double *a = xmalloc((size_t)m * n * sizeof *a), *s = xmalloc((size_t)kmax * sizeof *s);
    /* u (m, kmax) column-major, v (n, kmax) column-major (V, not Vt: one layout for both sides) */
    double *u = xmalloc((size_t)m * kmax * sizeof *u), *v = xmalloc((size_t)n * kmax * sizeof *v);
    int rc = to_colmajor(a, A, m, n, "la_svd_top", err);
    if (rc == 0 && svd_top_gram(s, u, v, a, m, n, k)) {
        /* dgesvdx on A (it overwrites a: the Gram path is done with it) */
        double *vt = xmalloc((size_t)k * n * sizeof *vt);
        lapack_int *superb = xmalloc((size_t)12 * kmax * sizeof *superb), ns = 0;
        lapack_int info = LAPACKE_dgesvdx(LAPACK_COL_MAJOR, 'V', 'V', 'I', m, n, a, m, 0.0, 0.0, 1, k, &ns, s, u, m,
                                          vt, k, superb);
        ASSERTF(info >= 0, "la_svd_top: LAPACKE_dgesvdx argument %d is invalid", (int)-info);
        int ldvt = k;
        if (info > 0 || ns != k) { /* not converged: the full SVD (dgesdd, then dgesvd), first k */
            free(vt);
            vt = xmalloc((size_t)kmax * n * sizeof *vt);
            rc = svd_double(u, s, vt, A, m, n, "la_svd_top", err);
            ldvt = kmax;
        }
        if (rc == 0)
            for (int i = 0; i < k; i++)
                for (int j = 0; j < n; j++) v[(size_t)i * n + j] = vt[(size_t)j * ldvt + i];
        free(vt), free(superb);
    }
    if (rc == 0) {
        normalize_pair_signs(u, m, m, v, n, n, k);
        if (S)
            for (int i = 0; i < k; i++) S[i] = (float)s[i];
        if (U) from_colmajor(U, u, m, k, m);
        if (Vt) /* Vt row i = column i of v */
            for (int i = 0; i < k; i++)
                for (int j = 0; j < n; j++) Vt[(size_t)i * n + j] = (float)v[(size_t)i * n + j];
    }
    free(a), free(s), free(u), free(v);
    return rc;
}

/* Q <- an orthonormal basis of the columns of x (rows, q), column-major, in place (dgeqrf + dorgqr). */
static void orthonormalize(double *x, int rows, int q, double *tau) {
    lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, rows, q, x, rows, tau);
    ASSERTF(info == 0, "la_svd_lowrank: LAPACKE_dgeqrf returned %d (%d x %d)", (int)info, rows, q);
    info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, rows, q, q, x, rows, tau);
    ASSERTF(info == 0, "la_svd_lowrank: LAPACKE_dorgqr returned %d (%d x %d)", (int)info, rows, q);
}

int la_svd_lowrank(float *U, float *S, float *Vt, const float *A, int m, int n, int k, int q, int niter,
                   uint64_t seed, uint64_t stream, Error *err) {
    ASSERT(m >= 1 && n >= 1 && A);
    ASSERTF(k >= 1 && k <= q && q <= MIN(m, n) && niter >= 0,
            "la_svd_lowrank: k = %d, q = %d, niter = %d for A (%d x %d): expected 1 <= k <= q <= %d, niter >= 0", k, q,
            niter, m, n, MIN(m, n));
    /* T = A^T when m < n or n > q (torch's choice: the small side's basis), else A; T is (mm, nn) */
    int tr = m < n || n > q, mm = tr ? n : m, nn = tr ? m : n;
    CBLAS_TRANSPOSE opT = tr ? CblasTrans : CblasNoTrans, opTt = tr ? CblasNoTrans : CblasTrans;
    double *a = xmalloc((size_t)m * n * sizeof *a), *x = xmalloc((size_t)mm * q * sizeof *x);
    double *y = xmalloc((size_t)nn * q * sizeof *y), *tau = xmalloc((size_t)q * sizeof *tau);
    double *s = xmalloc((size_t)q * sizeof *s), *ub = xmalloc((size_t)nn * q * sizeof *ub);
    double *vbt = xmalloc((size_t)q * q * sizeof *vbt), *lq = xmalloc((size_t)mm * q * sizeof *lq);
    int rc = to_colmajor(a, A, m, n, "la_svd_lowrank", err);
    if (rc == 0) {
        float *w = xmalloc((size_t)nn * q * sizeof *w);
        rng_fill_normal(w, (size_t)nn * q, 0.0f, 1.0f, seed, stream);
        for (size_t i = 0; i < (size_t)nn * q; i++) y[i] = w[i];
        free(w);
        /* x = T y: T is op(a) with a (m, n) column-major */
        cblas_dgemm(CblasColMajor, opT, CblasNoTrans, mm, q, nn, 1.0, a, m, y, nn, 0.0, x, mm);
        orthonormalize(x, mm, q, tau);
        for (int it = 0; it < niter; it++) {
            cblas_dgemm(CblasColMajor, opTt, CblasNoTrans, nn, q, mm, 1.0, a, m, x, mm, 0.0, y, nn); /* T^T Q */
            orthonormalize(y, nn, q, tau);
            cblas_dgemm(CblasColMajor, opT, CblasNoTrans, mm, q, nn, 1.0, a, m, y, nn, 0.0, x, mm);  /* T Q' */
            orthonormalize(x, mm, q, tau);
        }
        /* Bt = T^T Q (nn, q) = Ub diag(s) Vb^T, so T ~ Q Q^T T = (Q Vb) diag(s) Ub^T */
        cblas_dgemm(CblasColMajor, opTt, CblasNoTrans, nn, q, mm, 1.0, a, m, x, mm, 0.0, y, nn);
        lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', nn, q, y, nn, s, ub, nn, vbt, q);
        ASSERTF(info >= 0, "la_svd_lowrank: LAPACKE_dgesdd argument %d is invalid", (int)-info);
        if (info > 0) {
            rc = err_set(err, "la_svd_lowrank: the SVD of the (%d x %d) projection of A (%d x %d) did not converge "
                         "(LAPACK dgesdd info %d)", nn, q, m, n, (int)info);
        } else {
            /* lq = Q Vb (mm, q): T's left vectors; ub: T's right vectors */
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, mm, q, q, 1.0, x, mm, vbt, q, 0.0, lq, mm);
            double *u = tr ? ub : lq, *v = tr ? lq : ub; /* A's: u (m, q), v (n, q), column-major */
            normalize_pair_signs(u, m, m, v, n, n, k);
            if (S)
                for (int i = 0; i < k; i++) S[i] = (float)s[i];
            if (U) from_colmajor(U, u, m, k, m);
            if (Vt)
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < n; j++) Vt[(size_t)i * n + j] = (float)v[(size_t)i * n + j];
        }
    }
    free(a), free(x), free(y), free(tau), free(s), free(ub), free(vbt), free(lq);
    return rc;
}

int la_qr(float *Q, float *R, const float *A, int m, int n, Error *err) {
    ASSERT(m >= 1 && n >= 1 && A);
    int k = MIN(m, n);
    double *a = xmalloc((size_t)m * n * sizeof *a);
    double *tau = xmalloc((size_t)k * sizeof *tau);
    int rc = to_colmajor(a, A, m, n, "la_qr", err);
    if (rc == 0) {
        lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, a, m, tau);
        ASSERTF(info == 0, "la_qr: LAPACKE_dgeqrf returned %d for A (%d x %d)", (int)info, m, n);
        if (R)
            for (int i = 0; i < k; i++)
                for (int j = 0; j < n; j++) R[(size_t)i * n + j] = j >= i ? (float)a[(size_t)j * m + i] : 0.0f;
        if (Q) {
            /* The reflectors sit in the first k columns; dorgqr forms Q (m,k) in place. */
            info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, k, k, a, m, tau);
            ASSERTF(info == 0, "la_qr: LAPACKE_dorgqr returned %d for A (%d x %d)", (int)info, m, n);
            from_colmajor(Q, a, m, k, m);
        }
    }
    free(a);
    free(tau);
    return rc;
}

int la_eigh(float *w, float *V, const float *A, int n, Error *err) {
    ASSERT(n >= 1 && A);
    double *a = xmalloc((size_t)n * n * sizeof *a);
    double *ev = xmalloc((size_t)n * sizeof *ev);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        for (int j = 0; j < n; j++) {
            float x = A[(size_t)i * n + j];
            if (!isfinite(x)) {
                rc = err_set(err, "la_eigh: A (%d x %d) has a non-finite entry %g at row %d, column %d: "
                             "expected finite values", n, n, (double)x, i, j);
                break;
            }
            a[(size_t)j * n + i] = 0.5 * ((double)x + (double)A[(size_t)j * n + i]); /* symmetric: layout-free */
        }
    }
    if (rc == 0) {
        lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, V ? 'V' : 'N', 'L', n, a, n, ev);
        ASSERTF(info >= 0, "la_eigh: LAPACKE_dsyevd argument %d is invalid", (int)-info);
        if (info > 0) {
            rc = err_set(err, "la_eigh: eigendecomposition of A (%d x %d) did not converge (LAPACK dsyevd info %d)",
                         n, n, (int)info);
        } else {
            /* LAPACK returns ascending order; reverse it (column j of V <- LAPACK's column n-1-j). */
            if (w)
                for (int j = 0; j < n; j++) w[j] = (float)ev[n - 1 - j];
            if (V)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) V[(size_t)i * n + j] = (float)a[(size_t)(n - 1 - j) * n + i];
        }
    }
    free(a);
    free(ev);
    return rc;
}

int la_pinv(float *Ap, const float *A, int m, int n, double rcond, double *tol_used, int *rank_used,
            Error *err) {
    ASSERT(m >= 1 && n >= 1 && A && Ap);
    int k = MIN(m, n);
    double *s = xmalloc((size_t)k * sizeof *s);
    double *u = xmalloc((size_t)m * k * sizeof *u);
    double *vt = xmalloc((size_t)k * n * sizeof *vt);
    int rc = svd_double(u, s, vt, A, m, n, "la_pinv", err);
    if (rc == 0) {
        if (rcond < 0) rcond = (double)MAX(m, n) * FLT_EPSILON;
        double tol = rcond * s[0];
        int r = 0;
        while (r < k && s[r] > tol) r++;
        /* Ap = V_r diag(1/s) U_r^T: scale the kept rows of vt (column-major, ld k), then one GEMM.
         * In column-major terms Ap^T (m,n) = U_r (m,r) * (diag(1/s) Vt_r) (r,n), which read row-major is Ap (n,m). */
        for (int j = 0; j < n; j++)
            for (int i = 0; i < r; i++) vt[(size_t)j * k + i] /= s[i];
        double *apt = xcalloc((size_t)m * n, sizeof *apt);
        if (r > 0)
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0, u, m, vt, k, 0.0, apt, m);
        /* apt is Ap^T column-major (m,n), i.e. Ap row-major (n,m) already. */
        for (size_t i = 0; i < (size_t)m * n; i++) Ap[i] = (float)apt[i];
        free(apt);
        if (tol_used) *tol_used = tol;
        if (rank_used) *rank_used = r;
    }
    free(s);
    free(u);
    free(vt);
    return rc;
}

int la_orth(float *Q, int *rank, const float *A, int m, int n, Error *err) {
    ASSERT(m >= 1 && n >= 1 && A && Q && rank);
    int k = MIN(m, n);
    double *s = xmalloc((size_t)k * sizeof *s);
    double *u = xmalloc((size_t)m * k * sizeof *u);
    double *vt = xmalloc((size_t)k * n * sizeof *vt);
    int rc = svd_double(u, s, vt, A, m, n, "la_orth", err);
    if (rc == 0) {
        double tol = (double)MAX(m, n) * FLT_EPSILON * s[0];
        int r = 0;
        while (r < k && s[r] > tol) r++;
        from_colmajor(Q, u, m, r, m);
        *rank = r;
    }
    free(s);
    free(u);
    free(vt);
    return rc;
}
