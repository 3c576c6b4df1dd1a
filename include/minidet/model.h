/* model.h — the detector: ResNet-FPN Faster R-CNN, torchvision 0.14 compatible.
 *
 * md_detector is the whole network of torchvision's fasterrcnn_resnet50_fpn
 * (docs/DESIGN.md, "The network"): ResNet 18/34/50/101 body with frozen BatchNorm folded into
 * the convolutions, FPN P2..P6, anchor generator, RPN head and proposal
 * generation, MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor and the
 * inference post-processing. With [model] norm = bn the BatchNorm of the trainable stages is
 * torch.nn.BatchNorm2d instead: batch statistics while training (running_mean/var updated with
 * momentum 0.1, bn weight/bias trained), the folded running statistics in eval and inference.
 * Every learnable tensor and every BN buffer
 * is an entry of a parameter registry named by its torchvision state_dict key
 * ("backbone.body.layer1.0.conv1.weight", "rpn.head.conv.0.0.weight",
 * "roi_heads.box_predictor.bbox_pred.bias", ...), so checkpoints are
 * torchvision-compatible and the trainer / optimizer / checkpoint code can
 * iterate parameters generically.
 *
 * Inference: md_detector_infer() on a batch of already transformed images
 * (normalised, resized, zero-padded to a multiple of 32: see data.h).
 *
 * Training is split into stages the trainer drives (it owns targets, losses,
 * sampling and SGD):
 *   md_detector_zero_grad(det)
 *   md_detector_forward_rpn(det, arena, images, ..., training=1, &step)   (a)
 *       -> step.anchors, step.objectness, step.rpn_deltas
 *   md_detector_proposals(det, arena, &step)                               (b)
 *       -> step.proposals[i], step.num_proposals[i]   (no gradient)
 *   ... trainer: RPN targets/losses, add GT boxes to proposals, sample RoIs
 *   md_detector_forward_roi(det, arena, &step, rois, R)                    (c)
 *       -> step.class_logits (R x K), step.box_deltas (R x 4K)
 *   ... trainer: RoI losses and their gradients
 *   md_detector_backward(det, arena, &step, d_obj, d_deltas, d_cls, d_box) (d)
 *       -> det->params[i].grad accumulated for every trainable parameter
 *   ... trainer: SGD on params[i].data (trainable ones), then next step.
 * All activations live in the caller's md_arena: reset it once per step
 * (before forward_rpn) and do not reset it before backward. The folded
 * conv weights of trainable layers are recomputed at every forward_rpn, so
 * the optimizer may update params[i].data in place between steps.
 *
 * Weights initialisation (whatever a checkpoint does not provide), following
 * torchvision 0.14: ResNet convs kaiming_normal(fan_out, relu), frozen BN
 * weight 1, bias 0, mean 0, var 1; FPN convs kaiming_uniform(a=1), bias 0;
 * RPN head convs normal(std 0.01), bias 0; TwoMLPHead and FastRCNNPredictor
 * nn.Linear defaults (weight and bias uniform(+-1/sqrt(fan_in))). We keep the
 * torchvision predictor init (not detectron2's normal 0.01/0.001) so that a
 * run is comparable with torchvision's reference recipe.
 *
 * Threads: internal (OpenMP / OpenBLAS). Not reentrant per md_detector. */
#ifndef MINIDET_MODEL_H
#define MINIDET_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/arena.h"
#include "minidet/config.h"
#include "minidet/error.h"

#define MD_FPN_LEVELS 5 /* P2, P3, P4, P5, P6 (torchvision names '0','1','2','3','pool') */
#define MD_ROI_LEVELS 4 /* RoIAlign pools from P2..P5 */
#define MD_PARAM_NAME_MAX 96
#define MD_MAX_BATCH 64

/* One entry of the parameter registry. */
typedef struct {
    char name[MD_PARAM_NAME_MAX]; /* torchvision state_dict key */
    int ndim;
    int shape[4];
    size_t numel;
    float *data;      /* numel floats, owned by the detector */
    float *grad;      /* numel floats, or NULL when the tensor is not trained */
    int trainable;    /* 1: the optimizer updates it (grad != NULL) */
    int weight_decay; /* 1: apply weight decay (every trainable tensor, as torchvision's reference) */
    int is_buffer;    /* 1: BN buffer (frozen-BN weight/bias, running_mean/var), never touched by the optimizer; the
                       * running statistics of a [model] norm = bn layer are updated by its training forward */
    int loaded;       /* set by md_detector_load_weights when the checkpoint provided it */
} md_param;

typedef struct md_detector_impl md_detector_impl; /* layers, folded weights: private to src/model */

