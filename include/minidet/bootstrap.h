/* bootstrap.h — is an AP difference between two detectors real? Paired bootstrap over images.
 *
 * Two losses trained on the same data differ by an AP point or two, and so do
 * two seeds of one loss. The val images are a sample: resampling them with
 * replacement and recomputing every run's AP on the same resample gives the
 * spread of the difference that the choice of images alone causes. Each run
 * is matched once (md_cocoeval_run_matches); a resample only re-accumulates
 * with image multiplicities, exactly as COCOeval would score a val set that
 * holds image i w[i] times (copies of an image get ids right after its own).
 *
 * Usage:
 *   md_coco_matches m[n];   ... md_cocoeval_run_matches(gt, dets[i], &r, &m[i]) ...
 *   double ap[3];
 *   md_coco_matches_ap(&m[i], NULL, ap);               // = r.stats[0], [1], [2] exactly
 *   uint32_t *w = malloc(sizeof(uint32_t) * I);
 *   md_bootstrap_weights(I, seed, b, w);               // resample b (any order, any thread)
 *   md_coco_matches_ap(&m[i], w, ap);                  // AP, AP50, AP75 on resample b
 *   md_bootstrap_percentile(delta, B, 2.5)             // interval ends of a B-vector
 */
#ifndef MINIDET_BOOTSTRAP_H
#define MINIDET_BOOTSTRAP_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/cocoeval.h"
#include "minidet/error.h"

/* Image multiplicities of resample b: I draws of an image index uniformly with replacement,
 * w[i] = how often image i was drawn. A pure function of (seed, b). */
void md_bootstrap_weights(int I, uint64_t seed, uint64_t b, uint32_t *w);

/* COCO AP, AP50, AP75 (fractions; -1 where no category has ground truth) of one run's matches
 * on the images weighted by w[I] (NULL: every image once, which gives md_cocoeval_run's
 * stats[0..2] bit for bit). Returns MD_ERR_NOMEM on allocation failure. */
md_status md_coco_matches_ap(const md_coco_matches *m, const uint32_t *w, double ap[3]);

/* numpy.percentile(v[0..n), q) with linear interpolation (v is sorted in place). */
double md_bootstrap_percentile(double *v, size_t n, double q);

#endif
