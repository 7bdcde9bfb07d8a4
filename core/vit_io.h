/* core/vit_io.h: ViT checkpoints in safetensors, under timm names (this project's own) or Hugging Face
 * ViTForImageClassification / ViTModel names of transformers 4 (vit.embeddings..., vit.encoder.layer.i.attention.
 * attention.query|key|value -> the q/k/v rows of blocks.i.attn.qkv) and of transformers 5 (vit.layers.i.attention.
 * q_proj|k_proj|v_proj|o_proj, vit.layers.i.mlp.fc1|fc2). HF's pooler.* is ignored (ViT classifiers don't
 * use it). skip_head keeps the model's own head (fine-tuning on a task with other classes). */
#ifndef CORE_VIT_IO_H
#define CORE_VIT_IO_H
#include "vit.h"

int vit_load(ViT *m, const char *path, int skip_head, Error *err);
/* Save all parameters (timm names) plus metadata {k0, v0, ...}. */
int vit_save(const ViT *m, const char *path, const char *const *meta_kv, int n_meta, Error *err);
/* The HF -> timm name map (exposed for tests). */
int vit_hf_name_map(const char *file_name, char *param_name, size_t cap, int *row0, int *rows, void *ctx);
#endif
