/* core/model.c: dispatch on the backbone family. */
#include "model.h"

#include <string.h>

int model_build(Model *m, const ModelConfig *cfg, Error *err) {
    memset(m, 0, sizeof *m);
    m->family = cfg->family;
    if (cfg->family == MODEL_VIT) {
        if (vit_build(&m->u.vit, &cfg->vit, err)) return -1;
        m->params = &m->u.vit.params;
        m->targets = m->u.vit.targets;
        m->n_targets = m->u.vit.n_targets;
        m->in_ch = cfg->vit.in_ch;
        m->img_h = m->img_w = cfg->vit.img_size;
        m->n_classes = cfg->vit.n_classes;
    } else {
        if (cnn_build(&m->u.cnn, &cfg->cnn, err)) return -1;
        m->params = &m->u.cnn.params;
        m->targets = m->u.cnn.targets;
        m->n_targets = m->u.cnn.n_targets;
        m->in_ch = cfg->cnn.in_ch;
        m->img_h = cfg->cnn.img_h;
        m->img_w = cfg->cnn.img_w;
        m->n_classes = cfg->cnn.n_classes;
    }
    return 0;
}

void model_init_params(Model *m, uint64_t seed) {
    if (m->family == MODEL_VIT) vit_init_params(&m->u.vit, seed);
    else cnn_init_params(&m->u.cnn, seed);
}

void model_forward(Model *m, float *logits, const float *x, int B, int train, Arena *ar) {
    if (m->family == MODEL_VIT) vit_forward(&m->u.vit, logits, x, B, ar);
    else cnn_forward(&m->u.cnn, logits, x, B, train, ar);
}

void model_backward(Model *m, const float *dlogits, Arena *ar) {
    if (m->family == MODEL_VIT) vit_backward(&m->u.vit, dlogits, ar);
    else cnn_backward(&m->u.cnn, dlogits, ar);
}

void model_free(Model *m) {
    if (m->family == MODEL_VIT) vit_free(&m->u.vit);
    else cnn_free(&m->u.cnn);
    memset(m, 0, sizeof *m);
}
