/* roi_heads.c — torchvision MultiScaleRoIAlign (scale inference, LevelMapper), TwoMLPHead,
 * FastRCNNPredictor (forward/backward) and RoIHeads.postprocess_detections + transform.postprocess. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/box.h"
#include "minidet/ops.h"
#include "model_internal.h"


md_status md_box_head_build(md_detector *det) {
    md_box_head *h = &det->impl->head;
    int F = det->model.fpn_channels, P = det->roi.pool_size, rep = det->model.representation_size;
    int K = det->model.num_classes;
    if (P < 1 || rep < 1) return md_set_error(MD_ERR_ARG, "roi_heads.pool_size and model.representation_size must be >= 1");
    if (K < 2) return md_set_error(MD_ERR_ARG, "model.num_classes = %d: must be >= 2 (background + classes)", K);
    h->in_features = F * P * P;
    h->rep = rep;
    h->num_classes = K;
    int s[2];
    s[0] = rep; s[1] = h->in_features;
    if ((h->fc6_w = md_reg_add(det, "roi_heads.box_head.fc6.weight", 2, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    if ((h->fc6_b = md_reg_add(det, "roi_heads.box_head.fc6.bias", 1, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    s[1] = rep;
    if ((h->fc7_w = md_reg_add(det, "roi_heads.box_head.fc7.weight", 2, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    if ((h->fc7_b = md_reg_add(det, "roi_heads.box_head.fc7.bias", 1, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    s[0] = K;
    if ((h->cls_w = md_reg_add(det, "roi_heads.box_predictor.cls_score.weight", 2, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    if ((h->cls_b = md_reg_add(det, "roi_heads.box_predictor.cls_score.bias", 1, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    s[0] = 4 * K;
    if ((h->box_w = md_reg_add(det, "roi_heads.box_predictor.bbox_pred.weight", 2, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    if ((h->box_b = md_reg_add(det, "roi_heads.box_predictor.bbox_pred.bias", 1, s, 1, 0)) < 0) return MD_ERR_NOMEM;
    return MD_OK;
}

/* MultiScaleRoIAlign._setup_scales: scale of each pooled level from feature size / max image size. */
static void setup_scales(md_step *st) {
    md_step_saved *sv = st->saved;
    int mh = 0;
    for (int n = 0; n < st->N; n++)
        if (st->image_h[n] > mh) mh = st->image_h[n];
    for (int l = 0; l < MD_ROI_LEVELS; l++) {
        float approx = (float)((double)st->level_h[l] / (double)mh);
        sv->roi_scale[l] = (float)exp2((double)nearbyintf(log2f(approx)));
    }
    sv->kmin = (int)(-log2f(sv->roi_scale[0]));
    sv->kmax = (int)(-log2f(sv->roi_scale[MD_ROI_LEVELS - 1]));
}

