/* tests/test_init_cuda.c: the initializers' data passes on the GPU (experiments/init_cuda.h) against the CPU
 * model's (methods/init_data.h), on a small ViT with head size 64 (the fused attention kernels), LoRA on q and
 * v with random B (the adapters change the function: the GPU pass must include them) and LoRA-XS adapters at
 * R = 0 (left out of the GPU model). SKIPs (77) without a GPU.
 * Tolerances (the GPU computes in bf16 with f32 accumulation; the CPU in f32 / double):
 *   moments S = X^T X, column sums c (with and without CorDA's per-image max scaling): max |diff| / max |CPU|
 *   <= 2e-2; the row count N exactly; full-weight gradients: max |diff| / max |CPU| <= 5e-2, cosine >= 0.995. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda_backend.h"
#include "core/rng.h"
#include "experiments/init_cuda.h"
#include "methods/init.h"
#include "methods/init_data.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "testlib.h"
#include "testmodels.h"

static const ModelConfig VIT64 = {.family = MODEL_VIT, .vit = {.img_size = 32, .in_ch = 3, .patch = 8, .dim = 128,
                                                               .depth = 3, .heads = 2, .mlp_hidden = 256,
                                                               .n_classes = 5, .ln_eps = 1e-6f}};

typedef struct Synth {
    int per, K, avail;
} Synth;
static int synth_batch(void *p, int i, int B, float *x, int *y) {
    const Synth *s = p;
    if (i >= s->avail) return 0;
    uint64_t st = rng_stream("test.init_cuda", (uint64_t)i, 0);
    rng_fill_normal(x, (size_t)B * s->per, 0.0f, 1.0f, 91, st);
    for (int k = 0; k < B; k++) y[k] = (int)(rng_uniform(92, st, (uint64_t)k) * s->K) % s->K;
    return B;
}

static void build(Model *m, AdapterSet *ad, const AdapterKind *kind, int random_b) {
    test_build_adapted(m, ad, &VIT64, TEST_QV, 2, kind, 4);
    params_set_trainable(m->params, "head.*", 1);
    params_alloc_grads(m->params);
    for (int i = 0; random_b && i < ad->n; i++) { /* B != 0: the adapters change every later block's input */
        Adapter *a = &ad->a[i];
        rng_fill_normal(params_data(a->ps, a->t[LORA_B]), (size_t)a->m * a->r, 0.0f, 0.3f, 5, rng_stream(a->target, 1, 0));
    }
}

static InitContext context(Model *m, AdapterSet *ad, Synth *sd, const InitAccel *accel) {
    *sd = (Synth){.per = m->in_ch * m->img_h * m->img_w, .K = m->n_classes, .avail = 3};
    return (InitContext){.model = m, .set = ad, .seed = 11, .data = {.batch = synth_batch, .ctx = sd, .n_images = 3 * 6},
                         .batch = 6, .n_batches = 5, .label_smoothing = 0.1f, .accel = accel};
}

/* every (adapter, batch)'s S, c, N */
typedef struct Rec {
    int n, na, nb;
    double *S, *c;
    long *N;
    int calls;
} Rec;
static void rec_cb(void *p, int ai, const double *S, const double *c, long N, int b) {
    Rec *r = p;
    CHECK(ai < r->na && b < r->nb);
    size_t k = (size_t)b * r->na + ai;
    memcpy(r->S + k * r->n * r->n, S, sizeof(double) * r->n * r->n);
    memcpy(r->c + k * r->n, c, sizeof(double) * r->n);
    r->N[k] = N;
    r->calls++;
}
static void rec_init(Rec *r, int n, int na, int nb) {
    *r = (Rec){.n = n, .na = na, .nb = nb};
    r->S = xcalloc((size_t)na * nb * n * n, sizeof(double));
    r->c = xcalloc((size_t)na * nb * n, sizeof(double));
    r->N = xcalloc((size_t)na * nb, sizeof(long));
}
static void rec_free(Rec *r) { free(r->S); free(r->c); free(r->N); }

static double rel_maxdiff(const double *a, const double *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), m = fmax(m, fabs(b[i]));
    return m > 0 ? d / m : d;
}

