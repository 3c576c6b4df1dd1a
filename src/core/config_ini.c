/* config_ini.c — INI reading and writing of md_config (include/minidet/config.h).
 *
 * One table lists every key: section, name, type, where it lives in md_config
 * and its valid range. md_config_set() parses and validates one value through
 * that table; md_config_load() feeds it every line of a file (libinih) and then
 * the "section.key=value" overrides; md_config_write() walks the same table,
 * so whatever is written loads back to the identical struct.
 *
 * box_loss / box_loss_weight rule ([roi_heads] only): setting box_loss sets
 * box_loss_weight to the reference default for that loss (1 smooth_l1,
 * 10 iou/giou, 12 diou/ciou). Within one layer (the file, or the whole list
 * of overrides) an explicit box_loss_weight wins regardless of line order; a
 * box_loss given in a later layer without its own box_loss_weight resets the
 * weight to the new loss's default. */
#include "minidet/config.h"
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef enum { K_STR, K_INT, K_U64, K_FLOAT, K_BOOL, K_ENUM, K_STEPS, K_ANCHORS, K_RATIOS } key_type;

typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset;
    size_t size;          /* K_STR: buffer size */
    double lo, hi;        /* K_INT / K_FLOAT inclusive range */
    int lo_open;          /* K_FLOAT: lower bound excluded */
    const char *const *names; /* K_ENUM: NULL-terminated */
} key_def;

static const char *const e_space[] = {"proposal", "image", NULL};
static const char *const e_nms[] = {"greedy", "diou", NULL};
static const char *const e_labels[] = {"contiguous", "coco_id", NULL};
static const char *const e_badimg[] = {"fail", "skip", NULL};
static const char *const e_norm[] = {"frozen_bn", "bn", NULL};

#define OFF(f) offsetof(md_config, f)
#define STR(s, f) {#s, #f, K_STR, OFF(s.f), sizeof(((md_config *)0)->s.f), 0, 0, 0, NULL}
#define INT(s, f, lo, hi) {#s, #f, K_INT, OFF(s.f), 0, lo, hi, 0, NULL}
#define FLT(s, f, lo, hi, open) {#s, #f, K_FLOAT, OFF(s.f), 0, lo, hi, open, NULL}
#define BOOL(s, f) {#s, #f, K_BOOL, OFF(s.f), 0, 0, 1, 0, NULL}
#define ENUM(s, f, e) {#s, #f, K_ENUM, OFF(s.f), 0, 0, 0, 0, e}
#define BIG 1e9

