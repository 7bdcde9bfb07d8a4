/* results/h5rec.c: the per-run HDF5 record (contract in h5rec.h, layout and crash contract in docs/record.md).
 * Crash safety rests on one rule: HDF5 is only called inside h5rec_ calls, and every call that changes the
 * file ends with H5Fflush, so between calls nothing is dirty in HDF5's caches and the bytes on disk are a
 * complete file. Appends wait in our own buffers until a flush. Two details keep the rule true: chunks are at
 * most 256 KiB, so they stay in HDF5's 1 MiB chunk cache instead of being written past the flushed end of
 * file between flushes; and the 1.8 format (no SWMR status flags) lets a killed writer's file open again. */
#include "results/h5rec.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "results/h5check.h"

#define CHUNK_ROWS 1024
#define CHUNK_MAX_VALUES 32768 /* 256 KiB of f64 per chunk: see the header comment */
#define FORMAT_ATTR "loralab_format"
#define FORMAT_VALUE "h5rec 1"

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t LinkInfo;
#else
typedef H5L_info_t LinkInfo;
#endif

enum { KIND_SCALAR = 1, KIND_ROW = 2 };

typedef struct {
    char *name;
    int kind, n_cols;
    hid_t dstep, dval;  /* open for the recorder's lifetime */
    int64_t len;        /* rows on disk */
    int64_t last_step;  /* INT64_MIN while empty */
    int64_t *bstep;     /* buffered rows: steps (nbuf), values (nbuf, n_cols) */
    double *bval;
    int nbuf, bcap;
} Series;

struct H5Rec {
    char *path;
    hid_t file;
    int flush_every, deflate, fsync;
    Series *s;
    int ns, cap, hint;
    int64_t repaired;
};

/* ---- small helpers --------------------------------------------------------------------------------------- */

static int check_name(const char *path, const char *what, const char *name, Error *err) {
    ASSERT(name);
    size_t n = strlen(name);
    int ok = n > 0 && n < 1024 && name[0] != '/' && name[n - 1] != '/' && !strstr(name, "//");
    for (const char *p = name; ok && *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) ok = 0;
        p += len + (e ? 1 : 0);
    }
    if (!ok)
        return err_set(err, "%s: %s name '%s' is not valid: expected parts separated by single '/' (no leading or "
                            "trailing '/', no '.' or '..' parts)", path, what, name);
    return 0;
}

/* 1 when another open file description holds a lock on path (HDF5 takes flock: exclusive for writers). */
static int lock_busy(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases our probe lock */
    return busy;
}

int h5rec_in_use(const char *path) { return lock_busy(path); }

/* Writes string attribute `name` on loc (n strings; scalar when scalar != 0), replacing an existing one.
 * Variable-length UTF-8: no 64 KiB object-header limit for long configs, and h5py reads them as str. */
static int write_str_attr(hid_t loc, const char *path, const char *obj, const char *name, const char *const *values,
                          hsize_t n, int scalar, Error *err) {
    hid_t t = -1, sp = -1, a = -1;
    htri_t ex = 0;
    int rc = -1;
    if (h5Check(t = H5Tcopy(H5T_C_S1), err, path, obj)) goto done;
    if (h5Check(H5Tset_size(t, H5T_VARIABLE), err, path, obj)) goto done;
    if (h5Check(H5Tset_cset(t, H5T_CSET_UTF8), err, path, obj)) goto done;
    if (h5Check(sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL), err, path, obj)) goto done;
    if (h5Check(ex = H5Aexists(loc, name), err, path, obj)) goto done;
    if (ex > 0 && h5Check(H5Adelete(loc, name), err, path, obj)) goto done;
    if (h5Check(a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT), err, path, obj)) goto done;
    if (h5Check(H5Awrite(a, t, values), err, path, obj)) goto done;
    rc = 0;
done:
    h5_close(a);
    h5_close(sp);
    h5_close(t);
    return rc;
}

/* Reads string attribute `name` of object `obj` (relative to loc; "." for loc itself): its n strings as one
 * allocation, pointers first then the bytes. Variable- and fixed-length strings both read. */
