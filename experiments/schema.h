/* experiments/schema.h: what a config may contain, and the check of a tree against it (docs/config.md).
 *
 * A schema is a static C table of SchemaKey: each key has a name, a type, flags (required, range, a path that
 * must exist, left out of the run id), a default (YAML text) and, for maps, the table of its keys.
 * SCHEMA_EXPERIMENT (schema.c) describes an experiment file; add a key there (docs/config.md says how).
 *
 * schema_validate walks the tree and collects every error (up to SCHEMA_MAX_ERRORS), each one
 * "file:line:col: what, expected, found": unknown keys (with "did you mean" for a sibling within Damerau-
 * Levenshtein distance 2), wrong types, values out of range, enum values not allowed (listing the allowed
 * ones), missing required keys, paths that do not exist, and grid/zip keys that name no config key. */
#ifndef EXPERIMENTS_SCHEMA_H
#define EXPERIMENTS_SCHEMA_H
#include "experiments/config.h"

typedef enum {
    SCHEMA_ANY = 0, /* anything, not checked (free-form sections: method.params) */
    SCHEMA_INT,     /* an integer (an integral float such as 1e4 is accepted) */
    SCHEMA_FLOAT,   /* a number */
    SCHEMA_BOOL,    /* true or false */
    SCHEMA_STRING,  /* any non-null scalar, as text */
    SCHEMA_ENUM,    /* one of .values */
    SCHEMA_LIST,    /* a list whose items are .elem */
    SCHEMA_MAP,     /* a map with the keys in .keys, nothing else */
    SCHEMA_PATHMAP, /* a map keyed by config paths ("method.rank"), each value a non-empty list of values of
                       that path's type (grid, zip) */
} SchemaType;

enum {
    SK_REQUIRED = 1u << 0,    /* must be present (and not null) when its map is */
    SK_MIN = 1u << 1,         /* value >= .min */
    SK_MAX = 1u << 2,         /* value <= .max */
    SK_FILE = 1u << 3,        /* a path (relative to the working directory) that must exist */
    SK_NOHASH = 1u << 4,      /* does not change what a run computes: left out of the run id (grid.h) */
    SK_SAME_LENGTH = 1u << 5, /* SCHEMA_PATHMAP: all lists have the same length (zip) */
    SK_AUTO = 1u << 6,        /* SCHEMA_INT: the word `auto` is accepted too (resolved when the run starts) */
};

typedef struct SchemaKey {
    const char *name;                /* NULL ends a table */
    SchemaType type;
    unsigned flags;                  /* SK_* */
    const char *def;                 /* default as YAML text ("runs", "1e-6", "[]"); NULL: none */
    double min, max;                 /* with SK_MIN / SK_MAX */
    const char *const *values;       /* SCHEMA_ENUM: the allowed values, NULL-terminated */
    const struct SchemaKey *keys;    /* SCHEMA_MAP: its keys, a table ending with an entry whose name is NULL */
    const struct SchemaKey *elem;    /* SCHEMA_LIST: the items' type */
    const char *doc;                 /* one line for docs and --help */
} SchemaKey;

/* The root of an experiment config (a SCHEMA_MAP). */
extern const SchemaKey SCHEMA_EXPERIMENT;

/* schema_validate flags */
enum {
    SCHEMA_FRAGMENT = 1u << 0, /* a fragment (configs/backbones/...): required keys may be missing */
    SCHEMA_NO_FILES = 1u << 1, /* do not check that SK_FILE paths exist (they are made by an earlier run) */
};

#define SCHEMA_MAX_ERRORS 20
typedef struct SchemaReport {
    int n;     /* messages kept, in tree order */
    int total; /* errors found; more than n when there were more than SCHEMA_MAX_ERRORS */
    char msg[SCHEMA_MAX_ERRORS][400];
} SchemaReport;

/* Checks root against schema (a SCHEMA_MAP). 0 when valid; else -1, rep (may be NULL) holds the messages and
 * err gets them joined by newlines (as many as fit, then "... and N more errors"). */
int schema_validate(const CfgNode *root, const SchemaKey *schema, unsigned flags, SchemaReport *rep, Error *err);

/* Fills every key that has a default and is absent (or null) in a map present in the tree (sections that are
 * absent are not created; items of lists of maps are filled too). Default nodes are located at
 * "default of <path>":1:1. */
void schema_apply_defaults(CfgNode *root, const SchemaKey *schema);

/* The key at a dotted path ("trainer.lr"; through a SCHEMA_PATHMAP the rest of the path must itself be a
 * known path: "grid.method.rank"); anything under a SCHEMA_ANY is the ANY key; NULL when unknown. */
const SchemaKey *schema_lookup(const SchemaKey *root, const char *path);
/* The child `key` of parent (root resolves SCHEMA_PATHMAP keys); NULL when unknown. */
const SchemaKey *schema_child(const SchemaKey *root, const SchemaKey *parent, const char *key);
/* The known path nearest to an unknown one ("trainer.lrr" -> "trainer.lr"), each part within distance 2 of
 * the part written. 0 and buf filled when there is one, else -1. */
int schema_suggest_path(const SchemaKey *root, const char *path, char *buf, size_t size);

/* Optimal-string-alignment distance (Levenshtein plus adjacent transpositions: 'marign' -> 'margin' is 1). */
int schema_edit_distance(const char *a, const char *b);
/* The candidate nearest to word within distance 2 (and less than word's length), NULL when none. */
const char *schema_closest(const char *word, const char *const *cands, int n);

/* "int", "float >= 0", "one of vit, cnn", "a list of int", ... for messages and docs. */
const char *schema_type_name(const SchemaKey *k, char *buf, size_t size);
/* Checks the table itself: every default parses and is valid for its key, enums have values, maps have keys.
 * For tests (config_schema_self); 0 or -1 with the first problem in err. */
int schema_self_check(const SchemaKey *root, Error *err);
#endif
