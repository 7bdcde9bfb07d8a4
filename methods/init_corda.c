/* methods/init_corda.c: CorDA, context-oriented decomposition adaptation (Yang et al. 2024), METHODS.md
 * "Data-driven initializers", per adapted layer with input covariance C (n x n):
 *   per sample, X (T x n: one image's tokens) is divided by max|X|; C = mean over samples of X^T X;
 *   d = 0.01; C' = C + d mean(diag C) I; while ||C' C'^{-1} - I||_F >= 0.05: d *= 2;
 *   SVD(W0 C') = U S Vh; V^T = Vh C'^{-1}; IPM keeps the r largest components, KPM the r smallest;
 *   S <- S / s; B = U_r S_r^{1/2}, A = S_r^{1/2} V_r^T; W0 <- W0 - s B A  (so the function is kept).
 *
 * What this follows from PEFT (huggingface/peft src/peft/tuners/lora/corda.py: calib_cov_distribution,
 * collect_eigens_for_layer, crop_corda_eigens; layer.py: LoraLayer.corda_init; read at 5d602fd), where
 * METHODS.md leaves it open:
 *   - A sample is one forward call of PEFT's hook with batch size 1 (input[0].squeeze(0): context x dim), and
 *     the covariance is the SUM over its tokens (input^T input), averaged over samples (sample_count). Here a
 *     sample is one image: rows [s T, (s + 1) T) of the tap, T = N / B with B the images the init batch
 *     actually had. Samples of all init batches (ctx->n_batches) are used; there is no stopping rule.
 *   - The damping residual is torch.dist(C' C'^{-1}, I) (Frobenius), d starting at 0.01 and doubling, and
 *     the shift is d mean(diag C) I. PEFT does this in float32 (torch.linalg.inv, LU); here C'^{-1} is the
 *     inverse of the float-rounded C' from its eigendecomposition in double (dsyevd; for the symmetric positive
 *     definite C' this is the SVD inverse, nothing dropped) rounded to float, and the residual is
 *     computed in double, which keeps the loop's float32 sense (it only iterates when C' is ill-conditioned
 *     at float precision: with C PSD, cond(C') <= n / d + 1, and a rank-3 64 x 64 C gives a residual of 1e-4
 *     at d = 0.01, so on layers of this size d stays 0.01). The loop is bounded (60 doublings, then an error
 *     naming the layer), and a zero covariance is refused instead of looping.
 *   - SVD(W0 C') thin (torch.linalg.svd full_matrices=False; IPM: la_svd_top, the r leading triplets in double;
 *     KPM: la_svd, dgesdd in double), V = (Vh C'^{-1})^T.
 *     IPM keeps components [0, r) and KPM [k - r, k) of the k = min(m, n) (crop_corda_eigens: S[-r:], in
 *     the SVD's descending order); "S /= scaling" with scaling = a->scale (alpha / r, or alpha / sqrt r
 *     with rsLoRA, as PEFT's self.scaling); lora_A = V^T * sqrt(S), lora_B = U * sqrt(S); the new W0 is
 *     W0 - scaling * lora_B @ lora_A computed from the stored (float) A and B.
 *   - Adapters on one host linear (q and v of a fused qkv) share its input and so one C (PEFT computes C per
 *     nn.Linear); C' and C'^{-1} are computed once per host linear.
 * Where METHODS.md and PEFT differ, METHODS.md is followed: the per-sample scale is max|X| (PEFT divides by
 * torch.max(input).abs(), |max X|, which differs when the most negative entry is the largest in magnitude).
 * An all-zero sample adds 0 (PEFT would divide by 0 and raise on the NaN). Options (method.params.corda.*):
 * mode: ipm (default) | kpm; batch / batches are the engine's. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "core/cpu/linear.h"
#include "core/linalg.h"
#include "core/threads.h"
#include "init_act.h"
#include "init_data.h"
#include "lora.h"

#define CORDA_TOL 0.05      /* METHODS.md, CorDA: damping loop */
#define CORDA_MAX_DOUBLINGS 60

