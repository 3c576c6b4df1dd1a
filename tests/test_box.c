/* test_box.c — box geometry of include/minidet/box.h against torchvision 0.14 references in
 * tests/fixtures/box.safetensors (scripts/torch_reference.py box):
 *   box coder: float decode within 1e-5 relative, the losses' double-precision row encode within
 *   1e-12 and row decode backward within 1e-4 (weights (1,1,1,1) and (10,10,5,5), with dw/dh beyond
 *   the clamp); box_iou; the Matcher's match vector exactly (low-
 *   quality matches with ties, a gt overlapping nothing); torch's unstable descending sort order
 *   exactly on heavily tied scores (and NaN); torchvision.ops.nms and batched_nms kept indices
 *   and order exactly (duplicates, score ties, both batched regimes); DIoU-NMS against a Python
 *   transcription; and, without references, the sampler's semantics (counts, subsets, seed
 *   determinism, uniformity), clipping and small-box removal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "minidet/box.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/box.safetensors"

static md_st_file F;
static int have_fixture;

static double *f64(const char *name, size_t *n) { return md_test_tensor_f64(&F, name, n); }

static float *f32(const char *name, size_t *n) { return md_test_tensor_f32(&F, name, n); }

static int *ints(const char *name, size_t *n) {
    size_t cnt = 0;
    int64_t *p = md_test_tensor_i64(&F, name, &cnt);
    int *q = p ? malloc(sizeof(int) * cnt) : NULL;
    for (size_t i = 0; q && i < cnt; i++) q[i] = (int)p[i];
    free(p);
    if (q && n) *n = cnt;
    return q;
}

/* max over i of |a - b| / max(|b|, floor) with b in double */
static double rel_err_d(const float *a, const double *b, size_t n, double floor, size_t *wi) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / fmax(fabs(b[i]), floor);
        if (isnan(r)) r = INFINITY;
        if (r > m) {
            m = r;
            if (wi) *wi = i;
        }
    }
    return m;
}

static double maxabs_d(const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(b[i]));
    return m;
}

static double worst_coder[3]; /* encode (double), decode (float), decode backward (double) */


