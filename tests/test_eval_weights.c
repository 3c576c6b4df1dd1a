/* test_eval_weights.c — `./eval --weights` end to end on coco-mini val with a tiny random detector:
 * results.json (COCO loadRes format, re-read by the evaluator), eval.json and report.md are written,
 * every detection is inside its image; a checkpoint with the wrong number of classes is a clear error
 * and --strict 0 loads it partially. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "minidet/cocoeval.h"
#include "minidet/model.h"
#include "testutil.h"

#define ANN "../shared/data/coco-mini/annotations/instances_val2017.json"
#define IMG "../shared/data/coco-mini/val2017"
#define DIR "build/tmp_eval_weights"
#define TINY "model.depth=18 model.width_mult=0.0625 model.fpn_channels=16 model.representation_size=16 " \
             "model.min_size=96 model.max_size=128 test.score_thresh=0.0"

static char *slurp(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static md_status save_tiny(const char *path, int num_classes) {
    md_config c;
    md_config_defaults(&c);
    c.model.depth = 18;
    c.model.width_mult = 0.0625f;
    c.model.fpn_channels = 16;
    c.model.representation_size = 16;
    c.model.num_classes = num_classes;
    md_detector d;
    md_status s = md_detector_create(&d, &c);
    if (s) return s;
    s = md_detector_save_weights(&d, path, 0, NULL, NULL);
    md_detector_free(&d);
    return s;
}

static void test_eval_weights_end_to_end(void) {
    if (!md_test_need_path(ANN, "the shared coco-mini data") || !md_test_need_path(IMG, "the shared coco-mini data")) return;
    const char *bin = getenv("MD_BIN") ? getenv("MD_BIN") : "build/bin";
    CHECK(system("mkdir -p " DIR) == 0, "mkdir");
    CHECK_OK(save_tiny(DIR "/w81.safetensors", 81));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w81.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out --max-images 5 --quiet " TINY " model.num_classes=81 > " DIR "/stdout.txt 2> " DIR "/stderr.txt",
             bin);
    int rc = system(cmd);
    CHECK(rc == 0, "eval --weights exit %d: %s", rc, slurp(DIR "/stderr.txt"));
    char *out = slurp(DIR "/stdout.txt");
    CHECK(out && strstr(out, "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"), "summary printed");
    free(out);
    /* results.json: COCO results, readable by the evaluator, boxes inside the images */
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_gt_load(ANN, &gt));
    if (gt && md_coco_dets_load(gt, DIR "/out/results.json", &dt) == MD_OK) {
        CHECK(dt->n > 0 && dt->n <= 5 * 100, "%zu detections for 5 images", dt->n);
        int bad = 0;
        for (size_t i = 0; i < dt->n; i++) {
            const double *b = dt->bbox + 4 * i;
            bad += !(b[0] >= 0 && b[1] >= 0 && b[2] >= 0 && b[3] >= 0 && dt->score[i] >= 0 && dt->score[i] <= 1);
        }
        CHECK(bad == 0, "%d malformed detections", bad);
    } else {
        md_test_fail(__FILE__, __LINE__, "results.json: %s", md_last_error());
    }
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    char *ej = slurp(DIR "/out/eval.json");
    cJSON *j = ej ? cJSON_Parse(ej) : NULL;
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "stats")) == 12 && cJSON_GetObjectItem(j, "per_category_ap") &&
              cJSON_GetArraySize(cJSON_GetObjectItem(j, "ap_per_iou")) == 10 && cJSON_GetObjectItem(j, "pr"),
          "eval.json has stats, per_category_ap, ap_per_iou, pr");
    cJSON_Delete(j);
    free(ej);
    char *rep = slurp(DIR "/out/report.md");
    CHECK(rep && strstr(rep, "AP per category") && strstr(rep, "images/s"), "report.md");
    free(rep);

    /* wrong number of classes: strict error names the tensor and both shapes; --strict 0 goes on */
    CHECK_OK(save_tiny(DIR "/w5.safetensors", 5));
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 --quiet " TINY " model.num_classes=81 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    char *err = slurp(DIR "/stderr5.txt");
    CHECK(rc != 0 && err && strstr(err, "roi_heads.box_predictor.cls_score.weight: file [5, 16] vs model [81, 16]"),
          "num_classes mismatch: rc %d, %s", rc, err ? err : "");
    free(err);
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 --strict 0 " TINY " model.num_classes=81 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    err = slurp(DIR "/stderr5.txt");
    CHECK(rc == 0 && err && strstr(err, "4 with a wrong shape"), "partial load: rc %d, %s", rc, err ? err : "");
    free(err);
    /* a model with fewer classes than the annotations: clear error */
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 " TINY " model.num_classes=5 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    err = slurp(DIR "/stderr5.txt");
    CHECK(rc != 0 && err && strstr(err, "model.num_classes >= 81"), "too few classes: rc %d, %s", rc, err ? err : "");
    free(err);
}

int main(void) {
    MD_RUN(test_eval_weights_end_to_end);
    return md_test_summary();
}
