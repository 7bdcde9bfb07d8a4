/* core/cpu/dropout.h: inverted dropout (PyTorch nn.Dropout in train mode): out = keep ? x / (1 - p) : 0.
 * Element i is kept iff rng_uniform(seed, stream, i) >= p (core/rng.h), so the mask is a pure function of
 * (seed, stream, i): reproducible, independent of the thread count, and recomputable in backward instead of
 * stored. Give every layer and step its own stream, e.g. rng_stream("dropout", layer, step). p in [0, 1];
 * p = 1 drops everything (out = 0). At eval time simply do not call it. */
#ifndef CORE_CPU_DROPOUT_H
#define CORE_CPU_DROPOUT_H
#include <stddef.h>
#include <stdint.h>

/* out (n) = dropout(inp (n)); mask (n) receives 1 for kept elements, 0 for dropped, or is NULL (not saved).
 * out may alias inp. */
void dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p, uint64_t seed,
                     uint64_t stream);
/* ACCUMULATES dinp (n) += dout (n) * keep / (1 - p). keep comes from mask when it is not NULL, otherwise it
 * is recomputed from (seed, stream), which must then be the forward's. dinp must not alias dout. */
void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p, uint64_t seed,
                      uint64_t stream);
#endif
