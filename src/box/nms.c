/* nms.c — torch-exact descending sort, greedy NMS, DIoU-NMS and batched (per-class) NMS
 * (include/minidet/box.h). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/box.h"

/* ------------------------------------------------------------ torch CPU unstable sort
 * torch 1.13 sorts (value, index) pairs with std::sort and KeyValueCompDesc:
 *   comp(a, b) = (isnan(a) && !isnan(b)) || a > b.
 * What follows is libstdc++'s std::sort (introsort: median-of-three pivot moved to the front,
 * unguarded partition, heap sort past 2*floor(log2 n) levels, threshold 16, final insertion
 * sort) written out on those pairs, so equal scores end up in the same order as in torch. */
typedef struct {
    float k;
    int i;
} kv;

static inline int comp(const kv *a, const kv *b) { return (isnan(a->k) && !isnan(b->k)) || a->k > b->k; }
static inline void kv_swap(kv *a, kv *b) {
    kv t = *a;
    *a = *b;
    *b = t;
}

enum { S_THRESHOLD = 16 };

static void move_median_to_first(kv *result, kv *a, kv *b, kv *c) {
    if (comp(a, b)) {
        if (comp(b, c)) kv_swap(result, b);
        else if (comp(a, c)) kv_swap(result, c);
        else kv_swap(result, a);
    } else if (comp(a, c)) kv_swap(result, a);
    else if (comp(b, c)) kv_swap(result, c);
    else kv_swap(result, b);
}

static kv *unguarded_partition(kv *first, kv *last, kv *pivot) {
    for (;;) {
        while (comp(first, pivot)) ++first;
        --last;
        while (comp(pivot, last)) --last;
        if (!(first < last)) return first;
        kv_swap(first, last);
        ++first;
    }
}

