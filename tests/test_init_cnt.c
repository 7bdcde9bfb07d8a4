/* tests/test_init_cnt.c: the CNTLoRA initializer (METHODS.md "CNTLoRA (ConsNoTrainLoRA)"; methods/init_cnt.h),
 * on the project's tiny ViT (configs/backbones/tiny_vit.yaml: d 64, depth 4, PyTorch-default weights) with
 * LoRA on q and v of every block, fed fixed random images through a synthetic InitData.
 *   init_cnt_x_closed_form  the ViT at width 32 (NARROW below: the tiny ViT's X X^T is not invertible at float
 *                  precision), one batch of 64 images (1088 rows >> n = 32), random LayerNorm affine parameters:
 *                  X mode at full rank (r = 32) gives s B A = W_est - W0 with W_est = (W0 + W0 (X X^T)^{-1}) / 2
 *                  computed here in double (Cholesky); at r = 8, s B A = the rank-8 part of it (1e-4); cnt_target's
 *                  W_tar = W0 (X X^T)^{-1} on its own (1e-4) and its pseudo-inverse keeps all 32 values
 *   init_cnt_modes X, S, Sh modes over 4 batches of 32: s B A = the rank-r part of dW_est built here from the
 *                  captured inputs (cnt_target per batch, weights, / (Bn + 1)); QR split: B^T B = I and s B A =
 *                  Q_r R_r; p moves the norm between B and A (by S'^(p2 - p1)) and not s B A; keep_function keeps
 *                  the logits (1e-5) with W0 + s B A = old W0; c_random is seeded; W0 untouched otherwise;
 *                  prints the init time (first call, median of 5 more) per mode
 *   init_cnt_vas   ranks sum to the budget r x 8, min_rank respected, layers re-created with those ranks and
 *                  alpha_i = alpha r_i / r (scale unchanged), each from its own dW_est, the ranks those of the
 *                  allocation on the test's own spectra; budget 4 with min_rank 0 leaves >= 4 layers unadapted;
 *                  budget 20 with min_rank 2 raises the layers the plain top-K gives less; the allocation itself on
 *                  hand-made spectra (l2 and l1, min_rank, bad budgets)
 *   init_cnt_bad_input  no data, rank > min(m, n), QR + vas, unknown option, bad mode / weights, no reattach,
 *                  non-LoRA adapters -> errors naming what is wrong, W0 untouched
 *   ref_init_cnt   W_tar of the three modes, dW_est over two batches and its SVD split against
 *                  scripts/make_cnt_fixtures.py (torch float64; tests/fixtures/init_cnt_ref.safetensors) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/vit.h"
#include "gradcheck.h"
#include "methods/dora.h"
#include "methods/init.h"
#include "methods/init_cnt.h"
#include "methods/init_data.h"
#include "methods/lora.h"
#include "testlib.h"
#include "testmodels.h"

/* The same ViT at width 32 for the closed-form test: with random LayerNorm affine parameters (b with a non-zero
 * mean) its q / v inputs have cond(X X^T) ~ 4e2 on one batch of 64 images. The tiny ViT's do not qualify: with
 * LayerNorm's init (w = 1, b = 0) every row of X sums to 0 (X X^T singular; cond 1e5 .. 1e9 in float), and even
 * with random LN parameters block 0 (49-pixel patches embedded in 64 dims) has cond 5e5, beyond the
 * pseudo-inverse's float tolerance (64 * FLT_EPSILON = 7.6e-6): X mode drops a direction there, as it should. */
static const ModelConfig NARROW = {.family = MODEL_VIT, .vit = {.img_size = 28, .in_ch = 1, .patch = 7, .dim = 32,
                                                                .depth = 2, .heads = 2, .mlp_hidden = 128,
                                                                .n_classes = 10, .pool = POOL_CLS, .ln_eps = 1e-6f,
                                                                .init_torch = 1}};

/* ---- fixtures: model, data, reattach ---------------------------------------------------------------------- */

typedef struct Images {
    int n_images;
    size_t per;
} Images;

/* Fixed random images U(-1, 1), image i from its own stream: batch i of size B holds images i*B .. */
static int images_batch(void *p, int i, int B, float *x, int *y) {
    Images *d = p;
    long first = (long)i * B;
    if (first >= d->n_images) return 0;
    int n = (int)MIN((long)B, d->n_images - first);
    for (int b = 0; b < n; b++) {
        rng_fill_uniform(x + (size_t)b * d->per, d->per, -1, 1, 77, rng_stream("cnt.images", (uint64_t)(first + b), 0));
        y[b] = (int)((first + b) % 10);
    }
    return n;
}

typedef struct Fixture {
    Model m;
    AdapterSet ad;
    Images img;
    AdapterSpec spec;
    const char *const *pats;
    int np;
    InitContext ctx;
} Fixture;

static int test_reattach(InitContext *ctx, const int *ranks, Error *err) {
    Fixture *f = ctx->reattach_ctx;
    int n = ctx->set->n;
    int *rk = malloc(sizeof(int) * (size_t)(n ? n : 1));
    memcpy(rk, ranks, sizeof(int) * (size_t)n);
    adapters_free(ctx->set, f->m.targets, f->m.n_targets);
    AdapterSpec sp = f->spec;
    sp.ranks = rk;
    sp.n_ranks = n;
    int rc = adapters_attach(ctx->set, f->m.targets, f->m.n_targets, f->m.params, f->pats, f->np, &sp, ctx->seed,
                             err) < 0 ? -1 : 0;
    free(rk);
    return rc;
}

/* The tiny ViT with LoRA (alpha = 2r) on pats; init data of n_images images, batches of `batch`. */
static void setup(Fixture *f, const ModelConfig *mc, const char *const *pats, int np, const AdapterKind *kind, int r,
                  int batch, int n_batches, int n_images) {
    memset(f, 0, sizeof *f);
    Error err;
    ASSERTF(model_build(&f->m, mc, &err) == 0, "%s", err.msg);
    model_init_params(&f->m, 1);
    params_set_all_trainable(f->m.params, 0);
    f->spec = (AdapterSpec){.kind = kind, .r = r, .alpha = 2.0f * r};
    f->pats = pats;
    f->np = np;
    ASSERTF(adapters_attach(&f->ad, f->m.targets, f->m.n_targets, f->m.params, pats, np, &f->spec, 3, &err) > 0,
            "%s", err.msg);
    f->img = (Images){.n_images = n_images, .per = (size_t)f->m.in_ch * f->m.img_h * f->m.img_w};
    f->ctx = (InitContext){.model = &f->m, .set = &f->ad, .seed = 11,
                           .data = {.batch = images_batch, .ctx = &f->img, .n_images = n_images},
                           .batch = batch, .n_batches = n_batches, .reattach = test_reattach, .reattach_ctx = f};
}

