/* methods/init_data.c */
#include "init_data.h"

#include <stdlib.h>
#include <string.h>

#include "core/cpu/xent.h"

int init_opt_double(const InitContext *ctx, const char *key, double def, double *out, Error *err) {
    *out = def;
    for (int i = 0; i + 1 < 2 * ctx->n_opts; i += 2)
        if (!strcmp(ctx->opts[i], key)) {
            char *end;
            double v = strtod(ctx->opts[i + 1], &end);
            if (end == ctx->opts[i + 1] || *end)
                return err_set(err, "method.params: '%s' is '%s', expected a number", key, ctx->opts[i + 1]);
            *out = v;
        }
    return 0;
}

const char *init_opt_string(const InitContext *ctx, const char *key, const char *def) {
    for (int i = 0; i + 1 < 2 * ctx->n_opts; i += 2)
        if (!strcmp(ctx->opts[i], key)) return ctx->opts[i + 1];
    return def;
}

int init_check_keys(const InitContext *ctx, const char *init, const char *const *keys, size_t n, Error *err) {
    for (int i = 0; i < ctx->n_opts; i++) {
        int known = 0;
        for (size_t k = 0; k < n; k++) known |= !strcmp(ctx->opts[2 * i], keys[k]);
        if (known) continue;
        char list[512] = "";
        for (size_t k = 0, len = 0; k < n && len < sizeof list; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", keys[k]);
        return err_set(err, "method.init '%s': unknown key 'method.params.%s.%s' (expected one of %s)", init, init,
                       ctx->opts[2 * i], list);
    }
    return 0;
}

/* Tap plumbing: one SlotTapFn per slot forwards to the user callback for every adapter on that slot. */
typedef struct TapState {
    InitContext *ctx;
    InitTapFn cb;
    void *user;
    int batch_index;
} TapState;
typedef struct SlotTap {
    TapState *st;
    LinearSlot *slot;
} SlotTap;

static void slot_tap(void *p, const LinearSlot *s, const float *inp, const float *out, int N) {
    SlotTap *t = p;
    AdapterSet *set = t->st->ctx->set;
    for (int i = 0; i < set->n; i++)
        for (int k = 0; k < s->n_ad; k++)
            if (s->ad[k] == &set->a[i]) t->st->cb(t->st->user, i, inp, out, s->out, N, t->st->batch_index);
}

/* The distinct host slots of the adapters. */
static int adapter_slots(const InitContext *ctx, LinearSlot **slots) {
    int n = 0;
    for (int t = 0; t < ctx->model->n_targets; t++) {
        LinearSlot *s = ctx->model->targets[t].slot;
        int mine = 0, seen = 0;
        for (int k = 0; k < s->n_ad; k++)
            for (int i = 0; i < ctx->set->n; i++) mine |= s->ad[k] == &ctx->set->a[i];
        for (int j = 0; j < n; j++) seen |= slots[j] == s;
        if (mine && !seen) slots[n++] = s;
    }
    return n;
}

/* The index in slots (ns of them, from adapter_slots) of the slot adapter a sits on, or -1. */
static int slot_index(LinearSlot *const *slots, int ns, const Adapter *a) {
    for (int j = 0; j < ns; j++)
        for (int k = 0; k < slots[j]->n_ad; k++)
            if (slots[j]->ad[k] == a) return j;
    return -1;
}

static int need_data(const InitContext *ctx, Error *err) {
    if (!ctx->data.batch || ctx->batch <= 0)
        return err_set(err, "this initializer needs init batches of the task's training data, and none were given");
    return 0;
}

/* The taps hand initializers (N, in) rows of a linear's input; a conv slot's input is NCHW images, which EVA,
 * CorDA, CNTLoRA and ABM would misread: refuse it by name until they learn im2col rows. */
static int no_conv_targets(const InitContext *ctx, Error *err) {
    for (int i = 0; i < ctx->set->n; i++) {
        const Adapter *a = &ctx->set->a[i];
        if (a->kh > 0)
            return err_set(err, "adapter '%s' sits on a conv layer: this data-driven initializer reads linear-layer "
                                "inputs and does not support conv targets yet (use the kind's default init, or adapt "
                                "linear layers)", a->target);
    }
    return 0;
}

int init_taps(InitContext *ctx, int n_batches, InitTapFn cb, void *user, Error *err) {
    if (need_data(ctx, err) || no_conv_targets(ctx, err)) return -1;
    Model *m = ctx->model;
    LinearSlot **slots = xcalloc((size_t)m->n_targets + 1, sizeof *slots);
    int ns = adapter_slots(ctx, slots);
    TapState st = {.ctx = ctx, .cb = cb, .user = user};
    SlotTap *taps = xcalloc((size_t)ns + 1, sizeof *taps);
    for (int j = 0; j < ns; j++) {
        taps[j] = (SlotTap){.st = &st, .slot = slots[j]};
        slots[j]->tap = slot_tap;
        slots[j]->tap_ctx = &taps[j];
    }
    size_t per = (size_t)m->in_ch * m->img_h * m->img_w;
    float *x = xmalloc_aligned((size_t)ctx->batch * per * sizeof(float));
    float *logits = xmalloc((size_t)ctx->batch * m->n_classes * sizeof(float));
    int *y = xmalloc((size_t)ctx->batch * sizeof(int));
    Arena ar;
    arena_init(&ar, 1u << 20);
    int done = 0;
    for (int b = 0; b < n_batches; b++) {
        int B = ctx->data.batch(ctx->data.ctx, b, ctx->batch, x, y);
        if (B <= 0) break;
        st.batch_index = b;
        arena_reset(&ar);
        model_forward(m, logits, x, B, 0, &ar);
        done++;
    }
    for (int j = 0; j < ns; j++) slots[j]->tap = NULL, slots[j]->tap_ctx = NULL;
    arena_free(&ar);
    free(x); free(logits); free(y); free(taps); free(slots);
    if (done == 0) return err_set(err, "no init batch could be drawn (the training data is empty?)");
    return done;
}

int init_full_grads(InitContext *ctx, int n_batches, float **G, Error *err) {
    if (ctx->accel && ctx->accel->full_grads) return ctx->accel->full_grads(ctx->accel_ctx, ctx, n_batches, G, err);
    if (need_data(ctx, err)) return -1;
    Model *m = ctx->model;
    LinearSlot **slots = xcalloc((size_t)m->n_targets + 1, sizeof *slots);
    int ns = adapter_slots(ctx, slots);
    for (int j = 0; j < ns; j++) slots[j]->grad_w = xcalloc((size_t)slots[j]->in * slots[j]->out, sizeof(float));
    size_t per = (size_t)m->in_ch * m->img_h * m->img_w;
    int K = m->n_classes;
    float *x = xmalloc_aligned((size_t)ctx->batch * per * sizeof(float));
    float *logits = xmalloc((size_t)ctx->batch * K * sizeof(float)), *probs = xmalloc((size_t)ctx->batch * K * sizeof(float));
    float *dl = xmalloc((size_t)ctx->batch * K * sizeof(float));
    int *y = xmalloc((size_t)ctx->batch * sizeof(int));
    Arena ar;
    arena_init(&ar, 1u << 20);
    int done = 0;
    for (int b = 0; b < n_batches; b++) {
        int B = ctx->data.batch(ctx->data.ctx, b, ctx->batch, x, y);
        if (B <= 0) break;
        arena_reset(&ar);
        model_forward(m, logits, x, B, 0, &ar);
        xent_forward(probs, logits, y, B, K, ctx->label_smoothing, NULL);
        xent_backward(dl, probs, y, B, K, ctx->label_smoothing, 1.0f);
        model_backward(m, dl, &ar);
        done++;
    }
    for (int i = 0; i < ctx->set->n && done; i++) {
        Adapter *a = &ctx->set->a[i];
        int j = slot_index(slots, ns, a);
        ASSERT(j >= 0);
        LinearSlot *s = slots[j];
        const float *src = s->grad_w + (size_t)a->row0 * s->in;
        for (size_t k = 0; k < (size_t)a->m * a->n; k++) G[i][k] = src[k] / (float)done;
    }
    for (int j = 0; j < ns; j++) { free(slots[j]->grad_w); slots[j]->grad_w = NULL; }
    params_zero_grad(m->params);
    params_zero_grad(&ctx->set->params);
    arena_free(&ar);
    free(x); free(logits); free(probs); free(dl); free(y); free(slots);
    if (done == 0) return err_set(err, "no init batch could be drawn (the training data is empty?)");
    return done;
}

/* ---- init_input_stats on the CPU: taps, S = X^T X in double (dsyrk), c = column sums ---- */
#include <cblas.h>
#include <math.h>

typedef struct StatsState {
    InitData data;        /* the caller's */
    int last_B;           /* images in the batch being run (the wrapper records it) */
    int per_sample_max;
    InitStatsFn cb;
    void *user;
    const int *slot_of;   /* (set->n) index of each adapter's host slot */
    const AdapterSet *set;
    int cur_slot, cur_batch; /* S, c hold this slot's statistics of batch cur_batch (adapters on one slot are
                              * called one after another and share them) */
    double *X, *S, *c;    /* (N, n) double copy, (n, n), (n); n up to the widest adapter input */
    size_t X_cap;
    int failed;
    Error err;
} StatsState;

static int stats_batch(void *p, int i, int B, float *x, int *y) {
    StatsState *st = p;
    if (st->failed) return 0; /* stop drawing: the error is reported after the pass */
    st->last_B = st->data.batch(st->data.ctx, i, B, x, y);
    return st->last_B;
}

/* S, c of one slot input x (N, n), each image's rows scaled by 1 / its max |x| when asked. */
static int stats_compute(StatsState *st, const float *x, int N, int n) {
    if ((size_t)N * n > st->X_cap) {
        free(st->X);
        st->X_cap = (size_t)N * n;
        st->X = xmalloc(sizeof(double) * st->X_cap);
    }
    int T = N; /* rows per image: only per_sample_max needs them */
    if (st->per_sample_max) {
        T = st->last_B > 0 ? N / st->last_B : 0;
        if (T <= 0 || (long)T * st->last_B != N)
            return err_set(&st->err, "init_input_stats: %d input rows are not a whole number of rows for each of the "
                           "%d images", N, st->last_B);
    }
    for (int s0 = 0; s0 < N; s0 += T) { /* one image's rows (all rows without per_sample_max) */
        double mx = 0;
        for (size_t k = (size_t)s0 * n; k < (size_t)(s0 + T) * n; k++) {
            if (!isfinite(x[k]))
                return err_set(&st->err, "init_input_stats: a non-finite input %g (row %zu of %d, column %zu)",
                               (double)x[k], k / n, N, k % n);
            mx = fmax(mx, fabs((double)x[k]));
        }
        double sc = st->per_sample_max ? (mx > 0 ? 1.0 / mx : 0.0) : 1.0;
        for (size_t k = (size_t)s0 * n; k < (size_t)(s0 + T) * n; k++) st->X[k] = sc * x[k];
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, N, 1.0, st->X, n, 0.0, st->S, n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) st->S[(size_t)i * n + j] = st->S[(size_t)j * n + i];
    memset(st->c, 0, sizeof(double) * n);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < n; j++) st->c[j] += st->X[(size_t)r * n + j];
    return 0;
}

