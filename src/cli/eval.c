/* eval.c — `./eval`: COCO evaluation (docs/DESIGN.md, "Command line"). Three modes, one function each:
 *   ./eval --ann GT.json --results DETS.json [--json OUT.json] [--errors [--errors-iou T]]   eval_results()
 *   ./eval --weights W.safetensors [--config C.cfg] [...]          eval_weights() -> md_eval_weights() (evaluate.h)
 *   ./eval RUN_DIR [RUN_DIR ...] [--out DIR]                       eval_runs() -> md_compare_run() (compare.h)
 * Common options: --threads N (default: all cores), --quiet. This file only parses arguments. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/cocoeval.h"
#include "minidet/compare.h"
#include "minidet/dist.h"
#include "minidet/error.h"
#include "minidet/evaluate.h"
#include "minidet/log.h"
#include "minidet/threads.h"
#include "minidet/tide.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ./eval --ann GT.json --results DETS.json [--json OUT.json] [--errors [--errors-iou T]]\n"
               "       ./eval --weights W.safetensors [--config C.cfg] [--ann GT --images DIR] [--out R.json] [--out-dir DIR]\n"
               "              [--strict 0|1] [--max-images N] [--vis N [--vis-score S]] [section.key=value ...]\n"
               "       ./eval RUN_DIR [RUN_DIR ...] [--out DIR] [--vis N [--vis-score S]]   (comparison report; DIR default: the\n"
               "              first run's parent, created if missing)\n"
               "              [--baseline RUN] [--bootstrap B]: runs that differ only in run.name and run.seed (threads,\n"
               "              loader and log settings aside) are seeds of one group: mean +- sd, and against the baseline\n"
               "              group (default: smooth_l1) the AP difference\n"
               "              with a 95%% paired-bootstrap interval over the val images (B resamples, default 2000) and\n"
               "              TIDE's errors at IoU .50 and .75\n"
               "options: --threads N (default: all cores), --quiet\n"
               "  The first form prints pycocotools' 12-line bbox summary and, with --json, writes\n"
               "  {\"stats\": [12 numbers], \"per_category_ap\": {\"<category_id>\": ap}} (-1: no ground truth).\n"
               "  --errors adds TIDE's error analysis at IoU T (default 0.5; tidecv 1.0.1's numbers, docs/TIDE.md):\n"
               "  the dAP of Cls, Loc, Both, Dupe, Bkg, Miss and of FalsePos, FalseNeg, in percent; with --json\n"
               "  also as \"errors\": {\"pos_threshold\", \"background_threshold\", \"ap\", \"main\", \"special\", ...}.\n"
               "  --weights uses the configuration a minidet checkpoint stores; --config C.cfg replaces it (and is\n"
               "  needed for weights without one).\n"
               "  --weights --vis N draws the detections (score >= S, default 0.3, at most 30 per image, with\n"
               "  category names) of the first N images into OUT_DIR/vis_<image id>.png, linked from report.md.\n"
               "  RUN_DIR ... --vis N draws N val images: the ground truth, then each run's detections (score >= S).\n");
}

typedef struct {
    const char *ann, *results, *json, *weights, *config, *images, *out, *vis, *vis_score, *baseline, *bootstrap;
    int threads, errors;
    double errors_iou;
    int n_pos;
    char **pos; /* RUN_DIRs and `section.key=value` overrides, in order */
} eval_args;

/* Pure evaluation of an existing results file. */
static int eval_results(const eval_args *a) {
    md_coco_gt *gt = NULL;
    md_coco_dets *dt = NULL;
    md_cocoeval_result r;
    double t0 = md_now();
    if (md_coco_load_pair(a->ann, a->results, &gt, &dt) != MD_OK) md_die();
    double t2 = md_now();
    if (md_cocoeval_run(gt, dt, &r) != MD_OK) md_die();
    double t3 = md_now();
    md_cocoeval_print_summary(&r, stdout);
    char errors[2200] = "";
    if (a->errors) {
        md_tide_opts o = MD_TIDE_OPTS_DEFAULT;
        o.pos_thr = a->errors_iou;
        md_tide_result t;
        if (md_tide_run(gt, dt, &o, &t) != MD_OK) md_die();
        printf("\nTIDE error analysis (dAP: AP points gained by fixing every error of the type)\n");
        md_tide_print(&t, stdout);
        int n = snprintf(errors, sizeof errors, "\"errors\": ");
        md_tide_json(&t, errors + n, sizeof errors - (size_t)n);
    }
    fflush(stdout);
    if (a->json && md_cocoeval_write_json_with(&r, a->errors ? errors : NULL, a->json) != MD_OK) md_die();
    md_log(MD_LOG_INFO, "%d images, %d categories, %d ground-truth boxes, %zu detections: "
                        "load both files %.3f s, evaluate %.3f s (%d threads)",
           gt->n_img, gt->n_cat, gt->n_ann, dt->n, t2 - t0, t3 - t2, md_threads_get());
    md_cocoeval_result_free(&r);
    md_coco_dets_free(dt);
    md_coco_gt_free(gt);
    return 0;
}

