/* ops.h — the differentiable building blocks of the detector, llm.c style.
 *
 * Every op is a pair *_forward / *_backward over raw float arrays with
 * explicit sizes; tensors are NCHW float32, contiguous. Backward functions
 * ACCUMULATE (+=) into gradient buffers (so branches that share an input can
 * both contribute); any gradient pointer may be NULL to skip it (e.g. frozen
 * weights, or no gradient to the image). Semantics follow PyTorch /
 * torchvision 0.14 exactly (that is what tests/test_ops*.c check against).
 * Ops that need temporary memory take a `scratch` buffer whose size in
 * floats is given by the matching *_scratch_floats function. Parallelism is
 * internal (OpenMP / OpenBLAS) and race-free. */
#ifndef MINIDET_OPS_H
#define MINIDET_OPS_H
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ conv2d
 * in:     N x C x H x W
 * weight: OC x C x KH x KW
 * bias:   OC (may be NULL)
 * out:    N x OC x OH x OW, OH = (H + 2*pad - dilation*(KH-1) - 1) / stride + 1 (same for OW) */
typedef struct {
    int N, C, H, W;
    int OC, KH, KW;
    int stride, pad, dilation;
    int OH, OW; /* filled by md_conv2d_init */
    int chunk_rows; /* output rows per im2col chunk: set by md_conv2d_init; a caller may lower it (>= 1)
                       before sizing scratch, e.g. to test the chunking */
    int winograd;   /* 3x3 stride-1 pad-1 convs: forward and both gradients by Winograd F(m x m, 3x3) with m = winograd
                       (2 or 4; 1 means 2), 0 = im2col. Set by md_conv2d_init: 4 when C, OC >= 128 and OH*OW >= 4096,
                       else 2 when C, OC >= 64 and OH*OW >= 1024; a caller may set it (before sizing scratch) to force a
                       tile size (only for that geometry) or disable (0) it. F(4x4)'s float error is ~10x im2col's. */
} md_conv2d_params;

/* Fills OH/OW; returns 0 if the geometry is invalid (output would be empty). */
int md_conv2d_init(md_conv2d_params *p, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad, int dilation);
/* Scratch floats (clobbered by forward and backward): one im2col chunk, C*KH*KW x chunk_rows*OW, or the
 * Winograd buffers if larger; 0 for a 1x1 stride-1 pad-0 conv, which runs as a plain GEMM and accepts scratch == NULL. */
size_t md_conv2d_scratch_floats(const md_conv2d_params *p);
void md_conv2d_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p, float *scratch);
/* din, dweight, dbias may each be NULL. */
void md_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight,
                        const md_conv2d_params *p, float *scratch);

/* ------------------------------------------------------------ frozen batch norm
 * y = x * scale[c] + shift[c]; scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale
 * (torchvision FrozenBatchNorm2d, eps = 1e-5). in/out: N x C x HW (out may alias in). */
void md_frozen_bn_params(float *scale, float *shift, const float *weight, const float *bias, const float *running_mean,
                         const float *running_var, int C, float eps);
void md_frozen_bn_forward(float *out, const float *in, const float *scale, const float *shift, int N, int C, int HW);
void md_frozen_bn_backward(float *din, const float *dout, const float *scale, int N, int C, int HW);
/* Folds a frozen BN after a conv into the conv: weight (OC x K) *= scale[oc]; bias[oc] = bias[oc]*scale + shift
 * (bias_inout must hold OC floats; pass zeros for a conv without bias). */
void md_frozen_bn_fold(float *weight, float *bias_inout, const float *scale, const float *shift, int OC, int K);