static void stats_tap(void *p, int ai, const float *x, const float *z, int ldz, int N, int batch_index);

int init_input_stats(InitContext *ctx, int n_batches, int per_sample_max, InitStatsFn cb, void *user, Error *err) {
    if (ctx->accel && ctx->accel->input_stats)
        return ctx->accel->input_stats(ctx->accel_ctx, ctx, n_batches, per_sample_max, cb, user, err);
    if (need_data(ctx, err)) return -1;
    Model *m = ctx->model;
    int nmax = 1;
    int *slot_of = xmalloc(sizeof(int) * (size_t)(ctx->set->n + 1));
    LinearSlot **slots = xcalloc((size_t)m->n_targets + 1, sizeof *slots);
    int ns = adapter_slots(ctx, slots);
    for (int i = 0; i < ctx->set->n; i++) {
        const Adapter *a = &ctx->set->a[i];
        slot_of[i] = slot_index(slots, ns, a);
        ASSERT(slot_of[i] >= 0);
        nmax = MAX(nmax, a->n);
    }
    StatsState st = {.data = ctx->data, .per_sample_max = per_sample_max, .cb = cb, .user = user,
                     .set = ctx->set, .slot_of = slot_of, .cur_slot = -1, .cur_batch = -1};
    st.S = xmalloc(sizeof(double) * (size_t)nmax * nmax);
    st.c = xmalloc(sizeof(double) * (size_t)nmax);
    InitContext wc = *ctx;
    wc.data.batch = stats_batch;
    wc.data.ctx = &st;
    wc.accel = NULL;
    int done = init_taps(&wc, n_batches, stats_tap, &st, err);
    free(st.X);
    free(st.S);
    free(st.c);
    free(slot_of);
    free(slots);
    if (done >= 0 && st.failed) {
        *err = st.err;
        return -1;
    }
    return done;
}

/* Keyed on the host slot and the batch (not on the input pointer: a model may reuse one buffer for the inputs
 * of several layers). */
static void stats_tap(void *p, int ai, const float *x, const float *z, int ldz, int N, int batch_index) {
    StatsState *st = p;
    (void)z, (void)ldz;
    if (st->failed) return;
    if (st->slot_of[ai] != st->cur_slot || batch_index != st->cur_batch) {
        st->cur_slot = -1;
        if (stats_compute(st, x, N, st->set->a[ai].n)) {
            st->failed = 1;
            return;
        }
        st->cur_slot = st->slot_of[ai];
        st->cur_batch = batch_index;
    }
    st->cb(st->user, ai, st->S, st->c, N, batch_index);
}
