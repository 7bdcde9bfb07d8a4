/* tests/test_linalg.c: core/linalg.h checked against the properties that define each factorization
 * (reconstruction, orthonormality, ordering, the Penrose conditions) and against matrices with a known
 * spectrum. One executable; argv[1] picks the ctest case (linalg_<name>). */
#include "core/linalg.h"
#include "testlib.h"

#include <float.h>
#include <string.h>

#define TOL 1e-5 /* relative; float results of a double computation are good to ~1e-7 */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* splitmix64 -> [-1, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}
static float *rand_mat(int m, int n) {
    float *a = xmalloc((size_t)m * n * sizeof *a);
    for (size_t i = 0; i < (size_t)m * n; i++) a[i] = (float)urand();
    return a;
}
/* Integer matrix (m,n) of exact rank <= r: (m,r) x (r,n) with small integer entries, exact in float. */
static float *lowrank_int(int m, int n, int r) {
    ASSERT(m <= 64 && n <= 64);
    float *a = xcalloc((size_t)m * n, sizeof *a);
    for (int l = 0; l < r; l++) {
        float b[64], c[64];
        for (int i = 0; i < m; i++) b[i] = (float)((int)(urand() * 4));
        for (int j = 0; j < n; j++) c[j] = (float)((int)(urand() * 4));
        b[l % m] += 5; /* keep the factors independent */
        c[l % n] += 5;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) a[(size_t)i * n + j] += b[i] * c[j];
    }
    return a;
}
/* C (m,n) = op(A) op(B) in double, op = transpose when ta/tb; A is stored (m,k) or (k,m). */
static void matmul(double *C, const float *A, int ta, const float *B, int tb, int m, int k, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++)
                s += (double)(ta ? A[(size_t)l * m + i] : A[(size_t)i * k + l]) *
                     (double)(tb ? B[(size_t)j * k + l] : B[(size_t)l * n + j]);
            C[(size_t)i * n + j] = s;
        }
}
static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}
/* max |C - ref| / scale, C double, ref float. */
static double diff_rel(const double *C, const float *ref, size_t n, double scale) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(C[i] - (double)ref[i]);
        e = isnan(d) ? INFINITY : fmax(e, d);
    }
    return e / scale;
}
/* max |X^T X - I| over X (rows, k) row-major: orthonormal columns. */
static double orth_err(const float *X, int rows, int k) {
    double *G = xmalloc((size_t)k * k * sizeof *G);
    matmul(G, X, 1, X, 0, k, rows, k);
    double e = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) e = fmax(e, fabs(G[(size_t)i * k + j] - (i == j)));
    free(G);
    return e;
}
static float *transpose(const float *A, int m, int n) {
    float *t = xmalloc((size_t)m * n * sizeof *t);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) t[(size_t)j * m + i] = A[(size_t)i * n + j];
    return t;
}
/* A (m,n) = Q1 diag(s) Q2^T with random orthonormal Q1 (m,k), Q2 (n,k) from la_qr: a known spectrum. */
static float *known_spectrum(int m, int n, const double *s) {
    int k = m < n ? m : n;
    float *G1 = rand_mat(m, k), *G2 = rand_mat(n, k), *Q1 = xmalloc((size_t)m * k * 4), *Q2 = xmalloc((size_t)n * k * 4);
    Error err;
    CHECK(la_qr(Q1, NULL, G1, m, k, &err) == 0);
    CHECK(la_qr(Q2, NULL, G2, n, k, &err) == 0);
    float *A = xmalloc((size_t)m * n * sizeof *A);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int l = 0; l < k; l++) v += (double)Q1[(size_t)i * k + l] * s[l] * (double)Q2[(size_t)j * k + l];
            A[(size_t)i * n + j] = (float)v;
        }
    free(G1), free(G2), free(Q1), free(Q2);
    return A;
}

