/* experiments/metrics.c: the research metrics of a fine-tuning run (experiments/metrics.h, docs/metrics.md). */
#include "metrics.h"

#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "core/cpu/xent.h"
#include "core/linalg.h"
#include "core/params_io.h"
#include "core/rng.h"
#include "eval/grad_var.h"
#include "eval/info_loss.h"
#include "eval/spectra.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "methods/peft_io.h"

/* ---- config ------------------------------------------------------------------------------------------------ */
int metrics_config(MetricsConfig *mc, const CfgNode *c, Error *err) {
    memset(mc, 0, sizeof *mc);
    long every, batch, window;
    const char *mode, *ref;
    if (cfg_get_string(c, "metrics.info_loss_reference", "pretrained", &ref, err)) return -1;
    if (strcmp(ref, "pretrained") && strcmp(ref, "teacher"))
        return err_set(err, "metrics.info_loss_reference '%s': expected pretrained or teacher", ref);
    if (cfg_get_bool(c, "metrics.enabled", 1, &mc->enabled, err) || cfg_get_int(c, "metrics.every", 50, &every, err) ||
        cfg_get_int(c, "metrics.batch", 0, &batch, err) || cfg_get_bool(c, "metrics.info_loss", 1, &mc->info_loss, err) ||
        cfg_get_bool(c, "metrics.info_loss_decompose", 1, &mc->decompose, err) ||
        cfg_get_string(c, "metrics.grad_var.mode", "cheap", &mode, err) ||
        cfg_get_int(c, "metrics.grad_var.window", 10, &window, err) || cfg_get_bool(c, "metrics.drift", 1, &mc->drift, err) ||
        cfg_get_bool(c, "metrics.spectra", 1, &mc->spectra, err) ||
        cfg_get_double(c, "metrics.spectra_tol", 1e-3, &mc->spectra_tol, err))
        return -1;
    mc->every = (int)every;
    mc->batch = (int)batch;
    mc->il_teacher = !strcmp(ref, "teacher");
    mc->gv_window = (int)window;
    mc->gv_mode = !strcmp(mode, "exact") ? GRADVAR_EXACT : !strcmp(mode, "cheap") ? GRADVAR_CHEAP : GRADVAR_OFF;
    if (strcmp(mode, "exact") && strcmp(mode, "cheap") && strcmp(mode, "off"))
        return err_set(err, "metrics.grad_var.mode '%s': expected off, cheap or exact", mode);
    if (every < 0 || batch < 0 || window < 2)
        return err_set(err, "metrics: every %ld, batch %ld, grad_var.window %ld: expected every >= 0, batch >= 0, "
                            "window >= 2 (a variance needs two samples)", every, batch, window);
    if (!mc->enabled) mc->info_loss = mc->decompose = mc->drift = mc->spectra = 0, mc->gv_mode = GRADVAR_OFF;
    return 0;
}

/* ---- state ------------------------------------------------------------------------------------------------- */
enum { FORM_NONE = 0, FORM_LORA = 1, FORM_XS = 2 }; /* tangent space: LoRA's (B, A), LoRA-XS's B X A */

typedef struct MxTarget { /* a target matched by method.targets, and G_full of its rows at the pretrained point */
    char name[PARAM_NAME_MAX];
    float *G_full; /* (rows, in) or NULL */
    int rows, in;
} MxTarget;

typedef struct MxLayer {
    Adapter *a;
    int form;
    LinearSlot *slot;
    const float *G;      /* (m, n): this layer's rows of its slot's grad_w buffer after a metrics pass */
    const float *G_full; /* (m, n) or NULL */
    GradVar gv[2];       /* A, B */
    int gv_on[2];        /* the factor is trainable */
} MxLayer;

/* The quantities of one recorded step, per layer (kept for the database: step 0 and the last). */
enum { Q_IL, Q_G, Q_RES, Q_TOT, Q_IRR, Q_RED, Q_BND, Q_GF, Q_GVA, Q_GVB, Q_GVAN, Q_GVBN, Q_EA, N_Q };
static const char *const Q_SERIES[N_Q] = {
    "metrics/info_loss", "metrics/info_loss_g_norm", "metrics/info_loss_res_norm", "metrics/il_total",
    "metrics/il_irreducible", "metrics/il_reducible", "metrics/il_bound", "metrics/il_g_full_norm",
    "metrics/gv_%s_A", "metrics/gv_%s_B", "metrics/gv_%s_A_norm", "metrics/gv_%s_B_norm", "metrics/orth_err_A"};
static const char *const Q_KEY[N_Q] = {"info_loss", "info_loss_g_norm", "info_loss_res_norm", "il_total",
                                       "il_irreducible", "il_reducible", "il_bound", "il_g_full_norm",
                                       "gv_%s_A", "gv_%s_B", "gv_%s_A_norm", "gv_%s_B_norm", "orth_err_A"};

