/* cocoeval.c — pycocotools' COCOeval (bbox): evaluate, accumulate, summarize.
 * See include/minidet/cocoeval.h for the semantics kept; comments below name
 * the pycocotools function each step mirrors. */
#include "minidet/cocoeval.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "minidet/fs.h"

enum { CODE_FP = 0, CODE_TP = 1, CODE_IGN = 2 };
/* What a detection is at all 10 thresholds of one area range: mostly the same thing. */
enum { KIND_ALL_FP = 0, KIND_ALL_IGN = 1, KIND_MIXED = 2 };
#define T_ MD_COCO_T
#define A_ MD_COCO_A
#define MAXDET 100 /* p.maxDets[-1] */

void md_cocoeval_result_free(md_cocoeval_result *r) {
    if (!r) return;
    free(r->cat_ids);
    free(r->precision);
    free(r->recall);
    free(r->scores);
    free(r->per_category_ap);
    memset(r, 0, sizeof *r);
}

/* Params(): np.linspace(start, stop, num) computes i * step + start, and stores stop last. */
static void linspace(double *out, double start, double stop, int num) {
    double step = (stop - start) / (num - 1);
    for (int i = 0; i < num; i++) out[i] = (double)i * step + start;
    out[num - 1] = stop;
}

static void init_params(md_cocoeval_result *r) {
    r->T = MD_COCO_T;
    r->R = MD_COCO_R;
    r->A = MD_COCO_A;
    r->M = MD_COCO_M;
    linspace(r->iou_thrs, 0.5, 0.95, MD_COCO_T);
    linspace(r->rec_thrs, 0.0, 1.0, MD_COCO_R);
    r->max_dets[0] = 1;
    r->max_dets[1] = 10;
    r->max_dets[2] = 100;
    static const double rng[A_][2] = {{0.0, 1e10}, {0.0, 1024.0}, {1024.0, 9216.0}, {9216.0, 1e10}};
    static const char *lbl[A_] = {"all", "small", "medium", "large"};
    memcpy(r->area_rng, rng, sizeof rng);
    for (int a = 0; a < A_; a++) r->area_lbl[a] = lbl[a];
}

/* Per-thread scratch of evaluate(), grown on demand. */
typedef struct {
    uint32_t *dt, *tmp;
    double *ious, *rowmax;
    int *gord;
    uint8_t *gig, *gcr, *gtm, *dout, *seen; /* seen[d]: bit c set when code c occurred */
    size_t cap_d, cap_g, cap_dg;
} eval_scratch;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    void *q = realloc(*p, need * elem);
    if (!q) return -1;
    *p = q;
    *cap = need;
    return 0;
}

static int scratch_fit(eval_scratch *s, size_t nd, size_t ng) {
    size_t cd = s->cap_d, cg = s->cap_g;
    if (nd > cd) {
        size_t c1 = cd, c2 = cd, c3 = cd, c4 = cd, c5 = cd;
        if (grow((void **)&s->dt, &c1, nd, sizeof(uint32_t)) || grow((void **)&s->tmp, &c2, nd, sizeof(uint32_t)) ||
            grow((void **)&s->dout, &c3, nd, 1) || grow((void **)&s->rowmax, &c4, nd, sizeof(double)) ||
            grow((void **)&s->seen, &c5, nd, 1))
            return -1;
        s->cap_d = nd;
    }
    if (ng > cg) {
        size_t c1 = cg, c2 = cg, c3 = cg, c4 = cg;
        if (grow((void **)&s->gord, &c1, ng, sizeof(int)) || grow((void **)&s->gig, &c2, ng, 1) ||
            grow((void **)&s->gtm, &c3, ng, 1) || grow((void **)&s->gcr, &c4, ng, 1))
            return -1;
        s->cap_g = ng;
    }
    size_t ndg = (nd < MAXDET ? nd : MAXDET) * ng;
    if (grow((void **)&s->ious, &s->cap_dg, ndg ? ndg : 1, sizeof(double))) return -1;
    return 0;
}

