/* transform.c — torchvision 0.14 GeneralizedRCNNTransform in C, and building
 * a padded batch from dataset images (see include/minidet/data.h). */
#include "minidet/data.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const float md_image_mean[3] = {0.485f, 0.456f, 0.406f};
const float md_image_std[3] = {0.229f, 0.224f, 0.225f};

void md_resize_size(int H, int W, int min_size, int max_size, int *out_h, int *out_w) {
    /* torchvision: scale = torch.min(min_size / short, max_size / long) on float32
       tensors, where `number / tensor` is tensor.reciprocal() * number; then
       interpolate(recompute_scale_factor=True): floor(float(size) * scale). */
    float s = (float)(H < W ? H : W), l = (float)(H < W ? W : H);
    float a = (1.0f / s) * (float)min_size;
    float b = (1.0f / l) * (float)max_size;
    double scale = (double)(a < b ? a : b);
    *out_h = (int)floor((double)H * scale);
    *out_w = (int)floor((double)W * scale);
}

void md_normalize_forward(const uint8_t *rgb, int H, int W, int flip, const float mean[3], const float std[3], float *out) {
    /* a per-channel table of the 256 possible results, each computed exactly as
       torchvision does ((u8 / 255 - mean) / std in float32) */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    size_t plane = (size_t)H * W;
    for (int y = 0; y < H; y++) {
        const uint8_t *row = rgb + (size_t)y * W * 3;
        float *o0 = out + (size_t)y * W, *o1 = o0 + plane, *o2 = o1 + plane;
        if (flip) {
            for (int x = 0; x < W; x++) {
                const uint8_t *px = row + (size_t)(W - 1 - x) * 3;
                o0[x] = lut[0][px[0]];
                o1[x] = lut[1][px[1]];
                o2[x] = lut[2][px[2]];
            }
        } else {
            for (int x = 0; x < W; x++) {
                const uint8_t *px = row + (size_t)x * 3;
                o0[x] = lut[0][px[0]];
                o1[x] = lut[1][px[1]];
                o2[x] = lut[2][px[2]];
            }
        }
    }
}

/* ATen's linear interpolation indices for one axis (align_corners=False,
   scale = in / out as float, source index clamped at 0). */
static void axis_weights(int in, int out, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        if (in == out) {
            i0[i] = i1[i] = i;
            l0[i] = 1.0f;
            l1[i] = 0.0f;
            continue;
        }
        /* the float scale times (i + 0.5) and the fraction are evaluated in double, as ATen does */
        double src = (double)scale * ((double)i + 0.5) - 0.5;
        if (src < 0) src = 0;
        int k = (int)floor(src);
        if (k > in - 1) k = in - 1;
        double lam = src - (double)k;
        if (lam < 0) lam = 0;
        if (lam > 1) lam = 1;
        i0[i] = k;
        i1[i] = k < in - 1 ? k + 1 : k;
        l1[i] = (float)lam;
        l0[i] = 1.0f - (float)lam;
    }
}

/* One input row interpolated horizontally: t[x] = row[x0] * w0 + row[x1] * w1. */
static void hrow(const float *restrict row, const int *restrict x0, const int *restrict x1, const float *restrict wx0,
                 const float *restrict wx1, int OW, float *restrict t) {
    for (int x = 0; x < OW; x++) t[x] = row[x0[x]] * wx0[x] + row[x1[x]] * wx1[x];
}

