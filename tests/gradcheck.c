#include "gradcheck.h"
#include <math.h>
#include <stdlib.h>
#include <stdio.h>

int gradcheck(const char *label, GcLossFn f, void *ctx, float *x, const float *g, size_t n, float eps,
              int max_checks) {
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    double atol = 1e-3 * gmax + 1e-6, rtol = 2e-2;
    size_t stride = n > (size_t)max_checks ? n / (size_t)max_checks : 1;
    int bad = 0, checked = 0;
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = (n > 1 ? (n - 1) % stride : 0) / 2; i < n; i += stride) {
        float x0 = x[i];
        x[i] = x0 + eps;
        double fp = f(ctx);
        x[i] = x0 - eps;
        double fm = f(ctx);
        x[i] = x0;
        double num = (fp - fm) / (2.0 * eps);
        double err = fabs(num - g[i]);
        if (err > worst) { worst = err; worst_i = i; }
        if (!(err <= atol + rtol * fabs(num))) {
            if (bad < 5) fprintf(stderr, "%s: entry %zu analytic %.6g numeric %.6g\n", label, i, g[i], num);
            bad++;
        }
        checked++;
    }
    printf("%s: max abs err %.3g (at %zu), max |g| %.3g, %d entries checked, %d bad\n", label, worst, worst_i,
           gmax, checked, bad);
    if (gmax == 0) { fprintf(stderr, "%s: analytic gradient is all zero: the check would prove nothing\n", label); bad++; }
    return bad;
}

void gc_fill(float *x, size_t n, float lo, float hi, unsigned seed) {
    unsigned long long s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

float *gc_filled(size_t n, float lo, float hi, unsigned seed) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    gc_fill(x, n, lo, hi, seed);
    return x;
}

double gc_dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
