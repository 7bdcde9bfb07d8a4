/* tests/test_db.c: results/db.h, the SQLite results database, in a fresh temp directory per case.
 * argv[1]: schema | runs | concurrent | locked | readonly | corrupt | merge. Raw sqlite3 connections check
 * what actually landed on disk, independently of the API under test. */
#include "results/db.h"
#include "testlib.h"

#include <dirent.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[512];

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/loralab_db_XXXXXX", base && *base ? base : "/tmp");
    ASSERTF(mkdtemp(tmpdir), "mkdtemp %s failed", tmpdir);
}
static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char p[1024];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}
/* <tmpdir>/<name> in a ring of 4 static buffers. */
static const char *tpath(const char *name) {
    static char p[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(p[slot], sizeof p[slot], "%s/%s", tmpdir, name);
    return p[slot];
}

/* ---- raw access: what is really in the file ---------------------------------------------------------------- */
static sqlite3 *raw_open(const char *path) {
    sqlite3 *h = NULL;
    ASSERTF(sqlite3_open(path, &h) == SQLITE_OK, "raw open %s", path);
    sqlite3_busy_timeout(h, 10000);
    return h;
}
static void raw_exec(sqlite3 *h, const char *sql) {
    char *msg = NULL;
    ASSERTF(sqlite3_exec(h, sql, NULL, NULL, &msg) == SQLITE_OK, "raw exec '%s': %s", sql, msg ? msg : "?");
}
/* First column of the first row as int64 (0 when there is no row or it is NULL). */
static long long raw_int(sqlite3 *h, const char *sql) {
    sqlite3_stmt *st = NULL;
    ASSERTF(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK, "raw prepare '%s': %s", sql, sqlite3_errmsg(h));
    int rc = sqlite3_step(st);
    ASSERTF(rc == SQLITE_ROW || rc == SQLITE_DONE, "raw step '%s': %s", sql, sqlite3_errmsg(h));
    long long v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return v;
}
static double raw_double(sqlite3 *h, const char *sql) {
    sqlite3_stmt *st = NULL;
    ASSERTF(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK, "raw prepare '%s': %s", sql, sqlite3_errmsg(h));
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : NAN;
    if (sqlite3_column_type(st, 0) == SQLITE_NULL) v = NAN;
    sqlite3_finalize(st);
    return v;
}
static void raw_text(sqlite3 *h, const char *sql, char *out, size_t cap) {
    sqlite3_stmt *st = NULL;
    ASSERTF(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK, "raw prepare '%s': %s", sql, sqlite3_errmsg(h));
    const unsigned char *t = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    snprintf(out, cap, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(st);
}
static long long count_in(const char *path, const char *sql) {
    sqlite3 *h = raw_open(path);
    long long v = raw_int(h, sql);
    sqlite3_close(h);
    return v;
}

/* Query output captured as a string (free it). */
static char *query_out(Db *db, const char *sql, int csv, int *rc, Error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f);
    *rc = db_query_print(db, sql, csv, f, err);
    fclose(f);
    return buf;
}

/* ---- record_db_schema ----------------------------------------------------------------------------------------- */
static void test_schema(void) {
    const char *path = tpath("runs.db");
    Error err = {{0}};
    Db *db = NULL;
    CHECK_MSG(db_open(&db, path, &err) == 0, "%s", err.msg);
    int64_t e1 = 0;
    CHECK_MSG(db_experiment(db, "exp", "configs/exp.yaml", &e1, &err) == 0, "%s", err.msg);
    db_close(db);

    sqlite3 *h = raw_open(path);
    const char *tables[] = {"experiments", "runs", "params", "results", "artifacts"};
    for (size_t i = 0; i < ARRAY_LEN(tables); i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        CHECK_MSG(raw_int(h, sql) == 1, "table %s", tables[i]);
    }
    const char *indexes[] = {"params_key_value", "params_key_num", "results_key", "results_run_key"};
    for (size_t i = 0; i < ARRAY_LEN(indexes); i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '%s'",
                 indexes[i]);
        CHECK_MSG(raw_int(h, sql) == 1, "index %s", indexes[i]);
    }
    CHECK(raw_int(h, "PRAGMA user_version") == DB_SCHEMA_VERSION);
    char mode[32];
    raw_text(h, "PRAGMA journal_mode", mode, sizeof mode);
    CHECK_MSG(strcmp(mode, "wal") == 0, "journal_mode %s", mode);
    long long objects = raw_int(h, "SELECT count(*) FROM sqlite_master");
    sqlite3_close(h);

    /* Reopening is a no-op: same version, same schema, the data is still there. */
    CHECK_MSG(db_open(&db, path, &err) == 0, "%s", err.msg);
    int64_t e2 = 0, e3 = 0;
    CHECK_MSG(db_experiment(db, "exp", "configs/other.yaml", &e2, &err) == 0, "%s", err.msg);
    CHECK_MSG(db_experiment(db, "exp2", NULL, &e3, &err) == 0, "%s", err.msg);
    CHECK(e1 > 0 && e2 == e1 && e3 != e1);
    db_close(db);
    CHECK(count_in(path, "SELECT count(*) FROM sqlite_master") == objects);
    CHECK(count_in(path, "PRAGMA user_version") == DB_SCHEMA_VERSION);
    CHECK(count_in(path, "SELECT count(*) FROM experiments") == 2);

    /* A newer schema is refused, clearly, and left alone. */
    h = raw_open(path);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", DB_SCHEMA_VERSION + 1);
    raw_exec(h, sql);
    sqlite3_close(h);
    db = NULL;
    CHECK(db_open(&db, path, &err) == -1 && db == NULL);
    char want[64];
    snprintf(want, sizeof want, "schema version %d is newer", DB_SCHEMA_VERSION + 1);
    CHECK_MSG(strstr(err.msg, want) && strstr(err.msg, path), "%s", err.msg);
    CHECK(count_in(path, "PRAGMA user_version") == DB_SCHEMA_VERSION + 1);
    fprintf(stderr, "newer: %s\n", err.msg);

    /* Some other program's SQLite file is not migrated into. */
    const char *other = tpath("other.db");
    h = raw_open(other);
    raw_exec(h, "CREATE TABLE foo(x)");
    sqlite3_close(h);
    CHECK(db_open(&db, other, &err) == -1);
    CHECK_MSG(strstr(err.msg, "not a loralab results database") && strstr(err.msg, other), "%s", err.msg);
}

