/* tests/test_paper_cnn.c: the CNN paper config's quick profile end to end (SKIP without Fashion-MNIST).
 *   it_lava_toy_quick  `runexp configs/lava_toy.yaml --quick` (mini svhn, the small ResNet and VGG, reshape-involved
 *                      LoRA / reshape-free LAVA / full fine-tuning, 1 epoch, 1 seed) into a temp folder, then
 *                      `runexp report`. Checked against numbers computed here, not by the runner:
 *                      - adapter_params of every adapter run equals the closed form over the adapted convs
 *                        (reshape-LoRA r (C_out + C_in k^2), LAVA's CP adapter R (C_out + C_in + 2k)) and
 *                        model_params the backbone's parameter count from its layer shapes (BN statistics not
 *                        counted), so trainable_pct = 100 (adapters + head) / model_params, and FT's is 100;
 *                      - the report's CSVs (lava_toy_acc, lava_toy_trainable): each cell's run ids are the
 *                        database's done runs of that (variant, CNN), its mean the run's value (x 100 for accuracy),
 *                        the best flag on each column's largest (smallest for the trainable share) after rounding,
 *                        and no published rows outside the paper profile.
 * Usage: test_paper_cnn lava_toy RUNEXP. Runs in the repository; the pretrained CNNs are used when runs/models has
 * them, else the backbones start from their seed (the check is of the pipeline and the counts, not the accuracy).
 * REPORT_KEEP=1 keeps the temp folder. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/db_read.h"
#include "testlib.h"

#define REPO_DIR TEST_DATA_DIR "/../../"
#define N_ROWS 3
#define N_CNN 2
#define K_CLASSES 10 /* mini svhn */
#define RANK 4       /* lava_toy.yaml method.rank */

static const char *RUNEXP;
static const char *const ROWS[N_ROWS] = {"Reshape-involved", "Reshape-free", "FT"};
static const char *const CNNS[N_CNN] = {"resnet", "vgg"};

/* The convs of configs/backbones/{resnet,vgg}_small.yaml (width 16, 3 stages, 28x28x1): C_in, C_out, k, adapted
 * by `*.*` (every conv but the ResNet stem), has a bias (VGG convs; ResNet convs with batch norm have none). */
typedef struct { int cin, cout, k, adapted, bias; } Conv;
static const Conv RESNET[] = {{1, 16, 3, 0, 0},  {16, 16, 3, 1, 0}, {16, 16, 3, 1, 0}, {16, 32, 3, 1, 0},
                              {32, 32, 3, 1, 0}, {16, 32, 1, 1, 0}, {32, 64, 3, 1, 0}, {64, 64, 3, 1, 0},
                              {32, 64, 1, 1, 0}};
static const Conv VGG[] = {{1, 16, 3, 1, 1},  {16, 16, 3, 1, 1}, {16, 32, 3, 1, 1},
                           {32, 32, 3, 1, 1}, {32, 64, 3, 1, 1}, {64, 64, 3, 1, 1}};

/* every conv + its batch norm (weight, bias) + the head (64 K + K) */
static double model_params(const Conv *c, int n) {
    double p = 64.0 * K_CLASSES + K_CLASSES;
    for (int i = 0; i < n; i++) p += (double)c[i].cout * c[i].cin * c[i].k * c[i].k + (c[i].bias ? c[i].cout : 0) + 2.0 * c[i].cout;
    return p;
}
static double adapter_params(const Conv *c, int n, int cp) {
    double p = 0;
    for (int i = 0; i < n; i++)
        if (c[i].adapted) p += cp ? RANK * (double)(c[i].cout + c[i].cin + 2 * c[i].k) : RANK * (double)(c[i].cout + c[i].cin * c[i].k * c[i].k);
    return p;
}

typedef struct {
    char id[32];
    double acc, pct;
} Cell;

/* The report CSV `path` against cells (value = acc or pct): ids, means, best flags (largest, or smallest when
 * lower); decimals as the table's. Returns the number of task lines seen. */
