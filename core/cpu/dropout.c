/* core/cpu/dropout.c: one Philox call gives the uniforms of four consecutive elements (rng_uniform maps
 * element i to counter i/4, word i%4), so the loops run over blocks of four. */
#include "dropout.h"

#include "core/common.h"
#include "core/rng.h"

/* The keep bits of elements 4b..4b+3, bit j for element 4b+j; identical to rng_uniform(seed, stream, i) >= p. */
static unsigned keep_bits(uint64_t seed, uint64_t stream, size_t b, float p) {
    uint32_t w[4];
    philox4x32(w, seed, stream, b);
    unsigned bits = 0;
    for (int j = 0; j < 4; j++) /* same 24-bit uniform as rng_uniform */
        if ((float)(w[j] >> 8) * (1.0f / 16777216.0f) >= p) bits |= 1u << j;
    return bits;
}

void dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p, uint64_t seed,
                     uint64_t stream) {
    ASSERTF(p >= 0.0f && p <= 1.0f, "dropout: p = %g outside [0, 1]", p);
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    size_t nb = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < nb; b++) {
        unsigned bits = keep_bits(seed, stream, b, p);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) {
            size_t i = 4 * b + j;
            int keep = (bits >> j) & 1;
            out[i] = keep ? inp[i] * scale : 0.0f;
            if (mask) mask[i] = (uint8_t)keep;
        }
    }
}

void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p, uint64_t seed,
                      uint64_t stream) {
    ASSERTF(p >= 0.0f && p <= 1.0f, "dropout: p = %g outside [0, 1]", p);
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    size_t nb = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < nb; b++) {
        unsigned bits = mask ? 0u : keep_bits(seed, stream, b, p);
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++) {
            size_t i = 4 * b + j;
            int keep = mask ? mask[i] : (int)((bits >> j) & 1);
            if (keep) dinp[i] += dout[i] * scale;
        }
    }
}
