/* test_shapes.c — synthetic shapes dataset: exact tight boxes, pixels written
 * losslessly, valid COCO JSON through the loader, determinism, variety; the
 * tool_make_shapes CLI. */
#include "minidet/coco.h"
#include "minidet/data.h"
#include "minidet/shapes.h"
#include "testutil.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmp[64];

/* Each box is the tight box of the pixels its shape owns, those pixels carry the
   shape's colour (within the noise), and nothing outside them does so exactly. */
static void test_boxes_are_tight(void) {
    md_shapes_options o;
    md_shapes_options_default(&o);
    o.seed = 5;
    int W = o.width, H = o.height, cats[MD_SHAPE_NUM_CLASSES + 1] = {0}, small = 0, total = 0;
    uint8_t *rgb = malloc((size_t)W * H * 3), *owner = malloc((size_t)W * H);
    for (int idx = 0; idx < 40; idx++) {
        md_shape sh[MD_SHAPES_MAX];
        int n;
        CHECK_OK(md_shapes_render(&o, idx, rgb, owner, sh, &n));
        CHECK(n >= o.min_shapes && n <= o.max_shapes, "image %d: %d shapes", idx, n);
        for (int j = 0; j < n; j++) {
            int x0 = W, y0 = H, x1 = 0, y1 = 0, area = 0, off = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    if (owner[y * W + x] != j + 1) continue;
                    if (x < x0) x0 = x;
                    if (y < y0) y0 = y;
                    if (x + 1 > x1) x1 = x + 1;
                    if (y + 1 > y1) y1 = y + 1;
                    area++;
                    for (int c = 0; c < 3; c++) {
                        int d = abs((int)rgb[3 * (y * W + x) + c] - (int)sh[j].color[c]);
                        int clipped = rgb[3 * (y * W + x) + c] == 0 || rgb[3 * (y * W + x) + c] == 255;
                        if (d > o.noise && !clipped) off++;
                    }
                }
            CHECK(sh[j].x0 == x0 && sh[j].y0 == y0 && sh[j].x1 == x1 && sh[j].y1 == y1 && sh[j].area == area,
                  "image %d shape %d: box [%d %d %d %d] area %d vs pixels [%d %d %d %d] %d", idx, j, sh[j].x0, sh[j].y0, sh[j].x1, sh[j].y1,
                  sh[j].area, x0, y0, x1, y1, area);
            CHECK(off == 0, "image %d shape %d: %d pixel channels not its colour", idx, j, off);
            CHECK(area >= 12, "visible area %d", area);
            /* each edge row/column of the box has a pixel of the shape (tightness, from the image side) */
            int top = 0, bot = 0, left = 0, right = 0;
            for (int x = x0; x < x1; x++) top |= owner[y0 * W + x] == j + 1, bot |= owner[(y1 - 1) * W + x] == j + 1;
            for (int y = y0; y < y1; y++) left |= owner[y * W + x0] == j + 1, right |= owner[y * W + x1 - 1] == j + 1;
            CHECK(top && bot && left && right, "box edges touch the shape");
            cats[sh[j].category]++;
            small += (x1 - x0) * (y1 - y0) < 16 * 16;
            total++;
        }
    }
    for (int k = 1; k <= MD_SHAPE_NUM_CLASSES; k++) CHECK(cats[k] > 5, "category %s appears %d times", md_shape_names[k], cats[k]);
    CHECK(small > total / 10, "small objects: %d of %d", small, total);
    free(rgb);
    free(owner);
}

/* --obj-size / --bar-thick: bars are exactly bar_thick_min..max thick (when unoccluded along their
   thickness), other shapes never smaller than 0.6 x min_size on a side (their nominal size times the
   0.6-1.4 jitter), none larger than 1.4 x max_size_frac x side; defaults unchanged; bad ranges rejected. */
