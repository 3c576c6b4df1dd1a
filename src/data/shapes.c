/* shapes.c — synthetic shapes dataset (see include/minidet/shapes.h). */
#include "minidet/shapes.h"
#include "minidet/fs.h"
#include "minidet/rng.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb_image_write.h>

const char *const md_shape_names[MD_SHAPE_NUM_CLASSES + 1] = {"background", "rectangle", "ellipse", "triangle", "bar"};

#define MAX_TRIES 30
#define MAX_HIDDEN 0.25f /* a new shape may hide at most this fraction of an earlier one */
#define MIN_VISIBLE 12   /* ... and must leave at least this many of its pixels visible */

void md_shapes_options_default(md_shapes_options *o) {
    memset(o, 0, sizeof *o);
    o->num = 200;
    o->seed = 1;
    o->width = 128;
    o->height = 128;
    o->min_shapes = 1;
    o->max_shapes = 5;
    o->noise = 12;
    o->min_size = 6.0f;
    o->max_size_frac = 0.6f;
    o->bar_thick_min = 2;
    o->bar_thick_max = 4;
}

static float urange(md_rng *r, float a, float b) { return a + (b - a) * md_rng_uniform(r); }
static int irange(md_rng *r, int a, int b) { return a + (int)md_rng_below(r, (uint32_t)(b - a + 1)); } /* [a, b] */

/* Rasterises one random shape of class cat into mask (W x H, 0/1). Returns the pixel count. */
static int draw_shape(const md_shapes_options *o, md_rng *r, int cat, int W, int H, uint8_t *mask) {
    memset(mask, 0, (size_t)W * H);
    int side = W < H ? W : H;
    /* log-uniform size: many small objects, some large */
    float s = expf(urange(r, logf(o->min_size), logf(o->max_size_frac * (float)side)));
    int n = 0;
    if (cat == MD_SHAPE_RECTANGLE) {
        int w = (int)fmaxf(4, s * urange(r, 0.6f, 1.4f)), h = (int)fmaxf(4, s * urange(r, 0.6f, 1.4f));
        if (w > W) w = W;
        if (h > H) h = H;
        int x0 = irange(r, 0, W - w), y0 = irange(r, 0, H - h);
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) mask[y * W + x] = 1, n++;
    } else if (cat == MD_SHAPE_ELLIPSE) {
        float a = fmaxf(2.5f, 0.5f * s * urange(r, 0.6f, 1.4f)), b = fmaxf(2.5f, 0.5f * s * urange(r, 0.6f, 1.4f));
        float cx = urange(r, a, (float)W - a), cy = urange(r, b, (float)H - b);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float dx = ((float)x + 0.5f - cx) / a, dy = ((float)y + 0.5f - cy) / b;
                if (dx * dx + dy * dy <= 1.0f) mask[y * W + x] = 1, n++;
            }
    } else if (cat == MD_SHAPE_TRIANGLE) {
        float w = fmaxf(6, s * urange(r, 0.7f, 1.4f)), h = fmaxf(6, s * urange(r, 0.7f, 1.4f));
        if (w > W) w = (float)W;
        if (h > H) h = (float)H;
        float x0 = urange(r, 0, (float)W - w), y0 = urange(r, 0, (float)H - h);
        /* one vertex on each of three sides of the box keeps the triangle spread over it */
        float px[3] = {x0 + urange(r, 0, w), x0, x0 + w}, py[3] = {y0, y0 + h, y0 + urange(r, 0.3f, 1) * h};
        if (md_rng_below(r, 2)) { py[0] = y0 + h; py[1] = y0; } /* upside down */
        float area2 = (px[1] - px[0]) * (py[2] - py[0]) - (px[2] - px[0]) * (py[1] - py[0]);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float qx = (float)x + 0.5f, qy = (float)y + 0.5f;
                float e0 = (px[1] - px[0]) * (qy - py[0]) - (qx - px[0]) * (py[1] - py[0]);
                float e1 = (px[2] - px[1]) * (qy - py[1]) - (qx - px[1]) * (py[2] - py[1]);
                float e2 = (px[0] - px[2]) * (qy - py[2]) - (qx - px[2]) * (py[0] - py[2]);
                int in = area2 > 0 ? (e0 >= 0 && e1 >= 0 && e2 >= 0) : (e0 <= 0 && e1 <= 0 && e2 <= 0);
                if (in) mask[y * W + x] = 1, n++;
            }
    } else { /* thin bar: bar_thick_min..max px thick, 20-80 % of the image side long, horizontal or vertical */
        int t = irange(r, o->bar_thick_min, o->bar_thick_max);
        int len = (int)(urange(r, 0.2f, 0.8f) * (float)side);
        int horiz = (int)md_rng_below(r, 2);
        int w = horiz ? len : t, h = horiz ? t : len;
        int x0 = irange(r, 0, W - w), y0 = irange(r, 0, H - h);
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) mask[y * W + x] = 1, n++;
    }
    return n;
}

