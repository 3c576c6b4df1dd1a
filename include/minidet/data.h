/* data.h — images, the detection transform, batches and the prefetching loader.
 *
 * Images are decoded with stb_image into 8-bit RGB (grey-scale and grey+alpha
 * are replicated to RGB, alpha is dropped, EXIF orientation is ignored as
 * pycocotools/torchvision do). 16-bit PNGs are an error by default (PIL, and so
 * torchvision, reads them as 32-bit integer "I" images whose RGB conversion
 * saturates, so no choice matches it); with allow_16bit they load as 8-bit
 * (value >> 8, stb_image's conversion). A JPEG whose data ends before the EOI
 * marker is an error ("truncated"), although stb_image would decode it.
 *
 * The transform is torchvision 0.14's GeneralizedRCNNTransform: u8 / 255,
 * (x - mean) / std, bilinear resize (align_corners=False) with
 * scale = min(min_size / short side, max_size / long side) computed in float32
 * and output size floor(side * scale) (interpolate's recompute_scale_factor),
 * boxes scaled by new/old per axis, the batch zero-padded (top-left aligned)
 * to a multiple of 32. The training flip (torchvision's reference
 * RandomHorizontalFlip) is applied to the original image: x1' = W - x2.
 *
 * md_loader produces such batches from a md_coco dataset on a pool of worker
 * threads. The epoch order is a seeded shuffle (md_rng stream SHUFFLE, keyed by
 * (seed, epoch)); optional aspect-ratio grouping puts w >= h and w < h images
 * in separate batches (torchvision's GroupedBatchSampler with 2 groups); flips
 * come from md_rng keyed by (seed, epoch, position, slot). Batches are returned
 * in order, identical for any number of workers, and a loader started at
 * (epoch, position) continues exactly where another stopped.
 *
 * Data-parallel shards: with shard_count = N ranks, ims_per_batch stays the
 * global batch and rank shard_rank builds only images [r B/N, (r + 1) B/N) of
 * every global batch, with the flips of their global slots and zero-padded to
 * the global batch's padded size (known from the JSON sizes without decoding),
 * so the N shards put side by side are exactly the one-process batch. Each
 * rank decodes only its own images. */
#ifndef MINIDET_DATA_H
#define MINIDET_DATA_H
#include <stdint.h>
#include "minidet/coco.h"
#include "minidet/config.h"
#include "minidet/error.h"

/* Plain options, filled by the config module ([data] / [model] / [solver] keys). */
typedef struct {
    const char *train_ann, *train_images; /* not owned */
    const char *val_ann, *val_images;     /* not owned */
    int min_size, max_size;               /* 800, 1333 */
    int size_divisible;                   /* 32 */
    int ims_per_batch;                    /* 2 */
    int workers;                          /* decode threads, 2 */
    int queue_depth;                      /* batches prepared ahead, 4 */
    float flip_prob;                      /* 0.5 in training, 0 for evaluation */
    int aspect_grouping;                  /* 1: batches of all-landscape or all-portrait images */
    int shuffle;                          /* 1: seeded shuffle per epoch, incomplete last batch dropped (training);
                                             0: file order, last batch may be smaller, no grouping (evaluation) */
    int skip_empty;                       /* 1: training skips images with no usable boxes */
    int shard_rank, shard_count;          /* this rank's slice of every batch: 0 of 1 (whole batches) by default */
    md_bad_policy image_check;            /* start-up check of image files: fail (default) | skip */
    int allow_16bit;                      /* 0: 16-bit PNG is an error; 1: load as 8-bit */
    md_box_policy boxes;                  /* clip (default) | drop | fail */
    md_label_map label_map;            /* contiguous (default) | coco_id */
    md_bad_policy bad_refs;               /* annotation with unknown image/category: fail | skip */
    uint64_t seed;
} md_data_options;

void md_data_options_default(md_data_options *o);
/* Fills o from a resolved configuration ([data], [model] min_size/max_size/label_map,
   [solver] ims_per_batch, [run] seed); the path strings point into cfg. */
void md_data_options_from_config(const md_config *cfg, md_data_options *o);
/* The md_coco_options part of o. */
void md_data_coco_options(const md_data_options *o, md_coco_options *co);

/* ---------- images ---------- */

typedef struct {
    uint8_t *data; /* height x width x 3, RGB */
    int width, height;
} md_image;

md_status md_image_load(const char *path, int allow_16bit, md_image *img);
void md_image_free(md_image *img);
/* Header-only check (stbi_info + file checks): exists, regular, non-empty, a
   decodable format, 8-bit (unless allow_16bit), JPEG not truncated; gives the size. */
md_status md_image_probe(const char *path, int allow_16bit, int *width, int *height);

/* Start-up check of every image of c under image_dir: md_image_probe, and the
   size must equal the JSON's width/height. policy FAIL stops at the first bad
   image; SKIP warns, marks it in bad[i] (may be NULL) and counts it in *num_bad. */
md_status md_dataset_check(const md_coco *c, const char *image_dir, md_bad_policy policy, int allow_16bit, uint8_t *bad,
                           int *num_bad);
/* The same check of one rank's share of a data-parallel job: images [r n / N, (r + 1) n / N) of the
   n images for shard_rank r of shard_count N (0 of 1: all, exactly md_dataset_check). bad[] is set for
   those images only and *num_bad counts them; the first bad image of the share under FAIL is the
   first of the whole dataset when every earlier share is clean. With N > 1 the closing summary line is
   left to the caller, who knows the whole dataset's count. No communication. */
