/* datasets/vtab.c: the VTAB-1k task table and folder loader (contract in vtab.h). */
#include "datasets/vtab.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/imagefile.h"
#include "datasets/resize.h"

/* Class counts: VTAB (Zhai et al. 2019) as released by NOAH / SPT; columns: abm_table3_vtab.csv. */
const VtabTask VTAB_TASKS[VTAB_N_TASKS] = {
    {"cifar", 100, VTAB_NATURAL, "Cifar100"},
    {"caltech101", 102, VTAB_NATURAL, "Caltech101"},
    {"dtd", 47, VTAB_NATURAL, "DTD"},
    {"oxford_flowers102", 102, VTAB_NATURAL, "Flower102"},
    {"oxford_iiit_pet", 37, VTAB_NATURAL, "Pets"},
    {"svhn", 10, VTAB_NATURAL, "SVHN"},
    {"sun397", 397, VTAB_NATURAL, "Sun397"},
    {"patch_camelyon", 2, VTAB_SPECIALIZED, "Camelyon"},
    {"eurosat", 10, VTAB_SPECIALIZED, "EuroSAT"},
    {"resisc45", 45, VTAB_SPECIALIZED, "Resisc45"},
    {"diabetic_retinopathy", 5, VTAB_SPECIALIZED, "Retinopathy"},
    {"clevr_count", 8, VTAB_STRUCTURED, "Clevr-Count"},
    {"clevr_dist", 6, VTAB_STRUCTURED, "Clevr-Dist"},
    {"dmlab", 6, VTAB_STRUCTURED, "DMLab"},
    {"kitti", 4, VTAB_STRUCTURED, "KITTI-Dst"},
    {"dsprites_loc", 16, VTAB_STRUCTURED, "dSpr-Loc"},
    {"dsprites_ori", 16, VTAB_STRUCTURED, "dSpr-Ori"},
    {"smallnorb_azi", 18, VTAB_STRUCTURED, "sNORB-Azim"},
    {"smallnorb_ele", 9, VTAB_STRUCTURED, "sNORB-Ele"},
};
const char *const VTAB_GROUP_NAMES[VTAB_N_GROUPS] = {"Natural", "Specialized", "Structured"};
const char *const VTAB_SPLITS[4] = {"train800", "val200", "train800val200", "test"};

const VtabTask *vtab_task_find(const char *name) {
    for (int i = 0; name && i < VTAB_N_TASKS; i++)
        if (!strcmp(VTAB_TASKS[i].name, name)) return &VTAB_TASKS[i];
    return NULL;
}