static void teardown(Fixture *f) {
    adapters_free(&f->ad, f->m.targets, f->m.n_targets);
    model_free(&f->m);
}

/* The initializer is called through its table (it need not be registered for these tests). */
static int run_cnt(Fixture *f, const char *const *opts, int n_opts, InitResult *res, Error *err) {
    f->ctx.opts = opts;
    f->ctx.n_opts = n_opts;
    memset(res, 0, sizeof *res);
    double t0 = now_seconds();
    int rc = INIT_CNT_LORA.run(&f->ctx, res, err);
    res->wall_s = now_seconds() - t0;
    return rc;
}

/* Random LayerNorm affine parameters before the attention (w ~ N(1, 0.2^2), b ~ N(0.5, 0.25^2)): b's
 * component along 1/w fills the direction LayerNorm's zero-mean rows leave empty, so X X^T is well conditioned. */
static void random_norm1(Model *m) {
    for (int l = 0; l < m->u.vit.cfg.depth; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.norm1.weight", l);
        int iw = params_find(m->params, name);
        snprintf(name, sizeof name, "blocks.%d.norm1.bias", l);
        int ib = params_find(m->params, name);
        ASSERT(iw >= 0 && ib >= 0);
        int D = m->u.vit.cfg.dim;
        float *w = params_data(m->params, iw), *b = params_data(m->params, ib);
        rng_fill_normal(w, D, 1.0f, 0.2f, 5, rng_stream(name, 1, 0));
        rng_fill_normal(b, D, 0.5f, 0.25f, 5, rng_stream(name, 2, 0));
    }
}

/* The model's logits (2, K) on a fixed input, as the adapters are now. */
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

/* ---- captured inputs and the test's own dW_est --------------------------------------------------------- */

#define MAXB 8
typedef struct Capture {
    float *X[64][MAXB]; /* [adapter][batch] (N, n) */
    int N[64][MAXB];
    int nb;
} Capture;

typedef struct CapCtx {
    Capture *cap;
    AdapterSet *set;
} CapCtx;

static void capture_tap(void *user, int ai, const float *x, const float *z, int ldz, int N, int b) {
    (void)z, (void)ldz;
    CapCtx *cc = user;
    ASSERT(ai < 64 && b < MAXB);
    int n = cc->set->a[ai].n;
    free(cc->cap->X[ai][b]);
    cc->cap->X[ai][b] = malloc(sizeof(float) * (size_t)N * n);
    memcpy(cc->cap->X[ai][b], x, sizeof(float) * (size_t)N * n);
    cc->cap->N[ai][b] = N;
    if (b + 1 > cc->cap->nb) cc->cap->nb = b + 1;
}

/* The layer inputs of every adapter on every init batch, with B = 0 (the pretrained network). */
static void capture(Fixture *f, Capture *cap) {
    memset(cap, 0, sizeof *cap);
    for (int i = 0; i < f->ad.n; i++) {
        Adapter *a = &f->ad.a[i];
        memset(params_data(a->ps, a->t[LORA_B]), 0, sizeof(float) * (size_t)a->m * a->r);
    }
    CapCtx cc = {cap, &f->ad};
    Error err;
    int done = init_taps(&f->ctx, f->ctx.n_batches, capture_tap, &cc, &err);
    ASSERTF(done >= 1 && done == cap->nb, "init_taps: %d (%s)", done, done < 0 ? err.msg : "");
}

static void capture_free(Capture *cap) {
    for (int i = 0; i < 64; i++)
        for (int b = 0; b < MAXB; b++) free(cap->X[i][b]);
}

/* dW_est (m, n) of adapter i = (sum_j w_j W_tar^(j) - Bn W0) / (Bn + 1), W_tar from cnt_target. */
static void dw_est(float *dW, const Adapter *a, const Capture *cap, int i, int mode, double c, const double *w) {
    int m = a->m, n = a->n;
    double *acc = calloc((size_t)m * n, sizeof *acc);
    float *Wt = malloc(sizeof(float) * (size_t)m * n);
    Error err;
    for (int b = 0; b < cap->nb; b++) {
        ASSERTF(cnt_target(Wt, a->W0, cap->X[i][b], m, n, cap->N[i][b], mode, c, NULL, NULL, NULL, &err) == 0,
                "%s", err.msg);
        for (size_t t = 0; t < (size_t)m * n; t++) acc[t] += (w ? w[b] : 1.0) * Wt[t];
    }
    for (size_t t = 0; t < (size_t)m * n; t++) dW[t] = (float)((acc[t] - cap->nb * (double)a->W0[t]) / (cap->nb + 1));
    free(acc);
    free(Wt);
}

/* out (m, n) = the rank-r truncation of M (m, n) (SVD, in double products). */
static void trunc_r(float *out, const float *M, int m, int n, int r) {
    int k = MIN(m, n);
    float *U = malloc(sizeof(float) * (size_t)m * k), *S = malloc(sizeof(float) * k), *Vt = malloc(sizeof(float) * (size_t)k * n);
    Error err;
    ASSERTF(la_svd(U, S, Vt, M, m, n, &err) == 0, "%s", err.msg);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int c = 0; c < r; c++) s += (double)U[(size_t)i * k + c] * S[c] * Vt[(size_t)c * n + j];
            out[(size_t)i * n + j] = (float)s;
        }
    free(U); free(S); free(Vt);
}

/* s B A of a LoRA adapter. */
static void sba(const Adapter *a, float *dW) { a->kind->delta_weight(a, dW); }

/* max over adapters of |s B A - rank-r part of dW_est| / max |rank-r part|. */
static double check_rank_r(AdapterSet *ad, const Capture *cap, int mode, double c, const double *w, int qr) {
    double worst = 0;
    for (int i = 0; i < ad->n; i++) {
        const Adapter *a = &ad->a[i];
        size_t mn = (size_t)a->m * a->n;
        float *dW = malloc(sizeof(float) * mn), *ref = malloc(sizeof(float) * mn), *got = malloc(sizeof(float) * mn);
        dw_est(dW, a, cap, i, mode, c, w);
        if (qr) { /* Q[:, :r] R[:r, :], sign-free as a product */
            int k = MIN(a->m, a->n);
            float *Q = malloc(sizeof(float) * (size_t)a->m * k), *R = malloc(sizeof(float) * (size_t)k * a->n);
            Error err;
            ASSERTF(la_qr(Q, R, dW, a->m, a->n, &err) == 0, "%s", err.msg);
            for (int o = 0; o < a->m; o++)
                for (int j = 0; j < a->n; j++) {
                    double s = 0;
                    for (int t = 0; t < a->r; t++) s += (double)Q[(size_t)o * k + t] * R[(size_t)t * a->n + j];
                    ref[(size_t)o * a->n + j] = (float)s;
                }
            free(Q); free(R);
        } else {
            trunc_r(ref, dW, a->m, a->n, a->r);
        }
        sba(a, got);
        worst = fmax(worst, max_rel_err(got, ref, mn, 1e-12, NULL));
        free(dW); free(ref); free(got);
    }
    return worst;
}

