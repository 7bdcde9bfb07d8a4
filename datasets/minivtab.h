/* datasets/minivtab.h: mini-VTAB-19, a local stand-in for VTAB-1k (docs/data.md): one small procedurally made
 * task per VTAB-1k task, with that task's folder name, class count and group, written in the VTAB-1k folder
 * layout (datasets/vtab.h) so the same loader reads it:
 *
 *   <out>/<task>/images/{train800,val200,test}/<i>.png     S x S RGB PNG (S = size, 32 by default)
 *   <out>/<task>/{train800,val200,train800val200,test}.txt `images/<split>/<i>.png <label>`
 *   <out>/<task>/sources.txt   natural tasks: `<image> <Fashion-MNIST test index> ...` per image (provenance)
 *   <out>/MINIVTAB_STAMP       generator version, seed, size, split sizes (written last)
 *
 * Splits: 800 train + 200 val + MINIVTAB_TEST_N test per task; labels are balanced (image i of a split of n
 * has label i % K when n >= K, else floor(i K / n)). Natural tasks compose Fashion-MNIST items taken only
 * from its TEST split (pretraining uses the train split), from three disjoint pools per task (4000 / 1000 /
 * 5000 items for train800 / val200 / test), so no source item is in two splits of a task.
 * Classes of tasks with many classes (102, 397, ...) are tuples of visible factors (the first K of a mixed-
 * radix product, the first factor fastest); MINIVTAB_STANDIN says which, per task.
 *
 * Deterministic: image i of split s of task t is drawn from Philox stream (t, s, i) of the seed (core/rng.h),
 * so the same seed, size and Fashion-MNIST files give the same bytes, whatever the thread count. Cached: when
 * <out>/MINIVTAB_STAMP matches, nothing is done. Generation writes <out>.tmp-<pid> and renames it to <out>
 * at the end, so an interrupted or concurrent generation never leaves a half-written <out>. */
#ifndef DATASETS_MINIVTAB_H
#define DATASETS_MINIVTAB_H
#include <stdint.h>

#include "core/common.h"
#include "datasets/idx.h"
#include "datasets/vtab.h"

#define MINIVTAB_VERSION 1
#define MINIVTAB_TRAIN_N 800
#define MINIVTAB_VAL_N 200
#define MINIVTAB_TEST_N 1000 /* 1.6 points standard error at 70% accuracy; < 1 s to evaluate a tiny ViT */
#define MINIVTAB_STAMP "MINIVTAB_STAMP"
#define MINIVTAB_DEFAULT_ROOT "runs/data/mini-vtab"

typedef struct MiniVtabOptions {
    const char *out;        /* the folder to create (holds the 19 task folders) */
    int size;               /* image side S in pixels (16..256); 0: 32 */
    uint64_t seed;
    const char *fmnist_dir; /* Fashion-MNIST folder (NULL: $LORALAB_FASHION_MNIST or the Debian default) */
    int verbose;            /* print one line per task and the total time */
} MiniVtabOptions;

/* What stands in for each task of VTAB_TASKS (same order): one line for docs and `runexp data tasks`. */
extern const char *const MINIVTAB_STANDIN[VTAB_N_TASKS];

/* Generates the suite into o->out unless its stamp already matches (then *generated = 0). A folder o->out
 * that exists with another stamp or none is an error naming it (nothing is overwritten). */
int minivtab_generate(const MiniVtabOptions *o, int *generated, Error *err);
/* Writes one task folder dir/<VTAB_TASKS[task].name> (no stamp, no rename) from the Fashion-MNIST TEST split
 * fm_test: what minivtab_generate does per task (tests regenerate single tasks with it). */
int minivtab_generate_task(const char *dir, int task, const MiniVtabOptions *o, const IdxSet *fm_test, Error *err);
/* The stamp text for these options (what <out>/MINIVTAB_STAMP must hold). */
void minivtab_stamp_text(char *buf, size_t size, const MiniVtabOptions *o);
#endif
