/* eval/spectra.c: see spectra.h (METHODS.md, "Research metrics": spectra, adapter drift). */
#include "eval/spectra.h"

#include "core/linalg.h"

#include <math.h>
#include <string.h>

int adapter_spectrum(float *sv, int *num_rank, double *cond, const float *B, const float *A, int m, int n, int r,
                     double tol, Error *err) {
    ASSERT(B && A && m >= 1 && n >= 1 && r >= 1);
    if (tol <= 0) tol = 1e-3;
    int k = MIN(m, n), kb = MIN(m, r), ka = MIN(n, r), kc = MIN(kb, ka);
    float *At = xmalloc((size_t)n * r * sizeof *At);
    for (int l = 0; l < r; l++)
        for (int j = 0; j < n; j++) At[(size_t)j * r + l] = A[(size_t)l * n + j];
    float *Rb = xmalloc((size_t)kb * r * sizeof *Rb), *Ra = xmalloc((size_t)ka * r * sizeof *Ra);
    float *C = xmalloc((size_t)kb * ka * sizeof *C), *s = xcalloc((size_t)k, sizeof *s);
    Error e2 = {{0}};
    int rc = la_qr(NULL, Rb, B, m, r, &e2);
    if (rc != 0) {
        err_set(err, "adapter_spectrum: B (%d,%d): %s", m, r, e2.msg);
        goto done;
    }
    if ((rc = la_qr(NULL, Ra, At, n, r, &e2)) != 0) {
        err_set(err, "adapter_spectrum: A (%d,%d): %s", r, n, e2.msg);
        goto done;
    }
    for (int i = 0; i < kb; i++) /* C = R_b R_a^T (kb,ka) */
        for (int j = 0; j < ka; j++) {
            double acc = 0;
            for (int l = 0; l < r; l++) acc += (double)Rb[(size_t)i * r + l] * (double)Ra[(size_t)j * r + l];
            C[(size_t)i * ka + j] = (float)acc;
        }
    if ((rc = la_svd(NULL, s, NULL, C, kb, ka, &e2)) != 0) { /* fills s[0..kc), the rest stays 0 */
        err_set(err, "adapter_spectrum: core (%d,%d): %s", kb, ka, e2.msg);
        goto done;
    }
    int nr = 0;
    while (nr < kc && s[nr] > 0 && (double)s[nr] > tol * (double)s[0]) nr++;
    if (sv) memcpy(sv, s, (size_t)k * sizeof *sv);
    if (num_rank) *num_rank = nr;
    if (cond) *cond = nr > 0 ? (double)s[0] / (double)s[nr - 1] : NAN;
done:
    free(At), free(Rb), free(Ra), free(C), free(s);
    return rc;
}

void drift_stats(DriftStats *out, const float *init, const float *final, int rows, int cols) {
    ASSERT(out && init && final && rows >= 1 && cols >= 1);
    size_t n = (size_t)rows * cols;
    double dot = 0, ni = 0, nf = 0, nd = 0;
    float *D = xmalloc(n * sizeof *D);
    for (size_t i = 0; i < n; i++) {
        double a = init[i], b = final[i];
        dot += a * b, ni += a * a, nf += b * b;
        D[i] = (float)(b - a);
        nd += (b - a) * (b - a);
    }
    out->cosine = (ni > 0 && nf > 0) ? dot / (sqrt(ni) * sqrt(nf)) : NAN; /* B = 0 inits: NaN, not 0 */
    out->frob_norm = sqrt(nd);
    Error err;
    float *s = xmalloc((size_t)MIN(rows, cols) * sizeof *s);
    out->spectral_norm = la_svd(NULL, s, NULL, D, rows, cols, &err) == 0 ? (double)s[0] : NAN;
    free(s), free(D);
}
