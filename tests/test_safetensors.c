/* tests/test_safetensors.c: the safetensors reader and writer (core/safetensors.h).
 *   test_safetensors roundtrip <tmpdir>   record_safetensors_roundtrip: write, read back, convert, compare;
 *                                         the writer reproduces the reference writer's bytes
 *   test_safetensors malformed            fault_safetensors_malformed: every file of the bad corpus fails
 *                                         with a message naming the file and the tensor, good ones open */
#include "core/safetensors.h"
#include "testlib.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BAD_DIR TEST_DATA_DIR "/safetensors_bad"
#define QKV "blocks.0.attn.qkv.weight"

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = xmalloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- scalar conversions ------------------------------------------------------------------------------ */
static float f(uint32_t bits) { float x; memcpy(&x, &bits, 4); return x; }

static void test_conversions(void) {
    CHECK(st_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(st_f32_to_bf16(f(0x3f808000)) == 0x3f80);   /* tie, even below: stays */
    CHECK(st_f32_to_bf16(f(0x3f818000)) == 0x3f82);   /* tie, odd below: rounds up */
    CHECK(st_f32_to_bf16(f(0x3f808001)) == 0x3f81);   /* above the tie */
    CHECK(st_f32_to_bf16(f(0x7f7fffff)) == 0x7f80);   /* FLT_MAX rounds to inf */
    CHECK(st_f32_to_bf16(-0.0f) == 0x8000);
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(f(0x7f800001))))); /* NaN whose payload is all in the low bits */
    CHECK(st_f32_to_f16(1.0f) == 0x3c00);
    CHECK(st_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(st_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(st_f32_to_f16(65520.0f) == 0x7c00);          /* tie at the top rounds to inf */
    CHECK(st_f32_to_f16(0x1p-24f) == 0x0001);          /* smallest subnormal */
    CHECK(st_f32_to_f16(0x1p-25f) == 0x0000);          /* tie to even: 0 */
    CHECK(st_f32_to_f16(0x3p-25f) == 0x0002);          /* tie to even: 2 */
    CHECK(st_f32_to_f16(-0.0f) == 0x8000);
    CHECK(st_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
    CHECK(st_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(st_f16_to_f32(0xfbff) == -65504.0f);
    /* every 16-bit pattern survives 16 -> 32 -> 16 */
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = st_f16_to_f32((uint16_t)h), y = st_bf16_to_f32((uint16_t)h);
        if (isnan(x) ? !isnan(st_f16_to_f32(st_f32_to_f16(x))) : st_f32_to_f16(x) != h) bad16++;
        if (isnan(y) ? !isnan(st_bf16_to_f32(st_f32_to_bf16(y))) : st_f32_to_bf16(y) != h) badbf++;
    }
    CHECK_MSG(bad16 == 0, "%d f16 patterns do not round-trip", bad16);
    CHECK_MSG(badbf == 0, "%d bf16 patterns do not round-trip", badbf);
}

/* ---- roundtrip --------------------------------------------------------------------------------------- */
static void test_roundtrip(const char *dir) {
    char path[1024], tmp[1100];
    snprintf(path, sizeof path, "%s/st_roundtrip.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);

    float w[6] = {0.5f, -1.0f, 2.0f, 3.25f, -0.125f, 1e-3f};
    uint16_t h16[4], bf[4];
    float h16_src[4] = {1.0f, -2.5f, 0x1p-20f, 65504.0f}, bf_src[4] = {1.5f, -3.0f, 1e30f, 0.1f};
    for (int i = 0; i < 4; i++) h16[i] = st_f32_to_f16(h16_src[i]), bf[i] = st_f32_to_bf16(bf_src[i]);
    double scalar = 3.141592653589793;
    int64_t ids[2] = {1ll << 40, -5};
    uint8_t bytes[3] = {0, 127, 255}, flags[2] = {1, 0};
    int8_t i8[3] = {-128, 0, 127};
    int16_t i16[2] = {-32768, 12345};
    int64_t s_w[2] = {2, 3}, s_h[1] = {4}, s_bf[2] = {2, 2}, s_zero[2] = {0, 5}, s_b[1] = {3}, s_f[1] = {2},
            s_ids[3] = {1, 1, 2}, s_i8[1] = {3}, s_i16[1] = {2};
    StEntry e[] = {
        {QKV, ST_F32, 2, s_w, w},         {"norm.h16", ST_F16, 1, s_h, h16}, {"bf", ST_BF16, 2, s_bf, bf},
        {"scalar", ST_F64, 0, NULL, &scalar}, {"zero", ST_I32, 2, s_zero, NULL}, {"bytes", ST_U8, 1, s_b, bytes},
        {"flags", ST_BOOL, 1, s_f, flags}, {"ids", ST_I64, 3, s_ids, ids},    {"i8", ST_I8, 1, s_i8, i8},
        {"i16", ST_I16, 1, s_i16, i16},   {"caf\xc3\xa9 \"q\"\n", ST_F32, 0, NULL, w},
    };
    int n = (int)ARRAY_LEN(e);
    const char *meta[] = {"format", "pt", "note", "unicode caf\xc3\xa9, \"quoted\", tab\t, \\ backslash"};
    Error err = {{0}};
    CHECK_MSG(st_write(path, e, n, meta, 2, &err) == 0, "%s", err.msg);
    CHECK_MSG(!exists(tmp), "%s left behind", tmp);

    size_t flen = 0;
    unsigned char *raw = slurp(path, &flen);
    CHECK(raw && flen >= 8);
    uint64_t hn = 0;
    for (int i = 0; raw && i < 8; i++) hn |= (uint64_t)raw[i] << (8 * i);
    CHECK_MSG(hn % 8 == 0, "header length %llu not padded to 8", (unsigned long long)hn);
    CHECK(raw && raw[8] == '{' && raw[8 + hn - 1] != 0);
    free(raw);

    SafeTensors st;
    CHECK_MSG(st_open(&st, path, &err) == 0, "%s", err.msg);
    CHECK(st.n == n);
    for (int i = 0; i < n && i < st.n; i++) {
        const StTensor *t = st_find(&st, e[i].name);
        CHECK_MSG(t == &st.tensors[i], "tensor %d '%s' not found in header order", i, e[i].name);
        if (!t) continue;
        CHECK(t->dtype == e[i].dtype && t->ndim == e[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) {
            CHECK(t->shape[d] == e[i].shape[d]);
            numel *= e[i].shape[d];
        }
        CHECK(t->numel == numel);
        CHECK(t->nbytes == (size_t)numel * st_dtype_size(e[i].dtype));
        CHECK_MSG(t->nbytes == 0 || memcmp(t->data, e[i].data, t->nbytes) == 0, "tensor '%s' bytes differ", e[i].name);
    }
    CHECK(st_find(&st, "absent") == NULL);
    CHECK(st.n_meta == 2 && st_meta(&st, "format") && !strcmp(st_meta(&st, "format"), "pt"));
    CHECK(st_meta(&st, "note") && !strcmp(st_meta(&st, "note"), meta[3]));
    CHECK(st_meta(&st, "absent") == NULL);

    float out[6];
    CHECK(st_read_f32(&st, QKV, out, 6, &err) == 0);
    for (int i = 0; i < 6; i++) CHECK(out[i] == w[i]);
    CHECK(st_read_f32(&st, "norm.h16", out, 4, &err) == 0);
    for (int i = 0; i < 4; i++) CHECK(out[i] == h16_src[i]); /* all exactly representable in f16 */
    CHECK(st_read_f32(&st, "bf", out, 4, &err) == 0);
    for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], bf_src[i], fabs(bf_src[i]) * 0x1p-8);
    CHECK(st_read_f32(&st, "scalar", out, 1, &err) == 0);
    CHECK(out[0] == (float)scalar);
    CHECK(st_read_f32(&st, "zero", out, 0, &err) != 0); /* I32 is not a float dtype */
    CHECK_MSG(strstr(err.msg, "tensor 'zero'") && strstr(err.msg, "cannot be read as f32"), "%s", err.msg);
    CHECK(st_read_f32(&st, QKV, out, 5, &err) != 0);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "tensor '" QKV "': expected 5 elements, found shape [2, 3]"),
              "%s", err.msg);
    CHECK(st_read_f32(&st, "nope", out, 1, &err) != 0);
    CHECK_MSG(strstr(err.msg, "no tensor 'nope'"), "%s", err.msg);
    st_close(&st);
    st_close(&st); /* idempotent */

    /* overwriting replaces the whole file */
    CHECK_MSG(st_write(path, e, 1, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK(st_open(&st, path, &err) == 0 && st.n == 1 && st.n_meta == 0 && st_find(&st, QKV));
    st_close(&st);
    /* nothing at all */
    CHECK_MSG(st_write(path, NULL, 0, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK(st_open(&st, path, &err) == 0 && st.n == 0);
    st_close(&st);

    /* the writer refuses what the reader would refuse, and leaves nothing behind */
    unlink(path);
    StEntry dup[2] = {e[0], e[0]};
    CHECK(st_write(path, dup, 2, NULL, 0, &err) != 0 && strstr(err.msg, "duplicate tensor name"));
    StEntry reserved = {"__metadata__", ST_F32, 2, s_w, w};
    CHECK(st_write(path, &reserved, 1, NULL, 0, &err) != 0);
    StEntry badutf = {"a\xff", ST_F32, 2, s_w, w};
    CHECK(st_write(path, &badutf, 1, NULL, 0, &err) != 0);
    int64_t neg[1] = {-1};
    StEntry negdim = {"neg", ST_F32, 1, neg, w};
    CHECK(st_write(path, &negdim, 1, NULL, 0, &err) != 0 && strstr(err.msg, "tensor 'neg'"));
    StEntry nodata = {"nodata", ST_F32, 2, s_w, NULL};
    CHECK(st_write(path, &nodata, 1, NULL, 0, &err) != 0 && strstr(err.msg, "data is NULL"));
    const char *dupmeta[] = {"k", "1", "k", "2"};
    CHECK(st_write(path, e, 1, dupmeta, 2, &err) != 0 && strstr(err.msg, "duplicate key 'k'"));
    CHECK(!exists(path) && !exists(tmp));
    CHECK(st_write("/nonexistent-dir/x.safetensors", e, 1, NULL, 0, &err) != 0);
    CHECK_MSG(strstr(err.msg, "/nonexistent-dir/x.safetensors") && strstr(err.msg, "No such file"), "%s", err.msg);

    /* The reference writer (pip safetensors) made good_reference.safetensors; writing the same tensors in the
     * same order must give the same bytes. */
    const char *ref = BAD_DIR "/good_reference.safetensors";
    CHECK_MSG(st_open(&st, ref, &err) == 0, "%s", err.msg);
    if (st.n > 0) {
        StEntry *re = xcalloc((size_t)st.n, sizeof *re);
        for (int i = 0; i < st.n; i++)
            re[i] = (StEntry){st.tensors[i].name, st.tensors[i].dtype, st.tensors[i].ndim, st.tensors[i].shape,
                              st.tensors[i].data};
        const char **kv = xcalloc((size_t)(2 * st.n_meta + 1), sizeof *kv);
        for (int i = 0; i < st.n_meta; i++) kv[2 * i] = st.meta_keys[i], kv[2 * i + 1] = st.meta_vals[i];
        CHECK_MSG(st_write(path, re, st.n, kv, st.n_meta, &err) == 0, "%s", err.msg);
        size_t la = 0, lb = 0;
        unsigned char *a = slurp(path, &la), *b = slurp(ref, &lb);
        CHECK_MSG(a && b && la == lb && memcmp(a, b, la) == 0, "rewrite of %s differs from the reference bytes", ref);
        free(a), free(b), free(re), free(kv);
    }
    st_close(&st);
    unlink(path);
}

/* ---- malformed corpus -------------------------------------------------------------------------------- */
/* file, then fragments its error message must contain (the tensor, when there is one, and the reason). */
typedef struct { const char *file, *frag1, *frag2; } Bad;
#define T "tensor '" QKV "'"
static const Bad BAD[] = {
    {"bad_empty.safetensors", "0 bytes, shorter than the 8-byte", NULL},
    {"bad_short.safetensors", "4 bytes, shorter than the 8-byte", NULL},
    {"bad_header_cut.safetensors", "runs past the end of the file", NULL},
    {"bad_data_cut.safetensors", "tensor 'ids'", "run past the end of the data section"},
    {"bad_header_len_huge.safetensors", "header length 200000000 exceeds the limit", NULL},
    {"bad_header_len_past_eof.safetensors", "header length 1000 runs past the end of the file", NULL},
    {"bad_header_len_zero.safetensors", "header length is 0", NULL},
    {"bad_trailing_bytes.safetensors", "tensor 'ids'", "(4 trailing bytes)"},
    {"bad_trailing_bytes_no_tensors.safetensors", "no tensors, but 3 trailing bytes", NULL},
    {"bad_json_missing_colon.safetensors", T, "expected ':'"},
    {"bad_json_trailing_comma.safetensors", "tensor name: expected a string, found '}'", NULL},
    {"bad_json_unterminated.safetensors", "unterminated string", NULL},
    {"bad_json_bad_escape.safetensors", "invalid escape '\\x'", NULL},
    {"bad_json_bad_utf8.safetensors", "invalid UTF-8 byte 0xff", NULL},
    {"bad_json_overlong_utf8.safetensors", "invalid UTF-8 byte 0xc0", NULL},
    {"bad_json_lone_surrogate.safetensors", "high surrogate \\ud800 not followed", NULL},
    {"bad_json_nul_escape.safetensors", "NUL character", NULL},
    {"bad_json_control_char.safetensors", "raw control character 0x0a", NULL},
    {"bad_json_trailing_garbage.safetensors", "unexpected 'x' after the header object", NULL},
    {"bad_json_nul_padding.safetensors", "unexpected byte 0x00 after the header object", NULL},
    {"bad_header_not_object.safetensors", "expected a JSON object, found a list", NULL},
    {"bad_entry_not_object.safetensors", T, "expected an object {\"dtype\""},
    {"bad_deep_nesting_top.safetensors", "expected a JSON object, found a list", NULL},
    {"bad_deep_nesting_shape.safetensors", T, "shape: expected a non-negative integer, found a list"},
    {"bad_deep_nesting_meta.safetensors", "__metadata__", "value of key 'a': expected a string, found an object"},
    {"bad_unknown_dtype.safetensors", T, "unknown dtype 'F8_E4M3'"},
    {"bad_dtype_not_string.safetensors", T, "dtype: expected a string, found '4'"},
    {"bad_shape_negative.safetensors", T, "shape: expected a non-negative integer, found '-2'"},
    {"bad_shape_float.safetensors", T, "shape: expected a non-negative integer, found '2.0'"},
    {"bad_shape_exponent.safetensors", T, "shape: expected a non-negative integer, found '2e0'"},
    {"bad_shape_not_list.safetensors", T, "shape: expected a list of non-negative integers, found '6'"},
    {"bad_shape_null.safetensors", T, "found 'null'"},
    {"bad_shape_leading_zero.safetensors", T, "integer '02' has a leading zero"},
    {"bad_rank9.safetensors", T, "more than 8 dimensions"},
    {"bad_numel_overflow.safetensors", T, "element count overflows"},
    {"bad_bytes_overflow.safetensors", T, "byte size overflows"},
    {"bad_int_too_large.safetensors", T, "integer '100000000000000000000' is larger than"},
    {"bad_missing_offsets.safetensors", T, "missing key 'data_offsets'"},
    {"bad_missing_dtype.safetensors", T, "missing key 'dtype'"},
    {"bad_extra_key.safetensors", T, "unknown key 'foo'"},
    {"bad_duplicate_key.safetensors", T, "duplicate key 'dtype'"},
    {"bad_duplicate_name.safetensors", T, "duplicate tensor name"},
    {"bad_offsets_three.safetensors", T, "exactly two integers"},
    {"bad_offsets_one.safetensors", T, "expected ',' in data_offsets"},
    {"bad_offsets_negative.safetensors", T, "data_offsets begin: expected a non-negative integer, found '-24'"},
    {"bad_offsets_reversed.safetensors", T, "[24, 0]: begin is after end"},
    {"bad_offsets_size_mismatch.safetensors", T, "span 20 bytes, but dtype F32 with shape [2, 3] needs 24 bytes"},
    {"bad_offsets_not_zero_start.safetensors", T, "the first tensor must begin at 0"},
    {"bad_offsets_overlap.safetensors", T, "[16, 40) overlap the previous tensor 'a' ending at 24"},
    {"bad_offsets_gap.safetensors", T, "gap of 8 bytes after the previous tensor 'a' ending at 24"},
    {"bad_metadata_not_string.safetensors", "__metadata__", "value of key 'format': expected a string, found '1'"},
    {"bad_metadata_not_object.safetensors", "__metadata__", "expected an object of string values, found a string"},
    {"bad_metadata_duplicate_key.safetensors", "__metadata__: duplicate key 'format'", NULL},
    {"bad_metadata_twice.safetensors", "__metadata__: appears twice", NULL},
};
#undef T

static void check_good_small(void) {
    SafeTensors st;
    Error err = {{0}};
    CHECK_MSG(st_open(&st, BAD_DIR "/good_small.safetensors", &err) == 0, "%s", err.msg);
    float v[6];
    CHECK(st_read_f32(&st, QKV, v, 6, &err) == 0 && v[0] == 0.5f && v[3] == 3.25f && v[5] == 100.0f);
    CHECK(st_read_f32(&st, "blocks.0.norm.h", v, 3, &err) == 0 && v[0] == 1.0f && v[1] == -2.0f && v[2] == 0.5f);
    CHECK(st_read_f32(&st, "scale", v, 1, &err) == 0 && v[0] == 1.5f);
    CHECK(st_read_f32(&st, "bf", v, 2, &err) == 0 && v[0] == 1.5f && v[1] == -2.0f);
    const StTensor *t = st_find(&st, "scale");
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->dtype == ST_F64);
    t = st_find(&st, "empty");
    CHECK(t && t->ndim == 2 && t->numel == 0 && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 4);
    t = st_find(&st, "ids");
    int64_t ids[2] = {0, 0};
    if (t && t->nbytes == sizeof ids) memcpy(ids, t->data, sizeof ids);
    CHECK(ids[0] == 7 && ids[1] == -7);
    CHECK(st_meta(&st, "note") && !strcmp(st_meta(&st, "note"), "caf\xc3\xa9 \"q\""));
    st_close(&st);
}

static void test_malformed(void) {
    char path[1024];
    Error err;
    SafeTensors st;
    for (size_t i = 0; i < ARRAY_LEN(BAD); i++) {
        snprintf(path, sizeof path, "%s/%s", BAD_DIR, BAD[i].file);
        CHECK_MSG(exists(path), "%s missing: run scripts/make_bad_safetensors.py", path);
        memset(&err, 0, sizeof err);
        int rc = st_open(&st, path, &err);
        CHECK_MSG(rc != 0, "%s was accepted", BAD[i].file);
        CHECK_MSG(strstr(err.msg, BAD[i].file), "%s: message does not name the file: %s", BAD[i].file, err.msg);
        CHECK_MSG(strstr(err.msg, BAD[i].frag1), "%s: expected '%s' in: %s", BAD[i].file, BAD[i].frag1, err.msg);
        if (BAD[i].frag2)
            CHECK_MSG(strstr(err.msg, BAD[i].frag2), "%s: expected '%s' in: %s", BAD[i].file, BAD[i].frag2, err.msg);
        CHECK(st.tensors == NULL && st.n == 0 && st.map == NULL);
        if (rc == 0) st_close(&st);
        if (getenv("ST_VERBOSE")) printf("%s\n", err.msg);
    }
    /* every file of the corpus is covered: bad_* in the table, good_* open */
    DIR *d = opendir(BAD_DIR);
    CHECK_MSG(d, "cannot open %s", BAD_DIR);
    int n_good = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (!strncmp(de->d_name, "bad_", 4)) {
            int known = 0;
            for (size_t i = 0; i < ARRAY_LEN(BAD); i++) known |= !strcmp(BAD[i].file, de->d_name);
            CHECK_MSG(known, "%s is not in BAD[] of %s", de->d_name, __FILE__);
        } else if (!strncmp(de->d_name, "good_", 5)) {
            snprintf(path, sizeof path, "%s/%s", BAD_DIR, de->d_name);
            CHECK_MSG(st_open(&st, path, &err) == 0, "%s", err.msg);
            st_close(&st);
            n_good++;
        }
    }
    if (d) closedir(d);
    CHECK(n_good >= 4);
    check_good_small();
    /* not a file at all */
    CHECK(st_open(&st, BAD_DIR, &err) != 0 && strstr(err.msg, "not a regular file"));
    CHECK(st_open(&st, BAD_DIR "/does_not_exist.safetensors", &err) != 0 && strstr(err.msg, "does_not_exist"));
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "roundtrip")) {
        test_conversions();
        test_roundtrip(argv[2]);
        return test_finish("record_safetensors_roundtrip");
    }
    if (argc >= 2 && !strcmp(argv[1], "malformed")) {
        test_malformed();
        return test_finish("fault_safetensors_malformed");
    }
    fprintf(stderr, "usage: %s roundtrip <tmpdir> | malformed\n", argv[0]);
    return 2;
}
