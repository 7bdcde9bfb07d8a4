/* experiments/schema.c: the experiment schema table and the validator (docs/config.md, "Adding a key"). */
#include "schema.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the experiment schema --------------------------------------------------------------------------------
 * One table per map. A key: {.name, .type, .flags, .def (YAML text), .min/.max, .values (ENUM), .keys (MAP),
 * .elem (LIST), .doc}. Defaults are filled into the resolved config before hashing (grid.h), so giving an
 * existing key a default, or changing one, changes the run ids of configs that do not set it. */
#define VALUES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define LIST_OF(...) (&(const SchemaKey){__VA_ARGS__})
#define END {.name = NULL}
#define NONNEG (SK_MIN), .min = 0
#define POSITIVE_INT (SK_MIN), .min = 1
#define UNIT (SK_MIN | SK_MAX), .min = 0, .max = 1

static const SchemaKey VIT_KEYS[] = {
    {"img_size", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "square input images, divisible by patch"},
    {"in_ch", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "input channels"},
    {"patch", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "patch size"},
    {"dim", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "embedding width"},
    {"depth", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "transformer blocks"},
    {"heads", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "attention heads (divide dim)"},
    {"mlp_hidden", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "MLP hidden width"},
    {"n_classes", SCHEMA_INT, SK_REQUIRED | SK_AUTO | POSITIVE_INT,
     .doc = "classifier outputs; auto: the dataset task's class count (with skip_head)"},
    {"pool", SCHEMA_ENUM, .def = "cls", .values = VALUES("cls", "mean"), .doc = "CLS token or mean of patch tokens"},
    {"ln_eps", SCHEMA_FLOAT, SK_MIN | SK_MAX, .def = "1e-6", .min = 1e-12, .max = 1, .doc = "layernorm epsilon"},
    END,
};

static const SchemaKey CNN_KEYS[] = {
    {"kind", SCHEMA_ENUM, SK_REQUIRED, .values = VALUES("resnet", "vgg"), .doc = "ResNet BasicBlocks or VGG convs"},
    {"width", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "channels of stage 1 (doubled per stage)"},
    {"stages", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "stages, each halving H and W"},
    {"blocks_per_stage", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "blocks (or convs) per stage"},
    {"batchnorm", SCHEMA_BOOL, .def = "true", .doc = "conv-bn-relu (true) or conv(bias)-relu"},
    {"in_ch", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "input channels"},
    {"img_h", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "input height"},
    {"img_w", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "input width"},
    {"n_classes", SCHEMA_INT, SK_REQUIRED | SK_AUTO | POSITIVE_INT,
     .doc = "classifier outputs; auto: the dataset task's class count (with skip_head)"},
    END,
};

static const SchemaKey BACKBONE_KEYS[] = {
    {"family", SCHEMA_ENUM, SK_REQUIRED, .values = VALUES("vit", "cnn"), .doc = "which of the maps below applies"},
    {"vit", SCHEMA_MAP, .keys = VIT_KEYS, .doc = "ViT shape (family: vit)"},
    {"cnn", SCHEMA_MAP, .keys = CNN_KEYS, .doc = "CNN shape (family: cnn)"},
    {"checkpoint", SCHEMA_STRING, SK_FILE, .doc = "pretrained weights (safetensors) to load"},
    {"init", SCHEMA_ENUM, .def = "timm", .values = VALUES("timm", "torch"),
     .doc = "ViT init when no checkpoint: timm's or PyTorch module defaults"},
    {"skip_head", SCHEMA_BOOL, .def = "false", .doc = "do not load the classifier head (a new task's classes)"},
    END,
};

static const SchemaKey DATASET_KEYS[] = {
    {"name", SCHEMA_ENUM, SK_REQUIRED, .values = VALUES("fashion_mnist", "vtab", "mini_vtab", "cifar10"),
     .doc = "which loader (docs/data.md)"},
    {"transform", SCHEMA_ENUM, .def = "none", .values = VALUES("none", "rot90", "vflip", "invert"),
     .doc = "a fixed transform of every image: a new task from the same data"},
    {"path", SCHEMA_STRING, SK_FILE, .doc = "the data folder or file"},
    {"train_n", SCHEMA_INT, NONNEG, .def = "0", .doc = "use the first N training examples (0: all)"},
    {"test_n", SCHEMA_INT, NONNEG, .def = "0", .doc = "use the first N test examples (0: all)"},
    /* vtab, mini_vtab, cifar10 (experiments/task.h). No .def: a default would be filled into every config
     * (fashion_mnist ones too) and change their run ids; task.c applies the defaults named in .doc. */
    {"root", SCHEMA_STRING, .doc = "folder of the task folders (vtab), of the generated suite (mini_vtab: "
                                   "runs/data/mini-vtab) or of the .bin files (cifar10)"},
    {"task", SCHEMA_ENUM, .values = VALUES("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn",
                                           "sun397", "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy",
                                           "clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc",
                                           "dsprites_ori", "smallnorb_azi", "smallnorb_ele"),
     .doc = "VTAB-1k task folder (vtab, mini_vtab)"},
    {"split", SCHEMA_ENUM, .values = VALUES("train800val200", "train800", "val200", "test"),
     .doc = "training list (default train800val200)"},
    {"eval_split", SCHEMA_ENUM, .values = VALUES("test", "val200", "train800", "train800val200"),
     .doc = "evaluation list (default test)"},
    {"normalize", SCHEMA_ENUM, .values = VALUES("imagenet", "inception", "dataset", "none", "custom"),
     .doc = "per-channel normalization (default: imagenet for vtab, dataset otherwise)"},
    {"mean", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_FLOAT), .doc = "normalize: custom: 1 or in_ch means"},
    {"std", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_FLOAT, .flags = SK_MIN, .min = 1e-12),
     .doc = "normalize: custom: 1 or in_ch standard deviations"},
    {"gen_seed", SCHEMA_INT, NONNEG, .doc = "mini_vtab: generator seed (default 0)"},
    {"gen_size", SCHEMA_INT, SK_MIN | SK_MAX, .min = 16, .max = 256, .doc = "mini_vtab: image side (default 32)"},
    END,
};

