/* test_ops_heads.c — the detector-head ops of include/minidet/ops.h against PyTorch and
 * finite differences: softmax cross-entropy with ignore, sigmoid BCE with logits, RoIAlign
 * forward/backward; and smooth-L1 (include/minidet/box_loss.h, the box losses' element function)
 * against the same fixture.
 *
 *  - Fixture tests/fixtures/ops_heads.safetensors (scripts/torch_reference.py ops_heads):
 *    forward and backward vs torch / torchvision 0.14, relative error <= 1e-4 with an
 *    absolute floor of 1e-3 x the largest reference magnitude (so elements that are zero up
 *    to rounding do not divide by ~0). The worst error per op is printed.
 *  - Backward accumulates (+=) into a non-zero buffer; NULL gradient pointers are skipped.
 *  - Finite differences: losses in float (central, step 2^-6) on tiny inputs away from kinks;
 *    RoIAlign against a direct double-precision implementation written here from the
 *    torchvision formula (forward compared directly; backward compared with central
 *    differences of <dout, roi_align(feat)> in double, which is exact for this linear op).
 *  - RoIAlign with 1 and 2 OpenMP threads gives bitwise identical forward and backward.
 * MD_VERBOSE=1 prints the error of every RoIAlign fixture case. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/box_loss.h"
#include "minidet/error.h"
#include "minidet/ops.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIX "tests/fixtures/ops_heads.safetensors"
#define TOL 1e-4

static md_st_file fx;
static int fx_ok;
static double worst_fwd[4], worst_bwd[4]; /* CE, BCE, SL1, RoIAlign */
static const char *op_names[4] = {"cross_entropy", "bce_logits", "smooth_l1", "roi_align"};

static float *get(const char *cs, const char *key, size_t *n) { return md_test_fixture_f32(&fx, cs, key, n); }

static int geom(const char *cs, int64_t *g, int n) { return md_test_fixture_geom(&fx, cs, g, n); }

/* relative error with floor 1e-3 * max|ref| (and >= 1e-30); records the op's worst. */
static double cmp(const char *what, const float *got, const float *ref, size_t n, double *worst) {
    double fl = 1e-3 * md_max_abs(ref, n);
    if (fl < 1e-30) fl = 1e-30;
    size_t wi = 0;
    double e = md_max_rel_err(got, ref, n, fl, &wi);
    if (e > *worst) *worst = e;
    CHECK(e <= TOL, "%s: rel err %.3g at [%zu]: got %.9g, ref %.9g", what, e, wi, n ? got[wi] : 0.0, n ? ref[wi] : 0.0);
    return e;
}

static double scalar_err(const char *what, float got, float ref, double *worst) {
    return cmp(what, &got, &ref, 1, worst);
}

/* ------------------------------------------------------------ cross-entropy */

