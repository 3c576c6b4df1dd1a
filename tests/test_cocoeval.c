/* test_cocoeval.c — the COCO evaluator against pycocotools 2.0.
 *
 * 1. Fixtures: every case in tests/fixtures/cocoeval/<case>/ (expected.json
 *    computed by pycocotools 2.0):
 *    all 12 stats and every per-category AP within 1e-9, the printed summary
 *    equal character for character.
 * 2. Hand-derived edge cases (expected values worked out in the comments).
 * 3. The CLI ($MD_BIN/eval) on a fixture and on bad inputs. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "minidet/cocoeval.h"
#include "testutil.h"

#define FIX "tests/fixtures/cocoeval"

static double g_worst_diff = 0;

static void check_case(const char *name) {
    char p[512];
    snprintf(p, sizeof p, FIX "/%s/expected.json", name);
    char *txt = md_test_slurp(p, NULL);
    CHECK(txt != NULL, "%s: cannot read", p);
    if (!txt) return;
    cJSON *exp = cJSON_Parse(txt);
    free(txt);
    CHECK(exp != NULL, "%s: bad JSON", p);
    if (!exp) return;
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    md_cocoeval_result r;
    memset(&r, 0, sizeof r);
    snprintf(p, sizeof p, FIX "/%s/gt.json", name);
    CHECK_OK(md_coco_gt_load(p, &gt));
    snprintf(p, sizeof p, FIX "/%s/dets.json", name);
    if (gt) CHECK_OK(md_coco_dets_load(gt, p, &dt));
    if (gt && dt) CHECK_OK(md_cocoeval_run(gt, dt, &r));
    if (r.precision) {
        const cJSON *stats = cJSON_GetObjectItem(exp, "stats");
        CHECK(cJSON_GetArraySize(stats) == 12, "%s: expected.json stats", name);
        for (int i = 0; i < 12 && i < cJSON_GetArraySize(stats); i++) {
            double e = cJSON_GetArrayItem(stats, i)->valuedouble, d = fabs(r.stats[i] - e);
            if (d > g_worst_diff) g_worst_diff = d;
            CHECK(d <= 1e-9, "%s: stats[%d] = %.17g, pycocotools %.17g", name, i, r.stats[i], e);
        }
        const cJSON *pc = cJSON_GetObjectItem(exp, "per_category_ap");
        CHECK(cJSON_GetArraySize(pc) == r.K, "%s: %d categories, expected.json has %d", name, r.K, cJSON_GetArraySize(pc));
        const cJSON *it;
        cJSON_ArrayForEach(it, pc) {
            int k = md_coco_gt_cat_index(gt, atoll(it->string));
            CHECK(k >= 0, "%s: category %s unknown", name, it->string);
            if (k < 0) continue;
            double d = fabs(r.per_category_ap[k] - it->valuedouble);
            if (d > g_worst_diff) g_worst_diff = d;
            CHECK(d <= 1e-9, "%s: AP of category %s = %.17g, pycocotools %.17g", name, it->string, r.per_category_ap[k], it->valuedouble);
        }
        const cJSON *sum = cJSON_GetObjectItem(exp, "summary");
        CHECK(cJSON_GetArraySize(sum) == 12, "%s: expected.json summary", name);
        char line[256], all[4096], want[4096];
        size_t wn = 0;
        for (int i = 0; i < 12 && i < cJSON_GetArraySize(sum); i++) {
            const char *e = cJSON_GetArrayItem(sum, i)->valuestring;
            md_cocoeval_summary_line(&r, i, line, sizeof line);
            CHECK(!strcmp(line, e), "%s: summary line %d\n    got  '%s'\n    want '%s'", name, i, line, e);
            wn += (size_t)snprintf(want + wn, sizeof want - wn, "%s\n", e);
        }
        size_t n = md_cocoeval_summary(&r, all, sizeof all);
        CHECK(n == wn && !strcmp(all, want), "%s: md_cocoeval_summary differs from the 12 lines", name);
    }
    md_cocoeval_result_free(&r);
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    cJSON_Delete(exp);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_fixtures(void) {
    if (!md_test_need_path(FIX "/basic/expected.json", "the committed pycocotools fixtures")) return;
    DIR *d = opendir(FIX);
    char *names[64];
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    CHECK(n >= 8, "expected the 8 pycocotools cases, found %d", n);
    for (int i = 0; i < n; i++) {
        int f0 = md_test_failures;
        check_case(names[i]);
        printf("  fixture %-12s %s\n", names[i], md_test_failures == f0 ? "ok" : "FAILED");
        free(names[i]);
    }
    printf("  worst |stat - pycocotools| over all fixtures: %.3g\n", g_worst_diff);
}

/* numpy.linspace values pycocotools uses (printed with float.hex by numpy 1.24). */
static void test_params(void) {
    md_coco_gt *gt = NULL;
    md_cocoeval_result r;
    if (!md_test_need_path(FIX "/basic/gt.json", "fixture")) return;
    CHECK_OK(md_coco_gt_load(FIX "/basic/gt.json", &gt));
    if (!gt) return;
    CHECK_OK(md_cocoeval_run(gt, NULL, &r));
    CHECK(r.iou_thrs[5] == 0.75 && r.iou_thrs[0] == 0.5 && r.iou_thrs[9] == 0.95, "iou thresholds");
    CHECK(r.rec_thrs[1] == 0x1.47ae147ae147bp-7 && r.rec_thrs[3] == 0x1.eb851eb851eb8p-6 && r.rec_thrs[100] == 1.0, "recall thresholds");
    /* no detections at all: every category with ground truth has AP 0, recall 0 */
    CHECK(r.stats[0] == 0 && r.stats[8] == 0, "empty detections: AP %g AR %g", r.stats[0], r.stats[8]);
    md_cocoeval_result_free(&r);
    md_coco_gt_free(gt);
}

