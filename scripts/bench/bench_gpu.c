/* scripts/bench/bench_gpu.c: time the GPU LoRA training step on ViT-B/16 (the shape of the PyTorch peers in
 * scripts/bench/peft_vit_peers.py): 224 px, patch 16, 100 classes, random weights (timm init), LoRA r 8
 * alpha 16 on q and v of every block, head trained, AdamW (lr 1e-3, weight decay 0.01 on every trainable
 * tensor, torch's default), bf16.
 *   bench_gpu [batch (64)] [steps (30)] [warmup (10)]
 * Prints one JSON line: ms per step and images per second (mean over the timed steps, after the warm-up, as
 * the peers measure), peak device memory (everything this process allocated through cuda_alloc: weights,
 * trainable state, activation arena, cuBLASLt workspace) and model TFLOP/s / MFU counted as in
 * BENCHMARKS.md (a frozen-weight LoRA step = 2 forward passes; the forward's GEMM FLOPs counted exactly);
 * step_ms_no_graph: the same steps with the CUDA graph off (cuda_vit_set_graph). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_vit.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "methods/lora.h"

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, steps = argc > 2 ? atoi(argv[2]) : 30, warm = argc > 3 ? atoi(argv[3]) : 10;
    char cerr[256];
    if (cuda_init(cerr)) { fprintf(stderr, "%s\n", cerr); return 77; }
    core_set_threads(0);
    ModelConfig mc = {.family = MODEL_VIT, .vit = {.img_size = 224, .in_ch = 3, .patch = 16, .dim = 768, .depth = 12,
                                                   .heads = 12, .mlp_hidden = 3072, .n_classes = 100, .pool = POOL_CLS,
                                                   .ln_eps = 1e-6f}};
    Model m;
    Error err;
    if (model_build(&m, &mc, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    model_init_params(&m, 0);
    params_set_all_trainable(m.params, 0);
    params_set_trainable(m.params, "head.*", 1);
    params_alloc_grads(m.params);
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = 8, .alpha = 16};
    AdapterSet ad;
    if (adapters_attach(&ad, m.targets, m.n_targets, m.params, pats, 2, &spec, 0, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    OptConfig oc = {.kind = OPT_ADAMW, .lr = 1e-3f, .weight_decay = 0.01f, .decay_all = 1};
    cuda_mem_peak_reset();
    size_t base = cuda_mem_in_use(); /* the backend's own workspace, counted in the peak as well */
    CudaVit *g = cuda_vit_create(&m.u.vit, &ad, B, &oc, &err);
    if (!g) { fprintf(stderr, "%s\n", err.msg); return 1; }
    size_t nimg = (size_t)B * 3 * 224 * 224;
    float *img = malloc(sizeof(float) * nimg);
    int *y = malloc(sizeof(int) * B);
    rng_fill_normal(img, nimg, 0, 1, 1, 1);
    for (int i = 0; i < B; i++) y[i] = (i * 37) % 100;
    cuda_vit_set_batch(g, img, y, B);
    for (int s = 0; s < warm; s++) cuda_vit_step(g, 1e-3f);
    float loss0 = cuda_vit_loss(g); /* waits */
    double t0 = now_seconds();
    for (int s = 0; s < steps; s++) cuda_vit_step(g, 1e-3f);
    float loss1 = cuda_vit_loss(g);
    double dt = (now_seconds() - t0) / steps;
    /* forward GEMM FLOPs per image: patch embedding, per block qkv / proj / fc1 / fc2 and q k^T, P v; head */
    double T = 197, D = 768, H = 3072, NP = 196;
    double fwd = 2 * (NP * 768 * D + 12 * (T * D * 3 * D + T * D * D + 2 * T * D * H + 2 * T * T * D) + D * 100);
    double tflops = 2 * fwd * B / dt / 1e12;
    size_t peak = cuda_mem_peak();
    /* the same steps without the CUDA graph (every kernel launched from the host), for comparison */
    cuda_vit_set_graph(g, 0);
    for (int s = 0; s < 3; s++) cuda_vit_step(g, 1e-3f);
    cuda_vit_loss(g);
    double te = now_seconds();
    for (int s = 0; s < steps; s++) cuda_vit_step(g, 1e-3f);
    cuda_vit_loss(g);
    double dt_eager = (now_seconds() - te) / steps;
    cuda_vit_set_graph(g, 1);
    printf("{\"engine\": \"loralab\", \"batch\": %d, \"step_ms\": %.2f, \"img_s\": %.0f, \"peak_gib\": %.2f, "
           "\"peak_gib_without_workspace\": %.2f, \"params_gib\": %.3f, \"arena_gib\": %.2f, \"tflops\": %.0f, "
           "\"mfu_790\": %.3f, \"loss_first\": %.4f, \"loss_last\": %.4f, \"step_ms_no_graph\": %.2f, \"device\": \"%s\"}\n",
           B, dt * 1e3, B / dt, peak / 1073741824.0, (peak - base) / 1073741824.0,
           cuda_vit_param_bytes(g) / 1073741824.0, cuda_vit_arena_bytes(g) / 1073741824.0, tflops, tflops / 790.0,
           loss0, loss1, dt_eager * 1e3, cuda_device_name());
    /* where the time goes: a few more steps with events between the phases (stderr) */
    cuda_vit_profile(g, 1);
    for (int s = 0; s < 5; s++) cuda_vit_step(g, 1e-3f);
    fprintf(stderr, "batch %d: ", B);
    cuda_vit_profile_print(g, stderr);
    cuda_vit_free(g);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
    free(img);
    free(y);
    return 0;
}
