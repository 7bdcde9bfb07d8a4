/* methods/init.h: initializers. An initializer runs after the adapters are attached (the kind's default
 * init has run) and sets their tensors; it may change the frozen W0 (PiSSA, OLoRA, ...) and must say so.
 * The context grows with the data-driven methods (taps, full-weight gradients, init batches: issue 5);
 * today it carries the model, the adapters and the seed. */
#ifndef METHODS_INIT_H
#define METHODS_INIT_H
#include "core/adapter.h"
#include "core/model.h"

typedef struct InitContext {
    Model *model;
    AdapterSet *set;
    uint64_t seed;
} InitContext;

typedef struct InitResult {
    double wall_s;
    int changed_w0;        /* the frozen weights were modified */
    int changed_function;  /* the model's output at init differs from the backbone's */
} InitResult;

typedef struct InitKind {
    const char *name;
    const char *source;    /* where the formula comes from (METHODS.md section) */
    int (*run)(InitContext *ctx, InitResult *res, Error *err);
} InitKind;

/* methods/registry.c: NULL if unknown. */
const InitKind *init_find(const char *name);
const AdapterKind *adapter_find(const char *name);
/* "kaiming, gaussian, ..." for error messages. */
const char *init_names(void);
/* Run the named initializer (timed). Errors name the initializer and the layer. */
int init_run(const char *name, InitContext *ctx, InitResult *res, Error *err);
#endif