/* ------------------------------------------------------------ box coder */
static void coder_case(const char *tag) {
    char nm[64];
#define T(x) (snprintf(nm, sizeof nm, "coder.%s.%s", tag, x), nm)
    size_t nw = 0, np = 0, nr = 0;
    double *w = f64(T("weights"), &nw), *enc = f64(T("encoded"), NULL), *dec = f64(T("decoded"), NULL);
    double *drel = f64(T("drel"), NULL);
    float *props = f32(T("proposals"), &np), *gt = f32(T("gt"), NULL), *rel = f32(T("rel"), &nr);
    float *dout = f32(T("dout"), NULL);
#undef T
    float *out = NULL, *got = NULL, *grad = NULL;
    if (!w || nw != 4 || !enc || !dec || !drel || !props || !gt || !rel || !dout) goto out;
    const int n = (int)(np / 4), k = (int)(nr / np);
    md_box_coder c = md_box_coder_make((float)w[0], (float)w[1], (float)w[2], (float)w[3]);
    out = malloc(sizeof(float) * 4 * n);
    got = malloc(sizeof(float) * nr);
    grad = malloc(sizeof(float) * nr);
    if (!out || !got || !grad) goto out;
    size_t wi = 0;
    /* the double-precision encode (the losses' targets) equals torchvision's float64 encode of the same
     * float32 boxes up to double rounding */
    double e = 0;
    for (int i = 0; i < n; i++) {
        double pp[4], gg[4], t[4];
        for (int j = 0; j < 4; j++) pp[j] = props[4 * i + j], gg[j] = gt[4 * i + j];
        md_box_encode_row(&c, t, gg, pp);
        for (int j = 0; j < 4; j++) {
            out[4 * i + j] = (float)t[j];
            const double r = fabs(t[j] - enc[4 * i + j]) / fmax(fabs(enc[4 * i + j]), 1e-3);
            if (!(r <= e)) {
                e = r;
                wi = 4 * (size_t)i + j;
            }
        }
    }
    worst_coder[0] = fmax(worst_coder[0], e);
    CHECK(e <= 1e-12, "%s encode vs float64: rel err %.3g at %zu (%.17g vs %.17g)", tag, e, wi, out[wi], enc[wi]);
    md_box_decode(&c, got, rel, props, n, k);
    e = rel_err_d(got, dec, nr, 1e-3 * maxabs_d(dec, nr), &wi);
    worst_coder[1] = fmax(worst_coder[1], e);
    CHECK(e <= 1e-5, "%s decode: rel err %.3g at %zu (%.9g vs %.9g)", tag, e, wi, got[wi], dec[wi]);
    /* the double-precision row decode agrees with the float one, and its backward with torch's autograd */
    double dmax = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            const size_t o = 4 * ((size_t)i * k + j);
            double pp[4], d[4], box[4], gb[4], gd[4];
            md_box_decode_cache kc;
            for (int q = 0; q < 4; q++) pp[q] = props[4 * i + q], d[q] = rel[o + q], gb[q] = dout[o + q];
            md_box_decode_row(&c, box, d, pp, &kc);
            md_box_decode_row_backward(&c, gd, gb, &kc);
            for (int q = 0; q < 4; q++) {
                dmax = fmax(dmax, fabs(box[q] - dec[o + q]) / fmax(fabs(dec[o + q]), 1e-3 * maxabs_d(dec, nr)));
                grad[o + q] = (float)gd[q];
            }
        }
    CHECK(dmax <= 1e-5, "%s row decode (double): rel err %.3g", tag, dmax);
    e = rel_err_d(grad, drel, nr, 1e-3 * maxabs_d(drel, nr), &wi);
    worst_coder[2] = fmax(worst_coder[2], e);
    CHECK(e <= 1e-4, "%s decode backward: rel err %.3g at %zu (%.9g vs %.9g)", tag, e, wi, grad[wi], drel[wi]);
    /* the clamp kills the gradient where active */
    int clamped = 0, bad = 0;
    for (size_t i = 0; i < nr; i++) {
        int col = (int)(i % 4);
        if (col < 2) continue;
        float wt = col == 2 ? c.ww : c.wh;
        if (rel[i] / wt > c.clip) {
            clamped++;
            if (grad[i] != 0.0f || drel[i] != 0.0) bad++;
            break;
        }
    }
    CHECK(clamped > 0 && bad == 0, "%s: clamped entries %d, with a gradient %d", tag, clamped, bad);
    /* decode(encode(gt)) == gt */
    if (k == 1 || 1) {
        float *rt = malloc(sizeof(float) * 4 * n);
        if (rt) {
            md_box_decode(&c, rt, out, props, n, 1);
            double m = 0;
            for (int i = 0; i < 4 * n; i++) m = fmax(m, fabs(rt[i] - gt[i]) / fmax(fabsf(gt[i]), 1.0));
            CHECK(m <= 1e-5, "%s: decode(encode(gt)) differs from gt by %.3g", tag, m);
            free(rt);
        }
    }
out:
    free(w);
    free(enc);
    free(dec);
    free(drel);
    free(props);
    free(gt);
    free(rel);
    free(dout);
    free(out);
    free(got);
    free(grad);
}

static void test_box_coder(void) {
    if (!have_fixture) return;
    coder_case("w1");
    coder_case("w10");
}

