/* experiments/runner.c: cells -> runs -> record. See runner.h for the contract. */
#include "runner.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "core/params_io.h"
#include "dp.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/vit_io.h"
#include "grid.h"
#include "metrics.h"
#include "methods/init.h"
#include "methods/lava.h"
#include "methods/lora.h"
#include "methods/peft_io.h"
#include "results/db.h"
#include "results/figure.h"
#include "results/h5rec.h"
#include "results/report.h"
#include "schema.h"
#include "sweep.h"
#include "task.h"
#include "train.h"
#include "init_cuda.h"
#include "train_cuda.h"

#define LORALAB_VERSION "loralab 0.1"
#define PATH_MAX_LEN 1024

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* Profiles (docs/config.md, "Profiles"): `profiles:` maps a name to an overlay that is merged onto the config
 * (maps key by key, lists replace) before the command-line overrides. The profile is the last `profile=P`
 * override, else the config's `profile:`, else `mini` when there is one. The chosen name stays in the config
 * as `profile` (part of the run id, so mini and paper runs never share a run). */
static int apply_profile(CfgNode *root, const RunnerOptions *o, Error *err) {
    const char *name = NULL;
    for (int i = 0; o && i < o->n_overrides; i++)
        if (!strncmp(o->overrides[i], "profile=", 8)) name = o->overrides[i] + 8;
    const CfgNode *pn = cfg_map_get(root, "profile");
    if (!name && pn && pn->kind == CFG_SCALAR && !cfg_is_null(pn)) name = pn->text;
    CfgNode *profiles = cfg_map_get(root, "profiles");
    char w[256], d[128];
    if (cfg_is_null(profiles)) {
        if (name && strcmp(name, "mini"))
            return err_set(err, "%s: profile '%s' asked for, but the config has no `profiles:` section (docs/config.md, "
                           "\"Profiles\")", root->file ? root->file : "config", name);
        cfg_map_remove(root, "profiles");
        return 0;
    }
    if (profiles->kind != CFG_MAP)
        return err_set(err, "%s: profiles: expected a map of profile names to overlay maps, found %s",
                       cfg_where(profiles, w, sizeof w), cfg_describe(profiles, d, sizeof d));
    if (!name) name = cfg_map_get(profiles, "mini") ? "mini" : NULL;
    if (!name)
        return err_set(err, "%s: profiles: no `profile:` is set and there is no `mini` profile: set profile: <name>",
                       cfg_where(profiles, w, sizeof w));
    const CfgNode *ov = cfg_map_get(profiles, name);
    if (!ov) {
        char names[512] = "";
        for (int i = 0; i < profiles->n; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", profiles->entries[i].key);
        return err_set(err, "%s: profile '%s' is not one of this config's profiles (%s)", cfg_where(profiles, w, sizeof w),
                       name, names);
    }
    if (!cfg_is_null(ov) && ov->kind != CFG_MAP)
        return err_set(err, "%s: profiles.%s: expected a map (an overlay of config keys), found %s",
                       cfg_where(ov, w, sizeof w), name, cfg_describe(ov, d, sizeof d));
    CfgNode *name_node = cfg_new_scalar(name, 0, profiles->file, profiles->line, profiles->col);
    CfgNode *overlay = cfg_is_null(ov) ? NULL : cfg_clone(ov);
    cfg_map_remove(root, "profiles"); /* frees ov and name's storage */
    cfg_map_set(root, "profile", name_node, name_node);
    if (overlay) {
        if (cfg_map_get(overlay, "profile") || cfg_map_get(overlay, "profiles")) {
            err_set(err, "%s: profiles.%s: an overlay cannot set profile or profiles", cfg_where(overlay, w, sizeof w),
                    cfg_map_get(root, "profile")->text);
            cfg_free(overlay);
            return -1;
        }
        cfg_merge(&root, overlay);
    }
    return 0;
}

CfgNode *runner_load_config(const char *config_path, const RunnerOptions *o, int no_files, Error *err) {
    CfgNode *root = cfg_load(config_path, err);
    if (!root) return NULL;
    if (apply_profile(root, o, err)) { cfg_free(root); return NULL; }
    for (int i = 0; o && i < o->n_overrides; i++)
        if (cfg_override(root, o->overrides[i], &SCHEMA_EXPERIMENT, err)) { cfg_free(root); return NULL; }
    SchemaReport rep;
    if (schema_validate(root, &SCHEMA_EXPERIMENT, no_files ? SCHEMA_NO_FILES : 0, &rep, err)) { cfg_free(root); return NULL; }
    return root;
}

/* ---- typed views of a resolved config ----------------------------------------------------------------- */
/* n_classes: auto takes task_classes, the class count of the loaded dataset's task (with backbone.skip_head,
 * one config covers tasks of different class counts). */
static int get_dim(const CfgNode *c, const char *key, int task_classes, long *v, Error *err) {
    const CfgNode *n = cfg_get(c, key);
    if (n && n->kind == CFG_SCALAR && n->text && !strcmp(n->text, "auto") && strstr(key, "n_classes")) {
        *v = task_classes;
        return 0;
    }
    return cfg_get_int(c, key, 0, v, err);
}

static int model_config(ModelConfig *mc, const CfgNode *c, int task_classes, Error *err) {
    memset(mc, 0, sizeof *mc);
    const char *fam, *s;
    long v[9];
    double eps;
    if (cfg_get_string(c, "backbone.family", NULL, &fam, err)) return -1;
    if (!strcmp(fam, "vit")) {
        mc->family = MODEL_VIT;
        static const char *keys[] = {"img_size", "in_ch", "patch", "dim", "depth", "heads", "mlp_hidden", "n_classes"};
        char k[64];
        for (int i = 0; i < 8; i++) {
            snprintf(k, sizeof k, "backbone.vit.%s", keys[i]);
            if (get_dim(c, k, task_classes, &v[i], err)) return -1;
        }
        mc->vit = (ViTConfig){.img_size = (int)v[0], .in_ch = (int)v[1], .patch = (int)v[2], .dim = (int)v[3],
                              .depth = (int)v[4], .heads = (int)v[5], .mlp_hidden = (int)v[6], .n_classes = (int)v[7]};
        if (cfg_get_string(c, "backbone.vit.pool", "cls", &s, err)) return -1;
        mc->vit.pool = strcmp(s, "mean") ? POOL_CLS : POOL_MEAN;
        if (cfg_get_double(c, "backbone.vit.ln_eps", 1e-6, &eps, err)) return -1;
        mc->vit.ln_eps = (float)eps;
        if (cfg_get_string(c, "backbone.init", "timm", &s, err)) return -1;
        mc->vit.init_torch = !strcmp(s, "torch");
    } else {
        mc->family = MODEL_CNN;
        static const char *keys[] = {"width", "stages", "blocks_per_stage", "in_ch", "img_h", "img_w", "n_classes"};
        char k[64];
        for (int i = 0; i < 7; i++) {
            snprintf(k, sizeof k, "backbone.cnn.%s", keys[i]);
            if (get_dim(c, k, task_classes, &v[i], err)) return -1;
        }
        int bn;
        if (cfg_get_string(c, "backbone.cnn.kind", "resnet", &s, err) || cfg_get_bool(c, "backbone.cnn.batchnorm", 1, &bn, err))
            return -1;
        mc->cnn = (CnnConfig){.kind = strcmp(s, "vgg") ? CNN_RESNET : CNN_VGG, .width = (int)v[0], .stages = (int)v[1],
                              .blocks_per_stage = (int)v[2], .in_ch = (int)v[3], .img_h = (int)v[4], .img_w = (int)v[5],
                              .n_classes = (int)v[6], .batchnorm = bn};
    }
    return 0;
}

static int train_config(TrainConfig *tc, const CfgNode *c, long seed, Error *err) {
    memset(tc, 0, sizeof *tc);
    const char *opt, *sched;
    double lr, wd, mom, b1, b2, eps, warm, minr, ls, clip;
    long batch, epochs, max_steps, eval_every, eval_batch, ckpt;
    int nest, hflip;
    if (cfg_get_string(c, "trainer.optimizer", "adamw", &opt, err) || cfg_get_double(c, "trainer.lr", 1e-3, &lr, err) ||
        cfg_get_double(c, "trainer.weight_decay", 0, &wd, err) || cfg_get_double(c, "trainer.momentum", 0, &mom, err) ||
        cfg_get_bool(c, "trainer.nesterov", 0, &nest, err) || cfg_get_double(c, "trainer.beta1", 0.9, &b1, err) ||
        cfg_get_double(c, "trainer.beta2", 0.999, &b2, err) || cfg_get_double(c, "trainer.eps", 1e-8, &eps, err) ||
        cfg_get_int(c, "trainer.batch", 32, &batch, err) || cfg_get_int(c, "trainer.epochs", 1, &epochs, err) ||
        cfg_get_int(c, "trainer.max_steps", 0, &max_steps, err) ||
        cfg_get_string(c, "trainer.schedule", "constant", &sched, err) ||
        cfg_get_double(c, "trainer.warmup", 0, &warm, err) || cfg_get_double(c, "trainer.min_lr_ratio", 0, &minr, err) ||
        cfg_get_double(c, "trainer.label_smoothing", 0, &ls, err) || cfg_get_double(c, "trainer.clip_norm", 0, &clip, err) ||
        cfg_get_bool(c, "trainer.hflip", 0, &hflip, err) || cfg_get_int(c, "trainer.eval_every", 1, &eval_every, err) ||
        cfg_get_int(c, "trainer.eval_batch", 500, &eval_batch, err) ||
        cfg_get_int(c, "trainer.checkpoint_every", 200, &ckpt, err))
        return -1;
    tc->epochs = (int)epochs;
    tc->max_steps = max_steps;
    tc->batch = (int)batch;
    tc->opt = (OptConfig){.kind = strcmp(opt, "sgd") ? OPT_ADAMW : OPT_SGD, .lr = (float)lr, .beta1 = (float)b1,
                          .beta2 = (float)b2, .eps = (float)eps, .weight_decay = (float)wd, .decay_all = 1,
                          .momentum = (float)mom, .nesterov = nest, .clip_norm = (float)clip};
    tc->sched = (Schedule){.kind = !strcmp(sched, "cosine") ? SCHED_COSINE : !strcmp(sched, "linear") ? SCHED_LINEAR
                                                                                                        : SCHED_CONSTANT,
                           .min_lr_ratio = (float)minr};
    tc->warmup_frac = (float)warm;
    tc->label_smoothing = (float)ls;
    tc->hflip = hflip;
    tc->seed = (uint64_t)seed;
    tc->eval_every = (int)eval_every;
    tc->eval_batch = (int)eval_batch;
    tc->checkpoint_every = (int)ckpt;
    return 0;
}

static int has_stage(const CfgNode *c, const char *stage) {
    const char **st = NULL;
    int n = 0, hit = 0;
    Error e;
    if (cfg_get_strlist(c, "stages", &st, &n, &e)) return 0;
    for (int i = 0; i < n; i++) hit |= !strcmp(st[i], stage);
    free(st);
    return hit;
}

/* ---- one run -------------------------------------------------------------------------------------------- */
typedef struct RunCtx {
    H5Rec *h5;
    Model *m;
    AdapterSet *ad;
    Optimizer *opt;
    const char *ckpt_path, *label;
    long total, last_step;
    int log_every, tty, io_failed;
    double t_start;
    Error io_err;
    Metrics *mx; /* research metrics (NULL: none) */
} RunCtx;

static void ctx_step(void *p, long step, double loss, float lr, double gn, double img_s) {
    RunCtx *c = p;
    c->last_step = step;
    const char *names[4] = {"train/loss", "train/lr", "train/grad_norm", "train/img_s"};
    double vals[4] = {loss, lr, gn, img_s};
    for (int i = 0; i < 4 && !c->io_failed; i++)
        if (h5rec_append(c->h5, names[i], step, vals[i], &c->io_err)) c->io_failed = 1;
    if (c->mx && !c->io_failed && metrics_on_step(c->mx, step, loss, &c->io_err)) c->io_failed = 1;
    long done = step + 1;
    if (c->tty) {
        double el = now_seconds() - c->t_start, rate = el > 0 ? done / el : 0;
        double eta = rate > 0 ? (c->total - done) / rate : 0;
        fprintf(stderr, "\r%s  step %ld/%ld  loss %.4f  %.1f it/s  ETA %.0fs   ", c->label, done, c->total, loss, rate, eta);
        if (done == c->total) fputc('\n', stderr);
    } else if (done % c->log_every == 0 || done == c->total) {
        printf("%s step %ld/%ld loss %.5f lr %.3g %.0f img/s\n", c->label, done, c->total, loss, lr, img_s);
        fflush(stdout);
    }
}
/* LAVA: the regularizer's penalty per step, its own series */
static void ctx_penalty(void *p, long step, double penalty) {
    RunCtx *c = p;
    if (!c->io_failed && h5rec_append(c->h5, "train/reg_penalty", step, penalty, &c->io_err)) c->io_failed = 1;
}
static void ctx_eval(void *p, int epoch, double acc, double loss, double train_s) {
    RunCtx *c = p;
    if (!c->io_failed && (h5rec_append(c->h5, "eval/test_acc", c->last_step, acc, &c->io_err) ||
                          h5rec_append(c->h5, "eval/test_loss", c->last_step, loss, &c->io_err)))
        c->io_failed = 1;
    if (c->tty) fputc('\n', stderr);
    printf("%s epoch %d test_acc %.4f test_loss %.4f (%.1fs training)\n", c->label, epoch, acc, loss, train_s);
    fflush(stdout);
}
static int ctx_checkpoint(void *p, const TrainState *st, Error *err) {
    RunCtx *c = p;
    if (c->io_failed) { *err = c->io_err; return -1; }
    if (h5rec_flush(c->h5, err)) return -1;
    return ckpt_save(c->ckpt_path, c->m, c->ad, c->opt, st, err);
}
static int ctx_stop(void *p) { (void)p; return g_stop != 0; }

enum { RUN_DONE = 0, RUN_FAILED = 1, RUN_SKIPPED = 2, RUN_INTERRUPTED = 130 };

/* Init batches for data-driven initializers: the training set in a seeded order of its own. */
typedef struct InitDataCtx {
    const ImageSet *train;
    int *perm;
    uint64_t seed;
} InitDataCtx;
static int init_batch(void *p, int i, int B, float *x, int *y) {
    InitDataCtx *d = p;
    long first = (long)i * B;
    if (first >= d->train->n) return 0;
    int n = (int)MIN((long)B, d->train->n - first);
    imageset_batch(x, y, d->train, d->perm + first, n, 0, d->seed, 0);
    return n;
}

/* EVA / VAS: re-create the adapters with per-layer ranks (alpha_i = alpha r_i / r keeps the scale). */
typedef struct ReattachCtx {
    Model *m;
    const char **targets;
    int nt;
    AdapterSpec spec;
} ReattachCtx;
static int reattach(InitContext *ctx, const int *ranks, Error *err) {
    ReattachCtx *r = ctx->reattach_ctx;
    int n = ctx->set->n;
    int *rk = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    memcpy(rk, ranks, sizeof(int) * (size_t)n);
    adapters_free(ctx->set, r->m->targets, r->m->n_targets);
    AdapterSpec sp = r->spec;
    sp.ranks = rk;
    sp.n_ranks = n;
    int rc = adapters_attach(ctx->set, r->m->targets, r->m->n_targets, r->m->params, r->targets, r->nt, &sp,
                             ctx->seed, err) < 0 ? -1 : 0;
    free(rk);
    return rc;
}

/* method.params.<init>.* scalars as key/value text pairs (the initializer's options). */
static int init_options(const CfgNode *c, const char *init, const char ***kv, int *n) {
    char path[96];
    snprintf(path, sizeof path, "method.params.%s", init);
    const CfgNode *p = cfg_get(c, path);
    *kv = NULL;
    *n = 0;
    if (cfg_is_null(p) || p->kind != CFG_MAP) return 0;
    *kv = xcalloc((size_t)(2 * p->n + 1), sizeof **kv);
    for (int i = 0; i < p->n; i++)
        if (p->entries[i].val && p->entries[i].val->kind == CFG_SCALAR) {
            (*kv)[2 * *n] = p->entries[i].key;
            (*kv)[2 * *n + 1] = p->entries[i].val->text ? p->entries[i].val->text : "";
            (*n)++;
        }
    return 0;
}

/* method.lava.* -> the kind options (methods/lava.h); lambda / factors / init apply to lava and lava_conv only. */
static int lava_options(AdapterOptions *o, const AdapterKind *kind, const CfgNode *c, Error *err) {
    memset(o, 0, sizeof *o);
    if (kind != &ADAPTER_LAVA && kind != &ADAPTER_LAVA_CONV) return 0;
    double lambda;
    const char *factors, *init;
    if (cfg_get_double(c, "method.lava.lambda", 0.1, &lambda, err) ||
        cfg_get_string(c, "method.lava.factors", "", &factors, err) ||
        cfg_get_string(c, "method.lava.init", "v_zero", &init, err) ||
        lava_parse_factors(kind, factors, "method.lava.factors", &o->reg_mask, err) ||
        lava_parse_init(init, "method.lava.init", &o->init_variant, err))
        return -1;
    o->reg_lambda = (float)lambda;
    return 0;
}

static int attach_method(Model *m, AdapterSet *ad, const CfgNode *c, uint64_t seed, const ImageSet *train,
                         const TrainConfig *tc, long total_steps, const InitAccel *accel, int *attached,
                         InitResult *ires, Error *err) {
    const char *adapter, *init;
    long rank;
    double alpha;
    int rs, head;
    const char **targets = NULL;
    int nt = 0;
    *attached = 0;
    if (cfg_get_string(c, "method.adapter", "lora", &adapter, err) || cfg_get_string(c, "method.init", "kaiming", &init, err) ||
        cfg_get_int(c, "method.rank", 8, &rank, err) || cfg_get_double(c, "method.alpha", 16, &alpha, err) ||
        cfg_get_bool(c, "method.rslora", 0, &rs, err) || cfg_get_bool(c, "method.train_head", 1, &head, err) ||
        cfg_get_strlist(c, "method.targets", &targets, &nt, err))
        return -1;
    params_set_all_trainable(m->params, 0);
    if (head && m->family == MODEL_VIT) params_set_trainable(m->params, "head.*", 1);
    if (head && m->family == MODEL_CNN)
        params_set_trainable(m->params, m->u.cnn.cfg.kind == CNN_VGG ? "classifier.*" : "fc.*", 1);
    params_alloc_grads(m->params);
    int rc = 0;
    if (strcmp(adapter, "none")) {
        const AdapterKind *kind = adapter_find(adapter);
        if (!kind) rc = err_set(err, "method.adapter '%s' is not implemented yet", adapter);
        else if (!init_find(init)) rc = err_set(err, "method.init '%s' is not implemented yet (available: %s)", init, init_names());
        else if (nt == 0) rc = err_set(err, "method.targets is empty: name the layers to adapt (e.g. blocks.*.attn.qkv:q)");
        else if (m->n_targets == 0) rc = err_set(err, "backbone.family has no adapter targets yet (ViT only)");
        else {
            AdapterSpec spec = {.kind = kind, .r = (int)rank, .alpha = (float)alpha, .rslora = rs};
            rc = lava_options(&spec.opt, kind, c, err) ? -1 :
                 adapters_attach(ad, m->targets, m->n_targets, m->params, targets, nt, &spec, seed, err) < 0 ? -1 : 0;
            *attached = rc == 0;
            if (!rc) {
                InitDataCtx dctx = {.train = train, .perm = xmalloc(sizeof(int) * (size_t)train->n), .seed = seed};
                rng_permutation(dctx.perm, train->n, seed, rng_stream("init.order", 0, 0));
                ReattachCtx rctx = {.m = m, .targets = targets, .nt = nt, .spec = spec};
                InitContext ictx = {.model = m, .set = ad, .seed = seed,
                                    .data = {.batch = init_batch, .ctx = &dctx, .n_images = train->n},
                                    .batch = tc->batch, .n_batches = 8, .label_smoothing = tc->label_smoothing,
                                    .lr = tc->opt.lr, .warmup_frac = tc->warmup_frac, .total_steps = total_steps,
                                    .adamw = tc->opt.kind == OPT_ADAMW, .reattach = reattach, .reattach_ctx = &rctx,
                                    .accel = accel};
                init_options(c, init, (const char ***)&ictx.opts, &ictx.n_opts);
                int kind_nb = init_find(init)->default_batches;
                double b = 0, nb = 0, def_nb = kind_nb ? kind_nb : 8;
                rc = init_opt_double(&ictx, "batch", tc->batch, &b, err) || init_opt_double(&ictx, "batches", def_nb, &nb, err);
                ictx.batch = (int)b;
                ictx.n_batches = (int)nb;
                if (!rc) rc = init_run(init, &ictx, ires, err);
                free((void *)ictx.opts);
                free(dctx.perm);
            }
        }
    }
    free(targets);
    return rc;
}

static int run_one_(const GridRun *gr, int64_t exp_id, const char *exp_name, const char *out, int idx, int n_runs,
                    const RunnerOptions *o, const char *db_path, Error *err);

/* Every failure is reported, including those before the run could be recorded in the database. */
static int run_one(const GridRun *gr, int64_t exp_id, const char *exp_name, const char *out, int idx, int n_runs,
                   const RunnerOptions *o, const char *db_path, Error *err) {
    err->msg[0] = 0;
    int r = run_one_(gr, exp_id, exp_name, out, idx, n_runs, o, db_path, err);
    if (r == RUN_FAILED && err->msg[0])
        fprintf(stderr, "[%d/%d %s] failed: %s\n", idx + 1, n_runs, gr->id, err->msg);
    return r;
}

static int run_one_(const GridRun *gr, int64_t exp_id, const char *exp_name, const char *out, int idx, int n_runs,
                    const RunnerOptions *o, const char *db_path, Error *err) {
    const CfgNode *c = gr->cfg;
    Db *db = NULL;
    char shard_path[PATH_MAX_LEN + 48];
    if (o->shard) { /* results.shard: the run's own database; runexp collect merges it (docs/cluster.md) */
        snprintf(shard_path, sizeof shard_path, "%s/shards/%s.db", out, gr->id);
        db_path = shard_path;
    }
    if (db_open_opts(&db, db_path, &(DbOptions){.shard = o->shard}, err) ||
        (o->shard && db_experiment(db, exp_name, NULL, &exp_id, err))) {
        db_close(db);
        return RUN_FAILED;
    }
    char status[32];
    if (db_run_status(db, gr->id, status, sizeof status, err)) { db_close(db); return RUN_FAILED; }
    if (!strcmp(status, "done") && !o->force) {
        printf("[%d/%d] %s done, skipped\n", idx + 1, n_runs, gr->id);
        db_close(db);
        return RUN_SKIPPED;
    }
    char dir[PATH_MAX_LEN], h5p[PATH_MAX_LEN + 16], ckp[PATH_MAX_LEN + 24], cfgp[PATH_MAX_LEN + 16], label[96];
    snprintf(dir, sizeof dir, "%s/%s/%s", out, exp_name, gr->id);
    snprintf(h5p, sizeof h5p, "%s/run.h5", dir);
    snprintf(ckp, sizeof ckp, "%s/ckpt.safetensors", dir);
    snprintf(cfgp, sizeof cfgp, "%s/config.yaml", dir);
    snprintf(label, sizeof label, "[%d/%d %s]", idx + 1, n_runs, gr->id);
    if (h5rec_in_use(h5p)) { /* another runexp is running it (e.g. both reached it through requires:): hands off */
        err_set(err, "%s is locked by another process running this run: left as it is (status %s); run this again "
                "once that process finishes", h5p, status);
        db_close(db);
        return RUN_FAILED;
    }
    if (mkdirs(dir, err)) { db_close(db); return RUN_FAILED; }
    int resume = !o->force && file_exists(ckp) && (!strcmp(status, "interrupted") || !strcmp(status, "running"));
    if (o->force) unlink(ckp);
    FILE *f = fopen(cfgp, "w");
    if (f) { cfg_dump(f, c); fclose(f); }
    char **kv = NULL;
    int nkv = grid_flatten(c, &kv);
    char versions[256];
    snprintf(versions, sizeof versions, "%s; %s", LORALAB_VERSION, openblas_get_config());
    int rc = db_run_begin(db, gr->id, exp_id, gr->cell, (int)gr->seed, "cpu", versions, (const char *const *)kv, nkv, err);
    grid_flatten_free(kv, nkv);
    if (rc) { db_close(db); return RUN_FAILED; }
    printf("%s %s (cell %d, seed %ld)\n", label, resume ? "resuming" : "starting", gr->cell, gr->seed);
    fflush(stdout);
    peak_rss_reset(); /* peak_rss_bytes: this run's own peak, not an earlier run's in this process */

    double t_run = now_seconds();
    Model m;
    AdapterSet ad;
    Optimizer opt;
    H5Rec *h5 = NULL;
    ImageSet train, test;
    ModelConfig mc;
    TrainConfig tc;
    int built = 0, attached = 0, opt_made = 0, result = RUN_FAILED;
    const char *ckpt_in = NULL, *save = NULL;
    int skip_head = 0;
    double init_s = 0, ft_s = 0;
    InitResult ires = {0};
    Metrics *mx = NULL;
    MetricsConfig mcfg;
    if (task_load(&train, &test, c, err) || model_config(&mc, c, train.K, err) || train_config(&tc, c, gr->seed, err) ||
        cfg_get_string(c, "backbone.checkpoint", NULL, &ckpt_in, err) ||
        cfg_get_bool(c, "backbone.skip_head", 0, &skip_head, err) || cfg_get_string(c, "save", NULL, &save, err) ||
        model_build(&m, &mc, err))
        goto fail;
    built = 1;
    model_init_params(&m, (uint64_t)gr->seed);
    if (ckpt_in) {
        rc = m.family == MODEL_VIT ? vit_load(&m.u.vit, ckpt_in, skip_head, err)
                                   : params_load(m.params, ckpt_in,
                                                 &(ParamLoadOptions){.skip = !skip_head ? NULL
                                                                             : m.u.cnn.cfg.kind == CNN_VGG ? "classifier.*"
                                                                                                           : "fc.*",
                                                                     .ignore = "*num_batches_tracked"},
                                                 err);
        if (rc) goto fail;
    }
    int pretrain = has_stage(c, "pretrain"), finetune = has_stage(c, "finetune");
    /* the run's step count: the schedule's, LoRA-SB's first-step lr and the progress line all use it */
    long total_steps = tc.max_steps > 0 ? tc.max_steps : (long)tc.epochs * (tc.batch > 0 ? train.n / tc.batch : 0);
    /* device: where the initializer's data passes and the training run (experiments/init_cuda.h, train_cuda.h) */
    const char *device;
    if (cfg_get_string(c, "device", "auto", &device, err)) goto fail;
    if (finetune && !pretrain) {
        double t0;
        /* research metrics: their pretrained point (G_full) is taken before the initializer runs */
        if (metrics_config(&mcfg, c, err) ||
            metrics_create(&mx, &mcfg, c, &m, &train, (uint64_t)gr->seed, tc.batch, tc.label_smoothing, err))
            goto fail;
        /* the initializers' data passes go to the GPU where the run may use one; the CUDA context is made here,
         * before the init clock starts (experiments/init_cuda.h) */
        const InitAccel *accel = init_cuda_accel(device, &m);
        init_cuda_peak_bytes(1);
        t0 = now_seconds();
        if (attach_method(&m, &ad, c, (uint64_t)gr->seed, &train, &tc, total_steps, accel, &attached, &ires, err))
            goto fail;
        /* the accelerator's prepare (the pass model on the GPU, warmed up) is recorded apart: init_prepare_s */
        init_s = now_seconds() - t0 - ires.prepare_s;
    }
    train_optimizer_init(&opt, &tc.opt, &m, attached ? &ad : NULL);
    opt_made = 1;
    /* device: where it trains (experiments/train_cuda.h); runs.device, the run file's "device" attribute */
    int use_cuda = 0;
    char dev_note[320] = "";
    if ((pretrain || finetune) &&
        (use_cuda = train_pick_device(device, &m, attached ? &ad : NULL, &tc, dev_note, sizeof dev_note, err)) < 0)
        goto fail;
    if (dev_note[0]) printf("%s %s\n", label, dev_note);
    if (use_cuda && db_run_set_device(db, gr->id, "cuda", err)) goto fail;
    tc.dp_run = idx;
    tc.sync_host = attached && mx; /* the research metrics read the adapters and their gradients every step */
    int h5rc = h5rec_open(&h5, h5p, resume ? H5REC_APPEND : H5REC_CREATE, err);
    char moved[PATH_MAX_LEN + 32] = "";
    if (h5rc == H5REC_BROKEN) { /* a kill left it unreadable: keep it aside (nothing is deleted), go on */
        if (h5rec_recover(h5p, moved, sizeof moved, err)) goto fail;
        printf("%s %s was unreadable, moved to %s; the run continues from its checkpoint in a new file\n", label,
               h5p, moved);
        h5rc = h5rec_open(&h5, h5p, H5REC_CREATE, err);
    }
    if (h5rc) goto fail;
    if (moved[0] && h5rec_set_attr(h5, "earlier_steps_in", moved, err)) goto fail;
    long flush_every;
    if (cfg_get_int(c, "record.flush_every", 50, &flush_every, err)) goto fail;
    h5rec_set_flush_every(h5, (int)flush_every);
    char *canon = grid_canonical(c, &SCHEMA_EXPERIMENT);
    rc = h5rec_set_attr(h5, "config", canon, err) || h5rec_set_attr(h5, "run_id", gr->id, err) ||
         h5rec_set_attr(h5, "versions", versions, err) || h5rec_set_attr(h5, "device", use_cuda ? "cuda" : "cpu", err);
    free(canon);
    if (!rc && ires.note[0]) rc = h5rec_set_attr(h5, "init_note", ires.note, err);
    for (int i = 0; !rc && !resume && ires.series && i < ires.n_series; i++)
        rc = h5rec_append(h5, ires.series_name, i, ires.series[i], err);
    for (int k = 0; !rc && !resume && k < ires.n_rows; k++) /* more init series (ABM: per layer, cost) */
        for (int i = 0; !rc && i < ires.rows[k].n_steps; i++)
            rc = h5rec_append_row(h5, ires.rows[k].name, i, ires.rows[k].values + (size_t)i * ires.rows[k].n_cols,
                                  ires.rows[k].n_cols, (const char *const *)ires.rows[k].col_names, err);
    char initp[PATH_MAX_LEN + 32];
    snprintf(initp, sizeof initp, "%s/adapter_init.safetensors", dir);
    if (!rc && attached && mx) rc = metrics_begin(mx, &ad, h5, db, gr->id, initp, resume, total_steps, err);
    if (rc) goto fail;
    TrainState st = {0};
    if (resume) {
        if (ckpt_load(ckp, &m, attached ? &ad : NULL, &opt, &st, err) || h5rec_truncate_after(h5, st.step, err)) goto fail;
        if (attached && metrics_resume(mx, st.step, err)) goto fail;
        printf("%s resumed at step %ld\n", label, st.step);
    }
    TrainResult tr = {0};
    RunCtx ctx = {.h5 = h5, .m = &m, .ad = attached ? &ad : NULL, .opt = &opt, .ckpt_path = ckp, .label = label,
                  .log_every = o->log_every > 0 ? o->log_every : 50, .tty = isatty(2), .t_start = now_seconds(),
                  .last_step = st.step - 1};
    ctx.total = total_steps;
    ctx.mx = attached ? mx : NULL;
    if (pretrain || finetune) {
        double t_ft = now_seconds();
        TrainHooks hooks = {.ctx = &ctx, .on_step = ctx_step, .on_eval = ctx_eval, .on_checkpoint = ctx_checkpoint,
                            .on_penalty = ctx_penalty,
                            .should_stop = ctx_stop};
        if ((use_cuda ? train_classifier_cuda : train_classifier)(&m, attached ? &ad : NULL, &opt, &st, &train, &test, &tc,
                                                                  &hooks, &tr, err))
            goto fail;
        if (use_cuda) printf("%s trained on %s\n", label, train_device_name());
        if (ctx.io_failed) { *err = ctx.io_err; goto fail; }
        ft_s = now_seconds() - t_ft;
        if (tr.interrupted) {
            Error e2;
            h5rec_close(h5, &e2);
            h5 = NULL;
            db_run_finish(db, gr->id, "interrupted", now_seconds() - t_run, peak_rss_bytes(), NULL, &e2);
            printf("%s interrupted at step %ld; rerun the config to continue\n", label, st.step);
            result = RUN_INTERRUPTED;
            goto done;
        }
    } else { /* eval only */
        Arena ar;
        arena_init(&ar, 1u << 24);
        tr.test_acc = eval_classifier(&m, &test, tc.eval_batch > 0 ? tc.eval_batch : 500, &ar, &tr.test_loss);
        arena_free(&ar);
        if (h5rec_append(h5, "eval/test_acc", 0, tr.test_acc, err)) goto fail;
    }
    /* artifacts */
    char mp[PATH_MAX_LEN + 24], ap[PATH_MAX_LEN + 24];
    snprintf(mp, sizeof mp, "%s/model.safetensors", dir);
    snprintf(ap, sizeof ap, "%s/adapter.safetensors", dir);
    const char *meta[] = {"format", "pt", "loralab.run_id", gr->id};
    if (pretrain || !attached) {
        if (params_save(m.params, mp, 0, meta, 2, err) || db_put_artifact(db, gr->id, "model", mp, err)) goto fail;
        if (save) {
            char sdir[PATH_MAX_LEN];
            snprintf(sdir, sizeof sdir, "%s", save);
            char *slash = strrchr(sdir, '/');
            if (slash && slash != sdir) { *slash = 0; if (mkdirs(sdir, err)) goto fail; }
            if (params_save(m.params, save, 0, meta, 2, err) || db_put_artifact(db, gr->id, "model", save, err)) goto fail;
        }
    }
    if (attached && (params_save(&ad.params, ap, 0, meta, 2, err) || db_put_artifact(db, gr->id, "adapter", ap, err)))
        goto fail;
    int same_rank = 1;
    for (int i = 1; attached && i < ad.n; i++) same_rank &= ad.a[i].r == ad.a[0].r;
    for (int i = 0; attached && i < ad.n; i++) same_rank &= ad.a[i].kh == 0; /* conv adapters: PEFT wants 4-D shapes */
    if (attached && ad.n && ad.a[0].kind == &ADAPTER_LORA && same_rank) { /* the same adapter for PEFT users */
        char pd[PATH_MAX_LEN + 24];
        snprintf(pd, sizeof pd, "%s/peft_adapter", dir);
        if (peft_save(pd, &ad, PEFT_NAMES_AUTO, err) || db_put_artifact(db, gr->id, "peft_adapter", pd, err)) goto fail;
    }
    size_t trainable = params_count(m.params, 1) + (attached ? params_count(&ad.params, 1) : 0);
    size_t adapter_params = attached ? params_count(&ad.params, 1) : 0, model_params = 0;
    for (int i = 0; i < m.params->n; i++) /* the backbone's parameters, as torch's parameters(): no BN statistics */
        if (!strstr(m.params->views[i].name, "running_")) model_params += m.params->views[i].numel;
    const char *keys[] = {"test_acc", "test_loss", "train_loss", "train_s", "img_s", "steps", "trainable_params", "init_s",
                          "init_method_s", "init_batches", "init_changed_w0", "init_changed_function", "adapter_params",
                          "model_params", "trainable_pct"};
    double vals[] = {tr.test_acc, tr.test_loss, tr.last_loss, tr.train_s, tr.img_s, (double)tr.steps, (double)trainable,
                     init_s, ires.wall_s, ires.batches_used, ires.changed_w0, ires.changed_function,
                     (double)adapter_params, (double)model_params,
                     model_params ? 100.0 * (double)trainable / (double)model_params : NAN};
    if (db_put_results(db, gr->id, keys, vals, NULL, 15, err) || db_run_h5(db, gr->id, h5p, err)) goto fail;
    /* GPUs the training used: 0 = CPU; the device memory the initializer's GPU passes held (0: none ran) */
    const char *gpu_key[] = {"gpus", "init_gpu_bytes", "init_prepare_s"};
    double gpu_val[] = {use_cuda ? (dp_state()->world > 0 ? dp_state()->world : 1) : 0, (double)init_cuda_peak_bytes(0),
                        ires.prepare_s};
    if (db_put_results(db, gr->id, gpu_key, gpu_val, NULL, gpu_val[1] > 0 ? 3 : 1, err)) goto fail;
    if (finetune && !pretrain) { /* drift, spectra, per-layer summaries, cost (experiments/metrics.h) */
        MetricsCost cost = {.init_s = init_s, .finetune_wall_s = ft_s, .train_s = tr.train_s};
        if (metrics_end(attached ? mx : NULL, db, gr->id, &cost, err)) goto fail;
        if (attached && mx && db_put_artifact(db, gr->id, "adapter_init", initp, err)) goto fail;
    }
    if (h5rec_close(h5, err)) { h5 = NULL; goto fail; }
    h5 = NULL;
    unlink(ckp);
    if (db_run_finish(db, gr->id, "done", now_seconds() - t_run, peak_rss_bytes(), NULL, err)) goto fail;
    printf("%s done: test_acc %.4f train_loss %.4f (%.1fs, %.0f img/s)\n", label, tr.test_acc, tr.last_loss, tr.train_s,
           tr.img_s);
    result = RUN_DONE;
    goto done;
fail:
    fprintf(stderr, "%s failed: %s\n", label, err->msg);
    {
        Error e2;
        if (h5) h5rec_close(h5, &e2);
        h5 = NULL;
        if (db_run_finish(db, gr->id, "failed", now_seconds() - t_run, peak_rss_bytes(), err->msg, &e2))
            fprintf(stderr, "%s could not record the failure: %s\n", label, e2.msg);
    }
    err->msg[0] = 0; /* reported above */
    result = RUN_FAILED;
done:
    free(ires.series);
    for (int k = 0; k < ires.n_rows; k++) free(ires.rows[k].values), free(ires.rows[k].col_names);
    metrics_free(mx);
    if (opt_made) optim_free(&opt);
    if (attached) adapters_free(&ad, m.targets, m.n_targets);
    if (built) model_free(&m);
    db_close(db);
    fflush(stdout);
    return result;
}

/* ---- the whole config ----------------------------------------------------------------------------------- */
static int run_config(const char *config_path, const RunnerOptions *o, int depth, Error *err) {
    if (depth > 8) return err_set(err, "%s: 'requires' nests deeper than 8 configs (a cycle?)", config_path);
    /* requirements first: their outputs (checkpoints) are this config's inputs, so files are checked after */
    CfgNode *root = runner_load_config(config_path, o, 1, err);
    if (!root) return -1;
    const char **req = NULL;
    int nreq = 0, rc = 0;
    if (cfg_get_strlist(root, "requires", &req, &nreq, err)) { cfg_free(root); return -1; }
    RunnerOptions ro = {.jobs = o->jobs, .cell = -1, .threads = o->threads, .log_every = o->log_every};
    for (int i = 0; i < nreq && !o->dry_run && !o->no_requires; i++) {
        printf("== %s requires %s\n", config_path, req[i]);
        int r = run_config(req[i], &ro, depth + 1, err);
        if (r) { rc = r < 0 ? -1 : r; break; }
    }
    free(req);
    cfg_free(root);
    if (rc) return rc;
    root = runner_load_config(config_path, o, o->dry_run, err);
    if (!root) return -1;
    const char *name, *out;
    GridPlan plan;
    int shard = 0;
    if (cfg_get_string(root, "name", NULL, &name, err) || cfg_get_string(root, "output", "runs", &out, err) ||
        cfg_get_bool(root, "results.shard", 0, &shard, err) || grid_expand(root, &SCHEMA_EXPERIMENT, &plan, err)) {
        cfg_free(root);
        return -1;
    }
    RunnerOptions with_shard = *o;
    with_shard.shard = shard;
    o = &with_shard;
    char db_path[PATH_MAX_LEN], shard_dir[PATH_MAX_LEN + 8];
    snprintf(db_path, sizeof db_path, "%s/runs.db", out);
    snprintf(shard_dir, sizeof shard_dir, "%s/shards", out);
    Db *db = NULL;
    int64_t exp_id = 0;
    /* results.shard: runs record into shards; an array task (--cell) never opens the shared runs.db */
    int use_main = !(shard && o->cell >= 0 && !o->dry_run);
    if (mkdirs(out, err) || (shard && mkdirs(shard_dir, err)) ||
        (use_main && (db_open_opts(&db, db_path, &(DbOptions){.shard = shard}, err) ||
                      db_experiment(db, name, config_path, &exp_id, err)))) {
        db_close(db);
        grid_plan_free(&plan);
        cfg_free(root);
        return -1;
    }
    if (o->cell >= plan.n_runs) {
        rc = err_set(err, "--cell %d: %s has %d runs (0..%d)", o->cell, config_path, plan.n_runs, plan.n_runs - 1);
    } else if (o->dry_run) {
        printf("%s: %d runs (%d cells x %d seeds), output %s\n", config_path, plan.n_runs, plan.n_cells, plan.n_seeds, out);
        static const char *kinds[] = {"done", "running", "interrupted", "failed", "pending", "new"};
        int counts[6] = {0};
        for (int i = 0; i < plan.n_runs; i++) {
            if (o->cell >= 0 && i != o->cell) continue;
            char status[32] = "";
            db_run_status(db, plan.runs[i].id, status, sizeof status, err);
            const char *st = status[0] ? status : "new";
            for (int k = 0; k < 6; k++) counts[k] += !strcmp(st, kinds[k]);
            printf("  %4d  %s  cell %d seed %ld  %s\n", i, plan.runs[i].id, plan.runs[i].cell, plan.runs[i].seed, st);
        }
        printf("  ");
        for (int k = 0; k < 6; k++) printf("%s%s %d", k ? ", " : "", kinds[k], counts[k]);
        printf("\n");
    }
    db_close(db);
    if (rc || o->dry_run) { grid_plan_free(&plan); cfg_free(root); return rc; }

    int jobs = o->jobs > 1 && o->cell < 0 ? MIN(o->jobs, plan.n_runs) : 1;
    /* the host's cores are shared by the --jobs workers, or by the --gpus ranks forked on it (each rank's OpenMP
     * set_batch and BLAS using every core made 2 ranks slower than 1 GPU: docs/cluster.md) */
    int threads = o->threads > 0 ? o->threads : MAX(1, core_threads() / jobs / MAX(1, dp_state()->host_ranks));
    int failed = 0, interrupted = 0;
    if (jobs > 1 && dp_state()->world > 0) {
        grid_plan_free(&plan);
        cfg_free(root);
        return err_set(err, "--gpus and --jobs together: one data-parallel run at a time (leave --jobs out)");
    }
    dp_set_active(depth == 0); /* --gpus: the top-level config's runs train data parallel, requirements alone */
    if (jobs == 1) {
        core_set_threads(threads);
        for (int i = 0; i < plan.n_runs && !g_stop; i++) {
            if (o->cell >= 0 && i != o->cell) continue;
            Error e;
            int r = run_one(&plan.runs[i], exp_id, name, out, i, plan.n_runs, o, db_path, &e);
            failed += r == RUN_FAILED;
            interrupted += r == RUN_INTERRUPTED;
        }
    } else { /* worker k runs runs k, k + jobs, ...; each opens its own database connection */
        fflush(stdout);
        pid_t *pids = xcalloc((size_t)jobs, sizeof *pids);
        for (int k = 0; k < jobs; k++) {
            pid_t p = fork();
            if (p == 0) {
                core_set_threads(threads);
                int f = 0, in = 0;
                for (int i = k; i < plan.n_runs && !g_stop; i += jobs) {
                    Error e;
                    int r = run_one(&plan.runs[i], exp_id, name, out, i, plan.n_runs, o, db_path, &e);
                    f += r == RUN_FAILED;
                    in += r == RUN_INTERRUPTED;
                }
                fflush(stdout);
                _exit(in ? 130 : f ? 1 : 0);
            }
            pids[k] = p;
        }
        for (int k = 0; k < jobs; k++) {
            int stw = 0;
            if (pids[k] > 0 && waitpid(pids[k], &stw, 0) > 0) {
                int code = WIFEXITED(stw) ? WEXITSTATUS(stw) : 1;
                failed += code == 1;
                interrupted += code == 130;
            } else {
                failed++;
            }
        }
        free(pids);
    }
    dp_set_active(0);
    if (shard && o->cell < 0) { /* a local run of a sharded config: into runs.db, where status and report look */
        Error e2;
        int merged;
        if (sweep_collect_dir(out, &merged, &e2)) fprintf(stderr, "runexp: %s\n", e2.msg), failed++;
    }
    grid_plan_free(&plan);
    cfg_free(root);
    if (interrupted || g_stop) return RUN_INTERRUPTED;
    if (failed) {
        err_set(err, "%s: %d run(s) failed (their errors are above and in %s, runs.error)", config_path, failed, db_path);
        return 1;
    }
    return 0;
}

/* ---- data parallel: ranks > 0 follow rank 0's runs (experiments/dp.h) ----------------------------------- */
static int follow_one(const GridRun *gr, int run, long step, long t, Error *err) {
    const CfgNode *c = gr->cfg;
    Model m;
    AdapterSet ad;
    Optimizer opt;
    ImageSet train, test;
    ModelConfig mc;
    TrainConfig tc;
    InitResult ires = {0};
    int built = 0, attached = 0, rc = -1, skip_head = 0;
    const char *ckpt_in = NULL;
    if (task_load(&train, &test, c, err) || model_config(&mc, c, train.K, err) || train_config(&tc, c, gr->seed, err) ||
        cfg_get_string(c, "backbone.checkpoint", NULL, &ckpt_in, err) ||
        cfg_get_bool(c, "backbone.skip_head", 0, &skip_head, err) || model_build(&m, &mc, err))
        goto out;
    built = 1;
    model_init_params(&m, (uint64_t)gr->seed);
    if (ckpt_in && m.family == MODEL_VIT && vit_load(&m.u.vit, ckpt_in, skip_head, err)) goto out;
    /* the same adapters (the initializer decides shapes, e.g. EVA's ranks); their values come from rank 0 */
    long total_steps = tc.max_steps > 0 ? tc.max_steps : (long)tc.epochs * (tc.batch > 0 ? train.n / tc.batch : 0);
    /* the initializer's data passes on this rank's GPU too, so its shapes (EVA's ranks) match rank 0's */
    const char *dev_init;
    if (cfg_get_string(c, "device", "auto", &dev_init, err)) goto out;
    if (has_stage(c, "finetune") && !has_stage(c, "pretrain") &&
        attach_method(&m, &ad, c, (uint64_t)gr->seed, &train, &tc, total_steps, init_cuda_accel(dev_init, &m),
                      &attached, &ires, err))
        goto out;
    train_optimizer_init(&opt, &tc.opt, &m, attached ? &ad : NULL);
    opt.t = t;
    TrainState st = {.step = step};
    TrainResult tr;
    tc.dp_run = run;
    rc = train_classifier_cuda(&m, attached ? &ad : NULL, &opt, &st, &train, &test, &tc, NULL, &tr, err);
    optim_free(&opt);
out:
    free(ires.series);
    for (int k = 0; k < ires.n_rows; k++) free(ires.rows[k].values), free(ires.rows[k].col_names);
    if (attached) adapters_free(&ad, m.targets, m.n_targets);
    if (built) model_free(&m);
    return rc;
}

static int follow(const char *config_path, const RunnerOptions *o, Error *err) {
    CfgNode *root = runner_load_config(config_path, o, 0, err);
    GridPlan plan;
    if (!root) return -1;
    if (grid_expand(root, &SCHEMA_EXPERIMENT, &plan, err)) { cfg_free(root); return -1; }
    core_set_threads(o->threads > 0 ? o->threads : MAX(1, core_threads() / MAX(1, dp_state()->host_ranks)));
    int rc = 0, run;
    long step, t;
    while (rc == 0 && dp_recv(&run, &step, &t) == DP_CMD_TRAIN) {
        if (run < 0 || run >= plan.n_runs) rc = err_set(err, "rank %d: rank 0 announced run %d of %d (not the same config?)",
                                                       dp_state()->rank, run, plan.n_runs);
        else rc = follow_one(&plan.runs[run], run, step, t, err);
    }
    grid_plan_free(&plan);
    cfg_free(root);
    return rc;
}

int runner_run(const char *config_path, const RunnerOptions *o, Error *err) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_stop = 0;
    if (o->gpus > 0 && !o->dry_run) { /* --gpus G: fork (or join, under srun) the ranks */
        int code = 0, r = dp_start(o->gpus, &code, err);
        if (r < 0) return -1;
        if (r == 1) { /* the forking parent, after every rank exited */
            if (code && code != 130) err_set(err, "%s: a rank failed or some runs failed (see above)", config_path);
            return code == 130 ? 130 : code ? 1 : 0;
        }
        int rc = dp_state()->rank == 0 ? run_config(config_path, o, 0, err) : follow(config_path, o, err);
        if (dp_state()->rank == 0) dp_send(DP_CMD_END, 0, 0, 0);
        dp_finish();
        task_cache_free();
        return rc;
    }
    int rc = run_config(config_path, o, 0, err);
    task_cache_free();
    return rc;
}

