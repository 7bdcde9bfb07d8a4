/* tests/test_eval.c: eval/info_loss.h and eval/spectra.h against naive formulas (explicit m x m and n x n
 * projectors built from la_pinv, independent of la_orth) and matrices with known answers.
 * One executable; argv[1] picks the ctest case (eval_<name>). */
#include "core/linalg.h"
#include "eval/info_loss.h"
#include "eval/spectra.h"
#include "testlib.h"

#include <string.h>

#define TOL 1e-5

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
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
/* C (m,n) = A (m,k) B (k,n), double sums, into double. */
static double *mm(const double *A, const double *B, int m, int k, int n) {
    double *C = xcalloc((size_t)m * n, sizeof *C);
    for (int i = 0; i < m; i++)
        for (int l = 0; l < k; l++)
            for (int j = 0; j < n; j++) C[(size_t)i * n + j] += A[(size_t)i * k + l] * B[(size_t)l * n + j];
    return C;
}
static double *dbl(const float *a, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}
static double frob(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}
/* Naive projectors: PB = B B^+ (m,m) onto col(B), PA = A^+ A (n,n) onto row(A). */
static void projectors(double **PB, double **PA, const float *B, const float *A, int m, int n, int r) {
    float *Bp = xmalloc((size_t)r * m * sizeof *Bp), *Ap = xmalloc((size_t)n * r * sizeof *Ap);
    Error err = {{0}};
    CHECK(la_pinv(Bp, B, m, r, -1, NULL, NULL, &err) == 0);
    CHECK(la_pinv(Ap, A, r, n, -1, NULL, NULL, &err) == 0);
    double *b = dbl(B, (size_t)m * r), *bp = dbl(Bp, (size_t)r * m), *a = dbl(A, (size_t)r * n), *ap = dbl(Ap, (size_t)n * r);
    *PB = mm(b, bp, m, r, m);
    *PA = mm(ap, a, n, r, n);
    free(Bp), free(Ap), free(b), free(bp), free(a), free(ap);
}
/* (I - PB) M (I - PA) and P_T(M) = M - that, naively (m x m and n x n products). */
static double *naive_perp(const double *PB, const double *PA, const double *M, int m, int n) {
    double *PBM = mm(PB, M, m, m, n), *X = xmalloc((size_t)m * n * sizeof *X);
    for (size_t i = 0; i < (size_t)m * n; i++) X[i] = M[i] - PBM[i];
    double *XPA = mm(X, PA, m, n, n);
    for (size_t i = 0; i < (size_t)m * n; i++) X[i] -= XPA[i];
    free(PBM), free(XPA);
    return X;
}
static double *naive_pt(const double *PB, const double *PA, const double *M, int m, int n) {
    double *P = naive_perp(PB, PA, M, m, n);
    for (size_t i = 0; i < (size_t)m * n; i++) P[i] = M[i] - P[i];
    return P;
}

/* ---- eval_info_loss --------------------------------------------------------------------------------- */
static void check_info_loss(const float *G, const float *B, const float *A, int m, int n, int r, const char *what,
                            double expect_ratio) {
    double *PB, *PA;
    projectors(&PB, &PA, B, A, m, n, r);
    double *g = dbl(G, (size_t)m * n), *R = naive_perp(PB, PA, g, m, n);
    double gn = frob(g, (size_t)m * n), ref = gn > 0 ? frob(R, (size_t)m * n) / gn : 0;
    InfoLoss il;
    Error err = {{0}};
    CHECK_MSG(info_loss(&il, G, B, A, m, n, r, &err) == 0, "%s: %s", what, err.msg);
    CHECK_MSG(fabs(il.ratio - ref) <= TOL, "%s (%d,%d,r=%d): ratio %.9g, naive %.9g", what, m, n, r, il.ratio, ref);
    CHECK_MSG(fabs(il.g_norm - gn) <= TOL * gn, "%s: g_norm %.9g vs %.9g", what, il.g_norm, gn);
    if (expect_ratio >= 0)
        CHECK_MSG(fabs(il.ratio - expect_ratio) <= TOL, "%s: ratio %.9g, expected %g", what, il.ratio, expect_ratio);

    /* tangent_project against the naive P_T, with the bases info_loss uses */
    float *QB = xmalloc((size_t)m * MIN(m, r) * 4), *QA = xmalloc((size_t)n * MIN(n, r) * 4);
    float *At = xmalloc((size_t)n * r * 4), *P = xmalloc((size_t)m * n * 4);
    for (int l = 0; l < r; l++)
        for (int j = 0; j < n; j++) At[(size_t)j * r + l] = A[(size_t)l * n + j];
    int kb, ka;
    CHECK(la_orth(QB, &kb, B, m, r, &err) == 0 && la_orth(QA, &ka, At, n, r, &err) == 0);
    CHECK(kb == il.rank_b && ka == il.rank_a);
    tangent_project(P, G, QB, kb, QA, ka, m, n);
    double *Pn = naive_pt(PB, PA, g, m, n), e = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) e = fmax(e, fabs((double)P[i] - Pn[i]));
    CHECK_MSG(e <= TOL * fmax(gn, 1), "%s: tangent_project differs from naive by %.3g", what, e);
    free(PB), free(PA), free(g), free(R), free(QB), free(QA), free(At), free(P), free(Pn);
}

