/* core/threads.c */
#include "threads.h"

#include <cblas.h>
#include <omp.h>

void core_set_threads(int n) {
    if (n <= 0) n = omp_get_max_threads();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int core_threads(void) { return omp_get_max_threads(); }