md_status md_dataset_check_shard(const md_coco *c, const char *image_dir, md_bad_policy policy, int allow_16bit, int shard_rank,
                                 int shard_count, uint8_t *bad, int *num_bad);

/* ---------- transform ---------- */

extern const float md_image_mean[3]; /* 0.485, 0.456, 0.406 */
extern const float md_image_std[3];  /* 0.229, 0.224, 0.225 */

/* Output size of the resize for an H x W image (torchvision's rule). */
void md_resize_size(int H, int W, int min_size, int max_size, int *out_h, int *out_w);

/* rgb (H, W, 3) u8 -> out (3, H, W): (u8 / 255 - mean[c]) / std[c]; flip != 0 mirrors columns. */
void md_normalize_forward(const uint8_t *rgb, int H, int W, int flip, const float mean[3], const float std[3], float *out);

/* Bilinear resize, align_corners=False, scale in/out per axis (torch interpolate).
   in (C, H, W) -> out (C, OH, OW) written with row stride out_stride (>= OW) and
   channel stride out_plane (>= OH * out_stride), so it can write into a padded batch. */
md_status md_resize_bilinear_forward(const float *in, int C, int H, int W, float *out, int OH, int OW, int out_stride, int out_plane);

/* boxes (n, 4) x1 y1 x2 y2 in place: mirror in an image of width W. */
void md_boxes_hflip(float *boxes, int n, int W);
/* boxes (n, 4) in place: scale x by OW/W and y by OH/H (float32, torchvision's resize_boxes). */
void md_boxes_resize(float *boxes, int n, int H, int W, int OH, int OW);

/* ---------- batches ---------- */

typedef struct {
    int64_t image_id;
    int index;           /* into md_coco.images */
    int orig_h, orig_w;  /* as decoded (== JSON) */
    int h, w;            /* after resize, inside the padded batch */
    int flipped;
    int box_begin, num_boxes; /* this image's targets: md_batch.boxes[box_begin ..) */
} md_image_info;

typedef struct {
    int n, height, width; /* images is n x 3 x height x width, zero-padded */
    float *images;
    md_image_info *info;
    float *boxes;         /* (num_boxes, 4) in resized (and flipped) coordinates */
    int *labels;          /* (num_boxes) */
    int num_boxes;
    int64_t epoch, position; /* batch `position` of `epoch` */
    int slot0, global_n;  /* a shard: images slot0 .. slot0 + n - 1 of a global batch of global_n (0, n when whole) */
    /* capacities (internal) */
    size_t cap_images;
    int cap_info, cap_boxes;
} md_batch;

void md_batch_free(md_batch *b);

/* Builds one batch from dataset images idx[0..n) (decode, flip, normalise,
   resize, pad) into b, growing its buffers as needed. flips[i] != 0 flips image i.
   scratch / scratch_cap: a reusable float buffer (grown with realloc). */
md_status md_batch_build(md_batch *b, const md_coco *c, const char *image_dir, const int *idx, const uint8_t *flips, int n,
                         const md_data_options *o, float **scratch, size_t *scratch_cap);
/* The shard of images [first, first + count) of the global batch idx[0..n): decodes only those, and
   pads them to the padded size of the whole global batch (so shards match md_batch_build's batch). */
md_status md_batch_build_shard(md_batch *b, const md_coco *c, const char *image_dir, const int *idx, const uint8_t *flips, int n,
                               int first, int count, const md_data_options *o, float **scratch, size_t *scratch_cap);

/* ---------- the loader ---------- */

typedef struct md_loader md_loader;

/* Training/eval loader over the images of c (not owned: keep it alive) found in
   image_dir. Images marked in exclude (may be NULL, e.g. from md_dataset_check)
   are left out, and with o->skip_empty so are images without training boxes.
   Starts producing batches from (epoch, position) at once. With o->shard_count > 1
   ims_per_batch must be a multiple of it (MD_ERR_ARG naming both otherwise). */
md_status md_loader_create(md_loader **out, const md_coco *c, const char *image_dir, const md_data_options *o, const uint8_t *exclude,
                           int64_t epoch, int64_t position);
/* The next batch in order; valid until the next call or md_loader_destroy. An
   error in a worker (e.g. a corrupt image) is returned here, in order. */
md_status md_loader_next(md_loader *l, const md_batch **batch);
/* Where the next batch will come from (what a checkpoint saves). */
void md_loader_tell(const md_loader *l, int64_t *epoch, int64_t *position);
/* Number of batches in an epoch (depends on the epoch with aspect grouping). */
int64_t md_loader_epoch_batches(md_loader *l, int64_t epoch);
/* Image indices (into md_coco.images) of batch (epoch, position) and their flips, without
   decoding; idx and flips hold ims_per_batch entries, *n receives the batch size (the whole
   global batch, whatever the shard). */
md_status md_loader_plan(md_loader *l, int64_t epoch, int64_t position, int *idx, uint8_t *flips, int *n);
/* Seconds md_loader_next spent waiting for workers since creation, and images decoded. */
double md_loader_stall_seconds(const md_loader *l);
int64_t md_loader_images_done(const md_loader *l);
int md_loader_num_images(const md_loader *l);
void md_loader_destroy(md_loader *l);

#endif
