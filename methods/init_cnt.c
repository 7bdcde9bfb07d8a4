/* methods/init_cnt.c: CNTLoRA (ConsNoTrainLoRA; METHODS.md "CNTLoRA (ConsNoTrainLoRA)", the paper's eqs. 4,
 * 12, 17, 18, 19) for LoRA adapters (A = lora_A (r, n), B = lora_B (m, r)); formulas in init_cnt.h.
 *
 * Options, method.params.cnt_lora.<key>:
 *   mode x | s | sh (default x);  c (default 1): Sh mode's C = c I_m;  c_random true: C = c * N(0, 1) entries,
 *   seeded per layer (the same C for every batch: it is the constraint's constant);  weights "w1,w2,...": one
 *   per init batch (default all 1);  split svd | qr (default svd);  p (default 0.5, in [0, 1]): SVD split
 *   fraction;  keep_function true: W0 <- W0 - s B A (function kept) instead of starting at W0 + s B A;
 *   vas true: variable ranks (SVD split only);  vas_norm l2 | l1;  min_rank (default 1);  vas_budget
 *   (default r x number of adapted matrices);  batches, batch: read by the runner (ctx->n_batches, ctx->batch).
 *
 * The layer inputs are captured in one pass through the pretrained network: B is zeroed first, so the
 * adapters contribute nothing (they are overwritten anyway). The batches actually drawn (fewer than asked
 * when the data ends) set Bn. W_tar of every batch is added into one (m, n) sum per layer as the taps arrive,
 * so memory is one extra copy of each adapted weight (plus dW_est, and the singular values for VAS).
 * InitResult.note records the pseudo-inverse tolerance (max(rows, cols) * FLT_EPSILON * sigma_max, la_pinv
 * rcond -1: its range over layers and batches, absolute) and how many singular values it kept, and with VAS the
 * range of the ranks; InitResult.batches_used the batches drawn.
 * Singular-vector and QR signs are LAPACK's, not normalised: B and A may differ from another
 * implementation's by a sign per rank-1 pair; s B A does not. */
#include "init_cnt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "init_data.h"
#include "lora.h"

#define NAME "method.init 'cnt_lora'"

/* ---- one batch, one layer: W_tar ------------------------------------------------------------------------ */

/* G (n, n) = X^T X in double for X (N, n) row-major (METHODS.md's X X^T). Returns the flat index of the
 * first non-finite entry of X, or -1. */
static long gram(double *G, const float *X, int N, int n) {
    for (size_t t = 0; t < (size_t)N * n; t++)
        if (!isfinite(X[t])) return (long)t;
    double *Xt = xmalloc(sizeof(double) * (size_t)n * N); /* columns of X, contiguous */
    for (int t = 0; t < N; t++)
        for (int i = 0; i < n; i++) Xt[(size_t)i * N + t] = X[(size_t)t * n + i];
#pragma omp parallel for schedule(dynamic, 4) if ((size_t)n * n * N > (1u << 22))
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            const double *u = Xt + (size_t)i * N, *v = Xt + (size_t)j * N;
            double s = 0;
            for (int t = 0; t < N; t++) s += u[t] * v[t];
            G[(size_t)i * n + j] = G[(size_t)j * n + i] = s;
        }
    free(Xt);
    return -1;
}

/* out (m, n) = L (m, k) R (k, n), row-major float, accumulated in double. */
static void matmul(float *out, const float *L, const float *R, int m, int k, int n) {
#pragma omp parallel for schedule(static) if ((size_t)m * k * n > (1u << 22))
    for (int i = 0; i < m; i++) {
        double *row = xcalloc((size_t)n, sizeof *row);
        for (int l = 0; l < k; l++) {
            double a = L[(size_t)i * k + l];
            const float *r = R + (size_t)l * n;
            for (int j = 0; j < n; j++) row[j] += a * r[j];
        }
        for (int j = 0; j < n; j++) out[(size_t)i * n + j] = (float)row[j];
        free(row);
    }
}

/* Column j of P (n, n) times -1 unless its largest-magnitude entry (the first on a tie) is positive. */
static void fix_signs(float *P, int n) {
    for (int j = 0; j < n; j++) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (fabsf(P[(size_t)i * n + j]) > fabsf(P[(size_t)best * n + j])) best = i;
        if (P[(size_t)best * n + j] < 0)
            for (int i = 0; i < n; i++) P[(size_t)i * n + j] = -P[(size_t)i * n + j];
    }
}

