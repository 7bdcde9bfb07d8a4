/* tests/test_abm.c: ABM-LoRA stage 1 (METHODS.md, "ABM-LoRA (activation boundary matching)").
 *   abm_loss_grad         abm_boundary_loss: hand-computed 4-unit example (loss, dz, mismatch); FD check of dz
 *                         on random t, z with values near +-mu
 *   abm_weights           uniform / linear / quadratic (= sequential) lambda for L = 6; layer-subset parsing
 *   grad_abm_inject       tiny ViT, LoRA on q and v with non-zero B, a rank-8 teacher: the student's adapter
 *                         gradients from one injected backward = central differences of L_ABM (t held fixed)
 *   abm_stage1_decreases  tiny ViT, teacher LoRA (q, v, fc1; r 8, random B), student LoRA r 4 kaiming / B = 0,
 *                         30 AdamW steps: L_ABM and the sign-mismatch fraction on a fixed batch decrease
 *   abm_cnn_points        CNN match points: names and count (ResNet: conv1 + each block's conv1; VGG: every conv),
 *                         units C*H*W, and the captured z = the pre-ReLU value: the batchnorm's affine map of the
 *                         conv output (running statistics, negative gammas) computed here from a slot tap
 *   grad_abm_inject_cnn   tiny ResNet (frozen BN, random statistics) and VGG (no BN), reshape-LoRA on every conv
 *                         with non-zero B, a rank-6 teacher: injected-gradient adapter grads = central differences
 *   abm_stage1_cnn        tiny ResNet, teacher reshape-LoRA r 6 (random B), student r 4 kaiming: 30 AdamW steps
 *                         lower L_ABM and the sign mismatch on a fixed batch
 *   it_abm_cnn_runexp     runexp tests/data/abm/abm_cnn.yaml (family cnn, method.init abm): the run finishes, the
 *                         init/abm_* series have one column per conv match point, the stage-1 loss falls, the
 *                         information-loss series of the conv adapters are finite (SKIP without Fashion-MNIST) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "gradcheck.h"
#include "methods/abm.h"
#include "methods/lora.h"
#include "results/h5rec.h"
#include "testlib.h"

/* ---- abm_loss_grad ---- */
typedef struct { float *t, *z; long n; float mu, w; } LossCtx;
static double loss_fn(void *p) {
    LossCtx *c = p;
    return abm_boundary_loss(NULL, c->t, c->z, c->n, c->mu, c->w);
}

static int check_loss_grad(void) {
    float t4[4] = {1, 1, -1, 0}, z4[4] = {0.2f, 0.8f, 0.1f, -0.7f}, d4[4];
    /* mu .5, weight 2: h = .3, 0, .6, 0 -> loss 2 (.09 + .36) / 4; dz = 2 * 2 / 4 * (-.3, 0, .6, 0) */
    double L = abm_boundary_loss(d4, t4, z4, 4, 0.5f, 2.0f);
    CHECK_NEAR(L, 0.225, 1e-6);
    CHECK_NEAR(d4[0], -0.3, 1e-6);
    CHECK_NEAR(d4[1], 0.0, 0);
    CHECK_NEAR(d4[2], 0.6, 1e-6);
    CHECK_NEAR(d4[3], 0.0, 0);
    CHECK_NEAR(abm_sign_mismatch(t4, z4, 4), 0.25, 0);
    long n = 96;
    LossCtx c = {.t = malloc(n * sizeof(float)), .z = malloc(n * sizeof(float)), .n = n, .mu = 0.5f, .w = 1.5f};
    gc_fill(c.t, n, -1, 1, 3);
    gc_fill(c.z, n, -1.2f, 1.2f, 4);
    for (long i = 0; i < 16; i++) c.z[i] = (i & 1 ? 0.5f : -0.5f) + (float)(i - 8) * 0.004f; /* near +-mu */
    float *dz = malloc(n * sizeof(float));
    abm_boundary_loss(dz, c.t, c.z, n, c.mu, c.w);
    int bad = gradcheck("abm dz", loss_fn, &c, c.z, dz, (size_t)n, 1e-3f, (int)n);
    free(c.t); free(c.z); free(dz);
    return bad;
}

