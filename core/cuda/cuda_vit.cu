/* core/cuda/cuda_vit.cu: the ViT LoRA training step on the device (cuda_vit.h says what it computes). The
 * forward and backward mirror core/vit.c call for call, with the ops of cuda_ops.h; differences, all for
 * memory or speed: the residual adds are the GEMMs' C operand; ln1 is recomputed in backward (from the block
 * input) instead of kept; attention keeps its output and log-sum-exp, never the T x T probabilities; the
 * scratch buffers of forward (ln out, GELU out) are reused by backward. Saved per block and token: qkv (3D),
 * attention out (D), x_attn (D), fc1 output h (H), x_out (D), LN statistics, LoRA's x A^T (r), lse. */
#include <math.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_ops.h"
#include "cuda_vit_desc.h"

struct Blk {
    /* frozen weights (bf16) */
    bf16 *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    CvLora lora[CUDA_VIT_MAX_LORA];
    int n_lora;
    /* saved activations (arena) */
    float *mean1, *rstd1, *mean2, *rstd2, *lse;
    bf16 *qkv, *o, *x_attn, *h, *x_out, *xa[CUDA_VIT_MAX_LORA];
};

/* Optional per-phase timing (cuda_vit_profile): an event before each phase, the elapsed times summed by
 * phase after the step. */
enum Phase { PH_EMBED, PH_LN, PH_QKV, PH_LORA, PH_ATTN, PH_PROJ, PH_FC1, PH_GELU, PH_FC2, PH_HEAD, PH_B_FC2, PH_B_GELU,
             PH_B_FC1, PH_B_LN, PH_B_PROJ, PH_B_ATTN, PH_B_QKV, PH_B_LORA, PH_ADAMW, PH_END, PH_N };
static const char *PHASE_NAMES[PH_N] = {"patch embed + tokens", "layernorm fwd", "qkv GEMM", "LoRA fwd", "attention fwd",
                                        "proj GEMM (+res)", "fc1 GEMM", "GELU fwd", "fc2 GEMM (+res)", "head + xent",
                                        "bwd fc2 dX", "GELU bwd", "bwd fc1 dX", "layernorm bwd (+ln1 again)",
                                        "bwd proj dX", "attention bwd", "bwd qkv dX", "LoRA bwd", "AdamW", "end"};
#define PROF_MAX 2048
struct Prof {
    int on, n, steps;
    cudaEvent_t ev[PROF_MAX];
    int ph[PROF_MAX];
    double ms[PH_N];
};

struct CudaVit {
    Prof prof;
    CvDesc d;
    CvTrain *train;
    Blk *blk;
    int T, NP, B, low, r_max;
    /* parameters */
    bf16 *frozen;
    size_t frozen_bytes;
    bf16 *patch_w, *patch_b, *cls, *pos, *norm_w, *norm_b, *head_w16;
    float *head_b32; /* the head bias in f32 (the logits GEMM's epilogue type) */
    float *head_frozen32;
    float *tp, *tg, *tm, *tv; /* trainable: f32 master, grad, AdamW m, v */
    bf16 *tp16;               /* their bf16 copies */
    long *toff, n_tp, n_decay;
    long t;                   /* AdamW steps */
    /* activations */
    CudaArena ar;
    bf16 *img, *patches, *pe, *x0, *lnbuf, *atty, *gbuf, *pooled, *dlogits, *dpooled, *dx, *dln, *dqkv, *dxa;
    float *meanf, *rstdf, *logits, *probs, *loss;
    int *labels;
    void *att_scratch;
    bf16 *host_img16; /* host staging for set_batch's f32 -> bf16 conversion */
};

static void mark(CudaVit *g, int ph) {
    Prof *p = &g->prof;
    if (!p->on) return;
    CUDA_ASSERT(p->n < PROF_MAX);
    CUDA_CHECK(cudaEventRecord(p->ev[p->n], g_cuda.stream));
    p->ph[p->n++] = ph;
}
static void prof_collect(CudaVit *g) {
    Prof *p = &g->prof;
    if (!p->on) return;
    CUDA_CHECK(cudaEventSynchronize(p->ev[p->n - 1]));
    for (int i = 0; i + 1 < p->n; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, p->ev[i], p->ev[i + 1]));
        p->ms[p->ph[i]] += ms;
    }
    p->n = 0;
    p->steps++;
}

