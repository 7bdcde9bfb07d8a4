/* methods/init_eva.c: EVA, explained variance adaptation (Paischer et al. 2024), METHODS.md "Data-driven
 * initializers": incremental PCA (mean-centred) of each adapted layer's input rows x over init batches,
 * keeping rho r components; stop when every layer's components are stable (cosine with the previous batch's
 * >= tau); redistribute the ranks over layers by explained variance; A_i = the top r_i components, B = 0.
 *
 * What this follows from PEFT (huggingface/peft src/peft/tuners/lora/eva.py and src/peft/utils/
 * incremental_pca.py, read at 5d602fd):
 *   - IncrementalPCA.partial_fit (sklearn's algorithm): running mean and variance (Chan's update); the first
 *     batch is centred on its mean and decomposed; later ones stack [S_k * components_k; X - batch mean;
 *     sqrt(seen / total * N) (old mean - batch mean)] and take the thin SVD of that. Signs as svd_flip with
 *     u_based_decision=False: the largest-|.| entry of each component is positive.
 *     explained_variance_ratio_ = S^2 / sum(var_ * rows seen), a share of the TOTAL variance of x.
 *     PEFT's SVDHook uses lowrank=True (torch.svd_lowrank, q = 2k, niter 4, seed 42), a randomized estimate
 *     of the same SVD; here the SVD is exact (LAPACK dgesdd in double via la_svd: PEFT's lowrank=False path),
 *     so results are deterministic and the reference fixture can be exact.
 *   - k = round(rho r) per layer (Python's round: half to even), rho >= 1, tau in [0, 1]; a batch with fewer
 *     rows than k is skipped for that layer (SVDHook). Here k is also capped at n (PEFT would raise).
 *   - Layers with equal inputs share one PCA (PEFT hashes the first batch's inputs; here: adapters on the same
 *     host linear, e.g. q and v of one fused qkv, see the same x), with k = the largest of theirs.
 *   - Convergence (SVDHook.__call__ and the loop of _get_eva_state_dict): after each fit, component j is
 *     converged when cosine(component j, previous fit's component j) >= tau (signed cosine; before a second
 *     fit nothing is converged). A layer counts as converged when its first rank_dist components are (only
 *     those the current rank distribution needs); a converged layer stops fitting (PEFT removes the hook) and
 *     starts again if a later redistribution gives it a component that had not converged. Before each batch
 *     the loop stops when every layer has converged; after each batch, once every layer has components, the
 *     ranks are redistributed (rank_dist starts at k for every layer).
 *   - Rank redistribution (_get_rank_distribution): every adapted layer offers its layer's explained-variance
 *     ratios [:k] (layers sharing a PCA offer the same values); the global top budget = sum of the layers'
 *     ranks (r x number of layers) are counted per layer; a layer with 0 is dropped (PEFT replaces it by its
 *     base layer). Ties: the lower layer index first (PEFT swaps ranks so that the first of a group of equal-
 *     input layers has the larger).
 *   - A_i = components_[:r_i] (rows, r_i x n), divided row-wise by sqrt(singular_values_) when
 *     method.params.eva.whiten is true (PEFT's whiten, default false); B = 0 (PEFT keeps lora_B's zero init);
 *     W0 unchanged, so the model's function at init is unchanged.
 *   - adjust_scaling_factors (PEFT's default True: alpha_i = alpha r_i / r) is what ctx->reattach does, so
 *     s stays alpha / r; the False variant is not offered.
 * Where this differs: PEFT cycles through its dataloader until every layer has converged; here the init
 * batches are ctx->n_batches (method.params.eva.batches) at most, and running out of them first is not an
 * error: the last estimate is used and InitResult.note says how many layers had not converged
 * (InitResult.batches_used: batches drawn). PEFT runs the base model with the adapters disabled; here the
 * taps see the model with its default-initialized adapters, which is the same function (LoRA's B = 0).
 * Without ctx->reattach (a caller that cannot re-create adapters) the ranks stay equal: no redistribution,
 * convergence is judged on each layer's first r components, and A_i = its top r components.
 * Options (method.params.eva.*): rho (2), tau (0.99), whiten (false), pca (auto); batch / batches are the
 * engine's. pca svd: the exact SVD above on the tapped rows (the CPU model); gram: eva_pca_partial_fit_gram on
 * init_input_stats' X^T X and column sums (on ctx->accel when set: the GPU computes them in bf16 / f32 without
 * handing X to the host); auto: gram when ctx->accel has input_stats, else svd. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/threads.h"
#include "init_act.h"
#include "init_data.h"
#include "lora.h"

void eva_pca_init(EvaPca *p, int n, int k) {
    ASSERT(n >= 1 && k >= 1 && k <= n);
    memset(p, 0, sizeof *p);
    p->n = n;
    p->k = k;
    p->mean = xcalloc((size_t)n, sizeof *p->mean);
    p->m2 = xcalloc((size_t)n, sizeof *p->m2);
    p->comp = xcalloc((size_t)k * n, sizeof *p->comp);
    p->sv = xcalloc((size_t)k, sizeof *p->sv);
    p->evr = xcalloc((size_t)k, sizeof *p->evr);
    p->cos = xcalloc((size_t)k, sizeof *p->cos);
}

void eva_pca_free(EvaPca *p) {
    free(p->mean);
    free(p->m2);
    free(p->comp);
    free(p->sv);
    free(p->evr);
    free(p->cos);
    memset(p, 0, sizeof *p);
}

/* After a fit's decomposition: the running mean and sum of squared deviations (Chan et al.; PEFT
 * _incremental_mean_and_var) from the batch's mean and m2, then components_ (V: k rows of length n, any sign; the
 * largest-|.| entry of each made positive, svd_flip(u_based_decision=False)), singular values, explained variance
 * ratios and the cosines with the previous fit's components. */
