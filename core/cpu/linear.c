/* core/cpu/linear.c: OpenBLAS sgemm does the work; bias add / bias grad are OpenMP loops. */
#include "linear.h"

#include <cblas.h>

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC);
    if (bias) {
#pragma omp parallel for schedule(static) if ((long)N * OC > 32768)
        for (int i = 0; i < N; i++) {
            float *o = out + (long)i * OC;
            for (int j = 0; j < OC; j++) o[j] += bias[j];
        }
    }
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int IC, int OC) {
    if (dinp) /* (N,IC) += dout (N,OC) @ W (OC,IC) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
    if (dweight) /* (OC,IC) += dout^T (OC,N) @ inp (N,IC) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
    if (dbias) {
#pragma omp parallel for schedule(static) if ((long)N * OC > 32768)
        for (int j = 0; j < OC; j++) {
            float s = 0;
            for (int i = 0; i < N; i++) s += dout[(long)i * OC + j];
            dbias[j] += s;
        }
    }
}
