/* coco_gt.c — COCO ground truth (instances JSON) for the evaluator (see include/minidet/cocoeval.h). */
#include "minidet/cocoeval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "minidet/fs.h"
#include "json_scan.h"

void md_coco_gt_free(md_coco_gt *gt) {
    if (!gt) return;
    free(gt->path);
    free(gt->img_ids);
    free(gt->img_file_order);
    free(gt->cat_ids);
    if (gt->cat_names)
        for (int k = 0; k < gt->n_cat; k++) free(gt->cat_names[k]);
    free(gt->cat_names);
    free(gt->ann_ids);
    free(gt->ann_img);
    free(gt->ann_cat);
    free(gt->ann_bbox);
    free(gt->ann_area);
    free(gt->ann_crowd);
    free(gt);
}

int md_coco_gt_img_index(const md_coco_gt *gt, int64_t img_id) { return md_eval_find_id(gt->img_ids, gt->n_img, img_id); }
int md_coco_gt_cat_index(const md_coco_gt *gt, int64_t cat_id) { return md_eval_find_id(gt->cat_ids, gt->n_cat, cat_id); }

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct { int64_t id; char *name; } cat_entry;
static int cmp_cat(const void *a, const void *b) { return cmp_i64(&((const cat_entry *)a)->id, &((const cat_entry *)b)->id); }

/* What the file holds, before ids are resolved. */
typedef struct {
    int64_t *img;
    size_t n_img, cap_img;
    cat_entry *cat;
    size_t n_cat, cap_cat;
    int64_t *ann_id, *ann_img, *ann_cat;
    double *bbox, *area;
    uint8_t *crowd;
    size_t n_ann, cap_ann;
    int have_images, have_cats;
} gt_raw;

static void raw_free(gt_raw *r) {
    free(r->img);
    for (size_t i = 0; i < r->n_cat; i++) free(r->cat[i].name);
    free(r->cat);
    free(r->ann_id);
    free(r->ann_img);
    free(r->ann_cat);
    free(r->bbox);
    free(r->area);
    free(r->crowd);
}

/* One growing array of elem-byte elements (md_eval_grow). */
static int grow_to(void **p, size_t *cap, size_t need, size_t elem) {
    void **const arr[1] = {p};
    return md_eval_grow(arr, &elem, 1, cap, need, 256);
}

enum { G_ID = 1, G_IMG = 2, G_CAT = 4, G_BBOX = 8, G_AREA = 16 };

/* An images[] or categories[] object: its integral "id" (required) and, where name is not NULL, its
 * string "name" as raw bytes (*name stays NULL when absent or not a string); other keys are skipped. */
static md_status parse_id_name(json_scan *j, int64_t *id, const char **name, size_t *name_len) {
    const char *k;
    size_t kl;
    md_status st;
    int seen = 0;
    char c[96];
    *id = 0;
    for (int more = !json_eat(j, '}'); more;) {
        if ((st = json_key(j, &k, &kl)) != MD_OK) return st;
        if (kl == 2 && !memcmp(k, "id", 2)) {
            if ((st = json_field_id(j, "id", id)) != MD_OK) return st;
            seen = 1;
        } else if (name && kl == 4 && !memcmp(k, "name", 4) && j->p < j->end && *j->p == '"') {
            if ((st = json_string_raw(j, name, name_len)) != MD_OK) return st;
        } else if ((st = json_skip_value(j, 1)) != MD_OK) return st;
        if ((st = json_next(j, '}', &more)) != MD_OK) return st;
    }
    if (!seen) return md_set_error(MD_ERR_FORMAT, "%s: %s: field id: missing", j->path, json_ctx(j, c, sizeof c));
    return MD_OK;
}

static md_status parse_image(json_scan *j, gt_raw *r) {
    int64_t id;
    md_status st = parse_id_name(j, &id, NULL, NULL);
    if (st != MD_OK) return st;
    if (grow_to((void **)&r->img, &r->cap_img, r->n_img + 1, sizeof(int64_t))) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", j->path);
    r->img[r->n_img++] = id;
    return MD_OK;
}

