/* model_internal.h — layer structures and saved activations of the detector (private to src/model).
 *
 * A md_conv is one convolution with its parameter-registry indices; convs followed by a frozen BN keep
 * the BN folded into wf/bf (recomputed from the registry by conv_fold). Saved activations for backward
 * live in md_step_saved, allocated from the step's arena. */
#ifndef MINIDET_MODEL_INTERNAL_H
#define MINIDET_MODEL_INTERNAL_H
#include <stdint.h>
#include "minidet/model.h"

typedef struct {
    int w, b, bn;   /* registry indices: weight, bias (-1 none), bn.weight (-1 none; bias/mean/var follow) */
    int ic, oc, k, stride, pad;
    int trainable;
    int bn_train;   /* 1: [model] norm = bn and trainable: BatchNorm2d with batch statistics while training
                     * (bn.weight/bias trainable, running_mean/var buffers updated), folded running stats in eval */
    float *wf, *bf; /* weights used by forward: folded copies (bn >= 0) or the registry data */
    float *scale;   /* frozen-BN scale per output channel (bn >= 0) */
} md_conv;

typedef struct {
    md_conv c1, c2, c3, down;
    int bottleneck, has_down;
    int down_pool; /* ResNet-vd: the shortcut is avgpool(2, 2, ceil_mode, no pad count) then a 1x1 stride-1 conv */
    int stage; /* 1..4 */
    int first; /* first block of its stage */
} md_block;

typedef struct {
    int depth, bottleneck;
    md_conv stem;    /* conv1 + bn1; ResNet-vd: conv1.6 + bn1, the last conv of the deep stem */
    int vd;
    md_conv stem_vd[2]; /* ResNet-vd deep stem: conv1.0 + conv1.1 (stride 2), conv1.3 + conv1.4 */
    int nblocks;
    md_block *blocks;
    int out_ch[4];
    int lowest_trainable; /* 0 = conv1, 1..4 = layer1..4, 5 = nothing trainable */
} md_resnet;

typedef struct {
    md_conv inner[4], layer[4];
    int channels;
} md_fpn;

typedef struct {
    md_conv conv, cls, bbox;
} md_rpn_head;

typedef struct {
    int fc6_w, fc6_b, fc7_w, fc7_b, cls_w, cls_b, box_w, box_b; /* registry indices */
    int in_features, rep, num_classes;
} md_box_head;

struct md_detector_impl {
    md_resnet resnet;
    md_fpn fpn;
    md_rpn_head rpn;
    md_box_head head;
    float *fold_block; /* folded weights/biases/scales of the BN convs */
    size_t fold_floats;
};

/* What a training-mode BatchNorm keeps for backward: its input (the conv output) and batch statistics. */
typedef struct {
    float *x;             /* N x C x H x W, the conv output before BN */
    float *mean, *invstd; /* C */
} md_bn_act;

typedef struct {
    const float *in;
    float *t1, *t2, *out;
    md_bn_act bn[4];   /* c1, c2, c3, down (used when the conv has bn_train) */
    int H, W, OH, OW;  /* input and output spatial size */
    int H1, W1;        /* size of t1 */
} md_block_act;

struct md_step_saved {
    const float *images;
    int sH, sW, pH, pW;
    float *stem, *pool;
    md_bn_act stem_bn;
    float *stem_vd[2];       /* ResNet-vd: outputs (after ReLU) of the first two stem convs, kept for backward */
    md_bn_act stem_vd_bn[2]; /* ... and their training-mode BN state (norm = bn) */
    int32_t *argmax;
    md_block_act *blk;
    float *C[4];
    int cH[4], cW[4];
    float *inner[4];      /* FPN top-down sums (input of layer_blocks) */
    float *rpn_t[MD_FPN_LEVELS]; /* RPN head conv output after relu */
    float roi_scale[MD_ROI_LEVELS];
    int kmin, kmax;
    float *pooled, *h6, *h7;
    int have_roi;
};

/* conv helpers (resnet.c) */
md_status md_conv_forward_layer(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                                float **out, int *OH, int *OW);
md_status md_conv_forward_into(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                               float *out);
/* Accumulates parameter grads (if trainable) and din (if not NULL). */
md_status md_conv_backward_layer(md_detector *det, md_arena *a, const md_conv *c, float *din, const float *dout,
                                 const float *in, int N, int H, int W);
void md_conv_fold(md_detector *det, md_conv *c);
/* A conv followed by its BN: with training && c->bn_train, conv with the raw weights into an arena buffer,
 * then BatchNorm2d in training mode into out (running statistics updated), keeping what backward needs in
 * *save; otherwise md_conv_forward_into (folded frozen BN / running statistics). */
md_status md_conv_bn_forward_into(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                                  float *out, int training, md_bn_act *save);
/* Backward of md_conv_bn_forward_into: through the training BN (accumulating bn weight/bias grads) when
 * c->bn_train and save->x is set, else md_conv_backward_layer. */
md_status md_conv_bn_backward_layer(md_detector *det, md_arena *a, const md_conv *c, float *din, const float *dout,
                                    const float *in, int N, int H, int W, const md_bn_act *save);
static inline int md_conv_out(int H, int k, int s, int p) { return (H + 2 * p - k) / s + 1; }

/* registry building (detector.c) */
int md_reg_add(md_detector *det, const char *name, int ndim, const int *shape, int trainable, int is_buffer);
md_status md_reg_conv(md_detector *det, md_conv *c, const char *prefix, const char *bn_prefix, int ic, int oc, int k,
                      int stride, int pad, int bias, int trainable);

/* det->on_grad_final for every trainable tensor whose name starts with prefix ("" = all) not reported
   yet this step; `reported` (num_params bytes, zeroed at the start of the backward pass) tracks them
   (NULL: no reports, for a stage's backward run on its own). */
md_status md_grads_final(md_detector *det, uint8_t *reported, const char *prefix);
md_status md_resnet_build(md_detector *det);
md_status md_resnet_forward(md_detector *det, md_arena *a, md_step *st);
md_status md_resnet_backward(md_detector *det, md_arena *a, md_step *st, float *dC[4], uint8_t *reported);
md_status md_fpn_build(md_detector *det);
md_status md_fpn_forward(md_detector *det, md_arena *a, md_step *st);
/* dP: gradients of P2..P6 (modified in place); dC: outputs (NULL entries are not needed). */
md_status md_fpn_backward(md_detector *det, md_arena *a, md_step *st, float *dP[MD_FPN_LEVELS], float *dC[4]);
md_status md_rpn_build(md_detector *det);
md_status md_rpn_forward(md_detector *det, md_arena *a, md_step *st);
md_status md_rpn_backward(md_detector *det, md_arena *a, md_step *st, const float *d_obj, const float *d_del,
                          float *dP[MD_FPN_LEVELS]);
md_status md_box_head_build(md_detector *det);
md_status md_roi_backward(md_detector *det, md_arena *a, md_step *st, const float *d_cls, const float *d_box,
                          float *dP[MD_FPN_LEVELS]);

/* top-k (det_box.c): indices of the k largest scores (sorted decreasing, ties by lower index);
 * scratch: n * 8 bytes. */
void md_det_topk(const float *scores, int n, int k, int *out, int *scratch);
/* A float config value as the decimal the user wrote (0.7f -> 0.7), so thresholds compare like
 * torchvision's Python doubles. */
double md_cfg_double(float v);

#endif
