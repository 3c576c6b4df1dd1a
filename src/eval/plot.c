/* plot.c — line plots as PNG (raster drawn here) and SVG (see plot.h).
 *
 * Both outputs share one layout (plot_layout): the data range rounded out to
 * "nice" ticks, margins sized for the tick labels and axis titles, the plot
 * area in pixels and the legend box. The raster backend draws series into a
 * coverage buffer (max of per-pixel anti-aliased coverage of every segment and
 * marker) and composites each series once, so joints are not darkened. */
#include "minidet/plot.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eval_util.h"
#include "minidet/fs.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop
#include <stb_image_write.h>

enum { TS = 2,               /* text scale: stb_easy_font units -> pixels */
       TH = 9 * TS,          /* text box height (cap height 7 + descenders) */
       TICK = 6, GAP = 8, LINE_W = 2, MARK_R = 4,
       CLIP_OUT = MARK_R + 1 /* series may draw this far outside the frame */ };

static const unsigned char PALETTE[10][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
    {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
static const unsigned char C_BG[3] = {255, 255, 255}, C_TEXT[3] = {20, 20, 20},
                           C_AXIS[3] = {60, 60, 60}, C_GRID[3] = {228, 228, 228}, C_NOTE[3] = {120, 120, 120};

void md_plot_color(int i, unsigned char rgb[3]) {
    if (i < 0) i = -i;
    memcpy(rgb, PALETTE[i % 10], 3);
}

/* ---------------------------------------------------------------- layout */

typedef struct {
    double lo, hi, step;
    int decimals;
} axis_t;

typedef struct {
    int W, H;
    axis_t ax, ay;
    int left, right, top, bottom; /* plot area: x in [left, right], y in [top, bottom] (pixels) */
    int leg_x, leg_y, leg_w, leg_h, leg_n; /* legend box (leg_n = 0: none) */
} layout_t;

/* Copies s into buf keeping printable ASCII only (stb_easy_font indexes a 96-glyph table). */
static void ascii_copy(char *buf, size_t cap, const char *s) {
    size_t n = 0;
    for (; s && *s && n + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[n++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    buf[n] = 0;
}

static int text_width(const char *s) {
    char buf[512];
    ascii_copy(buf, sizeof buf, s);
    return stb_easy_font_width(buf) * TS;
}

/* Smallest of {1, 2, 2.5, 5} x 10^k that is >= raw. */
static double nice_step(double raw, int *decimals) {
    double e = floor(log10(raw)), p = pow(10.0, e);
    static const double m[4] = {1, 2, 2.5, 5};
    double step = 10 * p;
    int extra = 0, k = (int)e + 1;
    for (int i = 0; i < 4; i++)
        if (m[i] * p >= raw * (1 - 1e-9)) { step = m[i] * p; extra = (i == 2); k = (int)e; break; }
    int d = k < 0 ? -k : 0;
    *decimals = d + extra;
    return step;
}

static void axis_make(axis_t *a, double lo, double hi, int auto_range, int from_zero, double tick) {
    if (auto_range) {
        if (from_zero) { if (lo > 0) lo = 0; if (hi < 0) hi = 0; }
        if (!(hi > lo)) { double d = fabs(lo) > 0 ? fabs(lo) * 0.5 : 1.0; lo -= d; hi += d; }
        a->step = nice_step((hi - lo) / 9, &a->decimals);
        a->lo = floor(lo / a->step + 1e-9) * a->step;
        a->hi = ceil(hi / a->step - 1e-9) * a->step;
        if (!(a->hi > a->lo)) a->hi = a->lo + a->step;
    } else {
        a->lo = lo;
        a->hi = hi;
        a->step = nice_step((hi - lo) / 9, &a->decimals);
    }
    if (tick > 0 && (a->hi - a->lo) / tick <= 100) {
        int d;
        nice_step(tick, &d); /* decimals of the given step */
        a->step = tick;
        a->decimals = d;
    }
}

static void tick_label(const axis_t *a, double v, char *buf, size_t cap) {
    if (fabs(v) < a->step * 1e-6) v = 0;
    snprintf(buf, cap, "%.*f", a->decimals, v);
}

static int tick_range(const axis_t *a, long *i0, long *i1) {
    *i0 = (long)ceil(a->lo / a->step - 1e-6);
    *i1 = (long)floor(a->hi / a->step + 1e-6);
    return *i1 >= *i0 && *i1 - *i0 < 1000;
}

static double map_x(const layout_t *L, double x) { return L->left + (x - L->ax.lo) / (L->ax.hi - L->ax.lo) * (L->right - L->left); }
static double map_y(const layout_t *L, double y) { return L->bottom - (y - L->ay.lo) / (L->ay.hi - L->ay.lo) * (L->bottom - L->top); }

static int finite2(double x, double y) { return isfinite(x) && isfinite(y); }

static void series_color(const md_plot_series *se, int s, unsigned char c[3]) { md_plot_color(se->color > 0 ? se->color - 1 : s, c); }

/* Tick label at v: the caller's name for an integer tick where x_names has one, else the number. */
static void x_tick_label(const md_plot *p, const axis_t *a, double v, char *buf, size_t cap) {
    long i = lround(v);
    if (p->x_names && fabs(v - (double)i) < 1e-9 && i >= 0 && i < p->n_x_names) snprintf(buf, cap, "%s", p->x_names[i]);
    else tick_label(a, v, buf, cap);
}

/* Bar i of series s in bars mode: x range in data units. */
static void bar_span(const md_plot *p, int s, double x, double *x0, double *x1) {
    double w = 0.8 / (p->n_series > 0 ? p->n_series : 1);
    *x0 = x - 0.4 + s * w;
    *x1 = *x0 + w;
}

/* Counts samples (every ~4 px along every segment, and every point) inside the box. */
static long legend_cover(const md_plot *p, const layout_t *L, int bx, int by, int bw, int bh) {
    long c = 0;
    for (int s = 0; s < p->n_series; s++) {
        const md_plot_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            if (!finite2(se->x[i], se->y[i])) continue;
            double x1 = map_x(L, se->x[i]), y1 = map_y(L, se->y[i]);
            double x0 = x1, y0 = y1;
            if (i > 0 && finite2(se->x[i - 1], se->y[i - 1])) { x0 = map_x(L, se->x[i - 1]); y0 = map_y(L, se->y[i - 1]); }
            double len = hypot(x1 - x0, y1 - y0);
            int k = (int)(len / 4) + 1;
            if (k > 2000) k = 2000;
            for (int j = 0; j <= k; j++) {
                double t = (double)j / k, x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
                if (x >= bx - 4 && x <= bx + bw + 4 && y >= by - 4 && y <= by + bh + 4) c++;
            }
        }
    }
    return c;
}

static md_status plot_layout(const md_plot *p, layout_t *L) {
    if (!p) return md_set_error(MD_ERR_ARG, "plot: NULL plot");
    if (p->n_series < 0 || p->n_series > MD_PLOT_MAX_SERIES || (p->n_series > 0 && !p->series))
        return md_set_error(MD_ERR_ARG, "plot '%s': %d series (at most %d)", p->title ? p->title : "", p->n_series,
                            MD_PLOT_MAX_SERIES);
    L->W = p->width > 0 ? p->width : 960;
    L->H = p->height > 0 ? p->height : 600;
    if (L->W < 200 || L->H < 150 || L->W > 8000 || L->H > 8000)
        return md_set_error(MD_ERR_ARG, "plot '%s': size %dx%d (200x150 .. 8000x8000)", p->title ? p->title : "", L->W, L->H);
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int s = 0; s < p->n_series; s++) {
        const md_plot_series *se = &p->series[s];
        if (se->n < 0 || (se->n > 0 && (!se->x || !se->y)))
            return md_set_error(MD_ERR_ARG, "plot '%s': series %d: bad points", p->title ? p->title : "", s);
        for (int i = 0; i < se->n; i++) {
            if (!finite2(se->x[i], se->y[i])) continue;
            if (se->x[i] < xlo) xlo = se->x[i];
            if (se->x[i] > xhi) xhi = se->x[i];
            if (se->y[i] < ylo) ylo = se->y[i];
            if (se->y[i] > yhi) yhi = se->y[i];
            if (se->y_lo && isfinite(se->y_lo[i]) && se->y_lo[i] < ylo) ylo = se->y_lo[i];
            if (se->y_hi && isfinite(se->y_hi[i]) && se->y_hi[i] > yhi) yhi = se->y_hi[i];
        }
    }
    if (!(xhi >= xlo)) { xlo = 0; xhi = 1; }
    if (!(yhi >= ylo)) { ylo = 0; yhi = 1; }
    if (!p->x_auto && !(isfinite(p->x_min) && isfinite(p->x_max) && p->x_max > p->x_min))
        return md_set_error(MD_ERR_ARG, "plot '%s': x range [%g, %g] is empty", p->title ? p->title : "", p->x_min, p->x_max);
    if (!p->y_auto && !(isfinite(p->y_min) && isfinite(p->y_max) && p->y_max > p->y_min))
        return md_set_error(MD_ERR_ARG, "plot '%s': y range [%g, %g] is empty", p->title ? p->title : "", p->y_min, p->y_max);
    axis_make(&L->ax, p->x_auto ? xlo : p->x_min, p->x_auto ? xhi : p->x_max, p->x_auto, p->x_from_zero, p->x_tick);
    axis_make(&L->ay, p->y_auto ? ylo : p->y_min, p->y_auto ? yhi : p->y_max, p->y_auto, p->y_from_zero, p->y_tick);

    int ylab_w = 0;
    long i0, i1;
    char buf[64];
    if (tick_range(&L->ay, &i0, &i1))
        for (long i = i0; i <= i1; i++) {
            tick_label(&L->ay, i * L->ay.step, buf, sizeof buf);
            int w = text_width(buf);
            if (w > ylab_w) ylab_w = w;
        }
    L->left = 14 + (p->y_label && *p->y_label ? TH + 12 : 0) + ylab_w + GAP + TICK;
    L->right = L->W - 28;
    L->top = 14 + (p->title && *p->title ? TH + 14 : 0);
    L->bottom = L->H - (14 + (p->x_label && *p->x_label ? TH + 12 : 0) + TH + GAP + TICK);
    if (L->right - L->left < 60 || L->bottom - L->top < 60)
        return md_set_error(MD_ERR_ARG, "plot '%s': %dx%d is too small for its labels", p->title ? p->title : "", L->W, L->H);

    /* legend: one row per labelled series, in the corner covering the fewest samples */
    L->leg_n = 0;
    int lab_w = 0;
    for (int s = 0; s < p->n_series; s++)
        if (p->series[s].label && *p->series[s].label) {
            L->leg_n++;
            int w = text_width(p->series[s].label);
            if (w > lab_w) lab_w = w;
        }
    if (L->leg_n) {
        L->leg_w = 12 + 36 + 10 + lab_w + 12;
        L->leg_h = L->leg_n * (TH + 10) + 10;
        const int inset = 12;
        int cx[4] = {L->right - inset - L->leg_w, L->left + inset, L->right - inset - L->leg_w, L->left + inset};
        int cy[4] = {L->top + inset, L->top + inset, L->bottom - inset - L->leg_h, L->bottom - inset - L->leg_h};
        long best = -1;
        for (int c = 0; c < 4; c++) {
            long cov = legend_cover(p, L, cx[c], cy[c], L->leg_w, L->leg_h);
            if (best < 0 || cov < best) { best = cov; L->leg_x = cx[c]; L->leg_y = cy[c]; }
        }
    }
    return MD_OK;
}

md_status md_plot_map(const md_plot *p, double x, double y, double *px, double *py) {
    layout_t L;
    md_status st = plot_layout(p, &L);
    if (st) return st;
    *px = map_x(&L, x);
    *py = map_y(&L, y);
    return MD_OK;
}

/* ---------------------------------------------------------------- raster backend */

typedef struct {
    unsigned char *px;
    int W, H;
    float *cov; /* [H][W] coverage of the series being drawn */
    int cx0, cy0, cx1, cy1; /* clip box for series (inclusive) */
} raster_t;

static void r_fill(raster_t *r, int x0, int y0, int x1, int y1, const unsigned char c[3]) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > r->W) x1 = r->W;
    if (y1 > r->H) y1 = r->H;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(r->px + ((size_t)y * r->W + x) * 3, c, 3);
}

