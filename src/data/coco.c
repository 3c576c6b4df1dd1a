/* coco.c — COCO instances JSON loader (see include/minidet/coco.h).
 *
 * The file is mmap'ed and walked element by element: the walker steps over
 * the top-level object and the "images" / "annotations" / "categories"
 * arrays (whitespace and the punctuation between values); each value itself
 * (a key, an image, an annotation, "info", ...) is parsed by cJSON, converted
 * into the compact arrays and freed. Pages behind the read position are
 * released with madvise so the mapping does not accumulate in RSS. */
#include "minidet/coco.h"
#include "minidet/log.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RELEASE_CHUNK ((size_t)64 << 20)

typedef struct {
    const char *path;
    const char *buf;
    size_t len, pos, released;
} jwalk;

/* ---------- growable arrays and the string pool ---------- */

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 1;
    int nc = *cap ? *cap : 256;
    while (nc < need) nc = nc < (1 << 29) ? nc * 2 : need;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return 0;
    *p = q;
    *cap = nc;
    return 1;
}

typedef struct {
    char *data;
    size_t len, cap;
} spool;

/* Appends s (with its NUL) and returns its offset, or (size_t)-1 when out of memory. */
static size_t spool_add(spool *s, const char *str) {
    size_t n = strlen(str) + 1;
    if (s->len + n > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->len + n) nc *= 2;
        char *q = realloc(s->data, nc);
        if (!q) return (size_t)-1;
        s->data = q;
        s->cap = nc;
    }
    memcpy(s->data + s->len, str, n);
    s->len += n;
    return s->len - n;
}

/* ---------- the walker ---------- */

static md_status jw_error(jwalk *w, size_t off, const char *what) {
    if (off > w->len) off = w->len;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (w->buf[i] == '\n') { line++; col = 1; }
        else col++;
    }
    if (off >= w->len)
        return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu (line %zu, column %zu): %s (unexpected end of file — truncated?)",
                            w->path, off, line, col, what);
    char near[24];
    size_t k = 0;
    for (size_t i = off; i < w->len && k < 16; i++) {
        char ch = w->buf[i];
        if (ch == '\n' || ch == '\r') break;
        near[k++] = (ch >= 32 && ch < 127) ? ch : '?';
    }
    near[k] = 0;
    const char *hint = "";
    if (!strncmp(w->buf + off, "NaN", 3) || !strncmp(w->buf + off, "Infinity", 8) || !strncmp(w->buf + off, "-Infinity", 9))
        hint = " (NaN/Infinity are not JSON; Python's json.dump writes them unless allow_nan=False)";
    return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu (line %zu, column %zu) near \"%s\": %s%s", w->path, off,
                        line, col, near, what, hint);
}

static void jw_ws(jwalk *w) {
    while (w->pos < w->len) {
        char ch = w->buf[w->pos];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
        w->pos++;
    }
}

static int jw_peek(jwalk *w) {
    jw_ws(w);
    return w->pos < w->len ? (unsigned char)w->buf[w->pos] : -1;
}

static void jw_release(jwalk *w) {
    if (w->pos - w->released < RELEASE_CHUNK) return;
    long pg = sysconf(_SC_PAGESIZE);
    size_t upto = (w->pos / (size_t)pg) * (size_t)pg;
    if (upto > w->released) {
        madvise((void *)(w->buf + w->released), upto - w->released, MADV_DONTNEED);
        w->released = upto;
    }
}

/* Parses the value at the read position with cJSON; ctx names it in errors ("annotations[3]"). */
static md_status jw_value(jwalk *w, cJSON **out, const char *ctx) {
    jw_ws(w);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(w->buf + w->pos, w->len - w->pos, &end, 0);
    if (!v) {
        size_t off = end ? (size_t)(end - w->buf) : w->pos;
        size_t last = w->len;
        while (last > 0 && strchr(" \t\r\n", w->buf[last - 1])) last--;
        char what[160];
        snprintf(what, sizeof what, "invalid value%s%s%s", ctx ? " in " : "", ctx ? ctx : "",
                 last > 0 && w->buf[last - 1] != '}' ? " (the file does not end with '}': truncated?)" : "");
        return jw_error(w, off, what);
    }
    w->pos = (size_t)(end - w->buf);
    *out = v;
    return MD_OK;
}

