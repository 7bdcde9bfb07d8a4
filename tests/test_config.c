/* tests/test_config.c: experiments/config (YAML tree, includes, overrides, getters), schema (validation),
 * grid (expansion, canonical text, run ids, flattening) and sha256. argv[1] picks the case:
 * yaml_load | includes | overrides | schema_errors | schema_self | fragments | grid | flatten | sha256 | profiles.
 * YAML inputs live in tests/data/configs/; the shipped fragments are read from configs/. */
#include "experiments/config.h"
#include "experiments/grid.h"
#include "experiments/runner.h"
#include "experiments/schema.h"
#include "experiments/sha256.h"
#include "testlib.h"

#include <string.h>
#include <unistd.h>

#define CFG_DIR TEST_DATA_DIR "/configs/"
#define REPO_DIR TEST_DATA_DIR "/../../"

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

/* Parses text (must succeed). */
static CfgNode *parse(const char *text) {
    Error e = {{0}};
    CfgNode *n = cfg_parse_string(text, "test.yaml", &e);
    ASSERTF(n, "parse failed: %s", e.msg);
    return n;
}

/* ---- config_yaml_load --------------------------------------------------------------------------------------- */
static void test_yaml_load(void) {
    Error e = {{0}};
    CfgNode *r = cfg_load(CFG_DIR "load.yaml", &e);
    CHECK_MSG(r, "%s", e.msg);
    if (!r) return;
    CHECK(r->kind == CFG_MAP && r->n == 11);
    CHECK(!strcmp(r->entries[0].key, "name") && r->entries[0].line == 2 && r->entries[0].col == 1);
    /* scalars keep their text and their place */
    CfgNode *c = cfg_get(r, "count");
    CHECK(c && c->kind == CFG_SCALAR && !strcmp(c->text, "42") && c->line == 3 && c->col == 8);
    CHECK(c && contains(c->file, "load.yaml"));
    CHECK(cfg_scalar_type(c) == CFG_INT);
    CHECK(cfg_scalar_type(cfg_get(r, "ratio")) == CFG_FLOAT);
    CHECK(cfg_scalar_type(cfg_get(r, "flag")) == CFG_BOOL);
    CHECK(cfg_scalar_type(cfg_get(r, "quoted")) == CFG_STRING);
    CHECK(cfg_scalar_type(cfg_get(r, "nothing")) == CFG_NULL);
    CfgNode *deep = cfg_get(r, "nested.inner.deep");
    CHECK(deep && !strcmp(deep->text, "x y") && deep->line == 10 && deep->col == 11);
    CfgNode *inner = cfg_get(r, "nested.inner");
    CHECK(inner && inner->kind == CFG_MAP && inner->line == 10 && inner->col == 5);
    CfgNode *l = cfg_get(r, "list");
    CHECK(l && l->kind == CFG_LIST && l->n == 3 && l->line == 11 && l->col == 7);
    if (l && l->n == 3) {
        CHECK(l->items[1]->line == 11 && l->items[1]->col == 11 && !strcmp(l->items[1]->text, "2.5"));
        CHECK(cfg_scalar_type(l->items[2]) == CFG_STRING);
    }
    CfgNode *b = cfg_get(r, "block");
    CHECK(b && b->kind == CFG_LIST && b->n == 2 && b->items[0]->line == 13 && b->items[0]->col == 5);
    CHECK(b && b->n == 2 && b->items[1]->kind == CFG_MAP && !strcmp(cfg_map_get(b->items[1], "k")->text, "v"));
    CfgNode *al = cfg_get(r, "alias.p");
    CHECK(al && !strcmp(al->text, "1"));
    CHECK(cfg_get(r, "missing") == NULL && cfg_get(r, "count.x") == NULL && cfg_get(r, "nested.nope") == NULL);

    /* typed getters */
    long i = 0;
    double x = 0;
    int bo = 0;
    const char *s = NULL;
    CHECK(cfg_get_int(r, "count", 7, &i, &e) == 0 && i == 42);
    CHECK(cfg_get_int(r, "absent", 7, &i, &e) == 0 && i == 7);
    CHECK(cfg_get_int(r, "nothing", 9, &i, &e) == 0 && i == 9); /* null = unset */
    CHECK(cfg_get_double(r, "ratio", 0, &x, &e) == 0 && x == 1e-3);
    CHECK(cfg_get_double(r, "count", 0, &x, &e) == 0 && x == 42);
    CHECK(cfg_get_bool(r, "flag", 0, &bo, &e) == 0 && bo == 1);
    CHECK(cfg_get_string(r, "quoted", NULL, &s, &e) == 0 && s && !strcmp(s, "42"));
    CHECK(cfg_get_string(r, "absent", "dflt", &s, &e) == 0 && !strcmp(s, "dflt"));
    CHECK(cfg_get_int(r, "quoted", 0, &i, &e) == -1);
    CHECK_MSG(contains(e.msg, "load.yaml:6:9: quoted: expected int, found '42'"), "%s", e.msg);
    CHECK(cfg_get_double(r, "nested.inner.deep", 0, &x, &e) == -1);
    CHECK_MSG(contains(e.msg, "load.yaml:10:11: nested.inner.deep: expected float, found 'x y'"), "%s", e.msg);
    CHECK(cfg_get_bool(r, "count", 0, &bo, &e) == -1 && contains(e.msg, "load.yaml:3:8: count: expected bool"));
    CHECK(cfg_get_string(r, "nested", NULL, &s, &e) == -1 && contains(e.msg, "expected string, found a map"));
    const char **sl = NULL;
    int n = -1;
    CHECK(cfg_get_strlist(r, "list", &sl, &n, &e) == 0 && n == 3 && !strcmp(sl[2], "three"));
    free(sl);
    CHECK(cfg_get_strlist(r, "absent", &sl, &n, &e) == 0 && n == 0 && sl == NULL);
    CHECK(cfg_get_strlist(r, "block", &sl, &n, &e) == -1);
    CHECK_MSG(contains(e.msg, "load.yaml:14:5: block[1]: expected string, found a map"), "%s", e.msg);
    CHECK(cfg_get_strlist(r, "count", &sl, &n, &e) == -1 && contains(e.msg, "expected a list of strings"));
    cfg_free(r);

    /* number forms */
    CfgNode *t = parse("a: 1e4\nb: 8.0\nc: 8.5\nd: -12\ne: .5\nf: 1_000\ng: .inf\nh: 99999999999999999999\n");
    CHECK(cfg_get_int(t, "a", 0, &i, &e) == 0 && i == 10000);
    CHECK(cfg_get_int(t, "b", 0, &i, &e) == 0 && i == 8);
    CHECK(cfg_get_int(t, "c", 0, &i, &e) == -1);
    CHECK(cfg_get_int(t, "d", 0, &i, &e) == 0 && i == -12);
    CHECK(cfg_get_double(t, "e", 0, &x, &e) == 0 && x == 0.5);
    CHECK(cfg_scalar_type(cfg_get(t, "f")) == CFG_STRING);
    CHECK(cfg_get_double(t, "g", 0, &x, &e) == 0 && isinf(x));
    CHECK(cfg_scalar_type(cfg_get(t, "h")) == CFG_FLOAT);
    cfg_free(t);

    /* malformed input: syntax error with a position, duplicate keys, a list at the top, two documents */
    CHECK(cfg_parse_string("a: [1, 2\nb: 3\n", "bad.yaml", &e) == NULL);
    CHECK_MSG(contains(e.msg, "bad.yaml:") && contains(e.msg, "YAML syntax error"), "%s", e.msg);
    CHECK(cfg_parse_string("a: 1\nb: 2\na: 3\n", "dup.yaml", &e) == NULL);
    CHECK_MSG(contains(e.msg, "dup.yaml:3:1: duplicate key 'a' (first at line 1)"), "%s", e.msg);
    CHECK(cfg_parse_string("a: *nope\n", "al.yaml", &e) == NULL && contains(e.msg, "unknown anchor"));
    CHECK(cfg_parse_string("a: 1\n---\nb: 2\n", "two.yaml", &e) == NULL && contains(e.msg, "more than one"));
    CHECK(cfg_parse_string("[1, 2]: x\n", "ck.yaml", &e) == NULL && contains(e.msg, "map key"));
    CHECK(cfg_load(CFG_DIR "no_such_file.yaml", &e) == NULL && contains(e.msg, "no_such_file.yaml: cannot open"));
    CHECK(cfg_load(CFG_DIR "frags", &e) == NULL && contains(e.msg, "frags: is a folder"));
    CfgNode *empty = parse("# only a comment\n");
    CHECK(empty->kind == CFG_MAP && empty->n == 0);
    cfg_free(empty);

    /* a deep nest is refused, not a stack overflow */
    char deepy[400] = "";
    for (int k = 0; k < 100; k++) strcat(deepy, "[");
    CHECK(cfg_parse_string(deepy, "deep.yaml", &e) == NULL);

    /* dump reads back to the same canonical text */
    CfgNode *d = parse("s: \"1.0\"\nq: 'a: b'\nl: [1, {x: -y}, []]\nm: {}\nn: ~\nt: \"true\"\nk: \"blocks.*.attn.qkv:q\"\n");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_dump(f, d);
    fclose(f);
    CfgNode *d2 = parse(buf);
    char *c1 = grid_canonical(d, NULL), *c2 = grid_canonical(d2, NULL);
    CHECK_MSG(!strcmp(c1, c2), "dump:\n%s\n%s\n%s", buf, c1, c2);
    free(c1), free(c2), free(buf);
    cfg_free(d), cfg_free(d2);
}