static void pca_commit(EvaPca *p, const double *bmean, const double *bm2, long N, const double *V, const double *sv) {
    int n = p->n, k = p->k, first = p->fits == 0;
    long total = p->seen + N;
    for (int j = 0; j < n; j++) {
        double delta = bmean[j] - p->mean[j];
        p->m2[j] += bm2[j] + delta * delta * (double)p->seen * N / (double)total;
        p->mean[j] = (p->mean[j] * p->seen + bmean[j] * N) / (double)total;
    }
    p->seen = total;
    double tv = 0;
    for (int j = 0; j < n; j++) tv += p->m2[j];
    for (int c = 0; c < k; c++) {
        const double *v = V + (size_t)c * n;
        int big = 0;
        for (int j = 1; j < n; j++)
            if (fabs(v[j]) > fabs(v[big])) big = j;
        double sg = v[big] < 0 ? -1.0 : 1.0;
        double dot = 0, n1 = 0, n2 = 0;
        for (int j = 0; j < n; j++) {
            float x = (float)(sg * v[j]), o = p->comp[(size_t)c * n + j];
            dot += (double)x * o;
            n1 += (double)x * x;
            n2 += (double)o * o;
            p->comp[(size_t)c * n + j] = x;
        }
        p->cos[c] = first ? 0.0f : (float)(dot / fmax(sqrt(n1 * n2), 1e-8));
        p->sv[c] = (float)sv[c];
        p->evr[c] = tv > 0 ? (float)((double)p->sv[c] * p->sv[c] / tv) : 0.0f;
    }
    p->fits++;
}

/* PEFT incremental_pca.py: partial_fit, with the exact SVD (lowrank=False) and svd_flip(u_based=False). */
int eva_pca_partial_fit(EvaPca *p, const float *X, int N, Error *err) {
    int n = p->n, k = p->k;
    if (N < k) return 1;
    double *bmean = xcalloc((size_t)n, sizeof *bmean), *bm2 = xcalloc((size_t)n, sizeof *bm2);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++) bmean[j] += X[(size_t)i * n + j];
    for (int j = 0; j < n; j++) bmean[j] /= N;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++) {
            double c = X[(size_t)i * n + j] - bmean[j];
            bm2[j] += c * c;
        }
    int first = p->fits == 0;
    int rows = first ? N : k + N + 1;
    float *M = xmalloc(sizeof(float) * (size_t)rows * n);
    float *row = M;
    if (!first) { /* [S_k * components_k; X - batch mean; mean correction] */
        for (int c = 0; c < k; c++)
            for (int j = 0; j < n; j++) row[(size_t)c * n + j] = p->sv[c] * p->comp[(size_t)c * n + j];
        row += (size_t)k * n;
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++) row[(size_t)i * n + j] = (float)(X[(size_t)i * n + j] - bmean[j]);
    long total = p->seen + N;
    if (!first) {
        double f = sqrt((double)p->seen / (double)total * N);
        for (int j = 0; j < n; j++) row[(size_t)N * n + j] = (float)(f * (p->mean[j] - bmean[j]));
    }
    int kk = MIN(rows, n);
    float *S = xmalloc(sizeof(float) * kk), *Vt = xmalloc(sizeof(float) * (size_t)kk * n);
    int rc = la_svd(NULL, S, Vt, M, rows, n, err);
    if (rc == 0) {
        double *V = xmalloc(sizeof(double) * (size_t)k * n), *sv = xmalloc(sizeof(double) * k);
        for (size_t t = 0; t < (size_t)k * n; t++) V[t] = Vt[t];
        for (int c = 0; c < k; c++) sv[c] = S[c];
        pca_commit(p, bmean, bm2, N, V, sv);
        free(V);
        free(sv);
    }
    free(bmean);
    free(bm2);
    free(M);
    free(S);
    free(Vt);
    return rc;
}

