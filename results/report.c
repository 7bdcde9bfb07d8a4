/* results/report.c: tables in the papers' layout (results/report.h, docs/report.md). */
#include "results/report.h"

#include "results/db_read.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- files ------------------------------------------------------------------------------------------------ */
int report_mkdirs(const char *dir, Error *err) {
    ASSERT(dir);
    size_t n = strlen(dir);
    if (n == 0) return err_set(err, "report: empty output directory");
    char *p = xstrdup(dir);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) rc = err_set(err, "%s: cannot create report directory %s: %s is not a directory",
                                                   dir, dir, p);
        } else if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = err_set(err, "%s: cannot create report directory: %s", p, strerror(errno));
        }
        p[i] = c;
    }
    free(p);
    return rc;
}

FILE *report_open_tmp(const char *path, char *tmp, size_t tmp_cap, Error *err) {
    snprintf(tmp, tmp_cap, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
    return f;
}

int report_commit_tmp(FILE *f, const char *tmp, const char *path, Error *err) {
    int bad = ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        return err_set(err, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return err_set(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return 0;
}

/* ---- small strings ---------------------------------------------------------------------------------------- */
static void put_md(FILE *f, const char *s) { /* Markdown table text: escape what would break the cell */
    for (; *s; s++) {
        if (strchr("|*_`\\[]", *s)) fputc('\\', f);
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
}

static void put_tex(FILE *f, const char *s) { /* LaTeX text mode */
    for (; *s; s++) {
        switch (*s) {
        case '&': case '%': case '$': case '#': case '_': case '{': case '}': fprintf(f, "\\%c", *s); break;
        case '~': fputs("\\textasciitilde{}", f); break;
        case '^': fputs("\\textasciicircum{}", f); break;
        case '\\': fputs("\\textbackslash{}", f); break;
        case '<': fputs("\\textless{}", f); break;
        case '>': fputs("\\textgreater{}", f); break;
        case '\n': fputc(' ', f); break;
        default: fputc(*s, f);
        }
    }
}

static void put_comment(FILE *f, const char *s) { /* a LaTeX comment line: only a newline would end it */
    for (; *s; s++) fputc(*s == '\n' ? ' ' : *s, f);
}

static void put_csv(FILE *f, const char *s) { /* RFC 4180 field */
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Lowercase letters and digits only: "KITTI-Dst" ~ "kitti_dst". */
static void norm_name(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 1 < cap; s++)
        if (isalnum((unsigned char)*s)) out[k++] = (char)tolower((unsigned char)*s);
    out[k] = '\0';
}

static void fmt_fixed(char *buf, size_t cap, double v, int decimals) {
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    snprintf(buf, cap, "%.*f", decimals, v);
    /* "-0.00" reads as a sign that is not there */
    if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)) memmove(buf, buf + 1, strlen(buf));
}

typedef struct StrList {
    int n, cap;
    char **s;
} StrList;

static int strlist_find(const StrList *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->s[i], s)) return i;
    return -1;
}
static int strlist_add(StrList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->s = xrealloc(l->s, (size_t)l->cap * sizeof *l->s);
    }
    l->s[l->n] = xstrdup(s);
    return l->n++;
}
static void strlist_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* ---- paper CSVs ------------------------------------------------------------------------------------------- */
typedef struct PaperCsv {
    char *path, *cite; /* cite: the first '#' line */
    StrList hdr;
    int n_rows;
    char ***cell; /* cell[r][c], hdr.n per row ("" when the line was short) */
} PaperCsv;

/* Splits one CSV line into fields (RFC 4180 quotes, "" inside quotes). Returns -1 on an unclosed quote. */
static int csv_split(const char *line, StrList *out) {
    memset(out, 0, sizeof *out);
    size_t cap = strlen(line) + 1;
    char *buf = xmalloc(cap);
    const char *p = line;
    for (;;) {
        size_t k = 0;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) {
                    free(buf);
                    strlist_free(out);
                    return -1;
                }
                if (*p == '"' && p[1] == '"') {
                    buf[k++] = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    buf[k++] = *p++;
                }
            }
            while (*p && *p != ',') buf[k++] = *p++; /* text after the closing quote: keep it */
        } else {
            while (*p && *p != ',') buf[k++] = *p++;
        }
        buf[k] = '\0';
        strlist_add(out, buf);
        if (*p != ',') break;
        p++;
    }
    free(buf);
    return 0;
}

static void paper_free(PaperCsv *pc) {
    for (int r = 0; r < pc->n_rows; r++) {
        for (int c = 0; c < pc->hdr.n; c++) free(pc->cell[r][c]);
        free(pc->cell[r]);
    }
    free(pc->cell);
    strlist_free(&pc->hdr);
    free(pc->path);
    free(pc->cite);
    memset(pc, 0, sizeof *pc);
}

static int paper_load(const char *path, PaperCsv *pc, Error *err) {
    memset(pc, 0, sizeof *pc);
    pc->path = xstrdup(path);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, "%s: cannot read the paper's table: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, have_hdr = 0, rc = 0, row_cap = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (line[0] == '#') {
            if (!pc->cite) {
                const char *c = line + 1;
                while (*c == ' ') c++;
                pc->cite = xstrdup(c);
            }
            continue;
        }
        if (len == 0) continue;
        StrList fields;
        if (csv_split(line, &fields)) {
            rc = err_set(err, "%s:%d: unclosed quote (fields spanning lines are not supported)", path, lineno);
            break;
        }
        if (!have_hdr) {
            pc->hdr = fields;
            have_hdr = 1;
            continue;
        }
        if (fields.n > pc->hdr.n) {
            rc = err_set(err, "%s:%d: %d fields, the header has %d", path, lineno, fields.n, pc->hdr.n);
            strlist_free(&fields);
            break;
        }
        if (pc->n_rows == row_cap) {
            row_cap = row_cap ? 2 * row_cap : 16;
            pc->cell = xrealloc(pc->cell, (size_t)row_cap * sizeof *pc->cell);
        }
        char **row = xmalloc((size_t)pc->hdr.n * sizeof *row);
        for (int c = 0; c < pc->hdr.n; c++) row[c] = c < fields.n ? fields.s[c] : xstrdup("");
        free(fields.s); /* the strings moved into row */
        pc->cell[pc->n_rows++] = row;
    }
    free(line);
    fclose(f);
    if (!rc && !have_hdr) rc = err_set(err, "%s: no header line (only comments or empty)", path);
    if (rc) paper_free(pc);
    return rc;
}