/* ---- linalg_svd ------------------------------------------------------------------------------------- */
static void check_svd(const float *A, int m, int n, int rank, const char *what) {
    int k = m < n ? m : n;
    float *U = xmalloc((size_t)m * k * 4), *S = xmalloc((size_t)k * 4), *Vt = xmalloc((size_t)k * n * 4);
    float *S2 = xmalloc((size_t)k * 4);
    Error err = {{0}};
    int rc = la_svd(U, S, Vt, A, m, n, &err);
    CHECK_MSG(rc == 0, "%s: %s", what, err.msg);
    /* U diag(S) Vt = A */
    float *US = xmalloc((size_t)m * k * 4);
    for (int i = 0; i < m; i++)
        for (int l = 0; l < k; l++) US[(size_t)i * k + l] = U[(size_t)i * k + l] * S[l];
    double *R = xmalloc((size_t)m * n * sizeof *R);
    matmul(R, US, 0, Vt, 0, m, k, n);
    double e = diff_rel(R, A, (size_t)m * n, max_abs(A, (size_t)m * n));
    CHECK_MSG(e < TOL, "%s (%dx%d): reconstruction error %.3g", what, m, n, e);
    e = orth_err(U, m, k);
    CHECK_MSG(e < TOL, "%s (%dx%d): U^T U - I = %.3g", what, m, n, e);
    float *V = transpose(Vt, k, n);
    e = orth_err(V, n, k);
    CHECK_MSG(e < TOL, "%s (%dx%d): V^T V - I = %.3g", what, m, n, e);
    for (int i = 0; i + 1 < k; i++) CHECK_MSG(S[i] >= S[i + 1], "%s: S[%d] = %g < S[%d] = %g", what, i, S[i], i + 1, S[i + 1]);
    CHECK(S[k - 1] >= 0);
    for (int i = rank; i < k; i++) CHECK_MSG(S[i] <= TOL * S[0], "%s: rank %d but S[%d] = %g (S[0] = %g)", what, rank, i, S[i], S[0]);
    if (rank > 0) CHECK_MSG(S[rank - 1] > 1e-3 * S[0], "%s: S[%d] = %g unexpectedly small", what, rank - 1, S[rank - 1]);
    /* values only (no vectors) agree with the full call */
    CHECK(la_svd(NULL, S2, NULL, A, m, n, &err) == 0);
    for (int i = 0; i < k; i++) CHECK_NEAR(S2[i], S[i], TOL * S[0]);
    free(U), free(S), free(Vt), free(S2), free(US), free(R), free(V);
}

static void test_svd(void) {
    int shapes[][2] = {{7, 7}, {12, 5}, {5, 12}, {1, 6}, {6, 1}, {40, 33}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1];
        float *A = rand_mat(m, n);
        check_svd(A, m, n, m < n ? m : n, "random");
        free(A);
    }
    int rd[][3] = {{9, 6, 2}, {6, 9, 3}, {8, 8, 1}};
    for (size_t t = 0; t < ARRAY_LEN(rd); t++) {
        float *A = lowrank_int(rd[t][0], rd[t][1], rd[t][2]);
        check_svd(A, rd[t][0], rd[t][1], rd[t][2], "rank-deficient");
        free(A);
    }
    /* known singular values, given out of order */
    double s0[5] = {3.0, 10.0, 0.5, 1e-2, 7.0}, sorted[5] = {10.0, 7.0, 3.0, 0.5, 1e-2};
    float *A = known_spectrum(9, 5, s0), S[5];
    Error err;
    CHECK(la_svd(NULL, S, NULL, A, 9, 5, &err) == 0);
    for (int i = 0; i < 5; i++) CHECK_NEAR(S[i], sorted[i], TOL * 10.0);
    free(A);
    /* zero matrix: all singular values 0 */
    float Z[12] = {0}, SZ[3];
    CHECK(la_svd(NULL, SZ, NULL, Z, 3, 4, &err) == 0);
    CHECK(SZ[0] == 0 && SZ[2] == 0);
}

/* ---- linalg_svd_top --------------------------------------------------------------------------------- */
/* la_svd_top(k) against la_svd: S to 1e-6 relative, vectors to 1e-5 (entries) and |cos| >= 1 - 1e-6 after
 * aligning each triplet's sign; A v_i = S_i u_i (each pair's signs agree); orthonormal; the sign rule (U's
 * largest-|.| entry positive). `exact` triplets are compared with la_svd (those beyond a matrix's rank are not
 * unique). */
