/* test_loader.c — prefetching loader: same seed -> same batches for any worker
 * count, exact resume from (epoch, position), epoch structure (permutation,
 * aspect grouping), errors from workers arrive in order, and every image of both
 * splits of the COCO sample (tests/data/coco-sample) goes through the loader. */
#include "minidet/data.h"
#include "minidet/log.h"
#include "minidet/rng.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAMPLE "tests/data/coco-sample"
#define ANN SAMPLE "/annotations/instances_train2017.json"
#define IMGS SAMPLE "/train2017"
#define NB 14

typedef struct {
    int64_t epoch, position;
    int n, h, w;
    int64_t ids[4];
    int flips[4];
    uint64_t pixels; /* hash of the batch tensor bits and targets */
} batch_sig;

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static batch_sig sig_of(const md_batch *b) {
    batch_sig s;
    memset(&s, 0, sizeof s);
    s.epoch = b->epoch;
    s.position = b->position;
    s.n = b->n;
    s.h = b->height;
    s.w = b->width;
    for (int i = 0; i < b->n && i < 4; i++) {
        s.ids[i] = b->info[i].image_id;
        s.flips[i] = b->info[i].flipped;
    }
    uint64_t h = 1469598103934665603ull;
    h = hash_bytes(b->images, (size_t)b->n * 3 * b->height * b->width * sizeof(float), h);
    h = hash_bytes(b->boxes, (size_t)b->num_boxes * 4 * sizeof(float), h);
    h = hash_bytes(b->labels, (size_t)b->num_boxes * sizeof(int), h);
    s.pixels = h;
    return s;
}

static void small_opts(md_data_options *o) {
    md_data_options_default(o);
    o->min_size = 64;
    o->max_size = 96;
    o->ims_per_batch = 2;
    o->queue_depth = 3;
    o->seed = 7;
}

/* Runs a loader from (epoch, position) for n batches into sig[]. */
static int run(const md_coco *c, const md_data_options *o, int64_t epoch, int64_t position, int n, batch_sig *sig) {
    md_loader *l;
    md_status st = md_loader_create(&l, c, IMGS, o, NULL, epoch, position);
    CHECK(st == MD_OK, "create: %s", md_last_error());
    if (st) return 0;
    int got = 0;
    for (int i = 0; i < n; i++) {
        const md_batch *b;
        st = md_loader_next(l, &b);
        CHECK(st == MD_OK, "next: %s", md_last_error());
        if (st) break;
        sig[got++] = sig_of(b);
    }
    md_loader_destroy(l);
    return got;
}

static int same_sig(const batch_sig *a, const batch_sig *b) {
    if (a->epoch != b->epoch || a->position != b->position || a->n != b->n || a->h != b->h || a->w != b->w || a->pixels != b->pixels)
        return 0;
    for (int i = 0; i < a->n && i < 4; i++)
        if (a->ids[i] != b->ids[i] || a->flips[i] != b->flips[i]) return 0;
    return 1;
}

static void test_determinism_and_workers(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, ANN, NULL));
    if (!c.images) return;
    md_data_options o;
    small_opts(&o);
    batch_sig s0[NB], s1[NB], s2[NB], s3[NB];
    o.workers = 0;
    int n0 = run(&c, &o, 0, 0, NB, s0);
    o.workers = 1;
    int n1 = run(&c, &o, 0, 0, NB, s1);
    o.workers = 2;
    int n2 = run(&c, &o, 0, 0, NB, s2);
    o.workers = 3;
    o.queue_depth = 1;
    int n3 = run(&c, &o, 0, 0, NB, s3);
    CHECK(n0 == NB && n1 == NB && n2 == NB && n3 == NB, "batches %d %d %d %d", n0, n1, n2, n3);
    int flips = 0, epochs = 0;
    for (int i = 0; i < NB && i < n1 && i < n2 && i < n3 && i < n0; i++) {
        CHECK(same_sig(&s0[i], &s1[i]) && same_sig(&s0[i], &s2[i]) && same_sig(&s0[i], &s3[i]), "batch %d differs across worker counts",
              i);
        for (int k = 0; k < s0[i].n; k++) flips += s0[i].flips[k];
        if (s0[i].position == 0) epochs++;
    }
    CHECK(epochs >= 3, "the run crosses epochs (%d epoch starts)", epochs);
    CHECK(flips > 3 && flips < 2 * NB - 3, "flips %d of %d", flips, 2 * NB);
    /* another seed gives another order */
    o.seed = 8;
    batch_sig t[NB];
    int nt = run(&c, &o, 0, 0, NB, t);
    int diff = 0;
    for (int i = 0; i < nt && i < n0; i++) diff += !same_sig(&t[i], &s0[i]);
    CHECK(diff > 0, "seed 8 gives the same batches as seed 7");
    md_coco_free(&c);
}

