/* tests/test_train.c: whole training runs.
 *   it_determinism   same config + seed + threads -> bit-identical losses over 20 steps (full and LoRA);
 *                    another seed -> different losses (the check can fail)
 *   it_arena_steady  from the second step on, a training step allocates nothing (the arena stops growing)
 *   it_fmnist_train  a short from-scratch run on real Fashion-MNIST learns (SKIP without the dataset) */
#include <string.h>
#include <unistd.h>

#include "datasets/idx.h"
#include "experiments/checkpoint.h"
#include "experiments/train.h"
#include "methods/lora.h"
#include "core/rng.h"
#include "gradcheck.h"
#include "testlib.h"

#define STEPS 20
typedef struct { double loss[STEPS]; int n; } Trace;
static void on_step(void *ctx, long step, double loss, float lr, double gn, double img_s) {
    Trace *t = ctx;
    if (t->n < STEPS) t->loss[t->n++] = loss;
}

static ViTConfig small_vit(void) {
    return (ViTConfig){.img_size = 12, .in_ch = 1, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_hidden = 32,
                       .n_classes = 4, .pool = POOL_CLS, .ln_eps = 1e-6f};
}

/* Synthetic 4-class images: class k brightens quadrant k, plus noise from the project RNG. */
static ImageSet synthetic(int n) {
    ImageSet s = {.n = n, .C = 1, .H = 12, .W = 12, .K = 4};
    s.x = malloc(sizeof(float) * n * 144);
    s.y = malloc(sizeof(int) * n);
    rng_fill_normal(s.x, (size_t)n * 144, 0, 1, 42, 1);
    for (int i = 0; i < n; i++) {
        int k = s.y[i] = i % 4;
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 6; c++) s.x[(size_t)i * 144 + (r + 6 * (k / 2)) * 12 + c + 6 * (k % 2)] += 1.5f;
    }
    return s;
}

/* The small ViT (all trainable, or frozen with LoRA r 4 on q and v and the head trained) and the trainer
 * config every run here uses. */
static void setup(Model *m, AdapterSet *ad, TrainConfig *tc, uint64_t seed, int lora) {
    ModelConfig mc = {.family = MODEL_VIT, .vit = small_vit()};
    Error err;
    ASSERT(model_build(m, &mc, &err) == 0);
    model_init_params(m, seed);
    if (lora) {
        params_set_all_trainable(m->params, 0);
        params_set_trainable(m->params, "head.*", 1);
        params_alloc_grads(m->params);
        const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
        AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = 4, .alpha = 8};
        ASSERT(adapters_attach(ad, m->targets, m->n_targets, m->params, pats, 2, &spec, seed, &err) == 4);
    }
    *tc = (TrainConfig){.max_steps = STEPS, .batch = 32,
                        .opt = {.kind = OPT_ADAMW, .lr = 3e-3f, .weight_decay = 0.05f},
                        .sched = {.kind = SCHED_COSINE}, .warmup_frac = 0.1f, .label_smoothing = 0.1f, .hflip = 1,
                        .seed = 7};
}

static void teardown(Model *m, AdapterSet *ad, int lora) {
    if (lora) adapters_free(ad, m->targets, m->n_targets);
    model_free(m);
}

static void run(Trace *t, uint64_t seed, int lora) {
    Model m;
    AdapterSet ad;
    TrainConfig tc;
    setup(&m, &ad, &tc, seed, lora);
    tc.seed = seed;
    ImageSet train = synthetic(256);
    TrainHooks h = {.ctx = t, .on_step = on_step};
    TrainResult r;
    Error err;
    memset(t, 0, sizeof *t);
    Optimizer opt;
    train_optimizer_init(&opt, &tc.opt, &m, lora ? &ad : NULL);
    TrainState st = {0};
    ASSERT(train_classifier(&m, lora ? &ad : NULL, &opt, &st, &train, NULL, &tc, &h, &r, &err) == 0);
    optim_free(&opt);
    teardown(&m, &ad, lora);
    imageset_free(&train);
}

