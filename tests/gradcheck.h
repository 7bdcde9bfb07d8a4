/* tests/gradcheck.h: finite-difference gradient checks.
 * The caller exposes a scalar loss f(ctx) (compute it in double: e.g. sum(out * fixed random weights)) and
 * the analytic gradient g of that loss with respect to the float array x. gradcheck perturbs up to
 * max_checks entries of x (evenly spread) by +-eps, forms (f(x+e)-f(x-e))/(2 eps) and compares:
 *   |analytic - numeric| <= atol + rtol * |numeric|,  atol = 1e-3 * max|g| + 1e-6, rtol = 2e-2
 * (float32 forward passes make central differences good to about 1e-3 relative).
 * Prints "<label>: max abs err E (at i), max |g| M, K entries" and returns the number of failing entries. */
#ifndef TESTS_GRADCHECK_H
#define TESTS_GRADCHECK_H
#include <stddef.h>

typedef double (*GcLossFn)(void *ctx);
int gradcheck(const char *label, GcLossFn f, void *ctx, float *x, const float *g, size_t n, float eps,
              int max_checks);
/* Fill x (n) with uniform values in [lo, hi) from a fixed seed (tests only; not the project RNG). */
void gc_fill(float *x, size_t n, float lo, float hi, unsigned seed);
/* A new array (malloc; free()) filled by gc_fill. */
float *gc_filled(size_t n, float lo, float hi, unsigned seed);
/* sum a[i] b[i] in double: the scalar loss sum(out * r) the checks differentiate. */
double gc_dot(const float *a, const float *b, size_t n);
#endif