/* ---------- per-object conversion ---------- */

typedef struct {
    md_coco *c;
    const md_coco_options *opt;
    spool strings;
    int cap_images, cap_anns, cap_cats;
    size_t *img_name_off, *cat_name_off, *cat_super_off;
    int cap_img_off, cap_cat_off, cap_cat_soff;
    int seen_images, seen_anns, seen_cats;
} loader_ctx;

static const char *type_name(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* Integer-valued JSON number within +-2^53. */
static int get_int64(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(fabs(d) <= 9007199254740992.0) || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

#define OBJ_FMT "%s: %s[%d]%s"

static const char *id_suffix(const cJSON *o, char *buf, size_t n) {
    int64_t id;
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
    if (v && get_int64(v, &id)) snprintf(buf, n, " (id %lld)", (long long)id);
    else buf[0] = 0;
    return buf;
}

static md_status field_error(loader_ctx *L, const char *arr, int idx, const cJSON *o, const char *field, const char *what) {
    char ids[48];
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, field) : NULL;
    return md_set_error(MD_ERR_FORMAT, OBJ_FMT ": field '%s': %s (got %s)", L->c->path, arr, idx, id_suffix(o, ids, sizeof ids),
                        field, what, type_name(v));
}

static md_status add_image(loader_ctx *L, const cJSON *o, int idx) {
    md_coco *c = L->c;
    if (!cJSON_IsObject(o)) return md_set_error(MD_ERR_FORMAT, "%s: images[%d]: expected an object (got %s)", c->path, idx, type_name(o));
    int64_t id, w, h;
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "id"), &id)) return field_error(L, "images", idx, o, "id", "must be an integer");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(o, "file_name");
    if (!cJSON_IsString(fn) || !fn->valuestring[0]) return field_error(L, "images", idx, o, "file_name", "must be a non-empty string");
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "width"), &w) || w <= 0 || w > 1000000)
        return field_error(L, "images", idx, o, "width", "must be a positive integer");
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "height"), &h) || h <= 0 || h > 1000000)
        return field_error(L, "images", idx, o, "height", "must be a positive integer");
    int n = c->num_images;
    if (!grow((void **)&c->images, &L->cap_images, n + 1, sizeof *c->images) ||
        !grow((void **)&L->img_name_off, &L->cap_img_off, n + 1, sizeof *L->img_name_off))
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory at images[%d]", c->path, idx);
    size_t off = spool_add(&L->strings, fn->valuestring);
    if (off == (size_t)-1) return md_set_error(MD_ERR_NOMEM, "%s: out of memory at images[%d]", c->path, idx);
    md_coco_image *im = &c->images[n];
    memset(im, 0, sizeof *im);
    im->id = id;
    im->width = (int)w;
    im->height = (int)h;
    L->img_name_off[n] = off;
    c->num_images = n + 1;
    return MD_OK;
}

static md_status add_category(loader_ctx *L, const cJSON *o, int idx) {
    md_coco *c = L->c;
    if (!cJSON_IsObject(o)) return md_set_error(MD_ERR_FORMAT, "%s: categories[%d]: expected an object (got %s)", c->path, idx, type_name(o));
    int64_t id;
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "id"), &id) || id < 0 || id > 1000000)
        return field_error(L, "categories", idx, o, "id", "must be a non-negative integer");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(nm)) return field_error(L, "categories", idx, o, "name", "must be a string");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "supercategory");
    int n = c->num_cats;
    if (!grow((void **)&c->cats, &L->cap_cats, n + 1, sizeof *c->cats) ||
        !grow((void **)&L->cat_name_off, &L->cap_cat_off, n + 1, sizeof(size_t)) ||
        !grow((void **)&L->cat_super_off, &L->cap_cat_soff, n + 1, sizeof(size_t)))
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory at categories[%d]", c->path, idx);
    size_t o1 = spool_add(&L->strings, nm->valuestring);
    size_t o2 = spool_add(&L->strings, cJSON_IsString(sc) ? sc->valuestring : "");
    if (o1 == (size_t)-1 || o2 == (size_t)-1) return md_set_error(MD_ERR_NOMEM, "%s: out of memory at categories[%d]", c->path, idx);
    c->cats[n].id = (int)id;
    L->cat_name_off[n] = o1;
    L->cat_super_off[n] = o2;
    c->num_cats = n + 1;
    return MD_OK;
}