static int paper_col(const PaperCsv *pc, const char *name) { return strlist_find(&pc->hdr, name); }

/* A column matched by normalized name, skipping "<x>_std" columns; -1 when none. */
static int paper_col_norm(const PaperCsv *pc, const char *name) {
    char want[256], have[256];
    norm_name(name, want, sizeof want);
    if (!want[0]) return -1;
    for (int c = 0; c < pc->hdr.n; c++) {
        size_t l = strlen(pc->hdr.s[c]);
        if (l >= 4 && !strcasecmp(pc->hdr.s[c] + l - 4, "_std")) continue;
        norm_name(pc->hdr.s[c], have, sizeof have);
        if (!strcmp(want, have)) return c;
    }
    return -1;
}

/* ---- the table -------------------------------------------------------------------------------------------- */
typedef struct Samples {
    int n, cap;
    double *v;
    int64_t *seed;
    char **id;
} Samples;

typedef struct Val {
    int has, has_std, n, best, mark_n;
    double mean, std;
    const char *text, *std_text; /* a paper's printed numbers (verbatim), else NULL */
} Val;

enum { COL_TASK, COL_GROUP, COL_OVERALL };
typedef struct DispCol {
    int kind, idx;
    const char *key;   /* CSV column: task value, group name, "Overall" */
    const char *label; /* printed header */
} DispCol;

typedef struct Table {
    const ReportTable *t;
    StrList rows, cols;
    const char **row_label, **col_label;
    Samples *cell; /* [rows.n * cols.n] */
    int n_disp;
    DispCol *disp;
    char **group_label; /* "<group> mean" */
    Val *ours;          /* [rows.n * n_disp] */
    int n_paper_rows;
    Val *paper;         /* [n_paper_rows * n_disp] */
    char **paper_label; /* "<label> (<tag>)" */
    char **paper_key;   /* <label> */
    const char **paper_tag;
    int mode_n;
    char **notes; /* plain text, shared by the three formats */
    int n_notes;
    char **paper_notes;
    int n_paper_notes;
    PaperCsv *pcsv;
    int n_pcsv;
    double scale;
    const char *db_path;
} Table;

static void add_note(char ***notes, int *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_note(char ***notes, int *n, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *notes = xrealloc(*notes, (size_t)(*n + 1) * sizeof **notes);
    (*notes)[(*n)++] = xstrdup(buf);
}

static void table_free(Table *tb) {
    for (int i = 0; i < tb->rows.n * tb->cols.n; i++) {
        Samples *s = &tb->cell[i];
        for (int k = 0; k < s->n; k++) free(s->id[k]);
        free(s->v);
        free(s->seed);
        free(s->id);
    }
    free(tb->cell);
    strlist_free(&tb->rows);
    strlist_free(&tb->cols);
    free(tb->row_label);
    free(tb->col_label);
    free(tb->disp);
    if (tb->group_label)
        for (int g = 0; g < tb->t->n_groups; g++) free(tb->group_label[g]);
    free(tb->group_label);
    free(tb->ours);
    free(tb->paper);
    for (int i = 0; i < tb->n_paper_rows; i++) {
        free(tb->paper_label[i]);
        free(tb->paper_key[i]);
    }
    free(tb->paper_label);
    free(tb->paper_key);
    free(tb->paper_tag);
    for (int i = 0; i < tb->n_notes; i++) free(tb->notes[i]);
    free(tb->notes);
    for (int i = 0; i < tb->n_paper_notes; i++) free(tb->paper_notes[i]);
    free(tb->paper_notes);
    for (int i = 0; i < tb->n_pcsv; i++) paper_free(&tb->pcsv[i]);
    free(tb->pcsv);
}

static int validate(const ReportTable *t, Error *err) {
    const char *nm = t->name ? t->name : "(unnamed)";
    if (!t->name || !t->name[0] || strchr(t->name, '/'))
        return err_set(err, "report table '%s': name must be a non-empty file stem without '/'", nm);
    if (!t->row_key || !t->row_key[0]) return err_set(err, "report table '%s': row_key is required", nm);
    if (t->n_metrics > 0 && t->col_key)
        return err_set(err, "report table '%s': metrics (one column per metric) and columns (a params key) exclude each "
                            "other", nm);
    if (t->n_metrics > 0 && t->n_col_order > 0 && t->n_col_order != t->n_metrics)
        return err_set(err, "report table '%s': %d col_labels for %d metrics", nm, t->n_col_order, t->n_metrics);
    if (t->n_metrics == 0 && (!t->metric || !t->metric[0]))
        return err_set(err, "report table '%s': metric is required", nm);
    for (int which = 0; which < 2; which++) {
        const char *spec = which ? t->col_key : t->row_key;
        if (!spec) continue;
        for (const char *p = spec;; p++) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (strspn(p, " ") >= l)
                return err_set(err, "report table '%s': %s '%s' has an empty key name", nm,
                               which ? "col_key" : "row_key", spec);
            if (!e) break;
            p = e;
        }
    }
    if (t->decimals < 0 || t->decimals > 12)
        return err_set(err, "report table '%s': decimals must be 0..12, found %d", nm, t->decimals);
    if (t->n_row_order < 0 || (t->n_row_order > 0 && !t->row_order) || t->n_col_order < 0 ||
        (t->n_col_order > 0 && !t->col_order))
        return err_set(err, "report table '%s': row_order / col_order count without a list", nm);
    for (int i = 0; i < t->n_row_order; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(t->row_order[i], t->row_order[k]))
                return err_set(err, "report table '%s': row_order lists '%s' twice", nm, t->row_order[i]);
    for (int i = 0; i < t->n_col_order; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(t->col_order[i], t->col_order[k]))
                return err_set(err, "report table '%s': col_order lists '%s' twice", nm, t->col_order[i]);
    if (t->n_groups < 0) return err_set(err, "report table '%s': n_groups < 0", nm);
    if (t->n_groups > 0) {
        if (!t->group_names || !t->group_of_col)
            return err_set(err, "report table '%s': groups need group_names and group_of_col", nm);
        if (t->n_col_order == 0)
            return err_set(err, "report table '%s': groups need col_order (group_of_col is parallel to it)", nm);
        for (int g = 0; g < t->n_groups; g++) {
            int members = 0;
            for (int j = 0; j < t->n_col_order; j++) members += t->group_of_col[j] == g;
            if (!members)
                return err_set(err, "report table '%s': group '%s' has no column", nm, t->group_names[g]);
        }
        for (int j = 0; j < t->n_col_order; j++)
            if (t->group_of_col[j] < -1 || t->group_of_col[j] >= t->n_groups)
                return err_set(err, "report table '%s': column '%s' has group %d, expected -1..%d", nm,
                               t->col_order[j], t->group_of_col[j], t->n_groups - 1);
    }
    for (int w = 0; w < t->n_where; w++)
        if (!t->where[w] || !strchr(t->where[w], '=') || t->where[w][0] == '=')
            return err_set(err, "report table '%s': where entry '%s' is not key=value", nm,
                           t->where[w] ? t->where[w] : "(null)");
    for (int p = 0; p < t->n_papers; p++)
        if (!t->papers[p].csv) return err_set(err, "report table '%s': paper %d has no csv path", nm, p);
    return 0;
}

