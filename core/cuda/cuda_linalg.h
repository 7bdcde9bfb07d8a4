/* core/cuda/cuda_linalg.h: thin SVD, thin QR and symmetric eigendecomposition on the GPU (cuSOLVER, f32),
 * with core/linalg.h's contracts: row-major float matrices in HOST memory, the same output shapes and orders:
 *   cuda_la_svd:  A (m,n) = U (m,k) diag(S) (k) Vt (k,n), k = min(m,n), S descending and >= 0 (gesvd on the
 *                 orientation with rows >= cols; singular vectors' signs are cuSOLVER's, not normalised, like
 *                 the CPU's: compare subspaces and reconstructions);
 *   cuda_la_qr:   A (m,n) = Q (m,k) R (k,n), Householder (geqrf + orgqr), LAPACK's sign convention (R[j][j] =
 *                 -sign(v_j[j]) ||v_j||), entries of R below the diagonal exactly 0;
 *   cuda_la_eigh: A (n,n) symmetrised as (A + A^T)/2, w DESCENDING, column j of V (row-major (n,n)) the unit
 *                 eigenvector of w[j] (syevd).
 * The CPU versions run LAPACK in double; these run in f32 on the device, so results agree with the CPU's to
 * f32 accuracy of the decomposition (relative 1e-5 to 1e-4 for well-separated spectra; tests/test_parity.c
 * "linalg" states the measured numbers). Any output may be NULL (not wanted; SVD / eigh with S / w only skip
 * the vectors). A non-finite input or a solver that does not converge returns -1 with err naming the call and
 * the sizes. Each call allocates device scratch with cuda_alloc and frees it (setup-time use: initializers,
 * metrics; not for a step loop). Needs cuda_init() (returns -1 with err when there is no GPU). */
#ifndef CORE_CUDA_CUDA_LINALG_H
#define CORE_CUDA_CUDA_LINALG_H
#ifdef __cplusplus
extern "C" {
#endif

/* err: at least 256 bytes */
int cuda_la_svd(float *U, float *S, float *Vt, const float *A, int m, int n, char *err);
int cuda_la_qr(float *Q, float *R, const float *A, int m, int n, char *err);
int cuda_la_eigh(float *w, float *V, const float *A, int n, char *err);

#ifdef __cplusplus
}
#endif
#endif
