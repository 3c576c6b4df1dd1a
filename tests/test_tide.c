/* test_tide.c — TIDE error analysis against tidecv 1.0.1's own numbers.
 *
 * tests/fixtures/tide/<case>/expected.json holds what tidecv 1.0.1 (TIDE.BOX)
 * printed for <case>/dets.json on its ground truth (tests/fixtures/tide/README.md
 * says which file and how the cases differ): AP, the six main and the two
 * special dAPs, in percent. Every number must agree within 1e-6. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "minidet/cocoeval.h"
#include "minidet/tide.h"
#include "testutil.h"

static cJSON *read_json(const char *path) {
    char *buf = md_test_slurp(path, NULL);
    cJSON *j = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void check_case(const char *cs, const char *gt_path) {
    char dets[256], exp_path[256];
    snprintf(dets, sizeof dets, "tests/fixtures/tide/%s/dets.json", cs);
    snprintf(exp_path, sizeof exp_path, "tests/fixtures/tide/%s/expected.json", cs);
    cJSON *exp = read_json(exp_path);
    CHECK(exp != NULL, "%s: cannot read %s", cs, exp_path);
    if (!exp) return;
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_load_pair(gt_path, dets, &gt, &dt));
    if (gt && dt) {
        md_tide_opts o = MD_TIDE_OPTS_DEFAULT;
        o.pos_thr = num(exp, "pos_threshold");
        o.bg_thr = num(exp, "background_threshold");
        o.max_dets = (int)num(exp, "max_dets");
        md_tide_result r;
        CHECK_OK(md_tide_run(gt, dt, &o, &r));
        double worst = fabs(r.ap - num(exp, "ap"));
        CHECK(fabs(r.ap - num(exp, "ap")) <= 1e-6, "%s: AP %.12g, tidecv %.12g", cs, r.ap, num(exp, "ap"));
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(exp, "main_errors");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(exp, "special_errors");
        for (int e = 0; e < MD_TIDE_N_MAIN; e++) {
            double want = num(m, md_tide_main_name(e));
            CHECK(fabs(r.main[e] - want) <= 1e-6, "%s: %s dAP %.12g, tidecv %.12g", cs, md_tide_main_name(e), r.main[e], want);
            if (fabs(r.main[e] - want) > worst) worst = fabs(r.main[e] - want);
        }
        for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) {
            double want = num(sp, md_tide_special_name(e));
            CHECK(fabs(r.special[e] - want) <= 1e-6, "%s: %s dAP %.12g, tidecv %.12g", cs, md_tide_special_name(e), r.special[e],
                  want);
            if (fabs(r.special[e] - want) > worst) worst = fabs(r.special[e] - want);
        }
        printf("  %-10s AP %.4f  Cls %.3f Loc %.3f Both %.3f Dupe %.3f Bkg %.3f Miss %.3f  FP %.3f FN %.3f  max |diff| %.2g\n", cs,
               r.ap, r.main[0], r.main[1], r.main[2], r.main[3], r.main[4], r.main[5], r.special[0], r.special[1], worst);
    }
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    cJSON_Delete(exp);
}

static void test_perturbed(void) { check_case("perturbed", "tests/fixtures/tide/gt_val2017_79.json"); }
static void test_thresh75(void) { check_case("thresh75", "tests/fixtures/tide/gt_val2017_79.json"); }
static void test_sparse(void) { check_case("sparse", "tests/fixtures/tide/gt_sparse.json"); }
static void test_dense(void) { check_case("dense", "tests/fixtures/tide/gt_val2017_79.json"); }
static void test_val2014(void) { check_case("val2014", "tests/fixtures/cocoeval/val2014-100/gt.json"); }

/* A hand-made image: the numbers follow from the definitions. One GT of class A;
 * a class-B detection on it (Cls), an A detection shifted to IoU 1/3 (Loc), and an
 * A detection far away (Bkg). Nothing is found, so AP is 0; fixing Cls turns the
 * B box into an A true positive at the top score: AP(A) = 100, mean over A and B
 * (B keeps its class entry with no data point and no GT: empty, dropped) = 100. */