extern "C" void cuda_vit_profile(CudaVit *g, int on) {
    Prof *p = &g->prof;
    if (on && !p->on)
        for (int i = 0; i < PROF_MAX; i++) CUDA_CHECK(cudaEventCreate(&p->ev[i]));
    if (!on && p->on)
        for (int i = 0; i < PROF_MAX; i++) CUDA_CHECK(cudaEventDestroy(p->ev[i]));
    p->on = on;
    p->n = p->steps = 0;
    memset(p->ms, 0, sizeof p->ms);
}

extern "C" void cuda_vit_profile_print(CudaVit *g, FILE *f) {
    Prof *p = &g->prof;
    double total = 0;
    for (int i = 0; i < PH_N; i++) total += p->ms[i];
    if (!p->steps) return;
    fprintf(f, "per-phase device time, mean of %d steps (events between phases; total %.2f ms/step):\n", p->steps,
            total / p->steps);
    for (int i = 0; i < PH_N; i++)
        if (p->ms[i] > 0)
            fprintf(f, "  %-28s %8.3f ms  %5.1f%%\n", PHASE_NAMES[i], p->ms[i] / p->steps, 100 * p->ms[i] / total);
}

static uint16_t host_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Carves every activation buffer from ar for batch B (dry or real arena: same sequence both times). */
static void carve(CudaVit *g, CudaArena *ar, int B) {
    const CvDesc *d = &g->d;
    long BT = (long)B * g->T, D = d->D, H = d->H, NPB = (long)B * g->NP, Cpp = (long)d->in_ch * d->patch * d->patch;
#define A16(n) ((bf16 *)cuda_arena_alloc(ar, (size_t)(n) * sizeof(bf16)))
#define A32(n) ((float *)cuda_arena_alloc(ar, (size_t)(n) * sizeof(float)))
    g->img = A16((long)B * d->in_ch * d->img * d->img);
    g->patches = A16(NPB * Cpp);
    g->pe = A16(NPB * D);
    g->x0 = A16(BT * D);
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        b->mean1 = A32(BT); b->rstd1 = A32(BT); b->mean2 = A32(BT); b->rstd2 = A32(BT);
        b->lse = A32((long)B * d->heads * g->T);
        b->qkv = A16(BT * 3 * D);
        b->o = A16(BT * D); /* attention output: proj's input, and the softmax backward's rowsum(dO * O) */
        b->x_attn = A16(BT * D);
        b->h = A16(BT * H);
        b->x_out = A16(BT * D);
        for (int j = 0; j < b->n_lora; j++) b->xa[j] = A16(BT * b->lora[j].r);
    }
    g->meanf = A32(BT); g->rstdf = A32(BT);
    g->lnbuf = A16(BT * D);
    g->atty = A16(BT * D);  /* backward: the attention output's gradient */
    g->gbuf = A16(BT * H);  /* forward: GELU out; backward: dg, then dh in place */
    g->pooled = A16((long)B * D);
    g->logits = A32((long)B * d->K);
    g->probs = A32((long)B * d->K);
    g->loss = A32(1);
    g->labels = (int *)cuda_arena_alloc(ar, (size_t)B * sizeof(int));
    g->dlogits = A16((long)B * d->K);
    g->dpooled = A16((long)B * D);
    g->dx = A16(BT * D);
    g->dln = A16(BT * D);
    g->dqkv = A16(BT * 3 * D);
    g->dxa = A16(BT * (g->r_max ? g->r_max : 1));
    g->att_scratch = cuda_arena_alloc(ar, cuda_attention_scratch_bytes(B, g->T, d->D, d->heads));
#undef A16
#undef A32
}

