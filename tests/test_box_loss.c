/* test_box_loss.c — the box-regression losses of include/minidet/box_loss.h, checked against
 * torchvision 0.14 / autograd references in tests/fixtures/box.safetensors
 * (scripts/torch_reference.py box, or scripts/ref_box.py alone):
 *   1. md_iou_loss (IoU, GIoU, DIoU, CIoU, CIoU with the alpha gate): value relative error
 *      <= 1e-5 (floor 1e-6) and gradient relative error <= 1e-4 (floor 1e-3 of the row's largest
 *      gradient component) on 2400 float32 box pairs in 8 cases; the worst error per loss kind and
 *      case is printed as a table;
 *   2. degenerate pairs (zero area, inverted, coincident points): our outputs are always finite
 *      and equal torch's wherever torch's are finite; NaN inputs give the documented error;
 *   3. central finite differences of the float API agree with the analytic gradient where the
 *      loss is smooth (no coordinate ties or touching edges within the step);
 *   4. the batched forms equal the per-box function (backward accumulates);
 *   5. md_box_regression_loss end to end (deltas -> decode -> loss, d deltas) for all five kinds
 *      and both spaces against autograd (smooth-L1 against torchvision's own fastrcnn_loss),
 *      plus finite differences, the class-agnostic path and its errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "minidet/box_loss.h"
#include "minidet/ops.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/box.safetensors"
#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4

static md_st_file F;
static int have_fixture;

static const char *kind_names[5] = {"iou", "giou", "diou", "ciou", "ciou_gated"};
static const char *case_names[8] = {"overlap", "disjoint", "pred_inside", "target_inside",
                                    "near_identical", "thin", "large", "touching"};
static double worst_val[5][9], worst_grad[5][9]; /* [kind][case], case 8 = degenerate */
static double worst_fd[5];

static md_iou_kind kind_of(int k) { return k == 4 ? MD_LOSS_CIOU : (md_iou_kind)k; }

static double *f64(const char *name, size_t *n) { return md_test_tensor_f64(&F, name, n); }

static float *f32(const char *name, size_t *n) { return md_test_tensor_f32(&F, name, n); }

static int64_t *i64(const char *name, size_t *n) { return md_test_tensor_i64(&F, name, n); }

static double rel(double got, double want, double floor) {
    double d = fabs(got - want), s = fmax(fabs(want), floor);
    double r = d / s;
    return isnan(r) ? INFINITY : r;
}

