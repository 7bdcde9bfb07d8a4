/* core/params_io.c */
#include "params_io.h"

#include <fnmatch.h>
#include <string.h>

#include "safetensors.h"

int params_save(const ParamSet *ps, const char *path, int trainable_only, const char *const *meta_kv, int n_meta,
                Error *err) {
    StEntry *e = xcalloc((size_t)ps->n, sizeof *e);
    int n = 0;
    for (int i = 0; i < ps->n; i++) {
        const ParamView *v = &ps->views[i];
        if (trainable_only && !v->trainable) continue;
        e[n++] = (StEntry){.name = v->name, .dtype = ST_F32, .ndim = v->ndim, .shape = v->shape,
                           .data = params_data(ps, i)};
    }
    int rc = st_write(path, e, n, meta_kv, n_meta, err);
    free(e);
    return rc;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

static int is_float_dtype(StDType t) { return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64; }

/* Two passes: every file tensor is mapped and checked (name, dtype, size, coverage of the model) before a
 * single value is copied, so a failed load leaves the model exactly as it was. */
int params_load(ParamSet *ps, const char *path, const ParamLoadOptions *o, Error *err) {
    static const ParamLoadOptions none = {0};
    if (!o) o = &none;
    SafeTensors st;
    if (st_open(&st, path, err)) return -1;
    typedef struct { int idx; int64_t off, n; } Plan; /* idx -1: dropped */
    Plan *plan = xcalloc((size_t)(st.n ? st.n : 1), sizeof *plan);
    /* rows_loaded[i] counts rows of view i covered by the file, so a q/k/v split must cover all of qkv */
    int64_t *rows_loaded = xcalloc((size_t)(ps->n ? ps->n : 1), sizeof *rows_loaded);
    int rc = 0;
    for (int t = 0; t < st.n && rc == 0; t++) {
        const StTensor *ft = &st.tensors[t];
        char pname[PARAM_NAME_MAX];
        int row0 = 0, rows = -1;
        int mapped = o->map ? o->map(ft->name, pname, sizeof pname, &row0, &rows, o->ctx)
                            : (snprintf(pname, sizeof pname, "%s", ft->name), 0);
        int idx = mapped == 0 ? params_find(ps, pname) : -1;
        plan[t].idx = -1;
        if (idx < 0) {
            if (o->ignore && fnmatch(o->ignore, ft->name, 0) == 0) continue;
            rc = err_set(err, "%s: tensor '%s' matches no parameter of the model%s%s%s (wrong backbone config or "
                              "naming?)", path, ft->name, mapped == 0 ? " (mapped to '" : "",
                         mapped == 0 ? pname : "", mapped == 0 ? "')" : "");
            break;
        }
        if (o->skip && fnmatch(o->skip, pname, 0) == 0) continue;
        ParamView *v = &ps->views[idx];
        int64_t row_len = v->ndim ? (int64_t)v->numel / (v->shape[0] ? v->shape[0] : 1) : 1;
        int64_t nrows = rows < 0 ? (v->ndim ? v->shape[0] : 1) : rows;
        int64_t want = rows < 0 ? (int64_t)v->numel : nrows * row_len;
        if (ft->numel != want) {
            char fs[128], ms[128];
            shape_str(fs, sizeof fs, ft->shape, ft->ndim);
            shape_str(ms, sizeof ms, v->shape, v->ndim);
            rc = err_set(err, "%s: tensor '%s' has shape %s (%lld elements) but the model's '%s' %s needs %lld",
                         path, ft->name, fs, (long long)ft->numel, pname, ms, (long long)want);
            break;
        }
        if (!is_float_dtype(ft->dtype)) {
            rc = err_set(err, "%s: tensor '%s' has dtype %s; a parameter needs F32, F16, BF16 or F64", path, ft->name,
                         st_dtype_name(ft->dtype));
            break;
        }
        plan[t] = (Plan){.idx = idx, .off = (int64_t)row0 * row_len, .n = want};
        rows_loaded[idx] += nrows;
    }
    for (int i = 0; i < ps->n && rc == 0; i++) {
        ParamView *v = &ps->views[i];
        if (o->skip && fnmatch(o->skip, v->name, 0) == 0) continue;
        int64_t need = v->ndim ? v->shape[0] : 1;
        if (rows_loaded[i] != need)
            rc = err_set(err, "%s: the model's parameter '%s' is %s in the file (%lld of %lld rows found)", path,
                         v->name, rows_loaded[i] ? "incomplete" : "missing", (long long)rows_loaded[i],
                         (long long)need);
    }
    for (int t = 0; t < st.n && rc == 0; t++)
        if (plan[t].idx >= 0)
            rc = st_read_f32(&st, st.tensors[t].name, params_data(ps, plan[t].idx) + plan[t].off, plan[t].n, err);
    free(plan);
    free(rows_loaded);
    st_close(&st);
    return rc;
}