static void samples_add(Samples *s, double v, int64_t seed, const char *id) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4;
        s->v = xrealloc(s->v, (size_t)s->cap * sizeof *s->v);
        s->seed = xrealloc(s->seed, (size_t)s->cap * sizeof *s->seed);
        s->id = xrealloc(s->id, (size_t)s->cap * sizeof *s->id);
    }
    s->v[s->n] = v;
    s->seed[s->n] = seed;
    s->id[s->n] = xstrdup(id);
    s->n++;
}

/* "a,b" -> {"a", "b"} (spaces around names dropped); the names are appended to keys[*n]. */
static void split_keys(const char *spec, char **keys, int *n) {
    for (const char *p = spec; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && *p == ' ') p++, l--;
        while (l && p[l - 1] == ' ') l--;
        char *k = xmalloc(l + 1);
        memcpy(k, p, l);
        k[l] = '\0';
        keys[(*n)++] = k;
        if (!e) break;
        p = e + 1;
    }
}
static int count_keys(const char *spec) {
    int n = 1;
    for (; *spec; spec++) n += *spec == ',';
    return n;
}
/* The values of n keys joined by ", " (a row or column of several keys); NULL when one is missing. */
static char *join_vals(char *const *pv, int n) {
    size_t l = 1;
    for (int k = 0; k < n; k++) {
        if (!pv[k]) return NULL;
        l += strlen(pv[k]) + 2;
    }
    char *s = xmalloc(l);
    s[0] = '\0';
    for (int k = 0; k < n; k++) {
        if (k) strcat(s, ", ");
        strcat(s, pv[k]);
    }
    return s;
}

/* Reads the runs into cells; fills the notes about what was left out. */
static int collect(Table *tb, DbReader *rd, Error *err) {
    const ReportTable *t = tb->t;
    int nr = count_keys(t->row_key), nc = t->col_key ? count_keys(t->col_key) : 0;
    int n_keys = nr + nc + t->n_where, k = 0;
    char **keys = xmalloc((size_t)n_keys * sizeof *keys);
    const char **wval = xmalloc((size_t)(t->n_where ? t->n_where : 1) * sizeof *wval);
    split_keys(t->row_key, keys, &k);
    if (t->col_key) split_keys(t->col_key, keys, &k);
    ASSERT(k == nr + nc);
    for (int w = 0; w < t->n_where; w++) {
        const char *eq = strchr(t->where[w], '=');
        char *key = xmalloc((size_t)(eq - t->where[w]) + 1);
        memcpy(key, t->where[w], (size_t)(eq - t->where[w]));
        key[eq - t->where[w]] = '\0';
        keys[k++] = key;
        wval[w] = eq + 1;
    }
    char **rowv = NULL, **colv = NULL; /* per run: its row and column value */
    DbRunList rl;
    int rc = db_read_runs(rd, t->experiment, NULL, (const char *const *)keys, n_keys, &rl, err);
    if (rc) goto done;
    db_run_list_keep(&rl, t->run_ids, t->n_run_ids);
    rowv = xcalloc((size_t)rl.n, sizeof *rowv);
    colv = xcalloc((size_t)rl.n, sizeof *colv);

    /* rows and columns */
    for (int i = 0; i < t->n_row_order; i++) strlist_add(&tb->rows, t->row_order[i]);
    if (t->n_metrics > 0) /* one column per metric, keyed by the metric's name */
        for (int j = 0; j < t->n_metrics; j++) strlist_add(&tb->cols, t->metrics[j]);
    else
        for (int j = 0; j < t->n_col_order; j++) strlist_add(&tb->cols, t->col_order[j]);
    if (!t->col_key && t->n_col_order == 0 && t->n_metrics == 0) strlist_add(&tb->cols, t->metric);
    int *use = xcalloc((size_t)(rl.n ? rl.n : 1), sizeof *use);
    int n_filtered = 0, n_nokey = 0, n_outside = 0;
    StrList other_status = {0};
    int *other_count = NULL;
    for (int i = 0; i < rl.n; i++) {
        char **pv = &rl.param[(size_t)i * n_keys];
        int match = 1;
        for (int w = 0; w < t->n_where; w++)
            if (!pv[n_keys - t->n_where + w] || strcmp(pv[n_keys - t->n_where + w], wval[w])) match = 0;
        if (!match) {
            n_filtered++;
            continue;
        }
        if (strcmp(rl.status[i], "done")) {
            int s = strlist_find(&other_status, rl.status[i]);
            if (s < 0) {
                s = strlist_add(&other_status, rl.status[i]);
                other_count = xrealloc(other_count, (size_t)other_status.n * sizeof *other_count);
                other_count[s] = 0;
            }
            other_count[s]++;
            continue;
        }
        const char *rv = rowv[i] = join_vals(pv, nr), *cv = colv[i] = t->col_key ? join_vals(pv + nr, nc) : NULL;
        if (!rv || (t->col_key && !cv)) {
            n_nokey++;
            continue;
        }
        if (t->n_row_order == 0 && strlist_find(&tb->rows, rv) < 0) strlist_add(&tb->rows, rv);
        if (t->col_key && t->n_col_order == 0 && strlist_find(&tb->cols, cv) < 0) strlist_add(&tb->cols, cv);
        if (strlist_find(&tb->rows, rv) < 0 || (t->col_key && strlist_find(&tb->cols, cv) < 0)) {
            n_outside++;
            continue;
        }
        use[i] = 1;
    }
    tb->cell = xcalloc((size_t)tb->rows.n * (size_t)tb->cols.n, sizeof *tb->cell);
    int n_used = 0, n_nometric = 0;
    for (int i = 0; i < rl.n && rc == 0; i++) {
        if (!use[i]) continue;
        int r = strlist_find(&tb->rows, rowv[i]);
        int nm = t->n_metrics > 0 ? t->n_metrics : 1, any = 0;
        for (int mj = 0; mj < nm && rc == 0; mj++) {
            int c = t->n_metrics > 0 ? mj : t->col_key ? strlist_find(&tb->cols, colv[i]) : 0;
            const char *metric = t->n_metrics > 0 ? t->metrics[mj] : t->metric;
            double v;
            int found;
            if ((rc = db_read_result(rd, rl.id[i], metric, &v, NULL, &found, err))) break;
            if (!found) continue;
            any = 1;
            Samples *s = &tb->cell[(size_t)r * tb->cols.n + c];
            for (int q = 0; q < s->n; q++) {
                if (rl.seed[i] != INT64_MIN && s->seed[q] == rl.seed[i]) {
                    rc = err_set(err,
                                 "report table '%s': cell (%s = %s, %s = %s) has two runs with seed %lld (%s and %s): "
                                 "they differ in a param the table does not key on; add a where filter or a key",
                                 t->name, t->row_key, rowv[i], t->col_key ? t->col_key : "metric",
                                 t->col_key ? colv[i] : metric, (long long)rl.seed[i], s->id[q], rl.id[i]);
                    break;
                }
            }
            if (rc) break;
            samples_add(s, v * tb->scale, rl.seed[i], rl.id[i]);
        }
        if (rc) break;
        if (!any) n_nometric++;
        else n_used++;
    }
    if (rc == 0) {
        char buf[1024];
        size_t len = 0;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "Runs: %d done run%s used", n_used, n_used == 1 ? "" : "s");
        const char *sep = "; ignored: ";
        for (int s = 0; s < other_status.n && len < sizeof buf; s++) {
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d %s", sep, other_count[s], other_status.s[s]);
            sep = ", ";
        }
        if (n_nometric && len < sizeof buf)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d done without %s", sep, n_nometric,
                                    t->n_metrics > 0 ? "any of the metrics" : t->metric);
        if (n_nometric) sep = ", ";
        if (n_nokey && len < sizeof buf)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d done without %s%s%s", sep, n_nokey, t->row_key,
                                    t->col_key ? " or " : "", t->col_key ? t->col_key : "");
        if (n_nokey) sep = ", ";
        if (n_outside && len < sizeof buf)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d done outside the listed rows/columns", sep,
                                    n_outside);
        if (n_filtered && len < sizeof buf)
            snprintf(buf + len, sizeof buf - len, " (%d run%s not matching the where filter%s)", n_filtered,
                     n_filtered == 1 ? "" : "s", t->n_where == 1 ? "" : "s");
        add_note(&tb->notes, &tb->n_notes, "%s.", buf);
    }
    free(use);
    free(other_count);
    strlist_free(&other_status);
    for (int i = 0; i < rl.n; i++) {
        free(rowv[i]);
        free(colv[i]);
    }
    db_run_list_free(&rl);
