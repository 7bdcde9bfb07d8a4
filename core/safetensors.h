/* core/safetensors.h: read (mmap) and write safetensors files, treating every header byte as untrusted.
 *
 * Format (https://github.com/huggingface/safetensors): u64 little-endian N, then N bytes of UTF-8 JSON,
 * then the data section. The JSON is an object: tensor name -> {"dtype", "shape", "data_offsets"} plus an
 * optional "__metadata__": {string: string}. data_offsets [begin, end) are relative to the data section.
 *
 * The reader accepts a file only if ALL of these hold (otherwise -1 and an Error naming the file, the tensor
 * or key, what was expected and what was found):
 *   - the file has >= 8 bytes; 0 < N <= ST_MAX_HEADER (100 MB); 8 + N <= file size;
 *   - the header is strict JSON (no floats, negatives, true/false/null; valid UTF-8; no NUL in strings),
 *     an object, followed only by whitespace (the reference writer pads with spaces);
 *   - each entry has exactly the keys dtype, shape, data_offsets (each once); dtype is one of StDType's
 *     names; shape is a list of at most ST_MAX_DIMS non-negative ints whose product (and byte size) fits
 *     in int64; data_offsets is [begin, end] with begin <= end and end - begin == numel * dtype size;
 *   - no two tensors share a name; "__metadata__" (at most once) maps strings to strings, keys unique;
 *   - the offsets sorted by begin tile the data section exactly: first begin 0, each begin == previous end,
 *     last end == file size - 8 - N (no gap, no overlap, no truncation, no trailing bytes).
 * The JSON nesting depth is bounded by the schema itself (at most 3 levels): the parser is driven by the
 * schema, so any deeper '[' or '{' is rejected where it appears, without recursion or allocation.
 *
 * Tensor data points into the mapped file (or the caller's buffer for st_parse) and may be UNALIGNED
 * for its dtype (the format does not align offsets): read it with memcpy or st_read_f32.
 * Assumes a little-endian host (as the format does). */
#ifndef CORE_SAFETENSORS_H
#define CORE_SAFETENSORS_H

#include "core/common.h"

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ull /* the reference implementation's limit */

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_NDTYPES } StDType;

typedef struct {
    char *name;          /* NUL-terminated UTF-8 (owned by the SafeTensors) */
    StDType dtype;
    int ndim;            /* 0 = scalar */
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;       /* product of shape (1 for a scalar, 0 if any dim is 0) */
    size_t nbytes;       /* numel * st_dtype_size(dtype) */
    const void *data;    /* nbytes bytes, possibly unaligned, read-only */
    size_t offset;       /* begin offset within the data section */
} StTensor;

typedef struct {
    char path[512];      /* the file name (or st_parse's label) used in error messages */
    int n;               /* tensors, in header order */
    StTensor *tensors;
    int n_meta;          /* __metadata__ entries, in header order */
    char **meta_keys;
    char **meta_vals;
    void *map;           /* mmap of the file (st_open), NULL for st_parse */
    size_t map_size;
    char *strings;       /* pool holding every decoded name/key/value */
    int *by_name;        /* tensor indices sorted by name, for st_find */
} SafeTensors;

/* mmap path read-only, parse and validate. On failure st is left closed (zeroed) and err says why. */
int st_open(SafeTensors *st, const char *path, Error *err);
/* The same on len bytes at buf (tests, fuzzing); buf is not copied and must outlive st. label names the
 * input in error messages. */
int st_parse(SafeTensors *st, const void *buf, size_t len, const char *label, Error *err);
/* Release everything; safe on a zeroed or already closed st. */
void st_close(SafeTensors *st);

/* NULL if absent. O(log n). */
const StTensor *st_find(const SafeTensors *st, const char *name);
/* __metadata__ value for key, NULL if absent. */
const char *st_meta(const SafeTensors *st, const char *key);

/* Copy tensor `name` into dst (n floats), converting F32/F16/BF16/F64 to f32. Fails (naming the tensor) if
 * it is absent, has another dtype, or numel != n (the message gives the expected count and the shape). */
int st_read_f32(const SafeTensors *st, const char *name, float *dst, int64_t n, Error *err);

size_t st_dtype_size(StDType t);
const char *st_dtype_name(StDType t);  /* "F32", ...; "?" for an out-of-range value */

/* One tensor to write. shape has ndim entries (may be NULL when ndim == 0); data has numel * size bytes. */
typedef struct {
    const char *name;
    StDType dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} StEntry;

/* Write atomically: to "<path>.tmp", fsync, rename over path, fsync the directory, so a crash leaves
 * either the old file or the complete new one. Tensors are laid out in the order given; the header is
 * compact JSON ("__metadata__" first) padded with spaces so that N is a multiple of 8, byte-compatible
 * with the reference writer for the same order. meta_kv holds n_meta pairs as {k0, v0, k1, v1, ...} and
 * may be NULL when n_meta == 0. Names and metadata must be valid UTF-8 without NUL, names unique and not
 * "__metadata__"; otherwise -1 with nothing written. */
int st_write(const char *path, const StEntry *entries, int n, const char *const *meta_kv, int n_meta,
             Error *err);

/* Scalar conversions. f32 -> 16-bit round to nearest even; NaN stays NaN (quiet), overflow gives inf. */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

#endif