/* ---- init_cnt_x_closed_form ------------------------------------------------------------------------------ */

/* In-place Cholesky inverse of an SPD matrix (n, n) in double; returns 0, or -1 if not positive definite. */
static int spd_inverse(double *A, int n) {
    double *L = calloc((size_t)n * n, sizeof *L), *Inv = calloc((size_t)n * n, sizeof *Inv);
    int rc = 0;
    for (int j = 0; j < n && !rc; j++) {
        double d = A[(size_t)j * n + j];
        for (int k = 0; k < j; k++) d -= L[(size_t)j * n + k] * L[(size_t)j * n + k];
        if (d <= 0) { rc = -1; break; }
        L[(size_t)j * n + j] = sqrt(d);
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            for (int k = 0; k < j; k++) s -= L[(size_t)i * n + k] * L[(size_t)j * n + k];
            L[(size_t)i * n + j] = s / L[(size_t)j * n + j];
        }
    }
    for (int col = 0; col < n && !rc; col++) { /* solve L L^T x = e_col */
        double *y = calloc((size_t)n, sizeof *y);
        for (int i = 0; i < n; i++) {
            double s = i == col;
            for (int k = 0; k < i; k++) s -= L[(size_t)i * n + k] * y[k];
            y[i] = s / L[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = y[i];
            for (int k = i + 1; k < n; k++) s -= L[(size_t)k * n + i] * Inv[(size_t)k * n + col];
            Inv[(size_t)i * n + col] = s / L[(size_t)i * n + i];
        }
        free(y);
    }
    if (!rc) memcpy(A, Inv, sizeof(double) * (size_t)n * n);
    free(L);
    free(Inv);
    return rc;
}

static void x_closed_form(void) {
    for (int pass = 0; pass < 2; pass++) {
        int r = pass == 0 ? 32 : 8;
        Fixture f;
        setup(&f, &NARROW, TEST_QV, 2, &ADAPTER_LORA, r, 64, 1, 64);
        random_norm1(&f.m);
        Capture cap;
        capture(&f, &cap);
        InitResult res;
        Error err;
        CHECK_MSG(run_cnt(&f, NULL, 0, &res, &err) == 0, "%s", err.msg);
        printf("  note: %s\n", res.note);
        double e_w = 0, e_tar = 0, cond_max = 0;
        for (int i = 0; i < f.ad.n; i++) {
            const Adapter *a = &f.ad.a[i];
            int m = a->m, n = a->n, N = cap.N[i][0];
            size_t mn = (size_t)m * n;
            /* G = X^T X and its inverse in double; W_tar = W0 G^{-1}; dW = (W0 + W_tar) / 2 - W0 */
            double *G = calloc((size_t)n * n, sizeof *G);
            const float *X = cap.X[i][0];
            for (int t = 0; t < N; t++)
                for (int p = 0; p < n; p++)
                    for (int q = 0; q < n; q++) G[(size_t)p * n + q] += (double)X[(size_t)t * n + p] * X[(size_t)t * n + q];
            float *Gf = malloc(sizeof(float) * (size_t)n * n), *ev = malloc(sizeof(float) * n);
            for (size_t t = 0; t < (size_t)n * n; t++) Gf[t] = (float)G[t];
            ASSERTF(la_eigh(ev, NULL, Gf, n, &err) == 0, "%s", err.msg);
            double cond = ev[0] / ev[n - 1];
            cond_max = fmax(cond_max, cond);
            CHECK_MSG(ev[n - 1] > 0 && cond < 1e4, "%s: X X^T is not safely invertible (cond %.3g)", a->target, cond);
            ASSERTF(spd_inverse(G, n) == 0, "%s: X X^T is not positive definite", a->target);
            float *Wt = malloc(sizeof(float) * mn), *dW = malloc(sizeof(float) * mn), *ref = malloc(sizeof(float) * mn);
            float *got = malloc(sizeof(float) * mn), *Wc = malloc(sizeof(float) * mn);
            for (int o = 0; o < m; o++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int l = 0; l < n; l++) s += (double)a->W0[(size_t)o * n + l] * G[(size_t)l * n + j];
                    Wt[(size_t)o * n + j] = (float)s;
                    dW[(size_t)o * n + j] = (float)((a->W0[(size_t)o * n + j] + s) / 2 - a->W0[(size_t)o * n + j]);
                }
            if (r == MIN(m, n)) memcpy(ref, dW, sizeof(float) * mn);
            else trunc_r(ref, dW, m, n, r);
            sba(a, got);
            e_w = fmax(e_w, max_rel_err(got, ref, mn, 1e-12, NULL));
            /* the W_tar of the same X through the exposed cnt_target: no cancellation against W0 */
            int kept;
            ASSERTF(cnt_target(Wc, a->W0, X, m, n, N, CNT_MODE_X, 1, NULL, NULL, &kept, &err) == 0, "%s", err.msg);
            CHECK_MSG(kept == n, "%s: the pseudo-inverse kept %d of %d singular values", a->target, kept, n);
            e_tar = fmax(e_tar, max_rel_err(Wc, Wt, mn, 1e-12, NULL));
            free(G); free(Gf); free(ev); free(Wt); free(dW); free(ref); free(got); free(Wc);
        }
        CHECK_MSG(e_w < 1e-4, "r %d: s B A vs the closed form's %s: rel err %.3g", r, pass == 0 ? "W_est - W0" : "rank-8 part", e_w);
        CHECK_MSG(e_tar < 1e-4, "cnt_target X mode vs W0 (X X^T)^{-1}: rel err %.3g", e_tar);
        CHECK(!res.changed_w0 && res.changed_function);
        printf("x_closed_form, r %d: %d adapters (%d x %d), 1 batch of 64 images (%d rows), cond(X X^T) <= %.3g: s B A vs "
               "%s of (W0 + W0 (X X^T)^-1) / 2 - W0: rel err %.2g; W_tar vs W0 (X X^T)^-1: %.2g\n", r, f.ad.n,
               f.ad.a[0].m, f.ad.a[0].n, cap.N[0][0], cond_max, pass == 0 ? "all" : "the rank-8 part", e_w, e_tar);
        capture_free(&cap);
        teardown(&f);
    }
}

/* ---- init_cnt_modes ------------------------------------------------------------------------------------ */

