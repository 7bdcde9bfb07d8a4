/* core/vit.c: ViT forward/backward as a sequence of the CPU layer calls (llm.c style). */
#include "vit.h"

#include <math.h>
#include <string.h>

#include "cpu/activations.h"
#include "cpu/attention.h"
#include "cpu/layernorm.h"
#include "cpu/linear.h"
#include "rng.h"

static int add2(ParamSet *ps, const char *name, int64_t a, int64_t b, int decay) {
    int64_t s[2] = {a, b};
    return params_add(ps, name, 2, s, decay);
}
static int add1(ParamSet *ps, const char *name, int64_t a) {
    int64_t s[1] = {a};
    return params_add(ps, name, 1, s, 0);
}
static LinearSlot add_linear(ParamSet *ps, const char *prefix, int in, int out) {
    char n[PARAM_NAME_MAX];
    LinearSlot s = {.in = in, .out = out};
    snprintf(n, sizeof n, "%s.weight", prefix);
    s.w = add2(ps, n, out, in, 1);
    snprintf(n, sizeof n, "%s.bias", prefix);
    s.b = add1(ps, n, out);
    return s;
}
static void add_target(ViT *m, const char *name, LinearSlot *slot, int row0, int rows) {
    AdapterTarget *t = &m->targets[m->n_targets++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->slot = slot;
    t->row0 = row0;
    t->rows = rows;
}

int vit_build(ViT *m, const ViTConfig *c, Error *err) {
    memset(m, 0, sizeof *m);
    if (c->patch <= 0 || c->img_size <= 0 || c->img_size % c->patch)
        return err_set(err, "vit: img_size %d must be a positive multiple of patch %d", c->img_size, c->patch);
    if (c->dim <= 0 || c->heads <= 0 || c->dim % c->heads)
        return err_set(err, "vit: dim %d must be a positive multiple of heads %d", c->dim, c->heads);
    if (c->depth <= 0 || c->mlp_hidden <= 0 || c->n_classes <= 0 || c->in_ch <= 0)
        return err_set(err, "vit: depth (%d), mlp_hidden (%d), n_classes (%d), in_ch (%d) must be positive",
                       c->depth, c->mlp_hidden, c->n_classes, c->in_ch);
    m->cfg = *c;
    if (m->cfg.ln_eps <= 0) m->cfg.ln_eps = 1e-6f;
    int D = c->dim, g = c->img_size / c->patch;
    m->NP = g * g;
    m->T = m->NP + 1;
    ParamSet *ps = &m->params;
    params_init(ps);
    int64_t pw[4] = {D, c->in_ch, c->patch, c->patch}, cls[3] = {1, 1, D}, pos[3] = {1, m->T, D};
    m->patch_w = params_add(ps, "patch_embed.proj.weight", 4, pw, 1);
    m->patch_b = add1(ps, "patch_embed.proj.bias", D);
    m->patch_slot = (LinearSlot){.w = m->patch_w, .b = m->patch_b, .in = c->in_ch * c->patch * c->patch, .out = D};
    m->cls = params_add(ps, "cls_token", 3, cls, 0);
    m->pos = params_add(ps, "pos_embed", 3, pos, 0);
    m->blocks = xcalloc((size_t)c->depth, sizeof *m->blocks);
    m->targets = xcalloc((size_t)c->depth * 7 + 1, sizeof *m->targets);
    char n[PARAM_NAME_MAX];
    for (int l = 0; l < c->depth; l++) {
        ViTBlock *b = &m->blocks[l];
        snprintf(n, sizeof n, "blocks.%d.norm1.weight", l); b->n1w = add1(ps, n, D);
        snprintf(n, sizeof n, "blocks.%d.norm1.bias", l);   b->n1b = add1(ps, n, D);
        snprintf(n, sizeof n, "blocks.%d.attn.qkv", l);     b->qkv = add_linear(ps, n, D, 3 * D);
        snprintf(n, sizeof n, "blocks.%d.attn.proj", l);    b->proj = add_linear(ps, n, D, D);
        snprintf(n, sizeof n, "blocks.%d.norm2.weight", l); b->n2w = add1(ps, n, D);
        snprintf(n, sizeof n, "blocks.%d.norm2.bias", l);   b->n2b = add1(ps, n, D);
        snprintf(n, sizeof n, "blocks.%d.mlp.fc1", l);      b->fc1 = add_linear(ps, n, D, c->mlp_hidden);
        snprintf(n, sizeof n, "blocks.%d.mlp.fc2", l);      b->fc2 = add_linear(ps, n, c->mlp_hidden, D);
    }
    m->norm_w = add1(ps, "norm.weight", D);
    m->norm_b = add1(ps, "norm.bias", D);
    m->head = add_linear(ps, "head", D, c->n_classes);
    params_finalize(ps);
    params_alloc_grads(ps);
    for (int l = 0; l < c->depth; l++) {
        ViTBlock *b = &m->blocks[l];
        static const char *qkv_names[3] = {"q", "k", "v"};
        snprintf(n, sizeof n, "blocks.%d.attn.qkv", l); add_target(m, n, &b->qkv, 0, 3 * D);
        for (int j = 0; j < 3; j++) {
            snprintf(n, sizeof n, "blocks.%d.attn.qkv:%s", l, qkv_names[j]);
            add_target(m, n, &b->qkv, j * D, D);
        }
        snprintf(n, sizeof n, "blocks.%d.attn.proj", l); add_target(m, n, &b->proj, 0, D);
        snprintf(n, sizeof n, "blocks.%d.mlp.fc1", l);   add_target(m, n, &b->fc1, 0, c->mlp_hidden);
        snprintf(n, sizeof n, "blocks.%d.mlp.fc2", l);   add_target(m, n, &b->fc2, 0, D);
    }
    add_target(m, "head", &m->head, 0, c->n_classes);
    return 0;
}

void vit_init_params(ViT *m, uint64_t seed) {
    ParamSet *ps = &m->params;
    int torch = m->cfg.init_torch;
    for (int i = 0; i < ps->n; i++) {
        ParamView *v = &ps->views[i];
        float *x = params_data(ps, i);
        uint64_t st = rng_stream(v->name, 0, 0);
        size_t len = strlen(v->name);
        int is_weight = len > 7 && strcmp(v->name + len - 7, ".weight") == 0;
        /* fan_in of a Linear/Conv weight is numel / out; its bias shares the weight's fan_in */
        const ParamView *w = is_weight || i == 0 ? v : &ps->views[i - 1];
        float fan_in = w->ndim ? (float)w->numel / (float)w->shape[0] : 1.0f;
        if (i == m->patch_w || i == m->patch_b) { /* PyTorch Conv2d default in both styles: U(+-1/sqrt(fan_in)) */
            float bound = 1.0f / sqrtf((float)m->patch_slot.in);
            rng_fill_uniform(x, v->numel, -bound, bound, seed, st);
        } else if (i == m->cls) {
            if (torch) memset(x, 0, v->numel * sizeof(float));
            else rng_fill_normal(x, v->numel, 0.0f, 1e-6f, seed, st);
        } else if (i == m->pos) {
            if (torch) rng_fill_normal(x, v->numel, 0.0f, 0.02f, seed, st);
            else rng_fill_trunc_normal(x, v->numel, 0.0f, 0.02f, -2.0f, 2.0f, seed, st);
        } else if (strstr(v->name, "norm")) {
            for (size_t k = 0; k < v->numel; k++) x[k] = is_weight ? 1.0f : 0.0f;
        } else if (torch) { /* kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in)) for weights, same bound for biases */
            float bound = 1.0f / sqrtf(fan_in);
            rng_fill_uniform(x, v->numel, -bound, bound, seed, st);
        } else if (is_weight) {
            rng_fill_trunc_normal(x, v->numel, 0.0f, 0.02f, -2.0f, 2.0f, seed, st);
        } else {
            memset(x, 0, v->numel * sizeof(float));
        }
    }
}

static const float *P(const ViT *m, int idx) { return params_data(&m->params, idx); }

void vit_forward(ViT *m, float *logits, const float *img, int B, Arena *ar) {
    const ViTConfig *c = &m->cfg;
    int D = c->dim, T = m->T, NP = m->NP, H = c->mlp_hidden;
    long BT = (long)B * T;
    m->B = B;
    m->img = img;
    m->patches = arena_floats(ar, (size_t)B * NP * m->patch_slot.in); // (B,NP,C*p*p)
    patchify(m->patches, img, B, c->in_ch, c->img_size, c->img_size, c->patch);
    m->pe = arena_floats(ar, (size_t)B * NP * D); // (B,NP,D)
    linear_slot_forward(&m->patch_slot, &m->params, m->pe, m->patches, B * NP, ar);
    m->x0 = arena_floats(ar, (size_t)BT * D); // (B,T,D)
    tokens_forward(m->x0, m->pe, P(m, m->cls), P(m, m->pos), B, NP, D);
    if (!m->acts) m->acts = xcalloc((size_t)c->depth, sizeof *m->acts);
    const float *x = m->x0;
    for (int l = 0; l < c->depth; l++) {
        ViTBlock *b = &m->blocks[l];
        ViTActs *a = &m->acts[l];
        a->ln1 = arena_floats(ar, BT * D);
        a->ln1_mean = arena_floats(ar, BT);
        a->ln1_rstd = arena_floats(ar, BT);
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, P(m, b->n1w), P(m, b->n1b), (int)BT, D, c->ln_eps);
        a->qkv = arena_floats(ar, BT * 3 * D); // (B,T,3D)
        linear_slot_forward(&b->qkv, &m->params, a->qkv, a->ln1, (int)BT, ar);
        a->att = arena_floats(ar, (size_t)B * c->heads * T * T); // (B,NH,T,T)
        a->atty = arena_floats(ar, BT * D);
        attention_forward(a->atty, a->att, a->qkv, B, T, D, c->heads, 0);
        a->x_attn = arena_floats(ar, BT * D);
        linear_slot_forward(&b->proj, &m->params, a->x_attn, a->atty, (int)BT, ar);
        add_forward(a->x_attn, a->x_attn, x, BT * D);
        a->ln2 = arena_floats(ar, BT * D);
        a->ln2_mean = arena_floats(ar, BT);
        a->ln2_rstd = arena_floats(ar, BT);
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->x_attn, P(m, b->n2w), P(m, b->n2b), (int)BT, D,
                          c->ln_eps);
        a->h = arena_floats(ar, BT * H); // (B,T,H) pre-GELU: ABM's match point
        linear_slot_forward(&b->fc1, &m->params, a->h, a->ln2, (int)BT, ar);
        a->g = arena_floats(ar, BT * H);
        gelu_forward(a->g, a->h, (size_t)(BT * H));
        a->x_out = arena_floats(ar, BT * D);
        linear_slot_forward(&b->fc2, &m->params, a->x_out, a->g, (int)BT, ar);
        add_forward(a->x_out, a->x_out, a->x_attn, BT * D);
        x = a->x_out;
    }
    m->lnf = arena_floats(ar, BT * D);
    m->lnf_mean = arena_floats(ar, BT);
    m->lnf_rstd = arena_floats(ar, BT);
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, P(m, m->norm_w), P(m, m->norm_b), (int)BT, D, c->ln_eps);
    m->pooled = arena_floats(ar, (size_t)B * D);
    token_pool_forward(m->pooled, m->lnf, B, T, D, c->pool);
    linear_slot_forward(&m->head, &m->params, logits, m->pooled, B, ar);
}

