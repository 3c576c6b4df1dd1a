/* tensor.h — a float32 tensor view: data pointer plus up to 4 dims (NCHW).
 *
 * A md_tensor does not own its memory unless created with md_tensor_new
 * (heap, freed with md_tensor_free); activations are views into an arena.
 * Ops themselves take raw float pointers and explicit sizes (llm.c style);
 * md_tensor is the currency between modules, files and tests. */
#ifndef MINIDET_TENSOR_H
#define MINIDET_TENSOR_H
#include <stddef.h>
#include "minidet/arena.h"
#include "minidet/error.h"

#define MD_MAX_DIMS 4

typedef struct {
    float *data;
    int ndim;
    int shape[MD_MAX_DIMS];
} md_tensor;

size_t md_shape_numel(int ndim, const int *shape);
static inline size_t md_tensor_numel(const md_tensor *t) { return md_shape_numel(t->ndim, t->shape); }
/* Heap tensor, zero-filled. Returns MD_ERR_NOMEM / MD_ERR_ARG on failure. */
md_status md_tensor_new(md_tensor *t, int ndim, const int *shape);
void md_tensor_free(md_tensor *t);
/* Arena tensor (not zeroed). */
md_status md_tensor_arena(md_tensor *t, md_arena *a, int ndim, const int *shape);
/* Formats "[2, 3, 4]" into buf. */
const char *md_shape_str(char *buf, size_t n, int ndim, const int *shape);

#endif
