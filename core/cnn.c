/* core/cnn.c: the backbones as a flat table of layers over numbered activation slots. Building appends
 * layers in torchvision's module order (so the ParamSet lists tensors as its state dict does); forward runs
 * the table in order, backward in reverse, each layer accumulating into its input's gradient slot, which is
 * how a residual branch point sums the gradients of its two consumers. */
#include "core/cnn.h"

#include <math.h>
#include <string.h>

#include "core/cpu/batchnorm.h"
#include "core/cpu/conv2d.h"
#include "core/cpu/linear.h"
#include "core/cpu/pool2d.h"
#include "core/cpu/relu.h"
#include "core/rng.h"

typedef enum { OP_CONV, OP_BN, OP_RELU, OP_ADD, OP_MAXPOOL, OP_GAP, OP_LINEAR } OpKind;

struct CnnOp {
    OpKind kind;
    int in, in2, out;  /* activation slots; in2 is ADD's second operand */
    int w, b, rm, rv;  /* parameter views, -1 when absent */
    int slot;          /* OP_CONV, OP_LINEAR: index in m->slots (the adapter slot) */
    ConvShape conv;    /* OP_CONV; B is set by each forward */
    PoolShape pool;    /* OP_MAXPOOL; likewise */
    float *mean, *rstd; /* OP_BN: saved by the last forward (arena) */
    int32_t *argmax;    /* OP_MAXPOOL: saved by the last forward (arena) */
};

struct CnnAct {
    int C, H, W;
};

/* ---- building ------------------------------------------------------------------------------------------ */

static size_t act_numel(const CnnModel *m, int slot) {
    const struct CnnAct *a = &m->acts[slot];
    return (size_t)a->C * a->H * a->W;
}

static int add_act(CnnModel *m, int C, int H, int W) {
    m->acts = xrealloc(m->acts, (size_t)(m->n_acts + 1) * sizeof *m->acts);
    m->acts[m->n_acts] = (struct CnnAct){C, H, W};
    return m->n_acts++;
}

static struct CnnOp *add_op(CnnModel *m, OpKind kind, int in, int out) {
    m->ops = xrealloc(m->ops, (size_t)(m->n_ops + 1) * sizeof *m->ops);
    struct CnnOp *op = &m->ops[m->n_ops++];
    *op = (struct CnnOp){.kind = kind, .in = in, .in2 = -1, .out = out, .w = -1, .b = -1, .rm = -1, .rv = -1,
                         .slot = -1};
    return op;
}

/* An adapter slot for the conv / linear op just added (targets point at slots once building is done). */
static void add_slot(CnnModel *m, struct CnnOp *op, int in, int out) {
    m->slots = xrealloc(m->slots, (size_t)(m->n_slots + 1) * sizeof *m->slots);
    LinearSlot *s = &m->slots[m->n_slots];
    *s = (LinearSlot){.w = op->w, .b = op->b, .in = in, .out = out, .is_conv = op->kind == OP_CONV,
                      .conv = op->conv};
    op->slot = m->n_slots++;
}

