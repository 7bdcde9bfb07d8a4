/* tests/test_init.c: the data-free initializers' properties (METHODS.md, Base initializers).
 *   init_kaiming     A ~ U(+-1/sqrt n) (range and variance), B = 0
 *   init_gaussian    A ~ N(0, (1/r)^2) (sample std), B = 0
 *   init_orthogonal  A, B non-zero, B A = 0 to rounding, so the model's logits are unchanged; odd rank -> error */
#include <math.h>
#include <string.h>

#include "core/vit.h"
#include "gradcheck.h"
#include "methods/init.h"
#include "methods/lora.h"
#include "testlib.h"

static void setup(Model *m, AdapterSet *ad, int r) {
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 8, .in_ch = 1, .patch = 4, .dim = 32, .depth = 2,
                                                   .heads = 2, .mlp_hidden = 64, .n_classes = 3}};
    Error err;
    ASSERT(model_build(m, &mc, &err) == 0);
    model_init_params(m, 1);
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.mlp.fc1"};
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = r, .alpha = 2.0f * r};
    ASSERT(adapters_attach(ad, m->targets, m->n_targets, m->params, pats, 2, &spec, 3, &err) == 4);
}

static void stats(const float *x, size_t n, double *mean, double *std, double *maxabs) {
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) { s += x[i]; s2 += (double)x[i] * x[i]; mx = fmax(mx, fabs(x[i])); }
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
    *maxabs = mx;
}

static int all_zero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (x[i] != 0) return 0;
    return 1;
}

static void check(const char *init) {
    Model m;
    AdapterSet ad;
    int r = 8;
    setup(&m, &ad, r);
    float x[2 * 64], before[6], after[6];
    gc_fill(x, 128, -1, 1, 5);
    Arena ar;
    arena_init(&ar, 1 << 16);
    params_set_all_trainable(m.params, 0);
    /* logits with the adapters zeroed out = the backbone's function */
    float *saved = malloc(ad.params.numel * sizeof(float));
    memcpy(saved, ad.params.data, ad.params.numel * sizeof(float));
    memset(ad.params.data, 0, ad.params.numel * sizeof(float));
    model_forward(&m, before, x, 2, 0, &ar);
    memcpy(ad.params.data, saved, ad.params.numel * sizeof(float));
    InitContext ctx = {.model = &m, .set = &ad, .seed = 11};
    InitResult res;
    Error err;
    CHECK_MSG(init_run(init, &ctx, &res, &err) == 0, "%s", err.msg);
    for (int i = 0; i < ad.n; i++) {
        Adapter *a = &ad.a[i];
        const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        size_t na = (size_t)a->r * a->n, nb = (size_t)a->m * a->r;
        double mean, std, mx;
        stats(A, na, &mean, &std, &mx);
        if (!strcmp(init, "kaiming")) {
            double bound = 1 / sqrt(a->n);
            CHECK_MSG(mx <= bound && mx > 0.9 * bound, "%s: max |A| %.4g, bound %.4g", a->target, mx, bound);
            CHECK_MSG(fabs(std - bound / sqrt(3)) < 0.1 * bound, "%s: std %.4g, expected %.4g", a->target, std, bound / sqrt(3));
            CHECK(all_zero(B, nb));
        } else if (!strcmp(init, "gaussian")) {
            CHECK_MSG(fabs(std - 1.0 / r) < 0.1 / r, "%s: std %.4g, expected %.4g", a->target, std, 1.0 / r);
            CHECK(all_zero(B, nb));
        } else {
            CHECK(!all_zero(A, na) && !all_zero(B, nb));
            float *dW = malloc(sizeof(float) * a->m * a->n);
            a->kind->delta_weight(a, dW);
            double bmax = 0;
            for (size_t k = 0; k < (size_t)a->m * a->n; k++) bmax = fmax(bmax, fabs(dW[k]));
            CHECK_MSG(bmax < 1e-6, "%s: max |s B A| = %.3g, expected 0", a->target, bmax);
            free(dW);
        }
    }
    arena_reset(&ar);
    model_forward(&m, after, x, 2, 0, &ar);
    double e = max_rel_err(after, before, 6, 1e-6, NULL);
    CHECK_MSG(e < 1e-5, "%s changed the model's function at init (rel err %.3g)", init, e);
    CHECK(!res.changed_w0 && !res.changed_function);
    printf("%s: %d adapters, logits unchanged (rel err %.2g), %.3f ms\n", init, ad.n, e, res.wall_s * 1e3);
    free(saved);
    arena_free(&ar);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
}

static void bad_input(void) {
    Model m;
    AdapterSet ad;
    setup(&m, &ad, 3);
    InitContext ctx = {.model = &m, .set = &ad, .seed = 1};
    InitResult res;
    Error err;
    CHECK(init_run("orthogonal", &ctx, &res, &err) < 0 && strstr(err.msg, "even rank"));
    CHECK(init_run("pisa", &ctx, &res, &err) < 0 && strstr(err.msg, "pisa") && strstr(err.msg, "available"));
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "bad")) bad_input();
    else check(w);
    return test_finish(w);
}
