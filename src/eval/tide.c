/* tide.c — TIDE error analysis (see include/minidet/tide.h and docs/TIDE.md).
 *
 * One pass over the images (in the ground truth file's order, as tidecv) finds
 * each detection's outcome and each error; every dAP then re-scores a list of
 * AP data points with one error type fixed. The order of data points inside a
 * class is tidecv's, because its AP sorts them stably by score and ties
 * between a true and a false positive change the precision curve. */
#include "minidet/tide.h"
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"

enum { ST_FP = 0, ST_TP = 1, ST_IGN = 2 };
enum { FIX_NONE = 0, FIX_TP = 1, FIX_GT_MINUS = 2 };

/* One error: its type, its AP data point as found (if any) and once fixed. */
typedef struct {
    uint8_t type;     /* MD_TIDE_* */
    uint8_t has_orig; /* the detection is an AP data point (not inside a crowd region) */
    uint8_t fix;      /* FIX_* */
    int32_t det;      /* detection index, -1 for Miss */
    int32_t cls;      /* class of the original point (detection's), or of the missed GT */
    int32_t fix_cls;  /* class of the fixed point (Cls: the GT's) */
    int32_t gt;       /* annotation the fix depends on (Loc, Cls), else -1 */
} tide_error;

/* An AP data point. */
typedef struct {
    int32_t cls;
    uint8_t tp;
    double score;
} tide_point;

typedef struct {
    tide_error *err;
    size_t n_err, cap_err;
    int32_t *pts; /* detections pushed as AP data points, in push order */
    size_t n_pts;
    uint8_t *state; /* [n dets] ST_* of evaluated detections */
    long *gt_pos;   /* [K] non-crowd GT per class */
    long *fn;       /* [K] non-crowd GT left unmatched */
    uint8_t *present; /* [K] tidecv has the class (GT or data points) */
} tide_run;

static const char *k_main[MD_TIDE_N_MAIN] = {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"};
static const char *k_special[MD_TIDE_N_SPECIAL] = {"FalsePos", "FalseNeg"};
const char *md_tide_main_name(int e) { return e >= 0 && e < MD_TIDE_N_MAIN ? k_main[e] : "?"; }
const char *md_tide_special_name(int e) { return e >= 0 && e < MD_TIDE_N_SPECIAL ? k_special[e] : "?"; }

static int add_error(tide_run *t, tide_error e) {
    if (t->n_err == t->cap_err) {
        size_t c = t->cap_err ? 2 * t->cap_err : 256;
        tide_error *p = realloc(t->err, c * sizeof *p);
        if (!p) return -1;
        t->err = p;
        t->cap_err = c;
    }
    t->err[t->n_err++] = e;
    return 0;
}

/* APDataObject.get_ap of one class: points sorted by score (stable), 101 recall bars at x / 100. */
static double class_ap(const uint32_t *ord, size_t n, const uint8_t *tp, long n_gt, double *prec, double *rec) {
    if (n_gt == 0) return 0;
    long nt = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (tp[ord[i]]) nt++;
        else nf++;
        prec[i] = (double)nt / (double)(nt + nf);
        rec[i] = (double)nt / (double)n_gt;
    }
    for (size_t i = n; i-- > 1;)
        if (prec[i] > prec[i - 1]) prec[i - 1] = prec[i];
    double sum = 0;
    size_t j = 0;
    for (int bar = 0; bar <= 100; bar++) {
        double x = (double)bar / 100.0;
        while (j < n && rec[j] < x) j++; /* np.searchsorted(recalls, x, side='left') */
        sum += j < n ? prec[j] : 0.0;
    }
    return sum / 101.0 * 100.0;
}