int eva_pca_partial_fit_gram(EvaPca *p, const double *S, const double *c, long N, Error *err) {
    int n = p->n, k = p->k;
    if (N < k) return 1;
    for (size_t t = 0; t < (size_t)n * n; t++)
        if (!isfinite(S[t])) return err_set(err, "eva_pca_partial_fit_gram: X^T X has a non-finite entry %g at (%zu, "
                                            "%zu)", S[t], t / n, t % n);
    for (int j = 0; j < n; j++)
        if (!isfinite(c[j])) return err_set(err, "eva_pca_partial_fit_gram: the column sums have a non-finite "
                                            "entry %g at %d", c[j], j);
    double *bmean = xmalloc(sizeof(double) * n), *bm2 = xmalloc(sizeof(double) * n);
    double *G = xmalloc(sizeof(double) * (size_t)n * n), *corr = xmalloc(sizeof(double) * n);
    for (int j = 0; j < n; j++) bmean[j] = c[j] / (double)N;
    for (int j = 0; j < n; j++) bm2[j] = fmax(S[(size_t)j * n + j] - (double)N * bmean[j] * bmean[j], 0.0);
    /* the Gram of the stacked matrix (upper triangle): Xc^T Xc [+ comp^T diag(sv^2) comp + corr corr^T] */
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) G[(size_t)i * n + j] = S[(size_t)i * n + j] - (double)N * bmean[i] * bmean[j];
    if (p->fits > 0) {
        long total = p->seen + N;
        double f = sqrt((double)p->seen / (double)total * (double)N);
        for (int j = 0; j < n; j++) corr[j] = f * (p->mean[j] - bmean[j]);
        cblas_dsyr(CblasRowMajor, CblasUpper, n, 1.0, corr, 1, G, n);
        double *P = xmalloc(sizeof(double) * (size_t)k * n); /* sv * components, (k, n) */
        for (int q = 0; q < k; q++)
            for (int j = 0; j < n; j++) P[(size_t)q * n + j] = (double)p->sv[q] * p->comp[(size_t)q * n + j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.0, P, n, 1.0, G, n);
        free(P);
    }
    /* top k eigenpairs, ascending: eigenvalue w[k - 1 - q] and column k - 1 - q of Z are component q */
    double *w = xmalloc(sizeof(double) * n), *Z = xmalloc(sizeof(double) * (size_t)n * k);
    lapack_int *isuppz = xmalloc(sizeof(lapack_int) * 2 * (size_t)k), found = 0;
    lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', n, G, n, 0.0, 0.0, n - k + 1, n,
                                     LAPACKE_dlamch('S'), &found, w, Z, k, isuppz);
    int rc = 0;
    if (info != 0 || found != k) {
        rc = err_set(err, "eva_pca_partial_fit_gram: LAPACK dsyevr failed (info %d, %d of %d eigenpairs) on the %d x "
                     "%d Gram matrix", (int)info, (int)found, k, n, n);
    } else {
        double *V = xmalloc(sizeof(double) * (size_t)k * n), *sv = xmalloc(sizeof(double) * k);
        for (int q = 0; q < k; q++) {
            sv[q] = sqrt(fmax(w[k - 1 - q], 0.0));
            for (int j = 0; j < n; j++) V[(size_t)q * n + j] = Z[(size_t)j * k + (k - 1 - q)];
        }
        pca_commit(p, bmean, bm2, N, V, sv);
        free(V);
        free(sv);
    }
    free(bmean);
    free(bm2);
    free(G);
    free(corr);
    free(w);
    free(Z);
    free(isuppz);
    return rc;
}

