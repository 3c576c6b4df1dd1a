/* coco.h — COCO "instances" annotation files (cJSON), compact in memory.
 *
 * md_coco_load reads a COCO instances JSON (images, annotations, categories)
 * into flat arrays: images in file order, annotations grouped per image (file
 * order kept inside an image, as pycocotools' imgToAnns), categories sorted by
 * id, and a label map (contiguous 1..K with background 0, or `coco_id` where
 * the label is the category id, torchvision's 91-way layout).
 *
 * Memory: the file is mapped read-only and walked one array element at a
 * time — every value is parsed by cJSON, the walker only steps over the
 * top-level '{', ':', ',', '[' and ']' — so the cJSON tree never holds more
 * than one image/annotation, and pages already read are handed back to the
 * kernel. Segmentation polygons are never stored. Annotations take 88 bytes
 * each; a COCO-train-sized file (118k images, 860k annotations, 458 MB) loads
 * in ~10 s with a peak RSS of ~158 MiB (array growth and the per-image
 * regrouping briefly hold two copies; tool_coco_info prints these figures).
 *
 * Bad input: every problem is reported as "FILE: OBJECT: field 'F': what"
 * (OBJECT like "annotations[17] (id 12345)"); malformed JSON reports the byte
 * offset, line and column. Boxes: each annotation keeps its bbox exactly as in
 * the file (xywh, double — what COCO evaluation uses) and a cleaned training
 * box (x1, y1, x2, y2, float). Non-finite or w/h <= 0 boxes and boxes outside
 * the image are handled by md_box_policy, with counts in md_coco_stats.
 * Crowd annotations (iscrowd=1) are kept and flagged MD_ANN_CROWD: they are
 * not training targets but evaluation needs them. */
#ifndef MINIDET_COCO_H
#define MINIDET_COCO_H
#include <stdint.h>
#include <stddef.h>
#include "minidet/config.h" /* md_label_layout: [model] label_map */
#include "minidet/error.h"

typedef enum {
    /* Default: clip boxes to the image; drop non-finite boxes and boxes with
       w or h <= 0 before or after clipping; count each. */
    MD_BOX_CLIP = 0,
    /* Drop every box that is non-finite, degenerate or not inside the image. */
    MD_BOX_DROP = 1,
    /* Any such box is an error naming the annotation. */
    MD_BOX_FAIL = 2
} md_box_policy;

typedef enum {
    MD_POLICY_FAIL = 0, /* stop with a clear error (default) */
    MD_POLICY_SKIP = 1  /* warn once, skip the object and count it */
} md_bad_policy;

typedef struct {
    md_label_layout labels;
    md_box_policy boxes;
    md_bad_policy bad_refs; /* annotation naming an unknown image or category id */
} md_coco_options;

/* Annotation flags. */
enum {
    MD_ANN_CROWD = 1,   /* iscrowd = 1: not a training target, kept for evaluation */
    MD_ANN_CLIPPED = 2, /* box was clipped to the image */
    MD_ANN_DROPPED = 4  /* box unusable (non-finite / degenerate / outside): not a training target */
};

typedef struct {
    int64_t id;
    const char *file_name; /* into md_coco.strings */
    int width, height;
    int ann_begin, ann_count; /* annotations anns[ann_begin .. ann_begin + ann_count) */
    int num_targets;          /* of those, usable training targets (not crowd, not dropped) */
} md_coco_image;

typedef struct {
    int64_t id;
    int64_t image_id;
    double bbox[4];  /* x, y, w, h exactly as in the file */
    double area;     /* "area" from the file (w * h when absent) */
    float box[4];    /* x1, y1, x2, y2 after the box policy (meaningless if MD_ANN_DROPPED) */
    int image_index; /* into md_coco.images */
    int category_id;
    int label;       /* per the label layout, >= 1 */
    uint8_t iscrowd;
    uint8_t flags;   /* MD_ANN_* */
} md_coco_ann;

typedef struct {
    int id;
    const char *name;          /* into md_coco.strings */
    const char *supercategory; /* into md_coco.strings; "" when absent */
} md_coco_category;

typedef struct {
    int crowd;             /* iscrowd annotations (kept, flagged) */
    int clipped;           /* boxes clipped to the image */
    int dropped_nonfinite; /* NaN / inf coordinates */
    int dropped_degenerate;/* w or h <= 0 (before or after clipping) */
    int dropped_outside;   /* MD_BOX_DROP: box not inside the image */
    int skipped_refs;      /* MD_POLICY_SKIP: annotations naming unknown images/categories */
    int images_without_targets;
} md_coco_stats;

typedef struct {
    char *path;
    md_coco_image *images;
    int num_images;
    md_coco_ann *anns;
    int num_anns;
    md_coco_category *cats; /* sorted by id */
    int num_cats;
    md_label_layout layout;
    int num_classes;        /* including background: K + 1, or max(91, max id + 1) for coco_id */
    int *label_to_cat;      /* [num_classes]: category id of each label, -1 for background / unused labels */
    char *strings;          /* pool holding file names and category names */
    size_t strings_len;
    int64_t *id_sorted;     /* image ids ascending, with ... */
    int *id_sorted_index;   /* ... their index in images[], for md_coco_find_image */
    md_coco_stats stats;
} md_coco;

void md_coco_options_default(md_coco_options *o);
/* Loads path into c (zeroed first). On failure c is left empty (safe to free). */
md_status md_coco_load(md_coco *c, const char *path, const md_coco_options *opt);
void md_coco_free(md_coco *c);
/* Index into c->images of the image with this id, or -1. O(log n). */
int md_coco_find_image(const md_coco *c, int64_t image_id);
/* Label of a category id, or -1 when the id is unknown. */
int md_coco_label_of(const md_coco *c, int category_id);
/* Category id of a label (1..num_classes-1), or -1. */
int md_coco_category_of_label(const md_coco *c, int label);
/* One line: "N images, M annotations (crowd C, clipped X, dropped Y ...)". */
const char *md_coco_stats_str(const md_coco *c, char *buf, size_t n);
/* Parses "contiguous" | "coco_id" ; "clip" | "drop" | "fail" ; "fail" | "skip". */
md_status md_label_layout_parse(const char *s, md_label_layout *out);
md_status md_box_policy_parse(const char *s, md_box_policy *out);
md_status md_bad_policy_parse(const char *s, md_bad_policy *out);

#endif
