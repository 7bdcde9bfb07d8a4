/* core/adapter.h: the seam every adapter plugs into (DESIGN.md, "The seam every method plugs into").
 * An adapted linear computes  y = x W0^T + b + contribution(adapter, x)  on a slice of output rows
 * [row0, row0 + m) of a host linear (a whole nn.Linear, or the q / k / v third of timm's fused qkv).
 * An adapted conv (core/cnn.c) convolves with W_eff = W0 + sum of its adapters' dW, the kernel
 * (C_out, C_in, kh, kw) seen as the (m, n) = (C_out, C_in kh kw) matrix it is in memory.
 * An AdapterKind is a table of functions (methods/ implements them: LoRA, DoRA, LoRA-XS, LAVA, ...); the
 * engine only calls through the table, so core/ knows no method.
 * Backends: the forward/backward functions receive CPU pointers today; a CUDA kind fills the same table. */
#ifndef CORE_ADAPTER_H
#define CORE_ADAPTER_H
#include <stdint.h>

#include "arena.h"
#include "cpu/conv2d.h"
#include "params.h"

typedef struct Adapter Adapter;
struct Error;

/* The tangent space of an adapter's image {dW} at its current point, as orthonormal bases (eval/tangent.h
 * projects with them, METHODS.md "Research metrics"): QB (m, kb) spans the output side, QA (n, ka) the input
 * side (row-major, malloc'ed; kb or ka may be 0, then that pointer may be NULL).
 *   product = 0 (LoRA: B and A both train):  P(M) = QB QB^T M + M QA QA^T - QB QB^T M QA QA^T
 *   product = 1 (LoRA-XS: only R trains):    P(M) = QB QB^T M QA QA^T */
typedef struct TangentBasis {
    float *QB, *QA;
    int kb, ka;
    int product;
} TangentBasis;
void tangent_basis_free(TangentBasis *tb);

typedef struct AdapterKind {
    const char *name;
    /* Register the adapter's tensors in ps (names "<target>.<tensor>", e.g. blocks.0.attn.qkv:q.lora_A).
     * a->m, n, r (and kh, kw on conv targets) and the kind options are set. */
    void (*create)(Adapter *a, ParamSet *ps);
    /* The kind's default initialization (plain LoRA: A kaiming-uniform, B = 0). Initializers in methods/
     * may overwrite the tensors afterwards. */
    void (*init_default)(Adapter *a, uint64_t seed);
    /* out (N, ldo): rows' columns [row0, row0+m) already hold x W0^T + b; ADD the adapter's part.
     * May keep activations for backward in a->saved[] (allocated from ar). NULL: the kind adapts conv
     * layers only (it has no per-token form; LAVA-conv). */
    void (*forward)(Adapter *a, float *out, int ldo, const float *inp, int N, Arena *ar);
    /* dout (N, ldo) (use columns [row0, row0+m)); ACCUMULATE the adapter's parameter gradients (those of
     * trainable tensors) and dinp (N, n) (NULL = not wanted). Uses a->saved[] from the last forward.
     * NULL exactly when forward is. */
    void (*backward)(Adapter *a, float *dinp, const float *dout, int ldo, const float *inp, int N, Arena *ar);
    /* dW (m, n) = the adapter's effective weight change (s B A for LoRA), for metrics, merging and conv
     * layers (called every conv forward: no malloc; persistent scratch goes in a->work). */
    void (*delta_weight)(const Adapter *a, float *dW);
    /* Gradient from the delta: g (m, n) = dL/d(dW); ACCUMULATE the factor gradients (trainable tensors
     * only; LoRA: dB += s g A^T, dA += s B^T g). Conv slots call it with dL/dW_eff after conv2d_backward.
     * ar: scratch. NULL: the kind cannot adapt conv layers. */
    void (*backward_delta)(Adapter *a, const float *g, Arena *ar);
    /* Regularizer (LAVA): returns the penalty at the current factors; grad != 0: also ACCUMULATE its
     * gradient into the factor gradients (trainable tensors only). ar: scratch. NULL: no regularizer. */
    double (*regularizer)(Adapter *a, int grad, Arena *ar);
    /* tb = the tangent space's bases at the current point; -1 with err on a non-finite factor. NULL: the
     * image is not a linear space of this form (DoRA's magnitudes, LAVA-conv's CP factors). */
    int (*tangent_basis)(const Adapter *a, TangentBasis *tb, struct Error *err);
    /* Shape check before create (a->m, n, r, kh, kw and options set): -1 with err naming a->target (LAVA:
     * the rank must fit the regularized factors). NULL: any shape (LoRA allows r > min(m, n), as PEFT). */
    int (*check)(const Adapter *a, struct Error *err);
} AdapterKind;

