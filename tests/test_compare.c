/* test_compare.c — the loss-comparison report (`./eval RUN_DIR ...`) and the plot module.
 *
 * Three synthetic run directories are written under build/test_compare/ with
 * known eval.json / metrics.jsonl / config.cfg contents (docs/FORMATS.md). The
 * test then checks that the loaded summaries, the printed table of
 * $MD_BIN/eval, and compare.json carry exactly those values, that the best
 * markers sit on the runs chosen to be best (including a tie and an undefined
 * value), that the plots are PNGs of the expected size and SVGs, and that bad
 * input (missing run, missing eval.json, malformed JSON, wrong field types, a
 * malformed metrics.jsonl line) gives an error naming the file and the field. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stb_image.h>
#include "minidet/compare.h"
#include "minidet/config.h"
#include "minidet/model.h"
#include "minidet/shapes.h"
#include "minidet/error.h"
#include "minidet/plot.h"
#include "minidet/fs.h"
#include "testutil.h"

#define ROOT "build/test_compare"

typedef struct {
    const char *name, *loss;
    long iter;
    double time_s, img_s;
    double stats[12];
} fake_run;

/* Chosen so that: AP/AP75/APm best = giou; AP50 tie (shown 95.1) smooth_l1 & giou; APs undefined for diou and best
 * smooth_l1; APl best diou; AR100 best diou; time lowest diou and img/s highest smooth_l1, neither marked (runs
 * that shared a machine, or ran on different ones, were not timed alike). */
static const fake_run RUNS[3] = {
    {"shapes_smooth_l1", "smooth_l1", 1500, 151.25, 9.8765,
     {0.612345678901, 0.95123, 0.701, 0.40111, 0.655, 0.70, 0.30, 0.62, 0.6712, 0.45, 0.70, 0.78}},
    {"shapes_giou", "giou", 1500, 149.5, 9.31,
     {0.645, 0.95149, 0.7555, 0.39, 0.6999, 0.71, 0.31, 0.64, 0.6801, 0.44, 0.72, 0.80}},
    {"shapes_diou", "diou", 1500, 148.0, 9.5,
     {0.6401, 0.93, 0.75, -1, 0.69, 0.7234, 0.32, 0.66, 0.6950, -1, 0.73, 0.81}},
};

static double ap_iou(const fake_run *r, int t) { return r->stats[1] * (1.0 - t * t / 110.0) - (r == &RUNS[0]) * 0.01 * t; }
static double prec(int k, int w, int ri) { double x = k / 100.0; return x > 0.96 - 0.1 * w ? 0 : 1.0 - pow(x, 6 + 2 * ri - 3 * w); }

