/* methods/init.h: initializers. An initializer runs after the adapters are attached (the kind's default
 * init has run) and sets their tensors; it may change the frozen W0 (PiSSA, OLoRA, ...) and must say so.
 * Data-driven initializers draw init batches of the task's training data through ctx->data and use the
 * engine's capabilities on every linear slot (core/adapter.h: taps, full-weight gradients, injected
 * gradients) through the helpers of methods/init_data.h. */
#ifndef METHODS_INIT_H
#define METHODS_INIT_H
#include "core/adapter.h"
#include "core/model.h"

/* The task's training data for initializers. batch(ctx, i, B, x, y) fills x (B, C, H, W) and y (B) with init
 * batch i (a fixed, seeded order, independent of training's) and returns the number of images written
 * (B, fewer at the end of the data, 0 when i is past it). */
typedef struct InitData {
    int (*batch)(void *ctx, int i, int B, float *x, int *y);
    void *ctx;
    int n_images;
} InitData;

typedef struct InitContext {
    Model *model;
    AdapterSet *set;
    uint64_t seed;
    InitData data;            /* data.batch NULL: no data (data-free inits only) */
    int batch;                /* init batch size (method.params.<init>.batch, else the trainer's) */
    int n_batches;            /* init batches to use (method.params.<init>.batches) */
    float label_smoothing;    /* the task loss of gradient-based inits is the trainer's */
    float lr, warmup_frac;    /* the trainer's (LoRA-SB's first-step estimate) */
    long total_steps;
    int adamw;                /* 1: AdamW trainer (LoRA-SB: sign of the gradient), 0: SGD */
    /* method.params.<init>.* as key/value text pairs (k0, v0, ...): read with init_opt_* */
    const char *const *opts;
    int n_opts;
    /* Re-create the adapters with per-adapter ranks (EVA's, VAS's redistribution): ranks[i] for set->a[i];
     * 0 leaves that layer unadapted. Afterwards ctx->set holds the new adapters (default-initialized);
     * pointers into the old ones are invalid. NULL when the caller cannot. */
    int (*reattach)(struct InitContext *ctx, const int *ranks, Error *err);
    void *reattach_ctx;
    /* Optional: the data passes on an accelerator (methods/init_data.h: InitAccel; the runner's GPU passes,
     * experiments/init_cuda.h). NULL: init_input_stats / init_full_grads run the CPU model. */
    const struct InitAccel *accel;
    void *accel_ctx;
} InitContext;

/* method.params.<init>.<key> as a number / string, or def when absent; a value that is not a number is
 * an error naming the key. */
int init_opt_double(const InitContext *ctx, const char *key, double def, double *out, Error *err);
const char *init_opt_string(const InitContext *ctx, const char *key, const char *def);
/* Every method.params.<init> key is one of keys[0..n): else an error "method.init '<init>': unknown key
 * 'method.params.<init>.<key>' (expected one of k0, k1, ...)". */
int init_check_keys(const InitContext *ctx, const char *init, const char *const *keys, size_t n, Error *err);

typedef struct InitResult {
    double wall_s;
    double prepare_s;      /* init_run: the accelerator's prepare before the clock (not in wall_s) */
    int changed_w0;        /* the frozen weights were modified */
    int changed_function;  /* the model's output at init differs from the backbone's */
    int batches_used;      /* data-driven inits: init batches drawn (EVA stops at convergence) */
    char note[128];        /* what the record should say about this init (EVA: convergence; CorDA: damping) */
    /* An optional per-step series of the init stage for the run file (ABM: "init/abm_loss"); malloc'ed by
     * the initializer, owned (and freed) by the caller. */
    const char *series_name;
    double *series;
    int n_series;
    /* Further per-step series of the init stage (ABM: per-layer loss and sign mismatch, time, memory), written
     * to the run file as row series (n_cols > 1 or col_names set) or scalar series: values (n_steps, n_cols)
     * row-major; col_names (n_cols, may be NULL) is ONE allocation (the strings follow the pointers). Both
     * malloc'ed by the initializer, freed by the caller (free(values), free(col_names)). */
    struct {
        char name[64];
        double *values;
        char **col_names;
        int n_steps, n_cols;
    } rows[6];
    int n_rows;
} InitResult;

typedef struct InitKind {
    const char *name;
    const char *source;    /* where the formula comes from (METHODS.md section) */
    int (*run)(InitContext *ctx, InitResult *res, Error *err);
    int default_batches;   /* init batches when method.params.<init>.batches is not set (0: 8) */
    unsigned passes;       /* INIT_PASS_*: the data pass its run starts with (an accelerator prepares it: init_data.h) */
} InitKind;
#define INIT_PASS_STATS 1u /* init_input_stats */
#define INIT_PASS_GRADS 2u /* init_full_grads */

/* methods/registry.c: NULL if unknown. */
const InitKind *init_find(const char *name);
const AdapterKind *adapter_find(const char *name);
/* "kaiming, gaussian, ..." for error messages. */
const char *init_names(void);
/* Run the named initializer (timed). Errors name the initializer and the layer. */
int init_run(const char *name, InitContext *ctx, InitResult *res, Error *err);
#endif
