/* tests/test_grad_layers.c: finite-difference checks of every transformer-layer backward, the LoRA
 * adapter, and whole tiny-ViT steps (full and LoRA). Usage: test_grad_layers <check>. Each check builds a
 * scalar loss L = sum(out * R) (R fixed random) in double and compares analytic dL/dx with central
 * differences for every input and parameter the backward produces. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/activations.h"
#include "core/cpu/attention.h"
#include "core/cpu/layernorm.h"
#include "core/cpu/linear.h"
#include "core/cpu/tokens.h"
#include "core/cpu/xent.h"
#include "core/vit.h"
#include "gradcheck.h"
#include "methods/lora.h"
#include "testlib.h"

#define EPS 1e-2f
static float *rnd(size_t n, unsigned seed, float s) { return gc_filled(n, -s, s, seed); }
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }
/* ---- linear ---- */
typedef struct { float *out, *inp, *w, *b, *R; int N, IC, OC; } LinCtx;
static double lin_loss(void *p) {
    LinCtx *c = p;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->IC, c->OC);
    return gc_dot(c->out, c->R, (size_t)c->N * c->OC);
}
static int check_linear(void) {
    LinCtx c = {.N = 6, .IC = 5, .OC = 7};
    c.inp = rnd(30, 1, 1); c.w = rnd(35, 2, 1); c.b = rnd(7, 3, 1); c.R = rnd(42, 4, 1); c.out = zeros(42);
    float *di = zeros(30), *dw = zeros(35), *db = zeros(7);
    linear_backward(di, dw, db, c.R, c.inp, c.w, c.N, c.IC, c.OC);
    int bad = gradcheck("linear dinp", lin_loss, &c, c.inp, di, 30, EPS, 100);
    bad += gradcheck("linear dweight", lin_loss, &c, c.w, dw, 35, EPS, 100);
    bad += gradcheck("linear dbias", lin_loss, &c, c.b, db, 7, EPS, 100);
    /* accumulation contract: a second backward doubles the gradients */
    float dw0 = dw[3];
    linear_backward(NULL, dw, NULL, c.R, c.inp, c.w, c.N, c.IC, c.OC);
    CHECK_NEAR(dw[3], 2 * dw0, 1e-5);
    return bad;
}

/* ---- layernorm ---- */
typedef struct { float *out, *mean, *rstd, *inp, *w, *b, *R; int N, C; } LnCtx;
static double ln_loss(void *p) {
    LnCtx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    return gc_dot(c->out, c->R, (size_t)c->N * c->C);
}
static int check_layernorm(void) {
    LnCtx c = {.N = 5, .C = 8};
    size_t n = 40;
    c.inp = rnd(n, 5, 2); c.w = rnd(8, 6, 1); c.b = rnd(8, 7, 1); c.R = rnd(n, 8, 1);
    c.out = zeros(n); c.mean = zeros(5); c.rstd = zeros(5);
    ln_loss(&c);
    float *di = zeros(n), *dw = zeros(8), *db = zeros(8);
    layernorm_backward(di, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    int bad = gradcheck("layernorm dinp", ln_loss, &c, c.inp, di, n, 1e-3f, 100);
    bad += gradcheck("layernorm dw", ln_loss, &c, c.w, dw, 8, EPS, 100);
    bad += gradcheck("layernorm db", ln_loss, &c, c.b, db, 8, EPS, 100);
    return bad;
}

/* ---- attention ---- */
typedef struct { float *out, *att, *qkv, *R; int B, T, C, NH, causal; } AttCtx;
static double att_loss(void *p) {
    AttCtx *c = p;
    attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH, c->causal);
    return gc_dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}
static int check_attention(int causal) {
    AttCtx c = {.B = 2, .T = 5, .C = 8, .NH = 2, .causal = causal};
    size_t nq = 2 * 5 * 24, no = 2 * 5 * 8;
    c.qkv = rnd(nq, 9, 1); c.R = rnd(no, 10, 1); c.out = zeros(no); c.att = zeros(2 * 2 * 25);
    att_loss(&c);
    float *dq = zeros(nq);
    attention_backward(dq, c.R, c.qkv, c.att, c.B, c.T, c.C, c.NH, c.causal);
    int bad = gradcheck(causal ? "attention causal dqkv" : "attention dqkv", att_loss, &c, c.qkv, dq, nq, EPS, 240);
    if (causal) { /* the future must not leak: output at t=0 depends only on token 0 */
        float o0 = c.out[0];
        c.qkv[4 * 24 + 1] += 1.0f; /* perturb a key of token 4 */
        att_loss(&c);
        CHECK_NEAR(c.out[0], o0, 0);
    }
    return bad;
}

