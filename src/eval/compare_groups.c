/* compare_groups.c — seeds of one experiment as a group: mean and spread, the paired bootstrap of
 * each group against the baseline and TIDE's errors (see compare.h). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/bootstrap.h"
#include "minidet/compare.h"
#include "minidet/log.h"
#include "minidet/tide.h"

/* "shapes_giou_s2" -> "shapes_giou" (also _seed2, -s2, -seed2). */
static char *strip_seed(const char *name) {
    size_t n = strlen(name), e = n;
    while (e > 0 && name[e - 1] >= '0' && name[e - 1] <= '9') e--;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, name, n + 1);
    if (e == n) return d;
    static const char *suf[] = {"_seed", "-seed", "_s", "-s"};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(suf[i]);
        if (e > l && !strncmp(name + e - l, suf[i], l)) {
            d[e - l] = 0;
            break;
        }
    }
    return d;
}

void md_compare_groups_free(md_run_group *g, int n) {
    if (!g) return;
    for (int i = 0; i < n; i++) {
        free(g[i].name);
        free(g[i].runs);
    }
    free(g);
}

const char *md_compare_verdict(const md_run_group *g, int c) {
    if (!g->has_delta) return "-";
    if (g->ci_lo[c] > 0) return "better";
    if (g->ci_hi[c] < 0) return "worse";
    return "no clear difference";
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) { s += v[i]; m++; }
    *mean = m ? s / m : NAN;
    double q = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = m > 1 ? sqrt(q / (m - 1)) : NAN;
}

/* Matches and TIDE of every run on their shared val split; 0 when something is missing (said in the log). */
static md_status matches_and_errors(const md_run_summary *runs, int n, md_run_group *g, int ng, md_coco_matches *m, int *ok) {
    *ok = 0;
    for (int i = 0; i < n; i++) {
        if (!runs[i].dets_path || !runs[i].val_ann) {
            md_log(MD_LOG_WARN, "run %s: no detections.json (or no val_ann in config.cfg): no intervals and no error analysis",
                   runs[i].dir);
            return MD_OK;
        }
        if (strcmp(runs[i].val_ann, runs[0].val_ann)) {
            md_log(MD_LOG_WARN, "runs %s and %s were evaluated on different val splits: no intervals and no error analysis",
                   runs[0].dir, runs[i].dir);
            return MD_OK;
        }
    }
    md_coco_gt *gt = NULL;
    md_status st = md_coco_gt_load(runs[0].val_ann, &gt);
    if (st) return st;
    double (*tide)[2][MD_TIDE_N_MAIN + MD_TIDE_N_SPECIAL + 1] = calloc((size_t)n, sizeof *tide);
    if (!tide) { md_coco_gt_free(gt); return md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); }
    for (int i = 0; i < n && !st; i++) {
        md_coco_dets *d = NULL;
        md_cocoeval_result r;
        if ((st = md_coco_dets_load(gt, runs[i].dets_path, &d))) break;
        if (!(st = md_cocoeval_run_matches(gt, d, &r, &m[i]))) {
            if (fabs(r.stats[0] - runs[i].stats[0]) > 1e-9)
                md_log(MD_LOG_WARN, "run %s: detections.json gives AP %.6f, eval.json says %.6f", runs[i].dir, r.stats[0], runs[i].stats[0]);
            md_cocoeval_result_free(&r);
        }
        for (int t = 0; t < 2 && !st; t++) {
            md_tide_opts o = MD_TIDE_OPTS_DEFAULT;
            o.pos_thr = t ? 0.75 : 0.5;
            md_tide_result tr;
            if (!(st = md_tide_run(gt, d, &o, &tr))) {
                for (int e = 0; e < MD_TIDE_N_MAIN; e++) tide[i][t][e] = tr.main[e];
                for (int e = 0; e < MD_TIDE_N_SPECIAL; e++) tide[i][t][MD_TIDE_N_MAIN + e] = tr.special[e];
                tide[i][t][MD_TIDE_N_MAIN + MD_TIDE_N_SPECIAL] = tr.ap;
            }
        }
        md_coco_dets_free(d);
        if (st) st = md_error_prefix(st, "run %s", runs[i].dir);
    }
    if (!st) {
        for (int k = 0; k < ng; k++) {
            md_run_group *G = &g[k];
            G->has_errors = 1;
            for (int t = 0; t < 2; t++)
                for (int e = 0; e <= MD_TIDE_N_MAIN + MD_TIDE_N_SPECIAL; e++) {
                    double s = 0;
                    for (int j = 0; j < G->n; j++) s += tide[G->runs[j]][t][e];
                    s /= G->n;
                    if (e < MD_TIDE_N_MAIN) G->err_main[t][e] = s;
                    else if (e < MD_TIDE_N_MAIN + MD_TIDE_N_SPECIAL) G->err_special[t][e - MD_TIDE_N_MAIN] = s;
                    else G->tide_ap[t] = s;
                }
        }
        *ok = 1;
    }
    free(tide);
    md_coco_gt_free(gt);
    return st;
}