static void test_hand_case(void) {
    const char *gt_json = "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}, {\"id\": 2}],"
                          " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 10, 10], \"area\": 100}]}";
    const char *path = "build/test_tide_gt.json";
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(gt_json, f);
    fclose(f);
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_gt_load(path, &gt));
    CHECK_OK(md_coco_dets_create(gt, &dt));
    if (!gt || !dt) return;
    int64_t img[3] = {1, 1, 1}, cat[3] = {2, 1, 1};
    double box[12] = {0, 0, 10, 10, 5, 0, 10, 10, 50, 50, 10, 10}, score[3] = {0.9, 0.8, 0.7};
    CHECK_OK(md_coco_dets_add(dt, 3, img, cat, box, score));
    md_tide_opts o = MD_TIDE_OPTS_DEFAULT;
    md_tide_result r;
    CHECK_OK(md_tide_run(gt, dt, &o, &r));
    CHECK_NEAR(r.ap, 0.0, 1e-12);
    CHECK(r.count[MD_TIDE_CLS] == 1 && r.count[MD_TIDE_LOC] == 1 && r.count[MD_TIDE_BKG] == 1 && r.count[MD_TIDE_MISS] == 0,
          "counts Cls %ld Loc %ld Bkg %ld Miss %ld", r.count[MD_TIDE_CLS], r.count[MD_TIDE_LOC], r.count[MD_TIDE_BKG],
          r.count[MD_TIDE_MISS]);
    /* Cls fixed: A holds TP 0.9, FP 0.8, FP 0.7 -> AP 100; B is empty -> mAP 100 */
    CHECK_NEAR(r.main[MD_TIDE_CLS], 100.0, 1e-9);
    /* Loc fixed: the 0.9 B box stays its own best; the GT's best error is the Cls one (0.9 > 0.8),
     * so the Loc box is dropped, not fixed: A = {FP 0.7}, 1 GT -> 0; B = {FP 0.9}, 0 GT -> 0 */
    CHECK_NEAR(r.main[MD_TIDE_LOC], 0.0, 1e-12);
    /* Bkg fixed: the far box is dropped; A {FP .8} -> 0, B {FP .9} -> 0 */
    CHECK_NEAR(r.main[MD_TIDE_BKG], 0.0, 1e-12);
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    remove(path);
}

/* ./eval --errors --errors-iou 0.75 --json: the "errors" object carries tidecv's numbers too. */
static void test_cli(void) {
    const char *b = getenv("MD_BIN");
    char exe[256], cmd[1024];
    snprintf(exe, sizeof exe, "%s/eval", b && *b ? b : "build/bin");
    if (!md_test_need_path(exe, "built by make")) return;
    const char *out = "build/test_tide_cli.json";
    remove(out);
    snprintf(cmd, sizeof cmd,
             "%s --ann tests/fixtures/tide/gt_val2017_79.json --results tests/fixtures/tide/thresh75/dets.json "
             "--errors-iou 0.75 --json %s --quiet > /dev/null",
             exe, out);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed", cmd);
    cJSON *got = read_json(out), *exp = read_json("tests/fixtures/tide/thresh75/expected.json");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(got, "errors");
    CHECK(exp && cJSON_IsObject(e), "%s has no \"errors\" object", out);
    if (exp && cJSON_IsObject(e)) {
        CHECK_NEAR(num(e, "pos_threshold"), 0.75, 0);
        CHECK_NEAR(num(e, "background_threshold"), 0.1, 0);
        CHECK_NEAR(num(e, "ap"), num(exp, "ap"), 1e-6);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "main"), *em = cJSON_GetObjectItemCaseSensitive(exp, "main_errors");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "special"), *es = cJSON_GetObjectItemCaseSensitive(exp, "special_errors");
        for (int i = 0; i < MD_TIDE_N_MAIN; i++) CHECK_NEAR(num(m, md_tide_main_name(i)), num(em, md_tide_main_name(i)), 1e-6);
        for (int i = 0; i < MD_TIDE_N_SPECIAL; i++) CHECK_NEAR(num(sp, md_tide_special_name(i)), num(es, md_tide_special_name(i)), 1e-6);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(got, "stats")) == 12, "stats missing beside errors");
    }
    cJSON_Delete(got);
    cJSON_Delete(exp);
    remove(out);
}

int main(void) {
    MD_RUN(test_hand_case);
    MD_RUN(test_perturbed);
    MD_RUN(test_thresh75);
    MD_RUN(test_sparse);
    MD_RUN(test_dense);
    MD_RUN(test_val2014);
    MD_RUN(test_cli);
    return md_test_summary();
}
