/* trainer.c — the training loop (see trainer.h). md_train() reads top to bottom: setup(), then per
 * iteration train_step() (batches, forward/backward, clipping, SGD), log_window_flush() every
 * [run] log_every, maybe_checkpoint(), maybe_eval(); after the loop final_eval(). Evaluation runs
 * through md_eval_detector (evaluate.h), the same loop ./eval --weights uses. */
#include "minidet/trainer.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "minidet/arena.h"
#include "minidet/checkpoint.h"
#include "minidet/coco.h"
#include "minidet/cocoeval.h"
#include "minidet/data.h"
#include "minidet/data_parallel.h"
#include "minidet/dist.h"
#include "minidet/evaluate.h"
#include "minidet/fs.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/optim.h"
#include "minidet/rng.h"
#include "minidet/targets.h"
#include "minidet/threads.h"

#define ARENA_MAX ((size_t)96 << 30)
/* Gradient bucket size of data-parallel training (PyTorch DDP's default, 25 MB): large enough for full
 * link speed, small enough that the first buckets go out while layer4's backward still runs. */
#define DP_BUCKET_MB 25

void md_train_options_default(md_train_options *o) {
    memset(o, 0, sizeof *o);
    o->progress_tty = -1;
    o->handle_signals = 0;
}

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t g_stop_signal; /* the only global: set by the signal handler */

static void on_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL); /* a second signal kills at once */
}

int md_train_stop_signal(void) { return g_stop_signal; }

/* The per-step vote of the ranks (md_dist_agree keeps the largest): a signal votes its number, a
 * non-finite loss more than any signal, so a divergence anywhere wins over a stop request. */
#define VOTE_NUMERIC 1000

/* ---------------------------------------------------------------- helpers */

/* What to do about missing data depends on whose data the config names: COCO (the download
 * script), the demo's shapes set (make demo), another shapes directory (the generator), or the
 * user's own set (the README's section on it). */
static md_status missing_data(const md_config *c, const char *what, const char *key, const char *path) {
    char hint[2 * sizeof c->data.train_ann];
    int split_val = !strncmp(key, "val", 3);
    if (strcasestr(path, "coco"))
        snprintf(hint, sizeof hint, "To train on COCO 2017 run scripts/get_coco.sh (downloads it into data/coco), or point [data] "
                 "train_ann/train_images/val_ann/val_images at any COCO-format dataset");
    else if (!strncmp(path, "data/shapes/", 12))
        snprintf(hint, sizeof hint, "This is the demo's synthetic shapes set: make demo generates it (and trains every run)");
    else if (strstr(path, "shapes")) {
        /* the generator writes DIR/annotations.json and DIR/images/ */
        char dir[sizeof c->data.train_ann];
        snprintf(dir, sizeof dir, "%s", split_val ? c->data.val_ann : c->data.train_ann);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        snprintf(hint, sizeof hint, "This config uses the synthetic shapes set: generate it with build/bin/tool_make_shapes %s "
                 "--split %s --size %dx%d", dir, split_val ? "val" : "train", c->model.min_size, c->model.min_size);
    } else
        snprintf(hint, sizeof hint, "Point [data] train_ann/train_images/val_ann/val_images at your COCO-format dataset "
                 "(README: Train on your own dataset), or run scripts/get_coco.sh for COCO 2017");
    return md_set_error(MD_ERR_IO, "%s not found: looked for '%s' ([data] %s). %s", what, path[0] ? path : "(empty)", key, hint);
}

/* The hint for a missing [model] weights file: another run's checkpoint (train that run first,
 * naming its config where configs/<run>.cfg exists) or converted ImageNet weights. */
static md_status missing_weights(const char *path) {
    char run[512] = "";
    const char *base = strrchr(path, '/');
    if (base && (!strcmp(base, "/last.safetensors") || !strcmp(base, "/best.safetensors"))) {
        const char *name = path;
        for (const char *q = path; q < base; q++)
            if (*q == '/') name = q + 1;
        snprintf(run, sizeof run, "%.*s", (int)(base - name), name);
    }
    if (run[0]) {
        char cfg[600];
        snprintf(cfg, sizeof cfg, "configs/%s.cfg", run);
        if (md_path_exists(cfg))
            return md_set_error(MD_ERR_IO, "%s: initial weights not found ([model] weights): it is the checkpoint of run '%s'; train it first "
                                "(./train %s)%s, or set model.weights= to train from scratch", path, run, cfg,
                                !strncmp(run, "shapes_", 7) ? " or run make demo, which trains both stages" : "");
        return md_set_error(MD_ERR_IO, "%s: initial weights not found ([model] weights): it is another run's checkpoint; train that run "
                            "first, or set model.weights= to train from scratch", path);
    }
    return md_set_error(MD_ERR_IO, "%s: initial weights not found ([model] weights; convert torchvision's ImageNet ResNet "
                        "with scripts/convert_torchvision.py, or set model.weights= to train from scratch)", path);
}

