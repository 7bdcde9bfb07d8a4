/* core/adapter.c: the host side of the seam: linear layers with adapter slots, and attaching adapters. */
#include "adapter.h"

#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "common.h"
#include "cpu/linear.h"

void linear_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, const float *inp, int N, Arena *ar) {
    linear_forward(out, inp, params_data(ps, s->w), s->b >= 0 ? params_data(ps, s->b) : NULL, N, s->in, s->out);
    for (int i = 0; i < s->n_ad; i++) s->ad[i]->kind->forward(s->ad[i], out, s->out, inp, N, ar);
    if (s->tap) s->tap(s->tap_ctx, s, inp, out, N);
}

void linear_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, const float *dout, const float *inp,
                          int N, Arena *ar) {
    if (s->inject) { /* dout + injected gradient, in a copy: dout belongs to the caller */
        float *d = arena_floats(ar, (size_t)N * s->out);
        for (long i = 0; i < (long)N * s->out; i++) d[i] = dout[i] + s->inject[i];
        dout = d;
    }
    linear_backward(dinp, params_grad(ps, s->w), s->b >= 0 ? params_grad(ps, s->b) : NULL, dout, inp,
                    params_data(ps, s->w), N, s->in, s->out);
    if (s->grad_w) linear_backward(NULL, s->grad_w, NULL, dout, inp, NULL, N, s->in, s->out);
    for (int i = 0; i < s->n_ad; i++) s->ad[i]->kind->backward(s->ad[i], dinp, dout, s->out, inp, N, ar);
}

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
        ASSERT(s->n_ad < SLOT_MAX_ADAPTERS);
        Adapter *a = &set->a[set->n++];
        a->kind = spec->kind;
        snprintf(a->target, sizeof a->target, "%s", tg->name);
        a->m = tg->rows;
        a->n = s->in;
        a->r = r;
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
    free(set->a);
    params_free(&set->params);
    memset(set, 0, sizeof *set);
}
