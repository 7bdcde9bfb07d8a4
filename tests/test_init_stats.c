/* tests/test_init_stats.c: the data passes' second moments and what EVA and CorDA build on them
 * (methods/init_data.h: init_input_stats; methods/init_act.h: eva_pca_partial_fit_gram).
 *   init_input_stats   on a small ViT with adapters on q and v (one host linear), fc1 and fc2 (input widths 32 and
 *                      64), three init batches of which the last is short: per adapter and batch, S = X^T X, c =
 *                      the column sums and N against X captured by init_taps and summed here in long double, with
 *                      and without per_sample_max (each image's rows / its max |x|); adapters of one host linear
 *                      get the same S; the taps are cleared afterwards; a non-finite input and missing data are
 *                      errors; an accelerator's input_stats is called instead of the CPU pass when set
 *   eva_pca_gram       eva_pca_partial_fit_gram against eva_pca_partial_fit (the exact SVD of the stacked rows) on
 *                      random rows with well-separated variances, over 5 fits: components |cos| >= 1 - 1e-6,
 *                      singular values, explained variance ratios and cosines 1e-6, mean and m2 1e-9 (relative);
 *                      N < k skipped; a non-finite S refused
 *   eva_gram           the EVA initializer with method.params.eva.pca gram against svd on the tiny ViT: the same
 *                      batches used, ranks, and A rows with |cos| >= 0.999; an unknown pca value is refused
 *   corda_stats        CorDA's covariance through init_input_stats (per_sample_max) against corda_cov_add on the
 *                      tapped rows (1e-6 relative), and init_corda (which now takes that path) against the old
 *                      path (init_taps + corda_cov_add + corda_from_cov per adapter) on the small ViT: A, B (signs
 *                      normalized) and the new W0, 1e-4 relative (C differs by float rounding: the old path
 *                      sums in float, init_input_stats in double; C'^{-1} amplifies it to ~2e-5 in A)
 *   eva_gram also: pca auto picks gram with an accelerator (one forwarding to the CPU pass: bit for bit pca
 *                      gram's adapters), a non-finite S from the accelerator is an error naming the layer
 *   init_act_cuda      (SKIP without a GPU) EVA and CorDA with the GPU's statistics (bf16, f32 sums) against the
 *                      CPU's on a ViT of width 128: EVA the same ranks and A rows |cos| >= 0.99, CorDA s B A and
 *                      the new W0 within 5e-2 (relative to the largest entry)
 * `test_init_stats bench [n N k fits]` (not a ctest) times one layer's partial fits, SVD path against S = X^T X
 * plus the Gram path (ViT-B/16 defaults: n 768, N 32 x 197 rows, k 32); `bench_cuda` EVA and CorDA on a
 * random-weight ViT-B/16 with the GPU's statistics (8 batches of 32). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/vit.h"
#include "experiments/init_cuda.h"
#include "methods/init.h"
#include "methods/init_act.h"
#include "methods/init_data.h"
#include "methods/lora.h"
#include "testlib.h"
#include "testmodels.h"

extern const InitKind INIT_EVA, INIT_CORDA;

/* ---- data: image i = sum_j c_ij P_j over a few fixed random patterns, plus noise, times a per-image scale (so
 * that per_sample_max matters); NaN_IMAGE >= 0 puts a NaN in that image ---- */
enum { N_PAT = 6 };
typedef struct Synth {
    int n_images, nan_image;
    size_t per;
} Synth;

static int synth_batch(void *p, int i, int B, float *x, int *y) {
    Synth *s = p;
    long first = (long)i * B;
    if (first >= s->n_images) return 0;
    int nb = (int)MIN((long)B, s->n_images - first);
    float *pat = malloc(sizeof(float) * N_PAT * s->per), c[N_PAT + 1];
    rng_fill_uniform(pat, N_PAT * s->per, -1, 1, 1234, rng_stream("init_stats.patterns", 0, 0));
    for (int b = 0; b < nb; b++) {
        float *im = x + (size_t)b * s->per;
        rng_fill_uniform(im, s->per, -0.25f, 0.25f, 1234, rng_stream("init_stats.noise", (uint64_t)(first + b), 0));
        rng_fill_uniform(c, N_PAT + 1, -1, 1, 1234, rng_stream("init_stats.coef", (uint64_t)(first + b), 0));
        for (int j = 0; j < N_PAT; j++)
            for (size_t t = 0; t < s->per; t++) im[t] += c[j] * pat[(size_t)j * s->per + t];
        float scale = 1.5f + c[N_PAT];
        for (size_t t = 0; t < s->per; t++) im[t] *= scale;
        if (first + b == s->nan_image) im[3] = NAN;
        y[b] = (int)((first + b) % 3);
    }
    free(pat);
    return nb;
}

typedef struct Setup {
    Model m;
    AdapterSet ad;
    Synth data;
    InitContext ctx;
} Setup;

static void setup(Setup *s, const ModelConfig *mc, const char *const *pats, int np, int r, int batch, int n_images,
                  int n_batches) {
    memset(s, 0, sizeof *s);
    test_build_adapted(&s->m, &s->ad, mc, pats, np, &ADAPTER_LORA, r);
    s->data = (Synth){.n_images = n_images, .nan_image = -1, .per = (size_t)s->m.in_ch * s->m.img_h * s->m.img_w};
    s->ctx = (InitContext){.model = &s->m, .set = &s->ad, .seed = 11,
                           .data = {.batch = synth_batch, .ctx = &s->data, .n_images = n_images},
                           .batch = batch, .n_batches = n_batches};
}

static void teardown(Setup *s) {
    adapters_free(&s->ad, s->m.targets, s->m.n_targets);
    model_free(&s->m);
}

/* ---- init_input_stats ---- */

enum { MAX_AD = 16, MAX_BATCH = 4 };
typedef struct Captured {   /* per (adapter, batch): what a pass handed over */
    double *S[MAX_AD][MAX_BATCH], *c[MAX_AD][MAX_BATCH];
    float *X[MAX_AD][MAX_BATCH];
    long N[MAX_AD][MAX_BATCH];
    int calls, bad_index;
    const AdapterSet *set;
} Captured;

