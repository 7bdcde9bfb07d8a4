/* experiments/grid.c: grid / zip / seeds expansion, canonical text, run ids, flattening (grid.h). */
#include "grid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

/* ---- canonical text --------------------------------------------------------------------------------------- */
int grid_canonical_number(const CfgNode *s, char *buf, size_t size) {
    if (!s || s->kind != CFG_SCALAR) return -1;
    CfgScalarType t = cfg_scalar_type(s);
    if (t == CFG_INT) {
        snprintf(buf, size, "%ld", strtol(s->text, NULL, 10));
        return 0;
    }
    double v;
    if (t != CFG_FLOAT || cfg_as_double(s, &v)) return -1;
    if (isnan(v)) snprintf(buf, size, ".nan");
    else if (isinf(v)) snprintf(buf, size, v > 0 ? ".inf" : "-.inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(buf, size, "%ld", (long)v); /* 1e3 -> 1000 */
    else
        for (int p = 1; p <= 17; p++) { /* the shortest %g that reads back the same double */
            snprintf(buf, size, "%.*g", p, v);
            if (strtod(buf, NULL) == v) break;
        }
    return 0;
}

static void canon_scalar(FILE *f, const CfgNode *s, int quote_strings) {
    char num[64];
    switch (cfg_scalar_type(s)) {
    case CFG_NULL: fputs("null", f); break;
    case CFG_BOOL: {
        int b = 0;
        cfg_as_bool(s, &b);
        fputs(b ? "true" : "false", f);
        break;
    }
    case CFG_INT:
    case CFG_FLOAT:
        ASSERT(grid_canonical_number(s, num, sizeof num) == 0);
        fputs(num, f);
        break;
    case CFG_STRING:
        if (quote_strings) cfg_write_quoted(f, s->text);
        else fputs(s->text, f);
        break;
    }
}

static int cmp_entry_ptr(const void *a, const void *b) {
    return strcmp((*(const CfgEntry *const *)a)->key, (*(const CfgEntry *const *)b)->key);
}

/* Whether map entry e under schema k (NULL: none) is left out: a null, an SK_NOHASH key, or a map that has
 * nothing else (so `record: {flush_every: 7}` hashes as no record section, and `x: {}` as no x). */
static int left_out(const CfgEntry *e, const SchemaKey *root, const SchemaKey *k) {
    if (cfg_is_null(e->val)) return 1;
    const SchemaKey *c = k ? schema_child(root, k, e->key) : NULL;
    if (c && (c->flags & SK_NOHASH)) return 1;
    if (e->val->kind != CFG_MAP) return 0;
    for (int i = 0; i < e->val->n; i++)
        if (!left_out(&e->val->entries[i], c ? root : NULL, c)) return 0;
    return 1;
}

/* The map's entries to write (not left_out), sorted by key. Returns the count. */
static int sorted_entries(const CfgNode *m, const SchemaKey *root, const SchemaKey *k, const CfgEntry ***out) {
    const CfgEntry **es = xmalloc((size_t)(m->n ? m->n : 1) * sizeof *es);
    int n = 0;
    for (int i = 0; i < m->n; i++)
        if (!left_out(&m->entries[i], root, k)) es[n++] = &m->entries[i];
    qsort(es, (size_t)n, sizeof *es, cmp_entry_ptr);
    *out = es;
    return n;
}

/* root: the schema root, k: this node's key (both NULL: no filtering). */
static void canon(FILE *f, const CfgNode *n, const SchemaKey *root, const SchemaKey *k) {
    if (n->kind == CFG_SCALAR) {
        canon_scalar(f, n, 1);
    } else if (n->kind == CFG_LIST) {
        const SchemaKey *elem = k && k->type == SCHEMA_LIST ? k->elem : NULL;
        fputc('[', f);
        for (int i = 0; i < n->n; i++) {
            if (i) fputc(',', f);
            canon(f, n->items[i], elem ? root : NULL, elem);
        }
        fputc(']', f);
    } else {
        const CfgEntry **es;
        int m = sorted_entries(n, root, k, &es);
        fputc('{', f);
        for (int i = 0; i < m; i++) {
            if (i) fputc(',', f);
            cfg_write_quoted(f, es[i]->key);
            fputc(':', f);
            const SchemaKey *c = k ? schema_child(root, k, es[i]->key) : NULL;
            canon(f, es[i]->val, c ? root : NULL, c);
        }
        fputc('}', f);
        free(es);
    }
}

char *grid_canonical(const CfgNode *cfg, const SchemaKey *schema) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERTF(f, "open_memstream failed");
    canon(f, cfg, schema, schema);
    ASSERT(fclose(f) == 0);
    return buf;
}

