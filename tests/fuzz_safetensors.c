/* tests/fuzz_safetensors.c: st_parse on arbitrary bytes must return 0 or -1 (never crash, never read outside
 * the buffer, never leak), and whatever it accepts must keep the header's promises (checked below).
 *   libFuzzer (cmake -DLORALAB_FUZZ=ON with clang):  fuzz_safetensors CORPUS_DIR -max_total_time=60
 *   standalone (-DFUZZ_STANDALONE, ctest fault_safetensors_fuzz_replay):
 *       fuzz_safetensors_replay [DIR] [ITERATIONS]   every file in DIR (default tests/data/safetensors_bad),
 *       then ITERATIONS (default 2000) seeded random mutations of its good_* files. */
#include "core/safetensors.h"

#include <string.h>

static int is_float(StDType t) { return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64; }

static void check_accepted(const SafeTensors *st, const uint8_t *buf, size_t len) {
    uint64_t hlen = 0, total = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
    for (int i = 0; i < st->n; i++) {
        const StTensor *t = &st->tensors[i];
        ASSERT(st_find(st, t->name) == t); /* names are unique */
        ASSERT(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS && (unsigned)t->dtype < ST_NDTYPES);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            ASSERT(t->shape[d] >= 0);
            numel *= t->shape[d];
        }
        ASSERT(t->numel == numel && t->nbytes == (size_t)numel * st_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        ASSERT(p >= buf + 8 + hlen && p + t->nbytes <= buf + len);
        total += t->nbytes;
        if (is_float(t->dtype) && numel <= 1024) {
            float tmp[1024];
            Error e;
            ASSERT(st_read_f32(st, t->name, tmp, numel, &e) == 0);
        }
    }
    ASSERT(8 + hlen + total == len); /* the tensors tile the data section */
    for (int i = 0; i < st->n_meta; i++) ASSERT(st_meta(st, st->meta_keys[i]) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SafeTensors st;
    Error err = {{0}};
    if (st_parse(&st, data, size, "fuzz.safetensors", &err) == 0) {
        check_accepted(&st, data, size);
        st_close(&st);
    } else {
        ASSERTF(!strncmp(err.msg, "fuzz.safetensors: ", 18), "message does not start with the file name: %s", err.msg);
        ASSERT(st.tensors == NULL && st.strings == NULL);
    }
    return 0;
}

#ifdef FUZZ_STANDALONE
#include <dirent.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* xorshift64*: deterministic, so a failure replays */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = xmalloc((size_t)n);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* Run one input from an exactly sized heap copy, so AddressSanitizer sees any read past its end. */
static int run(const uint8_t *data, size_t len) {
    uint8_t *copy = xmalloc(len);
    if (len) memcpy(copy, data, len);
    SafeTensors st;
    Error err;
    int ok = st_parse(&st, copy, len, "x", &err) == 0;
    if (ok) st_close(&st);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
    return ok;
}

/* 1-4 edits, mostly inside the header where the parser lives: bit flips, JSON-significant bytes, deleted or
 * duplicated ranges, a nudged length field, truncation. */
static size_t mutate(uint8_t *b, size_t len, size_t cap) {
    static const uint8_t SPECIAL[] = {'{', '}', '[', ']', '"', ',', ':', '\\', '-', '0', '9', 'e', '.', ' ', 0, 0xff, 0xc3, 'u'};
    int edits = 1 + (int)(rnd() % 4);
    for (int k = 0; k < edits && len > 0; k++) {
        uint64_t hlen = 0;
        for (int i = 0; i < 8 && i < (int)len; i++) hlen |= (uint64_t)b[i] << (8 * i);
        size_t span = (rnd() % 5 && len >= 8 && hlen <= len - 8) ? (size_t)hlen + 8 : len;
        size_t pos = (size_t)(rnd() % span);
        switch (rnd() % 7) {
        case 0: b[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: case 2: b[pos] = SPECIAL[rnd() % sizeof SPECIAL]; break;
        case 3: { /* delete a short range */
            size_t r = (size_t)(1 + rnd() % 8), n = MIN(r, len - pos); /* MIN evaluates twice: no rnd() in it */
            memmove(b + pos, b + pos + n, len - pos - n);
            len -= n;
            break;
        }
        case 4: { /* duplicate a short range */
            size_t r = (size_t)(1 + rnd() % 16), n = MIN(r, cap - len);
            memmove(b + pos + n, b + pos, len - pos);
            len += n;
            break;
        }
        case 5: { /* nudge the header length */
            uint64_t h = hlen + (rnd() % 33) - 16;
            for (int i = 0; i < 8 && i < (int)len; i++) b[i] = (uint8_t)(h >> (8 * i));
            break;
        }
        default: len = (size_t)(rnd() % (len + 1)); break;
        }
    }
    return len;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : TEST_DATA_DIR "/safetensors_bad";
    long iters = argc > 2 ? atol(argv[2]) : 2000;
    char path[2048];
    uint8_t *good[16];
    size_t good_len[16];
    int n_good = 0, files = 0, accepted = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len = 0;
        uint8_t *b = slurp(path, &len);
        if (!b) continue;
        files++;
        int ok = run(b, len);
        accepted += ok;
        if (ok != !strncmp(de->d_name, "good_", 5)) {
            fprintf(stderr, "%s: %s\n", de->d_name, ok ? "accepted but named bad_" : "rejected but named good_");
            return 1;
        }
        if (ok && n_good < 16) good[n_good] = b, good_len[n_good++] = len;
        else free(b);
    }
    closedir(d);
    if (!n_good) {
        fprintf(stderr, "no good_* file in %s to mutate\n", dir);
        return 1;
    }
    long mut_ok = 0;
    for (long it = 0; it < iters; it++) {
        int g = (int)(rnd() % (uint64_t)n_good);
        size_t cap = good_len[g] + 64;
        uint8_t *b = xmalloc(cap);
        memcpy(b, good[g], good_len[g]);
        size_t len = mutate(b, good_len[g], cap);
        mut_ok += run(b, len);
        free(b);
    }
    for (int i = 0; i < n_good; i++) free(good[i]);
    printf("fault_safetensors_fuzz_replay: %d corpus files (%d accepted), %ld mutations (%ld accepted), no crash\n",
           files, accepted, iters, mut_ok);
    return 0;
}
#endif
