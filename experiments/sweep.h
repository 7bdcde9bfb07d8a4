/* experiments/sweep.h: an experiment's grid on a cluster (docs/cluster.md).
 *
 *   runexp sweep CONFIG --slurm [key=value ...] [--partition P] [--account A] [--time T] [--mem M]
 *                [--cpus-per-task C] [--gpus-per-task G] [--max-parallel K] [--threads N] [--retry-failed] [--dry-run]
 *   runexp status CONFIG [key=value ...]
 *   runexp collect CONFIG [key=value ...]
 *
 * sweep writes <output>/slurm/<name>-<time>.sbatch: a job array with one task per run to submit (array index i
 * runs grid run RUNS[i], the index `runexp status` shows; `%K` throttles), each task running
 * `runexp CONFIG [key=value ...] --cell <run> --no-requires --threads <cpus>` with its log in
 * <output>/slurm/<name>-<array job>_<i>.log, then submits it with `sbatch --parsable` (--dry-run: writes and
 * prints it only) and records "<array job>_<i>" as each run's runs.job_id. Runs submitted:
 *   plain         runs the database does not know ('new'); runs done, queued or running are left alone
 *   --retry-failed runs that failed or were interrupted, including runs whose job is gone while the database
 *                 still says 'running' (killed, time limit, node failure) or 'pending' (the job ended before
 *                 the run began)
 * A config that `requires` others submits their unfinished runs first and depends on them (afterok).
 * Options left out come from the config's `slurm:` section, else SLURM's defaults.
 *
 * status prints every run of the grid: done / running / pending / failed / interrupted / new, from the database
 * and, for runs with a job id, from squeue when it answers (a run whose job is no longer queued is not
 * running, whatever the database says).
 *
 * results.shard: every run records into <output>/shards/<run id>.db; status and sweep merge the shards into
 * <output>/runs.db first (db_merge: idempotent), and `runexp collect CONFIG` does only that. */
#ifndef EXPERIMENTS_SWEEP_H
#define EXPERIMENTS_SWEEP_H
#include "core/common.h"

/* The `sweep`, `status` and `collect CONFIG` subcommands: argv[0] is the subcommand. Returns the exit status
 * (0 ok, 1 error, 2 bad command line); errors are printed. */
int sweep_command(int argc, char **argv);
/* Whether `runexp collect ARG ...` names a config (YAML) rather than a database. */
int sweep_is_config(const char *arg);
/* Merges every <out>/shards/<name>.db into <out>/runs.db (in name order); *n_merged counts them. No shards folder:
 * nothing to do. */
int sweep_collect_dir(const char *out, int *n_merged, Error *err);
#endif
