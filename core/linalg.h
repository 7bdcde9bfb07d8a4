/* core/linalg.h: the dense linear algebra the initializers and metrics use (METHODS.md: PiSSA, OLoRA, CorDA,
 * CNTLoRA, LoRA-GA, information loss). All matrices are row-major float; each call copies its input to
 * double, runs LAPACK (dgesdd / dgeqrf+dorgqr / dsyevd) in double and returns float, so the float results
 * are accurate to float rounding whatever the conditioning of the intermediate steps.
 *
 * LAPACK sees the same column-major matrix numpy and torch (CPU) hand it, so sign choices match theirs
 * where the LAPACK implementation agrees; they are not normalised: compare sign-invariant quantities.
 *
 * Sizes m, n >= 1 (an ASSERT). Outputs must not alias inputs. Input-dependent failures return -1 with
 * err naming the function and the sizes: a non-finite entry (NaN/Inf) of the input, or LAPACK not converging. */
#ifndef CORE_LINALG_H
#define CORE_LINALG_H

#include "core/common.h"

/* Thin SVD A (m,n) = U (m,k) diag(S) (k) Vt (k,n), k = min(m,n), S descending and >= 0.
 * Any output may be NULL if not wanted (S only: singular values without vectors, the cheaper path).
 * dgesdd, retried with dgesvd if it does not converge. */
int la_svd(float *U, float *S, float *Vt, const float *A, int m, int n, Error *err);

/* The k largest singular triplets of A (m,n), 1 <= k <= min(m,n): U (m,k), S (k), Vt (k,n), la_svd's first k
 * up to signs (S descending and >= 0, the same values and vectors to ~1e-12 of S_1), for the inits that keep
 * only the top r or 2r (PiSSA, LoRA-GA, LoRA-SB, LoRA-XS, CorDA IPM). Any output may be NULL.
 * In double: the k largest eigenpairs of the smaller Gram matrix (A^T A or A A^T, dsyrk + dsyevr range 'I'),
 * the other side's vectors by one GEMM, while S_k >= 1e-3 S_1 (where squaring the spectrum costs nothing at
 * float precision; core/linalg.c says why); else dgesvdx (range 'I') on A, and dgesdd/dgesvd if that does not
 * converge. ~5x faster than la_svd at 768 x 768, k 16 (docs/engine.md, "Init cost").
 * Signs: NOT LAPACK's (which differ between these routines): each triplet is flipped so that the entry of
 * largest magnitude of U's column is positive (the first such on ties), so they do not depend on the path.
 * la_svd's (dgesdd's, torch's on CPU) may differ by a sign per triplet, u_i and v_i together. */
int la_svd_top(float *U, float *S, float *Vt, const float *A, int m, int n, int k, Error *err);

/* A randomized estimate of the k largest singular triplets of A (m,n): torch.svd_lowrank(A, q, niter)'s
 * algorithm (Halko, Martinsson, Tropp 2011, Alg. 4.4 with a QR after every product), the one the official
 * LoRA-GA code and PEFT use. Working on the orientation with rows >= cols: Q = orth(A W) with W (n, q) standard
 * normal from (seed, stream) (core/rng.h: the same numbers for any thread count); niter times Q = orth(A Q')
 * with Q' = orth(A^T Q); then the SVD of the small Q^T A (q, n), U = Q U_small. The first k of its q triplets
 * are returned, in double inside, with la_svd_top's sign rule (each U column's largest-|.| entry positive).
 * 1 <= k <= q <= min(m,n), niter >= 0. Its error shrinks like (S_{q+1} / S_i)^(2 niter + 1): exact to rounding
 * for a matrix of rank <= q, an estimate otherwise (la_svd_top is the exact one). Any output may be NULL. */
int la_svd_lowrank(float *U, float *S, float *Vt, const float *A, int m, int n, int k, int q, int niter,
                   uint64_t seed, uint64_t stream, Error *err);

/* Thin QR A (m,n) = Q (m,k) R (k,n), k = min(m,n); Q has orthonormal columns, R is upper triangular
 * (upper trapezoidal when n > m; entries below the diagonal are exactly 0). Signs as LAPACK's Householder
 * dgeqrf (and numpy.linalg.qr / torch.linalg.qr on CPU): R[j][j] = -sign(v_j[j]) * ||v_j|| where v_j is the
 * j-th column after the previous reflections, so R[0][0] = -sign(A[0][0]) * ||A[:,0]|| (a column already zero
 * below the diagonal is left as is); the diagonal of R may be negative (OLoRA uses it as is, like PEFT).
 * Either output may be NULL. */
int la_qr(float *Q, float *R, const float *A, int m, int n, Error *err);

/* Symmetric eigendecomposition A (n,n) = V diag(w) V^T with w DESCENDING; V row-major (n,n), column j is the
 * unit eigenvector of w[j]. A is symmetrised as (A + A^T)/2 first (a Gram matrix summed in float is symmetric
 * only up to rounding). Either output may be NULL (w only: no vectors). */
int la_eigh(float *w, float *V, const float *A, int n, Error *err);

/* Moore-Penrose pseudo-inverse Ap (n,m) of A (m,n) via the SVD: Ap = V diag(1/S_i, S_i > tol) U^T.
 * Singular values <= tol are dropped; tol = rcond * S_max; rcond < 0 means LAPACK's usual
 * max(m,n) * FLT_EPSILON (METHODS.md, CNTLoRA). A = 0 gives Ap = 0, rank 0.
 * *tol_used (may be NULL): the absolute tolerance; *rank_used (may be NULL): how many singular values kept. */
int la_pinv(float *Ap, const float *A, int m, int n, double rcond, double *tol_used, int *rank_used,
            Error *err);

/* Orthonormal basis of the column space of A (m,n): the left singular vectors with S_i > max(m,n) *
 * FLT_EPSILON * S_max (scipy.linalg.orth's rule at float precision). Q must have room for m * min(m,n)
 * floats; it is filled as a contiguous row-major (m, *rank) matrix. A = 0 (e.g. B at init) gives *rank = 0.
 * Used by the information-loss metric (METHODS.md: Q_B = orth(B), Q_A = orth(A^T)). */
int la_orth(float *Q, int *rank, const float *A, int m, int n, Error *err);

#endif