static const char *const MODE_NAMES[] = {"x", "s", "sh"};

/* X and S modes: the (n, n) matrix W_tar = W0 Mp multiplies, which depends on the layer's inputs only (so the q,
 * k, v slices of one qkv share it): Mp = (X X^T)^+ or (P D^{1/2})^+, from G (n, n, double). */
static int gram_pinv(float *Mp, const double *G, int n, int mode, double *tol, int *rank, Error *err) {
    int rc;
    float *Gf = xmalloc(sizeof(float) * (size_t)n * n);
    for (size_t t = 0; t < (size_t)n * n; t++) Gf[t] = (float)G[t];
    if (mode == CNT_MODE_X) {
        rc = la_pinv(Mp, Gf, n, n, -1, tol, rank, err); /* (X X^T)^+ */
    } else {
        ASSERT(mode == CNT_MODE_S);
        /* X X^T = P D P^T (descending, signs fixed); M = P D^{1/2}; rounding can leave D slightly < 0 */
        float *w = xmalloc(sizeof(float) * n), *P = xmalloc(sizeof(float) * (size_t)n * n);
        rc = la_eigh(w, P, Gf, n, err);
        if (rc == 0) {
            fix_signs(P, n);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) P[(size_t)i * n + j] *= sqrtf(fmaxf(w[j], 0.0f));
            rc = la_pinv(Mp, P, n, n, -1, tol, rank, err); /* (P D^{1/2})^+ */
        }
        free(w);
        free(P);
    }
    free(Gf);
    return rc;
}

/* Sh mode: W_tar = C (W0^T - X X^T W0^T)^+ from G (n, n, double); C (m, m) or NULL for c I_m. */
static int sh_target(float *W_tar, const float *W0, const double *G, int m, int n, double c, const float *C,
                     double *tol, int *rank, Error *err) {
    /* M (n, m) = W0^T - X X^T W0^T, i.e. M[i][o] = W0[o][i] - sum_l G[i][l] W0[o][l] */
    float *M = xmalloc(sizeof(float) * (size_t)n * m), *Mp = xmalloc(sizeof(float) * (size_t)m * n);
#pragma omp parallel for schedule(static) if ((size_t)m * n * n > (1u << 22))
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m; o++) {
            double s = 0;
            const double *g = G + (size_t)i * n;
            const float *w = W0 + (size_t)o * n;
            for (int l = 0; l < n; l++) s += g[l] * w[l];
            M[(size_t)i * m + o] = (float)((double)w[i] - s);
        }
    int rc = la_pinv(Mp, M, n, m, -1, tol, rank, err); /* (m, n) */
    if (rc == 0) {
        if (C) matmul(W_tar, C, Mp, m, m, n);
        else
            for (size_t t = 0; t < (size_t)m * n; t++) W_tar[t] = (float)(c * Mp[t]);
    }
    free(M);
    free(Mp);
    return rc;
}

/* W_tar from the Gram matrix G (n, n, double); see cnt_target. */
static int target_from_gram(float *W_tar, const float *W0, const double *G, int m, int n, int mode, double c,
                            const float *C, double *tol, int *rank, Error *err) {
    Error e;
    int rc;
    if (mode == CNT_MODE_SH) {
        rc = sh_target(W_tar, W0, G, m, n, c, C, tol, rank, &e);
    } else {
        float *Mp = xmalloc(sizeof(float) * (size_t)n * n);
        rc = gram_pinv(Mp, G, n, mode, tol, rank, &e);
        if (rc == 0) matmul(W_tar, W0, Mp, m, n, n);
        free(Mp);
    }
    if (rc) return err_set(err, "%s mode: %s", MODE_NAMES[mode], e.msg);
    return 0;
}