static int add_param(CnnModel *m, const char *prefix, const char *leaf, int ndim, const int64_t *shape, int decay) {
    char name[PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    return params_add(&m->params, name, ndim, shape, decay);
}

static int conv(CnnModel *m, const char *name, int in, int C_out, int k, int stride, int pad, int bias) {
    struct CnnAct x = m->acts[in];
    ConvShape s = conv2d_shape(1, x.C, x.H, x.W, C_out, k, k, stride, pad);
    int out = add_act(m, C_out, s.H_out, s.W_out);
    struct CnnOp *op = add_op(m, OP_CONV, in, out);
    op->conv = s;
    op->w = add_param(m, name, "weight", 4, (int64_t[]){C_out, x.C, k, k}, 1);
    if (bias) op->b = add_param(m, name, "bias", 1, (int64_t[]){C_out}, 0);
    add_slot(m, op, x.C * k * k, C_out);
    return out;
}

static int bnorm(CnnModel *m, const char *name, int in) {
    struct CnnAct x = m->acts[in];
    int out = add_act(m, x.C, x.H, x.W);
    struct CnnOp *op = add_op(m, OP_BN, in, out);
    int64_t c[1] = {x.C};
    op->w = add_param(m, name, "weight", 1, c, 0);
    op->b = add_param(m, name, "bias", 1, c, 0);
    op->rm = add_param(m, name, "running_mean", 1, c, 0);
    op->rv = add_param(m, name, "running_var", 1, c, 0);
    m->params.views[op->rm].trainable = 0; /* statistics, not parameters */
    m->params.views[op->rv].trainable = 0;
    return out;
}

static int relu(CnnModel *m, int in) {
    struct CnnAct x = m->acts[in];
    int out = add_act(m, x.C, x.H, x.W);
    add_op(m, OP_RELU, in, out);
    return out;
}

static int add(CnnModel *m, int a, int b) {
    struct CnnAct x = m->acts[a], y = m->acts[b];
    ASSERT(x.C == y.C && x.H == y.H && x.W == y.W);
    int out = add_act(m, x.C, x.H, x.W);
    add_op(m, OP_ADD, a, out)->in2 = b;
    return out;
}

static int maxpool(CnnModel *m, int in, int k, int stride) {
    struct CnnAct x = m->acts[in];
    PoolShape s = pool2d_shape(1, x.C, x.H, x.W, k, k, stride, 0);
    int out = add_act(m, x.C, s.H_out, s.W_out);
    add_op(m, OP_MAXPOOL, in, out)->pool = s;
    return out;
}

static int gap(CnnModel *m, int in) {
    int out = add_act(m, m->acts[in].C, 1, 1);
    add_op(m, OP_GAP, in, out);
    return out;
}

static int linear(CnnModel *m, const char *name, int in, int n_out) {
    int n_in = (int)act_numel(m, in);
    int out = add_act(m, n_out, 1, 1);
    struct CnnOp *op = add_op(m, OP_LINEAR, in, out);
    op->w = add_param(m, name, "weight", 2, (int64_t[]){n_out, n_in}, 1);
    op->b = add_param(m, name, "bias", 1, (int64_t[]){n_out}, 0);
    add_slot(m, op, n_in, n_out);
    return out;
}

/* torchvision BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). */
static int basic_block(CnnModel *m, const char *p, int x, int C_out, int stride, int bn) {
    char n[PARAM_NAME_MAX];
    snprintf(n, sizeof n, "%s.conv1", p);
    int h = conv(m, n, x, C_out, 3, stride, 1, !bn);
    if (bn) {
        snprintf(n, sizeof n, "%s.bn1", p);
        h = bnorm(m, n, h);
    }
    h = relu(m, h);
    snprintf(n, sizeof n, "%s.conv2", p);
    h = conv(m, n, h, C_out, 3, 1, 1, !bn);
    if (bn) {
        snprintf(n, sizeof n, "%s.bn2", p);
        h = bnorm(m, n, h);
    }
    int sc = x;
    if (stride != 1 || m->acts[x].C != C_out) {
        snprintf(n, sizeof n, "%s.downsample.0", p);
        sc = conv(m, n, x, C_out, 1, stride, 0, !bn);
        if (bn) {
            snprintf(n, sizeof n, "%s.downsample.1", p);
            sc = bnorm(m, n, sc);
        }
    }
    return relu(m, add(m, h, sc));
}

static void build_resnet(CnnModel *m, const CnnConfig *c) {
    int x = conv(m, "conv1", 0, c->width, 3, 1, 1, !c->batchnorm);
    if (c->batchnorm) x = bnorm(m, "bn1", x);
    x = relu(m, x);
    for (int s = 0; s < c->stages; s++)
        for (int k = 0; k < c->blocks_per_stage; k++) {
            char p[64];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, k);
            x = basic_block(m, p, x, c->width << s, s > 0 && k == 0 ? 2 : 1, c->batchnorm);
        }
    linear(m, "fc", gap(m, x), c->n_classes);
}

/* torchvision make_layers: features.<i>, i counting conv, bn, relu and maxpool modules alike. */
static void build_vgg(CnnModel *m, const CnnConfig *c) {
    int x = 0, i = 0;
    char n[32];
    for (int s = 0; s < c->stages; s++) {
        for (int k = 0; k < c->blocks_per_stage; k++) {
            snprintf(n, sizeof n, "features.%d", i++);
            x = conv(m, n, x, c->width << s, 3, 1, 1, 1);
            if (c->batchnorm) {
                snprintf(n, sizeof n, "features.%d", i++);
                x = bnorm(m, n, x);
            }
            x = relu(m, x);
            i++;
        }
        x = maxpool(m, x, 2, 2);
        i++;
    }
    linear(m, "classifier", gap(m, x), c->n_classes);
}