static void ce_case(const char *cs) {
    int64_t g[4];
    if (!geom(cs, g, 4)) return;
    int N = (int)g[0], K = (int)g[1], ign = (int)g[2], all_ign = (int)g[3];
    size_t n;
    float *x = get(cs, "x", &n), *lf = get(cs, "labels", NULL), *dl = get(cs, "dloss", NULL);
    if (!x || !lf || !dl) return;
    int32_t *lab = malloc(sizeof *lab * N);
    float *probs = malloc(sizeof *probs * n), *gx = malloc(sizeof *gx * n);
    for (int i = 0; i < N; i++) lab[i] = (int32_t)lf[i];
    float loss = md_cross_entropy_forward(probs, x, lab, N, K, ign, 0);
    if (all_ign) {
        CHECK(loss == 0.0f, "%s: every row ignored: loss %g, want 0", cs, loss);
        for (size_t i = 0; i < n; i++) gx[i] = 0.5f;
        md_cross_entropy_backward(gx, probs, lab, N, K, ign, dl[0], 0);
        int same = 1;
        for (size_t i = 0; i < n; i++) same &= gx[i] == 0.5f;
        CHECK(same, "%s: every row ignored: backward must add nothing", cs);
    } else {
        float *rl = get(cs, "loss", NULL), *rp = get(cs, "probs", NULL), *rg = get(cs, "gx", NULL);
        if (rl && rp && rg) {
            scalar_err(cs, loss, rl[0], &worst_fwd[0]);
            cmp(cs, probs, rp, n, &worst_fwd[0]);
            for (size_t i = 0; i < n; i++) gx[i] = 0;
            md_cross_entropy_backward(gx, probs, lab, N, K, ign, dl[0], 0);
            cmp(cs, gx, rg, n, &worst_bwd[0]);
            /* accumulate: start from 1 + i/n, expect that plus the gradient */
            float *acc = malloc(sizeof *acc * n), *want = malloc(sizeof *want * n);
            for (size_t i = 0; i < n; i++) acc[i] = 1.0f + (float)i / (float)n, want[i] = acc[i] + rg[i];
            md_cross_entropy_backward(acc, probs, lab, N, K, ign, dl[0], 0);
            cmp("ce accumulate", acc, want, n, &(double){0});
            md_cross_entropy_backward(NULL, probs, lab, N, K, ign, dl[0], 0); /* NULL: skipped */
            free(acc), free(want);
        }
        free(rl), free(rp), free(rg);
    }
    free(x), free(lf), free(dl), free(lab), free(probs), free(gx);
}

static void test_cross_entropy(void) {
    if (!fx_ok) return;
    ce_case("ce_ign_neg1");
    ce_case("ce_ign_class");
    ce_case("ce_many_classes");
    ce_case("ce_all_ignored");
    /* a label outside [0, K) that is not the ignore index is an error: NaN + message */
    float x[6] = {0, 1, 2, 3, 4, 5}, p[6];
    int32_t lab[2] = {1, 3};
    md_clear_error();
    float l = md_cross_entropy_forward(p, x, lab, 2, 3, -1, 0);
    CHECK(isnan(l) && md_last_status() == MD_ERR_ARG && strstr(md_last_error(), "labels[1] = 3"), "bad label: loss %g, error '%s'", l,
          md_last_error());
}

/* ------------------------------------------------------------ BCE and smooth-L1 */

static void test_bce(void) {
    if (!fx_ok) return;
    const char *cs = "bce_mixed";
    size_t n;
    float *x = get(cs, "x", &n), *t = get(cs, "t", NULL), *dl = get(cs, "dloss", NULL), *rl = get(cs, "loss", NULL), *rg = get(cs, "gx", NULL);
    if (!x || !t || !dl || !rl || !rg) return;
    float loss = md_bce_logits_forward(x, t, (int)n, 0);
    scalar_err(cs, loss, rl[0], &worst_fwd[1]);
    float *gx = calloc(n, sizeof *gx), *want = malloc(sizeof *want * n);
    md_bce_logits_backward(gx, x, t, (int)n, dl[0], 0);
    cmp(cs, gx, rg, n, &worst_bwd[1]);
    for (size_t i = 0; i < n; i++) gx[i] = -2.0f + (float)i, want[i] = gx[i] + rg[i];
    md_bce_logits_backward(gx, x, t, (int)n, dl[0], 0);
    cmp("bce accumulate", gx, want, n, &(double){0});
    md_bce_logits_backward(NULL, x, t, (int)n, dl[0], 0);
    /* |x| = 1000: finite, equal to the linear asymptote */
    float xb[2] = {1000.0f, -1000.0f}, tb[2] = {0.0f, 1.0f};
    CHECK_NEAR(md_bce_logits_forward(xb, tb, 2, 0), 1000.0, 1e-3);
    free(x), free(t), free(dl), free(rl), free(rg), free(gx), free(want);
}