md_status md_detector_forward_roi(md_detector *det, md_arena *a, md_step *st, const float *rois, int R) {
    md_box_head *h = &det->impl->head;
    md_step_saved *sv = st->saved;
    const md_param *P = det->params;
    int F = st->fpn_channels, PS = det->roi.pool_size, K = h->num_classes;
    if (R < 0) return md_set_error(MD_ERR_ARG, "forward_roi: R = %d", R);
    for (int r = 0; r < R; r++) {
        float bi = rois[(size_t)r * 5];
        if (!(bi >= 0.0f && bi < (float)st->N) || bi != floorf(bi))
            return md_set_error(MD_ERR_ARG, "forward_roi: roi %d: batch index %g outside 0..%d", r, (double)bi, st->N - 1);
    }
    setup_scales(st);
    st->R = R;
    st->num_classes = K;
    st->rois = rois;
    size_t rr = R ? (size_t)R : 1;
    st->roi_level = md_arena_alloc(a, rr * sizeof(int));
    sv->pooled = md_arena_floats(a, rr * h->in_features);
    sv->h6 = md_arena_floats(a, rr * h->rep);
    sv->h7 = md_arena_floats(a, rr * h->rep);
    st->class_logits = md_arena_floats(a, rr * K);
    st->box_deltas = md_arena_floats(a, rr * 4 * K);
    if (!st->roi_level || !sv->pooled || !sv->h6 || !sv->h7 || !st->class_logits || !st->box_deltas) return MD_ERR_NOMEM;
    int nlev = sv->kmax - sv->kmin + 1;
    if (nlev < 1 || nlev > MD_ROI_LEVELS) return md_set_error(MD_ERR_INTERNAL, "roi levels %d..%d", sv->kmin, sv->kmax);
    for (int r = 0; r < R; r++) {
        const float *b = rois + (size_t)r * 5 + 1;
        float s = sqrtf((b[2] - b[0]) * (b[3] - b[1]));
        float lv = floorf(4.0f + log2f(s / 224.0f) + 1e-6f);
        if (lv < (float)sv->kmin) lv = (float)sv->kmin;
        if (lv > (float)sv->kmax) lv = (float)sv->kmax;
        st->roi_level[r] = isnan(lv) ? 0 : (int)lv - sv->kmin;
    }
    size_t per = (size_t)h->in_features;
    for (int l = 0; l < nlev; l++) {
        int Rl = 0;
        for (int r = 0; r < R; r++) Rl += st->roi_level[r] == l;
        if (!Rl) continue;
        size_t mark = md_arena_mark(a);
        float *lr = md_arena_floats(a, (size_t)Rl * 5);
        float *lo = md_arena_floats(a, (size_t)Rl * per);
        if (!lr || !lo) return MD_ERR_NOMEM;
        int j = 0;
        for (int r = 0; r < R; r++)
            if (st->roi_level[r] == l) memcpy(lr + (size_t)5 * j++, rois + (size_t)r * 5, 5 * sizeof(float));
        md_roi_align_forward(lo, st->features[l], lr, Rl, st->N, F, st->level_h[l], st->level_w[l], PS, PS,
                             sv->roi_scale[l], det->roi.sampling_ratio, 0);
        j = 0;
        for (int r = 0; r < R; r++)
            if (st->roi_level[r] == l) memcpy(sv->pooled + (size_t)r * per, lo + (size_t)j++ * per, per * sizeof(float));
        md_arena_release(a, mark);
    }
    if (R) {
        md_linear_forward(sv->h6, sv->pooled, P[h->fc6_w].data, P[h->fc6_b].data, R, h->in_features, h->rep);
        md_relu_forward(sv->h6, sv->h6, (size_t)R * h->rep);
        md_linear_forward(sv->h7, sv->h6, P[h->fc7_w].data, P[h->fc7_b].data, R, h->rep, h->rep);
        md_relu_forward(sv->h7, sv->h7, (size_t)R * h->rep);
        md_linear_forward(st->class_logits, sv->h7, P[h->cls_w].data, P[h->cls_b].data, R, h->rep, K);
        md_linear_forward(st->box_deltas, sv->h7, P[h->box_w].data, P[h->box_b].data, R, h->rep, 4 * K);
    }
    sv->have_roi = 1;
    return MD_OK;
}

md_status md_roi_backward(md_detector *det, md_arena *a, md_step *st, const float *d_cls, const float *d_box,
                          float *dP[MD_FPN_LEVELS]) {
    md_box_head *h = &det->impl->head;
    md_step_saved *sv = st->saved;
    md_param *P = det->params;
    int R = st->R, K = h->num_classes, rep = h->rep, PS = det->roi.pool_size, F = st->fpn_channels;
    if (!sv->have_roi || R == 0 || (!d_cls && !d_box)) return MD_OK;
    size_t mark = md_arena_mark(a);
    float *dh7 = md_arena_calloc(a, (size_t)R * rep * sizeof(float));
    float *dh6 = md_arena_calloc(a, (size_t)R * rep * sizeof(float));
    float *dpool = md_arena_calloc(a, (size_t)R * h->in_features * sizeof(float));
    if (!dh7 || !dh6 || !dpool) return MD_ERR_NOMEM;
    if (d_cls) md_linear_backward(dh7, P[h->cls_w].grad, P[h->cls_b].grad, d_cls, sv->h7, P[h->cls_w].data, R, rep, K);
    if (d_box)
        md_linear_backward(dh7, P[h->box_w].grad, P[h->box_b].grad, d_box, sv->h7, P[h->box_w].data, R, rep, 4 * K);
    md_relu_backward_inplace(dh7, sv->h7, (size_t)R * rep);
    md_linear_backward(dh6, P[h->fc7_w].grad, P[h->fc7_b].grad, dh7, sv->h6, P[h->fc7_w].data, R, rep, rep);
    md_relu_backward_inplace(dh6, sv->h6, (size_t)R * rep);
    md_linear_backward(dpool, P[h->fc6_w].grad, P[h->fc6_b].grad, dh6, sv->pooled, P[h->fc6_w].data, R,
                       h->in_features, rep);
    size_t per = (size_t)h->in_features;
    int nlev = sv->kmax - sv->kmin + 1;
    for (int l = 0; l < nlev; l++) {
        int Rl = 0;
        for (int r = 0; r < R; r++) Rl += st->roi_level[r] == l;
        if (!Rl) continue;
        size_t m2 = md_arena_mark(a);
        float *lr = md_arena_floats(a, (size_t)Rl * 5);
        float *ld = md_arena_floats(a, (size_t)Rl * per);
        if (!lr || !ld) return MD_ERR_NOMEM;
        int j = 0;
        for (int r = 0; r < R; r++)
            if (st->roi_level[r] == l) {
                memcpy(lr + (size_t)5 * j, st->rois + (size_t)r * 5, 5 * sizeof(float));
                memcpy(ld + (size_t)per * j, dpool + (size_t)r * per, per * sizeof(float));
                j++;
            }
        md_roi_align_backward(dP[l], ld, lr, Rl, st->N, F, st->level_h[l], st->level_w[l], PS, PS, sv->roi_scale[l],
                              det->roi.sampling_ratio, 0);
        md_arena_release(a, m2);
    }
    md_arena_release(a, mark);
    return MD_OK;
}