static md_status parse_category(json_scan *j, gt_raw *r) {
    int64_t id;
    const char *nm = NULL;
    size_t nl = 0;
    md_status st = parse_id_name(j, &id, &nm, &nl);
    if (st != MD_OK) return st;
    if (grow_to((void **)&r->cat, &r->cap_cat, r->n_cat + 1, sizeof(cat_entry))) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", j->path);
    char *name = nm ? json_decode_string(nm, nl) : strdup("");
    if (!name) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", j->path);
    r->cat[r->n_cat].id = id;
    r->cat[r->n_cat].name = name;
    r->n_cat++;
    return MD_OK;
}

static md_status parse_annotation(json_scan *j, gt_raw *r) {
    const char *k;
    size_t kl;
    md_status st;
    int64_t id = 0, img = 0, cat = 0;
    double bb[4] = {0, 0, 0, 0}, area = 0;
    int crowd = 0, seen = 0;
    char c[96];
    for (int more = !json_eat(j, '}'); more;) {
        if ((st = json_key(j, &k, &kl)) != MD_OK) return st;
#define KEY_IS(s) (kl == sizeof(s) - 1 && !memcmp(k, s, kl))
        if (KEY_IS("id")) {
            if ((st = json_field_id(j, "id", &id)) != MD_OK) return st;
            seen |= G_ID;
        } else if (KEY_IS("image_id")) {
            if ((st = json_field_id(j, "image_id", &img)) != MD_OK) return st;
            seen |= G_IMG;
        } else if (KEY_IS("category_id")) {
            if ((st = json_field_id(j, "category_id", &cat)) != MD_OK) return st;
            seen |= G_CAT;
        } else if (KEY_IS("bbox")) {
            if ((st = json_field_box(j, "bbox", bb)) != MD_OK) return st;
            seen |= G_BBOX;
        } else if (KEY_IS("area")) {
            if ((st = json_field_finite(j, "area", &area)) != MD_OK) return st;
            seen |= G_AREA;
        } else if (KEY_IS("iscrowd")) {
            /* a number or true/false; pycocotools tests its truth value */
            if (j->end - j->p >= 4 && !memcmp(j->p, "true", 4)) { crowd = 1; j->p += 4; }
            else if (j->end - j->p >= 5 && !memcmp(j->p, "false", 5)) { crowd = 0; j->p += 5; }
            else {
                double v;
                if ((st = json_field_finite(j, "iscrowd", &v)) != MD_OK) return st;
                crowd = v != 0;
            }
        } else if ((st = json_skip_value(j, 1)) != MD_OK) {
            return st;
        }
#undef KEY_IS
        if ((st = json_next(j, '}', &more)) != MD_OK) return st;
    }
    static const char *names[5] = {"id", "image_id", "category_id", "bbox", "area"};
    for (int f = 0; f < 5; f++)
        if (!(seen & (1 << f))) return md_set_error(MD_ERR_FORMAT, "%s: %s: field %s: missing", j->path, json_ctx(j, c, sizeof c), names[f]);
    size_t n = r->n_ann;
    void **const arr[6] = {(void **)&r->ann_id, (void **)&r->ann_img, (void **)&r->ann_cat, (void **)&r->bbox, (void **)&r->area,
                           (void **)&r->crowd};
    static const size_t elem[6] = {sizeof(int64_t), sizeof(int64_t), sizeof(int64_t), 4 * sizeof(double), sizeof(double), 1};
    if (md_eval_grow(arr, elem, 6, &r->cap_ann, n + 1, 1024))
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu annotations)", j->path, n + 1);
    r->ann_id[n] = id;
    r->ann_img[n] = img;
    r->ann_cat[n] = cat;
    memcpy(r->bbox + 4 * n, bb, sizeof bb);
    r->area[n] = area;
    r->crowd[n] = (uint8_t)crowd;
    r->n_ann = n + 1;
    return MD_OK;
}

