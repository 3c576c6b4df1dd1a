/* test_data.c — images, transform and batches vs torchvision 0.14
 * (tests/fixtures/data_transform_ref.safetensors from scripts/torch_reference_data.py),
 * bad image files, and the start-up check. */
#include "minidet/data.h"
#include "minidet/log.h"
#include "minidet/safetensors.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF "tests/fixtures/data_transform_ref.safetensors"
static char g_tmp[64];

static const char *tmp_path(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    return p;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n;
}

/* Output size rule vs torchvision's own _resize_image_and_masks on 592 sizes. */
static void test_resize_size_rule(void) {
    md_st_file f;
    CHECK_OK(md_st_load(REF, &f));
    const md_st_tensor *t = md_st_find(&f, "sizes");
    CHECK(t && t->ndim == 2 && t->shape[1] == 6, "sizes tensor");
    if (t) {
        size_t n = (size_t)t->shape[0];
        int64_t *rows = malloc(n * 6 * sizeof *rows);
        CHECK_OK(md_st_read_i64(&f, "sizes", -1, NULL, rows, n * 6));
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t *r = rows + 6 * i;
            int oh, ow;
            md_resize_size((int)r[0], (int)r[1], (int)r[2], (int)r[3], &oh, &ow);
            if (oh != r[4] || ow != r[5]) {
                if (bad++ < 5)
                    md_test_fail(__FILE__, __LINE__, "%lldx%lld (min %lld max %lld): %dx%d, torchvision %lldx%lld", (long long)r[0],
                                 (long long)r[1], (long long)r[2], (long long)r[3], oh, ow, (long long)r[4], (long long)r[5]);
            }
        }
        md_test_checks++;
        CHECK(n > 500, "rows %zu", n);
        free(rows);
    }
    md_st_free(&f);
}

/* A dataset JSON over the three PNG crops, boxes as in the reference script. */
static const char *crop_json(void) {
    static const char *json =
        "{\"images\": ["
        "{\"id\": 1, \"file_name\": \"data_crop_a.png\", \"width\": 97, \"height\": 73},"
        "{\"id\": 2, \"file_name\": \"data_crop_b_grey.png\", \"width\": 88, \"height\": 61},"
        "{\"id\": 3, \"file_name\": \"data_crop_c.png\", \"width\": 150, \"height\": 41}],"
        "\"categories\": [{\"id\": 5, \"name\": \"a\"}, {\"id\": 9, \"name\": \"b\"}],"
        "\"annotations\": ["
        "{\"id\": 1, \"image_id\": 1, \"category_id\": 5, \"bbox\": [0.0, 0.0, 97.0, 73.0]},"
        "{\"id\": 2, \"image_id\": 1, \"category_id\": 9, \"bbox\": [10.5, 3.25, 30.25, 56.75]},"
        "{\"id\": 3, \"image_id\": 1, \"category_id\": 5, \"bbox\": [60.2, 30.1, 30.7, 20.4]},"
        "{\"id\": 4, \"image_id\": 2, \"category_id\": 5, \"bbox\": [5.0, 7.5, 75.0, 22.75]},"
        "{\"id\": 5, \"image_id\": 2, \"category_id\": 9, \"bbox\": [0.5, 0.5, 87.0, 60.0]},"
        "{\"id\": 6, \"image_id\": 3, \"category_id\": 9, \"bbox\": [1.0, 2.0, 148.0, 38.0]},"
        "{\"id\": 7, \"image_id\": 3, \"category_id\": 5, \"bbox\": [20.3, 10.7, 54.8, 22.6]},"
        "{\"id\": 8, \"image_id\": 3, \"category_id\": 5, \"bbox\": [100.0, 0.0, 50.0, 41.0]},"
        "{\"id\": 9, \"image_id\": 3, \"category_id\": 9, \"bbox\": [3.0, 4.0, 5.0, 5.5]},"
        "{\"id\": 10, \"image_id\": 3, \"category_id\": 5, \"bbox\": [3.0, 4.0, 5.0, 5.5], \"iscrowd\": 1}]}";
    const char *p = tmp_path("crops.json");
    write_bytes(p, json, strlen(json));
    return p;
}

