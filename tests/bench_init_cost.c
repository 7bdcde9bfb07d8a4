/* tests/bench_init_cost.c: the host-side linear algebra of the SVD/QR initializers at ViT-B/16's size (issue 10:
 * LoRA r 8 on q and v of 12 blocks, 24 adapters of 768 x 768), before and after (docs/engine.md, "Init cost").
 * Not a test (no ctest entry); run by hand:  build-x/tests/bench_init_cost [threads ...]   (default 1 2)
 * For each thread count (core_set_threads): the initializers as they are now (pissa, olora, and lora_ga's
 * per-adapter step lora_ga_from_grad on a fixed Gaussian gradient, through core_parallel_items as
 * init_lora_ga does), and the old paths (the adapters one by one, OpenBLAS with all the threads: a full
 * la_svd per adapter for PiSSA and LoRA-GA, a full la_qr for OLoRA). Best of reps wall time. The weights are
 * a ViT-B-shaped model's own init (timm's: trunc-normal 0.02) with mlp_hidden cut to 64 (memory; not timed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/linalg.h"
#include "core/rng.h"
#include "core/threads.h"
#include "methods/init.h"
#include "methods/init_grad.h"
#include "methods/lora.h"
#include "testmodels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct Bench {
    Model m;
    AdapterSet ad;
    float **W0;   /* (n) the adapters' original weights: restored before every run */
    float **G;    /* (n) LoRA-GA gradients */
} Bench;

static void restore(Bench *b) {
    for (int i = 0; i < b->ad.n; i++)
        memcpy(b->ad.a[i].W0, b->W0[i], sizeof(float) * (size_t)b->ad.a[i].m * b->ad.a[i].n);
}

static int ga_item(void *p, int i, Error *err) {
    Bench *b = p;
    return lora_ga_from_grad(&b->ad.a[i], b->G[i], 16.0, NULL, err);
}

typedef enum { NEW_PISSA, NEW_OLORA, NEW_LORA_GA, OLD_PISSA, OLD_OLORA, OLD_LORA_GA } What;
static const char *NAMES[] = {"pissa", "olora", "lora_ga (from gradient)", "old pissa (la_svd, serial)",
                              "old olora (la_qr, serial)", "old lora_ga (la_svd, serial)"};

static double run(Bench *b, What w, int reps) {
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        restore(b);
        InitContext ctx = {.model = &b->m, .set = &b->ad, .seed = 1};
        InitResult res;
        Error err;
        double t0 = now();
        int rc = 0;
        if (w == NEW_PISSA) rc = init_run("pissa", &ctx, &res, &err);
        else if (w == NEW_OLORA) rc = init_run("olora", &ctx, &res, &err);
        else if (w == NEW_LORA_GA) rc = core_parallel_items(b->ad.n, ga_item, b, &err);
        else
            for (int i = 0; i < b->ad.n && rc == 0; i++) { /* the factorizations the old code ran, one by one */
                const Adapter *a = &b->ad.a[i];
                int m = a->m, n = a->n, k = MIN(m, n);
                float *U = xmalloc(sizeof(float) * (size_t)m * k), *S = xmalloc(sizeof(float) * k);
                float *Vt = xmalloc(sizeof(float) * (size_t)k * n);
                if (w == OLD_OLORA) rc = la_qr(U, Vt, a->W0, m, n, &err);
                else rc = la_svd(U, w == OLD_PISSA ? S : NULL, Vt, w == OLD_PISSA ? a->W0 : b->G[i], m, n, &err);
                free(U), free(S), free(Vt);
            }
        double t = now() - t0;
        if (rc) {
            fprintf(stderr, "%s: %s\n", NAMES[w], err.msg);
            exit(1);
        }
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 32, .in_ch = 3, .patch = 16, .dim = 768, .depth = 12,
                                                   .heads = 12, .mlp_hidden = 64, .n_classes = 10, .pool = POOL_CLS,
                                                   .ln_eps = 1e-6f}};
    Bench b;
    test_build_adapted(&b.m, &b.ad, &mc, TEST_QV, 2, &ADAPTER_LORA, 8);
    b.W0 = xcalloc((size_t)b.ad.n, sizeof *b.W0);
    b.G = xcalloc((size_t)b.ad.n, sizeof *b.G);
    for (int i = 0; i < b.ad.n; i++) {
        size_t mn = (size_t)b.ad.a[i].m * b.ad.a[i].n;
        b.W0[i] = xmalloc(sizeof(float) * mn);
        memcpy(b.W0[i], b.ad.a[i].W0, sizeof(float) * mn);
        b.G[i] = xmalloc(sizeof(float) * mn);
        rng_fill_normal(b.G[i], mn, 0.0f, 1e-3f, 5, (uint64_t)i);
    }
    int nt = argc > 1 ? argc - 1 : 2, def[] = {1, 2};
    printf("%d adapters of %d x %d, r 8 (ViT-B/16 q and v); best of 3 wall times\n", b.ad.n, b.ad.a[0].m,
           b.ad.a[0].n);
    for (int t = 0; t < nt; t++) {
        int threads = argc > 1 ? atoi(argv[t + 1]) : def[t];
        core_set_threads(threads);
        printf("%d thread(s):\n", threads);
        for (int w = 0; w < 6; w++) {
            int reps = w >= OLD_PISSA && threads == 1 ? 1 : 3;
            printf("  %-30s %8.3f s\n", NAMES[w], run(&b, (What)w, reps));
            fflush(stdout);
        }
    }
    for (int i = 0; i < b.ad.n; i++) free(b.W0[i]), free(b.G[i]);
    free(b.W0), free(b.G);
    adapters_free(&b.ad, b.m.targets, b.m.n_targets);
    model_free(&b.m);
    return 0;
}
