/* tests/test_metrics.c: the research metrics a run records (experiments/metrics.h, docs/metrics.md).
 *   metrics_welford        Welford's variance and mean (eval/grad_var.h) equal a two-pass computation
 *   metrics_gv_exact       exact-mode gradient variance at step 0 on a small ViT equals a brute-force loop over
 *                          the same K mini-batches (gradients recomputed here, variance by two passes)
 *   metrics_il_teacher     info_loss_reference: teacher: ||G_full|| recorded at step 0 = ||dL/dW|| at the backbone +
 *                          a saved teacher LoRA, computed here; reducible > 0 for a B = 0 student (0 with the
 *                          pretrained reference); a config without a teacher is refused
 *   metrics_drift_spectra  drift and spectra of known init / final factors: cosines 1 / -1, spectral norms and
 *                          singular values in closed form, numerical rank and condition number
 *   it_metrics_record      runexp on a small fine-tuning config (kaiming and ABM): the HDF5 series (names,
 *                          column names = the adapters' targets, lengths), the decomposition identity
 *                          total^2 = irreducible^2 + reducible^2 and bound >= reducible on the recorded rows, ABM's
 *                          per-layer series, the SQLite layer_results / results rows  (SKIP without Fashion-MNIST)
 *   it_metrics_bitwise     the same config with metrics.enabled=false: every training loss bit-identical
 *   it_metrics_lora_xs     the record config with method.adapter=lora_xs: the decomposition on LoRA-XS's
 *                          product-form tangent space is recorded, total^2 = irreducible^2 + reducible^2 on every row
 *   it_metrics_resume      a run with every metric on, SIGKILLed after step 35 of 60 and rerun (resumes at its
 *                          step-30 checkpoint): every HDF5 series, every SQLite result and layer result equal the
 *                          uninterrupted run's bit for bit (wall time and memory excepted) */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cpu/xent.h"
#include "core/linalg.h"
#include "core/rng.h"
#include "eval/grad_var.h"
#include "experiments/metrics.h"
#include "methods/lora.h"
#include "methods/peft_io.h"
#include "results/h5rec.h"
#include "testlib.h"
#include "testmodels.h"

