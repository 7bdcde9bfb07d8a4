/* core/arena.c */
#include "arena.h"

#include <string.h>

#include "common.h"

struct ArenaBlock {
    ArenaBlock *prev;
    size_t cap, used;
    char *mem;
};

static ArenaBlock *block_new(size_t cap, ArenaBlock *prev) {
    ArenaBlock *b = xmalloc(sizeof *b);
    b->prev = prev;
    b->cap = cap;
    b->used = 0;
    b->mem = xmalloc_aligned(cap);
    return b;
}

void arena_init(Arena *a, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    a->head = block_new(initial_bytes ? initial_bytes : (1u << 20), NULL);
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t need = (bytes + 63) & ~(size_t)63;
    ArenaBlock *b = a->head;
    if (b->used + need > b->cap) {
        size_t cap = MAX(need, b->cap * 2);
        a->head = b = block_new(cap, b);
        a->grows++;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->high) a->high = a->used_total;
    return p;
}

float *arena_floats(Arena *a, size_t n) { return arena_alloc(a, n * sizeof(float)); }
float *arena_zeros(Arena *a, size_t n) {
    float *p = arena_floats(a, n);
    memset(p, 0, n * sizeof(float));
    return p;
}

void arena_reset(Arena *a) {
    if (a->head->prev) { /* fold into one block of the high-water size */
        size_t cap = a->high;
        for (ArenaBlock *b = a->head; b;) {
            ArenaBlock *p = b->prev;
            free(b->mem);
            free(b);
            b = p;
        }
        a->head = block_new(cap, NULL);
    }
    a->head->used = 0;
    a->used_total = 0;
}

void arena_free(Arena *a) {
    for (ArenaBlock *b = a->head; b;) {
        ArenaBlock *p = b->prev;
        free(b->mem);
        free(b);
        b = p;
    }
    memset(a, 0, sizeof *a);
}
