/* compare.h — the loss-comparison report: `./eval RUN_DIR [RUN_DIR ...]`.
 *
 * This is what a user looks at after training the same detector with several
 * box-regression losses. For each run directory (docs/FORMATS.md: config.cfg,
 * metrics.jsonl, eval.json written by ./train) it reads the final evaluation
 * (eval.json), the training log (metrics.jsonl: loss curves, periodic evals,
 * throughput) and the resolved config (the loss, when eval.json lacks it), and
 * produces ONE comparison:
 *   - a table on stdout: run, loss, AP, AP50, AP75, APs, APm, APl, AR100 (COCO
 *     stats 0,1,2,3,4,5,8, shown x100 with one decimal), iterations, train
 *     time, img/s; the best value of each column marked with '*' (highest AP /
 *     AR / img/s, lowest train time; ties on the shown value are all marked,
 *     nothing is marked where every run shows the same value);
 *   - per-category AP per run, and AP at each IoU threshold .50 .. .95 per run;
 *   - files in the output directory (--out DIR, default: the parent directory
 *     of the first run): compare.md, compare.json (full-precision values),
 *     compare_loss.{png,svg} (loss_total vs iteration), compare_ap_iter.{png,svg}
 *     (AP vs iteration from the periodic evals and the final one),
 *     compare_ap_iou.{png,svg} (AP vs IoU threshold), compare_pr50.{png,svg} and
 *     compare_pr75.{png,svg} (precision-recall at IoU .50 / .75), index.html;
 *   - with --vis N, compare_vis.png: N val images, ground truth beside each run's detections;
 *   - seeds (md_compare_groups below): runs whose resolved configs differ only in run.name and
 *     run.seed form a group; a group table (seeds, mean +- sd of every column), each group's AP /
 *     AP50 / AP75 difference to the baseline group with a 95 % paired-bootstrap interval over the
 *     val images and a verdict, TIDE's dAPs at IoU .50 and .75 (compare_errors.png / .svg, grouped
 *     bars), AP vs IoU as the mean over seeds with a +- 1 sd band; compare.json "groups".
 * All values come from the runs' files as written; nothing is recomputed
 * differently. A run without eval.json but with last.safetensors and
 * config.cfg is first evaluated on its val split by md_eval_weights()
 * (evaluate.h: as `./eval --weights ... --out-dir RUN_DIR`, it writes the run's eval.json).
 * A run with neither, a malformed eval.json or
 * metrics.jsonl line is an error naming the run, the file, the line and the field. */
#ifndef MINIDET_COMPARE_H
#define MINIDET_COMPARE_H
#include <stdint.h>
#include <stdio.h>
#include "minidet/error.h"

#define MD_COMPARE_MAX_RUNS 64 /* e.g. 5 losses x 5 seeds fit; plots colour runs by group */

/* Everything the report uses from one run directory. */
typedef struct {
    char *dir;               /* as given */
    char *name;              /* last path component of dir */
    char *loss;              /* eval.json "loss", else config.cfg [roi_heads] box_loss, else "?" */
    long iter;               /* eval.json "iter" (-1 = unknown) */
    double train_time_s;     /* eval.json "train_time_s"; NAN if absent */
    double img_per_sec;      /* eval.json "img_per_sec", else the mean of metrics.jsonl's; NAN if none */
    double stats[12];        /* eval.json "stats" (pycocotools summarize order; -1 = undefined) */
    int has_ap_per_iou;
    double ap_per_iou[10];   /* eval.json "ap_per_iou" (AP at IoU .50, .55, ..., .95) */
    int has_pr;
    double pr50[101], pr75[101]; /* eval.json "pr" "0.50" / "0.75" (precision at recall 0, .01, ..., 1) */
    int n_cat;
    int64_t *cat_ids;        /* [n_cat] from "per_category_ap", ascending */
    double *cat_ap;          /* [n_cat] (-1 = no ground truth) */
    char **cat_names;        /* [n_cat] from "category_names" (empty string when absent) */
    int n_train;             /* metrics.jsonl training lines */
    double *train_iter, *train_loss; /* [n_train] iter, loss_total */
    int n_eval;              /* metrics.jsonl evaluation lines */
    double *eval_iter, *eval_ap;     /* [n_eval] iter, stats[0] */
    int has_metrics;         /* metrics.jsonl was present */
    long seed;               /* config.cfg [run] seed (-1 without config.cfg) */
    char *group_key;         /* config.cfg fully resolved with run.name and run.seed blanked (NULL without it):
                              * runs with equal keys are seeds of one experiment */
    char *val_ann;           /* config.cfg [data] val_ann (NULL without it) */
    char *dets_path;         /* RUN/detections.json of the final evaluation (NULL when absent) */
} md_run_summary;

/* Reads run directory dir. eval.json is required; metrics.jsonl and
 * config.cfg are optional (their absence leaves curves empty / loss from
 * eval.json) but must be well-formed when present. */
md_status md_run_summary_load(const char *dir, md_run_summary *out);
void md_run_summary_free(md_run_summary *r);

