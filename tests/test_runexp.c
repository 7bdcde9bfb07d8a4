/* tests/test_runexp.c: the `runexp` program end to end (SKIP without Fashion-MNIST).
 *   it_runexp_rerun      a finished config reruns nothing (every run "done, skipped")
 *   fault_runexp_kill    SIGKILL mid-run, rerun: the run resumes from its checkpoint and its whole loss series
 *                        and final results equal an uninterrupted run's, bit for bit
 *   it_runexp_sigint     SIGINT: checkpoint, status 'interrupted', exit 130; rerun finishes it
 *   config_runexp_errors a typo'd key fails before anything runs, with file:line:col and a suggestion */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/db.h"
#include "results/h5rec.h"
#include "testlib.h"

static const char *RUNEXP, *CFG;
static char tmp[256];

static int run(char *out, size_t cap, const char *kill_after, int sig, const char *const *args) {
    return test_run_program(RUNEXP, args, kill_after, sig, out, cap);
}

static int series(const char *out_dir, const char *id, double **v, int64_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/it_tiny/%s/run.h5", out_dir, id);
    int64_t *steps;
    Error e;
    if (h5rec_read_series(path, "train/loss", &steps, v, n, &e)) { fprintf(stderr, "%s\n", e.msg); return -1; }
    for (int64_t i = 0; i < *n; i++) CHECK_MSG(steps[i] == i, "%s: step %lld at row %lld", path, (long long)steps[i], (long long)i);
    free(steps);
    return 0;
}

