/* eval_util.h — helpers shared by the files of src/eval (not a public API). */
#ifndef MINIDET_EVAL_UTIL_H
#define MINIDET_EVAL_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/error.h"

/* Shortest of %.15g / %.16g / %.17g that reads back as the same double. */
int md_eval_fmt_double(char *s, size_t cap, double v);

/* Stable sort of idx[0..n) by key descending (ties keep their order), as
 * numpy.argsort(-key, kind='mergesort'). tmp must hold n entries. */
void md_eval_sort_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *key);

/* pycocotools' maskUtils.iou for boxes (maskApi.c bbIou) between detections dsel[0..D) of dbb
 * and ground truth gsel[0..G) of gbb (x, y, w, h rows): o[d * G + g]; where crowd[gsel[g]] is
 * set, intersection / detection area (crowd may be NULL: no crowd). */
void md_eval_box_ious(const double *dbb, const uint32_t *dsel, int D, const double *gbb, const uint32_t *gsel,
                      const uint8_t *crowd, int G, double *o);

/* Index of v in the ascending ids a[0..n), -1 when absent (binary search). */
int md_eval_find_id(const int64_t *a, int n, int64_t v);

/* Grows k parallel arrays (*arr[i], elements of elem[i] bytes) to hold at least need elements: the
 * capacity starts at first and doubles. 0 on success; -1 when out of memory (the arrays that did
 * grow keep their new blocks, *cap stays as it was). */
int md_eval_grow(void **const arr[], const size_t elem[], int k, size_t *cap, size_t need, size_t first);

/* numpy.mean of a contiguous float64 array, summed as numpy sums it (pairwise in blocks of 8,
 * over buffers of 8192), so means equal numpy's bit for bit. */
double md_eval_np_mean(const double *v, size_t n);

#endif
