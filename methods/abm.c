/* methods/abm.c: ABM-LoRA stage 1 (METHODS.md, "ABM-LoRA (activation boundary matching)"). */
#include "abm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double abm_boundary_loss(float *dz, const float *t, const float *z, long n, float mu, float weight) {
    double s = 0;
    float g = 2.0f * weight / (float)n;
    for (long i = 0; i < n; i++) {
        float h;
        if (t[i] > 0) {
            h = mu - z[i] > 0 ? mu - z[i] : 0; /* positive side: push z above +mu */
            if (dz) dz[i] = -g * h;
        } else {
            h = mu + z[i] > 0 ? mu + z[i] : 0; /* non-positive side: push z below -mu */
            if (dz) dz[i] = g * h;
        }
        s += (double)h * h;
    }
    return n > 0 ? weight * s / (double)n : 0.0;
}

double abm_sign_mismatch(const float *t, const float *z, long n) {
    long k = 0;
    for (long i = 0; i < n; i++) k += (z[i] > 0) != (t[i] > 0);
    return n > 0 ? (double)k / (double)n : 0.0;
}

void abm_layer_weights(AbmWeighting w, int L, float *lambda) {
    for (int l = 1; l <= L; l++) {
        double f = (double)l / L;
        lambda[l - 1] = (float)(w == ABM_UNIFORM ? 1.0 : w == ABM_LINEAR ? f : f * f);
    }
}

int abm_weighting_parse(const char *s, AbmWeighting *w, Error *err) {
    if (!strcmp(s, "uniform")) *w = ABM_UNIFORM;
    else if (!strcmp(s, "linear")) *w = ABM_LINEAR;
    else if (!strcmp(s, "quadratic") || !strcmp(s, "sequential")) *w = ABM_QUADRATIC;
    else return err_set(err, "abm weighting '%s': expected uniform, linear, quadratic or sequential", s);
    return 0;
}

static int parse_count(const char *p, int *k) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end || v <= 0) return -1;
    *k = (int)v;
    return 0;
}

int abm_parse_layers(const char *spec, int depth, int *layers, Error *err) {
    int k, L = 0;
    if (!strcmp(spec, "all")) {
        for (int i = 0; i < depth; i++) layers[L++] = i;
        return L;
    }
    int last = !strncmp(spec, "last:", 5) || spec[0] == 'L', first = !strncmp(spec, "first:", 6) || spec[0] == 'F';
    if (last || first) {
        const char *p = strchr(spec, ':') ? strchr(spec, ':') + 1 : spec + 1;
        if (parse_count(p, &k) || k > depth)
            return err_set(err, "abm layers '%s': expected a count 1..%d after '%s'", spec, depth,
                           last ? "last:" : "first:");
        for (int i = 0; i < k; i++) layers[L++] = last ? depth - k + i : i;
        return L;
    }
    char *mark = xcalloc((size_t)depth, 1);
    const char *p = spec;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p) goto bad;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1) goto bad;
            p = end;
        }
        if (a < 0 || b >= depth || a > b) goto bad;
        for (long i = a; i <= b; i++) mark[i] = 1;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') p++;
        else if (*p) goto bad;
    }
    for (int i = 0; i < depth; i++) if (mark[i]) layers[L++] = i;
    free(mark);
    if (L == 0) return err_set(err, "abm layers '%s' selects no match point", spec);
    return L;
bad:
    free(mark);
    return err_set(err, "abm layers '%s': expected all, last:K, first:K or a list of match points / ranges in 0..%d "
                        "like '0,2,4-5'", spec, depth - 1);
}

/* ---- match points --------------------------------------------------------------------------------------- */

int abm_n_points(const Model *m) {
    return m->family == MODEL_VIT ? m->u.vit.cfg.depth : cnn_n_pre_relu(&m->u.cnn);
}

/* Point j: the ViT's fc1 slot (taps read its output), or the CNN's conv slot and the activation its ReLU reads. */
static LinearSlot *point(Model *m, int j, int *act) {
    *act = -1;
    if (m->family == MODEL_VIT) return &m->u.vit.blocks[j].fc1;
    int slot;
    ASSERTF(cnn_pre_relu_point(&m->u.cnn, j, &slot, act) == 0, "abm: no match point %d", j);
    return &m->u.cnn.slots[slot];
}

