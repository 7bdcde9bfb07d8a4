/* tests/test_timm_vit.c: a timm ViT-B/16 (random weights from timm's own init, scripts/make_timm_vit.py) loaded
 * from safetensors gives timm's logits: this framework's CPU forward (f32) and, with a GPU, its CUDA forward
 * (bf16 storage, f32 accumulation) against timm's f32 logits on the same input batch. Errors are max |ours -
 * timm| / max |timm| over all logits. Tolerances: CPU 1e-4 (f32 summation order only); CUDA 3e-2 (bf16
 * activations through 12 blocks; timm's own bf16 autocast is printed beside it for scale).
 * Needs LORALAB_TIMM_VIT_DIR (the script's output folder); SKIPs (77) without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vit.h"
#include "core/vit_io.h"
#include "testlib.h"
#ifdef LORALAB_HAVE_CUDA
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_vit.h"
#endif

static float *read_f32(const char *dir, const char *name, long *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *x = malloc((size_t)bytes);
    *n = (long)(fread(x, 1, (size_t)bytes, f) / sizeof(float));
    fclose(f);
    return x;
}

int main(void) {
    const char *dir = getenv("LORALAB_TIMM_VIT_DIR");
    if (!dir || !*dir) {
        printf("LORALAB_TIMM_VIT_DIR not set (run scripts/make_timm_vit.py DIR first): skipped\n");
        return TEST_SKIP;
    }
    long n_in = 0, n_ref = 0, n_bf = 0;
    float *img = read_f32(dir, "input.f32", &n_in), *ref = read_f32(dir, "logits_f32.f32", &n_ref);
    float *ref_bf16 = read_f32(dir, "logits_bf16.f32", &n_bf);
    if (!img || !ref) {
        printf("%s has no input.f32 / logits_f32.f32: skipped\n", dir);
        return TEST_SKIP;
    }
    ViTConfig cfg = {.img_size = 224, .in_ch = 3, .patch = 16, .dim = 768, .depth = 12, .heads = 12,
                     .mlp_hidden = 3072, .n_classes = 1000, .pool = POOL_CLS, .ln_eps = 1e-6f};
    int B = (int)(n_in / (3 * 224 * 224)), K = cfg.n_classes;
    CHECK(B > 0 && n_ref == (long)B * K);
    ViT m;
    Error err;
    char path[1024];
    snprintf(path, sizeof path, "%s/vit_b16.safetensors", dir);
    CHECK_MSG(vit_build(&m, &cfg, &err) == 0, "%s", err.msg);
    CHECK_MSG(vit_load(&m, path, 0, &err) == 0, "%s", err.msg);
    if (test_failures) return test_finish("ref_timm_vitb16");
    float *logits = malloc(sizeof(float) * B * K);
    Arena ar;
    arena_init(&ar, 1 << 26);
    double t0 = now_seconds();
    vit_forward(&m, logits, img, B, &ar);
    double t_cpu = now_seconds() - t0;
    double e_cpu = max_rel_err(logits, ref, (size_t)B * K, 1e-30, NULL), maxref = 0;
    for (long i = 0; i < (long)B * K; i++) maxref = fmax(maxref, fabs(ref[i]));
    printf("ViT-B/16 (timm random init), batch %d, max |timm logit| %.4g\n", B, maxref);
    printf("  CPU f32 vs timm f32:  max rel err %.3g (tol 1e-4), %.2f s\n", e_cpu, t_cpu);
    CHECK_MSG(e_cpu <= 1e-4, "CPU logits rel err %.3g", e_cpu);
    if (ref_bf16 && n_bf == (long)B * K)
        printf("  timm bf16 autocast (GPU) vs timm f32: max rel err %.3g (for scale)\n",
               max_rel_err(ref_bf16, ref, (size_t)B * K, 1e-30, NULL));
#ifdef LORALAB_HAVE_CUDA
    char msg[256] = "";
    if (cuda_device_count() > 0 && cuda_init(msg) == 0) {
        params_set_all_trainable(&m.params, 0);
        OptConfig oc = {.kind = OPT_ADAMW, .lr = 0};
        CudaVit *g = cuda_vit_create(&m, NULL, B, &oc, &err);
        CHECK_MSG(g != NULL, "%s", err.msg);
        if (g) {
            int *y = calloc((size_t)B, sizeof(int));
            float *gl = malloc(sizeof(float) * B * K);
            cuda_vit_set_batch(g, img, y, B);
            cuda_vit_forward(g);
            cuda_vit_logits(g, gl);
            double e_gpu = max_rel_err(gl, ref, (size_t)B * K, 1e-30, NULL), e_cc = max_rel_err(gl, logits, (size_t)B * K, 1e-30, NULL);
            printf("  CUDA bf16 vs timm f32: max rel err %.3g (tol 3e-2); vs our CPU %.3g (%s)\n", e_gpu, e_cc, cuda_device_name());
            CHECK_MSG(e_gpu <= 3e-2, "CUDA logits rel err %.3g", e_gpu);
            free(y);
            free(gl);
            cuda_vit_free(g);
        }
    } else {
        printf("  no CUDA device: the CUDA comparison is skipped\n");
    }
#endif
    arena_free(&ar);
    vit_free(&m);
    free(img); free(ref); free(ref_bf16); free(logits);
    return test_finish("ref_timm_vitb16");
}