static void first_run_id(const char *out_dir, char *id) {
    char cmd[600], buf[256] = "";
    snprintf(cmd, sizeof cmd, "ls %s/it_tiny | sort | head -1", out_dir);
    FILE *f = popen(cmd, "r");
    if (f && fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0;
    if (f) pclose(f);
    snprintf(id, 64, "%s", buf);
}

static void kill_and_resume(void) {
    static char out[1 << 16];
    char a[300], b[300], oa[320], ob[320];
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    snprintf(oa, sizeof oa, "output=%s", a);
    snprintf(ob, sizeof ob, "output=%s", b);
    const char *full[] = {CFG, oa, "seeds=[0]", "--threads", "2", "--log-every", "5", NULL};
    CHECK(run(out, sizeof out, NULL, 0, full) == 0);
    const char *killed[] = {CFG, ob, "seeds=[0]", "--threads", "2", "--log-every", "5", NULL};
    int rc = run(out, sizeof out, "step 45/80", SIGKILL, killed);
    CHECK_MSG(rc == 128 + SIGKILL, "the run was not killed (exit %d): it finished before step 45?", rc);
    rc = run(out, sizeof out, NULL, 0, killed);
    const char *res = strstr(out, "resumed at step ");
    long at = res ? atol(res + 16) : -1;
    CHECK_MSG(rc == 0 && at >= 40 && at < 80 && at % 10 == 0, "rerun exit %d, resumed at %ld, output:\n%s", rc, at, out);
    char id[64];
    first_run_id(a, id);
    double *va, *vb;
    int64_t na, nb;
    if (series(a, id, &va, &na) || series(b, id, &vb, &nb)) { CHECK(0); return; }
    CHECK_MSG(na == 80 && nb == 80, "series lengths %lld and %lld, expected 80", (long long)na, (long long)nb);
    CHECK_MSG(na == nb && memcmp(va, vb, sizeof(double) * (size_t)na) == 0, "killed+resumed loss curve differs");
    printf("kill -9 after step 45, resumed at %ld: %lld losses identical, last %.9g\n", at, (long long)nb, vb[nb - 1]);
    free(va);
    free(vb);
}

/* A kill that leaves run.h5 unreadable: the rerun moves it aside (kept), continues from the checkpoint in a
 * new file, and the steps it records equal the uninterrupted run's. */
static void broken_h5(void) {
    static char out[1 << 16];
    char a[300], f[300], oa[320], of[320];
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(f, sizeof f, "%s/f", tmp);
    snprintf(oa, sizeof oa, "output=%s", a);
    snprintf(of, sizeof of, "output=%s", f);
    const char *full[] = {CFG, oa, "seeds=[0]", "--threads", "2", NULL};
    CHECK(run(out, sizeof out, NULL, 0, full) == 0);
    const char *killed[] = {CFG, of, "seeds=[0]", "--threads", "2", "--log-every", "5", NULL};
    CHECK(run(out, sizeof out, "step 45/80", SIGKILL, killed) == 128 + SIGKILL);
    char id[64], h5[400];
    first_run_id(f, id);
    snprintf(h5, sizeof h5, "%s/it_tiny/%s/run.h5", f, id);
    FILE *g = fopen(h5, "r+b");
    ASSERT(g);
    static char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    fwrite(junk, 1, sizeof junk, g); /* the superblock and the root group are gone */
    fclose(g);
    int rc = run(out, sizeof out, NULL, 0, killed);
    const char *res = strstr(out, "resumed at step ");
    long at = res ? atol(res + 16) : -1;
    CHECK_MSG(rc == 0 && strstr(out, "was unreadable, moved to") && at >= 40, "exit %d:\n%s", rc, out);
    char moved[420];
    snprintf(moved, sizeof moved, "%s.broken-1", h5);
    CHECK_MSG(access(moved, F_OK) == 0, "%s: the broken file was not kept", moved);
    double *va, *vf;
    int64_t na, nf, *sf;
    Error e;
    if (series(a, id, &va, &na)) { CHECK(0); return; }
    CHECK_MSG(h5rec_read_series(h5, "train/loss", &sf, &vf, &nf, &e) == 0, "%s", e.msg);
    CHECK_MSG(nf == 80 - at && sf[0] == at && memcmp(vf, va + at, sizeof(double) * (size_t)nf) == 0,
              "new file has %lld steps from %lld; expected %ld from %ld equal to the uninterrupted run", (long long)nf,
              nf ? (long long)sf[0] : -1LL, 80 - at, at);
    printf("broken run.h5: moved aside, resumed at %ld in a new file, %lld steps equal the uninterrupted run's\n", at,
           (long long)nf);
    free(va); free(vf); free(sf);
}

static void sigint_and_rerun(void) {
    static char out[1 << 16];
    char c[300], oc[320];
    snprintf(c, sizeof c, "%s/c", tmp);
    snprintf(oc, sizeof oc, "output=%s", c);
    const char *args[] = {CFG, oc, "--threads", "2", "--log-every", "5", NULL};
    int rc = run(out, sizeof out, "step 25/80", SIGINT, args);
    CHECK_MSG(rc == 130 && strstr(out, "interrupted"), "exit %d, output:\n%s", rc, out);
    char dbp[400];
    snprintf(dbp, sizeof dbp, "%s/runs.db", c);
    Db *db;
    Error e;
    char id[64], status[32] = "";
    first_run_id(c, id);
    ASSERT(db_open(&db, dbp, &e) == 0);
    /* one of the two seeds' runs was interrupted (the first); the other never started */
    CHECK(db_run_status(db, id, status, sizeof status, &e) == 0);
    int interrupted = !strcmp(status, "interrupted");
    db_close(db);
    rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 0, "rerun exit %d:\n%s", rc, out);
    rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 0 && strstr(out, "done, skipped") && !strstr(out, "starting"), "third run did work:\n%s", out);
    ASSERT(db_open(&db, dbp, &e) == 0);
    CHECK(db_run_status(db, id, status, sizeof status, &e) == 0 && !strcmp(status, "done"));
    db_close(db);
    printf("SIGINT: exit 130, a run marked interrupted (%s), rerun finished both, a third run skipped both\n",
           interrupted ? "seen" : "not the sorted-first one");
}

/* --jobs 2 runs the two seeds in two processes writing one database; the report's numbers are the database's
 * and its figure is a real PNG. */