static void write_run(int ri) {
    const fake_run *r = &RUNS[ri];
    char dir[256], path[320];
    snprintf(dir, sizeof dir, ROOT "/runs/%s", r->name);
    md_mkdir_p(dir);
    snprintf(path, sizeof path, "%s/eval.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fprintf(f, "{\"iter\": %ld, \"loss\": \"%s\", \"train_time_s\": %.17g, \"img_per_sec\": %.17g,\n \"stats\": [", r->iter, r->loss,
            r->time_s, r->img_s);
    for (int i = 0; i < 12; i++) fprintf(f, "%s%.17g", i ? ", " : "", r->stats[i]);
    fprintf(f, "],\n \"per_category_ap\": {\"1\": %.17g, \"2\": %.17g, \"7\": -1},\n", 0.5 + 0.1 * ri, 0.7 - 0.1 * ri);
    fprintf(f, " \"category_names\": {\"1\": \"rectangle\", \"2\": \"thin bar\", \"7\": \"ring\"},\n \"ap_per_iou\": [");
    for (int t = 0; t < 10; t++) fprintf(f, "%s%.17g", t ? ", " : "", ap_iou(r, t));
    fprintf(f, "],\n \"pr\": {");
    for (int w = 0; w < 2; w++) {
        fprintf(f, "%s\"%s\": [", w ? ", " : "", w ? "0.75" : "0.50");
        for (int k = 0; k < 101; k++) fprintf(f, "%s%.6f", k ? ", " : "", prec(k, w, ri));
        fprintf(f, "]");
    }
    fprintf(f, "}}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    for (int it = 20; it <= r->iter; it += 20) {
        double loss = 0.35 + 1.8 * exp(-it / (250.0 + 40 * ri)) + 0.04 * sin(it / 37.0 + ri);
        fprintf(f, "{\"type\":\"train\",\"iter\":%d,\"lr\":0.02,\"loss_total\":%.6f,\"loss_objectness\":0.1,\"loss_rpn_box_reg\":0.1,"
                   "\"loss_classifier\":0.1,\"loss_box_reg\":0.1,\"sec_per_iter\":0.2,\"img_per_sec\":%.3f,\"rss_mb\":300,\"data_wait_s\":0}\n",
                it, loss, r->img_s);
        if (it % 300 == 0)
            fprintf(f, "{\"type\":\"eval\",\"iter\":%d,\"stats\":[%.6f,0,0,0,0,0,0,0,0,0,0,0]}\n", it,
                    r->stats[0] * (1 - exp(-it / (300.0 + 50 * ri))));
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    char cfg[256];
    snprintf(cfg, sizeof cfg, "[run]\nname = %s\n[roi_heads]\nbox_loss = %s\n", r->name, r->loss);
    CHECK(md_test_write_text(path, cfg), "cannot write %s", path);
}

static void make_runs(void) {
    for (int i = 0; i < 3; i++) write_run(i);
}

static void test_load_values(void) {
    make_runs();
    for (int i = 0; i < 3; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, ROOT "/runs/%s", RUNS[i].name);
        md_run_summary r;
        CHECK_OK(md_run_summary_load(dir, &r));
        CHECK(!strcmp(r.name, RUNS[i].name) && !strcmp(r.loss, RUNS[i].loss), "name/loss %s/%s", r.name, r.loss);
        CHECK(r.iter == RUNS[i].iter, "iter %ld", r.iter);
        for (int k = 0; k < 12; k++) CHECK(r.stats[k] == RUNS[i].stats[k], "stats[%d] %.17g vs %.17g", k, r.stats[k], RUNS[i].stats[k]);
        CHECK(r.train_time_s == RUNS[i].time_s && r.img_per_sec == RUNS[i].img_s, "time %g img/s %g", r.train_time_s, r.img_per_sec);
        CHECK(r.has_ap_per_iou && r.ap_per_iou[3] == ap_iou(&RUNS[i], 3), "ap_per_iou[3] %.17g", r.ap_per_iou[3]);
        CHECK(r.has_pr && fabs(r.pr75[50] - prec(50, 1, i)) < 1e-6, "pr75[50] %g", r.pr75[50]);
        CHECK(r.n_cat == 3 && r.cat_ids[2] == 7 && r.cat_ap[2] == -1 && !strcmp(r.cat_names[1], "thin bar"), "categories");
        CHECK(r.n_train == 75 && r.train_iter[0] == 20 && r.train_iter[74] == 1500, "train lines %d", r.n_train);
        CHECK(r.n_eval == 5 && r.eval_iter[4] == 1500, "eval lines %d", r.n_eval);
        CHECK(md_compare_value(&r, MD_CMP_APS) == (RUNS[i].stats[3] < 0 ? NAN : RUNS[i].stats[3]) || (i == 2 && isnan(md_compare_value(&r, MD_CMP_APS))),
              "APs undefined -> NAN");
        md_run_summary_free(&r);
    }
}

/* Expected best runs per column (bit i = run i). */
static const int BEST[MD_CMP_NCOL] = {
    [MD_CMP_AP] = 2, [MD_CMP_AP50] = 3, [MD_CMP_AP75] = 2, [MD_CMP_APS] = 1, [MD_CMP_APM] = 2, [MD_CMP_APL] = 4,
    [MD_CMP_AR100] = 4, [MD_CMP_ITERS] = 0, [MD_CMP_TIME] = 0, [MD_CMP_IMGS] = 0}; /* timings are not ranked */

static void test_best_markers(void) {
    md_run_summary r[3];
    for (int i = 0; i < 3; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, ROOT "/runs/%s", RUNS[i].name);
        CHECK_OK(md_run_summary_load(dir, &r[i]));
    }
    for (int c = 0; c < MD_CMP_NCOL; c++) {
        if (c == MD_CMP_ITERS) continue;
        int b[3], mask = 0;
        md_compare_best(r, 3, c, b);
        for (int i = 0; i < 3; i++) mask |= b[i] << i;
        CHECK(mask == BEST[c], "column %s: best mask %d, expected %d", md_compare_column_name(c), mask, BEST[c]);
    }
    /* every run showing the same value: no winner, nothing marked */
    for (int i = 0; i < 3; i++) r[i].stats[0] = 0.50001 + i * 1e-5;
    int b[3];
    md_compare_best(r, 3, MD_CMP_AP, b);
    CHECK(!b[0] && !b[1] && !b[2], "all equal (50.0): marks %d %d %d", b[0], b[1], b[2]);
    for (int i = 0; i < 3; i++) md_run_summary_free(&r[i]);
}

static const char *bin_dir(void) {
    const char *b = getenv("MD_BIN");
    return b && *b ? b : "build/bin";
}