/* ---- activations ---- */
typedef struct { float *out, *inp, *R; size_t n; int silu; } ActCtx;
static double act_loss(void *p) {
    ActCtx *c = p;
    if (c->silu) silu_forward(c->out, c->inp, c->n); else gelu_forward(c->out, c->inp, c->n);
    return gc_dot(c->out, c->R, c->n);
}
static int check_act(int silu) {
    ActCtx c = {.n = 64, .silu = silu};
    c.inp = rnd(64, 11, 4); c.R = rnd(64, 12, 1); c.out = zeros(64);
    float *di = zeros(64);
    if (silu) silu_backward(di, c.R, c.inp, 64); else gelu_backward(di, c.R, c.inp, 64);
    /* exact-erf GELU: gelu(1) = 0.841344746 */
    float one = 1.0f, g1;
    gelu_forward(&g1, &one, 1);
    CHECK_NEAR(g1, 0.841344746, 1e-6);
    return gradcheck(silu ? "silu" : "gelu", act_loss, &c, c.inp, di, 64, 1e-3f, 64);
}

/* ---- cross-entropy with label smoothing ---- */
typedef struct { float *probs, *logits; int *y; int B, K; float ls; } XeCtx;
static double xe_loss(void *p) {
    XeCtx *c = p;
    return xent_forward(c->probs, c->logits, c->y, c->B, c->K, c->ls, NULL);
}
static int check_xent(void) {
    int y[4] = {0, 3, 2, 4};
    XeCtx c = {.B = 4, .K = 5, .ls = 0.1f, .y = y};
    c.logits = rnd(20, 13, 3); c.probs = zeros(20);
    xe_loss(&c);
    float *dl = zeros(20);
    xent_backward(dl, c.probs, y, 4, 5, 0.1f, 1.0f);
    /* uniform logits: loss = log K whatever the smoothing */
    float z[5] = {0}, pz[5];
    int y0 = 2;
    CHECK_NEAR(xent_forward(pz, z, &y0, 1, 5, 0.3f, NULL), log(5.0), 1e-6);
    return gradcheck("xent", xe_loss, &c, c.logits, dl, 20, 1e-3f, 20);
}

/* ---- tokens + pooling ---- */
typedef struct { float *x, *pe, *cls, *pos, *pooled, *R; int B, NP, D; TokenPool mode; } TokCtx;
static double tok_loss(void *p) {
    TokCtx *c = p;
    tokens_forward(c->x, c->pe, c->cls, c->pos, c->B, c->NP, c->D);
    token_pool_forward(c->pooled, c->x, c->B, c->NP + 1, c->D, c->mode);
    return gc_dot(c->pooled, c->R, (size_t)c->B * c->D);
}
static int check_tokens(TokenPool mode) {
    TokCtx c = {.B = 2, .NP = 4, .D = 3, .mode = mode};
    c.pe = rnd(24, 14, 1); c.cls = rnd(3, 15, 1); c.pos = rnd(15, 16, 1); c.R = rnd(6, 17, 1);
    c.x = zeros(30); c.pooled = zeros(6);
    float *dx = zeros(30), *dpe = zeros(24), *dcls = zeros(3), *dpos = zeros(15);
    token_pool_backward(dx, c.R, 2, 5, 3, mode);
    tokens_backward(dpe, dcls, dpos, dx, 2, 4, 3);
    const char *tag = mode == POOL_CLS ? "tokens+pool_cls" : "tokens+pool_mean";
    char l1[64], l2[64], l3[64];
    snprintf(l1, 64, "%s dpe", tag); snprintf(l2, 64, "%s dpos", tag); snprintf(l3, 64, "%s dcls", tag);
    int bad = 0;
    if (mode == POOL_MEAN) bad += gradcheck(l1, tok_loss, &c, c.pe, dpe, 24, EPS, 24);
    else bad += gradcheck(l3, tok_loss, &c, c.cls, dcls, 3, EPS, 3);
    bad += gradcheck(l2, tok_loss, &c, c.pos, dpos, 15, EPS, 15);
    return bad;
}

