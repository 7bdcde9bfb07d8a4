/* core/params.c */
#include "params.h"

#include <fnmatch.h>
#include <string.h>

#include "common.h"

void params_init(ParamSet *ps) { memset(ps, 0, sizeof *ps); }

int params_add(ParamSet *ps, const char *name, int ndim, const int64_t *shape, int decay) {
    ASSERT(!ps->finalized);
    ASSERT(ndim >= 0 && ndim <= PARAM_MAX_DIMS);
    ASSERTF(strlen(name) < PARAM_NAME_MAX, "parameter name too long: %s", name);
    ASSERTF(params_find(ps, name) < 0, "duplicate parameter name %s", name);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->views = xrealloc(ps->views, (size_t)ps->cap * sizeof *ps->views);
    }
    ParamView *v = &ps->views[ps->n];
    memset(v, 0, sizeof *v);
    strcpy(v->name, name);
    v->ndim = ndim;
    v->numel = 1;
    for (int i = 0; i < ndim; i++) {
        ASSERT(shape[i] >= 0);
        v->shape[i] = shape[i];
        v->numel *= (size_t)shape[i];
    }
    v->offset = ps->numel;
    v->goff = -1;
    v->trainable = 1;
    v->decay = decay;
    ps->numel += (v->numel + 15) & ~(size_t)15;
    return ps->n++;
}

void params_finalize(ParamSet *ps) {
    ASSERT(!ps->finalized);
    ps->data = xmalloc_aligned(ps->numel * sizeof(float));
    memset(ps->data, 0, ps->numel * sizeof(float));
    ps->finalized = 1;
}

int params_find(const ParamSet *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->views[i].name, name) == 0) return i;
    return -1;
}

float *params_data(const ParamSet *ps, int idx) {
    ASSERT(ps->finalized && idx >= 0 && idx < ps->n);
    return ps->data + ps->views[idx].offset;
}

float *params_grad(const ParamSet *ps, int idx) {
    ASSERT(idx >= 0 && idx < ps->n);
    const ParamView *v = &ps->views[idx];
    if (v->goff < 0 || !ps->grad) return NULL;
    return ps->grad + v->goff;
}

int params_set_trainable(ParamSet *ps, const char *pattern, int trainable) {
    int hits = 0;
    for (int i = 0; i < ps->n; i++)
        if (fnmatch(pattern, ps->views[i].name, 0) == 0) {
            ps->views[i].trainable = trainable;
            hits++;
        }
    return hits;
}

void params_set_all_trainable(ParamSet *ps, int trainable) {
    for (int i = 0; i < ps->n; i++) ps->views[i].trainable = trainable;
}

void params_alloc_grads(ParamSet *ps) {
    free(ps->grad);
    ps->grad = NULL;
    size_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        ParamView *v = &ps->views[i];
        if (v->trainable) {
            v->goff = (long)off;
            off += (v->numel + 15) & ~(size_t)15;
        } else {
            v->goff = -1;
        }
    }
    ps->n_grad = off;
    if (off) {
        ps->grad = xmalloc_aligned(off * sizeof(float));
        memset(ps->grad, 0, off * sizeof(float));
    }
}

void params_zero_grad(ParamSet *ps) {
    if (ps->grad) memset(ps->grad, 0, ps->n_grad * sizeof(float));
}

size_t params_count(const ParamSet *ps, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!trainable_only || ps->views[i].trainable) n += ps->views[i].numel;
    return n;
}

void params_free(ParamSet *ps) {
    free(ps->views);
    free(ps->data);
    free(ps->grad);
    memset(ps, 0, sizeof *ps);
}
