/* test_model.c — the detector against torchvision 0.14 (fixtures from scripts/ref_model.py):
 * ResNet-18 (basic blocks, 2 images of different sizes, trainable_layers 3) and ResNet-50 (bottleneck,
 * trainable_layers 5) reduced models with random weights and random frozen-BN statistics, and a ResNet-50-vd
 * (deep stem, avg-pool shortcut, timm resnet50d names; trainable_layers 5, odd feature sizes), also with
 * norm = bn in training mode (batch statistics, BN gradients, running statistics).
 * Checks C2..C5, P2..P6, anchors, RPN logits/deltas, proposals (same boxes, same order), RoI pooling
 * over all four levels, box-head outputs, final detections rescaled to the original sizes, and the
 * gradients of every trainable parameter for a linear function of the stage outputs. Also: strict and
 * partial loading of mismatched checkpoints, save/load round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/model.h"
#include "minidet/safetensors.h"
#include "../src/model/model_internal.h"
#include "testutil.h"

/* max |a - b| / max |b| over a tensor */
static double rel_to_max(const float *a, const float *b, size_t n) {
    double m = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > m) m = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d; /* NaN propagates */
    }
    return e / (m > 1e-12 ? m : 1e-12);
}

static const char *meta(const md_st_file *f, const char *k) {
    const char *v = md_st_meta(f, k);
    return v ? v : "0";
}

static void config_from(md_config *c, const md_st_file *ref) {
    md_config_defaults(c);
    c->model.depth = atoi(meta(ref, "depth"));
    c->model.width_mult = (float)atof(meta(ref, "width_mult"));
    c->model.fpn_channels = atoi(meta(ref, "fpn_channels"));
    c->model.representation_size = atoi(meta(ref, "representation_size"));
    c->model.num_classes = atoi(meta(ref, "num_classes"));
    c->model.trainable_layers = atoi(meta(ref, "trainable_layers"));
    c->model.vd = atoi(meta(ref, "vd"));
    c->rpn.pre_nms_top_n_train = c->rpn.pre_nms_top_n_test = atoi(meta(ref, "pre_nms_top_n"));
    c->rpn.post_nms_top_n_train = c->rpn.post_nms_top_n_test = atoi(meta(ref, "post_nms_top_n"));
    c->test.score_thresh = 0.0f;
    c->test.nms_thresh = 0.5f;
    c->test.detections_per_img = 100;
}

static float *get(const md_st_file *f, const char *name, size_t *n) { return md_test_tensor_f32(f, name, n); }

static void cmp(const char *what, const float *a, const md_st_file *ref, const char *name, size_t n, double tol) {
    size_t k;
    float *b = get(ref, name, &k);
    if (!b) return;
    CHECK(k == n, "%s: %zu elements vs reference %zu", what, n, k);
    if (k == n) {
        double e = rel_to_max(a, b, n);
        CHECK(e <= tol, "%s: error %.3g (relative to max) > %g", what, e, tol);
        printf("    %-28s rel err %.2e\n", what, e);
    }
    free(b);
}

/* boxes must agree within tol px, in the same order */
static void cmp_boxes(const char *what, const float *a, int na, const md_st_file *ref, const char *name, double tol) {
    size_t k;
    float *b = get(ref, name, &k);
    if (!b) return;
    CHECK((size_t)na * 4 == k, "%s: %d boxes vs reference %zu", what, na, k / 4);
    double e = 0;
    for (size_t i = 0; i < k && i < (size_t)na * 4; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    CHECK(e <= tol, "%s: max box difference %.4g px", what, e);
    if (!(e <= tol))
        for (size_t i = 0; i < k / 4 && i < (size_t)na; i++)
            if (fmax(fmax(fabs(a[4 * i] - b[4 * i]), fabs(a[4 * i + 1] - b[4 * i + 1])),
                     fmax(fabs(a[4 * i + 2] - b[4 * i + 2]), fabs(a[4 * i + 3] - b[4 * i + 3]))) > tol) {
                printf("    first difference at box %zu: (%g %g %g %g) vs reference (%g %g %g %g)\n", i, a[4 * i],
                       a[4 * i + 1], a[4 * i + 2], a[4 * i + 3], b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]);
                break;
            }
    printf("    %-28s %d boxes, max diff %.2e px\n", what, na, e);
    free(b);
}

static float loss_weight(size_t i, int phase) { return (float)sin(0.731 * (double)i + phase); }