/* The paired bootstrap: every run's AP on the same B resamples, group means, differences. */
static md_status bootstrap(const md_coco_matches *m, int n, md_run_group *g, int ng, int base, const md_compare_opts *o) {
    int B = o->bootstrap, I = m[0].I;
    double *ap = malloc(sizeof(double) * 3 * (size_t)n * (B + 1)); /* [B + 1][n][3]; row B: every image once */
    if (!ap) return md_set_error(MD_ERR_NOMEM, "comparison: out of memory (bootstrap)");
    int fail = 0;
#pragma omp parallel
    {
        uint32_t *w = malloc(sizeof(uint32_t) * (size_t)I);
        if (!w) fail = 1;
#pragma omp for schedule(dynamic, 4)
        for (int b = 0; b <= B; b++) {
            if (!w) continue;
            if (b < B) md_bootstrap_weights(I, o->seed, (uint64_t)b, w);
            for (int i = 0; i < n; i++)
                if (md_coco_matches_ap(&m[i], b < B ? w : NULL, ap + ((size_t)b * n + i) * 3)) {
#pragma omp atomic write
                    fail = 1;
                }
        }
        free(w);
    }
    double *d = malloc(sizeof(double) * (B ? B : 1));
    if (fail || !d) {
        free(ap);
        free(d);
        return md_set_error(MD_ERR_NOMEM, "comparison: out of memory (bootstrap)");
    }
    const md_run_group *bg = &g[base];
    for (int k = 0; k < ng; k++)
        for (int c = 0; c < 3; c++) {
            for (int b = 0; b <= B; b++) {
                double sa = 0, sb = 0;
                for (int j = 0; j < g[k].n; j++) sa += ap[((size_t)b * n + g[k].runs[j]) * 3 + c];
                for (int j = 0; j < bg->n; j++) sb += ap[((size_t)b * n + bg->runs[j]) * 3 + c];
                double v = sa / g[k].n - sb / bg->n;
                if (b < B) d[b] = v;
                else g[k].delta[c] = v;
            }
            g[k].ci_lo[c] = md_bootstrap_percentile(d, (size_t)B, 2.5);
            g[k].ci_hi[c] = md_bootstrap_percentile(d, (size_t)B, 97.5);
            g[k].has_delta = 1;
        }
    free(ap);
    free(d);
    return MD_OK;
}

md_status md_compare_groups(const md_run_summary *runs, int n, const md_compare_opts *o, md_run_group **groups, int *n_groups,
                            int *base) {
    *groups = NULL;
    *n_groups = 0;
    *base = 0;
    md_compare_opts def = MD_COMPARE_OPTS_DEFAULT;
    if (!o) o = &def;
    md_run_group *g = calloc((size_t)(n ? n : 1), sizeof *g);
    int *gid = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!g || !gid) { free(g); free(gid); return md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); }
    int ng = 0;
    md_status st = MD_OK;
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (; k < ng; k++) {
            const md_run_summary *f = &runs[g[k].runs[0]];
            if (runs[i].group_key && f->group_key && !strcmp(runs[i].group_key, f->group_key)) break;
        }
        if (k == ng) {
            g[ng].runs = malloc(sizeof(int) * (size_t)n);
            g[ng].name = strip_seed(runs[i].name);
            g[ng].loss = runs[i].loss;
            if (!g[ng].runs || !g[ng].name) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
            ng++;
        }
        g[k].runs[g[k].n++] = i;
        gid[i] = k;
    }
    /* a group of one run keeps the run's own name */
    for (int k = 0; k < ng; k++)
        if (g[k].n == 1) {
            free(g[k].name);
            if (!(g[k].name = strdup(runs[g[k].runs[0]].name))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
        }
    /* two groups with the same name (e.g. the same loss at two learning rates): the first run's name */
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < ng; j++)
            if (j != k && !strcmp(g[k].name, g[j].name)) {
                free(g[k].name);
                if (!(g[k].name = strdup(runs[g[k].runs[0]].name))) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
                break;
            }
    for (int k = 0; k < ng; k++) {
        double v[MD_COMPARE_MAX_RUNS];
        for (int c = 0; c < MD_CMP_NCOL; c++) {
            for (int j = 0; j < g[k].n; j++) v[j] = md_compare_value(&runs[g[k].runs[j]], c);
            mean_sd(v, g[k].n, &g[k].mean[c], &g[k].sd[c]);
        }
        g[k].has_ap_per_iou = 1;
        for (int j = 0; j < g[k].n; j++) g[k].has_ap_per_iou &= runs[g[k].runs[j]].has_ap_per_iou;
        for (int t = 0; t < 10 && g[k].has_ap_per_iou; t++) {
            for (int j = 0; j < g[k].n; j++) v[j] = runs[g[k].runs[j]].ap_per_iou[t] < 0 ? NAN : runs[g[k].runs[j]].ap_per_iou[t];
            mean_sd(v, g[k].n, &g[k].ap_iou_mean[t], &g[k].ap_iou_sd[t]);
        }
    }
    /* the baseline group */
    int b = -1;
    if (o->baseline) {
        for (int i = 0; i < n && b < 0; i++)
            if (!strcmp(runs[i].name, o->baseline) || !strcmp(runs[i].dir, o->baseline)) b = gid[i];
        if (b < 0) { st = md_set_error(MD_ERR_ARG, "--baseline %s: not one of the runs compared", o->baseline); goto done; }
    }
    for (int k = 0; k < ng && b < 0; k++)
        if (!strcmp(g[k].loss, "smooth_l1")) b = k;
    if (b < 0) b = 0;
    *base = b;
    md_coco_matches *m = calloc((size_t)n, sizeof *m);
    if (!m) { st = md_set_error(MD_ERR_NOMEM, "comparison: out of memory"); goto done; }
    int ok = 0;
    st = matches_and_errors(runs, n, g, ng, m, &ok);
    if (!st && ok && o->bootstrap > 0) st = bootstrap(m, n, g, ng, b, o);
    for (int i = 0; i < n; i++) md_coco_matches_free(&m[i]);
    free(m);
done:
    free(gid);
    if (st) {
        md_compare_groups_free(g, ng);
        return st;
    }
    *groups = g;
    *n_groups = ng;
    return MD_OK;
}
