/* methods/abm.h: ABM-LoRA stage 1, activation boundary matching (METHODS.md, "ABM-LoRA (activation boundary
 * matching), a stage before fine-tuning"). Before fine-tuning, the student adapter is trained, without labels,
 * so that the signs of its pre-activations z^l at the match points match the teacher's t^l (frozen backbone +
 * optional teacher adapter) with a margin mu:
 *   L_ABM = (1 / L) sum_l lambda_l * mean_over_units( 1[t > 0] max(0, mu - z)^2 + 1[t <= 0] max(0, mu + z)^2 )
 * Match points, numbered 0.. in depth order (the layer specs and AbmOptions.layers index them):
 *   ViT: blocks.l.mlp.fc1's output, pre-GELU (point l = block l); units per sample T x mlp_hidden.
 *   CNN (core/cnn.h cnn_pre_relu_point): every conv whose output reaches a ReLU directly or through its
 *        batchnorm; z = the value the ReLU reads (the BN output when a BN sits between, which in stage 1's
 *        eval-mode forwards is the per-channel affine map of the conv output with the running statistics).
 *        ResNet: the stem conv1 and each block's conv1 (a block's conv2 / downsample feed the residual add);
 *        VGG: every conv. Units per sample C x H x W; named by the conv (layer1.0.conv1, features.3).
 * The gradient dL/dz is injected at the match points (ViT: LinearSlot.inject on fc1; CNN: CnnModel.inject_act
 * on the pre-ReLU activation) and reaches the adapters through the forward path, whether or not the matched
 * layer itself is adapted; only the student adapter's trainable tensors are updated (AdamW or SGD, its own lr).
 * (METHODS.md's `match: adapted` option, matching the adapted layers' outputs instead, is not implemented.) */
#ifndef METHODS_ABM_H
#define METHODS_ABM_H
#include "core/adapter.h"
#include "core/arena.h"
#include "core/model.h"
#include "core/optim.h"
#include "methods/init.h"

/* Layer weights lambda_l over the L selected layers in depth order l = 1..L. */
typedef enum { ABM_UNIFORM = 0, ABM_LINEAR = 1, ABM_QUADRATIC = 2 } AbmWeighting;

/* weight * mean over the n units of 1[t > 0] max(0, mu - z)^2 + 1[t <= 0] max(0, mu + z)^2; WRITES dz (n) =
 * its gradient: -2 max(0, mu - z) where t > 0, +2 max(0, mu + z) where t <= 0, times weight / n.
 * dz may be NULL (loss only). Accumulated in double. */
double abm_boundary_loss(float *dz, const float *t, const float *z, long n, float mu, float weight);
/* Fraction of the n units whose sign disagrees: (z > 0) != (t > 0). */
double abm_sign_mismatch(const float *t, const float *z, long n);

/* lambda (L): uniform 1; linear l / L; quadratic (l / L)^2, l = 1..L. */
void abm_layer_weights(AbmWeighting w, int L, float *lambda);
/* "uniform", "linear", "quadratic" or its alias "sequential" (the paper's name, per the official code). */
int abm_weighting_parse(const char *s, AbmWeighting *w, Error *err);
/* Layer subset spec -> ascending distinct match-point indices in [0, depth) (depth = abm_n_points): "all",
 * "last:K" (or "LK"), "first:K" (or "FK"), or an explicit list / ranges "0,2,5-7". Returns L (>= 1), or -1
 * with err naming the spec. layers holds depth entries. */
int abm_parse_layers(const char *spec, int depth, int *layers, Error *err);

/* The model's match points: how many, units per sample of point j (ViT T x mlp_hidden, CNN C x H x W of the
 * pre-ReLU activation), and its name for records (blocks.j.mlp.fc1; the CNN conv's module name). */
int abm_n_points(const Model *m);
long abm_point_units(const Model *m, int j);
void abm_point_name(const Model *m, int j, char *buf, size_t cap);

typedef struct AbmOptions {
    float mu;                /* margin (paper: 0.5) */
    AbmWeighting weighting;
    const int *layers;       /* match-point indices, ascending = depth order; NULL: all match points */
    int n_layers;
    int steps;               /* stage-1 optimizer steps (one init batch each; batches cycle when exhausted) */
    int batch;               /* images per step */
    OptKind opt;             /* OPT_ADAMW (default) or OPT_SGD */
    float lr;
    float weight_decay;      /* AdamW: 0.01 = torch's default, as the official code */
    float momentum;          /* SGD */
} AbmOptions;

/* Per-step record in caller-sized arrays (any may be NULL): loss[steps] (total, before the step's update),
 * layer_loss[steps * L] (the unweighted mean-over-units term of each layer), mismatch[steps * L] (sign-mismatch
 * fraction per layer), time_s[steps] (wall time since the start), rss_bytes[steps] (the process's peak resident
 * memory so far, getrusage). steps_done is set by abm_stage1. */
typedef struct AbmTrace {
    double *loss, *layer_loss, *mismatch, *time_s, *rss_bytes;
    int steps_done;
} AbmTrace;

/* Stage 1 on a ViT or a CNN. The teacher is the backbone plus teacher's adapters (NULL: the backbone alone). teacher
 * is an AdapterSet that is NOT attached to the model's slots (build it with adapters_attach, then abm_detach);
 * for each teacher forward its adapters are placed, by target name, on the model's slots in place of the
 * student's, so its rank and kind may differ from the student's. Eval-mode forwards (no dropout). Every
 * trainable tensor of student->params is updated; the backbone's gradients are zeroed at the end (they are
 * not stepped). Returns the steps taken, or -1 with err. */
int abm_stage1(Model *m, AdapterSet *student, const AdapterSet *teacher, InitData *data, const AbmOptions *o,
               AbmTrace *trace, Error *err);

/* Remove set's adapters from the model's slots without freeing them (a teacher set; adapters_free still
 * frees it later). */
void abm_detach(AdapterSet *set, Model *m);

/* The pieces of one step, public for tests and for the metrics:
 * teacher pre-activations t[j] (B, abm_point_units(layers[j])) of match point layers[j] on x (B images). */
int abm_teacher_acts(Model *m, const AdapterSet *student, const AdapterSet *teacher, const int *layers, int L,
                     const float *x, int B, float *const *t, Arena *ar, Error *err);
/* The student forward on x with the fixed teacher t: returns L_ABM (lambda[L] from abm_layer_weights), fills
 * layer_loss[L] / mismatch[L] (may be NULL); backward = 1 also ACCUMULATES dL_ABM/d(trainable) by injecting
 * dL/dz at the match points and running the backward with dlogits = 0. */
double abm_student_loss(Model *m, const int *layers, int L, const float *lambda, float mu, const float *x, int B,
                        const float *const *t, int backward, double *layer_loss, double *mismatch, Arena *ar);
#endif