struct Metrics {
    MetricsConfig cfg;
    Model *m;
    const ImageSet *train;
    uint64_t seed;
    int batch;       /* trainer batch (exact grad-variance mini-batches) */
    float smoothing;
    /* the fixed metrics batch */
    float *mb_x;
    int *mb_y, mb_B;
    /* scratch, sized once */
    float *xb, *logits, *probs, *dl;
    int *yb, *perm, *idx;
    Arena ar;
    /* targets matched by method.targets (the pretrained point) */
    MxTarget *tg;
    int n_tg;
    /* the adapters */
    AdapterSet *ad;
    H5Rec *h5;
    Db *db;
    const char *run_id;
    MxLayer *L;
    int n;
    const char **cols;
    LinearSlot **slots;
    float **slot_g;
    int n_slots;
    double *gv_mem;
    float *init_data; /* copy of ad->params.data after the initializer */
    int have_init;
    long total;
    double *vals;      /* (N_Q, n): the last recorded step's values */
    int have_q[N_Q];
    double *row;       /* (n) scratch */
    double *scratch;   /* (6, n) scratch of a recorded step */
    double secs;
    double loss0, early_sum; /* the training loss of step 0, the sum over the first n_early steps */
    long n_early;
    long resumed_at;         /* the checkpoint's step when this process resumed the run (0: a fresh run) */
};

static const char *gv_mode_name(GradVarMode m) { return m == GRADVAR_EXACT ? "exact" : "cheap"; }

static void series_name(char *out, size_t cap, const Metrics *mx, int q, const char *const *table) {
    if (q >= Q_GVA && q <= Q_GVBN) snprintf(out, cap, table[q], gv_mode_name(mx->cfg.gv_mode));
    else snprintf(out, cap, "%s", table[q]);
}

static double mean_finite(const double *v, int n) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    return k ? s / k : NAN;
}

/* Forward + backward of x (B images) in eval mode at the current weights: the adapters' (and the head's)
 * gradient buffers get this batch's gradients ADDED; with full = 1 the slots' grad_w buffers get dL/dW. */
static void grad_pass(Metrics *mx, const float *x, const int *y, int B, LinearSlot **slots, float **bufs, int ns) {
    Model *m = mx->m;
    int K = m->n_classes;
    for (int j = 0; j < ns; j++) {
        memset(bufs[j], 0, (size_t)slots[j]->out * slots[j]->in * sizeof(float));
        slots[j]->grad_w = bufs[j];
    }
    arena_reset(&mx->ar);
    model_forward(m, mx->logits, x, B, 0, &mx->ar);
    xent_forward(mx->probs, mx->logits, y, B, K, mx->smoothing, NULL);
    xent_backward(mx->dl, mx->probs, y, B, K, mx->smoothing, 1.0f);
    model_backward(m, mx->dl, &mx->ar);
    for (int j = 0; j < ns; j++) slots[j]->grad_w = NULL;
}

/* ---- create: the pretrained point -------------------------------------------------------------------------- */
/* metrics.info_loss_reference: teacher: ABM's teacher adapter (method.params.abm.teacher, a PEFT directory, rank
 * teacher_rank / alpha teacher_alpha, default the student's method.rank / method.alpha, as methods/init_abm.c
 * reads them) attached on the targets method.targets names. */
static int attach_teacher(AdapterSet *t, const CfgNode *c, Model *m, const char **pats, int np, uint64_t seed,
                          Error *err) {
    const char *init, *dir;
    long rank;
    double alpha, trank, talpha;
    if (cfg_get_string(c, "method.init", "kaiming", &init, err) ||
        cfg_get_string(c, "method.params.abm.teacher", NULL, &dir, err) || cfg_get_int(c, "method.rank", 8, &rank, err) ||
        cfg_get_double(c, "method.alpha", 16, &alpha, err))
        return -1;
    if (strcmp(init, "abm") || !dir)
        return err_set(err, "metrics.info_loss_reference: teacher needs method.init: abm with a teacher adapter "
                            "(method.params.abm.teacher, a PEFT directory; method.init is '%s'%s); without one the "
                            "teacher is the backbone: use info_loss_reference: pretrained",
                       init, dir ? "" : ", no teacher set");
    if (cfg_get_double(c, "method.params.abm.teacher_rank", (double)rank, &trank, err) ||
        cfg_get_double(c, "method.params.abm.teacher_alpha", alpha, &talpha, err))
        return -1;
    AdapterSpec sp = {.kind = &ADAPTER_LORA, .r = (int)trank, .alpha = (float)talpha};
    if (adapters_attach(t, m->targets, m->n_targets, m->params, pats, np, &sp, seed, err) < 0) return -1;
    if (peft_load(dir, t, err)) {
        adapters_free(t, m->targets, m->n_targets);
        memset(t, 0, sizeof *t);
        return -1;
    }
    return 0;
}

