/* test_bad_input.c — the bad-input matrix (docs/DESIGN.md, "What bad input gets"; issue 10): every entry point given a broken
 * config, COCO JSON, image, results file, checkpoint or command line must fail cleanly.
 *
 * Library cases check: a non-OK status and ONE line of message (no newline) naming the file and,
 * where there is one, the field. CLI cases ($MD_BIN/eval, $MD_BIN/train) check: exit status != 0
 * and not killed by a signal (a crash or a sanitizer abort fails), exactly one non-empty line on
 * stderr, starting "minidet: " and naming the file (and field), and no output file (nor its temp
 * file) left behind. Inputs are generated at test time under build/bad_input/.
 *
 * Every case prints "| area | case | message |" (the docs/RELIABILITY.md matrix is this output). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stb_image_write.h>
#include "minidet/fs.h"
#include "minidet/checkpoint.h"
#include "minidet/cocoeval.h"
#include "minidet/coco.h"
#include "minidet/config.h"
#include "minidet/data.h"
#include "minidet/model.h"
#include "minidet/safetensors.h"
#include "minidet/shapes.h"
#include "testutil.h"

#define BDIR "build/bad_input"
#define MAX_NEEDLES 6

static char bin_dir[512];

/* ------------------------------------------------------------------ helpers */

static void put_file(const char *name, const void *data, size_t n) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "cannot create %s", p);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n, "short write %s", p);
    fclose(f);
}
static void put_str(const char *name, const char *s) { put_file(name, s, strlen(s)); }

/* Copies the first `keep` bytes of BDIR/src into BDIR/dst (keep < 0: drop -keep bytes from the end). */
static void truncate_copy(const char *src, const char *dst, long keep) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", src);
    size_t n;
    char *b = md_test_slurp(p, &n);
    CHECK(b != NULL, "cannot read %s", p);
    if (!b) return;
    size_t k = keep >= 0 ? (size_t)keep : n - (size_t)(-keep);
    put_file(dst, b, k < n ? k : n);
    free(b);
}

/* No path and no "path.tmp*" / "path.*tmp*" sibling. */
static int left_behind(const char *path, char *what, size_t cap) {
    if (md_path_exists(path)) { snprintf(what, cap, "%s", path); return 1; }
    char d[600];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) *slash = 0;
    else snprintf(d, sizeof d, ".");
    DIR *dir = opendir(d);
    if (!dir) return 0;
    struct dirent *e;
    int found = 0;
    size_t bl = strlen(base);
    while ((e = readdir(dir))) {
        if (!strncmp(e->d_name, base, bl) && e->d_name[bl] == '.' && strstr(e->d_name + bl, "tmp")) {
            snprintf(what, cap, "%.300s/%.255s", d, e->d_name);
            found = 1;
            break;
        }
    }
    closedir(dir);
    return found;
}

static void row(const char *area, const char *name, const char *msg) {
    printf("| %s | %s | `%s` |\n", area, name, msg);
}

static int collect_needles(va_list ap, const char **nd) {
    int n = 0;
    const char *s;
    while ((s = va_arg(ap, const char *)) && n < MAX_NEEDLES) nd[n++] = s;
    return n;
}

/* A library call must fail with one line naming every needle. */
static void lib_fail(const char *area, const char *name, md_status st, ...) {
    const char *nd[MAX_NEEDLES];
    va_list ap;
    va_start(ap, st);
    int nn = collect_needles(ap, nd);
    va_end(ap);
    const char *msg = md_last_error();
    md_test_checks++;
    if (st == MD_OK) { md_test_fail(__FILE__, __LINE__, "[%s / %s] succeeded, expected an error", area, name); return; }
    if (strchr(msg, '\n') || !*msg) md_test_fail(__FILE__, __LINE__, "[%s / %s] message is not one line: '%s'", area, name, msg);
    for (int i = 0; i < nn; i++)
        if (!strstr(msg, nd[i])) md_test_fail(__FILE__, __LINE__, "[%s / %s] message lacks '%s': %s", area, name, nd[i], msg);
    row(area, name, msg);
}

/* Runs $MD_BIN/argv[0] with argv; stdout to /dev/null, stderr captured. Returns the wait status. */
static int run_cli(const char *const *argv, char *err, size_t cap) {
    char prog[700], errpath[200];
    snprintf(prog, sizeof prog, "%s/%s", bin_dir, argv[0]);
    snprintf(errpath, sizeof errpath, BDIR "/stderr.%d.txt", (int)getpid());
    pid_t pid = md_test_spawn(prog, argv, errpath);
    int status = -1;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    size_t n = 0;
    char *e = md_test_slurp(errpath, &n);
    snprintf(err, cap, "%s", e ? e : "");
    free(e);
    remove(errpath);
    return status;
}

/* A CLI run must exit != 0 (not by a signal) with exactly one stderr line "minidet: ..." naming
 * every needle, and leave no `out` (nor out.tmp*) behind (out may be NULL). */
static void cli_fail_v(const char *area, const char *name, const char *out, const char *const *argv, va_list ap) {
    const char *nd[MAX_NEEDLES];
    int nn = collect_needles(ap, nd);
    char err[8192], what[700];
    if (out) remove(out);
    int status = run_cli(argv, err, sizeof err);
    md_test_checks++;
    if (status == -1) { md_test_fail(__FILE__, __LINE__, "[%s / %s] could not run %s", area, name, argv[0]); return; }
    if (WIFSIGNALED(status)) {
        md_test_fail(__FILE__, __LINE__, "[%s / %s] killed by signal %d; stderr: %s", area, name, WTERMSIG(status), err);
        return;
    }
    if (WEXITSTATUS(status) == 0) md_test_fail(__FILE__, __LINE__, "[%s / %s] exit status 0, expected failure", area, name);
    if (WEXITSTATUS(status) == 127) md_test_fail(__FILE__, __LINE__, "[%s / %s] %s/%s not runnable", area, name, bin_dir, argv[0]);
    /* one non-empty line */
    int lines = 0;
    char *first = NULL;
    for (char *s = err; *s;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        if (*s) { lines++; if (!first) first = s; }
        if (!nl) break;
        s = nl + 1;
    }
    if (lines != 1) {
        for (char *s = err; s < err + sizeof err && (s = memchr(s, 0, err + sizeof err - s)) && s[1]; ) *s = '\n';
        md_test_fail(__FILE__, __LINE__, "[%s / %s] %d stderr lines, expected 1: %s", area, name, lines, first ? first : "(none)");
    }
    if (!first) return;
    if (strncmp(first, "minidet: ", 9)) md_test_fail(__FILE__, __LINE__, "[%s / %s] stderr does not start with 'minidet: ': %s", area, name, first);
    for (int i = 0; i < nn; i++)
        if (!strstr(first, nd[i])) md_test_fail(__FILE__, __LINE__, "[%s / %s] stderr lacks '%s': %s", area, name, nd[i], first);
    if (out && left_behind(out, what, sizeof what)) md_test_fail(__FILE__, __LINE__, "[%s / %s] left %s behind", area, name, what);
    row(area, name, first);
}