static void sl1_case(const char *cs) {
    size_t n;
    float *x = get(cs, "x", &n), *t = get(cs, "t", NULL), *dl = get(cs, "dloss", NULL), *rl = get(cs, "loss", NULL), *rg = get(cs, "gx", NULL),
          *b = get(cs, "beta", NULL);
    if (x && t && dl && rl && rg && b) {
        /* beta = 0 at d == 0: minidet's subgradient is 0 (F.l1_loss's, the one training has always used);
         * PyTorch 1.13's smooth_l1 kernel, which the fixture ran, gives -1 */
        int zeros = 0;
        for (size_t i = 0; i < n; i++)
            if (b[0] == 0.0f && x[i] == t[i]) {
                CHECK(rg[i] == -dl[0], "%s: fixture's gradient at d == 0 is %g, expected torch's -dloss", cs, rg[i]);
                rg[i] = 0.0f;
                zeros++;
            }
        CHECK(b[0] != 0.0f || zeros == 1, "%s: %d elements with d == 0, the fixture has one", cs, zeros);
        float loss = md_smooth_l1_forward(x, t, (int)n, b[0]);
        scalar_err(cs, loss, rl[0], &worst_fwd[2]);
        float *gx = calloc(n, sizeof *gx), *want = malloc(sizeof *want * n);
        md_smooth_l1_backward(gx, x, t, (int)n, b[0], dl[0]);
        cmp(cs, gx, rg, n, &worst_bwd[2]);
        for (size_t i = 0; i < n; i++) gx[i] = 3.0f - (float)i, want[i] = gx[i] + rg[i];
        md_smooth_l1_backward(gx, x, t, (int)n, b[0], dl[0]);
        cmp("smooth_l1 accumulate", gx, want, n, &(double){0});
        md_smooth_l1_backward(NULL, x, t, (int)n, b[0], dl[0]);
        free(gx), free(want);
    }
    free(x), free(t), free(dl), free(rl), free(rg), free(b);
}

static void test_smooth_l1(void) {
    if (!fx_ok) return;
    sl1_case("sl1_b9");
    sl1_case("sl1_b1");
    sl1_case("sl1_b0");
}