static int read_str_attr(hid_t loc, const char *path, const char *obj, const char *name, char ***out, int *n_out,
                         Error *err) {
    hid_t a = -1, ft = -1, mt = -1, sp = -1;
    hssize_t n = 0;
    htri_t vs = 0;
    char **vl = NULL, *fixed = NULL;
    size_t width = 0;
    int rc = -1;
    char what[1200];
    snprintf(what, sizeof what, "attribute '%s' of '%s'", name, obj);
    *out = NULL;
    if (h5Check(a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT), err, path, what)) goto done;
    if (h5Check(ft = H5Aget_type(a), err, path, what)) goto done;
    if (H5Tget_class(ft) != H5T_STRING) {
        err_set(err, "%s: %s is not a string", path, what);
        goto done;
    }
    if (h5Check(sp = H5Aget_space(a), err, path, what)) goto done;
    if (h5Check(n = H5Sget_simple_extent_npoints(sp), err, path, what)) goto done;
    if (h5Check(vs = H5Tis_variable_str(ft), err, path, what)) goto done;
    if (h5Check(mt = H5Tcopy(H5T_C_S1), err, path, what)) goto done;
    if (vs) {
        if (h5Check(H5Tset_size(mt, H5T_VARIABLE), err, path, what)) goto done;
        if (h5Check(H5Tset_cset(mt, H5Tget_cset(ft)), err, path, what)) goto done;
        vl = xcalloc((size_t)n, sizeof *vl);
        if (h5Check(H5Aread(a, mt, vl), err, path, what)) goto done;
    } else {
        width = H5Tget_size(ft) + 1; /* +1: always room for the terminator */
        if (h5Check(H5Tset_size(mt, width), err, path, what)) goto done;
        if (h5Check(H5Tset_strpad(mt, H5T_STR_NULLTERM), err, path, what)) goto done;
        fixed = xcalloc((size_t)n, width);
        if (h5Check(H5Aread(a, mt, fixed), err, path, what)) goto done;
    }
    size_t bytes = (size_t)n * sizeof(char *);
    for (hssize_t i = 0; i < n; i++) bytes += strlen(vs ? (vl[i] ? vl[i] : "") : fixed + (size_t)i * width) + 1;
    char **arr = xmalloc(bytes);
    char *p = (char *)(arr + n);
    for (hssize_t i = 0; i < n; i++) {
        const char *s = vs ? (vl[i] ? vl[i] : "") : fixed + (size_t)i * width;
        size_t len = strlen(s) + 1;
        memcpy(p, s, len);
        arr[i] = p;
        p += len;
    }
    *out = arr;
    *n_out = (int)n;
    rc = 0;
done:
    if (vl) {
        for (hssize_t i = 0; i < n; i++) H5free_memory(vl[i]);
        free(vl);
    }
    free(fixed);
    h5_close(mt);
    h5_close(sp);
    h5_close(ft);
    h5_close(a);
    return rc;
}

/* Reads rows [0, n) of dataset d (rank 1, or rank 2 with n_cols columns) as memtype into buf. */
static int read_rows(hid_t d, hid_t memtype, int rank, int64_t n, int n_cols, void *buf, const char *path,
                     const char *obj, Error *err) {
    if (n == 0) return 0;
    hsize_t start[2] = {0, 0}, count[2] = {(hsize_t)n, (hsize_t)n_cols};
    hid_t fs = -1, ms = -1;
    int rc = -1;
    if (h5Check(fs = H5Dget_space(d), err, path, obj)) goto done;
    if (h5Check(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL), err, path, obj)) goto done;
    if (h5Check(ms = H5Screate_simple(rank, count, NULL), err, path, obj)) goto done;
    if (h5Check(H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf), err, path, obj)) goto done;
    rc = 0;
done:
    h5_close(ms);
    h5_close(fs);
    return rc;
}

/* Dims of dataset d: rank into *rank, up to 2 dims. */
static int get_dims(hid_t d, int *rank, hsize_t dims[2], const char *path, const char *obj, Error *err) {
    hid_t sp = -1;
    int rc = -1;
    if (h5Check(sp = H5Dget_space(d), err, path, obj)) goto done;
    if (h5Check(*rank = H5Sget_simple_extent_ndims(sp), err, path, obj)) goto done;
    if (*rank < 1 || *rank > 2) {
        err_set(err, "%s: '%s' has rank %d, expected 1 or 2", path, obj, *rank);
        goto done;
    }
    if (h5Check(H5Sget_simple_extent_dims(sp, dims, NULL), err, path, obj)) goto done;
    rc = 0;
done:
    h5_close(sp);
    return rc;
}

static void series_free(Series *s) {
    h5_close(s->dstep);
    h5_close(s->dval);
    free(s->name);
    free(s->bstep);
    free(s->bval);
    memset(s, 0, sizeof *s);
    s->dstep = s->dval = -1;
}

/* ---- series on disk ---------------------------------------------------------------------------------------- */

/* Opens series `name`: kind, n_cols, datasets, and its consistent length: the longest prefix where step and
 * value both have rows, steps strictly increase and none is the fill value (a chunk a kill left unwritten).
 * *stored gets the larger stored length; *steps_out (may be NULL) the steps read. */