/* ---- whole tiny ViT ---- */
typedef struct { ViT *m; Arena *ar; float *img, *logits, *R; int B; } VitCtx;
static double vit_loss(void *p) {
    VitCtx *c = p;
    arena_reset(c->ar);
    vit_forward(c->m, c->logits, c->img, c->B, c->ar);
    return gc_dot(c->logits, c->R, (size_t)c->B * c->m->cfg.n_classes);
}
static int check_set(const char *tag, VitCtx *c, ParamSet *ps) {
    int bad = 0;
    for (int i = 0; i < ps->n; i++) {
        float *g = params_grad(ps, i);
        if (!g) continue;
        char label[PARAM_NAME_MAX + 32];
        snprintf(label, sizeof label, "%s %s", tag, ps->views[i].name);
        float *gcopy = malloc(ps->views[i].numel * sizeof(float));
        memcpy(gcopy, g, ps->views[i].numel * sizeof(float));
        bad += gradcheck(label, vit_loss, c, params_data(ps, i), gcopy, ps->views[i].numel, EPS, 12);
        free(gcopy);
    }
    return bad;
}
static void tiny_vit(ViT *m, int pool) {
    ViTConfig cfg = {.img_size = 8, .in_ch = 2, .patch = 4, .dim = 8, .depth = 2, .heads = 2, .mlp_hidden = 16,
                     .n_classes = 3, .pool = pool, .ln_eps = 1e-6f};
    Error err;
    ASSERTF(vit_build(m, &cfg, &err) == 0, "%s", err.msg);
    vit_init_params(m, 7);
    /* larger weights than the .02 init so every path carries a gradient worth checking */
    for (int i = 0; i < m->params.n; i++) {
        ParamView *v = &m->params.views[i];
        if (!strstr(v->name, "norm")) gc_fill(params_data(&m->params, i), v->numel, -0.5f, 0.5f, 100 + i);
    }
}
static int check_vit(int lora) {
    ViT m;
    tiny_vit(&m, lora ? POOL_MEAN : POOL_CLS);
    Arena ar;
    arena_init(&ar, 1 << 16);
    VitCtx c = {.m = &m, .ar = &ar, .B = 2};
    c.img = rnd(2 * 2 * 64, 20, 1); c.logits = zeros(6); c.R = rnd(6, 21, 1);
    AdapterSet set;
    int bad = 0;
    if (lora) {
        params_set_all_trainable(&m.params, 0);
        params_set_trainable(&m.params, "head.*", 1);
        params_alloc_grads(&m.params);
        const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.1.mlp.fc1"};
        AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = 2, .alpha = 4};
        Error err;
        int n = adapters_attach(&set, m.targets, m.n_targets, &m.params, pats, 3, &spec, 5, &err);
        CHECK_MSG(n == 5, "attached %d adapters: %s", n, n < 0 ? err.msg : "");
        /* B = 0 at init would make dA zero; give B values so both factors are checked */
        for (int i = 0; i < set.params.n; i++) gc_fill(params_data(&set.params, i), set.params.views[i].numel, -0.5f, 0.5f, 50 + i);
        /* a pattern that matches nothing is an error naming the pattern */
        AdapterSet bad_set;
        const char *nope[] = {"blocks.*.attn.query"};
        CHECK(adapters_attach(&bad_set, m.targets, m.n_targets, &m.params, nope, 1, &spec, 5, &err) < 0 &&
              strstr(err.msg, "attn.query"));
        /* overlapping targets (the whole qkv and its q third) are refused and leave the model as it was */
        const char *overlap[] = {"blocks.0.mlp.fc2", "blocks.0.attn.qkv"};
        CHECK(adapters_attach(&bad_set, m.targets, m.n_targets, &m.params, overlap, 2, &spec, 5, &err) < 0 &&
              strstr(err.msg, "overlap"));
        CHECK(m.blocks[0].qkv.n_ad == 2 && m.blocks[0].fc2.n_ad == 0);
    }
    vit_loss(&c);
    vit_backward(&m, c.R, &ar);
    bad += check_set(lora ? "vit_lora" : "vit", &c, &m.params);
    if (lora) {
        bad += check_set("vit_lora", &c, &set.params);
        /* frozen backbone: gradient memory only for the head (3x8 weight -> 32, 3 bias -> 16, 16-float aligned) */
        CHECK_MSG(m.params.n_grad == 48, "n_grad %zu", m.params.n_grad);
    }
    return bad;
}

