/* eval_weights.c — md_eval_weights(), the `./eval --weights W.safetensors --config C.cfg` job (see
 * evaluate.h; the CLI parses the options): runs the detector over a COCO split through md_eval_detector,
 * writes the detections as a COCO results file, evaluates them with the pycocotools-exact evaluator,
 * prints the 12-line summary and writes eval.json (docs/FORMATS.md) and a short report.md next to the
 * results.
 *
 * Outputs: the results at out (default OUT_DIR/results.json); OUT_DIR is out_dir, else the directory of
 * out, else eval_<weights name> next to the weights. strict 0 loads what matches and initialises the
 * rest, with a report.
 *
 * vis N draws the first N evaluated images into OUT_DIR/vis_<image id>.png, two panels side by side:
 * the ground truth and the detections (at most MD_VIS_MAX_BOXES with score >= vis_score, 0 draws the top
 * MD_VIS_MAX_BOXES whatever their score), each box outlined in its category's colour with a tag
 * "<category name> <score>" (names from the ground-truth json), the highest score drawn last (on top);
 * small images are enlarged (md_vis_scale, layout in evaluate.h); a panel title says when no detection
 * reaches the threshold. report.md links them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "minidet/dist.h"
#include "minidet/evaluate.h"
#include "minidet/fs.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/plot.h"
#include "minidet/safetensors.h"
#include "minidet/threads.h"

static md_status write_report(const char *path, const md_eval_weights_options *a, const md_config *cfg, const md_cocoeval_result *r,
                              const md_coco_gt *gt, int nimg, size_t ndet, double secs, const char *load_msg,
                              const int64_t *vis_ids, int n_vis) {
    size_t cap = 65536 + (size_t)r->K * 128 + (size_t)n_vis * 96;
    char *t = malloc(cap);
    if (!t) return md_set_error(MD_ERR_NOMEM, "report.md: out of memory");
    size_t o = 0;
#define P(...) do { if (o < cap) o += (size_t)snprintf(t + o, cap - o, __VA_ARGS__); } while (0)
    P("# Evaluation of %s\n\n", a->weights);
    P("- model: ResNet-%d-FPN%s, %d classes (incl. background), min_size %d, max_size %d\n", cfg->model.depth,
      cfg->model.width_mult != 1.0f ? " (width multiplier)" : "", cfg->model.num_classes, cfg->model.min_size,
      cfg->model.max_size);
    P("- weights: %s\n", load_msg);
    P("- data: %s (%d images), %zu detections\n", a->ann ? a->ann : cfg->data.val_ann, nimg, ndet);
    P("- test: score_thresh %g, nms %s %g, detections_per_img %d\n", (double)cfg->test.score_thresh,
      cfg->test.nms == MD_NMS_DIOU ? "diou" : "greedy", (double)cfg->test.nms_thresh, cfg->test.detections_per_img);
    P("- time: %.1f s, %.2f images/s, %d threads\n\n", secs, secs > 0 ? nimg / secs : 0.0, md_threads_get());
    P("## COCO bbox metrics\n\n```\n");
    char line[256];
    for (int i = 0; i < 12; i++) {
        md_cocoeval_summary_line(r, i, line, sizeof line);
        P("%s\n", line);
    }
    P("```\n\n## AP per category\n\n| id | category | AP |\n|---:|---|---:|\n");
    for (int k = 0; k < r->K; k++) {
        int ci = md_coco_gt_cat_index(gt, r->cat_ids[k]);
        if (r->per_category_ap[k] < 0)
            P("| %lld | %s | - |\n", (long long)r->cat_ids[k], ci >= 0 ? gt->cat_names[ci] : "");
        else
            P("| %lld | %s | %.3f |\n", (long long)r->cat_ids[k], ci >= 0 ? gt->cat_names[ci] : "", r->per_category_ap[k]);
    }
    if (n_vis) {
        P("\n## Detections drawn (--vis %d)\n\nScore >= %.2f, at most %d boxes per image, colour = category.\n\n", n_vis,
          (double)a->vis_score, MD_VIS_MAX_BOXES);
        for (int i = 0; i < n_vis; i++) P("- [image %lld](vis_%lld.png)\n", (long long)vis_ids[i], (long long)vis_ids[i]);
    }
#undef P
    md_status s = md_write_atomic(path, t, strlen(t));
    free(t);
    return s;
}

int md_vis_scale(int width, int height) {
    int side = width > height ? width : height;
    return side > 0 && side < MD_VIS_MIN_SIDE ? (MD_VIS_MIN_SIDE + side - 1) / side : 1;
}

/* Paints img scaled by k (nearest) with its top-left corner at (ox, oy) of rgb[H][W][3]. */
static void paint_scaled(unsigned char *rgb, int W, int H, int ox, int oy, const md_image *img, int k) {
    for (int y = 0; y < img->height * k && oy + y < H; y++)
        for (int x = 0; x < img->width * k && ox + x < W; x++)
            memcpy(rgb + ((size_t)(oy + y) * W + ox + x) * 3, img->data + ((size_t)(y / k) * img->width + x / k) * 3, 3);
}

