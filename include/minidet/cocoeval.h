/* cocoeval.h — COCO bounding-box evaluation, pycocotools 2.0-exact.
 *
 * Every mAP number minidet reports comes from here. The evaluator reproduces
 * pycocotools' COCOeval (iouType 'bbox', default Params) in every detail, so
 * its 12 stats equal pycocotools' to the last bits that matter:
 *   - 10 IoU thresholds .50:.05:.95 and 101 recall points built exactly as
 *     numpy.linspace builds them; maxDets 1/10/100; area ranges all, small
 *     [0,32²], medium [32²,96²], large [96²,1e5²] (both ends inclusive) on the
 *     ground truth's `area` field and on w·h for detections (as COCO.loadRes);
 *   - crowd ground truth: IoU = intersection / detection area, may match many
 *     detections, always ignored (`ignore` = `iscrowd`, as _prepare() sets it);
 *   - per image and category: detections sorted by score with a stable sort
 *     (numpy mergesort on -score, file order for ties), truncated to 100,
 *     ground truth with ignored boxes last, greedy matching per threshold;
 *   - accumulate: per category, detections of all images (in ascending image id
 *     order, each truncated to maxDet) stably sorted by score, precision
 *     envelope, recall points by searchsorted(side='left'), -1 where a
 *     category has no (non-ignored) ground truth; means as numpy computes them
 *     (pairwise summation in blocks of 8192 over the values > -1).
 *   - pycocotools' quirks are kept: a detection matched to a ground truth
 *     whose annotation id is 0 counts as unmatched (dtMatches stores the id);
 *     a GT "ignore" field is overwritten by iscrowd.
 * Stricter than pycocotools where it would crash or silently drop data: an
 * empty results list, unknown image/category ids (results and GT), duplicate
 * image/category/annotation ids and a missing GT `area` are errors.
 * Work is spread over all OpenMP threads (images × categories in evaluate,
 * categories in accumulate).
 *
 * Usage:
 *   md_coco_gt *gt;  md_coco_dets *dt;  md_cocoeval_result r;
 *   md_coco_gt_load("instances_val2017.json", &gt);
 *   md_coco_dets_load(gt, "results.json", &dt);        // or md_coco_dets_create + _add,
 *                                                       // or md_coco_load_pair for both files
 *   md_cocoeval_run(gt, dt, &r);
 *   md_cocoeval_print_summary(&r, stdout);              // pycocotools' 12 lines
 *   ... r.stats[0] is AP, r.per_category_ap[k] the AP of r.cat_ids[k] ...
 *   md_cocoeval_result_free(&r); md_coco_dets_free(dt); md_coco_gt_free(gt);
 */
#ifndef MINIDET_COCOEVAL_H
#define MINIDET_COCOEVAL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "minidet/error.h"

/* Ground truth: the images, categories and annotations of a COCO instances
 * file. Images and categories are sorted by id (pycocotools evaluates them in
 * that order); annotations keep file order. */
typedef struct {
    char *path;            /* file it came from (for messages), or "ground truth" */
    int n_img;
    int64_t *img_ids;      /* [n_img] ascending */
    int32_t *img_file_order; /* [n_img] index into img_ids of the file's i-th image */
    int n_cat;
    int64_t *cat_ids;      /* [n_cat] ascending */
    char **cat_names;      /* [n_cat] (empty string where the file has no name) */
    int n_ann;
    int64_t *ann_ids;      /* [n_ann] annotation "id" */
    int32_t *ann_img;      /* [n_ann] index into img_ids */
    int32_t *ann_cat;      /* [n_ann] index into cat_ids */
    double *ann_bbox;      /* [n_ann][4] x, y, w, h */
    double *ann_area;      /* [n_ann] the "area" field */
    uint8_t *ann_crowd;    /* [n_ann] iscrowd != 0 (missing = 0) */
} md_coco_gt;

/* Detections (a COCO results list) resolved against one ground truth. */
typedef struct {
    const md_coco_gt *gt;
    size_t n, cap;
    int32_t *img;          /* [n] index into gt->img_ids */
    int32_t *cat;          /* [n] index into gt->cat_ids */
    double *bbox;          /* [n][4] x, y, w, h */
    double *score;         /* [n] */
} md_coco_dets;

/* Reads a COCO instances JSON file (images, categories, annotations; other
 * keys and fields such as segmentation are ignored). Errors name the file, the
 * object and the field: malformed JSON (with the byte offset), no images or no
 * categories, duplicate ids, annotations whose image or category is unknown,
 * missing or non-numeric id / image_id / category_id / bbox / area. */
md_status md_coco_gt_load(const char *path, md_coco_gt **out);
void md_coco_gt_free(md_coco_gt *gt);
/* Index of an image / category id, or -1. */
int md_coco_gt_img_index(const md_coco_gt *gt, int64_t img_id);
int md_coco_gt_cat_index(const md_coco_gt *gt, int64_t cat_id);

/* An empty detection list for gt (gt must outlive it). */
md_status md_coco_dets_create(const md_coco_gt *gt, md_coco_dets **out);
void md_coco_dets_free(md_coco_dets *d);
/* Appends n detections given by COCO ids, boxes [n][4] (x, y, w, h) and
 * scores. An image or category id not in the ground truth, or a non-finite
 * box or score, is an error naming the detection (nothing is appended then). */
