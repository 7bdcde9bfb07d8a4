/* datasets/vtab.h: VTAB-1k task folders (docs/data.md), the layout of the common release (NOAH / SPT):
 *
 *   <root>/<task>/train800.txt, val200.txt, train800val200.txt, test.txt
 *   <root>/<task>/images/<split>/<file>              (JPEG or PNG, any size, gray or RGB)
 *
 * Each list line is `<image path relative to <root>/<task>> <label>` (the label is the last field; blank
 * lines are skipped). Images are decoded (datasets/imagefile.h), converted to the backbone's channels and
 * resized bicubically to its resolution (datasets/resize.h, PIL-exact), as float (C,H,W) = px / 255; the
 * caller normalizes (imageset_normalize). Decoding runs in parallel over images (OpenMP).
 *
 * Errors name the file, the line and the fix:
 *   /data/vtab-1k/dtd/train800.txt:17: expected `<image path> <label>`, found 'images/train800/a.jpg'
 *   /data/vtab-1k/dtd/train800.txt:3: label 52 out of range: dtd has 47 classes (0..46)
 *   /data/vtab-1k/dtd/train800.txt:5: images/train800/x.jpg: cannot open: No such file or directory */
#ifndef DATASETS_VTAB_H
#define DATASETS_VTAB_H
#include "core/common.h"
#include "datasets/imageset.h"

typedef enum { VTAB_NATURAL = 0, VTAB_SPECIALIZED = 1, VTAB_STRUCTURED = 2 } VtabGroup;
#define VTAB_N_GROUPS 3
#define VTAB_N_TASKS 19

typedef struct VtabTask {
    const char *name;         /* folder name of the common release (NOAH / SPT): "cifar", "dtd", ... */
    int n_classes;
    VtabGroup group;
    const char *paper_column; /* the column in shared/papers/tables/abm_table3_vtab.csv ("Cifar100", ...) */
} VtabTask;

/* The 19 tasks in the papers' column order (natural 7, specialized 4, structured 8): reports use it for
 * col_order, col_labels and the group means (`runexp data tasks` prints it). */
extern const VtabTask VTAB_TASKS[VTAB_N_TASKS];
extern const char *const VTAB_GROUP_NAMES[VTAB_N_GROUPS]; /* "Natural", "Specialized", "Structured" */

/* The task named `name`, or NULL. */
const VtabTask *vtab_task_find(const char *name);

/* The list files of a task folder. */
extern const char *const VTAB_SPLITS[4]; /* "train800", "val200", "train800val200", "test" */

typedef struct VtabLoadOptions {
    const char *root;  /* the folder holding the task folders */
    const char *task;  /* one of VTAB_TASKS[].name */
    const char *split; /* one of VTAB_SPLITS */
    int C, H, W;       /* the backbone's channels (1 or 3) and resolution */
    long limit;        /* > 0: only the first `limit` lines of the list */
    long max_bytes;    /* > 0: refuse (with an error naming the options) a set larger than this as float */
} VtabLoadOptions;

/* *out = the split as float (n, C, H, W) in [0, 1], labels checked against the task's class count, K = it.
 * On failure *out is zeroed and nothing is leaked. */
int vtab_load(ImageSet *out, const VtabLoadOptions *o, Error *err);

/* Reads a list file: *paths (n, malloc'ed strings) and *labels (n); a malformed line is an error naming
 * file:line. Labels are checked to be in [0, n_classes) when n_classes > 0. limit > 0: stop after that
 * many entries. Free with vtab_list_free. */
int vtab_read_list(char ***paths, int **labels, int *n, const char *list_path, int n_classes, long limit, Error *err);
void vtab_list_free(char **paths, int *labels, int n);
#endif
