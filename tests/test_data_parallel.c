/* test_data_parallel.c — the pieces of data-parallel training that one process can check:
 * - the backward pass's gradient-final hook (md_detector.on_grad_final): every trainable tensor is
 *   reported exactly once, nothing else is, and at the moment it is reported its gradient already
 *   equals the final one bit for bit (so a bucket started then sums the right numbers); with [model]
 *   norm = bn as well (BN weight/bias gradients);
 * - the heads report before the backbone (the order the buckets are cut in);
 * - per-image sampling substreams: RPN and RoI sampling of image i in a batch of 2 equals sampling that
 *   image alone with slot0 = i, and the losses of the two one-image shards with the batch's normalisers
 *   add up to the batch's losses (what sum_over_ranks makes the ranks compute). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/arena.h"
#include "minidet/config.h"
#include "minidet/model.h"
#include "minidet/rng.h"
#include "minidet/targets.h"
#include "testutil.h"

typedef struct {
    md_detector *det;
    float **snap;  /* per param: its gradient when reported */
    int *calls;    /* per param */
    int order;     /* reports so far */
    int *when;     /* per param: report number */
} hook_ctx;

static md_status hook(void *ctx, int param) {
    hook_ctx *h = ctx;
    md_param *p = &h->det->params[param];
    h->calls[param]++;
    h->when[param] = h->order++;
    if (p->grad && !h->snap[param]) {
        h->snap[param] = malloc(p->numel * sizeof(float));
        if (h->snap[param]) memcpy(h->snap[param], p->grad, p->numel * sizeof(float));
    }
    return MD_OK;
}

static void load_tiny(md_config *cfg, int bn) {
    md_config_defaults(cfg);
    char *ov[] = {"model.depth=18", "model.width_mult=0.0625", "model.fpn_channels=8", "model.representation_size=16",
                  "model.num_classes=5", "model.trainable_layers=5", "model.norm=bn"};
    CHECK_OK(md_config_load(cfg, NULL, (int)(sizeof ov / sizeof *ov) - (bn ? 0 : 1), ov));
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    md_rng r = md_rng_make(seed, 77);
    for (size_t i = 0; i < n; i++) x[i] = scale * md_rng_normal(&r);
}

static void hook_case(int bn) {
    md_config cfg;
    load_tiny(&cfg, bn);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    const int N = 2, H = 64, W = 96;
    float *images = malloc(sizeof(float) * N * 3 * H * W);
    fill(images, (size_t)N * 3 * H * W, 1, 1.0f);
    int sizes[4] = {H, W, 56, 80};
    md_arena ar;
    CHECK_OK(md_arena_init(&ar, (size_t)256 << 20));
    hook_ctx h = {&det, calloc((size_t)det.num_params, sizeof(float *)), calloc((size_t)det.num_params, sizeof(int)), 0,
                  calloc((size_t)det.num_params, sizeof(int))};
    md_step step;
    md_detector_zero_grad(&det);
    CHECK_OK(md_detector_forward_rpn(&det, &ar, images, N, H, W, sizes, 1, &step));
    CHECK_OK(md_detector_proposals(&det, &ar, &step));
    int R = 0;
    for (int i = 0; i < N; i++) R += step.num_proposals[i] < 20 ? step.num_proposals[i] : 20;
    float *rois = md_arena_floats(&ar, 5 * (size_t)(R ? R : 1));
    int r = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < step.num_proposals[i] && j < 20; j++, r++) {
            rois[5 * r] = (float)i;
            memcpy(rois + 5 * r + 1, step.proposals[i] + 4 * j, 4 * sizeof(float));
        }
    CHECK_OK(md_detector_forward_roi(&det, &ar, &step, rois, R));
    int A = step.num_anchors, K = step.num_classes;
    float *d_obj = md_arena_floats(&ar, (size_t)N * A), *d_rpn = md_arena_floats(&ar, (size_t)N * A * 4);
    float *d_cls = md_arena_floats(&ar, (size_t)R * K + 1), *d_box = md_arena_floats(&ar, (size_t)R * K * 4 + 1);
    fill(d_obj, (size_t)N * A, 2, 1e-3f);
    fill(d_rpn, (size_t)N * A * 4, 3, 1e-3f);
    fill(d_cls, (size_t)R * K, 4, 1e-2f);
    fill(d_box, (size_t)R * K * 4, 5, 1e-2f);
    det.on_grad_final = hook;
    det.on_grad_final_ctx = &h;
    CHECK_OK(md_detector_backward(&det, &ar, &step, d_obj, d_rpn, d_cls, d_box));
    int ntrain = 0, first_backbone = 1 << 30, last_head = -1;
    for (int i = 0; i < det.num_params; i++) {
        md_param *p = &det.params[i];
        if (!p->trainable) {
            CHECK(h.calls[i] == 0, "bn %d: frozen %s reported %d times", bn, p->name, h.calls[i]);
            continue;
        }
        ntrain++;
        CHECK(h.calls[i] == 1, "bn %d: %s reported %d times", bn, p->name, h.calls[i]);
        if (h.snap[i]) {
            size_t diff = 0;
            for (size_t k = 0; k < p->numel; k++) diff += memcmp(&h.snap[i][k], &p->grad[k], sizeof(float)) != 0;
            CHECK(diff == 0, "bn %d: %s changed after it was reported final (%zu of %zu values)", bn, p->name, diff, p->numel);
        }
        if (!strncmp(p->name, "backbone.body.", 14)) { if (h.when[i] < first_backbone) first_backbone = h.when[i]; }
        else if (h.when[i] > last_head) last_head = h.when[i];
    }
    CHECK(ntrain > 20 && h.order == ntrain, "bn %d: %d reports for %d trainable tensors", bn, h.order, ntrain);
    CHECK(last_head < first_backbone, "bn %d: a head or FPN tensor (report %d) after a backbone tensor (report %d)", bn, last_head,
          first_backbone);
    for (int i = 0; i < det.num_params; i++) free(h.snap[i]);
    free(h.snap);
    free(h.calls);
    free(h.when);
    free(images);
    md_arena_free(&ar);
    md_detector_free(&det);
}

