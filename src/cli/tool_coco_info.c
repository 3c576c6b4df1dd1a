/* tool_coco_info.c — `build/bin/tool_coco_info ANN.json [--labels contiguous|coco_id] [--boxes clip|drop|fail]`
 * Loads a COCO instances file, prints its counts, what the box policy did,
 * the load time and the peak RSS (used to measure the loader on COCO-train-sized files). */
#include <stdio.h>
#include <string.h>
#include "minidet/coco.h"
#include "minidet/log.h"
#include "minidet/threads.h"

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: tool_coco_info ANN.json [--labels contiguous|coco_id] [--boxes clip|drop|fail] [--refs fail|skip]\n");
        return argc < 2 ? 2 : 0;
    }
    md_coco_options o;
    md_coco_options_default(&o);
    for (int i = 2; i < argc; i++) {
        md_status st = MD_OK;
        if (!strcmp(argv[i], "--labels") && i + 1 < argc) st = md_label_layout_parse(argv[++i], &o.labels);
        else if (!strcmp(argv[i], "--boxes") && i + 1 < argc) st = md_box_policy_parse(argv[++i], &o.boxes);
        else if (!strcmp(argv[i], "--refs") && i + 1 < argc) st = md_bad_policy_parse(argv[++i], &o.bad_refs);
        else st = md_set_error(MD_ERR_ARG, "unknown option '%s'", argv[i]);
        if (st) md_die();
    }
    double rss0 = md_peak_rss_mb(), t0 = md_now();
    md_coco c;
    if (md_coco_load(&c, argv[1], &o)) md_die();
    double t = md_now() - t0;
    char buf[512];
    printf("%s: %s\n", argv[1], md_coco_stats_str(&c, buf, sizeof buf));
    printf("num_classes %d (label_map %s)\n", c.num_classes, c.layout == MD_LABELS_COCO_ID ? "coco_id" : "contiguous");
    printf("load %.2f s, peak RSS %.1f MiB (before load %.1f MiB), compact arrays %.1f MiB\n", t, md_peak_rss_mb(), rss0,
           ((double)c.num_anns * sizeof *c.anns + (double)c.num_images * (sizeof *c.images + 12) + (double)c.strings_len) / 1048576.0);
    md_coco_free(&c);
    return 0;
}