/* '[' object (',' object)* ']' with each object read by fn. */
static md_status parse_list(json_scan *j, const char *name, md_status (*fn)(json_scan *, gt_raw *), gt_raw *r) {
    md_status st;
    if (j->p >= j->end || *j->p != '[') {
        const char *at = j->p;
        if ((st = json_skip_value(j, 1)) != MD_OK) return st;
        return md_set_error(MD_ERR_FORMAT, "%s: field %s: not a list (byte %zu)", j->path, name, (size_t)(at - j->buf));
    }
    j->p++;
    if (json_eat(j, ']')) return MD_OK;
    j->list = name;
    j->entry = 0;
    for (int more = 1; more; j->entry++) {
        json_ws(j);
        const char *at = j->p;
        if (j->p < j->end && *j->p == '{') {
            j->p++;
            if ((st = fn(j, r)) != MD_OK) return st;
        } else {
            if ((st = json_skip_value(j, 1)) != MD_OK) return st;
            return md_set_error(MD_ERR_FORMAT, "%s: %s[%zu]: not an object (byte %zu)", j->path, name, j->entry, (size_t)(at - j->buf));
        }
        if ((st = json_next(j, ']', &more)) != MD_OK) return st;
    }
    j->list = NULL;
    j->entry = (size_t)-1;
    return MD_OK;
}

static md_status parse_gt(json_scan *j, gt_raw *r) {
    md_status st;
    json_ws(j);
    if (j->p >= j->end) return json_error(j, "the file is empty");
    if (*j->p != '{') return md_set_error(MD_ERR_FORMAT, "%s: not a COCO instances file (the top level is not a JSON object)", j->path);
    j->p++;
    for (int more = !json_eat(j, '}'); more;) {
        const char *k;
        size_t kl;
        if ((st = json_key(j, &k, &kl)) != MD_OK) return st;
        if (kl == 6 && !memcmp(k, "images", 6)) {
            r->n_img = 0; /* a repeated key replaces the earlier value, as in json.load */
            if ((st = parse_list(j, "images", parse_image, r)) != MD_OK) return st;
            r->have_images = 1;
        } else if (kl == 10 && !memcmp(k, "categories", 10)) {
            for (size_t i = 0; i < r->n_cat; i++) free(r->cat[i].name);
            r->n_cat = 0;
            if ((st = parse_list(j, "categories", parse_category, r)) != MD_OK) return st;
            r->have_cats = 1;
        } else if (kl == 11 && !memcmp(k, "annotations", 11)) {
            r->n_ann = 0;
            if ((st = parse_list(j, "annotations", parse_annotation, r)) != MD_OK) return st;
        } else if ((st = json_skip_value(j, 1)) != MD_OK) {
            return st;
        }
        if ((st = json_next(j, '}', &more)) != MD_OK) return st;
    }
    json_ws(j);
    if (j->p != j->end) return json_error(j, "unexpected data after the JSON object");
    return MD_OK;
}

