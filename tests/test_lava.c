/* tests/test_lava.c: the adapter seam's new entries and the LAVA kinds (methods/lava.h), conv adapter slots
 * (core/cnn.c), merge / unmerge, tangent projection. Run one check by name: test_lava grad_lava_conv.
 *   grad_lava_conv          FD check of lava_conv (+ its regularizer on U, V, X, Y) inside a ResNet and a VGG
 *   grad_reshape_lora       FD check of plain LoRA on conv targets (reshape-LoRA), LoRA-XS too, ResNet and VGG
 *   grad_lava_vit           FD check of LAVA matrix (+ regularizer on both factors) inside the small ViT
 *   lava_regularizer        penalty and gradient against lambda ||F^T F - I||^2, 4 lambda F (F^T F - I) in double
 *   adapter_backward_delta  on a linear, backward_delta(g = dY^T X) equals the per-token backward, every kind
 *   adapter_merge           merged forward (adapters skipped) equals the adapted one; unmerge restores W0
 *   adapter_tangent         adapter_tangent_project against dense projectors B (B^T B)^-1 B^T (LoRA, B = 0, XS)
 *   conv_slot_capabilities  taps (NCHW), grad_w = dL/dW_eff, injected output gradients (FD), arena steady
 *   adapter_errors          rank too large, patterns matching nothing, wrong layer kind, bad options
 *   it_lava_conv_runexp     runexp on a tiny CNN + lava_conv, Fashion-MNIST (SKIP without it) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/conv2d.h"
#include "core/model.h"
#include "eval/info_loss.h"
#include "eval/tangent.h"
#include "methods/dora.h"
#include "methods/init.h"
#include "methods/lava.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "results/h5rec.h"
#include "gradcheck.h"
#include "testlib.h"
#include "testmodels.h"

/* ---- a model with adapters and the loss sum(logits * r) + penalty ---------------------------------------- */

typedef struct {
    Model m;
    AdapterSet ad;
    Arena ar;
    float *x, *logits, *r;
    int B, train, with_reg;
} Net;

static const ModelConfig *cnn_cfg(CnnKind kind) {
    static ModelConfig mc[2];
    mc[kind] = (ModelConfig){.family = MODEL_CNN, .cnn = {.kind = kind, .in_ch = 3, .img_h = 4, .img_w = 4,
                                                          .n_classes = 5, .width = 4, .stages = 2,
                                                          .blocks_per_stage = 1, .batchnorm = 1}};
    return &mc[kind];
}
static const char *const RESNET_CONVS[3] = {"conv1", "layer*.conv*", "layer*.downsample.0"};
static const char *const VGG_CONVS[1] = {"features.*"};

/* Builds the model (seed 1, frozen), attaches kind on pats with opt, then fills every adapter tensor with
 * random values (so no factor is 0 and every gradient is nonzero). */
static int net_init(Net *n, const ModelConfig *mc, const char *const *pats, int np, const AdapterKind *kind, int r,
                    AdapterOptions opt, int B, int train, Error *err) {
    memset(n, 0, sizeof *n);
    ASSERTF(model_build(&n->m, mc, err) == 0, "%s", err->msg);
    model_init_params(&n->m, 1);
    params_set_all_trainable(n->m.params, 0);
    params_alloc_grads(n->m.params);
    AdapterSpec spec = {.kind = kind, .r = r, .alpha = 2.0f * r, .opt = opt};
    if (adapters_attach(&n->ad, n->m.targets, n->m.n_targets, n->m.params, pats, np, &spec, 3, err) < 0) {
        model_free(&n->m);
        return -1;
    }
    gc_fill(n->ad.params.data, n->ad.params.numel, -0.5f, 0.5f, 11);
    for (int i = 0; i < n->ad.n; i++) /* DoRA's magnitudes: positive, near the row norms */
        if (n->ad.a[i].kind == &ADAPTER_DORA) dora_reset_magnitude(&n->ad.a[i]);
    arena_init(&n->ar, 1 << 16);
    size_t nx = (size_t)B * n->m.in_ch * n->m.img_h * n->m.img_w, nl = (size_t)B * n->m.n_classes;
    n->x = gc_filled(nx, -1, 1, 21);
    n->logits = calloc(nl, sizeof(float));
    n->r = gc_filled(nl, -1, 1, 22);
    n->B = B;
    n->train = train;
    n->with_reg = 1;
    return 0;
}
static void net_free(Net *n) {
    adapters_free(&n->ad, n->m.targets, n->m.n_targets);
    model_free(&n->m);
    arena_free(&n->ar);
    free(n->x), free(n->logits), free(n->r);
}
static double net_loss(void *p) {
    Net *n = p;
    arena_reset(&n->ar);
    model_forward(&n->m, n->logits, n->x, n->B, n->train, &n->ar);
    double L = gc_dot(n->logits, n->r, (size_t)n->B * n->m.n_classes);
    return L + (n->with_reg ? adapters_regularize(&n->ad, 0, &n->ar) : 0);
}
static void net_grads(Net *n) {
    params_zero_grad(&n->ad.params);
    params_zero_grad(n->m.params);
    net_loss(n);
    model_backward(&n->m, n->r, &n->ar);
    if (n->with_reg) adapters_regularize(&n->ad, 1, &n->ar);
}

/* gradcheck for a piecewise-smooth loss (ReLU, max pooling). A kink within +-e of x makes the central
 * difference wrong, and tests/test_cnn.c's rule (skip when the second difference is large) also trips on
 * train-mode batchnorm's smooth curvature here. So, with c(e) = (f(x+e) - 2 f(x) + f(x-e)) / e, which is f'' e
 * where f is smooth but about the slope jump near a kink: an entry is skipped when c(e/2) != c(e) / 2 or the
 * central differences at e and e/2 disagree (both beyond tests/gradcheck.h's tolerance); otherwise the e/2
 * central difference is compared with the analytic gradient. Returns the bad entries. */