/* ---- reports -------------------------------------------------------------------------------------------- */
static int strlist(const CfgNode *t, const char *key, const char ***out, int *n, Error *err) {
    return cfg_get_strlist(t, key, out, n, err);
}

/* report.tables[].groups: {group name: [column values]} -> group_of_col over col_order (which it needs). */
static int table_groups(ReportTable *rt, const CfgNode *t, Error *err) {
    const CfgNode *g = cfg_get(t, "groups");
    if (cfg_is_null(g)) return 0;
    char where[160];
    if (g->kind != CFG_MAP)
        return err_set(err, "%s: report table '%s': groups must be a map of group name -> list of columns",
                       cfg_where(g, where, sizeof where), rt->name);
    if (rt->n_col_order == 0)
        return err_set(err, "%s: report table '%s': groups need col_order (the columns, in order)",
                       cfg_where(g, where, sizeof where), rt->name);
    const char **names = xcalloc((size_t)g->n, sizeof *names);
    int *of = xmalloc(sizeof(int) * (size_t)rt->n_col_order);
    for (int j = 0; j < rt->n_col_order; j++) of[j] = -1;
    rt->group_names = names;
    rt->group_of_col = of;
    rt->n_groups = g->n;
    for (int k = 0; k < g->n; k++) {
        const CfgNode *list = g->entries[k].val;
        names[k] = g->entries[k].key;
        for (int i = 0; list && list->kind == CFG_LIST && i < list->n; i++) {
            int j = 0;
            while (j < rt->n_col_order && strcmp(rt->col_order[j], list->items[i]->text ? list->items[i]->text : "")) j++;
            if (j == rt->n_col_order)
                return err_set(err, "%s: report table '%s': group '%s' names column '%s', which is not in col_order",
                               cfg_where(list->items[i], where, sizeof where), rt->name, names[k],
                               list->items[i]->text ? list->items[i]->text : "");
            of[j] = k;
        }
    }
    return 0;
}