static void test_size_options(void) {
    md_shapes_options o;
    md_shapes_options_default(&o);
    CHECK(o.min_size == 6.0f && o.max_size_frac == 0.6f && o.bar_thick_min == 2 && o.bar_thick_max == 4, "defaults");
    o.seed = 11;
    o.min_size = 12.0f;
    o.max_size_frac = 0.4f;
    o.bar_thick_min = 5;
    o.bar_thick_max = 7;
    int W = o.width, H = o.height, bars = 0, thick_seen[8] = {0}, others = 0, min_side = 1000, max_side = 0;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (int idx = 0; idx < 60; idx++) {
        md_shape sh[MD_SHAPES_MAX];
        int n;
        CHECK_OK(md_shapes_render(&o, idx, rgb, NULL, sh, &n));
        for (int j = 0; j < n; j++) {
            int w = sh[j].x1 - sh[j].x0, h = sh[j].y1 - sh[j].y0, t = w < h ? w : h, l = w < h ? h : w;
            if (sh[j].category == MD_SHAPE_BAR) {
                bars++;
                CHECK(t <= 7, "image %d bar %d: %dx%d thicker than 7", idx, j, w, h);
                if (t >= 5) thick_seen[t]++;
                (void)l;
            } else {
                others++;
                /* occlusion only hides pixels, so only the upper bound holds for every visible box */
                if (l > max_side) max_side = l;
                if (sh[j].area == (int)(w * h) && sh[j].category == MD_SHAPE_RECTANGLE && t < min_side) min_side = t;
            }
        }
    }
    CHECK(bars > 10 && others > 40, "%d bars, %d others", bars, others);
    CHECK(thick_seen[5] && thick_seen[6] && thick_seen[7], "bar thickness 5/6/7 seen %d/%d/%d", thick_seen[5], thick_seen[6], thick_seen[7]);
    CHECK(min_side >= 7 && min_side < 1000, "smallest unoccluded rectangle side %d (>= 0.6 x 12)", min_side);
    CHECK(max_side <= (int)(1.4f * 0.4f * 128.0f) + 1, "largest side %d (<= 1.4 x 0.4 x 128)", max_side);
    md_shape shb[MD_SHAPES_MAX];
    int nb;
    md_shapes_options b = o;
    b.min_size = 1.0f;
    CHECK(md_shapes_render(&b, 0, rgb, NULL, shb, &nb) == MD_ERR_ARG, "min_size 1 accepted");
    b = o;
    b.max_size_frac = 0.05f; /* 6.4 px < 12 px: empty range */
    CHECK(md_shapes_render(&b, 0, rgb, NULL, shb, &nb) == MD_ERR_ARG, "empty size range accepted");
    b = o;
    b.bar_thick_min = 4;
    b.bar_thick_max = 3;
    CHECK(md_shapes_render(&b, 0, rgb, NULL, shb, &nb) == MD_ERR_ARG, "bar thickness 4..3 accepted");
    free(rgb);
}