static int gradcheck_kinked(const char *label, GcLossFn f, void *ctx, float *x, const float *g, size_t n, float eps,
                            int max_checks, int *checked, int *skipped) {
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    double atol = 1e-3 * gmax + 1e-6, rtol = 2e-2, worst = 0;
    size_t stride = n > (size_t)max_checks ? n / (size_t)max_checks : 1;
    int bad = 0, c = 0, skip = 0;
    for (size_t i = stride / 2; i < n; i += stride) {
        float x0 = x[i];
        double f0 = f(ctx), num[2], curv[2];
        for (int h = 0; h < 2; h++) {
            float e = h ? eps / 2 : eps;
            x[i] = x0 + e;
            double fp = f(ctx);
            x[i] = x0 - e;
            double fm = f(ctx);
            num[h] = (fp - fm) / (2.0 * (double)e);
            curv[h] = (fp - 2 * f0 + fm) / (double)e;
        }
        x[i] = x0;
        double tol = atol + rtol * fabs(num[1]);
        if (fabs(curv[1] - curv[0] / 2) > tol || fabs(num[0] - num[1]) > tol) {
            skip++;
            continue;
        }
        double e = fabs(num[1] - g[i]);
        worst = fmax(worst, e);
        if (!(e <= tol)) {
            fprintf(stderr, "%s: entry %zu analytic %.6g numeric %.6g\n", label, i, g[i], num[1]);
            bad++;
        }
        c++;
    }
    printf("%s: max abs err %.3g, max |g| %.3g, %d checked, %d skipped at kinks, %d bad\n", label, worst, gmax, c, skip,
           bad);
    if (gmax == 0) {
        fprintf(stderr, "%s: analytic gradient is all zero\n", label);
        bad++;
    }
    *checked += c;
    *skipped += skip;
    return bad;
}

/* FD check of every trainable adapter tensor of the net. */
static void net_gradcheck(Net *n, const char *label) {
    net_grads(n);
    ParamSet *ps = &n->ad.params;
    float *g = malloc(ps->n_grad * sizeof(float));
    memcpy(g, ps->grad, ps->n_grad * sizeof(float));
    int checked = 0, skipped = 0;
    for (int i = 0; i < ps->n; i++) {
        ParamView *v = &ps->views[i];
        if (!v->trainable) continue;
        char l[200];
        snprintf(l, sizeof l, "%s %s", label, v->name);
        CHECK_MSG(gradcheck_kinked(l, net_loss, n, params_data(ps, i), g + v->goff, v->numel, 1e-3f, 6, &checked,
                                   &skipped) == 0, "%s", l);
    }
    CHECK_MSG(skipped * 4 < checked, "%s: %d of %d entries skipped at kinks", label, skipped, checked);
    free(g);
}

static void test_grad_lava_conv(void) {
    Error err;
    for (int kind = 0; kind < 2; kind++)
        for (int train = 0; train < 2; train++)
            for (int u_zero = 0; u_zero < 2; u_zero++) {
                Net n;
                /* every factor regularized in the VGG (3x3 kernels); U, V in the ResNet (its 1x1 downsample's X, Y
                 * have 1 row < R) */
                AdapterOptions o = {.reg_lambda = 0.05f, .reg_mask = kind ? 0xF : 0x3, .init_variant = u_zero};
                int ok = net_init(&n, cnn_cfg(kind), kind ? VGG_CONVS : RESNET_CONVS, kind ? 1 : 3, &ADAPTER_LAVA_CONV,
                                  3, o, 1, train, &err) == 0;
                CHECK_MSG(ok, "%s", err.msg);
                if (!ok) continue;
                CHECK(n.ad.n == (kind ? 2 : 6)); /* resnet: conv1, 2 x (conv1, conv2), downsample; vgg: 2 convs */
                char l[64];
                snprintf(l, sizeof l, "%s %s%s", kind ? "vgg" : "resnet", train ? "train" : "frozen-bn",
                         u_zero ? " u_zero" : "");
                net_gradcheck(&n, l);
                net_free(&n);
            }
    /* the default inits: dW = 0 at start, whichever factor is zero */
    for (int u_zero = 0; u_zero < 2; u_zero++) {
        Model m;
        AdapterSet ad;
        ASSERTF(model_build(&m, cnn_cfg(CNN_RESNET), &err) == 0, "%s", err.msg);
        AdapterSpec spec = {.kind = &ADAPTER_LAVA_CONV, .r = 3, .alpha = 6, .opt = {.init_variant = u_zero}};
        CHECK_MSG(adapters_attach(&ad, m.targets, m.n_targets, m.params, RESNET_CONVS, 3, &spec, 3, &err) == 6, "%s",
                  err.msg);
        for (int i = 0; i < ad.n; i++) {
            Adapter *a = &ad.a[i];
            float *dW = malloc((size_t)a->m * a->n * sizeof(float));
            a->kind->delta_weight(a, dW);
            double mx = 0;
            for (size_t k = 0; k < (size_t)a->m * a->n; k++) mx = fmax(mx, fabs(dW[k]));
            CHECK_MSG(mx == 0, "%s: dW != 0 at init (%g)", a->target, mx);
            const ParamView *zv = &ad.params.views[a->t[u_zero ? LAVA_U : LAVA_V]];
            const ParamView *rv = &ad.params.views[a->t[u_zero ? LAVA_V : LAVA_U]];
            double z = 0, r = 0, bound = 1.0 / sqrt(3.0);
            for (size_t k = 0; k < zv->numel; k++) z = fmax(z, fabs(ad.params.data[zv->offset + k]));
            for (size_t k = 0; k < rv->numel; k++) r = fmax(r, fabs(ad.params.data[rv->offset + k]));
            CHECK_MSG(z == 0 && r > 0 && r <= bound, "%s: zero factor max %g, random factor max %g (bound %g)", a->target,
                      z, r, bound);
            free(dW);
        }
        adapters_free(&ad, m.targets, m.n_targets);
        model_free(&m);
    }
}

static void test_grad_reshape_lora(void) {
    Error err;
    const AdapterKind *kinds[3] = {&ADAPTER_LORA, &ADAPTER_LORA_XS, &ADAPTER_LAVA};
    for (int kind = 0; kind < 2; kind++)
        for (int k = 0; k < 3; k++) for (int train = 0; train < 2; train++) {
            Net n;
            AdapterOptions o = {.reg_lambda = kinds[k] == &ADAPTER_LAVA ? 0.05f : 0, .reg_mask = LAVA_REG_IN | LAVA_REG_OUT};
            int ok = net_init(&n, cnn_cfg(kind), kind ? VGG_CONVS : RESNET_CONVS, kind ? 1 : 3, kinds[k], 2, o, 1, train,
                              &err) == 0;
            CHECK_MSG(ok, "%s", err.msg);
            if (!ok) continue;
            /* the reshape: lora_A is (r, C_in kh kw), lora_B (C_out, r) */
            const Adapter *a = &n.ad.a[0];
            CHECK(a->kh == 3 && a->kw == 3 && a->n == 3 * 9 && a->m == 4);
            char l[64];
            snprintf(l, sizeof l, "%s %s %s", kind ? "vgg" : "resnet", kinds[k]->name, train ? "train" : "frozen-bn");
            net_gradcheck(&n, l);
            net_free(&n);
        }
}

