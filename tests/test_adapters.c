/* tests/test_adapters.c: the DoRA and LoRA-XS adapter kinds. Usage: test_adapters <check>.
 *   grad_dora, grad_lora_xs: finite differences of L = sum(out * R) (R fixed random, double sums) against the
 *     backward, for every trainable adapter tensor and the input gradient, (1) on one LinearSlot with the
 *     adapter on a row slice (rows 8..11 of a 12-row host, like the v third of a fused qkv; dinp checked
 *     directly) and (2) inside a whole tiny ViT (q and v thirds of every qkv + blocks.1.mlp.fc1; the
 *     patch embedding is trainable, so its gradient checks the input-gradient chain through every adapted
 *     layer). Also: delta_weight reproduces the forward (x (W0 + dW)^T + b equals the adapted output).
 *   DoRA's backward detaches the row norm (METHODS.md; the paper and PEFT), so its dA, dB are NOT the
 *   derivatives of the forward. The FD reference is therefore the loss with the norm held fixed: the test
 *   swaps in a copy of ADAPTER_DORA whose forward is dora_forward_with_norm() with the norms captured at the
 *   checked point (same value there, exact derivative = the detached formula). dmag and dinp do not go
 *   through the norm, so they are also checked against the real (recomputed-norm) forward. ref_dora checks
 *   the same detached gradients independently against PyTorch autograd of PEFT's forward.
 *   adapter_dora_init: at default init (B = 0) the DoRA model's logits equal the base model's (1e-6) and
 *     mag == ||W0||_row.
 *   adapter_lora_xs_frozen: A and B get no gradient memory (params_grad NULL), only R; an AdamW step
 *     changes R and leaves A, B bit-identical.
 *   ref_dora: forward (<= 1e-5 rel.) and gradients (<= 1e-4 rel.) against tests/fixtures/dora_ref.safetensors
 *     (scripts/make_adapter_fixtures.py). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/linear.h"
#include "core/optim.h"
#include "core/safetensors.h"
#include "core/vit.h"
#include "gradcheck.h"
#include "methods/dora.h"
#include "methods/lora_xs.h"
#include "testlib.h"

#define EPS 1e-2f
static float *rnd(size_t n, unsigned seed, float s) { return gc_filled(n, -s, s, seed); }
/* ---- DoRA with its norms held fixed (the FD reference of the detached backward) ---- */
#define MAX_FROZEN 16
static struct { Adapter *a; float *norm; } frozen[MAX_FROZEN];
static int n_frozen;
static AdapterKind FROZEN_DORA;
static void frozen_forward(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar) {
    for (int i = 0; i < n_frozen; i++)
        if (frozen[i].a == a) { dora_forward_with_norm(a, out, ldo, inp, N, ar, frozen[i].norm); return; }
    ASSERTF(0, "no frozen norm for %s", a->target);
}
/* Capture every DoRA adapter's norms at the current point and swap in the frozen-norm forward. */
static void freeze_norms(AdapterSet *set) {
    FROZEN_DORA = ADAPTER_DORA;
    FROZEN_DORA.forward = frozen_forward;
    for (int i = 0; i < set->n; i++) {
        ASSERT(n_frozen < MAX_FROZEN);
        Adapter *a = &set->a[i];
        frozen[n_frozen].a = a;
        frozen[n_frozen].norm = malloc((size_t)a->m * sizeof(float));
        dora_row_norms(a, frozen[n_frozen++].norm);
        a->kind = &FROZEN_DORA;
    }
}
static void unfreeze_norms(AdapterSet *set) {
    for (int i = 0; i < set->n; i++) set->a[i].kind = &ADAPTER_DORA;
    for (int i = 0; i < n_frozen; i++) free(frozen[i].norm);
    n_frozen = 0;
}

/* Give the adapter tensors values so that every path carries a gradient (B = 0 or R = 0 would zero some). */
static void randomize(AdapterSet *set, unsigned seed) {
    for (int i = 0; i < set->params.n; i++) {
        ParamView *v = &set->params.views[i];
        int mag = strstr(v->name, "magnitude") != NULL;
        gc_fill(params_data(&set->params, i), v->numel, mag ? 0.5f : -0.5f, mag ? 1.5f : 0.5f, seed + (unsigned)i);
    }
}