static int check_csv(const char *path, Cell cells[N_ROWS][N_CNN], int pct, int lower, int decimals) {
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "%s missing", path);
    if (!f) return 0;
    char line[2048], *fld[12];
    CHECK(fgets(line, sizeof line, f) && test_csv_split(line, fld, 12) == 10 && !strcmp(fld[4], "mean"));
    int seen = 0;
    double scale = pow(10, decimals);
    while (fgets(line, sizeof line, f)) {
        int nf = test_csv_split(line, fld, 12);
        CHECK_MSG(nf == 10, "%s: CSV line with %d fields", path, nf);
        if (nf != 10) continue;
        CHECK_MSG(!strcmp(fld[3], "ours"), "%s: source %s outside the paper profile", path, fld[3]);
        int a = test_index_of(ROWS, N_ROWS, fld[0]), b = test_index_of(CNNS, N_CNN, fld[1]);
        CHECK_MSG(a >= 0 && b >= 0 && !strcmp(fld[2], "task"), "%s: unexpected line %s / %s / %s", path, fld[0], fld[1],
                  fld[2]);
        if (a < 0 || b < 0) continue;
        seen++;
        const Cell *c = &cells[a][b];
        double want = pct ? c->pct : 100 * c->acc, mean = atof(fld[4]);
        CHECK_MSG(fabs(mean - want) <= 1e-9 * fabs(want), "%s: %s / %s: mean %.17g, database %.17g", path, fld[0], fld[1],
                  mean, want);
        CHECK_MSG(atoi(fld[6]) == 1 && !strcmp(fld[9], c->id), "%s: %s / %s: n %s, runs '%s' (database %s)", path, fld[0],
                  fld[1], fld[6], fld[9], c->id);
        int best = 1;
        for (int k = 0; k < N_ROWS; k++) {
            double o = pct ? cells[k][b].pct : 100 * cells[k][b].acc;
            if (lower ? round(o * scale) < round(want * scale) : round(o * scale) > round(want * scale)) best = 0;
        }
        CHECK_MSG(atoi(fld[7]) == best, "%s: %s / %s: best %s, expected %d", path, fld[0], fld[1], fld[7], best);
    }
    fclose(f);
    return seen;
}