static md_status add_annotation(loader_ctx *L, const cJSON *o, int idx) {
    md_coco *c = L->c;
    if (!cJSON_IsObject(o)) return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d]: expected an object (got %s)", c->path, idx, type_name(o));
    int64_t id = (int64_t)idx + 1, image_id, cat, crowd = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (v && !get_int64(v, &id)) return field_error(L, "annotations", idx, o, "id", "must be an integer");
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "image_id"), &image_id))
        return field_error(L, "annotations", idx, o, "image_id", "must be an integer");
    if (!get_int64(cJSON_GetObjectItemCaseSensitive(o, "category_id"), &cat) || cat < 0 || cat > 1000000)
        return field_error(L, "annotations", idx, o, "category_id", "must be a non-negative integer");
    v = cJSON_GetObjectItemCaseSensitive(o, "iscrowd");
    if (v && !cJSON_IsNull(v)) {
        if (cJSON_IsBool(v)) crowd = cJSON_IsTrue(v);
        else if (!get_int64(v, &crowd) || (crowd != 0 && crowd != 1))
            return field_error(L, "annotations", idx, o, "iscrowd", "must be 0 or 1");
    }
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(o, "bbox");
    if (!cJSON_IsArray(bb) || cJSON_GetArraySize(bb) != 4)
        return field_error(L, "annotations", idx, o, "bbox", "must be an array of 4 numbers [x, y, w, h]");
    double b[4];
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, bb) {
        if (!cJSON_IsNumber(e)) return field_error(L, "annotations", idx, o, "bbox", "must be an array of 4 numbers [x, y, w, h]");
        b[k++] = e->valuedouble;
    }
    double area = b[2] * b[3];
    v = cJSON_GetObjectItemCaseSensitive(o, "area");
    if (v) {
        if (!cJSON_IsNumber(v)) return field_error(L, "annotations", idx, o, "area", "must be a number");
        area = v->valuedouble;
    }
    int n = c->num_anns;
    if (!grow((void **)&c->anns, &L->cap_anns, n + 1, sizeof *c->anns))
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory at annotations[%d]", c->path, idx);
    md_coco_ann *a = &c->anns[n];
    memset(a, 0, sizeof *a);
    a->id = id;
    a->image_id = image_id;
    memcpy(a->bbox, b, sizeof b);
    a->area = area;
    a->category_id = (int)cat;
    a->iscrowd = (uint8_t)crowd;
    a->image_index = idx; /* temporarily: position in the file's array, for messages */
    c->num_anns = n + 1;
    return MD_OK;
}

/* Streams one of the three arrays. */
static md_status walk_array(jwalk *w, loader_ctx *L, const char *key) {
    if (jw_peek(w) != '[') {
        cJSON *v = NULL;
        md_status st = jw_value(w, &v, key);
        if (st) return st;
        const char *t = type_name(v);
        cJSON_Delete(v);
        return md_set_error(MD_ERR_FORMAT, "%s: top-level '%s' must be an array (got %s)", w->path, key, t);
    }
    w->pos++;
    if (jw_peek(w) == ']') { w->pos++; return MD_OK; }
    for (int idx = 0;; idx++) {
        cJSON *v = NULL;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "%s[%d]", key, idx);
        md_status st = jw_value(w, &v, ctx);
        if (st) return st;
        if (key[0] == 'i') st = add_image(L, v, idx);
        else if (key[0] == 'a') st = add_annotation(L, v, idx);
        else st = add_category(L, v, idx);
        cJSON_Delete(v);
        if (st) return st;
        jw_release(w);
        int ch = jw_peek(w);
        if (ch == ',') { w->pos++; continue; }
        if (ch == ']') { w->pos++; return MD_OK; }
        return jw_error(w, w->pos, ch < 0 ? "array not closed" : "expected ',' or ']' after an array element");
    }
}

