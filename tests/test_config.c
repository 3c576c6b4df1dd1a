/* test_config.c — INI config parser: round trip, overrides, every error path, suggestions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "minidet/config.h"
#include "minidet/fs.h"
#include "testutil.h"

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text, expects failure with every needle in the message. */
static void expect_error(const char *text, int n_ov, char *const *ov, const char *n1, const char *n2, const char *n3) {
    const char *path = text ? write_tmp("bad.cfg", text) : NULL;
    md_config c;
    md_config_defaults(&c);
    md_config before = c;
    md_status st = md_config_load(&c, path, n_ov, ov);
    CHECK(st != MD_OK, "loading should fail: %s", text ? text : (n_ov ? ov[0] : "?"));
    const char *m = md_last_error();
    if (st != MD_OK) {
        if (n1) CHECK(strstr(m, n1) != NULL, "error '%s' lacks '%s'", m, n1);
        if (n2) CHECK(strstr(m, n2) != NULL, "error '%s' lacks '%s'", m, n2);
        if (n3) CHECK(strstr(m, n3) != NULL, "error '%s' lacks '%s'", m, n3);
    }
    CHECK(!memcmp(&c, &before, sizeof c), "a failed load must leave the config untouched");
}

static void test_defaults_load_empty(void) {
    md_config a, b;
    md_config_defaults(&a);
    CHECK_OK(md_config_load(&b, write_tmp("empty.cfg", "; nothing\n# nothing\n"), 0, NULL));
    CHECK(!memcmp(&a, &b, sizeof a), "empty file = defaults");
    CHECK_NEAR(b.rpn.smooth_l1_beta, 1.0 / 9.0, 1e-7);
    CHECK(b.solver.num_steps == 2 && b.solver.steps[0] == 60000 && b.solver.steps[1] == 80000, "default steps");
    for (int l = 0; l < MD_RPN_ANCHOR_LEVELS; l++) /* torchvision AnchorGenerator sizes 32..512 */
        CHECK(b.rpn.anchor_sizes[l] == (float)(32 << l), "default anchor_sizes[%d] = %g", l, (double)b.rpn.anchor_sizes[l]);
    CHECK(b.rpn.num_aspect_ratios == 3 && b.rpn.aspect_ratios[0] == 0.5f && b.rpn.aspect_ratios[1] == 1.0f &&
          b.rpn.aspect_ratios[2] == 2.0f, "default aspect_ratios (torchvision 0.5, 1, 2)");
    CHECK(b.model.norm == MD_NORM_FROZEN_BN, "default norm = frozen_bn");
}