static void test_info_loss(void) {
    int shapes[][3] = {{20, 12, 3}, {12, 20, 4}, {30, 30, 5}, {7, 40, 2}, {40, 7, 2}, {5, 9, 6}, {1, 8, 1}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], r = shapes[t][2];
        float *G = rand_mat(m, n), *B = rand_mat(m, r), *A = rand_mat(r, n);
        /* r >= m: col(B) = R^m, so P_T = I and nothing is lost */
        check_info_loss(G, B, A, m, n, r, "random", r >= m || r >= n ? 0.0 : -1);
        float *B0 = xcalloc((size_t)m * r, sizeof *B0);
        check_info_loss(G, B0, A, m, n, r, "B = 0", -1);
        InfoLoss il;
        Error err = {{0}};
        CHECK(info_loss(&il, G, B0, A, m, n, r, &err) == 0 && il.rank_b == 0);
        free(G), free(B), free(A), free(B0);
    }
    /* G in the tangent space (B X + Y A): ratio 0; G in its complement ((I-PB) Z (I-PA)): ratio 1 */
    int m = 24, n = 16, r = 3;
    float *B = rand_mat(m, r), *A = rand_mat(r, n), *X = rand_mat(r, n), *Y = rand_mat(m, r);
    float *G = xmalloc((size_t)m * n * 4);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int l = 0; l < r; l++) v += (double)B[i * r + l] * X[l * n + j] + (double)Y[i * r + l] * A[l * n + j];
            G[i * n + j] = (float)v;
        }
    check_info_loss(G, B, A, m, n, r, "G in T", 0.0);
    double *PB, *PA;
    projectors(&PB, &PA, B, A, m, n, r);
    float *Z = rand_mat(m, n);
    double *z = dbl(Z, (size_t)m * n), *perp = naive_perp(PB, PA, z, m, n);
    for (size_t i = 0; i < (size_t)m * n; i++) G[i] = (float)perp[i];
    check_info_loss(G, B, A, m, n, r, "G in T-perp", 1.0);
    /* G = 0: ratio 0 by definition; a NaN in G is an input error */
    memset(G, 0, (size_t)m * n * 4);
    InfoLoss il;
    Error err = {{0}};
    CHECK(info_loss(&il, G, B, A, m, n, r, &err) == 0 && il.ratio == 0 && il.g_norm == 0);
    G[5] = NAN;
    CHECK(info_loss(&il, G, B, A, m, n, r, &err) == -1 && strstr(err.msg, "info_loss") != NULL);
    free(B), free(A), free(X), free(Y), free(G), free(PB), free(PA), free(Z), free(z), free(perp);
}