int metrics_create(Metrics **out, const MetricsConfig *mc, const CfgNode *c, Model *m, const ImageSet *train,
                   uint64_t seed, int batch, float smoothing, Error *err) {
    *out = NULL;
    const char *adapter;
    const char **pats = NULL;
    int np = 0;
    if (cfg_get_string(c, "method.adapter", "lora", &adapter, err) || cfg_get_strlist(c, "method.targets", &pats, &np, err))
        return -1;
    if (!mc->enabled || !strcmp(adapter, "none") || np == 0 || m->n_targets == 0) {
        free(pats);
        return 0;
    }
    double t0 = now_seconds();
    Metrics *mx = xcalloc(1, sizeof *mx);
    mx->cfg = *mc;
    mx->m = m;
    mx->train = train;
    mx->seed = seed;
    mx->batch = MIN(batch, train->n);
    mx->smoothing = smoothing;
    mx->mb_B = MIN(mc->batch > 0 ? mc->batch : batch, train->n);
    int Bmax = MAX(mx->mb_B, mx->batch);
    size_t per = (size_t)train->C * train->H * train->W;
    int K = m->n_classes;
    mx->mb_x = xmalloc_aligned((size_t)mx->mb_B * per * sizeof(float));
    mx->mb_y = xmalloc((size_t)mx->mb_B * sizeof(int));
    mx->xb = xmalloc_aligned((size_t)mx->batch * per * sizeof(float));
    mx->yb = xmalloc((size_t)mx->batch * sizeof(int));
    mx->logits = xmalloc((size_t)Bmax * K * sizeof(float));
    mx->probs = xmalloc((size_t)Bmax * K * sizeof(float));
    mx->dl = xmalloc((size_t)Bmax * K * sizeof(float));
    mx->perm = xmalloc((size_t)train->n * sizeof(int));
    mx->idx = xmalloc((size_t)mx->batch * sizeof(int));
    arena_init(&mx->ar, 1u << 24);
    /* the fixed metrics batch: the first mb_B images of a permutation of its own */
    rng_permutation(mx->perm, train->n, seed, rng_stream("metrics.batch", 0, 0));
    imageset_batch(mx->mb_x, mx->mb_y, train, mx->perm, mx->mb_B, 0, seed, 0);
    /* the targets method.targets names */
    mx->tg = xcalloc((size_t)m->n_targets, sizeof *mx->tg);
    for (int t = 0; t < m->n_targets; t++) {
        int hit = 0;
        for (int p = 0; p < np && !hit; p++) hit = fnmatch(pats[p], m->targets[t].name, 0) == 0;
        if (!hit) continue;
        MxTarget *g = &mx->tg[mx->n_tg++];
        snprintf(g->name, sizeof g->name, "%s", m->targets[t].name);
        g->rows = m->targets[t].rows;
        g->in = m->targets[t].slot->in;
    }
    /* G_full = dL/dW of the backbone alone, before the initializer (which may change W0: PiSSA, OLoRA, ...);
     * info_loss_reference: teacher takes it at the backbone + ABM's teacher adapter instead */
    params_set_all_trainable(m->params, 0);
    params_alloc_grads(m->params);
    AdapterSet teacher = {0};
    int rc = 0;
    if (mc->decompose && mx->n_tg > 0 && mc->il_teacher) rc = attach_teacher(&teacher, c, m, pats, np, seed, err);
    free(pats);
    if (rc) {
        metrics_free(mx);
        return -1;
    }
    if (mc->decompose && mx->n_tg > 0) {
        LinearSlot **slots = xcalloc((size_t)m->n_targets, sizeof *slots);
        float **bufs = xcalloc((size_t)m->n_targets, sizeof *bufs);
        int ns = 0;
        for (int t = 0; t < m->n_targets; t++) {
            LinearSlot *s = m->targets[t].slot;
            int hit = 0, seen = 0;
            for (int g = 0; g < mx->n_tg; g++) hit |= !strcmp(mx->tg[g].name, m->targets[t].name);
            for (int j = 0; j < ns; j++) seen |= slots[j] == s;
            if (hit && !seen) {
                slots[ns] = s;
                bufs[ns++] = xmalloc((size_t)s->out * s->in * sizeof(float));
            }
        }
        grad_pass(mx, mx->mb_x, mx->mb_y, mx->mb_B, slots, bufs, ns);
        for (int t = 0; t < m->n_targets; t++)
            for (int g = 0; g < mx->n_tg; g++) {
                if (strcmp(mx->tg[g].name, m->targets[t].name)) continue;
                int j = 0;
                while (slots[j] != m->targets[t].slot) j++;
                size_t sz = (size_t)mx->tg[g].rows * mx->tg[g].in;
                mx->tg[g].G_full = xmalloc(sz * sizeof(float));
                memcpy(mx->tg[g].G_full, bufs[j] + (size_t)m->targets[t].row0 * mx->tg[g].in, sz * sizeof(float));
            }
        for (int j = 0; j < ns; j++) free(bufs[j]);
        free(bufs);
        free(slots);
        params_zero_grad(m->params);
    }
    if (teacher.a) adapters_free(&teacher, m->targets, m->n_targets); /* off the slots again */
    mx->secs = now_seconds() - t0;
    *out = mx;
    return 0;
}

/* ---- recorded steps ---------------------------------------------------------------------------------------- */
static int put_row(Metrics *mx, int q, long step, const double *v, Error *err) {
    char name[96];
    series_name(name, sizeof name, mx, q, Q_SERIES);
    if (h5rec_append_row(mx->h5, name, step, v, mx->n, mx->cols, err)) return -1;
    char sname[112];
    snprintf(sname, sizeof sname, "%s_mean", name);
    if (h5rec_append(mx->h5, sname, step, mean_finite(v, mx->n), err)) return -1;
    memcpy(mx->vals + (size_t)q * mx->n, v, (size_t)mx->n * sizeof(double));
    mx->have_q[q] = 1;
    return 0;
}

