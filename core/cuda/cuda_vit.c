/* core/cuda/cuda_vit.c: the C side of the CUDA ViT: checks that a CPU ViT + AdapterSet is something the GPU
 * step supports and describes it (CvDesc) for core/cuda/cuda_vit.cu. Reads the ParamSets' fields directly
 * (no calls into ll_core, which links this library). */
#include "cuda_vit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PDATA(ps, i) ((ps)->data + (ps)->views[i].offset)

static int fail(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Error *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* The trainable view i of ps: its host tensor, and (with opt) its gradient and AdamW state. */
static int add_train(CvDesc *d, int cap, const ParamSet *ps, int i, const Optimizer *opt, int decay) {
    if (d->n_train == cap) return -1;
    const ParamView *v = &ps->views[i];
    CvTrain t = {.host = ps->data + v->offset, .n = (long)v->numel, .decay = decay};
    if (opt && v->goff >= 0) {
        if (ps->grad) t.host_grad = ps->grad + v->goff;
        for (int s = 0; s < opt->n_sets; s++)
            if (opt->sets[s] == ps) {
                t.host_m = opt->m[s] ? opt->m[s] + v->goff : NULL;
                t.host_v = opt->v[s] ? opt->v[s] + v->goff : NULL;
            }
    }
    d->train[d->n_train] = t;
    return d->n_train++;
}

/* Checks and describes; with create = 0 stops after the checks (no GPU touched). */
static CudaVit *build(const ViT *m, const AdapterSet *ad, int max_batch, const OptConfig *oc, const Optimizer *opt,
                      float smoothing, int create, int skip_adapters, int infer_only, Error *err) {
    const ViTConfig *c = &m->cfg;
    const ParamSet *ps = &m->params;
    if (oc->kind != OPT_ADAMW) { fail(err, "cuda_vit: only AdamW is implemented on the GPU (optimizer kind %d)", oc->kind); return NULL; }
    if (oc->clip_norm > 0) { fail(err, "cuda_vit: gradient clipping (clip_norm %g) is not implemented on the GPU; set it to 0", oc->clip_norm); return NULL; }
    if (max_batch <= 0) { fail(err, "cuda_vit: max_batch %d must be positive", max_batch); return NULL; }
    int head_w = m->head.w, head_b = m->head.b;
    if ((m->head.n_ad || m->patch_slot.n_ad) && !skip_adapters) {
        fail(err, "cuda_vit: adapter '%s' is on the head or the patch embedding; the GPU step supports LoRA on "
                  "blocks.i.attn.qkv:q|k|v only", (m->head.n_ad ? m->head.ad[0] : m->patch_slot.ad[0])->target);
        return NULL;
    }
    for (int i = 0; i < ps->n; i++)
        if (ps->views[i].trainable && i != head_w && i != head_b) {
            fail(err, "cuda_vit: backbone tensor '%s' is trainable; the GPU step trains LoRA adapters and the head only "
                      "(freeze it, or train on the CPU)", ps->views[i].name);
            return NULL;
        }
    CvDesc d;
    memset(&d, 0, sizeof d);
    d.img = c->img_size; d.in_ch = c->in_ch; d.patch = c->patch; d.D = c->dim; d.depth = c->depth;
    d.heads = c->heads; d.H = c->mlp_hidden; d.K = c->n_classes; d.pool = c->pool == POOL_MEAN; d.eps = c->ln_eps;
    d.max_batch = max_batch;
    d.infer_only = infer_only;
    d.beta1 = oc->beta1 != 0 ? oc->beta1 : 0.9f;
    d.beta2 = oc->beta2 != 0 ? oc->beta2 : 0.999f;
    d.eps_adam = oc->eps != 0 ? oc->eps : 1e-8f;
    d.weight_decay = oc->weight_decay;
    d.label_smoothing = smoothing;
    d.adam_t = opt ? opt->t : 0;
    d.patch_w = PDATA(ps, m->patch_w); d.patch_b = PDATA(ps, m->patch_b);
    d.cls = PDATA(ps, m->cls); d.pos = PDATA(ps, m->pos);
    d.norm_w = PDATA(ps, m->norm_w); d.norm_b = PDATA(ps, m->norm_b);
    d.head_w = PDATA(ps, head_w); d.head_b = head_b >= 0 ? PDATA(ps, head_b) : NULL;
    if (head_b < 0) { fail(err, "cuda_vit: the head has no bias"); return NULL; }
    int cap = 2 * (ad ? ad->n : 0) + 2;
    d.train = calloc((size_t)cap, sizeof *d.train);
    d.blocks = calloc((size_t)c->depth, sizeof *d.blocks);
    if (!d.train || !d.blocks) { fail(err, "cuda_vit: out of host memory"); free(d.train); free(d.blocks); return NULL; }
    d.head_w_t = d.head_b_t = -1;
    if (ps->views[head_w].trainable)
        d.head_w_t = add_train(&d, cap, ps, head_w, opt, oc->decay_all || ps->views[head_w].decay);
    if (ps->views[head_b].trainable)
        d.head_b_t = add_train(&d, cap, ps, head_b, opt, oc->decay_all || ps->views[head_b].decay);
    for (int l = 0; l < c->depth; l++) {
        const ViTBlock *b = &m->blocks[l];
        CvBlock *cb = &d.blocks[l];
        cb->n1w = PDATA(ps, b->n1w); cb->n1b = PDATA(ps, b->n1b); cb->n2w = PDATA(ps, b->n2w); cb->n2b = PDATA(ps, b->n2b);
        cb->qkv_w = PDATA(ps, b->qkv.w); cb->qkv_b = PDATA(ps, b->qkv.b);
        cb->proj_w = PDATA(ps, b->proj.w); cb->proj_b = PDATA(ps, b->proj.b);
        cb->fc1_w = PDATA(ps, b->fc1.w); cb->fc1_b = PDATA(ps, b->fc1.b);
        cb->fc2_w = PDATA(ps, b->fc2.w); cb->fc2_b = PDATA(ps, b->fc2.b);
        const LinearSlot *others[4] = {&b->proj, &b->fc1, &b->fc2, NULL};
        for (int k = 0; others[k] && !skip_adapters; k++)
            if (others[k]->n_ad) {
                fail(err, "cuda_vit: block %d has an adapter on proj/fc1/fc2 ('%s'); the GPU step supports LoRA on "
                          "blocks.i.attn.qkv:q|k|v only", l, others[k]->ad[0]->target);
                goto bad;
            }
        for (int i = 0; i < b->qkv.n_ad && !skip_adapters; i++) {
            const Adapter *a = b->qkv.ad[i];
            if (strcmp(a->kind->name, "lora") != 0 || a->m != c->dim) {
                fail(err, "cuda_vit: adapter '%s' is of kind '%s' on %d rows; the GPU step supports kind 'lora' on one "
                          "of q, k, v (%d rows)", a->target, a->kind->name, a->m, c->dim);
                goto bad;
            }
            const ParamSet *aps = a->ps;
            int tA = a->t[0], tB = a->t[1]; /* methods/lora.h: LORA_A = 0, LORA_B = 1 */
            if (!aps->views[tA].trainable || !aps->views[tB].trainable) {
                fail(err, "cuda_vit: adapter '%s' has a frozen factor; the GPU step trains both lora_A and lora_B",
                     a->target);
                goto bad;
            }
            CvLora *lo = &cb->lora[cb->n_lora++];
            lo->row0 = a->row0; lo->m = a->m; lo->r = a->r; lo->scale = a->scale;
            lo->tA = add_train(&d, cap, aps, tA, opt, oc->decay_all || aps->views[tA].decay);
            lo->tB = add_train(&d, cap, aps, tB, opt, oc->decay_all || aps->views[tB].decay);
            if (lo->tA < 0 || lo->tB < 0) { fail(err, "cuda_vit: more adapters on the model than in the AdapterSet"); goto bad; }
        }
    }
    if (!create) { /* checks passed: a non-NULL marker, never dereferenced */
        free(d.train);
        free(d.blocks);
        return (CudaVit *)m;
    }
    char msg[256] = "";
    CudaVit *g = cuda_vit_create_desc(&d, msg);
    if (!g) fail(err, "%s", msg);
    free(d.train);
    free(d.blocks);
    return g;
bad:
    free(d.train);
    free(d.blocks);
    return NULL;
}

CudaVit *cuda_vit_create(const ViT *m, const AdapterSet *ad, int max_batch, const OptConfig *oc, Error *err) {
    return build(m, ad, max_batch, oc, NULL, 0.0f, 1, 0, 0, err);
}

CudaVit *cuda_vit_create_opt(const ViT *m, const AdapterSet *ad, int max_batch, const Optimizer *opt,
                             float label_smoothing, Error *err) {
    return build(m, ad, max_batch, &opt->cfg, opt, label_smoothing, 1, 0, 0, err);
}

int cuda_vit_check(const ViT *m, const AdapterSet *ad, const OptConfig *oc, Error *err) {
    return build(m, ad, 1, oc, NULL, 0.0f, 0, 0, 0, err) ? 0 : -1;
}

CudaVit *cuda_vit_create_init(const ViT *m, const AdapterSet *ad, int with_adapters, int infer_only, int max_batch,
                              float label_smoothing, Error *err) {
    OptConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPT_ADAMW;
    return build(m, ad, max_batch, &oc, NULL, label_smoothing, 1, !with_adapters, infer_only, err);
}

/* As host_bf16 in cuda_vit.cu (round to nearest even; Inf and NaN keep their top bits), in parallel. */
void cuda_vit_host_bf16(uint16_t *dst, const float *src, long n);
void cuda_vit_host_bf16(uint16_t *dst, const float *src, long n) {
#pragma omp parallel for schedule(static) if (n > (1L << 18))
    for (long i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
        dst[i] = (uint16_t)(u >> 16);
    }
}