static void push_heap(kv *first, ptrdiff_t hole, ptrdiff_t top, kv value) {
    ptrdiff_t parent = (hole - 1) / 2;
    while (hole > top && comp(first + parent, &value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

static void adjust_heap(kv *first, ptrdiff_t hole, ptrdiff_t len, kv value) {
    const ptrdiff_t top = hole;
    ptrdiff_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (comp(first + child, first + (child - 1))) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, value);
}

static void heap_sort(kv *first, kv *last) {
    ptrdiff_t len = last - first;
    if (len < 2) return;
    for (ptrdiff_t parent = (len - 2) / 2;; parent--) { /* make_heap */
        adjust_heap(first, parent, len, first[parent]);
        if (parent == 0) break;
    }
    while (last - first > 1) { /* sort_heap: pop_heap(first, last - 1, last - 1) */
        --last;
        kv value = *last;
        *last = *first;
        adjust_heap(first, 0, last - first, value);
    }
}

static void introsort_loop(kv *first, kv *last, int depth) {
    while (last - first > S_THRESHOLD) {
        if (depth == 0) {
            heap_sort(first, last); /* std::__partial_sort(first, last, last) */
            return;
        }
        --depth;
        kv *mid = first + (last - first) / 2;
        move_median_to_first(first, first + 1, mid, last - 1);
        kv *cut = unguarded_partition(first + 1, last, first);
        introsort_loop(cut, last, depth);
        last = cut;
    }
}

static void unguarded_linear_insert(kv *last) {
    kv val = *last;
    kv *next = last - 1;
    while (comp(&val, next)) {
        *last = *next;
        last = next;
        --next;
    }
    *last = val;
}

static void insertion_sort(kv *first, kv *last) {
    if (first == last) return;
    for (kv *i = first + 1; i != last; ++i) {
        if (comp(i, first)) {
            kv val = *i;
            memmove(first + 1, first, sizeof(kv) * (size_t)(i - first));
            *first = val;
        } else
            unguarded_linear_insert(i);
    }
}

static void std_sort(kv *first, kv *last) {
    if (first == last) return;
    ptrdiff_t n = last - first;
    int lg = 0;
    while ((n >> (lg + 1)) > 0) lg++;
    introsort_loop(first, last, 2 * lg);
    if (n > S_THRESHOLD) {
        insertion_sort(first, first + S_THRESHOLD);
        for (kv *i = first + S_THRESHOLD; i != last; ++i) unguarded_linear_insert(i);
    } else
        insertion_sort(first, last);
}

/* Sorts p[0..n) (keys + original positions) in place. */
static void sort_kv(kv *p, int n) { std_sort(p, p + n); }

/* Stable descending order (NaN first, ties by position): the order of torchvision 0.14's CPU
 * nms kernel (checked against torch: it is not the unstable scores.sort() order). */
static int cmp_stable_desc(const void *pa, const void *pb) {
    const kv *a = pa, *b = pb;
    if (comp(a, b)) return -1;
    if (comp(b, a)) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* IoU of box i with box j as torchvision's CPU nms computes it: std::max/std::min written as
 * comparisons (no libm call, vectorisable), float arithmetic, areas precomputed. */
static inline float soa_iou(float ix1, float iy1, float ix2, float iy2, float iarea, float jx1, float jy1, float jx2,
                            float jy2, float jarea) {
    const float xx1 = ix1 < jx1 ? jx1 : ix1, yy1 = iy1 < jy1 ? jy1 : iy1;
    const float xx2 = jx2 < ix2 ? jx2 : ix2, yy2 = jy2 < iy2 ? jy2 : iy2;
    const float dw = xx2 - xx1, dh = yy2 - yy1;
    const float w = 0.0f < dw ? dw : 0.0f, h = 0.0f < dh ? dh : 0.0f;
    const float inter = w * h;
    return inter / (iarea + jarea - inter);
}

static void sort_kv_stable(kv *p, int n) { qsort(p, (size_t)n, sizeof(kv), cmp_stable_desc); }

void md_sort_desc_stable(int *order, const float *scores, int n) {
    kv *p = n > 0 ? malloc(sizeof(kv) * (size_t)n) : NULL;
    for (int i = 0; i < n; i++) order[i] = i;
    if (!p) { /* insertion sort fallback (same order) */
        for (int i = 1; i < n; i++) {
            int v = order[i], j = i;
            kv a = {scores[v], v};
            while (j > 0) {
                kv b = {scores[order[j - 1]], order[j - 1]};
                if (cmp_stable_desc(&b, &a) <= 0) break;
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        p[i].k = scores[i];
        p[i].i = i;
    }
    sort_kv_stable(p, n);
    for (int i = 0; i < n; i++) order[i] = p[i].i;
    free(p);
}

void md_sort_desc(int *order, const float *scores, int n) {
    if (n <= 0) return;
    kv *p = malloc(sizeof(kv) * (size_t)n);
    if (!p) { /* fall back to a stable insertion sort rather than fail: only tie order could differ */
        for (int i = 0; i < n; i++) {
            int j = i;
            while (j > 0) {
                kv a = {scores[i], i}, b = {scores[order[j - 1]], order[j - 1]};
                if (!comp(&a, &b)) break;
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        p[i].k = scores[i];
        p[i].i = i;
    }
    sort_kv(p, n);
    for (int i = 0; i < n; i++) order[i] = p[i].i;
    free(p);
}

/* ------------------------------------------------------------ NMS core
 * boxes/scores of n candidates; keep gets kept indices (into 0..n) in processing order, at most max_keep
 * of them (the greedy pass stops there: the first max_keep kept boxes do not depend on later ones).
 *
 * Speed (same decisions as before, bit for bit): the candidates are gathered once in visiting order into
 * structure-of-arrays x1, y1, x2, y2, area, so the inner loop over the remaining boxes streams through
 * memory and is vectorised (omp simd). It runs branch-free over every remaining box, suppressed or not
 * (suppression only ever sets a flag, so scoring an already suppressed box changes nothing). min / max
 * are the kernel's std::max(a, b) = a < b ? b : a and std::min(a, b) = b < a ? b : a written as
 * comparisons (exactly torchvision's choice also for NaN; fmaxf / fminf were calls into libm). The
 * double threshold compare ovr > thresh is done in float against the largest float <= thresh, which is
 * the same decision for every float ovr. */
static float float_below_or_at(double t) {
    float f = (float)t;
    if ((double)f > t) f = nextafterf(f, -INFINITY);
    return f;
}

static md_status nms_core(int *keep, int *n_keep, const float *boxes, const float *scores, int n, double thresh,
                          int diou, double beta, int max_keep) {
    *n_keep = 0;
    if (n <= 0 || max_keep <= 0) return MD_OK;
    kv *p = malloc(sizeof(kv) * (size_t)n);
    float *soa = malloc(sizeof(float) * 5 * (size_t)n);
    int *sup = calloc((size_t)n, sizeof(int));
    if (!p || !soa || !sup) {
        free(p);
        free(soa);
        free(sup);
        return md_set_error(MD_ERR_NOMEM, "nms: out of memory for %d boxes", n);
    }
    for (int i = 0; i < n; i++) {
        p[i].k = scores[i];
        p[i].i = i;
    }
    sort_kv_stable(p, n);
    float *X1 = soa, *Y1 = soa + n, *X2 = soa + 2 * (size_t)n, *Y2 = soa + 3 * (size_t)n, *AR = soa + 4 * (size_t)n;
    for (int a = 0; a < n; a++) {
        const float *b = boxes + 4 * (size_t)p[a].i;
        X1[a] = b[0];
        Y1[a] = b[1];
        X2[a] = b[2];
        Y2[a] = b[3];
        AR[a] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    const float tf = float_below_or_at(thresh);
    int nk = 0;
    for (int a = 0; a < n; a++) {
        if (sup[a]) continue;
        keep[nk++] = p[a].i;
        if (nk == max_keep) break;
        const float ix1 = X1[a], iy1 = Y1[a], ix2 = X2[a], iy2 = Y2[a], iarea = AR[a];
        if (!diou) {
#pragma omp simd
            for (int b = a + 1; b < n; b++) {
                const float ovr = soa_iou(ix1, iy1, ix2, iy2, iarea, X1[b], Y1[b], X2[b], Y2[b], AR[b]);
                sup[b] |= ovr > tf;
            }
        } else {
            for (int b = a + 1; b < n; b++) {
                if (sup[b]) continue;
                const float ovr = soa_iou(ix1, iy1, ix2, iy2, iarea, X1[b], Y1[b], X2[b], Y2[b], AR[b]);
                /* DIoU-NMS: IoU - (rho^2 / c^2)^beta >= thresh, penalty in double */
                const double cxi = ((double)ix1 + ix2) / 2, cyi = ((double)iy1 + iy2) / 2;
                const double cxj = ((double)X1[b] + X2[b]) / 2, cyj = ((double)Y1[b] + Y2[b]) / 2;
                const double rho2 = (cxi - cxj) * (cxi - cxj) + (cyi - cyj) * (cyi - cyj);
                const double cw = fmax(ix2, X2[b]) - fmin(ix1, X1[b]), ch = fmax(iy2, Y2[b]) - fmin(iy1, Y1[b]);
                const double c2 = cw * cw + ch * ch;
                const double pen = c2 > 0 ? pow(rho2 / c2, beta) : 0.0;
                const double iou = isnan(ovr) ? 0.0 : (double)ovr;
                if (iou - pen >= thresh) sup[b] = 1;
            }
        }
    }
    *n_keep = nk;
    free(p);
    free(soa);
    free(sup);
    return MD_OK;
}

static md_status check_nms_args(const char *fn, const int *keep, const int *n_keep, const float *boxes,
                                const float *scores, int n) {
    if (!n_keep || n < 0 || (n > 0 && (!keep || !boxes || !scores)))
        return md_set_error(MD_ERR_ARG, "%s: bad arguments (n=%d)", fn, n);
    return MD_OK;
}

md_status md_nms(int *keep, int *n_keep, const float *boxes, const float *scores, int n, double thresh) {
    md_status st = check_nms_args("nms", keep, n_keep, boxes, scores, n);
    if (st) return st;
    return nms_core(keep, n_keep, boxes, scores, n, thresh, 0, 0.0, n);
}

md_status md_diou_nms(int *keep, int *n_keep, const float *boxes, const float *scores, int n, double thresh,
                      double beta) {
    md_status st = check_nms_args("diou_nms", keep, n_keep, boxes, scores, n);
    if (st) return st;
    return nms_core(keep, n_keep, boxes, scores, n, thresh, 1, beta, n);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

md_status md_batched_nms(int *keep, int *n_keep, const float *boxes, const float *scores, const int *idxs, int n,
                         double thresh, int diou, double beta) {
    return md_batched_nms_topk(keep, n_keep, boxes, scores, idxs, n, thresh, diou, beta, n);
}

md_status md_batched_nms_topk(int *keep, int *n_keep, const float *boxes, const float *scores, const int *idxs, int n,
                              double thresh, int diou, double beta, int max_keep) {
    md_status st = check_nms_args("batched_nms", keep, n_keep, boxes, scores, n);
    if (st) return st;
    if (n > 0 && !idxs) return md_set_error(MD_ERR_ARG, "batched_nms: idxs is NULL");
    *n_keep = 0;
    if (n == 0) return MD_OK;
    if (!diou && 4 * (long)n <= 4000) {
        /* torchvision _batched_nms_coordinate_trick: offset boxes by idx * (max coordinate + 1) */
        float *shifted = malloc(sizeof(float) * 4 * (size_t)n);
        if (!shifted) return md_set_error(MD_ERR_NOMEM, "batched_nms: out of memory for %d boxes", n);
        float mx = boxes[0];
        for (size_t i = 1; i < 4 * (size_t)n && !isnan(mx); i++) /* torch max(): NaN wins */
            if (isnan(boxes[i]) || boxes[i] > mx) mx = boxes[i];
        const float step = mx + 1.0f;
        for (int i = 0; i < n; i++) {
            const float off = (float)idxs[i] * step;
            for (int k = 0; k < 4; k++) shifted[4 * (size_t)i + k] = boxes[4 * (size_t)i + k] + off;
        }
        st = nms_core(keep, n_keep, shifted, scores, n, thresh, 0, 0.0, max_keep); /* keep is in score order: stop early */
        free(shifted);
        return st;
    }
    /* torchvision _batched_nms_vanilla: NMS per class (classes ascending), then the kept
     * indices (ascending) sorted by score with the unstable descending sort. */
    int *cls = malloc(sizeof(int) * (size_t)n);
    int *sub = malloc(sizeof(int) * (size_t)n);
    int *subkeep = malloc(sizeof(int) * (size_t)n);
    float *sb = malloc(sizeof(float) * 4 * (size_t)n);
    float *ss = malloc(sizeof(float) * (size_t)n);
    unsigned char *mask = calloc((size_t)n, 1);
    kv *p = malloc(sizeof(kv) * (size_t)n);
    if (!cls || !sub || !subkeep || !sb || !ss || !mask || !p) {
        st = md_set_error(MD_ERR_NOMEM, "batched_nms: out of memory for %d boxes", n);
        goto done;
    }
    memcpy(cls, idxs, sizeof(int) * (size_t)n);
    qsort(cls, (size_t)n, sizeof(int), cmp_int);
    for (int u = 0; u < n; u++) {
        if (u > 0 && cls[u] == cls[u - 1]) continue;
        const int c = cls[u];
        int m = 0;
        for (int i = 0; i < n; i++)
            if (idxs[i] == c) {
                sub[m] = i;
                memcpy(sb + 4 * (size_t)m, boxes + 4 * (size_t)i, 4 * sizeof(float));
                ss[m] = scores[i];
                m++;
            }
        int mk = 0;
        st = nms_core(subkeep, &mk, sb, ss, m, thresh, diou, beta, m); /* complete: the merge re-sorts all kept */
        if (st) goto done;
        for (int t = 0; t < mk; t++) mask[sub[subkeep[t]]] = 1;
    }
    int nk = 0;
    for (int i = 0; i < n; i++)
        if (mask[i]) {
            p[nk].k = scores[i];
            p[nk].i = i;
            nk++;
        }
    sort_kv(p, nk);
    if (nk > max_keep) nk = max_keep < 0 ? 0 : max_keep;
    for (int t = 0; t < nk; t++) keep[t] = p[t].i;
    *n_keep = nk;
done:
    free(cls);
    free(sub);
    free(subkeep);
    free(sb);
    free(ss);
    free(mask);
    free(p);
    return st;
}