static void test_grad_lava_vit(void) {
    Error err;
    for (int mask = 1; mask <= 3; mask++) {
        Net n;
        AdapterOptions o = {.reg_lambda = 0.2f, .reg_mask = (unsigned)mask};
        int ok = net_init(&n, &TEST_SMALL_VIT, TEST_QV, 2, &ADAPTER_LAVA, 4, o, 2, 0, &err) == 0;
        CHECK_MSG(ok, "%s", err.msg);
        if (!ok) continue;
        for (int i = 0; i < n.m.params->n; i++) { /* larger than the .02 init so every path carries a gradient */
            ParamView *v = &n.m.params->views[i];
            if (!strstr(v->name, "norm")) gc_fill(params_data(n.m.params, i), v->numel, -0.5f, 0.5f, 100 + i);
        }
        net_grads(&n);
        ParamSet *ps = &n.ad.params;
        float *g = malloc(ps->n_grad * sizeof(float));
        memcpy(g, ps->grad, ps->n_grad * sizeof(float));
        double pen = adapters_regularize(&n.ad, 0, &n.ar);
        CHECK_MSG(pen > 0, "penalty %g", pen);
        for (int i = 0; i < ps->n; i++) {
            char l[200];
            snprintf(l, sizeof l, "vit lava mask %d %s", mask, ps->views[i].name);
            CHECK_MSG(gradcheck(l, net_loss, &n, params_data(ps, i), g + ps->views[i].goff, ps->views[i].numel, 1e-2f,
                                12) == 0, "%s", l);
        }
        free(g);
        net_free(&n);
    }
}

/* ---- the regularizer against the formula --------------------------------------------------------------- */

/* pen = lambda ||F^T F - I||^2 and dF = 4 lambda F (F^T F - I) from explicit matrices, F (d, R). */
static double reg_reference(double *dF, const float *F, int d, int R, double lambda) {
    double *E = calloc((size_t)R * R, sizeof(double)), pen = 0;
    for (int k = 0; k < R; k++)
        for (int l = 0; l < R; l++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += (double)F[i * R + k] * F[i * R + l];
            E[k * R + l] = s - (k == l);
            pen += E[k * R + l] * E[k * R + l];
        }
    for (int i = 0; i < d; i++)
        for (int l = 0; l < R; l++) {
            double s = 0;
            for (int k = 0; k < R; k++) s += F[i * R + k] * E[k * R + l];
            dF[i * R + l] = 4 * lambda * s;
        }
    free(E);
    return lambda * pen;
}
static double max_diff_d(const float *a, const double *b, size_t n, double *scale) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    *scale = s;
    return m;
}

static void test_lava_regularizer(void) {
    /* the primitive, both layouts */
    const int d = 7, R = 3;
    float *F = gc_filled((size_t)d * R, -0.8f, 0.8f, 5), *M = malloc((size_t)d * R * sizeof(float));
    for (int i = 0; i < d; i++)
        for (int k = 0; k < R; k++) M[k * d + i] = F[i * R + k]; /* M = F^T (R, d) */
    double *ref = malloc((size_t)d * R * sizeof(double)), gram[9], sc;
    double pref = reg_reference(ref, F, d, R, 0.3);
    float *dF = calloc((size_t)d * R, sizeof(float)), *dM = calloc((size_t)d * R, sizeof(float));
    double p1 = lava_orth_penalty(F, d, R, 0, 0.3f, dF, gram), p2 = lava_orth_penalty(M, d, R, 1, 0.3f, dM, gram);
    CHECK_NEAR(p1, pref, 1e-6 * pref);
    CHECK_NEAR(p2, pref, 1e-6 * pref);
    CHECK_MSG(max_diff_d(dF, ref, (size_t)d * R, &sc) < 1e-6 * sc, "dF differs from 4 lambda F (F^T F - I)");
    double *refT = malloc((size_t)d * R * sizeof(double));
    for (int i = 0; i < d; i++)
        for (int k = 0; k < R; k++) refT[k * d + i] = ref[i * R + k];
    CHECK_MSG(max_diff_d(dM, refT, (size_t)d * R, &sc) < 1e-6 * sc, "dM differs from (4 lambda F (F^T F - I))^T");
    /* orthonormal columns: zero penalty and gradient */
    float Q[6] = {1, 0, 0, 1, 0, 0}; /* (3, 2) */
    float dQ[6] = {0};
    CHECK(lava_orth_penalty(Q, 3, 2, 0, 1.0f, dQ, gram) == 0 && dQ[0] == 0 && dQ[3] == 0);
    free(F), free(M), free(ref), free(refT), free(dF), free(dM);

    /* through the adapters: lava (in / out / both) and lava_conv (every subset of U, V, X, Y) */
    Error err;
    for (int which = 0; which < 2; which++) {
        int nmask = which ? 15 : 3;
        for (int mask = 1; mask <= nmask; mask++) {
            Net n;
            AdapterOptions o = {.reg_lambda = 0.25f, .reg_mask = (unsigned)mask};
            int ok = which ? net_init(&n, cnn_cfg(CNN_RESNET), RESNET_CONVS, 2, &ADAPTER_LAVA_CONV, 3, o, 1, 0, &err) == 0
                           : net_init(&n, &TEST_SMALL_VIT, TEST_QV, 2, &ADAPTER_LAVA, 4, o, 1, 0, &err) == 0;
            CHECK_MSG(ok, "%s", err.msg);
            if (!ok) continue;
            params_zero_grad(&n.ad.params);
            double pen = adapters_regularize(&n.ad, 1, &n.ar), expect = 0, worst = 0;
            for (int i = 0; i < n.ad.n; i++) {
                Adapter *a = &n.ad.a[i];
                for (int t = 0; t < a->nt; t++) {
                    const ParamView *v = &n.ad.params.views[a->t[t]];
                    int rows = (int)v->shape[0], cols = (int)v->shape[1];
                    const float *x = params_data(&n.ad.params, a->t[t]), *gx = params_grad(&n.ad.params, a->t[t]);
                    /* which tensors are regularized, and as F (d, R): lava A (r, n) is F^T, B (m, r) is F */
                    int on = which ? (mask >> t) & 1 : t == LORA_A ? (mask & LAVA_REG_IN) != 0 : (mask & LAVA_REG_OUT) != 0;
                    int transposed = !which && t == LORA_A;
                    int dd = transposed ? cols : rows, RR = transposed ? rows : cols;
                    float *Fm = malloc((size_t)dd * RR * sizeof(float));
                    for (int p = 0; p < rows; p++)
                        for (int q = 0; q < cols; q++)
                            if (transposed) Fm[q * RR + p] = x[p * cols + q];
                            else Fm[p * cols + q] = x[p * cols + q];
                    double *gr = malloc((size_t)dd * RR * sizeof(double));
                    double pr = reg_reference(gr, Fm, dd, RR, 0.25);
                    if (on) expect += pr;
                    for (int p = 0; p < rows; p++)
                        for (int q = 0; q < cols; q++) {
                            double want = !on ? 0 : transposed ? gr[q * RR + p] : gr[p * cols + q];
                            worst = fmax(worst, fabs(gx[p * cols + q] - want) / (1e-3 + fabs(want)));
                        }
                    free(Fm), free(gr);
                }
            }
            CHECK_MSG(fabs(pen - expect) <= 1e-5 * expect, "%s mask %d: penalty %.9g, formula %.9g",
                      which ? "lava_conv" : "lava", mask, pen, expect);
            CHECK_MSG(worst < 1e-4, "%s mask %d: regularizer gradient off the formula by %g (relative)",
                      which ? "lava_conv" : "lava", mask, worst);
            net_free(&n);
        }
    }
    printf("regularizer: penalty and gradient match lambda ||F^T F - I||^2, 4 lambda F (F^T F - I)\n");
}