/* ------------------------------------------------------------ IoU matrix */
static void test_iou_matrix(void) {
    if (!have_fixture) return;
    size_t na = 0, nb = 0, nr = 0;
    float *a = f32("iou.a", &na), *b = f32("iou.b", &nb), *ref = f32("iou.ref", &nr);
    float *got = NULL;
    if (!a || !b || !ref) goto out;
    na /= 4;
    nb /= 4;
    CHECK(nr == na * nb, "iou.ref has %zu entries", nr);
    got = malloc(sizeof(float) * nr);
    if (!got) goto out;
    md_box_iou_matrix(got, a, (int)na, b, (int)nb);
    double e = md_max_abs_err(got, ref, nr);
    CHECK(e <= 1e-6, "box_iou max abs err %.3g", e);
    printf("  box_iou %zux%zu: max abs err vs torchvision %.2e\n", na, nb, e);
    /* empty boxes: torchvision 0/0 = NaN, here 0 */
    const float p1[4] = {3, 3, 3, 3}, p2[4] = {3, 3, 3, 3};
    CHECK(md_box_iou(p1, p2) == 0.0f, "IoU of two empty boxes %g", md_box_iou(p1, p2));
    /* parallel path on a large matrix equals the per-pair function */
    enum { NA = 300, NB = 400 };
    float *A = malloc(sizeof(float) * 4 * NA), *B = malloc(sizeof(float) * 4 * NB), *M = malloc(sizeof(float) * NA * NB);
    if (A && B && M) {
        md_rng r = md_rng_make(7, 1);
        for (int i = 0; i < 4 * NA; i += 4) {
            float x = 500 * md_rng_uniform(&r), y = 500 * md_rng_uniform(&r);
            A[i] = x, A[i + 1] = y, A[i + 2] = x + 100 * md_rng_uniform(&r), A[i + 3] = y + 100 * md_rng_uniform(&r);
        }
        for (int i = 0; i < 4 * NB; i += 4) {
            float x = 500 * md_rng_uniform(&r), y = 500 * md_rng_uniform(&r);
            B[i] = x, B[i + 1] = y, B[i + 2] = x + 100 * md_rng_uniform(&r), B[i + 3] = y + 100 * md_rng_uniform(&r);
        }
        md_box_iou_matrix(M, A, NA, B, NB);
        int bad = 0;
        for (int i = 0; i < NA; i++)
            for (int j = 0; j < NB; j++) bad += M[i * NB + j] != md_box_iou(A + 4 * i, B + 4 * j);
        CHECK(bad == 0, "parallel IoU matrix differs from md_box_iou in %d entries", bad);
    }
    free(A);
    free(B);
    free(M);
out:
    free(a);
    free(b);
    free(ref);
    free(got);
}

/* ------------------------------------------------------------ matcher */
static void test_matcher(void) {
    if (!have_fixture) return;
    const md_st_tensor *tq = md_st_find(&F, "match.q");
    CHECK(tq && tq->ndim == 2, "match.q missing");
    if (!tq || tq->ndim != 2) return;
    const int m = (int)tq->shape[0], n = (int)tq->shape[1];
    float *q = f32("match.q", NULL);
    int *got = malloc(sizeof(int) * n);
    const char *tags[4] = {"rpn", "roi", "mid", "lowq"};
    for (int t = 0; q && got && t < 4; t++) {
        char nm[64];
        snprintf(nm, sizeof nm, "match.%s.params", tags[t]);
        double *par = f64(nm, NULL);
        snprintf(nm, sizeof nm, "match.%s.matches", tags[t]);
        int *want = ints(nm, NULL);
        if (par && want) {
            CHECK_OK(md_matcher(got, q, m, n, (float)par[0], (float)par[1], par[2] != 0));
            int bad = 0, first = -1, restored = 0;
            for (int j = 0; j < n; j++) {
                if (got[j] != want[j] && first < 0) first = j;
                bad += got[j] != want[j];
            }
            CHECK(bad == 0, "matcher %s: %d of %d matches differ (first at %d: %d vs %d)", tags[t], bad, n, first,
                  first >= 0 ? got[first] : 0, first >= 0 ? want[first] : 0);
            if (par[2] != 0) { /* low-quality matches really happened */
                int *plain = malloc(sizeof(int) * n);
                if (plain) {
                    md_matcher(plain, q, m, n, (float)par[0], (float)par[1], 0);
                    for (int j = 0; j < n; j++) restored += plain[j] != got[j];
                    free(plain);
                }
                CHECK(restored > 0, "matcher %s: no low-quality match restored", tags[t]);
            }
        }
        free(par);
        free(want);
    }
    CHECK(md_matcher(got, q, 0, n, 0.7f, 0.3f, 1) == MD_ERR_ARG, "empty gt accepted");
    CHECK(md_matcher(got, q, m, 0, 0.7f, 0.3f, 1) == MD_ERR_ARG, "no predictions accepted");
    CHECK(md_matcher(got, q, m, n, 0.3f, 0.7f, 1) == MD_ERR_ARG, "low > high accepted");
    if (q) {
        q[5] = NAN;
        CHECK(md_matcher(got, q, m, n, 0.7f, 0.3f, 1) == MD_ERR_NUMERIC, "NaN quality accepted");
    }
    free(q);
    free(got);
}

