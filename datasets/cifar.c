/* datasets/cifar.c: CIFAR-10 binary loader (contract in cifar.h). */
#include "datasets/cifar.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/resize.h"

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Appends the records of one file to s (already holding s->n images of per floats). */
static int read_batch(ImageSet *s, long *cap, const char *path, long limit, int C, int H, int W, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || st.st_size <= 0 || st.st_size % CIFAR_RECORD) {
        fclose(f);
        return err_set(err, "%s: size %lld bytes is not a whole number of %d-byte records (1 label + 3072 pixels); "
                       "is it the binary version (cifar-10-binary.tar.gz)?", path, (long long)st.st_size, CIFAR_RECORD);
    }
    long nrec = (long)(st.st_size / CIFAR_RECORD);
    if (limit > 0 && s->n + nrec > limit) nrec = limit - s->n;
    size_t per = (size_t)C * H * W;
    if (s->n + nrec > *cap) {
        *cap = s->n + nrec;
        s->u8 = xrealloc(s->u8, (size_t)*cap * per);
        s->y = xrealloc(s->y, (size_t)*cap * sizeof(int));
    }
    unsigned char rec[CIFAR_RECORD], hwc[3 * 32 * 32];
    for (long r = 0; r < nrec; r++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            int e = ferror(f) ? errno : 0;
            fclose(f);
            return err_set(err, "%s: record %ld: short read: %s", path, r, e ? strerror(e) : "end of file");
        }
        if (rec[0] >= CIFAR10_CLASSES) {
            fclose(f);
            return err_set(err, "%s: record %ld (byte offset %ld): label %d, expected 0..9 (is this CIFAR-100? its "
                           "records have 2 label bytes)", path, r, r * CIFAR_RECORD, rec[0]);
        }
        for (int p = 0; p < 32 * 32; p++)
            for (int c = 0; c < 3; c++) hwc[p * 3 + c] = rec[1 + c * 1024 + p];
        image_to_chw_u8(s->u8 + (size_t)s->n * per, C, H, W, hwc, 32, 32, 3);
        s->y[s->n++] = rec[0];
    }
    fclose(f);
    return 0;
}

int cifar10_load(ImageSet *out, const char *dir, int train, int C, int H, int W, long limit, Error *err) {
    memset(out, 0, sizeof *out);
    ASSERT((C == 1 || C == 3) && H > 0 && W > 0);
    if (!dir) return err_set(err, "cifar10: dataset.root is not set: point it at the folder with data_batch_1.bin");
    char base[4096], path[4200];
    snprintf(base, sizeof base, "%s", dir);
    snprintf(path, sizeof path, "%s/cifar-10-batches-bin", dir);
    if (exists(path)) snprintf(base, sizeof base, "%s", path);
    ImageSet s = {.C = C, .H = H, .W = W, .K = CIFAR10_CLASSES, .mean = {0, 0, 0}, .inv_std = {1, 1, 1}};
    long cap = 0;
    for (int b = 1; b <= (train ? 5 : 1); b++) {
        if (train) snprintf(path, sizeof path, "%s/data_batch_%d.bin", base, b);
        else snprintf(path, sizeof path, "%s/test_batch.bin", base);
        if (!exists(path)) {
            if (train && b > 1) break; /* fewer batches: a subset */
            imageset_free(&s);
            return err_set(err, "cifar10: missing %s; dataset.root must hold the binary CIFAR-10 files "
                           "(cifar-10-batches-bin/ of cifar-10-binary.tar.gz)", path);
        }
        if (limit > 0 && s.n >= limit) break;
        if (read_batch(&s, &cap, path, limit, C, H, W, err)) {
            imageset_free(&s);
            return -1;
        }
    }
    *out = s;
    return 0;
}
