/* test_coco.c — COCO JSON loader: the repository's COCO sample (tests/data/coco-sample, excerpts of the
 * official train2017 / val2017 files) vs an independent full cJSON parse, and every bad input of
 * issue 5 (JSON side). */
#include "minidet/coco.h"
#include "minidet/log.h"
#include "testutil.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAMPLE "tests/data/coco-sample/annotations"
#define FIXTURE SAMPLE "/instances_train2017.json"

static char g_tmpdir[64];

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return path;
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return path;
}

/* Every image, category and annotation of one file vs a plain cJSON parse. */
static void check_matches_json(const char *file) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, file, NULL));
    char *text = md_test_slurp(file, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    CHECK(root != NULL, "reference parse of %s", file);
    if (!root || !c.images) { cJSON_Delete(root); free(text); md_coco_free(&c); return; }
    cJSON *imgs = cJSON_GetObjectItem(root, "images"), *anns = cJSON_GetObjectItem(root, "annotations"),
          *cats = cJSON_GetObjectItem(root, "categories");
    CHECK(c.num_images == cJSON_GetArraySize(imgs), "images %d vs %d", c.num_images, cJSON_GetArraySize(imgs));
    CHECK(c.num_anns == cJSON_GetArraySize(anns), "annotations %d vs %d", c.num_anns, cJSON_GetArraySize(anns));
    CHECK(c.num_cats == cJSON_GetArraySize(cats), "categories %d vs %d", c.num_cats, cJSON_GetArraySize(cats));
    CHECK(c.num_classes == c.num_cats + 1, "num_classes %d", c.num_classes);
    int i = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, imgs) {
        md_coco_image *im = &c.images[i++];
        CHECK(im->id == (int64_t)cJSON_GetObjectItem(e, "id")->valuedouble, "image %d id", i);
        CHECK(!strcmp(im->file_name, cJSON_GetObjectItem(e, "file_name")->valuestring), "image %d file_name", i);
        CHECK(im->width == cJSON_GetObjectItem(e, "width")->valueint && im->height == cJSON_GetObjectItem(e, "height")->valueint,
              "image %d size", i);
        CHECK(md_coco_find_image(&c, im->id) == i - 1, "find_image %lld", (long long)im->id);
    }
    /* categories: sorted ids, contiguous labels 1..K in id order */
    int prev = -1;
    for (int k = 0; k < c.num_cats; k++) {
        CHECK(c.cats[k].id > prev, "categories sorted");
        prev = c.cats[k].id;
        CHECK(md_coco_label_of(&c, c.cats[k].id) == k + 1, "label of category %d", c.cats[k].id);
        CHECK(md_coco_category_of_label(&c, k + 1) == c.cats[k].id, "category of label %d", k + 1);
    }
    CHECK(md_coco_label_of(&c, 12) == -1, "COCO has no category 12");
    /* annotations: each JSON annotation found in its image's group with the same numbers */
    int crowd = 0, seen = 0;
    cJSON_ArrayForEach(e, anns) {
        int64_t id = (int64_t)cJSON_GetObjectItem(e, "id")->valuedouble;
        int64_t image_id = (int64_t)cJSON_GetObjectItem(e, "image_id")->valuedouble;
        int im = md_coco_find_image(&c, image_id);
        CHECK(im >= 0, "annotation %lld image", (long long)id);
        if (im < 0) continue;
        const md_coco_ann *a = NULL;
        for (int k = 0; k < c.images[im].ann_count; k++)
            if (c.anns[c.images[im].ann_begin + k].id == id) a = &c.anns[c.images[im].ann_begin + k];
        CHECK(a != NULL, "annotation %lld not in image %lld's group", (long long)id, (long long)image_id);
        if (!a) continue;
        seen++;
        cJSON *bb = cJSON_GetObjectItem(e, "bbox");
        for (int k = 0; k < 4; k++) CHECK(a->bbox[k] == cJSON_GetArrayItem(bb, k)->valuedouble, "ann %lld bbox[%d]", (long long)id, k);
        double x = a->bbox[0], y = a->bbox[1], w = a->bbox[2], h = a->bbox[3];
        double W = c.images[im].width, H = c.images[im].height;
        double ex[4] = {fmax(x, 0), fmax(y, 0), fmin(x + w, W), fmin(y + h, H)};
        for (int k = 0; k < 4; k++) CHECK_NEAR(a->box[k], ex[k], 1e-4 * (1 + fabs(ex[k])));
        CHECK(a->area == cJSON_GetObjectItem(e, "area")->valuedouble, "ann %lld area", (long long)id);
        CHECK(a->category_id == cJSON_GetObjectItem(e, "category_id")->valueint, "ann %lld category", (long long)id);
        CHECK(a->label == md_coco_label_of(&c, a->category_id), "ann %lld label", (long long)id);
        int isc = cJSON_GetObjectItem(e, "iscrowd")->valueint;
        crowd += isc;
        CHECK(a->iscrowd == isc && !!(a->flags & MD_ANN_CROWD) == isc, "ann %lld crowd flag", (long long)id);
        CHECK(a->image_index == im, "ann %lld image_index", (long long)id);
    }
    CHECK(seen == c.num_anns, "every annotation matched (%d of %d)", seen, c.num_anns);
    CHECK(crowd > 0 && c.stats.crowd == crowd, "crowd %d vs %d (each split of the sample has a crowd box)", c.stats.crowd, crowd);
    cJSON_Delete(root);
    free(text);
    md_coco_free(&c);
}

