/* test_train.c — the trainer end to end on a tiny detector (configs/tiny_shapes_test.cfg: quarter-width
 * ResNet-18-FPN, 96x96 synthetic shapes generated into build/shapes96 by the data module):
 *   - every box loss kind: the training loss falls;
 *   - learning, with margins that rounding cannot cross: on an easier shapes set (1-3 larger shapes per image)
 *     giou trained 600 iterations lifts AP50 and AP75 on held-out images far above an untrained model's and the
 *     RPN objectness loss far below ln 2 (MD_TRAIN_AP=long: all five losses, 1500 iterations, the harder set);
 *   - resume: k iterations + --resume gives bit-identical losses at every later iteration, also with
 *     [model] norm = bn, where the final weights AND BN running statistics must be bit-identical too;
 *   - SIGINT through ./train saves a checkpoint, exits 0 and resumes; a truncated checkpoint is refused;
 *   - a diverging run stops naming the iteration and image ids; missing data names where it looked. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "minidet/fs.h"
#include "minidet/config.h"
#include "minidet/evaluate.h"
#include "minidet/model.h"
#include "minidet/optim.h"
#include "minidet/safetensors.h"
#include "minidet/shapes.h"
#include "minidet/trainer.h"
#include "testutil.h"

#define CFG "configs/tiny_shapes_test.cfg"
#define MAXLINES 4096

/* build/shapes96 (CFG's data): 200 train + 50 val images of 96x96 with the generator's defaults (1-5 shapes
 * from 6 px, bars 2-4 px thick). build/shapes96e, the easier set of the learning test: 1-3 shapes from 16 px,
 * bars 4-8 px thick, noise 8, so that 600 iterations of the tiny model reach AP50 ~0.45 and AP75 ~0.25. */
static void make_set(const char *dir, int easy) {
    char tr[128], va[128];
    snprintf(tr, sizeof tr, "%s/train", dir);
    snprintf(va, sizeof va, "%s/val", dir);
    char ta[160], vaa[160];
    snprintf(ta, sizeof ta, "%s/annotations.json", tr);
    snprintf(vaa, sizeof vaa, "%s/annotations.json", va);
    if (md_path_exists(ta) && md_path_exists(vaa)) return;
    md_shapes_options o;
    md_shapes_options_default(&o);
    o.width = o.height = 96;
    o.num = 200;
    o.seed = 1;
    if (easy) {
        o.min_shapes = 1;
        o.max_shapes = 3;
        o.min_size = 16;
        o.bar_thick_min = 4;
        o.bar_thick_max = 8;
        o.noise = 8;
    }
    CHECK_OK(md_shapes_generate(tr, &o));
    o.num = 50;
    o.val = 1;
    CHECK_OK(md_shapes_generate(va, &o));
}

static void make_data(void) {
    make_set("build/shapes96", 0);
    make_set("build/shapes96e", 1);
}

static md_status run(const char *name, int resume, long long stop_after, int n_extra, char **extra) {
    char *ov[32];
    char nm[128];
    snprintf(nm, sizeof nm, "run.name=%s", name);
    int n = 0;
    ov[n++] = nm;
    ov[n++] = "run.output_dir=build/test_train_runs";
    ov[n++] = "run.threads=1"; /* fast on a shared 2-core machine; the resume test asks for 2 */
    for (int i = 0; i < n_extra && n < 32; i++) ov[n++] = extra[i];
    md_config cfg;
    md_status s = md_config_load(&cfg, CFG, n, ov);
    if (s) return s;
    md_train_options o;
    md_train_options_default(&o);
    o.quiet = 1;
    o.resume = resume;
    o.stop_after = stop_after;
    return md_train(&cfg, &o, NULL, 0);
}

static void rm_run(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "build/test_train_runs/%s", name);
    md_test_rm_rf(dir);
}

/* Reads the train lines of a run's metrics.jsonl: loss_total per iteration (iter-indexed, NAN if absent). */
typedef struct {
    double total[MAXLINES], parts[MAXLINES][4];
    int n;          /* max iter seen */
    double eval_ap, eval_ap50, eval_ap75; /* COCO stats 0, 1, 2 of the last eval line (-1: none) */
} metrics;