static const SchemaKey LAVA_KEYS[] = {
    {"lambda", SCHEMA_FLOAT, NONNEG, .def = "0.1", .doc = "weight of the orthogonality penalty lambda ||F^T F - I||^2"},
    {"factors", SCHEMA_STRING,
     .doc = "regularized factors: lava in (A^T, default) | out (B) | both; lava_conv U (default), U+V, ..., all"},
    {"init", SCHEMA_ENUM, .def = "v_zero", .values = VALUES("v_zero", "u_zero"),
     .doc = "lava_conv default init: V = 0 (U, X, Y random) or U = 0 (V, X, Y random)"},
    END,
};

static const SchemaKey METHOD_KEYS[] = {
    {"adapter", SCHEMA_ENUM, .def = "lora", .values = VALUES("lora", "dora", "lora_xs", "lava", "lava_conv", "none"),
     .doc = "parameterization (methods/: LoRA, DoRA, LoRA-XS, LAVA, LAVA-conv; none = head only)"},
    {"rank", SCHEMA_INT, POSITIVE_INT, .def = "8", .doc = "adapter rank r"},
    {"alpha", SCHEMA_FLOAT, NONNEG, .def = "16", .doc = "scale alpha / r (alpha / sqrt r with rslora)"},
    {"rslora", SCHEMA_BOOL, .def = "false", .doc = "rank-stabilized scaling alpha / sqrt(r)"},
    {"targets", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_STRING),
     .doc = "adapted layers, globs over parameter names (blocks.*.attn.qkv:q)"},
    {"init", SCHEMA_ENUM, .def = "kaiming",
     .values = VALUES("kaiming", "gaussian", "orthogonal", "pissa", "olora", "lora_xs", "eva", "corda", "lora_ga",
                      "lora_sb", "cnt_lora", "abm"),
     .doc = "initializer (methods/)"},
    {"params", SCHEMA_ANY, .doc = "free-form method-specific settings (method.params.abm.margin)"},
    {"lava", SCHEMA_MAP, .keys = LAVA_KEYS, .doc = "LAVA regularizer and init (adapter lava / lava_conv)"},
    {"train_head", SCHEMA_BOOL, .def = "true", .doc = "fine-tune the classifier head with the adapters"},
    END,
};

static const SchemaKey TRAINER_KEYS[] = {
    {"optimizer", SCHEMA_ENUM, .def = "adamw", .values = VALUES("adamw", "sgd")},
    {"lr", SCHEMA_FLOAT, SK_REQUIRED | NONNEG, .doc = "base learning rate"},
    {"weight_decay", SCHEMA_FLOAT, NONNEG, .def = "0"},
    {"momentum", SCHEMA_FLOAT, UNIT, .def = "0", .doc = "SGD momentum"},
    {"nesterov", SCHEMA_BOOL, .def = "false", .doc = "SGD Nesterov momentum"},
    {"beta1", SCHEMA_FLOAT, UNIT, .def = "0.9", .doc = "AdamW"},
    {"beta2", SCHEMA_FLOAT, UNIT, .def = "0.999", .doc = "AdamW"},
    {"eps", SCHEMA_FLOAT, NONNEG, .def = "1e-8", .doc = "AdamW"},
    {"batch", SCHEMA_INT, SK_REQUIRED | POSITIVE_INT, .doc = "training batch size"},
    {"epochs", SCHEMA_INT, NONNEG, .def = "1", .doc = "passes over the training set"},
    {"max_steps", SCHEMA_INT, NONNEG, .def = "0", .doc = "> 0: stop after this many steps"},
    {"schedule", SCHEMA_ENUM, .def = "constant", .values = VALUES("constant", "linear", "cosine")},
    {"warmup", SCHEMA_FLOAT, UNIT, .def = "0", .doc = "linear warmup, fraction of the total steps"},
    {"min_lr_ratio", SCHEMA_FLOAT, UNIT, .def = "0", .doc = "decay floor as a fraction of lr"},
    {"label_smoothing", SCHEMA_FLOAT, UNIT, .def = "0"},
    {"clip_norm", SCHEMA_FLOAT, NONNEG, .def = "0", .doc = "> 0: clip the global gradient norm"},
    {"hflip", SCHEMA_BOOL, .def = "false", .doc = "random horizontal flips"},
    {"eval_every", SCHEMA_INT, NONNEG, .def = "1", .doc = "evaluate every N epochs (0: at the end)"},
    {"eval_batch", SCHEMA_INT, POSITIVE_INT, .def = "500"},
    {"checkpoint_every", SCHEMA_INT, SK_NOHASH | NONNEG, .def = "200",
     .doc = "save a resumable checkpoint every N steps (0: only on SIGINT/SIGTERM)"},
    END,
};

static const SchemaKey RECORD_KEYS[] = {
    {"flush_every", SCHEMA_INT, SK_NOHASH | POSITIVE_INT, .def = "50", .doc = "HDF5 flush interval in steps"},
    {"series", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_STRING), .doc = "extra per-step series to record"},
    END,
};

