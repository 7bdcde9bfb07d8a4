/* experiments/init_cuda.c: the initializers' data passes on the GPU (init_cuda.h). */
#include "init_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LORALAB_HAVE_CUDA
const InitAccel *init_cuda_accel(const char *device, const Model *m) {
    (void)device, (void)m;
    return NULL;
}
size_t init_cuda_peak_bytes(int reset) {
    (void)reset;
    return 0;
}
#else
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_vit.h"
#include "core/common.h"

/* LORALAB_INIT_TRACE=1: each pass's phases (create, batches, download) on stderr */
static int trace_on(void) {
    const char *e = getenv("LORALAB_INIT_TRACE");
    return e && *e && strcmp(e, "0");
}

/* The block of every adapter (-1: not on a block's qkv slot). Returns 0 when all are on one. */
static int adapter_blocks(int *blk, const ViT *v, const AdapterSet *set) {
    int ok = 1;
    for (int i = 0; i < set->n; i++) {
        blk[i] = -1;
        for (int l = 0; l < v->cfg.depth && blk[i] < 0; l++)
            for (int k = 0; k < v->blocks[l].qkv.n_ad; k++)
                if (v->blocks[l].qkv.ad[k] == &set->a[i]) blk[i] = l;
        ok &= blk[i] >= 0 && set->a[i].n == v->cfg.dim && set->a[i].kh == 0;
    }
    return ok ? 0 : -1;
}

/* The pass's CudaVit with the adapters (the GPU step's kinds), without them (their delta is zero), or NULL
 * (why says it: the pass runs on the CPU). */
static CudaVit *pass_model(InitContext *ctx, int infer_only, char *why, size_t cap) {
    const ViT *v = &ctx->model->u.vit;
    OptConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPT_ADAMW;
    Error e;
    int with = cuda_vit_check(v, ctx->set, &oc, &e) == 0;
    if (!with) {
        size_t mn = 0;
        for (int i = 0; i < ctx->set->n; i++) mn = MAX(mn, (size_t)ctx->set->a[i].m * ctx->set->a[i].n);
        float *dW = xmalloc(sizeof(float) * (mn ? mn : 1));
        int zero = 1;
        for (int i = 0; i < ctx->set->n && zero; i++) {
            const Adapter *a = &ctx->set->a[i];
            a->kind->delta_weight(a, dW);
            for (size_t k = 0; k < (size_t)a->m * a->n && zero; k++) zero = dW[k] == 0.0f;
        }
        free(dW);
        if (!zero) {
            snprintf(why, cap, "the adapters change the model and the GPU step cannot run them (%s)", e.msg);
            return NULL;
        }
    }
    CudaVit *g = cuda_vit_create_init(v, ctx->set, with, infer_only, ctx->batch, ctx->label_smoothing, &e);
    if (!g) snprintf(why, cap, "%s", e.msg);
    return g;
}

/* A cheap signature of what a pass model copies from the host: every adapter's W0 (a sample) and its parameters,
 * so a prepared model is not used once an initializer changed them (none does before its first pass). */
static double model_signature(const InitContext *ctx) {
    double sig = 0;
    for (int i = 0; i < ctx->set->n; i++) {
        const Adapter *a = &ctx->set->a[i];
        size_t n = (size_t)a->m * a->n;
        for (size_t k = i % 61; k < n; k += 61) sig += (double)a->W0[k] * (double)(1 + k % 7);
    }
    const float *p = ctx->set->params.data;
    for (size_t k = 0; k < ctx->set->params.numel; k++) sig += (double)p[k] * (double)(1 + k % 5);
    return sig;
}

/* The prepared pass model (init_cuda_prepare): the first pass takes it when it fits. */
static struct {
    CudaVit *g;
    const Model *model;
    const AdapterSet *set;
    int infer_only, max_batch;
    double signature;
} g_warm;

static void warm_release(void *actx) {
    (void)actx;
    cuda_vit_free(g_warm.g);
    memset(&g_warm, 0, sizeof g_warm);
}

/* g_warm's model if it was made for this pass, NULL otherwise (then it is freed) */
static CudaVit *warm_take(InitContext *ctx, int infer_only) {
    CudaVit *g = NULL;
    if (g_warm.g && g_warm.model == ctx->model && g_warm.set == ctx->set && g_warm.infer_only == infer_only &&
        g_warm.max_batch >= ctx->batch && g_warm.signature == model_signature(ctx)) {
        g = g_warm.g;
        g_warm.g = NULL;
    }
    warm_release(NULL);
    return g;
}

typedef struct PassBufs {
    double t_create;
    float *x;
    int *y;
    unsigned char *mask;
    int *blk;
} PassBufs;