static double median5(double *t) {
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double s = t[j]; t[j] = t[j - 1]; t[j - 1] = s; }
    return t[2];
}

/* The docs table's init time (docs/methods.md): tiny ViT, q and v of 4 blocks, r 8, 4 batches of 32. */
static void time_mode(const char *mode) {
    Fixture f;
    setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 8, 32, 4, 256);
    const char *opts[] = {"mode", mode};
    InitResult res;
    Error err;
    double t[5], first = 0;
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(run_cnt(&f, opts, 1, &res, &err) == 0, "%s", err.msg);
        if (i == 0) first = res.wall_s;
        else t[i - 1] = res.wall_s;
    }
    printf("cnt_lora (mode %s): init time on the tiny ViT (d 64, depth 4, q and v of every block: %d adapters of "
           "%d x %d, r 8, 4 init batches of 32 images): first call %.3f ms, median of 5 more %.3f ms (%s)\n", mode,
           f.ad.n, f.ad.a[0].m, f.ad.a[0].n, first * 1e3, median5(t) * 1e3, res.note);
    teardown(&f);
}

static void modes(void) {
    Fixture f;
    setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 8, 32, 4, 256);
    Capture cap;
    capture(&f, &cap);
    int K = f.m.n_classes;
    float *W0 = malloc(f.m.params->numel * sizeof(float));
    memcpy(W0, f.m.params->data, f.m.params->numel * sizeof(float));
    InitResult res;
    Error err;

    /* every mode (Sh with c = 1 and c = 0.5), SVD split p 0.5: s B A = the rank-r part of dW_est */
    static const char *const MODES[] = {"x", "s", "sh"};
    for (int mo = 0; mo < 4; mo++) {
        const char *opts[] = {"mode", MODES[MIN(mo, 2)], "c", "0.5"};
        CHECK_MSG(run_cnt(&f, opts, mo == 3 ? 2 : 1, &res, &err) == 0, "%s", err.msg);
        CHECK_MSG(res.batches_used == 4 && strstr(res.note, "pinv tol") && strstr(res.note, opts[1]), "batches_used %d, "
                  "note '%s'", res.batches_used, res.note);
        printf("  note: %s\n", res.note);
        double e = check_rank_r(&f.ad, &cap, MIN(mo, 2), mo == 3 ? 0.5 : 1.0, NULL, 0);
        CHECK_MSG(e < 1e-4, "mode %s: s B A vs the rank-8 part of dW_est: rel err %.3g", opts[1], e);
        CHECK(!res.changed_w0 && res.changed_function);
        CHECK_MSG(!memcmp(W0, f.m.params->data, f.m.params->numel * sizeof(float)), "mode %s changed W0", opts[1]);
        printf("mode %s%s: s B A = rank-8 part of dW_est to %.2g (rel), W0 untouched\n", opts[1],
               mo == 3 ? " (c 0.5)" : "", e);
    }
    /* batch weights: dW_est = (sum_j w_j W_tar^(j) - Bn W0) / (Bn + 1) */
    {
        const char *opts[] = {"weights", "0.5, 1,2,0"};
        double w[4] = {0.5, 1, 2, 0};
        CHECK_MSG(run_cnt(&f, opts, 1, &res, &err) == 0, "%s", err.msg);
        double e = check_rank_r(&f.ad, &cap, CNT_MODE_X, 1, w, 0);
        CHECK_MSG(e < 1e-4, "weights 0.5,1,2,0: rel err %.3g", e);
        printf("weights 0.5,1,2,0: s B A = rank-8 part of the weighted dW_est to %.2g\n", e);
    }
    /* QR split: B^T B = I, s B A = Q_r R_r of dW_est */
    {
        const char *opts[] = {"mode", "s", "split", "qr"};
        CHECK_MSG(run_cnt(&f, opts, 2, &res, &err) == 0, "%s", err.msg);
        double e = check_rank_r(&f.ad, &cap, CNT_MODE_S, 1, NULL, 1), eo = 0;
        for (int i = 0; i < f.ad.n; i++) {
            const Adapter *a = &f.ad.a[i];
            const float *B = params_data(a->ps, a->t[LORA_B]);
            for (int c = 0; c < a->r; c++)
                for (int d = 0; d < a->r; d++) {
                    double g = 0;
                    for (int o = 0; o < a->m; o++) g += (double)B[(size_t)o * a->r + c] * B[(size_t)o * a->r + d];
                    eo = fmax(eo, fabs(g - (c == d)));
                }
        }
        CHECK_MSG(e < 1e-4, "QR split: s B A vs Q_r R_r: rel err %.3g", e);
        CHECK_MSG(eo < 1e-5, "QR split: B^T B - I: %.3g", eo);
        printf("QR split (mode s): B^T B = I to %.2g, s B A = Q_r R_r of dW_est to %.2g\n", eo, e);
    }
    /* p moves norm between B and A, not s B A: ||B_c||(p1) / ||B_c||(p2) = S'_c^(p2 - p1), A the inverse */
    {
        int na = f.ad.n;
        float **dw[2];
        double *nb[2], *nA[2];
        const char *ps[2] = {"0.25", "0.75"};
        for (int k = 0; k < 2; k++) {
            const char *opts[] = {"p", ps[k], "mode", "sh"};
            CHECK_MSG(run_cnt(&f, opts, 2, &res, &err) == 0, "%s", err.msg);
            dw[k] = malloc(sizeof(float *) * na);
            nb[k] = calloc((size_t)na * 8, sizeof(double));
            nA[k] = calloc((size_t)na * 8, sizeof(double));
            for (int i = 0; i < na; i++) {
                const Adapter *a = &f.ad.a[i];
                dw[k][i] = malloc(sizeof(float) * (size_t)a->m * a->n);
                sba(a, dw[k][i]);
                const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
                for (int c = 0; c < a->r; c++) {
                    for (int o = 0; o < a->m; o++) nb[k][i * 8 + c] += (double)B[(size_t)o * a->r + c] * B[(size_t)o * a->r + c];
                    for (int j = 0; j < a->n; j++) nA[k][i * 8 + c] += (double)A[(size_t)c * a->n + j] * A[(size_t)c * a->n + j];
                }
            }
        }
        double e_same = 0, e_ratio = 0, moved = 0;
        for (int i = 0; i < na; i++) {
            const Adapter *a = &f.ad.a[i];
            size_t mn = (size_t)a->m * a->n;
            e_same = fmax(e_same, max_rel_err(dw[0][i], dw[1][i], mn, 1e-12, NULL));
            float *dW = malloc(sizeof(float) * mn), *S = malloc(sizeof(float) * MIN(a->m, a->n));
            dw_est(dW, a, &cap, i, CNT_MODE_SH, 1, NULL);
            ASSERTF(la_svd(NULL, S, NULL, dW, a->m, a->n, &err) == 0, "%s", err.msg);
            for (int c = 0; c < a->r; c++) {
                double sp = S[c] / a->scale;
                double want = pow(sp, 0.5); /* ||B_c|| = S'^(1-p): p 0.25 over p 0.75 */
                double got_b = sqrt(nb[0][i * 8 + c] / nb[1][i * 8 + c]), got_a = sqrt(nA[1][i * 8 + c] / nA[0][i * 8 + c]);
                e_ratio = fmax(e_ratio, fmax(fabs(got_b / want - 1), fabs(got_a / want - 1)));
                moved = fmax(moved, fabs(log(got_b)));
            }
            free(dW); free(S);
            free(dw[0][i]); free(dw[1][i]);
        }
        for (int k = 0; k < 2; k++) { free(dw[k]); free(nb[k]); free(nA[k]); }
        CHECK_MSG(e_same < 1e-5, "p 0.25 vs 0.75: s B A differs by %.3g (rel)", e_same);
        CHECK_MSG(e_ratio < 1e-4, "p 0.25 vs 0.75: ||B_c|| ratio vs S'^0.5: rel err %.3g", e_ratio);
        CHECK_MSG(moved > 0.1, "p did not move the balance between B and A (max |log ratio| %.3g)", moved);
        printf("p 0.25 vs 0.75 (mode sh): s B A equal to %.2g (rel); ||B_c|| and ||A_c|| ratios = S'_c^0.5 to %.2g "
               "(up to a factor e^%.2g)\n", e_same, e_ratio, moved);
    }
    /* keep_function: the logits stay (1e-5), W0 + s B A = old W0 */
    {
        float *before = malloc(sizeof(float) * 2 * K), *after = malloc(sizeof(float) * 2 * K);
        for (int i = 0; i < f.ad.n; i++) { /* the backbone's own function */
            Adapter *a = &f.ad.a[i];
            memset(params_data(a->ps, a->t[LORA_B]), 0, sizeof(float) * (size_t)a->m * a->r);
        }
        logits(&f.m, before);
        const char *opts[] = {"keep_function", "true"};
        CHECK_MSG(run_cnt(&f, opts, 1, &res, &err) == 0, "%s", err.msg);
        logits(&f.m, after);
        double ef = max_rel_err(after, before, 2 * (size_t)K, 1e-6, NULL), er = 0;
        for (int i = 0; i < f.ad.n; i++) {
            const Adapter *a = &f.ad.a[i];
            size_t mn = (size_t)a->m * a->n;
            float *d = malloc(sizeof(float) * mn);
            sba(a, d);
            const float *old = W0 + (a->W0 - f.m.params->data);
            for (size_t t = 0; t < mn; t++) d[t] += a->W0[t];
            er = fmax(er, max_rel_err(d, old, mn, 1e-6, NULL));
            free(d);
        }
        CHECK_MSG(ef < 1e-5, "keep_function: logits moved by %.3g (rel)", ef);
        CHECK_MSG(er < 1e-5, "keep_function: new W0 + s B A vs old W0: %.3g", er);
        CHECK(res.changed_w0 && !res.changed_function);
        printf("keep_function: logits kept to %.2g (rel), new W0 + s B A = old W0 to %.2g\n", ef, er);
        memcpy(f.m.params->data, W0, f.m.params->numel * sizeof(float));
        free(before); free(after);
    }
    /* c_random: seeded (the same twice), and not c I */
    {
        const char *opts[] = {"mode", "sh", "c_random", "true"};
        size_t na = f.ad.params.numel;
        float *p1 = malloc(sizeof(float) * na);
        CHECK_MSG(run_cnt(&f, opts, 2, &res, &err) == 0, "%s", err.msg);
        memcpy(p1, f.ad.params.data, sizeof(float) * na);
        CHECK_MSG(run_cnt(&f, opts, 2, &res, &err) == 0, "%s", err.msg);
        CHECK_MSG(!memcmp(p1, f.ad.params.data, sizeof(float) * na), "c_random: two runs with one seed differ");
        double e = check_rank_r(&f.ad, &cap, CNT_MODE_SH, 1, NULL, 0);
        CHECK_MSG(e > 1e-2, "c_random gave the same adapters as C = I (rel diff %.3g)", e);
        printf("c_random: seeded (identical twice), differs from C = I by %.2g (rel)\n", e);
        free(p1);
    }
    free(W0);
    capture_free(&cap);
    teardown(&f);
    /* the data ends after 80 images: 3 batches (32, 32, 16) of the 4 asked, divisor Bn + 1 = 4 */
    {
        setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 8, 32, 4, 80);
        capture(&f, &cap);
        CHECK(cap.nb == 3 && cap.N[0][2] == 16 * 17);
        CHECK_MSG(run_cnt(&f, NULL, 0, &res, &err) == 0, "%s", err.msg);
        double e = check_rank_r(&f.ad, &cap, CNT_MODE_X, 1, NULL, 0);
        CHECK_MSG(res.batches_used == 3 && e < 1e-4, "data ending early: %d batches used, rel err %.3g",
                  res.batches_used, e);
        printf("data ending after 80 images: %d batches used, s B A = rank-8 part of (sum_j W_tar - 3 W0) / 4 to %.2g\n",
               res.batches_used, e);
        capture_free(&cap);
        teardown(&f);
    }
    time_mode("x");
    time_mode("s");
    time_mode("sh");
}