/* ---- eval_info_decompose ---------------------------------------------------------------------------- */
static void test_info_decompose(void) {
    int shapes[][3] = {{20, 12, 3}, {12, 20, 4}, {30, 30, 5}, {7, 40, 2}, {40, 7, 8}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++)
        for (int zeroB = 0; zeroB < 2; zeroB++) {
            int m = shapes[t][0], n = shapes[t][1], r = shapes[t][2];
            size_t mn = (size_t)m * n;
            float *Gf = rand_mat(m, n), *Gt = rand_mat(m, n), *B = rand_mat(m, r), *A = rand_mat(r, n);
            if (zeroB) memset(B, 0, (size_t)m * r * sizeof *B);
            for (size_t i = 0; i < mn; i++) Gt[i] = Gf[i] + 0.3f * Gt[i]; /* G~ near G_full */
            InfoDecomp d;
            Error err = {{0}};
            CHECK_MSG(info_loss_decompose(&d, Gf, Gt, B, A, m, n, r, &err) == 0, "%s", err.msg);
            double lhs = d.total * d.total, rhs = d.irreducible * d.irreducible + d.reducible * d.reducible;
            CHECK_MSG(fabs(lhs - rhs) <= TOL * fmax(lhs, 1e-12), "(%d,%d,r=%d,B=0:%d): total^2 %.9g vs irr^2+red^2 %.9g",
                      m, n, r, zeroB, lhs, rhs);
            CHECK_MSG(d.bound >= d.reducible * (1 - 1e-7), "bound %.9g < reducible %.9g", d.bound, d.reducible);
            /* each term against the naive projectors */
            double *PB, *PA;
            projectors(&PB, &PA, B, A, m, n, r);
            double *gf = dbl(Gf, mn), *gt = dbl(Gt, mn), *D = xmalloc(mn * sizeof *D);
            double *ptt = naive_pt(PB, PA, gt, m, n), *ptf = naive_pt(PB, PA, gf, m, n);
            for (size_t i = 0; i < mn; i++) D[i] = gf[i] - ptt[i];
            CHECK_NEAR(d.total, frob(D, mn), TOL * frob(gf, mn));
            for (size_t i = 0; i < mn; i++) D[i] = gf[i] - ptf[i];
            CHECK_NEAR(d.irreducible, frob(D, mn), TOL * frob(gf, mn));
            for (size_t i = 0; i < mn; i++) D[i] = gf[i] - gt[i];
            CHECK_NEAR(d.bound, frob(D, mn), TOL * frob(gf, mn));
            double *ptd = naive_pt(PB, PA, D, m, n);
            CHECK_NEAR(d.reducible, frob(ptd, mn), TOL * frob(gf, mn));
            /* consistency with info_loss: irreducible / ||G_full|| is info_loss(G_full) */
            InfoLoss il;
            CHECK(info_loss(&il, Gf, B, A, m, n, r, &err) == 0);
            CHECK_NEAR(d.irreducible / d.g_full_norm, il.ratio, TOL);
            free(Gf), free(Gt), free(B), free(A), free(PB), free(PA), free(gf), free(gt), free(D), free(ptt), free(ptf),
                free(ptd);
        }
    /* G~ = G_full: reducible 0, total = irreducible */
    int m = 10, n = 14, r = 3;
    float *G = rand_mat(m, n), *B = rand_mat(m, r), *A = rand_mat(r, n);
    InfoDecomp d;
    Error err = {{0}};
    CHECK(info_loss_decompose(&d, G, G, B, A, m, n, r, &err) == 0);
    CHECK(d.reducible == 0 && d.bound == 0);
    CHECK_NEAR(d.total, d.irreducible, TOL * d.g_full_norm);
    free(G), free(B), free(A);
}