/* Does backward have to reach this slot? (trainable weights or adapters, or a requested full-weight
 * gradient or injected gradient) */
static int slot_trains(const ViT *m, const LinearSlot *s) {
    const ParamSet *ps = &m->params;
    if (ps->views[s->w].trainable || (s->b >= 0 && ps->views[s->b].trainable) || s->grad_w || s->inject) return 1;
    for (int i = 0; i < s->n_ad; i++) /* an adapter with any trainable tensor */
        for (int k = 0; k < s->ad[i]->nt; k++)
            if (s->ad[i]->ps->views[s->ad[i]->t[k]].trainable) return 1;
    return 0;
}

/* The lowest depth that still needs gradients: -1 = the embeddings, depth = nothing below the head. */
static int lowest_trainable(const ViT *m) {
    const ParamSet *ps = &m->params;
    if (slot_trains(m, &m->patch_slot) || ps->views[m->cls].trainable || ps->views[m->pos].trainable) return -1;
    for (int l = 0; l < m->cfg.depth; l++) {
        const ViTBlock *b = &m->blocks[l];
        if (ps->views[b->n1w].trainable || ps->views[b->n1b].trainable || ps->views[b->n2w].trainable ||
            ps->views[b->n2b].trainable || slot_trains(m, &b->qkv) || slot_trains(m, &b->proj) ||
            slot_trains(m, &b->fc1) || slot_trains(m, &b->fc2))
            return l;
    }
    return m->cfg.depth;
}