/* Text with its box's top-left at (x, y) (rot = 0), or rotated 90 degrees
 * counter-clockwise with the box's bottom-left at (x, y) (rot = 1: reads upwards). */
static void r_text_scaled(raster_t *r, int x, int y, const char *s, const unsigned char c[3], int rot, int scale) {
    char buf[512];
    ascii_copy(buf, sizeof buf, s);
    size_t cap = strlen(buf) * 1024 + 256; /* bytes; a glyph is at most ~12 quads of 64 bytes */
    float *vb = malloc(cap);
    if (!vb) return; /* text is decoration; the caller still gets a plot */
    int nq = stb_easy_font_print(0, 0, buf, NULL, vb, (int)cap);
    for (int q = 0; q < nq; q++) {
        const float *v0 = vb + q * 16, *v2 = vb + q * 16 + 8; /* 4 floats per vertex, vertices 0 and 2 */
        int u0 = (int)lrintf(v0[0]) * scale, w0 = (int)lrintf(v0[1]) * scale, u1 = (int)lrintf(v2[0]) * scale,
            w1 = (int)lrintf(v2[1]) * scale;
        if (!rot) r_fill(r, x + u0, y + w0, x + u1, y + w1, c);
        else r_fill(r, x + w0, y - u1, x + w1, y - u0, c);
    }
    free(vb);
}