static const key_def keys[] = {
    STR(run, name), STR(run, output_dir),
    {"run", "seed", K_U64, OFF(run.seed), 0, 0, 0, 0, NULL},
    INT(run, threads, 0, 1024), INT(run, log_every, 1, BIG),

    STR(data, train_ann), STR(data, train_images), STR(data, val_ann), STR(data, val_images),
    INT(data, workers, 0, 64), INT(data, queue_depth, 1, 1024),
    BOOL(data, aspect_grouping), BOOL(data, hflip), BOOL(data, skip_empty),
    ENUM(data, bad_image_policy, e_badimg),

    INT(model, depth, 18, 101), BOOL(model, vd), FLT(model, width_mult, 0, 8, 1),
    INT(model, trainable_layers, 0, 5), ENUM(model, norm, e_norm), STR(model, weights), STR(model, weights_exclude),
    INT(model, num_classes, 2, 100000),
    ENUM(model, label_map, e_labels), INT(model, min_size, 1, 100000), INT(model, max_size, 1, 100000),
    INT(model, fpn_channels, 1, 100000), INT(model, representation_size, 1, 100000),

    ENUM(rpn, box_loss, md_box_loss_names), FLT(rpn, box_loss_weight, 0, BIG, 0), FLT(rpn, smooth_l1_beta, 0, BIG, 0),
    INT(rpn, pre_nms_top_n_train, 1, BIG), INT(rpn, post_nms_top_n_train, 1, BIG),
    INT(rpn, pre_nms_top_n_test, 1, BIG), INT(rpn, post_nms_top_n_test, 1, BIG),
    FLT(rpn, nms_thresh, 0, 1, 1), FLT(rpn, fg_iou_thresh, 0, 1, 0), FLT(rpn, bg_iou_thresh, 0, 1, 0),
    INT(rpn, batch_size_per_image, 1, BIG), FLT(rpn, positive_fraction, 0, 1, 1), FLT(rpn, score_thresh, 0, 1, 0),
    {"rpn", "anchor_sizes", K_ANCHORS, OFF(rpn.anchor_sizes), 0, 0, 100000, 1, NULL},
    {"rpn", "aspect_ratios", K_RATIOS, OFF(rpn.aspect_ratios), 0, 0, 10000, 1, NULL},

    ENUM(roi_heads, box_loss, md_box_loss_names), FLT(roi_heads, box_loss_weight, 0, BIG, 0),
    ENUM(roi_heads, box_loss_space, e_space), FLT(roi_heads, smooth_l1_beta, 0, BIG, 0),
    BOOL(roi_heads, ciou_alpha_gate), FLT(roi_heads, fg_iou_thresh, 0, 1, 0), FLT(roi_heads, bg_iou_thresh, 0, 1, 0),
    INT(roi_heads, batch_size_per_image, 1, BIG), FLT(roi_heads, positive_fraction, 0, 1, 1),
    INT(roi_heads, sampling_ratio, 0, 64), INT(roi_heads, pool_size, 1, 64),

    INT(solver, ims_per_batch, 1, 1024), INT(solver, grad_accum, 1, 1024), FLT(solver, base_lr, 0, BIG, 1),
    FLT(solver, momentum, 0, 0.999999, 0), FLT(solver, weight_decay, 0, 1, 0), INT(solver, max_iter, 1, 2000000000),
    {"solver", "steps", K_STEPS, OFF(solver.steps), 0, 0, 0, 0, NULL},
    FLT(solver, gamma, 0, BIG, 1), INT(solver, warmup_iters, 0, 2000000000), FLT(solver, warmup_factor, 0, 1, 1),
    FLT(solver, clip_grad_norm, 0, BIG, 0), INT(solver, checkpoint_every, 0, 2000000000),
    INT(solver, keep_checkpoints, 1, 1000000), INT(solver, eval_every, 0, 2000000000),

    FLT(test, score_thresh, 0, 1, 0), ENUM(test, nms, e_nms), FLT(test, nms_thresh, 0, 1, 1),
    FLT(test, diou_beta, 0, BIG, 1), INT(test, detections_per_img, 1, 100000), INT(test, batch_size, 1, 1024),
};
#define NKEYS ((int)(sizeof keys / sizeof *keys))
static const char *const sections[] = {"run", "data", "model", "rpn", "roi_heads", "solver", "test"};
#define NSECTIONS ((int)(sizeof sections / sizeof *sections))

float md_box_loss_default_weight(md_box_loss_kind k) {
    switch (k) {
    case MD_BOXLOSS_IOU: case MD_BOXLOSS_GIOU: return 10.0f;
    case MD_BOXLOSS_DIOU: case MD_BOXLOSS_CIOU: return 12.0f;
    default: return 1.0f;
    }
}

/* ---- closest-name suggestion ---- */

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63) la = 63;
    if (lb > 63) lb = 63;
    int prev[64], cur[64];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

/* Closest known key for (section, key): same-section keys get a small bonus. */
static const key_def *closest_key(const char *section, const char *key) {
    const key_def *best = NULL;
    int bestd = INT_MAX;
    for (int i = 0; i < NKEYS; i++) {
        int d = 2 * edit_distance(key, keys[i].name) + (strcmp(section, keys[i].section) ? 1 : 0);
        if (d < bestd) { bestd = d; best = &keys[i]; }
    }
    return best;
}

/* Names users of detectron2, mmdetection, torchvision's references and other trainers type for
 * minidet's keys. Edit distance alone maps 'learning_rate' to roi_heads.sampling_ratio and
 * 'lr' to rpn.nms_thresh; a known synonym gives the key they mean, with a note where the
 * meaning differs (epochs vs iterations). Checked before the edit distance, case-insensitively,
 * only for keys that are not valid in the section they were written in. */
