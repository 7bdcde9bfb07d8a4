/* results/db.c: the SQLite results database (results/db.h; docs/record.md "The results database"). */
#include "results/db.h"

#include "results/sqlite_check.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct Db {
    sqlite3 *h;
    char *path;
    int busy_ms;
};

/* ---- schema: migration i takes user_version i to i + 1; append, never edit a shipped one ---------------- */
static const char *const MIGRATIONS[] = {
    /* 1: the initial schema */
    "CREATE TABLE experiments("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  config_path TEXT,"
    "  created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
    "CREATE TABLE runs("
    "  id TEXT PRIMARY KEY," /* the resolved config's hash */
    "  experiment_id INTEGER REFERENCES experiments(id),"
    "  cell_index INTEGER,"
    "  seed INTEGER,"
    "  status TEXT NOT NULL CHECK(status IN ('pending','running','interrupted','failed','done')),"
    "  device TEXT,"
    "  versions TEXT,"
    "  started TEXT,"
    "  finished TEXT,"
    "  wall_s REAL,"
    "  peak_rss_bytes INTEGER,"
    "  h5_path TEXT,"
    "  error TEXT);"
    "CREATE INDEX runs_experiment ON runs(experiment_id, cell_index);"
    "CREATE INDEX runs_status ON runs(status);"
    "CREATE TABLE params("
    "  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value TEXT,"
    "  num REAL," /* value as a number when it is one: numeric comparisons and ranges */
    "  PRIMARY KEY(run_id, key)) WITHOUT ROWID;"
    "CREATE INDEX params_key_value ON params(key, value);"
    "CREATE INDEX params_key_num ON params(key, num);"
    "CREATE TABLE results("
    "  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value REAL,"
    "  step INTEGER);"
    "CREATE INDEX results_key ON results(key);"
    "CREATE INDEX results_run_key ON results(run_id, key, step);"
    "CREATE TABLE artifacts("
    "  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  UNIQUE(run_id, kind, path));",
    /* 2: per-layer results (research metrics: information loss, drift, spectra per adapted layer) */
    "CREATE TABLE layer_results("
    "  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  layer TEXT NOT NULL,"
    "  value REAL,"
    "  step INTEGER);"
    "CREATE INDEX layer_results_run_key ON layer_results(run_id, key, step);"
    "CREATE INDEX layer_results_key ON layer_results(key, layer);",
    /* 3: the scheduler job a run was last submitted as (`runexp sweep --slurm`: "<array job id>_<index>") */
    "ALTER TABLE runs ADD COLUMN job_id TEXT;",
};
_Static_assert(sizeof MIGRATIONS / sizeof MIGRATIONS[0] == DB_SCHEMA_VERSION,
               "one migration per schema version");

#define CHECK_RC(rc, what) sqliteCheck(db->h, db->path, (rc), err, (what))

/* ---- small helpers ---------------------------------------------------------------------------------------- */
static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
static int is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

static int exec(Db *db, const char *sql, const char *what, Error *err) {
    return CHECK_RC(sqlite3_exec(db->h, sql, NULL, NULL, NULL), what);
}
static int prep(Db *db, const char *sql, sqlite3_stmt **st, Error *err) {
    *st = NULL;
    return CHECK_RC(sqlite3_prepare_v2(db->h, sql, -1, st, NULL), "prepare");
}
static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}
/* Steps a statement that returns no rows and resets it for the next bind. */
static int step_done(Db *db, sqlite3_stmt *st, const char *what, Error *err) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_ROW) return err_set(err, "%s: %s: statement returned rows", db->path, what);
        CHECK_RC(rc, what);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return 0;
}

/* A write set starts here. BEGIN IMMEDIATE takes the write lock up front (no deadlock-prone read-to-write
 * upgrade); the busy handler waits up to busy_ms, and the loop covers the few SQLITE_BUSY cases that bypass
 * the handler (e.g. WAL recovery by another connection), within the same deadline. */
static int tx_begin(Db *db, Error *err) {
    double t0 = now_seconds();
    for (;;) {
        int rc = sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if (!is_busy(rc)) return CHECK_RC(rc, "begin transaction");
        if ((now_seconds() - t0) * 1000.0 >= db->busy_ms)
            return err_set(err,
                           "%s: database is locked: no write lock within the %d ms busy timeout (another "
                           "connection holds a write transaction) (sqlite code %d) [%s:%d]",
                           db->path, db->busy_ms, sqlite3_extended_errcode(db->h), __FILE__, __LINE__);
        sleep_ms(5);
    }
}
static void tx_rollback(Db *db) {
    if (!sqlite3_get_autocommit(db->h)) sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}