/* Keeps only the lines of metrics.jsonl whose iter <= upto (a resumed run rewrites what follows). */
static md_status truncate_metrics(const char *path, long long upto) {
    FILE *f = fopen(path, "rb");
    if (!f) return MD_OK;
    char *out = NULL;
    size_t outlen = 0;
    FILE *o = open_memstream(&out, &outlen);
    if (!o) { fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, f)) > 0) {
        cJSON *j = cJSON_Parse(line);
        cJSON *it = j ? cJSON_GetObjectItemCaseSensitive(j, "iter") : NULL;
        if (cJSON_IsNumber(it) && it->valuedouble <= (double)upto) {
            fputs(line, o);
            if (line[r - 1] != '\n') fputc('\n', o); /* a complete last line cut before its newline */
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    fclose(o);
    md_status s = md_write_atomic(path, out ? out : "", out ? outlen : 0);
    free(out);
    return s;
}

/* ---------------------------------------------------------------- trainer state */

typedef struct {
    const md_config *cfg;
    md_config cfg_copy;
    char run_dir[2048];
    md_coco train, val;
    int have_val;
    md_coco_gt *val_gt;
    md_data_options dopt;
    md_loader *loader;
    uint8_t *exclude;
    md_detector det;
    int det_ok;
    md_sgd opt;
    md_ckpt_tensor *ck;
    int nck;
    md_arena arena;
    md_train_state st;
    char *label_map_json;
    FILE *metrics;
    int tty, quiet;
    int rank, size;  /* data-parallel rank and rank count (dist.h); rank 0 alone writes the run directory */
    int sizing;      /* size_arena's dry run: each rank alone, no collectives */
    int dp_signal;   /* with several ranks: the signal that reached some rank (agreed at the end of the step), or 0 */
    md_dp dp;
    /* per-step gradients of the stage outputs live in the arena */
} trainer;

static void trainer_free(trainer *t) {
    md_dp_free(&t->dp);
    if (t->loader) md_loader_destroy(t->loader);
    if (t->det_ok) md_detector_free(&t->det);
    md_sgd_free(&t->opt);
    free(t->ck);
    md_arena_free(&t->arena);
    md_coco_free(&t->train);
    if (t->have_val) md_coco_free(&t->val);
    if (t->val_gt) md_coco_gt_free(t->val_gt);
    free(t->exclude);
    free(t->label_map_json);
    if (t->metrics) fclose(t->metrics);
}

static char *label_map_json(const md_coco *c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "layout", c->layout == MD_LABELS_COCO_ID ? "coco_id" : "contiguous");
    cJSON *a = cJSON_AddArrayToObject(j, "label_to_category");
    for (int i = 0; a && i < c->num_classes; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(c->label_to_cat[i]));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---------------------------------------------------------------- one training step */

typedef struct {
    double obj, rpn_box, cls, box;
} step_losses;

/* Forward + losses + backward of one micro-batch; gradients accumulate in the registry. */
static md_status micro_step(trainer *t, const md_batch *b, md_rng *rng, float grad_scale, step_losses *L) {
    md_detector *det = &t->det;
    md_arena *ar = &t->arena;
    md_arena_reset(ar);
    int sizes[2 * MD_MAX_BATCH];
    int gt_begin[MD_MAX_BATCH], gt_count[MD_MAX_BATCH];
    if (b->n > MD_MAX_BATCH) return md_set_error(MD_ERR_ARG, "batch of %d images exceeds %d", b->n, MD_MAX_BATCH);
    for (int i = 0; i < b->n; i++) {
        sizes[2 * i] = b->info[i].h;
        sizes[2 * i + 1] = b->info[i].w;
        gt_begin[i] = b->info[i].box_begin;
        gt_count[i] = b->info[i].num_boxes;
    }
    md_step step;
    md_status s = md_detector_forward_rpn(det, ar, b->images, b->n, b->height, b->width, sizes, 1, &step);
    if (!s) s = md_detector_proposals(det, ar, &step);
    if (s) return s;
    int A = step.num_anchors;
    md_gt_batch gt = {b->n, b->boxes, b->labels, gt_begin, gt_count, b->slot0, t->size > 1 && !t->sizing};
    float *d_obj = md_arena_floats(ar, (size_t)b->n * A);
    float *d_rpn = md_arena_floats(ar, (size_t)b->n * A * 4);
    if (!d_obj || !d_rpn) return md_last_status();
    md_rpn_loss_result rl;
    s = md_rpn_loss(&t->cfg->rpn, ar, &gt, step.anchors, A, step.objectness, step.rpn_deltas, rng, grad_scale, d_obj, d_rpn, &rl);
    if (s) return s;
    md_roi_targets rt;
    s = md_roi_sample(&t->cfg->roi_heads, ar, &gt, step.proposals, step.num_proposals, rng, &rt);
    if (s) return s;
    s = md_detector_forward_roi(det, ar, &step, rt.rois, rt.R);
    if (s) return s;
    int K = step.num_classes;
    float *d_cls = md_arena_floats(ar, (size_t)rt.R * K + 1);
    float *d_box = md_arena_floats(ar, (size_t)rt.R * K * 4 + 1);
    if (!d_cls || !d_box) return md_last_status();
    md_roi_loss_result ol;
    s = md_roi_loss(&t->cfg->roi_heads, ar, &rt, step.class_logits, step.box_deltas, K, grad_scale, d_cls, d_box, &ol);
    if (s) return s;
    L->obj = rl.loss_objectness;
    L->rpn_box = rl.loss_box;
    L->cls = ol.loss_classifier;
    L->box = ol.loss_box;
    if (!isfinite(L->obj) || !isfinite(L->rpn_box) || !isfinite(L->cls) || !isfinite(L->box))
        return md_set_error(MD_ERR_NUMERIC, "non-finite loss (objectness %g, rpn_box_reg %g, classifier %g, box_reg %g)", L->obj,
                            L->rpn_box, L->cls, L->box);
    return md_detector_backward(det, ar, &step, d_obj, d_rpn, d_cls, d_box);
}

static int arena_full(md_status s) { return s == MD_ERR_NOMEM && strstr(md_last_error(), "arena"); }

static md_status grow_arena(md_arena *a) {
    size_t cap = a->cap ? a->cap * 2 : ((size_t)1 << 30);
    if (cap > ARENA_MAX) return md_set_error(MD_ERR_NOMEM, "arena: a step needs more than %zu GiB", ARENA_MAX >> 30);
    md_arena_free(a);
    md_log(MD_LOG_DEBUG, "arena grown to %zu MiB", cap >> 20);
    return md_arena_init(a, cap);
}

/* Copies every BN buffer (running statistics, frozen-BN affine) to or from snap (NULL: returns the float count). */
static size_t bn_buffers(md_detector *det, float *snap, int restore) {
    size_t o = 0;
    for (int i = 0; i < det->num_params; i++) {
        md_param *p = &det->params[i];
        if (!p->is_buffer) continue;
        if (snap && restore) memcpy(p->data, snap + o, p->numel * sizeof(float));
        else if (snap) memcpy(snap + o, p->data, p->numel * sizeof(float));
        o += p->numel;
    }
    return o;
}

/* Sizes the arena: one forward/backward on a synthetic batch of the largest input (min_size x max_size,
 * padded to 32) with a few boxes. Gradients are zeroed and the BN running statistics (which a norm = bn
 * training forward updates) restored afterwards; nothing else changes. */
static md_status size_arena(trainer *t) {
    const md_config *c = t->cfg;
    int n = c->solver.ims_per_batch / c->solver.grad_accum / t->size;
    int H = (c->model.min_size + 31) / 32 * 32, W = (c->model.max_size + 31) / 32 * 32;
    size_t img = (size_t)n * 3 * H * W;
    float *images = calloc(img, sizeof(float));
    md_image_info *info = calloc((size_t)n, sizeof *info);
    int nb = 4 * n;
    float *boxes = malloc(sizeof(float) * 4 * (size_t)nb);
    int *labels = malloc(sizeof(int) * (size_t)nb);
    float *bnsnap = malloc((bn_buffers(&t->det, NULL, 0) + 1) * sizeof(float));
    if (!images || !info || !boxes || !labels || !bnsnap) {
        free(images); free(info); free(boxes); free(labels); free(bnsnap);
        return md_set_error(MD_ERR_NOMEM, "arena sizing: out of memory");
    }
    md_rng r = md_rng_make(c->run.seed, 99);
    for (size_t i = 0; i < img; i++) images[i] = md_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        info[i].h = c->model.min_size;
        info[i].w = c->model.max_size;
        info[i].box_begin = 4 * i;
        info[i].num_boxes = 4;
    }
    for (int k = 0; k < nb; k++) {
        float s = 16.0f + 48.0f * (float)(k % 4);
        boxes[4 * k] = 10 + 3 * k;
        boxes[4 * k + 1] = 20 + 2 * k;
        boxes[4 * k + 2] = boxes[4 * k] + s * 2;
        boxes[4 * k + 3] = boxes[4 * k + 1] + s;
        labels[k] = 1 + k % (c->model.num_classes - 1);
    }
    md_batch b = {0};
    b.n = n;
    b.height = H;
    b.width = W;
    b.images = images;
    b.info = info;
    b.boxes = boxes;
    b.labels = labels;
    b.num_boxes = nb;
    md_status s;
    bn_buffers(&t->det, bnsnap, 0);
    t->sizing = 1;
    if (!t->arena.cap && (s = md_arena_init(&t->arena, (size_t)1 << 30))) goto done;
    for (;;) {
        md_rng rr = md_rng_make(c->run.seed, 98);
        step_losses L;
        md_detector_zero_grad(&t->det);
        s = micro_step(t, &b, &rr, 1.0f, &L);
        if (s == MD_ERR_NUMERIC) s = MD_OK; /* random weights on noise may do anything: only memory matters here */
        if (!arena_full(s)) break;
        if ((s = grow_arena(&t->arena))) break;
    }
    t->sizing = 0;
    md_detector_zero_grad(&t->det);
    bn_buffers(&t->det, bnsnap, 1);
    if (!s) {
        size_t need = t->arena.peak + t->arena.peak / 4 + ((size_t)64 << 20);
        if (need < t->arena.cap / 2 || need > t->arena.cap) {
            md_arena_free(&t->arena);
            s = md_arena_init(&t->arena, need);
        }
        md_log(MD_LOG_DEBUG, "arena: %zu MiB (peak of the sizing step %zu MiB)", t->arena.cap >> 20, t->arena.peak >> 20);
    }
done:
    free(images); free(info); free(boxes); free(labels); free(bnsnap);
    return s;
}

