/* test_bootstrap.c — AP re-accumulated from one matching on weighted images.
 *
 * 1. With every image once, md_coco_matches_ap gives md_cocoeval_run's AP, AP50
 *    and AP75 bit for bit (the cocoeval fixtures: pycocotools' own numbers).
 * 2. With multiplicities w, it gives what md_cocoeval_run computes on a ground
 *    truth and results where image i is really copied w[i] times (new ids,
 *    boxes matched again), bit for bit: the resample needs no second matching.
 * 3. The paired bootstrap: identical runs differ by exactly 0 on every
 *    resample; boxes shifted by 3 px against exact ones give an interval
 *    entirely below 0; the same seed gives the same resamples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/bootstrap.h"
#include "minidet/cocoeval.h"
#include "testutil.h"

#define FIX "tests/fixtures/cocoeval"

static void test_unweighted_equals_cocoeval(void) {
    const char *cases[] = {"basic", "crowd", "area", "maxdets", "ties", "large", "val2014-100"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char gp[256], dp[256];
        snprintf(gp, sizeof gp, FIX "/%s/gt.json", cases[c]);
        snprintf(dp, sizeof dp, FIX "/%s/dets.json", cases[c]);
        md_coco_gt *gt = NULL;
        md_coco_dets *dt = NULL;
        CHECK_OK(md_coco_load_pair(gp, dp, &gt, &dt));
        if (!gt || !dt) continue;
        md_cocoeval_result r;
        md_coco_matches m;
        CHECK_OK(md_cocoeval_run_matches(gt, dt, &r, &m));
        double ap[3];
        CHECK_OK(md_coco_matches_ap(&m, NULL, ap));
        for (int i = 0; i < 3; i++)
            CHECK(ap[i] == r.stats[i], "%s: stat %d re-accumulated %.17g, cocoeval %.17g", cases[c], i, ap[i], r.stats[i]);
        md_coco_matches_free(&m);
        md_cocoeval_result_free(&r);
        md_coco_dets_free(dt);
        md_coco_gt_free(gt);
    }
}

/* Writes gt with image i copied w[i] times (copy c of image id x gets id x * 64 + c, so copies
 * sit next to each other in id order) and loads it with the detections copied alike. */
static int copy_dataset(const md_coco_gt *gt, const md_coco_dets *dt, const uint32_t *w, const char *path, md_coco_gt **g2,
                        md_coco_dets **d2) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"images\": [");
    int first = 1;
    for (int i = 0; i < gt->n_img; i++)
        for (uint32_t c = 0; c < w[i]; c++) {
            fprintf(f, "%s{\"id\": %lld}", first ? "" : ", ", (long long)(gt->img_ids[i] * 64 + c));
            first = 0;
        }
    fprintf(f, "], \"categories\": [");
    for (int k = 0; k < gt->n_cat; k++) fprintf(f, "%s{\"id\": %lld}", k ? ", " : "", (long long)gt->cat_ids[k]);
    fprintf(f, "], \"annotations\": [");
    long id = 1;
    first = 1;
    for (int a = 0; a < gt->n_ann; a++)
        for (uint32_t c = 0; c < w[gt->ann_img[a]]; c++) {
            const double *b = gt->ann_bbox + 4 * (size_t)a;
            fprintf(f, "%s{\"id\": %ld, \"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%.17g, %.17g, %.17g, %.17g], "
                       "\"area\": %.17g, \"iscrowd\": %d}",
                    first ? "" : ", ", id++, (long long)(gt->img_ids[gt->ann_img[a]] * 64 + c), (long long)gt->cat_ids[gt->ann_cat[a]],
                    b[0], b[1], b[2], b[3], gt->ann_area[a], gt->ann_crowd[a]);
            first = 0;
        }
    fprintf(f, "]}\n");
    fclose(f);
    if (md_coco_gt_load(path, g2) != MD_OK || md_coco_dets_create(*g2, d2) != MD_OK) return -1;
    for (size_t j = 0; j < dt->n; j++)
        for (uint32_t c = 0; c < w[dt->img[j]]; c++) {
            int64_t img = gt->img_ids[dt->img[j]] * 64 + c, cat = gt->cat_ids[dt->cat[j]];
            if (md_coco_dets_add(*d2, 1, &img, &cat, dt->bbox + 4 * j, dt->score + j) != MD_OK) return -1;
        }
    return 0;
}