static int tx_commit(Db *db, Error *err) {
    int rc = sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    CHECK_RC(rc, "commit");
    tx_rollback(db);
    return -1;
}

/* Decimal numbers only ("0.1", "-3", "1e-4"); "inf", "nan", hex and anything with spaces stay text. */
static int parse_num(const char *s, double *out) {
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* ---- open, journal, migrations ---------------------------------------------------------------------------- */
/* sqlite3_open_v2 says only "unable to open database file"; say why when the directory is the cause. */
static int explain_open_failure(Db *db, int rc, Error *err) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", db->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    struct stat sb;
    if (stat(db->path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return err_set(err, "%s: cannot open database: the path is a directory", db->path);
    if (stat(dir, &sb) != 0)
        return err_set(err, "%s: cannot open database: parent directory '%s' is missing (%s); create it first",
                       db->path, dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return err_set(err, "%s: cannot open database: parent '%s' is not a directory", db->path, dir);
    return sqliteCheck(db->h, db->path, rc, err, "cannot open database");
}

/* Sets the journal mode, retrying while another connection holds the lock the switch needs. */
static int set_journal(Db *db, const char *mode, Error *err) {
    char sql[64], got[32] = "";
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", mode);
    double t0 = now_seconds();
    for (;;) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                snprintf(got, sizeof got, "%s", (const char *)sqlite3_column_text(st, 0));
                rc = SQLITE_OK;
            }
        }
        if (rc != SQLITE_OK) CHECK_RC(rc, "set journal mode"); /* fill err before finalize resets errmsg */
        sqlite3_finalize(st);
        if (rc == SQLITE_OK) break;
        if (!is_busy(rc) || (now_seconds() - t0) * 1000.0 >= db->busy_ms) return -1;
        sleep_ms(5);
    }
    if (strcasecmp(got, mode) != 0 && strcasecmp(mode, "wal") == 0)
        return err_set(err,
                       "%s: cannot use the WAL journal (journal_mode is '%s'); on a shared filesystem write "
                       "per-run shards instead (DbOptions.shard) and merge them",
                       db->path, got);
    return 0;
}

static int read_int(Db *db, const char *sql, int *out, Error *err) {
    sqlite3_stmt *st;
    if (prep(db, sql, &st, err)) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    int ret = CHECK_RC(rc, sql);
    sqlite3_finalize(st);
    return ret;
}

static int err_newer(Db *db, int v, Error *err) {
    return err_set(err,
                   "%s: schema version %d is newer than this build knows (%d); open it with a newer loralab",
                   db->path, v, DB_SCHEMA_VERSION);
}