/* report.tables[].papers -> ReportPaper[] (published numbers beside ours). The strings stay owned by t. */
static int table_papers(ReportPaper **out, int *n_out, const CfgNode *t, Error *err) {
    const CfgNode *l = cfg_get(t, "papers");
    *out = NULL, *n_out = 0;
    if (cfg_is_null(l)) return 0;
    ReportPaper *ps = xcalloc((size_t)l->n, sizeof *ps);
    *out = ps;
    for (int i = 0; i < l->n; i++) {
        const CfgNode *p = l->items[i], *cm = cfg_get(p, "col_map");
        ReportPaper *rp = &ps[i];
        const char **rows = NULL;
        int nrows = 0;
        if (cfg_get_string(p, "csv", NULL, &rp->csv, err) || cfg_get_string(p, "tag", NULL, &rp->tag, err) ||
            cfg_get_string(p, "label_cols", NULL, &rp->label_cols, err) || strlist(p, "rows", &rows, &nrows, err) ||
            cfg_get_double(p, "scale", 0, &rp->scale, err))
            return -1;
        rp->rows = rows, rp->n_rows = nrows;
        *n_out = i + 1;
        if (cfg_is_null(cm)) continue;
        char w[256];
        if (cm->kind != CFG_MAP)
            return err_set(err, "%s: papers[%d].col_map: expected a map of our column -> the paper's column",
                           cfg_where(cm, w, sizeof w), i);
        const char **pairs = xcalloc((size_t)cm->n * 2, sizeof *pairs);
        rp->col_map = pairs, rp->n_col_map = cm->n;
        for (int k = 0; k < cm->n; k++) {
            const CfgNode *v = cm->entries[k].val;
            if (!v || v->kind != CFG_SCALAR)
                return err_set(err, "%s: papers[%d].col_map.%s: expected the paper's column name",
                               cfg_where(v ? v : cm, w, sizeof w), i, cm->entries[k].key);
            pairs[2 * k] = cm->entries[k].key, pairs[2 * k + 1] = v->text;
        }
    }
    return 0;
}
static void table_papers_free(ReportPaper *ps, int n) {
    for (int i = 0; i < n; i++) free((void *)ps[i].rows), free((void *)ps[i].col_map);
    free(ps);
}