md_status md_coco_dets_add(md_coco_dets *d, size_t n, const int64_t *img_ids, const int64_t *cat_ids,
                           const double *xywh, const double *scores);
/* Reads a results file like COCO.loadRes: a JSON list of
 * {"image_id", "category_id", "bbox": [x, y, w, h], "score"} (other fields are
 * ignored). Malformed JSON (byte offset), an empty list, a malformed entry, an
 * unknown image or category id are errors naming the file, entry and field. */
md_status md_coco_dets_load(const md_coco_gt *gt, const char *path, md_coco_dets **out);
/* Loads a ground truth and a results file at the same time (two threads), then
 * resolves the detections against it: same result and errors as md_coco_gt_load +
 * md_coco_dets_load (the ground truth's error first when both files are bad). */
md_status md_coco_load_pair(const char *gt_path, const char *res_path, md_coco_gt **gt, md_coco_dets **dets);
/* Writes the detections as a COCO results list (atomically: temp file + rename). */
md_status md_coco_dets_save(const md_coco_dets *d, const char *path);

/* Parameter dimensions (pycocotools' defaults). */
enum { MD_COCO_T = 10, MD_COCO_R = 101, MD_COCO_A = 4, MD_COCO_M = 3 };

typedef struct {
    int T, R, K, A, M;
    double iou_thrs[MD_COCO_T];    /* .50 .. .95 (numpy.linspace values) */
    double rec_thrs[MD_COCO_R];    /* 0 .. 1 step .01 */
    int max_dets[MD_COCO_M];       /* 1, 10, 100 */
    double area_rng[MD_COCO_A][2]; /* all, small, medium, large */
    const char *area_lbl[MD_COCO_A];
    int64_t *cat_ids;              /* [K] */
    /* pycocotools' eval['precision'] / ['recall'] / ['scores'], C order like numpy:
     * precision[T][R][K][A][M], recall[T][K][A][M], scores[T][R][K][A][M]; -1 where
     * a category has no ground truth in that setting. Use the index helpers below. */
    double *precision;
    double *recall;
    double *scores;
    double stats[12];              /* COCOeval.stats after summarize() */
    double *per_category_ap;       /* [K]: mean of precision[:, :, k, area all, maxDets 100] > -1, else -1 */
} md_cocoeval_result;

static inline size_t md_coco_pidx(const md_cocoeval_result *r, int t, int ri, int k, int a, int m) {
    return ((((size_t)t * r->R + ri) * r->K + k) * r->A + a) * r->M + m;
}
static inline size_t md_coco_ridx(const md_cocoeval_result *r, int t, int k, int a, int m) {
    return (((size_t)t * r->K + k) * r->A + a) * r->M + m;
}

/* evaluate() + accumulate() + summarize() (without printing). dets may be
 * empty (every AP is then 0 where there is ground truth). On error r is left
 * empty (safe to free). */
md_status md_cocoeval_run(const md_coco_gt *gt, const md_coco_dets *dets, md_cocoeval_result *r);
void md_cocoeval_result_free(md_cocoeval_result *r);

/* What accumulate() needs from evaluate() to recompute AP, AP50 and AP75 (area all, maxDets
 * 100) on any multiset of the images without matching again (bootstrap.h): each evaluated
 * detection's image, score and outcome at each IoU threshold, and the ground truth counts. */
typedef struct {
    int I, K;                      /* images, categories of the ground truth */
    double iou_thrs[MD_COCO_T];
    double rec_thrs[MD_COCO_R];
    size_t n;                      /* evaluated detections (at most 100 per image and category) */
    int32_t *img;                  /* [n] image index */
    double *score;                 /* [n] */
    uint8_t *code;                 /* [n][MD_COCO_T] 0 false positive, 1 true positive, 2 ignored */
    uint32_t *cat_start;           /* [K + 1] category k's detections: order[cat_start[k] .. cat_start[k + 1]) */
    uint32_t *order;               /* [n] per category in accumulate's order: score descending, stable
                                    * over images in id order and rank within an image */
    uint32_t *npig;                /* [K][I] non-crowd ground truth of category k in image i */
} md_coco_matches;

/* md_cocoeval_run that also returns the matches (m may be NULL: same as md_cocoeval_run). */
md_status md_cocoeval_run_matches(const md_coco_gt *gt, const md_coco_dets *dets, md_cocoeval_result *r, md_coco_matches *m);
void md_coco_matches_free(md_coco_matches *m);

/* Line i (0..11) of pycocotools' summarize() output, without the newline,
 * e.g. " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.321".
 * Returns the length (as snprintf). */
int md_cocoeval_summary_line(const md_cocoeval_result *r, int i, char *buf, size_t cap);
/* The 12 lines, each ending in '\n', exactly as pycocotools prints them. */
void md_cocoeval_print_summary(const md_cocoeval_result *r, FILE *f);
/* Same into buf (NUL-terminated, truncated to cap); returns the full length. */
size_t md_cocoeval_summary(const md_cocoeval_result *r, char *buf, size_t cap);
/* Writes {"stats": [12], "per_category_ap": {"<id>": ap, ...}} atomically. */
md_status md_cocoeval_write_json(const md_cocoeval_result *r, const char *path);
/* Same with more members (extra: `"key": value, ...` without braces; NULL: none) after those two. */
md_status md_cocoeval_write_json_with(const md_cocoeval_result *r, const char *extra, const char *path);

#endif
