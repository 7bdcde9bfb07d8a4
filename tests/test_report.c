/* tests/test_report.c: results/report.h (tables) and results/figure.h (gnuplot figures) on a database built
 * here with known values: 3 methods x 4 tasks (2 groups) x 3 seeds, one failed run that must be ignored, one
 * missing cell, one cell with 2 seeds, runs of another experiment, and small HDF5 files with loss series.
 * argv[1]: values | latex | paper | errors | figure | nogp. REPORT_KEEP=1 keeps the temp directory. */
#include "results/figure.h"
#include "results/h5rec.h"
#include "results/report.h"
#include "testlib.h"

#include <ftw.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[512];

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/loralab_report_XXXXXX", base && *base ? base : "/tmp");
    ASSERTF(mkdtemp(tmpdir), "mkdtemp %s failed", tmpdir);
}
static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}
static void remove_tmpdir(void) {
    if (getenv("REPORT_KEEP")) {
        fprintf(stderr, "kept %s\n", tmpdir);
        return;
    }
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
static const char *tpath(const char *name) {
    static char p[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(p[slot], sizeof p[slot], "%s/%s", tmpdir, name);
    return p[slot];
}
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = xmalloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    if (len) *len = got;
    return b;
}
static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- the fixture ------------------------------------------------------------------------------------------- */
#define N_M 3
#define N_T 4
#define N_S 3
static const char *const METHODS[N_M] = {"lora", "pissa", "abm_lora"};
static const char *const TASKS[N_T] = {"cifar", "dtd", "eurosat", "clevr_count"};
static const char *const GROUPS[2] = {"Natural", "Structured"};
static const int GROUP_OF[N_T] = {0, 0, 0, 1}; /* unequal groups: Overall != mean of group means */
/* test_acc = BASE[m][t] + DELTA[seed] */
static const double BASE[N_M][N_T] = {{0.70, 0.60, 0.90, 0.50}, {0.72, 0.58, 0.91, 0.0}, {0.69, 0.65, 0.89, 0.55}};
static const double DELTA[N_S] = {0.01, -0.02, 0.04};
/* pissa x clevr_count has no run; abm_lora x eurosat has seeds 0 and 1 only */
static int has_run(int m, int t, int s) { return !(m == 1 && t == 3) && !(m == 2 && t == 2 && s == 2); }
static double loss_at(int m, int s, int step) { return (1.0 + 0.5 * m) * exp(-step / 60.0) + 0.02 * s + 0.01; }

static void run_id(char *buf, size_t cap, int m, int t, int s) { snprintf(buf, cap, "run_%d_%d_%d", m, t, s); }

static void begin(Db *db, const char *id, int64_t exp, int cell, int seed, const char *method, const char *task) {
    Error err = {{0}};
    char sd[16];
    snprintf(sd, sizeof sd, "%d", seed);
    const char *kv[] = {"method.init", method, "dataset.name", task, "seed", sd, "train.lr", "1e-3"};
    ASSERTF(db_run_begin(db, id, exp, cell, seed, "cpu", "test", kv, 4, &err) == 0, "%s", err.msg);
}

/* Writes a loss series (and a row series) for run (m, s) to <tmpdir>/<id>.h5; returns the path stored in the DB
 * (relative to the database's directory for even seeds, absolute for odd ones: both must resolve). */
static const char *write_h5(const char *id, int m, int s, double scale_bad) {
    static char stored[1024];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.h5", tmpdir, id);
    Error err = {{0}};
    H5Rec *r = NULL;
    ASSERTF(h5rec_open(&r, path, H5REC_CREATE, &err) == 0, "%s", err.msg);
    const char *cols[] = {"blk0", "blk1"};
    for (int step = 0; step < 200; step++) {
        ASSERTF(h5rec_append(r, "train/loss", step, loss_at(m, s, step) * scale_bad, &err) == 0, "%s", err.msg);
        if (step % 10 == 0) {
            double row[2] = {0.1 * m + step * 1e-3, 1.0 + m + s};
            ASSERTF(h5rec_append_row(r, "layers/info_loss", step, row, 2, cols, &err) == 0, "%s", err.msg);
        }
    }
    ASSERTF(h5rec_close(r, &err) == 0, "%s", err.msg);
    if (s % 2 == 0) snprintf(stored, sizeof stored, "%s.h5", id);
    else snprintf(stored, sizeof stored, "%s", path);
    return stored;
}

static const char *build_db(void) {
    static char path[1024]; /* tpath's ring of buffers is reused: keep a copy */
    snprintf(path, sizeof path, "%s", tpath("runs.db"));
    Error err = {{0}};
    Db *db = NULL;
    ASSERTF(db_open(&db, path, &err) == 0, "%s", err.msg);
    int64_t exp = 0, other = 0;
    ASSERTF(db_experiment(db, "vtab_mini", "configs/vtab_mini.yaml", &exp, &err) == 0, "%s", err.msg);
    ASSERTF(db_experiment(db, "other", NULL, &other, &err) == 0, "%s", err.msg);
    const char *key[] = {"test_acc"};
    for (int m = 0; m < N_M; m++)
        for (int t = 0; t < N_T; t++)
            for (int s = 0; s < N_S; s++) {
                if (!has_run(m, t, s)) continue;
                char id[64];
                run_id(id, sizeof id, m, t, s);
                begin(db, id, exp, m * N_T + t, s, METHODS[m], TASKS[t]);
                double v = BASE[m][t] + DELTA[s];
                if (m == 0 && t == 1) {
                    /* several steps: the largest step's value counts */
                    const char *k3[] = {"test_acc", "test_acc", "test_acc"};
                    double v3[] = {0.11, v, 0.22};
                    int64_t st3[] = {100, 900, 500};
                    ASSERTF(db_put_results(db, id, k3, v3, st3, 3, &err) == 0, "%s", err.msg);
                } else if (m == 2 && t == 0) {
                    /* a final value (no step) wins over stepped ones */
                    const char *k2[] = {"test_acc", "test_acc"};
                    double v2[] = {0.33, v};
                    int64_t st2[] = {1000, 0};
                    ASSERTF(db_put_results(db, id, k2, v2, NULL, 1, &err) == 0, "%s", err.msg);
                    ASSERTF(db_put_results(db, id, k2, v2, st2, 1, &err) == 0, "%s", err.msg);
                    ASSERTF(db_put_results(db, id, k2 + 1, v2 + 1, NULL, 1, &err) == 0, "%s", err.msg);
                } else {
                    ASSERTF(db_put_results(db, id, key, &v, NULL, 1, &err) == 0, "%s", err.msg);
                }
                if (t == 0) ASSERTF(db_run_h5(db, id, write_h5(id, m, s, 1.0), &err) == 0, "%s", err.msg);
                ASSERTF(db_run_finish(db, id, "done", 1.0, 0, NULL, &err) == 0, "%s", err.msg);
            }
    /* a failed run (seed 3) that would change lora x cifar and its loss curve if it counted */
    begin(db, "failed_run", exp, 0, 3, "lora", "cifar");
    double bad = 0.0;
    ASSERTF(db_put_results(db, "failed_run", key, &bad, NULL, 1, &err) == 0, "%s", err.msg);
    ASSERTF(db_run_h5(db, "failed_run", write_h5("failed_run", 0, 3, 50.0), &err) == 0, "%s", err.msg);
    ASSERTF(db_run_finish(db, "failed_run", "failed", 1.0, 0, "diverged", &err) == 0, "%s", err.msg);
    /* a running one */
    begin(db, "live_run", exp, 1, 4, "lora", "dtd");
    /* another experiment's run in the same cell */
    begin(db, "other_run", other, 0, 0, "lora", "cifar");
    ASSERTF(db_put_results(db, "other_run", key, &bad, NULL, 1, &err) == 0, "%s", err.msg);
    ASSERTF(db_run_finish(db, "other_run", "done", 1.0, 0, NULL, &err) == 0, "%s", err.msg);
    db_close(db);
    return path;
}

static ReportTable vtab_spec(void) {
    ReportTable t;
    memset(&t, 0, sizeof t);
    t.name = "vtab";
    t.title = "VTAB mini (test)";
    t.experiment = "vtab_mini";
    t.row_key = "method.init";
    t.row_title = "Method";
    t.col_key = "dataset.name";
    t.col_order = TASKS;
    t.n_col_order = N_T;
    t.metric = "test_acc";
    t.scale = 100;
    t.decimals = 2;
    t.higher_is_better = 1;
    t.group_names = GROUPS;
    t.group_of_col = GROUP_OF;
    t.n_groups = 2;
    t.overall_mean = 1;
    return t;
}

/* ---- the CSV read back --------------------------------------------------------------------------------------- */
typedef struct CsvRow {
    char f[10][512];
} CsvRow;

static int read_csv(const char *path, CsvRow **rows) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    *rows = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        *rows = xrealloc(*rows, (size_t)(n + 1) * sizeof **rows);
        CsvRow *r = &(*rows)[n++];
        memset(r, 0, sizeof *r);
        int k = 0;
        char *p = line;
        for (;;) {
            char *c = strchr(p, ',');
            if (c) *c = '\0';
            if (k < 10) snprintf(r->f[k++], sizeof r->f[0], "%s", p);
            if (!c) break;
            p = c + 1;
        }
    }
    fclose(f);
    return n;
}