done:
    free(rowv);
    free(colv);
    for (int q = 0; q < n_keys; q++) free(keys[q]);
    free(keys);
    free(wval);
    return rc;
}

static void stats(const Samples *s, Val *v) {
    memset(v, 0, sizeof *v);
    v->n = s->n;
    if (s->n == 0) return;
    v->has = 1;
    double sum = 0;
    for (int k = 0; k < s->n; k++) sum += s->v[k];
    v->mean = sum / s->n;
    if (s->n >= 2) {
        double ss = 0;
        for (int k = 0; k < s->n; k++) ss += (s->v[k] - v->mean) * (s->v[k] - v->mean);
        v->std = sqrt(ss / (s->n - 1));
        v->has_std = 1;
    }
}

/* Display columns, cell statistics, group / overall means, best marks, the n marks. */
static void compute(Table *tb) {
    const ReportTable *t = tb->t;
    int nt = tb->cols.n;
    tb->n_disp = nt + t->n_groups + (t->overall_mean ? 1 : 0);
    tb->disp = xcalloc((size_t)tb->n_disp, sizeof *tb->disp);
    tb->row_label = xmalloc((size_t)(tb->rows.n ? tb->rows.n : 1) * sizeof *tb->row_label);
    tb->col_label = xmalloc((size_t)(nt ? nt : 1) * sizeof *tb->col_label);
    for (int i = 0; i < tb->rows.n; i++)
        tb->row_label[i] = t->row_labels && i < t->n_row_order && t->row_labels[i] ? t->row_labels[i] : tb->rows.s[i];
    for (int j = 0; j < nt; j++)
        tb->col_label[j] = t->col_labels && j < (t->n_metrics > 0 ? t->n_metrics : t->n_col_order) && t->col_labels[j]
                               ? t->col_labels[j] : tb->cols.s[j];
    tb->group_label = xcalloc((size_t)(t->n_groups ? t->n_groups : 1), sizeof *tb->group_label);
    int d = 0;
    for (int j = 0; j < nt; j++) tb->disp[d++] = (DispCol){COL_TASK, j, tb->cols.s[j], tb->col_label[j]};
    for (int g = 0; g < t->n_groups; g++) {
        size_t l = strlen(t->group_names[g]) + 8;
        tb->group_label[g] = xmalloc(l);
        snprintf(tb->group_label[g], l, "%s mean", t->group_names[g]);
        tb->disp[d++] = (DispCol){COL_GROUP, g, t->group_names[g], tb->group_label[g]};
    }
    if (t->overall_mean) tb->disp[d++] = (DispCol){COL_OVERALL, 0, "Overall", "Overall mean"};

    tb->ours = xcalloc((size_t)tb->rows.n * (size_t)tb->n_disp, sizeof *tb->ours);
    /* the most common n (ties: the larger) */
    int max_n = 0;
    for (int i = 0; i < tb->rows.n * nt; i++) max_n = MAX(max_n, tb->cell[i].n);
    int *count = xcalloc((size_t)max_n + 1, sizeof *count);
    for (int i = 0; i < tb->rows.n * nt; i++) count[tb->cell[i].n]++;
    tb->mode_n = 0;
    for (int n = 1, best_count = 0; n <= max_n; n++)
        if (count[n] > 0 && count[n] >= best_count) {
            tb->mode_n = n;
            best_count = count[n];
        }
    free(count);

    for (int r = 0; r < tb->rows.n; r++) {
        Val *row = &tb->ours[(size_t)r * tb->n_disp];
        for (int j = 0; j < nt; j++) {
            stats(&tb->cell[(size_t)r * nt + j], &row[j]);
            row[j].mark_n = row[j].has && row[j].n != tb->mode_n;
        }
        for (int c = nt; c < tb->n_disp; c++) {
            double sum = 0;
            int n = 0, all = 1;
            for (int j = 0; j < nt; j++) {
                if (tb->disp[c].kind == COL_GROUP && t->group_of_col[j] != tb->disp[c].idx) continue;
                if (!row[j].has) all = 0;
                else sum += row[j].mean;
                n++;
            }
            row[c].n = n;
            if (all && n > 0) {
                row[c].has = 1;
                row[c].mean = sum / n;
            }
        }
    }
    /* best per column: compare the printed (rounded) values, so printed ties are all bold */
    for (int c = 0; c < tb->n_disp; c++) {
        double best = NAN;
        char buf[64];
        for (int pass = 0; pass < 2; pass++) {
            for (int r = 0; r < tb->rows.n; r++) {
                Val *v = &tb->ours[(size_t)r * tb->n_disp + c];
                if (!v->has || !isfinite(v->mean)) continue;
                fmt_fixed(buf, sizeof buf, v->mean, t->decimals);
                double x = strtod(buf, NULL);
                if (pass == 0) {
                    int hib = t->n_metrics > 0 && c < t->n_metrics && t->lower_is_better ? !t->lower_is_better[c]
                                                                                          : t->higher_is_better;
                    if (isnan(best) || (hib ? x > best : x < best)) best = x;
                } else {
                    v->best = x == best;
                }
            }
        }
    }
}

