/* core/cpu/activations.c: GELU uses an erf that the compiler vectorizes (libm's erff does not, and it was
 * the largest single cost of a tiny-ViT step): Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, below f32
 * resolution of gelu's output scale) with an exp built from a Cody-Waite reduction and a degree-6
 * polynomial (relative error ~2e-7). */
#include "activations.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static inline float exp_fast(float x) {
    /* clamp with selects, not fminf/fmaxf (their NaN rules keep GCC from vectorizing) */
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f; /* ln2 split in two for an exact reduction */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f + r * 0.0013888889f)))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float erf_fast(float x) {
    float a = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float e = 1.0f - poly * exp_fast(-a * a);
    return x < 0.0f ? -e : e;
}

/* Each thread takes a contiguous range and runs a plain simd loop over it (GCC does not vectorize the
 * combined "parallel for simd" form of these loops). */
static void thread_range(size_t n, long *lo, long *hi) {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = (long)(n * (size_t)t / (size_t)nt);
    *hi = (long)(n * (size_t)(t + 1) / (size_t)nt);
}

void gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel if (n > 32768)
    {
        long lo, hi;
        thread_range(n, &lo, &hi);
#pragma omp simd
        for (long i = lo; i < hi; i++) out[i] = 0.5f * inp[i] * (1.0f + erf_fast(inp[i] * INV_SQRT2));
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel if (n > 32768)
    {
        long lo, hi;
        thread_range(n, &lo, &hi);
#pragma omp simd
        for (long i = lo; i < hi; i++) {
            float x = inp[i];
            float cdf = 0.5f * (1.0f + erf_fast(x * INV_SQRT2)), pdf = INV_SQRT_2PI * exp_fast(-0.5f * x * x);
            dinp[i] += dout[i] * (cdf + x * pdf);
        }
    }
}

void silu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel if (n > 32768)
    {
        long lo, hi;
        thread_range(n, &lo, &hi);
#pragma omp simd
        for (long i = lo; i < hi; i++) out[i] = inp[i] / (1.0f + exp_fast(-inp[i]));
    }
}

void silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp parallel if (n > 32768)
    {
        long lo, hi;
        thread_range(n, &lo, &hi);
#pragma omp simd
        for (long i = lo; i < hi; i++) {
            float sg = 1.0f / (1.0f + exp_fast(-inp[i]));
            dinp[i] += dout[i] * sg * (1.0f + inp[i] * (1.0f - sg));
        }
    }
}
