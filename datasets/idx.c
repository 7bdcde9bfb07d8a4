/* datasets/idx.c: IDX loader (contract in idx.h). One reader, idx_read, validates any u8 IDX file. */
#include "datasets/idx.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAX_BYTES 1000000000ull /* sanity bound on the payload: 1e9 bytes */
#define IDX_MAX_DIMS 3

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads up to len bytes (any size; gzread takes an unsigned int); returns the count, or -1 on a zlib error. */
static long long read_full(gzFile f, uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        size_t chunk = MIN(len - got, (size_t)1 << 30);
        int r = gzread(f, buf + got, (unsigned)chunk);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* zlib's last message without the "<path>: " prefix it adds (we print the path ourselves). */
static const char *zlib_msg(gzFile f, const char *path, int *errnum) {
    const char *msg = gzerror(f, errnum);
    size_t plen = strlen(path);
    if (msg && strncmp(msg, path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0) msg += plen + 2;
    return msg && *msg ? msg : "unknown zlib error";
}

static int gz_fail(gzFile f, const char *path, Error *err) {
    int errnum = 0;
    const char *msg = zlib_msg(f, path, &errnum);
    if (errnum == Z_ERRNO) return err_set(err, "%s: read error: %s", path, strerror(errno));
    return err_set(err, "%s: %s: %s", path, errnum == Z_DATA_ERROR ? "corrupt gzip stream" : "read error", msg);
}

/* Reads the rest of an open u8 IDX file with magic 0x000008<ndim>: dims[ndim] and a malloc'ed payload
 * (*out, left NULL on failure). */
static int idx_parse(uint8_t **out, uint32_t *dims, int ndim, gzFile f, const char *path, Error *err) {
    uint32_t want_magic = 0x00000800u | (uint32_t)ndim;
    const char *what = ndim == 1 ? "u8 labels, 1 dimension" : "u8 images, 3 dimensions";
    unsigned char hdr[4 + 4 * IDX_MAX_DIMS];
    size_t hlen = 4 + 4 * (size_t)ndim;
    long long got = read_full(f, hdr, 4);
    if (got < 0) return gz_fail(f, path, err);
    if (got < 4) return err_set(err, "%s: truncated: expected a 4-byte IDX magic number, found %lld bytes", path, got);
    uint32_t magic = be32(hdr);
    if (magic != want_magic)
        return err_set(err, "%s: bad magic: expected 0x%08x (%s), found 0x%08x", path, want_magic, what, magic);
    got = read_full(f, hdr + 4, hlen - 4);
    if (got < 0) return gz_fail(f, path, err);
    if ((size_t)got < hlen - 4)
        return err_set(err, "%s: truncated: expected a %zu-byte header, found %lld bytes", path, hlen, 4 + got);
    uint64_t payload = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(hdr + 4 + 4 * d);
        if (dims[d] == 0) return err_set(err, "%s: dimension %d is 0: expected a non-zero size", path, d);
        payload *= dims[d]; /* stays below 2^62: checked against 1e9 after every factor */
        if (payload > IDX_MAX_BYTES)
            return err_set(err, "%s: sizes too large: expected at most %llu bytes of data, the header's "
                           "dimensions 0..%d already give %llu", path, IDX_MAX_BYTES, d, (unsigned long long)payload);
    }
    unsigned long long expected = hlen + payload;
    *out = xmalloc((size_t)payload);
    got = read_full(f, *out, (size_t)payload);
    if (got < 0) return gz_fail(f, path, err);
    if ((uint64_t)got < payload) {
        int errnum = 0;
        gzerror(f, &errnum);
        return err_set(err, "%s: truncated: expected %llu bytes of data, found %llu%s", path, expected,
                       (unsigned long long)hlen + (unsigned long long)got,
                       errnum == Z_BUF_ERROR ? " (the gzip stream is cut short)" : "");
    }
    /* Past the payload there must be nothing; this read also makes zlib check the gzip trailer (CRC, length). */
    unsigned long long extra = 0;
    unsigned char tail[1 << 14];
    for (int r; (r = gzread(f, tail, sizeof tail)) != 0;) {
        if (r < 0) return gz_fail(f, path, err);
        extra += (unsigned long long)r;
    }
    if (extra)
        return err_set(err, "%s: trailing bytes: expected %llu bytes of data, found %llu", path, expected,
                       expected + extra);
    int errnum = 0;
    const char *msg = zlib_msg(f, path, &errnum);
    if (errnum != Z_OK)
        return err_set(err, "%s: gzip stream cut short after the %llu bytes of data (%s)", path, expected, msg);
    return 0;
}

static int idx_read(uint8_t **out, uint32_t *dims, int ndim, const char *path, Error *err) {
    ASSERT(ndim >= 1 && ndim <= IDX_MAX_DIMS);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return err_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    uint8_t *data = NULL;
    int rc = idx_parse(&data, dims, ndim, f, path, err);
    gzclose(f);
    if (rc) {
        free(data);
        return rc;
    }
    *out = data;
    return 0;
}

int idx_load_images(uint8_t **data, int *n, int *rows, int *cols, const char *path, Error *err) {
    ASSERT(data && n && rows && cols && path);
    uint32_t dims[3];
    if (idx_read(data, dims, 3, path, err)) return -1;
    *n = (int)dims[0]; /* each <= 1e9 after idx_read's checks */
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return 0;
}

int idx_load_labels(uint8_t **labels, int *n, const char *path, Error *err) {
    ASSERT(labels && n && path);
    uint32_t dims[1];
    if (idx_read(labels, dims, 1, path, err)) return -1;
    *n = (int)dims[0];
    return 0;
}

#define FMNIST_HOWTO "install it with `apt-get install dataset-fashion-mnist`, or pass the folder (or set LORALAB_FASHION_MNIST)"

/* Finds <dir>/<name>.gz or <dir>/<name>; path gets the one that exists. */
static int find_file(char *path, size_t size, const char *dir, const char *name, Error *err) {
    struct stat st;
    snprintf(path, size, "%s/%s.gz", dir, name);
    if (stat(path, &st) == 0) return 0;
    snprintf(path, size, "%s/%s", dir, name);
    if (stat(path, &st) == 0) return 0;
    return err_set(err, "fashion-mnist: missing %s/%s[.gz]; " FMNIST_HOWTO, dir, name);
}

int fashion_mnist_load(IdxSet *set, const char *dir, int train, Error *err) {
    ASSERT(set);
    memset(set, 0, sizeof *set);
    const char *from = "the argument";
    if (!dir) {
        dir = getenv("LORALAB_FASHION_MNIST");
        from = "$LORALAB_FASHION_MNIST";
        if (!dir || !*dir) {
            dir = FASHION_MNIST_DEFAULT_DIR;
            from = "the default";
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(err, "fashion-mnist: folder %s (from %s) %s; " FMNIST_HOWTO, dir, from,
                       stat(dir, &st) != 0 ? "does not exist" : "is not a folder");

    const char *split = train ? "train" : "t10k";
    char name[64], img_path[4096], lbl_path[4096];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
    if (find_file(img_path, sizeof img_path, dir, name, err)) return -1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
    if (find_file(lbl_path, sizeof lbl_path, dir, name, err)) return -1;

    IdxSet s = {0};
    int nl = 0;
    if (idx_load_images(&s.images, &s.n, &s.rows, &s.cols, img_path, err)) return -1;
    if (idx_load_labels(&s.labels, &nl, lbl_path, err)) {
        idx_free(&s);
        return -1;
    }
    if (nl != s.n) {
        err_set(err, "%s: %d labels, expected %d (the image count of %s)", lbl_path, nl, s.n, img_path);
        idx_free(&s);
        return -1;
    }
    for (int i = 0; i < nl; i++) {
        if (s.labels[i] >= FASHION_MNIST_CLASSES) {
            err_set(err, "%s: label %d at index %d: expected < %d classes", lbl_path, s.labels[i], i,
                    FASHION_MNIST_CLASSES);
            idx_free(&s);
            return -1;
        }
    }
    *set = s;
    return 0;
}

void idx_free(IdxSet *set) {
    if (!set) return;
    free(set->images);
    free(set->labels);
    memset(set, 0, sizeof *set);
}