static void test_parse_values(void) {
    const char *text =
        "[run]\nname = giou_r50\nseed = 18446744073709551615\nthreads = 2\n"
        "[data]\ntrain_ann = data/coco/annotations/instances_train2017.json\nhflip = false\naspect_grouping = true\n"
        "bad_image_policy = skip\n"
        "[model]\ndepth = 18\nwidth_mult = 0.25\nweights =\nlabel_map = coco_id\nnum_classes = 4\nnorm = bn\n"
        "[rpn]\nbox_loss = giou\nanchor_sizes = 8, 16,32 ,64,128.5\naspect_ratios = 0.25, 0.5,1 ,2,4\n"
        "[roi_heads]\nbox_loss = diou ; inline comment\nbox_loss_space = image\n"
        "[solver]\nsteps = 100, 200 ,300\nbase_lr = 0.0025\n"
        "[test]\nnms = diou\ndiou_beta = 0.6\n";
    md_config c;
    CHECK_OK(md_config_load(&c, write_tmp("ok.cfg", text), 0, NULL));
    CHECK(!strcmp(c.run.name, "giou_r50"), "name %s", c.run.name);
    CHECK(c.run.seed == 18446744073709551615ULL, "u64 seed");
    CHECK(c.run.threads == 2, "threads");
    CHECK(!strcmp(c.data.train_ann, "data/coco/annotations/instances_train2017.json"), "train_ann");
    CHECK(c.data.hflip == 0 && c.data.aspect_grouping == 1 && c.data.bad_image_policy == 1, "bools");
    CHECK(c.model.depth == 18 && c.model.weights[0] == 0 && c.model.label_map == MD_LABELS_COCO_ID, "model");
    CHECK_NEAR(c.model.width_mult, 0.25, 0);
    CHECK(c.model.norm == MD_NORM_BN, "norm = bn");
    CHECK(c.rpn.box_loss == MD_BOXLOSS_GIOU, "rpn box loss");
    CHECK(c.rpn.anchor_sizes[0] == 8 && c.rpn.anchor_sizes[1] == 16 && c.rpn.anchor_sizes[2] == 32 &&
          c.rpn.anchor_sizes[3] == 64 && c.rpn.anchor_sizes[4] == 128.5f, "anchor_sizes");
    CHECK(c.rpn.num_aspect_ratios == 5 && c.rpn.aspect_ratios[0] == 0.25f && c.rpn.aspect_ratios[1] == 0.5f &&
          c.rpn.aspect_ratios[2] == 1 && c.rpn.aspect_ratios[3] == 2 && c.rpn.aspect_ratios[4] == 4 && c.rpn.aspect_ratios[5] == 0,
          "aspect_ratios: %d", c.rpn.num_aspect_ratios);
    CHECK_NEAR(c.rpn.box_loss_weight, 1.0, 0); /* the rpn weight is not tied to the loss */
    CHECK(c.roi_heads.box_loss == MD_BOXLOSS_DIOU && c.roi_heads.box_loss_space == MD_SPACE_IMAGE, "roi loss");
    CHECK_NEAR(c.roi_heads.box_loss_weight, 12.0, 0);
    CHECK(c.solver.num_steps == 3 && c.solver.steps[0] == 100 && c.solver.steps[1] == 200 && c.solver.steps[2] == 300, "steps");
    CHECK_NEAR(c.solver.base_lr, 0.0025f, 0);
    CHECK(c.test.nms == MD_NMS_DIOU, "nms");
    CHECK_NEAR(c.test.diou_beta, 0.6f, 0);
}

static void test_box_loss_weight_rule(void) {
    md_config c;
    const char *kinds[] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
    const double w[] = {1, 10, 10, 12, 12};
    for (int i = 0; i < 5; i++) {
        char text[128];
        snprintf(text, sizeof text, "[roi_heads]\nbox_loss = %s\n", kinds[i]);
        CHECK_OK(md_config_load(&c, write_tmp("w.cfg", text), 0, NULL));
        CHECK_NEAR(c.roi_heads.box_loss_weight, w[i], 0);
    }
    /* explicit weight wins regardless of order within the file */
    CHECK_OK(md_config_load(&c, write_tmp("w.cfg", "[roi_heads]\nbox_loss_weight = 3\nbox_loss = giou\n"), 0, NULL));
    CHECK_NEAR(c.roi_heads.box_loss_weight, 3, 0);
    /* an override of box_loss alone resets to the new default */
    char *ov1[] = {"roi_heads.box_loss=ciou"};
    CHECK_OK(md_config_load(&c, write_tmp("w.cfg", "[roi_heads]\nbox_loss_weight = 3\nbox_loss = giou\n"), 1, ov1));
    CHECK_NEAR(c.roi_heads.box_loss_weight, 12, 0);
    char *ov2[] = {"roi_heads.box_loss_weight=5", "roi_heads.box_loss=iou"};
    CHECK_OK(md_config_load(&c, NULL, 2, ov2));
    CHECK_NEAR(c.roi_heads.box_loss_weight, 5, 0);
    CHECK(c.roi_heads.box_loss == MD_BOXLOSS_IOU, "iou");
    /* md_config_set alone */
    md_config_defaults(&c);
    CHECK_OK(md_config_set(&c, "roi_heads", "box_loss", "giou"));
    CHECK_NEAR(c.roi_heads.box_loss_weight, 10, 0);
}

