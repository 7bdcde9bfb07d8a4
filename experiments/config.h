/* experiments/config.h: the config tree an experiment YAML file becomes (docs/config.md).
 *
 * A tree of nodes: maps (entries in file order, unique keys), lists and scalars. A scalar keeps its text as
 * written; its type is decided on use, after YAML 1.2's core schema: a quoted (or block) scalar is always a
 * string; a plain one is null (``, `~`, `null`), a bool (`true`/`false`, also True/TRUE/...), an int
 * (`-12`), a float (`1e-3`, `.5`, `.inf`, `.nan`) or else a string. Every node and every map key keeps the
 * file, line and column (1-based) it came from, so each error can name them.
 *
 * cfg_load reads a file with libyaml and resolves its top-level `include:` (a path or a list of paths,
 * relative to the including file's folder): the fragments are loaded first, in order (each one's own
 * includes too), deep-merged, and the including file is merged over them. Merge rule everywhere (includes,
 * overrides, grid values): maps merge key by key, recursively; a list or scalar replaces what was there.
 * A null value means "unset": getters return their default for it (and grid.h leaves it out of the run id).
 *
 * Ownership: a node owns its children and strings; cfg_free frees the whole tree. Functions that can fail on
 * input return 0 / -1 (or a node / NULL) and fill err with "file:line:col: what was expected, found what". */
#ifndef EXPERIMENTS_CONFIG_H
#define EXPERIMENTS_CONFIG_H
#include "core/common.h"

struct SchemaKey; /* experiments/schema.h */

typedef enum { CFG_SCALAR = 0, CFG_MAP = 1, CFG_LIST = 2 } CfgKind;
/* What a scalar means (cfg_scalar_type). */
typedef enum { CFG_NULL = 0, CFG_BOOL, CFG_INT, CFG_FLOAT, CFG_STRING } CfgScalarType;

typedef struct CfgNode CfgNode;
typedef struct CfgEntry {
    char *key;
    char *file;        /* where the key was written */
    int line, col;
    CfgNode *val;
} CfgEntry;

struct CfgNode {
    CfgKind kind;
    char *text;        /* CFG_SCALAR: the text as written (unescaped); NULL for maps and lists */
    int quoted;        /* CFG_SCALAR: quoted, literal or folded, or tagged !!str: always a string */
    char *file;        /* source file, or "command line 'a.b=1'" for an override */
    int line, col;     /* 1-based */
    int n, cap;        /* entries (CFG_MAP) or items (CFG_LIST) */
    CfgEntry *entries; /* CFG_MAP */
    CfgNode **items;   /* CFG_LIST */
};

/* ---- loading -------------------------------------------------------------------------------------------- */
/* A YAML file with its includes resolved; the root is always a map (an empty file gives an empty map). */
CfgNode *cfg_load(const char *path, Error *err);
/* One YAML document from a file or a string, includes NOT resolved (name is used in messages). */
CfgNode *cfg_parse_file(const char *path, Error *err);
CfgNode *cfg_parse_string(const char *text, const char *name, Error *err);
/* A YAML value (scalar, flow list `[1, 2]`, flow map) as on a command line; locations are reported as
 * file:line:(col + offset in text). Empty text is a null scalar. */
CfgNode *cfg_parse_value(const char *text, const char *file, int line, int col, Error *err);

/* ---- command-line overrides ------------------------------------------------------------------------------- */
/* Applies "a.b.c=value" (value parsed by cfg_parse_value, merged onto the tree by the merge rule). Missing
 * maps on the way are created. A key that is neither in the tree nor known to the schema is an error with a
 * did-you-mean (schema NULL: any key is allowed). Where the schema says a map is keyed by config paths (grid,
 * zip), the rest of the path is one key: `grid.method.rank=[4,8]` sets grid["method.rank"]. A failed override
 * leaves the tree as it was. */
int cfg_override(CfgNode *root, const char *assignment, const struct SchemaKey *schema, Error *err);

/* ---- access -------------------------------------------------------------------------------------------- */
/* The node at a dotted path ("trainer.lr"), NULL when a part is missing or not a map. */
CfgNode *cfg_get(const CfgNode *root, const char *path);
/* Typed getters. An absent key or a null value gives def. A value of the wrong type is an error
 * "file:line:col: trainer.lr: expected float, found 'abc'". An int accepts integral floats (`1e4`); a double
 * accepts ints. *out of cfg_get_string points into the tree (or is def). */
int cfg_get_int(const CfgNode *root, const char *path, long def, long *out, Error *err);
int cfg_get_double(const CfgNode *root, const char *path, double def, double *out, Error *err);
int cfg_get_bool(const CfgNode *root, const char *path, int def, int *out, Error *err);
int cfg_get_string(const CfgNode *root, const char *path, const char *def, const char **out, Error *err);
/* A list of scalars: *out is a malloc'd array of *n pointers into the tree (free the array only); an absent
 * key gives *out = NULL, *n = 0. */
int cfg_get_strlist(const CfgNode *root, const char *path, const char ***out, int *n, Error *err);

/* ---- scalars ------------------------------------------------------------------------------------------- */
CfgScalarType cfg_scalar_type(const CfgNode *s);
int cfg_is_null(const CfgNode *n); /* NULL pointer or a null scalar */
/* 0 when the node is a number of that kind (as cfg_get_int / cfg_get_double accept), else -1. */
int cfg_as_int(const CfgNode *s, long *out);
int cfg_as_double(const CfgNode *s, double *out);
int cfg_as_bool(const CfgNode *s, int *out);
/* "file:line:col" of a node into buf. */
const char *cfg_where(const CfgNode *n, char *buf, size_t size);
/* "a map", "a list", "null", or the scalar's text quoted ('abc'), for "found ..." in messages. */
const char *cfg_describe(const CfgNode *n, char *buf, size_t size);

/* ---- building and editing -------------------------------------------------------------------------------- */
CfgNode *cfg_new_map(const char *file, int line, int col);
CfgNode *cfg_new_list(const char *file, int line, int col);
CfgNode *cfg_new_scalar(const char *text, int quoted, const char *file, int line, int col);
CfgNode *cfg_clone(const CfgNode *n);
void cfg_free(CfgNode *n);
CfgEntry *cfg_map_find(const CfgNode *map, const char *key);
CfgNode *cfg_map_get(const CfgNode *map, const char *key);
/* Sets map[key] = val (taking ownership; an old value is freed); key location = where (may be NULL: val's). */
void cfg_map_set(CfgNode *map, const char *key, CfgNode *val, const CfgNode *where);
/* Removes and frees map[key]; returns 1 if it was there. */
int cfg_map_remove(CfgNode *map, const char *key);
void cfg_list_push(CfgNode *list, CfgNode *item);
/* Merges src into *dst by the merge rule (maps recursively, anything else replaces); takes src. */
void cfg_merge(CfgNode **dst, CfgNode *src);
/* Merges val at the dotted path (missing maps created; takes val). Fails when a part on the way is not a map. */
int cfg_set_path(CfgNode *root, const char *path, CfgNode *val, Error *err);
/* Writes the tree as block YAML (file order, no comments), for --dry-run and logs. */
void cfg_dump(FILE *f, const CfgNode *n);
/* Writes text as a double-quoted string with JSON escapes (\" \\ \n \t \u00XX), valid in YAML and JSON. */
void cfg_write_quoted(FILE *f, const char *text);
#endif
