/* experiments/config.c: YAML (libyaml event API) -> CfgNode tree, includes, merge, overrides, getters. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "schema.h"

#define CFG_MAX_DEPTH 64    /* nesting limit: a hostile file must not overflow the stack */
#define CFG_MAX_INCLUDES 32 /* include depth limit (cycles are caught before, this bounds long chains) */

/* ---- nodes ------------------------------------------------------------------------------------------------ */
static CfgNode *new_node(CfgKind kind, const char *file, int line, int col) {
    CfgNode *n = xcalloc(1, sizeof *n);
    n->kind = kind;
    n->file = xstrdup(file ? file : "?");
    n->line = line, n->col = col;
    return n;
}
CfgNode *cfg_new_map(const char *file, int line, int col) { return new_node(CFG_MAP, file, line, col); }
CfgNode *cfg_new_list(const char *file, int line, int col) { return new_node(CFG_LIST, file, line, col); }
CfgNode *cfg_new_scalar(const char *text, int quoted, const char *file, int line, int col) {
    CfgNode *n = new_node(CFG_SCALAR, file, line, col);
    n->text = xstrdup(text ? text : "");
    n->quoted = quoted;
    return n;
}

void cfg_free(CfgNode *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        if (n->kind == CFG_MAP) {
            free(n->entries[i].key);
            free(n->entries[i].file);
            cfg_free(n->entries[i].val);
        } else {
            cfg_free(n->items[i]);
        }
    }
    free(n->entries);
    free(n->items);
    free(n->text);
    free(n->file);
    free(n);
}

CfgNode *cfg_clone(const CfgNode *n) {
    if (!n) return NULL;
    CfgNode *c = new_node(n->kind, n->file, n->line, n->col);
    if (n->kind == CFG_SCALAR) {
        c->text = xstrdup(n->text);
        c->quoted = n->quoted;
    } else if (n->kind == CFG_MAP) {
        for (int i = 0; i < n->n; i++) {
            const CfgEntry *e = &n->entries[i];
            CfgNode where = {.file = e->file, .line = e->line, .col = e->col};
            cfg_map_set(c, e->key, cfg_clone(e->val), &where);
        }
    } else {
        for (int i = 0; i < n->n; i++) cfg_list_push(c, cfg_clone(n->items[i]));
    }
    return c;
}

CfgEntry *cfg_map_find(const CfgNode *map, const char *key) {
    if (!map || map->kind != CFG_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->entries[i].key, key)) return &map->entries[i];
    return NULL;
}
CfgNode *cfg_map_get(const CfgNode *map, const char *key) {
    CfgEntry *e = cfg_map_find(map, key);
    return e ? e->val : NULL;
}

static void set_entry_loc(CfgEntry *e, const CfgNode *where) {
    free(e->file);
    e->file = xstrdup(where->file);
    e->line = where->line, e->col = where->col;
}

void cfg_map_set(CfgNode *map, const char *key, CfgNode *val, const CfgNode *where) {
    ASSERT(map && map->kind == CFG_MAP && val);
    if (!where) where = val;
    CfgEntry *e = cfg_map_find(map, key);
    if (e) {
        cfg_free(e->val);
        e->val = val;
        set_entry_loc(e, where);
        return;
    }
    if (map->n == map->cap) {
        map->cap = map->cap ? 2 * map->cap : 8;
        map->entries = xrealloc(map->entries, (size_t)map->cap * sizeof *map->entries);
    }
    e = &map->entries[map->n++];
    e->key = xstrdup(key);
    e->file = xstrdup(where->file);
    e->line = where->line, e->col = where->col;
    e->val = val;
}

int cfg_map_remove(CfgNode *map, const char *key) {
    CfgEntry *e = cfg_map_find(map, key);
    if (!e) return 0;
    int i = (int)(e - map->entries);
    free(e->key);
    free(e->file);
    cfg_free(e->val);
    memmove(&map->entries[i], &map->entries[i + 1], (size_t)(map->n - i - 1) * sizeof *map->entries);
    map->n--;
    return 1;
}

void cfg_list_push(CfgNode *list, CfgNode *item) {
    ASSERT(list && list->kind == CFG_LIST && item);
    if (list->n == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 8;
        list->items = xrealloc(list->items, (size_t)list->cap * sizeof *list->items);
    }
    list->items[list->n++] = item;
}