static void test_weighted_equals_copies(void) {
    const char *cases[] = {"basic", "crowd", "val2014-100"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char gp[256], dp[256];
        snprintf(gp, sizeof gp, FIX "/%s/gt.json", cases[c]);
        snprintf(dp, sizeof dp, FIX "/%s/dets.json", cases[c]);
        md_coco_gt *gt = NULL, *g2 = NULL;
        md_coco_dets *dt = NULL, *d2 = NULL;
        CHECK_OK(md_coco_load_pair(gp, dp, &gt, &dt));
        if (!gt || !dt) continue;
        md_cocoeval_result r, r2;
        md_coco_matches m;
        CHECK_OK(md_cocoeval_run_matches(gt, dt, &r, &m));
        uint32_t *w = malloc(sizeof(uint32_t) * gt->n_img);
        for (uint64_t b = 0; b < 3; b++) {
            md_bootstrap_weights(gt->n_img, 7, b, w);
            long tot = 0, maxw = 0;
            for (int i = 0; i < gt->n_img; i++) {
                tot += w[i];
                if (w[i] > (uint32_t)maxw) maxw = w[i];
            }
            CHECK(tot == gt->n_img && maxw < 64, "%s: resample has %ld images, max multiplicity %ld", cases[c], tot, maxw);
            CHECK(copy_dataset(gt, dt, w, "build/test_bootstrap_gt.json", &g2, &d2) == 0, "copy: %s", md_last_error());
            double ap[3];
            CHECK_OK(md_coco_matches_ap(&m, w, ap));
            if (g2 && d2 && md_cocoeval_run(g2, d2, &r2) == MD_OK) {
                for (int i = 0; i < 3; i++)
                    CHECK(ap[i] == r2.stats[i], "%s resample %d: stat %d weighted %.17g, copied images %.17g", cases[c],
                          (int)b, i, ap[i], r2.stats[i]);
                CHECK(fabs(ap[0] - r.stats[0]) > 1e-6, "%s resample %d: AP did not move (%.9g)", cases[c], (int)b, ap[0]);
                md_cocoeval_result_free(&r2);
            }
            md_coco_dets_free(d2);
            md_coco_gt_free(g2);
            d2 = NULL;
            g2 = NULL;
        }
        remove("build/test_bootstrap_gt.json");
        free(w);
        md_coco_matches_free(&m);
        md_cocoeval_result_free(&r);
        md_coco_dets_free(dt);
        md_coco_gt_free(gt);
    }
}

/* Detections = the val2014-100 ground truth boxes (scores from the box index), optionally shifted. */
static md_coco_dets *gt_boxes(const md_coco_gt *gt, double shift) {
    md_coco_dets *d = NULL;
    if (md_coco_dets_create(gt, &d) != MD_OK) return NULL;
    for (int a = 0; a < gt->n_ann; a++) {
        if (gt->ann_crowd[a]) continue;
        double b[4], s = 0.3 + 0.6 * (double)((a * 37) % 101) / 101.0;
        memcpy(b, gt->ann_bbox + 4 * (size_t)a, sizeof b);
        b[0] += shift;
        b[1] += shift;
        int64_t img = gt->img_ids[gt->ann_img[a]], cat = gt->cat_ids[gt->ann_cat[a]];
        if (md_coco_dets_add(d, 1, &img, &cat, b, &s) != MD_OK) {
            md_coco_dets_free(d);
            return NULL;
        }
    }
    return d;
}

