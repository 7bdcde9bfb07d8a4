/* core/adapter.h: the seam every adapter plugs into (DESIGN.md, "The seam every method plugs into").
 * An adapted linear computes  y = x W0^T + b + contribution(adapter, x)  on a slice of output rows
 * [row0, row0 + m) of a host linear (a whole nn.Linear, or the q / k / v third of timm's fused qkv).
 * An AdapterKind is a table of functions (methods/ implements them: LoRA, DoRA, LoRA-XS, ...); the
 * engine only calls through the table, so core/ knows no method.
 * Backends: the forward/backward functions receive CPU pointers today; a CUDA kind fills the same table. */
#ifndef CORE_ADAPTER_H
#define CORE_ADAPTER_H
#include <stdint.h>

#include "arena.h"
#include "params.h"

typedef struct Adapter Adapter;

typedef struct AdapterKind {
    const char *name;
    /* Register the adapter's tensors in ps (names "<target>.<tensor>", e.g. blocks.0.attn.qkv:q.lora_A). */
    void (*create)(Adapter *a, ParamSet *ps);
    /* The kind's default initialization (plain LoRA: A kaiming-uniform, B = 0). Initializers in methods/
     * may overwrite the tensors afterwards. */
    void (*init_default)(Adapter *a, uint64_t seed);
    /* out (N, ldo): rows' columns [row0, row0+m) already hold x W0^T + b; ADD the adapter's part.
     * May keep activations for backward in a->saved[] (allocated from ar). */
    void (*forward)(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar);
    /* dout (N, ldo) (use columns [row0, row0+m)); ACCUMULATE the adapter's parameter gradients (those of
     * trainable tensors) and dinp (N, n) (NULL = not wanted). Uses a->saved[] from the last forward. */
    void (*backward)(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar);
    /* dW (m, n) = the adapter's effective weight change (s B A for LoRA), for metrics and merging. */
    void (*delta_weight)(const Adapter *a, float *dW);
} AdapterKind;

struct Adapter {
    const AdapterKind *kind;
    char target[PARAM_NAME_MAX]; /* the model's name for the adapted slice, e.g. blocks.3.attn.qkv:v */
    int m, n, r;                 /* out rows of the slice, in features, rank */
    float alpha, scale;          /* scale = alpha / r (rsLoRA: alpha / sqrt(r)) */
    int row0;                    /* first row of the slice in the host weight */
    float *W0;                   /* host weight rows [row0, row0+m): (m, n), row stride n; frozen */
    float *bias;                 /* host bias slice (m) or NULL */
    ParamSet *ps;                /* where the adapter's tensors live (one allocation for all adapters) */
    int t[4];                    /* indices of its tensors in ps (meaning defined by the kind) */
    float *saved[4];             /* forward activations for backward (arena memory) */
    int nt;                      /* number of tensors registered */
};

/* A host linear layer of a model: weight (out, in), optional bias, and the adapters attached to slices of
 * it. linear_slot_forward/backward are what models call for every linear. */
#define SLOT_MAX_ADAPTERS 4
typedef struct LinearSlot LinearSlot;
/* Called after every forward of the slot with its input (N, in) and output (N, out), adapters included:
 * the initializers' "taps" (EVA, CorDA, CNTLoRA record X; ABM records pre-activations). */
typedef void (*SlotTapFn)(void *ctx, const LinearSlot *s, const float *inp, const float *out, int N);
struct LinearSlot {
    int w, b;                /* parameter indices in the model's ParamSet (b = -1: no bias) */
    int in, out;
    Adapter *ad[SLOT_MAX_ADAPTERS];
    int n_ad;
    /* Init-time capabilities (DESIGN.md "init context"); all NULL in normal training. */
    SlotTapFn tap;
    void *tap_ctx;
    float *grad_w;           /* != NULL: backward ACCUMULATES the full-weight gradient dL/dW (out, in) here even
                              * though W is frozen (LoRA-GA, LoRA-SB, information loss) */
    const float *inject;     /* != NULL: (N, out) added to the output gradient before backward (ABM's boundary
                              * loss gradient at this pre-activation); the caller sizes it for the batch */
};

/* A name a model offers for adaptation: a slice of one LinearSlot. */
typedef struct AdapterTarget {
    char name[PARAM_NAME_MAX];
    LinearSlot *slot;
    int row0, rows;
} AdapterTarget;

/* out (N, out) = inp (N, in) W^T + b + every attached adapter's contribution. */
void linear_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, const float *inp, int N, Arena *ar);
/* ACCUMULATES dinp (N, in) (NULL = not wanted), the host weight/bias grads if trainable, and the
 * adapters' grads. */
void linear_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, const float *dout, const float *inp,
                          int N, Arena *ar);

/* All adapters of a model and their parameters, in one allocation. */
typedef struct AdapterSet {
    Adapter *a;
    int n;
    ParamSet params;
} AdapterSet;

typedef struct AdapterSpec {
    const AdapterKind *kind;
    int r;
    float alpha;
    int rslora; /* 1: scale = alpha / sqrt(r) */
    /* Optional per-target ranks (EVA, VAS): ranks[i] for the i-th matched target in target order (n_ranks of
     * them); 0 leaves that layer unadapted. alpha_i = alpha * r_i / r, so the scale stays alpha / r. */
    const int *ranks;
    int n_ranks;
} AdapterSpec;

/* Attach one adapter per target whose name matches any of the globs in patterns (n_patterns), register
 * and allocate the adapters' tensors and run the kind's default init (seeded per target name).
 * Returns the number attached, or -1 with err when a pattern matches nothing or a target would get two
 * adapters (e.g. "attn.qkv" together with "attn.qkv:q"). */
struct Error;
int adapters_attach(AdapterSet *set, AdapterTarget *targets, int n_targets, ParamSet *model_ps,
                    const char *const *patterns, int n_patterns, const AdapterSpec *spec, uint64_t seed,
                    struct Error *err);
void adapters_free(AdapterSet *set, AdapterTarget *targets, int n_targets);
#endif