static void capture_x(void *user, int ai, const float *x, const float *z, int ldz, int N, int b) {
    (void)z, (void)ldz;
    Captured *cap = user;
    int n = cap->set->a[ai].n;
    if (ai >= MAX_AD || b >= MAX_BATCH) { cap->bad_index = 1; return; }
    cap->X[ai][b] = malloc(sizeof(float) * (size_t)N * n);
    memcpy(cap->X[ai][b], x, sizeof(float) * (size_t)N * n);
    cap->N[ai][b] = N;
    cap->calls++;
}

static void capture_stats(void *user, int ai, const double *S, const double *c, long N, int b) {
    Captured *cap = user;
    int n = cap->set->a[ai].n;
    if (ai >= MAX_AD || b >= MAX_BATCH || cap->S[ai][b]) { cap->bad_index = 1; return; }
    cap->S[ai][b] = malloc(sizeof(double) * (size_t)n * n);
    cap->c[ai][b] = malloc(sizeof(double) * (size_t)n);
    memcpy(cap->S[ai][b], S, sizeof(double) * (size_t)n * n);
    memcpy(cap->c[ai][b], c, sizeof(double) * (size_t)n);
    cap->N[ai][b] = N;
    cap->calls++;
}

static void captured_free(Captured *cap) {
    for (int i = 0; i < MAX_AD; i++)
        for (int b = 0; b < MAX_BATCH; b++) free(cap->S[i][b]), free(cap->c[i][b]), free(cap->X[i][b]);
}

/* The expected S and c of X (N, n), B images, in long double; max error of got against them relative to the
 * largest |entry|. */
static double stats_err(const double *S, const double *c, const float *X, int N, int n, int B, int per_sample_max) {
    int T = per_sample_max ? N / B : N;
    long double *Se = calloc((size_t)n * n, sizeof(long double)), *ce = calloc((size_t)n, sizeof(long double));
    long double *y = malloc(sizeof(long double) * n);
    for (int s0 = 0; s0 < N; s0 += T) {
        long double mx = 0;
        for (size_t k = (size_t)s0 * n; k < (size_t)(s0 + T) * n; k++) mx = fmaxl(mx, fabsl((long double)X[k]));
        for (int r = s0; r < s0 + T; r++) {
            for (int j = 0; j < n; j++) {
                long double v = X[(size_t)r * n + j];
                y[j] = per_sample_max ? (mx > 0 ? v / mx : 0) : v;
            }
            for (int j = 0; j < n; j++) {
                ce[j] += y[j];
                for (int l = 0; l < n; l++) Se[(size_t)j * n + l] += y[j] * y[l];
            }
        }
    }
    long double sS = 0, sc = 0, eS = 0, ec = 0;
    for (size_t t = 0; t < (size_t)n * n; t++) sS = fmaxl(sS, fabsl(Se[t])), eS = fmaxl(eS, fabsl(S[t] - Se[t]));
    for (int j = 0; j < n; j++) sc = fmaxl(sc, fabsl(ce[j])), ec = fmaxl(ec, fabsl(c[j] - ce[j]));
    free(Se), free(ce), free(y);
    return (double)fmaxl(eS / fmaxl(sS, 1e-30L), ec / fmaxl(sc, 1e-30L));
}

typedef struct FakeAccel {
    int calls, per_sample_max, n_batches;
} FakeAccel;
static int fake_input_stats(void *actx, InitContext *ctx, int n_batches, int per_sample_max, InitStatsFn cb,
                            void *user, Error *err) {
    (void)ctx, (void)cb, (void)user, (void)err;
    FakeAccel *f = actx;
    f->calls++, f->per_sample_max = per_sample_max, f->n_batches = n_batches;
    return 7;
}