/* Resume: stop after k steps (checkpoint to a file), rebuild everything from scratch, load, continue: the
 * losses of the resumed steps equal the uninterrupted run's bit for bit. */
typedef struct { Trace *t; long stop_at; const char *path; Model *m; AdapterSet *ad; Optimizer *opt; } StopCtx;
static void stop_on_step(void *ctx, long step, double loss, float lr, double gn, double img_s) {
    on_step(((StopCtx *)ctx)->t, step, loss, lr, gn, img_s);
}
static int stop_now(void *ctx) {
    StopCtx *s = ctx;
    return s->t->n >= s->stop_at;
}
static int save_ckpt(void *ctx, const TrainState *st, Error *err) {
    StopCtx *s = ctx;
    return ckpt_save(s->path, s->m, s->ad, s->opt, st, err);
}
static void resume_run(Trace *t, long stop_at, int lora, const char *path) {
    memset(t, 0, sizeof *t);
    for (int phase = 0; phase < 2; phase++) {
        Model m;
        AdapterSet ad;
        TrainConfig tc;
        Error err;
        setup(&m, &ad, &tc, phase == 0 ? 7 : 999, lora); /* phase 1 must get everything from the checkpoint */
        ImageSet train = synthetic(256);
        Optimizer opt;
        train_optimizer_init(&opt, &tc.opt, &m, lora ? &ad : NULL);
        TrainState st = {0};
        if (phase == 1) CHECK_MSG(ckpt_load(path, &m, lora ? &ad : NULL, &opt, &st, &err) == 0, "%s", err.msg);
        StopCtx sc = {.t = t, .stop_at = phase == 0 ? stop_at : STEPS + 1, .path = path, .m = &m,
                      .ad = lora ? &ad : NULL, .opt = &opt};
        TrainHooks h = {.ctx = &sc, .on_step = stop_on_step, .on_checkpoint = save_ckpt, .should_stop = stop_now};
        TrainResult r;
        ASSERT(train_classifier(&m, lora ? &ad : NULL, &opt, &st, &train, NULL, &tc, &h, &r, &err) == 0);
        CHECK(r.interrupted == (phase == 0));
        if (phase == 0) CHECK(st.step == stop_at);
        optim_free(&opt);
        teardown(&m, &ad, lora);
        imageset_free(&train);
    }
}

static void resume(void) {
    char path[] = "/tmp/loralab_resume_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    for (int lora = 0; lora < 2; lora++) {
        Trace full, res;
        run(&full, 7, lora);
        long stops[] = {5, 8}; /* 8 = one epoch of 256/32: an epoch boundary */
        for (int k = 0; k < 2; k++) {
            resume_run(&res, stops[k], lora, path);
            CHECK(res.n == STEPS);
            CHECK_MSG(memcmp(full.loss, res.loss, sizeof full.loss) == 0,
                      "%s: resumed after %ld steps, losses differ (step 19: %.9g vs %.9g)", lora ? "lora" : "full",
                      stops[k], full.loss[19], res.loss[19]);
        }
        printf("%s: stopped at 5 and at 8 (epoch end), resumed from the checkpoint file: 20 losses identical\n",
               lora ? "lora" : "full");
    }
    unlink(path);
}

static void determinism(void) {
    for (int lora = 0; lora < 2; lora++) {
        Trace a, b, c;
        run(&a, 7, lora);
        run(&b, 7, lora);
        run(&c, 8, lora);
        CHECK(a.n == STEPS && b.n == STEPS);
        CHECK_MSG(memcmp(a.loss, b.loss, sizeof a.loss) == 0, "%s: same seed gave different losses (%.9g vs %.9g at "
                  "step 19)", lora ? "lora" : "full", a.loss[19], b.loss[19]);
        CHECK_MSG(memcmp(a.loss, c.loss, sizeof a.loss) != 0, "another seed gave the same losses");
        CHECK_MSG(a.loss[STEPS - 1] < a.loss[0], "%s: loss did not decrease: %.4f -> %.4f", lora ? "lora" : "full",
                  a.loss[0], a.loss[STEPS - 1]);
        printf("%s: loss %.5f -> %.5f over %d steps, identical on rerun\n", lora ? "lora" : "full", a.loss[0],
               a.loss[STEPS - 1], STEPS);
    }
}

