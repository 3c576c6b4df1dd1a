/* compare_report.c — the comparison table, compare.md/json, plots and index.html (see compare.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "eval_util.h"
#include "minidet/fs.h"
#include "minidet/compare.h"
#include "minidet/log.h"
#include "minidet/evaluate.h"
#include "minidet/plot.h"
#include "minidet/tide.h"

static const char *COLS[MD_CMP_NCOL] = {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "iters", "train time", "img/s"};
static const int STAT_OF_COL[7] = {0, 1, 2, 3, 4, 5, 8};

const char *md_compare_column_name(int col) { return col >= 0 && col < MD_CMP_NCOL ? COLS[col] : "?"; }

double md_compare_value(const md_run_summary *r, int col) {
    if (col < 0 || col >= MD_CMP_NCOL) return NAN;
    if (col <= MD_CMP_AR100) {
        double v = r->stats[STAT_OF_COL[col]];
        return v < 0 ? NAN : v;
    }
    if (col == MD_CMP_ITERS) return r->iter < 0 ? NAN : (double)r->iter;
    if (col == MD_CMP_TIME) return r->train_time_s;
    return r->img_per_sec;
}

/* ------------------------------------------------------------ formatting */

static void fmt_ap(char *buf, size_t cap, double v) {
    if (!isfinite(v) || v < 0) snprintf(buf, cap, "-");
    else snprintf(buf, cap, "%.1f", v * 100);
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) { snprintf(buf, cap, "-"); return; }
    if (s < 60) { snprintf(buf, cap, "%.1fs", s); return; }
    long t = lround(s);
    if (t < 3600) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t % 3600 + 30) / 60 == 60 ? 59 : (t % 3600 + 30) / 60);
}

static void fmt_cell(char *buf, size_t cap, const md_run_summary *r, int col) {
    double v = md_compare_value(r, col);
    if (col <= MD_CMP_AR100) fmt_ap(buf, cap, v);
    else if (col == MD_CMP_ITERS && r->iter < 0) snprintf(buf, cap, "-");
    else if (col == MD_CMP_ITERS) snprintf(buf, cap, "%ld", r->iter);
    else if (col == MD_CMP_TIME) fmt_time(buf, cap, v);
    else if (isfinite(v)) snprintf(buf, cap, "%.2f", v);
    else snprintf(buf, cap, "-");
}

/* The value as shown (parsed back from its printed form, so runs that look
 * tied are all marked); larger = better; NAN where the column has no "best".
 * Train time and img/s have none: runs trained side by side on one machine, or
 * on different machines, were not measured alike, so a faster one is no finding. */
static double shown_key(int col, double v) {
    if (!isfinite(v) || (col <= MD_CMP_AR100 && v < 0)) return NAN;
    char buf[48];
    if (col <= MD_CMP_AR100) snprintf(buf, sizeof buf, "%.1f", v * 100);
    else return NAN;
    return strtod(buf, NULL);
}

/* Marks keys equal to the largest; nothing when every run shows the same value (no winner). */
static void mark_top(const double *key, int n, int *best) {
    double top = NAN;
    int defined = 0, same = 1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(key[i])) continue;
        if (defined && key[i] != top) same = 0;
        if (!isfinite(top) || key[i] > top) top = key[i];
        defined++;
    }
    for (int i = 0; i < n; i++) best[i] = isfinite(top) && key[i] == top && !(same && defined == n && n > 1);
}

void md_compare_best(const md_run_summary *runs, int n, int col, int *best) {
    double key[MD_COMPARE_MAX_RUNS];
    for (int i = 0; i < n && i < MD_COMPARE_MAX_RUNS; i++) key[i] = shown_key(col, md_compare_value(&runs[i], col));
    mark_top(key, n, best);
}

/* Best-of-row marks for a list of AP values (fractions; <0 or NAN = undefined). */
static void best_of(const double *v, int n, int *best) {
    double key[MD_COMPARE_MAX_RUNS];
    for (int i = 0; i < n && i < MD_COMPARE_MAX_RUNS; i++) key[i] = shown_key(MD_CMP_AP, v[i]);
    mark_top(key, n, best);
}

/* ------------------------------------------------------------ a growable text buffer */

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} text_t;

static void tx(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tx(text_t *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { t->oom = 1; return; }
        if (t->s && t->len + (size_t)n < t->cap) { t->len += (size_t)n; return; }
        size_t nc = (t->cap ? t->cap * 2 : 8192) + (size_t)n;
        char *ns = realloc(t->s, nc);
        if (!ns) { t->oom = 1; return; }
        t->s = ns;
        t->cap = nc;
    }
}

static void tx_html(text_t *t, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&') tx(t, "&amp;");
        else if (*s == '<') tx(t, "&lt;");
        else if (*s == '>') tx(t, "&gt;");
        else if (*s == '"') tx(t, "&quot;");
        else tx(t, "%c", *s);
    }
}

/* Markdown table cells must not contain '|'. */
static void tx_md(text_t *t, const char *s) {
    for (; s && *s; s++) tx(t, *s == '|' ? "\\|" : "%c", *s);
}

/* ------------------------------------------------------------ the tables as a grid of cells */

typedef struct {
    int rows, cols;            /* body rows; cols includes the label columns */
    int label_cols;            /* leading text columns (left-aligned, never marked) */
    char (*cell)[48];          /* [(rows + 1) * cols], row 0 = header */
    unsigned char *mark;       /* [(rows + 1) * cols] best marks */
} grid_t;

static md_status grid_init(grid_t *g, int rows, int cols, int label_cols) {
    g->rows = rows;
    g->cols = cols;
    g->label_cols = label_cols;
    g->cell = calloc((size_t)(rows + 1) * cols, sizeof *g->cell);
    g->mark = calloc((size_t)(rows + 1) * cols, 1);
    if (!g->cell || !g->mark) { free(g->cell); free(g->mark); return md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); }
    return MD_OK;
}
static void grid_free(grid_t *g) { free(g->cell); free(g->mark); }
static char *G(grid_t *g, int r, int c) { return g->cell[(size_t)r * g->cols + c]; }

static void grid_print(grid_t *g, FILE *f) {
    int w[64] = {0};
    for (int c = 0; c < g->cols && c < 64; c++)
        for (int r = 0; r <= g->rows; r++) {
            int l = (int)strlen(G(g, r, c));
            if (l > w[c]) w[c] = l;
        }
    for (int r = 0; r <= g->rows; r++) {
        for (int c = 0; c < g->cols && c < 64; c++) {
            const char *s = G(g, r, c);
            if (c < g->label_cols) fprintf(f, "%s%-*s", c ? "  " : "", w[c], s);
            else fprintf(f, "  %*s%c", w[c], s, g->mark[(size_t)r * g->cols + c] ? '*' : ' ');
        }
        fprintf(f, "\n");
    }
}

