/* test_eval_weights.c — `./eval --weights` end to end on the COCO sample's val split (tests/data/coco-sample:
 * 4 official val2017 images, one with a crowd box) with a tiny random detector; --max-images 3 evaluates 3:
 * results.json (COCO loadRes format, re-read by the evaluator), eval.json and report.md are written,
 * every detection is inside its image; a checkpoint with the wrong number of classes is a clear error
 * and --strict 0 loads it partially. --vis N: one PNG per evaluated image, ground truth and detections side by
 * side, the best detection outlined in its category's colour, nothing drawn below --vis-score, bad values rejected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <stb_image.h>
#include "minidet/coco.h"
#include "minidet/evaluate.h"
#include "minidet/cocoeval.h"
#include "minidet/model.h"
#include "minidet/plot.h"
#include "testutil.h"

#define ANN "tests/data/coco-sample/annotations/instances_val2017.json"
#define IMG "tests/data/coco-sample/val2017"
#define DIR "build/tmp_eval_weights"
#define TINY "model.depth=18 model.width_mult=0.0625 model.fpn_channels=16 model.representation_size=16 " \
             "model.min_size=96 model.max_size=128 test.score_thresh=0.0"

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
    const char *bin = getenv("MD_BIN") ? getenv("MD_BIN") : "build/bin";
    CHECK(system("mkdir -p " DIR) == 0, "mkdir");
    CHECK_OK(save_tiny(DIR "/w81.safetensors", 81));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w81.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out --max-images 3 --quiet " TINY " model.num_classes=81 > " DIR "/stdout.txt 2> " DIR "/stderr.txt",
             bin);
    int rc = system(cmd);
    CHECK(rc == 0, "eval --weights exit %d: %s", rc, md_test_slurp(DIR "/stderr.txt", NULL));
    char *out = md_test_slurp(DIR "/stdout.txt", NULL);
    CHECK(out && strstr(out, "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"), "summary printed");
    free(out);
    /* results.json: COCO results, readable by the evaluator, boxes inside the images */
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_gt_load(ANN, &gt));
    if (gt && md_coco_dets_load(gt, DIR "/out/results.json", &dt) == MD_OK) {
        CHECK(dt->n > 0 && dt->n <= 3 * 100, "%zu detections for 3 images", dt->n);
        int bad = 0, per_img[8] = {0}, n_img = 0;
        for (size_t i = 0; i < dt->n; i++) {
            const double *b = dt->bbox + 4 * i;
            bad += !(b[0] >= 0 && b[1] >= 0 && b[2] >= 0 && b[3] >= 0 && dt->score[i] >= 0 && dt->score[i] <= 1);
            if (dt->img[i] >= 0 && dt->img[i] < 8) per_img[dt->img[i]]++;
        }
        CHECK(bad == 0, "%d malformed detections", bad);
        /* random weights give every image boxes: the first 3 of the 4 in file order were evaluated, not the
         * 4th (id 34417; gt->img_ids is in ascending id order) */
        int last = -1;
        for (int i = 0; i < gt->n_img && i < 8; i++) {
            n_img += per_img[i] > 0;
            if (gt->img_ids[i] == 34417) last = i;
        }
        CHECK(gt->n_img == 4 && n_img == 3 && last >= 0 && per_img[last] == 0, "detections on %d of %d images (the first 3 expected)",
              n_img, gt->n_img);
    } else {
        md_test_fail(__FILE__, __LINE__, "results.json: %s", md_last_error());
    }
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    char *ej = md_test_slurp(DIR "/out/eval.json", NULL);
    cJSON *j = ej ? cJSON_Parse(ej) : NULL;
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "stats")) == 12 && cJSON_GetObjectItem(j, "per_category_ap") &&
              cJSON_GetArraySize(cJSON_GetObjectItem(j, "ap_per_iou")) == 10 && cJSON_GetObjectItem(j, "pr"),
          "eval.json has stats, per_category_ap, ap_per_iou, pr");
    cJSON_Delete(j);
    free(ej);
    char *rep = md_test_slurp(DIR "/out/report.md", NULL);
    CHECK(rep && strstr(rep, "AP per category") && strstr(rep, "images/s"), "report.md");
    free(rep);

    /* wrong number of classes: strict error names the tensor and both shapes; --strict 0 goes on */
    CHECK_OK(save_tiny(DIR "/w5.safetensors", 5));
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 --quiet " TINY " model.num_classes=81 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    char *err = md_test_slurp(DIR "/stderr5.txt", NULL);
    CHECK(rc != 0 && err && strstr(err, "roi_heads.box_predictor.cls_score.weight: file [5, 16] vs model [81, 16]"),
          "num_classes mismatch: rc %d, %s", rc, err ? err : "");
    free(err);
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 --strict 0 " TINY " model.num_classes=81 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    err = md_test_slurp(DIR "/stderr5.txt", NULL);
    CHECK(rc == 0 && err && strstr(err, "4 with a wrong shape"), "partial load: rc %d, %s", rc, err ? err : "");
    free(err);
    /* a model with fewer classes than the annotations: clear error */
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/w5.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/out5 --max-images 1 " TINY " model.num_classes=5 > /dev/null 2> " DIR "/stderr5.txt",
             bin);
    rc = system(cmd);
    err = md_test_slurp(DIR "/stderr5.txt", NULL);
    CHECK(rc != 0 && err && strstr(err, "model.num_classes >= 81"), "too few classes: rc %d, %s", rc, err ? err : "");
    free(err);
}

