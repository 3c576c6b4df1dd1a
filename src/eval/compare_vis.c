/* compare_vis.c — `./eval RUN_DIR ... --vis N`: the same val images, ground truth
 * next to each run's detections (see md_compare_vis in compare.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/arena.h"
#include "minidet/coco.h"
#include "minidet/compare.h"
#include "minidet/config.h"
#include "minidet/data.h"
#include "minidet/evaluate.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/plot.h"

enum { VIS_CELL = 256, VIS_GAP = 10, VIS_TS = 2 };

typedef struct {
    int n;
    md_plot_box *b;
} vis_list;

static char *join2(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, *a && a[strlen(a) - 1] != '/' ? "/" : "", b);
    return p;
}

static md_status load_run_config(const md_run_summary *r, md_config *c) {
    char *cf = join2(r->dir, "config.cfg");
    if (!cf) return md_set_error(MD_ERR_NOMEM, "out of memory");
    md_config_defaults(c);
    md_status st = md_config_load(c, cf, 0, NULL);
    if (st) md_error_prefix(st, "run %s (--vis needs its config.cfg)", r->dir);
    free(cf);
    return st;
}

static int cat_index(const md_coco *c, int category_id) {
    for (int k = 0; k < c->num_cats; k++)
        if (c->cats[k].id == category_id) return k;
    return 0;
}

/* md_eval_detector's per-image step: the run's boxes of image index (score >= score_min), coloured by category. */
typedef struct {
    vis_list *col; /* the run's column: lists of image i at col[i * stride] */
    int stride;
    float score_min;
    const md_coco *coco;
} vis_ctx;

static md_status vis_image(void *ctx, int index, const md_detections *d) {
    vis_ctx *v = ctx;
    vis_list *l = &v->col[(size_t)index * v->stride];
    l->b = calloc(d->n ? (size_t)d->n : 1, sizeof(md_plot_box));
    if (!l->b) return md_set_error(MD_ERR_NOMEM, "--vis: out of memory");
    for (int j = 0; j < d->n; j++) {
        if (d->scores[j] < v->score_min) continue;
        memcpy(l->b[l->n].box, d->boxes + 4 * j, sizeof(float) * 4);
        l->b[l->n++].color = cat_index(v->coco, md_coco_category_of_label(v->coco, d->labels[j]));
    }
    return MD_OK;
}

static void fill_rect(unsigned char *rgb, int W, int H, int x0, int y0, int w, int h, const unsigned char col[3]) {
    for (int y = y0; y < y0 + h && y < H; y++)
        for (int x = x0; x < x0 + w && x < W; x++)
            if (x >= 0 && y >= 0) memcpy(rgb + ((size_t)y * W + x) * 3, col, 3);
}

/* The legend under the images: the score threshold, then one entry per category (a filled
 * swatch of its colour and its name), wrapped to the sheet's width, which is narrow for one
 * or two runs. Returns its height; draws only when rgb is not NULL. */
static int legend(unsigned char *rgb, int W, int H, int y0, const md_coco *coco, float score_min) {
    static const unsigned char black[3] = {20, 20, 20};
    const int line = 9 * VIS_TS + 6, sw = 7 * VIS_TS;
    char t[160];
    snprintf(t, sizeof t, "detections with score >= %.2f", score_min);
    while (md_plot_text_width(t, VIS_TS) > W - 2 * VIS_GAP && strlen(t) > 4) t[strlen(t) - 1] = 0;
    if (rgb) md_plot_text(rgb, W, H, VIS_GAP, y0, t, VIS_TS, black);
    int x = VIS_GAP, y = y0 + line;
    for (int c = 0; c < coco->num_cats; c++) {
        snprintf(t, sizeof t, "%s", coco->cats[c].name);
        while (md_plot_text_width(t, VIS_TS) > W - 2 * VIS_GAP - sw - 6 && strlen(t) > 4) t[strlen(t) - 1] = 0;
        int w = sw + 6 + md_plot_text_width(t, VIS_TS);
        if (x > VIS_GAP && x + w > W - VIS_GAP) { x = VIS_GAP; y += line; }
        if (rgb) {
            unsigned char col[3];
            md_plot_color(c, col);
            fill_rect(rgb, W, H, x, y, sw, sw, col);
            md_plot_text(rgb, W, H, x + sw + 6, y, t, VIS_TS, black);
        }
        x += w + 16;
    }
    return y + line - y0;
}