/* ------------------------------------------------------------ sort and NMS */
static void test_torch_sort_order(void) {
    if (!have_fixture) return;
    const int sizes[8] = {5, 17, 40, 100, 257, 1000, 3000, 5000};
    int total_ties = 0;
    for (int s = 0; s < 8; s++) {
        char nm[64];
        snprintf(nm, sizeof nm, "sort.n%d.scores", sizes[s]);
        size_t n = 0;
        float *sc = f32(nm, &n);
        snprintf(nm, sizeof nm, "sort.n%d.order", sizes[s]);
        int *want = ints(nm, NULL);
        int *got = malloc(sizeof(int) * (n ? n : 1));
        if (sc && want && got) {
            md_sort_desc(got, sc, (int)n);
            int bad = 0, first = -1, stable_diff = 0;
            for (size_t i = 0; i < n; i++) {
                if (got[i] != want[i] && first < 0) first = (int)i;
                bad += got[i] != want[i];
                /* torch's order is not the stable one (that is the point of this test) */
                if (i > 0 && sc[want[i]] == sc[want[i - 1]] && want[i] < want[i - 1]) stable_diff++;
            }
            total_ties += stable_diff;
            CHECK(bad == 0, "sort n=%zu: %d positions differ from torch (first %d: %d vs %d)", n, bad, first,
                  first >= 0 ? got[first] : 0, first >= 0 ? want[first] : 0);
        }
        free(sc);
        free(want);
        free(got);
    }
    CHECK(total_ties > 0, "the fixture's tie orders are all stable: the test would not notice a stable sort");
}

