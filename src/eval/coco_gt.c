/* coco_gt.c — COCO ground truth (instances JSON) for the evaluator (see include/minidet/cocoeval.h). */
#include "minidet/cocoeval.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"

void md_coco_gt_free(md_coco_gt *gt) {
    if (!gt) return;
    free(gt->path);
    free(gt->img_ids);
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

static int bsearch_i64(const int64_t *a, int n, int64_t v) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1;
        else if (a[mid] > v) hi = mid - 1;
        else return mid;
    }
    return -1;
}

int md_coco_gt_img_index(const md_coco_gt *gt, int64_t img_id) { return bsearch_i64(gt->img_ids, gt->n_img, img_id); }
int md_coco_gt_cat_index(const md_coco_gt *gt, int64_t cat_id) { return bsearch_i64(gt->cat_ids, gt->n_cat, cat_id); }

/* An integral JSON number (ids). 0 on success; otherwise *why says what is wrong. */
static int json_int(const cJSON *v, int64_t *out, const char **why) {
    if (!v) { *why = "missing"; return -1; }
    if (!cJSON_IsNumber(v)) { *why = "not a number"; return -1; }
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) { *why = "not an integer"; return -1; }
    *out = (int64_t)d;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct { int64_t id; int pos; } id_pos;
static int cmp_id_pos(const void *a, const void *b) {
    const id_pos *x = a, *y = b;
    if (x->id != y->id) return (x->id > y->id) - (x->id < y->id);
    return x->pos - y->pos;
}