static char tmpdir[256];
static void make_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_metrics_XXXXXX");
    ASSERT(mkdtemp(tmpdir));
}
static void rm_tmp(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* ---- metrics_welford ------------------------------------------------------------------------------------ */
static void test_welford(void) {
    enum { N = 37, K = 23 };
    float *x = xmalloc(sizeof(float) * N * K);
    rng_fill_normal(x, N * K, 0.3f, 2.0f, 7, 1);
    for (int i = 0; i < N * K; i++) x[i] += 1000.0f * (float)(i % N == 3); /* a large offset: Welford is stable */
    double *mean = xmalloc(sizeof(double) * N), *m2 = xmalloc(sizeof(double) * N);
    GradVar gv;
    grad_var_init(&gv, mean, m2, N);
    CHECK(isnan(grad_var_total(&gv)) && isnan(grad_var_mean_sq(&gv)));
    for (int k = 0; k < K; k++) grad_var_add(&gv, x + (size_t)k * N);
    double var = 0, msq = 0;
    for (int i = 0; i < N; i++) { /* two passes in long double */
        long double s = 0, ss = 0;
        for (int k = 0; k < K; k++) s += x[(size_t)k * N + i];
        long double mu = s / K;
        for (int k = 0; k < K; k++) ss += (x[(size_t)k * N + i] - mu) * (x[(size_t)k * N + i] - mu);
        var += (double)(ss / (K - 1));
        msq += (double)(mu * mu);
    }
    CHECK_NEAR(grad_var_total(&gv), var, 1e-10 * var);
    CHECK_NEAR(grad_var_mean_sq(&gv), msq, 1e-10 * msq);
    grad_var_reset(&gv);
    grad_var_add(&gv, x);
    CHECK(gv.k == 1 && isnan(grad_var_total(&gv)));
    /* E_A = ||A A^T - I||_2: orthonormal rows give 0; 2 x orthonormal rows give |4 - 1| = 3 */
    float A[3 * 5] = {0}, Q[5 * 3];
    float M[5 * 3];
    rng_fill_normal(M, 15, 0, 1, 3, 2);
    Error e;
    ASSERT(la_qr(Q, NULL, M, 5, 3, &e) == 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) A[i * 5 + j] = Q[j * 3 + i];
    CHECK_NEAR(orth_error(A, 3, 5), 0.0, 1e-6);
    for (int i = 0; i < 15; i++) A[i] *= 2;
    CHECK_NEAR(orth_error(A, 3, 5), 3.0, 1e-5);
    free(x), free(mean), free(m2);
}

/* ---- a small model with metrics ------------------------------------------------------------------------ */
static ImageSet synth_set(int n, const Model *m, uint64_t seed) {
    ImageSet s = {.n = n, .C = m->in_ch, .H = m->img_h, .W = m->img_w, .K = m->n_classes};
    size_t per = (size_t)s.C * s.H * s.W;
    s.x = xmalloc(sizeof(float) * per * n);
    s.y = xmalloc(sizeof(int) * n);
    rng_fill_normal(s.x, per * n, 0, 1, seed, 1);
    for (int i = 0; i < n; i++) s.y[i] = (int)(rng_uniform(seed, 2, (uint64_t)i) * s.K) % s.K;
    return s;
}

static CfgNode *method_cfg(const char *metrics) {
    char text[600];
    snprintf(text, sizeof text, "method: {adapter: lora, targets: [blocks.*.attn.qkv:q, blocks.*.attn.qkv:v]}\n"
                                "metrics: %s\n", metrics);
    Error e;
    CfgNode *c = cfg_parse_string(text, "test", &e);
    ASSERTF(c, "%s", e.msg);
    return c;
}

static void read_rows_or_fail(const char *path, const char *series, int64_t **st, double **v, int64_t *n, int *nc,
                              char ***cols) {
    Error e;
    *st = NULL, *v = NULL, *n = 0, *nc = 0, *cols = NULL;
    if (h5rec_read_rows(path, series, st, v, n, nc, cols, &e)) {
        CHECK_MSG(0, "%s: %s", series, e.msg);
    }
}

static void test_gv_exact(void) {
    make_tmp();
    Model m;
    AdapterSet ad;
    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, TEST_QV, 2, &ADAPTER_LORA, 4);
    for (int i = 0; i < ad.n; i++) /* B != 0, so both factors have gradients */
        rng_fill_normal(params_data(&ad.params, ad.a[i].t[LORA_B]), (size_t)ad.a[i].m * ad.a[i].r, 0, 0.05f, 9, i);
    params_alloc_grads(&ad.params);
    ImageSet tr = synth_set(60, &m, 5);
    enum { BATCH = 8, K = 5 };
    const uint64_t seed = 11;
    CfgNode *c = method_cfg("{every: 0, grad_var: {mode: exact, window: 5}}");
    MetricsConfig mc;
    Error e;
    Metrics *mx = NULL;
    ASSERTF(metrics_config(&mc, c, &e) == 0, "%s", e.msg);
    CHECK(mc.gv_mode == GRADVAR_EXACT && mc.gv_window == K && mc.info_loss && mc.decompose);
    ASSERTF(metrics_create(&mx, &mc, c, &m, &tr, seed, BATCH, 0.0f, &e) == 0 && mx, "%s", e.msg);
    char h5p[300], initp[300];
    snprintf(h5p, sizeof h5p, "%s/run.h5", tmpdir);
    snprintf(initp, sizeof initp, "%s/init.safetensors", tmpdir);
    H5Rec *h5;
    ASSERTF(h5rec_open(&h5, h5p, H5REC_CREATE, &e) == 0, "%s", e.msg);
    ASSERTF(metrics_begin(mx, &ad, h5, NULL, "test", initp, 0, 10, &e) == 0, "%s", e.msg);
    ASSERTF(h5rec_close(h5, &e) == 0, "%s", e.msg);
    /* brute force: the same K mini-batches (metrics.grad_var stream of step 0), gradients kept, two passes */
    int n = ad.n;
    size_t per = (size_t)tr.C * tr.H * tr.W;
    float *xb = xmalloc(sizeof(float) * per * BATCH), *logits = xmalloc(sizeof(float) * BATCH * m.n_classes);
    float *probs = xmalloc(sizeof(float) * BATCH * m.n_classes), *dl = xmalloc(sizeof(float) * BATCH * m.n_classes);
    int yb[BATCH], idx[BATCH], *perm = xmalloc(sizeof(int) * tr.n);
    rng_permutation(perm, tr.n, seed, rng_stream("metrics.grad_var", 0, 0));
    float **g[2];
    for (int f = 0; f < 2; f++) {
        g[f] = xcalloc((size_t)n, sizeof *g[f]);
        for (int i = 0; i < n; i++) g[f][i] = xmalloc(sizeof(float) * K * ad.a[i].r * (f ? ad.a[i].m : ad.a[i].n));
    }
    Arena ar;
    arena_init(&ar, 1u << 20);
    for (int k = 0; k < K; k++) {
        for (int b = 0; b < BATCH; b++) idx[b] = perm[(k * BATCH + b) % tr.n];
        imageset_batch(xb, yb, &tr, idx, BATCH, 0, seed, 0);
        params_zero_grad(&ad.params);
        arena_reset(&ar);
        model_forward(&m, logits, xb, BATCH, 0, &ar);
        xent_forward(probs, logits, yb, BATCH, m.n_classes, 0, NULL);
        xent_backward(dl, probs, yb, BATCH, m.n_classes, 0, 1.0f);
        model_backward(&m, dl, &ar);
        for (int i = 0; i < n; i++)
            for (int f = 0; f < 2; f++) {
                size_t sz = (size_t)ad.a[i].r * (f ? ad.a[i].m : ad.a[i].n);
                memcpy(g[f][i] + (size_t)k * sz, params_grad(&ad.params, ad.a[i].t[f]), sz * sizeof(float));
            }
    }
    static const char *const names[2] = {"metrics/gv_exact_A", "metrics/gv_exact_B"};
    static const char *const norm_names[2] = {"metrics/gv_exact_A_norm", "metrics/gv_exact_B_norm"};
    for (int f = 0; f < 2; f++) {
        int64_t *st, rows;
        double *v, *vn;
        int nc;
        char **cols;
        read_rows_or_fail(h5p, names[f], &st, &v, &rows, &nc, &cols);
        CHECK(rows == 1 && nc == n && st && st[0] == 0);
        for (int i = 0; cols && i < nc; i++) CHECK_MSG(!strcmp(cols[i], ad.a[i].target), "%s", cols[i]);
        free(st), free(cols);
        read_rows_or_fail(h5p, norm_names[f], &st, &vn, &rows, &nc, &cols);
        free(st), free(cols);
        for (int i = 0; v && vn && i < n && i < nc; i++) {
            size_t sz = (size_t)ad.a[i].r * (f ? ad.a[i].m : ad.a[i].n);
            double var = 0, msq = 0;
            for (size_t j = 0; j < sz; j++) {
                double s = 0, ss = 0;
                for (int k = 0; k < K; k++) s += g[f][i][(size_t)k * sz + j];
                double mu = s / K;
                for (int k = 0; k < K; k++) ss += (g[f][i][(size_t)k * sz + j] - mu) * (g[f][i][(size_t)k * sz + j] - mu);
                var += ss / (K - 1);
                msq += mu * mu;
            }
            CHECK_MSG(var > 0 && fabs(v[i] - var) <= 1e-9 * var, "%s layer %d: recorded %.12g, brute force %.12g",
                      names[f], i, v[i], var);
            CHECK_MSG(fabs(vn[i] - var / msq) <= 1e-9 * (var / msq), "%s layer %d: %.12g vs %.12g", norm_names[f], i,
                      vn[i], var / msq);
            if (i == 0) printf("%s layer 0: %.6g (brute force %.6g), normalized %.4g\n", names[f], v[i], var, vn[i]);
        }
        free(v), free(vn);
    }
    /* the information loss at step 0 equals eval/'s on the metrics batch's gradient: checked through its range */
    int64_t *st, rows;
    double *v;
    int nc;
    char **cols;
    read_rows_or_fail(h5p, "metrics/info_loss", &st, &v, &rows, &nc, &cols);
    for (int i = 0; v && i < nc; i++) CHECK_MSG(v[i] > 0 && v[i] < 1, "info_loss[%d] = %g", i, v[i]);
    free(st), free(v), free(cols);
    arena_free(&ar);
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < n; i++) free(g[f][i]);
        free(g[f]);
    }
    free(xb), free(logits), free(probs), free(dl), free(perm), free(tr.x), free(tr.y);
    metrics_free(mx);
    cfg_free(c);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
    rm_tmp();
}