static void scratch_free(eval_scratch *s) {
    free(s->dt);
    free(s->tmp);
    free(s->ious);
    free(s->rowmax);
    free(s->gord);
    free(s->gig);
    free(s->gcr);
    free(s->gtm);
    free(s->dout);
    free(s->seen);
}

/* Shared state of one run. Buckets are (category k, image i), b = k * I + i. */
typedef struct {
    const md_coco_gt *gt;
    const md_coco_dets *dt;
    const md_cocoeval_result *r;
    int I, K;
    uint32_t *gt_start, *gt_list; /* CSR: annotations of bucket b, file order */
    uint32_t *dt_start, *dt_list; /* CSR: detections of bucket b, file order */
    uint32_t *slot_off;           /* [B+1] first evaluated-detection slot of bucket b */
    double *slot_score;           /* [S] scores in per-bucket sorted order */
    uint8_t *slot_rank;           /* [S] rank within its bucket (0..99) */
    uint8_t *slot_code;           /* [S][A][T] CODE_* */
    uint8_t *slot_kind;           /* [S][A] KIND_* summary of slot_code over T */
} run_state;

/* computeIoU + evaluateImg for all area ranges of one bucket. Returns -1 on allocation failure. */
static int evaluate_bucket(const run_state *s, size_t b, eval_scratch *sc) {
    const md_coco_gt *gt = s->gt;
    const md_coco_dets *dt = s->dt;
    const md_cocoeval_result *r = s->r;
    uint32_t nd = s->dt_start[b + 1] - s->dt_start[b];
    int G = (int)(s->gt_start[b + 1] - s->gt_start[b]);
    if (nd == 0) return 0; /* nothing to record: ground truth counts come from the annotations */
    if (scratch_fit(sc, (size_t)nd, (size_t)G)) return -1;
    /* dt sorted by score, highest first, stable (np.argsort(-score, kind='mergesort')), truncated */
    memcpy(sc->dt, s->dt_list + s->dt_start[b], (size_t)nd * sizeof(uint32_t));
    md_eval_sort_desc(sc->dt, sc->tmp, (size_t)nd, dt->score);
    int D = nd < MAXDET ? (int)nd : MAXDET; /* 1..100 */
    size_t off = s->slot_off[b];
    for (int d = 0; d < D; d++) {
        s->slot_score[off + d] = dt->score[sc->dt[d]];
        s->slot_rank[off + d] = (uint8_t)d;
    }
    const uint32_t *gsel = s->gt_list + s->gt_start[b];
    if (G > 0) md_eval_box_ious(dt->bbox, sc->dt, D, gt->ann_bbox, gsel, gt->ann_crowd, G, sc->ious);
    /* a detection whose best IoU is below a threshold stays unmatched there, whatever the
     * order; below the lowest threshold it is unmatched everywhere and leaves the loop */
    double thr0 = r->iou_thrs[0] < 1 - 1e-10 ? r->iou_thrs[0] : 1 - 1e-10;
    int nm = 0; /* matchable detections, in score order, in sc->tmp */
    for (int d = 0; d < D; d++) {
        double mx = -1;
        for (int g = 0; g < G; g++) mx = fmax(mx, sc->ious[(size_t)d * G + g]);
        sc->rowmax[d] = mx;
        if (!(mx < thr0)) sc->tmp[nm++] = (uint32_t)d;
    }
    for (int a = 0; a < A_; a++) {
        double lo = r->area_rng[a][0], hi = r->area_rng[a][1];
        /* gt: _ignore = iscrowd or area outside the range; ignored ones last (stable) */
        int ng = 0;
        for (int g = 0; g < G; g++) {
            uint32_t ai = gsel[g];
            double ar = gt->ann_area[ai];
            if (!(gt->ann_crowd[ai] || ar < lo || ar > hi)) sc->gord[ng++] = g;
        }
        int n_reg = ng;
        for (int g = 0; g < G; g++) {
            uint32_t ai = gsel[g];
            double ar = gt->ann_area[ai];
            if (gt->ann_crowd[ai] || ar < lo || ar > hi) sc->gord[ng++] = g;
        }
        for (int j = 0; j < G; j++) {
            sc->gig[j] = j >= n_reg;
            sc->gcr[j] = gt->ann_crowd[gsel[sc->gord[j]]];
        }
        /* detections outside the area range are ignored when unmatched */
        for (int d = 0; d < D; d++) {
            const double *db = dt->bbox + 4 * (size_t)sc->dt[d];
            double da = db[2] * db[3];
            sc->dout[d] = da < lo || da > hi;
        }
        memset(sc->seen, 0, (size_t)D);
        for (int d = 0; d < D; d++) {
            uint8_t c = sc->dout[d] ? CODE_IGN : CODE_FP;
            memset(s->slot_code + ((off + d) * A_ + (size_t)a) * T_, c, T_);
            sc->seen[d] = (uint8_t)(1 << c);
        }
        for (int t = 0; t < T_ && nm > 0; t++) {
            uint8_t *code = s->slot_code + (off * A_ + (size_t)a) * T_ + t;
            if (G) memset(sc->gtm, 0, (size_t)G);
            double thr = r->iou_thrs[t] < 1 - 1e-10 ? r->iou_thrs[t] : 1 - 1e-10;
            for (int q = 0; q < nm; q++) {
                int d = (int)sc->tmp[q];
                const double *iou_row = sc->ious + (size_t)d * G;
                double iou = thr;
                int m = -1;
                for (int j = 0; j < G && !(sc->rowmax[d] < thr); j++) {
                    int g = sc->gord[j];
                    /* already matched and not a crowd: skip */
                    if (sc->gtm[j] && !sc->gcr[j]) continue;
                    /* matched to a regular gt and reached the ignored ones: stop */
                    if (m > -1 && !sc->gig[m] && sc->gig[j]) break;
                    if (iou_row[g] < iou) continue;
                    iou = iou_row[g];
                    m = j;
                }
                uint8_t c;
                if (m == -1) {
                    c = sc->dout[d] ? CODE_IGN : CODE_FP;
                } else {
                    sc->gtm[m] = 1;
                    /* dtMatches stores the gt id: an id of 0 reads as "unmatched" downstream */
                    int nz = gt->ann_ids[gsel[sc->gord[m]]] != 0;
                    int ig = sc->gig[m] || (!nz && sc->dout[d]);
                    c = ig ? CODE_IGN : (nz ? CODE_TP : CODE_FP);
                }
                code[(size_t)d * A_ * T_] = c;
                sc->seen[d] |= (uint8_t)(1 << c);
            }
        }
        for (int d = 0; d < D; d++)
            s->slot_kind[(off + d) * A_ + a] = sc->seen[d] == 1 << CODE_FP ? KIND_ALL_FP : sc->seen[d] == 1 << CODE_IGN ? KIND_ALL_IGN : KIND_MIXED;
    }
    return 0;
}