static int series_open(hid_t file, const char *path, const char *name, Series *s, int64_t *stored,
                       int64_t **steps_out, Error *err) {
    char **kind = NULL;
    int nk = 0, rank_s = 0, rank_v = 0, rc = -1;
    hsize_t ds[2] = {0, 0}, dv[2] = {0, 0};
    int64_t *steps = NULL;
    memset(s, 0, sizeof *s);
    s->dstep = s->dval = -1;
    s->name = xstrdup(name);
    if (read_str_attr(file, path, name, "kind", &kind, &nk, err)) goto done;
    if (nk != 1 || (strcmp(kind[0], "scalar") && strcmp(kind[0], "row"))) {
        err_set(err, "%s: series '%s': attribute kind is '%s', expected 'scalar' or 'row'", path, name,
                nk ? kind[0] : "");
        goto done;
    }
    s->kind = strcmp(kind[0], "row") ? KIND_SCALAR : KIND_ROW;
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/step", name);
    if (h5Check(s->dstep = H5Dopen2(file, sub, H5P_DEFAULT), err, path, sub)) goto done;
    if (get_dims(s->dstep, &rank_s, ds, path, sub, err)) goto done;
    snprintf(sub, sizeof sub, "%s/value", name);
    if (h5Check(s->dval = H5Dopen2(file, sub, H5P_DEFAULT), err, path, sub)) goto done;
    if (get_dims(s->dval, &rank_v, dv, path, sub, err)) goto done;
    if (rank_s != 1 || rank_v != (s->kind == KIND_ROW ? 2 : 1)) {
        err_set(err, "%s: series '%s': step has rank %d and value rank %d, expected 1 and %d", path, name, rank_s,
                rank_v, s->kind == KIND_ROW ? 2 : 1);
        goto done;
    }
    s->n_cols = s->kind == KIND_ROW ? (int)dv[1] : 1;
    int64_t n = (int64_t)MIN(ds[0], dv[0]);
    *stored = (int64_t)MAX(ds[0], dv[0]);
    steps = xmalloc((size_t)n * sizeof *steps);
    if (read_rows(s->dstep, H5T_NATIVE_INT64, 1, n, 1, steps, path, name, err)) goto done;
    int64_t i = 0;
    while (i < n && steps[i] != INT64_MIN && (i == 0 || steps[i] > steps[i - 1])) i++;
    s->len = i;
    s->last_step = i ? steps[i - 1] : INT64_MIN;
    if (steps_out) {
        *steps_out = steps;
        steps = NULL;
    }
    rc = 0;
done:
    free(kind);
    free(steps);
    if (rc) series_free(s);
    return rc;
}

/* An extendable chunked dataset `dname` in group g: (0) or (0, n_cols). */
static int make_extendable(H5Rec *r, hid_t g, const char *obj, const char *dname, hid_t type, int rank, int n_cols,
                           const void *fill, hid_t *out, Error *err) {
    hsize_t dims[2] = {0, (hsize_t)n_cols}, maxd[2] = {H5S_UNLIMITED, (hsize_t)n_cols};
    hsize_t chunk[2] = {rank == 2 ? (hsize_t)MAX(1, MIN(CHUNK_ROWS, CHUNK_MAX_VALUES / n_cols)) : CHUNK_ROWS,
                        (hsize_t)n_cols};
    hid_t sp = -1, dcpl = -1;
    int rc = -1;
    if (h5Check(sp = H5Screate_simple(rank, dims, maxd), err, r->path, obj)) goto done;
    if (h5Check(dcpl = H5Pcreate(H5P_DATASET_CREATE), err, r->path, obj)) goto done;
    if (h5Check(H5Pset_chunk(dcpl, rank, chunk), err, r->path, obj)) goto done;
    if (h5Check(H5Pset_fill_value(dcpl, type, fill), err, r->path, obj)) goto done;
    if (r->deflate > 0) {
        if (h5Check(H5Pset_shuffle(dcpl), err, r->path, obj)) goto done;
        if (h5Check(H5Pset_deflate(dcpl, (unsigned)r->deflate), err, r->path, obj)) goto done;
    }
    if (h5Check(*out = H5Dcreate2(g, dname, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), err, r->path, obj)) goto done;
    rc = 0;
done:
    h5_close(dcpl);
    h5_close(sp);
    return rc;
}

static int series_create(H5Rec *r, Series *s, const char *const *cols, Error *err) {
    hid_t lcpl = -1, g = -1;
    int rc = -1;
    const char *kind = s->kind == KIND_ROW ? "row" : "scalar";
    const int64_t step_fill = INT64_MIN; /* never a valid step: marks rows whose chunk a kill left unwritten */
    const double value_fill = NAN;
    if (h5Check(lcpl = H5Pcreate(H5P_LINK_CREATE), err, r->path, s->name)) goto done;
    if (h5Check(H5Pset_create_intermediate_group(lcpl, 1), err, r->path, s->name)) goto done;
    if (h5Check(g = H5Gcreate2(r->file, s->name, lcpl, H5P_DEFAULT, H5P_DEFAULT), err, r->path, s->name)) goto done;
    if (write_str_attr(g, r->path, s->name, "kind", &kind, 1, 1, err)) goto done;
    if (s->kind == KIND_ROW && cols &&
        write_str_attr(g, r->path, s->name, "columns", cols, (hsize_t)s->n_cols, 0, err))
        goto done;
    if (make_extendable(r, g, s->name, "step", H5T_STD_I64LE, 1, 1, &step_fill, &s->dstep, err)) goto done;
    if (make_extendable(r, g, s->name, "value", H5T_IEEE_F64LE, s->kind == KIND_ROW ? 2 : 1, s->n_cols,
                        &value_fill, &s->dval, err))
        goto done;
    rc = 0;
done:
    h5_close(g);
    h5_close(lcpl);
    return rc;
}