static void check_svd_top(const float *A, int m, int n, int k, int exact, const char *what) {
    int kk = m < n ? m : n;
    float *rU = xmalloc((size_t)m * kk * 4), *rS = xmalloc((size_t)kk * 4), *rVt = xmalloc((size_t)kk * n * 4);
    float *U = xmalloc((size_t)m * k * 4), *S = xmalloc((size_t)k * 4), *Vt = xmalloc((size_t)k * n * 4);
    float *S2 = xmalloc((size_t)k * 4);
    Error err = {{0}};
    CHECK(la_svd(rU, rS, rVt, A, m, n, &err) == 0);
    CHECK_MSG(la_svd_top(U, S, Vt, A, m, n, k, &err) == 0, "%s: %s", what, err.msg);
    double es = 0, ev = 0, ecos = 0, epair = 0, scale = rS[0] > 0 ? rS[0] : 1;
    int rule = 1;
    for (int i = 0; i < k; i++) {
        es = fmax(es, fabs((double)S[i] - rS[i]) / scale);
        if (i + 1 < k) CHECK(S[i] >= S[i + 1]);
        CHECK(S[i] >= 0);
        int best = 0;
        for (int o = 1; o < m; o++)
            if (fabsf(U[(size_t)o * k + i]) > fabsf(U[(size_t)best * k + i])) best = o;
        rule &= U[(size_t)best * k + i] > 0 || S[i] == 0;
        /* A v_i - S_i u_i, relative to S_1 */
        for (int o = 0; o < m; o++) {
            double av = 0;
            for (int j = 0; j < n; j++) av += (double)A[(size_t)o * n + j] * Vt[(size_t)i * n + j];
            epair = fmax(epair, fabs(av - (double)S[i] * U[(size_t)o * k + i]) / scale);
        }
        if (i >= exact) continue;
        double du = 0, dv = 0, nu = 0, nv = 0, nru = 0, nrv = 0;
        for (int o = 0; o < m; o++) {
            du += (double)U[(size_t)o * k + i] * rU[(size_t)o * kk + i];
            nu += (double)U[(size_t)o * k + i] * U[(size_t)o * k + i];
            nru += (double)rU[(size_t)o * kk + i] * rU[(size_t)o * kk + i];
        }
        for (int j = 0; j < n; j++) {
            dv += (double)Vt[(size_t)i * n + j] * rVt[(size_t)i * n + j];
            nv += (double)Vt[(size_t)i * n + j] * Vt[(size_t)i * n + j];
            nrv += (double)rVt[(size_t)i * n + j] * rVt[(size_t)i * n + j];
        }
        double sg = du < 0 ? -1 : 1;
        CHECK_MSG(du * dv > 0, "%s: triplet %d: u and v flipped apart", what, i);
        ecos = fmax(ecos, fmax(1 - fabs(du) / sqrt(nu * nru), 1 - fabs(dv) / sqrt(nv * nrv)));
        for (int o = 0; o < m; o++) ev = fmax(ev, fabs(sg * U[(size_t)o * k + i] - rU[(size_t)o * kk + i]));
        for (int j = 0; j < n; j++) ev = fmax(ev, fabs(sg * Vt[(size_t)i * n + j] - rVt[(size_t)i * n + j]));
    }
    CHECK_MSG(es <= 1e-6, "%s (%dx%d, k %d): S vs la_svd %.3g (rel S_1)", what, m, n, k, es);
    CHECK_MSG(ev <= 1e-5, "%s (%dx%d, k %d): vectors vs la_svd %.3g", what, m, n, k, ev);
    CHECK_MSG(ecos <= 1e-6, "%s (%dx%d, k %d): 1 - |cos| vs la_svd %.3g", what, m, n, k, ecos);
    CHECK_MSG(epair <= TOL, "%s (%dx%d, k %d): A v_i - S_i u_i = %.3g (rel S_1)", what, m, n, k, epair);
    CHECK_MSG(rule, "%s: a column of U whose largest-|.| entry is negative", what);
    double eu = orth_err(U, m, k);
    float *V = transpose(Vt, k, n);
    double evv = orth_err(V, n, k);
    CHECK_MSG(eu < TOL && evv < TOL, "%s (%dx%d, k %d): U^T U - I %.3g, V^T V - I %.3g", what, m, n, k, eu, evv);
    /* values only, and U or Vt alone, give the same numbers */
    float *U2 = xmalloc((size_t)m * k * 4), *Vt2 = xmalloc((size_t)k * n * 4);
    CHECK(la_svd_top(NULL, S2, NULL, A, m, n, k, &err) == 0);
    for (int i = 0; i < k; i++) CHECK(S2[i] == S[i]);
    CHECK(la_svd_top(U2, NULL, NULL, A, m, n, k, &err) == 0 && !memcmp(U2, U, (size_t)m * k * 4));
    CHECK(la_svd_top(NULL, NULL, Vt2, A, m, n, k, &err) == 0 && !memcmp(Vt2, Vt, (size_t)k * n * 4));
    printf("la_svd_top %-22s %3d x %-3d k %-3d: S %.1e, vectors %.1e (1-|cos| %.1e) vs la_svd; A v - S u %.1e; "
           "orthonormal %.1e\n", what, m, n, k, es, ev, ecos, epair, fmax(eu, evv));
    free(rU), free(rS), free(rVt), free(U), free(S), free(Vt), free(S2), free(V), free(U2), free(Vt2);
}

