/* coco_dets.c — COCO detection results: from memory, from a results JSON file
 * (json_scan.h: the list can hold millions of numbers), and back
 * to a file. See include/minidet/cocoeval.h. */
#include "minidet/cocoeval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "json_scan.h"

md_status md_coco_dets_create(const md_coco_gt *gt, md_coco_dets **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return md_set_error(MD_ERR_NOMEM, "detections: out of memory");
    (*out)->gt = gt;
    return MD_OK;
}

void md_coco_dets_free(md_coco_dets *d) {
    if (!d) return;
    free(d->img);
    free(d->cat);
    free(d->bbox);
    free(d->score);
    free(d);
}

static md_status dets_reserve(md_coco_dets *d, size_t n) {
    if (n <= d->cap) return MD_OK;
    size_t cap = d->cap ? d->cap : 1024;
    while (cap < n) cap *= 2;
    int32_t *img = realloc(d->img, cap * sizeof *img);
    if (img) d->img = img;
    int32_t *cat = realloc(d->cat, cap * sizeof *cat);
    if (cat) d->cat = cat;
    double *bb = realloc(d->bbox, cap * 4 * sizeof *bb);
    if (bb) d->bbox = bb;
    double *sc = realloc(d->score, cap * sizeof *sc);
    if (sc) d->score = sc;
    if (!img || !cat || !bb || !sc) return md_set_error(MD_ERR_NOMEM, "detections: out of memory (%zu detections)", n);
    d->cap = cap;
    return MD_OK;
}

md_status md_coco_dets_add(md_coco_dets *d, size_t n, const int64_t *img_ids, const int64_t *cat_ids,
                           const double *xywh, const double *scores) {
    md_status st = dets_reserve(d, d->n + n);
    if (st != MD_OK) return st;
    for (size_t i = 0; i < n; i++) {
        int ii = md_coco_gt_img_index(d->gt, img_ids[i]);
        if (ii < 0)
            return md_set_error(MD_ERR_ARG, "detections: detection %zu: field image_id: image %lld is not in the ground truth %s",
                                i, (long long)img_ids[i], d->gt->path);
        int ci = md_coco_gt_cat_index(d->gt, cat_ids[i]);
        if (ci < 0)
            return md_set_error(MD_ERR_ARG, "detections: detection %zu: field category_id: category %lld is not in the categories of %s",
                                i, (long long)cat_ids[i], d->gt->path);
        for (int j = 0; j < 4; j++)
            if (!isfinite(xywh[4 * i + j]))
                return md_set_error(MD_ERR_NUMERIC, "detections: detection %zu: field bbox: element %d is not finite", i, j);
        if (!isfinite(scores[i])) return md_set_error(MD_ERR_NUMERIC, "detections: detection %zu: field score: not finite", i);
    }
    for (size_t i = 0; i < n; i++) {
        size_t o = d->n + i;
        d->img[o] = md_coco_gt_img_index(d->gt, img_ids[i]);
        d->cat[o] = md_coco_gt_cat_index(d->gt, cat_ids[i]);
        memcpy(d->bbox + 4 * o, xywh + 4 * i, 4 * sizeof(double));
        d->score[o] = scores[i];
    }
    d->n += n;
    return MD_OK;
}


enum { F_IMG = 1, F_CAT = 2, F_BBOX = 4, F_SCORE = 8 };

typedef struct {
    const md_coco_gt *gt;
    int32_t *img_lut;   /* image id -> index, when ids are small; else NULL */
    int64_t img_lut_n;
    int32_t *cat_lut;
    int64_t cat_lut_n;
} id_maps;

static int map_id(const int32_t *lut, int64_t n, const int64_t *ids, int nids, int64_t v) {
    if (lut) return v >= 0 && v < n ? lut[v] : -1;
    int lo = 0, hi = nids - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (ids[mid] < v) lo = mid + 1;
        else if (ids[mid] > v) hi = mid - 1;
        else return mid;
    }
    return -1;
}

static int32_t *make_lut(const int64_t *ids, int n, int64_t *lut_n) {
    *lut_n = 0;
    if (n == 0 || ids[0] < 0 || ids[n - 1] > (1 << 24)) return NULL;
    int64_t m = ids[n - 1] + 1;
    int32_t *lut = malloc(sizeof(int32_t) * (size_t)m);
    if (!lut) return NULL; /* falls back to binary search */
    for (int64_t i = 0; i < m; i++) lut[i] = -1;
    for (int i = 0; i < n; i++) lut[ids[i]] = i;
    *lut_n = m;
    return lut;
}