extern "C" CudaVit *cuda_vit_create_desc(const CvDesc *din, char *err) {
    if (cuda_init(err)) return NULL;
    const CvDesc *d = din;
    if (d->D % d->heads || d->img % d->patch) {
        snprintf(err, 256, "cuda_vit: dim %d / heads %d or img %d / patch %d do not divide", d->D, d->heads, d->img, d->patch);
        return NULL;
    }
    if (d->D % 8 || d->H % 8) {
        snprintf(err, 256, "cuda_vit: dim (%d) and mlp_hidden (%d) must be multiples of 8 (16-byte bf16 rows)", d->D, d->H);
        return NULL;
    }
    CudaVit *g = (CudaVit *)calloc(1, sizeof *g);
    g->d = *d;
    g->train = (CvTrain *)malloc(sizeof(CvTrain) * (d->n_train ? d->n_train : 1));
    memcpy(g->train, d->train, sizeof(CvTrain) * d->n_train);
    g->blk = (Blk *)calloc(d->depth, sizeof(Blk));
    g->NP = (d->img / d->patch) * (d->img / d->patch);
    g->T = g->NP + 1;
    g->low = d->depth;
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        b->n_lora = d->blocks[l].n_lora;
        memcpy(b->lora, d->blocks[l].lora, sizeof b->lora);
        for (int j = 0; j < b->n_lora; j++) g->r_max = b->lora[j].r > g->r_max ? b->lora[j].r : g->r_max;
        if (b->n_lora && l < g->low) g->low = l;
    }

    /* frozen weights: one bf16 allocation, every tensor at a 64-element (128-byte) aligned offset */
    long D = d->D, H = d->H, Cpp = (long)d->in_ch * d->patch * d->patch;
    struct Item { bf16 **dst; const float *src; long n; };
    Item items[16 + 12 * 512];
    int ni = 0;
    items[ni++] = Item{&g->patch_w, d->patch_w, D * Cpp};
    items[ni++] = Item{&g->patch_b, d->patch_b, D};
    items[ni++] = Item{&g->cls, d->cls, D};
    items[ni++] = Item{&g->pos, d->pos, (long)g->T * D};
    items[ni++] = Item{&g->norm_w, d->norm_w, D};
    items[ni++] = Item{&g->norm_b, d->norm_b, D};
    if (d->head_w_t < 0) items[ni++] = Item{&g->head_w16, d->head_w, (long)d->K * D};
    if (d->depth > 512) { snprintf(err, 256, "cuda_vit: depth %d > 512", d->depth); free(g->blk); free(g->train); free(g); return NULL; }
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        const CvBlock *s = &d->blocks[l];
        items[ni++] = Item{&b->n1w, s->n1w, D};
        items[ni++] = Item{&b->n1b, s->n1b, D};
        items[ni++] = Item{&b->qkv_w, s->qkv_w, 3 * D * D};
        items[ni++] = Item{&b->qkv_b, s->qkv_b, 3 * D};
        items[ni++] = Item{&b->proj_w, s->proj_w, D * D};
        items[ni++] = Item{&b->proj_b, s->proj_b, D};
        items[ni++] = Item{&b->n2w, s->n2w, D};
        items[ni++] = Item{&b->n2b, s->n2b, D};
        items[ni++] = Item{&b->fc1_w, s->fc1_w, H * D};
        items[ni++] = Item{&b->fc1_b, s->fc1_b, H};
        items[ni++] = Item{&b->fc2_w, s->fc2_w, D * H};
        items[ni++] = Item{&b->fc2_b, s->fc2_b, D};
    }
    long total = 0;
    for (int i = 0; i < ni; i++) total += (items[i].n + 63) & ~63L;
    g->frozen_bytes = (size_t)total * sizeof(bf16);
    g->frozen = (bf16 *)cuda_alloc(g->frozen_bytes, "frozen ViT weights (bf16)");
    uint16_t *stage = (uint16_t *)malloc(g->frozen_bytes);
    long off = 0;
    for (int i = 0; i < ni; i++) {
        *items[i].dst = g->frozen + off;
        for (long k = 0; k < items[i].n; k++) stage[off + k] = host_bf16(items[i].src[k]);
        off += (items[i].n + 63) & ~63L;
    }
    CUDA_CHECK(cudaMemcpy(g->frozen, stage, g->frozen_bytes, cudaMemcpyHostToDevice));
    free(stage);

    /* trainable tensors: decayed first, then the rest, so AdamW is two launches */
    g->toff = (long *)malloc(sizeof(long) * (d->n_train ? d->n_train : 1));
    long o = 0;
    for (int pass = 1; pass >= 0; pass--) {
        for (int i = 0; i < d->n_train; i++)
            if ((g->train[i].decay != 0) == (pass == 1)) {
                g->toff[i] = o;
                o += (g->train[i].n + 63) & ~63L;
            }
        if (pass == 1) g->n_decay = o;
    }
    g->n_tp = o;
    size_t nb = (size_t)(o ? o : 64);
    g->tp = (float *)cuda_alloc(nb * 4, "trainable f32 master weights");
    g->tg = (float *)cuda_alloc(nb * 4, "trainable gradients");
    g->tm = (float *)cuda_alloc(nb * 4, "AdamW m");
    g->tv = (float *)cuda_alloc(nb * 4, "AdamW v");
    g->tp16 = (bf16 *)cuda_alloc(nb * 2, "trainable bf16 copies");
    float *host = (float *)calloc(nb, sizeof(float));
    for (int i = 0; i < d->n_train; i++) memcpy(host + g->toff[i], g->train[i].host, sizeof(float) * g->train[i].n);
    cuda_upload_f32(g->tp, host, nb);
    free(host);
    cuda_f32_to_bf16(g->tp16, g->tp, (long)nb);
    cuda_memset0(g->tm, nb * 4);
    cuda_memset0(g->tv, nb * 4);
    cuda_memset0(g->tg, nb * 4);
    if (d->head_w_t >= 0) g->head_w16 = g->tp16 + g->toff[d->head_w_t];
    if (d->head_b_t >= 0) {
        g->head_b32 = g->tp + g->toff[d->head_b_t];
    } else {
        g->head_frozen32 = (float *)cuda_alloc(sizeof(float) * d->K, "frozen head bias (f32)");
        cuda_upload_f32(g->head_frozen32, d->head_b, d->K);
        g->head_b32 = g->head_frozen32;
    }

    /* activations: a dry pass sizes the arena, the real pass carves it */
    CudaArena dry;
    cuda_arena_init(&dry, 0, "dry");
    carve(g, &dry, d->max_batch);
    cuda_arena_init(&g->ar, dry.high, "ViT activations");
    carve(g, &g->ar, d->max_batch);
    g->host_img16 = (bf16 *)malloc(sizeof(bf16) * (size_t)d->max_batch * d->in_ch * d->img * d->img);
    g->B = 0;
    cuda_sync();
    return g;
}

