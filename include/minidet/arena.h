/* arena.h — bump allocator for per-step activations.
 *
 * One arena is created at start-up with a fixed capacity and reset at the
 * start of every training step / inference batch, so the steady-state loop
 * never calls malloc. Allocations are 64-byte aligned. md_arena_mark/release
 * give stack-like scratch scopes inside a step. Running out of space is an
 * error (MD_ERR_NOMEM with the sizes in the message), never a silent NULL.
 * peak records the high-water mark so callers can size the arena exactly. */
#ifndef MINIDET_ARENA_H
#define MINIDET_ARENA_H
#include <stddef.h>
#include "minidet/error.h"

typedef struct {
    char *base;
    size_t cap;   /* bytes */
    size_t used;  /* bytes */
    size_t peak;  /* high-water mark of used */
} md_arena;

md_status md_arena_init(md_arena *a, size_t cap_bytes);
void md_arena_free(md_arena *a);
/* Returns NULL and sets MD_ERR_NOMEM when the arena is full. */
void *md_arena_alloc(md_arena *a, size_t bytes);
/* Same, memory set to zero. */
void *md_arena_calloc(md_arena *a, size_t bytes);
float *md_arena_floats(md_arena *a, size_t count);
static inline size_t md_arena_mark(const md_arena *a) { return a->used; }
static inline void md_arena_release(md_arena *a, size_t mark) { a->used = mark; }
static inline void md_arena_reset(md_arena *a) { a->used = 0; }

#endif
