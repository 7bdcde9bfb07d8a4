/* tests/test_optim.c: optimizers against torch.optim (fixture tests/fixtures/optim_ref.safetensors: three
 * steps of AdamW(lr .01, betas (.9,.95), wd .1) and SGD(lr .01, momentum .9, wd .1)), the clipping rule,
 * the schedules' shapes, and the RNG's contract (pure function of seed/stream/index, thread-count
 * independent, sane statistics). Usage: test_optim adamw|sgd|clip|sched|rng */
#include <omp.h>
#include <string.h>

#include "core/optim.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "testlib.h"

static int step_matches(OptKind kind) {
    char path[512];
    snprintf(path, sizeof path, "%s/optim_ref.safetensors", TEST_FIXTURE_DIR);
    SafeTensors st;
    Error err;
    if (st_open(&st, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    ParamSet ps;
    params_init(&ps);
    int64_t shape[2] = {7, 5};
    int w = params_add(&ps, "w", 2, shape, 1);
    params_finalize(&ps);
    params_alloc_grads(&ps);
    ASSERT(st_read_f32(&st, "p0", params_data(&ps, w), 35, &err) == 0);
    OptConfig oc = {.kind = kind, .lr = 0.01f, .weight_decay = 0.1f};
    if (kind == OPT_ADAMW) { oc.beta1 = 0.9f; oc.beta2 = 0.95f; oc.eps = 1e-8f; }
    else oc.momentum = 0.9f;
    ParamSet *sets[1] = {&ps};
    Optimizer o;
    optim_init(&o, &oc, sets, 1);
    for (int i = 0; i < 3; i++) {
        char g[8];
        snprintf(g, sizeof g, "g%d", i);
        ASSERT(st_read_f32(&st, g, params_grad(&ps, w), 35, &err) == 0);
        optim_step(&o, 0.01f);
    }
    float ref[35];
    ASSERT(st_read_f32(&st, kind == OPT_ADAMW ? "adamw" : "sgd", ref, 35, &err) == 0);
    double e = max_rel_err(params_data(&ps, w), ref, 35, 1e-6, NULL);
    printf("%s: 3 steps vs torch.optim, max rel err %.3g\n", kind == OPT_ADAMW ? "adamw" : "sgd", e);
    CHECK_MSG(e < 1e-5, "rel err %.3g", e);
    optim_free(&o);
    params_free(&ps);
    st_close(&st);
    return 0;
}

static void clip(void) {
    ParamSet ps;
    params_init(&ps);
    int64_t s1[1] = {2};
    int a = params_add(&ps, "a", 1, s1, 0);
    params_finalize(&ps);
    params_alloc_grads(&ps);
    params_grad(&ps, a)[0] = 3;
    params_grad(&ps, a)[1] = 4; /* norm 5, clipped to 1: step uses (0.6, 0.8) */
    OptConfig oc = {.kind = OPT_SGD, .lr = 1.0f, .clip_norm = 1.0f};
    ParamSet *sets[1] = {&ps};
    Optimizer o;
    optim_init(&o, &oc, sets, 1);
    double n = optim_step(&o, 1.0f);
    CHECK_NEAR(n, 5.0, 1e-6);
    CHECK_NEAR(params_data(&ps, a)[0], -0.6, 1e-5);
    CHECK_NEAR(params_data(&ps, a)[1], -0.8, 1e-5);
    optim_free(&o);
    params_free(&ps);
}

static void sched(void) {
    Schedule c = {.kind = SCHED_COSINE, .warmup_steps = 10, .total_steps = 110, .min_lr_ratio = 0};
    CHECK_NEAR(sched_factor(&c, 0), 0.1, 1e-6);      /* warmup: (step+1)/warmup */
    CHECK_NEAR(sched_factor(&c, 9), 1.0, 1e-6);
    CHECK_NEAR(sched_factor(&c, 10), 1.0, 1e-6);     /* cosine starts at the peak */
    CHECK_NEAR(sched_factor(&c, 60), 0.5, 1e-6);     /* halfway */
    CHECK_NEAR(sched_factor(&c, 110), 0.0, 1e-6);
    Schedule l = {.kind = SCHED_LINEAR, .total_steps = 100, .min_lr_ratio = 0.1f};
    CHECK_NEAR(sched_factor(&l, 50), 0.55, 1e-6);
    Schedule k = {.kind = SCHED_CONSTANT, .warmup_steps = 4, .total_steps = 100};
    CHECK_NEAR(sched_factor(&k, 1), 0.5, 1e-6);
    CHECK_NEAR(sched_factor(&k, 99), 1.0, 1e-6);
}

static void rng(void) {
    enum { N = 100003 };
    static float a[N], b[N];
    omp_set_num_threads(1);
    rng_fill_normal(a, N, 0, 1, 11, 22);
    omp_set_num_threads(2);
    rng_fill_normal(b, N, 0, 1, 11, 22);
    CHECK_MSG(memcmp(a, b, sizeof a) == 0, "normal fill depends on the thread count");
    /* element i is a function of i alone: a fill of a prefix equals the prefix of a longer fill */
    rng_fill_normal(b, 1001, 0, 1, 11, 22);
    CHECK(memcmp(a, b, 1001 * sizeof(float)) == 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) { s += a[i]; s2 += (double)a[i] * a[i]; }
    CHECK_NEAR(s / N, 0.0, 0.02);
    CHECK_NEAR(s2 / N, 1.0, 0.02);
    rng_fill_uniform(a, N, -1, 1, 11, 22);
    rng_fill_uniform(b, N, -1, 1, 11, 23);
    CHECK(memcmp(a, b, sizeof a) != 0); /* another stream, other numbers */
    float mn = 1, mx = -1;
    for (int i = 0; i < N; i++) { mn = a[i] < mn ? a[i] : mn; mx = a[i] > mx ? a[i] : mx; }
    CHECK(mn >= -1 && mx < 1 && mn < -0.999f && mx > 0.999f);
    rng_fill_trunc_normal(a, N, 0, 1, -2, 2, 3, 4);
    for (int i = 0; i < N; i++) if (a[i] < -2 || a[i] > 2) { CHECK_MSG(0, "trunc normal out of range: %g", a[i]); break; }
    int perm[1000], seen[1000] = {0};
    rng_permutation(perm, 1000, 5, 6);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= perm[i] >= 0 && perm[i] < 1000 && !seen[perm[i]]++;
    CHECK_MSG(ok, "not a permutation");
    /* Philox4x32-10 known-answer test (Random123's kat_vectors: counter 0, key 0) */
    uint32_t w[4];
    philox4x32(w, 0, 0, 0);
    CHECK_MSG(w[0] == 0x6627e8d5u && w[1] == 0xe169c58du && w[2] == 0xbc57ac4cu && w[3] == 0x9b00dbd8u,
              "philox KAT: %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "adamw")) { if (step_matches(OPT_ADAMW)) return 1; }
    else if (!strcmp(w, "sgd")) { if (step_matches(OPT_SGD)) return 1; }
    else if (!strcmp(w, "clip")) clip();
    else if (!strcmp(w, "sched")) sched();
    else if (!strcmp(w, "rng")) rng();
    else return 2;
    return test_finish(w);
}