/* ---- record_db_runs --------------------------------------------------------------------------------------------- */
static void test_runs(void) {
    const char *path = tpath("runs.db");
    Error err = {{0}};
    Db *db = NULL;
    CHECK_MSG(db_open(&db, path, &err) == 0, "%s", err.msg);
    CHECK(strcmp(db_path(db), path) == 0);
    int64_t exp = 0;
    CHECK_MSG(db_experiment(db, "vtab_abm", "configs/vtab_abm.yaml", &exp, &err) == 0, "%s", err.msg);

    char status[16] = "x";
    CHECK(db_run_status(db, "abc123", status, sizeof status, &err) == 0 && status[0] == '\0');

    const char *kv[] = {"method.abm.margin", "0.1", "model.name", "vit-b16", "train.lr", "1e-3", "note", "1 2",
                        "train.steps", "500"};
    CHECK_MSG(db_run_begin(db, "abc123", exp, 3, 42, "cpu", "loralab 0.1", kv, 5, &err) == 0, "%s", err.msg);
    CHECK(db_run_status(db, "abc123", status, sizeof status, &err) == 0 && strcmp(status, "running") == 0);
    char tiny[4];
    CHECK(db_run_status(db, "abc123", tiny, sizeof tiny, &err) == -1);

    const char *k1[] = {"test_acc", "final_loss", "diverged"};
    double v1[] = {0.93, 0.25, NAN};
    CHECK_MSG(db_put_results(db, "abc123", k1, v1, NULL, 3, &err) == 0, "%s", err.msg);
    const char *k2[] = {"loss", "loss", "loss"};
    double v2[] = {2.0, 1.5, 1.0};
    int64_t s2[] = {1, 2, 3};
    CHECK_MSG(db_put_results(db, "abc123", k2, v2, s2, 3, &err) == 0, "%s", err.msg);
    /* a resumed run re-puts step 2: replaced, not duplicated; and the no-step key likewise */
    double v3[] = {1.25};
    CHECK_MSG(db_put_results(db, "abc123", k2, v3, s2 + 1, 1, &err) == 0, "%s", err.msg);
    double v4[] = {0.94};
    CHECK_MSG(db_put_results(db, "abc123", k1, v4, NULL, 1, &err) == 0, "%s", err.msg);
    CHECK_MSG(db_put_artifact(db, "abc123", "h5", "runs/abc123.h5", &err) == 0, "%s", err.msg);
    CHECK_MSG(db_put_artifact(db, "abc123", "h5", "runs/abc123.h5", &err) == 0, "%s", err.msg);
    CHECK_MSG(db_put_artifact(db, "abc123", "adapter", "runs/abc123.safetensors", &err) == 0, "%s", err.msg);
    CHECK_MSG(db_run_h5(db, "abc123", "runs/abc123.h5", &err) == 0, "%s", err.msg);
    CHECK_MSG(db_run_finish(db, "abc123", "done", 12.5, (size_t)1 << 20, NULL, &err) == 0, "%s", err.msg);
    CHECK(db_run_status(db, "abc123", status, sizeof status, &err) == 0 && strcmp(status, "done") == 0);

    /* errors: unknown run, bad status; none of them changes anything */
    CHECK(db_run_finish(db, "nope", "done", 1, 0, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "unknown run 'nope'") && strstr(err.msg, path), "%s", err.msg);
    CHECK(db_put_results(db, "nope", k1, v1, NULL, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "unknown run 'nope'"), "%s", err.msg);
    CHECK(db_put_artifact(db, "nope", "h5", "x", &err) == -1);
    CHECK(db_run_finish(db, "abc123", "weird", 1, 0, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "CHECK constraint"), "%s", err.msg);
    CHECK(db_run_status(db, "abc123", status, sizeof status, &err) == 0 && strcmp(status, "done") == 0);

    sqlite3 *h = raw_open(path);
    CHECK(raw_int(h, "SELECT count(*) FROM params WHERE run_id = 'abc123'") == 5);
    CHECK_NEAR(raw_double(h, "SELECT num FROM params WHERE key = 'method.abm.margin'"), 0.1, 1e-15);
    CHECK_NEAR(raw_double(h, "SELECT num FROM params WHERE key = 'train.lr'"), 1e-3, 1e-18);
    CHECK_NEAR(raw_double(h, "SELECT num FROM params WHERE key = 'train.steps'"), 500, 0);
    CHECK(isnan(raw_double(h, "SELECT num FROM params WHERE key = 'model.name'")));
    CHECK(isnan(raw_double(h, "SELECT num FROM params WHERE key = 'note'")));
    char text[128];
    raw_text(h, "SELECT value FROM params WHERE key = 'train.lr'", text, sizeof text);
    CHECK(strcmp(text, "1e-3") == 0);
    CHECK(raw_int(h, "SELECT count(*) FROM results WHERE run_id = 'abc123'") == 6);
    CHECK_NEAR(raw_double(h, "SELECT value FROM results WHERE key = 'test_acc'"), 0.94, 1e-15);
    CHECK(raw_int(h, "SELECT count(*) FROM results WHERE key = 'diverged' AND value IS NULL") == 1);
    CHECK_NEAR(raw_double(h, "SELECT value FROM results WHERE key = 'loss' AND step = 2"), 1.25, 0);
    CHECK_NEAR(raw_double(h, "SELECT sum(step) FROM results WHERE key = 'loss'"), 6, 0);
    CHECK(raw_int(h, "SELECT count(*) FROM artifacts") == 2);
    CHECK(raw_int(h, "SELECT experiment_id FROM runs WHERE id = 'abc123'") == exp);
    CHECK(raw_int(h, "SELECT cell_index FROM runs") == 3 && raw_int(h, "SELECT seed FROM runs") == 42);
    CHECK(raw_int(h, "SELECT peak_rss_bytes FROM runs") == 1 << 20);
    CHECK_NEAR(raw_double(h, "SELECT wall_s FROM runs"), 12.5, 0);
    raw_text(h, "SELECT device || '|' || versions || '|' || h5_path FROM runs", text, sizeof text);
    CHECK_MSG(strcmp(text, "cpu|loralab 0.1|runs/abc123.h5") == 0, "%s", text);
    CHECK(raw_int(h, "SELECT finished IS NOT NULL AND started IS NOT NULL AND error IS NULL FROM runs") == 1);
    sqlite3_close(h);

    /* Query printing: the docs' example query, as a table and as CSV. */
    const char *best = "SELECT p.value AS margin, MAX(r.value) AS best FROM results r JOIN params p"
                       " ON p.run_id = r.run_id AND p.key = 'method.abm.margin'"
                       " WHERE r.key = 'test_acc' GROUP BY p.value";
    int rc;
    char *out = query_out(db, best, 0, &rc, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK_MSG(strstr(out, "margin") && strstr(out, "best") && strstr(out, "0.1") && strstr(out, "0.94") &&
                  strstr(out, "------") && strstr(out, "(1 row)"),
              "%s", out);
    fprintf(stderr, "table:\n%s", out);
    free(out);
    out = query_out(db, best, 1, &rc, &err);
    CHECK_MSG(rc == 0 && strcmp(out, "margin,best\n0.1,0.94\n") == 0, "%s", out);
    free(out);
    out = query_out(db, "SELECT 'a,b' AS x, 'say \"hi\"' AS y, NULL AS z;", 1, &rc, &err);
    CHECK_MSG(rc == 0 && strcmp(out, "x,y,z\n\"a,b\",\"say \"\"hi\"\"\",\n") == 0, "%s", out);
    free(out);
    out = query_out(db, "SELECT key, value, step FROM results WHERE key = 'loss' ORDER BY step", 0, &rc, &err);
    CHECK_MSG(rc == 0 && strstr(out, "loss") && strstr(out, "1.25") && strstr(out, "(3 rows)"), "%s", out);
    free(out);
    out = query_out(db, "PRAGMA table_info(runs)", 0, &rc, &err);
    CHECK_MSG(rc == 0 && strstr(out, "peak_rss_bytes"), "%s", err.msg);
    free(out);

    /* Writes (and the ways around the read-only check) are refused; nothing changes. */
    const char *bad[] = {"DELETE FROM runs",
                         "INSERT INTO experiments(name) VALUES('x')",
                         "UPDATE runs SET status = 'failed'",
                         "DROP TABLE results",
                         "PRAGMA user_version=7",
                         "PRAGMA query_only=0",
                         "ATTACH DATABASE 'x.db' AS x",
                         "BEGIN",
                         "SELECT 1; DELETE FROM runs",
                         "   ",
                         "SELEKT 1"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err.msg[0] = '\0';
        out = query_out(db, bad[i], 0, &rc, &err);
        CHECK_MSG(rc == -1 && strstr(err.msg, path), "'%s' -> rc %d: %s", bad[i], rc, err.msg);
        if (i < 9) CHECK_MSG(strstr(err.msg, "refused"), "'%s': %s", bad[i], err.msg);
        if (i == 0) fprintf(stderr, "refused: %s\n", err.msg);
        free(out);
    }
    out = query_out(db, "SELECT 1; -- a trailing comment\n", 0, &rc, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    free(out);
    CHECK(count_in(path, "SELECT count(*) FROM runs") == 1);
    CHECK(count_in(path, "PRAGMA user_version") == DB_SCHEMA_VERSION);
    /* and the connection still writes after a query */
    CHECK_MSG(db_put_artifact(db, "abc123", "figure", "runs/abc123.png", &err) == 0, "%s", err.msg);

    /* Re-begin (a rerun): params replaced, results kept, finish fields cleared. */
    const char *kv2[] = {"method.abm.margin", "0.2", "model.name", "vit-b16"};
    CHECK_MSG(db_run_begin(db, "abc123", exp, 3, 42, "cuda:0", "loralab 0.2", kv2, 2, &err) == 0, "%s", err.msg);
    h = raw_open(path);
    CHECK(raw_int(h, "SELECT count(*) FROM params WHERE run_id = 'abc123'") == 2);
    CHECK_NEAR(raw_double(h, "SELECT num FROM params WHERE key = 'method.abm.margin'"), 0.2, 1e-15);
    CHECK(raw_int(h, "SELECT count(*) FROM results WHERE run_id = 'abc123'") == 6);
    CHECK(raw_int(h, "SELECT finished IS NULL AND wall_s IS NULL AND h5_path IS NOT NULL FROM runs") == 1);
    sqlite3_close(h);
    CHECK_MSG(db_run_finish(db, "abc123", "interrupted", 3.0, 0, "SIGTERM", &err) == 0, "%s", err.msg);

    /* A write set that fails halfway (duplicate param key) leaves nothing behind: the old row and params stay. */
    const char *dup[] = {"a", "1", "b", "2", "a", "3"};
    CHECK(db_run_begin(db, "abc123", exp, 4, 7, "cpu", "v", dup, 3, &err) == -1);
    CHECK_MSG(strstr(err.msg, "insert param 'a'") && strstr(err.msg, "UNIQUE"), "%s", err.msg);
    CHECK(db_run_begin(db, "fresh", exp, 0, 0, "cpu", "v", dup, 3, &err) == -1);
    CHECK(db_run_status(db, "abc123", status, sizeof status, &err) == 0 && strcmp(status, "interrupted") == 0);
    CHECK(db_run_status(db, "fresh", status, sizeof status, &err) == 0 && status[0] == '\0');
    h = raw_open(path);
    CHECK(raw_int(h, "SELECT count(*) FROM params") == 2);
    CHECK(raw_int(h, "SELECT count(*) FROM runs") == 1);
    CHECK(raw_int(h, "SELECT cell_index FROM runs") == 3);
    raw_text(h, "SELECT error FROM runs", text, sizeof text);
    CHECK(strcmp(text, "SIGTERM") == 0);
    sqlite3_close(h);
    db_close(db);
}

/* ---- record_db_concurrent ----------------------------------------------------------------------------------- */
enum { NPROC = 8, NRUN = 50, NPARAM = 10, NRES = 5 };

static int child_writer(const char *path, int p, int start_fd) {
    char c;
    while (read(start_fd, &c, 1) > 0) {} /* all start together when the parent closes the pipe */
    Error err = {{0}};
    Db *db = NULL;
    int64_t exp = 0;
    if (db_open(&db, path, &err) || db_experiment(db, "concurrent", "configs/c.yaml", &exp, &err)) {
        fprintf(stderr, "writer %d: %s\n", p, err.msg);
        return 1;
    }
    for (int r = 0; r < NRUN; r++) {
        char id[32], keys[NPARAM][16], vals[NPARAM][32];
        const char *kv[2 * NPARAM], *rk[NRES];
        double rv[NRES];
        int64_t rs[NRES];
        snprintf(id, sizeof id, "p%d-r%d", p, r);
        for (int i = 0; i < NPARAM; i++) {
            snprintf(keys[i], sizeof keys[i], "param.k%d", i);
            snprintf(vals[i], sizeof vals[i], "%d", p * 1000 + r * 10 + i);
            kv[2 * i] = keys[i];
            kv[2 * i + 1] = vals[i];
        }
        for (int i = 0; i < NRES; i++) {
            rk[i] = "metric";
            rv[i] = p + 0.01 * r;
            rs[i] = i;
        }
        if (db_run_begin(db, id, exp, r, p, "cpu", "test", kv, NPARAM, &err) ||
            db_put_results(db, id, rk, rv, rs, NRES, &err) ||
            db_run_finish(db, id, "done", 0.1, peak_rss_bytes(), NULL, &err)) {
            fprintf(stderr, "writer %d run %d: %s\n", p, r, err.msg);
            db_close(db);
            return 1;
        }
    }
    db_close(db);
    return 0;
}

static void test_concurrent(void) {
    const char *path = tpath("runs.db"); /* not created yet: the writers race to create and migrate it */
    int fds[2];
    ASSERT(pipe(fds) == 0);
    pid_t pids[NPROC];
    double t0 = now_seconds();
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        ASSERT(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[1]);
            _exit(child_writer(path, p, fds[0]));
        }
    }
    close(fds[0]);
    close(fds[1]);
    for (int p = 0; p < NPROC; p++) {
        int st = 0;
        ASSERT(waitpid(pids[p], &st, 0) == pids[p]);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d status %d", p, st);
    }
    fprintf(stderr, "%d writers x %d runs: %.2f s\n", NPROC, NRUN, now_seconds() - t0);
    sqlite3 *h = raw_open(path);
    CHECK(raw_int(h, "SELECT count(*) FROM experiments") == 1);
    CHECK(raw_int(h, "SELECT count(*) FROM runs") == NPROC * NRUN);
    CHECK(raw_int(h, "SELECT count(*) FROM runs WHERE status = 'done'") == NPROC * NRUN);
    CHECK(raw_int(h, "SELECT count(*) FROM params") == NPROC * NRUN * NPARAM);
    CHECK(raw_int(h, "SELECT count(*) FROM results") == NPROC * NRUN * NRES);
    CHECK(raw_int(h, "SELECT count(DISTINCT run_id) FROM results") == NPROC * NRUN);
    /* every value landed intact: sum over all params of p*1000 + r*10 + i */
    long long want = 0;
    for (int p = 0; p < NPROC; p++)
        for (int r = 0; r < NRUN; r++)
            for (int i = 0; i < NPARAM; i++) want += p * 1000 + r * 10 + i;
    CHECK(raw_int(h, "SELECT sum(num) FROM params") == want);
    CHECK(raw_int(h, "PRAGMA integrity_check") == 0); /* "ok" reads as 0 */
    char ok[16];
    raw_text(h, "PRAGMA integrity_check", ok, sizeof ok);
    CHECK_MSG(strcmp(ok, "ok") == 0, "%s", ok);
    sqlite3_close(h);
}