/* Extends dataset d to rows + nbuf rows and writes buf (nbuf rows) at the end. */
static int extend_write(H5Rec *r, Series *s, hid_t d, int rank, hid_t memtype, const void *buf, Error *err) {
    hsize_t dims[2] = {(hsize_t)(s->len + s->nbuf), (hsize_t)s->n_cols};
    hsize_t start[2] = {(hsize_t)s->len, 0}, count[2] = {(hsize_t)s->nbuf, (hsize_t)s->n_cols};
    hid_t fs = -1, ms = -1;
    int rc = -1;
    if (h5Check(H5Dset_extent(d, dims), err, r->path, s->name)) goto done;
    if (h5Check(fs = H5Dget_space(d), err, r->path, s->name)) goto done;
    if (h5Check(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL), err, r->path, s->name)) goto done;
    if (h5Check(ms = H5Screate_simple(rank, count, NULL), err, r->path, s->name)) goto done;
    if (h5Check(H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf), err, r->path, s->name)) goto done;
    rc = 0;
done:
    h5_close(ms);
    h5_close(fs);
    return rc;
}

/* Writes the buffered rows; idempotent if it fails half-way (len only moves when both datasets are written). */
static int series_write(H5Rec *r, Series *s, Error *err) {
    if (s->nbuf == 0) return 0;
    if (extend_write(r, s, s->dval, s->kind == KIND_ROW ? 2 : 1, H5T_NATIVE_DOUBLE, s->bval, err)) return -1;
    if (extend_write(r, s, s->dstep, 1, H5T_NATIVE_INT64, s->bstep, err)) return -1;
    s->len += s->nbuf;
    s->nbuf = 0;
    return 0;
}

static int series_resize(H5Rec *r, Series *s, int64_t n, Error *err) {
    hsize_t d[2] = {(hsize_t)n, (hsize_t)s->n_cols};
    if (h5Check(H5Dset_extent(s->dstep, d), err, r->path, s->name)) return -1;
    if (h5Check(H5Dset_extent(s->dval, d), err, r->path, s->name)) return -1;
    return 0;
}

static int file_flush(H5Rec *r, Error *err) {
    if (h5Check(H5Fflush(r->file, H5F_SCOPE_GLOBAL), err, r->path, NULL)) return -1;
    if (r->fsync) {
        void *h = NULL;
        if (h5Check(H5Fget_vfd_handle(r->file, H5P_DEFAULT, &h), err, r->path, NULL)) return -1;
        if (fsync(*(int *)h)) return err_set(err, "%s: fsync: %s", r->path, strerror(errno));
    }
    return 0;
}

/* ---- listing series ------------------------------------------------------------------------------------------ */

typedef struct {
    char **names;
    int n, cap;
} NameList;

static herr_t visit_cb(hid_t g, const char *name, const LinkInfo *info, void *data) {
    (void)info;
    NameList *l = data;
    htri_t is_series = H5Aexists_by_name(g, name, "kind", H5P_DEFAULT);
    if (is_series < 0) return -1;
    if (is_series) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->names = xrealloc(l->names, (size_t)l->cap * sizeof *l->names);
        }
        l->names[l->n++] = xstrdup(name);
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int collect_series(hid_t file, const char *path, NameList *l, Error *err) {
    memset(l, 0, sizeof *l);
    if (h5Check(H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, l), err, path, "listing series")) return -1;
    if (l->n > 1) qsort(l->names, (size_t)l->n, sizeof *l->names, cmp_str);
    return 0;
}

static void names_free(NameList *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
}

/* ---- the recorder ------------------------------------------------------------------------------------------ */

static void rec_free(H5Rec *r) {
    for (int i = 0; i < r->ns; i++) series_free(&r->s[i]);
    free(r->s);
    h5_close(r->file);
    free(r->path);
    free(r);
}

static Series *series_add(H5Rec *r) {
    if (r->ns == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->s = xrealloc(r->s, (size_t)r->cap * sizeof *r->s);
    }
    Series *s = &r->s[r->ns++];
    memset(s, 0, sizeof *s);
    s->dstep = s->dval = -1;
    return s;
}

/* Loads every series of an opened file (append mode) and trims those a kill left inconsistent. */
static int load_series(H5Rec *r, Error *err) {
    NameList l;
    int rc = -1;
    if (collect_series(r->file, r->path, &l, err)) return -1;
    for (int i = 0; i < l.n; i++) {
        Series *s = series_add(r);
        int64_t stored = 0;
        if (series_open(r->file, r->path, l.names[i], s, &stored, NULL, err)) {
            r->ns--;
            goto done;
        }
        if (stored > s->len) {
            if (series_resize(r, s, s->len, err)) goto done;
            r->repaired += stored - s->len;
        }
    }
    rc = 0;
done:
    names_free(&l);
    return rc;
}