/* ---- config_includes ---------------------------------------------------------------------------------------- */
static void test_includes(void) {
    Error e = {{0}};
    CfgNode *r = cfg_load(CFG_DIR "inc_main.yaml", &e);
    CHECK_MSG(r, "%s", e.msg);
    if (!r) return;
    long i = 0;
    double x = 0;
    const char *s = NULL;
    CHECK(cfg_get(r, "include") == NULL);
    CHECK(cfg_get_double(r, "trainer.lr", 0, &x, &e) == 0 && x == 0.5);    /* the including file wins */
    CHECK(cfg_get_int(r, "trainer.batch", 0, &i, &e) == 0 && i == 64);     /* later fragment over earlier */
    CHECK(cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 3);     /* nested include */
    CHECK(cfg_get_string(r, "trainer.optimizer", NULL, &s, &e) == 0 && !strcmp(s, "sgd"));
    CHECK(cfg_get_string(r, "dataset.name", NULL, &s, &e) == 0 && !strcmp(s, "fashion_mnist"));
    CHECK(cfg_get_string(r, "backbone.family", NULL, &s, &e) == 0 && !strcmp(s, "vit"));
    CHECK(cfg_get_int(r, "method.rank", 0, &i, &e) == 0 && i == 4);
    CfgNode *t = cfg_get(r, "method.targets"); /* lists replace, not append */
    CHECK(t && t->kind == CFG_LIST && t->n == 1 && !strcmp(t->items[0]->text, "x"));
    /* each value remembers the file it came from */
    CfgNode *lr = cfg_get(r, "trainer.lr"), *batch = cfg_get(r, "trainer.batch"), *ep = cfg_get(r, "trainer.epochs");
    CHECK(lr && contains(lr->file, "inc_main.yaml") && lr->line == 4);
    CHECK(batch && contains(batch->file, "frags/trainer.yaml") && batch->line == 3);
    CHECK(ep && contains(ep->file, "frags/nested.yaml") && ep->line == 2);
    /* keys: the base order, then new keys in the order they come */
    CHECK(r->n >= 5 && !strcmp(r->entries[0].key, "dataset") && !strcmp(r->entries[1].key, "trainer"));
    cfg_free(r);

    /* a cycle names the include line and the chain */
    CHECK(cfg_load(CFG_DIR "cycle_a.yaml", &e) == NULL);
    CHECK_MSG(contains(e.msg, "cycle_b.yaml:2:11: include cycle: ") && contains(e.msg, "cycle_a.yaml -> ") &&
                  contains(e.msg, "cycle_b.yaml -> "),
              "%s", e.msg);
    /* a missing fragment names the file and line of the include */
    CHECK(cfg_load(CFG_DIR "missing_inc.yaml", &e) == NULL);
    CHECK_MSG(contains(e.msg, "missing_inc.yaml:4:5: include 'frags/nope.yaml': cannot open") &&
                  contains(e.msg, "No such file"),
              "%s", e.msg);
    /* a self include */
    char path[512];
    snprintf(path, sizeof path, "%s/loralab_cfg_self_%d.yaml", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fprintf(f, "a: 1\ninclude: %s\n", strrchr(path, '/') + 1);
    fclose(f);
    CHECK(cfg_load(path, &e) == NULL);
    CHECK_MSG(contains(e.msg, ":2:10: include cycle"), "%s", e.msg);
    /* include must be paths */
    f = fopen(path, "w");
    fprintf(f, "include: {a: 1}\n");
    fclose(f);
    CHECK(cfg_load(path, &e) == NULL && contains(e.msg, ":1:10: include: expected a path or a list of paths"));
    unlink(path);
}

/* ---- config_overrides --------------------------------------------------------------------------------------- */
static void test_overrides(void) {
    Error e = {{0}};
    CfgNode *r = cfg_load(CFG_DIR "inc_main.yaml", &e);
    ASSERTF(r, "%s", e.msg);
    const SchemaKey *S = &SCHEMA_EXPERIMENT;
    double x = 0;
    long i = 0;
    const char *s = NULL;
    CHECK_MSG(cfg_override(r, "trainer.lr=3e-4", S, &e) == 0, "%s", e.msg);
    CHECK(cfg_get_double(r, "trainer.lr", 0, &x, &e) == 0 && x == 3e-4);
    CfgNode *lr = cfg_get(r, "trainer.lr");
    CHECK(lr && !strcmp(lr->file, "command line 'trainer.lr=3e-4'") && lr->line == 1 && lr->col == 12);
    /* a list value replaces the list */
    CHECK_MSG(cfg_override(r, "method.targets=[qkv, proj]", S, &e) == 0, "%s", e.msg);
    CfgNode *t = cfg_get(r, "method.targets");
    CHECK(t && t->kind == CFG_LIST && t->n == 2 && !strcmp(t->items[1]->text, "proj"));
    /* a key the file does not have but the schema knows; missing maps are made */
    CHECK_MSG(cfg_override(r, "method.alpha=32", S, &e) == 0, "%s", e.msg);
    CHECK(cfg_get_double(r, "method.alpha", 0, &x, &e) == 0 && x == 32);
    CHECK_MSG(cfg_override(r, "record.flush_every=10", S, &e) == 0, "%s", e.msg);
    CHECK(cfg_get_int(r, "record.flush_every", 0, &i, &e) == 0 && i == 10);
    /* free-form sections take any key */
    CHECK_MSG(cfg_override(r, "method.params.abm.margin=1", S, &e) == 0, "%s", e.msg);
    CHECK(cfg_get_int(r, "method.params.abm.margin", 0, &i, &e) == 0 && i == 1);
    /* strings with spaces, a map value merges */
    CHECK(cfg_override(r, "description=a long run", S, &e) == 0);
    CHECK(cfg_get_string(r, "description", NULL, &s, &e) == 0 && !strcmp(s, "a long run"));
    CHECK_MSG(cfg_override(r, "trainer={epochs: 9}", S, &e) == 0, "%s", e.msg);
    CHECK(cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 9);
    CHECK(cfg_get_int(r, "trainer.batch", 0, &i, &e) == 0 && i == 64);
    /* grid keys are config paths: the rest of the path is one key */
    CHECK_MSG(cfg_override(r, "grid.method.rank=[4, 8]", S, &e) == 0, "%s", e.msg);
    CfgNode *g = cfg_get(r, "grid");
    CHECK(g && g->kind == CFG_MAP && g->n == 1 && !strcmp(g->entries[0].key, "method.rank"));
    CHECK(cfg_get(r, "grid.method.rank") && cfg_get(r, "grid.method.rank")->n == 2);
    CHECK_MSG(cfg_override(r, "grid.method.rank=[16]", S, &e) == 0, "%s", e.msg); /* replaces the axis */
    CHECK(g->n == 1 && cfg_get(r, "grid.method.rank")->n == 1);
    /* unknown keys: refused with a did-you-mean, the tree unchanged */
    CHECK(cfg_override(r, "trainer.lrr=1", S, &e) == -1);
    CHECK_MSG(contains(e.msg, "command line 'trainer.lrr=1':1:1: unknown key 'trainer.lrr' (did you mean 'trainer.lr'?)"),
              "%s", e.msg);
    CHECK(cfg_get(r, "trainer.lrr") == NULL);
    CHECK(cfg_override(r, "mehtod.rank=1", S, &e) == -1 && contains(e.msg, "did you mean 'method.rank'?"));
    CHECK(cfg_override(r, "grid.method.rnak=[1]", S, &e) == -1);
    CHECK_MSG(contains(e.msg, "(did you mean 'grid.method.rank'?)"), "%s", e.msg);
    CHECK(cfg_override(r, "zzz=1", S, &e) == -1 && contains(e.msg, "unknown key 'zzz'"));
    CHECK(cfg_override(r, "grid.seeds=[1]", S, &e) == -1);
    CHECK_MSG(contains(e.msg, "unknown key 'grid.seeds'") && !contains(e.msg, "did you mean"), "%s", e.msg);
    CHECK(cfg_override(r, "trainer.lr.x=1", S, &e) == -1 && !contains(e.msg, "did you mean"));
    CHECK(cfg_override(r, "backbone.vit.bogus=1", S, &e) == -1); /* fails after making backbone.vit ... */
    CHECK(cfg_get(r, "backbone.vit") == NULL);                   /* ... which is not left behind */
    /* without a schema any key goes */
    CHECK(cfg_override(r, "zzz.y=1", NULL, &e) == 0 && cfg_get(r, "zzz.y"));
    /* a key already in the tree may be set even if the schema does not know it (validation reports it) */
    CHECK(cfg_override(r, "zzz.y=2", S, &e) == 0);
    /* malformed assignments */
    CHECK(cfg_override(r, "noequals", S, &e) == -1 && contains(e.msg, "expected key.path=value"));
    CHECK(cfg_override(r, "=1", S, &e) == -1);
    CHECK(cfg_override(r, "a..b=1", S, &e) == -1);
    CHECK(cfg_override(r, "trainer.lr=[1, 2", S, &e) == -1);
    CHECK_MSG(contains(e.msg, "command line 'trainer.lr=[1, 2':1:"), "%s", e.msg);
    CHECK(cfg_override(r, "trainer.lr.x=1", S, &e) == -1 && contains(e.msg, "not a map"));
    /* a wrong value is found by validation, at the override's column */
    cfg_map_remove(r, "zzz");
    CHECK(cfg_override(r, "trainer.lr=abc", S, &e) == 0);
    CHECK(schema_validate(r, S, SCHEMA_FRAGMENT, NULL, &e) == -1);
    CHECK_MSG(contains(e.msg, "command line 'trainer.lr=abc':1:12: trainer.lr: expected float, found 'abc'"), "%s",
              e.msg);
    cfg_free(r);
}

/* ---- config_schema_errors ----------------------------------------------------------------------------------- */
static void test_schema_errors(void) {
    Error e = {{0}};
    const SchemaKey *S = &SCHEMA_EXPERIMENT;
    CfgNode *r = cfg_load(CFG_DIR "schema_errors.yaml", &e);
    ASSERTF(r, "%s", e.msg);
    SchemaReport rep;
    CHECK(schema_validate(r, S, 0, &rep, &e) == -1);
    const char *want[] = {
        CFG_DIR "schema_errors.yaml:4:8: missing required key 'heads' in backbone.vit",
        (CFG_DIR "schema_errors.yaml:7:9: dataset.path: '/nonexistent/loralab/fmnist' does not exist (No such file "
                 "or directory)"),
        CFG_DIR "schema_errors.yaml:9:7: trainer.lr: expected float, found 'abc'",
        CFG_DIR "schema_errors.yaml:10:10: trainer.batch: 0 is out of range (expected int >= 1)",
        (CFG_DIR "schema_errors.yaml:11:13: trainer.schedule: 'cosin' is not one of constant, linear, cosine (did "
                 "you mean 'cosine'?)"),
        CFG_DIR "schema_errors.yaml:12:3: unknown key 'warmpu' in trainer (did you mean 'warmup'?)",
    };
    CHECK_MSG(rep.total == (int)ARRAY_LEN(want) && rep.n == rep.total, "%d errors:\n%s", rep.total, e.msg);
    for (int i = 0; i < rep.n && i < (int)ARRAY_LEN(want); i++)
        CHECK_MSG(!strcmp(rep.msg[i], want[i]), "\n got  %s\n want %s", rep.msg[i], want[i]);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) CHECK_MSG(contains(e.msg, want[i]), "%s not in err", want[i]);
    /* without file checks, and as a fragment (no required keys) */
    CHECK(schema_validate(r, S, SCHEMA_NO_FILES | SCHEMA_FRAGMENT, &rep, &e) == -1 && rep.total == 4);
    cfg_free(r);

    /* the message format of the style guide, exactly */
    r = parse("name: x\nstages: [eval]\nbackbone: {family: vit}\ndataset: {name: fashion_mnist}\nmethod:\n  params: {}\n"
              "  alpah: 1\n  init: pisa\n  rank: -1\n  targets: qkv\nseeds: [0, x]\nbogus: 1\nnmae: y\n");
    CHECK(schema_validate(r, S, 0, &rep, &e) == -1);
    const char *want2[] = {
        "test.yaml:7:3: unknown key 'alpah' in method (did you mean 'alpha'?)",
        ("test.yaml:8:9: method.init: 'pisa' is not one of kaiming, gaussian, orthogonal, pissa, olora, lora_xs, eva, "
         "corda, lora_ga, lora_sb, cnt_lora, abm (did you mean 'pissa'?)"),
        "test.yaml:9:9: method.rank: -1 is out of range (expected int >= 1)",
        "test.yaml:10:12: method.targets: expected a list of strings, found 'qkv'",
        "test.yaml:11:12: seeds[1]: expected int, found 'x'",
        "test.yaml:12:1: unknown key 'bogus' at the top level",
        "test.yaml:13:1: unknown key 'nmae' at the top level (did you mean 'name'?)",
    };
    CHECK_MSG(rep.total == (int)ARRAY_LEN(want2), "%d errors:\n%s", rep.total, e.msg);
    for (int i = 0; i < rep.n && i < (int)ARRAY_LEN(want2); i++)
        CHECK_MSG(!strcmp(rep.msg[i], want2[i]), "\n got  %s\n want %s", rep.msg[i], want2[i]);
    cfg_free(r);

    /* missing required keys at the top level; null counts as missing; list items; types of maps */
    r = parse("name: ~\nbackbone: 3\nreport:\n  tables:\n    - {name: t, columns: dataset.name, metric: acc}\n"
              "  figures: [{name: f, series: loss, colour: red}]\n");
    CHECK(schema_validate(r, S, 0, &rep, &e) == -1);
    CHECK_MSG(contains(e.msg, "test.yaml:1:7: name: required, found null"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:2:11: backbone: expected a map, found '3'"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:5:7: missing required key 'rows' in report.tables[0]"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "unknown key 'colour' in report.figures[0]"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:1:1: missing required key 'dataset' at the top level"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:1:1: missing required key 'stages' at the top level"), "%s", e.msg);
    cfg_free(r);

    /* grid / zip keys are config paths, their values lists of that key's type; zip lengths agree */
    r = parse("grid:\n  method.rnak: [4]\n  trainer.lr: [0.1, abc]\n  method.init: pissa\n  seeds: [[1]]\n"
              "zip:\n  method.rank: [1, 2]\n  method.alpha: [1, 2, 3]\n  method.params.x: [1, 2]\n");
    CHECK(schema_validate(r, S, SCHEMA_FRAGMENT, &rep, &e) == -1);
    CHECK_MSG(contains(e.msg, "test.yaml:2:3: unknown key 'method.rnak' in grid (did you mean 'method.rank'?)"), "%s",
              e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:3:21: grid.trainer.lr[1]: expected float, found 'abc'"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:4:16: grid.method.init: expected a non-empty list of values, found 'pissa'"),
              "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:5:3: 'seeds' cannot vary in grid"), "%s", e.msg);
    CHECK_MSG(contains(e.msg, "test.yaml:8:17: zip: 'method.alpha' has 3 values but 'method.rank' has 2"), "%s", e.msg);
    CHECK(rep.total == 5);
    cfg_free(r);

    /* keys the grid or zip sets are not missing; grid map values may be partial */
    r = parse("name: x\nstages: [eval]\nbackbone: {family: vit}\ntrainer: {batch: 2}\n"
              "grid:\n  trainer.lr: [0.1]\n  dataset: [{name: fashion_mnist}, {path: /nonexistent/x}]\n");
    CHECK(schema_validate(r, S, 0, &rep, &e) == -1);
    CHECK_MSG(rep.total == 1 && contains(e.msg, "test.yaml:7:43: grid.dataset[1].path: '/nonexistent/x' does not exist"),
              "%s", e.msg);
    cfg_free(r);

    /* more than SCHEMA_MAX_ERRORS: the first 20 kept, all counted; err ends with how many were left out */
    char big[4096] = "";
    for (int i = 0; i < 30; i++) snprintf(big + strlen(big), sizeof big - strlen(big), "bad%02d: 1\n", i);
    r = parse(big);
    CHECK(schema_validate(r, S, SCHEMA_FRAGMENT, &rep, &e) == -1);
    CHECK(rep.total == 30 && rep.n == SCHEMA_MAX_ERRORS);
    CHECK_MSG(contains(e.msg, "more errors") && strlen(e.msg) < sizeof e.msg, "%s", e.msg);
    cfg_free(r);

    /* edit distance (optimal string alignment) */
    CHECK(schema_edit_distance("marign", "margin") == 1);
    CHECK(schema_edit_distance("lr", "lr") == 0);
    CHECK(schema_edit_distance("kitten", "sitting") == 3);
    CHECK(schema_edit_distance("", "ab") == 2);
    const char *cands[] = {"margin", "layers", "lambda"};
    CHECK(schema_closest("marign", cands, 3) == cands[0]);
    CHECK(schema_closest("zzzzzz", cands, 3) == NULL);
    CHECK(schema_closest("x", cands, 3) == NULL);
    char sug[128];
    CHECK(schema_suggest_path(S, "trainer.lrr", sug, sizeof sug) == 0 && !strcmp(sug, "trainer.lr"));
    CHECK(schema_suggest_path(S, "backbone.vti.dmi", sug, sizeof sug) == 0 && !strcmp(sug, "backbone.vit.dim"));
    CHECK(schema_suggest_path(S, "qqqqq.lr", sug, sizeof sug) == -1);
    CHECK(schema_lookup(S, "backbone.vit.dim") && schema_lookup(S, "backbone.vit.dim")->type == SCHEMA_INT);
    CHECK(schema_lookup(S, "method.params.anything.at.all") != NULL);
    CHECK(schema_lookup(S, "grid.method.rank") != NULL && schema_lookup(S, "grid.method.nope") == NULL);
    CHECK(schema_lookup(S, "trainer.lr.x") == NULL && schema_lookup(S, "nope") == NULL);
}