static void run_variant(const char *name) {
    char wpath[256], rpath[256];
    snprintf(wpath, sizeof wpath, "tests/fixtures/model_%s_weights.safetensors", name);
    snprintf(rpath, sizeof rpath, "tests/fixtures/model_%s_ref.safetensors", name);
    if (!md_test_need_path(wpath, "scripts/ref_model.py") || !md_test_need_path(rpath, "scripts/ref_model.py")) return;
    md_st_file ref;
    CHECK_OK(md_st_load(rpath, &ref));
    md_config cfg;
    config_from(&cfg, &ref);
    md_detector det;
    md_status s = md_detector_create(&det, &cfg);
    CHECK_OK(s);
    if (s) return;
    md_load_report rep;
    CHECK_OK(md_detector_load_weights(&det, wpath, 1, &rep));
    CHECK(rep.loaded == det.num_params, "loaded %d of %d", rep.loaded, det.num_params);

    size_t ni;
    float *images = get(&ref, "images", &ni);
    const md_st_tensor *it = md_st_find(&ref, "images");
    int N = (int)it->shape[0], H = (int)it->shape[2], W = (int)it->shape[3];
    int64_t s64[2 * MD_MAX_BATCH], o64[2 * MD_MAX_BATCH];
    int sizes[2 * MD_MAX_BATCH], orig[2 * MD_MAX_BATCH];
    CHECK_OK(md_st_read_i64(&ref, "image_sizes", -1, NULL, s64, 2 * MD_MAX_BATCH));
    CHECK_OK(md_st_read_i64(&ref, "orig_sizes", -1, NULL, o64, 2 * MD_MAX_BATCH));
    for (int i = 0; i < 2 * N; i++) {
        sizes[i] = (int)s64[i];
        orig[i] = (int)o64[i];
    }
    md_arena arena;
    CHECK_OK(md_arena_init(&arena, (size_t)256 << 20));

    /* (a) */
    md_step st;
    CHECK_OK(md_detector_forward_rpn(&det, &arena, images, N, H, W, sizes, 1, &st));
    static const char *cn[4] = {"C2", "C3", "C4", "C5"}, *pn[5] = {"P2", "P3", "P4", "P5", "P6"};
    for (int l = 0; l < 4; l++)
        cmp(cn[l], st.saved->C[l], &ref, cn[l],
            (size_t)N * det.impl->resnet.out_ch[l] * st.saved->cH[l] * st.saved->cW[l], 1e-4);
    for (int l = 0; l < 5; l++)
        cmp(pn[l], st.features[l], &ref, pn[l], (size_t)N * st.fpn_channels * st.level_h[l] * st.level_w[l], 1e-4);
    cmp("anchors", st.anchors, &ref, "anchors", (size_t)st.num_anchors * 4, 0.0);
    float *anchors_default = malloc((size_t)st.num_anchors * 4 * sizeof(float));
    if (!anchors_default) { fprintf(stderr, "out of memory\n"); exit(1); }
    memcpy(anchors_default, st.anchors, (size_t)st.num_anchors * 4 * sizeof(float));
    cmp("objectness", st.objectness, &ref, "objectness", (size_t)N * st.num_anchors, 1e-4);
    cmp("rpn_deltas", st.rpn_deltas, &ref, "rpn_deltas", (size_t)N * st.num_anchors * 4, 1e-4);

    /* (b) */
    CHECK_OK(md_detector_proposals(&det, &arena, &st));
    for (int n = 0; n < N; n++) {
        char nm[64];
        snprintf(nm, sizeof nm, "proposals_%d", n);
        cmp_boxes(nm, st.proposals[n], st.num_proposals[n], &ref, nm, 1e-2);
        snprintf(nm, sizeof nm, "proposal_scores_%d", n);
        cmp(nm, st.proposal_scores[n], &ref, nm, (size_t)st.num_proposals[n], 1e-4);
    }

    /* (c) on the reference RoIs */
    size_t nr;
    float *rois = get(&ref, "rois", &nr);
    int R = (int)(nr / 5);
    CHECK_OK(md_detector_forward_roi(&det, &arena, &st, rois, R));
    int lv_seen[4] = {0, 0, 0, 0};
    for (int r = 0; r < R; r++) lv_seen[st.roi_level[r]]++;
    CHECK(lv_seen[0] && lv_seen[1] && lv_seen[2] && lv_seen[3], "RoIs on every level: %d %d %d %d", lv_seen[0], lv_seen[1],
          lv_seen[2], lv_seen[3]);
    int K = det.model.num_classes;
    cmp("roi_pooled", st.saved->pooled, &ref, "roi_pooled", (size_t)R * det.impl->head.in_features, 1e-4);
    cmp("class_logits", st.class_logits, &ref, "class_logits", (size_t)R * K, 1e-4);
    cmp("box_deltas", st.box_deltas, &ref, "box_deltas", (size_t)R * 4 * K, 1e-4);

    /* (d) gradients of sum(w * outputs) */
    size_t A = (size_t)st.num_anchors;
    float *wo = malloc(N * A * sizeof(float)), *wd = malloc(N * A * 4 * sizeof(float));
    float *wc = malloc((size_t)R * K * sizeof(float)), *wb = malloc((size_t)R * 4 * K * sizeof(float));
    for (size_t i = 0; i < N * A; i++) wo[i] = loss_weight(i, 0);
    for (size_t i = 0; i < N * A * 4; i++) wd[i] = loss_weight(i, 1);
    for (size_t i = 0; i < (size_t)R * K; i++) wc[i] = loss_weight(i, 2);
    for (size_t i = 0; i < (size_t)R * 4 * K; i++) wb[i] = loss_weight(i, 3);
    md_detector_zero_grad(&det);
    CHECK_OK(md_detector_backward(&det, &arena, &st, wo, wd, wc, wb));
    int ngrad = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < det.num_params; i++) {
        md_param *p = &det.params[i];
        char gn[160];
        snprintf(gn, sizeof gn, "grad.%s", p->name);
        const md_st_tensor *g = md_st_find(&ref, gn);
        CHECK((g != NULL) == (p->grad != NULL), "%s: trainable here %d, in torchvision %d", p->name, p->grad != NULL, g != NULL);
        if (!g || !p->grad) continue;
        ngrad++;
        float *b = get(&ref, gn, NULL);
        if (!b) continue;
        double e = rel_to_max(p->grad, b, p->numel);
        CHECK(e <= 1e-3, "%s: gradient error %.3g", gn, e);
        if (!(e <= worst)) {
            worst = e;
            worst_name = p->name;
        }
        free(b);
    }
    CHECK(ngrad == atoi(meta(&ref, "num_grads")), "%d gradients compared, reference has %s", ngrad, meta(&ref, "num_grads"));
    printf("    %-28s %d tensors, worst rel err %.2e (%s)\n", "parameter gradients", ngrad, worst, worst_name);
    printf("    arena peak %.1f MiB\n", (double)arena.peak / (1 << 20));

    /* whole inference: detections rescaled to the original sizes */
    md_arena_reset(&arena);
    md_detections dets[MD_MAX_BATCH];
    CHECK_OK(md_detector_infer(&det, &arena, images, N, H, W, sizes, orig, dets));
    for (int n = 0; n < N; n++) {
        char nm[64];
        snprintf(nm, sizeof nm, "det_boxes_%d", n);
        cmp_boxes(nm, dets[n].boxes, dets[n].n, &ref, nm, 1e-2);
        snprintf(nm, sizeof nm, "det_scores_%d", n);
        cmp(nm, dets[n].scores, &ref, nm, (size_t)dets[n].n, 1e-4);
        snprintf(nm, sizeof nm, "det_labels_%d", n);
        int64_t lab[200];
        size_t nl = md_st_find(&ref, nm) ? md_st_find(&ref, nm)->numel : 0;
        if (nl <= 200 && md_st_read_i64(&ref, nm, -1, NULL, lab, 200) == MD_OK) {
            int bad = 0;
            for (int j = 0; j < dets[n].n && j < (int)nl; j++) bad += lab[j] != dets[n].labels[j];
            CHECK(bad == 0, "%s: %d labels differ", nm, bad);
        }
    }
    free(wo);
    free(wd);
    free(wc);
    free(wb);
    free(rois);
    /* [rpn] anchor_sizes: with other sizes every anchor is the closed form of torchvision's
     * AnchorGenerator (ratios 0.5, 1, 2; round(+-size*sqrt(1/r)/2), round(+-size*sqrt(r)/2)),
     * shifted by the level's stride; computed here in double, independently of rpn.c. */
    if (!strcmp(name, "r18")) {
        static const float sizes_alt[MD_RPN_ANCHOR_LEVELS] = {8, 12.5f, 40, 100, 200};
        memcpy(det.rpn.anchor_sizes, sizes_alt, sizeof sizes_alt);
        md_arena_reset(&arena);
        md_step s2;
        CHECK_OK(md_detector_forward_rpn(&det, &arena, images, N, H, W, sizes, 1, &s2));
        CHECK(s2.num_anchors == st.num_anchors, "anchor count %d vs %d", s2.num_anchors, st.num_anchors);
        static const double ratios[3] = {0.5, 1.0, 2.0};
        int bad = 0, differs = 0;
        for (int l = 0; l < MD_FPN_LEVELS; l++) {
            int Hl = s2.level_h[l], Wl = s2.level_w[l], sy = s2.H / Hl, sx = s2.W / Wl;
            for (int y = 0; y < Hl; y++)
                for (int x = 0; x < Wl; x++)
                    for (int k = 0; k < 3; k++) {
                        double hr = sqrt(ratios[k]), ws = sizes_alt[l] / hr, hs = sizes_alt[l] * hr;
                        double e[4] = {x * sx + nearbyint(-ws / 2), y * sy + nearbyint(-hs / 2),
                                       x * sx + nearbyint(ws / 2), y * sy + nearbyint(hs / 2)};
                        const float *o = s2.anchors + ((size_t)s2.level_start[l] + ((size_t)y * Wl + x) * 3 + k) * 4;
                        for (int j = 0; j < 4; j++) bad += (double)o[j] != e[j];
                    }
        }
        for (int i = 0; i < s2.num_anchors * 4; i++) differs += s2.anchors[i] != anchors_default[i];
        CHECK(bad == 0, "anchor_sizes 8,12.5,40,100,200: %d anchor coordinates differ from the closed form", bad);
        CHECK(differs > 0, "anchor_sizes had no effect on the anchors");
    }
    free(anchors_default);
    free(images);
    md_arena_free(&arena);
    md_detector_free(&det);
    md_st_free(&ref);
}