/* ---- backward_delta vs the per-token backward on a linear ------------------------------------------------ */

static void test_adapter_backward_delta(void) {
    const AdapterKind *kinds[4] = {&ADAPTER_LORA, &ADAPTER_DORA, &ADAPTER_LORA_XS, &ADAPTER_LAVA};
    Error err;
    for (int k = 0; k < 4; k++) {
        Model m;
        AdapterSet ad;
        ASSERTF(model_build(&m, &TEST_SMALL_VIT, &err) == 0, "%s", err.msg);
        model_init_params(&m, 1);
        AdapterSpec spec = {.kind = kinds[k], .r = 4, .alpha = 8};
        const char *pat[1] = {"blocks.0.attn.qkv:v"};
        ASSERTF(adapters_attach(&ad, m.targets, m.n_targets, m.params, pat, 1, &spec, 3, &err) == 1, "%s", err.msg);
        Adapter *a = &ad.a[0];
        params_set_all_trainable(&ad.params, 1);
        params_alloc_grads(&ad.params);
        gc_fill(ad.params.data, ad.params.numel, -0.5f, 0.5f, 7);
        if (kinds[k] == &ADAPTER_DORA) dora_reset_magnitude(a);
        const int N = 6, ldo = 3 * a->n; /* the host is the fused qkv: out = 3 dim */
        float *x = gc_filled((size_t)N * a->n, -1, 1, 8), *out = calloc((size_t)N * ldo, sizeof(float));
        float *dout = gc_filled((size_t)N * ldo, -1, 1, 9);
        Arena ar;
        arena_init(&ar, 1 << 16);
        /* per-token path: the host part first (the kinds expect out to hold x W0^T + b) */
        LinearSlot *s = NULL;
        for (int t = 0; t < m.n_targets; t++)
            if (!strcmp(m.targets[t].name, "blocks.0.attn.qkv:v")) s = m.targets[t].slot;
        ASSERT(s);
        float *W = params_data(m.params, s->w), *bias = params_data(m.params, s->b);
        for (int i = 0; i < N; i++)
            for (int o = 0; o < ldo; o++) {
                double acc = bias[o];
                for (int j = 0; j < a->n; j++) acc += (double)x[i * a->n + j] * W[o * a->n + j];
                out[i * ldo + o] = (float)acc;
            }
        params_zero_grad(&ad.params);
        a->kind->forward(a, out, ldo, x, N, &ar);
        a->kind->backward(a, NULL, dout, ldo, x, N, &ar);
        float *g1 = malloc(ad.params.n_grad * sizeof(float));
        memcpy(g1, ad.params.grad, ad.params.n_grad * sizeof(float));
        /* delta path: g = dY^T X over the adapter's rows */
        float *g = calloc((size_t)a->m * a->n, sizeof(float));
        for (int i = 0; i < N; i++)
            for (int o = 0; o < a->m; o++)
                for (int j = 0; j < a->n; j++) g[o * a->n + j] += dout[i * ldo + a->row0 + o] * x[i * a->n + j];
        params_zero_grad(&ad.params);
        a->kind->backward_delta(a, g, &ar);
        size_t where;
        double e = max_rel_err(ad.params.grad, g1, ad.params.n_grad, 1e-6, &where);
        printf("%s: backward_delta vs backward: max rel err %.3g\n", kinds[k]->name, e);
        CHECK_MSG(e < 1e-5, "%s: backward_delta differs from the per-token backward by %g (at %zu)", kinds[k]->name, e,
                  where);
        arena_free(&ar);
        free(x), free(out), free(dout), free(g1), free(g);
        adapters_free(&ad, m.targets, m.n_targets);
        model_free(&m);
    }
}

/* ---- merge / unmerge -------------------------------------------------------------------------------------- */