/* ---- eval_info_decompose_xs --------------------------------------------------------------------------- */
/* LoRA-XS's product form P_T(M) = PB M PA with the naive explicit projectors (m x m, n x n). */
static void test_info_decompose_xs(void) {
    int shapes[][3] = {{20, 12, 3}, {12, 20, 4}, {30, 30, 5}, {7, 40, 2}, {40, 7, 8}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], r = shapes[t][2];
        size_t mn = (size_t)m * n;
        float *Gf = rand_mat(m, n), *Gt = rand_mat(m, n), *B = rand_mat(m, r), *A = rand_mat(r, n);
        for (size_t i = 0; i < mn; i++) Gt[i] = Gf[i] + 0.3f * Gt[i];
        InfoDecomp d;
        Error err = {{0}};
        CHECK_MSG(info_loss_decompose_xs(&d, Gf, Gt, B, A, m, n, r, &err) == 0, "%s", err.msg);
        double lhs = d.total * d.total, rhs = d.irreducible * d.irreducible + d.reducible * d.reducible;
        CHECK_MSG(fabs(lhs - rhs) <= TOL * fmax(lhs, 1e-12), "xs (%d,%d,r=%d): total^2 %.9g vs irr^2+red^2 %.9g", m, n,
                  r, lhs, rhs);
        CHECK_MSG(d.bound >= d.reducible * (1 - 1e-7), "xs: bound %.9g < reducible %.9g", d.bound, d.reducible);
        double *PB, *PA;
        projectors(&PB, &PA, B, A, m, n, r);
        double *gf = dbl(Gf, mn), *gt = dbl(Gt, mn), *D = xmalloc(mn * sizeof *D);
        double *t1 = mm(PB, gt, m, m, n), *ptt = mm(t1, PA, m, n, n); /* PB G~ PA */
        double *t2 = mm(PB, gf, m, m, n), *ptf = mm(t2, PA, m, n, n); /* PB G_full PA */
        for (size_t i = 0; i < mn; i++) D[i] = gf[i] - ptt[i];
        CHECK_NEAR(d.total, frob(D, mn), TOL * frob(gf, mn));
        for (size_t i = 0; i < mn; i++) D[i] = gf[i] - ptf[i];
        CHECK_NEAR(d.irreducible, frob(D, mn), TOL * frob(gf, mn));
        for (size_t i = 0; i < mn; i++) D[i] = gf[i] - gt[i];
        CHECK_NEAR(d.bound, frob(D, mn), TOL * frob(gf, mn));
        double *t3 = mm(PB, D, m, m, n), *ptd = mm(t3, PA, m, n, n);
        CHECK_NEAR(d.reducible, frob(ptd, mn), TOL * frob(gf, mn));
        /* irreducible / ||G_full|| is info_loss_xs(G_full); and the product space is smaller than LoRA's */
        InfoLoss il;
        InfoDecomp dl;
        CHECK(info_loss_xs(&il, Gf, B, A, m, n, r, &err) == 0);
        CHECK_NEAR(d.irreducible / d.g_full_norm, il.ratio, TOL);
        CHECK(info_loss_decompose(&dl, Gf, Gt, B, A, m, n, r, &err) == 0);
        CHECK(d.irreducible >= dl.irreducible * (1 - 1e-6));
        if (t == 0)
            printf("eval_info_decompose_xs (20,12,r=3): total %.6f irreducible %.6f reducible %.6f (LoRA's: %.6f %.6f "
                   "%.6f)\n", d.total, d.irreducible, d.reducible, dl.total, dl.irreducible, dl.reducible);
        free(Gf), free(Gt), free(B), free(A), free(PB), free(PA), free(gf), free(gt), free(D), free(t1), free(ptt),
            free(t2), free(ptf), free(t3), free(ptd);
    }
}

