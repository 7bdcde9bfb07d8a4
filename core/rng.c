/* core/rng.c: Philox4x32-10 and the fills built on it. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0; k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

uint64_t rng_stream(const char *name, uint64_t a, uint64_t b) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) { h ^= *p; h *= 1099511628211ull; }
    h ^= a + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= b * 0xBF58476D1CE4E5B9ull + (h << 6) + (h >> 2);
    return h;
}

static inline float u24(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

float rng_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w[4];
    philox4x32(w, seed, stream, i / 4);
    return u24(w[i % 4]);
}

void rng_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < (n + 3) / 4; b++) {
        uint32_t w[4];
        philox4x32(w, seed, stream, b);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) x[4 * b + j] = lo + (hi - lo) * u24(w[j]);
    }
}

/* Box-Muller on two uniforms in (0,1]; returns both normals. */
static void box_muller(float *z0, float *z1, uint32_t a, uint32_t b) {
    double u1 = ((double)(a >> 8) + 1.0) / 16777216.0, u2 = (double)(b >> 8) / 16777216.0;
    double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
    *z0 = (float)(r * cos(t));
    *z1 = (float)(r * sin(t));
}

void rng_fill_normal(float *x, size_t n, float mean, float std, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < (n + 3) / 4; b++) {
        uint32_t w[4];
        float z[4];
        philox4x32(w, seed, stream, b);
        box_muller(&z[0], &z[1], w[0], w[1]);
        box_muller(&z[2], &z[3], w[2], w[3]);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) x[4 * b + j] = mean + std * z[j];
    }
}

void rng_fill_trunc_normal(float *x, size_t n, float mean, float std, float lo, float hi, uint64_t seed,
                           uint64_t stream) {
    /* Redraw k uses a derived stream so each element's sequence of tries is independent of the others. */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = mean;
        for (uint64_t k = 0; k < 64; k++) {
            uint32_t w[4];
            float z0, z1;
            philox4x32(w, seed, stream ^ (k * 0x9E3779B97F4A7C15ull), i);
            box_muller(&z0, &z1, w[0], w[1]);
            v = mean + std * z0;
            if (v >= lo && v <= hi) break;
            v = v < lo ? lo : hi; /* after 64 misses (p ~ 0 for sane bounds) clamp */
        }
        x[i] = v;
    }
}

void rng_permutation(int *perm, int n, uint64_t seed, uint64_t stream) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        uint32_t w[4];
        philox4x32(w, seed, stream, (uint64_t)i);
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int j = (int)(r % (uint64_t)(i + 1));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}
