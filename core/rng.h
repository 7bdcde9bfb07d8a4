/* core/rng.h: a counter-based RNG (Philox4x32-10, Salmon et al. 2011). Every draw is a pure function of
 * (seed, stream, index), so results do not depend on thread count, on loop order or on which runs came
 * before: a tensor filled by rng_fill_* with the same (seed, stream) is the same whatever else happened.
 * Streams name independent purposes (init of a parameter, dropout of a layer at a step, data order...);
 * build them with rng_stream(name_hash, a, b). */
#ifndef CORE_RNG_H
#define CORE_RNG_H
#include <stddef.h>
#include <stdint.h>

/* Four 32-bit random words for counter `index` of (seed, stream). */
void philox4x32(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t index);
/* A stream id from a string (FNV-1a 64) mixed with two integers (e.g. layer index, step). */
uint64_t rng_stream(const char *name, uint64_t a, uint64_t b);

/* Uniform in [0,1) with 24 random bits; element i of the fill uses counter i/4 word i%4. */
float rng_uniform(uint64_t seed, uint64_t stream, uint64_t i);
/* x[i] = lo + (hi-lo) * U(seed, stream, i). Parallel-safe and thread-count independent. */
void rng_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint64_t stream);
/* x[i] = mean + std * N(0,1) by Box-Muller on the pair (2*(i/2), 2*(i/2)+1) of uniforms. */
void rng_fill_normal(float *x, size_t n, float mean, float std, uint64_t seed, uint64_t stream);
/* Truncated normal in [lo, hi] by re-drawing (deterministic: k-th redraw uses counter n + ...), timm's trunc_normal_. */
void rng_fill_trunc_normal(float *x, size_t n, float mean, float std, float lo, float hi, uint64_t seed,
                           uint64_t stream);
/* A permutation of 0..n-1 (Fisher-Yates driven by counters), e.g. an epoch's data order. */
void rng_permutation(int *perm, int n, uint64_t seed, uint64_t stream);
#endif
