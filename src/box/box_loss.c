/* box_loss.c — IoU / GIoU / DIoU / CIoU losses with analytic gradients, and the
 * box-regression loss of the RoI heads and RPN (see include/minidet/box_loss.h). */
#include "minidet/box_loss.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

#define IOU_EPS 1e-7
#define PI_D 3.14159265358979323846

/* d max(a, b) / d a as torch.maximum's backward: 1 if a > b, 1/2 on ties, else 0. */
static inline double dmax_a(double a, double b) { return a > b ? 1.0 : (a == b ? 0.5 : 0.0); }
static inline double dmin_a(double a, double b) { return a < b ? 1.0 : (a == b ? 0.5 : 0.0); }
static inline double safe_div(double n, double d) { return d != 0.0 ? n / d : 0.0; }

/* atan(w / h) and its partial derivatives; h == 0 gives +-pi/2 (0 for w == 0), no gradient. */
static double atan_ratio(double w, double h, double *dw, double *dh) {
    if (h == 0.0) {
        *dw = *dh = 0.0;
        return w > 0 ? PI_D / 2 : (w < 0 ? -PI_D / 2 : 0.0);
    }
    double r = w / h, s = 1.0 / (1.0 + r * r);
    *dw = s / h;
    *dh = -s * w / (h * h);
    return atan(r);
}

/* The loss in double; grad (may be NULL) receives d loss / d p. */
static double iou_loss_d(md_iou_kind kind, const double p[4], const double g[4], int gate, double grad[4]) {
    const double x1 = p[0], y1 = p[1], x2 = p[2], y2 = p[3];
    const double gx1 = g[0], gy1 = g[1], gx2 = g[2], gy2 = g[3];
    /* intersection (torchvision _loss_inter_union: masked) */
    const double xk1 = fmax(x1, gx1), yk1 = fmax(y1, gy1), xk2 = fmin(x2, gx2), yk2 = fmin(y2, gy2);
    const int mask = (yk2 > yk1) && (xk2 > xk1);
    const double iw = xk2 - xk1, ih = yk2 - yk1;
    const double inter = mask ? iw * ih : 0.0;
    const double w = x2 - x1, h = y2 - y1, wg = gx2 - gx1, hg = gy2 - gy1;
    const double uni = w * h + wg * hg - inter;
    const double den_u = uni + IOU_EPS;
    const double iou = safe_div(inter, den_u);
    double loss = 1.0 - iou;
    /* enclosing box */
    const double xc1 = fmin(x1, gx1), yc1 = fmin(y1, gy1), xc2 = fmax(x2, gx2), yc2 = fmax(y2, gy2);
    const double cw = xc2 - xc1, ch = yc2 - yc1;

    double G_iou = -1.0, G_uni = 0.0, G_cw = 0.0, G_ch = 0.0, G_w = 0.0, G_h = 0.0;
    double G_x1 = 0.0, G_y1 = 0.0, G_x2 = 0.0, G_y2 = 0.0;

    if (kind == MD_LOSS_GIOU) {
        const double ac = cw * ch, d = ac + IOU_EPS, n = ac - uni;
        loss += safe_div(n, d);
        if (d != 0.0) {
            const double G_ac = 1.0 / d - n / (d * d);
            G_uni += -1.0 / d;
            G_cw += G_ac * ch;
            G_ch += G_ac * cw;
        }
    } else if (kind == MD_LOSS_DIOU || kind == MD_LOSS_CIOU) {
        const double diag = cw * cw + ch * ch + IOU_EPS;
        const double xp = (x2 + x1) / 2, yp = (y2 + y1) / 2, xg = (gx1 + gx2) / 2, yg = (gy1 + gy2) / 2;
        const double cd = (xp - xg) * (xp - xg) + (yp - yg) * (yp - yg);
        loss += cd / diag;
        const double G_cd = 1.0 / diag, G_diag = -cd / (diag * diag);
        G_cw += G_diag * 2.0 * cw;
        G_ch += G_diag * 2.0 * ch;
        const double G_xp = G_cd * 2.0 * (xp - xg), G_yp = G_cd * 2.0 * (yp - yg);
        G_x1 += G_xp / 2;
        G_x2 += G_xp / 2;
        G_y1 += G_yp / 2;
        G_y2 += G_yp / 2;
        if (kind == MD_LOSS_CIOU) {
            double dag_w, dag_h, dap_w, dap_h;
            const double ag = atan_ratio(wg, hg, &dag_w, &dag_h);
            const double ap = atan_ratio(w, h, &dap_w, &dap_h);
            const double K = 4.0 / (PI_D * PI_D);
            const double v = K * (ag - ap) * (ag - ap);
            double alpha = safe_div(v, 1.0 - iou + v + IOU_EPS);
            if (gate && !(iou > 0.5)) alpha = 0.0;
            loss += alpha * v;
            const double G_ap = alpha * K * 2.0 * (ag - ap) * -1.0;
            G_w += G_ap * dap_w;
            G_h += G_ap * dap_h;
        }
    }
    if (!grad) return loss;

    /* iou = inter / (uni + eps) */
    const double G_inter_from_iou = safe_div(G_iou, den_u);
    G_uni += den_u != 0.0 ? -G_iou * inter / (den_u * den_u) : 0.0;
    /* uni = w h + wg hg - inter */
    G_w += G_uni * h;
    G_h += G_uni * w;
    const double G_inter = G_inter_from_iou - G_uni;
    if (mask) {
        const double G_iw = G_inter * ih, G_ih = G_inter * iw;
        G_x2 += G_iw * dmin_a(x2, gx2);
        G_x1 -= G_iw * dmax_a(x1, gx1);
        G_y2 += G_ih * dmin_a(y2, gy2);
        G_y1 -= G_ih * dmax_a(y1, gy1);
    }
    /* enclosing box */
    G_x2 += G_cw * dmax_a(x2, gx2);
    G_x1 -= G_cw * dmin_a(x1, gx1);
    G_y2 += G_ch * dmax_a(y2, gy2);
    G_y1 -= G_ch * dmin_a(y1, gy1);
    /* w = x2 - x1, h = y2 - y1 */
    G_x2 += G_w;
    G_x1 -= G_w;
    G_y2 += G_h;
    G_y1 -= G_h;
    grad[0] = G_x1;
    grad[1] = G_y1;
    grad[2] = G_x2;
    grad[3] = G_y2;
    return loss;
}

