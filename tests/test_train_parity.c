/* test_train_parity.c — training loss values and gradients equal torchvision's on the same weights and batch
 * (tests/fixtures/train_loss.safetensors from scripts/ref_train.py loss: a tiny Faster R-CNN, two 64x96 inputs,
 * sampling made deterministic by sampling every labelled anchor / proposal). Checks the four loss terms of
 * md_rpn_loss / md_roi_sample / md_roi_loss on the detector's stage outputs, and the gradients that
 * md_detector_backward accumulates from their d-outputs. The same with [model] norm = bn against torchvision
 * with trainable nn.BatchNorm2d in train() mode (tests/fixtures/train_loss_bn.safetensors, scripts/ref_train.py
 * loss_bn): losses, gradients including BN weight / bias, and the running statistics after the step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/arena.h"
#include "minidet/config.h"
#include "minidet/model.h"
#include "minidet/rng.h"
#include "minidet/safetensors.h"
#include "minidet/targets.h"
#include "testutil.h"

#define FIX "tests/fixtures/train_loss.safetensors"
#define FIX_BN "tests/fixtures/train_loss_bn.safetensors"

static void parity(const char *FIXP, int bn) {
    if (!md_test_need_path(FIXP, bn ? "scripts/ref_train.py loss_bn" : "scripts/ref_train.py loss")) return;
    md_st_file f;
    CHECK_OK(md_st_load(FIXP, &f));
    md_config cfg;
    md_config_defaults(&cfg);
    char *ov[] = {"model.depth=18", "model.width_mult=0.0625", "model.fpn_channels=8", "model.representation_size=16",
                  "model.num_classes=5", "model.trainable_layers=5", "rpn.batch_size_per_image=10000000",
                  "rpn.positive_fraction=1", "roi_heads.batch_size_per_image=10000000", "roi_heads.positive_fraction=1", "model.norm=bn"};
    CHECK_OK(md_config_load(&cfg, NULL, (int)(sizeof ov / sizeof *ov) - (bn ? 0 : 1), ov));
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    md_load_report rep;
    CHECK_OK(md_detector_load_weights(&det, FIXP, 0, &rep));
    CHECK(rep.missing == 0 && rep.mismatched == 0, "weights: %d missing, %d mismatched (first missing %s)", rep.missing,
          rep.mismatched, rep.missing ? rep.missing_names[0] : "-");
    const int N = 2, H = 64, W = 96;
    float *images = malloc(sizeof(float) * N * 3 * H * W);
    int64_t sizes64[4], counts64[2], labels64[16];
    float boxes[64];
    double ref[4];
    CHECK_OK(md_st_read_f32(&f, "input.images", -1, NULL, images, (size_t)N * 3 * H * W));
    CHECK_OK(md_st_read_i64(&f, "input.image_sizes", -1, NULL, sizes64, 4));
    CHECK_OK(md_st_read_i64(&f, "input.counts", -1, NULL, counts64, 2));
    int nb = (int)(counts64[0] + counts64[1]);
    CHECK_OK(md_st_read_i64(&f, "input.labels", -1, NULL, labels64, (size_t)nb));
    CHECK_OK(md_st_read_f32(&f, "input.boxes", -1, NULL, boxes, 4 * (size_t)nb));
    CHECK_OK(md_st_read_f64(&f, "losses", -1, NULL, ref, 4));
    int sizes[4], labels[16], begin[2] = {0, (int)counts64[0]}, count[2] = {(int)counts64[0], (int)counts64[1]};
    for (int i = 0; i < 4; i++) sizes[i] = (int)sizes64[i];
    for (int i = 0; i < nb; i++) labels[i] = (int)labels64[i];
    md_arena ar;
    CHECK_OK(md_arena_init(&ar, (size_t)256 << 20));
    md_step step;
    md_detector_zero_grad(&det);
    CHECK_OK(md_detector_forward_rpn(&det, &ar, images, N, H, W, sizes, 1, &step));
    CHECK_OK(md_detector_proposals(&det, &ar, &step));
    md_gt_batch gt = {N, boxes, labels, begin, count, 0, 0};
    int A = step.num_anchors;
    float *d_obj = md_arena_floats(&ar, (size_t)N * A), *d_rpn = md_arena_floats(&ar, (size_t)N * A * 4);
    md_rng rng = md_rng_make(1, MD_STREAM_SAMPLER);
    md_rpn_loss_result rl;
    CHECK_OK(md_rpn_loss(&cfg.rpn, &ar, &gt, step.anchors, A, step.objectness, step.rpn_deltas, &rng, 1.0f, d_obj, d_rpn, &rl));
    md_roi_targets rt;
    CHECK_OK(md_roi_sample(&cfg.roi_heads, &ar, &gt, step.proposals, step.num_proposals, &rng, &rt));
    CHECK_OK(md_detector_forward_roi(&det, &ar, &step, rt.rois, rt.R));
    int K = step.num_classes;
    float *d_cls = md_arena_floats(&ar, (size_t)rt.R * K), *d_box = md_arena_floats(&ar, (size_t)rt.R * K * 4);
    md_roi_loss_result ol;
    CHECK_OK(md_roi_loss(&cfg.roi_heads, &ar, &rt, step.class_logits, step.box_deltas, K, 1.0f, d_cls, d_box, &ol));
    const double got[4] = {rl.loss_objectness, rl.loss_box, ol.loss_classifier, ol.loss_box};
    const char *names[4] = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"};
    for (int i = 0; i < 4; i++) {
        double e = fabs(got[i] - ref[i]) / fabs(ref[i]);
        printf("  %-17s minidet %.9g torchvision %.9g rel err %.2e\n", names[i], got[i], ref[i], e);
        CHECK(e < 2e-4, "%s: %.9g vs torchvision %.9g", names[i], got[i], ref[i]);
    }
    CHECK_OK(md_detector_backward(&det, &ar, &step, d_obj, d_rpn, d_cls, d_box));
    const char *grads = md_st_meta(&f, "grads");
    char list[2048];
    snprintf(list, sizeof list, "%s", grads ? grads : "");
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        md_param *p = md_detector_param(&det, tok);
        CHECK(p && p->grad, "%s: no trainable tensor", tok);
        if (!p || !p->grad) continue;
        char key[160];
        snprintf(key, sizeof key, "grad.%s", tok);
        float *r = malloc(sizeof(float) * p->numel);
        CHECK_OK(md_st_read_f32(&f, key, -1, NULL, r, p->numel));
        double amax = 0;
        for (size_t i = 0; i < p->numel; i++) if (fabs(r[i]) > amax) amax = fabs(r[i]);
        double e = md_max_abs_err(p->grad, r, p->numel) / (amax > 0 ? amax : 1);
        printf("  grad %-42s max |err| / max |g| = %.2e\n", tok, e);
        CHECK(e < 1e-3, "grad %s: error %.3g of its scale", tok, e);
        free(r);
    }
    if (bn) { /* running statistics after the training forward (momentum 0.1, unbiased variance) */
        const char *after = md_st_meta(&f, "bn_after");
        static char al[16384];
        snprintf(al, sizeof al, "%s", after ? after : "");
        int n = 0;
        double worst = 0;
        for (char *tok = strtok(al, ","); tok; tok = strtok(NULL, ","), n++) {
            md_param *p = md_detector_param(&det, tok);
            CHECK(p && p->is_buffer, "%s: no BN buffer", tok);
            if (!p) continue;
            char key[160];
            snprintf(key, sizeof key, "after.%s", tok);
            float *r = malloc(sizeof(float) * p->numel);
            CHECK_OK(md_st_read_f32(&f, key, -1, NULL, r, p->numel));
            double e = md_max_rel_err(p->data, r, p->numel, 1e-3, NULL);
            if (e > worst) worst = e;
            CHECK(e < 1e-4, "%s after the step: rel err %.3g", tok, e);
            free(r);
        }
        CHECK(n == 2 * 20, "%d running statistics in the fixture, expected 40 (20 BatchNorm2d in a ResNet-18)", n);
        printf("  BN running_mean/var after the step (%d tensors): max rel err %.2e\n", n, worst);
    }
    md_arena_free(&ar);
    free(images);
    md_detector_free(&det);
    md_st_free(&f);
}

static void test_losses_and_grads_match_torchvision(void) { parity(FIX, 0); }
static void test_trainable_bn_matches_torchvision(void) { parity(FIX_BN, 1); }

int main(void) {
    MD_RUN(test_losses_and_grads_match_torchvision);
    MD_RUN(test_trainable_bn_matches_torchvision);
    return md_test_summary();
}