/* Exact grad variance: K extra training mini-batches at the current weights (seeded per step), no update. */
static void gv_exact(Metrics *mx, long step) {
    for (int i = 0; i < mx->n; i++)
        for (int f = 0; f < 2; f++)
            if (mx->L[i].gv_on[f]) grad_var_reset(&mx->L[i].gv[f]);
    const ImageSet *tr = mx->train;
    rng_permutation(mx->perm, tr->n, mx->seed, rng_stream("metrics.grad_var", (uint64_t)step, 0));
    for (int k = 0; k < mx->cfg.gv_window; k++) {
        for (int b = 0; b < mx->batch; b++) mx->idx[b] = mx->perm[((long)k * mx->batch + b) % tr->n];
        imageset_batch(mx->xb, mx->yb, tr, mx->idx, mx->batch, 0, mx->seed, 0);
        params_zero_grad(&mx->ad->params);
        grad_pass(mx, mx->xb, mx->yb, mx->batch, NULL, NULL, 0);
        for (int i = 0; i < mx->n; i++)
            for (int f = 0; f < 2; f++)
                if (mx->L[i].gv_on[f]) grad_var_add(&mx->L[i].gv[f], params_grad(mx->L[i].a->ps, mx->L[i].a->t[f]));
    }
    params_zero_grad(&mx->ad->params);
    params_zero_grad(mx->m->params);
}

static int record(Metrics *mx, long step, Error *err) {
    int n = mx->n;
    double *v = mx->row;
    Error e2;
    if (mx->cfg.info_loss || mx->cfg.decompose) {
        grad_pass(mx, mx->mb_x, mx->mb_y, mx->mb_B, mx->slots, mx->slot_g, mx->n_slots);
        params_zero_grad(&mx->ad->params);
        params_zero_grad(mx->m->params);
    }
    if (mx->cfg.info_loss) {
        double *ilp[3] = {mx->scratch, mx->scratch + n, mx->scratch + 2 * n};
        for (int i = 0; i < n; i++) {
            MxLayer *l = &mx->L[i];
            Adapter *a = l->a;
            InfoLoss r = {0};
            int rc = -1;
            if (l->form != FORM_NONE) {
                const float *A = params_data(a->ps, a->t[0]), *B = params_data(a->ps, a->t[1]);
                rc = l->form == FORM_XS ? info_loss_xs(&r, l->G, B, A, a->m, a->n, a->r, &e2)
                                        : info_loss(&r, l->G, B, A, a->m, a->n, a->r, &e2);
            }
            ilp[0][i] = rc ? NAN : r.ratio;
            ilp[1][i] = rc ? NAN : r.g_norm;
            ilp[2][i] = rc ? NAN : r.res_norm;
        }
        if (put_row(mx, Q_IL, step, ilp[0], err) || put_row(mx, Q_G, step, ilp[1], err) ||
            put_row(mx, Q_RES, step, ilp[2], err))
            return -1;
    }
    if (mx->cfg.decompose) {
        double *d = mx->scratch; /* (5, n): total, irreducible, reducible, bound, g_full */
        for (int i = 0; i < n; i++) {
            MxLayer *l = &mx->L[i];
            Adapter *a = l->a;
            InfoDecomp r = {0};
            int rc = -1;
            if (l->form != FORM_NONE && l->G_full) /* LoRA-XS: its product-form tangent space */
                rc = (l->form == FORM_XS ? info_loss_decompose_xs : info_loss_decompose)(
                    &r, l->G_full, l->G, params_data(a->ps, a->t[1]), params_data(a->ps, a->t[0]), a->m, a->n, a->r,
                    &e2);
            d[i] = rc ? NAN : r.total;
            d[n + i] = rc ? NAN : r.irreducible;
            d[2 * n + i] = rc ? NAN : r.reducible;
            d[3 * n + i] = rc ? NAN : r.bound;
            d[4 * n + i] = rc ? NAN : r.g_full_norm;
        }
        int rc = 0;
        for (int k = 0; k < 5 && !rc; k++) rc = put_row(mx, Q_TOT + k, step, d + (size_t)k * n, err);
        /* relative to ||G_full||: comparable across layers and methods */
        static const char *const rel[4] = {"metrics/il_total_rel_mean", "metrics/il_irreducible_rel_mean",
                                           "metrics/il_reducible_rel_mean", "metrics/il_bound_rel_mean"};
        for (int k = 0; k < 4 && !rc; k++) {
            for (int i = 0; i < n; i++) v[i] = d[4 * n + i] > 0 ? d[(size_t)k * n + i] / d[4 * n + i] : NAN;
            rc = h5rec_append(mx->h5, rel[k], step, mean_finite(v, n), err);
        }
        if (rc) return -1;
    }
    if (mx->cfg.gv_mode != GRADVAR_OFF) {
        if (mx->cfg.gv_mode == GRADVAR_EXACT) gv_exact(mx, step);
        long k = 0;
        for (int i = 0; i < n; i++) k = MAX(k, mx->L[i].gv[0].k), k = MAX(k, mx->L[i].gv[1].k);
        if (k >= 2) {
            double *g = mx->scratch; /* (4, n): var A, var B, normalized A, B */
            for (int i = 0; i < n; i++)
                for (int f = 0; f < 2; f++) {
                    GradVar *gv = &mx->L[i].gv[f];
                    double var = mx->L[i].gv_on[f] ? grad_var_total(gv) : NAN;
                    double ms = mx->L[i].gv_on[f] ? grad_var_mean_sq(gv) : NAN;
                    g[(size_t)f * n + i] = var;
                    g[(size_t)(2 + f) * n + i] = ms > 0 ? var / ms : NAN;
                }
            int rc = 0;
            for (int q = 0; q < 4 && !rc; q++) rc = put_row(mx, Q_GVA + q, step, g + (size_t)q * n, err);
            if (rc) return -1;
        }
        for (int i = 0; i < n; i++)
            for (int f = 0; f < 2; f++)
                if (mx->L[i].gv_on[f]) grad_var_reset(&mx->L[i].gv[f]);
    }
    if (mx->cfg.gv_mode != GRADVAR_OFF || mx->cfg.info_loss) { /* E_A = ||A A^T - I_r||_2 */
        for (int i = 0; i < n; i++) {
            Adapter *a = mx->L[i].a;
            v[i] = mx->L[i].form != FORM_NONE ? orth_error(params_data(a->ps, a->t[0]), a->r, a->n) : NAN;
        }
        if (put_row(mx, Q_EA, step, v, err)) return -1;
    }
    return 0;
}