/* The columns of the comparison table, in order. */
enum { MD_CMP_AP, MD_CMP_AP50, MD_CMP_AP75, MD_CMP_APS, MD_CMP_APM, MD_CMP_APL, MD_CMP_AR100,
       MD_CMP_ITERS, MD_CMP_TIME, MD_CMP_IMGS, MD_CMP_NCOL };
/* Column name ("AP", "AP50", ..., "iters", "train time", "img/s"). */
const char *md_compare_column_name(int col);
/* Value of column col for run r (AP columns as fractions, as in eval.json; NAN if undefined). */
double md_compare_value(const md_run_summary *r, int col);
/* best[i] = 1 for the runs holding the best shown value of column col (AP/AR columns only: iterations
 * and timings are not ranked, runs that shared a machine or ran on different ones were not timed alike). */
void md_compare_best(const md_run_summary *runs, int n, int col, int *best);

/* Prints the tables to out (may be NULL) and writes the report files into out_dir (which must exist);
 * vis_png (may be NULL): a picture in out_dir that compare.md and index.html show (compare_vis.png). */
md_status md_compare_report(const md_run_summary *runs, int n, const char *out_dir, const char *vis_png, FILE *out);

/* Seeds: runs whose resolved configs differ only in run.name and run.seed form a group (in the order
 * of their first run); the comparison reports each group's mean and standard deviation, and, when
 * every run kept its detections (detections.json) on the same val split:
 *   - the paired bootstrap over val images (bootstrap.h) of each group against a baseline group: the
 *     mean over seeds of AP (AP50, AP75) minus the baseline's, with a 95 % percentile interval;
 *   - TIDE's errors (tide.h) at IoU .50 and .75, averaged over the seeds. */
typedef struct {
    int bootstrap;          /* resamples (default 2000; 0 = no intervals) */
    uint64_t seed;          /* of the resamples (default 1) */
    const char *baseline;   /* a run (name or directory) of the baseline group; NULL = the first group
                             * whose loss is smooth_l1, else the first group */
} md_compare_opts;
#define MD_COMPARE_OPTS_DEFAULT {2000, 1, NULL}

typedef struct {
    char *name;             /* the first run's name without a trailing _s<N> / _seed<N> */
    const char *loss;
    int n;                  /* seeds */
    int *runs;              /* [n] indices into the runs */
    double mean[MD_CMP_NCOL], sd[MD_CMP_NCOL]; /* over the seeds (sd: n - 1 in the denominator; NAN for n = 1) */
    int has_ap_per_iou;
    double ap_iou_mean[10], ap_iou_sd[10];
    int has_delta;          /* vs the baseline group: AP, AP50, AP75 (fractions) */
    double delta[3], ci_lo[3], ci_hi[3];
    int has_errors;         /* TIDE at IoU .50 ([0]) and .75 ([1]), mean over the seeds, percent */
    double tide_ap[2], err_main[2][6], err_special[2][2];
} md_run_group;

/* Groups the runs and computes what md_run_group holds (*base: index of the baseline group). */
md_status md_compare_groups(const md_run_summary *runs, int n, const md_compare_opts *o, md_run_group **groups, int *n_groups,
                            int *base);
void md_compare_groups_free(md_run_group *g, int n);
/* "better" (interval above 0), "worse" (below 0) or "no clear difference" for AP column c (0..2). */
const char *md_compare_verdict(const md_run_group *g, int c);

/* md_compare_report with the seed options (md_compare_report: MD_COMPARE_OPTS_DEFAULT). */
md_status md_compare_report_ex(const md_run_summary *runs, int n, const md_compare_opts *o, const char *out_dir, const char *vis_png,
                               FILE *out);

/* Side-by-side detections (`--vis N`): the first n_images images of the first
 * run's val split ([data] val_ann / val_images of its config.cfg), one row per
 * image: the ground truth, then each run's detections (score >= score_min) by
 * its detector (config.cfg + last.safetensors), boxes coloured by category.
 * Writes one RGB PNG to path. */
md_status md_compare_vis(const md_run_summary *runs, int n, int n_images, float score_min, const char *path);

/* `./eval RUN_DIR [RUN_DIR ...] [--out DIR] [--vis N]` as options (the CLI parses argv into them). */
typedef struct {
    const char *const *dirs; /* the run directories, 1..MD_COMPARE_MAX_RUNS */
    int n;
    const char *out_dir;     /* NULL: the parent directory of the first run; created if missing */
    int vis;                 /* > 0: compare_vis.png of this many val images (1..64), linked from the report */
    float vis_score;         /* lowest detection score drawn (MD_VIS_SCORE_DEFAULT, as ./eval --weights --vis) */
    const char *baseline;    /* --baseline RUN (NULL: the smooth_l1 group, else the first) */
    int bootstrap;           /* --bootstrap B (0: the default, 2000; < 0: no intervals) */
} md_compare_options;

/* Evaluates runs that lack eval.json (md_eval_weights), loads the runs, prints the tables to stdout
 * and writes the report (with vis, compare_vis.png too). */
md_status md_compare_run(const md_compare_options *o);

#endif