static int read_metrics(const char *name, metrics *m) {
    char path[512];
    snprintf(path, sizeof path, "build/test_train_runs/%s/metrics.jsonl", name);
    for (int i = 0; i < MAXLINES; i++) m->total[i] = NAN;
    m->n = 0;
    m->eval_ap = m->eval_ap50 = m->eval_ap75 = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
        int it = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "iter"));
        if (type && !strcmp(type, "train") && it > 0 && it < MAXLINES) {
            m->total[it] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss_total"));
            const char *k[4] = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"};
            for (int q = 0; q < 4; q++) m->parts[it][q] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, k[q]));
            if (it > m->n) m->n = it;
        } else if (type && !strcmp(type, "eval")) {
            cJSON *st = cJSON_GetObjectItem(j, "stats");
            if (cJSON_GetArraySize(st) == 12) {
                m->eval_ap = cJSON_GetNumberValue(cJSON_GetArrayItem(st, 0));
                m->eval_ap50 = cJSON_GetNumberValue(cJSON_GetArrayItem(st, 1));
                m->eval_ap75 = cJSON_GetNumberValue(cJSON_GetArrayItem(st, 2));
            }
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return 1;
}

static double mean_range(const metrics *m, int a, int b) {
    double s = 0;
    int c = 0;
    for (int i = a; i <= b; i++) if (!isnan(m->total[i])) { s += m->total[i]; c++; }
    return c ? s / c : NAN;
}

/* Every loss kind trains: 50 iterations of 2 images, the mean loss of the last 10 iterations is clearly
 * below that of the first 10 (warm-up included). The bound sits between the two cases it separates:
 * trained, last/first is 0.65-0.78 across the kinds; with base_lr 1e-6 (no learning) it is 1.02. */
static void test_loss_falls_every_kind(void) {
    const char *kinds[5] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
    for (int k = 0; k < 5; k++) {
        char name[64], loss[64];
        snprintf(name, sizeof name, "falls_%s", kinds[k]);
        snprintf(loss, sizeof loss, "roi_heads.box_loss=%s", kinds[k]);
        rm_run(name);
        char *ov[] = {loss, "solver.max_iter=50", "solver.ims_per_batch=2", "solver.warmup_iters=10", "solver.steps=",
                      "run.log_every=1", "data.val_ann=", "solver.checkpoint_every=0"};
        CHECK_OK(run(name, 0, 0, 8, ov));
        metrics m;
        CHECK(read_metrics(name, &m) && m.n == 50, "%s: metrics for 50 iterations (got %d)", kinds[k], m.n);
        double first = mean_range(&m, 1, 10), last = mean_range(&m, 41, 50);
        printf("  %-9s loss first 10 it %.4f, last 10 it %.4f\n", kinds[k], first, last);
        CHECK(last < 0.9 * first, "%s: loss did not fall enough: %.4f -> %.4f", kinds[k], first, last);
        rm_run(name);
    }
}

/* Mean of the logged RPN objectness losses (term 0) at iterations a..b; each logged value is the mean of its
 * log_every window, so with windows of 10, a = 550 and b = 600 give the mean over iterations 541-600. */
static double mean_objectness(const metrics *m, int a, int b) {
    double s = 0;
    int c = 0;
    for (int i = a; i <= b && i < MAXLINES; i++) if (!isnan(m->total[i])) { s += m->parts[i][0]; c++; }
    return c ? s / c : NAN;
}

/* Trains `iters` iterations of 4 images with the given box loss on build/<set> and returns the metrics,
 * whose eval stats are the trainer's final evaluation on the 50 held-out val images. */
static metrics train_and_eval(const char *name, const char *set, const char *loss, int iters) {
    char l[64], it[64], st[64], d[4][96];
    snprintf(l, sizeof l, "roi_heads.box_loss=%s", loss);
    snprintf(it, sizeof it, "solver.max_iter=%d", iters);
    snprintf(st, sizeof st, "solver.steps=%d", iters * 4 / 5 > 0 ? iters * 4 / 5 : 1);
    snprintf(d[0], sizeof d[0], "data.train_ann=build/%s/train/annotations.json", set);
    snprintf(d[1], sizeof d[1], "data.train_images=build/%s/train/images", set);
    snprintf(d[2], sizeof d[2], "data.val_ann=build/%s/val/annotations.json", set);
    snprintf(d[3], sizeof d[3], "data.val_images=build/%s/val/images", set);
    rm_run(name);
    char *ov[] = {l, it, st, "solver.checkpoint_every=0", "run.log_every=10", d[0], d[1], d[2], d[3]};
    CHECK_OK(run(name, 0, 0, 9, ov));
    metrics m;
    CHECK(read_metrics(name, &m), "metrics");
    char path[256];
    snprintf(path, sizeof path, "build/test_train_runs/%s/eval.json", name);
    CHECK(md_path_exists(path), "%s written", path);
    rm_run(name);
    return m;
}

