/* box_match.c — torchvision's Matcher and BalancedPositiveNegativeSampler (include/minidet/box.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/box.h"

/* The first ground truth of maximum quality for prediction j (quality: m x n, torch's first argmax over
 * dim 0); that quality in *v. */
static inline int best_gt(const float *quality, int m, int n, int j, float *v) {
    int best = 0;
    float b = quality[j];
    for (int i = 1; i < m; i++) {
        float q = quality[(size_t)i * n + j];
        if (q > b) {
            b = q;
            best = i;
        }
    }
    *v = b;
    return best;
}

md_status md_matcher(int *matches, const float *quality, int m, int n, float high, float low,
                     int allow_low_quality_matches) {
    if (m <= 0) return md_set_error(MD_ERR_ARG, "matcher: no ground-truth boxes available for this image");
    if (n <= 0) return md_set_error(MD_ERR_ARG, "matcher: no proposal boxes available for this image");
    if (!(low <= high)) return md_set_error(MD_ERR_ARG, "matcher: low threshold %g > high threshold %g", low, high);
    for (size_t i = 0; i < (size_t)m * n; i++)
        if (isnan(quality[i]))
            return md_set_error(MD_ERR_NUMERIC, "matcher: quality[%zu][%zu] is NaN", i / (size_t)n, i % (size_t)n);
    /* best gt per prediction: first maximum over dim 0 */
    for (int j = 0; j < n; j++) {
        float v;
        int best = best_gt(quality, m, n, j, &v);
        matches[j] = v < low ? MD_MATCH_BELOW_LOW : (v < high ? MD_MATCH_BETWEEN : best);
    }
    if (!allow_low_quality_matches) return MD_OK;
    /* set_low_quality_matches_: for each gt, every prediction reaching that gt's maximum
     * quality (ties included) gets back its own best-gt index (all_matches). */
    for (int i = 0; i < m; i++) {
        const float *row = quality + (size_t)i * n;
        float best = row[0];
        for (int j = 1; j < n; j++)
            if (row[j] > best) best = row[j];
        for (int j = 0; j < n; j++) {
            if (row[j] != best || matches[j] >= 0) continue;
            float v;
            matches[j] = best_gt(quality, m, n, j, &v);
        }
    }
    return MD_OK;
}

/* The double a config value like "0.7" means: the shortest decimal that rounds to the float f,
 * read back as a double (so (int)(10 * 0.7f) gives Python's int(10 * 0.7) = 7, not 6). */
static double float_as_decimal(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

/* Moves a uniformly random k-subset of idx[0..n) to idx[0..k) (partial Fisher-Yates). */
static void pick(md_rng *rng, int *idx, int n, int k) {
    for (int i = 0; i < k; i++) {
        int j = i + (int)md_rng_below(rng, (uint32_t)(n - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

md_status md_sample_pos_neg(uint8_t *pos_mask, uint8_t *neg_mask, const int *labels, int n, int batch_size,
                            float positive_fraction, md_rng *rng, int *work, int *num_pos, int *num_neg) {
    if (n < 0 || batch_size < 0 || !(positive_fraction >= 0 && positive_fraction <= 1) || !rng)
        return md_set_error(MD_ERR_ARG, "sampler: bad arguments (n=%d, batch=%d, fraction=%g)", n, batch_size,
                            positive_fraction);
    int *idx = work;
    if (!idx && n > 0) {
        idx = malloc(sizeof(int) * (size_t)n);
        if (!idx) return md_set_error(MD_ERR_NOMEM, "sampler: out of memory for %d indices", n);
    }
    memset(pos_mask, 0, (size_t)n);
    memset(neg_mask, 0, (size_t)n);
    int np = 0;
    for (int i = 0; i < n; i++)
        if (labels[i] >= 1) idx[np++] = i;
    int want_pos = (int)((double)batch_size * float_as_decimal(positive_fraction));
    int kp = np < want_pos ? np : want_pos;
    pick(rng, idx, np, kp);
    for (int i = 0; i < kp; i++) pos_mask[idx[i]] = 1;
    int nn = 0;
    for (int i = 0; i < n; i++)
        if (labels[i] == 0) idx[nn++] = i;
    int want_neg = batch_size - kp;
    int kn = nn < want_neg ? nn : want_neg;
    pick(rng, idx, nn, kn);
    for (int i = 0; i < kn; i++) neg_mask[idx[i]] = 1;
    if (num_pos) *num_pos = kp;
    if (num_neg) *num_neg = kn;
    if (idx != work) free(idx);
    return MD_OK;
}