static void test_svd_top(void) {
    /* Gaussian-like (small gaps at the top): the Gram path */
    int shapes[][3] = {{7, 7, 3}, {12, 5, 5}, {5, 12, 1}, {40, 33, 8}, {33, 40, 16}, {1, 6, 1}, {6, 1, 1},
                       {200, 150, 16}, {150, 200, 32}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], k = shapes[t][2];
        float *A = rand_mat(m, n);
        check_svd_top(A, m, n, k, k, "random");
        free(A);
    }
    /* a spectrum 1 .. 1e-6: S_k above and below 1e-3 S_1 (Gram path, then dgesvdx) */
    double sp[30];
    for (int i = 0; i < 30; i++) sp[i] = pow(1e-6, i / 29.0);
    float *A = known_spectrum(40, 30, sp);
    check_svd_top(A, 40, 30, 10, 10, "spectrum 1..1e-6");  /* S_10 = 1.2e-2 */
    check_svd_top(A, 40, 30, 20, 20, "spectrum 1..1e-6");  /* S_20 = 1.4e-4: dgesvdx */
    check_svd_top(A, 40, 30, 30, 30, "spectrum 1..1e-6");
    free(A);
    /* nearly equal leading values (gaps 1e-3 of S_1) */
    for (int i = 0; i < 30; i++) sp[i] = i < 6 ? 1.0 - 1e-3 * i : 0.5 / (1 + i);
    A = known_spectrum(30, 45, sp);
    check_svd_top(A, 30, 45, 6, 6, "gaps 1e-3");
    free(A);
    /* rank-deficient: k beyond the rank (dgesvdx completes the bases) */
    int rd[][4] = {{9, 6, 2, 4}, {6, 9, 3, 5}, {8, 8, 1, 2}};
    for (size_t t = 0; t < ARRAY_LEN(rd); t++) {
        float *L = lowrank_int(rd[t][0], rd[t][1], rd[t][2]);
        check_svd_top(L, rd[t][0], rd[t][1], rd[t][3], rd[t][2], "rank-deficient");
        free(L);
    }
    /* zero matrix: S = 0, orthonormal vectors */
    float Z[12] = {0}, U[6], SZ[2], Vt[8];
    Error err;
    CHECK(la_svd_top(U, SZ, Vt, Z, 3, 4, 2, &err) == 0);
    CHECK(SZ[0] == 0 && SZ[1] == 0);
    float *V = transpose(Vt, 2, 4);
    CHECK_MSG(orth_err(U, 3, 2) < TOL && orth_err(V, 4, 2) < TOL, "zero matrix: bases not orthonormal");
    free(V);
}

/* ---- linalg_qr -------------------------------------------------------------------------------------- */
static void test_qr(void) {
    int shapes[][2] = {{8, 8}, {13, 4}, {4, 13}, {1, 5}, {5, 1}, {50, 30}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], k = m < n ? m : n;
        float *A = rand_mat(m, n), *Q = xmalloc((size_t)m * k * 4), *R = xmalloc((size_t)k * n * 4);
        Error err = {{0}};
        CHECK_MSG(la_qr(Q, R, A, m, n, &err) == 0, "%s", err.msg);
        double *QR = xmalloc((size_t)m * n * sizeof *QR);
        matmul(QR, Q, 0, R, 0, m, k, n);
        double e = diff_rel(QR, A, (size_t)m * n, max_abs(A, (size_t)m * n));
        CHECK_MSG(e < TOL, "(%dx%d): QR - A = %.3g", m, n, e);
        e = orth_err(Q, m, k);
        CHECK_MSG(e < TOL, "(%dx%d): Q^T Q - I = %.3g", m, n, e);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < i && j < n; j++) CHECK_MSG(R[(size_t)i * n + j] == 0.0f, "R[%d][%d] = %g", i, j, R[(size_t)i * n + j]);
        /* LAPACK's sign convention (documented in linalg.h): R[0][0] = -sign(A[0][0]) ||A[:,0]|| */
        if (m > 1) {
            double nrm = 0;
            for (int i = 0; i < m; i++) nrm += (double)A[(size_t)i * n] * A[(size_t)i * n];
            nrm = sqrt(nrm);
            CHECK_NEAR(R[0], (A[0] > 0 ? -1 : 1) * nrm, TOL * nrm);
        }
        /* R only (no Q) agrees */
        float *R2 = xmalloc((size_t)k * n * 4);
        CHECK(la_qr(NULL, R2, A, m, n, &err) == 0);
        CHECK(memcmp(R, R2, (size_t)k * n * 4) == 0);
        free(A), free(Q), free(R), free(R2), free(QR);
    }
    /* rank-deficient: Q R still reconstructs A and Q stays orthonormal */
    float *A = lowrank_int(10, 6, 2), Q[60], R[36];
    Error err;
    CHECK(la_qr(Q, R, A, 10, 6, &err) == 0);
    double QR[60];
    matmul(QR, Q, 0, R, 0, 10, 6, 6);
    CHECK(diff_rel(QR, A, 60, max_abs(A, 60)) < TOL);
    CHECK(orth_err(Q, 10, 6) < TOL);
    free(A);
}