/* Draws image index of coco into path: the ground truth (left) next to the kept detections with score
 * >= score_min (right), each panel the image scaled by md_vis_scale so that tags do not hide small
 * objects; a title over each panel, which says so when no detection reaches score_min. */
static md_status write_vis(const char *path, const char *image_path, const md_detections *d, const md_coco *coco, int index,
                           const md_coco_gt *gt, float score_min, int allow_16bit) {
    md_image img;
    memset(&img, 0, sizeof img);
    md_status s = md_image_load(image_path, allow_16bit, &img);
    if (s) return md_error_prefix(s, "--vis");
    md_plot_box b[MD_VIS_MAX_BOXES], g[MD_VIS_MAX_BOXES];
    char text[MD_VIS_MAX_BOXES][80];
    int n = 0, ng = 0;
    for (int j = 0; j < d->n && n < MD_VIS_MAX_BOXES; j++) { /* d is sorted by decreasing score */
        if (d->scores[j] < score_min) break;
        int ci = md_coco_gt_cat_index(gt, md_coco_category_of_label(coco, d->labels[j]));
        if (ci < 0) continue;
        memcpy(b[n].box, d->boxes + 4 * j, sizeof b[n].box);
        b[n].color = ci;
        snprintf(text[n], sizeof text[n], "%.60s %.2f", gt->cat_names[ci][0] ? gt->cat_names[ci] : "?", (double)d->scores[j]);
        b[n].label = text[n];
        n++;
    }
    for (int i = 0; i < n / 2; i++) { /* lowest score first, so the best box ends on top */
        md_plot_box t = b[i];
        b[i] = b[n - 1 - i];
        b[n - 1 - i] = t;
    }
    const md_coco_image *im = &coco->images[index];
    for (int a = im->ann_begin; a < im->ann_begin + im->ann_count && ng < MD_VIS_MAX_BOXES; a++) {
        const md_coco_ann *an = &coco->anns[a];
        if (an->flags & MD_ANN_DROPPED) continue;
        int ci = md_coco_gt_cat_index(gt, an->category_id);
        memcpy(g[ng].box, an->box, sizeof g[ng].box);
        g[ng].color = ci < 0 ? 0 : ci;
        g[ng].label = ci >= 0 && gt->cat_names[ci][0] ? gt->cat_names[ci] : NULL;
        ng++;
    }
    int k = md_vis_scale(img.width, img.height), pw = img.width * k, ph = img.height * k;
    int W = 2 * pw + 3 * MD_VIS_GAP, H = MD_VIS_HEAD + ph + MD_VIS_GAP;
    unsigned char *rgb = malloc((size_t)W * H * 3);
    if (!rgb) {
        md_image_free(&img);
        return md_set_error(MD_ERR_NOMEM, "--vis: out of memory for a %dx%d picture", W, H);
    }
    memset(rgb, 255, (size_t)W * H * 3);
    static const unsigned char black[3] = {20, 20, 20};
    int ts = pw >= 480 ? 2 : 1;
    char title[96];
    snprintf(title, sizeof title, "ground truth (%d)", ng);
    md_plot_text(rgb, W, H, MD_VIS_GAP, (MD_VIS_HEAD - 9 * ts) / 2, title, ts, black);
    if (n) snprintf(title, sizeof title, "detections with score >= %.2f (%d)", (double)score_min, n);
    else snprintf(title, sizeof title, "no detection with score >= %.2f", (double)score_min);
    md_plot_text(rgb, W, H, 2 * MD_VIS_GAP + pw, (MD_VIS_HEAD - 9 * ts) / 2, title, ts, black);
    paint_scaled(rgb, W, H, MD_VIS_GAP, MD_VIS_HEAD, &img, k);
    paint_scaled(rgb, W, H, 2 * MD_VIS_GAP + pw, MD_VIS_HEAD, &img, k);
    md_plot_boxes(rgb, W, H, MD_VIS_GAP, MD_VIS_HEAD, k, g, ng, ts);
    md_plot_boxes(rgb, W, H, 2 * MD_VIS_GAP + pw, MD_VIS_HEAD, k, b, n, ts);
    s = md_plot_write_rgb_png(path, rgb, W, H);
    free(rgb);
    md_image_free(&img);
    return s;
}

