/* experiments/sweep.c: a grid as a SLURM job array, its status, shard collection (sweep.h; docs/cluster.md). */
#include "sweep.h"

#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "grid.h"
#include "results/db.h"
#include "runner.h"
#include "schema.h"

#define SWEEP_PATH_MAX 1024
#define SWEEP_MAX_DEPS 64

typedef struct SweepOptions {
    const char **overrides; /* key=value, passed on to every array task */
    int n_overrides;
    const char *partition, *account, *time, *mem; /* NULL: the config's slurm: value, else SLURM's default */
    long cpus_per_task, gpus_per_task, max_parallel; /* -1: the config's slurm: value, else unset */
    long threads;                                    /* runexp --threads in a task; 0: the task's CPUs */
    int retry_failed, dry_run;
} SweepOptions;

/* What `runexp status` calls a run. */
typedef enum { ST_NEW, ST_PENDING, ST_RUNNING, ST_DONE, ST_FAILED, ST_INTERRUPTED, ST_N } RunState;
static const char *const STATE_NAMES[ST_N] = {"new", "pending", "running", "done", "failed", "interrupted"};

typedef struct {
    DbRunState db;
    RunState state;
    char queue[24]; /* squeue's state of the run's job ("" when not queued or unknown) */
    char note[200];
} RunView;

/* One loaded config: its grid and where it records. */
typedef struct {
    const char *path;
    CfgNode *root;
    const char *name, *out;
    int shard;
    GridPlan plan;
    RunView *views; /* n_runs */
    int squeue_ok;  /* the states come from squeue too */
} Sweep;

/* ---- small helpers ------------------------------------------------------------------------------------------ */

/* s as one shell word: 'it''s' -> 'it'\''s' */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

static int has_space(const char *s) {
    for (; *s; s++)
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') return 1;
    return 0;
}

int sweep_is_config(const char *arg) {
    size_t n = strlen(arg);
    return (n > 5 && !strcmp(arg + n - 5, ".yaml")) || (n > 4 && !strcmp(arg + n - 4, ".yml"));
}

/* ---- loading ------------------------------------------------------------------------------------------------ */
static void sweep_free(Sweep *s) {
    if (s->root) grid_plan_free(&s->plan);
    free(s->views);
    cfg_free(s->root);
    memset(s, 0, sizeof *s);
}

static int sweep_load(Sweep *s, const char *path, const SweepOptions *o, Error *err) {
    memset(s, 0, sizeof *s);
    s->path = path;
    RunnerOptions ro = {.overrides = o->overrides, .n_overrides = o->n_overrides, .cell = -1};
    CfgNode *root = runner_load_config(path, &ro, 1, err);
    if (!root) return -1;
    if (cfg_get_string(root, "name", NULL, &s->name, err) || cfg_get_string(root, "output", "runs", &s->out, err) ||
        cfg_get_bool(root, "results.shard", 0, &s->shard, err) || grid_expand(root, &SCHEMA_EXPERIMENT, &s->plan, err)) {
        cfg_free(root);
        return -1;
    }
    s->root = root;
    s->views = xcalloc((size_t)s->plan.n_runs, sizeof *s->views);
    return 0;
}

