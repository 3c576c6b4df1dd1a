/* coco_dets.c — COCO detection results: from memory, from a results JSON file
 * (a small dedicated parser: the list can hold millions of numbers), and back
 * to a file. See include/minidet/cocoeval.h. */
#include "minidet/cocoeval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"

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

/* ---- the results-list parser ------------------------------------------------
 * Grammar: ws '[' ws (entry (ws ',' ws entry)*)? ws ']' ws EOF, each entry a
 * JSON object; known keys are read, every other value is skipped (any JSON).
 * Numbers follow the JSON grammar and are converted correctly rounded (exact
 * fast path for <= 19 digits and |exponent| <= 22, strtod otherwise), so the
 * doubles equal Python's json.load. */

typedef struct {
    const char *buf, *p, *end;
    const char *path;
    size_t entry;      /* index of the entry being read, or (size_t)-1 outside */
} jparser;

static md_status perr(jparser *j, const char *what) {
    size_t off = (size_t)(j->p - j->buf);
    if (j->entry != (size_t)-1)
        return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu (entry %zu): %s", j->path, off, j->entry, what);
    return md_set_error(MD_ERR_FORMAT, "%s: malformed JSON at byte %zu: %s", j->path, off, what);
}

static inline void skip_ws(jparser *j) {
    const char *p = j->p;
    while (p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    j->p = p;
}

static const double k_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parses a JSON number at j->p. *is_int: written without fraction/exponent and fits int64 (*iv). */
static md_status parse_number(jparser *j, double *out, int64_t *iv, int *is_int) {
    const char *p = j->p, *start = p, *end = j->end;
    int neg = 0, frac = 0, trunc = 0;
    uint64_t mant = 0;
    int nd = 0, e10 = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return perr(j, "expected a number");
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (nd < 19) { mant = mant * 10 + (uint64_t)(*p - '0'); nd++; }
            else { e10++; if (*p != '0') trunc = 1; }
            p++;
        }
    }
    if (p < end && *p == '.') {
        frac = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') { j->p = p; return perr(j, "expected a digit after '.'"); }
        while (p < end && *p >= '0' && *p <= '9') {
            if (mant == 0 && *p == '0') e10--;
            else if (nd < 19) { mant = mant * 10 + (uint64_t)(*p - '0'); nd++; e10--; }
            else if (*p != '0') trunc = 1;
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        frac = 1;
        p++;
        int eneg = 0, ex = 0;
        if (p < end && (*p == '+' || *p == '-')) { eneg = *p == '-'; p++; }
        if (p >= end || *p < '0' || *p > '9') { j->p = p; return perr(j, "expected a digit in the exponent"); }
        while (p < end && *p >= '0' && *p <= '9') { if (ex < 100000) ex = ex * 10 + (*p - '0'); p++; }
        e10 += eneg ? -ex : ex;
    }
    double d;
    if (!trunc && mant <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        d = (double)mant;
        d = e10 < 0 ? d / k_pow10[-e10] : d * k_pow10[e10];
        if (neg) d = -d;
    } else {
        char tmp[128];
        size_t n = (size_t)(p - start);
        char *s = n < sizeof tmp ? tmp : malloc(n + 1);
        if (!s) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", j->path);
        memcpy(s, start, n);
        s[n] = 0;
        d = strtod(s, NULL);
        if (s != tmp) free(s);
    }
    *is_int = !frac && !trunc && nd <= 18;
    if (*is_int) *iv = neg ? -(int64_t)mant : (int64_t)mant;
    *out = d;
    j->p = p;
    return MD_OK;
}

/* Skips a JSON string (j->p at the opening quote). */
static md_status skip_string(jparser *j) {
    const char *p = j->p + 1, *end = j->end;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') { j->p = p + 1; return MD_OK; }
        if (c < 0x20) { j->p = p; return perr(j, "control character in a string"); }
        if (c == '\\') {
            p++;
            if (p >= end) break;
            if (*p == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (p + k >= end || !strchr("0123456789abcdefABCDEF", p[k]) || !p[k]) { j->p = p; return perr(j, "bad \\u escape"); }
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
                j->p = p;
                return perr(j, "bad escape in a string");
            }
        }
        p++;
    }
    j->p = end;
    return perr(j, "unterminated string");
}

static md_status skip_value(jparser *j, int depth) {
    if (depth > 512) return perr(j, "nesting too deep");
    skip_ws(j);
    if (j->p >= j->end) return perr(j, "unexpected end of file");
    char c = *j->p;
    md_status st;
    if (c == '"') return skip_string(j);
    if (c == '-' || (c >= '0' && c <= '9')) {
        double d;
        int64_t iv;
        int ii;
        return parse_number(j, &d, &iv, &ii);
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) { j->p++; return MD_OK; }
        for (;;) {
            if (c == '{') {
                skip_ws(j);
                if (j->p >= j->end || *j->p != '"') return perr(j, "expected a string key");
                if ((st = skip_string(j)) != MD_OK) return st;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') return perr(j, "expected ':'");
                j->p++;
            }
            if ((st = skip_value(j, depth + 1)) != MD_OK) return st;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == close) { j->p++; return MD_OK; }
            return perr(j, c == '{' ? "expected ',' or '}' in an object" : "expected ',' or ']' in a list");
        }
    }
    static const char *lits[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, lits[k], n)) { j->p += n; return MD_OK; }
    }
    return perr(j, "unexpected character");
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