typedef struct { const char *alias, *section, *name, *note; } synonym;
static const synonym synonyms[] = {
    {"lr", "solver", "base_lr", NULL}, {"learning_rate", "solver", "base_lr", NULL},
    {"base_learning_rate", "solver", "base_lr", NULL}, {"initial_lr", "solver", "base_lr", NULL},
    {"batch_size", "solver", "ims_per_batch", "images per step"}, {"batch", "solver", "ims_per_batch", "images per step"},
    {"imgs_per_gpu", "solver", "ims_per_batch", "images per step"}, {"samples_per_gpu", "solver", "ims_per_batch", "images per step"},
    {"images_per_batch", "solver", "ims_per_batch", "images per step"}, {"train_batch_size", "solver", "ims_per_batch", "images per step"},
    {"epochs", "solver", "max_iter", "minidet counts steps: max_iter = epochs x training images / ims_per_batch"},
    {"max_epochs", "solver", "max_iter", "minidet counts steps: max_iter = epochs x training images / ims_per_batch"},
    {"num_epochs", "solver", "max_iter", "minidet counts steps: max_iter = epochs x training images / ims_per_batch"},
    {"max_iters", "solver", "max_iter", NULL}, {"iterations", "solver", "max_iter", NULL}, {"iters", "solver", "max_iter", NULL},
    {"num_iters", "solver", "max_iter", NULL}, {"max_steps", "solver", "max_iter", NULL}, {"total_steps", "solver", "max_iter", NULL},
    {"lr_steps", "solver", "steps", "iterations at which the lr is multiplied by gamma"},
    {"milestones", "solver", "steps", "iterations at which the lr is multiplied by gamma"},
    {"lr_milestones", "solver", "steps", "iterations at which the lr is multiplied by gamma"},
    {"decay_steps", "solver", "steps", "iterations at which the lr is multiplied by gamma"},
    {"lr_gamma", "solver", "gamma", NULL}, {"lr_decay", "solver", "gamma", NULL},
    {"warmup", "solver", "warmup_iters", NULL}, {"warmup_steps", "solver", "warmup_iters", NULL},
    {"warmup_ratio", "solver", "warmup_factor", NULL}, {"wd", "solver", "weight_decay", NULL},
    {"checkpoint_period", "solver", "checkpoint_every", NULL}, {"save_every", "solver", "checkpoint_every", NULL},
    {"eval_period", "solver", "eval_every", NULL}, {"eval_interval", "solver", "eval_every", NULL},
    {"grad_clip", "solver", "clip_grad_norm", NULL}, {"max_norm", "solver", "clip_grad_norm", NULL},
    {"num_workers", "data", "workers", NULL}, {"workers_per_gpu", "data", "workers", NULL},
    {"random_flip", "data", "hflip", NULL}, {"flip", "data", "hflip", NULL}, {"horizontal_flip", "data", "hflip", NULL},
    {"ann_file", "data", "train_ann", NULL}, {"annotations", "data", "train_ann", NULL},
    {"img_prefix", "data", "train_images", NULL}, {"image_dir", "data", "train_images", NULL}, {"images", "data", "train_images", NULL},
    {"pretrained", "model", "weights", "a .safetensors file; scripts/convert_torchvision.py converts torchvision's"},
    {"load_from", "model", "weights", NULL}, {"checkpoint", "model", "weights", NULL}, {"init_checkpoint", "model", "weights", NULL},
    {"backbone", "model", "depth", "ResNet depth: 18, 34, 50 or 101"}, {"arch", "model", "depth", "ResNet depth: 18, 34, 50 or 101"},
    {"classes", "model", "num_classes", "including background"}, {"n_classes", "model", "num_classes", "including background"},
    {"num_class", "model", "num_classes", "including background"},
    {"frozen_stages", "model", "trainable_layers", "trainable_layers = 5 - frozen stages"},
    {"freeze_at", "model", "trainable_layers", "trainable_layers = 5 - frozen stages"},
    {"image_size", "model", "min_size", "shorter side; max_size bounds the longer"}, {"img_size", "model", "min_size", "shorter side; max_size bounds the longer"},
    {"input_size", "model", "min_size", "shorter side; max_size bounds the longer"},
    {"loss", "roi_heads", "box_loss", NULL}, {"bbox_loss", "roi_heads", "box_loss", NULL}, {"loss_bbox", "roi_heads", "box_loss", NULL},
    {"reg_loss", "roi_heads", "box_loss", NULL}, {"iou_loss", "roi_heads", "box_loss", NULL},
    {"num_threads", "run", "threads", NULL}, {"work_dir", "run", "output_dir", NULL}, {"out_dir", "run", "output_dir", NULL},
    {"output", "run", "output_dir", NULL}, {"random_seed", "run", "seed", NULL},
    {"score_threshold", "test", "score_thresh", NULL}, {"box_score_thresh", "test", "score_thresh", NULL},
    {"nms_threshold", "test", "nms_thresh", NULL}, {"box_nms_thresh", "test", "nms_thresh", NULL},
    {"max_per_img", "test", "detections_per_img", NULL}, {"box_detections_per_img", "test", "detections_per_img", NULL},
    {"detections_per_image", "test", "detections_per_img", NULL},
};
#define NSYNONYMS ((int)(sizeof synonyms / sizeof *synonyms))