static void test_input_stats(void) {
    /* q and v share the qkv input (32 wide), fc1 reads 32, fc2 64; 2 x 6 + 5 images: the last batch is short */
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2"};
    enum { BATCH = 6, IMAGES = 17 };
    int Bs[3] = {6, 6, 5};
    for (int psm = 0; psm < 2; psm++) {
        Setup s;
        setup(&s, &TEST_SMALL_VIT, pats, 4, 4, BATCH, IMAGES, 4);
        int na = s.ad.n, T = s.m.u.vit.T;
        ASSERT(na == 8 && na <= MAX_AD);
        Captured xs = {.set = &s.ad}, st = {.set = &s.ad};
        Error err;
        int got = init_taps(&s.ctx, 4, capture_x, &xs, &err);
        ASSERTF(got == 3, "init_taps: %d batches: %s", got, got < 0 ? err.msg : "");
        got = init_input_stats(&s.ctx, 4, psm, capture_stats, &st, &err);
        CHECK_MSG(got == 3, "init_input_stats ran %d batches, expected 3 (17 images in batches of 6): %s", got,
                  got < 0 ? err.msg : "");
        CHECK_MSG(st.calls == 3 * na && !st.bad_index, "%d callbacks, expected one per adapter and batch (%d)",
                  st.calls, 3 * na);
        double worst = 0, same = 0;
        int widths = 0;
        for (int i = 0; i < na && got == 3; i++) {
            const Adapter *a = &s.ad.a[i];
            widths |= a->n == 64 ? 2 : 1;
            for (int b = 0; b < 3; b++) {
                if (!st.S[i][b]) continue;
                CHECK_MSG(st.N[i][b] == (long)Bs[b] * T && xs.N[i][b] == st.N[i][b], "%s batch %d: N %ld (taps %ld), "
                          "expected %d images x %d tokens", a->target, b, st.N[i][b], xs.N[i][b], Bs[b], T);
                double e = stats_err(st.S[i][b], st.c[i][b], xs.X[i][b], (int)xs.N[i][b], a->n, Bs[b], psm);
                CHECK_MSG(e < 1e-12, "%s batch %d (per_sample_max %d): S, c rel err %.3g", a->target, b, psm, e);
                worst = fmax(worst, e);
                /* v's S is q's (one host linear: the same input) */
                if (i > 0 && s.ad.a[i - 1].W0 - (size_t)s.ad.a[i - 1].row0 * a->n == a->W0 - (size_t)a->row0 * a->n)
                    for (size_t t = 0; t < (size_t)a->n * a->n; t++)
                        same = fmax(same, fabs(st.S[i][b][t] - st.S[i - 1][b][t]));
            }
        }
        CHECK(widths == 3 && same == 0);
        for (int t = 0; t < s.m.n_targets; t++) CHECK(s.m.targets[t].slot->tap == NULL);
        printf("init_input_stats (per_sample_max %d): %d adapters (inputs 32 and 64 wide) x 3 batches (6, 6, 5 images "
               "of %d tokens): S, c against long double sums of the tapped X to %.2g\n", psm, na, T, worst);
        captured_free(&xs);
        captured_free(&st);

        /* a NaN in image 8 (batch 1): an error naming it, not a silent NaN */
        s.data.nan_image = 8;
        Captured st2 = {.set = &s.ad};
        got = init_input_stats(&s.ctx, 4, psm, capture_stats, &st2, &err);
        CHECK_MSG(got < 0 && strstr(err.msg, "non-finite"), "a NaN input: returned %d (%s)", got,
                  got < 0 ? err.msg : "");
        CHECK(st2.calls <= na); /* batch 0 only */
        printf("init_input_stats, a NaN input: %s\n", err.msg);
        captured_free(&st2);
        s.data.nan_image = -1;

        /* no data */
        s.ctx.data.batch = NULL;
        CHECK(init_input_stats(&s.ctx, 4, psm, capture_stats, &st2, &err) < 0 && strstr(err.msg, "init batches"));
        s.ctx.data.batch = synth_batch;

        /* an accelerator's pass replaces the CPU's */
        FakeAccel fa = {0};
        Captured st3 = {.set = &s.ad};
        InitAccel acc = {.name = "fake", .input_stats = fake_input_stats};
        s.ctx.accel = &acc;
        s.ctx.accel_ctx = &fa;
        CHECK(init_input_stats(&s.ctx, 4, psm, capture_stats, &st3, &err) == 7 && fa.calls == 1 &&
              fa.per_sample_max == psm && fa.n_batches == 4 && st3.calls == 0);
        teardown(&s);
    }
}

/* ---- eva_pca_partial_fit_gram against eva_pca_partial_fit ---- */

/* Rows x = mean + sum_j z_j s_j q_j + noise, q_j orthonormal-ish random directions, s_j well separated. */
static void pca_rows(float *X, int N, int n, int b, const float *Q, const float *s, int ns) {
    float *z = malloc(sizeof(float) * ns), *noise = malloc(sizeof(float) * n);
    for (int i = 0; i < N; i++) {
        rng_fill_normal(z, ns, 0, 1, 77, rng_stream("init_stats.pca.z", (uint64_t)b, (uint64_t)i));
        rng_fill_normal(noise, n, 0, 0.05f, 77, rng_stream("init_stats.pca.noise", (uint64_t)b, (uint64_t)i));
        for (int j = 0; j < n; j++) {
            double v = 0.3 + 0.1 * j + noise[j];
            for (int c = 0; c < ns; c++) v += (double)z[c] * s[c] * Q[(size_t)c * n + j];
            X[(size_t)i * n + j] = (float)v;
        }
    }
    free(z), free(noise);
}

static void gram_of(double *S, double *c, const float *X, int N, int n) {
    memset(S, 0, sizeof(double) * n * n);
    memset(c, 0, sizeof(double) * n);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++) {
            double xj = X[(size_t)i * n + j];
            c[j] += xj;
            for (int l = 0; l < n; l++) S[(size_t)j * n + l] += xj * X[(size_t)i * n + l];
        }
}

static double rel_d(const double *a, const double *b, int n) {
    double sc = 1e-30, e = 0;
    for (int i = 0; i < n; i++) sc = fmax(sc, fabs(b[i]));
    for (int i = 0; i < n; i++) e = fmax(e, fabs(a[i] - b[i]));
    return e / sc;
}