/* The pass's model and buffers; -1 with nothing allocated (why says it, when there is a reason) otherwise. */
static int pass_begin(PassBufs *p, InitContext *ctx, int infer_only, CudaVit **g, char *why, size_t cap) {
    const Model *m = ctx->model;
    memset(p, 0, sizeof *p);
    *g = NULL;
    if (!ctx->data.batch || ctx->batch <= 0) return -1; /* the CPU path gives the error */
    p->blk = xmalloc(sizeof(int) * (size_t)(ctx->set->n ? ctx->set->n : 1));
    double t0 = now_seconds();
    if (adapter_blocks(p->blk, &m->u.vit, ctx->set)) snprintf(why, cap, "an adapter is not on a block's attn.qkv");
    else if (!(*g = warm_take(ctx, infer_only))) *g = pass_model(ctx, infer_only, why, cap);
    if (!*g) { /* nothing is left allocated: the caller goes to the CPU path */
        free(p->blk);
        p->blk = NULL;
        return -1;
    }
    p->t_create = now_seconds() - t0;
    p->mask = xcalloc((size_t)m->u.vit.cfg.depth, 1);
    for (int i = 0; i < ctx->set->n; i++) p->mask[p->blk[i]] = 1;
    p->x = xmalloc(sizeof(float) * (size_t)ctx->batch * m->in_ch * m->img_h * m->img_w);
    p->y = xmalloc(sizeof(int) * (size_t)ctx->batch);
    return 0;
}

static size_t g_peak_bytes;
size_t init_cuda_peak_bytes(int reset) {
    size_t b = g_peak_bytes;
    if (reset) g_peak_bytes = 0;
    return b;
}

static void pass_bufs_free(PassBufs *p) {
    free(p->x);
    free(p->y);
    free(p->mask);
    free(p->blk);
}

static void pass_end(PassBufs *p, CudaVit *g) {
    if (g) {
        size_t b = cuda_vit_param_bytes(g) + cuda_vit_arena_bytes(g) + cuda_vit_init_bytes(g);
        g_peak_bytes = MAX(g_peak_bytes, b);
    }
    cuda_vit_free(g);
    pass_bufs_free(p);
}

/* how many blocks the mask selects */
static int mask_count(const unsigned char *mask, int depth) {
    int n = 0;
    for (int l = 0; l < depth; l++) n += mask[l];
    return n;
}

/* the selected-block index of block l */
static int sel_index(const unsigned char *mask, int l) {
    int k = 0;
    for (int j = 0; j < l; j++) k += mask[j];
    return k;
}

/* The pass could not run on the GPU (pass_begin failed): the same context without the accelerator, with a note
 * on stderr when there is a reason to give (none when the data is missing: the CPU path reports that). */
static InitContext cpu_context(const InitContext *ctx, const char *pass, const char *why) {
    if (why[0]) fprintf(stderr, "init %s on the CPU: %s\n", pass, why);
    InitContext c = *ctx;
    c.accel = NULL;
    return c;
}

static int gpu_input_stats(void *actx, InitContext *ctx, int n_batches, int per_sample_max, InitStatsFn cb, void *user,
                           Error *err) {
    (void)actx;
    PassBufs p;
    CudaVit *g;
    char why[300] = "";
    if (pass_begin(&p, ctx, 1, &g, why, sizeof why)) {
        InitContext c = cpu_context(ctx, "input statistics", why);
        return init_input_stats(&c, n_batches, per_sample_max, cb, user, err);
    }
    int D = ctx->model->u.vit.cfg.dim, nsel = mask_count(p.mask, ctx->model->u.vit.cfg.depth);
    size_t per = (size_t)(D + 1) * (D + 1);
    float *S = xmalloc(sizeof(float) * per * nsel);
    double *Sd = xmalloc(sizeof(double) * (size_t)D * D), *cd = xmalloc(sizeof(double) * D);
    int done = 0;
    double t0 = now_seconds(), t_cb = 0;
    for (int b = 0; b < n_batches; b++) {
        int B = ctx->data.batch(ctx->data.ctx, b, ctx->batch, p.x, p.y);
        if (B <= 0) break;
        cuda_vit_set_batch(g, p.x, p.y, B);
        cuda_vit_input_moments(g, p.mask, per_sample_max, S);
        double tc = now_seconds();
        int last = -1;
        for (int i = 0; i < ctx->set->n; i++) {
            int k = sel_index(p.mask, p.blk[i]);
            const float *Sk = S + per * k;
            if (k != last) {
                for (int r = 0; r < D; r++) {
                    for (int c = 0; c < D; c++) Sd[(size_t)r * D + c] = Sk[(size_t)r * (D + 1) + c];
                    cd[r] = Sk[(size_t)D * (D + 1) + r];
                }
                last = k;
            }
            cb(user, i, Sd, cd, (long)Sk[(size_t)D * (D + 1) + D], b);
        }
        t_cb += now_seconds() - tc;
        done++;
    }
    if (trace_on())
        fprintf(stderr, "init statistics pass: create %.3f s, %d batches %.3f s (of which the initializer's callbacks "
                "%.3f s)\n", p.t_create, done, now_seconds() - t0, t_cb);
    free(S);
    free(Sd);
    free(cd);
    pass_end(&p, g);
    if (done == 0) return err_set(err, "no init batch could be drawn (the training data is empty?)");
    return done;
}