/* Learning, checked with margins that a rounding-level change cannot cross (a change of OpenBLAS kernel
 * or thread count moves a short run's AP by a factor of two on the harder default set, so no single
 * trajectory is the reference). On build/shapes96e, giou, 600 iterations of 4 images from scratch.
 * Measured on the 2-core EPYC VM, 1 thread: seeds 42, 43, 44 with OpenBLAS's AVX-512 kernels and seed 42
 * with OPENBLAS_CORETYPE=Haswell give AP50 0.42-0.52, AP75 0.23-0.31 and a mean objectness loss of 0.11
 * over iterations 541-600; an untrained model (1 iteration) has AP50 <= 0.006. Thresholds: AP50 > 0.25,
 * AP75 > 0.10, objectness < 0.35 (half its untrained value, ln 2). Broken learning fails them: with the
 * RoI box-loss gradient zeroed the RPN's proposals alone still reach AP50 0.28, but AP75 stays at 0.01;
 * without any learning the objectness loss stays at ln 2 and AP50 near 0. MD_TRAIN_AP=long trains every
 * loss kind 1500 iterations on the harder default set and requires AP50 > 0.40 (minutes of CPU; not part
 * of make test). */
static void test_ap_after_training(void) {
    const char *mode = getenv("MD_TRAIN_AP");
    if (mode && !strcmp(mode, "long")) {
        const char *kinds[5] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
        for (int k = 0; k < 5; k++) {
            metrics m = train_and_eval("ap_long", "shapes96", kinds[k], 1500);
            printf("  %-9s AP50 on held-out shapes after 1500 iterations: %.4f\n", kinds[k], m.eval_ap50);
            CHECK(m.eval_ap50 > 0.40, "%s: AP50 %.4f <= 0.40", kinds[k], m.eval_ap50);
        }
        return;
    }
    metrics m0 = train_and_eval("ap_untrained", "shapes96e", "giou", 1);
    metrics m = train_and_eval("ap_giou", "shapes96e", "giou", 600);
    double obj = mean_objectness(&m, 550, 600);
    printf("  giou on shapes96e: AP50 / AP75 after 1 iteration %.4f / %.4f, after 600 iterations %.4f / %.4f (AP %.4f); "
           "objectness loss %.4f over iterations 1-10, %.4f over 541-600\n",
           m0.eval_ap50, m0.eval_ap75, m.eval_ap50, m.eval_ap75, m.eval_ap, m.parts[10][0], obj);
    CHECK(m0.eval_ap50 >= 0 && m0.eval_ap50 < 0.02, "untrained AP50 %.4f should be ~0", m0.eval_ap50);
    CHECK(m.n == 600, "600 iterations logged (%d)", m.n);
    CHECK(m.eval_ap50 > 0.25, "giou: AP50 %.4f <= 0.25 after 600 iterations (untrained %.4f)", m.eval_ap50, m0.eval_ap50);
    CHECK(m.eval_ap75 > 0.10, "giou: AP75 %.4f <= 0.10 after 600 iterations: boxes are not localised", m.eval_ap75);
    CHECK(obj < 0.35, "giou: objectness loss %.4f over iterations 541-600, not below half of ln 2", obj);
}

