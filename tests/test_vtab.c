/* tests/test_vtab.c: image files, PIL-exact bicubic resize, the VTAB-1k folder loader, the dataset kinds of
 * experiments/task.c (vtab, cifar10), the mini-VTAB generator. argv[1] picks the case:
 *   resize     datasets/resize.c against PIL (tests/fixtures/vtab_resize.bin, scripts/make_vtab_fixtures.py),
 *              a constant image stays constant, JPEG decode + convert + resize against PIL (vtab_sample*)
 *   load       a VTAB folder written here (PNG + JPEG, gray + RGB, odd sizes) loads with its labels, sizes,
 *              channel conversion and normalization through task_load
 *   errors     malformed list line, label out of range, missing image, missing task folder, missing root:
 *              each error names the file (and line)
 *   cifar      CIFAR-10 binary files written here; truncated file and bad label are errors
 *   minivtab   the generator (needs Fashion-MNIST; SKIP without): split sizes, class counts, disjoint
 *              Fashion-MNIST sources between train and test, rerun is a no-op, regenerating tasks with one
 *              thread gives the same bytes (FNV-1a over every file) */
#include <dirent.h>
#include <omp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/cifar.h"
#include "datasets/imagefile.h"
#include "datasets/minivtab.h"
#include "datasets/resize.h"
#include "datasets/vtab.h"
#include "experiments/config.h"
#include "experiments/schema.h"
#include "experiments/task.h"
#include "testlib.h"

static char tmpdir[256];

static void make_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/loralab_test_vtab_XXXXXX");
    ASSERT(mkdtemp(tmpdir));
}
static void rm_tree(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
}
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    fclose(f);
}
static long read_file(const char *path, uint8_t *buf, long cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = (long)fread(buf, 1, (size_t)cap, f);
    fclose(f);
    return n;
}

/* ---- resize ------------------------------------------------------------------------------------------------ */
static int test_resize(void) {
    static uint8_t fx[8192];
    long n = read_file(TEST_FIXTURE_DIR "/vtab_resize.bin", fx, sizeof fx);
    CHECK_MSG(n == 13 * 17 * 3 + (6 * 8 + 29 * 31 + 13 * 5 + 4 * 17) * 3, "vtab_resize.bin: %ld bytes", n);
    if (n < 0) return test_finish("vtab resize");
    const uint8_t *src = fx, *ref = fx + 13 * 17 * 3;
    int sizes[4][2] = {{6, 8}, {29, 31}, {13, 5}, {4, 17}};
    for (int k = 0; k < 4; k++) {
        int h = sizes[k][0], w = sizes[k][1], bad = 0;
        uint8_t out[29 * 31 * 3];
        resize_bicubic_u8(out, h, w, src, 13, 17, 3);
        for (int i = 0; i < h * w * 3; i++) bad += out[i] != ref[i];
        CHECK_MSG(bad == 0, "resize 13x17 -> %dx%d: %d of %d bytes differ from PIL", h, w, bad, h * w * 3);
        ref += h * w * 3;
    }
    /* a constant image stays constant (weights sum to one; fixed-point rounding must not drift) */
    uint8_t cst[23 * 19 * 3], big[224 * 224 * 3];
    for (int v = 0; v <= 255; v += 51) {
        memset(cst, v, sizeof cst);
        resize_bicubic_u8(big, 224, 224, cst, 23, 19, 3);
        int bad = 0;
        for (int i = 0; i < 224 * 224 * 3; i++) bad += big[i] != v;
        CHECK_MSG(bad == 0, "constant %d: %d pixels changed by the resize", v, bad);
    }
    /* JPEG decode (same libjpeg as PIL) + convert + resize, against PIL */
    static uint8_t pil[4096];
    n = read_file(TEST_FIXTURE_DIR "/vtab_sample_pil.bin", pil, sizeof pil);
    CHECK(n == 20 * 24 * 3 + 16 * 16 * 3 + 16 * 16);
    Image8 im;
    Error e;
    CHECK_MSG(image_read(&im, TEST_FIXTURE_DIR "/vtab_sample.jpg", &e) == 0, "%s", e.msg);
    if (im.px && n > 0) {
        CHECK(im.h == 20 && im.w == 24 && im.c == 3);
        CHECK(memcmp(im.px, pil, 20 * 24 * 3) == 0);
        float rgb[3 * 16 * 16], gray[16 * 16];
        image_to_chw_float(rgb, 3, 16, 16, im.px, im.h, im.w, im.c);
        image_to_chw_float(gray, 1, 16, 16, im.px, im.h, im.w, im.c);
        int bad = 0;
        for (int p = 0; p < 256; p++) {
            for (int c = 0; c < 3; c++) bad += (int)(rgb[c * 256 + p] * 255 + 0.5f) != pil[20 * 24 * 3 + p * 3 + c];
            bad += (int)(gray[p] * 255 + 0.5f) != pil[20 * 24 * 3 + 16 * 16 * 3 + p];
        }
        CHECK_MSG(bad == 0, "JPEG -> 16x16 RGB / L: %d values differ from PIL", bad);
    }
    image8_free(&im);
    return test_finish("vtab resize");
}

