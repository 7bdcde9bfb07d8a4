/* tests/test_init_grad.c: the gradient-based initializers LoRA-GA and LoRA-SB (METHODS.md, LoRA-GA; LoRA-XS and
 * LoRA-SB), on a tiny ViT fed by a synthetic InitData (fixed random images and labels).
 *   init_lora_ga        tiny ViT q and v, r 8: logits kept (1e-5 rel), new W0 + s B A = old W0, A A^T = B^T B =
 *                       c^2 I (c = m^{1/4} / sqrt 16), A's rows in G's top-r right singular space, B's columns in
 *                       the span of G's left singular vectors r+1..2r (G recomputed here with init_full_grads)
 *   init_lora_sb        tiny ViT q and v, LoRA-XS r 8: B^T B = A A^T = I, s B R A = the rank-r truncation of
 *                       -lr_1 sign(G) (AdamW) and of -lr_1 G (SGD), W0 bit-for-bit unchanged, the logits move;
 *                       variants: noisy with noise 0 = estimate, noisy moves away, kaiming needs no data
 *   init_grad_bad_input no data / exhausted data, 2r > min(m, n) for LoRA-GA (names the layer; W0 untouched),
 *                       wrong adapter kinds, bad options (gamma, variant, lr 0), rank > min(m, n) for LoRA-SB
 *   ref_init_lora_ga, ref_init_lora_sb  the per-layer formulas (methods/init_grad.h) against
 *                       scripts/make_grad_init_fixtures.py (tests/fixtures/init_grad_ref.safetensors, float64
 *                       re-implementations of the official code paths) on a given G, tall 24 x 16 and wide
 *                       16 x 24, r 4, alpha 8: <= 1e-4 relative with singular-vector signs normalised
 * The initializers are called through their InitKind tables directly (so the tests do not depend on the
 * registry), timed like init_run. init_lora_ga / init_lora_sb print the init time on the tiny ViT (d 64,
 * depth 4, q and v of every block, r 8, 8 init batches of 32) quoted in docs/methods.md. */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/vit.h"
#include "gradcheck.h"
#include "methods/init.h"
#include "methods/init_data.h"
#include "methods/init_grad.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "testlib.h"
#include "testmodels.h"

extern const InitKind INIT_LORA_GA, INIT_LORA_SB;

/* The small ViT of the base initializers' tests: q (32 x 32), fc1 (64 x 32), fc2 (32 x 64). */


static void teardown(Model *m, AdapterSet *ad) {
    adapters_free(ad, m->targets, m->n_targets);
    model_free(m);
}

/* ---- synthetic init data: batch i is a fixed function of i (images U(-1, 1), labels uniform over K) ---- */
typedef struct Synth {
    int per, K, avail; /* values per image, classes, batches available */
} Synth;

static int synth_batch(void *p, int i, int B, float *x, int *y) {
    const Synth *s = p;
    if (i >= s->avail) return 0;
    uint64_t st = rng_stream("test.init_grad", (uint64_t)i, 0);
    rng_fill_uniform(x, (size_t)B * s->per, -1.0f, 1.0f, 77, st);
    for (int k = 0; k < B; k++) y[k] = (int)(rng_uniform(78, st, (uint64_t)k) * s->K) % s->K;
    return B;
}

static InitContext context(Model *m, AdapterSet *ad, Synth *sd) {
    *sd = (Synth){.per = m->in_ch * m->img_h * m->img_w, .K = m->n_classes, .avail = 1000};
    return (InitContext){.model = m, .set = ad, .seed = 11,
                         .data = {.batch = synth_batch, .ctx = sd, .n_images = 1000 * 32},
                         .batch = 32, .n_batches = 8, .lr = 1e-2f, .warmup_frac = 0.1f, .total_steps = 100,
                         .adamw = 1};
}

/* init_run's timing, without going through the registry. */
static int run(const InitKind *k, InitContext *ctx, InitResult *res, Error *err) {
    memset(res, 0, sizeof *res);
    double t0 = now_seconds();
    int rc = k->run(ctx, res, err);
    res->wall_s = now_seconds() - t0;
    return rc;
}

/* The model's logits (2, K) on a fixed input. */
static void logits(Model *m, float *out) {
    size_t nx = (size_t)2 * m->in_ch * m->img_h * m->img_w;
    float *x = malloc(nx * sizeof(float));
    gc_fill(x, nx, -1, 1, 5);
    Arena ar;
    arena_init(&ar, 1 << 16);
    model_forward(m, out, x, 2, 0, &ar);
    arena_free(&ar);
    free(x);
}

static float **copy_w0(const AdapterSet *ad) {
    float **old = malloc(sizeof(float *) * ad->n);
    for (int i = 0; i < ad->n; i++) {
        size_t mn = (size_t)ad->a[i].m * ad->a[i].n;
        old[i] = malloc(sizeof(float) * mn);
        memcpy(old[i], ad->a[i].W0, sizeof(float) * mn);
    }
    return old;
}

static void free_all(float **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
}