/* ---- linalg_eigh ------------------------------------------------------------------------------------ */
static void check_eigh(const float *A, int n, const char *what) {
    float *w = xmalloc((size_t)n * 4), *V = xmalloc((size_t)n * n * 4), *w2 = xmalloc((size_t)n * 4);
    Error err = {{0}};
    CHECK_MSG(la_eigh(w, V, A, n, &err) == 0, "%s: %s", what, err.msg);
    double scale = max_abs(A, (size_t)n * n);
    /* A V = V diag(w), column by column */
    double *AV = xmalloc((size_t)n * n * sizeof *AV);
    matmul(AV, A, 0, V, 0, n, n, n);
    double e = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) e = fmax(e, fabs(AV[(size_t)i * n + j] - (double)V[(size_t)i * n + j] * w[j]));
    CHECK_MSG(e / scale < TOL, "%s (n=%d): A V - V diag(w) = %.3g", what, n, e / scale);
    e = orth_err(V, n, n);
    CHECK_MSG(e < TOL, "%s (n=%d): V^T V - I = %.3g", what, n, e);
    for (int i = 0; i + 1 < n; i++) CHECK_MSG(w[i] >= w[i + 1], "%s: w[%d] = %g < w[%d] = %g", what, i, w[i], i + 1, w[i + 1]);
    double tr = 0, sw = 0;
    for (int i = 0; i < n; i++) tr += A[(size_t)i * n + i], sw += w[i];
    CHECK_NEAR(sw, tr, TOL * scale * n);
    CHECK(la_eigh(w2, NULL, A, n, &err) == 0);
    for (int i = 0; i < n; i++) CHECK_NEAR(w2[i], w[i], TOL * scale);
    free(w), free(V), free(w2), free(AV);
}

static void test_eigh(void) {
    int sizes[] = {1, 2, 6, 31};
    for (size_t t = 0; t < ARRAY_LEN(sizes); t++) {
        int n = sizes[t];
        float *G = rand_mat(n, n), *A = xmalloc((size_t)n * n * 4);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) A[(size_t)i * n + j] = G[(size_t)i * n + j] + G[(size_t)j * n + i];
        check_eigh(A, n, "symmetric indefinite");
        free(G), free(A);
    }
    /* Gram matrix X X^T of rank 3 (the CNTLoRA S mode): three positive eigenvalues, the rest ~0 */
    float *X = lowrank_int(8, 3, 3), *XXt = xmalloc(64 * 4), w[8];
    double C[64];
    matmul(C, X, 0, X, 1, 8, 3, 8);
    for (int i = 0; i < 64; i++) XXt[i] = (float)C[i];
    check_eigh(XXt, 8, "gram rank 3");
    Error err;
    CHECK(la_eigh(w, NULL, XXt, 8, &err) == 0);
    CHECK(w[2] > 1e-3 * w[0]);
    for (int i = 3; i < 8; i++) CHECK_MSG(fabs(w[i]) <= TOL * w[0], "w[%d] = %g", i, w[i]);
    free(X), free(XXt);
    /* known eigenvalues: A = Q diag(w0) Q^T */
    double w0[6] = {-2.0, 5.0, 0.25, 1.0, -7.5, 3.0}, sorted[6] = {5.0, 3.0, 1.0, 0.25, -2.0, -7.5};
    float *G = rand_mat(6, 6), Q[36], A[36], wk[6];
    CHECK(la_qr(Q, NULL, G, 6, 6, &err) == 0);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            double v = 0;
            for (int l = 0; l < 6; l++) v += (double)Q[i * 6 + l] * w0[l] * Q[j * 6 + l];
            A[i * 6 + j] = (float)v;
        }
    CHECK(la_eigh(wk, NULL, A, 6, &err) == 0);
    for (int i = 0; i < 6; i++) CHECK_NEAR(wk[i], sorted[i], TOL * 7.5);
    free(G);
}

/* ---- linalg_pinv ------------------------------------------------------------------------------------ */
static void check_penrose(const float *A, const float *P, int m, int n, const char *what) {
    /* P is (n,m). (1) A P A = A, (2) P A P = P, (3) (A P)^T = A P, (4) (P A)^T = P A */
    double *AP = xmalloc((size_t)m * m * 8), *PA = xmalloc((size_t)n * n * 8);
    double *APA = xmalloc((size_t)m * n * 8), *PAP = xmalloc((size_t)n * m * 8);
    matmul(AP, A, 0, P, 0, m, n, m);
    matmul(PA, P, 0, A, 0, n, m, n);
    float *APf = xmalloc((size_t)m * m * 4), *PAf = xmalloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)m * m; i++) APf[i] = (float)AP[i];
    for (size_t i = 0; i < (size_t)n * n; i++) PAf[i] = (float)PA[i];
    matmul(APA, APf, 0, A, 0, m, m, n);
    matmul(PAP, PAf, 0, P, 0, n, n, m);
    double e1 = diff_rel(APA, A, (size_t)m * n, max_abs(A, (size_t)m * n));
    double e2 = diff_rel(PAP, P, (size_t)n * m, max_abs(P, (size_t)n * m));
    double e3 = 0, e4 = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) e3 = fmax(e3, fabs(AP[(size_t)i * m + j] - AP[(size_t)j * m + i]));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) e4 = fmax(e4, fabs(PA[(size_t)i * n + j] - PA[(size_t)j * n + i]));
    CHECK_MSG(e1 < TOL, "%s (%dx%d): A A+ A - A = %.3g", what, m, n, e1);
    CHECK_MSG(e2 < TOL, "%s (%dx%d): A+ A A+ - A+ = %.3g", what, m, n, e2);
    CHECK_MSG(e3 < TOL, "%s (%dx%d): A A+ not symmetric, %.3g", what, m, n, e3); /* projections: entries O(1) */
    CHECK_MSG(e4 < TOL, "%s (%dx%d): A+ A not symmetric, %.3g", what, m, n, e4);
    free(AP), free(PA), free(APA), free(PAP), free(APf), free(PAf);
}