static void test_r18_parity(void) { run_variant("r18"); }
static void test_r50_parity(void) { run_variant("r50"); }
/* ResNet-vd (timm resnet50d layout) at an 80 x 72 input: odd C3/C4 sizes exercise the ceil-mode shortcut pool */
static void test_r50vd_parity(void) { run_variant("r50vd"); }

/* ResNet-vd with [model] norm = bn (trainable BatchNorm2d with batch statistics, trainable_layers 5): the
 * r50vd weights and image in training mode against torch nn.BatchNorm2d.train() (scripts/ref_model.py --vd-bn):
 * C2..C5, the gradients of sum_l sum(C_l * w_l) for the deep stem, every shortcut and the last block (BN
 * weight / bias included), and those BNs' running statistics after the forward. */
static void test_r50vd_bn_train(void) {
    const char *wp = "tests/fixtures/model_r50vd_weights.safetensors", *rp = "tests/fixtures/model_r50vd_ref.safetensors",
               *bp = "tests/fixtures/model_r50vd_bn_ref.safetensors";
    if (!md_test_need_path(wp, "scripts/ref_model.py") || !md_test_need_path(rp, "scripts/ref_model.py") ||
        !md_test_need_path(bp, "scripts/ref_model.py --vd-bn"))
        return;
    md_st_file ref, bref;
    CHECK_OK(md_st_load(rp, &ref));
    CHECK_OK(md_st_load(bp, &bref));
    md_config cfg;
    config_from(&cfg, &ref);
    cfg.model.norm = MD_NORM_BN;
    md_detector det;
    md_status s = md_detector_create(&det, &cfg);
    CHECK_OK(s);
    if (s) {
        md_st_free(&ref);
        md_st_free(&bref);
        return;
    }
    CHECK_OK(md_detector_load_weights(&det, wp, 1, NULL));
    float *images = get(&ref, "images", NULL);
    const md_st_tensor *it = md_st_find(&ref, "images");
    int N = (int)it->shape[0], H = (int)it->shape[2], W = (int)it->shape[3], sizes[2 * MD_MAX_BATCH];
    for (int i = 0; i < N; i++) {
        sizes[2 * i] = H;
        sizes[2 * i + 1] = W;
    }
    md_arena arena;
    CHECK_OK(md_arena_init(&arena, (size_t)64 << 20));
    md_detector_zero_grad(&det);
    md_step st;
    CHECK_OK(md_detector_forward_rpn(&det, &arena, images, N, H, W, sizes, 1, &st));
    static const char *cn[4] = {"C2", "C3", "C4", "C5"};
    float *dC[4];
    for (int l = 0; l < 4; l++) {
        size_t n = (size_t)N * det.impl->resnet.out_ch[l] * st.saved->cH[l] * st.saved->cW[l];
        cmp(cn[l], st.saved->C[l], &bref, cn[l], n, 1e-4);
        dC[l] = md_arena_floats(&arena, n);
        if (dC[l])
            for (size_t i = 0; i < n; i++) dC[l][i] = loss_weight(i, 10 + l);
    }
    if (dC[0] && dC[1] && dC[2] && dC[3]) CHECK_OK(md_resnet_backward(&det, &arena, &st, dC, NULL));
    int ng = 0, nr = 0;
    double worst = 0, worst_rs = 0;
    for (int t = 0; t < bref.count; t++) {
        const char *tn = bref.tensors[t].name;
        int is_grad = !strncmp(tn, "grad.", 5), is_after = !strncmp(tn, "after.", 6);
        if (!is_grad && !is_after) continue;
        md_param *p = md_detector_param(&det, tn + (is_grad ? 5 : 6));
        CHECK(p && (!is_grad || p->grad), "%s: no such %s tensor here", tn, is_grad ? "trainable" : "");
        if (!p || (is_grad && !p->grad)) continue;
        float *b = get(&bref, tn, NULL);
        if (!b) continue;
        double e = rel_to_max(is_grad ? p->grad : p->data, b, p->numel);
        CHECK(e <= (is_grad ? 1e-3 : 1e-4), "%s: error %.3g", tn, e);
        if (is_grad) {
            ng++;
            worst = fmax(worst, e);
        } else {
            nr++;
            worst_rs = fmax(worst_rs, e);
        }
        free(b);
    }
    CHECK(ng >= 30 && nr >= 20, "%d gradients, %d running statistics compared", ng, nr);
    CHECK(md_detector_param(&det, "backbone.body.conv1.1.weight")->grad != NULL, "the deep stem's BN is trained with norm = bn");
    printf("    %-28s %d tensors, worst rel err %.2e; running stats %d tensors, worst %.2e\n", "vd + bn gradients", ng, worst,
           nr, worst_rs);
    free(images);
    md_arena_free(&arena);
    md_detector_free(&det);
    md_st_free(&bref);
    md_st_free(&ref);
}