/* Maps merge key by key (new keys appended in src's order); anything else replaces. */
void cfg_merge(CfgNode **dst, CfgNode *src) {
    ASSERT(src);
    if (!*dst || (*dst)->kind != CFG_MAP || src->kind != CFG_MAP) {
        cfg_free(*dst);
        *dst = src;
        return;
    }
    CfgNode *d = *dst;
    for (int i = 0; i < src->n; i++) {
        CfgEntry *se = &src->entries[i];
        CfgEntry *de = cfg_map_find(d, se->key);
        CfgNode where = {.file = se->file, .line = se->line, .col = se->col};
        if (de && de->val->kind == CFG_MAP && se->val->kind == CFG_MAP) {
            cfg_merge(&de->val, se->val);
        } else {
            cfg_map_set(d, se->key, se->val, &where);
        }
        se->val = NULL;
        free(se->key);
        free(se->file);
    }
    src->n = 0;
    cfg_free(src);
}

/* ---- scalars ---------------------------------------------------------------------------------------------- */
static int is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}
static int bool_text(const char *s) { /* 1 true, 0 false, -1 neither */
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return 0;
    return -1;
}
static int digits(const char **p) {
    int k = 0;
    while (**p >= '0' && **p <= '9') (*p)++, k++;
    return k;
}
static int int_text(const char *s) { /* [-+]?[0-9]+ */
    if (*s == '-' || *s == '+') s++;
    return digits(&s) > 0 && !*s;
}
static int special_float(const char *s, double *v) {
    const char *t = s;
    double sign = 1;
    if (*t == '-' || *t == '+') sign = *t++ == '-' ? -1 : 1;
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF")) {
        if (v) *v = sign * INFINITY;
        return 1;
    }
    if (t == s && (!strcmp(t, ".nan") || !strcmp(t, ".NaN") || !strcmp(t, ".NAN"))) {
        if (v) *v = NAN;
        return 1;
    }
    return 0;
}
static int float_text(const char *s) { /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? or .inf/.nan */
    if (special_float(s, NULL)) return 1;
    if (*s == '-' || *s == '+') s++;
    int d = digits(&s);
    if (*s == '.') {
        s++;
        d += digits(&s);
    }
    if (!d) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') s++;
        if (!digits(&s)) return 0;
    }
    return !*s;
}

CfgScalarType cfg_scalar_type(const CfgNode *s) {
    ASSERT(s && s->kind == CFG_SCALAR);
    if (s->quoted) return CFG_STRING;
    if (is_null_text(s->text)) return CFG_NULL;
    if (bool_text(s->text) >= 0) return CFG_BOOL;
    if (int_text(s->text)) {
        errno = 0;
        (void)strtol(s->text, NULL, 10);
        return errno == ERANGE ? CFG_FLOAT : CFG_INT; /* too big for a long: a float */
    }
    if (float_text(s->text)) return CFG_FLOAT;
    return CFG_STRING;
}

int cfg_is_null(const CfgNode *n) { return !n || (n->kind == CFG_SCALAR && cfg_scalar_type(n) == CFG_NULL); }

int cfg_as_double(const CfgNode *s, double *out) {
    if (!s || s->kind != CFG_SCALAR) return -1;
    CfgScalarType t = cfg_scalar_type(s);
    if (t != CFG_INT && t != CFG_FLOAT) return -1;
    if (special_float(s->text, out)) return 0;
    *out = strtod(s->text, NULL);
    return 0;
}

int cfg_as_int(const CfgNode *s, long *out) {
    if (!s || s->kind != CFG_SCALAR) return -1;
    CfgScalarType t = cfg_scalar_type(s);
    if (t == CFG_INT) {
        *out = strtol(s->text, NULL, 10);
        return 0;
    }
    double v;
    if (t != CFG_FLOAT || cfg_as_double(s, &v)) return -1;
    /* an integral float (1e4, 8.0) is accepted where an int is expected */
    if (!isfinite(v) || v != floor(v) || fabs(v) > 9007199254740992.0) return -1;
    *out = (long)v;
    return 0;
}