static void test_resume(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, ANN, NULL));
    if (!c.images) return;
    md_data_options o;
    small_opts(&o);
    o.workers = 2;
    md_loader *l;
    CHECK_OK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0));
    if (!l) { md_coco_free(&c); return; }
    batch_sig all[NB];
    int64_t e_at = -1, p_at = -1;
    for (int i = 0; i < NB; i++) {
        const md_batch *b;
        CHECK_OK(md_loader_next(l, &b));
        if (!b) break;
        all[i] = sig_of(b);
        if (i == 5) md_loader_tell(l, &e_at, &p_at); /* a checkpoint after 6 batches */
    }
    CHECK(md_loader_stall_seconds(l) >= 0 && md_loader_images_done(l) >= 2 * NB, "stats");
    md_loader_destroy(l);
    CHECK(e_at == all[6].epoch && p_at == all[6].position, "tell (%lld, %lld) vs next batch (%lld, %lld)", (long long)e_at,
          (long long)p_at, (long long)all[6].epoch, (long long)all[6].position);
    batch_sig rest[NB];
    int n = run(&c, &o, e_at, p_at, NB - 6, rest);
    CHECK(n == NB - 6, "resumed batches %d", n);
    for (int i = 0; i < n; i++) CHECK(same_sig(&rest[i], &all[6 + i]), "resumed batch %d differs", i);
    md_coco_free(&c);
}

/* Each epoch is a permutation of the usable images (minus the dropped
   remainder); with aspect grouping every batch has one orientation. */
static void test_epoch_structure(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, ANN, NULL));
    if (!c.images) return;
    for (int grouping = 0; grouping < 2; grouping++) {
        md_data_options o;
        small_opts(&o);
        o.aspect_grouping = grouping;
        o.workers = 0;
        md_loader *l;
        CHECK_OK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0));
        if (!l) continue;
        int usable = md_loader_num_images(l);
        CHECK(usable == c.num_images - c.stats.images_without_targets, "usable %d", usable);
        int orders_differ = 0, first[16];
        for (int64_t e = 0; e < 6; e++) {
            int64_t nb = md_loader_epoch_batches(l, e);
            if (!grouping) CHECK(nb == usable / 2, "epoch %lld: %lld batches", (long long)e, (long long)nb);
            else CHECK(nb >= (usable - 2) / 2 && nb <= usable / 2, "grouped epoch %lld: %lld batches", (long long)e, (long long)nb);
            int seen[16] = {0};
            for (int64_t p = 0; p < nb; p++) {
                int idx[2], n;
                uint8_t fl[2];
                CHECK_OK(md_loader_plan(l, e, p, idx, fl, &n));
                CHECK(n == 2, "batch size %d", n);
                for (int k = 0; k < n; k++) {
                    CHECK(idx[k] >= 0 && idx[k] < c.num_images && c.images[idx[k]].num_targets > 0, "usable image");
                    CHECK(!seen[idx[k]]++, "image %d twice in epoch %lld", idx[k], (long long)e);
                }
                if (grouping) {
                    int o0 = c.images[idx[0]].width >= c.images[idx[0]].height, o1 = c.images[idx[1]].width >= c.images[idx[1]].height;
                    CHECK(o0 == o1, "grouped batch mixes orientations");
                }
                if (e == 0 && p < 4) first[p] = idx[0];
                else if (p < 4 && first[p] != idx[0]) orders_differ = 1;
            }
        }
        CHECK(orders_differ, "epochs are shuffled differently");
        int idx[2], n;
        uint8_t fl[2];
        CHECK(md_loader_plan(l, 0, 1000, idx, fl, &n) == MD_ERR_ARG, "position past the epoch is an error");
        md_loader_destroy(l);
    }
    /* evaluation order: file order, last partial batch kept, no flips */
    md_data_options o;
    small_opts(&o);
    o.shuffle = 0;
    o.skip_empty = 0;
    o.flip_prob = 0;
    o.ims_per_batch = 4;
    md_loader *l;
    CHECK_OK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0));
    if (l) {
        CHECK(md_loader_epoch_batches(l, 0) == 3, "eval batches %lld", (long long)md_loader_epoch_batches(l, 0));
        int k = 0;
        for (int p = 0; p < 3; p++) {
            const md_batch *b;
            CHECK_OK(md_loader_next(l, &b));
            for (int i = 0; b && i < b->n; i++, k++) CHECK(b->info[i].index == k && !b->info[i].flipped, "eval order");
        }
        CHECK(k == c.num_images, "eval covers every image once (%d)", k);
        md_loader_destroy(l);
    }
    md_coco_free(&c);
}