/* max |G - c2 I| over the Gram matrix of r vectors of length len, vector c's entry t at X[t * ts + c * cs]
 * (B's columns: ts = r, cs = 1; A's rows: ts = 1, cs = n). */
static double gram_err(const float *X, int r, int len, int ts, int cs, double c2) {
    double worst = 0;
    for (int c = 0; c < r; c++)
        for (int e = 0; e < r; e++) {
            double g = 0;
            for (int t = 0; t < len; t++) g += (double)X[(size_t)t * ts + (size_t)c * cs] * X[(size_t)t * ts + (size_t)e * cs];
            worst = fmax(worst, fabs(g - (c == e ? c2 : 0.0)));
        }
    return worst;
}

/* max |X - P X| where X is r vectors (as in gram_err) and P projects onto the span of the q orthonormal
 * vectors Q[t * qts + j * qcs], j = 0..q-1. */
static double out_of_span(const float *X, int r, int len, int ts, int cs, const float *Q, int q, int qts, int qcs) {
    double worst = 0;
    double *coef = malloc(sizeof(double) * q);
    for (int c = 0; c < r; c++) {
        for (int j = 0; j < q; j++) {
            double d = 0;
            for (int t = 0; t < len; t++) d += (double)Q[(size_t)t * qts + (size_t)j * qcs] * X[(size_t)t * ts + (size_t)c * cs];
            coef[j] = d;
        }
        for (int t = 0; t < len; t++) {
            double p = 0;
            for (int j = 0; j < q; j++) p += coef[j] * Q[(size_t)t * qts + (size_t)j * qcs];
            worst = fmax(worst, fabs(X[(size_t)t * ts + (size_t)c * cs] - p));
        }
    }
    free(coef);
    return worst;
}

static double median5(double *t) {
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double s = t[j]; t[j] = t[j - 1]; t[j - 1] = s; }
    return t[2];
}

/* The init time the docs table quotes: the tiny ViT, q and v of its 4 blocks, r 8, 8 init batches of 32. The
 * model and adapter parameters are restored before every call (LoRA-GA moves W0; a second call on the moved
 * W0 would not keep the function). Median of 5 calls after a first one. */
static void time_on_tiny_vit(const InitKind *k, const AdapterKind *kind) {
    Model m;
    AdapterSet ad;
    Synth sd;
    test_build_adapted(&m, &ad, &TEST_TINY_VIT, TEST_QV, 2, kind, 8);
    InitContext ctx = context(&m, &ad, &sd);
    size_t nm = m.params->numel, na = ad.params.numel;
    float *pm = malloc(sizeof(float) * nm), *pa = malloc(sizeof(float) * na);
    memcpy(pm, m.params->data, sizeof(float) * nm);
    memcpy(pa, ad.params.data, sizeof(float) * na);
    InitResult res;
    Error err;
    double t[5], first = 0;
    for (int i = 0; i < 6; i++) {
        memcpy(m.params->data, pm, sizeof(float) * nm);
        memcpy(ad.params.data, pa, sizeof(float) * na);
        CHECK_MSG(run(k, &ctx, &res, &err) == 0, "%s", err.msg);
        if (i == 0) first = res.wall_s;
        else t[i - 1] = res.wall_s;
    }
    /* the share of the gradient pass (init_full_grads alone, same batches) */
    double tg[5];
    float **G = malloc(sizeof(float *) * ad.n);
    for (int i = 0; i < ad.n; i++) G[i] = malloc(sizeof(float) * ad.a[i].m * ad.a[i].n);
    for (int i = 0; i < 5; i++) {
        double t0 = now_seconds();
        CHECK(init_full_grads(&ctx, ctx.n_batches, G, &err) == ctx.n_batches);
        tg[i] = now_seconds() - t0;
    }
    free_all(G, ad.n);
    printf("%s: init time on the tiny ViT (d 64, depth 4, q and v of every block: %d adapters of %d x %d, r 8, "
           "%d init batches of %d): first call %.1f ms, median of 5 more %.1f ms (the gradient pass alone: %.1f ms)\n",
           k->name, ad.n, ad.a[0].m, ad.a[0].n, ctx.n_batches, ctx.batch, first * 1e3, median5(t) * 1e3,
           median5(tg) * 1e3);
    free(pm);
    free(pa);
    teardown(&m, &ad);
}

/* G[i] for every adapter, as the initializers see it (same data, same weights). */
static float **grads(InitContext *ctx) {
    float **G = malloc(sizeof(float *) * ctx->set->n);
    for (int i = 0; i < ctx->set->n; i++) G[i] = malloc(sizeof(float) * ctx->set->a[i].m * ctx->set->a[i].n);
    Error err;
    int nb = init_full_grads(ctx, ctx->n_batches, G, &err);
    ASSERTF(nb == ctx->n_batches, "init_full_grads: %d batches (%s)", nb, nb < 0 ? err.msg : "");
    return G;
}

/* svd NULL: the exact SVD (the checks to 1e-4); "lowrank": the randomized one with the official q = 4r, niter 4,
 * whose subspaces on these 64 x 64 gradients (q = 32 of 64) converge: checked to the same tolerances. */
