/* core/optim.h: optimizers (AdamW, SGD with momentum), gradient-norm clipping and learning-rate schedules,
 * all in one place. An Optimizer updates the trainable views of one or more ParamSets (a model's and its
 * adapters'); its state (m, v / momentum) is one allocation per set, laid out like ParamSet.grad.
 * AdamW is PyTorch's: decoupled weight decay p -= lr * wd * p before the Adam update, bias-corrected. */
#ifndef CORE_OPTIM_H
#define CORE_OPTIM_H
#include "params.h"

typedef enum { OPT_ADAMW = 0, OPT_SGD = 1 } OptKind;
typedef struct OptConfig {
    OptKind kind;
    float lr;            /* base learning rate (the schedule scales it) */
    float beta1, beta2, eps; /* AdamW (defaults 0.9, 0.999, 1e-8 when 0) */
    float weight_decay;
    int decay_all;       /* 1: decay every trainable view (torch's default param group); 0: only decay=1 views */
    float momentum;      /* SGD */
    int nesterov;
    float clip_norm;     /* > 0: clip the global L2 norm of all gradients to this */
} OptConfig;

#define OPTIM_MAX_SETS 4
typedef struct Optimizer {
    OptConfig cfg;
    ParamSet *sets[OPTIM_MAX_SETS];
    float *m[OPTIM_MAX_SETS], *v[OPTIM_MAX_SETS];
    int n_sets;
    long t;              /* steps taken */
} Optimizer;

/* The sets' gradients must already be allocated (params_alloc_grads). */
void optim_init(Optimizer *o, const OptConfig *cfg, ParamSet *const *sets, int n_sets);
/* Global L2 norm over all trainable gradients (double accumulation, fixed order). */
double optim_grad_norm(const Optimizer *o);
/* One update at learning rate lr (after clipping if configured). Returns the pre-clip gradient norm. */
double optim_step(Optimizer *o, float lr);
void optim_free(Optimizer *o);

typedef enum { SCHED_CONSTANT = 0, SCHED_LINEAR = 1, SCHED_COSINE = 2 } SchedKind;
typedef struct Schedule {
    SchedKind kind;
    long warmup_steps;   /* linear warmup from 0 (step 0 gets lr * 1/warmup... see sched_lr) */
    long total_steps;
    float min_lr_ratio;  /* cosine / linear decay floor as a fraction of the base lr */
} Schedule;
/* lr multiplier for 0-based step: warmup (step+1)/warmup; then constant, linear decay to min_lr_ratio at
 * total_steps, or cosine 0.5(1+cos(pi * progress)) scaled into [min_lr_ratio, 1]. */
float sched_factor(const Schedule *s, long step);
#endif