/* ClassedAPDataObject.get_mAP over points p[0..n) (tidecv's push order) and GT counts gtp. */
static int tide_map(const tide_point *p, size_t n, const long *gtp, const uint8_t *present, int K, double *out) {
    size_t *cnt = calloc((size_t)K + 1, sizeof(size_t));
    uint32_t *ord = malloc((n ? n : 1) * sizeof(uint32_t)), *tmp = malloc((n ? n : 1) * sizeof(uint32_t));
    double *score = malloc((n ? n : 1) * sizeof(double)), *prec = malloc((n ? n : 1) * sizeof(double)),
           *rec = malloc((n ? n : 1) * sizeof(double));
    uint8_t *tp = malloc(n ? n : 1);
    int rc = -1;
    if (!cnt || !ord || !tmp || !score || !prec || !rec || !tp) goto done;
    /* bucket by class keeping push order, then a stable sort on score inside each class */
    for (size_t i = 0; i < n; i++) cnt[p[i].cls + 1]++;
    for (int k = 0; k < K; k++) cnt[k + 1] += cnt[k];
    for (size_t i = 0; i < n; i++) {
        size_t at = cnt[p[i].cls]++;
        score[at] = p[i].score;
        tp[at] = p[i].tp;
        ord[at] = (uint32_t)at;
    }
    for (int k = K; k > 0; k--) cnt[k] = cnt[k - 1];
    cnt[0] = 0;
    double sum = 0;
    int n_cls = 0;
    for (int k = 0; k < K; k++) {
        size_t b = cnt[k], m = cnt[k + 1] - b;
        if (!present[k] || (m == 0 && gtp[k] == 0)) continue; /* is_empty() */
        md_eval_sort_desc(ord + b, tmp, m, score);
        sum += class_ap(ord + b, m, tp, gtp[k], prec, rec);
        n_cls++;
    }
    if (n_cls == 0) {
        md_set_error(MD_ERR_ARG, "tide: no class has ground truth or detections");
        rc = -2;
        goto done;
    }
    *out = sum / n_cls;
    rc = 0;
done:
    free(cnt);
    free(ord);
    free(tmp);
    free(score);
    free(prec);
    free(rec);
    free(tp);
    return rc;
}

/* TIDERun.fix_errors: errors of type `fixed` (-1: none) fixed, the rest as found, then the true
 * positives; fp_transform scores true positives 1 and the rest 0; drop_fn removes unmatched GT. */
static int fix_errors(const tide_run *t, const md_coco_dets *d, int K, int fixed, int fp_transform, int drop_fn,
                      tide_point *pts, long *gtp, double *out) {
    size_t n = 0;
    memcpy(gtp, t->gt_pos, sizeof(long) * (size_t)K);
    for (size_t i = 0; i < t->n_err; i++) {
        const tide_error *e = &t->err[i];
        if (e->type == fixed) {
            if (e->fix == FIX_TP) pts[n++] = (tide_point){e->fix_cls, 1, d->score[e->det]};
            else if (e->fix == FIX_GT_MINUS) gtp[e->fix_cls]--;
        } else if (e->has_orig) {
            pts[n++] = (tide_point){e->cls, 0, d->score[e->det]};
        }
    }
    for (size_t i = 0; i < t->n_pts; i++) {
        int32_t p = t->pts[i];
        if (t->state[p] == ST_TP) pts[n++] = (tide_point){d->cat[p], 1, d->score[p]};
    }
    if (fp_transform)
        for (size_t i = 0; i < n; i++) pts[i].score = pts[i].tp ? 1.0 : 0.0;
    if (drop_fn)
        for (int k = 0; k < K; k++) gtp[k] -= t->fn[k];
    return tide_map(pts, n, gtp, t->present, K, out);
}

/* Per-image scratch. */
typedef struct {
    uint32_t *pd, *tmp, *gsel, *csel;
    double *iou, *ciou, *best_score;
    uint8_t *used, *usable;
    int32_t *best_det, *gc;
    size_t cap_d, cap_g, cap_dg;
} tide_scratch;

