/* shapes.h — the synthetic "shapes" detection dataset (the embedded default).
 *
 * md_shapes_generate writes OUT_DIR/images/NNNNNN.png (or .jpg) and
 * OUT_DIR/annotations.json (COCO instances format) for N images of
 * rectangles, ellipses, triangles and thin bars (elongated, so localisation
 * matters) of varied size (down to a few pixels), colour and overlap on a
 * noisy gradient background. Everything is a pure function of (seed, split,
 * image index): the same arguments give byte-identical files, and the train
 * and val splits of one seed are different images.
 *
 * Boxes are exact: each shape is rasterised without anti-aliasing into an
 * owner map (which shape is visible at each pixel), and its box is the tight
 * box of its visible pixels, [xmin, ymin, xmax + 1, ymax + 1) in COCO xywh;
 * "area" is its visible pixel count. A new shape may hide at most a quarter
 * of any shape already drawn, so every annotated shape stays recognisable.
 * With JPEG output the pixels are lossy but the boxes are those of the drawing. */
#ifndef MINIDET_SHAPES_H
#define MINIDET_SHAPES_H
#include <stdint.h>
#include "minidet/error.h"

enum { MD_SHAPE_RECTANGLE = 1, MD_SHAPE_ELLIPSE = 2, MD_SHAPE_TRIANGLE = 3, MD_SHAPE_BAR = 4, MD_SHAPE_NUM_CLASSES = 4 };
extern const char *const md_shape_names[MD_SHAPE_NUM_CLASSES + 1]; /* [0] = "background" */

typedef struct {
    int num;          /* images, default 200 */
    uint64_t seed;    /* default 1 */
    int width, height;/* default 128 x 128 */
    int val;          /* 0: train split, 1: val split */
    int jpeg;         /* 0: PNG (default), 1: JPEG quality 95 */
    int min_shapes, max_shapes; /* per image, default 1..5 */
    int noise;        /* per-pixel noise amplitude (+-), default 12 */
    /* Object scale: each shape's nominal size s is log-uniform in [min_size, max_size_frac x the
       shorter image side] px (rectangles/ellipses/triangles are 0.6-1.4 s wide and high); default
       6 px and 0.6. Thin bars are bar_thick_min..bar_thick_max px thick (default 2..4) and 20-80 %
       of the shorter side long. */
    float min_size, max_size_frac;
    int bar_thick_min, bar_thick_max;
} md_shapes_options;

typedef struct {
    int category;     /* MD_SHAPE_* */
    int x0, y0, x1, y1; /* tight box of the visible pixels, x1/y1 exclusive */
    int area;         /* visible pixels */
    uint8_t color[3];
} md_shape;

#define MD_SHAPES_MAX 16

void md_shapes_options_default(md_shapes_options *o);

/* Renders image `index` (0-based) into rgb (height x width x 3); owner (height x
   width, may be NULL) receives 1 + the shape index visible at each pixel, 0 for
   background; shapes[0 .. *count) receive the annotations. */
md_status md_shapes_render(const md_shapes_options *o, int index, uint8_t *rgb, uint8_t *owner, md_shape shapes[MD_SHAPES_MAX],
                           int *count);

/* Writes the whole dataset under out_dir (created if needed). */
md_status md_shapes_generate(const char *out_dir, const md_shapes_options *o);

#endif
