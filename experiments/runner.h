/* experiments/runner.h: `runexp CONFIG`: load + validate the config, run the configs it `requires` first,
 * expand the grid, and run every cell x seed that is not finished (resuming interrupted ones from their
 * checkpoint), recording each run in <output>/runs.db (SQLite) and <output>/<name>/<run id>/run.h5 (HDF5).
 * A run's directory holds config.yaml (the resolved config), run.h5, ckpt.safetensors while it runs,
 * model.safetensors / adapter.safetensors when done.
 * SIGINT / SIGTERM: the current step ends, a checkpoint is written, the run is marked 'interrupted' and
 * runexp exits with 130; rerunning the config continues it. */
#ifndef EXPERIMENTS_RUNNER_H
#define EXPERIMENTS_RUNNER_H
#include "core/common.h"

typedef struct RunnerOptions {
    const char *const *overrides; /* "key=value" applied after includes */
    int n_overrides;
    int jobs;          /* > 1: run cells in this many processes */
    int cell;          /* >= 0: run only this grid run index (SLURM array task) */
    int dry_run;       /* list runs and their status, run nothing */
    int force;         /* rerun finished runs */
    int threads;       /* CPU threads per run (0: all / jobs) */
    int log_every;     /* progress line every N steps when not on a TTY (0: 50) */
    int no_requires;   /* do not run the `requires` configs first (sweep array tasks: scheduled before them) */
    int shard;         /* set by the runner from results.shard: each run records into <output>/shards/<id>.db */
    int gpus;          /* > 0: data parallel over this many GPUs, one process each (NCCL; experiments/dp.h) */
} RunnerOptions;

/* Returns 0 when every selected run finished, 1 when some failed, 130 when interrupted, -1 on a config
 * error (err says where). */
int runner_run(const char *config_path, const RunnerOptions *o, Error *err);
/* `runexp report CONFIG`: the config's report: tables and figures from its output's runs.db into
 * <output>/<name>/report/. */
int runner_report(const char *config_path, const RunnerOptions *o, Error *err);
/* Load, apply overrides, validate (files too unless no_files), expand. Exposed for tests and tools. */
struct CfgNode;
struct CfgNode *runner_load_config(const char *config_path, const RunnerOptions *o, int no_files, Error *err);
#endif
