/* methods/lora_xs.h: LoRA-XS (Balazy et al. 2024; METHODS.md "LoRA-XS and LoRA-SB"): dW = s B R A with
 * B (m, r), A (r, n) FROZEN and R (r, r) the only trained tensor.
 * Tensors: <target>.lora_A (r, n), <target>.lora_B (m, r), <target>.lora_R (r, r); indices in Adapter.t:
 * LORA_XS_A, LORA_XS_B, LORA_XS_R. The official code keeps A, B as PEFT's lora_A / lora_B Linear weights
 * and R as a separate "default_lora_latent_mapping" Linear (r x r); we name it lora_R (a PEFT-format export
 * maps the name). A and B are registered with trainable = 0, so params_alloc_grads gives them no gradient
 * memory (and backward skips their GEMMs); a caller may still make them trainable (then the gradients are
 * computed too).
 * Default init (a project choice; LoRA-XS's own init, the truncated SVD of W0, is an initializer):
 * A ~ U(+-1/sqrt n), B ~ U(+-1/sqrt r), R = 0, so dW = 0 at start. */
#ifndef METHODS_LORA_XS_H
#define METHODS_LORA_XS_H
#include "core/adapter.h"

enum { LORA_XS_A = 0, LORA_XS_B = 1, LORA_XS_R = 2 };
extern const AdapterKind ADAPTER_LORA_XS;
#endif
