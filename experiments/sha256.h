/* experiments/sha256.h: SHA-256 (FIPS 180-4), for run ids (the hash of a resolved config, experiments/grid.h).
 * Streaming: sha256_init, any number of sha256_update, sha256_final. Not constant-time (it hashes configs). */
#ifndef EXPERIMENTS_SHA256_H
#define EXPERIMENTS_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct Sha256 {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];   /* the pending partial block */
    size_t n;          /* bytes in buf */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, uint8_t digest[32]);
/* One shot: digest of data[0..n). */
void sha256(const void *data, size_t n, uint8_t digest[32]);
/* The first nhex hex digits (lowercase) of the digest of data into out[nhex + 1]; nhex <= 64. */
void sha256_hex(const void *data, size_t n, char *out, int nhex);
#endif
