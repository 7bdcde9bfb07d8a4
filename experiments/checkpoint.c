/* experiments/checkpoint.c */
#include "checkpoint.h"

#include <inttypes.h>
#include <string.h>

#include "core/safetensors.h"

typedef struct Entries {
    StEntry *e;
    char **names;
    int n, cap;
} Entries;

static void add(Entries *E, const char *prefix, const ParamView *v, const float *data) {
    if (E->n == E->cap) {
        E->cap = E->cap ? 2 * E->cap : 64;
        E->e = xrealloc(E->e, (size_t)E->cap * sizeof *E->e);
        E->names = xrealloc(E->names, (size_t)E->cap * sizeof *E->names);
    }
    size_t len = strlen(prefix) + strlen(v->name) + 1;
    char *name = xmalloc(len);
    snprintf(name, len, "%s%s", prefix, v->name);
    E->names[E->n] = name;
    E->e[E->n++] = (StEntry){.name = name, .dtype = ST_F32, .ndim = v->ndim, .shape = v->shape, .data = data};
}

static void add_set(Entries *E, const ParamSet *ps, const char *prefix, const Optimizer *opt, int s) {
    for (int i = 0; i < ps->n; i++) add(E, prefix, &ps->views[i], ps->data + ps->views[i].offset);
    if (!opt) return;
    char pm[32], pv[32];
    snprintf(pm, sizeof pm, "opt.m.%d.", s);
    snprintf(pv, sizeof pv, "opt.v.%d.", s);
    for (int i = 0; i < ps->n; i++) {
        const ParamView *v = &ps->views[i];
        if (v->goff < 0) continue;
        add(E, pm, v, opt->m[s] + v->goff);
        if (opt->v[s]) add(E, pv, v, opt->v[s] + v->goff);
    }
}

int ckpt_save(const char *path, const Model *m, const AdapterSet *ad, const Optimizer *opt, const TrainState *st,
              Error *err) {
    Entries E = {0};
    add_set(&E, m->params, "model.", opt, 0);
    if (ad) add_set(&E, &ad->params, "adapter.", opt, 1);
    char step[32], t[32], els[40], eb[32], ts[40];
    snprintf(step, sizeof step, "%ld", st->step);
    snprintf(t, sizeof t, "%ld", opt ? opt->t : 0L);
    snprintf(els, sizeof els, "%.17g", st->epoch_loss_sum);
    snprintf(eb, sizeof eb, "%d", st->epoch_batches);
    snprintf(ts, sizeof ts, "%.17g", st->train_s);
    const char *meta[] = {"format", "loralab-checkpoint", "step", step, "optimizer_t", t, "epoch_loss_sum", els,
                          "epoch_batches", eb, "train_s", ts};
    int rc = st_write(path, E.e, E.n, meta, 6, err);
    for (int i = 0; i < E.n; i++) free(E.names[i]);
    free(E.names);
    free(E.e);
    return rc;
}

/* Pass 0 checks every tensor, pass 1 copies. */
static int load_set(const SafeTensors *f, ParamSet *ps, const char *prefix, Optimizer *opt, int s, int pass,
                    Error *err) {
    char name[PARAM_NAME_MAX + 32];
    for (int i = 0; i < ps->n; i++) {
        const ParamView *v = &ps->views[i];
        for (int k = 0; k < 3; k++) {
            float *dst;
            if (k == 0) {
                snprintf(name, sizeof name, "%s%s", prefix, v->name);
                dst = ps->data + v->offset;
            } else {
                if (!opt || v->goff < 0 || (k == 2 && !opt->v[s])) continue;
                snprintf(name, sizeof name, "opt.%c.%d.%s", k == 1 ? 'm' : 'v', s, v->name);
                dst = (k == 1 ? opt->m[s] : opt->v[s]) + v->goff;
            }
            const StTensor *t = st_find(f, name);
            if (!t || t->dtype != ST_F32 || t->numel != (int64_t)v->numel)
                return err_set(err, "%s: checkpoint tensor '%s' is %s (expected F32 with %zu elements): the checkpoint "
                                    "belongs to another config; delete it to start the run again", f->path, name,
                               t ? "of another dtype or size" : "missing", v->numel);
            if (pass == 1 && st_read_f32(f, name, dst, (int64_t)v->numel, err)) return -1;
        }
    }
    return 0;
}

static int meta_num(const SafeTensors *f, const char *key, double *out, Error *err) {
    const char *v = st_meta(f, key);
    char *end = NULL;
    if (v) *out = strtod(v, &end);
    if (!v || !end || *end) return err_set(err, "%s: checkpoint metadata '%s' is missing or not a number", f->path, key);
    return 0;
}

int ckpt_load(const char *path, Model *m, AdapterSet *ad, Optimizer *opt, TrainState *st, Error *err) {
    SafeTensors f;
    if (st_open(&f, path, err)) return -1;
    double step = 0, t = 0, els = 0, eb = 0, ts = 0;
    int rc = 0;
    const char *fmt = st_meta(&f, "format");
    if (!fmt || strcmp(fmt, "loralab-checkpoint"))
        rc = err_set(err, "%s: not a loralab checkpoint (metadata format = '%s')", path, fmt ? fmt : "");
    if (!rc) rc = meta_num(&f, "step", &step, err) || meta_num(&f, "optimizer_t", &t, err) ||
                  meta_num(&f, "epoch_loss_sum", &els, err) || meta_num(&f, "epoch_batches", &eb, err) ||
                  meta_num(&f, "train_s", &ts, err) ? -1 : 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        rc = load_set(&f, m->params, "model.", opt, 0, pass, err);
        if (!rc && ad) rc = load_set(&f, &ad->params, "adapter.", opt, 1, pass, err);
    }
    if (!rc) {
        st->step = (long)step;
        st->epoch_loss_sum = els;
        st->epoch_batches = (int)eb;
        st->train_s = ts;
        if (opt) opt->t = (long)t;
    }
    st_close(&f);
    return rc;
}
