/* eval/spectra.h: spectra of a trained adapter and its drift from initialization (METHODS.md, "Research
 * metrics": spectra, LAVA A.13; adapter drift, CNTLoRA Table 2). Row-major float: B (m,r), A (r,n). */
#ifndef EVAL_SPECTRA_H
#define EVAL_SPECTRA_H

#include "core/common.h"

/* sv (min(m,n), may be NULL): singular values of B A, descending (those past rank(B A) are 0), via
 * QR of B and A^T: B A = Q_b (R_b R_a^T) Q_a^T, so only the small (min(m,r), min(n,r)) core is decomposed.
 * *num_rank (may be NULL) = #{s_i > tol s_1}, tol <= 0 means 1e-3; *cond (may be NULL) = s_1 / s_k over that
 * set (k = num_rank), NaN when B A = 0 (rank 0). Returns -1 with err on a non-finite entry of B or A. */
int adapter_spectrum(float *sv, int *num_rank, double *cond, const float *B, const float *A, int m, int n, int r,
                     double tol, Error *err);

typedef struct {
    double cosine;        /* <vec(init), vec(final)> / (||init||_F ||final||_F); NaN when either is all zero */
    double spectral_norm; /* ||final - init||_2; NaN if the difference has a non-finite entry */
    double frob_norm;     /* ||final - init||_F */
} DriftStats;

/* init, final (rows,cols): one adapter factor (A, B) or dW = s B A. */
void drift_stats(DriftStats *out, const float *init, const float *final, int rows, int cols);

#endif