/* ---- fault_db_locked --------------------------------------------------------------------------------------------- */
static void test_locked(void) {
    const char *path = tpath("runs.db");
    Error err = {{0}};
    Db *db = NULL;
    DbOptions o = {.busy_timeout_ms = 200};
    CHECK_MSG(db_open_opts(&db, path, &o, &err) == 0, "%s", err.msg);
    const char *kv[] = {"a", "1"};
    CHECK_MSG(db_run_begin(db, "r1", 0, 0, 0, "cpu", "v", kv, 1, &err) == 0, "%s", err.msg);
    const char *keys[] = {"x", "y", "z"};
    double vals[] = {1, 2, 3};

    /* 1. Another connection (same process) holds the write lock with an uncommitted write. */
    sqlite3 *h = raw_open(path);
    raw_exec(h, "BEGIN IMMEDIATE; INSERT INTO experiments(name) VALUES('holder')");
    double t0 = now_seconds();
    CHECK(db_put_results(db, "r1", keys, vals, NULL, 3, &err) == -1);
    double waited = now_seconds() - t0;
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "locked"), "%s", err.msg);
    CHECK_MSG(waited >= 0.15 && waited < 5, "waited %.3f s", waited);
    fprintf(stderr, "locked (%.2f s): %s\n", waited, err.msg);
    CHECK(db_run_begin(db, "r2", 0, 0, 0, "cpu", "v", kv, 1, &err) == -1);
    CHECK(db_run_finish(db, "r1", "done", 1, 0, NULL, &err) == -1);
    /* reads are not blocked by a writer in WAL mode */
    char status[16];
    CHECK_MSG(db_run_status(db, "r1", status, sizeof status, &err) == 0 && strcmp(status, "running") == 0, "%s",
              err.msg);
    raw_exec(h, "ROLLBACK");
    CHECK(raw_int(h, "SELECT count(*) FROM results") == 0); /* nothing partial */
    CHECK(raw_int(h, "SELECT count(*) FROM runs") == 1);
    CHECK_MSG(db_put_results(db, "r1", keys, vals, NULL, 3, &err) == 0, "%s", err.msg);
    CHECK(raw_int(h, "SELECT count(*) FROM results") == 3);
    sqlite3_close(h);

    /* 2. Another process holds an EXCLUSIVE lock for 1 s: a short timeout fails, a long one waits it out. */
    int fds[2];
    ASSERT(pipe(fds) == 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        sqlite3 *c = raw_open(path);
        raw_exec(c, "BEGIN EXCLUSIVE; UPDATE runs SET device = 'holder'");
        ASSERT(write(fds[1], "x", 1) == 1);
        usleep(1000 * 1000);
        raw_exec(c, "COMMIT");
        sqlite3_close(c);
        _exit(0);
    }
    close(fds[1]);
    char c;
    ASSERT(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    const char *k2[] = {"w"};
    double v2[] = {4};
    CHECK(db_put_results(db, "r1", k2, v2, NULL, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "locked"), "%s", err.msg);
    db_set_busy_timeout(db, 10000);
    t0 = now_seconds();
    CHECK_MSG(db_put_results(db, "r1", k2, v2, NULL, 1, &err) == 0, "%s", err.msg);
    fprintf(stderr, "waited %.2f s for the other process\n", now_seconds() - t0);
    int st = 0;
    ASSERT(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(count_in(path, "SELECT count(*) FROM results") == 4);
    CHECK(count_in(path, "SELECT count(*) FROM runs WHERE device = 'holder'") == 1);
    db_close(db);
}

/* ---- fault_db_readonly ---------------------------------------------------------------------------------------- */
static void test_readonly(void) {
    Error err = {{0}};
    Db *db = NULL;
    /* the parent is a regular file (running as root, chmod would not stop writes; this does) */
    FILE *f = fopen(tpath("afile"), "w");
    ASSERT(f && fputs("not a directory\n", f) >= 0 && fclose(f) == 0);
    const char *p1 = tpath("afile/runs.db");
    CHECK(db_open(&db, p1, &err) == -1 && db == NULL);
    CHECK_MSG(strstr(err.msg, p1) && strstr(err.msg, "not a directory"), "%s", err.msg);
    fprintf(stderr, "parent is a file: %s\n", err.msg);
    const char *p2 = tpath("missing/runs.db");
    CHECK(db_open(&db, p2, &err) == -1);
    CHECK_MSG(strstr(err.msg, p2) && strstr(err.msg, "missing"), "%s", err.msg);
    CHECK(db_open(&db, tmpdir, &err) == -1);
    CHECK_MSG(strstr(err.msg, "is a directory"), "%s", err.msg);
    /* a shard that is not there is not created by merge */
    CHECK_MSG(db_open(&db, tpath("runs.db"), &err) == 0, "%s", err.msg);
    CHECK(db_merge(db, tpath("nope.db"), &err) == -1);
    CHECK_MSG(strstr(err.msg, "nope.db") && strstr(err.msg, "No such file"), "%s", err.msg);
    CHECK(access(tpath("nope.db"), F_OK) != 0);
    db_close(db);
}

/* ---- fault_db_corrupt ----------------------------------------------------------------------------------------- */
static void test_corrupt(void) {
    Error err = {{0}};
    Db *db = NULL;
    const char *path = tpath("runs.db");
    unsigned char junk[8192];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        s = s * 1664525u + 1013904223u;
        junk[i] = (unsigned char)(s >> 24);
    }
    FILE *f = fopen(path, "wb");
    ASSERT(f && fwrite(junk, 1, sizeof junk, f) == sizeof junk && fclose(f) == 0);
    CHECK(db_open(&db, path, &err) == -1 && db == NULL);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "not a database"), "%s", err.msg);
    fprintf(stderr, "garbage: %s\n", err.msg);
    /* and it is left as it was */
    unsigned char back[sizeof junk + 1];
    f = fopen(path, "rb");
    ASSERT(f);
    size_t n = fread(back, 1, sizeof back, f);
    fclose(f);
    CHECK(n == sizeof junk && memcmp(back, junk, sizeof junk) == 0);

    /* a garbage shard: the merge fails naming the shard, the main database is unharmed */
    const char *main_path = tpath("main.db");
    CHECK_MSG(db_open(&db, main_path, &err) == 0, "%s", err.msg);
    CHECK(db_merge(db, path, &err) == -1);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "not a database"), "%s", err.msg);
    int64_t e;
    CHECK_MSG(db_experiment(db, "still-works", NULL, &e, &err) == 0, "%s", err.msg);
    db_close(db);

    /* a valid header with the pages after it overwritten */
    const char *torn = tpath("torn.db");
    CHECK_MSG(db_open(&db, torn, &err) == 0, "%s", err.msg);
    db_close(db);
    sqlite3 *h = raw_open(torn);
    raw_exec(h, "PRAGMA journal_mode=DELETE");
    sqlite3_close(h);
    f = fopen(torn, "r+b");
    ASSERT(f && fseek(f, 100, SEEK_SET) == 0 && fwrite(junk, 1, 4000, f) == 4000 && fclose(f) == 0);
    int rc = db_open(&db, torn, &err);
    if (rc == 0) { /* the schema page may survive; then the first write must fail cleanly */
        rc = db_experiment(db, "x", NULL, &e, &err);
        db_close(db);
    }
    CHECK(rc == -1);
    CHECK_MSG(strstr(err.msg, torn) && (strstr(err.msg, "malformed") || strstr(err.msg, "not a database")), "%s",
              err.msg);
    fprintf(stderr, "torn: %s\n", err.msg);
}