void vit_backward(ViT *m, const float *dlogits, Arena *ar) {
    const ViTConfig *c = &m->cfg;
    const ParamSet *ps = &m->params;
    int B = m->B, D = c->dim, T = m->T, H = c->mlp_hidden;
    long BT = (long)B * T;
    int low = lowest_trainable(m);
    int need_below_head = low < c->depth || ps->views[m->norm_w].trainable || ps->views[m->norm_b].trainable;
    float *dpooled = need_below_head ? arena_zeros(ar, (size_t)B * D) : NULL;
    linear_slot_backward(&m->head, ps, dpooled, dlogits, m->pooled, B, ar);
    if (!need_below_head) return;
    float *dlnf = arena_zeros(ar, BT * D);
    token_pool_backward(dlnf, dpooled, B, T, D, c->pool);
    const float *x_last = c->depth ? m->acts[c->depth - 1].x_out : m->x0;
    float *dx = arena_zeros(ar, BT * D); // (B,T,D): gradient w.r.t. the residual stream
    layernorm_backward(low < c->depth ? dx : NULL, params_grad(ps, m->norm_w), params_grad(ps, m->norm_b), dlnf,
                       x_last, P(m, m->norm_w), m->lnf_mean, m->lnf_rstd, (int)BT, D);
    float *dg = arena_floats(ar, BT * H), *dh = arena_floats(ar, BT * H), *dln = arena_floats(ar, BT * D);
    float *datty = arena_floats(ar, BT * D), *dqkv = arena_floats(ar, BT * 3 * D);
    for (int l = c->depth - 1; l >= 0 && l >= low; l--) {
        ViTBlock *b = &m->blocks[l];
        ViTActs *a = &m->acts[l];
        const float *x_in = l ? m->acts[l - 1].x_out : m->x0;
        int want_dx_in = l > low || low < 0; /* does anything below this block need gradients? */
        /* x_out = x_attn + fc2(gelu(fc1(ln2(x_attn)))): dx flows into x_attn directly and through the MLP */
        memset(dg, 0, BT * H * sizeof(float));
        linear_slot_backward(&b->fc2, ps, dg, dx, a->g, (int)BT, ar);
        memset(dh, 0, BT * H * sizeof(float));
        gelu_backward(dh, dg, a->h, (size_t)(BT * H));
        memset(dln, 0, BT * D * sizeof(float));
        linear_slot_backward(&b->fc1, ps, dln, dh, a->ln2, (int)BT, ar);
        layernorm_backward(dx, params_grad(ps, b->n2w), params_grad(ps, b->n2b), dln, a->x_attn, P(m, b->n2w),
                           a->ln2_mean, a->ln2_rstd, (int)BT, D);
        /* x_attn = x_in + proj(attn(qkv(ln1(x_in)))) */
        memset(datty, 0, BT * D * sizeof(float));
        linear_slot_backward(&b->proj, ps, datty, dx, a->atty, (int)BT, ar);
        memset(dqkv, 0, BT * 3 * D * sizeof(float));
        attention_backward(dqkv, datty, a->qkv, a->att, B, T, D, c->heads, 0);
        memset(dln, 0, BT * D * sizeof(float));
        linear_slot_backward(&b->qkv, ps, want_dx_in || ps->views[b->n1w].trainable ? dln : NULL, dqkv, a->ln1,
                             (int)BT, ar);
        layernorm_backward(want_dx_in ? dx : NULL, params_grad(ps, b->n1w), params_grad(ps, b->n1b), dln, x_in,
                           P(m, b->n1w), a->ln1_mean, a->ln1_rstd, (int)BT, D);
        if (!want_dx_in) return;
    }
    if (low >= 0) return;
    /* dx is now d x0: through the token assembly into the patch embedding */
    float *dpe = slot_trains(m, &m->patch_slot) ? arena_zeros(ar, (size_t)B * m->NP * D) : NULL;
    tokens_backward(dpe, params_grad(ps, m->cls), params_grad(ps, m->pos), dx, B, m->NP, D);
    if (dpe) linear_slot_backward(&m->patch_slot, ps, NULL, dpe, m->patches, B * m->NP, ar);
}

void vit_free(ViT *m) {
    params_free(&m->params);
    free(m->blocks);
    free(m->targets);
    free(m->acts);
    memset(m, 0, sizeof *m);
}