/* ---- metrics_il_teacher --------------------------------------------------------------------------------- */
/* info_loss_reference: teacher. A teacher LoRA (r 4, random B) is saved as a PEFT directory; the recorded
 * ||G_full|| per layer at step 0 must equal ||dL/dW|| at the backbone + that teacher on the metrics batch,
 * computed here; with the student at the pretrained point (kaiming, B = 0) the reducible term is then > 0, while
 * with the pretrained reference it is 0. A config without a teacher is refused. */
static void test_il_teacher(void) {
    make_tmp();
    Model m;
    Error e;
    ASSERTF(model_build(&m, &TEST_SMALL_VIT, &e) == 0, "%s", e.msg);
    model_init_params(&m, 1);
    params_set_all_trainable(m.params, 0);
    params_alloc_grads(m.params);
    ImageSet tr = synth_set(40, &m, 5);
    enum { BATCH = 10 };
    const uint64_t seed = 11;
    /* the teacher, saved as PEFT; G at the teacher point on the metrics batch (stream metrics.batch) */
    AdapterSet t = {0};
    AdapterSpec sp = {.kind = &ADAPTER_LORA, .r = 4, .alpha = 8};
    ASSERTF(adapters_attach(&t, m.targets, m.n_targets, m.params, TEST_QV, 2, &sp, 21, &e) > 0, "%s", e.msg);
    for (int i = 0; i < t.n; i++)
        rng_fill_normal(params_data(&t.params, t.a[i].t[LORA_B]), (size_t)t.a[i].m * t.a[i].r, 0, 0.3f, 23, i);
    char tdir[300];
    snprintf(tdir, sizeof tdir, "%s/teacher", tmpdir);
    ASSERTF(peft_save(tdir, &t, PEFT_NAMES_AUTO, &e) == 0, "%s", e.msg);
    size_t per = (size_t)tr.C * tr.H * tr.W;
    float *x = xmalloc(sizeof(float) * per * BATCH), *logits = xmalloc(sizeof(float) * BATCH * m.n_classes);
    float *probs = xmalloc(sizeof(float) * BATCH * m.n_classes), *dl = xmalloc(sizeof(float) * BATCH * m.n_classes);
    int y[BATCH], *perm = xmalloc(sizeof(int) * tr.n);
    rng_permutation(perm, tr.n, seed, rng_stream("metrics.batch", 0, 0));
    imageset_batch(x, y, &tr, perm, BATCH, 0, seed, 0);
    LinearSlot *qkv[8] = {0};
    float *gw[8] = {0};
    int ns = 0;
    for (int i = 0; i < t.n; i++) {
        LinearSlot *s = NULL;
        for (int k = 0; k < m.n_targets; k++)
            if (!strcmp(m.targets[k].name, t.a[i].target)) s = m.targets[k].slot;
        int j = 0;
        while (j < ns && qkv[j] != s) j++;
        if (j == ns) qkv[ns] = s, gw[ns] = xcalloc((size_t)s->out * s->in, sizeof(float)), s->grad_w = gw[ns], ns++;
    }
    Arena ar;
    arena_init(&ar, 1u << 20);
    model_forward(&m, logits, x, BATCH, 0, &ar);
    xent_forward(probs, logits, y, BATCH, m.n_classes, 0, NULL);
    xent_backward(dl, probs, y, BATCH, m.n_classes, 0, 1.0f);
    model_backward(&m, dl, &ar);
    double want[8];
    for (int i = 0; i < t.n; i++) { /* ||rows [row0, row0 + m) of the slot's dL/dW|| */
        LinearSlot *s = NULL;
        for (int k = 0; k < m.n_targets; k++)
            if (!strcmp(m.targets[k].name, t.a[i].target)) s = m.targets[k].slot;
        int j = 0;
        while (qkv[j] != s) j++;
        double ss = 0;
        for (size_t k = 0; k < (size_t)t.a[i].m * s->in; k++) {
            double g = gw[j][(size_t)t.a[i].row0 * s->in + k];
            ss += g * g;
        }
        want[i] = sqrt(ss);
    }
    for (int j = 0; j < ns; j++) qkv[j]->grad_w = NULL, free(gw[j]);
    adapters_free(&t, m.targets, m.n_targets);
    params_zero_grad(m.params);
    double red[2][8] = {{0}}, gfn[2][8] = {{0}};
    for (int ref = 0; ref < 2; ref++) { /* 0: pretrained, 1: teacher */
        char text[900];
        snprintf(text, sizeof text,
                 "method: {adapter: lora, init: abm, rank: 4, alpha: 8, targets: [blocks.*.attn.qkv:q, "
                 "blocks.*.attn.qkv:v], params: {abm: {teacher: '%s'}}}\n"
                 "metrics: {every: 0, batch: %d, grad_var: {mode: off}, info_loss_reference: %s}\n",
                 tdir, BATCH, ref ? "teacher" : "pretrained");
        CfgNode *c = cfg_parse_string(text, "test", &e);
        ASSERTF(c, "%s", e.msg);
        MetricsConfig mc;
        Metrics *mx = NULL;
        ASSERTF(metrics_config(&mc, c, &e) == 0, "%s", e.msg);
        CHECK(mc.il_teacher == ref);
        ASSERTF(metrics_create(&mx, &mc, c, &m, &tr, seed, BATCH, 0.0f, &e) == 0 && mx, "%s", e.msg);
        for (int k = 0; k < m.n_targets; k++) CHECK(m.targets[k].slot->n_ad == 0); /* the teacher is off again */
        AdapterSet ad = {0}; /* the student: kaiming, B = 0, so the adapted point is the pretrained one */
        AdapterSpec ss = {.kind = &ADAPTER_LORA, .r = 4, .alpha = 8};
        ASSERTF(adapters_attach(&ad, m.targets, m.n_targets, m.params, TEST_QV, 2, &ss, 3, &e) > 0, "%s", e.msg);
        char h5p[300];
        snprintf(h5p, sizeof h5p, "%s/run%d.h5", tmpdir, ref);
        H5Rec *h5;
        ASSERTF(h5rec_open(&h5, h5p, H5REC_CREATE, &e) == 0, "%s", e.msg);
        ASSERTF(metrics_begin(mx, &ad, h5, NULL, "test", NULL, 0, 10, &e) == 0, "%s", e.msg);
        ASSERTF(h5rec_close(h5, &e) == 0, "%s", e.msg);
        static const char *const S[2] = {"metrics/il_reducible", "metrics/il_g_full_norm"};
        for (int q = 0; q < 2; q++) {
            int64_t *st, rows;
            double *v;
            int nc;
            char **cols;
            read_rows_or_fail(h5p, S[q], &st, &v, &rows, &nc, &cols);
            CHECK(rows == 1 && nc == ad.n);
            for (int i = 0; v && i < nc && i < 8; i++) (q ? gfn : red)[ref][i] = v[i];
            free(st), free(v), free(cols);
        }
        metrics_free(mx);
        adapters_free(&ad, m.targets, m.n_targets);
        cfg_free(c);
    }
    for (int i = 0; i < 4; i++) {
        printf("layer %d: ||G_full|| pretrained %.6g, teacher %.6g (computed here %.6g); reducible %.3g / %.6g\n", i,
               gfn[0][i], gfn[1][i], want[i], red[0][i], red[1][i]);
        CHECK_MSG(fabs(gfn[1][i] - want[i]) <= 1e-5 * want[i], "layer %d: recorded %.9g, teacher-point %.9g", i,
                  gfn[1][i], want[i]);
        CHECK(fabs(gfn[0][i] - want[i]) > 1e-3 * want[i]); /* the teacher moved the gradient */
        CHECK(red[0][i] < 1e-6 * gfn[0][i] && red[1][i] > 1e-3 * gfn[1][i]);
    }
    /* refused: no teacher adapter (the key names the fix) */
    CfgNode *c = cfg_parse_string("method: {adapter: lora, targets: [blocks.*.attn.qkv:q]}\n"
                                  "metrics: {info_loss_reference: teacher}\n", "test", &e);
    MetricsConfig mc;
    Metrics *mx = NULL;
    ASSERT(c && metrics_config(&mc, c, &e) == 0);
    CHECK(metrics_create(&mx, &mc, c, &m, &tr, seed, BATCH, 0.0f, &e) == -1 && !mx &&
          strstr(e.msg, "method.params.abm.teacher"));
    cfg_free(c);
    c = cfg_parse_string("metrics: {info_loss_reference: techer}\n", "test", &e);
    CHECK(c && metrics_config(&mc, c, &e) == -1 && strstr(e.msg, "techer"));
    cfg_free(c);
    arena_free(&ar);
    free(x), free(logits), free(probs), free(dl), free(perm), free(tr.x), free(tr.y);
    model_free(&m);
    rm_tmp();
}