/* Sorted, checked ids; annotations resolved to indices. */
static md_status build_gt(const char *path, gt_raw *r, md_coco_gt *gt) {
    if (!r->have_images) return md_set_error(MD_ERR_FORMAT, "%s: field images: missing", path);
    if (!r->have_cats) return md_set_error(MD_ERR_FORMAT, "%s: field categories: missing", path);
    if (r->n_img == 0) return md_set_error(MD_ERR_FORMAT, "%s: field images: the list is empty (nothing to evaluate)", path);
    if (r->n_cat == 0) return md_set_error(MD_ERR_FORMAT, "%s: field categories: the list is empty (nothing to evaluate)", path);
    if (r->n_img > INT32_MAX || r->n_cat > INT32_MAX || r->n_ann > INT32_MAX)
        return md_set_error(MD_ERR_FORMAT, "%s: too many images, categories or annotations", path);
    /* the file's image order, kept for TIDE (it visits images in that order) */
    int64_t *file_ids = malloc(sizeof(int64_t) * r->n_img);
    if (!file_ids) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    memcpy(file_ids, r->img, sizeof(int64_t) * r->n_img);
    qsort(r->img, r->n_img, sizeof(int64_t), cmp_i64);
    for (size_t i = 1; i < r->n_img; i++)
        if (r->img[i] == r->img[i - 1]) {
            free(file_ids);
            return md_set_error(MD_ERR_FORMAT, "%s: images: id %lld appears twice", path, (long long)r->img[i]);
        }
    gt->img_file_order = malloc(sizeof(int32_t) * r->n_img);
    if (!gt->img_file_order) { free(file_ids); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    for (size_t i = 0; i < r->n_img; i++) gt->img_file_order[i] = md_eval_find_id(r->img, (int)r->n_img, file_ids[i]);
    free(file_ids);
    qsort(r->cat, r->n_cat, sizeof(cat_entry), cmp_cat);
    for (size_t i = 1; i < r->n_cat; i++)
        if (r->cat[i].id == r->cat[i - 1].id) return md_set_error(MD_ERR_FORMAT, "%s: categories: id %lld appears twice", path, (long long)r->cat[i].id);
    int na = (int)r->n_ann;
    size_t nab = na ? (size_t)na : 1;
    gt->n_img = (int)r->n_img;
    gt->n_cat = (int)r->n_cat;
    gt->img_ids = r->img;
    r->img = NULL;
    gt->cat_ids = malloc(sizeof(int64_t) * r->n_cat);
    gt->cat_names = calloc(r->n_cat, sizeof(char *));
    gt->ann_img = malloc(sizeof(int32_t) * nab);
    gt->ann_cat = malloc(sizeof(int32_t) * nab);
    if (!gt->cat_ids || !gt->cat_names || !gt->ann_img || !gt->ann_cat) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    for (size_t k = 0; k < r->n_cat; k++) {
        gt->cat_ids[k] = r->cat[k].id;
        gt->cat_names[k] = r->cat[k].name;
        r->cat[k].name = NULL;
    }
    for (int i = 0; i < na; i++) {
        int ii = md_coco_gt_img_index(gt, r->ann_img[i]);
        if (ii < 0) return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field image_id: image %lld is not in images", path, i, (long long)r->ann_img[i]);
        int ci = md_coco_gt_cat_index(gt, r->ann_cat[i]);
        if (ci < 0)
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field category_id: category %lld is not in categories", path, i, (long long)r->ann_cat[i]);
        gt->ann_img[i] = ii;
        gt->ann_cat[i] = ci;
    }
    /* annotation ids must be unique: pycocotools indexes annotations by id, so a
     * repeated id would silently evaluate one box twice and drop the other */
    if (na > 1) {
        int64_t *ids = malloc(sizeof(int64_t) * na);
        if (!ids) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
        memcpy(ids, r->ann_id, sizeof(int64_t) * na);
        qsort(ids, na, sizeof(int64_t), cmp_i64);
        for (int i = 1; i < na; i++)
            if (ids[i] == ids[i - 1]) {
                long long dup = (long long)ids[i];
                free(ids);
                return md_set_error(MD_ERR_FORMAT, "%s: annotations: id %lld appears twice", path, dup);
            }
        free(ids);
    }
    gt->n_ann = na;
    gt->ann_ids = r->ann_id;
    gt->ann_bbox = r->bbox;
    gt->ann_area = r->area;
    gt->ann_crowd = r->crowd;
    r->ann_id = NULL;
    r->bbox = NULL;
    r->area = NULL;
    r->crowd = NULL;
    if (!gt->ann_ids) { /* no annotations: keep every array non-NULL */
        gt->ann_ids = malloc(sizeof(int64_t));
        gt->ann_bbox = malloc(4 * sizeof(double));
        gt->ann_area = malloc(sizeof(double));
        gt->ann_crowd = malloc(1);
        if (!gt->ann_ids || !gt->ann_bbox || !gt->ann_area || !gt->ann_crowd) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    return MD_OK;
}

md_status md_coco_gt_load(const char *path, md_coco_gt **out) {
    *out = NULL;
    char *buf;
    size_t len;
    md_status st = md_read_file(path, &buf, &len);
    if (st != MD_OK) return st;
    md_coco_gt *gt = calloc(1, sizeof *gt);
    if (!gt || !(gt->path = strdup(path))) {
        free(gt);
        free(buf);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    gt_raw raw;
    memset(&raw, 0, sizeof raw);
    json_scan j;
    json_init(&j, path, buf, len);
    st = parse_gt(&j, &raw);
    if (st == MD_OK) st = build_gt(path, &raw, gt);
    raw_free(&raw);
    free(buf);
    if (st != MD_OK) {
        md_coco_gt_free(gt);
        return st;
    }
    *out = gt;
    return MD_OK;
}