static void test_overrides(void) {
    md_config c;
    char *ov[] = {"solver.max_iter=500", "run.name = tiny", "model.weights=", "solver.steps=7", "test.nms=greedy"};
    CHECK_OK(md_config_load(&c, write_tmp("o.cfg", "[solver]\nmax_iter = 10\n[model]\nweights = x.safetensors\n"), 5, ov));
    CHECK(c.solver.max_iter == 500, "override beats file");
    CHECK(!strcmp(c.run.name, "tiny"), "trimmed value '%s'", c.run.name);
    CHECK(c.model.weights[0] == 0, "empty override");
    CHECK(c.solver.num_steps == 1 && c.solver.steps[0] == 7, "steps override");
    char *e1[] = {"solver.max_iter"};
    expect_error(NULL, 1, e1, "solver.max_iter", "section.key=value", NULL);
    char *e2[] = {"max_iter=3"};
    expect_error(NULL, 1, e2, "max_iter=3", "section.key=value", NULL);
    char *e3[] = {"solver.max_itr=3"};
    expect_error(NULL, 1, e3, "max_itr", "solver.max_iter", NULL);
    char *e4[] = {"solver.base_lr=abc"};
    expect_error(NULL, 1, e4, "base_lr", "abc", NULL);
}

static void test_round_trip(void) {
    md_config a;
    char *ov[] = {"run.name=rt", "run.seed=123456789012345", "data.val_ann=a b/c.json", "model.depth=34",
                  "model.width_mult=0.3", "rpn.box_loss=ciou", "rpn.smooth_l1_beta=0.1111111",
                  "roi_heads.box_loss=giou", "roi_heads.box_loss_weight=7.25", "roi_heads.ciou_alpha_gate=1",
                  "solver.steps=1,2,3,4,5,6,7,8", "solver.base_lr=0.0123456789", "solver.clip_grad_norm=35",
                  "test.nms=diou", "data.bad_image_policy=skip", "model.label_map=coco_id", "solver.warmup_factor=0.3333333",
                  "rpn.anchor_sizes=4.25,9,17.333333,70,1000", "model.norm=bn", "rpn.aspect_ratios=0.1,0.333333333,1.7",
                  "model.weights_exclude=roi_heads., rpn.head.cls_logits"};
    CHECK_OK(md_config_load(&a, NULL, (int)(sizeof ov / sizeof *ov), ov));
    char path[512];
    snprintf(path, sizeof path, "%s/rt.cfg", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK_OK(md_config_write(&a, f));
    fclose(f);
    md_config b;
    CHECK_OK(md_config_load(&b, path, 0, NULL));
    CHECK(!memcmp(&a, &b, sizeof a), "write + load is the identity");
    CHECK_NEAR(b.roi_heads.box_loss_weight, 7.25, 0);
    CHECK(b.model.norm == MD_NORM_BN, "norm round trip");
    /* defaults round trip too */
    md_config d, e;
    md_config_defaults(&d);
    f = fopen(path, "wb");
    CHECK_OK(md_config_write(&d, f));
    fclose(f);
    CHECK_OK(md_config_load(&e, path, 0, NULL));
    CHECK(!memcmp(&d, &e, sizeof d), "defaults round trip");
    /* the written file names every key: count lines with " = " */
    f = fopen(path, "rb");
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, " = ") != NULL;
    fclose(f);
    CHECK(n >= 60, "only %d keys written", n);
}