/* The whole batch path (decode, flip, normalise, resize, pad, boxes) vs torchvision. */
static void test_batch_vs_torchvision(void) {
    md_st_file f;
    CHECK_OK(md_st_load(REF, &f));
    md_coco c;
    CHECK_OK(md_coco_load(&c, crop_json(), NULL));
    if (!c.images || !f.tensors) { md_coco_free(&c); md_st_free(&f); return; }
    md_data_options o;
    md_data_options_default(&o);
    o.min_size = 64;
    o.max_size = 96;
    int idx[4] = {0, 1, 2, 0};
    uint8_t flips[4] = {0, 0, 0, 1};
    md_batch b;
    memset(&b, 0, sizeof b);
    float *scratch = NULL;
    size_t scap = 0;
    CHECK_OK(md_batch_build(&b, &c, "tests/fixtures", idx, flips, 4, &o, &scratch, &scap));
    const md_st_tensor *tb = md_st_find(&f, "batch");
    CHECK(tb && tb->shape[0] == 4 && b.n == 4 && b.height == tb->shape[2] && b.width == tb->shape[3], "batch shape %dx%dx%d", b.n,
          b.height, b.width);
    if (tb && b.images && b.height == tb->shape[2] && b.width == tb->shape[3]) {
        float *ref = malloc(tb->numel * sizeof *ref);
        CHECK_OK(md_st_read_f32(&f, "batch", -1, NULL, ref, tb->numel));
        size_t worst;
        double err = md_max_abs_err(b.images, ref, tb->numel);
        md_max_rel_err(b.images, ref, tb->numel, 1.0, &worst);
        printf("  batch vs torchvision: max abs err %.3g (values in [-2.2, 2.7])\n", err);
        CHECK(err < 1e-6, "batch max abs err %g at %zu: %g vs %g", err, worst, b.images[worst], ref[worst]);
        free(ref);
    }
    int64_t sizes[8];
    CHECK_OK(md_st_read_i64(&f, "image_sizes", -1, NULL, sizes, 8));
    int total = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(b.info[i].h == sizes[2 * i] && b.info[i].w == sizes[2 * i + 1], "image %d size %dx%d vs %lldx%lld", i, b.info[i].h,
              b.info[i].w, (long long)sizes[2 * i], (long long)sizes[2 * i + 1]);
        char name[32];
        snprintf(name, sizeof name, "boxes_out_%d", i);
        const md_st_tensor *tbx = md_st_find(&f, name);
        CHECK(tbx && (int)tbx->shape[0] == b.info[i].num_boxes, "%s count %d", name, b.info[i].num_boxes);
        if (tbx && (int)tbx->shape[0] == b.info[i].num_boxes) {
            float ref[64];
            CHECK_OK(md_st_read_f32(&f, name, -1, NULL, ref, 64));
            double e = md_max_abs_err(b.boxes + 4 * b.info[i].box_begin, ref, tbx->numel);
            CHECK(e < 1e-5, "%s max abs err %g", name, e);
        }
        CHECK(b.info[i].flipped == flips[i] && b.info[i].orig_w == c.images[idx[i]].width, "info %d", i);
        total += b.info[i].num_boxes;
    }
    CHECK(total == b.num_boxes && b.num_boxes == 3 + 2 + 4 + 3, "targets %d (crowd excluded)", b.num_boxes);
    CHECK(b.labels[0] == 1 && b.labels[1] == 2 && b.labels[5] == 2, "labels");
    free(scratch);
    md_batch_free(&b);
    md_coco_free(&c);
    md_st_free(&f);
}