static void cli_fail(const char *area, const char *name, const char *out, const char *const *argv, ...) {
    va_list ap;
    va_start(ap, argv);
    cli_fail_v(area, name, out, argv, ap);
    va_end(ap);
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ------------------------------------------------------------------ configs (library) */

static md_status load_cfg(const char *text_name) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", text_name);
    md_config c;
    return md_config_load(&c, p, 0, NULL);
}

static void test_configs(void) {
    md_config c;
    put_str("unknown_key.cfg", "[model]\ndepth = 18\ndepht = 34\n");
    lib_fail("config", "unknown key", load_cfg("unknown_key.cfg"), "unknown_key.cfg:3", "depht", "model.depth", NULL);
    put_str("bad_value.cfg", "[solver]\nbase_lr = fast\n");
    lib_fail("config", "bad value (not a number)", load_cfg("bad_value.cfg"), "bad_value.cfg:2", "base_lr", "fast", NULL);
    put_str("bad_range.cfg", "[model]\ndepth = 77\n");
    lib_fail("config", "bad value (depth 77)", load_cfg("bad_range.cfg"), "bad_range.cfg:2", "depth", "77", NULL);
    put_str("bad_enum.cfg", "[roi_heads]\nbox_loss = eiou\n");
    lib_fail("config", "bad value (unknown loss)", load_cfg("bad_enum.cfg"), "bad_enum.cfg:2", "box_loss", "eiou", NULL);
    put_str("unknown_section.cfg", "[modle]\ndepth = 18\n");
    lib_fail("config", "unknown section", load_cfg("unknown_section.cfg"), "unknown_section.cfg:2", "[modle]", "[model]", NULL);
    put_str("no_section.cfg", "depth = 18\n");
    lib_fail("config", "key outside any section", load_cfg("no_section.cfg"), "no_section.cfg:1", "depth", "section", NULL);
    put_str("syntax.cfg", "[model]\ndepth 18\n");
    lib_fail("config", "line without '='", load_cfg("syntax.cfg"), "syntax.cfg:2", NULL);
    put_str("unclosed.cfg", "[model\ndepth = 18\n");
    lib_fail("config", "unclosed section header", load_cfg("unclosed.cfg"), "unclosed.cfg:1", NULL);
    put_file("binary.cfg", "[run]\n\0\x01\x02", 9);
    lib_fail("config", "binary file (NUL byte)", load_cfg("binary.cfg"), "binary.cfg", "NUL", NULL);
    put_str("sizes.cfg", "[model]\nmin_size = 800\nmax_size = 600\n");
    lib_fail("config", "inconsistent values (max_size < min_size)", load_cfg("sizes.cfg"), "sizes.cfg", "max_size", NULL);
    lib_fail("config", "missing file", load_cfg("no_such.cfg"), "no_such.cfg", "No such file", NULL);
    lib_fail("config", "directory given as the file", md_config_load(&c, BDIR, 0, NULL), BDIR, "directory", NULL);
    char *ov1[] = {"model.depht=18"};
    lib_fail("config", "override: unknown key", md_config_load(&c, NULL, 1, ov1), "depht", "model.depth", NULL);
    char *ov2[] = {"solver.base_lr"};
    lib_fail("config", "override without '='", md_config_load(&c, NULL, 1, ov2), "solver.base_lr", "section.key=value", NULL);
    char *ov3[] = {"solver.max_iter=-5"};
    lib_fail("config", "override: bad value", md_config_load(&c, NULL, 1, ov3), "max_iter", "-5", NULL);
}

/* ------------------------------------------------------------------ COCO annotations */

static const char *GT_OK =
    "{\"images\": [{\"id\": 1, \"width\": 64, \"height\": 48, \"file_name\": \"a.png\"},\n"
    "              {\"id\": 2, \"width\": 32, \"height\": 32, \"file_name\": \"b.png\"}],\n"
    " \"categories\": [{\"id\": 1, \"name\": \"cat\"}, {\"id\": 3, \"name\": \"dog\"}],\n"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 30], \"area\": 600, \"iscrowd\": 0},\n"
    "                   {\"id\": 2, \"image_id\": 2, \"category_id\": 3, \"bbox\": [5, 5, 10, 10], \"area\": 100, \"iscrowd\": 0}]}\n";

static md_status coco_load_file(const char *name) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", name);
    md_coco c;
    md_status st = md_coco_load(&c, p, NULL);
    md_coco_free(&c);
    return st;
}

static md_status gt_load_file(const char *name) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", name);
    md_coco_gt *gt = NULL;
    md_status st = md_coco_gt_load(p, &gt);
    if (gt) md_coco_gt_free(gt);
    return st;
}

/* The same broken file through both COCO readers (training's md_coco_load, evaluation's md_coco_gt_load). */
static void coco_both(const char *name, const char *file, const char *n1, const char *n2) {
    char a[128];
    snprintf(a, sizeof a, "%s (train loader)", name);
    lib_fail("COCO json", a, coco_load_file(file), file, n1, n2, NULL);
    snprintf(a, sizeof a, "%s (eval loader)", name);
    lib_fail("COCO json", a, gt_load_file(file), file, n1, n2, NULL);
}

