/* core/adapter.c: the host side of the seam: linear and conv layers with adapter slots, attaching adapters,
 * merging them into W0, and the sum of their regularizers. */
#include "adapter.h"

#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "common.h"
#include "cpu/linear.h"

void tangent_basis_free(TangentBasis *tb) {
    free(tb->QB);
    free(tb->QA);
    memset(tb, 0, sizeof *tb);
}

static int active(const Adapter *a) { return a->merged_dW == NULL; }

void linear_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, const float *inp, int N, Arena *ar) {
    ASSERT(!s->is_conv);
    linear_forward(out, inp, params_data(ps, s->w), s->b >= 0 ? params_data(ps, s->b) : NULL, N, s->in, s->out);
    for (int i = 0; i < s->n_ad; i++)
        if (active(s->ad[i])) s->ad[i]->kind->forward(s->ad[i], out, s->out, inp, N, ar);
    if (s->tap) s->tap(s->tap_ctx, s, inp, out, N);
}

void linear_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, const float *dout, const float *inp,
                          int N, Arena *ar) {
    ASSERT(!s->is_conv);
    if (s->inject) { /* dout + injected gradient, in a copy: dout belongs to the caller */
        float *d = arena_floats(ar, (size_t)N * s->out);
        for (long i = 0; i < (long)N * s->out; i++) d[i] = dout[i] + s->inject[i];
        dout = d;
    }
    linear_backward(dinp, params_grad(ps, s->w), s->b >= 0 ? params_grad(ps, s->b) : NULL, dout, inp,
                    params_data(ps, s->w), N, s->in, s->out);
    if (s->grad_w) linear_backward(NULL, s->grad_w, NULL, dout, inp, NULL, N, s->in, s->out);
    for (int i = 0; i < s->n_ad; i++)
        if (active(s->ad[i])) s->ad[i]->kind->backward(s->ad[i], dinp, dout, s->out, inp, N, ar);
}

/* ---- conv slots: W_eff = W0 + sum dW, materialized per forward --------------------------------------- */

static int n_active(const LinearSlot *s) {
    int k = 0;
    for (int i = 0; i < s->n_ad; i++) k += active(s->ad[i]);
    return k;
}

void conv_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, float *col_scratch, const float *inp, int B,
                       Arena *ar) {
    ASSERT(s->is_conv && s->conv.B == B);
    const float *W = params_data(ps, s->w);
    s->w_eff = NULL;
    if (n_active(s) > 0) { /* adapters attach to whole conv layers: row0 = 0, m = out, n = in */
        size_t mn = (size_t)s->out * s->in;
        float *we = arena_floats(ar, mn), *dW = arena_floats(ar, mn);
        memcpy(we, W, mn * sizeof(float));
        for (int i = 0; i < s->n_ad; i++) {
            Adapter *a = s->ad[i];
            if (!active(a)) continue;
            ASSERT(a->row0 == 0 && a->m == s->out && a->n == s->in);
            a->kind->delta_weight(a, dW);
            for (size_t k = 0; k < mn; k++) we[k] += dW[k];
        }
        s->w_eff = we;
        W = we;
    }
    conv2d_forward(out, col_scratch, inp, W, s->b >= 0 ? params_data(ps, s->b) : NULL, s->conv);
    if (s->tap) s->tap(s->tap_ctx, s, inp, out, B);
}