typedef struct Pooled {
    float v;
    int layer, comp;
} Pooled;

static int pooled_cmp(const void *pa, const void *pb) {
    const Pooled *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    if (a->layer != b->layer) return a->layer - b->layer;
    return a->comp - b->comp;
}

void eva_rank_distribution(int *ranks, const float *const *evr, const int *kmax, int n_layers, int budget) {
    int total = 0;
    for (int i = 0; i < n_layers; i++) total += kmax[i];
    Pooled *all = xmalloc(sizeof *all * (size_t)(total ? total : 1));
    int w = 0;
    for (int i = 0; i < n_layers; i++) {
        ranks[i] = 0;
        for (int c = 0; c < kmax[i]; c++) all[w++] = (Pooled){evr[i][c], i, c};
    }
    qsort(all, (size_t)total, sizeof *all, pooled_cmp);
    for (int t = 0; t < MIN(budget, total); t++) ranks[all[t].layer]++;
    free(all);
}

/* ---- the initializer ---- */

typedef struct Group {     /* one PCA per host linear: its adapters see the same inputs */
    LinearSlot *slot;
    EvaPca pca;
    int need;              /* components the current rank distribution needs converged (max over members) */
    int active;            /* still fitting (PEFT: the hook is registered) */
    int converged;         /* PEFT's convergence_dict */
    int last_batch;        /* adapters sharing the slot get the same x once per batch */
    double *S, *c;         /* pca gram: this batch's X^T X (n, n) and column sums (n), fitted after the batch */
    long N;                /* their rows; 0: nothing to fit */
    int fit_failed;
} Group;

typedef struct Eva {
    InitData data;         /* the caller's init data, wrapped by eva_batch */
    double tau;
    int n_ad, ng, budget, redistribute;
    int *group_of, *kmax, *rank;
    Group *g;
    int batches, pending, failed_ad;
    Error err;
} Eva;

static int group_converged(const Eva *e, const Group *g, int need) {
    if (need == 0) return 1;
    if (g->pca.fits < 2) return 0;
    for (int j = 0; j < need; j++)
        if (!(g->pca.cos[j] >= e->tau)) return 0;
    return 1;
}

static void update_need(Eva *e) {
    for (int q = 0; q < e->ng; q++) e->g[q].need = 0;
    for (int i = 0; i < e->n_ad; i++) e->g[e->group_of[i]].need = MAX(e->g[e->group_of[i]].need, e->rank[i]);
}

/* After a batch: redistribute once every layer has components (PEFT: after each forward). */
static void fit_pending(Eva *e);
static void step_end(Eva *e) {
    fit_pending(e);
    e->pending = 0;
    if (!e->redistribute) return;
    for (int q = 0; q < e->ng; q++)
        if (e->g[q].pca.fits == 0) return;
    const float **evr = xmalloc(sizeof *evr * (size_t)e->n_ad);
    for (int i = 0; i < e->n_ad; i++) evr[i] = e->g[e->group_of[i]].pca.evr;
    eva_rank_distribution(e->rank, evr, e->kmax, e->n_ad, e->budget);
    free(evr);
    update_need(e);
}

/* Before a batch (PEFT's loop head): converged layers stop fitting, a layer whose needed components are no
 * longer all converged starts again; 1 when every layer has converged. */
static int check_converged(Eva *e) {
    int all = 1;
    for (int q = 0; q < e->ng; q++) {
        Group *g = &e->g[q];
        int conv = group_converged(e, g, g->need);
        if (!g->converged && conv) g->converged = 1, g->active = 0;
        else if (g->converged && !conv) g->converged = 0, g->active = 1;
        all &= g->converged;
    }
    return all;
}

/* The init data as init_taps sees it: stops (0 images) once every layer has converged or a fit failed. */
static int eva_batch(void *p, int i, int B, float *x, int *y) {
    Eva *e = p;
    if (e->pending) step_end(e);
    if (e->failed_ad >= 0 || check_converged(e)) return 0;
    int got = e->data.batch(e->data.ctx, i, B, x, y);
    if (got > 0) e->batches++, e->pending = 1;
    return got;
}