static md_status load_tree(const char *path, const cJSON *root, md_coco_gt *gt) {
    if (!cJSON_IsObject(root)) return md_set_error(MD_ERR_FORMAT, "%s: not a COCO instances file (the top level is not a JSON object)", path);
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *cats = cJSON_GetObjectItemCaseSensitive(root, "categories");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    const char *why = NULL;
    if (!cJSON_IsArray(images)) return md_set_error(MD_ERR_FORMAT, "%s: field images: %s", path, images ? "not a list" : "missing");
    if (!cJSON_IsArray(cats)) return md_set_error(MD_ERR_FORMAT, "%s: field categories: %s", path, cats ? "not a list" : "missing");
    if (anns && !cJSON_IsArray(anns)) return md_set_error(MD_ERR_FORMAT, "%s: field annotations: not a list", path);
    int ni = cJSON_GetArraySize(images), nc = cJSON_GetArraySize(cats), na = anns ? cJSON_GetArraySize(anns) : 0;
    if (ni == 0) return md_set_error(MD_ERR_FORMAT, "%s: field images: the list is empty (nothing to evaluate)", path);
    if (nc == 0) return md_set_error(MD_ERR_FORMAT, "%s: field categories: the list is empty (nothing to evaluate)", path);

    gt->n_img = ni;
    gt->n_cat = nc;
    gt->n_ann = na;
    gt->img_ids = malloc(sizeof(int64_t) * ni);
    gt->cat_ids = malloc(sizeof(int64_t) * nc);
    gt->cat_names = calloc(nc, sizeof(char *));
    size_t nab = na ? (size_t)na : 1;
    gt->ann_ids = malloc(sizeof(int64_t) * nab);
    gt->ann_img = malloc(sizeof(int32_t) * nab);
    gt->ann_cat = malloc(sizeof(int32_t) * nab);
    gt->ann_bbox = malloc(sizeof(double) * 4 * nab);
    gt->ann_area = malloc(sizeof(double) * nab);
    gt->ann_crowd = malloc(nab);
    if (!gt->img_ids || !gt->cat_ids || !gt->cat_names || !gt->ann_ids || !gt->ann_img || !gt->ann_cat ||
        !gt->ann_bbox || !gt->ann_area || !gt->ann_crowd)
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%d annotations)", path, na);

    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, images) {
        if (!cJSON_IsObject(it)) return md_set_error(MD_ERR_FORMAT, "%s: images[%d]: not an object", path, i);
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &gt->img_ids[i], &why))
            return md_set_error(MD_ERR_FORMAT, "%s: images[%d]: field id: %s", path, i, why);
        i++;
    }
    qsort(gt->img_ids, ni, sizeof(int64_t), cmp_i64);
    for (i = 1; i < ni; i++)
        if (gt->img_ids[i] == gt->img_ids[i - 1])
            return md_set_error(MD_ERR_FORMAT, "%s: images: id %lld appears twice", path, (long long)gt->img_ids[i]);

    /* categories: sort (id, file position) so names follow their ids */
    id_pos *cp = malloc(sizeof(id_pos) * nc);
    if (!cp) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    const cJSON **cobj = malloc(sizeof(cJSON *) * nc);
    if (!cobj) { free(cp); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    i = 0;
    cJSON_ArrayForEach(it, cats) {
        cobj[i] = it;
        if (!cJSON_IsObject(it)) { free(cp); free(cobj); return md_set_error(MD_ERR_FORMAT, "%s: categories[%d]: not an object", path, i); }
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &cp[i].id, &why)) {
            free(cp);
            free(cobj);
            return md_set_error(MD_ERR_FORMAT, "%s: categories[%d]: field id: %s", path, i, why);
        }
        cp[i].pos = i;
        i++;
    }
    qsort(cp, nc, sizeof(id_pos), cmp_id_pos);
    md_status st = MD_OK;
    for (i = 0; i < nc && st == MD_OK; i++) {
        if (i > 0 && cp[i].id == cp[i - 1].id) {
            st = md_set_error(MD_ERR_FORMAT, "%s: categories: id %lld appears twice", path, (long long)cp[i].id);
            break;
        }
        gt->cat_ids[i] = cp[i].id;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cobj[cp[i].pos], "name");
        const char *s = cJSON_IsString(nm) ? nm->valuestring : "";
        gt->cat_names[i] = strdup(s);
        if (!gt->cat_names[i]) st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    free(cp);
    free(cobj);
    if (st != MD_OK) return st;

    i = 0;
    if (anns) cJSON_ArrayForEach(it, anns) {
        int64_t v;
        if (!cJSON_IsObject(it)) return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: not an object", path, i);
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &gt->ann_ids[i], &why))
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field id: %s", path, i, why);
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "image_id"), &v, &why))
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field image_id: %s", path, i, why);
        int ii = md_coco_gt_img_index(gt, v);
        if (ii < 0) return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field image_id: image %lld is not in images", path, i, (long long)v);
        gt->ann_img[i] = ii;
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "category_id"), &v, &why))
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field category_id: %s", path, i, why);
        int ci = md_coco_gt_cat_index(gt, v);
        if (ci < 0) return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field category_id: category %lld is not in categories", path, i, (long long)v);
        gt->ann_cat[i] = ci;
        const cJSON *bb = cJSON_GetObjectItemCaseSensitive(it, "bbox");
        if (!cJSON_IsArray(bb) || cJSON_GetArraySize(bb) != 4)
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field bbox: %s", path, i, bb ? "not a list of 4 numbers [x, y, w, h]" : "missing");
        int j = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, bb) {
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
                return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field bbox: element %d is not a finite number", path, i, j);
            gt->ann_bbox[4 * (size_t)i + j++] = x->valuedouble;
        }
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(it, "area");
        if (!cJSON_IsNumber(ar) || !isfinite(ar->valuedouble))
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field area: %s", path, i, ar ? "not a finite number" : "missing");
        gt->ann_area[i] = ar->valuedouble;
        const cJSON *cr = cJSON_GetObjectItemCaseSensitive(it, "iscrowd");
        if (cr && !cJSON_IsNumber(cr) && !cJSON_IsBool(cr))
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: field iscrowd: not a number", path, i);
        gt->ann_crowd[i] = cr ? (cJSON_IsBool(cr) ? cJSON_IsTrue(cr) : cr->valuedouble != 0) : 0;
        i++;
    }
    /* annotation ids must be unique: pycocotools indexes annotations by id, so a
     * repeated id would silently evaluate one box twice and drop the other */
    if (na > 1) {
        int64_t *ids = malloc(sizeof(int64_t) * na);
        if (!ids) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
        memcpy(ids, gt->ann_ids, sizeof(int64_t) * na);
        qsort(ids, na, sizeof(int64_t), cmp_i64);
        for (i = 1; i < na; i++)
            if (ids[i] == ids[i - 1]) {
                long long dup = (long long)ids[i];
                free(ids);
                return md_set_error(MD_ERR_FORMAT, "%s: annotations: id %lld appears twice", path, dup);
            }
        free(ids);
    }
    return MD_OK;
}

md_status md_coco_gt_load(const char *path, md_coco_gt **out) {
    *out = NULL;
    char *buf;
    size_t len;
    md_status st = md_eval_read_file(path, &buf, &len);
    if (st != MD_OK) return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1); /* + the NUL: rejects trailing garbage */
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t off = (ep && ep >= buf && ep <= buf + len) ? (size_t)(ep - buf) : len;
        free(buf);
        return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu%s", path, off, off >= len ? " (truncated file?)" : "");
    }
    md_coco_gt *gt = calloc(1, sizeof *gt);
    if (!gt || !(gt->path = strdup(path))) {
        free(gt);
        cJSON_Delete(root);
        free(buf);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    st = load_tree(path, root, gt);
    cJSON_Delete(root);
    free(buf);
    if (st != MD_OK) {
        md_coco_gt_free(gt);
        return st;
    }
    *out = gt;
    return MD_OK;
}
