/* core/params_io.h: ParamSet <-> safetensors. Files are untrusted: every tensor of the model must be found
 * with the right element count (the error names the file, the tensor, the expected and found shapes), and
 * a file tensor that maps to nothing is an error too (a typo'd name must not silently leave a random
 * weight in place), unless its name matches `ignore`. */
#ifndef CORE_PARAMS_IO_H
#define CORE_PARAMS_IO_H
#include "common.h"
#include "params.h"

/* Save views (all, or trainable only) as F32 under their names, with metadata pairs {k0, v0, ...}. */
int params_save(const ParamSet *ps, const char *path, int trainable_only, const char *const *meta_kv, int n_meta,
                Error *err);

/* Map a file tensor name to a parameter name and a row range of it ([row0, row0+rows) of dim 0; rows = -1
 * means the whole tensor). Returns 0 if mapped, -1 if the name has no counterpart. */
typedef int (*ParamNameMap)(const char *file_name, char *param_name, size_t cap, int *row0, int *rows, void *ctx);

typedef struct ParamLoadOptions {
    ParamNameMap map;      /* NULL: identity */
    void *ctx;
    const char *skip;      /* glob over PARAMETER names left as they are (e.g. "head.*" for a new task) */
    const char *ignore;    /* glob over FILE names dropped without error (e.g. "pooler.*") */
} ParamLoadOptions;

int params_load(ParamSet *ps, const char *path, const ParamLoadOptions *o, Error *err);
#endif