/* ---- metrics_drift_spectra ------------------------------------------------------------------------------ */
/* Q (rows, k) with orthonormal columns. */
static void orthonormal(float *Q, int rows, int k, uint64_t seed) {
    float *M = xmalloc(sizeof(float) * rows * k);
    rng_fill_normal(M, (size_t)rows * k, 0, 1, seed, 3);
    Error e;
    ASSERT(la_qr(Q, NULL, M, rows, k, &e) == 0);
    free(M);
}

static void test_drift_spectra(void) {
    make_tmp();
    Model m;
    AdapterSet ad;
    enum { R = 4 };
    test_build_adapted(&m, &ad, &TEST_SMALL_VIT, TEST_QV, 2, &ADAPTER_LORA, R);
    params_alloc_grads(&ad.params);
    const float sig[R] = {4, 2, 1, 1e-4f}; /* the last below tol 1e-3 * 4 * s: numerical rank 3 */
    /* init: B0 = U diag(sig), A0 = V^T (orthonormal U (m,R), V (n,R)) */
    for (int i = 0; i < ad.n; i++) {
        Adapter *a = &ad.a[i];
        float *U = xmalloc(sizeof(float) * a->m * R), *V = xmalloc(sizeof(float) * a->n * R);
        orthonormal(U, a->m, R, 20 + i);
        orthonormal(V, a->n, R, 40 + i);
        float *A = params_data(&ad.params, a->t[LORA_A]), *B = params_data(&ad.params, a->t[LORA_B]);
        for (int r = 0; r < R; r++) {
            for (int j = 0; j < a->n; j++) A[r * a->n + j] = V[j * R + r];
            for (int j = 0; j < a->m; j++) B[j * R + r] = U[j * R + r] * sig[r];
        }
        free(U), free(V);
    }
    ImageSet tr = synth_set(40, &m, 6);
    CfgNode *c = method_cfg("{every: 0, info_loss: false, info_loss_decompose: false, grad_var: {mode: off}}");
    MetricsConfig mc;
    Error e;
    Metrics *mx = NULL;
    ASSERTF(metrics_config(&mc, c, &e) == 0, "%s", e.msg);
    ASSERTF(metrics_create(&mx, &mc, c, &m, &tr, 1, 8, 0.0f, &e) == 0 && mx, "%s", e.msg);
    char h5p[300], initp[300], dbp[300];
    snprintf(h5p, sizeof h5p, "%s/run.h5", tmpdir);
    snprintf(initp, sizeof initp, "%s/init.safetensors", tmpdir);
    snprintf(dbp, sizeof dbp, "%s/runs.db", tmpdir);
    H5Rec *h5;
    Db *db;
    ASSERTF(db_open(&db, dbp, &e) == 0, "%s", e.msg);
    ASSERTF(db_run_begin(db, "r1", 0, 0, 0, "cpu", "test", NULL, 0, &e) == 0, "%s", e.msg);
    ASSERTF(h5rec_open(&h5, h5p, H5REC_CREATE, &e) == 0, "%s", e.msg);
    ASSERTF(metrics_begin(mx, &ad, h5, db, "r1", initp, 0, 7, &e) == 0, "%s", e.msg);
    /* final: A = 2 A0 (cos 1, ||A - A0||_2 = ||A0||_2 = 1), B = -B0 (cos -1, ||B - B0||_2 = 2 sig_1 = 8);
     * dW = s B A = -2 dW0: cos -1, ||dW - dW0||_2 = 3 s sig_1 = 12 s; singular values of dW: 2 s sig */
    for (int i = 0; i < ad.n; i++) {
        Adapter *a = &ad.a[i];
        float *A = params_data(&ad.params, a->t[LORA_A]), *B = params_data(&ad.params, a->t[LORA_B]);
        for (int j = 0; j < a->r * a->n; j++) A[j] *= 2;
        for (int j = 0; j < a->m * a->r; j++) B[j] = -B[j];
    }
    MetricsCost cost = {.init_s = 1, .finetune_wall_s = 4, .train_s = 3};
    ASSERTF(metrics_end(mx, db, "r1", &cost, &e) == 0, "%s", e.msg);
    ASSERTF(h5rec_close(h5, &e) == 0, "%s", e.msg);
    float s = ad.a[0].scale;
    struct { const char *series; double want; } W[] = {
        {"final/drift_cos_A", 1}, {"final/drift_cos_B", -1}, {"final/drift_cos_dW", -1},
        {"final/drift_norm_A", 1}, {"final/drift_norm_B", 8}, {"final/drift_norm_dW", 12.0 * s},
        {"final/num_rank", 3}, {"final/cond", 4.0 / 1.0}};
    for (size_t q = 0; q < ARRAY_LEN(W); q++) {
        int64_t *st, rows;
        double *v;
        int nc;
        char **cols;
        read_rows_or_fail(h5p, W[q].series, &st, &v, &rows, &nc, &cols);
        CHECK_MSG(rows == 1 && nc == ad.n && st && st[0] == 7, "%s: %lld rows", W[q].series, (long long)rows);
        for (int i = 0; v && i < nc; i++)
            CHECK_MSG(fabs(v[i] - W[q].want) <= 1e-4 * fmax(1, fabs(W[q].want)), "%s[%d] = %.8g, want %.8g",
                      W[q].series, i, v[i], W[q].want);
        free(st), free(v), free(cols);
    }
    int64_t *st, rows;
    double *v;
    int nc;
    char **cols;
    read_rows_or_fail(h5p, "final/spectrum", &st, &v, &rows, &nc, &cols);
    CHECK(rows == 32 && nc == ad.n); /* min(m, n) = 32 singular values, step = index */
    for (int i = 0; v && i < nc; i++) {
        for (int r = 0; r < R; r++)
            CHECK_MSG(fabs(v[r * nc + i] - 2 * s * sig[r]) <= 1e-5 * 2 * s * sig[0], "sv %d of layer %d: %g, want %g", r,
                      i, v[r * nc + i], 2 * s * sig[r]);
        CHECK(fabs(v[R * nc + i]) <= 1e-5 * 2 * s * sig[0]);
    }
    free(st), free(v), free(cols);
    /* the database: layer results per layer, the means, the cost */
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ASSERTF(db_query_print(db, "SELECT COUNT(*) FROM layer_results WHERE run_id = 'r1' AND key = 'drift_cos_B'", 1, f,
                           &e) == 0, "%s", e.msg);
    ASSERTF(db_query_print(db, "SELECT ROUND(value, 6) FROM results WHERE run_id = 'r1' AND key = 'init_share'", 1, f,
                           &e) == 0, "%s", e.msg);
    ASSERTF(db_query_print(db, "SELECT COUNT(*) FROM layer_results WHERE key = 'adapter_rank' AND value = 4", 1, f,
                           &e) == 0, "%s", e.msg);
    fclose(f);
    char want[64];
    snprintf(want, sizeof want, "%d\n", ad.n);
    CHECK_MSG(strstr(out, want) && strstr(out, "0.25\n"), "db: %s", out);
    free(out);
    db_close(db);
    free(tr.x), free(tr.y);
    metrics_free(mx);
    cfg_free(c);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
    rm_tmp();
}