int cnt_target(float *W_tar, const float *W0, const float *X, int m, int n, int N, int mode, double c,
               const float *C, double *tol, int *rank, Error *err) {
    ASSERT(m >= 1 && n >= 1 && N >= 1 && mode >= CNT_MODE_X && mode <= CNT_MODE_SH);
    for (size_t t = 0; t < (size_t)m * n; t++)
        if (!isfinite(W0[t]))
            return err_set(err, "cnt_target: W0 (%d x %d) has a non-finite entry %g at row %zu, column %zu: "
                           "expected finite values", m, n, (double)W0[t], t / n, t % n);
    double *G = xmalloc(sizeof(double) * (size_t)n * n);
    long bad = gram(G, X, N, n);
    int rc = bad >= 0 ? err_set(err, "cnt_target: X (%d x %d) has a non-finite entry %g at row %ld, column %ld: "
                                "expected finite values", N, n, (double)X[bad], bad / n, bad % n)
                      : target_from_gram(W_tar, W0, G, m, n, mode, c, C, tol, rank, err);
    free(G);
    return rc;
}

/* ---- VAS ------------------------------------------------------------------------------------------------ */

typedef struct VasItem {
    double v;
    int mat, idx;
} VasItem;

static int vas_cmp(const void *pa, const void *pb) {
    const VasItem *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    if (a->mat != b->mat) return a->mat < b->mat ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

int cnt_vas_ranks(int *ranks, const float *const *S, const int *k, int n_mat, int K, int min_rank, int l1,
                  Error *err) {
    ASSERT(n_mat >= 1 && min_rank >= 0);
    long total = 0, reserved = 0;
    for (int i = 0; i < n_mat; i++) {
        total += k[i];
        ranks[i] = MIN(min_rank, k[i]);
        reserved += ranks[i];
    }
    if (K < reserved)
        return err_set(err, "VAS: the rank budget %d is smaller than the %ld ranks min_rank %d reserves (%d "
                       "matrices): expected a budget >= %ld or a smaller min_rank", K, reserved, min_rank, n_mat,
                       reserved);
    if (K > total)
        return err_set(err, "VAS: the rank budget %d is larger than the %ld singular values of the %d adapted "
                       "matrices: expected a budget <= %ld", K, total, n_mat, total);
    VasItem *pool = xmalloc(sizeof(VasItem) * (size_t)(total - reserved + 1));
    long np = 0;
    for (int i = 0; i < n_mat; i++) {
        double den = 0;
        for (int j = 0; j < k[i]; j++) den += l1 ? (double)S[i][j] : (double)S[i][j] * S[i][j];
        for (int j = ranks[i]; j < k[i]; j++) /* the first ranks[i] are already this matrix's */
            pool[np++] = (VasItem){den > 0 ? (double)S[i][j] * S[i][j] / den : 0.0, i, j};
    }
    qsort(pool, (size_t)np, sizeof *pool, vas_cmp);
    for (long t = 0; t < K - reserved; t++) ranks[pool[t].mat]++;
    free(pool);
    return 0;
}

/* ---- options -------------------------------------------------------------------------------------------- */

typedef struct CntOpts {
    int mode, qr, keep_function, vas, vas_l1, c_random, min_rank, budget;
    double p, c;
    double *w; /* n_batches weights */
} CntOpts;

static const char *const KEYS[] = {"mode", "split", "p", "c", "c_random", "weights", "keep_function", "vas",
                                   "vas_norm", "min_rank", "vas_budget", "batch", "batches"};

static int opt_bool(const InitContext *ctx, const char *key, int def, int *out, Error *err) {
    const char *s = init_opt_string(ctx, key, NULL);
    *out = def;
    if (!s) return 0;
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1")) *out = 1;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcmp(s, "0")) *out = 0;
    else return err_set(err, NAME ": method.params.cnt_lora.%s is '%s', expected true or false", key, s);
    return 0;
}

static int opt_int(const InitContext *ctx, const char *key, int def, int lo, int *out, Error *err) {
    double v;
    if (init_opt_double(ctx, key, def, &v, err)) return -1;
    if (v != floor(v) || v < lo || v > 1e9)
        return err_set(err, NAME ": method.params.cnt_lora.%s is %g, expected an integer >= %d", key, v, lo);
    *out = (int)v;
    return 0;
}

static int parse_opts(const InitContext *ctx, CntOpts *o, int n_adapters, int r, Error *err) {
    memset(o, 0, sizeof *o);
    if (init_check_keys(ctx, "cnt_lora", KEYS, ARRAY_LEN(KEYS), err)) return -1;
    const char *mode = init_opt_string(ctx, "mode", "x"), *split = init_opt_string(ctx, "split", "svd");
    const char *norm = init_opt_string(ctx, "vas_norm", "l2");
    o->mode = !strcasecmp(mode, "x") ? CNT_MODE_X : !strcasecmp(mode, "s") ? CNT_MODE_S
            : !strcasecmp(mode, "sh") ? CNT_MODE_SH : -1;
    if (o->mode < 0) return err_set(err, NAME ": method.params.cnt_lora.mode is '%s', expected x, s or sh", mode);
    if (strcasecmp(split, "svd") && strcasecmp(split, "qr"))
        return err_set(err, NAME ": method.params.cnt_lora.split is '%s', expected svd or qr", split);
    o->qr = !strcasecmp(split, "qr");
    if (strcasecmp(norm, "l2") && strcasecmp(norm, "l1"))
        return err_set(err, NAME ": method.params.cnt_lora.vas_norm is '%s', expected l2 or l1", norm);
    o->vas_l1 = !strcasecmp(norm, "l1");
    if (init_opt_double(ctx, "p", 0.5, &o->p, err) || init_opt_double(ctx, "c", 1.0, &o->c, err) ||
        opt_bool(ctx, "c_random", 0, &o->c_random, err) || opt_bool(ctx, "keep_function", 0, &o->keep_function, err) ||
        opt_bool(ctx, "vas", 0, &o->vas, err) || opt_int(ctx, "min_rank", 1, 0, &o->min_rank, err) ||
        opt_int(ctx, "vas_budget", r * n_adapters, 1, &o->budget, err))
        return -1;
    if (!(o->p >= 0 && o->p <= 1))
        return err_set(err, NAME ": method.params.cnt_lora.p is %g, expected a fraction in [0, 1]", o->p);
    if (!isfinite(o->c)) return err_set(err, NAME ": method.params.cnt_lora.c is %g, expected a finite number", o->c);
    if (o->vas && o->qr)
        return err_set(err, NAME ": vas (variable ranks) needs the SVD split, method.params.cnt_lora.split is 'qr': "
                       "expected split svd, or vas false");
    if (ctx->n_batches < 1)
        return err_set(err, NAME ": method.params.cnt_lora.batches is %d, expected at least 1 init batch",
                       ctx->n_batches);
    o->w = xmalloc(sizeof(double) * (size_t)ctx->n_batches);
    for (int j = 0; j < ctx->n_batches; j++) o->w[j] = 1.0;
    const char *ws = init_opt_string(ctx, "weights", NULL);
    if (ws) {
        int nw = 0;
        const char *s = ws;
        for (;;) {
            char *end;
            double v = strtod(s, &end);
            while (*end == ' ') end++;
            if (end == s || (*end && *end != ',') || !isfinite(v))
                return err_set(err, NAME ": method.params.cnt_lora.weights is '%s': expected %d comma-separated "
                               "numbers (one per init batch)", ws, ctx->n_batches);
            if (nw < ctx->n_batches) o->w[nw] = v;
            nw++;
            if (!*end) break;
            s = end + 1;
        }
        if (nw != ctx->n_batches)
            return err_set(err, NAME ": method.params.cnt_lora.weights has %d values ('%s'), expected one per init "
                           "batch: %d (method.params.cnt_lora.batches)", nw, ws, ctx->n_batches);
    }
    return 0;
}

/* ---- the taps: sum_j w_j W_tar^(j) per layer ------------------------------------------------------------- */

typedef struct CntState {
    const CntOpts *o;
    AdapterSet *set;
    float **acc, **C;   /* per adapter: sum_j w_j W_tar^(j) (m, n); Sh mode's random C (m, m) or NULL */
    /* the last (slot, batch): q, k, v of one qkv share its Gram matrix G and, in X / S modes, its Mp */
    double *G;
    float *Mp, *Wt;
    const float *g_key;
    int g_batch, g_N;
    double g_tol;
    int g_rank;
    int failed;
    Error err;
    double tol_min, tol_max;
    int rank_min, rank_max, k_min, k_max;
} CntState;

static void cnt_tap(void *user, int ai, const float *x, const float *z, int ldz, int N, int batch) {
    (void)z, (void)ldz;
    CntState *st = user;
    if (st->failed) return;
    const Adapter *a = &st->set->a[ai];
    int m = a->m, n = a->n, mode = st->o->mode;
    const float *key = a->W0 - (size_t)a->row0 * n; /* the host weight: one per slot */
    Error e;
    if (key != st->g_key || batch != st->g_batch || N != st->g_N) {
        st->g_key = NULL;
        long bad = gram(st->G, x, N, n);
        if (bad >= 0) {
            st->failed = 1;
            err_set(&st->err, NAME ": %s (%d x %d), init batch %d: the layer input X (%d x %d) has a non-finite "
                    "entry %g at row %ld, column %ld", a->target, m, n, batch, N, n, (double)x[bad], bad / n, bad % n);
            return;
        }
        if (mode != CNT_MODE_SH && gram_pinv(st->Mp, st->G, n, mode, &st->g_tol, &st->g_rank, &e)) {
            st->failed = 1;
            err_set(&st->err, NAME ": %s (%d x %d), init batch %d: %s mode: %s", a->target, m, n, batch,
                    MODE_NAMES[mode], e.msg);
            return;
        }
        st->g_key = key, st->g_batch = batch, st->g_N = N;
    }
    double tol = st->g_tol;
    int rank = st->g_rank;
    if (mode == CNT_MODE_SH) {
        if (sh_target(st->Wt, a->W0, st->G, m, n, st->o->c, st->C[ai], &tol, &rank, &e)) {
            st->failed = 1;
            err_set(&st->err, NAME ": %s (%d x %d), init batch %d: sh mode: %s", a->target, m, n, batch, e.msg);
            return;
        }
    } else {
        matmul(st->Wt, a->W0, st->Mp, m, n, n);
    }
    int k = mode == CNT_MODE_SH ? MIN(m, n) : n;
    if (st->rank_max < 0) st->tol_min = st->tol_max = tol, st->rank_min = st->rank_max = rank, st->k_min = st->k_max = k;
    st->tol_min = fmin(st->tol_min, tol), st->tol_max = fmax(st->tol_max, tol);
    st->rank_min = MIN(st->rank_min, rank), st->rank_max = MAX(st->rank_max, rank);
    st->k_min = MIN(st->k_min, k), st->k_max = MAX(st->k_max, k);
    float *acc = st->acc[ai];
    double w = st->o->w[batch];
    for (size_t t = 0; t < (size_t)m * n; t++) acc[t] = (float)(acc[t] + w * st->Wt[t]);
}

/* ---- the split: s B A = the rank-r part of dW_est --------------------------------------------------------- */

int cnt_split(float *B, float *A, const float *dW, int m, int n, int r, double s, double p, int qr, Error *err) {
    ASSERT(m >= 1 && n >= 1 && r >= 1 && r <= MIN(m, n) && s != 0);
    int k = MIN(m, n), rc;
    if (qr) {
        /* dW = Q R; B = Q[:, :r], A = R[:r, :] / s */
        float *Q = xmalloc(sizeof(float) * (size_t)m * k), *R = xmalloc(sizeof(float) * (size_t)k * n);
        rc = la_qr(Q, R, dW, m, n, err);
        if (rc == 0) {
            for (int i = 0; i < m; i++)
                for (int c = 0; c < r; c++) B[(size_t)i * r + c] = Q[(size_t)i * k + c];
            for (int c = 0; c < r; c++)
                for (int j = 0; j < n; j++) A[(size_t)c * n + j] = (float)(R[(size_t)c * n + j] / s);
        }
        free(Q);
        free(R);
    } else {
        /* S' = S_r / s; B = U_r S'^{1-p}, A = S'^p V_r^T */
        float *U = xmalloc(sizeof(float) * (size_t)m * k), *S = xmalloc(sizeof(float) * k);
        float *Vt = xmalloc(sizeof(float) * (size_t)k * n);
        rc = la_svd(U, S, Vt, dW, m, n, err);
        if (rc == 0)
            for (int c = 0; c < r; c++) {
                double sp = S[c] / s, fb = pow(sp, 1 - p), fa = pow(sp, p);
                for (int i = 0; i < m; i++) B[(size_t)i * r + c] = (float)(fb * U[(size_t)i * k + c]);
                for (int j = 0; j < n; j++) A[(size_t)c * n + j] = (float)(fa * Vt[(size_t)c * n + j]);
            }
        free(U);
        free(S);
        free(Vt);
    }
    return rc;
}

static int split_layer(Adapter *a, const float *dW, const CntOpts *o, Error *err) {
    int m = a->m, n = a->n, r = a->r;
    double s = a->scale;
    float *A = params_data(a->ps, a->t[LORA_A]), *B = params_data(a->ps, a->t[LORA_B]);
    Error e;
    if (cnt_split(B, A, dW, m, n, r, s, o->p, o->qr, &e))
        return err_set(err, NAME ": %s (%d x %d): splitting dW_est: %s", a->target, m, n, e.msg);
    if (o->keep_function) /* W0 <- W0 - s B A with the stored B, A: W0 + s B A reproduces W0 to rounding */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int c = 0; c < r; c++) acc += (double)B[(size_t)i * r + c] * A[(size_t)c * n + j];
                float *w = &a->W0[(size_t)i * n + j];
                *w = (float)(*w - s * acc);
            }
    return 0;
}