static void test_pinv(void) {
    Error err = {{0}};
    int shapes[][3] = {{6, 6, 6}, {10, 4, 4}, {4, 10, 4}, {12, 9, 3}, {9, 12, 2}, {7, 7, 1}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], r = shapes[t][2], k = m < n ? m : n;
        float *A = r == k ? rand_mat(m, n) : lowrank_int(m, n, r);
        float *P = xmalloc((size_t)n * m * 4), S[12];
        double tol = -1;
        int rank = -1;
        CHECK_MSG(la_pinv(P, A, m, n, -1.0, &tol, &rank, &err) == 0, "%s", err.msg);
        CHECK_MSG(rank == r, "(%dx%d): rank_used %d, expected %d", m, n, rank, r);
        CHECK(la_svd(NULL, S, NULL, A, m, n, &err) == 0);
        CHECK_NEAR(tol, (m > n ? m : n) * (double)FLT_EPSILON * S[0], 1e-6 * tol);
        check_penrose(A, P, m, n, r == k ? "full rank" : "rank-deficient");
        free(A), free(P);
    }
    /* explicit rcond: diag(1, 1e-3, 1e-6) with rcond 1e-4 keeps two values; A+ = diag(1, 1e3, 0) */
    float D[9] = {1, 0, 0, 0, 1e-3f, 0, 0, 0, 1e-6f}, P[9];
    double tol;
    int rank;
    CHECK(la_pinv(P, D, 3, 3, 1e-4, &tol, &rank, &err) == 0);
    CHECK(rank == 2);
    CHECK_NEAR(tol, 1e-4, 1e-12);
    CHECK_NEAR(P[0], 1.0, TOL);
    CHECK_NEAR(P[4], 1e3, TOL * 1e3);
    CHECK(P[8] == 0.0f);
    CHECK(fabs(P[1]) + fabs(P[2]) + fabs(P[3]) + fabs(P[5]) + fabs(P[6]) + fabs(P[7]) < 1e-6);
    /* the default rcond keeps all three: 1e-6 > 3 * 1.19e-7 */
    CHECK(la_pinv(P, D, 3, 3, -1.0, NULL, &rank, &err) == 0);
    CHECK(rank == 3);
    CHECK_NEAR(P[8], 1e6, TOL * 1e6);
    /* zero matrix: A+ = 0, rank 0, tol 0 */
    float Z[6] = {0}, PZ[6] = {1, 1, 1, 1, 1, 1};
    CHECK(la_pinv(PZ, Z, 2, 3, -1.0, &tol, &rank, &err) == 0);
    CHECK(rank == 0 && tol == 0.0);
    CHECK(max_abs(PZ, 6) == 0.0);
    /* NULL reports are allowed */
    float *A = rand_mat(5, 3), PA[15];
    CHECK(la_pinv(PA, A, 5, 3, -1.0, NULL, NULL, &err) == 0);
    check_penrose(A, PA, 5, 3, "no reports");
    free(A);
}

/* ---- linalg_orth ------------------------------------------------------------------------------------ */
static void check_orth(const float *A, int m, int n, int want_rank, const char *what) {
    int k = m < n ? m : n, rank = -1;
    float *Q = xmalloc((size_t)m * k * 4);
    Error err = {{0}};
    CHECK_MSG(la_orth(Q, &rank, A, m, n, &err) == 0, "%s: %s", what, err.msg);
    CHECK_MSG(rank == want_rank, "%s (%dx%d): rank %d, expected %d", what, m, n, rank, want_rank);
    if (rank > 0) {
        double e = orth_err(Q, m, rank);
        CHECK_MSG(e < TOL, "%s: Q^T Q - I = %.3g", what, e);
        /* Q Q^T A = A: the basis spans the column space */
        double *QtA = xmalloc((size_t)rank * n * 8), *QQtA = xmalloc((size_t)m * n * 8);
        float *QtAf = xmalloc((size_t)rank * n * 4);
        matmul(QtA, Q, 1, A, 0, rank, m, n);
        for (size_t i = 0; i < (size_t)rank * n; i++) QtAf[i] = (float)QtA[i];
        matmul(QQtA, Q, 0, QtAf, 0, m, rank, n);
        e = diff_rel(QQtA, A, (size_t)m * n, max_abs(A, (size_t)m * n));
        CHECK_MSG(e < TOL, "%s: Q Q^T A - A = %.3g", what, e);
        free(QtA), free(QQtA), free(QtAf);
    }
    free(Q);
}