/* Grey+alpha, RGBA (alpha dropped) exactly as PIL's convert("RGB"); CMYK JPEG close to PIL's decode. */
static void test_image_formats(void) {
    md_st_file f;
    CHECK_OK(md_st_load(REF, &f));
    const char *names[3] = {"img_grey_alpha", "img_rgba", "img_cmyk"};
    const char *files[3] = {"tests/fixtures/img_grey_alpha.png", "tests/fixtures/img_rgba.png", "tests/fixtures/img_cmyk.jpg"};
    for (int k = 0; k < 3; k++) {
        char tn[64];
        snprintf(tn, sizeof tn, "rgb_%s", names[k]);
        const md_st_tensor *t = md_st_find(&f, tn);
        md_image im;
        CHECK_OK(md_image_load(files[k], 0, &im));
        CHECK(t && im.data && im.height == t->shape[0] && im.width == t->shape[1] && t->shape[2] == 3, "%s shape", files[k]);
        if (!t || !im.data || im.height != t->shape[0] || im.width != t->shape[1]) { md_image_free(&im); continue; }
        const uint8_t *ref = t->data;
        double sum = 0;
        int maxd = 0;
        for (size_t i = 0; i < t->numel; i++) {
            int d = abs((int)im.data[i] - (int)ref[i]);
            sum += d;
            if (d > maxd) maxd = d;
        }
        if (k < 2) CHECK(maxd == 0, "%s differs from PIL by up to %d", files[k], maxd);
        else CHECK(sum / (double)t->numel < 4.0, "%s: CMYK mean abs diff to PIL %.2f (max %d)", files[k], sum / (double)t->numel, maxd);
        int w, h;
        CHECK_OK(md_image_probe(files[k], 0, &w, &h));
        CHECK(w == im.width && h == im.height, "probe size");
        md_image_free(&im);
    }
    md_st_free(&f);
    /* the fixture's grey-scale COCO JPEG decodes to RGB with R == G == B */
    md_image im;
    CHECK_OK(md_image_load("tests/data/coco-sample/train2017/000000000086.jpg", 0, &im));
    int same = 1;
    for (int i = 0; im.data && i < im.width * im.height; i++)
        if (im.data[3 * i] != im.data[3 * i + 1] || im.data[3 * i] != im.data[3 * i + 2]) same = 0;
    CHECK(im.data && im.width == 512 && im.height == 640 && same, "grey JPEG -> RGB");
    md_image_free(&im);
}

static void expect_image_error(const char *path, int allow16, const char *needle) {
    md_image im;
    int w, h;
    md_status st = md_image_load(path, allow16, &im);
    CHECK(st != MD_OK && strstr(md_last_error(), path) && strstr(md_last_error(), needle), "load %s: want '%s', got: %s", path, needle,
          st ? md_last_error() : "success");
    if (!st) md_image_free(&im);
    st = md_image_probe(path, allow16, &w, &h);
    CHECK(st != MD_OK && strstr(md_last_error(), path) && strstr(md_last_error(), needle), "probe %s: want '%s', got: %s", path, needle,
          st ? md_last_error() : "success");
}