/* loading a checkpoint of another architecture: strict fails listing mismatches; strict = 0 loads the rest */
static void test_bad_checkpoints(void) {
    const char *w18 = "tests/fixtures/model_r18_weights.safetensors", *r18 = "tests/fixtures/model_r18_ref.safetensors";
    if (!md_test_need_path(w18, "scripts/ref_model.py") || !md_test_need_path(r18, "scripts/ref_model.py")) return;
    md_st_file ref;
    CHECK_OK(md_st_load(r18, &ref));
    md_config cfg;
    config_from(&cfg, &ref);
    md_st_free(&ref);
    /* wrong number of classes */
    cfg.model.num_classes = 7;
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    md_param *p = md_detector_param(&det, "roi_heads.box_predictor.cls_score.weight");
    CHECK(p != NULL, "registry lookup");
    float before = p ? p->data[0] : 0;
    md_status s = md_detector_load_weights(&det, w18, 1, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "roi_heads.box_predictor.cls_score.weight: file [5, 16] vs model [7, 16]"),
          "num_classes mismatch: %s", md_last_error());
    CHECK(p && p->data[0] == before, "strict failure leaves the model unchanged");
    md_load_report rep;
    CHECK_OK(md_detector_load_weights(&det, w18, 0, &rep));
    CHECK(rep.mismatched == 4 && rep.missing == 0 && rep.unexpected == 0 && rep.loaded == det.num_params - 4,
          "partial load: loaded %d missing %d unexpected %d mismatched %d", rep.loaded, rep.missing, rep.unexpected, rep.mismatched);
    char buf[2048];
    md_load_report_format(&rep, buf, sizeof buf);
    CHECK(strstr(buf, "4 with a wrong shape") != NULL, "report: %s", buf);
    md_detector_free(&det);
    /* another depth: R34 model, R18 file */
    cfg.model.num_classes = 5;
    cfg.model.depth = 34;
    CHECK_OK(md_detector_create(&det, &cfg));
    s = md_detector_load_weights(&det, w18, 1, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "missing") && strstr(md_last_error(), "backbone.body.layer1.2.conv1.weight"),
          "depth mismatch: %s", md_last_error());
    md_detector_free(&det);
    /* bottleneck model, basic-block file: unexpected + mismatched */
    cfg.model.depth = 50;
    CHECK_OK(md_detector_create(&det, &cfg));
    s = md_detector_load_weights(&det, w18, 1, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "wrong shape"), "R50 vs R18 file: %s", md_last_error());
    md_detector_free(&det);
    /* a plain checkpoint for a ResNet-vd model and the reverse: the error says which model.vd fits */
    cfg.model.depth = 18;
    cfg.model.vd = 1;
    CHECK_OK(md_detector_create(&det, &cfg));
    s = md_detector_load_weights(&det, w18, 1, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "(depth 18-vd, 5 classes) (the file has a plain ResNet stem: set model.vd = 0)") &&
              strstr(md_last_error(), "backbone.body.conv1.0.weight"),
          "vd model, plain file: %s", md_last_error());
    md_detector_free(&det);
    const char *wvd = "tests/fixtures/model_r50vd_weights.safetensors";
    if (md_test_need_path(wvd, "scripts/ref_model.py --variant r50vd")) {
        cfg.model.depth = 50;
        cfg.model.vd = 0;
        CHECK_OK(md_detector_create(&det, &cfg));
        s = md_detector_load_weights(&det, wvd, 1, NULL);
        CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "(the file has a ResNet-vd deep stem: set model.vd = 1)"),
              "plain model, vd file: %s", md_last_error());
        md_detector_free(&det);
    }
    cfg.model.vd = 0;
    /* an RPN head for another number of [rpn] aspect_ratios: the error says so */
    cfg.model.depth = 18;
    cfg.rpn.num_aspect_ratios = 5;
    const float r5[5] = {0.25f, 0.5f, 1, 2, 4};
    memcpy(cfg.rpn.aspect_ratios, r5, sizeof r5);
    CHECK_OK(md_detector_create(&det, &cfg));
    s = md_detector_load_weights(&det, w18, 1, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "rpn.head.cls_logits.weight: file [3, 16, 1, 1] vs model [5, 16, 1, 1]") &&
              strstr(md_last_error(), "the file's RPN head has 3 anchors per location, the model 5: set rpn.aspect_ratios"),
          "5-ratio model, 3-ratio file: %s", md_last_error());
    md_detector_free(&det);
    md_config_defaults(&cfg); /* back to the fixture's config */
    {
        md_st_file rf;
        CHECK_OK(md_st_load(r18, &rf));
        config_from(&cfg, &rf);
        md_st_free(&rf);
    }
    /* save / load round trip */
    cfg.model.depth = 18;
    CHECK_OK(md_detector_create(&det, &cfg));
    CHECK_OK(md_detector_load_weights(&det, w18, 1, NULL));
    const char *meta_k[1] = {"note"}, *meta_v[1] = {"roundtrip"};
    CHECK_OK(md_detector_save_weights(&det, "build/tmp_model_rt.safetensors", 1, meta_k, meta_v));
    md_detector d2;
    cfg.run.seed = 999;
    CHECK_OK(md_detector_create(&d2, &cfg));
    CHECK_OK(md_detector_load_weights(&d2, "build/tmp_model_rt.safetensors", 1, NULL));
    int same = 1;
    for (int i = 0; i < det.num_params; i++)
        same &= !memcmp(det.params[i].data, d2.params[i].data, det.params[i].numel * sizeof(float));
    CHECK(same, "round trip keeps every tensor");
    md_detector_free(&d2);
    md_detector_free(&det);
    remove("build/tmp_model_rt.safetensors");
}

