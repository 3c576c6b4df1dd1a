/* tool_gen_cocoeval_bench.c — writes a COCO-val-sized evaluation case, deterministically.
 *
 *   build/bin/tool_gen_cocoeval_bench [OUT_DIR] [--images N] [--seed S]
 *
 * OUT_DIR (default build/bench) receives cocoeval_gt.json and cocoeval_dets.json.
 * Defaults mimic COCO val2017 + a typical detector's results file: 5000 images,
 * 80 categories with COCO's ids, ~34k ground-truth boxes (COCO-like size mix,
 * ~1% crowd, a polygon of 8..56 points each so the GT file has COCO's ~25 MB),
 * and 72..100 detections per image (~430k): 1-3 jittered detections per object
 * plus false positives, bboxes with 2 decimals and scores with 6, as
 * json.dump writes them. Same arguments, same bytes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "minidet/error.h"
#include "minidet/log.h"
#include "minidet/rng.h"

static const int k_coco_ids[80] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                   22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                   46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
                                   67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};

typedef struct { double x, y, w, h; int cat; } box;

static double unif(md_rng *r, double a, double b) { return a + (b - a) * (double)md_rng_u32(r) / 4294967296.0; }

/* A box of log-uniform area (4² .. 400²: ~COCO's small/medium/large mix) inside a W x H image. */
static box random_box(md_rng *r, int W, int H) {
    box b;
    double side = exp(unif(r, log(4.0), log(400.0))), ar = exp(unif(r, log(0.5), log(2.0)));
    b.w = fmin(side * sqrt(ar), W - 1);
    b.h = fmin(side / sqrt(ar), H - 1);
    b.x = unif(r, 0, W - b.w);
    b.y = unif(r, 0, H - b.h);
    b.cat = 0;
    return b;
}

static double r2(double v) { return round(v * 100) / 100; }

static FILE *open_out(const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        md_set_error(MD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        md_die();
    }
    return f;
}

