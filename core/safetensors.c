/* core/safetensors.c: the safetensors reader (a schema-driven strict JSON parser, then layout checks) and
 * the atomic writer. Contract and the full list of checks in safetensors.h. */
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host, as the format does"
#endif
_Static_assert(SIZE_MAX >= INT64_MAX, "byte sizes are int64 and must fit in size_t");

static const char *const DTYPE_NAMES[ST_NDTYPES] = {"F32", "F16", "BF16", "F64", "I64",
                                                    "I32", "I16", "I8",   "U8",  "BOOL"};
static const size_t DTYPE_SIZES[ST_NDTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
#define DTYPE_LIST "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL"

size_t st_dtype_size(StDType t) { return (unsigned)t < ST_NDTYPES ? DTYPE_SIZES[t] : 0; }
const char *st_dtype_name(StDType t) { return (unsigned)t < ST_NDTYPES ? DTYPE_NAMES[t] : "?"; }

/* ---- scalar conversions ------------------------------------------------------------------------------ */
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* NaN: keep it NaN, quiet */
    x += 0x7fffu + ((x >> 16) & 1u);                                         /* round to nearest even */
    return (uint16_t)(x >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));       /* inf / NaN */
    if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13)); /* rebias 15 -> 127 */
    return bits_f32(sign | f32_bits((float)man * 0x1p-24f));                 /* zero / subnormal: exact */
}

/* F. Giesen's float_to_half_fast3_rtne: round to nearest even, NaN -> quiet NaN, overflow -> inf. */
uint16_t st_f32_to_f16(float f) {
    uint32_t x = f32_bits(f), sign = x & 0x80000000u;
    x ^= sign;
    uint16_t o;
    if (x >= (127u + 16u) << 23) {                  /* >= 65536, inf or NaN */
        o = x > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (x < 113u << 23) {                    /* below 2^-14: the FPU rounds into the subnormal grid */
        const uint32_t magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
        o = (uint16_t)(f32_bits(bits_f32(x) + bits_f32(magic)) - magic);
    } else {
        uint32_t odd = (x >> 13) & 1u;
        x -= (127u - 15u) << 23;                    /* rebias, then round the 13 dropped bits */
        x += 0xfffu + odd;
        o = (uint16_t)(x >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), 0 if
 * invalid or cut by end. */
static int utf8_len(const unsigned char *s, const unsigned char *end) {
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    int n;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) n = 3, lo = 0xa0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) n = 3;
    else if (c == 0xed) n = 3, hi = 0x9f;
    else if (c == 0xf0) n = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) n = 4, hi = 0x8f;
    else return 0;
    if (end - s < n || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

/* A name for messages: at most 200 bytes, control characters shown as '?', so a hostile name cannot
 * forge lines in a log. */
static const char *printable(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 4 < cap && i < 200; i++) dst[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i]) dst[i++] = '.', dst[i++] = '.', dst[i++] = '.';
    dst[i] = 0;
    return dst;
}

