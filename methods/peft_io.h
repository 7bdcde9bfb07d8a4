/* methods/peft_io.h: adapters in PEFT's on-disk format, so they move between this framework and PyTorch
 * users both ways: a directory with adapter_config.json and adapter_model.safetensors, tensors named
 * "base_model.model.<module>.lora_A.weight" (r, in) and ".lora_B.weight" (out, r), f32.
 * Module names: "timm" uses the targets as they are (blocks.3.attn.qkv, blocks.3.mlp.fc1, head); "hf" uses
 * Hugging Face ViT names (vit.layers.3.attention.q_proj, ...; "hf4": vit.encoder.layer.3.attention.attention.
 * query), the only way PEFT can address the q / k / v thirds of a fused qkv, so adapters on `attn.qkv:q|k|v`
 * are written with "hf" names. Loading accepts every naming.
 * Kinds: LoRA; DoRA (use_dora, "<module>.lora_magnitude_vector" (m) as PEFT keys it); LoRA-XS is saved as the LoRA
 * with the same dW (lora_B = B R: PEFT has no LoRA-XS) and cannot be loaded back as LoRA-XS. Adapters whose rank or
 * alpha differ from the first one's (EVA, VAS) go into rank_pattern / alpha_pattern under their full module
 * names, and loading reads both (keys matched as literal module-name suffixes). */
#ifndef METHODS_PEFT_IO_H
#define METHODS_PEFT_IO_H
#include "core/adapter.h"
#include "core/common.h"

/* HF: transformers 5 names (vit.layers.i.attention.q_proj, what PEFT 0.21 writes); HF4: transformers 4
 * (vit.encoder.layer.i.attention.attention.query). */
typedef enum { PEFT_NAMES_AUTO = 0, PEFT_NAMES_TIMM, PEFT_NAMES_HF, PEFT_NAMES_HF4 } PeftNaming;

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (dir is created). */
int peft_save(const char *dir, const AdapterSet *set, PeftNaming naming, Error *err);
/* Loads a PEFT adapter directory into an already attached set (same targets, rank and alpha): every
 * adapter must find its two tensors with the right shapes and every LoRA tensor in the file must belong to
 * an adapter; r and lora_alpha (and use_rslora) in adapter_config.json must match. Nothing is copied
 * unless everything checks. */
int peft_load(const char *dir, AdapterSet *set, Error *err);
/* The PEFT module name of a target under a naming (exposed for tests); -1 if it has none. */
int peft_module_name(const char *target, PeftNaming naming, char *out, size_t cap);
#endif