int cfg_as_bool(const CfgNode *s, int *out) {
    if (!s || s->kind != CFG_SCALAR || s->quoted) return -1;
    int b = bool_text(s->text);
    if (b < 0) return -1;
    *out = b;
    return 0;
}

const char *cfg_where(const CfgNode *n, char *buf, size_t size) {
    if (!n) snprintf(buf, size, "?");
    else snprintf(buf, size, "%s:%d:%d", n->file, n->line, n->col);
    return buf;
}

const char *cfg_describe(const CfgNode *n, char *buf, size_t size) {
    if (!n) snprintf(buf, size, "nothing");
    else if (n->kind == CFG_MAP) snprintf(buf, size, "a map");
    else if (n->kind == CFG_LIST) snprintf(buf, size, "a list");
    else if (cfg_scalar_type(n) == CFG_NULL) snprintf(buf, size, "null");
    else if (strlen(n->text) > 60) snprintf(buf, size, "'%.57s...'", n->text);
    else snprintf(buf, size, "'%s'", n->text);
    return buf;
}

/* ---- the YAML reader -------------------------------------------------------------------------------------- */
typedef struct Anchor {
    char *name;
    CfgNode *node; /* a private copy, so later edits of the tree do not change what an alias means */
} Anchor;

typedef struct Reader {
    yaml_parser_t p;
    const char *name;  /* file name in messages */
    int line, col;     /* location of the text's first character */
    int one_line, one_line_len; /* the text is one line (of that length) */
    Anchor *anchors;
    int n_anchors, cap_anchors;
    Error *err;
} Reader;

static void mark_loc(const Reader *r, yaml_mark_t m, int *line, int *col) {
    if (r->one_line) { /* a command-line value: libyaml may point past its end, on a line that is not there */
        *line = r->line;
        *col = r->col + (m.line > 0 ? r->one_line_len : (int)m.column);
        return;
    }
    *line = r->line + (int)m.line;
    *col = m.line == 0 ? r->col + (int)m.column : (int)m.column + 1;
}

