/* box_loss.h — the box-regression losses: IoU, GIoU, DIoU, CIoU on boxes, smooth-L1 on
 * deltas, and the RoI-head / RPN regression loss that switches between them (the only
 * implementation of each: training computes its box losses here).
 *
 * md_iou_loss is the public per-box entry point (docs/DESIGN.md, "Library"). Values and gradients
 * follow torchvision.ops 0.14 exactly, including its quirks:
 *   iou  = inter / (union + 1e-7), inter = 0 unless the boxes overlap with positive
 *          width AND height (masked, so disjoint or touching boxes get no gradient
 *          through the intersection); where two coordinates tie in max()/min() the
 *          gradient is split half/half as torch's maximum/minimum do;
 *   IoU  loss = 1 - iou  (torchvision has no IoU loss; this is its iou with eps 1e-7);
 *   GIoU loss = 1 - iou + (area_c - union) / (area_c + 1e-7)      (generalized_box_iou_loss);
 *   DIoU loss = 1 - iou + rho^2 / (diag_c^2 + 1e-7)               (distance_box_iou_loss);
 *   CIoU loss = DIoU + alpha v, v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2,
 *               alpha = v / (1 - iou + v + 1e-7) treated as a constant (complete_box_iou_loss;
 *               its DIoU part always uses eps 1e-7 whatever eps it is given — same here).
 * Computation is in double from the float inputs, so the only error is the final rounding.
 * Degenerate boxes (zero or negative width/height) give finite values and gradients: a zero
 * denominator makes its quotient 0, and atan(w/h) with h == 0 is +-pi/2 (0 if w == 0) with no
 * gradient (torchvision would give NaN gradients there). Non-finite coordinates are an error:
 * md_iou_loss returns NAN (grad zeroed) and sets MD_ERR_NUMERIC; the batched forms and the
 * regression loss return MD_ERR_NUMERIC naming the row. */
#ifndef MINIDET_BOX_LOSS_H
#define MINIDET_BOX_LOSS_H
#include "minidet/box.h"
#include "minidet/config.h"
#include "minidet/error.h"

/* The IoU-type kinds of md_box_loss_kind (config.h) under md_iou_loss's names: MD_LOSS_IOU = 0, MD_LOSS_GIOU = 1,
 * MD_LOSS_DIOU = 2, MD_LOSS_CIOU = 3. */
typedef md_box_loss_kind md_iou_kind;
#define MD_LOSS_IOU MD_BOXLOSS_IOU
#define MD_LOSS_GIOU MD_BOXLOSS_GIOU
#define MD_LOSS_DIOU MD_BOXLOSS_DIOU
#define MD_LOSS_CIOU MD_BOXLOSS_CIOU

/* Loss of one predicted box against one target box, both (x1, y1, x2, y2).
   If grad is not NULL it receives d loss / d pred (4 floats). */
float md_iou_loss(md_iou_kind kind, const float pred[4], const float target[4], float grad[4]);

/* As md_iou_loss; ciou_alpha_gate = 1 sets CIoU's alpha to 0 unless iou > 0.5
 * (mmdetection / CIoU journal version). Ignored for the other kinds. */
float md_iou_loss_gated(md_iou_kind kind, const float pred[4], const float target[4], int ciou_alpha_gate,
                        float grad[4]);

/* Batched: pred, target: n x 4. forward: losses[i] (may be NULL) and *sum (may be NULL) of
 * the n losses. backward: dpred (n x 4) += dloss * d loss_i / d pred_i. Non-finite input
 * coordinates -> MD_ERR_NUMERIC naming the row (nothing written by backward for that call). */
md_status md_iou_loss_forward(float *sum, float *losses, const float *pred, const float *target, int n,
                              md_iou_kind kind, int ciou_alpha_gate);
md_status md_iou_loss_backward(float *dpred, const float *pred, const float *target, int n, md_iou_kind kind,
                               int ciou_alpha_gate, float dloss);

