/* rpn.c — torchvision AnchorGenerator, RPNHead (forward/backward) and
 * RegionProposalNetwork.filter_proposals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/box.h"
#include "minidet/ops.h"
#include "model_internal.h"

_Static_assert(MD_RPN_ANCHOR_LEVELS == MD_FPN_LEVELS, "one [rpn] anchor size per FPN level");

md_status md_rpn_build(md_detector *det) {
    md_rpn_head *h = &det->impl->rpn;
    int F = det->model.fpn_channels, NA = det->rpn.num_aspect_ratios; /* anchors per location */
    MD_TRY(md_reg_conv(det, &h->conv, "rpn.head.conv.0.0", NULL, F, F, 3, 1, 1, 1, 1));
    MD_TRY(md_reg_conv(det, &h->cls, "rpn.head.cls_logits", NULL, F, NA, 1, 1, 0, 1, 1));
    MD_TRY(md_reg_conv(det, &h->bbox, "rpn.head.bbox_pred", NULL, F, 4 * NA, 1, 1, 0, 1, 1));
    return MD_OK;
}

/* torchvision AnchorGenerator.generate_anchors for one size and the [rpn] aspect_ratios, in float32:
 * h_ratios = sqrt(ratios), w_ratios = 1 / h_ratios, ws = w_ratios * size, hs = h_ratios * size,
 * base = round(stack([-ws, -hs, ws, hs]) / 2) (round half to even, as torch.round). */
static void cell_anchors(float size, const float *ratios, int na, float out[][4]) {
    for (int i = 0; i < na; i++) {
        float hr = sqrtf(ratios[i]);
        float wr = 1.0f / hr;
        float ws = wr * size, hs = hr * size;
        out[i][0] = nearbyintf(-ws / 2.0f);
        out[i][1] = nearbyintf(-hs / 2.0f);
        out[i][2] = nearbyintf(ws / 2.0f);
        out[i][3] = nearbyintf(hs / 2.0f);
    }
}

md_status md_rpn_forward(md_detector *det, md_arena *a, md_step *st) {
    md_rpn_head *h = &det->impl->rpn;
    md_step_saved *sv = st->saved;
    int N = st->N, NA = h->cls.oc; /* anchors per location = [rpn] aspect_ratios the head was built with */
    int A = 0;
    for (int l = 0; l < MD_FPN_LEVELS; l++) {
        st->level_start[l] = A;
        A += st->level_h[l] * st->level_w[l] * NA;
    }
    st->level_start[MD_FPN_LEVELS] = A;
    st->num_anchors = A;
    st->anchors = md_arena_floats(a, (size_t)A * 4);
    st->objectness = md_arena_floats(a, (size_t)N * A);
    st->rpn_deltas = md_arena_floats(a, (size_t)N * A * 4);
    if (!st->anchors || !st->objectness || !st->rpn_deltas) return MD_ERR_NOMEM;
    for (int l = 0; l < MD_FPN_LEVELS; l++) {
        int Hl = st->level_h[l], Wl = st->level_w[l], h1, w1;
        float cell[MD_RPN_MAX_RATIOS][4];
        cell_anchors(det->rpn.anchor_sizes[l], det->rpn.aspect_ratios, NA, cell); /* [rpn] anchor_sizes, aspect_ratios */
        int sy = st->H / Hl, sx = st->W / Wl; /* torchvision: padded image size // feature size */
        float *an = st->anchors + (size_t)st->level_start[l] * 4;
        for (int y = 0; y < Hl; y++)
            for (int x = 0; x < Wl; x++)
                for (int k = 0; k < NA; k++) {
                    float *o = an + (((size_t)y * Wl + x) * NA + k) * 4;
                    o[0] = (float)(x * sx) + cell[k][0];
                    o[1] = (float)(y * sy) + cell[k][1];
                    o[2] = (float)(x * sx) + cell[k][2];
                    o[3] = (float)(y * sy) + cell[k][3];
                }
        MD_TRY(md_conv_forward_layer(det, a, &h->conv, st->features[l], N, Hl, Wl, &sv->rpn_t[l], &h1, &w1));
        md_relu_forward(sv->rpn_t[l], sv->rpn_t[l], (size_t)N * h->conv.oc * Hl * Wl);
        size_t mark = md_arena_mark(a);
        float *obj, *del;
        MD_TRY(md_conv_forward_layer(det, a, &h->cls, sv->rpn_t[l], N, Hl, Wl, &obj, &h1, &w1));
        MD_TRY(md_conv_forward_layer(det, a, &h->bbox, sv->rpn_t[l], N, Hl, Wl, &del, &h1, &w1));
        size_t HW = (size_t)Hl * Wl;
        for (int n = 0; n < N; n++)
            for (size_t p = 0; p < HW; p++)
                for (int k = 0; k < NA; k++) {
                    size_t fi = (size_t)n * A + st->level_start[l] + p * NA + k;
                    st->objectness[fi] = obj[((size_t)n * NA + k) * HW + p];
                    for (int c = 0; c < 4; c++)
                        st->rpn_deltas[fi * 4 + c] = del[((size_t)n * 4 * NA + k * 4 + c) * HW + p];
                }
        md_arena_release(a, mark);
    }
    return MD_OK;
}

