/* core/cpu/relu.h: relu(x) = max(x, 0), elementwise. */
#ifndef CORE_CPU_RELU_H
#define CORE_CPU_RELU_H
#include <stddef.h>

/* out (n) = max(inp, 0). In-place safe (out == inp). */
void relu_forward(float *out, const float *inp, size_t n);
/* ACCUMULATES dinp (n) += dout (n) where y > 0. y may be the forward's input or its output: both are positive
 * at the same places, so an in-place forward still has what its backward needs. dinp must not alias dout. */
void relu_backward(float *dinp, const float *dout, const float *y, size_t n);
#endif
