/* tests/test_init_fast.c: the shortcuts that make the SVD/QR initializers fast keep their results.
 *   init_olora_thin_qr  OLoRA from the thin QR of W0's first r columns (methods/init_olora.c) gives the B and A
 *                       of la_qr of the whole W0, signs included, <= 2e-6 of max |.| (float rounding), and the
 *                       new W0 = old W0 - s Q_r R_r: q (32 x 32), fc1 (64 x 32), fc2 (32 x 64), r 1, 4 and 32,
 *                       on the model's W0, Gaussian matrices, a spectrum 1 .. 1e-7, and nearly parallel
 *                       leading columns
 *   init_parallel       pissa, olora, lora_xs, lora_ga, lora_sb, corda on the tiny ViT (q and v of 4 blocks, 8
 *                       adapters, r 8) with 1 and with 2 threads (core_parallel_items): adapters and the whole
 *                       model bit for bit the same; and a failure (NaN in the W0 of adapters 1 and 3) reports
 *                       adapter 1 every time, with adapter 0 done, on 2 threads
 *   parallel_items      core_parallel_items itself: every item once, the smallest failing item's error,
 *                       thread counts restored, serial inside an OpenMP region */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/threads.h"
#include "methods/init.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "testlib.h"
#include "testmodels.h"

static void teardown(Model *m, AdapterSet *ad) {
    adapters_free(ad, m->targets, m->n_targets);
    model_free(m);
}

/* ---- init_olora_thin_qr ---------------------------------------------------------------------------------- */

/* W (m, n) = Q1 diag(s) Q2^T with s geometric from 1 to smin, Q1, Q2 orthonormal from la_qr of Gaussians. */
static void fill_spectrum(float *W, int m, int n, double smin, uint64_t stream) {
    int k = MIN(m, n);
    float *G1 = xmalloc(sizeof(float) * (size_t)m * k), *G2 = xmalloc(sizeof(float) * (size_t)n * k);
    float *Q1 = xmalloc(sizeof(float) * (size_t)m * k), *Q2 = xmalloc(sizeof(float) * (size_t)n * k);
    rng_fill_normal(G1, (size_t)m * k, 0, 1, 5, stream);
    rng_fill_normal(G2, (size_t)n * k, 0, 1, 6, stream);
    Error err;
    ASSERT(la_qr(Q1, NULL, G1, m, k, &err) == 0 && la_qr(Q2, NULL, G2, n, k, &err) == 0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int l = 0; l < k; l++)
                v += (double)Q1[(size_t)i * k + l] * pow(smin, (double)l / (k - 1)) * Q2[(size_t)j * k + l];
            W[(size_t)i * n + j] = (float)v;
        }
    free(G1), free(G2), free(Q1), free(Q2);
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return s > 0 ? d / s : d;
}

static void test_olora_thin_qr(void) {
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2"};
    const char *kinds[] = {"model", "gaussian", "spectrum 1..1e-7", "nearly parallel columns"};
    int ranks[] = {1, 4, 32};
    for (size_t ri = 0; ri < ARRAY_LEN(ranks); ri++)
        for (int w = 0; w < 4; w++) {
            Model m;
            AdapterSet ad;
            int r = ranks[ri];
            test_build_adapted(&m, &ad, &TEST_SMALL_VIT, pats, 3, &ADAPTER_LORA, r);
            double worst_b = 0, worst_a = 0, worst_w = 0;
            float **old = xcalloc((size_t)ad.n, sizeof *old);
            for (int i = 0; i < ad.n; i++) {
                Adapter *a = &ad.a[i];
                size_t mn = (size_t)a->m * a->n;
                if (w == 1) rng_fill_normal(a->W0, mn, 0, 1, 9, (uint64_t)i);
                if (w == 2) fill_spectrum(a->W0, a->m, a->n, 1e-7, (uint64_t)i);
                if (w == 3) { /* columns 1..3 = column 0 + 1e-5 noise: R's leading block is nearly singular */
                    rng_fill_normal(a->W0, mn, 0, 1, 10, (uint64_t)i);
                    for (int o = 0; o < a->m; o++) {
                        float *row = a->W0 + (size_t)o * a->n;
                        for (int j = 1; j < 4; j++) row[j] = row[0] * (1.0f + 1e-5f * row[j]);
                    }
                }
                old[i] = xmalloc(sizeof(float) * mn);
                memcpy(old[i], a->W0, sizeof(float) * mn);
            }
            InitContext ctx = {.model = &m, .set = &ad, .seed = 1};
            InitResult res;
            Error err;
            CHECK_MSG(init_run("olora", &ctx, &res, &err) == 0, "%s", err.msg);
            for (int i = 0; i < ad.n; i++) {
                Adapter *a = &ad.a[i];
                int mm = a->m, n = a->n, k = MIN(mm, n);
                float *Q = xmalloc(sizeof(float) * (size_t)mm * k), *R = xmalloc(sizeof(float) * (size_t)k * n);
                float *Qr = xmalloc(sizeof(float) * (size_t)mm * r), *W = xmalloc(sizeof(float) * (size_t)mm * n);
                CHECK(la_qr(Q, R, old[i], mm, n, &err) == 0);
                for (int o = 0; o < mm; o++) memcpy(Qr + (size_t)o * r, Q + (size_t)o * k, sizeof(float) * r);
                const float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
                double eb = rel_diff(B, Qr, (size_t)mm * r), ea = rel_diff(A, R, (size_t)r * n); /* R's first r rows */
                for (int o = 0; o < mm; o++)
                    for (int j = 0; j < n; j++) {
                        double acc = 0;
                        for (int c = 0; c < r; c++) acc += (double)Qr[(size_t)o * r + c] * R[(size_t)c * n + j];
                        W[(size_t)o * n + j] = (float)(old[i][(size_t)o * n + j] - a->scale * acc);
                    }
                double d = 0, sc = 0; /* relative to the old W0's scale: the new W0 is ~0 when r = k */
                for (size_t t = 0; t < (size_t)mm * n; t++) {
                    d = fmax(d, fabs((double)a->W0[t] - W[t]));
                    sc = fmax(sc, fabs((double)old[i][t]));
                }
                double ew = d / sc;
                CHECK_MSG(eb <= 2e-6, "olora r %d, %s, %s: B vs la_qr's Q[:, :r]: %.3g", r, kinds[w], a->target, eb);
                CHECK_MSG(ea <= 2e-6, "olora r %d, %s, %s: A vs la_qr's R[:r, :]: %.3g", r, kinds[w], a->target, ea);
                CHECK_MSG(ew <= 2e-6, "olora r %d, %s, %s: new W0: %.3g", r, kinds[w], a->target, ew);
                worst_b = fmax(worst_b, eb), worst_a = fmax(worst_a, ea), worst_w = fmax(worst_w, ew);
                free(Q), free(R), free(Qr), free(W), free(old[i]);
            }
            printf("olora thin QR, r %2d, W0 %-24s (%d layers up to 64 x 32 / 32 x 64): vs la_qr of W0, max rel "
                   "err B %.2g, A %.2g, new W0 %.2g (signs as they come)\n", r, kinds[w], ad.n, worst_b, worst_a,
                   worst_w);
            free(old);
            teardown(&m, &ad);
        }
}

