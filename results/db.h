/* results/db.h: the SQLite results database, one per output directory (default runs/runs.db).
 * It stores numbers and strings; it knows no model or method (DESIGN.md "The record (results/)").
 *
 * Schema (version DB_SCHEMA_VERSION, kept in PRAGMA user_version; docs/record.md "The results database"):
 *   experiments(id, name UNIQUE, config_path, created)
 *   runs(id = config hash, experiment_id, cell_index, seed, status, device, versions, started, finished,
 *        wall_s, peak_rss_bytes, h5_path, error, job_id) status in pending|running|interrupted|failed|done;
 *        job_id (v3): the scheduler job the run was last submitted as (SLURM "1234_5"), NULL when run directly
 *   params(run_id, key, value TEXT, num REAL NULL)      the flattened resolved config; num when value is a number
 *   results(run_id, key, value REAL, step INTEGER NULL) scalar results; NaN is stored as NULL (SQLite has no NaN)
 *   artifacts(run_id, kind, path)
 *   layer_results(run_id, key, layer, value REAL, step INTEGER NULL)  per-layer results (v2: research metrics)
 *
 * Concurrency: WAL journal, a busy timeout (default DB_BUSY_TIMEOUT_MS) and foreign keys on. Every write
 * function below is ONE transaction (BEGIN IMMEDIATE ... COMMIT): it lands whole or not at all, so many
 * processes can write one database without losing rows. A Db belongs to one thread; after fork() a child
 * opens its own. On shared filesystems where SQLite's locking is unsafe, each run writes a shard
 * (DbOptions.shard: rollback journal, no shared memory) and db_merge() copies shards into the main database.
 *
 * Errors: every function returns 0 on success, -1 with err naming the db path, what was being done and
 * SQLite's message (e.g. "runs/runs.db: database is locked ..."). Strings passed in are copied. */
#ifndef RESULTS_DB_H
#define RESULTS_DB_H

#include "core/common.h"

#include <stdint.h>
#include <stdio.h>

#define DB_SCHEMA_VERSION 3
#define DB_BUSY_TIMEOUT_MS 30000

typedef struct Db Db;

typedef struct DbOptions {
    int busy_timeout_ms; /* how long a write waits for another writer's lock; 0 -> DB_BUSY_TIMEOUT_MS */
    int shard;           /* 1: a per-run shard on a shared filesystem: rollback journal instead of WAL */
} DbOptions;

/* Opens (creating if missing) the database at path and migrates its schema to DB_SCHEMA_VERSION. The parent
 * directory must exist (the caller creates it). A database whose schema is newer than this build is refused. */
int db_open(Db **db, const char *path, Error *err);
int db_open_opts(Db **db, const char *path, const DbOptions *opts, Error *err);
void db_close(Db *db); /* NULL is fine */
const char *db_path(const Db *db);
/* Changes the busy timeout of an open database (milliseconds, > 0). */
void db_set_busy_timeout(Db *db, int ms);

/* Get-or-create the experiment called name (config_path is recorded when it is created). */
int db_experiment(Db *db, const char *name, const char *config_path, int64_t *id, Error *err);

/* Upserts run run_id as 'running' (started = now; finished, wall_s, error cleared) and replaces its params
 * with param_kv = {key0, value0, key1, value1, ...} (2 * n_params strings; keys unique). experiment_id 0 means
 * none. Results and artifacts of an earlier attempt are kept (a resumed run continues its series). */
int db_run_begin(Db *db, const char *run_id, int64_t experiment_id, int cell, int seed, const char *device,
                 const char *versions, const char *const *param_kv, int n_params, Error *err);
/* Sets runs.device of a begun run (the runner decides cpu / cuda after the model is built). */
int db_run_set_device(Db *db, const char *run_id, const char *device, Error *err);
/* Copies run_id's status into status[cap] ("" if the run is unknown). */
int db_run_status(Db *db, const char *run_id, char *status, size_t cap, Error *err);
/* Sets status (one of the five), finished = now, wall_s, peak_rss_bytes and error (NULL: none).
 * An unknown run_id is an error. */
int db_run_finish(Db *db, const char *run_id, const char *status, double wall_s, size_t peak_rss,
                  const char *error_msg, Error *err);
/* Records that run_id was submitted to a scheduler as job_id (`runexp sweep --slurm`; a SLURM array task
 * "1234_5"; runs.job_id, schema version 3). A run the database does not know yet is added as 'pending' (its
 * params come with db_run_begin); a known run keeps its status and results and only gets the new job id. */
int db_run_submitted(Db *db, const char *run_id, int64_t experiment_id, int cell, int seed, const char *job_id,
                     Error *err);
/* A run's status, job id and error ("" each when the run, or the field, is not there; error cut to fit). */
typedef struct DbRunState {
    char status[16];
    char job_id[64];
    char error[256];
} DbRunState;
int db_run_state(Db *db, const char *run_id, DbRunState *out, Error *err);
/* Records the run's HDF5 file (runs.h5_path). */
int db_run_h5(Db *db, const char *run_id, const char *h5_path, Error *err);

/* Puts n results (keys[i], values[i], steps[i] or NULL steps: no step) in one transaction. A (key, step)
 * the run already has is replaced, so re-putting after a resume does not duplicate rows. */
int db_put_results(Db *db, const char *run_id, const char *const *keys, const double *values,
                   const int64_t *steps, int n, Error *err);
/* Puts one per-layer result row set: n (layers[i], values[i]) of key at step (< 0: no step, a final value), in
 * one transaction; the rows the run already has for (key, step) are replaced. NaN is stored as NULL. */
int db_put_layer_results(Db *db, const char *run_id, const char *key, const char *const *layers,
                         const double *values, int n, int64_t step, Error *err);
/* Records a file the run produced (kind: "h5", "adapter", "figure", ...); putting the same one twice is a no-op. */
int db_put_artifact(Db *db, const char *run_id, const char *kind, const char *path, Error *err);

/* Runs ONE read-only statement and prints the rows to f: an aligned text table with a "(N rows)" footer, or
 * CSV (RFC 4180 quoting, NULL as empty) when csv != 0. Writes, ATTACH/DETACH and transaction control are
 * refused (for `runexp query "SQL"`). */
int db_query_print(Db *db, const char *sql, int csv, FILE *f, Error *err);

/* Copies every row of the shard database at shard_path (same schema version) into db in one transaction.
 * Experiments are matched by name; a run already in db is replaced together with its params, results and
 * artifacts, so merging the same shard again changes nothing. */
int db_merge(Db *db, const char *shard_path, Error *err);

#endif
