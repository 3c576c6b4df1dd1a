/* evaluate.h — a detector over a COCO split: the one inference loop of minidet.
 *
 * md_eval_detector() is how every part of minidet gets detections for a data
 * set: the trainer's periodic and final evaluation, `./eval --weights`, the
 * comparison's re-evaluation of a run without eval.json and its --vis sheet.
 * It builds the batches (data.h, no flips), runs md_detector_infer, maps the
 * model's labels to category ids and collects the kept detections as COCO
 * results (image id, category id, [x, y, w, h] in original pixels, score).
 * Under mpirun it is sharded (shard_count ranks): the batches are the
 * one-process batches, batch b runs on rank b % shard_count, and rank 0
 * gathers every rank's detections in the one-process order, so COCO
 * evaluation on rank 0 gives the one-process stats.
 *
 * md_eval_json_write() writes eval.json (docs/FORMATS.md) from a COCOeval
 * result, for the trainer and `./eval --weights` alike; md_eval_weights() is
 * the whole `./eval --weights` job (inference, results.json, the summary,
 * eval.json, report.md, --vis pictures) taking an options struct (the CLI
 * parses argv into it). */
#ifndef MINIDET_EVALUATE_H
#define MINIDET_EVALUATE_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/arena.h"
#include "minidet/coco.h"
#include "minidet/cocoeval.h"
#include "minidet/data.h"
#include "minidet/error.h"
#include "minidet/model.h"

/* COCO-style detections, in the order the images were run (each image's by decreasing score). */
typedef struct {
    int64_t *image_id, *category_id;
    double *xywh; /* 4 per detection: x, y, width, height */
    double *score;
    size_t n, cap;
} md_det_list;

void md_det_list_free(md_det_list *d);

/* Called after each image's inference with its raw detections (labels, xyxy boxes; arena memory valid
 * until the next batch); index is the image's index in coco. Its time is not counted as inference. */
typedef md_status (*md_eval_image_fn)(void *ctx, int index, const md_detections *d);

typedef struct {
    const md_coco *coco;           /* the split: images, file names, sizes */
    const char *image_dir;         /* its image directory */
    const md_data_options *dopt;   /* resize and normalisation (no flips are drawn) */
    const uint8_t *exclude;        /* [coco->num_images]: 1 = skip (unreadable); NULL = none */
    int max_images;                /* 0 = every image (not excluded) */
    int batch_size;                /* images per inference batch, clamped to 1..MD_MAX_BATCH */
    const md_coco *label_map;      /* model label -> category id by this split's map (the training split's) */
    const md_coco_gt *gt;          /* drop detections of categories gt lacks; NULL: keep all (category -1 if unmapped) */
    size_t arena_max;              /* the arena doubles on "out of arena" up to this many bytes */
    int progress;                  /* 1: an "[eval] i/n images, img/s, ETA" line on stderr (at INFO level) */
    md_eval_image_fn on_image;     /* may be NULL (called for this rank's images only) */
    void *ctx;
    int shard_rank, shard_count;   /* data-parallel (dist.h): 0, 0 or 0, 1 = one process; every rank must call */
} md_eval_detector_options;

/* Runs det over the split. out (may be NULL: only on_image sees the detections) receives the kept
 * detections appended — sharded, rank 0's out receives every rank's, the others' nothing; *n_images
 * (may be NULL) the images run (by all ranks); *seconds (may be NULL) the inference time without
 * on_image's. arena holds the activations and is grown as needed. */
md_status md_eval_detector(md_detector *det, md_arena *arena, const md_eval_detector_options *o, md_det_list *out,
                           int *n_images, double *seconds);

/* eval.json as docs/FORMATS.md: iter, loss, train_time_s and img_per_sec (training speed; each left out when NaN), stats,
 * per_category_ap, category_names (from gt), ap_per_iou, pr. Written atomically. */
md_status md_eval_json_write(const char *path, const md_cocoeval_result *r, const md_coco_gt *gt, long long iter,
                             const char *loss, double train_time_s, double img_per_sec);

enum { MD_VIS_MAX_IMAGES = 1000, MD_VIS_MAX_BOXES = 30 };
#define MD_VIS_SCORE_DEFAULT 0.3f /* lowest score drawn by --vis, for one checkpoint and for a comparison */
/* ./eval --weights --vis pictures: a title row of MD_VIS_HEAD pixels, then two panels MD_VIS_GAP apart
 * (and from the edges): the ground truth at x = MD_VIS_GAP, the detections at x = 2 MD_VIS_GAP + k width,
 * both the image scaled by k = md_vis_scale (images with a side under MD_VIS_MIN_SIDE are enlarged so
 * that the tags do not cover small objects). */
enum { MD_VIS_HEAD = 30, MD_VIS_GAP = 10, MD_VIS_MIN_SIDE = 480 };
int md_vis_scale(int width, int height);

/* `./eval --weights W --config C`: every field as the option of that name (see ./eval --help). */
typedef struct {
    const char *weights, *config;  /* weights required; config NULL = the one the checkpoint stores, else defaults */
    const char *ann, *images;      /* NULL: [data] val_ann / val_images */
    const char *out;               /* results file; NULL: OUT_DIR/results.json */
    const char *out_dir;           /* NULL: the directory of out, else eval_<weights name> next to the weights */
    int strict;                    /* 1 (default): every tensor must match; 0: load what matches, report the rest */
    int max_images;                /* 0 = all */
    int threads;                   /* 0 = [run] threads */
    int vis;                       /* 0..MD_VIS_MAX_IMAGES images drawn into OUT_DIR/vis_<image id>.png */
    float vis_score;               /* lowest score drawn (default MD_VIS_SCORE_DEFAULT) */
    int n_overrides;
    char *const *overrides;        /* "section.key=value" applied after config */
} md_eval_weights_options;

void md_eval_weights_options_default(md_eval_weights_options *o);
/* Runs the job; on failure nothing is left in an output directory it created (if still empty). */
md_status md_eval_weights(const md_eval_weights_options *o);

#endif