/* One {"image_id", "category_id", "bbox", "score", ...} object (other keys skipped). */
static md_status parse_entry(json_scan *j, md_coco_dets *d, const id_maps *maps) {
    const md_coco_gt *gt = maps->gt;
    const char *start = j->p;
    md_status st;
    if (*j->p != '{') {
        if ((st = json_skip_value(j, 0)) != MD_OK) return st;
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: not an object (byte %zu)", j->path, j->entry, (size_t)(start - j->buf));
    }
    j->p++;
    int seen = 0;
    int64_t img_id = 0, cat_id = 0;
    double bb[4] = {0, 0, 0, 0}, score = 0;
    if (!json_eat(j, '}')) for (;;) {
        const char *k0;
        size_t kl;
        if ((st = json_key(j, &k0, &kl)) != MD_OK) return st;
#define KEY_IS(s) (kl == sizeof(s) - 1 && !memcmp(k0, s, kl))
        if (KEY_IS("image_id")) {
            if ((st = json_field_id(j, "image_id", &img_id)) != MD_OK) return st;
            seen |= F_IMG;
        } else if (KEY_IS("category_id")) {
            if ((st = json_field_id(j, "category_id", &cat_id)) != MD_OK) return st;
            seen |= F_CAT;
        } else if (KEY_IS("score")) {
            if ((st = json_field_finite(j, "score", &score)) != MD_OK) return st;
            seen |= F_SCORE;
        } else if (KEY_IS("bbox")) {
            if ((st = json_field_box(j, "bbox", bb)) != MD_OK) return st;
            seen |= F_BBOX;
        } else if ((st = json_skip_value(j, 1)) != MD_OK) {
            return st;
        }
#undef KEY_IS
        if (json_eat(j, ',')) continue;
        if (json_eat(j, '}')) break;
        return json_error(j, j->p >= j->end ? "unexpected end of file (truncated?)" : "expected ',' or '}' in an object");
    }
    static const char *names[4] = {"image_id", "category_id", "bbox", "score"};
    for (int f = 0; f < 4; f++)
        if (!(seen & (1 << f)))
            return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: missing (byte %zu)", j->path, j->entry, names[f], (size_t)(start - j->buf));
    int ii = map_id(maps->img_lut, maps->img_lut_n, gt->img_ids, gt->n_img, img_id);
    if (ii < 0)
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field image_id: image %lld is not in the ground truth %s",
                            j->path, j->entry, (long long)img_id, gt->path);
    int ci = map_id(maps->cat_lut, maps->cat_lut_n, gt->cat_ids, gt->n_cat, cat_id);
    if (ci < 0)
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field category_id: category %lld is not in the categories of %s",
                            j->path, j->entry, (long long)cat_id, gt->path);
    if (d->n == d->cap && (st = dets_reserve(d, d->n + 1)) != MD_OK) return st;
    size_t o = d->n++;
    d->img[o] = ii;
    d->cat[o] = ci;
    memcpy(d->bbox + 4 * o, bb, sizeof bb);
    d->score[o] = score;
    return MD_OK;
}

/* ws '[' entry (',' entry)* ']' ws EOF; an empty list is an error (COCO.loadRes fails on it too). */
static md_status parse_results(json_scan *j, md_coco_dets *d, const id_maps *maps) {
    md_status st;
    json_ws(j);
    if (j->p >= j->end) return json_error(j, "the file is empty");
    if (*j->p != '[') return md_set_error(MD_ERR_FORMAT, "%s: not a results list (the top level is not a JSON list of detections)", j->path);
    j->p++;
    if (json_eat(j, ']')) {
        json_ws(j);
        if (j->p != j->end) return json_error(j, "unexpected data after the list");
        return md_set_error(MD_ERR_FORMAT, "%s: the results list is empty (no detections)", j->path);
    }
    for (j->entry = 0;; j->entry++) {
        json_ws(j);
        if (j->p >= j->end) return json_error(j, "unexpected end of file (truncated?)");
        if ((st = parse_entry(j, d, maps)) != MD_OK) return st;
        if (json_eat(j, ',')) continue;
        if (json_eat(j, ']')) break;
        return json_error(j, j->p >= j->end ? "unexpected end of file (truncated?)" : "expected ',' or ']' after an entry");
    }
    j->entry = (size_t)-1;
    json_ws(j);
    if (j->p != j->end) return json_error(j, "unexpected data after the list");
    return MD_OK;
}

md_status md_coco_dets_load(const md_coco_gt *gt, const char *path, md_coco_dets **out) {
    *out = NULL;
    char *buf;
    size_t len;
    md_status st = md_eval_read_file(path, &buf, &len);
    if (st != MD_OK) return st;
    md_coco_dets *d;
    if ((st = md_coco_dets_create(gt, &d)) != MD_OK) { free(buf); return st; }
    if ((st = dets_reserve(d, len / 64 + 16)) != MD_OK) { free(buf); md_coco_dets_free(d); return st; }
    id_maps maps = {gt, NULL, 0, NULL, 0};
    maps.img_lut = make_lut(gt->img_ids, gt->n_img, &maps.img_lut_n);
    maps.cat_lut = make_lut(gt->cat_ids, gt->n_cat, &maps.cat_lut_n);
    json_scan j;
    json_init(&j, path, buf, len);
    st = parse_results(&j, d, &maps);
    free(maps.img_lut);
    free(maps.cat_lut);
    free(buf);
    if (st != MD_OK) {
        md_coco_dets_free(d);
        return st;
    }
    *out = d;
    return MD_OK;
}

md_status md_coco_dets_save(const md_coco_dets *d, const char *path) {
    size_t cap = 64 + d->n * 200, n = 0;
    char *out = malloc(cap);
    if (!out) return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu detections)", path, d->n);
    out[n++] = '[';
    for (size_t i = 0; i < d->n; i++) {
        char v[5][40];
        for (int k = 0; k < 4; k++) md_eval_fmt_double(v[k], sizeof v[k], d->bbox[4 * i + k]);
        md_eval_fmt_double(v[4], sizeof v[4], d->score[i]);
        n += (size_t)snprintf(out + n, cap - n, "%s{\"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%s, %s, %s, %s], \"score\": %s}",
                              i ? ",\n" : "", (long long)d->gt->img_ids[d->img[i]], (long long)d->gt->cat_ids[d->cat[i]],
                              v[0], v[1], v[2], v[3], v[4]);
    }
    out[n++] = ']';
    out[n++] = '\n';
    md_status st = md_eval_write_atomic(path, out, n);
    free(out);
    return st;
}