/* results: and slurm: change where and how runs are recorded and scheduled, never what they compute (docs/cluster.md) */
static const SchemaKey RESULTS_KEYS[] = {
    {"shard", SCHEMA_BOOL, SK_NOHASH,
     .doc = "true: each run records into <output>/shards/<run id>.db (shared filesystems); runexp collect merges"},
    END,
};

static const SchemaKey SLURM_KEYS[] = {
    {"partition", SCHEMA_STRING, SK_NOHASH, .doc = "sbatch --partition"},
    {"account", SCHEMA_STRING, SK_NOHASH, .doc = "sbatch --account"},
    {"time", SCHEMA_STRING, SK_NOHASH, .doc = "sbatch --time per run, e.g. 2:00:00"},
    {"mem", SCHEMA_STRING, SK_NOHASH, .doc = "sbatch --mem per run, e.g. 16G"},
    {"cpus_per_task", SCHEMA_INT, SK_NOHASH | POSITIVE_INT, .doc = "sbatch --cpus-per-task (= the run's threads)"},
    {"gpus_per_task", SCHEMA_INT, SK_NOHASH | NONNEG, .doc = "sbatch --gpus-per-task"},
    {"max_parallel", SCHEMA_INT, SK_NOHASH | POSITIVE_INT, .doc = "at most this many array tasks at once (%K)"},
    END,
};

/* metrics: the research metrics of fine-tuning runs (experiments/metrics.h, docs/metrics.md). Absent = the
 * defaults below (cheap ones on); the section is part of the run id when present. */
static const SchemaKey GRAD_VAR_KEYS[] = {
    {"mode", SCHEMA_ENUM, .def = "cheap", .values = VALUES("off", "cheap", "exact"),
     .doc = "cheap: over the K training steps ending at a recorded step; exact: K extra mini-batches, no update"},
    {"window", SCHEMA_INT, SK_MIN, .min = 2, .def = "10", .doc = "K"},
    END,
};
static const SchemaKey METRICS_KEYS[] = {
    {"enabled", SCHEMA_BOOL, .def = "true", .doc = "false: no research metric (the cost results are still put)"},
    {"every", SCHEMA_INT, NONNEG, .def = "50", .doc = "record every N steps, besides step 0 and the end (0: only those)"},
    {"batch", SCHEMA_INT, NONNEG, .def = "0", .doc = "images of the fixed metrics batch (0: trainer.batch)"},
    {"info_loss", SCHEMA_BOOL, .def = "true", .doc = "information loss per layer at recorded steps"},
    {"info_loss_decompose", SCHEMA_BOOL, .def = "true",
     .doc = "total / irreducible / reducible against the pretrained point"},
    {"info_loss_reference", SCHEMA_ENUM, .values = VALUES("pretrained", "teacher"), /* no .def: keeps run ids */
     .doc = "(default pretrained) where G_full is taken: the backbone, or the backbone + ABM's teacher adapter (method.params.abm.teacher)"},
    {"grad_var", SCHEMA_MAP, .keys = GRAD_VAR_KEYS, .doc = "gradient variance of A and B"},
    {"drift", SCHEMA_BOOL, .def = "true", .doc = "at the end: cosine and spectral norm of final - init"},
    {"spectra", SCHEMA_BOOL, .def = "true", .doc = "at the end: singular values of each final dW"},
    {"spectra_tol", SCHEMA_FLOAT, SK_MIN | SK_MAX, .min = 0, .max = 1, .def = "1e-3",
     .doc = "numerical rank: sigma_i > tol sigma_1"},
    END,
};

/* report.tables[] and report.figures[] mirror results/report.h ReportTable and results/figure.h FigureOptions
 * (docs/report.md); their defaults live there, so none are given here. */
#define STRINGS LIST_OF(.type = SCHEMA_STRING)
static const SchemaKey PAPER_KEYS[] = {
    {"csv", SCHEMA_STRING, SK_REQUIRED | SK_FILE, .doc = "published numbers (shared/papers/tables format)"},
    {"tag", SCHEMA_STRING, .doc = "row suffix, default 'paper'"},
    {"label_cols", SCHEMA_STRING, .doc = "comma-separated CSV columns labelling a row"},
    {"rows", SCHEMA_LIST, .elem = STRINGS, .doc = "rows to print, by label (default all)"},
    {"col_map", SCHEMA_ANY, .doc = "map: our column -> paper column"},
    {"scale", SCHEMA_FLOAT, .doc = "multiply the paper's numbers"},
    END,
};