static void eva_tap(void *user, int ai, const float *x, const float *z, int ldz, int N, int b) {
    (void)z;
    (void)ldz;
    Eva *e = user;
    Group *g = &e->g[e->group_of[ai]];
    if (e->failed_ad >= 0 || !g->active || g->last_batch == b) return;
    g->last_batch = b;
    if (eva_pca_partial_fit(&g->pca, x, N, &e->err) < 0) e->failed_ad = ai;
}

/* pca gram: the same fit from init_input_stats' S = X^T X and c = column sums, kept until the batch ends; then
 * the layers' fits run side by side (fit_pending: one eigendecomposition per host linear, independent). */
static void eva_stats(void *user, int ai, const double *S, const double *c, long N, int b) {
    Eva *e = user;
    Group *g = &e->g[e->group_of[ai]];
    if (e->failed_ad >= 0 || !g->active || g->last_batch == b) return;
    g->last_batch = b;
    size_t n = (size_t)g->pca.n;
    if (!g->S) g->S = xmalloc(sizeof(double) * n * n), g->c = xmalloc(sizeof(double) * n);
    memcpy(g->S, S, sizeof(double) * n * n);
    memcpy(g->c, c, sizeof(double) * n);
    g->N = N;
}

typedef struct PendingFits {
    Eva *e;
    int *q;                /* the groups to fit */
} PendingFits;

static int fit_one(void *p, int i, Error *err) {
    PendingFits *pf = p;
    Group *g = &pf->e->g[pf->q[i]];
    g->fit_failed = eva_pca_partial_fit_gram(&g->pca, g->S, g->c, g->N, err) < 0; /* its own group only */
    return g->fit_failed ? -1 : 0;
}

static void fit_pending(Eva *e) {
    int *q = xmalloc(sizeof(int) * (size_t)(e->ng + 1)), n = 0;
    for (int j = 0; j < e->ng; j++)
        if (e->g[j].N > 0) q[n++] = j;
    PendingFits pf = {e, q};
    if (n > 0 && e->failed_ad < 0 && core_parallel_items(n, fit_one, &pf, &e->err)) {
        int j = 0; /* the smallest failing group (whose error core_parallel_items returns): its first adapter */
        while (j < n && !e->g[q[j]].fit_failed) j++;
        ASSERT(j < n);
        e->failed_ad = 0;
        while (e->group_of[e->failed_ad] != q[j]) e->failed_ad++;
    }
    for (int j = 0; j < e->ng; j++) e->g[j].N = 0;
    free(q);
}

static LinearSlot *slot_of(const Model *m, const Adapter *a) {
    for (int t = 0; t < m->n_targets; t++) {
        LinearSlot *s = m->targets[t].slot;
        for (int k = 0; k < s->n_ad; k++)
            if (s->ad[k] == a) return s;
    }
    return NULL;
}

static int read_bool(const InitContext *ctx, const char *key, int def, int *out, Error *err) {
    const char *v = init_opt_string(ctx, key, NULL);
    *out = def;
    if (!v) return 0;
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *out = 0;
    else return err_set(err, "method.params.eva: '%s' is '%s', expected true or false", key, v);
    return 0;
}

/* Checks before anything is touched: LoRA adapters, ranks, options. */
static int check_eva(const InitContext *ctx, double rho, double tau, Error *err) {
    if (!(rho >= 1) || !isfinite(rho))
        return err_set(err, "method.init 'eva': method.params.eva.rho is %g, expected a number >= 1 (the largest "
                       "rank a layer may get is rho r)", rho);
    if (!(tau >= 0 && tau <= 1))
        return err_set(err, "method.init 'eva': method.params.eva.tau is %g, expected a cosine threshold in [0, 1]",
                       tau);
    if (ctx->set->n == 0) return err_set(err, "method.init 'eva': no adapters are attached");
    if (!ctx->data.batch || ctx->batch <= 0) /* checked here: init_taps sees the wrapped data */
        return err_set(err, "method.init 'eva' needs init batches of the task's training data, and none were "
                       "given (batch size %d)", ctx->batch);
    if (ctx->n_batches < 1)
        return err_set(err, "method.init 'eva': %d init batches allowed (method.params.eva.batches): expected at "
                       "least 1", ctx->n_batches);
    for (int i = 0; i < ctx->set->n; i++) {
        const Adapter *a = &ctx->set->a[i];
        if (a->kind != &ADAPTER_LORA)
            return err_set(err, "method.init 'eva' needs LoRA adapters, '%s' has a %s adapter", a->target,
                           a->kind->name);
        if (a->r > MIN(a->m, a->n))
            return err_set(err, "method.init 'eva': %s: rank %d is larger than min(m, n) = %d (the layer is "
                           "%d x %d): expected a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n,
                           MIN(a->m, a->n));
    }
    return 0;
}