static void r_text(raster_t *r, int x, int y, const char *s, const unsigned char c[3], int rot) { r_text_scaled(r, x, y, s, c, rot, TS); }

void md_plot_text(unsigned char *rgb, int width, int height, int x, int y, const char *text, int scale, const unsigned char color[3]) {
    raster_t r = {rgb, width, height, NULL, 0, 0, width - 1, height - 1};
    r_text_scaled(&r, x, y, text, color, 0, scale < 1 ? 1 : scale);
}

int md_plot_text_width(const char *text, int scale) { return text_width(text) / TS * (scale < 1 ? 1 : scale); }

/* ---------------------------------------------------------------- detection boxes */

static void put_px(unsigned char *rgb, int W, int H, int x, int y, const unsigned char c[3]) {
    if (x >= 0 && x < W && y >= 0 && y < H) memcpy(rgb + ((size_t)y * W + x) * 3, c, 3);
}

/* The 1-pixel ring of the rectangle [a0, a1] x [b0, b1] (inclusive). */
static void rect_ring(unsigned char *rgb, int W, int H, int a0, int b0, int a1, int b1, const unsigned char c[3]) {
    if (a1 < a0 || b1 < b0) return;
    for (int x = a0; x <= a1; x++) {
        put_px(rgb, W, H, x, b0, c);
        put_px(rgb, W, H, x, b1, c);
    }
    for (int y = b0; y <= b1; y++) {
        put_px(rgb, W, H, a0, y, c);
        put_px(rgb, W, H, a1, y, c);
    }
}