int corda_cov_add(double *C, const float *X, int N, int T, int n, Error *err) {
    if (T <= 0 || N % T)
        return err_set(err, "corda_cov_add: %d input rows are not a whole number of samples of %d rows", N, T);
    int S = N / T;
    float *Y = xmalloc(sizeof(float) * (size_t)N * n), *G = xcalloc((size_t)n * n, sizeof(float));
    int rc = 0;
    for (int s = 0; s < S && rc == 0; s++) {
        const float *x = X + (size_t)s * T * n;
        float mx = 0;
        for (size_t t = 0; t < (size_t)T * n; t++) {
            if (!isfinite(x[t])) {
                rc = err_set(err, "corda_cov_add: sample %d has a non-finite input %g at row %zu, column %zu",
                             s, (double)x[t], t / n, t % n);
                break;
            }
            mx = fmaxf(mx, fabsf(x[t]));
        }
        float *y = Y + (size_t)s * T * n;
        for (size_t t = 0; t < (size_t)T * n; t++) y[t] = mx > 0 ? x[t] / mx : 0.0f;
    }
    if (rc == 0) {
        /* sum over samples of Y_s^T Y_s = Y^T Y over all rows: one GEMM (linear_backward's dW += dout^T inp) */
        linear_backward(NULL, G, NULL, Y, Y, NULL, N, n, n);
        for (size_t t = 0; t < (size_t)n * n; t++) C[t] += G[t];
    }
    free(Y);
    free(G);
    return rc ? -1 : S;
}

/* Cinv (n, n) = the inverse of the symmetric C (float, symmetrised) from its eigendecomposition in double
 * (dsyevd): V diag(1 / w) V^T, rounded to float. For a symmetric positive definite C this is the SVD inverse
 * (singular values = eigenvalues), at a third of dgesdd's cost. W: 3 n^2 + n doubles of scratch. A zero
 * eigenvalue is dropped (the pseudo-inverse's rule); a non-finite entry or LAPACK failing is an error. */
static int spd_inverse(float *Cinv, const float *C, int n, double *W, Error *err) {
    double *V = W, *T = W + (size_t)n * n, *w = W + 3 * (size_t)n * n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double a = C[(size_t)i * n + j], b = C[(size_t)j * n + i];
            if (!isfinite(a)) return err_set(err, "the damped covariance has a non-finite entry (%d, %d)", i, j);
            V[(size_t)i * n + j] = 0.5 * (a + b);
        }
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, V, n, w);
    if (info != 0) return err_set(err, "inverting the damped covariance (%d x %d): dsyevd failed (info %d)", n, n, (int)info);
    for (int i = 0; i < n; i++) /* T = V diag(1 / w) */
        for (int j = 0; j < n; j++) T[(size_t)i * n + j] = w[j] != 0 ? V[(size_t)i * n + j] / w[j] : 0.0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, T, n, V, n, 0.0, T + (size_t)n * n, n);
    for (size_t t = 0; t < (size_t)n * n; t++) Cinv[t] = (float)T[(size_t)n * n + t];
    return 0;
}

int corda_damp(double *Cfix, float *Cinv, const float *C, int n, double tol, double *d_out, int *doublings,
               double *resid_out, Error *err) {
    double mu = 0;
    for (int i = 0; i < n; i++) mu += C[(size_t)i * n + i];
    mu /= n;
    if (!(mu > 0) || !isfinite(mu))
        return err_set(err, "the input covariance has mean diagonal %g: expected a positive number (were the "
                       "layer's inputs all zero?)", mu);
    float *Cf = xmalloc(sizeof(float) * (size_t)n * n);
    double *W = xmalloc(sizeof(double) * 3 * (size_t)n * n + sizeof(double) * n); /* spd_inverse's and the residual's */
    double d = 0.01, resid = 0;
    int it = 0, rc = 0;
    for (;; it++) {
        for (size_t t = 0; t < (size_t)n * n; t++) Cfix[t] = C[t];
        for (int i = 0; i < n; i++) Cfix[(size_t)i * n + i] += d * mu;
        for (size_t t = 0; t < (size_t)n * n; t++) Cf[t] = (float)Cfix[t];
        if (spd_inverse(Cinv, Cf, n, W, err)) { rc = -1; break; }
        /* ||C' C'^{-1} - I||_F: one dgemm in double */
        for (size_t t = 0; t < (size_t)n * n; t++) W[t] = Cinv[t];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, Cfix, n, W, n, 0.0, W + (size_t)n * n, n);
        double ss = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double v = W[(size_t)n * n + (size_t)i * n + j] - (i == j);
                ss += v * v;
            }
        resid = sqrt(ss);
        if (resid < tol) break;
        if (it == CORDA_MAX_DOUBLINGS) {
            rc = err_set(err, "the damping loop did not reach ||C' C'^-1 - I||_F < %g after %d doublings (d = %g, "
                         "residual %.3g)", tol, it, d, resid);
            break;
        }
        d *= 2;
    }
    if (d_out) *d_out = d;
    if (doublings) *doublings = it;
    if (resid_out) *resid_out = resid;
    free(Cf);
    free(W);
    return rc;
}

