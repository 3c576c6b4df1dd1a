/* det_box.c — the box arithmetic of the detector's inference path, reproducing torchvision 0.14
 * bit for bit where it matters for parity: BoxCoder.decode_single, clip_boxes_to_image, topk order,
 * and batched_nms (which on CPU switches between the coordinate-offset trick and a per-class loop at
 * 4000 coordinates). DIoU-NMS (Zheng et al.) is the optional suppression rule of [test] nms = diou. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model_internal.h"

void md_det_decode(float *out, const float *deltas, const float *boxes, int n, const float w[4], float clip) {
    for (int i = 0; i < n; i++) {
        const float *b = boxes + (size_t)i * 4, *d = deltas + (size_t)i * 4;
        float widths = b[2] - b[0], heights = b[3] - b[1];
        float ctr_x = b[0] + 0.5f * widths, ctr_y = b[1] + 0.5f * heights;
        float dx = d[0] / w[0], dy = d[1] / w[1], dw = d[2] / w[2], dh = d[3] / w[3];
        if (dw > clip) dw = clip;
        if (dh > clip) dh = clip;
        float pcx = dx * widths + ctr_x, pcy = dy * heights + ctr_y;
        float pw = expf(dw) * widths, ph = expf(dh) * heights;
        float cw = 0.5f * pw, ch = 0.5f * ph;
        float *o = out + (size_t)i * 4;
        o[0] = pcx - cw;
        o[1] = pcy - ch;
        o[2] = pcx + cw;
        o[3] = pcy + ch;
    }
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

void md_det_clip(float *boxes, int n, int h, int w) {
    for (int i = 0; i < n; i++) {
        float *b = boxes + (size_t)i * 4;
        b[0] = clampf(b[0], 0.0f, (float)w);
        b[1] = clampf(b[1], 0.0f, (float)h);
        b[2] = clampf(b[2], 0.0f, (float)w);
        b[3] = clampf(b[3], 0.0f, (float)h);
    }
}

typedef struct {
    float s;
    int i;
} pair_t;

static int cmp_desc(const void *pa, const void *pb) {
    const pair_t *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* scratch: n pairs (8 bytes each) */
void md_det_topk(const float *scores, int n, int k, int *out, int *scratch) {
    pair_t *p = (pair_t *)(void *)scratch;
    for (int i = 0; i < n; i++) {
        p[i].s = isnan(scores[i]) ? -INFINITY : scores[i];
        p[i].i = i;
    }
    qsort(p, (size_t)n, sizeof(pair_t), cmp_desc);
    for (int i = 0; i < k && i < n; i++) out[i] = p[i].i;
}

size_t md_det_nms_scratch_bytes(int n) { return (size_t)(n > 0 ? n : 1) * (sizeof(pair_t) + 4 * sizeof(float) + 2 * sizeof(float) + 1) + 64; }

int md_det_batched_nms(const float *boxes, const float *scores, const int *idxs, int n, float thresh, int kind,
                       float beta, int *keep, void *scratch) {
    if (n <= 0) return 0;
    pair_t *order = scratch;
    float *nb = (float *)(order + n);
    float *area = nb + (size_t)n * 4;
    unsigned char *sup = (unsigned char *)(area + n);
    /* torchvision on CPU: offset trick when boxes.numel() <= 4000 (and not DIoU), else per-class loop */
    int trick = kind == 0 && (size_t)n * 4 <= 4000;
    if (trick) {
        float mx = boxes[0];
        for (size_t i = 0; i < (size_t)n * 4; i++)
            if (boxes[i] > mx) mx = boxes[i];
        float step = mx + 1.0f;
        for (int i = 0; i < n; i++) {
            float off = (float)idxs[i] * step;
            for (int c = 0; c < 4; c++) nb[(size_t)i * 4 + c] = boxes[(size_t)i * 4 + c] + off;
        }
    } else {
        memcpy(nb, boxes, (size_t)n * 4 * sizeof(float));
    }
    for (int i = 0; i < n; i++) {
        const float *b = nb + (size_t)i * 4;
        area[i] = (b[2] - b[0]) * (b[3] - b[1]);
        order[i].s = scores[i];
        order[i].i = i;
        sup[i] = 0;
    }
    qsort(order, (size_t)n, sizeof(pair_t), cmp_desc);
    int nk = 0;
    double th = (double)thresh;
    for (int a = 0; a < n; a++) {
        int i = order[a].i;
        if (sup[i]) continue;
        keep[nk++] = i;
        const float *bi = nb + (size_t)i * 4;
        for (int c = a + 1; c < n; c++) {
            int j = order[c].i;
            if (sup[j] || (!trick && idxs[j] != idxs[i])) continue;
            const float *bj = nb + (size_t)j * 4;
            float xx1 = fmaxf(bi[0], bj[0]), yy1 = fmaxf(bi[1], bj[1]);
            float xx2 = fminf(bi[2], bj[2]), yy2 = fminf(bi[3], bj[3]);
            float w = fmaxf(0.0f, xx2 - xx1), h = fmaxf(0.0f, yy2 - yy1);
            float inter = w * h;
            float ovr = inter / (area[i] + area[j] - inter);
            if (kind == 1) {
                float cxd = 0.5f * (bi[0] + bi[2]) - 0.5f * (bj[0] + bj[2]);
                float cyd = 0.5f * (bi[1] + bi[3]) - 0.5f * (bj[1] + bj[3]);
                float ew = fmaxf(bi[2], bj[2]) - fminf(bi[0], bj[0]);
                float eh = fmaxf(bi[3], bj[3]) - fminf(bi[1], bj[1]);
                float c2 = ew * ew + eh * eh + 1e-7f;
                ovr -= powf((cxd * cxd + cyd * cyd) / c2, beta);
            }
            if ((double)ovr > th) sup[j] = 1;
        }
    }
    return nk;
}