void vtab_list_free(char **paths, int *labels, int n) {
    for (int i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    free(labels);
}

int vtab_read_list(char ***paths_out, int **labels_out, int *n_out, const char *list_path, int n_classes,
                   long limit, Error *err) {
    *paths_out = NULL;
    *labels_out = NULL;
    *n_out = 0;
    FILE *f = fopen(list_path, "r");
    if (!f) return err_set(err, "%s: cannot open: %s", list_path, strerror(errno));
    char **paths = NULL;
    int *labels = NULL, n = 0, cap = 0, rc = 0;
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    for (ssize_t len; (limit <= 0 || n < limit) && (len = getline(&line, &lcap, f)) >= 0;) {
        lineno++;
        while (len > 0 && isspace((unsigned char)line[len - 1])) line[--len] = 0; /* \n, \r\n, trailing blanks */
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) continue;
        char *sp = s + strlen(s);
        while (sp > s && !isspace((unsigned char)sp[-1])) sp--; /* the last field is the label */
        char *end;
        errno = 0;
        long lab = sp > s ? strtol(sp, &end, 10) : 0;
        if (sp == s || *end || errno || end == sp) {
            rc = err_set(err, "%s:%ld: expected `<image path> <label>` (path relative to the task folder, an "
                         "integer label), found '%.200s'", list_path, lineno, s);
            break;
        }
        if (lab < 0 || (n_classes > 0 && lab >= n_classes)) {
            rc = err_set(err, "%s:%ld: label %ld out of range: expected 0..%d (%d classes); is this the right task "
                         "folder?", list_path, lineno, lab, n_classes - 1, n_classes);
            break;
        }
        char *pe = sp;
        while (pe > s && isspace((unsigned char)pe[-1])) pe--;
        *pe = 0;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            paths = xrealloc(paths, sizeof *paths * (size_t)cap);
            labels = xrealloc(labels, sizeof *labels * (size_t)cap);
        }
        paths[n] = xstrdup(s);
        labels[n] = (int)lab;
        n++;
    }
    if (!rc && ferror(f)) rc = err_set(err, "%s: read error: %s", list_path, strerror(errno));
    if (!rc && n == 0) rc = err_set(err, "%s: no entries (expected lines `<image path> <label>`)", list_path);
    free(line);
    fclose(f);
    if (rc) {
        vtab_list_free(paths, labels, n);
        return -1;
    }
    *paths_out = paths;
    *labels_out = labels;
    *n_out = n;
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int vtab_load(ImageSet *out, const VtabLoadOptions *o, Error *err) {
    ASSERT(out && o);
    memset(out, 0, sizeof *out);
    const VtabTask *t = vtab_task_find(o->task);
    if (!t) {
        char names[512] = "";
        for (int i = 0; i < VTAB_N_TASKS; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", VTAB_TASKS[i].name);
        return err_set(err, "vtab: unknown task '%s' (the VTAB-1k tasks: %s)", o->task ? o->task : "", names);
    }
    int split_ok = 0;
    for (int i = 0; i < 4; i++) split_ok |= o->split && !strcmp(o->split, VTAB_SPLITS[i]);
    if (!split_ok)
        return err_set(err, "vtab: unknown split '%s' (expected train800, val200, train800val200 or test)",
                       o->split ? o->split : "");
    if (!o->root || !is_dir(o->root))
        return err_set(err, "vtab: dataset.root '%s' is not a folder; point it at the folder that holds the 19 "
                       "VTAB-1k task folders (cifar/, caltech101/, dtd/, ...; docs/data.md)", o->root ? o->root : "");
    char dir[4096], list[4200];
    snprintf(dir, sizeof dir, "%s/%s", o->root, t->name);
    if (!is_dir(dir))
        return err_set(err, "vtab: missing task folder %s: expected %s/%s/{train800,val200,train800val200,test}.txt "
                       "and images/ (the NOAH / SPT VTAB-1k layout, docs/data.md)", dir, o->root, t->name);
    snprintf(list, sizeof list, "%s/%s.txt", dir, o->split);
    char **paths;
    int *labels, n;
    if (vtab_read_list(&paths, &labels, &n, list, t->n_classes, o->limit, err)) return -1;
    ASSERT((o->C == 1 || o->C == 3) && o->H > 0 && o->W > 0);
    size_t per = (size_t)o->C * o->H * o->W;
    double bytes = (double)n * per; /* stored as bytes (imageset.h) */
    if (o->max_bytes > 0 && bytes > (double)o->max_bytes) {
        vtab_list_free(paths, labels, n);
        return err_set(err, "%s: %d images at %dx%dx%d need %.1f GB (one byte per value), more than the %.1f GB "
                       "allowed; set dataset.test_n (or train_n) to load the first N, or use eval_split: val200", list,
                       n, o->C, o->H, o->W, bytes / 1e9, o->max_bytes / 1e9);
    }
    ImageSet s;
    imageset_alloc_u8(&s, n, o->C, o->H, o->W, t->n_classes);
    int first_bad = INT_MAX;
    Error bad = {{0}};
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < n; i++) {
        int skip;
#pragma omp atomic read
        skip = first_bad;
        if (i > skip) continue;
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", dir, paths[i]);
        Image8 im;
        Error e;
        if (image_read(&im, path, &e)) {
#pragma omp critical(vtab_error)
            if (i < first_bad) {
                /* the list line: entries are one per non-blank line, so re-find its number below */
                snprintf(bad.msg, sizeof bad.msg, "%s", e.msg);
                first_bad = i;
            }
            continue;
        }
        image_to_chw_u8(s.u8 + (size_t)i * per, o->C, o->H, o->W, im.px, im.h, im.w, im.c);
        s.y[i] = labels[i];
        image8_free(&im);
    }
    if (first_bad != INT_MAX) {
        /* the line number of entry first_bad (blank lines do not count as entries) */
        long lineno = 0, entry = -1;
        FILE *f = fopen(list, "r");
        char buf[8192];
        while (f && entry < first_bad && fgets(buf, sizeof buf, f)) {
            lineno++;
            char *p = buf;
            while (isspace((unsigned char)*p)) p++;
            if (*p) entry++;
        }
        if (f) fclose(f);
        err_set(err, "%s:%ld: image %s: %s (the list names a file that is missing or broken; re-extract the "
                "task folder)", list, lineno, paths[first_bad], bad.msg);
        vtab_list_free(paths, labels, n);
        imageset_free(&s);
        return -1;
    }
    vtab_list_free(paths, labels, n);
    *out = s;
    return 0;
}