int main(int argc, char **argv) {
    const char *dir = "build/bench";
    int n_img = 5000;
    uint64_t seed = 2014;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--images") && i + 1 < argc) n_img = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [OUT_DIR] [--images N] [--seed S]\n", argv[0]);
            return 2;
        } else dir = argv[i];
    }
    if (n_img < 1) { md_set_error(MD_ERR_ARG, "--images must be >= 1"); md_die(); }
    mkdir(dir, 0755);
    char gp[1024], dp[1024];
    FILE *g = open_out(dir, "cocoeval_gt.json", gp, sizeof gp);
    FILE *d = open_out(dir, "cocoeval_dets.json", dp, sizeof dp);
    md_rng r = md_rng_make(seed, MD_STREAM_DATA);
    fprintf(g, "{\"info\": {\"description\": \"minidet cocoeval benchmark (synthetic, seed %llu)\"}, \"images\": [", (unsigned long long)seed);
    int *ids = malloc(sizeof(int) * n_img), *ws = malloc(sizeof(int) * n_img), *hs = malloc(sizeof(int) * n_img);
    if (!ids || !ws || !hs) { md_set_error(MD_ERR_NOMEM, "out of memory"); md_die(); }
    int id = 0;
    for (int i = 0; i < n_img; i++) {
        id += 1 + (int)md_rng_below(&r, 200); /* sparse ascending ids like COCO's */
        ids[i] = id;
        ws[i] = 320 + (int)md_rng_below(&r, 321);
        hs[i] = 240 + (int)md_rng_below(&r, 401);
        fprintf(g, "%s{\"id\": %d, \"width\": %d, \"height\": %d, \"file_name\": \"%012d.jpg\"}", i ? ", " : "", ids[i], ws[i], hs[i], ids[i]);
    }
    fprintf(g, "], \"categories\": [");
    for (int k = 0; k < 80; k++) fprintf(g, "%s{\"id\": %d, \"name\": \"class%d\", \"supercategory\": \"thing\"}", k ? ", " : "", k_coco_ids[k], k_coco_ids[k]);
    fprintf(g, "], \"annotations\": [");
    fprintf(d, "[");
    long ann_id = 0, n_det = 0;
    box gtb[16];
    for (int i = 0; i < n_img; i++) {
        int W = ws[i], H = hs[i];
        /* ground truth: 0..14 objects from 1..4 categories of this image */
        int ncat = 1 + (int)md_rng_below(&r, 4), cats[4];
        for (int c = 0; c < ncat; c++) cats[c] = k_coco_ids[md_rng_below(&r, 80)];
        int ng = (int)md_rng_below(&r, 15);
        for (int j = 0; j < ng; j++) {
            box b = random_box(&r, W, H);
            b.cat = cats[md_rng_below(&r, (uint32_t)ncat)];
            int crowd = md_rng_below(&r, 100) == 0;
            if (crowd) { b.w = fmin(b.w * 3, W - b.x); b.h = fmin(b.h * 3, H - b.y); }
            b.x = r2(b.x); b.y = r2(b.y); b.w = r2(b.w); b.h = r2(b.h);
            gtb[j] = b;
            double area = round(b.w * b.h * unif(&r, 0.55, 0.95) * 1e4) / 1e4;
            double cx = b.x + b.w / 2, cy = b.y + b.h / 2;
            fprintf(g, "%s{\"segmentation\": [[", ann_id ? ", " : "");
            int npt = 8 + (int)md_rng_below(&r, 49); /* ~680 bytes per annotation, as instances_val2017.json */
            for (int p = 0; p < npt; p++) {
                double ang = p * 6.283185307179586 / npt;
                fprintf(g, "%s%.2f, %.2f", p ? ", " : "", cx + 0.5 * b.w * cos(ang), cy + 0.5 * b.h * sin(ang));
            }
            fprintf(g, "]], \"area\": %.4f, \"iscrowd\": %d, \"image_id\": %d, \"bbox\": [%.2f, %.2f, %.2f, %.2f], \"category_id\": %d, \"id\": %ld}",
                    area, crowd, ids[i], b.x, b.y, b.w, b.h, b.cat, ++ann_id);
        }
        /* detections: 72..100 per image; 1-3 per object (jittered), the rest false positives */
        int nd = 72 + (int)md_rng_below(&r, 29), k = 0;
        for (int j = 0; j < ng && k < nd; j++)
            for (int rep = 1 + (int)md_rng_below(&r, 3); rep > 0 && k < nd; rep--, k++) {
                box b = gtb[j];
                double s = 0.12 * (rep == 1 ? 1 : 2.5);
                double dw = b.w * (1 + s * (unif(&r, -1, 1))), dh = b.h * (1 + s * unif(&r, -1, 1));
                double dx = b.x + b.w * s * unif(&r, -1, 1), dy = b.y + b.h * s * unif(&r, -1, 1);
                double score = rep == 1 ? unif(&r, 0.3, 1.0) : unif(&r, 0.05, 0.7);
                int cat = md_rng_below(&r, 10) == 0 ? k_coco_ids[md_rng_below(&r, 80)] : b.cat;
                fprintf(d, "%s{\"image_id\": %d, \"category_id\": %d, \"bbox\": [%.2f, %.2f, %.2f, %.2f], \"score\": %.6f}",
                        n_det++ ? ", " : "", ids[i], cat, r2(dx), r2(dy), r2(fmax(dw, 1)), r2(fmax(dh, 1)), score);
            }
        for (; k < nd; k++) {
            box b = random_box(&r, W, H);
            int cat = md_rng_below(&r, 2) ? cats[md_rng_below(&r, (uint32_t)ncat)] : k_coco_ids[md_rng_below(&r, 80)];
            double score = md_rng_below(&r, 20) == 0 ? 0.05 : unif(&r, 0.05, 0.6); /* some exact ties */
            fprintf(d, "%s{\"image_id\": %d, \"category_id\": %d, \"bbox\": [%.2f, %.2f, %.2f, %.2f], \"score\": %.6f}",
                    n_det++ ? ", " : "", ids[i], cat, r2(b.x), r2(b.y), r2(b.w), r2(b.h), score);
        }
    }
    fprintf(g, "]}\n");
    fprintf(d, "]\n");
    int bad = ferror(g) || ferror(d);
    bad |= fclose(g) != 0;
    bad |= fclose(d) != 0;
    if (bad) { md_set_error(MD_ERR_IO, "%s: write failed", dir); md_die(); }
    printf("%s: %d images, 80 categories, %ld ground-truth boxes\n%s: %ld detections\n", gp, n_img, ann_id, dp, n_det);
    free(ids);
    free(ws);
    free(hs);
    return 0;
}
