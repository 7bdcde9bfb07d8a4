/* experiments/metrics.h: the research metrics a fine-tuning run records (METHODS.md, "Research metrics
 * (eval/)"; config section `metrics:`, docs/config.md; what is recorded and where: docs/metrics.md).
 *
 * Per adapted layer, with the adapters' target names as the column names of HDF5 row series:
 *   - information loss ||G - P_T(G)||_F / ||G||_F at the adapter's current tangent space, G = dL/dW of the
 *     layer on a FIXED metrics batch (eval mode, no update), at step 0 (after init, before training) and
 *     every `every` steps and at the end; its decomposition against the pretrained point (G_full = dL/dW of
 *     the backbone before the initializer ran, on the same batch; metrics.info_loss_reference: teacher takes
 *     G_full at the teacher point instead, the backbone plus ABM's teacher adapter method.params.abm.teacher);
 *     LoRA and LoRA-XS adapters (the latter on its product-form tangent space);
 *   - gradient variance of each adapter factor (A, B): cheap = Welford over the K training steps that end at a
 *     recorded step (mixes in the drift of those steps); exact = K extra mini-batches at the current weights,
 *     no update; raw and divided by ||mean gradient||^2; and E_A = ||A A^T - I_r||_2;
 *   - at the end: drift (cosine and spectral norm of final - init for A, B, dW), spectra of the final dW;
 *   - cost: init wall time, fine-tune wall time, init share, peak memory (SQLite results).
 *
 * The metrics never change the training trajectory: their forwards run in eval mode on their own batches,
 * buffers and arena, draw from their own RNG streams, touch no parameter and no optimizer state (they leave
 * the adapters' gradient buffers dirty, which every training step zeroes before its backward), and the
 * training loop's timing excludes them (train_s). tests/test_metrics.c checks bit-identical losses.
 * Memory: everything is allocated by metrics_create / metrics_begin; the per-step hook (cheap grad-variance
 * accumulation) allocates nothing; a recorded step calls eval/ and LAPACK, which allocate small scratch. */
#ifndef EXPERIMENTS_METRICS_H
#define EXPERIMENTS_METRICS_H
#include <stdint.h>

#include "config.h"
#include "core/adapter.h"
#include "core/model.h"
#include "datasets/imageset.h"
#include "results/db.h"
#include "results/h5rec.h"

typedef enum { GRADVAR_OFF = 0, GRADVAR_CHEAP = 1, GRADVAR_EXACT = 2 } GradVarMode;

typedef struct MetricsConfig {
    int enabled;        /* metrics.enabled (true): false turns every research metric off (cost is still put) */
    int every;          /* record every N steps (besides step 0 and the end); 0: only step 0 and the end */
    int batch;          /* images of the fixed metrics batch (0: the trainer's batch) */
    int info_loss;      /* information loss per layer */
    int decompose;      /* its decomposition against the pretrained point */
    int il_teacher;     /* metrics.info_loss_reference: teacher: G_full at the backbone + ABM's teacher adapter */
    GradVarMode gv_mode;
    int gv_window;      /* K: training steps (cheap) or extra mini-batches (exact) */
    int drift, spectra; /* at the end */
    double spectra_tol; /* numerical rank: sigma_i > tol sigma_1 */
} MetricsConfig;

/* metrics.* of a resolved config (absent keys: the defaults of docs/config.md). */
int metrics_config(MetricsConfig *mc, const CfgNode *c, Error *err);

typedef struct Metrics Metrics;

/* Before the initializer runs (the pretrained point): draws the metrics batch from train (seeded stream
 * "metrics.batch") and, with decompose, computes G_full for every target matched by method.targets (with
 * il_teacher: the teacher adapter is attached for that pass and removed again; -1 with err when the config has
 * no ABM teacher or it does not load). Freezes the
 * backbone and allocates its gradients (what attach_method does first anyway). *out = NULL (and 0) when the
 * config has no adapters or metrics are off. batch = the trainer's batch, smoothing = its label smoothing. */
int metrics_create(Metrics **out, const MetricsConfig *mc, const CfgNode *c, Model *m, const ImageSet *train,
                   uint64_t seed, int batch, float smoothing, Error *err);

/* After the initializer: binds the adapters, allocates every workspace, snapshots the init factors (a fresh
 * run writes them to init_path, a safetensors file; a resumed run reads them back from it, so call this
 * BEFORE the checkpoint is loaded) and, on a fresh run, records step 0 (HDF5, and db: layer_results and
 * results *_step0). total_steps: the run's steps. db, run_id are kept for metrics_end. */
int metrics_begin(Metrics *mx, AdapterSet *ad, H5Rec *h5, Db *db, const char *run_id, const char *init_path,
                  int resume, long total_steps, Error *err);

/* After every training step (0-based step index; the adapters' gradients of that step are still in their
 * buffers): cheap grad-variance accumulation, and every `every` steps (and at the last) the recorded metrics.
 * loss: the step's training loss (train_loss_step0 / train_loss_early, the mean over the first `every` steps).
 * Returns -1 with err on a failure (an HDF5 write). */
int metrics_on_step(Metrics *mx, long step, double loss, Error *err);

/* After a resumed run loaded its checkpoint (steps_done = the checkpoint's step): the run file lost the rows at
 * steps >= steps_done (h5rec_truncate_after), so a record due at steps_done is taken again, at the checkpoint's
 * weights, which are that step's. (A cheap grad-variance window cut by the interruption is not recorded.) The
 * early training loss (train_loss_step0, train_loss_early) goes to the database as soon as its steps are done,
 * so a run resumed after them keeps those values; resumed inside the first `every` steps, train_loss_early is
 * NaN (its window was cut). tests/test_metrics.c it_metrics_resume: killed + resumed = uninterrupted, bit for bit. */
int metrics_resume(Metrics *mx, long steps_done, Error *err);

/* At the end of a finished run: drift and spectra (HDF5 and SQLite), per-layer summaries (layer_results) and
 * scalar summaries (results). mx may be NULL (only the cost is put). */
typedef struct MetricsCost {
    double init_s;          /* the init stage's wall time */
    double finetune_wall_s; /* the fine-tune stage's wall time (steps, evaluations, metrics) */
    double train_s;         /* the training steps alone */
} MetricsCost;
int metrics_end(Metrics *mx, Db *db, const char *run_id, const MetricsCost *cost, Error *err);

/* Seconds spent in the metrics so far (create, begin, steps, end). */
double metrics_seconds(const Metrics *mx);
void metrics_free(Metrics *mx);

#endif