/* ---- abm_weights ---- */
static int check_weights(void) {
    float lam[6];
    AbmWeighting w;
    Error err;
    abm_layer_weights(ABM_UNIFORM, 6, lam);
    for (int l = 1; l <= 6; l++) CHECK_NEAR(lam[l - 1], 1.0, 0);
    abm_layer_weights(ABM_LINEAR, 6, lam);
    for (int l = 1; l <= 6; l++) CHECK_NEAR(lam[l - 1], l / 6.0, 1e-7);
    abm_layer_weights(ABM_QUADRATIC, 6, lam);
    for (int l = 1; l <= 6; l++) CHECK_NEAR(lam[l - 1], (l / 6.0) * (l / 6.0), 1e-7);
    CHECK(abm_weighting_parse("sequential", &w, &err) == 0 && w == ABM_QUADRATIC);
    CHECK(abm_weighting_parse("linear", &w, &err) == 0 && w == ABM_LINEAR);
    CHECK(abm_weighting_parse("quadratc", &w, &err) == -1 && strstr(err.msg, "quadratc"));
    int ly[12];
    CHECK(abm_parse_layers("last:6", 12, ly, &err) == 6 && ly[0] == 6 && ly[5] == 11);
    CHECK(abm_parse_layers("F6", 12, ly, &err) == 6 && ly[0] == 0 && ly[5] == 5);
    CHECK(abm_parse_layers("all", 12, ly, &err) == 12 && ly[11] == 11);
    CHECK(abm_parse_layers("5-7, 1", 12, ly, &err) == 4 && ly[0] == 1 && ly[1] == 5 && ly[3] == 7);
    CHECK(abm_parse_layers("3-12", 12, ly, &err) == -1 && strstr(err.msg, "3-12"));
    CHECK(abm_parse_layers("last:13", 12, ly, &err) == -1);
    return 0;
}

/* ---- tiny ViT ---- */
static const ModelConfig TINY = {.family = MODEL_VIT, .vit = {.img_size = 8, .in_ch = 1, .patch = 4, .dim = 32,
                                                              .depth = 3, .heads = 2, .mlp_hidden = 64,
                                                              .n_classes = 3, .pool = POOL_CLS, .ln_eps = 1e-6f,
                                                              .init_torch = 1}};

static void attach(Model *m, AdapterSet *ad, const char *const *pats, int np, int r, uint64_t seed) {
    Error err;
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = r, .alpha = 2.0f * r};
    ASSERTF(adapters_attach(ad, m->targets, m->n_targets, m->params, pats, np, &spec, seed, &err) > 0, "%s",
            err.msg);
}

static void random_b(AdapterSet *ad, float s, unsigned seed) {
    for (int i = 0; i < ad->n; i++)
        gc_fill(params_data(&ad->params, ad->a[i].t[LORA_B]), (size_t)ad->a[i].m * ad->a[i].r, -s, s, seed + i);
}

/* teacher (detached, rank rt) then student (rank rs) on the same targets */
static void setup(Model *m, AdapterSet *teacher, AdapterSet *student, const char *const *pats, int np, int rt,
                  int rs) {
    Error err;
    ASSERTF(model_build(m, &TINY, &err) == 0, "%s", err.msg);
    model_init_params(m, 1);
    params_set_all_trainable(m->params, 0);
    attach(m, teacher, pats, np, rt, 5);
    random_b(teacher, 0.5f, 100);
    abm_detach(teacher, m);
    attach(m, student, pats, np, rs, 7);
}

static void teardown(Model *m, AdapterSet *teacher, AdapterSet *student) {
    adapters_free(student, m->targets, m->n_targets);
    adapters_free(teacher, m->targets, m->n_targets);
    model_free(m);
}

typedef struct {
    Model *m;
    const int *layers;
    int L, B;
    const float *lambda, *x;
    float mu;
    float *const *t;
    Arena *ar;
} InjCtx;
static double inj_loss(void *p) {
    InjCtx *c = p;
    arena_reset(c->ar);
    return abm_student_loss(c->m, c->layers, c->L, c->lambda, c->mu, c->x, c->B, (const float *const *)c->t, 0,
                            NULL, NULL, c->ar);
}