/* central differences of the float losses on tiny inputs chosen away from kinks */
static void test_losses_fd(void) {
    const float h = 1.0f / 64; /* exact in float; |x - t| stays >= 0.05 away from 0 and +-beta */
    float x[12] = {0.3f, -1.2f, 2.1f, 0.05f, -0.7f, 1.6f, -2.4f, 0.95f, 0.35f, -0.15f, 1.1f, -0.45f};
    float t[12] = {1, 0, 1, 0.25f, 0, 1, 0, 1, -0.8f, 0.6f, 0.2f, 0.4f};
    float g[12], xp[12], p[12];
    double worst = 0;
    /* CE: 3 rows x 4 classes, row 1 ignored (label -1) */
    int32_t lab[3] = {2, -1, 0};
    memset(g, 0, sizeof g);
    md_cross_entropy_forward(p, x, lab, 3, 4, -1, 0);
    md_cross_entropy_backward(g, p, lab, 3, 4, -1, 1.0f, 0);
    for (int i = 0; i < 12; i++) {
        memcpy(xp, x, sizeof x);
        xp[i] = x[i] + h;
        double fp = md_cross_entropy_forward(p, xp, lab, 3, 4, -1, 0);
        xp[i] = x[i] - h;
        double fm = md_cross_entropy_forward(p, xp, lab, 3, 4, -1, 0);
        double fd = (fp - fm) / (2.0 * h), e = fabs(fd - g[i]);
        if (e > worst) worst = e;
        CHECK(e <= 5e-5 + 1e-3 * fabs(fd), "CE fd [%d]: fd %.7g, backward %.7g", i, fd, (double)g[i]);
    }
    /* BCE on x[0..7] with targets t[0..7] */
    memset(g, 0, sizeof g);
    md_bce_logits_backward(g, x, t, 8, 1.0f, 0);
    for (int i = 0; i < 8; i++) {
        memcpy(xp, x, sizeof x);
        xp[i] = x[i] + h;
        double fp = md_bce_logits_forward(xp, t, 8, 0);
        xp[i] = x[i] - h;
        double fm = md_bce_logits_forward(xp, t, 8, 0);
        double fd = (fp - fm) / (2.0 * h), e = fabs(fd - g[i]);
        if (e > worst) worst = e;
        CHECK(e <= 5e-5 + 1e-3 * fabs(fd), "BCE fd [%d]: fd %.7g, backward %.7g", i, fd, (double)g[i]);
    }
    /* smooth-L1 with beta 1/9, 1 and 0 (|x - t| is never within h of 0 or beta here) */
    const float betas[3] = {1.0f / 9.0f, 1.0f, 0.0f};
    for (int bi = 0; bi < 3; bi++) {
        memset(g, 0, sizeof g);
        md_smooth_l1_backward(g, x, t, 12, betas[bi], 1.0f);
        for (int i = 0; i < 12; i++) {
            memcpy(xp, x, sizeof x);
            xp[i] = x[i] + h;
            double fp = md_smooth_l1_forward(xp, t, 12, betas[bi]);
            xp[i] = x[i] - h;
            double fm = md_smooth_l1_forward(xp, t, 12, betas[bi]);
            double fd = (fp - fm) / (2.0 * h), e = fabs(fd - g[i]);
            if (e > worst) worst = e;
            CHECK(e <= 5e-5 + 1e-3 * fabs(fd), "smooth-L1 beta %g fd [%d]: fd %.7g, backward %.7g", betas[bi], i, fd, (double)g[i]);
        }
    }
    /* normalizer > 0 replaces the divisor (CE: 2 rows not ignored, BCE: 8): twice the divisor, half the loss and gradient */
    float gh[12], g2[12];
    const float ce2 = md_cross_entropy_forward(p, x, lab, 3, 4, -1, 0), ce4 = md_cross_entropy_forward(p, x, lab, 3, 4, -1, 4);
    CHECK_NEAR(ce4, 0.5 * ce2, 1e-6 * ce2);
    memset(g2, 0, sizeof g2), memset(gh, 0, sizeof gh);
    md_cross_entropy_backward(g2, p, lab, 3, 4, -1, 1.0f, 0);
    md_cross_entropy_backward(gh, p, lab, 3, 4, -1, 1.0f, 4);
    for (int i = 0; i < 12; i++) CHECK(fabsf(gh[i] - 0.5f * g2[i]) <= 1e-7f, "CE normalizer: gradient [%d] %g vs %g / 2", i, gh[i], g2[i]);
    const float b8 = md_bce_logits_forward(x, t, 8, 0), b16 = md_bce_logits_forward(x, t, 8, 16);
    CHECK_NEAR(b16, 0.5 * b8, 1e-6 * b8);
    memset(g2, 0, sizeof g2), memset(gh, 0, sizeof gh);
    md_bce_logits_backward(g2, x, t, 8, 1.0f, 0);
    md_bce_logits_backward(gh, x, t, 8, 1.0f, 16);
    for (int i = 0; i < 8; i++) CHECK(fabsf(gh[i] - 0.5f * g2[i]) <= 1e-7f, "BCE normalizer: gradient [%d] %g vs %g / 2", i, gh[i], g2[i]);
    printf("  losses: worst |finite difference - backward| = %.2e\n", worst);
}

/* ------------------------------------------------------------ RoIAlign */

/* Direct double-precision RoIAlign written from the torchvision formula: sample positions in
 * float32 exactly as the kernel forms them, everything else in double, no tables. */