static int migrate(Db *db, Error *err) {
    int v;
    if (read_int(db, "PRAGMA user_version", &v, err)) return -1;
    if (v > DB_SCHEMA_VERSION) return err_newer(db, v, err);
    if (v == DB_SCHEMA_VERSION) return 0;
    if (tx_begin(db, err)) return -1;
    /* Re-read under the write lock: another process may have migrated while we waited. */
    int tables = 0;
    if (read_int(db, "PRAGMA user_version", &v, err)) goto fail;
    if (v > DB_SCHEMA_VERSION) {
        err_newer(db, v, err);
        goto fail;
    }
    if (v == 0) {
        if (read_int(db, "SELECT count(*) FROM sqlite_master", &tables, err)) goto fail;
        if (tables > 0) {
            err_set(err, "%s: not a loralab results database (it has %d schema objects but no schema version)",
                    db->path, tables);
            goto fail;
        }
    }
    for (int i = v; i < DB_SCHEMA_VERSION; i++) {
        char what[64];
        snprintf(what, sizeof what, "schema migration %d -> %d", i, i + 1);
        if (exec(db, MIGRATIONS[i], what, err)) goto fail;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", DB_SCHEMA_VERSION);
    if (exec(db, sql, "set schema version", err)) goto fail;
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return -1;
}

int db_open_opts(Db **out, const char *path, const DbOptions *opts, Error *err) {
    ASSERT(out && path);
    *out = NULL;
    DbOptions o = opts ? *opts : (DbOptions){0};
    Db *db = xcalloc(1, sizeof *db);
    db->path = xstrdup(path);
    db->busy_ms = o.busy_timeout_ms > 0 ? o.busy_timeout_ms : DB_BUSY_TIMEOUT_MS;
    int rc = sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        explain_open_failure(db, rc, err);
        goto fail;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, db->busy_ms);
    if (set_journal(db, o.shard ? "DELETE" : "WAL", err)) goto fail;
    /* READWRITE falls back to read-only when the OS refuses writes; a results database must be writable. */
    if (sqlite3_db_readonly(db->h, "main") == 1) {
        err_set(err, "%s: the database is read-only (no write permission on the file or its directory)", path);
        goto fail;
    }
    /* synchronous=NORMAL: in WAL mode a power cut can lose the last commits but never corrupts the file. */
    if (exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL", "set pragmas", err)) goto fail;
    if (migrate(db, err)) goto fail;
    *out = db;
    return 0;
fail:
    db_close(db);
    return -1;
}

int db_open(Db **db, const char *path, Error *err) { return db_open_opts(db, path, NULL, err); }

void db_close(Db *db) {
    if (!db) return;
    sqlite3_close_v2(db->h);
    free(db->path);
    free(db);
}

const char *db_path(const Db *db) { return db->path; }

void db_set_busy_timeout(Db *db, int ms) {
    ASSERT(ms > 0);
    db->busy_ms = ms;
    sqlite3_busy_timeout(db->h, ms);
}

/* ---- writes ------------------------------------------------------------------------------------------------ */
int db_experiment(Db *db, const char *name, const char *config_path, int64_t *id, Error *err) {
    ASSERT(db && name && id);
    sqlite3_stmt *ins = NULL, *sel = NULL;
    if (tx_begin(db, err)) return -1;
    if (prep(db, "INSERT INTO experiments(name, config_path) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING", &ins,
             err) ||
        prep(db, "SELECT id FROM experiments WHERE name = ?1", &sel, err))
        goto fail;
    bind_text(ins, 1, name);
    bind_text(ins, 2, config_path);
    if (step_done(db, ins, "insert experiment", err)) goto fail;
    bind_text(sel, 1, name);
    int rc = sqlite3_step(sel);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE) err_set(err, "%s: experiment '%s' vanished after insert", db->path, name);
        else CHECK_RC(rc, "select experiment");
        goto fail;
    }
    *id = sqlite3_column_int64(sel, 0);
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    tx_rollback(db);
    return -1;
}

/* Inside a transaction: fails with a clear message when run_id has no row in runs. */
static int need_run(Db *db, const char *run_id, Error *err) {
    sqlite3_stmt *st;
    if (prep(db, "SELECT 1 FROM runs WHERE id = ?1", &st, err)) return -1;
    bind_text(st, 1, run_id);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_DONE) ret = err_set(err, "%s: unknown run '%s' (db_run_begin records it first)", db->path, run_id);
    else if (rc != SQLITE_ROW) ret = CHECK_RC(rc, "look up run");
    sqlite3_finalize(st);
    return ret;
}

int db_run_begin(Db *db, const char *run_id, int64_t experiment_id, int cell, int seed, const char *device,
                 const char *versions, const char *const *param_kv, int n_params, Error *err) {
    ASSERT(db && run_id && n_params >= 0 && (param_kv || n_params == 0));
    sqlite3_stmt *run = NULL, *del = NULL, *par = NULL;
    if (tx_begin(db, err)) return -1;
    if (prep(db,
             "INSERT INTO runs(id, experiment_id, cell_index, seed, status, device, versions, started)"
             " VALUES(?1, ?2, ?3, ?4, 'running', ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
             " ON CONFLICT(id) DO UPDATE SET experiment_id = excluded.experiment_id,"
             " cell_index = excluded.cell_index, seed = excluded.seed, status = 'running',"
             " device = excluded.device, versions = excluded.versions, started = excluded.started,"
             " finished = NULL, wall_s = NULL, peak_rss_bytes = NULL, error = NULL",
             &run, err) ||
        prep(db, "DELETE FROM params WHERE run_id = ?1", &del, err) ||
        prep(db, "INSERT INTO params(run_id, key, value, num) VALUES(?1, ?2, ?3, ?4)", &par, err))
        goto fail;
    bind_text(run, 1, run_id);
    if (experiment_id > 0) sqlite3_bind_int64(run, 2, experiment_id);
    else sqlite3_bind_null(run, 2);
    sqlite3_bind_int(run, 3, cell);
    sqlite3_bind_int(run, 4, seed);
    bind_text(run, 5, device);
    bind_text(run, 6, versions);
    if (step_done(db, run, "upsert run", err)) goto fail;
    bind_text(del, 1, run_id);
    if (step_done(db, del, "delete old params", err)) goto fail;
    for (int i = 0; i < n_params; i++) {
        const char *k = param_kv[2 * i], *v = param_kv[2 * i + 1];
        ASSERTF(k, "param %d of run %s has no key", i, run_id);
        double num;
        bind_text(par, 1, run_id);
        bind_text(par, 2, k);
        bind_text(par, 3, v);
        if (parse_num(v, &num)) sqlite3_bind_double(par, 4, num);
        else sqlite3_bind_null(par, 4);
        char what[256];
        snprintf(what, sizeof what, "insert param '%s' of run '%s'", k, run_id);
        if (step_done(db, par, what, err)) goto fail;
    }
    sqlite3_finalize(run);
    sqlite3_finalize(del);
    sqlite3_finalize(par);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(run);
    sqlite3_finalize(del);
    sqlite3_finalize(par);
    tx_rollback(db);
    return -1;
}

