/* scripts/bench/bench_step.c: time one training step of the tiny ViT (Fashion-MNIST shape) in this engine.
 *   bench_step <lora|full> [threads] [batch] [steps]
 * lora: frozen backbone, rank-8 LoRA on the q and v slices of every block's fused qkv, head trained (the
 * shape of the PyTorch peer in scripts/bench/tiny_vit_step.py); full: every parameter trained.
 * Prints one JSON line: ms per step and images per second (median of 5 timed windows). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/xent.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/threads.h"
#include "methods/lora.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int lora = argc > 1 && strcmp(argv[1], "lora") == 0;
    core_set_threads(argc > 2 ? atoi(argv[2]) : 0);
    int B = argc > 3 ? atoi(argv[3]) : 128, steps = argc > 4 ? atoi(argv[4]) : 40, K = 10;
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 28, .in_ch = 1, .patch = 7, .dim = 64, .depth = 4,
                                                   .heads = 2, .mlp_hidden = 256, .n_classes = K, .pool = POOL_CLS}};
    Model m;
    Error err;
    if (model_build(&m, &mc, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    model_init_params(&m, 0);
    AdapterSet ad;
    if (lora) {
        params_set_all_trainable(m.params, 0);
        params_set_trainable(m.params, "head.*", 1);
        params_alloc_grads(m.params);
        const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
        AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = 8, .alpha = 16};
        if (adapters_attach(&ad, m.targets, m.n_targets, m.params, pats, 2, &spec, 0, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    }
    ParamSet *sets[2] = {m.params, lora ? &ad.params : NULL};
    Optimizer opt;
    OptConfig oc = {.kind = OPT_ADAMW, .lr = 1e-3f};
    optim_init(&opt, &oc, sets, lora ? 2 : 1);
    float *x = malloc(sizeof(float) * B * 784), *logits = malloc(sizeof(float) * B * K);
    float *probs = malloc(sizeof(float) * B * K), *dl = malloc(sizeof(float) * B * K);
    int *y = malloc(sizeof(int) * B);
    rng_fill_normal(x, (size_t)B * 784, 0, 1, 1, 1);
    for (int i = 0; i < B; i++) y[i] = i % K;
    Arena ar;
    arena_init(&ar, 1 << 20);
    double win[5];
    for (int w = -1; w < 5; w++) {
        int n = w < 0 ? 3 : steps / 5; /* 3 warm-up steps, then 5 windows */
        double t0 = now_seconds();
        for (int s = 0; s < n; s++) {
            arena_reset(&ar);
            model_forward(&m, logits, x, B, 1, &ar);
            xent_forward(probs, logits, y, B, K, 0.0f, NULL);
            xent_backward(dl, probs, y, B, K, 0.0f, 1.0f);
            params_zero_grad(m.params);
            if (lora) params_zero_grad(&ad.params);
            model_backward(&m, dl, &ar);
            optim_step(&opt, 1e-3f);
        }
        if (w >= 0) win[w] = (now_seconds() - t0) / n;
    }
    qsort(win, 5, sizeof win[0], cmp);
    printf("{\"engine\": \"loralab\", \"mode\": \"%s\", \"threads\": %d, \"batch\": %d, \"step_ms\": %.2f, "
           "\"img_s\": %.1f}\n", lora ? "lora" : "full", omp_get_max_threads(), B, win[2] * 1e3, B / win[2]);
    return 0;
}