static void roi_ref(double *out, const double *feat, double *dfeat, const float *dout, const float *rois, int R, int N, int C, int H, int W,
                    int PH, int PW, float scale, int sr, int aligned) {
    (void)N;
    for (int r = 0; r < R; r++) {
        const float *q = rois + 5 * r;
        int b = (int)q[0];
        float off = aligned ? 0.5f : 0.0f;
        float sw = q[1] * scale - off, sh = q[2] * scale - off, ew = q[3] * scale - off, eh = q[4] * scale - off;
        float rw = ew - sw, rh = eh - sh;
        if (!aligned) rw = rw < 1 ? 1 : rw, rh = rh < 1 ? 1 : rh;
        float bh = rh / (float)PH, bw = rw / (float)PW;
        int gh = sr > 0 ? sr : (int)ceilf(rh / (float)PH), gw = sr > 0 ? sr : (int)ceilf(rw / (float)PW);
        double cnt = gh * gw > 1 ? gh * gw : 1;
        for (int c = 0; c < C; c++) {
            const double *f = feat + ((size_t)b * C + c) * H * W;
            double *df = dfeat ? dfeat + ((size_t)b * C + c) * H * W : NULL;
            for (int ph = 0; ph < PH; ph++)
                for (int pw = 0; pw < PW; pw++) {
                    double s = 0;
                    for (int iy = 0; iy < gh; iy++) {
                        float y = sh + (float)ph * bh + (float)(iy + .5f) * bh / (float)gh;
                        for (int ix = 0; ix < gw; ix++) {
                            float x = sw + (float)pw * bw + (float)(ix + .5f) * bw / (float)gw;
                            if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) continue;
                            double yy = y <= 0 ? 0 : y, xx = x <= 0 ? 0 : x;
                            int y0 = (int)yy, x0 = (int)xx, y1, x1;
                            if (y0 >= H - 1) y0 = y1 = H - 1, yy = y0;
                            else y1 = y0 + 1;
                            if (x0 >= W - 1) x0 = x1 = W - 1, xx = x0;
                            else x1 = x0 + 1;
                            double ly = yy - y0, lx = xx - x0;
                            double w1 = (1 - ly) * (1 - lx), w2 = (1 - ly) * lx, w3 = ly * (1 - lx), w4 = ly * lx;
                            s += w1 * f[y0 * W + x0] + w2 * f[y0 * W + x1] + w3 * f[y1 * W + x0] + w4 * f[y1 * W + x1];
                            if (df) {
                                double d = dout[(((size_t)r * C + c) * PH + ph) * PW + pw] / cnt;
                                df[y0 * W + x0] += d * w1, df[y0 * W + x1] += d * w2, df[y1 * W + x0] += d * w3, df[y1 * W + x1] += d * w4;
                            }
                        }
                    }
                    if (out) out[(((size_t)r * C + c) * PH + ph) * PW + pw] = s / cnt;
                }
        }
    }
}

static void test_roi_align_fixture(void) {
    if (!fx_ok) return;
    size_t nf;
    float *feat = get("roi", "feat", &nf);
    if (!feat) return;
    const int N = 2, C = 3, H = 13, W = 17;
    CHECK(nf == (size_t)N * C * H * W, "feat size %zu", nf);
    int ncase = 0;
    for (int i = 0; i < fx.count; i++) {
        const char *nm = fx.tensors[i].name;
        size_t L = strlen(nm);
        if (strncmp(nm, "roi_", 4) || L < 5 || strcmp(nm + L - 5, ".geom")) continue;
        char cs[96];
        snprintf(cs, sizeof cs, "%.*s", (int)(L - 5), nm);
        int64_t g[6];
        if (!geom(cs, g, 6)) continue;
        int R = (int)g[0], PH = (int)g[1], PW = (int)g[2], sr = (int)g[4], al = (int)g[5];
        float scale = 1.0f / (float)g[3];
        size_t ny, ng;
        float *rois = get(cs, "rois", NULL), *ry = get(cs, "y", &ny), *gy = get(cs, "gy", NULL), *rg = get(cs, "gx", &ng);
        if (rois && ry && gy && rg && ny == (size_t)R * C * PH * PW && ng == nf) {
            float *y = malloc(sizeof *y * ny), *gx = calloc(nf, sizeof *gx), *want = malloc(sizeof *want * nf);
            md_roi_align_forward(y, feat, rois, R, N, C, H, W, PH, PW, scale, sr, al);
            char what[128];
            snprintf(what, sizeof what, "%s forward", cs);
            { double e_ = cmp(what, y, ry, ny, &worst_fwd[3]); if (getenv("MD_VERBOSE")) printf("    %s %.3g\n", what, e_); }
            md_roi_align_backward(gx, gy, rois, R, N, C, H, W, PH, PW, scale, sr, al);
            snprintf(what, sizeof what, "%s backward", cs);
            { double e_ = cmp(what, gx, rg, nf, &worst_bwd[3]); if (getenv("MD_VERBOSE")) printf("    %s %.3g\n", what, e_); }
            for (size_t k = 0; k < nf; k++) gx[k] = 0.25f * (float)(k % 7) - 0.5f, want[k] = gx[k] + rg[k];
            md_roi_align_backward(gx, gy, rois, R, N, C, H, W, PH, PW, scale, sr, al);
            snprintf(what, sizeof what, "%s backward accumulate", cs);
            cmp(what, gx, want, nf, &(double){0});
            md_roi_align_backward(NULL, gy, rois, R, N, C, H, W, PH, PW, scale, sr, al);
            free(y), free(gx), free(want);
            ncase++;
        } else {
            CHECK(0, "%s: fixture tensors missing or mis-sized", cs);
        }
        free(rois), free(ry), free(gy), free(rg);
    }
    CHECK(ncase == 17, "ran %d RoIAlign fixture cases, expected 17", ncase);
    free(feat);
}