static void check_lora_ga_svd(const char *svd) {
    Model m;
    AdapterSet ad;
    Synth sd;
    test_build_adapted(&m, &ad, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 8);
    InitContext ctx = context(&m, &ad, &sd);
    const char *opts[] = {"svd", svd};
    if (svd) ctx.opts = opts, ctx.n_opts = 1;
    int K = m.n_classes;
    float before[20], after[20];
    logits(&m, before);
    float **old = copy_w0(&ad), **G = grads(&ctx);
    InitResult res;
    Error err;
    CHECK_MSG(run(&INIT_LORA_GA, &ctx, &res, &err) == 0, "%s", err.msg);
    if (init_find("lora_ga")) CHECK(init_find("lora_ga") == &INIT_LORA_GA);
    double e_rec = 0, e_a = 0, e_b = 0, e_sa = 0, e_sb = 0, gap = INFINITY, gnorm = INFINITY;
    for (int i = 0; i < ad.n; i++) {
        Adapter *a = &ad.a[i];
        int mm = a->m, n = a->n, r = a->r, k = MIN(mm, n);
        size_t mn = (size_t)mm * n;
        const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        double c = pow(mm, 0.25) / 4.0, c2 = c * c; /* gamma 16 */
        float *U = malloc(sizeof(float) * (size_t)mm * k), *S = malloc(sizeof(float) * k);
        float *Vt = malloc(sizeof(float) * (size_t)k * n), *W = malloc(sizeof(float) * mn);
        ASSERTF(la_svd(U, S, Vt, G[i], mm, n, &err) == 0, "%s", err.msg);
        gnorm = fmin(gnorm, S[0]);
        /* relative gaps at the subspace boundaries the checks rely on (r | r+1 and 2r | 2r+1) */
        gap = fmin(gap, fmin((S[r - 1] - S[r]) / S[0], (S[2 * r - 1] - S[2 * r]) / S[0]));
        e_a = fmax(e_a, gram_err(A, r, n, 1, n, c2) / c2);
        e_b = fmax(e_b, gram_err(B, r, mm, r, 1, c2) / c2);
        e_sa = fmax(e_sa, out_of_span(A, r, n, 1, n, Vt, r, 1, n) / c);              /* rows of Vt[0:r] */
        e_sb = fmax(e_sb, out_of_span(B, r, mm, r, 1, U + r, r, k, 1) / c);          /* columns r..2r-1 of U */
        a->kind->delta_weight(a, W);
        for (size_t t = 0; t < mn; t++) W[t] += a->W0[t];
        e_rec = fmax(e_rec, max_rel_err(W, old[i], mn, 1e-6, NULL));
        free(U); free(S); free(Vt); free(W);
    }
    logits(&m, after);
    double e_f = max_rel_err(after, before, 2 * (size_t)K, 1e-6, NULL);
    CHECK_MSG(gnorm > 1e-6, "the init gradient is ~0 (sigma_1 %.3g): the test would be vacuous", gnorm);
    CHECK_MSG(e_f < 1e-5, "lora_ga changed the model's function at init (rel err %.3g)", e_f);
    CHECK_MSG(e_rec < 1e-5, "new W0 + s B A vs old W0: max rel error %.3g", e_rec);
    CHECK_MSG(e_a < 1e-5 && e_b < 1e-5, "A A^T, B^T B vs c^2 I: max rel error %.3g, %.3g", e_a, e_b);
    CHECK_MSG(e_sa < 1e-4, "A's rows leave G's top-r right singular space by %.3g (rel to c)", e_sa);
    CHECK_MSG(e_sb < 1e-4, "B's columns leave the span of G's left vectors r+1..2r by %.3g (rel to c)", e_sb);
    CHECK(res.changed_w0 && !res.changed_function && res.batches_used == 8);
    CHECK_MSG(strstr(res.note, svd ? "randomized" : "exact"), "the note '%s' does not say which SVD", res.note);
    printf("lora_ga note: %s\n", res.note);
    printf("lora_ga on the tiny ViT (q, v), 8 batches of 32: %d adapters; logits kept to %.2g (rel), new W0 + s B A "
           "= old W0 to %.2g (rel), A A^T = B^T B = c^2 I to %.2g / %.2g, A in span V_r to %.2g, B in span "
           "U_{r+1..2r} to %.2g (rel to c); smallest sigma_1 %.3g, smallest relative gap at r / 2r %.3g\n", ad.n,
           e_f, e_rec, e_a, e_b, e_sa, e_sb, gnorm, gap);
    free_all(old, ad.n);
    free_all(G, ad.n);
    teardown(&m, &ad);
}

static void check_lora_ga(void) {
    check_lora_ga_svd(NULL);
    check_lora_ga_svd("lowrank");
    time_on_tiny_vit(&INIT_LORA_GA, &ADAPTER_LORA);
}

