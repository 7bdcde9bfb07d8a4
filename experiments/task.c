/* experiments/task.c */
#include "task.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "datasets/cifar.h"
#include "datasets/idx.h"
#include "datasets/minivtab.h"
#include "datasets/vtab.h"

typedef struct Cached {
    char key[1200];
    ImageSet train, test;
} Cached;
static Cached cache[4];
static int n_cache;

static void transform(IdxSet *s, const char *t) {
    int R = s->rows, C = s->cols;
    uint8_t *tmp = xmalloc((size_t)R * C);
    for (int i = 0; i < s->n; i++) {
        uint8_t *img = s->images + (size_t)i * R * C;
        if (!strcmp(t, "invert")) {
            for (int k = 0; k < R * C; k++) img[k] = (uint8_t)(255 - img[k]);
        } else if (!strcmp(t, "vflip")) {
            for (int r = 0; r < R; r++) memcpy(tmp + (size_t)r * C, img + (size_t)(R - 1 - r) * C, (size_t)C);
            memcpy(img, tmp, (size_t)R * C);
        } else if (!strcmp(t, "rot90")) { /* counter-clockwise: out[r][c] = in[c][C-1-r] (square images) */
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) tmp[(size_t)r * C + c] = img[(size_t)c * C + (C - 1 - r)];
            memcpy(img, tmp, (size_t)R * C);
        }
    }
    free(tmp);
}

static Cached *cache_find(const char *key) {
    for (int i = 0; i < n_cache; i++)
        if (!strcmp(cache[i].key, key)) return &cache[i];
    return NULL;
}
static Cached *cache_add(const char *key) {
    if (n_cache == (int)ARRAY_LEN(cache)) { /* evict the oldest */
        imageset_free(&cache[0].train);
        imageset_free(&cache[0].test);
        memmove(cache, cache + 1, sizeof cache[0] * (ARRAY_LEN(cache) - 1));
        n_cache--;
    }
    Cached *c = &cache[n_cache++];
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", key);
    return c;
}

/* n_classes, or INT_MAX for `auto` (the task decides: runner.c's model_config). */
static int classes(const CfgNode *cfg, const char *path, long *k, Error *err) {
    const CfgNode *n = cfg_get(cfg, path);
    if (n && n->kind == CFG_SCALAR && n->text && !strcmp(n->text, "auto")) {
        *k = INT_MAX;
        return 0;
    }
    return cfg_get_int(cfg, path, 0, k, err);
}

/* The backbone's input (channels, height, width) and classifier size, which image-file datasets adapt to. */
static int backbone_input(int *C, int *H, int *W, int *K, const char **kpath, const CfgNode *cfg, Error *err) {
    const char *fam;
    long c, h, w, k;
    if (cfg_get_string(cfg, "backbone.family", "vit", &fam, err)) return -1;
    if (!strcmp(fam, "cnn")) {
        *kpath = "backbone.cnn.n_classes";
        if (cfg_get_int(cfg, "backbone.cnn.in_ch", 3, &c, err) || cfg_get_int(cfg, "backbone.cnn.img_h", 32, &h, err) ||
            cfg_get_int(cfg, "backbone.cnn.img_w", 32, &w, err) || classes(cfg, *kpath, &k, err))
            return -1;
    } else {
        *kpath = "backbone.vit.n_classes";
        if (cfg_get_int(cfg, "backbone.vit.in_ch", 3, &c, err) || cfg_get_int(cfg, "backbone.vit.img_size", 224, &h, err) ||
            classes(cfg, *kpath, &k, err))
            return -1;
        w = h;
    }
    if (c != 1 && c != 3)
        return err_set(err, "dataset: image files load as 1 (gray) or 3 (RGB) channels; the backbone has in_ch %ld", c);
    *C = (int)c, *H = (int)h, *W = (int)w, *K = (int)k;
    return 0;
}

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f}, IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

/* dataset.normalize: imagenet | inception (0.5 / 0.5) | dataset (the training split's per-channel statistics)
 * | none (x / 255) | custom (dataset.mean, dataset.std: one value or one per channel). */