static const synonym *find_synonym(const char *key) {
    for (int i = 0; i < NSYNONYMS; i++)
        if (!strcasecmp(key, synonyms[i].alias)) return &synonyms[i];
    return NULL;
}

/* A key of this section that begins with what was typed ([rpn] batch_size ->
 * rpn.batch_size_per_image) is a better guess than a synonym from another section. */
static const key_def *key_with_prefix(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strncasecmp(keys[i].name, key, strlen(key))) return &keys[i];
    return NULL;
}

static const char *closest_section(const char *s) {
    const char *best = sections[0];
    int bestd = INT_MAX;
    for (int i = 0; i < NSECTIONS; i++) {
        int d = edit_distance(s, sections[i]);
        if (d < bestd) { bestd = d; best = sections[i]; }
    }
    return best;
}

static const key_def *find_key(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, key)) return &keys[i];
    return NULL;
}

static int known_section(const char *s) {
    for (int i = 0; i < NSECTIONS; i++)
        if (!strcmp(s, sections[i])) return 1;
    return 0;
}

/* ---- value parsing ---- */

static md_status bad_value(const key_def *k, const char *value, const char *why) {
    return md_set_error(MD_ERR_ARG, "[%s] %s: bad value '%s': %s", k->section, k->name, value, why);
}

static md_status parse_long(const key_def *k, const char *value, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end || errno) return bad_value(k, value, "expected an integer");
    *out = v;
    return MD_OK;
}

/* Parses "a, b, c" (comma-separated numbers, spaces allowed around them) into out[0..max-1], each finite and
 * in (0, hi]. Returns the count, or -1 for a bad, empty or surplus entry or a bad separator. */
static int parse_floats(const char *value, float *out, int max, double hi) {
    int n = 0;
    const char *s = value;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || !isfinite(v) || v <= 0 || v > hi || n == max) return -1;
        out[n++] = (float)v;
        s = end;
        while (*s == ' ') s++;
        if (*s == ',') {
            s++;
            while (*s == ' ') s++;
            if (!*s) return -1; /* trailing comma */
        } else if (*s) return -1;
    }
    return n;
}

md_status md_prefix_list_parse(const char *list, char out[][MD_PREFIX_MAX], int max, int *n) {
    *n = 0;
    const char *s = list ? list : "";
    while (*s == ' ') s++;
    if (!*s) return MD_OK;
    for (;;) {
        while (*s == ' ') s++;
        size_t l = strcspn(s, ",");
        size_t e = l;
        while (e && s[e - 1] == ' ') e--;
        if (e == 0)
            return md_set_error(MD_ERR_ARG, "an empty prefix (expected comma-separated tensor-name prefixes, e.g. roi_heads.)");
        for (size_t i = 0; i < e; i++) {
            char ch = s[i];
            if (!(isalnum((unsigned char)ch) || ch == '_' || ch == '.'))
                return md_set_error(MD_ERR_ARG, "prefix '%.*s' has '%c': expected comma-separated tensor-name prefixes made of "
                                    "letters, digits, '_' and '.', e.g. roi_heads.", (int)e, s, ch);
        }
        if (e >= MD_PREFIX_MAX) return md_set_error(MD_ERR_ARG, "prefix '%.*s...' is longer than %d characters", 20, s, MD_PREFIX_MAX - 1);
        if (*n == max) return md_set_error(MD_ERR_ARG, "more than %d prefixes", max);
        memcpy(out[*n], s, e);
        out[*n][e] = 0;
        (*n)++;
        s += l;
        if (!*s) return MD_OK;
        s++; /* ',' */
    }
}