/* accumulate() for one category k.
 *
 * pycocotools builds tp/fp cumulative sums over all nd detections and
 * rc = tp / npig, pr = tp / (tp + fp + eps), makes pr non-increasing from the
 * right and reads pr at the first index where rc >= each recall point. Only
 * two kinds of index matter, and only those are computed here: that first
 * index is always index 0 or a true positive (rc grows only there), and the
 * right-to-left maximum of pr is always reached at index 0 or a true positive
 * (at a false positive pr can only drop, at an ignored detection it repeats
 * the previous value — both exactly, in floating point too: tp and fp are
 * small integers and rounding is monotonic). The values computed are the
 * same expressions on the same numbers, so the result is bit-identical. */
typedef struct {
    uint32_t *list, *tmp, *filt, *pos;
    uint32_t *ev_i, *ev_fp; /* events: position in the list, all-FP detections before it */
    double *rc, *pr;
    size_t cap;
} acc_scratch;

static int acc_fit(acc_scratch *sc, size_t n) {
    if (n <= sc->cap) return 0;
    size_t c = n;
    uint32_t *l = realloc(sc->list, c * sizeof(uint32_t));
    if (l) sc->list = l;
    uint32_t *t = realloc(sc->tmp, c * sizeof(uint32_t));
    if (t) sc->tmp = t;
    uint32_t *f = realloc(sc->filt, c * sizeof(uint32_t));
    if (f) sc->filt = f;
    uint32_t *p = realloc(sc->pos, (c + 1) * sizeof(uint32_t));
    if (p) sc->pos = p;
    uint32_t *e1 = realloc(sc->ev_i, c * sizeof(uint32_t));
    if (e1) sc->ev_i = e1;
    uint32_t *e2 = realloc(sc->ev_fp, c * sizeof(uint32_t));
    if (e2) sc->ev_fp = e2;
    double *rc = realloc(sc->rc, (c + 1) * sizeof(double));
    if (rc) sc->rc = rc;
    double *pr = realloc(sc->pr, (c + 1) * sizeof(double));
    if (pr) sc->pr = pr;
    if (!l || !t || !f || !p || !e1 || !e2 || !rc || !pr) return -1;
    sc->cap = c;
    return 0;
}