static void grid_md(grid_t *g, text_t *t) {
    for (int r = 0; r <= g->rows; r++) {
        tx(t, "|");
        for (int c = 0; c < g->cols; c++) {
            int m = g->mark[(size_t)r * g->cols + c];
            tx(t, " %s", m ? "**" : "");
            tx_md(t, G(g, r, c));
            tx(t, "%s |", m ? "**" : "");
        }
        tx(t, "\n");
        if (r == 0) {
            tx(t, "|");
            for (int c = 0; c < g->cols; c++) tx(t, c < g->label_cols ? "---|" : "---:|");
            tx(t, "\n");
        }
    }
}

static void grid_html(grid_t *g, text_t *t) {
    tx(t, "<table>\n");
    for (int r = 0; r <= g->rows; r++) {
        tx(t, "<tr>");
        for (int c = 0; c < g->cols; c++) {
            int m = g->mark[(size_t)r * g->cols + c];
            tx(t, r == 0 ? "<th>" : c < g->label_cols ? "<td class=l>" : m ? "<td class=best>" : "<td>");
            tx_html(t, G(g, r, c));
            tx(t, r == 0 ? "</th>" : "</td>");
        }
        tx(t, "</tr>\n");
    }
    tx(t, "</table>\n");
}

static md_status main_grid(const md_run_summary *runs, int n, grid_t *g) {
    md_status st = grid_init(g, n, 2 + MD_CMP_NCOL, 2);
    if (st) return st;
    snprintf(G(g, 0, 0), 48, "run");
    snprintf(G(g, 0, 1), 48, "loss");
    for (int c = 0; c < MD_CMP_NCOL; c++) snprintf(G(g, 0, 2 + c), 48, "%s", COLS[c]);
    int best[MD_COMPARE_MAX_RUNS];
    for (int i = 0; i < n; i++) {
        snprintf(G(g, 1 + i, 0), 48, "%s", runs[i].name);
        snprintf(G(g, 1 + i, 1), 48, "%s", runs[i].loss);
        for (int c = 0; c < MD_CMP_NCOL; c++) fmt_cell(G(g, 1 + i, 2 + c), 48, &runs[i], c);
    }
    for (int c = 0; c < MD_CMP_NCOL; c++) {
        if (c == MD_CMP_ITERS) continue;
        md_compare_best(runs, n, c, best);
        for (int i = 0; i < n; i++) g->mark[(size_t)(1 + i) * g->cols + 2 + c] = (unsigned char)best[i];
    }
    return MD_OK;
}

static md_status iou_grid(const md_run_summary *runs, int n, grid_t *g) {
    md_status st = grid_init(g, 10, 1 + n, 1);
    if (st) return st;
    snprintf(G(g, 0, 0), 48, "IoU");
    for (int i = 0; i < n; i++) snprintf(G(g, 0, 1 + i), 48, "%s", runs[i].name);
    for (int t = 0; t < 10; t++) {
        snprintf(G(g, 1 + t, 0), 48, "%.2f", 0.5 + 0.05 * t);
        double v[MD_COMPARE_MAX_RUNS];
        int best[MD_COMPARE_MAX_RUNS];
        for (int i = 0; i < n; i++) {
            v[i] = runs[i].has_ap_per_iou ? runs[i].ap_per_iou[t] : NAN;
            fmt_ap(G(g, 1 + t, 1 + i), 48, v[i]);
        }
        best_of(v, n, best);
        for (int i = 0; i < n; i++) g->mark[(size_t)(1 + t) * g->cols + 1 + i] = (unsigned char)best[i];
    }
    return MD_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int find_cat(const md_run_summary *r, int64_t id) {
    int lo = 0, hi = r->n_cat - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (r->cat_ids[m] == id) return m;
        if (r->cat_ids[m] < id) lo = m + 1;
        else hi = m - 1;
    }
    return -1;
}

static md_status cat_grid(const md_run_summary *runs, int n, grid_t *g) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)runs[i].n_cat;
    int64_t *ids = malloc(sizeof(int64_t) * (total ? total : 1));
    if (!ids) return md_set_error(MD_ERR_NOMEM, "comparison: out of memory");
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < runs[i].n_cat; j++) ids[k++] = runs[i].cat_ids[j];
    qsort(ids, k, sizeof *ids, cmp_i64);
    size_t u = 0;
    for (size_t j = 0; j < k; j++)
        if (u == 0 || ids[j] != ids[u - 1]) ids[u++] = ids[j];
    md_status st = grid_init(g, (int)u, 2 + n, 2);
    if (st) { free(ids); return st; }
    snprintf(G(g, 0, 0), 48, "id");
    snprintf(G(g, 0, 1), 48, "category");
    for (int i = 0; i < n; i++) snprintf(G(g, 0, 2 + i), 48, "%s", runs[i].name);
    for (size_t j = 0; j < u; j++) {
        snprintf(G(g, 1 + (int)j, 0), 48, "%lld", (long long)ids[j]);
        double v[MD_COMPARE_MAX_RUNS];
        int best[MD_COMPARE_MAX_RUNS];
        for (int i = 0; i < n; i++) {
            int c = find_cat(&runs[i], ids[j]);
            v[i] = c >= 0 ? runs[i].cat_ap[c] : NAN;
            if (c >= 0 && !*G(g, 1 + (int)j, 1)) snprintf(G(g, 1 + (int)j, 1), 48, "%s", runs[i].cat_names[c]);
            fmt_ap(G(g, 1 + (int)j, 2 + i), 48, v[i]);
        }
        best_of(v, n, best);
        for (int i = 0; i < n; i++) g->mark[(size_t)(1 + j) * g->cols + 2 + i] = (unsigned char)best[i];
    }
    free(ids);
    return MD_OK;
}

/* ------------------------------------------------------------ seeds: groups */

static void fmt_signed(char *buf, size_t cap, double v) { snprintf(buf, cap, "%+.1f", v * 100); }

