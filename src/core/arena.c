/* arena.c — bump allocator (see include/minidet/arena.h). */
#include "minidet/arena.h"
#include <stdlib.h>
#include <string.h>

#define MD_ARENA_ALIGN 64

md_status md_arena_init(md_arena *a, size_t cap_bytes) {
    memset(a, 0, sizeof *a);
    cap_bytes = (cap_bytes + MD_ARENA_ALIGN - 1) & ~(size_t)(MD_ARENA_ALIGN - 1);
    if (cap_bytes == 0) return MD_OK;
    void *p = NULL;
    if (posix_memalign(&p, MD_ARENA_ALIGN, cap_bytes) != 0 || !p)
        return md_set_error(MD_ERR_NOMEM, "arena: cannot allocate %zu bytes", cap_bytes);
    a->base = p;
    a->cap = cap_bytes;
    return MD_OK;
}

void md_arena_free(md_arena *a) {
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *md_arena_alloc(md_arena *a, size_t bytes) {
    size_t start = (a->used + MD_ARENA_ALIGN - 1) & ~(size_t)(MD_ARENA_ALIGN - 1);
    if (bytes > a->cap || start > a->cap - bytes) {
        md_set_error(MD_ERR_NOMEM, "arena: out of space (%zu of %zu bytes used, %zu requested)",
                     a->used, a->cap, bytes);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

void *md_arena_calloc(md_arena *a, size_t bytes) {
    void *p = md_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

float *md_arena_floats(md_arena *a, size_t count) {
    if (count > (size_t)-1 / sizeof(float)) {
        md_set_error(MD_ERR_NOMEM, "arena: %zu floats overflow size_t", count);
        return NULL;
    }
    return md_arena_alloc(a, count * sizeof(float));
}
