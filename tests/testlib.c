#include "testlib.h"
#include <stddef.h>

int test_failures = 0;
int test_checks = 0;

double max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *where) {
    double scale = floor;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    double worst = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / scale;
        if (e > worst || isnan(e)) { worst = isnan(e) ? INFINITY : e; w = i; }
    }
    if (where) *where = w;
    return worst;
}

int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}