static int fit(void **p, size_t n, size_t elem) {
    void *q = realloc(*p, (n ? n : 1) * elem);
    if (!q) return -1;
    *p = q;
    return 0;
}

static int scratch_fit(tide_scratch *s, size_t nd, size_t ng) {
    if (nd > s->cap_d) {
        if (fit((void **)&s->pd, nd, 4) || fit((void **)&s->tmp, nd, 4) || fit((void **)&s->ciou, nd, sizeof(double))) return -1;
        s->cap_d = nd;
    }
    if (ng > s->cap_g) {
        if (fit((void **)&s->gsel, ng, 4) || fit((void **)&s->csel, ng, 4) || fit((void **)&s->best_score, ng, sizeof(double)) ||
            fit((void **)&s->used, ng, 1) || fit((void **)&s->usable, ng, 1) || fit((void **)&s->best_det, ng, 4) ||
            fit((void **)&s->gc, ng, 4))
            return -1;
        s->cap_g = ng;
    }
    if (nd * ng > s->cap_dg) {
        if (fit((void **)&s->iou, nd * ng, sizeof(double))) return -1;
        s->cap_dg = nd * ng;
    }
    return 0;
}

static void scratch_free(tide_scratch *s) {
    free(s->pd);
    free(s->tmp);
    free(s->gsel);
    free(s->csel);
    free(s->iou);
    free(s->ciou);
    free(s->best_score);
    free(s->used);
    free(s->usable);
    free(s->best_det);
    free(s->gc);
}

/* Which entries of a detection's IoU row count (the rest are 0, as in tidecv's masked matrices). */
enum { ROW_CLS_FREE, ROW_CLS, ROW_OTHER_CLS, ROW_CLS_USED, ROW_ALL };

/* numpy argmax of the masked row: the first index of its largest value, which goes to *vmax. */
static int row_argmax(const double *row, int G, int mode, int32_t cls, const int32_t *gc, const uint8_t *used, double *vmax) {
    int arg = 0;
    double m = 0;
    for (int g = 0; g < G; g++) {
        int same = gc[g] == cls, keep;
        switch (mode) {
        case ROW_CLS_FREE: keep = same && !used[g]; break;
        case ROW_CLS: keep = same; break;
        case ROW_OTHER_CLS: keep = !same; break;
        case ROW_CLS_USED: keep = same && used[g]; break;
        default: keep = 1;
        }
        double v = keep ? row[g] : 0.0;
        if (g == 0 || v > m) {
            m = v;
            arg = g;
        }
    }
    *vmax = m;
    return arg;
}

/* TIDERun._eval_image + TIDEExample for one image: dt[0..nd) its detections, ann[0..na) its
 * annotations, both in file order. */