int db_run_status(Db *db, const char *run_id, char *status, size_t cap, Error *err) {
    ASSERT(db && run_id && status && cap > 0);
    status[0] = '\0';
    sqlite3_stmt *st;
    if (prep(db, "SELECT status FROM runs WHERE id = ?1", &st, err)) return -1;
    bind_text(st, 1, run_id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (strlen(s) >= cap) ret = err_set(err, "%s: status '%s' does not fit %zu bytes", db->path, s, cap);
        else snprintf(status, cap, "%s", s);
    } else if (rc != SQLITE_DONE) {
        ret = CHECK_RC(rc, "read run status");
    }
    sqlite3_finalize(st);
    return ret;
}

int db_run_submitted(Db *db, const char *run_id, int64_t experiment_id, int cell, int seed, const char *job_id,
                     Error *err) {
    ASSERT(db && run_id && job_id);
    sqlite3_stmt *st = NULL;
    if (tx_begin(db, err)) return -1;
    /* a known run keeps its status (an interrupted run must still resume from its checkpoint) */
    if (prep(db,
             "INSERT INTO runs(id, experiment_id, cell_index, seed, status, job_id) VALUES(?1, ?2, ?3, ?4, 'pending', ?5)"
             " ON CONFLICT(id) DO UPDATE SET job_id = excluded.job_id",
             &st, err))
        goto fail;
    bind_text(st, 1, run_id);
    if (experiment_id > 0) sqlite3_bind_int64(st, 2, experiment_id);
    else sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 3, cell);
    sqlite3_bind_int(st, 4, seed);
    bind_text(st, 5, job_id);
    if (step_done(db, st, "record submitted job", err)) goto fail;
    sqlite3_finalize(st);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(st);
    tx_rollback(db);
    return -1;
}

int db_run_state(Db *db, const char *run_id, DbRunState *out, Error *err) {
    ASSERT(db && run_id && out);
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    if (prep(db, "SELECT status, job_id, error FROM runs WHERE id = ?1", &st, err)) return -1;
    bind_text(st, 1, run_id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        const char *v[3];
        for (int i = 0; i < 3; i++) v[i] = (const char *)sqlite3_column_text(st, i);
        snprintf(out->status, sizeof out->status, "%s", v[0] ? v[0] : "");
        snprintf(out->job_id, sizeof out->job_id, "%s", v[1] ? v[1] : "");
        snprintf(out->error, sizeof out->error, "%s", v[2] ? v[2] : "");
    } else if (rc != SQLITE_DONE) {
        ret = CHECK_RC(rc, "read run state");
    }
    sqlite3_finalize(st);
    return ret;
}

/* One UPDATE of one run in its own transaction; an unknown run is an error. */
static int update_run(Db *db, sqlite3_stmt *st, const char *run_id, const char *what, Error *err) {
    if (step_done(db, st, what, err)) return -1;
    if (sqlite3_changes(db->h) == 0)
        return err_set(err, "%s: %s: unknown run '%s' (db_run_begin records it first)", db->path, what, run_id);
    return 0;
}