static void jobs_and_report(void) {
    static char out[1 << 16];
    char d[300], od[320];
    snprintf(d, sizeof d, "%s/d", tmp);
    snprintf(od, sizeof od, "output=%s", d);
    const char *args[] = {CFG, od, "--jobs", "2", "--log-every", "40", NULL};
    int rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 0, "exit %d:\n%s", rc, out);
    const char *rep[] = {"report", CFG, od, NULL};
    rc = run(out, sizeof out, NULL, 0, rep);
    CHECK_MSG(rc == 0, "report exit %d:\n%s", rc, out);
    char path[400], q[600], dbarg[400];
    snprintf(dbarg, sizeof dbarg, "%s/runs.db", d);
    const char *query[] = {"query", "--db", dbarg, "--csv",
                           "SELECT value FROM results WHERE key = 'test_acc' ORDER BY run_id", NULL};
    rc = run(out, sizeof out, NULL, 0, query);
    double v[2] = {0, 0};
    CHECK_MSG(rc == 0 && sscanf(out, "value\n%lf\n%lf", &v[0], &v[1]) == 2, "query exit %d:\n%s", rc, out);
    double mean = 100 * (v[0] + v[1]) / 2, sd = 100 * fabs(v[0] - v[1]) / sqrt(2.0);
    snprintf(path, sizeof path, "%s/it_tiny/report/tiny.csv", d);
    FILE *f = fopen(path, "r");
    double cm = -1, cs = -1;
    int n = 0;
    if (f) {
        while (fgets(q, sizeof q, f))
            if (!strncmp(q, "vit,fashion_mnist,task,ours,", 28)) sscanf(q + 28, "%lf,%lf,%d", &cm, &cs, &n);
        fclose(f);
    }
    CHECK_MSG(n == 2 && fabs(cm - mean) < 1e-9 * mean && fabs(cs - sd) < 1e-9 + 1e-9 * sd,
              "%s: mean %.12g std %.12g n %d; database: %.12g, %.12g", path, cm, cs, n, mean, sd);
    snprintf(path, sizeof path, "%s/it_tiny/report/tiny_loss.png", d);
    f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    long size = 0;
    if (f) { CHECK(fread(sig, 1, 8, f) == 8); fseek(f, 0, SEEK_END); size = ftell(f); fclose(f); }
    CHECK_MSG(!memcmp(sig, "\x89PNG\r\n\x1a\n", 8) && size > 2048, "%s: not a PNG of > 2 KB (%ld bytes)", path, size);
    printf("--jobs 2: both runs done; report mean %.4f std %.4f = the database's; figure %ld bytes\n", cm, cs, size);
}

/* Profiles: the mini and paper runs of one config are separate runs (ids differ) with separate reports; the
 * published numbers (report.tables[].papers) show only in the paper profile's report, the mini one says so. */
static int file_has(const char *path, const char *needle) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static void profiles_and_papers(void) {
    static char out[1 << 16];
    char cfg[300], csv[300], path[400], od[320];
    snprintf(csv, sizeof csv, "%s/paper.csv", tmp);
    FILE *f = fopen(csv, "w");
    ASSERT(f);
    fputs("# A made-up paper, Table 9; metric: accuracy (%)\nMethod,fashion_mnist\nRefNet,12.5\n", f);
    fclose(f);
    snprintf(cfg, sizeof cfg, "%s/prof.yaml", tmp);
    f = fopen(cfg, "w");
    ASSERT(f);
    fprintf(f, "name: it_prof\noutput: %s/p\nprofile: mini\nprofiles:\n  mini: {trainer: {epochs: 1}}\n"
               "  paper: {trainer: {epochs: 1, lr: 1e-3}}\n"
               "backbone: {family: vit, vit: {img_size: 28, in_ch: 1, patch: 7, dim: 16, depth: 1, heads: 2, "
               "mlp_hidden: 32, n_classes: auto}}\n"
               "dataset: {name: fashion_mnist, path: /usr/share/datasets/fashion-mnist, train_n: 200, test_n: 100}\n"
               "trainer: {lr: 3e-3, batch: 50, epochs: 5}\nstages: [pretrain]\n"
               "report:\n  tables:\n    - name: t\n      rows: backbone.family\n      columns: dataset.name\n"
               "      metric: test_acc\n      scale: 100\n      papers: [{csv: %s, tag: Made-up Tab. 9}]\n", tmp, csv);
    fclose(f);
    snprintf(od, sizeof od, "%s/p", tmp);
    const char *mini[] = {cfg, NULL}, *mini_rep[] = {"report", cfg, NULL};
    const char *paper[] = {cfg, "--profile", "paper", NULL}, *paper_rep[] = {"report", cfg, "--profile", "paper", NULL};
    int rc = run(out, sizeof out, NULL, 0, mini);
    CHECK_MSG(rc == 0 && strstr(out, "epoch 1 test_acc") && !strstr(out, "epoch 2 "), "mini exit %d:\n%s", rc, out);
    rc = run(out, sizeof out, NULL, 0, paper);
    CHECK_MSG(rc == 0 && strstr(out, "starting"), "paper exit %d (a run of its own):\n%s", rc, out);
    rc = run(out, sizeof out, NULL, 0, mini_rep);
    CHECK_MSG(rc == 0, "report exit %d:\n%s", rc, out);
    rc = run(out, sizeof out, NULL, 0, paper_rep);
    CHECK_MSG(rc == 0, "report --profile paper exit %d:\n%s", rc, out);
    snprintf(path, sizeof path, "%s/it_prof/report/t.md", od);
    CHECK_MSG(file_has(path, "[profile mini:") == 1 && file_has(path, "RefNet") == 0, "%s: mini report", path);
    snprintf(path, sizeof path, "%s/it_prof/report-paper/t.md", od);
    CHECK_MSG(file_has(path, "RefNet (Made-up Tab. 9)") == 1 && file_has(path, "12.5") == 1 &&
                  file_has(path, "[profile") == 0,
              "%s: paper report without the published row", path);
    snprintf(path, sizeof path, "%s/it_prof/report-paper/t.md", od);
    /* each report has exactly one run of ours: the other profile's run is not in it */
    CHECK_MSG(file_has(path, "1 done run") == 1 || file_has(path, "Runs: 1 done") == 1, "%s: run count", path);
    printf("profiles: mini and paper runs separate; published row only in report-paper/\n");
}