static void test_pca_gram(void) {
    enum { n = 24, k = 6, N = 50, FITS = 5, NS = 8 };
    float Q[NS * n], sd[NS] = {10, 7, 5, 3.5f, 2.5f, 1.7f, 0.4f, 0.2f};
    rng_fill_normal(Q, NS * n, 0, 1, 5, rng_stream("init_stats.pca.Q", 0, 0));
    for (int c = 0; c < NS; c++) { /* Gram-Schmidt: the variances are then the sd^2 */
        for (int d = 0; d < c; d++) {
            double dot = 0;
            for (int j = 0; j < n; j++) dot += (double)Q[c * n + j] * Q[d * n + j];
            for (int j = 0; j < n; j++) Q[c * n + j] -= (float)(dot * Q[d * n + j]);
        }
        double nn = 0;
        for (int j = 0; j < n; j++) nn += (double)Q[c * n + j] * Q[c * n + j];
        for (int j = 0; j < n; j++) Q[c * n + j] /= (float)sqrt(nn);
    }
    EvaPca a, g;
    eva_pca_init(&a, n, k);
    eva_pca_init(&g, n, k);
    float *X = malloc(sizeof(float) * N * n);
    double *S = malloc(sizeof(double) * n * n), c[n];
    Error err;
    gram_of(S, c, X, 0, n);
    CHECK(eva_pca_partial_fit_gram(&g, S, c, k - 1, &err) == 1 && g.fits == 0); /* fewer rows than k: skipped */
    double e_cos = 0, e_sv = 0, e_evr = 0, e_pcos = 0, e_mean = 0, e_m2 = 0;
    for (int b = 0; b < FITS; b++) {
        pca_rows(X, N, n, b, Q, sd, NS);
        gram_of(S, c, X, N, n);
        CHECK_MSG(eva_pca_partial_fit(&a, X, N, &err) == 0, "%s", err.msg);
        CHECK_MSG(eva_pca_partial_fit_gram(&g, S, c, N, &err) == 0, "%s", err.msg);
        CHECK(a.fits == b + 1 && g.fits == b + 1 && a.seen == g.seen);
        double sv_a[k], sv_g[k], evr_a[k], evr_g[k];
        for (int q = 0; q < k; q++) {
            double dot = 0;
            for (int j = 0; j < n; j++) dot += (double)a.comp[q * n + j] * g.comp[q * n + j];
            e_cos = fmax(e_cos, 1 - dot); /* signed: the same sign rule on both sides */
            sv_a[q] = a.sv[q], sv_g[q] = g.sv[q], evr_a[q] = a.evr[q], evr_g[q] = g.evr[q];
            e_pcos = fmax(e_pcos, fabs((double)a.cos[q] - g.cos[q]));
        }
        e_sv = fmax(e_sv, rel_d(sv_g, sv_a, k));
        e_evr = fmax(e_evr, rel_d(evr_g, evr_a, k));
        e_mean = fmax(e_mean, rel_d(g.mean, a.mean, n));
        e_m2 = fmax(e_m2, rel_d(g.m2, a.m2, n));
    }
    CHECK_MSG(e_cos <= 1e-6, "components: 1 - cos up to %.3g", e_cos);
    CHECK_MSG(e_sv <= 1e-6 && e_evr <= 1e-6 && e_pcos <= 1e-6, "singular values %.3g, explained variance ratios %.3g, "
              "cosines with the previous fit %.3g", e_sv, e_evr, e_pcos);
    CHECK_MSG(e_mean <= 1e-9 && e_m2 <= 1e-9, "mean %.3g, m2 %.3g", e_mean, e_m2);
    printf("eva_pca_partial_fit_gram vs the SVD path (%d fits of %d x %d rows, k %d, sv %g..%g): 1 - cos(components) "
           "<= %.2g, singular values %.2g, explained variance ratios %.2g, cosines %.2g, mean %.2g, m2 %.2g (rel)\n",
           FITS, N, n, k, (double)sd[0], (double)sd[k - 1], e_cos, e_sv, e_evr, e_pcos, e_mean, e_m2);
    S[5] = NAN;
    CHECK(eva_pca_partial_fit_gram(&g, S, c, N, &err) < 0 && strstr(err.msg, "non-finite") && g.fits == FITS);
    eva_pca_free(&a);
    eva_pca_free(&g);
    free(X), free(S);
}

/* ---- the EVA initializer, pca gram against svd ---- */

typedef struct Reattach {
    Model *m;
    const char *const *pats;
    int np, r;
} Reattach;

/* Re-create the adapters with per-layer ranks, as the runner does (experiments/runner.c). */
static int test_reattach(InitContext *ctx, const int *ranks, Error *err) {
    Reattach *ra = ctx->reattach_ctx;
    int n = ctx->set->n;
    int *rk = malloc(sizeof(int) * (size_t)(n ? n : 1));
    memcpy(rk, ranks, sizeof(int) * (size_t)n);
    adapters_free(ctx->set, ra->m->targets, ra->m->n_targets);
    AdapterSpec sp = {.kind = &ADAPTER_LORA, .r = ra->r, .alpha = 2.0f * ra->r, .ranks = rk, .n_ranks = n};
    int rc = adapters_attach(ctx->set, ra->m->targets, ra->m->n_targets, ra->m->params, ra->pats, ra->np, &sp, 3,
                             err) < 0 ? -1 : 0;
    free(rk);
    return rc;
}

static void run_eva(Setup *s, Reattach *ra, const char *pca, InitResult *res, const InitAccel *accel, void *actx) {
    enum { R = 8 };
    setup(s, &TEST_TINY_VIT, TEST_QV, 2, R, 32, 64 * 32, 64);
    *ra = (Reattach){.m = &s->m, .pats = TEST_QV, .np = 2, .r = R};
    s->ctx.reattach = test_reattach;
    s->ctx.reattach_ctx = ra;
    const char *opts[] = {"pca", pca};
    s->ctx.opts = opts;
    s->ctx.n_opts = pca ? 1 : 0;
    s->ctx.accel = accel;
    s->ctx.accel_ctx = actx;
    Error err;
    memset(res, 0, sizeof *res);
    double t0 = now_seconds();
    CHECK_MSG(INIT_EVA.run(&s->ctx, res, &err) == 0, "pca %s: %s", pca ? pca : "(default)", err.msg);
    res->wall_s = now_seconds() - t0;
    s->ctx.opts = NULL, s->ctx.n_opts = 0;
}

/* An accelerator that forwards to the CPU pass (optionally poisoning the S handed to one adapter with a NaN). */
typedef struct Forward {
    InitStatsFn cb;
    void *user;
    int poison_ai, n;      /* poison_ai -1: none; n: its input width */
    double *S;             /* (n, n) the poisoned copy */
} Forward;
static void forward_cb(void *p, int ai, const double *S, const double *c, long N, int b) {
    Forward *f = p;
    if (ai != f->poison_ai) {
        f->cb(f->user, ai, S, c, N, b);
        return;
    }
    memcpy(f->S, S, sizeof(double) * (size_t)f->n * f->n);
    f->S[1] = NAN;
    f->cb(f->user, ai, f->S, c, N, b);
}
static int forward_stats(void *actx, InitContext *ctx, int n_batches, int psm, InitStatsFn cb, void *user,
                         Error *err) {
    Forward *f = actx;
    f->cb = cb, f->user = user;
    InitContext c = *ctx;
    c.accel = NULL;
    return init_input_stats(&c, n_batches, psm, forward_cb, f, err);
}