/* max |s B R A - trunc_r(D)| / sigma_1(D) and the orthonormality of B and A, over the adapters. */
static void sb_errors(const AdapterSet *ad, float **D, double *e_trunc, double *e_b, double *e_a) {
    Error err;
    *e_trunc = *e_b = *e_a = 0;
    for (int i = 0; i < ad->n; i++) {
        const Adapter *a = &ad->a[i];
        int mm = a->m, n = a->n, r = a->r, k = MIN(mm, n);
        size_t mn = (size_t)mm * n;
        const float *A = params_data(a->ps, a->t[LORA_XS_A]), *B = params_data(a->ps, a->t[LORA_XS_B]);
        float *U = malloc(sizeof(float) * (size_t)mm * k), *S = malloc(sizeof(float) * k);
        float *Vt = malloc(sizeof(float) * (size_t)k * n), *W = malloc(sizeof(float) * mn);
        ASSERTF(la_svd(U, S, Vt, D[i], mm, n, &err) == 0, "%s", err.msg);
        a->kind->delta_weight(a, W); /* s B R A */
        for (size_t t = 0; t < mn; t++) {
            size_t o = t / n, j = t % n;
            double ut = 0;
            for (int c = 0; c < r; c++) ut += (double)U[o * k + c] * S[c] * Vt[(size_t)c * n + j];
            *e_trunc = fmax(*e_trunc, fabs(W[t] - ut) / S[0]);
        }
        *e_b = fmax(*e_b, gram_err(B, r, mm, r, 1, 1.0));
        *e_a = fmax(*e_a, gram_err(A, r, n, 1, n, 1.0));
        free(U); free(S); free(Vt); free(W);
    }
}

