/* tool_data_bench.c — decode + transform throughput of the data loader.
 *   build/bin/tool_data_bench ANN.json IMAGE_DIR [--workers N] [--batch B] [--images N]
 *                             [--min-size S] [--max-size S] [--depth D]
 * Runs the training loader (shuffle, flips, aspect grouping) with a consumer that
 * does no work, so the rate is what the workers sustain; prints images/s and the
 * consumer's stall time. */
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
    int total = 200;
    for (int i = 3; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--workers")) o.workers = v;
        else if (!strcmp(argv[i], "--batch")) o.ims_per_batch = v;
        else if (!strcmp(argv[i], "--images")) total = v;
        else if (!strcmp(argv[i], "--min-size")) o.min_size = v;
        else if (!strcmp(argv[i], "--max-size")) o.max_size = v;
        else if (!strcmp(argv[i], "--depth")) o.queue_depth = v;
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