md_status md_shapes_render(const md_shapes_options *o, int index, uint8_t *rgb, uint8_t *owner_out, md_shape shapes[MD_SHAPES_MAX],
                           int *count) {
    int W = o->width, H = o->height;
    *count = 0;
    if (W < 16 || H < 16 || W > 4096 || H > 4096) return md_set_error(MD_ERR_ARG, "shapes: image size %dx%d not in 16..4096", W, H);
    if (o->min_shapes < 0 || o->max_shapes < o->min_shapes || o->max_shapes > MD_SHAPES_MAX)
        return md_set_error(MD_ERR_ARG, "shapes: shapes per image %d..%d not within 0..%d", o->min_shapes, o->max_shapes, MD_SHAPES_MAX);
    int side = W < H ? W : H;
    if (!(o->min_size >= 2.0f) || !(o->max_size_frac <= 1.0f) || !(o->max_size_frac * (float)side >= o->min_size))
        return md_set_error(MD_ERR_ARG, "shapes: object size range %g px .. %g x %d px is empty or outside 2 px .. the image side",
                            (double)o->min_size, (double)o->max_size_frac, side);
    if (o->bar_thick_min < 1 || o->bar_thick_max < o->bar_thick_min || o->bar_thick_max > side / 4)
        return md_set_error(MD_ERR_ARG, "shapes: bar thickness %d..%d px not within 1..%d", o->bar_thick_min, o->bar_thick_max, side / 4);
    size_t npx = (size_t)W * H;
    uint8_t *mask = malloc(npx), *owner = owner_out ? owner_out : malloc(npx);
    if (!mask || !owner) {
        free(mask);
        if (!owner_out) free(owner);
        return md_set_error(MD_ERR_NOMEM, "shapes: out of memory");
    }
    memset(owner, 0, npx);
    md_rng r = md_rng_make(md_hash3(o->seed, o->val ? 2 : 1, (uint64_t)index), MD_STREAM_DATA);
    /* background: base colour + linear gradient */
    float base[3], grad[3][2];
    for (int c = 0; c < 3; c++) {
        base[c] = urange(&r, 40, 215);
        grad[c][0] = urange(&r, -40, 40) / (float)W;
        grad[c][1] = urange(&r, -40, 40) / (float)H;
    }
    int visible[MD_SHAPES_MAX] = {0};
    int want = irange(&r, o->min_shapes, o->max_shapes), n = 0;
    for (int s = 0; s < want; s++) {
        int cat = irange(&r, 1, MD_SHAPE_NUM_CLASSES);
        for (int tries = 0; tries < MAX_TRIES; tries++) {
            int px = draw_shape(o, &r, cat, W, H, mask);
            if (px < MIN_VISIBLE) continue;
            int hidden[MD_SHAPES_MAX] = {0};
            for (size_t i = 0; i < npx; i++)
                if (mask[i] && owner[i]) hidden[owner[i] - 1]++;
            int ok = 1;
            for (int j = 0; j < n; j++)
                if ((float)hidden[j] > MAX_HIDDEN * (float)visible[j] || visible[j] - hidden[j] < MIN_VISIBLE) ok = 0;
            if (!ok) continue;
            for (size_t i = 0; i < npx; i++)
                if (mask[i]) {
                    if (owner[i]) visible[owner[i] - 1]--;
                    owner[i] = (uint8_t)(n + 1);
                }
            visible[n] = px;
            md_shape *sh = &shapes[n];
            memset(sh, 0, sizeof *sh);
            sh->category = cat;
            /* a colour far from the local background */
            for (int t = 0; t < 50; t++) {
                float d = 0;
                for (int c = 0; c < 3; c++) {
                    sh->color[c] = (uint8_t)irange(&r, 0, 255);
                    d += fabsf((float)sh->color[c] - base[c]);
                }
                if (d > 150) break;
            }
            n++;
            break;
        }
    }
    /* composite, then noise over everything */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            for (int c = 0; c < 3; c++) {
                float v = owner[i] ? (float)shapes[owner[i] - 1].color[c] : base[c] + grad[c][0] * (float)x + grad[c][1] * (float)y;
                if (o->noise > 0) v += (float)irange(&r, -o->noise, o->noise);
                v = v < 0 ? 0 : v > 255 ? 255 : v;
                rgb[i * 3 + c] = (uint8_t)lrintf(v);
            }
        }
    /* exact boxes from the visible pixels */
    for (int j = 0; j < n; j++) {
        shapes[j].x0 = W;
        shapes[j].y0 = H;
        shapes[j].x1 = shapes[j].y1 = 0;
        shapes[j].area = 0;
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int j = owner[(size_t)y * W + x];
            if (!j) continue;
            md_shape *sh = &shapes[j - 1];
            if (x < sh->x0) sh->x0 = x;
            if (y < sh->y0) sh->y0 = y;
            if (x + 1 > sh->x1) sh->x1 = x + 1;
            if (y + 1 > sh->y1) sh->y1 = y + 1;
            sh->area++;
        }
    *count = n;
    free(mask);
    if (!owner_out) free(owner);
    return MD_OK;
}

