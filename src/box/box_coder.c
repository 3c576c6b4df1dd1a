/* box_coder.c — box coder, IoU matrix, clipping, small-box removal (include/minidet/box.h). */
#include <math.h>
#include <stddef.h>
#include "minidet/box.h"

void md_box_decode(const md_box_coder *c, float *out, const float *deltas, const float *boxes, int n, int k) {
    const size_t row = 4 * (size_t)k;
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * (size_t)i;
        const float W = b[2] - b[0], H = b[3] - b[1];
        const float cx = b[0] + 0.5f * W, cy = b[1] + 0.5f * H;
        for (int j = 0; j < k; j++) {
            const float *d = deltas + row * i + 4 * (size_t)j;
            float *o = out + row * i + 4 * (size_t)j;
            const float dx = d[0] / c->wx, dy = d[1] / c->wy;
            const float dw = fminf(d[2] / c->ww, c->clip), dh = fminf(d[3] / c->wh, c->clip);
            const float pcx = dx * W + cx, pcy = dy * H + cy;
            const float hw = 0.5f * (expf(dw) * W), hh = 0.5f * (expf(dh) * H);
            o[0] = pcx - hw;
            o[1] = pcy - hh;
            o[2] = pcx + hw;
            o[3] = pcy + hh;
        }
    }
}

/* ------------------------------------------------------------ one row in double (the regression losses) */
/* Not md_box_decode in double: proposals and detections keep torchvision's float32 rounding (top-k and NMS
 * orders), the losses want double (only the final rounding); one precision for both changes results. */

void md_box_encode_row(const md_box_coder *c, double t[4], const double gt[4], const double ref[4]) {
    const double ew = ref[2] - ref[0], eh = ref[3] - ref[1];
    const double ecx = ref[0] + 0.5 * ew, ecy = ref[1] + 0.5 * eh;
    const double gw = gt[2] - gt[0], gh = gt[3] - gt[1];
    const double gcx = gt[0] + 0.5 * gw, gcy = gt[1] + 0.5 * gh;
    t[0] = c->wx * (gcx - ecx) / ew;
    t[1] = c->wy * (gcy - ecy) / eh;
    t[2] = c->ww * log(gw / ew);
    t[3] = c->wh * log(gh / eh);
}

void md_box_decode_row(const md_box_coder *c, double out[4], const double d[4], const double ref[4], md_box_decode_cache *k) {
    const double W = ref[2] - ref[0], H = ref[3] - ref[1];
    const double cx = ref[0] + 0.5 * W, cy = ref[1] + 0.5 * H;
    const double clip = c->clip;
    double dx = d[0] / c->wx, dy = d[1] / c->wy, dw = d[2] / c->ww, dh = d[3] / c->wh;
    k->dw_live = dw <= clip;
    k->dh_live = dh <= clip;
    if (dw > clip) dw = clip;
    if (dh > clip) dh = clip;
    const double pcx = dx * W + cx, pcy = dy * H + cy;
    const double pw = exp(dw) * W, ph = exp(dh) * H;
    out[0] = pcx - 0.5 * pw;
    out[1] = pcy - 0.5 * ph;
    out[2] = pcx + 0.5 * pw;
    out[3] = pcy + 0.5 * ph;
    k->W = W;
    k->H = H;
    k->pw = pw;
    k->ph = ph;
}

void md_box_decode_row_backward(const md_box_coder *c, double gd[4], const double gb[4], const md_box_decode_cache *k) {
    const double G_cx = gb[0] + gb[2], G_cy = gb[1] + gb[3];
    const double G_pw = 0.5 * (gb[2] - gb[0]), G_ph = 0.5 * (gb[3] - gb[1]);
    gd[0] = G_cx * k->W / c->wx;
    gd[1] = G_cy * k->H / c->wy;
    /* torch.clamp(max=clip) passes the gradient where dw <= clip */
    gd[2] = k->dw_live ? G_pw * k->pw / c->ww : 0.0;
    gd[3] = k->dh_live ? G_ph * k->ph / c->wh : 0.0;
}

/* fmaxf / fminf by comparisons (libm calls otherwise: this is the matcher's inner loop); the same NaN rule
 * (a NaN argument loses to a number), zeros of either sign compare equal either way. */
static inline float max_f(float a, float b) { return a > b || b != b ? a : b; }
static inline float min_f(float a, float b) { return a < b || b != b ? a : b; }

static inline float iou_f(const float *a, float area_a, const float *b, float area_b) {
    const float lt_x = max_f(a[0], b[0]), lt_y = max_f(a[1], b[1]);
    const float rb_x = min_f(a[2], b[2]), rb_y = min_f(a[3], b[3]);
    const float w = max_f(rb_x - lt_x, 0.0f), h = max_f(rb_y - lt_y, 0.0f);
    const float inter = w * h;
    const float uni = area_a + area_b - inter;
    return uni != 0.0f ? inter / uni : 0.0f;
}

float md_box_iou(const float a[4], const float b[4]) {
    return iou_f(a, (a[2] - a[0]) * (a[3] - a[1]), b, (b[2] - b[0]) * (b[3] - b[1]));
}

void md_box_iou_matrix(float *iou, const float *a, int na, const float *b, int nb) {
#pragma omp parallel for schedule(static) if ((long)na * nb > 20000)
    for (int i = 0; i < na; i++) {
        const float *ai = a + 4 * (size_t)i;
        const float area_a = (ai[2] - ai[0]) * (ai[3] - ai[1]);
        float *o = iou + (size_t)nb * i;
        for (int j = 0; j < nb; j++) {
            const float *bj = b + 4 * (size_t)j;
            o[j] = iou_f(ai, area_a, bj, (bj[2] - bj[0]) * (bj[3] - bj[1]));
        }
    }
}

void md_box_clip(float *boxes, int n, float height, float width) {
    for (int i = 0; i < n; i++) {
        float *b = boxes + 4 * (size_t)i;
        /* torch.clamp(min=0, max=W): min first, then max; NaN propagates */
        for (int k = 0; k < 4; k++) {
            const float hi = (k & 1) ? height : width;
            float v = b[k];
            if (v < 0.0f) v = 0.0f;
            if (v > hi) v = hi;
            b[k] = v;
        }
    }
}

int md_box_remove_small(int *keep, const float *boxes, int n, float min_size) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * (size_t)i;
        const float w = b[2] - b[0], h = b[3] - b[1];
        if (w >= min_size && h >= min_size) keep[m++] = i;
    }
    return m;
}