/* ---- the initializer ------------------------------------------------------------------------------------ */

static int check_all(const InitContext *ctx, Error *err) {
    const AdapterSet *set = ctx->set;
    if (set->n == 0) return err_set(err, NAME ": no adapters are attached (method.targets matched nothing?)");
    for (int i = 0; i < set->n; i++) {
        const Adapter *a = &set->a[i];
        if (a->kind != &ADAPTER_LORA)
            return err_set(err, NAME " needs LoRA adapters, '%s' has a %s adapter", a->target, a->kind->name);
        if (a->r > MIN(a->m, a->n))
            return err_set(err, NAME ": %s: rank %d is larger than min(m, n) = %d (the layer is %d x %d): expected "
                           "a rank <= %d", a->target, a->r, MIN(a->m, a->n), a->m, a->n, MIN(a->m, a->n));
        for (size_t t = 0; t < (size_t)a->m * a->n; t++)
            if (!isfinite(a->W0[t]))
                return err_set(err, NAME ": %s: W0 (%d x %d) has a non-finite entry %g at row %zu, column %zu: "
                               "expected finite weights", a->target, a->m, a->n, (double)a->W0[t], t / a->n, t % a->n);
    }
    if (!ctx->data.batch || ctx->batch <= 0)
        return err_set(err, NAME " needs init batches of the task's training data, and none were given (CNTLoRA's "
                       "W_tar comes from the layer inputs X of each batch)");
    return 0;
}