void md_plot_boxes(unsigned char *rgb, int W, int H, int ox, int oy, int k, const md_plot_box *b, int n, int text_scale) {
    static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    if (k < 1) k = 1;
    if (text_scale < 1) text_scale = 1;
    for (int i = 0; i < n; i++) {
        if (!(isfinite(b[i].box[0]) && isfinite(b[i].box[1]) && isfinite(b[i].box[2]) && isfinite(b[i].box[3]))) continue;
        unsigned char c[3];
        md_plot_color(b[i].color, c);
        /* float -> int only inside the raster's range (a wild box must not overflow int) */
        float lim = 4.0f * (float)(W > H ? W : H) + 16.0f;
        float f[4];
        for (int q = 0; q < 4; q++) {
            float v = b[i].box[q] * (float)k;
            f[q] = v < -lim ? -lim : (v > lim ? lim : v);
        }
        int x0 = ox + (int)floorf(f[0]), y0 = oy + (int)floorf(f[1]), x1 = ox + (int)ceilf(f[2]) - 1,
            y1 = oy + (int)ceilf(f[3]) - 1;
        rect_ring(rgb, W, H, x0 - 1, y0 - 1, x1 + 1, y1 + 1, white);
        for (int t = 0; t < MD_PLOT_BOX_LINE; t++) rect_ring(rgb, W, H, x0 + t, y0 + t, x1 - t, y1 - t, c);
        if (!b[i].label || !b[i].label[0]) continue;
        int tw = md_plot_text_width(b[i].label, text_scale) + 2 * text_scale + 2, th = 9 * text_scale + 2;
        int tx = x0 + tw > W ? W - tw : x0, ty = y0 - 1 - th >= 0 ? y0 - 1 - th : (y0 < 0 ? 0 : y0);
        if (tx < 0) tx = 0;
        for (int y = ty; y < ty + th; y++)
            for (int x = tx; x < tx + tw; x++) put_px(rgb, W, H, x, y, c);
        int lum = 299 * c[0] + 587 * c[1] + 114 * c[2]; /* Rec. 601 luma x 1000 */
        md_plot_text(rgb, W, H, tx + text_scale + 1, ty + 1, b[i].label, text_scale, lum > 150000 ? black : white);
    }
}

static void cov_put(raster_t *r, int x, int y, float a) {
    if (x < r->cx0 || x > r->cx1 || y < r->cy0 || y > r->cy1 || a <= 0) return;
    float *p = r->cov + (size_t)y * r->W + x;
    if (a > *p) *p = a > 1 ? 1 : a;
}

static void cov_segment(raster_t *r, double xa, double ya, double xb, double yb, double width) {
    double h = width / 2 + 1;
    int x0 = (int)floor(fmin(xa, xb) - h), x1 = (int)ceil(fmax(xa, xb) + h);
    int y0 = (int)floor(fmin(ya, yb) - h), y1 = (int)ceil(fmax(ya, yb) + h);
    if (x0 < r->cx0) x0 = r->cx0;
    if (y0 < r->cy0) y0 = r->cy0;
    if (x1 > r->cx1) x1 = r->cx1;
    if (y1 > r->cy1) y1 = r->cy1;
    double dx = xb - xa, dy = yb - ya, l2 = dx * dx + dy * dy;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double px = x + 0.5, py = y + 0.5, t = l2 > 0 ? ((px - xa) * dx + (py - ya) * dy) / l2 : 0;
            if (t < 0) t = 0;
            if (t > 1) t = 1;
            double d = hypot(px - (xa + t * dx), py - (ya + t * dy));
            cov_put(r, x, y, (float)(width / 2 + 0.5 - d));
        }
}

