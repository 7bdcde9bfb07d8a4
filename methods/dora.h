/* methods/dora.h: DoRA (Liu et al. 2024; METHODS.md "DoRA, rsLoRA"), PEFT's layout.
 *   W' = mag ⊙_row (W0 + s B A) / ||W0 + s B A||_row      (||.||_row: L2 norm of each output row, over inputs)
 * Tensors (PEFT names and shapes): <target>.lora_A (r, n), <target>.lora_B (m, r),
 * <target>.lora_magnitude_vector (m); indices in Adapter.t: DORA_A, DORA_B, DORA_MAG.
 * Default init: A, B as plain LoRA (A ~ U(+-1/sqrt n), B = 0), mag = ||W0 + s B A||_row (= ||W0||_row), so
 * the model's function is unchanged.
 * Forward: y = (mag / norm) ⊙ (x W0^T + s (x A^T) B^T) + b, with norm recomputed from the current W0, A, B
 * every forward (m x n work). Backward treats norm as a CONSTANT (detached, as the paper and PEFT do:
 * PEFT detaches both lora_weight inside the norm and the norm itself), so dA, dB are NOT the exact
 * derivatives of the forward; dmag and dinp are exact (the norm depends on neither).
 * The host weight must be frozen: the host linear's own weight gradient (and LinearSlot.grad_w) is that of
 * x W0^T, not of the rescaled weight. The host bias gradient is exact (b is outside the rescaling). */
#ifndef METHODS_DORA_H
#define METHODS_DORA_H
#include "core/adapter.h"

enum { DORA_A = 0, DORA_B = 1, DORA_MAG = 2 };
extern const AdapterKind ADAPTER_DORA;

/* norm (m) = ||W0 + s B A||_row from the adapter's current tensors. */
void dora_row_norms(const Adapter *a, float *norm);
/* mag = ||W0 + s B A||_row: an initializer that changes A, B or W0 calls this afterwards (as PEFT
 * re-initializes the magnitude after the LoRA init), so the function at init stays that of A, B. */
void dora_reset_magnitude(Adapter *a);
/* The forward with the row norms given (norm != NULL, held fixed) instead of computed: the kind's forward
 * is this with norm = NULL. Tests build a "frozen-norm" loss from it, whose exact gradient is what the
 * detached backward returns. */
void dora_forward_with_norm(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar, const float *norm);
#endif