/* ---- record_db_merge -------------------------------------------------------------------------------------------- */
static void write_shard(const char *path, const char *exp_name, const char *run, int cell, double acc) {
    Error err = {{0}};
    Db *db = NULL;
    DbOptions o = {.shard = 1};
    ASSERTF(db_open_opts(&db, path, &o, &err) == 0, "%s", err.msg);
    int64_t exp;
    char h5[64];
    snprintf(h5, sizeof h5, "runs/%s.h5", run);
    const char *kv[] = {"method.abm.margin", cell ? "0.2" : "0.1", "seed", "1"};
    const char *keys[] = {"test_acc", "loss", "loss"};
    double vals[] = {acc, 1.0, 0.5};
    int64_t steps[] = {-1, 1, 2};
    ASSERTF(db_experiment(db, exp_name, "configs/x.yaml", &exp, &err) == 0 &&
                db_run_begin(db, run, exp, cell, 1, "cpu", "v", kv, 2, &err) == 0 &&
                db_put_results(db, run, keys, vals, steps, 3, &err) == 0 &&
                db_put_artifact(db, run, "h5", h5, &err) == 0 && db_run_h5(db, run, h5, &err) == 0 &&
                db_run_finish(db, run, "done", 2.0, 100, NULL, &err) == 0,
            "%s", err.msg);
    db_close(db);
}