/* Layer results and their means for the database at step (step 0: key suffix _step0; else _final). */
static int put_db(Metrics *mx, long step, Error *err) {
    if (!mx->db) return 0;
    const char *suffix = step == 0 ? "step0" : "final";
    for (int q = 0; q < N_Q; q++) {
        if (!mx->have_q[q]) continue;
        char key[96], rkey[128];
        series_name(key, sizeof key, mx, q, Q_KEY);
        const double *v = mx->vals + (size_t)q * mx->n;
        if (db_put_layer_results(mx->db, mx->run_id, key, mx->cols, v, mx->n, step, err)) return -1;
        snprintf(rkey, sizeof rkey, "%s_%s", key, suffix);
        double mean = mean_finite(v, mx->n);
        const char *keys[1] = {rkey};
        if (db_put_results(mx->db, mx->run_id, keys, &mean, NULL, 1, err)) return -1;
    }
    if (mx->have_q[Q_TOT]) { /* decomposition relative to ||G_full||, mean over layers */
        static const char *const rel[4] = {"il_total_rel", "il_irreducible_rel", "il_reducible_rel", "il_bound_rel"};
        const double *gf = mx->vals + (size_t)Q_GF * mx->n;
        for (int k = 0; k < 4; k++) {
            for (int i = 0; i < mx->n; i++)
                mx->row[i] = gf[i] > 0 ? mx->vals[(size_t)(Q_TOT + k) * mx->n + i] / gf[i] : NAN;
            char rkey[64];
            snprintf(rkey, sizeof rkey, "%s_%s", rel[k], suffix);
            double mean = mean_finite(mx->row, mx->n);
            const char *keys[1] = {rkey};
            if (db_put_results(mx->db, mx->run_id, keys, &mean, NULL, 1, err)) return -1;
        }
    }
    return 0;
}

/* ---- begin: bind the adapters ---------------------------------------------------------------------------- */
static int form_of(const Adapter *a) {
    if (a->nt < 2) return FORM_NONE;
    const ParamView *A = &a->ps->views[a->t[0]], *B = &a->ps->views[a->t[1]];
    if (A->ndim != 2 || B->ndim != 2 || A->shape[0] != a->r || A->shape[1] != a->n || B->shape[0] != a->m ||
        B->shape[1] != a->r)
        return FORM_NONE; /* not a B A factorization (e.g. a conv CP adapter) */
    return a->kind == &ADAPTER_LORA_XS ? FORM_XS : FORM_LORA;
}