/* ---- hand-derived edge cases ------------------------------------------------
 * Each case writes a tiny GT and results file, evaluates, and compares with
 * values worked out by hand from pycocotools' rules. Notation: tp/fp are the
 * cumulative counts in global score order, rc = tp / npig, pr = tp / (tp + fp),
 * pr made non-increasing from the right (envelope), and the precision at
 * recall point r (r = 0, .01, ..., 1) is pr at the first index with rc >= r,
 * or 0 past the end. 50 * .01 == .5 exactly in numpy's linspace, so "r <= .5"
 * covers 51 of the 101 points. */

static char g_tmp[64];

static const char *tmp_path(const char *name) {
    static char p[4][256];
    static int i = 0;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", g_tmp, name);
    return p[i];
}

static void write_text(const char *path, const char *text) { CHECK(md_test_write_text(path, text), "cannot write %s", path); }

/* Evaluates gt/dets JSON texts; returns 0 on success (r filled). */
static int eval_text(const char *gt_json, const char *dets_json, md_cocoeval_result *r) {
    const char *gp = tmp_path("gt.json"), *dp = tmp_path("dets.json");
    write_text(gp, gt_json);
    write_text(dp, dets_json);
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    memset(r, 0, sizeof *r);
    int ok = md_coco_gt_load(gp, &gt) == MD_OK && md_coco_dets_load(gt, dp, &dt) == MD_OK && md_cocoeval_run(gt, dt, r) == MD_OK;
    CHECK(ok, "evaluation failed: %s", md_last_error());
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    return ok ? 0 : -1;
}

#define CATS1 "\"categories\": [{\"id\": 1, \"name\": \"a\"}]"

/* One detection on the only GT box, IoU 1, medium size (40x40 = 1600):
 * precision 1 at every recall point and threshold -> AP = AP50 = AP75 = APm = 1,
 * every AR = 1 (ARm too); no small/large GT -> APs, APl, ARs, ARl = -1. */
static void test_single_detection(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 7}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 7, \"category_id\": 1, "
                  "\"bbox\": [10, 10, 40, 40], \"area\": 1600, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 7, \"category_id\": 1, \"bbox\": [10, 10, 40, 40], \"score\": 0.3}]", &r)) return;
    const double want[12] = {1, 1, 1, -1, 1, -1, 1, 1, 1, -1, 1, -1};
    for (int i = 0; i < 12; i++) CHECK_NEAR(r.stats[i], want[i], 1e-12);
    CHECK_NEAR(r.per_category_ap[0], 1, 1e-12);
    md_cocoeval_result_free(&r);
    /* IoU 0.62 (box 10 x 6.2 inside a 10 x 10 GT): matched at .50 .55 .60 only ->
     * AP 1 at those 3 thresholds, 0 at the other 7: AP = 303/1010 = .3, AP50 = 1,
     * AP75 = 0, AR = .3. Both boxes are small (area 62 and 100): APs = .3, APm = -1. */
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 6.2], \"score\": 0.9}]", &r)) return;
    const double want2[12] = {.3, 1, 0, .3, -1, -1, .3, .3, .3, .3, -1, -1};
    for (int i = 0; i < 12; i++) CHECK_NEAR(r.stats[i], want2[i], 1e-12);
    md_cocoeval_result_free(&r);
}

/* Zero-area boxes. (a) A 0-wide detection (score .9) overlaps nothing (w <= 0 ->
 * IoU 0) and its area 0 is inside "all" [0, 1e10]: a false positive ranked
 * first; the exact detection (.5) is a TP: rc = [0, 1], pr = [0, .5] -> envelope
 * .5 everywhere -> AP = .5 at every threshold; AR100 = 1; AR1 = 0 (only the FP
 * is kept with maxDets 1). For "medium" the unmatched zero-area box is outside
 * the range and ignored, but the GT (area 100) is not medium either -> -1.
 * (b) A zero-area GT (area 0, not crowd) counts in npig but can never be
 * matched: npig = 2, one TP -> rc = [.5], pr = [1] -> precision 1 at the 51
 * points r <= .5, 0 above: AP = 51/101; AR = .5. */