/* ---- init_cnt_vas ------------------------------------------------------------------------------------- */

static void vas_alloc(void) {
    /* matrix 0: one dominant value; 1: flat; 2: two dominant values */
    float s0[4] = {10, 1, 1, 1}, s1[4] = {1, 1, 1, 1}, s2[3] = {5, 5, 0.1f};
    const float *S[3] = {s0, s1, s2};
    int k[3] = {4, 4, 3}, ranks[3];
    Error err;
    /* l2: v0 = 100/103, 1/103 x3; v1 = 1/4 x4; v2 = 25/50.01 x2, 0.01/50.01 */
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 3, 0, 0, &err) == 0);
    CHECK_MSG(ranks[0] == 1 && ranks[1] == 0 && ranks[2] == 2, "l2, K 3, min 0: %d %d %d", ranks[0], ranks[1], ranks[2]);
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 3, 1, 0, &err) == 0);
    CHECK_MSG(ranks[0] == 1 && ranks[1] == 1 && ranks[2] == 1, "l2, K 3, min 1: %d %d %d", ranks[0], ranks[1], ranks[2]);
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 7, 1, 0, &err) == 0);
    CHECK_MSG(ranks[0] == 1 && ranks[1] == 4 && ranks[2] == 2, "l2, K 7, min 1: %d %d %d", ranks[0], ranks[1], ranks[2]);
    /* l1: v0 = 100/13, 1/13; v1 = 1/4; v2 = 25/10.1 x2, 0.01/10.1: matrix 0's first value leads */
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 4, 0, 1, &err) == 0);
    CHECK_MSG(ranks[0] == 1 && ranks[1] == 1 && ranks[2] == 2, "l1, K 4, min 0: %d %d %d", ranks[0], ranks[1], ranks[2]);
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 2, 1, 0, &err) < 0 && strstr(err.msg, "budget 2") && strstr(err.msg, "min_rank"));
    CHECK(cnt_vas_ranks(ranks, S, k, 3, 12, 0, 0, &err) < 0 && strstr(err.msg, "budget 12") && strstr(err.msg, "11"));
    printf("VAS allocation on hand-made spectra: l2 / l1 / min_rank cases as expected; bad budgets: %s\n", err.msg);
}