/* ------------------------------------------------------------ batch norm, training mode
 * torch.nn.BatchNorm2d in train(): statistics over N, H, W of this batch.
 * in, out: N x C x HW (out may alias in); gamma, beta: C; mean, invstd: C (written: batch mean and
 * 1 / sqrt(biased batch variance + eps), kept for backward); running_mean, running_var: C, updated in place
 * as torch does: r = (1 - momentum) * r + momentum * stat, with the UNBIASED variance (M / (M - 1), M = N*HW)
 * for running_var (either may be NULL to skip the update). y = gamma * (x - mean) * invstd + beta.
 * Sums run in double, two passes. Eval mode is md_frozen_bn_* on the running statistics.
 * Returns 0 (and writes nothing) when M < 2, where torch raises "Expected more than 1 value per channel". */
int md_batchnorm_train_forward(float *out, float *mean, float *invstd, float *running_mean, float *running_var,
                               const float *in, const float *gamma, const float *beta, int N, int C, int HW, float eps,
                               float momentum);
/* ACCUMULATES: din += gamma*invstd*(dout - mean(dout) - xhat*mean(dout*xhat)), dgamma += sum(dout*xhat),
 * dbeta += sum(dout), sums over N, HW per channel, xhat = (in - mean) * invstd. in is the forward INPUT
 * (so forward must not have overwritten it when backward is needed). din, dgamma, dbeta may be NULL. */
void md_batchnorm_train_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                                 const float *mean, const float *invstd, const float *gamma, int N, int C, int HW);

/* ------------------------------------------------------------ relu (in place allowed)
 * backward: din += dout * (out > 0), using the forward OUTPUT. */
void md_relu_forward(float *out, const float *in, size_t n);
void md_relu_backward(float *din, const float *dout, const float *out, size_t n);
/* In place: g = g * (out > 0), i.e. g becomes the gradient w.r.t. the ReLU input when it held the gradient
 * w.r.t. its output (the same values md_relu_backward adds into a zeroed buffer, without one). */
void md_relu_backward_inplace(float *g, const float *out, size_t n);
/* Fused, same values as the two steps: out = relu(a + b) (out may alias a or b), and
 * g = (g + h) * (out > 0) in place (h may be NULL: then md_relu_backward_inplace). */
void md_add_relu_forward(float *out, const float *a, const float *b, size_t n);
void md_add_relu_backward_inplace(float *g, const float *h, const float *out, size_t n);

/* ------------------------------------------------------------ max pool 2d (no dilation, floor mode)
 * in: N x C x H x W -> out: N x C x OH x OW, OH = (H + 2*pad - k) / stride + 1.
 * argmax (same size as out, int32, index into the H*W plane) is written by forward, read by backward.
 * Padding is -inf (PyTorch). Ties: first maximum in row-major window order (PyTorch CPU). */
void md_maxpool2d_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int k, int stride, int pad,
                          int OH, int OW);
void md_maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H, int W, int OH, int OW);

/* ------------------------------------------------------------ average pool 2d (torch nn.AvgPool2d, no divisor_override)
 * Output size (torch's pooling_output_shape): OH = (H + 2 pad - k + (ceil_mode ? stride - 1 : 0)) / stride + 1,
 * minus 1 when ceil_mode and the last window would start at or beyond H + pad; returns < 1 when empty.
 * Window of output oh: rows [oh stride - pad, min(that + k, H + pad)) clipped to [0, H) (same for w). The
 * divisor is the window's size before clipping to the image (count_include_pad = 1) or after it (= 0).
 * ResNet-vd's shortcut is k = 2, stride = 2, pad = 0, ceil_mode = 1, count_include_pad = 0: an odd
 * last row/column is averaged alone. Requires pad <= k / 2 (as torch). */
int md_avgpool2d_out(int H, int k, int stride, int pad, int ceil_mode);
/* in: N x C x H x W -> out: N x C x OH x OW (OH, OW from md_avgpool2d_out). */
void md_avgpool2d_forward(float *out, const float *in, int N, int C, int H, int W, int k, int stride, int pad,
                          int count_include_pad, int OH, int OW);
