/* results/figure.c: series vs step through gnuplot (results/figure.h, docs/report.md "Figures"). */
#include "results/figure.h"

#include "results/db_read.h"
#include "results/h5rec.h"
#include "results/report.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct Curve {
    char *label;    /* group value or run id */
    int n_runs;
    char **run_ids; /* borrowed from the run list */
    int64_t *seeds;
    /* per run: its series */
    int64_t **steps;
    double **vals;
    int64_t *len;
    /* the merged curve */
    int64_t n;
    int64_t *step;
    double *mean, *std;
    int *cnt;
} Curve;

static void curve_free(Curve *c) {
    for (int r = 0; r < c->n_runs; r++) {
        free(c->steps[r]);
        free(c->vals[r]);
    }
    free(c->label);
    free(c->run_ids);
    free(c->seeds);
    free(c->steps);
    free(c->vals);
    free(c->len);
    free(c->step);
    free(c->mean);
    free(c->std);
    free(c->cnt);
}

static void curve_add_run(Curve *c, char *id, int64_t seed, int64_t *steps, double *vals, int64_t len) {
    c->run_ids = xrealloc(c->run_ids, (size_t)(c->n_runs + 1) * sizeof *c->run_ids);
    c->seeds = xrealloc(c->seeds, (size_t)(c->n_runs + 1) * sizeof *c->seeds);
    c->steps = xrealloc(c->steps, (size_t)(c->n_runs + 1) * sizeof *c->steps);
    c->vals = xrealloc(c->vals, (size_t)(c->n_runs + 1) * sizeof *c->vals);
    c->len = xrealloc(c->len, (size_t)(c->n_runs + 1) * sizeof *c->len);
    c->run_ids[c->n_runs] = id;
    c->seeds[c->n_runs] = seed;
    c->steps[c->n_runs] = steps;
    c->vals[c->n_runs] = vals;
    c->len[c->n_runs] = len;
    c->n_runs++;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Mean and sample std over the runs at every step any of them recorded (steps of one run strictly increase). */
static void curve_merge(Curve *c) {
    int64_t total = 0;
    for (int r = 0; r < c->n_runs; r++) total += c->len[r];
    int64_t *all = xmalloc((size_t)(total ? total : 1) * sizeof *all);
    int64_t k = 0;
    for (int r = 0; r < c->n_runs; r++) {
        memcpy(all + k, c->steps[r], (size_t)c->len[r] * sizeof *all);
        k += c->len[r];
    }
    qsort(all, (size_t)total, sizeof *all, cmp_i64);
    int64_t n = 0;
    for (int64_t i = 0; i < total; i++)
        if (n == 0 || all[i] != all[n - 1]) all[n++] = all[i];
    c->n = n;
    c->step = all;
    c->mean = xcalloc((size_t)(n ? n : 1), sizeof *c->mean);
    c->std = xcalloc((size_t)(n ? n : 1), sizeof *c->std);
    c->cnt = xcalloc((size_t)(n ? n : 1), sizeof *c->cnt);
    double *m2 = xcalloc((size_t)(n ? n : 1), sizeof *m2);
    for (int r = 0; r < c->n_runs; r++) { /* Welford per step, runs in order */
        int64_t p = 0;
        for (int64_t i = 0; i < c->len[r]; i++) {
            while (all[p] != c->steps[r][i]) p++;
            double x = c->vals[r][i], d = x - c->mean[p];
            c->cnt[p]++;
            c->mean[p] += d / c->cnt[p];
            m2[p] += d * (x - c->mean[p]);
        }
    }
    for (int64_t p = 0; p < n; p++) c->std[p] = c->cnt[p] >= 2 ? sqrt(fmax(m2[p], 0) / (c->cnt[p] - 1)) : 0;
    free(m2);
}

static void smooth_trailing(double *v, int64_t n, int w) {
    if (w <= 1 || n == 0) return;
    double *out = xmalloc((size_t)n * sizeof *out), sum = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        if (i >= w) sum -= v[i - w];
        out[i] = sum / (double)MIN(i + 1, (int64_t)w);
    }
    memcpy(v, out, (size_t)n * sizeof *v);
    free(out);
}

