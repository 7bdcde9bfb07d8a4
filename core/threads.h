/* core/threads.h: one knob for the CPU thread count. OpenMP loops and OpenBLAS must agree: with Debian's
 * pthread build of OpenBLAS (the fallback when the OpenMP build is absent) an unset OpenBLAS pool uses every
 * core of the machine whatever OpenMP was told, and several runs side by side then oversubscribe badly. */
#ifndef CORE_THREADS_H
#define CORE_THREADS_H
/* n > 0: use n threads for both; n <= 0: keep the defaults (OMP_NUM_THREADS or all cores). */
void core_set_threads(int n);
int core_threads(void);
#endif