int metrics_begin(Metrics *mx, AdapterSet *ad, H5Rec *h5, Db *db, const char *run_id, const char *init_path,
                  int resume, long total_steps, Error *err) {
    if (!mx) return 0;
    double t0 = now_seconds();
    Model *m = mx->m;
    mx->ad = ad;
    mx->h5 = h5;
    mx->db = db;
    mx->run_id = run_id;
    mx->total = total_steps;
    mx->n = ad->n;
    int n = mx->n;
    mx->L = xcalloc((size_t)(n ? n : 1), sizeof *mx->L);
    mx->cols = xcalloc((size_t)(n ? n : 1), sizeof *mx->cols);
    mx->slots = xcalloc((size_t)m->n_targets + 1, sizeof *mx->slots);
    mx->slot_g = xcalloc((size_t)m->n_targets + 1, sizeof *mx->slot_g);
    mx->vals = xcalloc((size_t)N_Q * (n ? n : 1), sizeof *mx->vals);
    mx->row = xcalloc((size_t)(n ? n : 1), sizeof *mx->row);
    mx->scratch = xcalloc((size_t)6 * (n ? n : 1), sizeof *mx->scratch);
    size_t gv_total = 0;
    for (int i = 0; i < n; i++) gv_total += 2 * ((size_t)ad->a[i].r * ad->a[i].n + (size_t)ad->a[i].m * ad->a[i].r);
    mx->gv_mem = mx->cfg.gv_mode != GRADVAR_OFF ? xcalloc(gv_total + 1, sizeof(double)) : NULL;
    double *gp = mx->gv_mem;
    for (int i = 0; i < n; i++) {
        MxLayer *l = &mx->L[i];
        Adapter *a = &ad->a[i];
        l->a = a;
        l->form = form_of(a);
        mx->cols[i] = a->target;
        for (int t = 0; t < m->n_targets && !l->slot; t++)
            for (int k = 0; k < m->targets[t].slot->n_ad; k++)
                if (m->targets[t].slot->ad[k] == a) l->slot = m->targets[t].slot;
        ASSERT(l->slot);
        int j = 0;
        while (j < mx->n_slots && mx->slots[j] != l->slot) j++;
        if (j == mx->n_slots) {
            mx->slots[j] = l->slot;
            mx->slot_g[j] = xmalloc((size_t)l->slot->out * l->slot->in * sizeof(float));
            mx->n_slots++;
        }
        l->G = mx->slot_g[j] + (size_t)a->row0 * l->slot->in;
        for (int g = 0; g < mx->n_tg; g++)
            if (!strcmp(mx->tg[g].name, a->target) && mx->tg[g].rows == a->m && mx->tg[g].in == a->n)
                l->G_full = mx->tg[g].G_full;
        if (mx->gv_mem && l->form != FORM_NONE) {
            long sz[2] = {(long)a->r * a->n, (long)a->m * a->r};
            for (int f = 0; f < 2; f++) {
                l->gv_on[f] = params_grad(a->ps, a->t[f]) != NULL;
                grad_var_init(&l->gv[f], gp, gp + sz[f], sz[f]);
                gp += 2 * sz[f];
            }
        }
    }
    /* the init snapshot (drift): written on a fresh run, read back on a resume (before the checkpoint) */
    size_t numel = ad->params.numel;
    mx->init_data = xmalloc((numel ? numel : 1) * sizeof(float));
    if (!resume) {
        memcpy(mx->init_data, ad->params.data, numel * sizeof(float));
        const char *meta[] = {"format", "pt"};
        if (init_path && params_save(&ad->params, init_path, 0, meta, 1, err)) return -1;
        mx->have_init = 1;
    } else if (init_path) {
        Error e2;
        if (params_load(&ad->params, init_path, NULL, &e2) == 0) {
            memcpy(mx->init_data, ad->params.data, numel * sizeof(float));
            mx->have_init = 1;
        } else {
            printf("metrics: %s cannot be read (%s): no drift for this run\n", init_path, e2.msg);
        }
    }
    int rc = 0;
    if (!resume) {
        /* per-layer ranks over every matched target (0: left unadapted, EVA / VAS), for rank maps */
        double *rk = xcalloc((size_t)(mx->n_tg ? mx->n_tg : 1), sizeof *rk);
        const char **tn = xcalloc((size_t)(mx->n_tg ? mx->n_tg : 1), sizeof *tn);
        for (int g = 0; g < mx->n_tg; g++) {
            tn[g] = mx->tg[g].name;
            for (int i = 0; i < n; i++)
                if (!strcmp(ad->a[i].target, tn[g])) rk[g] = ad->a[i].r;
        }
        if (mx->n_tg) rc = h5rec_append_row(h5, "metrics/adapter_rank", 0, rk, mx->n_tg, tn, err);
        if (!rc && db && mx->n_tg) rc = db_put_layer_results(db, run_id, "adapter_rank", tn, rk, mx->n_tg, -1, err);
        free(rk);
        free(tn);
        if (!rc && n > 0) rc = record(mx, 0, err) || put_db(mx, 0, err) ? -1 : 0;
    }
    mx->secs += now_seconds() - t0;
    return rc;
}

/* The early training loss: train_loss_step0 (the loss of step 0) and train_loss_early (the mean over the first
 * min(every, total) steps; every = 0: 10); NaN (NULL) when this process did not see those steps. */
static long early_window(const Metrics *mx) { return MIN(mx->cfg.every > 0 ? mx->cfg.every : 10, mx->total); }
static int put_early(Metrics *mx, int step0, int early, Error *err) {
    long want = early_window(mx);
    const char *keys[2];
    double vals[2];
    int k = 0;
    if (step0) keys[k] = "train_loss_step0", vals[k++] = mx->n_early > 0 ? mx->loss0 : NAN;
    if (early) keys[k] = "train_loss_early", vals[k++] = mx->n_early >= want ? mx->early_sum / want : NAN;
    return k ? db_put_results(mx->db, mx->run_id, keys, vals, NULL, k, err) : 0;
}