/* Mean +- sd over the seeds of each group, columns as the main table. */
static md_status group_grid(const md_run_group *g, int ng, grid_t *G_) {
    md_status st = grid_init(G_, ng, 3 + MD_CMP_NCOL, 3);
    if (st) return st;
    snprintf(G(G_, 0, 0), 48, "group");
    snprintf(G(G_, 0, 1), 48, "loss");
    snprintf(G(G_, 0, 2), 48, "seeds");
    for (int c = 0; c < MD_CMP_NCOL; c++) snprintf(G(G_, 0, 3 + c), 48, "%s", COLS[c]);
    for (int k = 0; k < ng; k++) {
        snprintf(G(G_, 1 + k, 0), 48, "%s", g[k].name);
        snprintf(G(G_, 1 + k, 1), 48, "%s", g[k].loss);
        snprintf(G(G_, 1 + k, 2), 48, "%d", g[k].n);
        for (int c = 0; c < MD_CMP_NCOL; c++) {
            char m[20], d[20] = "";
            double mv = g[k].mean[c], sv = g[k].sd[c];
            if (c <= MD_CMP_AR100) {
                fmt_ap(m, sizeof m, mv);
                if (isfinite(sv)) snprintf(d, sizeof d, "%.1f", sv * 100);
            } else if (c == MD_CMP_TIME) {
                fmt_time(m, sizeof m, mv);
                if (isfinite(sv)) fmt_time(d, sizeof d, sv);
            } else {
                if (isfinite(mv)) snprintf(m, sizeof m, c == MD_CMP_ITERS ? "%.0f" : "%.2f", mv);
                else snprintf(m, sizeof m, "-");
                if (isfinite(sv)) snprintf(d, sizeof d, c == MD_CMP_ITERS ? "%.0f" : "%.2f", sv);
            }
            if (isfinite(sv) && isfinite(mv)) snprintf(G(G_, 1 + k, 3 + c), 48, "%.20s +- %.20s", m, d);
            else snprintf(G(G_, 1 + k, 3 + c), 48, "%s", m);
        }
    }
    return MD_OK;
}

/* Each group against the baseline: mean difference over the seeds and its 95 % bootstrap interval. */
static md_status delta_grid(const md_run_group *g, int ng, int base, grid_t *G_) {
    md_status st = grid_init(G_, ng, 6, 2);
    if (st) return st;
    const char *h[6] = {"group", "seeds", "dAP [95% CI]", "dAP50 [95% CI]", "dAP75 [95% CI]", "verdict (AP)"};
    for (int c = 0; c < 6; c++) snprintf(G(G_, 0, c), 48, "%s", h[c]);
    for (int k = 0; k < ng; k++) {
        snprintf(G(G_, 1 + k, 0), 48, "%.32s%s", g[k].name, k == base ? " (baseline)" : "");
        snprintf(G(G_, 1 + k, 1), 48, "%d", g[k].n);
        for (int c = 0; c < 3; c++) {
            char a[16], lo[16], hi[16];
            fmt_signed(a, sizeof a, g[k].delta[c]);
            fmt_signed(lo, sizeof lo, g[k].ci_lo[c]);
            fmt_signed(hi, sizeof hi, g[k].ci_hi[c]);
            snprintf(G(G_, 1 + k, 2 + c), 48, "%.12s [%.12s, %.12s]", a, lo, hi);
        }
        snprintf(G(G_, 1 + k, 5), 48, "%s", k == base ? "-" : md_compare_verdict(&g[k], 0));
    }
    return MD_OK;
}

/* TIDE's dAP per group at IoU .50 and .75 (mean over the seeds). */
static md_status errors_grid(const md_run_group *g, int ng, grid_t *G_) {
    md_status st = grid_init(G_, 2 * ng, 3 + MD_TIDE_N_MAIN + MD_TIDE_N_SPECIAL, 2);
    if (st) return st;
    snprintf(G(G_, 0, 0), 48, "group");
    snprintf(G(G_, 0, 1), 48, "IoU");
    snprintf(G(G_, 0, 2), 48, "AP");
    for (int e = 0; e < MD_TIDE_N_MAIN; e++) snprintf(G(G_, 0, 3 + e), 48, "%s", md_tide_main_name(e));
    for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) snprintf(G(G_, 0, 3 + MD_TIDE_N_MAIN + e), 48, "%s", md_tide_special_name(e));
    for (int k = 0; k < ng; k++)
        for (int t = 0; t < 2; t++) {
            int r = 1 + 2 * k + t;
            snprintf(G(G_, r, 0), 48, "%s", g[k].name);
            snprintf(G(G_, r, 1), 48, "%s", t ? ".75" : ".50");
            snprintf(G(G_, r, 2), 48, "%.1f", g[k].tide_ap[t]);
            for (int e = 0; e < MD_TIDE_N_MAIN; e++) snprintf(G(G_, r, 3 + e), 48, "%.2f", g[k].err_main[t][e]);
            for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) snprintf(G(G_, r, 3 + MD_TIDE_N_MAIN + e), 48, "%.2f", g[k].err_special[t][e]);
        }
    return MD_OK;
}

/* One line per group: "giou - smooth_l1: +1.1 AP [+0.4, +1.8] over 3 seeds: better; TIDE at IoU .75: Loc -2.1 dAP". */
static void verdict_line(const md_run_group *g, int k, int base, char *buf, size_t cap) {
    const md_run_group *a = &g[k], *b = &g[base];
    char d[16], lo[16], hi[16];
    fmt_signed(d, sizeof d, a->delta[0]);
    fmt_signed(lo, sizeof lo, a->ci_lo[0]);
    fmt_signed(hi, sizeof hi, a->ci_hi[0]);
    int n = snprintf(buf, cap, "%s - %s: %s AP [%s, %s] over %d seed%s: %s", a->name, b->name, d, lo, hi, a->n, a->n == 1 ? "" : "s",
                     md_compare_verdict(a, 0));
    if (!a->has_errors || n < 0 || (size_t)n >= cap) return;
    for (int t = 0; t < 2; t++) {
        int e_max = 0;
        for (int e = 1; e < MD_TIDE_N_MAIN; e++)
            if (fabs(a->err_main[t][e] - b->err_main[t][e]) > fabs(a->err_main[t][e_max] - b->err_main[t][e_max])) e_max = e;
        int m = snprintf(buf + n, cap - (size_t)n, "%s largest error change at IoU %s: %s %+.2f dAP", t ? "," : ";", t ? ".75" : ".50",
                         md_tide_main_name(e_max), a->err_main[t][e_max] - b->err_main[t][e_max]);
        if (m < 0 || (size_t)(n + m) >= cap) return;
        n += m;
    }
}

/* ------------------------------------------------------------ plots */