/* Runs $MD_BIN/eval with args; stdout -> ROOT/out.txt, stderr -> ROOT/err.txt. Returns the exit status. */
static int run_eval(const char *args) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/eval %s >" ROOT "/out.txt 2>" ROOT "/err.txt", bin_dir(), args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli_table_and_files(void) {
    make_runs();
    if (!md_test_need_path(bin_dir(), "the eval CLI (make)")) return;
    remove(ROOT "/runs/compare.md");
    int rc = run_eval(ROOT "/runs/shapes_smooth_l1 " ROOT "/runs/shapes_giou " ROOT "/runs/shapes_diou");
    char *out = md_test_slurp(ROOT "/out.txt", NULL), *err = md_test_slurp(ROOT "/err.txt", NULL);
    CHECK(rc == 0, "eval exit %d: %s", rc, err ? err : "");
    CHECK(out != NULL, "no output");
    if (!out) { free(err); return; }
    /* the main table: header line, then one line per run in the given order */
    char *hdr = strstr(out, "\nrun ");
    CHECK(hdr != NULL, "no table header in:\n%s", out);
    char *line = hdr ? strchr(hdr + 1, '\n') : NULL;
    for (int i = 0; i < 3 && line; i++) {
        line++;
        char *end = strchr(line, '\n');
        if (!end) break;
        char row[512];
        snprintf(row, sizeof row, "%.*s", (int)(end - line), line);
        char *tok[32];
        int nt = 0;
        for (char *t = strtok(row, " "); t && nt < 32; t = strtok(NULL, " ")) tok[nt++] = t;
        CHECK(nt == 12, "run %d: %d cells in '%.*s'", i, nt, (int)(end - line), line);
        if (nt != 12) break;
        CHECK(!strcmp(tok[0], RUNS[i].name) && !strcmp(tok[1], RUNS[i].loss), "row %d is %s %s", i, tok[0], tok[1]);
        static const int stat_of[7] = {0, 1, 2, 3, 4, 5, 8};
        for (int c = 0; c < 7; c++) {
            double v = RUNS[i].stats[stat_of[c]];
            char want[32];
            if (v < 0) snprintf(want, sizeof want, "-");
            else snprintf(want, sizeof want, "%.1f%s", v * 100, (BEST[c] >> i) & 1 ? "*" : "");
            CHECK(!strcmp(tok[2 + c], want), "run %s column %s: '%s', expected '%s'", RUNS[i].name, md_compare_column_name(c), tok[2 + c], want);
        }
        char want[32];
        snprintf(want, sizeof want, "%ld", RUNS[i].iter);
        CHECK(!strcmp(tok[9], want), "iters '%s'", tok[9]);
        long t = lround(RUNS[i].time_s);
        snprintf(want, sizeof want, "%ldm%02lds%s", t / 60, t % 60, (BEST[MD_CMP_TIME] >> i) & 1 ? "*" : "");
        CHECK(!strcmp(tok[10], want), "train time '%s', expected '%s'", tok[10], want);
        snprintf(want, sizeof want, "%.2f%s", RUNS[i].img_s, (BEST[MD_CMP_IMGS] >> i) & 1 ? "*" : "");
        CHECK(!strcmp(tok[11], want), "img/s '%s', expected '%s'", tok[11], want);
        line = end;
    }
    CHECK(strstr(out, "Per-category AP") && strstr(out, "thin bar") && strstr(out, "0.95"), "per-category / IoU tables missing");

    /* compare.json: full-precision values and best lists */
    char *js = md_test_slurp(ROOT "/runs/compare.json", NULL);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    CHECK(root != NULL, "compare.json missing or malformed");
    if (root) {
        cJSON *runs = cJSON_GetObjectItem(root, "runs");
        CHECK(cJSON_GetArraySize(runs) == 3, "compare.json: runs");
        for (int i = 0; i < 3 && i < cJSON_GetArraySize(runs); i++) {
            cJSON *r = cJSON_GetArrayItem(runs, i);
            CHECK(cJSON_GetObjectItem(r, "AP")->valuedouble == RUNS[i].stats[0], "compare.json AP of %s", RUNS[i].name);
            CHECK(cJSON_GetObjectItem(r, "AR100")->valuedouble == RUNS[i].stats[8], "compare.json AR100 of %s", RUNS[i].name);
            CHECK((RUNS[i].stats[3] < 0) == cJSON_IsNull(cJSON_GetObjectItem(r, "APs")), "compare.json APs null iff undefined");
            CHECK(cJSON_GetObjectItem(r, "train_time_s")->valuedouble == RUNS[i].time_s, "compare.json time");
            CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "ap_per_iou"), 9)->valuedouble == ap_iou(&RUNS[i], 9), "ap_per_iou");
        }
        cJSON *best = cJSON_GetObjectItem(root, "best");
        cJSON *b50 = cJSON_GetObjectItem(best, "AP50");
        CHECK(cJSON_GetArraySize(b50) == 2 && !strcmp(cJSON_GetArrayItem(b50, 0)->valuestring, "shapes_smooth_l1") &&
                  !strcmp(cJSON_GetArrayItem(b50, 1)->valuestring, "shapes_giou"), "best AP50 tie");
        cJSON *bt = cJSON_GetObjectItem(best, "train time"), *bi = cJSON_GetObjectItem(best, "img/s");
        CHECK(cJSON_GetArraySize(bt) == 0 && cJSON_GetArraySize(bi) == 0, "timings are not ranked: %d / %d best runs",
              cJSON_GetArraySize(bt), cJSON_GetArraySize(bi));
        cJSON_Delete(root);
    }
    free(js);

    /* plots: PNG of the default size, SVG, index.html referencing all of them, compare.md with the table */
    static const char *plots[] = {"compare_loss", "compare_ap_iter", "compare_ap_iou", "compare_pr50", "compare_pr75"};
    char *html = md_test_slurp(ROOT "/runs/index.html", NULL), *md = md_test_slurp(ROOT "/runs/compare.md", NULL);
    for (int k = 0; k < 5; k++) {
        char p[256];
        int w = 0, h = 0, comp = 0;
        snprintf(p, sizeof p, ROOT "/runs/%s.png", plots[k]);
        CHECK(stbi_info(p, &w, &h, &comp) && w == 960 && h == 600 && comp == 3, "%s: %dx%dx%d", p, w, h, comp);
        snprintf(p, sizeof p, ROOT "/runs/%s.svg", plots[k]);
        char *svg = md_test_slurp(p, NULL);
        CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "shapes_giou"), "%s", p);
        free(svg);
        snprintf(p, sizeof p, "%s.png", plots[k]);
        CHECK(html && strstr(html, p), "index.html lacks %s", p);
        CHECK(md && strstr(md, p), "compare.md lacks %s", p);
    }
    CHECK(md && strstr(md, "| shapes_giou | giou | **64.5** |"), "compare.md table row");
    free(html);
    free(md);
    free(out);
    free(err);

    /* --out puts the report elsewhere */
    md_mkdir_p(ROOT "/elsewhere");
    rc = run_eval("--out " ROOT "/elsewhere " ROOT "/runs/shapes_giou");
    struct stat sb;
    CHECK(rc == 0 && stat(ROOT "/elsewhere/compare.md", &sb) == 0, "--out: rc %d", rc);
}

