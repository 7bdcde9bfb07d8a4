/* tests/test_paper.c: the paper configs' quick profiles end to end (SKIP without Fashion-MNIST).
 *   it_vtab_abm_quick  `runexp configs/vtab_abm.yaml --quick` (3 mini-VTAB tasks x LoRA / ABM-LoRA (a) x 2 seeds,
 *                      10 steps) into a temp folder, then `runexp report`; the report's CSV is checked against the
 *                      database read independently (results/db_read.h): the runs of each (method, task) cell are
 *                      exactly the done runs with those params, the cell's mean and sample std are those of the
 *                      runs' test_acc x 100, each group mean is the mean of its tasks' means and Overall the mean
 *                      of all task means (not of the group means), the best flags mark each column's largest
 *                      value after rounding, and the Markdown says which profile made it.
 * Usage: test_paper vtab_abm RUNEXP. Runs in the repository (relative paths as a user has them); the tiny ViT
 * checkpoint is used when runs/models has it, else the backbone starts from its seed (the check is of the
 * pipeline, not the accuracy). REPORT_KEEP=1 keeps the temp folder. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/db_read.h"
#include "testlib.h"

#define REPO_DIR TEST_DATA_DIR "/../../"
#define N_TASKS 3
#define N_ROWS 2
#define N_SEEDS 2

static const char *RUNEXP;
static const char *const TASKS[N_TASKS] = {"svhn", "dtd", "clevr_count"};
static const int GROUP_OF_TASK[N_TASKS] = {0, 0, 1};
static const char *const GROUPS[] = {"Natural", "Structured"};
static const char *const ROWS[N_ROWS] = {"lora", "abm_a"};

/* One cell from the database: the runs' ids, seeds and test_acc x 100. */
typedef struct {
    int n;
    char id[N_SEEDS + 2][32];
    long seed[N_SEEDS + 2];
    double v[N_SEEDS + 2];
} Cell;

static double cell_mean(const Cell *c) {
    double s = 0;
    for (int i = 0; i < c->n; i++) s += c->v[i];
    return s / c->n;
}

static double cell_std(const Cell *c) { /* sample std, two-pass */
    double m = cell_mean(c), s = 0;
    for (int i = 0; i < c->n; i++) s += (c->v[i] - m) * (c->v[i] - m);
    return c->n > 1 ? sqrt(s / (c->n - 1)) : NAN;
}