/* [rpn] aspect_ratios: the anchors of a tiny model at a 64 x 96 input equal torchvision's AnchorGenerator
 * exactly (tests/fixtures/anchors.safetensors, scripts/ref_anchors.py) for 3 (default), 5, 1 and 8 ratios;
 * the RPN head has A objectness and 4A box outputs per location, laid out (level, y, x, ratio) both ways:
 * with zero head weights the objectness of anchor k is the cls bias k, and the backward of a linear loss
 * puts into cls / bbox bias k exactly the sum of the loss weights of the anchors of ratio k. */
static void test_anchor_ratios(void) {
    const char *fx = "tests/fixtures/anchors.safetensors";
    if (!md_test_need_path(fx, "scripts/ref_anchors.py")) return;
    md_st_file ref;
    CHECK_OK(md_st_load(fx, &ref));
    const char *cases[] = {"default", "r5", "r1", "r8"};
    md_arena arena;
    CHECK_OK(md_arena_init(&arena, (size_t)64 << 20));
    for (int ci = 0; ci < 4; ci++) {
        const char *cs = cases[ci];
        size_t nr = 0, ns = 0, na = 0;
        float *ratios = md_test_fixture_f32(&ref, cs, "ratios", &nr);
        float *sizes = md_test_fixture_f32(&ref, cs, "sizes", &ns);
        float *anchors = md_test_fixture_f32(&ref, cs, "anchors", &na);
        char gname[64];
        snprintf(gname, sizeof gname, "%s.geom", cs);
        int64_t geom[12];
        CHECK_OK(md_st_read_i64(&ref, gname, -1, NULL, geom, 12));
        if (!ratios || !sizes || !anchors || ns != MD_RPN_ANCHOR_LEVELS || nr < 1 || nr > MD_RPN_MAX_RATIOS) {
            free(ratios); free(sizes); free(anchors);
            continue;
        }
        md_config cfg;
        md_config_defaults(&cfg);
        cfg.model.depth = 18;
        cfg.model.width_mult = 0.25f;
        cfg.model.fpn_channels = 8;
        cfg.model.representation_size = 16;
        cfg.model.num_classes = 3;
        cfg.model.trainable_layers = 5;
        memcpy(cfg.rpn.anchor_sizes, sizes, sizeof cfg.rpn.anchor_sizes);
        if (ci > 0) { /* "default" checks that the defaults are torchvision's */
            memset(cfg.rpn.aspect_ratios, 0, sizeof cfg.rpn.aspect_ratios);
            memcpy(cfg.rpn.aspect_ratios, ratios, nr * sizeof(float));
            cfg.rpn.num_aspect_ratios = (int)nr;
        }
        int NA = (int)nr, H = (int)geom[0], W = (int)geom[1];
        CHECK(cfg.rpn.num_aspect_ratios == NA, "%s: %d ratios in the config, fixture %d", cs, cfg.rpn.num_aspect_ratios, NA);
        md_detector det;
        CHECK_OK(md_detector_create(&det, &cfg));
        md_param *cw = md_detector_param(&det, "rpn.head.cls_logits.weight"), *cb = md_detector_param(&det, "rpn.head.cls_logits.bias");
        md_param *bw = md_detector_param(&det, "rpn.head.bbox_pred.weight"), *bb = md_detector_param(&det, "rpn.head.bbox_pred.bias");
        CHECK(cw && cb && bw && bb, "%s: RPN head tensors", cs);
        if (!cw || !cb || !bw || !bb) { md_detector_free(&det); free(ratios); free(sizes); free(anchors); continue; }
        CHECK(cw->shape[0] == NA && cw->shape[1] == 8 && cw->shape[2] == 1 && cb->numel == (size_t)NA, "%s: cls_logits [%d, %d, 1, 1]", cs,
              cw->shape[0], cw->shape[1]);
        CHECK(bw->shape[0] == 4 * NA && bb->numel == (size_t)(4 * NA), "%s: bbox_pred has %d outputs, want %d", cs, bw->shape[0], 4 * NA);
        /* zero head weights, bias k (objectness) and 4k+c (deltas) tell which output lands where */
        memset(cw->data, 0, cw->numel * sizeof(float));
        memset(bw->data, 0, bw->numel * sizeof(float));
        for (int k = 0; k < NA; k++) cb->data[k] = (float)(k + 1);
        for (int k = 0; k < 4 * NA; k++) bb->data[k] = (float)(100 + k);
        float *img = calloc((size_t)2 * 3 * H * W, sizeof(float));
        int sz[4] = {H, W, H - 5, W - 9};
        md_arena_reset(&arena);
        md_step st;
        CHECK_OK(md_detector_forward_rpn(&det, &arena, img, 2, H, W, sz, 1, &st));
        size_t A = (size_t)st.num_anchors;
        CHECK(A * 4 == na, "%s: %zu anchors, torchvision %zu", cs, A, na / 4);
        for (int l = 0; l < MD_FPN_LEVELS; l++)
            CHECK(st.level_h[l] == geom[2 + 2 * l] && st.level_w[l] == geom[3 + 2 * l], "%s: level %d is %dx%d, fixture %lldx%lld", cs,
                  l, st.level_h[l], st.level_w[l], (long long)geom[2 + 2 * l], (long long)geom[3 + 2 * l]);
        if (A * 4 == na) {
            size_t bad = 0, first = 0;
            for (size_t j = 0; j < na; j++)
                if (st.anchors[j] != anchors[j] && !bad++) first = j;
            CHECK(bad == 0, "%s: %zu anchor coordinates differ from torchvision (first: anchor %zu coord %zu: %g vs %g)", cs, bad,
                  first / 4, first % 4, (double)st.anchors[first], (double)anchors[first]);
            size_t lay = 0;
            for (int n = 0; n < 2; n++)
                for (size_t j = 0; j < A; j++) {
                    int k = (int)(j % (size_t)NA); /* within a level, p * NA + k; levels start at multiples of NA */
                    lay += st.objectness[n * A + j] != (float)(k + 1);
                    for (int c = 0; c < 4; c++) lay += st.rpn_deltas[(n * A + j) * 4 + c] != (float)(100 + 4 * k + c);
                }
            CHECK(lay == 0, "%s: %zu RPN outputs are not where torchvision's layout puts them", cs, lay);
            /* backward: linear loss sum w * objectness + v * deltas */
            float *w = md_arena_floats(&arena, 2 * A), *v = md_arena_floats(&arena, 2 * A * 4);
            double gcb[MD_RPN_MAX_RATIOS] = {0}, gbb[4 * MD_RPN_MAX_RATIOS] = {0};
            for (size_t j = 0; j < 2 * A; j++) {
                w[j] = (float)sin(0.37 * (double)j);
                gcb[j % (size_t)NA] += w[j];
                for (int c = 0; c < 4; c++) {
                    v[j * 4 + c] = (float)cos(0.11 * (double)(j * 4 + c));
                    gbb[(j % (size_t)NA) * 4 + c] += v[j * 4 + c];
                }
            }
            md_detector_zero_grad(&det);
            CHECK_OK(md_detector_backward(&det, &arena, &st, w, v, NULL, NULL));
            double e = 0;
            for (int k = 0; k < NA; k++) e = fmax(e, fabs(cb->grad[k] - gcb[k]) / (1 + fabs(gcb[k])));
            for (int k = 0; k < 4 * NA; k++) e = fmax(e, fabs(bb->grad[k] - gbb[k]) / (1 + fabs(gbb[k])));
            CHECK(e < 1e-4, "%s: RPN head bias gradients off by %.3g (layout of the backward)", cs, e);
            printf("    %-8s %d ratios, %zu anchors equal torchvision's; head bias grad err %.1e\n", cs, NA, A, e);
        }
        free(img);
        md_detector_free(&det);
        free(ratios);
        free(sizes);
        free(anchors);
    }
    md_arena_free(&arena);
    md_st_free(&ref);
}