static md_status set_value(md_config *c, const key_def *k, const char *value) {
    char *p = (char *)c + k->offset;
    char buf[256];
    switch (k->type) {
    case K_STR: {
        size_t n = strlen(value);
        if (n >= k->size) {
            snprintf(buf, sizeof buf, "longer than %zu characters", k->size - 1);
            return bad_value(k, value, buf);
        }
        if (!strcmp(k->section, "run") && (n == 0 || strchr(value, '/')) && !strcmp(k->name, "name"))
            return bad_value(k, value, "a run name must be non-empty and contain no '/'");
        if (!strcmp(k->name, "output_dir") && n == 0) return bad_value(k, value, "must not be empty");
        if (!strcmp(k->name, "weights_exclude")) {
            char pre[MD_PREFIXES_MAX][MD_PREFIX_MAX];
            int np;
            if (md_prefix_list_parse(value, pre, MD_PREFIXES_MAX, &np)) {
                snprintf(buf, sizeof buf, "%s", md_last_error());
                return bad_value(k, value, buf);
            }
        }
        memcpy(p, value, n + 1);
        return MD_OK;
    }
    case K_INT: {
        long long v = 0;
        if (parse_long(k, value, &v)) return md_last_status();
        if (v < (long long)k->lo || v > (long long)k->hi) {
            snprintf(buf, sizeof buf, "expected an integer in [%lld, %lld]", (long long)k->lo, (long long)k->hi);
            return bad_value(k, value, buf);
        }
        if (!strcmp(k->name, "depth") && v != 18 && v != 34 && v != 50 && v != 101)
            return bad_value(k, value, "expected 18, 34, 50 or 101");
        *(int *)p = (int)v;
        return MD_OK;
    }
    case K_U64: {
        char *end;
        errno = 0;
        if (!*value || *value == '-') return bad_value(k, value, "expected a non-negative integer");
        unsigned long long v = strtoull(value, &end, 10);
        if (*end || errno) return bad_value(k, value, "expected a non-negative integer");
        *(unsigned long long *)p = v;
        return MD_OK;
    }
    case K_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v)) return bad_value(k, value, "expected a finite number");
        if (v < k->lo || v > k->hi || (k->lo_open && v <= k->lo)) {
            snprintf(buf, sizeof buf, "expected a number in %c%g, %g]", k->lo_open ? '(' : '[', k->lo, k->hi);
            return bad_value(k, value, buf);
        }
        *(float *)p = (float)v;
        return MD_OK;
    }
    case K_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true")) *(int *)p = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false")) *(int *)p = 0;
        else return bad_value(k, value, "expected 0, 1, true or false");
        return MD_OK;
    case K_ENUM: {
        for (int i = 0; k->names[i]; i++)
            if (!strcmp(value, k->names[i])) { *(int *)p = i; return MD_OK; }
        size_t o = (size_t)snprintf(buf, sizeof buf, "expected one of");
        for (int i = 0; k->names[i] && o < sizeof buf; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s %s", i ? "," : "", k->names[i]);
        return bad_value(k, value, buf);
    }
    case K_STEPS: {
        int steps[MD_MAX_STEPS], n = 0;
        const char *s = value;
        while (*s) {
            while (*s == ' ') s++;
            if (!*s) break;
            char *end;
            errno = 0;
            long v = strtol(s, &end, 10);
            if (end == s || errno || v < 1 || v > 2000000000)
                return bad_value(k, value, "expected a comma-separated list of positive iterations");
            if (n == MD_MAX_STEPS) {
                snprintf(buf, sizeof buf, "at most %d steps", MD_MAX_STEPS);
                return bad_value(k, value, buf);
            }
            if (n && v <= steps[n - 1]) return bad_value(k, value, "steps must be strictly increasing");
            steps[n++] = (int)v;
            s = end;
            while (*s == ' ') s++;
            if (*s == ',') s++;
            else if (*s) return bad_value(k, value, "expected a comma-separated list of positive iterations");
        }
        md_solver_config *sc = &c->solver;
        memset(sc->steps, 0, sizeof sc->steps);
        memcpy(sc->steps, steps, sizeof(int) * (size_t)n);
        sc->num_steps = n;
        return MD_OK;
    }
    case K_ANCHORS: {
        /* exactly one size per FPN level P2..P6, each in (0, hi] pixels */
        float sz[MD_RPN_ANCHOR_LEVELS];
        snprintf(buf, sizeof buf, "expected %d comma-separated sizes in pixels (one per level P2..P6), each in (0, %g]",
                 MD_RPN_ANCHOR_LEVELS, k->hi);
        if (parse_floats(value, sz, MD_RPN_ANCHOR_LEVELS, k->hi) != MD_RPN_ANCHOR_LEVELS) return bad_value(k, value, buf);
        memcpy(p, sz, sizeof sz);
        return MD_OK;
    }
    case K_RATIOS: {
        /* 1..MD_RPN_MAX_RATIOS aspect ratios (height / width), each in (0, hi] */
        float r[MD_RPN_MAX_RATIOS] = {0};
        snprintf(buf, sizeof buf, "expected 1 to %d comma-separated aspect ratios (height / width), each in (0, %g]",
                 MD_RPN_MAX_RATIOS, k->hi);
        int n = parse_floats(value, r, MD_RPN_MAX_RATIOS, k->hi);
        if (n < 1) return bad_value(k, value, buf);
        memcpy(c->rpn.aspect_ratios, r, sizeof r);
        c->rpn.num_aspect_ratios = n;
        return MD_OK;
    }
    }
    return md_set_error(MD_ERR_INTERNAL, "config: bad key type");
}