/* e's message without its leading "<path>: ", for nesting in a message that names the path already. */
static const char *after_path(const Error *e, const char *path) {
    size_t n = strlen(path);
    return !strncmp(e->msg, path, n) && e->msg[n] == ':' && e->msg[n + 1] == ' ' ? e->msg + n + 2 : e->msg;
}

int h5rec_open(H5Rec **out, const char *path, int mode, Error *err) {
    ASSERT(out && path);
    *out = NULL;
    h5_quiet();
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (!exists && errno != ENOENT) return err_set(err, "%s: cannot open run file: %s", path, strerror(errno));
    if (exists && !S_ISREG(st.st_mode)) return err_set(err, "%s: cannot open run file: not a regular file", path);
    if (exists && lock_busy(path))
        return err_set(err, "%s: cannot open run file: in use (another writer or HDF5 reader holds its lock)", path);
    int append = (mode & H5REC_APPEND) && exists;
    if (append && access(path, R_OK | W_OK))
        return err_set(err, "%s: cannot open run file for appending: %s", path, strerror(errno));

    H5Rec *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    r->file = -1;
    r->flush_every = H5REC_FLUSH_EVERY_DEFAULT;
    r->fsync = (mode & H5REC_FSYNC) != 0;
    hid_t fapl = -1;
    int rc = -1;
    if (h5Check(fapl = H5Pcreate(H5P_FILE_ACCESS), err, path, NULL)) goto done;
    /* 1.8 format: superblock v0 has no "open for writing" flag, so a killed writer's file needs no h5clear. */
    if (h5Check(H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18), err, path, NULL)) goto done;
    if (append) {
        Error e;
        if (st.st_size == 0 || (r->file = H5Fopen(path, H5F_ACC_RDWR, fapl)) < 0) {
            if (st.st_size == 0) err_set(&e, "the file is empty");
            else h5_fail(&e, __FILE__, __LINE__, path, NULL, "H5Fopen");
            if (strstr(e.msg, "unable to lock file")) { /* a writer started since lock_busy() */
                err_set(err, "%s", e.msg);
                goto done;
            }
            err_set(err, "%s: run file is unreadable as HDF5 (a run killed while flushing leaves it so; "
                         "h5rec_recover moves it aside): %s", path, after_path(&e, path));
            rc = H5REC_BROKEN;
            goto done;
        }
        htri_t ours = H5Aexists(r->file, FORMAT_ATTR);
        if (ours == 0) {
            err_set(err, "%s: not an h5rec run file (no root attribute '%s')", path, FORMAT_ATTR);
            goto done;
        }
        if (ours < 0 || load_series(r, &e)) {
            if (ours < 0) h5_fail(&e, __FILE__, __LINE__, path, NULL, "H5Aexists");
            err_set(err, "%s: run file is damaged (a run killed while flushing leaves it so; h5rec_recover moves "
                         "it aside): %s", path, after_path(&e, path));
            rc = H5REC_BROKEN;
            goto done;
        }
        if (r->repaired && file_flush(r, err)) goto done;
    } else {
        const char *fmt = FORMAT_VALUE;
        if (h5Check(r->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), err, path, NULL)) goto done;
        if (write_str_attr(r->file, path, "/", FORMAT_ATTR, &fmt, 1, 1, err)) goto done;
        if (file_flush(r, err)) goto done;
    }
    rc = 0;
done:
    h5_close(fapl);
    if (rc) rec_free(r);
    else *out = r;
    return rc;
}

int h5rec_recover(const char *path, char *moved_to, size_t moved_to_cap, Error *err) {
    ASSERT(path);
    struct stat st;
    if (stat(path, &st)) return err_set(err, "%s: cannot move aside: %s", path, strerror(errno));
    if (lock_busy(path)) return err_set(err, "%s: cannot move aside: in use by a live process", path);
    char dst[4200];
    for (int n = 1; n < 100000; n++) {
        snprintf(dst, sizeof dst, "%s.broken-%d", path, n);
        if (lstat(dst, &st) == 0) continue;
        if (errno != ENOENT) return err_set(err, "%s: cannot move aside to %s: %s", path, dst, strerror(errno));
        if (rename(path, dst)) return err_set(err, "%s: cannot move aside to %s: %s", path, dst, strerror(errno));
        if (moved_to) snprintf(moved_to, moved_to_cap, "%s", dst);
        return 0;
    }
    return err_set(err, "%s: cannot move aside: %s.broken-1 .. -99999 all exist", path, path);
}

void h5rec_set_flush_every(H5Rec *r, int flush_every) {
    ASSERT(r && flush_every >= 1);
    r->flush_every = flush_every;
}