static int finite4(const float b[4]) { return isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]); }

float md_iou_loss_gated(md_iou_kind kind, const float pred[4], const float target[4], int ciou_alpha_gate,
                        float grad[4]) {
    if (!finite4(pred) || !finite4(target) || (unsigned)kind > MD_LOSS_CIOU) {
        if (grad) grad[0] = grad[1] = grad[2] = grad[3] = 0.0f;
        md_set_error((unsigned)kind > MD_LOSS_CIOU ? MD_ERR_ARG : MD_ERR_NUMERIC,
                     "md_iou_loss: %s", (unsigned)kind > MD_LOSS_CIOU ? "unknown loss kind" : "non-finite box coordinate");
        return NAN;
    }
    double p[4], g[4], gd[4];
    for (int i = 0; i < 4; i++) {
        p[i] = pred[i];
        g[i] = target[i];
    }
    double l = iou_loss_d(kind, p, g, ciou_alpha_gate, grad ? gd : NULL);
    if (grad)
        for (int i = 0; i < 4; i++) grad[i] = (float)gd[i];
    return (float)l;
}

float md_iou_loss(md_iou_kind kind, const float pred[4], const float target[4], float grad[4]) {
    return md_iou_loss_gated(kind, pred, target, 0, grad);
}

static md_status check_rows(const char *fn, const float *pred, const float *target, int n, md_iou_kind kind) {
    if (n < 0 || (n > 0 && (!pred || !target))) return md_set_error(MD_ERR_ARG, "%s: bad arguments (n=%d)", fn, n);
    if ((unsigned)kind > MD_LOSS_CIOU) return md_set_error(MD_ERR_ARG, "%s: unknown loss kind %d", fn, (int)kind);
    for (int i = 0; i < n; i++)
        if (!finite4(pred + 4 * (size_t)i) || !finite4(target + 4 * (size_t)i))
            return md_set_error(MD_ERR_NUMERIC, "%s: box %d: non-finite %s coordinate", fn, i,
                                finite4(pred + 4 * (size_t)i) ? "target" : "predicted");
    return MD_OK;
}

