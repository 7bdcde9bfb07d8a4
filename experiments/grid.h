/* experiments/grid.h: from one experiment config to its runs; the canonical text and the run id of a run.
 *
 * Expansion (docs/config.md "Grids"). `grid:` maps config paths to lists of values, a cartesian product;
 * `zip:` maps config paths to lists of one length, walked together (one axis); `seeds: [0, 1, 2]` repeats
 * every cell once per seed. Order, documented and stable: the grid keys in file order, then the zip axis, then
 * the seeds, the LAST varying fastest; run i has cell = i / n_seeds and seed_index = i % n_seeds. Each run's
 * config is the input with grid, zip and seeds removed, the chosen values merged in at their paths (the merge
 * rule of config.h: a map value merges, anything else replaces) and `seed` set (from seeds, else the config's
 * `seed`, else 0). With a schema, its defaults are filled in too (schema_apply_defaults), so the run's config
 * says every value it runs with, and the id changes when a default does.
 *
 * Canonical text: JSON on one line, keys sorted bytewise at every level, null entries left out, numbers in one
 * form (ints and integral floats as integers: 1e3 and 1000 -> 1000; others in the shortest %g that reads back
 * the same double: 1e-3 and 0.001 -> 0.001; .inf, -.inf, .nan), bools true/false, strings quoted with JSON
 * escapes (a quoted "1e-3" stays the string "1e-3"). Run id: the first 16 hex digits of the SHA-256 of the
 * canonical text, leaving out keys the schema marks SK_NOHASH (description, output, report,
 * record.flush_every: they do not change what a run computes). */
#ifndef EXPERIMENTS_GRID_H
#define EXPERIMENTS_GRID_H
#include "experiments/config.h"
#include "experiments/schema.h"

#define GRID_MAX_RUNS 1000000
#define GRID_ID_LEN 16

typedef struct GridRun {
    CfgNode *cfg;           /* the resolved config of this run (owned by the plan) */
    int cell;               /* grid x zip cell, 0-based */
    int seed_index;         /* index into seeds */
    long seed;
    char id[GRID_ID_LEN + 1];
} GridRun;

typedef struct GridPlan {
    GridRun *runs;          /* n_runs = n_cells * n_seeds, in the order above */
    int n_runs, n_cells, n_seeds;
} GridPlan;

/* Expands root (a validated config, includes and overrides applied). schema may be NULL (no defaults, every
 * key hashed). Errors: a grid or zip value that is not a non-empty list, zip lists of different lengths, a key
 * both in grid and zip, a seed that is not an int >= 0 or is repeated, a path through a non-map, more than
 * GRID_MAX_RUNS runs; each naming file:line:col. */
int grid_expand(const CfgNode *root, const SchemaKey *schema, GridPlan *plan, Error *err);
void grid_plan_free(GridPlan *plan);

/* The canonical text (malloc'd). schema: leave out SK_NOHASH keys (NULL: keep everything). */
char *grid_canonical(const CfgNode *cfg, const SchemaKey *schema);
/* id = first GRID_ID_LEN hex digits of sha256(grid_canonical(cfg, schema)). */
void grid_run_id(const CfgNode *cfg, const SchemaKey *schema, char id[GRID_ID_LEN + 1]);
/* A number scalar's canonical text into buf (0), or -1 when s is not a number. */
int grid_canonical_number(const CfgNode *s, char *buf, size_t size);

/* The config as (dotted key, value text) pairs for the params table (results/db.h: db_run_begin takes kv):
 * *kv = {key0, value0, key1, value1, ...} (malloc'd), returns the number of pairs. Keys sorted, nulls left out;
 * a scalar's value is its canonical text unquoted (0.001, true, cosine), a list's is its canonical JSON
 * (["qkv","proj"], [{"name":"t1",...}]). */
int grid_flatten(const CfgNode *cfg, char ***kv);
void grid_flatten_free(char **kv, int n_pairs);
#endif
