/* experiments/data_cmd.c: the `runexp data` subcommand (contract in data_cmd.h). */
#include "experiments/data_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/minivtab.h"
#include "datasets/vtab.h"

static void data_usage(FILE *f) {
    fprintf(f, "usage: runexp data mini-vtab --out DIR [--size 32] [--seed 0] [--fashion-mnist DIR]\n"
               "       runexp data tasks     (the 19 VTAB-1k tasks: folder, classes, group, paper column, stand-in)\n"
               "mini-vtab writes one stand-in task per VTAB-1k task in the VTAB-1k folder layout (docs/data.md);\n"
               "rerunning with the same seed and size does nothing.\n");
}

static int parse_num(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "runexp data: %s needs an integer in %lld..%lld, got '%s'\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static void print_tasks(void) {
    printf("| task | classes | group | paper column | mini-VTAB stand-in |\n|---|---|---|---|---|\n");
    for (int i = 0; i < VTAB_N_TASKS; i++)
        printf("| %s | %d | %s | %s | %s |\n", VTAB_TASKS[i].name, VTAB_TASKS[i].n_classes,
               VTAB_GROUP_NAMES[VTAB_TASKS[i].group], VTAB_TASKS[i].paper_column, MINIVTAB_STANDIN[i]);
    /* a report table block for a grid over dataset.task (runexp report), in the papers' order and groups */
    printf("\n# report.tables[] keys for `grid: {dataset.task: [...]}`:\ncolumns: dataset.task\ncol_order: [");
    for (int i = 0; i < VTAB_N_TASKS; i++) printf("%s%s", i ? ", " : "", VTAB_TASKS[i].name);
    printf("]\ncol_labels: [");
    for (int i = 0; i < VTAB_N_TASKS; i++) printf("%s%s", i ? ", " : "", VTAB_TASKS[i].paper_column);
    printf("]\ngroups:\n");
    for (int g = 0; g < VTAB_N_GROUPS; g++) {
        printf("  %s: [", VTAB_GROUP_NAMES[g]);
        for (int i = 0, k = 0; i < VTAB_N_TASKS; i++)
            if ((int)VTAB_TASKS[i].group == g) printf("%s%s", k++ ? ", " : "", VTAB_TASKS[i].name);
        printf("]\n");
    }
    printf("overall_mean: true\n");
}

int runexp_data_main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "tasks")) {
        print_tasks();
        return 0;
    }
    if (strcmp(argv[1], "mini-vtab")) {
        fprintf(stderr, "runexp data: unknown dataset command '%s'\n", argv[1]);
        data_usage(stderr);
        return 2;
    }
    MiniVtabOptions o = {.size = 32, .verbose = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--out") && v) o.out = v, i++;
        else if (!strcmp(a, "--fashion-mnist") && v) o.fmnist_dir = v, i++;
        else if (!strcmp(a, "--size")) { if (parse_num(a, v, 16, 256, &x)) return 2; o.size = (int)x; i++; }
        else if (!strcmp(a, "--seed")) { if (parse_num(a, v, 0, (long long)1 << 62, &x)) return 2; o.seed = (uint64_t)x; i++; }
        else {
            fprintf(stderr, "runexp data mini-vtab: unknown or incomplete argument '%s'\n", a);
            data_usage(stderr);
            return 2;
        }
    }
    if (!o.out) {
        fprintf(stderr, "runexp data mini-vtab: --out DIR is required\n");
        return 2;
    }
    Error err = {{0}};
    int made = 0;
    if (minivtab_generate(&o, &made, &err)) {
        fprintf(stderr, "runexp data: %s\n", err.msg);
        return 1;
    }
    if (!made) printf("mini-vtab: %s is up to date (%s)\n", o.out, MINIVTAB_STAMP);
    return 0;
}