/* The CSV line for (row, column, source). */
static const CsvRow *find(const CsvRow *rows, int n, const char *row, const char *col, const char *source) {
    for (int i = 1; i < n; i++)
        if (!strcmp(rows[i].f[0], row) && !strcmp(rows[i].f[1], col) && !strcmp(rows[i].f[3], source)) return &rows[i];
    return NULL;
}

static void expected(int m, int t, double *mean, double *std, int *n) {
    double sum = 0, v[N_S];
    *n = 0;
    for (int s = 0; s < N_S; s++)
        if (has_run(m, t, s)) v[(*n)++] = 100 * (BASE[m][t] + DELTA[s]);
    for (int k = 0; k < *n; k++) sum += v[k];
    *mean = *n ? sum / *n : NAN;
    double ss = 0;
    for (int k = 0; k < *n; k++) ss += (v[k] - *mean) * (v[k] - *mean);
    *std = *n >= 2 ? sqrt(ss / (*n - 1)) : NAN;
}

/* ---- report_table_values --------------------------------------------------------------------------------------- */
static void test_values(void) {
    const char *dbp = build_db();
    Error err = {{0}};
    Db *db = NULL;
    ASSERTF(db_open(&db, dbp, &err) == 0, "%s", err.msg);
    ReportTable t = vtab_spec();
    const char *out = tpath("out");
    CHECK_MSG(report_table(db, &t, out, &err) == 0, "%s", err.msg);
    db_close(db);
    char p[1024];
    snprintf(p, sizeof p, "%s/vtab.csv", out);
    CsvRow *rows = NULL;
    int n = read_csv(p, &rows);
    CHECK_MSG(n == 1 + N_M * (N_T + 3), "%d lines", n);
    if (n < 1) return;
    CHECK(!strcmp(rows[0].f[0], "row") && !strcmp(rows[0].f[4], "mean") && !strcmp(rows[0].f[5], "std") &&
          !strcmp(rows[0].f[6], "n") && !strcmp(rows[0].f[7], "best") && !strcmp(rows[0].f[9], "run_ids"));
    for (int m = 0; m < N_M; m++) {
        double gsum[2] = {0, 0}, osum = 0;
        int gall[2] = {1, 1};
        for (int t2 = 0; t2 < N_T; t2++) {
            double mean, std;
            int cnt;
            expected(m, t2, &mean, &std, &cnt);
            const CsvRow *r = find(rows, n, METHODS[m], TASKS[t2], "ours");
            CHECK_MSG(r != NULL, "%s / %s", METHODS[m], TASKS[t2]);
            if (!r) continue;
            CHECK(!strcmp(r->f[2], "task"));
            CHECK_MSG(atoi(r->f[6]) == cnt, "%s / %s: n %s, expected %d", METHODS[m], TASKS[t2], r->f[6], cnt);
            if (cnt == 0) {
                CHECK_MSG(r->f[4][0] == '\0' && r->f[9][0] == '\0', "missing cell has '%s'", r->f[4]);
                gall[GROUP_OF[t2]] = 0;
                continue;
            }
            CHECK_NEAR(strtod(r->f[4], NULL), mean, 1e-9);
            CHECK_NEAR(strtod(r->f[5], NULL), std, 1e-9);
            gsum[GROUP_OF[t2]] += mean;
            osum += mean;
            /* run ids: exactly the cell's done runs */
            for (int s = 0; s < N_S; s++) {
                char id[64];
                run_id(id, sizeof id, m, t2, s);
                CHECK_MSG(!has_run(m, t2, s) || strstr(r->f[9], id), "%s not in '%s'", id, r->f[9]);
            }
            CHECK(!strstr(r->f[9], "failed_run") && !strstr(r->f[9], "other_run") && !strstr(r->f[9], "live_run"));
        }
        for (int g = 0; g < 2; g++) {
            const CsvRow *r = find(rows, n, METHODS[m], GROUPS[g], "ours");
            CHECK(r && !strcmp(r->f[2], "group"));
            if (!r) continue;
            if (gall[g]) CHECK_NEAR(strtod(r->f[4], NULL), gsum[g] / (g == 0 ? 3 : 1), 1e-9);
            else CHECK_MSG(r->f[4][0] == '\0', "group with a missing task has '%s'", r->f[4]);
        }
        const CsvRow *r = find(rows, n, METHODS[m], "Overall", "ours");
        CHECK(r && !strcmp(r->f[2], "overall"));
        if (r && gall[0] && gall[1]) {
            /* the mean over the tasks, not over the group means (which differ: the groups have 3 and 1 tasks) */
            CHECK_NEAR(strtod(r->f[4], NULL), osum / N_T, 1e-9);
            double of_groups = (gsum[0] / 3 + gsum[1]) / 2;
            CHECK_MSG(fabs(strtod(r->f[4], NULL) - of_groups) > 1e-3, "overall %s = mean of group means %g", r->f[4],
                      of_groups);
        } else if (r) {
            CHECK(r->f[4][0] == '\0');
        }
    }
    /* best per column, worked out by hand (x100: lora 71 61 91 51, pissa 73 59 92 -, abm_lora 70 66 88.5 56) */
    const char *best[][2] = {{"cifar", "pissa"}, {"dtd", "abm_lora"}, {"eurosat", "pissa"}, {"clevr_count", "abm_lora"},
                             {"Natural", "abm_lora"}, {"Structured", "abm_lora"}, {"Overall", "abm_lora"}};
    for (size_t b = 0; b < ARRAY_LEN(best); b++)
        for (int m = 0; m < N_M; m++) {
            const CsvRow *r = find(rows, n, METHODS[m], best[b][0], "ours");
            if (!r) continue;
            int want = !strcmp(METHODS[m], best[b][1]);
            CHECK_MSG(atoi(r->f[7]) == want, "%s / %s: best %s, expected %d", METHODS[m], best[b][0], r->f[7], want);
        }
    free(rows);

    /* the Markdown: bold best, a dash for the missing cell, n marked where seeds differ, run ids listed */
    snprintf(p, sizeof p, "%s/vtab.md", out);
    char *md = slurp(p, NULL);
    CHECK(md != NULL);
    if (md) {
        double mean, std;
        int cnt;
        expected(1, 0, &mean, &std, &cnt);
        char cell[128];
        snprintf(cell, sizeof cell, "| **%.2f ± %.2f** |", mean, std);
        CHECK_MSG(strstr(md, cell), "no '%s' in\n%s", cell, md);
        CHECK(strstr(md, "| – |"));
        expected(2, 2, &mean, &std, &cnt);
        snprintf(cell, sizeof cell, "%.2f ± %.2f (n=2)", mean, std);
        CHECK_MSG(strstr(md, cell), "no '%s'", cell);
        CHECK(strstr(md, "3 seeds per cell unless marked"));
        CHECK(strstr(md, "abm\\_lora"));
        CHECK(strstr(md, "`run_0_0_2` (2)"));
        CHECK(!strstr(md, "failed_run"));
        CHECK_MSG(strstr(md, "ignored: 1 failed, 1 running"), "%s", md);
        CHECK(strstr(md, "| Method | cifar | dtd | eurosat | clevr\\_count | Natural mean | Structured mean | Overall mean |"));
        fputs(md, stderr);
    }
    free(md);
}