static int eval_image(tide_run *t, const md_coco_gt *gt, const md_coco_dets *d, const md_tide_opts *o, const uint32_t *dt,
                      int nd, const uint32_t *ann, int na, tide_scratch *s) {
    if (scratch_fit(s, (size_t)nd, (size_t)na)) return -1;
    int G = 0, C = 0;
    for (int i = 0; i < na; i++) {
        if (gt->ann_crowd[ann[i]]) s->csel[C++] = ann[i];
        else s->gsel[G++] = ann[i];
    }
    const int32_t *gcat = gt->ann_cat;
    if (nd == 0) { /* every GT missed */
        for (int g = 0; g < G; g++) {
            int32_t c = gcat[s->gsel[g]];
            t->fn[c]++;
            if (add_error(t, (tide_error){MD_TIDE_MISS, 0, FIX_GT_MINUS, -1, c, c, (int32_t)s->gsel[g]})) return -1;
        }
        return 0;
    }
    memcpy(s->pd, dt, (size_t)nd * sizeof(uint32_t));
    md_eval_sort_desc(s->pd, s->tmp, (size_t)nd, d->score);
    int D = nd < o->max_dets ? nd : o->max_dets;
    const uint32_t *pd = s->pd;
    double *iou = s->iou;
    if (G > 0) md_eval_box_ious(d->bbox, pd, D, gt->ann_bbox, s->gsel, NULL, G, iou);
    memset(s->used, 0, (size_t)G);
    memset(s->usable, 0, (size_t)G);
    for (int g = 0; g < G; g++) {
        s->best_score[g] = -1;
        s->best_det[g] = -1;
        s->gc[g] = gcat[s->gsel[g]];
    }
    /* greedy matching in score order against the GT of the same class not taken yet */
    for (int p = 0; p < D; p++) {
        t->state[pd[p]] = ST_FP;
        if (G == 0) continue;
        double v;
        int g = row_argmax(iou + (size_t)p * G, G, ROW_CLS_FREE, d->cat[pd[p]], s->gc, s->used, &v);
        if (v >= o->pos_thr) {
            t->state[pd[p]] = ST_TP;
            s->used[g] = 1;
        }
    }
    /* crowd regions: an unmatched detection of the region's class covered by more than pos_thr is ignored */
    for (int c = 0; c < C; c++) {
        md_eval_box_ious(d->bbox, pd, D, gt->ann_bbox, s->csel + c, gt->ann_crowd, 1, s->ciou);
        for (int p = 0; p < D; p++)
            if (t->state[pd[p]] != ST_TP && s->ciou[p] > o->pos_thr && d->cat[pd[p]] == gcat[s->csel[c]]) t->state[pd[p]] = ST_IGN;
    }
    for (int p = 0; p < D; p++)
        if (t->state[pd[p]] != ST_IGN) t->pts[t->n_pts++] = (int32_t)pd[p];
    /* error of every detection that is not a true positive (ignored ones too: they may fix Loc / Cls) */
    size_t first_err = t->n_err;
    for (int p = 0; p < D; p++) {
        int32_t det = (int32_t)pd[p];
        if (t->state[det] == ST_TP) continue;
        int32_t c = d->cat[det];
        tide_error e = {MD_TIDE_BKG, t->state[det] == ST_FP, FIX_NONE, det, c, c, -1};
        if (G > 0) {
            const double *row = iou + (size_t)p * G;
            double v;
            int g = row_argmax(row, G, ROW_CLS, c, s->gc, s->used, &v);
            if (o->bg_thr <= v && v <= o->pos_thr) {
                e.type = MD_TIDE_LOC;
                e.gt = g;
            } else if ((g = row_argmax(row, G, ROW_OTHER_CLS, c, s->gc, s->used, &v)), v >= o->pos_thr) {
                e.type = MD_TIDE_CLS;
                e.gt = g;
                e.fix_cls = s->gc[g];
            } else if (row_argmax(row, G, ROW_CLS_USED, c, s->gc, s->used, &v), v >= o->pos_thr) {
                e.type = MD_TIDE_DUPE;
            } else if (row_argmax(row, G, ROW_ALL, c, s->gc, s->used, &v), v <= o->bg_thr) {
                e.type = MD_TIDE_BKG;
            } else {
                e.type = MD_TIDE_BOTH;
            }
            /* BestGTMatch: of the errors that could fix one unmatched GT, the highest score does */
            if (e.gt >= 0 && !s->used[e.gt]) {
                s->usable[e.gt] = 1;
                if (s->best_score[e.gt] < d->score[det]) {
                    s->best_score[e.gt] = d->score[det];
                    s->best_det[e.gt] = det;
                }
            }
        }
        if (add_error(t, e)) return -1;
    }
    for (size_t i = first_err; i < t->n_err; i++) {
        tide_error *e = &t->err[i];
        if (e->gt >= 0) {
            if (!s->used[e->gt] && s->best_det[e->gt] == e->det) e->fix = FIX_TP;
            e->gt = (int32_t)s->gsel[e->gt];
        }
    }
    for (int g = 0; g < G; g++) {
        if (s->used[g]) continue;
        int32_t c = gcat[s->gsel[g]];
        t->fn[c]++;
        if (!s->usable[g] && add_error(t, (tide_error){MD_TIDE_MISS, 0, FIX_GT_MINUS, -1, c, c, (int32_t)s->gsel[g]})) return -1;
    }
    return 0;
}

