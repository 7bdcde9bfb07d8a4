/* results/db_read.h: read-only queries over the results database's public schema (docs/record.md "Schema"),
 * for reports (results/report.h, results/figure.h). It knows no model or method: it reads runs, params and
 * results as strings and numbers.
 *
 * A DbReader is a second SQLite connection, opened read-only on the database's path (db_path(db)): it never
 * writes and never takes the write lock. It holds one read transaction from its first query to db_read_close,
 * so everything it returns comes from one snapshot even while runs keep writing (WAL readers do not wait for
 * the writer, and the writer does not wait for them).
 *
 * Errors: 0 on success, -1 with err naming the database path, what was being read and SQLite's message. */
#ifndef RESULTS_DB_READ_H
#define RESULTS_DB_READ_H

#include "core/common.h"

#include <stdint.h>

typedef struct DbReader DbReader;

/* Opens path read-only (it must exist and be a loralab results database of a schema this build knows). */
int db_read_open(DbReader **r, const char *path, Error *err);
void db_read_close(DbReader *r); /* NULL is fine */
const char *db_read_path(const DbReader *r);

/* Runs with the values of some params. Arrays have n entries; param is (n, n_keys) row-major. Strings are
 * owned by the list (db_run_list_free). */
typedef struct DbRunList {
    int n, n_keys;
    char **id;         /* run id (the resolved config's hash) */
    char **experiment; /* experiments.name, NULL when the run has none */
    char **status;     /* pending | running | interrupted | failed | done */
    int64_t *cell;     /* cell_index, -1 when NULL */
    int64_t *seed;     /* seed, INT64_MIN when NULL */
    char **h5_path;    /* runs.h5_path as stored, NULL when the run recorded none */
    char **param;      /* param[i * n_keys + k]: run i's value of keys[k], NULL when it has no such key */
} DbRunList;

/* Every run of the experiment named experiment (NULL: of all experiments) whose status is status (NULL: any),
 * ordered by experiment id, cell index, seed, then insertion order ("first seen"), with the values of keys[0..
 * n_keys). An experiment name the database does not have is an error that lists the ones it has. */
int db_read_runs(DbReader *r, const char *experiment, const char *status, const char *const *keys, int n_keys,
                 DbRunList *out, Error *err);
void db_run_list_free(DbRunList *l);
/* Keep only the runs whose id is one of ids[0..n_ids) (order kept); n_ids == 0 or ids NULL keeps all. */
void db_run_list_keep(DbRunList *l, const char *const *ids, int n_ids);

/* Run run_id's result key: the final value (step NULL) when the run recorded one, else the value at the largest
 * step. *found = 0 (and *value NaN) when the run has no such result; a stored NULL (NaN: SQLite has no NaN)
 * comes back as NaN. step (may be NULL) gets the step, -1 for a final value. */
int db_read_result(DbReader *r, const char *run_id, const char *key, double *value, int64_t *step, int *found,
                   Error *err);

#endif