static void test_zero_area(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 0, 10], \"score\": 0.9},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.5}]", &r)) return;
    const double want[12] = {.5, .5, .5, .5, -1, -1, 0, 1, 1, 1, -1, -1};
    for (int i = 0; i < 12; i++) CHECK_NEAR(r.stats[i], want[i], 1e-12);
    md_cocoeval_result_free(&r);
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}, {\"id\": 2, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [50, 50, 0, 0], \"area\": 0, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.8}]", &r)) return;
    CHECK_NEAR(r.stats[0], 51.0 / 101, 1e-12);
    CHECK_NEAR(r.stats[8], .5, 1e-12);
    md_cocoeval_result_free(&r);
}

/* Crowd. Image 1 holds only a crowd GT [0,0,100,100] (category 1) and another
 * crowd GT of category 2; image 2 a regular GT [0,0,10,10] of category 1.
 * Category 1 detections: image 1: [200,200,10,10] .95 (outside the crowd: FP),
 * [10,10,20,20] .9 and [30,30,20,20] .8 (inside the crowd: IoU = inter / det
 * area = 1, both match the same crowd box -> ignored); image 2: exact box .7 (TP).
 * Global order .95 FP, .9 ign, .8 ign, .7 TP: tp = [0,0,0,1], fp = [1,1,1,1],
 * rc = [0,0,0,1], pr = [0,0,0,.5] -> envelope .5 -> AP = .5 at every threshold.
 * Category 2 has only crowd GT (npig = 0) -> AP -1, left out of the means.
 * AR1: top detection per image: .95 FP (img 1), .7 TP (img 2) -> recall 1. */
static void test_crowd(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 2}, {\"id\": 1}], \"categories\": [{\"id\": 1}, {\"id\": 2}], \"annotations\": ["
                  "{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 100, 100], \"area\": 10000, \"iscrowd\": 1},"
                  "{\"id\": 2, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 100, 100], \"area\": 10000, \"iscrowd\": 1},"
                  "{\"id\": 3, \"image_id\": 2, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 20], \"score\": 0.9},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [200, 200, 10, 10], \"score\": 0.95},"
                  " {\"image_id\": 2, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.7},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [30, 30, 20, 20], \"score\": 0.8},"
                  " {\"image_id\": 1, \"category_id\": 2, \"bbox\": [10, 10, 20, 20], \"score\": 0.6}]", &r)) return;
    CHECK_NEAR(r.stats[0], .5, 1e-12);
    CHECK_NEAR(r.stats[1], .5, 1e-12);
    CHECK_NEAR(r.stats[6], 1, 1e-12);
    CHECK_NEAR(r.stats[8], 1, 1e-12);
    CHECK_NEAR(r.per_category_ap[0], .5, 1e-12);
    CHECK(r.per_category_ap[1] == -1, "crowd-only category: AP %g, expected -1", r.per_category_ap[1]);
    md_cocoeval_result_free(&r);
}

/* pycocotools details that look like bugs but are the reference:
 * (a) _prepare() sets ignore = iscrowd, overwriting a GT "ignore" field: a box
 *     with "ignore": 1, iscrowd 0 is a regular GT -> one exact detection: AP 1.
 * (b) dtMatches stores the matched GT's id and "matched" means id != 0: a
 *     detection matched to the GT with id 0 counts as a false positive, and that
 *     GT stays unfound -> tp = 0 -> AP 0, AR 0 (instead of 1). */
static void test_pycocotools_quirks(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0, \"ignore\": 1}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.5}]", &r)) return;
    CHECK_NEAR(r.stats[0], 1, 1e-12);
    md_cocoeval_result_free(&r);
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 0, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.5}]", &r)) return;
    CHECK_NEAR(r.stats[0], 0, 1e-12);
    CHECK_NEAR(r.stats[8], 0, 1e-12);
    md_cocoeval_result_free(&r);
}

/* Duplicates. GT A [0,0,10,10], B [50,50,10,10]; detections: A (.9), the same
 * box again (.8), B (.7). The duplicate finds A already taken: FP.
 * tp = [1,1,2], fp = [0,1,1], rc = [.5,.5,1], pr = [1,.5,2/3] -> envelope
 * [1,2/3,2/3] -> 1 at the 51 points r <= .5, 2/3 at the other 50:
 * AP = (51 + 50 * 2/3) / 101 = 253/303 at every threshold. */
static void test_duplicates(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": ["
                  "{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0},"
                  "{\"id\": 2, \"image_id\": 1, \"category_id\": 1, \"bbox\": [50, 50, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.9},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.8},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [50, 50, 10, 10], \"score\": 0.7}]", &r)) return;
    CHECK_NEAR(r.stats[0], 253.0 / 303, 1e-12);
    CHECK_NEAR(r.stats[8], 1, 1e-12);
    md_cocoeval_result_free(&r);
}

