/* plot.h — small line plots written as PNG (drawn in C) and as SVG.
 *
 * The comparison report (compare.h) draws its figures with this module:
 * training-loss curves, AP against iteration, AP against IoU threshold and
 * precision-recall curves. One md_plot describes a figure — title, axis
 * titles (with units), axis ranges, and up to a dozen series (label, x/y
 * points, optional markers) — and the same layout is rendered two ways:
 *   - md_plot_png(): an RGB raster with anti-aliased lines, axes, "nice"
 *     ticks (1/2/2.5/5 x 10^k) with labels, light grid, title, legend placed
 *     in the corner that hides the fewest points, distinct colours (Tableau
 *     10 palette); text is stb_easy_font's segment font rendered at 2x
 *     (ASCII only), the file is written with stb_image_write;
 *   - md_plot_svg(): hand-written SVG with the same geometry.
 * Files are written atomically (temp file + rename). Non-finite y values break
 * a line (a gap), so callers mark undefined points (pycocotools' -1) as NAN. */
#ifndef MINIDET_PLOT_H
#define MINIDET_PLOT_H
#include <stddef.h>
#include "minidet/error.h"

#define MD_PLOT_MAX_SERIES 64 /* colours repeat after 10: colour series by group (md_plot_series.color) */

typedef struct {
    const char *label;      /* legend entry (ASCII) */
    int n;                  /* number of points */
    const double *x, *y;    /* [n]; a non-finite x or y is a gap in the line */
    int markers;            /* 1 = a dot at every point */
    const double *y_lo, *y_hi; /* optional [n]: a light band of the series' colour between them (e.g. +- 1 sd) */
    int color;              /* md_plot_color index + 1; 0 = the series' own index */
} md_plot_series;

typedef struct {
    const char *title;      /* above the plot */
    const char *x_label;    /* axis titles: say what and the unit, e.g. "iteration (batches of 2 images)" */
    const char *y_label;
    int width, height;      /* pixels; 0 = 960 x 600 */
    int x_auto, y_auto;     /* 1 = range from the data (rounded out to ticks), 0 = use *_min.._max */
    int x_from_zero, y_from_zero; /* with *_auto: include 0 in the range */
    double x_min, x_max, y_min, y_max;
    double x_tick, y_tick;  /* tick spacing; 0 = automatic (about 5 to 10 ticks at 1/2/2.5/5 x 10^k) */
    int n_series;           /* 0..MD_PLOT_MAX_SERIES */
    const md_plot_series *series;
    const char *note;       /* optional: centred in the plot area (e.g. "no periodic evaluations") */
    int bars;               /* 1 = grouped bars: point i of series s is a bar from 0 to y[i] at x[i], the series
                             * side by side within 0.8 x units; set x_min/x_max to -0.5 / n - 0.5 and x_tick 1 */
    const char *const *x_names; /* optional [n_x_names]: labels of the x ticks 0, 1, ... instead of numbers */
    int n_x_names;
} md_plot;

/* Writes the plot as an 8-bit RGB PNG of width x height pixels. */
md_status md_plot_png(const md_plot *p, const char *path);
/* Writes the same plot as SVG (width x height user units). */
md_status md_plot_svg(const md_plot *p, const char *path);
/* Renders into a caller buffer rgb[height][width][3] (what md_plot_png writes). */
md_status md_plot_render(const md_plot *p, unsigned char *rgb, int width, int height);
/* Draws ASCII text (stb_easy_font glyphs, each font unit scale x scale pixels) with its
 * top-left corner at (x, y) into rgb[height][width][3], clipped to the image. */
void md_plot_text(unsigned char *rgb, int width, int height, int x, int y, const char *text, int scale,
                  const unsigned char color[3]);
/* Width in pixels of text drawn by md_plot_text at that scale (glyphs are 7 units high, 9 with descenders). */
int md_plot_text_width(const char *text, int scale);
/* Writes an RGB image rgb[height][width][3] as PNG, atomically. */
md_status md_plot_write_rgb_png(const char *path, const unsigned char *rgb, int width, int height);
/* Colour of series i (distinct for i < 10, then repeating). */
void md_plot_color(int i, unsigned char rgb[3]);

/* Detection drawing, shared by `./eval --weights ... --vis N` and the comparison sheet. */
typedef struct {
    float box[4];      /* x1, y1, x2, y2 in the drawn image's pixels (before the scale k) */
    int color;         /* md_plot_color index */
    const char *label; /* tag text (ASCII), or NULL for no tag */
} md_plot_box;
/* Draws boxes b[0..n) in order (later ones on top) onto an image painted at (ox, oy) with integer
 * scale k inside rgb[height][width][3]. A box covers pixels floor(k x1) .. ceil(k x2) - 1 (same for y):
 * its outline is MD_PLOT_BOX_LINE pixels of its colour inwards from that edge plus a 1-pixel white
 * halo just outside. A label is a tag filled with the box colour (text white, or black on light
 * colours, scale text_scale) sitting on the top-left corner above the box, or inside it when the box
 * touches the top of the image. Everything is clipped to the raster. */
#define MD_PLOT_BOX_LINE 2
void md_plot_boxes(unsigned char *rgb, int width, int height, int ox, int oy, int k, const md_plot_box *b, int n,
                   int text_scale);
/* Where data point (x, y) lands in the raster of md_plot_render (pixel centre
 * coordinates), for tests and for callers that annotate. Returns MD_ERR_ARG
 * if the plot is invalid. */
md_status md_plot_map(const md_plot *p, double x, double y, double *px, double *py);

#endif