void grid_run_id(const CfgNode *cfg, const SchemaKey *schema, char id[GRID_ID_LEN + 1]) {
    char *text = grid_canonical(cfg, schema);
    sha256_hex(text, strlen(text), id, GRID_ID_LEN);
    free(text);
}

/* ---- flattening ------------------------------------------------------------------------------------------- */
typedef struct Pairs {
    char **kv;
    int n, cap;
} Pairs;

static void push_pair(Pairs *p, const char *key, char *value /* taken */) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        p->kv = xrealloc(p->kv, (size_t)p->cap * 2 * sizeof *p->kv);
    }
    p->kv[2 * p->n] = xstrdup(key);
    p->kv[2 * p->n + 1] = value;
    p->n++;
}

static char *text_of(const CfgNode *n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERTF(f, "open_memstream failed");
    if (n->kind == CFG_SCALAR) canon_scalar(f, n, 0);
    else canon(f, n, NULL, NULL);
    ASSERT(fclose(f) == 0);
    return buf;
}

static void flatten(Pairs *p, const CfgNode *n, const char *prefix) {
    if (n->kind != CFG_MAP) {
        push_pair(p, prefix, text_of(n));
        return;
    }
    const CfgEntry **es;
    int m = sorted_entries(n, NULL, NULL, &es);
    for (int i = 0; i < m; i++) {
        size_t len = strlen(prefix) + strlen(es[i]->key) + 2;
        char *key = xmalloc(len);
        snprintf(key, len, "%s%s%s", prefix, *prefix ? "." : "", es[i]->key);
        flatten(p, es[i]->val, key);
        free(key);
    }
    free(es);
}

int grid_flatten(const CfgNode *cfg, char ***kv) {
    Pairs p = {0};
    if (cfg->kind == CFG_MAP) flatten(&p, cfg, "");
    *kv = p.kv;
    return p.n;
}

void grid_flatten_free(char **kv, int n_pairs) {
    for (int i = 0; i < 2 * n_pairs; i++) free(kv[i]);
    free(kv);
}

/* ---- expansion -------------------------------------------------------------------------------------------- */
typedef struct Axis {
    int n_keys;
    const CfgEntry *keys[64]; /* the grid entry, or the zip entries walked together */
    int len;
} Axis;

static int list_axis_entry(const CfgEntry *e, const char *section, Error *err) {
    if (e->val->kind == CFG_LIST && e->val->n > 0) return 0;
    char w[600], d[96];
    return err_set(err, "%s: %s.%s: expected a non-empty list of values, found %s", cfg_where(e->val, w, sizeof w),
                   section, e->key, e->val->kind == CFG_LIST ? "an empty list" : cfg_describe(e->val, d, sizeof d));
}

void grid_plan_free(GridPlan *plan) {
    for (int i = 0; i < plan->n_runs; i++) cfg_free(plan->runs[i].cfg);
    free(plan->runs);
    memset(plan, 0, sizeof *plan);
}

