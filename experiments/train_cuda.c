/* experiments/train_cuda.c: the `device:` switch and the GPU training loop (train_cuda.h). */
#include "train_cuda.h"

#include <string.h>

#include "core/cpu/xent.h"
#include "core/rng.h"
#include "dp.h"

#ifndef LORALAB_HAVE_CUDA
int train_pick_device(const char *device, const Model *m, const AdapterSet *ad, const TrainConfig *c, char *note,
                      size_t note_cap, Error *err) {
    (void)m, (void)ad, (void)c;
    if (note_cap) note[0] = 0;
    if (!strcmp(device, "cuda"))
        return err_set(err, "device: cuda, but this build has no CUDA backend (nvcc was not found when CMake configured "
                            "it): build on a machine with the CUDA toolkit, or set device: auto / cpu");
    return 0;
}
const char *train_device_name(void) { return "cpu"; }
int train_classifier_cuda(Model *m, AdapterSet *ad, Optimizer *opt, TrainState *state, const ImageSet *train,
                          const ImageSet *test, const TrainConfig *c, const TrainHooks *hooks, TrainResult *res,
                          Error *err) {
    (void)m, (void)ad, (void)opt, (void)state, (void)train, (void)test, (void)c, (void)hooks, (void)res;
    return err_set(err, "this build has no CUDA backend");
}
#else
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_dp.h"
#include "core/cuda/cuda_vit.h"

static char g_name[300] = "cpu";
const char *train_device_name(void) { return g_name; }

int train_pick_device(const char *device, const Model *m, const AdapterSet *ad, const TrainConfig *c, char *note,
                      size_t note_cap, Error *err) {
    const DpState *dp = dp_state();
    int want = !strcmp(device, "cuda") || dp->active, gpus = cuda_device_count();
    if (note_cap) note[0] = 0;
    if (!strcmp(device, "cpu") && !dp->active) return 0;
    char why[300] = "";
    Error e = {{0}};
    if (gpus == 0) snprintf(why, sizeof why, "no CUDA device (no driver or no GPU)");
    else if (m->family != MODEL_VIT) snprintf(why, sizeof why, "the GPU step trains ViT backbones only (backbone.family is cnn)");
    else if (cuda_vit_check(&m->u.vit, ad, &c->opt, &e)) snprintf(why, sizeof why, "%s", e.msg);
    else if (dp->world > 0 && c->batch % dp->world)
        snprintf(why, sizeof why, "trainer.batch %d does not split over %d GPUs (--gpus): make it a multiple", c->batch, dp->world);
    if (!why[0]) return 1;
    if (want)
        return err_set(err, "%s%s, but the run cannot train on the GPU: %s. Set device: auto or cpu to train it on the "
                            "CPU%s", dp->active ? "runexp --gpus" : "device: cuda", dp->active ? " (data parallel)" : "",
                       why, dp->active ? " without --gpus" : "");
    if (gpus > 0) snprintf(note, note_cap, "device auto: CPU (%s)", why);
    return 0;
}

/* Accuracy and mean cross-entropy over s on the GPU, in batches of g's max batch B (buffers from the caller). */
static double eval_cuda(CudaVit *g, const ImageSet *s, int B, int K, float *xb, int *yb, int *idx, float *logits,
                        float *probs, double *loss) {
    int hits = 0;
    double total = 0;
    for (int i = 0; i < s->n; i += B) {
        int n = MIN(B, s->n - i), h = 0;
        for (int k = 0; k < n; k++) idx[k] = i + k;
        imageset_batch(xb, yb, s, idx, n, 0, 0, 0);
        cuda_vit_set_batch(g, xb, yb, n);
        cuda_vit_forward(g);
        cuda_vit_logits(g, logits);
        total += xent_forward(probs, logits, yb, n, K, 0.0f, &h) * n;
        hits += h;
    }
    if (loss) *loss = total / s->n;
    return (double)hits / s->n;
}

/* For a checkpoint and at the end: the trainable tensors and AdamW state back into m, ad, opt. */
static void to_host(CudaVit *g, Optimizer *opt) {
    cuda_vit_download(g);
    opt->t = cuda_vit_download_optim(g);
}

