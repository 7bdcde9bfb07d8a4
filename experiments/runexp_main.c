/* experiments/runexp_main.c: the `runexp` command (docs/runexp.md).
 *   runexp CONFIG [key=value ...] [--profile P | --quick] [--jobs N] [--cell I] [--dry-run] [--force] [--threads N] [--log-every N]
 *          [--gpus G]   (data parallel over G GPUs: experiments/dp.h)
 *   runexp report CONFIG [key=value ...]
 *   runexp status CONFIG [key=value ...]     every run with its state, from the DB and squeue (sweep.h)
 *   runexp query [--db PATH] [--csv] "SQL"
 *   runexp collect DB SHARD.db ...        (merge per-run shard databases)
 *   runexp sweep CONFIG --slurm [...], runexp status CONFIG, runexp collect CONFIG: experiments/sweep.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "experiments/data_cmd.h"
#include "experiments/runner.h"
#include "experiments/sweep.h"
#include "results/db.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: runexp CONFIG.yaml [key=value ...] [--profile P | --quick] [--jobs N] [--cell I] [--dry-run] [--force]\n"
            "              [--threads N]   (--profile P = profile=P: the config's profiles overlay P; --quick = quick)\n"
            "              [--gpus G]      (one run data parallel over G GPUs, NCCL; docs/cluster.md)\n"
            "       runexp report CONFIG.yaml [key=value ...]\n"
            "       runexp status CONFIG.yaml [key=value ...]   (every run: done/running/pending/failed/...)\n"
            "       runexp sweep CONFIG.yaml --slurm [key=value ...] [--retry-failed] [--dry-run] [...]\n"
            "       runexp collect CONFIG.yaml [key=value ...]  (merge results.shard shards into runs.db)\n"
            "       runexp query [--db runs/runs.db] [--csv] \"SELECT ...\"\n"
            "       runexp data mini-vtab --out DIR [--size 32] [--seed S]   (runexp data tasks: the VTAB-1k table)\n"
            "       runexp collect runs/runs.db SHARD.db ...\n"
            "Runs every cell of the experiment not yet finished (resuming interrupted ones), recording to\n"
            "<output>/runs.db and <output>/<name>/<run id>/run.h5. See docs/runexp.md.\n");
}

static int parse_int(const char *flag, const char *v, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < 0 || x > 1000000) {
        fprintf(stderr, "runexp: %s needs a non-negative integer, got '%s'\n", flag, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    Error err = {{0}};
    if (!strcmp(argv[1], "sweep") || !strcmp(argv[1], "status") ||
        (!strcmp(argv[1], "collect") && argc >= 3 && sweep_is_config(argv[2])))
        return sweep_command(argc - 1, argv + 1); /* experiments/sweep.h, docs/cluster.md */
    if (!strcmp(argv[1], "data")) return runexp_data_main(argc - 1, argv + 1); /* experiments/data_cmd.h */
    if (!strcmp(argv[1], "query")) {
        const char *db_path = "runs/runs.db", *sql = NULL;
        int csv = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--db") && i + 1 < argc) db_path = argv[++i];
            else if (!strcmp(argv[i], "--csv")) csv = 1;
            else sql = argv[i];
        }
        if (!sql) { usage(stderr); return 2; }
        Db *db;
        if (db_open(&db, db_path, &err) || db_query_print(db, sql, csv, stdout, &err)) {
            fprintf(stderr, "runexp query: %s\n", err.msg);
            return 1;
        }
        db_close(db);
        return 0;
    }
    if (!strcmp(argv[1], "collect")) {
        if (argc < 4) { usage(stderr); return 2; }
        Db *db;
        if (db_open(&db, argv[2], &err)) { fprintf(stderr, "runexp collect: %s\n", err.msg); return 1; }
        for (int i = 3; i < argc; i++)
            if (db_merge(db, argv[i], &err)) { fprintf(stderr, "runexp collect: %s\n", err.msg); db_close(db); return 1; }
        db_close(db);
        printf("merged %d shard(s) into %s\n", argc - 3, argv[2]);
        return 0;
    }
    int report = !strcmp(argv[1], "report"), status = !strcmp(argv[1], "status");
    int first = report || status ? 2 : 1;
    if (first >= argc) { usage(stderr); return 2; }
    const char *config = argv[first];
    RunnerOptions o = {.cell = -1};
    const char **ov = calloc((size_t)argc, sizeof *ov);
    for (int i = first + 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--jobs")) { if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, &o.jobs)) return 2; }
        else if (!strcmp(a, "--cell")) { if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, &o.cell)) return 2; }
        else if (!strcmp(a, "--threads")) { if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, &o.threads)) return 2; }
        else if (!strcmp(a, "--gpus")) { if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, &o.gpus)) return 2; }
        else if (!strcmp(a, "--log-every")) { if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, &o.log_every)) return 2; }
        else if (!strcmp(a, "--dry-run")) o.dry_run = 1;
        else if (!strcmp(a, "--no-requires")) o.no_requires = 1;
        else if (!strcmp(a, "--force")) o.force = 1;
        else if (!strcmp(a, "--profile") || !strcmp(a, "--quick")) { /* sugar for the override profile=P */
            const char *p = !strcmp(a, "--quick") ? "quick" : i + 1 < argc ? argv[++i] : NULL;
            if (!p) { fprintf(stderr, "runexp: --profile needs a name (e.g. --profile paper)\n"); return 2; }
            char *kv = xmalloc(strlen(p) + 9);
            sprintf(kv, "profile=%s", p);
            ov[o.n_overrides++] = kv; /* lives until exit */
        }
        else if (strchr(a, '=') && a[0] != '-') ov[o.n_overrides++] = a;
        else {
            fprintf(stderr, "runexp: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    o.overrides = ov;
    if (status) o.dry_run = 1; /* runexp status CONFIG: every run of the grid with its state, and the counts */
    int rc = report ? runner_report(config, &o, &err) : runner_run(config, &o, &err);
    free(ov);
    if (rc == 130) { fprintf(stderr, "runexp: interrupted; rerun the same command to continue\n"); return 130; }
    if (rc) { fprintf(stderr, "runexp: %s\n", err.msg); return 1; }
    return 0;
}