static void check_lora_sb(void) {
    Model m;
    AdapterSet ad;
    Synth sd;
    test_build_adapted(&m, &ad, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA_XS, 8);
    InitContext ctx = context(&m, &ad, &sd);
    int K = m.n_classes;
    float before[20], after[20];
    logits(&m, before); /* LoRA-XS default init: R = 0, the backbone's function */
    float **old = copy_w0(&ad), **G = grads(&ctx);
    double lr_1 = lora_sb_lr1(ctx.lr, ctx.warmup_frac, ctx.total_steps);
    CHECK_NEAR(lr_1, (double)ctx.lr / ((double)ctx.warmup_frac * 100), 1e-15);
    CHECK_NEAR(lora_sb_lr1(1e-2, 0, 100), 1e-2, 0);      /* no warmup: lr */
    CHECK_NEAR(lora_sb_lr1(1e-2, 0.1, 5), 1e-2, 0);      /* warmup shorter than one step: lr */
    float **D = malloc(sizeof(float *) * ad.n);
    for (int i = 0; i < ad.n; i++) {
        size_t mn = (size_t)ad.a[i].m * ad.a[i].n;
        D[i] = malloc(sizeof(float) * mn);
        lora_sb_first_step(D[i], G[i], mn, lr_1, 1);
    }
    InitResult res;
    Error err;
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    if (init_find("lora_sb")) CHECK(init_find("lora_sb") == &INIT_LORA_SB);
    double e_trunc, e_b, e_a;
    sb_errors(&ad, D, &e_trunc, &e_b, &e_a);
    int w0_same = 1;
    for (int i = 0; i < ad.n; i++)
        w0_same &= !memcmp(ad.a[i].W0, old[i], sizeof(float) * ad.a[i].m * ad.a[i].n);
    logits(&m, after);
    double e_f = max_rel_err(after, before, 2 * (size_t)K, 1e-6, NULL);
    CHECK_MSG(e_b < 1e-5 && e_a < 1e-5, "B^T B - I %.3g, A A^T - I %.3g", e_b, e_a);
    CHECK_MSG(e_trunc < 1e-5, "s B R A vs the rank-r truncation of -lr_1 sign(G): %.3g (rel to sigma_1)", e_trunc);
    CHECK_MSG(w0_same, "lora_sb changed W0");
    CHECK_MSG(e_f > 1e-5, "the logits did not move (rel %.3g)", e_f);
    CHECK(!res.changed_w0 && res.changed_function && res.batches_used == 8);
    printf("lora_sb note: %s\n", res.note);
    printf("lora_sb (AdamW, lr_1 %.3g) on the tiny ViT (q, v), 8 batches of 32: %d adapters; B^T B = I to %.2g, "
           "A A^T = I to %.2g, s B R A = trunc_r(-lr_1 sign(G)) to %.2g (rel to sigma_1), W0 unchanged, logits "
           "moved %.2g (rel)\n", lr_1, ad.n, e_b, e_a, e_trunc, e_f);

    /* the "noisy" variant with noise 0 is the estimate, bit for bit; with the default noise it moves away */
    size_t na = ad.params.numel;
    float *est = malloc(sizeof(float) * na);
    memcpy(est, ad.params.data, sizeof(float) * na);
    const char *noisy0[] = {"variant", "noisy", "noise", "0"};
    ctx.opts = noisy0;
    ctx.n_opts = 2;
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    CHECK_MSG(!memcmp(est, ad.params.data, sizeof(float) * na), "variant noisy with noise 0 differs from estimate");
    const char *noisy[] = {"variant", "noisy"};
    ctx.opts = noisy;
    ctx.n_opts = 1;
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    double e_noisy = max_rel_err(ad.params.data, est, na, 1e-6, NULL);
    double en_b, en_a, en_t;
    sb_errors(&ad, D, &en_t, &en_b, &en_a);
    CHECK_MSG(e_noisy > 1e-3 && en_b < 1e-5 && en_a < 1e-5, "noisy: moved %.3g from the estimate, B^T B - I %.3g, "
              "A A^T - I %.3g", e_noisy, en_b, en_a);
    printf("lora_sb variant noisy (noise 1e-3 vs |dW| = lr_1 = %.3g): B, A orthonormal to %.2g, %.2g; s B R A is "
           "%.2g (rel to sigma_1) from trunc_r(dW_avg); noise 0 = estimate bit for bit\n", lr_1, en_b, en_a, en_t);

    /* SGD: dW = -lr_1 G */
    ctx.opts = NULL;
    ctx.n_opts = 0;
    ctx.adamw = 0;
    for (int i = 0; i < ad.n; i++) lora_sb_first_step(D[i], G[i], (size_t)ad.a[i].m * ad.a[i].n, lr_1, 0);
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    sb_errors(&ad, D, &e_trunc, &e_b, &e_a);
    CHECK_MSG(e_trunc < 1e-5 && e_b < 1e-5 && e_a < 1e-5, "SGD: trunc %.3g, B %.3g, A %.3g", e_trunc, e_b, e_a);
    printf("lora_sb (SGD): s B R A = trunc_r(-lr_1 G) to %.2g (rel to sigma_1), B, A orthonormal to %.2g, %.2g\n",
           e_trunc, e_b, e_a);

    /* kaiming: no data, no lr; orthonormal B, A; R diagonal, descending, of a random matrix's size; seeded */
    const char *kai[] = {"variant", "kaiming"};
    ctx.opts = kai;
    ctx.n_opts = 1;
    ctx.data.batch = NULL;
    ctx.lr = 0;
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    memcpy(est, ad.params.data, sizeof(float) * na);
    CHECK_MSG(run(&INIT_LORA_SB, &ctx, &res, &err) == 0, "%s", err.msg);
    CHECK_MSG(!memcmp(est, ad.params.data, sizeof(float) * na), "variant kaiming is not deterministic");
    double ek_b = 0, ek_a = 0, s1min = INFINITY, s1max = 0;
    for (int i = 0; i < ad.n; i++) {
        const Adapter *a = &ad.a[i];
        int r = a->r;
        const float *R = params_data(a->ps, a->t[LORA_XS_R]);
        ek_b = fmax(ek_b, gram_err(params_data(a->ps, a->t[LORA_XS_B]), r, a->m, r, 1, 1.0));
        ek_a = fmax(ek_a, gram_err(params_data(a->ps, a->t[LORA_XS_A]), r, a->n, 1, a->n, 1.0));
        for (int c = 0; c < r; c++)
            for (int e = 0; e < r; e++)
                if (c != e) CHECK(R[c * r + e] == 0);
                else if (c > 0) CHECK(R[c * r + c] <= R[(c - 1) * r + c - 1]);
        double s1 = a->scale * R[0];
        s1min = fmin(s1min, s1);
        s1max = fmax(s1max, s1);
    }
    /* sigma_1 of an m x n matrix of U(+-1/sqrt n) entries ~ (sqrt m + sqrt n) / sqrt(3 n) = 1.15 at 64 x 64 */
    double expect = (sqrt(64.0) + sqrt(64.0)) / sqrt(3.0 * 64);
    CHECK_MSG(ek_b < 1e-5 && ek_a < 1e-5 && s1min > 0.7 * expect && s1max < 1.3 * expect,
              "kaiming: B %.3g, A %.3g, sigma_1 in [%.3g, %.3g], expected ~%.3g", ek_b, ek_a, s1min, s1max, expect);
    printf("lora_sb variant kaiming (no data): B, A orthonormal to %.2g, %.2g; s R_11 = sigma_1 in [%.3g, %.3g] "
           "(random-matrix estimate %.3g); deterministic\n", ek_b, ek_a, s1min, s1max, expect);
    free(est);
    free_all(D, ad.n);
    free_all(old, ad.n);
    free_all(G, ad.n);
    teardown(&m, &ad);
    time_on_tiny_vit(&INIT_LORA_SB, &ADAPTER_LORA_XS);
}

/* ---- bad input ---- */
static int w0_unchanged(const Model *m, const float *w) {
    return !memcmp(w, m->params->data, m->params->numel * sizeof(float));
}

static void expect_error(const InitKind *k, InitContext *ctx, const char *what, const char *s1, const char *s2,
                         const char *s3) {
    InitResult res;
    Error err;
    err.msg[0] = 0;
    int rc = run(k, ctx, &res, &err);
    CHECK_MSG(rc < 0, "%s: %s succeeded", k->name, what);
    CHECK_MSG((!s1 || strstr(err.msg, s1)) && (!s2 || strstr(err.msg, s2)) && (!s3 || strstr(err.msg, s3)),
              "%s: %s: '%s' lacks '%s' / '%s' / '%s'", k->name, what, err.msg, s1, s2 ? s2 : "", s3 ? s3 : "");
    printf("%s, %s: %s\n", k->name, what, err.msg);
}