/* maxDets boundary. One GT [0,0,40,40] (medium) and N detections that all have
 * the same score .5; all are far-away FPs except one exact box placed at
 * position P in file order. Ties keep file order (stable sort), and only the
 * first 100 per image are evaluated:
 *   N = 100, P = 100 (the last kept): rc reaches 1 at index 99 with pr = 1/100
 *     -> envelope .01 everywhere -> AP = .01, AR100 = 1, AR10 = AR1 = 0;
 *   N = 101, P = 101: the TP is cut -> AP = 0, AR100 = 0;
 *   N = 101, P = 100: kept -> same as the first case. */
static void check_maxdets(int n, int pos, double ap, double ar100) {
    size_t cap = 256 + (size_t)n * 120, len = 0;
    char *d = malloc(cap);
    CHECK(d != NULL, "oom");
    if (!d) return;
    len += (size_t)snprintf(d + len, cap - len, "[");
    for (int i = 1; i <= n; i++)
        len += (size_t)snprintf(d + len, cap - len, "%s{\"image_id\": 1, \"category_id\": 1, \"bbox\": [%d, %d, 40, 40], \"score\": 0.5}",
                                i > 1 ? ", " : "", i == pos ? 0 : 200 + 50 * i, i == pos ? 0 : 200);
    snprintf(d + len, cap - len, "]");
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 40, 40], \"area\": 1600, \"iscrowd\": 0}]}", d, &r) == 0) {
        CHECK_NEAR(r.stats[0], ap, 1e-12);
        CHECK_NEAR(r.stats[8], ar100, 1e-12);
        CHECK_NEAR(r.stats[7], 0, 1e-12);
        CHECK_NEAR(r.stats[6], 0, 1e-12);
        md_cocoeval_result_free(&r);
    }
    free(d);
}

static void test_maxdets_boundary(void) {
    check_maxdets(100, 100, 0.01, 1);
    check_maxdets(101, 101, 0, 0);
    check_maxdets(101, 100, 0.01, 1);
}

/* Score ties across images. Images 1 and 2 each hold one GT; image 2's
 * detection is exact (TP), image 1's misses (FP); both score .5, and the
 * results file lists image 2 first. pycocotools concatenates per image in
 * ascending image id, then sorts stably: FP (img 1) before TP (img 2):
 * tp = [0,1], fp = [1,1], rc = [0,.5], pr = [0,.5] -> envelope .5 -> .5 at the
 * 51 points r <= .5 -> AP = 25.5/101. (TP first would give 51/101.) */
static void test_ties_across_images(void) {
    md_cocoeval_result r;
    if (eval_text("{\"images\": [{\"id\": 2}, {\"id\": 1}], " CATS1 ", \"annotations\": ["
                  "{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0},"
                  "{\"id\": 2, \"image_id\": 2, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 0}]}",
                  "[{\"image_id\": 2, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"score\": 0.5},"
                  " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [60, 60, 10, 10], \"score\": 0.5}]", &r)) return;
    CHECK_NEAR(r.stats[0], 25.5 / 101, 1e-12);
    CHECK_NEAR(r.stats[8], .5, 1e-12);
    md_cocoeval_result_free(&r);
}

/* In-memory detections give the same numbers as the file (fixture "basic"),
 * and md_coco_dets_save writes a file that reads back to the same doubles. */
static void test_memory_and_save(void) {
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL, *mem = NULL, *back = NULL;
    md_cocoeval_result r1, r2;
    if (!md_test_need_path(FIX "/basic/gt.json", "fixture")) return;
    CHECK_OK(md_coco_gt_load(FIX "/basic/gt.json", &gt));
    if (gt) CHECK_OK(md_coco_dets_load(gt, FIX "/basic/dets.json", &dt));
    if (!dt) { md_coco_gt_free(gt); return; }
    size_t n = dt->n;
    int64_t *img = malloc(n * sizeof *img), *cat = malloc(n * sizeof *cat);
    CHECK(img && cat, "oom");
    for (size_t i = 0; img && cat && i < n; i++) {
        img[i] = gt->img_ids[dt->img[i]];
        cat[i] = gt->cat_ids[dt->cat[i]];
    }
    CHECK_OK(md_coco_dets_create(gt, &mem));
    if (mem && img && cat) {
        CHECK_OK(md_coco_dets_add(mem, n / 2, img, cat, dt->bbox, dt->score));
        CHECK_OK(md_coco_dets_add(mem, n - n / 2, img + n / 2, cat + n / 2, dt->bbox + 4 * (n / 2), dt->score + n / 2));
        CHECK_OK(md_cocoeval_run(gt, dt, &r1));
        CHECK_OK(md_cocoeval_run(gt, mem, &r2));
        for (int i = 0; i < 12; i++) CHECK(r1.stats[i] == r2.stats[i], "stat %d: file %.17g, memory %.17g", i, r1.stats[i], r2.stats[i]);
        md_cocoeval_result_free(&r1);
        md_cocoeval_result_free(&r2);
        /* an unknown image id is refused and nothing is appended */
        int64_t bad = 999999999;
        size_t before = mem->n;
        CHECK(md_coco_dets_add(mem, 1, &bad, cat, dt->bbox, dt->score) != MD_OK, "unknown image id accepted");
        CHECK(strstr(md_last_error(), "999999999") != NULL, "message: %s", md_last_error());
        CHECK(mem->n == before, "partial append");
        const char *p = tmp_path("saved.json");
        CHECK_OK(md_coco_dets_save(dt, p));
        CHECK_OK(md_coco_dets_load(gt, p, &back));
        CHECK(back && back->n == n, "saved file reads back %zu of %zu", back ? back->n : 0, n);
        if (back && back->n == n)
            CHECK(!memcmp(back->bbox, dt->bbox, n * 4 * sizeof(double)) && !memcmp(back->score, dt->score, n * sizeof(double)) &&
                      !memcmp(back->img, dt->img, n * 4) && !memcmp(back->cat, dt->cat, n * 4),
                  "saved detections differ after reading back");
        remove(p);
    }
    free(img);
    free(cat);
    md_coco_dets_free(back);
    md_coco_dets_free(mem);
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
}