static int open_main_db(const Sweep *s, Db **db, Error *err) {
    char p[SWEEP_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/runs.db", s->out);
    if (mkdirs(s->out, err)) return -1;
    return db_open_opts(db, p, &(DbOptions){.shard = s->shard}, err);
}

/* ---- shards ------------------------------------------------------------------------------------------------- */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int sweep_collect_dir(const char *out, int *n_merged, Error *err) {
    *n_merged = 0;
    char dir[SWEEP_PATH_MAX + 16], main_path[SWEEP_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/shards", out);
    snprintf(main_path, sizeof main_path, "%s/runs.db", out);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : err_set(err, "%s: cannot list shards: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".db")) continue;
        if (n == cap) names = xrealloc(names, sizeof *names * (size_t)(cap = cap ? 2 * cap : 64));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    Db *db = NULL;
    int rc = n ? db_open_opts(&db, main_path, &(DbOptions){.shard = 1}, err) : 0;
    for (int i = 0; i < n && !rc; i++) {
        char p[2 * SWEEP_PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        rc = db_merge(db, p, err);
        if (!rc) (*n_merged)++;
    }
    db_close(db);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* ---- the queue ---------------------------------------------------------------------------------------------- */
typedef struct {
    char (*id)[48];
    char (*state)[24];
    int n;
} Queue;

/* This user's jobs, one line per array task ("1234_5 RUNNING"). -1 when squeue is missing or fails. */
static int queue_read(Queue *q) {
    memset(q, 0, sizeof *q);
    struct passwd *pw = getpwuid(getuid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "squeue -h -r -o '%%i %%T' -u '%s' 2>/dev/null", pw ? pw->pw_name : "root");
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[256];
    int cap = 0;
    while (fgets(line, sizeof line, f)) {
        char id[48], st[24];
        if (sscanf(line, "%47s %23s", id, st) != 2) continue;
        if (q->n == cap) {
            cap = cap ? 2 * cap : 64;
            q->id = xrealloc(q->id, sizeof *q->id * (size_t)cap);
            q->state = xrealloc(q->state, sizeof *q->state * (size_t)cap);
        }
        snprintf(q->id[q->n], sizeof q->id[0], "%s", id);
        snprintf(q->state[q->n], sizeof q->state[0], "%s", st);
        q->n++;
    }
    int ws = pclose(f);
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : -1;
}
static const char *queue_find(const Queue *q, const char *job) {
    for (int i = 0; i < q->n; i++)
        if (!strcmp(q->id[i], job)) return q->state[i];
    return NULL;
}

/* The log of array task "A_i" (sbatch --output below). */
static void log_path(const Sweep *s, const char *job, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/slurm/%s-%s.log", s->out, s->name, job);
}

/* Every run's state: the database's, corrected by the queue for runs that have a job. Shards are merged first. */
static int sweep_states(Sweep *s, Error *err) {
    if (s->shard) {
        int merged;
        Error e2;
        if (sweep_collect_dir(s->out, &merged, &e2)) fprintf(stderr, "runexp: collecting shards: %s\n", e2.msg);
    }
    Db *db;
    if (open_main_db(s, &db, err)) return -1;
    int any_job = 0, rc = 0;
    for (int i = 0; i < s->plan.n_runs && !rc; i++) {
        rc = db_run_state(db, s->plan.runs[i].id, &s->views[i].db, err);
        any_job |= s->views[i].db.job_id[0] != 0;
    }
    db_close(db);
    if (rc) return -1;
    Queue q = {0};
    s->squeue_ok = any_job && queue_read(&q) == 0;
    for (int i = 0; i < s->plan.n_runs; i++) {
        RunView *v = &s->views[i];
        const char *st = v->db.status;
        RunState dbst = !st[0]                      ? ST_NEW
                        : !strcmp(st, "done")        ? ST_DONE
                        : !strcmp(st, "running")     ? ST_RUNNING
                        : !strcmp(st, "pending")     ? ST_PENDING
                        : !strcmp(st, "interrupted") ? ST_INTERRUPTED
                                                     : ST_FAILED;
        v->state = dbst;
        if (dbst == ST_FAILED && v->db.error[0]) snprintf(v->note, sizeof v->note, "%.190s", v->db.error);
        if (dbst == ST_DONE || !v->db.job_id[0] || !s->squeue_ok) continue;
        const char *qs = queue_find(&q, v->db.job_id);
        char lp[SWEEP_PATH_MAX + 128];
        log_path(s, v->db.job_id, lp, sizeof lp);
        if (qs) {
            snprintf(v->queue, sizeof v->queue, "%s", qs);
            v->state = !strcmp(qs, "PENDING") || !strcmp(qs, "REQUEUED") || !strcmp(qs, "CONFIGURING") ? ST_PENDING
                                                                                                       : ST_RUNNING;
            if (dbst == ST_FAILED || dbst == ST_INTERRUPTED)
                snprintf(v->note, sizeof v->note, "resubmitted after it was %s", st);
        } else if (dbst == ST_RUNNING) {
            v->state = ST_INTERRUPTED;
            snprintf(v->note, sizeof v->note, "its job ended while it ran (cancelled, time limit, node?): %.120s", lp);
        } else if (dbst == ST_PENDING) {
            v->state = ST_FAILED;
            snprintf(v->note, sizeof v->note, "its job ended before the run began: %.150s", lp);
        }
    }
    free(q.id);
    free(q.state);
    return 0;
}

static void count_states(const Sweep *s, int counts[ST_N]) {
    memset(counts, 0, sizeof(int) * ST_N);
    for (int i = 0; i < s->plan.n_runs; i++) counts[s->views[i].state]++;
}

/* ---- status ------------------------------------------------------------------------------------------------- */
static int status_print(Sweep *s) {
    printf("%s: %d runs (%d cells x %d seeds), output %s%s\n", s->path, s->plan.n_runs, s->plan.n_cells,
           s->plan.n_seeds, s->out, s->shard ? " (sharded)" : "");
    printf("%5s  %-16s  %5s  %5s  %-11s  %-14s  %s\n", "run", "id", "cell", "seed", "state", "job", "note");
    for (int i = 0; i < s->plan.n_runs; i++) {
        const GridRun *r = &s->plan.runs[i];
        const RunView *v = &s->views[i];
        printf("%5d  %-16s  %5d  %5ld  %-11s  %-14s  %s\n", i, r->id, r->cell, r->seed, STATE_NAMES[v->state],
               v->db.job_id[0] ? v->db.job_id : "-", v->note);
    }
    int c[ST_N];
    count_states(s, c);
    printf("done %d, running %d, pending %d, failed %d, interrupted %d, new %d%s\n", c[ST_DONE], c[ST_RUNNING],
           c[ST_PENDING], c[ST_FAILED], c[ST_INTERRUPTED], c[ST_NEW],
           s->squeue_ok ? "" : "  (states from the database only: no job ids or no squeue)");
    return 0;
}

/* ---- sweep -------------------------------------------------------------------------------------------------- */
static const char *opt_str(const Sweep *s, const char *cli, const char *key, Error *err, int *rc) {
    if (cli) return cli;
    const char *v = NULL;
    char k[64];
    snprintf(k, sizeof k, "slurm.%s", key);
    if (cfg_get_string(s->root, k, NULL, &v, err)) *rc = -1;
    return v;
}
static long opt_int(const Sweep *s, long cli, const char *key, Error *err, int *rc) {
    if (cli >= 0) return cli;
    long v = -1;
    char k[64];
    snprintf(k, sizeof k, "slurm.%s", key);
    if (cfg_get_int(s->root, k, -1, &v, err)) *rc = -1;
    return v;
}

/* The running program, for the tasks (an absolute path: the tasks start in the same directory, maybe elsewhere). */
static void self_path(char *buf, size_t cap) {
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0) snprintf(buf, cap, "runexp");
    else buf[n] = 0;
}

/* Runs cmd through the shell; its output (stdout + stderr) into out. Returns the exit status (-1: no shell). */
static int run_capture(const char *cmd, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t len = 0, k;
    while ((k = fread(out + len, 1, cap - 1 - len, f)) > 0) {
        len += k;
        out[len] = 0;
        if (len + 1 >= cap) break;
    }
    char sink[256];
    while (fread(sink, 1, sizeof sink, f) > 0) {}
    int ws = pclose(f);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

typedef struct {
    char ids[SWEEP_MAX_DEPS][48];
    int n;
    int dry; /* --dry-run: a requirement would have been submitted (its job id is not known) */
} Deps;
static void deps_add(Deps *d, const char *id) {
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->ids[i], id)) return;
    if (d->n < SWEEP_MAX_DEPS) snprintf(d->ids[d->n++], sizeof d->ids[0], "%s", id);
    else fprintf(stderr, "runexp sweep: warning: more than %d jobs to wait for; not waiting for %s\n", SWEEP_MAX_DEPS, id);
}

static int sweep_config(const char *path, const SweepOptions *o, int depth, Deps *deps_out, Error *err);

/* A config's `requires`: their unfinished runs are submitted (or found queued) first; deps collects the jobs
 * this config's array must wait for. */
static int sweep_requires(Sweep *s, const SweepOptions *o, int depth, Deps *deps, Error *err) {
    const char **req = NULL;
    int nreq = 0, rc = 0;
    if (cfg_get_strlist(s->root, "requires", &req, &nreq, err)) return -1;
    SweepOptions ro = *o;
    ro.overrides = NULL; /* overrides are this config's, not its requirements' (as in runexp CONFIG) */
    ro.n_overrides = 0;
    for (int i = 0; i < nreq && !rc; i++) {
        printf("== %s requires %s\n", s->path, req[i]);
        rc = sweep_config(req[i], &ro, depth + 1, deps, err);
    }
    free(req);
    return rc;
}

/* Writes the sbatch script for runs[0..n) into script_path. */
static int write_script(const Sweep *s, const SweepOptions *o, const int *runs, int n, const Deps *deps,
                        const char *script_path, Error *err) {
    int rc = 0;
    const char *partition = opt_str(s, o->partition, "partition", err, &rc),
               *account = opt_str(s, o->account, "account", err, &rc), *tlim = opt_str(s, o->time, "time", err, &rc),
               *mem = opt_str(s, o->mem, "mem", err, &rc);
    long cpus = opt_int(s, o->cpus_per_task, "cpus_per_task", err, &rc),
         gpus = opt_int(s, o->gpus_per_task, "gpus_per_task", err, &rc),
         maxp = opt_int(s, o->max_parallel, "max_parallel", err, &rc);
    if (rc) return -1;
    const char *words[] = {partition, account, tlim, mem, s->out, s->name};
    for (size_t i = 0; i < ARRAY_LEN(words); i++)
        if (words[i] && has_space(words[i]))
            return err_set(err, "%s: '%s' has white space, which an #SBATCH line cannot carry; rename it", s->path,
                           words[i]);
    char cwd[SWEEP_PATH_MAX], self[SWEEP_PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return err_set(err, "cannot read the working directory: %s", strerror(errno));
    if (has_space(cwd)) return err_set(err, "%s: the working directory has white space (#SBATCH --chdir)", cwd);
    self_path(self, sizeof self);
    FILE *f = fopen(script_path, "w");
    if (!f) return err_set(err, "%s: cannot write the sbatch script: %s", script_path, strerror(errno));
    fprintf(f, "#!/bin/bash\n");
    fprintf(f, "# written by `runexp sweep %s --slurm` (docs/cluster.md): one array task per run, %d run(s)\n",
            s->path, n);
    fprintf(f, "#SBATCH --job-name=%s\n", s->name);
    fprintf(f, "#SBATCH --array=0-%d", n - 1);
    if (maxp > 0) fprintf(f, "%%%ld", maxp);
    fprintf(f, "\n#SBATCH --output=%s/slurm/%s-%%A_%%a.log\n", s->out, s->name);
    fprintf(f, "#SBATCH --chdir=%s\n", cwd);
    fprintf(f, "#SBATCH --ntasks=1\n");
    if (partition) fprintf(f, "#SBATCH --partition=%s\n", partition);
    if (account) fprintf(f, "#SBATCH --account=%s\n", account);
    if (tlim) fprintf(f, "#SBATCH --time=%s\n", tlim);
    if (mem) fprintf(f, "#SBATCH --mem=%s\n", mem);
    if (cpus > 0) fprintf(f, "#SBATCH --cpus-per-task=%ld\n", cpus);
    if (gpus > 0) fprintf(f, "#SBATCH --gpus-per-task=%ld\n", gpus);
    if (deps->n) {
        fprintf(f, "#SBATCH --dependency=afterok");
        for (int i = 0; i < deps->n; i++) fprintf(f, ":%s", deps->ids[i]);
        fprintf(f, "\n");
    }
    if (deps->dry) fprintf(f, "# (submitted for real, this array would wait for the arrays of its `requires`)\n");
    fprintf(f, "set -eu\n");
    fprintf(f, "# array index -> grid run index (the `run` column of `runexp status %s`)\n", s->path);
    fprintf(f, "RUNS=(");
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? " " : "", runs[i]);
    fprintf(f, ")\n");
    fprintf(f, "run=${RUNS[$SLURM_ARRAY_TASK_ID]}\n");
    fprintf(f, "echo \"runexp sweep: array task $SLURM_ARRAY_TASK_ID -> run $run on $(hostname)\"\n");
    fprintf(f, "exec ");
    put_quoted(f, self);
    fputc(' ', f);
    put_quoted(f, s->path);
    for (int i = 0; i < o->n_overrides; i++) {
        fputc(' ', f);
        put_quoted(f, o->overrides[i]);
    }
    fprintf(f, " --cell \"$run\" --no-requires");
    if (o->threads > 0) fprintf(f, " --threads %ld\n", o->threads);
    else fprintf(f, " --threads \"${SLURM_CPUS_PER_TASK:-1}\"\n");
    if (fclose(f)) return err_set(err, "%s: cannot write the sbatch script: %s", script_path, strerror(errno));
    chmod(script_path, 0755);
    return 0;
}

static int sweep_config(const char *path, const SweepOptions *o, int depth, Deps *deps_out, Error *err) {
    if (depth > 8) return err_set(err, "%s: 'requires' nests deeper than 8 configs (a cycle?)", path);
    Sweep s;
    if (sweep_load(&s, path, o, err)) return -1;
    int rc = sweep_states(&s, err);
    int *runs = xcalloc((size_t)s.plan.n_runs + 1, sizeof *runs), n = 0, left_failed = 0, active = 0;
    Deps deps = {0};
    for (int i = 0; !rc && i < s.plan.n_runs; i++) {
        RunState st = s.views[i].state;
        if (st == ST_NEW || (o->retry_failed && (st == ST_FAILED || st == ST_INTERRUPTED))) runs[n++] = i;
        else if (st == ST_FAILED || st == ST_INTERRUPTED) left_failed++;
        else if (st == ST_PENDING || st == ST_RUNNING) {
            active++;
            if (depth > 0 && s.views[i].db.job_id[0]) deps_add(deps_out, s.views[i].db.job_id);
        }
    }
    int c[ST_N];
    count_states(&s, c);
    if (!rc)
        printf("%s: %d runs: done %d, running %d, pending %d, failed %d, interrupted %d, new %d\n", path,
               s.plan.n_runs, c[ST_DONE], c[ST_RUNNING], c[ST_PENDING], c[ST_FAILED], c[ST_INTERRUPTED], c[ST_NEW]);
    if (!rc && depth > 0 && left_failed)
        rc = err_set(err, "%s is required but %d of its runs failed or were interrupted; `runexp sweep %s --slurm "
                     "--retry-failed` resubmits them (`runexp status %s` shows why they stopped)",
                     path, left_failed, path, path);
    if (!rc && n > 0) rc = sweep_requires(&s, o, depth, &deps, err);
    if (!rc && n == 0) {
        printf("%s: nothing to submit%s\n", path,
               left_failed && !o->retry_failed ? " (failed or interrupted runs: add --retry-failed)" : "");
    }
    if (!rc && n > 0) {
        char dir[SWEEP_PATH_MAX + 16], script[SWEEP_PATH_MAX + 128], stamp[32];
        snprintf(dir, sizeof dir, "%s/slurm", s.out);
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        rc = mkdirs(dir, err);
        for (int k = 1; !rc; k++) { /* a fresh name: two sweeps in one second keep both scripts */
            if (k == 1) snprintf(script, sizeof script, "%s/%s-%s.sbatch", dir, s.name, stamp);
            else snprintf(script, sizeof script, "%s/%s-%s-%d.sbatch", dir, s.name, stamp, k);
            if (access(script, F_OK)) break;
        }
        if (!rc) rc = write_script(&s, o, runs, n, &deps, script, err);
        if (!rc && o->dry_run) {
            deps_out->dry = 1;
            printf("%s: would submit %d run(s) as a job array (--dry-run; nothing submitted): %s\n", path, n, script);
            FILE *f = fopen(script, "r");
            char line[4096];
            while (f && fgets(line, sizeof line, f)) fputs(line, stdout);
            if (f) fclose(f);
        } else if (!rc) {
            char cmd[2 * SWEEP_PATH_MAX], out[4096];
            snprintf(cmd, sizeof cmd, "sbatch --parsable '%s' 2>&1", script);
            int ex = run_capture(cmd, out, sizeof out);
            /* --parsable prints "jobid" or "jobid;cluster", possibly after warnings: the last line */
            char *last = out, *p;
            size_t len = strlen(out);
            while (len && (out[len - 1] == '\n' || out[len - 1] == '\r')) out[--len] = 0;
            if ((p = strrchr(out, '\n'))) last = p + 1;
            long job = strtol(last, &p, 10);
            if (ex != 0 || job <= 0 || (*p && *p != ';'))
                rc = err_set(err, "sbatch %s failed (exit %d)%s%s%s", script, ex, out[0] ? ": " : "", out,
                             ex == 127 ? " (is SLURM's sbatch on PATH?)" : "");
            else {
                printf("%s: submitted %d run(s) as job array %ld (%s; logs %s/%s-%ld_<i>.log)\n", path, n, job, script,
                       dir, s.name, job);
                Db *db = NULL;
                int64_t exp_id = 0;
                rc = open_main_db(&s, &db, err) || db_experiment(db, s.name, path, &exp_id, err) ? -1 : 0;
                for (int i = 0; i < n && !rc; i++) {
                    const GridRun *r = &s.plan.runs[runs[i]];
                    char jid[48];
                    snprintf(jid, sizeof jid, "%ld_%d", job, i);
                    rc = db_run_submitted(db, r->id, exp_id, r->cell, (int)r->seed, jid, err);
                }
                db_close(db);
                if (rc) {
                    Error e = *err;
                    err_set(err, "job array %ld IS submitted, but its job ids could not be recorded (a sweep before "
                            "its runs start would submit them again; `scancel %ld` to undo): %s", job, job, e.msg);
                }
                char whole[32];
                snprintf(whole, sizeof whole, "%ld", job);
                if (!rc && depth > 0) deps_add(deps_out, whole);
            }
        }
    }
    if (!rc && active && depth == 0) printf("%s: %d run(s) queued or running, left alone\n", path, active);
    free(runs);
    sweep_free(&s);
    return rc;
}

/* ---- the command line --------------------------------------------------------------------------------------- */
static void usage(FILE *f) {
    fprintf(f, "usage: runexp sweep CONFIG.yaml --slurm [key=value ...] [--partition P] [--account A] [--time T]\n"
               "                    [--mem M] [--cpus-per-task C] [--gpus-per-task G] [--max-parallel K] [--threads N]\n"
               "                    [--retry-failed] [--dry-run]\n"
               "       runexp status CONFIG.yaml [key=value ...]\n"
               "       runexp collect CONFIG.yaml [key=value ...]\n"
               "See docs/cluster.md.\n");
}

static int parse_count(const char *flag, const char *v, long min, long *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < min || x > 1000000) {
        fprintf(stderr, "runexp: %s needs an integer >= %ld, got '%s'\n", flag, min, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int sweep_command(int argc, char **argv) {
    const char *cmd = argv[0];
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    const char *config = argv[1];
    SweepOptions o = {.cpus_per_task = -1, .gpus_per_task = -1, .max_parallel = -1};
    o.overrides = xcalloc((size_t)argc, sizeof *o.overrides);
    int slurm = 0, bad = 0, is_sweep = !strcmp(cmd, "sweep");
    for (int i = 2; i < argc && !bad; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--profile") || !strcmp(a, "--quick")) { /* sugar for the override profile=P */
            const char *p = !strcmp(a, "--quick") ? "quick" : v;
            if (!p) { fprintf(stderr, "runexp %s: --profile needs a name\n", cmd); bad = -1; break; }
            if (p == v) i++;
            char *kv = xmalloc(strlen(p) + 9);
            sprintf(kv, "profile=%s", p);
            o.overrides[o.n_overrides++] = kv; /* lives until exit */
        }
        else if (!is_sweep && strchr(a, '=') && a[0] != '-') o.overrides[o.n_overrides++] = a;
        else if (!is_sweep) bad = 1;
        else if (strchr(a, '=') && a[0] != '-') o.overrides[o.n_overrides++] = a;
        else if (!strcmp(a, "--slurm")) slurm = 1;
        else if (!strcmp(a, "--retry-failed")) o.retry_failed = 1;
        else if (!strcmp(a, "--dry-run")) o.dry_run = 1;
        else if (!strcmp(a, "--partition") || !strcmp(a, "--account") || !strcmp(a, "--time") || !strcmp(a, "--mem")) {
            if (!v) {
                fprintf(stderr, "runexp sweep: %s needs a value\n", a);
                bad = -1;
                break;
            }
            *(a[2] == 'p' ? &o.partition : a[2] == 'a' ? &o.account : a[2] == 't' ? &o.time : &o.mem) = argv[++i];
        }
        else if (!strcmp(a, "--cpus-per-task")) bad = parse_count(a, v, 1, &o.cpus_per_task), i++;
        else if (!strcmp(a, "--gpus-per-task")) bad = parse_count(a, v, 0, &o.gpus_per_task), i++;
        else if (!strcmp(a, "--max-parallel")) bad = parse_count(a, v, 1, &o.max_parallel), i++;
        else if (!strcmp(a, "--threads")) bad = parse_count(a, v, 1, &o.threads), i++;
        else bad = 1;
        if (bad == 1) fprintf(stderr, "runexp %s: unknown argument '%s'\n", cmd, a);
    }
    if (!bad && is_sweep && !slurm) {
        fprintf(stderr, "runexp sweep: say where: --slurm (the only scheduler so far; on one machine use "
                        "`runexp CONFIG --jobs N`)\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        free(o.overrides);
        return 2;
    }
    Error err = {{0}};
    int rc = 0;
    if (is_sweep) {
        Deps none = {0};
        rc = sweep_config(config, &o, 0, &none, &err);
    } else {
        Sweep s;
        rc = sweep_load(&s, config, &o, &err);
        if (!rc && !strcmp(cmd, "status")) {
            rc = sweep_states(&s, &err);
            if (!rc) status_print(&s);
        } else if (!rc) {
            int merged = 0;
            rc = sweep_collect_dir(s.out, &merged, &err);
            if (!rc) printf("merged %d shard(s) from %s/shards into %s/runs.db\n", merged, s.out, s.out);
        }
        if (s.root) sweep_free(&s);
    }
    free(o.overrides);
    if (rc) {
        fprintf(stderr, "runexp %s: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}