/* Paper rows: from each CSV, the rows asked for, matched to our columns. */
static int load_papers(Table *tb, Error *err) {
    const ReportTable *t = tb->t;
    if (t->n_papers == 0) return 0;
    tb->pcsv = xcalloc((size_t)t->n_papers, sizeof *tb->pcsv);
    for (int p = 0; p < t->n_papers; p++) {
        const ReportPaper *pp = &t->papers[p];
        PaperCsv *pc = &tb->pcsv[p];
        if (paper_load(pp->csv, pc, err)) return -1;
        tb->n_pcsv = p + 1;
        const char *tag = pp->tag ? pp->tag : "paper";
        double pscale = pp->scale == 0 ? 1 : pp->scale;
        /* label columns */
        const char *lc = pp->label_cols ? pp->label_cols : "Method";
        int lcols[16], n_lc = 0;
        for (const char *s = lc; *s;) {
            const char *e = strchr(s, ',');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)MIN(l, sizeof name - 1), s);
            int c = paper_col(pc, name);
            if (c < 0) {
                char have[512] = "";
                size_t hl = 0;
                for (int k = 0; k < pc->hdr.n && hl + 2 < sizeof have; k++)
                    hl += (size_t)snprintf(have + hl, sizeof have - hl, "%s%s", k ? ", " : "", pc->hdr.s[k]);
                return err_set(err, "%s: no column '%s' to label rows with (label_cols '%s'; columns: %s)", pp->csv,
                               name, lc, have);
            }
            if (n_lc == (int)ARRAY_LEN(lcols)) return err_set(err, "%s: more than 16 label columns", pp->csv);
            lcols[n_lc++] = c;
            if (!e) break;
            s = e + 1;
        }
        /* labels of all CSV rows */
        char **labels = xcalloc((size_t)(pc->n_rows ? pc->n_rows : 1), sizeof *labels);
        for (int r = 0; r < pc->n_rows; r++) {
            size_t l = 1;
            for (int k = 0; k < n_lc; k++) l += strlen(pc->cell[r][lcols[k]]) + 1;
            labels[r] = xmalloc(l);
            labels[r][0] = '\0';
            for (int k = 0; k < n_lc; k++) {
                if (k) strcat(labels[r], " ");
                strcat(labels[r], pc->cell[r][lcols[k]]);
            }
        }
        int n_sel = pp->n_rows > 0 ? pp->n_rows : pc->n_rows;
        int *sel = xmalloc((size_t)(n_sel ? n_sel : 1) * sizeof *sel);
        int rc = 0;
        for (int k = 0; k < n_sel && rc == 0; k++) {
            if (pp->n_rows == 0) {
                sel[k] = k;
                continue;
            }
            sel[k] = -1;
            for (int r = 0; r < pc->n_rows; r++)
                if (!strcmp(labels[r], pp->rows[k])) {
                    sel[k] = r;
                    break;
                }
            if (sel[k] < 0) {
                char have[600] = "";
                size_t hl = 0;
                for (int r = 0; r < pc->n_rows && hl + 4 < sizeof have; r++)
                    hl += (size_t)snprintf(have + hl, sizeof have - hl, "%s'%s'", r ? ", " : "", labels[r]);
                rc = err_set(err, "%s: no row labelled '%s' (label_cols '%s'; rows: %s)", pp->csv, pp->rows[k], lc,
                             have);
            }
        }
        if (rc == 0) {
            const char *base = strrchr(pp->csv, '/');
            add_note(&tb->paper_notes, &tb->n_paper_notes, "Rows marked (%s): published numbers from %s%s%s%s%s.", tag,
                     base ? base + 1 : pp->csv, pc->cite ? " (" : "", pc->cite ? pc->cite : "", pc->cite ? ")" : "",
                     pscale != 1 ? ", rescaled" : "");
        }
        /* our display columns -> CSV columns */
        int *pcol = xmalloc((size_t)(tb->n_disp ? tb->n_disp : 1) * sizeof *pcol);
        int *pstd = xmalloc((size_t)(tb->n_disp ? tb->n_disp : 1) * sizeof *pstd);
        char missing[600] = "";
        size_t ml = 0;
        for (int c = 0; c < tb->n_disp && rc == 0; c++) {
            const DispCol *dc = &tb->disp[c];
            pcol[c] = -1;
            const char *mapped = NULL;
            for (int m = 0; m < pp->n_col_map; m++)
                if (!strcmp(pp->col_map[2 * m], dc->key)) mapped = pp->col_map[2 * m + 1];
            if (mapped) {
                pcol[c] = paper_col(pc, mapped);
                if (pcol[c] < 0) rc = err_set(err, "%s: col_map maps '%s' to '%s', which the CSV has no column for",
                                              pp->csv, dc->key, mapped);
            } else if (dc->kind == COL_TASK) {
                pcol[c] = paper_col_norm(pc, dc->key);
                if (pcol[c] < 0) pcol[c] = paper_col_norm(pc, dc->label);
            } else if (dc->kind == COL_GROUP) {
                char name[300];
                snprintf(name, sizeof name, "%s_Mean", dc->key);
                pcol[c] = paper_col_norm(pc, name);
            } else {
                static const char *const OVERALL[] = {"Overall_Mean", "Overall", "Average", "Avg", "All_Avg"};
                for (size_t o = 0; o < ARRAY_LEN(OVERALL) && pcol[c] < 0; o++) pcol[c] = paper_col_norm(pc, OVERALL[o]);
            }
            /* A printed mean matched by name only stands beside ours when the paper has every task it covers:
             * CNTLoRA's "Average" over its 14 VTAB tasks is not our Overall over 19. */
            if (!mapped && dc->kind != COL_TASK && pcol[c] >= 0) {
                int covered = 1;
                for (int j = 0; j < tb->cols.n; j++)
                    if ((dc->kind == COL_OVERALL || t->group_of_col[j] == dc->idx) && pcol[j] < 0) covered = 0;
                if (!covered) {
                    add_note(&tb->paper_notes, &tb->n_paper_notes,
                             "%s's %s is left out: the paper's table lacks some of its tasks (col_map {\"%s\", \"%s\"} "
                             "shows it anyway).",
                             strrchr(pp->csv, '/') ? strrchr(pp->csv, '/') + 1 : pp->csv, pc->hdr.s[pcol[c]], dc->key,
                             pc->hdr.s[pcol[c]]);
                    pcol[c] = -1;
                }
            }
            pstd[c] = -1;
            if (pcol[c] >= 0) {
                char name[300];
                snprintf(name, sizeof name, "%s_std", pc->hdr.s[pcol[c]]);
                pstd[c] = paper_col(pc, name);
            } else if (ml + 4 < sizeof missing) {
                ml += (size_t)snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? ", " : "", dc->label);
            }
        }
        if (rc == 0) {
            const char *base = strrchr(pp->csv, '/');
            base = base ? base + 1 : pp->csv;
            if (ml)
                add_note(&tb->paper_notes, &tb->n_paper_notes, "Not in %s (printed as –): %s.", base, missing);
            int base_row = tb->n_paper_rows;
            tb->n_paper_rows += n_sel;
            tb->paper = xrealloc(tb->paper, (size_t)tb->n_paper_rows * (size_t)tb->n_disp * sizeof *tb->paper);
            tb->paper_label = xrealloc(tb->paper_label, (size_t)(tb->n_paper_rows ? tb->n_paper_rows : 1) * sizeof(char *));
            tb->paper_key = xrealloc(tb->paper_key, (size_t)(tb->n_paper_rows ? tb->n_paper_rows : 1) * sizeof(char *));
            tb->paper_tag = xrealloc(tb->paper_tag, (size_t)(tb->n_paper_rows ? tb->n_paper_rows : 1) * sizeof(char *));
            for (int k = 0; k < n_sel; k++) {
                int r = sel[k], pr = base_row + k;
                size_t l = strlen(labels[r]) + strlen(tag) + 4;
                tb->paper_label[pr] = xmalloc(l);
                snprintf(tb->paper_label[pr], l, "%s (%s)", labels[r], tag);
                tb->paper_key[pr] = xstrdup(labels[r]);
                tb->paper_tag[pr] = tag;
                for (int c = 0; c < tb->n_disp; c++) {
                    Val *v = &tb->paper[(size_t)pr * tb->n_disp + c];
                    memset(v, 0, sizeof *v);
                    if (pcol[c] < 0) continue;
                    const char *txt = pc->cell[r][pcol[c]];
                    char *end;
                    double x = strtod(txt, &end);
                    if (end == txt || *end) continue; /* empty (lost in extraction) or not a number ("-") */
                    v->has = 1;
                    v->mean = x * pscale;
                    v->text = pscale == 1 ? txt : NULL;
                    if (pstd[c] >= 0) {
                        const char *st = pc->cell[r][pstd[c]];
                        double y = strtod(st, &end);
                        if (end != st && !*end) {
                            v->has_std = 1;
                            v->std = y * pscale;
                            v->std_text = pscale == 1 ? st : NULL;
                        }
                    }
                }
            }
        }
        for (int r = 0; r < pc->n_rows; r++) free(labels[r]);
        free(labels);
        free(sel);
        free(pcol);
        free(pstd);
        if (rc) return rc;
    }
    return 0;
}

