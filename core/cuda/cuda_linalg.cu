/* core/cuda/cuda_linalg.cu: cuSOLVER SVD / QR / eigh behind core/linalg.h's contracts (cuda_linalg.h). The
 * row-major host matrix is handed to cuSOLVER (column-major) in the orientation each routine needs; the
 * transposes are host loops (these are setup-time calls on matrices of at most a few thousand rows). */
#include <math.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_linalg.h"

static void solver_init(void) {
    if (g_cuda.solver) return;
    CUDA_CHECK(cusolverDnCreate(&g_cuda.solver));
    CUDA_CHECK(cusolverDnSetStream(g_cuda.solver, g_cuda.stream));
}

static int all_finite(const float *a, long n) {
    for (long i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

static int begin(const char *fn, const float *A, long numel, int m, int n, char *err) {
    if (cuda_init(err)) return -1;
    CUDA_ASSERT(m >= 1 && n >= 1 && A);
    if (!all_finite(A, numel)) {
        snprintf(err, 256, "%s: the (%d,%d) input has a non-finite entry (NaN or Inf)", fn, m, n);
        return -1;
    }
    solver_init();
    return 0;
}

static int info_of(const int *dinfo, const char *fn, int m, int n, char *err) {
    int info = 0;
    CUDA_CHECK(cudaMemcpyAsync(&info, dinfo, sizeof info, cudaMemcpyDeviceToHost, g_cuda.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
    if (info == 0) return 0;
    if (info < 0) cuda_die(__FILE__, __LINE__, "%s: cuSOLVER says argument %d is invalid (m %d n %d)", fn, -info, m, n);
    snprintf(err, 256, "%s: cuSOLVER did not converge on the (%d,%d) matrix (info %d)", fn, m, n, info);
    return -1;
}

extern "C" int cuda_la_svd(float *U, float *S, float *Vt, const float *A, int m, int n, char *err) {
    if (begin("cuda_la_svd", A, (long)m * n, m, n, err)) return -1;
    /* B: column-major with rows >= cols. n >= m: the row-major A as it lies IS A^T column-major (n x m);
     * else transpose on the host to A column-major (m x n). */
    int wide = n >= m, rows = wide ? n : m, cols = wide ? m : n, k = cols;
    long mn = (long)m * n;
    float *hB = (float *)malloc(sizeof(float) * mn);
    if (wide) memcpy(hB, A, sizeof(float) * mn);
    else
        for (int i = 0; i < m; i++)
            for (int l = 0; l < n; l++) hB[i + (long)l * m] = A[(long)i * n + l];
    int vectors = U || Vt;
    float *dB = (float *)cuda_alloc(sizeof(float) * mn, "cuda_la_svd input");
    float *dS = (float *)cuda_alloc(sizeof(float) * k, "cuda_la_svd S");
    float *dU = vectors ? (float *)cuda_alloc(sizeof(float) * (long)rows * k, "cuda_la_svd U") : NULL;
    float *dVT = vectors ? (float *)cuda_alloc(sizeof(float) * (long)k * cols, "cuda_la_svd VT") : NULL;
    int *dinfo = (int *)cuda_alloc(sizeof(int), "cuda_la_svd info");
    cuda_upload_f32(dB, hB, (size_t)mn);
    int lwork = 0;
    CUDA_CHECK(cusolverDnSgesvd_bufferSize(g_cuda.solver, rows, cols, &lwork));
    float *dwork = (float *)cuda_alloc(sizeof(float) * (lwork > 0 ? lwork : 1), "cuda_la_svd workspace");
    signed char job = vectors ? 'S' : 'N';
    CUDA_CHECK(cusolverDnSgesvd(g_cuda.solver, job, job, rows, cols, dB, rows, dS, dU, rows, dVT, k, dwork, lwork,
                                NULL, dinfo));
    int rc = info_of(dinfo, "cuda_la_svd", m, n, err);
    if (!rc) {
        if (S) cuda_download_f32(S, dS, (size_t)k);
        if (vectors) {
            float *hU = (float *)malloc(sizeof(float) * (long)rows * k), *hVT = (float *)malloc(sizeof(float) * (long)k * cols);
            cuda_download_f32(hU, dU, (size_t)rows * k);
            cuda_download_f32(hVT, dVT, (size_t)k * cols);
            if (wide) { /* A = VT^T S U^T: U_A = VT^T and Vt_A = U^T, both already row-major in memory */
                if (U) memcpy(U, hVT, sizeof(float) * (long)k * cols);
                if (Vt) memcpy(Vt, hU, sizeof(float) * (long)rows * k);
            } else { /* A = U S VT column-major: transpose both into row-major */
                if (U)
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < k; j++) U[(long)i * k + j] = hU[i + (long)j * m];
                if (Vt)
                    for (int j = 0; j < k; j++)
                        for (int l = 0; l < n; l++) Vt[(long)j * n + l] = hVT[j + (long)l * k];
            }
            free(hU);
            free(hVT);
        }
    }
    free(hB);
    cuda_free(dB); cuda_free(dS); cuda_free(dU); cuda_free(dVT); cuda_free(dinfo); cuda_free(dwork);
    return rc;
}

extern "C" int cuda_la_qr(float *Q, float *R, const float *A, int m, int n, char *err) {
    if (begin("cuda_la_qr", A, (long)m * n, m, n, err)) return -1;
    int k = m < n ? m : n;
    long mn = (long)m * n;
    float *hA = (float *)malloc(sizeof(float) * mn); /* column-major (m x n) */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) hA[i + (long)j * m] = A[(long)i * n + j];
    float *dA = (float *)cuda_alloc(sizeof(float) * mn, "cuda_la_qr matrix");
    float *dtau = (float *)cuda_alloc(sizeof(float) * k, "cuda_la_qr tau");
    int *dinfo = (int *)cuda_alloc(sizeof(int), "cuda_la_qr info");
    cuda_upload_f32(dA, hA, (size_t)mn);
    int lw1 = 0, lw2 = 0;
    CUDA_CHECK(cusolverDnSgeqrf_bufferSize(g_cuda.solver, m, n, dA, m, &lw1));
    CUDA_CHECK(cusolverDnSorgqr_bufferSize(g_cuda.solver, m, k, k, dA, m, dtau, &lw2));
    int lwork = lw1 > lw2 ? lw1 : lw2;
    float *dwork = (float *)cuda_alloc(sizeof(float) * (lwork > 0 ? lwork : 1), "cuda_la_qr workspace");
    CUDA_CHECK(cusolverDnSgeqrf(g_cuda.solver, m, n, dA, m, dtau, dwork, lwork, dinfo));
    int rc = info_of(dinfo, "cuda_la_qr (geqrf)", m, n, err);
    if (!rc && R) {
        cuda_download_f32(hA, dA, (size_t)mn);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < n; j++) R[(long)i * n + j] = j >= i ? hA[i + (long)j * m] : 0.0f;
    }
    if (!rc && Q) {
        CUDA_CHECK(cusolverDnSorgqr(g_cuda.solver, m, k, k, dA, m, dtau, dwork, lwork, dinfo));
        rc = info_of(dinfo, "cuda_la_qr (orgqr)", m, n, err);
        if (!rc) {
            cuda_download_f32(hA, dA, (size_t)m * k);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < k; j++) Q[(long)i * k + j] = hA[i + (long)j * m];
        }
    }
    free(hA);
    cuda_free(dA); cuda_free(dtau); cuda_free(dinfo); cuda_free(dwork);
    return rc;
}