int db_run_finish(Db *db, const char *run_id, const char *status, double wall_s, size_t peak_rss,
                  const char *error_msg, Error *err) {
    ASSERT(db && run_id && status);
    sqlite3_stmt *st = NULL;
    if (tx_begin(db, err)) return -1;
    if (prep(db,
             "UPDATE runs SET status = ?2, finished = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), wall_s = ?3,"
             " peak_rss_bytes = ?4, error = ?5 WHERE id = ?1",
             &st, err))
        goto fail;
    bind_text(st, 1, run_id);
    bind_text(st, 2, status);
    sqlite3_bind_double(st, 3, wall_s);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)peak_rss);
    bind_text(st, 5, error_msg);
    if (update_run(db, st, run_id, "finish run", err)) goto fail;
    sqlite3_finalize(st);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(st);
    tx_rollback(db);
    return -1;
}

/* UPDATE runs SET <column> = value for one run, in its own transaction (what names the action in errors). */
static int set_run_text(Db *db, const char *sql, const char *run_id, const char *value, const char *what, Error *err) {
    sqlite3_stmt *st = NULL;
    if (tx_begin(db, err)) return -1;
    if (prep(db, sql, &st, err)) goto fail;
    bind_text(st, 1, run_id);
    bind_text(st, 2, value);
    if (update_run(db, st, run_id, what, err)) goto fail;
    sqlite3_finalize(st);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(st);
    tx_rollback(db);
    return -1;
}

int db_run_set_device(Db *db, const char *run_id, const char *device, Error *err) {
    ASSERT(db && run_id && device);
    return set_run_text(db, "UPDATE runs SET device = ?2 WHERE id = ?1", run_id, device, "set device", err);
}

int db_run_h5(Db *db, const char *run_id, const char *h5_path, Error *err) {
    ASSERT(db && run_id);
    return set_run_text(db, "UPDATE runs SET h5_path = ?2 WHERE id = ?1", run_id, h5_path, "set h5 path", err);
}