static md_status walk_file(jwalk *w, loader_ctx *L) {
    int seen[3] = {0, 0, 0};
    static const char *keys[3] = {"images", "annotations", "categories"};
    if (w->len >= 3 && !memcmp(w->buf, "\xEF\xBB\xBF", 3)) w->pos = 3; /* UTF-8 byte order mark */
    int ch = jw_peek(w);
    if (ch != '{') return jw_error(w, w->pos, "the file must be a JSON object {\"images\": ..., \"annotations\": ..., \"categories\": ...}");
    w->pos++;
    if (jw_peek(w) != '}') {
        for (;;) {
            cJSON *k = NULL;
            if (jw_peek(w) != '"') return jw_error(w, w->pos, "expected a key string");
            md_status st = jw_value(w, &k, "a top-level key");
            if (st) return st;
            char key[64];
            snprintf(key, sizeof key, "%s", k->valuestring);
            cJSON_Delete(k);
            if (jw_peek(w) != ':') return jw_error(w, w->pos, "expected ':' after a key");
            w->pos++;
            int which = -1;
            for (int i = 0; i < 3; i++)
                if (!strcmp(key, keys[i])) which = i;
            if (which >= 0) {
                if (seen[which]) return md_set_error(MD_ERR_FORMAT, "%s: top-level key '%s' appears twice", w->path, key);
                seen[which] = 1;
                st = walk_array(w, L, keys[which]);
                if (st) return st;
            } else {
                cJSON *v = NULL;
                st = jw_value(w, &v, key);
                if (st) return st;
                cJSON_Delete(v);
            }
            jw_release(w);
            ch = jw_peek(w);
            if (ch == ',') { w->pos++; continue; }
            if (ch == '}') break;
            return jw_error(w, w->pos, ch < 0 ? "object not closed" : "expected ',' or '}' after a top-level value");
        }
    }
    w->pos++;
    if (jw_peek(w) != -1) return jw_error(w, w->pos, "trailing characters after the top-level object");
    for (int i = 0; i < 3; i++)
        if (!seen[i])
            return md_set_error(MD_ERR_FORMAT, "%s: missing top-level key '%s' (a COCO instances file needs images, annotations and categories)",
                                w->path, keys[i]);
    return MD_OK;
}

/* ---------- post-processing ---------- */

static int cmp_cat(const void *a, const void *b) {
    int x = ((const md_coco_category *)a)->id, y = ((const md_coco_category *)b)->id;
    return (x > y) - (x < y);
}

typedef struct {
    int64_t id;
    int index;
} id_index;

static int cmp_id_index(const void *a, const void *b) {
    int64_t x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
    return (x > y) - (x < y);
}