static void test_errors(void) {
    expect_error("[solver]\nbase_lr = 0.02\nmax_itr = 5\n", 0, NULL, "bad.cfg:3", "max_itr", "solver.max_iter");
    expect_error("[roi_heads]\nbox_loss_wieght = 5\n", 0, NULL, ":2", "box_loss_wieght", "roi_heads.box_loss_weight");
    expect_error("[solvr]\nbase_lr = 0.02\n", 0, NULL, "bad.cfg:2", "[solvr]", "[solver]");
    expect_error("base_lr = 0.02\n", 0, NULL, "bad.cfg:1", "outside any [section]", NULL);
    expect_error("[solver]\nbase_lr\n", 0, NULL, "bad.cfg:2", "syntax", NULL);
    expect_error("[solver\n", 0, NULL, "bad.cfg:1", "syntax", NULL);
    expect_error("[solver]\nbase_lr = fast\n", 0, NULL, "bad.cfg:2", "base_lr", "'fast'");
    expect_error("[solver]\nbase_lr = 0\n", 0, NULL, "base_lr", "(0,", NULL);
    expect_error("[solver]\nbase_lr = nan\n", 0, NULL, "base_lr", "finite", NULL);
    expect_error("[solver]\nmax_iter = 1.5\n", 0, NULL, "max_iter", "integer", NULL);
    expect_error("[solver]\nmax_iter = 0\n", 0, NULL, "max_iter", "[1,", NULL);
    expect_error("[solver]\nsteps = 10,5\n", 0, NULL, "steps", "increasing", NULL);
    expect_error("[solver]\nsteps = 1,2,3,4,5,6,7,8,9\n", 0, NULL, "steps", "at most 8", NULL);
    expect_error("[solver]\nsteps = 1 2\n", 0, NULL, "steps", "comma", NULL);
    expect_error("[solver]\nsteps = -3\n", 0, NULL, "steps", "positive", NULL);
    expect_error("[rpn]\nanchor_sizes = 8,16,32,64\n", 0, NULL, "bad.cfg:2", "anchor_sizes", "5 comma-separated");
    expect_error("[rpn]\nanchor_sizes = 8,16,32,64,128,256\n", 0, NULL, "anchor_sizes", "P2..P6", NULL);
    expect_error("[rpn]\nanchor_sizes = 8,16,0,64,128\n", 0, NULL, "anchor_sizes", "(0,", NULL);
    expect_error("[rpn]\nanchor_sizes = 8,16,-32,64,128\n", 0, NULL, "anchor_sizes", "'8,16,-32,64,128'", NULL);
    expect_error("[rpn]\nanchor_sizes = 8 16 32 64 128\n", 0, NULL, "anchor_sizes", "comma", NULL);
    expect_error("[rpn]\nanchor_sizes = 8,16,nan,64,128\n", 0, NULL, "anchor_sizes", NULL, NULL);
    expect_error("[rpn]\nanchor_sizes = 8,16,32,64,1e9\n", 0, NULL, "anchor_sizes", NULL, NULL);
    expect_error("[rpn]\nanchor_sizes =\n", 0, NULL, "anchor_sizes", NULL, NULL);
    expect_error(NULL, 1, (char *[]){"rpn.anchor_sizes=8,16,,64,128"}, "override", "anchor_sizes", NULL);
    expect_error("[rpn]\naspect_ratios =\n", 0, NULL, "bad.cfg:2", "aspect_ratios", "1 to 8 comma-separated");
    expect_error("[rpn]\naspect_ratios = 1,2,3,4,5,6,7,8,9\n", 0, NULL, "aspect_ratios", "1 to 8", NULL);
    expect_error("[rpn]\naspect_ratios = 0.5,0,2\n", 0, NULL, "aspect_ratios", "'0.5,0,2'", "(0,");
    expect_error("[rpn]\naspect_ratios = 0.5,-1,2\n", 0, NULL, "aspect_ratios", NULL, NULL);
    expect_error("[rpn]\naspect_ratios = 0.5 1 2\n", 0, NULL, "aspect_ratios", "comma", NULL);
    expect_error("[rpn]\naspect_ratios = 0.5,1,2,\n", 0, NULL, "aspect_ratios", NULL, NULL);
    expect_error("[rpn]\naspect_ratios = 0.5,inf\n", 0, NULL, "aspect_ratios", NULL, NULL);
    expect_error("[rpn]\naspect_ratios = 1e5\n", 0, NULL, "aspect_ratios", NULL, NULL);
    expect_error(NULL, 1, (char *[]){"rpn.aspect_ratios=0.5,,2"}, "override", "aspect_ratios", NULL);
    expect_error("[roi_heads]\nbox_loss = l2\n", 0, NULL, "box_loss", "iou, giou, diou, ciou, smooth_l1", NULL);
    expect_error("[roi_heads]\nbox_loss_space = pixel\n", 0, NULL, "box_loss_space", "proposal, image", NULL);
    expect_error("[test]\nnms = soft\n", 0, NULL, "nms", "greedy, diou", NULL);
    expect_error("[model]\nlabel_map = x\n", 0, NULL, "label_map", "contiguous, coco_id", NULL);
    expect_error("[model]\nnorm = gn\n", 0, NULL, "norm", "frozen_bn, bn", NULL);
    expect_error("[data]\nhflip = yes\n", 0, NULL, "hflip", "0, 1, true or false", NULL);
    expect_error("[model]\ndepth = 42\n", 0, NULL, "depth", "18, 34, 50 or 101", NULL);
    expect_error("[model]\nmin_size = 900\nmax_size = 800\n", 0, NULL, "max_size", "min_size", NULL);
    expect_error("[rpn]\nfg_iou_thresh = 0.2\n", 0, NULL, "bg_iou_thresh", "fg_iou_thresh", NULL);
    expect_error("[run]\nseed = -1\n", 0, NULL, "seed", "non-negative", NULL);
    expect_error("[run]\nname = a/b\n", 0, NULL, "name", "'/'", NULL);
    expect_error("[test]\nnms_thresh = 1.5\n", 0, NULL, "nms_thresh", "1]", NULL);
    char longline[400];
    snprintf(longline, sizeof longline, "[data]\ntrain_ann = %0300d\n", 0);
    expect_error(longline, 0, NULL, "bad.cfg:2", "longer than", NULL);
    md_config c;
    CHECK(md_config_load(&c, "/nonexistent/x.cfg", 0, NULL) == MD_ERR_IO, "missing file");
    CHECK(strstr(md_last_error(), "/nonexistent/x.cfg") != NULL, "names the file: %s", md_last_error());
    md_config_defaults(&c);
    CHECK(md_config_set(&c, "model", "dept", "50") == MD_ERR_ARG, "set unknown");
    CHECK(strstr(md_last_error(), "model.depth") != NULL, "suggests depth: %s", md_last_error());
    /* names other trainers use: the edit distance alone sent learning_rate to
     * roi_heads.sampling_ratio and lr to rpn.nms_thresh */
    static const char *const syn[][3] = {
        {"solver", "learning_rate", "solver.base_lr?"}, {"solver", "lr", "solver.base_lr?"},
        {"solver", "batch_size", "solver.ims_per_batch?"}, {"data", "batch_size", "solver.ims_per_batch?"},
        {"rpn", "batch_size", "rpn.batch_size_per_image?"}, {"solver", "epochs", "solver.max_iter? minidet counts steps"},
        {"solver", "max_iters", "solver.max_iter?"}, {"data", "num_workers", "data.workers?"},
        {"solver", "milestones", "solver.steps?"}, {"model", "pretrained", "model.weights?"},
        {"model", "frozen_stages", "model.trainable_layers?"}, {"roi_heads", "loss_bbox", "roi_heads.box_loss?"},
        {"rpn", "loss", "rpn.box_loss?"}, {"solver", "Learning_Rate", "solver.base_lr?"},
        {"test", "score_threshold", "test.score_thresh?"}, {"run", "work_dir", "run.output_dir?"},
    };
    for (size_t i = 0; i < sizeof syn / sizeof *syn; i++) {
        if (!syn[i][1][0]) continue;
        CHECK(md_config_set(&c, syn[i][0], syn[i][1], "1") == MD_ERR_ARG, "[%s] %s must be unknown", syn[i][0], syn[i][1]);
        CHECK(strstr(md_last_error(), syn[i][2]) != NULL, "[%s] %s: '%s' lacks '%s'", syn[i][0], syn[i][1], md_last_error(), syn[i][2]);
    }
    expect_error("[solver]\nlearning_rate = 0.01\n", 0, NULL, "bad.cfg:2", "'learning_rate'", "solver.base_lr");
    expect_error(NULL, 1, (char *[]){"solver.lr=0.01"}, "override", "'lr'", "solver.base_lr");
}