/* Checks every trainable tensor of ps against FD of f (the adapter's own gradient labels). */
static int check_set(const char *tag, GcLossFn f, void *ctx, ParamSet *ps, int max_checks) {
    int bad = 0;
    for (int i = 0; i < ps->n; i++) {
        float *g = params_grad(ps, i);
        if (!g) continue;
        char label[PARAM_NAME_MAX + 32];
        snprintf(label, sizeof label, "%s %s", tag, ps->views[i].name);
        float *gcopy = malloc(ps->views[i].numel * sizeof(float));
        memcpy(gcopy, g, ps->views[i].numel * sizeof(float));
        bad += gradcheck(label, f, ctx, params_data(ps, i), gcopy, ps->views[i].numel, EPS, max_checks);
        free(gcopy);
    }
    return bad;
}

/* Central difference of f in x[0]. */
static double fd1(GcLossFn f, void *ctx, float *x) {
    float x0 = x[0];
    x[0] = x0 + EPS;
    double fp = f(ctx);
    x[0] = x0 - EPS;
    double fm = f(ctx);
    x[0] = x0;
    return (fp - fm) / (2.0 * EPS);
}

/* ---- one LinearSlot, adapter on rows [8, 12) of a 12 x 6 host ---- */
enum { S_N = 5, S_IN = 6, S_M = 4, S_OUT = 12, S_ROW0 = 8 };
typedef struct {
    ParamSet host;
    LinearSlot slot;
    AdapterTarget tg;
    AdapterSet set;
    Arena ar;
    float *inp, *out, *R;
} SlotCtx;
static double slot_loss(void *p) {
    SlotCtx *c = p;
    arena_reset(&c->ar);
    linear_slot_forward(&c->slot, &c->host, c->out, c->inp, S_N, &c->ar);
    return gc_dot(c->out, c->R, (size_t)S_N * S_OUT);
}
static void slot_build(SlotCtx *c, const AdapterKind *kind, int r, float alpha) {
    memset(c, 0, sizeof *c);
    params_init(&c->host);
    int64_t sw[2] = {S_OUT, S_IN}, sb[1] = {S_OUT};
    int w = params_add(&c->host, "lin.weight", 2, sw, 1), b = params_add(&c->host, "lin.bias", 1, sb, 0);
    params_finalize(&c->host);
    params_set_all_trainable(&c->host, 0); /* the host is frozen (DoRA requires it) */
    params_alloc_grads(&c->host);
    gc_fill(params_data(&c->host, w), S_OUT * S_IN, -0.5f, 0.5f, 1);
    gc_fill(params_data(&c->host, b), S_OUT, -0.5f, 0.5f, 2);
    c->slot = (LinearSlot){.w = w, .b = b, .in = S_IN, .out = S_OUT};
    c->tg = (AdapterTarget){.name = "lin:v", .slot = &c->slot, .row0 = S_ROW0, .rows = S_M};
    const char *pats[] = {"lin:v"};
    AdapterSpec spec = {.kind = kind, .r = r, .alpha = alpha};
    Error err;
    int n = adapters_attach(&c->set, &c->tg, 1, &c->host, pats, 1, &spec, 3, &err);
    ASSERTF(n == 1, "attach: %s", err.msg);
    arena_init(&c->ar, 1 << 14);
    c->inp = rnd(S_N * S_IN, 4, 1);
    c->out = calloc(S_N * S_OUT, sizeof(float));
    c->R = rnd(S_N * S_OUT, 5, 1);
}
static void slot_free(SlotCtx *c) {
    adapters_free(&c->set, &c->tg, 1);
    params_free(&c->host);
    arena_free(&c->ar);
    free(c->inp);
    free(c->out);
    free(c->R);
}
/* x (W0 + dW)^T + b on the slice equals the adapted forward's output there. */
static void check_delta_weight(SlotCtx *c, const char *tag) {
    Adapter *a = &c->set.a[0];
    float *Wp = malloc((size_t)S_M * S_IN * sizeof(float)), *y = malloc((size_t)S_N * S_M * sizeof(float));
    a->kind->delta_weight(a, Wp);
    for (int i = 0; i < S_M * S_IN; i++) Wp[i] += a->W0[i];
    linear_forward(y, c->inp, Wp, a->bias, S_N, S_IN, S_M);
    slot_loss(c);
    double worst = 0;
    for (int t = 0; t < S_N; t++)
        for (int i = 0; i < S_M; i++) worst = fmax(worst, fabs(y[t * S_M + i] - c->out[t * S_OUT + S_ROW0 + i]));
    printf("%s delta_weight vs forward: max abs err %.3g\n", tag, worst);
    CHECK_MSG(worst <= 1e-5, "%s: x (W0 + dW)^T + b differs from the adapted output by %g", tag, worst);
    free(Wp);
    free(y);
}
static int check_slot(const AdapterKind *kind) {
    int dora = kind == &ADAPTER_DORA, bad = 0;
    SlotCtx c;
    slot_build(&c, kind, 2, 4);
    randomize(&c.set, 60);
    check_delta_weight(&c, kind->name);
    if (dora) freeze_norms(&c.set);
    float *dinp = calloc(S_N * S_IN, sizeof(float));
    slot_loss(&c);
    params_zero_grad(&c.set.params);
    linear_slot_backward(&c.slot, &c.host, dinp, c.R, c.inp, S_N, &c.ar);
    char tag[64];
    snprintf(tag, sizeof tag, "%s slot", kind->name);
    bad += check_set(tag, slot_loss, &c, &c.set.params, 40);
    snprintf(tag, sizeof tag, "%s slot dinp", kind->name);
    bad += gradcheck(tag, slot_loss, &c, c.inp, dinp, S_N * S_IN, EPS, 40);
    if (dora) { /* dmag and dinp do not go through the norm: exact against the real forward too */
        Adapter *a = &c.set.a[0];
        float *A = params_data(&c.set.params, a->t[DORA_A]), gA = params_grad(&c.set.params, a->t[DORA_A])[0];
        double fd_fixed = fd1(slot_loss, &c, A), fd_real;
        unfreeze_norms(&c.set);
        fd_real = fd1(slot_loss, &c, A);
        /* the detach is real: through the recomputed norm dA[0] differs (else this test could not tell) */
        printf("dora slot dA[0]: analytic %.6g, FD norm fixed %.6g, FD norm recomputed %.6g\n", gA, fd_fixed, fd_real);
        CHECK(fabs(fd_real - gA) > 10 * fabs(fd_fixed - gA) + 1e-3);
        int im = a->t[DORA_MAG];
        bad += gradcheck("dora slot (recomputed norm) dmag", slot_loss, &c, params_data(&c.set.params, im),
                         params_grad(&c.set.params, im), S_M, EPS, 40);
        bad += gradcheck("dora slot (recomputed norm) dinp", slot_loss, &c, c.inp, dinp, S_N * S_IN, EPS, 40);
    }
    if (!dora) { /* A, B are frozen by default; made trainable, their gradients are right too */
        params_set_all_trainable(&c.set.params, 1);
        params_alloc_grads(&c.set.params);
        slot_loss(&c);
        linear_slot_backward(&c.slot, &c.host, NULL, c.R, c.inp, S_N, &c.ar);
        bad += check_set("lora_xs slot (A, B trainable)", slot_loss, &c, &c.set.params, 40);
    }
    free(dinp);
    slot_free(&c);
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
static void tiny_vit(ViT *m) {
    ViTConfig cfg = {.img_size = 8, .in_ch = 2, .patch = 4, .dim = 8, .depth = 2, .heads = 2, .mlp_hidden = 16,
                     .n_classes = 3, .pool = POOL_MEAN, .ln_eps = 1e-6f};
    Error err;
    ASSERTF(vit_build(m, &cfg, &err) == 0, "%s", err.msg);
    vit_init_params(m, 7);
    for (int i = 0; i < m->params.n; i++) { /* larger than the .02 init so every path carries a gradient */
        ParamView *v = &m->params.views[i];
        if (!strstr(v->name, "norm")) gc_fill(params_data(&m->params, i), v->numel, -0.5f, 0.5f, 100 + i);
    }
}
static const char *VIT_PATS[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.1.mlp.fc1"};
static int check_vit(const AdapterKind *kind) {
    int dora = kind == &ADAPTER_DORA, bad = 0;
    ViT m;
    tiny_vit(&m);
    Arena ar;
    arena_init(&ar, 1 << 16);
    VitCtx c = {.m = &m, .ar = &ar, .B = 2};
    c.img = rnd(2 * 2 * 64, 20, 1);
    c.logits = calloc(6, sizeof(float));
    c.R = rnd(6, 21, 1);
    params_set_all_trainable(&m.params, 0);
    params_set_trainable(&m.params, "head.*", 1);
    params_set_trainable(&m.params, "patch_embed.*", 1); /* upstream of every adapter: checks their dinp */
    params_alloc_grads(&m.params);
    AdapterSet set;
    AdapterSpec spec = {.kind = kind, .r = 2, .alpha = 4};
    Error err;
    int n = adapters_attach(&set, m.targets, m.n_targets, &m.params, VIT_PATS, 3, &spec, 5, &err);
    CHECK_MSG(n == 5, "attached %d adapters: %s", n, n < 0 ? err.msg : "");
    randomize(&set, 50);
    if (dora) freeze_norms(&set);
    vit_loss(&c);
    vit_backward(&m, c.R, &ar);
    char tag[64];
    snprintf(tag, sizeof tag, "%s vit", kind->name);
    bad += check_set(tag, vit_loss, &c, &m.params, 12);
    bad += check_set(tag, vit_loss, &c, &set.params, 12);
    if (dora) unfreeze_norms(&set);
    adapters_free(&set, m.targets, m.n_targets);
    vit_free(&m);
    arena_free(&ar);
    free(c.img);
    free(c.logits);
    free(c.R);
    return bad;
}

/* ---- DoRA at init keeps the function; mag = ||W0||_row ---- */
static void check_dora_init(void) {
    ViT m;
    tiny_vit(&m);
    Arena ar;
    arena_init(&ar, 1 << 16);
    float *img = rnd(2 * 2 * 64, 20, 1), base[6], ad[6];
    vit_forward(&m, base, img, 2, &ar);
    AdapterSet set;
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.*.attn.proj", "blocks.*.mlp.fc*",
                          "head"};
    AdapterSpec spec = {.kind = &ADAPTER_DORA, .r = 2, .alpha = 4};
    Error err;
    int n = adapters_attach(&set, m.targets, m.n_targets, &m.params, pats, 5, &spec, 5, &err);
    CHECK_MSG(n == 11, "attached %d: %s", n, n < 0 ? err.msg : "");
    arena_reset(&ar);
    vit_forward(&m, ad, img, 2, &ar);
    double worst = 0, wmag = 0;
    for (int i = 0; i < 6; i++) worst = fmax(worst, fabs(ad[i] - base[i]));
    for (int k = 0; k < set.n; k++) {
        Adapter *a = &set.a[k];
        const float *mag = params_data(a->ps, a->t[DORA_MAG]);
        for (int i = 0; i < a->m; i++) {
            double s = 0;
            for (int j = 0; j < a->n; j++) s += (double)a->W0[(size_t)i * a->n + j] * a->W0[(size_t)i * a->n + j];
            wmag = fmax(wmag, fabs(mag[i] - sqrt(s)) / sqrt(s));
        }
    }
    printf("dora init: max |logits - base logits| %.3g, max rel |mag - ||W0||_row| %.3g\n", worst, wmag);
    CHECK_MSG(worst <= 1e-6, "DoRA at init changed the logits by %g", worst);
    CHECK_MSG(wmag <= 1e-6, "mag differs from ||W0||_row by %g (relative)", wmag);
    adapters_free(&set, m.targets, m.n_targets);
    vit_free(&m);
    arena_free(&ar);
    free(img);
}

/* ---- LoRA-XS: only R trains ---- */
static void check_lora_xs_frozen(void) {
    ViT m;
    tiny_vit(&m);
    params_set_all_trainable(&m.params, 0);
    params_alloc_grads(&m.params);
    Arena ar;
    arena_init(&ar, 1 << 16);
    AdapterSet set;
    AdapterSpec spec = {.kind = &ADAPTER_LORA_XS, .r = 2, .alpha = 4};
    Error err;
    int n = adapters_attach(&set, m.targets, m.n_targets, &m.params, VIT_PATS, 3, &spec, 5, &err);
    CHECK_MSG(n == 5, "attached %d: %s", n, n < 0 ? err.msg : "");
    ParamSet *ps = &set.params;
    for (int k = 0; k < set.n; k++) {
        Adapter *a = &set.a[k];
        CHECK_MSG(!params_grad(ps, a->t[LORA_XS_A]) && !params_grad(ps, a->t[LORA_XS_B]),
                  "%s: A or B has gradient memory", a->target);
        CHECK_MSG(params_grad(ps, a->t[LORA_XS_R]) != NULL, "%s: R has no gradient", a->target);
        CHECK(!strcmp(ps->views[a->t[LORA_XS_R]].name + strlen(a->target), ".lora_R"));
    }
    CHECK_MSG(ps->n_grad == (size_t)set.n * 16, "n_grad %zu: only the 2x2 R's (16-float aligned)", ps->n_grad);
    float *before = malloc(ps->numel * sizeof(float));
    memcpy(before, ps->data, ps->numel * sizeof(float));
    float *img = rnd(2 * 2 * 64, 20, 1), logits[6], *R = rnd(6, 21, 1);
    vit_forward(&m, logits, img, 2, &ar);
    vit_backward(&m, R, &ar);
    Optimizer o;
    OptConfig oc = {.kind = OPT_ADAMW, .lr = 1e-2f, .weight_decay = 0.1f, .decay_all = 1};
    ParamSet *sets[] = {ps};
    optim_init(&o, &oc, sets, 1);
    optim_step(&o, oc.lr);
    for (int i = 0; i < ps->n; i++) {
        const ParamView *v = &ps->views[i];
        int changed = memcmp(before + v->offset, ps->data + v->offset, v->numel * sizeof(float)) != 0;
        int is_r = strstr(v->name, ".lora_R") != NULL;
        CHECK_MSG(changed == is_r, "%s %s by the step", v->name, changed ? "changed" : "unchanged");
    }
    optim_free(&o);
    adapters_free(&set, m.targets, m.n_targets);
    vit_free(&m);
    arena_free(&ar);
    free(before);
    free(img);
    free(R);
}

/* ---- DoRA against PyTorch (PEFT's forward, norm detached) ---- */
static double rel_report(const char *what, const float *a, const float *b, size_t n, double tol) {
    size_t at;
    double e = max_rel_err(a, b, n, 1e-12, &at);
    printf("ref_dora %s: max rel err %.3g (at %zu)\n", what, e, at);
    CHECK_MSG(e <= tol, "%s: rel err %g > %g", what, e, tol);
    return e;
}
static void check_ref_dora(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/dora_ref.safetensors", TEST_FIXTURE_DIR);
    SafeTensors st;
    Error err;
    if (st_open(&st, path, &err)) { fprintf(stderr, "%s\n", err.msg); CHECK(0); return; }
    SlotCtx c;
    slot_build(&c, &ADAPTER_DORA, 2, 4); /* the fixture's layer: 12 x 6 host, v rows 8..11, r 2, alpha 4 */
    Adapter *a = &c.set.a[0];
    ParamSet *ps = &c.set.params;
    float out[S_N * S_OUT], gx[S_N * S_IN], gA[2 * S_IN], gB[S_M * 2], gm[S_M], norm[S_M], rnorm[S_M];
    struct { const char *name; float *dst; int64_t n; } rd[] = {
        {"lin.weight", params_data(&c.host, c.slot.w), S_OUT * S_IN},
        {"lin.bias", params_data(&c.host, c.slot.b), S_OUT},
        {"lora_A", params_data(ps, a->t[DORA_A]), 2 * S_IN}, {"lora_B", params_data(ps, a->t[DORA_B]), S_M * 2},
        {"lora_magnitude_vector", params_data(ps, a->t[DORA_MAG]), S_M}, {"input.x", c.inp, S_N * S_IN},
        {"loss.R", c.R, S_N * S_OUT}, {"out", out, S_N * S_OUT}, {"weight_norm", rnorm, S_M},
        {"grad.x", gx, S_N * S_IN}, {"grad.lora_A", gA, 2 * S_IN}, {"grad.lora_B", gB, S_M * 2},
        {"grad.lora_magnitude_vector", gm, S_M},
    };
    int ok = 1;
    for (size_t i = 0; ok && i < sizeof rd / sizeof rd[0]; i++)
        ok = !st_read_f32(&st, rd[i].name, rd[i].dst, rd[i].n, &err);
    CHECK_MSG(ok, "%s", err.msg);
    if (ok) {
        dora_row_norms(a, norm);
        rel_report("weight_norm", norm, rnorm, S_M, 1e-5);
        slot_loss(&c);
        rel_report("out", c.out, out, S_N * S_OUT, 1e-5);
        float dinp[S_N * S_IN] = {0};
        params_zero_grad(ps);
        linear_slot_backward(&c.slot, &c.host, dinp, c.R, c.inp, S_N, &c.ar);
        rel_report("grad.x", dinp, gx, S_N * S_IN, 1e-4);
        rel_report("grad.lora_A", params_grad(ps, a->t[DORA_A]), gA, 2 * S_IN, 1e-4);
        rel_report("grad.lora_B", params_grad(ps, a->t[DORA_B]), gB, S_M * 2, 1e-4);
        rel_report("grad.lora_magnitude_vector", params_grad(ps, a->t[DORA_MAG]), gm, S_M, 1e-4);
        /* The same layer run by PEFT itself (scripts/make_peft_act_fixtures.py): its v rows as their own
         * nn.Linear with use_dora, loss sum(out_v * R_v). */
        SafeTensors pf;
        snprintf(path, sizeof path, "%s/peft_act_ref.safetensors", TEST_FIXTURE_DIR);
        if (st_open(&pf, path, &err)) { fprintf(stderr, "%s\n", err.msg); CHECK(0); }
        else {
            float pout[S_N * S_M], mine[S_N * S_M];
            ok = !st_read_f32(&pf, "dora.out_v", pout, S_N * S_M, &err) &&
                 !st_read_f32(&pf, "dora.grad.lora_A", gA, 2 * S_IN, &err) &&
                 !st_read_f32(&pf, "dora.grad.lora_B", gB, S_M * 2, &err) &&
                 !st_read_f32(&pf, "dora.grad.lora_magnitude_vector", gm, S_M, &err);
            CHECK_MSG(ok, "%s", err.msg);
            for (int i = 0; ok && i < S_N; i++)
                for (int j = 0; j < S_M; j++) mine[i * S_M + j] = c.out[i * S_OUT + S_ROW0 + j];
            if (ok) {
                rel_report("PEFT out_v", mine, pout, S_N * S_M, 1e-5);
                rel_report("PEFT grad.lora_A", params_grad(ps, a->t[DORA_A]), gA, 2 * S_IN, 1e-4);
                rel_report("PEFT grad.lora_B", params_grad(ps, a->t[DORA_B]), gB, S_M * 2, 1e-4);
                rel_report("PEFT grad.lora_magnitude_vector", params_grad(ps, a->t[DORA_MAG]), gm, S_M, 1e-4);
            }
            st_close(&pf);
        }
    }
    slot_free(&c);
    st_close(&st);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "all";
    int all = !strcmp(w, "all"), bad = 0;
    if (all || !strcmp(w, "grad_dora")) bad += check_slot(&ADAPTER_DORA) + check_vit(&ADAPTER_DORA);
    if (all || !strcmp(w, "grad_lora_xs")) bad += check_slot(&ADAPTER_LORA_XS) + check_vit(&ADAPTER_LORA_XS);
    if (all || !strcmp(w, "dora_init")) check_dora_init();
    if (all || !strcmp(w, "lora_xs_frozen")) check_lora_xs_frozen();
    if (all || !strcmp(w, "ref_dora")) check_ref_dora();
    test_checks++;
    if (bad) test_failures++;
    return test_finish(w);
}
