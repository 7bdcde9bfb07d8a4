/* tests/test_abm.c: ABM-LoRA stage 1 (METHODS.md, "ABM-LoRA (activation boundary matching)").
 *   abm_loss_grad         abm_boundary_loss: hand-computed 4-unit example (loss, dz, mismatch); FD check of dz
 *                         on random t, z with values near +-mu
 *   abm_weights           uniform / linear / quadratic (= sequential) lambda for L = 6; layer-subset parsing
 *   grad_abm_inject       tiny ViT, LoRA on q and v with non-zero B, a rank-8 teacher: the student's adapter
 *                         gradients from one injected backward = central differences of L_ABM (t held fixed)
 *   abm_stage1_decreases  tiny ViT, teacher LoRA (q, v, fc1; r 8, random B), student LoRA r 4 kaiming / B = 0,
 *                         30 AdamW steps: L_ABM and the sign-mismatch fraction on a fixed batch decrease */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "gradcheck.h"
#include "methods/abm.h"
#include "methods/lora.h"
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

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "all";
    int all = !strcmp(w, "all"), bad = 0;
    if (all || !strcmp(w, "abm_loss_grad")) bad += check_loss_grad();
    if (all || !strcmp(w, "abm_weights")) bad += check_weights();
    if (all || !strcmp(w, "grad_abm_inject")) bad += check_inject();
    if (all || !strcmp(w, "abm_stage1_decreases")) bad += check_stage1();
    test_checks++;
    if (bad) test_failures++;
    return test_finish(w);
}