static int normalization(float *mean, float *std, const char *how, const ImageSet *train, const CfgNode *cfg, Error *err) {
    int C = train->C;
    if (!strcmp(how, "imagenet")) {
        for (int c = 0; c < C; c++) /* gray backbones: the luminance weights of the RGB values */
            mean[c] = C == 3 ? IMAGENET_MEAN[c] : 0.299f * IMAGENET_MEAN[0] + 0.587f * IMAGENET_MEAN[1] + 0.114f * IMAGENET_MEAN[2],
            std[c] = C == 3 ? IMAGENET_STD[c] : 0.299f * IMAGENET_STD[0] + 0.587f * IMAGENET_STD[1] + 0.114f * IMAGENET_STD[2];
    } else if (!strcmp(how, "inception")) {
        for (int c = 0; c < C; c++) mean[c] = 0.5f, std[c] = 0.5f;
    } else if (!strcmp(how, "none")) {
        for (int c = 0; c < C; c++) mean[c] = 0, std[c] = 1;
    } else if (!strcmp(how, "dataset")) {
        imageset_channel_stats(train, mean, std);
        for (int c = 0; c < C; c++)
            if (std[c] < 1e-6f) std[c] = 1; /* a constant channel: centre it only */
    } else if (!strcmp(how, "custom")) {
        const char *names[2] = {"dataset.mean", "dataset.std"};
        float *dst[2] = {mean, std};
        for (int k = 0; k < 2; k++) {
            const CfgNode *l = cfg_get(cfg, names[k]);
            if (!l || l->kind != CFG_LIST || (l->n != 1 && l->n != C))
                return err_set(err, "%s: normalize: custom needs a list of 1 or %d numbers (one per channel)", names[k], C);
            for (int c = 0; c < C; c++) {
                double v;
                if (cfg_as_double(l->items[l->n == 1 ? 0 : c], &v) || (k == 1 && v <= 0))
                    return err_set(err, "%s[%d]: expected a number%s", names[k], l->n == 1 ? 0 : c, k ? " > 0" : "");
                dst[k][c] = (float)v;
            }
        }
    } else {
        return err_set(err, "dataset.normalize '%s': expected imagenet, inception, dataset, none or custom", how);
    }
    return 0;
}

/* Image-file datasets: vtab (a VTAB-1k folder), mini_vtab (generated, then loaded as vtab), cifar10. */
static int load_image_files(Cached **out, const char *name, const CfgNode *cfg, long train_n, long test_n, Error *err) {
    const char *root, *task, *split, *eval_split, *norm, *fm_path, *tr;
    long gen_seed, gen_size;
    int C = 0, H = 0, W = 0, K = 0;
    const char *kpath;
    int mini = !strcmp(name, "mini_vtab"), cifar = !strcmp(name, "cifar10");
    if (cfg_get_string(cfg, "dataset.root", mini ? MINIVTAB_DEFAULT_ROOT : NULL, &root, err) ||
        cfg_get_string(cfg, "dataset.task", NULL, &task, err) ||
        cfg_get_string(cfg, "dataset.split", "train800val200", &split, err) ||
        cfg_get_string(cfg, "dataset.eval_split", "test", &eval_split, err) ||
        cfg_get_string(cfg, "dataset.normalize", !strcmp(name, "vtab") ? "imagenet" : "dataset", &norm, err) ||
        cfg_get_string(cfg, "dataset.path", NULL, &fm_path, err) || cfg_get_string(cfg, "dataset.transform", "none", &tr, err) ||
        cfg_get_int(cfg, "dataset.gen_seed", 0, &gen_seed, err) || cfg_get_int(cfg, "dataset.gen_size", 32, &gen_size, err) ||
        backbone_input(&C, &H, &W, &K, &kpath, cfg, err))
        return -1;
    if (strcmp(tr, "none"))
        return err_set(err, "dataset.transform '%s' applies to fashion_mnist only (dataset.name is %s)", tr, name);
    char mini_root[128];
    if (mini && !cfg_get(cfg, "dataset.root") && (gen_seed != 0 || gen_size != 32)) { /* one folder per generation */
        snprintf(mini_root, sizeof mini_root, "%s-s%ld-seed%ld", MINIVTAB_DEFAULT_ROOT, gen_size, gen_seed);
        root = mini_root;
    }
    if (!root) return err_set(err, "dataset.root is not set: the folder of the %s files (docs/data.md)", name);
    if (!cifar && !task)
        return err_set(err, "dataset.task is not set: one of the 19 VTAB-1k task folders (runexp data tasks lists them)");
    const CfgNode *mn = cfg_get(cfg, "dataset.mean"), *sd = cfg_get(cfg, "dataset.std");
    char key[1200], stats[256] = "";
    for (int k = 0; k < 2; k++) {
        const CfgNode *l = k ? sd : mn;
        for (int i = 0; l && l->kind == CFG_LIST && i < l->n; i++)
            snprintf(stats + strlen(stats), sizeof stats - strlen(stats), "%s,", l->items[i]->text ? l->items[i]->text : "");
        snprintf(stats + strlen(stats), sizeof stats - strlen(stats), "/");
    }
    snprintf(key, sizeof key, "%s|%s|%s|%s|%s|%s|%s|%ld|%ld|%s|%d,%d,%d|%ld|%ld", name, root, cifar ? "" : task, split,
             eval_split, norm, stats, gen_seed, gen_size, fm_path ? fm_path : "", C, H, W, train_n, test_n);
    Cached *c = cache_find(key);
    if (c) {
        *out = c;
        return 0;
    }
    if (mini) {
        MiniVtabOptions mo = {.out = root, .size = (int)gen_size, .seed = (uint64_t)gen_seed, .fmnist_dir = fm_path,
                              .verbose = 1};
        if (minivtab_generate(&mo, NULL, err)) return -1;
    }
    /* at most 60% of this machine's memory as floats; the error says how to load less */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    long max_bytes = pages > 0 && psize > 0 ? (long)((double)pages * psize * 0.6) : 0;
    ImageSet train, test;
    if (cifar) {
        if (cifar10_load(&train, root, 1, C, H, W, train_n, err)) return -1;
        if (cifar10_load(&test, root, 0, C, H, W, test_n, err)) { imageset_free(&train); return -1; }
    } else {
        VtabLoadOptions vo = {.root = root, .task = task, .split = split, .C = C, .H = H, .W = W, .limit = train_n,
                              .max_bytes = max_bytes};
        if (vtab_load(&train, &vo, err)) return -1;
        vo.split = eval_split;
        vo.limit = test_n;
        if (vtab_load(&test, &vo, err)) { imageset_free(&train); return -1; }
    }
    if (train.K > K) {
        err_set(err, "dataset: %s%s%s has %d classes but %s is %d: set %s: %d (and backbone.skip_head: true when a "
                "checkpoint's head has another size)", name, cifar ? "" : " task ", cifar ? "" : task, train.K, kpath, K,
                kpath, train.K);
        imageset_free(&train);
        imageset_free(&test);
        return -1;
    }
    float mean[3], std[3];
    if (normalization(mean, std, norm, &train, cfg, err)) {
        imageset_free(&train);
        imageset_free(&test);
        return -1;
    }
    imageset_normalize(&train, mean, std);
    imageset_normalize(&test, mean, std);
    c = cache_add(key);
    c->train = train;
    c->test = test;
    *out = c;
    return 0;
}