/* RoIs (feature coordinates) on a 2 x 2 x 5 x 6 map: inside, partly / entirely outside, zero
 * width, second image, larger than the map. */
static const float fd_rois[][5] = {
    {0, 1.3f, 0.7f, 4.1f, 3.6f}, {1, -1.7f, -0.9f, 2.2f, 2.9f}, {0, 4.4f, 2.1f, 7.9f, 6.3f}, {1, 7.0f, 6.0f, 9.0f, 8.0f},
    {0, 2.6f, 1.0f, 2.6f, 3.4f}, {1, 0.2f, 0.1f, 5.9f, 4.8f},   {0, -3.0f, -2.0f, 9.5f, 8.0f},
};
/* Hundreds of adaptive samples per bin axis: the tables are filled in chunks. */
static const float big_rois[][5] = {{0, -700.0f, -500.0f, 700.0f, 700.0f}, {1, -400.0f, 1.5f, 500.0f, 3.7f}};

/* Compares forward with the double direct implementation and backward with it and (if fd)
 * with central differences of <dout, roi_ref(feat)>. */
static void roi_check_config(const float (*rr)[5], int R, int PH, int PW, float scale, int sr, int aligned, int fd, double *worst_f,
                             double *worst_b) {
    enum { N = 2, C = 2, H = 5, W = 6, NF = N * C * H * W };
    const int no = R * C * PH * PW;
    float rois[8 * 5], feat[NF], gx[NF];
    double gref[NF];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 5; k++) rois[r * 5 + k] = k ? rr[r][k] / scale : rr[r][0];
    for (int i = 0; i < NF; i++) feat[i] = sinf(0.7f * (float)i + 0.3f) * 1.5f;
    float *y = malloc(sizeof *y * no), *dout = malloc(sizeof *dout * no);
    double *yd = malloc(sizeof *yd * no), fdd[NF];
    for (int i = 0; i < no; i++) dout[i] = cosf(1.3f * (float)i) + 0.2f;
    for (int i = 0; i < NF; i++) fdd[i] = feat[i], gref[i] = 0;
    md_roi_align_forward(y, feat, rois, R, N, C, H, W, PH, PW, scale, sr, aligned);
    roi_ref(yd, fdd, gref, dout, rois, R, N, C, H, W, PH, PW, scale, sr, aligned);
    double e = 0;
    double ymax = 0;
    for (int i = 0; i < no; i++) ymax = fmax(ymax, fabs(yd[i]));
    for (int i = 0; i < no; i++) e = fmax(e, fabs(y[i] - yd[i]) / fmax(fabs(yd[i]), 1e-3 * ymax));
    *worst_f = fmax(*worst_f, e);
    CHECK(ymax > 0 && e <= TOL, "RoIAlign PH %d PW %d scale %g sr %d aligned %d: forward vs double: rel err %.3g", PH, PW, scale, sr, aligned, e);
    memset(gx, 0, sizeof gx);
    md_roi_align_backward(gx, dout, rois, R, N, C, H, W, PH, PW, scale, sr, aligned);
    double gmax = 0;
    for (int i = 0; i < NF; i++) gmax = fmax(gmax, fabs(gref[i]));
    e = 0;
    for (int i = 0; i < NF; i++) e = fmax(e, fabs(gx[i] - gref[i]) / fmax(fabs(gref[i]), 1e-3 * gmax));
    *worst_b = fmax(*worst_b, e);
    CHECK(gmax > 0 && e <= TOL, "RoIAlign PH %d PW %d scale %g sr %d aligned %d: backward vs double: rel err %.3g", PH, PW, scale, sr, aligned, e);
    for (int i = 0; fd && i < NF; i++) {
        const double h = 1e-3;
        double lp = 0, lm = 0;
        fdd[i] = feat[i] + h;
        roi_ref(yd, fdd, NULL, NULL, rois, R, N, C, H, W, PH, PW, scale, sr, aligned);
        for (int k = 0; k < no; k++) lp += dout[k] * yd[k];
        fdd[i] = feat[i] - h;
        roi_ref(yd, fdd, NULL, NULL, rois, R, N, C, H, W, PH, PW, scale, sr, aligned);
        for (int k = 0; k < no; k++) lm += dout[k] * yd[k];
        fdd[i] = feat[i];
        double g = (lp - lm) / (2 * h), ei = fabs(gx[i] - g) / fmax(fabs(g), 1e-3 * gmax);
        *worst_b = fmax(*worst_b, ei);
        if (ei > TOL) {
            CHECK(0, "RoIAlign fd PH %d PW %d scale %g sr %d aligned %d: dfeat[%d] = %.8g, fd %.8g", PH, PW, scale, sr, aligned, i, gx[i], g);
            break;
        }
    }
    free(y), free(dout), free(yd);
}

