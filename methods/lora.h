/* methods/lora.h: plain LoRA (Hu et al.): dW = s B A, A (r, n) = lora_A, B (m, r) = lora_B, PEFT's names
 * and shapes. Default init as PEFT: A ~ kaiming_uniform(a = sqrt 5) = U(-1/sqrt n, 1/sqrt n), B = 0.
 * Tensor indices in Adapter.t: LORA_A, LORA_B. */
#ifndef METHODS_LORA_H
#define METHODS_LORA_H
#include "core/adapter.h"

enum { LORA_A = 0, LORA_B = 1 };
extern const AdapterKind ADAPTER_LORA;
#endif