int md_coco_find_image(const md_coco *c, int64_t image_id) {
    int lo = 0, hi = c->num_images - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->id_sorted[mid] == image_id) return c->id_sorted_index[mid];
        if (c->id_sorted[mid] < image_id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int cat_index(const md_coco *c, int cat) {
    int lo = 0, hi = c->num_cats - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->cats[mid].id == cat) return mid;
        if (c->cats[mid].id < cat) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int md_coco_label_of(const md_coco *c, int category_id) {
    int i = cat_index(c, category_id);
    if (i < 0) return -1;
    return c->layout == MD_LABELS_COCO_ID ? category_id : i + 1;
}

int md_coco_category_of_label(const md_coco *c, int label) {
    if (label <= 0 || label >= c->num_classes) return -1;
    return c->label_to_cat[label];
}

static md_status build_index(md_coco *c, loader_ctx *L) {
    /* strings: offsets -> pointers (the pool no longer moves) */
    for (int i = 0; i < c->num_images; i++) c->images[i].file_name = c->strings + L->img_name_off[i];
    for (int i = 0; i < c->num_cats; i++) {
        c->cats[i].name = c->strings + L->cat_name_off[i];
        c->cats[i].supercategory = c->strings + L->cat_super_off[i];
    }
    qsort(c->cats, (size_t)c->num_cats, sizeof *c->cats, cmp_cat);
    for (int i = 1; i < c->num_cats; i++)
        if (c->cats[i].id == c->cats[i - 1].id)
            return md_set_error(MD_ERR_FORMAT, "%s: categories: duplicate category id %d", c->path, c->cats[i].id);
    /* label map */
    if (c->layout == MD_LABELS_COCO_ID) {
        int maxid = c->num_cats ? c->cats[c->num_cats - 1].id : 0;
        if (c->num_cats && c->cats[0].id <= 0)
            return md_set_error(MD_ERR_FORMAT, "%s: categories: id %d cannot be a label with label_map=coco_id (0 is background)", c->path,
                                c->cats[0].id);
        c->num_classes = maxid + 1 > 91 ? maxid + 1 : 91;
    } else {
        c->num_classes = c->num_cats + 1;
    }
    c->label_to_cat = calloc((size_t)c->num_classes, sizeof *c->label_to_cat);
    if (!c->label_to_cat) return md_set_error(MD_ERR_NOMEM, "%s: out of memory (label map)", c->path);
    for (int i = 0; i < c->num_classes; i++) c->label_to_cat[i] = -1;
    for (int i = 0; i < c->num_cats; i++) c->label_to_cat[md_coco_label_of(c, c->cats[i].id)] = c->cats[i].id;

    /* image id index */
    id_index *ix = malloc((size_t)(c->num_images ? c->num_images : 1) * sizeof *ix);
    c->id_sorted = malloc((size_t)(c->num_images ? c->num_images : 1) * sizeof *c->id_sorted);
    c->id_sorted_index = malloc((size_t)(c->num_images ? c->num_images : 1) * sizeof *c->id_sorted_index);
    if (!ix || !c->id_sorted || !c->id_sorted_index) {
        free(ix);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory (image index)", c->path);
    }
    for (int i = 0; i < c->num_images; i++) { ix[i].id = c->images[i].id; ix[i].index = i; }
    qsort(ix, (size_t)c->num_images, sizeof *ix, cmp_id_index);
    for (int i = 0; i < c->num_images; i++) {
        if (i > 0 && ix[i].id == ix[i - 1].id) {
            md_status st = md_set_error(MD_ERR_FORMAT, "%s: images[%d] (id %lld): field 'id': duplicate image id (also images[%d])", c->path,
                                        ix[i].index > ix[i - 1].index ? ix[i].index : ix[i - 1].index, (long long)ix[i].id,
                                        ix[i].index > ix[i - 1].index ? ix[i - 1].index : ix[i].index);
            free(ix);
            return st;
        }
        c->id_sorted[i] = ix[i].id;
        c->id_sorted_index[i] = ix[i].index;
    }
    free(ix);
    return MD_OK;
}

/* Resolves references, applies the box policy, groups annotations by image. */
static md_status resolve_annotations(md_coco *c, const md_coco_options *opt) {
    int kept = 0;
    for (int i = 0; i < c->num_anns; i++) {
        md_coco_ann a = c->anns[i];
        int file_idx = a.image_index;
        int im = md_coco_find_image(c, a.image_id);
        int label = md_coco_label_of(c, a.category_id);
        if (im < 0 || label < 0) {
            if (opt->bad_refs == MD_POLICY_FAIL)
                return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d] (id %lld): field '%s': unknown %s id %lld", c->path, file_idx,
                                    (long long)a.id, im < 0 ? "image_id" : "category_id", im < 0 ? "image" : "category",
                                    im < 0 ? (long long)a.image_id : (long long)a.category_id);
            if (c->stats.skipped_refs++ == 0)
                md_log(MD_LOG_WARN, "%s: annotations[%d] (id %lld): unknown %s id %lld: skipped (further ones counted)", c->path, file_idx,
                       (long long)a.id, im < 0 ? "image" : "category", im < 0 ? (long long)a.image_id : (long long)a.category_id);
            continue;
        }
        a.image_index = im;
        a.label = label;
        double W = c->images[im].width, H = c->images[im].height;
        double x1 = a.bbox[0], y1 = a.bbox[1], x2 = a.bbox[0] + a.bbox[2], y2 = a.bbox[1] + a.bbox[3];
        const char *bad = NULL;
        if (!isfinite(x1) || !isfinite(y1) || !isfinite(x2) || !isfinite(y2) || !isfinite(a.bbox[2]) || !isfinite(a.bbox[3])) {
            bad = "is not finite";
            a.flags |= MD_ANN_DROPPED;
            c->stats.dropped_nonfinite++;
        } else if (!(a.bbox[2] > 0) || !(a.bbox[3] > 0)) {
            bad = "has width or height <= 0";
            a.flags |= MD_ANN_DROPPED;
            c->stats.dropped_degenerate++;
        } else if (x1 < 0 || y1 < 0 || x2 > W || y2 > H) {
            bad = "is not inside the image";
            if (opt->boxes == MD_BOX_DROP) {
                a.flags |= MD_ANN_DROPPED;
                c->stats.dropped_outside++;
            } else {
                x1 = fmin(fmax(x1, 0), W);
                x2 = fmin(fmax(x2, 0), W);
                y1 = fmin(fmax(y1, 0), H);
                y2 = fmin(fmax(y2, 0), H);
                if (!(x2 > x1) || !(y2 > y1)) {
                    a.flags |= MD_ANN_DROPPED;
                    c->stats.dropped_degenerate++;
                } else {
                    a.flags |= MD_ANN_CLIPPED;
                    c->stats.clipped++;
                }
            }
        }
        if (bad && opt->boxes == MD_BOX_FAIL)
            return md_set_error(MD_ERR_FORMAT, "%s: annotations[%d] (id %lld): field 'bbox': [%g, %g, %g, %g] %s (image id %lld is %dx%d)",
                                c->path, file_idx, (long long)a.id, a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3], bad,
                                (long long)a.image_id, c->images[im].width, c->images[im].height);
        if (a.iscrowd) {
            a.flags |= MD_ANN_CROWD;
            c->stats.crowd++;
        }
        a.box[0] = (float)x1;
        a.box[1] = (float)y1;
        a.box[2] = (float)x2;
        a.box[3] = (float)y2;
        c->anns[kept++] = a;
    }
    c->num_anns = kept;
    /* stable counting sort by image index */
    for (int i = 0; i < c->num_anns; i++) c->images[c->anns[i].image_index].ann_count++;
    int off = 0;
    for (int i = 0; i < c->num_images; i++) {
        c->images[i].ann_begin = off;
        off += c->images[i].ann_count;
        c->images[i].ann_count = 0;
    }
    md_coco_ann *sorted = malloc((size_t)(c->num_anns ? c->num_anns : 1) * sizeof *sorted);
    if (!sorted) return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%d annotations)", c->path, c->num_anns);
    for (int i = 0; i < c->num_anns; i++) {
        md_coco_image *im = &c->images[c->anns[i].image_index];
        sorted[im->ann_begin + im->ann_count++] = c->anns[i];
        if (!(c->anns[i].flags & (MD_ANN_CROWD | MD_ANN_DROPPED))) im->num_targets++;
    }
    free(c->anns);
    c->anns = sorted;
    for (int i = 0; i < c->num_images; i++)
        if (!c->images[i].num_targets) c->stats.images_without_targets++;
    return MD_OK;
}