/* dout: N x C x OH x OW -> din: N x C x H x W, accumulated (+=); din NULL: nothing. */
void md_avgpool2d_backward(float *din, const float *dout, int N, int C, int H, int W, int k, int stride, int pad,
                           int count_include_pad, int OH, int OW);

/* ------------------------------------------------------------ nearest upsample to a given size
 * F.interpolate(x, size=(OH, OW), mode="nearest"): src = min(floor(dst * (H / OH)), H - 1) with the scale
 * computed in float as PyTorch does. in: N x C x H x W, out: N x C x OH x OW. */
void md_upsample_nearest_forward(float *out, const float *in, int N, int C, int H, int W, int OH, int OW);
void md_upsample_nearest_backward(float *din, const float *dout, int N, int C, int H, int W, int OH, int OW);

/* ------------------------------------------------------------ elementwise add: out = a + b (out may alias a or b)
 * backward: da += dout, db += dout. */
void md_add_forward(float *out, const float *a, const float *b, size_t n);
void md_add_backward(float *da, float *db, const float *dout, size_t n);

/* ------------------------------------------------------------ linear (torch.nn.Linear layout)
 * in: B x IN, weight: OUT x IN, bias: OUT (may be NULL), out: B x OUT.
 * Flatten (N x C x H x W -> N x CHW) is a no-op on contiguous NCHW memory: pass the same pointer. */
void md_linear_forward(float *out, const float *in, const float *weight, const float *bias, int B, int IN, int OUT);
void md_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight, int B,
                        int IN, int OUT);

/* ------------------------------------------------------------ softmax cross-entropy, mean over non-ignored rows
 * logits: N x K, labels: N (label == ignore_index is skipped). probs (N x K) is written by forward and read by
 * backward. Returns the mean loss (0 if every row is ignored, as a 0-weight sum; PyTorch gives NaN there).
 * normalizer > 0 replaces the divisor count_not_ignored (a data-parallel job divides by the batch's count over
 * all ranks); <= 0 keeps F.cross_entropy's mean. A label outside [0, K) that is not ignore_index: returns NaN
 * and sets an MD_ERR_ARG message.
 * backward: dlogits += (dloss * (1 / divisor)) * (probs - onehot), in float; nothing if every row is ignored. */
float md_cross_entropy_forward(float *probs, const float *logits, const int32_t *labels, int N, int K, int ignore_index,
                               int normalizer);
void md_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *labels, int N, int K, int ignore_index, float dloss,
                               int normalizer);

/* ------------------------------------------------------------ sigmoid binary cross-entropy with logits, mean
 * F.binary_cross_entropy_with_logits(x, t) over n elements (numerically stable form); normalizer > 0 replaces
 * the divisor n (as for the cross-entropy), <= 0 keeps the mean.
 * backward: dx += (dloss * (1 / divisor)) * (sigmoid(x) - t), in float. */
float md_bce_logits_forward(const float *x, const float *target, int n, int normalizer);
void md_bce_logits_backward(float *dx, const float *x, const float *target, int n, float dloss, int normalizer);

/* ------------------------------------------------------------ RoIAlign (torchvision.ops.roi_align)
 * feat: N x C x H x W; rois: R x 5 (batch_index, x1, y1, x2, y2) in image coordinates;
 * out: R x C x PH x PW. spatial_scale maps image to feature coords; sampling_ratio <= 0 means adaptive
 * (ceil(roi_size / pooled_size)); aligned = 1 shifts by -0.5 px (torchvision aligned=True).
 * RoIs whose batch index is outside [0, N) or with non-finite coordinates give zeros and no gradient.
 * backward accumulates into dfeat, parallel over (image, channel block) without races; the result is
 * bitwise independent of the thread count. */
void md_roi_align_forward(float *out, const float *feat, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                          float spatial_scale, int sampling_ratio, int aligned);
void md_roi_align_backward(float *dfeat, const float *dout, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                           float spatial_scale, int sampling_ratio, int aligned);

#endif