static int check_inject(void) {
    static const char *const QV[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
    Model m;
    AdapterSet teacher, student;
    setup(&m, &teacher, &student, QV, 2, 8, 4);
    random_b(&student, 0.3f, 200);
    int layers[2] = {1, 2}, L = 2, B = 2;
    float lambda[2];
    abm_layer_weights(ABM_QUADRATIC, L, lambda);
    size_t nx = (size_t)B * 64, nu = (size_t)B * m.u.vit.T * 64;
    float *x = malloc(nx * sizeof(float)), *t[2] = {malloc(nu * sizeof(float)), malloc(nu * sizeof(float))};
    gc_fill(x, nx, -1, 1, 9);
    Arena ar;
    arena_init(&ar, 1 << 16);
    Error err;
    CHECK(abm_teacher_acts(&m, &student, &teacher, layers, L, x, B, t, &ar, &err) == 0);
    CHECK(m.u.vit.blocks[0].qkv.n_ad == 2); /* the student is back on its slots */
    InjCtx c = {.m = &m, .layers = layers, .L = L, .B = B, .lambda = lambda, .x = x, .mu = 0.1f, .t = t, .ar = &ar};
    arena_reset(&ar);
    params_zero_grad(&student.params);
    double mm[2];
    double L0 = abm_student_loss(&m, layers, L, lambda, c.mu, x, B, (const float *const *)t, 1, NULL, mm, &ar);
    printf("grad_abm_inject: L_ABM %.6g, mismatch %.3f %.3f\n", L0, mm[0], mm[1]);
    CHECK(L0 > 0 && mm[0] > 0);
    CHECK_NEAR(inj_loss(&c), L0, 1e-9 * fabs(L0));
    int bad = 0;
    for (int i = 0; i < student.params.n; i++) {
        size_t n = student.params.views[i].numel;
        float *g = malloc(n * sizeof(float));
        memcpy(g, params_grad(&student.params, i), n * sizeof(float));
        char label[PARAM_NAME_MAX + 16];
        snprintf(label, sizeof label, "abm %s", student.params.views[i].name);
        bad += gradcheck(label, inj_loss, &c, params_data(&student.params, i), g, n, 1e-2f, 24);
        free(g);
    }
    arena_free(&ar);
    free(x); free(t[0]); free(t[1]);
    teardown(&m, &teacher, &student);
    return bad;
}

/* ---- abm_stage1_decreases ---- */
static int synth_batch(void *p, int i, int B, float *x, int *y) {
    (void)p;
    if (i >= 4) return 0;
    uint64_t st = rng_stream("test.abm", (uint64_t)i, 0);
    rng_fill_uniform(x, (size_t)B * 64, -1.0f, 1.0f, 77, st);
    for (int k = 0; k < B; k++) y[k] = 0;
    return B;
}

/* L_ABM and the mean mismatch on init batch 0 */
static double eval_batch0(Model *m, AdapterSet *student, AdapterSet *teacher, const int *layers, int L,
                          const float *lambda, float mu, double *mis) {
    int B = 16;
    size_t nu = (size_t)B * m->u.vit.T * 64;
    float *x = malloc((size_t)B * 64 * sizeof(float));
    int y[16];
    synth_batch(NULL, 0, B, x, y);
    float **t = malloc(sizeof(float *) * L);
    for (int j = 0; j < L; j++) t[j] = malloc(nu * sizeof(float));
    Arena ar;
    arena_init(&ar, 1 << 16);
    Error err;
    ASSERTF(abm_teacher_acts(m, student, teacher, layers, L, x, B, t, &ar, &err) == 0, "%s", err.msg);
    double mm[8];
    arena_reset(&ar);
    double loss = abm_student_loss(m, layers, L, lambda, mu, x, B, (const float *const *)t, 0, NULL, mm, &ar);
    *mis = 0;
    for (int j = 0; j < L; j++) *mis += mm[j] / L, free(t[j]);
    arena_free(&ar);
    free(t); free(x);
    return loss;
}

static int check_stage1(void) {
    static const char *const P[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.*.mlp.fc1"};
    Model m;
    AdapterSet teacher, student;
    setup(&m, &teacher, &student, P, 3, 8, 4);
    Error err;
    int layers[3];
    int L = abm_parse_layers("last:2", 3, layers, &err);
    float lambda[3];
    abm_layer_weights(ABM_QUADRATIC, L, lambda);
    AbmOptions o = {.mu = 0.5f, .weighting = ABM_QUADRATIC, .layers = layers, .n_layers = L, .steps = 30,
                    .batch = 16, .opt = OPT_ADAMW, .lr = 1e-2f, .weight_decay = 0.01f};
    InitData data = {.batch = synth_batch, .n_images = 64};
    double loss[30], ll[60], mis[60];
    AbmTrace tr = {.loss = loss, .layer_loss = ll, .mismatch = mis};
    double m0, m1, l0 = eval_batch0(&m, &student, &teacher, layers, L, lambda, o.mu, &m0);
    int rc = abm_stage1(&m, &student, &teacher, &data, &o, &tr, &err);
    CHECK_MSG(rc == 30, "%s", err.msg);
    double l1 = eval_batch0(&m, &student, &teacher, layers, L, lambda, o.mu, &m1);
    printf("abm_stage1_decreases: batch 0 L_ABM %.5f -> %.5f, mismatch %.4f -> %.4f; trace loss %.5f -> %.5f, "
           "layer %d mismatch %.4f -> %.4f\n", l0, l1, m0, m1, loss[0], loss[29], layers[L - 1], mis[L - 1],
           mis[29 * L + L - 1]);
    CHECK(tr.steps_done == 30);
    CHECK(l1 < 0.8 * l0);
    CHECK(m1 < m0);
    CHECK(loss[29] < loss[0]);
    double s0 = 0, s1 = 0;
    for (int j = 0; j < L; j++) s0 += mis[j], s1 += mis[29 * L + j];
    CHECK(s1 < s0);
    /* bad input: no init data */
    InitData none = {0};
    CHECK(abm_stage1(&m, &student, &teacher, &none, &o, NULL, &err) == -1 && strstr(err.msg, "init batches"));
    teardown(&m, &teacher, &student);
    return 0;
}

/* ---- CNN match points ---- */
static ModelConfig cnn_cfg(CnnKind kind, int bn) {
    return (ModelConfig){.family = MODEL_CNN, .cnn = {.kind = kind, .in_ch = 1, .img_h = 8, .img_w = 8,
                                                      .n_classes = 3, .width = 4, .stages = 2,
                                                      .blocks_per_stage = kind == CNN_VGG ? 2 : 1, .batchnorm = bn}};
}

/* Random BN statistics and affine (gammas of both signs), so the pre-ReLU value is not the conv output. */
static void random_bn(Model *m) {
    ParamSet *ps = m->params;
    for (int i = 0; i < ps->n; i++) {
        const char *nm = ps->views[i].name;
        size_t n = ps->views[i].numel;
        float *d = params_data(ps, i);
        unsigned sd = 500 + (unsigned)i;
        if (strstr(nm, "running_mean")) gc_fill(d, n, -0.3f, 0.3f, sd);
        else if (strstr(nm, "running_var")) gc_fill(d, n, 0.5f, 2.0f, sd);
        else if (ps->views[i].ndim == 1 && !strncmp(strrchr(nm, '.'), ".weight", 7)) gc_fill(d, n, -1.5f, 1.5f, sd);
        else if (ps->views[i].ndim == 1 && !strncmp(strrchr(nm, '.'), ".bias", 5)) gc_fill(d, n, -0.3f, 0.3f, sd);
    }
}

static const char *const CONVS[] = {"conv1", "layer*.conv*", "layer*.downsample.0", "features.*"};

/* a CNN, its teacher (detached, rank rt) and student (rank rs) reshape-LoRA on every conv */
static void setup_cnn(Model *m, AdapterSet *teacher, AdapterSet *student, CnnKind kind, int bn, int rt, int rs) {
    Error err;
    ModelConfig mc = cnn_cfg(kind, bn);
    ASSERTF(model_build(m, &mc, &err) == 0, "%s", err.msg);
    model_init_params(m, 1);
    random_bn(m);
    params_set_all_trainable(m->params, 0);
    const char *const *pats = kind == CNN_VGG ? CONVS + 3 : CONVS;
    int np = kind == CNN_VGG ? 1 : 3;
    attach(m, teacher, pats, np, rt, 5);
    random_b(teacher, 0.3f, 100);
    abm_detach(teacher, m);
    attach(m, student, pats, np, rs, 7);
}

typedef struct { float *dst; } ConvTap;
static void conv_tap(void *p, const LinearSlot *s, const float *inp, const float *out, int N) {
    (void)inp;
    ConvTap *t = p;
    memcpy(t->dst, out, (size_t)N * s->conv.C_out * s->conv.H_out * s->conv.W_out * sizeof(float));
}

static int check_cnn_points(void) {
    static const struct { CnnKind kind; int bn, n; const char *names[4]; } CASES[] = {
        {CNN_RESNET, 1, 3, {"conv1", "layer1.0.conv1", "layer2.0.conv1"}},
        {CNN_RESNET, 0, 3, {"conv1", "layer1.0.conv1", "layer2.0.conv1"}},
        {CNN_VGG, 1, 4, {"features.0", "features.3", "features.7", "features.10"}},
        {CNN_VGG, 0, 4, {"features.0", "features.2", "features.5", "features.7"}},
    };
    for (size_t c = 0; c < ARRAY_LEN(CASES); c++) {
        Model m;
        Error err;
        ModelConfig mc = cnn_cfg(CASES[c].kind, CASES[c].bn);
        ASSERTF(model_build(&m, &mc, &err) == 0, "%s", err.msg);
        model_init_params(&m, 1);
        random_bn(&m);
        int n = abm_n_points(&m);
        CHECK_MSG(n == CASES[c].n, "case %zu: %d match points, want %d", c, n, CASES[c].n);
        int B = 3, layers[4];
        float *t[4], *ref = malloc((size_t)B * 4 * 8 * 8 * sizeof(float) * 2);
        float *x = gc_filled((size_t)B * 64, -1, 1, 11);
        for (int j = 0; j < n && j < 4; j++) {
            char name[PARAM_NAME_MAX];
            abm_point_name(&m, j, name, sizeof name);
            CHECK_MSG(!strcmp(name, CASES[c].names[j]), "case %zu point %d: %s, want %s", c, j, name, CASES[c].names[j]);
            /* stage 2 (j = last) halves H and W and doubles the channels */
            long want = !strcmp(name, "layer2.0.conv1") || !strcmp(name, "features.7") || !strcmp(name, "features.10") ||
                                (!CASES[c].bn && !strcmp(name, "features.5"))
                            ? 8 * 4 * 4 : 4 * 8 * 8;
            CHECK_MSG(abm_point_units(&m, j) == want, "%s: %ld units, want %ld", name, abm_point_units(&m, j), want);
            layers[j] = j;
            t[j] = malloc((size_t)B * abm_point_units(&m, j) * sizeof(float));
        }
        if (n != CASES[c].n) { model_free(&m); free(x); free(ref); continue; }
        Arena ar;
        arena_init(&ar, 1 << 16);
        /* the last point's z against the conv output (a tap) through the frozen BN, computed here */
        int j = n - 1, slot = -1;
        char name[PARAM_NAME_MAX];
        abm_point_name(&m, j, name, sizeof name);
        for (int k = 0; k < m.n_targets; k++)
            if (!strcmp(m.targets[k].name, name)) slot = k;
        ASSERT(slot >= 0);
        LinearSlot *s = m.targets[slot].slot;
        ConvTap ct = {.dst = ref};
        s->tap = conv_tap, s->tap_ctx = &ct;
        CHECK(abm_teacher_acts(&m, NULL, NULL, layers, n, x, B, t, &ar, &err) == 0);
        s->tap = NULL, s->tap_ctx = NULL;
        int C = s->conv.C_out, HW = s->conv.H_out * s->conv.W_out;
        const float *g = NULL, *bb = NULL, *rm = NULL, *rv = NULL;
        if (CASES[c].bn) { /* the BN after this conv: by name (ResNet layer2.0.bn1, VGG features.<i+1>) */
            char bn[PARAM_NAME_MAX + 32];
            const char *dot = strrchr(name, '.');
            if (CASES[c].kind == CNN_RESNET) snprintf(bn, sizeof bn, "%.*s.bn1", (int)(dot - name), name);
            else snprintf(bn, sizeof bn, "features.%d", atoi(dot + 1) + 1);
            char k[PARAM_NAME_MAX + 48];
            int iw, ib, im, iv;
            snprintf(k, sizeof k, "%s.weight", bn), iw = params_find(m.params, k);
            snprintf(k, sizeof k, "%s.bias", bn), ib = params_find(m.params, k);
            snprintf(k, sizeof k, "%s.running_mean", bn), im = params_find(m.params, k);
            snprintf(k, sizeof k, "%s.running_var", bn), iv = params_find(m.params, k);
            ASSERTF(iw >= 0 && ib >= 0 && im >= 0 && iv >= 0, "no batchnorm %s", bn);
            g = params_data(m.params, iw), bb = params_data(m.params, ib);
            rm = params_data(m.params, im), rv = params_data(m.params, iv);
        }
        double worst = 0;
        int sign_flips = 0;
        for (int b = 0; b < B; b++)
            for (int ch = 0; ch < C; ch++)
                for (int p = 0; p < HW; p++) {
                    size_t i = ((size_t)b * C + ch) * HW + p;
                    double want = ref[i];
                    if (g) want = (want - rm[ch]) / sqrt((double)rv[ch] + 1e-5) * g[ch] + bb[ch];
                    worst = fmax(worst, fabs(t[j][i] - want));
                    sign_flips += (ref[i] > 0) != (t[j][i] > 0);
                }
        printf("abm_cnn_points case %zu: %d points, last %s: max |z - bn(conv)| %.3g, %d signs differ from the conv "
               "output\n", c, n, name, worst, sign_flips);
        CHECK(worst < 1e-5);
        if (CASES[c].bn) CHECK(sign_flips > 0); /* the match point is not the raw conv output */
        else CHECK(sign_flips == 0);
        arena_free(&ar);
        for (int k = 0; k < n; k++) free(t[k]);
        free(x), free(ref);
        model_free(&m);
    }
    return 0;
}

static int check_inject_cnn(void) {
    int bad = 0;
    for (int v = 0; v < 2; v++) {
        CnnKind kind = v == 0 ? CNN_RESNET : CNN_VGG;
        Model m;
        AdapterSet teacher, student;
        setup_cnn(&m, &teacher, &student, kind, v == 0, 6, 4);
        random_b(&student, 0.2f, 200);
        int n = abm_n_points(&m), layers[4], L = 0, B = 2;
        for (int j = v; j < n; j++) layers[L++] = j; /* ResNet: all 3; VGG: the last 3 */
        float lambda[4], *t[4];
        abm_layer_weights(ABM_QUADRATIC, L, lambda);
        for (int j = 0; j < L; j++) t[j] = malloc((size_t)B * abm_point_units(&m, layers[j]) * sizeof(float));
        float *x = gc_filled((size_t)B * 64, -1, 1, 19);
        Arena ar;
        arena_init(&ar, 1 << 16);
        Error err;
        CHECK(abm_teacher_acts(&m, &student, &teacher, layers, L, x, B, t, &ar, &err) == 0);
        CHECK(m.u.cnn.slots[0].n_ad == 1 && m.u.cnn.slots[0].ad[0] == &student.a[0]); /* the student is back */
        InjCtx c = {.m = &m, .layers = layers, .L = L, .B = B, .lambda = lambda, .x = x, .mu = 0.2f, .t = t, .ar = &ar};
        arena_reset(&ar);
        params_zero_grad(&student.params);
        double mm[4];
        double L0 = abm_student_loss(&m, layers, L, lambda, c.mu, x, B, (const float *const *)t, 1, NULL, mm, &ar);
        for (int j = 0; j < m.u.cnn.n_acts; j++) CHECK(m.u.cnn.inject_act[j] == NULL); /* removed after use */
        printf("grad_abm_inject_cnn %s: L_ABM %.6g, mismatch %.3f %.3f %.3f\n", v == 0 ? "resnet+bn" : "vgg", L0,
               mm[0], mm[1], mm[2]);
        CHECK(L0 > 0 && mm[0] > 0);
        CHECK_NEAR(inj_loss(&c), L0, 1e-9 * fabs(L0));
        for (int i = 0; i < student.params.n; i++) {
            size_t n = student.params.views[i].numel;
            float *g = malloc(n * sizeof(float));
            memcpy(g, params_grad(&student.params, i), n * sizeof(float));
            char label[PARAM_NAME_MAX + 24];
            snprintf(label, sizeof label, "abm cnn %s", student.params.views[i].name);
            double gmax = 0;
            for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(g[k]));
            if (gmax == 0) { /* a layer past the last match point (ResNet layer2.0.conv2): L_ABM must not move */
                float *p = params_data(&student.params, i), *keep = malloc(n * sizeof(float));
                memcpy(keep, p, n * sizeof(float));
                for (size_t k = 0; k < n; k++) p[k] += 0.05f * (float)((k % 7) - 3);
                double L1 = inj_loss(&c);
                memcpy(p, keep, n * sizeof(float));
                free(keep);
                printf("%s: zero gradient; L_ABM after a perturbation %.9g (was %.9g)\n", label, L1, L0);
                CHECK(L1 == L0 && kind == CNN_RESNET); /* VGG's last conv is a match point: no such layer */
            } else {
                bad += gradcheck(label, inj_loss, &c, params_data(&student.params, i), g, n, 1e-3f, 16);
            }
            free(g);
        }
        arena_free(&ar);
        free(x);
        for (int j = 0; j < L; j++) free(t[j]);
        teardown(&m, &teacher, &student);
    }
    return bad;
}

static int cnn_batch(void *p, int i, int B, float *x, int *y) {
    (void)p;
    if (i >= 4) return 0;
    rng_fill_uniform(x, (size_t)B * 64, -1.0f, 1.0f, 78, rng_stream("test.abm_cnn", (uint64_t)i, 0));
    for (int k = 0; k < B; k++) y[k] = 0;
    return B;
}

static double cnn_eval_batch0(Model *m, AdapterSet *student, AdapterSet *teacher, const int *layers, int L,
                              const float *lambda, float mu, double *mis) {
    int B = 16, y[16];
    float *x = malloc((size_t)B * 64 * sizeof(float)), *t[4];
    cnn_batch(NULL, 0, B, x, y);
    for (int j = 0; j < L; j++) t[j] = malloc((size_t)B * abm_point_units(m, layers[j]) * sizeof(float));
    Arena ar;
    arena_init(&ar, 1 << 16);
    Error err;
    ASSERTF(abm_teacher_acts(m, student, teacher, layers, L, x, B, t, &ar, &err) == 0, "%s", err.msg);
    double mm[4];
    arena_reset(&ar);
    double loss = abm_student_loss(m, layers, L, lambda, mu, x, B, (const float *const *)t, 0, NULL, mm, &ar);
    *mis = 0;
    for (int j = 0; j < L; j++) *mis += mm[j] / L, free(t[j]);
    arena_free(&ar);
    free(x);
    return loss;
}

static int check_stage1_cnn(void) {
    Model m;
    AdapterSet teacher, student;
    setup_cnn(&m, &teacher, &student, CNN_RESNET, 1, 6, 4);
    Error err;
    int layers[3];
    int L = abm_parse_layers("all", abm_n_points(&m), layers, &err);
    CHECK(L == 3);
    float lambda[3];
    abm_layer_weights(ABM_UNIFORM, L, lambda);
    AbmOptions o = {.mu = 0.5f, .weighting = ABM_UNIFORM, .layers = layers, .n_layers = L, .steps = 30,
                    .batch = 16, .opt = OPT_ADAMW, .lr = 1e-2f, .weight_decay = 0.01f};
    InitData data = {.batch = cnn_batch, .n_images = 64};
    double loss[30], ll[90], mis[90];
    AbmTrace tr = {.loss = loss, .layer_loss = ll, .mismatch = mis};
    double m0, m1, l0 = cnn_eval_batch0(&m, &student, &teacher, layers, L, lambda, o.mu, &m0);
    int rc = abm_stage1(&m, &student, &teacher, &data, &o, &tr, &err);
    CHECK_MSG(rc == 30, "%s", err.msg);
    double l1 = cnn_eval_batch0(&m, &student, &teacher, layers, L, lambda, o.mu, &m1);
    printf("abm_stage1_cnn: batch 0 L_ABM %.5f -> %.5f, mismatch %.4f -> %.4f; trace loss %.5f -> %.5f\n", l0, l1, m0,
           m1, loss[0], loss[29]);
    CHECK(l1 < 0.8 * l0);
    CHECK(m1 < m0);
    CHECK(loss[29] < loss[0]);
    o.n_layers = 4; /* more layers than the model has match points */
    CHECK(abm_stage1(&m, &student, &teacher, &data, &o, NULL, &err) == -1 && strstr(err.msg, "match points"));
    teardown(&m, &teacher, &student);
    return 0;
}

/* ---- it_abm_cnn_runexp ---- */
static int check_runexp_cnn(const char *runexp, const char *cfg) {
    if (access("/usr/share/datasets/fashion-mnist", R_OK) != 0) {
        printf("SKIP: no Fashion-MNIST\n");
        exit(TEST_SKIP);
    }
    char tmp[] = "/tmp/test_abm_XXXXXX";
    ASSERT(mkdtemp(tmp));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s output=%s --threads 2 > %s/log 2>&1", runexp, cfg, tmp, tmp);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -20 %s/log", tmp);
        CHECK(system(cmd) >= 0);
    }
    CHECK_MSG(rc == 0, "runexp exit %d", rc);
    snprintf(cmd, sizeof cmd, "ls %s/it_abm_cnn | head -1", tmp);
    FILE *f = popen(cmd, "r");
    char id[128] = "", h5[700];
    if (f && fgets(id, sizeof id, f)) id[strcspn(id, "\n")] = 0;
    if (f) pclose(f);
    snprintf(h5, sizeof h5, "%s/it_abm_cnn/%s/run.h5", tmp, id);
    static const char *const want[3] = {"conv1", "layer1.0.conv1", "layer2.0.conv1"};
    static const char *const series[2] = {"init/abm_layer_loss", "init/abm_sign_mismatch"};
    Error e;
    for (int q = 0; q < 2; q++) {
        int64_t *st = NULL, n = 0;
        double *v = NULL;
        int nc = 0;
        char **cols = NULL;
        CHECK_MSG(h5rec_read_rows(h5, series[q], &st, &v, &n, &nc, &cols, &e) == 0, "%s", e.msg);
        CHECK_MSG(n == 8 && nc == 3, "%s: %lld rows, %d columns (want 8 x 3)", series[q], (long long)n, nc);
        for (int k = 0; cols && k < nc && k < 3; k++) CHECK_MSG(!strcmp(cols[k], want[k]), "column %s", cols[k]);
        for (int64_t k = 0; v && k < n * nc; k++) CHECK(isfinite(v[k]) && v[k] >= 0 && (q == 0 || v[k] <= 1));
        free(st), free(v), free(cols);
    }
    int64_t *st = NULL, n = 0;
    double *loss = NULL;
    CHECK_MSG(h5rec_read_series(h5, "init/abm_loss", &st, &loss, &n, &e) == 0, "%s", e.msg);
    if (n == 8) printf("it_abm_cnn_runexp: stage-1 L_ABM %.5f -> %.5f\n", loss[0], loss[7]);
    CHECK_MSG(n == 8 && loss[7] < loss[0], "stage-1 loss did not fall (%lld steps)", (long long)n);
    free(st), free(loss);
    double *il = NULL;
    int nc = 0;
    char **cols = NULL;
    CHECK_MSG(h5rec_read_rows(h5, "metrics/il_total", &st, &il, &n, &nc, &cols, &e) == 0, "%s", e.msg);
    CHECK_MSG(n == 3 && nc == 6, "metrics/il_total: %lld rows x %d columns (want steps 0, 4, 8 x 6 convs)",
              (long long)n, nc);
    for (int64_t k = 0; il && k < n * nc; k++) CHECK(isfinite(il[k]) && il[k] > 0);
    free(st), free(il), free(cols);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    return 0;
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "all";
    int all = !strcmp(w, "all"), bad = 0;
    if (all || !strcmp(w, "abm_loss_grad")) bad += check_loss_grad();
    if (all || !strcmp(w, "abm_weights")) bad += check_weights();
    if (all || !strcmp(w, "grad_abm_inject")) bad += check_inject();
    if (all || !strcmp(w, "abm_stage1_decreases")) bad += check_stage1();
    if (all || !strcmp(w, "abm_cnn_points")) bad += check_cnn_points();
    if (all || !strcmp(w, "grad_abm_inject_cnn")) bad += check_inject_cnn();
    if (all || !strcmp(w, "abm_stage1_cnn")) bad += check_stage1_cnn();
    if (!strcmp(w, "it_abm_cnn_runexp")) {
        if (argc < 4) {
            fprintf(stderr, "usage: test_abm it_abm_cnn_runexp RUNEXP CONFIG\n");
            return 2;
        }
        bad += check_runexp_cnn(argv[2], argv[3]);
    }
    test_checks++;
    if (bad) test_failures++;
    return test_finish(w);
}