static void cov_disc(raster_t *r, double cx, double cy, double rad) {
    for (int y = (int)floor(cy - rad - 1); y <= (int)ceil(cy + rad + 1); y++)
        for (int x = (int)floor(cx - rad - 1); x <= (int)ceil(cx + rad + 1); x++)
            cov_put(r, x, y, (float)(rad + 0.5 - hypot(x + 0.5 - cx, y + 0.5 - cy)));
}

static void cov_composite(raster_t *r, const unsigned char c[3]) {
    for (int y = r->cy0; y <= r->cy1; y++)
        for (int x = r->cx0; x <= r->cx1; x++) {
            float *a = r->cov + (size_t)y * r->W + x;
            if (*a <= 0) continue;
            unsigned char *p = r->px + ((size_t)y * r->W + x) * 3;
            for (int k = 0; k < 3; k++) p[k] = (unsigned char)lrintf(p[k] * (1 - *a) + c[k] * *a);
            *a = 0;
        }
}

/* Draws one series (line + markers) through the coverage buffer. */
static void r_series(raster_t *r, const layout_t *L, const md_plot_series *se, const unsigned char c[3]) {
    for (int i = 1; i < se->n; i++)
        if (finite2(se->x[i - 1], se->y[i - 1]) && finite2(se->x[i], se->y[i]))
            cov_segment(r, map_x(L, se->x[i - 1]), map_y(L, se->y[i - 1]), map_x(L, se->x[i]), map_y(L, se->y[i]), LINE_W);
    for (int i = 0; i < se->n; i++) {
        if (!finite2(se->x[i], se->y[i])) continue;
        int isolated = (i == 0 || !finite2(se->x[i - 1], se->y[i - 1])) && (i + 1 >= se->n || !finite2(se->x[i + 1], se->y[i + 1]));
        if (se->markers || isolated) cov_disc(r, map_x(L, se->x[i]), map_y(L, se->y[i]), MARK_R);
    }
    cov_composite(r, c);
}

/* The band between y_lo and y_hi: each pixel column between two finite points, blended at 20 %. */
static void r_band(raster_t *r, const layout_t *L, const md_plot_series *se, const unsigned char c[3]) {
    if (!se->y_lo || !se->y_hi) return;
    for (int i = 1; i < se->n; i++) {
        if (!isfinite(se->x[i - 1]) || !isfinite(se->x[i]) || !finite2(se->y_lo[i - 1], se->y_hi[i - 1]) ||
            !finite2(se->y_lo[i], se->y_hi[i]))
            continue;
        double xa = map_x(L, se->x[i - 1]), xb = map_x(L, se->x[i]);
        for (int x = (int)ceil(fmin(xa, xb)); x <= (int)floor(fmax(xa, xb)); x++) {
            if (x < r->cx0 || x > r->cx1) continue;
            double t = xb != xa ? (x - xa) / (xb - xa) : 0;
            double lo = map_y(L, se->y_lo[i - 1] + t * (se->y_lo[i] - se->y_lo[i - 1]));
            double hi = map_y(L, se->y_hi[i - 1] + t * (se->y_hi[i] - se->y_hi[i - 1]));
            for (int y = (int)ceil(fmin(lo, hi)); y <= (int)floor(fmax(lo, hi)); y++) {
                if (y < r->cy0 || y > r->cy1) continue;
                unsigned char *q = r->px + ((size_t)y * r->W + x) * 3;
                for (int k = 0; k < 3; k++) q[k] = (unsigned char)lrint(q[k] * 0.8 + c[k] * 0.2);
            }
        }
    }
}

/* Bars of series s (bars mode), from 0 to y. */
static void r_bars(raster_t *r, const layout_t *L, const md_plot *p, int s, const unsigned char c[3]) {
    const md_plot_series *se = &p->series[s];
    for (int i = 0; i < se->n; i++) {
        if (!finite2(se->x[i], se->y[i])) continue;
        double x0, x1;
        bar_span(p, s, se->x[i], &x0, &x1);
        double ya = map_y(L, 0 < L->ay.lo ? L->ay.lo : 0), yb = map_y(L, se->y[i]);
        int px0 = (int)lrint(map_x(L, x0)) + 1, px1 = (int)lrint(map_x(L, x1));
        int py0 = (int)lrint(fmin(ya, yb)), py1 = (int)lrint(fmax(ya, yb)) + 1;
        if (px0 < r->cx0) px0 = r->cx0;
        if (py0 < r->cy0) py0 = r->cy0;
        if (px1 > r->cx1 + 1) px1 = r->cx1 + 1;
        if (py1 > r->cy1 + 1) py1 = r->cy1 + 1;
        r_fill(r, px0, py0, px1, py1, c);
    }
}