static void test_grad_final_hook(void) {
    hook_case(0);
    hook_case(1);
}

/* Two images with boxes; anchors a grid of boxes. */
static void test_sampling_shards(void) {
    md_config cfg;
    md_config_defaults(&cfg);
    cfg.rpn.batch_size_per_image = 16;
    cfg.roi_heads.batch_size_per_image = 12;
    enum { A = 400, N = 2 };
    float *anchors = malloc(sizeof(float) * 4 * A);
    for (int a = 0; a < A; a++) {
        float x = (float)(a % 20) * 8, y = (float)(a / 20) * 8, s = 12 + (float)(a % 3) * 10;
        anchors[4 * a] = x;
        anchors[4 * a + 1] = y;
        anchors[4 * a + 2] = x + s;
        anchors[4 * a + 3] = y + s;
    }
    float boxes[4 * 3] = {10, 10, 40, 40, 60, 20, 100, 70, 30, 50, 90, 120};
    int labels[3] = {1, 2, 3}, begin[N] = {0, 2}, count[N] = {2, 1};
    float *obj = malloc(sizeof(float) * N * A), *del = malloc(sizeof(float) * N * A * 4);
    fill(obj, (size_t)N * A, 11, 1.0f);
    fill(del, (size_t)N * A * 4, 12, 0.1f);
    md_arena ar;
    CHECK_OK(md_arena_init(&ar, (size_t)64 << 20));
    md_rng rng = md_rng_make(3, MD_STREAM_SAMPLER);
    rng.counter = (uint64_t)5 << 32;
    /* the whole batch */
    md_gt_batch gt = {N, boxes, labels, begin, count, 0, 0};
    float *dob = malloc(sizeof(float) * N * A), *dde = malloc(sizeof(float) * N * A * 4);
    md_rpn_loss_result all;
    CHECK_OK(md_rpn_loss(&cfg.rpn, &ar, &gt, anchors, A, obj, del, &rng, 1.0f, dob, dde, &all));
    /* each image alone as the shard with slot0 = i: the same sampled anchors (the gradients' support) */
    double obj_sum = 0, box_sum = 0;
    for (int i = 0; i < N; i++) {
        int b0 = 0, c0 = count[i];
        md_gt_batch gi = {1, boxes + 4 * begin[i], labels + begin[i], &b0, &c0, i, 0};
        float *d1 = malloc(sizeof(float) * A), *d4 = malloc(sizeof(float) * A * 4);
        md_rpn_loss_result one;
        CHECK_OK(md_rpn_loss(&cfg.rpn, &ar, &gi, anchors, A, obj + (size_t)i * A, del + (size_t)i * A * 4, &rng, 1.0f, d1, d4, &one));
        int same = 1;
        for (int a = 0; a < A; a++) same &= (d1[a] != 0) == (dob[(size_t)i * A + a] != 0);
        CHECK(same, "image %d: the anchors sampled alone differ from those sampled in the batch", i);
        /* rescaled from the shard's own normaliser to the batch's: the shares add up to the batch loss */
        obj_sum += one.loss_objectness * one.num_sampled / all.num_sampled;
        box_sum += one.loss_box * one.num_sampled / all.num_sampled;
        free(d1);
        free(d4);
    }
    CHECK(fabs(obj_sum - all.loss_objectness) <= 1e-5 * fabs(all.loss_objectness), "objectness shares %g vs batch %g", obj_sum,
          all.loss_objectness);
    CHECK(fabs(box_sum - all.loss_box) <= 1e-5 * fabs(all.loss_box) + 1e-7, "rpn box shares %g vs batch %g", box_sum, all.loss_box);
    /* RoI sampling: proposals = a slice of the anchors per image */
    float *props[N] = {anchors, anchors + 4 * 150};
    int np[N] = {150, 120};
    md_roi_targets rt;
    CHECK_OK(md_roi_sample(&cfg.roi_heads, &ar, &gt, props, np, &rng, &rt));
    int off = 0;
    for (int i = 0; i < N; i++) {
        int b0 = 0, c0 = count[i];
        md_gt_batch gi = {1, boxes + 4 * begin[i], labels + begin[i], &b0, &c0, i, 0};
        md_roi_targets ri;
        CHECK_OK(md_roi_sample(&cfg.roi_heads, &ar, &gi, &props[i], &np[i], &rng, &ri));
        int same = 1;
        for (int k = 0; k < ri.R && off + k < rt.R; k++)
            same &= !memcmp(ri.rois + 5 * k + 1, rt.rois + 5 * (off + k) + 1, 4 * sizeof(float)) && ri.labels[k] == rt.labels[off + k];
        CHECK(same && off + ri.R <= rt.R, "image %d: RoIs sampled alone differ from those sampled in the batch", i);
        off += ri.R;
    }
    CHECK(off == rt.R && rt.normalizer == rt.R, "RoIs: %d from the shards, %d in the batch (normaliser %d)", off, rt.R, rt.normalizer);
    free(anchors);
    free(obj);
    free(del);
    free(dob);
    free(dde);
    md_arena_free(&ar);
}

int main(void) {
    MD_RUN(test_grad_final_hook);
    MD_RUN(test_sampling_shards);
    return md_test_summary();
}