/* ---------------------------------------------------------------- evaluation */

static md_status all_ranks(trainer *t, md_status s);

/* COCO evaluation on the val split; with several ranks the batches are shared, rank 0 scores every
 * rank's detections (the one-process stats) and the others receive res->stats only. */
/* save_dets (may be NULL): rank 0 keeps the detections as a COCO results file, so that the
 * comparison can resample the val images without running the model again. */
static md_status evaluate(trainer *t, md_cocoeval_result *res, const char *save_dets) {
    memset(res, 0, sizeof *res);
    md_coco_dets *dets = NULL;
    md_det_list dl;
    memset(&dl, 0, sizeof dl);
    md_eval_detector_options o = {.coco = &t->val, .image_dir = t->cfg->data.val_images, .dopt = &t->dopt,
                                  .batch_size = t->cfg->test.batch_size, .label_map = &t->train, .gt = t->val_gt,
                                  .arena_max = ARENA_MAX, .shard_rank = t->rank, .shard_count = t->size};
    md_status s = all_ranks(t, md_eval_detector(&t->det, &t->arena, &o, &dl, NULL, NULL));
    if (!s && t->rank == 0) {
        s = md_coco_dets_create(t->val_gt, &dets);
        if (!s && dl.n) s = md_coco_dets_add(dets, dl.n, dl.image_id, dl.category_id, dl.xywh, dl.score);
        if (!s) s = md_cocoeval_run(t->val_gt, dets, res);
        if (!s && save_dets && (s = md_coco_dets_save(dets, save_dets))) md_cocoeval_result_free(res);
    }
    md_det_list_free(&dl);
    md_coco_dets_free(dets);
    if (t->size > 1) {
        s = all_ranks(t, s);
        if (!s) s = md_dist_bcast(res->stats, sizeof res->stats, 0);
        if (s) md_cocoeval_result_free(res);
    }
    return s;
}

static void metrics_eval_line(trainer *t, long long iter, const md_cocoeval_result *r) {
    if (!t->metrics) return;
    fprintf(t->metrics, "{\"type\":\"eval\",\"iter\":%lld,\"stats\":[", iter);
    for (int i = 0; i < 12; i++) fprintf(t->metrics, "%s%.17g", i ? "," : "", r->stats[i]);
    fprintf(t->metrics, "]}\n");
    fflush(t->metrics);
}

static md_status write_eval_json(trainer *t, long long iter, const md_cocoeval_result *r, double train_time, double ips) {
    char path[4096];
    snprintf(path, sizeof path, "%s/eval.json", t->run_dir);
    return md_eval_json_write(path, r, t->val_gt, iter, md_box_loss_name(t->cfg->roi_heads.box_loss), train_time, ips);
}

/* ---------------------------------------------------------------- ranks */