md_status md_iou_loss_forward(float *sum, float *losses, const float *pred, const float *target, int n,
                              md_iou_kind kind, int ciou_alpha_gate) {
    md_status st = check_rows("md_iou_loss_forward", pred, target, n, kind);
    if (st) return st;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double p[4], g[4];
        for (int k = 0; k < 4; k++) {
            p[k] = pred[4 * (size_t)i + k];
            g[k] = target[4 * (size_t)i + k];
        }
        double l = iou_loss_d(kind, p, g, ciou_alpha_gate, NULL);
        if (losses) losses[i] = (float)l;
        s += l;
    }
    if (sum) *sum = (float)s;
    return MD_OK;
}

md_status md_iou_loss_backward(float *dpred, const float *pred, const float *target, int n, md_iou_kind kind,
                               int ciou_alpha_gate, float dloss) {
    md_status st = check_rows("md_iou_loss_backward", pred, target, n, kind);
    if (st) return st;
    if (n > 0 && !dpred) return md_set_error(MD_ERR_ARG, "md_iou_loss_backward: dpred is NULL");
    for (int i = 0; i < n; i++) {
        double p[4], g[4], gd[4];
        for (int k = 0; k < 4; k++) {
            p[k] = pred[4 * (size_t)i + k];
            g[k] = target[4 * (size_t)i + k];
        }
        iou_loss_d(kind, p, g, ciou_alpha_gate, gd);
        for (int k = 0; k < 4; k++) dpred[4 * (size_t)i + k] += (float)(dloss * gd[k]);
    }
    return MD_OK;
}

md_box_loss_opts md_box_loss_opts_roi(const md_roi_heads_config *c) {
    md_box_loss_opts o;
    memset(&o, 0, sizeof o);
    o.kind = c->box_loss;
    o.space = c->box_loss_space;
    o.weight = c->box_loss_weight;
    o.beta = c->smooth_l1_beta;
    o.ciou_alpha_gate = c->ciou_alpha_gate;
    o.coder = md_box_coder_make(10.0f, 10.0f, 5.0f, 5.0f);
    o.normalizer = 0;
    return o;
}

/* F.smooth_l1_loss element and derivative (beta == 0: L1). */
static double smooth_l1_d(double x, double beta, double *grad) {
    double a = fabs(x);
    if (beta > 0 && a < beta) {
        *grad = x / beta;
        return 0.5 * x * x / beta;
    }
    *grad = x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    return a - 0.5 * (beta > 0 ? beta : 0.0);
}

float md_smooth_l1_forward(const float *x, const float *target, int n, float beta) {
    double sum = 0, g;
    for (int i = 0; i < n; i++) sum += smooth_l1_d((double)x[i] - (double)target[i], beta, &g);
    return (float)sum;
}

void md_smooth_l1_backward(float *dx, const float *x, const float *target, int n, float beta, float dloss) {
    if (!dx) return;
    for (int i = 0; i < n; i++) {
        double g;
        smooth_l1_d((double)x[i] - (double)target[i], beta, &g);
        dx[i] += (float)(dloss * g);
    }
}

