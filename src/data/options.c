/* options.c — md_data_options defaults and the mapping from md_config (see include/minidet/data.h). */
#include "minidet/data.h"
#include <string.h>

void md_data_options_default(md_data_options *o) {
    memset(o, 0, sizeof *o);
    o->min_size = 800;
    o->max_size = 1333;
    o->size_divisible = 32;
    o->ims_per_batch = 2;
    o->workers = 2;
    o->queue_depth = 4;
    o->flip_prob = 0.5f;
    o->aspect_grouping = 1;
    o->shuffle = 1;
    o->skip_empty = 1;
    o->shard_rank = 0;
    o->shard_count = 1;
    o->image_check = MD_POLICY_FAIL;
    o->allow_16bit = 0;
    o->boxes = MD_BOX_CLIP;
    o->label_map = MD_LABELS_CONTIGUOUS;
    o->bad_refs = MD_POLICY_FAIL;
    o->seed = 42;
}

void md_data_options_from_config(const md_config *cfg, md_data_options *o) {
    md_data_options_default(o);
    o->train_ann = cfg->data.train_ann;
    o->train_images = cfg->data.train_images;
    o->val_ann = cfg->data.val_ann;
    o->val_images = cfg->data.val_images;
    o->workers = cfg->data.workers;
    o->queue_depth = cfg->data.queue_depth;
    o->aspect_grouping = cfg->data.aspect_grouping;
    o->flip_prob = cfg->data.hflip ? 0.5f : 0.0f;
    o->skip_empty = cfg->data.skip_empty;
    o->image_check = cfg->data.bad_image_policy ? MD_POLICY_SKIP : MD_POLICY_FAIL;
    o->min_size = cfg->model.min_size;
    o->max_size = cfg->model.max_size;
    o->label_map = cfg->model.label_map;
    o->ims_per_batch = cfg->solver.ims_per_batch;
    o->seed = cfg->run.seed;
}

void md_data_coco_options(const md_data_options *o, md_coco_options *co) {
    md_coco_options_default(co);
    co->labels = o->label_map;
    co->boxes = o->boxes;
    co->bad_refs = o->bad_refs;
}