static const SchemaKey TABLE_KEYS[] = {
    {"name", SCHEMA_STRING, SK_REQUIRED, .doc = "file name stem"},
    {"title", SCHEMA_STRING, .doc = "first line of the notes"},
    {"where", SCHEMA_LIST, .elem = STRINGS, .doc = "key=value filters on params"},
    {"rows", SCHEMA_STRING, SK_REQUIRED, .doc = "config key whose values are the rows (method.init; a,b joins)"},
    {"row_title", SCHEMA_STRING, .doc = "header of the label column"},
    {"row_order", SCHEMA_LIST, .elem = STRINGS, .doc = "exactly these rows, in this order"},
    {"row_labels", SCHEMA_LIST, .elem = STRINGS, .doc = "printed names of row_order"},
    {"columns", SCHEMA_STRING, .doc = "config key whose values are the columns (dataset.name); or use metrics"},
    {"metrics", SCHEMA_LIST, .elem = STRINGS, .doc = "one column per result key (instead of columns + metric)"},
    {"lower_is_better", SCHEMA_LIST, .elem = STRINGS, .doc = "which of metrics bold their smallest value"},
    {"col_order", SCHEMA_LIST, .elem = STRINGS, .doc = "exactly these columns, in this order"},
    {"col_labels", SCHEMA_LIST, .elem = STRINGS, .doc = "printed names of col_order"},
    {"groups", SCHEMA_ANY, .doc = "map: group name -> list of column values (group means)"},
    {"overall_mean", SCHEMA_BOOL, .doc = "an Overall column, mean over the tasks"},
    {"metric", SCHEMA_STRING, .doc = "result key in the cells (test_acc); required unless metrics"},
    {"format", SCHEMA_STRING, .doc = "printf format of a cell"},
    {"scale", SCHEMA_FLOAT, .doc = "e.g. 100 for percent"},
    {"decimals", SCHEMA_INT, SK_MIN | SK_MAX, .min = 0, .max = 12, .doc = "digits after the point"},
    {"higher_is_better", SCHEMA_BOOL, .doc = "bold the largest (false: the smallest)"},
    {"hide_std", SCHEMA_BOOL, .doc = "cells show the mean only"},
    {"papers", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_MAP, .keys = PAPER_KEYS), .doc = "published rows"},
    END,
};

static const SchemaKey FIGURE_KEYS[] = {
    {"name", SCHEMA_STRING, SK_REQUIRED, .doc = "file name stem"},
    {"series", SCHEMA_STRING, SK_REQUIRED, .doc = "recorded series (loss, layers/info_loss)"},
    {"group_by", SCHEMA_STRING, .doc = "config key, one curve per value"},
    {"title", SCHEMA_STRING, .doc = "plot title"},
    {"x", SCHEMA_STRING, .doc = "x axis label (step)"},
    {"y", SCHEMA_STRING, .doc = "y axis label (the series)"},
    {"column", SCHEMA_STRING, .doc = "column of a per-layer series"},
    {"group_order", SCHEMA_LIST, .elem = STRINGS, .doc = "exactly these curves, in this order"},
    {"where", SCHEMA_LIST, .elem = STRINGS, .doc = "key=value filters on params"},
    {"log_x", SCHEMA_BOOL, .doc = "logarithmic x axis"},
    {"log_y", SCHEMA_BOOL, .doc = "logarithmic y axis"},
    {"no_band", SCHEMA_BOOL, .doc = "no std band"},
    {"smooth", SCHEMA_INT, NONNEG, .doc = "moving average over N points"},
    {"all_columns", SCHEMA_BOOL, .doc = "row series: one curve per column (layer)"},
    {"profile", SCHEMA_BOOL, .doc = "row series: x = the columns (layers), y = the last recorded row"},
    {"heatmap", SCHEMA_BOOL, .doc = "row series: heatmap of the last recorded row, x = the columns, y = the groups"},
    {"svg", SCHEMA_BOOL, .doc = "also write .svg"},
    {"pdf", SCHEMA_BOOL, .doc = "also write .pdf"},
    {"width", SCHEMA_INT, NONNEG, .doc = "pixels (0: 900)"},
    {"height", SCHEMA_INT, NONNEG, .doc = "pixels (0: 560)"},
    END,
};

static const SchemaKey REPORT_KEYS[] = {
    {"tables", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_MAP, .keys = TABLE_KEYS)},
    {"figures", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_MAP, .keys = FIGURE_KEYS)},
    END,
};

static const SchemaKey ROOT_KEYS[] = {
    {"name", SCHEMA_STRING, SK_REQUIRED, .doc = "experiment name (part of the run id)"},
    {"description", SCHEMA_STRING, SK_NOHASH, .doc = "free text (not part of the run id)"},
    {"output", SCHEMA_STRING, SK_NOHASH, .def = "runs", .doc = "results folder (runs.db, HDF5 files)"},
    {"device", SCHEMA_ENUM, .def = "auto", .values = VALUES("auto", "cpu", "cuda"),
     .doc = "where runs train: auto = the GPU when the run is one the GPU step supports (docs/engine.md)"},
    {"profile", SCHEMA_STRING, .doc = "the profile whose overlay was merged (runexp --profile P; docs/config.md)"},
    {"profiles", SCHEMA_ANY, .doc = "name -> overlay map merged onto the config when that profile is chosen"},
    {"requires", SCHEMA_LIST, SK_NOHASH, .elem = LIST_OF(.type = SCHEMA_STRING),
     .doc = "configs to run first (e.g. the pretraining whose checkpoint this one loads)"},
    {"save", SCHEMA_STRING, SK_NOHASH, .doc = "also copy the final model (pretrain) to this path"},
    {"seed", SCHEMA_INT, NONNEG, .def = "0", .doc = "the run's seed (set from seeds by the grid)"},
    {"seeds", SCHEMA_LIST, .elem = LIST_OF(.type = SCHEMA_INT, .flags = SK_MIN, .min = 0),
     .doc = "one run per seed per cell"},
    {"backbone", SCHEMA_MAP, SK_REQUIRED, .keys = BACKBONE_KEYS},
    {"dataset", SCHEMA_MAP, SK_REQUIRED, .keys = DATASET_KEYS},
    {"method", SCHEMA_MAP, .keys = METHOD_KEYS},
    {"trainer", SCHEMA_MAP, .keys = TRAINER_KEYS},
    {"stages", SCHEMA_LIST, SK_REQUIRED, .elem = LIST_OF(.type = SCHEMA_ENUM, .values = VALUES("pretrain", "init",
                                                                                               "finetune", "eval"))},
    {"record", SCHEMA_MAP, .keys = RECORD_KEYS},
    {"metrics", SCHEMA_MAP, .keys = METRICS_KEYS, .doc = "research metrics of fine-tuning runs (docs/metrics.md)"},
    {"report", SCHEMA_MAP, SK_NOHASH, .keys = REPORT_KEYS},
    {"results", SCHEMA_MAP, SK_NOHASH, .keys = RESULTS_KEYS},
    {"slurm", SCHEMA_MAP, SK_NOHASH, .keys = SLURM_KEYS, .doc = "defaults for runexp sweep --slurm"},
    {"grid", SCHEMA_PATHMAP, .doc = "cartesian product: config path -> list of values"},
    {"zip", SCHEMA_PATHMAP, SK_SAME_LENGTH, .doc = "paired lists: config path -> list, all the same length"},
    END,
};

