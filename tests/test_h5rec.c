/* tests/test_h5rec.c: results/h5rec.h on files in a fresh temp directory. argv[1] picks the case:
 *   roundtrip  scalar + row series, attributes, matrices, in-process reading of a live file, append mode
 *   truncate   h5rec_truncate_after on buffered and flushed rows, then appending again; resume after reopen
 *   kill       a child SIGKILLs itself mid-run: the file opens with exactly the flushed prefix, and the run
 *              resumes; forged broken files give H5REC_BROKEN and h5rec_recover; random kills (many during a
 *              flush) always leave a readable, correct prefix or a detected broken file
 *              (H5REC_KILL_TRIALS=N sets the number of random kills, 40 by default)
 *   readonly   paths that cannot be created or read give errors naming the path, no crash, no HDF5 stderr */
#include "results/h5rec.h"
#include "testlib.h"

#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[512];

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/loralab_h5rec_XXXXXX", base && *base ? base : "/tmp");
    ASSERTF(mkdtemp(tmpdir), "mkdtemp %s failed", tmpdir);
}
static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void remove_tmpdir(void) { nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }
/* <tmpdir>/<name> in a ring of 4 static buffers: valid until the 4th next call. */
static const char *tpath(const char *name) {
    static char p[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(p[slot], sizeof p[slot], "%s/%s", tmpdir, name);
    return p[slot];
}
static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* The values every test writes: exact in f64, so reads compare with ==. */
static double fval(int64_t step) { return 0.5 * (double)step + 0.25; }
static double rval(int64_t step, int col) { return (double)step * 100.0 + col; }

/* Series `name` in path holds exactly steps 0..n-1 (every `stride`-th) with fval values. */
static void check_series(const char *path, const char *name, int64_t n_expect, int64_t stride) {
    int64_t *st = NULL, n = -1;
    double *v = NULL;
    Error err = {{0}};
    CHECK_MSG(h5rec_read_series(path, name, &st, &v, &n, &err) == 0, "%s", err.msg);
    CHECK_MSG(n == n_expect, "%s: %lld rows, expected %lld", name, (long long)n, (long long)n_expect);
    int bad = 0;
    for (int64_t i = 0; i < n && i < n_expect; i++)
        if (st[i] != i * stride || v[i] != fval(i * stride)) bad++;
    CHECK_MSG(bad == 0, "%s: %d rows differ", name, bad);
    free(st);
    free(v);
}

static int test_roundtrip(void) {
    const char *path = tpath("run.h5");
    Error err = {{0}};
    H5Rec *r = NULL;
    CHECK_MSG(h5rec_open(&r, path, H5REC_CREATE, &err) == 0, "%s", err.msg);
    if (!r) return test_finish("record_h5_roundtrip");

    /* a long config: variable-length strings have no 64 KiB attribute limit */
    size_t cfg_len = 200000;
    char *cfg = xmalloc(cfg_len + 1);
    for (size_t i = 0; i < cfg_len; i++) cfg[i] = (char)('a' + i % 26);
    cfg[cfg_len] = 0;
    CHECK_MSG(h5rec_set_attr(r, "config", cfg, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_set_attr(r, "version", "old", &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_set_attr(r, "version", "loralab 0.1 (\xc3\xa9t\xc3\xa9)", &err) == 0, "%s", err.msg);

    const char *cols[3] = {"blocks.0", "blocks.1", "blocks.2"};
    for (int64_t s = 0; s < 120; s++) {
        CHECK_MSG(h5rec_append(r, "train/loss", s, fval(s), &err) == 0, "%s", err.msg);
        if (s % 2 == 0) CHECK_MSG(h5rec_append(r, "train/lr", s, fval(s), &err) == 0, "%s", err.msg);
        double row[3] = {rval(s, 0), rval(s, 1), rval(s, 2)};
        if (s % 10 == 0) CHECK_MSG(h5rec_append_row(r, "layers/info_loss", s, row, 3, cols, &err) == 0, "%s", err.msg);
    }
    /* misuse: errors, not crashes, and the series stay intact */
    double row4[4] = {0};
    CHECK(h5rec_append_row(r, "layers/info_loss", 200, row4, 4, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "has 3 columns"), "%s", err.msg);
    CHECK(h5rec_append(r, "layers/info_loss", 200, 1.0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "is a row series"), "%s", err.msg);
    CHECK(h5rec_append(r, "train/loss", 119, 1.0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "step 119 is not after its last step 119") && strstr(err.msg, path), "%s", err.msg);
    CHECK(h5rec_append(r, "a//b", 0, 1.0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "'a//b' is not valid"), "%s", err.msg);
    CHECK(h5rec_append(r, "/abs", 0, 1.0, &err) == -1);
    CHECK(h5rec_append(r, "train/../x", 0, 1.0, &err) == -1);
    CHECK(h5rec_append(r, "train", 0, 1.0, &err) == -1); /* exists as a plain group */
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "H5Gcreate2"), "%s", err.msg);

    float m1[6] = {1, 2, 3, 4, 5, 6}, m2[6] = {6, 5, 4, 3, 2, 1}, m3[2] = {7, 8};
    CHECK_MSG(h5rec_put_matrix(r, "adapters/step_100/q.A", m1, 2, 3, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_put_matrix(r, "adapters/step_100/q.A", m2, 2, 3, &err) == 0, "%s", err.msg); /* in place */
    CHECK_MSG(h5rec_put_matrix(r, "adapters/step_100/q.B", m1, 3, 2, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_put_matrix(r, "adapters/step_100/q.B", m3, 1, 2, &err) == 0, "%s", err.msg); /* replaced */

    /* a second writer is refused while this one holds the file */
    H5Rec *r2 = NULL;
    CHECK(h5rec_open(&r2, path, H5REC_APPEND, &err) == -1 && !r2);
    CHECK_MSG(strstr(err.msg, "in use") && strstr(err.msg, path), "%s", err.msg);

    /* a live file reads back as of its last flush, from this process too */
    CHECK_MSG(h5rec_flush(r, &err) == 0, "%s", err.msg);
    check_series(path, "train/loss", 120, 1);
    CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);

    check_series(path, "train/loss", 120, 1);
    check_series(path, "train/lr", 60, 2);
    int64_t *st = NULL, n = 0;
    double *v = NULL;
    int nc = 0;
    char **names = NULL;
    CHECK_MSG(h5rec_read_rows(path, "layers/info_loss", &st, &v, &n, &nc, &names, &err) == 0, "%s", err.msg);
    CHECK(n == 12 && nc == 3 && names && !strcmp(names[0], "blocks.0") && !strcmp(names[2], "blocks.2"));
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) bad += st[i] != 10 * i || v[i * 3 + c] != rval(10 * i, c);
    CHECK(bad == 0);
    free(st), free(v), free(names);
    CHECK(h5rec_read_series(path, "layers/info_loss", &st, &v, &n, &err) == -1 && !st && !v);
    CHECK_MSG(strstr(err.msg, "h5rec_read_rows"), "%s", err.msg);
    CHECK(h5rec_read_series(path, "train/nope", &st, &v, &n, &err) == -1);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "train/nope"), "%s", err.msg);

    char *val = NULL;
    CHECK_MSG(h5rec_read_attr(path, "config", &val, &err) == 0, "%s", err.msg);
    CHECK(val && strlen(val) == cfg_len && !strcmp(val, cfg));
    free(val);
    CHECK_MSG(h5rec_read_attr(path, "version", &val, &err) == 0, "%s", err.msg);
    CHECK(val && !strcmp(val, "loralab 0.1 (\xc3\xa9t\xc3\xa9)"));
    free(val);
    CHECK(h5rec_read_attr(path, "nope", &val, &err) == -1 && !val);
    free(cfg);

    float *md = NULL;
    int rows = 0, ncols = 0;
    CHECK_MSG(h5rec_read_matrix(path, "adapters/step_100/q.A", &md, &rows, &ncols, &err) == 0, "%s", err.msg);
    CHECK(rows == 2 && ncols == 3 && md && !memcmp(md, m2, sizeof m2));
    free(md);
    CHECK_MSG(h5rec_read_matrix(path, "adapters/step_100/q.B", &md, &rows, &ncols, &err) == 0, "%s", err.msg);
    CHECK(rows == 1 && ncols == 2 && md && !memcmp(md, m3, sizeof m3));
    free(md);

    char **list = NULL;
    int nl = 0;
    CHECK_MSG(h5rec_list_series(path, &list, &nl, &err) == 0, "%s", err.msg);
    CHECK_MSG(nl == 3 && !strcmp(list[0], "layers/info_loss") && !strcmp(list[1], "train/loss") &&
                  !strcmp(list[2], "train/lr"), "%d series", nl);
    free(list);

    /* append mode continues every series; steps must keep increasing; new series can join; deflate works */
    CHECK_MSG(h5rec_open(&r, path, H5REC_APPEND, &err) == 0, "%s", err.msg);
    if (!r) return test_finish("record_h5_roundtrip");
    CHECK(h5rec_repaired(r) == 0);
    h5rec_set_deflate(r, 4);
    CHECK(h5rec_append(r, "train/loss", 100, 1.0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "h5rec_truncate_after"), "%s", err.msg);
    for (int64_t s = 120; s < 3000; s++) {
        CHECK_MSG(h5rec_append(r, "train/loss", s, fval(s), &err) == 0, "%s", err.msg);
        CHECK_MSG(h5rec_append(r, "eval/acc", s - 120, fval(s - 120), &err) == 0, "%s", err.msg);
    }
    double row[3] = {rval(120, 0), rval(120, 1), rval(120, 2)};
    CHECK_MSG(h5rec_append_row(r, "layers/info_loss", 120, row, 3, NULL, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
    check_series(path, "train/loss", 3000, 1); /* crosses chunk boundaries (1024 rows) */
    check_series(path, "eval/acc", 2880, 1);
    CHECK_MSG(h5rec_read_rows(path, "layers/info_loss", &st, &v, &n, &nc, NULL, &err) == 0, "%s", err.msg);
    CHECK(n == 13 && st[12] == 120 && v[12 * 3 + 2] == rval(120, 2));
    free(st), free(v);
    return test_finish("record_h5_roundtrip");
}

static int test_truncate(void) {
    const char *path = tpath("trunc.h5");
    Error err = {{0}};
    H5Rec *r = NULL;
    CHECK_MSG(h5rec_open(&r, path, H5REC_CREATE, &err) == 0, "%s", err.msg);
    if (!r) return test_finish("record_h5_truncate");
    h5rec_set_flush_every(r, 7); /* some rows on disk, some buffered when truncating */
    for (int64_t s = 0; s < 100; s++) {
        CHECK(h5rec_append(r, "s", s, fval(s), &err) == 0);
        double row[2] = {rval(s, 0), rval(s, 1)};
        if (s % 2 == 0) CHECK(h5rec_append_row(r, "grp/r", s, row, 2, NULL, &err) == 0);
    }
    CHECK_MSG(h5rec_truncate_after(r, 50, &err) == 0, "%s", err.msg);
    CHECK(h5rec_append(r, "s", 49, 0.0, &err) == -1); /* 49 is still there */
    for (int64_t s = 50; s < 60; s++) CHECK_MSG(h5rec_append(r, "s", s, fval(s), &err) == 0, "%s", err.msg);
    double row[2] = {rval(50, 0), rval(50, 1)};
    CHECK_MSG(h5rec_append_row(r, "grp/r", 50, row, 2, NULL, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
    check_series(path, "s", 60, 1);
    int64_t *st = NULL, n = 0;
    double *v = NULL;
    int nc = 0;
    CHECK_MSG(h5rec_read_rows(path, "grp/r", &st, &v, &n, &nc, NULL, &err) == 0, "%s", err.msg);
    CHECK_MSG(n == 26 && nc == 2 && st[24] == 48 && st[25] == 50 && v[25 * 2 + 1] == rval(50, 1), "n=%lld",
              (long long)n);
    free(st), free(v);

    /* resume after reopening: a checkpoint at step 55, the killed tail (55..59) goes */
    CHECK_MSG(h5rec_open(&r, path, H5REC_APPEND, &err) == 0, "%s", err.msg);
    if (!r) return test_finish("record_h5_truncate");
    CHECK_MSG(h5rec_truncate_after(r, 55, &err) == 0, "%s", err.msg);
    for (int64_t s = 55; s < 70; s++) CHECK_MSG(h5rec_append(r, "s", s, fval(s), &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
    check_series(path, "s", 70, 1);
    CHECK_MSG(h5rec_read_rows(path, "grp/r", &st, &v, &n, &nc, NULL, &err) == 0, "%s", err.msg);
    CHECK(n == 26); /* its last step (50) is before 55: untouched */
    free(st), free(v);

    /* truncating to nothing, beyond the end, and at a step between two rows */
    CHECK_MSG(h5rec_open(&r, path, H5REC_APPEND, &err) == 0, "%s", err.msg);
    if (!r) return test_finish("record_h5_truncate");
    CHECK_MSG(h5rec_truncate_after(r, 1000, &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_truncate_after(r, 0, &err) == 0, "%s", err.msg);
    for (int64_t s = 0; s < 10; s++) CHECK_MSG(h5rec_append(r, "s", s, fval(s), &err) == 0, "%s", err.msg);
    CHECK_MSG(h5rec_append_row(r, "grp/r", 0, (double[2]){rval(0, 0), rval(0, 1)}, 2, NULL, &err) == 0, "%s",
              err.msg);
    CHECK_MSG(h5rec_append_row(r, "grp/r", 2, (double[2]){rval(2, 0), rval(2, 1)}, 2, NULL, &err) == 0, "%s",
              err.msg);
    CHECK_MSG(h5rec_truncate_after(r, 1, &err) == 0, "%s", err.msg); /* keeps step 0 of grp/r */
    CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
    check_series(path, "s", 1, 1);
    CHECK_MSG(h5rec_read_rows(path, "grp/r", &st, &v, &n, &nc, NULL, &err) == 0, "%s", err.msg);
    CHECK(n == 1 && st[0] == 0 && v[1] == rval(0, 1));
    free(st), free(v);
    return test_finish("record_h5_truncate");
}

/* ---- kill -9 ---------------------------------------------------------------------------------------------------- */

/* The run a child performs: `steps` steps (forever when < 0) of a scalar and a row series, flushed every
 * flush_every appends, with an attribute and a matrix now and then; SIGKILLs itself before step kill_at. */
static _Noreturn void child_run(const char *path, int64_t steps, int flush_every, int64_t kill_at) {
    Error err;
    H5Rec *r = NULL;
    if (h5rec_open(&r, path, H5REC_CREATE, &err)) _exit(3);
    h5rec_set_flush_every(r, flush_every);
    for (int64_t s = 0; steps < 0 || s < steps; s++) {
        if (s == kill_at) raise(SIGKILL);
        double row[4] = {rval(s, 0), rval(s, 1), rval(s, 2), rval(s, 3)};
        if (h5rec_append(r, "train/loss", s, fval(s), &err) ||
            h5rec_append_row(r, "layers/x", s, row, 4, NULL, &err))
            _exit(4);
        if (s % 97 == 0) {
            char v[32];
            snprintf(v, sizeof v, "%lld", (long long)s);
            float m[8] = {(float)s};
            if (h5rec_set_attr(r, "last_attr", v, &err) || h5rec_put_matrix(r, "snap/m", m, 2, 4, &err)) _exit(5);
        }
    }
    h5rec_close(r, &err);
    _exit(0);
}

/* Both series of a killed run's file hold a correct prefix 0..n-1; returns the scalar series' length. */
static int64_t check_killed(const char *path, int64_t *n_rows) {
    Error err;
    int64_t *st = NULL, n = -1, *rs = NULL, nr = -1;
    double *v = NULL, *rv = NULL;
    int nc = 0, bad = 0;
    CHECK_MSG(h5rec_read_series(path, "train/loss", &st, &v, &n, &err) == 0, "%s", err.msg);
    for (int64_t i = 0; i < n; i++) bad += st[i] != i || v[i] != fval(i);
    if (h5rec_read_rows(path, "layers/x", &rs, &rv, &nr, &nc, NULL, &err) == 0) {
        for (int64_t i = 0; i < nr; i++)
            for (int c = 0; c < nc; c++) bad += rs[i] != i || rv[i * nc + c] != rval(i, c);
    } else {
        nr = 0; /* the row series may not exist yet if the kill came first */
    }
    CHECK_MSG(bad == 0, "%s: %d values differ from what was appended", path, bad);
    free(st), free(v), free(rs), free(rv);
    *n_rows = nr;
    return n;
}

static int test_kill(void) {
    const char *path = tpath("killed.h5");
    Error err = {{0}};
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) child_run(path, 1000, 50, 530);
    int status = 0;
    ASSERT(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);

    /* The contract this HDF5 gives (1.8 format, writes only inside flushes): the file opens, holding exactly
     * the 500 steps of the last flush before the kill at step 530. */
    H5Rec *r = NULL;
    int rc = h5rec_open(&r, path, H5REC_APPEND, &err);
    printf("fault_h5_kill: HDF5 %d.%d.%d, killed at step 530 with flush_every 50: h5rec_open %s%s\n", H5_VERS_MAJOR,
           H5_VERS_MINOR, H5_VERS_RELEASE, rc == 0 ? "succeeds" : "FAILS: ", rc == 0 ? "" : err.msg);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        int64_t nr = 0, n = check_killed(path, &nr);
        printf("fault_h5_kill: the file holds %lld steps of train/loss and %lld rows of layers/x (of 530 appended)\n",
               (long long)n, (long long)nr);
        CHECK_MSG(n == 500 && nr == 500, "n=%lld rows=%lld, expected 500", (long long)n, (long long)nr);
        CHECK(h5rec_repaired(r) == 0);
        /* resume from a checkpoint at step 480: drop the tail, run to the end */
        CHECK_MSG(h5rec_truncate_after(r, 480, &err) == 0, "%s", err.msg);
        for (int64_t s = 480; s < 1000; s++) {
            double row[4] = {rval(s, 0), rval(s, 1), rval(s, 2), rval(s, 3)};
            CHECK(h5rec_append(r, "train/loss", s, fval(s), &err) == 0);
            CHECK(h5rec_append_row(r, "layers/x", s, row, 4, NULL, &err) == 0);
        }
        CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
        n = check_killed(path, &nr);
        CHECK(n == 1000 && nr == 1000);
    }

    /* The other half of the contract, on forged damage: H5REC_BROKEN, then h5rec_recover moves it aside. */
    struct stat st;
    ASSERT(stat(path, &st) == 0);
    ASSERT(truncate(path, st.st_size / 2) == 0);
    rc = h5rec_open(&r, path, H5REC_APPEND, &err);
    printf("fault_h5_kill: a file cut to half its size: h5rec_open returns %d: %s\n", rc, err.msg);
    CHECK(rc == H5REC_BROKEN && !r);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "h5rec_recover"), "%s", err.msg);
    char moved[1100];
    CHECK_MSG(h5rec_recover(path, moved, sizeof moved, &err) == 0, "%s", err.msg);
    CHECK(!exists(path) && !strcmp(moved, tpath("killed.h5.broken-1")) && exists(moved));
    FILE *f = fopen(path, "wb");
    ASSERT(f && fputs("not an HDF5 file at all", f) >= 0 && fclose(f) == 0);
    CHECK(h5rec_open(&r, path, H5REC_APPEND, &err) == H5REC_BROKEN);
    CHECK_MSG(h5rec_recover(path, moved, sizeof moved, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(moved, tpath("killed.h5.broken-2")));
    f = fopen(path, "wb"); /* empty: killed before the first flush */
    ASSERT(f && fclose(f) == 0);
    CHECK(h5rec_open(&r, path, H5REC_APPEND, &err) == H5REC_BROKEN);
    CHECK(h5rec_recover(path, NULL, 0, &err) == 0 && exists(tpath("killed.h5.broken-3")));
    /* after recover, append mode starts a fresh file */
    CHECK_MSG(h5rec_open(&r, path, H5REC_APPEND, &err) == 0, "%s", err.msg);
    CHECK(h5rec_close(r, &err) == 0);

    /* Random kills of a run flushing every 3 steps: many land inside a flush. Every outcome must be a correct
     * prefix (maybe repaired) or a detected broken file. */
    int n_ok = 0, n_repaired = 0, n_broken = 0, n_trials = 40;
    if (getenv("H5REC_KILL_TRIALS")) n_trials = atoi(getenv("H5REC_KILL_TRIALS")); /* longer soak by hand */
    int64_t max_seen = 0;
    srand(12345);
    for (int t = 0; t < n_trials; t++) {
        const char *p = tpath("random.h5");
        unlink(p);
        pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) child_run(p, -1, 3, -1);
        struct timespec d = {0, (long)(20 + rand() % 200) * 1000000L};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        ASSERT(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFSIGNALED(status), "trial %d: child exited with %d before the kill", t, status);
        rc = h5rec_open(&r, p, H5REC_APPEND, &err);
        if (rc == 0) {
            int64_t rep = h5rec_repaired(r);
            CHECK_MSG(h5rec_close(r, &err) == 0, "%s", err.msg);
            int64_t nr = 0, n = check_killed(p, &nr);
            max_seen = MAX(max_seen, n);
            n_ok++;
            n_repaired += rep > 0;
        } else {
            CHECK_MSG(rc == H5REC_BROKEN, "trial %d: %s", t, err.msg);
            CHECK_MSG(h5rec_recover(p, NULL, 0, &err) == 0, "%s", err.msg);
            n_broken++;
        }
    }
    printf("fault_h5_kill: %d random kills (flush_every 3, up to %lld steps): %d readable (%d repaired), "
           "%d broken and recovered\n", n_trials, (long long)max_seen, n_ok, n_repaired, n_broken);
    return test_finish("fault_h5_kill");
}

/* ---- unwritable and unreadable paths ------------------------------------------------------------------------- */

static void check_open_fails(const char *path, int mode) {
    Error err = {{0}};
    H5Rec *r = NULL;
    int rc = h5rec_open(&r, path, mode, &err);
    CHECK_MSG(rc == -1 && !r, "%s: rc %d", path, rc);
    CHECK_MSG(strstr(err.msg, path), "error does not name the path: %s", err.msg);
    printf("fault_h5_readonly: %s\n", err.msg);
}

static int test_readonly(void) {
    /* HDF5 must not print its error stack: capture stderr while failing */
    fflush(stderr);
    int saved = dup(2), cap = open(tpath("stderr.txt"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT(saved >= 0 && cap >= 0 && dup2(cap, 2) == 2);

    const char *file = tpath("plainfile");
    FILE *f = fopen(file, "wb");
    ASSERT(f && fclose(f) == 0);
    char under_file[1100];
    snprintf(under_file, sizeof under_file, "%s/run.h5", file); /* ENOTDIR, even for root */
    check_open_fails(under_file, H5REC_CREATE);
    check_open_fails(under_file, H5REC_APPEND);
    check_open_fails(tpath("missing_dir/run.h5"), H5REC_CREATE);
    check_open_fails(tpath("missing_dir/run.h5"), H5REC_APPEND);
    check_open_fails("/proc/loralab_h5rec_test.h5", H5REC_CREATE);
    check_open_fails(tmpdir, H5REC_APPEND); /* a directory */

    /* an HDF5 file that is not a record: refused, not called broken */
    hid_t h = H5Fcreate(tpath("other.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT(h >= 0 && H5Fclose(h) >= 0);
    check_open_fails(tpath("other.h5"), H5REC_APPEND);

    Error err = {{0}};
    int64_t *st = NULL, n = 0;
    double *v = NULL;
    CHECK(h5rec_read_series(under_file, "train/loss", &st, &v, &n, &err) == -1 && strstr(err.msg, under_file));
    CHECK(h5rec_read_series(file, "train/loss", &st, &v, &n, &err) == -1 && strstr(err.msg, file));
    printf("fault_h5_readonly: %s\n", err.msg);
    char *val = NULL;
    CHECK(h5rec_read_attr(tpath("nothing.h5"), "config", &val, &err) == -1 && strstr(err.msg, "nothing.h5"));
    CHECK(h5rec_recover(tpath("nothing.h5"), NULL, 0, &err) == -1 && strstr(err.msg, "nothing.h5"));

    fflush(stderr);
    ASSERT(dup2(saved, 2) == 2);
    close(saved);
    close(cap);
    struct stat sb;
    ASSERT(stat(tpath("stderr.txt"), &sb) == 0);
    CHECK_MSG(sb.st_size == 0, "HDF5 printed %lld bytes to stderr", (long long)sb.st_size);
    return test_finish("fault_h5_readonly");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_h5rec roundtrip | truncate | kill | readonly\n");
        return 2;
    }
    make_tmpdir();
    int rc = 2;
    if (!strcmp(argv[1], "roundtrip")) rc = test_roundtrip();
    else if (!strcmp(argv[1], "truncate")) rc = test_truncate();
    else if (!strcmp(argv[1], "kill")) rc = test_kill();
    else if (!strcmp(argv[1], "readonly")) rc = test_readonly();
    else fprintf(stderr, "test_h5rec: unknown case '%s'\n", argv[1]);
    remove_tmpdir();
    return rc;
}
