/* methods/init_abm.c: ABM-LoRA as an initializer (METHODS.md, ABM-LoRA): a base initializer for the student
 * adapters, then stage 1, activation boundary matching against a teacher (the backbone plus an optional
 * teacher adapter loaded from a PEFT directory), then fine-tuning proceeds as usual. Options
 * (method.params.abm.*): base (kaiming), teacher (PEFT adapter dir; none: the backbone alone), teacher_rank
 * and teacher_alpha (default: the student's), mu (0.5), weighting (uniform | linear | quadratic | sequential;
 * quadratic), layers (all | last:K | first:K | list over the match points in depth order: ViT blocks' mlp.fc1,
 * CNN convs feeding a ReLU, methods/abm.h; last:6 capped at their number), steps (100), lr (3e-4),
 * batch (the init batch). The stage-1 loss before and after goes to the run's note; the run file gets per step
 * init/abm_loss (total), init/abm_layer_loss and init/abm_sign_mismatch (one column per match point) and
 * init/abm_cost (time_s since the start, peak_rss_mb). */
#include <stdio.h>
#include <string.h>

#include "abm.h"
#include "init.h"
#include "lora.h"
#include "peft_io.h"

/* The match points' names (blocks.<l>.mlp.fc1; the CNN's conv module names): one allocation, the strings after
 * the pointers. */
static char **layer_names(const Model *m, const int *layers, int L) {
    size_t each = PARAM_NAME_MAX;
    char **names = xmalloc((size_t)L * (sizeof(char *) + each));
    char *p = (char *)(names + L);
    for (int j = 0; j < L; j++, p += each) {
        abm_point_name(m, layers[j], p, each);
        names[j] = p;
    }
    return names;
}

/* One more init series for the run file (InitResult.rows); takes values and cols. */
static void add_rows(InitResult *res, const char *name, double *values, char **cols, int n_steps, int n_cols) {
    int k = res->n_rows;
    ASSERT(k < (int)ARRAY_LEN(res->rows));
    snprintf(res->rows[k].name, sizeof res->rows[k].name, "%s", name);
    res->rows[k].values = values;
    res->rows[k].col_names = cols;
    res->rows[k].n_steps = n_steps;
    res->rows[k].n_cols = n_cols;
    res->n_rows = k + 1;
}