md_status md_config_set(md_config *c, const char *section, const char *key, const char *value) {
    if (!known_section(section))
        return md_set_error(MD_ERR_ARG, "unknown section [%s] (did you mean [%s]?)", section, closest_section(section));
    const key_def *k = find_key(section, key);
    if (!k) {
        const key_def *s = key_with_prefix(section, key);
        if (s) return md_set_error(MD_ERR_ARG, "unknown key '%s' in [%s] (did you mean %s.%s?)", key, section, s->section, s->name);
        const synonym *syn = find_synonym(key);
        if (syn) {
            /* the same key in the section written ([rpn] loss -> rpn.box_loss) */
            const char *sec = find_key(section, syn->name) ? section : syn->section;
            return md_set_error(MD_ERR_ARG, "unknown key '%s' in [%s] (did you mean %s.%s?%s%s)", key, section, sec, syn->name,
                                syn->note ? " " : "", syn->note ? syn->note : "");
        }
        s = closest_key(section, key);
        return md_set_error(MD_ERR_ARG, "unknown key '%s' in [%s] (did you mean %s.%s?)", key, section, s->section, s->name);
    }
    md_status st = set_value(c, k, value);
    if (st) return st;
    if (!strcmp(section, "roi_heads") && !strcmp(key, "box_loss"))
        c->roi_heads.box_loss_weight = md_box_loss_default_weight(c->roi_heads.box_loss);
    return MD_OK;
}

/* Cross-key checks after everything is set. */
static md_status validate(const md_config *c) {
    if (c->model.max_size < c->model.min_size)
        return md_set_error(MD_ERR_ARG, "[model] max_size (%d) is smaller than min_size (%d)", c->model.max_size, c->model.min_size);
    if (c->rpn.bg_iou_thresh > c->rpn.fg_iou_thresh)
        return md_set_error(MD_ERR_ARG, "[rpn] bg_iou_thresh (%g) is above fg_iou_thresh (%g)", c->rpn.bg_iou_thresh, c->rpn.fg_iou_thresh);
    if (c->roi_heads.bg_iou_thresh > c->roi_heads.fg_iou_thresh)
        return md_set_error(MD_ERR_ARG, "[roi_heads] bg_iou_thresh (%g) is above fg_iou_thresh (%g)", c->roi_heads.bg_iou_thresh, c->roi_heads.fg_iou_thresh);
    return MD_OK;
}

/* ---- loading ---- */

typedef struct {
    md_config *c;
    md_status st;     /* first error */
    char msg[512];
    int weight_set;   /* roi_heads.box_loss_weight given in this layer */
    float weight;
    const int *line;  /* current line of the file being read (NULL for overrides) */
    int err_line;     /* line of the first error */
} load_ctx;

/* libinih reader over a string that counts lines, so a key error names its own line. */
typedef struct {
    const char *p;
    int line;
} line_reader;

static char *read_line(char *str, int num, void *stream) {
    line_reader *r = stream;
    if (!*r->p || num < 2) return NULL;
    int i = 0;
    while (i < num - 1 && r->p[i]) {
        str[i] = r->p[i];
        if (r->p[i++] == '\n') break;
    }
    str[i] = 0;
    r->p += i;
    r->line++;
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    load_ctx *L = user;
    if (L->st) return 1; /* only the first error is reported */
    md_status st;
    if (!*section) st = md_set_error(MD_ERR_ARG, "key '%s' is outside any [section]", name);
    else st = md_config_set(L->c, section, name, value);
    if (st) {
        L->st = st;
        L->err_line = L->line ? *L->line : 0;
        snprintf(L->msg, sizeof L->msg, "%s", md_last_error());
        return 0;
    }
    if (!strcmp(section, "roi_heads") && !strcmp(name, "box_loss_weight")) {
        L->weight_set = 1;
        L->weight = L->c->roi_heads.box_loss_weight;
    }
    return 1;
}

static md_status parse_text(md_config *c, const char *text, size_t n, const char *what);

