/* experiments/task.c */
#include "task.h"

#include <string.h>

#include "datasets/idx.h"

typedef struct Cached {
    char key[600];
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

int task_load(ImageSet *train, ImageSet *test, const CfgNode *cfg, Error *err) {
    const char *name, *path, *tr;
    long train_n, test_n;
    if (cfg_get_string(cfg, "dataset.name", NULL, &name, err) || cfg_get_string(cfg, "dataset.path", NULL, &path, err) ||
        cfg_get_string(cfg, "dataset.transform", "none", &tr, err) ||
        cfg_get_int(cfg, "dataset.train_n", 0, &train_n, err) || cfg_get_int(cfg, "dataset.test_n", 0, &test_n, err))
        return -1;
    if (strcmp(name, "fashion_mnist"))
        return err_set(err, "dataset.name '%s' has no loader yet (available: fashion_mnist)", name);
    char key[600];
    snprintf(key, sizeof key, "%s|%s|%s", name, path ? path : "", tr);
    Cached *c = NULL;
    for (int i = 0; i < n_cache; i++)
        if (!strcmp(cache[i].key, key)) c = &cache[i];
    if (!c) {
        IdxSet a, b;
        if (fashion_mnist_load(&a, path, 1, err)) return -1;
        if (fashion_mnist_load(&b, path, 0, err)) { idx_free(&a); return -1; }
        transform(&a, tr);
        transform(&b, tr);
        float mean, std;
        idx_pixel_stats(&a, &mean, &std);
        if (n_cache == (int)ARRAY_LEN(cache)) { /* evict the oldest */
            imageset_free(&cache[0].train);
            imageset_free(&cache[0].test);
            memmove(cache, cache + 1, sizeof cache[0] * (ARRAY_LEN(cache) - 1));
            n_cache--;
        }
        c = &cache[n_cache++];
        snprintf(c->key, sizeof c->key, "%s", key);
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
