/* core/common.h: the project's always-on asserts, the Error value every fallible function fills,
 * and the small helpers every file needs. Contract:
 *   - ASSERT(cond) checks programming errors in every build type (release too) and aborts with file:line.
 *   - Functions that can fail on *input* (files, configs) return 0 on success, -1 on failure and fill an
 *     Error with a message naming the file, the key/line/tensor, what was expected and what was found. */
#ifndef CORE_COMMON_H
#define CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ERROR_MSG_MAX 1024
typedef struct Error {
    char msg[ERROR_MSG_MAX];
} Error;

/* Fill err (may be NULL) with a printf-style message; returns -1 so callers can `return err_set(...)`. */
int err_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Abort with a message; used by ASSERT and the check macros. */
_Noreturn void die_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define ASSERT(cond)                                                                                      \
    do {                                                                                                  \
        if (!(cond)) die_at(__FILE__, __LINE__, "assertion failed: %s", #cond);                            \
    } while (0)
#define ASSERTF(cond, ...)                                                                                \
    do {                                                                                                  \
        if (!(cond)) die_at(__FILE__, __LINE__, __VA_ARGS__);                                            \
    } while (0)

/* Allocation that never returns NULL (out of memory is fatal, not an input error). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned allocation, for SIMD-friendly parameter and activation buffers; free with free(). */
void *xmalloc_aligned(size_t n);

/* Wall-clock seconds (monotonic). */
double now_seconds(void);

/* mkdir -p: creates path and its missing parents (mode 0777 & umask); an existing directory is fine.
 * -1 with err naming the component that could not be created and why. */
int mkdirs(const char *path, Error *err);
/* Peak resident set size of this process in bytes: Linux's VmHWM (/proc/self/status), else getrusage's
 * ru_maxrss. peak_rss_reset() lowers the peak to the current RSS (Linux: /proc/self/clear_refs, value 5), so a
 * process that runs several runs measures each run's own peak; a no-op where that is not available. */
size_t peak_rss_bytes(void);
void peak_rss_reset(void);

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
