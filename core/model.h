/* core/model.h: one face for every backbone family, so trainers, initializers and metrics need not know
 * which one they drive. A Model owns its backbone; params/targets point into it. */
#ifndef CORE_MODEL_H
#define CORE_MODEL_H
#include "adapter.h"
#include "arena.h"
#include "cnn.h"
#include "vit.h"

typedef enum { MODEL_VIT = 0, MODEL_CNN = 1 } ModelFamily;

typedef struct Model {
    ModelFamily family;
    union {
        ViT vit;
        CnnModel cnn;
    } u;
    ParamSet *params;        /* the backbone's parameters */
    AdapterTarget *targets;  /* names adapters can attach to (ViT: linears and q/k/v slices; CNN: convs, classifier) */
    int n_targets;
    int in_ch, img_h, img_w, n_classes;
} Model;

typedef struct ModelConfig {
    ModelFamily family;
    ViTConfig vit;
    CnnConfig cnn;
} ModelConfig;

int model_build(Model *m, const ModelConfig *cfg, Error *err);
void model_init_params(Model *m, uint64_t seed);
/* logits (B, n_classes) from x (B, in_ch, H, W); train selects batch-norm batch statistics / dropout. */
void model_forward(Model *m, float *logits, const float *x, int B, int train, Arena *ar);
/* ACCUMULATES trainable gradients from dlogits (B, n_classes) using the last forward's activations. */
void model_backward(Model *m, const float *dlogits, Arena *ar);
void model_free(Model *m);
#endif