extern "C" void cuda_vit_set_batch(CudaVit *g, const float *img, const int *labels, int B) {
    CUDA_ASSERT(B > 0 && B <= g->d.max_batch);
    if (B != g->B) { /* re-carve so the buffers are dense for this batch size (same arena, no allocation) */
        cuda_arena_reset(&g->ar);
        carve(g, &g->ar, B);
        g->B = B;
    }
    long n = (long)B * g->d.in_ch * g->d.img * g->d.img;
    for (long i = 0; i < n; i++) g->host_img16[i] = host_bf16(img[i]);
    CUDA_CHECK(cudaMemcpyAsync(g->img, g->host_img16, n * sizeof(bf16), cudaMemcpyHostToDevice, g_cuda.stream));
    CUDA_CHECK(cudaMemcpyAsync(g->labels, labels, B * sizeof(int), cudaMemcpyHostToDevice, g_cuda.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
}

static void forward(CudaVit *g) {
    const CvDesc *d = &g->d;
    int B = g->B, T = g->T, D = d->D, H = d->H, NH = d->heads;
    int BT = B * T;
    CUDA_ASSERT(B > 0);
    mark(g, PH_EMBED);
    cuda_patchify(g->patches, g->img, B, d->in_ch, d->img, d->img, d->patch);
    cuda_linear_forward(g->pe, g->patches, g->patch_w, g->patch_b, NULL, B * g->NP, d->in_ch * d->patch * d->patch, D);
    cuda_tokens_forward(g->x0, g->pe, g->cls, g->pos, B, g->NP, D);
    const bf16 *x = g->x0;
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        mark(g, PH_LN);
        cuda_layernorm_forward(g->lnbuf, b->mean1, b->rstd1, x, b->n1w, b->n1b, BT, D, d->eps);
        mark(g, PH_QKV);
        cuda_linear_forward(b->qkv, g->lnbuf, b->qkv_w, b->qkv_b, NULL, BT, D, 3 * D);
        mark(g, PH_LORA);
        for (int j = 0; j < b->n_lora; j++) {
            const CvLora *lo = &b->lora[j];
            cuda_lora_forward(b->qkv + lo->row0, 3 * D, b->xa[j], g->lnbuf, g->tp16 + g->toff[lo->tA],
                              g->tp16 + g->toff[lo->tB], BT, D, lo->m, lo->r, lo->scale);
        }
        mark(g, PH_ATTN);
        cuda_attention_forward(b->o, b->lse, b->qkv, B, T, D, NH, g->att_scratch);
        mark(g, PH_PROJ);
        cuda_linear_forward(b->x_attn, b->o, b->proj_w, b->proj_b, x, BT, D, D);
        mark(g, PH_LN);
        cuda_layernorm_forward(g->lnbuf, b->mean2, b->rstd2, b->x_attn, b->n2w, b->n2b, BT, D, d->eps);
        mark(g, PH_FC1);
        cuda_linear_forward(b->h, g->lnbuf, b->fc1_w, b->fc1_b, NULL, BT, D, H);
        mark(g, PH_GELU);
        cuda_gelu_forward(g->gbuf, b->h, (long)BT * H);
        mark(g, PH_FC2);
        cuda_linear_forward(b->x_out, g->gbuf, b->fc2_w, b->fc2_b, b->x_attn, BT, H, D);
        x = b->x_out;
    }
    mark(g, PH_HEAD);
    cuda_layernorm_forward(g->lnbuf, g->meanf, g->rstdf, x, g->norm_w, g->norm_b, BT, D, d->eps);
    cuda_token_pool_forward(g->pooled, g->lnbuf, B, T, D, d->pool);
    cuda_linear_forward_f32out(g->logits, g->pooled, g->head_w16, g->head_b32, B, D, d->K);
    cuda_xent_forward(g->probs, g->loss, NULL, g->logits, g->labels, B, d->K, 0.0f);
}

static void backward(CudaVit *g) {
    const CvDesc *d = &g->d;
    int B = g->B, T = g->T, D = d->D, H = d->H, NH = d->heads;
    int BT = B * T;
    cuda_xent_backward(g->dlogits, g->probs, g->labels, B, d->K, 0.0f, 1.0f);
    if (g->n_tp) CUDA_CHECK(cudaMemsetAsync(g->tg, 0, sizeof(float) * g->n_tp, g_cuda.stream));
    int below = g->low < d->depth;
    cuda_linear_backward(below ? g->dpooled : NULL, d->head_w_t >= 0 ? g->tg + g->toff[d->head_w_t] : NULL,
                         d->head_b_t >= 0 ? g->tg + g->toff[d->head_b_t] : NULL, g->dlogits, g->pooled, g->head_w16, B,
                         D, d->K, 0);
    if (!below) return;
    cuda_token_pool_backward(g->dln, g->dpooled, B, T, D, d->pool);
    const bf16 *x_last = g->blk[d->depth - 1].x_out;
    mark(g, PH_B_LN);
    cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, x_last, g->norm_w, g->meanf, g->rstdf, BT, D, 0);
    for (int l = d->depth - 1; l >= g->low; l--) {
        Blk *b = &g->blk[l];
        const bf16 *x_in = l ? g->blk[l - 1].x_out : g->x0;
        int want_dx = l > g->low;
        /* x_out = x_attn + fc2(gelu(fc1(ln2(x_attn)))) */
        mark(g, PH_B_FC2);
        cuda_linear_backward(g->gbuf, NULL, NULL, g->dx, NULL, b->fc2_w, BT, H, D, 0);
        mark(g, PH_B_GELU);
        cuda_gelu_backward(g->gbuf, g->gbuf, b->h, (long)BT * H, 0);
        mark(g, PH_B_FC1);
        cuda_linear_backward(g->dln, NULL, NULL, g->gbuf, NULL, b->fc1_w, BT, D, H, 0);
        mark(g, PH_B_LN);
        cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, b->x_attn, b->n2w, b->mean2, b->rstd2, BT, D, 1);
        /* x_attn = x_in + proj(attn(qkv(ln1(x_in)))) */
        mark(g, PH_B_PROJ);
        cuda_linear_backward(g->atty, NULL, NULL, g->dx, NULL, b->proj_w, BT, D, D, 0);
        mark(g, PH_B_ATTN);
        cuda_attention_backward(g->dqkv, g->atty, b->qkv, b->o, b->lse, B, T, D, NH, g->att_scratch, 0);
        mark(g, PH_B_QKV);
        if (want_dx) cuda_linear_backward(g->dln, NULL, NULL, g->dqkv, NULL, b->qkv_w, BT, D, 3 * D, 0);
        mark(g, PH_B_LN);
        if (b->n_lora) /* ln1 again, from the block input and the saved statistics' inputs */
            cuda_layernorm_forward(g->lnbuf, NULL, NULL, x_in, b->n1w, b->n1b, BT, D, d->eps);
        mark(g, PH_B_LORA);
        for (int j = 0; j < b->n_lora; j++) {
            const CvLora *lo = &b->lora[j];
            cuda_lora_backward(want_dx ? g->dln : NULL, g->tg + g->toff[lo->tA], g->tg + g->toff[lo->tB], g->dxa,
                               g->dqkv + lo->row0, 3 * D, g->lnbuf, b->xa[j], g->tp16 + g->toff[lo->tA],
                               g->tp16 + g->toff[lo->tB], BT, D, lo->m, lo->r, lo->scale);
        }
        mark(g, PH_B_LN);
        if (want_dx) cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, x_in, b->n1w, b->mean1, b->rstd1, BT, D, 1);
    }
}