static int check_adapter(const Adapter *a, Error *err) {
    if (a->kind != &ADAPTER_LORA)
        return err_set(err, "method.init 'corda' needs LoRA adapters, '%s' has a %s adapter", a->target,
                       a->kind->name);
    if (a->r > MIN(a->m, a->n))
        return err_set(err, "method.init 'corda': %s: rank %d is larger than min(m, n) = %d (the layer is %d x %d): "
                       "expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n, MIN(a->m, a->n));
    return 0;
}

/* A (r, n) and B (m, r) of one adapter from C' and C'^{-1}; nothing of the adapter is touched. */
static int corda_factors(const Adapter *a, const double *Cfix, const float *Cinv, int ipm, float *A, float *B,
                         Error *err) {
    int m = a->m, n = a->n, r = a->r, k = MIN(m, n);
    float *WC = xmalloc(sizeof(float) * (size_t)m * n);
    double *acc = xmalloc(sizeof(double) * n);
    { /* W0 C' in double (one dgemm), rounded to float for the SVD */
        double *Wd = xmalloc(sizeof(double) * (size_t)m * n * 2);
        for (size_t t = 0; t < (size_t)m * n; t++) Wd[t] = a->W0[t];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, Wd, n, Cfix, n, 0.0, Wd + (size_t)m * n, n);
        for (size_t t = 0; t < (size_t)m * n; t++) WC[t] = (float)Wd[(size_t)m * n + t];
        free(Wd);
    }
    /* IPM keeps the r leading triplets: la_svd_top (its sign rule, not dgesdd's; s B A does not depend on it);
     * KPM the r trailing ones: the full SVD */
    int kk = ipm ? r : k;
    float *U = xmalloc(sizeof(float) * (size_t)m * kk), *S = xmalloc(sizeof(float) * kk);
    float *Vt = xmalloc(sizeof(float) * (size_t)kk * n);
    Error e;
    int rc = ipm ? la_svd_top(U, S, Vt, WC, m, n, r, &e) : la_svd(U, S, Vt, WC, m, n, &e);
    if (rc) {
        err_set(err, "method.init 'corda': %s (%d x %d): %s", a->target, m, n, e.msg);
    } else {
        double s = a->scale;
        int c0 = ipm ? 0 : k - r; /* IPM: the r largest; KPM: the r smallest (PEFT crop_corda_eigens) */
        for (int c = 0; c < r; c++) {
            int idx = c0 + c;
            double q = sqrt((double)S[idx] / s); /* sqrt(S / s) */
            for (int j = 0; j < n; j++) acc[j] = 0;
            for (int l = 0; l < n; l++) { /* row idx of Vh C'^{-1} = column idx of V */
                double v = Vt[(size_t)idx * n + l];
                const float *iv = Cinv + (size_t)l * n;
                for (int j = 0; j < n; j++) acc[j] += v * iv[j];
            }
            for (int j = 0; j < n; j++) A[(size_t)c * n + j] = (float)(q * acc[j]);
            for (int o = 0; o < m; o++) B[(size_t)o * r + c] = (float)(q * U[(size_t)o * kk + idx]);
        }
    }
    free(WC);
    free(acc);
    free(U);
    free(S);
    free(Vt);
    return rc;
}

/* A, B into the adapter; W0 <- W0 - s B A with the stored float B and A (W0 + s B A = old W0 to rounding). */
static void corda_commit(Adapter *a, const float *A, const float *B) {
    int m = a->m, n = a->n, r = a->r;
    float *At = params_data(a->ps, a->t[LORA_A]), *Bt = params_data(a->ps, a->t[LORA_B]);
    memcpy(At, A, sizeof(float) * (size_t)r * n);
    memcpy(Bt, B, sizeof(float) * (size_t)m * r);
    double s = a->scale;
    for (int o = 0; o < m; o++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int c = 0; c < r; c++) acc += (double)B[(size_t)o * r + c] * A[(size_t)c * n + j];
            float *w = &a->W0[(size_t)o * n + j];
            *w = (float)(*w - s * acc);
        }
}

