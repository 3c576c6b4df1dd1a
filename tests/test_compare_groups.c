/* test_compare_groups.c — seeds, paired bootstrap intervals and TIDE in the comparison.
 *
 * Six synthetic runs on the val2014-100 fixture's ground truth (their detections are
 * that ground truth's boxes, jittered per seed; eval.json holds md_cocoeval_run's stats
 * of exactly those detections):
 *   base_s1, base_s2   smooth_l1, seeds 1 and 2
 *   same_s1, same_s2   iou, the very same detections as base_s1 / base_s2
 *   shift_s1, shift_s2 giou, the same boxes moved by 3 pixels
 * Checked: the runs group by config (name and seed aside) into three groups of two;
 * the baseline is the smooth_l1 group; "same" differs from it by exactly 0 with the
 * interval [0, 0]; "shift" has an interval entirely below 0 ("worse") and a point
 * estimate equal to the difference of the eval.json APs' means; the same seed gives
 * the same interval; TIDE puts shift's extra error in Loc at IoU .75; the CLI writes
 * compare.json "groups" (baseline delta 0 with [0, 0]) and compare_errors.png. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "minidet/cocoeval.h"
#include "minidet/compare.h"
#include "minidet/tide.h"
#include "testutil.h"

#define ROOT "build/test_compare_groups"
#define GT "tests/fixtures/cocoeval/val2014-100/gt.json"

typedef struct {
    const char *name, *loss;
    int seed;
    double shift;
} run_def;
static const run_def DEFS[6] = {{"base_s1", "smooth_l1", 1, 0}, {"base_s2", "smooth_l1", 2, 0}, {"same_s1", "iou", 1, 0},
                                {"same_s2", "iou", 2, 0},       {"shift_s1", "giou", 1, 3},     {"shift_s2", "giou", 2, 3}};
static double g_ap[6];

static void write_run(const md_coco_gt *gt, const run_def *d, double *ap) {
    char dir[256], path[320], cfg[512];
    snprintf(dir, sizeof dir, ROOT "/%s", d->name);
    mkdir(ROOT, 0755);
    mkdir(dir, 0755);
    md_coco_dets *dt = NULL;
    CHECK_OK(md_coco_dets_create(gt, &dt));
    if (!dt) return;
    for (int a = 0; a < gt->n_ann; a++) {
        if (gt->ann_crowd[a]) continue;
        /* the seed moves each box by up to 1.5 px and sets its score */
        double j = ((a * 7919 + d->seed * 104729) % 1000) / 1000.0 - 0.5;
        double b[4], s = 0.2 + 0.75 * (((a * 31 + d->seed * 17) % 97) / 97.0);
        memcpy(b, gt->ann_bbox + 4 * (size_t)a, sizeof b);
        b[0] += 3 * j + d->shift;
        b[1] -= 2 * j + d->shift;
        int64_t img = gt->img_ids[gt->ann_img[a]], cat = gt->cat_ids[gt->ann_cat[a]];
        CHECK_OK(md_coco_dets_add(dt, 1, &img, &cat, b, &s));
    }
    md_cocoeval_result r;
    CHECK_OK(md_cocoeval_run(gt, dt, &r));
    *ap = r.stats[0];
    snprintf(path, sizeof path, "%s/detections.json", dir);
    CHECK_OK(md_coco_dets_save(dt, path));
    snprintf(path, sizeof path, "%s/eval.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fprintf(f, "{\"iter\": 100, \"loss\": \"%s\", \"stats\": [", d->loss);
        for (int i = 0; i < 12; i++) fprintf(f, "%s%.17g", i ? ", " : "", r.stats[i]);
        fprintf(f, "]}\n");
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    /* seed 2 runs with other threads and loader settings: how a run executes does not split a group */
    snprintf(cfg, sizeof cfg, "[run]\nname = %s\nseed = %d\nthreads = %d\nlog_every = %d\n[data]\nval_ann = " GT
             "\nworkers = %d\nqueue_depth = %d\n[roi_heads]\nbox_loss = %s\n",
             d->name, d->seed, d->seed, 10 * d->seed, d->seed, 2 + d->seed, d->loss);
    f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(cfg, f);
        fclose(f);
    }
    md_cocoeval_result_free(&r);
    md_coco_dets_free(dt);
}

