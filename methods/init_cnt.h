/* methods/init_cnt.h: CNTLoRA (ConsNoTrainLoRA; METHODS.md "CNTLoRA (ConsNoTrainLoRA)"), a data-driven
 * closed-form initializer for LoRA adapters, and the pieces its tests drive directly.
 *
 * Per adapted layer (W0 (m, n)) and init batch j, with X_j the layer's inputs on that batch:
 *   X mode   W_tar = W0 (X X^T)^+
 *   S mode   X X^T = P D P^T, W_tar = W0 (P D^{1/2})^+
 *   Sh mode  W_tar = C (W0^T - X X^T W0^T)^+,  C = c I_m (or c * N(0, 1) entries: option c_random)
 * W_est = (W0 + sum_j w_j W_tar^(j)) / (Bn + 1); dW_est = W_est - W0; s B A = the rank-r part of dW_est
 * (SVD split with fraction p, or QR split); optional VAS redistributes the ranks across layers.
 * Options (method.params.cnt_lora.*) are listed in init_cnt.c. */
#ifndef METHODS_INIT_CNT_H
#define METHODS_INIT_CNT_H
#include "init.h"

enum { CNT_MODE_X = 0, CNT_MODE_S = 1, CNT_MODE_SH = 2 };

/* W_tar (m, n) of one init batch for one layer. W0 (m, n) row-major; X (N, n): the layer's N input rows
 * (samples x tokens) as the model sees them; METHODS.md's X is (n x N) with these rows as its columns, so
 * its X X^T (n x n) is the Gram matrix of the columns here, summed raw (no 1/N).
 * C (m, m) row-major is used by the Sh mode when not NULL, else C = c I_m (c is ignored by X and S modes).
 * The pseudo-inverse drops singular values <= max(rows, cols) * FLT_EPSILON * sigma_max of the matrix it
 * inverts (la_pinv rcond -1): *tol (may be NULL) gets that absolute tolerance, *rank (may be NULL) how many
 * singular values were kept.
 * S mode: P's columns are ordered by descending eigenvalue (the paper's "SVD of X X^T") and each column's
 * sign is fixed so that its largest-magnitude entry is positive (the first one on a tie): W0 (P D^{1/2})^+
 * mixes W0's column l with eigenvector l, so it depends on that order and those signs (project choice).
 * Returns 0, or -1 with err (a non-finite input, LAPACK not converging). */
int cnt_target(float *W_tar, const float *W0, const float *X, int m, int n, int N, int mode, double c,
               const float *C, double *tol, int *rank, Error *err);

/* The split of dW_est (m, n) into B (m, r), A (r, n) with s B A = its rank-r part (METHODS.md, CNTLoRA):
 * qr = 0: SVD dW = U S V^T, S' = S_r / s, B = U_r S'^{1-p}, A = S'^p V_r^T;
 * qr = 1: dW = Q R (Householder, LAPACK's signs), B = Q[:, :r] (orthonormal), A = R[:r, :] / s (p unused).
 * 1 <= r <= min(m, n) (an ASSERT). Returns 0, or -1 with err (the linalg error). */
int cnt_split(float *B, float *A, const float *dW, int m, int n, int r, double s, double p, int qr, Error *err);

/* VAS rank allocation (METHODS.md, CNTLoRA, VAS). S[i] holds the k[i] singular values of matrix i's dW_est
 * (descending); v_m = s_m^2 / sum_k s_k^2 (l1 = 0) or s_m^2 / sum_k s_k (l1 = 1), per matrix. Pool every
 * matrix's v and keep the K largest (ties: lower matrix index, then lower m); ranks[i] = how many of them are
 * matrix i's. Each matrix first gets min(min_rank, k[i]) of its own largest values, so with min_rank > 0 the
 * ranks still sum to K (the K - reserved largest of the rest fill up). Fails when K is smaller than what
 * min_rank reserves or larger than sum k[i]. */
int cnt_vas_ranks(int *ranks, const float *const *S, const int *k, int n_mat, int K, int min_rank, int l1,
                  Error *err);

extern const InitKind INIT_CNT_LORA;
#endif