void md_eval_weights_options_default(md_eval_weights_options *o) {
    memset(o, 0, sizeof *o);
    o->strict = 1;
    o->vis_score = MD_VIS_SCORE_DEFAULT;
}

/* --vis: the first vis images, each drawn as soon as it is inferred. */
typedef struct {
    const md_eval_weights_options *a;
    const md_coco *coco;
    const md_coco_gt *gt;
    const char *imgdir, *out_dir;
    int allow_16bit;
    int64_t *ids;
    int n;
} vis_ctx;

static md_status vis_image(void *ctx, int index, const md_detections *d) {
    vis_ctx *v = ctx;
    if (v->n >= v->a->vis) return MD_OK;
    const md_coco_image *ci = &v->coco->images[index];
    char ip[2 * MD_PATH_MAX + 2], path[MD_PATH_MAX + 32];
    snprintf(ip, sizeof ip, "%s%s%s", v->imgdir, v->imgdir[strlen(v->imgdir) - 1] == '/' ? "" : "/", ci->file_name);
    snprintf(path, sizeof path, "%s/vis_%lld.png", v->out_dir, (long long)ci->id);
    md_status s = write_vis(path, ip, d, v->coco, index, v->gt, v->a->vis_score, v->allow_16bit);
    if (!s) v->ids[v->n++] = ci->id;
    return s;
}

#define TRYG(x) do { if ((s = (x)) != MD_OK) goto done; } while (0)

/* The configuration to evaluate with: --config if given, else the resolved one a minidet checkpoint
 * stores (metadata minidet.config: model, data split, test settings as trained), else the defaults;
 * then the overrides. */
static md_status load_config(const md_eval_weights_options *a, md_config *cfg) {
    if (a->config) return md_config_load(cfg, a->config, a->n_overrides, a->overrides);
    md_st_file f;
    md_status s = md_st_load(a->weights, &f);
    if (s) return s;
    const char *text = md_st_meta(&f, "minidet.config");
    if (!text) { /* plain weights (converted torchvision ones): the defaults and the overrides */
        md_st_free(&f);
        md_log(MD_LOG_INFO, "%s: no stored configuration: using the defaults and the overrides (--config C.cfg gives the model's)",
               a->weights);
        return md_config_load(cfg, NULL, a->n_overrides, a->overrides);
    }
    char what[MD_PATH_MAX + 32];
    snprintf(what, sizeof what, "%s: stored config", a->weights);
    s = md_config_load_text(cfg, text, what, a->n_overrides, a->overrides);
    md_st_free(&f);
    if (!s) md_log(MD_LOG_INFO, "%s: using the configuration stored in the checkpoint (--config C.cfg overrides it)", a->weights);
    return s;
}