/* A missing image is reported by md_loader_next for its batch, naming the file. */
static void test_worker_error(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, ANN, NULL));
    if (!c.images) return;
    md_data_options o;
    small_opts(&o);
    o.workers = 2;
    o.shuffle = 0;
    o.ims_per_batch = 1;
    o.skip_empty = 0;
    /* point image 2 at a missing file */
    const char *saved = c.images[2].file_name;
    c.images[2].file_name = "does_not_exist.jpg";
    md_loader *l;
    CHECK_OK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0));
    if (l) {
        const md_batch *b;
        CHECK_OK(md_loader_next(l, &b));
        CHECK_OK(md_loader_next(l, &b));
        md_status st = md_loader_next(l, &b);
        CHECK(st == MD_ERR_IO && strstr(md_last_error(), "does_not_exist.jpg"), "worker error: %s", md_last_error());
        st = md_loader_next(l, &b);
        CHECK(st == MD_ERR_IO, "error is sticky");
        md_loader_destroy(l);
    }
    c.images[2].file_name = saved;
    /* bad arguments */
    o.ims_per_batch = 20;
    o.shuffle = 1;
    CHECK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0) == MD_ERR_ARG && strstr(md_last_error(), "cannot fill"), "too few images: %s",
          md_last_error());
    o.ims_per_batch = 2;
    CHECK(md_loader_create(&l, &c, IMGS, &o, NULL, 0, 99) == MD_ERR_ARG, "start past the epoch");
    md_coco_free(&c);
}

/* Both splits of the COCO sample (grey-scale and colour JPEGs, portrait, landscape and wide images, crowd
 * boxes, an image without annotations): start-up check, then every image through the loader. */
static void test_coco_sample(void) {
    const char *ann[2] = {SAMPLE "/annotations/instances_train2017.json", SAMPLE "/annotations/instances_val2017.json"};
    const char *dir[2] = {SAMPLE "/train2017", SAMPLE "/val2017"};
    for (int s = 0; s < 2; s++) {
        md_coco c;
        CHECK_OK(md_coco_load(&c, ann[s], NULL));
        if (!c.images) continue;
        int nbad = -1;
        CHECK_OK(md_dataset_check(&c, dir[s], MD_POLICY_FAIL, 0, NULL, &nbad));
        md_data_options o;
        md_data_options_default(&o);
        o.min_size = 96;
        o.max_size = 160;
        o.shuffle = 0;
        o.skip_empty = 0;
        o.ims_per_batch = 4;
        o.workers = 2;
        md_loader *l;
        CHECK_OK(md_loader_create(&l, &c, dir[s], &o, NULL, 0, 0));
        if (!l) { md_coco_free(&c); continue; }
        int64_t nb = md_loader_epoch_batches(l, 0);
        int images = 0, boxes = 0, targets = 0;
        for (int64_t p = 0; p < nb; p++) {
            const md_batch *b;
            md_status st = md_loader_next(l, &b);
            CHECK(st == MD_OK, "%s batch %lld: %s", ann[s], (long long)p, md_last_error());
            if (st) break;
            images += b->n;
            boxes += b->num_boxes;
            for (int i = 0; i < b->n; i++) {
                CHECK(b->info[i].h <= b->height && b->info[i].w <= b->width && b->height % 32 == 0 && b->width % 32 == 0, "padding");
                int oh, ow;
                md_resize_size(b->info[i].orig_h, b->info[i].orig_w, 96, 160, &oh, &ow);
                CHECK(oh == b->info[i].h && ow == b->info[i].w, "resized size");
            }
            for (int k = 0; k < b->num_boxes; k++) {
                const float *x = b->boxes + 4 * k;
                CHECK(x[0] >= 0 && x[1] >= 0 && x[2] > x[0] && x[3] > x[1] && x[2] <= b->width && x[3] <= b->height, "box %d inside", k);
            }
        }
        for (int i = 0; i < c.num_images; i++) targets += c.images[i].num_targets;
        CHECK(images == c.num_images && boxes == targets, "%s: %d images, %d boxes (expected %d, %d)", ann[s], images, boxes, c.num_images,
              targets);
        md_loader_destroy(l);
        md_coco_free(&c);
    }
}

/* Data-parallel shards: rank r of N gets images [r B/N, (r + 1) B/N) of every global batch of B,
 * padded to the whole batch's size, so the shards side by side are the one-process batch bit for bit,
 * and each rank decodes only its own images. */