/* Compares training runs: the report lives in the library (compare.h); --out DIR is where it goes. */
static int eval_runs(const eval_args *a) {
    md_compare_options o = {.dirs = (const char *const *)a->pos, .n = a->n_pos, .out_dir = a->out, .vis_score = MD_VIS_SCORE_DEFAULT};
    if (a->n_pos > MD_COMPARE_MAX_RUNS) { fprintf(stderr, "minidet: at most %d runs can be compared at once\n", MD_COMPARE_MAX_RUNS); return 2; }
    for (int i = 0; i < a->n_pos; i++)
        if (a->pos[i][0] == '-') {
            fprintf(stderr, "minidet: unknown option '%s' for a run comparison (usage: ./eval RUN_DIR [RUN_DIR ...] [--out DIR])\n", a->pos[i]);
            return 2;
        }
    if (a->vis) {
        char *end;
        o.vis = (int)strtol(a->vis, &end, 10);
        if (*end || o.vis < 1 || o.vis > 64) { fprintf(stderr, "minidet: --vis needs a number of images (1..64)\n"); return 2; }
    }
    if (a->vis_score) {
        char *end;
        double x = strtod(a->vis_score, &end);
        if (!*a->vis_score || *end || !(x >= 0 && x <= 1)) {
            fprintf(stderr, "minidet: --vis-score: '%s' is not a score in [0, 1]\n", a->vis_score);
            return 2;
        }
        o.vis_score = (float)x;
    }
    o.baseline = a->baseline;
    if (a->bootstrap) {
        char *end;
        long b = strtol(a->bootstrap, &end, 10);
        if (*end || !*a->bootstrap || b < 0 || b > 1000000) { fprintf(stderr, "minidet: --bootstrap needs a number of resamples (0..1000000)\n"); return 2; }
        o.bootstrap = b ? (int)b : -1;
    }
    if (md_compare_run(&o)) {
        fprintf(stderr, "minidet: %s\n", md_last_error());
        return 1;
    }
    return 0;
}

/* `./eval --weights ...`: its own options (see usage); anything else is an error naming it. */
static md_status parse_weights(int argc, char **argv, md_eval_weights_options *a, char **over) {
    md_eval_weights_options_default(a);
    a->overrides = over;
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (!strcmp(o, "--weights")) dst = &a->weights;
        else if (!strcmp(o, "--config")) dst = &a->config;
        else if (!strcmp(o, "--ann")) dst = &a->ann;
        else if (!strcmp(o, "--images")) dst = &a->images;
        else if (!strcmp(o, "--out")) dst = &a->out;
        else if (!strcmp(o, "--out-dir")) dst = &a->out_dir;
        if (dst) {
            if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
            *dst = argv[++i];
            continue;
        }
        if (!strcmp(o, "--quiet")) {
            md_log_set_level(MD_LOG_WARN);
        } else if (!strcmp(o, "--vis") || !strcmp(o, "--vis-score")) {
            if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
            const char *v = argv[++i];
            char *end;
            errno = 0;
            if (!strcmp(o, "--vis")) {
                long n = strtol(v, &end, 10);
                if (!*v || *end || errno || n < 0 || n > MD_VIS_MAX_IMAGES)
                    return md_set_error(MD_ERR_ARG, "--vis: '%s' is not a number of images (0..%d)", v, MD_VIS_MAX_IMAGES);
                a->vis = (int)n;
            } else {
                double x = strtod(v, &end);
                if (!*v || *end || errno || !(x >= 0 && x <= 1))
                    return md_set_error(MD_ERR_ARG, "--vis-score: '%s' is not a score in [0, 1]", v);
                a->vis_score = (float)x;
            }
        } else if (!strcmp(o, "--strict") || !strncmp(o, "--strict=", 9) || !strcmp(o, "--max-images") ||
                   !strcmp(o, "--threads")) {
            const char *v = o[8] == '=' ? o + 9 : NULL;
            if (!v) {
                if (i + 1 >= argc) return md_set_error(MD_ERR_ARG, "option %s needs a value", o);
                v = argv[++i];
            }
            if (!strncmp(o, "--strict", 8)) {
                if (!strcmp(v, "1") || !strcmp(v, "true")) a->strict = 1;
                else if (!strcmp(v, "0") || !strcmp(v, "false")) a->strict = 0;
                else return md_set_error(MD_ERR_ARG, "--strict: '%s' is not 0/1/true/false", v);
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                if (!*v || *end || n < 0 || n > 100000000) return md_set_error(MD_ERR_ARG, "%s: '%s' is not a count", o, v);
                if (!strcmp(o, "--threads")) a->threads = (int)n;
                else a->max_images = (int)n;
            }
        } else if (o[0] == '-' && o[1] == '-') {
            return md_set_error(MD_ERR_ARG, "unknown option %s (see ./eval --help)", o);
        } else if (strchr(o, '=') && strchr(o, '.')) {
            over[n_over++] = argv[i];
        } else {
            return md_set_error(MD_ERR_ARG, "unexpected argument '%s' (overrides look like section.key=value)", o);
        }
    }
    a->n_overrides = n_over;
    if (!a->weights) return md_set_error(MD_ERR_ARG, "--weights is required");
    return MD_OK;
}