md_status md_plot_render(const md_plot *p, unsigned char *rgb, int width, int height) {
    layout_t L;
    md_status st = plot_layout(p, &L);
    if (st) return st;
    if (width != L.W || height != L.H)
        return md_set_error(MD_ERR_ARG, "plot '%s': buffer %dx%d, plot %dx%d", p->title ? p->title : "", width, height, L.W, L.H);
    raster_t r = {rgb, L.W, L.H, calloc((size_t)L.W * L.H, sizeof(float)), 0, 0, L.W - 1, L.H - 1};
    if (!r.cov) return md_set_error(MD_ERR_NOMEM, "plot '%s': out of memory", p->title ? p->title : "");
    r_fill(&r, 0, 0, L.W, L.H, C_BG);
    char buf[64];
    long i0, i1;
    /* grid and ticks */
    if (tick_range(&L.ax, &i0, &i1))
        for (long i = i0; i <= i1; i++) {
            int x = (int)lrint(map_x(&L, i * L.ax.step));
            r_fill(&r, x, L.top, x + 1, L.bottom, C_GRID);
            r_fill(&r, x, L.bottom, x + 1, L.bottom + TICK, C_AXIS);
            x_tick_label(p, &L.ax, i * L.ax.step, buf, sizeof buf);
            r_text(&r, x - text_width(buf) / 2, L.bottom + TICK + GAP, buf, C_TEXT, 0);
        }
    if (tick_range(&L.ay, &i0, &i1))
        for (long i = i0; i <= i1; i++) {
            int y = (int)lrint(map_y(&L, i * L.ay.step));
            r_fill(&r, L.left, y, L.right, y + 1, C_GRID);
            r_fill(&r, L.left - TICK, y, L.left, y + 1, C_AXIS);
            tick_label(&L.ay, i * L.ay.step, buf, sizeof buf);
            r_text(&r, L.left - TICK - GAP - text_width(buf), y - 7 * TS / 2, buf, C_TEXT, 0);
        }
    /* frame */
    r_fill(&r, L.left, L.top, L.right + 1, L.top + 1, C_AXIS);
    r_fill(&r, L.left, L.bottom, L.right + 1, L.bottom + 1, C_AXIS);
    r_fill(&r, L.left, L.top, L.left + 1, L.bottom + 1, C_AXIS);
    r_fill(&r, L.right, L.top, L.right + 1, L.bottom + 1, C_AXIS);
    /* titles */
    if (p->title && *p->title) r_text(&r, (L.left + L.right) / 2 - text_width(p->title) / 2, 14, p->title, C_TEXT, 0);
    if (p->x_label && *p->x_label)
        r_text(&r, (L.left + L.right) / 2 - text_width(p->x_label) / 2, L.H - 14 - TH, p->x_label, C_TEXT, 0);
    if (p->y_label && *p->y_label)
        r_text(&r, 14, (L.top + L.bottom) / 2 + text_width(p->y_label) / 2, p->y_label, C_TEXT, 1);
    if (p->note && *p->note)
        r_text(&r, (L.left + L.right) / 2 - text_width(p->note) / 2, (L.top + L.bottom) / 2 - TH / 2, p->note, C_NOTE, 0);
    /* series, clipped to the plot area */
    r.cx0 = L.left - CLIP_OUT; r.cy0 = L.top - CLIP_OUT; r.cx1 = L.right + CLIP_OUT; r.cy1 = L.bottom + CLIP_OUT;
    for (int s = 0; s < p->n_series; s++) { /* bands first, under every line */
        unsigned char c[3];
        series_color(&p->series[s], s, c);
        r_band(&r, &L, &p->series[s], c);
    }
    for (int s = 0; s < p->n_series; s++) {
        unsigned char c[3];
        series_color(&p->series[s], s, c);
        if (p->bars) r_bars(&r, &L, p, s, c);
        else r_series(&r, &L, &p->series[s], c);
    }
    /* legend */
    if (L.leg_n) {
        r.cx0 = 0; r.cy0 = 0; r.cx1 = L.W - 1; r.cy1 = L.H - 1;
        r_fill(&r, L.leg_x, L.leg_y, L.leg_x + L.leg_w, L.leg_y + L.leg_h, C_AXIS);
        r_fill(&r, L.leg_x + 1, L.leg_y + 1, L.leg_x + L.leg_w - 1, L.leg_y + L.leg_h - 1, C_BG);
        int row = 0;
        for (int s = 0; s < p->n_series; s++) {
            const md_plot_series *se = &p->series[s];
            if (!se->label || !*se->label) continue;
            unsigned char c[3];
            series_color(se, s, c);
            int ty = L.leg_y + 10 + row * (TH + 10), my = ty + 7 * TS / 2;
            cov_segment(&r, L.leg_x + 12, my, L.leg_x + 48, my, LINE_W + 1);
            if (se->markers) cov_disc(&r, L.leg_x + 30, my, MARK_R);
            cov_composite(&r, c);
            r_text(&r, L.leg_x + 58, ty, se->label, C_TEXT, 0);
            row++;
        }
    }
    free(r.cov);
    return MD_OK;
}

typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if (b->data && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t nc = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *nd = realloc(b->data, nc);
        if (!nd) { b->oom = 1; return; }
        b->data = nd;
        b->cap = nc;
    }
}

typedef struct {
    sbuf_t *b;
} png_ctx;

static void png_sink(void *ctx, void *data, int size) {
    sbuf_t *b = ((png_ctx *)ctx)->b;
    if (b->oom || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 65536) + (size_t)size;
        char *nd = realloc(b->data, nc);
        if (!nd) { b->oom = 1; return; }
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

md_status md_plot_write_rgb_png(const char *path, const unsigned char *rgb, int width, int height) {
    sbuf_t b = {0};
    png_ctx ctx = {&b};
    int ok = stbi_write_png_to_func(png_sink, &ctx, width, height, 3, rgb, width * 3);
    if (!ok || b.oom) { free(b.data); return md_set_error(MD_ERR_NOMEM, "%s: PNG encoding failed (out of memory)", path); }
    md_status st = md_write_atomic(path, b.data, b.len);
    free(b.data);
    return st;
}

md_status md_plot_png(const md_plot *p, const char *path) {
    layout_t L;
    md_status st = plot_layout(p, &L);
    if (st) return md_error_prefix(st, "%s", path);
    unsigned char *rgb = malloc((size_t)L.W * L.H * 3);
    if (!rgb) return md_set_error(MD_ERR_NOMEM, "%s: out of memory for a %dx%d image", path, L.W, L.H);
    st = md_plot_render(p, rgb, L.W, L.H);
    if (!st) st = md_plot_write_rgb_png(path, rgb, L.W, L.H);
    else md_error_prefix(st, "%s", path);
    free(rgb);
    return st;
}

/* ---------------------------------------------------------------- SVG backend */

static void svg_escape(sbuf_t *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

static void svg_rgb(char out[8], const unsigned char c[3]) { snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]); }

/* anchor: "start" | "middle" | "end"; (x, y) is the baseline point. */
static void svg_text(sbuf_t *b, double x, double y, const char *anchor, const unsigned char c[3], int rot, const char *s) {
    char col[8];
    svg_rgb(col, c);
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"%s\"", x, y, anchor, col);
    if (rot) sb_printf(b, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
    sb_printf(b, ">");
    svg_escape(b, s);
    sb_printf(b, "</text>\n");
}

