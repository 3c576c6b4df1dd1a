/* eval_util.c — number formatting, the stable sort and box IoU of src/eval (see eval_util.h). */
#include "eval_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int md_eval_fmt_double(char *s, size_t cap, double v) {
    for (int prec = 15; prec < 17; prec++) {
        int n = snprintf(s, cap, "%.*g", prec, v);
        if (strtod(s, NULL) == v) return n;
    }
    return snprintf(s, cap, "%.17g", v);
}

/* Stable: an element of the right run goes first only if its key is strictly greater. */
static void merge_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *key) {
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t v = idx[i];
            double kv = key[v];
            size_t j = i;
            while (j > 0 && key[idx[j - 1]] < kv) { idx[j] = idx[j - 1]; j--; }
            idx[j] = v;
        }
        return;
    }
    size_t h = n / 2;
    merge_desc(idx, tmp, h, key);
    merge_desc(idx + h, tmp, n - h, key);
    if (!(key[idx[h]] > key[idx[h - 1]])) return; /* already in order */
    memcpy(tmp, idx, h * sizeof *idx);
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        if (key[idx[j]] > key[tmp[i]]) idx[o++] = idx[j++];
        else idx[o++] = tmp[i++];
    }
    while (i < h) idx[o++] = tmp[i++];
}

void md_eval_sort_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *key) {
    if (n > 1) merge_desc(idx, tmp, n, key);
}

void md_eval_box_ious(const double *dbb, const uint32_t *dsel, int D, const double *gbb, const uint32_t *gsel,
                      const uint8_t *crowd, int G, double *o) {
    for (int g = 0; g < G; g++) {
        const double *gb = gbb + 4 * (size_t)gsel[g];
        double ga = gb[2] * gb[3];
        int cr = crowd && crowd[gsel[g]];
        for (int d = 0; d < D; d++) {
            const double *db = dbb + 4 * (size_t)dsel[d];
            double da = db[2] * db[3];
            o[(size_t)d * G + g] = 0;
            double w = fmin(db[2] + db[0], gb[2] + gb[0]) - fmax(db[0], gb[0]);
            if (w <= 0) continue;
            double h = fmin(db[3] + db[1], gb[3] + gb[1]) - fmax(db[1], gb[1]);
            if (h <= 0) continue;
            double i = w * h, u = cr ? da : da + ga - i;
            o[(size_t)d * G + g] = i / u;
        }
    }
}

/* numpy's pairwise summation (pairwise_sum_DOUBLE, blocks of 8, PW_BLOCKSIZE 128). */
static double pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r8[8];
        for (int j = 0; j < 8; j++) r8[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r8[j] += a[i + j];
        double res = ((r8[0] + r8[1]) + (r8[2] + r8[3])) + ((r8[4] + r8[5]) + (r8[6] + r8[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

double md_eval_np_mean(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i += 8192) s += pairwise_sum(v + i, n - i < 8192 ? n - i : 8192);
    return s / (double)n;
}

int md_eval_find_id(const int64_t *a, int n, int64_t v) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1;
        else if (a[mid] > v) hi = mid - 1;
        else return mid;
    }
    return -1;
}

int md_eval_grow(void **const arr[], const size_t elem[], int k, size_t *cap, size_t need, size_t first) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : first;
    while (c < need) c *= 2;
    int ok = 1;
    for (int i = 0; i < k; i++) {
        void *p = realloc(*arr[i], c * elem[i]);
        if (p) *arr[i] = p;
        else ok = 0;
    }
    if (!ok) return -1;
    *cap = c;
    return 0;
}