/* Both official excerpts, record by record; the train split's empty image and crowd box. */
static void test_sample_matches_json(void) {
    check_matches_json(FIXTURE);
    check_matches_json(SAMPLE "/instances_val2017.json");
    md_coco c;
    CHECK_OK(md_coco_load(&c, FIXTURE, NULL));
    if (!c.images) return;
    /* image 250 has no annotations: no training targets; 643 has a crowd box excluded from targets */
    int i250 = md_coco_find_image(&c, 250), i643 = md_coco_find_image(&c, 643);
    CHECK(i250 >= 0 && c.images[i250].ann_count == 0 && c.images[i250].num_targets == 0, "image 250 empty");
    CHECK(i643 >= 0 && c.images[i643].num_targets == c.images[i643].ann_count - 1, "image 643: crowd not a target");
    CHECK(c.stats.images_without_targets >= 1, "images without targets counted");
    md_coco_free(&c);
}

static void test_coco_id_layout(void) {
    md_coco c;
    md_coco_options o;
    md_coco_options_default(&o);
    o.labels = MD_LABELS_COCO_ID;
    CHECK_OK(md_coco_load(&c, FIXTURE, &o));
    CHECK(c.num_classes == 91, "coco_id num_classes %d", c.num_classes);
    CHECK(md_coco_label_of(&c, 90) == 90 && md_coco_label_of(&c, 12) == -1, "coco_id labels");
    CHECK(md_coco_category_of_label(&c, 12) == -1 && md_coco_category_of_label(&c, 1) == 1, "coco_id inverse");
    for (int i = 0; i < c.num_anns; i++) CHECK(c.anns[i].label == c.anns[i].category_id, "coco_id ann label");
    md_coco_free(&c);
}

#define HDR "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 100, \"height\": 50}, " \
            "{\"id\": 2, \"file_name\": \"b.jpg\", \"width\": 60, \"height\": 60}], " \
            "\"categories\": [{\"id\": 3, \"name\": \"cat\"}, {\"id\": 7, \"name\": \"dog\"}], "

/* Expects load to fail with a message containing every needle. */
static void expect_fail(const char *name, const char *json, const md_coco_options *o, const char *n1, const char *n2) {
    const char *p = write_tmp(name, json);
    md_coco c;
    md_status st = md_coco_load(&c, p, o);
    CHECK(st != MD_OK, "%s: loaded but should fail", name);
    if (st == MD_OK) { md_coco_free(&c); return; }
    const char *msg = md_last_error();
    CHECK(strstr(msg, p) != NULL, "%s: message does not name the file: %s", name, msg);
    CHECK(!n1 || strstr(msg, n1), "%s: message lacks '%s': %s", name, n1, msg);
    CHECK(!n2 || strstr(msg, n2), "%s: message lacks '%s': %s", name, n2, msg);
    CHECK(c.images == NULL && c.anns == NULL, "%s: left half-loaded", name);
}