static int check_config(const CnnConfig *c, Error *err) {
    if (c->kind != CNN_RESNET && c->kind != CNN_VGG) return err_set(err, "cnn: unknown kind %d", (int)c->kind);
    if (c->in_ch <= 0 || c->img_h <= 0 || c->img_w <= 0 || c->n_classes <= 0 || c->width <= 0)
        return err_set(err, "cnn: in_ch %d, img %dx%d, n_classes %d, width %d: expected all > 0", c->in_ch,
                       c->img_h, c->img_w, c->n_classes, c->width);
    if (c->stages < 1 || c->stages > 8) return err_set(err, "cnn: stages = %d, expected 1..8", c->stages);
    if (c->blocks_per_stage < 1 || c->blocks_per_stage > 64)
        return err_set(err, "cnn: blocks_per_stage = %d, expected 1..64", c->blocks_per_stage);
    if (c->batchnorm != 0 && c->batchnorm != 1) return err_set(err, "cnn: batchnorm = %d, expected 0 or 1", c->batchnorm);
    if ((long)c->width << (c->stages - 1) > 65536)
        return err_set(err, "cnn: width %d doubled over %d stages exceeds 65536 channels", c->width, c->stages);
    if (c->kind == CNN_VGG && ((c->img_h >> c->stages) < 1 || (c->img_w >> c->stages) < 1))
        return err_set(err, "cnn: vgg with %d stages halves the image %d times, so img %dx%d is too small "
                       "(need at least %d)", c->stages, c->stages, c->img_h, c->img_w, 1 << c->stages);
    return 0;
}

int cnn_build(CnnModel *m, const CnnConfig *cfg, Error *err) {
    memset(m, 0, sizeof *m);
    if (check_config(cfg, err)) return -1;
    m->cfg = *cfg;
    params_init(&m->params);
    add_act(m, cfg->in_ch, cfg->img_h, cfg->img_w); /* slot 0: the input */
    if (cfg->kind == CNN_RESNET) build_resnet(m, cfg);
    else build_vgg(m, cfg);
    ASSERT(m->ops[m->n_ops - 1].kind == OP_LINEAR && m->ops[m->n_ops - 1].out == m->n_acts - 1);
    params_finalize(&m->params);
    params_alloc_grads(&m->params);
    /* adapter targets: one per slot, named as the module (the weight's name without ".weight") */
    m->targets = xcalloc((size_t)m->n_slots, sizeof *m->targets);
    for (int i = 0; i < m->n_slots; i++) {
        AdapterTarget *t = &m->targets[m->n_targets++];
        const char *wn = m->params.views[m->slots[i].w].name;
        snprintf(t->name, sizeof t->name, "%.*s", (int)(strlen(wn) - strlen(".weight")), wn);
        t->slot = &m->slots[i];
        t->row0 = 0;
        t->rows = m->slots[i].out;
    }
    m->act = xcalloc((size_t)m->n_acts, sizeof *m->act);
    m->dact = xcalloc((size_t)m->n_acts, sizeof *m->dact);
    m->inject_act = xcalloc((size_t)m->n_acts, sizeof *m->inject_act);
    return 0;
}

/* ---- pre-ReLU points ----------------------------------------------------------------------------------- */

/* The op reading activation slot a (the first one in layer order), or -1. */
static int consumer(const CnnModel *m, int a) {
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].in == a || m->ops[i].in2 == a) return i;
    return -1;
}

/* For conv op i: the activation its ReLU reads (conv -> relu or conv -> bn -> relu), or -1. */
static int pre_relu_act(const CnnModel *m, int i) {
    const struct CnnOp *op = &m->ops[i];
    if (op->kind != OP_CONV) return -1;
    int a = op->out, k = consumer(m, a);
    if (k >= 0 && m->ops[k].kind == OP_BN) a = m->ops[k].out, k = consumer(m, a);
    return k >= 0 && m->ops[k].kind == OP_RELU ? a : -1;
}

int cnn_n_pre_relu(const CnnModel *m) {
    int n = 0;
    for (int i = 0; i < m->n_ops; i++) n += pre_relu_act(m, i) >= 0;
    return n;
}