static void test_eva_gram(void) {
    Setup s1, s2;
    Reattach r1, r2;
    InitResult res1, res2;
    run_eva(&s1, &r1, "svd", &res1, NULL, NULL);
    run_eva(&s2, &r2, "gram", &res2, NULL, NULL);
    CHECK_MSG(strstr(res2.note, "gram PCA") && !strstr(res1.note, "gram"), "notes: '%s', '%s'", res1.note, res2.note);
    CHECK_MSG(res1.batches_used == res2.batches_used, "batches used: svd %d, gram %d", res1.batches_used,
              res2.batches_used);
    CHECK(s1.ad.n == s2.ad.n);
    double worst = 1;
    int rows = 0;
    for (int i = 0; i < s1.ad.n && i < s2.ad.n; i++) {
        const Adapter *a = &s1.ad.a[i], *b = &s2.ad.a[i];
        CHECK_MSG(!strcmp(a->target, b->target) && a->r == b->r, "adapter %d: svd %s rank %d, gram %s rank %d", i,
                  a->target, a->r, b->target, b->r);
        if (strcmp(a->target, b->target) || a->r != b->r) continue;
        const float *A1 = params_data(a->ps, a->t[LORA_A]), *A2 = params_data(b->ps, b->t[LORA_A]);
        for (int c = 0; c < a->r; c++, rows++) {
            double dot = 0;
            for (int j = 0; j < a->n; j++) dot += (double)A1[(size_t)c * a->n + j] * A2[(size_t)c * a->n + j];
            worst = fmin(worst, fabs(dot));
        }
    }
    CHECK_MSG(worst >= 0.999, "A rows: smallest |cos| between the svd and gram paths %.6f", worst);
    printf("eva pca gram vs svd (tiny ViT, q/v r 8): %d batches both, same ranks, %d A rows with 1 - |cos| <= %.2g; "
           "%.1f ms (svd) vs %.1f ms (gram)\n", res1.batches_used, rows, 1 - worst, res1.wall_s * 1e3,
           res2.wall_s * 1e3);
    teardown(&s1);
    /* the default without an accelerator is svd, with one gram (here an accelerator forwarding to the CPU pass:
     * the same adapters as pca gram, bit for bit) */
    run_eva(&s1, &r1, NULL, &res1, NULL, NULL);
    CHECK(!strstr(res1.note, "gram"));
    teardown(&s1);
    Forward fw = {.poison_ai = -1};
    InitAccel acc = {.name = "forward", .input_stats = forward_stats};
    run_eva(&s1, &r1, NULL, &res1, &acc, &fw);
    CHECK_MSG(strstr(res1.note, "gram PCA"), "%s", res1.note);
    int same = s1.ad.n == s2.ad.n;
    for (int i = 0; i < s1.ad.n && same; i++) {
        const Adapter *a = &s1.ad.a[i], *b = &s2.ad.a[i];
        same = a->r == b->r && !memcmp(params_data(a->ps, a->t[LORA_A]), params_data(b->ps, b->t[LORA_A]),
                                       sizeof(float) * (size_t)a->r * a->n);
    }
    CHECK_MSG(same, "pca auto with an accelerator differs from pca gram");
    teardown(&s1);
    teardown(&s2);
    /* a non-finite S from the accelerator for blocks.1.attn.qkv:q: an error naming that layer */
    setup(&s1, &TEST_TINY_VIT, TEST_QV, 2, 8, 32, 64 * 32, 8);
    fw = (Forward){.poison_ai = 2, .n = s1.ad.a[2].n}; /* the first of blocks.1's q and v: its S is theirs */
    fw.S = malloc(sizeof(double) * (size_t)fw.n * fw.n);
    s1.ctx.accel = &acc;
    s1.ctx.accel_ctx = &fw;
    Error err;
    CHECK(INIT_EVA.run(&s1.ctx, &res1, &err) < 0 && strstr(err.msg, s1.ad.a[2].target) &&
          strstr(err.msg, "non-finite"));
    printf("eva, a NaN in the accelerator's X^T X of %s: %s\n", s1.ad.a[2].target, err.msg);
    free(fw.S);
    teardown(&s1);
    setup(&s1, &TEST_SMALL_VIT, TEST_QV, 2, 4, 8, 64, 4);
    const char *bad[] = {"pca", "qr"};
    s1.ctx.opts = bad;
    s1.ctx.n_opts = 1;
    CHECK(INIT_EVA.run(&s1.ctx, &res1, &err) < 0 && strstr(err.msg, "pca") && strstr(err.msg, "qr"));
    printf("eva, pca qr: %s\n", err.msg);
    teardown(&s1);
}

/* ---- CorDA through init_input_stats ---- */

typedef struct CovTap {
    const AdapterSet *set;
    double *C[MAX_AD];      /* per adapter (the first of a host linear accumulates; the others alias) */
    long samples[MAX_AD];
    int owner[MAX_AD], T;
} CovTap;

static void cov_tap(void *user, int ai, const float *x, const float *z, int ldz, int N, int b) {
    (void)z, (void)ldz, (void)b;
    CovTap *ct = user;
    if (ct->owner[ai] != ai) return;
    Error err;
    int got = corda_cov_add(ct->C[ai], x, N, ct->T, ct->set->a[ai].n, &err);
    ASSERTF(got >= 0, "%s", err.msg);
    ct->samples[ai] += got;
}

static void cov_stats(void *user, int ai, const double *S, const double *c, long N, int b) {
    (void)c, (void)N, (void)b;
    CovTap *ct = user;
    if (ct->owner[ai] != ai) return;
    int n = ct->set->a[ai].n;
    for (size_t t = 0; t < (size_t)n * n; t++) ct->C[ai][t] += S[t];
}

static void owners(CovTap *ct, const AdapterSet *set) {
    for (int i = 0; i < set->n; i++) {
        const Adapter *a = &set->a[i];
        const float *host = a->W0 - (size_t)a->row0 * a->n;
        int o = 0;
        while (set->a[o].W0 - (size_t)set->a[o].row0 * set->a[o].n != host) o++;
        ct->owner[i] = o;
        ct->C[i] = o == i ? calloc((size_t)a->n * a->n, sizeof(double)) : ct->C[o];
    }
}