/* Kind options (AdapterSpec -> Adapter); their meaning is the kind's (methods/lava.h). */
typedef struct AdapterOptions {
    float reg_lambda;    /* regularizer weight (LAVA lambda); 0: no penalty */
    unsigned reg_mask;   /* which factors the regularizer covers (kind-defined bits); 0: the kind's default */
    int init_variant;    /* the kind's default-init variant (LAVA-conv: 0 V = 0, 1 U = 0) */
} AdapterOptions;

struct Adapter {
    const AdapterKind *kind;
    char target[PARAM_NAME_MAX]; /* the model's name for the adapted slice, e.g. blocks.3.attn.qkv:v */
    int m, n, r;                 /* out rows of the slice, in features (conv: C_in kh kw), rank */
    int kh, kw;                  /* conv targets: kernel size (n = C_in kh kw); 0 on linear targets */
    float alpha, scale;          /* scale = alpha / r (rsLoRA: alpha / sqrt(r)) */
    int row0;                    /* first row of the slice in the host weight */
    float *W0;                   /* host weight rows [row0, row0+m): (m, n), row stride n; frozen */
    float *bias;                 /* host bias slice (m) or NULL */
    ParamSet *ps;                /* where the adapter's tensors live (one allocation for all adapters) */
    int t[4];                    /* indices of its tensors in ps (meaning defined by the kind) */
    float *saved[4];             /* forward activations for backward (arena memory) */
    int nt;                      /* number of tensors registered */
    AdapterOptions opt;          /* kind options */
    float *work;                 /* kind-owned persistent scratch (malloc'ed by create, freed by adapters_free) */
    float *merged_dW;            /* != NULL while merged (adapter_merge): the dW added to W0; the slot skips it */
};

/* A host linear layer of a model: weight (out, in), optional bias, and the adapters attached to slices of
 * it. linear_slot_forward/backward are what models call for every linear. A conv layer is a slot too
 * (is_conv = 1): its weight (C_out, C_in, kh, kw) is the (out, in) = (C_out, C_in kh kw) matrix, and
 * models call conv_slot_forward/backward. */
#define SLOT_MAX_ADAPTERS 4
typedef struct LinearSlot LinearSlot;
/* Called after every forward of the slot with its input and output, adapters included: the initializers'
 * "taps" (EVA, CorDA, CNTLoRA record X; ABM records pre-activations). Linear slots: inp (N, in), out
 * (N, out), N rows. Conv slots (s->is_conv): inp (B, C_in, H, W), out (B, C_out, H_out, W_out) NCHW with
 * N = B and the sizes in s->conv; a tap written for linears must check is_conv. */
typedef void (*SlotTapFn)(void *ctx, const LinearSlot *s, const float *inp, const float *out, int N);
struct LinearSlot {
    int w, b;                /* parameter indices in the model's ParamSet (b = -1: no bias) */
    int in, out;
    Adapter *ad[SLOT_MAX_ADAPTERS];
    int n_ad;
    int is_conv;             /* 1: a conv layer (conv_slot_*), shape in conv */
    ConvShape conv;          /* conv slots: the layer's shape (conv.B = batch of the last forward) */
    float *w_eff;            /* conv slots: W0 + sum dW of the last forward (arena), NULL when no adapter ran */
    /* Init-time capabilities (DESIGN.md "init context"); all NULL in normal training. */
    SlotTapFn tap;
    void *tap_ctx;
    float *grad_w;           /* != NULL: backward ACCUMULATES the full-weight gradient dL/dW (out, in) here even
                              * though W is frozen (LoRA-GA, LoRA-SB, information loss); conv slots: dL/dW_eff,
                              * (C_out, C_in kh kw) */
    const float *inject;     /* != NULL: added to the output gradient before backward (ABM's boundary loss
                              * gradient at this pre-activation); linear (N, out), conv (B, C_out, H_out, W_out);
                              * the caller sizes it for the batch */
};

