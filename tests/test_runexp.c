/* tests/test_runexp.c: the `runexp` program end to end (SKIP without Fashion-MNIST).
 *   it_runexp_rerun      a finished config reruns nothing (every run "done, skipped")
 *   fault_runexp_kill    SIGKILL mid-run, rerun: the run resumes from its checkpoint and its whole loss series
 *                        and final results equal an uninterrupted run's, bit for bit
 *   it_runexp_sigint     SIGINT: checkpoint, status 'interrupted', exit 130; rerun finishes it
 *   config_runexp_errors a typo'd key fails before anything runs, with file:line:col and a suggestion */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/db.h"
#include "results/h5rec.h"
#include "testlib.h"

static const char *RUNEXP, *CFG;
static char tmp[256];

/* Runs runexp with args; if kill_after_line is set, sends sig once a stdout line contains it. Returns the exit
 * status (or 128 + signal) and the output in out. */
static int run(char *out, size_t cap, const char *kill_after, int sig, const char *const *args) {
    int fd[2];
    ASSERT(pipe(fd) == 0);
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        const char *argv[16] = {RUNEXP};
        int n = 1;
        for (; args[n - 1]; n++) argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(RUNEXP, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0;
    int sent = 0;
    ssize_t k;
    while ((k = read(fd[0], out + len, cap - 1 - len)) > 0) {
        len += (size_t)k;
        out[len] = 0;
        if (kill_after && !sent && strstr(out, kill_after)) { kill(p, sig); sent = 1; }
        if (len + 1 >= cap) len = 0; /* keep reading; only the tail matters */
    }
    close(fd[0]);
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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
    else return 2;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!test_failures && system(cmd)) {}
    return test_finish(w);
}