void h5rec_set_deflate(H5Rec *r, int level) {
    ASSERT(r && level >= 0 && level <= 9);
    r->deflate = level;
}

int64_t h5rec_repaired(const H5Rec *r) { return r->repaired; }

static Series *find_series(H5Rec *r, const char *name) {
    /* appends usually cycle through the series in a fixed order: try the one after the last hit first */
    if (r->hint < r->ns && !strcmp(r->s[r->hint].name, name)) return &r->s[r->hint++];
    for (int i = 0; i < r->ns; i++)
        if (!strcmp(r->s[i].name, name)) {
            r->hint = i + 1;
            return &r->s[i];
        }
    return NULL;
}

static int append_common(H5Rec *r, const char *name, int kind, int64_t step, const double *values, int n_cols,
                         const char *const *cols, Error *err) {
    ASSERT(r && name && values);
    Series *s = find_series(r, name);
    if (!s) {
        if (check_name(r->path, "series", name, err)) return -1;
        if (n_cols < 1 || n_cols > CHUNK_MAX_VALUES)
            return err_set(err, "%s: series '%s': %d columns, expected 1 .. %d", r->path, name, n_cols,
                           CHUNK_MAX_VALUES);
        s = series_add(r);
        s->name = xstrdup(name);
        s->kind = kind;
        s->n_cols = n_cols;
        s->last_step = INT64_MIN;
        if (series_create(r, s, cols, err) || file_flush(r, err)) {
            series_free(s);
            r->ns--;
            return -1;
        }
    } else if (s->kind != kind) {
        return err_set(err, "%s: series '%s' is a %s series, appended to as a %s series", r->path, name,
                       s->kind == KIND_ROW ? "row" : "scalar", kind == KIND_ROW ? "row" : "scalar");
    } else if (s->n_cols != n_cols) {
        return err_set(err, "%s: series '%s' has %d columns, appended row has %d", r->path, name, s->n_cols, n_cols);
    }
    if (step <= s->last_step)
        return err_set(err, "%s: series '%s': step %lld is not after its last step %lld (a resume calls "
                            "h5rec_truncate_after(checkpoint step) first)", r->path, name, (long long)step,
                       (long long)s->last_step);
    /* A full buffer is written before the append that would overflow it, not after the append that fills
     * it: series appended once per step then flush at the same step, keeping their on-disk lengths equal. */
    if (s->nbuf >= r->flush_every && h5rec_flush(r, err)) return -1;
    if (s->nbuf == s->bcap) {
        s->bcap = s->bcap ? 2 * s->bcap : MIN(r->flush_every, 64);
        s->bstep = xrealloc(s->bstep, (size_t)s->bcap * sizeof *s->bstep);
        s->bval = xrealloc(s->bval, (size_t)s->bcap * (size_t)n_cols * sizeof *s->bval);
    }
    s->bstep[s->nbuf] = step;
    memcpy(s->bval + (size_t)s->nbuf * (size_t)n_cols, values, (size_t)n_cols * sizeof *values);
    s->nbuf++;
    s->last_step = step;
    return 0;
}

int h5rec_append(H5Rec *r, const char *series, int64_t step, double value, Error *err) {
    return append_common(r, series, KIND_SCALAR, step, &value, 1, NULL, err);
}

int h5rec_append_row(H5Rec *r, const char *series, int64_t step, const double *values, int n_cols,
                     const char *const *col_names, Error *err) {
    return append_common(r, series, KIND_ROW, step, values, n_cols, col_names, err);
}

int h5rec_set_attr(H5Rec *r, const char *name, const char *value, Error *err) {
    ASSERT(r && name && value);
    if (write_str_attr(r->file, r->path, "/", name, &value, 1, 1, err)) return -1;
    return file_flush(r, err);
}