/* ---- a tiny VTAB folder -------------------------------------------------------------------------------------- */
/* <tmp>/vtab/dtd: train800.txt (4 images), test.txt (2 images); constant-colour images of several sizes. */
static const uint8_t COLORS[6][3] = {{200, 30, 90}, {0, 255, 17}, {128, 128, 128}, {77, 77, 77}, {10, 20, 30}, {255, 0, 0}};
static const int LABELS[6] = {3, 46, 0, 12, 7, 1};
static void write_folder(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/vtab/dtd/images/train800", tmpdir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/vtab/dtd/images/test'", p, tmpdir);
    ASSERT(system(cmd) == 0);
    const char *files[6] = {"train800/a.png", "train800/b.jpg", "train800/c.png", "train800/d.jpg", "test/e.png", "test/f.jpg"};
    int hw[6][2] = {{40, 30}, {17, 23}, {8, 8}, {64, 48}, {5, 9}, {32, 32}};
    Error e;
    for (int i = 0; i < 6; i++) {
        int h = hw[i][0], w = hw[i][1], gray = COLORS[i][0] == COLORS[i][1] && COLORS[i][1] == COLORS[i][2];
        int c = gray ? 1 : 3;
        uint8_t *px = xmalloc((size_t)h * w * c);
        for (int k = 0; k < h * w; k++)
            for (int ch = 0; ch < c; ch++) px[k * c + ch] = COLORS[i][ch];
        snprintf(p, sizeof p, "%s/vtab/dtd/images/%s", tmpdir, files[i]);
        int rc = strstr(files[i], ".png") ? image_write_png(p, px, h, w, c, &e) : image_write_jpeg(p, px, h, w, c, 100, &e);
        ASSERTF(rc == 0, "%s", e.msg);
        free(px);
    }
    snprintf(p, sizeof p, "%s/vtab/dtd/train800.txt", tmpdir);
    char text[1024] = "";
    for (int i = 0; i < 4; i++) /* CRLF and blank lines are allowed */
        snprintf(text + strlen(text), sizeof text - strlen(text), "images/%s %d%s", files[i], LABELS[i], i == 1 ? "\r\n\n" : "\n");
    write_text(p, text);
    snprintf(p, sizeof p, "%s/vtab/dtd/test.txt", tmpdir);
    snprintf(text, sizeof text, "images/%s %d\nimages/%s %d\n", files[4], LABELS[4], files[5], LABELS[5]);
    write_text(p, text);
}

/* An experiment config over the folder: tiny ViT geometry with in_ch C, img_size H. */
static CfgNode *config(int C, int H, int n_classes, const char *dataset_extra) {
    char p[512], text[2048];
    snprintf(p, sizeof p, "%s/exp_%d_%d_%d.yaml", tmpdir, C, H, n_classes);
    snprintf(text, sizeof text,
             "name: t\nbackbone:\n  family: vit\n  vit: {img_size: %d, in_ch: %d, patch: 4, dim: 8, depth: 1, heads: 1, "
             "mlp_hidden: 8, n_classes: %d}\ndataset:\n  name: vtab\n  root: %s/vtab\n  task: dtd\n  split: train800\n%s"
             "stages: [finetune]\ntrainer: {lr: 1e-3, batch: 2}\n", H, C, n_classes, tmpdir, dataset_extra);
    write_text(p, text);
    Error e;
    CfgNode *c = cfg_load(p, &e);
    ASSERTF(c, "%s", e.msg);
    ASSERTF(schema_validate(c, &SCHEMA_EXPERIMENT, 0, NULL, &e) == 0, "%s", e.msg);
    return c;
}

