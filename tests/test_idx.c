/* tests/test_idx.c: datasets/idx.h on small IDX files written at test time (raw and gzipped) and on the real
 * Fashion-MNIST when installed. argv[1]: load | missing | fault | fashion. */
#include "datasets/idx.h"
#include "testlib.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[512];

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/loralab_idx_XXXXXX", base && *base ? base : "/tmp");
    ASSERTF(mkdtemp(tmpdir), "mkdtemp %s failed", tmpdir);
}
static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char p[1024];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}
/* <tmpdir>/<name> in a ring of 4 static buffers: valid until the 4th next call. */
static const char *tpath(const char *name) {
    static char p[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(p[slot], sizeof p[slot], "%s/%s", tmpdir, name);
    return p[slot];
}

/* Writes an IDX file: magic, dims, then `len` bytes of the payload (pattern (i * 7 + 3) % 256, or labels
 * i % 10 for 1-D), plus `extra` trailing bytes; gz != 0 writes it gzipped. Returns the full path. */
static const char *write_idx(const char *name, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                             size_t len, size_t extra) {
    size_t total = 4 + 4 * (size_t)ndim + len + extra;
    unsigned char *buf = xcalloc(total, 1);
    uint32_t words[4] = {magic};
    for (int d = 0; d < ndim; d++) words[d + 1] = dims[d];
    for (int w = 0; w <= ndim; w++)
        for (int b = 0; b < 4; b++) buf[4 * w + b] = (unsigned char)(words[w] >> (24 - 8 * b));
    for (size_t i = 0; i < len + extra; i++)
        buf[4 + 4 * ndim + i] = (unsigned char)(ndim == 1 ? i % 10 : (i * 7 + 3) % 256);
    const char *path = tpath(name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ASSERT(f && gzwrite(f, buf, (unsigned)total) == (int)total && gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ASSERT(f && fwrite(buf, 1, total, f) == total && fclose(f) == 0);
    }
    free(buf);
    return path;
}

static const uint32_t IMG_DIMS[3] = {5, 4, 3}; /* 60 bytes of pixels, 76 bytes in all */
static const uint32_t LBL_DIMS[1] = {5};       /* 13 bytes in all */

static const char *write_images(const char *name, int gz, size_t len, size_t extra) {
    return write_idx(name, gz, 0x803, IMG_DIMS, 3, len, extra);
}
static const char *write_labels(const char *name, int gz, uint32_t n, size_t extra) {
    uint32_t dims[1] = {n};
    return write_idx(name, gz, 0x801, dims, 1, n, extra);
}

/* ---- idx_load --------------------------------------------------------------------------------------- */
static void check_images(const char *path) {
    uint8_t *data = NULL;
    int n = 0, rows = 0, cols = 0;
    Error err = {{0}};
    CHECK_MSG(idx_load_images(&data, &n, &rows, &cols, path, &err) == 0, "%s", err.msg);
    CHECK(n == 5 && rows == 4 && cols == 3);
    int ok = data != NULL;
    for (int i = 0; ok && i < 60; i++) ok = data[i] == (uint8_t)((i * 7 + 3) % 256);
    CHECK_MSG(ok, "%s: pixel values differ from what was written", path);
    free(data);
}

static void test_load(void) {
    make_tmpdir();
    check_images(write_images("raw-images", 0, 60, 0));
    check_images(write_images("gz-images.gz", 1, 60, 0));
    Error err = {{0}};
    uint8_t *lab = NULL;
    int n = 0;
    CHECK_MSG(idx_load_labels(&lab, &n, write_labels("gz-labels.gz", 1, 5, 0), &err) == 0, "%s", err.msg);
    CHECK(n == 5 && lab && lab[0] == 0 && lab[4] == 4);
    free(lab);

    /* a pair through fashion_mnist_load: train gzipped, test raw; the .gz is taken when both exist */
    write_images("train-images-idx3-ubyte.gz", 1, 60, 0);
    write_labels("train-labels-idx1-ubyte.gz", 1, 5, 0);
    write_labels("train-labels-idx1-ubyte", 0, 7, 0); /* would be a count mismatch if it were read */
    write_images("t10k-images-idx3-ubyte", 0, 60, 0);
    write_labels("t10k-labels-idx1-ubyte", 0, 5, 0);
    IdxSet s;
    CHECK_MSG(fashion_mnist_load(&s, tmpdir, 1, &err) == 0, "%s", err.msg);
    CHECK(s.n == 5 && s.rows == 4 && s.cols == 3 && s.images && s.labels);
    if (s.images) CHECK(s.images[59] == (59 * 7 + 3) % 256 && s.labels[3] == 3);
    idx_free(&s);
    CHECK(s.images == NULL && s.labels == NULL && s.n == 0);
    idx_free(&s); /* safe twice */
    /* dir NULL -> $LORALAB_FASHION_MNIST */
    setenv("LORALAB_FASHION_MNIST", tmpdir, 1);
    CHECK_MSG(fashion_mnist_load(&s, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK(s.n == 5 && s.labels && s.labels[2] == 2);
    idx_free(&s);
    unsetenv("LORALAB_FASHION_MNIST");
    remove_tmpdir();
}

/* ---- idx_missing ------------------------------------------------------------------------------------ */
static void test_missing(void) {
    IdxSet s = {.n = 123};
    Error err = {{0}};
    CHECK(fashion_mnist_load(&s, "/nonexistent/loralab-fmnist", 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "/nonexistent/loralab-fmnist") && strstr(err.msg, "does not exist") &&
                  strstr(err.msg, "apt-get install dataset-fashion-mnist") && strstr(err.msg, "pass the folder"),
              "unhelpful: %s", err.msg);
    CHECK(s.n == 0 && s.images == NULL);
    printf("  ok: %s\n", err.msg);
    /* folder present, labels absent */
    make_tmpdir();
    write_images("train-images-idx3-ubyte.gz", 1, 60, 0);
    CHECK(fashion_mnist_load(&s, tmpdir, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "train-labels-idx1-ubyte") && strstr(err.msg, tmpdir) &&
                  strstr(err.msg, "apt-get install dataset-fashion-mnist"), "unhelpful: %s", err.msg);
    printf("  ok: %s\n", err.msg);
    /* the test split absent */
    CHECK(fashion_mnist_load(&s, tmpdir, 0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "t10k-images-idx3-ubyte"), "unhelpful: %s", err.msg);
    /* a file in place of the folder */
    CHECK(fashion_mnist_load(&s, tpath("train-images-idx3-ubyte.gz"), 0, &err) == -1);
    CHECK_MSG(strstr(err.msg, "is not a folder"), "%s", err.msg);
    uint8_t *data = NULL;
    int n, r, c;
    CHECK(idx_load_images(&data, &n, &r, &c, tpath("nothing-here"), &err) == -1);
    CHECK_MSG(strstr(err.msg, "nothing-here: cannot open"), "%s", err.msg);
    CHECK(data == NULL);
    remove_tmpdir();
}

/* ---- fault_idx_truncated ---------------------------------------------------------------------------- */
/* Expects loading to fail with a message containing the file's name and `want`. */
static void expect_images_error(const char *path, const char *want) {
    uint8_t *data = NULL;
    int n = -1, r = -1, c = -1;
    Error err = {{0}};
    int rc = idx_load_images(&data, &n, &r, &c, path, &err);
    CHECK_MSG(rc == -1, "%s: loaded (rc %d), expected an error containing '%s'", path, rc, want);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, want), "message '%s' lacks '%s' or the path", err.msg, want);
    CHECK(data == NULL && n == -1);
    printf("  ok: %s\n", err.msg);
}
static void expect_labels_error(const char *path, const char *want) {
    uint8_t *data = NULL;
    int n = -1;
    Error err = {{0}};
    CHECK_MSG(idx_load_labels(&data, &n, path, &err) == -1, "%s: loaded", path);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, want), "message '%s' lacks '%s' or the path", err.msg, want);
    CHECK(data == NULL && n == -1);
    printf("  ok: %s\n", err.msg);
}
static void expect_pair_error(const char *want_file, const char *want) {
    IdxSet s;
    Error err = {{0}};
    CHECK_MSG(fashion_mnist_load(&s, tmpdir, 1, &err) == -1, "loaded, expected '%s'", want);
    CHECK_MSG(strstr(err.msg, want_file) && strstr(err.msg, want), "message '%s' lacks '%s' or '%s'", err.msg, want,
              want_file);
    CHECK(s.images == NULL && s.labels == NULL);
    printf("  ok: %s\n", err.msg);
}