static void test_coco(void) {
    put_str("gt.json", GT_OK);
    CHECK_OK(coco_load_file("gt.json"));
    CHECK_OK(gt_load_file("gt.json"));
    put_str("coco_malformed.json", "{\"images\": [{\"id\": 1,, \"width\": 3}]}");
    coco_both("malformed", "coco_malformed.json", "byte", NULL);
    truncate_copy("gt.json", "coco_truncated.json", 300);
    coco_both("truncated at byte 300", "coco_truncated.json", "byte", NULL);
    put_str("coco_zero.json", "");
    coco_both("zero-byte file", "coco_zero.json", "empty", NULL);
    put_str("coco_empty_obj.json", "{}");
    coco_both("{} (no images)", "coco_empty_obj.json", "images", NULL);
    put_str("coco_list.json", "[1, 2]");
    coco_both("top level is a list", "coco_list.json", "coco_list.json", NULL);
    put_str("coco_images_obj.json", "{\"images\": {}, \"annotations\": [], \"categories\": []}");
    coco_both("wrong type: images is an object", "coco_images_obj.json", "images", NULL);
    put_str("coco_id_str.json", "{\"images\": [{\"id\": \"1\", \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}], "
                                "\"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("wrong type: image id is a string", "coco_id_str.json", "images[0]", "id");
    put_str("coco_bbox_str.json", "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}], "
                                  "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": \"0 0 2 2\"}], "
                                  "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("wrong type: bbox is a string", "coco_bbox_str.json", "annotations[0]", "bbox");
    put_str("coco_bbox_short.json", "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}], "
                                    "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 2]}], "
                                    "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("bbox with 3 numbers", "coco_bbox_short.json", "annotations[0]", "bbox");
    put_str("coco_unknown_img.json", "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}], "
                                     "\"annotations\": [{\"id\": 1, \"image_id\": 9, \"category_id\": 1, \"bbox\": [0, 0, 2, 2], \"area\": 4, \"iscrowd\": 0}], "
                                     "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("annotation with unknown image id", "coco_unknown_img.json", "annotations[0]", "image_id");
    put_str("coco_unknown_cat.json", "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}], "
                                     "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 5, \"bbox\": [0, 0, 2, 2], \"area\": 4, \"iscrowd\": 0}], "
                                     "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("annotation with unknown category id", "coco_unknown_cat.json", "annotations[0]", "category_id");
    put_str("coco_dup_img.json", "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"a.png\"}, "
                                 "{\"id\": 1, \"width\": 4, \"height\": 4, \"file_name\": \"b.png\"}], "
                                 "\"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    coco_both("duplicate image id", "coco_dup_img.json", "images", "id 1");
    put_str("coco_neg_w.json", "{\"images\": [{\"id\": 1, \"width\": -4, \"height\": 4, \"file_name\": \"a.png\"}], "
                               "\"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    lib_fail("COCO json", "negative image width (train loader)", coco_load_file("coco_neg_w.json"), "coco_neg_w.json", "images[0]",
             "width", NULL);
    /* boxes: w <= 0, infinite, outside the image: counted under the default policy, an error under "fail" */
    put_str("coco_boxes.json", "{\"images\": [{\"id\": 1, \"width\": 10, \"height\": 10, \"file_name\": \"a.png\"}], "
                               "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 1, 0, 4]}, "
                               "{\"id\": 2, \"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 1, 1e999, 4]}, "
                               "{\"id\": 3, \"image_id\": 1, \"category_id\": 1, \"bbox\": [50, 50, 4, 4]}, "
                               "{\"id\": 4, \"image_id\": 1, \"category_id\": 1, \"bbox\": [8, 8, 4, 4]}], "
                               "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    md_coco bc;
    md_coco_options bo;
    md_coco_options_default(&bo);
    CHECK_OK(md_coco_load(&bc, BDIR "/coco_boxes.json", &bo));
    CHECK(bc.stats.dropped_degenerate == 2 && bc.stats.dropped_nonfinite == 1 && bc.stats.clipped == 1 && bc.images[0].num_targets == 1,
          "box policy clip: degenerate %d, non-finite %d, clipped %d, targets %d", bc.stats.dropped_degenerate, bc.stats.dropped_nonfinite,
          bc.stats.clipped, bc.images[0].num_targets);
    md_coco_free(&bc);
    bo.boxes = MD_BOX_FAIL;
    lib_fail("COCO json", "box with w = 0 (box policy fail)", md_coco_load(&bc, BDIR "/coco_boxes.json", &bo), "coco_boxes.json",
             "annotations[0]", "bbox", NULL);
    md_coco_free(&bc);
    put_str("coco_empty_ds.json", "{\"images\": [], \"annotations\": [], \"categories\": []}");
    lib_fail("COCO json", "empty dataset (no categories; eval loader)", gt_load_file("coco_empty_ds.json"), "coco_empty_ds.json", NULL);
    lib_fail("COCO json", "missing file", coco_load_file("no_such.json"), "no_such.json", "No such file", NULL);
    md_coco c;
    lib_fail("COCO json", "directory given as the file", md_coco_load(&c, BDIR, NULL), BDIR, "directory", NULL);
    md_coco_free(&c);
}

/* ------------------------------------------------------------------ images */

static md_status img_load(const char *name) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", name);
    md_image im;
    md_status st = md_image_load(p, 0, &im);
    md_image_free(&im);
    return st;
}
static md_status img_probe(const char *name) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", name);
    int w, h;
    return md_image_probe(p, 0, &w, &h);
}

static void both_image(const char *name, const char *file, const char *needle) {
    char a[128];
    snprintf(a, sizeof a, "%s (decode)", name);
    lib_fail("image", a, img_load(file), file, needle, NULL);
    snprintf(a, sizeof a, "%s (start-up probe)", name);
    lib_fail("image", a, img_probe(file), file, needle, NULL);
}

static void test_images(void) {
    uint8_t px[8 * 8 * 3];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 37);
    char p[600];
    snprintf(p, sizeof p, BDIR "/ok.png");
    CHECK(stbi_write_png(p, 8, 8, 3, px, 24), "write png");
    snprintf(p, sizeof p, BDIR "/ok.jpg");
    CHECK(stbi_write_jpg(p, 8, 8, 3, px, 90), "write jpg");
    snprintf(p, sizeof p, BDIR "/one.png");
    CHECK(stbi_write_png(p, 1, 1, 3, px, 3), "write 1x1 png");
    CHECK_OK(img_load("ok.png"));
    CHECK_OK(img_load("ok.jpg"));

    put_str("zero.png", "");
    both_image("zero-byte file", "zero.png", "zero-byte");
    put_str("corrupt.png", "this is not an image at all, just some text pretending to be a PNG file");
    both_image("corrupt (text named .png)", "corrupt.png", "corrupt.png");
    truncate_copy("ok.jpg", "trunc.jpg", -40);
    both_image("truncated JPEG", "trunc.jpg", "truncated");
    truncate_copy("ok.png", "trunc.png", 60);
    lib_fail("image", "truncated PNG (decode)", img_load("trunc.png"), "trunc.png", NULL);
    /* PNG header declaring 100000 x 100000 (stb_image does not check CRCs) */
    size_t n;
    snprintf(p, sizeof p, BDIR "/ok.png");
    uint8_t *b = (uint8_t *)md_test_slurp(p, &n);
    CHECK(b && n > 24 && !memcmp(b + 12, "IHDR", 4), "png layout");
    if (b && n > 24) {
        const uint8_t big[8] = {0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0};
        memcpy(b + 16, big, 8);
        put_file("huge.png", b, n);
        /* 30000 x 20000: fits stb_image's 2^31-byte limit, the pixels are missing */
        const uint8_t mid[8] = {0, 0, 0x75, 0x30, 0, 0, 0x4E, 0x20};
        memcpy(b + 16, mid, 8);
        put_file("large.png", b, n);
    }
    free(b);
    both_image("declared 100000x100000 PNG", "huge.png", "huge.png");
    both_image("declared 30000x20000 PNG", "large.png", "large");
    lib_fail("image", "directory given as the image", img_load(""), BDIR, "directory", NULL);
    lib_fail("image", "missing file", img_load("no_such.png"), "no_such.png", "No such file", NULL);
    /* 1x1 image: loads and goes through the resize */
    md_image im;
    snprintf(p, sizeof p, BDIR "/one.png");
    CHECK_OK(md_image_load(p, 0, &im));
    CHECK(im.width == 1 && im.height == 1, "1x1 image is %dx%d", im.width, im.height);
    md_image_free(&im);
    /* ... and through the training batch builder (resize 1x1 -> 64x64, box clipped to the pixel) */
    put_str("one.json", "{\"images\": [{\"id\": 1, \"width\": 1, \"height\": 1, \"file_name\": \"one.png\"}], "
                        "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 3, 3]}], "
                        "\"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    md_coco one;
    CHECK_OK(md_coco_load(&one, BDIR "/one.json", NULL));
    md_data_options dopt;
    md_data_options_default(&dopt);
    dopt.min_size = dopt.max_size = 64;
    md_batch batch;
    memset(&batch, 0, sizeof batch);
    float *scratch = NULL;
    size_t scap = 0;
    int idx0 = 0;
    uint8_t fl = 1;
    CHECK_OK(md_batch_build(&batch, &one, BDIR, &idx0, &fl, 1, &dopt, &scratch, &scap));
    CHECK(batch.n == 1 && batch.info[0].h == 64 && batch.info[0].w == 64 && batch.num_boxes == 1, "1x1 batch: %dx%d, %d boxes",
          batch.info[0].h, batch.info[0].w, batch.num_boxes);
    int finite = 1;
    for (size_t i = 0; batch.images && i < (size_t)3 * batch.height * batch.width; i++) finite &= isfinite(batch.images[i]);
    CHECK(finite, "1x1 batch pixels finite");
    CHECK(batch.num_boxes == 1 && batch.boxes[0] == 0 && batch.boxes[1] == 0 && batch.boxes[2] == 64 && batch.boxes[3] == 64,
          "1x1 box clipped to the image then resized: %g %g %g %g", batch.boxes[0], batch.boxes[1], batch.boxes[2], batch.boxes[3]);
    md_batch_free(&batch);
    free(scratch);
    md_coco_free(&one);

    /* the start-up dataset check names the image, the annotation file and the field */
    put_str("ds.json", "{\"images\": [{\"id\": 1, \"width\": 8, \"height\": 8, \"file_name\": \"ok.png\"}, "
                       "{\"id\": 7, \"width\": 8, \"height\": 9, \"file_name\": \"ok.jpg\"}, "
                       "{\"id\": 8, \"width\": 8, \"height\": 8, \"file_name\": \"zero.png\"}], "
                       "\"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}]}");
    md_coco c;
    CHECK_OK(md_coco_load(&c, BDIR "/ds.json", NULL));
    int nbad = 0;
    lib_fail("image", "size differs from the JSON (dataset check)", md_dataset_check(&c, BDIR, MD_POLICY_FAIL, 0, NULL, &nbad), "ok.jpg",
             "ds.json", "id 7", "height", NULL);
    uint8_t bad[3] = {0};
    CHECK_OK(md_dataset_check(&c, BDIR, MD_POLICY_SKIP, 0, bad, &nbad));
    CHECK(nbad == 2 && !bad[0] && bad[1] && bad[2], "skip policy counts 2 bad images: %d", nbad);
    md_coco_free(&c);
}

/* ------------------------------------------------------------------ results JSON through ./eval */

static void eval_res(const char *name, const char *file, const char *content, const char *n1, const char *n2) {
    char res[600];
    snprintf(res, sizeof res, BDIR "/%s", file);
    if (content) put_str(file, content);
    cli_fail("./eval results", name, BDIR "/out.json", ARGV("eval", "--ann", BDIR "/gt.json", "--results", res, "--json", BDIR "/out.json"),
             file, n1, n2, NULL);
}

static void test_eval_results(void) {
    put_str("gt.json", GT_OK);
    put_str("res_ok.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 30], \"score\": 0.9}]");
    char err[4096];
    remove(BDIR "/out.json");
    int status = run_cli(ARGV("eval", "--ann", BDIR "/gt.json", "--results", BDIR "/res_ok.json", "--json", BDIR "/out.json"), err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && md_path_exists(BDIR "/out.json"), "good results evaluate (status %d): %s", status, err);
    eval_res("malformed", "res_malformed.json", "[{\"image_id\": 1 \"category_id\": 1}]", "byte", NULL);
    eval_res("truncated", "res_trunc.json", "[{\"image_id\": 1, \"category_id\": 1, \"bb", "byte", NULL);
    eval_res("zero-byte file", "res_zero.json", "", "empty", NULL);
    eval_res("empty list []", "res_empty.json", "[]", "empty", NULL);
    eval_res("not a list ({})", "res_obj.json", "{}", "list", NULL);
    eval_res("unknown image id", "res_uimg.json", "[{\"image_id\": 7, \"category_id\": 1, \"bbox\": [1, 1, 2, 2], \"score\": 0.5}]",
             "image_id", "7");
    eval_res("unknown category id", "res_ucat.json", "[{\"image_id\": 1, \"category_id\": 9, \"bbox\": [1, 1, 2, 2], \"score\": 0.5}]",
             "category_id", "9");
    eval_res("wrong type: bbox is a string", "res_bbox.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": \"x\", \"score\": 0.5}]",
             "bbox", NULL);
    eval_res("wrong type: score is a string", "res_score.json",
             "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 1, 2, 2], \"score\": \"high\"}]", "score", NULL);
    eval_res("missing score", "res_nosc.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 1, 2, 2]}]", "score", NULL);
    eval_res("missing file", "no_such.json", NULL, "No such file", NULL);
    cli_fail("./eval results", "directory given as --results", BDIR "/out.json",
             ARGV("eval", "--ann", BDIR "/gt.json", "--results", BDIR, "--json", BDIR "/out.json"), BDIR, "directory", NULL);
    cli_fail("./eval results", "malformed ground truth (--ann)", BDIR "/out.json",
             ARGV("eval", "--ann", BDIR "/coco_malformed.json", "--results", BDIR "/res_ok.json", "--json", BDIR "/out.json"),
             "coco_malformed.json", "byte", NULL);
    cli_fail("./eval results", "directory given as --ann", BDIR "/out.json",
             ARGV("eval", "--ann", BDIR, "--results", BDIR "/res_ok.json", "--json", BDIR "/out.json"), BDIR, "directory", NULL);
}

/* ------------------------------------------------------------------ command lines */

static void test_command_lines(void) {
    put_str("gt.json", GT_OK);
    put_str("res_ok.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 30], \"score\": 0.9}]");
    const char *gt = BDIR "/gt.json", *res = BDIR "/res_ok.json";
    cli_fail("./eval command line", "unknown option", NULL, ARGV("eval", "--frobnicate", "--ann", gt), "--frobnicate", NULL);
    cli_fail("./eval command line", "option without its value", NULL, ARGV("eval", "--ann", gt, "--results"), "--results", NULL);
    cli_fail("./eval command line", "--results without --ann", NULL, ARGV("eval", "--results", res), "--ann", NULL);
    cli_fail("./eval command line", "bad --threads", NULL, ARGV("eval", "--threads", "many", "--ann", gt, "--results", res), "--threads",
             "many", NULL);
    cli_fail("./eval command line", "missing --ann file", NULL, ARGV("eval", "--ann", BDIR "/nope.json", "--results", res), "nope.json",
             "No such file", NULL);
    cli_fail("./eval command line", "--json into a missing directory", BDIR "/nodir/out.json",
             ARGV("eval", "--ann", gt, "--results", res, "--json", BDIR "/nodir/out.json"), "nodir/out.json", NULL);
    cli_fail("./eval command line", "--json under a regular file", NULL,
             ARGV("eval", "--ann", gt, "--results", res, "--json", BDIR "/gt.json/out.json"), "gt.json/out.json", NULL);
    cli_fail("./eval command line", "--json into an unwritable directory (/proc)", "/proc/minidet_out.json",
             ARGV("eval", "--ann", gt, "--results", res, "--json", "/proc/minidet_out.json"), "/proc/minidet_out.json", NULL);
    cli_fail("./eval command line", "--json is a directory", NULL, ARGV("eval", "--ann", gt, "--results", res, "--json", BDIR),
             BDIR, NULL);
    cli_fail("./eval command line", "RUN_DIR does not exist", NULL, ARGV("eval", BDIR "/no_run"), "no_run", "No such file", NULL);
    cli_fail("./eval command line", "RUN_DIR is a file", NULL, ARGV("eval", gt), "gt.json", "not a directory", NULL);
    /* ./eval RUN_DIR on broken runs: nothing written to --out */
    mkdir(BDIR "/rd", 0755);
    mkdir(BDIR "/rd/empty", 0755);
    mkdir(BDIR "/rd/trunc", 0755);
    mkdir(BDIR "/rd/types", 0755);
    put_str("rd/trunc/eval.json", "{\"stats\": [0.1, 0.2");
    put_str("rd/types/eval.json", "{\"stats\": \"high\"}");
    cli_fail("./eval RUN_DIR", "run without eval.json", BDIR "/rd/out", ARGV("eval", BDIR "/rd/empty", "--out", BDIR "/rd/out"), "rd/empty",
             "eval.json", NULL);
    cli_fail("./eval RUN_DIR", "truncated eval.json", BDIR "/rd/out", ARGV("eval", BDIR "/rd/trunc", "--out", BDIR "/rd/out"),
             "rd/trunc/eval.json", "malformed", NULL);
    cli_fail("./eval RUN_DIR", "eval.json stats of the wrong type", BDIR "/rd/out", ARGV("eval", BDIR "/rd/types", "--out", BDIR "/rd/out"),
             "rd/types/eval.json", "stats", NULL);
    /* metrics.jsonl of a killed run: a torn line (last or inside) is an error naming path:line */
    mkdir(BDIR "/rd/killed", 0755);
    put_str("rd/killed/eval.json", "{\"stats\": [0.5, 0.6, 0.4, 0.1, 0.2, 0.3, 0.5, 0.6, 0.6, 0.1, 0.2, 0.3], "
                                   "\"per_category_ap\": {\"1\": 0.5}, \"iter\": 4, \"loss\": \"giou\"}");
    put_str("rd/killed/metrics.jsonl", "{\"type\":\"train\",\"iter\":2,\"loss_total\":1.5}\n"
                                       "{\"type\":\"train\",\"iter\":4,\"loss_total\":1.2}\n{\"type\":\"train\",\"it");
    cli_fail("./eval RUN_DIR", "metrics.jsonl with a torn last line", BDIR "/rd/compare.md", ARGV("eval", BDIR "/rd/killed", "--out", BDIR "/rd"),
             "rd/killed/metrics.jsonl:3", "malformed", NULL);
    put_str("rd/killed/metrics.jsonl", "{\"type\":\"train\",\"iter\":2,\"loss_total\":1.5}\n{\"type\":\"train\",\"it\n"
                                       "{\"type\":\"train\",\"iter\":4,\"loss_total\":1.2}\n");
    cli_fail("./eval RUN_DIR", "metrics.jsonl with a torn line inside", BDIR "/rd/compare.md", ARGV("eval", BDIR "/rd/killed", "--out", BDIR "/rd"),
             "rd/killed/metrics.jsonl:2", "malformed", NULL);
    cli_fail("./eval command line", "--weights missing file", NULL,
             ARGV("eval", "--weights", BDIR "/nope.safetensors", "--config", BDIR "/nope.cfg"), "nope", NULL);
}

/* ------------------------------------------------------------------ ./train */

#define TCFG "tests/fixtures/reliab_tiny.cfg"
#define TRUN BDIR "/runs/t"

/* ./train must fail before creating anything: the run directory must not exist afterwards. */
static void train_fail(const char *name, const char *const *argv, const char *n1, const char *n2, const char *n3) {
    md_test_rm_rf(TRUN);
    cli_fail("./train", name, TRUN, argv, n1, n2, n3, NULL);
}

static void test_train_cli(void) {
    /* a valid dataset of 4 images, and broken variants */
    md_shapes_options so;
    md_shapes_options_default(&so);
    so.width = so.height = 64;
    so.num = 4;
    CHECK_OK(md_shapes_generate(BDIR "/shapes", &so));
    const char *ann = "data.train_ann=" BDIR "/shapes/annotations.json", *img = "data.train_images=" BDIR "/shapes/images";
    const char *out = "run.output_dir=" BDIR "/runs", *nm = "run.name=t";
    put_str("t_unknown_key.cfg", "[solver]\nbase_lr = 0.01\nmax_iters = 5\n");
    train_fail("config: unknown key", ARGV("train", BDIR "/t_unknown_key.cfg", "--quiet"), "t_unknown_key.cfg:3", "max_iters", "solver.max_iter");
    put_str("t_bad_value.cfg", "[model]\nnum_classes = five\n");
    train_fail("config: bad value", ARGV("train", BDIR "/t_bad_value.cfg"), "t_bad_value.cfg:2", "num_classes", "five");
    train_fail("config: unknown section", ARGV("train", BDIR "/unknown_section.cfg"), "unknown_section.cfg", "[modle]", NULL);
    train_fail("config: missing file", ARGV("train", BDIR "/no_such.cfg"), "no_such.cfg", "No such file", NULL);
    train_fail("config: a directory", ARGV("train", BDIR), BDIR, "directory", NULL);
    train_fail("override: unknown key", ARGV("train", TCFG, "solver.base_lrr=0.1"), "base_lrr", "solver.base_lr", NULL);
    train_fail("override: bad value", ARGV("train", TCFG, "roi_heads.box_loss=l2"), "box_loss", "l2", NULL);
    train_fail("override without '='", ARGV("train", TCFG, "solver.base_lr"), "solver.base_lr", "section.key=value", NULL);
    train_fail("unknown option", ARGV("train", TCFG, "--resum"), "--resum", NULL, NULL);
    train_fail("option before the config", ARGV("train", "--resume", TCFG), "--resume", "config file comes first", NULL);
    train_fail("train_ann missing", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/nope.json", img), "nope.json", "train_ann", NULL);
    /* the hint names what makes the missing data: the generator for a shapes config, make demo
     * for the demo's set, scripts/get_coco.sh only for COCO */
    train_fail("train_ann missing (a shapes set)", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/shapes_none/train/annotations.json", img),
               "shapes_none", "build/bin/tool_make_shapes " BDIR "/shapes_none/train --split train", NULL);
    train_fail("train_ann missing (the demo's set)", ARGV("train", TCFG, out, nm, "data.train_ann=data/shapes/nope/annotations.json", img),
               "make demo", NULL, NULL);
    train_fail("train_ann missing (COCO)", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/coco/nope.json", img),
               "scripts/get_coco.sh", NULL, NULL);
    train_fail("train_ann malformed", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/coco_malformed.json", img),
               "coco_malformed.json", "byte", NULL);
    train_fail("train_images missing", ARGV("train", TCFG, out, nm, ann, "data.train_images=" BDIR "/no_images"), "no_images",
               "train_images", NULL);
    /* an annotation file whose first image is corrupt / zero bytes */
    put_str("t_bad_img.json", "{\"images\": [{\"id\": 3, \"width\": 8, \"height\": 8, \"file_name\": \"corrupt.png\"}], "
                              "\"annotations\": [{\"id\": 1, \"image_id\": 3, \"category_id\": 1, \"bbox\": [1, 1, 4, 4]}], "
                              "\"categories\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 2, \"name\": \"b\"}, "
                              "{\"id\": 3, \"name\": \"c\"}, {\"id\": 4, \"name\": \"d\"}]}");
    train_fail("corrupt image (start-up check)", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/t_bad_img.json", "data.train_images=" BDIR),
               "corrupt.png", "id 3", NULL);
    put_str("t_empty.json", "{\"images\": [], \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"a\"}, "
                            "{\"id\": 2, \"name\": \"b\"}, {\"id\": 3, \"name\": \"c\"}, {\"id\": 4, \"name\": \"d\"}]}");
    train_fail("empty dataset", ARGV("train", TCFG, out, nm, "data.train_ann=" BDIR "/t_empty.json", img), "t_empty.json", "images", NULL);
    train_fail("num_classes differs from the dataset", ARGV("train", TCFG, out, nm, ann, img, "model.num_classes=9"), "num_classes", "5", NULL);
    train_fail("weights file missing", ARGV("train", TCFG, out, nm, ann, img, "model.weights=" BDIR "/nope.safetensors"), "nope.safetensors",
               NULL, NULL);
    train_fail("weights: another run's checkpoint, not trained yet",
               ARGV("train", TCFG, out, nm, ann, img, "model.weights=" BDIR "/runs/tiny_shapes_test/last.safetensors"),
               "checkpoint of run 'tiny_shapes_test'", "train it first (./train configs/tiny_shapes_test.cfg)", NULL);
    train_fail("weights: truncated checkpoint", ARGV("train", TCFG, out, nm, ann, img, "model.weights=" BDIR "/ck_trunc.safetensors"),
               "ck_trunc.safetensors", NULL, NULL);
    train_fail("--resume with nothing to resume", ARGV("train", TCFG, out, nm, ann, img, "--resume"), "nothing to resume", NULL, NULL);
    cli_fail("./train", "output_dir under a regular file", NULL,
             ARGV("train", TCFG, "run.output_dir=" BDIR "/gt.json", nm, ann, img), "gt.json", "Not a directory", NULL);
    cli_fail("./train", "output_dir unwritable (/proc)", NULL, ARGV("train", TCFG, "run.output_dir=/proc/minidet", nm, ann, img),
             "/proc/minidet", NULL);
}

/* ------------------------------------------------------------------ checkpoints */

static void tiny_cfg(md_config *c) {
    md_config_defaults(c);
    c->model.depth = 18;
    c->model.width_mult = 0.25f;
    c->model.num_classes = 5;
    c->model.fpn_channels = 32;
    c->model.representation_size = 128;
}

static md_status det_load(const md_config *cfg, const char *file) {
    char p[600];
    snprintf(p, sizeof p, BDIR "/%s", file);
    md_detector det;
    md_status st = md_detector_create(&det, cfg);
    if (st) return st;
    md_param *q = &det.params[det.num_params - 1];
    float before = q->data[0];
    st = md_detector_load_weights(&det, p, 1, NULL);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", md_last_error());
    CHECK(st == MD_OK || q->data[0] == before, "%s: failed load changed the model", file);
    md_detector_free(&det);
    if (st) md_set_error(st, "%s", keep);
    return st;
}

static void test_checkpoints(void) {
    md_config cfg;
    tiny_cfg(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    CHECK_OK(md_detector_save_weights(&det, BDIR "/tiny.safetensors", 0, NULL, NULL));
    md_detector_free(&det);
    CHECK_OK(det_load(&cfg, "tiny.safetensors"));

    size_t n;
    char *b = md_test_slurp(BDIR "/tiny.safetensors", &n);
    CHECK(b && n > 4096, "tiny checkpoint");
    if (!b) return;
    truncate_copy("tiny.safetensors", "ck_trunc.safetensors", (long)n / 2);
    lib_fail("checkpoint", "truncated to half (model load)", det_load(&cfg, "ck_trunc.safetensors"), "ck_trunc.safetensors", NULL);
    md_st_file f;
    lib_fail("checkpoint", "truncated to half (safetensors reader)", md_st_load(BDIR "/ck_trunc.safetensors", &f), "ck_trunc.safetensors",
             NULL);
    truncate_copy("tiny.safetensors", "ck_trunc4.safetensors", 4);
    lib_fail("checkpoint", "truncated to 4 bytes", det_load(&cfg, "ck_trunc4.safetensors"), "ck_trunc4.safetensors", NULL);
    put_str("ck_zero.safetensors", "");
    lib_fail("checkpoint", "zero-byte file", det_load(&cfg, "ck_zero.safetensors"), "ck_zero.safetensors", NULL);
    /* a PyTorch .pth (zip) given as safetensors */
    put_file("ck_zip.safetensors", "PK\x03\x04\x14\x00\x00\x00\x08\x00junkjunkjunkjunk", 26);
    lib_fail("checkpoint", "wrong magic (zip / torch .pth)", det_load(&cfg, "ck_zip.safetensors"), "ck_zip.safetensors", NULL);
    /* one flipped byte in the data block: the checksum catches it */
    char *c = malloc(n);
    if (c) {
        memcpy(c, b, n);
        c[n - 100] ^= 0x40;
        put_file("ck_flip.safetensors", c, n);
        lib_fail("checkpoint", "one corrupted data byte (checksum)", det_load(&cfg, "ck_flip.safetensors"), "ck_flip.safetensors",
                 "checksum", NULL);
        /* header JSON damaged */
        memcpy(c, b, n);
        c[9] = '!';
        put_file("ck_hdr.safetensors", c, n);
        lib_fail("checkpoint", "damaged header JSON", det_load(&cfg, "ck_hdr.safetensors"), "ck_hdr.safetensors", NULL);
        free(c);
    }
    free(b);
    /* wrong shapes / architecture */
    md_config other = cfg;
    other.model.num_classes = 7;
    lib_fail("checkpoint", "num_classes 7 model, 5-class file", det_load(&other, "tiny.safetensors"), "tiny.safetensors",
             "roi_heads.box_predictor.cls_score.weight", NULL);
    other = cfg;
    other.model.depth = 34;
    lib_fail("checkpoint", "depth 34 model, depth 18 file", det_load(&other, "tiny.safetensors"), "tiny.safetensors", "missing",
             "layer1.2", NULL);
    other = cfg;
    other.model.depth = 50;
    lib_fail("checkpoint", "depth 50 model, depth 18 file", det_load(&other, "tiny.safetensors"), "tiny.safetensors", "shape", "keep what matches", NULL);
    other = cfg;
    other.model.width_mult = 0.5f;
    lib_fail("checkpoint", "width 0.5 model, width 0.25 file", det_load(&other, "tiny.safetensors"), "tiny.safetensors", "shape", NULL);
    /* a foreign but valid safetensors file */
    md_st_writer *w = md_st_writer_new();
    float v[4] = {1, 2, 3, 4};
    int shp[1] = {4};
    CHECK(w != NULL, "writer");
    if (w) {
        CHECK_OK(md_st_writer_add_f32(w, "encoder.weight", 1, shp, v));
        CHECK_OK(md_st_writer_save(w, BDIR "/ck_foreign.safetensors"));
        md_st_writer_free(w);
    }
    lib_fail("checkpoint", "foreign safetensors (other model)", det_load(&cfg, "ck_foreign.safetensors"), "ck_foreign.safetensors",
             "missing", NULL);
    lib_fail("checkpoint", "missing file", det_load(&cfg, "no_such.safetensors"), "no_such.safetensors", NULL);
    lib_fail("checkpoint", "directory given as the file", md_st_load(BDIR, &f), BDIR, NULL);
    /* the training-checkpoint reader on a plain weights file with the wrong tensor set */
    float t0[6] = {0};
    md_ckpt_tensor ct = {"head.weight", t0, 6, 2, {2, 3}};
    lib_fail("checkpoint", "plain weights given to the trainer's checkpoint reader", md_checkpoint_load(BDIR "/tiny.safetensors", &ct, 1, NULL, NULL, NULL),
             "tiny.safetensors", "minidet.format", NULL);
}

/* ------------------------------------------------------------------ ./eval --weights */

static void eval_w(const char *name, const char *const *argv, const char *n1, const char *n2) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s/eval_*", BDIR);
    if (system(cmd)) fprintf(stderr, "cannot clean %s/eval_*\n", BDIR);
    /* the default output directory is eval_<weights name> beside the weights: nothing may be left there */
    const char *w = NULL;
    for (int i = 0; argv[i]; i++)
        if (!strcmp(argv[i], "--weights") && argv[i + 1]) w = argv[i + 1];
    char out[600] = "";
    if (w) {
        const char *b = strrchr(w, '/');
        b = b ? b + 1 : w;
        snprintf(out, sizeof out, BDIR "/eval_%.*s", (int)(strcspn(b, ".")), b);
    }
    cli_fail("./eval --weights", name, out[0] ? out : NULL, argv, n1, n2, NULL);
}

static void test_eval_weights(void) {
    const char *ann = BDIR "/shapes/annotations.json", *img = BDIR "/shapes/images";
    const char *w = BDIR "/tiny.safetensors";
    /* the good case runs (and writes its outputs) */
    char err[8192];
    int st = run_cli(ARGV("eval", "--weights", w, "--config", TCFG, "--ann", ann, "--images", img, "--quiet"), err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && md_path_exists(BDIR "/eval_tiny/results.json"), "good --weights run (status %d): %s", st, err);
    eval_w("weights file missing", ARGV("eval", "--weights", BDIR "/nope.safetensors", "--config", TCFG, "--ann", ann, "--images", img),
           "nope.safetensors", "No such file");
    eval_w("weights truncated", ARGV("eval", "--weights", BDIR "/ck_trunc.safetensors", "--config", TCFG, "--ann", ann, "--images", img),
           "ck_trunc.safetensors", "truncated");
    eval_w("weights: wrong magic (zip)", ARGV("eval", "--weights", BDIR "/ck_zip.safetensors", "--config", TCFG, "--ann", ann, "--images", img),
           "ck_zip.safetensors", NULL);
    eval_w("config num_classes 7, 5-class weights (--strict 1)",
           ARGV("eval", "--weights", w, "--config", TCFG, "--ann", ann, "--images", img, "--strict", "1", "model.num_classes=7"),
           "tiny.safetensors", "cls_score");
    eval_w("config depth 34, depth-18 weights", ARGV("eval", "--weights", w, "--config", TCFG, "--ann", ann, "--images", img, "model.depth=34"),
           "tiny.safetensors", "missing");
    eval_w("--config missing file", ARGV("eval", "--weights", w, "--config", BDIR "/no_such.cfg", "--ann", ann, "--images", img),
           "no_such.cfg", "No such file");
    eval_w("--ann malformed", ARGV("eval", "--weights", w, "--config", TCFG, "--ann", BDIR "/coco_malformed.json", "--images", img, "--quiet"),
           "coco_malformed.json", "byte");
    eval_w("--images directory missing", ARGV("eval", "--weights", w, "--config", TCFG, "--ann", ann, "--images", BDIR "/nodir", "--quiet"),
           "nodir", "No such file");
    eval_w("corrupt image in the split", ARGV("eval", "--weights", w, "--config", TCFG, "--ann", BDIR "/ds.json", "--images", BDIR, "--quiet"),
           "ok.jpg", "id 7");
    eval_w("--out into an unwritable place (/proc)",
           ARGV("eval", "--weights", w, "--config", TCFG, "--ann", ann, "--images", img, "--out", "/proc/x/r.json", "--quiet"), "/proc/x", NULL);
    eval_w("unknown option", ARGV("eval", "--weights", w, "--config", TCFG, "--bogus"), "--bogus", NULL);
    eval_w("override: unknown key", ARGV("eval", "--weights", w, "--config", TCFG, "test.nms_thres=0.4"), "nms_thres", "test.nms_thresh");
}

int main(void) {
    const char *b = getenv("MD_BIN");
    snprintf(bin_dir, sizeof bin_dir, "%s", b && *b ? b : "build/bin");
    mkdir("build", 0755);
    mkdir(BDIR, 0755);
    MD_RUN(test_configs);
    MD_RUN(test_coco);
    MD_RUN(test_images);
    MD_RUN(test_eval_results);
    MD_RUN(test_command_lines);
    MD_RUN(test_checkpoints);
    MD_RUN(test_train_cli);
    MD_RUN(test_eval_weights);
    return md_test_summary();
}