static void test_nms(void) {
    if (!have_fixture) return;
    const int sizes[5] = {12, 100, 500, 2000, 800};
    for (int s = 0; s < 5; s++) {
        char nm[64];
        size_t nb = 0, nk = 0, nd = 0, nd6 = 0, nbk = 0;
#define T(x) (snprintf(nm, sizeof nm, "nms.n%d.%s", sizes[s], x), nm)
        float *bx = f32(T("boxes"), &nb), *sc = f32(T("scores"), NULL);
        double *thr = f64(T("thresh"), NULL);
        int *keep = ints(T("keep"), &nk), *dk = ints(T("diou_keep"), &nd), *dk6 = ints(T("diou_keep_b06"), &nd6);
        int *idxs = NULL, *bkeep = NULL;
        if (s > 0) {
            idxs = ints(T("idxs"), NULL);
            bkeep = ints(T("batched_keep"), &nbk);
        }
#undef T
        const int n = (int)(nb / 4);
        int *got = malloc(sizeof(int) * (n ? n : 1));
        if (bx && sc && thr && keep && dk && dk6 && got) {
            int ng = -1;
            clock_t t0 = clock();
            CHECK_OK(md_nms(got, &ng, bx, sc, n, thr[0]));
            double ms = 1e3 * (double)(clock() - t0) / CLOCKS_PER_SEC;
            CHECK(ng == (int)nk && memcmp(got, keep, sizeof(int) * nk) == 0, "nms n=%d: kept %d (want %zu) or order differs",
                  n, ng, nk);
            printf("  nms n=%-5d thresh %.1f: kept %d of %d (torchvision %zu) in %.2f ms\n", n, thr[0], ng, n, nk, ms);
            CHECK_OK(md_diou_nms(got, &ng, bx, sc, n, thr[0], 1.0));
            CHECK(ng == (int)nd && memcmp(got, dk, sizeof(int) * nd) == 0, "diou_nms n=%d beta 1: kept %d want %zu", n, ng, nd);
            CHECK_OK(md_diou_nms(got, &ng, bx, sc, n, thr[0], 0.6));
            CHECK(ng == (int)nd6 && memcmp(got, dk6, sizeof(int) * nd6) == 0, "diou_nms n=%d beta 0.6: kept %d want %zu", n,
                  ng, nd6);
            if (idxs && bkeep) {
                CHECK_OK(md_batched_nms(got, &ng, bx, sc, idxs, n, thr[0], 0, 0));
                CHECK(ng == (int)nbk && memcmp(got, bkeep, sizeof(int) * nbk) == 0,
                      "batched_nms n=%d (%s): kept %d want %zu or order differs", n, 4 * n > 4000 ? "per class" : "offsets",
                      ng, nbk);
                /* keep[:K] (RPN post_nms_top_n, detections_per_img) with the early exit: the same prefix */
                const int Ks[6] = {0, 1, 7, (int)nbk / 2, (int)nbk, (int)nbk + 5};
                for (int q = 0; q < 6; q++) {
                    int want_n = Ks[q] < (int)nbk ? Ks[q] : (int)nbk;
                    ng = -1;
                    CHECK_OK(md_batched_nms_topk(got, &ng, bx, sc, idxs, n, thr[0], 0, 0, Ks[q]));
                    CHECK(ng == want_n && memcmp(got, bkeep, sizeof(int) * (size_t)want_n) == 0,
                          "batched_nms_topk n=%d K=%d: kept %d want the first %d of torchvision's", n, Ks[q], ng, want_n);
                }
                /* per-class DIoU: no box suppresses one of another class; equals per-class md_diou_nms */
                CHECK_OK(md_batched_nms(got, &ng, bx, sc, idxs, n, thr[0], 1, 1.0));
                int cross = 0;
                for (int a = 0; a < ng; a++)
                    for (int b = a + 1; b < ng; b++) cross += sc[got[a]] < sc[got[b]];
                CHECK(cross == 0, "batched diou: kept indices not in score order");
            }
        }
        free(bx);
        free(sc);
        free(thr);
        free(keep);
        free(dk);
        free(dk6);
        free(idxs);
        free(bkeep);
        free(got);
    }
    /* edge cases */
    int k[2], nk = -1;
    CHECK_OK(md_nms(k, &nk, NULL, NULL, 0, 0.5));
    CHECK(nk == 0, "empty nms kept %d", nk);
    const float two[8] = {0, 0, 10, 10, 0, 0, 10, 10}, s2[2] = {0.5f, 0.5f};
    CHECK_OK(md_nms(k, &nk, two, s2, 2, 0.5));
    CHECK(nk == 1 && k[0] == 0, "identical boxes, equal scores: kept %d (first %d)", nk, k[0]);
    /* IoU exactly at the threshold is not suppressed (strict >): [0,10]x[0,10] vs [0,10]x[0,5]: IoU 0.5 */
    const float half[8] = {0, 0, 10, 10, 0, 0, 10, 5}, s3[2] = {0.9f, 0.8f};
    CHECK_OK(md_nms(k, &nk, half, s3, 2, 0.5));
    CHECK(nk == 2, "IoU == thresh suppressed by greedy NMS");
    /* DIoU-NMS uses >=: same centres' x, IoU 0.5, penalty (2.5^2 / (10^2 + 10^2)) */
    CHECK_OK(md_diou_nms(k, &nk, half, s3, 2, 0.5 - 6.25 / 200.0, 1.0));
    CHECK(nk == 1, "DIoU-NMS: IoU - penalty == thresh not suppressed");
    /* the float IoU against a double threshold, at the float's own value and one step around it */
    const float pr[8] = {0, 0, 10, 10, 1, 2, 12, 11.3f}, sp[2] = {0.9f, 0.8f};
    float a1 = (pr[2] - pr[0]) * (pr[3] - pr[1]), a2 = (pr[6] - pr[4]) * (pr[7] - pr[5]);
    float iw = (pr[2] < pr[6] ? pr[2] : pr[6]) - pr[4], ih = (pr[3] < pr[7] ? pr[3] : pr[7]) - pr[5];
    float inter = iw * ih, ovr = inter / (a1 + a2 - inter);
    CHECK_OK(md_nms(k, &nk, pr, sp, 2, (double)ovr));
    CHECK(nk == 2, "IoU %.9g == thresh: suppressed", (double)ovr);
    CHECK_OK(md_nms(k, &nk, pr, sp, 2, (double)ovr - 1e-12));
    CHECK(nk == 1, "IoU %.9g > thresh - 1e-12: not suppressed", (double)ovr);
    CHECK_OK(md_nms(k, &nk, pr, sp, 2, (double)ovr + 1e-12));
    CHECK(nk == 2, "IoU %.9g < thresh + 1e-12: suppressed", (double)ovr);
    CHECK_OK(md_nms(k, &nk, pr, sp, 2, (double)nextafterf(ovr, 0)));
    CHECK(nk == 1, "IoU above the previous float: not suppressed");
    const int cls[2] = {0, 1};
    CHECK_OK(md_batched_nms(k, &nk, two, s2, cls, 2, 0.5, 0, 0));
    CHECK(nk == 2, "batched nms suppressed across classes");
}

