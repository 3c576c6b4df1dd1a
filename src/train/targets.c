/* targets.c — RPN and RoI-head targets and losses (see targets.h). Geometry, matcher, sampler and the
 * box-regression loss switch come from box.h / box_loss.h, the classification losses from ops.h. */
#include "minidet/targets.h"
#include <string.h>
#include "minidet/box.h"
#include "minidet/box_loss.h"
#include "minidet/dist.h"
#include "minidet/ops.h"

/* Image `slot`'s substream of rng for sampler `which` (0: RPN, 1: RoI); see targets.h. */
static md_rng image_stream(const md_rng *rng, int slot, int which) {
    md_rng r = *rng;
    r.counter = rng->counter + ((uint64_t)slot << 24) + ((uint64_t)which << 23);
    return r;
}

/* n summed over the ranks when the batch is a data-parallel shard. */
static md_status global_count(const md_gt_batch *gt, int n, int *out) {
    int64_t v = n;
    if (gt->sum_over_ranks) {
        md_status s = md_dist_sum_i64(&v, 1);
        if (s) return s;
    }
    if (v > 2147483647) return md_set_error(MD_ERR_ARG, "targets: %lld samples in one batch", (long long)v);
    *out = (int)v;
    return MD_OK;
}

/* labels from matches: >= 0 -> fg_label(m), BELOW_LOW -> 0, BETWEEN -> -1 */

md_status md_rpn_loss(const md_rpn_config *cfg, md_arena *arena, const md_gt_batch *gt, const float *anchors, int A,
                      const float *objectness, const float *deltas, md_rng *rng, float grad_scale, float *d_objectness,
                      float *d_deltas, md_rpn_loss_result *out) {
    size_t mark = md_arena_mark(arena);
    int n = gt->n, maxg = 1;
    for (int i = 0; i < n; i++) if (gt->count[i] > maxg) maxg = gt->count[i];
    int *matches = md_arena_alloc(arena, sizeof(int) * (size_t)A * (size_t)n);
    int *labels = md_arena_alloc(arena, sizeof(int) * (size_t)A * (size_t)n);
    int *work = md_arena_alloc(arena, sizeof(int) * (size_t)A);
    uint8_t *pos = md_arena_alloc(arena, (size_t)n * (size_t)A), *neg = md_arena_alloc(arena, (size_t)n * (size_t)A);
    float *iou = md_arena_floats(arena, (size_t)maxg * (size_t)A);
    if (!matches || !labels || !work || !pos || !neg || !iou) return md_error_prefix(MD_ERR_NOMEM, "rpn targets");
    md_status s;
    int total = 0, total_pos = 0;
    for (int i = 0; i < n; i++) {
        int G = gt->count[i];
        int *m = matches + (size_t)i * A, *lab = labels + (size_t)i * A;
        if (G == 0) {
            for (int a = 0; a < A; a++) { m[a] = MD_MATCH_BELOW_LOW; lab[a] = 0; }
        } else {
            md_box_iou_matrix(iou, gt->boxes + 4 * (size_t)gt->begin[i], G, anchors, A);
            if ((s = md_matcher(m, iou, G, A, cfg->fg_iou_thresh, cfg->bg_iou_thresh, 1))) return md_error_prefix(s, "rpn targets");
            for (int a = 0; a < A; a++) lab[a] = m[a] >= 0 ? 1 : (m[a] == MD_MATCH_BELOW_LOW ? 0 : -1);
        }
        int np, nn;
        md_rng ri = image_stream(rng, gt->slot0 + i, 0);
        if ((s = md_sample_pos_neg(pos + (size_t)i * A, neg + (size_t)i * A, lab, A, cfg->batch_size_per_image,
                                   cfg->positive_fraction, &ri, work, &np, &nn)))
            return md_error_prefix(s, "rpn sampler");
        total += np + nn;
        total_pos += np;
    }
    int norm = 0;
    if ((s = global_count(gt, total, &norm))) return md_error_prefix(s, "rpn loss normaliser");
    /* objectness: BCE with logits over the sampled anchors (gathered in anchor order), divided by norm */
    const size_t ns = (size_t)(total ? total : 1);
    float *sx = md_arena_floats(arena, ns), *sy = md_arena_floats(arena, ns), *sg = md_arena_floats(arena, ns);
    if (!sx || !sy || !sg) return md_error_prefix(MD_ERR_NOMEM, "rpn targets");
    size_t j = 0;
    for (size_t o = 0; o < (size_t)n * A; o++)
        if (pos[o] || neg[o]) sx[j] = objectness[o], sy[j] = pos[o] ? 1.0f : 0.0f, sg[j++] = 0.0f;
    const float obj = total ? md_bce_logits_forward(sx, sy, total, norm) : 0.0f;
    if (total) md_bce_logits_backward(sg, sx, sy, total, grad_scale, norm);
    memset(d_objectness, 0, sizeof(float) * (size_t)n * A);
    j = 0;
    for (size_t o = 0; o < (size_t)n * A; o++)
        if (pos[o] || neg[o]) d_objectness[o] = sg[j++];
    /* box regression over the sampled positives, normalised by the sampled count */
    float *pd = md_arena_floats(arena, 4 * (size_t)(total_pos ? total_pos : 1));
    float *pa = md_arena_floats(arena, 4 * (size_t)(total_pos ? total_pos : 1));
    float *pg = md_arena_floats(arena, 4 * (size_t)(total_pos ? total_pos : 1));
    float *dd = md_arena_floats(arena, 4 * (size_t)(total_pos ? total_pos : 1));
    int *pl = md_arena_alloc(arena, sizeof(int) * (size_t)(total_pos ? total_pos : 1));
    size_t *where = md_arena_alloc(arena, sizeof(size_t) * (size_t)(total_pos ? total_pos : 1));
    if (!pd || !pa || !pg || !dd || !pl || !where) return md_error_prefix(MD_ERR_NOMEM, "rpn targets");
    int k = 0;
    for (int i = 0; i < n; i++) {
        const float *gb = gt->boxes + 4 * (size_t)gt->begin[i];
        for (int a = 0; a < A; a++) {
            size_t o = (size_t)i * A + a;
            if (!pos[o]) continue;
            memcpy(pd + 4 * (size_t)k, deltas + 4 * o, 4 * sizeof(float));
            memcpy(pa + 4 * (size_t)k, anchors + 4 * (size_t)a, 4 * sizeof(float));
            memcpy(pg + 4 * (size_t)k, gb + 4 * (size_t)matches[o], 4 * sizeof(float));
            pl[k] = 1;
            where[k] = o;
            k++;
        }
    }
    md_box_loss_opts bo = {0};
    bo.kind = cfg->box_loss;
    bo.space = MD_SPACE_IMAGE; /* anchors are real boxes: IoU kinds compare decoded anchors with the GT box */
    bo.weight = cfg->box_loss_weight;
    bo.beta = cfg->smooth_l1_beta;
    bo.coder = md_box_coder_make(1, 1, 1, 1);
    bo.normalizer = norm;
    float box = 0;
    if ((s = md_box_regression_loss(&box, dd, pd, pa, pg, pl, total_pos, 1, &bo))) return md_error_prefix(s, "rpn box loss");
    memset(d_deltas, 0, sizeof(float) * 4 * (size_t)n * A);
    for (int j = 0; j < total_pos; j++)
        for (int c = 0; c < 4; c++) d_deltas[4 * where[j] + c] = grad_scale * dd[4 * (size_t)j + c];
    out->loss_objectness = obj;
    out->loss_box = box;
    out->num_sampled = total;
    out->num_pos = total_pos;
    md_arena_release(arena, mark);
    return MD_OK;
}