/* Bad results files: the error names the file, the entry and the field. */
static void expect_bad(const char *dets_json, const char *want1, const char *want2) {
    static const char *gtj = "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": []}";
    const char *gp = tmp_path("gt.json"), *dp = tmp_path("bad.json");
    write_text(gp, gtj);
    if (dets_json) write_text(dp, dets_json);
    else remove(dp);
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_gt_load(gp, &gt));
    if (!gt) return;
    md_status st = md_coco_dets_load(gt, dp, &dt);
    CHECK(st != MD_OK && dt == NULL, "bad results accepted: %s", dets_json ? dets_json : "(missing file)");
    const char *msg = md_last_error();
    CHECK(strstr(msg, dp) == msg, "message does not start with the file name: %s", msg);
    CHECK(strstr(msg, want1) != NULL, "message lacks '%s': %s", want1, msg);
    if (want2) CHECK(strstr(msg, want2) != NULL, "message lacks '%s': %s", want2, msg);
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
}

static void test_bad_results(void) {
    const char *ok = "{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}";
    char buf[512];
    snprintf(buf, sizeof buf, "[%s, {\"image_id\": 3, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", ok);
    expect_bad(buf, "entry 1: field image_id", "image 3 is not in the ground truth");
    snprintf(buf, sizeof buf, "[%s, %s, {\"image_id\": 1, \"category_id\": 9, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", ok, ok);
    expect_bad(buf, "entry 2: field category_id", "category 9");
    expect_bad("[]", "empty", NULL);
    expect_bad("  [ \n ]  ", "empty", NULL);
    expect_bad("", "byte 0", NULL);
    char want[64];
    snprintf(buf, sizeof buf, "[%s, {\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1] \"score\": 0.5}]", ok);
    snprintf(want, sizeof want, "byte %d (entry 1)", (int)(strstr(buf, "] \"score") + 2 - buf)); /* the '"' where ',' belongs */
    expect_bad(buf, want, "expected ',' or '}'");
    snprintf(buf, sizeof buf, "[%s", ok);
    snprintf(want, sizeof want, "byte %d", (int)strlen(buf));
    expect_bad(buf, want, "truncated");
    snprintf(buf, sizeof buf, "[%s, {\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1], \"score\": 0.5}]", ok);
    expect_bad(buf, "entry 1: field bbox", "3 numbers");
    snprintf(buf, sizeof buf, "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1]}]");
    expect_bad(buf, "entry 0: field score: missing", NULL);
    expect_bad("[{\"image_id\": \"1\", \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1}]", "entry 0: field image_id: not a number", NULL);
    expect_bad("[{\"image_id\": 1.5, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1}]", "entry 0: field image_id: not an integer", NULL);
    expect_bad("[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1e999}]", "entry 0: field score: not a finite", NULL);
    expect_bad("[5]", "entry 0: not an object", NULL);
    expect_bad("{\"image_id\": 1}", "not a results list", NULL);
    snprintf(buf, sizeof buf, "[%s] x", ok);
    expect_bad(buf, "after the list", NULL);
    expect_bad(NULL, "cannot open", NULL);
    /* extra fields of any JSON type are skipped; numbers with exponents, 1.0 ids */
    const char *gp = tmp_path("gt.json"), *dp = tmp_path("extra.json");
    write_text(gp, "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": []}");
    write_text(dp, "[{\"id\": 5, \"segmentation\": [[1, 2, 3.5e1]], \"x\": {\"a\": [true, false, null, \"s\\\"\\u00e9\"]}, "
                   "\"image_id\": 1.0, \"category_id\": 1, \"bbox\": [1e1, 2.5E-1, -0, 12345678901234567890], \"score\": 0.25}]");
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_gt_load(gp, &gt));
    if (gt) CHECK_OK(md_coco_dets_load(gt, dp, &dt));
    if (dt) {
        CHECK(dt->n == 1 && dt->bbox[0] == 10 && dt->bbox[1] == 0.25 && dt->bbox[2] == 0 && dt->bbox[3] == 12345678901234567890.0 &&
                  dt->score[0] == 0.25, "extra fields / number forms misread");
    }
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
}