const SchemaKey SCHEMA_EXPERIMENT = {.name = "", .type = SCHEMA_MAP, .keys = ROOT_KEYS};

static const SchemaKey ANY_KEY = {.name = "*", .type = SCHEMA_ANY};

/* ---- names and distances ---------------------------------------------------------------------------------- */
int schema_edit_distance(const char *a, const char *b) {
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 64 || m > 64) return abs(n - m) + 3; /* long strings are never near misses */
    int d[66][66];
    for (int i = 0; i <= n; i++) d[i][0] = i;
    for (int j = 0; j <= m; j++) d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            int c = a[i - 1] != b[j - 1];
            int v = MIN(MIN(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + c);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) v = MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    return d[n][m];
}

const char *schema_closest(const char *word, const char *const *cands, int n) {
    const char *best = NULL;
    int bd = 3, len = (int)strlen(word);
    for (int i = 0; i < n; i++) {
        int d = schema_edit_distance(word, cands[i]);
        if (d < bd && d < len) bd = d, best = cands[i];
    }
    return best;
}

static int n_keys(const SchemaKey *keys) {
    int n = 0;
    while (keys && keys[n].name) n++;
    return n;
}

/* The nearest key name of a map schema. */
static const char *closest_key(const SchemaKey *map, const char *word) {
    const char *names[128];
    int n = 0;
    for (const SchemaKey *k = map->keys; k && k->name && n < 128; k++) names[n++] = k->name;
    return schema_closest(word, names, n);
}

const char *schema_type_name(const SchemaKey *k, char *buf, size_t size) {
    char inner[256];
    switch (k->type) {
    case SCHEMA_ANY: snprintf(buf, size, "anything"); break;
    case SCHEMA_INT:
    case SCHEMA_FLOAT: {
        const char *t = k->type == SCHEMA_INT ? "int" : "float";
        if ((k->flags & SK_MIN) && (k->flags & SK_MAX)) snprintf(buf, size, "%s in [%g, %g]", t, k->min, k->max);
        else if (k->flags & SK_MIN) snprintf(buf, size, "%s >= %g", t, k->min);
        else if (k->flags & SK_MAX) snprintf(buf, size, "%s <= %g", t, k->max);
        else snprintf(buf, size, "%s", t);
        if (k->flags & SK_AUTO) snprintf(buf + strlen(buf), size - strlen(buf), " or auto");
        break;
    }
    case SCHEMA_BOOL: snprintf(buf, size, "bool"); break;
    case SCHEMA_STRING: snprintf(buf, size, k->flags & SK_FILE ? "path" : "string"); break;
    case SCHEMA_ENUM: {
        size_t len = (size_t)snprintf(buf, size, "one of ");
        for (int i = 0; k->values && k->values[i] && len < size; i++)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", k->values[i]);
        break;
    }
    case SCHEMA_LIST: {
        static const char *const plural[] = {[SCHEMA_INT] = "ints", [SCHEMA_FLOAT] = "floats", [SCHEMA_BOOL] = "bools",
                                             [SCHEMA_STRING] = "strings", [SCHEMA_MAP] = "maps"};
        const SchemaKey *e = k->elem;
        if (e->type < (int)ARRAY_LEN(plural) && plural[e->type] && !(e->flags & (SK_MIN | SK_MAX | SK_FILE))) {
            snprintf(buf, size, "a list of %s", plural[e->type]);
        } else if ((e->type == SCHEMA_INT || e->type == SCHEMA_FLOAT) && !(e->flags & SK_FILE)) {
            schema_type_name(e, inner, sizeof inner); /* "int >= 0" -> "ints >= 0" */
            size_t t = strcspn(inner, " ");
            snprintf(buf, size, "a list of %.*ss%s", (int)t, inner, inner + t);
        } else if (e->type == SCHEMA_ENUM) {
            snprintf(buf, size, "a list, each %s", schema_type_name(e, inner, sizeof inner));
        } else {
            snprintf(buf, size, "a list of %s", schema_type_name(e, inner, sizeof inner));
        }
        break;
    }
    case SCHEMA_MAP: snprintf(buf, size, "a map"); break;
    case SCHEMA_PATHMAP: snprintf(buf, size, "a map of config paths to lists"); break;
    }
    return buf;
}

/* ---- lookup ----------------------------------------------------------------------------------------------- */
static const SchemaKey *find_key(const SchemaKey *map, const char *name, size_t len) {
    for (const SchemaKey *k = map->keys; k && k->name; k++)
        if (strlen(k->name) == len && !strncmp(k->name, name, len)) return k;
    return NULL;
}

/* A grid / zip key may name any config path except the sections that drive the expansion itself. */
static int varyable(const SchemaKey *root, const char *path) {
    if (!strcmp(path, "seed") || !strcmp(path, "seeds")) return 0;
    const SchemaKey *t = schema_lookup(root, path);
    return t && t->type != SCHEMA_PATHMAP;
}