/* Loads dir and checks the error mentions every needle. */
static void expect_load_error(const char *dir, const char *n1, const char *n2) {
    md_run_summary r;
    md_status st = md_run_summary_load(dir, &r);
    CHECK(st != MD_OK, "%s: loaded, expected an error", dir);
    const char *m = md_last_error();
    CHECK(strstr(m, n1) && (!n2 || strstr(m, n2)), "%s: message '%s' lacks '%s' / '%s'", dir, m, n1, n2 ? n2 : "");
    md_run_summary_free(&r);
}

static void test_bad_input(void) {
    char p[256];
    expect_load_error(ROOT "/nope", ROOT "/nope", "no such run directory");
    md_mkdir_p(ROOT "/bad/no_eval");
    expect_load_error(ROOT "/bad/no_eval", "no eval.json", ROOT "/bad/no_eval");

    md_mkdir_p(ROOT "/bad/malformed");
    md_test_write_text(ROOT "/bad/malformed/eval.json", "{\"iter\": 10, \"stats\": [0.1, 0.2,");
    expect_load_error(ROOT "/bad/malformed", "malformed/eval.json", "malformed JSON");

    md_mkdir_p(ROOT "/bad/short_stats");
    md_test_write_text(ROOT "/bad/short_stats/eval.json", "{\"iter\": 10, \"stats\": [0.1, 0.2]}");
    expect_load_error(ROOT "/bad/short_stats", "short_stats/eval.json", "field 'stats'");

    md_mkdir_p(ROOT "/bad/string_iter");
    md_test_write_text(ROOT "/bad/string_iter/eval.json", "{\"iter\": \"ten\", \"stats\": [0,0,0,0,0,0,0,0,0,0,0,0]}");
    expect_load_error(ROOT "/bad/string_iter", "string_iter/eval.json", "field 'iter'");

    md_mkdir_p(ROOT "/bad/bad_pr");
    md_test_write_text(ROOT "/bad/bad_pr/eval.json", "{\"iter\": 1, \"stats\": [0,0,0,0,0,0,0,0,0,0,0,0], \"pr\": {\"0.50\": [1, 2]}}");
    expect_load_error(ROOT "/bad/bad_pr", "field 'pr'", "'0.50'");

    md_mkdir_p(ROOT "/bad/bad_metrics");
    md_test_write_text(ROOT "/bad/bad_metrics/eval.json", "{\"iter\": 1, \"stats\": [0,0,0,0,0,0,0,0,0,0,0,0]}");
    md_test_write_text(ROOT "/bad/bad_metrics/metrics.jsonl",
               "{\"type\":\"train\",\"iter\":1,\"loss_total\":1.5}\n\n{\"type\":\"train\",\"iter\":2,\"loss_total\":1.4}\n{\"type\":\"train\",\"iter\":3,\"loss_tot");
    expect_load_error(ROOT "/bad/bad_metrics", "metrics.jsonl:4", "malformed JSON");
    md_test_write_text(ROOT "/bad/bad_metrics/metrics.jsonl", "{\"type\":\"eval\",\"iter\":1,\"stats\":[1,2,3]}\n");
    expect_load_error(ROOT "/bad/bad_metrics", "metrics.jsonl:1", "field 'stats'");

    /* a resumed run's log: lines from the checkpoint on are superseded by the later ones */
    md_mkdir_p(ROOT "/bad/resumed");
    md_test_write_text(ROOT "/bad/resumed/eval.json", "{\"iter\": 4, \"stats\": [0,0,0,0,0,0,0,0,0,0,0,0]}");
    md_test_write_text(ROOT "/bad/resumed/metrics.jsonl",
               "{\"type\":\"train\",\"iter\":1,\"loss_total\":4}\n{\"type\":\"train\",\"iter\":2,\"loss_total\":3}\n"
               "{\"type\":\"train\",\"iter\":3,\"loss_total\":9}\n{\"type\":\"train\",\"iter\":2,\"loss_total\":3}\n"
               "{\"type\":\"train\",\"iter\":3,\"loss_total\":2}\n{\"type\":\"train\",\"iter\":4,\"loss_total\":1}\n");
    md_run_summary r;
    CHECK_OK(md_run_summary_load(ROOT "/bad/resumed", &r));
    CHECK(r.n_train == 4 && r.train_loss[2] == 2 && r.train_loss[3] == 1, "resumed log: %d lines", r.n_train);
    CHECK(!strcmp(r.loss, "?"), "no loss anywhere -> '?' (got %s)", r.loss);
    md_run_summary_free(&r);

    /* the CLI: non-zero exit, one line naming the run */
    if (!md_test_need_path(bin_dir(), "the eval CLI (make)")) return;
    make_runs();
    int rc = run_eval(ROOT "/runs/shapes_giou " ROOT "/bad/no_eval");
    char *err = md_test_slurp(ROOT "/err.txt", NULL);
    CHECK(rc == 1 && err && strstr(err, "bad/no_eval") && strstr(err, "no eval.json"), "CLI: rc %d, stderr '%s'", rc, err ? err : "");
    free(err);
    snprintf(p, sizeof p, "--bogus " ROOT "/runs/shapes_giou");
    rc = run_eval(p);
    CHECK(rc != 0, "an unknown option must fail");
}

