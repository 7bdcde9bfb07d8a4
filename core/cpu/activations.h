/* core/cpu/activations.h: pointwise nonlinearities. GELU is the exact erf form (timm / nn.GELU default):
 * gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). SiLU(x) = x * sigmoid(x). */
#ifndef CORE_CPU_ACTIVATIONS_H
#define CORE_CPU_ACTIVATIONS_H
#include <stddef.h>

void gelu_forward(float *out, const float *inp, size_t n);
/* ACCUMULATES dinp += dout * gelu'(inp). */
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void silu_forward(float *out, const float *inp, size_t n);
void silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
#endif