void conv_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, float *col_scratch, const float *dout,
                        const float *inp, int B, Arena *ar) {
    ASSERT(s->is_conv && s->conv.B == B);
    size_t n_out = (size_t)B * s->conv.C_out * s->conv.H_out * s->conv.W_out, mn = (size_t)s->out * s->in;
    if (s->inject) { /* dout + injected gradient, in a copy: dout belongs to the caller */
        float *d = arena_floats(ar, n_out);
        for (size_t i = 0; i < n_out; i++) d[i] = dout[i] + s->inject[i];
        dout = d;
    }
    float *dw = params_grad(ps, s->w), *db = s->b >= 0 ? params_grad(ps, s->b) : NULL;
    const float *W = s->w_eff ? s->w_eff : params_data(ps, s->w);
    int adapters = s->w_eff != NULL;
    if (!adapters && !s->grad_w) { /* the plain layer */
        conv2d_backward(dinp, dw, db, col_scratch, dout, inp, W, s->conv);
        return;
    }
    /* dL/dW_eff once; it is dL/dW0 for the host and grad_w, dL/d(dW) for every adapter */
    float *g = arena_zeros(ar, mn);
    conv2d_backward(dinp, g, db, col_scratch, dout, inp, W, s->conv);
    if (dw)
        for (size_t k = 0; k < mn; k++) dw[k] += g[k];
    if (s->grad_w)
        for (size_t k = 0; k < mn; k++) s->grad_w[k] += g[k];
    for (int i = 0; adapters && i < s->n_ad; i++)
        if (active(s->ad[i])) s->ad[i]->kind->backward_delta(s->ad[i], g, ar);
}

/* ---- merge, regularizers ----------------------------------------------------------------------------- */

void adapter_merge(Adapter *a) {
    if (a->merged_dW) return;
    size_t mn = (size_t)a->m * a->n;
    a->merged_dW = xmalloc(mn * sizeof(float));
    a->kind->delta_weight(a, a->merged_dW);
    for (size_t k = 0; k < mn; k++) a->W0[k] += a->merged_dW[k];
}

void adapter_unmerge(Adapter *a) {
    if (!a->merged_dW) return;
    size_t mn = (size_t)a->m * a->n;
    for (size_t k = 0; k < mn; k++) a->W0[k] -= a->merged_dW[k];
    free(a->merged_dW);
    a->merged_dW = NULL;
}

double adapters_regularize(AdapterSet *set, int grad, Arena *ar) {
    double total = 0;
    for (int i = 0; i < set->n; i++) {
        Adapter *a = &set->a[i];
        if (a->kind->regularizer && a->opt.reg_lambda != 0 && active(a)) total += a->kind->regularizer(a, grad, ar);
    }
    return total;
}

int adapters_have_regularizer(const AdapterSet *set) {
    for (int i = 0; set && i < set->n; i++)
        if (set->a[i].kind->regularizer && set->a[i].opt.reg_lambda != 0) return 1;
    return 0;
}

/* The kind's shape rule (LAVA: the rank fits the regularized factors); kinds without one accept any rank
 * (a rank above min(m, n) is legal for LoRA, as in PEFT; initializers that need r <= min(m, n) say so). */
static int check_shape(const Adapter *a, Error *err) { return a->kind->check ? a->kind->check(a, err) : 0; }

