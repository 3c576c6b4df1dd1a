/* infer_eval.c — `./eval --weights W.safetensors --config C.cfg [options] [section.key=value ...]`:
 * runs the detector over a COCO split (batched, with a progress line: images/s and ETA), writes the
 * detections as a COCO results file, evaluates them with the pycocotools-exact evaluator, prints the
 * 12-line summary and writes eval.json (docs/FORMATS.md) and a short report.md next to the results.
 *
 * Options: --ann GT.json --images DIR (default: [data] val_ann / val_images), --out R.json (default
 * OUT_DIR/results.json), --out-dir DIR (default: the directory of --out, else eval_<weights name> next
 * to the weights), --strict 0|1 (default 1; 0 loads what matches and initialises the rest, with a
 * report), --max-images N (first N images only), --threads N, --quiet.
 *
 * --vis N (0..1000, default 0) draws the detections of the first N evaluated images into
 * OUT_DIR/vis_<image id>.png: the original image at its own size, at most MD_VIS_MAX_BOXES boxes
 * per image with score >= --vis-score S (default 0.3; 0 draws the top MD_VIS_MAX_BOXES whatever
 * their score), each outlined in its category's colour with a tag "<category name> <score>"
 * (names from the ground-truth json), the highest score drawn last (on top). report.md links them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "minidet/coco.h"
#include "minidet/cocoeval.h"
#include "minidet/data.h"
#include "minidet/fs.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/plot.h"
#include "minidet/safetensors.h"
#include "minidet/threads.h"

enum { MD_VIS_MAX_IMAGES = 1000, MD_VIS_MAX_BOXES = 30 };

typedef struct {
    const char *weights, *config, *ann, *images, *out, *out_dir;
    int strict, max_images, threads, n_over, vis;
    float vis_score;
    char **over;
} ev_args;

static md_status parse(int argc, char **argv, ev_args *a) {
    memset(a, 0, sizeof *a);
    a->strict = 1;
    a->vis_score = 0.3f;
    a->over = calloc((size_t)argc + 1, sizeof(char *));
    if (!a->over) return md_set_error(MD_ERR_NOMEM, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (!strcmp(o, "--weights")) dst = &a->weights;
        else if (!strcmp(o, "--config")) dst = &a->config;
        else if (!strcmp(o, "--ann")) dst = &a->ann;
        else if (!strcmp(o, "--images")) dst = &a->images;
        else if (!strcmp(o, "--out")) dst = &a->out;
        else if (!strcmp(o, "--out-dir")) dst = &a->out_dir;
        if (dst) {
            if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
            *dst = argv[++i];
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            md_log_set_level(MD_LOG_WARN);
        } else if (!strcmp(o, "--vis") || !strcmp(o, "--vis-score")) {
            if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
            const char *v = argv[++i];
            char *end;
            errno = 0;
            if (!strcmp(o, "--vis")) {
                long n = strtol(v, &end, 10);
                if (!*v || *end || errno || n < 0 || n > MD_VIS_MAX_IMAGES)
                    return md_set_error(MD_ERR_ARG, "--vis: '%s' is not a number of images (0..%d)", v, MD_VIS_MAX_IMAGES);
                a->vis = (int)n;
            } else {
                double x = strtod(v, &end);
                if (!*v || *end || errno || !(x >= 0 && x <= 1))
                    return md_set_error(MD_ERR_ARG, "--vis-score: '%s' is not a score in [0, 1]", v);
                a->vis_score = (float)x;
            }
        } else if (!strcmp(o, "--strict") || !strncmp(o, "--strict=", 9) || !strcmp(o, "--max-images") ||
                   !strcmp(o, "--threads")) {
            const char *v = o[8] == '=' ? o + 9 : NULL;
            if (!v) {
                if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
                v = argv[++i];
            }
            if (!strncmp(o, "--strict", 8)) {
                if (!strcmp(v, "1") || !strcmp(v, "true")) a->strict = 1;
                else if (!strcmp(v, "0") || !strcmp(v, "false")) a->strict = 0;
                else return md_set_error(MD_ERR_ARG, "--strict: '%s' is not 0/1/true/false", v);
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                if (!*v || *end || n < 0 || n > 100000000) return md_set_error(MD_ERR_ARG, "%s: '%s' is not a count", o, v);
                if (!strcmp(o, "--threads")) a->threads = (int)n;
                else a->max_images = (int)n;
            }
        } else if (o[0] == '-' && o[1] == '-') {
            return md_set_error(MD_ERR_ARG, "unknown option %s (see ./eval --help)", o);
        } else if (strchr(o, '=') && strchr(o, '.')) {
            a->over[a->n_over++] = argv[i];
        } else {
            return md_set_error(MD_ERR_ARG, "unexpected argument '%s' (overrides look like section.key=value)", o);
        }
    }
    if (!a->weights) return md_set_error(MD_ERR_ARG, "--weights is required");
    return MD_OK;
}

static double mean_valid(const double *v, size_t n) {
    double s = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] > -1) {
            s += v[i];
            c++;
        }
    return c ? s / (double)c : -1;
}

/* eval.json as docs/FORMATS.md (iter and loss from the checkpoint metadata when present). */
static md_status write_eval_json(const char *path, const md_cocoeval_result *r, const md_coco_gt *gt, long iter,
                                 const char *loss, double ips) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    cJSON_AddNumberToObject(j, "iter", (double)iter);
    cJSON_AddStringToObject(j, "loss", loss);
    cJSON_AddNumberToObject(j, "img_per_sec", ips);
    cJSON *st = cJSON_AddArrayToObject(j, "stats");
    for (int i = 0; i < 12; i++) cJSON_AddItemToArray(st, cJSON_CreateNumber(r->stats[i]));
    cJSON *pc = cJSON_AddObjectToObject(j, "per_category_ap"), *nm = cJSON_AddObjectToObject(j, "category_names");
    char key[32];
    for (int k = 0; k < r->K; k++) {
        snprintf(key, sizeof key, "%lld", (long long)r->cat_ids[k]);
        cJSON_AddNumberToObject(pc, key, r->per_category_ap[k]);
        int ci = md_coco_gt_cat_index(gt, r->cat_ids[k]);
        cJSON_AddStringToObject(nm, key, ci >= 0 ? gt->cat_names[ci] : "");
    }
    int m = r->M - 1;
    size_t nb = (size_t)r->R * (size_t)(r->K ? r->K : 1);
    double *buf = malloc(sizeof(double) * nb);
    if (!buf) {
        cJSON_Delete(j);
        return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    }
    cJSON *api = cJSON_AddArrayToObject(j, "ap_per_iou");
    for (int t = 0; t < r->T; t++) {
        size_t c = 0;
        for (int ri = 0; ri < r->R; ri++)
            for (int k = 0; k < r->K; k++) buf[c++] = r->precision[md_coco_pidx(r, t, ri, k, 0, m)];
        cJSON_AddItemToArray(api, cJSON_CreateNumber(mean_valid(buf, c)));
    }
    cJSON *pr = cJSON_AddObjectToObject(j, "pr");
    static const int ts[2] = {0, 5};
    static const char *tn[2] = {"0.50", "0.75"};
    for (int q = 0; q < 2; q++) {
        cJSON *arr = cJSON_AddArrayToObject(pr, tn[q]);
        for (int ri = 0; ri < r->R; ri++) {
            for (int k = 0; k < r->K; k++) buf[k] = r->precision[md_coco_pidx(r, ts[q], ri, k, 0, m)];
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(mean_valid(buf, (size_t)r->K)));
        }
    }
    free(buf);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return md_set_error(MD_ERR_NOMEM, "eval.json: out of memory");
    md_status s = md_write_atomic(path, txt, strlen(txt));
    free(txt);
    return s;
}