static void acc_free(acc_scratch *sc) {
    free(sc->list);
    free(sc->tmp);
    free(sc->filt);
    free(sc->pos);
    free(sc->ev_i);
    free(sc->ev_fp);
    free(sc->rc);
    free(sc->pr);
}

static int accumulate_cat(const run_state *s, int k, const uint32_t *npig, acc_scratch *sc, md_cocoeval_result *r) {
    int I = s->I;
    size_t b0 = (size_t)k * I;
    size_t n = s->slot_off[b0 + I] - s->slot_off[b0];
    if (acc_fit(sc, n)) return -1;
    /* np.concatenate over images in id order, then a stable sort on -score. The
     * per-maxDet lists are subsequences of this order (stable sort of a subset). */
    for (size_t i = 0; i < n; i++) sc->list[i] = (uint32_t)(s->slot_off[b0] + i);
    md_eval_sort_desc(sc->list, sc->tmp, n, s->slot_score);
    const int R = r->R;
    const double eps = 2.220446049250313e-16; /* np.spacing(1) */
    size_t nd_next = (size_t)-1;
    for (int m = MD_COCO_M - 1; m >= 0; m--) {
        int maxdet = r->max_dets[m];
        size_t nd = 0;
        for (size_t i = 0; i < n; i++)
            if (s->slot_rank[sc->list[i]] < maxdet) sc->filt[nd++] = sc->list[i];
        if (nd == nd_next) {
            /* no image has more than maxDets[m] detections of this category: the list
             * is the one of maxDets[m + 1], and so is every number */
            for (int a = 0; a < A_; a++)
                for (int t = 0; t < T_; t++) {
                    r->recall[md_coco_ridx(r, t, k, a, m)] = r->recall[md_coco_ridx(r, t, k, a, m + 1)];
                    for (int ri = 0; ri < R; ri++) {
                        r->precision[md_coco_pidx(r, t, ri, k, a, m)] = r->precision[md_coco_pidx(r, t, ri, k, a, m + 1)];
                        r->scores[md_coco_pidx(r, t, ri, k, a, m)] = r->scores[md_coco_pidx(r, t, ri, k, a, m + 1)];
                    }
                }
            continue;
        }
        nd_next = nd;
        for (int a = 0; a < A_; a++) {
            uint32_t np_ = npig[(size_t)k * A_ + a];
            if (np_ == 0) continue; /* stays -1 */
            /* events: index 0 and the detections that are not the same at every
             * threshold; the others only add to a common false-positive count */
            size_t ne = 0;
            uint32_t fp_common = 0;
            for (size_t i = 0; i < nd; i++) {
                uint8_t kind = s->slot_kind[(size_t)sc->filt[i] * A_ + a];
                if (kind == KIND_MIXED || i == 0) {
                    sc->ev_i[ne] = (uint32_t)i;
                    sc->ev_fp[ne] = fp_common;
                    ne++;
                } else if (kind == KIND_ALL_FP) {
                    fp_common++;
                }
            }
            for (int t = 0; t < T_; t++) {
                /* candidates: index 0 and every true positive */
                size_t nc = 0, ntp = 0, nfp = 0;
                for (size_t e = 0; e < ne; e++) {
                    uint32_t i = sc->ev_i[e];
                    uint8_t c = s->slot_code[((size_t)sc->filt[i] * A_ + a) * T_ + t];
                    ntp += c == CODE_TP;
                    nfp += c == CODE_FP;
                    if (c == CODE_TP || i == 0) {
                        double tp = (double)ntp, fp = (double)(nfp + sc->ev_fp[e]);
                        sc->pos[nc] = i;
                        sc->rc[nc] = tp / np_;
                        sc->pr[nc] = tp / (fp + tp + eps);
                        nc++;
                    }
                }
                r->recall[md_coco_ridx(r, t, k, a, m)] = nd ? (double)ntp / np_ : 0;
                for (size_t c = nc - 1; nc > 0 && c > 0; c--)
                    if (sc->pr[c] > sc->pr[c - 1]) sc->pr[c - 1] = sc->pr[c];
                /* np.searchsorted(rc, recThrs, side='left'); past the end -> left at 0 */
                size_t c = 0;
                for (int ri = 0; ri < R; ri++) {
                    size_t pi = md_coco_pidx(r, t, ri, k, a, m);
                    while (c < nc && sc->rc[c] < r->rec_thrs[ri]) c++;
                    if (c < nc) {
                        r->precision[pi] = sc->pr[c];
                        r->scores[pi] = s->slot_score[sc->filt[sc->pos[c]]];
                    } else {
                        r->precision[pi] = 0;
                        r->scores[pi] = 0;
                    }
                }
            }
        }
    }
    return 0;
}