static md_status load_file(md_config *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return md_set_error(MD_ERR_IO, "%s: cannot open config file: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return md_set_error(MD_ERR_IO, "%s: is a directory, expected a config file (INI)", path);
    }
    /* Read the whole file so that over-long lines (libinih's limit) are a clear error. */
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    if (!text) { fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    size_t r;
    while ((r = fread(text + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *t = realloc(text, cap * 2);
            if (!t) { free(text); fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
            text = t;
            cap *= 2;
        }
    }
    int rerr = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (rerr) { free(text); return md_set_error(MD_ERR_IO, "%s: read error: %s", path, strerror(rerr)); }
    text[n] = 0;
    md_status st = parse_text(c, text, n, path);
    free(text);
    return st;
}

/* Parses text[0..n) (text[n] == 0) into c; what names it in errors (a path, or "W.safetensors: stored config"). */
static md_status parse_text(md_config *c, const char *text, size_t n, const char *what) {
    const char *path = what;
    if (strlen(text) != n) return md_set_error(MD_ERR_FORMAT, "%s: not a text file (contains a NUL byte)", path);
    int line = 1, col = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') { line++; col = 0; continue; }
        if (++col >= INI_MAX_LINE - 1)
            return md_set_error(MD_ERR_FORMAT, "%s:%d: line longer than %d characters", path, line, INI_MAX_LINE - 2);
    }
    line_reader rd = {text, 0};
    load_ctx L = {.c = c, .line = &rd.line};
    int el = ini_parse_stream(read_line, &rd, on_key, &L);
    /* libinih reports the first bad line, syntax or key: report whichever came first. */
    if (L.st && (!el || L.err_line <= el)) return md_set_error(L.st, "%s:%d: %s", path, L.err_line, L.msg);
    if (el) return md_set_error(MD_ERR_FORMAT, "%s:%d: syntax error (expected [section] or key = value)", path, el);
    if (L.weight_set) c->roi_heads.box_loss_weight = L.weight;
    return MD_OK;
}

static md_status apply_overrides(md_config *c, md_config tmp, const char *path, int n_overrides, char *const *overrides);

md_status md_config_load(md_config *c, const char *path, int n_overrides, char *const *overrides) {
    md_config tmp;
    md_config_defaults(&tmp);
    if (path) {
        md_status st = load_file(&tmp, path);
        if (st) return st;
    }
    return apply_overrides(c, tmp, path, n_overrides, overrides);
}

md_status md_config_load_text(md_config *c, const char *text, const char *what, int n_overrides, char *const *overrides) {
    md_config tmp;
    md_config_defaults(&tmp);
    md_status st = parse_text(&tmp, text, strlen(text), what);
    if (st) return st;
    return apply_overrides(c, tmp, what, n_overrides, overrides);
}

/* The "section.key=value" overrides on top of tmp, the cross-key checks, then *c = tmp. */
static md_status apply_overrides(md_config *c, md_config tmp, const char *path, int n_overrides, char *const *overrides) {
    load_ctx L = {.c = &tmp};
    for (int i = 0; i < n_overrides; i++) {
        const char *o = overrides[i];
        const char *dot = strchr(o, '.'), *eq = strchr(o, '=');
        if (!dot || !eq || dot > eq || dot == o || eq == dot + 1)
            return md_set_error(MD_ERR_ARG, "override '%s': expected section.key=value", o);
        char section[64], key[64], value[MD_PATH_MAX + 64];
        size_t ls = (size_t)(dot - o), lk = (size_t)(eq - dot - 1);
        if (ls >= sizeof section || lk >= sizeof key || strlen(eq + 1) >= sizeof value)
            return md_set_error(MD_ERR_ARG, "override '%s': too long", o);
        memcpy(section, o, ls); section[ls] = 0;
        memcpy(key, dot + 1, lk); key[lk] = 0;
        while (lk && key[lk - 1] == ' ') key[--lk] = 0;
        strcpy(value, eq + 1);
        /* trim spaces around the key and value */
        char *v = value;
        while (*v == ' ') v++;
        for (size_t e = strlen(v); e && v[e - 1] == ' '; e--) v[e - 1] = 0;
        on_key(&L, section, key, v);
        if (L.st) return md_set_error(L.st, "override '%s': %s", o, L.msg);
    }
    if (L.weight_set) tmp.roi_heads.box_loss_weight = L.weight;
    md_status st = validate(&tmp);
    if (st) return path ? md_error_prefix(st, "%s", path) : st;
    *c = tmp;
    return MD_OK;
}

/* ---- writing ---- */

static void write_value(const md_config *c, const key_def *k, FILE *f) {
    const char *p = (const char *)c + k->offset;
    switch (k->type) {
    case K_STR: fprintf(f, "%s", p); break;
    case K_INT: fprintf(f, "%d", *(const int *)p); break;
    case K_U64: fprintf(f, "%llu", *(const unsigned long long *)p); break;
    case K_FLOAT: fprintf(f, "%.9g", (double)*(const float *)p); break;
    case K_BOOL: fprintf(f, "%d", *(const int *)p ? 1 : 0); break;
    case K_ENUM: fprintf(f, "%s", k->names[*(const int *)p]); break;
    case K_STEPS:
        for (int i = 0; i < c->solver.num_steps; i++) fprintf(f, "%s%d", i ? "," : "", c->solver.steps[i]);
        break;
    case K_ANCHORS:
        for (int i = 0; i < MD_RPN_ANCHOR_LEVELS; i++) fprintf(f, "%s%.9g", i ? "," : "", (double)((const float *)p)[i]);
        break;
    case K_RATIOS:
        for (int i = 0; i < c->rpn.num_aspect_ratios; i++) fprintf(f, "%s%.9g", i ? "," : "", (double)c->rpn.aspect_ratios[i]);
        break;
    }
}

md_status md_config_write(const md_config *c, FILE *f) {
    fprintf(f, "; minidet resolved configuration (every key; see configs/README.md)\n");
    const char *cur = NULL;
    for (int i = 0; i < NKEYS; i++) {
        if (!cur || strcmp(cur, keys[i].section)) {
            cur = keys[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", cur);
        }
        fprintf(f, "%s = ", keys[i].name);
        write_value(c, &keys[i], f);
        fputc('\n', f);
    }
    if (ferror(f)) return md_set_error(MD_ERR_IO, "writing configuration failed");
    return MD_OK;
}

/* ---- checkpoint anchor geometry ---- */

static void format_list(char *buf, size_t n, const float *v, int count) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < count && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%.9g", i ? "," : "", (double)v[i]);
}

md_status md_config_check_anchors(const md_config *c, const char *text, const char *what) {
    md_config ck;
    md_config_defaults(&ck); /* keys the text lacks: the defaults (checkpoints from before the key existed) */
    char section[64] = "", line[INI_MAX_LINE];
    const char *p = text ? text : "";
    while (*p) {
        size_t l = strcspn(p, "\n");
        size_t m = l < sizeof line - 1 ? l : sizeof line - 1;
        memcpy(line, p, m);
        line[m] = 0;
        p += l + (p[l] == '\n');
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e && (size_t)(e - s - 1) < sizeof section) {
                memcpy(section, s + 1, (size_t)(e - s - 1));
                section[e - s - 1] = 0;
            }
            continue;
        }
        if (strcmp(section, "rpn")) continue;
        char *eq = strchr(s, '=');
        if (!eq) continue;
        char *ke = eq;
        while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
        *ke = 0;
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t') v++;
        for (size_t e = strlen(v); e && (v[e - 1] == ' ' || v[e - 1] == '\r' || v[e - 1] == '\t'); e--) v[e - 1] = 0;
        if (!strcmp(s, "anchor_sizes") || !strcmp(s, "aspect_ratios")) {
            md_status st = set_value(&ck, find_key("rpn", s), v);
            if (st) return md_error_prefix(st, "%s: the checkpoint's configuration (metadata minidet.config)", what);
        }
    }
    char a[160], b[160];
    if (ck.rpn.num_aspect_ratios != c->rpn.num_aspect_ratios ||
        memcmp(ck.rpn.aspect_ratios, c->rpn.aspect_ratios, sizeof ck.rpn.aspect_ratios)) {
        format_list(a, sizeof a, ck.rpn.aspect_ratios, ck.rpn.num_aspect_ratios);
        format_list(b, sizeof b, c->rpn.aspect_ratios, c->rpn.num_aspect_ratios);
        return md_set_error(MD_ERR_ARG, "%s: the checkpoint was trained with [rpn] aspect_ratios = %s but the configuration has %s "
                            "(anchors would not match its RPN head; add rpn.aspect_ratios=%s)", what, a, b, a);
    }
    if (memcmp(ck.rpn.anchor_sizes, c->rpn.anchor_sizes, sizeof ck.rpn.anchor_sizes)) {
        format_list(a, sizeof a, ck.rpn.anchor_sizes, MD_RPN_ANCHOR_LEVELS);
        format_list(b, sizeof b, c->rpn.anchor_sizes, MD_RPN_ANCHOR_LEVELS);
        return md_set_error(MD_ERR_ARG, "%s: the checkpoint was trained with [rpn] anchor_sizes = %s but the configuration has %s "
                            "(anchors would not match its RPN head; add rpn.anchor_sizes=%s)", what, a, b, a);
    }
    return MD_OK;
}