static void fmt_shape(char *dst, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(dst, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(dst + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(dst + k, cap - k, "]");
}

/* ---- the header parser ------------------------------------------------------------------------------- */
/* Driven by the schema: top-level object -> entry object -> list of ints, or metadata object -> strings.
 * Every value is checked where it is read; nothing recurses and nothing is built but the result. */
typedef struct {
    const unsigned char *p, *end; /* cursor in the header text */
    const unsigned char *file;    /* start of the buffer, for byte offsets in messages */
    const char *label;
    char ctx[320];                /* "header", "tensor 'x'", "__metadata__" */
    char *pool;                   /* decoded strings; decoded+NUL never exceeds the raw text, so N bytes suffice */
    size_t pool_used;
    Error *err;
} Parser;

static int perr(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(Parser *ps, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return err_set(ps->err, "%s: %s: %s (at byte %zu)", ps->label, ps->ctx, what, (size_t)(ps->p - ps->file));
}

static void skip_ws(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}
static int at(Parser *ps, char c) {
    skip_ws(ps);
    return ps->p < ps->end && *ps->p == (unsigned char)c;
}

/* What the cursor points at, for "expected X, found Y". */
static const char *found(const Parser *ps, char *buf, size_t cap) {
    if (ps->p >= ps->end) return "the end of the header";
    switch (*ps->p) {
    case '{': return "an object";
    case '[': return "a list";
    case '"': return "a string";
    }
    if (*ps->p < 0x21 || *ps->p > 0x7e) {
        snprintf(buf, cap, "byte 0x%02x", *ps->p);
        return buf;
    }
    size_t k = 0;
    buf[k++] = '\'';
    buf[k++] = (char)*ps->p; /* then the rest of a word or number, to show e.g. 'null' or '-5' whole */
    for (const unsigned char *q = ps->p + 1; q < ps->end && *q > 0x20 && *q < 0x7f && !strchr(",:[]{}\"", *q) &&
                                             !strchr(",:[]{}\"", *ps->p) && k + 5 < cap;
         q++)
        buf[k++] = (char)*q;
    buf[k++] = '\'';
    buf[k] = 0;
    return buf;
}

static int expect(Parser *ps, char c, const char *where) {
    char b[40];
    if (!at(ps, c)) return perr(ps, "expected '%c' %s, found %s", c, where, found(ps, b, sizeof b));
    ps->p++;
    return 0;
}

static int parse_uint(Parser *ps, uint64_t *out, const char *what) {
    char b[40];
    skip_ws(ps);
    const unsigned char *s = ps->p, *q = s;
    if (q >= ps->end || *q < '0' || *q > '9')
        return perr(ps, "%s: expected a non-negative integer, found %s", what, found(ps, b, sizeof b));
    uint64_t v = 0;
    for (; q < ps->end && *q >= '0' && *q <= '9'; q++) {
        unsigned d = *q - '0';
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return perr(ps, "%s: integer %s is larger than %lld", what, found(ps, b, sizeof b), (long long)INT64_MAX);
        v = v * 10 + d;
    }
    if (q - s > 1 && *s == '0') return perr(ps, "%s: integer %s has a leading zero", what, found(ps, b, sizeof b));
    if (q < ps->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return perr(ps, "%s: expected a non-negative integer, found %s", what, found(ps, b, sizeof b));
    ps->p = q;
    *out = v;
    return 0;
}

static int hex4(const unsigned char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* A JSON string, decoded into the pool; *out stays valid until the pool is rewound. */
static int parse_string(Parser *ps, char **out, const char *what) {
    char b[40];
    if (!at(ps, '"')) return perr(ps, "%s: expected a string, found %s", what, found(ps, b, sizeof b));
    ps->p++;
    char *dst = ps->pool + ps->pool_used;
    size_t k = 0;
    for (;;) {
        if (ps->p >= ps->end) return perr(ps, "%s: unterminated string", what);
        unsigned c = *ps->p;
        if (c == '"') break;
        if (c < 0x20) return perr(ps, "%s: raw control character 0x%02x in a string (must be escaped)", what, c);
        if (c >= 0x80) {
            int n = utf8_len(ps->p, ps->end);
            if (!n) return perr(ps, "%s: invalid UTF-8 byte 0x%02x in a string", what, c);
            memcpy(dst + k, ps->p, (size_t)n);
            k += (size_t)n, ps->p += n;
            continue;
        }
        if (c != '\\') {
            dst[k++] = (char)c, ps->p++;
            continue;
        }
        if (ps->end - ps->p < 2) return perr(ps, "%s: unterminated string", what);
        unsigned e = ps->p[1], cp;
        const char *simple = strchr("\"\\/bfnrt", (int)e);
        if (e && simple) {
            dst[k++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            ps->p += 2;
            continue;
        }
        if (e != 'u') return perr(ps, "%s: invalid escape '\\%c' in a string", what, e >= 0x20 && e < 0x7f ? (char)e : '?');
        if (ps->end - ps->p < 6 || hex4(ps->p + 2, &cp))
            return perr(ps, "%s: '\\u' must be followed by 4 hex digits", what);
        if (cp >= 0xdc00 && cp <= 0xdfff) return perr(ps, "%s: lone low surrogate \\u%04x in a string", what, cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            unsigned lo;
            if (ps->end - ps->p < 12 || ps->p[6] != '\\' || ps->p[7] != 'u' || hex4(ps->p + 8, &lo) || lo < 0xdc00 ||
                lo > 0xdfff)
                return perr(ps, "%s: high surrogate \\u%04x not followed by a low surrogate", what, cp);
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            ps->p += 6;
        }
        if (cp == 0) return perr(ps, "%s: NUL character (\\u0000) is not allowed in names, keys or values", what);
        ps->p += 6;
        if (cp < 0x80) {
            dst[k++] = (char)cp;
        } else if (cp < 0x800) {
            dst[k++] = (char)(0xc0 | (cp >> 6)), dst[k++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            dst[k++] = (char)(0xe0 | (cp >> 12)), dst[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            dst[k++] = (char)(0x80 | (cp & 0x3f));
        } else {
            dst[k++] = (char)(0xf0 | (cp >> 18)), dst[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            dst[k++] = (char)(0x80 | ((cp >> 6) & 0x3f)), dst[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    ps->p++; /* closing quote */
    dst[k] = 0;
    ps->pool_used += k + 1;
    *out = dst;
    return 0;
}

/* After a member: ',' (returns 1, more follow) or the closing bracket (returns 0), else -1. */
static int next_member(Parser *ps, char close, const char *where) {
    char b[40];
    if (at(ps, ',')) return ps->p++, 1;
    if (at(ps, close)) return ps->p++, 0;
    return perr(ps, "expected ',' or '%c' %s, found %s", close, where, found(ps, b, sizeof b));
}

static int parse_shape(Parser *ps, StTensor *t) {
    char b[40];
    if (!at(ps, '['))
        return perr(ps, "shape: expected a list of non-negative integers, found %s", found(ps, b, sizeof b));
    ps->p++;
    t->ndim = 0;
    if (at(ps, ']')) return ps->p++, 0;
    for (int more = 1; more;) {
        if (t->ndim == ST_MAX_DIMS) return perr(ps, "shape: more than %d dimensions", ST_MAX_DIMS);
        uint64_t d;
        if (parse_uint(ps, &d, "shape")) return -1;
        t->shape[t->ndim++] = (int64_t)d;
        if ((more = next_member(ps, ']', "in shape")) < 0) return -1;
    }
    return 0;
}

static int parse_offsets(Parser *ps, uint64_t off[2]) {
    char b[40];
    if (!at(ps, '['))
        return perr(ps, "data_offsets: expected a list [begin, end], found %s", found(ps, b, sizeof b));
    ps->p++;
    if (parse_uint(ps, &off[0], "data_offsets begin")) return -1;
    if (expect(ps, ',', "in data_offsets [begin, end]")) return -1;
    if (parse_uint(ps, &off[1], "data_offsets end")) return -1;
    return expect(ps, ']', "after data_offsets [begin, end] (exactly two integers)");
}

static int parse_dtype(Parser *ps, StTensor *t) {
    size_t mark = ps->pool_used;
    char *s, b[256];
    if (parse_string(ps, &s, "dtype")) return -1;
    ps->pool_used = mark; /* the dtype string is not kept */
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, DTYPE_NAMES[i])) return t->dtype = (StDType)i, 0;
    return perr(ps, "unknown dtype '%s' (expected one of " DTYPE_LIST ")", printable(b, sizeof b, s));
}

/* One tensor entry {"dtype", "shape", "data_offsets"}, then its own consistency checks. */
static int parse_entry(Parser *ps, StTensor *t, const unsigned char *data, uint64_t data_len) {
    static const char *const KEYS[3] = {"dtype", "shape", "data_offsets"};
    char b[256];
    int have[3] = {0, 0, 0};
    uint64_t off[2] = {0, 0};
    if (!at(ps, '{'))
        return perr(ps, "expected an object {\"dtype\", \"shape\", \"data_offsets\"}, found %s", found(ps, b, 40));
    ps->p++;
    int more = !at(ps, '}');
    if (!more) ps->p++;
    while (more) {
        size_t mark = ps->pool_used;
        char *key;
        if (parse_string(ps, &key, "key")) return -1;
        ps->pool_used = mark;
        int k = 0;
        while (k < 3 && strcmp(key, KEYS[k])) k++;
        if (k == 3)
            return perr(ps, "unknown key '%s' (a tensor entry has exactly dtype, shape, data_offsets)",
                        printable(b, sizeof b, key));
        if (have[k]) return perr(ps, "duplicate key '%s'", KEYS[k]);
        have[k] = 1;
        if (expect(ps, ':', "after the key")) return -1;
        int rc = k == 0 ? parse_dtype(ps, t) : k == 1 ? parse_shape(ps, t) : parse_offsets(ps, off);
        if (rc) return -1;
        if ((more = next_member(ps, '}', "in the tensor entry")) < 0) return -1;
    }
    for (int k = 0; k < 3; k++)
        if (!have[k]) return perr(ps, "missing key '%s'", KEYS[k]);

    char shp[200];
    fmt_shape(shp, sizeof shp, t->ndim, t->shape);
    int64_t numel = 1, nbytes;
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(numel, t->shape[i], &numel))
            return perr(ps, "shape %s: element count overflows int64", shp);
    if (__builtin_mul_overflow(numel, (int64_t)DTYPE_SIZES[t->dtype], &nbytes))
        return perr(ps, "shape %s: byte size overflows", shp);
    if (off[0] > off[1])
        return perr(ps, "data_offsets [%llu, %llu]: begin is after end", (unsigned long long)off[0],
                    (unsigned long long)off[1]);
    if (off[1] - off[0] != (uint64_t)nbytes)
        return perr(ps, "data_offsets [%llu, %llu] span %llu bytes, but dtype %s with shape %s needs %lld bytes",
                    (unsigned long long)off[0], (unsigned long long)off[1], (unsigned long long)(off[1] - off[0]),
                    DTYPE_NAMES[t->dtype], shp, (long long)nbytes);
    if (off[1] > data_len)
        return perr(ps, "data_offsets [%llu, %llu] run past the end of the data section (%llu bytes): file truncated?",
                    (unsigned long long)off[0], (unsigned long long)off[1], (unsigned long long)data_len);
    t->numel = numel;
    t->nbytes = (size_t)nbytes;
    t->offset = (size_t)off[0];
    t->data = data + off[0];
    return 0;
}

static int parse_metadata(Parser *ps, SafeTensors *st, int *cap) {
    char b[256], what[300];
    if (!at(ps, '{')) return perr(ps, "expected an object of string values, found %s", found(ps, b, 40));
    ps->p++;
    int more = !at(ps, '}');
    if (!more) ps->p++;
    while (more) {
        char *k, *v;
        if (parse_string(ps, &k, "key")) return -1;
        if (expect(ps, ':', "after the key")) return -1;
        snprintf(what, sizeof what, "value of key '%s'", printable(b, sizeof b, k));
        if (parse_string(ps, &v, what)) return -1;
        if (st->n_meta == *cap) {
            *cap = *cap ? 2 * *cap : 8;
            st->meta_keys = xrealloc(st->meta_keys, (size_t)*cap * sizeof *st->meta_keys);
            st->meta_vals = xrealloc(st->meta_vals, (size_t)*cap * sizeof *st->meta_vals);
        }
        st->meta_keys[st->n_meta] = k, st->meta_vals[st->n_meta] = v, st->n_meta++;
        if ((more = next_member(ps, '}', "in __metadata__")) < 0) return -1;
    }
    return 0;
}

static int parse_header(Parser *ps, SafeTensors *st, const unsigned char *data, uint64_t data_len) {
    char b[256];
    int cap = 0, meta_cap = 0, meta_seen = 0;
    snprintf(ps->ctx, sizeof ps->ctx, "header");
    if (!at(ps, '{')) return perr(ps, "expected a JSON object, found %s", found(ps, b, 40));
    ps->p++;
    int more = !at(ps, '}');
    if (!more) ps->p++;
    while (more) {
        snprintf(ps->ctx, sizeof ps->ctx, "header");
        char *name;
        if (parse_string(ps, &name, "tensor name")) return -1;
        if (!strcmp(name, "__metadata__")) {
            snprintf(ps->ctx, sizeof ps->ctx, "__metadata__");
            if (meta_seen) return perr(ps, "appears twice");
            meta_seen = 1;
            if (expect(ps, ':', "after the key") || parse_metadata(ps, st, &meta_cap)) return -1;
        } else {
            snprintf(ps->ctx, sizeof ps->ctx, "tensor '%s'", printable(b, sizeof b, name));
            if (st->n == cap) {
                cap = cap ? 2 * cap : 16;
                st->tensors = xrealloc(st->tensors, (size_t)cap * sizeof *st->tensors);
            }
            StTensor *t = &st->tensors[st->n];
            memset(t, 0, sizeof *t);
            t->name = name;
            if (expect(ps, ':', "after the tensor name") || parse_entry(ps, t, data, data_len)) return -1;
            st->n++;
        }
        snprintf(ps->ctx, sizeof ps->ctx, "header");
        if ((more = next_member(ps, '}', "after the entry")) < 0) return -1;
    }
    skip_ws(ps);
    if (ps->p != ps->end)
        return perr(ps, "unexpected %s after the header object (only space padding may follow)", found(ps, b, 40));
    return 0;
}

/* ---- whole-file checks ------------------------------------------------------------------------------- */
typedef struct { const char *name; int idx; } NameIdx;
typedef struct { uint64_t begin, end; int idx; } Span;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const NameIdx *)a)->name, ((const NameIdx *)b)->name);
}
static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

static int check_names(SafeTensors *st, Error *err) {
    char b[256];
    NameIdx *v = xmalloc((size_t)(st->n ? st->n : 1) * sizeof *v);
    for (int i = 0; i < st->n; i++) v[i] = (NameIdx){st->tensors[i].name, i};
    qsort(v, (size_t)st->n, sizeof *v, cmp_name);
    st->by_name = xmalloc((size_t)(st->n ? st->n : 1) * sizeof *st->by_name);
    int rc = 0;
    for (int i = 0; i < st->n; i++) {
        st->by_name[i] = v[i].idx;
        if (i && !strcmp(v[i].name, v[i - 1].name) && !rc)
            rc = err_set(err, "%s: tensor '%s': duplicate tensor name", st->path, printable(b, sizeof b, v[i].name));
    }
    if (!rc && st->n_meta > 1) {
        NameIdx *m = xmalloc((size_t)st->n_meta * sizeof *m);
        for (int i = 0; i < st->n_meta; i++) m[i] = (NameIdx){st->meta_keys[i], i};
        qsort(m, (size_t)st->n_meta, sizeof *m, cmp_name);
        for (int i = 1; i < st->n_meta && !rc; i++)
            if (!strcmp(m[i].name, m[i - 1].name))
                rc = err_set(err, "%s: __metadata__: duplicate key '%s'", st->path, printable(b, sizeof b, m[i].name));
        free(m);
    }
    free(v);
    return rc;
}

/* Sorted by begin, the spans must tile [0, data_len) exactly: the reference reader's rule. */
static int check_layout(const SafeTensors *st, uint64_t data_len, Error *err) {
    char a[256], b[256];
    Span *s = xmalloc((size_t)(st->n ? st->n : 1) * sizeof *s);
    for (int i = 0; i < st->n; i++) s[i] = (Span){st->tensors[i].offset, st->tensors[i].offset + st->tensors[i].nbytes, i};
    qsort(s, (size_t)st->n, sizeof *s, cmp_span);
    uint64_t pos = 0;
    int rc = 0;
    for (int i = 0; i < st->n && !rc; i++) {
        const char *name = printable(a, sizeof a, st->tensors[s[i].idx].name);
        const char *prev = i ? printable(b, sizeof b, st->tensors[s[i - 1].idx].name) : "";
        if (s[i].begin < pos)
            rc = err_set(err, "%s: tensor '%s': data offsets [%llu, %llu) overlap the previous tensor '%s' ending at %llu",
                         st->path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end, prev,
                         (unsigned long long)pos);
        else if (s[i].begin > pos && i == 0)
            rc = err_set(err, "%s: tensor '%s': data offsets [%llu, %llu): the first tensor must begin at 0 (gap of %llu bytes)",
                         st->path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end,
                         (unsigned long long)s[i].begin);
        else if (s[i].begin > pos)
            rc = err_set(err, "%s: tensor '%s': data offsets [%llu, %llu) leave a gap of %llu bytes after the previous tensor '%s' ending at %llu",
                         st->path, name, (unsigned long long)s[i].begin, (unsigned long long)s[i].end,
                         (unsigned long long)(s[i].begin - pos), prev, (unsigned long long)pos);
        pos = s[i].end;
    }
    if (!rc && pos != data_len) {
        if (st->n)
            rc = err_set(err, "%s: tensor '%s': the last tensor ends at %llu but the data section has %llu bytes (%llu trailing bytes)",
                         st->path, printable(a, sizeof a, st->tensors[s[st->n - 1].idx].name), (unsigned long long)pos,
                         (unsigned long long)data_len, (unsigned long long)(data_len - pos));
        else
            rc = err_set(err, "%s: no tensors, but %llu trailing bytes after the header", st->path,
                         (unsigned long long)data_len);
    }
    free(s);
    return rc;
}

int st_parse(SafeTensors *st, const void *buf, size_t len, const char *label, Error *err) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", label ? label : "<memory>");
    const unsigned char *b = buf;
    if (len < 8)
        return err_set(err, "%s: file is %zu bytes, shorter than the 8-byte header length field", st->path, len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
    if (n == 0) return err_set(err, "%s: header length is 0 (expected a JSON object)", st->path);
    if (n > ST_MAX_HEADER)
        return err_set(err, "%s: header length %llu exceeds the limit of %llu bytes (corrupt, or not a safetensors file)",
                       st->path, (unsigned long long)n, ST_MAX_HEADER);
    if (n > len - 8)
        return err_set(err, "%s: header length %llu runs past the end of the file (%zu bytes): file truncated?",
                       st->path, (unsigned long long)n, len);
    Parser ps = {.p = b + 8, .end = b + 8 + n, .file = b, .label = st->path, .err = err};
    st->strings = ps.pool = xmalloc((size_t)n);
    if (parse_header(&ps, st, b + 8 + n, len - 8 - n) || check_names(st, err) || check_layout(st, len - 8 - n, err)) {
        st_close(st);
        return -1;
    }
    return 0;
}

int st_open(SafeTensors *st, const char *path, Error *err) {
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return err_set(err, "%s: file is %zu bytes, shorter than the 8-byte header length field", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return err_set(err, "%s: mmap of %zu bytes failed: %s", path, size, strerror(map_errno));
    if (st_parse(st, map, size, path, err)) {
        munmap(map, size);
        return -1;
    }
    st->map = map;
    st->map_size = size;
    return 0;
}

void st_close(SafeTensors *st) {
    if (st->map) munmap(st->map, st->map_size);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->strings);
    free(st->by_name);
    memset(st, 0, sizeof *st);
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const StTensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const SafeTensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_vals[i];
    return NULL;
}

int st_read_f32(const SafeTensors *st, const char *name, float *dst, int64_t n, Error *err) {
    char b[256], shp[200];
    const StTensor *t = st_find(st, name);
    if (!t) return err_set(err, "%s: no tensor '%s' (the file has %d tensors)", st->path, printable(b, sizeof b, name), st->n);
    fmt_shape(shp, sizeof shp, t->ndim, t->shape);
    if (t->numel != n)
        return err_set(err, "%s: tensor '%s': expected %lld elements, found shape %s (%lld elements)", st->path,
                       printable(b, sizeof b, name), (long long)n, shp, (long long)t->numel);
    ASSERT(dst || n == 0);
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, src, t->nbytes);
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    case ST_F16:
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return 0;
    default:
        return err_set(err, "%s: tensor '%s': dtype %s cannot be read as f32 (expected F32, F16, BF16 or F64)",
                       st->path, printable(b, sizeof b, name), DTYPE_NAMES[t->dtype]);
    }
}

/* ---- the writer -------------------------------------------------------------------------------------- */
typedef struct { char *s; size_t n, cap; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = MAX(2 * b->cap, b->n + n + 64);
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* A JSON string escaped as serde_json does (so the header matches the reference writer byte for byte). */
static void buf_json_string(Buf *b, const char *s) {
    buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                        : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        char u[8];
        if (!esc && c < 0x20) snprintf(u, sizeof u, "\\u%04x", c), esc = u;
        if (esc) buf_puts(b, esc);
        else buf_put(b, (const char *)&c, 1);
    }
    buf_puts(b, "\"");
}

static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        int n = utf8_len(p, end);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Check what the reader would reject, so st_write never produces a file st_open refuses. */
static int check_entries(const char *path, const StEntry *e, int n, const char *const *kv, int n_meta,
                         size_t *nbytes, Error *err) {
    char b[256];
    for (int i = 0; i < n; i++) {
        if (!e[i].name || !valid_utf8(e[i].name) || !strcmp(e[i].name, "__metadata__"))
            return err_set(err, "%s: entry %d: tensor name is NULL, not valid UTF-8, or \"__metadata__\"", path, i);
        const char *nm = printable(b, sizeof b, e[i].name);
        if ((unsigned)e[i].dtype >= ST_NDTYPES)
            return err_set(err, "%s: tensor '%s': invalid dtype %d", path, nm, (int)e[i].dtype);
        if (e[i].ndim < 0 || e[i].ndim > ST_MAX_DIMS || (e[i].ndim && !e[i].shape))
            return err_set(err, "%s: tensor '%s': ndim %d (expected 0..%d with a shape)", path, nm, e[i].ndim, ST_MAX_DIMS);
        int64_t numel = 1, nb;
        for (int d = 0; d < e[i].ndim; d++)
            if (e[i].shape[d] < 0 || __builtin_mul_overflow(numel, e[i].shape[d], &numel))
                return err_set(err, "%s: tensor '%s': dim %d is %lld (negative, or the size overflows)", path, nm, d,
                               (long long)e[i].shape[d]);
        if (__builtin_mul_overflow(numel, (int64_t)DTYPE_SIZES[e[i].dtype], &nb))
            return err_set(err, "%s: tensor '%s': byte size overflows", path, nm);
        if (nb && !e[i].data) return err_set(err, "%s: tensor '%s': data is NULL", path, nm);
        nbytes[i] = (size_t)nb;
    }
    for (int i = 0; i < 2 * n_meta; i++)
        if (!kv[i] || !valid_utf8(kv[i]))
            return err_set(err, "%s: metadata %s %d is NULL or not valid UTF-8", path, i % 2 ? "value" : "key", i / 2);
    /* uniqueness: build a throwaway SafeTensors-like name list and reuse the reader's check */
    SafeTensors tmp = {0};
    snprintf(tmp.path, sizeof tmp.path, "%s", path);
    tmp.n = n, tmp.n_meta = n_meta;
    tmp.tensors = xcalloc((size_t)(n ? n : 1), sizeof *tmp.tensors);
    tmp.meta_keys = xcalloc((size_t)(n_meta ? n_meta : 1), sizeof *tmp.meta_keys);
    for (int i = 0; i < n; i++) tmp.tensors[i].name = (char *)e[i].name;
    for (int i = 0; i < n_meta; i++) tmp.meta_keys[i] = (char *)kv[2 * i];
    int rc = check_names(&tmp, err);
    free(tmp.tensors), free(tmp.meta_keys), free(tmp.by_name);
    return rc;
}

static int write_file(const char *path, const char *tmp, const Buf *h, const StEntry *e, const size_t *nbytes, int n,
                      Error *err) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h->n >> (8 * i));
    int ok = !write_all(fd, len8, 8) && !write_all(fd, h->s, h->n);
    for (int i = 0; i < n && ok; i++) ok = !write_all(fd, e[i].data, nbytes[i]);
    if (ok && fsync(fd)) ok = 0;
    int saved = errno;
    if (close(fd) && ok) ok = 0, saved = errno;
    if (ok && rename(tmp, path)) ok = 0, saved = errno;
    if (!ok) {
        unlink(tmp);
        return err_set(err, "%s: writing %s failed: %s", path, tmp, strerror(saved));
    }
    /* Make the rename itself durable. Best effort: some filesystems refuse fsync on a directory. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd), close(dfd);
    return 0;
}

int st_write(const char *path, const StEntry *e, int n, const char *const *meta_kv, int n_meta, Error *err) {
    ASSERT(path && n >= 0 && n_meta >= 0 && (n == 0 || e) && (n_meta == 0 || meta_kv));
    size_t *nbytes = xmalloc((size_t)(n ? n : 1) * sizeof *nbytes);
    if (check_entries(path, e, n, meta_kv, n_meta, nbytes, err)) return free(nbytes), -1;

    Buf h = {0};
    char num[64];
    buf_puts(&h, "{");
    if (n_meta) {
        buf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) buf_puts(&h, ",");
            buf_json_string(&h, meta_kv[2 * i]);
            buf_puts(&h, ":");
            buf_json_string(&h, meta_kv[2 * i + 1]);
        }
        buf_puts(&h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (i || n_meta) buf_puts(&h, ",");
        buf_json_string(&h, e[i].name);
        buf_puts(&h, ":{\"dtype\":\"");
        buf_puts(&h, DTYPE_NAMES[e[i].dtype]);
        buf_puts(&h, "\",\"shape\":[");
        for (int d = 0; d < e[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
            buf_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes[i]));
        buf_puts(&h, num);
        off += nbytes[i];
    }
    buf_puts(&h, "}");
    while (h.n % 8) buf_puts(&h, " "); /* the reference writer's padding: data starts 8-aligned */

    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = write_file(path, tmp, &h, e, nbytes, n, err);
    free(tmp), free(h.s), free(nbytes);
    return rc;
}