/* Counting sort of indices into per-image lists, file order kept. */
static int by_image(size_t n, const int32_t *img, int I, uint32_t **start, uint32_t **list) {
    *start = calloc((size_t)I + 1, sizeof(uint32_t));
    *list = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!*start || !*list) return -1;
    for (size_t i = 0; i < n; i++) (*start)[img[i] + 1]++;
    for (int i = 0; i < I; i++) (*start)[i + 1] += (*start)[i];
    uint32_t *pos = malloc(((size_t)I + 1) * sizeof(uint32_t));
    if (!pos) return -1;
    memcpy(pos, *start, ((size_t)I + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) (*list)[pos[img[i]]++] = (uint32_t)i;
    free(pos);
    return 0;
}

md_status md_tide_run(const md_coco_gt *gt, const md_coco_dets *d, const md_tide_opts *o, md_tide_result *r) {
    memset(r, 0, sizeof *r);
    if (d->gt != gt) return md_set_error(MD_ERR_ARG, "tide: the detections were resolved against another ground truth");
    if (d->n == 0) return md_set_error(MD_ERR_ARG, "tide: no detections");
    if (d->n >= INT32_MAX) return md_set_error(MD_ERR_ARG, "tide: too many detections (%zu)", d->n);
    if (!(o->pos_thr > 0 && o->pos_thr <= 1) || !(o->bg_thr >= 0 && o->bg_thr <= o->pos_thr) || o->max_dets < 1)
        return md_set_error(MD_ERR_ARG, "tide: thresholds must satisfy 0 <= background (%g) <= positive (%g) <= 1, max_dets >= 1",
                            o->bg_thr, o->pos_thr);
    r->opts = *o;
    int I = gt->n_img, K = gt->n_cat;
    tide_run t = {0};
    tide_scratch s = {0};
    uint32_t *gst = NULL, *gl = NULL, *dst = NULL, *dl = NULL;
    tide_point *pts = NULL;
    long *gtp = NULL;
    md_status st = MD_OK;
    t.pts = malloc(d->n * sizeof(int32_t));
    t.state = malloc(d->n);
    t.gt_pos = calloc((size_t)K, sizeof(long));
    t.fn = calloc((size_t)K, sizeof(long));
    t.present = calloc((size_t)K, 1);
    gtp = malloc((size_t)K * sizeof(long));
    if (!t.pts || !t.state || !t.gt_pos || !t.fn || !t.present || !gtp || by_image((size_t)gt->n_ann, gt->ann_img, I, &gst, &gl) ||
        by_image(d->n, d->img, I, &dst, &dl))
        goto nomem;
    for (int a = 0; a < gt->n_ann; a++)
        if (!gt->ann_crowd[a]) t.gt_pos[gt->ann_cat[a]]++;
    for (int f = 0; f < I; f++) {
        int i = gt->img_file_order ? gt->img_file_order[f] : f;
        if (eval_image(&t, gt, d, o, dl + dst[i], (int)(dst[i + 1] - dst[i]), gl + gst[i], (int)(gst[i + 1] - gst[i]), &s)) goto nomem;
    }
    for (int k = 0; k < K; k++) t.present[k] = t.gt_pos[k] > 0;
    for (size_t i = 0; i < t.n_pts; i++) t.present[d->cat[t.pts[i]]] = 1;
    for (size_t i = 0; i < t.n_err; i++) r->count[t.err[i].type]++;
    pts = malloc((t.n_pts + t.n_err + 1) * sizeof(tide_point));
    if (!pts) goto nomem;
    /* the AP as found: every data point in push order */
    size_t n = 0;
    for (size_t i = 0; i < t.n_pts; i++) {
        int32_t p = t.pts[i];
        pts[n++] = (tide_point){d->cat[p], t.state[p] == ST_TP, d->score[p]};
    }
    int rc = tide_map(pts, n, t.gt_pos, t.present, K, &r->ap);
    for (int e = 0; e < MD_TIDE_N_MAIN && rc == 0; e++) {
        double v;
        rc = fix_errors(&t, d, K, e, 0, 0, pts, gtp, &v);
        r->main[e] = v - r->ap > 0 ? v - r->ap : 0; /* tidecv: negative = binning noise, shown as 0 */
    }
    for (int e = 0; e < MD_TIDE_N_SPECIAL && rc == 0; e++) {
        double v;
        rc = fix_errors(&t, d, K, -1, e == MD_TIDE_FALSE_POS, e == MD_TIDE_FALSE_NEG, pts, gtp, &v);
        r->special[e] = v - r->ap;
    }
    if (rc == -1) goto nomem;
    if (rc != 0) st = MD_ERR_ARG;
    goto done;
nomem:
    st = md_set_error(MD_ERR_NOMEM, "tide: out of memory (%d images, %zu detections)", I, d->n);
done:
    scratch_free(&s);
    free(t.err);
    free(t.pts);
    free(t.state);
    free(t.gt_pos);
    free(t.fn);
    free(t.present);
    free(gst);
    free(gl);
    free(dst);
    free(dl);
    free(pts);
    free(gtp);
    return st;
}

