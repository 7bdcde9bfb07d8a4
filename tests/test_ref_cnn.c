/* tests/test_ref_cnn.c: core/cnn.c's ResNet and VGG against PyTorch (float64) fixtures made by
 * scripts/make_cnn_fixtures.py. Usage: test_ref_cnn <resnet|vgg>_<train|eval>.
 * Loads the torchvision-named state dict (num_batches_tracked ignored), runs cnn_forward/cnn_backward in
 * float32 on the fixture batch with softmax cross-entropy (label smoothing 0.1), and checks, relative to the
 * largest magnitude of each reference tensor: logits (<= 1e-4), the loss, every parameter gradient
 * (<= 1e-3; every reference gradient has a C counterpart and vice versa) and, in train mode, the running
 * statistics after the forward (<= 1e-4); in eval mode they must not move at all. Prints the max errors.
 *
 * Gradients that are zero in exact arithmetic (a conv bias in front of a train-mode batchnorm: the batch
 * mean cancels it) are float64 round-off in the reference and float32 round-off here, so a relative
 * error means nothing for them; they are checked against an absolute bound of 1e-5 times the largest
 * reference gradient of the model instead, and reported separately. */
#include <stdlib.h>
#include <string.h>

#include "core/cnn.h"
#include "core/cpu/xent.h"
#include "core/params_io.h"
#include "core/safetensors.h"
#include "testlib.h"

/* Keep in step with CFG in scripts/make_cnn_fixtures.py. */
#define B_FX 4
#define K_FX 5
#define SMOOTHING 0.1f

