/* core/arena.h: a per-step bump allocator for activations. Allocations live until arena_reset().
 * The first step may grow the arena (extra blocks); reset then folds everything into one block of the
 * high-water size, so from the second step on a step with the same shapes never calls malloc. */
#ifndef CORE_ARENA_H
#define CORE_ARENA_H
#include <stddef.h>

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
    ArenaBlock *head;  /* current block; older ones chained behind it */
    size_t used_total; /* bytes handed out since the last reset */
    size_t high;       /* high-water mark over all steps */
    int grows;         /* number of times a block had to be malloc'ed (tests check it stops growing) */
} Arena;

void arena_init(Arena *a, size_t initial_bytes);
/* 64-byte aligned, zero-initialized=NO (contents undefined). Never returns NULL. */
void *arena_alloc(Arena *a, size_t bytes);
float *arena_floats(Arena *a, size_t n);
/* Floats set to zero (for gradient buffers that are accumulated into). */
float *arena_zeros(Arena *a, size_t n);
void arena_reset(Arena *a);
void arena_free(Arena *a);
#endif