static int test_load(void) {
    make_tmp();
    write_folder();
    /* RGB at 12x12, ImageNet normalization (the vtab default) */
    CfgNode *c = config(3, 12, 47, "");
    ImageSet tr, te;
    Error e;
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    CHECK(tr.n == 4 && te.n == 2 && tr.C == 3 && tr.H == 12 && tr.W == 12 && tr.K == 47);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    CHECK(tr.x == NULL && tr.u8 != NULL); /* image files are held as bytes */
    for (int i = 0; i < 6; i++) {
        const ImageSet *s = i < 4 ? &tr : &te;
        int j = i < 4 ? i : i - 4;
        CHECK(s->y[j] == LABELS[i]);
        int jpeg = i == 1 || i == 3 || i == 5;
        for (int ch = 0; ch < 3; ch++) {
            /* constant images stay constant through the resize; JPEG may move a value by a few levels */
            double want = (COLORS[i][ch] / 255.0 - mean[ch]) / sd[ch], tol = jpeg ? 4 / 255.0 / sd[ch] : 1e-5;
            for (int p = 0; p < 144; p += 37) CHECK_NEAR(imageset_pixel(s, j, ch, p), want, tol);
        }
    }
    cfg_free(c);
    /* gray backbone (in_ch 1) at 7x7, normalize: none -> x = L / 255 with PIL's luminance */
    c = config(1, 7, 50, "  normalize: none\n  eval_split: test\n");
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    CHECK(tr.C == 1 && tr.H == 7 && tr.W == 7);
    for (int i = 0; i < 4; i++) {
        uint8_t L;
        rgb_to_gray_u8(&L, COLORS[i], 1);
        CHECK_NEAR(imageset_pixel(&tr, i, 0, 24), L / 255.0, (i == 1 || i == 3) ? 4 / 255.0 : 1e-6);
    }
    cfg_free(c);
    /* normalize: dataset -> every channel of the training split has mean 0, std 1; custom mean/std */
    c = config(3, 6, 47, "  normalize: dataset\n");
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    float m[3], s[3];
    imageset_channel_stats(&tr, m, s);
    for (int ch = 0; ch < 3; ch++) CHECK(fabsf(m[ch]) < 1e-5f && fabsf(s[ch] - 1) < 1e-4f);
    cfg_free(c);
    c = config(3, 5, 47, "  normalize: custom\n  mean: [0.5]\n  std: [0.25, 0.5, 1]\n");
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    /* image a: R with mean 0.5 std 0.25, B with mean 0.5 std 1 */
    CHECK_NEAR(imageset_pixel(&tr, 0, 0, 0), (200 / 255.0 - 0.5) / 0.25, 1e-5);
    CHECK_NEAR(imageset_pixel(&tr, 0, 2, 0), (90 / 255.0 - 0.5) / 1.0, 1e-5);
    {   /* bytes read as the same bits as floats converted then normalized (imageset.h): batch, rows, pixel */
        ImageSet f = tr;
        size_t per = (size_t)tr.C * tr.H * tr.W;
        float *x = xmalloc((size_t)tr.n * per * sizeof(float)), *xb = xmalloc((size_t)tr.n * per * sizeof(float));
        for (size_t k = 0; k < (size_t)tr.n * per; k++) x[k] = tr.u8[k] * (1.0f / 255.0f);
        f.x = x, f.u8 = NULL;
        const float mc[3] = {0.5f, 0.5f, 0.5f}, sc[3] = {0.25f, 0.5f, 1.0f};
        imageset_normalize(&f, mc, sc);
        int idx[4] = {3, 1, 0, 2}, yb[4];
        imageset_batch(xb, yb, &tr, idx, 4, 1, 7, 0); /* with flips */
        float *xf = xmalloc(4 * per * sizeof(float));
        imageset_batch(xf, yb, &f, idx, 4, 1, 7, 0);
        CHECK(!memcmp(xb, xf, 4 * per * sizeof(float)));
        CHECK(!memcmp(imageset_rows(&tr, 1, 2, xb), x + per, 2 * per * sizeof(float)));
        free(x), free(xb), free(xf);
    }
    cfg_free(c);
    /* train_n / test_n load the first lines only */
    c = config(3, 5, 47, "  normalize: none\n  train_n: 2\n  test_n: 1\n");
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    CHECK(tr.n == 2 && te.n == 1);
    cfg_free(c);
    /* too few classes in the backbone: the error names the key to set */
    c = config(3, 5, 10, "  normalize: none\n");
    CHECK(task_load(&tr, &te, c, &e) != 0);
    CHECK_MSG(strstr(e.msg, "backbone.vit.n_classes") && strstr(e.msg, "47"), "%s", e.msg);
    cfg_free(c);
    task_cache_free();
    rm_tree();
    return test_finish("vtab load");
}