long abm_point_units(const Model *m, int j) {
    if (m->family == MODEL_VIT) return (long)m->u.vit.T * m->u.vit.cfg.mlp_hidden;
    int slot, act, C, H, W;
    ASSERTF(cnn_pre_relu_point(&m->u.cnn, j, &slot, &act) == 0, "abm: no match point %d", j);
    cnn_act_shape(&m->u.cnn, act, &C, &H, &W);
    return (long)C * H * W;
}

void abm_point_name(const Model *m, int j, char *buf, size_t cap) {
    if (m->family == MODEL_VIT) {
        snprintf(buf, cap, "blocks.%d.mlp.fc1", j);
        return;
    }
    int slot, act;
    ASSERTF(cnn_pre_relu_point(&m->u.cnn, j, &slot, &act) == 0, "abm: no match point %d", j);
    snprintf(buf, cap, "%s", m->u.cnn.targets[slot].name);
}

/* ---- capture: ViT taps copy a slot's output; the CNN's pre-ReLU values are read after the forward ---- */
typedef struct AbmTap {
    float *dst;
    size_t cap; /* floats */
    int N;
} AbmTap;

static void abm_tap(void *p, const LinearSlot *s, const float *inp, const float *out, int N) {
    (void)inp;
    AbmTap *t = p;
    ASSERT(!s->is_conv && (size_t)N * s->out <= t->cap);
    memcpy(t->dst, out, (size_t)N * s->out * sizeof(float));
    t->N = N;
}

/* The eval-mode forward of x with point layers[j]'s pre-activation copied to dst[j] (B * units floats). */
static void forward_capture(Model *m, const int *layers, int L, float *const *dst, const float *x, int B, Arena *ar) {
    float *logits = arena_floats(ar, (size_t)B * m->n_classes);
    if (m->family == MODEL_CNN) {
        model_forward(m, logits, x, B, 0, ar);
        for (int j = 0; j < L; j++) {
            int act;
            point(m, layers[j], &act);
            memcpy(dst[j], m->u.cnn.act[act], (size_t)B * abm_point_units(m, layers[j]) * sizeof(float));
        }
        return;
    }
    AbmTap *taps = xcalloc((size_t)L, sizeof *taps);
    for (int j = 0; j < L; j++) {
        int act;
        LinearSlot *s = point(m, layers[j], &act);
        taps[j] = (AbmTap){.dst = dst[j], .cap = (size_t)B * abm_point_units(m, layers[j])};
        s->tap = abm_tap;
        s->tap_ctx = &taps[j];
    }
    model_forward(m, logits, x, B, 0, ar);
    for (int j = 0; j < L; j++) {
        int act;
        LinearSlot *s = point(m, layers[j], &act);
        s->tap = NULL, s->tap_ctx = NULL;
        ASSERT(taps[j].N == B * m->u.vit.T);
    }
    free(taps);
}

/* Injected gradients dz[j] at the points for the next model_backward (NULL: remove them). */
static void set_inject(Model *m, const int *layers, int L, float *const *dz) {
    for (int j = 0; j < L; j++) {
        int act;
        LinearSlot *s = point(m, layers[j], &act);
        if (m->family == MODEL_CNN) m->u.cnn.inject_act[act] = dz ? dz[j] : NULL;
        else s->inject = dz ? dz[j] : NULL;
    }
}

static int in_set(const AdapterSet *s, const Adapter *a) { return s && s->a && a >= s->a && a < s->a + s->n; }

void abm_detach(AdapterSet *set, Model *m) {
    for (int t = 0; t < m->n_targets; t++) {
        LinearSlot *s = m->targets[t].slot;
        int w = 0;
        for (int i = 0; i < s->n_ad; i++)
            if (!in_set(set, s->ad[i])) s->ad[w++] = s->ad[i];
        s->n_ad = w;
    }
}