/* Paints image img scaled by k (nearest) at (ox, oy), then its boxes. */
static void paint_panel(unsigned char *rgb, int W, int H, int ox, int oy, const md_image *img, int k, const vis_list *l) {
    for (int y = 0; y < img->height * k; y++)
        for (int x = 0; x < img->width * k; x++) {
            int X = ox + x, Y = oy + y;
            if (X < W && Y < H) memcpy(rgb + ((size_t)Y * W + X) * 3, img->data + ((size_t)(y / k) * img->width + x / k) * 3, 3);
        }
    md_plot_boxes(rgb, W, H, ox, oy, k, l->b, l->n, 1);
}

md_status md_compare_vis(const md_run_summary *runs, int n, int n_images, float score_min, const char *path) {
    if (n < 1 || n > MD_COMPARE_MAX_RUNS || n_images < 1 || n_images > 64)
        return md_set_error(MD_ERR_ARG, "--vis: %d runs, %d images (1..%d runs, 1..64 images)", n, n_images, MD_COMPARE_MAX_RUNS);
    md_config cfg0;
    md_status st = load_run_config(&runs[0], &cfg0);
    if (st) return st;
    if (!cfg0.data.val_ann[0] || !cfg0.data.val_images[0])
        return md_set_error(MD_ERR_ARG, "run %s: config.cfg has no data.val_ann / data.val_images (--vis draws val images)", runs[0].dir);
    md_data_options o0;
    md_data_options_from_config(&cfg0, &o0);
    md_coco_options co;
    md_data_coco_options(&o0, &co);
    md_coco coco;
    memset(&coco, 0, sizeof coco);
    if ((st = md_coco_load(&coco, cfg0.data.val_ann, &co))) return st;

    int m = n_images < coco.num_images ? n_images : coco.num_images;
    md_image img[64];
    memset(img, 0, sizeof img);
    vis_list *lists = calloc((size_t)m * (n + 1), sizeof(vis_list)); /* [image][column] */
    unsigned char *rgb = NULL;
    md_arena arena;
    memset(&arena, 0, sizeof arena);
    if (!lists) { st = md_set_error(MD_ERR_NOMEM, "--vis: out of memory"); goto done; }
    for (int i = 0; i < m; i++) {
        char *p = join2(cfg0.data.val_images, coco.images[i].file_name);
        if (!p) { st = md_set_error(MD_ERR_NOMEM, "--vis: out of memory"); goto done; }
        st = md_image_load(p, o0.allow_16bit, &img[i]);
        free(p);
        if (st) goto done;
        /* column 0: the ground truth (non-crowd, usable boxes) */
        const md_coco_image *ci = &coco.images[i];
        vis_list *l = &lists[(size_t)i * (n + 1)];
        l->b = calloc(ci->ann_count ? (size_t)ci->ann_count : 1, sizeof(md_plot_box));
        if (!l->b) { st = md_set_error(MD_ERR_NOMEM, "--vis: out of memory"); goto done; }
        for (int a = ci->ann_begin; a < ci->ann_begin + ci->ann_count; a++) {
            if (coco.anns[a].flags & MD_ANN_DROPPED) continue;
            memcpy(l->b[l->n].box, coco.anns[a].box, sizeof(float) * 4);
            l->b[l->n++].color = cat_index(&coco, coco.anns[a].category_id);
        }
    }
    if ((st = md_arena_init(&arena, (size_t)3 << 30))) goto done;
    /* columns 1..n: each run's detections from its last checkpoint */
    for (int r = 0; r < n; r++) {
        md_config cfg;
        if ((st = load_run_config(&runs[r], &cfg))) goto done;
        if (strcmp(cfg.data.val_ann, cfg0.data.val_ann))
            md_log(MD_LOG_WARN, "run %s: its val split (%s) differs from %s's; --vis shows %s", runs[r].dir, cfg.data.val_ann,
                   runs[0].dir, cfg0.data.val_ann);
        char *w = join2(runs[r].dir, "last.safetensors");
        if (!w) { st = md_set_error(MD_ERR_NOMEM, "--vis: out of memory"); goto done; }
        md_detector det;
        memset(&det, 0, sizeof det);
        st = md_detector_create(&det, &cfg);
        if (!st) st = md_detector_load_weights(&det, w, 1, NULL);
        free(w);
        if (st) { md_detector_free(&det); md_error_prefix(st, "run %s (--vis)", runs[r].dir); goto done; }
        md_data_options o;
        md_data_options_from_config(&cfg, &o);
        /* one image per batch, each image's boxes into its cell of column 1 + r */
        vis_ctx vc = {&lists[1 + r], n + 1, score_min, &coco};
        md_eval_detector_options eo = {.coco = &coco, .image_dir = cfg0.data.val_images, .dopt = &o, .max_images = m,
                                       .batch_size = 1, .label_map = &coco, .on_image = vis_image, .ctx = &vc};
        st = md_eval_detector(&det, &arena, &eo, NULL, NULL, NULL);
        md_detector_free(&det);
        if (st) { md_error_prefix(st, "run %s (--vis)", runs[r].dir); goto done; }
    }

    /* the sheet: a title row, m rows of (n + 1) cells, a legend row */
    int cell_w = 0, cell_h = 0, k[64];
    for (int i = 0; i < m; i++) {
        int side = img[i].width > img[i].height ? img[i].width : img[i].height;
        k[i] = side < VIS_CELL ? VIS_CELL / side : 1;
        if (img[i].width * k[i] > cell_w) cell_w = img[i].width * k[i];
        if (img[i].height * k[i] > cell_h) cell_h = img[i].height * k[i];
    }
    int head = 9 * VIS_TS + 2 * VIS_GAP;
    int W = (n + 1) * (cell_w + VIS_GAP) + VIS_GAP;
    int foot = legend(NULL, W, 0, 0, &coco, score_min) + 2 * VIS_GAP;
    int H = head + m * (cell_h + VIS_GAP) + foot;
    if (W > 16384 || H > 16384) { st = md_set_error(MD_ERR_ARG, "--vis: a %dx%d sheet is too large (fewer images?)", W, H); goto done; }
    rgb = malloc((size_t)W * H * 3);
    if (!rgb) { st = md_set_error(MD_ERR_NOMEM, "--vis: out of memory for a %dx%d sheet", W, H); goto done; }
    memset(rgb, 255, (size_t)W * H * 3);
    static const unsigned char black[3] = {20, 20, 20};
    for (int c = 0; c <= n; c++) {
        char t[128];
        if (c == 0) snprintf(t, sizeof t, "ground truth");
        else snprintf(t, sizeof t, "%s", runs[c - 1].name);
        int x = VIS_GAP + c * (cell_w + VIS_GAP);
        while (md_plot_text_width(t, VIS_TS) > cell_w && strlen(t) > 4) t[strlen(t) - 1] = 0;
        md_plot_text(rgb, W, H, x, VIS_GAP, t, VIS_TS, black);
    }
    for (int i = 0; i < m; i++)
        for (int c = 0; c <= n; c++)
            paint_panel(rgb, W, H, VIS_GAP + c * (cell_w + VIS_GAP), head + i * (cell_h + VIS_GAP), &img[i], k[i],
                        &lists[(size_t)i * (n + 1) + c]);
    legend(rgb, W, H, H - foot + VIS_GAP, &coco, score_min);
    st = md_plot_write_rgb_png(path, rgb, W, H);
done:
    for (int i = 0; lists && i < m * (n + 1); i++) free(lists[i].b);
    free(lists);
    for (int i = 0; i < m; i++) md_image_free(&img[i]);
    free(rgb);
    md_arena_free(&arena);
    md_coco_free(&coco);
    return st;
}
