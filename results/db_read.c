/* results/db_read.c: read-only queries for reports over a second SQLite connection (results/db_read.h). */
#include "results/db_read.h"

#include "results/db.h"
#include "results/sqlite_check.h"

#include <math.h>
#include <sqlite3.h>
#include <string.h>

struct DbReader {
    sqlite3 *h;
    char *path;
    int in_txn; /* the snapshot's read transaction is open */
    sqlite3_stmt *param_st, *result_st;
};

#define CHECK_RC(rc, what) sqliteCheck(r->h, r->path, (rc), err, (what))

static char *dup_col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? xstrdup((const char *)t) : NULL;
}

/* Starts the snapshot on first use: BEGIN (deferred) takes the read snapshot at the first SELECT after it. */
static int snapshot(DbReader *r, Error *err) {
    if (r->in_txn) return 0;
    if (CHECK_RC(sqlite3_exec(r->h, "BEGIN", NULL, NULL, NULL), "begin read transaction")) return -1;
    r->in_txn = 1;
    return 0;
}

int db_read_open(DbReader **out, const char *path, Error *err) {
    ASSERT(out && path);
    *out = NULL;
    DbReader *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    int rc = sqlite3_open_v2(path, &r->h, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_CANTOPEN) err_set(err, "%s: cannot open the results database read-only (missing?)", path);
        else sqliteCheck(r->h, path, rc, err, "open read-only");
        goto fail;
    }
    sqlite3_busy_timeout(r->h, DB_BUSY_TIMEOUT_MS);
    sqlite3_stmt *st = NULL;
    if (CHECK_RC(sqlite3_prepare_v2(r->h, "PRAGMA user_version", -1, &st, NULL), "read schema version")) goto fail;
    rc = sqlite3_step(st);
    int version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    if (rc != SQLITE_ROW) CHECK_RC(rc, "read schema version");
    sqlite3_finalize(st);
    if (version < 0) goto fail;
    if (version == 0) {
        err_set(err, "%s: not a loralab results database (schema version 0; was it created by db_open?)", path);
        goto fail;
    }
    if (version > DB_SCHEMA_VERSION) {
        err_set(err, "%s: schema version %d is newer than this build knows (%d); read it with a newer loralab", path,
                version, DB_SCHEMA_VERSION);
        goto fail;
    }
    if (CHECK_RC(sqlite3_prepare_v2(r->h, "SELECT value FROM params WHERE run_id = ?1 AND key = ?2", -1,
                                    &r->param_st, NULL),
                 "prepare params query"))
        goto fail;
    /* NULL step (a final value) first, then the largest step; the latest row among equals. */
    if (CHECK_RC(sqlite3_prepare_v2(r->h,
                                    "SELECT value, step FROM results WHERE run_id = ?1 AND key = ?2 "
                                    "ORDER BY step IS NOT NULL, step DESC, rowid DESC LIMIT 1",
                                    -1, &r->result_st, NULL),
                 "prepare results query"))
        goto fail;
    *out = r;
    return 0;
fail:
    db_read_close(r);
    return -1;
}

void db_read_close(DbReader *r) {
    if (!r) return;
    sqlite3_finalize(r->param_st);
    sqlite3_finalize(r->result_st);
    if (r->in_txn) sqlite3_exec(r->h, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(r->h);
    free(r->path);
    free(r);
}

const char *db_read_path(const DbReader *r) { return r->path; }

void db_run_list_free(DbRunList *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        free(l->id[i]);
        free(l->experiment[i]);
        free(l->status[i]);
        free(l->h5_path[i]);
        for (int k = 0; k < l->n_keys; k++) free(l->param[(size_t)i * l->n_keys + k]);
    }
    free(l->id);
    free(l->experiment);
    free(l->status);
    free(l->cell);
    free(l->seed);
    free(l->h5_path);
    free(l->param);
    memset(l, 0, sizeof *l);
}

void db_run_list_keep(DbRunList *l, const char *const *ids, int n_ids) {
    if (!ids || n_ids <= 0) return;
    int w = 0;
    for (int i = 0; i < l->n; i++) {
        int keep = 0;
        for (int j = 0; j < n_ids && !keep; j++) keep = strcmp(l->id[i], ids[j]) == 0;
        if (!keep) {
            free(l->id[i]);
            free(l->experiment[i]);
            free(l->status[i]);
            free(l->h5_path[i]);
            for (int k = 0; k < l->n_keys; k++) free(l->param[(size_t)i * l->n_keys + k]);
            continue;
        }
        l->id[w] = l->id[i];
        l->experiment[w] = l->experiment[i];
        l->status[w] = l->status[i];
        l->cell[w] = l->cell[i];
        l->seed[w] = l->seed[i];
        l->h5_path[w] = l->h5_path[i];
        for (int k = 0; k < l->n_keys; k++) l->param[(size_t)w * l->n_keys + k] = l->param[(size_t)i * l->n_keys + k];
        w++;
    }
    l->n = w;
}