int cnn_pre_relu_point(const CnnModel *m, int j, int *slot, int *act) {
    for (int i = 0, n = 0; i < m->n_ops && j >= 0; i++) {
        int a = pre_relu_act(m, i);
        if (a < 0 || n++ != j) continue;
        *slot = m->ops[i].slot;
        *act = a;
        return 0;
    }
    return -1;
}

void cnn_act_shape(const CnnModel *m, int act, int *C, int *H, int *W) {
    ASSERT(act >= 0 && act < m->n_acts);
    *C = m->acts[act].C, *H = m->acts[act].H, *W = m->acts[act].W;
}

void cnn_init_params(CnnModel *m, uint64_t seed) {
    ParamSet *ps = &m->params;
    for (int i = 0; i < m->n_ops; i++) {
        struct CnnOp *op = &m->ops[i];
        if (op->w < 0) continue;
        float *w = params_data(ps, op->w), *b = op->b >= 0 ? params_data(ps, op->b) : NULL;
        const ParamView *wv = &ps->views[op->w];
        uint64_t ws = rng_stream(wv->name, 0, 0);
        if (op->kind == OP_CONV) {
            /* kaiming_normal_(mode='fan_out', nonlinearity='relu'), as torchvision's resnet and vgg */
            double fan_out = (double)wv->shape[0] * wv->shape[2] * wv->shape[3];
            rng_fill_normal(w, wv->numel, 0.0f, (float)sqrt(2.0 / fan_out), seed, ws);
            if (b) memset(b, 0, ps->views[op->b].numel * sizeof(float));
        } else if (op->kind == OP_BN) {
            int C = (int)wv->numel;
            float *rm = params_data(ps, op->rm), *rv = params_data(ps, op->rv);
            for (int c = 0; c < C; c++) w[c] = 1.0f, b[c] = 0.0f, rm[c] = 0.0f, rv[c] = 1.0f;
        } else if (op->kind == OP_LINEAR) {
            /* nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in); bias alike */
            float bound = (float)(1.0 / sqrt((double)wv->shape[1]));
            rng_fill_uniform(w, wv->numel, -bound, bound, seed, ws);
            rng_fill_uniform(b, ps->views[op->b].numel, -bound, bound, seed,
                             rng_stream(ps->views[op->b].name, 0, 0));
        }
    }
}

/* ---- forward / backward ------------------------------------------------------------------------------- */

static float *data_or_null(const ParamSet *ps, int idx) { return idx >= 0 ? params_data(ps, idx) : NULL; }
static float *grad_or_null(const ParamSet *ps, int idx) { return idx >= 0 ? params_grad(ps, idx) : NULL; }

void cnn_forward(CnnModel *m, float *logits, const float *x, int B, int train, Arena *a) {
    ASSERT(B > 0 && m->params.finalized);
    const ParamSet *ps = &m->params;
    m->B = B;
    m->train = train;
    size_t scratch = 0;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == OP_CONV) {
            m->ops[i].conv.B = B;
            scratch = MAX(scratch, conv2d_scratch_floats(m->ops[i].conv));
        }
    m->col_scratch = arena_floats(a, scratch);
    m->col_scratch_floats = scratch;
    m->act[0] = (float *)x; /* read only: nothing writes slot 0 */
    for (int i = 1; i < m->n_acts - 1; i++) m->act[i] = arena_floats(a, (size_t)B * act_numel(m, i));
    m->act[m->n_acts - 1] = logits;

    for (int i = 0; i < m->n_ops; i++) {
        struct CnnOp *op = &m->ops[i];
        const struct CnnAct *sh = &m->acts[op->in];
        float *out = m->act[op->out];
        const float *in = m->act[op->in];
        size_t n = (size_t)B * act_numel(m, op->in);
        float *w = data_or_null(ps, op->w), *b = data_or_null(ps, op->b);
        switch (op->kind) {
        case OP_CONV: {
            LinearSlot *sl = &m->slots[op->slot];
            sl->conv.B = B;
            conv_slot_forward(sl, ps, out, m->col_scratch, in, B, a);
            break;
        }
        case OP_BN: {
            BatchNormShape s = batchnorm_shape(B, sh->C, sh->H * sh->W);
            op->mean = arena_floats(a, (size_t)sh->C);
            op->rstd = arena_floats(a, (size_t)sh->C);
            if (train)
                batchnorm_forward_train(out, op->mean, op->rstd, params_data(ps, op->rm), params_data(ps, op->rv),
                                        in, w, b, s);
            else
                batchnorm_forward_frozen(out, op->mean, op->rstd, in, w, b, params_data(ps, op->rm),
                                         params_data(ps, op->rv), s);
            break;
        }
        case OP_RELU: relu_forward(out, in, n); break;
        case OP_ADD: {
            const float *in2 = m->act[op->in2];
#pragma omp parallel for schedule(static) if (n > 65536)
            for (size_t j = 0; j < n; j++) out[j] = in[j] + in2[j];
            break;
        }
        case OP_MAXPOOL:
            op->pool.B = B;
            op->argmax = arena_alloc(a, (size_t)B * act_numel(m, op->out) * sizeof(int32_t));
            maxpool2d_forward(out, op->argmax, in, op->pool);
            break;
        case OP_GAP: global_avgpool_forward(out, in, B, sh->C, sh->H * sh->W); break;
        case OP_LINEAR: linear_slot_forward(&m->slots[op->slot], ps, out, in, B, a); break;
        }
    }
}