int train_classifier_cuda(Model *m, AdapterSet *ad, Optimizer *opt, TrainState *st, const ImageSet *train,
                          const ImageSet *test, const TrainConfig *c, const TrainHooks *hooks, TrainResult *res,
                          Error *err) {
    static const TrainHooks no_hooks = {0};
    if (!hooks) hooks = &no_hooks;
    memset(res, 0, sizeof *res);
    const DpState *dp = dp_state();
    int world = dp->world > 0 ? dp->world : 1, rank = dp->world > 0 ? dp->rank : 0;
    int parallel = dp->world > 0 && (dp->active || dp->rank > 0), lead = !parallel || rank == 0;
    if (train_check_inputs(m, train, c, err)) return -1;
    if (m->family != MODEL_VIT) return err_set(err, "the GPU trainer needs a ViT backbone");
    if (c->batch % world) return err_set(err, "trainer.batch %d is not a multiple of --gpus %d", c->batch, world);
    int B = c->batch, Bl = B / world, K = m->n_classes, steps_per_epoch = train->n / B;
    long total = c->max_steps > 0 ? c->max_steps : (long)c->epochs * steps_per_epoch;
    Schedule sched = c->sched;
    if (sched.total_steps == 0) sched.total_steps = total;
    if (sched.warmup_steps == 0) sched.warmup_steps = (long)(c->warmup_frac * (float)total);
    CudaVit *g = cuda_vit_create_opt(&m->u.vit, ad, Bl, opt, c->label_smoothing, err);
    if (!g) return -1;
    snprintf(g_name, sizeof g_name, "cuda: %s%s", cuda_device_name(), "");
    if (parallel) {
        if (rank == 0) dp_send(DP_CMD_TRAIN, c->dp_run, st->step, opt->t);
        /* rank 0's weights (the initializer's result, a checkpoint's) and AdamW state everywhere */
        cuda_vit_each_state(g, cuda_dp_broadcast_hook, dp->comm);
        cuda_vit_state_changed(g, opt->t);
        cuda_vit_set_grad_scale(g, 1.0f / (float)world);
        cuda_vit_set_reduce(g, cuda_dp_reduce_hook, dp->comm);
        snprintf(g_name, sizeof g_name, "cuda: %s, data parallel over %d GPUs (NCCL)", cuda_device_name(), world);
    }
    cuda_vit_set_grad_norm(g, 1);
    size_t per = (size_t)train->C * train->H * train->W;
    float *xb = xmalloc((size_t)Bl * per * sizeof(float)), *logits = xmalloc((size_t)Bl * K * sizeof(float));
    float *probs = xmalloc((size_t)Bl * K * sizeof(float));
    int *yb = xmalloc((size_t)Bl * sizeof(int)), *perm = xmalloc((size_t)train->n * sizeof(int));
    int *idx = xmalloc((size_t)Bl * sizeof(int));
    int rc = 0, epoch = -1;
    long step = st->step;
    for (;;) {
        int go = step < total && rc == 0 && !res->interrupted;
        if (go && lead && hooks->should_stop && hooks->should_stop(hooks->ctx)) {
            res->interrupted = 1;
            go = 0;
            if (hooks->on_checkpoint) {
                to_host(g, opt);
                rc = hooks->on_checkpoint(hooks->ctx, st, err);
            }
        }
        if (parallel) { /* rank 0 says whether the next step runs (it alone sees signals and I/O errors) */
            int ctl = go;
            cuda_dp_bcast_host(dp->comm, &ctl, 1);
            go = ctl;
        }
        if (!go) break;
        int e = (int)(step / steps_per_epoch), bi = (int)(step % steps_per_epoch);
        if (e != epoch) {
            rng_permutation(perm, train->n, c->seed, rng_stream("data.order", (uint64_t)e, 0));
            epoch = e;
        }
        double t0 = now_seconds();
        /* this rank's share of the global batch perm[bi B, (bi+1) B) */
        imageset_batch(xb, yb, train, perm + (long)bi * B + (long)rank * Bl, Bl, c->hflip, c->seed,
                       rng_stream("data.hflip", (uint64_t)e, 0));
        cuda_vit_set_batch(g, xb, yb, Bl);
        float lr = c->opt.lr * sched_factor(&sched, step);
        cuda_vit_step(g, lr);
        float loss_sum, gnorm;
        cuda_vit_stats(g, &loss_sum, &gnorm);
        double loss = (double)loss_sum / world, dt = now_seconds() - t0;
        step++;
        st->step = step;
        st->train_s += dt;
        st->epoch_loss_sum += loss;
        st->epoch_batches++;
        res->last_loss = loss;
        if (!lead) continue;
        if (c->sync_host) {
            cuda_vit_download(g);
            cuda_vit_download_grads(g);
        }
        if (hooks->on_step) hooks->on_step(hooks->ctx, step - 1, loss, lr, gnorm, B / dt);
        int epoch_end = step % steps_per_epoch == 0 || step >= total;
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && !epoch_end && hooks->on_checkpoint) {
            to_host(g, opt);
            rc = hooks->on_checkpoint(hooks->ctx, st, err);
        }
        if (!epoch_end || rc) continue;
        int last = step >= total;
        if (test && (last || (c->eval_every > 0 && (e + 1) % c->eval_every == 0))) {
            res->test_acc = eval_cuda(g, test, Bl, K, xb, yb, idx, logits, probs, &res->test_loss);
            if (hooks->on_eval) hooks->on_eval(hooks->ctx, e + 1, res->test_acc, res->test_loss, st->train_s);
        }
        if (st->epoch_batches) res->last_loss = st->epoch_loss_sum / st->epoch_batches;
        if (!last) {
            st->epoch_loss_sum = 0;
            st->epoch_batches = 0;
            if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && hooks->on_checkpoint) {
                to_host(g, opt);
                rc = hooks->on_checkpoint(hooks->ctx, st, err);
            }
        }
    }
    to_host(g, opt);
    res->steps = st->step;
    res->train_s = st->train_s;
    res->img_s = st->train_s > 0 ? (double)st->step * B / st->train_s : 0;
    cuda_vit_free(g);
    free(xb); free(logits); free(probs); free(yb); free(perm); free(idx);
    return rc;
}
#endif