static void adamw(CudaVit *g, float lr) {
    const CvDesc *d = &g->d;
    mark(g, PH_ADAMW);
    g->t++;
    float bc1 = 1.0f - powf(d->beta1, (float)g->t), bc2 = 1.0f - powf(d->beta2, (float)g->t);
    cuda_adamw(g->tp, g->tp16, g->tm, g->tv, g->tg, g->n_decay, lr, d->beta1, d->beta2, d->eps_adam, d->weight_decay,
               bc1, bc2);
    cuda_adamw(g->tp + g->n_decay, g->tp16 + g->n_decay, g->tm + g->n_decay, g->tv + g->n_decay, g->tg + g->n_decay,
               g->n_tp - g->n_decay, lr, d->beta1, d->beta2, d->eps_adam, 0.0f, bc1, bc2);
}

extern "C" void cuda_vit_forward(CudaVit *g) {
    forward(g);
    mark(g, PH_END);
    prof_collect(g);
}

extern "C" void cuda_vit_step(CudaVit *g, float lr) {
    forward(g);
    backward(g);
    adamw(g, lr);
    mark(g, PH_END);
    prof_collect(g);
}

extern "C" float cuda_vit_loss(CudaVit *g) {
    float l = 0;
    CUDA_CHECK(cudaMemcpyAsync(&l, g->loss, sizeof l, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
    return l;
}

extern "C" void cuda_vit_logits(CudaVit *g, float *logits) {
    CUDA_CHECK(cudaMemcpyAsync(logits, g->logits, sizeof(float) * g->B * g->d.K, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
}

extern "C" void cuda_vit_download(CudaVit *g) {
    cuda_sync();
    for (int i = 0; i < g->d.n_train; i++) cuda_download_f32(g->train[i].host, g->tp + g->toff[i], g->train[i].n);
}

extern "C" size_t cuda_vit_param_bytes(const CudaVit *g) {
    return g->frozen_bytes + (size_t)(g->n_tp ? g->n_tp : 64) * 18 + (g->head_frozen32 ? sizeof(float) * g->d.K : 0);
}
extern "C" size_t cuda_vit_arena_bytes(const CudaVit *g) { return g->ar.cap; }

extern "C" void cuda_vit_free(CudaVit *g) {
    if (!g) return;
    cuda_sync();
    cuda_vit_profile(g, 0);
    cuda_arena_free(&g->ar);
    cuda_free(g->frozen);
    cuda_free(g->tp);
    cuda_free(g->tg);
    cuda_free(g->tm);
    cuda_free(g->tv);
    cuda_free(g->tp16);
    cuda_free(g->head_frozen32);
    free(g->host_img16);
    free(g->toff);
    free(g->train);
    free(g->blk);
    free(g);
}