static void test_corda_stats(void) {
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.*.mlp.fc1"};
    enum { R = 4, BATCH = 8, IMAGES = 40, NB = 5 };
    Setup s_old, s_new;
    setup(&s_old, &TEST_SMALL_VIT, pats, 3, R, BATCH, IMAGES, NB);
    setup(&s_new, &TEST_SMALL_VIT, pats, 3, R, BATCH, IMAGES, NB);
    int na = s_old.ad.n;
    ASSERT(na == 6 && na <= MAX_AD);
    /* C: sum of init_input_stats' S (per_sample_max) against corda_cov_add on the tapped rows */
    CovTap old = {.set = &s_old.ad, .T = s_old.m.u.vit.T}, via = {.set = &s_old.ad, .T = old.T};
    owners(&old, &s_old.ad);
    owners(&via, &s_old.ad);
    Error err;
    CHECK(init_taps(&s_old.ctx, NB, cov_tap, &old, &err) == NB);
    CHECK(init_input_stats(&s_old.ctx, NB, 1, cov_stats, &via, &err) == NB);
    double ec = 0;
    for (int i = 0; i < na; i++) {
        int n = s_old.ad.a[i].n;
        CHECK(old.samples[i] == (long)IMAGES || old.owner[i] != i);
        ec = fmax(ec, rel_d(via.C[i], old.C[i], n * n));
    }
    CHECK_MSG(ec < 1e-6, "CorDA's C: init_input_stats vs corda_cov_add rel err %.3g", ec);
    /* the old path's adapters: corda_from_cov per adapter on the mean C (float) */
    for (int i = 0; i < na; i++) {
        Adapter *a = &s_old.ad.a[i];
        int n = a->n, o = old.owner[i];
        float *C = malloc(sizeof(float) * n * n);
        for (int t = 0; t < n * n; t++) C[t] = (float)(old.C[o][t] / (double)old.samples[o]);
        CHECK_MSG(corda_from_cov(a, C, 1, NULL, &err) == 0, "%s", err.msg);
        free(C);
    }
    /* the initializer (init_input_stats inside) */
    InitResult res;
    memset(&res, 0, sizeof res);
    CHECK_MSG(INIT_CORDA.run(&s_new.ctx, &res, &err) == 0, "%s", err.msg);
    CHECK_MSG(res.batches_used == NB && strstr(res.note, "40 samples"), "%s", res.note);
    double ea = 0, eb = 0, ew = 0;
    for (int i = 0; i < na; i++) {
        Adapter *a = &s_old.ad.a[i], *b = &s_new.ad.a[i];
        int m = a->m, n = a->n, r = a->r;
        float *A1 = params_data(a->ps, a->t[LORA_A]), *B1 = params_data(a->ps, a->t[LORA_B]);
        float *A2 = malloc(sizeof(float) * r * n), *B2 = malloc(sizeof(float) * m * r);
        memcpy(A2, params_data(b->ps, b->t[LORA_A]), sizeof(float) * r * n);
        memcpy(B2, params_data(b->ps, b->t[LORA_B]), sizeof(float) * m * r);
        for (int c = 0; c < r; c++) { /* signs: each rank-1 pair as the old path's (B columns agree in sign) */
            double dot = 0;
            for (int o = 0; o < m; o++) dot += (double)B1[o * r + c] * B2[o * r + c];
            if (dot >= 0) continue;
            for (int o = 0; o < m; o++) B2[o * r + c] = -B2[o * r + c];
            for (int j = 0; j < n; j++) A2[c * n + j] = -A2[c * n + j];
        }
        ea = fmax(ea, max_rel_err(A2, A1, (size_t)r * n, 1e-6, NULL));
        eb = fmax(eb, max_rel_err(B2, B1, (size_t)m * r, 1e-6, NULL));
        ew = fmax(ew, max_rel_err(b->W0, a->W0, (size_t)m * n, 1e-6, NULL));
        free(A2), free(B2);
    }
    CHECK_MSG(ea < 1e-4 && eb < 1e-4 && ew < 1e-4, "init_corda via init_input_stats vs the old path: A %.3g, B %.3g, "
              "new W0 %.3g (rel)", ea, eb, ew);
    printf("corda via init_input_stats (small ViT, q/v/fc1 r %d, %d images): C vs corda_cov_add %.2g; A %.2g, B %.2g, "
           "new W0 %.2g (rel) against the old path (%s)\n", R, IMAGES, ec, ea, eb, ew, res.note);
    for (int i = 0; i < na; i++)
        if (old.owner[i] == i) free(old.C[i]), free(via.C[i]);
    teardown(&s_old);
    teardown(&s_new);
}

/* ---- bench: one layer's partial fits, SVD against X^T X + Gram ---- */