/* summarize()'s _summarize(ap, iouThr, areaRng, maxDets): mean of the values > -1, or -1. */
static double summarize_one(const md_cocoeval_result *r, int ap, double iou_thr, int use_thr, int a, int m, double *buf) {
    size_t n = 0;
    for (int t = 0; t < r->T; t++) {
        if (use_thr && !(r->iou_thrs[t] == iou_thr)) continue;
        if (ap) {
            for (int ri = 0; ri < r->R; ri++)
                for (int k = 0; k < r->K; k++) {
                    double v = r->precision[md_coco_pidx(r, t, ri, k, a, m)];
                    if (v > -1) buf[n++] = v;
                }
        } else {
            for (int k = 0; k < r->K; k++) {
                double v = r->recall[md_coco_ridx(r, t, k, a, m)];
                if (v > -1) buf[n++] = v;
            }
        }
    }
    return n ? md_eval_np_mean(buf, n) : -1;
}

/* The 12 rows of _summarizeDets: ap, iouThr (0 = all), area index, maxDets index. */
static const struct { int ap; double thr; int a, m; } k_rows[12] = {
    {1, 0, 0, 2},    {1, .5, 0, 2}, {1, .75, 0, 2}, {1, 0, 1, 2}, {1, 0, 2, 2}, {1, 0, 3, 2},
    {0, 0, 0, 0},    {0, 0, 0, 1},  {0, 0, 0, 2},   {0, 0, 1, 2}, {0, 0, 2, 2}, {0, 0, 3, 2},
};

static md_status summarize(md_cocoeval_result *r) {
    size_t nmax = (size_t)r->T * r->R * r->K;
    double *buf = malloc((nmax ? nmax : 1) * sizeof(double));
    if (!buf) return md_set_error(MD_ERR_NOMEM, "cocoeval: out of memory in summarize");
    for (int i = 0; i < 12; i++)
        r->stats[i] = summarize_one(r, k_rows[i].ap, k_rows[i].thr, k_rows[i].thr != 0, k_rows[i].a, k_rows[i].m, buf);
    for (int k = 0; k < r->K; k++) {
        size_t n = 0;
        for (int t = 0; t < r->T; t++)
            for (int ri = 0; ri < r->R; ri++) {
                double v = r->precision[md_coco_pidx(r, t, ri, k, 0, 2)];
                if (v > -1) buf[n++] = v;
            }
        r->per_category_ap[k] = n ? md_eval_np_mean(buf, n) : -1;
    }
    free(buf);
    return MD_OK;
}