md_status md_rpn_backward(md_detector *det, md_arena *a, md_step *st, const float *d_obj, const float *d_del,
                          float *dP[MD_FPN_LEVELS]) {
    md_rpn_head *h = &det->impl->rpn;
    md_step_saved *sv = st->saved;
    int N = st->N, A = st->num_anchors, F = h->conv.oc, NA = h->cls.oc;
    for (int l = 0; l < MD_FPN_LEVELS; l++) {
        int Hl = st->level_h[l], Wl = st->level_w[l];
        size_t HW = (size_t)Hl * Wl;
        size_t mark = md_arena_mark(a);
        float *dobj = md_arena_calloc(a, (size_t)N * NA * HW * sizeof(float));
        float *ddel = md_arena_calloc(a, (size_t)N * 4 * NA * HW * sizeof(float));
        float *dt = md_arena_calloc(a, (size_t)N * F * HW * sizeof(float));
        if (!dobj || !ddel || !dt) return MD_ERR_NOMEM;
        for (int n = 0; n < N; n++)
            for (size_t p = 0; p < HW; p++)
                for (int k = 0; k < NA; k++) {
                    size_t fi = (size_t)n * A + st->level_start[l] + p * NA + k;
                    if (d_obj) dobj[((size_t)n * NA + k) * HW + p] = d_obj[fi];
                    if (d_del)
                        for (int c = 0; c < 4; c++) ddel[((size_t)n * 4 * NA + k * 4 + c) * HW + p] = d_del[fi * 4 + c];
                }
        MD_TRY(md_conv_backward_layer(det, a, &h->cls, dt, dobj, sv->rpn_t[l], N, Hl, Wl));
        MD_TRY(md_conv_backward_layer(det, a, &h->bbox, dt, ddel, sv->rpn_t[l], N, Hl, Wl));
        md_relu_backward_inplace(dt, sv->rpn_t[l], (size_t)N * F * HW);
        MD_TRY(md_conv_backward_layer(det, a, &h->conv, dP[l], dt, st->features[l], N, Hl, Wl));
        md_arena_release(a, mark);
    }
    return MD_OK;
}

/* ------------------------------------------------------------------ proposals */
md_status md_detector_proposals(md_detector *det, md_arena *a, md_step *st) {
    const md_rpn_config *rc = &det->rpn;
    int pre = st->training ? rc->pre_nms_top_n_train : rc->pre_nms_top_n_test;
    int post = st->training ? rc->post_nms_top_n_train : rc->post_nms_top_n_test;
    if (pre < 1 || post < 1) return md_set_error(MD_ERR_ARG, "rpn: pre/post_nms_top_n must be >= 1");
    int A = st->num_anchors;
    md_box_coder coder = md_box_coder_make(1.0f, 1.0f, 1.0f, 1.0f);
    int cand = 0;
    for (int l = 0; l < MD_FPN_LEVELS; l++) {
        int nl = st->level_start[l + 1] - st->level_start[l];
        cand += nl < pre ? nl : pre;
    }
    int cap = cand < post ? cand : post;
    for (int n = 0; n < st->N; n++) {
        st->proposals[n] = md_arena_floats(a, (size_t)(cap ? cap : 1) * 4);
        st->proposal_scores[n] = md_arena_floats(a, (size_t)(cap ? cap : 1));
        if (!st->proposals[n] || !st->proposal_scores[n]) return MD_ERR_NOMEM;
        size_t mark = md_arena_mark(a);
        int *idx = md_arena_alloc(a, (size_t)cand * sizeof(int));
        int *lvl = md_arena_alloc(a, (size_t)cand * sizeof(int));
        int *scr = md_arena_alloc(a, (size_t)A * 8);
        float *boxes = md_arena_floats(a, (size_t)cand * 4);
        float *scores = md_arena_floats(a, (size_t)cand);
        int *keep = md_arena_alloc(a, (size_t)cand * sizeof(int));
        if (!idx || !lvl || !scr || !boxes || !scores || !keep) return MD_ERR_NOMEM;
        const float *obj = st->objectness + (size_t)n * A;
        int m = 0;
        for (int l = 0; l < MD_FPN_LEVELS; l++) {
            int s0 = st->level_start[l], nl = st->level_start[l + 1] - s0;
            int k = nl < pre ? nl : pre;
            md_det_topk(obj + s0, nl, k, idx + m, scr);
            for (int j = 0; j < k; j++) {
                idx[m + j] += s0;
                lvl[m + j] = l;
            }
            m += k;
        }
        /* decode, clip, remove small (side < 1e-3), score threshold */
        int c = 0;
        for (int j = 0; j < m; j++) {
            int ai = idx[j];
            float b[4];
            md_box_decode(&coder, b, st->rpn_deltas + ((size_t)n * A + ai) * 4, st->anchors + (size_t)ai * 4, 1, 1);
            md_box_clip(b, 1, (float)st->image_h[n], (float)st->image_w[n]);
            if (!(b[2] - b[0] >= 1e-3f && b[3] - b[1] >= 1e-3f)) continue;
            float s = 1.0f / (1.0f + expf(-obj[ai]));
            if (!(s >= rc->score_thresh)) continue;
            memcpy(boxes + (size_t)c * 4, b, sizeof b);
            scores[c] = s;
            lvl[c] = lvl[j];
            c++;
        }
        int nk = 0;
        MD_TRY(md_batched_nms_topk(keep, &nk, boxes, scores, lvl, c, md_cfg_double(rc->nms_thresh), 0, 1.0, cap));
        if (nk > cap) nk = cap;
        for (int j = 0; j < nk; j++) {
            memcpy(st->proposals[n] + (size_t)j * 4, boxes + (size_t)keep[j] * 4, 4 * sizeof(float));
            st->proposal_scores[n][j] = scores[keep[j]];
        }
        md_arena_release(a, mark);
        st->num_proposals[n] = nk;
    }
    return MD_OK;
}
