/* targets.h — training targets and losses of the RPN and the RoI head (torchvision 0.14 semantics).
 *
 * RPN (torchvision rpn.py assign_targets_to_anchors + compute_loss): per image, the IoU of every
 * anchor with every ground-truth box; Matcher(fg 0.7, bg 0.3, allow_low_quality_matches) — anchors
 * below bg are negatives, between are ignored, and every GT's best anchors (ties included) get back
 * their best match; BalancedPositiveNegativeSampler(256, 0.5) drawing with md_rng; objectness loss =
 * BCE-with-logits averaged over the sampled anchors of the whole batch; box loss over the sampled
 * positives divided by the number of sampled anchors: smooth-L1 (beta 1/9, sum) on deltas encoded with
 * weights (1, 1, 1, 1), or an IoU-type loss on the decoded box vs the GT box ([rpn] box_loss), times
 * [rpn] box_loss_weight.
 *
 * RoI head (roi_heads.py): proposals of each image followed by its GT boxes (add_gt_proposals),
 * Matcher(0.5, 0.5, no low-quality), labels of the matched GT (0 for background), sampler(512, 0.25),
 * sampled RoIs in ascending proposal order per image, regression targets encoded with weights
 * (10, 10, 5, 5) (box.h coder, box_loss.h md_box_regression_loss). Loss: cross-entropy averaged over all sampled RoIs; box loss on the foreground RoIs'
 * ground-truth class slot, summed and divided by the number of sampled RoIs, times box_loss_weight:
 * smooth-L1 (beta [roi_heads] smooth_l1_beta) on the deltas, or an IoU-type loss (docs/DESIGN.md, "The box-regression loss switch") on the
 * boxes decoded either around a unit proposal at the origin (box_loss_space = proposal) or around the
 * real proposal in image pixels (image).
 *
 * Gradients are written for the model's stage outputs (d_objectness, d_rpn_deltas, d_class_logits,
 * d_box_deltas), already scaled by grad_scale (1 / micro-batches for gradient accumulation); nothing
 * flows into the proposals. All temporaries come from the caller's arena.
 *
 * Randomness: image i of the batch samples from its own substream of rng, keyed by its global slot
 * (md_gt_batch.slot0 + i) — the RPN sampler at counter + slot * 2^24, the RoI sampler at
 * counter + slot * 2^24 + 2^23 — so an image's samples do not depend on which other images share its
 * process. Data-parallel training (md_gt_batch.sum_over_ranks) also sums the two normalisers (sampled
 * anchors, sampled RoIs) over the ranks (dist.h): each rank's loss and gradients are then its share of
 * the one-process batch's, and their sum over the ranks is the one-process value. */
#ifndef MINIDET_TARGETS_H
#define MINIDET_TARGETS_H
#include "minidet/arena.h"
#include "minidet/config.h"
#include "minidet/error.h"
#include "minidet/rng.h"

/* Ground truth of a batch, in the (resized, flipped) coordinates of the network input. */
typedef struct {
    int n;                 /* images */
    const float *boxes;    /* all boxes, (x1, y1, x2, y2) */
    const int *labels;     /* class of each box, 1..K-1 */
    const int *begin;      /* n: first box of image i */
    const int *count;      /* n: boxes of image i */
    int slot0;             /* global slot of image 0 (a data-parallel shard's first image; 0 otherwise) */
    int sum_over_ranks;    /* 1: normalisers summed over the ranks of a data-parallel job (collective) */
} md_gt_batch;

typedef struct {
    float loss_objectness, loss_box;
    int num_sampled, num_pos;  /* of this process's images; the loss divisor is num_sampled summed over the ranks */
} md_rpn_loss_result;

/* anchors: A x 4 (shared by every image); objectness: n x A; deltas: n x A x 4.
 * d_objectness (n x A) and d_deltas (n x A x 4) are overwritten (zeros except sampled anchors). */
md_status md_rpn_loss(const md_rpn_config *cfg, md_arena *arena, const md_gt_batch *gt, const float *anchors, int A,
                      const float *objectness, const float *deltas, md_rng *rng, float grad_scale, float *d_objectness,
                      float *d_deltas, md_rpn_loss_result *out);

/* The sampled RoIs of a batch and their targets. */
typedef struct {
    int R;                 /* sampled RoIs, all images */
    float *rois;           /* R x 5 (image index, x1, y1, x2, y2) */
    int *labels;           /* R: 0 background, >= 1 class */
    float *boxes;          /* R x 4: the RoI boxes (same as rois[:, 1:5]) */
    float *gt_boxes;       /* R x 4: matched GT box (zeros for background / images without GT) */
    int num_pos;
    int normalizer;        /* the loss divisor: R, summed over the ranks with md_gt_batch.sum_over_ranks */
} md_roi_targets;

/* proposals[i]: num_proposals[i] x 4 (no gradient). */
md_status md_roi_sample(const md_roi_heads_config *cfg, md_arena *arena, const md_gt_batch *gt, float *const *proposals,
                        const int *num_proposals, md_rng *rng, md_roi_targets *t);

typedef struct {
    float loss_classifier, loss_box;
} md_roi_loss_result;

/* class_logits: R x K, box_deltas: R x 4K. d_class_logits / d_box_deltas are overwritten. */
md_status md_roi_loss(const md_roi_heads_config *cfg, md_arena *arena, const md_roi_targets *t, const float *class_logits,
                      const float *box_deltas, int K, float grad_scale, float *d_class_logits, float *d_box_deltas,
                      md_roi_loss_result *out);

#endif