/* Every tensor of the two runs' last.safetensors is bitwise equal; returns how many were compared. */
static int same_last_weights(const char *ra, const char *rb, int *n_running, int *n_moved) {
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "build/test_train_runs/%s/last.safetensors", ra);
    snprintf(pb, sizeof pb, "build/test_train_runs/%s/last.safetensors", rb);
    md_st_file fa, fb;
    int n = 0;
    *n_running = *n_moved = 0;
    md_test_checks++;
    if (md_st_load(pa, &fa) != MD_OK) { md_test_fail(__FILE__, __LINE__, "%s: %s", pa, md_last_error()); return 0; }
    if (md_st_load(pb, &fb) != MD_OK) { md_test_fail(__FILE__, __LINE__, "%s: %s", pb, md_last_error()); md_st_free(&fa); return 0; }
    for (int i = 0; i < fa.count; i++) {
        const md_st_tensor *t = &fa.tensors[i];
        if (t->dtype != MD_DT_F32) continue;
        float *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        CHECK_OK(md_st_alloc_f32(&fa, t->name, &x, &nx));
        CHECK_OK(md_st_alloc_f32(&fb, t->name, &y, &ny));
        CHECK(x && y && nx == ny && !memcmp(x, y, nx * sizeof(float)), "%s differs between %s and %s", t->name, ra, rb);
        if (strstr(t->name, "running_")) {
            (*n_running)++;
            int moved = 0; /* the statistics were updated: running_mean left 0 / running_var left 1 */
            for (size_t j = 0; x && j < nx; j++) moved |= x[j] != (strstr(t->name, "running_var") ? 1.0f : 0.0f);
            *n_moved += moved;
        }
        free(x);
        free(y);
        n++;
    }
    md_st_free(&fa);
    md_st_free(&fb);
    return n;
}

/* 30 iterations straight vs 12 + resume to 30: identical losses at every iteration. */
static void resume_case(int bn) {
    char *ov[] = {"solver.max_iter=30", "solver.ims_per_batch=2", "solver.warmup_iters=5", "solver.steps=20",
                  "run.log_every=1", "data.val_ann=", "solver.checkpoint_every=0", "roi_heads.box_loss=ciou", "run.threads=2",
                  "model.norm=bn"};
    int nov = bn ? 10 : 9;
    rm_run("straight");
    rm_run("resumed");
    CHECK_OK(run("straight", 0, 0, nov, ov));
    CHECK(run("resumed", 0, 12, nov, ov) == MD_ERR_INTERRUPTED, "stop after 12 -> interrupted");
    CHECK(md_path_exists("build/test_train_runs/resumed/checkpoints/iter_0000012.safetensors"), "checkpoint at 12");
    CHECK_OK(run("resumed", 1, 0, nov, ov));
    if (bn) {
        int nr = 0, nm = 0, nt = same_last_weights("straight", "resumed", &nr, &nm);
        CHECK(nt > 50 && nr == 40, "compared %d tensors, %d running statistics (want 40)", nt, nr);
        CHECK(nm > 0, "no running statistic was updated by training with norm = bn");
    }
    metrics a, b;
    read_metrics("straight", &a);
    read_metrics("resumed", &b);
    CHECK(a.n == 30 && b.n == 30, "both reach 30 (%d, %d)", a.n, b.n);
    int same = 1;
    for (int i = 1; i <= 30; i++)
        for (int q = 0; q < 4; q++)
            if (!(a.parts[i][q] == b.parts[i][q])) {
                if (same) md_test_fail(__FILE__, __LINE__, "iteration %d term %d: %.9g vs %.9g", i, q, a.parts[i][q], b.parts[i][q]);
                same = 0;
            }
    md_test_checks++;
    /* a second start without --resume must refuse to overwrite */
    CHECK(run("resumed", 0, 0, nov, ov) == MD_ERR_ARG && strstr(md_last_error(), "--resume"), "refuses: %s", md_last_error());
    rm_run("straight");
    rm_run("resumed");
}
static void test_resume_bit_exact(void) { resume_case(0); }
static void test_resume_bit_exact_bn(void) { resume_case(1); }

/* ./train under SIGINT: exits 130 (128 + SIGINT) with a resume hint and a checkpoint; --resume finishes; a truncated
 * last.safetensors is refused by --resume with a clear message. */