int corda_from_cov(Adapter *a, const float *C, int ipm, CordaInfo *info, Error *err) {
    if (check_adapter(a, err)) return -1;
    int n = a->n;
    double *Cfix = xmalloc(sizeof(double) * (size_t)n * n);
    float *Cinv = xmalloc(sizeof(float) * (size_t)n * n);
    float *A = xmalloc(sizeof(float) * (size_t)a->r * n), *B = xmalloc(sizeof(float) * (size_t)a->m * a->r);
    CordaInfo in = {0};
    Error e;
    int rc = corda_damp(Cfix, Cinv, C, n, CORDA_TOL, &in.damp, &in.doublings, &in.resid, &e);
    if (rc) err_set(err, "method.init 'corda': %s (%d x %d): %s", a->target, a->m, n, e.msg);
    else rc = corda_factors(a, Cfix, Cinv, ipm, A, B, err);
    if (rc == 0) corda_commit(a, A, B);
    if (info) *info = in;
    free(Cfix);
    free(Cinv);
    free(A);
    free(B);
    return rc;
}

/* ---- the initializer ---- */

typedef struct Corda {
    InitData data;       /* the caller's init data, wrapped by corda_batch to learn each batch's image count */
    int *images;         /* (n_batches) images in batch i */
    int n_batches;
    int ng;
    LinearSlot **slot;   /* (ng) host linears */
    double **C;          /* (ng) n x n sums */
    long *samples;       /* (ng) */
    int *last_batch;     /* (ng) */
    int *group_of;       /* (set->n) */
} Corda;

static int corda_batch(void *p, int i, int B, float *x, int *y) {
    Corda *c = p;
    int got = c->data.batch(c->data.ctx, i, B, x, y);
    if (i < c->n_batches) c->images[i] = got;
    return got;
}

/* C += S: init_input_stats with per_sample_max gives S = sum over the batch's images of Y_s^T Y_s (what
 * corda_cov_add computes from the rows; on the accelerator when the context has one); one per host linear. */
static void corda_stats(void *user, int ai, const double *S, const double *cs, long N, int b) {
    (void)cs;
    (void)N;
    Corda *c = user;
    int q = c->group_of[ai];
    if (c->last_batch[q] == b) return;
    c->last_batch[q] = b;
    int n = c->slot[q]->in;
    for (size_t t = 0; t < (size_t)n * n; t++) c->C[q][t] += S[t];
    c->samples[q] += b < c->n_batches ? c->images[b] : 0;
}

static void corda_free(Corda *c) {
    for (int q = 0; q < c->ng; q++) free(c->C[q]);
    free(c->C);
    free(c->slot);
    free(c->samples);
    free(c->last_batch);
    free(c->group_of);
    free(c->images);
}

/* One host linear q: C = the mean over samples, C' and C'^{-1} (damping), then A and B of each of its adapters
 * into A[i], B[i] (nothing of the adapters is touched); d and doublings into d[q], dbl[q]. */
typedef struct CordaGroups {
    const Corda *c;
    const AdapterSet *set;
    int ipm;
    float **A, **B;  /* (set->n) */
    double *d;       /* (ng) */
    int *dbl;        /* (ng) */
} CordaGroups;

static int corda_group(void *p, int q, Error *err) {
    CordaGroups *g = p;
    const Corda *c = g->c;
    int n = c->slot[q]->in, rc = 0;
    float *Cf = xmalloc(sizeof(float) * (size_t)n * n), *Cinv = xmalloc(sizeof(float) * (size_t)n * n);
    double *Cfix = xmalloc(sizeof(double) * (size_t)n * n);
    for (size_t t = 0; t < (size_t)n * n; t++) Cf[t] = (float)(c->C[q][t] / (double)c->samples[q]);
    double resid;
    Error e;
    int first = 0;
    while (c->group_of[first] != q) first++;
    if (corda_damp(Cfix, Cinv, Cf, n, CORDA_TOL, &g->d[q], &g->dbl[q], &resid, &e)) {
        rc = err_set(err, "method.init 'corda': %s (input of %d features, %ld samples): %s", g->set->a[first].target,
                     n, c->samples[q], e.msg);
    } else {
        for (int i = first; i < g->set->n && rc == 0; i++) {
            if (c->group_of[i] != q) continue;
            const Adapter *a = &g->set->a[i];
            g->A[i] = xmalloc(sizeof(float) * (size_t)a->r * a->n);
            g->B[i] = xmalloc(sizeof(float) * (size_t)a->m * a->r);
            rc = corda_factors(a, Cfix, Cinv, g->ipm, g->A[i], g->B[i], err);
        }
    }
    free(Cf);
    free(Cinv);
    free(Cfix);
    return rc;
}

