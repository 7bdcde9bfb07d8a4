/* tests/test_ref.c: the C engine against PyTorch (float64) fixtures made by scripts/make_fixtures.py.
 * Usage: test_ref <fixture> where fixture is tiny_vit, tiny_vit_mean, tiny_vit_lora or tiny_vit_hf.
 * Checks logits (max rel. error <= 1e-4), the loss, and every parameter gradient (<= 1e-3), relative to
 * the largest magnitude of each reference tensor, and prints the max errors seen. */
#include <string.h>

#include "core/cpu/xent.h"
#include "core/params_io.h"
#include "core/safetensors.h"
#include "core/vit_io.h"
#include "methods/lora.h"
#include "testlib.h"

static int read_tensor(const SafeTensors *st, const char *name, float *dst, int64_t n) {
    Error err;
    if (st_read_f32(st, name, dst, n, &err)) { fprintf(stderr, "%s\n", err.msg); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    const char *fx = argc > 1 ? argv[1] : "tiny_vit";
    int lora = strcmp(fx, "tiny_vit_lora") == 0, hf = strcmp(fx, "tiny_vit_hf") == 0;
    const char *base = hf ? "tiny_vit" : fx;
    char wpath[512], ipath[512], rpath[512];
    snprintf(wpath, sizeof wpath, "%s/%s.safetensors", TEST_FIXTURE_DIR, fx);
    snprintf(ipath, sizeof ipath, "%s/%s_inputs.safetensors", TEST_FIXTURE_DIR, base);
    snprintf(rpath, sizeof rpath, "%s/%s_ref.safetensors", TEST_FIXTURE_DIR, base);
    ViTConfig cfg = {.img_size = 8, .in_ch = 2, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_hidden = 32,
                     .n_classes = 5, .pool = strcmp(fx, "tiny_vit_mean") == 0 ? POOL_MEAN : POOL_CLS, .ln_eps = 1e-6f};
    Error err;
    ViT m;
    ASSERT(vit_build(&m, &cfg, &err) == 0);
    if (vit_load(&m, wpath, 0, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    AdapterSet ad;
    if (lora) {
        params_set_all_trainable(&m.params, 0);
        params_set_trainable(&m.params, "head.*", 1);
        params_alloc_grads(&m.params);
        const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
        AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = 2, .alpha = 4};
        ASSERT(adapters_attach(&ad, m.targets, m.n_targets, &m.params, pats, 2, &spec, 0, &err) == 4);
        ParamLoadOptions o = {.ignore = "input.*"};
        if (params_load(&ad.params, ipath, &o, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    }
    SafeTensors in, ref;
    if (st_open(&in, ipath, &err) || st_open(&ref, rpath, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int B = 3, K = 5;
    float x[3 * 2 * 8 * 8], yf[3], logits[15], rlogits[15], probs[15], dlogits[15], rloss;
    int32_t yi[3];
    int y[3];
    ASSERT(read_tensor(&in, "input.x", x, 3 * 2 * 64) == 0);
    const StTensor *ty = st_find(&in, "input.y");
    ASSERT(ty && ty->dtype == ST_I32 && ty->numel == 3);
    memcpy(yi, ty->data, sizeof yi);
    for (int i = 0; i < 3; i++) y[i] = yi[i], yf[i] = (float)yi[i];
    (void)yf;
    Arena ar;
    arena_init(&ar, 1 << 16);
    vit_forward(&m, logits, x, B, &ar);
    double loss = xent_forward(probs, logits, y, B, K, 0.1f, NULL);
    xent_backward(dlogits, probs, y, B, K, 0.1f, 1.0f);
    vit_backward(&m, dlogits, &ar);
    ASSERT(read_tensor(&ref, "logits", rlogits, 15) == 0 && read_tensor(&ref, "loss", &rloss, 1) == 0);
    double e = max_rel_err(logits, rlogits, 15, 1e-6, NULL);
    printf("%s: logits max rel err %.3g, loss %.7f vs %.7f\n", fx, e, loss, rloss);
    CHECK_MSG(e <= 1e-4, "logits rel err %.3g", e);
    CHECK_NEAR(loss, rloss, 1e-4 * rloss);
    double worst = 0;
    int n_grads = 0;
    ParamSet *sets[2] = {&m.params, lora ? &ad.params : NULL};
    for (int s = 0; s < 2 && sets[s]; s++)
        for (int i = 0; i < sets[s]->n; i++) {
            float *g = params_grad(sets[s], i);
            if (!g) continue;
            char name[PARAM_NAME_MAX + 8];
            snprintf(name, sizeof name, "grad.%s", sets[s]->views[i].name);
            size_t n = sets[s]->views[i].numel;
            float *r = malloc(n * sizeof *r);
            CHECK_MSG(read_tensor(&ref, name, r, (int64_t)n) == 0, "reference has no %s", name);
            double ge = max_rel_err(g, r, n, 1e-6, NULL);
            CHECK_MSG(ge <= 1e-3, "%s rel err %.3g", name, ge);
            if (ge > worst) worst = ge;
            n_grads++;
            free(r);
        }
    /* every reference gradient must have a counterpart: nothing the reference trains is left out here */
    int n_ref = 0;
    for (int i = 0; i < ref.n; i++) n_ref += strncmp(ref.tensors[i].name, "grad.", 5) == 0;
    CHECK_MSG(n_ref == n_grads, "reference has %d gradients, the C model produced %d", n_ref, n_grads);
    printf("%s: %d parameter gradients, max rel err %.3g\n", fx, n_grads, worst);
    st_close(&in);
    st_close(&ref);
    return test_finish(fx);
}