static void test_bad_json(void) {
    /* truncated: end of file; the offset is reported */
    expect_fail("trunc.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"bb", NULL, "byte 244", "truncated");
    /* junk in the middle: byte offset of the bad character, line 2 */
    expect_fail("junk.json", "{\"images\": [],\n \"annotations\": [}, \"categories\": []}", NULL, "byte 32 (line 2, column 18)", NULL);
    expect_fail("nan.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 3, \"bbox\": [NaN, 1, 2, 3]}]}", NULL, "NaN", "byte");
    expect_fail("notobj.json", "[1, 2]", NULL, "must be a JSON object", NULL);
    expect_fail("trailing.json", HDR "\"annotations\": []} x", NULL, "trailing", NULL);
    expect_fail("nokey.json", HDR "\"info\": {}}", NULL, "missing top-level key 'annotations'", NULL);
    expect_fail("nocats.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 10, \"height\": 10}], \"annotations\": []}", NULL,
                "'categories'", NULL);
    expect_fail("empty_images.json", "{\"images\": [], \"annotations\": [], \"categories\": [{\"id\": 1, \"name\": \"x\"}]}", NULL,
                "empty dataset", NULL);
    expect_fail("zero.json", "", NULL, "empty file", NULL);
    expect_fail("imgtype.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": \"100\", \"height\": 50}], "
                "\"annotations\": [], \"categories\": []}", NULL, "images[0] (id 1): field 'width'", "a string");
    expect_fail("dupimg.json", "{\"images\": [{\"id\": 4, \"file_name\": \"a.jpg\", \"width\": 10, \"height\": 10}, "
                "{\"id\": 4, \"file_name\": \"b.jpg\", \"width\": 10, \"height\": 10}], \"annotations\": [], "
                "\"categories\": [{\"id\": 1, \"name\": \"x\"}]}", NULL, "images[1] (id 4)", "duplicate image id");
    expect_fail("dupcat.json", "{\"images\": [{\"id\": 4, \"file_name\": \"a.jpg\", \"width\": 10, \"height\": 10}], \"annotations\": [], "
                "\"categories\": [{\"id\": 1, \"name\": \"x\"}, {\"id\": 1, \"name\": \"y\"}]}", NULL, "duplicate category id 1", NULL);
    expect_fail("badbbox.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 2, 3]}]}", NULL,
                "annotations[0] (id 5): field 'bbox'", NULL);
    expect_fail("unkimg.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 2, 3, 4]}, "
                "{\"id\": 12345, \"image_id\": 99, \"category_id\": 3, \"bbox\": [1, 2, 3, 4]}]}", NULL,
                "annotations[1] (id 12345): field 'image_id'", "unknown image id 99");
    expect_fail("unkcat.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, 3, 4]}]}", NULL,
                "annotations[0] (id 5): field 'category_id'", "unknown category id 4");
    /* a directory given as the file */
    md_coco c;
    CHECK(md_coco_load(&c, g_tmpdir, NULL) == MD_ERR_IO && strstr(md_last_error(), "is a directory"), "directory: %s", md_last_error());
    CHECK(md_coco_load(&c, "/nonexistent/x.json", NULL) == MD_ERR_IO && strstr(md_last_error(), "/nonexistent/x.json"), "missing: %s",
          md_last_error());
}

/* Box policies: clip (default), drop, fail; skip policy for unknown references. */
static void test_box_policy(void) {
    const char *json = HDR "\"annotations\": ["
        "{\"id\": 10, \"image_id\": 1, \"category_id\": 3, \"bbox\": [10, 10, 20, 20]},"      /* fine */
        "{\"id\": 11, \"image_id\": 1, \"category_id\": 7, \"bbox\": [90, 40, 20, 20]},"      /* crosses right/bottom edge: clip */
        "{\"id\": 12, \"image_id\": 1, \"category_id\": 3, \"bbox\": [10, 10, 0, 5]},"        /* w = 0 */
        "{\"id\": 13, \"image_id\": 2, \"category_id\": 3, \"bbox\": [10, 10, 5, -1]},"       /* h < 0 */
        "{\"id\": 14, \"image_id\": 2, \"category_id\": 3, \"bbox\": [1e999, 10, 5, 5]},"     /* inf */
        "{\"id\": 15, \"image_id\": 2, \"category_id\": 3, \"bbox\": [70, 70, 5, 5]},"        /* entirely outside */
        "{\"id\": 16, \"image_id\": 2, \"category_id\": 7, \"bbox\": [-5, 1, 10, 10], \"iscrowd\": 1}]}";
    const char *p = write_tmp("boxes.json", json);
    md_coco c;
    CHECK_OK(md_coco_load(&c, p, NULL));
    if (c.anns) {
        CHECK(c.num_anns == 7, "all annotations kept (flagged): %d", c.num_anns);
        CHECK(c.stats.clipped == 2 && c.stats.dropped_degenerate == 3 && c.stats.dropped_nonfinite == 1 && c.stats.crowd == 1,
              "clip counts: clipped %d degenerate %d nonfinite %d crowd %d", c.stats.clipped, c.stats.dropped_degenerate,
              c.stats.dropped_nonfinite, c.stats.crowd);
        const md_coco_ann *a11 = &c.anns[1];
        CHECK(a11->id == 11 && (a11->flags & MD_ANN_CLIPPED) && a11->box[2] == 100 && a11->box[3] == 50 && a11->box[0] == 90,
              "ann 11 clipped to the image");
        CHECK(a11->label == 2 && c.anns[0].label == 1, "contiguous labels of categories 3 and 7");
        CHECK(c.images[0].num_targets == 2 && c.images[1].num_targets == 0, "targets per image %d %d", c.images[0].num_targets,
              c.images[1].num_targets);
        CHECK(c.stats.images_without_targets == 1, "images without targets");
    }
    md_coco_free(&c);
    md_coco_options o;
    md_coco_options_default(&o);
    o.boxes = MD_BOX_DROP;
    CHECK_OK(md_coco_load(&c, p, &o));
    CHECK(c.stats.clipped == 0 && c.stats.dropped_outside == 3 && c.stats.dropped_degenerate == 2, "drop counts: outside %d degenerate %d",
          c.stats.dropped_outside, c.stats.dropped_degenerate);
    md_coco_free(&c);
    o.boxes = MD_BOX_FAIL;
    expect_fail("boxes.json", json, &o, "annotations[1] (id 11): field 'bbox'", "not inside the image");
    /* unknown references: fail by default (tested above), skip and count on request */
    md_coco_options_default(&o);
    o.bad_refs = MD_POLICY_SKIP;
    md_log_level lv = md_log_get_level();
    md_log_set_level(MD_LOG_ERROR);
    p = write_tmp("refs.json", HDR "\"annotations\": [{\"id\": 5, \"image_id\": 1, \"category_id\": 4, \"bbox\": [1, 2, 3, 4]},"
                  "{\"id\": 6, \"image_id\": 9, \"category_id\": 3, \"bbox\": [1, 2, 3, 4]},"
                  "{\"id\": 7, \"image_id\": 2, \"category_id\": 7, \"bbox\": [1, 2, 3, 4]}]}");
    CHECK_OK(md_coco_load(&c, p, &o));
    md_log_set_level(lv);
    CHECK(c.num_anns == 1 && c.stats.skipped_refs == 2 && c.anns && c.anns[0].id == 7, "skip unknown refs: %d kept, %d skipped", c.num_anns,
          c.stats.skipped_refs);
    md_coco_free(&c);
}

int main(void) {
    if (!md_test_tmpdir("coco", g_tmpdir, sizeof g_tmpdir)) return 1;
    MD_RUN(test_sample_matches_json);
    MD_RUN(test_coco_id_layout);
    MD_RUN(test_bad_json);
    MD_RUN(test_box_policy);
    md_test_rm_rf(g_tmpdir);
    return md_test_summary();
}