enum { PLOT_LOSS, PLOT_AP_ITER, PLOT_AP_IOU, PLOT_PR50, PLOT_PR75, PLOT_ERRORS, N_PLOTS };
static const char *PLOT_FILE[N_PLOTS] = {"compare_loss", "compare_ap_iter", "compare_ap_iou", "compare_pr50", "compare_pr75", "compare_errors"};
static const char *PLOT_CAPTION[N_PLOTS] = {
    "Training loss (loss_total from metrics.jsonl). IoU-type box losses carry weight 10-12, so totals differ in scale between losses.",
    "COCO AP@[.50:.95] on the validation split at each periodic evaluation (and the final one).",
    "AP at each IoU threshold from .50 to .95 (final evaluation): localisation quality shows at the high thresholds.",
    "Precision-recall at IoU 0.50 (all areas, 100 detections per image, mean over categories).",
    "Precision-recall at IoU 0.75 (all areas, 100 detections per image, mean over categories).",
    "TIDE errors (dAP: AP points gained by fixing every error of a type) at IoU .50 and .75, mean over the seeds of each group. "
    "A box loss should move Loc (and Dupe) most."};

static char *join(const char *dir, const char *file, const char *ext) {
    size_t n = strlen(dir) + strlen(file) + strlen(ext) + 3;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s%s", dir, *dir && dir[strlen(dir) - 1] != '/' ? "/" : "", file, ext);
    return p;
}

static md_status write_plot(const md_plot *p, const char *out_dir, const char *file) {
    char *png = join(out_dir, file, ".png"), *svg = join(out_dir, file, ".svg");
    md_status st = (!png || !svg) ? md_set_error(MD_ERR_NOMEM, "comparison: out of memory") : MD_OK;
    if (!st) st = md_plot_png(p, png);
    if (!st) st = md_plot_svg(p, svg);
    free(png);
    free(svg);
    return st;
}

/* Runs are coloured by group; with seeds, only a group's first run names it in the legend. */
static md_status write_plots(const md_run_summary *runs, int n, const md_run_group *g, int ng, const char *out_dir) {
    md_plot_series se[MD_COMPARE_MAX_RUNS];
    char label[MD_COMPARE_MAX_RUNS][96];
    int gid[MD_COMPARE_MAX_RUNS], seeds = 0;
    static double recall[101], iou[10];
    for (int i = 0; i < 101; i++) recall[i] = i / 100.0;
    for (int i = 0; i < 10; i++) iou[i] = 0.5 + 0.05 * i;
    for (int k = 0; k < ng; k++) {
        seeds |= g[k].n > 1;
        for (int j = 0; j < g[k].n; j++) gid[g[k].runs[j]] = k;
    }
    for (int i = 0; i < n; i++) {
        const md_run_group *G_ = &g[gid[i]];
        const char *nm = seeds ? G_->name : runs[i].name;
        if (seeds && G_->runs[0] != i) label[i][0] = 0;
        else if (strstr(nm, runs[i].loss)) snprintf(label[i], sizeof label[i], "%s%s", nm, seeds ? " (all seeds)" : "");
        else snprintf(label[i], sizeof label[i], "%s (%s)", nm, runs[i].loss);
    }
    /* scratch for the derived series: AP x100 per iteration, AP per IoU x100, PR with -1 -> NAN */
    size_t need = 0;
    for (int i = 0; i < n; i++) need += (size_t)runs[i].n_eval + 1 + 10 + 101;
    double *xs = malloc(sizeof(double) * (need + 1)), *ys = malloc(sizeof(double) * (need + 1));
    if (!xs || !ys) { free(xs); free(ys); return md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); }
    md_status st = MD_OK;
    int any;

    /* 1. training loss */
    any = 0;
    for (int i = 0; i < n; i++) {
        se[i] = (md_plot_series){.label = label[i], .n = runs[i].n_train, .x = runs[i].train_iter, .y = runs[i].train_loss,
                                 .markers = runs[i].n_train <= 25, .color = gid[i] + 1};
        any |= runs[i].n_train > 0;
    }
    md_plot p = {.title = "Training loss", .x_label = "iteration (optimizer steps)",
                 .y_label = "loss_total (sum of the 4 loss terms)", .x_auto = 1, .x_from_zero = 1, .y_auto = 1, .y_from_zero = 1,
                 .n_series = n, .series = se, .note = any ? NULL : "no training lines in metrics.jsonl"};
    if ((st = write_plot(&p, out_dir, PLOT_FILE[PLOT_LOSS]))) goto done;

    /* 2. AP vs iteration: periodic evals plus the final eval.json point */
    size_t off = 0;
    any = 0;
    for (int i = 0; i < n; i++) {
        double *x = xs + off, *y = ys + off;
        int m = 0;
        for (int j = 0; j < runs[i].n_eval; j++) {
            x[m] = runs[i].eval_iter[j];
            y[m++] = runs[i].eval_ap[j] < 0 ? NAN : runs[i].eval_ap[j] * 100;
        }
        if (runs[i].stats[0] >= 0 && runs[i].iter >= 0 && (m == 0 || x[m - 1] < (double)runs[i].iter)) {
            x[m] = (double)runs[i].iter;
            y[m++] = runs[i].stats[0] * 100;
        }
        se[i] = (md_plot_series){.label = label[i], .n = m, .x = x, .y = y, .markers = 1, .color = gid[i] + 1};
        any |= runs[i].n_eval > 0;
        off += (size_t)m;
    }
    p = (md_plot){.title = "COCO AP@[.50:.95] on val during training", .x_label = "iteration (optimizer steps)",
                  .y_label = "AP@[.50:.95] (%)", .x_auto = 1, .x_from_zero = 1, .y_auto = 1, .y_from_zero = 1, .n_series = n, .series = se,
                  .note = any ? NULL : "no periodic evaluations (solver.eval_every = 0): final AP only"};
    if ((st = write_plot(&p, out_dir, PLOT_FILE[PLOT_AP_ITER]))) goto done;

    /* 3. AP vs IoU threshold: with seeds, the mean of each group and a band of +- one standard deviation */
    off = 0;
    any = 0;
    int n3 = seeds ? ng : n;
    double *band = malloc(sizeof(double) * 20 * (size_t)(ng ? ng : 1));
    if (!band) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    for (int i = 0; i < n3; i++) {
        double *y = ys + off;
        if (seeds) {
            double *lo = band + 20 * (size_t)i, *hi = lo + 10;
            for (int t = 0; t < 10; t++) {
                y[t] = g[i].has_ap_per_iou ? g[i].ap_iou_mean[t] * 100 : NAN;
                double sd = isfinite(g[i].ap_iou_sd[t]) ? g[i].ap_iou_sd[t] * 100 : 0;
                lo[t] = y[t] - sd;
                hi[t] = y[t] + sd;
            }
            se[i] = (md_plot_series){.label = g[i].name, .n = g[i].has_ap_per_iou ? 10 : 0, .x = iou, .y = y, .markers = 1,
                                     .y_lo = lo, .y_hi = hi, .color = i + 1};
            any |= g[i].has_ap_per_iou;
        } else {
            for (int t = 0; t < 10; t++) y[t] = runs[i].has_ap_per_iou && runs[i].ap_per_iou[t] >= 0 ? runs[i].ap_per_iou[t] * 100 : NAN;
            se[i] = (md_plot_series){.label = label[i], .n = runs[i].has_ap_per_iou ? 10 : 0, .x = iou, .y = y, .markers = 1,
                                     .color = gid[i] + 1};
            any |= runs[i].has_ap_per_iou;
        }
        off += 10;
    }
    p = (md_plot){.title = seeds ? "AP at each IoU threshold (final evaluation; mean over seeds, band +- 1 sd)"
                                 : "AP at each IoU threshold (final evaluation)",
                  .x_label = "IoU threshold for a true positive",
                  .y_label = "AP (%)", .x_auto = 0, .x_min = 0.5, .x_max = 0.95, .x_tick = 0.05, .y_auto = 0, .y_min = 0, .y_max = 100,
                  .n_series = n3, .series = se, .note = any ? NULL : "no ap_per_iou in eval.json"};
    st = write_plot(&p, out_dir, PLOT_FILE[PLOT_AP_IOU]);
    free(band);
    if (st) goto done;

    /* 4./5. precision-recall */
    for (int w = 0; w < 2; w++) {
        off = 0;
        any = 0;
        for (int i = 0; i < n; i++) {
            double *y = ys + off;
            const double *src = w == 0 ? runs[i].pr50 : runs[i].pr75;
            for (int k = 0; k < 101; k++) y[k] = runs[i].has_pr && src[k] >= 0 ? src[k] : NAN;
            se[i] = (md_plot_series){.label = label[i], .n = runs[i].has_pr ? 101 : 0, .x = recall, .y = y, .color = gid[i] + 1};
            any |= runs[i].has_pr;
            off += 101;
        }
        p = (md_plot){.title = w == 0 ? "Precision-recall at IoU 0.50" : "Precision-recall at IoU 0.75",
                      .x_label = "recall (fraction of ground-truth boxes found)", .y_label = "precision (interpolated)",
                      .x_auto = 0, .x_min = 0, .x_max = 1, .y_auto = 0, .y_min = 0, .y_max = 1, .n_series = n,
                      .series = se, .note = any ? NULL : "no pr curves in eval.json"};
        if ((st = write_plot(&p, out_dir, PLOT_FILE[w == 0 ? PLOT_PR50 : PLOT_PR75]))) goto done;
    }

    /* 6. TIDE errors per group: bars at 12 positions (6 main errors x IoU .50, .75) */
    {
        static const char *names[12];
        static char nbuf[12][16];
        static double xs12[12];
        for (int t = 0; t < 2; t++)
            for (int e = 0; e < MD_TIDE_N_MAIN; e++) {
                snprintf(nbuf[t * 6 + e], sizeof nbuf[0], "%s@%s", md_tide_main_name(e), t ? "75" : "50");
                names[t * 6 + e] = nbuf[t * 6 + e];
                xs12[t * 6 + e] = t * 6 + e;
            }
        double *yv = ys;
        any = 0;
        for (int k = 0; k < ng; k++) {
            for (int t = 0; t < 2; t++)
                for (int e = 0; e < MD_TIDE_N_MAIN; e++) yv[12 * k + t * 6 + e] = g[k].has_errors ? g[k].err_main[t][e] : NAN;
            se[k] = (md_plot_series){.label = g[k].name, .n = g[k].has_errors ? 12 : 0, .x = xs12, .y = yv + 12 * k, .color = k + 1};
            any |= g[k].has_errors;
        }
        p = (md_plot){.title = "TIDE error analysis: dAP per error type (mean over seeds)", .x_label = "error type @ IoU threshold (x100)",
                      .y_label = "dAP (AP points, %)", .width = 1280, .x_auto = 0, .x_min = -0.5, .x_max = 11.5, .x_tick = 1, .y_auto = 1,
                      .y_from_zero = 1, .n_series = ng, .series = se, .bars = 1, .x_names = names, .n_x_names = 12,
                      .note = any ? NULL : "no detections.json in the runs: no error analysis"};
        if ((st = write_plot(&p, out_dir, PLOT_FILE[PLOT_ERRORS]))) goto done;
    }
