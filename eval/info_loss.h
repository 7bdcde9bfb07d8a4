/* eval/info_loss.h: the information-loss metric of a LoRA adapter and its decomposition against the
 * pretrained point (METHODS.md, "Research metrics": information loss; ABM paper eqs. 10-14).
 * Pure math on row-major float matrices: G = dL/dW (m,n), B (m,r), A (r,n), dW = s B A.
 *
 * Tangent space at (B, A): Q_B = orth(B) (m,kb), Q_A = orth(A^T) (n,ka) (core/linalg.h la_orth), and
 *   P_T(M) = Q_B Q_B^T M + M Q_A Q_A^T - Q_B Q_B^T M Q_A Q_A^T = M - (I - Q_B Q_B^T) M (I - Q_A Q_A^T),
 * an orthogonal projection in the Frobenius inner product. B = 0 (kb = 0) gives M Q_A Q_A^T.
 * Nothing m x m or n x n is formed: the cost is O(m n (kb + ka)), all sums in double. */
#ifndef EVAL_INFO_LOSS_H
#define EVAL_INFO_LOSS_H

#include "core/common.h"

typedef struct {
    double g_norm;   /* ||G||_F */
    double res_norm; /* ||(I - Q_B Q_B^T) G (I - Q_A Q_A^T)||_F = ||G - P_T(G)||_F */
    double ratio;    /* res_norm / g_norm; 0 when G = 0 */
    int rank_b;      /* kb = rank of orth(B) (0 for B = 0) */
    int rank_a;      /* ka = rank of orth(A^T) */
} InfoLoss;

/* G (m,n), B (m,r), A (r,n). Returns -1 with err on a non-finite entry of G, B or A (or LAPACK failing). */
int info_loss(InfoLoss *out, const float *G, const float *B, const float *A, int m, int n, int r, Error *err);

/* The same for an adapter whose outer factors are frozen (LoRA-XS: dW = s B R A, only R trains): its tangent
 * space is {Q_B X Q_A^T}, so res_norm = ||G - Q_B Q_B^T G Q_A Q_A^T||_F (METHODS.md: "for LoRA-XS, Q_B Q_B^T M
 * Q_A Q_A^T"). */
int info_loss_xs(InfoLoss *out, const float *G, const float *B, const float *A, int m, int n, int r, Error *err);

/* P (m,n) = P_T(M) for M (m,n), QB (m,kb), QA (n,ka) with orthonormal columns (kb or ka may be 0, then that
 * factor is NULL-able). P must not alias M. */
void tangent_project(float *P, const float *M, const float *QB, int kb, const float *QA, int ka, int m, int n);

/* Decomposition (METHODS.md; paper eqs. 10-14). G_full = dL/dW at W0, G~ = dL/dW at the adapted point:
 *   total       = ||G_full - P_T(G~)||_F
 *   irreducible = ||G_full - P_T(G_full)||_F        (the low-rank part: what no point of T can carry)
 *   reducible   = ||P_T(G_full - G~)||_F            (boundary mismatch)
 *   bound       = ||G_full - G~||_F                 (eq. 14: >= reducible, P_T being a projection)
 * total^2 = irreducible^2 + reducible^2 because the two terms lie in T-perp and T (tests/test_eval.c checks
 * this; each norm here is computed directly, not from the identity). */
typedef struct {
    double total, irreducible, reducible, bound;
    double g_full_norm; /* ||G_full||_F */
} InfoDecomp;

int info_loss_decompose(InfoDecomp *out, const float *G_full, const float *G_tilde, const float *B, const float *A,
                        int m, int n, int r, Error *err);
/* The same decomposition on LoRA-XS's product-form tangent space (dW = s B R A, B and A frozen):
 * P_T(M) = Q_B Q_B^T M Q_A Q_A^T, also an orthogonal projection, so total^2 = irreducible^2 + reducible^2 holds
 * the same way (tests/test_eval.c eval_info_decompose_xs). */
int info_loss_decompose_xs(InfoDecomp *out, const float *G_full, const float *G_tilde, const float *B,
                           const float *A, int m, int n, int r, Error *err);

#endif