static void bench(int argc, char **argv) {
    int n = argc > 2 ? atoi(argv[2]) : 768, N = argc > 3 ? atoi(argv[3]) : 32 * 197;
    int k = argc > 4 ? atoi(argv[4]) : 32, fits = argc > 5 ? atoi(argv[5]) : 3;
    float *X = malloc(sizeof(float) * (size_t)N * n);
    double *S = malloc(sizeof(double) * (size_t)n * n), *c = malloc(sizeof(double) * n);
    double *Xd = malloc(sizeof(double) * (size_t)N * n);
    EvaPca a, g;
    eva_pca_init(&a, n, k);
    eva_pca_init(&g, n, k);
    Error err;
    double t_svd = 0, t_syrk = 0, t_gram = 0, t_cov = 0, worst = 1;
    double *C = calloc((size_t)n * n, sizeof(double));
    for (int b = 0; b < fits; b++) {
        rng_fill_normal(X, (size_t)N * n, 0, 1, 9, rng_stream("init_stats.bench", (uint64_t)b, 0));
        for (int i = 0; i < N; i++) /* a decaying spectrum: column j scaled by 1 / (1 + j / 8) */
            for (int j = 0; j < n; j++) X[(size_t)i * n + j] /= 1.0f + j / 8.0f;
        double t0 = now_seconds();
        ASSERTF(eva_pca_partial_fit(&a, X, N, &err) == 0, "%s", err.msg);
        double t1 = now_seconds();
        for (size_t t = 0; t < (size_t)N * n; t++) Xd[t] = X[t];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, N, 1.0, Xd, n, 0.0, S, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) S[(size_t)i * n + j] = S[(size_t)j * n + i];
        memset(c, 0, sizeof(double) * n);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < n; j++) c[j] += Xd[(size_t)i * n + j];
        double t2 = now_seconds();
        ASSERTF(eva_pca_partial_fit_gram(&g, S, c, N, &err) == 0, "%s", err.msg);
        double t3 = now_seconds();
        ASSERTF(corda_cov_add(C, X, N - N % 197, 197, n, &err) >= 0, "%s", err.msg); /* CorDA's old pass */
        t_cov += now_seconds() - t3;
        t_svd += t1 - t0, t_syrk += t2 - t1, t_gram += t3 - t2;
    }
    for (int q = 0; q < k; q++) {
        double dot = 0;
        for (int j = 0; j < n; j++) dot += (double)a.comp[(size_t)q * n + j] * g.comp[(size_t)q * n + j];
        worst = fmin(worst, fabs(dot));
    }
    { /* CorDA's per-layer host work at this size: the damping loop, then corda_from_cov (damping + W0 C' + SVD) */
        float *Cf = malloc(sizeof(float) * (size_t)n * n), *Cinv = malloc(sizeof(float) * (size_t)n * n);
        double *Cfix = malloc(sizeof(double) * (size_t)n * n), cs = 0;
        for (int j = 0; j < n; j++) cs += C[(size_t)j * n + j];
        for (size_t t = 0; t < (size_t)n * n; t++) Cf[t] = (float)(C[t] / cs);
        double t0 = now_seconds();
        ASSERTF(corda_damp(Cfix, Cinv, Cf, n, 0.05, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
        double t1 = now_seconds();
        Model m;
        AdapterSet ad;
        ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 16, .in_ch = 3, .patch = 16, .dim = n, .depth = 1,
                                                       .heads = n / 64 > 0 ? n / 64 : 1, .mlp_hidden = 4 * n,
                                                       .n_classes = 3}};
        const char *q[] = {"blocks.0.attn.qkv:q"};
        test_build_adapted(&m, &ad, &mc, q, 1, &ADAPTER_LORA, k / 2);
        double t2 = now_seconds();
        ASSERTF(corda_from_cov(&ad.a[0], Cf, 1, NULL, &err) == 0, "%s", err.msg);
        double t3 = now_seconds();
        printf("bench: CorDA per layer (%d x %d, r %d): corda_damp %.1f ms, corda_from_cov (IPM) %.1f ms\n", n, n,
               k / 2, (t1 - t0) * 1e3, (t3 - t2) * 1e3);
        adapters_free(&ad, m.targets, m.n_targets);
        model_free(&m);
        free(Cf), free(Cinv), free(Cfix);
    }
    printf("bench: %d partial fits of %d x %d rows, k %d: SVD path %.1f ms/fit; X^T X + column sums (double, dsyrk) "
           "%.1f ms/fit + Gram path %.1f ms/fit; smallest |cos| of the components %.6f; corda_cov_add (float GEMM) "
           "%.1f ms/batch\n", fits, N, n, k, t_svd / fits * 1e3, t_syrk / fits * 1e3, t_gram / fits * 1e3, worst,
           t_cov / fits * 1e3);
    eva_pca_free(&a), eva_pca_free(&g);
    free(X), free(S), free(c), free(Xd), free(C);
}

/* ---- on a GPU: EVA and CorDA with the accelerator's statistics (bf16 / f32) against the CPU's ---- */

/* A ViT whose heads are 64 wide (the GPU's fused attention kernels). */
static const ModelConfig VIT64 = {.family = MODEL_VIT, .vit = {.img_size = 32, .in_ch = 3, .patch = 8, .dim = 128,
                                                               .depth = 3, .heads = 2, .mlp_hidden = 256,
                                                               .n_classes = 5, .ln_eps = 1e-6f}};

static void run_init_on(Setup *s, Reattach *ra, const InitKind *k, const ModelConfig *mc, int r, int batch, int nb,
                        const char *const *opts, int n_opts, const InitAccel *accel, InitResult *res) {
    setup(s, mc, TEST_QV, 2, r, batch, nb * batch, nb);
    *ra = (Reattach){.m = &s->m, .pats = TEST_QV, .np = 2, .r = r};
    s->ctx.reattach = test_reattach;
    s->ctx.reattach_ctx = ra;
    s->ctx.opts = opts;
    s->ctx.n_opts = n_opts;
    s->ctx.accel = accel;
    Error err;
    memset(res, 0, sizeof *res);
    double t0 = now_seconds();
    CHECK_MSG(k->run(&s->ctx, res, &err) == 0, "%s: %s", k->name, err.msg);
    res->wall_s = now_seconds() - t0;
    s->ctx.opts = NULL, s->ctx.n_opts = 0;
}

/* smallest |cos| of matching A rows (same targets and ranks required), -1 when the ranks differ */
static double a_rows_cos(const AdapterSet *x, const AdapterSet *y, int *rank_diff) {
    double worst = 1;
    *rank_diff = x->n != y->n;
    for (int i = 0; i < x->n && i < y->n; i++) {
        const Adapter *a = &x->a[i], *b = &y->a[i];
        if (a->r != b->r) { (*rank_diff)++; continue; }
        const float *A1 = params_data(a->ps, a->t[LORA_A]), *A2 = params_data(b->ps, b->t[LORA_A]);
        for (int c = 0; c < a->r; c++) {
            double dot = 0, n1 = 0, n2 = 0;
            for (int j = 0; j < a->n; j++) {
                dot += (double)A1[(size_t)c * a->n + j] * A2[(size_t)c * a->n + j];
                n1 += (double)A1[(size_t)c * a->n + j] * A1[(size_t)c * a->n + j];
                n2 += (double)A2[(size_t)c * a->n + j] * A2[(size_t)c * a->n + j];
            }
            worst = fmin(worst, fabs(dot) / sqrt(n1 * n2));
        }
    }
    return worst;
}