static void test_adapter_merge(void) {
    const AdapterKind *kinds[5] = {&ADAPTER_LORA, &ADAPTER_DORA, &ADAPTER_LORA_XS, &ADAPTER_LAVA, &ADAPTER_LAVA_CONV};
    Error err;
    for (int model = 0; model < 2; model++)
        for (int k = 0; k < 5; k++) {
            if (model == 0 && kinds[k] == &ADAPTER_LAVA_CONV) continue; /* conv only */
            Net n;
            AdapterOptions o = {0};
            int ok = model ? net_init(&n, cnn_cfg(CNN_RESNET), RESNET_CONVS, 3, kinds[k], 2, o, 2, 0, &err) == 0
                           : net_init(&n, &TEST_SMALL_VIT, TEST_QV, 2, kinds[k], 4, o, 2, 0, &err) == 0;
            CHECK_MSG(ok, "%s", err.msg);
            if (!ok) continue;
            n.with_reg = 0;
            size_t nl = (size_t)n.B * n.m.n_classes, nw = n.m.params->numel;
            float *W0 = malloc(nw * sizeof(float)), *y_ad = malloc(nl * sizeof(float)), *y_base = malloc(nl * sizeof(float));
            memcpy(W0, n.m.params->data, nw * sizeof(float));
            net_loss(&n);
            memcpy(y_ad, n.logits, nl * sizeof(float));
            AdapterSet set = n.ad; /* forward without the adapters: detach them temporarily */
            for (int t = 0; t < n.m.n_targets; t++) n.m.targets[t].slot->n_ad = 0;
            net_loss(&n);
            memcpy(y_base, n.logits, nl * sizeof(float));
            for (int i = 0; i < set.n; i++) /* reattach */
                for (int t = 0; t < n.m.n_targets; t++)
                    if (!strcmp(n.m.targets[t].name, set.a[i].target)) {
                        LinearSlot *s = n.m.targets[t].slot;
                        s->ad[s->n_ad++] = &set.a[i];
                    }
            for (int i = 0; i < n.ad.n; i++) adapter_merge(&n.ad.a[i]);
            net_loss(&n);
            size_t where;
            double e = max_rel_err(n.logits, y_ad, nl, 1e-6, &where), moved = max_rel_err(y_base, y_ad, nl, 1e-6, &where);
            printf("%s %s: merged vs adapted logits %.3g (the adapters move them by %.3g)\n", model ? "resnet" : "vit",
                   kinds[k]->name, e, moved);
            CHECK_MSG(e < 1e-5 && moved > 1e-3, "%s %s: merged forward differs by %g (adapters' effect %g)",
                      model ? "resnet" : "vit", kinds[k]->name, e, moved);
            /* merged: the slots skip the adapters (no adapter gradient), W0 changed */
            net_grads(&n);
            double ga = 0;
            for (size_t i = 0; i < n.ad.params.n_grad; i++) ga = fmax(ga, fabs(n.ad.params.grad[i]));
            CHECK_MSG(ga == 0, "a merged adapter got gradient %g", ga);
            for (int i = 0; i < n.ad.n; i++) adapter_unmerge(&n.ad.a[i]);
            double wd = 0, ws = 0;
            for (size_t i = 0; i < nw; i++) wd = fmax(wd, fabs(n.m.params->data[i] - W0[i])), ws = fmax(ws, fabs(W0[i]));
            CHECK_MSG(wd <= 4e-7 * ws, "%s %s: unmerge left W0 off by %g (max |W0| %g)", model ? "resnet" : "vit",
                      kinds[k]->name, wd, ws);
            net_loss(&n);
            e = max_rel_err(n.logits, y_ad, nl, 1e-6, &where);
            CHECK_MSG(e < 1e-5, "after unmerge the adapted forward differs by %g", e);
            free(W0), free(y_ad), free(y_base);
            net_free(&n);
        }
}

/* ---- tangent projection ------------------------------------------------------------------------------------ */

/* Pm (d, d) = F (F^T F)^-1 F^T for F (d, R) of full column rank (Gauss-Jordan in double); F = NULL: 0. */
static void dense_projector(double *Pm, const float *F, int d, int R) {
    memset(Pm, 0, (size_t)d * d * sizeof(double));
    if (!F) return;
    double *G = calloc((size_t)R * 2 * R, sizeof(double)); /* [F^T F | I] */
    for (int k = 0; k < R; k++) {
        for (int l = 0; l < R; l++)
            for (int i = 0; i < d; i++) G[k * 2 * R + l] += (double)F[i * R + k] * F[i * R + l];
        G[k * 2 * R + R + k] = 1;
    }
    for (int c = 0; c < R; c++) {
        double p = G[c * 2 * R + c];
        for (int j = 0; j < 2 * R; j++) G[c * 2 * R + j] /= p;
        for (int r = 0; r < R; r++)
            if (r != c) {
                double f = G[r * 2 * R + c];
                for (int j = 0; j < 2 * R; j++) G[r * 2 * R + j] -= f * G[c * 2 * R + j];
            }
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < R; k++)
                for (int l = 0; l < R; l++) s += F[i * R + k] * G[k * 2 * R + R + l] * F[j * R + l];
            Pm[i * d + j] = s;
        }
    free(G);
}

static void test_adapter_tangent(void) {
    Error err;
    const AdapterKind *kinds[3] = {&ADAPTER_LORA, &ADAPTER_LAVA, &ADAPTER_LORA_XS};
    for (int k = 0; k < 3; k++)
        for (int bzero = 0; bzero < 2; bzero++) {
            Model m;
            AdapterSet ad;
            test_build_adapted(&m, &ad, &TEST_SMALL_VIT, TEST_FC, 1, kinds[k], 4); /* fc1: 64 x 32 */
            Adapter *a = &ad.a[0];
            const int M = a->m, N = a->n, R = a->r;
            int tA = kinds[k] == &ADAPTER_LORA_XS ? LORA_XS_A : LORA_A, tB = kinds[k] == &ADAPTER_LORA_XS ? LORA_XS_B : LORA_B;
            float *A = params_data(&ad.params, a->t[tA]), *B = params_data(&ad.params, a->t[tB]);
            gc_fill(A, (size_t)R * N, -1, 1, 31);
            if (bzero) memset(B, 0, (size_t)M * R * sizeof(float));
            else gc_fill(B, (size_t)M * R, -1, 1, 32);
            float *G = gc_filled((size_t)M * N, -1, 1, 33), *P = malloc((size_t)M * N * sizeof(float));
            float *At = malloc((size_t)N * R * sizeof(float));
            for (int l = 0; l < R; l++)
                for (int j = 0; j < N; j++) At[j * R + l] = A[l * N + j];
            double *PB = malloc((size_t)M * M * sizeof(double)), *PA = malloc((size_t)N * N * sizeof(double));
            dense_projector(PB, bzero ? NULL : B, M, R);
            dense_projector(PA, At, N, R);
            CHECK_MSG(adapter_tangent_project(P, G, a, &err) == 0, "%s", err.msg);
            /* reference: PB G + G PA - PB G PA (sum form) or PB G PA (LoRA-XS), in double */
            double *PBG = calloc((size_t)M * N, sizeof(double)), *GPA = calloc((size_t)M * N, sizeof(double)), worst = 0, gs = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    for (int l = 0; l < M; l++) PBG[i * N + j] += PB[i * M + l] * G[l * N + j];
                    for (int l = 0; l < N; l++) GPA[i * N + j] += G[i * N + l] * PA[l * N + j];
                }
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double pbgpa = 0;
                    for (int l = 0; l < N; l++) pbgpa += PBG[i * N + l] * PA[l * N + j];
                    double ref = kinds[k] == &ADAPTER_LORA_XS ? pbgpa : PBG[i * N + j] + GPA[i * N + j] - pbgpa;
                    worst = fmax(worst, fabs(P[i * N + j] - ref));
                    gs = fmax(gs, fabs(ref));
                }
            printf("%s%s: tangent projection vs dense projectors: max abs err %.3g (max |P| %.3g)\n", kinds[k]->name,
                   bzero ? " B = 0" : "", worst, gs);
            CHECK_MSG(worst < 1e-5 * (gs + 1), "%s bzero %d: projection off by %g", kinds[k]->name, bzero, worst);
            /* and it is eval's tangent_project on the kind's bases */
            TangentBasis tb;
            CHECK(a->kind->tangent_basis(a, &tb, &err) == 0);
            CHECK(tb.kb == (bzero ? 0 : R) && tb.ka == R && tb.product == (kinds[k] == &ADAPTER_LORA_XS));
            if (!tb.product) {
                float *P2 = malloc((size_t)M * N * sizeof(float));
                tangent_project(P2, G, tb.QB, tb.kb, tb.QA, tb.ka, M, N);
                CHECK(memcmp(P2, P, (size_t)M * N * sizeof(float)) == 0);
                free(P2);
            }
            tangent_basis_free(&tb);
            free(G), free(P), free(At), free(PB), free(PA), free(PBG), free(GPA);
            adapters_free(&ad, m.targets, m.n_targets);
            model_free(&m);
        }
    /* no tangent basis: a clear error */
    Net n;
    AdapterOptions o = {0};
    ASSERTF(net_init(&n, cnn_cfg(CNN_RESNET), RESNET_CONVS, 3, &ADAPTER_LAVA_CONV, 2, o, 1, 0, &err) == 0, "%s", err.msg);
    float *G = calloc((size_t)n.ad.a[0].m * n.ad.a[0].n, sizeof(float)), *P = malloc((size_t)n.ad.a[0].m * n.ad.a[0].n * sizeof(float));
    CHECK(adapter_tangent_project(P, G, &n.ad.a[0], &err) == -1 && strstr(err.msg, "no tangent basis"));
    free(G), free(P);
    net_free(&n);
}