static void test_bad_images(void) {
    size_t n;
    uint8_t *jpg = (uint8_t *)md_test_slurp("tests/data/coco-sample/train2017/000000000536.jpg", &n);
    CHECK(jpg != NULL, "read fixture jpeg");
    if (!jpg) return;
    write_bytes(tmp_path("truncated.jpg"), jpg, n / 2);
    uint8_t junk[600];
    for (int i = 0; i < 600; i++) junk[i] = (uint8_t)(i * 37 + 11);
    memcpy(junk, jpg, 4); /* JPEG signature, then garbage, then EOI */
    junk[598] = 0xFF;
    junk[599] = 0xD9;
    write_bytes(tmp_path("corrupt.jpg"), junk, sizeof junk);
    write_bytes(tmp_path("zero.jpg"), "", 0);
    write_bytes(tmp_path("text.jpg"), "hello, not an image\n", 20);
    mkdir(tmp_path("dir.jpg"), 0755);
    free(jpg);
    char p[256];
    snprintf(p, sizeof p, "%s", tmp_path("truncated.jpg"));
    expect_image_error(p, 0, "truncated");
    snprintf(p, sizeof p, "%s", tmp_path("corrupt.jpg"));
    {
        md_image im;
        md_status st = md_image_load(p, 0, &im);
        CHECK(st == MD_ERR_FORMAT && strstr(md_last_error(), p) && strstr(md_last_error(), "cannot decode"), "corrupt: %s",
              st ? md_last_error() : "decoded");
        if (!st) md_image_free(&im);
    }
    snprintf(p, sizeof p, "%s", tmp_path("zero.jpg"));
    expect_image_error(p, 0, "zero-byte");
    snprintf(p, sizeof p, "%s", tmp_path("text.jpg"));
    expect_image_error(p, 0, "image");
    snprintf(p, sizeof p, "%s", tmp_path("dir.jpg"));
    expect_image_error(p, 0, "is a directory");
    snprintf(p, sizeof p, "%s", tmp_path("missing.jpg"));
    expect_image_error(p, 0, "No such file");
    expect_image_error("tests/fixtures/img_16bit.png", 0, "16-bit PNG");
    md_image im;
    CHECK_OK(md_image_load("tests/fixtures/img_16bit.png", 1, &im));
    CHECK(im.data && im.width == 4 && im.height == 4, "16-bit PNG with allow_16bit");
    md_image_free(&im);
}

/* Start-up check: the fixture passes; missing / zero-byte / wrong-size images fail or are skipped and counted. */
static void test_dataset_check(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, "tests/data/coco-sample/annotations/instances_train2017.json", NULL));
    if (!c.images) return;
    int nbad = -1;
    CHECK_OK(md_dataset_check(&c, "tests/data/coco-sample/train2017", MD_POLICY_FAIL, 0, NULL, &nbad));
    CHECK(nbad == 0, "fixture: %d bad", nbad);
    /* a copy of the image folder with one image missing and one empty */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/images", g_tmp);
    mkdir(dir, 0755);
    for (int i = 0; i < c.num_images; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "tests/data/coco-sample/train2017/%s", c.images[i].file_name);
        snprintf(dst, sizeof dst, "%s/%s", dir, c.images[i].file_name);
        size_t n;
        void *b = md_test_slurp(src, &n);
        if (i == 3) n = 0;
        if (i != 6 && b) write_bytes(dst, b, n);
        free(b);
    }
    md_status st = md_dataset_check(&c, dir, MD_POLICY_FAIL, 0, NULL, &nbad);
    CHECK(st != MD_OK && strstr(md_last_error(), c.images[3].file_name) && strstr(md_last_error(), "zero-byte"), "fail policy: %s",
          md_last_error());
    uint8_t bad[16];
    md_log_level lv = md_log_get_level();
    md_log_set_level(MD_LOG_ERROR);
    CHECK_OK(md_dataset_check(&c, dir, MD_POLICY_SKIP, 0, bad, &nbad));
    md_log_set_level(lv);
    CHECK(nbad == 2 && bad[3] && bad[6] && !bad[0], "skip policy: %d bad", nbad);
    /* JSON size disagreeing with the file */
    c.images[0].width += 1;
    st = md_dataset_check(&c, "tests/data/coco-sample/train2017", MD_POLICY_FAIL, 0, NULL, &nbad);
    CHECK(st != MD_OK && strstr(md_last_error(), "says width"), "size mismatch: %s", md_last_error());
    md_coco_free(&c);
}

int main(void) {
    if (!md_test_tmpdir("data", g_tmp, sizeof g_tmp)) return 1;
    MD_RUN(test_resize_size_rule);
    MD_RUN(test_batch_vs_torchvision);
    MD_RUN(test_image_formats);
    MD_RUN(test_bad_images);
    MD_RUN(test_dataset_check);
    md_test_rm_rf(g_tmp);
    return md_test_summary();
}