md_status md_shapes_generate(const char *out_dir, const md_shapes_options *o) {
    if (o->num <= 0) return md_set_error(MD_ERR_ARG, "shapes: --num must be positive (got %d)", o->num);
    char path[4096];
    snprintf(path, sizeof path, "%s/images", out_dir);
    md_status st = md_mkdir_p(path);
    if (st) return st;
    uint8_t *rgb = malloc((size_t)o->width * o->height * 3);
    cJSON *root = cJSON_CreateObject(), *images = cJSON_CreateArray(), *anns = cJSON_CreateArray(), *cats = cJSON_CreateArray();
    cJSON *info = cJSON_CreateObject();
    if (!rgb || !root || !images || !anns || !cats || !info) {
        st = md_set_error(MD_ERR_NOMEM, "shapes: out of memory");
        cJSON_Delete(images);
        cJSON_Delete(anns);
        cJSON_Delete(cats);
        cJSON_Delete(info);
        goto done;
    }
    char desc[256];
    snprintf(desc, sizeof desc, "minidet synthetic shapes, %s split, seed %llu, %d images %dx%d", o->val ? "val" : "train",
             (unsigned long long)o->seed, o->num, o->width, o->height);
    cJSON_AddStringToObject(info, "description", desc);
    cJSON_AddNumberToObject(info, "seed", (double)o->seed);
    cJSON_AddItemToObject(root, "info", info);
    cJSON_AddItemToObject(root, "images", images);
    cJSON_AddItemToObject(root, "annotations", anns);
    cJSON_AddItemToObject(root, "categories", cats);
    for (int k = 1; k <= MD_SHAPE_NUM_CLASSES; k++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "id", k);
        cJSON_AddStringToObject(c, "name", md_shape_names[k]);
        cJSON_AddStringToObject(c, "supercategory", "shape");
        cJSON_AddItemToArray(cats, c);
    }
    int ann_id = 1;
    for (int i = 0; i < o->num; i++) {
        md_shape shapes[MD_SHAPES_MAX];
        int n;
        st = md_shapes_render(o, i, rgb, NULL, shapes, &n);
        if (st) goto done;
        char name[64];
        snprintf(name, sizeof name, "%06d.%s", i + 1, o->jpeg ? "jpg" : "png");
        snprintf(path, sizeof path, "%s/images/%s", out_dir, name);
        int ok = o->jpeg ? stbi_write_jpg(path, o->width, o->height, 3, rgb, 95)
                         : stbi_write_png(path, o->width, o->height, 3, rgb, o->width * 3);
        if (!ok) {
            st = md_set_error(MD_ERR_IO, "%s: cannot write image", path);
            goto done;
        }
        cJSON *im = cJSON_CreateObject();
        cJSON_AddNumberToObject(im, "id", i + 1);
        cJSON_AddStringToObject(im, "file_name", name);
        cJSON_AddNumberToObject(im, "width", o->width);
        cJSON_AddNumberToObject(im, "height", o->height);
        cJSON_AddItemToArray(images, im);
        for (int j = 0; j < n; j++) {
            cJSON *a = cJSON_CreateObject();
            double bb[4] = {shapes[j].x0, shapes[j].y0, shapes[j].x1 - shapes[j].x0, shapes[j].y1 - shapes[j].y0};
            cJSON_AddNumberToObject(a, "id", ann_id++);
            cJSON_AddNumberToObject(a, "image_id", i + 1);
            cJSON_AddNumberToObject(a, "category_id", shapes[j].category);
            cJSON_AddItemToObject(a, "bbox", cJSON_CreateDoubleArray(bb, 4));
            cJSON_AddNumberToObject(a, "area", shapes[j].area);
            cJSON_AddNumberToObject(a, "iscrowd", 0);
            cJSON_AddItemToArray(anns, a);
        }
    }
    {
        char *text = cJSON_PrintUnformatted(root);
        if (!text) {
            st = md_set_error(MD_ERR_NOMEM, "shapes: out of memory printing the JSON");
            goto done;
        }
        size_t len = strlen(text);
        char *line = malloc(len + 2); /* the JSON and a newline */
        if (line) {
            memcpy(line, text, len);
            line[len] = '\n';
            line[len + 1] = 0;
        }
        cJSON_free(text);
        if (!line) {
            st = md_set_error(MD_ERR_NOMEM, "shapes: out of memory");
            goto done;
        }
        snprintf(path, sizeof path, "%s/annotations.json", out_dir);
        st = md_write_atomic(path, line, len + 1);
        free(line);
    }
done:
    cJSON_Delete(root);
    free(rgb);
    return st;
}