/* md_det_topk (the RPN's per-level top-k): the first k indices by (score descending, NaN as -inf, index
 * ascending), against a full insertion sort by that rule, on scores with many ties and NaNs. */
static int topk_before(const float *sc, int a, int b) {
    float x = isnan(sc[a]) ? -INFINITY : sc[a], y = isnan(sc[b]) ? -INFINITY : sc[b];
    return x > y || (x == y && a < b);
}
static void test_det_topk(void) {
    const int ns[6] = {1, 2, 17, 300, 3072, 5000};
    int bad = 0, cases = 0;
    unsigned r = 12345;
    for (int q = 0; q < 6; q++) {
        int n = ns[q];
        float *sc = malloc(sizeof(float) * (size_t)n);
        int *ref = malloc(sizeof(int) * (size_t)n), *out = malloc(sizeof(int) * (size_t)(n + 5)), *scr = malloc(8 * (size_t)n);
        if (!sc || !ref || !out || !scr) { free(sc); free(ref); free(out); free(scr); CHECK(0, "out of memory"); return; }
        for (int i = 0; i < n; i++) {
            r = r * 1103515245u + 12345u;
            unsigned v = (r >> 16) % 64; /* 64 distinct values: many ties */
            sc[i] = v == 0 ? NAN : v == 1 ? -INFINITY : (float)v / 7.0f;
        }
        for (int i = 0; i < n; i++) { /* reference: insertion sort by the rule */
            int j = i;
            while (j > 0 && topk_before(sc, i, ref[j - 1])) { ref[j] = ref[j - 1]; j--; }
            ref[j] = i;
        }
        const int ks[6] = {1, 3, n / 2, n - 1, n, n + 5};
        for (int t = 0; t < 6; t++) {
            int k = ks[t];
            if (k < 1) continue;
            int m = k < n ? k : n;
            for (int i = 0; i < n + 5; i++) out[i] = -7;
            md_det_topk(sc, n, m, out, scr);
            cases++;
            if (memcmp(out, ref, sizeof(int) * (size_t)m)) bad++;
        }
        free(sc); free(ref); free(out); free(scr);
    }
    CHECK(bad == 0 && cases > 30, "md_det_topk: %d of %d cases differ from the full sort", bad, cases);
}