void cnn_backward(CnnModel *m, const float *dlogits, Arena *a) {
    ASSERTF(m->B > 0, "cnn_backward without a forward");
    const ParamSet *ps = &m->params;
    int B = m->B, last = m->n_acts - 1;
    for (int i = 0; i < m->n_ops; i++) /* the scratch size follows the OpenMP thread count */
        if (m->ops[i].kind == OP_CONV)
            ASSERTF(conv2d_scratch_floats(m->ops[i].conv) <= m->col_scratch_floats,
                    "cnn_backward: the thread count changed since cnn_forward");
    m->dact[0] = NULL; /* no gradient for the input image */
    for (int i = 1; i < m->n_acts; i++) {
        m->dact[i] = arena_zeros(a, (size_t)B * act_numel(m, i));
        /* an injected gradient: its producer runs backward after every consumer has added to dact[i] */
        if (m->inject_act[i]) memcpy(m->dact[i], m->inject_act[i], (size_t)B * act_numel(m, i) * sizeof(float));
    }
    memcpy(m->dact[last], dlogits, (size_t)B * act_numel(m, last) * sizeof(float));

    for (int i = m->n_ops - 1; i >= 0; i--) {
        struct CnnOp *op = &m->ops[i];
        const struct CnnAct *sh = &m->acts[op->in];
        float *din = m->dact[op->in];
        const float *dout = m->dact[op->out], *in = m->act[op->in];
        size_t n = (size_t)B * act_numel(m, op->in);
        const float *w = data_or_null(ps, op->w);
        float *dw = grad_or_null(ps, op->w), *db = grad_or_null(ps, op->b);
        ASSERT(din || op->kind == OP_CONV); /* only a conv reads the image */
        switch (op->kind) {
        case OP_CONV: conv_slot_backward(&m->slots[op->slot], ps, din, m->col_scratch, dout, in, B, a); break;
        case OP_BN:
            batchnorm_backward(din, dw, db, dout, in, w, op->mean, op->rstd, m->train,
                               batchnorm_shape(B, sh->C, sh->H * sh->W));
            break;
        case OP_RELU: relu_backward(din, dout, m->act[op->out], n); break;
        case OP_ADD: {
            float *din2 = m->dact[op->in2];
#pragma omp parallel for schedule(static) if (n > 65536)
            for (size_t j = 0; j < n; j++) din[j] += dout[j], din2[j] += dout[j];
            break;
        }
        case OP_MAXPOOL: maxpool2d_backward(din, dout, op->argmax, op->pool); break;
        case OP_GAP: global_avgpool_backward(din, dout, B, sh->C, sh->H * sh->W); break;
        case OP_LINEAR: linear_slot_backward(&m->slots[op->slot], ps, din, dout, in, B, a); break;
        }
    }
}

void cnn_free(CnnModel *m) {
    params_free(&m->params);
    free(m->ops);
    free(m->acts);
    free(m->act);
    free(m->dact);
    free(m->inject_act);
    free(m->slots);
    free(m->targets);
    memset(m, 0, sizeof *m);
}
