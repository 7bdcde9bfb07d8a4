/* results/figure.h: figures of recorded series through gnuplot (DESIGN.md "The record (results/)",
 * docs/report.md "Figures"). gnuplot is an external program: the project writes the data (<name>.dat) and the
 * script (<name>.gp), then runs `gnuplot <name>.gp` in out_dir to make <name>.png (and .svg / .pdf if asked).
 * results/ knows no model or method: a figure is one HDF5 series (results/h5rec.h) of a set of runs vs step.
 *
 * Contract:
 *   - Runs: those of the experiment (NULL: all) with status 'done' (FigureOptions.all_status: any status, so
 *     a live run is drawn as of its last flush) that match the where filters and recorded an HDF5 file
 *     (runs.h5_path; a relative path is tried as given, then relative to the database's directory).
 *   - Curves: one per value of the params key group_by (e.g. method.init; label "<value> (n=k)"), in
 *     first-seen run order or group_order; group_by NULL: one curve per run (label: run id, seed). A group of
 *     several runs (seeds) draws their mean at every step any of them recorded, and a band of +- one sample
 *     std where two or more did.
 *   - <name>.dat: one block per curve (gnuplot `index i`), separated by two blank lines, each preceded by
 *     comment lines naming the curve and its run ids; columns: step mean std n (std 0 when n = 1).
 *   - Terminals: pngcairo when gnuplot has it, else png (libgd); svg; pdfcairo (skipped with a message in the
 *     .gp output when missing). The script picks at run time from GPVAL_TERMINALS.
 *   - gnuplot missing (or FigureOptions.gnuplot not executable): the .dat and .gp are written and the error
 *     says so and how to install it (apt-get install gnuplot-nox). A gnuplot failure returns its stderr.
 * Errors: 0 on success, -1 with err naming the figure, the run / file and what was wrong. */
#ifndef RESULTS_FIGURE_H
#define RESULTS_FIGURE_H

#include "core/common.h"
#include "results/db.h"

typedef struct FigureOptions {
    const char *name;   /* file stem; NULL: the series with '/' -> '_' (and "_<column>" for a row series) */
    const char *title;  /* NULL: "<series> (<experiment>)" */
    const char *xlabel; /* NULL: "step" */
    const char *ylabel; /* NULL: the series name */
    /* A row series (one column per layer, e.g. layers/info_loss) is drawn through one of its columns: its name
     * or 0-based index. NULL: the series must be a scalar series. */
    const char *column;
    const char *const *group_order; /* draw exactly these groups, in this order (NULL: all, first seen) */
    int n_group_order;
    const char *const *where; /* "key=value" filters on params */
    int n_where;
    int log_x, log_y;  /* logarithmic axes (log_y: the band's lower edge is clipped at mean / 10) */
    int no_band;       /* 1: no std band */
    int smooth;        /* > 1: trailing moving average over this many points of each run before averaging */
    int svg, pdf;      /* also <name>.svg / <name>.pdf */
    int width, height; /* pixels; 0: 900 x 560 */
    int all_status;    /* 1: runs in any status, not only 'done' */
    const char *gnuplot; /* the program; NULL: "gnuplot" found on PATH */
    const char *const *run_ids; /* only these runs (the config's current grid); NULL: all of the experiment */
    int n_run_ids;
    /* Row series only (column must be NULL):
     * all_columns: one curve per column (per group and column with group_by: "<group> / <column>"), e.g. the
     *   ABM loss of every layer vs step, or the singular values of every layer (final/spectrum: step = index);
     * profile: x = the columns (named on the x axis), y = each run's LAST recorded row, one curve per group,
     *   e.g. the per-layer ranks of EVA / VAS (a rank map) or the final information loss per layer;
     * heatmap: the same numbers as profile as a heatmap: x = the columns, one row per group (or run), each cell
     *   coloured by the value and labelled with it (a VAS / EVA rank map: layers x methods, colour = rank);
     *   log_y puts the colour scale on a log axis; ylabel names the colour bar. */
    int all_columns;
    int profile;
    int heatmap;
} FigureOptions;

/* Writes out_dir/<name>.dat, <name>.gp and runs gnuplot to make <name>.png (.svg, .pdf). o may be NULL (all
 * defaults). out_dir is created if missing. Returns 0, -1 with err, or 1 with err saying so when no finished run
 * matches the experiment and the where filters (nothing to draw yet; nothing written). */
int figure_series(Db *db, const char *experiment, const char *series, const char *group_by, const FigureOptions *o,
                  const char *out_dir, Error *err);
/* The same from a database path (opened read-only). */
int figure_series_path(const char *db_path, const char *experiment, const char *series, const char *group_by,
                       const FigureOptions *o, const char *out_dir, Error *err);

#endif