/* ---- init_parallel --------------------------------------------------------------------------------------- */

typedef struct Synth {
    int per, K;
} Synth;

static int synth_batch(void *p, int i, int B, float *x, int *y) {
    const Synth *s = p;
    uint64_t st = rng_stream("test.init_fast", (uint64_t)i, 0);
    rng_fill_uniform(x, (size_t)B * s->per, -1.0f, 1.0f, 77, st);
    for (int k = 0; k < B; k++) y[k] = (int)(rng_uniform(78, st, (uint64_t)k) * s->K) % s->K;
    return B;
}

typedef struct Run {
    Model m;
    AdapterSet ad;
    Synth sd;
    InitContext ctx;
} Run;

static void run_setup(Run *u, const AdapterKind *kind) {
    test_build_adapted(&u->m, &u->ad, &TEST_TINY_VIT, TEST_QV, 2, kind, 8);
    u->sd = (Synth){.per = u->m.in_ch * u->m.img_h * u->m.img_w, .K = u->m.n_classes};
    u->ctx = (InitContext){.model = &u->m, .set = &u->ad, .seed = 11,
                           .data = {.batch = synth_batch, .ctx = &u->sd, .n_images = 1 << 20},
                           .batch = 16, .n_batches = 2, .lr = 1e-2f, .warmup_frac = 0.1f, .total_steps = 100,
                           .adamw = 1};
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_parallel(void) {
    const AdapterKind *xs = adapter_find("lora_xs");
    static const char *inits[] = {"pissa", "olora", "lora_xs", "lora_ga", "lora_sb", "corda"};
    int restore = core_threads();
    for (size_t t = 0; t < ARRAY_LEN(inits); t++) {
        const char *name = inits[t];
        int want_xs = !strcmp(name, "lora_xs") || !strcmp(name, "lora_sb");
        if (!init_find(name) || (want_xs && !xs)) {
            printf("%s: not registered, skipped\n", name);
            continue;
        }
        Run u[2];
        double wall[2];
        for (int v = 0; v < 2; v++) {
            run_setup(&u[v], want_xs ? xs : &ADAPTER_LORA);
            core_set_threads(v + 1);
            InitResult res;
            Error err;
            CHECK_MSG(init_run(name, &u[v].ctx, &res, &err) == 0, "%s, %d threads: %s", name, v + 1, err.msg);
            wall[v] = res.wall_s;
        }
        core_set_threads(restore);
        CHECK(u[0].ad.params.numel == u[1].ad.params.numel && u[0].m.params->numel == u[1].m.params->numel);
        int same_ad = same_bits(u[0].ad.params.data, u[1].ad.params.data, u[0].ad.params.numel);
        int same_model = same_bits(u[0].m.params->data, u[1].m.params->data, u[0].m.params->numel);
        CHECK_MSG(same_ad, "%s: adapters differ between 1 and 2 threads", name);
        CHECK_MSG(same_model, "%s: model weights differ between 1 and 2 threads", name);
        printf("%s: %d adapters of %d x %d, r 8, 1 thread %.1f ms, 2 threads %.1f ms: adapters %s, model %s\n", name,
               u[0].ad.n, u[0].ad.a[0].m, u[0].ad.a[0].n, wall[0] * 1e3, wall[1] * 1e3,
               same_ad ? "bit-identical" : "DIFFER", same_model ? "bit-identical" : "DIFFER");
        for (int v = 0; v < 2; v++) teardown(&u[v].m, &u[v].ad);
    }
    /* a failure is reported for the first failing adapter, whatever the scheduling */
    static const char *fail_inits[] = {"pissa", "olora"};
    core_set_threads(2);
    for (size_t t = 0; t < ARRAY_LEN(fail_inits); t++)
        for (int rep = 0; rep < 5; rep++) {
            Run u;
            run_setup(&u, &ADAPTER_LORA);
            u.ad.a[1].W0[7] = NAN;
            u.ad.a[3].W0[2] = NAN;
            float *B0 = params_data(u.ad.a[0].ps, u.ad.a[0].t[LORA_B]);
            InitResult res;
            Error err = {{0}};
            CHECK(init_run(fail_inits[t], &u.ctx, &res, &err) < 0);
            CHECK_MSG(strstr(err.msg, u.ad.a[1].target) && strstr(err.msg, "non-finite"), "%s: %s", fail_inits[t],
                      err.msg);
            CHECK_MSG(!strstr(err.msg, u.ad.a[3].target), "%s: %s", fail_inits[t], err.msg);
            int done0 = 0;
            for (int i = 0; i < u.ad.a[0].m * u.ad.a[0].r; i++) done0 |= B0[i] != 0;
            CHECK_MSG(done0, "%s: adapter 0 (before the failing one) was not initialized", fail_inits[t]);
            if (rep == 0) printf("%s, NaN in adapters 1 and 3, 2 threads: %s\n", fail_inits[t], err.msg);
            teardown(&u.m, &u.ad);
        }
    core_set_threads(restore);
}

/* ---- parallel_items -------------------------------------------------------------------------------------- */

typedef struct Items {
    int n, fail_from, fail_every;
    int *count;
} Items;

static int item(void *p, int i, Error *err) {
    Items *it = p;
#pragma omp atomic
    it->count[i]++;
    /* a little LAPACK-sized work, so threads overlap */
    float A[16 * 16], S[16];
    rng_fill_normal(A, 256, 0, 1, 3, (uint64_t)i);
    la_svd(NULL, S, NULL, A, 16, 16, NULL);
    if (i >= it->fail_from && (i - it->fail_from) % it->fail_every == 0) return err_set(err, "item %d failed", i);
    return 0;
}

static void test_parallel_items(void) {
    int restore = core_threads();
    core_set_threads(2);
    int blas_before = openblas_get_num_threads();
    Items it = {.n = 64, .fail_from = 1 << 30, .fail_every = 1};
    it.count = xcalloc(64, sizeof(int));
    Error err = {{0}};
    CHECK(core_parallel_items(64, item, &it, &err) == 0);
    int once = 1;
    for (int i = 0; i < 64; i++) once &= it.count[i] == 1;
    CHECK_MSG(once, "every item exactly once");
    CHECK_MSG(core_threads() == 2 && openblas_get_num_threads() == blas_before,
              "threads restored: OpenMP %d (want 2), OpenBLAS %d (want %d)", core_threads(),
              openblas_get_num_threads(), blas_before);
    for (int rep = 0; rep < 20; rep++) { /* items 5, 8, 11, ... fail: always item 5's error */
        memset(it.count, 0, 64 * sizeof(int));
        it.fail_from = 5, it.fail_every = 3;
        CHECK(core_parallel_items(64, item, &it, &err) == -1);
        CHECK_MSG(!strcmp(err.msg, "item 5 failed"), "rep %d: %s", rep, err.msg);
        int before = 1;
        for (int i = 0; i <= 5; i++) before &= it.count[i] == 1;
        CHECK_MSG(before, "items 0..5 ran");
    }
    CHECK(core_parallel_items(0, item, &it, &err) == 0);
    /* inside an OpenMP region: serial, stops at the first failure, OpenBLAS left alone */
    int rc = 0;
    memset(it.count, 0, 64 * sizeof(int));
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        rc = core_parallel_items(64, item, &it, &err);
    }
    CHECK(rc == -1 && !strcmp(err.msg, "item 5 failed"));
    int ran = 0;
    for (int i = 0; i < 64; i++) ran += it.count[i];
    CHECK_MSG(ran == 6, "serial inside a region: %d items ran, want 6 (0..5)", ran);
    free(it.count);
    core_set_threads(restore);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "olora_thin_qr")) test_olora_thin_qr();
    else if (!strcmp(w, "parallel")) test_parallel();
    else if (!strcmp(w, "parallel_items")) test_parallel_items();
    else {
        fprintf(stderr, "usage: %s olora_thin_qr|parallel|parallel_items\n", argv[0]);
        return 2;
    }
    return test_finish(w);
}