md_status md_resize_bilinear_forward(const float *in, int C, int H, int W, float *out, int OH, int OW, int out_stride, int out_plane) {
    if (H <= 0 || W <= 0 || OH <= 0 || OW <= 0 || out_stride < OW || out_plane < OH * out_stride)
        return md_set_error(MD_ERR_ARG, "resize: bad sizes %dx%d -> %dx%d (stride %d, plane %d)", H, W, OH, OW, out_stride, out_plane);
    /* out = (r0[x0] w0 + r0[x1] w1) h0 + (r1[x0] w0 + r1[x1] w1) h1, evaluated in that
       order (ATen's); the horizontal terms of an input row are computed once and
       kept while consecutive output rows use it */
    size_t nbytes = (size_t)(OW + OH) * 2 * (sizeof(int) + sizeof(float)) + (size_t)2 * OW * sizeof(float);
    char *ws = malloc(nbytes);
    if (!ws) return md_set_error(MD_ERR_NOMEM, "resize: out of memory (%zu bytes)", nbytes);
    int *x0 = (int *)ws, *x1 = x0 + OW, *y0 = x1 + OW, *y1 = y0 + OH;
    float *wx0 = (float *)(y1 + OH), *wx1 = wx0 + OW, *wy0 = wx1 + OW, *wy1 = wy0 + OH;
    float *cache[2] = {wy1 + OH, wy1 + OH + OW};
    axis_weights(W, OW, x0, x1, wx0, wx1);
    axis_weights(H, OH, y0, y1, wy0, wy1);
    for (int c = 0; c < C; c++) {
        const float *src = in + (size_t)c * H * W;
        float *dst = out + (size_t)c * out_plane;
        int cached[2] = {-1, -1};
        for (int y = 0; y < OH; y++) {
            const float *t[2];
            int want[2] = {y0[y], y1[y]};
            for (int k = 0; k < 2; k++) {
                int slot = cached[0] == want[k] ? 0 : cached[1] == want[k] ? 1 : -1;
                if (slot < 0) {
                    slot = cached[0] == want[1 - k] ? 1 : 0; /* never evict the other row this output row needs */
                    hrow(src + (size_t)want[k] * W, x0, x1, wx0, wx1, OW, cache[slot]);
                    cached[slot] = want[k];
                }
                t[k] = cache[slot];
            }
            float h0 = wy0[y], h1 = wy1[y];
            float *restrict o = dst + (size_t)y * out_stride;
            const float *restrict t0 = t[0], *restrict t1 = t[1];
            for (int x = 0; x < OW; x++) o[x] = t0[x] * h0 + t1[x] * h1;
        }
    }
    free(ws);
    return MD_OK;
}

void md_boxes_hflip(float *boxes, int n, int W) {
    for (int i = 0; i < n; i++) {
        float x1 = boxes[4 * i], x2 = boxes[4 * i + 2];
        boxes[4 * i] = (float)W - x2;
        boxes[4 * i + 2] = (float)W - x1;
    }
}

void md_boxes_resize(float *boxes, int n, int H, int W, int OH, int OW) {
    float rh = (float)OH / (float)H, rw = (float)OW / (float)W;
    for (int i = 0; i < n; i++) {
        boxes[4 * i] *= rw;
        boxes[4 * i + 1] *= rh;
        boxes[4 * i + 2] *= rw;
        boxes[4 * i + 3] *= rh;
    }
}