/* The ranks the allocation gives on the test's own dW_est spectra, and whether the K-th and (K+1)-th pooled
 * values are far enough apart (1e-3 relative) for float noise not to swap them. */
static int expected_ranks(int *ranks, float *const *dws, const AdapterSet *ad, int K, int min_rank) {
    int n = ad->n, total = 0;
    float *S[64] = {0};
    int k[64] = {0};
    Error err;
    for (int i = 0; i < n; i++) {
        const Adapter *a = &ad->a[i];
        k[i] = MIN(a->m, a->n);
        total += k[i];
        S[i] = malloc(sizeof(float) * k[i]);
        ASSERTF(la_svd(NULL, S[i], NULL, dws[i], a->m, a->n, &err) == 0, "%s", err.msg);
    }
    ASSERTF(cnt_vas_ranks(ranks, (const float *const *)S, k, n, K, min_rank, 0, &err) == 0, "%s", err.msg);
    double *v = malloc(sizeof(double) * total);
    int nv = 0;
    for (int i = 0; i < n; i++) {
        double den = 0;
        for (int j = 0; j < k[i]; j++) den += (double)S[i][j] * S[i][j];
        for (int j = min_rank; j < k[i]; j++) v[nv++] = (double)S[i][j] * S[i][j] / den;
    }
    for (int i = 1; i < nv; i++) /* descending */
        for (int j = i; j > 0 && v[j] > v[j - 1]; j--) { double t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; }
    int cut = K - min_rank * n, safe = cut <= 0 || cut >= nv || v[cut - 1] - v[cut] > 1e-3 * v[cut - 1];
    free(v);
    for (int i = 0; i < n; i++) free(S[i]);
    return safe;
}

static void vas(void) {
    vas_alloc();
    /* default budget (r x 8 = 64) and min_rank 1; budget 4 with min_rank 0 (at least 4 of the 8 layers get no
     * rank); budget 20 with min_rank 2 (layers the plain top-K would give less are raised to 2, the others pay) */
    static const struct { const char *budget, *min_rank; int K, mr; } PASSES[] = {
        {NULL, NULL, 64, 1}, {"4", "0", 4, 0}, {"20", "2", 20, 2}};
    for (int pass = 0; pass < 3; pass++) {
        int K = PASSES[pass].K, min_rank = PASSES[pass].mr;
        Fixture f;
        setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 8, 32, 4, 256);
        Capture cap;
        capture(&f, &cap);
        /* the dW_est of each layer, before the adapters are re-created */
        int n0 = f.ad.n;
        char names[64][PARAM_NAME_MAX];
        float *dws[64];
        for (int i = 0; i < n0; i++) {
            const Adapter *a = &f.ad.a[i];
            snprintf(names[i], PARAM_NAME_MAX, "%s", a->target);
            dws[i] = malloc(sizeof(float) * (size_t)a->m * a->n);
            dw_est(dws[i], a, &cap, i, CNT_MODE_X, 1, NULL);
        }
        int want[64], raised = 0;
        int safe = expected_ranks(want, dws, &f.ad, K, min_rank);
        if (min_rank >= 1) { /* what min_rank 0 would have given: layers below min_rank are raised here */
            int r0[64];
            expected_ranks(r0, dws, &f.ad, K, 0);
            for (int i = 0; i < n0; i++) raised += r0[i] < min_rank;
        }
        const char *opts[6] = {"vas", "true"};
        int no = 1;
        if (PASSES[pass].budget) {
            opts[2] = "vas_budget", opts[3] = PASSES[pass].budget, opts[4] = "min_rank", opts[5] = PASSES[pass].min_rank;
            no = 3;
        }
        float *W0 = malloc(f.m.params->numel * sizeof(float));
        memcpy(W0, f.m.params->data, f.m.params->numel * sizeof(float));
        InitResult res;
        Error err;
        CHECK_MSG(run_cnt(&f, opts, no, &res, &err) == 0, "%s", err.msg);
        CHECK_MSG(strstr(res.note, "VAS ranks"), "note '%s'", res.note);
        printf("  note: %s\n", res.note);
        int sum = 0, rmin = 1 << 30, rmax = 0, got[64], mismatch = 0;
        double e = 0, e_scale = 0;
        for (int j = 0; j < n0; j++) got[j] = 0;
        for (int i = 0; i < f.ad.n; i++) {
            const Adapter *a = &f.ad.a[i];
            int j = 0;
            while (j < n0 && strcmp(names[j], a->target)) j++;
            ASSERT(j < n0);
            got[j] = a->r;
            sum += a->r;
            rmin = MIN(rmin, a->r);
            rmax = MAX(rmax, a->r);
            /* re-created with rank r_i: lora_A (r_i, n), lora_B (m, r_i); alpha_i = alpha r_i / r; scale alpha / r */
            char nm[PARAM_NAME_MAX + 16];
            snprintf(nm, sizeof nm, "%s.lora_A", a->target);
            int ia = params_find(a->ps, nm);
            CHECK_MSG(ia >= 0 && a->ps->views[ia].shape[0] == a->r && a->ps->views[ia].shape[1] == a->n,
                      "%s: lora_A shape", a->target);
            snprintf(nm, sizeof nm, "%s.lora_B", a->target);
            int ib = params_find(a->ps, nm);
            CHECK_MSG(ib >= 0 && a->ps->views[ib].shape[0] == a->m && a->ps->views[ib].shape[1] == a->r,
                      "%s: lora_B shape", a->target);
            CHECK_NEAR(a->alpha, 16.0 * a->r / 8, 1e-5);
            e_scale = fmax(e_scale, fabs(a->scale - 2.0));
            size_t mn = (size_t)a->m * a->n;
            float *ref = malloc(sizeof(float) * mn), *sb = malloc(sizeof(float) * mn);
            trunc_r(ref, dws[j], a->m, a->n, a->r);
            sba(a, sb);
            e = fmax(e, max_rel_err(sb, ref, mn, 1e-12, NULL));
            free(ref); free(sb);
        }
        int zeros = 0;
        for (int j = 0; j < n0; j++) {
            zeros += got[j] == 0;
            mismatch += got[j] != want[j];
        }
        CHECK_MSG(sum == K, "budget %d: ranks sum to %d", K, sum);
        CHECK_MSG(rmin >= min_rank && rmin >= 1, "budget %d, min_rank %d: smallest rank %d", K, min_rank, rmin);
        CHECK_MSG(f.ad.n == n0 - zeros, "%d adapters after VAS, expected %d (layers with rank 0 left unadapted)", f.ad.n,
                  n0 - zeros);
        if (min_rank == 0) CHECK_MSG(zeros >= n0 - K, "budget %d, min_rank 0: only %d layers unadapted", K, zeros);
        if (min_rank == 2) CHECK_MSG(raised >= 1, "budget 20, min_rank 2: no layer needed raising (the case is vacuous)");
        if (safe) CHECK_MSG(!mismatch, "budget %d: %d layers got another rank than the allocation on the test's spectra",
                            K, mismatch);
        CHECK_MSG(e_scale < 1e-6, "scale changed by %.3g", e_scale);
        CHECK_MSG(e < 1e-4, "VAS: s B A vs the rank-r_i part of each dW_est: rel err %.3g", e);
        CHECK_MSG(!memcmp(W0, f.m.params->data, f.m.params->numel * sizeof(float)), "VAS changed W0");
        CHECK(!res.changed_w0 && res.changed_function);
        printf("VAS, budget %d, min_rank %d: %d adapters, ranks %d..%d summing to %d, %d left unadapted, %d raised to "
               "min_rank; ranks %s the allocation on the test's spectra%s; scale kept (%.2g), s B A = rank-r_i part "
               "of dW_est to %.2g\n", K, min_rank, f.ad.n, rmin, rmax, sum, zeros, raised, mismatch ? "differ from" : "equal",
               safe ? "" : " (near-tie at the cut: not checked)", e_scale, e);
        for (int i = 0; i < n0; i++) free(dws[i]);
        free(W0);
        capture_free(&cap);
        teardown(&f);
    }
}