static void arena_steady(void) {
    ViT m;
    ViTConfig cfg = small_vit();
    Error err;
    ASSERT(vit_build(&m, &cfg, &err) == 0);
    vit_init_params(&m, 1);
    Arena ar;
    arena_init(&ar, 4096); /* deliberately small: the first step must grow it */
    float x[8 * 144], logits[32], dl[32];
    gc_fill(x, 8 * 144, -1, 1, 3);
    gc_fill(dl, 32, -1, 1, 4);
    int grows_after_first = 0;
    for (int step = 0; step < 4; step++) {
        arena_reset(&ar);
        vit_forward(&m, logits, x, 8, &ar);
        vit_backward(&m, dl, &ar);
        if (step == 0) grows_after_first = ar.grows;
    }
    CHECK_MSG(grows_after_first > 0, "the first step should have grown the 4 KiB arena");
    CHECK_MSG(ar.grows == grows_after_first, "arena grew after the first step: %d -> %d", grows_after_first, ar.grows);
    printf("arena: %zu bytes high-water, grew %d times in step 1, 0 times after\n", ar.high, grows_after_first);
    arena_free(&ar);
    vit_free(&m);
}

static int fmnist(void) {
    IdxSet tr, te;
    Error err;
    if (fashion_mnist_load(&tr, NULL, 1, &err) || fashion_mnist_load(&te, NULL, 0, &err)) {
        printf("skipped: %s\n", err.msg);
        return TEST_SKIP;
    }
    float mean, std;
    idx_pixel_stats(&tr, &mean, &std);
    CHECK_NEAR(mean, 0.2860, 1e-3); /* Fashion-MNIST's well-known training statistics */
    CHECK_NEAR(std, 0.3530, 1e-3);
    ImageSet train, test;
    imageset_from_idx(&train, &tr, mean, std);
    imageset_from_idx(&test, &te, mean, std);
    ImageSet test_head = imageset_head(&test, 2000);
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 28, .in_ch = 1, .patch = 7, .dim = 32, .depth = 2,
                                                   .heads = 2, .mlp_hidden = 64, .n_classes = 10, .pool = POOL_CLS}};
    Model m;
    ASSERT(model_build(&m, &mc, &err) == 0);
    model_init_params(&m, 0);
    TrainConfig tc = {.max_steps = 150, .batch = 64, .opt = {.kind = OPT_ADAMW, .lr = 3e-3f, .weight_decay = 0.05f},
                      .sched = {.kind = SCHED_COSINE}, .warmup_frac = 0.1f, .hflip = 1, .seed = 0};
    TrainResult r;
    Optimizer opt;
    train_optimizer_init(&opt, &tc.opt, &m, NULL);
    TrainState st = {0};
    ASSERT(train_classifier(&m, NULL, &opt, &st, &train, &test_head, &tc, NULL, &r, &err) == 0);
    optim_free(&opt);
    printf("fmnist: 150 steps of 64, test acc %.4f (2000 images), %.0f img/s\n", r.test_acc, r.img_s);
    CHECK_MSG(r.test_acc > 0.5, "test accuracy %.3f after 150 steps (chance is 0.1)", r.test_acc);
    return 0;
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "determinism")) determinism();
    else if (!strcmp(w, "arena")) arena_steady();
    else if (!strcmp(w, "resume")) resume();
    else if (!strcmp(w, "fmnist")) { if (fmnist() == TEST_SKIP) return TEST_SKIP; }
    else { fprintf(stderr, "usage: test_train determinism|arena|fmnist\n"); return 2; }
    return test_finish(w);
}