int adapters_attach(AdapterSet *set, AdapterTarget *targets, int n_targets, ParamSet *model_ps,
                    const char *const *patterns, int n_patterns, const AdapterSpec *spec, uint64_t seed,
                    Error *err) {
    memset(set, 0, sizeof *set);
    params_init(&set->params);
    ASSERT(spec->kind && spec->r > 0);
    int *hit = xcalloc((size_t)n_targets, sizeof *hit);
    for (int p = 0; p < n_patterns; p++) {
        int any = 0;
        for (int t = 0; t < n_targets; t++)
            if (fnmatch(patterns[p], targets[t].name, 0) == 0) hit[t] = any = 1;
        if (!any) {
            free(hit);
            return err_set(err, "adapter target pattern '%s' matches no layer of the model (targets look like "
                                "'%s', '%s')", patterns[p], targets[0].name, targets[n_targets > 1].name);
        }
    }
    int n = 0;
    for (int t = 0; t < n_targets; t++) n += hit[t];
    if (spec->ranks && spec->n_ranks != n) {
        free(hit);
        return err_set(err, "%d per-layer ranks given for %d matched layers", spec->n_ranks, n);
    }
    int matched = 0;
    set->a = xcalloc((size_t)n, sizeof *set->a);
    for (int t = 0; t < n_targets; t++) {
        if (!hit[t]) continue;
        int r = spec->ranks ? spec->ranks[matched] : spec->r;
        matched++;
        if (r <= 0) continue; /* a per-layer rank of 0: this layer stays unadapted */
        AdapterTarget *tg = &targets[t];
        LinearSlot *s = tg->slot;
        for (int i = 0; i < s->n_ad; i++) { /* overlapping slices of one host weight would double-adapt */
            Adapter *o = s->ad[i];
            if (tg->row0 < o->row0 + o->m && o->row0 < tg->row0 + tg->rows) {
                err_set(err, "adapter targets '%s' and '%s' overlap (the same weight rows); pick one", tg->name,
                        o->target);
                free(hit);
                adapters_free(set, targets, n_targets); /* undo: no slot keeps a pointer into the set */
                return -1;
            }
        }
        const char *why = NULL;
        if (s->is_conv && !spec->kind->backward_delta) why = "it has no gradient-from-delta entry for conv layers";
        if (!s->is_conv && !spec->kind->forward) why = "it adapts conv layers only";
        if (why) {
            err_set(err, "adapter kind '%s' cannot adapt '%s', a %s layer: %s (pick other method.targets or "
                         "another method.adapter)", spec->kind->name, tg->name, s->is_conv ? "conv" : "linear", why);
            free(hit);
            adapters_free(set, targets, n_targets);
            return -1;
        }
        ASSERT(s->n_ad < SLOT_MAX_ADAPTERS);
        ASSERT(!s->is_conv || (tg->row0 == 0 && tg->rows == s->out)); /* conv targets are whole layers */
        Adapter *a = &set->a[set->n++];
        a->kind = spec->kind;
        snprintf(a->target, sizeof a->target, "%s", tg->name);
        a->m = tg->rows;
        a->n = s->in;
        a->r = r;
        a->kh = s->is_conv ? s->conv.kh : 0;
        a->kw = s->is_conv ? s->conv.kw : 0;
        a->opt = spec->opt;
        if (check_shape(a, err)) {
            set->n--; /* not attached yet: only the earlier ones are undone */
            memset(a, 0, sizeof *a);
            free(hit);
            adapters_free(set, targets, n_targets);
            return -1;
        }
        a->alpha = spec->alpha * (float)r / (float)spec->r;
        /* alpha_i = alpha r_i / r keeps the scale of the configured rank (METHODS.md, EVA and VAS) */
        a->scale = spec->rslora ? spec->alpha / sqrtf((float)spec->r) : spec->alpha / (float)spec->r;
        a->row0 = tg->row0;
        a->ps = &set->params;
        s->ad[s->n_ad++] = a;
        a->kind->create(a, &set->params);
    }
    free(hit);
    params_finalize(&set->params);
    params_alloc_grads(&set->params);
    /* W0/bias pointers are set after the model's ParamSet is final; the slot knows the host tensors. */
    for (int t = 0; t < n_targets; t++)
        for (int i = 0; i < targets[t].slot->n_ad; i++) {
            Adapter *a = targets[t].slot->ad[i];
            if (a->row0 != targets[t].row0 || strcmp(a->target, targets[t].name) != 0) continue;
            LinearSlot *s = targets[t].slot;
            a->W0 = params_data(model_ps, s->w) + (long)a->row0 * s->in;
            a->bias = s->b >= 0 ? params_data(model_ps, s->b) + a->row0 : NULL;
            a->kind->init_default(a, seed);
        }
    return set->n;
}

void adapters_free(AdapterSet *set, AdapterTarget *targets, int n_targets) {
    for (int t = 0; t < n_targets; t++) { /* detach this set's adapters only */
        LinearSlot *s = targets[t].slot;
        int w = 0;
        for (int i = 0; i < s->n_ad; i++)
            if (!(set->a && s->ad[i] >= set->a && s->ad[i] < set->a + set->n)) s->ad[w++] = s->ad[i];
        s->n_ad = w;
    }
    for (int i = 0; set->a && i < set->n; i++) {
        free(set->a[i].work);
        free(set->a[i].merged_dW); /* a merged adapter's dW stays in W0 (merge for deployment) */
    }
    free(set->a);
    params_free(&set->params);
    memset(set, 0, sizeof *set);
}