md_status md_eval_weights(const md_eval_weights_options *o) {
    const md_eval_weights_options *a = o;
    md_config cfg;
    md_detector det;
    md_coco coco;
    md_coco_gt *gt = NULL;
    md_coco_dets *dets = NULL;
    md_cocoeval_result res;
    md_arena arena;
    md_det_list dl;
    vis_ctx vis;
    uint8_t *bad = NULL;
    int have_det = 0, have_res = 0, created_out = 0;
    char out_dir[MD_PATH_MAX] = "";
    memset(&det, 0, sizeof det);
    memset(&coco, 0, sizeof coco);
    memset(&arena, 0, sizeof arena);
    memset(&dl, 0, sizeof dl);
    memset(&res, 0, sizeof res);
    memset(&vis, 0, sizeof vis);
    md_status s = MD_OK;
    if (!a->weights) {
        s = md_set_error(MD_ERR_ARG, "--weights is required");
        goto done;
    }
    TRYG(load_config(a, &cfg));
    md_threads_init(a->threads ? a->threads : cfg.run.threads);
    const char *ann = a->ann ? a->ann : cfg.data.val_ann, *imgdir = a->images ? a->images : cfg.data.val_images;
    if (!ann[0] || !imgdir[0]) {
        s = md_set_error(MD_ERR_ARG, "no evaluation data: give --ann and --images or set [data] val_ann / val_images");
        goto done;
    }
    /* output locations */
    char res_path[MD_PATH_MAX + 32], path[MD_PATH_MAX + 32];
    if (a->out_dir) snprintf(out_dir, sizeof out_dir, "%s", a->out_dir);
    else if (a->out && strrchr(a->out, '/')) snprintf(out_dir, sizeof out_dir, "%.*s", (int)(strrchr(a->out, '/') - a->out), a->out);
    else if (a->out) snprintf(out_dir, sizeof out_dir, ".");
    else {
        const char *sl = strrchr(a->weights, '/'), *base = sl ? sl + 1 : a->weights;
        const char *dot = strrchr(base, '.');
        snprintf(out_dir, sizeof out_dir, "%.*seval_%.*s", sl ? (int)(sl - a->weights + 1) : 0, a->weights,
                 dot ? (int)(dot - base) : (int)strlen(base), base);
    }
    if (a->out) snprintf(res_path, sizeof res_path, "%s", a->out);
    else snprintf(res_path, sizeof res_path, "%s/results.json", out_dir);

    /* model */
    TRYG(md_detector_create(&det, &cfg));
    have_det = 1;
    {
        /* a minidet checkpoint names its anchors: evaluating it with others is an error, not a silent bad AP */
        md_st_file f;
        if (md_st_load(a->weights, &f) == MD_OK) {
            const char *ct = md_st_meta(&f, "minidet.config");
            s = ct ? md_config_check_anchors(&cfg, ct, a->weights) : MD_OK;
            md_st_free(&f);
            if (s) goto done;
        }
    }
    md_load_report rep;
    TRYG(md_detector_load_weights(&det, a->weights, a->strict, &rep));
    char load_msg[2048];
    md_load_report_format(&rep, load_msg, sizeof load_msg);
    md_log(MD_LOG_INFO, "%s: %s", a->weights, load_msg);
    long iter = -1;
    char loss[32] = "";
    {
        md_st_file f;
        if (md_st_load(a->weights, &f) == MD_OK) {
            const char *v = md_st_meta(&f, "minidet.iteration");
            if (v) iter = atol(v);
            v = md_st_meta(&f, "minidet.box_loss");
            snprintf(loss, sizeof loss, "%s", v ? v : md_box_loss_name(cfg.roi_heads.box_loss));
            md_st_free(&f);
        }
    }

    /* data */
    md_data_options dop;
    md_data_options_from_config(&cfg, &dop);
    dop.val_ann = ann;
    dop.val_images = imgdir;
    dop.flip_prob = 0;
    dop.shuffle = 0;
    dop.skip_empty = 0;
    md_coco_options co;
    md_data_coco_options(&dop, &co);
    TRYG(md_coco_load(&coco, ann, &co));
    if (coco.num_classes > cfg.model.num_classes) {
        s = md_set_error(MD_ERR_SHAPE, "%s: %d categories need model.num_classes >= %d (label_map %s), the model has %d", ann,
                         coco.num_cats, coco.num_classes, coco.layout == MD_LABELS_COCO_ID ? "coco_id" : "contiguous",
                         cfg.model.num_classes);
        goto done;
    }
    TRYG(md_coco_gt_load(ann, &gt));
    bad = calloc((size_t)coco.num_images + 1, 1);
    if (!bad) {
        s = md_set_error(MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    int nbad = 0;
    TRYG(md_dataset_check(&coco, imgdir, dop.image_check, dop.allow_16bit, bad, &nbad));
    TRYG(md_coco_dets_create(gt, &dets));
    if (a->vis && !(vis.ids = calloc((size_t)a->vis, sizeof(int64_t)))) {
        s = md_set_error(MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    TRYG(md_arena_init(&arena, (size_t)2 << 30));
    /* the output directory only once model and data are good (a failed run leaves nothing behind); under
       mpirun rank 0 alone writes, the other ranks only run their share of the batches */
    int rank = md_dist_rank();
    if (rank == 0) {
        created_out = !md_path_exists(out_dir);
        TRYG(md_mkdir_p(out_dir));
    }

    /* inference */
    vis = (vis_ctx){a, &coco, gt, imgdir, out_dir, dop.allow_16bit, vis.ids, 0};
    md_eval_detector_options eo = {.coco = &coco, .image_dir = imgdir, .dopt = &dop, .exclude = bad,
                                   .max_images = a->max_images, .batch_size = cfg.test.batch_size, .label_map = &coco,
                                   .gt = gt, .arena_max = (size_t)32 << 30, .progress = 1,
                                   .on_image = a->vis && rank == 0 ? vis_image : NULL, .ctx = &vis,
                                   .shard_rank = rank, .shard_count = md_dist_size()};
    int nimg = 0;
    double secs = 0;
    TRYG(md_eval_detector(&det, &arena, &eo, &dl, &nimg, &secs));
    if (rank != 0) goto done;
    if (dl.n) TRYG(md_coco_dets_add(dets, dl.n, dl.image_id, dl.category_id, dl.xywh, dl.score));
    TRYG(md_coco_dets_save(dets, res_path));
    TRYG(md_cocoeval_run(gt, dets, &res));
    have_res = 1;
    md_cocoeval_print_summary(&res, stdout);
    fflush(stdout);
    snprintf(path, sizeof path, "%s/eval.json", out_dir);
    /* no training time nor training img/s: the evaluation's speed is not the run's (./eval RUN_DIR of an
       unfinished run took it for the training speed) */
    TRYG(md_eval_json_write(path, &res, gt, iter, loss, NAN, NAN));
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    TRYG(write_report(path, a, &cfg, &res, gt, nimg, dl.n, secs, load_msg, vis.ids, vis.n));
    if (vis.n) md_log(MD_LOG_INFO, "--vis: %d images drawn (%s/vis_<image id>.png, score >= %.2f)", vis.n, out_dir, (double)a->vis_score);
    md_log(MD_LOG_INFO, "%d images in %.1f s (%.2f img/s), %zu detections -> %s; %s/eval.json, %s/report.md", nimg, secs,
           nimg / (secs > 0 ? secs : 1e-9), dl.n, res_path, out_dir, out_dir);
done:
    if (have_res) md_cocoeval_result_free(&res);
    md_coco_dets_free(dets);
    md_coco_gt_free(gt);
    md_coco_free(&coco);
    free(bad);
    free(vis.ids);
    md_arena_free(&arena);
    if (have_det) md_detector_free(&det);
    md_det_list_free(&dl);
    if (s && created_out) rmdir(out_dir); /* only if still empty */
    return s;
}