/* torchvision defaults: the R50-FPN registry has torchvision's 348 state_dict entries minus the 53
 * num_batches_tracked buffers, with torchvision's initialisation statistics. */
static void test_r50_registry(void) {
    md_config cfg;
    md_config_defaults(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    CHECK(det.num_params == 348 - 53, "R50-FPN registry has %d tensors", det.num_params);
    size_t tr = 0;
    for (int i = 0; i < det.num_params; i++) tr += det.params[i].trainable ? det.params[i].numel : 0;
    /* trainable_layers 3: layer2..4 + FPN + RPN + box head (torchvision: 41,532,886 trainable with 91 classes) */
    CHECK(tr == 41532886, "trainable floats %zu", tr);
    md_param *p = md_detector_param(&det, "rpn.head.conv.0.0.weight");
    double ss = 0;
    for (size_t i = 0; p && i < p->numel; i++) ss += (double)p->data[i] * p->data[i];
    CHECK(p && fabs(sqrt(ss / p->numel) - 0.01) < 0.0005, "rpn conv init std %g", p ? sqrt(ss / p->numel) : -1);
    CHECK(md_detector_param(&det, "backbone.body.conv1.weight")->grad == NULL, "conv1 frozen");
    CHECK(md_detector_param(&det, "backbone.body.layer1.0.conv1.weight")->grad == NULL, "layer1 frozen");
    CHECK(md_detector_param(&det, "backbone.body.layer2.0.conv1.weight")->grad != NULL, "layer2 trained");
    CHECK(md_detector_param(&det, "backbone.body.bn1.running_var")->is_buffer, "bn buffer");
    md_detector_free(&det);
    cfg.model.depth = 77;
    CHECK(md_detector_create(&det, &cfg) == MD_ERR_ARG && strstr(md_last_error(), "depth"), "bad depth: %s", md_last_error());
}

int main(void) {
    MD_RUN(test_r50_registry);
    MD_RUN(test_r18_parity);
    MD_RUN(test_r50_parity);
    MD_RUN(test_r50vd_parity);
    MD_RUN(test_r50vd_bn_train);
    MD_RUN(test_bad_checkpoints);
    MD_RUN(test_anchor_ratios);
    MD_RUN(test_det_topk);
    return md_test_summary();
}