/* Everything in the main database as one string, to compare states. */
static void snapshot(const char *path, char *out, size_t cap) {
    sqlite3 *h = raw_open(path);
    raw_text(h,
             "SELECT (SELECT group_concat(x, ';') FROM (SELECT e.name || '=' || r.id || '/' || r.status || '/' ||"
             " r.cell_index || '/' || r.h5_path AS x FROM runs r JOIN experiments e ON e.id = r.experiment_id"
             " ORDER BY r.id)) || '|' ||"
             " (SELECT count(*) || ':' || total(num) FROM params) || '|' ||"
             " (SELECT count(*) || ':' || total(value) || ':' || total(step) FROM results) || '|' ||"
             " (SELECT count(*) FROM artifacts) || '|' || (SELECT count(*) FROM experiments)",
             out, cap);
    sqlite3_close(h);
}

static void test_merge(void) {
    Error err = {{0}};
    const char *a = tpath("shard_a.db"), *b = tpath("shard_b.db");
    write_shard(a, "exp", "a1", 0, 0.90);
    write_shard(a, "exp", "a2", 1, 0.92);
    write_shard(b, "exp2", "b1", 0, 0.80);
    write_shard(b, "exp", "b2", 1, 0.85);
    CHECK(count_in(a, "SELECT count(*) FROM runs") == 2);
    char mode[16];
    sqlite3 *h = raw_open(a);
    raw_text(h, "PRAGMA journal_mode", mode, sizeof mode);
    sqlite3_close(h);
    CHECK_MSG(strcmp(mode, "delete") == 0, "shard journal %s", mode);

    const char *path = tpath("runs.db");
    Db *db = NULL;
    CHECK_MSG(db_open(&db, path, &err) == 0, "%s", err.msg);
    int64_t other; /* takes id 1, so the shards' experiment ids do not match the main ones */
    CHECK_MSG(db_experiment(db, "other", NULL, &other, &err) == 0, "%s", err.msg);
    CHECK_MSG(db_merge(db, a, &err) == 0, "%s", err.msg);
    CHECK_MSG(db_merge(db, b, &err) == 0, "%s", err.msg);
    char s1[1024], s2[1024];
    snapshot(path, s1, sizeof s1);
    fprintf(stderr, "merged: %s\n", s1);
    CHECK_MSG(strncmp(s1, "exp=a1/done/0/runs/a1.h5;exp=a2/done/1/runs/a2.h5;exp2=b1/done/0/runs/b1.h5;"
                          "exp=b2/done/1/runs/b2.h5|8:", 103) == 0,
              "%s", s1);
    h = raw_open(path);
    CHECK(raw_int(h, "SELECT count(*) FROM experiments") == 3);
    CHECK(raw_int(h, "SELECT count(*) FROM params") == 8);
    CHECK(raw_int(h, "SELECT count(*) FROM results") == 12);
    CHECK(raw_int(h, "SELECT count(*) FROM artifacts") == 4);
    CHECK(raw_int(h, "SELECT sum(step) FROM results") == 8);
    CHECK_NEAR(raw_double(h, "SELECT sum(num) FROM params"), 4.6, 1e-12);
    CHECK_NEAR(raw_double(h, "SELECT sum(value) FROM results"), 9.47, 1e-12);
    CHECK(raw_int(h, "SELECT count(*) FROM runs WHERE experiment_id IS NULL") == 0);
    CHECK(raw_int(h, "SELECT wall_s = 2.0 AND peak_rss_bytes = 100 AND finished IS NOT NULL FROM runs"
                     " WHERE id = 'b2'") == 1);
    sqlite3_close(h);

    /* idempotent: merging again changes nothing */
    CHECK_MSG(db_merge(db, a, &err) == 0 && db_merge(db, b, &err) == 0, "%s", err.msg);
    snapshot(path, s2, sizeof s2);
    CHECK_MSG(strcmp(s1, s2) == 0, "%s\nvs\n%s", s1, s2);

    /* a shard that moved on (re-run a1 with another result) replaces the merged run, not adds to it */
    write_shard(a, "exp", "a1", 0, 0.50);
    h = raw_open(a);
    raw_exec(h, "DELETE FROM results WHERE run_id = 'a1' AND key = 'loss'");
    sqlite3_close(h);
    CHECK_MSG(db_merge(db, a, &err) == 0, "%s", err.msg);
    CHECK(count_in(path, "SELECT count(*) FROM results") == 10);
    CHECK(count_in(path, "SELECT count(*) FROM results WHERE run_id = 'a1'") == 1);
    CHECK(count_in(path, "SELECT count(*) FROM runs") == 4);
    h = raw_open(path);
    CHECK_NEAR(raw_double(h, "SELECT value FROM results WHERE run_id = 'a1' AND key = 'test_acc'"), 0.5, 0);
    sqlite3_close(h);

    CHECK(db_merge(db, path, &err) == -1);
    CHECK_MSG(strstr(err.msg, "this database itself"), "%s", err.msg);

    /* a shard with a newer schema is refused */
    h = raw_open(b);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", DB_SCHEMA_VERSION + 1);
    raw_exec(h, sql);
    sqlite3_close(h);
    CHECK(db_merge(db, b, &err) == -1);
    CHECK_MSG(strstr(err.msg, b) && strstr(err.msg, "schema version"), "%s", err.msg);
    /* the main database still works (the shard was detached) */
    CHECK_MSG(db_merge(db, a, &err) == 0, "%s", err.msg);
    db_close(db);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s schema|runs|concurrent|locked|readonly|corrupt|merge\n", argv[0]);
        return 2;
    }
    const char *c = argv[1];
    make_tmpdir();
    if (!strcmp(c, "schema")) test_schema();
    else if (!strcmp(c, "runs")) test_runs();
    else if (!strcmp(c, "concurrent")) test_concurrent();
    else if (!strcmp(c, "locked")) test_locked();
    else if (!strcmp(c, "readonly")) test_readonly();
    else if (!strcmp(c, "corrupt")) test_corrupt();
    else if (!strcmp(c, "merge")) test_merge();
    else {
        fprintf(stderr, "unknown case %s\n", c);
        remove_tmpdir();
        return 2;
    }
    remove_tmpdir();
    char name[64];
    snprintf(name, sizeof name, "db_%s", c);
    return test_finish(name);
}