int db_put_results(Db *db, const char *run_id, const char *const *keys, const double *values,
                   const int64_t *steps, int n, Error *err) {
    ASSERT(db && run_id && n >= 0 && (n == 0 || (keys && values)));
    sqlite3_stmt *del = NULL, *ins = NULL;
    if (tx_begin(db, err)) return -1;
    if (need_run(db, run_id, err) ||
        prep(db, "DELETE FROM results WHERE run_id = ?1 AND key = ?2 AND step IS ?3", &del, err) ||
        prep(db, "INSERT INTO results(run_id, key, value, step) VALUES(?1, ?2, ?3, ?4)", &ins, err))
        goto fail;
    for (int i = 0; i < n; i++) {
        ASSERTF(keys[i], "result %d of run %s has no key", i, run_id);
        for (int s = 0; s < 2; s++) {
            sqlite3_stmt *st = s ? ins : del;
            bind_text(st, 1, run_id);
            bind_text(st, 2, keys[i]);
            int si = s ? 4 : 3;
            if (steps) sqlite3_bind_int64(st, si, steps[i]);
            else sqlite3_bind_null(st, si);
        }
        if (isnan(values[i])) sqlite3_bind_null(ins, 3);
        else sqlite3_bind_double(ins, 3, values[i]);
        char what[256];
        snprintf(what, sizeof what, "put result '%s' of run '%s'", keys[i], run_id);
        if (step_done(db, del, what, err) || step_done(db, ins, what, err)) goto fail;
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    tx_rollback(db);
    return -1;
}

int db_put_layer_results(Db *db, const char *run_id, const char *key, const char *const *layers,
                         const double *values, int n, int64_t step, Error *err) {
    ASSERT(db && run_id && key && n >= 0 && (n == 0 || (layers && values)));
    sqlite3_stmt *del = NULL, *ins = NULL;
    if (tx_begin(db, err)) return -1;
    if (need_run(db, run_id, err) ||
        prep(db, "DELETE FROM layer_results WHERE run_id = ?1 AND key = ?2 AND step IS ?3", &del, err) ||
        prep(db, "INSERT INTO layer_results(run_id, key, layer, value, step) VALUES(?1, ?2, ?3, ?4, ?5)", &ins, err))
        goto fail;
    bind_text(del, 1, run_id);
    bind_text(del, 2, key);
    if (step >= 0) sqlite3_bind_int64(del, 3, step);
    else sqlite3_bind_null(del, 3);
    char what[256];
    snprintf(what, sizeof what, "put layer results '%s' of run '%s'", key, run_id);
    if (step_done(db, del, what, err)) goto fail;
    for (int i = 0; i < n; i++) {
        ASSERTF(layers[i], "layer result %d of '%s' has no layer name", i, key);
        bind_text(ins, 1, run_id);
        bind_text(ins, 2, key);
        bind_text(ins, 3, layers[i]);
        if (isnan(values[i])) sqlite3_bind_null(ins, 4);
        else sqlite3_bind_double(ins, 4, values[i]);
        if (step >= 0) sqlite3_bind_int64(ins, 5, step);
        else sqlite3_bind_null(ins, 5);
        if (step_done(db, ins, what, err)) goto fail;
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    tx_rollback(db);
    return -1;
}

int db_put_artifact(Db *db, const char *run_id, const char *kind, const char *path, Error *err) {
    ASSERT(db && run_id && kind && path);
    sqlite3_stmt *st = NULL;
    if (tx_begin(db, err)) return -1;
    if (need_run(db, run_id, err) ||
        prep(db, "INSERT OR IGNORE INTO artifacts(run_id, kind, path) VALUES(?1, ?2, ?3)", &st, err))
        goto fail;
    bind_text(st, 1, run_id);
    bind_text(st, 2, kind);
    bind_text(st, 3, path);
    if (step_done(db, st, "put artifact", err)) goto fail;
    sqlite3_finalize(st);
    return tx_commit(db, err);
fail:
    sqlite3_finalize(st);
    tx_rollback(db);
    return -1;
}

/* ---- read-only queries ------------------------------------------------------------------------------------- */
/* Pragmas that take an argument yet only read (table_info(runs), ...); any other pragma with an argument sets
 * something (query_only=0 would undo the guard below). */
static const char *const READ_PRAGMAS[] = {"table_info",       "table_xinfo",       "index_list",
                                           "index_info",       "index_xinfo",       "foreign_key_list",
                                           "foreign_key_check", "integrity_check", "quick_check"};

typedef struct {
    const char *refused; /* the first refused action, for the message */
} QueryGuard;

static int query_authorizer(void *ud, int action, const char *a, const char *b, const char *c, const char *d) {
    QueryGuard *g = ud;
    const char *why = NULL;
    switch (action) {
    case SQLITE_ATTACH: why = "ATTACH"; break;
    case SQLITE_DETACH: why = "DETACH"; break;
    case SQLITE_TRANSACTION: why = "transaction control"; break;
    case SQLITE_SAVEPOINT: why = "SAVEPOINT"; break;
    case SQLITE_PRAGMA:
        if (b) {
            why = "a PRAGMA that sets a value";
            for (size_t i = 0; i < ARRAY_LEN(READ_PRAGMAS); i++)
                if (a && strcasecmp(a, READ_PRAGMAS[i]) == 0) why = NULL;
        }
        break;
    default: break;
    }
    if (!why) return SQLITE_OK;
    if (!g->refused) g->refused = why;
    return SQLITE_DENY;
}

/* Display width of UTF-8 text: code points, not bytes. */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void csv_field(FILE *f, const char *s) {
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

/* A cell as text: table mode shows REAL with 6 significant digits and NULL as "NULL"; CSV keeps SQLite's
 * round-trip text and writes NULL as an empty field. */
static char *cell_text(sqlite3_stmt *st, int c, int csv) {
    char buf[64];
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_NULL: return xstrdup(csv ? "" : "NULL");
    case SQLITE_FLOAT:
        if (!csv) {
            snprintf(buf, sizeof buf, "%.6g", sqlite3_column_double(st, c));
            return xstrdup(buf);
        }
        /* fallthrough */
    default: {
        const char *t = (const char *)sqlite3_column_text(st, c);
        return xstrdup(t ? t : "");
    }
    }
}


static void put_padded(FILE *f, const char *t, size_t width, int right, int last) {
    size_t pad = width - MIN(width, text_width(t));
    if (right)
        for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputs(t, f);
    if (!right && !last)
        for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputs(last ? "\n" : "  ", f);
}

/* Aligned table: numeric columns (INTEGER and REAL values, maybe NULLs) right-aligned, the rest left-aligned. */
static void print_table(FILE *f, char **names, char **cells, size_t nrow, int ncol, const int *numeric) {
    size_t *width = xcalloc((size_t)ncol + 1, sizeof *width);
    for (int c = 0; c < ncol; c++) {
        width[c] = text_width(names[c]);
        for (size_t r = 0; r < nrow; r++) width[c] = MAX(width[c], text_width(cells[r * (size_t)ncol + c]));
    }
    for (int c = 0; c < ncol; c++) put_padded(f, names[c], width[c], numeric[c], c == ncol - 1);
    for (int c = 0; c < ncol; c++) {
        for (size_t i = 0; i < width[c]; i++) fputc('-', f);
        fputs(c == ncol - 1 ? "\n" : "  ", f);
    }
    for (size_t r = 0; r < nrow; r++)
        for (int c = 0; c < ncol; c++) put_padded(f, cells[r * (size_t)ncol + c], width[c], numeric[c], c == ncol - 1);
    fprintf(f, "(%zu row%s)\n", nrow, nrow == 1 ? "" : "s");
    free(width);
}

/* Prepares sql under the read-only guard; *st is NULL for an empty statement (whitespace, comments). */
static int prepare_guarded(Db *db, const char *sql, sqlite3_stmt **st, const char **tail, Error *err) {
    QueryGuard guard = {0};
    sqlite3_set_authorizer(db->h, query_authorizer, &guard);
    int rc = sqlite3_prepare_v2(db->h, sql, -1, st, tail);
    sqlite3_set_authorizer(db->h, NULL, NULL);
    if (guard.refused) {
        sqlite3_finalize(*st);
        *st = NULL;
        return err_set(err, "%s: query refused: %s is not allowed (queries are read-only)", db->path, guard.refused);
    }
    return CHECK_RC(rc, "prepare query");
}

int db_query_print(Db *db, const char *sql, int csv, FILE *f, Error *err) {
    ASSERT(db && sql && f);
    sqlite3_stmt *st = NULL, *next = NULL;
    const char *tail = NULL;
    if (prepare_guarded(db, sql, &st, &tail, err)) return -1;
    if (!st) return err_set(err, "%s: query is empty", db->path);
    if (!sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        return err_set(err, "%s: query refused: the statement writes to the database (queries are read-only)",
                       db->path);
    }
    /* One statement: what follows the first must prepare to nothing (whitespace, ';', comments). */
    if (tail && *tail) {
        Error e2;
        if (prepare_guarded(db, tail, &next, NULL, &e2) || next) {
            sqlite3_finalize(next);
            sqlite3_finalize(st);
            return err_set(err, "%s: query refused: one statement at a time (more follows the first ';')", db->path);
        }
    }

    int ncol = sqlite3_column_count(st);
    char **names = xcalloc((size_t)ncol + 1, sizeof *names);
    int *numeric = xcalloc((size_t)ncol + 1, sizeof *numeric);
    for (int c = 0; c < ncol; c++) {
        const char *n = sqlite3_column_name(st, c);
        names[c] = xstrdup(n ? n : "?");
        numeric[c] = 1;
    }
    if (csv) {
        for (int c = 0; c < ncol; c++) {
            if (c) fputc(',', f);
            csv_field(f, names[c]);
        }
        fputc('\n', f);
    }
    /* query_only also guards execution (belt and braces under sqlite3_stmt_readonly and the authorizer). */
    sqlite3_exec(db->h, "PRAGMA query_only=1", NULL, NULL, NULL);
    char **cells = NULL;
    size_t nrow = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!csv && (nrow + 1) * (size_t)ncol > cap) {
            cap = MAX(2 * cap, 64 * (size_t)ncol);
            cells = xrealloc(cells, cap * sizeof *cells);
        }
        for (int c = 0; c < ncol; c++) {
            int type = sqlite3_column_type(st, c);
            if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) numeric[c] |= 2;
            else if (type != SQLITE_NULL) numeric[c] &= ~1;
            char *t = cell_text(st, c, csv);
            if (csv) {
                if (c) fputc(',', f);
                csv_field(f, t);
                free(t);
            } else {
                cells[nrow * (size_t)ncol + c] = t;
            }
        }
        if (csv) fputc('\n', f);
        nrow++;
    }
    int ret = rc == SQLITE_DONE ? 0 : CHECK_RC(rc, "run query");
    sqlite3_finalize(st);
    sqlite3_exec(db->h, "PRAGMA query_only=0", NULL, NULL, NULL);
    if (!csv && ret == 0) {
        for (int c = 0; c < ncol; c++) numeric[c] = numeric[c] == 3; /* only numbers (and NULLs), at least one */
        print_table(f, names, cells, nrow, ncol, numeric);
    }
    if (!csv)
        for (size_t i = 0; i < nrow * (size_t)ncol; i++) free(cells[i]);
    for (int c = 0; c < ncol; c++) free(names[c]);
    free(names);
    free(cells);
    free(numeric);
    return ret;
}