static int reader_error(Reader *r, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reader_error(Reader *r, yaml_mark_t m, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    mark_loc(r, m, &line, &col);
    return err_set(r->err, "%s:%d:%d: %s", r->name, line, col, msg);
}

static int next_event(Reader *r, yaml_event_t *ev) {
    if (yaml_parser_parse(&r->p, ev)) return 0;
    if (r->p.error == YAML_READER_ERROR)
        return reader_error(r, r->p.problem_mark, "cannot read YAML: %s", r->p.problem ? r->p.problem : "?");
    if (r->p.context)
        return reader_error(r, r->p.problem_mark, "YAML syntax error: %s (%s that starts at line %d)",
                            r->p.problem ? r->p.problem : "?", r->p.context,
                            r->line + (int)r->p.context_mark.line);
    return reader_error(r, r->p.problem_mark, "YAML syntax error: %s", r->p.problem ? r->p.problem : "?");
}

static void add_anchor(Reader *r, const char *name, const CfgNode *node) {
    for (int i = 0; i < r->n_anchors; i++)
        if (!strcmp(r->anchors[i].name, name)) { /* YAML allows redefining an anchor: the latest wins */
            cfg_free(r->anchors[i].node);
            r->anchors[i].node = cfg_clone(node);
            return;
        }
    if (r->n_anchors == r->cap_anchors) {
        r->cap_anchors = r->cap_anchors ? 2 * r->cap_anchors : 8;
        r->anchors = xrealloc(r->anchors, (size_t)r->cap_anchors * sizeof *r->anchors);
    }
    r->anchors[r->n_anchors].name = xstrdup(name);
    r->anchors[r->n_anchors++].node = cfg_clone(node);
}

/* Builds the node that starts with event ev (consumed); reads the events of its children. */
static CfgNode *read_node(Reader *r, yaml_event_t *ev, int depth) {
    int line, col;
    mark_loc(r, ev->start_mark, &line, &col);
    CfgNode *n = NULL;
    const char *anchor = NULL;
    if (depth > CFG_MAX_DEPTH) {
        reader_error(r, ev->start_mark, "nesting deeper than %d levels", CFG_MAX_DEPTH);
        yaml_event_delete(ev);
        return NULL;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (int i = 0; i < r->n_anchors && !n; i++)
            if (!strcmp(r->anchors[i].name, name)) n = cfg_clone(r->anchors[i].node);
        if (!n) reader_error(r, ev->start_mark, "unknown anchor '*%s' (an alias must follow its anchor)", name);
        yaml_event_delete(ev);
        return n;
    }
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        if (strlen(v) != ev->data.scalar.length) {
            reader_error(r, ev->start_mark, "NUL byte in a scalar");
            break;
        }
        const char *tag = (const char *)ev->data.scalar.tag;
        int quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                     (tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!")));
        n = cfg_new_scalar(v, quoted, r->name, line, col);
        anchor = (const char *)ev->data.scalar.anchor;
        break;
    }
    case YAML_SEQUENCE_START_EVENT: {
        n = cfg_new_list(r->name, line, col);
        for (;;) {
            yaml_event_t c;
            if (next_event(r, &c)) goto fail;
            if (c.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&c);
                break;
            }
            CfgNode *item = read_node(r, &c, depth + 1);
            if (!item) goto fail;
            cfg_list_push(n, item);
        }
        anchor = (const char *)ev->data.sequence_start.anchor;
        break;
    }
    case YAML_MAPPING_START_EVENT: {
        n = cfg_new_map(r->name, line, col);
        for (;;) {
            yaml_event_t k;
            if (next_event(r, &k)) goto fail;
            if (k.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&k);
                break;
            }
            if (k.type != YAML_SCALAR_EVENT) {
                reader_error(r, k.start_mark, "a map key must be a plain name, found %s",
                             k.type == YAML_ALIAS_EVENT ? "an alias" : "a list or map");
                yaml_event_delete(&k);
                goto fail;
            }
            CfgNode where;
            mark_loc(r, k.start_mark, &where.line, &where.col);
            where.file = (char *)r->name;
            char *key = xstrdup((const char *)k.data.scalar.value);
            yaml_event_delete(&k);
            CfgEntry *dup = cfg_map_find(n, key);
            if (dup) {
                err_set(r->err, "%s:%d:%d: duplicate key '%s' (first at line %d)", r->name, where.line, where.col,
                        key, dup->line);
                free(key);
                goto fail;
            }
            yaml_event_t v;
            if (next_event(r, &v)) {
                free(key);
                goto fail;
            }
            CfgNode *val = read_node(r, &v, depth + 1);
            if (!val) {
                free(key);
                goto fail;
            }
            cfg_map_set(n, key, val, &where);
            free(key);
        }
        anchor = (const char *)ev->data.mapping_start.anchor;
        break;
    }
    default:
        reader_error(r, ev->start_mark, "unexpected YAML event %d", (int)ev->type);
        break;
    }
    if (n && anchor) add_anchor(r, anchor, n);
    yaml_event_delete(ev);
    return n;
fail:
    cfg_free(n);
    yaml_event_delete(ev);
    return NULL;
}

/* One document (an empty stream gives a null scalar); more than one document is an error. */
static CfgNode *read_document(Reader *r) {
    yaml_event_t ev;
    CfgNode *root = NULL;
    if (next_event(r, &ev)) return NULL;
    ASSERT(ev.type == YAML_STREAM_START_EVENT);
    yaml_event_delete(&ev);
    if (next_event(r, &ev)) return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return cfg_new_scalar("", 0, r->name, r->line, r->col);
    }
    ASSERT(ev.type == YAML_DOCUMENT_START_EVENT);
    yaml_event_delete(&ev);
    if (next_event(r, &ev)) return NULL;
    if (!(root = read_node(r, &ev, 0))) return NULL;
    if (next_event(r, &ev)) goto fail;
    ASSERT(ev.type == YAML_DOCUMENT_END_EVENT);
    yaml_event_delete(&ev);
    if (next_event(r, &ev)) goto fail;
    if (ev.type != YAML_STREAM_END_EVENT) {
        reader_error(r, ev.start_mark, "more than one YAML document (a config is one document)");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    return root;
fail:
    cfg_free(root);
    return NULL;
}

static void reader_done(Reader *r) {
    for (int i = 0; i < r->n_anchors; i++) {
        free(r->anchors[i].name);
        cfg_free(r->anchors[i].node);
    }
    free(r->anchors);
    yaml_parser_delete(&r->p);
}