/* ---- config_schema_self: the table's own defaults, and defaults filled in --------------------------------- */
static void test_schema_self(void) {
    Error e = {{0}};
    CHECK_MSG(schema_self_check(&SCHEMA_EXPERIMENT, &e) == 0, "%s", e.msg);
    CfgNode *r = parse("name: x\ntrainer: {lr: 0.1, batch: 4, epochs: ~}\nbackbone: {family: vit, vit: {dim: 8}}\n"
                       "report: {tables: [{name: t}]}\n");
    schema_apply_defaults(r, &SCHEMA_EXPERIMENT);
    long i = 0;
    double x = 0;
    const char *s = NULL;
    CHECK(cfg_get_int(r, "trainer.epochs", -1, &i, &e) == 0 && i == 1); /* null filled */
    CHECK(cfg_get_string(r, "trainer.schedule", NULL, &s, &e) == 0 && !strcmp(s, "constant"));
    CHECK(cfg_get_double(r, "backbone.vit.ln_eps", 0, &x, &e) == 0 && x == 1e-6);
    CHECK(cfg_get_string(r, "output", NULL, &s, &e) == 0 && !strcmp(s, "runs"));
    CHECK(cfg_get_string(r, "report.tables", NULL, &s, &e) == -1); /* still a list */
    CHECK(cfg_get(r, "method") == NULL && cfg_get(r, "backbone.cnn") == NULL); /* absent sections stay absent */
    CfgNode *tb = cfg_get(r, "report.tables");
    CHECK(tb && tb->n == 1 && cfg_map_get(tb->items[0], "name"));
    CfgNode *ep = cfg_get(r, "trainer.epochs");
    CHECK(ep && !strcmp(ep->file, "default of trainer.epochs"));
    cfg_free(r);
}

