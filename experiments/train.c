/* experiments/train.c */
#include "train.h"

#include <string.h>

#include "core/cpu/xent.h"
#include "core/rng.h"

double eval_classifier(Model *m, const ImageSet *s, int batch, Arena *ar, double *loss) {
    size_t per = (size_t)s->C * s->H * s->W;
    int K = m->n_classes, hits = 0;
    double total = 0;
    float *logits = xmalloc((size_t)batch * K * sizeof(float)), *probs = xmalloc((size_t)batch * K * sizeof(float));
    float *buf = s->x ? NULL : xmalloc((size_t)batch * per * sizeof(float)); /* byte-stored sets */
    for (int i = 0; i < s->n; i += batch) {
        int B = MIN(batch, s->n - i), h = 0;
        arena_reset(ar);
        model_forward(m, logits, imageset_rows(s, i, B, buf), B, 0, ar);
        total += xent_forward(probs, logits, s->y + i, B, K, 0.0f, &h) * B;
        hits += h;
    }
    free(logits);
    free(probs);
    free(buf);
    if (loss) *loss = total / s->n;
    return (double)hits / s->n;
}

int train_check_inputs(const Model *m, const ImageSet *train, const TrainConfig *c, Error *err) {
    if (c->batch <= 0 || c->batch > train->n)
        return err_set(err, "trainer.batch %d must be between 1 and the training set size %d", c->batch, train->n);
    if (train->C != m->in_ch || train->H != m->img_h || train->W != m->img_w)
        return err_set(err, "dataset images are %dx%dx%d but the backbone expects %dx%dx%d", train->C, train->H,
                       train->W, m->in_ch, m->img_h, m->img_w);
    return 0;
}

void train_optimizer_init(Optimizer *opt, const OptConfig *oc, Model *m, AdapterSet *ad) {
    ParamSet *sets[2] = {m->params, ad ? &ad->params : NULL};
    optim_init(opt, oc, sets, ad ? 2 : 1);
}

int train_classifier(Model *m, AdapterSet *ad, Optimizer *opt, TrainState *st, const ImageSet *train,
                     const ImageSet *test, const TrainConfig *c, const TrainHooks *hooks, TrainResult *res,
                     Error *err) {
    static const TrainHooks no_hooks = {0};
    if (!hooks) hooks = &no_hooks;
    memset(res, 0, sizeof *res);
    if (train_check_inputs(m, train, c, err)) return -1;
    int B = c->batch, K = m->n_classes, steps_per_epoch = train->n / B;
    long total = c->max_steps > 0 ? c->max_steps : (long)c->epochs * steps_per_epoch;
    Schedule sched = c->sched;
    if (sched.total_steps == 0) sched.total_steps = total;
    if (sched.warmup_steps == 0) sched.warmup_steps = (long)(c->warmup_frac * (float)total);
    size_t per = (size_t)train->C * train->H * train->W;
    float *xb = xmalloc_aligned((size_t)B * per * sizeof(float)), *logits = xmalloc((size_t)B * K * sizeof(float));
    float *probs = xmalloc((size_t)B * K * sizeof(float)), *dlogits = xmalloc((size_t)B * K * sizeof(float));
    int *yb = xmalloc((size_t)B * sizeof(int)), *perm = xmalloc((size_t)train->n * sizeof(int));
    Arena ar;
    arena_init(&ar, 1u << 24);
    int rc = 0, has_reg = ad && adapters_have_regularizer(ad);
    long step = st->step;
    for (int epoch = (int)(step / steps_per_epoch); step < total && rc == 0 && !res->interrupted; epoch++) {
        rng_permutation(perm, train->n, c->seed, rng_stream("data.order", (uint64_t)epoch, 0));
        for (int bi = (int)(step % steps_per_epoch); bi < steps_per_epoch && step < total; bi++) {
            if (hooks->should_stop && hooks->should_stop(hooks->ctx)) {
                res->interrupted = 1;
                if (hooks->on_checkpoint) rc = hooks->on_checkpoint(hooks->ctx, st, err);
                break;
            }
            double t0 = now_seconds();
            imageset_batch(xb, yb, train, perm + (long)bi * B, B, c->hflip, c->seed,
                           rng_stream("data.hflip", (uint64_t)epoch, 0));
            arena_reset(&ar);
            model_forward(m, logits, xb, B, 1, &ar);
            double loss = xent_forward(probs, logits, yb, B, K, c->label_smoothing, NULL);
            xent_backward(dlogits, probs, yb, B, K, c->label_smoothing, 1.0f);
            params_zero_grad(m->params);
            if (ad) params_zero_grad(&ad->params);
            model_backward(m, dlogits, &ar);
            double penalty = has_reg ? adapters_regularize(ad, 1, &ar) : 0; /* LAVA: before clipping */
            float lr = c->opt.lr * sched_factor(&sched, step);
            double gnorm = optim_step(opt, lr);
            double dt = now_seconds() - t0;
            step++;
            st->step = step;
            st->train_s += dt;
            st->epoch_loss_sum += loss;
            st->epoch_batches++;
            res->last_loss = loss;
            if (hooks->on_step) hooks->on_step(hooks->ctx, step - 1, loss, lr, gnorm, B / dt);
            if (has_reg && hooks->on_penalty) hooks->on_penalty(hooks->ctx, step - 1, penalty);
            /* an epoch's last step is checkpointed after the epoch-end evaluation below, so a resume never
             * replays or skips it */
            if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step % steps_per_epoch != 0 &&
                step < total && hooks->on_checkpoint && (rc = hooks->on_checkpoint(hooks->ctx, st, err)) != 0)
                break;
        }
        if (rc || res->interrupted) break;
        int last = step >= total;
        if (test && (last || (c->eval_every > 0 && (epoch + 1) % c->eval_every == 0))) {
            res->test_acc = eval_classifier(m, test, c->eval_batch > 0 ? c->eval_batch : 500, &ar, &res->test_loss);
            if (hooks->on_eval) hooks->on_eval(hooks->ctx, epoch + 1, res->test_acc, res->test_loss, st->train_s);
        }
        if (st->epoch_batches) res->last_loss = st->epoch_loss_sum / st->epoch_batches;
        if (!last) {
            st->epoch_loss_sum = 0;
            st->epoch_batches = 0;
            if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && hooks->on_checkpoint)
                rc = hooks->on_checkpoint(hooks->ctx, st, err);
        }
    }
    res->steps = st->step;
    res->train_s = st->train_s;
    res->img_s = st->train_s > 0 ? (double)st->step * B / st->train_s : 0;
    arena_free(&ar);
    free(xb); free(logits); free(probs); free(dlogits); free(yb); free(perm);
    return rc;
}
