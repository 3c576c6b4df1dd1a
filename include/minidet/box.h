/* box.h — box geometry for detection: the box coder, IoU matrix, clipping, the
 * matcher, the balanced sampler and non-maximum suppression (greedy, batched, DIoU).
 *
 * Boxes are (x1, y1, x2, y2) floats, row-major N x 4. Everything follows
 * torchvision 0.14 (models/detection/_utils.py, ops/boxes.py, the CPU nms
 * kernel), which is the spec: widths are x2 - x1 (no "+1", TO_REMOVE = 0),
 * centres x1 + 0.5 * w, dw/dh clamped at log(1000/16) before exp(). Where
 * torchvision is undefined (NaN from 0/0 IoU of two empty boxes) this module
 * gives a finite value and says so next to the function.
 *
 * The box coder maps boxes to deltas (dx, dy, dw, dh) relative to reference
 * boxes with weights (wx, wy, ww, wh):
 *   dx = wx (gx - px) / pw, dy = wy (gy - py) / ph, dw = ww log(gw / pw), dh = wh log(gh / ph)
 * and decodes back (with the clamp). md_box_decode_row_backward propagates
 * d boxes -> d deltas; where the clamp is active (dw / ww > clip) dw gets no
 * gradient (torch.clamp passes the gradient at equality, as here).
 *
 * NMS reproduces torchvision.ops.nms exactly, including the order of boxes
 * with equal scores. Two orders matter: the 0.14 CPU nms kernel visits boxes
 * in STABLE descending score order (ties by index, NaN first; checked against
 * torchvision, the unstable order gives other kept sets), while Python-level
 * scores.sort(descending=True) — used by batched_nms's per-class path to order
 * its result — is torch's UNSTABLE CPU sort, libstdc++'s std::sort
 * (introsort). md_sort_desc reimplements that algorithm step by step so ties
 * come out in the same order (tested against torch on tied scores). */
#ifndef MINIDET_BOX_H
#define MINIDET_BOX_H
#include <stdint.h>
#include "minidet/error.h"
#include "minidet/rng.h"

/* torchvision's default bbox_xform_clip = log(1000 / 16). */
#define MD_BBOX_XFORM_CLIP 4.135166556742356f

typedef struct {
    float wx, wy, ww, wh; /* (1,1,1,1) for the RPN, (10,10,5,5) for the RoI heads */
    float clip;           /* clamp of dw/ww and dh/wh before exp(), MD_BBOX_XFORM_CLIP */
} md_box_coder;

static inline md_box_coder md_box_coder_make(float wx, float wy, float ww, float wh) {
    md_box_coder c = {wx, wy, ww, wh, MD_BBOX_XFORM_CLIP};
    return c;
}

/* ------------------------------------------------------------ box coder
 * decode (torchvision BoxCoder.decode_single): deltas: n x (4k) (k box predictions per
 * reference box, e.g. one per class), boxes: n x 4 -> out: n x (4k). Computed in float like
 * torchvision, so proposals and detections (and the top-k / NMS orders built on them) match it. */
void md_box_decode(const md_box_coder *c, float *out, const float *deltas, const float *boxes, int n, int k);

/* The coder on one row in double, for the regression losses (box_loss.h), whose only error is then
 * the final rounding:
 *   md_box_encode_row (torchvision BoxCoder.encode_single(reference_boxes=gt, proposals=ref)):
 *     t = (dx, dy, dw, dh) of gt relative to ref. Zero-width ref or gt give inf/NaN exactly as
 *     torchvision would; callers pass proposals that survived remove_small_boxes and GT with positive size.
 *   md_box_decode_row: out = the box of deltas d around ref, as md_box_decode; *k keeps what the
 *     backward needs.
 *   md_box_decode_row_backward: gd = (d out / d d)^T gb; reference boxes get no gradient (they are
 *     proposals/anchors, constants in torchvision). */
typedef struct {
    double W, H, pw, ph;  /* reference size, decoded size */
    int dw_live, dh_live; /* 0 where the clamp is active (no gradient) */
} md_box_decode_cache;
void md_box_encode_row(const md_box_coder *c, double t[4], const double gt[4], const double ref[4]);
void md_box_decode_row(const md_box_coder *c, double out[4], const double d[4], const double ref[4], md_box_decode_cache *k);
void md_box_decode_row_backward(const md_box_coder *c, double gd[4], const double gb[4], const md_box_decode_cache *k);

/* ------------------------------------------------------------ geometry
 * Pairwise IoU (torchvision.ops.box_iou): a: na x 4, b: nb x 4 -> iou: na x nb, float
 * arithmetic in torchvision's order (so thresholds decide identically). Where the union is
 * 0 (two empty boxes) torchvision returns NaN (0/0); here the IoU is 0. Parallel over rows. */
void md_box_iou_matrix(float *iou, const float *a, int na, const float *b, int nb);

/* IoU of two boxes, same arithmetic as one entry of md_box_iou_matrix. */
float md_box_iou(const float a[4], const float b[4]);

