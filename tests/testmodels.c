/* tests/testmodels.c */
#include "testmodels.h"

const ModelConfig TEST_SMALL_VIT = {.family = MODEL_VIT, .vit = {.img_size = 8, .in_ch = 1, .patch = 4, .dim = 32,
                                                                 .depth = 2, .heads = 2, .mlp_hidden = 64,
                                                                 .n_classes = 3}};
const ModelConfig TEST_TINY_VIT = {.family = MODEL_VIT, .vit = {.img_size = 28, .in_ch = 1, .patch = 7, .dim = 64,
                                                                .depth = 4, .heads = 2, .mlp_hidden = 256,
                                                                .n_classes = 10, .pool = POOL_CLS, .ln_eps = 1e-6f,
                                                                .init_torch = 1}};
const char *const TEST_QV[2] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
const char *const TEST_FC[2] = {"blocks.*.mlp.fc1", "blocks.*.mlp.fc2"};

void test_build_adapted(Model *m, AdapterSet *ad, const ModelConfig *mc, const char *const *pats, int np,
                        const AdapterKind *kind, int r) {
    Error err;
    ASSERTF(model_build(m, mc, &err) == 0, "%s", err.msg);
    model_init_params(m, 1);
    params_set_all_trainable(m->params, 0);
    AdapterSpec spec = {.kind = kind, .r = r, .alpha = 2.0f * r};
    ASSERTF(adapters_attach(ad, m->targets, m->n_targets, m->params, pats, np, &spec, 3, &err) > 0, "%s", err.msg);
}
