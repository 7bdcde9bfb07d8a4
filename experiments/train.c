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
    for (int i = 0; i < s->n; i += batch) {
        int B = MIN(batch, s->n - i), h = 0;
        arena_reset(ar);
        model_forward(m, logits, s->x + (size_t)i * per, B, 0, ar);
        total += xent_forward(probs, logits, s->y + i, B, K, 0.0f, &h) * B;
        hits += h;
    }
    free(logits);
    free(probs);
    if (loss) *loss = total / s->n;
    return (double)hits / s->n;
}

int train_classifier(Model *m, AdapterSet *ad, const ImageSet *train, const ImageSet *test, const TrainConfig *c,
                     const TrainHooks *hooks, TrainResult *res, Error *err) {
    memset(res, 0, sizeof *res);
    if (c->batch <= 0 || c->batch > train->n)
        return err_set(err, "trainer.batch %d must be between 1 and the training set size %d", c->batch, train->n);
    if (train->C != m->in_ch || train->H != m->img_h || train->W != m->img_w)
        return err_set(err, "dataset images are %dx%dx%d but the backbone expects %dx%dx%d", train->C, train->H,
                       train->W, m->in_ch, m->img_h, m->img_w);
    int B = c->batch, K = m->n_classes, steps_per_epoch = train->n / B;
    long total = c->max_steps > 0 ? c->max_steps : (long)c->epochs * steps_per_epoch;
    Schedule sched = c->sched;
    if (sched.total_steps == 0) sched.total_steps = total;
    if (sched.warmup_steps == 0) sched.warmup_steps = (long)(c->warmup_frac * (float)total);
    ParamSet *sets[2] = {m->params, ad ? &ad->params : NULL};
    Optimizer opt;
    optim_init(&opt, &c->opt, sets, ad ? 2 : 1);
    size_t per = (size_t)train->C * train->H * train->W;
    float *xb = xmalloc_aligned((size_t)B * per * sizeof(float)), *logits = xmalloc((size_t)B * K * sizeof(float));
    float *probs = xmalloc((size_t)B * K * sizeof(float)), *dlogits = xmalloc((size_t)B * K * sizeof(float));
    int *yb = xmalloc((size_t)B * sizeof(int)), *perm = xmalloc((size_t)train->n * sizeof(int));
    Arena ar;
    arena_init(&ar, 1u << 24);
    long step = 0;
    double t_train = 0, epoch_loss = 0;
    int epoch_batches = 0;
    for (int epoch = 0; step < total; epoch++) {
        rng_permutation(perm, train->n, c->seed, rng_stream("data.order", (uint64_t)epoch, 0));
        epoch_loss = 0;
        epoch_batches = 0;
        for (int bi = 0; bi < steps_per_epoch && step < total; bi++, step++) {
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
            float lr = c->opt.lr * sched_factor(&sched, step);
            double gnorm = optim_step(&opt, lr);
            double dt = now_seconds() - t0;
            t_train += dt;
            epoch_loss += loss;
            epoch_batches++;
            if (hooks && hooks->on_step) hooks->on_step(hooks->ctx, step, loss, lr, gnorm, B / dt);
            res->last_loss = loss;
        }
        int last = step >= total;
        if (test && (last || (c->eval_every > 0 && (epoch + 1) % c->eval_every == 0))) {
            res->test_acc = eval_classifier(m, test, c->eval_batch > 0 ? c->eval_batch : 500, &ar, &res->test_loss);
            if (hooks && hooks->on_eval) hooks->on_eval(hooks->ctx, epoch + 1, res->test_acc, res->test_loss, t_train);
        }
    }
    if (epoch_batches) res->last_loss = epoch_loss / epoch_batches;
    res->steps = step;
    res->train_s = t_train;
    res->img_s = t_train > 0 ? (double)step * B / t_train : 0;
    arena_free(&ar);
    optim_free(&opt);
    free(xb); free(logits); free(probs); free(dlogits); free(yb); free(perm);
    return 0;
}
