/* tests/bench_svd_top.c: how to get the top-k singular triplets of an (m, n) float matrix fastest at the accuracy
 * of la_svd (docs/engine.md, "Init cost"). Not a test (no ctest entry); run by hand:
 *   build-x/tests/bench_svd_top [m] [n] [reps]     (default 768 768 3; OpenBLAS single-threaded)
 * Candidates, all on the same Gaussian matrix (entries N(0, 1): a spectrum with small gaps at the top):
 *   la_svd           dgesdd, all min(m, n) triplets, in double (the reference);
 *   dgesvdx          LAPACKE_dgesvdx range 'I', k triplets, in double;
 *   gram+dsyevr      G = A^T A (dsyrk) in double, LAPACKE_dsyevr range 'I' for the k largest, U = A V / S;
 *   sgesdd           float dgesdd's twin, all triplets;
 *   la_svd_top       what core/linalg.h ships.
 * Each is timed (best of reps) and compared with la_svd: max relative singular-value error over the k, min |cos|
 * of the k left and right vectors, max |entry| difference of the vectors after aligning signs, and whether the
 * signs agree with dgesdd's. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/linalg.h"
#include "core/rng.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* row-major float outputs like la_svd's: U (m, k), S (k), Vt (k, n) */
typedef void (*TopFn)(float *U, float *S, float *Vt, const float *A, int m, int n, int k);

static void top_la_svd(float *U, float *S, float *Vt, const float *A, int m, int n, int k) {
    int kk = m < n ? m : n;
    float *u = malloc(sizeof(float) * (size_t)m * kk), *s = malloc(sizeof(float) * kk);
    float *vt = malloc(sizeof(float) * (size_t)kk * n);
    Error e;
    if (la_svd(u, s, vt, A, m, n, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    for (int i = 0; i < m; i++) memcpy(U + (size_t)i * k, u + (size_t)i * kk, sizeof(float) * k);
    memcpy(S, s, sizeof(float) * k);
    memcpy(Vt, vt, sizeof(float) * (size_t)k * n);
    free(u), free(s), free(vt);
}

static void top_gesvdx(float *U, float *S, float *Vt, const float *A, int m, int n, int k) {
    double *a = malloc(sizeof(double) * (size_t)m * n), *s = malloc(sizeof(double) * (m < n ? m : n));
    double *u = malloc(sizeof(double) * (size_t)m * k), *vt = malloc(sizeof(double) * (size_t)k * n);
    lapack_int *superb = malloc(sizeof(lapack_int) * 12 * (size_t)(m < n ? m : n)), ns = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) a[(size_t)j * m + i] = A[(size_t)i * n + j];
    lapack_int info = LAPACKE_dgesvdx(LAPACK_COL_MAJOR, 'V', 'V', 'I', m, n, a, m, 0, 0, 1, k, &ns, s, u, m, vt, k,
                                      superb);
    if (info || ns != k) { fprintf(stderr, "dgesvdx info %d ns %d\n", (int)info, (int)ns); exit(1); }
    for (int i = 0; i < m; i++)
        for (int c = 0; c < k; c++) U[(size_t)i * k + c] = (float)u[(size_t)c * m + i];
    for (int c = 0; c < k; c++) {
        S[c] = (float)s[c];
        for (int j = 0; j < n; j++) Vt[(size_t)c * n + j] = (float)vt[(size_t)j * k + c];
    }
    free(a), free(s), free(u), free(vt), free(superb);
}

/* m >= n assumed (the bench's square case): G = A^T A (n, n). */
static void top_gram(float *U, float *S, float *Vt, const float *A, int m, int n, int k) {
    double *a = malloc(sizeof(double) * (size_t)m * n), *g = malloc(sizeof(double) * (size_t)n * n);
    double *w = malloc(sizeof(double) * n), *z = malloc(sizeof(double) * (size_t)n * k);
    double *u = malloc(sizeof(double) * (size_t)m * k);
    lapack_int *isuppz = malloc(sizeof(lapack_int) * 2 * (size_t)k), nf = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) a[(size_t)j * m + i] = A[(size_t)i * n + j];
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, m, 1.0, a, m, 0.0, g, n);
    lapack_int info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, g, n, 0, 0, n - k + 1, n, 0.0, &nf, w, z, n,
                                     isuppz);
    if (info || nf != k) { fprintf(stderr, "dsyevr info %d nf %d\n", (int)info, (int)nf); exit(1); }
    /* ascending -> descending; u = A z */
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.0, a, m, z, n, 0.0, u, m);
    for (int c = 0; c < k; c++) {
        int e = k - 1 - c;
        double sv = sqrt(fmax(w[e], 0));
        S[c] = (float)sv;
        for (int j = 0; j < n; j++) Vt[(size_t)c * n + j] = (float)z[(size_t)e * n + j];
        for (int i = 0; i < m; i++) U[(size_t)i * k + c] = (float)(u[(size_t)e * m + i] / sv);
    }
    free(a), free(g), free(w), free(z), free(u), free(isuppz);
}