static md_run_summary g_runs[6];

static void make_runs(void) {
    md_coco_gt *gt = NULL;
    CHECK_OK(md_coco_gt_load(GT, &gt));
    if (!gt) return;
    for (int i = 0; i < 6; i++) write_run(gt, &DEFS[i], &g_ap[i]);
    md_coco_gt_free(gt);
    for (int i = 0; i < 6; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, ROOT "/%s", DEFS[i].name);
        CHECK_OK(md_run_summary_load(dir, &g_runs[i]));
        CHECK(g_runs[i].seed == DEFS[i].seed && g_runs[i].dets_path && g_runs[i].val_ann, "%s: seed %ld, dets %s", DEFS[i].name,
              g_runs[i].seed, g_runs[i].dets_path ? g_runs[i].dets_path : "(none)");
    }
}

static void test_groups_and_intervals(void) {
    md_compare_opts o = MD_COMPARE_OPTS_DEFAULT;
    o.bootstrap = 300;
    md_run_group *g = NULL;
    int ng = 0, base = -1;
    CHECK_OK(md_compare_groups(g_runs, 6, &o, &g, &ng, &base));
    CHECK(ng == 3, "%d groups, expected 3", ng);
    if (ng != 3) { md_compare_groups_free(g, ng); return; }
    CHECK(!strcmp(g[0].name, "base") && !strcmp(g[1].name, "same") && !strcmp(g[2].name, "shift"), "names %s %s %s", g[0].name,
          g[1].name, g[2].name);
    CHECK(g[0].n == 2 && g[1].n == 2 && g[2].n == 2 && g[2].runs[0] == 4 && g[2].runs[1] == 5, "group sizes");
    CHECK(base == 0, "baseline group %d, expected the smooth_l1 one (0)", base);
    CHECK_NEAR(g[0].mean[MD_CMP_AP], (g_ap[0] + g_ap[1]) / 2, 1e-15);
    CHECK_NEAR(g[0].sd[MD_CMP_AP], fabs(g_ap[0] - g_ap[1]) / sqrt(2.0), 1e-15);
    for (int c = 0; c < 3; c++) {
        CHECK(g[1].has_delta && g[1].delta[c] == 0 && g[1].ci_lo[c] == 0 && g[1].ci_hi[c] == 0, "identical group: %g [%g, %g]",
              g[1].delta[c], g[1].ci_lo[c], g[1].ci_hi[c]);
        CHECK(g[0].delta[c] == 0 && g[0].ci_lo[c] == 0 && g[0].ci_hi[c] == 0, "baseline vs itself: %g [%g, %g]", g[0].delta[c],
              g[0].ci_lo[c], g[0].ci_hi[c]);
    }
    double want = (g_ap[4] + g_ap[5]) / 2 - (g_ap[0] + g_ap[1]) / 2;
    CHECK(g[2].delta[0] == want, "point estimate %.17g, eval.json means differ by %.17g", g[2].delta[0], want);
    CHECK(g[2].ci_hi[0] < 0 && g[2].ci_lo[0] <= g[2].delta[0] && g[2].delta[0] <= g[2].ci_hi[0], "shifted: %.4f [%.4f, %.4f]",
          g[2].delta[0], g[2].ci_lo[0], g[2].ci_hi[0]);
    CHECK(!strcmp(md_compare_verdict(&g[2], 0), "worse"), "verdict %s", md_compare_verdict(&g[2], 0));
    printf("  shift - base: AP %+.4f [%+.4f, %+.4f]; TIDE Loc@75 %.2f vs %.2f\n", g[2].delta[0], g[2].ci_lo[0], g[2].ci_hi[0],
           g[2].err_main[1][MD_TIDE_LOC], g[0].err_main[1][MD_TIDE_LOC]);
    CHECK(g[2].has_errors && g[2].err_main[1][MD_TIDE_LOC] > g[0].err_main[1][MD_TIDE_LOC] + 1, "Loc@75: shift %.3f, base %.3f",
          g[2].err_main[1][MD_TIDE_LOC], g[0].err_main[1][MD_TIDE_LOC]);
    /* same seed, same interval; another seed, another one */
    md_run_group *g2 = NULL;
    int ng2 = 0, b2 = 0;
    CHECK_OK(md_compare_groups(g_runs, 6, &o, &g2, &ng2, &b2));
    if (ng2 == 3) CHECK(g2[2].ci_lo[0] == g[2].ci_lo[0] && g2[2].ci_hi[0] == g[2].ci_hi[0], "same seed, other interval");
    md_compare_groups_free(g2, ng2);
    o.seed = 99;
    CHECK_OK(md_compare_groups(g_runs, 6, &o, &g2, &ng2, &b2));
    if (ng2 == 3) CHECK(g2[2].ci_lo[0] != g[2].ci_lo[0] || g2[2].ci_hi[0] != g[2].ci_hi[0], "another seed, the same interval");
    md_compare_groups_free(g2, ng2);
    /* --baseline names a run of another group */
    o.baseline = "shift_s2";
    CHECK_OK(md_compare_groups(g_runs, 6, &o, &g2, &ng2, &b2));
    CHECK(b2 == 2 && ng2 == 3 && g2[0].ci_lo[0] > 0, "baseline shift: group %d, base - shift [%g, %g]", b2, ng2 == 3 ? g2[0].ci_lo[0] : 0,
          ng2 == 3 ? g2[0].ci_hi[0] : 0);
    md_compare_groups_free(g2, ng2);
    md_compare_groups_free(g, ng);
}