static void free_state(run_state *s) {
    free(s->gt_start);
    free(s->gt_list);
    free(s->dt_start);
    free(s->dt_list);
    free(s->slot_off);
    free(s->slot_score);
    free(s->slot_rank);
    free(s->slot_code);
    free(s->slot_kind);
}

/* Counting sort of items into buckets, keeping input order within a bucket. */
static int build_csr(size_t nb, size_t n, const int32_t *img, const int32_t *cat, int I, uint32_t **start, uint32_t **list) {
    *start = calloc(nb + 1, sizeof(uint32_t));
    *list = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!*start || !*list) return -1;
    uint32_t *st = *start;
    for (size_t i = 0; i < n; i++) st[(size_t)cat[i] * I + img[i] + 1]++;
    for (size_t b = 0; b < nb; b++) st[b + 1] += st[b];
    uint32_t *pos = malloc((nb ? nb : 1) * sizeof(uint32_t));
    if (!pos) return -1;
    memcpy(pos, st, nb * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) (*list)[pos[(size_t)cat[i] * I + img[i]]++] = (uint32_t)i;
    free(pos);
    return 0;
}

void md_coco_matches_free(md_coco_matches *m) {
    if (!m) return;
    free(m->img);
    free(m->score);
    free(m->code);
    free(m->cat_start);
    free(m->order);
    free(m->npig);
    memset(m, 0, sizeof *m);
}

/* The area-"all" outcomes of every slot, and accumulate's per-category order (maxDets 100 keeps
 * every slot: evaluate already truncated each bucket to 100). */
static int export_matches(const run_state *s, const md_coco_gt *gt, md_coco_matches *m) {
    int I = s->I, K = s->K;
    size_t B = (size_t)I * K, S = s->slot_off[B];
    m->I = I;
    m->K = K;
    memcpy(m->iou_thrs, s->r->iou_thrs, sizeof m->iou_thrs);
    memcpy(m->rec_thrs, s->r->rec_thrs, sizeof m->rec_thrs);
    m->n = S;
    m->img = malloc((S ? S : 1) * sizeof(int32_t));
    m->code = malloc((S ? S : 1) * T_);
    m->score = malloc((S ? S : 1) * sizeof(double));
    m->cat_start = malloc(((size_t)K + 1) * sizeof(uint32_t));
    m->order = malloc((S ? S : 1) * sizeof(uint32_t));
    m->npig = calloc(B ? B : 1, sizeof(uint32_t));
    uint32_t *tmp = malloc((S ? S : 1) * sizeof(uint32_t));
    if (!m->img || !m->score || !m->code || !m->cat_start || !m->order || !m->npig || !tmp) {
        free(tmp);
        return -1;
    }
    for (size_t b = 0; b < B; b++)
        for (uint32_t q = s->slot_off[b]; q < s->slot_off[b + 1]; q++) {
            m->img[q] = (int32_t)(b % (size_t)I);
            memcpy(m->code + (size_t)q * T_, s->slot_code + (size_t)q * A_ * T_, T_); /* area 0 = all */
        }
    for (int k = 0; k <= K; k++) m->cat_start[k] = s->slot_off[(size_t)k * I];
    memcpy(m->score, s->slot_score, (S ? S : 1) * sizeof(double));
    for (size_t q = 0; q < S; q++) m->order[q] = (uint32_t)q;
    for (int k = 0; k < K; k++)
        md_eval_sort_desc(m->order + m->cat_start[k], tmp, m->cat_start[k + 1] - m->cat_start[k], s->slot_score);
    free(tmp);
    for (int a = 0; a < gt->n_ann; a++)
        if (!gt->ann_crowd[a]) m->npig[(size_t)gt->ann_cat[a] * I + gt->ann_img[a]]++;
    return 0;
}

