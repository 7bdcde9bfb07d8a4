/* methods/lora.h: plain LoRA (Hu et al.): dW = s B A, A (r, n) = lora_A, B (m, r) = lora_B, PEFT's names
 * and shapes. Default init as PEFT: A ~ kaiming_uniform(a = sqrt 5) = U(-1/sqrt n, 1/sqrt n), B = 0.
 * Tensor indices in Adapter.t: LORA_A, LORA_B. */
#ifndef METHODS_LORA_H
#define METHODS_LORA_H
#include "core/adapter.h"

enum { LORA_A = 0, LORA_B = 1 };
extern const AdapterKind ADAPTER_LORA;

/* The kind's entries (core/adapter.h says what each does), for kinds built on LoRA's tensors (LAVA). On a
 * conv target the same kind is reshape-LoRA: dW (C_out, C_in kh kw) = s B A, reshaped to the kernel. */
void lora_create(Adapter *a, ParamSet *ps);
void lora_init_default(Adapter *a, uint64_t seed);
void lora_forward(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar);
void lora_backward(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar);
void lora_delta_weight(const Adapter *a, float *dW);
void lora_backward_delta(Adapter *a, const float *g, Arena *ar);
int lora_tangent_basis(const Adapter *a, TangentBasis *tb, struct Error *err);
/* tb from factors B (m,r), A (r,n): QB = orth(B), QA = orth(A^T) (core/linalg.h la_orth), the given form
 * (product 0: LoRA's sum; 1: LoRA-XS). -1 with err naming target on a non-finite factor. */
int lora_factor_bases(TangentBasis *tb, const float *B, const float *A, int m, int n, int r, int product,
                      const char *target, struct Error *err);
#endif