static int all_finite(const double *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* ------------------------------------------------------------ 1. per-box losses vs torchvision */
static void test_iou_losses_vs_torchvision(void) {
    if (!have_fixture) return;
    size_t np = 0;
    float *pred = f32("loss.pred", &np), *tgt = f32("loss.target", NULL);
    int64_t *cs = i64("loss.case", NULL);
    if (!pred || !tgt || !cs) goto out;
    const int n = (int)(np / 4);
    CHECK(n >= 2000, "only %d box pairs in the fixture", n);
    for (int k = 0; k < 5; k++) {
        char nv[64], ng[64];
        snprintf(nv, sizeof nv, "loss.%s.value", kind_names[k]);
        snprintf(ng, sizeof ng, "loss.%s.grad", kind_names[k]);
        double *v = f64(nv, NULL), *g = f64(ng, NULL);
        if (!v || !g) {
            free(v);
            free(g);
            continue;
        }
        int bad_v = 0, bad_g = 0;
        for (int i = 0; i < n; i++) {
            float gr[4];
            float l = md_iou_loss_gated(kind_of(k), pred + 4 * i, tgt + 4 * i, k == 4, gr);
            double ev = rel(l, v[i], 1e-6);
            double gmax = 0;
            for (int c = 0; c < 4; c++) gmax = fmax(gmax, fabs(g[4 * i + c]));
            double eg = 0;
            for (int c = 0; c < 4; c++) eg = fmax(eg, rel(gr[c], g[4 * i + c], fmax(1e-3 * gmax, 1e-12)));
            int c8 = (int)cs[i];
            if (ev > worst_val[k][c8]) worst_val[k][c8] = ev;
            if (eg > worst_grad[k][c8]) worst_grad[k][c8] = eg;
            if (ev > LOSS_TOL && bad_v++ < 3)
                CHECK(0, "%s pair %d (%s): loss %.9g want %.9g (rel %.3g)", kind_names[k], i, case_names[c8], l, v[i], ev);
            if (eg > GRAD_TOL && bad_g++ < 3)
                CHECK(0, "%s pair %d (%s): grad (%.8g %.8g %.8g %.8g) want (%.8g %.8g %.8g %.8g) rel %.3g", kind_names[k],
                      i, case_names[c8], gr[0], gr[1], gr[2], gr[3], g[4 * i], g[4 * i + 1], g[4 * i + 2], g[4 * i + 3], eg);
            md_test_checks += 2;
        }
        /* md_iou_loss == md_iou_loss_gated(.., 0, ..) and grad may be NULL */
        if (k < 4) {
            float gr[4];
            float a = md_iou_loss(kind_of(k), pred, tgt, gr), b = md_iou_loss(kind_of(k), pred, tgt, NULL);
            CHECK(a == b && a == md_iou_loss_gated(kind_of(k), pred, tgt, 0, NULL), "%s: NULL grad changes the value",
                  kind_names[k]);
        }
        free(v);
        free(g);
    }
out:
    free(pred);
    free(tgt);
    free(cs);
}

/* ------------------------------------------------------------ 2. degenerate inputs */
static void test_degenerate(void) {
    if (!have_fixture) return;
    size_t np = 0;
    float *pred = f32("degen.pred", &np), *tgt = f32("degen.target", NULL);
    if (!pred || !tgt) goto out;
    const int n = (int)(np / 4);
    for (int k = 0; k < 5; k++) {
        char nv[64], ng[64];
        snprintf(nv, sizeof nv, "degen.%s.value", kind_names[k]);
        snprintf(ng, sizeof ng, "degen.%s.grad", kind_names[k]);
        double *v = f64(nv, NULL), *g = f64(ng, NULL);
        if (!v || !g) {
            free(v);
            free(g);
            continue;
        }
        for (int i = 0; i < n; i++) {
            float gr[4];
            float l = md_iou_loss_gated(kind_of(k), pred + 4 * i, tgt + 4 * i, k == 4, gr);
            CHECK(isfinite(l) && isfinite(gr[0]) && isfinite(gr[1]) && isfinite(gr[2]) && isfinite(gr[3]),
                  "%s degenerate pair %d: non-finite output %g (%g %g %g %g)", kind_names[k], i, l, gr[0], gr[1], gr[2], gr[3]);
            if (isfinite(v[i])) {
                double ev = rel(l, v[i], 1e-6);
                if (ev > worst_val[k][8]) worst_val[k][8] = ev;
                CHECK(ev <= LOSS_TOL, "%s degenerate pair %d: loss %.9g want %.9g", kind_names[k], i, l, v[i]);
            }
            if (all_finite(g + 4 * i, 4)) {
                double gmax = 0, eg = 0;
                for (int c = 0; c < 4; c++) gmax = fmax(gmax, fabs(g[4 * i + c]));
                for (int c = 0; c < 4; c++) eg = fmax(eg, rel(gr[c], g[4 * i + c], fmax(1e-3 * gmax, 1e-12)));
                if (eg > worst_grad[k][8]) worst_grad[k][8] = eg;
                CHECK(eg <= GRAD_TOL, "%s degenerate pair %d: grad rel err %.3g", kind_names[k], i, eg);
            }
        }
        free(v);
        free(g);
    }
out:
    free(pred);
    free(tgt);
}

static void test_nonfinite_inputs(void) {
    const float good[4] = {0, 0, 10, 10};
    const float bad[4] = {0, NAN, 10, 10}, inf[4] = {0, 0, INFINITY, 10};
    float gr[4] = {1, 1, 1, 1};
    md_clear_error();
    float l = md_iou_loss(MD_LOSS_GIOU, bad, good, gr);
    CHECK(isnan(l) && gr[0] == 0 && gr[1] == 0 && gr[2] == 0 && gr[3] == 0, "NaN input: loss %g, grad not zeroed", l);
    CHECK(md_last_status() == MD_ERR_NUMERIC, "NaN input: error %s", md_status_name(md_last_status()));
    l = md_iou_loss(MD_LOSS_CIOU, good, inf, NULL);
    CHECK(isnan(l) && md_last_status() == MD_ERR_NUMERIC, "inf target: loss %g", l);
    float boxes[8] = {0, 0, 10, 10, 1, 1, 5, NAN}, tg[8] = {0, 0, 9, 9, 1, 1, 4, 4}, sum = 0, dp[8] = {0};
    CHECK(md_iou_loss_forward(&sum, NULL, boxes, tg, 2, MD_LOSS_DIOU, 0) == MD_ERR_NUMERIC, "batched forward accepted NaN");
    CHECK(strstr(md_last_error(), "box 1") != NULL, "error does not name the row: %s", md_last_error());
    CHECK(md_iou_loss_backward(dp, boxes, tg, 2, MD_LOSS_DIOU, 0, 1.0f) == MD_ERR_NUMERIC, "batched backward accepted NaN");
    CHECK(dp[0] == 0 && dp[4] == 0, "backward wrote gradients before failing");
    CHECK(md_iou_loss_forward(&sum, NULL, boxes, tg, 1, (md_iou_kind)7, 0) == MD_ERR_ARG, "unknown kind accepted");
}

/* ------------------------------------------------------------ 3. finite differences */
static int smooth_at(const float *p, const float *t, double h) {
    /* no tie or touching within the step: compare every pred coordinate with every target one
     * along the same axis, and the intersection extent with 0 */
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            if ((a & 1) == (b & 1) && fabs((double)p[a] - t[b]) < 3 * h) return 0;
    double iw = fmin(p[2], t[2]) - fmax(p[0], t[0]), ih = fmin(p[3], t[3]) - fmax(p[1], t[1]);
    if (fabs(iw) < 3 * h || fabs(ih) < 3 * h) return 0;
    return 1;
}

static void test_finite_differences(void) {
    if (!have_fixture) return;
    size_t np = 0;
    float *pred = f32("loss.pred", &np), *tgt = f32("loss.target", NULL);
    int64_t *cs = i64("loss.case", NULL);
    if (!pred || !tgt || !cs) goto out;
    const int n = (int)(np / 4);
    int tested = 0;
    for (int i = 0; i < n; i += 7) {
        const int c8 = (int)cs[i];
        if (c8 == 4 || c8 == 5 || c8 == 7) continue; /* near-identical, thin, touching: ties within any step */
        const float *p = pred + 4 * i, *t = tgt + 4 * i;
        const double scale = fmax(fabs(p[2] - p[0]), fabs(p[3] - p[1]));
        const double h = 1e-2 * scale; /* the float loss carries ~6e-8 rounding: keep the step large */
        if (!smooth_at(p, t, h)) continue;
        tested++;
        for (int k = 0; k < 3; k++) { /* IoU, GIoU, DIoU; CIoU below (alpha is a constant) */
            float gr[4];
            md_iou_loss(kind_of(k), p, t, gr);
            double gmax = 0;
            for (int c = 0; c < 4; c++) gmax = fmax(gmax, fabs(gr[c]));
            for (int c = 0; c < 4; c++) {
                /* central differences at h and h/2, Richardson-extrapolated (O(h^4)) */
                double D[2], noise = 0;
                for (int r = 0; r < 2; r++) {
                    const double hh = r ? h / 2 : h;
                    float pp[4], pm[4];
                    memcpy(pp, p, sizeof pp);
                    memcpy(pm, p, sizeof pm);
                    pp[c] = (float)(p[c] + hh);
                    pm[c] = (float)(p[c] - hh);
                    const double step = (double)pp[c] - pm[c];
                    const double lp = md_iou_loss(kind_of(k), pp, t, NULL), lm = md_iou_loss(kind_of(k), pm, t, NULL);
                    D[r] = (lp - lm) / step;
                    noise += 2 * 6e-8 * fmax(fabs(lp), fabs(lm)) / step * (r ? 4.0 / 3 : 1.0 / 3);
                }
                const double fd = (4 * D[1] - D[0]) / 3;
                /* allowed: 5e-3 relative plus the FD noise of the float32-rounded losses */
                const double den = fmax(fabs(gr[c]), 1e-2 * gmax + 1e-12);
                double e = fmax(fabs(fd - gr[c]) - noise, 0.0) / den;
                worst_fd[k] = fmax(worst_fd[k], fabs(fd - gr[c]) / den); /* raw, for the table */
                CHECK(e <= 5e-3, "%s FD pair %d coord %d: fd %.8g analytic %.8g (rel %.3g)", kind_names[k], i, c, fd, gr[c], e);
            }
        }
    }
    CHECK(tested >= 100, "only %d pairs were smooth enough for finite differences", tested);
    /* CIoU: alpha has no gradient, so FD of the full loss differs; check instead FD of DIoU + alpha0 * v
     * with alpha frozen, reconstructed as loss_ciou - loss_diou = alpha v: d(alpha0 v) = alpha0 dv. */
    int tested_c = 0;
    for (int i = 0; i < n && tested_c < 150; i += 11) {
        const int c8 = (int)cs[i];
        if (c8 == 4 || c8 == 5 || c8 == 7) continue;
        const float *p = pred + 4 * i, *t = tgt + 4 * i;
        const double scale = fmax(fabs(p[2] - p[0]), fabs(p[3] - p[1])), h = 1e-3 * scale;
        if (!smooth_at(p, t, h)) continue;
        float gc[4], gd[4];
        double lc = md_iou_loss(MD_LOSS_CIOU, p, t, gc), ld = md_iou_loss(MD_LOSS_DIOU, p, t, gd);
        double av = lc - ld; /* alpha0 v0 */
        double wg = t[2] - t[0], hg = t[3] - t[1];
        double v0 = 4 / (M_PI * M_PI) * pow(atan(wg / hg) - atan(((double)p[2] - p[0]) / ((double)p[3] - p[1])), 2);
        if (v0 < 1e-8) continue;
        double alpha0 = av / v0;
        tested_c++;
        double gmax = 0;
        for (int c = 0; c < 4; c++) gmax = fmax(gmax, fabs(gc[c]));
        for (int c = 0; c < 4; c++) {
            double q[4] = {p[0], p[1], p[2], p[3]};
            q[c] += h;
            double vp = 4 / (M_PI * M_PI) * pow(atan(wg / hg) - atan((q[2] - q[0]) / (q[3] - q[1])), 2);
            q[c] -= 2 * h;
            double vm = 4 / (M_PI * M_PI) * pow(atan(wg / hg) - atan((q[2] - q[0]) / (q[3] - q[1])), 2);
            double fd = gd[c] + alpha0 * (vp - vm) / (2 * h);
            double e = fabs(fd - gc[c]) / fmax(fabs(gc[c]), 1e-2 * gmax + 1e-9);
            worst_fd[3] = fmax(worst_fd[3], e);
            CHECK(e <= 5e-3, "ciou FD (alpha frozen) pair %d coord %d: fd %.8g analytic %.8g", i, c, fd, gc[c]);
        }
    }
    CHECK(tested_c >= 50, "only %d CIoU pairs for the frozen-alpha finite differences", tested_c);
out:
    free(pred);
    free(tgt);
    free(cs);
}

/* ------------------------------------------------------------ 4. batched forms */
static void test_batched_equals_single(void) {
    if (!have_fixture) return;
    size_t np = 0;
    float *pred = f32("loss.pred", &np), *tgt = f32("loss.target", NULL);
    if (!pred || !tgt) goto out;
    const int n = 300;
    float *losses = malloc(sizeof(float) * n), *dp = malloc(sizeof(float) * 4 * n);
    if (!losses || !dp) {
        CHECK(0, "out of memory");
        free(losses);
        free(dp);
        goto out;
    }
    for (int k = 0; k < 4; k++) {
        float sum = 0;
        CHECK_OK(md_iou_loss_forward(&sum, losses, pred, tgt, n, kind_of(k), 0));
        for (int i = 0; i < 4 * n; i++) dp[i] = 1.0f;
        CHECK_OK(md_iou_loss_backward(dp, pred, tgt, n, kind_of(k), 0, 0.5f));
        double s = 0;
        int bad = 0;
        for (int i = 0; i < n; i++) {
            float g[4];
            float l = md_iou_loss(kind_of(k), pred + 4 * i, tgt + 4 * i, g);
            s += l;
            if (l != losses[i]) bad++;
            for (int c = 0; c < 4; c++)
                if (fabsf(dp[4 * i + c] - (1.0f + 0.5f * g[c])) > 1e-6f * (1 + fabsf(g[c]))) bad++;
        }
        CHECK(bad == 0, "%s: batched forward/backward differ from md_iou_loss in %d places", kind_names[k], bad);
        CHECK_NEAR(sum, s, 1e-5 * fabs(s));
    }
    free(losses);
    free(dp);
out:
    free(pred);
    free(tgt);
}

/* ------------------------------------------------------------ 5. regression loss end to end */
static const char *roi_kinds[5] = {"iou", "giou", "diou", "ciou", "smooth_l1"}; /* md_box_loss_kind order */
static const float roi_weights[5] = {10.0f, 10.0f, 12.0f, 12.0f, 1.0f};
static double worst_roi_loss[5][2], worst_roi_grad[5][2];

static md_box_loss_opts roi_opts(int k, int space) {
    md_roi_heads_config rc;
    memset(&rc, 0, sizeof rc);
    rc.box_loss = (md_box_loss_kind)k;
    rc.box_loss_space = space ? MD_SPACE_IMAGE : MD_SPACE_PROPOSAL;
    rc.box_loss_weight = roi_weights[k];
    rc.smooth_l1_beta = 1.0f / 9.0f;
    return md_box_loss_opts_roi(&rc);
}

static void test_roi_loss_vs_torch(void) {
    if (!have_fixture) return;
    size_t nd = 0, nl = 0;
    float *deltas = f32("roi.deltas", &nd), *props = f32("roi.proposals", NULL), *gt = f32("roi.gt", NULL);
    int64_t *lab64 = i64("roi.labels", &nl);
    const md_st_tensor *td = md_st_find(&F, "roi.deltas");
    if (!deltas || !props || !gt || !lab64 || !td || td->ndim != 3) goto out0;
    const int R = (int)nl, C = (int)td->shape[1];
    int *labels = malloc(sizeof(int) * R);
    float *dd = malloc(sizeof(float) * nd), *d2 = malloc(sizeof(float) * nd);
    if (!labels || !dd || !d2) goto out;
    for (int i = 0; i < R; i++) labels[i] = (int)lab64[i];
    for (int k = 0; k < 5; k++)
        for (int s = 0; s < 2; s++) {
            char nlb[80], ngb[80];
            const char *sp = s ? "image" : "proposal";
            snprintf(nlb, sizeof nlb, "roi.%s.%s.loss", roi_kinds[k], sp);
            snprintf(ngb, sizeof ngb, "roi.%s.%s.ddeltas", roi_kinds[k], sp);
            double *rl = f64(nlb, NULL), *rg = f64(ngb, NULL);
            if (!rl || !rg) {
                free(rl);
                free(rg);
                continue;
            }
            md_box_loss_opts o = roi_opts(k, s);
            float loss = -1;
            for (size_t i = 0; i < nd; i++) dd[i] = 123.0f; /* must be overwritten */
            CHECK_OK(md_box_regression_loss(&loss, dd, deltas, props, gt, labels, R, C, &o));
            double el = rel(loss, rl[0], 1e-6);
            double gmax = 0, eg = 0;
            for (size_t i = 0; i < nd; i++) gmax = fmax(gmax, fabs(rg[i]));
            size_t wi = 0;
            for (size_t i = 0; i < nd; i++) {
                double e = rel(dd[i], rg[i], fmax(1e-3 * gmax, 1e-12));
                if (e > eg) {
                    eg = e;
                    wi = i;
                }
            }
            worst_roi_loss[k][s] = el;
            worst_roi_grad[k][s] = eg;
            CHECK(el <= LOSS_TOL, "roi %s/%s: loss %.9g want %.9g (rel %.3g)", roi_kinds[k], sp, loss, rl[0], el);
            CHECK(eg <= GRAD_TOL, "roi %s/%s: ddeltas[%zu] %.9g want %.9g (rel %.3g)", roi_kinds[k], sp, wi, dd[wi], rg[wi], eg);
            /* the clamped dw of row 3 gets exactly zero gradient (as autograd through clamp) */
            CHECK(dd[(size_t)3 * C * 4 + 4 * labels[3] + 2] == 0.0f || k == MD_BOXLOSS_SMOOTH_L1, "roi %s/%s: clamped dw has a gradient",
                  roi_kinds[k], sp);
            /* loss without gradient output equals the one with */
            float loss2 = -1;
            CHECK_OK(md_box_regression_loss(&loss2, NULL, deltas, props, gt, labels, R, C, &o));
            CHECK(loss2 == loss, "roi %s/%s: loss differs with ddeltas NULL", roi_kinds[k], sp);
            free(rl);
            free(rg);
        }
    /* finite differences of the float API w.r.t. a few foreground deltas */
    for (int k = 0; k < 5; k++) {
        md_box_loss_opts o = roi_opts(k, k % 2 == 0); /* IoU, DIoU, smooth-L1 in image space (ignored by smooth-L1) */
        float loss;
        CHECK_OK(md_box_regression_loss(&loss, dd, deltas, props, gt, labels, R, C, &o));
        int checked = 0;
        for (int r = 0; r < R && checked < 6; r++) {
            if (labels[r] <= 0 || r == 3) continue;
            checked++;
            for (int c = 0; c < 4; c++) {
                size_t at = (size_t)r * C * 4 + 4 * labels[r] + c;
                memcpy(d2, deltas, sizeof(float) * nd);
                const float h = 1e-3f;
                float lp, lm;
                d2[at] = deltas[at] + h;
                double sp = d2[at];
                md_box_regression_loss(&lp, NULL, d2, props, gt, labels, R, C, &o);
                d2[at] = deltas[at] - h;
                double sm = d2[at];
                md_box_regression_loss(&lm, NULL, d2, props, gt, labels, R, C, &o);
                double fd = ((double)lp - lm) / (sp - sm);
                double e = fabs(fd - dd[at]) / fmax(fabs(dd[at]), 1e-2);
                if (k != 4) /* CIoU: alpha is a constant in the gradient, not in the loss */
                    CHECK(e <= 3e-2, "roi %s FD row %d coord %d: fd %.6g analytic %.6g", roi_kinds[k], r, c, fd, dd[at]);
            }
        }
    }
out:
    free(labels);
    free(dd);
    free(d2);
out0:
    free(deltas);
    free(props);
    free(gt);
    free(lab64);
}

static void test_roi_loss_agnostic_and_errors(void) {
    /* C = 1 (class-agnostic, the RPN) with normalizer: equals the class-specific loss of the same
     * rows divided by the other normaliser */
    const float props[12] = {10, 10, 50, 40, 100, 100, 160, 220, 0, 0, 30, 30};
    const float gt[12] = {12, 8, 55, 44, 90, 110, 150, 200, 5, 5, 20, 20};
    const float d1[12] = {0.1f, -0.2f, 0.05f, 0.3f, -0.4f, 0.2f, 0.1f, -0.1f, 9, 9, 9, 9};
    const int lab1[3] = {1, 1, -1};
    float d3[36] = {0}, g1[12], g3[36];
    const int lab3[3] = {2, 1, 0};
    memcpy(d3 + 8, d1, 4 * sizeof(float));      /* row 0, class 2 */
    memcpy(d3 + 12 + 4, d1 + 4, 4 * sizeof(float)); /* row 1, class 1 */
    for (int k = 0; k < 5; k++) {
        md_box_loss_opts o = roi_opts(k, 0);
        o.coder = md_box_coder_make(1, 1, 1, 1);
        float l1, l3;
        o.normalizer = 7;
        CHECK_OK(md_box_regression_loss(&l1, g1, d1, props, gt, lab1, 3, 1, &o));
        CHECK_OK(md_box_regression_loss(&l3, g3, d3, props, gt, lab3, 3, 3, &o));
        CHECK(l1 == l3 && l1 > 0, "%s: agnostic %g != specific %g", roi_kinds[k], l1, l3);
        CHECK(g1[0] == g3[8] && g1[7] == g3[19] && g1[8] == 0 && g3[0] == 0 && g3[24] == 0,
              "%s: gradient slots wrong", roi_kinds[k]);
        o.normalizer = 0;
        float l1r;
        CHECK_OK(md_box_regression_loss(&l1r, NULL, d1, props, gt, lab1, 3, 1, &o));
        CHECK_NEAR(l1r, l1 * 7.0 / 3.0, 1e-6 * l1);
    }
    /* errors */
    md_box_loss_opts o = roi_opts(MD_BOXLOSS_GIOU, 0);
    float l, bad[36];
    memcpy(bad, d3, sizeof bad);
    bad[9] = NAN;
    CHECK(md_box_regression_loss(&l, NULL, bad, props, gt, lab3, 3, 3, &o) == MD_ERR_NUMERIC, "NaN fg delta accepted");
    CHECK(strstr(md_last_error(), "row 0") != NULL, "error does not name the row: %s", md_last_error());
    memcpy(bad, d3, sizeof bad);
    bad[24 + 1] = NAN; /* background row: ignored */
    CHECK_OK(md_box_regression_loss(&l, NULL, bad, props, gt, lab3, 3, 3, &o));
    CHECK(isfinite(l), "background NaN leaked into the loss");
    const int lab_big[3] = {3, 0, 0};
    CHECK(md_box_regression_loss(&l, NULL, d3, props, gt, lab_big, 3, 3, &o) == MD_ERR_ARG, "label >= C accepted");
    const float zero_prop[12] = {10, 10, 10, 40, 100, 100, 160, 220, 0, 0, 30, 30};
    for (int k = 0; k < 5; k++) {
        md_box_loss_opts ok = roi_opts(k, 0);
        md_status st = md_box_regression_loss(&l, NULL, d3, zero_prop, gt, lab3, 3, 3, &ok);
        CHECK(st == MD_ERR_NUMERIC, "%s: zero-width proposal gave %s (loss %g), want MD_ERR_NUMERIC", roi_kinds[k],
              md_status_name(st), l);
    }
    const float inv_gt[12] = {55, 8, 12, 44, 90, 110, 150, 200, 5, 5, 20, 20}; /* inverted gt, image space: finite */
    md_box_loss_opts oi = roi_opts(MD_BOXLOSS_CIOU, 1);
    float gi[36];
    CHECK_OK(md_box_regression_loss(&l, gi, d3, props, inv_gt, lab3, 3, 3, &oi));
    int fin = isfinite(l);
    for (int i = 0; i < 36; i++) fin &= isfinite(gi[i]) != 0;
    CHECK(fin, "inverted gt box in image space: non-finite loss/gradient");
    /* empty batch */
    l = -1;
    CHECK_OK(md_box_regression_loss(&l, NULL, NULL, NULL, NULL, NULL, 0, 3, &o));
    CHECK(l == 0, "empty batch loss %g", l);
}

/* smooth-L1 branch == md_smooth_l1_forward on the fg rows' label slots and their encoded targets
 * (rounded to float32, as torchvision's float32 pipeline has them), and a timing of the loss at detector size (1024 rows x 91 classes) */
static void test_roi_smooth_l1_matches_ops_and_timing(void) {
    enum { R = 1024, C = 91 };
    float *deltas = calloc((size_t)R * C * 4, sizeof(float)), *dd = malloc(sizeof(float) * R * C * 4);
    float *props = malloc(sizeof(float) * R * 4), *gt = malloc(sizeof(float) * R * 4);
    float *fgd = malloc(sizeof(float) * R * 4), *tg = malloc(sizeof(float) * R * 4);
    float *fgp = malloc(sizeof(float) * R * 4), *fgg = malloc(sizeof(float) * R * 4);
    int *labels = malloc(sizeof(int) * R);
    if (!deltas || !dd || !props || !gt || !fgd || !tg || !fgp || !fgg || !labels) {
        CHECK(0, "out of memory");
        goto out;
    }
    md_rng r = md_rng_make(11, 2);
    int nf = 0;
    for (int i = 0; i < R; i++) {
        float x = 600 * md_rng_uniform(&r), y = 600 * md_rng_uniform(&r), w = 10 + 200 * md_rng_uniform(&r),
              h = 10 + 200 * md_rng_uniform(&r);
        float *p = props + 4 * i, *g = gt + 4 * i;
        p[0] = x, p[1] = y, p[2] = x + w, p[3] = y + h;
        g[0] = x + 0.1f * w * md_rng_normal(&r), g[1] = y + 0.1f * h * md_rng_normal(&r);
        g[2] = g[0] + w * expf(0.2f * md_rng_normal(&r)), g[3] = g[1] + h * expf(0.2f * md_rng_normal(&r));
        labels[i] = md_rng_below(&r, 4) == 0 ? 1 + (int)md_rng_below(&r, C - 1) : 0;
        for (int k = 0; k < 4 * C; k++) deltas[(size_t)i * C * 4 + k] = 0.3f * md_rng_normal(&r);
        if (labels[i] > 0) {
            memcpy(fgd + 4 * nf, deltas + (size_t)i * C * 4 + 4 * labels[i], 4 * sizeof(float));
            memcpy(fgp + 4 * nf, p, 4 * sizeof(float));
            memcpy(fgg + 4 * nf, g, 4 * sizeof(float));
            nf++;
        }
    }
    md_box_coder coder = md_box_coder_make(10, 10, 5, 5);
    for (int i = 0; i < nf; i++) {
        double t[4], g[4], p[4];
        for (int k = 0; k < 4; k++) g[k] = fgg[4 * i + k], p[k] = fgp[4 * i + k];
        md_box_encode_row(&coder, t, g, p);
        for (int k = 0; k < 4; k++) tg[4 * i + k] = (float)t[k];
    }
    const float want = md_smooth_l1_forward(fgd, tg, 4 * nf, 1.0f / 9.0f) / R;
    md_box_loss_opts o = roi_opts(MD_BOXLOSS_SMOOTH_L1, 0);
    float got = 0;
    CHECK_OK(md_box_regression_loss(&got, dd, deltas, props, gt, labels, R, C, &o));
    CHECK(fabs(got - want) <= 1e-5 * fabs(want), "smooth_l1: %.9g vs md_smooth_l1_forward %.9g", got, want);
    printf("  smooth-L1 RoI loss %.7f, md_smooth_l1_forward on encoded targets %.7f (%d fg of %d)\n", got, want, nf, R);
    for (int k = 0; k < 5; k++) {
        md_box_loss_opts ok = roi_opts(k, 0);
        const int reps = 20;
        clock_t t0 = clock();
        for (int t = 0; t < reps; t++) md_box_regression_loss(&got, dd, deltas, props, gt, labels, R, C, &ok);
        printf("  %-9s loss + d deltas, %d rows x %d classes: %.3f ms\n", roi_kinds[k], R, C,
               1e3 * (double)(clock() - t0) / CLOCKS_PER_SEC / reps);
    }
out:
    free(deltas);
    free(dd);
    free(props);
    free(gt);
    free(fgd);
    free(tg);
    free(fgp);
    free(fgg);
    free(labels);
}

static void print_table(void) {
    printf("\n  worst relative error vs torchvision (float32 C vs float64 reference)\n");
    printf("  %-15s", "case");
    for (int k = 0; k < 5; k++) printf(" %10s-val %10s-grd", kind_names[k], kind_names[k]);
    printf("\n");
    for (int c = 0; c < 9; c++) {
        printf("  %-15s", c < 8 ? case_names[c] : "degenerate");
        for (int k = 0; k < 5; k++) printf(" %14.2e %14.2e", worst_val[k][c], worst_grad[k][c]);
        printf("\n");
    }
    printf("  finite differences (worst rel):");
    for (int k = 0; k < 4; k++) printf(" %s %.2e", kind_names[k], worst_fd[k]);
    printf("\n  RoI-head loss end to end (loss / d deltas):\n");
    for (int k = 0; k < 5; k++)
        printf("  %-10s proposal %.2e / %.2e   image %.2e / %.2e\n", roi_kinds[k], worst_roi_loss[k][0],
               worst_roi_grad[k][0], worst_roi_loss[k][1], worst_roi_grad[k][1]);
    printf("\n");
}

int main(void) {
    if (md_test_need_path(FIXTURE, "scripts/torch_reference.py box")) {
        md_status st = md_st_load(FIXTURE, &F);
        CHECK(st == MD_OK, "loading %s: %s", FIXTURE, md_last_error());
        have_fixture = st == MD_OK;
    }
    MD_RUN(test_iou_losses_vs_torchvision);
    MD_RUN(test_degenerate);
    MD_RUN(test_nonfinite_inputs);
    MD_RUN(test_finite_differences);
    MD_RUN(test_batched_equals_single);
    MD_RUN(test_roi_loss_vs_torch);
    MD_RUN(test_roi_loss_agnostic_and_errors);
    MD_RUN(test_roi_smooth_l1_matches_ops_and_timing);
    print_table();
    if (have_fixture) md_st_free(&F);
    return md_test_summary();
}