void md_coco_options_default(md_coco_options *o) {
    memset(o, 0, sizeof *o);
    o->labels = MD_LABELS_CONTIGUOUS;
    o->boxes = MD_BOX_CLIP;
    o->bad_refs = MD_POLICY_FAIL;
}

void md_coco_free(md_coco *c) {
    free(c->path);
    free(c->images);
    free(c->anns);
    free(c->cats);
    free(c->label_to_cat);
    free(c->strings);
    free(c->id_sorted);
    free(c->id_sorted_index);
    memset(c, 0, sizeof *c);
}

md_status md_coco_load(md_coco *c, const char *path, const md_coco_options *opt) {
    md_coco_options def;
    if (!opt) { md_coco_options_default(&def); opt = &def; }
    memset(c, 0, sizeof *c);
    c->layout = opt->labels;
    c->path = strdup(path);
    if (!c->path) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        md_status st = md_set_error(MD_ERR_IO, "%s: cannot open annotation file: %s", path, strerror(errno));
        md_coco_free(c);
        return st;
    }
    struct stat sb;
    md_status st = MD_OK;
    if (fstat(fd, &sb) != 0) st = md_set_error(MD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = md_set_error(MD_ERR_IO, "%s: is a directory, expected a COCO annotation JSON file", path);
    else if (sb.st_size == 0) st = md_set_error(MD_ERR_FORMAT, "%s: empty file (0 bytes), expected a COCO annotation JSON file", path);
    if (st) {
        close(fd);
        md_coco_free(c);
        return st;
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        st = md_set_error(MD_ERR_IO, "%s: cannot map %zu bytes: %s", path, len, strerror(errno));
        md_coco_free(c);
        return st;
    }
    madvise(map, len, MADV_SEQUENTIAL);
    jwalk w = {c->path, map, len, 0, 0};
    loader_ctx L;
    memset(&L, 0, sizeof L);
    L.c = c;
    L.opt = opt;
    st = walk_file(&w, &L);
    munmap(map, len);
    if (!st) {
        /* shrink the annotation array to its size before the index is built */
        if (c->num_anns && L.cap_anns > c->num_anns) {
            void *q = realloc(c->anns, (size_t)c->num_anns * sizeof *c->anns);
            if (q) c->anns = q;
        }
        c->strings = L.strings.data;
        c->strings_len = L.strings.len;
        L.strings.data = NULL;
        st = build_index(c, &L);
    }
    if (!st && c->num_images == 0) st = md_set_error(MD_ERR_FORMAT, "%s: empty dataset: 'images' has no entries", path);
    if (!st && c->num_cats == 0) st = md_set_error(MD_ERR_FORMAT, "%s: 'categories' has no entries (need at least one class)", path);
    if (!st) st = resolve_annotations(c, opt);
    free(L.strings.data);
    free(L.img_name_off);
    free(L.cat_name_off);
    free(L.cat_super_off);
    if (st) {
        md_coco_free(c);
        return st;
    }
    return MD_OK;
}

