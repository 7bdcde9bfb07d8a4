/* core/threads.c */
#include "threads.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

void core_set_threads(int n) {
    if (n <= 0) n = omp_get_max_threads();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int core_threads(void) { return omp_get_max_threads(); }

int core_parallel_items(int n, int (*body)(void *ctx, int i, Error *err), void *ctx, Error *err) {
    if (n <= 0) return 0;
    Error *errs = xcalloc((size_t)n, sizeof *errs);
    int first = n; /* the smallest failing item so far */
    if (omp_in_parallel()) {
        for (int i = 0; i < n && first == n; i++)
            if (body(ctx, i, &errs[i])) first = i;
    } else {
        /* both read before openblas_set_num_threads: the OpenMP build of OpenBLAS sets OpenMP's count too */
        int nt = core_threads(), blas_nt = openblas_get_num_threads();
        openblas_set_num_threads(1);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            int f;
#pragma omp atomic read
            f = first;
            if (i > f) continue; /* a smaller item failed: a serial loop would not have got here */
            if (body(ctx, i, &errs[i])) {
#pragma omp critical(core_parallel_items)
                if (i < first) {
#pragma omp atomic write
                    first = i;
                }
            }
        }
        openblas_set_num_threads(blas_nt);
        omp_set_num_threads(nt);
    }
    int rc = 0;
    if (first < n) {
        if (err) memcpy(err, &errs[first], sizeof *err);
        rc = -1;
    }
    free(errs);
    return rc;
}