/* ------------------------------------------------------------ sampler, clip, small boxes */
static void test_sampler(void) {
    enum { N = 1000 };
    int labels[N];
    md_rng g = md_rng_make(3, 9);
    int npos = 0, nneg = 0;
    for (int i = 0; i < N; i++) {
        uint32_t r = md_rng_below(&g, 10);
        labels[i] = r == 0 ? 1 + (int)md_rng_below(&g, 5) : (r < 3 ? -1 : 0);
        npos += labels[i] >= 1;
        nneg += labels[i] == 0;
    }
    static uint8_t pm[N], nm[N], pm2[N], nm2[N];
    static int hits[N];
    struct {
        int batch;
        float frac;
    } cfg[5] = {{512, 0.25f}, {256, 0.5f}, {2000, 0.5f}, {10, 0.9f}, {10, 0.7f}};
    /* Python: int(b * f) for the decimal f (int(10 * 0.7) = 7 although 10 * 0.7f < 7) */
    const int py_pos[5] = {128, 128, 1000, 9, 7};
    for (int c = 0; c < 5; c++) {
        md_rng r1 = md_rng_make(42, MD_STREAM_SAMPLER), r2 = md_rng_make(42, MD_STREAM_SAMPLER);
        int kp = -1, kn = -1;
        CHECK_OK(md_sample_pos_neg(pm, nm, labels, N, cfg[c].batch, cfg[c].frac, &r1, NULL, &kp, &kn));
        int want_p = npos < py_pos[c] ? npos : py_pos[c];
        int want_n = cfg[c].batch - want_p;
        want_n = nneg < want_n ? nneg : want_n;
        int cp = 0, cn = 0, wrong = 0;
        for (int i = 0; i < N; i++) {
            cp += pm[i];
            cn += nm[i];
            wrong += (pm[i] && labels[i] < 1) || (nm[i] && labels[i] != 0) || (pm[i] && nm[i]);
        }
        CHECK(kp == want_p && cp == want_p && kn == want_n && cn == want_n,
              "sampler batch %d frac %g: pos %d/%d (want %d), neg %d/%d (want %d)", cfg[c].batch, cfg[c].frac, kp, cp,
              want_p, kn, cn, want_n);
        CHECK(wrong == 0, "sampler picked %d elements from the wrong set", wrong);
        int work[N];
        CHECK_OK(md_sample_pos_neg(pm2, nm2, labels, N, cfg[c].batch, cfg[c].frac, &r2, work, NULL, NULL));
        CHECK(memcmp(pm, pm2, N) == 0 && memcmp(nm, nm2, N) == 0, "same seed gave a different sample");
    }
    /* different seeds differ; every negative is picked with probability k/n (uniformity) */
    memset(hits, 0, sizeof hits);
    const int trials = 400;
    md_rng r = md_rng_make(1, MD_STREAM_SAMPLER);
    int kn = 0;
    for (int t = 0; t < trials; t++) {
        md_sample_pos_neg(pm, nm, labels, N, 256, 0.25f, &r, NULL, NULL, &kn);
        for (int i = 0; i < N; i++) hits[i] += nm[i];
    }
    double p = (double)kn / nneg, mean = trials * p, sd = sqrt(trials * p * (1 - p)), worst = 0;
    for (int i = 0; i < N; i++)
        if (labels[i] == 0) worst = fmax(worst, fabs(hits[i] - mean) / sd);
    CHECK(worst < 5.0, "negative sampling not uniform: a count is %.1f sd from the mean", worst);
    CHECK(md_sample_pos_neg(pm, nm, labels, N, 256, 1.5f, &r, NULL, NULL, NULL) == MD_ERR_ARG, "fraction 1.5 accepted");
}