/* ---- conv slot capabilities ---------------------------------------------------------------------------------- */

typedef struct {
    const float *inp, *out;
    int N, calls;
    float *z;  /* a copy of the output (for the injected-gradient loss) */
    size_t nz;
} TapRec;
static void rec_tap(void *p, const LinearSlot *s, const float *inp, const float *out, int N) {
    TapRec *t = p;
    ASSERT(s->is_conv);
    t->inp = inp, t->out = out, t->N = N, t->calls++;
    if (t->z) memcpy(t->z, out, t->nz * sizeof(float));
}

typedef struct {
    Net *n;
    TapRec *tap;
    const float *J;
} InjCtx;
static double inj_loss(void *p) { /* sum(logits r) + sum(J z), z the tapped conv output */
    InjCtx *c = p;
    double L = net_loss(c->n);
    return L + gc_dot(c->J, c->tap->z, c->tap->nz);
}

static LinearSlot *slot_named(Model *m, const char *name) {
    for (int t = 0; t < m->n_targets; t++)
        if (!strcmp(m->targets[t].name, name)) return m->targets[t].slot;
    return NULL;
}

static void test_conv_slot_capabilities(void) {
    Error err;
    /* target names, as torchvision's modules */
    Model m;
    ASSERTF(model_build(&m, cnn_cfg(CNN_RESNET), &err) == 0, "%s", err.msg);
    const char *want[] = {"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
                          "layer2.0.downsample.0", "fc"};
    CHECK(m.n_targets == 7);
    for (int i = 0; i < 7 && i < m.n_targets; i++)
        CHECK_MSG(!strcmp(m.targets[i].name, want[i]), "target %d is '%s', expected '%s'", i, m.targets[i].name, want[i]);
    CHECK(m.targets[5].slot->is_conv && m.targets[5].slot->conv.kh == 1 && !m.targets[6].slot->is_conv);
    model_free(&m);
    ASSERTF(model_build(&m, cnn_cfg(CNN_VGG), &err) == 0, "%s", err.msg);
    const char *wv[] = {"features.0", "features.4", "classifier"}; /* conv bn relu pool | conv ... */
    CHECK(m.n_targets == 3);
    for (int i = 0; i < 3 && i < m.n_targets; i++)
        CHECK_MSG(!strcmp(m.targets[i].name, wv[i]), "vgg target %d is '%s', expected '%s'", i, m.targets[i].name, wv[i]);
    model_free(&m);

    /* tap: NCHW input and output of the adapted conv, output = conv(inp, W0 + dW) */
    Net n;
    AdapterOptions o = {0};
    ASSERTF(net_init(&n, cnn_cfg(CNN_RESNET), RESNET_CONVS, 3, &ADAPTER_LORA, 2, o, 2, 1, &err) == 0, "%s", err.msg);
    n.with_reg = 0;
    LinearSlot *s = slot_named(&n.m, "layer1.0.conv1");
    ASSERT(s && s->n_ad == 1);
    ConvShape cs = s->conv;
    cs.B = n.B;
    size_t nz = (size_t)n.B * cs.C_out * cs.H_out * cs.W_out;
    TapRec tap = {.z = malloc(nz * sizeof(float)), .nz = nz};
    s->tap = rec_tap, s->tap_ctx = &tap;
    net_loss(&n);
    CHECK(tap.calls == 1 && tap.N == n.B);
    {
        Adapter *a = s->ad[0];
        float *W = malloc((size_t)a->m * a->n * sizeof(float)), *o2 = malloc(nz * sizeof(float));
        a->kind->delta_weight(a, W);
        for (size_t k = 0; k < (size_t)a->m * a->n; k++) W[k] += a->W0[k];
        float *scr = malloc(conv2d_scratch_floats(cs) * sizeof(float));
        conv2d_forward(o2, scr, tap.inp, W, NULL, cs);
        size_t where;
        CHECK_MSG(max_rel_err(tap.out, o2, nz, 1e-6, &where) < 1e-6, "tapped output is not conv(inp, W0 + dW)");
        free(W), free(o2), free(scr);
    }

    /* grad_w = dL/dW_eff; LoRA's gradients are s g A^T and s B^T g of it */
    Adapter *a = s->ad[0];
    s->grad_w = calloc((size_t)s->out * s->in, sizeof(float));
    net_grads(&n);
    {
        const float *A = params_data(&n.ad.params, a->t[LORA_A]), *Bm = params_data(&n.ad.params, a->t[LORA_B]);
        const float *dA = params_grad(&n.ad.params, a->t[LORA_A]), *dB = params_grad(&n.ad.params, a->t[LORA_B]);
        double worst = 0, scale = 0;
        for (int i = 0; i < a->m; i++)
            for (int k = 0; k < a->r; k++) {
                double v = 0;
                for (int j = 0; j < a->n; j++) v += (double)s->grad_w[i * a->n + j] * A[k * a->n + j];
                v *= a->scale;
                worst = fmax(worst, fabs(v - dB[i * a->r + k])), scale = fmax(scale, fabs(v));
            }
        for (int k = 0; k < a->r; k++)
            for (int j = 0; j < a->n; j++) {
                double v = 0;
                for (int i = 0; i < a->m; i++) v += (double)Bm[i * a->r + k] * s->grad_w[i * a->n + j];
                v *= a->scale;
                worst = fmax(worst, fabs(v - dA[k * a->n + j])), scale = fmax(scale, fabs(v));
            }
        CHECK_MSG(scale > 0 && worst < 1e-5 * scale, "LoRA grads vs s g A^T, s B^T g of grad_w: %g (scale %g)", worst, scale);
        /* the host weight made trainable gets the same dL/dW */
        params_set_trainable(n.m.params, "layer1.0.conv1.weight", 1);
        params_alloc_grads(n.m.params);
        memset(s->grad_w, 0, (size_t)s->out * s->in * sizeof(float));
        net_grads(&n);
        size_t where;
        CHECK_MSG(max_rel_err(params_grad(n.m.params, s->w), s->grad_w, (size_t)s->out * s->in, 1e-6, &where) < 1e-6,
                  "host weight gradient != grad_w");
        params_set_trainable(n.m.params, "layer1.0.conv1.weight", 0);
        params_alloc_grads(n.m.params);
    }
    free(s->grad_w);
    s->grad_w = NULL;

    /* injected gradient J at the conv output: the gradients are those of sum(logits r) + sum(J z) */
    float *J = gc_filled(nz, -1, 1, 41);
    s->inject = J;
    net_grads(&n);
    s->inject = NULL;
    ParamSet *ps = &n.ad.params;
    float *g = malloc(ps->n_grad * sizeof(float));
    memcpy(g, ps->grad, ps->n_grad * sizeof(float));
    InjCtx ic = {.n = &n, .tap = &tap, .J = J};
    int checked = 0, skipped = 0;
    const char *names[2] = {"layer1.0.conv1.lora_B", "conv1.lora_A"}; /* at the slot, and upstream of it */
    for (int q = 0; q < 2; q++) {
        int i = params_find(ps, names[q]);
        ASSERT(i >= 0);
        char l[128];
        snprintf(l, sizeof l, "inject %s", names[q]);
        CHECK_MSG(gradcheck_kinked(l, inj_loss, &ic, params_data(ps, i), g + ps->views[i].goff, ps->views[i].numel, 1e-3f,
                                   10, &checked, &skipped) == 0, "%s", l);
    }
    s->tap = NULL;
    free(g), free(J), free(tap.z);

    /* arena: steady from the second step on, with materialized kernels and the regularizer */
    net_free(&n);
    AdapterOptions lo = {.reg_lambda = 0.1f};
    ASSERTF(net_init(&n, cnn_cfg(CNN_RESNET), RESNET_CONVS, 3, &ADAPTER_LAVA_CONV, 2, lo, 4, 1, &err) == 0, "%s", err.msg);
    arena_free(&n.ar);
    arena_init(&n.ar, 4096);
    net_grads(&n);
    int grows = n.ar.grows;
    size_t high = n.ar.high;
    CHECK(grows > 0); /* the 4 KiB start had to grow, so the check below means something */
    for (int step = 0; step < 3; step++) net_grads(&n);
    CHECK_MSG(n.ar.grows == grows && n.ar.high == high, "the arena grew after the first step (%d -> %d)", grows,
              n.ar.grows);
    net_free(&n);
}