/* ---- config_fragments: the shipped configs/ fragments parse and validate ------------------------------------ */
static void test_fragments(void) {
    const char *frags[] = {"configs/backbones/tiny_vit.yaml", "configs/datasets/fashion_mnist.yaml",
                           "configs/trainers/pretrain.yaml"};
    const char *fmnist = "/usr/share/datasets/fashion-mnist";
    unsigned files = access(fmnist, F_OK) == 0 ? 0 : SCHEMA_NO_FILES;
    if (files) fprintf(stderr, "note: %s missing (package dataset-fashion-mnist): path checks skipped\n", fmnist);
    for (size_t i = 0; i < ARRAY_LEN(frags); i++) {
        char path[600];
        snprintf(path, sizeof path, "%s%s", REPO_DIR, frags[i]);
        Error e = {{0}};
        CfgNode *r = cfg_load(path, &e);
        CHECK_MSG(r, "%s", e.msg);
        if (!r) continue;
        CHECK_MSG(schema_validate(r, &SCHEMA_EXPERIMENT, SCHEMA_FRAGMENT | files, NULL, &e) == 0, "%s: %s", frags[i],
                  e.msg);
        cfg_free(r);
    }
    /* composed into a complete config */
    Error e = {{0}};
    CfgNode *r = cfg_load(CFG_DIR "compose.yaml", &e);
    CHECK_MSG(r, "%s", e.msg);
    if (!r) return;
    CHECK_MSG(schema_validate(r, &SCHEMA_EXPERIMENT, files, NULL, &e) == 0, "%s", e.msg);
    long i = 0;
    double x = 0;
    int b = 0;
    const char *s = NULL;
    CHECK(cfg_get_int(r, "backbone.vit.dim", 0, &i, &e) == 0 && i == 64);
    CHECK(cfg_get_int(r, "backbone.vit.patch", 0, &i, &e) == 0 && i == 7);
    CHECK(cfg_get_string(r, "backbone.vit.pool", NULL, &s, &e) == 0 && !strcmp(s, "cls"));
    CHECK(cfg_get_double(r, "trainer.lr", 0, &x, &e) == 0 && x == 2e-3);
    CHECK(cfg_get_double(r, "trainer.weight_decay", 0, &x, &e) == 0 && x == 0.05);
    CHECK(cfg_get_double(r, "trainer.warmup", 0, &x, &e) == 0 && x == 0.1);
    CHECK(cfg_get_bool(r, "trainer.hflip", 0, &b, &e) == 0 && b == 1);
    CHECK(cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 1);
    CHECK(cfg_get_string(r, "dataset.name", NULL, &s, &e) == 0 && !strcmp(s, "fashion_mnist"));
    GridPlan plan;
    CHECK_MSG(grid_expand(r, &SCHEMA_EXPERIMENT, &plan, &e) == 0, "%s", e.msg);
    CHECK(plan.n_runs == 1 && plan.runs[0].seed == 0 && strlen(plan.runs[0].id) == GRID_ID_LEN);
    if (plan.n_runs == 1)
        CHECK_MSG(schema_validate(plan.runs[0].cfg, &SCHEMA_EXPERIMENT, files, NULL, &e) == 0, "%s", e.msg);
    grid_plan_free(&plan);
    cfg_free(r);
}