/* Bad ground truth: malformed JSON with its byte offset, unknown ids, empties. */
static void expect_bad_gt(const char *gt_json, const char *want) {
    const char *gp = tmp_path("badgt.json");
    write_text(gp, gt_json);
    md_coco_gt *gt = NULL;
    CHECK(md_coco_gt_load(gp, &gt) != MD_OK, "bad GT accepted: %s", gt_json);
    const char *msg = md_last_error();
    CHECK(strstr(msg, gp) == msg && strstr(msg, want) != NULL, "message lacks the file or '%s': %s", want, msg);
    md_coco_gt_free(gt);
}

static void test_bad_gt(void) {
    const char *g = "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [}";
    char want[64];
    snprintf(want, sizeof want, "malformed JSON at byte %d", (int)(strstr(g, "[}") + 1 - g)); /* cJSON points at the first bad byte */
    expect_bad_gt(g, want);
    expect_bad_gt("{\"images\": [], " CATS1 "}", "images: the list is empty");
    expect_bad_gt("{\"images\": [{\"id\": 1}], \"categories\": []}", "categories: the list is empty");
    expect_bad_gt("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 2, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 1, 1], \"area\": 1}]}", "annotations[0]: field image_id: image 2 is not in images");
    expect_bad_gt("{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, "
                  "\"bbox\": [0, 0, 1, 1]}]}", "annotations[0]: field area: missing");
    expect_bad_gt("{\"images\": [{\"id\": 1}, {\"id\": 1}], " CATS1 "}", "id 1 appears twice");
}

/* The GT reader: keys in any order, unknown keys and values of every JSON type
 * skipped (segmentation polygons and RLE dicts), escapes in names, iscrowd as
 * true/false, ids written as 1.0; and the numbers it must get right. */
static void test_gt_variants(void) {
    const char *gp = tmp_path("gt_var.json");
    write_text(gp, "{\"annotations\": [{\"segmentation\": {\"counts\": \"abc\\\\d\", \"size\": [10, 20]}, \"iscrowd\": true, "
                   "\"area\": 2.5e3, \"bbox\": [1, 2.25, 3e1, 40], \"category_id\": 3.0, \"image_id\": 9, \"id\": 0},"
                   " {\"id\": 900100581904, \"image_id\": 4, \"category_id\": 3, \"bbox\": [0, 0, 1, 1], \"area\": 1, \"iscrowd\": 0, "
                   "\"segmentation\": [[0, 0, 1, 0, 1, 1]]}],\n"
                   " \"info\": {\"x\": [null, true, false, -1.5e-3, \"\\u00e9\\ud83d\\ude00\"]}, \"licenses\": [],"
                   " \"categories\": [{\"supercategory\": \"s\", \"id\": 3, \"name\": \"caf\\u00e9 \\\"x\\\"\"}, {\"id\": 1}],"
                   " \"images\": [{\"id\": 9, \"file_name\": \"a.jpg\"}, {\"id\": 4}]}\n");
    md_coco_gt *gt = NULL;
    CHECK_OK(md_coco_gt_load(gp, &gt));
    if (!gt) return;
    CHECK(gt->n_img == 2 && gt->img_ids[0] == 4 && gt->img_ids[1] == 9, "images not sorted by id");
    CHECK(gt->n_cat == 2 && gt->cat_ids[0] == 1 && gt->cat_ids[1] == 3, "categories not sorted by id");
    CHECK(!strcmp(gt->cat_names[1], "caf\xc3\xa9 \"x\"") && !strcmp(gt->cat_names[0], ""), "names: '%s' '%s'", gt->cat_names[0], gt->cat_names[1]);
    CHECK(gt->n_ann == 2, "annotations: %d", gt->n_ann);
    if (gt->n_ann == 2) {
        CHECK(gt->ann_crowd[0] == 1 && gt->ann_crowd[1] == 0, "iscrowd");
        CHECK(gt->ann_area[0] == 2500 && gt->ann_bbox[1] == 2.25 && gt->ann_bbox[2] == 30, "numbers");
        CHECK(gt->ann_img[0] == 1 && gt->ann_cat[0] == 1 && gt->ann_ids[0] == 0 && gt->ann_ids[1] == 900100581904LL, "ids");
    }
    md_coco_gt_free(gt);
}

/* Every truncation of a valid GT file and of a valid results file is an error
 * (never a crash, an over-read — the SAN build checks — or a silent success). */
