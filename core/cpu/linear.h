/* core/cpu/linear.h: y = x W^T + b (PyTorch nn.Linear layout: W is (OC, IC)). */
#ifndef CORE_CPU_LINEAR_H
#define CORE_CPU_LINEAR_H

/* out (N,OC) = inp (N,IC) @ weight(OC,IC)^T + bias(OC); bias may be NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IC, int OC);
/* ACCUMULATES (+=) into dinp (N,IC), dweight (OC,IC), dbias (OC); any may be NULL = not wanted
 * (a frozen weight skips its GEMM, which is most of a LoRA step's savings). */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int IC, int OC);
#endif