/* ---- init_cnt_bad_input ---------------------------------------------------------------------------------- */

static void expect_error(Fixture *f, const char *const *opts, int n_opts, const char *what, const char *s1,
                         const char *s2) {
    float *w = malloc(f->m.params->numel * sizeof(float));
    memcpy(w, f->m.params->data, f->m.params->numel * sizeof(float));
    InitResult res;
    Error err;
    err.msg[0] = 0;
    CHECK_MSG(run_cnt(f, opts, n_opts, &res, &err) < 0, "%s: accepted", what);
    CHECK_MSG(strstr(err.msg, "cnt_lora") && strstr(err.msg, s1) && (!s2 || strstr(err.msg, s2)), "%s: '%s'", what,
              err.msg);
    CHECK_MSG(!memcmp(w, f->m.params->data, f->m.params->numel * sizeof(float)), "%s: a failed init changed W0", what);
    printf("%s: %s\n", what, err.msg);
    free(w);
}

static void bad_input(void) {
    Fixture f;
    setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_LORA, 4, 8, 2, 16);
    {
        const char *opts[] = {"split", "qr", "vas", "true"};
        expect_error(&f, opts, 2, "QR + vas", "vas", "split");
    }
    {
        const char *opts[] = {"mdoe", "s"};
        expect_error(&f, opts, 1, "unknown option", "unknown key", "mdoe");
    }
    {
        const char *opts[] = {"mode", "z"};
        expect_error(&f, opts, 1, "bad mode", "mode is 'z'", "x, s or sh");
    }
    {
        const char *opts[] = {"weights", "1,2,3"};
        expect_error(&f, opts, 1, "weights count", "3 values", "2");
    }
    {
        const char *opts[] = {"weights", "1,x"};
        expect_error(&f, opts, 1, "weights not numbers", "weights", "comma-separated");
    }
    {
        const char *opts[] = {"p", "1.5"};
        expect_error(&f, opts, 1, "p out of range", "p is 1.5", "[0, 1]");
    }
    {
        const char *opts[] = {"vas", "maybe"};
        expect_error(&f, opts, 1, "bad boolean", "vas is 'maybe'", "true or false");
    }
    {
        const char *opts[] = {"vas", "true", "vas_budget", "2"};
        expect_error(&f, opts, 2, "VAS budget below min_rank", "budget 2", "min_rank");
    }
    {
        const char *opts[] = {"vas", "true"};
        f.ctx.reattach = NULL;
        expect_error(&f, opts, 1, "vas without reattach", "reattach", NULL);
        f.ctx.reattach = test_reattach;
    }
    f.ctx.data.batch = NULL;
    expect_error(&f, NULL, 0, "no data", "init batches", NULL);
    f.ctx.data.batch = images_batch;
    f.ctx.n_batches = 0;
    expect_error(&f, NULL, 0, "zero batches", "batches is 0", NULL);
    f.ctx.n_batches = 2;
    /* a non-finite W0 comes back naming the layer and the batch */
    f.ad.a[1].W0[3] = NAN;
    {
        InitResult res;
        Error err;
        CHECK(run_cnt(&f, NULL, 0, &res, &err) < 0);
        CHECK_MSG(strstr(err.msg, "cnt_lora") && strstr(err.msg, f.ad.a[1].target) && strstr(err.msg, "non-finite"),
                  "%s", err.msg);
        printf("NaN in W0: %s\n", err.msg);
    }
    teardown(&f);
    /* rank above min(m, n): fc1 of the tiny ViT is 256 x 64 */
    {
        const char *fc[] = {"blocks.*.mlp.fc1"};
        setup(&f, &TEST_TINY_VIT, fc, 1, &ADAPTER_LORA, 80, 8, 1, 16);
        expect_error(&f, NULL, 0, "rank 80 on 256 x 64", "rank 80", "blocks.0.mlp.fc1");
        teardown(&f);
    }
    /* DoRA adapters are refused by name */
    setup(&f, &TEST_TINY_VIT, TEST_QV, 2, &ADAPTER_DORA, 4, 8, 1, 16);
    expect_error(&f, NULL, 0, "DoRA adapters", "needs LoRA adapters", "dora");
    teardown(&f);
}

/* ---- ref_init_cnt ------------------------------------------------------------------------------------------- */