md_status md_roi_sample(const md_roi_heads_config *cfg, md_arena *arena, const md_gt_batch *gt, float *const *proposals,
                        const int *num_proposals, md_rng *rng, md_roi_targets *t) {
    int maxp = 1, maxg = 1, cap = 0;
    for (int i = 0; i < gt->n; i++) {
        int p = num_proposals[i] + gt->count[i];
        if (p > maxp) maxp = p;
        if (gt->count[i] > maxg) maxg = gt->count[i];
        cap += p < cfg->batch_size_per_image ? p : cfg->batch_size_per_image;
    }
    size_t c1 = (size_t)(cap ? cap : 1);
    t->rois = md_arena_floats(arena, 5 * c1);
    t->boxes = md_arena_floats(arena, 4 * c1);
    t->labels = md_arena_alloc(arena, sizeof(int) * c1);
    t->gt_boxes = md_arena_floats(arena, 4 * c1);
    if (!t->rois || !t->boxes || !t->labels || !t->gt_boxes) return md_error_prefix(MD_ERR_NOMEM, "roi targets");
    size_t mark = md_arena_mark(arena);
    float *boxes = md_arena_floats(arena, 4 * (size_t)maxp);
    float *iou = md_arena_floats(arena, (size_t)maxg * (size_t)maxp);
    int *matches = md_arena_alloc(arena, sizeof(int) * (size_t)maxp);
    int *labels = md_arena_alloc(arena, sizeof(int) * (size_t)maxp);
    int *work = md_arena_alloc(arena, sizeof(int) * (size_t)maxp);
    uint8_t *pos = md_arena_alloc(arena, (size_t)maxp), *neg = md_arena_alloc(arena, (size_t)maxp);
    if (!boxes || !iou || !matches || !labels || !work || !pos || !neg) return md_error_prefix(MD_ERR_NOMEM, "roi targets");
    int R = 0, npos_total = 0;
    md_status s;
    for (int i = 0; i < gt->n; i++) {
        int G = gt->count[i], P0 = num_proposals[i], P = P0 + G;
        const float *gb = gt->boxes + 4 * (size_t)gt->begin[i];
        const int *gl = gt->labels + gt->begin[i];
        if (P0) memcpy(boxes, proposals[i], sizeof(float) * 4 * (size_t)P0);
        if (G) memcpy(boxes + 4 * (size_t)P0, gb, sizeof(float) * 4 * (size_t)G);
        if (G == 0) {
            for (int p = 0; p < P; p++) { matches[p] = 0; labels[p] = 0; }
        } else {
            md_box_iou_matrix(iou, gb, G, boxes, P);
            if ((s = md_matcher(matches, iou, G, P, cfg->fg_iou_thresh, cfg->bg_iou_thresh, 0))) return md_error_prefix(s, "roi targets");
            for (int p = 0; p < P; p++) {
                int m = matches[p];
                labels[p] = m >= 0 ? gl[m] : (m == MD_MATCH_BELOW_LOW ? 0 : -1);
                if (m < 0) matches[p] = 0; /* clamp(min=0) */
            }
        }
        int np, nn;
        md_rng ri = image_stream(rng, gt->slot0 + i, 1);
        if ((s = md_sample_pos_neg(pos, neg, labels, P, cfg->batch_size_per_image, cfg->positive_fraction, &ri, work, &np, &nn)))
            return md_error_prefix(s, "roi sampler");
        npos_total += np;
        for (int p = 0; p < P; p++) { /* ascending proposal order, as torch.where(pos | neg) */
            if (!pos[p] && !neg[p]) continue;
            float *r = t->rois + 5 * (size_t)R;
            r[0] = (float)i;
            memcpy(r + 1, boxes + 4 * (size_t)p, 4 * sizeof(float));
            memcpy(t->boxes + 4 * (size_t)R, boxes + 4 * (size_t)p, 4 * sizeof(float));
            t->labels[R] = pos[p] ? labels[p] : 0;
            if (G) memcpy(t->gt_boxes + 4 * (size_t)R, gb + 4 * (size_t)matches[p], 4 * sizeof(float));
            else memset(t->gt_boxes + 4 * (size_t)R, 0, 4 * sizeof(float));
            R++;
        }
    }
    t->R = R;
    t->num_pos = npos_total;
    md_arena_release(arena, mark);
    if ((s = global_count(gt, R, &t->normalizer))) return md_error_prefix(s, "roi loss normaliser");
    return MD_OK;
}

