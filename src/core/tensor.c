/* tensor.c — float32 tensor views (see include/minidet/tensor.h). */
#include "minidet/tensor.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t md_shape_numel(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)(shape[i] > 0 ? shape[i] : 0);
    return n;
}

static md_status check_shape(int ndim, const int *shape) {
    if (ndim < 0 || ndim > MD_MAX_DIMS) return md_set_error(MD_ERR_ARG, "tensor: %d dims (max %d)", ndim, MD_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return md_set_error(MD_ERR_ARG, "tensor: negative dim %d", shape[i]);
    return MD_OK;
}

md_status md_tensor_new(md_tensor *t, int ndim, const int *shape) {
    memset(t, 0, sizeof *t);
    md_status st = check_shape(ndim, shape);
    if (st) return st;
    size_t n = md_shape_numel(ndim, shape);
    t->data = calloc(n ? n : 1, sizeof(float));
    if (!t->data) return md_set_error(MD_ERR_NOMEM, "tensor: cannot allocate %zu floats", n);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int));
    return MD_OK;
}

void md_tensor_free(md_tensor *t) {
    free(t->data);
    memset(t, 0, sizeof *t);
}

md_status md_tensor_arena(md_tensor *t, md_arena *a, int ndim, const int *shape) {
    memset(t, 0, sizeof *t);
    md_status st = check_shape(ndim, shape);
    if (st) return st;
    size_t n = md_shape_numel(ndim, shape);
    t->data = md_arena_floats(a, n ? n : 1);
    if (!t->data) return MD_ERR_NOMEM;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int));
    return MD_OK;
}

const char *md_shape_str(char *buf, size_t n, int ndim, const int *shape) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %d" : "%d", shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}