/* ---- writers ---------------------------------------------------------------------------------------------- */
enum { FMT_MD, FMT_TEX };

static void put_val(FILE *f, const Table *tb, const Val *v, int fmt) {
    const ReportTable *t = tb->t;
    if (!v->has) {
        fputs(fmt == FMT_TEX ? "--" : "–", f);
        return;
    }
    char m[64], s[64];
    if (v->text) snprintf(m, sizeof m, "%s", v->text);
    else fmt_fixed(m, sizeof m, v->mean, t->decimals);
    int show_std = v->has_std && !t->hide_std;
    if (show_std) {
        if (v->std_text) snprintf(s, sizeof s, "%s", v->std_text);
        else fmt_fixed(s, sizeof s, v->std, t->decimals);
    }
    if (fmt == FMT_MD) {
        if (v->best) fputs("**", f);
        fputs(m, f);
        if (show_std) fprintf(f, " ± %s", s);
        if (v->best) fputs("**", f);
        if (v->mark_n) fprintf(f, " (n=%d)", v->n);
    } else {
        if (v->best) fputs("\\textbf{", f);
        put_tex(f, m);
        if (show_std) {
            fputs("$\\pm$", f);
            put_tex(f, s);
        }
        if (v->best) fputs("}", f);
        if (v->mark_n) fprintf(f, "$^{(n=%d)}$", v->n);
    }
}

static const char *row_title(const ReportTable *t) { return t->row_title ? t->row_title : t->row_key; }