/* ---- runexp end to end ---------------------------------------------------------------------------------- */
static int run_runexp(const char *runexp, const char *cfg, const char *out, const char *extra) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s output=%s %s --threads 1 > %s.log 2>&1", runexp, cfg, out, extra ? extra : "",
             out);
    int rc = system(cmd);
    if (rc != 0) {
        char show[700];
        snprintf(show, sizeof show, "tail -20 %s.log >&2", out);
        if (system(show)) {}
    }
    return rc;
}

/* Run ids of the config's runs, from the db, with their init. */
static int list_runs(const char *dbp, char ids[][64], char inits[][32], int cap) {
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "sqlite3 -separator ' ' %s \"SELECT r.id, p.value FROM runs r JOIN params p ON p.run_id = r.id AND "
             "p.key = 'method.init' ORDER BY r.id\" 2>/dev/null",
             dbp);
    FILE *f = popen(cmd, "r");
    int n = 0;
    char line[256];
    while (f && n < cap && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %31s", ids[n], inits[n]) == 2) n++;
    if (f) pclose(f);
    return n;
}

static int runexp_ok(const char *runexp, const char *cfg) {
    if (access("/usr/share/datasets/fashion-mnist", R_OK) != 0) {
        printf("SKIP: no Fashion-MNIST\n");
        return 0;
    }
    if (system("sqlite3 -version > /dev/null 2>&1")) {
        printf("SKIP: no sqlite3 program\n");
        return 0;
    }
    (void)runexp, (void)cfg;
    return 1;
}