/* The error for an unknown experiment name: which ones there are. */
static int unknown_experiment(DbReader *r, const char *name, Error *err) {
    char list[600] = "";
    size_t len = 0;
    int n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->h, "SELECT name FROM experiments ORDER BY id", -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (!t) continue;
            if (len + strlen(t) + 8 < sizeof list) {
                len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", n ? ", " : "", t);
            } else if (len + 6 < sizeof list) {
                len += (size_t)snprintf(list + len, sizeof list - len, ", ...");
                break;
            }
            n++;
        }
    }
    sqlite3_finalize(st);
    return err_set(err, "%s: no experiment named '%s' (the database has %s)", r->path, name,
                   n ? list : "no experiments");
}

int db_read_runs(DbReader *r, const char *experiment, const char *status, const char *const *keys, int n_keys,
                 DbRunList *out, Error *err) {
    ASSERT(r && out && n_keys >= 0 && (keys || n_keys == 0));
    memset(out, 0, sizeof *out);
    out->n_keys = n_keys;
    if (snapshot(r, err)) return -1;
    sqlite3_stmt *st = NULL;
    if (experiment) {
        if (CHECK_RC(sqlite3_prepare_v2(r->h, "SELECT id FROM experiments WHERE name = ?1", -1, &st, NULL),
                     "look up experiment"))
            return -1;
        sqlite3_bind_text(st, 1, experiment, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (rc == SQLITE_DONE) return unknown_experiment(r, experiment, err);
        if (rc != SQLITE_ROW) return CHECK_RC(rc, "look up experiment");
    }
    const char *sql = "SELECT r.id, e.name, r.status, r.cell_index, r.seed, r.h5_path FROM runs r "
                      "LEFT JOIN experiments e ON e.id = r.experiment_id "
                      "WHERE (?1 IS NULL OR e.name = ?1) AND (?2 IS NULL OR r.status = ?2) "
                      "ORDER BY r.experiment_id, r.cell_index, r.seed, r.rowid";
    if (CHECK_RC(sqlite3_prepare_v2(r->h, sql, -1, &st, NULL), "prepare runs query")) return -1;
    if (experiment) sqlite3_bind_text(st, 1, experiment, -1, SQLITE_TRANSIENT);
    if (status) sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->id = xrealloc(out->id, (size_t)cap * sizeof *out->id);
            out->experiment = xrealloc(out->experiment, (size_t)cap * sizeof *out->experiment);
            out->status = xrealloc(out->status, (size_t)cap * sizeof *out->status);
            out->cell = xrealloc(out->cell, (size_t)cap * sizeof *out->cell);
            out->seed = xrealloc(out->seed, (size_t)cap * sizeof *out->seed);
            out->h5_path = xrealloc(out->h5_path, (size_t)cap * sizeof *out->h5_path);
            out->param = xrealloc(out->param, (size_t)cap * (size_t)(n_keys ? n_keys : 1) * sizeof *out->param);
        }
        int i = out->n++;
        out->id[i] = dup_col(st, 0);
        out->experiment[i] = dup_col(st, 1);
        out->status[i] = dup_col(st, 2);
        out->cell[i] = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
        out->seed[i] = sqlite3_column_type(st, 4) == SQLITE_NULL ? INT64_MIN : sqlite3_column_int64(st, 4);
        out->h5_path[i] = dup_col(st, 5);
        for (int k = 0; k < n_keys; k++) out->param[(size_t)i * n_keys + k] = NULL;
        if (!out->id[i]) out->id[i] = xstrdup("");
        if (!out->status[i]) out->status[i] = xstrdup("");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        CHECK_RC(rc, "read runs");
        db_run_list_free(out);
        return -1;
    }
    for (int i = 0; i < out->n; i++) {
        for (int k = 0; k < n_keys; k++) {
            sqlite3_reset(r->param_st);
            sqlite3_bind_text(r->param_st, 1, out->id[i], -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(r->param_st, 2, keys[k], -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(r->param_st);
            if (rc == SQLITE_ROW) {
                out->param[(size_t)i * n_keys + k] = dup_col(r->param_st, 0);
            } else if (rc != SQLITE_DONE) {
                CHECK_RC(rc, "read params");
                sqlite3_reset(r->param_st);
                db_run_list_free(out);
                return -1;
            }
        }
    }
    sqlite3_reset(r->param_st);
    return 0;
}

int db_read_result(DbReader *r, const char *run_id, const char *key, double *value, int64_t *step, int *found,
                   Error *err) {
    ASSERT(r && run_id && key && value && found);
    *value = NAN;
    *found = 0;
    if (step) *step = -1;
    if (snapshot(r, err)) return -1;
    sqlite3_stmt *st = r->result_st;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = 1;
        *value = sqlite3_column_type(st, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 0);
        if (step) *step = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
    }
    int bad = rc != SQLITE_ROW && rc != SQLITE_DONE ? CHECK_RC(rc, "read results") : 0;
    sqlite3_reset(st);
    return bad;
}