md_status md_cocoeval_run(const md_coco_gt *gt, const md_coco_dets *dets, md_cocoeval_result *r) {
    return md_cocoeval_run_matches(gt, dets, r, NULL);
}

md_status md_cocoeval_run_matches(const md_coco_gt *gt, const md_coco_dets *dets, md_cocoeval_result *r, md_coco_matches *m) {
    memset(r, 0, sizeof *r);
    if (m) memset(m, 0, sizeof *m);
    if (dets && dets->gt != gt) return md_set_error(MD_ERR_ARG, "cocoeval: the detections were resolved against another ground truth");
    if (dets && dets->n >= UINT32_MAX) return md_set_error(MD_ERR_ARG, "cocoeval: too many detections (%zu)", dets->n);
    md_coco_dets empty = {gt, 0, 0, NULL, NULL, NULL, NULL};
    if (!dets) dets = &empty;
    init_params(r);
    int I = gt->n_img, K = gt->n_cat;
    r->K = K;
    size_t B = (size_t)I * K;
    size_t np_ = (size_t)r->T * r->R * K * r->A * r->M, nr = (size_t)r->T * K * r->A * r->M;
    r->cat_ids = malloc(sizeof(int64_t) * K);
    r->precision = malloc(sizeof(double) * np_);
    r->recall = malloc(sizeof(double) * nr);
    r->scores = malloc(sizeof(double) * np_);
    r->per_category_ap = malloc(sizeof(double) * K);
    run_state s = {0};
    uint32_t *npig = calloc((size_t)K * A_, sizeof(uint32_t));
    if (!r->cat_ids || !r->precision || !r->recall || !r->scores || !r->per_category_ap || !npig) goto nomem;
    memcpy(r->cat_ids, gt->cat_ids, sizeof(int64_t) * K);
    for (size_t i = 0; i < np_; i++) r->precision[i] = r->scores[i] = -1;
    for (size_t i = 0; i < nr; i++) r->recall[i] = -1;

    s.gt = gt;
    s.dt = dets;
    s.r = r;
    s.I = I;
    s.K = K;
    if (build_csr(B, (size_t)gt->n_ann, gt->ann_img, gt->ann_cat, I, &s.gt_start, &s.gt_list)) goto nomem;
    if (build_csr(B, dets->n, dets->img, dets->cat, I, &s.dt_start, &s.dt_list)) goto nomem;
    s.slot_off = malloc((B + 1) * sizeof(uint32_t));
    if (!s.slot_off) goto nomem;
    s.slot_off[0] = 0;
    for (size_t b = 0; b < B; b++) {
        uint32_t nd = s.dt_start[b + 1] - s.dt_start[b];
        s.slot_off[b + 1] = s.slot_off[b] + (nd < MAXDET ? nd : MAXDET);
    }
    size_t S = s.slot_off[B];
    s.slot_score = malloc((S ? S : 1) * sizeof(double));
    s.slot_rank = malloc(S ? S : 1);
    s.slot_code = malloc((S ? S : 1) * A_ * T_);
    s.slot_kind = malloc((S ? S : 1) * A_);
    if (!s.slot_score || !s.slot_rank || !s.slot_code || !s.slot_kind) goto nomem;
    /* npig per (category, area): non-crowd ground truth inside the area range */
    for (int i = 0; i < gt->n_ann; i++) {
        if (gt->ann_crowd[i]) continue;
        for (int a = 0; a < A_; a++) {
            double ar = gt->ann_area[i];
            if (!(ar < r->area_rng[a][0] || ar > r->area_rng[a][1])) npig[(size_t)gt->ann_cat[i] * A_ + a]++;
        }
    }

    int fail = 0;
#pragma omp parallel
    {
        eval_scratch sc = {0};
        /* image-major order: the detections of one image sit together in memory */
#pragma omp for schedule(dynamic, 64)
        for (size_t q = 0; q < B; q++)
            if (evaluate_bucket(&s, (q % (size_t)K) * I + q / (size_t)K, &sc)) {
#pragma omp atomic write
                fail = 1;
            }
        scratch_free(&sc);
    }
    if (fail) goto nomem;
#pragma omp parallel
    {
        acc_scratch ac = {0};
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < K; k++)
            if (accumulate_cat(&s, k, npig, &ac, r)) {
#pragma omp atomic write
                fail = 1;
            }
        acc_free(&ac);
    }
    if (fail) goto nomem;
    if (m && export_matches(&s, gt, m)) goto nomem;
    free_state(&s);
    free(npig);
    md_status st = summarize(r);
    if (st != MD_OK) md_coco_matches_free(m);
    if (st != MD_OK) md_cocoeval_result_free(r);
    return st;