static void test_sigint_and_truncated(void) {
    const char *bin = getenv("MD_BIN");
    char train[512];
    snprintf(train, sizeof train, "%s/train", bin ? bin : "build/bin");
    if (!md_test_need_path(train, "make (builds the train CLI)")) return;
    rm_run("sigint");
    if (system("mkdir -p build/test_train_runs")) return;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *lf = freopen("build/test_train_runs/sigint.log", "wb", stderr);
        (void)lf;
        execl(train, train, CFG, "run.name=sigint", "run.output_dir=build/test_train_runs", "solver.max_iter=100000",
              "solver.ims_per_batch=2", "run.log_every=1", "data.val_ann=", "solver.checkpoint_every=0", "--quiet", (char *)NULL);
        _exit(127);
    }
    /* wait for a few logged iterations, then interrupt */
    metrics m;
    m.n = 0;
    for (int t = 0; t < 1200; t++) {
        usleep(100000);
        if (read_metrics("sigint", &m) && m.n >= 3) break;
    }
    CHECK(m.n >= 3, "training started");
    CHECK(kill(pid, SIGINT) == 0, "signal delivered");
    int status = 0;
    char cmd[2048];
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130, "exit status 130 after SIGINT (status %d)", status);
    char log[4096];
    md_test_read_text("build/test_train_runs/sigint.log", log, sizeof log);
    CHECK(strstr(log, "--resume") != NULL, "resume hint printed: %s", log);
    CHECK(md_path_exists("build/test_train_runs/sigint/last.safetensors"), "checkpoint saved");
    read_metrics("sigint", &m);
    int stopped = m.n;
    /* resume for a few more iterations */
    snprintf(cmd, sizeof cmd, "%s " CFG " run.name=sigint run.output_dir=build/test_train_runs solver.max_iter=%d "
             "solver.ims_per_batch=2 run.log_every=1 data.val_ann= solver.checkpoint_every=0 --quiet --resume", train, stopped + 3);
    CHECK(system(cmd) == 0, "resume after SIGINT");
    read_metrics("sigint", &m);
    CHECK(m.n == stopped + 3, "resumed to %d (got %d)", stopped + 3, m.n);
    /* truncate the checkpoint: --resume must refuse, naming the file */
    if (truncate("build/test_train_runs/sigint/last.safetensors", 5000) != 0) md_test_fail(__FILE__, __LINE__, "truncate");
    char *ov[] = {"solver.max_iter=100", "solver.ims_per_batch=2", "data.val_ann="};
    md_status s = run("sigint", 1, 0, 3, ov);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "last.safetensors"), "truncated refused: %s", md_last_error());
    rm_run("sigint");
}

static void test_divergence_and_missing_data(void) {
    rm_run("diverge");
    char *ov[] = {"solver.base_lr=1e6", "solver.warmup_iters=0", "solver.max_iter=50", "solver.ims_per_batch=2",
                  "data.val_ann=", "solver.checkpoint_every=0", "solver.steps="};
    md_status s = run("diverge", 0, 0, 7, ov);
    CHECK(s == MD_ERR_NUMERIC, "diverging run stops with MD_ERR_NUMERIC (%s)", md_status_name(s));
    CHECK(strstr(md_last_error(), "iteration") && strstr(md_last_error(), "image ids"), "message: %s", md_last_error());
    CHECK(!md_path_exists("build/test_train_runs/diverge/last.safetensors"), "no checkpoint of a diverged state");
    rm_run("diverge");
    char *ov2[] = {"data.train_ann=build/nowhere/instances_train2017.json"};
    s = run("missing", 0, 0, 1, ov2);
    CHECK(s == MD_ERR_IO && strstr(md_last_error(), "build/nowhere/instances_train2017.json") &&
              strstr(md_last_error(), "scripts/get_coco.sh"), "missing data: %s", md_last_error());
    rm_run("missing");
}

/* With arguments, runs only the named cases (e.g. test_train test_resume_bit_exact). */
/* [rpn] aspect_ratios = 0.25, 0.5, 1, 2, 4: the tiny model trains (finite, falling-or-not losses) with an RPN
 * head of A = 5 anchors per location, its checkpoint carries the ratios (config and head shapes), and a
 * resume or an evaluation with other ratios fails naming them. */