md_status md_roi_loss(const md_roi_heads_config *cfg, md_arena *arena, const md_roi_targets *t, const float *class_logits,
                      const float *box_deltas, int K, float grad_scale, float *d_class_logits, float *d_box_deltas,
                      md_roi_loss_result *out) {
    int R = t->R;
    memset(d_class_logits, 0, sizeof(float) * (size_t)R * K);
    out->loss_classifier = out->loss_box = 0;
    if (R == 0) { memset(d_box_deltas, 0, sizeof(float) * (size_t)R * 4 * K); return MD_OK; }
    const int norm = t->normalizer > 0 ? t->normalizer : R;
    for (int r = 0; r < R; r++)
        if (t->labels[r] < 0 || t->labels[r] >= K)
            return md_set_error(MD_ERR_INTERNAL, "roi loss: label %d outside [0, %d)", t->labels[r], K);
    /* classifier: softmax cross-entropy over all sampled RoIs (none ignored), divided by norm */
    size_t mark = md_arena_mark(arena);
    float *probs = md_arena_floats(arena, (size_t)R * K);
    if (!probs) return md_error_prefix(MD_ERR_NOMEM, "roi loss");
    const float ce = md_cross_entropy_forward(probs, class_logits, t->labels, R, K, -1, norm);
    md_cross_entropy_backward(d_class_logits, probs, t->labels, R, K, -1, grad_scale, norm);
    md_arena_release(arena, mark);
    md_box_loss_opts bo = md_box_loss_opts_roi(cfg);
    bo.normalizer = norm;
    float box = 0;
    md_status s = md_box_regression_loss(&box, d_box_deltas, box_deltas, t->boxes, t->gt_boxes, t->labels, R, K, &bo);
    if (s) return md_error_prefix(s, "roi box loss");
    if (grad_scale != 1.0f)
        for (size_t i = 0; i < (size_t)R * 4 * K; i++) d_box_deltas[i] *= grad_scale;
    out->loss_classifier = ce;
    out->loss_box = box;
    return MD_OK;
}