static void test_plot_geometry(void) {
    /* y = x on fixed [0,1]^2: the series colour lies on the diagonal, not off it */
    double x[2] = {0, 1}, y[2] = {0, 1};
    md_plot_series s = {.label = "y = x", .n = 2, .x = x, .y = y};
    md_plot p = {.title = "t", .x_label = "x (unit)", .y_label = "y (unit)", .width = 400, .height = 300, .x_min = 0, .x_max = 1,
                 .y_min = 0, .y_max = 1, .n_series = 1, .series = &s};
    unsigned char *px = malloc(400 * 300 * 3), c[3];
    md_plot_color(0, c);
    CHECK_OK(md_plot_render(&p, px, 400, 300));
    double a, b, a2, b2;
    CHECK_OK(md_plot_map(&p, 0.5, 0.5, &a, &b));
    CHECK_OK(md_plot_map(&p, 0.5, 0.2, &a2, &b2));
    /* the line is 2 px wide and anti-aliased: some pixel next to (a, b) has the full colour */
    int dmin = 1 << 30;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            const unsigned char *q = px + ((size_t)(b + dy) * 400 + (size_t)(a + dx)) * 3;
            int d = abs(q[0] - c[0]) + abs(q[1] - c[1]) + abs(q[2] - c[2]);
            if (d < dmin) dmin = d;
        }
    const unsigned char *off = px + ((size_t)b2 * 400 + (size_t)a2) * 3;
    CHECK(dmin < 12, "on the line: colour distance %d", dmin);
    CHECK(off[0] > 200 && off[1] > 200 && off[2] > 200, "off the line should be background: %d %d %d", off[0], off[1], off[2]);
    CHECK(a > 40 && a < 400 && b > 20 && b < 280, "mapped point (%g, %g) inside the image", a, b);
    /* invalid plots are errors, not crashes */
    md_plot bad = p;
    bad.x_max = 0;
    CHECK(md_plot_render(&bad, px, 400, 300) == MD_ERR_ARG && strstr(md_last_error(), "x range"), "%s", md_last_error());
    bad = p;
    bad.n_series = MD_PLOT_MAX_SERIES + 1;
    CHECK(md_plot_render(&bad, px, 400, 300) == MD_ERR_ARG, "too many series");
    free(px);
}