static int init_abm(InitContext *ctx, InitResult *res, Error *err) {
    Model *m = ctx->model;
    if (!m || abm_n_points(m) <= 0)
        return err_set(err, "method.init 'abm': the backbone has no match point (ViT: mlp.fc1; CNN: a conv feeding a "
                            "ReLU)");
    if (!ctx->data.batch) return err_set(err, "method.init 'abm': stage 1 needs the task's training images");
    const char *base = init_opt_string(ctx, "base", "kaiming");
    if (!strcmp(base, "abm")) return err_set(err, "method.params.abm.base cannot be 'abm'");
    InitResult bres;
    if (init_run(base, ctx, &bres, err)) return -1;
    double mu, steps, lr, trank, talpha, batch;
    AbmOptions o = {.opt = OPT_ADAMW, .weight_decay = 0.01f};
    int depth = abm_n_points(m); /* match points: ViT blocks, CNN convs feeding a ReLU (methods/abm.h) */
    int *layers = xcalloc((size_t)depth, sizeof *layers);
    char spec[32];
    snprintf(spec, sizeof spec, "last:%d", depth < 6 ? depth : 6);
    const char *lspec = init_opt_string(ctx, "layers", spec);
    int rc = init_opt_double(ctx, "mu", 0.5, &mu, err) || init_opt_double(ctx, "steps", 100, &steps, err) ||
             init_opt_double(ctx, "lr", 3e-4, &lr, err) || init_opt_double(ctx, "batch", ctx->batch, &batch, err) ||
             init_opt_double(ctx, "teacher_rank", ctx->set->a[0].r, &trank, err) ||
             init_opt_double(ctx, "teacher_alpha", ctx->set->a[0].alpha, &talpha, err) ||
             abm_weighting_parse(init_opt_string(ctx, "weighting", "quadratic"), &o.weighting, err)
                 ? -1 : 0;
    int L = rc ? -1 : abm_parse_layers(lspec, depth, layers, err);
    if (L < 0) { free(layers); return -1; }
    o.mu = (float)mu; o.steps = (int)steps; o.lr = (float)lr; o.batch = (int)batch; o.layers = layers; o.n_layers = L;
    /* the teacher: the same targets as the student, its own rank, loaded from a PEFT directory */
    AdapterSet teacher = {0};
    const char *tdir = init_opt_string(ctx, "teacher", NULL);
    if (tdir) {
        const char **pats = xcalloc((size_t)ctx->set->n, sizeof *pats);
        for (int i = 0; i < ctx->set->n; i++) pats[i] = ctx->set->a[i].target;
        /* the student's adapters come off the slots while the teacher is attached, then go back */
        int n = ctx->set->n;
        AdapterSpec sp = {.kind = &ADAPTER_LORA, .r = (int)trank, .alpha = (float)talpha};
        AdapterSet student = *ctx->set;
        abm_detach(&student, m);
        rc = adapters_attach(&teacher, m->targets, m->n_targets, m->params, pats, n, &sp, ctx->seed, err) < 0 ? -1 : 0;
        if (!rc) rc = peft_load(tdir, &teacher, err);
        if (!rc) abm_detach(&teacher, m);
        for (int i = 0; i < n; i++) { /* re-attach the student in its own order */
            Adapter *a = &ctx->set->a[i];
            for (int t = 0; t < m->n_targets; t++)
                if (!strcmp(m->targets[t].name, a->target)) m->targets[t].slot->ad[m->targets[t].slot->n_ad++] = a;
        }
        free(pats);
    }
    AbmTrace tr = {0};
    size_t ns = (size_t)(o.steps > 0 ? o.steps : 1);
    double *loss = xcalloc(ns, sizeof *loss), *lay = xcalloc(ns * (size_t)L, sizeof *lay);
    double *mis = xcalloc(ns * (size_t)L, sizeof *mis), *cost = xcalloc(ns * 2, sizeof *cost);
    double *tsec = xcalloc(ns, sizeof *tsec), *rss = xcalloc(ns, sizeof *rss);
    tr.loss = loss;
    tr.layer_loss = lay;
    tr.mismatch = mis;
    tr.time_s = tsec;
    tr.rss_bytes = rss;
    if (!rc) rc = abm_stage1(m, ctx->set, tdir ? &teacher : NULL, &ctx->data, &o, &tr, err) < 0 ? -1 : 0;
    if (!rc && tr.steps_done > 0)
        snprintf(res->note, sizeof res->note, "abm: %d steps, loss %.4g -> %.4g, %d layers from %s, teacher %s",
                 tr.steps_done, loss[0], loss[tr.steps_done - 1], L, lspec, tdir ? tdir : "none (backbone)");
    res->batches_used = tr.steps_done;
    if (!rc && tr.steps_done > 0) { /* the stage-1 loss curve goes to the run file (init/abm_loss) */
        res->series_name = "init/abm_loss";
        res->series = loss;
        res->n_series = tr.steps_done;
        loss = NULL;
        /* per layer (columns = the match points), and the step's time and memory */
        char **cols = layer_names(m, layers, L);
        char **cols2 = layer_names(m, layers, L);
        static const char *const cost_cols[] = {"time_s", "peak_rss_mb"};
        size_t cl = 2 * sizeof(char *) + 32;
        char **cc = xmalloc(cl);
        cc[0] = (char *)(cc + 2);
        cc[1] = cc[0] + 16;
        snprintf(cc[0], 16, "%s", cost_cols[0]);
        snprintf(cc[1], 16, "%s", cost_cols[1]);
        for (int s = 0; s < tr.steps_done; s++) cost[2 * s] = tsec[s], cost[2 * s + 1] = rss[s] / (1024.0 * 1024.0);
        add_rows(res, "init/abm_layer_loss", lay, cols, tr.steps_done, L);
        add_rows(res, "init/abm_sign_mismatch", mis, cols2, tr.steps_done, L);
        add_rows(res, "init/abm_cost", cost, cc, tr.steps_done, 2);
        lay = mis = cost = NULL;
    }
    res->changed_w0 = 0;
    res->changed_function = 1;
    if (teacher.a) adapters_free(&teacher, m->targets, m->n_targets);
    free(loss); free(lay); free(mis); free(cost); free(tsec); free(rss);
    free(layers);
    return rc;
}

const InitKind INIT_ABM = {"abm", "METHODS.md, ABM-LoRA (stage 1 before fine-tuning)", init_abm, 100};