/* ------------------------------------------------------------ smooth L1, SUM reduction
 * F.smooth_l1_loss(x, t, beta, reduction="sum") over n elements, d = x - t: 0.5*d^2/beta if |d| < beta, else
 * |d| - 0.5*beta (beta = 0: |d|), accumulated in double. backward: dx += dloss * d/beta inside |d| < beta, else
 * dloss * sign(d). So with beta = 0 the subgradient at d == 0 is 0, as F.l1_loss's (PyTorch 1.13's smooth_l1
 * kernel gives -1 there). md_box_regression_loss uses the same element function. Callers divide by their
 * normaliser themselves. */
float md_smooth_l1_forward(const float *x, const float *target, int n, float beta);
void md_smooth_l1_backward(float *dx, const float *x, const float *target, int n, float beta, float dloss);

/* ------------------------------------------------------------ regression loss (RoI heads / RPN)
 * Settings of the loss switch (docs/DESIGN.md, "The box-regression loss switch"). */
typedef struct {
    md_box_loss_kind kind;   /* smooth_l1 | iou | giou | diou | ciou */
    md_box_loss_space space; /* IoU kinds only: MD_SPACE_PROPOSAL or MD_SPACE_IMAGE */
    float weight;            /* loss multiplier (1 smooth-L1, 10 IoU/GIoU, 12 DIoU/CIoU by default) */
    float beta;              /* smooth-L1 beta (1/9 torchvision) */
    int ciou_alpha_gate;     /* CIoU alpha = 0 unless IoU > 0.5 */
    md_box_coder coder;      /* (10,10,5,5) RoI heads, (1,1,1,1) RPN; clip log(1000/16) */
    int normalizer;          /* loss is divided by this; <= 0 means by R (all sampled rows) */
} md_box_loss_opts;

/* The RoI-head settings of a config: kind, space, weight, beta, gate from c, coder (10,10,5,5),
 * normalizer = R. */
md_box_loss_opts md_box_loss_opts_roi(const md_roi_heads_config *c);

/* Box-regression loss over R sampled rows (torchvision fastrcnn_loss's box term):
 *   deltas:    R x C x 4   predicted (dx, dy, dw, dh), class-specific (C = num_classes) or
 *                          class-agnostic (C = 1, used for every positive label: the RPN);
 *   proposals: R x 4       the reference boxes the deltas are relative to (image pixels);
 *   gt:        R x 4       matched ground-truth box of each row (read for foreground rows only);
 *   labels:    R           class (>= 1 foreground; 0 background; < 0 ignored), < C when C > 1.
 * Only foreground rows and only their label's slot contribute:
 *   loss = weight / normalizer * sum_fg l(row)
 *   smooth_l1: l = sum_4 smooth_l1(delta - encode(gt, proposal), beta); with weight 1 and
 *              normalizer R this is exactly torchvision's
 *              smooth_l1_loss(box_regression[pos, label], regression_targets[pos], beta, "sum") / R;
 *   IoU kinds, space PROPOSAL (Detectron-GIoU, official DIoU code, PaddleDetection): both the
 *              predicted deltas and the target deltas encode(gt, proposal) are decoded with the
 *              coder's weights and clamp around the unit box centred at the origin, (-0.5, -0.5,
 *              0.5, 0.5) (width = height = 1, centre (0, 0): the official code's bbox_transform sets
 *              pred_ctr = dx / wx, pred_w = exp(dw / ww)), then l = md_iou_loss(pred box, target box);
 *   IoU kinds, space IMAGE (mmdetection reg_decoded_bbox): the prediction is decoded around its
 *              proposal into pixels and compared with the gt box itself.
 * *loss receives the loss; ddeltas (R x C x 4, may be NULL) is WRITTEN with d loss / d deltas
 * (zeros in every other slot and row; where the dw/dh clamp is active that entry gets 0).
 * Errors: bad sizes/labels -> MD_ERR_ARG; a non-finite delta, proposal or gt coordinate in a
 * foreground row -> MD_ERR_NUMERIC naming the row (the trainer stops on it). */
md_status md_box_regression_loss(float *loss, float *ddeltas, const float *deltas, const float *proposals,
                                 const float *gt, const int *labels, int R, int C, const md_box_loss_opts *o);

#endif