static int test_cuda(void) {
    Model probe;
    Error err;
    ASSERTF(model_build(&probe, &VIT64, &err) == 0, "%s", err.msg);
    const InitAccel *accel = init_cuda_accel("cuda", &probe);
    model_free(&probe);
    if (!accel) {
        printf("no CUDA init accelerator (no GPU, or a build without CUDA): skipped\n");
        return TEST_SKIP;
    }
    Setup s1, s2, s3;
    Reattach r1, r2, r3;
    InitResult res1, res2, res3;
    const char *svd[] = {"pca", "svd"}, *gram[] = {"pca", "gram"};
    run_init_on(&s1, &r1, &INIT_EVA, &VIT64, 8, 32, 32, svd, 1, NULL, &res1);
    run_init_on(&s2, &r2, &INIT_EVA, &VIT64, 8, 32, 32, gram, 1, NULL, &res2);
    run_init_on(&s3, &r3, &INIT_EVA, &VIT64, 8, 32, 32, NULL, 0, accel, &res3);
    int d12, d13;
    double c12 = a_rows_cos(&s1.ad, &s2.ad, &d12), c13 = a_rows_cos(&s1.ad, &s3.ad, &d13);
    printf("eva on the GPU (ViT d 128, q/v r 8, batches of 32): CPU svd: %s; CPU gram: %s; GPU: %s\n", res1.note,
           res2.note, res3.note);
    printf("eva: CPU gram vs CPU svd: %d ranks differ, A rows |cos| >= %.6f; GPU gram vs CPU svd: %d ranks differ, A "
           "rows |cos| >= %.6f\n", d12, c12, d13, c13);
    CHECK(strstr(res3.note, "gram PCA") && d12 == 0 && c12 >= 0.999);
    CHECK_MSG(d13 == 0 && c13 >= 0.99, "GPU gram vs CPU svd: %d ranks differ, smallest |cos| %.6f", d13, c13);
    teardown(&s1), teardown(&s2), teardown(&s3);

    run_init_on(&s1, &r1, &INIT_CORDA, &VIT64, 8, 32, 8, NULL, 0, NULL, &res1);
    run_init_on(&s3, &r3, &INIT_CORDA, &VIT64, 8, 32, 8, NULL, 0, accel, &res3);
    double ed = 0, ew = 0;
    for (int i = 0; i < s1.ad.n; i++) {
        Adapter *a = &s1.ad.a[i], *b = &s3.ad.a[i];
        size_t mn = (size_t)a->m * a->n;
        float *d1 = malloc(sizeof(float) * mn), *d3 = malloc(sizeof(float) * mn);
        a->kind->delta_weight(a, d1);
        b->kind->delta_weight(b, d3);
        ed = fmax(ed, max_rel_err(d3, d1, mn, 1e-6, NULL));
        ew = fmax(ew, max_rel_err(b->W0, a->W0, mn, 1e-6, NULL));
        free(d1), free(d3);
    }
    printf("corda on the GPU vs the CPU (ViT d 128, q/v r 8, 8 batches of 32): s B A %.3g, new W0 %.3g (rel); %s\n",
           ed, ew, res3.note);
    CHECK_MSG(ed < 5e-2 && ew < 5e-2, "corda GPU vs CPU: s B A %.3g, new W0 %.3g", ed, ew);
    teardown(&s1), teardown(&s3);
    return test_finish("cuda");
}

/* ViT-B/16 (random weights), q and v of every block, r 16, 8 batches of 32 synthetic 224 px images: EVA and CorDA
 * with the GPU's statistics, wall time (not a ctest). */
static int bench_cuda(void) {
    static const ModelConfig VITB = {.family = MODEL_VIT, .vit = {.img_size = 224, .in_ch = 3, .patch = 16, .dim = 768,
                                                                  .depth = 12, .heads = 12, .mlp_hidden = 3072,
                                                                  .n_classes = 10, .ln_eps = 1e-6f}};
    Model probe;
    Error err;
    ASSERTF(model_build(&probe, &VITB, &err) == 0, "%s", err.msg);
    const InitAccel *accel = init_cuda_accel("cuda", &probe);
    model_free(&probe);
    if (!accel) {
        printf("no CUDA init accelerator: skipped\n");
        return TEST_SKIP;
    }
    const InitKind *kinds[] = {&INIT_EVA, &INIT_CORDA, &INIT_EVA};
    for (int k = 0; k < 3; k++) {
        Setup s;
        Reattach ra;
        InitResult res;
        const char *tau[] = {"tau", "1"}; /* the third: never converged, every batch fitted */
        run_init_on(&s, &ra, kinds[k], &VITB, 16, 32, 8, k == 2 ? tau : NULL, k == 2 ? 1 : 0, accel, &res);
        printf("bench_cuda: %s on ViT-B/16 (q/v r 16, <= 8 batches of 32, GPU statistics): %.2f s (%s)\n",
               kinds[k]->name, res.wall_s, res.note);
        teardown(&s);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "stats")) test_input_stats();
    else if (!strcmp(w, "pca_gram")) test_pca_gram();
    else if (!strcmp(w, "eva_gram")) test_eva_gram();
    else if (!strcmp(w, "corda_stats")) test_corda_stats();
    else if (!strcmp(w, "cuda")) return test_cuda();
    else if (!strcmp(w, "bench_cuda")) return bench_cuda();
    else if (!strcmp(w, "bench")) {
        bench(argc, argv);
        return 0;
    } else {
        fprintf(stderr, "usage: test_init_stats stats|pca_gram|eva_gram|corda_stats|cuda|bench [n N k fits]|"
                        "bench_cuda\n");
        return 2;
    }
    return test_finish(w);
}