static void test_truncations(void) {
    const char *gtj = "{\"images\": [{\"id\": 1}, {\"id\": 2}], \"categories\": [{\"id\": 1, \"name\": \"a\\\"b\"}], "
                      "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0.5, 0, 10, 10], "
                      "\"area\": 100, \"iscrowd\": 0, \"segmentation\": [[0, 0, 1e1, 0]]}]}";
    const char *dtj = "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0.5, 0, 10, 10], \"score\": 0.9}, "
                      "{\"image_id\": 2, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": -1E-2, \"extra\": [\"x\"]}]";
    const char *gp = tmp_path("trunc_gt.json"), *gfull = tmp_path("full_gt.json"), *dp = tmp_path("trunc_dets.json");
    write_text(gfull, gtj);
    md_coco_gt *full = NULL;
    CHECK_OK(md_coco_gt_load(gfull, &full));
    if (!full) return;
    int bad = 0;
    char *buf = malloc(strlen(gtj) + strlen(dtj) + 1);
    if (!buf) { md_coco_gt_free(full); return; }
    size_t ng = strlen(gtj), nd = strlen(dtj);
    for (size_t n = 0; n < ng; n++) {
        memcpy(buf, gtj, n);
        buf[n] = 0;
        write_text(gp, buf);
        md_coco_gt *gt = NULL;
        if (md_coco_gt_load(gp, &gt) == MD_OK || !strstr(md_last_error(), gp)) bad++;
        md_coco_gt_free(gt);
    }
    for (size_t n = 0; n < nd; n++) {
        memcpy(buf, dtj, n);
        buf[n] = 0;
        write_text(dp, buf);
        md_coco_dets *dt = NULL;
        if (md_coco_dets_load(full, dp, &dt) == MD_OK || !strstr(md_last_error(), dp)) bad++;
        md_coco_dets_free(dt);
    }
    CHECK(bad == 0, "%d truncated files were accepted or gave an error without the file name", bad);
    write_text(dp, dtj);
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_dets_load(full, dp, &dt));
    CHECK(dt && dt->n == 2 && dt->score[1] == -1e-2 && dt->bbox[0] == 0.5, "the whole file reads back");
    md_coco_dets_free(dt);
    free(buf);
    md_coco_gt_free(full);
}

/* md_coco_load_pair reads both files at once: same results as one after the
 * other, and when both files are bad the ground truth's error is reported. */