md_status md_plot_svg(const md_plot *p, const char *path) {
    layout_t L;
    md_status st = plot_layout(p, &L);
    if (st) return md_error_prefix(st, "%s", path);
    sbuf_t b = {0};
    char col[8], buf[64];
    const int base = 7 * TS; /* baseline offset from the top of a text box */
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"17\">\n",
              L.W, L.H, L.W, L.H);
    sb_printf(&b, "<defs><clipPath id=\"area\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/></clipPath></defs>\n",
              L.left - CLIP_OUT, L.top - CLIP_OUT, L.right - L.left + 2 * CLIP_OUT, L.bottom - L.top + 2 * CLIP_OUT);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    long i0, i1;
    if (tick_range(&L.ax, &i0, &i1))
        for (long i = i0; i <= i1; i++) {
            double x = lrint(map_x(&L, i * L.ax.step)) + 0.5;
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e4e4e4\"/>\n", x, L.top, x, L.bottom);
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#3c3c3c\"/>\n", x, L.bottom, x, L.bottom + TICK);
            x_tick_label(p, &L.ax, i * L.ax.step, buf, sizeof buf);
            svg_text(&b, x, L.bottom + TICK + GAP + base, "middle", C_TEXT, 0, buf);
        }
    if (tick_range(&L.ay, &i0, &i1))
        for (long i = i0; i <= i1; i++) {
            double y = lrint(map_y(&L, i * L.ay.step)) + 0.5;
            sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", L.left, y, L.right, y);
            sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#3c3c3c\"/>\n", L.left - TICK, y, L.left, y);
            tick_label(&L.ay, i * L.ay.step, buf, sizeof buf);
            svg_text(&b, L.left - TICK - GAP, y + base / 2.0, "end", C_TEXT, 0, buf);
        }
    sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#3c3c3c\"/>\n", L.left + 0.5,
              L.top + 0.5, L.right - L.left, L.bottom - L.top);
    if (p->title && *p->title) svg_text(&b, (L.left + L.right) / 2.0, 14 + base, "middle", C_TEXT, 0, p->title);
    if (p->x_label && *p->x_label) svg_text(&b, (L.left + L.right) / 2.0, L.H - 14 - TH + base, "middle", C_TEXT, 0, p->x_label);
    if (p->y_label && *p->y_label) svg_text(&b, 14 + base, (L.top + L.bottom) / 2.0, "middle", C_TEXT, 1, p->y_label);
    if (p->note && *p->note) svg_text(&b, (L.left + L.right) / 2.0, (L.top + L.bottom) / 2.0 + base / 2.0, "middle", C_NOTE, 0, p->note);
    sb_printf(&b, "<g clip-path=\"url(#area)\" fill=\"none\" stroke-width=\"%d\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n", LINE_W);
    for (int s = 0; s < p->n_series; s++) { /* bands, then bars or lines */
        const md_plot_series *se = &p->series[s];
        unsigned char c[3];
        series_color(se, s, c);
        svg_rgb(col, c);
        if (!se->y_lo || !se->y_hi) continue;
        int i0b = -1;
        for (int i = 0; i <= se->n; i++) {
            int ok = i < se->n && isfinite(se->x[i]) && finite2(se->y_lo[i], se->y_hi[i]);
            if (ok && i0b < 0) i0b = i;
            if (!ok && i0b >= 0) {
                sb_printf(&b, "<polygon fill=\"%s\" fill-opacity=\"0.2\" stroke=\"none\" points=\"", col);
                for (int j = i0b; j < i; j++) sb_printf(&b, "%.2f,%.2f ", map_x(&L, se->x[j]), map_y(&L, se->y_hi[j]));
                for (int j = i - 1; j >= i0b; j--) sb_printf(&b, "%.2f,%.2f ", map_x(&L, se->x[j]), map_y(&L, se->y_lo[j]));
                sb_printf(&b, "\"/>\n");
                i0b = -1;
            }
        }
    }
    for (int s = 0; s < p->n_series; s++) {
        const md_plot_series *se = &p->series[s];
        unsigned char c[3];
        series_color(se, s, c);
        svg_rgb(col, c);
        if (p->bars) {
            for (int i = 0; i < se->n; i++) {
                if (!finite2(se->x[i], se->y[i])) continue;
                double x0, x1;
                bar_span(p, s, se->x[i], &x0, &x1);
                double ya = map_y(&L, 0 < L.ay.lo ? L.ay.lo : 0), yb = map_y(&L, se->y[i]);
                sb_printf(&b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" stroke=\"none\"/>\n",
                          map_x(&L, x0) + 1, fmin(ya, yb), map_x(&L, x1) - map_x(&L, x0) - 1, fabs(ya - yb), col);
            }
            continue;
        }
        int open = 0;
        for (int i = 0; i < se->n; i++) {
            if (!finite2(se->x[i], se->y[i])) {
                if (open) sb_printf(&b, "\"/>\n");
                open = 0;
                continue;
            }
            if (!open) sb_printf(&b, "<polyline stroke=\"%s\" points=\"", col);
            sb_printf(&b, "%s%.2f,%.2f", open ? " " : "", map_x(&L, se->x[i]), map_y(&L, se->y[i]));
            open = 1;
        }
        if (open) sb_printf(&b, "\"/>\n");
        for (int i = 0; i < se->n; i++) {
            if (!finite2(se->x[i], se->y[i])) continue;
            int isolated = (i == 0 || !finite2(se->x[i - 1], se->y[i - 1])) && (i + 1 >= se->n || !finite2(se->x[i + 1], se->y[i + 1]));
            if (se->markers || isolated)
                sb_printf(&b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%d\" fill=\"%s\" stroke=\"none\"/>\n", map_x(&L, se->x[i]),
                          map_y(&L, se->y[i]), MARK_R, col);
        }
    }
    sb_printf(&b, "</g>\n");
    if (L.leg_n) {
        sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"#3c3c3c\"/>\n", L.leg_x + 0.5,
                  L.leg_y + 0.5, L.leg_w - 1, L.leg_h - 1);
        int row = 0;
        for (int s = 0; s < p->n_series; s++) {
            const md_plot_series *se = &p->series[s];
            if (!se->label || !*se->label) continue;
            unsigned char c[3];
            series_color(se, s, c);
            svg_rgb(col, c);
            int ty = L.leg_y + 10 + row * (TH + 10);
            double my = ty + 7 * TS / 2.0;
            sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%d\"/>\n", L.leg_x + 12, my,
                      L.leg_x + 48, my, col, LINE_W + 1);
            if (se->markers) sb_printf(&b, "<circle cx=\"%d\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n", L.leg_x + 30, my, MARK_R, col);
            svg_text(&b, L.leg_x + 58, ty + base, "start", C_TEXT, 0, se->label);
            row++;
        }
    }
    sb_printf(&b, "</svg>\n");
    if (b.oom) { free(b.data); return md_set_error(MD_ERR_NOMEM, "%s: out of memory writing the SVG", path); }
    st = md_write_atomic(path, b.data, b.len);
    free(b.data);
    return st;
}