done:
    free(xs);
    free(ys);
    return st;
}

/* ------------------------------------------------------------ compare.json */

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* "groups": [{"name", "loss", "runs", "n", "mean", "sd", "delta_vs_baseline", "errors"}] */
static int json_groups(cJSON *root, const md_run_summary *runs, const md_run_group *g, int ng, int base) {
    cJSON *arr = cJSON_AddArrayToObject(root, "groups");
    int ok = arr != NULL && cJSON_AddStringToObject(root, "baseline", g[base].name) != NULL;
    for (int k = 0; ok && k < ng; k++) {
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(arr, o) && cJSON_AddStringToObject(o, "name", g[k].name) &&
             cJSON_AddStringToObject(o, "loss", g[k].loss);
        cJSON *rl = ok ? cJSON_AddArrayToObject(o, "runs") : NULL;
        ok = ok && rl;
        for (int j = 0; ok && j < g[k].n; j++) ok = cJSON_AddItemToArray(rl, cJSON_CreateString(runs[g[k].runs[j]].name));
        ok = ok && cJSON_AddNumberToObject(o, "n", g[k].n);
        cJSON *mo = ok ? cJSON_AddObjectToObject(o, "mean") : NULL, *so = ok ? cJSON_AddObjectToObject(o, "sd") : NULL;
        ok = ok && mo && so;
        for (int c = 0; ok && c < MD_CMP_NCOL; c++)
            ok = cJSON_AddItemToObject(mo, COLS[c], num_or_null(g[k].mean[c])) && cJSON_AddItemToObject(so, COLS[c], num_or_null(g[k].sd[c]));
        if (ok && g[k].has_ap_per_iou) {
            cJSON *a = cJSON_CreateDoubleArray(g[k].ap_iou_mean, 10);
            ok = a && cJSON_AddItemToObject(mo, "ap_per_iou", a);
        }
        if (ok && g[k].has_delta) {
            cJSON *d = cJSON_AddObjectToObject(o, "delta_vs_baseline");
            ok = d != NULL;
            static const char *dn[3] = {"AP", "AP50", "AP75"};
            for (int c = 0; ok && c < 3; c++) {
                cJSON *e = cJSON_AddObjectToObject(d, dn[c]);
                double ci[2] = {g[k].ci_lo[c], g[k].ci_hi[c]};
                cJSON *ca = e ? cJSON_CreateDoubleArray(ci, 2) : NULL;
                ok = e && ca && cJSON_AddNumberToObject(e, "mean", g[k].delta[c]) && cJSON_AddItemToObject(e, "ci95", ca) &&
                     cJSON_AddStringToObject(e, "verdict", k == base ? "baseline" : md_compare_verdict(&g[k], c));
            }
        }
        if (ok && g[k].has_errors) {
            cJSON *er = cJSON_AddObjectToObject(o, "errors");
            ok = er != NULL;
            for (int t = 0; ok && t < 2; t++) {
                cJSON *e = cJSON_AddObjectToObject(er, t ? "0.75" : "0.50");
                cJSON *mn = e ? cJSON_AddObjectToObject(e, "main") : NULL, *sp = e ? cJSON_AddObjectToObject(e, "special") : NULL;
                ok = e && mn && sp && cJSON_AddNumberToObject(e, "pos_threshold", t ? 0.75 : 0.5) &&
                     cJSON_AddNumberToObject(e, "background_threshold", 0.1) && cJSON_AddNumberToObject(e, "ap", g[k].tide_ap[t]);
                for (int x = 0; ok && x < MD_TIDE_N_MAIN; x++) ok = cJSON_AddNumberToObject(mn, md_tide_main_name(x), g[k].err_main[t][x]) != NULL;
                for (int x = 0; ok && x < MD_TIDE_N_SPECIAL; x++)
                    ok = cJSON_AddNumberToObject(sp, md_tide_special_name(x), g[k].err_special[t][x]) != NULL;
            }
        }
    }
    return ok;
}