static md_status read_id(jparser *j, const char *field, int64_t *v) {
    double d;
    int is_int;
    const char *at = j->p;
    if (j->p >= j->end || (*j->p != '-' && (*j->p < '0' || *j->p > '9')))
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: not a number (byte %zu)", j->path, j->entry, field, (size_t)(at - j->buf));
    md_status st = parse_number(j, &d, v, &is_int);
    if (st != MD_OK) return st;
    if (!is_int) {
        if (!(d == floor(d)) || fabs(d) > 9007199254740992.0)
            return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: not an integer (byte %zu)", j->path, j->entry, field, (size_t)(at - j->buf));
        *v = (int64_t)d;
    }
    return MD_OK;
}

static md_status read_finite(jparser *j, const char *field, double *v) {
    int64_t iv;
    int is_int;
    const char *at = j->p;
    if (j->p >= j->end || (*j->p != '-' && (*j->p < '0' || *j->p > '9')))
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: not a number (byte %zu)", j->path, j->entry, field, (size_t)(at - j->buf));
    md_status st = parse_number(j, v, &iv, &is_int);
    if (st != MD_OK) return st;
    if (!isfinite(*v))
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field %s: not a finite number (byte %zu)", j->path, j->entry, field, (size_t)(at - j->buf));
    return MD_OK;
}

static md_status parse_entry(jparser *j, md_coco_dets *d, const id_maps *maps) {
    const md_coco_gt *gt = maps->gt;
    const char *start = j->p;
    if (*j->p != '{') {
        md_status st = skip_value(j, 0);
        if (st != MD_OK) return st;
        return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: not an object (byte %zu)", j->path, j->entry, (size_t)(start - j->buf));
    }
    j->p++;
    int seen = 0;
    int64_t img_id = 0, cat_id = 0;
    double bb[4] = {0, 0, 0, 0}, score = 0;
    md_status st;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') j->p++;
    else for (;;) {
        skip_ws(j);
        if (j->p >= j->end || *j->p != '"') return perr(j, "expected a string key");
        const char *k0 = j->p + 1;
        if ((st = skip_string(j)) != MD_OK) return st;
        size_t kl = (size_t)(j->p - 1 - k0);
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':') return perr(j, "expected ':'");
        j->p++;
        skip_ws(j);
#define KEY_IS(s) (kl == sizeof(s) - 1 && !memcmp(k0, s, kl))
        if (KEY_IS("image_id")) {
            if ((st = read_id(j, "image_id", &img_id)) != MD_OK) return st;
            seen |= F_IMG;
        } else if (KEY_IS("category_id")) {
            if ((st = read_id(j, "category_id", &cat_id)) != MD_OK) return st;
            seen |= F_CAT;
        } else if (KEY_IS("score")) {
            if ((st = read_finite(j, "score", &score)) != MD_OK) return st;
            seen |= F_SCORE;
        } else if (KEY_IS("bbox")) {
            const char *at = j->p;
            if (j->p >= j->end || *j->p != '[')
                return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field bbox: not a list [x, y, w, h] (byte %zu)", j->path, j->entry, (size_t)(at - j->buf));
            j->p++;
            int n = 0;
            skip_ws(j);
            if (j->p < j->end && *j->p == ']') j->p++;
            else for (;;) {
                skip_ws(j);
                if (n == 4)
                    return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field bbox: more than 4 numbers (byte %zu)", j->path, j->entry, (size_t)(at - j->buf));
                if ((st = read_finite(j, "bbox", &bb[n])) != MD_OK) return st;
                n++;
                skip_ws(j);
                if (j->p < j->end && *j->p == ',') { j->p++; continue; }
                if (j->p < j->end && *j->p == ']') { j->p++; break; }
                return perr(j, "expected ',' or ']' in a list");
            }
            if (n != 4)
                return md_set_error(MD_ERR_FORMAT, "%s: entry %zu: field bbox: %d numbers, expected 4 [x, y, w, h] (byte %zu)", j->path, j->entry, n, (size_t)(at - j->buf));
            seen |= F_BBOX;
        } else {
            if ((st = skip_value(j, 1)) != MD_OK) return st;
        }
#undef KEY_IS
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == '}') { j->p++; break; }
        return perr(j, "expected ',' or '}' in an object");
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

static md_status parse_results(jparser *j, md_coco_dets *d, const id_maps *maps) {
    md_status st;
    skip_ws(j);
    if (j->p >= j->end) return perr(j, "the file is empty");
    if (*j->p != '[') return md_set_error(MD_ERR_FORMAT, "%s: not a results list (the top level is not a JSON list of detections)", j->path);
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        skip_ws(j);
        if (j->p != j->end) return perr(j, "unexpected data after the list");
        return md_set_error(MD_ERR_FORMAT, "%s: the results list is empty (no detections)", j->path);
    }
    for (j->entry = 0;; j->entry++) {
        skip_ws(j);
        if (j->p >= j->end) return perr(j, "unexpected end of file");
        if ((st = parse_entry(j, d, maps)) != MD_OK) return st;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == ']') { j->p++; break; }
        return perr(j, j->p >= j->end ? "unexpected end of file (truncated?)" : "expected ',' or ']' after an entry");
    }
    j->entry = (size_t)-1;
    skip_ws(j);
    if (j->p != j->end) return perr(j, "unexpected data after the list");
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
    jparser j = {buf, buf, buf + len, path, (size_t)-1};
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
