/* tests/testlib.h: the assertions every test uses. A failing CHECK prints file:line and the values,
 * counts the failure and continues; test_finish() returns the exit code (0 pass, 1 fail).
 * TEST_SKIP (77) is registered as ctest's SKIP_RETURN_CODE for tests that need a GPU or a missing file. */
#ifndef TESTS_TESTLIB_H
#define TESTS_TESTLIB_H
#include <math.h>
#include <stdio.h>

#define TEST_SKIP 77
extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                                       \
    do {                                                                                                  \
        test_checks++;                                                                                    \
        if (!(cond)) {                                                                                    \
            test_failures++;                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
        }                                                                                                 \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                              \
    do {                                                                                                  \
        test_checks++;                                                                                    \
        if (!(cond)) {                                                                                    \
            test_failures++;                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                                 \
            fputc('\n', stderr);                                                                          \
        }                                                                                                 \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                             \
    do {                                                                                                  \
        double a_ = (a), b_ = (b);                                                                        \
        CHECK_MSG(fabs(a_ - b_) <= (tol), "%s = %.9g, %s = %.9g, tol %.3g", #a, a_, #b, b_, (double)(tol)); \
    } while (0)

/* Max relative error between two arrays: max_i |a-b| / max(|b|_max, floor). Reports where it occurred. */
double max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *where);
/* Prints "N checks, M failed" and returns the exit code. */
int test_finish(const char *name);
/* Runs prog with args (NULL-terminated, at most 30), stdout and stderr into out (the tail when it overflows);
 * with kill_after, sends sig once the output contains that text. Returns the exit status, or 128 + signal. */
int test_run_program(const char *prog, const char *const *args, const char *kill_after, int sig, char *out,
                     size_t cap);
/* Runs prog with args (NULL-terminated, at most 30), stdout and stderr appended to the file log; the exit status,
 * or 128 + signal. */
int test_run_to_log(const char *prog, const char *log, const char *const *args);
/* Copies the file at path to stderr (a log, on failure); nothing when it cannot be read. */
void test_print_file(const char *path);
/* The index of s in names[0..n), or -1. */
int test_index_of(const char *const *names, int n, const char *s);
/* Splits a CSV line without quoted fields into at most max fields in place (the line end dropped); the count. */
int test_csv_split(char *line, char **f, int max);
#endif