/* Two runexp processes reach the same run (e.g. both through `requires:`): the second sees the live run's locked
 * run file and leaves it alone (exit 1, the run still 'running' in the database, its files untouched); the
 * first finishes it as 'done'. */
static void concurrent_run(void) {
    static char out[1 << 16];
    char d[300], od[320], log[340], h5[600], id[64] = "";
    snprintf(d, sizeof d, "%s/c", tmp);
    snprintf(od, sizeof od, "output=%s", d);
    snprintf(log, sizeof log, "%s/first.log", tmp);
    const char *args[] = {CFG, od, "seeds=[0]", "trainer.epochs=8", "--threads", "1", NULL};
    pid_t p = fork();
    if (p == 0) {
        if (!freopen(log, "w", stdout) || dup2(1, 2) < 0) _exit(126);
        const char *argv[8] = {RUNEXP, args[0], args[1], args[2], args[3], args[4], args[5], NULL};
        execv(RUNEXP, (char *const *)argv);
        _exit(127);
    }
    int locked = 0;
    for (int i = 0; i < 6000 && !locked; i++) { /* up to 60 s for the first process to open its run file */
        usleep(10000);
        if (!id[0]) first_run_id(d, id);
        snprintf(h5, sizeof h5, "%s/it_tiny/%s/run.h5", d, id);
        locked = id[0] && h5rec_in_use(h5);
    }
    CHECK_MSG(locked, "the first runexp never locked its run file (%s)", h5);
    int rc = test_run_program(RUNEXP, args, NULL, 0, out, sizeof out);
    int first_alive = waitpid(p, NULL, WNOHANG) == 0;
    CHECK_MSG(rc == 1 && strstr(out, "is locked by another process running this run: left as it is (status running)"),
              "second runexp: exit %d:\n%s", rc, out);
    char dbp[400], status[32] = "";
    snprintf(dbp, sizeof dbp, "%s/runs.db", d);
    Db *db = NULL;
    Error e = {{0}};
    if (first_alive) { /* the database still says running while the first process is at it */
        CHECK_MSG(db_open(&db, dbp, &e) == 0 && db_run_status(db, id, status, sizeof status, &e) == 0, "%s", e.msg);
        CHECK_MSG(!strcmp(status, "running"), "status while the first runs: %s", status);
        db_close(db);
    }
    int st = 0;
    waitpid(p, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the first runexp did not finish cleanly (see %s)", log);
    CHECK_MSG(db_open(&db, dbp, &e) == 0 && db_run_status(db, id, status, sizeof status, &e) == 0, "%s", e.msg);
    CHECK_MSG(!strcmp(status, "done"), "status after: %s", status);
    db_close(db);
    printf("concurrent: the second runexp left the live run alone (first still running: %d); it finished done\n",
           first_alive);
}

/* A full disk: the output folder is a small tmpfs, filled up but for 32 KB after the database exists. The run
 * fails with an error naming the file and the full disk (no crash), the database stays intact, and once space is back the same
 * command finishes the run. Needs root (mount); SKIPs otherwise. */
static int disk_full(void) {
    static char out[1 << 16];
    char e[300], oe[320], cmd[600], filler[400];
    snprintf(e, sizeof e, "%s/e", tmp);
    snprintf(oe, sizeof oe, "output=%s", e);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && mount -t tmpfs -o size=4m loralab_test %s 2>/dev/null", e, e);
    if (system(cmd) != 0) { printf("skipped: cannot mount a tmpfs (needs root)\n"); return TEST_SKIP; }
    const char *args[] = {CFG, oe, "seeds=[0]", "--threads", "2", NULL};
    const char *dry[] = {CFG, oe, "seeds=[0]", "--dry-run", NULL};
    CHECK(run(out, sizeof out, NULL, 0, dry) == 0); /* creates runs.db and the experiment row */
    snprintf(filler, sizeof filler, "%s/filler", e);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char zeros[1 << 16];
    long total = 0;
    ssize_t k;
    while (fd >= 0 && (k = write(fd, zeros, sizeof zeros)) > 0) total += (long)k; /* until ENOSPC */
    if (fd >= 0) close(fd);
    ASSERT(truncate(filler, total - 32 * 1024) == 0);
    int rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 1 && strstr(out, "failed: ") && (strstr(out, "No space left on device") || strstr(out, "disk is full")),
              "exit %d (expected 1 and an error naming the full disk):\n%s", rc, out);
    unlink(filler);
    char dbarg[400];
    snprintf(dbarg, sizeof dbarg, "%s/runs.db", e);
    const char *integrity[] = {"query", "--db", dbarg, "--csv", "PRAGMA integrity_check", NULL};
    rc = run(out, sizeof out, NULL, 0, integrity);
    CHECK_MSG(rc == 0 && strstr(out, "ok"), "database after a full disk (exit %d):\n%s", rc, out);
    rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 0 && strstr(out, "done:"), "rerun with space again: exit %d:\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "umount %s", e);
    if (system(cmd)) {}
    printf("disk full: the run failed with ENOSPC, database intact, rerun finished it\n");
    return 0;
}