static void test_load_pair(void) {
    if (!md_test_need_path(FIX "/ties/gt.json", "fixture")) return;
    md_coco_gt *gt = NULL, *gt2 = NULL;
    md_coco_dets *dt = NULL, *dt2 = NULL;
    CHECK_OK(md_coco_load_pair(FIX "/ties/gt.json", FIX "/ties/dets.json", &gt, &dt));
    CHECK_OK(md_coco_gt_load(FIX "/ties/gt.json", &gt2));
    if (gt2) CHECK_OK(md_coco_dets_load(gt2, FIX "/ties/dets.json", &dt2));
    if (dt && dt2) {
        CHECK(dt->gt == gt && dt->n == dt2->n && !memcmp(dt->bbox, dt2->bbox, dt->n * 4 * sizeof(double)) &&
                  !memcmp(dt->score, dt2->score, dt->n * sizeof(double)) && !memcmp(dt->img, dt2->img, dt->n * 4) &&
                  !memcmp(dt->cat, dt2->cat, dt->n * 4),
              "md_coco_load_pair differs from loading one after the other");
    }
    md_coco_dets_free(dt);
    md_coco_dets_free(dt2);
    md_coco_gt_free(gt);
    md_coco_gt_free(gt2);
    const char *gp = tmp_path("pair_gt.json"), *dp = tmp_path("pair_dets.json");
    write_text(gp, "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": [}");
    write_text(dp, "[{\"image_id\": 1,");
    gt = NULL;
    dt = NULL;
    CHECK(md_coco_load_pair(gp, dp, &gt, &dt) != MD_OK && !gt && !dt, "bad files accepted");
    CHECK(strstr(md_last_error(), gp) == md_last_error(), "both bad: expected the GT error, got: %s", md_last_error());
    write_text(gp, "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": []}");
    CHECK(md_coco_load_pair(gp, dp, &gt, &dt) != MD_OK && !gt && !dt, "bad results accepted");
    CHECK(strstr(md_last_error(), dp) == md_last_error() && strstr(md_last_error(), "byte"), "results error: %s", md_last_error());
}

/* ---- the CLI -------------------------------------------------------------- */

static const char *bin_dir(void) {
    const char *b = getenv("MD_BIN");
    return b && *b ? b : "build/bin";
}

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    char cmd[2048], exe[256];
    snprintf(exe, sizeof exe, "%s/eval", bin_dir());
    if (!md_test_need_path(exe, "built by make") || !md_test_need_path(FIX "/crowd/expected.json", "fixture")) return;
    char out[256], so[256], gp[256], dp[256], se[256];
    snprintf(out, sizeof out, "%s/out.json", g_tmp);
    snprintf(so, sizeof so, "%s/stdout.txt", g_tmp);
    snprintf(gp, sizeof gp, "%s/cli_gt.json", g_tmp);
    snprintf(dp, sizeof dp, "%s/cli_dets.json", g_tmp);
    snprintf(se, sizeof se, "%s/stderr.txt", g_tmp);
    remove(out);
    snprintf(cmd, sizeof cmd, "%s --ann " FIX "/crowd/gt.json --results " FIX "/crowd/dets.json --json %s --quiet > %s", exe, out, so);
    CHECK(run_cmd(cmd) == 0, "%s failed", cmd);
    char *txt = md_test_slurp(FIX "/crowd/expected.json", NULL), *got = md_test_slurp(out, NULL), *printed = md_test_slurp(so, NULL);
    cJSON *exp = txt ? cJSON_Parse(txt) : NULL, *res = got ? cJSON_Parse(got) : NULL;
    CHECK(exp && res, "cannot read expected.json or %s", out);
    if (exp && res) {
        const cJSON *es = cJSON_GetObjectItem(exp, "stats"), *rs = cJSON_GetObjectItem(res, "stats");
        CHECK(cJSON_GetArraySize(rs) == 12, "OUT.json stats has %d numbers", cJSON_GetArraySize(rs));
        for (int i = 0; i < 12 && i < cJSON_GetArraySize(rs); i++)
            CHECK_NEAR(cJSON_GetArrayItem(rs, i)->valuedouble, cJSON_GetArrayItem(es, i)->valuedouble, 1e-9);
        const cJSON *ep = cJSON_GetObjectItem(exp, "per_category_ap"), *rp = cJSON_GetObjectItem(res, "per_category_ap"), *it;
        CHECK(cJSON_GetArraySize(rp) == cJSON_GetArraySize(ep), "per_category_ap size");
        cJSON_ArrayForEach(it, ep) {
            const cJSON *v = cJSON_GetObjectItem(rp, it->string);
            CHECK(v && fabs(v->valuedouble - it->valuedouble) <= 1e-9, "per_category_ap[%s]", it->string);
        }
        char want[4096];
        size_t wn = 0;
        const cJSON *sum = cJSON_GetObjectItem(exp, "summary");
        cJSON_ArrayForEach(it, sum) wn += (size_t)snprintf(want + wn, sizeof want - wn, "%s\n", it->valuestring);
        CHECK(printed && !strcmp(printed, want), "stdout is not pycocotools' summary:\n%s", printed ? printed : "(none)");
    }
    cJSON_Delete(exp);
    cJSON_Delete(res);
    free(txt);
    free(got);
    free(printed);

    /* bad inputs: non-zero exit, "minidet: <file>: ..." on stderr, no OUT.json */
    struct { const char *dets; const char *want; } bad[] = {
        {"[{\"image_id\": 42, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "image 42 is not in the ground truth"},
        {"[{\"image_id\": 1, \"category_id\": 7, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "category 7"},
        {"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}", "malformed JSON at byte"},
        {"[]", "empty"},
        {NULL, "cannot open"},
    };
    write_text(gp, "{\"images\": [{\"id\": 1}], " CATS1 ", \"annotations\": []}");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bad[i].dets) write_text(dp, bad[i].dets);
        else remove(dp);
        remove(out);
        snprintf(cmd, sizeof cmd, "%s --ann %s --results %s --json %s > /dev/null 2> %s", exe, gp, dp, out, se);
        int rc = run_cmd(cmd);
        char *err = md_test_slurp(se, NULL);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "minidet: %s: ", dp);
        CHECK(rc != 0, "case %zu: exit code 0", i);
        CHECK(err && strstr(err, prefix) && strstr(err, bad[i].want), "case %zu: stderr lacks '%s...%s': %s", i, prefix, bad[i].want,
              err ? err : "");
        FILE *f = fopen(out, "r");
        CHECK(f == NULL, "case %zu: OUT.json written despite the error", i);
        if (f) fclose(f);
        free(err);
    }
    /* a missing ground-truth file names that file */
    snprintf(cmd, sizeof cmd, "%s --ann %s/nope.json --results %s > /dev/null 2> %s", exe, g_tmp, dp, se);
    CHECK(run_cmd(cmd) != 0, "missing GT: exit code 0");
    char *err = md_test_slurp(se, NULL);
    CHECK(err && strstr(err, "nope.json: cannot open"), "missing GT: %s", err ? err : "");
    free(err);
}

static void cleanup_tmp(void) {
    DIR *d = opendir(g_tmp);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
            remove(p);
        }
    if (d) closedir(d);
    rmdir(g_tmp);
}

int main(void) {
    if (!md_test_tmpdir("cocoeval", g_tmp, sizeof g_tmp)) return 1;
    MD_RUN(test_fixtures);
    MD_RUN(test_params);
    MD_RUN(test_single_detection);
    MD_RUN(test_zero_area);
    MD_RUN(test_crowd);
    MD_RUN(test_duplicates);
    MD_RUN(test_pycocotools_quirks);
    MD_RUN(test_maxdets_boundary);
    MD_RUN(test_ties_across_images);
    MD_RUN(test_memory_and_save);
    MD_RUN(test_bad_results);
    MD_RUN(test_bad_gt);
    MD_RUN(test_gt_variants);
    MD_RUN(test_truncations);
    MD_RUN(test_load_pair);
    MD_RUN(test_cli);
    cleanup_tmp();
    return md_test_summary();
}