/* ---- init-time capabilities: taps, full-weight gradients, injected gradients ---- */
typedef struct { float *z; int N; } TapBuf;
static void tap_copy(void *ctx, const LinearSlot *s, const float *inp, const float *out, int N) {
    TapBuf *t = ctx;
    memcpy(t->z, out, sizeof(float) * (size_t)N * s->out);
    t->N = N;
}
typedef struct { VitCtx v; TapBuf *tap; const float *J; size_t nz; } InjCtx;
static double inj_loss(void *p) {
    InjCtx *c = p;
    return vit_loss(&c->v) + gc_dot(c->tap->z, c->J, c->nz);
}
static int check_capabilities(void) {
    ViT m;
    tiny_vit(&m, POOL_CLS);
    Arena ar;
    arena_init(&ar, 1 << 16);
    VitCtx c = {.m = &m, .ar = &ar, .B = 2};
    c.img = rnd(2 * 2 * 64, 20, 1); c.logits = zeros(6); c.R = rnd(6, 21, 1);
    LinearSlot *fc1 = &m.blocks[0].fc1;
    size_t nw = (size_t)fc1->in * fc1->out;
    /* 1. grad_w on a frozen weight == the weight's gradient when it is trainable */
    params_set_all_trainable(&m.params, 0);
    params_set_trainable(&m.params, "blocks.0.mlp.fc1.weight", 1);
    params_alloc_grads(&m.params);
    vit_loss(&c);
    vit_backward(&m, c.R, &ar);
    float *want = malloc(nw * sizeof(float));
    memcpy(want, params_grad(&m.params, fc1->w), nw * sizeof(float));
    params_set_all_trainable(&m.params, 0);
    params_alloc_grads(&m.params);
    fc1->grad_w = zeros(nw);
    vit_loss(&c);
    vit_backward(&m, c.R, &ar); /* nothing trains: backward runs only because grad_w asks for it */
    double e = max_rel_err(fc1->grad_w, want, nw, 1e-6, NULL);
    CHECK_MSG(e < 1e-6, "grad_w differs from the trainable weight's gradient: rel err %.3g", e);
    CHECK(m.params.n_grad == 0);
    free(fc1->grad_w);
    fc1->grad_w = NULL;
    /* 2. the tap sees the slot's input and output of every forward */
    int T = m.T, N = 2 * T;
    TapBuf tb = {.z = zeros((size_t)N * fc1->out)};
    fc1->tap = tap_copy;
    fc1->tap_ctx = &tb;
    vit_loss(&c);
    CHECK(tb.N == N && memcmp(tb.z, m.acts[0].h, sizeof(float) * (size_t)N * fc1->out) == 0);
    /* 3. injected gradient: backward with inject = J gives the gradient of sum(logits R) + sum(z J) */
    params_set_trainable(&m.params, "blocks.0.attn.qkv.weight", 1);
    params_set_trainable(&m.params, "blocks.0.norm2.weight", 1);
    params_alloc_grads(&m.params);
    float *J = rnd((size_t)N * fc1->out, 30, 1);
    fc1->inject = J;
    InjCtx ic = {.v = c, .tap = &tb, .J = J, .nz = (size_t)N * fc1->out};
    inj_loss(&ic);
    vit_backward(&m, c.R, &ar);
    fc1->inject = NULL; /* the FD loss adds sum(z J) itself */
    int bad = 0;
    for (int i = 0; i < m.params.n; i++) {
        float *g = params_grad(&m.params, i);
        if (!g) continue;
        size_t n = m.params.views[i].numel;
        float *gc = malloc(n * sizeof(float));
        memcpy(gc, g, n * sizeof(float));
        char label[PARAM_NAME_MAX + 16];
        snprintf(label, sizeof label, "inject %s", m.params.views[i].name);
        bad += gradcheck(label, inj_loss, &ic, params_data(&m.params, i), gc, n, EPS, 24);
        free(gc);
    }
    fc1->tap = NULL;
    free(want); free(tb.z); free(J);
    arena_free(&ar);
    vit_free(&m);
    return bad;
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "all";
    int all = !strcmp(w, "all"), bad = 0;
    if (all || !strcmp(w, "linear")) bad += check_linear();
    if (all || !strcmp(w, "layernorm")) bad += check_layernorm();
    if (all || !strcmp(w, "attention")) bad += check_attention(0);
    if (all || !strcmp(w, "attention_causal")) bad += check_attention(1);
    if (all || !strcmp(w, "gelu")) bad += check_act(0);
    if (all || !strcmp(w, "silu")) bad += check_act(1);
    if (all || !strcmp(w, "xent")) bad += check_xent();
    if (all || !strcmp(w, "tokens_cls")) bad += check_tokens(POOL_CLS);
    if (all || !strcmp(w, "tokens_mean")) bad += check_tokens(POOL_MEAN);
    if (all || !strcmp(w, "vit")) bad += check_vit(0);
    if (all || !strcmp(w, "vit_lora")) bad += check_vit(1);
    if (all || !strcmp(w, "capabilities")) bad += check_capabilities();
    test_checks++;
    if (bad) test_failures++;
    return test_finish(w);
}