/* Every shipped config loads, with the loss and reference weight its name promises. */
static void test_shipped_configs(void) {
    const char *kinds[] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
    const double w[] = {1, 10, 10, 12, 12};
    const int depths[] = {50, 18};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 5; k++) {
            char path[128];
            snprintf(path, sizeof path, "configs/r%d_%s.cfg", depths[d], kinds[k]);
            md_config c;
            CHECK_OK(md_config_load(&c, path, 0, NULL));
            CHECK(!strcmp(md_box_loss_name(c.roi_heads.box_loss), kinds[k]), "%s: box_loss", path);
            CHECK_NEAR(c.roi_heads.box_loss_weight, w[k], 0);
            CHECK(c.model.depth == depths[d] && c.solver.ims_per_batch == 2 && c.solver.max_iter == 720000, "%s: schedule", path);
            CHECK_NEAR(c.solver.base_lr, 0.0025, 1e-9);
            CHECK(!strcmp(c.data.train_ann, "data/coco/annotations/instances_train2017.json"), "%s: data", path);
        }
    md_config c;
    CHECK_OK(md_config_load(&c, "configs/tiny_shapes_test.cfg", 0, NULL));
}

/* md_config_load_text: the resolved text a checkpoint stores loads back to the same struct; errors
 * carry the caller's name for it; overrides apply on top. */