static void config_errors(void) {
    static char out[1 << 14];
    const char *args[] = {CFG, "trainer.lrr=1", NULL};
    int rc = run(out, sizeof out, NULL, 0, args);
    CHECK_MSG(rc == 1 && strstr(out, "trainer.lrr") && strstr(out, "did you mean 'trainer.lr'"), "exit %d:\n%s", rc, out);
    char bad[320];
    snprintf(bad, sizeof bad, "%s/bad.yaml", tmp);
    FILE *f = fopen(bad, "w");
    fprintf(f, "include: %s\ntrainer:\n  warmpu: 0.1\n", CFG);
    fclose(f);
    const char *args2[] = {bad, NULL};
    rc = run(out, sizeof out, NULL, 0, args2);
    CHECK_MSG(rc == 1 && strstr(out, "bad.yaml:3:3: unknown key 'warmpu' in trainer (did you mean 'warmup'?)"),
              "exit %d:\n%s", rc, out);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    RUNEXP = argv[2];
    CFG = argv[3];
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK)) {
        printf("skipped: Fashion-MNIST not installed\n");
        return TEST_SKIP;
    }
    snprintf(tmp, sizeof tmp, "/tmp/loralab_runexp_XXXXXX");
    ASSERT(mkdtemp(tmp));
    const char *w = argv[1];
    if (!strcmp(w, "kill")) kill_and_resume();
    else if (!strcmp(w, "sigint")) sigint_and_rerun();
    else if (!strcmp(w, "errors")) config_errors();
    else if (!strcmp(w, "jobs")) jobs_and_report();
    else if (!strcmp(w, "broken")) broken_h5();
    else if (!strcmp(w, "profiles")) profiles_and_papers();
    else if (!strcmp(w, "concurrent")) concurrent_run();
    else if (!strcmp(w, "diskfull")) { if (disk_full() == TEST_SKIP) return TEST_SKIP; }
    else return 2;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!test_failures && system(cmd)) {}
    return test_finish(w);
}