typedef struct {
    md_model_config model;
    md_rpn_config rpn;
    md_roi_heads_config roi;
    md_test_config test;
    int num_params;
    md_param *params;
    size_t num_trainable_floats; /* sum of numel over trainable params */
    md_detector_impl *impl;
    /* Optional (NULL by default): md_detector_backward calls it with the index of every trainable tensor
     * as soon as that tensor's gradient for the step is final (heads first, then the FPN, then the ResNet
     * stages from layer4 down), so data-parallel training can start summing it while the rest of the
     * backward pass runs. An error it returns stops the backward pass. */
    md_status (*on_grad_final)(void *ctx, int param);
    void *on_grad_final_ctx;
} md_detector;

/* What md_detector_load_weights did. Lists hold at most MD_LOAD_LIST names each (counts are exact). */
#define MD_LOAD_LIST 8
typedef struct {
    int loaded;      /* tensors copied into the model */
    int missing;     /* model tensors absent from the file (keep their initialisation) */
    int unexpected;  /* file tensors the model does not have (ignored) */
    int mismatched;  /* present in both with different shapes (skipped when strict = 0) */
    int excluded;    /* model tensors under an exclude prefix (keep their initialisation) */
    char exclude[256]; /* the exclude prefixes as given ("" = none) */
    char missing_names[MD_LOAD_LIST][MD_PARAM_NAME_MAX];
    char unexpected_names[MD_LOAD_LIST][MD_PARAM_NAME_MAX];
    char mismatched_desc[MD_LOAD_LIST][256]; /* "name: file [a, b] vs model [c, d]" */
} md_load_report;

/* Builds the network described by cfg (model, rpn, roi_heads, test sections) and initialises every
 * tensor as torchvision does, with randomness from md_rng(cfg->run.seed, MD_STREAM_INIT).
 * Errors: MD_ERR_ARG for an unsupported depth / vd / width / num_classes, MD_ERR_NOMEM. */
md_status md_detector_create(md_detector *det, const md_config *cfg);
void md_detector_free(md_detector *det);

/* Loads a safetensors checkpoint with torchvision state_dict names (old torchvision names
 * "rpn.head.conv.weight" and "backbone.fpn.*_blocks.N.weight" are accepted too; num_batches_tracked and
 * optimizer.* tensors are ignored). strict = 1: any missing, unexpected or mismatched tensor is an
 * MD_ERR_SHAPE error that names the file and lists the first mismatches, and the model is left
 * unchanged. strict = 0: loads what matches, keeps the initialisation for the rest, fills report.
 * report may be NULL. After loading, frozen BN is re-folded. */
md_status md_detector_load_weights(md_detector *det, const char *path, int strict, md_load_report *report);
/* Same, but model tensors whose name starts with one of the comma-separated prefixes of exclude
 * ([model] weights_exclude syntax, see md_prefix_list_parse; NULL or "" = none) are not loaded: they keep
 * their current values (the initialisation), are neither missing nor loaded but counted in report->excluded,
 * and file tensors under those prefixes are skipped (never unexpected or mismatched). BN buffers are
 * tensors like any other (running statistics under "backbone.body.layer4." are excluded with it).
 * Errors (model unchanged): MD_ERR_ARG for bad prefix syntax, or for a prefix that matches no tensor of the
 * model (named: a typo would otherwise silently load everything). */
md_status md_detector_load_weights_ex(md_detector *det, const char *path, int strict, const char *exclude,
                                      md_load_report *report);
/* Formats a one-paragraph summary of report ("loaded N tensors; initialised M: a, b, ...; ..."). */
void md_load_report_format(const md_load_report *report, char *buf, size_t n);
/* Writes every registry tensor (params and frozen-BN buffers) with torchvision names, plus the given
 * metadata pairs (may be 0), atomically. */
md_status md_detector_save_weights(const md_detector *det, const char *path, int n_meta, const char *const *meta_keys,
                                   const char *const *meta_values);

/* Registry helpers. */
md_param *md_detector_param(md_detector *det, const char *name); /* NULL if absent */
void md_detector_zero_grad(md_detector *det);
/* Re-folds frozen BN into every conv (call after changing params[i].data of a FROZEN conv by hand;
 * trainable convs are re-folded automatically at each forward). */
void md_detector_refold(md_detector *det);

/* ------------------------------------------------------------------ training stages
 * A step's state. Public fields are outputs the trainer reads; `saved` is private (activations). */