static md_status write_json(const md_run_summary *runs, int n, const md_run_group *g, int ng, int base, const char *path) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "runs"), *cols = cJSON_AddArrayToObject(root, "columns");
    cJSON *best = cJSON_AddObjectToObject(root, "best");
    int ok = root && arr && cols && best;
    for (int c = 0; ok && c < MD_CMP_NCOL; c++) ok = cJSON_AddItemToArray(cols, cJSON_CreateString(COLS[c]));
    for (int i = 0; ok && i < n; i++) {
        const md_run_summary *r = &runs[i];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(arr, o);
        ok = ok && cJSON_AddStringToObject(o, "dir", r->dir) && cJSON_AddStringToObject(o, "name", r->name) &&
             cJSON_AddStringToObject(o, "loss", r->loss) &&
             cJSON_AddItemToObject(o, "iter", num_or_null(r->iter < 0 ? NAN : (double)r->iter));
        ok = ok && cJSON_AddItemToObject(o, "train_time_s", num_or_null(r->train_time_s)) &&
             cJSON_AddItemToObject(o, "img_per_sec", num_or_null(r->img_per_sec));
        for (int c = 0; ok && c <= MD_CMP_AR100; c++) ok = cJSON_AddItemToObject(o, COLS[c], num_or_null(md_compare_value(r, c)));
        cJSON *s = ok ? cJSON_CreateDoubleArray(r->stats, 12) : NULL;
        ok = ok && s && cJSON_AddItemToObject(o, "stats", s);
        cJSON *ai = ok ? (r->has_ap_per_iou ? cJSON_CreateDoubleArray(r->ap_per_iou, 10) : cJSON_CreateNull()) : NULL;
        ok = ok && ai && cJSON_AddItemToObject(o, "ap_per_iou", ai);
        cJSON *pc = ok ? cJSON_AddObjectToObject(o, "per_category_ap") : NULL;
        ok = ok && pc;
        for (int k = 0; ok && k < r->n_cat; k++) {
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)r->cat_ids[k]);
            ok = cJSON_AddNumberToObject(pc, key, r->cat_ap[k]) != NULL;
        }
    }
    int b[MD_COMPARE_MAX_RUNS];
    for (int c = 0; ok && c < MD_CMP_NCOL; c++) {
        if (c == MD_CMP_ITERS) continue;
        md_compare_best(runs, n, c, b);
        cJSON *l = cJSON_AddArrayToObject(best, COLS[c]);
        ok = l != NULL;
        for (int i = 0; ok && i < n; i++)
            if (b[i]) ok = cJSON_AddItemToArray(l, cJSON_CreateString(runs[i].name));
    }
    ok = ok && json_groups(root, runs, g, ng, base);
    cJSON *pl = ok ? cJSON_AddArrayToObject(root, "plots") : NULL;
    ok = ok && pl;
    for (int k = 0; ok && k < N_PLOTS; k++) {
        char f[64];
        snprintf(f, sizeof f, "%s.png", PLOT_FILE[k]);
        ok = cJSON_AddItemToArray(pl, cJSON_CreateString(f));
    }
    char *txt = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!txt) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    size_t len = strlen(txt);
    md_status st = md_write_atomic(path, txt, len);
    free(txt);
    return st;
}

/* ------------------------------------------------------------ the report */

md_status md_compare_report(const md_run_summary *runs, int n, const char *out_dir, const char *vis_png, FILE *out) {
    md_compare_opts o = MD_COMPARE_OPTS_DEFAULT;
    return md_compare_report_ex(runs, n, &o, out_dir, vis_png, out);
}