static void case_stats(const AdapterKind *kind, int random_b, int psm, const InitAccel *accel) {
    Model m;
    AdapterSet ad;
    build(&m, &ad, kind, random_b);
    Synth sd;
    Error err;
    int n = ad.a[0].n;
    Rec cpu, gpu;
    rec_init(&cpu, n, ad.n, 3);
    rec_init(&gpu, n, ad.n, 3);
    InitContext c0 = context(&m, &ad, &sd, NULL), c1 = context(&m, &ad, &sd, accel);
    int b0 = init_input_stats(&c0, 5, psm, rec_cb, &cpu, &err);
    CHECK_MSG(b0 == 3, "CPU stats: %d (%s)", b0, b0 < 0 ? err.msg : "");
    int b1 = init_input_stats(&c1, 5, psm, rec_cb, &gpu, &err);
    CHECK_MSG(b1 == 3, "GPU stats: %d (%s)", b1, b1 < 0 ? err.msg : "");
    CHECK(cpu.calls == ad.n * 3 && gpu.calls == ad.n * 3);
    double eS = 0, ec = 0;
    for (int k = 0; k < ad.n * 3; k++) {
        CHECK_MSG(gpu.N[k] == cpu.N[k] && cpu.N[k] == 6L * 17, "N %ld vs %ld", gpu.N[k], cpu.N[k]);
        eS = fmax(eS, rel_maxdiff(gpu.S + (size_t)k * n * n, cpu.S + (size_t)k * n * n, (size_t)n * n));
        ec = fmax(ec, rel_maxdiff(gpu.c + (size_t)k * n, cpu.c + (size_t)k * n, (size_t)n));
    }
    printf("stats %s%s%s: S %.2e, c %.2e (max |diff| / max |CPU|)\n", kind->name, random_b ? " (B random)" : "",
           psm ? ", per-image max" : "", eS, ec);
    CHECK_MSG(eS <= 2e-2 && ec <= 2e-2, "S %.3e c %.3e", eS, ec);
    rec_free(&cpu);
    rec_free(&gpu);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
}

static void case_grads(const AdapterKind *kind, int random_b, const InitAccel *accel) {
    Model m;
    AdapterSet ad;
    build(&m, &ad, kind, random_b);
    Synth sd;
    Error err;
    float **G0 = xcalloc((size_t)ad.n, sizeof *G0), **G1 = xcalloc((size_t)ad.n, sizeof *G1);
    for (int i = 0; i < ad.n; i++) {
        G0[i] = xcalloc((size_t)ad.a[i].m * ad.a[i].n, sizeof(float));
        G1[i] = xcalloc((size_t)ad.a[i].m * ad.a[i].n, sizeof(float));
    }
    InitContext c0 = context(&m, &ad, &sd, NULL), c1 = context(&m, &ad, &sd, accel);
    int b0 = init_full_grads(&c0, 5, G0, &err);
    CHECK_MSG(b0 == 3, "CPU grads: %d (%s)", b0, b0 < 0 ? err.msg : "");
    int b1 = init_full_grads(&c1, 5, G1, &err);
    CHECK_MSG(b1 == 3, "GPU grads: %d (%s)", b1, b1 < 0 ? err.msg : "");
    double worst = 0, cmin = 1;
    for (int i = 0; i < ad.n; i++) {
        size_t N = (size_t)ad.a[i].m * ad.a[i].n;
        double d = 0, mx = 0, dot = 0, n0 = 0, n1 = 0;
        for (size_t k = 0; k < N; k++) {
            d = fmax(d, fabs((double)G1[i][k] - G0[i][k]));
            mx = fmax(mx, fabs((double)G0[i][k]));
            dot += (double)G1[i][k] * G0[i][k], n0 += (double)G0[i][k] * G0[i][k], n1 += (double)G1[i][k] * G1[i][k];
        }
        CHECK_MSG(mx > 0, "%s: zero CPU gradient", ad.a[i].target);
        worst = fmax(worst, d / mx);
        cmin = fmin(cmin, dot / sqrt(n0 * n1));
    }
    printf("grads %s%s: max |diff| / max |CPU| %.2e, min cosine %.6f\n", kind->name, random_b ? " (B random)" : "", worst,
           cmin);
    CHECK_MSG(worst <= 5e-2 && cmin >= 0.995, "worst %.3e cos %.6f", worst, cmin);
    for (int i = 0; i < ad.n; i++) free(G0[i]), free(G1[i]);
    free(G0);
    free(G1);
    adapters_free(&ad, m.targets, m.n_targets);
    model_free(&m);
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "all";
    if (cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return TEST_SKIP;
    }
    Model probe;
    Error err;
    CHECK(model_build(&probe, &VIT64, &err) == 0);
    const InitAccel *accel = init_cuda_accel("auto", &probe);
    CHECK(init_cuda_accel("cpu", &probe) == NULL);
    model_free(&probe);
    CHECK_MSG(accel && accel->input_stats && accel->full_grads, "no GPU init accelerator with a GPU present");
    if (!accel) return test_finish("init_cuda");
    int all = !strcmp(which, "all");
    if (all || !strcmp(which, "stats")) {
        case_stats(&ADAPTER_LORA, 1, 0, accel);
        case_stats(&ADAPTER_LORA, 1, 1, accel);
        case_stats(&ADAPTER_LORA_XS, 0, 1, accel); /* R = 0: left out of the GPU model */
    }
    if (all || !strcmp(which, "grads")) {
        case_grads(&ADAPTER_LORA, 0, accel);
        case_grads(&ADAPTER_LORA, 1, accel);
        case_grads(&ADAPTER_LORA_XS, 0, accel);
    }
    return test_finish("init_cuda");
}