typedef struct md_step_saved md_step_saved;
typedef struct {
    /* batch geometry: images N x 3 x H x W (padded), image_sizes[i] = {h, w} before padding */
    int N, H, W;
    int image_h[MD_MAX_BATCH], image_w[MD_MAX_BATCH];
    int training;

    /* FPN outputs P2..P6: N x C x level_h[l] x level_w[l] */
    int fpn_channels;
    int level_h[MD_FPN_LEVELS], level_w[MD_FPN_LEVELS];
    float *features[MD_FPN_LEVELS];

    /* (a) RPN. Anchors are identical for every image of the batch and are ordered as torchvision
     * concatenates them: level-major, then (y, x) location, then the [rpn] aspect_ratios (default 0.5, 1, 2).
     * level_start[l] .. level_start[l+1]-1 are the anchors of level l. */
    int num_anchors;                    /* A: per image, all levels */
    int level_start[MD_FPN_LEVELS + 1];
    float *anchors;                     /* A x 4 (x1, y1, x2, y2) */
    float *objectness;                  /* N x A logits (same order as anchors) */
    float *rpn_deltas;                  /* N x A x 4 (dx, dy, dw, dh), box coder weights (1, 1, 1, 1) */

    /* (b) proposals, per image sorted by decreasing objectness (torchvision order) */
    int num_proposals[MD_MAX_BATCH];
    float *proposals[MD_MAX_BATCH];     /* num_proposals[i] x 4 */
    float *proposal_scores[MD_MAX_BATCH]; /* sigmoid(objectness) of each proposal */

    /* (c) RoI heads on R given RoIs */
    int R, num_classes;
    const float *rois;                  /* R x 5 (batch index, x1, y1, x2, y2), as given */
    int *roi_level;                     /* R: pooling level 0..3 (P2..P5) chosen by the LevelMapper */
    float *class_logits;                /* R x K */
    float *box_deltas;                  /* R x 4K, box coder weights (10, 10, 5, 5) */

    md_step_saved *saved;
} md_step;

/* (a) Backbone + FPN + RPN head. images: N x 3 x H x W (normalised, zero padded; H and W need not be
 * multiples of 32 but torchvision pads to 32), image_sizes: N x 2 {h, w} of the unpadded content.
 * training = 1 stores what backward needs and selects the training top-n for (b). */
md_status md_detector_forward_rpn(md_detector *det, md_arena *arena, const float *images, int N, int H, int W,
                                  const int *image_sizes, int training, md_step *step);
/* (b) Proposals (torchvision RegionProposalNetwork.filter_proposals): per level top pre_nms_top_n by
 * objectness, decode, clip to the image size, drop boxes with a side < 1e-3, drop scores < score_thresh,
 * NMS per level at nms_thresh, keep post_nms_top_n per image. Train or test top-n by step->training. */
md_status md_detector_proposals(md_detector *det, md_arena *arena, md_step *step);
/* (c) MultiScaleRoIAlign + TwoMLPHead + FastRCNNPredictor on rois (R x 5, batch index first; must stay
 * valid until backward). May be called once per step. */
md_status md_detector_forward_roi(md_detector *det, md_arena *arena, md_step *step, const float *rois, int R);
/* (d) Backward from the gradients of the loss w.r.t. the stage outputs, each in the layout of the
 * matching output (any may be NULL = zero): d_objectness N x A, d_rpn_deltas N x A x 4,
 * d_class_logits R x K, d_box_deltas R x 4K. ACCUMULATES into params[i].grad of trainable tensors only;
 * stops below the lowest trainable ResNet stage. Needs step->training = 1. Calls det->on_grad_final
 * (when set) for each trainable tensor once its gradient is final, every tensor exactly once. */
md_status md_detector_backward(md_detector *det, md_arena *arena, md_step *step, const float *d_objectness,
                               const float *d_rpn_deltas, const float *d_class_logits, const float *d_box_deltas);

/* ------------------------------------------------------------------ inference */
typedef struct {
    int n;          /* number of detections, <= detections_per_img */
    float *boxes;   /* n x 4 (x1, y1, x2, y2) in ORIGINAL image pixels */
    float *scores;  /* n, decreasing */
    int *labels;    /* n, contiguous class index 1..K-1 */
} md_detections;

/* RoI post-processing (torchvision RoIHeads.postprocess_detections + transform.postprocess) on a step
 * whose (c) ran on the proposals of (b): softmax, per-class decode, clip, score > score_thresh, side
 * >= 1e-2, per-class NMS (greedy or DIoU per det->test), top detections_per_img, then boxes are scaled
 * from image_sizes to orig_sizes (N x 2 {h, w}; NULL = no rescale). out: N entries, arena memory. */
md_status md_detector_postprocess(md_detector *det, md_arena *arena, md_step *step, const int *orig_sizes,
                                  md_detections *out);
/* Whole inference: (a) + (b) + (c) on the proposals + postprocess. */
md_status md_detector_infer(md_detector *det, md_arena *arena, const float *images, int N, int H, int W,
                            const int *image_sizes, const int *orig_sizes, md_detections *out);

/* Channels of a ResNet stage output (C2..C5 = stage 0..3) for this config: torchvision widths times
 * width_mult (rounded, at least 1), times 4 for bottleneck depths. */
int md_resnet_out_channels(const md_model_config *m, int stage);

#endif
