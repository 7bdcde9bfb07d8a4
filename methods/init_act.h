/* methods/init_act.h: the building blocks of the activation-driven initializers EVA (methods/init_eva.c) and
 * CorDA (methods/init_corda.c), exposed so that tests/test_init_act.c can check each against the float64
 * re-implementation of its reference code (scripts/make_act_init_fixtures.py) on fixed inputs. The
 * initializers themselves are INIT_EVA and INIT_CORDA (InitKind tables, methods/registry.c). */
#ifndef METHODS_INIT_ACT_H
#define METHODS_INIT_ACT_H
#include "core/adapter.h"
#include "core/common.h"

/* ---- EVA (METHODS.md, Data-driven initializers; PEFT src/peft/utils/incremental_pca.py) ---- */

/* Incremental, mean-centred PCA of rows x (n features) keeping k components, as PEFT's IncrementalPCA
 * partial_fit (sklearn's algorithm) with the exact thin SVD (PEFT's lowrank=False path). */
typedef struct EvaPca {
    int n, k;        /* features, components kept (k <= n) */
    long seen;       /* rows fitted so far */
    int fits;        /* partial fits done */
    double *mean;    /* (n) running mean of the rows */
    double *m2;      /* (n) running sum of squared deviations from the mean (= var_ * seen) */
    float *comp;     /* (k, n) components_: unit rows, descending variance, the largest-|.| entry of each > 0 */
    float *sv;       /* (k) singular_values_ */
    float *evr;      /* (k) explained_variance_ratio_ = sv^2 / sum(m2) (of the total variance, not of k) */
    float *cos;      /* (k) cosine of each component with the previous fit's (0 before the second fit) */
} EvaPca;

void eva_pca_init(EvaPca *p, int n, int k);
void eva_pca_free(EvaPca *p);
/* One batch X (N, n). Returns 0 when fitted, 1 when skipped because N < k (PEFT's SVDHook skips such
 * batches), -1 with err (a non-finite input, or the SVD failed). */
int eva_pca_partial_fit(EvaPca *p, const float *X, int N, Error *err);
/* The same partial fit from the batch's second moments instead of its rows: S (n, n) = X^T X and c (n) = the
 * column sums of X (N, n) (init_input_stats' statistics, which an accelerator computes without handing X to the
 * host). The batch mean is c / N, the centred Gram Xc^T Xc = S - N mean mean^T, and the thin SVD of the stacked
 * matrix [sv * components; Xc; mean correction] becomes the eigendecomposition (double, LAPACK dsyevr, top k) of
 * its Gram components^T diag(sv^2) components + Xc^T Xc + correction^T correction: singular values = sqrt of the
 * eigenvalues (clamped at 0), components = the eigenvectors; signs, explained variance ratios, cosines and the
 * running mean / m2 as eva_pca_partial_fit. Squaring the matrix costs precision on the small components only: a
 * singular value sigma is known to about eps_S * sigma_max^2 / sigma (eps_S the relative error of S; the CPU's S
 * is double, an accelerator's f32). Returns 0, 1 (N < k: skipped) or -1 with err (a non-finite S or c, or the
 * eigensolver failed). */
int eva_pca_partial_fit_gram(EvaPca *p, const double *S, const double *c, long N, Error *err);

/* EVA's rank redistribution (PEFT eva.py, _get_rank_distribution): pool layer i's explained-variance ratios
 * evr[i][0 .. kmax[i]) over the n_layers layers, take the `budget` largest; ranks[i] = how many are layer
 * i's (so ranks[i] <= kmax[i] and the ranks sum to min(budget, sum kmax)). Ties go to the lower layer index,
 * then the lower component (PEFT swaps ranks so the first of layers with equal inputs gets the larger). */
void eva_rank_distribution(int *ranks, const float *const *evr, const int *kmax, int n_layers, int budget);

/* ---- CorDA (METHODS.md, Data-driven initializers; PEFT src/peft/tuners/lora/corda.py) ---- */

/* C (n, n) += sum over the samples s of Y_s^T Y_s, Y_s = X_s / max|X_s|, where sample s is rows
 * [s T, (s + 1) T) of X (N, n) (one image's tokens). An all-zero sample adds 0. Returns the number of
 * samples added (N / T), or -1 with err when N is not a multiple of T or X has a non-finite entry. */
int corda_cov_add(double *C, const float *X, int N, int T, int n, Error *err);

/* The damping loop: d = 0.01; C' = C + d mean(diag C) I; while ||C' C'^{-1} - I||_F >= tol, d *= 2
 * (METHODS.md: tol = 0.05). C'^{-1} is the inverse of C' rounded to float, from its eigendecomposition in
 * double (dsyevd: for the symmetric positive definite C' the SVD inverse, nothing dropped), itself rounded to
 * float (PEFT inverts in float32); the residual is one dgemm in double. Cfix (n, n) gets C' in double, Cinv (n, n) C'^{-1}.
 * *d, *doublings and *resid (any may be NULL) say where it stopped. Fails (err) when mean(diag C) is not
 * positive and finite (the inputs were all zero) or after 60 doublings (then the residual never fell below
 * tol: a tol at or below float rounding). */
int corda_damp(double *Cfix, float *Cinv, const float *C, int n, double tol, double *d, int *doublings,
               double *resid, Error *err);

/* What corda_from_cov did (may be NULL). */
typedef struct CordaInfo {
    double damp;     /* the d the loop stopped at */
    int doublings;   /* how many times d was doubled */
    double resid;    /* ||C' C'^{-1} - I||_F at d */
} CordaInfo;

/* CorDA on one LoRA adapter from its input covariance C (a->n x a->n): damping (tol 0.05), SVD(W0 C') =
 * U S Vh, V^T = Vh C'^{-1}; ipm = 1 keeps the r largest components, 0 (KPM) the r smallest; S <- S / s;
 * B = U_r S_r^{1/2}, A = S_r^{1/2} V_r^T; W0 <- W0 - s B A. Errors name the layer (a rank above min(m, n),
 * a damping or SVD failure); on error the adapter and W0 are untouched. */
int corda_from_cov(Adapter *a, const float *C, int ipm, CordaInfo *info, Error *err);

#endif
