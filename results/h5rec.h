/* results/h5rec.h: the per-run HDF5 record: step series, per-layer rows, attributes, matrix snapshots.
 * It knows no model or method: it stores numbers under names. Layout and crash contract: docs/record.md.
 * Contract:
 *   - A series <name> ('/' in the name makes groups: "train/loss") is a group with the attribute
 *     kind = "scalar" | "row" and two chunked (1024 rows), extendable datasets: step (n) int64 and value,
 *     (n) f64 for a scalar series or (n, n_cols) f64 for a row series, whose group also holds the attribute
 *     columns (n_cols strings) when names were given. Steps of a series strictly increase: an append at a
 *     step <= the series' last step is an error (a resume calls h5rec_truncate_after first).
 *   - Appends are buffered; an append to a series already holding flush_every (default 50) unwritten rows
 *     first writes all buffers and flushes the file (H5Fflush), so series appended once per step are flushed
 *     together, at steps K, 2K, ... (K = flush_every). Every other call that changes the file flushes
 *     before it returns. HDF5 is only touched inside calls, so between calls the file on disk is complete: a
 *     run killed by SIGKILL loses at most flush_every appends per series (a power loss more, unless
 *     H5REC_FSYNC). Files use the 1.8 format (superblock v0, no SWMR "file in use" flags), so a killed
 *     run's file opens without h5clear.
 *   - A kill during a flush (a few ms every flush_every steps) can leave the file unreadable: h5rec_open
 *     then returns H5REC_BROKEN and h5rec_recover moves the file aside, so the run restarts from its
 *     checkpoint; or readable with the series of unequal length or not increasing: opening and reading
 *     keep the longest prefix where step and value agree and steps increase (h5rec_repaired counts the
 *     rows dropped).
 *   - Functions return 0 on success and -1 (h5rec_open: also H5REC_BROKEN) with err naming the file, the
 *     object and HDF5's own message. A writer holds HDF5's exclusive lock until h5rec_close; the readers
 *     (h5rec_read_*) open read-only without taking the lock, so a report can read a live run's last flush. */
#ifndef RESULTS_H5REC_H
#define RESULTS_H5REC_H

#include <stdint.h>

#include "core/common.h"

typedef struct H5Rec H5Rec;

enum {
    H5REC_CREATE = 0, /* create the file, truncating an existing one */
    H5REC_APPEND = 1, /* open an existing file and continue every series at its length (create if missing) */
    H5REC_FSYNC = 4,  /* OR-ed into mode: fsync after every flush (survives a power loss, costs ms per flush) */
};
#define H5REC_BROKEN (-2) /* h5rec_open: the file exists but HDF5 cannot read it (killed mid-flush) */
#define H5REC_FLUSH_EVERY_DEFAULT 50

/* Open the run file. Returns 0, -1 (cannot create/open: missing directory, permissions, locked by another
 * process, not an h5rec file), or H5REC_BROKEN (the file's bytes are unreadable as HDF5 or as a record). */
int h5rec_open(H5Rec **r, const char *path, int mode, Error *err);
/* 1 when another process holds path's HDF5 write lock (a live run); 0 otherwise (missing file included). */
int h5rec_in_use(const char *path);
/* Move a broken file to <path>.broken-<n> (smallest n not taken); moved_to (may be NULL) gets the new name. */
int h5rec_recover(const char *path, char *moved_to, size_t moved_to_cap, Error *err);

/* Buffer size in appends per series (>= 1); deflate level 0..9 (default 0: off, for speed) for series and
 * matrices created after the call. Both are settings of this handle, not stored in the file. */
void h5rec_set_flush_every(H5Rec *r, int flush_every);
void h5rec_set_deflate(H5Rec *r, int level);

/* Scalar series: one (step, value) per call. */
int h5rec_append(H5Rec *r, const char *series, int64_t step, double value, Error *err);
/* Row series: n_cols values per step (e.g. information loss of 24 layers). col_names (may be NULL) are stored
 * when the series is created; n_cols must match the series on later calls. */
int h5rec_append_row(H5Rec *r, const char *series, int64_t step, const double *values, int n_cols,
                     const char *const *col_names, Error *err);
/* Root attribute (UTF-8 variable-length string, no size limit), replaced if present. */
int h5rec_set_attr(H5Rec *r, const char *name, const char *value, Error *err);
/* Dataset <name> (rows, cols) f32, rows, cols >= 1: written in place when a dataset of that shape exists,
 * replaced otherwise (the old one's space is not reclaimed: the file grows). */
int h5rec_put_matrix(H5Rec *r, const char *name, const float *data, int rows, int cols, Error *err);
/* Write every buffer, then H5Fflush (and fsync with H5REC_FSYNC). */
int h5rec_flush(H5Rec *r, Error *err);
/* Drop every row with step >= step, on disk and in the buffers (resume from a checkpoint taken at step). */
int h5rec_truncate_after(H5Rec *r, int64_t step, Error *err);
/* Rows dropped by h5rec_open while repairing series left inconsistent by a kill (0 normally). */
int64_t h5rec_repaired(const H5Rec *r);
/* Flush and close; r is freed even when the flush fails (r may be NULL). */
int h5rec_close(H5Rec *r, Error *err);

/* Reading back (reports, tests, resume): what the file holds as of its last flush. Outputs are malloc'ed
 * (free()); name arrays are one allocation (the strings follow the pointers), freed with one free(). */
int h5rec_read_series(const char *path, const char *series, int64_t **steps, double **values, int64_t *n, Error *err);
/* values is (n, n_cols) row-major; col_names may be NULL (returns NULL when the series has none). */
int h5rec_read_rows(const char *path, const char *series, int64_t **steps, double **values, int64_t *n, int *n_cols,
                    char ***col_names, Error *err);
int h5rec_read_attr(const char *path, const char *name, char **value, Error *err);
int h5rec_read_matrix(const char *path, const char *name, float **data, int *rows, int *cols, Error *err);
/* Every series in the file, in name order. */
int h5rec_list_series(const char *path, char ***names, int *n, Error *err);

#endif