int h5rec_put_matrix(H5Rec *r, const char *name, const float *data, int rows, int cols, Error *err) {
    ASSERT(r && name && data && rows >= 1 && cols >= 1);
    if (check_name(r->path, "matrix", name, err)) return -1;
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols}, old[2] = {0, 0};
    hid_t d = -1, sp = -1, dcpl = -1, lcpl = -1;
    int rank = 0, rc = -1;
    d = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (d < 0) {
        H5Eclear2(H5E_DEFAULT); /* absent: create below */
    } else {
        if (get_dims(d, &rank, old, r->path, name, err)) goto done;
        if (rank != 2 || old[0] != dims[0] || old[1] != dims[1]) { /* other shape: replace */
            h5_close(d);
            d = -1;
            if (h5Check(H5Ldelete(r->file, name, H5P_DEFAULT), err, r->path, name)) goto done;
        }
    }
    if (d < 0) {
        if (h5Check(sp = H5Screate_simple(2, dims, NULL), err, r->path, name)) goto done;
        if (h5Check(dcpl = H5Pcreate(H5P_DATASET_CREATE), err, r->path, name)) goto done;
        if (r->deflate > 0) { /* filters need chunks: one chunk of at most CHUNK_ROWS rows */
            hsize_t chunk[2] = {(hsize_t)MIN(rows, CHUNK_ROWS), (hsize_t)cols};
            if (h5Check(H5Pset_chunk(dcpl, 2, chunk), err, r->path, name)) goto done;
            if (h5Check(H5Pset_shuffle(dcpl), err, r->path, name)) goto done;
            if (h5Check(H5Pset_deflate(dcpl, (unsigned)r->deflate), err, r->path, name)) goto done;
        }
        if (h5Check(lcpl = H5Pcreate(H5P_LINK_CREATE), err, r->path, name)) goto done;
        if (h5Check(H5Pset_create_intermediate_group(lcpl, 1), err, r->path, name)) goto done;
        if (h5Check(d = H5Dcreate2(r->file, name, H5T_IEEE_F32LE, sp, lcpl, dcpl, H5P_DEFAULT), err, r->path, name))
            goto done;
    }
    if (h5Check(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), err, r->path, name)) goto done;
    rc = 0;
done:
    h5_close(lcpl);
    h5_close(dcpl);
    h5_close(sp);
    h5_close(d);
    return rc ? rc : file_flush(r, err);
}

int h5rec_flush(H5Rec *r, Error *err) {
    ASSERT(r);
    for (int i = 0; i < r->ns; i++)
        if (series_write(r, &r->s[i], err)) return -1;
    return file_flush(r, err);
}

int h5rec_truncate_after(H5Rec *r, int64_t step, Error *err) {
    ASSERT(r);
    /* buffered rows at or after step go; the rest are written, so the cut below only looks at the disk */
    for (int i = 0; i < r->ns; i++) {
        Series *s = &r->s[i];
        while (s->nbuf > 0 && s->bstep[s->nbuf - 1] >= step) s->nbuf--;
        s->last_step = s->nbuf ? s->bstep[s->nbuf - 1] : s->last_step;
    }
    if (h5rec_flush(r, err)) return -1;
    for (int i = 0; i < r->ns; i++) {
        Series *s = &r->s[i];
        if (s->len == 0) s->last_step = INT64_MIN;
        if (s->len == 0 || s->last_step < step) continue;
        int64_t *steps = xmalloc((size_t)s->len * sizeof *steps);
        if (read_rows(s->dstep, H5T_NATIVE_INT64, 1, s->len, 1, steps, r->path, s->name, err)) {
            free(steps);
            return -1;
        }
        int64_t lo = 0, hi = s->len; /* first row with steps[row] >= step (steps strictly increase) */
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (steps[mid] < step) lo = mid + 1;
            else hi = mid;
        }
        int64_t last = lo ? steps[lo - 1] : INT64_MIN;
        free(steps);
        if (series_resize(r, s, lo, err)) return -1;
        s->len = lo;
        s->last_step = last;
    }
    return file_flush(r, err);
}

int h5rec_close(H5Rec *r, Error *err) {
    if (!r) return 0;
    int rc = h5rec_flush(r, err);
    for (int i = 0; i < r->ns; i++) series_free(&r->s[i]);
    r->ns = 0;
    if (H5Fclose(r->file) < 0 && rc == 0) rc = h5_fail(err, __FILE__, __LINE__, r->path, NULL, "H5Fclose");
    r->file = -1;
    rec_free(r);
    return rc;
}

/* ---- readers --------------------------------------------------------------------------------------------------- */

/* Read-only, without HDF5's file lock: a report may read a live run (as of its last flush). */
static int open_reader(const char *path, hid_t *file, Error *err) {
    h5_quiet();
    *file = -1;
    struct stat st;
    if (stat(path, &st)) return err_set(err, "%s: cannot read run file: %s", path, strerror(errno));
    hid_t fapl = -1;
    int rc = -1;
    if (h5Check(fapl = H5Pcreate(H5P_FILE_ACCESS), err, path, NULL)) goto done;
#if H5_VERSION_GE(1, 10, 7)
    if (h5Check(H5Pset_file_locking(fapl, 0, 1), err, path, NULL)) goto done;
#endif
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (*file < 0) { /* already open for writing in this process: HDF5 wants the same locking setting */
        H5Eclear2(H5E_DEFAULT);
        if (h5Check(*file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), err, path, NULL)) goto done;
    }
    rc = 0;
done:
    h5_close(fapl);
    return rc;
}