static void top_sgesdd(float *U, float *S, float *Vt, const float *A, int m, int n, int k) {
    int kk = m < n ? m : n;
    float *a = malloc(sizeof(float) * (size_t)m * n), *s = malloc(sizeof(float) * kk);
    float *u = malloc(sizeof(float) * (size_t)m * kk), *vt = malloc(sizeof(float) * (size_t)kk * n);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) a[(size_t)j * m + i] = A[(size_t)i * n + j];
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, m, s, u, m, vt, kk);
    if (info) { fprintf(stderr, "sgesdd info %d\n", (int)info); exit(1); }
    for (int i = 0; i < m; i++)
        for (int c = 0; c < k; c++) U[(size_t)i * k + c] = u[(size_t)c * m + i];
    for (int c = 0; c < k; c++) {
        S[c] = s[c];
        for (int j = 0; j < n; j++) Vt[(size_t)c * n + j] = vt[(size_t)j * kk + c];
    }
    free(a), free(s), free(u), free(vt);
}

static void top_la_svd_top(float *U, float *S, float *Vt, const float *A, int m, int n, int k) {
    Error e;
    if (la_svd_top(U, S, Vt, A, m, n, k, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
}

int main(int argc, char **argv) {
    int m = argc > 1 ? atoi(argv[1]) : 768, n = argc > 2 ? atoi(argv[2]) : 768, reps = argc > 3 ? atoi(argv[3]) : 3;
    openblas_set_num_threads(1);
    float *A = malloc(sizeof(float) * (size_t)m * n);
    rng_fill_normal(A, (size_t)m * n, 0.0f, 1.0f, 7, 1);
    static const struct { const char *name; TopFn fn; } cand[] = {
        {"la_svd (dgesdd)", top_la_svd}, {"dgesvdx", top_gesvdx}, {"gram+dsyevr", top_gram},
        {"sgesdd (float)", top_sgesdd}, {"la_svd_top", top_la_svd_top},
    };
    int ks[] = {8, 16, 32};
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        int k = ks[t];
        float *rU = malloc(sizeof(float) * (size_t)m * k), *rS = malloc(sizeof(float) * k);
        float *rVt = malloc(sizeof(float) * (size_t)k * n);
        float *U = malloc(sizeof(float) * (size_t)m * k), *S = malloc(sizeof(float) * k);
        float *Vt = malloc(sizeof(float) * (size_t)k * n);
        top_la_svd(rU, rS, rVt, A, m, n, k);
        printf("%d x %d, k %d (S[0] %.4g, S[k-1] %.4g):\n", m, n, k, rS[0], rS[k - 1]);
        for (size_t c = 0; c < sizeof cand / sizeof *cand; c++) {
            if (m < n && cand[c].fn == top_gram) continue;
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                cand[c].fn(U, S, Vt, A, m, n, k);
                best = fmin(best, now() - t0);
            }
            double es = 0, cu = 1, cv = 1, du = 0, dv = 0;
            int flipped = 0;
            for (int i = 0; i < k; i++) {
                es = fmax(es, fabs((double)S[i] - rS[i]) / rS[i]);
                double pu = 0, pv = 0, nu = 0, nv = 0, nru = 0, nrv = 0;
                for (int o = 0; o < m; o++) {
                    double x = U[(size_t)o * k + i], y = rU[(size_t)o * k + i];
                    pu += x * y, nu += x * x, nru += y * y;
                }
                for (int j = 0; j < n; j++) {
                    double x = Vt[(size_t)i * n + j], y = rVt[(size_t)i * n + j];
                    pv += x * y, nv += x * x, nrv += y * y;
                }
                cu = fmin(cu, fabs(pu) / sqrt(nu * nru));
                cv = fmin(cv, fabs(pv) / sqrt(nv * nrv));
                double sg = pv < 0 ? -1 : 1;
                flipped += pv < 0;
                for (int o = 0; o < m; o++) du = fmax(du, fabs(sg * U[(size_t)o * k + i] - rU[(size_t)o * k + i]));
                for (int j = 0; j < n; j++) dv = fmax(dv, fabs(sg * Vt[(size_t)i * n + j] - rVt[(size_t)i * n + j]));
            }
            printf("  %-16s %8.1f ms  S rel %.1e  1-|cos| U %.1e V %.1e  max|dU| %.1e |dV| %.1e  %2d of %d signs "
                   "unlike dgesdd's\n", cand[c].name, 1e3 * best, es, 1 - cu, 1 - cv, du, dv, flipped, k);
        }
        free(rU), free(rS), free(rVt), free(U), free(S), free(Vt);
    }
    free(A);
    return 0;
}