void md_tide_print(const md_tide_result *r, FILE *f) {
    int pos = (int)(r->opts.pos_thr * 100 + 0.5);
    fprintf(f, "bbox AP @ %d: %.2f   (TIDE, background IoU %.2f, %d detections per image)\n", pos, r->ap, r->opts.bg_thr,
            r->opts.max_dets);
    fprintf(f, "  Main errors   ");
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) fprintf(f, " %7s", k_main[e]);
    fprintf(f, "\n           dAP  ");
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) fprintf(f, " %7.2f", r->main[e]);
    fprintf(f, "\n         count  ");
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) fprintf(f, " %7ld", r->count[e]);
    fprintf(f, "\n  Special errors");
    for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) fprintf(f, " %9s", k_special[e]);
    fprintf(f, "\n           dAP  ");
    for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) fprintf(f, " %9.2f", r->special[e]);
    fprintf(f, "\n");
}

size_t md_tide_json(const md_tide_result *r, char *buf, size_t cap) {
    char v[40], out[2048];
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(out + n, n < sizeof out ? sizeof out - n : 0, __VA_ARGS__)
    md_eval_fmt_double(v, sizeof v, r->opts.pos_thr);
    PUT("{\"pos_threshold\": %s, ", v);
    md_eval_fmt_double(v, sizeof v, r->opts.bg_thr);
    PUT("\"background_threshold\": %s, \"max_dets\": %d, ", v, r->opts.max_dets);
    md_eval_fmt_double(v, sizeof v, r->ap);
    PUT("\"ap\": %s,\n  \"main\": {", v);
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) {
        md_eval_fmt_double(v, sizeof v, r->main[e]);
        PUT("%s\"%s\": %s", e ? ", " : "", k_main[e], v);
    }
    PUT("},\n  \"special\": {");
    for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) {
        md_eval_fmt_double(v, sizeof v, r->special[e]);
        PUT("%s\"%s\": %s", e ? ", " : "", k_special[e], v);
    }
    PUT("},\n  \"count\": {");
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) PUT("%s\"%s\": %ld", e ? ", " : "", k_main[e], r->count[e]);
    PUT("}}");
#undef PUT
    if (cap) {
        size_t c = n < cap - 1 ? n : cap - 1;
        memcpy(buf, out, c);
        buf[c] = 0;
    }
    return n;
}