int metrics_on_step(Metrics *mx, long step, double loss, Error *err) {
    if (!mx || mx->n == 0) return 0;
    double t0 = now_seconds();
    long done = step + 1, every = mx->cfg.every;
    if (step == 0) mx->loss0 = loss;
    long want = early_window(mx);
    if (step == mx->n_early && step < want) mx->early_sum += loss, mx->n_early++; /* steps 0.. (not after a resume) */
    int rc = 0;
    /* into the database at once: a run resumed after these steps cannot see their losses again */
    if (mx->db && step == 0) rc = put_early(mx, 1, 0, err);
    if (!rc && mx->db && step == want - 1 && mx->n_early == want) rc = put_early(mx, 0, 1, err);

    long next = every > 0 ? MIN(((done + every - 1) / every) * every, mx->total) : mx->total;
    if (mx->cfg.gv_mode == GRADVAR_CHEAP && next - done < mx->cfg.gv_window) /* inside the window ending at next */
        for (int i = 0; i < mx->n; i++)
            for (int f = 0; f < 2; f++)
                if (mx->L[i].gv_on[f]) grad_var_add(&mx->L[i].gv[f], params_grad(mx->L[i].a->ps, mx->L[i].a->t[f]));
    if (!rc && done == next) rc = record(mx, done, err);
    mx->secs += now_seconds() - t0;
    return rc;
}

int metrics_resume(Metrics *mx, long steps_done, Error *err) {
    if (!mx || mx->n == 0 || steps_done <= 0) return 0;
    mx->resumed_at = steps_done;
    long every = mx->cfg.every;
    if ((every > 0 && steps_done % every == 0) || steps_done == mx->total) return record(mx, steps_done, err);
    return 0;
}

/* ---- the end ----------------------------------------------------------------------------------------------- */
/* The projection type of an adapter target, as CNTLoRA's Table 2 prints one number per type: q, k, v (thirds of
 * the fused qkv), out (attn.proj), qkv (the whole fused qkv), fc1, fc2, head, conv (anything else). */