static void test_clip_and_small(void) {
    float b[16] = {-5, -3, 50, 40, 10, 10, 700, 900, 3, 4, 3.5f, 100, NAN, 0, 5, 5};
    md_box_clip(b, 4, 480.0f, 640.0f);
    const float want[12] = {0, 0, 50, 40, 10, 10, 640, 480, 3, 4, 3.5f, 100};
    CHECK(memcmp(b, want, sizeof want) == 0, "clip: got %g %g %g %g / %g %g %g %g", b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
    CHECK(isnan(b[12]), "clip turned NaN into a number");
    int keep[4];
    int n = md_box_remove_small(keep, b, 4, 1e-3f);
    CHECK(n == 3 && keep[0] == 0 && keep[1] == 1 && keep[2] == 2, "remove_small(1e-3) kept %d", n);
    n = md_box_remove_small(keep, b, 4, 1.0f);
    CHECK(n == 2 && keep[0] == 0 && keep[1] == 1, "remove_small(1) kept %d", n);
}

int main(void) {
    if (md_test_need_path(FIXTURE, "scripts/torch_reference.py box")) {
        md_status st = md_st_load(FIXTURE, &F);
        CHECK(st == MD_OK, "loading %s: %s", FIXTURE, md_last_error());
        have_fixture = st == MD_OK;
    }
    MD_RUN(test_box_coder);
    MD_RUN(test_iou_matrix);
    MD_RUN(test_matcher);
    MD_RUN(test_torch_sort_order);
    MD_RUN(test_nms);
    MD_RUN(test_sampler);
    MD_RUN(test_clip_and_small);
    printf("  coder vs torchvision float64: encode rel %.2e, decode rel %.2e, decode backward rel %.2e\n", worst_coder[0],
           worst_coder[1], worst_coder[2]);
    if (have_fixture) md_st_free(&F);
    return md_test_summary();
}