static void test_fault(void) {
    make_tmpdir();
    /* truncated payload: 16 + 50 of 76 bytes, raw and gzipped */
    expect_images_error(write_images("t-images", 0, 50, 0), "truncated: expected 76 bytes of data, found 66");
    expect_images_error(write_images("t-images.gz", 1, 50, 0), "truncated: expected 76 bytes of data, found 66");
    expect_labels_error(write_idx("t-labels.gz", 1, 0x801, LBL_DIMS, 1, 3, 0),
                        "truncated: expected 13 bytes of data, found 11");
    /* truncated header and empty file */
    expect_images_error(write_idx("t-header", 0, 0x803, IMG_DIMS, 1, 0, 0), "truncated: expected a 16-byte header");
    expect_images_error(write_idx("empty", 0, 0, NULL, 0, 0, 0), "bad magic"); /* 4 zero bytes */
    FILE *f = fopen(tpath("zero-bytes"), "wb");
    ASSERT(f && fclose(f) == 0);
    expect_images_error(tpath("zero-bytes"), "truncated: expected a 4-byte IDX magic number, found 0 bytes");
    /* bad magic: labels read as images and the other way round */
    expect_images_error(write_labels("l-as-i.gz", 1, 5, 0), "bad magic: expected 0x00000803 (u8 images, 3 dimensions), found 0x00000801");
    expect_labels_error(write_images("i-as-l", 0, 60, 0), "bad magic: expected 0x00000801 (u8 labels, 1 dimension), found 0x00000803");
    expect_images_error(write_idx("float-images", 0, 0x0D03, IMG_DIMS, 3, 60, 0), "bad magic"); /* f32 type */
    /* trailing bytes */
    expect_images_error(write_images("x-images.gz", 1, 60, 3), "trailing bytes: expected 76 bytes of data, found 79");
    expect_labels_error(write_labels("x-labels", 0, 5, 1), "trailing bytes: expected 13 bytes of data, found 14");
    /* insane sizes */
    uint32_t zero[3] = {5, 0, 3}, huge[3] = {100000, 100000, 100};
    expect_images_error(write_idx("zero-dim", 0, 0x803, zero, 3, 0, 0), "dimension 1 is 0");
    expect_images_error(write_idx("huge-dims", 0, 0x803, huge, 3, 0, 0), "sizes too large");
    /* a gzip stream cut short, and one with a broken CRC trailer */
    const char *cut = write_images("cut.gz", 1, 60, 0);
    struct stat st;
    ASSERT(stat(cut, &st) == 0 && truncate(cut, st.st_size - 12) == 0);
    expect_images_error(cut, "truncated: expected 76 bytes of data");
    const char *cut_trailer = write_images("cut-trailer.gz", 1, 60, 0); /* all data there, CRC/length partly */
    ASSERT(stat(cut_trailer, &st) == 0 && truncate(cut_trailer, st.st_size - 4) == 0);
    expect_images_error(cut_trailer, "gzip stream cut short after the 76 bytes of data");
    const char *crc = write_images("crc.gz", 1, 60, 0);
    ASSERT(stat(crc, &st) == 0);
    f = fopen(crc, "r+b"); /* complement the first CRC-32 byte of the 8-byte trailer */
    ASSERT(f && fseek(f, st.st_size - 8, SEEK_SET) == 0);
    int byte = fgetc(f);
    ASSERT(byte != EOF && fseek(f, st.st_size - 8, SEEK_SET) == 0 && fputc(byte ^ 0xFF, f) != EOF && fclose(f) == 0);
    expect_images_error(crc, "corrupt gzip stream");

    /* pairs: count mismatch and a label out of range, each naming the labels file */
    write_images("train-images-idx3-ubyte.gz", 1, 60, 0);
    const char *lp = write_labels("train-labels-idx1-ubyte.gz", 1, 4, 0);
    expect_pair_error(lp, "4 labels, expected 5");
    size_t total = 8 + 5;
    unsigned char buf[13] = {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 10, 3, 4};
    f = fopen(tpath("train-labels-idx1-ubyte"), "wb");
    ASSERT(f && fwrite(buf, 1, total, f) == total && fclose(f) == 0);
    unlink(lp);
    expect_pair_error("train-labels-idx1-ubyte", "label 10 at index 2: expected < 10 classes");
    /* a truncated images file surfaces through the pair loader too */
    write_images("train-images-idx3-ubyte.gz", 1, 59, 0);
    expect_pair_error("train-images-idx3-ubyte.gz", "truncated: expected 76 bytes of data, found 75");
    remove_tmpdir();
}