static void test_shards(void) {
    md_coco c;
    CHECK_OK(md_coco_load(&c, ANN, NULL));
    if (!c.images) return;
    md_data_options o;
    small_opts(&o);
    o.ims_per_batch = 4;
    o.aspect_grouping = 0; /* 10 images: both aspect groups could not fill batches of 4 */
    enum { NBATCH = 5 };
    md_loader *whole = NULL;
    CHECK_OK(md_loader_create(&whole, &c, IMGS, &o, NULL, 0, 1));
    for (int N = 2; N <= 4 && whole; N += 2) {
        md_loader *part[4] = {NULL};
        md_loader_destroy(whole);
        CHECK_OK(md_loader_create(&whole, &c, IMGS, &o, NULL, 0, 1));
        for (int r = 0; r < N; r++) {
            md_data_options so = o;
            so.shard_rank = r;
            so.shard_count = N;
            so.workers = r % 2; /* the worker count never matters */
            CHECK_OK(md_loader_create(&part[r], &c, IMGS, &so, NULL, 0, 1));
        }
        for (int k = 0; k < NBATCH; k++) {
            const md_batch *w = NULL;
            CHECK_OK(md_loader_next(whole, &w));
            for (int r = 0; r < N && w; r++) {
                const md_batch *b = NULL;
                if (!part[r]) break;
                CHECK_OK(md_loader_next(part[r], &b));
                if (!b) break;
                int m = w->n / N, f = r * m;
                CHECK(b->n == m && b->slot0 == f && b->global_n == w->n, "N %d rank %d: %d images from slot %d of %d", N, r, b->n,
                      b->slot0, b->global_n);
                CHECK(b->height == w->height && b->width == w->width && b->epoch == w->epoch && b->position == w->position,
                      "N %d rank %d batch %d: %dx%d at (%lld, %lld), whole %dx%d at (%lld, %lld)", N, r, k, b->height, b->width,
                      (long long)b->epoch, (long long)b->position, w->height, w->width, (long long)w->epoch, (long long)w->position);
                if (b->n != m || b->height != w->height || b->width != w->width) continue;
                size_t img = (size_t)3 * w->height * w->width;
                CHECK(!memcmp(b->images, w->images + (size_t)f * img, (size_t)m * img * sizeof(float)), "N %d rank %d batch %d: pixels differ",
                      N, r, k);
                for (int i = 0; i < m; i++) {
                    const md_image_info *a = &b->info[i], *e = &w->info[f + i];
                    CHECK(a->image_id == e->image_id && a->flipped == e->flipped && a->h == e->h && a->w == e->w && a->num_boxes == e->num_boxes,
                          "N %d rank %d batch %d image %d: id %lld flip %d, whole id %lld flip %d", N, r, k, i, (long long)a->image_id,
                          a->flipped, (long long)e->image_id, e->flipped);
                    if (a->num_boxes != e->num_boxes) continue;
                    CHECK(!memcmp(b->boxes + 4 * (size_t)a->box_begin, w->boxes + 4 * (size_t)e->box_begin, 16 * (size_t)a->num_boxes) &&
                              !memcmp(b->labels + a->box_begin, w->labels + e->box_begin, sizeof(int) * (size_t)a->num_boxes),
                          "N %d rank %d batch %d image %d: targets differ", N, r, k, i);
                }
            }
        }
        for (int r = 0; r < N; r++) {
            CHECK(!part[r] || md_loader_images_done(part[r]) >= NBATCH * 4 / N, "rank %d decoded %lld images", r,
                  part[r] ? (long long)md_loader_images_done(part[r]) : -1LL);
            /* prefetching decodes ahead, but never the other ranks' images: at most queue_depth + 1 batches' worth */
            CHECK(!part[r] || md_loader_images_done(part[r]) <= (NBATCH + o.queue_depth + 1) * 4 / N, "rank %d decoded %lld images", r,
                  part[r] ? (long long)md_loader_images_done(part[r]) : -1LL);
            md_loader_destroy(part[r]);
        }
    }
    md_loader_destroy(whole);
    /* a global batch that does not divide: an error naming both numbers */
    md_loader *l = NULL;
    o.shard_count = 3;
    md_status st = md_loader_create(&l, &c, IMGS, &o, NULL, 0, 0);
    CHECK(st == MD_ERR_ARG && strstr(md_last_error(), "4 images") && strstr(md_last_error(), "3 ranks"), "not divisible: %s",
          md_last_error());
    md_loader_destroy(l);
    md_coco_free(&c);
}

int main(void) {
    MD_RUN(test_determinism_and_workers);
    MD_RUN(test_resume);
    MD_RUN(test_epoch_structure);
    MD_RUN(test_worker_error);
    MD_RUN(test_shards);
    MD_RUN(test_coco_sample);
    return md_test_summary();
}