static void test_aspect_ratios_train(void) {
    char *ov[] = {"solver.max_iter=4", "solver.warmup_iters=2", "run.log_every=1", "data.val_ann=", "solver.checkpoint_every=0",
                  "rpn.aspect_ratios=0.25,0.5,1,2,4"};
    rm_run("ratios5");
    CHECK_OK(run("ratios5", 0, 0, 6, ov));
    metrics m;
    read_metrics("ratios5", &m);
    CHECK(m.n == 4, "trained %d iterations", m.n);
    for (int i = 1; i <= m.n; i++) CHECK(isfinite(m.total[i]) && m.total[i] > 0, "iteration %d loss %g", i, m.total[i]);
    const char *ck = "build/test_train_runs/ratios5/last.safetensors";
    md_st_file f;
    if (md_st_load(ck, &f) == MD_OK) {
        const md_st_tensor *c = md_st_find(&f, "rpn.head.cls_logits.weight"), *b = md_st_find(&f, "rpn.head.bbox_pred.weight");
        CHECK(c && c->shape[0] == 5 && b && b->shape[0] == 20, "head shapes: cls %lld bbox %lld", c ? (long long)c->shape[0] : -1,
              b ? (long long)b->shape[0] : -1);
        const char *cfgtxt = md_st_meta(&f, "minidet.config");
        CHECK(cfgtxt && strstr(cfgtxt, "aspect_ratios = 0.25,0.5,1,2,4\n"), "checkpoint config carries the ratios");
        md_st_free(&f);
    } else {
        md_test_fail(__FILE__, __LINE__, "%s: %s", ck, md_last_error());
    }
    /* resume with other ratios (same count too): refused, naming the checkpoint's ratios */
    char *ov3[] = {"solver.max_iter=6", "data.val_ann=", "solver.checkpoint_every=0", "rpn.aspect_ratios=0.5,1,2"};
    md_status s = run("ratios5", 1, 0, 4, ov3);
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "aspect_ratios = 0.25,0.5,1,2,4") && strstr(md_last_error(), "rpn.aspect_ratios=0.25"),
          "resume with 3 ratios: %s", md_last_error());
    ov3[3] = "rpn.aspect_ratios=0.2,0.5,1,2,5";
    s = run("ratios5", 1, 0, 4, ov3);
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "aspect_ratios"), "resume with other 5 ratios: %s", md_last_error());
    /* ./eval --weights with the default ratios: refused; with the run's config.cfg it evaluates */
    char *ov_eval[] = {"run.threads=1"};
    md_eval_weights_options eo;
    md_eval_weights_options_default(&eo);
    eo.weights = ck;
    eo.config = CFG;
    eo.out = "build/test_train_runs/ratios5/r.json";
    eo.max_images = 4;
    eo.ann = "build/shapes96/val/annotations.json";
    eo.images = "build/shapes96/val/images";
    eo.n_overrides = 1;
    eo.overrides = ov_eval;
    CHECK(md_eval_weights(&eo) != MD_OK && strstr(md_last_error(), "aspect_ratios = 0.25,0.5,1,2,4"), "eval with 3 ratios: %s",
          md_last_error());
    eo.config = "build/test_train_runs/ratios5/config.cfg";
    CHECK_OK(md_eval_weights(&eo));
    rm_run("ratios5");
}

/* [model] weights_exclude: a run's last.safetensors (with optimizer.momentum.* and training metadata) as
 * [model] weights of a new run with another seed. Detector level: with "roi_heads., backbone.body.layer4."
 * excluded every other tensor equals the file's, every excluded one (BN running statistics of layer4
 * included) equals a fresh initialisation with the new seed, bit for bit; the report counts them.
 * Trainer level (weights_exclude = roi_heads., 1 step at lr 0.02): each tensor before the step
 * (w_after + lr * momentum for trained tensors, w_after for frozen BN buffers) is the file's / the fresh
 * init's; the run starts at iteration 0 with fresh momentum (sgd_steps 1). Bad syntax and a prefix that
 * matches nothing are errors naming it. */
static int excluded_name(const char *n) { return !strncmp(n, "roi_heads.", 10) || !strncmp(n, "backbone.body.layer4.", 21); }