static void bad_input(void) {
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.mlp.fc1"}; /* q 32 x 32, fc1 64 x 32 */
    Model m;
    AdapterSet ad;
    Synth sd;
    InitContext ctx;
    /* LoRA-GA: no data, exhausted data, 2r > min(m, n), options; the model is left untouched */
    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, pats, 2, &ADAPTER_LORA, 4);
    float *w = malloc(m.params->numel * sizeof(float));
    memcpy(w, m.params->data, m.params->numel * sizeof(float));
    ctx = context(&m, &ad, &sd);
    ctx.data.batch = NULL;
    expect_error(&INIT_LORA_GA, &ctx, "no data", "lora_ga", "init batches", NULL);
    ctx = context(&m, &ad, &sd);
    sd.avail = 0;
    expect_error(&INIT_LORA_GA, &ctx, "exhausted data", "lora_ga", "no init batch", NULL);
    ctx = context(&m, &ad, &sd);
    const char *g1[] = {"gamma", "abc"}, *g2[] = {"gamma", "-1"};
    ctx.opts = g1;
    ctx.n_opts = 1;
    expect_error(&INIT_LORA_GA, &ctx, "gamma abc", "gamma", "abc", "number");
    ctx.opts = g2;
    expect_error(&INIT_LORA_GA, &ctx, "gamma -1", "gamma", "-1", "> 0");
    const char *g3[] = {"svd", "qr"}, *g4[] = {"niter", "2.5"}, *g5[] = {"n_iter", "4"};
    ctx.opts = g3;
    expect_error(&INIT_LORA_GA, &ctx, "svd qr", "method.params.lora_ga.svd", "'qr'", "lowrank");
    ctx.opts = g4;
    expect_error(&INIT_LORA_GA, &ctx, "niter 2.5", "method.params.lora_ga.niter", "2.5", "whole number");
    ctx.opts = g5;
    expect_error(&INIT_LORA_GA, &ctx, "unknown key", "unknown key 'method.params.lora_ga.n_iter'", "niter", NULL);
    ctx = context(&m, &ad, &sd);
    ctx.n_batches = 0;
    expect_error(&INIT_LORA_GA, &ctx, "0 batches", "lora_ga", "batches", ">= 1");
    CHECK_MSG(w0_unchanged(&m, w), "a failed lora_ga changed the backbone");
    expect_error(&INIT_LORA_SB, &ctx, "LoRA adapters", "lora_sb", "blocks.0.attn.qkv:q", "has a lora adapter");
    free(w);
    teardown(&m, &ad);

    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, pats, 2, &ADAPTER_LORA, 20); /* 2r = 40 > 32 */
    w = malloc(m.params->numel * sizeof(float));
    memcpy(w, m.params->data, m.params->numel * sizeof(float));
    ctx = context(&m, &ad, &sd);
    expect_error(&INIT_LORA_GA, &ctx, "2r > min(m, n)", "blocks.0.attn.qkv:q", "rank 20", "min(m, n) = 32");
    CHECK_MSG(w0_unchanged(&m, w), "a failed lora_ga changed W0");
    free(w);
    teardown(&m, &ad);

    /* LoRA-SB: wrong kind the other way, bad variant, lr 0, no data, rank > min(m, n) */
    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, pats, 2, &ADAPTER_LORA_XS, 4);
    ctx = context(&m, &ad, &sd);
    expect_error(&INIT_LORA_GA, &ctx, "LoRA-XS adapters", "lora_ga", "blocks.0.attn.qkv:q", "lora_xs adapter");
    const char *v[] = {"variant", "kaiming_normal"};
    ctx.opts = v;
    ctx.n_opts = 1;
    expect_error(&INIT_LORA_SB, &ctx, "unknown variant", "kaiming_normal", "estimate, kaiming, noisy", NULL);
    const char *nz[] = {"variant", "noisy", "noise", "-1"};
    ctx.opts = nz;
    ctx.n_opts = 2;
    expect_error(&INIT_LORA_SB, &ctx, "noise -1", "noise", "-1", ">= 0");
    ctx = context(&m, &ad, &sd);
    ctx.lr = 0;
    expect_error(&INIT_LORA_SB, &ctx, "lr 0", "lora_sb", "learning rate", NULL);
    ctx = context(&m, &ad, &sd);
    ctx.data.batch = NULL;
    expect_error(&INIT_LORA_SB, &ctx, "no data", "lora_sb", "init batches", NULL);
    teardown(&m, &ad);
    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, pats, 2, &ADAPTER_LORA_XS, 40);
    ctx = context(&m, &ad, &sd);
    expect_error(&INIT_LORA_SB, &ctx, "r > min(m, n)", "blocks.0.attn.qkv:q", "rank 40", "32");
    teardown(&m, &ad);
}