static int init_cnt(InitContext *ctx, InitResult *res, Error *err) {
    CntOpts o;
    memset(&o, 0, sizeof o);
    if (check_all(ctx, err) || parse_opts(ctx, &o, ctx->set->n, ctx->set->a[0].r, err)) {
        free(o.w);
        return -1;
    }
    if (o.vas && !ctx->reattach) {
        free(o.w);
        return err_set(err, NAME ": vas needs the engine's reattach (per-layer ranks), and this caller offers none");
    }
    AdapterSet *set = ctx->set;
    int na = set->n, nmax = 1, mnmax = 1;
    CntState st = {.o = &o, .set = set, .g_batch = -1, .rank_max = -1};
    st.acc = xcalloc((size_t)na, sizeof *st.acc);
    st.C = xcalloc((size_t)na, sizeof *st.C);
    for (int i = 0; i < na; i++) {
        Adapter *a = &set->a[i];
        nmax = MAX(nmax, a->n);
        mnmax = MAX(mnmax, a->m * a->n);
        st.acc[i] = xcalloc((size_t)a->m * a->n, sizeof(float));
        if (o.mode == CNT_MODE_SH && o.c_random) {
            st.C[i] = xmalloc(sizeof(float) * (size_t)a->m * a->m);
            rng_fill_normal(st.C[i], (size_t)a->m * a->m, 0.0f, (float)o.c, ctx->seed, rng_stream(a->target, 300, 0));
        }
        /* the pretrained network: no adapter contribution while the inputs are captured */
        memset(params_data(a->ps, a->t[LORA_B]), 0, sizeof(float) * (size_t)a->m * a->r);
    }
    st.G = xmalloc(sizeof(double) * (size_t)nmax * nmax);
    st.Mp = xmalloc(sizeof(float) * (size_t)nmax * nmax);
    st.Wt = xmalloc(sizeof(float) * (size_t)mnmax);
    Error e;
    int done = init_taps(ctx, ctx->n_batches, cnt_tap, &st, &e);
    int rc = 0;
    if (done < 0) rc = err_set(err, NAME ": %s", e.msg);
    else if (st.failed) rc = (*err = st.err, -1);
    free(st.G);
    free(st.Mp);
    free(st.Wt);
    for (int i = 0; i < na; i++) free(st.C[i]);
    free(st.C);

    /* dW_est = (W0 + sum_j w_j W_tar^(j)) / (Bn + 1) - W0 = (sum - Bn W0) / (Bn + 1), in place in acc */
    char (*names)[PARAM_NAME_MAX] = xcalloc((size_t)na, sizeof *names);
    int *ranks = xcalloc((size_t)na, sizeof *ranks);
    for (int i = 0; i < na && rc == 0; i++) {
        Adapter *a = &set->a[i];
        float *d = st.acc[i];
        for (size_t t = 0; t < (size_t)a->m * a->n; t++) d[t] = (float)(((double)d[t] - (double)done * a->W0[t]) / (done + 1));
        snprintf(names[i], PARAM_NAME_MAX, "%s", a->target);
        ranks[i] = a->r;
    }
    int vas_min = 0, vas_max = 0;
    if (rc == 0 && o.vas) {
        float **S = xcalloc((size_t)na, sizeof *S);
        int *k = xcalloc((size_t)na, sizeof *k);
        for (int i = 0; i < na && rc == 0; i++) {
            Adapter *a = &set->a[i];
            k[i] = MIN(a->m, a->n);
            S[i] = xmalloc(sizeof(float) * k[i]);
            if (la_svd(NULL, S[i], NULL, st.acc[i], a->m, a->n, &e))
                rc = err_set(err, NAME ": %s (%d x %d): VAS singular values of dW_est: %s", a->target, a->m, a->n, e.msg);
        }
        if (rc == 0 && cnt_vas_ranks(ranks, (const float *const *)S, k, na, o.budget, o.min_rank, o.vas_l1, &e))
            rc = err_set(err, NAME ": %s", e.msg);
        for (int i = 0; i < na; i++) free(S[i]);
        free(S);
        free(k);
        if (rc == 0) {
            vas_min = vas_max = ranks[0];
            for (int i = 0; i < na; i++) vas_min = MIN(vas_min, ranks[i]), vas_max = MAX(vas_max, ranks[i]);
            if (ctx->reattach(ctx, ranks, &e)) rc = err_set(err, NAME ": VAS: re-creating the adapters: %s", e.msg);
            set = ctx->set; /* the old adapters are gone */
        }
    }
    /* each (re-created) adapter from its own dW_est, found by target name */
    for (int i = 0; i < set->n && rc == 0; i++) {
        Adapter *a = &set->a[i];
        int j = 0;
        while (j < na && strcmp(names[j], a->target)) j++;
        ASSERTF(j < na, "cnt_lora: re-created adapter %s was not adapted before", a->target);
        rc = split_layer(a, st.acc[j], &o, err);
    }
    for (int i = 0; i < na; i++) free(st.acc[i]);
    free(st.acc);
    free(names);
    free(ranks);
    free(o.w);
    if (rc) return -1;
    res->changed_w0 = o.keep_function;
    res->changed_function = !o.keep_function;
    res->batches_used = done;
    /* the record's note: the pseudo-inverse tolerance (METHODS.md asks for it) and what was kept */
    size_t cap = sizeof res->note;
    int len = snprintf(res->note, cap, "mode %s, %d batches of %d; pinv tol %.3g..%.3g, kept %d..%d of %d..%d; %s",
                       MODE_NAMES[o.mode], done, ctx->batch, st.tol_min, st.tol_max, st.rank_min, st.rank_max,
                       st.k_min, st.k_max, o.qr ? "QR" : "SVD");
    if (o.vas && len >= 0 && (size_t)len < cap)
        snprintf(res->note + len, cap - len, "; VAS ranks %d..%d, budget %d", vas_min, vas_max, o.budget);
    return 0;
}

const InitKind INIT_CNT_LORA = {"cnt_lora", "METHODS.md, CNTLoRA (ConsNoTrainLoRA): X / S / Sh modes, SVD or QR split, VAS",
                                init_cnt};