const char *md_coco_stats_str(const md_coco *c, char *buf, size_t n) {
    const md_coco_stats *s = &c->stats;
    snprintf(buf, n,
             "%d images, %d annotations, %d categories (crowd %d, clipped %d, dropped: non-finite %d, w/h<=0 %d, outside %d; "
             "skipped unknown refs %d; images without training boxes %d)",
             c->num_images, c->num_anns, c->num_cats, s->crowd, s->clipped, s->dropped_nonfinite, s->dropped_degenerate, s->dropped_outside,
             s->skipped_refs, s->images_without_targets);
    return buf;
}

md_status md_label_layout_parse(const char *s, md_label_layout *out) {
    if (!strcmp(s, "contiguous")) *out = MD_LABELS_CONTIGUOUS;
    else if (!strcmp(s, "coco_id")) *out = MD_LABELS_COCO_ID;
    else return md_set_error(MD_ERR_ARG, "label_map: '%s' is not one of contiguous, coco_id", s);
    return MD_OK;
}

md_status md_box_policy_parse(const char *s, md_box_policy *out) {
    if (!strcmp(s, "clip")) *out = MD_BOX_CLIP;
    else if (!strcmp(s, "drop")) *out = MD_BOX_DROP;
    else if (!strcmp(s, "fail")) *out = MD_BOX_FAIL;
    else return md_set_error(MD_ERR_ARG, "box policy: '%s' is not one of clip, drop, fail", s);
    return MD_OK;
}

md_status md_bad_policy_parse(const char *s, md_bad_policy *out) {
    if (!strcmp(s, "fail")) *out = MD_POLICY_FAIL;
    else if (!strcmp(s, "skip")) *out = MD_POLICY_SKIP;
    else return md_set_error(MD_ERR_ARG, "policy: '%s' is not one of fail, skip", s);
    return MD_OK;
}