int abm_teacher_acts(Model *m, const AdapterSet *student, const AdapterSet *teacher, const int *layers, int L,
                     const float *x, int B, float *const *t, Arena *ar, Error *err) {
    int nt = m->n_targets;
    /* save every slot's adapter list, take the student's off, put the teacher's on (by target name) */
    typedef struct { Adapter *ad[SLOT_MAX_ADAPTERS]; int n_ad; } SlotSave;
    SlotSave *save = xcalloc((size_t)nt, sizeof *save);
    for (int i = 0; i < nt; i++) {
        LinearSlot *s = m->targets[i].slot;
        memcpy(save[i].ad, s->ad, sizeof s->ad);
        save[i].n_ad = s->n_ad;
    }
    Adapter *tcopy = teacher && teacher->n ? xcalloc((size_t)teacher->n, sizeof *tcopy) : NULL;
    int rc = 0;
    for (int i = 0; i < nt; i++) {
        LinearSlot *s = m->targets[i].slot;
        int w = 0;
        for (int k = 0; k < s->n_ad; k++)
            if (!in_set(student, s->ad[k])) s->ad[w++] = s->ad[k];
        s->n_ad = w;
    }
    for (int i = 0; teacher && i < teacher->n && rc == 0; i++) {
        const Adapter *a = &teacher->a[i];
        const AdapterTarget *tg = NULL;
        for (int k = 0; k < nt && !tg; k++)
            if (!strcmp(m->targets[k].name, a->target)) tg = &m->targets[k];
        if (!tg) {
            rc = err_set(err, "abm teacher adapter '%s': the model has no such layer", a->target);
            break;
        }
        LinearSlot *s = tg->slot;
        if (tg->rows != a->m || s->in != a->n || tg->row0 != a->row0) {
            rc = err_set(err, "abm teacher adapter '%s': shape %d x %d, the layer is %d x %d", a->target, a->m, a->n,
                         tg->rows, s->in);
            break;
        }
        if (s->n_ad >= SLOT_MAX_ADAPTERS) {
            rc = err_set(err, "abm teacher adapter '%s': the layer already holds %d adapters", a->target, s->n_ad);
            break;
        }
        tcopy[i] = *a; /* a copy: the teacher set stays const; its W0/bias are this model's */
        tcopy[i].W0 = params_data(m->params, s->w) + (long)a->row0 * s->in;
        tcopy[i].bias = s->b >= 0 ? params_data(m->params, s->b) + a->row0 : NULL;
        s->ad[s->n_ad++] = &tcopy[i];
    }
    if (rc == 0) forward_capture(m, layers, L, t, x, B, ar);
    for (int i = 0; i < nt; i++) {
        LinearSlot *s = m->targets[i].slot;
        memcpy(s->ad, save[i].ad, sizeof s->ad);
        s->n_ad = save[i].n_ad;
    }
    free(save);
    free(tcopy);
    return rc;
}

double abm_student_loss(Model *m, const int *layers, int L, const float *lambda, float mu, const float *x, int B,
                        const float *const *t, int backward, double *layer_loss, double *mismatch, Arena *ar) {
    float **z = xcalloc((size_t)L, sizeof *z), **dz = xcalloc((size_t)L, sizeof *dz);
    for (int j = 0; j < L; j++) {
        size_t n = (size_t)B * abm_point_units(m, layers[j]); /* units of point j on this batch */
        z[j] = arena_floats(ar, n), dz[j] = arena_floats(ar, n);
    }
    forward_capture(m, layers, L, z, x, B, ar);
    double total = 0;
    for (int j = 0; j < L; j++) {
        long n = (long)B * abm_point_units(m, layers[j]);
        /* (1 / L) lambda_l mean(...): the layer's weight folds into the loss and its gradient */
        double raw = abm_boundary_loss(dz[j], t[j], z[j], n, mu, 1.0f);
        float wj = lambda[j] / (float)L;
        for (long i = 0; i < n; i++) dz[j][i] *= wj;
        total += wj * raw;
        if (layer_loss) layer_loss[j] = raw;
        if (mismatch) mismatch[j] = abm_sign_mismatch(t[j], z[j], n);
    }
    if (backward) {
        set_inject(m, layers, L, dz);
        float *dl = arena_zeros(ar, (size_t)B * m->n_classes);
        model_backward(m, dl, ar);
        set_inject(m, layers, L, NULL);
    }
    free(z);
    free(dz);
    return total;
}

