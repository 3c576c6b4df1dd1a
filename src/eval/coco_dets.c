/* coco_dets.c — COCO detection results: from memory, from a results JSON file
 * (json_scan.h: the list can hold millions of numbers), and back
 * to a file. See include/minidet/cocoeval.h. */
#include "minidet/cocoeval.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "minidet/fs.h"
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
    void **const arr[4] = {(void **)&d->img, (void **)&d->cat, (void **)&d->bbox, (void **)&d->score};
    static const size_t elem[4] = {sizeof(int32_t), sizeof(int32_t), 4 * sizeof(double), sizeof(double)};
    if (md_eval_grow(arr, elem, 4, &d->cap, n, 1024)) return md_set_error(MD_ERR_NOMEM, "detections: out of memory (%zu detections)", n);
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

/* A results list as read, ids not yet resolved against a ground truth. */
typedef struct {
    size_t n, cap;
    int64_t *img_id, *cat_id;
    double *bbox, *score;
} dets_raw;

static void raw_free(dets_raw *r) {
    free(r->img_id);
    free(r->cat_id);
    free(r->bbox);
    free(r->score);
    memset(r, 0, sizeof *r);
}

static int raw_reserve(dets_raw *r, size_t n) {
    void **const arr[4] = {(void **)&r->img_id, (void **)&r->cat_id, (void **)&r->bbox, (void **)&r->score};
    static const size_t elem[4] = {sizeof(int64_t), sizeof(int64_t), 4 * sizeof(double), sizeof(double)};
    return md_eval_grow(arr, elem, 4, &r->cap, n, 4096);
}

/* One {"image_id", "category_id", "bbox", "score", ...} object (other keys skipped). */
static md_status parse_entry(json_scan *j, dets_raw *d) {
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
    for (int more = !json_eat(j, '}'); more;) {
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
        if ((st = json_next(j, '}', &more)) != MD_OK) return st;
    }
    static const char *names[4] = {"image_id", "category_id", "bbox", "score"};
    for (int f = 0; f < 4; f++)
        if (!(seen & (1 << f)))
            return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: missing (byte %zu)", j->path, j->entry, names[f], (size_t)(start - j->buf));
    if (raw_reserve(d, d->n + 1)) return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu detections)", j->path, d->n + 1);
    size_t o = d->n++;
    d->img_id[o] = img_id;
    d->cat_id[o] = cat_id;
    memcpy(d->bbox + 4 * o, bb, sizeof bb);
    d->score[o] = score;
    return MD_OK;
}

/* ws '[' entry (',' entry)* ']' ws EOF; an empty list is an error (COCO.loadRes fails on it too). */
static md_status parse_results(json_scan *j, dets_raw *d) {
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
        if ((st = parse_entry(j, d)) != MD_OK) return st;
        if (json_eat(j, ',')) continue;
        if (json_eat(j, ']')) break;
        return json_error(j, j->p >= j->end ? "unexpected end of file (truncated?)" : "expected ',' or ']' after an entry");
    }
    j->entry = (size_t)-1;
    json_ws(j);
    if (j->p != j->end) return json_error(j, "unexpected data after the list");
    return MD_OK;
}