static void test_orth(void) {
    float *A = rand_mat(16, 4);
    check_orth(A, 16, 4, 4, "tall full rank (B of a LoRA)");
    float *At = rand_mat(4, 16);
    check_orth(At, 4, 16, 4, "wide full rank");
    float *L = lowrank_int(12, 7, 3);
    check_orth(L, 12, 7, 3, "rank 3");
    float *Lt = transpose(L, 12, 7);
    check_orth(Lt, 7, 12, 3, "rank 3 transposed");
    float Z[40] = {0};
    check_orth(Z, 10, 4, 0, "B = 0");
    /* a tiny but non-zero matrix keeps its rank: the tolerance is relative */
    float T[6] = {1e-30f, 0, 0, 2e-30f, 0, 0};
    check_orth(T, 3, 2, 2, "tiny scale");
    free(A), free(At), free(L), free(Lt);
}

/* ---- linalg_nonfinite ------------------------------------------------------------------------------- */
static void expect_nonfinite(int rc, const Error *err, const char *fn, const char *sizes) {
    CHECK_MSG(rc == -1, "%s: returned %d on a non-finite input", fn, rc);
    CHECK_MSG(strstr(err->msg, fn) && strstr(err->msg, sizes) && strstr(err->msg, "non-finite"),
              "%s: message lacks the function, the sizes (%s) or 'non-finite': '%s'", fn, sizes, err->msg);
}

static void test_nonfinite(void) {
    float *A = rand_mat(6, 4), *B = rand_mat(4, 4), buf[64], S[4];
    double tol;
    int rank;
    A[2 * 4 + 3] = NAN;
    Error err = {{0}};
    expect_nonfinite(la_svd(buf, S, buf + 24, A, 6, 4, &err), &err, "la_svd", "6 x 4");
    CHECK_MSG(strstr(err.msg, "row 2, column 3"), "position missing: %s", err.msg);
    expect_nonfinite(la_svd(NULL, S, NULL, A, 6, 4, &err), &err, "la_svd", "6 x 4");
    expect_nonfinite(la_qr(buf, buf + 24, A, 6, 4, &err), &err, "la_qr", "6 x 4");
    expect_nonfinite(la_pinv(buf, A, 6, 4, -1.0, &tol, &rank, &err), &err, "la_pinv", "6 x 4");
    expect_nonfinite(la_orth(buf, &rank, A, 6, 4, &err), &err, "la_orth", "6 x 4");
    B[5] = INFINITY;
    expect_nonfinite(la_eigh(S, buf, B, 4, &err), &err, "la_eigh", "4 x 4");
    B[5] = -INFINITY;
    expect_nonfinite(la_pinv(buf, B, 4, 4, -1.0, NULL, NULL, &err), &err, "la_pinv", "4 x 4");
    free(A), free(B);
}

/* ---- linalg_svd_lowrank -------------------------------------------------------------------------------- */
/* la_svd_lowrank against la_svd where the randomized estimate converges to the exact triplets (a fast-decaying
 * spectrum; a rank <= q), in every orientation branch (m < n; n > q; n <= q): S to 1e-6 relative, 1 - |cos| of
 * each vector <= 1e-6, the sign rule; on a flat spectrum (an estimate only) the properties that hold for any
 * input: orthonormal vectors, S descending and at most the exact S_i; the same bits for the same (seed,
 * stream), other numbers for another stream. */
static void lowrank_vs_exact(const float *A, int m, int n, int k, int q, int niter, double tol, const char *what) {
    int kk = m < n ? m : n;
    float *rU = xmalloc((size_t)m * kk * 4), *rS = xmalloc((size_t)kk * 4), *rVt = xmalloc((size_t)kk * n * 4);
    float *U = xmalloc((size_t)m * k * 4), *S = xmalloc((size_t)k * 4), *Vt = xmalloc((size_t)k * n * 4);
    Error err = {{0}};
    CHECK(la_svd(rU, rS, rVt, A, m, n, &err) == 0);
    CHECK_MSG(la_svd_lowrank(U, S, Vt, A, m, n, k, q, niter, 7, 3, &err) == 0, "%s: %s", what, err.msg);
    double es = 0, ecos = 0, scale = rS[0] > 0 ? rS[0] : 1;
    int rule = 1;
    for (int i = 0; i < k; i++) {
        es = fmax(es, fabs((double)S[i] - rS[i]) / scale);
        int best = 0;
        for (int o = 1; o < m; o++)
            if (fabsf(U[(size_t)o * k + i]) > fabsf(U[(size_t)best * k + i])) best = o;
        rule &= U[(size_t)best * k + i] > 0;
        double du = 0, dv = 0;
        for (int o = 0; o < m; o++) du += (double)U[(size_t)o * k + i] * rU[(size_t)o * kk + i];
        for (int j = 0; j < n; j++) dv += (double)Vt[(size_t)i * n + j] * rVt[(size_t)i * n + j];
        CHECK_MSG(du * dv > 0, "%s: triplet %d: u and v flipped apart", what, i);
        ecos = fmax(ecos, fmax(1 - fabs(du), 1 - fabs(dv)));
    }
    CHECK_MSG(es <= tol, "%s (%dx%d, k %d, q %d, niter %d): S vs la_svd %.3g (rel S_1)", what, m, n, k, q, niter, es);
    CHECK_MSG(ecos <= tol, "%s (%dx%d, k %d, q %d, niter %d): 1 - |cos| vs la_svd %.3g", what, m, n, k, q, niter, ecos);
    CHECK_MSG(rule, "%s: a column of U whose largest-|.| entry is negative", what);
    printf("la_svd_lowrank %-18s %3d x %-3d k %-2d q %-2d niter %d: S %.1e, 1-|cos| %.1e vs la_svd\n", what, m, n, k,
           q, niter, es, ecos);
    free(rU), free(rS), free(rVt), free(U), free(S), free(Vt);
}