/* ---- errors ------------------------------------------------------------------------------------------------- */

static void test_adapter_errors(void) {
    Error err;
    Model m;
    AdapterSet ad;
    ASSERTF(model_build(&m, cnn_cfg(CNN_RESNET), &err) == 0, "%s", err.msg);
    const char *bad_pat[1] = {"layer9.*.conv1"};
    AdapterSpec spec = {.kind = &ADAPTER_LAVA_CONV, .r = 2, .alpha = 4};
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, bad_pat, 1, &spec, 1, &err) == -1);
    printf("no match: %s\n", err.msg);
    CHECK(strstr(err.msg, "'layer9.*.conv1' matches no layer") && strstr(err.msg, "conv1"));
    const char *all[1] = {"*"}; /* includes fc, a linear */
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, all, 1, &spec, 1, &err) == -1);
    printf("linear target: %s\n", err.msg);
    CHECK(strstr(err.msg, "'lava_conv' cannot adapt 'fc'") && strstr(err.msg, "conv layers only"));
    for (int t = 0; t < m.n_targets; t++) CHECK(m.targets[t].slot->n_ad == 0); /* undone */
    spec.r = 5; /* U of conv1 has C_out = 4 rows */
    spec.opt.reg_lambda = 0.1f;
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, RESNET_CONVS, 3, &spec, 1, &err) == -1);
    printf("cp rank: %s\n", err.msg);
    CHECK(strstr(err.msg, "rank 5 exceeds the 4 rows of the regularized factor U"));
    spec.opt.reg_lambda = 0; /* no penalty: the CP rank is free */
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, RESNET_CONVS, 3, &spec, 1, &err) == 6);
    adapters_free(&ad, m.targets, m.n_targets);
    spec = (AdapterSpec){.kind = &ADAPTER_LAVA, .r = 5, .alpha = 4}; /* reshape-LoRA + regularizer; conv1: (4, 27) */
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, RESNET_CONVS, 3, &spec, 1, &err) == -1);
    printf("lava rank on a conv: %s\n", err.msg);
    CHECK(strstr(err.msg, "'conv1' (lava): rank 5 exceeds min(4, 27)"));
    spec.kind = &ADAPTER_LORA; /* plain LoRA accepts it, as PEFT does */
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, RESNET_CONVS, 3, &spec, 1, &err) == 6);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);

    ASSERTF(model_build(&m, &TEST_SMALL_VIT, &err) == 0, "%s", err.msg);
    spec = (AdapterSpec){.kind = &ADAPTER_LAVA, .r = 40, .alpha = 4};
    CHECK(adapters_attach(&ad, m.targets, m.n_targets, m.params, TEST_QV, 2, &spec, 1, &err) == -1);
    printf("lava rank: %s\n", err.msg);
    CHECK(strstr(err.msg, "(lava): rank 40 exceeds min(32, 32)"));
    model_free(&m);

    unsigned mask;
    int v;
    CHECK(lava_parse_factors(&ADAPTER_LAVA, "both", "k", &mask, &err) == 0 && mask == 3);
    CHECK(lava_parse_factors(&ADAPTER_LAVA, "", "k", &mask, &err) == 0 && mask == 0);
    CHECK(lava_parse_factors(&ADAPTER_LAVA, "U", "method.lava.factors", &mask, &err) == -1 &&
          strstr(err.msg, "method.lava.factors: 'U' for adapter lava"));
    CHECK(lava_parse_factors(&ADAPTER_LAVA_CONV, "U+V", "k", &mask, &err) == 0 && mask == 3);
    CHECK(lava_parse_factors(&ADAPTER_LAVA_CONV, "X,Y", "k", &mask, &err) == 0 && mask == 12);
    CHECK(lava_parse_factors(&ADAPTER_LAVA_CONV, "all", "k", &mask, &err) == 0 && mask == 15);
    CHECK(lava_parse_factors(&ADAPTER_LAVA_CONV, "U+W", "k", &mask, &err) == -1 && strstr(err.msg, "U, V, X, Y"));
    CHECK(lava_parse_factors(&ADAPTER_LORA, "in", "k", &mask, &err) == -1 && strstr(err.msg, "no regularizer"));
    CHECK(lava_parse_init("u_zero", "k", &v, &err) == 0 && v == LAVA_INIT_U_ZERO);
    CHECK(lava_parse_init("zero", "k", &v, &err) == -1 && strstr(err.msg, "u_zero"));
}