static void test_roi_align_fd(void) {
    double wf = 0, wb = 0;
    const float scales[2] = {1.0f, 0.5f};
    const int nr = (int)(sizeof fd_rois / sizeof fd_rois[0]);
    for (int al = 0; al < 2; al++)
        for (int si = 0; si < 2; si++) {
            roi_check_config(fd_rois, nr, 3, 2, scales[si], 2, al, 1, &wf, &wb);
            roi_check_config(fd_rois, nr, 2, 3, scales[si], 0, al, 1, &wf, &wb);
            roi_check_config(fd_rois, nr, 1, 1, scales[si], 3, al, 1, &wf, &wb);
        }
    roi_check_config(big_rois, 2, 1, 2, 1.0f, 0, 0, 0, &wf, &wb);
    roi_check_config(big_rois, 2, 2, 1, 0.5f, 0, 1, 0, &wf, &wb);
    printf("  roi_align vs double direct implementation: forward %.2e, backward (direct + finite differences) %.2e\n", wf, wb);
}

/* forward and backward with 1 and 2 threads must be bitwise identical */
static void test_roi_align_threads(void) {
    const int N = 2, C = 21, H = 30, W = 41, R = 60, PH = 7, PW = 7;
    const size_t nf = (size_t)N * C * H * W, no = (size_t)R * C * PH * PW;
    float *feat = malloc(sizeof *feat * nf), *rois = malloc(sizeof *rois * R * 5), *dout = malloc(sizeof *dout * no);
    float *y1 = malloc(sizeof *y1 * no), *y2 = malloc(sizeof *y2 * no), *g1 = calloc(nf, sizeof *g1), *g2 = calloc(nf, sizeof *g2);
    uint32_t s = 12345;
#define RND() ((s = s * 1664525u + 1013904223u), (float)(s >> 8) / 16777216.0f)
    for (size_t i = 0; i < nf; i++) feat[i] = RND() - 0.5f;
    for (size_t i = 0; i < no; i++) dout[i] = RND() - 0.5f;
    for (int r = 0; r < R; r++) {
        float x = RND() * 340 - 10, y = RND() * 250 - 10, w = RND() * 150, h = RND() * 120;
        rois[r * 5] = (float)(r % N), rois[r * 5 + 1] = x, rois[r * 5 + 2] = y, rois[r * 5 + 3] = x + w, rois[r * 5 + 4] = y + h;
    }
#undef RND
    int saved = omp_get_max_threads();
    for (int pass = 0; pass < 2; pass++) {
        int sr = pass ? 0 : 2;
        memset(g1, 0, sizeof *g1 * nf), memset(g2, 0, sizeof *g2 * nf);
        omp_set_num_threads(1);
        md_roi_align_forward(y1, feat, rois, R, N, C, H, W, PH, PW, 0.125f, sr, pass);
        md_roi_align_backward(g1, dout, rois, R, N, C, H, W, PH, PW, 0.125f, sr, pass);
        omp_set_num_threads(2);
        md_roi_align_forward(y2, feat, rois, R, N, C, H, W, PH, PW, 0.125f, sr, pass);
        md_roi_align_backward(g2, dout, rois, R, N, C, H, W, PH, PW, 0.125f, sr, pass);
        CHECK(!memcmp(y1, y2, sizeof *y1 * no), "forward differs between 1 and 2 threads (sr %d)", sr);
        CHECK(!memcmp(g1, g2, sizeof *g1 * nf), "backward differs between 1 and 2 threads (sr %d)", sr);
        CHECK(md_max_abs(g1, nf) > 0, "backward produced no gradient");
    }
    omp_set_num_threads(saved);
    free(feat), free(rois), free(dout), free(y1), free(y2), free(g1), free(g2);
}

