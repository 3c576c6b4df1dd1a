/* config.h — every setting of a run, with torchvision's defaults.
 *
 * One md_config holds the whole resolved configuration; its sections mirror
 * the INI file sections ([run], [data], [model], [rpn], [roi_heads],
 * [solver], [test]) and field names are the INI keys (docs/DESIGN.md, "Configuration"). Modules
 * take the sub-struct they need (md_model_config, ...). md_config_defaults()
 * gives torchvision 0.14 fasterrcnn_resnet50_fpn semantics; the INI parser
 * (md_config_load) overlays a file and then "section.key=value" overrides,
 * rejecting unknown keys (naming the closest known one) and bad values.
 * md_config_write() emits the fully resolved INI (runs/<name>/config.cfg). */
#ifndef MINIDET_CONFIG_H
#define MINIDET_CONFIG_H
#include <stdio.h>
#include "minidet/error.h"

#define MD_PATH_MAX 1024
#define MD_MAX_STEPS 8

/* The box-regression loss kinds, the only enum of them: the IoU-type kinds first, in the order that
 * box_loss.h's md_iou_kind (MD_LOSS_IOU .. MD_LOSS_CIOU, the same values) gives them, then smooth-L1. */
typedef enum { MD_BOXLOSS_IOU, MD_BOXLOSS_GIOU, MD_BOXLOSS_DIOU, MD_BOXLOSS_CIOU, MD_BOXLOSS_SMOOTH_L1 } md_box_loss_kind;
typedef enum { MD_SPACE_PROPOSAL = 0, MD_SPACE_IMAGE } md_box_loss_space;
typedef enum { MD_NMS_GREEDY = 0, MD_NMS_DIOU } md_nms_kind;
/* [model] norm: backbone normalisation. frozen_bn = torchvision FrozenBatchNorm2d (pretrained backbones);
 * bn = trainable nn.BatchNorm2d (batch statistics in training, running statistics in eval), what torchvision
 * uses when the backbone is trained from scratch. */
typedef enum { MD_NORM_FROZEN_BN = 0, MD_NORM_BN } md_norm_kind;
/* How category ids map to the model's class labels ([model] label_map; coco.h applies it). */
typedef enum {
    MD_LABELS_CONTIGUOUS = 0, /* categories sorted by id -> labels 1..K, background 0 */
    MD_LABELS_COCO_ID = 1     /* label = category id (torchvision's 91-way layout) */
} md_label_layout;
typedef md_label_layout md_label_map;

typedef struct {
    char name[256];          /* run name: outputs go to output_dir/name */
    char output_dir[MD_PATH_MAX]; /* default "runs" */
    unsigned long long seed; /* default 42 */
    int threads;             /* 0 = OMP_NUM_THREADS or all cores */
    int log_every;           /* iterations between log lines, default 20 */
} md_run_config;

typedef struct {
    char train_ann[MD_PATH_MAX], train_images[MD_PATH_MAX];
    char val_ann[MD_PATH_MAX], val_images[MD_PATH_MAX];
    int workers;             /* prefetch threads, default 2 */
    int queue_depth;         /* batches prefetched, default 4 */
    int aspect_grouping;     /* 1 = group batches by w>=h / w<h, default 1 */
    int hflip;               /* random horizontal flip in training, default 1 */
    int skip_empty;          /* skip images without usable boxes in training, default 1 */
    int bad_image_policy;    /* 0 = fail at start-up check (default), 1 = skip and count */
} md_data_config;

typedef struct {
    int depth;               /* 18, 34, 50 (default), 101 */
    int vd;                  /* 1 = ResNet-vd (deep stem, avg-pool shortcut), default 0 */
    float width_mult;        /* channel multiplier for tiny models, default 1.0 */
    int trainable_layers;    /* 0..5, default 3 */
    md_norm_kind norm;       /* frozen_bn (default) | bn: BatchNorm2d trained in the trainable stages */
    char weights[MD_PATH_MAX]; /* safetensors to load; empty = from scratch */
    /* comma-separated tensor-name prefixes NOT taken from weights (e.g. "roi_heads."): those tensors keep
     * their initialisation (run.seed). Used when a training run starts from weights; empty = load all. */
    char weights_exclude[MD_PATH_MAX];
    int num_classes;         /* including background, default 91 */
    md_label_map label_map;  /* default contiguous */
    int min_size, max_size;  /* default 800, 1333 */
    int fpn_channels;        /* default 256 */
    int representation_size; /* TwoMLPHead width, default 1024 */
} md_model_config;

#define MD_RPN_ANCHOR_LEVELS 5 /* P2..P6 */
#define MD_RPN_MAX_RATIOS 8    /* [rpn] aspect_ratios: at most this many anchors per location */

typedef struct {
    md_box_loss_kind box_loss; /* default smooth_l1 */
    float box_loss_weight;     /* default 1 */
    float smooth_l1_beta;      /* default 1/9 */
    int pre_nms_top_n_train, post_nms_top_n_train; /* 2000, 2000 */
    int pre_nms_top_n_test, post_nms_top_n_test;   /* 1000, 1000 */
    float nms_thresh;          /* 0.7 */
    float fg_iou_thresh, bg_iou_thresh; /* 0.7, 0.3 */
    int batch_size_per_image;  /* 256 */
    float positive_fraction;   /* 0.5 */
    float score_thresh;        /* 0.0 */
    /* AnchorGenerator size (pixels) of each FPN level P2..P6, one size per level;
     * default 32, 64, 128, 256, 512 (torchvision). */
    float anchor_sizes[MD_RPN_ANCHOR_LEVELS];
    /* AnchorGenerator aspect ratios (height / width), the same on every level: each location gets
     * num_aspect_ratios anchors (the RPN head has that many objectness outputs and 4x box outputs).
     * Default 0.5, 1, 2 (torchvision). Entries past num_aspect_ratios are 0. */
    float aspect_ratios[MD_RPN_MAX_RATIOS];
    int num_aspect_ratios;
} md_rpn_config;

