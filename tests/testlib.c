#include "testlib.h"
#include "core/common.h"
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int test_failures = 0;
int test_checks = 0;

double max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *where) {
    double scale = floor;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    double worst = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / scale;
        if (e > worst || isnan(e)) { worst = isnan(e) ? INFINITY : e; w = i; }
    }
    if (where) *where = w;
    return worst;
}

int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* In a forked child: execs prog with args (NULL-terminated, at most 30); 127 when that fails. */
static void exec_args(const char *prog, const char *const *args) {
    const char *argv[32] = {prog};
    int n = 1;
    for (; args[n - 1] && n < 31; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    execv(prog, (char *const *)argv);
    _exit(127);
}

int test_run_program(const char *prog, const char *const *args, const char *kill_after, int sig, char *out,
                     size_t cap) {
    int fd[2];
    ASSERT(pipe(fd) == 0 && cap > 1);
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        exec_args(prog, args);
    }
    close(fd[1]);
    size_t len = 0;
    int sent = 0;
    ssize_t k;
    out[0] = 0;
    while ((k = read(fd[0], out + len, cap - 1 - len)) > 0) {
        len += (size_t)k;
        out[len] = 0;
        if (kill_after && !sent && strstr(out, kill_after)) { kill(p, sig); sent = 1; }
        if (len + 1 >= cap) len = 0; /* keep reading; only the tail matters */
    }
    close(fd[0]);
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int test_run_to_log(const char *prog, const char *log, const char *const *args) {
    pid_t p = fork();
    if (p == 0) {
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr)) _exit(126);
        exec_args(prog, args);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void test_print_file(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) fputs(line, stderr);
    if (f) fclose(f);
}

int test_index_of(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

int test_csv_split(char *line, char **f, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    return n;
}