/* bad batch index / non-finite coordinates: zero output, no gradient, no out-of-bounds access */
static void test_roi_align_bad_rois(void) {
    float feat[1 * 1 * 4 * 4], out[3 * 4], g[16] = {0}, dout[3 * 4];
    for (int i = 0; i < 16; i++) feat[i] = 1.0f + (float)i;
    for (int i = 0; i < 12; i++) dout[i] = 1.0f;
    float rois[15] = {1, 0, 0, 2, 2, -1, 0, 0, 2, 2, 0, NAN, 0, 2, 2};
    md_roi_align_forward(out, feat, rois, 3, 1, 1, 4, 4, 2, 2, 1.0f, 2, 0);
    md_roi_align_backward(g, dout, rois, 3, 1, 1, 4, 4, 2, 2, 1.0f, 2, 0);
    CHECK(md_max_abs(out, 12) == 0 && md_max_abs(g, 16) == 0, "bad RoIs must give zero output and no gradient");
    /* empty sizes are no-ops (no division by a zero channel block) */
    md_roi_align_forward(out, feat, rois, 0, 1, 1, 4, 4, 2, 2, 1.0f, 2, 0);
    md_roi_align_backward(g, dout, rois, 3, 1, 0, 4, 4, 2, 2, 1.0f, 2, 0);
    md_roi_align_forward(out, feat, rois, 3, 1, 0, 4, 4, 2, 2, 1.0f, 2, 0);
    CHECK(md_max_abs(g, 16) == 0, "empty calls must not write");
}

static void report(void) {
    for (int k = 0; k < 4; k++) printf("  %-14s worst rel err vs torch: forward %.2e  backward %.2e\n", op_names[k], worst_fwd[k], worst_bwd[k]);
}

int main(void) {
    fx_ok = md_test_need_path(FIX, "written by scripts/torch_reference.py ops_heads");
    if (fx_ok) {
        md_status st = md_st_load(FIX, &fx);
        CHECK(st == MD_OK, "load %s: %s", FIX, md_last_error());
        fx_ok = st == MD_OK;
    }
    MD_RUN(test_cross_entropy);
    MD_RUN(test_bce);
    MD_RUN(test_smooth_l1);
    MD_RUN(test_losses_fd);
    MD_RUN(test_roi_align_fixture);
    MD_RUN(test_roi_align_fd);
    MD_RUN(test_roi_align_threads);
    MD_RUN(test_roi_align_bad_rois);
    report();
    if (fx_ok) md_st_free(&fx);
    return md_test_summary();
}