/* Flip each rank-1 pair so that the largest-magnitude entry of B's column is positive (s B A unchanged). */
static void normalize_signs(float *B, float *A, int m, int r, int n) {
    for (int c = 0; c < r; c++) {
        int best = 0;
        for (int o = 1; o < m; o++)
            if (fabsf(B[(size_t)o * r + c]) > fabsf(B[(size_t)best * r + c])) best = o;
        if (B[(size_t)best * r + c] >= 0) continue;
        for (int o = 0; o < m; o++) B[(size_t)o * r + c] = -B[(size_t)o * r + c];
        for (int j = 0; j < n; j++) A[(size_t)c * n + j] = -A[(size_t)c * n + j];
    }
}

static float *read_t(const SafeTensors *st, const char *name, int64_t *rows, int64_t *cols) {
    const StTensor *t = st_find(st, name);
    ASSERTF(t && t->ndim == 2, "fixture tensor %s missing or not 2-D", name);
    *rows = t->shape[0];
    *cols = t->shape[1];
    float *x = malloc(sizeof(float) * (size_t)t->numel);
    Error err;
    ASSERTF(st_read_f32(st, name, x, t->numel, &err) == 0, "%s", err.msg);
    return x;
}

static void ref(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/init_cnt_ref.safetensors", TEST_FIXTURE_DIR);
    SafeTensors st;
    Error err;
    if (st_open(&st, path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    int r = atoi(st_meta(&st, "r"));
    double s = atof(st_meta(&st, "s")), p = atof(st_meta(&st, "p"));
    static const char *const CASES[] = {"full", "deficient"}, *const MODES[] = {"x", "s", "sh"};
    for (int cs = 0; cs < 2; cs++) {
        char name[96];
        int64_t m, n, N, nn;
        snprintf(name, sizeof name, "%s.W0", CASES[cs]);
        float *W0 = read_t(&st, name, &m, &n);
        snprintf(name, sizeof name, "%s.X", CASES[cs]);
        float *X = read_t(&st, name, &N, &nn);
        ASSERT(nn == n);
        snprintf(name, sizeof name, "%s.c", CASES[cs]);
        double c = atof(st_meta(&st, name));
        snprintf(name, sizeof name, "%s.batches", CASES[cs]);
        int nb = atoi(st_meta(&st, name));
        size_t mn = (size_t)m * n;
        float *Wt = malloc(sizeof(float) * mn);
        for (int mo = 0; mo < 3; mo++) {
            int64_t a, b;
            snprintf(name, sizeof name, "%s.%s.W_tar", CASES[cs], MODES[mo]);
            float *want = read_t(&st, name, &a, &b);
            ASSERT(a == m && b == n);
            double tol;
            int rank;
            CHECK_MSG(cnt_target(Wt, W0, X, (int)m, (int)n, (int)N, mo, c, NULL, &tol, &rank, &err) == 0, "%s", err.msg);
            double e = max_rel_err(Wt, want, mn, 1e-12, NULL);
            snprintf(name, sizeof name, "%s.%s.rank", CASES[cs], MODES[mo]);
            int want_rank = atoi(st_meta(&st, name));
            CHECK_MSG(e <= 1e-4, "%s, mode %s: W_tar rel err %.3g", CASES[cs], MODES[mo], e);
            CHECK_MSG(rank == want_rank, "%s, mode %s: pseudo-inverse kept %d singular values, the reference %d",
                      CASES[cs], MODES[mo], rank, want_rank);
            printf("ref %s (W0 %ld x %ld, X %ld x %ld), mode %s: W_tar rel err %.2g; pinv kept %d (reference %d), "
                   "tolerance %.3g\n", CASES[cs], (long)m, (long)n, (long)N, (long)n, MODES[mo], e, rank, want_rank, tol);
            free(want);
        }
        /* X mode over nb row blocks, / (Bn + 1), then the SVD split */
        double *acc = calloc(mn, sizeof *acc);
        int rows = (int)(N / nb);
        ASSERT(rows * nb == N);
        for (int j = 0; j < nb; j++) {
            CHECK(cnt_target(Wt, W0, X + (size_t)j * rows * n, (int)m, (int)n, rows, CNT_MODE_X, c, NULL, NULL, NULL,
                             &err) == 0);
            for (size_t t = 0; t < mn; t++) acc[t] += Wt[t];
        }
        float *dW = malloc(sizeof(float) * mn);
        for (size_t t = 0; t < mn; t++) dW[t] = (float)((acc[t] - nb * (double)W0[t]) / (nb + 1));
        int64_t a_, b_;
        snprintf(name, sizeof name, "%s.dW", CASES[cs]);
        float *want_dw = read_t(&st, name, &a_, &b_);
        double e_dw = max_rel_err(dW, want_dw, mn, 1e-12, NULL);
        CHECK_MSG(e_dw <= 1e-4, "%s: dW_est rel err %.3g", CASES[cs], e_dw);
        float *B = malloc(sizeof(float) * (size_t)m * r), *A = malloc(sizeof(float) * (size_t)r * n);
        CHECK_MSG(cnt_split(B, A, want_dw, (int)m, (int)n, r, s, p, 0, &err) == 0, "%s", err.msg);
        snprintf(name, sizeof name, "%s.B", CASES[cs]);
        float *rB = read_t(&st, name, &a_, &b_);
        snprintf(name, sizeof name, "%s.A", CASES[cs]);
        float *rA = read_t(&st, name, &a_, &b_);
        normalize_signs(B, A, (int)m, r, (int)n);
        normalize_signs(rB, rA, (int)m, r, (int)n);
        double eb = max_rel_err(B, rB, (size_t)m * r, 1e-12, NULL), ea = max_rel_err(A, rA, (size_t)r * n, 1e-12, NULL);
        CHECK_MSG(eb <= 1e-4 && ea <= 1e-4, "%s: SVD split rel err B %.3g, A %.3g", CASES[cs], eb, ea);
        printf("ref %s: dW_est over %d batch%s rel err %.2g; SVD split (r %d, s %g, p %g) B %.2g, A %.2g (signs "
               "normalized)\n", CASES[cs], nb, nb == 1 ? "" : "es", e_dw, r, s, p, eb, ea);
        free(acc); free(dW); free(want_dw); free(B); free(A); free(rB); free(rA);
        free(W0); free(X); free(Wt);
    }
    st_close(&st);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "x_closed_form")) x_closed_form();
    else if (!strcmp(w, "modes")) modes();
    else if (!strcmp(w, "vas")) vas();
    else if (!strcmp(w, "bad")) bad_input();
    else if (!strcmp(w, "ref")) ref();
    else {
        fprintf(stderr, "usage: test_init_cnt x_closed_form | modes | vas | bad | ref\n");
        return 2;
    }
    return test_finish(w);
}
