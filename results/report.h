/* results/report.h: tables in the papers' layout from the results database (DESIGN.md "The record
 * (results/)", docs/report.md). results/ knows no model or method: a table is rows = the values of one params
 * key (e.g. method.init), columns = the values of another (e.g. dataset.name), cells = one scalar result.
 *
 * Contract:
 *   - Only runs with status 'done' count; runs of the experiment in any other status, and done runs without
 *     the metric, are counted in the table's notes, never in a cell.
 *   - A cell is mean +- std over the seeds of the runs with that (row, column): the sample std (n - 1), just
 *     the mean when n = 1; when cells have different numbers of seeds, the cells whose n differs from the most
 *     common one are marked "(n=k)". The metric of a run is its final value (results.step NULL) if recorded,
 *     else the value at its largest step; times scale. A NaN result (a diverged run) makes its cell "nan":
 *     runs are never dropped silently.
 *   - Two runs in one cell with the same seed differ in some other param: the table's keys do not separate
 *     them, and report_table refuses to average them (add a `where` filter or a key).
 *   - Group means (e.g. VTAB Natural / Specialized / Structured) are means of the group's task means; the
 *     overall mean is the mean of ALL task means (not of the group means). Both are "–" unless every task they
 *     cover has a value. They carry no std.
 *   - A missing cell prints "–" (LaTeX "--"). The best value per column (after rounding to `decimals`, so
 *     printed ties are all marked) is bold: Markdown **x**, LaTeX \textbf{x}. Published rows never count.
 *   - Every cell is traceable: the CSV (long format, one line per cell) lists its run ids and seeds; the
 *     Markdown ends with a row / column -> run ids list.
 *   - Files are written whole or not at all (temp file + rename); out_dir is created if missing.
 * Errors: 0 on success, -1 with err naming the table, the key or file and what was wrong. */
#ifndef RESULTS_REPORT_H
#define RESULTS_REPORT_H

#include "core/common.h"
#include "results/db.h"

/* Published numbers printed beside ours, as extra rows "<label> (<tag>)" below our rows. The CSV is in the
 * format of shared/papers/tables/ (its README): '#' comment lines (the first one is quoted in the notes as the
 * citation), a header, RFC 4180 fields; an empty cell is a number lost in extraction and prints "–". */
typedef struct ReportPaper {
    const char *csv;        /* path */
    const char *tag;        /* NULL: "paper" */
    const char *label_cols; /* comma-separated CSV columns whose values, joined by " ", label a row; NULL: "Method" */
    const char *const *rows; /* the rows to print, by label, in this order (an unknown label is an error) */
    int n_rows;              /* 0: every row of the CSV */
    /* {our column, paper column, ...} pairs (2 * n_col_map strings). "Our column" is a col_key value, a group
     * name or "Overall". Columns not mapped are matched by name, ignoring case, spaces, '-' and '_' (against
     * the column's value and its label); a group matches "<group>_Mean", the overall mean the first of
     * Overall_Mean, Overall, Average, Avg, All_Avg. A paper column "<col>_std" gives the cell's std. */
    const char *const *col_map;
    int n_col_map;
    double scale; /* 0 or 1: numbers printed as in the CSV; else multiplied and printed with `decimals` */
} ReportPaper;

typedef struct ReportTable {
    const char *name;       /* file stem, e.g. "vtab" (no '/') */
    const char *title;      /* first line of the notes and the LaTeX comment; NULL: name */
    const char *experiment; /* experiments.name to select runs (NULL: all) */
    const char *const *where; /* "key=value" filters on params: only runs matching all of them */
    int n_where;
    /* params key naming the row, e.g. "method.init"; several keys separated by ',' (a variant, e.g.
     * "method.abm.steps,method.abm.weighting") make the row value their values joined by ", " ("500, quadratic") */
    const char *row_key;
    const char *row_title;  /* header of the label column; NULL: row_key */
    /* Rows: the key's distinct values in first-seen run order (experiment, cell index, seed), or exactly the
     * values listed in row_order, in that order (listed rows without runs print "–"); row_labels (NULL, or
     * n_row_order strings) are their printed names. */
    const char *const *row_order;
    const char *const *row_labels;
    int n_row_order;
    const char *col_key;    /* as row_key, e.g. "dataset.name"; NULL: one column, the metric */
    const char *const *col_order; /* as row_order */
    const char *const *col_labels;
    int n_col_order;
    const char *metric;     /* results.key, e.g. "test_acc" */
    double scale;           /* e.g. 100 for percent; 0: 1 */
    int decimals;           /* digits after the point (0..12) */
    int higher_is_better;   /* 1: the largest value per column is bold; 0: the smallest (a loss) */
    int hide_std;           /* 1: cells show the mean only (the CSV keeps the std) */
    /* Groups: group_of_col[j] (n_col_order entries, so col_order is required) is column j's group in
     * 0..n_groups-1, or -1 for none; one mean column per group, after the task columns. */
    const char *const *group_names;
    const int *group_of_col;
    int n_groups;
    int overall_mean;       /* 1: an "Overall" column = mean over the task columns */
    const ReportPaper *papers;
    int n_papers;
    /* Metric columns (CNTLoRA Table 2: cosine and spectral drift per projection type side by side): with
     * col_key NULL, columns = these results keys (n_metrics, labels from col_labels) instead of one metric's;
     * `metric` may then be NULL. lower_is_better (NULL or n_metrics flags) sets the bold direction per
     * column (default: higher_is_better). */
    const char *const *metrics;
    int n_metrics;
    const int *lower_is_better;
    /* Only these runs (e.g. the current grid of the config); NULL: every run of the experiment. */
    const char *const *run_ids;
    int n_run_ids;
} ReportTable;

/* Writes out_dir/<name>.md (Markdown table, notes, run ids per cell), <name>.tex (booktabs tabular, for
 * \input inside a table environment; needs \usepackage{booktabs}) and <name>.csv (long format:
 * row,column,kind,source,mean,std,n,best,seeds,run_ids; kind = task | group | overall, source = ours or a
 * paper's tag; mean and std in full precision after scale). */
int report_table(Db *db, const ReportTable *t, const char *out_dir, Error *err);

/* The same from a database path (opened read-only; no Db handle needed). */
int report_table_path(const char *db_path, const ReportTable *t, const char *out_dir, Error *err);

/* File helpers shared by the report writers (results/figure.c). report_mkdirs creates dir and its missing
 * parents. report_open_tmp opens "<path>.tmp" for writing (tmp gets its name); report_commit_tmp closes it,
 * checking every write, and renames it to path, or removes it and fails: a file appears whole or not at all. */
int report_mkdirs(const char *dir, Error *err);
FILE *report_open_tmp(const char *path, char *tmp, size_t tmp_cap, Error *err);
int report_commit_tmp(FILE *f, const char *tmp, const char *path, Error *err);

#endif