/* gnuplot single-quoted string: only ' needs doubling. */
static void put_gp(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* Runs prog on script in dir. Returns 0, or -1 with err; *missing = 1 when prog could not be executed. */
static int run_gnuplot(const char *prog, const char *dir, const char *script, const char *what, int *missing,
                       Error *err) {
    *missing = 0;
    int errp[2], execp[2];
    if (pipe(errp) != 0) return err_set(err, "%s: pipe: %s", what, strerror(errno));
    if (pipe2(execp, O_CLOEXEC) != 0) {
        close(errp[0]);
        close(errp[1]);
        return err_set(err, "%s: pipe: %s", what, strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(errp[0]);
        close(errp[1]);
        close(execp[0]);
        close(execp[1]);
        return err_set(err, "%s: fork: %s", what, strerror(e));
    }
    if (pid == 0) {
        close(errp[0]);
        close(execp[0]);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        dup2(errp[1], 2);
        int e = 0;
        if (chdir(dir) != 0) e = errno;
        if (!e) {
            char *const argv[] = {(char *)prog, (char *)script, NULL};
            execvp(prog, argv);
            e = errno;
        }
        ssize_t wr = write(execp[1], &e, sizeof e);
        (void)wr;
        _exit(127);
    }
    close(errp[1]);
    close(execp[1]);
    int exec_errno = 0;
    ssize_t got;
    do got = read(execp[0], &exec_errno, sizeof exec_errno);
    while (got < 0 && errno == EINTR);
    close(execp[0]);
    char out[1536];
    size_t n_out = 0;
    for (;;) {
        char buf[512];
        ssize_t r = read(errp[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        size_t take = MIN((size_t)r, sizeof out - 1 - n_out);
        memcpy(out + n_out, buf, take);
        n_out += take;
    }
    out[n_out] = '\0';
    close(errp[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    while (n_out > 0 && (out[n_out - 1] == '\n' || out[n_out - 1] == ' ')) out[--n_out] = '\0';
    if (got == (ssize_t)sizeof exec_errno) {
        *missing = 1;
        return err_set(err, "%s: cannot run '%s' in %s: %s", what, prog, dir, strerror(exec_errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status))
            return err_set(err, "%s: gnuplot killed by signal %d: %s", what, WTERMSIG(status), out);
        return err_set(err, "%s: gnuplot failed (exit %d): %s", what, WEXITSTATUS(status), out);
    }
    if (n_out) fprintf(stderr, "%s: gnuplot says: %s\n", what, out);
    return 0;
}

static int write_dat(const char *path, Curve *cv, int n_curves, const char *series, const char *db_path, Error *err) {
    char tmp[4096];
    FILE *f = report_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    fprintf(f, "# generated by loralab (results/figure.c) from %s: series %s\n# columns: step mean std n\n", db_path,
            series);
    for (int c = 0; c < n_curves; c++) {
        if (c) fputs("\n\n", f);
        fprintf(f, "# curve %d: %s (n=%d runs):", c, cv[c].label, cv[c].n_runs);
        for (int r = 0; r < cv[c].n_runs; r++) fprintf(f, " %s", cv[c].run_ids[r]);
        fputc('\n', f);
        for (int64_t p = 0; p < cv[c].n; p++)
            fprintf(f, "%lld %.10g %.10g %d\n", (long long)cv[c].step[p], cv[c].mean[p], cv[c].std[p], cv[c].cnt[p]);
    }
    return report_commit_tmp(f, tmp, path, err);
}

/* heatmap: x = the columns (layers), y = one row per curve (group or run), each cell a box coloured by the value
 * (the mean over the group's runs of the last recorded row) with the value printed on it. Boxes (boxxyerror,
 * colour from the palette), not `with image`: an image needs a grid of at least 2 x 2 and a rank map of one method
 * is a single row; a NaN cell (a column a group did not record) is left blank. */
static void write_heatmap_body(FILE *f, const char *name, Curve *cv, int n_curves, const FigureOptions *o,
                               char **xtics, int n_xtics) {
    fputs("\nunset grid\nunset key\nset style fill solid 1.0 noborder\nset style textbox opaque noborder\n"
          "set palette defined (0 '#f7fcf0', 0.35 '#a8ddb5', 0.7 '#43a2ca', 1 '#084081')\n",
          f);
    if (o->log_y) fputs("set logscale cb\n", f);
    double lo = INFINITY, hi = -INFINITY;
    for (int c = 0; c < n_curves; c++)
        for (int64_t p = 0; p < cv[c].n; p++)
            if (isfinite(cv[c].mean[p])) lo = fmin(lo, cv[c].mean[p]), hi = fmax(hi, cv[c].mean[p]);
    if (lo == hi) /* one value everywhere (the same rank on every layer): gnuplot cannot scale a zero-width range */
        fprintf(f, "set cbrange [%.10g:%.10g]\n", o->log_y ? lo / 2 : lo - 1, o->log_y ? hi * 2 : hi + 1);
    fputs("set xtics rotate by -45 (", f);
    for (int i = 0; i < n_xtics; i++) {
        if (i) fputs(", ", f);
        put_gp(f, xtics[i]);
        fprintf(f, " %d", i);
    }
    fprintf(f, ")\nset xrange [-0.5:%d.5]\nset bmargin 8\nset ytics (", n_xtics - 1);
    for (int c = 0; c < n_curves; c++) {
        char label[600];
        if (cv[c].n_runs > 1) snprintf(label, sizeof label, "%s (n=%d)", cv[c].label, cv[c].n_runs);
        else snprintf(label, sizeof label, "%s", cv[c].label);
        if (c) fputs(", ", f);
        put_gp(f, label);
        fprintf(f, " %d", c);
    }
    fprintf(f, ")\nset yrange [%d.5:-0.5]  # first group on top\nset lmargin 16\nplot \\\n", n_curves - 1);
    for (int c = 0; c < n_curves; c++)
        fprintf(f, "%s    '%s.dat' index %d using 1:(%d):(0.5):(0.5):2 with boxxyerror fc palette notitle", c ? ", \\\n" : "",
                name, c, c);
    for (int c = 0; c < n_curves; c++)
        fprintf(f, ", \\\n    '%s.dat' index %d using 1:(%d):(sprintf('%%.3g', $2)) with labels boxed notitle", name,
                c, c);
    fputc('\n', f);
}

/* Curves (mean, +- std band) vs step, or vs the columns (profile: xtics). */
static void write_lines_body(FILE *f, const char *name, Curve *cv, int n_curves, const FigureOptions *o, char **xtics,
                             int n_xtics) {
    fputs("\nset grid\nset key top right\nset style fill transparent solid 0.2 noborder\n", f);
    if (o->log_x) fputs("set logscale x\n", f);
    if (xtics && n_xtics > 0) { /* profile: the columns name the x axis */
        fputs("set xtics rotate by -45 (", f);
        for (int i = 0; i < n_xtics; i++) {
            if (i) fputs(", ", f);
            put_gp(f, xtics[i]);
            fprintf(f, " %d", i);
        }
        fprintf(f, ")\nset xrange [-0.5:%d.5]\nset bmargin 8\n", n_xtics - 1);
    }
    if (o->log_y) fputs("set logscale y\n", f);
    fputs("lo(m, s) = m - s\n", f);
    if (o->log_y) fputs("lo(m, s) = (m - s > 0) ? m - s : m / 10.0  # log axis: clip the band's lower edge\n", f);
    fputs("plot \\\n", f);
    int first = 1;
    for (int pass = 0; pass < 2; pass++) { /* bands first, lines on top */
        for (int c = 0; c < n_curves; c++) {
            int maxn = 0;
            for (int64_t p = 0; p < cv[c].n; p++) maxn = MAX(maxn, cv[c].cnt[p]);
            const char *color = COLORS[c % (int)ARRAY_LEN(COLORS)];
            int dash = 1 + c / (int)ARRAY_LEN(COLORS);
            if (pass == 0) {
                if (o->no_band || maxn < 2) continue;
                fprintf(f, "%s    '%s.dat' index %d using 1:(lo($2,$3)):($2+$3) with filledcurves lc rgb '%s' notitle",
                        first ? "" : ", \\\n", name, c, color);
            } else {
                char label[600];
                if (cv[c].n_runs > 1) snprintf(label, sizeof label, "%s (n=%d)", cv[c].label, cv[c].n_runs);
                else snprintf(label, sizeof label, "%s", cv[c].label);
                fprintf(f, "%s    '%s.dat' index %d using 1:2 with %s lw 2 lc rgb '%s' dt %d title ",
                        first ? "" : ", \\\n", name, c, xtics ? "linespoints pt 7" : "lines", color, dash);
                put_gp(f, label);
            }
            first = 0;
        }
    }
    fputs("\n", f);
}

static int write_gp(const char *path, const char *name, Curve *cv, int n_curves, const char *title, const char *xlabel,
                    const char *ylabel, const FigureOptions *o, char **xtics, int n_xtics, const char *db_path,
                    Error *err) {
    char tmp[4096];
    FILE *f = report_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    int w = o->width > 0 ? o->width : 900, h = o->height > 0 ? o->height : 560;
    fprintf(f, "# generated by loralab (results/figure.c) from %s\n# run it in this folder: gnuplot %s.gp\n", db_path,
            name);
    fprintf(f, "W = %d; H = %d\nset encoding utf8\n", w, h);
    fputs("# pngcairo (antialiased) when this gnuplot has it, else libgd's png\n"
          "if (strstrt(GPVAL_TERMINALS, ' pngcairo') > 0) {\n"
          "    set terminal pngcairo size W,H noenhanced font 'sans,10'\n"
          "} else {\n"
          "    set terminal png size W,H noenhanced truecolor\n"
          "}\n",
          f);
    fprintf(f, "set output '%s.png'\n", name);
    fputs("set title ", f);
    put_gp(f, title);
    fputs("\nset xlabel ", f);
    put_gp(f, xlabel);
    fputs(o->heatmap ? "\nset ylabel ''\nset cblabel " : "\nset ylabel ", f);
    put_gp(f, ylabel);
    if (o->heatmap) write_heatmap_body(f, name, cv, n_curves, o, xtics, n_xtics);
    else write_lines_body(f, name, cv, n_curves, o, xtics, n_xtics);
    fputs("set output\n", f);
    if (o->svg)
        fprintf(f, "set terminal svg size W,H noenhanced dynamic font 'sans,10'\nset output '%s.svg'\nreplot\n"
                   "set output\n",
                name);
    if (o->pdf)
        fprintf(f,
                "if (strstrt(GPVAL_TERMINALS, ' pdfcairo') > 0) {\n"
                "    set terminal pdfcairo size W/100.0,H/100.0 noenhanced font 'sans,8'\n"
                "    set output '%s.pdf'\n    replot\n    set output\n"
                "} else {\n    print 'no pdfcairo terminal in this gnuplot: %s.pdf not made'\n}\n",
                name, name);
    return report_commit_tmp(f, tmp, path, err);
}

/* A run's HDF5 path: as stored if it exists, else relative to the database's directory. */
static char *resolve_h5(const char *stored, const char *db_path) {
    struct stat sb;
    if (stored[0] == '/' || stat(stored, &sb) == 0) return xstrdup(stored);
    const char *slash = strrchr(db_path, '/');
    if (!slash) return xstrdup(stored);
    size_t l = (size_t)(slash - db_path) + strlen(stored) + 2;
    char *p = xmalloc(l);
    snprintf(p, l, "%.*s/%s", (int)(slash - db_path), db_path, stored);
    if (stat(p, &sb) != 0) {
        free(p);
        return xstrdup(stored);
    }
    return p;
}

/* Reads the series (or one column of a row series) of one run file. *absent = 1 when the file has no such
 * series (not an error: another method's runs may not record it). */
static int read_run(const char *path, const char *series, const char *column, int64_t **steps, double **vals,
                    int64_t *n, int *absent, Error *err) {
    *absent = 0;
    char **names = NULL;
    int n_names = 0;
    if (h5rec_list_series(path, &names, &n_names, err)) return -1;
    int present = 0;
    for (int i = 0; i < n_names; i++) present |= !strcmp(names[i], series);
    free(names);
    if (!present) {
        *absent = 1;
        return 0;
    }
    if (!column) return h5rec_read_series(path, series, steps, vals, n, err);
    double *rows = NULL;
    int n_cols = 0;
    char **cols = NULL;
    if (h5rec_read_rows(path, series, steps, &rows, n, &n_cols, &cols, err)) return -1;
    int c = -1;
    for (int k = 0; cols && k < n_cols; k++)
        if (!strcmp(cols[k], column)) c = k;
    if (c < 0 && column[0] && strspn(column, "0123456789") == strlen(column)) {
        long v = strtol(column, NULL, 10);
        if (v < n_cols) c = (int)v;
    }
    if (c < 0) {
        char have[400] = "";
        size_t l = 0;
        for (int k = 0; cols && k < n_cols && l + 4 < sizeof have; k++)
            l += (size_t)snprintf(have + l, sizeof have - l, "%s%s", k ? ", " : "", cols[k]);
        err_set(err, "%s: row series '%s' has no column '%s' (%d columns%s%s)", path, series, column, n_cols,
                l ? ": " : "", have);
        free(*steps);
        *steps = NULL;
        free(rows);
        free(cols);
        return -1;
    }
    *vals = xmalloc((size_t)(*n ? *n : 1) * sizeof **vals);
    for (int64_t i = 0; i < *n; i++) (*vals)[i] = rows[i * n_cols + c];
    free(rows);
    free(cols);
    return 0;
}

/* Curve index of label (created if new). */
static int curve_for(Curve **cv, int *n_curves, const char *label) {
    for (int q = 0; q < *n_curves; q++)
        if (!strcmp((*cv)[q].label, label)) return q;
    *cv = xrealloc(*cv, (size_t)(*n_curves + 1) * sizeof **cv);
    memset(&(*cv)[*n_curves], 0, sizeof **cv);
    (*cv)[*n_curves].label = xstrdup(label);
    return (*n_curves)++;
}

/* A row series' column's index in names (appended if new). */
static int xtic_index(char ***names, int *n, const char *col) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*names)[i], col)) return i;
    *names = xrealloc(*names, (size_t)(*n + 1) * sizeof **names);
    (*names)[*n] = xstrdup(col);
    return (*n)++;
}

/* all_columns / profile: the run's row series into curves. Returns 1 when the run was used. */
static int add_rows_run(Curve **cv, int *n_curves, const FigureOptions *o, const char *group, char *run_id,
                        int64_t seed, int64_t *steps, double *rows, int64_t n, int n_cols, char **cols, char ***xtics,
                        int *n_xtics) {
    if (n == 0 || n_cols == 0) return 0;
    char label[600], cname[32];
    if (o->profile || o->heatmap) { /* x = the columns (by name), y = the last row */
        int64_t *st = xmalloc((size_t)n_cols * sizeof *st);
        double *v = xmalloc((size_t)n_cols * sizeof *v);
        for (int k = 0; k < n_cols; k++) {
            if (!cols) snprintf(cname, sizeof cname, "%d", k);
            st[k] = xtic_index(xtics, n_xtics, cols ? cols[k] : cname);
            v[k] = rows[(n - 1) * n_cols + k];
        }
        for (int a = 1; a < n_cols; a++) /* steps must increase: sort by x */
            for (int b = a; b > 0 && st[b - 1] > st[b]; b--) {
                int64_t ts = st[b]; st[b] = st[b - 1]; st[b - 1] = ts;
                double tv = v[b]; v[b] = v[b - 1]; v[b - 1] = tv;
            }
        snprintf(label, sizeof label, "%s", group ? group : run_id);
        int c = curve_for(cv, n_curves, label); /* may move *cv */
        curve_add_run(&(*cv)[c], run_id, seed, st, v, n_cols);
        return 1;
    }
    for (int k = 0; k < n_cols; k++) { /* all_columns: one curve per (group, column) */
        if (!cols) snprintf(cname, sizeof cname, "%d", k);
        const char *cn = cols ? cols[k] : cname;
        if (group) snprintf(label, sizeof label, "%s / %s", group, cn);
        else snprintf(label, sizeof label, "%s", cn);
        int64_t *st = xmalloc((size_t)n * sizeof *st);
        double *v = xmalloc((size_t)n * sizeof *v);
        memcpy(st, steps, (size_t)n * sizeof *st);
        for (int64_t i = 0; i < n; i++) v[i] = rows[i * n_cols + k];
        smooth_trailing(v, n, o->smooth);
        int c = curve_for(cv, n_curves, label); /* may move *cv */
        curve_add_run(&(*cv)[c], run_id, seed, st, v, n);
    }
    return 1;
}

int figure_series_path(const char *db_path, const char *experiment, const char *series, const char *group_by,
                       const FigureOptions *opts, const char *out_dir, Error *err) {
    ASSERT(db_path && series && out_dir);
    FigureOptions defaults;
    memset(&defaults, 0, sizeof defaults);
    const FigureOptions *o = opts ? opts : &defaults;
    /* the file stem */
    char name[256];
    if (o->name) {
        if (!o->name[0] || strchr(o->name, '/') || strlen(o->name) >= sizeof name)
            return err_set(err, "figure '%s': name must be a short file stem without '/'", o->name);
        snprintf(name, sizeof name, "%s", o->name);
    } else {
        snprintf(name, sizeof name, "%s%s%s", series, o->column ? "_" : "", o->column ? o->column : "");
        for (char *p = name; *p; p++)
            if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_')) *p = '_';
    }
    for (int w = 0; w < o->n_where; w++)
        if (!o->where[w] || !strchr(o->where[w], '=') || o->where[w][0] == '=')
            return err_set(err, "figure '%s': where entry '%s' is not key=value", name,
                           o->where[w] ? o->where[w] : "(null)");
    if ((o->all_columns || o->profile || o->heatmap) &&
        (o->column || o->all_columns + o->profile + o->heatmap > 1))
        return err_set(err, "figure '%s': all_columns, profile, heatmap and column are exclusive (one way to draw a "
                            "row series)", name);
    int by_rows = o->all_columns || o->profile || o->heatmap;
    char **xtics = NULL;
    int n_xtics = 0;

    int n_keys = (group_by ? 1 : 0) + o->n_where;
    const char **keys = xmalloc((size_t)(n_keys ? n_keys : 1) * sizeof *keys);
    int k0 = group_by ? 1 : 0;
    if (group_by) keys[0] = group_by;
    for (int w = 0; w < o->n_where; w++) {
        size_t l = (size_t)(strchr(o->where[w], '=') - o->where[w]);
        char *key = xmalloc(l + 1);
        memcpy(key, o->where[w], l);
        key[l] = '\0';
        keys[k0 + w] = key;
    }
    DbReader *rd = NULL;
    DbRunList rl;
    memset(&rl, 0, sizeof rl);
    Curve *cv = NULL;
    int n_curves = 0, rc = db_read_open(&rd, db_path, err);
    if (rc == 0) rc = db_read_runs(rd, experiment, o->all_status ? NULL : "done", keys, n_keys, &rl, err);
    if (rc == 0) db_run_list_keep(&rl, o->run_ids, o->n_run_ids);
    db_read_close(rd);

    int n_nokey = 0, n_noh5 = 0, n_absent = 0, n_used = 0, n_considered = 0;
    char sample_absent[300] = "";
    if (rc == 0) {
        if (o->n_group_order > 0 && group_by && !o->all_columns) {
            cv = xcalloc((size_t)o->n_group_order, sizeof *cv);
            for (int g = 0; g < o->n_group_order; g++) cv[g].label = xstrdup(o->group_order[g]);
            n_curves = o->n_group_order;
        }
        for (int i = 0; i < rl.n && rc == 0; i++) {
            char **pv = &rl.param[(size_t)i * n_keys];
            int match = 1;
            for (int w = 0; w < o->n_where; w++) {
                const char *want = strchr(o->where[w], '=') + 1;
                if (!pv[k0 + w] || strcmp(pv[k0 + w], want)) match = 0;
            }
            if (!match) continue;
            n_considered++;
            if (group_by && !pv[0]) {
                n_nokey++;
                continue;
            }
            if (!rl.h5_path[i] || !rl.h5_path[i][0]) {
                n_noh5++;
                continue;
            }
            char label[300];
            if (group_by) snprintf(label, sizeof label, "%s", pv[0]);
            else if (rl.seed[i] != INT64_MIN) snprintf(label, sizeof label, "%s (seed %lld)", rl.id[i],
                                                       (long long)rl.seed[i]);
            else snprintf(label, sizeof label, "%s", rl.id[i]);
            int c = -1;
            for (int q = 0; q < n_curves && group_by; q++)
                if (!strcmp(cv[q].label, label)) c = q;
            if (c < 0 && group_by && o->n_group_order > 0 && !o->all_columns) continue; /* a group not asked for */
            if (o->all_columns && group_by && o->n_group_order > 0) {
                int asked = 0;
                for (int g = 0; g < o->n_group_order; g++) asked |= !strcmp(o->group_order[g], label);
                if (!asked) continue;
            }
            char *path = resolve_h5(rl.h5_path[i], db_path);
            int64_t *st = NULL, n = 0;
            double *v = NULL;
            int absent = 0;
            if (by_rows) {
                char **names = NULL;
                int n_names = 0, n_cols = 0;
                char **cols = NULL;
                if (h5rec_list_series(path, &names, &n_names, err) == 0) {
                    int present = 0;
                    for (int q = 0; q < n_names; q++) present |= !strcmp(names[q], series);
                    free(names);
                    if (!present) {
                        n_absent++;
                        if (!sample_absent[0]) snprintf(sample_absent, sizeof sample_absent, "%s", path);
                    } else if (h5rec_read_rows(path, series, &st, &v, &n, &n_cols, &cols, err) == 0) {
                        n_used += add_rows_run(&cv, &n_curves, o, group_by ? label : NULL, rl.id[i], rl.seed[i], st,
                                               v, n, n_cols, cols, &xtics, &n_xtics);
                        free(st), free(v), free(cols);
                    } else {
                        rc = -1;
                    }
                } else {
                    rc = -1;
                }
                if (rc && err) {
                    char inner[ERROR_MSG_MAX];
                    snprintf(inner, sizeof inner, "%s", err->msg);
                    err_set(err, "figure '%s': run %s: %s", name, rl.id[i], inner);
                }
                free(path);
                continue;
            }
            if (read_run(path, series, o->column, &st, &v, &n, &absent, err)) {
                if (err) {
                    char inner[ERROR_MSG_MAX];
                    snprintf(inner, sizeof inner, "%s", err->msg);
                    err_set(err, "figure '%s': run %s: %s", name, rl.id[i], inner);
                }
                rc = -1;
            } else if (absent) {
                n_absent++;
                if (!sample_absent[0]) snprintf(sample_absent, sizeof sample_absent, "%s", path);
            } else {
                if (c < 0) {
                    cv = xrealloc(cv, (size_t)(n_curves + 1) * sizeof *cv);
                    memset(&cv[n_curves], 0, sizeof *cv);
                    cv[n_curves].label = xstrdup(label);
                    c = n_curves++;
                }
                smooth_trailing(v, n, o->smooth);
                curve_add_run(&cv[c], rl.id[i], rl.seed[i], st, v, n);
                n_used++;
            }
            free(path);
        }
    }
    if (rc == 0 && n_used == 0) {
        rc = err_set(err,
                     "figure '%s': no run to draw: %d %sruns of %s%s%s match (%d without %s, %d without an HDF5 file, "
                     "%d whose file has no series '%s'%s%s)",
                     name, n_considered, o->all_status ? "" : "done ", experiment ? "experiment " : "all experiments",
                     experiment ? experiment : "", o->n_where ? " and the where filters" : "", n_nokey,
                     group_by ? group_by : "(no key)", n_noh5, n_absent, series, sample_absent[0] ? ", e.g. " : "",
                     sample_absent);
        if (n_considered == 0) rc = 1; /* no finished run matches yet (a partial grid): nothing to draw, no error */
    }
    /* drop listed groups without runs (they would be empty blocks) */
    if (rc == 0) {
        int k = 0;
        for (int c = 0; c < n_curves; c++) {
            if (cv[c].n_runs == 0) {
                curve_free(&cv[c]);
                continue;
            }
            cv[k++] = cv[c];
        }
        n_curves = k;
        for (int c = 0; c < n_curves; c++) curve_merge(&cv[c]);
    }
    char *dat = NULL, *gp = NULL;
    if (rc == 0) rc = report_mkdirs(out_dir, err);
    if (rc == 0) {
        size_t l = strlen(out_dir) + strlen(name) + 8;
        dat = xmalloc(l);
        gp = xmalloc(l);
        snprintf(dat, l, "%s/%s.dat", out_dir, name);
        snprintf(gp, l, "%s/%s.gp", out_dir, name);
        rc = write_dat(dat, cv, n_curves, series, db_path, err);
    }
    if (rc == 0) {
        char title[600], ylabel[300];
        if (o->title) snprintf(title, sizeof title, "%s", o->title);
        else snprintf(title, sizeof title, "%s%s%s%s", series, o->column ? " [" : "", o->column ? o->column : "",
                      o->column ? "]" : "");
        if (!o->title && experiment) {
            size_t l = strlen(title);
            snprintf(title + l, sizeof title - l, " (%s)", experiment);
        }
        snprintf(ylabel, sizeof ylabel, "%s", o->ylabel ? o->ylabel : series);
        rc = write_gp(gp, name, cv, n_curves, title,
                      o->xlabel ? o->xlabel : o->profile || o->heatmap ? "layer" : "step", ylabel, o,
                      o->profile || o->heatmap ? xtics : NULL, n_xtics, db_path, err);
    }
    if (rc == 0) {
        char what[400];
        snprintf(what, sizeof what, "figure '%s' (%s.gp in %s)", name, name, out_dir);
        int missing = 0;
        const char *prog = o->gnuplot ? o->gnuplot : "gnuplot";
        rc = run_gnuplot(prog, out_dir, strrchr(gp, '/') + 1, what, &missing, err);
        if (rc && missing) {
            err_set(err,
                    "figure '%s': %s '%s' cannot be run: install gnuplot (apt-get install gnuplot-nox), then run "
                    "`gnuplot %s.gp` in %s; the data (%s.dat) and the script (%s.gp) are written",
                    name, o->gnuplot ? "the gnuplot program" : "gnuplot not found on PATH:", prog, name, out_dir,
                    name, name);
        }
        if (rc == 0) {
            size_t l = strlen(out_dir) + strlen(name) + 8;
            char *png = xmalloc(l);
            snprintf(png, l, "%s/%s.png", out_dir, name);
            struct stat sb;
            if (stat(png, &sb) != 0 || sb.st_size == 0)
                rc = err_set(err, "figure '%s': gnuplot ran but %s is missing or empty", name, png);
            free(png);
        }
    }
    free(dat);
    free(gp);
    for (int i = 0; i < n_xtics; i++) free(xtics[i]);
    free(xtics);
    for (int c = 0; c < n_curves; c++) curve_free(&cv[c]);
    free(cv);
    db_run_list_free(&rl);
    for (int w = 0; w < o->n_where; w++) free((char *)keys[k0 + w]);
    free(keys);
    return rc;
}

int figure_series(Db *db, const char *experiment, const char *series, const char *group_by, const FigureOptions *o,
                  const char *out_dir, Error *err) {
    ASSERT(db);
    return figure_series_path(db_path(db), experiment, series, group_by, o, out_dir, err);
}