static void describe(const Table *tb, char *buf, size_t cap) {
    const ReportTable *t = tb->t;
    char sc[64] = "";
    if (tb->scale != 1) snprintf(sc, sizeof sc, " x %g", tb->scale);
    size_t l = (size_t)snprintf(buf, cap, "%s%s, mean +- std over seeds (sample std, n - 1)",
                                t->n_metrics > 0 ? "one metric per column" : t->metric, sc);
    if (tb->mode_n > 0 && l < cap)
        l += (size_t)snprintf(buf + l, cap - l, "; %d seed%s per cell unless marked (n=k)", tb->mode_n,
                              tb->mode_n == 1 ? "" : "s");
    if (t->n_metrics > 0 && t->lower_is_better) { /* metric columns: the direction per column */
        const char *sep = "; best per column in bold (lower is better for ";
        for (int j = 0; j < t->n_metrics && l < cap; j++)
            if (t->lower_is_better[j]) l += (size_t)snprintf(buf + l, cap - l, "%s%s", sep, t->metrics[j]), sep = ", ";
        if (l < cap) snprintf(buf + l, cap - l, "%s; a dash: no finished run",
                              !strcmp(sep, ", ") ? ", higher for the rest)" : "; best per column in bold (higher is better)");
    } else if (l < cap)
        snprintf(buf + l, cap - l, "; best per column in bold (%s is better); a dash: no finished run",
                 t->higher_is_better ? "higher" : "lower");
}

static void group_note(const Table *tb, char *buf, size_t cap) {
    const ReportTable *t = tb->t;
    buf[0] = '\0';
    size_t l = 0;
    if (t->n_groups > 0) {
        l += (size_t)snprintf(buf + l, cap - l, "Group means (");
        for (int g = 0; g < t->n_groups && l < cap; g++)
            l += (size_t)snprintf(buf + l, cap - l, "%s%s", g ? ", " : "", t->group_names[g]);
        if (l < cap) l += (size_t)snprintf(buf + l, cap - l, ") average their tasks' means");
    }
    if (t->overall_mean && l < cap)
        l += (size_t)snprintf(buf + l, cap - l, "%sOverall averages all %d tasks' means%s", l ? "; " : "", tb->cols.n,
                              t->n_groups ? " (not the group means)" : "");
    if (l && l < cap) snprintf(buf + l, cap - l, "; a dash when a task they cover is missing.");
}

static int write_md(const Table *tb, const char *path, Error *err) {
    const ReportTable *t = tb->t;
    char tmp[4096];
    FILE *f = report_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    fprintf(f, "<!-- generated by loralab (results/report.c) from %s; regenerate it, do not edit -->\n\n", tb->db_path);
    fputs("### ", f);
    put_md(f, t->title ? t->title : t->name);
    fputs("\n\n| ", f);
    put_md(f, row_title(t));
    for (int c = 0; c < tb->n_disp; c++) {
        fputs(" | ", f);
        put_md(f, tb->disp[c].label);
    }
    fputs(" |\n|:---", f);
    for (int c = 0; c < tb->n_disp; c++) fputs("|---:", f);
    fputs("|\n", f);
    for (int r = 0; r < tb->rows.n + tb->n_paper_rows; r++) {
        int ours = r < tb->rows.n;
        const Val *row = ours ? &tb->ours[(size_t)r * tb->n_disp] : &tb->paper[(size_t)(r - tb->rows.n) * tb->n_disp];
        fputs("| ", f);
        put_md(f, ours ? tb->row_label[r] : tb->paper_label[r - tb->rows.n]);
        for (int c = 0; c < tb->n_disp; c++) {
            fputs(" | ", f);
            put_val(f, tb, &row[c], FMT_MD);
        }
        fputs(" |\n", f);
    }
    char buf[2048];
    describe(tb, buf, sizeof buf);
    fputs("\n- ", f);
    for (const char *s = buf; *s; s++) { /* the plain-text note with Markdown's own signs */
        if (!strncmp(s, "+-", 2)) {
            fputs("±", f);
            s++;
        } else if (!strncmp(s, " x ", 3)) {
            fputs(" × ", f);
            s += 2;
        } else if (!strncmp(s, "in bold", 7)) {
            fputs("in **bold**", f);
            s += 6;
        } else if (!strncmp(s, "a dash", 6)) {
            fputs("–", f);
            s += 5;
        } else {
            fputc(*s, f);
        }
    }
    fputs(".\n", f);
    group_note(tb, buf, sizeof buf);
    if (buf[0]) fprintf(f, "- %s\n", buf);
    for (int i = 0; i < tb->n_notes; i++) fprintf(f, "- %s\n", tb->notes[i]);
    for (int i = 0; i < tb->n_paper_notes; i++) fprintf(f, "- %s\n", tb->paper_notes[i]);
    fprintf(f, "\n<details><summary>Run ids per cell (%s / %s: run id (seed))</summary>\n\n",
            t->row_key, t->col_key ? t->col_key : "metric");
    int any = 0;
    for (int r = 0; r < tb->rows.n; r++)
        for (int j = 0; j < tb->cols.n; j++) {
            const Samples *s = &tb->cell[(size_t)r * tb->cols.n + j];
            if (!s->n) continue;
            any = 1;
            fputs("- ", f);
            put_md(f, tb->rows.s[r]);
            fputs(" / ", f);
            put_md(f, tb->cols.s[j]);
            fputs(":", f);
            for (int k = 0; k < s->n; k++) {
                fprintf(f, "%s `%s`", k ? "," : "", s->id[k]);
                if (s->seed[k] != INT64_MIN) fprintf(f, " (%lld)", (long long)s->seed[k]);
            }
            fputc('\n', f);
        }
    if (!any) fputs("(no cell has a run)\n", f);
    fputs("\n</details>\n", f);
    return report_commit_tmp(f, tmp, path, err);
}

/* The groups' task columns, when each group's columns are contiguous (for a spanning header). */
static int groups_contiguous(const Table *tb) {
    const ReportTable *t = tb->t;
    if (t->n_groups == 0) return 0;
    for (int g = 0; g < t->n_groups; g++) {
        int first = -1, last = -1, n = 0;
        for (int j = 0; j < tb->cols.n; j++)
            if (t->group_of_col[j] == g) {
                if (first < 0) first = j;
                last = j;
                n++;
            }
        if (last - first + 1 != n) return 0;
    }
    return 1;
}

