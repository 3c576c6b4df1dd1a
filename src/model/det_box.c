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

/* scratch: n pairs (8 bytes each) */
void md_det_topk(const float *scores, int n, int k, int *out, int *scratch) {
    pair_t *p = (pair_t *)(void *)scratch;
    for (int i = 0; i < n; i++) {
        p[i].s = isnan(scores[i]) ? -INFINITY : scores[i];
        p[i].i = i;
    }
    qsort(p, (size_t)n, sizeof(pair_t), cmp_desc);
    for (int i = 0; i < k && i < n; i++) out[i] = p[i].i;
}

double md_cfg_double(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    return strtod(buf, NULL);
}