/* ---- reference fixtures ---- */
/* Make the largest-magnitude entry of each of r vectors positive (vector c's entry t at X[t * ts + c * cs]);
 * pair (NULL or a second set of r vectors flipped with the first: LoRA-SB's B column c and A row c). */
static void normalize(float *X, int r, int len, int ts, int cs, float *P, int plen, int pts, int pcs) {
    for (int c = 0; c < r; c++) {
        int best = 0;
        for (int t = 1; t < len; t++)
            if (fabsf(X[(size_t)t * ts + (size_t)c * cs]) > fabsf(X[(size_t)best * ts + (size_t)c * cs])) best = t;
        if (X[(size_t)best * ts + (size_t)c * cs] >= 0) continue;
        for (int t = 0; t < len; t++) X[(size_t)t * ts + (size_t)c * cs] *= -1;
        if (P)
            for (int t = 0; t < plen; t++) P[(size_t)t * pts + (size_t)c * pcs] *= -1;
    }
}

static float *read(const SafeTensors *st, const char *fmt, const char *a, const char *b, size_t n) {
    char name[128];
    snprintf(name, sizeof name, fmt, a, b);
    float *x = malloc(sizeof(float) * n);
    Error err;
    CHECK_MSG(st_read_f32(st, name, x, (int64_t)n, &err) == 0, "%s", err.msg);
    return x;
}

static double meta_num(const SafeTensors *st, const char *key) {
    const char *v = st_meta(st, key);
    ASSERTF(v, "fixture metadata lacks %s", key);
    return strtod(v, NULL);
}