/* Reads and parses a results file (no ground truth needed yet). */
static md_status read_results(const char *path, dets_raw *d) {
    memset(d, 0, sizeof *d);
    char *buf;
    size_t len;
    md_status st = md_read_file(path, &buf, &len);
    if (st != MD_OK) return st;
    if (raw_reserve(d, len / 80 + 16)) {
        free(buf);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    json_scan j;
    json_init(&j, path, buf, len);
    st = parse_results(&j, d);
    free(buf);
    if (st != MD_OK) raw_free(d);
    return st;
}

static int map_id(const int32_t *lut, int64_t n, const int64_t *ids, int nids, int64_t v) {
    if (lut) return v >= 0 && v < n ? lut[v] : -1;
    return md_eval_find_id(ids, nids, v);
}

/* id -> index table when the ids are small non-negative numbers (COCO's are); else NULL. */
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

/* Resolves ids against gt (like loadRes's assertion, after the whole file parsed); takes the
 * raw arrays (raw is emptied either way). */
static md_status resolve(const md_coco_gt *gt, const char *path, dets_raw *raw, md_coco_dets **out) {
    md_status st = MD_OK;
    md_coco_dets *d = calloc(1, sizeof *d);
    size_t n = raw->n, nb = n ? n : 1;
    if (d) {
        d->gt = gt;
        d->img = malloc(nb * sizeof(int32_t));
        d->cat = malloc(nb * sizeof(int32_t));
    }
    int64_t nl_img, nl_cat;
    int32_t *lut_img = make_lut(gt->img_ids, gt->n_img, &nl_img), *lut_cat = make_lut(gt->cat_ids, gt->n_cat, &nl_cat);
    if (!d || !d->img || !d->cat) st = md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu detections)", path, n);
    for (size_t i = 0; st == MD_OK && i < n; i++) {
        int ii = map_id(lut_img, nl_img, gt->img_ids, gt->n_img, raw->img_id[i]);
        if (ii < 0) {
            st = md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field image_id: image %lld is not in the ground truth %s", path, i,
                              (long long)raw->img_id[i], gt->path);
            break;
        }
        int ci = map_id(lut_cat, nl_cat, gt->cat_ids, gt->n_cat, raw->cat_id[i]);
        if (ci < 0) {
            st = md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field category_id: category %lld is not in the categories of %s", path, i,
                              (long long)raw->cat_id[i], gt->path);
            break;
        }
        d->img[i] = ii;
        d->cat[i] = ci;
    }
    free(lut_img);
    free(lut_cat);
    if (st != MD_OK) {
        md_coco_dets_free(d);
        raw_free(raw);
        return st;
    }
    d->n = n;
    d->cap = n;
    d->bbox = raw->bbox;
    d->score = raw->score;
    raw->bbox = raw->score = NULL;
    raw_free(raw);
    if (!d->bbox) { /* empty in-memory list: keep the arrays non-NULL */
        d->bbox = malloc(4 * sizeof(double));
        d->score = malloc(sizeof(double));
        d->cap = 1;
        if (!d->bbox || !d->score) { md_coco_dets_free(d); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    }
    *out = d;
    return MD_OK;
}

md_status md_coco_dets_load(const md_coco_gt *gt, const char *path, md_coco_dets **out) {
    *out = NULL;
    dets_raw raw;
    md_status st = read_results(path, &raw);
    if (st != MD_OK) return st;
    return resolve(gt, path, &raw, out);
}

md_status md_coco_load_pair(const char *gt_path, const char *res_path, md_coco_gt **gt_out, md_coco_dets **dets_out) {
    *gt_out = NULL;
    *dets_out = NULL;
    md_coco_gt *gt = NULL;
    dets_raw raw;
    memset(&raw, 0, sizeof raw);
    md_status st_gt = MD_OK, st_res = MD_OK;
    char *gt_msg = NULL, *res_msg = NULL; /* error messages are thread-local: carry them over */
#pragma omp parallel sections num_threads(omp_get_max_threads() > 1 ? 2 : 1)
    {
#pragma omp section
        {
            st_gt = md_coco_gt_load(gt_path, &gt);
            if (st_gt != MD_OK) gt_msg = strdup(md_last_error());
        }
#pragma omp section
        {
            st_res = read_results(res_path, &raw);
            if (st_res != MD_OK) res_msg = strdup(md_last_error());
        }
    }
    /* report the ground truth's error first, as pycocotools (it reads that file first) */
    md_status st_first = st_gt != MD_OK ? st_gt : st_res;
    if (st_first != MD_OK) {
        const char *msg = st_gt != MD_OK ? gt_msg : res_msg;
        md_set_error(st_first, "%s", msg ? msg : "out of memory");
        free(gt_msg);
        free(res_msg);
        md_coco_gt_free(gt);
        raw_free(&raw);
        return st_first;
    }
    md_status st = resolve(gt, res_path, &raw, dets_out);
    if (st != MD_OK) {
        md_coco_gt_free(gt);
        return st;
    }
    *gt_out = gt;
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
    md_status st = md_write_atomic(path, out, n);
    free(out);
    return st;
}