nomem:
    free_state(&s);
    free(npig);
    md_cocoeval_result_free(r);
    md_coco_matches_free(m);
    return md_set_error(MD_ERR_NOMEM, "cocoeval: out of memory (%d images, %d categories, %zu detections)", I, K, dets->n);
}

/* ---- output ---------------------------------------------------------------- */

int md_cocoeval_summary_line(const md_cocoeval_result *r, int i, char *buf, size_t cap) {
    if (i < 0 || i >= 12) return snprintf(buf, cap, "%s", "");
    int ap = k_rows[i].ap;
    char iou[16];
    if (k_rows[i].thr == 0) snprintf(iou, sizeof iou, "%0.2f:%0.2f", r->iou_thrs[0], r->iou_thrs[r->T - 1]);
    else snprintf(iou, sizeof iou, "%0.2f", k_rows[i].thr);
    /* ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}' */
    return snprintf(buf, cap, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f", ap ? "Average Precision" : "Average Recall",
                    ap ? "(AP)" : "(AR)", iou, r->area_lbl[k_rows[i].a], r->max_dets[k_rows[i].m], r->stats[i]);
}

void md_cocoeval_print_summary(const md_cocoeval_result *r, FILE *f) {
    char line[256];
    for (int i = 0; i < 12; i++) {
        md_cocoeval_summary_line(r, i, line, sizeof line);
        fprintf(f, "%s\n", line);
    }
}

size_t md_cocoeval_summary(const md_cocoeval_result *r, char *buf, size_t cap) {
    char line[256];
    size_t n = 0;
    for (int i = 0; i < 12; i++) {
        int l = md_cocoeval_summary_line(r, i, line, sizeof line);
        if (l < 0) continue;
        for (int c = 0; c <= l; c++) {
            char ch = c < l ? line[c] : '\n';
            if (cap && n < cap - 1) buf[n] = ch;
            n++;
        }
    }
    if (cap) buf[n < cap - 1 ? n : cap - 1] = 0;
    return n;
}

md_status md_cocoeval_write_json(const md_cocoeval_result *r, const char *path) { return md_cocoeval_write_json_with(r, NULL, path); }

md_status md_cocoeval_write_json_with(const md_cocoeval_result *r, const char *extra, const char *path) {
    size_t cap = 512 + (size_t)r->K * 64 + (extra ? strlen(extra) : 0), n = 0;
    char *out = malloc(cap);
    if (!out) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    n += (size_t)snprintf(out + n, cap - n, "{\"stats\": [");
    char v[40];
    for (int i = 0; i < 12; i++) {
        md_eval_fmt_double(v, sizeof v, r->stats[i]);
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", v);
    }
    n += (size_t)snprintf(out + n, cap - n, "],\n \"per_category_ap\": {");
    for (int k = 0; k < r->K; k++) {
        md_eval_fmt_double(v, sizeof v, r->per_category_ap[k]);
        n += (size_t)snprintf(out + n, cap - n, "%s\"%lld\": %s", k ? ", " : "", (long long)r->cat_ids[k], v);
    }
    n += (size_t)snprintf(out + n, cap - n, "}%s%s}\n", extra ? ",\n " : "", extra ? extra : "");
    md_status st = md_write_atomic(path, out, n);
    free(out);
    return st;
}