/* The common part of read_series / read_rows. */
static int read_any(const char *path, const char *series, int want_kind, int64_t **steps, double **values,
                    int64_t *n, int *n_cols, char ***col_names, Error *err) {
    ASSERT(path && series && steps && values && n);
    *steps = NULL;
    *values = NULL;
    *n = 0;
    if (col_names) *col_names = NULL;
    hid_t file = -1;
    Series s;
    memset(&s, 0, sizeof s);
    s.dstep = s.dval = -1;
    int64_t stored = 0, *st = NULL;
    double *val = NULL;
    int rc = -1;
    if (open_reader(path, &file, err)) goto done;
    if (series_open(file, path, series, &s, &stored, &st, err)) goto done;
    if (s.kind != want_kind) {
        err_set(err, "%s: series '%s' is a %s series (%d columns): read it with %s", path, series,
                s.kind == KIND_ROW ? "row" : "scalar", s.n_cols,
                s.kind == KIND_ROW ? "h5rec_read_rows" : "h5rec_read_series");
        goto done;
    }
    val = xmalloc((size_t)s.len * (size_t)s.n_cols * sizeof *val);
    if (read_rows(s.dval, H5T_NATIVE_DOUBLE, want_kind == KIND_ROW ? 2 : 1, s.len, s.n_cols, val, path, series, err))
        goto done;
    if (col_names) {
        htri_t has = 0;
        int nc = 0;
        if (h5Check(has = H5Aexists_by_name(file, series, "columns", H5P_DEFAULT), err, path, series)) goto done;
        if (has > 0 && read_str_attr(file, path, series, "columns", col_names, &nc, err)) goto done;
        if (has > 0 && nc != s.n_cols) {
            err_set(err, "%s: series '%s': %d column names for %d columns", path, series, nc, s.n_cols);
            free(*col_names);
            *col_names = NULL;
            goto done;
        }
    }
    *steps = st;
    *values = val;
    *n = s.len;
    if (n_cols) *n_cols = s.n_cols;
    st = NULL;
    val = NULL;
    rc = 0;
done:
    free(st);
    free(val);
    series_free(&s);
    h5_close(file);
    return rc;
}

int h5rec_read_series(const char *path, const char *series, int64_t **steps, double **values, int64_t *n,
                      Error *err) {
    return read_any(path, series, KIND_SCALAR, steps, values, n, NULL, NULL, err);
}

int h5rec_read_rows(const char *path, const char *series, int64_t **steps, double **values, int64_t *n, int *n_cols,
                    char ***col_names, Error *err) {
    return read_any(path, series, KIND_ROW, steps, values, n, n_cols, col_names, err);
}

int h5rec_read_attr(const char *path, const char *name, char **value, Error *err) {
    ASSERT(path && name && value);
    *value = NULL;
    hid_t file = -1;
    char **arr = NULL;
    int n = 0, rc = -1;
    if (open_reader(path, &file, err)) goto done;
    if (read_str_attr(file, path, ".", name, &arr, &n, err)) goto done;
    if (n != 1) {
        err_set(err, "%s: attribute '%s' holds %d strings, expected 1", path, name, n);
        goto done;
    }
    *value = xstrdup(arr[0]);
    rc = 0;
done:
    free(arr);
    h5_close(file);
    return rc;
}

int h5rec_read_matrix(const char *path, const char *name, float **data, int *rows, int *cols, Error *err) {
    ASSERT(path && name && data && rows && cols);
    *data = NULL;
    hid_t file = -1, d = -1;
    hsize_t dims[2] = {0, 0};
    int rank = 0, rc = -1;
    if (open_reader(path, &file, err)) goto done;
    if (h5Check(d = H5Dopen2(file, name, H5P_DEFAULT), err, path, name)) goto done;
    if (get_dims(d, &rank, dims, path, name, err)) goto done;
    if (rank != 2 || dims[0] > INT32_MAX || dims[1] > INT32_MAX) {
        err_set(err, "%s: '%s' is not a (rows, cols) matrix", path, name);
        goto done;
    }
    *data = xmalloc((size_t)(dims[0] * dims[1]) * sizeof **data);
    if (h5Check(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data), err, path, name)) {
        free(*data);
        *data = NULL;
        goto done;
    }
    *rows = (int)dims[0];
    *cols = (int)dims[1];
    rc = 0;
done:
    h5_close(d);
    h5_close(file);
    return rc;
}

int h5rec_list_series(const char *path, char ***names, int *n, Error *err) {
    ASSERT(path && names && n);
    *names = NULL;
    *n = 0;
    hid_t file = -1;
    NameList l = {NULL, 0, 0};
    int rc = -1;
    if (open_reader(path, &file, err)) goto done;
    if (collect_series(file, path, &l, err)) goto done;
    size_t bytes = (size_t)l.n * sizeof(char *);
    for (int i = 0; i < l.n; i++) bytes += strlen(l.names[i]) + 1;
    char **arr = xmalloc(bytes);
    char *p = (char *)(arr + l.n);
    for (int i = 0; i < l.n; i++) {
        size_t len = strlen(l.names[i]) + 1;
        memcpy(p, l.names[i], len);
        arr[i] = p;
        p += len;
    }
    *names = arr;
    *n = l.n;
    rc = 0;
done:
    names_free(&l);
    h5_close(file);
    return rc;
}