extern "C" int cuda_la_eigh(float *w, float *V, const float *A, int n, char *err) {
    if (begin("cuda_la_eigh", A, (long)n * n, n, n, err)) return -1;
    long nn = (long)n * n;
    float *hS = (float *)malloc(sizeof(float) * nn); /* (A + A^T)/2: the same in either storage order */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) hS[(long)i * n + j] = 0.5f * (A[(long)i * n + j] + A[(long)j * n + i]);
    float *dS = (float *)cuda_alloc(sizeof(float) * nn, "cuda_la_eigh matrix");
    float *dW = (float *)cuda_alloc(sizeof(float) * n, "cuda_la_eigh eigenvalues");
    int *dinfo = (int *)cuda_alloc(sizeof(int), "cuda_la_eigh info");
    cuda_upload_f32(dS, hS, (size_t)nn);
    cusolverEigMode_t mode = V ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
    int lwork = 0;
    CUDA_CHECK(cusolverDnSsyevd_bufferSize(g_cuda.solver, mode, CUBLAS_FILL_MODE_LOWER, n, dS, n, dW, &lwork));
    float *dwork = (float *)cuda_alloc(sizeof(float) * (lwork > 0 ? lwork : 1), "cuda_la_eigh workspace");
    CUDA_CHECK(cusolverDnSsyevd(g_cuda.solver, mode, CUBLAS_FILL_MODE_LOWER, n, dS, n, dW, dwork, lwork, dinfo));
    int rc = info_of(dinfo, "cuda_la_eigh", n, n, err);
    if (!rc) { /* syevd: ascending eigenvalues, eigenvectors in the columns (column-major) -> descending */
        float *hW = (float *)malloc(sizeof(float) * n);
        cuda_download_f32(hW, dW, (size_t)n);
        if (w)
            for (int j = 0; j < n; j++) w[j] = hW[n - 1 - j];
        if (V) {
            cuda_download_f32(hS, dS, (size_t)nn);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) V[(long)i * n + j] = hS[i + (long)(n - 1 - j) * n];
        }
        free(hW);
    }
    free(hS);
    cuda_free(dS); cuda_free(dW); cuda_free(dinfo); cuda_free(dwork);
    return rc;
}