static void ref_init(const char *init) {
    int ga = !strcmp(init, "lora_ga");
    char path[600];
    snprintf(path, sizeof path, "%s/init_grad_ref.safetensors", TEST_FIXTURE_DIR);
    SafeTensors st;
    Error err;
    if (st_open(&st, path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK(st_meta(&st, "r") && !strcmp(st_meta(&st, "r"), "4"));
    /* fc1 (24 x 16) and fc2 (16 x 24) of a one-block ViT of width 16: the fixture's tall and wide weights */
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 8, .in_ch = 1, .patch = 4, .dim = 16, .depth = 1,
                                                   .heads = 2, .mlp_hidden = 24, .n_classes = 3}};
    Model m;
    AdapterSet ad;
    test_build_adapted(&m, &ad, &mc, TEST_FC, 2, ga ? &ADAPTER_LORA : &ADAPTER_LORA_XS, 4); /* alpha 8, s 2 */
    ASSERT(ad.n == 2 && ad.a[0].m == 24 && ad.a[0].n == 16 && ad.a[1].m == 16 && ad.a[1].n == 24);
    double lr_1 = lora_sb_lr1(meta_num(&st, "lr"), meta_num(&st, "warmup_frac"), (long)meta_num(&st, "total_steps"));
    CHECK_MSG(fabs(lr_1 - meta_num(&st, "lr_1")) <= 1e-15, "lr_1 %.17g vs the fixture's %.17g", lr_1,
              meta_num(&st, "lr_1"));
    for (int i = 0; i < ad.n; i++) {
        Adapter *a = &ad.a[i];
        const char *shape = i == 0 ? "tall" : "wide";
        int mm = a->m, n = a->n, r = a->r;
        size_t na = (size_t)r * n, nb = (size_t)mm * r, nw = (size_t)mm * n;
        float *W0 = read(&st, "%s.%s", shape, "W0", nw), *G = read(&st, "%s.%s", shape, "G", nw);
        memcpy(a->W0, W0, sizeof(float) * nw);
        float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
        if (ga) {
            CHECK_MSG(lora_ga_from_grad(a, G, meta_num(&st, "gamma"), NULL, &err) == 0, "%s", err.msg);
            float *rA = read(&st, "lora_ga.%s.%s", shape, "A", na), *rB = read(&st, "lora_ga.%s.%s", shape, "B", nb);
            float *rW = read(&st, "lora_ga.%s.%s", shape, "W0_new", nw), *W = malloc(sizeof(float) * nw);
            memcpy(A, params_data(a->ps, a->t[LORA_A]), sizeof(float) * na);
            memcpy(B, params_data(a->ps, a->t[LORA_B]), sizeof(float) * nb);
            double raw_a = max_rel_err(A, rA, na, 1e-6, NULL), raw_b = max_rel_err(B, rB, nb, 1e-6, NULL);
            double raw_w = max_rel_err(a->W0, rW, nw, 1e-6, NULL);
            /* A's rows (right vectors 1..r) and B's columns (left vectors r+1..2r) come from different singular
             * pairs: each one's sign is free on its own */
            normalize(A, r, n, 1, n, NULL, 0, 0, 0);
            normalize(rA, r, n, 1, n, NULL, 0, 0, 0);
            normalize(B, r, mm, r, 1, NULL, 0, 0, 0);
            normalize(rB, r, mm, r, 1, NULL, 0, 0, 0);
            double ea = max_rel_err(A, rA, na, 1e-6, NULL), eb = max_rel_err(B, rB, nb, 1e-6, NULL);
            /* sign-free: new W0 + s B A = the old W0 */
            a->kind->delta_weight(a, W);
            for (size_t t = 0; t < nw; t++) W[t] += a->W0[t];
            double erec = max_rel_err(W, W0, nw, 1e-6, NULL);
            CHECK_MSG(ea <= 1e-4 && eb <= 1e-4, "lora_ga %s: A rel err %.3g, B %.3g", shape, ea, eb);
            CHECK_MSG(erec <= 1e-6, "lora_ga %s: new W0 + s B A vs W0: %.3g", shape, erec);
            /* the new W0 itself depends on the signs: compared when they agree with torch's (LAPACK's, same) */
            int same_signs = raw_a <= 1e-4 && raw_b <= 1e-4;
            if (same_signs) CHECK_MSG(raw_w <= 1e-4, "lora_ga %s: new W0 rel err %.3g", shape, raw_w);
            printf("lora_ga %s (%d x %d, r %d, gamma %g): rel err A %.2g, B %.2g (signs normalized; as computed %.2g, "
                   "%.2g), new W0 %.2g%s, new W0 + s B A = W0 to %.2g\n", shape, mm, n, r, meta_num(&st, "gamma"), ea,
                   eb, raw_a, raw_b, raw_w, same_signs ? "" : " (signs differ from torch's: not compared)", erec);
            free(rA); free(rB); free(rW); free(W);
        } else {
            float *dW = malloc(sizeof(float) * nw);
            float *rdW = read(&st, "lora_sb_sgd.%s.%s", shape, "dW", nw);
            lora_sb_first_step(dW, G, nw, lr_1, 0);
            double e_sgd = max_rel_err(dW, rdW, nw, 1e-12, NULL);
            free(rdW);
            rdW = read(&st, "lora_sb.%s.%s", shape, "dW", nw);
            lora_sb_first_step(dW, G, nw, lr_1, 1);
            double e_dw = max_rel_err(dW, rdW, nw, 1e-12, NULL);
            CHECK_MSG(e_dw <= 1e-6 && e_sgd <= 1e-6, "lora_sb %s: dW rel err %.3g (AdamW), %.3g (SGD)", shape, e_dw,
                      e_sgd);
            CHECK_MSG(dW[0] == 0, "lora_sb %s: G[0][0] = 0 should give dW[0][0] = 0, got %g", shape, (double)dW[0]);
            CHECK_MSG(lora_sb_from_update(a, rdW, &err) == 0, "%s", err.msg);
            CHECK_MSG(!memcmp(a->W0, W0, sizeof(float) * nw), "lora_sb %s changed W0", shape);
            float *rA = read(&st, "lora_sb.%s.%s", shape, "A", na), *rB = read(&st, "lora_sb.%s.%s", shape, "B", nb);
            float *rR = read(&st, "lora_sb.%s.%s", shape, "R", (size_t)r * r);
            const float *R = params_data(a->ps, a->t[LORA_XS_R]);
            memcpy(A, params_data(a->ps, a->t[LORA_XS_A]), sizeof(float) * na);
            memcpy(B, params_data(a->ps, a->t[LORA_XS_B]), sizeof(float) * nb);
            double raw_a = max_rel_err(A, rA, na, 1e-6, NULL), raw_b = max_rel_err(B, rB, nb, 1e-6, NULL);
            /* B's column c and A's row c are one singular pair: flipped together (R diagonal is unchanged) */
            normalize(B, r, mm, r, 1, A, n, 1, n);
            normalize(rB, r, mm, r, 1, rA, n, 1, n);
            double ea = max_rel_err(A, rA, na, 1e-6, NULL), eb = max_rel_err(B, rB, nb, 1e-6, NULL);
            double er = max_rel_err(R, rR, (size_t)r * r, 1e-12, NULL);
            CHECK_MSG(ea <= 1e-4 && eb <= 1e-4 && er <= 1e-4, "lora_sb %s: rel err A %.3g, B %.3g, R %.3g", shape, ea,
                      eb, er);
            printf("lora_sb %s (%d x %d, r %d, lr_1 %.3g): dW rel err %.2g (AdamW sign), %.2g (SGD); rel err A %.2g, "
                   "B %.2g (signs normalized; as computed %.2g, %.2g), R %.2g; W0 unchanged\n", shape, mm, n, r, lr_1,
                   e_dw, e_sgd, ea, eb, raw_a, raw_b, er);
            free(rA); free(rB); free(rR); free(dW); free(rdW);
        }
        free(A); free(B); free(W0); free(G);
    }
    teardown(&m, &ad);
    st_close(&st);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "lora_ga")) check_lora_ga();
    else if (!strcmp(w, "lora_sb")) check_lora_sb();
    else if (!strcmp(w, "bad")) bad_input();
    else if (!strcmp(w, "ref_lora_ga") || !strcmp(w, "ref_lora_sb")) ref_init(w + 4);
    else {
        fprintf(stderr, "usage: test_init_grad lora_ga | lora_sb | bad | ref_lora_ga | ref_lora_sb\n");
        return 2;
    }
    return test_finish(w);
}