int task_load(ImageSet *train, ImageSet *test, const CfgNode *cfg, Error *err) {
    const char *name, *path, *tr;
    long train_n, test_n;
    if (cfg_get_string(cfg, "dataset.name", NULL, &name, err) || cfg_get_string(cfg, "dataset.path", NULL, &path, err) ||
        cfg_get_string(cfg, "dataset.transform", "none", &tr, err) ||
        cfg_get_int(cfg, "dataset.train_n", 0, &train_n, err) || cfg_get_int(cfg, "dataset.test_n", 0, &test_n, err))
        return -1;
    if (!strcmp(name, "vtab") || !strcmp(name, "mini_vtab") || !strcmp(name, "cifar10")) {
        Cached *c = NULL;
        if (load_image_files(&c, name, cfg, train_n, test_n, err)) return -1;
        *train = c->train; /* loaded with the limits already */
        *test = c->test;
        return 0;
    }
    if (strcmp(name, "fashion_mnist"))
        return err_set(err, "dataset.name '%s' has no loader (available: fashion_mnist, vtab, mini_vtab, cifar10)", name);
    char key[600];
    snprintf(key, sizeof key, "%s|%s|%s", name, path ? path : "", tr);
    Cached *c = cache_find(key);
    if (!c) {
        IdxSet a, b;
        if (fashion_mnist_load(&a, path, 1, err)) return -1;
        if (fashion_mnist_load(&b, path, 0, err)) { idx_free(&a); return -1; }
        transform(&a, tr);
        transform(&b, tr);
        float mean, std;
        idx_pixel_stats(&a, &mean, &std);
        c = cache_add(key);
        imageset_from_idx(&c->train, &a, mean, std);
        imageset_from_idx(&c->test, &b, mean, std);
        idx_free(&a);
        idx_free(&b);
    }
    *train = train_n > 0 ? imageset_head(&c->train, (int)train_n) : c->train;
    *test = test_n > 0 ? imageset_head(&c->test, (int)test_n) : c->test;
    return 0;
}

void task_cache_free(void) {
    for (int i = 0; i < n_cache; i++) {
        imageset_free(&cache[i].train);
        imageset_free(&cache[i].test);
    }
    n_cache = 0;
}
