/* core/params.h: a model's parameters in one allocation with a table of named views (the llm.c way).
 * Build: params_add() every tensor, then params_finalize() allocates data (zeroed). Choose what trains
 * with params_set_trainable() (glob patterns over names), then params_alloc_grads(): gradients live in a
 * second allocation covering only trainable views, so a frozen ViT-B costs no gradient memory.
 * Invariant: view offsets are 16-float aligned and disjoint; goff is -1 exactly when the view is frozen. */
#ifndef CORE_PARAMS_H
#define CORE_PARAMS_H
#include <stddef.h>
#include <stdint.h>

#define PARAM_NAME_MAX 128
#define PARAM_MAX_DIMS 4

typedef struct ParamView {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t numel;
    size_t offset;   /* into ParamSet.data */
    long goff;       /* into ParamSet.grad, -1 if frozen */
    int trainable;
    int decay;       /* 1: weight decay applies (matrices), 0: biases, norms, embeddings tokens */
} ParamView;

typedef struct ParamSet {
    ParamView *views;
    int n, cap;
    float *data;     /* one allocation, numel floats (+ alignment) */
    size_t numel;    /* including alignment padding */
    float *grad;     /* one allocation over trainable views */
    size_t n_grad;
    int finalized;
} ParamSet;

void params_init(ParamSet *ps);
/* Register a tensor; returns its index. Only before finalize. Names must be unique (asserted). */
int params_add(ParamSet *ps, const char *name, int ndim, const int64_t *shape, int decay);
void params_finalize(ParamSet *ps);
int params_find(const ParamSet *ps, const char *name); /* -1 if absent */
float *params_data(const ParamSet *ps, int idx);
float *params_grad(const ParamSet *ps, int idx);        /* NULL if frozen */
/* Set trainable on every view whose name matches the glob (fnmatch: '*' crosses dots). Returns matches. */
int params_set_trainable(ParamSet *ps, const char *pattern, int trainable);
void params_set_all_trainable(ParamSet *ps, int trainable);
/* (Re)allocate the gradient buffer over trainable views (zeroed) and assign goff. */
void params_alloc_grads(ParamSet *ps);
void params_zero_grad(ParamSet *ps);
size_t params_count(const ParamSet *ps, int trainable_only);
void params_free(ParamSet *ps);
#endif