/* ---- report_table_latex ---------------------------------------------------------------------------------------- */
static void test_latex(void) {
    const char *dbp = build_db();
    Error err = {{0}};
    ReportTable t = vtab_spec();
    const char *labels[N_T] = {"CIFAR-100", "DTD", "EuroSAT", "Clevr_Count (50%)"};
    t.col_labels = labels;
    const char *out = tpath("out");
    CHECK_MSG(report_table_path(dbp, &t, out, &err) == 0, "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/vtab.tex", out);
    char *tex = slurp(p, NULL);
    CHECK(tex != NULL);
    if (!tex) return;
    fputs(tex, stderr);
    /* structure */
    char *begin = strstr(tex, "\\begin{tabular}{lrrrrrrr}"), *top = strstr(tex, "\\toprule"),
         *mid = strstr(tex, "\\midrule"), *bottom = strstr(tex, "\\bottomrule"), *end = strstr(tex, "\\end{tabular}");
    CHECK(begin && top && mid && bottom && end && begin < top && top < mid && mid < bottom && bottom < end);
    CHECK(strstr(tex, "\\multicolumn{3}{c}{Natural}") && strstr(tex, "\\cmidrule(lr){2-4}\\cmidrule(lr){5-5}"));
    CHECK(strstr(tex, "Clevr\\_Count (50\\%)"));
    CHECK(strstr(tex, "abm\\_lora"));
    CHECK(strstr(tex, "\\textbf{"));
    CHECK(strstr(tex, "$\\pm$"));
    CHECK(strstr(tex, " & -- & ")); /* pissa x clevr_count */
    CHECK(strstr(tex, "$^{(n=2)}$"));
    /* braces balance (escaped ones aside), no unescaped _ % & outside comments, every row has all cells */
    int depth = 0, min_depth = 0, rows = 0;
    for (char *line = tex; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (line[0] != '%') {
            int amps = 0;
            for (size_t i = 0; i < len; i++) {
                char c = line[i], prev = i ? line[i - 1] : ' ';
                if (prev == '\\') continue;
                if (c == '{') depth++;
                if (c == '}') depth--;
                if (depth < min_depth) min_depth = depth;
                CHECK_MSG(c != '_' && c != '%', "unescaped '%c' in: %.*s", c, (int)len, line);
                if (c == '&') amps++;
            }
            if (len >= 2 && !strncmp(line + len - 2, "\\\\", 2) && !strstr(line, "multicolumn")) {
                CHECK_MSG(amps == N_T + 3, "%d & in: %.*s", amps, (int)len, line);
                rows++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    CHECK_MSG(depth == 0 && min_depth == 0, "brace depth %d (min %d)", depth, min_depth);
    CHECK_MSG(rows == 1 + N_M, "%d rows", rows);
    free(tex);
}

/* ---- report_table_paper: published numbers beside ours ---------------------------------------------------------- */
static void test_paper(void) {
    const char *dbp = build_db();
    const char *csv = tpath("fake_table9.csv");
    FILE *f = fopen(csv, "w");
    ASSERT(f);
    fputs("# Fake paper; Table 9 (ViT on 4 tasks); metric: accuracy (%)\n"
          "# a second comment line\n"
          "Method,Param_M,Cifar,Cifar_std,DTD,EuroSAT,Clevr-Count,Structured_Mean,Overall_Mean\n"
          "LoRA,-,73.9,0.5,66.1,95.3,79.9,58.7,71.5\n"
          "\"PiSSA, v2\",-,73.8,,,95.3,78.4,57.3,70.9\n"
          "Other,-,1,,2,3,4,5,6\n",
          f);
    fclose(f);
    ReportTable t = vtab_spec();
    const char *prow[] = {"LoRA", "PiSSA, v2"};
    /* a second table with fewer tasks: its Average is not our Overall (over 4 tasks) */
    const char *csv2 = tpath("fewer_tasks.csv");
    f = fopen(csv2, "w");
    ASSERT(f);
    fputs("Method,Cifar,EuroSAT,Average\nLoRA,80,90,85\n", f);
    fclose(f);
    ReportPaper papers[2] = {{.csv = csv, .rows = prow, .n_rows = 2}, {.csv = csv2, .tag = "other paper"}};
    t.papers = papers;
    t.n_papers = 2;
    Error err = {{0}};
    const char *out = tpath("out");
    CHECK_MSG(report_table_path(dbp, &t, out, &err) == 0, "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/vtab.csv", out);
    CsvRow *rows = NULL;
    int n = read_csv(p, &rows);
    CHECK_MSG(n == 1 + (N_M + 3) * (N_T + 3), "%d lines", n);
    const CsvRow *r = find(rows, n, "LoRA", "Overall", "other paper");
    CHECK(r && r->f[4][0] == '\0');
    r = find(rows, n, "LoRA", "eurosat", "other paper");
    CHECK(r && strtod(r->f[4], NULL) == 90);
    r = find(rows, n, "LoRA", "cifar", "paper");
    CHECK(r && strtod(r->f[4], NULL) == 73.9 && strtod(r->f[5], NULL) == 0.5 && !strcmp(r->f[7], "0"));
    r = find(rows, n, "LoRA", "clevr_count", "paper");
    CHECK(r && strtod(r->f[4], NULL) == 79.9);
    r = find(rows, n, "LoRA", "Structured", "paper");
    CHECK(r && strtod(r->f[4], NULL) == 58.7);
    r = find(rows, n, "LoRA", "Natural", "paper"); /* not printed by the paper: not computed either */
    CHECK(r && r->f[4][0] == '\0');
    r = find(rows, n, "LoRA", "Overall", "paper");
    CHECK(r && strtod(r->f[4], NULL) == 71.5);
    free(rows);
    snprintf(p, sizeof p, "%s/vtab.md", out);
    char *md = slurp(p, NULL);
    CHECK(md && strstr(md, "| LoRA (paper) | 73.9 ± 0.5 | 66.1 | 95.3 | 79.9 | – | 58.7 | 71.5 |"));
    CHECK(md && strstr(md, "| PiSSA, v2 (paper) | 73.8 | – | 95.3 |"));
    CHECK(md && strstr(md, "Fake paper; Table 9") && !strstr(md, "Other (paper)"));
    CHECK(md && strstr(md, "| LoRA (other paper) | 80 | – | 90 | – | – | – | – |"));
    CHECK(md && strstr(md, "fewer_tasks.csv's Average is left out"));
    free(md);

    /* a row the CSV does not have names the ones it has; a col_map to a missing column is an error */
    const char *bad_row[] = {"LoRA+"};
    papers[0].rows = bad_row;
    papers[0].n_rows = 1;
    CHECK(report_table_path(dbp, &t, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no row labelled 'LoRA+'") && strstr(err.msg, "'PiSSA, v2'"), "%s", err.msg);
    papers[0].n_rows = 0;
    const char *map[] = {"dtd", "Describable"};
    papers[0].col_map = map;
    papers[0].n_col_map = 1;
    CHECK(report_table_path(dbp, &t, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "Describable"), "%s", err.msg);
    fprintf(stderr, "paper errors ok: %s\n", err.msg);
}

/* ---- report_table_errors: what a spec or a database can get wrong -------------------------------------------- */
static void test_errors(void) {
    const char *dbp = build_db();
    Error err = {{0}};
    const char *out = tpath("out");
    ReportTable t = vtab_spec();
    t.experiment = "vtab_typo";
    CHECK(report_table_path(dbp, &t, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no experiment named 'vtab_typo'") && strstr(err.msg, "'vtab_mini', 'other'"), "%s",
              err.msg);
    /* rows keyed on method only: three tasks' runs share seeds in one cell -> refused, not averaged */
    t = vtab_spec();
    t.col_key = NULL;
    t.col_order = NULL;
    t.n_col_order = 0;
    t.n_groups = 0;
    t.overall_mean = 0;
    CHECK(report_table_path(dbp, &t, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "same seed") || strstr(err.msg, "with seed"), "%s", err.msg);
    fprintf(stderr, "dup seed: %s\n", err.msg);
    /* ... and a where filter makes it a valid one-column table */
    const char *where[] = {"dataset.name=cifar"};
    t.where = where;
    t.n_where = 1;
    CHECK_MSG(report_table_path(dbp, &t, out, &err) == 0, "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/vtab.csv", out);
    CsvRow *rows = NULL;
    int n = read_csv(p, &rows);
    CHECK(n == 1 + N_M);
    double mean, std;
    int cnt;
    expected(0, 0, &mean, &std, &cnt);
    const CsvRow *r = find(rows, n, "lora", "test_acc", "ours");
    CHECK(r && fabs(strtod(r->f[4], NULL) - mean) < 1e-9);
    free(rows);
    /* groups without col_order, bad decimals, a where without '=' */
    t = vtab_spec();
    t.col_order = NULL;
    t.n_col_order = 0;
    CHECK(report_table_path(dbp, &t, out, &err) == -1 && strstr(err.msg, "col_order"));
    t = vtab_spec();
    t.decimals = 20;
    CHECK(report_table_path(dbp, &t, out, &err) == -1 && strstr(err.msg, "decimals"));
    t = vtab_spec();
    const char *bad_where[] = {"dataset.name"};
    t.where = bad_where;
    t.n_where = 1;
    CHECK(report_table_path(dbp, &t, out, &err) == -1 && strstr(err.msg, "key=value"));
    /* a database that is not there */
    t = vtab_spec();
    CHECK(report_table_path(tpath("nope.db"), &t, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "nope.db"), "%s", err.msg);
    /* an output directory that cannot be made */
    FILE *f = fopen(tpath("afile"), "w");
    fclose(f);
    CHECK(report_table_path(dbp, &t, tpath("afile/sub"), &err) == -1);
    CHECK_MSG(strstr(err.msg, "not a directory"), "%s", err.msg);
    /* rows in an explicit order, one without runs */
    t = vtab_spec();
    const char *order[] = {"abm_lora", "dora", "lora"};
    const char *rl[] = {"ABM-LoRA", "DoRA", "LoRA"};
    t.row_order = order;
    t.row_labels = rl;
    t.n_row_order = 3;
    CHECK_MSG(report_table_path(dbp, &t, out, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/vtab.md", out);
    char *md = slurp(p, NULL);
    char *a = md ? strstr(md, "| ABM-LoRA |") : NULL, *d = md ? strstr(md, "| DoRA | – | – |") : NULL,
         *l = md ? strstr(md, "| LoRA |") : NULL;
    CHECK(a && d && l && a < d && d < l && !strstr(md, "| pissa |"));
    CHECK(md && strstr(md, "done outside the listed rows"));
    free(md);
    /* a row of two keys: values joined by ", " */
    t = vtab_spec();
    t.row_key = "method.init, train.lr";
    const char *order2[] = {"pissa, 1e-3"};
    t.row_order = order2;
    t.n_row_order = 1;
    CHECK_MSG(report_table_path(dbp, &t, out, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/vtab.csv", out);
    rows = NULL;
    n = read_csv(p, &rows);
    CHECK(n == 1 + (N_T + 3) && !strcmp(rows[1].f[0], "\"pissa") && !strcmp(rows[1].f[1], " 1e-3\""));
    free(rows);
    t.row_key = "method.init,,x";
    CHECK(report_table_path(dbp, &t, out, &err) == -1 && strstr(err.msg, "empty key name"));
}

/* ---- figures ----------------------------------------------------------------------------------------------------- */
/* Blocks of a .dat file (split by two blank lines) and their data rows. */
static int dat_blocks(const char *text, int *rows_per_block, int cap) {
    int blocks = 0, blank = 0, in_block = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len == 0) {
            blank++;
        } else if (line[0] != '#') {
            if (!in_block || blank >= 2) {
                if (blocks < cap) rows_per_block[blocks] = 0;
                blocks++;
                in_block = 1;
            }
            if (blocks <= cap) rows_per_block[blocks - 1]++;
            blank = 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return blocks;
}

/* The value columns at `step` in block b. */
static int dat_at(const char *text, int b, long step, double *mean, double *std, int *n) {
    int block = -1, blank = 2;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len == 0) blank++;
        else if (line[0] != '#') {
            if (blank >= 2) block++;
            blank = 0;
            long s;
            if (block == b && sscanf(line, "%ld %lf %lf %d", &s, mean, std, n) == 4 && s == step) return 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

/* gnuplot on PATH? (report_figure_png SKIPs without it; report_no_gnuplot covers that case) */
static int have_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char f[1024];
        snprintf(f, sizeof f, "%.*s/gnuplot", (int)l, p);
        if (access(f, X_OK) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void test_figure(void) {
    const char *dbp = build_db();
    Error err = {{0}};
    Db *db = NULL;
    ASSERTF(db_open(&db, dbp, &err) == 0, "%s", err.msg);
    const char *out = tpath("fig");
    FigureOptions o = {.name = "loss", .title = "training loss (test)", .ylabel = "loss", .log_y = 1, .svg = 1,
                       .pdf = 1};
    CHECK_MSG(figure_series(db, "vtab_mini", "train/loss", "method.init", &o, out, &err) == 0, "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/loss.png", out);
    size_t len = 0;
    char *png = slurp(p, &len);
    CHECK_MSG(png && len > 2048 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "%s: %zu bytes", p, len);
    free(png);
    snprintf(p, sizeof p, "%s/loss.svg", out);
    char *svg = slurp(p, &len);
    CHECK(svg && strstr(svg, "<svg") && len > 2048);
    free(svg);
    snprintf(p, sizeof p, "%s/loss.pdf", out); /* when this gnuplot has pdfcairo (Debian's gnuplot-nox does) */
    char *pdf = slurp(p, &len);
    CHECK_MSG(!pdf || (len > 1024 && !memcmp(pdf, "%PDF", 4)), "%s: %zu bytes", p, len);
    if (!pdf) fprintf(stderr, "no %s: this gnuplot has no pdfcairo\n", p);
    free(pdf);
    snprintf(p, sizeof p, "%s/loss.gp", out);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/loss.dat", out);
    char *dat = slurp(p, NULL);
    CHECK(dat != NULL);
    if (dat) {
        int rows[8] = {0};
        int blocks = dat_blocks(dat, rows, 8);
        CHECK_MSG(blocks == N_M, "%d blocks", blocks);
        for (int b = 0; b < blocks && b < 8; b++) CHECK_MSG(rows[b] == 200, "block %d: %d rows", b, rows[b]);
        CHECK(strstr(dat, "# curve 0: lora (n=3 runs): run_0_0_0 run_0_0_1 run_0_0_2\n"));
        CHECK(!strstr(dat, "failed_run"));
        for (int m = 0; m < N_M; m++) {
            double mean, std, want = 0, ss = 0;
            int n = 0;
            CHECK(dat_at(dat, m, 120, &mean, &std, &n) == 0);
            for (int s = 0; s < N_S; s++) want += loss_at(m, s, 120) / N_S;
            for (int s = 0; s < N_S; s++) ss += (loss_at(m, s, 120) - want) * (loss_at(m, s, 120) - want);
            CHECK_NEAR(mean, want, 1e-8);
            CHECK_NEAR(std, sqrt(ss / 2), 1e-8);
            CHECK(n == 3);
        }
    }
    free(dat);

    /* one curve per run, a row series' column, group order, a where filter */
    const char *order[] = {"abm_lora", "lora"};
    const char *where[] = {"dataset.name=cifar"};
    FigureOptions o2 = {.column = "blk1", .group_order = order, .n_group_order = 2, .where = where, .n_where = 1};
    CHECK_MSG(figure_series(db, "vtab_mini", "layers/info_loss", "method.init", &o2, out, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/layers_info_loss_blk1.dat", out);
    dat = slurp(p, NULL);
    if (dat) {
        int rows[8] = {0};
        CHECK(dat_blocks(dat, rows, 8) == 2 && rows[0] == 20 && rows[1] == 20);
        double mean, std;
        int n;
        CHECK(dat_at(dat, 0, 50, &mean, &std, &n) == 0 && fabs(mean - (1.0 + 2 + 1.0)) < 1e-9 && n == 3);
        CHECK(strstr(dat, "# curve 0: abm_lora"));
    }
    free(dat);
    FigureOptions o3 = {.name = "per_run", .where = where, .n_where = 1};
    CHECK_MSG(figure_series(db, "vtab_mini", "train/loss", NULL, &o3, out, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/per_run.dat", out);
    dat = slurp(p, NULL);
    int rows[16];
    CHECK(dat && dat_blocks(dat, rows, 16) == N_M * N_S);
    free(dat);
    /* heatmap: x = the columns, one row per group, the value = the group's mean of its runs' last rows (step 190:
     * blk0 = 0.1 m + 0.19, blk1 = 1 + m + seed, mean over seeds 0..2 = 2 + m) */
    FigureOptions oh = {.name = "heat", .ylabel = "info loss", .heatmap = 1, .where = where, .n_where = 1};
    CHECK_MSG(figure_series(db, "vtab_mini", "layers/info_loss", "method.init", &oh, out, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/heat.dat", out);
    dat = slurp(p, NULL);
    CHECK(dat && dat_blocks(dat, rows, 16) == N_M && rows[0] == 2 && rows[2] == 2);
    for (int m = 0; dat && m < N_M; m++) {
        double mean, std;
        int n;
        CHECK(dat_at(dat, m, 0, &mean, &std, &n) == 0 && fabs(mean - (0.1 * m + 0.19)) < 1e-9 && n == 3);
        CHECK(dat_at(dat, m, 1, &mean, &std, &n) == 0 && fabs(mean - (2.0 + m)) < 1e-9 && n == 3);
    }
    free(dat);
    snprintf(p, sizeof p, "%s/heat.gp", out);
    char *gp = slurp(p, NULL);
    CHECK_MSG(gp && strstr(gp, "with boxxyerror fc palette") && strstr(gp, "set cblabel 'info loss'") &&
                  strstr(gp, "'blk0' 0, 'blk1' 1") && strstr(gp, "'lora (n=3)' 0") && strstr(gp, "with labels"),
              "%s", gp ? gp : "(no heat.gp)");
    free(gp);
    snprintf(p, sizeof p, "%s/heat.png", out);
    len = 0;
    png = slurp(p, &len);
    CHECK_MSG(png && len > 2048 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "%s: %zu bytes", p, len);
    free(png);
    oh.profile = 1; /* one way to draw a row series */
    CHECK(figure_series(db, "vtab_mini", "layers/info_loss", "method.init", &oh, out, &err) == -1 &&
          strstr(err.msg, "exclusive"));
    /* a missing column and a series nobody recorded are clear errors */
    FigureOptions o4 = {.column = "blk7"};
    CHECK(figure_series(db, "vtab_mini", "layers/info_loss", "method.init", &o4, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no column 'blk7'") && strstr(err.msg, "blk0, blk1"), "%s", err.msg);
    CHECK(figure_series(db, "vtab_mini", "train/nothing", "method.init", NULL, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no run to draw") && strstr(err.msg, "train/nothing"), "%s", err.msg);
    /* no finished run matches at all (a partial grid): 1, not an error, so a report draws the other figures */
    const char *const none[] = {"method.init=not_run_yet"};
    FigureOptions o5 = {.where = none, .n_where = 1};
    CHECK(figure_series(db, "vtab_mini", "train/loss", "method.init", &o5, out, &err) == 1);
    CHECK_MSG(strstr(err.msg, "0 done runs"), "%s", err.msg);
    fprintf(stderr, "no series: %s\n", err.msg);
    db_close(db);
}

/* ---- report_no_gnuplot ------------------------------------------------------------------------------------------ */
static void test_nogp(void) {
    const char *dbp = build_db();
    Error err = {{0}};
    const char *empty = tpath("emptybin");
    mkdir(empty, 0755);
    const char *old = getenv("PATH");
    char *saved = old ? xstrdup(old) : NULL;
    setenv("PATH", empty, 1);
    const char *out = tpath("fig");
    CHECK(figure_series_path(dbp, "vtab_mini", "train/loss", "method.init", NULL, out, &err) == -1);
    if (saved) setenv("PATH", saved, 1);
    free(saved);
    fprintf(stderr, "no gnuplot: %s\n", err.msg);
    CHECK_MSG(strstr(err.msg, "apt-get install gnuplot-nox") && strstr(err.msg, "not found on PATH") &&
                  strstr(err.msg, "train_loss.dat"),
              "%s", err.msg);
    char p[1024];
    snprintf(p, sizeof p, "%s/train_loss.dat", out);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/train_loss.gp", out);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/train_loss.png", out);
    CHECK(!exists(p));
    /* a named program that is not there */
    FigureOptions o = {.gnuplot = "/nonexistent/gnuplot"};
    CHECK(figure_series_path(dbp, "vtab_mini", "train/loss", "method.init", &o, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "/nonexistent/gnuplot") && strstr(err.msg, "gnuplot-nox"), "%s", err.msg);
    /* a gnuplot that fails: its stderr comes back */
    const char *fake = tpath("emptybin/gnuplot");
    FILE *f = fopen(fake, "w");
    fputs("#!/bin/sh\necho 'line 3: unknown terminal' >&2\nexit 1\n", f);
    fclose(f);
    chmod(fake, 0755);
    o.gnuplot = fake;
    CHECK(figure_series_path(dbp, "vtab_mini", "train/loss", "method.init", &o, out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "gnuplot failed (exit 1)") && strstr(err.msg, "unknown terminal"), "%s", err.msg);
}

/* Metric columns (CNTLoRA Table 2 layout): one column per results key, each with its own bold direction. */
static void test_metric_cols(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s", tpath("mc.db"));
    Error err = {{0}};
    Db *db = NULL;
    ASSERTF(db_open(&db, path, &err) == 0, "%s", err.msg);
    int64_t exp = 0;
    ASSERTF(db_experiment(db, "drift", NULL, &exp, &err) == 0, "%s", err.msg);
    static const char *const meth[2] = {"lora", "eva"};
    const double cosv[2][2] = {{0.50, 0.54}, {0.80, 0.70}}, normv[2][2] = {{4.0, 5.0}, {1.0, 2.0}};
    for (int m = 0; m < 2; m++)
        for (int sd = 0; sd < 2; sd++) {
            char id[32];
            snprintf(id, sizeof id, "mc_%d_%d", m, sd);
            begin(db, id, exp, m, sd, meth[m], "dreambooth");
            const char *k[2] = {"drift_cos_dW_q", "drift_norm_dW_q"};
            double v[2] = {cosv[m][sd], normv[m][sd]};
            ASSERTF(db_put_results(db, id, k, v, NULL, 2, &err) == 0, "%s", err.msg);
            ASSERTF(db_run_finish(db, id, "done", 1.0, 0, NULL, &err) == 0, "%s", err.msg);
        }
    db_close(db);
    static const char *const ms[2] = {"drift_cos_dW_q", "drift_norm_dW_q"}, *const labels[2] = {"CosSim_Query", "SpecNorm_Query"};
    static const int lower[2] = {0, 1};
    ReportTable t;
    memset(&t, 0, sizeof t);
    t.name = "drift";
    t.experiment = "drift";
    t.row_key = "method.init";
    t.metrics = ms;
    t.n_metrics = 2;
    t.lower_is_better = lower;
    t.col_labels = labels;
    t.decimals = 3;
    t.higher_is_better = 1;
    CHECK_MSG(report_table_path(path, &t, tmpdir, &err) == 0, "%s", err.msg);
    CsvRow *rows = NULL;
    int n = read_csv(tpath("drift.csv"), &rows);
    const CsvRow *lc = find(rows, n, "lora", "drift_cos_dW_q", "ours"), *ec = find(rows, n, "eva", "drift_cos_dW_q", "ours");
    const CsvRow *ln = find(rows, n, "lora", "drift_norm_dW_q", "ours"), *en = find(rows, n, "eva", "drift_norm_dW_q", "ours");
    CHECK(lc && ec && ln && en);
    if (lc && ec && ln && en) {
        CHECK(fabs(atof(lc->f[4]) - 0.52) < 1e-9 && fabs(atof(ec->f[4]) - 0.75) < 1e-9);
        CHECK(fabs(atof(ln->f[4]) - 4.5) < 1e-9 && fabs(atof(en->f[4]) - 1.5) < 1e-9);
        /* bold: the higher cosine (eva) and the lower spectral norm (eva), not lora in either */
        CHECK(atoi(ec->f[7]) == 1 && atoi(lc->f[7]) == 0 && atoi(en->f[7]) == 1 && atoi(ln->f[7]) == 0);
    }
    free(rows);
    size_t len;
    char *md = slurp(tpath("drift.md"), &len);
    CHECK_MSG(md && strstr(md, "CosSim\\_Query") && strstr(md, "SpecNorm\\_Query") && strstr(md, "**1.500") &&
              strstr(md, "lower is better for drift_norm_dW_q"), "%s", md ? md : "");
    free(md);
    /* metrics and columns together: refused */
    t.col_key = "dataset.name";
    CHECK(report_table_path(path, &t, tmpdir, &err) < 0 && strstr(err.msg, "exclude each other"));
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "values";
    make_tmpdir();
    if (!strcmp(which, "values")) test_values();
    else if (!strcmp(which, "latex")) test_latex();
    else if (!strcmp(which, "paper")) test_paper();
    else if (!strcmp(which, "errors")) test_errors();
    else if (!strcmp(which, "metric_cols")) test_metric_cols();
    else if (!strcmp(which, "figure")) {
        if (!have_gnuplot()) {
            fprintf(stderr, "SKIP: no gnuplot on PATH (apt-get install gnuplot-nox)\n");
            remove_tmpdir();
            return TEST_SKIP;
        }
        test_figure();
    }
    else if (!strcmp(which, "nogp")) test_nogp();
    else {
        fprintf(stderr, "unknown case '%s'\n", which);
        return 2;
    }
    int rc = test_finish(which);
    remove_tmpdir();
    return rc;
}
