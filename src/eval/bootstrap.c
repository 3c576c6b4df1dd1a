/* bootstrap.c — COCO AP re-accumulated on weighted images, and the resampling (see include/minidet/bootstrap.h). */
#include "minidet/bootstrap.h"
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "minidet/rng.h"

enum { STREAM_BOOTSTRAP = 0x62 }; /* rng stream base of the resamples: stream = base + b */

void md_bootstrap_weights(int I, uint64_t seed, uint64_t b, uint32_t *w) {
    md_rng r = md_rng_make(seed, ((uint64_t)STREAM_BOOTSTRAP << 32) + b);
    memset(w, 0, sizeof(uint32_t) * (size_t)I);
    for (int i = 0; i < I; i++) w[md_rng_below(&r, (uint32_t)I)]++;
}

/* accumulate() of one category at threshold t: prec[0..R). An image of weight w is w copies of it
 * next to each other in id order, so in the score-sorted list each run of equal scores from one
 * image repeats w times as a block (for a run of one detection: w consecutive copies). */
static void accumulate_one(const md_coco_matches *m, int k, int t, const uint32_t *w, double np_, double *rc, double *pr,
                           double *prec) {
    const double eps = 2.220446049250313e-16; /* np.spacing(1), as COCOeval */
    double tp = 0, fp = 0;
    size_t nc = 0;
    uint32_t end = m->cat_start[k + 1];
    for (uint32_t q = m->cat_start[k]; q < end;) {
        uint32_t s0 = m->order[q], run = q + 1;
        while (run < end && m->img[m->order[run]] == m->img[s0] && m->score[m->order[run]] == m->score[s0]) run++;
        uint32_t ww = w ? w[m->img[s0]] : 1;
        for (uint32_t c = 0; c < ww; c++)
            for (uint32_t j = q; j < run; j++) {
                uint8_t code = m->code[(size_t)m->order[j] * MD_COCO_T + t];
                if (code == 1) {
                    tp += 1;
                    rc[nc] = tp / np_;
                    pr[nc] = tp / (fp + tp + eps);
                    nc++;
                } else if (code == 0) {
                    fp += 1;
                }
            }
        q = run;
    }
    for (size_t c = nc; c-- > 1;)
        if (pr[c] > pr[c - 1]) pr[c - 1] = pr[c];
    size_t c = 0;
    for (int ri = 0; ri < MD_COCO_R; ri++) {
        while (c < nc && rc[c] < m->rec_thrs[ri]) c++;
        prec[ri] = c < nc ? pr[c] : 0;
    }
}

md_status md_coco_matches_ap(const md_coco_matches *m, const uint32_t *w, double ap[3]) {
    int K = m->K, I = m->I;
    /* points of a category: its true positives, counted with their weights */
    size_t cap = 1;
    for (int k = 0; k < K; k++) {
        size_t n = 0;
        for (uint32_t q = m->cat_start[k]; q < m->cat_start[k + 1]; q++) n += w ? w[m->img[m->order[q]]] : 1;
        if (n > cap) cap = n;
    }
    double *prec = malloc(sizeof(double) * MD_COCO_T * MD_COCO_R * (size_t)(K ? K : 1));
    double *rc = malloc(sizeof(double) * cap), *pr = malloc(sizeof(double) * cap);
    double *buf = malloc(sizeof(double) * MD_COCO_T * MD_COCO_R * (size_t)(K ? K : 1));
    if (!prec || !rc || !pr || !buf) {
        free(prec);
        free(rc);
        free(pr);
        free(buf);
        return md_set_error(MD_ERR_NOMEM, "bootstrap: out of memory (%d categories)", K);
    }
    /* precision[t][r][k] as COCOeval's (area all, maxDets 100), -1 without ground truth */
    for (int k = 0; k < K; k++) {
        double np_ = 0;
        for (int i = 0; i < I; i++) np_ += (double)m->npig[(size_t)k * I + i] * (w ? w[i] : 1);
        double col[MD_COCO_R];
        for (int t = 0; t < MD_COCO_T; t++) {
            if (np_ == 0) {
                for (int ri = 0; ri < MD_COCO_R; ri++) col[ri] = -1;
            } else {
                accumulate_one(m, k, t, w, np_, rc, pr, col);
            }
            for (int ri = 0; ri < MD_COCO_R; ri++) prec[((size_t)t * MD_COCO_R + ri) * K + k] = col[ri];
        }
    }
    /* summarize(): mean of the values > -1 in numpy's order (t, r, k) */
    for (int which = 0; which < 3; which++) {
        size_t n = 0;
        for (int t = 0; t < MD_COCO_T; t++) {
            if (which == 1 && !(m->iou_thrs[t] == .5)) continue;
            if (which == 2 && !(m->iou_thrs[t] == .75)) continue;
            for (size_t j = (size_t)t * MD_COCO_R * K; j < (size_t)(t + 1) * MD_COCO_R * K; j++)
                if (prec[j] > -1) buf[n++] = prec[j];
        }
        ap[which] = n ? md_eval_np_mean(buf, n) : -1;
    }
    free(prec);
    free(rc);
    free(pr);
    free(buf);
    return MD_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double md_bootstrap_percentile(double *v, size_t n, double q) {
    if (n == 0) return 0;
    qsort(v, n, sizeof(double), cmp_double);
    double pos = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n) return v[n - 1];
    double f = pos - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * f;
}