typedef struct {
    md_box_loss_kind box_loss; /* default smooth_l1 */
    float box_loss_weight;     /* default: 1 smooth_l1, 10 iou/giou, 12 diou/ciou (set when box_loss is set) */
    md_box_loss_space box_loss_space; /* default proposal */
    float smooth_l1_beta;      /* default 1/9 (torchvision fastrcnn_loss) */
    int ciou_alpha_gate;       /* 1 = alpha = 0 where IoU < 0.5 (mmdetection), default 0 */
    float fg_iou_thresh, bg_iou_thresh; /* 0.5, 0.5 */
    int batch_size_per_image;  /* 512 */
    float positive_fraction;   /* 0.25 */
    int sampling_ratio;        /* RoIAlign, 2 */
    int pool_size;             /* 7 */
} md_roi_heads_config;

typedef struct {
    int ims_per_batch;         /* default 2 */
    int grad_accum;            /* micro-batches per step, default 1 */
    float base_lr;             /* default 0.02 */
    float momentum;            /* 0.9 */
    float weight_decay;        /* 1e-4 */
    int max_iter;              /* default 90000 */
    int steps[MD_MAX_STEPS];   /* lr decay iterations, default 60000, 80000 */
    int num_steps;
    float gamma;               /* 0.1 */
    int warmup_iters;          /* 1000 */
    float warmup_factor;       /* 0.001 */
    float clip_grad_norm;      /* 0 = off */
    int checkpoint_every;      /* 0 = off (a final checkpoint is always written) */
    int keep_checkpoints;      /* keep last K, default 3 */
    int eval_every;            /* 0 = off */
} md_solver_config;

typedef struct {
    float score_thresh;        /* 0.05 */
    md_nms_kind nms;           /* greedy */
    float nms_thresh;          /* 0.5 */
    float diou_beta;           /* 1.0 (DIoU-NMS) */
    int detections_per_img;    /* 100 */
    int batch_size;            /* images per inference batch, default 1 */
} md_test_config;

typedef struct {
    md_run_config run;
    md_data_config data;
    md_model_config model;
    md_rpn_config rpn;
    md_roi_heads_config roi_heads;
    md_solver_config solver;
    md_test_config test;
} md_config;

void md_config_defaults(md_config *c);
/* Loads path (NULL = defaults only) then applies overrides "section.key=value". */
md_status md_config_load(md_config *c, const char *path, int n_overrides, char *const *overrides);
/* As md_config_load, from INI text (the resolved configuration a checkpoint stores); what names it in errors. */
md_status md_config_load_text(md_config *c, const char *text, const char *what, int n_overrides, char *const *overrides);
/* Sets one key; errors name the key, the bad value and (for unknown keys) the closest known key. */
md_status md_config_set(md_config *c, const char *section, const char *key, const char *value);
/* Writes the fully resolved configuration as INI. */
md_status md_config_write(const md_config *c, FILE *f);
/* The same text in a malloc'ed string (runs/<name>/config.cfg, checkpoint metadata); NULL with the error set. */
char *md_config_to_text(const md_config *c);
/* Anchor geometry check for resume / evaluation of a checkpoint: ckpt_config_text is the resolved
 * configuration a checkpoint carries (metadata minidet.config, INI as md_config_write). If its [rpn]
 * anchor_sizes or aspect_ratios (keys it lacks count as their defaults: older checkpoints) differ from
 * c's, returns MD_ERR_ARG with a message naming what, both values, and the override that matches the
 * checkpoint (what = the checkpoint path, for the message). */
md_status md_config_check_anchors(const md_config *c, const char *ckpt_config_text, const char *what);
/* [model] weights_exclude syntax: splits list ("a., b.c.", spaces around entries allowed) into at most max
 * prefixes of at most MD_PREFIX_MAX - 1 characters, each non-empty and made of letters, digits, '_' and '.'
 * (the characters of tensor names). An empty or all-space list gives *n = 0. MD_ERR_ARG names the bad entry. */
#define MD_PREFIX_MAX 96
#define MD_PREFIXES_MAX 32
md_status md_prefix_list_parse(const char *list, char out[][MD_PREFIX_MAX], int max, int *n);
/* Settings that load (each value is in range) but are almost certainly mistakes: a warm-up as long
 * as the run (warmup_iters >= max_iter: the lr never reaches base_lr), lr steps at or past max_iter
 * (they never happen), training from scratch (empty [model] weights) with frozen BatchNorm or frozen
 * stages (random layers that never learn). Writes at most max one-line messages, each naming the keys,
 * their values and the override that fixes it; returns how many there are (may exceed max). */
#define MD_LINT_LEN 320
int md_config_lint(const md_config *c, char msgs[][MD_LINT_LEN], int max);
/* Names of md_box_loss_kind in its order ("iou" .. "smooth_l1"), NULL-terminated: the config values. */
extern const char *const md_box_loss_names[];
const char *md_box_loss_name(md_box_loss_kind k);
md_status md_box_loss_parse(const char *s, md_box_loss_kind *k);
/* Reference default [roi_heads] box_loss_weight of a loss: 1 smooth_l1, 10 iou/giou, 12 diou/ciou.
 * md_config_set(roi_heads.box_loss) applies it; an explicit box_loss_weight in the same layer
 * (file, or the overrides) wins (see configs/README.md). */
float md_box_loss_default_weight(md_box_loss_kind k);

#endif