static const char *projection_type(const char *target) {
    size_t l = strlen(target);
    static const struct { const char *suffix, *type; } tab[] = {
        {":q", "q"}, {":k", "k"}, {":v", "v"}, {"attn.proj", "out"}, {"attn.qkv", "qkv"},
        {"mlp.fc1", "fc1"}, {"mlp.fc2", "fc2"}, {"head", "head"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        size_t k = strlen(tab[i].suffix);
        if (l >= k && !strcmp(target + l - k, tab[i].suffix)) return tab[i].type;
    }
    return "conv";
}

/* A final per-layer row: to HDF5, to layer_results, and as results <key>_mean (over layers) and <key>_<type>
 * (mean over the layers of one projection type, e.g. drift_cos_dW_q: CNTLoRA Table 2's per-type numbers). */
static int put_final_row(Metrics *mx, const char *name, long step, const double *v, Error *err) {
    if (h5rec_append_row(mx->h5, name, step, v, mx->n, mx->cols, err)) return -1;
    if (!mx->db) return 0;
    const char *key = strrchr(name, '/') + 1;
    char mkey[96];
    snprintf(mkey, sizeof mkey, "%s_mean", key);
    double mean = mean_finite(v, mx->n);
    const char *keys[1] = {mkey};
    if (db_put_layer_results(mx->db, mx->run_id, key, mx->cols, v, mx->n, -1, err) ||
        db_put_results(mx->db, mx->run_id, keys, &mean, NULL, 1, err))
        return -1;
    for (int i = 0; i < mx->n; i++) { /* each type once, at its first layer */
        const char *ty = projection_type(mx->cols[i]);
        int first = 1;
        for (int j = 0; j < i && first; j++) first = strcmp(projection_type(mx->cols[j]), ty) != 0;
        if (!first) continue;
        double sum = 0;
        int cnt = 0;
        for (int j = i; j < mx->n; j++)
            if (!strcmp(projection_type(mx->cols[j]), ty) && isfinite(v[j])) sum += v[j], cnt++;
        double tmean = cnt ? sum / cnt : NAN;
        snprintf(mkey, sizeof mkey, "%s_%s", key, ty);
        if (db_put_results(mx->db, mx->run_id, keys, &tmean, NULL, 1, err)) return -1;
    }
    return 0;
}

static int final_metrics(Metrics *mx, Error *err) {
    int n = mx->n, rc = 0;
    long step = mx->total;
    AdapterSet *ad = mx->ad;
    size_t numel = ad->params.numel;
    float **dW = xcalloc((size_t)n, sizeof *dW), **dW0 = xcalloc((size_t)n, sizeof *dW0);
    for (int i = 0; i < n; i++) {
        dW[i] = xmalloc((size_t)ad->a[i].m * ad->a[i].n * sizeof(float));
        ad->a[i].kind->delta_weight(&ad->a[i], dW[i]);
    }
    if (mx->cfg.drift && mx->have_init) {
        float *now = xmalloc((numel ? numel : 1) * sizeof(float)); /* dW at init: swap the init values in */
        memcpy(now, ad->params.data, numel * sizeof(float));
        memcpy(ad->params.data, mx->init_data, numel * sizeof(float));
        for (int i = 0; i < n; i++) {
            dW0[i] = xmalloc((size_t)ad->a[i].m * ad->a[i].n * sizeof(float));
            ad->a[i].kind->delta_weight(&ad->a[i], dW0[i]);
        }
        memcpy(ad->params.data, now, numel * sizeof(float));
        free(now);
        double *d = xmalloc((size_t)6 * n * sizeof(double)); /* cos A, B, dW; norm A, B, dW */
        for (int i = 0; i < n; i++) {
            Adapter *a = &ad->a[i];
            for (int f = 0; f < 3; f++) {
                DriftStats s = {NAN, NAN, NAN};
                if (f < 2 && mx->L[i].form != FORM_NONE) {
                    const ParamView *pv = &a->ps->views[a->t[f]];
                    drift_stats(&s, mx->init_data + pv->offset, params_data(a->ps, a->t[f]), (int)pv->shape[0],
                                (int)pv->shape[1]);
                } else if (f == 2) {
                    drift_stats(&s, dW0[i], dW[i], a->m, a->n);
                }
                d[(size_t)f * n + i] = s.cosine;
                d[(size_t)(3 + f) * n + i] = s.spectral_norm;
            }
        }
        static const char *const names[6] = {"final/drift_cos_A", "final/drift_cos_B", "final/drift_cos_dW",
                                             "final/drift_norm_A", "final/drift_norm_B", "final/drift_norm_dW"};
        for (int k = 0; k < 6 && !rc; k++) rc = put_final_row(mx, names[k], step, d + (size_t)k * n, err);
        free(d);
    }
    if (mx->cfg.spectra && !rc) {
        int kmax = 0;
        for (int i = 0; i < n; i++) kmax = MAX(kmax, MIN(ad->a[i].m, ad->a[i].n));
        double *sv = xmalloc((size_t)kmax * n * sizeof(double)), *nr = xmalloc((size_t)n * sizeof(double));
        double *cond = xmalloc((size_t)n * sizeof(double));
        float *s = xmalloc((size_t)(kmax ? kmax : 1) * sizeof(float));
        double tol = mx->cfg.spectra_tol > 0 ? mx->cfg.spectra_tol : 1e-3;
        for (int i = 0; i < n; i++) {
            Adapter *a = &ad->a[i];
            int k = MIN(a->m, a->n);
            Error e2;
            int ok = la_svd(NULL, s, NULL, dW[i], a->m, a->n, &e2) == 0;
            int r = 0;
            while (ok && r < k && s[r] > 0 && (double)s[r] > tol * (double)s[0]) r++;
            nr[i] = ok ? r : NAN;
            cond[i] = ok && r > 0 ? (double)s[0] / (double)s[r - 1] : NAN;
            for (int j = 0; j < kmax; j++) sv[(size_t)j * n + i] = ok && j < k ? (double)s[j] : NAN;
        }
        for (int j = 0; j < kmax && !rc; j++) /* step = the singular value's index */
            rc = h5rec_append_row(mx->h5, "final/spectrum", j, sv + (size_t)j * n, n, mx->cols, err);
        if (!rc) rc = put_final_row(mx, "final/num_rank", step, nr, err) || put_final_row(mx, "final/cond", step, cond, err);
        free(sv), free(nr), free(cond), free(s);
    }
    for (int i = 0; i < n; i++) free(dW[i]), free(dW0[i]);
    free(dW), free(dW0);
    return rc;
}

int metrics_end(Metrics *mx, Db *db, const char *run_id, const MetricsCost *cost, Error *err) {
    double t0 = now_seconds();
    if (mx && mx->n > 0) {
        mx->db = db;
        mx->run_id = run_id;
        if (final_metrics(mx, err) || put_db(mx, mx->total, err)) return -1;
        mx->secs += now_seconds() - t0;
    }
    if (mx && mx->n > 0) { /* the early training loss: step 0 and the mean over the first `every` steps; a run
                            * resumed after them keeps the values its first process put (metrics_on_step) */
        if (put_early(mx, mx->resumed_at == 0, mx->resumed_at < early_window(mx), err)) return -1;
    }
    double share = cost->init_s + cost->train_s > 0 ? cost->init_s / (cost->init_s + cost->train_s) : NAN;
    const char *keys[] = {"finetune_wall_s", "init_share", "peak_rss_bytes", "metrics_s"};
    double vals[] = {cost->finetune_wall_s, share, (double)peak_rss_bytes(), mx ? mx->secs : 0};
    return db_put_results(db, run_id, keys, vals, NULL, 4, err);
}

double metrics_seconds(const Metrics *mx) { return mx ? mx->secs : 0; }

void metrics_free(Metrics *mx) {
    if (!mx) return;
    for (int j = 0; j < mx->n_slots; j++) free(mx->slot_g[j]);
    for (int g = 0; g < mx->n_tg; g++) free(mx->tg[g].G_full);
    free(mx->tg), free(mx->slot_g), free(mx->slots), free(mx->L), free(mx->cols), free(mx->vals), free(mx->row);
    free(mx->scratch);
    free(mx->gv_mem), free(mx->init_data);
    free(mx->mb_x), free(mx->mb_y), free(mx->xb), free(mx->yb), free(mx->logits), free(mx->probs), free(mx->dl);
    free(mx->perm), free(mx->idx);
    arena_free(&mx->ar);
    free(mx);
}