const SchemaKey *schema_child(const SchemaKey *root, const SchemaKey *parent, const char *key) {
    if (!parent) return NULL;
    switch (parent->type) {
    case SCHEMA_ANY: return &ANY_KEY;
    case SCHEMA_MAP: return find_key(parent, key, strlen(key));
    case SCHEMA_PATHMAP: return varyable(root, key) ? &ANY_KEY : NULL;
    default: return NULL;
    }
}

const SchemaKey *schema_lookup(const SchemaKey *root, const char *path) {
    const SchemaKey *k = root;
    const char *p = path;
    for (;;) {
        if (k->type == SCHEMA_ANY) return &ANY_KEY;
        if (k->type == SCHEMA_PATHMAP) return varyable(root, p) ? &ANY_KEY : NULL;
        if (k->type != SCHEMA_MAP) return NULL;
        size_t len = strcspn(p, ".");
        if (!(k = find_key(k, p, len))) return NULL;
        if (!p[len]) return k;
        p += len + 1;
    }
}

static int suggest_rec(const SchemaKey *root, const char *path, char *buf, size_t size) {
    const SchemaKey *k = root;
    const char *p = path;
    size_t len = 0;
    buf[0] = 0;
    for (;;) {
        if (k->type == SCHEMA_ANY) {
            snprintf(buf + len, size - len, "%s", p);
            return 0;
        }
        if (k->type == SCHEMA_PATHMAP) {
            if (varyable(root, p)) {
                snprintf(buf + len, size - len, "%s", p);
                return 0;
            }
            if (suggest_rec(root, p, buf + len, size - len) || !varyable(root, buf + len)) return -1;
            return 0;
        }
        if (k->type != SCHEMA_MAP) return -1;
        size_t sl = strcspn(p, ".");
        char seg[128];
        if (sl >= sizeof seg) return -1;
        memcpy(seg, p, sl);
        seg[sl] = 0;
        const SchemaKey *c = find_key(k, seg, sl);
        if (!c) {
            const char *near = closest_key(k, seg);
            if (!near) return -1;
            c = find_key(k, near, strlen(near));
        }
        len += (size_t)snprintf(buf + len, size - len, "%s%s", c->name, p[sl] ? "." : "");
        if (len >= size) return -1;
        if (!p[sl]) return 0;
        k = c;
        p += sl + 1;
    }
}

int schema_suggest_path(const SchemaKey *root, const char *path, char *buf, size_t size) {
    if (suggest_rec(root, path, buf, size) || !strcmp(buf, path)) { /* no suggestion, or the same path */
        buf[0] = 0;
        return -1;
    }
    return 0;
}

/* ---- validation ------------------------------------------------------------------------------------------- */
typedef struct Validator {
    const SchemaKey *root;
    unsigned flags;
    SchemaReport *rep;
    const CfgNode *varied[2]; /* the config's grid and zip maps: keys they set are not missing */
} Validator;

/* Whether the grid or zip sets path (or something inside it, which creates it). */
static int varied(const Validator *v, const char *path) {
    size_t n = strlen(path);
    for (int g = 0; g < 2; g++) {
        const CfgNode *m = v->varied[g];
        for (int i = 0; m && m->kind == CFG_MAP && i < m->n; i++)
            if (!strncmp(m->entries[i].key, path, n) && (m->entries[i].key[n] == 0 || m->entries[i].key[n] == '.'))
                return 1;
    }
    return 0;
}