static int write_tex(const Table *tb, const char *path, Error *err) {
    const ReportTable *t = tb->t;
    char tmp[4096];
    FILE *f = report_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    char buf[2048];
    fprintf(f, "%% generated by loralab (results/report.c) from ");
    put_comment(f, tb->db_path);
    fputs("; needs \\usepackage{booktabs}; \\input it inside a table environment\n% ", f);
    put_comment(f, t->title ? t->title : t->name);
    describe(tb, buf, sizeof buf);
    fputs(": ", f);
    put_comment(f, buf);
    fputc('\n', f);
    group_note(tb, buf, sizeof buf);
    if (buf[0]) {
        fputs("% ", f);
        put_comment(f, buf);
        fputc('\n', f);
    }
    for (int i = 0; i < tb->n_notes + tb->n_paper_notes; i++) {
        fputs("% ", f);
        put_comment(f, i < tb->n_notes ? tb->notes[i] : tb->paper_notes[i - tb->n_notes]);
        fputc('\n', f);
    }
    fputs("\\begin{tabular}{l", f);
    for (int c = 0; c < tb->n_disp; c++) fputc('r', f);
    fputs("}\n\\toprule\n", f);
    if (groups_contiguous(tb)) {
        /* a spanning header over each group's tasks */
        int j = 0;
        while (j < tb->cols.n) {
            int g = t->group_of_col[j], k = j;
            while (k < tb->cols.n && t->group_of_col[k] == g) k++;
            if (g < 0) {
                for (int q = j; q < k; q++) fputs(" &", f);
            } else {
                fprintf(f, " & \\multicolumn{%d}{c}{", k - j);
                put_tex(f, t->group_names[g]);
                fputs("}", f);
            }
            j = k;
        }
        for (int c = tb->cols.n; c < tb->n_disp; c++) fputs(" &", f);
        fputs(" \\\\\n", f);
        for (j = 0; j < tb->cols.n;) {
            int g = t->group_of_col[j], k = j;
            while (k < tb->cols.n && t->group_of_col[k] == g) k++;
            if (g >= 0) fprintf(f, "\\cmidrule(lr){%d-%d}", j + 2, k + 1);
            j = k;
        }
        fputc('\n', f);
    }
    put_tex(f, row_title(t));
    for (int c = 0; c < tb->n_disp; c++) {
        fputs(" & ", f);
        put_tex(f, tb->disp[c].label);
    }
    fputs(" \\\\\n\\midrule\n", f);
    for (int r = 0; r < tb->rows.n + tb->n_paper_rows; r++) {
        int ours = r < tb->rows.n;
        if (!ours && (r == tb->rows.n || tb->paper_tag[r - tb->rows.n] != tb->paper_tag[r - tb->rows.n - 1]))
            fputs("\\midrule\n", f);
        const Val *row = ours ? &tb->ours[(size_t)r * tb->n_disp] : &tb->paper[(size_t)(r - tb->rows.n) * tb->n_disp];
        put_tex(f, ours ? tb->row_label[r] : tb->paper_label[r - tb->rows.n]);
        for (int c = 0; c < tb->n_disp; c++) {
            fputs(" & ", f);
            put_val(f, tb, &row[c], FMT_TEX);
        }
        fputs(" \\\\\n", f);
    }
    fputs("\\bottomrule\n\\end{tabular}\n", f);
    return report_commit_tmp(f, tmp, path, err);
}

static void put_num(FILE *f, double x) {
    if (isnan(x)) fputs("nan", f);
    else fprintf(f, "%.17g", x);
}

static int write_csv(const Table *tb, const char *path, Error *err) {
    char tmp[4096];
    FILE *f = report_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    static const char *const KIND[] = {"task", "group", "overall"};
    fputs("row,column,kind,source,mean,std,n,best,seeds,run_ids\n", f);
    for (int r = 0; r < tb->rows.n + tb->n_paper_rows; r++) {
        int ours = r < tb->rows.n;
        const Val *row = ours ? &tb->ours[(size_t)r * tb->n_disp] : &tb->paper[(size_t)(r - tb->rows.n) * tb->n_disp];
        for (int c = 0; c < tb->n_disp; c++) {
            const Val *v = &row[c];
            put_csv(f, ours ? tb->rows.s[r] : tb->paper_key[r - tb->rows.n]);
            fputc(',', f);
            put_csv(f, tb->disp[c].key);
            fprintf(f, ",%s,", KIND[tb->disp[c].kind]);
            put_csv(f, ours ? "ours" : tb->paper_tag[r - tb->rows.n]);
            fputc(',', f);
            if (v->has) put_num(f, v->mean);
            fputc(',', f);
            if (v->has_std) put_num(f, v->std);
            fputc(',', f);
            if (ours) fprintf(f, "%d", v->n);
            fprintf(f, ",%d,", v->best);
            if (ours && tb->disp[c].kind == COL_TASK) {
                const Samples *s = &tb->cell[(size_t)r * tb->cols.n + tb->disp[c].idx];
                for (int k = 0; k < s->n; k++) {
                    if (s->seed[k] == INT64_MIN) fprintf(f, "%s-", k ? " " : "");
                    else fprintf(f, "%s%lld", k ? " " : "", (long long)s->seed[k]);
                }
                fputc(',', f);
                for (int k = 0; k < s->n; k++) fprintf(f, "%s%s", k ? " " : "", s->id[k]);
            } else {
                fputc(',', f);
            }
            fputc('\n', f);
        }
    }
    return report_commit_tmp(f, tmp, path, err);
}

int report_table_path(const char *db_path, const ReportTable *t, const char *out_dir, Error *err) {
    ASSERT(db_path && t && out_dir);
    if (validate(t, err)) return -1;
    Table tb;
    memset(&tb, 0, sizeof tb);
    tb.t = t;
    tb.scale = t->scale == 0 ? 1 : t->scale;
    tb.db_path = db_path;
    DbReader *rd = NULL;
    int rc = db_read_open(&rd, db_path, err);
    if (rc == 0) rc = collect(&tb, rd, err);
    db_read_close(rd);
    if (rc == 0) {
        compute(&tb);
        rc = load_papers(&tb, err);
    }
    if (rc == 0) rc = report_mkdirs(out_dir, err);
    const char *ext[] = {"md", "tex", "csv"};
    for (int k = 0; k < 3 && rc == 0; k++) {
        size_t l = strlen(out_dir) + strlen(t->name) + 8;
        char *path = xmalloc(l);
        snprintf(path, l, "%s/%s.%s", out_dir, t->name, ext[k]);
        rc = k == 0 ? write_md(&tb, path, err) : k == 1 ? write_tex(&tb, path, err) : write_csv(&tb, path, err);
        free(path);
    }
    table_free(&tb);
    return rc;
}

int report_table(Db *db, const ReportTable *t, const char *out_dir, Error *err) {
    ASSERT(db);
    return report_table_path(db_path(db), t, out_dir, err);
}