md_status md_compare_report_ex(const md_run_summary *runs, int n, const md_compare_opts *o, const char *out_dir, const char *vis_png,
                               FILE *out) {
    if (n < 1 || n > MD_COMPARE_MAX_RUNS)
        return md_set_error(MD_ERR_ARG, "comparison: %d runs (1 to %d)", n, MD_COMPARE_MAX_RUNS);
    struct stat sb;
    if (stat(out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return md_set_error(MD_ERR_IO, "%s: output directory does not exist", out_dir);
    grid_t gm = {0}, gi = {0}, gc = {0}, gg = {0}, gd = {0}, ge = {0};
    text_t md = {0}, html = {0};
    char *path = NULL;
    md_run_group *g = NULL;
    int ng = 0, base = 0, seeds = 0;
    char (*verdicts)[512] = NULL;
    md_status st;
    if ((st = md_compare_groups(runs, n, o, &g, &ng, &base))) return st;
    for (int k = 0; k < ng; k++) seeds |= g[k].n > 1;
    if ((st = main_grid(runs, n, &gm)) || (st = iou_grid(runs, n, &gi)) || (st = cat_grid(runs, n, &gc)) || (st = group_grid(g, ng, &gg)) ||
        (g[0].has_delta && (st = delta_grid(g, ng, base, &gd))) || (g[0].has_errors && (st = errors_grid(g, ng, &ge))))
        goto done;
    if (!(verdicts = calloc((size_t)ng, sizeof *verdicts))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    for (int k = 0; k < ng; k++)
        if (k != base && g[k].has_delta) verdict_line(g, k, base, verdicts[k], sizeof verdicts[k]);
    if (out) {
        fprintf(out, "Box-loss comparison: %d run%s; COCO metrics x100 from each run's eval.json; * = best in column "
                     "(timings are not ranked)\n\n", n, n == 1 ? "" : "s");
        grid_print(&gm, out);
        if (seeds) {
            fprintf(out, "\nSeeds: runs whose configs differ only in run.name and run.seed (threads, loader and log settings aside), mean +- standard deviation (x100):\n");
            grid_print(&gg, out);
        }
        if (gd.rows) {
            fprintf(out, "\nAgainst %s: mean difference over the seeds (x100) and its 95%% interval from a paired bootstrap over the "
                         "val images (%d resamples):\n",
                    g[base].name, o->bootstrap);
            grid_print(&gd, out);
            for (int k = 0; k < ng; k++)
                if (verdicts[k][0]) fprintf(out, "  %s\n", verdicts[k]);
        }
        if (ge.rows) {
            fprintf(out, "\nTIDE error analysis (dAP: AP points gained by fixing every error of the type; mean over the seeds):\n");
            grid_print(&ge, out);
        }
        fprintf(out, "\nAP (x100) at each IoU threshold (* = best in row):\n");
        grid_print(&gi, out);
        if (gc.rows) {
            fprintf(out, "\nPer-category AP (x100, * = best in row):\n");
            grid_print(&gc, out);
        }
        fflush(out);
    }
    if ((st = write_plots(runs, n, g, ng, out_dir))) goto done;

    tx(&md, "# Box-loss comparison\n\n%d run%s. AP/AR columns are COCO metrics x100 (pycocotools `summarize()` order) "
            "taken from each run's `eval.json`; **bold** = best in the column (highest AP/AR; no mark where all runs show "
            "the same value). Train time and img/s are not ranked: runs that shared a machine, or ran on different ones, "
            "were not measured alike.\n\n",
       n, n == 1 ? "" : "s");
    grid_md(&gm, &md);
    if (seeds) {
        tx(&md, "\n## Seeds\n\nRuns whose resolved configs differ only in `run.name` and `run.seed` (threads, loader and log settings aside) form a group: mean +- "
                "standard deviation over the seeds (x100).\n\n");
        grid_md(&gg, &md);
    }
    if (gd.rows) {
        tx(&md, "\n## Differences against %s\n\nMean over the seeds of each run's AP minus the mean of the baseline's, x100, with the "
                "95 %% percentile interval of a paired bootstrap over the val images (%d resamples; every run re-scored on the "
                "same resample from its one matching). An interval above 0: better; below 0: worse; else no clear difference.\n\n",
           g[base].name, o->bootstrap);
        grid_md(&gd, &md);
        tx(&md, "\n");
        for (int k = 0; k < ng; k++)
            if (verdicts[k][0]) tx(&md, "- %s\n", verdicts[k]);
    }
    if (ge.rows) {
        tx(&md, "\n## Where the errors are (TIDE)\n\nTIDE's dAP (tidecv 1.0.1 rules, docs/TIDE.md): AP points gained by fixing every "
                "error of a type, at IoU .50 and .75, mean over the seeds. A box loss should move Loc most.\n\n");
        grid_md(&ge, &md);
    }
    tx(&md, "\nRuns: ");
    for (int i = 0; i < n; i++) tx(&md, "%s`%s`", i ? ", " : "", runs[i].dir);
    tx(&md, "\n\n## AP at each IoU threshold (x100)\n\n");
    grid_md(&gi, &md);
    if (gc.rows) {
        tx(&md, "\n## Per-category AP (x100)\n\n");
        grid_md(&gc, &md);
    }
    tx(&md, "\n## Plots\n\n");
    for (int k = 0; k < N_PLOTS; k++) tx(&md, "%s\n\n![%s](%s.png) ([SVG](%s.svg))\n\n", PLOT_CAPTION[k], PLOT_FILE[k], PLOT_FILE[k], PLOT_FILE[k]);
    if (vis_png) tx(&md, "## Detections on val images (--vis)\n\nGround truth, then each run's detections.\n\n![detections](%s)\n\n", vis_png);
    if (md.oom) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    if (!(path = join(out_dir, "compare.md", ""))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    if ((st = md_write_atomic(path, md.s, md.len))) goto done;
    free(path);
    if (!(path = join(out_dir, "compare.json", ""))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    if ((st = write_json(runs, n, g, ng, base, path))) goto done;
    free(path);

    tx(&html, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>minidet: box-loss comparison</title>\n"
              "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
              "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.l{text-align:left}th{background:#f2f2f2}"
              "td.best{font-weight:bold;background:#e6f4ea}img{max-width:100%%;border:1px solid #ddd}figure{margin:1.5em 0}"
              "</style></head><body>\n<h1>Box-loss comparison</h1>\n<p>%d run%s. AP/AR columns are COCO metrics &times;100 "
              "from each run's <code>eval.json</code>; <b>bold green</b> = best in the column (highest AP/AR). Train time "
              "and img/s are not ranked: runs that shared a machine, or ran on different ones, were not measured alike.</p>\n",
       n, n == 1 ? "" : "s");
    grid_html(&gm, &html);
    if (seeds) {
        tx(&html, "<h2>Seeds</h2>\n<p>Runs whose resolved configs differ only in run.name and run.seed (threads, loader and log settings aside): mean &plusmn; standard "
                  "deviation over the seeds (&times;100).</p>\n");
        grid_html(&gg, &html);
    }
    if (gd.rows) {
        tx(&html, "<h2>Differences against ");
        tx_html(&html, g[base].name);
        tx(&html, "</h2>\n<p>Mean difference over the seeds (&times;100) with the 95 %% interval of a paired bootstrap over the val "
                  "images (%d resamples).</p>\n",
           o->bootstrap);
        grid_html(&gd, &html);
        tx(&html, "<ul>\n");
        for (int k = 0; k < ng; k++)
            if (verdicts[k][0]) {
                tx(&html, "<li>");
                tx_html(&html, verdicts[k]);
                tx(&html, "</li>\n");
            }
        tx(&html, "</ul>\n");
    }
    if (ge.rows) {
        tx(&html, "<h2>Where the errors are (TIDE)</h2>\n<p>dAP: AP points gained by fixing every error of a type, mean over the "
                  "seeds.</p>\n");
        grid_html(&ge, &html);
    }
    tx(&html, "<h2>AP at each IoU threshold (&times;100)</h2>\n");
    grid_html(&gi, &html);
    if (gc.rows) {
        tx(&html, "<h2>Per-category AP (&times;100)</h2>\n");
        grid_html(&gc, &html);
    }
    tx(&html, "<h2>Plots</h2>\n");
    for (int k = 0; k < N_PLOTS; k++) {
        tx(&html, "<figure><img src=\"%s.png\" alt=\"%s\"><figcaption>", PLOT_FILE[k], PLOT_FILE[k]);
        tx_html(&html, PLOT_CAPTION[k]);
        tx(&html, " (<a href=\"%s.svg\">SVG</a>)</figcaption></figure>\n", PLOT_FILE[k]);
    }
    if (vis_png) {
        tx(&html, "<h2>Detections on val images</h2>\n<figure><img src=\"");
        tx_html(&html, vis_png);
        tx(&html, "\" alt=\"detections\"><figcaption>Ground truth, then each run's detections (--vis)</figcaption></figure>\n");
    }
    tx(&html, "</body></html>\n");
    if (html.oom) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    if (!(path = join(out_dir, "index.html", ""))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    st = md_write_atomic(path, html.s, html.len);
done:
    free(path);
    free(md.s);
    free(html.s);
    grid_free(&gm);
    grid_free(&gi);
    grid_free(&gc);
    grid_free(&gg);
    grid_free(&gd);
    grid_free(&ge);
    free(verdicts);
    md_compare_groups_free(g, ng);
    return st;
}

/* ------------------------------------------------------------ ./eval RUN_DIR ... */

static char *parent_dir(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    while (n > 0 && dir[n - 1] != '/') n--;
    while (n > 1 && dir[n - 1] == '/') n--;
    char *p = malloc(n + 2);
    if (!p) return NULL;
    if (n == 0) strcpy(p, ".");
    else { memcpy(p, dir, n); p[n] = 0; }
    return p;
}

md_status md_compare_run(const md_compare_options *o) {
    int n = o->n;
    if (n < 1 || n > MD_COMPARE_MAX_RUNS)
        return md_set_error(MD_ERR_ARG, "%d run directories given (1..%d can be compared at once)", n, MD_COMPARE_MAX_RUNS);
    md_run_summary runs[MD_COMPARE_MAX_RUNS];
    memset(runs, 0, sizeof runs);
    md_status st = MD_OK;
    char *parent = NULL, *vp = NULL;
    const char *out_dir = o->out_dir;
    for (int i = 0; i < n && !st; i++) {
        /* no final evaluation yet: evaluate the run's last checkpoint on its val split (./eval --weights) */
        char *ej = join(o->dirs[i], "eval.json", ""), *w = join(o->dirs[i], "last.safetensors", ""), *c = join(o->dirs[i], "config.cfg", "");
        if (!ej || !w || !c) st = md_set_error(MD_ERR_NOMEM, "out of memory");
        else if (!md_path_exists(ej) && md_path_exists(w) && md_path_exists(c)) {
            printf("run %s has no eval.json: evaluating %s on its val split\n", o->dirs[i], w);
            fflush(stdout);
            md_eval_weights_options eo;
            md_eval_weights_options_default(&eo);
            eo.weights = w;
            eo.config = c;
            eo.out_dir = o->dirs[i];
            char *dj = join(o->dirs[i], "detections.json", ""); /* kept for the comparison's bootstrap and TIDE */
            eo.out = dj;
            if (!dj) st = md_set_error(MD_ERR_NOMEM, "out of memory");
            else if ((st = md_eval_weights(&eo))) md_error_prefix(st, "run %s: evaluating its last checkpoint failed", o->dirs[i]);
            free(dj);
        }
        free(ej);
        free(w);
        free(c);
        if (!st) st = md_run_summary_load(o->dirs[i], &runs[i]);
    }
    /* two runs with the same directory name (from different parents) are told apart by their path */
    for (int i = 0; i < n && !st; i++)
        for (int j = 0; j < n; j++)
            if (i != j && !strcmp(runs[i].name, runs[j].name) && strcmp(runs[i].name, runs[i].dir)) {
                char *d = malloc(strlen(runs[i].dir) + 1);
                if (!d) { st = md_set_error(MD_ERR_NOMEM, "out of memory"); break; }
                strcpy(d, runs[i].dir);
                free(runs[i].name);
                runs[i].name = d;
                break;
            }
    if (!st && !out_dir) {
        if (!(parent = parent_dir(o->dirs[0]))) st = md_set_error(MD_ERR_NOMEM, "out of memory");
        out_dir = parent;
    }
    if (!st) st = md_mkdir_p(out_dir); /* --out DIR: created as ./train creates its run directory */
    /* the picture first, so that compare.md and index.html link it */
    if (!st && o->vis) {
        if (!(vp = join(out_dir, "compare_vis.png", ""))) st = md_set_error(MD_ERR_NOMEM, "out of memory");
        if (!st) st = md_compare_vis(runs, n, o->vis, o->vis_score, vp);
    }
    md_compare_opts copts = MD_COMPARE_OPTS_DEFAULT;
    copts.baseline = o->baseline;
    if (o->bootstrap) copts.bootstrap = o->bootstrap < 0 ? 0 : o->bootstrap;
    if (!st) st = md_compare_report_ex(runs, n, &copts, out_dir, o->vis ? "compare_vis.png" : NULL, stdout);
    if (!st && o->vis)
        printf("\nwrote %s (%d val images: ground truth, then each run's detections with score >= %.2f)\n", vp, o->vis,
               (double)o->vis_score);
    if (!st) printf("\nwrote %s/compare.md, compare.json, index.html and plots (compare_*.png, compare_*.svg)\n", out_dir);
    for (int i = 0; i < n; i++) md_run_summary_free(&runs[i]); /* safe on partly loaded / untouched runs */
    free(parent);
    free(vp);
    return st;
}