int grid_expand(const CfgNode *root, const SchemaKey *schema, GridPlan *plan, Error *err) {
    ASSERT(root && root->kind == CFG_MAP);
    memset(plan, 0, sizeof *plan);
    char w[600], d[96];
    const CfgNode *grid = cfg_map_get(root, "grid"), *zip = cfg_map_get(root, "zip");
    const CfgNode *seeds = cfg_map_get(root, "seeds");
    Axis axes[65];
    int n_axes = 0;
    if (!cfg_is_null(grid)) {
        if (grid->kind != CFG_MAP)
            return err_set(err, "%s: grid: expected a map of config paths to lists, found %s",
                           cfg_where(grid, w, sizeof w), cfg_describe(grid, d, sizeof d));
        if (grid->n > 64) return err_set(err, "%s: grid: more than 64 keys", cfg_where(grid, w, sizeof w));
        for (int i = 0; i < grid->n; i++) {
            if (list_axis_entry(&grid->entries[i], "grid", err)) return -1;
            axes[n_axes++] = (Axis){.n_keys = 1, .keys = {&grid->entries[i]}, .len = grid->entries[i].val->n};
        }
    }
    if (!cfg_is_null(zip)) {
        if (zip->kind != CFG_MAP)
            return err_set(err, "%s: zip: expected a map of config paths to lists, found %s",
                           cfg_where(zip, w, sizeof w), cfg_describe(zip, d, sizeof d));
        if (zip->n > 64) return err_set(err, "%s: zip: more than 64 keys", cfg_where(zip, w, sizeof w));
        Axis *a = &axes[n_axes];
        *a = (Axis){.n_keys = 0};
        for (int i = 0; i < zip->n; i++) {
            const CfgEntry *e = &zip->entries[i];
            if (list_axis_entry(e, "zip", err)) return -1;
            if (cfg_map_find(grid, e->key))
                return err_set(err, "%s:%d:%d: zip: '%s' is also a grid key (a key varies in one place)", e->file,
                               e->line, e->col, e->key);
            if (a->n_keys && e->val->n != a->len)
                return err_set(err, "%s: zip: '%s' has %d values but '%s' has %d (zip pairs lists of the same length)",
                               cfg_where(e->val, w, sizeof w), e->key, e->val->n, a->keys[0]->key, a->len);
            a->keys[a->n_keys++] = e;
            a->len = e->val->n;
        }
        if (a->n_keys) n_axes++;
    }
    /* seeds */
    long seed_vals[4096];
    const CfgNode *seed_nodes[4096];
    int n_seeds = 0;
    if (!cfg_is_null(seeds)) {
        if (seeds->kind != CFG_LIST || seeds->n == 0)
            return err_set(err, "%s: seeds: expected a non-empty list of ints, found %s",
                           cfg_where(seeds, w, sizeof w),
                           seeds->kind == CFG_LIST ? "an empty list" : cfg_describe(seeds, d, sizeof d));
        if (seeds->n > 4096) return err_set(err, "%s: seeds: more than 4096", cfg_where(seeds, w, sizeof w));
        for (int i = 0; i < seeds->n; i++) {
            const CfgNode *s = seeds->items[i];
            long v;
            if (cfg_as_int(s, &v) || v < 0)
                return err_set(err, "%s: seeds[%d]: expected an int >= 0, found %s", cfg_where(s, w, sizeof w), i,
                               cfg_describe(s, d, sizeof d));
            for (int j = 0; j < n_seeds; j++)
                if (seed_vals[j] == v)
                    return err_set(err, "%s: seeds[%d]: seed %ld is listed twice", cfg_where(s, w, sizeof w), i, v);
            seed_vals[n_seeds] = v;
            seed_nodes[n_seeds++] = s;
        }
    } else {
        const CfgNode *s = cfg_map_get(root, "seed");
        long v = 0;
        if (!cfg_is_null(s) && (cfg_as_int(s, &v) || v < 0))
            return err_set(err, "%s: seed: expected an int >= 0, found %s", cfg_where(s, w, sizeof w),
                           cfg_describe(s, d, sizeof d));
        seed_vals[0] = v;
        seed_nodes[0] = cfg_is_null(s) ? NULL : s;
        n_seeds = 1;
    }
    long n_cells = 1;
    for (int a = 0; a < n_axes; a++) {
        n_cells *= axes[a].len;
        if (n_cells * n_seeds > GRID_MAX_RUNS)
            return err_set(err, "%s: the grid has more than %d runs", cfg_where(root, w, sizeof w), GRID_MAX_RUNS);
    }

    CfgNode *base = cfg_clone(root);
    cfg_map_remove(base, "grid");
    cfg_map_remove(base, "zip");
    cfg_map_remove(base, "seeds");
    plan->runs = xcalloc((size_t)(n_cells * n_seeds), sizeof *plan->runs);
    plan->n_cells = (int)n_cells, plan->n_seeds = n_seeds;
    int rc = 0;
    for (long c = 0; c < n_cells && !rc; c++) {
        CfgNode *cell = cfg_clone(base);
        long rest = c;
        for (int a = n_axes - 1; a >= 0 && !rc; a--) { /* mixed radix, the last axis fastest */
            int idx = (int)(rest % axes[a].len);
            rest /= axes[a].len;
            for (int k = 0; k < axes[a].n_keys && !rc; k++)
                rc = cfg_set_path(cell, axes[a].keys[k]->key, cfg_clone(axes[a].keys[k]->val->items[idx]), err);
        }
        for (int s = 0; s < n_seeds && !rc; s++) {
            CfgNode *cfg = s == n_seeds - 1 ? cell : cfg_clone(cell);
            char txt[32];
            snprintf(txt, sizeof txt, "%ld", seed_vals[s]);
            const CfgNode *at = seed_nodes[s] ? seed_nodes[s] : root;
            cfg_map_set(cfg, "seed", cfg_new_scalar(txt, 0, at->file, at->line, at->col), NULL);
            if (schema) schema_apply_defaults(cfg, schema);
            GridRun *r = &plan->runs[plan->n_runs++];
            r->cfg = cfg;
            r->cell = (int)c;
            r->seed_index = s;
            r->seed = seed_vals[s];
            grid_run_id(cfg, schema, r->id);
        }
        if (rc) cfg_free(cell);
    }
    cfg_free(base);
    if (rc) grid_plan_free(plan);
    return rc;
}
