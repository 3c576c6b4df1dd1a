/* tool_data_bench.c — decode + transform throughput of the data loader.
 *   build/bin/tool_data_bench ANN.json IMAGE_DIR [--workers N] [--batch B] [--images N]
 *                             [--min-size S] [--max-size S] [--depth D] [--seed S] [--plan BATCHES]
 * Runs the training loader (shuffle, flips, aspect grouping) with a consumer that
 * does no work, so the rate is what the workers sustain; prints images/s and the
 * consumer's stall time.
 * --plan BATCHES prints instead, without decoding, the first BATCHES training batches that
 * ./train draws with the same seed and batch size (a peer benchmark feeds its loop the same
 * images, flips and targets): one line per image,
 *   batch file_name flip width height num_targets [label x1 y1 x2 y2]...
 * with the targets after the box policy, in the image's own (unflipped, unresized) pixels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/data.h"
#include "minidet/log.h"
#include "minidet/threads.h"

int main(int argc, char **argv) {
    if (argc < 3 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 3 ? stderr : stdout, "usage: tool_data_bench ANN.json IMAGE_DIR [--workers N] [--batch B] [--images N] "
                                            "[--min-size S] [--max-size S] [--depth D]\n");
        return argc < 3 ? 2 : 0;
    }
    md_data_options o;
    md_data_options_default(&o);
    int total = 200, plan = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--workers")) o.workers = v;
        else if (!strcmp(argv[i], "--batch")) o.ims_per_batch = v;
        else if (!strcmp(argv[i], "--images")) total = v;
        else if (!strcmp(argv[i], "--min-size")) o.min_size = v;
        else if (!strcmp(argv[i], "--max-size")) o.max_size = v;
        else if (!strcmp(argv[i], "--depth")) o.queue_depth = v;
        else if (!strcmp(argv[i], "--seed")) o.seed = (uint64_t)strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--plan")) plan = v;
        else {
            md_set_error(MD_ERR_ARG, "unknown option '%s'", argv[i]);
            md_die();
        }
    }
    md_coco c;
    md_coco_options co;
    md_data_coco_options(&o, &co);
    if (md_coco_load(&c, argv[1], &co)) md_die();
    md_loader *l;
    if (plan > 0) {
        o.workers = 0; /* md_loader_plan decodes nothing */
        if (md_loader_create(&l, &c, argv[2], &o, NULL, 0, 0)) md_die();
        int *idx = malloc((size_t)o.ims_per_batch * sizeof *idx);
        uint8_t *flips = malloc((size_t)o.ims_per_batch);
        if (!idx || !flips) {
            md_set_error(MD_ERR_NOMEM, "out of memory");
            md_die();
        }
        int64_t epoch = 0, pos = 0;
        for (int b = 0; b < plan; b++, pos++) {
            if (pos >= md_loader_epoch_batches(l, epoch)) epoch++, pos = 0;
            int n;
            if (md_loader_plan(l, epoch, pos, idx, flips, &n)) md_die();
            for (int k = 0; k < n; k++) {
                const md_coco_image *im = &c.images[idx[k]];
                printf("%d %s %d %d %d %d", b, im->file_name, flips[k], im->width, im->height, im->num_targets);
                for (int a = im->ann_begin; a < im->ann_begin + im->ann_count; a++) {
                    const md_coco_ann *an = &c.anns[a];
                    if (an->iscrowd || (an->flags & MD_ANN_DROPPED)) continue;
                    printf(" %d %.9g %.9g %.9g %.9g", an->label, an->box[0], an->box[1], an->box[2], an->box[3]);
                }
                putchar('\n');
            }
        }
        free(idx);
        free(flips);
        md_loader_destroy(l);
        md_coco_free(&c);
        return 0;
    }
    double t0 = md_now();
    if (md_loader_create(&l, &c, argv[2], &o, NULL, 0, 0)) md_die();
    int images = 0;
    while (images < total) {
        const md_batch *b;
        if (md_loader_next(l, &b)) md_die();
        images += b->n;
    }
    double t = md_now() - t0;
    printf("workers %d, batch %d, %dx%d: %d images in %.2f s = %.1f images/s; consumer stalled %.2f s; peak RSS %.0f MiB\n", o.workers,
           o.ims_per_batch, o.min_size, o.max_size, images, t, images / t, md_loader_stall_seconds(l), md_peak_rss_mb());
    md_loader_destroy(l);
    md_coco_free(&c);
    return 0;
}