/* ------------------------------------------------------------------ post-processing */
md_status md_detector_postprocess(md_detector *det, md_arena *a, md_step *st, const int *orig_sizes,
                                  md_detections *out) {
    const md_test_config *tc = &det->test;
    int K = st->num_classes, R = st->R;
    md_box_coder coder = md_box_coder_make(10.0f, 10.0f, 5.0f, 5.0f);
    int maxd = tc->detections_per_img > 0 ? tc->detections_per_img : 1;
    for (int n = 0; n < st->N; n++) {
        md_detections *d = &out[n];
        d->boxes = md_arena_floats(a, (size_t)maxd * 4);
        d->scores = md_arena_floats(a, (size_t)maxd);
        d->labels = md_arena_alloc(a, (size_t)maxd * sizeof(int));
        if (!d->boxes || !d->scores || !d->labels) return MD_ERR_NOMEM;
        d->n = 0;
        int Rn = 0;
        for (int r = 0; r < R; r++) Rn += (int)st->rois[(size_t)r * 5] == n;
        size_t cap = (size_t)(Rn ? Rn : 1) * (size_t)(K - 1);
        size_t mark = md_arena_mark(a);
        float *cb = md_arena_floats(a, cap * 4);
        float *cs = md_arena_floats(a, cap);
        int *cl = md_arena_alloc(a, cap * sizeof(int));
        int *keep = md_arena_alloc(a, cap * sizeof(int));
        float *prob = md_arena_floats(a, (size_t)K);
        float *dec = md_arena_floats(a, (size_t)K * 4);
        if (!cb || !cs || !cl || !keep || !prob || !dec) return MD_ERR_NOMEM;
        int c = 0;
        for (int r = 0; r < R; r++) {
            const float *roi = st->rois + (size_t)r * 5;
            if ((int)roi[0] != n) continue;
            const float *lg = st->class_logits + (size_t)r * K;
            float mx = lg[0];
            for (int k = 1; k < K; k++)
                if (lg[k] > mx) mx = lg[k];
            float sum = 0.0f;
            for (int k = 0; k < K; k++) {
                prob[k] = expf(lg[k] - mx);
                sum += prob[k];
            }
            float inv = 1.0f / sum; /* ATen's softmax multiplies by the reciprocal */
            md_box_decode(&coder, dec, st->box_deltas + (size_t)r * K * 4, roi + 1, 1, K);
            md_box_clip(dec, K, (float)st->image_h[n], (float)st->image_w[n]);
            for (int k = 1; k < K; k++) {
                float s = prob[k] * inv;
                const float *b = dec + (size_t)k * 4;
                if (!(s > tc->score_thresh)) continue;
                if (!(b[2] - b[0] >= 1e-2f && b[3] - b[1] >= 1e-2f)) continue;
                memcpy(cb + (size_t)c * 4, b, 4 * sizeof(float));
                cs[c] = s;
                cl[c] = k;
                c++;
            }
        }
        int nk = 0;
        MD_TRY(md_batched_nms_topk(keep, &nk, cb, cs, cl, c, md_cfg_double(tc->nms_thresh), tc->nms == MD_NMS_DIOU,
                                md_cfg_double(tc->diou_beta), maxd));
        if (nk > maxd) nk = maxd;
        float rh = 1.0f, rw = 1.0f;
        if (orig_sizes) {
            rh = (float)orig_sizes[2 * n] / (float)st->image_h[n];
            rw = (float)orig_sizes[2 * n + 1] / (float)st->image_w[n];
        }
        for (int j = 0; j < nk; j++) {
            const float *b = cb + (size_t)keep[j] * 4;
            d->boxes[j * 4 + 0] = b[0] * rw;
            d->boxes[j * 4 + 1] = b[1] * rh;
            d->boxes[j * 4 + 2] = b[2] * rw;
            d->boxes[j * 4 + 3] = b[3] * rh;
            d->scores[j] = cs[keep[j]];
            d->labels[j] = cl[keep[j]];
        }
        d->n = nk;
        md_arena_release(a, mark);
    }
    return MD_OK;
}