/* The demo's five stage-1 configs differ only in the run name and the RoI box loss (and the loss's
 * reference weight): same seed, data, model, initial weights, schedule. Compared on the fully
 * resolved INI; stage 0 shares data, model and RPN with them. */
static void test_demo_configs_identical(void) {
    static const char *losses[5] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
    static const float weights[5] = {1, 10, 10, 12, 12};
    char *ref = NULL;
    md_config stage1;
    md_config_defaults(&stage1);
    for (int i = 0; i < 5; i++) {
        char path[128];
        snprintf(path, sizeof path, "configs/shapes_%s.cfg", losses[i]);
        if (!md_test_need_path(path, "the demo configs (configs/shapes_*.cfg)")) return;
        md_config c;
        md_config_defaults(&c);
        CHECK_OK(md_config_load(&c, path, 0, NULL));
        char want[64];
        snprintf(want, sizeof want, "shapes_%s", losses[i]);
        CHECK(!strcmp(c.run.name, want), "%s: run.name %s", path, c.run.name);
        CHECK(!strcmp(md_box_loss_name(c.roi_heads.box_loss), losses[i]) && c.roi_heads.box_loss_weight == weights[i],
              "%s: loss %s weight %g", path, md_box_loss_name(c.roi_heads.box_loss), c.roi_heads.box_loss_weight);
        CHECK(c.rpn.box_loss == MD_BOXLOSS_SMOOTH_L1, "%s: the RPN keeps smooth-L1", path);
        /* neutralise the three intended differences, then the resolved files must be equal */
        snprintf(c.run.name, sizeof c.run.name, "X");
        c.roi_heads.box_loss = MD_BOXLOSS_SMOOTH_L1;
        c.roi_heads.box_loss_weight = 1;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK_OK(md_config_write(&c, f));
        fclose(f);
        if (!ref) ref = buf;
        else {
            CHECK(!strcmp(ref, buf), "%s differs from configs/shapes_smooth_l1.cfg beyond name and loss", path);
            free(buf);
        }
        if (i == 0) {
            CHECK(!strcmp(c.model.weights, "runs/stage0/shapes_pretrain/last.safetensors") &&
                      !strcmp(c.model.weights_exclude, "roi_heads.box_predictor.bbox_pred"),
                  "%s: starts from stage 0 with a fresh box regressor (weights %s, exclude %s)", path, c.model.weights,
                  c.model.weights_exclude);
            stage1 = c;
        }
    }
    free(ref);
    /* stage 0 (configs/shapes_pretrain.cfg): same data, model and RPN as stage 1, no RoI box loss, from
       scratch; only the run name and directory, the RoI box loss, [model] weights/weights_exclude and the schedule differ */
    if (!md_test_need_path("configs/shapes_pretrain.cfg", "the demo's stage-0 config")) return;
    md_config p;
    md_config_defaults(&p);
    CHECK_OK(md_config_load(&p, "configs/shapes_pretrain.cfg", 0, NULL));
    /* under runs/stage0/, so that `./eval runs/shapes_*` (the README's command) compares the loss runs only */
    CHECK(!strcmp(p.run.name, "shapes_pretrain") && !strcmp(p.run.output_dir, "runs/stage0") && p.roi_heads.box_loss_weight == 0 &&
              !p.model.weights[0],
          "stage 0: name %s in %s, RoI box weight %g, weights '%s'", p.run.name, p.run.output_dir, p.roi_heads.box_loss_weight,
          p.model.weights);
    snprintf(p.run.name, sizeof p.run.name, "X");
    memcpy(p.run.output_dir, stage1.run.output_dir, sizeof p.run.output_dir);
    p.roi_heads.box_loss = stage1.roi_heads.box_loss;
    p.roi_heads.box_loss_weight = stage1.roi_heads.box_loss_weight;
    memcpy(p.model.weights, stage1.model.weights, sizeof p.model.weights);
    memcpy(p.model.weights_exclude, stage1.model.weights_exclude, sizeof p.model.weights_exclude);
    p.solver = stage1.solver;
    char *b0 = NULL, *b1 = NULL;
    size_t l0 = 0, l1 = 0;
    FILE *f0 = open_memstream(&b0, &l0), *f1 = open_memstream(&b1, &l1);
    CHECK_OK(md_config_write(&p, f0));
    CHECK_OK(md_config_write(&stage1, f1));
    fclose(f0);
    fclose(f1);
    CHECK(b0 && b1 && !strcmp(b0, b1), "configs/shapes_pretrain.cfg differs from stage 1 beyond name, RoI box loss, weights and schedule");
    free(b0);
    free(b1);
}