/* Clips boxes (n x 4, in place) to [0, width] x [0, height] (torchvision clip_boxes_to_image).
 * NaN coordinates stay NaN (callers drop them with md_box_remove_small). */
void md_box_clip(float *boxes, int n, float height, float width);

/* Indices (ascending) of the boxes with both sides >= min_size (torchvision
 * remove_small_boxes); boxes with a NaN coordinate are dropped too. keep: n ints. Returns count. */
int md_box_remove_small(int *keep, const float *boxes, int n, float min_size);

/* ------------------------------------------------------------ matcher
 * torchvision Matcher(high, low, allow_low_quality_matches) on quality: m (gt) x n (predictions).
 * matches[j] = index of the best gt (first of equal maxima), or MD_MATCH_BELOW_LOW (-1) where
 * the best quality < low, MD_MATCH_BETWEEN (-2) where low <= best < high. With
 * allow_low_quality_matches, every prediction whose quality with some gt equals that gt's
 * maximum over predictions (all ties) gets back its best-gt index, exactly like
 * set_low_quality_matches_ (note: the prediction's OWN best gt, not necessarily that gt).
 * m == 0 or n == 0 is an MD_ERR_ARG error as in torchvision; NaN qualities are MD_ERR_NUMERIC. */
enum { MD_MATCH_BELOW_LOW = -1, MD_MATCH_BETWEEN = -2 };
md_status md_matcher(int *matches, const float *quality, int m, int n, float high, float low,
                     int allow_low_quality_matches);

/* ------------------------------------------------------------ sampler
 * BalancedPositiveNegativeSampler: labels: n (>= 1 positive, 0 negative, < 0 ignored).
 * num_pos = min(#positive, int(batch_size * positive_fraction)) with the fraction read as the
 * decimal it was written as (0.7f -> 0.7, so 10 * 0.7 gives 7 as in Python, not 6),
 * num_neg = min(#negative, batch_size - num_pos); a uniformly random subset of each (partial
 * Fisher-Yates driven by rng; torch.randperm's stream cannot be reproduced, the distribution
 * is the same). pos_mask / neg_mask: n bytes, written (1 = sampled). Optional counts out.
 * Needs n ints of scratch: work (may be NULL -> allocated). */
md_status md_sample_pos_neg(uint8_t *pos_mask, uint8_t *neg_mask, const int *labels, int n, int batch_size,
                            float positive_fraction, md_rng *rng, int *work, int *num_pos, int *num_neg);

/* ------------------------------------------------------------ sorting and NMS
 * order: n indices of scores sorted descending exactly as torch 1.13 CPU
 * scores.sort(descending=True) (unstable libstdc++ introsort; NaN sorts first). */
void md_sort_desc(int *order, const float *scores, int n);
/* The stable descending order (ties by index, NaN first): torchvision 0.14's nms kernel order. */
void md_sort_desc_stable(int *order, const float *scores, int n);

/* Greedy NMS = torchvision.ops.nms: boxes n x 4, scores n, visited in md_sort_desc_stable order. Suppresses a lower-scored box when
 * IoU > thresh (strict; IoU in float arithmetic as the CPU kernel, compared with the threshold
 * in double as the kernel does: pass the threshold as a double, e.g. 0.7 not 0.7f, to reproduce
 * torchvision's decision for an IoU that rounds exactly to the float threshold). keep receives the kept indices in
 * decreasing score order; *n_keep their count. Scratch: allocated inside (about 32 bytes per box). */
md_status md_nms(int *keep, int *n_keep, const float *boxes, const float *scores, int n, double thresh);

/* DIoU-NMS (Zheng et al., official DIoU code): like md_nms but suppresses where
 * IoU - (rho^2 / c^2)^beta >= thresh (">=" as the official cython diounms; torchvision's greedy
 * NMS uses ">"), rho = distance of the centres, c = diagonal of the enclosing box, no "+1".
 * Where c == 0 (two identical empty boxes) the penalty is 0. Same score order as md_nms. */
md_status md_diou_nms(int *keep, int *n_keep, const float *boxes, const float *scores, int n, double thresh,
                      double beta);

/* Per-class NMS = torchvision.ops.batched_nms: boxes of different idxs never suppress each other.
 * Greedy: as torchvision, the coordinate-offset trick when 4n <= 4000, else one NMS per class
 * followed by the unstable descending score sort of the kept indices — so the result is
 * identical to torchvision's in both regimes. diou = 1 runs md_diou_nms per class (with beta)
 * and orders the kept boxes the same way. */
md_status md_batched_nms(int *keep, int *n_keep, const float *boxes, const float *scores, const int *idxs, int n,
                         double thresh, int diou, double beta);
/* The first min(max_keep, count) entries of md_batched_nms's keep (torchvision's keep[:max_keep], as the RPN's
 * post_nms_top_n and the detector's detections_per_img take), identical to them; in the offset regime the greedy
 * pass stops after max_keep kept boxes. */
md_status md_batched_nms_topk(int *keep, int *n_keep, const float *boxes, const float *scores, const int *idxs, int n,
                              double thresh, int diou, double beta, int max_keep);

#endif