static int gpu_full_grads(void *actx, InitContext *ctx, int n_batches, float **G, Error *err) {
    (void)actx;
    PassBufs p;
    CudaVit *g;
    char why[300] = "";
    if (pass_begin(&p, ctx, 0, &g, why, sizeof why)) {
        InitContext c = cpu_context(ctx, "gradients", why);
        return init_full_grads(&c, n_batches, G, err);
    }
    int done = 0;
    double t0 = now_seconds(), t_data = 0, t_set = 0;
    for (int b = 0; b < n_batches; b++) {
        double ta = now_seconds();
        int B = ctx->data.batch(ctx->data.ctx, b, ctx->batch, p.x, p.y);
        t_data += now_seconds() - ta;
        if (B <= 0) break;
        ta = now_seconds();
        cuda_vit_set_batch(g, p.x, p.y, B);
        t_set += now_seconds() - ta;
        cuda_vit_qkv_grads(g, p.mask, done == 0);
        done++;
    }
    double t1 = now_seconds();
    for (int i = 0; i < ctx->set->n && done; i++) {
        const Adapter *a = &ctx->set->a[i];
        cuda_vit_qkv_grads_download(g, p.blk[i], a->row0, a->m, 1.0f / (float)done, G[i]);
    }
    double t2 = now_seconds();
    pass_end(&p, g);
    if (trace_on())
        fprintf(stderr, "init gradients pass: create %.3f s, %d batches %.3f s (drawing %.3f, set_batch %.3f), download "
                "%.3f s, free %.3f s\n", p.t_create, done, t1 - t0, t_data, t_set, t2 - t1, now_seconds() - t2);
    if (done == 0) return err_set(err, "no init batch could be drawn (the training data is empty?)");
    return done;
}

/* InitAccel.prepare: the pass model the initializer starts with, made and run once on a batch of zeros (the
 * cuBLASLt plans, the first launches of every kernel), kept for its first pass (warm_take). A model the GPU
 * cannot run is left to the pass, which reports why. */
static void warm_prepare(void *actx, InitContext *ctx, unsigned passes) {
    (void)actx;
    warm_release(NULL);
    const Model *m = ctx->model;
    if (!passes) return;
    int infer_only = !(passes & INIT_PASS_GRADS), D = m->u.vit.cfg.dim;
    PassBufs p;
    CudaVit *g;
    char why[300] = "";
    double t0 = now_seconds();
    if (pass_begin(&p, ctx, infer_only, &g, why, sizeof why) == 0) { /* the pass's own model and buffers */
        memset(p.x, 0, sizeof(float) * (size_t)ctx->batch * m->in_ch * m->img_h * m->img_w);
        memset(p.y, 0, sizeof(int) * (size_t)ctx->batch);
        cuda_vit_set_batch(g, p.x, p.y, ctx->batch);
        if (infer_only) {
            int nsel = mask_count(p.mask, m->u.vit.cfg.depth);
            float *S = xmalloc(sizeof(float) * (size_t)(D + 1) * (D + 1) * (nsel ? nsel : 1));
            cuda_vit_input_moments(g, p.mask, 0, S);
            cuda_vit_input_moments(g, p.mask, 1, S);
            free(S);
        } else {
            cuda_vit_qkv_grads(g, p.mask, 1);
            cuda_sync();
        }
        pass_bufs_free(&p); /* the model stays, for the first pass */
        g_warm.g = g;
        g_warm.model = m;
        g_warm.set = ctx->set;
        g_warm.infer_only = infer_only;
        g_warm.max_batch = ctx->batch;
        g_warm.signature = model_signature(ctx);
    }
    if (trace_on())
        fprintf(stderr, "init prepare (%s pass): %.3f s%s%s\n", infer_only ? "statistics" : "gradients",
                now_seconds() - t0, g ? "" : ", not prepared: ", g ? "" : why);
}

static const InitAccel INIT_CUDA = {"cuda", gpu_input_stats, gpu_full_grads, warm_prepare, warm_release};

const InitAccel *init_cuda_accel(const char *device, const Model *m) {
    if (!device || !strcmp(device, "cpu") || m->family != MODEL_VIT) return NULL;
    if (cuda_device_count() == 0) return NULL;
    char msg[256];
    if (cuda_init(msg)) {
        fprintf(stderr, "init passes on the CPU: %s\n", msg);
        return NULL;
    }
    return &INIT_CUDA;
}
#endif