static void test_record(const char *runexp, const char *cfg) {
    make_tmp();
    char out[300], dbp[340];
    snprintf(out, sizeof out, "%s/on", tmpdir);
    snprintf(dbp, sizeof dbp, "%s/runs.db", out);
    CHECK(run_runexp(runexp, cfg, out, NULL) == 0);
    char ids[4][64], inits[4][32];
    int n = list_runs(dbp, ids, inits, 4);
    CHECK_MSG(n == 2, "%d runs", n);
    const char *const targets[4] = {"blocks.0.attn.qkv:q", "blocks.0.attn.qkv:v", "blocks.1.attn.qkv:q",
                                    "blocks.1.attn.qkv:v"};
    for (int r = 0; r < n; r++) {
        char h5p[500];
        snprintf(h5p, sizeof h5p, "%s/it_metrics/%s/run.h5", out, ids[r]);
        /* steps 0, 5, 10, 15, 20 (every 5, 20 steps) */
        struct { const char *s; int64_t rows; } S[] = {
            {"metrics/info_loss", 5}, {"metrics/info_loss_g_norm", 5}, {"metrics/info_loss_res_norm", 5},
            {"metrics/il_total", 5}, {"metrics/il_irreducible", 5}, {"metrics/il_reducible", 5},
            {"metrics/il_bound", 5}, {"metrics/il_g_full_norm", 5}, {"metrics/gv_exact_A", 5},
            {"metrics/gv_exact_B_norm", 5}, {"metrics/orth_err_A", 5}, {"final/drift_cos_A", 1},
            {"final/drift_norm_dW", 1}, {"final/num_rank", 1}, {"final/cond", 1}, {"final/spectrum", 16}};
        double *row[8] = {0};
        for (size_t q = 0; q < ARRAY_LEN(S); q++) {
            int64_t *st, rows;
            double *v;
            int nc;
            char **cols;
            read_rows_or_fail(h5p, S[q].s, &st, &v, &rows, &nc, &cols);
            CHECK_MSG(rows == S[q].rows && nc == 4, "%s %s: %lld rows, %d columns", inits[r], S[q].s, (long long)rows, nc);
            for (int i = 0; cols && i < nc && i < 4; i++) CHECK_MSG(!strcmp(cols[i], targets[i]), "%s", cols[i]);
            if (S[q].rows == 5 && st && rows == 5)
                for (int k = 0; k < 5; k++) CHECK_MSG(st[k] == 5 * k, "%s step %lld", S[q].s, (long long)st[k]);
            if (q >= 3 && q <= 7) row[q - 3] = v; else free(v);
            free(st), free(cols);
        }
        /* the decomposition identity on the recorded rows: total^2 = irreducible^2 + reducible^2, bound >= reducible */
        double worst = 0;
        for (int k = 0; row[0] && row[1] && row[2] && row[3] && k < 5 * 4; k++) {
            double t = row[0][k], ir = row[1][k], re = row[2][k], b = row[3][k];
            double rel = fabs(t * t - ir * ir - re * re) / (t * t);
            worst = fmax(worst, rel);
            CHECK_MSG(rel < 1e-4, "%s row %d: total^2 %.9g vs irreducible^2 + reducible^2 %.9g", inits[r], k, t * t,
                      ir * ir + re * re);
            CHECK_MSG(b >= re * (1 - 1e-5), "%s row %d: bound %.9g < reducible %.9g", inits[r], k, b, re);
            if (!strcmp(inits[r], "kaiming") && k < 4) CHECK_MSG(re < 1e-6 * t, "kaiming step 0: reducible %g", re);
        }
        printf("%s: decomposition identity worst relative error %.3g\n", inits[r], worst);
        for (int q = 0; q < 8; q++) free(row[q]);
        int64_t *st, rows;
        double *v;
        int nc;
        char **cols;
        if (!strcmp(inits[r], "abm")) { /* 5 stage-1 steps, one column per match point */
            static const char *const abm_series[3] = {"init/abm_layer_loss", "init/abm_sign_mismatch", "init/abm_cost"};
            for (int q = 0; q < 3; q++) {
                read_rows_or_fail(h5p, abm_series[q], &st, &v, &rows, &nc, &cols);
                CHECK_MSG(rows == 5 && nc == 2, "%s: %lld rows, %d columns", abm_series[q], (long long)rows, nc);
                if (q == 0 && cols) CHECK(!strcmp(cols[0], "blocks.0.mlp.fc1") && !strcmp(cols[1], "blocks.1.mlp.fc1"));
                if (q == 2 && cols) CHECK(!strcmp(cols[0], "time_s") && !strcmp(cols[1], "peak_rss_mb"));
                for (int k = 0; q == 1 && v && k < rows * nc; k++) CHECK(v[k] >= 0 && v[k] <= 1);
                free(st), free(v), free(cols);
            }
        }
    }
    /* SQLite: per-layer rows and scalar summaries for both runs */
    char cmd[700], buf[256] = "";
    snprintf(cmd, sizeof cmd,
             "sqlite3 %s \"SELECT (SELECT COUNT(*) FROM layer_results WHERE key = 'info_loss' AND step = 0) || ' ' ||"
             " (SELECT COUNT(*) FROM layer_results WHERE key = 'il_reducible' AND step = 20) || ' ' ||"
             " (SELECT COUNT(*) FROM layer_results WHERE key = 'drift_cos_dW' AND step IS NULL) || ' ' ||"
             " (SELECT COUNT(*) FROM results WHERE key IN ('il_reducible_rel_step0', 'info_loss_final',"
             " 'train_loss_early', 'init_share', 'peak_rss_bytes', 'finetune_wall_s') AND value IS NOT NULL)\"",
             dbp);
    FILE *f = popen(cmd, "r");
    if (f && fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0;
    if (f) pclose(f);
    CHECK_MSG(!strcmp(buf, "8 8 8 12"), "layer_results / results counts: '%s' (want '8 8 8 12')", buf);
    rm_tmp();
}

static void test_bitwise(const char *runexp, const char *cfg) {
    make_tmp();
    char on[300], off[300], dbp[2][340];
    snprintf(on, sizeof on, "%s/on", tmpdir);
    snprintf(off, sizeof off, "%s/off", tmpdir);
    CHECK(run_runexp(runexp, cfg, on, NULL) == 0);
    CHECK(run_runexp(runexp, cfg, off, "metrics.enabled=false") == 0);
    snprintf(dbp[0], sizeof dbp[0], "%s/runs.db", on);
    snprintf(dbp[1], sizeof dbp[1], "%s/runs.db", off);
    char ids[2][4][64], inits[2][4][32];
    int n0 = list_runs(dbp[0], ids[0], inits[0], 4), n1 = list_runs(dbp[1], ids[1], inits[1], 4);
    CHECK(n0 == 2 && n1 == 2);
    for (int a = 0; a < n0; a++)
        for (int b = 0; b < n1; b++) {
            if (strcmp(inits[0][a], inits[1][b])) continue;
            char p0[500], p1[500];
            snprintf(p0, sizeof p0, "%s/it_metrics/%s/run.h5", on, ids[0][a]);
            snprintf(p1, sizeof p1, "%s/it_metrics/%s/run.h5", off, ids[1][b]);
            int64_t *s0, *s1, k0, k1;
            double *v0, *v1;
            Error e;
            ASSERTF(h5rec_read_series(p0, "train/loss", &s0, &v0, &k0, &e) == 0, "%s", e.msg);
            ASSERTF(h5rec_read_series(p1, "train/loss", &s1, &v1, &k1, &e) == 0, "%s", e.msg);
            CHECK(k0 == 20 && k1 == 20);
            int same = k0 == k1 && memcmp(v0, v1, sizeof(double) * (size_t)k0) == 0;
            CHECK_MSG(same, "%s: training losses differ with metrics on / off", inits[0][a]);
            printf("%s: %lld losses bit-identical with metrics on and off: %s (last %.9g)\n", inits[0][a],
                   (long long)k0, same ? "yes" : "NO", v0[k0 - 1]);
            char **names;
            int nn, has = 0;
            ASSERT(h5rec_list_series(p1, &names, &nn, &e) == 0);
            for (int i = 0; i < nn; i++) has |= !strncmp(names[i], "metrics/", 8);
            CHECK_MSG(!has, "metrics off still recorded metrics/ series");
            free(names);
            free(s0), free(s1), free(v0), free(v1);
        }
    rm_tmp();
}

/* ---- it_metrics_lora_xs --------------------------------------------------------------------------------- */
/* The same config with method.adapter=lora_xs: the decomposition is recorded (on the product-form tangent space,
 * not NaN as before) and total^2 = irreducible^2 + reducible^2 holds on every recorded row. */
static void test_lora_xs(const char *runexp, const char *cfg) {
    make_tmp();
    char out[300], dbp[340];
    snprintf(out, sizeof out, "%s/xs", tmpdir);
    snprintf(dbp, sizeof dbp, "%s/runs.db", out);
    CHECK(run_runexp(runexp, cfg, out, "method.adapter=lora_xs") == 0);
    char ids[4][64], inits[4][32];
    int n = list_runs(dbp, ids, inits, 4);
    CHECK_MSG(n == 2, "%d runs", n);
    static const char *const S[3] = {"metrics/il_total", "metrics/il_irreducible", "metrics/il_reducible"};
    for (int r = 0; r < n; r++) {
        char h5p[500];
        snprintf(h5p, sizeof h5p, "%s/it_metrics/%s/run.h5", out, ids[r]);
        double *v[3] = {0};
        int64_t rows[3] = {0};
        for (int q = 0; q < 3; q++) {
            int64_t *st;
            int nc;
            char **cols;
            read_rows_or_fail(h5p, S[q], &st, &v[q], &rows[q], &nc, &cols);
            CHECK_MSG(rows[q] == 5 && nc == 4, "%s %s: %lld x %d", inits[r], S[q], (long long)rows[q], nc);
            free(st), free(cols);
        }
        double worst = 0;
        for (int k = 0; v[0] && v[1] && v[2] && k < rows[0] * 4; k++) {
            double t = v[0][k], ir = v[1][k], re = v[2][k];
            CHECK_MSG(isfinite(t) && isfinite(ir) && isfinite(re) && t > 0, "%s row %d: %g %g %g", inits[r], k, t, ir, re);
            double rel = fabs(t * t - ir * ir - re * re) / (t * t);
            worst = fmax(worst, rel);
            CHECK_MSG(rel < 1e-4, "%s row %d: total^2 %.9g vs %.9g", inits[r], k, t * t, ir * ir + re * re);
            if (!strcmp(inits[r], "kaiming") && k < 4) CHECK_MSG(re < 1e-6 * t, "kaiming step 0: reducible %g", re);
        }
        printf("lora_xs %s: decomposition identity worst relative error %.3g; step 0 layer 0 total %.5g irreducible "
               "%.5g reducible %.3g\n", inits[r], worst, v[0] ? v[0][0] : NAN, v[1] ? v[1][0] : NAN, v[2] ? v[2][0] : NAN);
        for (int q = 0; q < 3; q++) free(v[q]);
    }
    rm_tmp();
}

/* ---- it_metrics_resume ------------------------------------------------------------------------------- */
/* Series whose values are wall time or memory: they differ between any two runs. */
static int timing_series(const char *name) {
    return !strcmp(name, "train/img_s") || !strcmp(name, "init/abm_cost");
}

/* Every series of two run files: same names, steps, columns and values bit for bit (timing series: same steps).
 * Returns the number of series that differ; *n_cmp = the number compared. */
static int compare_run_files(const char *a, const char *b, int *n_cmp) {
    char **na = NULL, **nb = NULL;
    int ka = 0, kb = 0, bad = 0;
    Error e;
    ASSERTF(h5rec_list_series(a, &na, &ka, &e) == 0, "%s", e.msg);
    ASSERTF(h5rec_list_series(b, &nb, &kb, &e) == 0, "%s", e.msg);
    CHECK_MSG(ka == kb, "%d series uninterrupted, %d killed + resumed", ka, kb);
    *n_cmp = 0;
    for (int i = 0; i < ka && i < kb; i++) {
        CHECK_MSG(!strcmp(na[i], nb[i]), "series %s vs %s", na[i], nb[i]);
        int64_t *sa = NULL, *sb = NULL, ra = 0, rb = 0;
        double *va = NULL, *vb = NULL;
        int ca = 1, cb = 1;
        char **cla = NULL, **clb = NULL;
        if (h5rec_read_rows(a, na[i], &sa, &va, &ra, &ca, &cla, &e) != 0) { /* a scalar series */
            ca = cb = 1;
            ASSERTF(h5rec_read_series(a, na[i], &sa, &va, &ra, &e) == 0, "%s: %s", na[i], e.msg);
            ASSERTF(h5rec_read_series(b, nb[i], &sb, &vb, &rb, &e) == 0, "%s: %s", nb[i], e.msg);
        } else {
            ASSERTF(h5rec_read_rows(b, nb[i], &sb, &vb, &rb, &cb, &clb, &e) == 0, "%s: %s", nb[i], e.msg);
        }
        int same = ra == rb && ca == cb && memcmp(sa, sb, sizeof(int64_t) * (size_t)ra) == 0;
        if (same && !timing_series(na[i])) same = memcmp(va, vb, sizeof(double) * (size_t)(ra * ca)) == 0;
        for (int c = 0; same && cla && clb && c < ca; c++) same = !strcmp(cla[c], clb[c]);
        if (!same) {
            bad++;
            printf("  differs: %s (%lld x %d rows vs %lld x %d)\n", na[i], (long long)ra, ca, (long long)rb, cb);
        }
        (*n_cmp)++;
        free(sa), free(sb), free(va), free(vb), free(cla), free(clb);
    }
    free(na), free(nb);
    return bad;
}

static void test_resume(const char *runexp, const char *cfg) {
    make_tmp();
    static char out[1 << 16];
    char a[300], b[300], oa[320], ob[320];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(oa, sizeof oa, "output=%s", a);
    snprintf(ob, sizeof ob, "output=%s", b);
    const char *full[] = {cfg, oa, "--threads", "1", "--log-every", "5", NULL};
    const char *killed[] = {cfg, ob, "--threads", "1", "--log-every", "5", NULL};
    CHECK_MSG(test_run_program(runexp, full, NULL, SIGKILL, out, sizeof out) == 0, "uninterrupted run failed:\n%s", out);
    int rc = test_run_program(runexp, killed, "step 35/60", SIGKILL, out, sizeof out);
    CHECK_MSG(rc == 128 + SIGKILL, "the run was not killed (exit %d): it finished before step 35?", rc);
    rc = test_run_program(runexp, killed, NULL, SIGKILL, out, sizeof out);
    const char *res = strstr(out, "resumed at step ");
    long at = res ? atol(res + 16) : -1;
    CHECK_MSG(rc == 0 && at >= 30 && at < 60 && at % 10 == 0, "rerun exit %d, resumed at %ld:\n%s", rc, at, out);
    char ids[2][64], inits[2][32], dbp[340];
    snprintf(dbp, sizeof dbp, "%s/runs.db", a);
    CHECK(list_runs(dbp, ids, inits, 2) == 1);
    char ha[500], hb[500];
    snprintf(ha, sizeof ha, "%s/it_metrics_resume/%s/run.h5", a, ids[0]);
    snprintf(hb, sizeof hb, "%s/it_metrics_resume/%s/run.h5", b, ids[0]);
    int n_cmp = 0, bad = compare_run_files(ha, hb, &n_cmp);
    printf("killed after step 35, resumed at step %ld: %d of %d series identical to the uninterrupted run's "
           "(timing series: steps only)\n", at, n_cmp - bad, n_cmp);
    CHECK_MSG(bad == 0 && n_cmp >= 20, "%d of %d series differ", bad, n_cmp);
    /* SQLite results: every value equal, but for wall time and memory */
    char q[900], buf[2][1 << 14];
    for (int k = 0; k < 2; k++) {
        snprintf(q, sizeof q,
                 "sqlite3 %s/runs.db \"SELECT key || '=' || quote(value) FROM results WHERE key NOT IN ('train_s', "
                 "'img_s', 'init_s', 'init_method_s', 'finetune_wall_s', 'init_share', 'peak_rss_bytes', 'metrics_s') "
                 "ORDER BY key\"", k ? b : a);
        FILE *f = popen(q, "r");
        size_t len = f ? fread(buf[k], 1, sizeof buf[k] - 1, f) : 0;
        buf[k][len] = 0;
        if (f) pclose(f);
    }
    int nres = 0;
    for (const char *p = buf[0]; *p; p++) nres += *p == '\n';
    CHECK_MSG(!strcmp(buf[0], buf[1]), "results differ:\nuninterrupted:\n%s\nkilled + resumed:\n%s", buf[0], buf[1]);
    if (!strcmp(buf[0], buf[1])) printf("%d results (all but wall time and memory) identical\n", nres);
    CHECK(nres >= 20);
    /* layer_results: every per-layer row equal */
    for (int k = 0; k < 2; k++) {
        snprintf(q, sizeof q,
                 "sqlite3 %s/runs.db \"SELECT key || ' ' || layer || ' ' || ifnull(step, '-') || '=' || quote(value) "
                 "FROM layer_results ORDER BY key, layer, step\" | md5sum", k ? b : a);
        FILE *f = popen(q, "r");
        size_t len = f ? fread(buf[k], 1, 64, f) : 0;
        buf[k][len] = 0;
        if (f) pclose(f);
    }
    CHECK_MSG(!strcmp(buf[0], buf[1]), "layer_results differ");
    rm_tmp();
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "welford")) test_welford();
    else if (!strcmp(what, "gv_exact")) test_gv_exact();
    else if (!strcmp(what, "drift_spectra")) test_drift_spectra();
    else if (!strcmp(what, "il_teacher")) test_il_teacher();
    else if (!strcmp(what, "record") || !strcmp(what, "bitwise") || !strcmp(what, "resume") || !strcmp(what, "lora_xs")) {
        if (argc < 4) {
            fprintf(stderr, "usage: test_metrics %s RUNEXP CONFIG\n", what);
            return 2;
        }
        if (!runexp_ok(argv[2], argv[3])) return TEST_SKIP;
        if (!strcmp(what, "record")) test_record(argv[2], argv[3]);
        else if (!strcmp(what, "bitwise")) test_bitwise(argv[2], argv[3]);
        else if (!strcmp(what, "lora_xs")) test_lora_xs(argv[2], argv[3]);
        else test_resume(argv[2], argv[3]);
    } else {
        fprintf(stderr, "usage: test_metrics welford|gv_exact|drift_spectra|il_teacher|record|bitwise|lora_xs|resume [RUNEXP CONFIG]\n");
        return 2;
    }
    return test_finish(what);
}
