/* experiments/train.h: the supervised training loop every stage uses (pretrain, finetune): epochs over a
 * shuffled training set, forward, cross-entropy, backward, clip, optimizer step, schedule, periodic eval.
 * Determinism: data order, augmentation and every init are counter-based draws of (seed, stream), and every
 * parallel reduction has a fixed order for a given thread count, so the same config + seed + threads gives
 * bit-identical losses. No malloc in the step loop: batches and activations live in preallocated buffers
 * and the per-step arena. */
#ifndef EXPERIMENTS_TRAIN_H
#define EXPERIMENTS_TRAIN_H
#include "core/adapter.h"
#include "core/model.h"
#include "core/optim.h"
#include "datasets/imageset.h"

typedef struct TrainConfig {
    int epochs;            /* passes over the training set (the last partial batch is dropped) */
    long max_steps;        /* > 0: stop after this many steps (overrides epochs for the schedule) */
    int batch;
    OptConfig opt;
    Schedule sched;        /* total_steps / warmup_steps filled from epochs when 0 */
    float warmup_frac;     /* warmup_steps = warmup_frac * total when sched.warmup_steps == 0 */
    float label_smoothing;
    int hflip;             /* random horizontal flip augmentation */
    uint64_t seed;
    int eval_every;        /* evaluate on the test set every N epochs (0: only at the end) */
    int eval_batch;
    int checkpoint_every;  /* > 0: call hooks->on_checkpoint every N steps */
    /* the GPU trainer (experiments/train_cuda.h) */
    int sync_host;         /* copy the trainable tensors and their gradients to the host after every step
                            * (the research metrics read them in on_step) */
    int dp_run;            /* data parallel: the grid run index rank 0 announces to the other ranks */
} TrainConfig;

/* Where a run stands; the caller saves it with a checkpoint and passes it back to resume. A resumed run
 * recomputes the epoch's data order from (seed, epoch), so its curve equals the uninterrupted one. */
typedef struct TrainState {
    long step;             /* steps done */
    double epoch_loss_sum; /* over the current epoch's steps so far */
    int epoch_batches;
    double train_s;        /* wall time of training steps so far, over all resumes */
} TrainState;

typedef struct TrainHooks {
    void *ctx;
    /* after every step: 0-based step, loss, lr, pre-clip gradient norm, images/s of this step */
    void (*on_step)(void *ctx, long step, double loss, float lr, double grad_norm, double img_s);
    /* after every evaluation: 1-based epoch, test accuracy, test loss, seconds of training so far */
    void (*on_eval)(void *ctx, int epoch, double acc, double loss, double train_s);
    /* every checkpoint_every steps and before an early stop: save the model, adapters, optimizer and
     * *state (step = steps done). Nonzero = failure (err filled): training stops with that error. */
    int (*on_checkpoint)(void *ctx, const TrainState *state, Error *err);
    /* polled before every step; nonzero = stop now (SIGINT/SIGTERM): checkpoint, return interrupted. */
    int (*should_stop)(void *ctx);
    /* after every step when an adapter has a regularizer (LAVA; adapters_have_regularizer): 0-based step and
     * the penalty sum over layers at the step's weights before the update (its gradient was added to the
     * adapters' gradients after backward, before clipping; not part of the on_step loss) */
    void (*on_penalty)(void *ctx, long step, double penalty);
} TrainHooks;

typedef struct TrainResult {
    long steps;
    double last_loss;      /* mean training loss over the last epoch (or last 50 steps with max_steps) */
    double test_acc, test_loss;
    double train_s;        /* wall time of the training steps (excludes evaluation) */
    double img_s;          /* training throughput over the whole run */
    int interrupted;       /* should_stop asked to stop; state holds where */
} TrainResult;

/* The optimizer over the model's and the adapters' (may be NULL) trainable views. */
void train_optimizer_init(Optimizer *opt, const OptConfig *oc, Model *m, AdapterSet *ad);
/* The batch fits the training set and the images are the backbone's shape (either trainer checks first). */
int train_check_inputs(const Model *m, const ImageSet *train, const TrainConfig *c, Error *err);
/* Trains the trainable views of m->params and of ad (may be NULL) with opt (whose state may come from a
 * checkpoint), from *state (zeroed for a fresh run) until the configured end; updates *state. Gradients
 * must be allocated. hooks may be NULL. */
int train_classifier(Model *m, AdapterSet *ad, Optimizer *opt, TrainState *state, const ImageSet *train,
                     const ImageSet *test, const TrainConfig *c, const TrainHooks *hooks, TrainResult *res,
                     Error *err);
/* Accuracy (and mean cross-entropy in *loss if not NULL) over a set, in eval mode. */
double eval_classifier(Model *m, const ImageSet *s, int batch, Arena *ar, double *loss);
#endif