/* ---- end to end: runexp with lava_conv ------------------------------------------------------------------- */

static const char *RUNEXP, *CONFIG;

static void test_it_lava_conv_runexp(void) {
    const char *dir = getenv("LORALAB_FASHION_MNIST");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir ? dir : "/usr/share/datasets/fashion-mnist");
    char probe2[512];
    snprintf(probe2, sizeof probe2, "%.*s", (int)(strlen(probe) - 3), probe);
    if (access(probe, R_OK) && access(probe2, R_OK)) {
        printf("SKIP: no Fashion-MNIST at %s\n", probe2);
        exit(TEST_SKIP);
    }
    char tmp[] = "/tmp/test_lava_XXXXXX";
    ASSERT(mkdtemp(tmp));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s output=%s --threads 2 > %s/log 2>&1", RUNEXP, CONFIG, tmp, tmp);
    int rc = system(cmd);
    char log[300];
    snprintf(log, sizeof log, "%s/log", tmp);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s", log);
        CHECK(system(cmd) >= 0);
    }
    CHECK_MSG(rc == 0, "runexp exit %d", rc);
    snprintf(cmd, sizeof cmd, "ls %s/it_lava_conv | head -1", tmp);
    FILE *f = popen(cmd, "r");
    char id[128] = "";
    if (f && fgets(id, sizeof id, f)) id[strcspn(id, "\n")] = 0;
    if (f) pclose(f);
    char h5[700];
    snprintf(h5, sizeof h5, "%s/it_lava_conv/%s/run.h5", tmp, id);
    int64_t *steps = NULL, n = 0, nl = 0, *sl = NULL;
    double *pen = NULL, *loss = NULL, *acc = NULL;
    Error e;
    CHECK_MSG(h5rec_read_series(h5, "train/reg_penalty", &steps, &pen, &n, &e) == 0, "%s", e.msg);
    CHECK_MSG(h5rec_read_series(h5, "train/loss", &sl, &loss, &nl, &e) == 0, "%s", e.msg);
    CHECK_MSG(n == 24 && nl == 24, "%lld penalties, %lld losses, expected 24 each", (long long)n, (long long)nl);
    int finite = 1;
    for (int64_t i = 0; i < n; i++) finite &= isfinite(pen[i]) && pen[i] > 0 && steps[i] == i;
    CHECK_MSG(finite, "penalty series not finite / positive / step-indexed");
    /* U starts kaiming-uniform, far from orthonormal columns: its gradient pulls the penalty down */
    CHECK_MSG(n > 0 && pen[n - 1] < 0.8 * pen[0], "penalty %.4f -> %.4f: the regularizer's gradient is not applied?",
              n ? pen[0] : 0, n ? pen[n - 1] : 0);
    int64_t na = 0, *sa = NULL;
    CHECK_MSG(h5rec_read_series(h5, "eval/test_acc", &sa, &acc, &na, &e) == 0, "%s", e.msg);
    if (n > 0 && nl > 0 && na > 0)
        printf("lava_conv runexp: loss %.4f -> %.4f, penalty %.4f -> %.4f, test acc %.3f\n", loss[0], loss[nl - 1], pen[0],
               pen[n - 1], acc[na - 1]);
    CHECK_MSG(na > 0 && acc[na - 1] > 0.15, "test accuracy %.3f: not above chance (0.1)", na > 0 ? acc[na - 1] : 0);
    free(steps), free(pen), free(sl), free(loss), free(sa), free(acc);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"grad_lava_conv", test_grad_lava_conv},
        {"grad_reshape_lora", test_grad_reshape_lora},
        {"grad_lava_vit", test_grad_lava_vit},
        {"lava_regularizer", test_lava_regularizer},
        {"adapter_backward_delta", test_adapter_backward_delta},
        {"adapter_merge", test_adapter_merge},
        {"adapter_tangent", test_adapter_tangent},
        {"conv_slot_capabilities", test_conv_slot_capabilities},
        {"adapter_errors", test_adapter_errors},
        {"it_lava_conv_runexp", test_it_lava_conv_runexp},
    };
    if (argc < 2) {
        fprintf(stderr, "usage: test_lava NAME [runexp config]\n");
        return 2;
    }
    if (argc >= 4) RUNEXP = argv[2], CONFIG = argv[3];
    for (size_t i = 0; i < ARRAY_LEN(tests); i++)
        if (!strcmp(argv[1], tests[i].name)) {
            tests[i].fn();
            return test_finish(argv[1]);
        }
    fprintf(stderr, "unknown test %s\n", argv[1]);
    return 2;
}