/* Share of the in-image pixels of the 1-pixel ring [a0, a1] x [b0, b1] that have colour c (-1: none in the image). */
static double ring_share(const unsigned char *px, int W, int H, int a0, int b0, int a1, int b1, const unsigned char c[3]) {
    long in = 0, hit = 0;
    for (int y = b0; y <= b1; y++)
        for (int x = a0; x <= a1; x++) {
            if ((y != b0 && y != b1 && x != a0 && x != a1) || x < 0 || y < 0 || x >= W || y >= H) continue;
            in++;
            hit += !memcmp(px + ((size_t)y * W + x) * 3, c, 3);
        }
    return in ? (double)hit / in : -1;
}

static void test_eval_weights_vis(void) {
    const char *bin = getenv("MD_BIN") ? getenv("MD_BIN") : "build/bin";
    CHECK(system("rm -rf " DIR "/vis " DIR "/vis_none && mkdir -p " DIR) == 0, "mkdir");
    CHECK_OK(save_tiny(DIR "/wv.safetensors", 81));
    char cmd[2048];
    /* 2 images, every detection eligible (random weights score ~1/81): the top 30 are drawn */
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/wv.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/vis --max-images 2 --vis 3 --vis-score 0 --quiet " TINY " model.num_classes=81 > /dev/null 2> " DIR "/stderr_vis.txt",
             bin);
    int rc = system(cmd);
    CHECK(rc == 0, "eval --vis exit %d: %s", rc, md_test_slurp(DIR "/stderr_vis.txt", NULL));
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    md_coco coco;
    memset(&coco, 0, sizeof coco);
    md_coco_options co;
    md_coco_options_default(&co);
    CHECK_OK(md_coco_load(&coco, ANN, &co));
    CHECK_OK(md_coco_gt_load(ANN, &gt));
    if (!gt || !coco.num_images || md_coco_dets_load(gt, DIR "/vis/results.json", &dt) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "vis run: %s", md_last_error());
        goto out;
    }
    char *rep = md_test_slurp(DIR "/vis/report.md", NULL);
    int n_png = 0;
    for (int i = 0; i < gt->n_img; i++) {
        /* the images that have detections are the evaluated ones (random weights give every image boxes) */
        size_t best = (size_t)-1;
        for (size_t d = 0; d < dt->n; d++)
            if (dt->img[d] == i && (best == (size_t)-1 || dt->score[d] > dt->score[best])) best = d;
        if (best == (size_t)-1) continue;
        n_png++;
        long long id = (long long)gt->img_ids[i];
        char png[256], link[128];
        snprintf(png, sizeof png, DIR "/vis/vis_%lld.png", id);
        snprintf(link, sizeof link, "(vis_%lld.png)", id);
        CHECK(rep && strstr(rep, link), "report.md links %s", link);
        int ci = md_coco_find_image(&coco, gt->img_ids[i]);
        int w = 0, h = 0, ch = 0;
        /* two panels (ground truth, detections) of the image scaled by k, a title row (evaluate.h) */
        int k = ci >= 0 ? md_vis_scale(coco.images[ci].width, coco.images[ci].height) : 1;
        int iw = ci >= 0 ? coco.images[ci].width : -1, ih = ci >= 0 ? coco.images[ci].height : -1;
        CHECK(stbi_info(png, &w, &h, &ch) && w == 2 * k * iw + 3 * MD_VIS_GAP && h == MD_VIS_HEAD + k * ih + MD_VIS_GAP && ch == 3,
              "%s: stbi_info %dx%dx%d, image %dx%d (x%d)", png, w, h, ch, iw, ih, k);
        int ox = 2 * MD_VIS_GAP + k * iw, oy = MD_VIS_HEAD;
        unsigned char *px = stbi_load(png, &w, &h, &ch, 3);
        CHECK(px != NULL, "%s: %s", png, stbi_failure_reason());
        if (!px) continue;
        /* the best detection is drawn last: its outline (floor(x1)..ceil(x2)-1) is its category's
         * colour, the ring just outside it white, and pixels well inside it are not both */
        const double *b = dt->bbox + 4 * best;
        int x0 = ox + (int)floor(k * b[0]), y0 = oy + (int)floor(k * b[1]), x1 = ox + (int)ceil(k * (b[0] + b[2])) - 1,
            y1 = oy + (int)ceil(k * (b[1] + b[3])) - 1;
        unsigned char col[3], white[3] = {255, 255, 255};
        md_plot_color(dt->cat[best], col);
        double in0 = ring_share(px, w, h, x0, y0, x1, y1, col), in1 = ring_share(px, w, h, x0 + 1, y0 + 1, x1 - 1, y1 - 1, col);
        double halo = ring_share(px, w, h, x0 - 1, y0 - 1, x1 + 1, y1 + 1, white);
        CHECK(in0 >= 0.8 && in1 >= 0.8, "%s: best box [%d %d %d %d] outline has its colour on %.2f / %.2f of its pixels", png,
              x0, y0, x1, y1, in0, in1);
        CHECK(halo < 0 || halo >= 0.8, "%s: white halo on %.2f of its pixels", png, halo);
        stbi_image_free(px);
    }
    CHECK(n_png == 2, "%d evaluated images (2 expected)", n_png);
    free(rep);

    /* a threshold above every score draws no detection: the right panel is the decoded image itself (its
       title says "no detection"); the left one shows the ground truth, so it differs where the image has boxes */
    snprintf(cmd, sizeof cmd,
             "%s/eval --weights " DIR "/wv.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
             "/vis_none --max-images 1 --vis 1 --vis-score 0.9 --quiet " TINY " model.num_classes=81 > /dev/null 2> " DIR
             "/stderr_vis.txt",
             bin);
    rc = system(cmd);
    CHECK(rc == 0, "eval --vis-score 0.9 exit %d: %s", rc, md_test_slurp(DIR "/stderr_vis.txt", NULL));
    {
        char png[256], jpg[1024];
        snprintf(png, sizeof png, DIR "/vis_none/vis_%lld.png", (long long)coco.images[0].id);
        snprintf(jpg, sizeof jpg, IMG "/%s", coco.images[0].file_name);
        int w1, h1, c1, w2, h2, c2;
        unsigned char *a = stbi_load(png, &w1, &h1, &c1, 3), *o = stbi_load(jpg, &w2, &h2, &c2, 3);
        int k = o ? md_vis_scale(w2, h2) : 1, same_r = a && o && w1 == 2 * k * w2 + 3 * MD_VIS_GAP, same_l = same_r;
        for (int y = 0; same_r && y < k * h2; y++)
            for (int x = 0; x < k * w2; x++) {
                const unsigned char *src = o + ((size_t)(y / k) * w2 + x / k) * 3;
                same_r &= !memcmp(a + ((size_t)(MD_VIS_HEAD + y) * w1 + 2 * MD_VIS_GAP + k * w2 + x) * 3, src, 3);
                same_l &= !memcmp(a + ((size_t)(MD_VIS_HEAD + y) * w1 + MD_VIS_GAP + x) * 3, src, 3);
            }
        CHECK(same_r, "%s: the detections panel equals %s (x%d)", png, jpg, k);
        CHECK(!same_l || coco.images[0].num_targets == 0, "%s: the ground-truth panel shows the %d boxes", png, coco.images[0].num_targets);
        stbi_image_free(a);
        stbi_image_free(o);
    }

    /* bad values: a clear error, nothing run */
    static const char *bad[][2] = {{"--vis -1", "--vis: '-1' is not a number of images (0..1000)"},
                                   {"--vis 2x", "--vis: '2x' is not a number of images"},
                                   {"--vis 1001", "--vis: '1001' is not a number of images"},
                                   {"--vis 1 --vis-score 1.5", "--vis-score: '1.5' is not a score in [0, 1]"},
                                   {"--vis", "option --vis needs a value"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(cmd, sizeof cmd,
                 "%s/eval --weights " DIR "/wv.safetensors --ann " ANN " --images " IMG " --out-dir " DIR
                 "/vis_bad " TINY " %s > /dev/null 2> " DIR "/stderr_vis.txt",
                 bin, bad[k][0]);
        rc = system(cmd);
        char *err = md_test_slurp(DIR "/stderr_vis.txt", NULL);
        char want[160];
        snprintf(want, sizeof want, "minidet: %s", bad[k][1]);
        CHECK(rc != 0 && err && strstr(err, want), "%s: rc %d, stderr '%s'", bad[k][0], rc, err ? err : "");
        free(err);
    }
out:
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    md_coco_free(&coco);
}

int main(void) {
    MD_RUN(test_eval_weights_end_to_end);
    MD_RUN(test_eval_weights_vis);
    return md_test_summary();
}