static CfgNode *parse_text(const char *text, const char *name, int line, int col, Error *err) {
    Reader r = {.name = name, .line = line, .col = col, .err = err};
    r.one_line = !strchr(text, '\n');
    r.one_line_len = (int)strlen(text);
    ASSERT(yaml_parser_initialize(&r.p));
    yaml_parser_set_input_string(&r.p, (const unsigned char *)text, strlen(text));
    CfgNode *n = read_document(&r);
    reader_done(&r);
    return n;
}

CfgNode *cfg_parse_value(const char *text, const char *file, int line, int col, Error *err) {
    return parse_text(text, file, line, col, err);
}

CfgNode *cfg_parse_string(const char *text, const char *name, Error *err) {
    CfgNode *n = parse_text(text, name, 1, 1, err);
    if (n && cfg_is_null(n)) {
        CfgNode *m = cfg_new_map(name, 1, 1);
        cfg_free(n);
        return m;
    }
    return n;
}

CfgNode *cfg_parse_file(const char *path, Error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        err_set(err, "%s: is a folder, not a YAML file", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    Reader r = {.name = path, .line = 1, .col = 1, .err = err};
    ASSERT(yaml_parser_initialize(&r.p));
    yaml_parser_set_input_file(&r.p, f);
    CfgNode *n = read_document(&r);
    reader_done(&r);
    fclose(f);
    if (n && cfg_is_null(n)) { /* an empty file: an empty map */
        cfg_free(n);
        n = cfg_new_map(path, 1, 1);
    }
    if (n && n->kind != CFG_MAP) {
        char d[96];
        err_set(err, "%s:%d:%d: expected a map of keys at the top level, found %s", path, n->line, n->col,
                cfg_describe(n, d, sizeof d));
        cfg_free(n);
        return NULL;
    }
    return n;
}

/* ---- includes ------------------------------------------------------------------------------------------- */
typedef struct IncStack {
    char *real[CFG_MAX_INCLUDES]; /* realpath of each file being loaded, outermost first */
    char *shown[CFG_MAX_INCLUDES];
    int n;
} IncStack;

/* dir(from) + "/" + rel; an absolute rel, or a from without a folder, leaves rel as it is. */
static char *resolve_include(const char *from, const char *rel) {
    const char *slash = strrchr(from, '/');
    if (rel[0] == '/' || !slash) return xstrdup(rel);
    size_t dn = (size_t)(slash - from);
    char *p = xmalloc(dn + strlen(rel) + 2);
    memcpy(p, from, dn);
    p[dn] = '/';
    strcpy(p + dn + 1, rel);
    return p;
}

static CfgNode *load_rec(const char *path, IncStack *st, Error *err);

/* Loads one `include:` item (a path scalar) of the file `from` as a fragment. */
static CfgNode *load_include(const char *from, const CfgNode *item, IncStack *st, Error *err) {
    char w[600], d[96];
    cfg_where(item, w, sizeof w);
    if (item->kind != CFG_SCALAR || cfg_scalar_type(item) == CFG_NULL) {
        err_set(err, "%s: include: expected a path or a list of paths, found %s", w, cfg_describe(item, d, sizeof d));
        return NULL;
    }
    char *p = resolve_include(from, item->text);
    CfgNode *frag = NULL;
    char *real = realpath(p, NULL);
    if (!real) {
        err_set(err, "%s: include '%s': cannot open %s: %s", w, item->text, p, strerror(errno));
        goto done;
    }
    for (int i = 0; i < st->n; i++) {
        if (strcmp(st->real[i], real)) continue;
        char chain[ERROR_MSG_MAX] = "";
        size_t len = 0;
        for (int j = i; j < st->n && len < sizeof chain; j++)
            len += (size_t)snprintf(chain + len, sizeof chain - len, "%s -> ", st->shown[j]);
        err_set(err, "%s: include cycle: %s%s", w, chain, p);
        goto done;
    }
    if (st->n == CFG_MAX_INCLUDES) {
        err_set(err, "%s: includes nested deeper than %d files", w, CFG_MAX_INCLUDES);
        goto done;
    }
    st->real[st->n] = real;
    st->shown[st->n++] = p;
    frag = load_rec(p, st, err);
    st->n--;
    if (!frag) { /* say where the failing fragment was included from, when it fits */
        char inner[ERROR_MSG_MAX];
        snprintf(inner, sizeof inner, "%s", err ? err->msg : "");
        if (strlen(inner) + strlen(w) + 40 < sizeof inner) err_set(err, "%s\n  (included from %s)", inner, w);
    }
done:
    free(real);
    free(p);
    return frag;
}

static CfgNode *load_rec(const char *path, IncStack *st, Error *err) {
    CfgNode *root = cfg_parse_file(path, err);
    if (!root) return NULL;
    CfgEntry *inc = cfg_map_find(root, "include");
    if (!inc) return root;
    CfgNode *base = NULL, *incv = inc->val;
    if (incv->kind == CFG_LIST) {
        for (int i = 0; i < incv->n; i++) {
            CfgNode *frag = load_include(path, incv->items[i], st, err);
            if (!frag) goto fail;
            cfg_merge(&base, frag);
        }
    } else if (!cfg_is_null(incv)) {
        if (!(base = load_include(path, incv, st, err))) goto fail;
    }
    cfg_map_remove(root, "include");
    if (!base) return root;
    cfg_merge(&base, root);
    return base;
fail:
    cfg_free(base);
    cfg_free(root);
    return NULL;
}

CfgNode *cfg_load(const char *path, Error *err) {
    IncStack st = {.n = 0};
    char *real = realpath(path, NULL);
    if (!real) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    st.real[0] = real;
    st.shown[0] = (char *)path;
    st.n = 1;
    CfgNode *n = load_rec(path, &st, err);
    free(real);
    return n;
}

/* ---- paths and overrides --------------------------------------------------------------------------------- */
/* Length of the next key of `rest` inside map m: the longest existing key that is rest itself or a prefix of
 * it ending at a '.', so keys containing dots (grid's "method.rank") are found; else up to the next '.'. */
static size_t seg_len(const CfgNode *m, const char *rest) {
    size_t best = 0, n = strlen(rest);
    if (m && m->kind == CFG_MAP)
        for (int i = 0; i < m->n; i++) {
            size_t k = strlen(m->entries[i].key);
            if (k > best && k <= n && !strncmp(rest, m->entries[i].key, k) && (rest[k] == 0 || rest[k] == '.'))
                best = k;
        }
    if (best) return best;
    const char *dot = strchr(rest, '.');
    return dot ? (size_t)(dot - rest) : n;
}

CfgNode *cfg_get(const CfgNode *root, const char *path) {
    const CfgNode *cur = root;
    const char *rest = path;
    while (cur && cur->kind == CFG_MAP) {
        size_t k = seg_len(cur, rest);
        char seg[256];
        if (k >= sizeof seg) return NULL;
        memcpy(seg, rest, k);
        seg[k] = 0;
        cur = cfg_map_get(cur, seg);
        if (!rest[k]) return (CfgNode *)cur;
        rest += k + 1;
    }
    return NULL;
}

int cfg_set_path(CfgNode *root, const char *path, CfgNode *val, Error *err) {
    CfgNode *cur = root;
    const char *rest = path;
    for (;;) {
        if (cur->kind != CFG_MAP) {
            char w[600], d[96];
            int rc = err_set(err, "%s: cannot set '%s': '%.*s' is %s, not a map", cfg_where(cur, w, sizeof w), path,
                             (int)(rest - path - 1), path, cfg_describe(cur, d, sizeof d));
            cfg_free(val);
            return rc;
        }
        size_t k = strcspn(rest, ".");
        char seg[256];
        ASSERT(k < sizeof seg);
        memcpy(seg, rest, k);
        seg[k] = 0;
        CfgEntry *e = cfg_map_find(cur, seg);
        if (!rest[k]) {
            if (e) {
                int replaces = !(e->val->kind == CFG_MAP && val->kind == CFG_MAP);
                CfgNode where = {.file = val->file, .line = val->line, .col = val->col};
                if (replaces) set_entry_loc(e, &where);
                cfg_merge(&e->val, val);
            } else {
                cfg_map_set(cur, seg, val, val);
            }
            return 0;
        }
        if (!e) {
            cfg_map_set(cur, seg, cfg_new_map(val->file, val->line, val->col), val);
            e = cfg_map_find(cur, seg);
        }
        cur = e->val;
        rest += k + 1;
    }
}

/* Walks key through the tree. apply = 0: only checks (a missing map is "made" as NULL, nothing changes);
 * apply = 1: creates the missing maps and merges *val in (taking it). */
static int override_walk(CfgNode *root, const char *key, CfgNode **val, const SchemaKey *schema, int apply,
                         const char *file, Error *err) {
    CfgNode where = {.file = (char *)file, .line = 1, .col = 1};
    CfgNode *cur = root;
    const SchemaKey *sk = schema;
    const char *rest = key;
    for (;;) {
        if (cur && cur->kind != CFG_MAP) {
            char d[96];
            return err_set(err, "%s:1:1: cannot set '%s': '%.*s' is %s, not a map", file, key, (int)(rest - key - 1),
                           key, cfg_describe(cur, d, sizeof d));
        }
        size_t k = seg_len(cur, rest);
        if (sk && sk->type == SCHEMA_PATHMAP && !cfg_map_find(cur, rest)) k = strlen(rest); /* grid, zip keys */
        char *seg = xmalloc(k + 1);
        memcpy(seg, rest, k);
        seg[k] = 0;
        const SchemaKey *sub = sk ? schema_child(schema, sk, seg) : NULL;
        CfgEntry *e = cfg_map_find(cur, seg);
        if (!e && sk && !sub) {
            char sug[300];
            free(seg);
            if (schema_suggest_path(schema, key, sug, sizeof sug) == 0)
                return err_set(err, "%s:1:1: unknown key '%s' (did you mean '%s'?)", file, key, sug);
            return err_set(err, "%s:1:1: unknown key '%s'", file, key);
        }
        if (!rest[k]) { /* the last part */
            if (apply && e) {
                if (!(e->val->kind == CFG_MAP && (*val)->kind == CFG_MAP)) set_entry_loc(e, &where);
                cfg_merge(&e->val, *val);
                *val = NULL;
            } else if (apply) {
                cfg_map_set(cur, seg, *val, &where);
                *val = NULL;
            }
            free(seg);
            return 0;
        }
        if (!e && apply) {
            cfg_map_set(cur, seg, cfg_new_map(file, 1, 1), &where);
            e = cfg_map_find(cur, seg);
        }
        free(seg);
        cur = e ? e->val : NULL;
        sk = sub;
        rest += k + 1;
    }
}

int cfg_override(CfgNode *root, const char *assignment, const SchemaKey *schema, Error *err) {
    ASSERT(root && root->kind == CFG_MAP);
    const char *eq = strchr(assignment, '=');
    char file[400];
    snprintf(file, sizeof file, "command line '%s'", assignment);
    if (!eq || eq == assignment || eq[-1] == '.' || assignment[0] == '.')
        return err_set(err, "%s:1:1: expected key.path=value", file);
    size_t klen = (size_t)(eq - assignment);
    char *key = xmalloc(klen + 1);
    memcpy(key, assignment, klen);
    key[klen] = 0;
    if (strstr(key, "..")) {
        free(key);
        return err_set(err, "%s:1:1: expected key.path=value", file);
    }
    CfgNode *val = cfg_parse_value(eq + 1, file, 1, (int)klen + 2, err);
    int rc = -1;
    /* check first, then change: a failed override leaves the tree as it was */
    if (val && override_walk(root, key, &val, schema, 0, file, err) == 0)
        rc = override_walk(root, key, &val, schema, 1, file, err);
    cfg_free(val);
    free(key);
    return rc;
}

/* ---- typed getters ---------------------------------------------------------------------------------------- */
static int type_error(const CfgNode *n, const char *path, const char *expected, Error *err) {
    char w[600], d[96];
    return err_set(err, "%s: %s: expected %s, found %s", cfg_where(n, w, sizeof w), path, expected,
                   cfg_describe(n, d, sizeof d));
}

int cfg_get_int(const CfgNode *root, const char *path, long def, long *out, Error *err) {
    const CfgNode *n = cfg_get(root, path);
    if (cfg_is_null(n)) return *out = def, 0;
    if (cfg_as_int(n, out)) return type_error(n, path, "int", err);
    return 0;
}
int cfg_get_double(const CfgNode *root, const char *path, double def, double *out, Error *err) {
    const CfgNode *n = cfg_get(root, path);
    if (cfg_is_null(n)) return *out = def, 0;
    if (cfg_as_double(n, out)) return type_error(n, path, "float", err);
    return 0;
}
int cfg_get_bool(const CfgNode *root, const char *path, int def, int *out, Error *err) {
    const CfgNode *n = cfg_get(root, path);
    if (cfg_is_null(n)) return *out = def, 0;
    if (cfg_as_bool(n, out)) return type_error(n, path, "bool (true or false)", err);
    return 0;
}
int cfg_get_string(const CfgNode *root, const char *path, const char *def, const char **out, Error *err) {
    const CfgNode *n = cfg_get(root, path);
    if (cfg_is_null(n)) return *out = def, 0;
    if (n->kind != CFG_SCALAR) return type_error(n, path, "string", err);
    *out = n->text;
    return 0;
}
int cfg_get_strlist(const CfgNode *root, const char *path, const char ***out, int *n, Error *err) {
    const CfgNode *l = cfg_get(root, path);
    *out = NULL, *n = 0;
    if (cfg_is_null(l)) return 0;
    if (l->kind != CFG_LIST) return type_error(l, path, "a list of strings", err);
    for (int i = 0; i < l->n; i++)
        if (l->items[i]->kind != CFG_SCALAR || cfg_is_null(l->items[i])) {
            char p[300];
            snprintf(p, sizeof p, "%s[%d]", path, i);
            return type_error(l->items[i], p, "string", err);
        }
    *out = xmalloc((size_t)(l->n ? l->n : 1) * sizeof **out);
    for (int i = 0; i < l->n; i++) (*out)[i] = l->items[i]->text;
    *n = l->n;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------------------- */
/* Null, bools and numbers as written; a string plain when that is safe and reads back as a string, else
 * double-quoted with JSON-style escapes (valid YAML). */
static void dump_scalar(FILE *f, const CfgNode *s) {
    CfgScalarType t = cfg_scalar_type(s);
    if (t == CFG_NULL) {
        fputs("null", f);
        return;
    }
    if (t != CFG_STRING) {
        fputs(s->text, f);
        return;
    }
    CfgNode plain = *s;
    plain.quoted = 0;
    int ok = s->text[0] && s->text[0] != '-' && cfg_scalar_type(&plain) == CFG_STRING;
    for (const char *p = s->text; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("_./+-", *p);
    if (ok) fputs(s->text, f);
    else cfg_write_quoted(f, s->text);
}

void cfg_write_quoted(FILE *f, const char *text) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static int is_inline(const CfgNode *n) { return n->kind == CFG_SCALAR || n->n == 0; }
static void dump_inline(FILE *f, const CfgNode *n) {
    if (n->kind == CFG_SCALAR) dump_scalar(f, n);
    else fputs(n->kind == CFG_MAP ? "{}" : "[]", f);
}
static void dump_key(FILE *f, const char *key) {
    CfgNode k = {.kind = CFG_SCALAR, .text = (char *)key, .quoted = 1};
    dump_scalar(f, &k);
}

/* A non-empty map or list at indentation ind; first_done: the first line's indentation is already out. */
static void dump_block(FILE *f, const CfgNode *n, int ind, int first_done) {
    for (int i = 0; i < n->n; i++) {
        if (i > 0 || !first_done) fprintf(f, "%*s", ind, "");
        const CfgNode *v;
        if (n->kind == CFG_MAP) {
            dump_key(f, n->entries[i].key);
            fputc(':', f);
            v = n->entries[i].val;
            if (is_inline(v)) {
                fputc(' ', f);
                dump_inline(f, v);
                fputc('\n', f);
            } else {
                fputc('\n', f);
                dump_block(f, v, ind + 2, 0);
            }
        } else {
            fputs("- ", f);
            v = n->items[i];
            if (is_inline(v)) {
                dump_inline(f, v);
                fputc('\n', f);
            } else {
                dump_block(f, v, ind + 2, 1);
            }
        }
    }
}

void cfg_dump(FILE *f, const CfgNode *n) {
    if (is_inline(n)) {
        dump_inline(f, n);
        fputc('\n', f);
    } else {
        dump_block(f, n, 0, 0);
    }
}