static int load_err(Error *e, const char *split) {
    char root[400];
    snprintf(root, sizeof root, "%s/vtab", tmpdir);
    VtabLoadOptions o = {.root = root, .task = "dtd", .split = split, .C = 3, .H = 4, .W = 4};
    ImageSet s;
    int rc = vtab_load(&s, &o, e);
    if (!rc) imageset_free(&s);
    return rc;
}
static int test_errors(void) {
    make_tmp();
    write_folder();
    char p[512], text[512];
    Error e;
    snprintf(p, sizeof p, "%s/vtab/dtd/val200.txt", tmpdir);
    write_text(p, "images/train800/a.png 1\nimages/train800/c.png\n"); /* line 2: no label */
    CHECK(load_err(&e, "val200") != 0);
    CHECK_MSG(strstr(e.msg, "val200.txt:2:") && strstr(e.msg, "expected `<image path> <label>`"), "%s", e.msg);
    write_text(p, "images/train800/a.png 1\n\nimages/train800/c.png 47\n"); /* line 3: dtd has 47 classes */
    CHECK(load_err(&e, "val200") != 0);
    CHECK_MSG(strstr(e.msg, "val200.txt:3:") && strstr(e.msg, "47 classes"), "%s", e.msg);
    write_text(p, "images/train800/a.png 1\nimages/train800/a.png 2\nimages/val200/nope.png 3\n");
    CHECK(load_err(&e, "val200") != 0);
    CHECK_MSG(strstr(e.msg, "val200.txt:3:") && strstr(e.msg, "images/val200/nope.png") && strstr(e.msg, "No such file"),
              "%s", e.msg);
    snprintf(text, sizeof text, "%s/vtab/dtd/images/train800/bad.png", tmpdir);
    write_text(text, "this is not an image");
    write_text(p, "images/train800/bad.png 1\n");
    CHECK(load_err(&e, "val200") != 0);
    CHECK_MSG(strstr(e.msg, "val200.txt:1:") && strstr(e.msg, "not a JPEG or PNG"), "%s", e.msg);
    /* a JPEG cut short is an error (libjpeg would pad it with gray; PIL refuses it too) */
    snprintf(text, sizeof text, "cp '%s/vtab/dtd/images/train800/d.jpg' '%s/full.jpg' && head -c -12 '%s/full.jpg' > "
             "'%s/vtab/dtd/images/train800/d.jpg'", tmpdir, tmpdir, tmpdir, tmpdir);
    CHECK(system(text) == 0);
    write_text(p, "images/train800/a.png 1\nimages/train800/d.jpg 2\n");
    CHECK(load_err(&e, "val200") != 0);
    CHECK_MSG(strstr(e.msg, "val200.txt:2:") && strstr(e.msg, "truncated"), "%s", e.msg);
    CHECK(load_err(&e, "train800val200") != 0); /* no such list */
    CHECK_MSG(strstr(e.msg, "dtd/train800val200.txt") && strstr(e.msg, "cannot open"), "%s", e.msg);
    char root[400];
    snprintf(root, sizeof root, "%s/vtab", tmpdir);
    VtabLoadOptions o = {.root = root, .task = "svhn", .split = "test", .C = 3, .H = 4, .W = 4};
    ImageSet s;
    CHECK(vtab_load(&s, &o, &e) != 0);
    CHECK_MSG(strstr(e.msg, "missing task folder") && strstr(e.msg, "/vtab/svhn"), "%s", e.msg);
    o.root = "/nonexistent/vtab-1k";
    CHECK(vtab_load(&s, &o, &e) != 0);
    CHECK_MSG(strstr(e.msg, "/nonexistent/vtab-1k") && strstr(e.msg, "dataset.root"), "%s", e.msg);
    o.root = root, o.task = "cifar100";
    CHECK(vtab_load(&s, &o, &e) != 0);
    CHECK_MSG(strstr(e.msg, "unknown task 'cifar100'"), "%s", e.msg);
    /* the memory bound names the options that load less */
    o.task = "dtd", o.split = "train800", o.max_bytes = 100;
    CHECK(vtab_load(&s, &o, &e) != 0);
    CHECK_MSG(strstr(e.msg, "test_n"), "%s", e.msg);
    /* the task table: 19 tasks, 7 / 4 / 8 per group, the class counts of VTAB */
    int per[3] = {0}, total = 0;
    for (int i = 0; i < VTAB_N_TASKS; i++) per[VTAB_TASKS[i].group]++, total += VTAB_TASKS[i].n_classes;
    CHECK(per[0] == 7 && per[1] == 4 && per[2] == 8);
    CHECK(total == 100 + 102 + 47 + 102 + 37 + 10 + 397 + 2 + 10 + 45 + 5 + 8 + 6 + 6 + 4 + 16 + 16 + 18 + 9);
    CHECK(vtab_task_find("sun397")->n_classes == 397 && vtab_task_find("smallnorb_ele")->n_classes == 9);
    rm_tree();
    return test_finish("vtab errors");
}