int runner_report(const char *config_path, const RunnerOptions *o, Error *err) {
    CfgNode *root = runner_load_config(config_path, o, 1, err);
    if (!root) return -1;
    const char *name, *out, *profile;
    int rc = 0;
    if (cfg_get_string(root, "name", NULL, &name, err) || cfg_get_string(root, "output", "runs", &out, err) ||
        cfg_get_string(root, "profile", NULL, &profile, err)) {
        cfg_free(root);
        return -1;
    }
    char db_path[PATH_MAX_LEN], dir[PATH_MAX_LEN + 64];
    snprintf(db_path, sizeof db_path, "%s/runs.db", out);
    if (profile && strcmp(profile, "mini")) snprintf(dir, sizeof dir, "%s/%s/report-%s", out, name, profile);
    else snprintf(dir, sizeof dir, "%s/%s/report", out, name);
    if (!file_exists(db_path)) {
        cfg_free(root);
        return err_set(err, "%s: no results database yet: run `runexp %s` first", db_path, config_path);
    }
    if (mkdirs(dir, err)) { cfg_free(root); return -1; }
    /* the report covers the runs of this config as it is now (its grid), not older runs under the same name */
    GridPlan plan;
    if (grid_expand(root, &SCHEMA_EXPERIMENT, &plan, err)) { cfg_free(root); return -1; }
    const char **ids = xcalloc((size_t)plan.n_runs, sizeof *ids);
    for (int i = 0; i < plan.n_runs; i++) ids[i] = plan.runs[i].id;
    const CfgNode *tables = cfg_get(root, "report.tables"), *figs = cfg_get(root, "report.figures");
    int n_out = 0;
    for (int i = 0; tables && i < tables->n && !rc; i++) {
        const CfgNode *t = tables->items[i];
        ReportTable rt = {.experiment = name, .higher_is_better = 1, .decimals = 2, .run_ids = ids,
                          .n_run_ids = plan.n_runs};
        const char **ro = NULL, **rl = NULL, **co = NULL, **cl = NULL, **wh = NULL, **ms = NULL, **lb = NULL;
        int nro = 0, nrl = 0, nco = 0, ncl = 0, nwh = 0, hib = 1, om = 0, hs = 0, nms = 0, nlb = 0;
        int *lower = NULL;
        long dec = 2;
        double scale = 1;
        rc = cfg_get_string(t, "name", NULL, &rt.name, err) || cfg_get_string(t, "title", NULL, &rt.title, err) ||
             cfg_get_string(t, "rows", NULL, &rt.row_key, err) || cfg_get_string(t, "row_title", NULL, &rt.row_title, err) ||
             cfg_get_string(t, "columns", NULL, &rt.col_key, err) || cfg_get_string(t, "metric", NULL, &rt.metric, err) ||
             cfg_get_double(t, "scale", 1, &scale, err) || cfg_get_int(t, "decimals", 2, &dec, err) ||
             cfg_get_bool(t, "higher_is_better", 1, &hib, err) || cfg_get_bool(t, "overall_mean", 0, &om, err) ||
             cfg_get_bool(t, "hide_std", 0, &hs, err) || strlist(t, "row_order", &ro, &nro, err) ||
             strlist(t, "row_labels", &rl, &nrl, err) || strlist(t, "col_order", &co, &nco, err) ||
             strlist(t, "col_labels", &cl, &ncl, err) || strlist(t, "where", &wh, &nwh, err) ||
             strlist(t, "metrics", &ms, &nms, err) || strlist(t, "lower_is_better", &lb, &nlb, err)
                 ? -1 : 0;
        if (!rc && nms) { /* metric columns: lower_is_better names some of them */
            lower = xcalloc((size_t)nms, sizeof *lower);
            for (int k = 0; k < nlb && !rc; k++) {
                int hit = 0;
                for (int j = 0; j < nms; j++) if (!strcmp(lb[k], ms[j])) lower[j] = 1, hit = 1;
                if (!hit) rc = err_set(err, "%s: report table '%s': lower_is_better names '%s', which is not in its "
                                            "metrics", config_path, rt.name ? rt.name : "?", lb[k]);
            }
            rt.metrics = ms; rt.n_metrics = nms; rt.lower_is_better = lower;
        }
        if (!rc) {
            rt.scale = scale;
            rt.decimals = (int)dec;
            rt.higher_is_better = hib;
            rt.overall_mean = om;
            rt.hide_std = hs;
            rt.row_order = ro; rt.n_row_order = nro; rt.row_labels = nrl ? rl : NULL;
            rt.col_order = co; rt.n_col_order = nco; rt.col_labels = ncl ? cl : NULL;
            rt.where = wh; rt.n_where = nwh;
            rc = table_groups(&rt, t, err);
            ReportPaper *papers = NULL;
            int n_papers = 0;
            char title[1024];
            if (!rc) rc = table_papers(&papers, &n_papers, t, err);
            /* published numbers sit beside ours only in the paper profile (or in configs without profiles) */
            if (!rc && (!profile || !strcmp(profile, "paper"))) rt.papers = papers, rt.n_papers = n_papers;
            if (!rc && profile && strcmp(profile, "paper")) {
                snprintf(title, sizeof title, "%s [profile %s: this framework's numbers on the local stand-ins%s]",
                         rt.title ? rt.title : rt.name, profile,
                         n_papers ? "; the published ones print with --profile paper" : "");
                rt.title = title;
            }
            if (!rc) rc = report_table_path(db_path, &rt, dir, err);
            table_papers_free(papers, n_papers);
            free((void *)rt.group_names);
            free((void *)rt.group_of_col);
            if (!rc) printf("wrote %s/%s.md, .tex, .csv\n", dir, rt.name), n_out++;
        }
        free(ro); free(rl); free(co); free(cl); free(wh); free(ms); free(lb); free(lower);
    }
    for (int i = 0; figs && i < figs->n && !rc; i++) {
        const CfgNode *t = figs->items[i];
        FigureOptions fo = {.run_ids = ids, .n_run_ids = plan.n_runs};
        const char *series, *group_by;
        const char **go = NULL, **wh = NULL;
        int ngo = 0, nwh = 0, lx = 0, ly = 0, nb = 0, svg = 0, pdf = 0, allc = 0, prof = 0, heat = 0;
        long smooth = 0;
        rc = cfg_get_string(t, "name", NULL, &fo.name, err) || cfg_get_string(t, "series", NULL, &series, err) ||
             cfg_get_string(t, "group_by", NULL, &group_by, err) || cfg_get_string(t, "title", NULL, &fo.title, err) ||
             cfg_get_string(t, "x", NULL, &fo.xlabel, err) || cfg_get_string(t, "y", NULL, &fo.ylabel, err) ||
             cfg_get_string(t, "column", NULL, &fo.column, err) || cfg_get_bool(t, "log_x", 0, &lx, err) ||
             cfg_get_bool(t, "log_y", 0, &ly, err) || cfg_get_bool(t, "no_band", 0, &nb, err) ||
             cfg_get_bool(t, "svg", 0, &svg, err) || cfg_get_bool(t, "pdf", 0, &pdf, err) ||
             cfg_get_int(t, "smooth", 0, &smooth, err) || strlist(t, "group_order", &go, &ngo, err) ||
             cfg_get_bool(t, "all_columns", 0, &allc, err) || cfg_get_bool(t, "profile", 0, &prof, err) ||
             cfg_get_bool(t, "heatmap", 0, &heat, err) ||
             strlist(t, "where", &wh, &nwh, err)
                 ? -1 : 0;
        if (!rc) {
            fo.log_x = lx; fo.log_y = ly; fo.no_band = nb; fo.svg = svg; fo.pdf = pdf; fo.smooth = (int)smooth;
            fo.all_columns = allc; fo.profile = prof; fo.heatmap = heat;
            fo.group_order = go; fo.n_group_order = ngo; fo.where = wh; fo.n_where = nwh;
            rc = figure_series_path(db_path, name, series, group_by, &fo, dir, err);
            if (!rc) printf("wrote %s/%s.png\n", dir, fo.name), n_out++;
            if (rc == 1) printf("skipped %s\n", err->msg), rc = 0; /* its runs are not done yet: the rest still go */
        }
        free(go); free(wh);
    }
    if (!rc && n_out == 0) rc = err_set(err, "%s: no report: section (tables / figures) to write", config_path);
    free(ids);
    grid_plan_free(&plan);
    cfg_free(root);
    return rc;
}
