/* det_box.c — detector-specific selection helpers: the per-level top-k of the RPN (torch.topk order for
 * distinct scores) and the float-config-to-double threshold conversion. Box coding, clipping and NMS
 * come from box.h. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "model_internal.h"

typedef struct {
    float s;
    int i;
} pair_t;

static int cmp_desc(const void *pa, const void *pb) {
    const pair_t *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* a strictly before b in cmp_desc's order (a total order: indices are distinct) */
static inline int before(const pair_t *a, const pair_t *b) { return a->s > b->s || (a->s == b->s && a->i < b->i); }

/* Quickselect (Hoare partition, middle pivot): afterwards p[0..k) holds the k first pairs of the order, unsorted.
 * The keys are distinct, so the set is unique and sorting it gives exactly the first k of a full sort. */
static void select_first_k(pair_t *p, int n, int k) {
    int lo = 0, hi = n - 1, t = k - 1;
    while (lo < hi) {
        const pair_t piv = p[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&p[i], &piv)) i++;
            while (before(&piv, &p[j])) j--;
            if (i <= j) {
                pair_t x = p[i];
                p[i] = p[j];
                p[j] = x;
                i++;
                j--;
            }
        }
        if (t <= j) hi = j;
        else if (t >= i) lo = i;
        else break;
    }
}

/* scratch: n pairs (8 bytes each). The first k of a full sort by (score desc, index asc), selected first
 * when k < n (the RPN keeps 150..2000 of up to ~100k anchors per level: no need to sort them all). */
void md_det_topk(const float *scores, int n, int k, int *out, int *scratch) {
    pair_t *p = (pair_t *)(void *)scratch;
    for (int i = 0; i < n; i++) {
        p[i].s = isnan(scores[i]) ? -INFINITY : scores[i];
        p[i].i = i;
    }
    if (k <= 0 || n <= 0) return;
    if (k < n) select_first_k(p, n, k);
    else k = n;
    qsort(p, (size_t)k, sizeof(pair_t), cmp_desc);
    for (int i = 0; i < k; i++) out[i] = p[i].i;
}

double md_cfg_double(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    return strtod(buf, NULL);
}