/* Under mpirun (make MPI=1) the ranks share the batches, rank 0 scores and writes, the others stay quiet. */
static int eval_weights(int argc, char **argv) {
    if (md_dist_init(&argc, &argv)) md_die();
    if (md_dist_rank() != 0) md_log_set_level(MD_LOG_WARN);
    md_eval_weights_options o;
    char **over = calloc((size_t)argc + 1, sizeof(char *));
    md_status s = over ? parse_weights(argc, argv, &o, over) : md_set_error(MD_ERR_NOMEM, "out of memory");
    if (!s) s = md_eval_weights(&o);
    free(over);
    if (s) { /* exits without MPI_Finalize: mpirun then ends the other ranks */
        if (md_dist_size() > 1) fprintf(stderr, "minidet: rank %d: %s\n", md_dist_rank(), md_last_error());
        else fprintf(stderr, "minidet: %s\n", md_last_error());
        return 1;
    }
    md_dist_finalize();
    return 0;
}

static const char *need_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        md_set_error(MD_ERR_ARG, "option %s needs a value", argv[*i]);
        md_die();
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* --weights mode has its own options */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--weights")) return eval_weights(argc, argv);

    eval_args a;
    memset(&a, 0, sizeof a);
    a.errors_iou = 0.5;
    a.pos = calloc((size_t)argc, sizeof(char *));
    if (!a.pos) { md_set_error(MD_ERR_NOMEM, "out of memory"); md_die(); }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--ann")) a.ann = need_value(argc, argv, &i);
        else if (!strcmp(o, "--results")) a.results = need_value(argc, argv, &i);
        else if (!strcmp(o, "--json")) a.json = need_value(argc, argv, &i);
        else if (!strcmp(o, "--weights")) a.weights = need_value(argc, argv, &i);
        else if (!strcmp(o, "--config")) a.config = need_value(argc, argv, &i);
        else if (!strcmp(o, "--images")) a.images = need_value(argc, argv, &i);
        else if (!strcmp(o, "--out")) a.out = need_value(argc, argv, &i);
        else if (!strcmp(o, "--vis")) a.vis = need_value(argc, argv, &i);
        else if (!strcmp(o, "--vis-score")) a.vis_score = need_value(argc, argv, &i);
        else if (!strcmp(o, "--baseline")) a.baseline = need_value(argc, argv, &i);
        else if (!strcmp(o, "--bootstrap")) a.bootstrap = need_value(argc, argv, &i);
        else if (!strcmp(o, "--errors")) a.errors = 1;
        else if (!strcmp(o, "--errors-iou")) {
            const char *v = need_value(argc, argv, &i);
            char *end;
            a.errors_iou = strtod(v, &end);
            if (*v == 0 || *end || !(a.errors_iou > 0.1 && a.errors_iou <= 1)) {
                md_set_error(MD_ERR_ARG, "--errors-iou: '%s' is not an IoU threshold in (0.1, 1]", v);
                md_die();
            }
            a.errors = 1;
        } else if (!strcmp(o, "--quiet")) md_log_set_level(MD_LOG_WARN);
        else if (!strcmp(o, "--threads")) {
            const char *v = need_value(argc, argv, &i);
            char *end;
            long n = strtol(v, &end, 10);
            if (*v == 0 || *end || n < 0 || n > 4096) {
                md_set_error(MD_ERR_ARG, "--threads: '%s' is not a thread count", v);
                md_die();
            }
            a.threads = (int)n;
        } else if (o[0] == '-' && o[1] == '-') {
            md_set_error(MD_ERR_ARG, "unknown option %s (see ./eval --help)", o);
            md_die();
        } else a.pos[a.n_pos++] = argv[i];
    }
    md_threads_init(a.threads);
    int rc;
    if (a.results || (a.ann && !a.n_pos)) {
        if (!a.ann || !a.results) {
            md_set_error(MD_ERR_ARG, "%s is missing: ./eval --ann GT.json --results DETS.json [--json OUT.json]", a.ann ? "--results" : "--ann");
            md_die();
        }
        if (a.n_pos) {
            md_set_error(MD_ERR_ARG, "%s: unexpected argument with --ann/--results", a.pos[0]);
            md_die();
        }
        rc = eval_results(&a);
    } else if (a.errors) {
        md_set_error(MD_ERR_ARG, "--errors needs --ann GT.json --results DETS.json");
        md_die();
    } else if (a.n_pos) rc = eval_runs(&a);
    else {
        usage(stderr);
        rc = 2;
    }
    free(a.pos);
    return rc;
}