static void test_weights_exclude(void) {
    const char *src = "build/test_train_runs/excl_src/last.safetensors";
    char *ov_src[] = {"solver.max_iter=3", "solver.warmup_iters=2", "run.log_every=1", "data.val_ann=", "solver.checkpoint_every=0",
                      "model.norm=bn"};
    rm_run("excl_src");
    rm_run("excl_ft");
    CHECK_OK(run("excl_src", 0, 0, 6, ov_src));
    md_st_file f;
    if (md_st_load(src, &f) != MD_OK) { md_test_fail(__FILE__, __LINE__, "%s: %s", src, md_last_error()); return; }
    CHECK(md_st_find(&f, "optimizer.momentum.roi_heads.box_head.fc6.weight") != NULL, "the source checkpoint holds optimizer state");
    /* detector level */
    md_config cfg;
    char *ov_det[] = {"model.norm=bn", "run.seed=7"};
    CHECK_OK(md_config_load(&cfg, CFG, 2, ov_det));
    md_detector det, fresh;
    CHECK_OK(md_detector_create(&det, &cfg));
    CHECK_OK(md_detector_create(&fresh, &cfg));
    md_load_report rep;
    CHECK_OK(md_detector_load_weights_ex(&det, src, 0, "roi_heads., backbone.body.layer4.", &rep));
    int nex = 0, bad_ex = 0, bad_in = 0, ex_differs = 0, in_differs = 0, ex_running = 0;
    for (int i = 0; i < det.num_params; i++) {
        const md_param *p = &det.params[i];
        float *fv = NULL;
        size_t nf = 0;
        CHECK_OK(md_st_alloc_f32(&f, p->name, &fv, &nf));
        if (!fv || nf != p->numel) { free(fv); continue; }
        int same_file = !memcmp(p->data, fv, nf * sizeof(float)), same_fresh = !memcmp(p->data, fresh.params[i].data, nf * sizeof(float));
        int file_is_init = !memcmp(fv, fresh.params[i].data, nf * sizeof(float));
        if (excluded_name(p->name)) {
            nex++;
            bad_ex += !same_fresh;
            ex_differs += !file_is_init;
            ex_running += strstr(p->name, "running_") && !file_is_init;
        } else {
            bad_in += !same_file;
            in_differs += !file_is_init;
        }
        free(fv);
    }
    CHECK(nex > 10 && bad_ex == 0, "%d of %d excluded tensors differ from a fresh initialisation", bad_ex, nex);
    CHECK(bad_in == 0, "%d loaded tensors differ from the file", bad_in);
    CHECK(ex_differs > 10 && ex_running >= 4 && in_differs > 10, "the file must differ from the initialisation (%d, %d running, %d)",
          ex_differs, ex_running, in_differs);
    CHECK(rep.excluded == nex && rep.loaded == det.num_params - nex && !rep.missing && !rep.unexpected && !rep.mismatched,
          "report: loaded %d excluded %d missing %d unexpected %d mismatched %d", rep.loaded, rep.excluded, rep.missing, rep.unexpected,
          rep.mismatched);
    char buf[2048];
    md_load_report_format(&rep, buf, sizeof buf);
    char want[128];
    snprintf(want, sizeof want, "%d excluded by [model] weights_exclude = roi_heads., backbone.body.layer4.", nex);
    CHECK(strstr(buf, want) != NULL, "report line: %s", buf);
    /* errors: the model is left as it was */
    md_detector_free(&det);
    CHECK_OK(md_detector_create(&det, &cfg)); /* a second fresh model: the failed loads must leave fresh untouched */
    md_status s = md_detector_load_weights_ex(&fresh, src, 0, "roi_heads.,roi_head.", NULL);
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "prefix 'roi_head.' matches no tensor"), "typo: %s", md_last_error());
    s = md_detector_load_weights_ex(&fresh, src, 0, "roi_heads.*", NULL);
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "'roi_heads.*' has '*'"), "syntax: %s", md_last_error());
    int untouched = 1;
    for (int i = 0; i < det.num_params; i++)
        untouched &= !memcmp(det.params[i].data, fresh.params[i].data, det.params[i].numel * sizeof(float));
    CHECK(untouched, "a refused load changed the model");
    md_config c2;
    char *bad1[] = {"model.weights_exclude=roi_heads.;rpn."}, *bad2[] = {"model.weights_exclude=roi_heads.,,rpn."},
         *bad3[] = {"model.weights_exclude=roi heads."}, *ok1[] = {"model.weights_exclude= roi_heads. , rpn.head. "};
    CHECK(md_config_load(&c2, CFG, 1, bad1) == MD_ERR_ARG && strstr(md_last_error(), "weights_exclude") && strstr(md_last_error(), "';'"),
          "';': %s", md_last_error());
    CHECK(md_config_load(&c2, CFG, 1, bad2) == MD_ERR_ARG && strstr(md_last_error(), "empty prefix"), "',,': %s", md_last_error());
    CHECK(md_config_load(&c2, CFG, 1, bad3) == MD_ERR_ARG && strstr(md_last_error(), "' '"), "space: %s", md_last_error());
    CHECK_OK(md_config_load(&c2, CFG, 1, ok1));
    md_detector_free(&det);
    md_detector_free(&fresh);
    /* trainer level: a new run from the checkpoint, RoI heads fresh */
    char wov[160];
    snprintf(wov, sizeof wov, "model.weights=%s", src);
    char *ov_ft[] = {wov, "model.weights_exclude=roi_heads.", "run.seed=7", "solver.max_iter=1", "solver.warmup_iters=0", "run.log_every=1",
                     "data.val_ann=", "solver.checkpoint_every=0"};
    char *typo[] = {wov, "model.weights_exclude=roi_heads.,rpn.heads.", "data.val_ann="};
    s = run("excl_ft", 0, 0, 3, typo);
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "'rpn.heads.'"), "trainer, typo: %s", md_last_error());
    rm_run("excl_ft");
    CHECK_OK(run("excl_ft", 0, 0, 8, ov_ft));
    CHECK_OK(md_config_load(&cfg, CFG, 8, ov_ft));
    CHECK_OK(md_detector_create(&fresh, &cfg));
    float lr = md_lr_at(&cfg.solver, 0);
    md_st_file g;
    const char *ft = "build/test_train_runs/excl_ft/last.safetensors";
    if (md_st_load(ft, &g) == MD_OK) {
        CHECK(!strcmp(md_st_meta(&g, "minidet.iteration") ? md_st_meta(&g, "minidet.iteration") : "", "1") &&
                  !strcmp(md_st_meta(&g, "minidet.sgd_steps") ? md_st_meta(&g, "minidet.sgd_steps") : "", "1"),
              "the new run starts at iteration 0 with fresh momentum");
        int ntr = 0, nfz = 0, bad = 0, nroi = 0;
        double worst = 0;
        for (int i = 0; i < fresh.num_params; i++) {
            const md_param *p = &fresh.params[i];
            float *w = NULL, *m = NULL, *e = NULL;
            size_t nw = 0, nm = 0, ne = 0;
            char mn[160];
            snprintf(mn, sizeof mn, "optimizer.momentum.%s", p->name);
            int roi = !strncmp(p->name, "roi_heads.", 10);
            nroi += roi;
            CHECK_OK(md_st_alloc_f32(&g, p->name, &w, &nw));
            if (roi) {
                e = malloc(p->numel * sizeof(float));
                if (e) memcpy(e, p->data, p->numel * sizeof(float));
                ne = p->numel;
            } else {
                CHECK_OK(md_st_alloc_f32(&f, p->name, &e, &ne));
            }
            if (md_st_find(&g, mn)) CHECK_OK(md_st_alloc_f32(&g, mn, &m, &nm));
            if (w && e && nw == p->numel && ne == nw && (!m || nm == nw)) {
                if (m) ntr++;
                else nfz++;
                for (size_t j = 0; j < nw; j++) {
                    double before_step = m ? (double)w[j] + (double)lr * m[j] : (double)w[j];
                    double d = fabs(before_step - e[j]), tol = m ? 1e-6 * (fabs(e[j]) + fabs(lr * m[j])) + 1e-12 : 0;
                    if (d > tol) bad++;
                    if (d > worst) worst = d;
                }
            } else {
                bad++;
            }
            free(w);
            free(m);
            free(e);
        }
        CHECK(bad == 0 && ntr > 20 && nfz > 10 && nroi == 8, "%d values are not the file's / a fresh init (worst %.3g; %d trained, %d frozen, %d roi)",
              bad, worst, ntr, nfz, nroi);
        md_st_free(&g);
    } else {
        md_test_fail(__FILE__, __LINE__, "%s: %s", ft, md_last_error());
    }
    metrics mt;
    read_metrics("excl_ft", &mt);
    CHECK(mt.n == 1 && isfinite(mt.total[1]), "the new run logged iteration %d", mt.n);
    md_detector_free(&fresh);
    md_st_free(&f);
    rm_run("excl_src");
    rm_run("excl_ft");
}

static int argc_, sel_;
static char **argv_;
static int want(const char *name) {
    if (argc_ < 2) return 1;
    for (int i = 1; i < argc_; i++) if (!strcmp(argv_[i], name)) return 1;
    return 0;
}
#define RUN_IF(fn) do { if (want(#fn)) { sel_++; MD_RUN(fn); } } while (0)

int main(int argc, char **argv) {
    argc_ = argc;
    argv_ = argv;
    make_data();
    RUN_IF(test_divergence_and_missing_data);
    RUN_IF(test_aspect_ratios_train);
    RUN_IF(test_weights_exclude);
    RUN_IF(test_resume_bit_exact);
    RUN_IF(test_resume_bit_exact_bn);
    RUN_IF(test_sigint_and_truncated);
    RUN_IF(test_loss_falls_every_kind);
    RUN_IF(test_ap_after_training);
    CHECK(sel_ > 0, "no test case matched the arguments");
    return md_test_summary();
}