static void verr(Validator *v, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void verr(Validator *v, const char *file, int line, int col, const char *fmt, ...) {
    v->rep->total++;
    if (v->rep->n == SCHEMA_MAX_ERRORS) return;
    char *m = v->rep->msg[v->rep->n++];
    size_t size = sizeof v->rep->msg[0];
    int len = snprintf(m, size, "%s:%d:%d: ", file, line, col);
    if (len < 0 || (size_t)len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m + len, size - (size_t)len, fmt, ap);
    va_end(ap);
}
#define VERR_AT(v, node, ...) verr(v, (node)->file, (node)->line, (node)->col, __VA_ARGS__)

/* "trainer.lr" from "trainer" + "lr"; the root's children have no prefix. */
static void join(char *out, size_t size, const char *path, const char *key) {
    snprintf(out, size, "%s%s%s", path, *path ? "." : "", key);
}
/* "in trainer" or "at the top level" */
static const char *where_in(const char *path, char *buf, size_t size) {
    if (*path) snprintf(buf, size, "in %s", path);
    else snprintf(buf, size, "at the top level");
    return buf;
}

static void check(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path);

static void type_error(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path) {
    char t[300], d[96];
    if (k->type == SCHEMA_INT || k->type == SCHEMA_FLOAT) /* the type alone; a range is reported when it fails */
        snprintf(t, sizeof t, "%s%s", k->type == SCHEMA_INT ? "int" : "float", k->flags & SK_AUTO ? " or auto" : "");
    else
        schema_type_name(k, t, sizeof t);
    VERR_AT(v, n, "%s: expected %s, found %s", path, t, cfg_describe(n, d, sizeof d));
}

static void check_range(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path, double x) {
    if (((k->flags & SK_MIN) && !(x >= k->min)) || ((k->flags & SK_MAX) && !(x <= k->max))) {
        char t[300];
        VERR_AT(v, n, "%s: %s is out of range (expected %s)", path, n->text, schema_type_name(k, t, sizeof t));
    }
}

static void check_map(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path) {
    for (int i = 0; i < n->n; i++) {
        const CfgEntry *e = &n->entries[i];
        char sub[512];
        join(sub, sizeof sub, path, e->key);
        const SchemaKey *c = find_key(k, e->key, strlen(e->key));
        if (!c) {
            const char *near = closest_key(k, e->key);
            char in[540];
            if (near)
                verr(v, e->file, e->line, e->col, "unknown key '%s' %s (did you mean '%s'?)", e->key,
                     where_in(path, in, sizeof in), near);
            else
                verr(v, e->file, e->line, e->col, "unknown key '%s' %s", e->key, where_in(path, in, sizeof in));
            continue;
        }
        check(v, e->val, c, sub);
    }
    if (v->flags & SCHEMA_FRAGMENT) return;
    for (const SchemaKey *c = k->keys; c && c->name; c++) {
        if (!(c->flags & SK_REQUIRED)) continue;
        const CfgNode *val = cfg_map_get(n, c->name);
        char in[540], sub[512];
        join(sub, sizeof sub, path, c->name);
        if (varied(v, sub)) continue;
        if (!val) VERR_AT(v, n, "missing required key '%s' %s", c->name, where_in(path, in, sizeof in));
        else if (cfg_is_null(val)) VERR_AT(v, val, "%s: required, found null", sub);
    }
}

/* grid / zip: each key a config path, each value a non-empty list of that path's values. */
static void check_pathmap(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path) {
    int first_len = -1;
    const char *first_key = NULL;
    for (int i = 0; i < n->n; i++) {
        const CfgEntry *e = &n->entries[i];
        const SchemaKey *target = schema_lookup(v->root, e->key);
        if (!target || !varyable(v->root, e->key)) {
            char sug[300];
            if (!strcmp(e->key, "seed") || !strcmp(e->key, "seeds"))
                verr(v, e->file, e->line, e->col, "'%s' cannot vary in %s (use seeds: [...])", e->key, path);
            else if (target)
                verr(v, e->file, e->line, e->col, "'%s' cannot vary in %s", e->key, path);
            else if (schema_suggest_path(v->root, e->key, sug, sizeof sug) == 0)
                verr(v, e->file, e->line, e->col, "unknown key '%s' in %s (did you mean '%s'?)", e->key, path, sug);
            else
                verr(v, e->file, e->line, e->col, "unknown key '%s' in %s", e->key, path);
            continue;
        }
        char sub[512];
        snprintf(sub, sizeof sub, "%s.%s", path, e->key);
        if (e->val->kind != CFG_LIST || e->val->n == 0) {
            char d[96];
            VERR_AT(v, e->val, "%s: expected a non-empty list of values, found %s", sub,
                    e->val->kind == CFG_LIST ? "an empty list" : cfg_describe(e->val, d, sizeof d));
            continue;
        }
        unsigned flags = v->flags;
        v->flags |= SCHEMA_FRAGMENT; /* a map value is merged onto the base: it may be partial */
        for (int j = 0; j < e->val->n; j++) {
            char item[540];
            snprintf(item, sizeof item, "%s[%d]", sub, j);
            if (cfg_is_null(e->val->items[j]) && !(target->flags & SK_REQUIRED)) continue; /* null: unset */
            check(v, e->val->items[j], target, item);
        }
        v->flags = flags;
        if (k->flags & SK_SAME_LENGTH) {
            if (first_len < 0) first_len = e->val->n, first_key = e->key;
            else if (e->val->n != first_len)
                VERR_AT(v, e->val, "%s: '%s' has %d values but '%s' has %d (zip pairs lists of the same length)",
                        path, e->key, e->val->n, first_key, first_len);
        }
    }
}

static void check(Validator *v, const CfgNode *n, const SchemaKey *k, const char *path) {
    if (k->type == SCHEMA_ANY) return;
    if (cfg_is_null(n)) return; /* null = unset; a required one is reported by its map */
    switch (k->type) {
    case SCHEMA_INT: {
        long x;
        if ((k->flags & SK_AUTO) && n->kind == CFG_SCALAR && n->text && !strcmp(n->text, "auto")) break;
        if (cfg_as_int(n, &x)) type_error(v, n, k, path);
        else check_range(v, n, k, path, (double)x);
        break;
    }
    case SCHEMA_FLOAT: {
        double x;
        if (cfg_as_double(n, &x)) type_error(v, n, k, path);
        else check_range(v, n, k, path, x);
        break;
    }
    case SCHEMA_BOOL: {
        int b;
        if (cfg_as_bool(n, &b)) type_error(v, n, k, path);
        break;
    }
    case SCHEMA_STRING: {
        if (n->kind != CFG_SCALAR) {
            type_error(v, n, k, path);
            break;
        }
        struct stat st;
        if ((k->flags & SK_FILE) && !(v->flags & SCHEMA_NO_FILES) && stat(n->text, &st) != 0)
            VERR_AT(v, n, "%s: '%s' does not exist (%s)", path, n->text, strerror(errno));
        break;
    }
    case SCHEMA_ENUM: {
        int ok = 0;
        for (int i = 0; n->kind == CFG_SCALAR && k->values[i] && !ok; i++) ok = !strcmp(n->text, k->values[i]);
        if (ok) break;
        if (n->kind != CFG_SCALAR) {
            type_error(v, n, k, path);
            break;
        }
        char t[300];
        int nv = 0;
        while (k->values[nv]) nv++;
        const char *near = schema_closest(n->text, k->values, nv);
        if (near)
            VERR_AT(v, n, "%s: '%s' is not %s (did you mean '%s'?)", path, n->text, schema_type_name(k, t, sizeof t),
                    near);
        else
            VERR_AT(v, n, "%s: '%s' is not %s", path, n->text, schema_type_name(k, t, sizeof t));
        break;
    }
    case SCHEMA_LIST:
        if (n->kind != CFG_LIST) {
            type_error(v, n, k, path);
            break;
        }
        for (int i = 0; i < n->n; i++) {
            char item[540];
            snprintf(item, sizeof item, "%s[%d]", path, i);
            if (cfg_is_null(n->items[i])) {
                char t[300];
                VERR_AT(v, n->items[i], "%s: expected %s, found null", item, schema_type_name(k->elem, t, sizeof t));
            } else {
                check(v, n->items[i], k->elem, item);
            }
        }
        break;
    case SCHEMA_MAP:
        if (n->kind != CFG_MAP) type_error(v, n, k, path);
        else check_map(v, n, k, path);
        break;
    case SCHEMA_PATHMAP:
        if (n->kind != CFG_MAP) type_error(v, n, k, path);
        else check_pathmap(v, n, k, path);
        break;
    case SCHEMA_ANY: break;
    }
}

int schema_validate(const CfgNode *root, const SchemaKey *schema, unsigned flags, SchemaReport *rep, Error *err) {
    ASSERT(root && schema && schema->type == SCHEMA_MAP);
    SchemaReport local;
    if (!rep) rep = &local;
    rep->n = rep->total = 0;
    Validator v = {.root = schema, .flags = flags, .rep = rep};
    v.varied[0] = cfg_map_get(root, "grid");
    v.varied[1] = cfg_map_get(root, "zip");
    if (root->kind != CFG_MAP) type_error(&v, root, schema, "the config");
    else check_map(&v, root, schema, "");
    if (!rep->total) return 0;
    if (err) {
        size_t len = 0, size = sizeof err->msg;
        err->msg[0] = 0;
        int shown = 0;
        for (int i = 0; i < rep->n; i++) {
            size_t m = strlen(rep->msg[i]);
            if (len + m + 48 >= size) break; /* keep room for the "... and N more" line */
            len += (size_t)snprintf(err->msg + len, size - len, "%s%s", i ? "\n" : "", rep->msg[i]);
            shown++;
        }
        if (shown < rep->total)
            snprintf(err->msg + len, size - len, "\n... and %d more error%s", rep->total - shown,
                     rep->total - shown == 1 ? "" : "s");
    }
    return -1;
}

/* ---- defaults --------------------------------------------------------------------------------------------- */
static void apply_defaults(CfgNode *n, const SchemaKey *k, const char *path) {
    if (k->type == SCHEMA_LIST && n->kind == CFG_LIST && k->elem->type == SCHEMA_MAP) {
        for (int i = 0; i < n->n; i++) {
            char item[540];
            snprintf(item, sizeof item, "%s[%d]", path, i);
            apply_defaults(n->items[i], k->elem, item);
        }
        return;
    }
    if (k->type != SCHEMA_MAP || n->kind != CFG_MAP) return;
    for (const SchemaKey *c = k->keys; c && c->name; c++) {
        char sub[512];
        join(sub, sizeof sub, path, c->name);
        CfgNode *val = cfg_map_get(n, c->name);
        if (c->def && cfg_is_null(val)) {
            char file[560];
            snprintf(file, sizeof file, "default of %s", sub);
            Error e;
            CfgNode *d = cfg_parse_value(c->def, file, 1, 1, &e);
            ASSERTF(d, "schema default of %s does not parse: %s", sub, e.msg);
            cfg_map_set(n, c->name, d, NULL);
        } else if (val) {
            apply_defaults(val, c, sub);
        }
    }
}

void schema_apply_defaults(CfgNode *root, const SchemaKey *schema) { apply_defaults(root, schema, ""); }

/* ---- the table's own check ------------------------------------------------------------------------------ */
static int self_check(const SchemaKey *k, const char *path, Error *err) {
    if (k->type == SCHEMA_ENUM && (!k->values || !k->values[0])) return err_set(err, "%s: enum without values", path);
    if (k->type == SCHEMA_LIST && !k->elem) return err_set(err, "%s: list without .elem", path);
    if (k->type == SCHEMA_LIST) {
        char item[300];
        snprintf(item, sizeof item, "%s[]", path);
        if (self_check(k->elem, item, err)) return -1;
    }
    if (k->type == SCHEMA_MAP) {
        if (!n_keys(k->keys)) return err_set(err, "%s: map without keys", path);
        for (const SchemaKey *c = k->keys; c->name; c++) {
            char sub[300];
            join(sub, sizeof sub, path, c->name);
            for (const SchemaKey *o = k->keys; o < c; o++)
                if (!strcmp(o->name, c->name)) return err_set(err, "%s: key listed twice", sub);
            if (self_check(c, sub, err)) return -1;
        }
    }
    if (k->def) {
        if (k->flags & SK_REQUIRED) return err_set(err, "%s: a required key with a default", path);
        CfgNode *d = cfg_parse_value(k->def, "default", 1, 1, err);
        if (!d) return -1;
        SchemaReport rep = {0};
        Validator v = {.root = &SCHEMA_EXPERIMENT, .flags = SCHEMA_NO_FILES, .rep = &rep};
        check(&v, d, k, path);
        int bad = cfg_is_null(d);
        cfg_free(d);
        if (bad) return err_set(err, "%s: default '%s' is null", path, k->def);
        if (rep.total) return err_set(err, "%s: default '%s' is invalid: %s", path, k->def, rep.msg[0]);
    }
    return 0;
}

int schema_self_check(const SchemaKey *root, Error *err) { return self_check(root, "", err); }