/* ---- CIFAR-10 ----------------------------------------------------------------------------------------------- */
static void cifar_record(uint8_t *rec, int label, int seed) {
    rec[0] = (uint8_t)label;
    for (int k = 0; k < 3072; k++) rec[1 + k] = (uint8_t)(k * 7 + seed * 31);
}
static int test_cifar(void) {
    make_tmp();
    char dir[400], p[512];
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", tmpdir);
    mkdir(dir, 0777);
    uint8_t rec[CIFAR_RECORD];
    int labels[2][3] = {{4, 9, 0}, {2, 7, 0}};
    for (int b = 0; b < 2; b++) { /* data_batch_1 (3 records), data_batch_2 (2 records) */
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b + 1);
        FILE *f = fopen(p, "wb");
        for (int r = 0; r < 3 - b; r++) cifar_record(rec, labels[b][r], b * 3 + r), fwrite(rec, 1, sizeof rec, f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    FILE *f = fopen(p, "wb");
    cifar_record(rec, 5, 99);
    fwrite(rec, 1, sizeof rec, f);
    fclose(f);
    ImageSet tr, te;
    Error e;
    CHECK_MSG(cifar10_load(&tr, tmpdir, 1, 3, 32, 32, 0, &e) == 0, "%s", e.msg); /* finds cifar-10-batches-bin/ */
    CHECK(tr.n == 5 && tr.C == 3 && tr.H == 32 && tr.K == 10);
    int bad = 0;
    for (int i = 0; i < tr.n; i++) {
        cifar_record(rec, 0, i);
        for (int k = 0; k < 3072; k++) bad += fabsf(imageset_pixel(&tr, i, k / 1024, k % 1024) - rec[1 + k] / 255.0f) > 1e-7f;
    }
    CHECK_MSG(bad == 0, "%d pixel values differ from the records (plane order R, G, B)", bad);
    CHECK(tr.n == 5 && tr.y[0] == 4 && tr.y[1] == 9 && tr.y[3] == 2 && tr.y[4] == 7);
    imageset_free(&tr);
    CHECK_MSG(cifar10_load(&te, dir, 0, 1, 16, 16, 0, &e) == 0, "%s", e.msg); /* gray, resized */
    CHECK(te.n == 1 && te.y[0] == 5 && te.C == 1 && te.H == 16);
    imageset_free(&te);
    CHECK(cifar10_load(&tr, dir, 1, 3, 32, 32, 4, &e) == 0 && tr.n == 4); /* limit */
    imageset_free(&tr);
    /* a bad label and a truncated file */
    f = fopen(p, "wb");
    cifar_record(rec, 12, 0);
    fwrite(rec, 1, sizeof rec, f);
    fclose(f);
    CHECK(cifar10_load(&te, dir, 0, 3, 32, 32, 0, &e) != 0);
    CHECK_MSG(strstr(e.msg, "test_batch.bin: record 0") && strstr(e.msg, "label 12"), "%s", e.msg);
    f = fopen(p, "wb");
    fwrite(rec, 1, 100, f);
    fclose(f);
    CHECK(cifar10_load(&te, dir, 0, 3, 32, 32, 0, &e) != 0);
    CHECK_MSG(strstr(e.msg, "test_batch.bin") && strstr(e.msg, "whole number"), "%s", e.msg);
    /* through task_load: dataset.name cifar10 */
    CfgNode *c;
    char yml[512], text[1024];
    snprintf(yml, sizeof yml, "%s/c.yaml", tmpdir);
    snprintf(text, sizeof text, "name: t\nbackbone: {family: cnn, cnn: {kind: resnet, width: 4, stages: 1, "
             "blocks_per_stage: 1, in_ch: 3, img_h: 32, img_w: 32, n_classes: 10}}\ndataset: {name: cifar10, root: %s, "
             "normalize: none}\nstages: [finetune]\n", dir);
    write_text(yml, text);
    c = cfg_load(yml, &e);
    CHECK(c != NULL);
    CHECK_MSG(schema_validate(c, &SCHEMA_EXPERIMENT, 0, NULL, &e) == 0, "%s", e.msg);
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    f = fopen(p, "wb");
    cifar_record(rec, 3, 1);
    fwrite(rec, 1, sizeof rec, f);
    fclose(f);
    CHECK_MSG(task_load(&tr, &te, c, &e) == 0, "%s", e.msg);
    CHECK(tr.n == 5 && te.n == 1 && te.y[0] == 3);
    cfg_free(c);
    task_cache_free();
    rm_tree();
    return test_finish("vtab cifar");
}

/* ---- mini-VTAB ---------------------------------------------------------------------------------------------- */
static uint64_t fnv(uint64_t h, const uint8_t *p, long n) {
    for (long i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
/* FNV-1a over the task's four lists, sources.txt and every image named in them, in list order. */
static uint64_t hash_task(const char *root, const char *task) {
    static uint8_t buf[1 << 16];
    uint64_t h = 0xcbf29ce484222325ull;
    const char *lists[5] = {"train800.txt", "val200.txt", "train800val200.txt", "test.txt", "sources.txt"};
    char p[1024], line[512];
    for (int l = 0; l < 5; l++) {
        snprintf(p, sizeof p, "%s/%s/%s", root, task, lists[l]);
        long n = read_file(p, buf, sizeof buf);
        if (n < 0) continue;
        h = fnv(h, buf, n);
    }
    for (int l = 0; l < 4; l += 3) {
        snprintf(p, sizeof p, "%s/%s/%s", root, task, lists[l]);
        FILE *f = fopen(p, "r");
        while (f && fgets(line, sizeof line, f)) {
            *strchr(line, ' ') = 0;
            char ip[1200];
            snprintf(ip, sizeof ip, "%s/%s/%s", root, task, line);
            long n = read_file(ip, buf, sizeof buf);
            h = fnv(h, buf, n > 0 ? n : 0);
        }
        if (f) fclose(f);
    }
    return h;
}
static int count_lines(const char *path, int *labels, int K, int *bad_label) {
    FILE *f = fopen(path, "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        int lab = atoi(strchr(line, ' ') + 1);
        if (lab < 0 || lab >= K) (*bad_label)++;
        else if (labels) labels[lab]++;
        n++;
    }
    if (f) fclose(f);
    return n;
}

static int test_minivtab(void) {
    IdxSet fm;
    Error e;
    if (fashion_mnist_load(&fm, NULL, 0, &e)) {
        fprintf(stderr, "SKIP: %s\n", e.msg);
        return TEST_SKIP;
    }
    make_tmp();
    char out[400];
    snprintf(out, sizeof out, "%s/mini", tmpdir);
    MiniVtabOptions o = {.out = out, .size = 32, .seed = 7};
    int made = 0;
    double t0 = now_seconds();
    CHECK_MSG(minivtab_generate(&o, &made, &e) == 0, "%s", e.msg);
    printf("mini-VTAB-19 generated in %.2f s (%d threads)\n", now_seconds() - t0, omp_get_max_threads());
    CHECK(made == 1);
    t0 = now_seconds();
    CHECK(minivtab_generate(&o, &made, &e) == 0 && made == 0); /* the stamp matches: nothing to do */
    CHECK(now_seconds() - t0 < 0.5);
    MiniVtabOptions other = o;
    other.seed = 8;
    CHECK(minivtab_generate(&other, &made, &e) != 0); /* another generation's folder is not overwritten */
    CHECK_MSG(strstr(e.msg, "another generation"), "%s", e.msg);

    int *seen = xcalloc(10000, sizeof(int));
    for (int t = 0; t < VTAB_N_TASKS; t++) {
        const VtabTask *task = &VTAB_TASKS[t];
        int K = task->n_classes, bad = 0, *counts = xcalloc((size_t)K, sizeof(int));
        char p[600];
        const char *lists[4] = {"train800", "val200", "train800val200", "test"};
        int want[4] = {800, 200, 1000, MINIVTAB_TEST_N}, got[4];
        for (int l = 0; l < 4; l++) {
            snprintf(p, sizeof p, "%s/%s/%s.txt", out, task->name, lists[l]);
            got[l] = count_lines(p, l == 0 || l == 3 ? counts : NULL, K, &bad);
        }
        CHECK_MSG(got[0] == want[0] && got[1] == want[1] && got[2] == want[2] && got[3] == want[3],
                  "%s: split sizes %d %d %d %d", task->name, got[0], got[1], got[2], got[3]);
        int missing = 0;
        for (int k = 0; k < K; k++) missing += counts[k] == 0;
        CHECK_MSG(bad == 0 && missing == 0, "%s: %d labels out of 0..%d, %d classes without images", task->name, bad,
                  K - 1, missing);
        free(counts);
        /* the loader reads it: 32x32 RGB, K classes */
        VtabLoadOptions vo = {.root = out, .task = task->name, .split = "val200", .C = 3, .H = 32, .W = 32};
        ImageSet s;
        CHECK_MSG(vtab_load(&s, &vo, &e) == 0, "%s", e.msg);
        CHECK(s.n == 200 && s.K == K);
        imageset_free(&s);
        if (task->group != VTAB_NATURAL) continue;
        /* natural tasks: Fashion-MNIST sources of train800 + val200 and of test are disjoint */
        memset(seen, 0, 10000 * sizeof(int));
        snprintf(p, sizeof p, "%s/%s/sources.txt", out, task->name);
        FILE *f = fopen(p, "r");
        char line[512];
        int shared = 0, n_img = 0, n_src = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (line[0] == '#') continue;
            int split = strstr(line, "images/test/") ? 2 : 1;
            n_img++;
            char *s2 = strchr(line, ' ');
            while (s2 && *s2 == ' ') {
                int k = (int)strtol(s2 + 1, &s2, 10);
                if (k < 0 || k >= fm.n) { shared++; continue; }
                if (seen[k] && seen[k] != split) shared++;
                seen[k] = split;
                n_src++;
            }
        }
        if (f) fclose(f);
        CHECK_MSG(n_img == 2000 && n_src >= 2000 && shared == 0, "%s: %d images, %d sources, %d shared between train and test",
                  task->name, n_img, n_src, shared);
    }
    free(seen);
    /* determinism: regenerate one task per group with one thread, compare every byte (hash) */
    char again[400];
    snprintf(again, sizeof again, "%s/again", tmpdir);
    mkdir(again, 0777);
    int prev = omp_get_max_threads();
    omp_set_num_threads(1);
    const int check_tasks[3] = {0, 9, 17}; /* cifar, resisc45, smallnorb_azi */
    for (int k = 0; k < 3; k++) {
        int t = check_tasks[k];
        CHECK_MSG(minivtab_generate_task(again, t, &o, &fm, &e) == 0, "%s", e.msg);
        uint64_t h1 = hash_task(out, VTAB_TASKS[t].name), h2 = hash_task(again, VTAB_TASKS[t].name);
        CHECK_MSG(h1 == h2, "%s: hash %016llx vs %016llx on regeneration", VTAB_TASKS[t].name, (unsigned long long)h1,
                  (unsigned long long)h2);
    }
    omp_set_num_threads(prev);
    /* another seed gives other images */
    MiniVtabOptions o8 = o;
    o8.seed = 8;
    char third[400];
    snprintf(third, sizeof third, "%s/seed8", tmpdir);
    mkdir(third, 0777);
    CHECK(minivtab_generate_task(third, 0, &o8, &fm, &e) == 0);
    CHECK(hash_task(out, "cifar") != hash_task(third, "cifar"));
    idx_free(&fm);
    rm_tree();
    return test_finish("vtab minivtab");
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "resize")) return test_resize();
    if (!strcmp(c, "load")) return test_load();
    if (!strcmp(c, "errors")) return test_errors();
    if (!strcmp(c, "cifar")) return test_cifar();
    if (!strcmp(c, "minivtab")) return test_minivtab();
    fprintf(stderr, "usage: test_vtab resize|load|errors|cifar|minivtab\n");
    return 2;
}