/* ---- idx_fashion_mnist ------------------------------------------------------------------------------ */
static int test_fashion(void) {
    const char *dir = getenv("LORALAB_FASHION_MNIST");
    if (!dir || !*dir) dir = FASHION_MNIST_DEFAULT_DIR;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("idx_fashion_mnist: SKIP: %s absent (apt-get install dataset-fashion-mnist)\n", dir);
        return TEST_SKIP;
    }
    /* First labels and the sum of all pixels, from Python's gzip module on the same files. */
    static const struct { int train, n; uint8_t first[10]; unsigned long long pixel_sum; } want[2] = {
        {1, 60000, {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 3431114169ull},
        {0, 10000, {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 573469082ull},
    };
    for (int t = 0; t < 2; t++) {
        IdxSet s;
        Error err = {{0}};
        if (fashion_mnist_load(&s, dir, want[t].train, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        CHECK_MSG(s.n == want[t].n && s.rows == 28 && s.cols == 28, "n %d rows %d cols %d", s.n, s.rows, s.cols);
        int hist[FASHION_MNIST_CLASSES] = {0};
        for (int i = 0; i < s.n; i++) {
            CHECK(s.labels[i] < FASHION_MNIST_CLASSES);
            if (s.labels[i] < FASHION_MNIST_CLASSES) hist[s.labels[i]]++;
        }
        for (int c = 0; c < FASHION_MNIST_CLASSES; c++)
            CHECK_MSG(hist[c] == want[t].n / 10, "%s: class %d has %d samples", want[t].train ? "train" : "test", c, hist[c]);
        CHECK(memcmp(s.labels, want[t].first, 10) == 0);
        unsigned long long sum = 0;
        for (size_t i = 0; i < (size_t)s.n * s.rows * s.cols; i++) sum += s.images[i];
        CHECK_MSG(sum == want[t].pixel_sum, "pixel sum %llu, expected %llu", sum, want[t].pixel_sum);
        idx_free(&s);
    }
    return 0;
}

static int run_load(void) { test_load(); return 0; }
static int run_missing(void) { test_missing(); return 0; }
static int run_fault(void) { test_fault(); return 0; }

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "";
    static const struct { const char *arg, *name; int (*fn)(void); } cases[] = {
        {"load", "idx_load", run_load},
        {"missing", "idx_missing", run_missing},
        {"fault", "fault_idx_truncated", run_fault},
        {"fashion", "idx_fashion_mnist", test_fashion},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (strcmp(which, cases[i].arg) == 0) return cases[i].fn() == TEST_SKIP ? TEST_SKIP : test_finish(cases[i].name);
    fprintf(stderr, "usage: %s load|missing|fault|fashion\n", argv[0]);
    return 2;
}