static void test_cli(void) {
    const char *b = getenv("MD_BIN");
    char exe[256], cmd[2048];
    snprintf(exe, sizeof exe, "%s/eval", b && *b ? b : "build/bin");
    if (!md_test_need_path(exe, "built by make")) return;
    snprintf(cmd, sizeof cmd,
             "%s " ROOT "/base_s1 " ROOT "/base_s2 " ROOT "/same_s1 " ROOT "/same_s2 " ROOT "/shift_s1 " ROOT "/shift_s2 --bootstrap 200 "
             "--out " ROOT " > " ROOT "/stdout.txt 2>&1",
             exe);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed", cmd);
    char *buf = md_test_slurp(ROOT "/compare.json", NULL);
    CHECK(buf != NULL, "no compare.json");
    if (!buf) return;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(j, "groups");
    CHECK(cJSON_GetArraySize(gs) == 3, "compare.json: %d groups", cJSON_GetArraySize(gs));
    const cJSON *g0 = cJSON_GetArrayItem(gs, 0), *g2 = cJSON_GetArrayItem(gs, 2);
    const cJSON *d0 = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g0, "delta_vs_baseline"), "AP");
    const cJSON *ci0 = cJSON_GetObjectItemCaseSensitive(d0, "ci95");
    CHECK(d0 && cJSON_GetObjectItemCaseSensitive(d0, "mean")->valuedouble == 0 && cJSON_GetArrayItem(ci0, 0)->valuedouble == 0 &&
              cJSON_GetArrayItem(ci0, 1)->valuedouble == 0,
          "baseline delta is not 0 with [0, 0]");
    const cJSON *d2 = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g2, "delta_vs_baseline"), "AP");
    CHECK(d2 && cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d2, "ci95"), 1)->valuedouble < 0, "shift's interval is not below 0");
    CHECK(cJSON_GetObjectItemCaseSensitive(g2, "n")->valueint == 2, "n");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g2, "errors"), "0.75");
    CHECK(e && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "main"), "Loc")), "errors 0.75 Loc");
    cJSON_Delete(j);
    struct stat sb;
    CHECK(stat(ROOT "/compare_errors.png", &sb) == 0 && sb.st_size > 1000, "compare_errors.png missing");
    CHECK(stat(ROOT "/compare_errors.svg", &sb) == 0, "compare_errors.svg missing");
}

int main(void) {
    make_runs();
    MD_RUN(test_groups_and_intervals);
    MD_RUN(test_cli);
    for (int i = 0; i < 6; i++) md_run_summary_free(&g_runs[i]);
    return md_test_summary();
}