/* Every rank's outcome of the same piece of work, agreed: MD_OK on all ranks, or on all ranks an error.
 * Rank 0 speaks for the job: it receives the status and message of the lowest failing rank (for the
 * start-up image check, whose shares are in dataset order, the first bad image, as one process names it)
 * and returns them prefixed with that rank; the other ranks return "stopped because rank R failed", which
 * the CLI does not print. One process: s. */
static md_status all_ranks(trainer *t, md_status s) {
    if (t->size == 1) return s;
    int failed = 0, who = 0;
    md_status cs = md_dist_agree(s != MD_OK, &failed, &who);
    if (cs) return cs;
    if (!failed) return MD_OK;
    struct { int status; char msg[2048]; } m = {(int)s, ""};
    if (t->rank == who) snprintf(m.msg, sizeof m.msg, "%s", md_last_error());
    if ((cs = md_dist_bcast(&m, sizeof m, who))) return cs;
    if (t->rank == 0) return md_set_error((md_status)m.status, "rank %d: %s", who, m.msg);
    return md_set_error((md_status)m.status, "rank %d: stopped because rank %d failed (rank 0 says why)", t->rank, who);
}

/* An error on one rank in the middle of a step, where the others already wait in a collective: the
 * whole job ends (MPI_Abort) after this rank has said why. */
static void fatal_mid_step(trainer *t, md_status s) {
    fprintf(stderr, "minidet: rank %d: %s\n", t->rank, md_last_error());
    md_dist_abort(s == MD_ERR_NOMEM ? 3 : 1);
}

/* ---------------------------------------------------------------- checkpoints */

static md_status save_checkpoint(trainer *t) {
    t->st.world_size = t->size;
    char path[4096];
    md_checkpoint_path(path, sizeof path, t->run_dir, t->st.iteration);
    md_status s = md_checkpoint_save(path, t->ck, t->nck, &t->opt, t->cfg, &t->st, t->label_map_json);
    if (!s) s = md_checkpoint_link_last(t->run_dir, path);
    if (!s) s = md_checkpoint_prune(t->run_dir, t->cfg->solver.keep_checkpoints);
    return s;
}

/* ---------------------------------------------------------------- progress */

static void fmt_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
    long long x = (long long)s;
    if (x >= 86400) snprintf(buf, n, "%lldd%02lldh", x / 86400, (x % 86400) / 3600);
    else if (x >= 3600) snprintf(buf, n, "%lldh%02lldm", x / 3600, (x % 3600) / 60);
    else snprintf(buf, n, "%lldm%02llds", x / 60, x % 60);
}

/* ---------------------------------------------------------------- the job */

/* What is about to be trained, before the first step: data, model, schedule, and the settings
 * that are almost certainly mistakes (md_config_lint) as warnings. */
static void startup_summary(const trainer *t) {
    if (t->rank != 0) return; /* data-parallel: said once */
    const md_config *c = t->cfg;
    const md_solver_config *sc = &c->solver;
    char w[8][MD_LINT_LEN];
    int nw = md_config_lint(c, w, 8);
    for (int i = 0; i < nw && i < 8; i++) md_log(MD_LOG_WARN, "%s", w[i]);
    if (t->quiet) return;
    long long boxes = 0;
    int with_boxes = 0;
    for (int i = 0; i < t->train.num_images; i++) {
        boxes += t->train.images[i].num_targets;
        with_boxes += t->train.images[i].num_targets > 0;
    }
    char val[64] = "no val split";
    if (t->have_val) snprintf(val, sizeof val, "val: %d images", t->val.num_images);
    md_log(MD_LOG_INFO, "data: %d training images (%d with boxes), %lld boxes, %d classes + background; %s", t->train.num_images,
           with_boxes, boxes, t->train.num_classes - 1, val);
    double np = 0, nt = 0;
    for (int i = 0; i < t->det.num_params; i++) {
        np += (double)t->det.params[i].numel;
        if (t->det.params[i].trainable) nt += (double)t->det.params[i].numel;
    }
    char width[32] = "";
    if (c->model.width_mult != 1.0f) snprintf(width, sizeof width, " x%g", (double)c->model.width_mult);
    md_log(MD_LOG_INFO, "model: ResNet-%d%s%s-FPN, %.2f M parameters, %.2f M trained (backbone stages trained: %d of 5, %s); %s",
           c->model.depth, c->model.vd ? "-vd" : "", width, np / 1e6, nt / 1e6, c->model.trainable_layers,
           c->model.norm == MD_NORM_BN ? "BatchNorm trained" : "BatchNorm frozen",
           c->model.weights[0] ? c->model.weights : "from scratch");
    char decay[200] = "constant after it";
    if (sc->num_steps) snprintf(decay, sizeof decay, "x%g at", (double)sc->gamma);
    for (int i = 0; i < sc->num_steps; i++)
        snprintf(decay + strlen(decay), sizeof decay - strlen(decay), "%s %d", i ? "," : "", sc->steps[i]);
    int per_epoch = c->data.skip_empty ? with_boxes : t->train.num_images;
    md_log(MD_LOG_INFO, "schedule: %d iterations x %d images = %.2f epochs of %d images; lr %g after %d warm-up iterations from %gx, %s",
           sc->max_iter, sc->ims_per_batch, per_epoch ? (double)sc->max_iter * sc->ims_per_batch / per_epoch : 0.0, per_epoch,
           (double)sc->base_lr, sc->warmup_iters, (double)sc->warmup_factor, decay);
}

/* Rank 0: checks --resume, creates runs/<name>/, loads the checkpoint to resume from, writes config.cfg and
 * opens metrics.jsonl. */
