/* config.c — defaults for every setting (see include/minidet/config.h).
 * The INI parser (md_config_load / md_config_set / md_config_write) lives in config_ini.c. */
#include "minidet/config.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const md_box_loss_names[] = {"iou", "giou", "diou", "ciou", "smooth_l1", NULL};

const char *md_box_loss_name(md_box_loss_kind k) {
    return (unsigned)k <= MD_BOXLOSS_SMOOTH_L1 ? md_box_loss_names[k] : "?";
}

md_status md_box_loss_parse(const char *s, md_box_loss_kind *k) {
    for (int i = 0; md_box_loss_names[i]; i++)
        if (!strcmp(s, md_box_loss_names[i])) { *k = (md_box_loss_kind)i; return MD_OK; }
    return md_set_error(MD_ERR_ARG, "unknown box loss '%s' (expected iou, giou, diou, ciou or smooth_l1)", s);
}

void md_config_defaults(md_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->run.name, "run");
    strcpy(c->run.output_dir, "runs");
    c->run.seed = 42;
    c->run.threads = 0;
    c->run.log_every = 20;

    c->data.workers = 2;
    c->data.queue_depth = 4;
    c->data.aspect_grouping = 1;
    c->data.hflip = 1;
    c->data.skip_empty = 1;
    c->data.bad_image_policy = 0;

    c->model.depth = 50;
    c->model.vd = 0;
    c->model.width_mult = 1.0f;
    c->model.trainable_layers = 3;
    c->model.norm = MD_NORM_FROZEN_BN;
    c->model.num_classes = 91;
    c->model.label_map = MD_LABELS_CONTIGUOUS;
    c->model.min_size = 800;
    c->model.max_size = 1333;
    c->model.fpn_channels = 256;
    c->model.representation_size = 1024;

    c->rpn.box_loss = MD_BOXLOSS_SMOOTH_L1;
    c->rpn.box_loss_weight = 1.0f;
    for (int l = 0; l < MD_RPN_ANCHOR_LEVELS; l++) c->rpn.anchor_sizes[l] = (float)(32 << l);
    c->rpn.aspect_ratios[0] = 0.5f;
    c->rpn.aspect_ratios[1] = 1.0f;
    c->rpn.aspect_ratios[2] = 2.0f;
    c->rpn.num_aspect_ratios = 3;
    c->rpn.smooth_l1_beta = 1.0f / 9.0f;
    c->rpn.pre_nms_top_n_train = 2000;
    c->rpn.post_nms_top_n_train = 2000;
    c->rpn.pre_nms_top_n_test = 1000;
    c->rpn.post_nms_top_n_test = 1000;
    c->rpn.nms_thresh = 0.7f;
    c->rpn.fg_iou_thresh = 0.7f;
    c->rpn.bg_iou_thresh = 0.3f;
    c->rpn.batch_size_per_image = 256;
    c->rpn.positive_fraction = 0.5f;
    c->rpn.score_thresh = 0.0f;

    c->roi_heads.box_loss = MD_BOXLOSS_SMOOTH_L1;
    c->roi_heads.box_loss_weight = 1.0f;
    c->roi_heads.box_loss_space = MD_SPACE_PROPOSAL;
    c->roi_heads.smooth_l1_beta = 1.0f / 9.0f;
    c->roi_heads.ciou_alpha_gate = 0;
    c->roi_heads.fg_iou_thresh = 0.5f;
    c->roi_heads.bg_iou_thresh = 0.5f;
    c->roi_heads.batch_size_per_image = 512;
    c->roi_heads.positive_fraction = 0.25f;
    c->roi_heads.sampling_ratio = 2;
    c->roi_heads.pool_size = 7;

    c->solver.ims_per_batch = 2;
    c->solver.grad_accum = 1;
    c->solver.base_lr = 0.02f;
    c->solver.momentum = 0.9f;
    c->solver.weight_decay = 1e-4f;
    c->solver.max_iter = 90000;
    c->solver.steps[0] = 60000;
    c->solver.steps[1] = 80000;
    c->solver.num_steps = 2;
    c->solver.gamma = 0.1f;
    c->solver.warmup_iters = 1000;
    c->solver.warmup_factor = 0.001f;
    c->solver.clip_grad_norm = 0.0f;
    c->solver.checkpoint_every = 5000;
    c->solver.keep_checkpoints = 3;
    c->solver.eval_every = 0;

    c->test.score_thresh = 0.05f;
    c->test.nms = MD_NMS_GREEDY;
    c->test.nms_thresh = 0.5f;
    c->test.diou_beta = 1.0f;
    c->test.detections_per_img = 100;
    c->test.batch_size = 1;
}

char *md_config_to_text(const md_config *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        md_set_error(MD_ERR_NOMEM, "configuration text: out of memory");
        return NULL;
    }
    md_status s = md_config_write(c, f);
    if (fclose(f) && !s) s = md_set_error(MD_ERR_NOMEM, "configuration text: out of memory");
    if (s) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void lint_add(char msgs[][MD_LINT_LEN], int max, int *n, const char *fmt, ...) {
    if (*n < max) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msgs[*n], MD_LINT_LEN, fmt, ap);
        va_end(ap);
    }
    (*n)++;
}

int md_config_lint(const md_config *c, char msgs[][MD_LINT_LEN], int max) {
    int n = 0;
    const md_solver_config *s = &c->solver;
    if (s->warmup_iters > 0 && s->warmup_iters >= s->max_iter) {
        /* the lr of the last step, as md_lr_at (train/sgd.c) computes it, before any decay */
        double a = (double)(s->max_iter - 1) / s->warmup_iters;
        double lr = s->base_lr * (s->warmup_factor * (1.0 - a) + a);
        lint_add(msgs, max, &n, "[solver] warmup_iters (%d) >= max_iter (%d): the lr never reaches base_lr %g (the last step uses %.3g); "
                 "set solver.warmup_iters=%d (a tenth of the run) or lower", s->warmup_iters, s->max_iter, (double)s->base_lr, lr,
                 s->max_iter / 10);
    }
    for (int i = 0; i < s->num_steps; i++)
        if (s->steps[i] >= s->max_iter) {
            lint_add(msgs, max, &n, "[solver] steps: %d is not below max_iter (%d): that lr decay never happens; set solver.steps to "
                     "iterations below max_iter (the 1x schedule decays at 2/3 and 8/9 of it)", s->steps[i], s->max_iter);
            break;
        }
    if (!c->model.weights[0]) {
        if (c->model.norm == MD_NORM_FROZEN_BN)
            lint_add(msgs, max, &n, "[model] norm = frozen_bn while training from scratch (model.weights is empty): BatchNorm keeps "
                     "its initial statistics and never learns; set model.norm=bn (or load ImageNet weights)");
        if (c->model.trainable_layers < 5)
            lint_add(msgs, max, &n, "[model] trainable_layers = %d while training from scratch (model.weights is empty): the stem%s "
                     "stay%s at random initial values; set model.trainable_layers=5 (or load ImageNet weights)", c->model.trainable_layers,
                     c->model.trainable_layers < 4 ? " and the first stages" : "", c->model.trainable_layers < 4 ? "" : "s");
    }
    return n;
}