/* A name a model offers for adaptation: a slice of one LinearSlot. */
typedef struct AdapterTarget {
    char name[PARAM_NAME_MAX];
    LinearSlot *slot;
    int row0, rows;
} AdapterTarget;

/* out (N, out) = inp (N, in) W^T + b + every attached (unmerged) adapter's contribution. Asserts the slot is
 * a linear one. */
void linear_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, const float *inp, int N, Arena *ar);
/* ACCUMULATES dinp (N, in) (NULL = not wanted), the host weight/bias grads if trainable, and the
 * adapters' grads. */
void linear_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, const float *dout, const float *inp,
                          int N, Arena *ar);

/* Conv slots. out (B, C_out, H_out, W_out) = conv(inp (B, C_in, H, W), W_eff) + b, W_eff = W0 + the sum of
 * the unmerged adapters' delta_weight, materialized into s->w_eff (arena) only when an adapter is attached;
 * col_scratch: conv2d_scratch_floats(s->conv) floats. s->conv.B must equal B (the model sets it). */
void conv_slot_forward(LinearSlot *s, const ParamSet *ps, float *out, float *col_scratch, const float *inp, int B,
                       Arena *ar);
/* ACCUMULATES dinp (B, C_in, H, W) (NULL = not wanted), the host weight/bias grads if trainable, grad_w, and
 * the adapters' grads: dL/dW_eff is formed once (conv2d_backward) and handed to each adapter's
 * backward_delta. dout (B, C_out, H_out, W_out) (+ inject). Uses s->w_eff of the last forward. */
void conv_slot_backward(LinearSlot *s, const ParamSet *ps, float *dinp, float *col_scratch, const float *dout,
                        const float *inp, int B, Arena *ar);

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
    AdapterOptions opt; /* kind options, copied into every adapter (zero: the kind's defaults) */
} AdapterSpec;

/* Attach one adapter per target whose name matches any of the globs in patterns (n_patterns), register
 * and allocate the adapters' tensors and run the kind's default init (seeded per target name).
 * Returns the number attached, or -1 with err (nothing stays attached) when a pattern matches nothing, a
 * target would get two adapters (e.g. "attn.qkv" together with "attn.qkv:q"), the kind cannot adapt a
 * matched layer (no forward: conv only; no backward_delta: linear only) or the kind's check fails. */
int adapters_attach(AdapterSet *set, AdapterTarget *targets, int n_targets, ParamSet *model_ps,
                    const char *const *patterns, int n_patterns, const AdapterSpec *spec, uint64_t seed,
                    struct Error *err);
void adapters_free(AdapterSet *set, AdapterTarget *targets, int n_targets);

/* W0 += dW (the adapter's current delta) and mark it merged: slots then skip it (forward, backward and
 * conv materialization), so the model computes the same function without the adapter's work. The dW is
 * kept, and adapter_unmerge subtracts exactly it (W0 restored to rounding: one add and one subtract), so
 * kinds whose dW reads W0 (DoRA) unmerge right too. No-op when already merged / not merged. */
void adapter_merge(Adapter *a);
void adapter_unmerge(Adapter *a);
/* Sum of every adapter's regularizer penalty; grad != 0: their gradients are ACCUMULATED too. 0 when no
 * adapter has a regularizer or lambda = 0. */
double adapters_regularize(AdapterSet *set, int grad, Arena *ar);
/* 1 when some adapter of the set has a regularizer with lambda > 0 (the trainer records the penalty). */
int adapters_have_regularizer(const AdapterSet *set);
#endif