md_status md_box_regression_loss(float *loss, float *ddeltas, const float *deltas, const float *proposals,
                                 const float *gt, const int *labels, int R, int C, const md_box_loss_opts *o) {
    static const char *fn = "md_box_regression_loss";
    if (!loss || !o || R < 0 || C < 1 || (R > 0 && (!deltas || !proposals || !gt || !labels)))
        return md_set_error(MD_ERR_ARG, "%s: bad arguments (R=%d, C=%d)", fn, R, C);
    if ((unsigned)o->kind > MD_BOXLOSS_SMOOTH_L1) return md_set_error(MD_ERR_ARG, "%s: unknown box loss %d", fn, (int)o->kind);
    if (o->kind != MD_BOXLOSS_SMOOTH_L1 && o->space != MD_SPACE_PROPOSAL && o->space != MD_SPACE_IMAGE)
        return md_set_error(MD_ERR_ARG, "%s: unknown box loss space %d", fn, (int)o->space);
    if (!(o->beta >= 0) || !isfinite(o->weight) || !(o->coder.wx > 0 && o->coder.wy > 0 && o->coder.ww > 0 && o->coder.wh > 0))
        return md_set_error(MD_ERR_ARG, "%s: bad beta %g, weight %g or coder weights", fn, o->beta, o->weight);
    const size_t row = 4 * (size_t)C;
    if (ddeltas) memset(ddeltas, 0, sizeof(float) * row * (size_t)R);
    *loss = 0.0f;
    if (R == 0) return MD_OK;
    const double norm = o->normalizer > 0 ? (double)o->normalizer : (double)R;
    const double scale = o->weight / norm;
    static const double unit[4] = {-0.5, -0.5, 0.5, 0.5};
    double total = 0.0;
    for (int r = 0; r < R; r++) {
        const int lab = labels[r];
        if (lab <= 0) continue;
        if (C > 1 && lab >= C) return md_set_error(MD_ERR_ARG, "%s: row %d: label %d >= num_classes %d", fn, r, lab, C);
        const int slot = C > 1 ? lab : 0;
        const float *dp = deltas + row * (size_t)r + 4 * (size_t)slot;
        const float *pp = proposals + 4 * (size_t)r, *gp = gt + 4 * (size_t)r;
        if (!finite4(dp) || !finite4(pp) || !finite4(gp))
            return md_set_error(MD_ERR_NUMERIC, "%s: row %d (label %d): non-finite %s", fn, r, lab,
                                !finite4(dp) ? "predicted delta" : (!finite4(pp) ? "proposal" : "ground-truth box"));
        double d[4], pr[4], g[4], t[4], gd[4];
        for (int k = 0; k < 4; k++) {
            d[k] = dp[k];
            pr[k] = pp[k];
            g[k] = gp[k];
        }
        double l;
        if (o->kind == MD_BOXLOSS_SMOOTH_L1) {
            md_box_encode_row(&o->coder, t, g, pr);
            l = 0.0;
            for (int k = 0; k < 4; k++) l += smooth_l1_d(d[k] - t[k], o->beta, &gd[k]);
        } else {
            double pb[4], tb[4], gb[4];
            md_box_decode_cache kc, kt;
            if (o->space == MD_SPACE_PROPOSAL) {
                md_box_encode_row(&o->coder, t, g, pr);
                md_box_decode_row(&o->coder, pb, d, unit, &kc);
                md_box_decode_row(&o->coder, tb, t, unit, &kt);
            } else {
                md_box_decode_row(&o->coder, pb, d, pr, &kc);
                memcpy(tb, g, sizeof tb);
            }
            for (int k = 0; k < 4; k++)
                if (!isfinite(pb[k]) || !isfinite(tb[k]))
                    return md_set_error(MD_ERR_NUMERIC, "%s: row %d (label %d): decoded box is not finite (degenerate %s)",
                                        fn, r, lab, isfinite(pb[k]) ? "ground-truth box or proposal" : "proposal");
            l = iou_loss_d(o->kind, pb, tb, o->ciou_alpha_gate, gb);
            md_box_decode_row_backward(&o->coder, gd, gb, &kc);
        }
        if (!isfinite(l)) return md_set_error(MD_ERR_NUMERIC, "%s: row %d (label %d): non-finite loss", fn, r, lab);
        total += l;
        if (ddeltas) {
            float *o4 = ddeltas + row * (size_t)r + 4 * (size_t)slot;
            for (int k = 0; k < 4; k++) o4[k] = (float)(scale * gd[k]);
        }
    }
    *loss = (float)(scale * total);
    return MD_OK;
}