/* --vis on two runs with randomly initialised tiny detectors over a generated shapes val split:
 * a sheet of the expected size whose ground-truth column shows the boxes in their category colour. */
/* The legend of compare_vis.png: a filled 14x14 swatch of each shapes category's colour (1..4:
 * rectangle, ellipse, triangle, bar; boxes are outlines, so only the legend has such squares),
 * each inside the sheet. It was one line clipped at the sheet's edge: no colour with one run. */
static void check_legend(const unsigned char *px, int w, int h, const char *what) {
    for (int c = 0; c < 4; c++) {
        unsigned char col[3];
        md_plot_color(c, col);
        int found = 0;
        for (int y = 0; y + 14 <= h && !found; y++)
            for (int x = 0; x + 14 <= w && !found; x++) {
                int all = 1;
                for (int dy = 0; dy < 14 && all; dy++)
                    for (int dx = 0; dx < 14 && all; dx++)
                        all = !memcmp(px + ((size_t)(y + dy) * w + x + dx) * 3, col, 3);
                found = all;
            }
        CHECK(found, "%s: no legend swatch of category %d's colour in the %dx%d sheet", what, c + 1, w, h);
    }
}

static void test_vis(void) {
    md_shapes_options so;
    md_shapes_options_default(&so);
    so.num = 3;
    so.width = so.height = 64;
    so.val = 1;
    CHECK_OK(md_shapes_generate(ROOT "/vis/data", &so));
    static const char *names[2] = {"vis_giou", "vis_diou"};
    md_run_summary runs[2];
    memset(runs, 0, sizeof runs);
    for (int r = 0; r < 2; r++) {
        char dir[256], path[320], cfg[1024];
        snprintf(dir, sizeof dir, ROOT "/vis/runs/%s", names[r]);
        md_mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.cfg", dir);
        snprintf(cfg, sizeof cfg,
                 "[run]\nname = %s\nseed = %d\n[data]\nval_ann = " ROOT "/vis/data/annotations.json\nval_images = " ROOT
                 "/vis/data/images\n[model]\ndepth = 18\nwidth_mult = 0.125\nnum_classes = 5\nmin_size = 64\nmax_size = 64\n"
                 "fpn_channels = 16\nrepresentation_size = 32\n[roi_heads]\nbox_loss = %s\n",
                 names[r], r + 1, r ? "diou" : "giou");
        CHECK(md_test_write_text(path, cfg), "%s", path);
        snprintf(path, sizeof path, "%s/eval.json", dir);
        md_test_write_text(path, "{\"iter\": 0, \"stats\": [0,0,0,0,0,0,0,0,0,0,0,0]}");
        snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
        md_test_write_text(path, "");
        md_config c;
        md_config_defaults(&c);
        snprintf(path, sizeof path, "%s/config.cfg", dir);
        CHECK_OK(md_config_load(&c, path, 0, NULL));
        md_detector det;
        CHECK_OK(md_detector_create(&det, &c));
        snprintf(path, sizeof path, "%s/last.safetensors", dir);
        CHECK_OK(md_detector_save_weights(&det, path, 0, NULL, NULL));
        md_detector_free(&det);
        CHECK_OK(md_run_summary_load(dir, &runs[r]));
    }
    const char *out = ROOT "/vis/compare_vis.png";
    remove(out);
    CHECK_OK(md_compare_vis(runs, 2, 2, 0.5f, out));
    int w = 0, h = 0, comp = 0;
    unsigned char *px = stbi_load(out, &w, &h, &comp, 3);
    /* cells of 64 px images scaled x4 = 256, gap 10: 3 columns, 2 rows, a title row of 38 px and the legend */
    CHECK(px && w == 3 * 266 + 10 && h > 38 + 2 * 266 + 38, "sheet %dx%d", w, h);
    if (px) check_legend(px, w, h, "2 runs");
    if (px) {
        uint8_t *rgb = malloc(64 * 64 * 3);
        md_shape shapes[MD_SHAPES_MAX];
        int count = 0;
        CHECK_OK(md_shapes_render(&so, 0, rgb, NULL, shapes, &count));
        CHECK(count > 0, "image 0 has shapes");
        if (count > 0) {
            const md_shape *s0 = &shapes[count - 1]; /* drawn last: nothing paints over its corner */
            unsigned char c[3];
            md_plot_color(s0->category - 1, c);
            const unsigned char *q = px + ((size_t)(38 + s0->y0 * 4) * w + (size_t)(10 + s0->x0 * 4)) * 3;
            CHECK(q[0] == c[0] && q[1] == c[1] && q[2] == c[2], "ground-truth box corner colour %d %d %d, expected %d %d %d", q[0], q[1],
                  q[2], c[0], c[1], c[2]);
        }
        free(rgb);
        stbi_image_free(px);
    }
    /* one run: the narrowest sheet (2 columns, 530 px) still shows every category's colour */
    CHECK_OK(md_compare_vis(runs, 1, 1, 0.5f, out));
    px = stbi_load(out, &w, &h, &comp, 3);
    CHECK(px && w == 2 * 266 + 10, "1-run sheet %dx%d", w, h);
    if (px) check_legend(px, w, h, "1 run");
    stbi_image_free(px);
    /* a run without its checkpoint is a clear error */
    remove(ROOT "/vis/runs/vis_diou/last.safetensors");
    CHECK(md_compare_vis(runs, 2, 1, 0.5f, out) != MD_OK && strstr(md_last_error(), "vis_diou") &&
              strstr(md_last_error(), "last.safetensors"), "missing checkpoint: %s", md_last_error());
    for (int r = 0; r < 2; r++) md_run_summary_free(&runs[r]);

    /* a run without eval.json but with config.cfg + last.safetensors is evaluated first (./eval --weights) */
    remove(ROOT "/vis/runs/vis_giou/eval.json");
    if (!md_test_need_path(bin_dir(), "the eval CLI (make)")) return;
    int rc = run_eval(ROOT "/vis/runs/vis_giou --out " ROOT "/vis");
    char *err = md_test_slurp(ROOT "/err.txt", NULL);
    md_run_summary e;
    CHECK(rc == 0, "eval of a run without eval.json: rc %d: %s", rc, err ? err : "");
    CHECK(md_run_summary_load(ROOT "/vis/runs/vis_giou", &e) == MD_OK && e.has_ap_per_iou, "eval.json written by the checkpoint evaluation: %s",
          md_last_error());
    /* the evaluation's speed is not the run's training speed (its metrics.jsonl has none: "-") */
    CHECK(isnan(e.img_per_sec) && isnan(e.train_time_s), "img/s of an evaluated unfinished run: %g (train time %g)", e.img_per_sec,
          e.train_time_s);
    md_run_summary_free(&e);
    free(err);

    /* --out into a directory that does not exist yet; --vis with --vis-score; the picture linked from the report */
    if (system("rm -rf " ROOT "/vis/new")) fprintf(stderr, "cannot clean\n");
    rc = run_eval(ROOT "/vis/runs/vis_giou --vis 1 --vis-score 0.4 --out " ROOT "/vis/new/report");
    err = md_test_slurp(ROOT "/err.txt", NULL);
    char *txt = md_test_slurp(ROOT "/out.txt", NULL);
    CHECK(rc == 0, "--out into a new directory, --vis-score: rc %d: %s", rc, err ? err : "");
    CHECK(txt && strstr(txt, "score >= 0.40"), "--vis-score 0.4 used: %s", txt ? txt : "");
    char *md = md_test_slurp(ROOT "/vis/new/report/compare.md", NULL), *html = md_test_slurp(ROOT "/vis/new/report/index.html", NULL);
    CHECK(md && strstr(md, "](compare_vis.png)"), "compare.md shows compare_vis.png");
    CHECK(html && strstr(html, "<img src=\"compare_vis.png\""), "index.html shows compare_vis.png");
    free(md);
    free(html);
    free(txt);
    free(err);
}

int main(void) {
    md_mkdir_p(ROOT);
    MD_RUN(test_load_values);
    MD_RUN(test_best_markers);
    MD_RUN(test_cli_table_and_files);
    MD_RUN(test_bad_input);
    MD_RUN(test_plot_geometry);
    MD_RUN(test_demo_configs_identical);
    MD_RUN(test_vis);
    return md_test_summary();
}