/* ---- shards -------------------------------------------------------------------------------------------------- */
/* Runs replace by id; experiments map by name; a merged run's params/results/artifacts replace the old ones. */
static const char MERGE_SQL[] =
    "INSERT INTO main.experiments(name, config_path, created)"
    "  SELECT name, config_path, created FROM shard.experiments WHERE 1 ON CONFLICT(name) DO NOTHING;"
    "DELETE FROM main.params WHERE run_id IN (SELECT id FROM shard.runs);"
    "DELETE FROM main.results WHERE run_id IN (SELECT id FROM shard.runs);"
    "DELETE FROM main.artifacts WHERE run_id IN (SELECT id FROM shard.runs);"
    "DELETE FROM main.layer_results WHERE run_id IN (SELECT id FROM shard.runs);"
    "INSERT INTO main.runs(id, experiment_id, cell_index, seed, status, device, versions, started, finished,"
    "                      wall_s, peak_rss_bytes, h5_path, error)"
    "  SELECT r.id,"
    "         (SELECT m.id FROM main.experiments m JOIN shard.experiments s ON s.name = m.name"
    "           WHERE s.id = r.experiment_id),"
    "         r.cell_index, r.seed, r.status, r.device, r.versions, r.started, r.finished, r.wall_s,"
    "         r.peak_rss_bytes, r.h5_path, r.error"
    "  FROM shard.runs r WHERE 1"
    "  ON CONFLICT(id) DO UPDATE SET experiment_id = excluded.experiment_id, cell_index = excluded.cell_index,"
    "    seed = excluded.seed, status = excluded.status, device = excluded.device, versions = excluded.versions,"
    "    started = excluded.started, finished = excluded.finished, wall_s = excluded.wall_s,"
    "    peak_rss_bytes = excluded.peak_rss_bytes, h5_path = excluded.h5_path, error = excluded.error;"
    "INSERT INTO main.params(run_id, key, value, num) SELECT run_id, key, value, num FROM shard.params;"
    "INSERT INTO main.results(run_id, key, value, step) SELECT run_id, key, value, step FROM shard.results;"
    "INSERT INTO main.artifacts(run_id, kind, path) SELECT run_id, kind, path FROM shard.artifacts;"
    "INSERT INTO main.layer_results(run_id, key, layer, value, step)"
    "  SELECT run_id, key, layer, value, step FROM shard.layer_results;";