static int init_corda(InitContext *ctx, InitResult *res, Error *err) {
    const char *mode = init_opt_string(ctx, "mode", "ipm");
    int ipm = !strcmp(mode, "ipm");
    if (!ipm && strcmp(mode, "kpm"))
        return err_set(err, "method.init 'corda': method.params.corda.mode is '%s', expected ipm (instruction-"
                       "previewed, the default) or kpm (knowledge-preserved)", mode);
    AdapterSet *set = ctx->set;
    if (set->n == 0) return err_set(err, "method.init 'corda': no adapters are attached");
    for (int i = 0; i < set->n; i++)
        if (check_adapter(&set->a[i], err)) return -1;
    if (!ctx->data.batch || ctx->batch <= 0) /* checked here: init_input_stats sees the wrapped data */
        return err_set(err, "method.init 'corda' needs init batches of the task's training data, and none were "
                       "given (batch size %d)", ctx->batch);
    if (ctx->n_batches < 1)
        return err_set(err, "method.init 'corda': %d init batches requested (method.params.corda.batches): "
                       "expected at least 1", ctx->n_batches);
    Corda c = {.data = ctx->data, .n_batches = ctx->n_batches};
    c.images = xcalloc((size_t)ctx->n_batches, sizeof(int));
    c.slot = xcalloc((size_t)set->n, sizeof *c.slot);
    c.C = xcalloc((size_t)set->n, sizeof *c.C);
    c.samples = xcalloc((size_t)set->n, sizeof *c.samples);
    c.last_batch = xcalloc((size_t)set->n, sizeof(int));
    c.group_of = xcalloc((size_t)set->n, sizeof(int));
    Model *m = ctx->model;
    for (int i = 0; i < set->n; i++) {
        LinearSlot *s = NULL;
        for (int t = 0; t < m->n_targets && !s; t++)
            for (int k = 0; k < m->targets[t].slot->n_ad; k++)
                if (m->targets[t].slot->ad[k] == &set->a[i]) s = m->targets[t].slot;
        ASSERT(s);
        int q = 0;
        while (q < c.ng && c.slot[q] != s) q++;
        if (q == c.ng) {
            c.slot[c.ng] = s;
            c.C[c.ng] = xcalloc((size_t)s->in * s->in, sizeof(double));
            c.last_batch[c.ng++] = -1;
        }
        c.group_of[i] = q;
    }
    InitContext tc = *ctx;
    tc.data.batch = corda_batch;
    tc.data.ctx = &c;
    int batches = init_input_stats(&tc, ctx->n_batches, 1, corda_stats, &c, err);
    if (batches < 0) {
        char msg[ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        corda_free(&c);
        return err_set(err, "method.init 'corda': %s", msg);
    }
    /* Per host linear: C = mean over samples, C' and C'^{-1}; per adapter: A and B. W0 changes only once every
     * layer has succeeded. */
    float **A = xcalloc((size_t)set->n, sizeof *A), **B = xcalloc((size_t)set->n, sizeof *B);
    double dmin = INFINITY, dmax = 0;
    int maxdbl = 0, rc = 0;
    long samples = 0;
    /* the host linears side by side (core_parallel_items), the same bits as one by one; groups are numbered
     * in the order of their first adapter, so the error reported is the first failing adapter's */
    CordaGroups gs = {.c = &c, .set = set, .ipm = ipm, .A = A, .B = B};
    gs.d = xcalloc((size_t)c.ng, sizeof *gs.d);
    gs.dbl = xcalloc((size_t)c.ng, sizeof *gs.dbl);
    rc = core_parallel_items(c.ng, corda_group, &gs, err);
    for (int q = 0; q < c.ng && rc == 0; q++) {
        samples = MAX(samples, c.samples[q]);
        dmin = fmin(dmin, gs.d[q]);
        dmax = fmax(dmax, gs.d[q]);
        maxdbl = MAX(maxdbl, gs.dbl[q]);
    }
    free(gs.d);
    free(gs.dbl);
    if (rc == 0) {
        for (int i = 0; i < set->n; i++) corda_commit(&set->a[i], A[i], B[i]);
        res->changed_w0 = 1;
        res->changed_function = 0;
        res->batches_used = batches;
        snprintf(res->note, sizeof res->note, "corda %s: %ld samples in %d batches; damping d %g..%g (%d doublings "
                 "at most)", ipm ? "ipm" : "kpm", samples, batches, dmin, dmax, maxdbl);
    }
    for (int i = 0; i < set->n; i++) {
        free(A[i]);
        free(B[i]);
    }
    free(A);
    free(B);
    corda_free(&c);
    return rc;
}

const InitKind INIT_CORDA = {"corda", "METHODS.md, Data-driven initializers: CorDA (PEFT corda.py, corda_init)",
                             init_corda, 0, INIT_PASS_STATS};