static void vtab_abm_quick(void) {
    if (access("/usr/share/datasets/fashion-mnist", F_OK) != 0) {
        fprintf(stderr, "SKIP: /usr/share/datasets/fashion-mnist missing (package dataset-fashion-mnist)\n");
        exit(TEST_SKIP);
    }
    if (chdir(REPO_DIR) != 0) { perror(REPO_DIR); exit(1); }
    char tmp[] = "/tmp/it_vtab_abm_XXXXXX";
    ASSERT(mkdtemp(tmp));
    char out[64], log[96], csv[160], md[160], db[96];
    snprintf(out, sizeof out, "output=%s", tmp);
    snprintf(log, sizeof log, "%s/runexp.log", tmp);
    snprintf(csv, sizeof csv, "%s/vtab_abm/report-quick/vtab_abm.csv", tmp);
    snprintf(md, sizeof md, "%s/vtab_abm/report-quick/vtab_abm.md", tmp);
    snprintf(db, sizeof db, "%s/runs.db", tmp);
    int have_ckpt = access("runs/models/tiny_vit_fmnist.safetensors", R_OK) == 0;
    if (!have_ckpt) fprintf(stderr, "note: runs/models/tiny_vit_fmnist.safetensors missing: random backbone\n");
    const char *args[] = {"configs/vtab_abm.yaml", "--quick", out, "--no-requires", "--threads", "1",
                          have_ckpt ? NULL : "backbone.checkpoint=", NULL};
    int rc = test_run_to_log(RUNEXP, log, args);
    CHECK_MSG(rc == 0, "runexp --quick exited with %d", rc);
    /* the report needs the same overrides as the runs: they are part of the run ids it looks for */
    const char *rargs[] = {"report", "configs/vtab_abm.yaml", "--quick", out, have_ckpt ? NULL : "backbone.checkpoint=",
                           NULL};
    if (rc == 0) {
        rc = test_run_to_log(RUNEXP, log, rargs);
        CHECK_MSG(rc == 0, "runexp report --quick exited with %d", rc);
    }
    if (rc != 0) {
        test_print_file(log);
        test_finish("it_vtab_abm_quick");
        exit(1);
    }

    /* the database, read without the report's code */
    Cell cells[N_ROWS][N_TASKS] = {0};
    DbReader *r = NULL;
    Error e;
    DbRunList runs = {0};
    const char *keys[] = {"method.params.variant", "dataset.task"};
    CHECK_MSG(db_read_open(&r, db, &e) == 0, "%s", e.msg);
    CHECK_MSG(r && db_read_runs(r, "vtab_abm", NULL, keys, 2, &runs, &e) == 0, "%s", e.msg);
    CHECK_MSG(runs.n == N_ROWS * N_TASKS * N_SEEDS, "%d runs in the database, expected %d", runs.n,
              N_ROWS * N_TASKS * N_SEEDS);
    for (int i = 0; i < runs.n; i++) {
        CHECK_MSG(!strcmp(runs.status[i], "done"), "run %s is %s", runs.id[i], runs.status[i]);
        const char *var = runs.param[2 * i], *task = runs.param[2 * i + 1];
        int a = var ? test_index_of(ROWS, N_ROWS, var) : -1, b = task ? test_index_of(TASKS, N_TASKS, task) : -1;
        CHECK_MSG(a >= 0 && b >= 0, "run %s: variant %s, task %s", runs.id[i], var ? var : "(none)",
                  task ? task : "(none)");
        if (a < 0 || b < 0) continue;
        Cell *c = &cells[a][b];
        if (c->n >= N_SEEDS + 2) continue;
        double v;
        int found;
        CHECK_MSG(db_read_result(r, runs.id[i], "test_acc", &v, NULL, &found, &e) == 0, "%s", e.msg);
        CHECK_MSG(found && v >= 0 && v <= 1, "run %s: test_acc %g (found %d)", runs.id[i], v, found);
        snprintf(c->id[c->n], sizeof c->id[0], "%s", runs.id[i]);
        c->seed[c->n] = (long)runs.seed[i];
        c->v[c->n++] = 100 * v;
    }
    db_run_list_free(&runs);
    db_read_close(r);
    double task_mean[N_ROWS][N_TASKS];
    for (int a = 0; a < N_ROWS; a++)
        for (int b = 0; b < N_TASKS; b++) {
            CHECK_MSG(cells[a][b].n == N_SEEDS, "%s / %s: %d runs", ROWS[a], TASKS[b], cells[a][b].n);
            task_mean[a][b] = cells[a][b].n ? cell_mean(&cells[a][b]) : NAN;
        }

    /* the report's CSV, line by line */
    FILE *f = fopen(csv, "r");
    CHECK_MSG(f != NULL, "%s missing", csv);
    if (!f) { test_print_file(log); test_finish("it_vtab_abm_quick"); exit(1); }
    char line[2048];
    char *fld[12];
    CHECK(fgets(line, sizeof line, f) && test_csv_split(line, fld, 12) == 10 && !strcmp(fld[0], "row") && !strcmp(fld[4], "mean") &&
          !strcmp(fld[9], "run_ids"));
    int seen_task = 0, seen_group = 0, seen_overall = 0;
    while (fgets(line, sizeof line, f)) {
        int nf = test_csv_split(line, fld, 12);
        CHECK_MSG(nf == 10, "CSV line with %d fields", nf);
        if (nf != 10) continue;
        CHECK_MSG(!strcmp(fld[3], "ours"), "source %s in the quick profile (published rows print only in paper)", fld[3]);
        int a = test_index_of(ROWS, N_ROWS, fld[0]);
        CHECK_MSG(a >= 0, "unexpected row %s", fld[0]);
        if (a < 0) continue;
        double mean = fld[4][0] ? atof(fld[4]) : NAN;
        int n = atoi(fld[6]), best = atoi(fld[7]);
        double want;
        if (!strcmp(fld[2], "task")) {
            int b = test_index_of(TASKS, N_TASKS, fld[1]);
            CHECK_MSG(b >= 0, "unexpected column %s", fld[1]);
            if (b < 0) continue;
            const Cell *c = &cells[a][b];
            seen_task++;
            want = task_mean[a][b];
            CHECK_MSG(n == c->n, "%s / %s: n %d, database %d", fld[0], fld[1], n, c->n);
            CHECK_MSG(fabs(mean - want) <= 1e-9 * fabs(want), "%s / %s: mean %.17g, database %.17g", fld[0], fld[1], mean,
                      want);
            double sd = fld[5][0] ? atof(fld[5]) : NAN, want_sd = cell_std(c);
            CHECK_MSG(fabs(sd - want_sd) <= 1e-9 * fabs(want_sd) + 1e-12, "%s / %s: std %.17g, database %.17g", fld[0],
                      fld[1], sd, want_sd);
            for (int k = 0; k < c->n; k++) { /* every run of the cell is listed, with its seed */
                char seed[24];
                snprintf(seed, sizeof seed, "%ld", c->seed[k]);
                CHECK_MSG(strstr(fld[9], c->id[k]) != NULL, "%s / %s: run %s not in '%s'", fld[0], fld[1], c->id[k], fld[9]);
                CHECK_MSG(strstr(fld[8], seed) != NULL, "%s / %s: seed %s not in '%s'", fld[0], fld[1], seed, fld[8]);
            }
            CHECK_MSG(strlen(fld[9]) == (size_t)(c->n * 17 - 1), "%s / %s: run ids '%s' (expected %d)", fld[0], fld[1],
                      fld[9], c->n);
            /* best: the largest after rounding to the table's 1 decimal */
            double other = task_mean[1 - a][b];
            int want_best = round(want * 10) >= round(other * 10);
            CHECK_MSG(best == want_best, "%s / %s: best %d, expected %d (%.2f vs %.2f)", fld[0], fld[1], best, want_best,
                      want, other);
        } else if (!strcmp(fld[2], "group")) {
            int g = test_index_of(GROUPS, 2, fld[1]);
            CHECK_MSG(g >= 0, "unexpected group %s", fld[1]);
            if (g < 0) continue;
            seen_group++;
            double s = 0;
            int k = 0;
            for (int b = 0; b < N_TASKS; b++)
                if (GROUP_OF_TASK[b] == g) s += task_mean[a][b], k++;
            want = s / k;
            CHECK_MSG(n == k, "%s / %s: n %d, expected %d tasks", fld[0], fld[1], n, k);
            CHECK_MSG(fabs(mean - want) <= 1e-9 * fabs(want), "%s / %s: group mean %.17g, expected %.17g", fld[0], fld[1],
                      mean, want);
        } else if (!strcmp(fld[2], "overall")) {
            seen_overall++;
            double s = 0, sg[2] = {0}, ng[2] = {0};
            for (int b = 0; b < N_TASKS; b++) s += task_mean[a][b], sg[GROUP_OF_TASK[b]] += task_mean[a][b], ng[GROUP_OF_TASK[b]]++;
            want = s / N_TASKS;
            CHECK_MSG(n == N_TASKS, "%s / Overall: n %d", fld[0], n);
            CHECK_MSG(fabs(mean - want) <= 1e-9 * fabs(want), "%s / Overall: %.17g, expected %.17g (mean of the task means)",
                      fld[0], mean, want);
            double of_groups = (sg[0] / ng[0] + sg[1] / ng[1]) / 2;
            if (fabs(of_groups - want) > 1e-6)
                CHECK_MSG(fabs(mean - of_groups) > 1e-9, "%s / Overall equals the mean of the group means", fld[0]);
        } else {
            CHECK_MSG(0, "unexpected kind %s", fld[2]);
        }
    }
    fclose(f);
    CHECK_MSG(seen_task == N_ROWS * N_TASKS && seen_group == N_ROWS * 2 && seen_overall == N_ROWS,
              "CSV lines: %d task, %d group, %d overall", seen_task, seen_group, seen_overall);
    /* the Markdown says it is the quick profile's (no published rows) */
    f = fopen(md, "r");
    CHECK_MSG(f != NULL, "%s missing", md);
    int labelled = 0, paper_rows = 0;
    while (f && fgets(line, sizeof line, f)) {
        labelled |= strstr(line, "profile quick") != NULL;
        paper_rows |= strstr(line, "Tab. 3)") != NULL;
    }
    if (f) fclose(f);
    CHECK_MSG(labelled, "%s does not say 'profile quick'", md);
    CHECK_MSG(!paper_rows, "%s has published rows outside the paper profile", md);
    if (getenv("REPORT_KEEP")) {
        fprintf(stderr, "kept %s\n", tmp);
    } else {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_paper vtab_abm RUNEXP\n");
        return 2;
    }
    RUNEXP = argv[2];
    if (!strcmp(argv[1], "vtab_abm")) vtab_abm_quick();
    else { fprintf(stderr, "unknown test %s\n", argv[1]); return 2; }
    return test_finish(argv[1]);
}