static void eva_free(Eva *e) {
    for (int q = 0; q < e->ng; q++) {
        eva_pca_free(&e->g[q].pca);
        free(e->g[q].S);
        free(e->g[q].c);
    }
    free(e->g);
    free(e->group_of);
    free(e->kmax);
    free(e->rank);
}

static int init_eva(InitContext *ctx, InitResult *res, Error *err) {
    double rho, tau;
    int whiten;
    if (init_opt_double(ctx, "rho", 2.0, &rho, err) || init_opt_double(ctx, "tau", 0.99, &tau, err) ||
        read_bool(ctx, "whiten", 0, &whiten, err)) {
        char m[ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", err->msg);
        return err_set(err, "method.init 'eva': %s", m);
    }
    /* pca: svd (exact, the PEFT fixtures' path) or gram (from init_input_stats: on the accelerator when there is
     * one); auto = gram with an accelerator, else svd */
    const char *pca = init_opt_string(ctx, "pca", "auto");
    int accel = ctx->accel && ctx->accel->input_stats, gram;
    if (!strcmp(pca, "svd")) gram = 0;
    else if (!strcmp(pca, "gram")) gram = 1;
    else if (!strcmp(pca, "auto")) gram = accel;
    else return err_set(err, "method.init 'eva': method.params.eva.pca is '%s', expected svd (the exact SVD of the "
                        "stacked rows), gram (the eigendecomposition of its Gram matrix, from X^T X) or auto (gram "
                        "with an accelerator, else svd)", pca);
    if (check_eva(ctx, rho, tau, err)) return -1;
    AdapterSet *set = ctx->set;
    int n_ad = set->n;
    Eva e = {.data = ctx->data, .tau = tau, .n_ad = n_ad, .redistribute = ctx->reattach != NULL, .failed_ad = -1};
    e.group_of = xmalloc(sizeof(int) * n_ad);
    e.kmax = xmalloc(sizeof(int) * n_ad);
    e.rank = xmalloc(sizeof(int) * n_ad);
    e.g = xcalloc((size_t)n_ad, sizeof *e.g);
    LinearSlot **slots = xcalloc((size_t)n_ad, sizeof *slots);
    for (int i = 0; i < n_ad; i++) {
        Adapter *a = &set->a[i];
        LinearSlot *s = slot_of(ctx->model, a);
        ASSERT(s);
        int q = 0;
        while (q < e.ng && slots[q] != s) q++;
        if (q == e.ng) slots[e.ng++] = s;
        e.group_of[i] = q;
        e.kmax[i] = MIN((int)nearbyint(a->r * rho), a->n); /* round(r rho), half to even as Python's */
        e.budget += a->r;
    }
    for (int q = 0; q < e.ng; q++) { /* equal inputs: one PCA with the largest k of its layers */
        int k = 0, n = 0;
        for (int i = 0; i < n_ad; i++)
            if (e.group_of[i] == q) k = MAX(k, e.kmax[i]), n = set->a[i].n;
        for (int i = 0; i < n_ad; i++)
            if (e.group_of[i] == q) e.kmax[i] = k;
        e.g[q] = (Group){.slot = slots[q], .active = 1, .last_batch = -1};
        eva_pca_init(&e.g[q].pca, n, k);
    }
    free(slots);
    /* PEFT: rank_dist starts at k for every layer; without reattach the ranks stay r */
    for (int i = 0; i < n_ad; i++) e.rank[i] = e.redistribute ? e.kmax[i] : set->a[i].r;
    update_need(&e);

    InitContext tc = *ctx;
    tc.data.batch = eva_batch;
    tc.data.ctx = &e;
    int rc = gram ? init_input_stats(&tc, ctx->n_batches, 0, eva_stats, &e, err)
                  : init_taps(&tc, ctx->n_batches, eva_tap, &e, err);
    if (rc < 0) {
        char m[ERROR_MSG_MAX];
        snprintf(m, sizeof m, "%s", err->msg);
        eva_free(&e);
        return err_set(err, "method.init 'eva': %s", m);
    }
    if (e.pending) step_end(&e);
    if (e.failed_ad >= 0) {
        Adapter *a = &set->a[e.failed_ad];
        err_set(err, "method.init 'eva': %s (%d x %d): %s", a->target, a->m, a->n, e.err.msg);
        eva_free(&e);
        return -1;
    }
    for (int i = 0; i < n_ad; i++) {
        Group *g = &e.g[e.group_of[i]];
        if (g->pca.fits == 0) {
            err_set(err, "method.init 'eva': %s: no init batch had the %d input rows needed for its %d components "
                    "(batch %d)", set->a[i].target, g->pca.k, g->pca.k, ctx->batch);
            eva_free(&e);
            return -1;
        }
    }
    /* Bookkeeping for the record, then the (old) layers' names: reattach invalidates set->a. */
    int conv = 0, dropped = 0, rmin = 1 << 30, rmax = 0, changed = 0;
    char (*names)[PARAM_NAME_MAX] = xmalloc(sizeof *names * (size_t)n_ad);
    for (int i = 0; i < n_ad; i++) {
        conv += group_converged(&e, &e.g[e.group_of[i]], e.rank[i]);
        dropped += e.rank[i] == 0;
        rmin = MIN(rmin, e.rank[i]);
        rmax = MAX(rmax, e.rank[i]);
        changed |= e.rank[i] != set->a[i].r;
        snprintf(names[i], PARAM_NAME_MAX, "%s", set->a[i].target);
    }
    rc = 0;
    if (changed) {
        ASSERT(ctx->reattach);
        Error e2;
        if (ctx->reattach(ctx, e.rank, &e2)) rc = err_set(err, "method.init 'eva': re-creating the adapters with "
                                                         "the redistributed ranks failed: %s", e2.msg);
        set = ctx->set;
    }
    for (int j = 0; j < set->n && rc == 0; j++) {
        Adapter *a = &set->a[j];
        int i = 0;
        while (i < n_ad && strcmp(names[i], a->target)) i++;
        if (i == n_ad || a->r != e.rank[i] || a->kind != &ADAPTER_LORA) {
            rc = err_set(err, "method.init 'eva': after re-creating the adapters, %s has a %s adapter of rank %d, "
                         "expected a lora adapter of rank %d", a->target, a->kind->name, a->r,
                         i < n_ad ? e.rank[i] : 0);
            break;
        }
        const EvaPca *p = &e.g[e.group_of[i]].pca;
        float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
        for (int c = 0; c < a->r; c++) {
            float w = whiten && p->sv[c] > 0 ? 1.0f / sqrtf(p->sv[c]) : 1.0f;
            for (int t = 0; t < a->n; t++) A[(size_t)c * a->n + t] = w * p->comp[(size_t)c * a->n + t];
        }
        memset(B, 0, sizeof(float) * (size_t)a->m * a->r);
    }
    if (rc == 0) {
        res->changed_w0 = 0;
        res->changed_function = 0;
        res->batches_used = e.batches;
        size_t cap = sizeof res->note;
        int len = snprintf(res->note, cap, "eva: %d/%d layers converged (tau %g) after %d batches; ranks %d..%d",
                           conv, n_ad, tau, e.batches, rmin, rmax);
        if (dropped && len >= 0 && (size_t)len < cap)
            len += snprintf(res->note + len, cap - len, ", %d dropped", dropped);
        if (!e.redistribute && len >= 0 && (size_t)len < cap)
            len += snprintf(res->note + len, cap - len, "; equal ranks (no reattach)");
        if (gram && len >= 0 && (size_t)len < cap) snprintf(res->note + len, cap - len, "; gram PCA");
    }
    free(names);
    eva_free(&e);
    return rc;
}

/* EVA stops at convergence, so a generous cap costs nothing when it converges early (14 batches of 32 on
 * the tiny ViT at tau 0.99). */
const InitKind INIT_EVA = {"eva", "METHODS.md, Data-driven initializers: EVA (PEFT eva.py, incremental_pca.py)",
                           init_eva, 64, INIT_PASS_STATS};