/* ---- config_grid -------------------------------------------------------------------------------------------- */
static const char *run_str(const GridRun *r, const char *path) {
    CfgNode *n = cfg_get(r->cfg, path);
    return n && n->kind == CFG_SCALAR ? n->text : "?";
}

static void id_of(const char *yaml, const SchemaKey *schema, char id[GRID_ID_LEN + 1]) {
    CfgNode *n = parse(yaml);
    grid_run_id(n, schema, id);
    cfg_free(n);
}

static void test_grid(void) {
    Error e = {{0}};
    const SchemaKey *S = &SCHEMA_EXPERIMENT;
    CfgNode *r = cfg_load(CFG_DIR "grid.yaml", &e);
    ASSERTF(r, "%s", e.msg);
    CHECK_MSG(schema_validate(r, S, 0, NULL, &e) == 0, "%s", e.msg);
    GridPlan p;
    CHECK_MSG(grid_expand(r, S, &p, &e) == 0, "%s", e.msg);
    CHECK(p.n_cells == 12 && p.n_seeds == 2 && p.n_runs == 24);
    /* order: rank (slowest), init, zip (lr, batch paired), seed (fastest) */
    const char *ranks[] = {"4", "8", "16"}, *inits[] = {"kaiming", "pissa"}, *lrs[] = {"1e-3", "2e-3"},
               *batches[] = {"8", "16"};
    for (int i = 0; i < p.n_runs; i++) {
        const GridRun *g = &p.runs[i];
        int seed = i % 2, c = i / 2, z = c % 2, in = (c / 2) % 2, rk = c / 4;
        CHECK_MSG(g->cell == c && g->seed_index == seed && g->seed == seed, "run %d", i);
        CHECK_MSG(!strcmp(run_str(g, "method.rank"), ranks[rk]) && !strcmp(run_str(g, "method.init"), inits[in]) &&
                      !strcmp(run_str(g, "trainer.lr"), lrs[z]) && !strcmp(run_str(g, "trainer.batch"), batches[z]) &&
                      atoi(run_str(g, "seed")) == seed,
                  "run %d: rank %s init %s lr %s batch %s seed %s", i, run_str(g, "method.rank"),
                  run_str(g, "method.init"), run_str(g, "trainer.lr"), run_str(g, "trainer.batch"), run_str(g, "seed"));
        CHECK(!cfg_get(g->cfg, "grid") && !cfg_get(g->cfg, "zip") && !cfg_get(g->cfg, "seeds"));
        CHECK(cfg_get(g->cfg, "trainer.schedule") != NULL); /* defaults filled */
        CHECK_MSG(schema_validate(g->cfg, S, 0, NULL, &e) == 0, "%s", e.msg);
        for (int j = 0; j < i; j++) CHECK_MSG(strcmp(g->id, p.runs[j].id), "runs %d and %d share id %s", i, j, g->id);
    }
    /* a value set by the grid keeps its place in the file */
    CfgNode *rank = cfg_get(p.runs[4].cfg, "method.rank");
    CHECK(rank && contains(rank->file, "grid.yaml") && rank->line == 9 && rank->col == 17);
    /* ids are a function of the config: expanding again gives the same ids */
    GridPlan q;
    CHECK(grid_expand(r, S, &q, &e) == 0 && q.n_runs == p.n_runs);
    for (int i = 0; i < q.n_runs && i < p.n_runs; i++) CHECK(!strcmp(q.runs[i].id, p.runs[i].id));
    grid_plan_free(&q);
    /* a cell of the grid has the id of the same config written out by hand */
    CfgNode *hand = parse("name: g\nbackbone: {family: vit}\ndataset: {name: fashion_mnist}\nstages: [finetune, eval]\n"
                          "method: {init: pissa, rank: 8}\ntrainer: {batch: 16, lr: 0.002}\nseed: 1\n");
    schema_apply_defaults(hand, S);
    char hid[GRID_ID_LEN + 1];
    grid_run_id(hand, S, hid);
    int c = 1 * 4 + 1 * 2 + 1; /* rank 8, pissa, zip 1 */
    CHECK_MSG(!strcmp(hid, p.runs[2 * c + 1].id), "%s vs %s", hid, p.runs[2 * c + 1].id);
    cfg_free(hand);
    grid_plan_free(&p);
    cfg_free(r);

    /* no grid: one cell; seed from `seed` or 0 */
    r = parse("name: a\nseed: 7\n");
    CHECK(grid_expand(r, NULL, &p, &e) == 0 && p.n_runs == 1 && p.runs[0].seed == 7);
    grid_plan_free(&p);
    cfg_free(r);
    r = parse("name: a\n");
    CHECK(grid_expand(r, NULL, &p, &e) == 0 && p.n_runs == 1 && p.runs[0].seed == 0 &&
          !strcmp(run_str(&p.runs[0], "seed"), "0"));
    grid_plan_free(&p);
    cfg_free(r);
    /* a map value merges into the base (a variant is a partial map) */
    r = parse("method: {rank: 4, init: kaiming}\ngrid:\n  method: [{init: pissa}, {rank: 2}]\n");
    CHECK(grid_expand(r, NULL, &p, &e) == 0 && p.n_runs == 2);
    if (p.n_runs == 2) {
        CHECK(!strcmp(run_str(&p.runs[0], "method.init"), "pissa") && !strcmp(run_str(&p.runs[0], "method.rank"), "4"));
        CHECK(!strcmp(run_str(&p.runs[1], "method.init"), "kaiming") && !strcmp(run_str(&p.runs[1], "method.rank"), "2"));
    }
    grid_plan_free(&p);
    cfg_free(r);

    /* errors */
    r = parse("zip:\n  a: [1, 2]\n  b: [1, 2, 3]\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1);
    CHECK_MSG(contains(e.msg, "test.yaml:3:6: zip: 'b' has 3 values but 'a' has 2"), "%s", e.msg);
    cfg_free(r);
    r = parse("grid: {a: []}\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "grid.a: expected a non-empty list"));
    cfg_free(r);
    r = parse("grid: {a: [1]}\nzip: {a: [2]}\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "also a grid key"));
    cfg_free(r);
    r = parse("seeds: [0, 1, 0]\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "test.yaml:1:15: seeds[2]: seed 0 is listed twice"));
    cfg_free(r);
    r = parse("seeds: [0, -1]\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "seeds[1]: expected an int >= 0, found '-1'"));
    cfg_free(r);
    r = parse("a: 3\ngrid: {a.b: [1]}\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "cannot set 'a.b': 'a' is '3', not a map"));
    cfg_free(r);
    r = parse("grid: {a: [1,2,3,4,5,6,7,8,9,10], b: [1,2,3,4,5,6,7,8,9,10], c: [1,2,3,4,5,6,7,8,9,10],\n"
              "  d: [1,2,3,4,5,6,7,8,9,10], e: [1,2,3,4,5,6,7,8,9,10], f: [1,2,3,4,5,6,7,8,9,10]}\nseeds: [0, 1]\n");
    CHECK(grid_expand(r, NULL, &p, &e) == -1 && contains(e.msg, "more than"));
    cfg_free(r);

    /* run ids: stable across key order and number spelling, different for different values */
    char a[GRID_ID_LEN + 1], b[GRID_ID_LEN + 1];
    const char *base = "name: x\ntrainer: {lr: 1e-3, batch: 8, hflip: true}\nmethod: {rank: 4, init: pissa}\n";
    id_of(base, S, a);
    CHECK(strlen(a) == GRID_ID_LEN && strspn(a, "0123456789abcdef") == GRID_ID_LEN);
    id_of("method:\n  init: \"pissa\"\n  rank: 4.0\ntrainer:\n  hflip: True\n  batch: 8\n  lr: 0.001\nname: 'x'\n", S, b);
    CHECK_MSG(!strcmp(a, b), "%s vs %s", a, b);
    id_of("name: x\ntrainer: {lr: 1.0e-03, batch: +8, hflip: TRUE}\nmethod: {rank: 4, init: pissa}\nextra: ~\n", S, b);
    CHECK_MSG(!strcmp(a, b), "%s vs %s", a, b);
    id_of("name: x\ntrainer: {lr: 2e-3, batch: 8, hflip: true}\nmethod: {rank: 4, init: pissa}\n", S, b);
    CHECK(strcmp(a, b));
    id_of("name: x\ntrainer: {lr: 1e-3, batch: 8, hflip: false}\nmethod: {rank: 4, init: pissa}\n", S, b);
    CHECK(strcmp(a, b));
    id_of("name: x\ntrainer: {lr: \"1e-3\", batch: 8, hflip: true}\nmethod: {rank: 4, init: pissa}\n", S, b);
    CHECK(strcmp(a, b)); /* the string "1e-3" is not the number */
    id_of("name: y\ntrainer: {lr: 1e-3, batch: 8, hflip: true}\nmethod: {rank: 4, init: pissa}\n", S, b);
    CHECK(strcmp(a, b)); /* the experiment's name is part of the identity */
    /* keys that do not change what runs are left out with a schema, kept without */
    const char *desc = "name: x\ntrainer: {lr: 1e-3, batch: 8, hflip: true}\nmethod: {rank: 4, init: pissa}\n"
                       "description: hello\noutput: elsewhere\nreport: {tables: []}\nrecord: {flush_every: 7}\n";
    id_of(desc, S, b);
    CHECK(!strcmp(a, b));
    id_of(base, NULL, a);
    id_of(desc, NULL, b);
    CHECK(strcmp(a, b));
    id_of("name: x\nrecord: {flush_every: 7, series: [a]}\n", S, a);
    id_of("name: x\nrecord: {series: [a]}\n", S, b);
    CHECK(!strcmp(a, b));
    id_of("name: x\nrecord: {series: [b]}\n", S, b);
    CHECK(strcmp(a, b));
    /* list order matters */
    id_of("a: [1, 2]\n", NULL, a);
    id_of("a: [2, 1]\n", NULL, b);
    CHECK(strcmp(a, b));

    /* the canonical text itself */
    CfgNode *n = parse("d: [1, x, {z: 1, y: 2}]\na: {c: True, b: 1e-3}\ne: '1e-3'\nn: null\nf: -0.0\ng: 1e300\n"
                       "h: 0.1\ni: \"q\\\"\\n\"\nj: -.inf\nk: 12345678901234\nl: 2.5e-7\n");
    char *txt = grid_canonical(n, NULL);
    const char *want = "{\"a\":{\"b\":0.001,\"c\":true},\"d\":[1,\"x\",{\"y\":2,\"z\":1}],\"e\":\"1e-3\",\"f\":0,"
                       "\"g\":1e+300,\"h\":0.1,\"i\":\"q\\\"\\n\",\"j\":-.inf,\"k\":12345678901234,\"l\":2.5e-07}";
    CHECK_MSG(!strcmp(txt, want), "\n got  %s\n want %s", txt, want);
    free(txt);
    cfg_free(n);
}

/* ---- config_flatten ----------------------------------------------------------------------------------------- */
static void test_flatten(void) {
    CfgNode *n = parse("trainer: {lr: 1e-3, batch: 8, hflip: yes}\nmethod: {targets: [qkv, proj], params: {}}\n"
                       "name: demo\nz: ~\nreport: {tables: [{name: t, rows: r}]}\nlr2: 2E-3\n");
    char **kv = NULL;
    int np = grid_flatten(n, &kv);
    const char *want[] = {
        "lr2", "0.002", "method.targets", "[\"qkv\",\"proj\"]", "name", "demo",
        "report.tables", "[{\"name\":\"t\",\"rows\":\"r\"}]", "trainer.batch", "8", "trainer.hflip", "yes",
        "trainer.lr", "0.001",
    };
    CHECK_MSG(np == (int)ARRAY_LEN(want) / 2, "%d pairs", np);
    for (int i = 0; i < 2 * np && i < (int)ARRAY_LEN(want); i++)
        CHECK_MSG(!strcmp(kv[i], want[i]), "pair item %d: got %s want %s", i, kv[i], want[i]);
    grid_flatten_free(kv, np);
    cfg_free(n);
}

/* ---- config_sha256 ------------------------------------------------------------------------------------------ */
static void test_sha256(void) {
    char hex[65];
    sha256_hex("", 0, hex, 64);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha256_hex("abc", 3, hex, 64);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m448, strlen(m448), hex, 64);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                       "mnopqrstnopqrstu";
    sha256_hex(m896, strlen(m896), hex, 64);
    CHECK(!strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
    /* one million 'a', streamed in uneven pieces */
    static char mil[1000000];
    memset(mil, 'a', sizeof mil);
    Sha256 s;
    sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < sizeof mil) {
        size_t k = MIN(step, sizeof mil - off);
        sha256_update(&s, mil + off, k);
        off += k;
        step = step * 3 % 1000 + 1;
    }
    uint8_t d[32];
    sha256_final(&s, d);
    uint8_t one[32];
    sha256(mil, sizeof mil, one);
    CHECK(!memcmp(d, one, 32));
    sha256_hex(mil, sizeof mil, hex, 64);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    /* lengths around the padding boundary agree between one-shot and byte-by-byte */
    for (size_t n = 50; n < 70; n++) {
        sha256(mil, n, one);
        sha256_init(&s);
        for (size_t i = 0; i < n; i++) sha256_update(&s, mil + i, 1);
        sha256_final(&s, d);
        CHECK(!memcmp(d, one, 32));
    }
    sha256_hex("abc", 3, hex, 16);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea"));
}

/* ---- config_profiles: profiles overlays (runner_load_config), n_classes: auto -------------------------------- */
static const char PROFILED[] =
    "name: prof\n"
    "profile: mini\n"
    "profiles:\n"
    "  mini: {trainer: {epochs: 1}}\n"
    "  paper: {trainer: {epochs: 7, batch: 64}, grid: {method.rank: [8]}, output: runs/paper}\n"
    "  empty:\n"
    "backbone: {family: vit, skip_head: true,\n"
    "  vit: {img_size: 28, in_ch: 1, patch: 7, dim: 8, depth: 1, heads: 1, mlp_hidden: 8, n_classes: auto}}\n"
    "dataset: {name: fashion_mnist}\n"
    "trainer: {epochs: 3, batch: 32, lr: 0.1}\n"
    "stages: [finetune]\n"
    "grid: {method.rank: [1, 2]}\n";

static CfgNode *load_profiled(const char *text, const char *const *ov, int n_ov, Error *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/loralab_cfg_prof_%d.yaml", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    fclose(f);
    RunnerOptions o = {.overrides = ov, .n_overrides = n_ov, .cell = -1};
    CfgNode *r = runner_load_config(path, &o, 1, e);
    unlink(path);
    return r;
}

static void test_profiles(void) {
    Error e = {{0}};
    long i = 0;
    const char *s = NULL;
    /* default: the config's profile (mini): its overlay merged, the rest kept, profiles removed */
    CfgNode *r = load_profiled(PROFILED, NULL, 0, &e);
    CHECK_MSG(r, "%s", e.msg);
    if (!r) return;
    CHECK(cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 1);
    CHECK(cfg_get_int(r, "trainer.batch", 0, &i, &e) == 0 && i == 32);
    CHECK(cfg_get_string(r, "profile", NULL, &s, &e) == 0 && s && !strcmp(s, "mini"));
    CHECK(cfg_get(r, "profiles") == NULL);
    CHECK(cfg_get_string(r, "backbone.vit.n_classes", NULL, &s, &e) == 0 && !strcmp(s, "auto")); /* schema took it */
    GridPlan plan;
    CHECK(grid_expand(r, &SCHEMA_EXPERIMENT, &plan, &e) == 0 && plan.n_runs == 2);
    char mini_id[GRID_ID_LEN + 1];
    snprintf(mini_id, sizeof mini_id, "%s", plan.runs[0].id);
    grid_plan_free(&plan);
    cfg_free(r);
    /* profile=paper (what --profile paper passes): maps merge key by key, lists and grids replace; a later
     * override still wins over the overlay; the run ids differ from mini's */
    const char *ov[] = {"profile=paper", "trainer.lr=0.5"};
    r = load_profiled(PROFILED, ov, 2, &e);
    CHECK_MSG(r, "%s", e.msg);
    if (!r) return;
    double lr = 0;
    CHECK(cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 7);
    CHECK(cfg_get_int(r, "trainer.batch", 0, &i, &e) == 0 && i == 64);
    CHECK(cfg_get_double(r, "trainer.lr", 0, &lr, &e) == 0 && lr == 0.5);
    CHECK(cfg_get_string(r, "output", NULL, &s, &e) == 0 && !strcmp(s, "runs/paper"));
    CHECK(cfg_get_string(r, "profile", NULL, &s, &e) == 0 && !strcmp(s, "paper"));
    CHECK(grid_expand(r, &SCHEMA_EXPERIMENT, &plan, &e) == 0 && plan.n_runs == 1);
    if (plan.n_runs == 1) CHECK(strcmp(plan.runs[0].id, mini_id) != 0);
    grid_plan_free(&plan);
    cfg_free(r);
    /* an empty (null) overlay is allowed */
    const char *ov_empty[] = {"profile=empty"};
    r = load_profiled(PROFILED, ov_empty, 1, &e);
    CHECK_MSG(r && cfg_get_int(r, "trainer.epochs", 0, &i, &e) == 0 && i == 3, "%s", e.msg);
    cfg_free(r);
    /* errors: an unknown profile lists the known ones; a profile without a profiles section; an overlay
     * setting profile; a bad n_classes word */
    const char *ov_bad[] = {"profile=papr"};
    CHECK(load_profiled(PROFILED, ov_bad, 1, &e) == NULL);
    CHECK_MSG(contains(e.msg, "profile 'papr' is not one of this config's profiles (mini, paper, empty)"), "%s", e.msg);
    const char *plain = "name: p\nbackbone: {family: vit, vit: {img_size: 28, in_ch: 1, patch: 7, dim: 8, depth: 1, "
                        "heads: 1, mlp_hidden: 8, n_classes: 10}}\ndataset: {name: fashion_mnist}\nstages: [finetune]\n";
    const char *ov_paper[] = {"profile=paper"};
    CHECK(load_profiled(plain, ov_paper, 1, &e) == NULL);
    CHECK_MSG(contains(e.msg, "profile 'paper' asked for, but the config has no `profiles:` section"), "%s", e.msg);
    r = load_profiled(plain, NULL, 0, &e); /* no profiles: nothing changes */
    CHECK_MSG(r && cfg_get(r, "profile") == NULL, "%s", e.msg);
    cfg_free(r);
    char text[2048];
    snprintf(text, sizeof text, "%s", PROFILED);
    char *m = strstr(text, "  mini: {trainer: {epochs: 1}}");
    memcpy(m, "  mini: {profile: x, a: [1]}  ", 30); /* the same length */
    CHECK(load_profiled(text, NULL, 0, &e) == NULL && contains(e.msg, "an overlay cannot set profile"));
    snprintf(text, sizeof text, "%s", PROFILED);
    m = strstr(text, "n_classes: auto");
    memcpy(m, "n_classes: aut0", 15);
    CHECK(load_profiled(text, NULL, 0, &e) == NULL);
    CHECK_MSG(contains(e.msg, "n_classes: expected int or auto, found 'aut0'"), "%s", e.msg);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s yaml_load|includes|overrides|schema_errors|schema_self|fragments|grid|flatten|"
                        "sha256|profiles\n", argv[0]);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "yaml_load")) test_yaml_load();
    else if (!strcmp(c, "includes")) test_includes();
    else if (!strcmp(c, "overrides")) test_overrides();
    else if (!strcmp(c, "schema_errors")) test_schema_errors();
    else if (!strcmp(c, "schema_self")) test_schema_self();
    else if (!strcmp(c, "fragments")) test_fragments();
    else if (!strcmp(c, "grid")) test_grid();
    else if (!strcmp(c, "flatten")) test_flatten();
    else if (!strcmp(c, "sha256")) test_sha256();
    else if (!strcmp(c, "profiles")) test_profiles();
    else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "config_%s", c);
    return test_finish(name);
}