/* The written dataset: loads as COCO, PNG pixels equal the rendering, boxes equal the render's. */
static void test_generate_roundtrip(void) {
    md_shapes_options o;
    md_shapes_options_default(&o);
    o.num = 6;
    o.seed = 11;
    o.width = 96;
    o.height = 80;
    char dir[128], ann[160];
    snprintf(dir, sizeof dir, "%s/a", g_tmp);
    snprintf(ann, sizeof ann, "%s/annotations.json", dir);
    CHECK_OK(md_shapes_generate(dir, &o));
    md_coco c;
    CHECK_OK(md_coco_load(&c, ann, NULL));
    if (!c.images) return;
    CHECK(c.num_images == 6 && c.num_cats == 4 && c.stats.clipped == 0 && c.stats.dropped_degenerate == 0, "dataset %d images",
          c.num_images);
    uint8_t *rgb = malloc((size_t)o.width * o.height * 3);
    for (int i = 0; i < c.num_images; i++) {
        md_shape sh[MD_SHAPES_MAX];
        int n;
        CHECK_OK(md_shapes_render(&o, i, rgb, NULL, sh, &n));
        const md_coco_image *im = &c.images[i];
        CHECK(im->width == 96 && im->height == 80 && im->ann_count == n, "image %d: %d anns vs %d shapes", i, im->ann_count, n);
        for (int j = 0; j < n && j < im->ann_count; j++) {
            const md_coco_ann *a = &c.anns[im->ann_begin + j];
            CHECK(a->bbox[0] == sh[j].x0 && a->bbox[1] == sh[j].y0 && a->bbox[2] == sh[j].x1 - sh[j].x0 &&
                      a->bbox[3] == sh[j].y1 - sh[j].y0 && a->category_id == sh[j].category && a->area == sh[j].area,
                  "image %d ann %d", i, j);
        }
        char path[256];
        snprintf(path, sizeof path, "%s/images/%s", dir, im->file_name);
        md_image img;
        CHECK_OK(md_image_load(path, 0, &img));
        CHECK(img.data && !memcmp(img.data, rgb, (size_t)o.width * o.height * 3), "%s differs from the rendering", path);
        md_image_free(&img);
    }
    free(rgb);
    md_coco_free(&c);
    /* same arguments -> identical files; the val split is different */
    char dir2[128], ann2[160];
    snprintf(dir2, sizeof dir2, "%s/b", g_tmp);
    snprintf(ann2, sizeof ann2, "%s/annotations.json", dir2);
    CHECK_OK(md_shapes_generate(dir2, &o));
    size_t n1, n2;
    char *t1 = md_test_slurp(ann, &n1), *t2 = md_test_slurp(ann2, &n2);
    CHECK(t1 && t2 && n1 == n2 && !memcmp(t1, t2, n1), "annotations differ between identical runs");
    free(t2);
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s/images/000003.png", dir);
    snprintf(p2, sizeof p2, "%s/images/000003.png", dir2);
    char *i1 = md_test_slurp(p1, &n1), *i2 = md_test_slurp(p2, &n2);
    CHECK(i1 && i2 && n1 == n2 && !memcmp(i1, i2, n1), "images differ between identical runs");
    free(i1);
    free(i2);
    o.val = 1;
    CHECK_OK(md_shapes_generate(dir2, &o));
    t2 = md_test_slurp(ann2, &n2);
    CHECK(t1 && t2 && (n1 != n2 || memcmp(t1, t2, n1)), "val split equals train split");
    free(t1);
    free(t2);
}

/* The CLI: usage errors and a JPEG dataset that the loader reads end to end. */
static void test_cli(void) {
    const char *bin = getenv("MD_BIN") ? getenv("MD_BIN") : "build/bin";
    char cmd[512], dir[128];
    snprintf(dir, sizeof dir, "%s/cli", g_tmp);
    snprintf(cmd, sizeof cmd, "%s/tool_make_shapes %s --num 4 --seed 3 --size 64x48 --split val --jpeg > /dev/null", bin, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/tool_make_shapes %s --num 4 --size 64by48 2> /dev/null", bin, dir);
    CHECK(system(cmd) != 0, "bad --size accepted");
    char ann[160], imgs[160];
    snprintf(ann, sizeof ann, "%s/annotations.json", dir);
    snprintf(imgs, sizeof imgs, "%s/images", dir);
    md_coco c;
    CHECK_OK(md_coco_load(&c, ann, NULL));
    if (!c.images) return;
    CHECK(c.num_images == 4 && c.images[0].width == 64 && c.images[0].height == 48 && strstr(c.images[0].file_name, ".jpg"), "CLI dataset");
    int nbad = -1;
    CHECK_OK(md_dataset_check(&c, imgs, MD_POLICY_FAIL, 0, NULL, &nbad));
    md_data_options o;
    md_data_options_default(&o);
    o.min_size = 48;
    o.max_size = 64;
    o.workers = 1;
    o.aspect_grouping = 0;
    md_loader *l;
    CHECK_OK(md_loader_create(&l, &c, imgs, &o, NULL, 0, 0));
    if (l) {
        const md_batch *b;
        CHECK_OK(md_loader_next(l, &b));
        CHECK(b && b->n == 2 && b->height == 64 && b->width == 64, "batch from shapes");
        md_loader_destroy(l);
    }
    md_coco_free(&c);
}

int main(void) {
    if (!md_test_tmpdir("shapes", g_tmp, sizeof g_tmp)) return 1;
    MD_RUN(test_boxes_are_tight);
    MD_RUN(test_size_options);
    MD_RUN(test_generate_roundtrip);
    MD_RUN(test_cli);
    md_test_rm_rf(g_tmp);
    return md_test_summary();
}