static md_status write_report(const char *path, const ev_args *a, const md_config *cfg, const md_cocoeval_result *r,
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

typedef struct {
    int64_t *img, *cat;
    double *xywh, *score;
    size_t n, cap;
} det_list;

static md_status det_push(det_list *d, int64_t img, int64_t cat, const float *b, float score) {
    if (d->n == d->cap) {
        size_t c = d->cap ? 2 * d->cap : 4096;
        int64_t *i2 = realloc(d->img, c * sizeof(int64_t));
        if (i2) d->img = i2;
        int64_t *c2 = realloc(d->cat, c * sizeof(int64_t));
        if (c2) d->cat = c2;
        double *x2 = realloc(d->xywh, c * 4 * sizeof(double));
        if (x2) d->xywh = x2;
        double *s2 = realloc(d->score, c * sizeof(double));
        if (s2) d->score = s2;
        if (!i2 || !c2 || !x2 || !s2) return md_set_error(MD_ERR_NOMEM, "detections: out of memory");
        d->cap = c;
    }
    d->img[d->n] = img;
    d->cat[d->n] = cat;
    d->xywh[4 * d->n] = b[0];
    d->xywh[4 * d->n + 1] = b[1];
    d->xywh[4 * d->n + 2] = (double)b[2] - b[0];
    d->xywh[4 * d->n + 3] = (double)b[3] - b[1];
    d->score[d->n] = score;
    d->n++;
    return MD_OK;
}

/* Draws one image's detections (kept ones only: a class the split has) into path; see the top comment. */
static md_status write_vis(const char *path, const char *image_path, const md_detections *d, const md_coco *coco,
                           const md_coco_gt *gt, float score_min, int allow_16bit) {
    md_image img;
    memset(&img, 0, sizeof img);
    md_status s = md_image_load(image_path, allow_16bit, &img);
    if (s) return md_error_prefix(s, "--vis");
    md_plot_box b[MD_VIS_MAX_BOXES];
    char text[MD_VIS_MAX_BOXES][80];
    int n = 0;
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
    int side = img.width > img.height ? img.width : img.height;
    md_plot_boxes(img.data, img.width, img.height, 0, 0, 1, b, n, side >= 480 ? 2 : 1);
    s = md_plot_write_rgb_png(path, img.data, img.width, img.height);
    md_image_free(&img);
    return s;
}

#define TRYG(x) do { if ((s = (x)) != MD_OK) goto done; } while (0)

int md_eval_weights_main(int argc, char **argv) {
    ev_args a;
    md_config cfg;
    md_detector det;
    md_coco coco;
    md_coco_gt *gt = NULL;
    md_coco_dets *dets = NULL;
    md_cocoeval_result res;
    md_batch batch;
    md_arena arena;
    det_list dl;
    float *scratch = NULL;
    size_t scratch_cap = 0;
    int64_t *vis_ids = NULL;
    int n_vis = 0;
    double vis_secs = 0;
    uint8_t *bad = NULL;
    int have_det = 0, have_res = 0, created_out = 0;
    char out_dir[MD_PATH_MAX] = "";
    memset(&det, 0, sizeof det);
    memset(&coco, 0, sizeof coco);
    memset(&batch, 0, sizeof batch);
    memset(&arena, 0, sizeof arena);
    memset(&dl, 0, sizeof dl);
    memset(&res, 0, sizeof res);
    md_status s = parse(argc, argv, &a);
    if (s) goto done;
    TRYG(md_config_load(&cfg, a.config, a.n_over, a.over));
    md_threads_init(a.threads ? a.threads : cfg.run.threads);
    const char *ann = a.ann ? a.ann : cfg.data.val_ann, *imgdir = a.images ? a.images : cfg.data.val_images;
    if (!ann[0] || !imgdir[0]) {
        s = md_set_error(MD_ERR_ARG, "no evaluation data: give --ann and --images or set [data] val_ann / val_images");
        goto done;
    }
    /* output locations */
    char res_path[MD_PATH_MAX + 32], path[MD_PATH_MAX + 32];
    if (a.out_dir) snprintf(out_dir, sizeof out_dir, "%s", a.out_dir);
    else if (a.out && strrchr(a.out, '/')) snprintf(out_dir, sizeof out_dir, "%.*s", (int)(strrchr(a.out, '/') - a.out), a.out);
    else if (a.out) snprintf(out_dir, sizeof out_dir, ".");
    else {
        const char *sl = strrchr(a.weights, '/'), *base = sl ? sl + 1 : a.weights;
        const char *dot = strrchr(base, '.');
        snprintf(out_dir, sizeof out_dir, "%.*seval_%.*s", sl ? (int)(sl - a.weights + 1) : 0, a.weights,
                 dot ? (int)(dot - base) : (int)strlen(base), base);
    }
    if (a.out) snprintf(res_path, sizeof res_path, "%s", a.out);
    else snprintf(res_path, sizeof res_path, "%s/results.json", out_dir);

    /* model */
    TRYG(md_detector_create(&det, &cfg));
    have_det = 1;
    {
        /* a minidet checkpoint names its anchors: evaluating it with others is an error, not a silent bad AP */
        md_st_file f;
        if (md_st_load(a.weights, &f) == MD_OK) {
            const char *ct = md_st_meta(&f, "minidet.config");
            s = ct ? md_config_check_anchors(&cfg, ct, a.weights) : MD_OK;
            md_st_free(&f);
            if (s) goto done;
        }
    }
    md_load_report rep;
    TRYG(md_detector_load_weights(&det, a.weights, a.strict, &rep));
    char load_msg[2048];
    md_load_report_format(&rep, load_msg, sizeof load_msg);
    md_log(MD_LOG_INFO, "%s: %s", a.weights, load_msg);
    long iter = -1;
    char loss[32] = "";
    {
        md_st_file f;
        if (md_st_load(a.weights, &f) == MD_OK) {
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
    int nimg = coco.num_images - nbad;
    if (a.max_images && a.max_images < nimg) nimg = a.max_images;
    TRYG(md_coco_dets_create(gt, &dets));
    if (a.vis && !(vis_ids = calloc((size_t)a.vis, sizeof(int64_t)))) {
        s = md_set_error(MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    TRYG(md_arena_init(&arena, (size_t)2 << 30));
    /* the output directory only once model and data are good (a failed run leaves nothing behind) */
    struct stat osb;
    created_out = stat(out_dir, &osb) != 0;
    TRYG(md_mkdir_p(out_dir));

    /* inference */
    int bs = cfg.test.batch_size < 1 ? 1 : (cfg.test.batch_size > MD_MAX_BATCH ? MD_MAX_BATCH : cfg.test.batch_size);
    int idx[MD_MAX_BATCH];
    uint8_t flips[MD_MAX_BATCH] = {0};
    int done_imgs = 0, next = 0, tty = isatty(2);
    double t0 = md_now(), last_print = 0;
    md_log(MD_LOG_INFO, "evaluating %d images of %s (batch %d, %d threads)", nimg, ann, bs, md_threads_get());
    while (done_imgs < nimg) {
        int n = 0;
        while (n < bs && done_imgs + n < nimg && next < coco.num_images) {
            if (!bad[next]) idx[n++] = next;
            next++;
        }
        if (!n) break;
        TRYG(md_batch_build(&batch, &coco, imgdir, idx, flips, n, &dop, &scratch, &scratch_cap));
        int sizes[2 * MD_MAX_BATCH], orig[2 * MD_MAX_BATCH];
        for (int k = 0; k < n; k++) {
            sizes[2 * k] = batch.info[k].h;
            sizes[2 * k + 1] = batch.info[k].w;
            orig[2 * k] = batch.info[k].orig_h;
            orig[2 * k + 1] = batch.info[k].orig_w;
        }
        md_detections out[MD_MAX_BATCH];
        for (;;) {
            md_arena_reset(&arena);
            s = md_detector_infer(&det, &arena, batch.images, n, batch.height, batch.width, sizes, orig, out);
            if (s != MD_ERR_NOMEM || arena.cap >= ((size_t)32 << 30)) break;
            size_t c = arena.cap * 2;
            md_arena_free(&arena);
            TRYG(md_arena_init(&arena, c));
        }
        if (s) goto done;
        for (int k = 0; k < n; k++)
            for (int d = 0; d < out[k].n; d++) {
                int cat = md_coco_category_of_label(&coco, out[k].labels[d]);
                if (cat < 0 || md_coco_gt_cat_index(gt, cat) < 0) continue; /* a class the split does not have */
                TRYG(det_push(&dl, batch.info[k].image_id, cat, out[k].boxes + 4 * d, out[k].scores[d]));
            }
        for (int k = 0; k < n && n_vis < a.vis; k++) { /* --vis: drawn now, its time kept out of the timing */
            double tv = md_now();
            const md_coco_image *ci = &coco.images[batch.info[k].index];
            char ip[2 * MD_PATH_MAX + 2];
            snprintf(ip, sizeof ip, "%s%s%s", imgdir, imgdir[strlen(imgdir) - 1] == '/' ? "" : "/", ci->file_name);
            snprintf(path, sizeof path, "%s/vis_%lld.png", out_dir, (long long)batch.info[k].image_id);
            TRYG(write_vis(path, ip, &out[k], &coco, gt, a.vis_score, dop.allow_16bit));
            vis_ids[n_vis++] = batch.info[k].image_id;
            vis_secs += md_now() - tv;
        }
        done_imgs += n;
        double now = md_now() - t0;
        if (md_log_get_level() <= MD_LOG_INFO && (now - last_print > (tty ? 0.5 : 10.0) || done_imgs == nimg)) {
            double ips = done_imgs / (now > 0 ? now : 1e-9);
            fprintf(stderr, "%s[eval] %d/%d images, %.2f img/s, ETA %.0f s%s", tty ? "\r" : "", done_imgs, nimg, ips,
                    (nimg - done_imgs) / (ips > 0 ? ips : 1e-9), tty && done_imgs < nimg ? "" : "\n");
            last_print = now;
        }
    }
    double secs = md_now() - t0 - vis_secs;
    if (dl.n) TRYG(md_coco_dets_add(dets, dl.n, dl.img, dl.cat, dl.xywh, dl.score));
    TRYG(md_coco_dets_save(dets, res_path));
    TRYG(md_cocoeval_run(gt, dets, &res));
    have_res = 1;
    md_cocoeval_print_summary(&res, stdout);
    fflush(stdout);
    snprintf(path, sizeof path, "%s/eval.json", out_dir);
    TRYG(write_eval_json(path, &res, gt, iter, loss, nimg / (secs > 0 ? secs : 1e-9)));
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    TRYG(write_report(path, &a, &cfg, &res, gt, nimg, dl.n, secs, load_msg, vis_ids, n_vis));
    if (n_vis) md_log(MD_LOG_INFO, "--vis: %d images drawn (%s/vis_<image id>.png, score >= %.2f)", n_vis, out_dir, (double)a.vis_score);
    md_log(MD_LOG_INFO, "%d images in %.1f s (%.2f img/s), %zu detections -> %s; %s/eval.json, %s/report.md", nimg, secs,
           nimg / (secs > 0 ? secs : 1e-9), dl.n, res_path, out_dir, out_dir);
done:
    if (have_res) md_cocoeval_result_free(&res);
    md_coco_dets_free(dets);
    md_coco_gt_free(gt);
    md_coco_free(&coco);
    md_batch_free(&batch);
    free(scratch);
    free(bad);
    free(vis_ids);
    md_arena_free(&arena);
    if (have_det) md_detector_free(&det);
    free(dl.img);
    free(dl.cat);
    free(dl.xywh);
    free(dl.score);
    free(a.over);
    if (s) {
        if (created_out) rmdir(out_dir); /* only if still empty */
        fprintf(stderr, "minidet: %s\n", md_last_error());
        return 1;
    }
    return 0;
}