void md_batch_free(md_batch *b) {
    free(b->images);
    free(b->info);
    free(b->boxes);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

static int grow_floats(float **p, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    float *q = realloc(*p, need * sizeof *q);
    if (!q) return 0;
    *p = q;
    *cap = need;
    return 1;
}

md_status md_batch_build(md_batch *b, const md_coco *c, const char *image_dir, const int *idx, const uint8_t *flips, int n,
                         const md_data_options *o, float **scratch, size_t *scratch_cap) {
    return md_batch_build_shard(b, c, image_dir, idx, flips, n, 0, n, o, scratch, scratch_cap);
}

md_status md_batch_build_shard(md_batch *b, const md_coco *c, const char *image_dir, const int *idx, const uint8_t *flips, int n,
                               int first, int count, const md_data_options *o, float **scratch, size_t *scratch_cap) {
    if (n <= 0 || first < 0 || count <= 0 || first > n - count)
        return md_set_error(MD_ERR_ARG, "batch: images %d..%d of a batch of %d", first, first + count - 1, n);
    int div = o->size_divisible > 0 ? o->size_divisible : 1;
    int nbox = 0, maxh = 0, maxw = 0;
    /* sizes come from the JSON (checked against the file when decoding), so the padded shape of the
       whole batch is known before decoding and each image of the shard is resized straight into it */
    if (count > b->cap_info) {
        md_image_info *q = realloc(b->info, (size_t)count * sizeof *q);
        if (!q) return md_set_error(MD_ERR_NOMEM, "batch: out of memory");
        b->info = q;
        b->cap_info = count;
    }
    for (int j = 0; j < n; j++) {
        const md_coco_image *im = &c->images[idx[j]];
        int h, w;
        md_resize_size(im->height, im->width, o->min_size, o->max_size, &h, &w);
        if (h <= 0 || w <= 0)
            return md_set_error(MD_ERR_ARG, "%s: images[%d] (id %lld): %dx%d resizes to %dx%d (min_size %d, max_size %d)", c->path, idx[j],
                                (long long)im->id, im->width, im->height, w, h, o->min_size, o->max_size);
        if (h > maxh) maxh = h;
        if (w > maxw) maxw = w;
        if (j < first || j >= first + count) continue;
        md_image_info *in = &b->info[j - first];
        memset(in, 0, sizeof *in);
        in->image_id = im->id;
        in->index = idx[j];
        in->orig_h = im->height;
        in->orig_w = im->width;
        in->flipped = flips ? flips[j] != 0 : 0;
        in->h = h;
        in->w = w;
        in->box_begin = nbox;
        in->num_boxes = im->num_targets;
        nbox += im->num_targets;
    }
    b->slot0 = first;
    b->global_n = n;
    n = count; /* from here on: the images of the shard */
    b->n = n;
    b->height = (maxh + div - 1) / div * div;
    b->width = (maxw + div - 1) / div * div;
    size_t plane = (size_t)b->height * b->width, total = (size_t)n * 3 * plane;
    if (!grow_floats(&b->images, &b->cap_images, total)) return md_set_error(MD_ERR_NOMEM, "batch: out of memory (%zu floats)", total);
    if (nbox > b->cap_boxes) {
        float *q = realloc(b->boxes, (size_t)nbox * 4 * sizeof *q);
        if (q) b->boxes = q;
        int *r = q ? realloc(b->labels, (size_t)nbox * sizeof *r) : NULL;
        if (!q || !r) return md_set_error(MD_ERR_NOMEM, "batch: out of memory (%d boxes)", nbox);
        b->labels = r;
        b->cap_boxes = nbox;
    }
    b->num_boxes = nbox;
    char path[4096];
    for (int i = 0; i < n; i++) {
        md_image_info *in = &b->info[i];
        const md_coco_image *im = &c->images[in->index];
        snprintf(path, sizeof path, "%s/%s", image_dir, im->file_name);
        md_image img;
        md_status st = md_image_load(path, o->allow_16bit, &img);
        if (st) return st;
        if (img.width != im->width || img.height != im->height) {
            md_image_free(&img);
            return md_set_error(MD_ERR_FORMAT, "%s: image is %dx%d but %s: images[%d] (id %lld) says width %d, height %d", path, img.width,
                                img.height, c->path, in->index, (long long)im->id, im->width, im->height);
        }
        size_t need = (size_t)3 * img.width * img.height;
        if (!grow_floats(scratch, scratch_cap, need)) {
            md_image_free(&img);
            return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu floats)", path, need);
        }
        md_normalize_forward(img.data, img.height, img.width, in->flipped, md_image_mean, md_image_std, *scratch);
        md_image_free(&img);
        st = md_resize_bilinear_forward(*scratch, 3, im->height, im->width, b->images + (size_t)i * 3 * plane, in->h, in->w, b->width,
                                        (int)plane);
        if (st) return md_error_prefix(st, "%s", path);
        /* zero the padding right of and below the image */
        for (int ch = 0; ch < 3; ch++) {
            float *pl = b->images + (size_t)i * 3 * plane + (size_t)ch * plane;
            if (in->w < b->width)
                for (int y = 0; y < in->h; y++) memset(pl + (size_t)y * b->width + in->w, 0, (size_t)(b->width - in->w) * sizeof(float));
            memset(pl + (size_t)in->h * b->width, 0, (size_t)(b->height - in->h) * b->width * sizeof(float));
        }
        /* targets: non-crowd, usable boxes, flipped in original coordinates, then resized */
        float *bx = b->boxes + (size_t)in->box_begin * 4;
        int k = 0;
        for (int a = 0; a < im->ann_count; a++) {
            const md_coco_ann *an = &c->anns[im->ann_begin + a];
            if (an->flags & (MD_ANN_CROWD | MD_ANN_DROPPED)) continue;
            memcpy(bx + 4 * k, an->box, 4 * sizeof(float));
            b->labels[in->box_begin + k] = an->label;
            k++;
        }
        if (in->flipped) md_boxes_hflip(bx, k, im->width);
        md_boxes_resize(bx, k, im->height, im->width, in->h, in->w);
    }
    return MD_OK;
}