static void test_svd_lowrank(void) {
    double sp[150];
    for (int i = 0; i < 150; i++) sp[i] = pow(0.7, i);
    int shapes[][4] = {{200, 150, 8, 32}, {150, 200, 8, 32}, {120, 24, 6, 24}}; /* n > q; m < n; n <= q */
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1];
        float *A = known_spectrum(m, n, sp);
        lowrank_vs_exact(A, m, n, shapes[t][2], shapes[t][3], 4, 1e-6, "spectrum 0.7^i");
        free(A);
    }
    float *L = lowrank_int(40, 30, 5); /* rank 5 <= q: exact with no power iteration */
    lowrank_vs_exact(L, 40, 30, 5, 8, 0, 1e-6, "rank 5");
    free(L);
    /* a flat spectrum: an estimate; its invariants */
    int m = 96, n = 80, k = 8, q = 16;
    float *A = rand_mat(m, n), *rS = xmalloc((size_t)n * 4);
    float *U = xmalloc((size_t)m * k * 4), *S = xmalloc((size_t)k * 4), *Vt = xmalloc((size_t)k * n * 4);
    float *U2 = xmalloc((size_t)m * k * 4), *S2 = xmalloc((size_t)k * 4), *Vt2 = xmalloc((size_t)k * n * 4);
    Error err;
    CHECK(la_svd(NULL, rS, NULL, A, m, n, &err) == 0);
    CHECK(la_svd_lowrank(U, S, Vt, A, m, n, k, q, 2, 11, 1, &err) == 0);
    for (int i = 0; i < k; i++) {
        CHECK(S[i] >= 0 && (i == 0 || S[i] <= S[i - 1]));
        CHECK_MSG(S[i] <= rS[i] * (1 + 1e-6), "flat spectrum: S_%d = %g above the exact %g", i, S[i], rS[i]);
    }
    float *V = transpose(Vt, k, n);
    CHECK_MSG(orth_err(U, m, k) < TOL && orth_err(V, n, k) < TOL, "flat spectrum: vectors not orthonormal");
    CHECK(la_svd_lowrank(U2, S2, Vt2, A, m, n, k, q, 2, 11, 1, &err) == 0);
    CHECK_MSG(!memcmp(U, U2, (size_t)m * k * 4) && !memcmp(S, S2, (size_t)k * 4) && !memcmp(Vt, Vt2, (size_t)k * n * 4),
              "the same (seed, stream) gave other bits");
    CHECK(la_svd_lowrank(U2, S2, Vt2, A, m, n, k, q, 2, 11, 2, &err) == 0);
    CHECK_MSG(memcmp(S, S2, (size_t)k * 4), "another stream gave the same estimate");
    printf("la_svd_lowrank flat spectrum 96 x 80 k 8 q 16 niter 2: S_1 %.4f of exact %.4f, S_8 %.4f of %.4f\n",
           S[0], rS[0], S[7], rS[7]);
    /* a non-finite entry is an error, not a crash */
    A[5] = NAN;
    CHECK(la_svd_lowrank(U, S, Vt, A, m, n, k, q, 2, 11, 1, &err) == -1 && strstr(err.msg, "la_svd_lowrank"));
    free(A), free(rS), free(U), free(S), free(Vt), free(U2), free(S2), free(Vt2), free(V);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "";
    static const struct { const char *name; void (*fn)(void); } cases[] = {
        {"svd", test_svd}, {"svd_top", test_svd_top}, {"svd_lowrank", test_svd_lowrank}, {"qr", test_qr}, {"eigh", test_eigh},
        {"pinv", test_pinv}, {"orth", test_orth}, {"nonfinite", test_nonfinite},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (strcmp(which, cases[i].name) == 0) {
            cases[i].fn();
            char name[64];
            snprintf(name, sizeof name, "linalg_%s", which);
            return test_finish(name);
        }
    }
    fprintf(stderr, "usage: %s svd|svd_top|svd_lowrank|qr|eigh|pinv|orth|nonfinite\n", argv[0]);
    return 2;
}