/* The AP difference of run a minus run b on B resamples: point estimate, 95 % interval. */
static void delta(const md_coco_matches *a, const md_coco_matches *b, int I, int B, uint64_t seed, double *point, double *lo,
                  double *hi, int *all_zero) {
    double pa[3], pb[3];
    md_coco_matches_ap(a, NULL, pa);
    md_coco_matches_ap(b, NULL, pb);
    *point = pa[0] - pb[0];
    double *d = malloc(sizeof(double) * B);
    uint32_t *w = malloc(sizeof(uint32_t) * I);
    *all_zero = 1;
    for (int r = 0; r < B; r++) {
        md_bootstrap_weights(I, seed, (uint64_t)r, w);
        md_coco_matches_ap(a, w, pa);
        md_coco_matches_ap(b, w, pb);
        d[r] = pa[0] - pb[0];
        if (d[r] != 0) *all_zero = 0;
    }
    *lo = md_bootstrap_percentile(d, B, 2.5);
    *hi = md_bootstrap_percentile(d, B, 97.5);
    free(d);
    free(w);
}

static void test_paired_intervals(void) {
    md_coco_gt *gt = NULL;
    CHECK_OK(md_coco_gt_load(FIX "/val2014-100/gt.json", &gt));
    if (!gt) return;
    md_coco_dets *exact = gt_boxes(gt, 0), *shifted = gt_boxes(gt, 3), *same = gt_boxes(gt, 0);
    CHECK(exact && shifted && same, "detections: %s", md_last_error());
    md_cocoeval_result r1, r2, r3;
    md_coco_matches m1, m2, m3;
    CHECK_OK(md_cocoeval_run_matches(gt, exact, &r1, &m1));
    CHECK_OK(md_cocoeval_run_matches(gt, shifted, &r2, &m2));
    CHECK_OK(md_cocoeval_run_matches(gt, same, &r3, &m3));
    int I = gt->n_img, B = 300, z;
    double p, lo, hi, lo2, hi2;
    delta(&m3, &m1, I, B, 1, &p, &lo, &hi, &z);
    CHECK(z && p == 0 && lo == 0 && hi == 0, "identical runs: %g [%g, %g], all zero %d", p, lo, hi, z);
    delta(&m2, &m1, I, B, 1, &p, &lo, &hi, &z);
    CHECK(p == r2.stats[0] - r1.stats[0], "point estimate %.17g != eval AP difference %.17g", p, r2.stats[0] - r1.stats[0]);
    CHECK(hi < 0 && lo <= p && p <= hi, "shifted by 3 px: %.4f [%.4f, %.4f] is not below 0 around the point", p, lo, hi);
    printf("  shifted 3 px - exact: AP %+.4f [%+.4f, %+.4f] over %d resamples\n", p, lo, hi, B);
    delta(&m2, &m1, I, B, 1, &p, &lo2, &hi2, &z);
    CHECK(lo2 == lo && hi2 == hi, "same seed, other interval: [%g, %g] vs [%g, %g]", lo2, hi2, lo, hi);
    delta(&m2, &m1, I, B, 2, &p, &lo2, &hi2, &z);
    CHECK(lo2 != lo || hi2 != hi, "another seed gives the very same interval");
    md_coco_matches_free(&m1);
    md_coco_matches_free(&m2);
    md_coco_matches_free(&m3);
    md_cocoeval_result_free(&r1);
    md_cocoeval_result_free(&r2);
    md_cocoeval_result_free(&r3);
    md_coco_dets_free(exact);
    md_coco_dets_free(shifted);
    md_coco_dets_free(same);
    md_coco_gt_free(gt);
}

static void test_percentile(void) {
    double v[5] = {5, 1, 4, 2, 3};
    CHECK_NEAR(md_bootstrap_percentile(v, 5, 2.5), 1.1, 1e-12); /* numpy.percentile([1..5], 2.5) */
    CHECK_NEAR(md_bootstrap_percentile(v, 5, 97.5), 4.9, 1e-12);
    CHECK_NEAR(md_bootstrap_percentile(v, 5, 50), 3, 0);
}

int main(void) {
    MD_RUN(test_percentile);
    MD_RUN(test_unweighted_equals_cocoeval);
    MD_RUN(test_weighted_equals_copies);
    MD_RUN(test_paired_intervals);
    return md_test_summary();
}