static void test_load_text(void) {
    md_config a, b;
    CHECK_OK(md_config_load(&a, "configs/shapes_giou.cfg", 0, NULL));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(md_config_write(&a, f));
    fclose(f);
    CHECK_OK(md_config_load_text(&b, buf, "w.safetensors: stored config", 0, NULL));
    CHECK(!memcmp(&a, &b, sizeof a), "stored config text loads back identical");
    CHECK_OK(md_config_load_text(&b, buf, "w.safetensors: stored config", 1, (char *[]){"test.score_thresh=0.3"}));
    CHECK(b.test.score_thresh == 0.3f && b.model.depth == a.model.depth, "override on the stored config");
    free(buf);
    CHECK(md_config_load_text(&b, "[model]\ndepht = 3\n", "w.safetensors: stored config", 0, NULL) == MD_ERR_ARG &&
              strstr(md_last_error(), "w.safetensors: stored config:2: unknown key 'depht'"),
          "error names the text: %s", md_last_error());
}

/* md_config_lint: the shipped configs are clean; the mistakes users make are named, with the fix. */
static void expect_lint(const char *cfg, int n_ov, char *const *ov, int want, const char *n1, const char *n2) {
    md_config c;
    CHECK_OK(md_config_load(&c, cfg, n_ov, ov));
    char m[8][MD_LINT_LEN];
    int n = md_config_lint(&c, m, 8);
    CHECK(n == want, "%s %s: %d warnings, want %d%s%s", cfg, n_ov ? ov[0] : "", n, want, n ? ": " : "", n ? m[0] : "");
    char all[8 * MD_LINT_LEN] = "";
    for (int i = 0; i < n && i < 8; i++) strcat(strcat(all, m[i]), "\n");
    if (n1) CHECK(strstr(all, n1) != NULL, "%s: warnings '%s' lack '%s'", cfg, all, n1);
    if (n2) CHECK(strstr(all, n2) != NULL, "%s: warnings '%s' lack '%s'", cfg, all, n2);
}