int db_merge(Db *db, const char *shard_path, Error *err) {
    ASSERT(db && shard_path);
    struct stat sb;
    /* ATTACH would create a missing file; a shard that is not there is an error. */
    if (stat(shard_path, &sb) != 0)
        return err_set(err, "%s: merge: cannot read shard: %s", shard_path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return err_set(err, "%s: merge: the shard is not a regular file", shard_path);
    struct stat mb;
    if (stat(db->path, &mb) == 0 && mb.st_dev == sb.st_dev && mb.st_ino == sb.st_ino)
        return err_set(err, "%s: merge: the shard is this database itself", shard_path);
    if (!sqlite3_get_autocommit(db->h)) return err_set(err, "%s: merge inside an open transaction", db->path);

    sqlite3_stmt *st = NULL;
    if (prep(db, "ATTACH DATABASE ?1 AS shard", &st, err)) return -1;
    bind_text(st, 1, shard_path);
    int rc = sqlite3_step(st);
    int ret = sqliteCheck(db->h, shard_path, rc, err, "attach shard");
    sqlite3_finalize(st);
    if (ret) return -1;

    int v = -1;
    if (read_int(db, "PRAGMA shard.user_version", &v, err)) {
        /* read_int named the main db; the failure is the shard's */
        if (err) {
            Error e = *err;
            err_set(err, "%s: merge: cannot read shard (%s)", shard_path, e.msg);
        }
        goto detach;
    }
    if (v != DB_SCHEMA_VERSION) {
        err_set(err, "%s: merge: shard schema version %d, this database has %d%s", shard_path, v,
                DB_SCHEMA_VERSION, v < DB_SCHEMA_VERSION ? " (open the shard once with db_open to migrate it)" : "");
        goto detach;
    }
    if (tx_begin(db, err)) goto detach;
    if (exec(db, MERGE_SQL, "merge shard", err)) {
        if (err) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, " (shard %s)", shard_path);
        }
        tx_rollback(db);
        goto detach;
    }
    if (tx_commit(db, err)) goto detach;
    sqlite3_exec(db->h, "DETACH DATABASE shard", NULL, NULL, NULL);
    return 0;
detach:
    sqlite3_exec(db->h, "DETACH DATABASE shard", NULL, NULL, NULL);
    return -1;
}