static void lava_toy_quick(void) {
    if (access("/usr/share/datasets/fashion-mnist", F_OK) != 0) {
        fprintf(stderr, "SKIP: /usr/share/datasets/fashion-mnist missing (package dataset-fashion-mnist)\n");
        exit(TEST_SKIP);
    }
    if (chdir(REPO_DIR) != 0) { perror(REPO_DIR); exit(1); }
    char tmp[] = "/tmp/it_lava_toy_XXXXXX";
    ASSERT(mkdtemp(tmp));
    char out[64], log[96], csv_acc[160], csv_pct[160], db[96];
    snprintf(out, sizeof out, "output=%s", tmp);
    snprintf(log, sizeof log, "%s/runexp.log", tmp);
    snprintf(csv_acc, sizeof csv_acc, "%s/lava_toy/report-quick/lava_toy_acc.csv", tmp);
    snprintf(csv_pct, sizeof csv_pct, "%s/lava_toy/report-quick/lava_toy_trainable.csv", tmp);
    snprintf(db, sizeof db, "%s/runs.db", tmp);
    int have = access("runs/models/resnet_small_fmnist.safetensors", R_OK) == 0 &&
               access("runs/models/vgg_small_fmnist.safetensors", R_OK) == 0;
    if (!have) fprintf(stderr, "note: runs/models/{resnet,vgg}_small_fmnist.safetensors missing: random backbones\n");
    /* without the checkpoints: the same backbones from their seeds (the report needs the same override: it
     * covers the run ids of the config as given) */
    const char *random_backbones = have ? NULL : "grid.backbone=[{cnn: {kind: resnet, blocks_per_stage: 1}}, "
                                                 "{cnn: {kind: vgg, blocks_per_stage: 2}}]";
    const char *args[] = {"configs/lava_toy.yaml", "--quick", out, "--no-requires", "--threads", "1", random_backbones,
                          NULL};
    int rc = test_run_to_log(RUNEXP, log, args);
    CHECK_MSG(rc == 0, "runexp --quick exited with %d", rc);
    const char *rargs[] = {"report", "configs/lava_toy.yaml", "--quick", out, random_backbones, NULL};
    if (rc == 0) {
        rc = test_run_to_log(RUNEXP, log, rargs);
        CHECK_MSG(rc == 0, "runexp report --quick exited with %d", rc);
    }
    if (rc != 0) {
        test_print_file(log);
        test_finish("it_lava_toy_quick");
        exit(1);
    }

    /* the database, read without the report's code, against the closed-form counts */
    Cell cells[N_ROWS][N_CNN];
    memset(cells, 0, sizeof cells);
    int n_cell[N_ROWS][N_CNN] = {{0}};
    DbReader *r = NULL;
    Error e;
    DbRunList runs = {0};
    const char *keys[] = {"method.params.variant", "backbone.cnn.kind"};
    CHECK_MSG(db_read_open(&r, db, &e) == 0, "%s", e.msg);
    CHECK_MSG(r && db_read_runs(r, "lava_toy", NULL, keys, 2, &runs, &e) == 0, "%s", e.msg);
    CHECK_MSG(runs.n == N_ROWS * N_CNN, "%d runs in the database, expected %d", runs.n, N_ROWS * N_CNN);
    for (int i = 0; i < runs.n; i++) {
        CHECK_MSG(!strcmp(runs.status[i], "done"), "run %s is %s", runs.id[i], runs.status[i]);
        const char *var = runs.param[2 * i], *kind = runs.param[2 * i + 1];
        int a = var ? test_index_of(ROWS, N_ROWS, var) : -1, b = kind ? test_index_of(CNNS, N_CNN, kind) : -1;
        CHECK_MSG(a >= 0 && b >= 0, "run %s: variant %s, cnn %s", runs.id[i], var ? var : "-", kind ? kind : "-");
        if (a < 0 || b < 0) continue;
        Cell *c = &cells[a][b];
        n_cell[a][b]++;
        snprintf(c->id, sizeof c->id, "%s", runs.id[i]);
        double acc, pct, ap, mp, tp;
        int f1, f2, f3, f4, f5;
        CHECK(db_read_result(r, runs.id[i], "test_acc", &acc, NULL, &f1, &e) == 0 &&
              db_read_result(r, runs.id[i], "trainable_pct", &pct, NULL, &f2, &e) == 0 &&
              db_read_result(r, runs.id[i], "adapter_params", &ap, NULL, &f3, &e) == 0 &&
              db_read_result(r, runs.id[i], "model_params", &mp, NULL, &f4, &e) == 0 &&
              db_read_result(r, runs.id[i], "trainable_params", &tp, NULL, &f5, &e) == 0);
        CHECK_MSG(f1 && f2 && f3 && f4 && f5, "run %s: a result is missing", runs.id[i]);
        c->acc = acc, c->pct = pct;
        const Conv *cv = b == 0 ? RESNET : VGG;
        int nc = b == 0 ? (int)ARRAY_LEN(RESNET) : (int)ARRAY_LEN(VGG);
        double want_mp = model_params(cv, nc), head = 64.0 * K_CLASSES + K_CLASSES;
        double want_ap = a == 2 ? 0 : adapter_params(cv, nc, a == 1);
        double want_tp = a == 2 ? want_mp : want_ap + head;
        CHECK_MSG(mp == want_mp, "%s / %s: model_params %.0f, expected %.0f", var, kind, mp, want_mp);
        CHECK_MSG(ap == want_ap, "%s / %s: adapter_params %.0f, expected %.0f", var, kind, ap, want_ap);
        CHECK_MSG(tp == want_tp, "%s / %s: trainable_params %.0f, expected %.0f", var, kind, tp, want_tp);
        CHECK_MSG(fabs(pct - 100 * want_tp / want_mp) <= 1e-12 * 100, "%s / %s: trainable_pct %.17g, expected %.17g",
                  var, kind, pct, 100 * want_tp / want_mp);
        CHECK_MSG(acc >= 0 && acc <= 1, "%s / %s: test_acc %g", var, kind, acc);
        fprintf(stderr, "%s / %s: adapters %.0f, backbone %.0f, trainable %.3f%%, test_acc %.4f\n", var, kind, ap, mp,
                pct, acc);
    }
    db_run_list_free(&runs);
    db_read_close(r);
    for (int a = 0; a < N_ROWS; a++)
        for (int b = 0; b < N_CNN; b++) CHECK_MSG(n_cell[a][b] == 1, "%s / %s: %d runs", ROWS[a], CNNS[b], n_cell[a][b]);
    /* lava_toy.yaml: accuracy with 2 decimals, largest best; trainable share with 2 decimals, smallest best */
    CHECK_MSG(check_csv(csv_acc, cells, 0, 0, 2) == N_ROWS * N_CNN, "%s: not every cell", csv_acc);
    CHECK_MSG(check_csv(csv_pct, cells, 1, 1, 2) == N_ROWS * N_CNN, "%s: not every cell", csv_pct);
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
        fprintf(stderr, "usage: test_paper_cnn lava_toy RUNEXP\n");
        return 2;
    }
    RUNEXP = argv[2];
    if (!strcmp(argv[1], "lava_toy")) lava_toy_quick();
    else {
        fprintf(stderr, "unknown test %s\n", argv[1]);
        return 2;
    }
    return test_finish(argv[1]);
}