static void test_lint(void) {
    static const char *const shipped[] = {"r50_giou", "r50_smooth_l1", "r18_ciou", "r50vd_giou", "shapes_pretrain", "shapes_giou"};
    for (int i = 0; i < 6; i++) {
        char p[128];
        snprintf(p, sizeof p, "configs/%s.cfg", shipped[i]);
        expect_lint(p, 0, NULL, 0, NULL, NULL);
    }
    /* a 20-step smoke run of the 1x schedule: warm-up 8000, lr 0.0025 x (0.001 x (1 - 19/8000) + 19/8000) at the
       last step; both lr steps past the end */
    expect_lint("configs/r50_giou.cfg", 1, (char *[]){"solver.max_iter=20"}, 2, "warmup_iters (8000) >= max_iter (20)", "8.43e-06");
    expect_lint("configs/r50_giou.cfg", 1, (char *[]){"solver.max_iter=20"}, 2, "steps: 480000 is not below max_iter (20)", NULL);
    expect_lint("configs/r50_giou.cfg", 1, (char *[]){"solver.max_iter=500000"}, 1, "640000 is not below max_iter (500000)", NULL);
    /* from scratch with frozen BN and frozen stages: the stem and layer1..2 stay random */
    expect_lint("configs/r50_giou.cfg", 1, (char *[]){"model.weights="}, 2, "model.norm=bn", "model.trainable_layers=5");
    expect_lint("configs/shapes_pretrain.cfg", 1, (char *[]){"model.norm=frozen_bn"}, 1, "model.norm=bn", NULL);
}

/* md_config_check_anchors: a checkpoint's resolved config against the run's anchors. */
static void test_check_anchors(void) {
    md_config c, d;
    md_config_defaults(&c);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(md_config_write(&c, f));
    fclose(f);
    CHECK_OK(md_config_check_anchors(&c, buf, "ck.safetensors"));
    CHECK_OK(md_config_check_anchors(&c, "[rpn]\nnms_thresh = 0.7\n", "old.safetensors")); /* keys absent: defaults */
    char *ov[] = {"rpn.aspect_ratios=0.25,0.5,1,2,4"};
    CHECK_OK(md_config_load(&d, NULL, 1, ov));
    md_status s = md_config_check_anchors(&d, buf, "ck.safetensors");
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "ck.safetensors") && strstr(md_last_error(), "aspect_ratios = 0.5,1,2") &&
              strstr(md_last_error(), "0.25,0.5,1,2,4") && strstr(md_last_error(), "rpn.aspect_ratios=0.5,1,2"),
          "other ratios: %s", md_last_error());
    s = md_config_check_anchors(&c, "[rpn]\naspect_ratios = 0.5, 1, 3\n", "ck.safetensors"); /* same count, other values */
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "aspect_ratios = 0.5,1,3"), "same count: %s", md_last_error());
    s = md_config_check_anchors(&c, "[rpn]\nanchor_sizes = 8,16,32,64,128\n[test]\naspect_ratios = 1\n", "ck.safetensors");
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "anchor_sizes = 8,16,32,64,128") && strstr(md_last_error(), "rpn.anchor_sizes="),
          "other sizes (a key of another section is not read): %s", md_last_error());
    s = md_config_check_anchors(&c, "[rpn]\naspect_ratios = x\n", "ck.safetensors");
    CHECK(s == MD_ERR_ARG && strstr(md_last_error(), "minidet.config"), "malformed: %s", md_last_error());
    free(buf);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/md_test_config_%d", (int)getpid());
    if (md_mkdir_p(tmpdir)) return 1;
    MD_RUN(test_defaults_load_empty);
    MD_RUN(test_parse_values);
    MD_RUN(test_box_loss_weight_rule);
    MD_RUN(test_overrides);
    MD_RUN(test_round_trip);
    MD_RUN(test_errors);
    MD_RUN(test_shipped_configs);
    MD_RUN(test_check_anchors);
    MD_RUN(test_lint);
    MD_RUN(test_load_text);
    if (md_test_rm_rf(tmpdir)) return 1;
    return md_test_summary();
}