static md_status open_run_dir(trainer *t, const md_train_options *o) {
    const md_config *c = t->cfg;
    md_status s;
    char path[4096];
    snprintf(path, sizeof path, "%s/last.safetensors", t->run_dir);
    if (o->resume && !md_path_exists(path)) /* before creating anything */
        return md_set_error(MD_ERR_IO, "%s: nothing to resume (no checkpoint in %s; start without --resume)", path, t->run_dir);
    snprintf(path, sizeof path, "%s/checkpoints", t->run_dir);
    if ((s = md_mkdir_p(path))) return s;
    snprintf(path, sizeof path, "%s/last.safetensors", t->run_dir);
    if (o->resume) {
        if (!md_path_exists(path))
            return md_set_error(MD_ERR_IO, "%s: nothing to resume (no checkpoint in %s; start without --resume)", path, t->run_dir);
        char *txt = NULL;
        /* anchor geometry first: another count of aspect ratios would otherwise be a bare shape error, and other
           values of the same count would silently train the checkpoint's RPN head on other anchors */
        if ((s = md_checkpoint_config_text(path, &txt))) return s;
        s = md_config_check_anchors(c, txt, path);
        free(txt);
        txt = NULL;
        if (s) return md_error_prefix(s, "--resume");
        if ((s = md_checkpoint_load(path, t->ck, t->nck, &t->opt, &t->st, &txt))) return s;
        md_detector_refold(&t->det);
        char *now = md_config_to_text(c);
        if (now && txt && strcmp(now, txt))
            md_log(MD_LOG_WARN, "resuming with a configuration that differs from the checkpoint's (see %s/config.cfg)", t->run_dir);
        free(now);
        free(txt);
        if (!t->quiet) md_log(MD_LOG_INFO, "resumed from %s at iteration %lld of %d", path, t->st.iteration, c->solver.max_iter);
    } else if (md_path_exists(path)) {
        return md_set_error(MD_ERR_ARG, "%s already holds a run (%s); add --resume to continue it, or choose another run.name",
                            t->run_dir, path);
    }
    char *txt = md_config_to_text(c);
    if (!txt) return md_set_error(MD_ERR_NOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/config.cfg", t->run_dir);
    s = md_write_atomic(path, txt, strlen(txt));
    free(txt);
    if (s) return s;
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    if (o->resume && (s = truncate_metrics(path, t->st.iteration))) return s;
    t->metrics = fopen(path, o->resume ? "ab" : "wb");
    if (!t->metrics) return md_set_error(MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return MD_OK;
}

/* Several ranks: each checked its share of the images at start-up (setup); every rank takes the others'
 * unreadable images too, so that all skip the same ones and the global order stays the one-process order.
 * Rank 0 says how many. */
static md_status share_exclusions(trainer *t) {
    if (t->size == 1) return MD_OK;
    int n = t->train.num_images;
    float *mask = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!mask) fatal_mid_step(t, md_set_error(MD_ERR_NOMEM, "image check: out of memory")); /* the others wait in the sum */
    for (int i = 0; i < n; i++) mask[i] = t->exclude[i];
    md_status s = md_dist_sum_f32(mask, (size_t)n); /* each image was checked by one rank: a sum of 0s and one 1 at most */
    int nbad = 0;
    for (int i = 0; !s && i < n; i++) nbad += t->exclude[i] = mask[i] > 0.5f;
    free(mask);
    if (!s && nbad && t->rank == 0) md_log(MD_LOG_WARN, "%s: skipping %d unreadable images", t->cfg->data.train_images, nbad);
    return s;
}

/* Every rank, once rank 0's state has been broadcast: the exclusions, the arena, then the data from where
 * training stands. */
static md_status setup_data(trainer *t) {
    const md_config *c = t->cfg;
    md_status s;
    if ((s = share_exclusions(t))) return s;
    if ((s = size_arena(t))) return s;
    if ((s = md_loader_create(&t->loader, &t->train, c->data.train_images, &t->dopt, t->exclude, t->st.loader_epoch,
                              t->st.loader_position)))
        return s;
    startup_summary(t);
    return MD_OK;
}

static md_status setup(trainer *t, const md_train_options *o) {
    const md_config *c = t->cfg;
    md_status s;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", c->run.output_dir, c->run.name);
    md_threads_init(c->run.threads);
    if (c->solver.ims_per_batch % c->solver.grad_accum)
        return md_set_error(MD_ERR_ARG, "[solver] ims_per_batch (%d) must be a multiple of grad_accum (%d)", c->solver.ims_per_batch,
                            c->solver.grad_accum);
    if ((c->solver.ims_per_batch / c->solver.grad_accum) % t->size)
        return md_set_error(MD_ERR_ARG, "[solver] ims_per_batch (%d) is the global batch: %d ranks cannot share its %d images per "
                            "micro-batch evenly (grad_accum %d); use a multiple of %d images, or another rank count",
                            c->solver.ims_per_batch, t->size, c->solver.ims_per_batch / c->solver.grad_accum, c->solver.grad_accum,
                            t->size * c->solver.grad_accum);
    if (c->solver.ims_per_batch / c->solver.grad_accum > MD_MAX_BATCH)
        return md_set_error(MD_ERR_ARG, "[solver] ims_per_batch / grad_accum exceeds %d images per micro-batch", MD_MAX_BATCH);
    /* data */
    if (!c->data.train_ann[0] || !md_path_exists(c->data.train_ann)) return missing_data(c, "training annotations", "train_ann", c->data.train_ann);
    if (!c->data.train_images[0] || !md_path_exists(c->data.train_images)) return missing_data(c, "training images", "train_images", c->data.train_images);
    t->have_val = c->data.val_ann[0] != 0;
    if (t->have_val) {
        if (!md_path_exists(c->data.val_ann)) return missing_data(c, "validation annotations", "val_ann", c->data.val_ann);
        if (!c->data.val_images[0] || !md_path_exists(c->data.val_images)) return missing_data(c, "validation images", "val_images", c->data.val_images);
    }
    md_data_options_from_config(c, &t->dopt);
    t->dopt.ims_per_batch = c->solver.ims_per_batch / c->solver.grad_accum;
    t->dopt.shard_rank = t->rank;
    t->dopt.shard_count = t->size;
    md_coco_options co;
    md_data_coco_options(&t->dopt, &co);
    if ((s = md_coco_load(&t->train, c->data.train_ann, &co))) return s;
    if (t->train.num_classes != c->model.num_classes)
        return md_set_error(MD_ERR_ARG, "%s: the dataset has %d classes with background (label_map %s) but [model] num_classes = %d; set model.num_classes=%d",
                            c->data.train_ann, t->train.num_classes, c->model.label_map == MD_LABELS_COCO_ID ? "coco_id" : "contiguous",
                            c->model.num_classes, t->train.num_classes);
    if (t->have_val) {
        if ((s = md_coco_load(&t->val, c->data.val_ann, &co))) { t->have_val = 0; return s; }
        if ((s = md_coco_gt_load(c->data.val_ann, &t->val_gt))) return s;
    }
    t->exclude = calloc((size_t)(t->train.num_images ? t->train.num_images : 1), 1);
    if (!t->exclude) return md_set_error(MD_ERR_NOMEM, "out of memory");
    /* each rank checks the headers of its share of the images (share_exclusions then gives every rank the
       whole dataset's exclusions): a rank reads only its own images */
    int nbad = 0;
    if ((s = md_dataset_check_shard(&t->train, c->data.train_images, t->dopt.image_check, t->dopt.allow_16bit, t->rank, t->size,
                                    t->exclude, &nbad)))
        return s;
    if (nbad && t->size == 1) md_log(MD_LOG_WARN, "%s: skipping %d unreadable images", c->data.train_images, nbad);
    t->label_map_json = label_map_json(&t->train);
    if (!t->label_map_json) return md_set_error(MD_ERR_NOMEM, "out of memory");
    /* model */
    if ((s = md_detector_create(&t->det, c))) return s;
    t->det_ok = 1;
    if (c->model.weights[0] && !o->resume && t->rank == 0) { /* the other ranks receive rank 0's tensors */
        md_load_report rep;
        if (!md_path_exists(c->model.weights)) return missing_weights(c->model.weights);
        if ((s = md_detector_load_weights_ex(&t->det, c->model.weights, 0, c->model.weights_exclude, &rep))) return s;
        char buf[2048];
        md_load_report_format(&rep, buf, sizeof buf);
        if (!t->quiet) md_log(MD_LOG_INFO, "%s: %s", c->model.weights, buf);
    }
    /* optimizer over the trainable tensors; checkpoint over every tensor */
    int ntr = 0;
    for (int i = 0; i < t->det.num_params; i++) ntr += t->det.params[i].trainable;
    md_sgd_param *sp = calloc((size_t)(ntr ? ntr : 1), sizeof *sp);
    t->ck = calloc((size_t)t->det.num_params, sizeof *t->ck);
    if (!sp || !t->ck) { free(sp); return md_set_error(MD_ERR_NOMEM, "out of memory"); }
    int k = 0;
    for (int i = 0; i < t->det.num_params; i++) {
        md_param *p = &t->det.params[i];
        t->ck[i] = (md_ckpt_tensor){p->name, p->data, p->numel, p->ndim, {p->shape[0], p->shape[1], p->shape[2], p->shape[3]}};
        if (p->trainable) sp[k++] = (md_sgd_param){p->name, p->data, p->grad, p->numel, p->weight_decay};
    }
    t->nck = t->det.num_params;
    s = md_sgd_init(&t->opt, sp, ntr, c->solver.momentum, c->solver.weight_decay);
    free(sp);
    if (s) return s;
    t->st.best_ap = -1;
    t->st.best_iter = -1;
    if (t->rank == 0 && (s = open_run_dir(t, o))) return s;
    return MD_OK;
}

/* ---------------------------------------------------------------- the loop, one named step at a time */

/* The losses, images and time since the last log line (metrics.jsonl averages over them). */
typedef struct {
    step_losses sum;
    int n;
    long long imgs;
    double t0, c0, stall0; /* wall clock, process CPU time, loader stall at the window's start */
    double comm; /* exposed gradient-sum seconds (several ranks) */
} log_window;

/* One iteration: the micro-batches' forward/backward (gradients accumulate), clipping and the SGD step
 * at this iteration's lr; then the state a checkpoint records. L receives the mean losses. A non-finite
 * loss or gradient stops with MD_ERR_NUMERIC naming the iteration and the batch's image ids.
 * Several ranks: each loads its shard (a bad image anywhere stops every rank there, before the step's
 * collectives), the gradients are summed during the backward pass (md_dp), and at the end of the step
 * the ranks agree on a non-finite loss anywhere (every rank stops, the failing one naming its images)
 * and on a signal anywhere (t->dp_signal); L is then the sum of the ranks' shares, the batch's loss. */
static md_status train_step(trainer *t, long long it, float lr, step_losses *L, log_window *w) {
    const md_config *cfg = t->cfg;
    int accum = cfg->solver.grad_accum;
    float gscale = 1.0f / (float)accum;
    md_detector_zero_grad(&t->det);
    md_dp_step_begin(&t->dp);
    *L = (step_losses){0, 0, 0, 0};
    int64_t ids[MD_MAX_BATCH * 8];
    int nids = 0;
    md_status s = MD_OK, numeric = MD_OK; /* numeric: several ranks, a non-finite loss here, reported once all end the step */
    int elsewhere = 0; /* several ranks: stopped by another rank's non-finite loss (these images are not at fault) */
    char numeric_msg[1024] = "";
    for (int m = 0; m < accum && !s; m++) {
        const md_batch *b;
        if ((s = all_ranks(t, md_loader_next(t->loader, &b)))) break;
        for (int i = 0; i < b->n && nids < MD_MAX_BATCH * 8; i++) ids[nids++] = b->info[i].image_id;
        md_rng rng = md_rng_make(cfg->run.seed, MD_STREAM_SAMPLER);
        rng.counter = ((uint64_t)it * (uint64_t)accum + (uint64_t)m) << 32;
        step_losses ml = {0, 0, 0, 0};
        md_dp_arm(&t->dp, m == accum - 1);
        s = micro_step(t, b, &rng, gscale, &ml);
        if (s == MD_ERR_NUMERIC && t->size > 1) {
            /* the others go on through the step's collectives: so does this rank (the gradient sum starts every
               bucket in the same order whether or not its backward pass ran), then all stop together */
            if (!numeric) snprintf(numeric_msg, sizeof numeric_msg, "%s", md_last_error());
            numeric = s;
            s = MD_OK;
            continue;
        }
        if (s && t->size > 1) fatal_mid_step(t, s);
        if (s) break;
        L->obj += ml.obj / accum;
        L->rpn_box += ml.rpn_box / accum;
        L->cls += ml.cls / accum;
        L->box += ml.box / accum;
        w->imgs += (long long)b->n * t->size; /* every rank takes an equal share */
    }
    if (!s && t->size > 1) {
        if ((s = md_dp_step_end(&t->dp))) fatal_mid_step(t, s);
        w->comm += t->dp.exposed_s;
        int worst = 0, who = 0;
        double lv[4] = {L->obj, L->rpn_box, L->cls, L->box};
        if ((s = md_dist_agree(numeric ? VOTE_NUMERIC : g_stop_signal, &worst, &who)) || (s = md_dist_sum_f64(lv, 4)))
            fatal_mid_step(t, s);
        *L = (step_losses){lv[0], lv[1], lv[2], lv[3]};
        if (worst == VOTE_NUMERIC && numeric) s = md_set_error(MD_ERR_NUMERIC, "rank %d: %s", t->rank, numeric_msg);
        else if (worst == VOTE_NUMERIC) {
            s = md_set_error(MD_ERR_NUMERIC, "rank %d: stopped because rank %d had a non-finite loss (its message names the images)",
                             t->rank, who);
            elsewhere = 1;
        }
        else if (worst > 0) {
            /* every rank stops as the signalled one does and exits with its status (mpirun reports the first
               non-zero status of a rank, srun the largest) */
            t->dp_signal = worst;
            g_stop_signal = worst;
        }
    }
    if (!s) {
        double gnorm = md_clip_grad_norm(&t->opt, cfg->solver.clip_grad_norm);
        if (!isfinite(gnorm)) s = md_set_error(MD_ERR_NUMERIC, "non-finite gradient norm");
    }
    if (s == MD_ERR_NUMERIC) {
        char lastgood[4096], idbuf[512], why[1024];
        snprintf(lastgood, sizeof lastgood, "%.2047s/last.safetensors", t->run_dir); /* run_dir is 2048 bytes */
        size_t off = 0;
        for (int i = 0; i < nids && off < sizeof idbuf; i++) off += (size_t)snprintf(idbuf + off, sizeof idbuf - off, "%s%lld", i ? ", " : "", (long long)ids[i]);
        snprintf(why, sizeof why, "%s", md_last_error());
        md_set_error(MD_ERR_NUMERIC, "iteration %lld: %s%s%s; training stopped%s%s", it + 1, why, elsewhere ? "" : " on image ids ",
                     elsewhere ? "" : idbuf,
                     md_path_exists(lastgood) ? "; last good checkpoint: " : " (no checkpoint was written yet)",
                     md_path_exists(lastgood) ? lastgood : "");
    }
    if (s) return s;
    md_sgd_step(&t->opt, lr);
    t->st.iteration = it + 1;
    md_loader_tell(t->loader, &t->st.loader_epoch, &t->st.loader_position);
    t->st.rng_seed = cfg->run.seed;
    t->st.rng_stream = MD_STREAM_SAMPLER;
    t->st.rng_counter = ((uint64_t)(it + 1) * (uint64_t)accum) << 32;
    return MD_OK;
}

/* A metrics.jsonl "train" line (and the progress line) over the window, which then starts again. */
static void log_window_flush(trainer *t, long long it, float lr, log_window *w) {
    const md_solver_config *sc = &t->cfg->solver;
    double dt = md_now() - w->t0, stall = md_loader_stall_seconds(t->loader);
    double spi = dt / w->n, ips = w->imgs / (dt > 0 ? dt : 1e-9), cpi = (md_cpu_seconds() - w->c0) / w->n;
    double lo = w->sum.obj / w->n, lr_ = w->sum.rpn_box / w->n, lc = w->sum.cls / w->n, lb = w->sum.box / w->n;
    double tot = lo + lr_ + lc + lb, rss = md_peak_rss_mb(), comm = w->comm / w->n;
    if (t->metrics) { /* rank 0 */
        fprintf(t->metrics,
                "{\"type\":\"train\",\"iter\":%lld,\"lr\":%.9g,\"loss_total\":%.9g,\"loss_objectness\":%.9g,\"loss_rpn_box_reg\":%.9g,"
                "\"loss_classifier\":%.9g,\"loss_box_reg\":%.9g,\"sec_per_iter\":%.6g,\"img_per_sec\":%.6g,\"rss_mb\":%.1f,"
                "\"data_wait_s\":%.6g,\"ranks\":%d,\"comm_exposed_s\":%.6g,\"cpu_s_per_iter\":%.6g}\n",
                it + 1, lr, tot, lo, lr_, lc, lb, spi, ips, rss, stall - w->stall0, t->size, comm, cpi);
        fflush(t->metrics);
    }
    if (!t->quiet) {
        char eta[32], dp[64] = "";
        fmt_eta(eta, sizeof eta, spi * (double)(sc->max_iter - it - 1));
        if (t->size > 1) snprintf(dp, sizeof dp, "  %d ranks, comm %.3f s/iter", t->size, comm);
        fprintf(stderr, "%siter %lld/%d  %.1f%%  eta %s  lr %.3g  loss %.4f (obj %.4f rpn %.4f cls %.4f box %.4f)  %.2f img/s  %.0f MB%s%s",
                t->tty ? "\r" : "", it + 1, sc->max_iter, 100.0 * (it + 1) / sc->max_iter, eta, lr, tot, lo, lr_, lc, lb, ips,
                rss, dp, t->tty ? "\033[K" : "\n");
        fflush(stderr);
    }
    *w = (log_window){{0, 0, 0, 0}, 0, 0, md_now(), md_cpu_seconds(), stall, 0};
}

/* Evaluates on the val split, appends the metrics.jsonl "eval" line and keeps the best AP. */
static md_status eval_and_record(trainer *t, long long iter, md_cocoeval_result *r, const char *save_dets) {
    md_status s = evaluate(t, r, save_dets);
    if (s) return s;
    metrics_eval_line(t, iter, r);
    if (r->stats[0] > t->st.best_ap) {
        t->st.best_ap = r->stats[0];
        t->st.best_iter = iter;
    }
    return MD_OK;
}

/* [solver] eval_every: the periodic evaluation (the final one is final_eval). */
static md_status maybe_eval(trainer *t, long long it, int last) {
    int every = t->cfg->solver.eval_every;
    if (last || every <= 0 || (it + 1) % every != 0 || !t->have_val) return MD_OK;
    md_cocoeval_result r;
    md_status s = md_dp_average_bn(&t->dp); /* norm = bn: the ranks' running statistics averaged before use */
    if (!s) s = eval_and_record(t, it + 1, &r, NULL);
    if (s) return s;
    if (!t->quiet) {
        if (t->tty) fputc('\n', stderr);
        /* x100, as the papers and ./eval's tables (metrics.jsonl and eval.json keep pycocotools' fractions) */
        md_log(MD_LOG_INFO, "eval at iteration %lld: AP %.1f AP50 %.1f (x100; best AP %.1f at %lld)", it + 1, 100 * r.stats[0],
               100 * r.stats[1], 100 * t->st.best_ap, t->st.best_iter);
    }
    md_cocoeval_result_free(&r);
    return MD_OK;
}

/* The last checkpoint, the one of an interrupted run, and every [solver] checkpoint_every. */
static md_status maybe_checkpoint(trainer *t, long long it, int last, int interrupted) {
    int every = t->cfg->solver.checkpoint_every;
    if (!(last || interrupted || (every > 0 && (it + 1) % every == 0))) return MD_OK;
    md_status s = md_dp_average_bn(&t->dp); /* norm = bn: the ranks' running statistics averaged before saving */
    if (s) return s;
    return all_ranks(t, t->rank == 0 ? save_checkpoint(t) : MD_OK); /* rank 0 writes; a failed save stops every rank */
}

/* After the last iteration: evaluation, its metrics line and eval.json. */
static md_status final_eval(trainer *t) {
    md_cocoeval_result r;
    char dets_path[8192];
    snprintf(dets_path, sizeof dets_path, "%s/detections.json", t->run_dir);
    md_status s = eval_and_record(t, t->st.iteration, &r, dets_path);
    if (s) return s;
    double ips = t->st.train_time_s > 0 ? (double)(t->st.iteration * t->cfg->solver.ims_per_batch) / t->st.train_time_s : 0;
    s = all_ranks(t, t->rank == 0 ? write_eval_json(t, t->st.iteration, &r, t->st.train_time_s, ips) : MD_OK);
    if (!t->quiet)
        md_log(MD_LOG_INFO, "final eval at iteration %lld: AP %.1f AP50 %.1f AP75 %.1f (x100)", t->st.iteration, 100 * r.stats[0],
               100 * r.stats[1], 100 * r.stats[2]);
    md_cocoeval_result_free(&r);
    return s;
}

md_status md_train(const md_config *cfg, const md_train_options *o, char *run_dir_out, size_t n) {
    trainer T;
    memset(&T, 0, sizeof T);
    trainer *t = &T;
    t->cfg = cfg;
    t->rank = md_dist_rank();
    t->size = md_dist_size();
    t->quiet = o->quiet || t->rank != 0; /* rank 0 speaks for the job */
    t->tty = o->progress_tty < 0 ? isatty(STDERR_FILENO) : o->progress_tty;
    md_status s = all_ranks(t, setup(t, o));
    if (run_dir_out) snprintf(run_dir_out, n, "%s", t->run_dir);
    /* rank 0's weights, momentum and state (initial weights or the checkpoint resumed from) to every rank */
    if (!s) s = all_ranks(t, md_dp_init(&t->dp, &t->det, (size_t)DP_BUCKET_MB << 18));
    if (!s) s = md_dp_broadcast_state(&t->dp, &t->opt, &t->st);
    if (!s) s = all_ranks(t, setup_data(t));
    if (s) { trainer_free(t); return s; }
    const md_solver_config *sc = &cfg->solver;
    if (o->handle_signals) {
        g_stop_signal = 0;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    long long start = t->st.iteration;
    double t_start = md_now(), time_before = t->st.train_time_s;
    log_window w = {{0, 0, 0, 0}, 0, 0, md_now(), md_cpu_seconds(), md_loader_stall_seconds(t->loader), 0};
    md_status stop = MD_OK;
    for (long long it = start; it < sc->max_iter; it++) {
        float lr = md_lr_at(sc, it);
        step_losses L;
        if ((s = train_step(t, it, lr, &L, &w))) break;
        t->st.train_time_s = time_before + (md_now() - t_start);
        w.sum.obj += L.obj; w.sum.rpn_box += L.rpn_box; w.sum.cls += L.cls; w.sum.box += L.box;
        w.n++;
        int last = it + 1 == sc->max_iter;
        int interrupted = (t->size > 1 ? t->dp_signal : g_stop_signal) || (o->stop_after > 0 && it + 1 - start >= o->stop_after);
        if ((it + 1) % cfg->run.log_every == 0 || last || interrupted) log_window_flush(t, it, lr, &w);
        if ((s = maybe_checkpoint(t, it, last, interrupted))) break;
        if ((s = maybe_eval(t, it, last))) break;
        if (interrupted && !last) {
            stop = md_set_error(MD_ERR_INTERRUPTED, "interrupted at iteration %lld; checkpoint saved to %.2047s/last.safetensors", it + 1,
                                t->run_dir);
            break;
        }
    }
    if (t->tty && !t->quiet && start < sc->max_iter) fputc('\n', stderr);
    /* --resume of a finished run: its final evaluation is done once (eval.json), not appended again */
    char evpath[4096];
    snprintf(evpath, sizeof evpath, "%.2047s/eval.json", t->run_dir);
    int finished_before = start >= sc->max_iter && (!t->have_val || md_path_exists(evpath));
    if (finished_before && !t->quiet)
        md_log(MD_LOG_INFO, "%s already finished (iteration %lld of %d): nothing to do", t->run_dir, start, sc->max_iter);
    if (!s && !stop && t->have_val && !finished_before) s = final_eval(t);
    if (o->handle_signals) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
    }
    trainer_free(t);
    return s ? s : stop;
}