/* ---- eval_spectra ----------------------------------------------------------------------------------- */
/* Orthonormal Q (rows,k) from la_qr of a random matrix. */
static float *rand_orth(int rows, int k) {
    float *X = rand_mat(rows, k), *Q = xmalloc((size_t)rows * k * 4);
    Error err;
    CHECK(la_qr(Q, NULL, X, rows, k, &err) == 0);
    free(X);
    return Q;
}
static void test_spectra(void) {
    /* B = U diag(s) (m,r), A = V^T (r,n): B A has singular values s (then zeros) */
    const double s[5] = {5.0, 2.0, 1.0, 0.5, 4e-3}; /* 4e-3 <= 1e-3 * 5: below tol, so rank 4, cond 10 */
    int shapes[][2] = {{20, 12}, {12, 20}, {8, 8}, {5, 30}};
    for (size_t t = 0; t < ARRAY_LEN(shapes); t++) {
        int m = shapes[t][0], n = shapes[t][1], r = 5, k = MIN(m, n);
        float *U = rand_orth(m, r), *V = rand_orth(n, r), *B = xmalloc((size_t)m * r * 4), *A = xmalloc((size_t)r * n * 4);
        for (int i = 0; i < m; i++)
            for (int l = 0; l < r; l++) B[i * r + l] = (float)(U[i * r + l] * s[l]);
        for (int l = 0; l < r; l++)
            for (int j = 0; j < n; j++) A[l * n + j] = V[j * r + l];
        float *sv = xmalloc((size_t)k * 4);
        int nr = -1;
        double cond = 0;
        Error err = {{0}};
        CHECK_MSG(adapter_spectrum(sv, &nr, &cond, B, A, m, n, r, 0, &err) == 0, "%s", err.msg);
        for (int i = 0; i < k; i++)
            CHECK_MSG(fabs(sv[i] - (i < r ? s[i] : 0)) <= TOL * s[0], "(%d,%d) sv[%d] = %.9g, expected %.9g", m, n, i,
                      sv[i], i < r ? s[i] : 0);
        CHECK_MSG(nr == 4, "(%d,%d): numerical rank %d, expected 4", m, n, nr);
        CHECK_NEAR(cond, 10.0, 1e-4);
        /* a looser tol keeps the 4e-3 one: rank 5, cond 1250 */
        CHECK(adapter_spectrum(NULL, &nr, &cond, B, A, m, n, r, 1e-4, &err) == 0);
        CHECK(nr == 5);
        CHECK_NEAR(cond, 1250.0, 1250.0 * 1e-3);
        /* B = 0 (an init): all zero, rank 0, cond NaN */
        memset(B, 0, (size_t)m * r * 4);
        CHECK(adapter_spectrum(sv, &nr, &cond, B, A, m, n, r, 0, &err) == 0);
        CHECK(nr == 0 && isnan(cond) && sv[0] == 0);
        B[0] = INFINITY;
        CHECK(adapter_spectrum(sv, &nr, &cond, B, A, m, n, r, 0, &err) == -1 && strstr(err.msg, "adapter_spectrum"));
        free(U), free(V), free(B), free(A), free(sv);
    }

    /* drift */
    int rows = 9, cols = 6;
    size_t nn = (size_t)rows * cols;
    float *init = rand_mat(rows, cols), *fin = xmalloc(nn * 4), *zero = xcalloc(nn, 4);
    for (size_t i = 0; i < nn; i++) fin[i] = 2 * init[i];
    DriftStats ds;
    drift_stats(&ds, init, fin, rows, cols);
    float s1;
    Error err;
    float sv[6];
    CHECK(la_svd(NULL, sv, NULL, init, rows, cols, &err) == 0);
    s1 = sv[0];
    CHECK_NEAR(ds.cosine, 1.0, 1e-6);
    CHECK_NEAR(ds.spectral_norm, s1, TOL * s1); /* final - init = init */
    drift_stats(&ds, zero, fin, rows, cols);    /* B = 0 init */
    CHECK(isnan(ds.cosine));
    CHECK_NEAR(ds.spectral_norm, 2 * s1, TOL * s1);
    for (size_t i = 0; i < nn; i++) fin[i] = -init[i];
    drift_stats(&ds, init, fin, rows, cols);
    CHECK_NEAR(ds.cosine, -1.0, 1e-6);
    /* final = init + 3 u v^T (unit u, v) - 1.5 u2 v2^T: spectral norm 3, Frobenius sqrt(9 + 2.25) */
    float *u = rand_orth(rows, 2), *v = rand_orth(cols, 2);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            fin[i * cols + j] = init[i * cols + j] + 3.0f * u[i * 2] * v[j * 2] - 1.5f * u[i * 2 + 1] * v[j * 2 + 1];
    drift_stats(&ds, init, fin, rows, cols);
    CHECK_NEAR(ds.spectral_norm, 3.0, 1e-5);
    CHECK_NEAR(ds.frob_norm, sqrt(11.25), 1e-5);
    CHECK(ds.cosine > 0 && ds.cosine < 1);
    free(init), free(fin), free(zero), free(u), free(v);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "";
    static const struct { const char *name; void (*fn)(void); } cases[] = {
        {"info_loss", test_info_loss}, {"info_decompose", test_info_decompose},
        {"info_decompose_xs", test_info_decompose_xs}, {"spectra", test_spectra},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (strcmp(which, cases[i].name) == 0) {
            cases[i].fn();
            char name[64];
            snprintf(name, sizeof name, "eval_%s", which);
            return test_finish(name);
        }
    }
    fprintf(stderr, "usage: %s info_loss|info_decompose|info_decompose_xs|spectra\n", argv[0]);
    return 2;
}
