/* tool_model_compare.c — one-off large-scale parity check of the detector against a torchvision dump
 * written by `scripts/ref_model.py --full-r50 IMAGE --out-dir DIR`:
 *   build/bin/tool_model_compare DIR/model_full_r50_weights.safetensors DIR/model_full_r50_ref.safetensors [--no-grad]
 * Prints the max error (relative to the tensor's max |value|) of every stage output, the box differences
 * of proposals and detections, the worst parameter-gradient error, and the time of each stage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/safetensors.h"
#include "minidet/threads.h"
#include "../model/model_internal.h"

static double rel_to_max(const float *a, const float *b, size_t n) {
    double m = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > m) m = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d;
    }
    return e / (m > 1e-12 ? m : 1e-12);
}

static float *get(const md_st_file *f, const char *name, size_t *n) {
    float *p = NULL;
    size_t k = 0;
    if (md_st_alloc_f32(f, name, &p, &k)) md_die();
    if (n) *n = k;
    return p;
}

static double worst_all = 0;

static void cmp(const char *what, const float *a, size_t n, const md_st_file *ref, const char *name) {
    size_t k;
    float *b = get(ref, name, &k);
    if (k != n) {
        printf("  %-22s SIZE MISMATCH %zu vs %zu\n", what, n, k);
        worst_all = INFINITY;
    } else {
        double e = rel_to_max(a, b, n);
        printf("  %-22s rel err %.2e\n", what, e);
        if (!(e <= worst_all)) worst_all = e;
    }
    free(b);
}

static void cmp_boxes(const char *what, const float *a, int na, const float *sa, const md_st_file *ref, const char *bname,
                      const char *sname) {
    size_t k, ks;
    float *b = get(ref, bname, &k);
    float *s = get(ref, sname, &ks);
    int nb = (int)(k / 4), n = na < nb ? na : nb, first = -1;
    double e = 0;
    for (int i = 0; i < n; i++) {
        double d = 0;
        for (int c = 0; c < 4; c++) d = fmax(d, fabs((double)a[4 * i + c] - b[4 * i + c]));
        if (d > 1e-2 && first < 0) first = i;
        e = fmax(e, d);
    }
    printf("  %-22s %d vs %d boxes, max diff %.2e px", what, na, nb, e);
    if (first >= 0)
        printf(", first > 1e-2 at %d (score %.7g vs %.7g)", first, (double)sa[first], (double)s[first]);
    printf("\n");
    free(b);
    free(s);
}

static float loss_weight(size_t i, int phase) { return (float)sin(0.731 * (double)i + phase); }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors REF.safetensors [--no-grad]\n", argv[0]);
        return 2;
    }
    int grad = !(argc > 3 && !strcmp(argv[3], "--no-grad"));
    md_threads_init(0);
    md_st_file ref;
    if (md_st_load(argv[2], &ref)) md_die();
#define META(k) (md_st_meta(&ref, k) ? md_st_meta(&ref, k) : "0")
    md_config cfg;
    md_config_defaults(&cfg);
    cfg.model.depth = atoi(META("depth"));
    cfg.model.width_mult = (float)atof(META("width_mult"));
    cfg.model.fpn_channels = atoi(META("fpn_channels"));
    cfg.model.representation_size = atoi(META("representation_size"));
    cfg.model.num_classes = atoi(META("num_classes"));
    cfg.model.trainable_layers = atoi(META("trainable_layers"));
    cfg.rpn.pre_nms_top_n_train = cfg.rpn.pre_nms_top_n_test = atoi(META("pre_nms_top_n"));
    cfg.rpn.post_nms_top_n_train = cfg.rpn.post_nms_top_n_test = atoi(META("post_nms_top_n"));
    cfg.test.score_thresh = 0.0f;
    md_detector det;
    if (md_detector_create(&det, &cfg) || md_detector_load_weights(&det, argv[1], 1, NULL)) md_die();
    const md_st_tensor *it = md_st_find(&ref, "images");
    if (!it) md_die();
    int N = (int)it->shape[0], H = (int)it->shape[2], W = (int)it->shape[3];
    float *images = get(&ref, "images", NULL);
    int64_t s64[2 * MD_MAX_BATCH], o64[2 * MD_MAX_BATCH];
    int sizes[2 * MD_MAX_BATCH], orig[2 * MD_MAX_BATCH];
    if (md_st_read_i64(&ref, "image_sizes", -1, NULL, s64, 2 * MD_MAX_BATCH) ||
        md_st_read_i64(&ref, "orig_sizes", -1, NULL, o64, 2 * MD_MAX_BATCH))
        md_die();
    for (int i = 0; i < 2 * N; i++) {
        sizes[i] = (int)s64[i];
        orig[i] = (int)o64[i];
    }
    printf("R%d-FPN, %d image(s) %dx%d, %d threads\n", cfg.model.depth, N, H, W, md_threads_get());
    md_arena arena;
    if (md_arena_init(&arena, (size_t)8 << 30)) md_die();
    md_step st;
    double t0 = md_now();
    if (md_detector_forward_rpn(&det, &arena, images, N, H, W, sizes, grad, &st)) md_die();
    double t1 = md_now();
    static const char *cn[4] = {"C2", "C3", "C4", "C5"}, *pn[5] = {"P2", "P3", "P4", "P5", "P6"};
    for (int l = 0; l < 4; l++)
        cmp(cn[l], st.saved->C[l], (size_t)N * det.impl->resnet.out_ch[l] * st.saved->cH[l] * st.saved->cW[l], &ref, cn[l]);
    for (int l = 0; l < 5; l++) cmp(pn[l], st.features[l], (size_t)N * st.fpn_channels * st.level_h[l] * st.level_w[l], &ref, pn[l]);
    cmp("objectness", st.objectness, (size_t)N * st.num_anchors, &ref, "objectness");
    cmp("rpn_deltas", st.rpn_deltas, (size_t)N * st.num_anchors * 4, &ref, "rpn_deltas");
    double t2 = md_now();
    if (md_detector_proposals(&det, &arena, &st)) md_die();
    double t3 = md_now();
    char nm[64], sn[64];
    for (int n = 0; n < N; n++) {
        snprintf(nm, sizeof nm, "proposals_%d", n);
        snprintf(sn, sizeof sn, "proposal_scores_%d", n);
        cmp_boxes(nm, st.proposals[n], st.num_proposals[n], st.proposal_scores[n], &ref, nm, sn);
    }
    size_t nr;
    float *rois = get(&ref, "rois", &nr);
    int R = (int)(nr / 5), K = cfg.model.num_classes;
    double t4 = md_now();
    if (md_detector_forward_roi(&det, &arena, &st, rois, R)) md_die();
    double t5 = md_now();
    cmp("roi_pooled", st.saved->pooled, (size_t)R * det.impl->head.in_features, &ref, "roi_pooled");
    cmp("class_logits", st.class_logits, (size_t)R * K, &ref, "class_logits");
    cmp("box_deltas", st.box_deltas, (size_t)R * 4 * K, &ref, "box_deltas");
    printf("  times: backbone+FPN+RPN %.2f s, proposals %.3f s, RoI heads (%d RoIs) %.3f s\n", t1 - t0, t3 - t2, R, t5 - t4);
    if (grad) {
        size_t A = (size_t)N * st.num_anchors;
        float *wo = malloc(A * sizeof(float)), *wd = malloc(A * 4 * sizeof(float));
        float *wc = malloc((size_t)R * K * sizeof(float)), *wb = malloc((size_t)R * 4 * K * sizeof(float));
        for (size_t i = 0; i < A; i++) wo[i] = loss_weight(i, 0);
        for (size_t i = 0; i < A * 4; i++) wd[i] = loss_weight(i, 1);
        for (size_t i = 0; i < (size_t)R * K; i++) wc[i] = loss_weight(i, 2);
        for (size_t i = 0; i < (size_t)R * 4 * K; i++) wb[i] = loss_weight(i, 3);
        md_detector_zero_grad(&det);
        double b0 = md_now();
        if (md_detector_backward(&det, &arena, &st, wo, wd, wc, wb)) md_die();
        double b1 = md_now();
        double worst = 0;
        const char *wn = "";
        int ng = 0;
        for (int i = 0; i < det.num_params; i++) {
            md_param *p = &det.params[i];
            char gn[160];
            snprintf(gn, sizeof gn, "grad.%s", p->name);
            if (!p->grad || !md_st_find(&ref, gn)) continue;
            float *b = get(&ref, gn, NULL);
            double e = rel_to_max(p->grad, b, p->numel);
            if (getenv("MD_VERBOSE")) printf("    %-50s %.2e\n", p->name, e);
            if (!(e <= worst)) {
                worst = e;
                wn = p->name;
            }
            ng++;
            free(b);
        }
        if (getenv("MD_DUMP_GRADS")) { /* for a float64 comparison outside */
            md_st_writer *w = md_st_writer_new();
            for (int i = 0; w && i < det.num_params; i++)
                if (det.params[i].grad) md_st_writer_add_f32(w, det.params[i].name, det.params[i].ndim, det.params[i].shape, det.params[i].grad);
            if (!w || md_st_writer_save(w, getenv("MD_DUMP_GRADS"))) md_die();
            md_st_writer_free(w);
        }
        printf("  parameter gradients    %d tensors, worst rel err %.2e (%s); backward %.2f s\n", ng, worst, wn, b1 - b0);
        free(wo);
        free(wd);
        free(wc);
        free(wb);
    }
    printf("  arena peak %.0f MiB\n", arena.peak / 1048576.0);
    md_arena_reset(&arena);
    md_detections d[MD_MAX_BATCH];
    double i0 = md_now();
    if (md_detector_infer(&det, &arena, images, N, H, W, sizes, orig, d)) md_die();
    double i1 = md_now();
    for (int n = 0; n < N; n++) {
        snprintf(nm, sizeof nm, "det_boxes_%d", n);
        snprintf(sn, sizeof sn, "det_scores_%d", n);
        cmp_boxes(nm, d[n].boxes, d[n].n, d[n].scores, &ref, nm, sn);
        cmp("det_scores", d[n].scores, (size_t)d[n].n, &ref, sn);
    }
    printf("  inference %.2f s, arena peak %.0f MiB, peak RSS %.0f MiB\n", i1 - i0, arena.peak / 1048576.0, md_peak_rss_mb());
    printf("worst tensor error %.2e\n", worst_all);
    free(rois);
    free(images);
    md_arena_free(&arena);
    md_detector_free(&det);
    md_st_free(&ref);
    return 0;
}