static int read_tensor(const SafeTensors *st, const char *name, float *dst, int64_t n) {
    Error err;
    if (st_read_f32(st, name, dst, n, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static int is_running_stat(const char *name) {
    return has_suffix(name, ".running_mean") || has_suffix(name, ".running_var");
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

int main(int argc, char **argv) {
    const char *fx = argc > 1 ? argv[1] : "resnet_train";
    char kind[16];
    const char *us = strchr(fx, '_');
    if (!us || (size_t)(us - fx) >= sizeof kind || (strcmp(us + 1, "train") && strcmp(us + 1, "eval"))) {
        fprintf(stderr, "usage: test_ref_cnn <resnet|vgg>_<train|eval>, got '%s'\n", fx);
        return 2;
    }
    memcpy(kind, fx, (size_t)(us - fx));
    kind[us - fx] = 0;
    int train = strcmp(us + 1, "train") == 0;
    ASSERTF(!strcmp(kind, "resnet") || !strcmp(kind, "vgg"), "unknown model '%s'", kind);

    char wpath[512], ipath[512], rpath[512];
    snprintf(wpath, sizeof wpath, "%s/tiny_%s.safetensors", TEST_FIXTURE_DIR, kind);
    snprintf(ipath, sizeof ipath, "%s/tiny_%s_inputs.safetensors", TEST_FIXTURE_DIR, kind);
    snprintf(rpath, sizeof rpath, "%s/tiny_%s_%s_ref.safetensors", TEST_FIXTURE_DIR, kind, us + 1);
    CnnConfig cfg = {.kind = strcmp(kind, "resnet") == 0 ? CNN_RESNET : CNN_VGG, .in_ch = 3, .img_h = 8,
                     .img_w = 8, .n_classes = K_FX, .width = 4, .stages = 2, .blocks_per_stage = 2,
                     .batchnorm = 1};
    Error err;
    CnnModel m;
    ASSERTF(cnn_build(&m, &cfg, &err) == 0, "%s", err.msg);
    ParamSet *ps = &m.params;
    ParamLoadOptions lo = {.ignore = "*.num_batches_tracked"};
    if (params_load(ps, wpath, &lo, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* The ParamSet lists tensors in state-dict order (core/cnn.c builds in torchvision's module order). */
    {
        SafeTensors w;
        if (st_open(&w, wpath, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        int j = 0;
        for (int i = 0; i < w.n; i++) {
            if (has_suffix(w.tensors[i].name, ".num_batches_tracked")) continue;
            CHECK_MSG(j < ps->n && strcmp(w.tensors[i].name, ps->views[j].name) == 0,
                      "state dict tensor %d is %s, the C ParamSet has %s", j, w.tensors[i].name,
                      j < ps->n ? ps->views[j].name : "nothing");
            j++;
        }
        CHECK_MSG(j == ps->n, "state dict has %d tensors (without num_batches_tracked), C has %d", j, ps->n);
        st_close(&w);
    }
    float *loaded = xmalloc(ps->numel * sizeof *loaded);
    memcpy(loaded, ps->data, ps->numel * sizeof *loaded);

    SafeTensors in, ref;
    if (st_open(&in, ipath, &err) || st_open(&ref, rpath, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    enum { NX = B_FX * 3 * 8 * 8, NL = B_FX * K_FX };
    float x[NX], logits[NL], rlogits[NL], probs[NL], dlogits[NL], rloss;
    int32_t yi[B_FX];
    int y[B_FX];
    ASSERT(read_tensor(&in, "input.x", x, NX) == 0);
    const StTensor *ty = st_find(&in, "input.y");
    ASSERT(ty && ty->dtype == ST_I32 && ty->numel == B_FX);
    memcpy(yi, ty->data, sizeof yi);
    for (int i = 0; i < B_FX; i++) y[i] = yi[i];

    Arena ar;
    arena_init(&ar, 1 << 16);
    cnn_forward(&m, logits, x, B_FX, train, &ar);
    double loss = xent_forward(probs, logits, y, B_FX, K_FX, SMOOTHING, NULL);
    xent_backward(dlogits, probs, y, B_FX, K_FX, SMOOTHING, 1.0f);
    cnn_backward(&m, dlogits, &ar);

    ASSERT(read_tensor(&ref, "logits", rlogits, NL) == 0 && read_tensor(&ref, "loss", &rloss, 1) == 0);
    double e = max_rel_err(logits, rlogits, NL, 1e-6, NULL);
    printf("%s: logits max rel err %.3g, loss %.7f vs %.7f (rel err %.3g)\n", fx, e, loss, rloss,
           fabs(loss - rloss) / rloss);
    CHECK_MSG(e <= 1e-4, "logits rel err %.3g", e);
    CHECK_NEAR(loss, rloss, 1e-4 * rloss);

    /* The largest reference gradient anywhere: the scale for gradients that are zero in exact arithmetic. */
    double gscale = 0;
    for (int i = 0; i < ref.n; i++) {
        const StTensor *t = &ref.tensors[i];
        if (strncmp(t->name, "grad.", 5)) continue;
        float *r = xmalloc((size_t)t->numel * sizeof *r);
        ASSERT(read_tensor(&ref, t->name, r, t->numel) == 0);
        gscale = fmax(gscale, max_abs(r, (size_t)t->numel));
        free(r);
    }
    ASSERT(gscale > 0);

    double worst = 0, worst_zero = 0, worst_stat = 0;
    int n_grads = 0, n_zero = 0, n_stats = 0;
    char worst_name[PARAM_NAME_MAX + 8] = "";
    for (int i = 0; i < ps->n; i++) {
        const ParamView *v = &ps->views[i];
        char name[PARAM_NAME_MAX + 8];
        float *r = xmalloc(v->numel * sizeof *r);
        float *g = params_grad(ps, i);
        if (is_running_stat(v->name)) {
            CHECK_MSG(!g, "%s is trainable", v->name);
            const float *cur = params_data(ps, i);
            snprintf(name, sizeof name, "updated.%s", v->name);
            if (train) {
                CHECK_MSG(read_tensor(&ref, name, r, (int64_t)v->numel) == 0, "reference has no %s", name);
                double se = max_rel_err(cur, r, v->numel, 1e-6, NULL);
                CHECK_MSG(se <= 1e-4, "%s rel err %.3g", name, se);
                worst_stat = fmax(worst_stat, se);
            } else {
                CHECK_MSG(memcmp(cur, loaded + v->offset, v->numel * sizeof *cur) == 0,
                          "%s changed in an eval-mode forward", v->name);
            }
            n_stats++;
        } else {
            CHECK_MSG(g != NULL, "%s has no gradient", v->name);
            snprintf(name, sizeof name, "grad.%s", v->name);
            if (g && read_tensor(&ref, name, r, (int64_t)v->numel) == 0) {
                if (max_abs(r, v->numel) <= 1e-10 * gscale) { /* zero in exact arithmetic (see top) */
                    double ae = max_abs(g, v->numel) / gscale;
                    CHECK_MSG(ae <= 1e-5, "%s should vanish: max |grad| %.3g of the largest gradient", name, ae);
                    worst_zero = fmax(worst_zero, ae);
                    n_zero++;
                } else {
                    double ge = max_rel_err(g, r, v->numel, 1e-6, NULL);
                    CHECK_MSG(ge <= 1e-3, "%s rel err %.3g", name, ge);
                    if (ge > worst) {
                        worst = ge;
                        snprintf(worst_name, sizeof worst_name, "%s", v->name);
                    }
                }
                n_grads++;
            } else {
                CHECK_MSG(0, "reference has no %s", name);
            }
        }
        free(r);
    }
    /* and the other way round: nothing in the reference is left without a C counterpart */
    int n_ref = 0, n_ref_stats = 0;
    for (int i = 0; i < ref.n; i++) {
        n_ref += strncmp(ref.tensors[i].name, "grad.", 5) == 0;
        n_ref_stats += strncmp(ref.tensors[i].name, "updated.", 8) == 0;
    }
    CHECK_MSG(n_ref == n_grads, "reference has %d gradients, the C model produced %d", n_ref, n_grads);
    CHECK_MSG(n_ref_stats == (train ? n_stats : 0), "reference has %d running statistics, the C model %d",
              n_ref_stats, train ? n_stats : 0);
    printf("%s: %d parameter gradients, max rel err %.3g (%s)\n", fx, n_grads - n_zero, worst, worst_name);
    if (n_zero)
        printf("%s: %d more that vanish (conv bias before train-mode batchnorm), max |grad| %.3g of the largest\n",
               fx, n_zero, worst_zero);
    if (train) printf("%s: %d running statistics updated, max rel err %.3g\n", fx, n_stats, worst_stat);
    else printf("%s: %d running statistics unchanged (eval)\n", fx, n_stats);

    free(loaded);
    arena_free(&ar);
    cnn_free(&m);
    st_close(&in);
    st_close(&ref);
    return test_finish(fx);
}