int abm_stage1(Model *m, AdapterSet *student, const AdapterSet *teacher, InitData *data, const AbmOptions *o,
               AbmTrace *trace, Error *err) {
    if (!data || !data->batch) return err_set(err, "abm: stage 1 needs init batches of the task's training data");
    if (o->batch <= 0 || o->steps < 0 || !(o->lr > 0) || !(o->mu >= 0))
        return err_set(err, "abm: batch %d, steps %d, lr %g, mu %g: expected batch > 0, steps >= 0, lr > 0, mu >= 0",
                       o->batch, o->steps, (double)o->lr, (double)o->mu);
    int depth = abm_n_points(m), L = o->layers ? o->n_layers : depth;
    if (depth <= 0) return err_set(err, "abm: the model has no match point (no conv feeds a ReLU)");
    if (L > depth) return err_set(err, "abm: %d layers selected, the model has %d match points", L, depth);
    int *layers = xcalloc((size_t)depth + 1, sizeof *layers);
    for (int j = 0; j < L; j++) {
        layers[j] = o->layers ? o->layers[j] : j;
        if (layers[j] < 0 || layers[j] >= depth || (j > 0 && layers[j] <= layers[j - 1])) {
            free(layers);
            return err_set(err, "abm: layers must be ascending distinct match points in 0..%d (entry %d is %d)", depth - 1,
                           j, o->layers ? o->layers[j] : j);
        }
    }
    if (L <= 0) {
        free(layers);
        return err_set(err, "abm: no layers selected");
    }
    float *lambda = xmalloc(sizeof(float) * (size_t)L);
    abm_layer_weights(o->weighting, L, lambda);
    float **t = xcalloc((size_t)L, sizeof *t); /* (B, units of point j): ViT (B, T, mlp_hidden), CNN (B, C, H, W) */
    for (int j = 0; j < L; j++) t[j] = xmalloc((size_t)o->batch * abm_point_units(m, layers[j]) * sizeof(float));
    size_t per = (size_t)m->in_ch * m->img_h * m->img_w;
    float *x = xmalloc_aligned((size_t)o->batch * per * sizeof(float));
    int *y = xmalloc(sizeof(int) * (size_t)o->batch);
    double *ll = xcalloc((size_t)L, sizeof *ll), *mm = xcalloc((size_t)L, sizeof *mm);
    OptConfig oc = {.kind = o->opt, .lr = o->lr, .weight_decay = o->weight_decay, .decay_all = 1,
                    .momentum = o->momentum};
    ParamSet *sets[1] = {&student->params};
    Optimizer opt;
    optim_init(&opt, &oc, sets, 1);
    Arena ar;
    arena_init(&ar, 1u << 20);
    double t0 = now_seconds();
    int step = 0, bi = 0, rc = 0;
    for (; step < o->steps; step++) {
        int B = data->batch(data->ctx, bi++, o->batch, x, y);
        if (B <= 0 && bi > 1) bi = 0, B = data->batch(data->ctx, bi++, o->batch, x, y); /* cycle the data */
        if (B <= 0) {
            rc = err_set(err, "abm: no init batch could be drawn (the training data is empty?)");
            break;
        }
        arena_reset(&ar);
        if (abm_teacher_acts(m, student, teacher, layers, L, x, B, t, &ar, err)) {
            rc = -1;
            break;
        }
        arena_reset(&ar);
        params_zero_grad(&student->params);
        double loss = abm_student_loss(m, layers, L, lambda, o->mu, x, B, (const float *const *)t, 1, ll, mm, &ar);
        optim_step(&opt, o->lr);
        if (trace) {
            if (trace->loss) trace->loss[step] = loss;
            if (trace->layer_loss) memcpy(trace->layer_loss + (size_t)step * L, ll, sizeof(double) * L);
            if (trace->mismatch) memcpy(trace->mismatch + (size_t)step * L, mm, sizeof(double) * L);
            if (trace->time_s) trace->time_s[step] = now_seconds() - t0;
            if (trace->rss_bytes) trace->rss_bytes[step] = (double)peak_rss_bytes();
        }
    }
    if (trace) trace->steps_done = step;
    params_zero_grad(&student->params);
    params_zero_grad(m->params); /* a trainable backbone collected gradients it must not keep */
    optim_free(&opt);
    arena_free(&ar);
    for (int j = 0; j < L; j++) free(t[j]);
    free(t); free(x); free(y); free(ll); free(mm); free(lambda); free(layers);
    return rc ? -1 : step;
}
