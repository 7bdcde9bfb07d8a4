/* core/threads.h: one knob for the CPU thread count. OpenMP loops and OpenBLAS must agree: with Debian's
 * pthread build of OpenBLAS (the fallback when the OpenMP build is absent) an unset OpenBLAS pool uses every
 * core of the machine whatever OpenMP was told, and several runs side by side then oversubscribe badly. */
#ifndef CORE_THREADS_H
#define CORE_THREADS_H
#include "core/common.h"

/* n > 0: use n threads for both; n <= 0: keep the defaults (OMP_NUM_THREADS or all cores). */
void core_set_threads(int n);
int core_threads(void);

/* Runs body(ctx, i, err_i) for every item i in [0, n): independent calls of LAPACK-sized work, e.g. one SVD per
 * adapter of an initializer. LAPACK at one adapter's size (768 x 768) uses many OpenBLAS threads poorly; n
 * items side by side on core_threads() OpenMP threads (schedule dynamic, one item at a time), each with
 * single-threaded OpenBLAS, use them well. OpenBLAS's and OpenMP's thread counts are restored afterwards.
 * Bodies must be independent (each writes only its own item's outputs, reads nothing another item writes) and
 * thread-safe. Then results are the same bit for bit whatever the thread count: every item runs the same
 * single-threaded code on the same inputs (OpenBLAS is single-threaded in the bodies even with 1 thread).
 * Called inside an OpenMP parallel region it runs the items serially, leaving OpenBLAS as it is.
 * Returns 0 when every body returned 0. Otherwise -1, with err the error of the SMALLEST failing i (the one a
 * serial loop would report, whatever the scheduling): every item before it ran and succeeded; items after it
 * may or may not have run (they are skipped once a failure at a smaller index is known). */
int core_parallel_items(int n, int (*body)(void *ctx, int i, Error *err), void *ctx, Error *err);
#endif
